//! Review findings: each test fails on the code it was written against and shows one bug.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration as StdDuration;

use common::*;
use egard::store::{ChainLink, CustomerSnapshot, LatestChange, PurposeSnapshot, StoredField, Write};
use egard::{AuditAnchor, AuditEvent, AuditKind, Clock, CustomerId, FieldName, ManualClock, MasterKey, Store, StoreError, Vault};

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

/// journal.rs `submit`/`lead`: the committer role (`committing = true`) is taken before the
/// store is called and given back only on the normal return path. A store that panics once
/// (a bug in a third-party `Store`, a panic inside a driver) leaves the role taken forever:
/// every later write of this vault queues behind a committer that no longer exists and waits
/// on the condition variable for ever (here: the next `authorize`, on another thread).
#[test]
fn a_store_panic_leaves_the_committer_role_taken_and_every_later_call_hangs() {
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
}

/// journal.rs `flush`: it returns `Ok` as soon as `pending` is empty, also when the pending
/// events were only *taken* by another thread's batch that is still being written (or that
/// then fails, and puts them back into `pending`). `flush_audit` (and with it `audit_anchor`,
/// `verify_audit`, `access_log`, `audit_events`, which flush "to read the log") then returns
/// `Ok` although an access event acknowledged before the call is not in the store, and may
/// never be.
#[test]
fn flush_audit_returns_ok_while_an_acknowledged_access_event_is_not_written() {
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

/// journal.rs `settled` + mod.rs `commit_customer`: when `Store::sync` fails after a change's
/// batch was written, the call returns `Err` ("the change is in the store either way"), and
/// `commit_customer` returns before `note_state`: the vault's cached state stays on the old
/// revision while the store holds the new one. Here a withdrawal is in the store (and in the
/// log), yet this vault goes on granting the withdrawn purpose from its cache, and the log
/// reads "ConsentWithdrawn, then AccessGranted".
#[test]
fn a_failed_sync_leaves_the_cache_granting_a_withdrawn_consent() {
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
    assert!(withdrawn.is_err(), "the sync failed, the call says so");
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

/// Same root as above, in archival (archive.rs `prune` via `commit`): a failed `sync` after
/// the prune batch was written makes `archive_audit` return `Err` although the events are
/// already deleted from the store and the base moved. A host that treats the error as "nothing
/// happened" (the module docs: "a failure at any step loses no event") and drops the segment
/// it was given loses those events for good.
#[test]
fn archive_audit_returns_err_after_it_pruned() {
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
    assert!(archived.is_err(), "the sync failed");
    assert!(
        vault.audit_archived_through().unwrap().is_none() && whole_log(&*store).len() >= before,
        "archive_audit returned Err, yet the store was pruned ({} of {before} events left) and the base moved",
        whole_log(&*store).len()
    );
}
