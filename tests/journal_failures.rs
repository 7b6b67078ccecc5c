//! The journal when the store fails under it: a panic in the store, a batch that fails while
//! a flush waits for it, a sync that fails after the change was written. (Each case failed
//! before its fix: a hang, an early `Ok`, a stale cache, an error after a prune.)

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration as StdDuration;

use common::*;
use egard::store::{ChainLink, CustomerSnapshot, LatestChange, PurposeSnapshot, StoredField, Write};
use egard::{
    AuditAnchor, AuditEvent, AuditKind, Clock, CustomerId, FieldName, ManualClock, MasterKey, Store, StoreError, Vault,
};

/// What the hooked store does with the next access-only chained batch (no writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Pass it through.
    Open,
    /// Hold it until released, then pass it through or fail it.
    Hold,
}

/// A real store with hooks on `apply_chained`: panic once, or hold an access batch until
/// the test releases it (and then fail it or not); `sync` can fail.
struct Hooked {
    inner: Arc<dyn Store>,
    panic_next: AtomicBool,
    gate: Mutex<(Gate, bool /* entered */, Option<bool> /* released: fail? */)>,
    turn: Condvar,
    fail_sync: AtomicBool,
    syncs: AtomicUsize,
}

impl Hooked {
    fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            panic_next: AtomicBool::new(false),
            gate: Mutex::new((Gate::Open, false, None)),
            turn: Condvar::new(),
            fail_sync: AtomicBool::new(false),
            syncs: AtomicUsize::new(0),
        })
    }

    fn hold_next_access_batch(&self) {
        *self.gate.lock().unwrap() = (Gate::Hold, false, None);
    }

    /// Waits until an access batch is held inside the store.
    fn wait_entered(&self) {
        let mut g = self.gate.lock().unwrap();
        while !g.1 {
            let (next, timeout) = self.turn.wait_timeout(g, StdDuration::from_secs(10)).unwrap();
            g = next;
            assert!(!timeout.timed_out(), "no access batch reached the store");
        }
    }

    fn release(&self, fail: bool) {
        let mut g = self.gate.lock().unwrap();
        g.2 = Some(fail);
        self.turn.notify_all();
    }
}

impl Store for Hooked {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.inner.apply(batch)
    }
    fn apply_chained(&self, batch: &[Write], link: &mut ChainLink<'_>) -> Result<AuditAnchor, StoreError> {
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("a bug in the store (test)");
        }
        if batch.is_empty() {
            let mut g = self.gate.lock().unwrap();
            if g.0 == Gate::Hold {
                g.0 = Gate::Open;
                g.1 = true;
                self.turn.notify_all();
                while g.2.is_none() {
                    g = self.turn.wait(g).unwrap();
                }
                if g.2 == Some(true) {
                    return Err(StoreError::Unavailable("access batch refused (test)".into()));
                }
            }
        }
        self.inner.apply_chained(batch, link)
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("sync failed (test)".into()));
        }
        self.inner.sync()
    }
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        self.inner.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
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
    fn audit_changes(&self, after_seq: u64, limit: usize) -> Result<Vec<LatestChange>, StoreError> {
        self.inner.audit_changes(after_seq, limit)
    }
    fn audit_trail(&self, customer: CustomerId) -> Result<Vec<LatestChange>, StoreError> {
        self.inner.audit_trail(customer)
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

fn grants(store: &dyn Store, customer: CustomerId) -> usize {
    whole_log(store)
        .iter()
        .filter(|e| e.kind == AuditKind::AccessGranted && e.customer == Some(customer))
        .count()
}

/// A store that panics once (a bug in a third-party `Store`, a panic inside a driver): the
/// panic reaches the caller, and the committer's role is given back (it used to stay taken,
/// and every later write of the vault waited for ever).
#[test]
fn a_store_panic_reaches_its_caller_and_later_calls_go_on() {
    let store = Hooked::new(memory());
    let clock = ManualClock::new(t0());
    let vault = Arc::new(vault_on(store.clone(), &clock));
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");

    store.panic_next.store(true, Ordering::SeqCst);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        vault.authorize(c, "newsletter").map(|_| ())
    }));
    assert!(panicked.is_err(), "the store's panic reaches the caller");

    // The store works again. The next call must not hang.
    let (tx, rx) = mpsc::channel();
    let v = vault.clone();
    std::thread::spawn(move || {
        let _ = tx.send(v.authorize(c, "newsletter").map(|_| ()));
    });
    match rx.recv_timeout(StdDuration::from_secs(10)) {
        Ok(result) => result.expect("the store is healthy again"),
        Err(_) => panic!("deadlock: after one panic in the store, authorize waits for ever for the committer role"),
    }
    verify_audit_ok(&vault);
}

/// A panic while another thread's call waits in the queue behind the panicking batch: that
/// call gets an error (its events were not acknowledged), not a hang, and the log verifies.
#[test]
fn a_store_panic_fails_the_calls_of_its_batch_and_releases_the_queue() {
    let store = Hooked::new(memory());
    let clock = ManualClock::new(t0());
    let vault = Arc::new(vault_on(store.clone(), &clock));
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");

    // Other customers, so that the calls do not wait for each other's customer.
    let others: Vec<CustomerId> = (0..3)
        .map(|_| {
            let o = customer_with_data(&vault);
            consent(&vault, o, "newsletter");
            o
        })
        .collect();

    // Hold one access batch in the store and queue three calls behind it; the next batch
    // that reaches the store (those three, written together) panics.
    store.hold_next_access_batch();
    let v = vault.clone();
    let first = std::thread::spawn(move || v.authorize(c, "newsletter").map(|_| ()));
    store.wait_entered();
    let mut queued = Vec::new();
    for &c in &others {
        let v = vault.clone();
        queued.push(std::thread::spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                v.authorize(c, "newsletter").map(|_| ())
            }))
        }));
    }
    std::thread::sleep(StdDuration::from_millis(200));
    store.panic_next.store(true, Ordering::SeqCst);
    store.release(false);
    assert!(first.join().unwrap().is_ok(), "the held batch was written");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let results: Vec<_> = queued.into_iter().map(|t| t.join().unwrap()).collect();
        let _ = tx.send(results);
    });
    let results = rx
        .recv_timeout(StdDuration::from_secs(10))
        .expect("the queued calls end (no deadlock)");
    let panics = results.iter().filter(|r| r.is_err()).count();
    let granted = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    assert_eq!(
        panics, 1,
        "the thread that ran the store, and only it, saw its panic: {results:?}"
    );
    // The calls queued with it failed; any that came later was written. Either way, exactly
    // the calls that returned a grant have their event in the log.
    let logged: usize = others.iter().map(|&o| grants(&*store, o)).sum();
    assert_eq!(logged, granted, "acknowledged grants and logged grants: {results:?}");
    store.panic_next.store(false, Ordering::SeqCst);
    drop(vault.authorize(c, "newsletter").expect("the vault goes on"));
    verify_audit_ok(&vault);
}

fn verify_audit_ok(vault: &Vault) {
    vault.verify_audit().expect("the log verifies");
}

/// `flush_audit` (and with it `audit_anchor`, `verify_audit`, `access_log`, `audit_events`,
/// which flush to read the log) returns `Ok` only once every access event acknowledged before
/// it is in the store, also when another thread's batch had taken them and then failed (it
/// used to return `Ok` as soon as nothing was pending).
#[test]
fn flush_audit_waits_for_acknowledged_events_another_thread_is_writing() {
    let store = Hooked::new(memory());
    let vault = Arc::new(
        Vault::builder()
            .master_key(MasterKey::from_bytes(KEY))
            .store(store.clone())
            .clock(ManualClock::new(t0()))
            .audit_batching(2, StdDuration::from_secs(3600))
            .build()
            .unwrap(),
    );
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    assert_eq!(grants(&*store, c), 0);

    // Our access: queued under batching, acknowledged.
    drop(vault.authorize(c, "newsletter").expect("granted"));

    // Another thread's access fills the batch: it takes ours with it and writes both; the
    // store holds that write (a slow disk, a network round trip).
    store.hold_next_access_batch();
    let v = vault.clone();
    let other = std::thread::spawn(move || v.authorize(c, "newsletter").map(|_| ()));
    store.wait_entered();

    // Now we flush: it must not return Ok before our event is in the store.
    let (tx, rx) = mpsc::channel();
    let v = vault.clone();
    std::thread::spawn(move || {
        let _ = tx.send(v.flush_audit());
    });
    let early = rx.recv_timeout(StdDuration::from_secs(2));
    // The other thread's write fails (its own call fails, fail closed; ours was queued).
    store.release(true);
    let other_result = other.join().unwrap();
    assert!(other_result.is_err(), "the other access fails with its batch");
    let was_early = early.is_ok();
    let flushed = match early {
        Ok(r) => r,
        Err(_) => rx.recv_timeout(StdDuration::from_secs(10)).expect("flush returns"),
    };
    if flushed.is_ok() {
        assert_eq!(
            grants(&*store, c),
            1,
            "flush_audit returned Ok (early: {}) but the access event acknowledged before it is not in the store",
            was_early
        );
    }
}

/// When `Store::sync` fails after a change was written, the call says `NotDurable` and the
/// vault still applies the change in memory: a withdrawal in the store is not granted from
/// the cache (it used to be: the log read "ConsentWithdrawn, then AccessGranted").
#[test]
fn a_failed_sync_reports_not_durable_and_the_change_is_in_effect() {
    let store = Hooked::new(memory());
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    drop(vault.authorize(c, "newsletter").expect("granted before the withdrawal"));

    store.fail_sync.store(true, Ordering::SeqCst);
    let withdrawn = vault.withdraw_consent(c, "newsletter");
    store.fail_sync.store(false, Ordering::SeqCst);
    assert!(
        matches!(withdrawn, Err(egard::Error::NotDurable(_))),
        "the sync failed, the call says so: {withdrawn:?}"
    );
    let log = whole_log(&*store);
    assert_eq!(
        log.last().map(|e| e.kind),
        Some(AuditKind::ConsentWithdrawn),
        "the withdrawal is in the store and in the log"
    );

    // The stored customer is at the withdrawal's state (its record carries the state MAC
    // that the ConsentWithdrawn event names).
    let stored = store.customer(c).unwrap().unwrap();
    assert_eq!(log.last().and_then(|e| e.state), Some(stored.record.mac));

    // This vault must not grant against the state its own store holds.
    let again = vault.authorize(c, "newsletter").map(|_| ());
    assert!(
        again.is_err(),
        "granted a purpose whose withdrawal is in the store and the log (the cache was not updated after the failed sync)"
    );
}

/// Archival whose prune was written but could not be synced: `archive_audit` returns its
/// report (it used to return `Err` although the events were already pruned, telling the host
/// that the segment it was given is not needed); the segment verifies and joins the store.
#[test]
fn archival_with_a_failed_sync_after_the_prune_reports_success() {
    let store = Hooked::new(memory());
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    for _ in 0..5 {
        drop(vault.authorize(c, "newsletter").unwrap());
    }
    let before = whole_log(&*store).len();
    clock.advance(chrono::Duration::days(10));
    store.fail_sync.store(true, Ordering::SeqCst);
    let mut segment = Vec::new();
    let archived = vault.archive_audit(clock.now() - chrono::Duration::days(1), &mut segment);
    store.fail_sync.store(false, Ordering::SeqCst);
    let report = archived
        .expect("the prune is in the store: archival succeeded")
        .expect("there were events to archive");
    assert!(report.events > 0);
    assert!(whole_log(&*store).len() < before, "the store was pruned");
    assert!(vault.audit_archived_through().unwrap().is_some());
    let checked = vault
        .verify_audit_with_segments([segment.as_slice()])
        .expect("the segment joins what the store keeps");
    assert_eq!(checked.segments, 1);
    assert_eq!(checked.archived_events, report.events);
}
