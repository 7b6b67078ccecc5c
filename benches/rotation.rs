//! Master-key rotation throughput (customers/s) on a SQLite file, against re-wrapping the
//! same number of keys with the master keys alone (ring's AES-256-GCM, no store), in the same
//! run.
//!
//! ```text
//! cargo bench --bench rotation                                  # 2,000 customers
//! EGARD_BENCH_CUSTOMERS=20000 cargo bench --bench rotation      # slower setup
//! ```
//!
//! Under `cargo test --benches` it runs once on 100 customers, as a smoke test.
//!
//! Each rotation re-wraps every customer's data key and goes the other way the next time
//! (key 1 -> key 2 -> key 1 ...), so that every measured run does the full work: read each
//! customer's snapshot, unwrap under the old key, wrap under the new one, and commit each
//! batch of [`DEFAULT_ROTATION_BATCH`] re-wrapped keys with their audit events (the default
//! durability: one fsync per batch). Building the vault is not timed. The floor is the
//! unwrap and wrap alone. Besides criterion's report (elements = customers), the bench prints
//! both rates and their ratio from interleaved rounds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use egard::{DEFAULT_ROTATION_BATCH, Durability, KeyProvider, MasterKey, SqliteOptions, SqliteStore, Vault};

/// 2,000 customers (or `EGARD_BENCH_CUSTOMERS`) under `cargo bench`; 100 as a smoke test
/// under `cargo test --benches`.
fn customers() -> usize {
    let benching = std::env::args().any(|a| a == "--bench");
    std::env::var("EGARD_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 2_000 } else { 100 })
}

fn key(id: u32) -> MasterKey {
    MasterKey::from_bytes([id as u8 + 0x40; 32]).with_id(id)
}

/// Rotates the store at `path` from whichever key it is under to the other; returns the
/// time of the rotation alone.
struct Rotator {
    path: std::path::PathBuf,
    /// The id of the key everything is under now.
    current: u32,
    n: usize,
}

impl Rotator {
    fn rotate(&mut self) -> Duration {
        let (to, from) = if self.current == 1 { (2, 1) } else { (1, 2) };
        let vault = Vault::builder()
            .master_key(key(to))
            .previous_master_key(key(from))
            .store(SqliteStore::open(&self.path).unwrap())
            .build()
            .unwrap();
        let started = Instant::now();
        let rewrapped = vault.rotate_master_key().unwrap();
        let elapsed = started.elapsed();
        assert_eq!(rewrapped, self.n);
        self.current = to;
        elapsed
    }
}

/// The floor: the same number of 32-byte keys, each unwrapped under one master key and
/// wrapped under the other, with associated data of the same shape, in memory.
struct Floor {
    wrapped: Vec<Vec<u8>>,
    current: u32,
}

impl Floor {
    fn new(n: usize) -> Self {
        let k = key(1);
        let wrapped = (0..n).map(|i| k.wrap_key(&[i as u8; 32], &aad(i)).unwrap()).collect();
        Self { wrapped, current: 1 }
    }

    fn rotate(&mut self) -> Duration {
        let (from, to) = if self.current == 1 {
            (key(1), key(2))
        } else {
            (key(2), key(1))
        };
        let started = Instant::now();
        for (i, w) in self.wrapped.iter_mut().enumerate() {
            let aad = aad(i);
            let raw = from.unwrap_key(w, &aad).unwrap();
            *w = to.wrap_key(&raw, &aad).unwrap();
        }
        let elapsed = started.elapsed();
        black_box(&self.wrapped);
        self.current = if self.current == 1 { 2 } else { 1 };
        elapsed
    }
}

fn aad(i: usize) -> Vec<u8> {
    let mut aad = vec![1, 1, 0, 0, 0, 1];
    aad.extend_from_slice(&(i as u64).to_be_bytes());
    aad.extend_from_slice(b"egard customer-id-bytes dek 0001");
    aad
}

fn main() {
    let n = customers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotation.db");
    let started = Instant::now();
    {
        let store = SqliteStore::open_with(&path, SqliteOptions::new().durability(Durability::ProcessCrash)).unwrap();
        let vault = Vault::builder().master_key(key(1)).store(store).build().unwrap();
        for _ in 0..n {
            vault.create_customer().unwrap();
        }
    }
    eprintln!(
        "setup of {n} customers on a SQLite file: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut rotator = Rotator { path, current: 1, n };
    let mut floor = Floor::new(n);

    // Interleaved rounds: each times one rotation of each.
    let rounds = 5;
    let mut totals = [Duration::ZERO; 2];
    for _ in 0..rounds {
        totals[0] += floor.rotate();
        totals[1] += rotator.rotate();
    }
    let rate = |d: Duration| (n * rounds) as f64 / d.as_secs_f64();
    eprintln!("interleaved, {rounds} rotations of {n} customers (batches of {DEFAULT_ROTATION_BATCH}):");
    eprintln!("  re-wrap only (floor)      {:>12.0} keys/s", rate(totals[0]));
    eprintln!(
        "  rotate_master_key (SQLite) {:>11.0} customers/s  {:.1}x the floor's time",
        rate(totals[1]),
        totals[1].as_secs_f64() / totals[0].as_secs_f64()
    );

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    let mut group = c.benchmark_group(format!("rotate_master_key/{n}"));
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("rewrap_floor", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| floor.rotate()).sum())
    });
    group.bench_function("sqlite", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rotator.rotate()).sum())
    });
    group.finish();
    c.final_summary();
}
