//! Time only moves forward: a clock set back revives no expired pass or consent, in this
//! vault or in one restarted on the same store; and a shortened consent lifetime applies to
//! the records given before it.

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::*;
use egard::{AccessDenied, LawfulBasis, ManualClock, Purpose, Sealed, Store};

#[test]
fn a_clock_set_back_revives_no_expired_consent() {
    let clock = ManualClock::new(t0());
    let store: Arc<dyn Store> = memory();
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter"); // 30 days
    clock.set(t0() + Duration::days(31));
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Expired);

    clock.set(t0() + Duration::days(1));
    assert_eq!(
        denied(vault.authorize(c, "newsletter")),
        AccessDenied::Expired,
        "the clock went back a month"
    );
    // The denial was recorded at day 31, not at day 1.
    let last = vault.audit_events(c).unwrap().pop().unwrap();
    assert_eq!(last.at, t0() + Duration::days(31));

    // A vault started later on the same store, its clock still behind, starts from the
    // latest recorded time.
    drop(vault);
    let restarted = vault_on(store, &clock);
    assert_eq!(denied(restarted.authorize(c, "newsletter")), AccessDenied::Expired);
}

#[test]
fn a_clock_set_back_revives_no_expired_pass() {
    let (vault, clock) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "shipping");
    let sealed: Sealed<String> = vault.seal(c, "address", &"2 Quai".to_string()).unwrap();
    let pass = vault.authorize(c, "shipping").unwrap();
    let valid_until = pass.valid_until();

    // The pass runs out; nothing is recorded by the refused reads.
    clock.set(valid_until + Duration::seconds(1));
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "address")),
        AccessDenied::PassExpired
    );
    assert_eq!(denied(sealed.open(&pass)), AccessDenied::PassExpired);

    // Set back before the pass's end: still refused.
    clock.set(valid_until - Duration::seconds(10));
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "address")),
        AccessDenied::PassExpired
    );
    assert_eq!(denied(sealed.open(&pass)), AccessDenied::PassExpired);

    // A new pass is valid from the floor's time on, not from the clock's.
    let fresh = vault.authorize(c, "shipping").unwrap();
    assert!(fresh.valid_until() > valid_until);
    assert!(vault.reveal::<String>(&fresh, "address").is_ok());
}

#[test]
fn times_recorded_after_a_clock_set_back_do_not_go_back() {
    let (vault, clock) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    clock.set(t0() + Duration::days(10));
    consent(&vault, c, "newsletter");
    clock.set(t0() + Duration::days(2));
    vault.withdraw_consent(c, "newsletter").unwrap();
    let record = &vault.consents(c).unwrap()[0];
    assert_eq!(record.given_at, t0() + Duration::days(10));
    assert!(
        record.withdrawn_at.unwrap() >= record.given_at,
        "withdrawn before given"
    );
    let times: Vec<_> = vault.audit_events(c).unwrap().iter().map(|e| e.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "the log's times go back");
    assert!(vault.verify_audit().is_ok());
}

#[test]
fn a_shortened_lifetime_applies_to_earlier_records() {
    let (vault, clock) = vault();
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .consent_lifetime(Duration::days(365)),
        )
        .unwrap();
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "a@example.com").unwrap();
    consent(&vault, c, "newsletter");
    // Without any lifetime, then with one: a record given with no expiry gets one.
    vault
        .define_purpose(Purpose::new("open-ended", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    consent(&vault, c, "open-ended");
    assert_eq!(vault.consents(c).unwrap()[1].expires_at, None);

    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .consent_lifetime(Duration::days(30)),
        )
        .unwrap();
    vault
        .define_purpose(
            Purpose::new("open-ended", LawfulBasis::Consent)
                .fields(["email"])
                .consent_lifetime(Duration::days(30)),
        )
        .unwrap();
    clock.set(t0() + Duration::days(30) - Duration::microseconds(1));
    for purpose in ["newsletter", "open-ended"] {
        let pass = vault.authorize(c, purpose).unwrap();
        assert_eq!(pass.valid_until(), t0() + Duration::days(30), "{purpose}");
    }
    clock.set(t0() + Duration::days(30));
    for purpose in ["newsletter", "open-ended"] {
        assert_eq!(denied(vault.authorize(c, purpose)), AccessDenied::Expired, "{purpose}");
    }

    // A longer lifetime never extends a record past the expiry it was given with.
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .consent_lifetime(Duration::days(730)),
        )
        .unwrap();
    clock.set(t0() + Duration::days(364));
    assert!(vault.authorize(c, "newsletter").is_ok(), "within the record's own year");
    clock.set(t0() + Duration::days(365));
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Expired);
}
