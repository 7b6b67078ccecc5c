//! Attacks on the features of the "Unreleased" changelog: lookups (the blind index), reaching
//! customers (audience, re-consent, change feed) and consent receipts — as someone who can
//! write to the database without the master key, as a Rust caller of the public API, and as a
//! reviewer looking for personal data where it must never be.
//!
//! Every test here asserts what must hold; a test that passes documents a defence.

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::{CANARY, KEY, t0};
use egard::{
    AuditKind, Controller, CustomerId, Error, Evidence, LawfulBasis, Lookup, ManualClock, MasterKey, MemoryStore,
    Normalizer, Purpose, ReceiptSigner, Store, Vault,
};
use rusqlite::Connection;

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

/// A vault as one of several servers on a shared store (with a cache time-to-live).
fn server(store: Arc<dyn Store>, clock: &ManualClock) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock.clone())
        .cache_ttl(Duration::seconds(30))
        .build()
        .unwrap()
}

fn sqlite_file(path: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(egard::SqliteStore::open(path).unwrap())
}

fn purposes(vault: &Vault) {
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email", "first_name"])
                .notice_version(1)
                .consent_lifetime(Duration::days(365)),
        )
        .unwrap();
    vault
        .define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email", "phone"]))
        .unwrap();
}

fn email_vault(store: Arc<dyn Store>, clock: &ManualClock) -> Vault {
    let v = build(store, clock);
    purposes(&v);
    v.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    v
}

fn audience(vault: &Vault, purpose: &str) -> Vec<CustomerId> {
    vault.audience(purpose).unwrap().filter_map(Result::ok).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file in `dir` (the database, its log, its shared memory).
fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .any(|e| contains(&std::fs::read(e.unwrap().path()).unwrap(), needle))
}

// ---------------------------------------------------------------------------------------------
// Lookups
// ---------------------------------------------------------------------------------------------

/// A vault that did not know of a lookup yet (another process, within its cache time-to-live)
/// rectifies a customer's email. The customer's old index entry must not survive the change:
/// otherwise `find_customer(old address)` keeps naming a customer who no longer holds it, and
/// nobody else can ever take that address.
#[test]
fn a_rectification_by_a_vault_unaware_of_the_lookup_leaves_no_stale_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    // `other` is built before the lookup exists, with the recommended time-to-live.
    let first = build(sqlite_file(&path), &clock);
    purposes(&first);
    let other = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(sqlite_file(&path))
        .clock(clock.clone())
        .cache_ttl(Duration::seconds(30))
        .build()
        .unwrap();
    first.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    let alice = first.create_customer().unwrap();
    first.set_field(alice, "email", "old@example.org").unwrap();

    other.set_field(alice, "email", "new@example.org").unwrap();

    assert_eq!(
        first.find_customer("email", "old@example.org").unwrap(),
        None,
        "alice no longer holds her old address"
    );
    let bob = first.create_customer().unwrap();
    first.set_field(bob, "email", "old@example.org").unwrap();
    assert_eq!(first.find_customer("email", "old@example.org").unwrap(), Some(bob));
    assert_eq!(first.find_customer("email", "new@example.org").unwrap(), Some(alice));
}

/// The same through the database: a writer deletes the lookup definition, a fresh process
/// rectifies alice's email, the writer puts the (authentic) definition back.
#[test]
fn a_hidden_lookup_definition_does_not_leave_a_stale_entry_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let alice = {
        let v = email_vault(sqlite_file(&path), &clock);
        let alice = v.create_customer().unwrap();
        v.set_field(alice, "email", "old@example.org").unwrap();
        alice
    };
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("CREATE TABLE saved_lookups AS SELECT * FROM lookups; DELETE FROM lookups;")
        .unwrap();
    {
        let v = build(sqlite_file(&path), &clock);
        assert!(matches!(
            v.find_customer("email", "old@example.org"),
            Err(Error::NoLookup(_))
        ));
        v.set_field(alice, "email", "new@example.org").unwrap();
    }
    raw.execute_batch("INSERT INTO lookups SELECT * FROM saved_lookups;")
        .unwrap();
    let v = build(sqlite_file(&path), &clock);
    assert_eq!(v.find_customer("email", "old@example.org").unwrap(), None);
    // Defining it again indexes what is missing.
    v.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    assert_eq!(v.find_customer("email", "new@example.org").unwrap(), Some(alice));
}

/// A writer drops the unique index that enforces one value per live customer: a second
/// customer then holds the same token, and the index holds two rows for it. The vault must
/// never pick one of them silently.
#[test]
fn a_dropped_unique_index_never_makes_the_lookup_pick_one_of_two() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let v = email_vault(sqlite_file(&path), &clock);
    let alice = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("DROP INDEX fields_by_lookup_token;").unwrap();

    let mallory = v.create_customer().unwrap();
    let taken = v.set_field(mallory, "email", "Alice@Example.org");
    assert!(
        matches!(taken, Err(Error::Duplicate { .. })),
        "the vault refuses a value another live customer holds, whatever the store enforces: {taken:?}"
    );
    assert_eq!(v.find_customer("email", "alice@example.org").unwrap(), Some(alice));
}

/// With the unique index dropped, values stored before the lookup was defined are indexed
/// once: the second holder stays out, as with the index in place.
#[test]
fn a_dropped_unique_index_does_not_let_define_lookup_index_a_value_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let v = build(sqlite_file(&path), &clock);
    purposes(&v);
    let alice = v.create_customer().unwrap();
    let mallory = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    v.set_field(mallory, "email", "ALICE@example.org").unwrap();
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("DROP INDEX fields_by_lookup_token;").unwrap();
    let defined = v.define_lookup(Lookup::new("email", Normalizer::Email));
    assert!(matches!(defined, Err(Error::Duplicate { .. })), "{defined:?}");
    let indexed: i64 = raw
        .query_row("SELECT COUNT(*) FROM fields WHERE lookup_token IS NOT NULL", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(indexed, 1);
    let found = v.find_customer("email", "alice@example.org").unwrap();
    assert!(found == Some(alice) || found == Some(mallory));
}

/// Two rows for one token (written by the store's own hand) are an error, not a choice.
#[test]
fn two_index_rows_for_one_value_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let v = email_vault(sqlite_file(&path), &clock);
    let alice = v.create_customer().unwrap();
    let mallory = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    v.set_field(mallory, "email", "mallory@example.org").unwrap();
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("DROP INDEX fields_by_lookup_token;").unwrap();
    raw.execute(
        "UPDATE fields SET lookup_token = (SELECT lookup_token FROM fields WHERE customer = ?1 AND field = 'email')
         WHERE customer = ?2 AND field = 'email'",
        [alice.as_bytes().as_slice(), mallory.as_bytes().as_slice()],
    )
    .unwrap();
    let found = v.find_customer("email", "alice@example.org");
    assert!(
        matches!(found, Err(Error::Storage(egard::StoreError::Corrupt(_)))),
        "never one of two rows for alice's address: {found:?}"
    );
}

/// A token copied into another customer's row (unique index intact: alice's row cleared) is
/// refused by the customer's authenticated state.
#[test]
fn a_token_moved_to_another_customer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let v = email_vault(sqlite_file(&path), &clock);
    let alice = v.create_customer().unwrap();
    let mallory = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    v.set_field(mallory, "email", "mallory@example.org").unwrap();
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TABLE t AS SELECT customer, lookup_token FROM fields WHERE field = 'email';
         UPDATE fields SET lookup_token = NULL WHERE field = 'email';",
    )
    .unwrap();
    raw.execute(
        "UPDATE fields SET lookup_token = (SELECT lookup_token FROM t WHERE customer = ?1) WHERE customer = ?2 AND field = 'email'",
        [alice.as_bytes().as_slice(), mallory.as_bytes().as_slice()],
    )
    .unwrap();
    let cold = build(sqlite_file(&path), &clock);
    common::assert_crypto(cold.find_customer("email", "alice@example.org"));
    common::assert_crypto(v.find_customer("email", "alice@example.org"));
}

/// A definition whose normaliser was switched in the table fails its check.
#[test]
fn an_edited_lookup_definition_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let alice = {
        let v = email_vault(sqlite_file(&path), &clock);
        let alice = v.create_customer().unwrap();
        v.set_field(alice, "email", "Alice@example.org").unwrap();
        alice
    };
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("UPDATE lookups SET normalizer = 'exact';").unwrap();
    let v = build(sqlite_file(&path), &clock);
    common::assert_crypto(v.find_customer("email", "Alice@example.org"));
    common::assert_crypto(v.set_field(alice, "email", "x@example.org"));
}

/// Two processes set the same address for two customers at the same time, many times over:
/// never both succeed.
#[test]
fn the_duplicate_rule_holds_between_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let a = Arc::new(email_vault(sqlite_file(&path), &clock));
    let b = Arc::new(
        Vault::builder()
            .master_key(MasterKey::from_bytes(KEY))
            .store(sqlite_file(&path))
            .clock(clock.clone())
            .cache_ttl(Duration::seconds(1))
            .build()
            .unwrap(),
    );
    for i in 0..40 {
        let ca = a.create_customer().unwrap();
        let cb = b.create_customer().unwrap();
        let value = format!("race-{i}@example.org");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (va, vb) = (a.clone(), b.clone());
        let (ba, bb) = (barrier.clone(), barrier.clone());
        let (xa, xb) = (value.clone(), value.clone());
        let ta = std::thread::spawn(move || {
            ba.wait();
            va.set_field(ca, "email", &xa)
        });
        let tb = std::thread::spawn(move || {
            bb.wait();
            vb.set_field(cb, "email", &xb)
        });
        let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
        assert!(!(ra.is_ok() && rb.is_ok()), "both customers got {value}");
        for r in [&ra, &rb] {
            if let Err(e) = r {
                assert!(
                    matches!(e, Error::Duplicate { .. } | Error::Storage(_)),
                    "unexpected error {e:?}"
                );
            }
        }
        let holder = a.find_customer("email", &value).unwrap();
        match (ra.is_ok(), rb.is_ok()) {
            (true, false) => assert_eq!(holder, Some(ca)),
            (false, true) => assert_eq!(holder, Some(cb)),
            _ => assert_eq!(holder, None),
        }
    }
}

/// Normalisers take anything a caller can pass without panicking, and never put the value
/// in the error.
#[test]
fn normalisers_take_any_input() {
    let inputs: Vec<String> = vec![
        String::new(),
        " ".repeat(10_000),
        "İ".repeat(100_000),
        "\u{0}\u{1}\u{7f}@\u{202e}".to_owned(),
        "٠١٢٣٤٥٦٧٨٩".to_owned(),
        "+".repeat(1000),
        "ẞ\u{10ffff}\u{fffd}".to_owned(),
        format!("{CANARY}@{}", "x".repeat(1 << 20)),
        CANARY.to_owned(),
    ];
    for input in &inputs {
        for n in [Normalizer::Email, Normalizer::Phone, Normalizer::Exact] {
            match n.normalize(input) {
                Ok(out) => assert!(!out.is_empty()),
                Err(e) => {
                    assert!(matches!(e, Error::Invalid(_)));
                    assert!(!format!("{e} {e:?}").contains(CANARY));
                }
            }
        }
    }
    assert_eq!(Normalizer::Email.normalize("İ").unwrap().as_str(), "i\u{307}");
    assert!(matches!(Normalizer::Phone.normalize("٠١٢"), Err(Error::Invalid(_))));
}

/// Huge, odd and non-text values through the public API: clear errors, never the value.
#[test]
fn odd_values_through_the_vault() {
    let clock = ManualClock::new(t0());
    let v = email_vault(Arc::new(MemoryStore::new()), &clock);
    v.define_lookup(Lookup::new("phone", Normalizer::Phone)).unwrap();
    let c = v.create_customer().unwrap();
    let leaks = |e: &Error| format!("{e} {e:?}").contains(CANARY);

    let e = v.set_field(c, "email", &42).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    let e = v.set_field(c, "phone", "CANARY-no-digits (n/a)").unwrap_err();
    assert!(matches!(e, Error::Invalid(_)) && !leaks(&e), "{e:?}");
    let e = v.find_customer("email", "   ").unwrap_err();
    assert!(matches!(e, Error::Invalid(_)));
    let e = v.find_customer("no_such_field", CANARY).unwrap_err();
    assert!(matches!(e, Error::NoLookup(_)) && !leaks(&e), "{e:?}");
    let e = v.find_customer("Bad Field!", CANARY).unwrap_err();
    assert!(!leaks(&e), "{e:?}");
    let huge = format!("{CANARY}{}@example.org", "a".repeat(4 << 20));
    if let Err(e) = v.set_field(c, "email", &huge) {
        assert!(!leaks(&e), "{e:?}");
    }
    assert!(v.find_customer("email", &huge).is_ok());
    // Defining a lookup on a field holding non-text values: refused, nothing leaks.
    let d = v.create_customer().unwrap();
    v.define_purpose(Purpose::new("club", LawfulBasis::Contract).fields(["member_code"]))
        .unwrap();
    v.set_field(d, "member_code", &serde_json::json!({ "code": CANARY }))
        .unwrap();
    let e = v
        .define_lookup(Lookup::new("member_code", Normalizer::Exact))
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)) && !leaks(&e), "{e:?}");
}

/// The duplicate error, the audit trail and the database hold the field name only: never the
/// value, normalised or not.
#[test]
fn a_duplicate_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let store = sqlite_file(&path);
    let v = email_vault(store.clone(), &clock);
    let value = format!("{CANARY}@Example.ORG");
    let alice = v.create_customer().unwrap();
    let bob = v.create_customer().unwrap();
    v.set_field(alice, "email", &value).unwrap();
    let e = v.set_field(bob, "email", &value.to_lowercase()).unwrap_err();
    assert!(matches!(e, Error::Duplicate { .. }));
    let shown = format!("{e} {e:?}");
    assert!(!shown.to_lowercase().contains(&CANARY.to_lowercase()), "{shown}");
    assert_eq!(v.find_customer("email", &value).unwrap(), Some(alice));
    v.find_customer("email", &format!("nobody-{CANARY}@x.org")).unwrap();
    let log = format!("{:?}", common::whole_log(&*store));
    assert!(!log.to_lowercase().contains(&CANARY.to_lowercase()));
    drop(v);
    drop(store);
    for needle in [CANARY.to_lowercase(), CANARY.to_owned()] {
        assert!(!files_contain(dir.path(), needle.as_bytes()), "{needle} in the files");
    }
}

/// Rectification, erasure, the retention sweep, a data-key rotation and a master-key rotation
/// keep the index right.
#[test]
fn the_index_follows_every_change() {
    let clock = ManualClock::new(t0());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let v = email_vault(store.clone(), &clock);
    let alice = v.create_customer().unwrap();
    v.set_field(alice, "email", "a@example.org").unwrap();
    v.rotate_customer_key(alice).unwrap();
    assert_eq!(v.find_customer("email", "a@example.org").unwrap(), Some(alice));
    v.rotate_master_key().unwrap();
    assert_eq!(v.find_customer("email", "a@example.org").unwrap(), Some(alice));
    v.set_field(alice, "email", "b@example.org").unwrap();
    assert_eq!(v.find_customer("email", "a@example.org").unwrap(), None);
    assert_eq!(v.find_customer("email", "b@example.org").unwrap(), Some(alice));
    // The same value again is not a duplicate of oneself.
    v.set_field(alice, "email", "B@example.org").unwrap();
    v.erase_customer(alice).unwrap();
    assert_eq!(v.find_customer("email", "b@example.org").unwrap(), None);
    let bob = v.create_customer().unwrap();
    v.set_field(bob, "email", "b@example.org").unwrap();
    assert_eq!(v.find_customer("email", "b@example.org").unwrap(), Some(bob));

    // The sweep deletes a field no purpose needs any more, and its entry with it.
    let w = build(Arc::new(MemoryStore::new()), &clock);
    w.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .fields(["email"])
            .retention(Duration::days(1)),
    )
    .unwrap();
    w.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    let carol = w.create_customer().unwrap();
    w.set_field(carol, "email", "c@example.org").unwrap();
    clock.advance(Duration::days(2));
    let report = w.sweep_retention().unwrap();
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(w.find_customer("email", "c@example.org").unwrap(), None);
    let dave = w.create_customer().unwrap();
    w.set_field(dave, "email", "c@example.org").unwrap();
    assert_eq!(w.find_customer("email", "c@example.org").unwrap(), Some(dave));
}

// ---------------------------------------------------------------------------------------------
// Audience, re-consent, change feed
// ---------------------------------------------------------------------------------------------

/// Replaying the rows of a consent from before its withdrawal (consent row and customer row,
/// both with valid MACs) never brings the customer back into the audience or opens anything.
#[test]
fn a_replayed_consent_never_rejoins_the_audience() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let (alice, bob, consent) = {
        let v = email_vault(sqlite_file(&path), &clock);
        let alice = v.create_customer().unwrap();
        let bob = v.create_customer().unwrap();
        v.give_consent(bob, "newsletter", Evidence::new("web")).unwrap();
        let consent = v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
        (alice, bob, consent)
    };
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TABLE old_consents AS SELECT * FROM consents;
         CREATE TABLE old_customers AS SELECT * FROM customers;",
    )
    .unwrap();
    {
        let v = build(sqlite_file(&path), &clock);
        v.withdraw_consent(alice, "newsletter").unwrap();
        v.restrict(bob).unwrap();
        assert!(audience(&v, "newsletter").is_empty());
    }
    raw.execute_batch(
        "PRAGMA foreign_keys = OFF;
         DELETE FROM consents; INSERT INTO consents SELECT * FROM old_consents;
         DELETE FROM customers; INSERT INTO customers SELECT * FROM old_customers;",
    )
    .unwrap();
    let v = build(sqlite_file(&path), &clock);
    let items: Vec<_> = v.audience("newsletter").unwrap().collect();
    assert!(items.iter().all(|r| r.is_err()), "{items:?}");
    assert!(v.authorize(alice, "newsletter").is_err());
    assert!(v.authorize(bob, "newsletter").is_err());
    let receipt = v.consent_receipt(consent, &ReceiptSigner::generate().unwrap());
    assert!(matches!(receipt, Err(Error::Crypto)), "{receipt:?}");
}

/// A notice change cannot be undone in the database: replaying the purpose row from before
/// the new notice version never puts the old consents back into the audience.
#[test]
fn a_replayed_purpose_definition_never_brings_back_an_outdated_consent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let alice = {
        let v = email_vault(sqlite_file(&path), &clock);
        let alice = v.create_customer().unwrap();
        v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
        alice
    };
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("CREATE TABLE old_purposes AS SELECT * FROM purposes;")
        .unwrap();
    {
        let v = build(sqlite_file(&path), &clock);
        v.define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email", "first_name"])
                .notice_version(2)
                .consent_lifetime(Duration::days(365)),
        )
        .unwrap();
        assert!(audience(&v, "newsletter").is_empty());
        let again: Vec<_> = v
            .needs_reconsent("newsletter")
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        assert_eq!(again, vec![alice]);
    }
    raw.execute_batch("DELETE FROM purposes; INSERT INTO purposes SELECT * FROM old_purposes;")
        .unwrap();
    match Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(sqlite_file(&path))
        .clock(clock.clone())
        .build()
    {
        Err(_) => {}
        Ok(v) => {
            let listed = v
                .audience("newsletter")
                .map(|it| it.filter_map(Result::ok).collect::<Vec<_>>());
            assert!(!matches!(&listed, Ok(l) if l.contains(&alice)), "{listed:?}");
            assert!(v.authorize(alice, "newsletter").is_err());
        }
    }
}

/// Erasure cannot be undone by putting the customer row back.
#[test]
fn an_unerased_customer_row_never_rejoins_the_audience() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let alice = {
        let v = email_vault(sqlite_file(&path), &clock);
        let alice = v.create_customer().unwrap();
        v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
        alice
    };
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("CREATE TABLE old_customers AS SELECT * FROM customers;")
        .unwrap();
    {
        let v = build(sqlite_file(&path), &clock);
        v.erase_customer(alice).unwrap();
        assert!(audience(&v, "newsletter").is_empty());
    }
    raw.execute_batch(
        "PRAGMA foreign_keys = OFF; DELETE FROM customers; INSERT INTO customers SELECT * FROM old_customers;",
    )
    .unwrap();
    let v = build(sqlite_file(&path), &clock);
    assert!(audience(&v, "newsletter").is_empty());
    assert!(
        v.needs_reconsent("newsletter")
            .unwrap()
            .filter_map(Result::ok)
            .next()
            .is_none()
    );
}

/// Lists and the feed on odd input: purposes without records, erased customers, cursors at
/// the ends of `u64`, limits 0 and `usize::MAX`; on memory and a SQLite file.
#[test]
fn odd_cursors_limits_and_purposes() {
    let dir = tempfile::tempdir().unwrap();
    for store in [
        Arc::new(MemoryStore::new()) as Arc<dyn Store>,
        sqlite_file(&dir.path().join("egard.db")),
    ] {
        let clock = ManualClock::new(t0());
        let v = email_vault(store, &clock);
        v.define_purpose(Purpose::new("empty", LawfulBasis::Consent).fields(["email"]))
            .unwrap();
        assert!(v.audience("empty").unwrap().next().is_none());
        assert!(v.needs_reconsent("empty").unwrap().next().is_none());
        assert!(v.needs_reconsent("newsletter").unwrap().next().is_none());
        assert!(matches!(v.audience("nope"), Err(Error::UnknownPurpose(_))));
        assert!(v.audience("Bad Purpose").is_err());
        let c = v.create_customer().unwrap();
        v.give_consent(c, "newsletter", Evidence::new("web")).unwrap();
        v.erase_customer(c).unwrap();
        assert!(audience(&v, "newsletter").is_empty());

        assert!(v.changes_since(0, 0).unwrap().is_empty());
        let all = v.changes_since(0, usize::MAX).unwrap();
        assert!(!all.is_empty() && all.len() <= egard::MAX_CHANGES_PAGE);
        assert!(all.iter().all(|e| e.kind.is_change()));
        let last = all.last().unwrap().seq;
        assert!(v.changes_since(last, 10).unwrap().is_empty());
        for seq in [u64::MAX, u64::MAX - 1, i64::MAX as u64, i64::MAX as u64 + 1] {
            assert!(v.changes_since(seq, 10).unwrap().is_empty(), "cursor {seq}");
        }
    }
}

/// A writer edits a withdrawal's kind so that the store's filter leaves it out: the feed does
/// not serve it (it cannot see it without reading the whole log), but the chain check
/// reports the edit. And an access event turned into a change is never served.
#[test]
fn edited_kinds_in_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let alice = {
        let v = email_vault(sqlite_file(&path), &clock);
        let alice = v.create_customer().unwrap();
        v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
        v.withdraw_consent(alice, "newsletter").unwrap();
        v.set_field(alice, "first_name", "Alice").unwrap();
        alice
    };
    let raw = Connection::open(&path).unwrap();
    let withdrawn: i64 = raw
        .query_row("SELECT seq FROM audit WHERE kind = 'consent_withdrawn'", [], |r| {
            r.get(0)
        })
        .unwrap();
    raw.execute("UPDATE audit SET kind = 'access_denied' WHERE seq = ?1", [withdrawn])
        .unwrap();
    let v = build(sqlite_file(&path), &clock);
    let feed = v.changes_since(0, 100).unwrap();
    assert!(feed.iter().all(|e| e.seq != withdrawn as u64));
    assert!(matches!(v.verify_audit(), Err(Error::AuditBroken { seq, .. }) if seq == withdrawn as u64));
    // Back, and an access event made into a change instead.
    raw.execute(
        "UPDATE audit SET kind = 'consent_withdrawn' WHERE seq = ?1",
        [withdrawn],
    )
    .unwrap();
    let looked: Option<i64> = raw
        .query_row(
            "SELECT seq FROM audit WHERE kind NOT IN ('consent_withdrawn') AND customer = ?1 ORDER BY seq DESC LIMIT 1",
            [alice.as_bytes().as_slice()],
            |r| r.get(0),
        )
        .ok();
    let access: i64 = raw
        .query_row(
            "SELECT seq FROM audit WHERE kind = 'audience_listed' OR kind = 'lookup_defined' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let _ = looked;
    raw.execute("UPDATE audit SET kind = 'consent_withdrawn' WHERE seq = ?1", [access])
        .unwrap();
    let served = v.changes_since(0, 100);
    assert!(
        matches!(served, Err(Error::AuditBroken { seq, .. }) if seq == access as u64),
        "{served:?}"
    );
}

/// Reordered and edited change events never reach the consumer.
#[test]
fn reordered_or_edited_change_events_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    {
        let v = email_vault(sqlite_file(&path), &clock);
        let alice = v.create_customer().unwrap();
        v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
        v.withdraw_consent(alice, "newsletter").unwrap();
    }
    let raw = Connection::open(&path).unwrap();
    let (given, withdrawn): (i64, i64) = (
        raw.query_row("SELECT seq FROM audit WHERE kind = 'consent_given'", [], |r| r.get(0))
            .unwrap(),
        raw.query_row("SELECT seq FROM audit WHERE kind = 'consent_withdrawn'", [], |r| {
            r.get(0)
        })
        .unwrap(),
    );
    let v = build(sqlite_file(&path), &clock);
    // Swap the two kinds (their MACs bind them).
    raw.execute(
        "UPDATE audit SET kind = CASE kind WHEN 'consent_given' THEN 'consent_withdrawn' ELSE 'consent_given' END
         WHERE seq IN (?1, ?2)",
        [given, withdrawn],
    )
    .unwrap();
    assert!(matches!(v.changes_since(0, 100), Err(Error::AuditBroken { .. })));
    raw.execute(
        "UPDATE audit SET kind = CASE kind WHEN 'consent_given' THEN 'consent_withdrawn' ELSE 'consent_given' END
         WHERE seq IN (?1, ?2)",
        [given, withdrawn],
    )
    .unwrap();
    assert!(v.changes_since(0, 100).is_ok());
    // Another purpose named in the withdrawal.
    raw.execute("UPDATE audit SET purpose = 'account' WHERE seq = ?1", [withdrawn])
        .unwrap();
    assert!(matches!(v.changes_since(0, 100), Err(Error::AuditBroken { .. })));
    // Served from a later cursor too.
    assert!(matches!(
        v.changes_since(withdrawn as u64 - 1, 100),
        Err(Error::AuditBroken { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------------

/// A withdrawn consent's row edited back to "given" never makes a "given" receipt; a
/// consent's owner moved to another customer never makes a receipt for them.
#[test]
fn receipts_from_edited_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let signer = ReceiptSigner::generate().unwrap();
    let (alice, bob, consent) = {
        let v = email_vault(sqlite_file(&path), &clock);
        let alice = v.create_customer().unwrap();
        let bob = v.create_customer().unwrap();
        v.give_consent(bob, "newsletter", Evidence::new("web")).unwrap();
        let consent = v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
        v.withdraw_consent(alice, "newsletter").unwrap();
        let r = v.consent_receipt(consent, &signer).unwrap();
        assert_eq!(r.consent_state(), Some("withdrawn"));
        (alice, bob, consent)
    };
    let raw = Connection::open(&path).unwrap();
    let id = consent.as_uuid().as_bytes().to_vec();
    raw.execute("UPDATE consents SET withdrawn_at = NULL WHERE id = ?1", [&id])
        .unwrap();
    let v = build(sqlite_file(&path), &clock);
    common::assert_crypto(v.consent_receipt(consent, &signer));
    raw.execute(
        "UPDATE consents SET withdrawn_at = (SELECT MAX(at) FROM audit WHERE kind = 'consent_withdrawn') WHERE id = ?1",
        [&id],
    )
    .unwrap();
    // Moved to bob: bob's records hold no such consent.
    raw.execute(
        "UPDATE consents SET customer = ?2 WHERE id = ?1",
        [id.as_slice(), bob.as_bytes().as_slice()],
    )
    .unwrap();
    let r = v.consent_receipt(consent, &signer);
    assert!(matches!(r, Err(Error::UnknownConsent(_) | Error::Crypto)), "{r:?}");
    let _ = alice;
}

/// A receipt holds ids, names and the controller's details: no field value.
#[test]
fn a_receipt_holds_no_personal_data() {
    let clock = ManualClock::new(t0());
    let v = email_vault(Arc::new(MemoryStore::new()), &clock);
    let alice = v.create_customer().unwrap();
    v.set_field(alice, "email", &format!("{CANARY}@example.org")).unwrap();
    v.set_field(alice, "first_name", CANARY).unwrap();
    let consent = v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
    let signer = ReceiptSigner::generate().unwrap();
    let r = v.consent_receipt(consent, &signer).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(CANARY));
    assert!(!format!("{r:?} {signer:?}").contains(CANARY));
    // An erased customer still gets a receipt, without anything of theirs but ids.
    v.erase_customer(alice).unwrap();
    let r = v.consent_receipt(consent, &signer).unwrap();
    r.verify(signer.public_key()).unwrap();
    assert!(matches!(
        v.consent_receipt(egard::ConsentId::new(), &signer),
        Err(Error::UnknownConsent(_))
    ));
    let _ = AuditKind::ReceiptIssued;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL (with EGARD_POSTGRES_URL)
// ---------------------------------------------------------------------------------------------

/// On PostgreSQL: a dropped unique index, two index rows for one value, cursors past `i64`,
/// and two servers racing for one address.
#[cfg(feature = "postgres")]
#[test]
fn postgres_attacks() {
    let Some(db) = common::pg::TestDb::new() else { return };
    let clock = ManualClock::new(t0());
    let v = email_vault(Arc::new(db.store()), &clock);
    let alice = v.create_customer().unwrap();
    let mallory = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    v.set_field(mallory, "email", "mallory@example.org").unwrap();
    for seq in [u64::MAX, i64::MAX as u64, i64::MAX as u64 + 1] {
        assert!(v.changes_since(seq, usize::MAX).unwrap().is_empty());
    }
    assert!(v.changes_since(0, 0).unwrap().is_empty());

    // Two servers race for one address, unique index in place.
    let other = Arc::new(
        Vault::builder()
            .master_key(MasterKey::from_bytes(KEY))
            .store(Arc::new(db.store()) as Arc<dyn Store>)
            .clock(clock.clone())
            .cache_ttl(Duration::seconds(1))
            .build()
            .unwrap(),
    );
    let v = Arc::new(v);
    for i in 0..20 {
        let (ca, cb) = (v.create_customer().unwrap(), other.create_customer().unwrap());
        let value = format!("race-{i}@example.org");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let spawn = |vault: Arc<Vault>, c: CustomerId| {
            let (b, x) = (barrier.clone(), value.clone());
            std::thread::spawn(move || {
                b.wait();
                vault.set_field(c, "email", &x)
            })
        };
        let (ta, tb) = (spawn(v.clone(), ca), spawn(other.clone(), cb));
        let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
        assert!(!(ra.is_ok() && rb.is_ok()), "both customers got {value}");
    }

    let mut admin = db.admin();
    admin
        .batch_execute(&format!("DROP INDEX \"{}\".egard_fields_by_lookup_token", db.schema))
        .unwrap();
    let eve = v.create_customer().unwrap();
    assert!(matches!(
        v.set_field(eve, "email", "ALICE@example.org"),
        Err(Error::Duplicate { .. })
    ));
    admin
        .execute(
            &format!(
                "UPDATE \"{s}\".egard_fields SET lookup_token = (SELECT lookup_token FROM \"{s}\".egard_fields WHERE customer = $1 AND field = 'email')
                 WHERE customer = $2 AND field = 'email'",
                s = db.schema
            ),
            &[alice.as_uuid(), mallory.as_uuid()],
        )
        .unwrap();
    let found = v.find_customer("email", "alice@example.org");
    assert!(
        matches!(found, Err(Error::Storage(egard::StoreError::Corrupt(_)))),
        "{found:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Fail closed, and what receipts say
// ---------------------------------------------------------------------------------------------

/// When the audit log cannot be written, nothing is found, listed or receipted.
#[test]
fn no_lookup_listing_or_receipt_without_its_audit_event() {
    let clock = ManualClock::new(t0());
    let store = common::TamperStore::new(Arc::new(MemoryStore::new()));
    let v = email_vault(store.clone(), &clock);
    let alice = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    let consent = v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
    let signer = ReceiptSigner::generate().unwrap();
    store.fail_audit_appends(true);
    assert!(v.find_customer("email", "alice@example.org").is_err());
    assert!(v.find_customer("email", "nobody@example.org").is_err());
    assert!(v.audience("newsletter").is_err());
    assert!(v.needs_reconsent("newsletter").is_err());
    assert!(v.consent_receipt(consent, &signer).is_err());
    store.fail_audit_appends(false);
    assert_eq!(v.find_customer("email", "alice@example.org").unwrap(), Some(alice));
}

/// A legitimate-interests record the customer objected to: the gate refuses it, the
/// audience leaves the customer out. What does the receipt say?
#[test]
fn a_receipt_after_an_objection() {
    let clock = ManualClock::new(t0());
    let v = build(Arc::new(MemoryStore::new()), &clock);
    v.define_purpose(Purpose::new("offers", LawfulBasis::LegitimateInterests).fields(["email"]))
        .unwrap();
    let alice = v.create_customer().unwrap();
    let record = v.give_consent(alice, "offers", Evidence::new("assessment")).unwrap();
    v.object(alice, "offers").unwrap();
    assert!(v.authorize(alice, "offers").is_err());
    assert!(audience(&v, "offers").is_empty());
    let signer = ReceiptSigner::generate().unwrap();
    let receipt = v.consent_receipt(record, &signer).unwrap();
    assert_ne!(
        receipt.consent_state(),
        Some("given"),
        "a receipt must not say 'given' for a record the customer's objection ended"
    );
    assert_eq!(receipt.consent_state(), Some("withdrawn"));
    assert!(receipt.withdrawn_at().is_some(), "withdrawnAt: when it was objected to");
    receipt.verify(signer.public_key()).unwrap();
    // An objection made before a later record does not end it (as the gate decides).
    clock.advance(Duration::days(1));
    let later = v.give_consent(alice, "offers", Evidence::new("assessment")).unwrap();
    assert!(v.authorize(alice, "offers").is_ok());
    let receipt = v.consent_receipt(later, &signer).unwrap();
    assert_eq!(receipt.consent_state(), Some("given"));
    assert_eq!(receipt.withdrawn_at(), None);
}

// ---------------------------------------------------------------------------------------------
// Two vaults defining one lookup at once
// ---------------------------------------------------------------------------------------------

/// A real store whose `lookups()` can answer as it did before another vault's definition was
/// committed: the interleaving of two `define_lookup` calls racing on two servers, made
/// deterministic.
struct EarlyLookupRead {
    inner: Arc<dyn Store>,
    early: std::sync::atomic::AtomicBool,
}

impl Store for EarlyLookupRead {
    fn apply(&self, batch: &[egard::store::Write]) -> Result<(), egard::StoreError> {
        self.inner.apply(batch)
    }
    fn purposes(&self) -> Result<Vec<egard::store::PurposeSnapshot>, egard::StoreError> {
        self.inner.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<egard::store::CustomerSnapshot>, egard::StoreError> {
        self.inner.customer(id)
    }
    fn field(
        &self,
        customer: CustomerId,
        field: &egard::FieldName,
    ) -> Result<Option<egard::store::StoredField>, egard::StoreError> {
        self.inner.field(customer, field)
    }
    fn fields(&self, customer: CustomerId) -> Result<Vec<egard::store::StoredField>, egard::StoreError> {
        self.inner.fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<CustomerId>, egard::StoreError> {
        self.inner.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: CustomerId) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_for(customer)
    }
    fn secret(&self, name: &str) -> Result<Option<egard::store::VaultSecret>, egard::StoreError> {
        self.inner.secret(name)
    }
    fn consent_owner(&self, consent: egard::ConsentId) -> Result<Option<CustomerId>, egard::StoreError> {
        self.inner.consent_owner(consent)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, egard::StoreError> {
        // Early once: the read made before the other vault's commit.
        if self.early.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        self.inner.lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<CustomerId>, egard::StoreError> {
        self.inner.find_indexed(field, token)
    }
    fn instance_id(&self) -> usize {
        self.inner.instance_id()
    }
}

/// Two servers define a lookup on one field with two normalisers at the same time: at most
/// one may succeed (the docs: "defining one on the field with another normaliser is
/// refused"), else each server indexes with its own key and the one-value rule breaks: the
/// same address is given to two customers, and each server names a different one.
#[test]
fn two_servers_defining_one_lookup_never_both_succeed() {
    let clock = ManualClock::new(t0());
    let shared: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = server(shared.clone(), &clock);
    purposes(&a);
    let b_store = Arc::new(EarlyLookupRead {
        inner: shared.clone(),
        early: std::sync::atomic::AtomicBool::new(false),
    });
    let b = server(b_store.clone(), &clock);
    a.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    // B read the definitions before A's commit, and writes its own after it.
    b_store.early.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = b.define_lookup(Lookup::new("email", Normalizer::Exact));
    assert!(
        matches!(second, Err(Error::Invalid(_))),
        "the second server reads the first one's definition and refuses another normaliser: {second:?}"
    );
    assert_eq!(b.lookups(), vec![Lookup::new("email", Normalizer::Email)]);
    let alice = a.create_customer().unwrap();
    let bob = b.create_customer().unwrap();
    let first_set = a.set_field(alice, "email", "alice@example.org");
    let second_set = b.set_field(bob, "email", "alice@example.org");
    assert!(
        second.is_err() || !(first_set.is_ok() && second_set.is_ok()),
        "both definitions stood and two customers hold one address"
    );
}

/// Verifying against keys of any length, and signers from any bytes: errors, never a panic.
#[test]
fn receipt_keys_of_any_shape() {
    let clock = ManualClock::new(t0());
    let v = email_vault(Arc::new(MemoryStore::new()), &clock);
    let alice = v.create_customer().unwrap();
    let consent = v.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
    let signer = ReceiptSigner::generate().unwrap();
    let receipt = v.consent_receipt(consent, &signer).unwrap();
    for key in [&[][..], &[0; 31][..], &[0; 32][..], &[0xff; 33][..], &[7; 1000][..]] {
        assert!(receipt.verify(key).is_err());
    }
    for bytes in [&[][..], &[0; 48][..], &[0x30; 85][..]] {
        assert!(ReceiptSigner::from_pkcs8(bytes).is_err());
    }
    // Another signer's receipt does not verify under this one's key, nor the other way round.
    let other = ReceiptSigner::generate().unwrap();
    let theirs = v.consent_receipt(consent, &other).unwrap();
    assert!(theirs.verify(signer.public_key()).is_err());
    assert!(receipt.verify(other.public_key()).is_err());
    receipt.verify(signer.public_key()).unwrap();
}

/// The limit the design states: rows replayed together with the log cut back to match (a
/// whole-database restore, or a writer deleting the tail of the log) pass a cold vault's
/// checks, so the customer is back in the audience; an anchor kept outside the database
/// catches it (`verify_audit_against`), and the vault that wrote past the cut still refuses:
/// it will not append after a head behind its own last event.
#[test]
fn a_replay_with_the_log_cut_back_is_caught_by_an_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let clock = ManualClock::new(t0());
    let warm = email_vault(sqlite_file(&path), &clock);
    let alice = warm.create_customer().unwrap();
    warm.give_consent(alice, "newsletter", Evidence::new("web")).unwrap();
    let raw = Connection::open(&path).unwrap();
    let cut: i64 = raw.query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0)).unwrap();
    raw.execute_batch(
        "CREATE TABLE old_consents AS SELECT * FROM consents;
         CREATE TABLE old_customers AS SELECT * FROM customers;",
    )
    .unwrap();
    warm.withdraw_consent(alice, "newsletter").unwrap();
    let anchor = warm.audit_anchor().unwrap();
    raw.execute_batch(
        "PRAGMA foreign_keys = OFF;
         DELETE FROM consents; INSERT INTO consents SELECT * FROM old_consents;
         DELETE FROM customers; INSERT INTO customers SELECT * FROM old_customers;",
    )
    .unwrap();
    raw.execute("DELETE FROM audit WHERE seq > ?1", [cut]).unwrap();

    let cold = build(sqlite_file(&path), &clock);
    assert_eq!(audience(&cold, "newsletter"), vec![alice], "the documented limit");
    assert!(matches!(
        cold.verify_audit_against(&anchor),
        Err(Error::AuditBroken {
            problem: egard::AuditBreak::Truncated,
            ..
        })
    ));
    // The warm vault knows better: the log ends before the last event it wrote, so it
    // refuses to append (which would cover the cut) and to verify.
    assert!(matches!(
        warm.audience("newsletter").map(|_| ()),
        Err(Error::AuditBroken {
            problem: egard::AuditBreak::Truncated,
            ..
        })
    ));
    assert!(matches!(
        warm.authorize(alice, "newsletter").map(|_| ()),
        Err(Error::AuditBroken { .. }) | Err(Error::Denied(_))
    ));
    assert!(warm.verify_audit().is_err());
}
