//! Group commit of the audit log: many threads (and several vaults on one database) deciding
//! and changing at once, every decision in one unbroken chain, no caller ever seeing a
//! conflict for the next sequence number, and one call's failed write never failing the
//! calls written beside it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use chrono::Duration;
use common::*;
use egard::store::{ChainLink, CustomerSnapshot, PurposeSnapshot, StoredField, Write};
use egard::{
    AuditAnchor, AuditEvent, AuditKind, CustomerId, Error, FieldName, ManualClock, MasterKey, Store, StoreError, Vault,
};

const READERS: usize = 4;
const READS: usize = 150;

/// Readers authorize (and reveal) on a few customers while a writer withdraws, gives and
/// rectifies on others; every call succeeds or is denied for its own reason, and the log holds
/// exactly one access event per decision, in one chain.
fn readers_and_a_writer_share_one_chain(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let readable: Vec<CustomerId> = (0..8)
        .map(|_| {
            let c = customer_with_data(&vault);
            consent(&vault, c, "newsletter");
            c
        })
        .collect();
    let changing: Vec<CustomerId> = (0..3).map(|_| customer_with_data(&vault)).collect();
    let before = whole_log(&*store).len();
    let start = Barrier::new(READERS + 1);
    let stop = AtomicBool::new(false);
    let changes = AtomicUsize::new(0);
    let (vault, readable, changing, start, stop, changes) = (&vault, &readable, &changing, &start, &stop, &changes);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                s.spawn(move || {
                    start.wait();
                    for i in 0..READS {
                        let c = readable[(r * 7 + i) % readable.len()];
                        let pass = vault.authorize(c, "newsletter").expect("a consented read is granted");
                        let email: egard::Revealed<String> = vault.reveal(&pass, "email").expect("reveal");
                        assert_eq!(email.expose(), "alice@example.com");
                    }
                })
            })
            .collect();
        let writer = s.spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 6 {
                let c = changing[n % changing.len()];
                vault
                    .give_consent(c, "newsletter", egard::Evidence::new("form"))
                    .expect("give");
                vault.set_field(c, "first_name", &format!("Name{n}")).expect("rectify");
                vault.withdraw_consent(c, "newsletter").expect("withdraw");
                changes.fetch_add(3, Ordering::Relaxed);
                n += 1;
            }
        });
        start.wait();
        for r in readers {
            r.join().expect("a reader failed");
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("the writer failed");
    });
    let report = vault.verify_audit().expect("one unbroken chain");
    let log = whole_log(&*store);
    assert_eq!(report.events_verified, log.len() as u64);
    let grants = log[before..]
        .iter()
        .filter(|e| e.kind == AuditKind::AccessGranted)
        .count();
    assert_eq!(
        grants,
        READERS * READS,
        "one access event per grant, none lost, none doubled"
    );
    let changed = log[before..]
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                AuditKind::ConsentGiven | AuditKind::ConsentWithdrawn | AuditKind::FieldRectified
            )
        })
        .count();
    assert_eq!(changed, changes.load(Ordering::Relaxed), "one change event per change");
}

/// With batching, the same: the access events are written later, but all of them.
fn batched_readers_lose_nothing(store: Arc<dyn Store>) {
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store.clone())
        .audit_batching(64, std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let before = whole_log(&*store).len();
    std::thread::scope(|s| {
        for _ in 0..READERS {
            s.spawn(|| {
                for _ in 0..READS {
                    vault.authorize(c, "newsletter").expect("granted");
                }
            });
        }
        s.spawn(|| {
            for n in 0..10 {
                vault.set_field(c, "address", &format!("{n} Rue")).expect("rectify");
            }
        });
    });
    vault.flush_audit().unwrap();
    vault.verify_audit().expect("one chain");
    let grants = whole_log(&*store)[before..]
        .iter()
        .filter(|e| e.kind == AuditKind::AccessGranted)
        .count();
    assert_eq!(grants, READERS * READS);
}

on_every_backend!(readers_and_a_writer_share_one_chain, batched_readers_lose_nothing);

/// A store whose writes of changes fail on demand, while access events still go through;
/// it counts the snapshot reads.
struct FailingChanges {
    inner: Arc<dyn Store>,
    fail: AtomicBool,
    snapshots: AtomicUsize,
}

impl Store for FailingChanges {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.inner.apply(batch)
    }
    fn apply_chained(&self, batch: &[Write], link: &mut ChainLink<'_>) -> Result<AuditAnchor, StoreError> {
        if self.fail.load(Ordering::SeqCst) && !batch.is_empty() {
            return Err(StoreError::Unavailable("changes refused (test)".into()));
        }
        self.inner.apply_chained(batch, link)
    }
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        self.inner.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        self.snapshots.fetch_add(1, Ordering::SeqCst);
        self.inner.customer(id)
    }
    fn customer_revision(&self, id: CustomerId) -> Result<Option<(u64, egard::store::RecordMac)>, StoreError> {
        self.inner.customer_revision(id)
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
    fn secret(&self, name: &str) -> Result<Option<egard::store::VaultSecret>, StoreError> {
        self.inner.secret(name)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, StoreError> {
        self.inner.lookups()
    }
    fn find_indexed(
        &self,
        field: &FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<CustomerId>, StoreError> {
        self.inner.find_indexed(field, token)
    }
    fn instance_id(&self) -> usize {
        self.inner.instance_id()
    }
}

/// A change whose write fails fails alone: the reads queued beside it are written and
/// granted, the change leaves nothing, and the chain stays whole.
#[test]
fn a_failed_change_fails_alone() {
    let store = Arc::new(FailingChanges {
        inner: memory(),
        fail: AtomicBool::new(false),
        snapshots: AtomicUsize::new(0),
    });
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let other = customer_with_data(&vault);
    store.fail.store(true, Ordering::SeqCst);
    let before = whole_log(&*store).len();
    let refused = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..READERS {
            s.spawn(|| {
                for _ in 0..READS {
                    vault
                        .authorize(c, "newsletter")
                        .expect("reads are written beside failing changes");
                }
            });
        }
        s.spawn(|| {
            for n in 0..50 {
                match vault.set_field(other, "address", &format!("{n} Rue")) {
                    Err(Error::Storage(StoreError::Unavailable(_))) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("the change must fail with the store's error, got {other:?}"),
                }
            }
        });
    });
    assert_eq!(refused.load(Ordering::Relaxed), 50);
    let log = whole_log(&*store);
    assert!(
        log[before..]
            .iter()
            .all(|e| e.kind == AuditKind::AccessGranted && e.customer == Some(c)),
        "only the reads were written"
    );
    assert_eq!(log.len() - before, READERS * READS);
    store.fail.store(false, Ordering::SeqCst);
    vault.set_field(other, "address", "1 Rue").expect("changes work again");
    vault.verify_audit().expect("one chain");
}

/// Several servers on one PostgreSQL database: readers and a writer on each, no caller ever
/// sees `Conflict`, every change is written, the shared chain verifies from every server.
#[cfg(feature = "postgres")]
#[test]
fn servers_on_one_postgres_database_never_conflict() {
    let db = db_or_skip!();
    const SERVERS: usize = 3;
    let server = || {
        Vault::builder()
            .master_key(MasterKey::from_bytes(KEY))
            .store(db.store())
            .cache_ttl(Duration::seconds(2))
            .build()
            .unwrap()
    };
    let first = server();
    define_standard_purposes(&first);
    let vaults: Vec<Vault> = std::iter::once(first).chain((1..SERVERS).map(|_| server())).collect();
    let readable: Vec<CustomerId> = (0..6)
        .map(|_| {
            let c = customer_with_data(&vaults[0]);
            consent(&vaults[0], c, "newsletter");
            c
        })
        .collect();
    let changing: Vec<Vec<CustomerId>> = (0..SERVERS)
        .map(|_| (0..2).map(|_| customer_with_data(&vaults[0])).collect())
        .collect();
    let changes = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for (v, vault) in vaults.iter().enumerate() {
            let (readable, mine, changes) = (&readable, &changing[v], &changes);
            for r in 0..2 {
                s.spawn(move || {
                    for i in 0..60 {
                        let c = readable[(r + i + v) % readable.len()];
                        vault.authorize(c, "newsletter").expect("a read on a shared store");
                    }
                });
            }
            s.spawn(move || {
                for n in 0..12 {
                    let c = mine[n % mine.len()];
                    vault
                        .set_field(c, "first_name", &format!("Name{n}"))
                        .expect("no conflict reaches a writer");
                    changes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(changes.load(Ordering::Relaxed), SERVERS * 12);
    for vault in &vaults {
        vault.verify_audit().expect("every server verifies the one chain");
    }
}

/// With a cache time-to-live, an entry past it costs one small read (the customer's revision)
/// when the customer did not change, and a whole snapshot when another vault changed it.
#[test]
fn an_unchanged_customer_is_checked_by_its_revision() {
    let store = Arc::new(FailingChanges {
        inner: memory(),
        fail: AtomicBool::new(false),
        snapshots: AtomicUsize::new(0),
    });
    let clock = ManualClock::new(t0());
    let build = || {
        Vault::builder()
            .master_key(MasterKey::from_bytes(KEY))
            .store(store.clone())
            .clock(clock.clone())
            .cache_ttl(Duration::seconds(10))
            .build()
            .unwrap()
    };
    let a = build();
    define_standard_purposes(&a);
    let b = build();
    let c = customer_with_data(&a);
    consent(&a, c, "newsletter");
    a.authorize(c, "newsletter").unwrap();
    let before = store.snapshots.load(Ordering::SeqCst);
    clock.advance(Duration::seconds(11));
    a.authorize(c, "newsletter").unwrap();
    assert_eq!(
        store.snapshots.load(Ordering::SeqCst),
        before,
        "no snapshot read for an unchanged customer"
    );
    b.withdraw_consent(c, "newsletter").unwrap();
    let before = store.snapshots.load(Ordering::SeqCst);
    clock.advance(Duration::seconds(11));
    assert!(matches!(
        a.authorize(c, "newsletter"),
        Err(Error::Denied(egard::AccessDenied::Withdrawn))
    ));
    assert!(
        store.snapshots.load(Ordering::SeqCst) > before,
        "a changed customer is read again"
    );
}
