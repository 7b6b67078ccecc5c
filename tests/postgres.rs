//! `PostgresStore` against a real PostgreSQL server.
//!
//! The server is given by `EGARD_POSTGRES_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`). Without it every test here says plainly that
//! it was skipped and passes — unless `EGARD_REQUIRE_POSTGRES=1` (set by `.ci/run`), where a
//! missing or unreachable server fails. Each test works in a PostgreSQL schema of its own and
//! drops it at the end, so tests run in parallel and leave nothing behind.
#![cfg(feature = "postgres")]

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use egard::store::{CustomerRecord, WrappedKey, Write};
use egard::{
    AccessDenied, AuditEvent, AuditKind, Clock, ConsentId, CustomerId, Error, Evidence, FieldName, LawfulBasis,
    ManualClock, MasterKey, PostgresOptions, PostgresStore, Purpose, Store, StoreError, Vault,
};

// ----- support -----

mod common;

use common::pg::TestDb;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn newsletter() -> Purpose {
    Purpose::new("newsletter", LawfulBasis::Consent)
        .fields(["email", "first_name"])
        .consent_lifetime(Duration::days(365))
}

fn vault(store: PostgresStore, clock: &ManualClock) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes([42; 32]))
        .store(store)
        .clock(clock.clone())
        .namespace("fleet")
        .build()
        .unwrap()
}

fn event(seq: u64, customer: Option<CustomerId>) -> AuditEvent {
    AuditEvent {
        seq,
        at: t0(),
        kind: AuditKind::AccessGranted,
        customer,
        purpose: None,
        field: None,
        detail: String::new(),
        state: None,
        actor: None,
        mac: [seq as u8; 32],
    }
}

fn record(id: CustomerId) -> CustomerRecord {
    CustomerRecord {
        id,
        created_at: t0(),
        restricted: false,
        erased_at: None,
        rev: 1,
        key_uses: 0,
        mac: [1; 32],
    }
}

// ----- the conformance suite -----

/// Schemas made for the conformance checks (one fresh, empty store per check), all dropped
/// at the end, also when a check fails.
#[cfg(feature = "conformance")]
struct Schemas {
    url: String,
    names: Mutex<Vec<String>>,
}

#[cfg(feature = "conformance")]
impl Drop for Schemas {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.url, postgres::NoTls) {
            for name in self.names.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
            }
        }
    }
}

#[cfg(feature = "conformance")]
#[test]
fn passes_the_store_conformance_suite() {
    let db = db_or_skip!();
    let schemas = Schemas {
        url: db.url.clone(),
        names: Mutex::default(),
    };
    egard::store::conformance::run_all(|| {
        let name = format!("{}_{}", db.schema, schemas.names.lock().unwrap().len());
        schemas.names.lock().unwrap().push(name.clone());
        let options = PostgresOptions::new()
            .schema(&name)
            .pool_size(4)
            .application_name(&db.app);
        PostgresStore::connect_with(&db.url, options).unwrap()
    });
}

/// Two stores (two "servers") on one schema append to one chain without ever racing for a
/// sequence number: the advisory lock queues them.
#[cfg(feature = "conformance")]
#[test]
fn chained_appends_from_two_servers_never_conflict() {
    let db = db_or_skip!();
    let stores = [db.store(), db.store()];
    let turn = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..6usize {
            let (stores, turn) = (&stores, &turn);
            s.spawn(move || {
                for n in 0..15usize {
                    let store = &stores[turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2];
                    let size = 1 + (i + n) % 3;
                    let result = store.apply_chained(&[], &mut |head| {
                        Ok((1..=size as u64)
                            .map(|k| {
                                let mut e = egard::AuditEvent {
                                    seq: head.seq + k,
                                    at: chrono::Utc::now(),
                                    kind: egard::AuditKind::AccessGranted,
                                    customer: None,
                                    purpose: None,
                                    field: None,
                                    detail: format!("writer-{i}"),
                                    state: None,
                                    actor: None,
                                    mac: head.mac,
                                };
                                e.mac[0] = e.mac[0].wrapping_add(k as u8);
                                e
                            })
                            .collect())
                    });
                    assert!(result.is_ok(), "writer {i}: {result:?}");
                }
            });
        }
    });
    let events = stores[0].audit_range(1, usize::MAX).unwrap();
    let expected: usize = (0..6usize)
        .flat_map(|i| (0..15usize).map(move |n| 1 + (i + n) % 3))
        .sum();
    assert_eq!(events.len(), expected);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "no gaps");
    }
}

// ----- the store itself -----

#[test]
fn creates_its_schema_once_and_records_the_version() {
    let db = db_or_skip!();
    let a = db.store();
    let b = db.store(); // a second server starting on the same database
    assert_eq!(a.schema(), Some(db.schema.as_str()));
    drop((a, b));
    let mut admin = db.admin();
    let rows = admin
        .query(
            &format!("SELECT version FROM \"{}\".egard_schema_version", db.schema),
            &[],
        )
        .unwrap();
    let mut versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=egard::store::POSTGRES_SCHEMA_VERSION as i32).collect::<Vec<_>>()
    );
    let tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&db.schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 10);
}

#[test]
fn a_version_1_schema_is_migrated_forward_with_its_data() {
    let db = db_or_skip!();
    let store = db.store();
    let alice = CustomerId::new();
    store.apply(&[Write::InsertCustomer(record(alice))]).unwrap();
    drop(store);
    // The pool may still be opening (and preparing statements on) a connection in the
    // background: end them all, or the DDL below can deadlock with it.
    db.terminate_backends();
    // Back to version 1: no secrets table, none of the MACs, revisions and versions of
    // version 3, nor the lookups of version 4 and the indexes of version 5; versions 2 to 5
    // not recorded.
    db.admin()
        .batch_execute(&format!(
            "DROP INDEX \"{s}\".egard_consents_current;
             DROP INDEX \"{s}\".egard_audit_change_feed;
             DROP TABLE \"{s}\".egard_vault_secrets;
             DROP TABLE \"{s}\".egard_lookups;
             DROP INDEX \"{s}\".egard_fields_by_lookup_token;
             ALTER TABLE \"{s}\".egard_fields DROP COLUMN lookup_token;
             ALTER TABLE \"{s}\".egard_purposes DROP COLUMN rev, DROP COLUMN mac;
             ALTER TABLE \"{s}\".egard_customers DROP COLUMN rev, DROP COLUMN mac, DROP COLUMN key_uses;
             ALTER TABLE \"{s}\".egard_fields DROP COLUMN version;
             ALTER TABLE \"{s}\".egard_consents DROP COLUMN mac;
             ALTER TABLE \"{s}\".egard_objections DROP COLUMN mac;
             ALTER TABLE \"{s}\".egard_audit DROP COLUMN state;
             DELETE FROM \"{s}\".egard_schema_version WHERE version > 1",
            s = db.schema
        ))
        .unwrap();
    let store = db.store();
    let kept: i64 = db
        .admin()
        .query_one(&format!("SELECT count(*) FROM \"{}\".egard_customers", db.schema), &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "the version 1 data is kept");
    // A record written before version 3 has no MAC: refused, never trusted.
    assert!(matches!(store.customer(alice), Err(StoreError::Corrupt(_))));
    let secret = egard::store::VaultSecret {
        name: "audit".into(),
        wrapped: vec![7; 3],
    };
    store.apply(&[Write::InsertSecret(secret.clone())]).unwrap();
    assert_eq!(store.secret("audit").unwrap(), Some(secret));
    let top: i32 = db
        .admin()
        .query_one(
            &format!("SELECT max(version) FROM \"{}\".egard_schema_version", db.schema),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(top, egard::store::POSTGRES_SCHEMA_VERSION as i32);
}

#[test]
fn many_servers_starting_at_once_migrate_once() {
    let db = Arc::new(db_or_skip!());
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || PostgresStore::connect_with(&db.url, db.options().pool_size(1)).map(drop))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
}

#[test]
fn refuses_a_schema_written_by_a_newer_release() {
    let db = db_or_skip!();
    drop(db.store());
    db.admin()
        .batch_execute(&format!(
            "INSERT INTO \"{}\".egard_schema_version (version) VALUES (99)",
            db.schema
        ))
        .unwrap();
    match PostgresStore::connect_with(&db.url, db.options()) {
        Err(Error::Storage(StoreError::SchemaTooNew { found: 99, supported })) => {
            assert_eq!(supported, egard::store::POSTGRES_SCHEMA_VERSION)
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn connects_through_a_tls_connector_argument_too() {
    let db = db_or_skip!();
    let store = PostgresStore::connect_with_tls(&db.url, db.options(), postgres::NoTls).unwrap();
    assert!(store.purposes().unwrap().is_empty());
    // The URL never shows in Debug output (it can hold a password).
    assert!(!format!("{store:?}").contains(&db.url));
}

#[test]
fn a_failed_batch_leaves_nothing_behind() {
    let db = db_or_skip!();
    let store = db.store();
    let alice = CustomerId::new();
    store
        .apply(&[
            Write::InsertCustomer(record(alice)),
            Write::AppendAudit(event(1, Some(alice))),
        ])
        .unwrap();
    // A duplicate sequence number at the end of a batch: Conflict, and the customer and key
    // written before it in the same batch are not there.
    let bob = CustomerId::new();
    let err = store
        .apply(&[
            Write::InsertCustomer(record(bob)),
            Write::PutKey(WrappedKey {
                customer: bob,
                version: 1,
                wrapped: vec![1, 2, 3],
            }),
            Write::AppendAudit(event(2, Some(bob))),
            Write::AppendAudit(event(1, Some(bob))),
        ])
        .unwrap_err();
    assert_eq!(err, StoreError::Conflict);
    assert!(store.customer(bob).unwrap().is_none());
    assert_eq!(store.audit_head().unwrap().unwrap().seq, 1);
    // A lone duplicate event (the one-statement path) conflicts too.
    assert_eq!(
        store.apply(&[Write::AppendAudit(event(1, None))]),
        Err(StoreError::Conflict)
    );
    // A write to a customer that does not exist: MissingCustomer, nothing applied.
    let err = store
        .apply(&[
            Write::AppendAudit(event(2, None)),
            Write::UpdateCustomer {
                record: record(CustomerId::new()),
                expected_rev: 1,
            },
        ])
        .unwrap_err();
    assert_eq!(err, StoreError::MissingCustomer);
    assert_eq!(store.audit_range(1, 10).unwrap().len(), 1);
}

#[test]
fn erasure_deletes_keys_and_fields_and_refuses_new_ones() {
    let db = db_or_skip!();
    let store = db.store();
    let alice = CustomerId::new();
    let email = FieldName::new("email").unwrap();
    store
        .apply(&[
            Write::InsertCustomer(record(alice)),
            Write::PutKey(WrappedKey {
                customer: alice,
                version: 1,
                wrapped: vec![9; 60],
            }),
            Write::PutField {
                customer: alice,
                field: email.clone(),
                version: 1,
                envelope: vec![7; 40],
                at: t0(),
            },
        ])
        .unwrap();
    store
        .apply(&[Write::EraseCustomer {
            customer: alice,
            at: t0(),
        }])
        .unwrap();
    let snap = store.customer(alice).unwrap().unwrap();
    assert_eq!(snap.record.erased_at, Some(t0()));
    assert!(snap.keys.is_empty());
    assert!(store.fields(alice).unwrap().is_empty());
    assert_eq!(
        store.apply(&[Write::PutKey(WrappedKey {
            customer: alice,
            version: 2,
            wrapped: vec![1],
        })]),
        Err(StoreError::MissingCustomer)
    );
    assert_eq!(
        store.apply(&[Write::PutField {
            customer: alice,
            field: email,
            version: 2,
            envelope: vec![1],
            at: t0(),
        }]),
        Err(StoreError::MissingCustomer)
    );
}

#[test]
fn bad_stored_rows_are_corrupt_errors_not_panics() {
    let db = db_or_skip!();
    let store = db.store();
    let alice = CustomerId::new();
    store.apply(&[Write::InsertCustomer(record(alice))]).unwrap();
    let s = &db.schema;
    let mut admin = db.admin();
    admin
        .batch_execute(&format!(
            "INSERT INTO \"{s}\".egard_audit VALUES (1, now(), 'no_such_kind', NULL, NULL, NULL, '', '\\x00');
             INSERT INTO \"{s}\".egard_purposes VALUES ('x', '[1, 2]');
             INSERT INTO \"{s}\".egard_consents VALUES (gen_random_uuid(), '{alice}', 'p', now(), '{{\"id\": 3}}');
             INSERT INTO \"{s}\".egard_fields VALUES ('{alice}', 'NOT A NAME', '\\x01', now());
             INSERT INTO \"{s}\".egard_keys VALUES ('{alice}', -1, '\\x01');"
        ))
        .unwrap();
    assert!(matches!(store.audit_head(), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.audit_range(1, 5), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.purposes(), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.customer(alice), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.fields(alice), Err(StoreError::Corrupt(_))));
    // A customer id that is not a v4/v7 UUID.
    admin
        .batch_execute(&format!(
            "INSERT INTO \"{s}\".egard_customers VALUES ('00000000-0000-1000-8000-000000000000', now(), false, NULL)"
        ))
        .unwrap();
    assert!(matches!(store.customer_ids(), Err(StoreError::Corrupt(_))));
}

#[test]
fn a_vault_on_postgres_round_trips_and_survives_a_reconnect() {
    let db = db_or_skip!();
    let clock = ManualClock::new(t0());
    let alice;
    {
        let v = vault(db.store(), &clock);
        v.define_purpose(newsletter()).unwrap();
        alice = v.create_customer().unwrap();
        v.set_field(alice, "email", "alice@example.com").unwrap();
        v.give_consent(alice, "newsletter", Evidence::new("web-form")).unwrap();
    }
    // A new process: new pool, new vault, same database.
    let v = vault(db.store(), &clock);
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert_eq!(
        v.reveal::<String>(&pass, "email").unwrap().expose(),
        "alice@example.com"
    );
    // The table holds ciphertext only.
    let mut admin = db.admin();
    let envelope: Vec<u8> = admin
        .query_one(&format!("SELECT envelope FROM \"{}\".egard_fields", db.schema), &[])
        .unwrap()
        .get(0);
    assert!(!envelope.windows(5).any(|w| w == b"alice"));
    assert_eq!(v.verify_audit().unwrap().events_verified, 5);
}

/// A customer's data key rotated on PostgreSQL: every field reads back under the new key, the
/// old wrapped key is gone from the table, a new process reads the same, the audit verifies.
#[test]
fn a_customer_key_rotation_on_postgres() {
    let db = db_or_skip!();
    let clock = ManualClock::new(t0());
    let (alice, bob, old_wrapped);
    {
        let v = vault(db.store(), &clock);
        v.define_purpose(newsletter()).unwrap();
        alice = v.create_customer().unwrap();
        bob = v.create_customer().unwrap();
        v.set_field(alice, "email", "alice@example.com").unwrap();
        v.set_field(alice, "first_name", "Alice").unwrap();
        v.set_field(bob, "email", "bob@example.com").unwrap();
        v.give_consent(alice, "newsletter", Evidence::new("web-form")).unwrap();
        v.give_consent(bob, "newsletter", Evidence::new("web-form")).unwrap();
        old_wrapped = db.store().customer(alice).unwrap().unwrap().keys;
        v.rotate_customer_key(alice).unwrap();
        let pass = v.authorize(alice, "newsletter").unwrap();
        assert_eq!(v.reveal::<String>(&pass, "first_name").unwrap().expose(), "Alice");
    }
    let keys = db.store().customer(alice).unwrap().unwrap().keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].version, old_wrapped[0].version + 1);
    let rows: Vec<Vec<u8>> = db
        .admin()
        .query(
            &format!("SELECT wrapped FROM \"{}\".egard_keys WHERE customer = $1", db.schema),
            &[alice.as_uuid()],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![keys[0].wrapped.clone()], "the old wrapped key is deleted");
    assert!(!rows.contains(&old_wrapped[0].wrapped));
    // A new process.
    let v = vault(db.store(), &clock);
    for (who, email) in [(alice, "alice@example.com"), (bob, "bob@example.com")] {
        let pass = v.authorize(who, "newsletter").unwrap();
        assert_eq!(v.reveal::<String>(&pass, "email").unwrap().expose(), email);
    }
    assert!(
        v.audit_events(alice)
            .unwrap()
            .iter()
            .any(|e| e.kind == AuditKind::KeyRotated)
    );
    v.verify_audit().unwrap();
}

// ----- several processes, one database -----

const TTL: Duration = Duration::seconds(2);
const PASS_LIFETIME: Duration = Duration::seconds(30);

/// Two vaults (two processes, each with its own pool) on one database, one clock.
fn fleet(db: &TestDb) -> (Vault, Vault, ManualClock) {
    let clock = ManualClock::new(t0());
    let build = || {
        Vault::builder()
            .master_key(MasterKey::from_bytes([42; 32]))
            .store(db.store())
            .clock(clock.clone())
            .namespace("fleet")
            .cache_ttl(TTL)
            .pass_lifetime(PASS_LIFETIME)
            .build()
            .unwrap()
    };
    let a = build();
    a.define_purpose(newsletter()).unwrap();
    let b = build(); // reads the purposes A defined
    (a, b, clock)
}

fn ready_customer(a: &Vault) -> CustomerId {
    let c = a.create_customer().unwrap();
    a.set_field(c, "email", "someone@example.com").unwrap();
    a.give_consent(c, "newsletter", Evidence::new("web-form")).unwrap();
    c
}

fn is_denied(r: Result<impl std::fmt::Debug, Error>, reason: AccessDenied) -> bool {
    matches!(r, Err(Error::Denied(got)) if got == reason)
}

/// Steps the clock by `step` until `denied()` holds; returns the time it took.
fn time_until(clock: &ManualClock, step: Duration, limit: Duration, mut denied: impl FnMut() -> bool) -> Duration {
    let start = clock.now();
    while !denied() {
        assert!(clock.now() - start <= limit, "not revoked within {limit}");
        clock.advance(step);
    }
    clock.now() - start
}

#[test]
fn a_withdrawal_in_one_vault_stops_the_other_within_the_ttl() {
    let db = db_or_skip!();
    let (a, b, clock) = fleet(&db);
    let alice = ready_customer(&a);
    let old_pass = b.authorize(alice, "newsletter").unwrap();
    assert!(b.reveal::<String>(&old_pass, "email").is_ok());

    a.withdraw_consent(alice, "newsletter").unwrap();
    assert!(is_denied(a.authorize(alice, "newsletter"), AccessDenied::Withdrawn));
    // B's cached copy is younger than the ttl: B may still grant (this is the bound).
    let stale_pass = b.authorize(alice, "newsletter").unwrap();

    let step = Duration::milliseconds(100);
    let took = time_until(&clock, step, TTL, || {
        is_denied(b.authorize(alice, "newsletter"), AccessDenied::Withdrawn)
    });
    let _ = writeln!(
        std::io::stderr(),
        "revocation bound (withdrawal, new passes): {} ms with cache_ttl = {} ms",
        took.num_milliseconds(),
        TTL.num_milliseconds()
    );
    assert!(took <= TTL);
    // The passes B issued before it learnt of the withdrawal stop too.
    assert!(is_denied(
        b.reveal::<String>(&old_pass, "email"),
        AccessDenied::Withdrawn
    ));
    assert!(is_denied(
        b.reveal::<String>(&stale_pass, "email"),
        AccessDenied::Withdrawn
    ));
    // A renewed consent given through B is seen by A within the ttl as well.
    b.give_consent(alice, "newsletter", Evidence::new("phone")).unwrap();
    assert!(b.authorize(alice, "newsletter").is_ok());
    clock.advance(TTL);
    assert!(a.authorize(alice, "newsletter").is_ok());
}

#[test]
fn an_existing_pass_in_the_other_vault_stops_within_the_ttl_through_reveal() {
    let db = db_or_skip!();
    let (a, b, clock) = fleet(&db);
    let alice = ready_customer(&a);
    let pass = b.authorize(alice, "newsletter").unwrap();
    a.withdraw_consent(alice, "newsletter").unwrap();
    // Nobody calls authorize on B: the pass alone must find out.
    let took = time_until(&clock, Duration::milliseconds(100), TTL, || {
        is_denied(b.reveal::<String>(&pass, "email"), AccessDenied::Withdrawn)
    });
    let _ = writeln!(
        std::io::stderr(),
        "revocation bound (withdrawal, existing pass via reveal): {} ms with cache_ttl = {} ms",
        took.num_milliseconds(),
        TTL.num_milliseconds()
    );
    assert!(took <= TTL);
}

#[test]
fn a_pass_used_without_the_vault_stops_within_ttl_plus_pass_lifetime() {
    let db = db_or_skip!();
    let (a, b, clock) = fleet(&db);
    let alice = a.create_customer().unwrap();
    let sealed = a.seal(alice, "email", &"alice@example.com".to_owned()).unwrap();
    a.give_consent(alice, "newsletter", Evidence::new("web-form")).unwrap();
    let pass = b.authorize(alice, "newsletter").unwrap();
    a.withdraw_consent(alice, "newsletter").unwrap();
    // `Sealed::open` has no store to ask: the pass's own lifetime is the bound.
    assert!(sealed.open(&pass).is_ok());
    let took = time_until(&clock, Duration::seconds(1), TTL + PASS_LIFETIME, || {
        sealed.open(&pass).is_err()
    });
    assert!(took <= TTL + PASS_LIFETIME);
    assert!(is_denied(sealed.open(&pass), AccessDenied::PassExpired));
}

#[test]
fn a_restriction_in_one_vault_stops_the_other_within_the_ttl() {
    let db = db_or_skip!();
    let (a, b, clock) = fleet(&db);
    let alice = ready_customer(&a);
    let pass = b.authorize(alice, "newsletter").unwrap();
    a.restrict(alice).unwrap();
    assert!(
        b.authorize(alice, "newsletter").is_ok(),
        "within the ttl B may still grant"
    );
    clock.advance(TTL);
    assert!(is_denied(b.authorize(alice, "newsletter"), AccessDenied::Restricted));
    assert!(is_denied(b.reveal::<String>(&pass, "email"), AccessDenied::Restricted));
    // Lifted in A: B grants again after the ttl.
    a.lift_restriction(alice).unwrap();
    clock.advance(TTL);
    assert!(b.authorize(alice, "newsletter").is_ok());
}

#[test]
fn an_erasure_in_one_vault_stops_the_other_within_the_ttl() {
    let db = db_or_skip!();
    let (a, b, clock) = fleet(&db);
    let alice = ready_customer(&a);
    let pass = b.authorize(alice, "newsletter").unwrap();
    a.erase_customer(alice).unwrap();
    // The ciphertext is gone at once for everyone; B cannot write new data for her either.
    assert!(b.reveal::<String>(&pass, "email").is_err());
    // (B re-reads a customer before every change it makes, so it knows she was erased.)
    assert!(matches!(
        b.set_field(alice, "email", "again@example.com"),
        Err(Error::Erased(id)) if id == alice
    ));
    clock.advance(TTL);
    assert!(matches!(b.authorize(alice, "newsletter"), Err(Error::Erased(id)) if id == alice));
    assert!(matches!(b.reveal::<String>(&pass, "email"), Err(Error::Erased(_))));
}

#[test]
fn a_purpose_redefined_in_one_vault_is_used_by_the_other_within_the_ttl() {
    let db = db_or_skip!();
    let (a, b, clock) = fleet(&db);
    let alice = ready_customer(&a);
    let pass = b.authorize(alice, "newsletter").unwrap();
    // A new privacy notice, published through A: consents under notice 1 no longer count.
    a.define_purpose(newsletter().notice_version(2)).unwrap();
    assert!(is_denied(
        a.authorize(alice, "newsletter"),
        AccessDenied::NoticeOutdated
    ));
    assert!(
        b.authorize(alice, "newsletter").is_ok(),
        "within the ttl B may still grant"
    );
    clock.advance(TTL);
    assert!(is_denied(
        b.authorize(alice, "newsletter"),
        AccessDenied::NoticeOutdated
    ));
    assert!(is_denied(
        b.reveal::<String>(&pass, "email"),
        AccessDenied::NoticeOutdated
    ));
    // A consent given again through B is recorded under notice 2, which A accepts.
    b.give_consent(alice, "newsletter", Evidence::new("web-form")).unwrap();
    clock.advance(TTL);
    assert!(a.authorize(alice, "newsletter").is_ok());
    assert!(b.authorize(alice, "newsletter").is_ok()); // B re-read the purposes just now
    // A purpose defined on A only is known to B after the ttl.
    a.define_purpose(Purpose::new("support", LawfulBasis::Contract).fields(["email"]))
        .unwrap();
    assert!(matches!(b.authorize(alice, "support"), Err(Error::UnknownPurpose(_))));
    clock.advance(TTL);
    assert!(is_denied(b.authorize(alice, "support"), AccessDenied::NoConsent));
}

#[test]
fn two_vaults_writing_at_once_keep_one_verifiable_audit_chain() {
    let db = db_or_skip!();
    let (a, b, _clock) = fleet(&db);
    let (a, b) = (Arc::new(a), Arc::new(b));
    let customers: Vec<CustomerId> = (0..4).map(|_| ready_customer(&a)).collect();
    let before = a.verify_audit().unwrap().events_verified;
    const PER_THREAD: u64 = 40;
    let mut handles = Vec::new();
    for (i, v) in [a.clone(), b.clone(), a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let customers = customers.clone();
        handles.push(std::thread::spawn(move || {
            for n in 0..PER_THREAD {
                let c = customers[(i + n as usize) % customers.len()];
                let pass = v.authorize(c, "newsletter").unwrap();
                v.reveal::<String>(&pass, "email").unwrap();
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let report_a = a.verify_audit().unwrap();
    let report_b = b.verify_audit().unwrap();
    assert_eq!(report_a, report_b);
    assert_eq!(report_a.events_verified, before + 6 * PER_THREAD);
}

#[test]
fn servers_starting_at_once_share_one_audit_key_that_survives_a_rotation() {
    let db = Arc::new(db_or_skip!());
    let clock = ManualClock::new(t0());
    let build = |current: MasterKey, previous: Option<MasterKey>| {
        let mut b = Vault::builder()
            .master_key(current)
            .store(db.store())
            .clock(clock.clone())
            .namespace("fleet");
        if let Some(p) = previous {
            b = b.previous_master_key(p);
        }
        b.build().unwrap()
    };
    // Four servers building on the empty database at once: one installs the audit key, the
    // others read it; all write to one chain.
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                barrier.wait();
                let v = build(MasterKey::from_bytes([42; 32]), None);
                v.create_customer().unwrap();
            });
        }
    });
    let old = build(MasterKey::from_bytes([42; 32]), None);
    assert_eq!(old.verify_audit().unwrap().events_verified, 4);
    old.define_purpose(newsletter()).unwrap();
    let alice = ready_customer(&old);
    drop(old);
    let new_key = || MasterKey::from_bytes([43; 32]).with_id(2);
    let rotating = build(new_key(), Some(MasterKey::from_bytes([42; 32])));
    assert_eq!(rotating.rotate_master_key().unwrap(), 5);
    rotating.create_customer().unwrap();
    let report = rotating.verify_audit().unwrap();
    drop(rotating);
    let after = build(new_key(), None);
    assert_eq!(after.verify_audit().unwrap(), report);
    let pass = after.authorize(alice, "newsletter").unwrap();
    assert_eq!(
        after.reveal::<String>(&pass, "email").unwrap().expose(),
        "someone@example.com"
    );
    assert_eq!(
        after.verify_audit().unwrap().events_verified,
        report.events_verified + 1
    );
}

// ----- connection loss -----

#[test]
fn a_connection_killed_mid_operation_is_a_storage_error_and_the_vault_recovers() {
    let db = db_or_skip!();
    let clock = ManualClock::new(t0());
    let v = Arc::new(vault(db.store(), &clock));
    v.define_purpose(newsletter()).unwrap();
    let alice = ready_customer(&v);

    // Hold the audit table so that the next change blocks inside its transaction.
    let mut blocker = db.admin();
    let mut tx = blocker.transaction().unwrap();
    tx.batch_execute(&format!(
        "LOCK TABLE \"{}\".egard_audit IN ACCESS EXCLUSIVE MODE",
        db.schema
    ))
    .unwrap();
    let worker = {
        let v = v.clone();
        std::thread::spawn(move || v.withdraw_consent(alice, "newsletter"))
    };
    // Wait until the vault's backend is waiting on the lock, then end it.
    let mut admin = db.admin();
    let deadline = Instant::now() + StdDuration::from_secs(60);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&db.app],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the vault never blocked on the lock");
        std::thread::sleep(StdDuration::from_millis(20));
    }
    assert!(db.terminate_backends() >= 1);
    let result = worker.join().unwrap();
    match &result {
        Err(Error::Storage(StoreError::Unavailable(msg))) => assert!(!msg.is_empty()),
        other => panic!("expected a storage error, got {other:?}"),
    }
    tx.rollback().unwrap();

    // Not acknowledged, so not applied: the consent still stands, in the store too.
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert!(v.reveal::<String>(&pass, "email").is_ok());
    assert!(v.consents(alice).unwrap().iter().all(|c| c.withdrawn_at.is_none()));
    // The next call just works, and its result is durable.
    v.withdraw_consent(alice, "newsletter").unwrap();
    let fresh = vault(db.store(), &clock);
    assert!(is_denied(fresh.authorize(alice, "newsletter"), AccessDenied::Withdrawn));
    fresh.verify_audit().unwrap();
}

#[test]
fn connections_killed_while_idle_are_replaced_without_an_error() {
    let db = db_or_skip!();
    let clock = ManualClock::new(t0());
    let v = vault(db.store(), &clock);
    v.define_purpose(newsletter()).unwrap();
    let alice = ready_customer(&v);
    assert!(db.terminate_backends() >= 1);
    // A change starts with BEGIN: on a dead connection nothing else was sent, so the store
    // takes another connection and the call succeeds.
    v.withdraw_consent(alice, "newsletter").unwrap();
    assert!(is_denied(v.authorize(alice, "newsletter"), AccessDenied::Withdrawn));
    assert!(db.terminate_backends() >= 1);
    // Reads change nothing: retried on a live connection.
    assert_eq!(v.consents(alice).unwrap().len(), 1);
    v.give_consent(alice, "newsletter", Evidence::new("again")).unwrap();
    v.verify_audit().unwrap();
}

#[test]
fn connections_killed_again_and_again_lose_nothing_acknowledged() {
    let db = db_or_skip!();
    let clock = ManualClock::new(t0());
    let v = Arc::new(vault(db.store(), &clock));
    v.define_purpose(newsletter()).unwrap();
    let alice = ready_customer(&v);

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<ConsentId>>> = Arc::default();
    let failures = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (v, stop, acknowledged, failures) = (v.clone(), stop.clone(), acknowledged.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match v.give_consent(alice, "newsletter", Evidence::new("loop")) {
                        Ok(id) => acknowledged.lock().unwrap().push(id),
                        Err(Error::Storage(_)) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(other) => panic!("unexpected error: {other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut killed = 0;
    for _ in 0..15 {
        std::thread::sleep(StdDuration::from_millis(40));
        killed += db.terminate_backends();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(killed > 0);
    // The vault works again at once.
    let last = v.give_consent(alice, "newsletter", Evidence::new("after")).unwrap();
    acknowledged.lock().unwrap().push(last);

    // Read back through a new process: every acknowledged consent is there.
    let fresh = vault(db.store(), &clock);
    let stored: std::collections::HashSet<ConsentId> =
        fresh.consents(alice).unwrap().into_iter().map(|c| c.id).collect();
    let acknowledged = acknowledged.lock().unwrap();
    assert!(acknowledged.len() > 1);
    for id in acknowledged.iter() {
        assert!(stored.contains(id), "acknowledged consent {id} was lost");
    }
    fresh.verify_audit().unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "connection loss: {killed} backends killed, {} writes acknowledged, {} refused with Error::Storage",
        acknowledged.len(),
        failures.load(Ordering::Relaxed)
    );
}
