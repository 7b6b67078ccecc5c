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
