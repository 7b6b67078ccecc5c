//! `find_customer` (a blind-index lookup, audited) against a plain `HashMap` lookup of the
//! normalised email, in the same run.
//!
//! ```text
//! cargo bench --bench find                                   # 10,000 customers
//! EGARD_BENCH_CUSTOMERS=1000000 cargo bench --bench find     # the issue's size (slow setup)
//! ```
//!
//! The floor is what a host would write without egard: trim and lowercase the email, then
//! look it up in a `HashMap<String, CustomerId>` kept in clear. `find_customer` normalises the
//! same way, computes the HMAC token, asks the store's index, confirms the token against the
//! customer's authenticated state and appends an audit event. Besides criterion's own report,
//! the bench prints the ratios of an interleaved run (each round times every contender once,
//! so that a noisy neighbour slows them all alike).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use egard::{
    CustomerId, Durability, LawfulBasis, Lookup, MasterKey, MemoryStore, Normalizer, Purpose, SqliteOptions,
    SqliteStore, Store, Vault,
};

fn customers() -> usize {
    std::env::var("EGARD_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn email(i: usize) -> String {
    format!("Customer.{i:07}@Example.org")
}

/// A vault over `store` with `n` customers, each with an indexed email.
fn populated(store: impl Store, n: usize) -> Vault {
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes([9; 32]))
        .store(store)
        .cache_capacity(n)
        .build()
        .unwrap();
    vault
        .define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email"]))
        .unwrap();
    vault.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    for i in 0..n {
        let c = vault.create_customer().unwrap();
        vault.set_field(c, "email", &email(i)).unwrap();
    }
    vault
}

/// The lookups to make, in a scattered order: the `i`-th asks for customer `(i * 7919) % n`,
/// in the spelling a sign-in form might send.
fn probe(i: usize, n: usize) -> String {
    format!(" customer.{:07}@EXAMPLE.ORG", (i * 7919) % n)
}

fn floor_lookup(map: &HashMap<String, CustomerId>, value: &str) -> Option<CustomerId> {
    map.get(&value.trim().to_lowercase()).copied()
}

fn main() {
    let n = customers();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let floor: HashMap<String, CustomerId> = (0..n).map(|i| (email(i).to_lowercase(), CustomerId::new())).collect();
    let memory = populated(Arc::new(MemoryStore::new()), n);
    // Populated without an fsync per customer (the setup would take hours at 1,000,000), then
    // looked up through a vault on the default configuration.
    let path = dir.path().join("find.db");
    drop(populated(
        SqliteStore::open_with(&path, SqliteOptions::new().durability(Durability::ProcessCrash)).unwrap(),
        n,
    ));
    let sqlite = Vault::builder()
        .master_key(MasterKey::from_bytes([9; 32]))
        .store(SqliteStore::open(&path).unwrap())
        .cache_capacity(n)
        .build()
        .unwrap();
    eprintln!(
        "setup of {n} customers on two stores: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Interleaved ratios.
    let rounds = 20_000.min(n * 4).max(1_000);
    let mut totals = [Duration::ZERO; 3];
    for i in 0..rounds {
        let value = probe(i, n);
        let t = Instant::now();
        black_box(floor_lookup(&floor, &value));
        totals[0] += t.elapsed();
        let t = Instant::now();
        black_box(memory.find_customer("email", &value).unwrap());
        totals[1] += t.elapsed();
        let t = Instant::now();
        black_box(sqlite.find_customer("email", &value).unwrap());
        totals[2] += t.elapsed();
    }
    let per = |d: Duration| d.as_nanos() as f64 / rounds as f64;
    eprintln!("interleaved, {rounds} lookups among {n} customers:");
    eprintln!("  HashMap (floor)          {:>10.0} ns", per(totals[0]));
    for (name, total) in [("MemoryStore", totals[1]), ("SQLite (default)", totals[2])] {
        eprintln!(
            "  {name:<24} {:>10.0} ns  {:>6.1}x the floor",
            per(total),
            per(total) / per(totals[0])
        );
    }

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group(format!("find_customer/{n}"));
    let mut i = 0usize;
    group.bench_function("hashmap_floor", |b| {
        b.iter(|| {
            i += 1;
            black_box(floor_lookup(&floor, &probe(i, n)))
        })
    });
    group.bench_function("memory", |b| {
        b.iter(|| {
            i += 1;
            black_box(memory.find_customer("email", &probe(i, n)).unwrap())
        })
    });
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            i += 1;
            black_box(sqlite.find_customer("email", &probe(i, n)).unwrap())
        })
    });
    group.finish();
    c.final_summary();
}
