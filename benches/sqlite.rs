//! SQLite against memory, in the same run.
//!
//! ```text
//! cargo bench --bench sqlite
//! ```
//!
//! - `authorize` + `reveal` of a 32-byte field on a warm vault: `MemoryStore`, and
//!   `SqliteStore` at each durability level, and with access events group-committed
//!   (`VaultBuilder::audit_batching`). The ratios to memory are printed (target ≤ 1.5×),
//!   with those of `reveal` alone (a pass reused). `Durability::Full` fsyncs every
//!   `authorize`, so it is only timed for the printed ratio, not by criterion.
//! - Durable `give_consent` throughput: one call per consent, and `give_consents` batches.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use egard::{
    CustomerId, Durability, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, SqliteOptions, SqliteStore, Store,
    Vault,
};

const CUSTOMERS: usize = 100;
const BATCH: usize = 500;

fn vault(store: impl Store) -> (Vault, Vec<CustomerId>) {
    vault_with(store, false)
}

/// With `batching`, access events are group-committed (`VaultBuilder::audit_batching`).
fn vault_with(store: impl Store, batching: bool) -> (Vault, Vec<CustomerId>) {
    let mut builder = Vault::builder().master_key(MasterKey::from_bytes([9; 32])).store(store);
    if batching {
        builder = builder.audit_batching(1024, Duration::from_millis(100));
    }
    let vault = builder.build().unwrap();
    vault
        .define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let customers: Vec<CustomerId> = (0..CUSTOMERS).map(|_| vault.create_customer().unwrap()).collect();
    for &c in &customers {
        // 32 bytes of value.
        vault.set_field(c, "email", "abcdefghijklmnopqrstuvwxyz@ex.io").unwrap();
    }
    vault
        .give_consents(customers.iter().map(|&c| (c, "newsletter", Evidence::new("bench"))))
        .unwrap();
    // Warm: every customer's key unwrapped and cached.
    for &c in &customers {
        authorize_reveal(&vault, c);
    }
    (vault, customers)
}

fn authorize_reveal(vault: &Vault, c: CustomerId) -> usize {
    let pass = vault.authorize(c, "newsletter").unwrap();
    vault.reveal::<String>(&pass, "email").unwrap().expose().len()
}

fn sqlite(dir: &tempfile::TempDir, name: &str, durability: Durability) -> SqliteStore {
    SqliteStore::open_with(dir.path().join(name), SqliteOptions::new().durability(durability)).unwrap()
}

/// Mean time of one authorize + reveal, over `n`, round-robin over the customers.
fn time_reveal(vault: &Vault, customers: &[CustomerId], n: usize) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        black_box(authorize_reveal(vault, customers[i % customers.len()]));
    }
    start.elapsed() / n as u32
}

fn reveal(c: &mut Criterion, dir: &tempfile::TempDir) {
    let setups = [
        ("memory", vault(MemoryStore::new())),
        ("sqlite", vault(sqlite(dir, "reveal.db", Durability::Changes))),
        ("sqlite-full", vault(sqlite(dir, "reveal-full.db", Durability::Full))),
        (
            "sqlite+audit_batching",
            vault_with(sqlite(dir, "reveal-batching.db", Durability::Changes), true),
        ),
        (
            "sqlite-process-crash",
            vault(sqlite(dir, "reveal-nosync.db", Durability::ProcessCrash)),
        ),
    ];
    // The ratios, measured interleaved in this run; reveal alone (a pass reused) too. Each
    // round is long enough to include at least one flush of the batched audit queue (1024
    // events); the median round is kept, which is robust to a busy machine.
    const ROUNDS: usize = 7;
    const N: usize = 2500;
    let mut both = vec![Vec::new(); setups.len()];
    let mut alone = vec![Vec::new(); setups.len()];
    for _ in 0..ROUNDS {
        for (i, (name, (v, cs))) in setups.iter().enumerate() {
            let n = if *name == "sqlite-full" { 10 } else { N };
            both[i].push(time_reveal(v, cs, n));
            let pass = v.authorize(cs[0], "newsletter").unwrap();
            let start = Instant::now();
            for _ in 0..N {
                black_box(v.reveal::<String>(&pass, "email").unwrap());
            }
            alone[i].push(start.elapsed() / N as u32);
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let both: Vec<Duration> = both.iter_mut().map(median).collect();
    let alone: Vec<Duration> = alone.iter_mut().map(median).collect();
    println!("warm, 32-byte field, median of {ROUNDS} interleaved rounds of {N}:");
    println!(
        "  {:<22} {:>17} {:>9} {:>12} {:>9}",
        "store", "authorize+reveal", "ratio", "reveal only", "ratio"
    );
    for (i, (name, _)) in setups.iter().enumerate() {
        let (b, a) = (both[i], alone[i]);
        println!(
            "  {name:<22} {:>15.1}µs {:>8.2}x {:>10.1}µs {:>8.2}x",
            b.as_nanos() as f64 / 1000.0,
            b.as_secs_f64() / both[0].as_secs_f64(),
            a.as_nanos() as f64 / 1000.0,
            a.as_secs_f64() / alone[0].as_secs_f64(),
        );
    }

    let mut group = c.benchmark_group("authorize_reveal_32b");
    group.throughput(Throughput::Elements(1));
    for (name, (v, cs)) in setups.iter().filter(|(name, _)| *name != "sqlite-full") {
        let mut i = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                i += 1;
                authorize_reveal(v, cs[i % cs.len()])
            })
        });
    }
    group.finish();
}

fn consents(c: &mut Criterion, dir: &tempfile::TempDir) {
    let mut group = c.benchmark_group("give_consent_durable");
    group.sample_size(10);
    for (name, durability) in [
        ("default", Durability::Changes),
        ("process-crash", Durability::ProcessCrash),
    ] {
        let (v, cs) = vault(sqlite(dir, &format!("consent-{name}.db"), durability));
        group.throughput(Throughput::Elements(1));
        let mut i = 0;
        group.bench_function(BenchmarkId::new("single", name), |b| {
            b.iter(|| {
                i += 1;
                v.give_consent(cs[i % cs.len()], "newsletter", Evidence::new("bench"))
                    .unwrap()
            })
        });
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(BenchmarkId::new(format!("batch_{BATCH}"), name), |b| {
            b.iter(|| {
                v.give_consents((0..BATCH).map(|k| (cs[k % cs.len()], "newsletter", Evidence::new("bench"))))
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    reveal(&mut c, &dir);
    consents(&mut c, &dir);
    c.final_summary();
}
