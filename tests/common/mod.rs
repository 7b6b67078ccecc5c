//! Shared helpers for the integration tests: a fixed clock, vault builders, the backends every
//! store-generic test runs on, and `TamperStore`, a real store with a tampering layer on top.
#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod pg;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use egard::store::{CustomerSnapshot, PurposeSnapshot, StoredField, VaultSecret, Write};
use egard::{
    AccessDenied, AuditEvent, CustomerId, Error, Evidence, FieldName, LawfulBasis, ManualClock, MasterKey, MemoryStore,
    Purpose, Store, StoreError, Vault,
};

/// A value of personal data that must never show up where it should not.
pub const CANARY: &str = "CANARY-7f3a9";

/// The master key bytes used by most tests.
pub const KEY: [u8; 32] = [7; 32];

/// A fixed starting time, on a whole second.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// A store factory: every store-generic test takes one, so a backend is one line in
/// [`backend_tests!`].
pub type NewStore = fn() -> Arc<dyn Store>;

/// The in-memory backend.
pub fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// The SQLite backend (in memory: the conformance suite, `tests/sqlite.rs` and
/// `tests/crash.rs` cover database files).
pub fn sqlite() -> Arc<dyn Store> {
    Arc::new(egard::SqliteStore::in_memory().unwrap())
}

/// Runs each named test function `fn(NewStore)` on every backend, as `backend::name`.
///
/// To add a backend, add one line, for example
/// `sqlite => || Arc::new(egard::SqliteStore::in_memory().unwrap()) as Arc<dyn egard::Store>,`
/// (any `fn() -> Arc<dyn Store>`, or a closure that captures nothing).
#[macro_export]
macro_rules! backend_tests {
    ($($test:ident),* $(,)?) => {
        $crate::backend_tests!(@backends [$($test),*]
            memory => $crate::common::memory,
            sqlite => $crate::common::sqlite,
        );
    };
    (@backends $tests:tt $($backend:ident => $make:expr,)*) => {
        $( $crate::backend_tests!(@one $backend $make, $tests); )*
    };
    (@one $backend:ident $make:expr, [$($test:ident),*]) => {
        mod $backend {
            #[allow(unused_imports)]
            use std::sync::Arc;
            $(
                #[test]
                fn $test() {
                    super::$test($make);
                }
            )*
        }
    };
}

/// Runs each named test function `fn(Arc<dyn Store>)` on a fresh store of every backend, as
/// `memory::name`, `sqlite_file::name` (a real file) and `postgres::name` (skipped without a
/// server, unless `EGARD_REQUIRE_POSTGRES` is set).
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $test() {
                    super::$test(std::sync::Arc::new(egard::MemoryStore::new()));
                }
            )*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite_file {
            $(
                #[test]
                fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = egard::SqliteStore::open(dir.path().join("egard.db")).unwrap();
                    super::$test(std::sync::Arc::new(store));
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[test]
                fn $test() {
                    let db = $crate::db_or_skip!();
                    super::$test(std::sync::Arc::new(db.store()));
                    drop(db);
                }
            )*
        }
    };
}

/// As [`on_every_backend!`], for test functions `fn(&dyn Fn() -> Arc<dyn Store>)` that open the
/// same backing store more than once (a restart, a second process): memory hands out the same
/// store, a SQLite file and a PostgreSQL schema are opened again.
#[macro_export]
macro_rules! on_every_backend_reopening {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $test() {
                    let store: std::sync::Arc<dyn egard::Store> = std::sync::Arc::new(egard::MemoryStore::new());
                    super::$test(&|| store.clone());
                }
            )*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite_file {
            $(
                #[test]
                fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("egard.db");
                    super::$test(&|| {
                        std::sync::Arc::new(egard::SqliteStore::open(&path).unwrap()) as std::sync::Arc<dyn egard::Store>
                    });
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[test]
                fn $test() {
                    let db = $crate::db_or_skip!();
                    super::$test(&|| std::sync::Arc::new(db.store()) as std::sync::Arc<dyn egard::Store>);
                }
            )*
        }
    };
}

/// A vault over `store` with the standard key and a manual clock.
pub fn vault_on(store: Arc<dyn Store>, clock: &ManualClock) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A vault over `store` as one of several processes (or servers) sharing it: with a cache
/// time-to-live, as every vault on a shared store must have.
pub fn process_on(store: Arc<dyn Store>, clock: &ManualClock) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock.clone())
        .cache_ttl(Duration::seconds(1))
        .build()
        .unwrap()
}

/// A fresh in-memory vault, its clock at [`t0`].
pub fn vault() -> (Vault, ManualClock) {
    let clock = ManualClock::new(t0());
    (vault_on(memory(), &clock), clock)
}

/// `newsletter` (consent, email + first_name, notice v1, 30 days) and `shipping` (contract,
/// first_name + address, no expiry).
pub fn define_standard_purposes(vault: &Vault) {
    vault
        .define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email", "first_name"])
                .consent_lifetime(Duration::days(30)),
        )
        .unwrap();
    vault
        .define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["first_name", "address"]))
        .unwrap();
}

/// A customer with email, first_name and address set.
pub fn customer_with_data(vault: &Vault) -> CustomerId {
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "alice@example.com").unwrap();
    vault.set_field(c, "first_name", "Alice").unwrap();
    vault.set_field(c, "address", "1 Rue de la Paix").unwrap();
    c
}

/// Gives consent for `purpose` with plain evidence.
pub fn consent(vault: &Vault, customer: CustomerId, purpose: &str) {
    vault.give_consent(customer, purpose, Evidence::new("test")).unwrap();
}

/// The denial reason of a result, panicking with the whole result otherwise.
#[track_caller]
pub fn denied<T>(result: Result<T, Error>) -> AccessDenied {
    match result {
        Err(Error::Denied(reason)) => reason,
        Err(other) => panic!("expected a denial, got error {other:?}"),
        Ok(_) => panic!("expected a denial, got success"),
    }
}

/// Asserts that a result is exactly `Err(Error::Crypto)`.
#[track_caller]
pub fn assert_crypto<T>(result: Result<T, Error>) {
    match result {
        Err(Error::Crypto) => {}
        Err(other) => panic!("expected Error::Crypto, got {other:?}"),
        Ok(_) => panic!("expected Error::Crypto, got success"),
    }
}

/// The stored envelope of one field.
pub fn stored_envelope(store: &dyn Store, customer: CustomerId, field: &str) -> Vec<u8> {
    store
        .field(customer, &FieldName::new(field).unwrap())
        .unwrap()
        .expect("field stored")
        .envelope
}

/// Overwrites the stored envelope of one field, directly in the store (its write version and
/// time kept, as a tampered row would keep them).
pub fn put_envelope(store: &dyn Store, customer: CustomerId, field: &str, envelope: Vec<u8>) {
    let name = FieldName::new(field).unwrap();
    let stored = store.field(customer, &name).unwrap().expect("field stored");
    store
        .apply(&[Write::PutField {
            customer,
            field: name,
            version: stored.version,
            envelope,
            at: stored.written_at,
        }])
        .unwrap();
}

/// Every audit event in the store, in sequence.
pub fn whole_log(store: &dyn Store) -> Vec<AuditEvent> {
    store.audit_range(1, usize::MAX).unwrap()
}

/// A real store with a tampering layer: it can serve a doctored audit log in place of the
/// stored one, and can refuse every batch that appends to the audit log.
pub struct TamperStore {
    inner: Arc<dyn Store>,
    forged_log: Mutex<Option<Vec<AuditEvent>>>,
    fail_audit: AtomicBool,
    forged_index: Mutex<Option<CustomerId>>,
}

impl TamperStore {
    /// Wraps `inner`; it behaves exactly like `inner` until told otherwise.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            forged_log: Mutex::new(None),
            fail_audit: AtomicBool::new(false),
            forged_index: Mutex::new(None),
        })
    }

    /// Makes every index lookup answer `customer` (as a corrupted index would), whatever
    /// the stored rows say.
    pub fn forge_index(&self, customer: CustomerId) {
        *self.forged_index.lock().unwrap() = Some(customer);
    }

    /// The audit log as stored underneath.
    pub fn real_log(&self) -> Vec<AuditEvent> {
        whole_log(&*self.inner)
    }

    /// From now on, the audit log reads as `events`, in this order (as a corrupted table
    /// would return its rows).
    pub fn forge_log(&self, events: Vec<AuditEvent>) {
        *self.forged_log.lock().unwrap() = Some(events);
    }

    /// Makes every batch that appends an audit event fail (or succeed again).
    pub fn fail_audit_appends(&self, fail: bool) {
        self.fail_audit.store(fail, Ordering::SeqCst);
    }
}

impl Store for TamperStore {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        if self.fail_audit.load(Ordering::SeqCst) && batch.iter().any(|w| matches!(w, Write::AppendAudit(_))) {
            return Err(StoreError::Unavailable("audit table is read-only (test)".into()));
        }
        self.inner.apply(batch)
    }
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        self.inner.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        self.inner.customer(id)
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
        match &*self.forged_log.lock().unwrap() {
            Some(log) => Ok(log.iter().max_by_key(|e| e.seq).cloned()),
            None => self.inner.audit_head(),
        }
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        match &*self.forged_log.lock().unwrap() {
            Some(log) => Ok(log.iter().filter(|e| e.seq >= from_seq).take(limit).cloned().collect()),
            None => self.inner.audit_range(from_seq, limit),
        }
    }
    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        match &*self.forged_log.lock().unwrap() {
            Some(log) => Ok(log.iter().filter(|e| e.customer == Some(customer)).cloned().collect()),
            None => self.inner.audit_for(customer),
        }
    }
    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        self.inner.secret(name)
    }
    fn consent_owner(&self, consent: egard::ConsentId) -> Result<Option<CustomerId>, StoreError> {
        self.inner.consent_owner(consent)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, StoreError> {
        self.inner.lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<egard::CustomerId>, StoreError> {
        if let Some(forged) = *self.forged_index.lock().unwrap() {
            return Ok(Some(forged));
        }
        self.inner.find_indexed(field, token)
    }
    fn instance_id(&self) -> usize {
        self.inner.instance_id()
    }
}
