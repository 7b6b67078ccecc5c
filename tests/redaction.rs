//! No personal data, and no key material, in any `Debug` or `Display` output, error, audit
//! event or stored byte: a canary value is planted as a field value, in the master key bytes
//! and in evidence text, and searched for everywhere.

mod common;

use std::fmt::Debug;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use chrono::Duration;
use common::*;
use egard::crypto::{FieldEnvelope, WrappedKeyEnvelope};
use egard::store::Write;
use egard::{
    AccessDenied, AuditBreak, ConsentState, CustomerId, Error, Evidence, FieldName, LawfulBasis, ManualClock,
    MasterKey, MemoryStore, Purpose, PurposeId, Revealed, Sealed, Store, StoreError, SystemClock, Vault,
};

/// Master key bytes with the canary inside.
fn canary_key_bytes() -> [u8; 32] {
    let mut key = [0x5a; 32];
    key[..CANARY.len()].copy_from_slice(CANARY.as_bytes());
    key
}

/// Every way the canary (or the key bytes around it) could be spelled in text. (Each is long
/// enough that random hex or byte lists cannot match by chance.)
fn spellings() -> Vec<String> {
    let bytes = CANARY.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let decimal = bytes[..6].iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    let base64 = base64::engine::general_purpose::STANDARD.encode(&bytes[..9]);
    vec![
        CANARY.to_string(),
        CANARY.to_lowercase(),
        hex.clone(),
        hex.to_uppercase(),
        decimal,
        base64,
    ]
}

#[track_caller]
fn assert_clean_text(what: &str, text: &str) {
    for s in spellings() {
        assert!(!text.contains(&s), "{what} contains the canary as {s:?}: {text}");
    }
}

/// Checks `Debug` (plain and pretty).
#[track_caller]
fn clean<T: Debug + ?Sized>(what: &str, value: &T) {
    assert_clean_text(what, &format!("{value:?}"));
    assert_clean_text(what, &format!("{value:#?}"));
}

/// Checks `Debug` and `Display`.
#[track_caller]
fn clean_both<T: Debug + std::fmt::Display + ?Sized>(what: &str, value: &T) {
    clean(what, value);
    assert_clean_text(what, &value.to_string());
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

struct World {
    memory: Arc<MemoryStore>,
    store: Arc<TamperStore>,
    vault: Vault,
    clock: ManualClock,
    customer: CustomerId,
}

fn world() -> World {
    let memory = Arc::new(MemoryStore::new());
    let store = TamperStore::new(memory.clone());
    let clock = ManualClock::new(t0());
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(canary_key_bytes()))
        .store(store.clone())
        .clock(clock.clone())
        .max_value_len(64)
        .build()
        .unwrap();
    define_standard_purposes(&vault);
    vault
        .define_purpose(Purpose::new("fraud", LawfulBasis::LegitimateInterests).fields(["email"]))
        .unwrap();
    let customer = vault.create_customer().unwrap();
    vault.set_field(customer, "email", CANARY).unwrap();
    vault.set_field(customer, "first_name", CANARY).unwrap(); // written...
    vault.set_field(customer, "first_name", CANARY).unwrap(); // ...and rectified
    vault.set_field(customer, "address", &vec![CANARY, CANARY]).unwrap();
    vault
        .give_consent(
            customer,
            "newsletter",
            Evidence::new("web-form")
                .source("signup-v3")
                .notice_text(CANARY)
                .explicit(),
        )
        .unwrap();
    World {
        memory,
        store,
        vault,
        clock,
        customer,
    }
}

#[test]
fn the_canary_is_really_there_positive_control() {
    // Guards the other tests against a canary that never made it in.
    let w = world();
    let pass = w.vault.authorize(w.customer, "newsletter").unwrap();
    let email: Revealed<String> = w.vault.reveal(&pass, "email").unwrap();
    assert_eq!(email.expose(), CANARY);
    assert!(spellings().iter().all(|s| !s.is_empty()));
    assert!(format!("{:?}", email.expose()).contains(CANARY));
    let export = w
        .vault
        .export_customer(w.customer, Evidence::new("verified-email-link"))
        .unwrap();
    let json = serde_json::to_string(&export).unwrap();
    assert!(json.contains(CANARY), "the export is the customer's own data, in clear");
    assert!(format!("{:?}", canary_key_bytes()).contains(&spellings()[4]));
}

#[test]
fn revealed_prints_redacted() {
    let w = world();
    let pass = w.vault.authorize(w.customer, "newsletter").unwrap();
    let email: Revealed<String> = w.vault.reveal(&pass, "email").unwrap();
    assert_eq!(format!("{email}"), "[REDACTED]");
    assert_eq!(format!("{email:?}"), "[REDACTED]");
    assert_eq!(format!("{email:#?}"), "[REDACTED]");
    assert_eq!(format!("{email:>20}"), "[REDACTED]");
    let value: Revealed<serde_json::Value> = w.vault.reveal(&pass, "email").unwrap();
    assert_eq!(value.to_string(), "[REDACTED]");
    let opt: Revealed<Option<String>> = w.vault.reveal(&pass, "first_name").unwrap();
    clean_both("Revealed<Option<String>>", &opt);
    // Inside other structures too.
    clean(
        "Vec<Revealed>",
        &vec![email, w.vault.reveal::<String>(&pass, "first_name").unwrap()],
    );
    clean("Result<Revealed, _>", &w.vault.reveal::<String>(&pass, "email"));
}

#[test]
fn debug_of_every_public_type_hides_the_canary() {
    let w = world();
    let (vault, c) = (&w.vault, w.customer);
    let pass = vault.authorize(c, "newsletter").unwrap();
    let sealed: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();

    clean("Vault", vault);
    clean("MasterKey", &MasterKey::from_bytes(canary_key_bytes()));
    clean(
        "MasterKey with id",
        &MasterKey::from_bytes(canary_key_bytes()).with_id(9),
    );
    let hex: String = canary_key_bytes().iter().map(|b| format!("{b:02x}")).collect();
    clean("MasterKey from hex", &MasterKey::from_hex(&hex).unwrap());
    let builder = Vault::builder()
        .master_key(MasterKey::from_bytes(canary_key_bytes()))
        .previous_master_key(MasterKey::from_bytes(canary_key_bytes()).with_id(2))
        .store(MemoryStore::new());
    clean("VaultBuilder", &builder);
    let batched = Vault::builder()
        .master_key(MasterKey::from_bytes(canary_key_bytes()))
        .store(MemoryStore::new())
        .audit_batching(8, std::time::Duration::from_millis(5));
    clean("VaultBuilder with batching", &batched);
    let batched = batched.build().unwrap();
    clean("Vault with batching", &batched);
    clean(
        "AuditBatching",
        &egard::AuditBatching {
            max_events: 8,
            max_delay: std::time::Duration::from_millis(5),
        },
    );
    clean("MemoryStore", &*w.memory);
    clean("AccessPass", &pass);
    clean("Sealed", &sealed);
    clean("Sealed bytes", &sealed.to_bytes());
    assert_clean_text("Sealed JSON", &serde_json::to_string(&sealed).unwrap());
    clean("FieldEnvelope", &FieldEnvelope::parse(sealed.envelope()).unwrap());
    for consent in vault.consents(c).unwrap() {
        clean("Consent", &consent);
        clean("Evidence", &consent.evidence);
        assert_clean_text("Consent JSON", &serde_json::to_string(&consent).unwrap());
        clean("ConsentState", &consent.state(t0()));
        clean_both("ConsentId", &consent.id);
    }
    for purpose in vault.purposes() {
        clean("Purpose", &purpose);
    }
    clean("LawfulBasis", &LawfulBasis::LegitimateInterests);
    clean("ConsentState", &ConsentState::Given);
    clean_both("CustomerId", &c);
    clean_both("FieldName", &FieldName::new("email").unwrap());
    clean_both("PurposeId", &PurposeId::new("newsletter").unwrap());
    clean("ManualClock", &w.clock);
    clean("SystemClock", &SystemClock);

    // Store-level types, as a backend sees them.
    vault.object(c, "fraud").unwrap();
    let snapshot = w.store.customer(c).unwrap().unwrap();
    clean("CustomerSnapshot", &snapshot);
    assert_eq!(snapshot.objections.len(), 1);
    clean("Objection", &snapshot.objections[0]);
    clean("CustomerRecord", &snapshot.record);
    for key in &snapshot.keys {
        clean("WrappedKey", key);
        clean("WrappedKeyEnvelope", &WrappedKeyEnvelope::parse(&key.wrapped).unwrap());
        assert!(!contains_bytes(&key.wrapped, &canary_key_bytes()[..12]));
    }
    for field in w.store.fields(c).unwrap() {
        clean("StoredField", &field);
        clean(
            "Write::PutField",
            &Write::PutField {
                customer: c,
                field: field.field.clone(),
                version: field.version,
                envelope: field.envelope.clone(),
                at: t0(),
            },
        );
    }

    // The audit trail, in every form.
    vault.restrict(c).unwrap();
    vault.lift_restriction(c).unwrap();
    let _ = vault.authorize(c, "shipping");
    let events = vault.audit_events(c).unwrap();
    assert!(events.len() >= 8);
    for e in &events {
        clean("AuditEvent", e);
        clean("AuditKind", &e.kind);
        assert_clean_text("AuditEvent JSON", &serde_json::to_string(e).unwrap());
    }
    let report = vault.verify_audit().unwrap();
    clean("AuditReport", &report);
    for b in [AuditBreak::MacMismatch, AuditBreak::SequenceGap, AuditBreak::Truncated] {
        clean_both("AuditBreak", &b);
    }

    // Rights.
    let export = vault.export_customer(c, Evidence::new("verified-email-link")).unwrap();
    clean("SubjectExport", &export);
    // At every level: the map of values, and each value (the canary is in there).
    assert!(export.fields["email"].expose().contains(CANARY), "positive control");
    clean("SubjectExport.fields", &export.fields);
    for (name, value) in &export.fields {
        clean("ExportedValue", value);
        assert_eq!(format!("{value:?}"), "[REDACTED]", "{name}");
    }
    clean("SubjectExport.fields[\"email\"]", &export.fields["email"]);
    for event in &export.audit_events {
        clean("SubjectExport.audit_events", event);
    }
    clean("SubjectExport.consents", &export.consents);
    clean("SubjectExport.objections", &export.objections);
    w.clock.advance(Duration::days(400));
    let sweep = vault.sweep_retention().unwrap();
    assert!(!sweep.deleted.is_empty());
    clean("SweepReport", &sweep);
    let receipt = vault.erase_customer(c).unwrap();
    clean("ErasureReceipt", &receipt);
    assert_clean_text("ErasureReceipt JSON", &serde_json::to_string(&receipt).unwrap());
    clean("Vault after erasure", vault);
    for e in whole_log(&*w.store) {
        assert_clean_text("audit log JSON", &serde_json::to_string(&e).unwrap());
    }
}

#[test]
fn errors_never_carry_the_canary() {
    let w = world();
    let (vault, c) = (&w.vault, w.customer);
    let mut errors: Vec<(&str, Error)> = Vec::new();
    let mut push = |what, r: Result<(), Error>| errors.push((what, r.unwrap_err()));

    push("Denied", vault.authorize(c, "shipping").map(drop));
    push("UnknownPurpose", vault.authorize(c, "nope").map(drop));
    push(
        "UnknownCustomer",
        vault.authorize(CustomerId::new(), "shipping").map(drop),
    );
    push("UnknownField", vault.set_field(c, "shoe_size", CANARY));
    push("InvalidId field", FieldName::new(CANARY).map(drop));
    push("InvalidId purpose", PurposeId::new(CANARY).map(drop));
    push("InvalidId customer", CustomerId::from_str(CANARY).map(drop));
    push("InvalidId set_field", vault.set_field(c, CANARY, CANARY));
    push("Config", MasterKey::from_hex(CANARY).map(drop));
    let hex: String = canary_key_bytes().iter().map(|b| format!("{b:02x}")).collect();
    push(
        "Config hex",
        MasterKey::from_hex(&format!("{}zz", &hex[..62])).map(drop),
    );
    push("Invalid", vault.object(c, "newsletter"));
    push("TooLarge", vault.set_field(c, "email", &CANARY.repeat(10)));
    let pass = vault.authorize(c, "newsletter").unwrap();
    push("Codec", vault.reveal::<u32>(&pass, "email").map(drop));
    push("Codec seq", vault.reveal::<Vec<u8>>(&pass, "email").map(drop));
    let sealed: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
    let mut bytes = sealed.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    push(
        "Crypto",
        Sealed::<String>::from_bytes(&bytes)
            .and_then(|s| s.open(&pass))
            .map(drop),
    );
    push(
        "Sealed malformed",
        Sealed::<String>::from_bytes(CANARY.as_bytes()).map(drop),
    );
    w.store.fail_audit_appends(true);
    push("Storage", vault.authorize(c, "newsletter").map(drop));
    w.store.fail_audit_appends(false);
    let mut log = w.store.real_log();
    log[2].detail = "edited".into();
    w.store.forge_log(log);
    push("AuditBroken", vault.verify_audit().map(drop));
    vault.erase_customer(c).unwrap();
    push("Erased", sealed.open(&pass).map(drop));
    push("Erased authorize", vault.authorize(c, "newsletter").map(drop));

    let kinds: std::collections::HashSet<_> = errors.iter().map(|(_, e)| std::mem::discriminant(e)).collect();
    assert!(kinds.len() >= 13, "only {} distinct variants exercised", kinds.len());
    for (what, e) in &errors {
        clean_both(what, e);
        let source_chain = std::iter::successors(std::error::Error::source(e), |s| s.source())
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" / ");
        assert_clean_text(what, &source_chain);
    }
    // Serde errors for a sealed value do not quote the input either.
    let bad = format!(
        "{{\"customer\":\"{}\",\"field\":\"{CANARY}\",\"envelope\":\"{CANARY}\"}}",
        c
    );
    let e = serde_json::from_str::<Sealed<String>>(&bad).unwrap_err();
    assert_clean_text("Sealed JSON error", &e.to_string());
    let bad = format!(
        "{{\"customer\":\"{}\",\"field\":\"email\",\"envelope\":\"{CANARY}\"}}",
        c
    );
    let e = serde_json::from_str::<Sealed<String>>(&bad).unwrap_err();
    assert_clean_text("Sealed JSON error", &e.to_string());
    clean("AccessDenied", &AccessDenied::NoConsent);
    clean_both("StoreError", &StoreError::Conflict);
}

#[test]
fn the_store_never_sees_plaintext_or_the_master_key() {
    let w = world();
    let c = w.customer;
    let key = canary_key_bytes();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for f in w.store.fields(c).unwrap() {
        blobs.push(f.envelope);
    }
    let snapshot = w.store.customer(c).unwrap().unwrap();
    for k in &snapshot.keys {
        blobs.push(k.wrapped.clone());
    }
    for consent in &snapshot.consents {
        blobs.push(serde_json::to_vec(consent).unwrap());
    }
    for e in whole_log(&*w.store) {
        blobs.push(serde_json::to_vec(&e).unwrap());
    }
    for p in w.store.purposes().unwrap() {
        blobs.push(serde_json::to_vec(&p.stored).unwrap());
    }
    assert!(blobs.len() > 10);
    for blob in &blobs {
        assert!(!contains_bytes(blob, CANARY.as_bytes()));
        assert!(!contains_bytes(blob, &key[..12]));
        assert!(!contains_bytes(blob, &key[8..20]));
    }
}

#[test]
fn choices_and_their_errors_never_show_a_selection() {
    use egard::Choices;
    let lower = CANARY.to_lowercase();
    // Options never show; names are the host's declarations, and one that is not a valid
    // name is not repeated either.
    for choices in [
        Choices::new().select("topics", [CANARY, lower.as_str()]),
        Choices::new().select(CANARY, ["x"]),
    ] {
        clean("Choices", &choices);
    }
    let (vault, _clock) = vault();
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .choice("topics", ["rides", "food"])
                .single_choice("frequency", ["weekly", "monthly"]),
        )
        .unwrap();
    let c = vault.create_customer().unwrap();
    for bad in [
        Choices::new().select("topics", [CANARY]),
        Choices::new().select("topics", [lower.as_str()]),
        Choices::new().select("frequency", ["weekly", lower.as_str()]),
        Choices::new().select(CANARY, ["rides"]),
        Choices::new().select(&lower, ["rides"]),
    ] {
        let err = vault
            .give_consent_with(c, "newsletter", Evidence::new("web-form"), &bad)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidChoice { .. }), "{err:?}");
        clean_both("Error::InvalidChoice", &err);
    }
    // A selection of declared options, once sealed, shows in no Debug either.
    let picks = Choices::new()
        .select("topics", ["rides"])
        .select("frequency", ["monthly"]);
    vault
        .give_consent_with(c, "newsletter", Evidence::new("web-form"), &picks)
        .unwrap();
    let pass = vault.authorize(c, "newsletter").unwrap();
    let revealed = vault.choices(&pass).unwrap();
    assert_eq!(format!("{revealed:?}"), "[REDACTED]");
    assert_eq!(
        format!("{:?}", revealed.expose()),
        "Choices { frequency: [REDACTED], topics: [REDACTED] }"
    );
    let export = vault.export_customer(c, Evidence::new("verified-email-link")).unwrap();
    let debug = format!("{export:?} {:?}", vault.consents(c).unwrap());
    for selected in ["rides", "monthly"] {
        assert!(!debug.contains(selected), "{debug}");
    }
}
