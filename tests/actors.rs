//! Who used my data: every audited call names its actor, and the customer's access log, on
//! MemoryStore, a SQLite file and PostgreSQL (with `EGARD_POSTGRES_URL`).

use std::sync::Arc;

use chrono::Duration;
use egard::{
    AccessKind, Actor, AuditBreak, AuditKind, Controller, CustomerId, Error, Evidence, LawfulBasis, Lookup,
    ManualClock, MasterKey, Normalizer, Purpose, ReceiptSigner, Store, Vault,
};

mod common;

use common::{KEY, TamperStore, t0, whole_log};

// ----- backends -----

on_every_backend!(
    each_scoped_operation_records_its_actor,
    the_plain_api_records_the_default_actor,
    invalid_actors_are_refused_and_nothing_is_recorded,
    the_access_log_shows_who_used_the_data_in_order,
    the_access_log_of_an_erased_or_unknown_customer,
    events_without_an_actor_still_verify,
);

// ----- helpers -----

fn build(store: Arc<dyn Store>, clock: &ManualClock) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock.clone())
        .controller(
            Controller::new("Acme Books SAS")
                .jurisdiction("EU")
                .policy_url("https://books.example/privacy"),
        )
        .build()
        .unwrap()
}

fn setup(store: Arc<dyn Store>) -> (Vault, ManualClock) {
    let clock = ManualClock::new(t0());
    let vault = build(store, &clock);
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email", "first_name"])
                .consent_lifetime(Duration::days(30)),
        )
        .unwrap();
    vault
        .define_purpose(Purpose::new("offers", LawfulBasis::LegitimateInterests).fields(["email"]))
        .unwrap();
    vault
        .define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["address"]))
        .unwrap();
    vault.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    (vault, clock)
}

fn actor(id: &str) -> Actor {
    Actor::new(id).unwrap()
}

fn actors_of(vault: &Vault, customer: CustomerId) -> Vec<(AuditKind, Option<String>)> {
    vault
        .audit_events(customer)
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.actor.map(|a| a.as_str().to_owned())))
        .collect()
}

/// An access record as (kind, actor, purpose, fields).
type Seen<'a> = (AccessKind, Option<&'a str>, Option<&'a str>, Vec<&'a str>);

// ----- tests -----

fn each_scoped_operation_records_its_actor(store: Arc<dyn Store>) {
    let (vault, clock) = setup(store.clone());
    let agent = vault.acting_as("support:agent-42").unwrap();
    assert_eq!(agent.actor().as_str(), "support:agent-42");

    let c = agent.create_customer().unwrap();
    agent.set_field(c, "email", "alice@example.com").unwrap();
    agent.set_field(c, "email", "alice.martin@example.com").unwrap();
    agent.set_field(c, "address", "1 Rue de la Paix").unwrap();
    let consent = agent
        .give_consent(c, "newsletter", Evidence::new("phone-call"))
        .unwrap();
    agent
        .give_consents([(c, "shipping", Evidence::new("contract"))])
        .unwrap();
    let pass = agent.authorize(c, "newsletter").unwrap();
    assert_eq!(
        agent.reveal::<String>(&pass, "email").unwrap().expose(),
        "alice.martin@example.com"
    );
    assert!(agent.authorize(c, "offers").is_err(), "no record for offers: denied");
    assert_eq!(
        agent.find_customer("email", "Alice.Martin@example.com").unwrap(),
        Some(c)
    );
    agent.give_consent(c, "offers", Evidence::new("contract")).unwrap();
    agent.object(c, "offers").unwrap();
    agent.restrict(c).unwrap();
    agent.lift_restriction(c).unwrap();
    agent.export_customer(c, Evidence::new("verified-email-link")).unwrap();
    let signer = ReceiptSigner::generate().unwrap();
    agent.consent_receipt(consent, &signer).unwrap();
    agent.seal(c, "email", &"sealed@example.com".to_string()).unwrap();
    agent.rotate_customer_key(c).unwrap();
    agent.withdraw_consent(c, "newsletter").unwrap();
    clock.advance(Duration::seconds(1));
    assert!(agent.audience("newsletter").unwrap().next().is_none());
    assert!(agent.needs_reconsent("newsletter").unwrap().next().is_none());
    agent.access_log(c).unwrap();
    agent.erase_customer(c).unwrap();

    let events = actors_of(&vault, c);
    let kinds: Vec<AuditKind> = events.iter().map(|(k, _)| *k).collect();
    for expected in [
        AuditKind::CustomerCreated,
        AuditKind::FieldWritten,
        AuditKind::FieldRectified,
        AuditKind::ConsentGiven,
        AuditKind::AccessGranted,
        AuditKind::AccessDenied,
        AuditKind::LookedUp,
        AuditKind::Objected,
        AuditKind::Restricted,
        AuditKind::RestrictionLifted,
        AuditKind::Exported,
        AuditKind::ReceiptIssued,
        AuditKind::KeyUsesReserved,
        AuditKind::KeyRotated,
        AuditKind::ConsentWithdrawn,
        AuditKind::AccessLogRead,
        AuditKind::Erased,
    ] {
        assert!(kinds.contains(&expected), "{expected:?} missing from {kinds:?}");
    }
    for (kind, who) in &events {
        assert_eq!(who.as_deref(), Some("support:agent-42"), "{kind:?}");
    }
    // The listings name no customer, but they name the actor.
    let listings: Vec<_> = whole_log(&*store)
        .into_iter()
        .filter(|e| e.kind == AuditKind::AudienceListed)
        .collect();
    assert_eq!(listings.len(), 2);
    assert!(listings.iter().all(|e| e.actor == Some(actor("support:agent-42"))));
    // Another handle, another actor; the first is still there (the handle is a borrow).
    let mailer = vault.with_actor(actor("service:mailer"));
    let d = mailer.create_customer().unwrap();
    assert_eq!(
        actors_of(&vault, d),
        vec![(AuditKind::CustomerCreated, Some("service:mailer".to_owned()))]
    );
    assert!(vault.verify_audit().is_ok());
}

fn the_plain_api_records_the_default_actor(store: Arc<dyn Store>) {
    let (vault, _clock) = setup(store.clone());
    assert_eq!(vault.default_actor().as_str(), "app");
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "bob@example.com").unwrap();
    vault.give_consent(c, "newsletter", Evidence::new("web-form")).unwrap();
    vault.authorize(c, "newsletter").unwrap();
    vault.withdraw_consent(c, "newsletter").unwrap();
    for (kind, who) in actors_of(&vault, c) {
        assert_eq!(who.as_deref(), Some("app"), "{kind:?}");
    }
    // The vault's own administration names nobody.
    let log = whole_log(&*store);
    let defined: Vec<_> = log
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::PurposeDefined | AuditKind::LookupDefined))
        .collect();
    assert_eq!(defined.len(), 4);
    assert!(defined.iter().all(|e| e.actor.is_none()));
    drop(vault);

    // Another default actor, set on the builder.
    let clock = ManualClock::new(t0() + Duration::hours(1));
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock)
        .default_actor(actor("service:backend"))
        .build()
        .unwrap();
    vault.authorize(c, "newsletter").unwrap_err();
    let last = vault.audit_events(c).unwrap().pop().unwrap();
    assert_eq!(last.kind, AuditKind::AccessDenied);
    assert_eq!(last.actor, Some(actor("service:backend")));
    assert!(vault.verify_audit().is_ok());
}

fn invalid_actors_are_refused_and_nothing_is_recorded(store: Arc<dyn Store>) {
    let (vault, _clock) = setup(store.clone());
    let c = vault.create_customer().unwrap();
    vault.give_consent(c, "newsletter", Evidence::new("web-form")).unwrap();
    let before = whole_log(&*store).len();
    let long = "a".repeat(65);
    for bad in [
        "alice@example.com",
        "Alice Martin",
        "support: agent 42",
        "",
        long.as_str(),
        "agent\n42",
        "agënt",
    ] {
        match vault.acting_as(bad) {
            Err(e @ Error::InvalidId { kind: "actor", .. }) => {
                if bad.len() > 3 {
                    assert!(!e.to_string().contains(bad), "the error does not echo the input");
                }
            }
            other => panic!("{bad:?} accepted as an actor: {other:?}"),
        }
        assert!(Actor::new(bad).is_err());
    }
    assert_eq!(whole_log(&*store).len(), before, "nothing recorded");
    // The longest allowed id, and the whole alphabet.
    let ok = "A-z_0.9:/".repeat(7);
    assert_eq!(ok.len(), 63);
    vault.acting_as(&ok).unwrap().authorize(c, "newsletter").unwrap();
    vault.acting_as(&"x".repeat(64)).unwrap();
    assert_eq!(vault.audit_events(c).unwrap().pop().unwrap().actor, Some(actor(&ok)));
}

fn the_access_log_shows_who_used_the_data_in_order(store: Arc<dyn Store>) {
    let (vault, clock) = setup(store.clone());
    let alice = vault.create_customer().unwrap();
    let bob = vault.create_customer().unwrap();
    let web = vault.acting_as("web:signup").unwrap();
    web.set_field(alice, "email", "alice@example.com").unwrap();
    web.give_consent(alice, "newsletter", Evidence::new("web-form"))
        .unwrap();
    vault
        .give_consent(bob, "newsletter", Evidence::new("web-form"))
        .unwrap();
    clock.advance(Duration::minutes(1));
    let mailer = vault.acting_as("service:mailer").unwrap();
    mailer.authorize(alice, "newsletter").unwrap();
    mailer.authorize(bob, "newsletter").unwrap();
    clock.advance(Duration::minutes(1));
    vault
        .acting_as("support:agent-42")
        .unwrap()
        .find_customer("email", "ALICE@example.com")
        .unwrap();
    mailer.authorize(alice, "shipping").unwrap_err();
    clock.advance(Duration::minutes(1));
    vault.withdraw_consent(alice, "newsletter").unwrap();
    mailer.authorize(alice, "newsletter").unwrap_err();
    vault
        .acting_as("dpo:office")
        .unwrap()
        .export_customer(alice, Evidence::new("verified-email-link"))
        .unwrap();
    clock.advance(Duration::days(31));
    vault
        .give_consent(alice, "newsletter", Evidence::new("web-form"))
        .unwrap();
    clock.advance(Duration::days(31));
    mailer.authorize(alice, "newsletter").unwrap_err();

    let log = vault.acting_as("customer:self").unwrap().access_log(alice).unwrap();
    let seen: Vec<Seen<'_>> = log
        .iter()
        .map(|r| {
            (
                r.kind.clone(),
                r.actor.as_ref().map(Actor::as_str),
                r.purpose.as_ref().map(|p| p.as_str()),
                r.fields.iter().map(|f| f.as_str()).collect(),
            )
        })
        .collect();
    let denied = |reason: &str| AccessKind::Denied {
        reason: reason.to_owned(),
    };
    let news = vec!["email", "first_name"];
    assert_eq!(
        seen,
        vec![
            (AccessKind::Written, Some("web:signup"), None, vec!["email"]),
            (
                AccessKind::Granted,
                Some("service:mailer"),
                Some("newsletter"),
                news.clone()
            ),
            (AccessKind::LookedUp, Some("support:agent-42"), None, vec!["email"]),
            (
                denied("no_consent"),
                Some("service:mailer"),
                Some("shipping"),
                vec!["address"]
            ),
            (
                denied("withdrawn"),
                Some("service:mailer"),
                Some("newsletter"),
                news.clone()
            ),
            (AccessKind::Exported, Some("dpo:office"), None, vec![]),
            (
                denied("expired"),
                Some("service:mailer"),
                Some("newsletter"),
                news.clone()
            ),
            (AccessKind::LogRead, Some("customer:self"), None, vec![]),
        ]
    );
    assert!(
        log.windows(2).all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at),
        "oldest first"
    );
    assert_eq!(log[1].at, t0() + Duration::minutes(1));
    // Bob's log holds Bob's accesses only; the plain call reads as the default actor.
    let bob_log = vault.access_log(bob).unwrap();
    assert_eq!(
        bob_log.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(),
        vec![AccessKind::Granted, AccessKind::LogRead]
    );
    assert_eq!(bob_log[1].actor, Some(actor("app")));
    // Reading the log is recorded (in the log that follows too).
    let again = vault.access_log(alice).unwrap();
    assert_eq!(again.len(), log.len() + 1);
    assert_eq!(again[..log.len()], log[..]);
    // The fields shown are the purpose's as defined now.
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .consent_lifetime(Duration::days(30)),
        )
        .unwrap();
    let now = vault.access_log(alice).unwrap();
    assert_eq!(now[1].fields.iter().map(|f| f.as_str()).collect::<Vec<_>>(), ["email"]);
    // It serializes for a web page (ids and names only).
    let json = serde_json::to_string(&now[3]).unwrap();
    assert!(json.contains(r#""kind":"denied","reason":"no_consent""#), "{json}");
    assert!(!json.contains("alice@example.com"));
    assert_eq!(serde_json::from_str::<egard::AccessRecord>(&json).unwrap(), now[3]);
    assert!(vault.verify_audit().is_ok());
}

fn the_access_log_of_an_erased_or_unknown_customer(store: Arc<dyn Store>) {
    let (vault, _clock) = setup(store.clone());
    let c = vault.create_customer().unwrap();
    vault.give_consent(c, "newsletter", Evidence::new("web-form")).unwrap();
    vault.acting_as("support:agent-7").unwrap().erase_customer(c).unwrap();
    assert!(matches!(vault.authorize(c, "newsletter"), Err(Error::Erased(_))));
    let log = vault.access_log(c).unwrap();
    assert_eq!(
        log.iter()
            .map(|r| (r.kind.clone(), r.actor.clone()))
            .collect::<Vec<_>>(),
        vec![
            (AccessKind::Erased, Some(actor("support:agent-7"))),
            (
                AccessKind::Denied {
                    reason: "erased".into()
                },
                Some(actor("app"))
            ),
            (AccessKind::LogRead, Some(actor("app"))),
        ]
    );
    let before = whole_log(&*store).len();
    let nobody = CustomerId::new();
    assert!(matches!(vault.access_log(nobody), Err(Error::UnknownCustomer(id)) if id == nobody));
    assert_eq!(
        whole_log(&*store).len(),
        before,
        "an unknown customer's read is not recorded"
    );
}

fn events_without_an_actor_still_verify(store: Arc<dyn Store>) {
    // Events with no actor (the vault's own administration, and every event written before
    // actors were recorded) are chained with the MAC input they always had; they verify
    // between events with actors, and the change feed and the access log read them.
    let (vault, _clock) = setup(store.clone());
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "carol@example.com").unwrap();
    let receipt = vault.erase_customer(c).unwrap();
    vault
        .define_purpose(Purpose::new("survey", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    // Re-applying the erasure ledger is the vault's own doing: no actor.
    let d = vault.create_customer().unwrap();
    vault.set_field(d, "email", "dan@example.com").unwrap();
    let d_receipt = vault.erase_customer(d).unwrap();
    assert!(vault.reapply_erasures(&[receipt, d_receipt]).unwrap().is_empty());
    let log = whole_log(&*store);
    assert!(log.iter().any(|e| e.actor.is_none()) && log.iter().any(|e| e.actor.is_some()));
    assert_eq!(vault.verify_audit().unwrap().events_verified, log.len() as u64);
    let feed = vault.changes_since(0, 1000).unwrap();
    assert!(feed.iter().any(|e| e.actor.is_none()));
    assert!(feed.iter().any(|e| e.actor.is_some()));
    assert_eq!(vault.access_log(c).unwrap().len(), 3);
}

// ----- tampering with the stored actor -----

/// Edits the stored actor of event `seq` (`None`: sets it to NULL).
type EditActor<'a> = &'a dyn Fn(u64, Option<&str>);

/// Every edit of a stored actor (changed, removed, added to an event written without one) is
/// caught by `verify_audit` and by the access log, which never shows the forged row.
fn forged_actors_are_caught(store: Arc<dyn Store>, edit: EditActor<'_>) {
    let (vault, _clock) = setup(store.clone());
    let c = vault.create_customer().unwrap();
    vault.give_consent(c, "newsletter", Evidence::new("web-form")).unwrap();
    vault
        .acting_as("service:mailer")
        .unwrap()
        .authorize(c, "newsletter")
        .unwrap();
    vault.access_log(c).unwrap();
    let log = whole_log(&*store);
    let granted = log.iter().find(|e| e.kind == AuditKind::AccessGranted).unwrap().seq;
    let defined = log.iter().find(|e| e.kind == AuditKind::PurposeDefined).unwrap().seq;
    let broken = |seq: u64| {
        assert!(
            matches!(vault.verify_audit(), Err(Error::AuditBroken { seq: s, problem: AuditBreak::MacMismatch }) if s == seq),
            "verify_audit misses the forged actor at {seq}"
        );
    };
    // Another valid actor in the grant: someone hiding who read the data.
    edit(granted, Some("service:other"));
    broken(granted);
    assert!(matches!(
        vault.access_log(c),
        Err(Error::AuditBroken { seq, problem: AuditBreak::MacMismatch }) if seq == granted
    ));
    // The customer's raw trail is checked too: the forged row is never handed out.
    assert!(matches!(
        vault.audit_events(c),
        Err(Error::AuditBroken { seq, problem: AuditBreak::MacMismatch }) if seq == granted
    ));
    // The actor removed, as if written before actors were recorded.
    edit(granted, None);
    broken(granted);
    assert!(matches!(vault.access_log(c), Err(Error::AuditBroken { .. })));
    edit(granted, Some("service:mailer"));
    assert!(vault.verify_audit().is_ok(), "put back, the chain verifies");
    assert!(vault.audit_events(c).is_ok());
    // An actor added to an event written without one.
    edit(defined, Some("app"));
    broken(defined);
    edit(defined, None);
    assert!(vault.verify_audit().is_ok());
    assert_eq!(
        vault.access_log(c).unwrap()[0].actor,
        Some(actor("service:mailer")),
        "the genuine rows show again"
    );
}

#[test]
fn memory_forged_actors_are_caught() {
    let tamper = TamperStore::new(Arc::new(egard::MemoryStore::new()));
    let view = tamper.clone();
    let edit = move |seq: u64, to: Option<&str>| {
        let mut log = view.real_log();
        for e in &mut log {
            if e.seq == seq {
                e.actor = to.map(actor);
            }
        }
        view.forge_log(log);
    };
    forged_actors_are_caught(tamper, &edit);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_file_forged_actors_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let store = egard::SqliteStore::open(&path).unwrap();
    let edit = |seq: u64, to: Option<&str>| {
        let raw = rusqlite::Connection::open(&path).unwrap();
        let n = raw
            .execute(
                "UPDATE audit SET actor = ?2 WHERE seq = ?1",
                rusqlite::params![seq as i64, to],
            )
            .unwrap();
        assert_eq!(n, 1);
    };
    forged_actors_are_caught(Arc::new(store), &edit);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_forged_actors_are_caught() {
    let db = db_or_skip!();
    let store = db.store();
    let edit = |seq: u64, to: Option<&str>| {
        let mut admin = db.admin();
        let n = admin
            .execute(
                &format!("UPDATE \"{}\".egard_audit SET actor = $2 WHERE seq = $1", db.schema),
                &[&(seq as i64), &to],
            )
            .unwrap();
        assert_eq!(n, 1);
    };
    forged_actors_are_caught(Arc::new(store), &edit);
}

/// A store written by the release before actors were recorded (schema 5, made by
/// `cli/examples/demo_store.rs` at commit 7c8e73d with master key `07…07`) opens, migrates, and
/// verifies: its events have no actor and keep their MACs; new events with actors chain after
/// them.
#[cfg(feature = "sqlite")]
#[test]
fn a_store_written_before_actors_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v5.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/store_v5.db"),
        &path,
    )
    .unwrap();
    let old_events = {
        let raw = rusqlite::Connection::open(&path).unwrap();
        let v: i64 = raw
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 5, "the fixture is a schema-5 store");
        raw.query_row("SELECT count(*) FROM audit", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    };
    let store = Arc::new(egard::SqliteStore::open(&path).unwrap());
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store.clone())
        .build()
        .unwrap();
    assert_eq!(vault.verify_audit().unwrap().events_verified, old_events);
    let log = whole_log(&*store);
    assert!(
        log.iter().all(|e| e.actor.is_none()),
        "no actor before actors were recorded"
    );
    let alice = vault.find_customer("email", "alice@example.com").unwrap().unwrap();
    let mailer = vault.acting_as("service:mailer").unwrap();
    let pass = mailer.authorize(alice, "newsletter").unwrap();
    assert_eq!(mailer.reveal::<String>(&pass, "first_name").unwrap().expose(), "Alice");
    let access = vault.access_log(alice).unwrap();
    let kinds: Vec<(AccessKind, Option<&str>)> = access
        .iter()
        .map(|r| (r.kind.clone(), r.actor.as_ref().map(Actor::as_str)))
        .collect();
    assert_eq!(kinds.first(), Some(&(AccessKind::Written, None)), "old rows: no actor");
    assert!(kinds.contains(&(AccessKind::Granted, None)), "the old grant");
    assert!(kinds.contains(&(AccessKind::Granted, Some("service:mailer"))));
    assert_eq!(kinds.last(), Some(&(AccessKind::LogRead, Some("app"))));
    assert_eq!(
        vault.verify_audit().unwrap().events_verified,
        whole_log(&*store).len() as u64
    );
}

/// A key rotation made inside a call (the data key at its budget when choices are sealed)
/// names the call's actor, as every other event of that call does.
#[test]
fn a_rotation_at_the_budget_while_giving_choices_names_the_actor() {
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(egard::MemoryStore::new())
        .encryption_budget(4)
        .build()
        .unwrap();
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .choice("topics", ["rides", "food"]),
        )
        .unwrap();
    let alice = vault.create_customer().unwrap();
    for _ in 0..3 {
        vault.set_field(alice, "email", "x@example.org").unwrap();
    }
    let shop = vault.acting_as("service:shop").unwrap();
    for _ in 0..2 {
        shop.give_consent_with(
            alice,
            "newsletter",
            Evidence::new("web-form"),
            &egard::Choices::new().select("topics", ["food"]),
        )
        .unwrap();
    }
    let rotations: Vec<_> = actors_of(&vault, alice)
        .into_iter()
        .filter(|(kind, _)| *kind == AuditKind::KeyRotated)
        .collect();
    assert!(!rotations.is_empty(), "the budget made the key rotate");
    for (_, actor) in rotations {
        assert_eq!(actor.as_deref(), Some("service:shop"));
    }
}
