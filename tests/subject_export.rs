//! The subject export (Art. 15, 20): who asked and how their identity was checked is in its
//! audit event, and only as a slug; the values are JSON text, redacted in every `Debug`, and
//! serialize to exactly what was set. On every store backend.

mod common;

use chrono::Duration;
use common::*;
use egard::{AuditKind, CustomerId, Error, Evidence, LawfulBasis, ManualClock, Purpose, Store, Vault};
use serde_json::{Value, json};

fn setup(new_store: NewStore) -> (std::sync::Arc<dyn Store>, Vault, ManualClock) {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    vault
        .define_purpose(Purpose::new("account", LawfulBasis::Contract).fields([
            "email",
            "first_name",
            "address",
            "tags",
            "score",
        ]))
        .unwrap();
    (store, vault, clock)
}

/// The values set, by field, as the JSON the export must give back.
fn values() -> Value {
    json!({
        "email": "alice@example.com",
        "first_name": "Zoë \"Zo\" O'Brien\n\u{1F600}\\",
        "address": {"street": "1 Rue de la Paix", "zip": 75002, "floor": null},
        "tags": ["vip", "newsletter-2024"],
        "score": 12.5,
    })
}

fn customer_with_values(vault: &Vault) -> CustomerId {
    let c = vault.create_customer().unwrap();
    for (field, value) in values().as_object().unwrap() {
        vault.set_field(c, field, value).unwrap();
    }
    c
}

/// Every way a value's text could appear in a log line: its JSON text, and each string inside
/// it as it is. (Bare numbers and `null` are left out: they are in any log.)
fn value_spellings(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match value {
        Value::String(s) => out.extend([value.to_string(), s.clone()]),
        Value::Array(items) => {
            out.push(value.to_string());
            items.iter().for_each(|v| out.extend(value_spellings(v)));
        }
        Value::Object(map) => {
            out.push(value.to_string());
            map.values().for_each(|v| out.extend(value_spellings(v)));
        }
        _ => {}
    }
    out.retain(|s| s.len() >= 4);
    out
}

fn the_export_event_names_the_evidence_method_and_holds_no_value(new_store: NewStore) {
    let (store, vault, clock) = setup(new_store);
    let c = customer_with_values(&vault);
    clock.advance(Duration::hours(1));
    let before = whole_log(&*store).len();

    let export = vault
        .export_customer(c, Evidence::new("verified-email-link").source("dsar-2026-014"))
        .unwrap();
    // One event, the export's, written by it.
    let log = whole_log(&*store);
    assert_eq!(log.len(), before + 1);
    let event = log.last().unwrap();
    assert_eq!(event.kind, AuditKind::Exported);
    assert_eq!(event.customer, Some(c));
    assert_eq!(event.detail, "method=verified-email-link,source=dsar-2026-014");
    assert_eq!((event.purpose.as_ref(), event.field.as_ref()), (None, None));
    assert_eq!(event.at, t0() + Duration::hours(1));
    // The export carries its own event (written before the data was read).
    assert_eq!(export.audit_events.last(), Some(event));

    // A method alone.
    vault.export_customer(c, Evidence::new("in-person.id-card")).unwrap();
    let event = whole_log(&*store).pop().unwrap();
    assert_eq!(
        (event.kind, event.detail.as_str()),
        (AuditKind::Exported, "method=in-person.id-card")
    );

    // No value is in any event of the log, in any form.
    let log = serde_json::to_string(&whole_log(&*store)).unwrap();
    let debug = format!("{:?}", whole_log(&*store));
    for (field, value) in values().as_object().unwrap() {
        for spelling in value_spellings(value) {
            assert!(!log.contains(&spelling), "{field}: the log holds {spelling:?}");
            assert!(
                !debug.contains(&spelling),
                "{field}: the log's Debug holds {spelling:?}"
            );
        }
    }
    assert!(vault.verify_audit().is_ok());
}

fn evidence_that_is_not_a_slug_is_refused_and_nothing_recorded_or_exported(new_store: NewStore) {
    let (store, vault, _) = setup(new_store);
    let c = customer_with_values(&vault);
    let before = whole_log(&*store);
    let long = "a".repeat(65);
    let refused = [
        Evidence::new("Alice Martin called"),
        Evidence::new("alice@example.com"),
        Evidence::new("Verified-Email-Link"),
        Evidence::new(""),
        Evidence::new(&long),
        Evidence::new("method=x,source=y"),
        Evidence::new("verified-email-link").source("ticket from alice@example.com"),
        Evidence::new("verified-email-link").source(""),
    ];
    for evidence in refused {
        let shown = format!("{evidence:?}");
        match vault.export_customer(c, evidence) {
            Err(e @ Error::Invalid(_)) => {
                // The error does not repeat the rejected text.
                assert!(!e.to_string().contains("Alice") && !e.to_string().contains("example.com"));
            }
            other => panic!("{shown}: expected Error::Invalid, got {:?}", other.map(|_| "an export")),
        }
        // Refused even for a customer that does not exist: the evidence is checked first.
        assert!(matches!(
            vault.export_customer(CustomerId::new(), Evidence::new("Alice Martin")),
            Err(Error::Invalid(_))
        ));
    }
    assert_eq!(whole_log(&*store), before, "a refused export recorded something");

    // The bounds of the rule are accepted: 64 characters, the whole alphabet.
    let longest = "a".repeat(64);
    vault.export_customer(c, Evidence::new(&longest)).unwrap();
    vault
        .export_customer(c, Evidence::new("az09._-").source("dsar.2026_01-x"))
        .unwrap();
    // Only the method and source are recorded; a notice hash and the explicit mark are not.
    vault
        .export_customer(c, Evidence::new("paper-form").notice_text("Alice Martin").explicit())
        .unwrap();
    let details: Vec<String> = whole_log(&*store)[before.len()..]
        .iter()
        .map(|e| e.detail.clone())
        .collect();
    assert_eq!(
        details,
        [
            format!("method={longest}"),
            "method=az09._-,source=dsar.2026_01-x".to_owned(),
            "method=paper-form".to_owned(),
        ]
    );
}

fn the_export_serializes_to_the_values_set(new_store: NewStore) {
    let (_, vault, _) = setup(new_store);
    let c = customer_with_values(&vault);
    let export = vault.export_customer(c, Evidence::new("verified-email-link")).unwrap();

    // Each value is the JSON text it was set as.
    assert_eq!(export.fields.len(), 5);
    for (field, value) in values().as_object().unwrap() {
        let exported = &export.fields[field.as_str()];
        assert_eq!(exported.expose(), serde_json::to_string(value).unwrap(), "{field}");
    }

    // As a string, as a value, and through the wiped buffer: the same values.
    let text = serde_json::to_string(&export).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["fields"], values());
    assert_eq!(serde_json::to_value(&export).unwrap()["fields"], values());
    let json = export.to_json().unwrap();
    assert_eq!(&json[..], text.as_bytes());
    assert_eq!(json.capacity(), json.len(), "written once into a buffer of its size");
    // The rest of the export is there too.
    assert_eq!(parsed["customer"], json!(c.to_string()));
    assert_eq!(
        parsed["audit_events"].as_array().unwrap().last().unwrap()["kind"],
        "exported"
    );

    // Pretty-printed JSON holds the same values.
    let pretty: Value = serde_json::from_str(&serde_json::to_string_pretty(&export).unwrap()).unwrap();
    assert_eq!(pretty["fields"], values());

    // A customer without fields exports an empty map.
    let empty = vault.create_customer().unwrap();
    let export = vault
        .export_customer(empty, Evidence::new("verified-email-link"))
        .unwrap();
    assert_eq!(serde_json::to_value(&export).unwrap()["fields"], json!({}));
}

fn debug_shows_no_value_at_any_level(new_store: NewStore) {
    let (_, vault, _) = setup(new_store);
    let c = customer_with_values(&vault);
    let export = vault.export_customer(c, Evidence::new("verified-email-link")).unwrap();
    let texts = [
        format!("{export:?}"),
        format!("{export:#?}"),
        format!("{:?}", export.fields),
        format!("{:#?}", export.fields),
        format!("{:?}", export.fields["email"]),
        format!("{:#?}", export.fields["address"]),
        format!("{:?}", export.fields.values().collect::<Vec<_>>()),
        format!("{:?}", export.fields.get("tags")),
    ];
    for text in &texts {
        for (field, value) in values().as_object().unwrap() {
            for spelling in value_spellings(value) {
                assert!(!text.contains(&spelling), "{field}: {spelling:?} in {text}");
            }
        }
        assert!(text.contains("[REDACTED]"), "{text}");
    }
    assert_eq!(texts[4], "[REDACTED]");
    // The names are shown, so the export can be inspected without its values.
    assert!(texts[2].contains("email") && texts[2].contains("address"));
    // Positive control: the values are really in the export.
    assert!(export.fields["email"].expose().contains("alice@example.com"));
}

fn erased_and_unknown_customers_keep_their_errors(new_store: NewStore) {
    let (store, vault, _) = setup(new_store);
    let evidence = || Evidence::new("verified-email-link");
    let unknown = CustomerId::new();
    let before = whole_log(&*store).len();
    assert!(matches!(vault.export_customer(unknown, evidence()), Err(Error::UnknownCustomer(id)) if id == unknown));
    assert_eq!(
        whole_log(&*store).len(),
        before,
        "an unknown customer's export was audited"
    );

    let c = customer_with_values(&vault);
    vault.erase_customer(c).unwrap();
    let before = whole_log(&*store).len();
    assert!(matches!(vault.export_customer(c, evidence()), Err(Error::Erased(id)) if id == c));
    assert_eq!(
        whole_log(&*store).len(),
        before,
        "an erased customer's export was audited"
    );
    assert!(!whole_log(&*store).iter().any(|e| e.kind == AuditKind::Exported));
}

backend_tests!(
    the_export_event_names_the_evidence_method_and_holds_no_value,
    evidence_that_is_not_a_slug_is_refused_and_nothing_recorded_or_exported,
    the_export_serializes_to_the_values_set,
    debug_shows_no_value_at_any_level,
    erased_and_unknown_customers_keep_their_errors,
);
