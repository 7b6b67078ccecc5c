//! The tracing canary: unique values are planted as personal data (and, where a caller could
//! put them, as names), every public vault operation runs with a subscriber that records
//! everything egard emits — every span with its fields, every event, at TRACE level — and the
//! canaries, the lookup value and the master key must appear nowhere in that output.
//!
//! It also checks that the output is useful: the operations, the audit codes with their
//! denial reasons, and the store round trips with their durations are there.

#![cfg(feature = "tracing")]

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone, Utc};
use egard::{
    Controller, Error, Evidence, LawfulBasis, Lookup, ManualClock, MasterKey, Normalizer, Purpose, ReceiptSigner,
    SqliteStore, Vault,
};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything the subscriber writes, kept in memory.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = Output;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn canary(label: &str) -> String {
    format!("CANARY{label}{}", egard::CustomerId::new().as_uuid().simple())
}

/// Runs `f` with a subscriber that records everything at TRACE, spans with their fields
/// when they open and close (with their durations).
fn traced(f: impl FnOnce()) -> String {
    let out = Output::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(out.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    out.text()
}

#[test]
fn a_subscriber_receives_ids_codes_and_durations_never_personal_data() {
    let email = canary("email");
    let name = canary("name");
    let phone = canary("phone");
    let stranger = canary("stranger");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traced.db");
    let key = [0x5a; 32];
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();

    let mut lower_email = String::new();
    let output = traced(|| {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap());
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes(key))
            .store(SqliteStore::open(&path).unwrap())
            .clock(clock.clone())
            .controller(
                Controller::new("Example Shop SAS")
                    .jurisdiction("FR")
                    .policy_url("https://shop.example/privacy"),
            )
            .build()
            .unwrap();
        vault
            .define_purpose(
                Purpose::new("newsletter", LawfulBasis::Consent)
                    .fields(["email", "name"])
                    .consent_lifetime(Duration::days(30)),
            )
            .unwrap();
        vault
            .define_purpose(Purpose::new("support", LawfulBasis::Contract).fields(["name", "phone"]))
            .unwrap();
        vault.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();

        let alice = vault.create_customer().unwrap();
        vault.set_field(alice, "email", &email).unwrap();
        vault.set_field(alice, "name", &name).unwrap();
        vault.set_field(alice, "phone", &phone).unwrap();
        vault.set_field(alice, "name", &name).unwrap(); // a rectification
        lower_email = Normalizer::Email.normalize(&email).unwrap().to_string();

        // A lookup found, one not found: neither value may appear.
        assert_eq!(vault.find_customer("email", &email).unwrap(), Some(alice));
        assert_eq!(vault.find_customer("email", &stranger).unwrap(), None);

        // Denied, granted, revealed, sealed.
        assert!(matches!(vault.authorize(alice, "newsletter"), Err(Error::Denied(_))));
        let consent = vault
            .give_consent(alice, "newsletter", Evidence::new("web-form"))
            .unwrap();
        let pass = vault.authorize(alice, "newsletter").unwrap();
        assert_eq!(vault.reveal::<String>(&pass, "email").unwrap().expose(), &email);
        let _sealed = vault.seal(alice, "name", &name).unwrap();
        let mailer = vault.acting_as("service:mailer").unwrap();
        let pass_of_mailer = mailer.authorize(alice, "newsletter").unwrap();
        assert_eq!(
            mailer.reveal::<String>(&pass_of_mailer, "email").unwrap().expose(),
            &email
        );
        assert!(vault.acting_as(&format!("{email}@example.com")).is_err());
        vault.access_log(alice).unwrap();
        vault.consents(alice).unwrap();

        // Canaries where a name belongs: the caller passed personal data by mistake.
        assert!(vault.authorize(alice, &email).is_err());
        assert!(vault.set_field(alice, &phone, &phone).is_err());
        assert!(vault.find_customer(&name, &email).is_err());
        assert!(vault.give_consent(alice, &stranger, Evidence::new("web-form")).is_err());

        // Reach, the change feed, a receipt.
        assert_eq!(vault.audience("newsletter").unwrap().count(), 1);
        vault.needs_reconsent("newsletter").unwrap().for_each(drop);
        vault.changes_since(0, 100).unwrap();
        let signer = ReceiptSigner::generate().unwrap();
        vault.consent_receipt(consent, &signer).unwrap();

        // Rights: export, restriction, objection, withdrawal, key rotation, erasure, sweep.
        let export = vault.export_customer(alice, Evidence::new("support-ticket")).unwrap();
        drop(export);
        vault.restrict(alice).unwrap();
        vault.lift_restriction(alice).unwrap();
        vault.withdraw_consent(alice, "newsletter").unwrap();
        assert!(matches!(vault.reveal::<String>(&pass, "email"), Err(Error::Denied(_))));
        vault.rotate_customer_key(alice).unwrap();
        vault.rotate_master_key().unwrap();
        vault.keys_below(1).unwrap();
        clock.advance(Duration::days(400));
        vault.sweep_retention().unwrap();
        vault.erase_customer(alice).unwrap();
        assert!(matches!(vault.authorize(alice, "support"), Err(Error::Erased(_))));

        // The log.
        vault.audit_events(alice).unwrap();
        let anchor = vault.audit_anchor().unwrap();
        vault.verify_audit_against(&anchor).unwrap();
        vault.verify_audit().unwrap();
    });

    for planted in [&email, &name, &phone, &stranger, &lower_email, &key_hex] {
        assert!(
            !output.contains(planted.as_str()),
            "a subscriber received a planted value"
        );
    }
    assert!(
        !output.to_lowercase().contains("canary"),
        "a subscriber received a canary"
    );

    // And it is worth subscribing to: operations, decisions with reasons, store latency.
    for expected in [
        "egard.authorize",
        "egard.reveal",
        "egard.find_customer",
        "egard.export_customer",
        "egard.erase_customer",
        "egard.rotate_master_key",
        "egard.verify_audit",
        "kind=\"access_granted\"",
        "kind=\"access_denied\"",
        "detail=\"no_consent\"",
        "kind=\"consent_withdrawn\"",
        "kind=\"looked_up\"",
        "actor=\"service:mailer\"",
        "egard.access_log",
        "op=\"apply\"",
        "micros=",
        "time.busy",
        "(invalid)",
    ] {
        assert!(output.contains(expected), "missing from the trace: {expected}");
    }
    // A denial's span ends with its reason.
    assert!(
        output.contains("error=access denied"),
        "a denial is not visible as an error event"
    );
}

#[test]
fn nothing_is_emitted_below_the_subscriber_level() {
    let output = traced(|| {
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([3; 32]))
            .store(egard::MemoryStore::new())
            .build()
            .unwrap();
        vault
            .define_purpose(Purpose::new("support", LawfulBasis::Contract).fields(["name"]))
            .unwrap();
        let c = vault.create_customer().unwrap();
        vault.set_field(c, "name", "x").unwrap();
        vault.give_consent(c, "support", Evidence::new("contract")).unwrap();
        vault.authorize(c, "support").unwrap();
    });
    assert!(output.contains("egard.authorize"));

    let quiet = Output::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(quiet.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([3; 32]))
            .store(egard::MemoryStore::new())
            .build()
            .unwrap();
        vault
            .define_purpose(Purpose::new("support", LawfulBasis::Contract).fields(["name"]))
            .unwrap();
        let c = vault.create_customer().unwrap();
        vault.give_consent(c, "support", Evidence::new("contract")).unwrap();
        assert!(vault.authorize(c, "support").is_ok());
        assert!(vault.authorize(c, "nothing").is_err());
    });
    assert_eq!(quiet.text(), "", "egard wrote at WARN or above during normal operation");
}
