//! The population shared by the benchmark binaries: customers in a `MemoryStore`, each with
//! three purposes' records (some expired or withdrawn) and five fields of at most 32 bytes.

#![allow(dead_code)] // each bench binary uses a different part

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use egard::store::{CustomerSnapshot, PurposeSnapshot, StoredField, VaultSecret, Write};
use egard::{
    AuditEvent, Clock, CustomerId, Evidence, FieldName, LawfulBasis, MasterKey, MemoryStore, Purpose, Store,
    StoreError, Vault,
};

/// The master key of every benchmark vault.
pub const MASTER: [u8; 32] = [42; 32];

/// The system clock, shifted by an offset the population builder moves to make consents
/// that are already expired when the benchmarks run.
#[derive(Clone, Default)]
pub struct BenchClock(Arc<AtomicI64>);

impl BenchClock {
    /// Shifts the clock by `by` from the system time.
    pub fn shift(&self, by: Duration) {
        self.0.store(by.num_seconds(), Ordering::Relaxed);
    }
}

impl Clock for BenchClock {
    fn now(&self) -> DateTime<Utc> {
        match self.0.load(Ordering::Relaxed) {
            // The benchmarks run unshifted: as cheap as `SystemClock`.
            0 => Utc::now(),
            shift => Utc::now() + Duration::seconds(shift),
        }
    }
}

/// The purposes every population defines.
pub fn purposes() -> Vec<Purpose> {
    vec![
        // Every customer has this record (a contract, not a consent).
        Purpose::new("account", LawfulBasis::Contract).fields(["city", "email", "first_name", "last_name", "phone"]),
        // Consent, valid 395 days: valid for a half of customers, expired for a quarter,
        // withdrawn for a quarter. `bio` (256 bytes) is written only for the probed customers.
        Purpose::new("newsletter", LawfulBasis::Consent)
            .fields(["bio", "email", "first_name"])
            .consent_lifetime(Duration::days(395)),
        // Consent, valid 365 days, given by every customer.
        Purpose::new("analytics", LawfulBasis::Consent)
            .fields(["city"])
            .consent_lifetime(Duration::days(365)),
        // Nobody consented: the "no consent" denial.
        Purpose::new("research", LawfulBasis::Consent).fields(["city", "email"]),
    ]
}

/// What the newsletter record of customer `i` is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Newsletter {
    Valid,
    Expired,
    Withdrawn,
}

pub fn newsletter_of(i: usize) -> Newsletter {
    match i % 4 {
        1 => Newsletter::Expired,
        2 => Newsletter::Withdrawn,
        _ => Newsletter::Valid,
    }
}

/// A value whose JSON encoding is exactly `len` bytes (a string of `len - 2` characters).
pub fn value_of_len(len: usize, seed: usize) -> String {
    let mut s = format!("{seed:x}-");
    while s.len() < len - 2 {
        s.push((b'a' + (s.len() % 26) as u8) as char);
    }
    s.truncate(len - 2);
    s
}

/// A built population.
pub struct Population {
    pub store: Arc<MemoryStore>,
    pub vault: Vault,
    pub clock: BenchClock,
    /// Every customer, in creation order (index `i` follows [`newsletter_of`]).
    pub customers: Vec<CustomerId>,
    /// How long building took.
    pub setup: StdDuration,
}

/// A vault over `store` sharing the population's key and clock, as a second process on the
/// same database would have one: through its own handle on the store, with a cache
/// time-to-live (a process that shares its store with another must re-read what it caches;
/// one hour, so that only the cache capacity decides what is cold).
pub fn vault_over(store: Arc<MemoryStore>, clock: &BenchClock, cache_capacity: usize) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(MASTER))
        .store(OtherHandle(store))
        .clock(clock.clone())
        .cache_capacity(cache_capacity)
        .cache_ttl(Duration::hours(1))
        .build()
        .unwrap()
}

/// Another handle on the same store: every call goes to the shared store, but the
/// handle is an object of its own, as a second connection to one database would be (the vault
/// refuses two vaults on one store object unless all of them have a time-to-live, and the
/// population's own vault has none).
pub struct OtherHandle(pub Arc<MemoryStore>);

impl Store for OtherHandle {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.0.apply(batch)
    }
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        self.0.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        self.0.customer(id)
    }
    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
        self.0.field(customer, field)
    }
    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
        self.0.fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        self.0.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        self.0.audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.0.audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        self.0.audit_for(customer)
    }
    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        self.0.secret(name)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, StoreError> {
        self.0.lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<egard::CustomerId>, StoreError> {
        self.0.find_indexed(field, token)
    }
}

/// Builds `n` customers through the public API, as an application would: create, five
/// fields, a contract record, two consents; a quarter of the newsletter consents were given
/// 400 days ago (expired now), a quarter were withdrawn.
pub fn build<S: Store>(n: usize, store: S, progress: bool) -> (Vault, BenchClock, Vec<CustomerId>, StdDuration) {
    let start = Instant::now();
    let clock = BenchClock::default();
    // Phase 1 happens 400 days ago, from the vault's first event on: the vault never lets its
    // time go back behind the latest event it recorded (a clock set back must not revive an
    // expired consent), so the shift comes before anything is written.
    clock.shift(-Duration::days(400));
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(MASTER))
        .store(store)
        .clock(clock.clone())
        .build()
        .unwrap();
    for p in purposes() {
        vault.define_purpose(p).unwrap();
    }
    let evidence = Evidence::new("web-form").source("signup-v3");
    let mut customers = Vec::with_capacity(n);
    // Phase 1, 400 days ago: the customers, their fields, the consents that are expired now.
    for i in 0..n {
        let c = vault.create_customer().unwrap();
        vault
            .set_field(c, "email", &format!("c{i:07}@example-customers.com"))
            .unwrap();
        vault.set_field(c, "first_name", "Alexandrine").unwrap();
        vault.set_field(c, "last_name", &format!("Lastname{i}")).unwrap();
        vault.set_field(c, "phone", &format!("+33 6 {i:08}")).unwrap();
        vault.set_field(c, "city", "Aix-en-Provence").unwrap();
        vault.give_consent(c, "account", evidence.clone()).unwrap();
        if newsletter_of(i) == Newsletter::Expired {
            vault.give_consent(c, "newsletter", evidence.clone()).unwrap();
        }
        customers.push(c);
        if progress && i > 0 && i % 200_000 == 0 {
            eprintln!("  ... {i} customers in {:.1?}", start.elapsed());
        }
    }
    // Phase 2, now: the consents that are valid, and the withdrawals.
    clock.shift(Duration::zero());
    for (i, &c) in customers.iter().enumerate() {
        vault.give_consent(c, "analytics", evidence.clone()).unwrap();
        match newsletter_of(i) {
            Newsletter::Valid => {
                vault.give_consent(c, "newsletter", evidence.clone()).unwrap();
            }
            Newsletter::Withdrawn => {
                vault.give_consent(c, "newsletter", evidence.clone()).unwrap();
                vault.withdraw_consent(c, "newsletter").unwrap();
            }
            Newsletter::Expired => {}
        }
    }
    (vault, clock, customers, start.elapsed())
}

/// Builds a population in a shared `MemoryStore`.
pub fn population(n: usize) -> Population {
    let store = Arc::new(MemoryStore::new());
    let (vault, clock, customers, setup) = build(n, store.clone(), n >= 500_000);
    Population {
        store,
        vault,
        clock,
        customers,
        setup,
    }
}

/// A small deterministic generator (xorshift64*), so that probes are spread over the whole
/// population without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % n
    }
}

/// `count` distinct customer indices spread over `0..n` whose newsletter record is `kind`.
pub fn probes(n: usize, kind: Newsletter, count: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let available = (0..n).filter(|&i| newsletter_of(i) == kind).count();
    let count = count.min(available);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let i = rng.below(n);
        if newsletter_of(i) == kind && seen.insert(i) {
            out.push(i);
        }
    }
    out
}
