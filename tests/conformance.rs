//! Every built-in backend passes the public store conformance suite.

use egard::MemoryStore;
use egard::store::conformance;

#[test]
fn memory_store() {
    conformance::run_all(MemoryStore::new);
}
