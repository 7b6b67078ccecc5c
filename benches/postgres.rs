//! PostgreSQL against SQLite (a database file, default durability), in one run: `authorize`
//! then `reveal` of a 32-byte field, warm (customer cached) and cold (first touch: the
//! customer is read and its data key unwrapped), and `give_consent` throughput. Prints the
//! ratios, then measures the revocation bound of two vaults on one database with the real
//! clock.
//!
//! ```text
//! EGARD_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --features postgres --bench postgres
//! ```
//!
//! Without `EGARD_POSTGRES_URL` it says so and exits. It works in a schema of its own and
//! drops it at the end.

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use criterion::{Criterion, Throughput};
use egard::{
    AccessDenied, CustomerId, Error, Evidence, LawfulBasis, MasterKey, PostgresOptions, PostgresStore, Purpose,
    SqliteStore, Store, Vault,
};

const WARM_CUSTOMERS: usize = 64;
const COLD_CUSTOMERS: usize = 512;

/// The same workload on one backend: a vault that keeps customers cached, one that cannot
/// (every touch is a first touch), both on one store.
struct Bed {
    name: &'static str,
    warm: Vault,
    cold: Vault,
    warm_ids: Vec<CustomerId>,
    cold_ids: Vec<CustomerId>,
}

/// `shared`: the vault shares its database with another process (here: another vault on its
/// own connection), so it gets a cache time-to-live, as it must.
fn vault<S: Store>(store: S, capacity: usize, batched: bool, shared: bool) -> Vault {
    let mut builder = Vault::builder()
        .master_key(MasterKey::from_bytes([3; 32]))
        .store(store)
        .cache_capacity(capacity);
    if shared {
        builder = builder.cache_ttl(Duration::hours(1));
    }
    if batched {
        builder = builder.audit_batching(64, StdDuration::from_millis(50));
    }
    builder.build().unwrap()
}

/// `batched`: access events go to the store in groups (`VaultBuilder::audit_batching`).
/// `open` connects to the bed's database: once for the warm vault, once for the cold one.
fn bed<S: Store>(name: &'static str, open: impl Fn() -> S, batched: bool) -> Bed {
    let warm = vault(open(), 100_000, batched, false);
    warm.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .fields(["email"])
            .consent_lifetime(Duration::days(395)),
    )
    .unwrap();
    let customers: Vec<CustomerId> = (0..WARM_CUSTOMERS + COLD_CUSTOMERS)
        .map(|i| {
            let c = warm.create_customer().unwrap();
            warm.set_field(c, "email", &format!("{i:0>20}@example.com")).unwrap();
            warm.give_consent(c, "newsletter", Evidence::new("bench")).unwrap();
            c
        })
        .collect();
    // Built after the purpose exists, on a connection of its own as a second process would
    // be; a capacity of 1 per shard: touches are always first ones.
    let cold = vault(open(), 1, batched, true);
    Bed {
        name,
        warm,
        cold,
        warm_ids: customers[..WARM_CUSTOMERS].to_vec(),
        cold_ids: customers[WARM_CUSTOMERS..].to_vec(),
    }
}

fn authorize_reveal(v: &Vault, c: CustomerId) {
    let pass = v.authorize(c, "newsletter").unwrap();
    black_box(v.reveal::<String>(&pass, "email").unwrap());
}

fn give_consent(v: &Vault, c: CustomerId) {
    black_box(v.give_consent(c, "newsletter", Evidence::new("bench")).unwrap());
}

type Op = (&'static str, fn(&Bed, usize));

const OPS: [Op; 3] = [
    ("authorize_reveal_warm", |b, i| {
        authorize_reveal(&b.warm, b.warm_ids[i % b.warm_ids.len()])
    }),
    ("authorize_reveal_cold", |b, i| {
        authorize_reveal(&b.cold, b.cold_ids[i % b.cold_ids.len()])
    }),
    ("give_consent", |b, i| {
        give_consent(&b.warm, b.warm_ids[i % b.warm_ids.len()])
    }),
];

/// Mean time of `n` runs of `op`.
fn mean(bed: &Bed, op: fn(&Bed, usize), n: usize) -> StdDuration {
    let start = Instant::now();
    for i in 0..n {
        op(bed, i);
    }
    start.elapsed() / n as u32
}

/// Interleaved rounds on both backends (so that load on a shared machine hits both alike):
/// the median of the per-round times of each, and the median of the per-round ratios.
fn ratio(base: &Bed, other: &Bed, op: fn(&Bed, usize), rounds: usize, n: usize) -> (StdDuration, StdDuration, f64) {
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let x = mean(base, op, n);
        let y = mean(other, op, n);
        a.push(x);
        b.push(y);
        r.push(y.as_secs_f64() / x.as_secs_f64());
    }
    a.sort();
    b.sort();
    r.sort_by(f64::total_cmp);
    (a[rounds / 2], b[rounds / 2], r[rounds / 2])
}

/// Two vaults with the real clock: how long after a withdrawal on A does B refuse?
fn revocation_bound(url: &str, schema: &str) {
    let ttl = Duration::milliseconds(200);
    let build = || {
        Vault::builder()
            .master_key(MasterKey::from_bytes([3; 32]))
            .store(PostgresStore::connect_with(url, PostgresOptions::new().schema(schema).pool_size(2)).unwrap())
            .cache_ttl(ttl)
            .build()
            .unwrap()
    };
    let a = build();
    let b = build();
    let mut new_pass = Vec::new();
    let mut old_pass = Vec::new();
    for _ in 0..10 {
        let c = a.create_customer().unwrap();
        a.set_field(c, "email", "someone@example.com").unwrap();
        a.give_consent(c, "newsletter", Evidence::new("bench")).unwrap();
        let pass = b.authorize(c, "newsletter").unwrap();
        a.withdraw_consent(c, "newsletter").unwrap();
        let t = Instant::now();
        while b.authorize(c, "newsletter").is_ok() {
            std::thread::sleep(StdDuration::from_millis(1));
        }
        new_pass.push(t.elapsed());
        // The same for a pass issued before the withdrawal, used through reveal.
        a.give_consent(c, "newsletter", Evidence::new("bench")).unwrap();
        std::thread::sleep(StdDuration::from_millis(250));
        let pass2 = b.authorize(c, "newsletter").unwrap();
        drop(pass);
        a.withdraw_consent(c, "newsletter").unwrap();
        let t = Instant::now();
        while !matches!(
            b.reveal::<String>(&pass2, "email"),
            Err(Error::Denied(AccessDenied::Withdrawn))
        ) {
            std::thread::sleep(StdDuration::from_millis(1));
        }
        old_pass.push(t.elapsed());
    }
    for (what, mut times) in [("new authorize", new_pass), ("existing pass", old_pass)] {
        times.sort();
        println!(
            "revocation bound, {what} on B after a withdrawal on A (cache_ttl = 200 ms, 10 runs): \
             min {:.1} ms, median {:.1} ms, max {:.1} ms",
            times[0].as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
        );
    }
}

fn main() {
    let Ok(url) = std::env::var("EGARD_POSTGRES_URL") else {
        println!("postgres bench skipped: set EGARD_POSTGRES_URL=postgres://user@host:5432/db to run it");
        return;
    };
    let schema = format!("egard_bench_{}", std::process::id());
    let options = PostgresOptions::new().schema(&schema).pool_size(4);
    let connect = || PostgresStore::connect_with(&url, options.clone()).unwrap();
    let pg = bed("postgres", connect, false);
    let pg_batched = bed("postgres_batched_audit", connect, true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let baseline = bed("sqlite", || SqliteStore::open(&path).unwrap(), false);

    let mut c = Criterion::default().configure_from_args();
    for (op_name, op) in OPS {
        let mut group = c.benchmark_group(op_name);
        group.throughput(Throughput::Elements(1));
        for b in [&baseline, &pg, &pg_batched] {
            let mut i = 0;
            group.bench_function(b.name, |bench| {
                bench.iter(|| {
                    i += 1;
                    op(b, i);
                })
            });
        }
        group.finish();
    }
    c.final_summary();

    println!();
    for (op_name, op) in OPS {
        for bed in [&pg, &pg_batched] {
            let (base, p, r) = ratio(&baseline, bed, op, 7, 200);
            println!(
                "{op_name}: {} {:.1} µs, {} {:.1} µs, ratio {}/{} = {r:.1}x (median of 7 interleaved rounds of 200)",
                baseline.name,
                base.as_secs_f64() * 1e6,
                bed.name,
                p.as_secs_f64() * 1e6,
                bed.name,
                baseline.name,
            );
        }
    }
    revocation_bound(&url, &schema);

    drop((pg, pg_batched));
    if let Ok(mut admin) = postgres::Client::connect(&url, postgres::NoTls) {
        let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
}
