//! The customer's rights, one call each, on every store backend: access and portability,
//! rectification, restriction, objection, erasure, and the retention sweep at its boundary.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use common::*;
use egard::{
    AccessDenied, AuditKind, CustomerId, Error, Evidence, FieldName, LawfulBasis, ManualClock, Purpose, Sealed, Store,
    Vault,
};
use serde_json::json;

struct Setup {
    store: Arc<dyn Store>,
    vault: Vault,
    clock: ManualClock,
}

/// A vault as one of several processes on its store (the tests restart others beside it).
/// `newsletter` (consent, 30 days, retention 10 days), `shipping` (contract),
/// `fraud` (legitimate interests), `census` (public task), `promo` (legitimate interests,
/// direct marketing).
fn setup(new_store: NewStore) -> Setup {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let vault = process_on(store.clone(), &clock);
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .description("Monthly newsletter")
                .fields(["email", "first_name"])
                .notice_version(2)
                .consent_lifetime(Duration::days(30))
                .retention(Duration::days(10)),
        )
        .unwrap();
    vault
        .define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["first_name", "address"]))
        .unwrap();
    vault
        .define_purpose(Purpose::new("fraud", LawfulBasis::LegitimateInterests).fields(["email"]))
        .unwrap();
    vault
        .define_purpose(Purpose::new("census", LawfulBasis::PublicTask).fields(["address"]))
        .unwrap();
    vault
        .define_purpose(
            Purpose::new("promo", LawfulBasis::LegitimateInterests)
                .fields(["email"])
                .direct_marketing(),
        )
        .unwrap();
    Setup { store, vault, clock }
}

fn kinds_for_field(vault: &Vault, c: CustomerId, field: &str) -> Vec<AuditKind> {
    vault
        .audit_events(c)
        .unwrap()
        .into_iter()
        .filter(|e| e.field.as_ref().is_some_and(|f| f.as_str() == field))
        .map(|e| e.kind)
        .collect()
}

// ----- access and portability -----

fn export_holds_everything_in_clear(new_store: NewStore) {
    let Setup { vault, clock, .. } = setup(new_store);
    let c = vault.create_customer().unwrap();
    let other = customer_with_data(&vault);
    consent(&vault, other, "newsletter");
    vault.set_field(c, "email", "alice@example.com").unwrap();
    vault.set_field(c, "first_name", "Alice").unwrap();
    vault
        .set_field(c, "address", &json!({"street": "1 Rue de la Paix", "zip": 75002}))
        .unwrap();
    let first = vault
        .give_consent(
            c,
            "newsletter",
            Evidence::new("web-form").source("signup-v3").notice_text("v2 text"),
        )
        .unwrap();
    clock.advance(Duration::days(1));
    let second = vault.give_consent(c, "newsletter", Evidence::new("app")).unwrap();
    clock.advance(Duration::days(1));
    vault.withdraw_consent(c, "newsletter").unwrap();
    vault.give_consent(c, "fraud", Evidence::new("terms")).unwrap();
    vault.object(c, "fraud").unwrap();
    clock.advance(Duration::hours(1));

    let export = vault.export_customer(c, Evidence::new("verified-email-link")).unwrap();
    let j = serde_json::to_value(&export).unwrap();
    assert_eq!(j["customer"], json!(c.to_string()));
    assert_eq!(j["restricted"], json!(false));
    assert_eq!(j["fields"]["email"], json!("alice@example.com"));
    assert_eq!(j["fields"]["first_name"], json!("Alice"));
    assert_eq!(
        j["fields"]["address"],
        json!({"street": "1 Rue de la Paix", "zip": 75002})
    );
    assert_eq!(j["fields"].as_object().unwrap().len(), 3);

    let consents = j["consents"].as_array().unwrap();
    assert_eq!(consents.len(), 3);
    let news: Vec<_> = consents.iter().filter(|r| r["purpose"] == "newsletter").collect();
    assert_eq!(news[0]["id"], json!(first.to_string()));
    assert_eq!(news[0]["superseded_by"], json!(second.to_string()));
    assert_eq!(news[0]["notice_version"], json!(2));
    assert_eq!(news[0]["evidence"]["method"], json!("web-form"));
    assert_eq!(news[0]["evidence"]["source"], json!("signup-v3"));
    assert_eq!(news[0]["evidence"]["notice_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(news[0]["given_at"], json!(t0()));
    assert_eq!(news[0]["expires_at"], json!(t0() + Duration::days(30)));
    assert_eq!(news[1]["withdrawn_at"], json!(t0() + Duration::days(2)));
    assert_eq!(news[1]["basis"], json!("consent"));
    assert_eq!(j["objections"].as_array().unwrap().len(), 1);
    assert_eq!(j["objections"][0]["purpose"], json!("fraud"));

    let purposes = j["purposes"].as_array().unwrap();
    assert_eq!(purposes.len(), 5);
    let newsletter = purposes.iter().find(|p| p["id"] == "newsletter").unwrap();
    assert_eq!(newsletter["basis"], json!("consent"));
    assert_eq!(newsletter["retention"], json!(Duration::days(10).num_seconds()));
    assert_eq!(newsletter["description"], json!("Monthly newsletter"));
    let fraud = purposes.iter().find(|p| p["id"] == "fraud").unwrap();
    assert_eq!(fraud["basis"], json!("legitimate_interests"));

    let events = j["audit_events"].as_array().unwrap();
    assert!(events.iter().all(|e| e["customer"] == json!(c.to_string())));
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "customer_created",
            "field_written",
            "field_written",
            "field_written",
            "consent_given",
            "consent_given",
            "consent_withdrawn",
            "consent_given",
            "objected",
            "exported",
        ]
    );
    // The other customer's data is not in it.
    let text = j.to_string();
    assert!(!text.contains(&other.to_string()));
    // And the export is audited in the log itself.
    assert_eq!(vault.audit_events(c).unwrap().last().unwrap().kind, AuditKind::Exported);
    assert!(vault.verify_audit().is_ok());
}

// ----- rectification -----

fn rectification_replaces_the_value_and_is_audited(new_store: NewStore) {
    let Setup { store, vault, .. } = setup(new_store);
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "old@example.com").unwrap();
    let old = stored_envelope(&*store, c, "email");
    vault.set_field(c, "email", "new@example.com").unwrap();
    let new = stored_envelope(&*store, c, "email");
    assert_ne!(old, new);
    assert_eq!(
        kinds_for_field(&vault, c, "email"),
        [AuditKind::FieldWritten, AuditKind::FieldRectified]
    );
    // The old ciphertext is nowhere in the store.
    let stored = store.fields(c).unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored.iter().all(|f| f.envelope != old));
    // Only the new value reads back, by reveal and by export.
    consent(&vault, c, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    assert_eq!(
        vault.reveal::<String>(&pass, "email").unwrap().expose(),
        "new@example.com"
    );
    let export =
        serde_json::to_string(&vault.export_customer(c, Evidence::new("verified-email-link")).unwrap()).unwrap();
    assert!(export.contains("new@example.com"));
    assert!(!export.contains("old@example.com"));
    // Every further rewrite is audited again.
    vault.set_field(c, "email", "third@example.com").unwrap();
    assert_eq!(kinds_for_field(&vault, c, "email").len(), 3);
}

// ----- restriction -----

fn restriction_stops_everything_until_lifted(new_store: NewStore) {
    let Setup { store, vault, clock } = setup(new_store);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    consent(&vault, c, "shipping");
    let news = vault.authorize(c, "newsletter").unwrap();
    let ship = vault.authorize(c, "shipping").unwrap();
    let sealed: Sealed<String> = vault.seal(c, "email", &"kept@example.com".to_string()).unwrap();

    vault.restrict(c).unwrap();
    assert_eq!(denied(vault.reveal::<String>(&news, "email")), AccessDenied::Restricted);
    assert_eq!(
        denied(vault.reveal::<String>(&ship, "address")),
        AccessDenied::Restricted
    );
    assert_eq!(denied(sealed.open(&news)), AccessDenied::Restricted);
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::Restricted);
    assert_eq!(denied(vault.authorize(c, "shipping")), AccessDenied::Restricted);
    // The data stays stored.
    assert_eq!(store.fields(c).unwrap().len(), 3);
    assert!(store.customer(c).unwrap().unwrap().record.restricted);
    // Restricting again is harmless and not audited twice.
    vault.restrict(c).unwrap();
    // It survives a restart.
    let restarted = process_on(store.clone(), &clock);
    assert_eq!(denied(restarted.authorize(c, "shipping")), AccessDenied::Restricted);
    drop(restarted);

    vault.lift_restriction(c).unwrap();
    // Passes refused during the restriction stay refused; new ones work.
    assert_eq!(denied(vault.reveal::<String>(&news, "email")), AccessDenied::Restricted);
    let fresh = vault.authorize(c, "newsletter").unwrap();
    assert_eq!(
        vault.reveal::<String>(&fresh, "email").unwrap().expose(),
        "alice@example.com"
    );
    assert_eq!(sealed.open(&fresh).unwrap().expose(), "kept@example.com");
    let kinds: Vec<AuditKind> = vault.audit_events(c).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == AuditKind::Restricted).count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == AuditKind::RestrictionLifted).count(), 1);
    assert!(!store.customer(c).unwrap().unwrap().record.restricted);
}

// ----- objection -----

fn objection_applies_to_legitimate_interests_and_public_task_only(new_store: NewStore) {
    let Setup { vault, .. } = setup(new_store);
    let c = customer_with_data(&vault);
    for purpose in ["newsletter", "shipping"] {
        consent(&vault, c, purpose);
        assert!(matches!(vault.object(c, purpose), Err(Error::Invalid(_))), "{purpose}");
        assert!(
            vault.authorize(c, purpose).is_ok(),
            "{purpose}: a refused objection changes nothing"
        );
    }
    assert!(matches!(vault.object(c, "nope"), Err(Error::UnknownPurpose(_))));
    assert!(matches!(
        vault.object(CustomerId::new(), "fraud"),
        Err(Error::UnknownCustomer(_))
    ));
    for purpose in ["fraud", "census"] {
        consent(&vault, c, purpose);
        let pass = vault.authorize(c, purpose).unwrap();
        vault.object(c, purpose).unwrap();
        let field = pass.fields()[0].to_string();
        assert_eq!(denied(vault.reveal::<String>(&pass, &field)), AccessDenied::Objected);
        assert_eq!(denied(vault.authorize(c, purpose)), AccessDenied::Objected);
    }
    // An objection with no record at all also denies (deny by default stays).
    let d = customer_with_data(&vault);
    vault.object(d, "fraud").unwrap();
    assert_eq!(denied(vault.authorize(d, "fraud")), AccessDenied::Objected);
}

fn a_later_record_reopens_a_non_marketing_purpose(new_store: NewStore) {
    let Setup { store, vault, clock } = setup(new_store);
    let c = customer_with_data(&vault);
    consent(&vault, c, "fraud");
    let pass = vault.authorize(c, "fraud").unwrap();
    vault.object(c, "fraud").unwrap();
    // A record made in the same instant as the objection does not outrank it.
    consent(&vault, c, "fraud");
    assert_eq!(denied(vault.authorize(c, "fraud")), AccessDenied::Objected);
    clock.advance(Duration::microseconds(1));
    // A record made after it (the controller's compelling grounds) does.
    vault
        .give_consent(c, "fraud", Evidence::new("compelling-grounds").source("case-17"))
        .unwrap();
    let fresh = vault.authorize(c, "fraud").unwrap();
    assert_eq!(
        vault.reveal::<String>(&fresh, "email").unwrap().expose(),
        "alice@example.com"
    );
    assert_eq!(denied(vault.reveal::<String>(&pass, "email")), AccessDenied::Objected);
    // The same holds after a restart.
    let restarted = process_on(store, &clock);
    assert!(restarted.authorize(c, "fraud").is_ok());
}

fn an_objection_to_direct_marketing_is_absolute(new_store: NewStore) {
    let Setup { store, vault, clock } = setup(new_store);
    let c = customer_with_data(&vault);
    consent(&vault, c, "promo");
    let pass = vault.authorize(c, "promo").unwrap();
    vault.object(c, "promo").unwrap();
    assert_eq!(denied(vault.reveal::<String>(&pass, "email")), AccessDenied::Objected);
    clock.advance(Duration::days(1));
    assert_eq!(
        denied(vault.give_consent(c, "promo", Evidence::new("web-form"))),
        AccessDenied::Objected
    );
    assert_eq!(denied(vault.authorize(c, "promo")), AccessDenied::Objected);
    let records = vault.consents(c).unwrap();
    assert_eq!(records.len(), 1, "the refused record was not stored");
    let restarted = process_on(store, &clock);
    assert_eq!(
        denied(restarted.give_consent(c, "promo", Evidence::new("web-form"))),
        AccessDenied::Objected
    );
    assert_eq!(denied(restarted.authorize(c, "promo")), AccessDenied::Objected);
    // Other purposes of the customer are not affected.
    consent(&restarted, c, "newsletter");
    assert!(restarted.authorize(c, "newsletter").is_ok());
}

// ----- erasure -----

fn erasure_shreds_keys_and_fields_and_keeps_the_trail(new_store: NewStore) {
    let Setup { store, vault, clock } = setup(new_store);
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", CANARY).unwrap();
    vault.set_field(c, "first_name", CANARY).unwrap();
    vault.set_field(c, "address", CANARY).unwrap();
    let bystander = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    consent(&vault, c, "shipping");
    consent(&vault, bystander, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    let ship = vault.authorize(c, "shipping").unwrap();
    let bystander_pass = vault.authorize(bystander, "newsletter").unwrap();
    let kept: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
    let kept_json = serde_json::to_string(&kept).unwrap();
    let events_before = vault.audit_events(c).unwrap().len();
    clock.advance(Duration::minutes(1));
    // A pass already refused for another reason must report the erasure too.
    vault.restrict(c).unwrap();
    assert_eq!(
        denied(vault.reveal::<String>(&ship, "address")),
        AccessDenied::Restricted
    );
    vault.lift_restriction(c).unwrap();

    let receipt = vault.erase_customer(c).unwrap();
    assert_eq!(receipt.customer, c);
    assert_eq!(receipt.erased_at, t0() + Duration::minutes(1));
    assert_eq!(
        receipt.fields.iter().map(FieldName::as_str).collect::<Vec<_>>(),
        ["address", "email", "first_name"]
    );
    assert_eq!(receipt.key_versions, [1]);

    // Every pass and every kept sealed value is dead at once.
    assert!(matches!(vault.reveal::<String>(&pass, "email"), Err(Error::Erased(id)) if id == c));
    assert!(matches!(
        vault.reveal::<String>(&ship, "address"),
        Err(Error::Erased(_))
    ));
    assert!(matches!(kept.open(&pass), Err(Error::Erased(_))));
    assert!(matches!(vault.authorize(c, "newsletter"), Err(Error::Erased(_))));
    // Nothing can be written or read any more.
    assert!(matches!(vault.set_field(c, "email", "x"), Err(Error::Erased(_))));
    assert!(matches!(vault.seal(c, "email", &"x"), Err(Error::Erased(_))));
    assert!(matches!(
        vault.give_consent(c, "newsletter", Evidence::new("x")),
        Err(Error::Erased(_))
    ));
    assert!(matches!(
        vault.export_customer(c, Evidence::new("verified-email-link")),
        Err(Error::Erased(_))
    ));
    assert!(matches!(vault.restrict(c), Err(Error::Erased(_))));
    assert!(matches!(vault.object(c, "fraud"), Err(Error::Erased(_))));
    assert!(matches!(vault.erase_customer(c), Err(Error::Erased(_))));

    // In the store: no key, no field; a tombstone and the consents remain.
    let snapshot = store.customer(c).unwrap().unwrap();
    assert!(snapshot.keys.is_empty());
    assert_eq!(snapshot.record.erased_at, Some(t0() + Duration::minutes(1)));
    assert_eq!(snapshot.consents.len(), 2);
    assert!(store.fields(c).unwrap().is_empty());

    // The audit trail is kept and holds no value; after the erasure come only the refusals of
    // the calls above that asked for access (every decision is logged, erased or not).
    let events = vault.audit_events(c).unwrap();
    assert!(events.len() > events_before);
    let erased = events.iter().rposition(|e| e.kind == AuditKind::Erased).unwrap();
    assert!(!events[erased + 1..].is_empty());
    for e in &events[erased + 1..] {
        assert_eq!((e.kind, e.detail.as_str()), (AuditKind::AccessDenied, "erased"));
    }
    assert!(!serde_json::to_string(&events).unwrap().contains(CANARY));
    assert!(vault.verify_audit().is_ok());

    // A vault started afresh on the same store cannot open the kept value either.
    let restarted = process_on(store.clone(), &clock);
    assert!(matches!(restarted.authorize(c, "newsletter"), Err(Error::Erased(_))));
    let again: Sealed<String> = serde_json::from_str(&kept_json).unwrap();
    assert_eq!(again, kept);
    assert!(matches!(
        restarted.export_customer(c, Evidence::new("verified-email-link")),
        Err(Error::Erased(_))
    ));

    // The bystander is untouched.
    assert!(vault.reveal::<String>(&bystander_pass, "email").is_ok());
    let p = vault.authorize(bystander, "newsletter").unwrap();
    assert_eq!(
        vault.reveal::<String>(&p, "email").unwrap().expose(),
        "alice@example.com"
    );
}

// ----- retention -----

fn the_sweep_deletes_exactly_what_it_should_at_the_boundary(new_store: NewStore) {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    vault
        .define_purpose(
            Purpose::new("orders", LawfulBasis::Contract)
                .fields(["address"])
                .retention(Duration::days(30)),
        )
        .unwrap();
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email", "first_name"])
                .consent_lifetime(Duration::days(10))
                .retention(Duration::days(5)),
        )
        .unwrap();
    vault
        .define_purpose(
            Purpose::new("support", LawfulBasis::LegitimateInterests)
                .fields(["first_name"])
                .retention(Duration::days(60)),
        )
        .unwrap();
    let ids: Vec<CustomerId> = (0..4).map(|_| vault.create_customer().unwrap()).collect();
    let [a, b, c, d] = ids[..] else { unreachable!() };
    // a: contract that ends on day 1 → address goes on day 31.
    vault.set_field(a, "address", "a-street").unwrap();
    consent(&vault, a, "orders");
    // b: live contract → address stays.
    vault.set_field(b, "address", "b-street").unwrap();
    consent(&vault, b, "orders");
    // c: consent expiring on day 10 → email goes on day 15; first_name is also covered by
    // support (no record: counted from writing) → goes on day 60.
    vault.set_field(c, "email", "c@example.com").unwrap();
    vault.set_field(c, "first_name", "Cee").unwrap();
    consent(&vault, c, "newsletter");
    // d: never gave anything → email goes on day 5, first_name on day 60.
    vault.set_field(d, "email", "d@example.com").unwrap();
    vault.set_field(d, "first_name", "Dee").unwrap();
    clock.advance(Duration::days(1));
    vault.withdraw_consent(a, "orders").unwrap();

    let f = |s: &str| FieldName::new(s).unwrap();
    let schedule: Vec<(Duration, BTreeSet<(CustomerId, FieldName)>)> = vec![
        (Duration::days(5), [(d, f("email"))].into()),
        (Duration::days(15), [(c, f("email"))].into()),
        (Duration::days(31), [(a, f("address"))].into()),
        (Duration::days(60), [(c, f("first_name")), (d, f("first_name"))].into()),
    ];
    let mut remaining = 6;
    for (at, expected) in schedule {
        clock.set(t0() + at - Duration::microseconds(1));
        let before = vault.sweep_retention().unwrap();
        assert!(before.deleted.is_empty(), "at {at} - 1µs: {:?}", before.deleted);
        assert_eq!(before.customers_examined, 4);
        clock.set(t0() + at);
        let report = vault.sweep_retention().unwrap();
        assert_eq!(report.swept_at, t0() + at);
        let deleted: BTreeSet<_> = report.deleted.iter().cloned().collect();
        assert_eq!(deleted.len(), report.deleted.len(), "no duplicates");
        assert_eq!(deleted, expected, "at {at}");
        remaining -= expected.len();
        let left: usize = ids.iter().map(|&id| store.fields(id).unwrap().len()).sum();
        assert_eq!(left, remaining, "at {at}");
        for (customer, field) in &expected {
            assert!(store.field(*customer, field).unwrap().is_none());
            let events = vault.audit_events(*customer).unwrap();
            let last = events.iter().rev().find(|e| e.field.as_ref() == Some(field)).unwrap();
            assert_eq!(
                (last.kind, last.detail.as_str()),
                (AuditKind::FieldDeleted, "retention")
            );
        }
    }
    // Long after: only the live contract's field is left, and it still opens.
    clock.set(t0() + Duration::days(3650));
    assert!(vault.sweep_retention().unwrap().deleted.is_empty());
    let pass = vault.authorize(b, "orders").unwrap();
    assert_eq!(vault.reveal::<String>(&pass, "address").unwrap().expose(), "b-street");
    assert!(vault.verify_audit().is_ok());
}

fn the_sweep_skips_erased_customers(new_store: NewStore) {
    let Setup { vault, clock, .. } = setup(new_store);
    let c = customer_with_data(&vault);
    vault.erase_customer(c).unwrap();
    clock.advance(Duration::days(400));
    let report = vault.sweep_retention().unwrap();
    assert!(report.deleted.iter().all(|(id, _)| *id != c));
}

fn the_sweep_keeps_the_data_of_a_restricted_customer(new_store: NewStore) {
    // Art. 18(1)(b), (c): restriction is what a customer asks for instead of deletion.
    let Setup { store, vault, clock } = setup(new_store);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    vault.restrict(c).unwrap();
    clock.advance(Duration::days(400));
    let report = vault.sweep_retention().unwrap();
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert_eq!(store.fields(c).unwrap().len(), 3);
    // Once lifted, the sweep does its work.
    vault.lift_restriction(c).unwrap();
    let report = vault.sweep_retention().unwrap();
    assert_eq!(report.deleted.len(), 3);
    assert!(store.fields(c).unwrap().is_empty());
}

fn an_objection_starts_the_retention_window(new_store: NewStore) {
    // DESIGN: an objection ends a legitimate-interests record as a withdrawal ends a
    // consent; the fields then go when the purpose's retention runs out.
    let store = new_store();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    for (id, dm) in [("fraud", false), ("promo", true)] {
        let p = Purpose::new(id, LawfulBasis::LegitimateInterests)
            .fields([if dm { "phone" } else { "email" }])
            .retention(Duration::days(10));
        vault.define_purpose(if dm { p.direct_marketing() } else { p }).unwrap();
    }
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "c@example.com").unwrap();
    vault.set_field(c, "phone", "+33 1 23 45 67 89").unwrap();
    consent(&vault, c, "fraud");
    consent(&vault, c, "promo");
    clock.advance(Duration::days(2));
    vault.object(c, "fraud").unwrap();
    vault.object(c, "promo").unwrap();
    clock.set(t0() + Duration::days(12) - Duration::microseconds(1));
    assert!(vault.sweep_retention().unwrap().deleted.is_empty());
    clock.set(t0() + Duration::days(12));
    let deleted: BTreeSet<_> = vault.sweep_retention().unwrap().deleted.into_iter().collect();
    assert_eq!(
        deleted,
        [
            (c, FieldName::new("email").unwrap()),
            (c, FieldName::new("phone").unwrap())
        ]
        .into()
    );
    // A record given after a (non-marketing) objection is live again: its fields stay.
    let d = vault.create_customer().unwrap();
    vault.set_field(d, "email", "d@example.com").unwrap();
    consent(&vault, d, "fraud");
    clock.advance(Duration::days(1));
    vault.object(d, "fraud").unwrap();
    clock.advance(Duration::days(1));
    consent(&vault, d, "fraud");
    clock.advance(Duration::days(100));
    assert!(vault.sweep_retention().unwrap().deleted.is_empty());
}

backend_tests!(
    the_sweep_keeps_the_data_of_a_restricted_customer,
    an_objection_starts_the_retention_window,
    export_holds_everything_in_clear,
    rectification_replaces_the_value_and_is_audited,
    restriction_stops_everything_until_lifted,
    objection_applies_to_legitimate_interests_and_public_task_only,
    a_later_record_reopens_a_non_marketing_purpose,
    an_objection_to_direct_marketing_is_absolute,
    erasure_shreds_keys_and_fields_and_keeps_the_trail,
    the_sweep_deletes_exactly_what_it_should_at_the_boundary,
    the_sweep_skips_erased_customers,
);
