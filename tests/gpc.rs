//! The Global Privacy Control signal: honouring it withdraws or objects to every purpose it
//! covers, with the signal in the audit trail; honouring it again records nothing; an opt-in
//! while the signal is present needs the customer's explicit confirmation, which the record
//! keeps — on MemoryStore, a SQLite file and PostgreSQL (with `EGARD_POSTGRES_URL`).

mod common;

use std::sync::Arc;

use egard::{
    AccessDenied, AuditKind, Choices, Error, Evidence, GpcOutcome, LawfulBasis, ManualClock, MasterKey, Purpose,
    PurposeId, Store, Vault,
};

type Open<'a> = &'a dyn Fn() -> Arc<dyn Store>;

fn vault(open: Open<'_>) -> Vault {
    let v = Vault::builder()
        .master_key(MasterKey::from_bytes(common::KEY))
        .store(open())
        .clock(ManualClock::new(common::t0()))
        .build()
        .unwrap();
    for p in [
        // Covered: direct marketing on consent, selling/sharing on consent, direct marketing
        // on legitimate interests, selling/sharing on legitimate interests.
        Purpose::new("newsletter", LawfulBasis::Consent)
            .fields(["email"])
            .direct_marketing()
            .choice("topics", ["rides", "food"]),
        Purpose::new("partners", LawfulBasis::Consent)
            .fields(["email"])
            .sells_or_shares(),
        Purpose::new("mailing", LawfulBasis::LegitimateInterests)
            .fields(["email"])
            .direct_marketing(),
        Purpose::new("analytics", LawfulBasis::LegitimateInterests)
            .fields(["email"])
            .sells_or_shares(),
        // Not covered.
        Purpose::new("shipping", LawfulBasis::Contract).fields(["email"]),
        Purpose::new("support", LawfulBasis::Consent).fields(["email"]),
    ] {
        v.define_purpose(p).unwrap();
    }
    v
}

fn signal() -> Evidence {
    Evidence::new("sec-gpc-header").source("web").gpc()
}

fn events(v: &Vault) -> u64 {
    v.verify_audit().unwrap().events_verified
}

fn ids(names: &[&str]) -> Vec<PurposeId> {
    names.iter().map(|n| PurposeId::new(n).unwrap()).collect()
}

fn honouring_the_signal_withdraws_and_objects_once(open: Open<'_>) {
    let v = vault(open);
    let alice = v.create_customer().unwrap();
    for p in ["newsletter", "partners", "mailing", "analytics", "shipping", "support"] {
        v.give_consent(alice, p, Evidence::new("web-form")).unwrap();
    }
    let pass = v.authorize(alice, "partners").unwrap();
    let before = events(&v);
    let outcome = v.honor_gpc(alice, signal()).unwrap();
    assert_eq!(
        outcome,
        GpcOutcome {
            withdrawn: ids(&["newsletter", "partners"]),
            objected: ids(&["analytics", "mailing"]),
        }
    );
    assert!(outcome.changed());
    assert_eq!(events(&v), before + 4, "one event per change, in one commit");
    assert_eq!(
        common::denied(v.reveal::<String>(&pass, "email")),
        AccessDenied::Withdrawn
    );
    for (p, reason) in [
        ("newsletter", AccessDenied::Withdrawn),
        ("partners", AccessDenied::Withdrawn),
        ("mailing", AccessDenied::Objected),
        ("analytics", AccessDenied::Objected),
    ] {
        assert_eq!(common::denied(v.authorize(alice, p)), reason, "{p}");
    }
    v.authorize(alice, "shipping").unwrap();
    v.authorize(alice, "support").unwrap();
    let log = v.audit_events(alice).unwrap();
    let gpc: Vec<_> = log.iter().filter(|e| e.detail.contains("gpc")).collect();
    assert_eq!(gpc.len(), 4);
    for e in &gpc {
        assert!(
            e.detail.ends_with("gpc,method=sec-gpc-header,source=web"),
            "{}",
            e.detail
        );
        assert!(matches!(e.kind, AuditKind::ConsentWithdrawn | AuditKind::Objected));
    }

    // Again: nothing left to change, nothing recorded.
    let before = events(&v);
    let again = v.honor_gpc(alice, signal()).unwrap();
    assert!(!again.changed());
    assert_eq!(again, GpcOutcome::default());
    assert_eq!(events(&v), before, "no audit event");
    assert_eq!(v.consents(alice).unwrap().len(), 6, "no record");

    // A customer with nothing covered: nothing recorded either.
    let bob = v.create_customer().unwrap();
    v.give_consent(bob, "shipping", Evidence::new("contract")).unwrap();
    let before = events(&v);
    let outcome = v.honor_gpc(bob, signal()).unwrap();
    assert_eq!(outcome.withdrawn, Vec::<PurposeId>::new());
    assert_eq!(
        outcome.objected,
        ids(&["analytics", "mailing"]),
        "an opt-out stands before any record"
    );
    assert_eq!(events(&v), before + 2);
    assert!(!v.honor_gpc(bob, signal()).unwrap().changed());
    assert_eq!(events(&v), before + 2);
}

fn an_opt_in_despite_the_signal_needs_explicit_confirmation(open: Open<'_>) {
    let v = vault(open);
    let alice = v.create_customer().unwrap();
    v.honor_gpc(alice, signal()).unwrap();
    let before = events(&v);
    for result in [
        v.give_consent(alice, "partners", signal()),
        v.give_consent_with(
            alice,
            "newsletter",
            signal(),
            &Choices::new().select("topics", ["food"]),
        ),
        v.give_consents([(alice, "partners", signal())]).map(|ids| ids[0]),
    ] {
        match result {
            Err(Error::GpcConflict { purpose }) => assert!(["partners", "newsletter"].contains(&purpose.as_str())),
            other => panic!("expected a GPC conflict, got {other:?}"),
        }
    }
    assert_eq!(events(&v), before, "nothing recorded");
    assert!(v.consents(alice).unwrap().is_empty(), "nothing written");
    // A purpose the signal does not cover takes it as it is.
    v.give_consent(alice, "support", signal()).unwrap();

    // Confirmed explicitly: accepted, and the record says so.
    let id = v.give_consent(alice, "partners", signal().explicit()).unwrap();
    let record = v.consents(alice).unwrap().into_iter().find(|c| c.id == id).unwrap();
    assert!(record.evidence.has_gpc() && record.evidence.is_explicit());
    let log = v.audit_events(alice).unwrap();
    let given = log.iter().rev().find(|e| e.kind == AuditKind::ConsentGiven).unwrap();
    assert_eq!(given.detail, format!("{id} despite_gpc"));
    v.authorize(alice, "partners").unwrap();
    // The same signal, sent again with the next request, does not undo that choice.
    let before = events(&v);
    assert!(!v.honor_gpc(alice, signal()).unwrap().changed());
    assert_eq!(events(&v), before);
    v.authorize(alice, "partners").unwrap();
    // With choices, too.
    let id = v
        .give_consent_with(
            alice,
            "newsletter",
            signal().explicit(),
            &Choices::new().select("topics", ["food"]),
        )
        .unwrap();
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert!(v.choices(&pass).unwrap().expose().is_selected("topics", "food"));
    assert!(
        v.consents(alice)
            .unwrap()
            .iter()
            .any(|c| c.id == id && c.evidence.has_gpc())
    );
}

fn evidence_with_personal_data_is_refused(open: Open<'_>) {
    let v = vault(open);
    let alice = v.create_customer().unwrap();
    v.give_consent(alice, "partners", Evidence::new("web-form")).unwrap();
    let before = events(&v);
    assert!(matches!(
        v.honor_gpc(alice, Evidence::new("header from alice@example.com").gpc()),
        Err(Error::Invalid(_))
    ));
    assert_eq!(events(&v), before);
    v.authorize(alice, "partners").unwrap();
}

on_every_backend_reopening!(
    honouring_the_signal_withdraws_and_objects_once,
    an_opt_in_despite_the_signal_needs_explicit_confirmation,
    evidence_with_personal_data_is_refused,
);

/// The GPC mark is part of the authenticated record: a store that drops it from the evidence
/// is caught.
#[cfg(feature = "sqlite")]
#[test]
fn the_gpc_mark_is_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpc.db");
    let open = || Arc::new(egard::SqliteStore::open(&path).unwrap()) as Arc<dyn Store>;
    let alice = {
        let v = vault(&open);
        let alice = v.create_customer().unwrap();
        v.give_consent(alice, "partners", signal().explicit()).unwrap();
        alice
    };
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        let changed = raw
            .execute(
                "UPDATE consents SET evidence = replace(evidence, ',\"gpc\":true', '')",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let v = vault(&open);
    common::assert_crypto(v.consents(alice));
}

/// A store that hides a purpose the signal covers (its row deleted while the signal is
/// honoured, put back after) must not make the signal skip it: either honouring fails, or the
/// consent it would have withdrawn never opens again.
#[cfg(feature = "sqlite")]
#[test]
fn a_hidden_purpose_is_not_skipped_by_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpc.db");
    let open = || Arc::new(egard::SqliteStore::open(&path).unwrap()) as Arc<dyn Store>;
    let alice = {
        let v = vault(&open);
        let alice = v.create_customer().unwrap();
        v.give_consent(alice, "partners", Evidence::new("web-form")).unwrap();
        alice
    };
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TABLE saved_purposes AS SELECT * FROM purposes WHERE id = 'partners';
         DELETE FROM purposes WHERE id = 'partners';",
    )
    .unwrap();
    let honoured = Vault::builder()
        .master_key(MasterKey::from_bytes(common::KEY))
        .store(open())
        .clock(ManualClock::new(common::t0()))
        .build()
        .and_then(|v| v.honor_gpc(alice, signal()));
    assert!(matches!(honoured, Err(Error::Crypto)), "{honoured:?}");
    let honoured = honoured.is_ok();
    raw.execute_batch("INSERT INTO purposes SELECT * FROM saved_purposes;")
        .unwrap();
    let v = Vault::builder()
        .master_key(MasterKey::from_bytes(common::KEY))
        .store(open())
        .clock(ManualClock::new(common::t0()))
        .build()
        .unwrap();
    if honoured {
        assert!(
            v.authorize(alice, "partners").is_err(),
            "the signal was honoured while the purpose was hidden, and its consent still opens"
        );
    }
}

/// The same for a purpose on legitimate interests (the signal objects to it): processing it
/// needs a record of the customer's, which shows the purpose exists.
#[cfg(feature = "sqlite")]
#[test]
fn a_hidden_legitimate_interests_purpose_is_not_skipped_by_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpc.db");
    let open = || Arc::new(egard::SqliteStore::open(&path).unwrap()) as Arc<dyn Store>;
    let alice = {
        let v = vault(&open);
        let alice = v.create_customer().unwrap();
        v.give_consent(alice, "mailing", Evidence::new("checkout")).unwrap();
        v.authorize(alice, "mailing").unwrap();
        alice
    };
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TABLE saved_purposes AS SELECT * FROM purposes WHERE id = 'mailing';
         DELETE FROM purposes WHERE id = 'mailing';",
    )
    .unwrap();
    let honoured = Vault::builder()
        .master_key(MasterKey::from_bytes(common::KEY))
        .store(open())
        .clock(ManualClock::new(common::t0()))
        .build()
        .and_then(|v| v.honor_gpc(alice, signal()));
    assert!(matches!(honoured, Err(Error::Crypto)), "{honoured:?}");
    let honoured = honoured.is_ok();
    raw.execute_batch("INSERT INTO purposes SELECT * FROM saved_purposes;")
        .unwrap();
    let v = Vault::builder()
        .master_key(MasterKey::from_bytes(common::KEY))
        .store(open())
        .clock(ManualClock::new(common::t0()))
        .build()
        .unwrap();
    if honoured {
        assert!(
            v.authorize(alice, "mailing").is_err(),
            "the signal was honoured while the purpose was hidden, and the purpose still opens"
        );
    }
}
