//! Memory: bytes per customer for a population of 1,000,000 customers in `MemoryStore`
//! (3 purposes' records, 5 fields of at most 32 bytes), counted by a global allocator.
//!
//! ```text
//! cargo bench --bench memory
//! ```
//!
//! The population is built through the vault into two `MemoryStore`s, one for the data and
//! one for the audit log (every create, set_field and consent appends audit events), so that
//! dropping them one at a time measures each part exactly. `EGARD_BENCH_MEMORY_CUSTOMERS`
//! overrides the population size.

#![allow(unsafe_code)] // the counting allocator; the library itself forbids unsafe code

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use egard::store::Write;
use egard::store::{CustomerSnapshot, LatestChange, PurposeSnapshot, StoredField, VaultSecret};
use egard::{AuditEvent, CustomerId, FieldName, MemoryStore, Store, StoreError};

/// Counts the bytes and allocations live at any time (as requested: the C allocator adds its
/// own headers and rounding, which the RSS figure includes).
struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            BYTES.fetch_add(new_size, Ordering::Relaxed);
            BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live (bytes, allocations).
fn live() -> (usize, usize) {
    (BYTES.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

/// Data in one `MemoryStore`, audit events in another: the same structures as one
/// `MemoryStore` holding both, but each can be dropped and measured alone. `latest` is the
/// harness's own index of each customer's latest state-bearing event (a `MemoryStore` keeps
/// one inside; the audit half cannot answer it for customers it does not hold, and a scan of
/// the log on every change made the bench quadratic), measured apart and left out.
struct Split {
    data: Arc<MemoryStore>,
    audit: Arc<MemoryStore>,
    latest: Arc<std::sync::Mutex<std::collections::HashMap<CustomerId, u64>>>,
}

impl Store for Split {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        // The vault puts a batch's audit events after its changes.
        let k = batch
            .iter()
            .position(|w| matches!(w, Write::AppendAudit(_)))
            .unwrap_or(batch.len());
        self.data.apply(&batch[..k])?;
        self.audit.apply(&batch[k..])?;
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        for w in &batch[k..] {
            if let Write::AppendAudit(e) = w {
                if let (Some(c), Some(_)) = (e.customer, e.state) {
                    latest.insert(c, e.seq);
                }
            }
        }
        Ok(())
    }
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        // The data half knows no audit event: each purpose's latest change is looked up in
        // the audit half (a scan, fine for the few purposes of a benchmark).
        let events = self.audit.audit_range(0, usize::MAX)?;
        let mut purposes = self.data.purposes()?;
        for p in &mut purposes {
            let id = p.stored.purpose.id();
            p.latest_change = self.latest(events.iter().filter(|e| {
                e.customer.is_none() && e.state.is_some() && e.purpose.as_ref().is_some_and(|x| x.as_str() == id)
            }))?;
        }
        Ok(purposes)
    }
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        let Some(mut snapshot) = self.data.customer(id)? else {
            return Ok(None);
        };
        let seq = self.latest.lock().unwrap_or_else(|e| e.into_inner()).get(&id).copied();
        let events = match seq {
            Some(seq) => self.audit.audit_range(seq, 1)?,
            None => Vec::new(),
        };
        snapshot.latest_change = self.latest(events.iter())?;
        Ok(Some(snapshot))
    }
    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
        self.data.field(customer, field)
    }
    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
        self.data.fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        self.data.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        self.audit.audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.audit.audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        self.audit.audit_for(customer)
    }
    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        self.data.secret(name)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, StoreError> {
        self.data.lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<egard::CustomerId>, StoreError> {
        self.data.find_indexed(field, token)
    }
}

impl Split {
    /// The last of `events` with the MAC of the event before it.
    fn latest<'a>(&self, events: impl Iterator<Item = &'a AuditEvent>) -> Result<Option<LatestChange>, StoreError> {
        let Some(event) = events.last().cloned() else {
            return Ok(None);
        };
        let prev_mac = match event.seq.checked_sub(1) {
            Some(prev) => self
                .audit
                .audit_range(prev, 1)?
                .first()
                .filter(|e| e.seq == prev)
                .map(|e| e.mac),
            None => None,
        };
        Ok(Some(LatestChange { event, prev_mac }))
    }
}

/// Resident set size and its peak, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn main() {
    // `cargo test --benches` runs this without --bench: a small population then.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = match std::env::var("EGARD_BENCH_MEMORY_CUSTOMERS") {
        Ok(v) => v.parse().unwrap(),
        Err(_) if benching => 1_000_000,
        Err(_) => 1_000,
    };
    let (rss0, _) = rss_kib();
    let base = live();
    let data = Arc::new(MemoryStore::new());
    let audit = Arc::new(MemoryStore::new());
    let latest = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let store = Split {
        data: data.clone(),
        audit: audit.clone(),
        latest: latest.clone(),
    };
    let (vault, _clock, customers, setup) = common::build(n, store, n >= 500_000);
    let (rss1, peak) = rss_kib();
    let all = live();
    let ids = customers.capacity() * size_of::<CustomerId>();
    drop(customers);
    let audit_events = vault.verify_audit().unwrap().events_verified;
    drop(vault);
    let with_index = live();
    drop(latest);
    let without_vault = live();
    drop(audit);
    let without_audit = live();
    drop(data);
    let end = live();

    let per = |bytes: usize| bytes as f64 / n as f64;
    let cache = all.0 - ids - with_index.0;
    let cache_blocks = all.1 - 1 - with_index.1;
    let audit_bytes = without_vault.0 - without_audit.0;
    let audit_blocks = without_vault.1 - without_audit.1;
    let store_bytes = without_audit.0 - end.0;
    let store_blocks = without_audit.1 - end.1;
    println!("\n== memory: {n} customers in MemoryStore (3 purposes' records, 5 fields of ≤ 32 bytes)");
    println!(
        "built in {setup:.2?}; {audit_events} audit events ({:.1} per customer)",
        audit_events as f64 / n as f64
    );
    println!("bytes requested from the allocator, per customer (allocations per customer):");
    println!(
        "  MemoryStore, data only (records, keys, fields, consents):  {:>7.0} B  ({:.1} allocations)",
        per(store_bytes),
        store_blocks as f64 / n as f64
    );
    println!(
        "  MemoryStore, audit log:                                     {:>7.0} B  ({:.1} allocations)",
        per(audit_bytes),
        audit_blocks as f64 / n as f64
    );
    println!(
        "  MemoryStore, data + audit log:                              {:>7.0} B",
        per(store_bytes + audit_bytes)
    );
    println!(
        "  vault cache (its default 100,000 customers, shared over n): {:>7.0} B  ({:.1} allocations)",
        per(cache),
        cache_blocks as f64 / n as f64
    );
    println!(
        "RSS after building: {:.0} B per customer (everything, with the allocator's overhead); peak RSS {} MiB",
        (rss1.saturating_sub(rss0)) as f64 * 1024.0 / n as f64,
        peak / 1024
    );
    println!(
        "target ≤ 1 KiB per customer in MemoryStore: data only {}, with the audit log {}",
        if per(store_bytes) <= 1024.0 { "met" } else { "MISSED" },
        if per(store_bytes + audit_bytes) <= 1024.0 {
            "met"
        } else {
            "MISSED"
        },
    );
    let _ = base;
}
