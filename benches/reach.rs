//! `Vault::audience` on a SQLite file against a raw SQL query scanning the same index.
//!
//! ```text
//! cargo bench --bench reach                                       # 10,000 customers
//! EGARD_BENCH_REACH_CUSTOMERS=1000000 cargo bench --bench reach   # by hand: long to build
//! ```
//!
//! The population: `n` customers in one SQLite file; 3 in 4 consented to `newsletter`, and a
//! third of those withdrew, so half the customers are in the audience. Measured, in customers
//! listed per second:
//!
//! - `raw_sql`: the store's candidate query run directly with rusqlite, page by page (512) on
//!   the `consents_current` index, counting the rows: the floor, no check at all;
//! - `audience_cold`: `Vault::audience` on a vault built on the file afresh (nothing cached):
//!   every candidate's records are read and checked against their MACs and the audit log;
//! - `audience_warm`: on the vault that built the population (every customer cached, up to
//!   the cache's capacity): candidates are confirmed from the cache.
//!
//! The ratios to `raw_sql` are printed (medians of interleaved rounds), then criterion times
//! each. Under `cargo test --benches` (no `--bench` flag) it runs once on 300 customers.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use egard::{CustomerId, Durability, Evidence, LawfulBasis, MasterKey, Purpose, SqliteOptions, SqliteStore, Vault};

/// The candidate query of `SqliteStore::consent_candidates`, verbatim.
const CANDIDATES_SQL: &str = "SELECT DISTINCT c.customer FROM consents c JOIN customers u ON u.id = c.customer
     WHERE c.purpose = ?1 AND c.withdrawn_at IS NULL AND c.superseded_by IS NULL AND c.customer > ?2
       AND c.notice_version >= ?3 AND c.notice_version <= ?4 AND u.erased_at IS NULL
     ORDER BY c.customer LIMIT ?5";

fn vault(path: &Path) -> Vault {
    let store = SqliteStore::open_with(path, SqliteOptions::new().durability(Durability::ProcessCrash)).unwrap();
    Vault::builder()
        .master_key(MasterKey::from_bytes([9; 32]))
        .store(store)
        .cache_capacity(1_000_000)
        .build()
        .unwrap()
}

/// Builds the population; returns the vault that built it (warm) and the audience's size.
fn populate(path: &Path, n: usize) -> (Vault, usize) {
    let start = Instant::now();
    let vault = vault(path);
    vault
        .define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let customers: Vec<CustomerId> = (0..n).map(|_| vault.create_customer().unwrap()).collect();
    let consenting: Vec<CustomerId> = customers
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(_, c)| c)
        .collect();
    for chunk in consenting.chunks(1000) {
        vault
            .give_consents(chunk.iter().map(|&c| (c, "newsletter", Evidence::new("bench"))))
            .unwrap();
    }
    let mut reachable = consenting.len();
    for (i, &c) in consenting.iter().enumerate() {
        if i % 3 == 0 {
            vault.withdraw_consent(c, "newsletter").unwrap();
            reachable -= 1;
        }
    }
    eprintln!(
        "built {n} customers ({reachable} reachable) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    (vault, reachable)
}

/// The raw query, page by page, counting rows.
fn raw_count(conn: &rusqlite::Connection) -> usize {
    let mut stmt = conn.prepare_cached(CANDIDATES_SQL).unwrap();
    let mut after: Vec<u8> = Vec::new();
    let mut count = 0;
    loop {
        let mut rows = stmt
            .query(rusqlite::params![
                "newsletter",
                after,
                1i64,
                i64::from(u32::MAX),
                512i64
            ])
            .unwrap();
        let mut page = 0;
        while let Some(row) = rows.next().unwrap() {
            after = row.get(0).unwrap();
            page += 1;
        }
        count += page;
        if page < 512 {
            return count;
        }
    }
}

fn audience_count(vault: &Vault) -> usize {
    let mut n = 0;
    for customer in vault.audience("newsletter").unwrap() {
        black_box(customer.unwrap());
        n += 1;
    }
    n
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = if bench {
        std::env::var("EGARD_BENCH_REACH_CUSTOMERS")
            .ok()
            .and_then(|v| v.replace('_', "").parse().ok())
            .unwrap_or(10_000)
    } else {
        300
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reach.db");
    let (warm, reachable) = populate(&path, n);
    let cold = vault_on_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(raw_count(&conn), reachable);
    assert_eq!(audience_count(&cold), reachable);
    assert_eq!(audience_count(&warm), reachable);

    // Interleaved rounds: a load burst on the shared machine hits every case of a round.
    let rounds = if bench { 5 } else { 1 };
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(raw_count(&conn));
        times[0].push(t.elapsed());
        let t = Instant::now();
        black_box(audience_count(&cold));
        times[1].push(t.elapsed());
        let t = Instant::now();
        black_box(audience_count(&warm));
        times[2].push(t.elapsed());
    }
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    println!("audience of {reachable} among {n} customers, SQLite file, median of {rounds} interleaved rounds:");
    for (name, d) in ["raw_sql", "audience_cold", "audience_warm"].iter().zip(&medians) {
        println!(
            "  {name:<14} {:>10.1} ms {:>12.0} customers/s {:>8.2}x raw",
            d.as_secs_f64() * 1000.0,
            per_second(reachable, *d),
            d.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
    if !bench {
        return;
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = c.benchmark_group(format!("audience_{n}"));
    group.throughput(Throughput::Elements(reachable as u64));
    group.bench_function("raw_sql", |b| b.iter(|| raw_count(&conn)));
    group.bench_function("audience_cold", |b| b.iter(|| audience_count(&cold)));
    group.bench_function("audience_warm", |b| b.iter(|| audience_count(&warm)));
    group.finish();
    c.final_summary();
}

/// A second vault on the same file: nothing cached. (Two vaults on one file are two store
/// objects, so the builder's one-vault-per-store-object rule does not apply.)
fn vault_on_file(path: &Path) -> Vault {
    vault(path)
}
