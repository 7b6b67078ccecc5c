//! The gate: every denial reason, every error variant reachable through the public API,
//! expiry at the exact boundary, notice updates, lawful bases, consent history, and
//! withdrawal through a pass held by another thread.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};

use chrono::{Duration, TimeZone, Utc};
use common::*;
use egard::{
    AccessDenied, AccessPass, ConsentState, Error, Evidence, LawfulBasis, ManualClock, MasterKey, MemoryStore, Purpose,
    Revealed, Sealed, Vault,
};

fn newsletter(version: u32) -> Purpose {
    Purpose::new("newsletter", LawfulBasis::Consent)
        .fields(["email", "first_name"])
        .notice_version(version)
        .consent_lifetime(Duration::days(30))
}

// ----- every denial reason -----

#[test]
fn no_consent_is_the_default_for_every_lawful_basis() {
    let (vault, _) = vault();
    let bases = [
        ("p-consent", LawfulBasis::Consent),
        ("p-contract", LawfulBasis::Contract),
        ("p-legal", LawfulBasis::LegalObligation),
        ("p-vital", LawfulBasis::VitalInterests),
        ("p-public", LawfulBasis::PublicTask),
        ("p-li", LawfulBasis::LegitimateInterests),
    ];
    for (id, basis) in bases {
        vault.define_purpose(Purpose::new(id, basis).fields(["email"])).unwrap();
    }
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "a@example.com").unwrap();
    for (id, _) in bases {
        assert_eq!(denied(vault.authorize(c, id)), AccessDenied::NoConsent, "{id}");
        vault
            .give_consent(c, id, Evidence::new("record").source("contract-42"))
            .unwrap();
        let pass = vault.authorize(c, id).unwrap();
        assert_eq!(
            vault.reveal::<String>(&pass, "email").unwrap().expose(),
            "a@example.com"
        );
    }
    // The record of another basis is kept like a consent, with the basis it rests on.
    let records = vault.consents(c).unwrap();
    assert_eq!(records.len(), bases.len());
    for (id, basis) in bases {
        let r = records.iter().find(|r| r.purpose.as_str() == id).unwrap();
        assert_eq!(r.basis, basis);
    }
}

#[test]
fn expired_consent_is_denied_on_authorize_and_on_an_issued_pass() {
    let (vault, clock) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    clock.advance(Duration::days(30) - Duration::minutes(1));
    let pass = vault.authorize(c, "newsletter").unwrap();
    // The pass ends with the consent, a minute from now, not after its own 5 minutes.
    assert_eq!(pass.valid_until(), t0() + Duration::days(30));
    clock.advance(Duration::minutes(1));
    assert_eq!(denied(vault.reveal::<String>(&pass, "email")), AccessDenied::Expired);
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Expired);
    let records = vault.consents(c).unwrap();
    assert_eq!(records[0].state(clock_now(&clock)), ConsentState::Expired);
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<Utc> {
    egard::Clock::now(clock)
}

#[test]
fn withdrawn_consent_is_denied_on_authorize_and_on_an_issued_pass() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    let sealed: Sealed<String> = vault.seal(c, "email", &"kept@example.com".to_string()).unwrap();
    assert_eq!(sealed.open(&pass).unwrap().expose(), "kept@example.com");
    vault.withdraw_consent(c, "newsletter").unwrap();
    assert_eq!(denied(vault.reveal::<String>(&pass, "email")), AccessDenied::Withdrawn);
    assert_eq!(denied(sealed.open(&pass)), AccessDenied::Withdrawn);
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Withdrawn);
    // Withdrawing twice is harmless and changes nothing.
    vault.withdraw_consent(c, "newsletter").unwrap();
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Withdrawn);
    // Another purpose of the same customer is untouched.
    consent(&vault, c, "shipping");
    let ship = vault.authorize(c, "shipping").unwrap();
    vault.withdraw_consent(c, "newsletter").unwrap();
    assert_eq!(
        vault.reveal::<String>(&ship, "address").unwrap().expose(),
        "1 Rue de la Paix"
    );
}

#[test]
fn field_not_covered_by_the_pass_purpose() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    // `address` is stored and collectable (shipping covers it) but not for the newsletter.
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "address")),
        AccessDenied::FieldNotCovered
    );
    let sealed: Sealed<String> = vault.seal(c, "address", &"2 Main St".to_string()).unwrap();
    assert_eq!(denied(sealed.open(&pass)), AccessDenied::FieldNotCovered);
    // A field name no purpose knows, and one that is not even a valid name.
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "shoe_size")),
        AccessDenied::FieldNotCovered
    );
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "Not A Field")),
        AccessDenied::FieldNotCovered
    );
}

#[test]
fn wrong_customer_for_a_sealed_value_of_someone_else() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let alice = customer_with_data(&vault);
    let bob = customer_with_data(&vault);
    consent(&vault, alice, "newsletter");
    consent(&vault, bob, "newsletter");
    let alice_pass = vault.authorize(alice, "newsletter").unwrap();
    let bobs: Sealed<String> = vault.seal(bob, "email", &"bob@example.com".to_string()).unwrap();
    assert_eq!(denied(bobs.open(&alice_pass)), AccessDenied::WrongCustomer);
    let bob_pass = vault.authorize(bob, "newsletter").unwrap();
    assert_eq!(bobs.open(&bob_pass).unwrap().expose(), "bob@example.com");
    assert_eq!(alice_pass.customer(), alice);
    assert_eq!(bob_pass.customer(), bob);
}

#[test]
fn restricted_and_objected_are_their_own_reasons() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    vault
        .define_purpose(Purpose::new("fraud", LawfulBasis::LegitimateInterests).fields(["email"]))
        .unwrap();
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    consent(&vault, c, "fraud");
    let news = vault.authorize(c, "newsletter").unwrap();
    let fraud = vault.authorize(c, "fraud").unwrap();
    vault.object(c, "fraud").unwrap();
    assert_eq!(denied(vault.reveal::<String>(&fraud, "email")), AccessDenied::Objected);
    assert_eq!(denied(vault.authorize(c, "fraud")), AccessDenied::Objected);
    assert!(
        vault.reveal::<String>(&news, "email").is_ok(),
        "objection is per purpose"
    );
    vault.restrict(c).unwrap();
    assert_eq!(denied(vault.reveal::<String>(&news, "email")), AccessDenied::Restricted);
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Restricted);
}

#[test]
fn pass_expired_at_its_own_lifetime_boundary() {
    let clock = ManualClock::new(t0());
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(MemoryStore::new())
        .clock(clock.clone())
        .pass_lifetime(Duration::seconds(30))
        .build()
        .unwrap();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "shipping"); // no consent expiry: only the pass lifetime ends it
    let pass = vault.authorize(c, "shipping").unwrap();
    assert_eq!(pass.valid_until(), t0() + Duration::seconds(30));
    clock.set(t0() + Duration::seconds(30) - Duration::nanoseconds(1));
    assert!(vault.reveal::<String>(&pass, "address").is_ok());
    clock.set(t0() + Duration::seconds(30));
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "address")),
        AccessDenied::PassExpired
    );
    // A new pass works.
    let again = vault.authorize(c, "shipping").unwrap();
    assert!(vault.reveal::<String>(&again, "address").is_ok());
}

#[test]
fn purpose_changed_stops_passes_issued_under_the_old_definition() {
    let (vault, _) = vault();
    vault.define_purpose(newsletter(1)).unwrap();
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "a@example.com").unwrap();
    consent(&vault, c, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    // Defining it again unchanged is a no-op: the pass keeps working.
    vault.define_purpose(newsletter(1)).unwrap();
    assert!(vault.reveal::<String>(&pass, "email").is_ok());
    // Same notice, fewer fields: passes of the old definition stop.
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .consent_lifetime(Duration::days(30)),
        )
        .unwrap();
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "email")),
        AccessDenied::PurposeChanged
    );
    let fresh = vault.authorize(c, "newsletter").unwrap();
    assert_eq!(fresh.fields().len(), 1);
    assert!(vault.reveal::<String>(&fresh, "email").is_ok());
}

#[test]
fn every_denial_reason_has_a_distinct_code_and_message() {
    let all = [
        AccessDenied::NoConsent,
        AccessDenied::Expired,
        AccessDenied::Withdrawn,
        AccessDenied::NoticeOutdated,
        AccessDenied::FieldNotCovered,
        AccessDenied::WrongCustomer,
        AccessDenied::Restricted,
        AccessDenied::Objected,
        AccessDenied::PassExpired,
        AccessDenied::PurposeChanged,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(|r| r.code()).collect();
    let texts: std::collections::HashSet<_> = all.iter().map(|r| r.to_string()).collect();
    assert_eq!(codes.len(), all.len());
    assert_eq!(texts.len(), all.len());
}

// ----- error variants -----

#[test]
fn unknown_purpose_customer_and_field() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    assert!(matches!(vault.authorize(c, "nope"), Err(Error::UnknownPurpose(p)) if p.as_str() == "nope"));
    assert!(matches!(
        vault.give_consent(c, "nope", Evidence::new("x")),
        Err(Error::UnknownPurpose(_))
    ));
    assert!(matches!(
        vault.withdraw_consent(c, "nope"),
        Err(Error::UnknownPurpose(_))
    ));
    let stranger = egard::CustomerId::new();
    assert!(matches!(vault.authorize(stranger, "newsletter"), Err(Error::UnknownCustomer(id)) if id == stranger));
    assert!(matches!(
        vault.set_field(stranger, "email", "x"),
        Err(Error::UnknownCustomer(_))
    ));
    assert!(matches!(vault.consents(stranger), Err(Error::UnknownCustomer(_))));
    assert!(matches!(
        vault.give_consent(stranger, "newsletter", Evidence::new("x")),
        Err(Error::UnknownCustomer(_))
    ));
    // A field no purpose covers is not collected.
    assert!(matches!(vault.set_field(c, "shoe_size", &38), Err(Error::UnknownField(f)) if f.as_str() == "shoe_size"));
    assert!(matches!(vault.seal(c, "shoe_size", &38), Err(Error::UnknownField(_))));
    // A covered field that was never stored.
    let d = vault.create_customer().unwrap();
    consent(&vault, d, "newsletter");
    let pass = vault.authorize(d, "newsletter").unwrap();
    assert!(matches!(
        vault.reveal::<String>(&pass, "email"),
        Err(Error::UnknownField(_))
    ));
}

#[test]
fn invalid_ids_are_refused_without_echoing_them() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    for bad in ["Email", "e mail", "", "é", &"a".repeat(65)] {
        assert!(
            matches!(vault.set_field(c, bad, "x"), Err(Error::InvalidId { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(vault.authorize(c, bad), Err(Error::InvalidId { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        vault.define_purpose(Purpose::new("Bad Purpose", LawfulBasis::Consent).fields(["email"])),
        Err(Error::InvalidId { .. })
    ));
    assert!(matches!(
        vault.define_purpose(Purpose::new("ok", LawfulBasis::Consent).fields(["Bad Field"])),
        Err(Error::InvalidId { .. })
    ));
    // Settings that make no sense are refused too.
    assert!(matches!(
        vault.define_purpose(Purpose::new("ok", LawfulBasis::Consent)),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        vault.define_purpose(Purpose::new("ok", LawfulBasis::Consent).fields(["a"]).notice_version(0)),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn too_large_values_are_refused_before_anything_is_stored() {
    let clock = ManualClock::new(t0());
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(MemoryStore::new())
        .clock(clock)
        .max_value_len(16)
        .build()
        .unwrap();
    define_standard_purposes(&vault);
    let c = vault.create_customer().unwrap();
    // JSON of a 14-char string is 16 bytes: accepted; 15 chars is 17 bytes: refused.
    vault.set_field(c, "email", &"x".repeat(14)).unwrap();
    let err = vault.set_field(c, "email", &"y".repeat(15)).unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge { field, max: 16 } if field.as_str() == "email"),
        "{err:?}"
    );
    assert!(matches!(
        vault.seal(c, "email", &"y".repeat(15)),
        Err(Error::TooLarge { .. })
    ));
    // The refused value did not replace the stored one.
    consent(&vault, c, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    assert_eq!(
        vault.reveal::<String>(&pass, "email").unwrap().expose(),
        &"x".repeat(14)
    );
}

#[test]
fn codec_errors_on_encode_and_on_decode_as_the_wrong_type() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    let err = vault.reveal::<u32>(&pass, "email").unwrap_err();
    assert!(
        matches!(&err, Error::Codec { field, action: "decoded" } if field.as_str() == "email"),
        "{err:?}"
    );
    // JSON maps need string keys: this value cannot be encoded.
    let mut bad: HashMap<(u8, u8), u8> = HashMap::new();
    bad.insert((1, 2), 3);
    let err = vault.set_field(c, "email", &bad).unwrap_err();
    assert!(matches!(err, Error::Codec { action: "encoded", .. }), "{err:?}");
}

#[test]
fn values_of_any_serde_type_round_trip() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Address {
        street: String,
        zip: u32,
    }
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = vault.create_customer().unwrap();
    let addr = Address {
        street: "1 Rue de la Paix".into(),
        zip: 75002,
    };
    vault.set_field(c, "address", &addr).unwrap();
    vault.set_field(c, "first_name", &Some("Ann".to_string())).unwrap();
    consent(&vault, c, "shipping");
    let pass = vault.authorize(c, "shipping").unwrap();
    assert_eq!(vault.reveal::<Address>(&pass, "address").unwrap().expose(), &addr);
    let name: Revealed<Option<String>> = vault.reveal(&pass, "first_name").unwrap();
    assert_eq!(name.expose().as_deref(), Some("Ann"));
}

// ----- expiry at the exact boundary -----

/// A start time with a sub-microsecond part, to catch any rounding in the comparisons.
fn ragged_start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + Duration::nanoseconds(123_456_789)
}

#[test]
fn authorize_at_the_exact_expiry_boundary() {
    for before in [Duration::nanoseconds(1), Duration::microseconds(1)] {
        let clock = ManualClock::new(ragged_start());
        let vault = vault_on(memory(), &clock);
        define_standard_purposes(&vault);
        let c = customer_with_data(&vault);
        consent(&vault, c, "newsletter");
        let expires_at = vault.consents(c).unwrap()[0].expires_at.unwrap();
        assert!(expires_at <= ragged_start() + Duration::days(30));
        assert!(expires_at > ragged_start() + Duration::days(30) - Duration::microseconds(1));
        clock.set(expires_at - before);
        let pass = vault.authorize(c, "newsletter").unwrap();
        assert_eq!(
            vault.reveal::<String>(&pass, "email").unwrap().expose(),
            "alice@example.com"
        );
        clock.set(expires_at);
        assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Expired);
    }
}

#[test]
fn an_issued_pass_at_the_exact_expiry_boundary() {
    for before in [Duration::nanoseconds(1), Duration::microseconds(1)] {
        let clock = ManualClock::new(ragged_start());
        let vault = vault_on(memory(), &clock);
        define_standard_purposes(&vault);
        let c = customer_with_data(&vault);
        consent(&vault, c, "newsletter");
        let sealed: Sealed<String> = vault.seal(c, "email", &"s@example.com".to_string()).unwrap();
        let expires_at = vault.consents(c).unwrap()[0].expires_at.unwrap();
        clock.set(expires_at - Duration::minutes(2));
        let pass = vault.authorize(c, "newsletter").unwrap();
        assert_eq!(pass.valid_until(), expires_at);
        clock.set(expires_at - before);
        assert!(vault.reveal::<String>(&pass, "email").is_ok());
        assert!(sealed.open(&pass).is_ok());
        clock.set(expires_at);
        assert_eq!(denied(vault.reveal::<String>(&pass, "email")), AccessDenied::Expired);
        assert_eq!(denied(sealed.open(&pass)), AccessDenied::Expired);
        // And at any later time.
        clock.set(expires_at + Duration::days(365));
        assert_eq!(denied(vault.reveal::<String>(&pass, "email")), AccessDenied::Expired);
    }
}

#[test]
fn expired_consent_is_renewed_by_giving_it_again() {
    let (vault, clock) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    clock.advance(Duration::days(31));
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Expired);
    consent(&vault, c, "newsletter");
    assert!(vault.authorize(c, "newsletter").is_ok());
    let events = vault.audit_events(c).unwrap();
    assert!(events.iter().any(|e| e.kind == egard::AuditKind::ConsentExpired));
}

// ----- notice update -----

#[test]
fn a_notice_update_needs_a_new_consent() {
    let (vault, _) = vault();
    vault.define_purpose(newsletter(1)).unwrap();
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "a@example.com").unwrap();
    consent(&vault, c, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    vault.define_purpose(newsletter(2)).unwrap();
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "email")),
        AccessDenied::NoticeOutdated
    );
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::NoticeOutdated);
    // Going back is refused, and changes nothing.
    assert!(matches!(vault.define_purpose(newsletter(1)), Err(Error::Invalid(_))));
    assert_eq!(vault.purpose("newsletter").unwrap().required_notice_version(), 2);
    // The customer agrees to the new notice: the purpose opens again.
    consent(&vault, c, "newsletter");
    let fresh = vault.authorize(c, "newsletter").unwrap();
    assert_eq!(
        vault.reveal::<String>(&fresh, "email").unwrap().expose(),
        "a@example.com"
    );
    let records = vault.consents(c).unwrap();
    assert_eq!(records.iter().map(|r| r.notice_version).collect::<Vec<_>>(), [1, 2]);
    // The old pass stays dead.
    assert_eq!(
        denied(vault.reveal::<String>(&pass, "email")),
        AccessDenied::NoticeOutdated
    );
}

#[test]
fn a_notice_update_survives_a_vault_restart() {
    let store = memory();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    vault.define_purpose(newsletter(1)).unwrap();
    let c = vault.create_customer().unwrap();
    consent(&vault, c, "newsletter");
    vault.define_purpose(newsletter(3)).unwrap();
    drop(vault);
    let vault = vault_on(store, &clock);
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::NoticeOutdated);
    assert!(matches!(vault.define_purpose(newsletter(2)), Err(Error::Invalid(_))));
}

// ----- special categories and evidence -----

#[test]
fn special_category_purposes_need_explicit_consent() {
    let (vault, _) = vault();
    vault
        .define_purpose(
            Purpose::new("health", LawfulBasis::Consent)
                .fields(["allergies"])
                .special_category(),
        )
        .unwrap();
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "allergies", "peanuts").unwrap();
    assert!(matches!(
        vault.give_consent(c, "health", Evidence::new("web-form")),
        Err(Error::Invalid(_))
    ));
    assert!(
        vault.consents(c).unwrap().is_empty(),
        "a refused consent leaves no record"
    );
    assert_eq!(denied(vault.authorize(c, "health")), AccessDenied::NoConsent);
    vault
        .give_consent(c, "health", Evidence::new("web-form").explicit())
        .unwrap();
    let pass = vault.authorize(c, "health").unwrap();
    assert_eq!(vault.reveal::<String>(&pass, "allergies").unwrap().expose(), "peanuts");
    assert!(vault.consents(c).unwrap()[0].evidence.is_explicit());
}

// ----- consent history -----

#[test]
fn consent_history_is_kept_never_overwritten() {
    let (vault, clock) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    let first = vault
        .give_consent(c, "newsletter", Evidence::new("web-form").source("v1"))
        .unwrap();
    clock.advance(Duration::days(1));
    let second = vault
        .give_consent(c, "newsletter", Evidence::new("app").source("v2"))
        .unwrap();
    clock.advance(Duration::days(1));
    vault.withdraw_consent(c, "newsletter").unwrap();
    clock.advance(Duration::days(1));
    let third = vault.give_consent(c, "newsletter", Evidence::new("paper")).unwrap();

    let records = vault.consents(c).unwrap();
    assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), [first, second, third]);
    let [r1, r2, r3] = &records[..] else { unreachable!() };
    assert_eq!(r1.given_at, t0());
    assert_eq!(r1.superseded_by, Some(second));
    assert_eq!(r1.withdrawn_at, None);
    assert_eq!(r1.evidence.source_ref(), Some("v1"));
    assert_eq!(r1.expires_at, Some(t0() + Duration::days(30)));
    assert_eq!(r2.given_at, t0() + Duration::days(1));
    assert_eq!(r2.withdrawn_at, Some(t0() + Duration::days(2)));
    assert_eq!(r2.superseded_by, None, "a withdrawn record is not superseded");
    assert_eq!(r2.evidence.method(), "app");
    assert_eq!(r3.given_at, t0() + Duration::days(3));
    assert_eq!((r3.withdrawn_at, r3.superseded_by), (None, None));
    let now = t0() + Duration::days(3);
    assert_eq!(
        records.iter().map(|r| r.state(now)).collect::<Vec<_>>(),
        [ConsentState::Superseded, ConsentState::Withdrawn, ConsentState::Given]
    );
    assert!(vault.authorize(c, "newsletter").is_ok());
}

#[test]
fn the_latest_record_wins_after_a_restart_even_within_one_microsecond() {
    // give, withdraw and give again without the clock moving: a vault reading the store
    // afresh must still see the last record as the current one.
    let store = memory();
    let clock = ManualClock::new(t0());
    let vault = process_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    vault.withdraw_consent(c, "newsletter").unwrap();
    consent(&vault, c, "newsletter");
    assert!(vault.authorize(c, "newsletter").is_ok());
    let restarted = process_on(store.clone(), &clock);
    assert!(restarted.authorize(c, "newsletter").is_ok());
    drop(restarted);
    // And the other way round: give, give (renewal), withdraw.
    let d = customer_with_data(&vault);
    consent(&vault, d, "newsletter");
    consent(&vault, d, "newsletter");
    vault.withdraw_consent(d, "newsletter").unwrap();
    let restarted = process_on(store, &clock);
    assert_eq!(denied(restarted.authorize(d, "newsletter")), AccessDenied::Withdrawn);
}

#[test]
fn state_survives_a_vault_restart() {
    let store = memory();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    let w = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    consent(&vault, w, "newsletter");
    vault.withdraw_consent(w, "newsletter").unwrap();
    drop(vault);
    let vault = vault_on(store, &clock);
    let pass = vault.authorize(c, "newsletter").unwrap();
    assert_eq!(
        vault.reveal::<String>(&pass, "email").unwrap().expose(),
        "alice@example.com"
    );
    assert_eq!(denied(vault.authorize(w, "newsletter")), AccessDenied::Withdrawn);
}

// ----- withdrawal through a pass held by another thread -----

#[test]
fn withdrawal_reaches_a_pass_held_by_another_thread() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let vault = Arc::new(vault);
    let pass: AccessPass = vault.authorize(c, "newsletter").unwrap();

    let (revealed_tx, revealed_rx) = mpsc::channel::<()>();
    let (withdrawn_tx, withdrawn_rx) = mpsc::channel::<()>();
    let reader = {
        let vault = vault.clone();
        std::thread::spawn(move || {
            let mut successes = 0u64;
            loop {
                // Read the message first: a reveal started after it must fail.
                let told = withdrawn_rx.try_recv().is_ok();
                let result = vault.reveal::<String>(&pass, "email");
                if told {
                    return (successes, result.map(|r| r.expose().clone()));
                }
                match result {
                    Ok(v) => {
                        assert_eq!(v.expose(), "alice@example.com");
                        successes += 1;
                        if successes == 1 {
                            revealed_tx.send(()).unwrap();
                        }
                    }
                    // A reveal that raced with the withdrawal may already fail; keep going
                    // until told, so the last reveal is known to start after the return.
                    Err(Error::Denied(AccessDenied::Withdrawn)) => {}
                    Err(e) => panic!("unexpected error {e:?}"),
                }
            }
        })
    };
    revealed_rx.recv().unwrap();
    vault.withdraw_consent(c, "newsletter").unwrap();
    withdrawn_tx.send(()).unwrap();
    let (successes, after) = reader.join().unwrap();
    assert!(successes >= 1);
    assert!(
        matches!(after, Err(Error::Denied(AccessDenied::Withdrawn))),
        "reveal after withdraw returned: {after:?}"
    );
}

#[test]
fn withdrawal_reaches_passes_in_many_threads_at_once() {
    const THREADS: usize = 4;
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let vault = Arc::new(vault);
    let before = Arc::new(Barrier::new(THREADS + 1));
    let after = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (vault, before, after) = (vault.clone(), before.clone(), after.clone());
            // Each thread gets its own pass, issued in that thread.
            std::thread::spawn(move || {
                let pass = vault.authorize(c, "newsletter").unwrap();
                let sealed: Sealed<String> = vault.seal(c, "first_name", &"Alice".to_string()).unwrap();
                assert!(vault.reveal::<String>(&pass, "email").is_ok());
                before.wait();
                after.wait();
                (
                    vault.reveal::<String>(&pass, "email").map(|_| ()),
                    sealed.open(&pass).map(|_| ()),
                )
            })
        })
        .collect();
    before.wait();
    vault.withdraw_consent(c, "newsletter").unwrap();
    after.wait();
    for h in handles {
        let (reveal, open) = h.join().unwrap();
        assert_eq!(denied(reveal), AccessDenied::Withdrawn);
        assert_eq!(denied(open), AccessDenied::Withdrawn);
    }
}

#[test]
fn vault_and_pass_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Vault>();
    assert_send_sync::<AccessPass>();
    assert_send_sync::<Sealed<String>>();
}

// ----- a bounded cache, and several vaults on one store -----

#[test]
fn a_tiny_cache_still_reaches_every_issued_pass() {
    let clock = ManualClock::new(t0());
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(MemoryStore::new())
        .clock(clock)
        .cache_capacity(1)
        .build()
        .unwrap();
    define_standard_purposes(&vault);
    let customers: Vec<_> = (0..100)
        .map(|_| {
            let c = customer_with_data(&vault);
            consent(&vault, c, "newsletter");
            c
        })
        .collect();
    let passes: Vec<AccessPass> = customers
        .iter()
        .map(|&c| vault.authorize(c, "newsletter").unwrap())
        .collect();
    // Customers without passes come and go through the cache meanwhile.
    for _ in 0..50 {
        let c = customer_with_data(&vault);
        consent(&vault, c, "newsletter");
        vault.withdraw_consent(c, "newsletter").unwrap();
        assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Withdrawn);
    }
    for (&c, pass) in customers.iter().zip(&passes).step_by(2) {
        vault.withdraw_consent(c, "newsletter").unwrap();
        assert_eq!(denied(vault.reveal::<String>(pass, "email")), AccessDenied::Withdrawn);
    }
    for (i, pass) in passes.iter().enumerate() {
        let result = vault.reveal::<String>(pass, "email");
        if i % 2 == 0 {
            assert_eq!(denied(result), AccessDenied::Withdrawn);
        } else {
            assert_eq!(result.unwrap().expose(), "alice@example.com");
        }
    }
    drop(passes);
    // Reloaded from the store after eviction, every customer's state is right.
    for (i, &c) in customers.iter().enumerate() {
        let result = vault.authorize(c, "newsletter");
        if i % 2 == 0 {
            assert_eq!(denied(result), AccessDenied::Withdrawn);
        } else {
            assert!(result.is_ok());
        }
    }
}

#[test]
fn erasure_reaches_a_pass_held_by_another_thread() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let vault = Arc::new(vault);
    let pass = vault.authorize(c, "newsletter").unwrap();
    let sealed: Sealed<String> = vault.seal(c, "email", &"kept@example.com".to_string()).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (erased_tx, erased_rx) = mpsc::channel::<()>();
    let reader = {
        let vault = vault.clone();
        std::thread::spawn(move || {
            assert!(vault.reveal::<String>(&pass, "email").is_ok());
            assert!(sealed.open(&pass).is_ok());
            ready_tx.send(()).unwrap();
            erased_rx.recv().unwrap();
            (
                vault.reveal::<String>(&pass, "email").map(drop),
                sealed.open(&pass).map(drop),
            )
        })
    };
    ready_rx.recv().unwrap();
    vault.erase_customer(c).unwrap();
    erased_tx.send(()).unwrap();
    let (reveal, open) = reader.join().unwrap();
    assert!(matches!(reveal, Err(Error::Erased(_))), "{reveal:?}");
    assert!(matches!(open, Err(Error::Erased(_))), "{open:?}");
}

/// Two vaults (two processes) on one store; the second re-reads cached state after `ttl`.
fn two_vaults(new_store: NewStore, ttl: Duration) -> (Vault, Vault, ManualClock) {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let a = process_on(store.clone(), &clock);
    define_standard_purposes(&a);
    let b = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock.clone())
        .cache_ttl(ttl)
        .build()
        .unwrap();
    (a, b, clock)
}

fn changes_by_another_vault_arrive_within_the_cache_ttl(new_store: NewStore) {
    let ttl = Duration::seconds(10);
    let (a, b, clock) = two_vaults(new_store, ttl);
    let w = customer_with_data(&a);
    let r = customer_with_data(&a);
    let e = customer_with_data(&a);
    for c in [w, r, e] {
        consent(&a, c, "newsletter");
    }
    let passes: Vec<AccessPass> = [w, r, e]
        .iter()
        .map(|&c| b.authorize(c, "newsletter").unwrap())
        .collect();
    a.withdraw_consent(w, "newsletter").unwrap();
    a.restrict(r).unwrap();
    a.erase_customer(e).unwrap();
    // Within the time-to-live, b still uses what it cached (the documented contract)...
    clock.advance(ttl - Duration::microseconds(1));
    assert!(b.authorize(w, "newsletter").is_ok());
    // ...and after it, re-reads: new passes and old ones are refused.
    clock.advance(Duration::microseconds(1));
    assert_eq!(denied(b.authorize(w, "newsletter")), AccessDenied::Withdrawn);
    assert_eq!(denied(b.reveal::<String>(&passes[0], "email")), AccessDenied::Withdrawn);
    assert_eq!(denied(b.authorize(r, "newsletter")), AccessDenied::Restricted);
    assert_eq!(
        denied(b.reveal::<String>(&passes[1], "email")),
        AccessDenied::Restricted
    );
    assert!(matches!(b.authorize(e, "newsletter"), Err(Error::Erased(_))));
    assert!(matches!(b.reveal::<String>(&passes[2], "email"), Err(Error::Erased(_))));
    // b can take a new consent itself, and it opens at once.
    consent(&b, w, "newsletter");
    assert!(b.authorize(w, "newsletter").is_ok());
}

backend_tests!(changes_by_another_vault_arrive_within_the_cache_ttl);

// ----- redefinitions cannot turn an old record into something it never was -----

#[test]
fn a_purpose_turned_special_category_needs_explicit_consent_again() {
    let (vault, _) = vault();
    let health = || Purpose::new("health", LawfulBasis::Consent).fields(["allergies"]);
    vault.define_purpose(health()).unwrap();
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "allergies", "peanuts").unwrap();
    vault.give_consent(c, "health", Evidence::new("web-form")).unwrap();
    assert!(vault.authorize(c, "health").is_ok());
    // Same notice version, now special category: the plain consent no longer suffices.
    vault.define_purpose(health().special_category()).unwrap();
    assert_eq!(denied(vault.authorize(c, "health")), AccessDenied::NoConsent);
    vault
        .give_consent(c, "health", Evidence::new("web-form").explicit())
        .unwrap();
    assert!(vault.authorize(c, "health").is_ok());
}

#[test]
fn a_purpose_whose_lawful_basis_changed_needs_a_record_of_the_new_basis() {
    let (vault, _) = vault();
    let profile = |basis| Purpose::new("profile", basis).fields(["email"]);
    vault.define_purpose(profile(LawfulBasis::Contract)).unwrap();
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "a@example.com").unwrap();
    vault.give_consent(c, "profile", Evidence::new("contract")).unwrap();
    assert!(vault.authorize(c, "profile").is_ok());
    // Now based on consent: a contract record is not the customer's consent.
    vault.define_purpose(profile(LawfulBasis::Consent)).unwrap();
    assert_eq!(denied(vault.authorize(c, "profile")), AccessDenied::NoConsent);
    vault.give_consent(c, "profile", Evidence::new("web-form")).unwrap();
    assert!(vault.authorize(c, "profile").is_ok());
    assert_eq!(
        vault.consents(c).unwrap().iter().map(|r| r.basis).collect::<Vec<_>>(),
        [LawfulBasis::Contract, LawfulBasis::Consent]
    );
}
