//! Every built-in backend passes the public store conformance suite.

use egard::MemoryStore;
use egard::store::conformance;

#[test]
fn memory_store() {
    conformance::run_all(MemoryStore::new);
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
