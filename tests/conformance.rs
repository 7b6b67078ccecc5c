//! Every built-in backend passes the public store conformance suite.

use egard::MemoryStore;
use egard::store::conformance;

#[test]
fn memory_store() {
    conformance::run_all(MemoryStore::new);
    conformance::chained_appends_never_conflict(&MemoryStore::new());
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_store_in_memory() {
    conformance::run_all(|| egard::SqliteStore::in_memory().unwrap());
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_store_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::cell::Cell::new(0);
    conformance::run_all(|| {
        n.set(n.get() + 1);
        egard::SqliteStore::open(dir.path().join(format!("store-{}.db", n.get()))).unwrap()
    });
    // Two handles on one file: the write lock serializes their appends too.
    let path = dir.path().join("shared.db");
    let a = egard::SqliteStore::open(&path).unwrap();
    let b = egard::SqliteStore::open(&path).unwrap();
    conformance::chained_appends_never_conflict(&Both(a, b));
}

/// Two stores on one database, used in turn: appends race across both handles.
#[cfg(feature = "sqlite")]
struct Both<S>(S, S);

#[cfg(feature = "sqlite")]
impl<S: egard::Store> Both<S> {
    fn pick(&self) -> &S {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static TURN: AtomicUsize = AtomicUsize::new(0);
        if TURN.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
            &self.0
        } else {
            &self.1
        }
    }
}

#[cfg(feature = "sqlite")]
impl<S: egard::Store> egard::Store for Both<S> {
    fn apply(&self, batch: &[egard::store::Write]) -> Result<(), egard::StoreError> {
        self.pick().apply(batch)
    }
    fn apply_chained(
        &self,
        batch: &[egard::store::Write],
        link: &mut egard::store::ChainLink<'_>,
    ) -> Result<egard::AuditAnchor, egard::StoreError> {
        self.pick().apply_chained(batch, link)
    }
    fn purposes(&self) -> Result<Vec<egard::store::PurposeSnapshot>, egard::StoreError> {
        self.pick().purposes()
    }
    fn customer(&self, id: egard::CustomerId) -> Result<Option<egard::store::CustomerSnapshot>, egard::StoreError> {
        self.pick().customer(id)
    }
    fn field(
        &self,
        customer: egard::CustomerId,
        field: &egard::FieldName,
    ) -> Result<Option<egard::store::StoredField>, egard::StoreError> {
        self.pick().field(customer, field)
    }
    fn fields(&self, customer: egard::CustomerId) -> Result<Vec<egard::store::StoredField>, egard::StoreError> {
        self.pick().fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<egard::CustomerId>, egard::StoreError> {
        self.pick().customer_ids()
    }
    fn audit_head(&self) -> Result<Option<egard::AuditEvent>, egard::StoreError> {
        self.pick().audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.pick().audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: egard::CustomerId) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.pick().audit_for(customer)
    }
    fn secret(&self, name: &str) -> Result<Option<egard::store::VaultSecret>, egard::StoreError> {
        self.pick().secret(name)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, egard::StoreError> {
        self.pick().lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<egard::CustomerId>, egard::StoreError> {
        self.pick().find_indexed(field, token)
    }
}

/// A backend that implements only the required methods: the trait's default
/// `consent_candidates`, `audit_changes` and `consent_owner` must meet the contract too.
struct Defaults(MemoryStore);

impl egard::Store for Defaults {
    fn apply(&self, batch: &[egard::store::Write]) -> Result<(), egard::StoreError> {
        self.0.apply(batch)
    }
    fn purposes(&self) -> Result<Vec<egard::store::PurposeSnapshot>, egard::StoreError> {
        self.0.purposes()
    }
    fn customer(&self, id: egard::CustomerId) -> Result<Option<egard::store::CustomerSnapshot>, egard::StoreError> {
        self.0.customer(id)
    }
    fn field(
        &self,
        customer: egard::CustomerId,
        field: &egard::FieldName,
    ) -> Result<Option<egard::store::StoredField>, egard::StoreError> {
        self.0.field(customer, field)
    }
    fn fields(&self, customer: egard::CustomerId) -> Result<Vec<egard::store::StoredField>, egard::StoreError> {
        self.0.fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<egard::CustomerId>, egard::StoreError> {
        self.0.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<egard::AuditEvent>, egard::StoreError> {
        self.0.audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.0.audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: egard::CustomerId) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.0.audit_for(customer)
    }
    fn secret(&self, name: &str) -> Result<Option<egard::store::VaultSecret>, egard::StoreError> {
        self.0.secret(name)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, egard::StoreError> {
        self.0.lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<egard::CustomerId>, egard::StoreError> {
        self.0.find_indexed(field, token)
    }
}

#[test]
fn a_store_with_the_default_methods() {
    conformance::run_all(|| Defaults(MemoryStore::new()));
}
