//! Leak canaries: unique values are planted in every field, every public operation runs
//! (failures included), and every `Debug` and `Display` of every value and error obtained,
//! every audit event (Debug and JSON), and every byte the storage layer receives is captured.
//! The canaries must appear nowhere but in a `Revealed` (read through `expose`) and in the
//! serialized `SubjectExport` (which is the customer's data, by design).
//!
//! egard writes no log of its own; what it reports to a `tracing` subscriber is checked by
//! `tests/tracing_canary.rs`.

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone, Utc};
use egard::store::{CustomerSnapshot, PurposeSnapshot, StoredField, VaultSecret, Write};
use egard::{
    AccessPass, AuditEvent, CustomerId, Error, Evidence, FieldName, LawfulBasis, ManualClock, MasterKey, MemoryStore,
    Purpose, PurposeId, Revealed, Sealed, Store, StoreError, Vault,
};
use serde::{Deserialize, Serialize};

/// A store that records every write batch it receives (as Debug, as JSON where the parts
/// serialize, and the raw ciphertext bytes) and forwards everything to a `MemoryStore`.
struct RecordingStore {
    inner: MemoryStore,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl RecordingStore {
    fn record(&self, bytes: &[u8]) {
        let mut seen = self.seen.lock().unwrap();
        seen.extend_from_slice(bytes);
        seen.push(b'\n');
    }
}

impl Store for RecordingStore {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.record(format!("{batch:?}").as_bytes());
        for w in batch {
            let json = match w {
                Write::PutPurpose { stored, .. } => serde_json::to_vec(stored),
                Write::InsertCustomer(r) | Write::UpdateCustomer { record: r, .. } => serde_json::to_vec(r),
                Write::PutKey(k) => {
                    self.record(&k.wrapped);
                    serde_json::to_vec(k)
                }
                Write::PutField { envelope, .. } => {
                    self.record(envelope);
                    Ok(Vec::new())
                }
                Write::PutConsent(c) => serde_json::to_vec(c),
                Write::PutObjection(o) => serde_json::to_vec(o),
                Write::AppendAudit(e) => serde_json::to_vec(e),
                Write::InsertSecret(v) | Write::ReplaceSecret(v) => {
                    self.record(&v.wrapped);
                    serde_json::to_vec(v)
                }
                _ => Ok(Vec::new()),
            };
            self.record(&json.unwrap());
        }
        self.inner.apply(batch)
    }
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        self.inner.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        self.inner.customer(id)
    }
    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
        self.inner.field(customer, field)
    }
    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
        self.inner.fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        self.inner.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        self.inner.audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_for(customer)
    }
    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        self.inner.secret(name)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, StoreError> {
        self.inner.lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<egard::CustomerId>, StoreError> {
        self.inner.find_indexed(field, token)
    }
}

/// Everything printed or serialized during the test that must not hold a canary.
#[derive(Default)]
struct Capture(Vec<String>);

impl Capture {
    fn debug(&mut self, x: &impl Debug) {
        self.0.push(format!("{x:?}"));
        self.0.push(format!("{x:#?}"));
    }

    fn show(&mut self, x: &(impl Debug + Display)) {
        self.debug(x);
        self.0.push(x.to_string());
    }

    fn json(&mut self, x: &impl Serialize) {
        self.0.push(serde_json::to_string(x).unwrap());
    }

    /// Captures a result: its value's Debug, or the error's Debug, Display and sources.
    fn result<T: Debug>(&mut self, r: &Result<T, Error>) {
        match r {
            Ok(v) => self.debug(v),
            Err(e) => {
                self.show(e);
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    self.0.push(format!("{s} / {s:?}"));
                    source = s.source();
                }
            }
        }
    }

    fn expect_err<T: Debug>(&mut self, r: Result<T, Error>) -> Error {
        self.result(&r);
        r.expect_err("this operation should fail")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Address {
    street: String,
    city: String,
}

fn canary(label: &str) -> String {
    format!("CANARY{label}{}", CustomerId::new().as_uuid().simple())
}

#[test]
fn canaries_never_leak_outside_revealed_values_and_exports() {
    let email = canary("email");
    let name = canary("name");
    let street = canary("street");
    let phone = canary("phone");
    let notes = canary("notes");
    let wrong = canary("wrong");
    let all = [&email, &name, &street, &phone, &notes, &wrong];

    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::new(RecordingStore {
        inner: MemoryStore::new(),
        seen: seen.clone(),
    });
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 2, 1, 8, 0, 0).unwrap());
    let mut cap = Capture::default();

    let builder = Vault::builder()
        .master_key(MasterKey::from_bytes([21; 32]).with_id(1))
        .store(store.clone())
        .clock(clock.clone())
        .max_value_len(256);
    cap.debug(&builder);
    let vault = builder.build().unwrap();
    cap.debug(&vault);

    let purposes = [
        Purpose::new("news", LawfulBasis::Consent)
            .fields(["email", "name"])
            .consent_lifetime(Duration::days(30))
            .retention(Duration::days(1)),
        Purpose::new("ship", LawfulBasis::Contract).fields(["name", "address", "notes"]),
        Purpose::new("ads", LawfulBasis::LegitimateInterests)
            .fields(["email", "phone"])
            .direct_marketing(),
        Purpose::new("health", LawfulBasis::Consent)
            .fields(["notes"])
            .special_category(),
    ];
    for p in &purposes {
        cap.debug(p);
        cap.result(&vault.define_purpose(p.clone()));
    }
    cap.debug(&vault.purposes());

    let alice = vault.create_customer().unwrap();
    let bob = vault.create_customer().unwrap();
    cap.show(&alice);

    // Plant the canaries in every field, with several value types.
    cap.result(&vault.set_field(alice, "email", &email));
    cap.result(&vault.set_field(alice, "name", &name));
    let address = Address {
        street: street.clone(),
        city: "Lyon".into(),
    };
    cap.result(&vault.set_field(alice, "address", &address));
    cap.result(&vault.set_field(alice, "phone", &vec![phone.clone()]));
    cap.result(&vault.set_field(alice, "notes", notes.as_bytes()));
    cap.result(&vault.set_field(bob, "email", &wrong));
    // A rewrite (rectification) with the same canary.
    cap.result(&vault.set_field(alice, "email", &email));

    // Failures while writing: an unknown field, too large, a value that cannot be encoded,
    // identifiers that break the rules (their errors must not repeat the input).
    cap.expect_err(vault.set_field(alice, "shoe_size", &email));
    cap.expect_err(vault.set_field(alice, "notes", &email.repeat(20)));
    let unencodable: HashMap<Vec<u8>, String> = [(vec![1u8], email.clone())].into();
    assert!(matches!(
        cap.expect_err(vault.set_field(alice, "notes", &unencodable)),
        Error::Codec { .. }
    ));
    cap.expect_err(vault.set_field(alice, &email, &email));
    cap.expect_err(FieldName::new(&email));
    cap.expect_err(PurposeId::new(&email));
    cap.expect_err(email.parse::<CustomerId>());
    cap.expect_err(vault.authorize(alice, &email));
    cap.expect_err(vault.give_consent(alice, "health", Evidence::new("web-form")));

    // Sealed values: Debug, JSON and bytes are ciphertext only.
    let sealed: Sealed<String> = vault.seal(alice, "email", &email).unwrap();
    cap.debug(&sealed);
    cap.json(&sealed);
    cap.0.push(String::from_utf8_lossy(&sealed.to_bytes()).into_owned());
    let sealed_address: Sealed<Address> = vault.seal(alice, "address", &address).unwrap();
    cap.debug(&sealed_address);
    cap.json(&sealed_address);
    cap.expect_err(vault.seal(alice, "notes", &email.repeat(20)));
    let mut tampered = sealed.to_bytes();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = Sealed::<String>::from_bytes(&tampered).unwrap();
    cap.expect_err(Sealed::<String>::from_bytes(&tampered.to_bytes()[..20]));
    cap.expect_err(serde_json::from_str::<Sealed<String>>(&email).map_err(|_| Error::Invalid("json")));

    // The gate: denied before consent, then open, then every way a reveal can fail.
    cap.expect_err(vault.authorize(alice, "news"));
    cap.result(&vault.give_consent(alice, "news", Evidence::new("web-form").source("signup")));
    cap.result(&vault.give_consent(alice, "ship", Evidence::new("contract")));
    cap.result(&vault.give_consent(alice, "ads", Evidence::new("legitimate-interest")));
    cap.result(&vault.give_consent(alice, "health", Evidence::new("web-form").explicit()));
    cap.result(&vault.give_consent(bob, "news", Evidence::new("web-form")));
    let news: AccessPass = vault.authorize(alice, "news").unwrap();
    let ship = vault.authorize(alice, "ship").unwrap();
    let ads = vault.authorize(alice, "ads").unwrap();
    let health = vault.authorize(alice, "health").unwrap();
    let bobs = vault.authorize(bob, "news").unwrap();
    for pass in [&news, &ship, &ads, &health, &bobs] {
        cap.debug(pass);
        cap.debug(&pass.fields());
    }

    let revealed: Revealed<String> = vault.reveal(&news, "email").unwrap();
    assert_eq!(revealed.expose(), &email, "the canary is really stored and opens");
    cap.show(&revealed);
    let r_name: Revealed<String> = vault.reveal(&news, "name").unwrap();
    cap.show(&r_name);
    let r_address: Revealed<Address> = vault.reveal(&ship, "address").unwrap();
    assert_eq!(r_address.expose(), &address);
    cap.show(&r_address);
    let r_notes: Revealed<Vec<u8>> = vault.reveal(&health, "notes").unwrap();
    assert_eq!(r_notes.expose(), notes.as_bytes());
    cap.show(&r_notes);
    let r_phone: Revealed<Vec<String>> = vault.reveal(&ads, "phone").unwrap();
    cap.show(&r_phone);
    cap.show(&sealed.open(&news).unwrap());
    cap.show(&sealed_address.open(&ship).unwrap());

    // Decoding as the wrong type: serde's own message would quote the value.
    assert!(matches!(
        cap.expect_err(vault.reveal::<u64>(&news, "email")),
        Error::Codec { .. }
    ));
    cap.expect_err(vault.reveal::<Address>(&news, "email"));
    cap.expect_err(vault.reveal::<String>(&news, "address"));
    cap.expect_err(vault.reveal::<String>(&news, &email));
    cap.expect_err(sealed.open(&bobs));
    cap.expect_err(sealed.open(&ship));
    cap.expect_err(tampered.open(&news));
    cap.expect_err(Sealed::<u64>::from_bytes(&sealed.to_bytes()).unwrap().open(&news));

    // Rights and lifecycle, each with its failures.
    cap.result(&vault.consents(alice));
    cap.result(&vault.restrict(alice));
    cap.expect_err(vault.reveal::<String>(&ship, "name"));
    cap.expect_err(vault.authorize(alice, "ship"));
    cap.result(&vault.lift_restriction(alice));
    cap.result(&vault.object(alice, "ads"));
    cap.expect_err(vault.reveal::<String>(&ads, "email"));
    cap.expect_err(vault.object(alice, "news"));
    cap.expect_err(vault.give_consent(alice, "ads", Evidence::new("again")));
    cap.result(&vault.withdraw_consent(alice, "news"));
    cap.expect_err(vault.reveal::<String>(&news, "email"));
    clock.advance(Duration::days(40));
    cap.expect_err(vault.reveal::<String>(&ship, "name"));
    cap.result(&vault.sweep_retention());

    // Actors: personal data offered as an actor is refused without being repeated; the
    // access log (Debug, JSON) holds ids and names only.
    // (The canaries are letters and digits: as an address or a full name they are refused.)
    cap.expect_err(vault.acting_as(&format!("{email}@example.com")));
    cap.expect_err(egard::Actor::new(&format!("{name} Martin")));
    let agent = vault.acting_as("support:agent-42").unwrap();
    cap.debug(&agent);
    cap.expect_err(agent.authorize(alice, "news"));
    cap.result(&agent.set_field(alice, "name", &name));
    let log = vault.access_log(alice).unwrap();
    assert!(
        log.iter()
            .any(|r| r.actor.as_ref().is_some_and(|a| a.as_str() == "support:agent-42"))
    );
    for record in &log {
        cap.debug(record);
        cap.json(record);
    }

    let export = vault
        .export_customer(alice, Evidence::new("verified-email-link"))
        .unwrap();
    cap.debug(&export);
    let export_json = serde_json::to_string(&export).unwrap();
    assert!(export_json.contains(&street), "the export holds the customer's data");
    for event in &export.audit_events {
        cap.debug(event);
        cap.json(event);
    }
    for consent in &export.consents {
        cap.debug(consent);
        cap.json(consent);
    }

    let events = vault.audit_events(alice).unwrap();
    assert!(events.len() > 20);
    for event in events.iter().chain(&vault.audit_events(bob).unwrap()) {
        cap.debug(event);
        cap.json(event);
    }
    cap.result(&vault.verify_audit());

    // Key rotation, then erasure and everything after it (two vaults on the store at once,
    // as two processes would be: with a cache time-to-live).
    drop(vault);
    let rotated = Vault::builder()
        .master_key(MasterKey::from_bytes([22; 32]).with_id(2))
        .previous_master_key(MasterKey::from_bytes([21; 32]).with_id(1))
        .store(store.clone())
        .clock(clock.clone())
        .cache_ttl(chrono::Duration::seconds(1))
        .build()
        .unwrap();
    cap.debug(&rotated);
    cap.result(&rotated.rotate_master_key());
    let wrong_key = Vault::builder()
        .master_key(MasterKey::from_bytes([23; 32]).with_id(2))
        .store(store.clone())
        .cache_ttl(chrono::Duration::seconds(1))
        .build();
    cap.expect_err(wrong_key);
    let wrong_id = Vault::builder()
        .master_key(MasterKey::from_bytes([23; 32]).with_id(9))
        .store(store.clone())
        .cache_ttl(chrono::Duration::seconds(1))
        .build();
    cap.expect_err(wrong_id);
    cap.result(&rotated.erase_customer(alice));
    cap.expect_err(rotated.erase_customer(alice));
    cap.expect_err(rotated.set_field(alice, "email", &email));
    cap.expect_err(rotated.authorize(alice, "ship"));
    cap.expect_err(rotated.export_customer(alice, Evidence::new("verified-email-link")));
    cap.expect_err(rotated.seal(alice, "email", &email));
    cap.result(&rotated.verify_audit());
    cap.debug(&store.inner);

    // Nothing captured holds a canary.
    for text in &cap.0 {
        for c in all {
            assert!(!text.contains(c.as_str()), "canary leaked into: {text}");
        }
    }
    assert!(cap.0.len() > 150, "the test captured what it should");

    // The storage layer never received a canary in clear.
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 10_000);
    assert!(
        String::from_utf8_lossy(&seen).contains(&alice.to_string()),
        "the recording works"
    );
    for c in all {
        assert!(
            !seen.windows(c.len()).any(|w| w == c.as_bytes()),
            "a canary reached the store in clear"
        );
    }
}

/// The same canaries through a SQLite database file: no byte of the file, its write-ahead
/// log or its shared-memory index holds one in clear.
#[cfg(feature = "sqlite")]
#[test]
fn canaries_never_reach_a_sqlite_file_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canary.db");
    let canaries = [canary("email"), canary("name"), canary("street"), canary("notes")];
    {
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([21; 32]))
            .store(egard::SqliteStore::open(&path).unwrap())
            .build()
            .unwrap();
        vault
            .define_purpose(Purpose::new("ship", LawfulBasis::Contract).fields(["email", "name", "address", "notes"]))
            .unwrap();
        let alice = vault.create_customer().unwrap();
        let bob = vault.create_customer().unwrap();
        for (field, value) in ["email", "name", "address", "notes"].iter().zip(&canaries) {
            vault.set_field(alice, field, value).unwrap();
            vault.set_field(bob, field, value).unwrap();
            assert!(vault.set_field(alice, "shoe_size", value).is_err());
        }
        vault.give_consent(alice, "ship", Evidence::new("contract")).unwrap();
        let pass = vault.authorize(alice, "ship").unwrap();
        assert_eq!(vault.reveal::<String>(&pass, "email").unwrap().expose(), &canaries[0]);
        assert!(vault.reveal::<u64>(&pass, "name").is_err());
        vault
            .export_customer(alice, Evidence::new("verified-email-link"))
            .unwrap();
        vault.erase_customer(bob).unwrap();
        vault.verify_audit().unwrap();
    }
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 4096, "the database was written");
    for c in &canaries {
        assert!(
            !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
            "a canary is in the SQLite file in clear"
        );
    }
}
