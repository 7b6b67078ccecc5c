//! What the `tracing` feature costs on the access path, in one run: authorize + reveal (32 B,
//! MemoryStore, audited) with no subscriber (the baseline), with a subscriber that filters
//! egard out, and with subscribers that take egard's INFO events (one per audit entry) and its
//! DEBUG spans, writing to a sink.
//!
//! ```text
//! cargo bench --bench tracing
//! ```
//!
//! The feature's cost with no subscriber compared with a build without the feature cannot be
//! measured in one run (they are two builds): BENCHMARKS.md compares `access_path`'s
//! ratio-to-floor in the two builds instead.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use egard::{CustomerId, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Revealed, Vault};
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;

const CUSTOMERS: usize = 1_000;

fn populated() -> (Vault, Vec<CustomerId>) {
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes([4; 32]))
        .store(MemoryStore::new())
        .build()
        .unwrap();
    vault
        .define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let customers: Vec<CustomerId> = (0..CUSTOMERS)
        .map(|i| {
            let c = vault.create_customer().unwrap();
            vault
                .set_field(c, "email", &format!("c{i:07}@example-customers.com"))
                .unwrap();
            vault.give_consent(c, "newsletter", Evidence::new("web-form")).unwrap();
            c
        })
        .collect();
    (vault, customers)
}

/// A subscriber writing everything `filter` lets through to a sink.
fn subscriber(filter: &str) -> Option<Dispatch> {
    Some(Dispatch::new(
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_writer(std::io::sink)
            .finish(),
    ))
}

fn main() {
    let (vault, customers) = populated();
    let cases: Vec<(&str, Option<Dispatch>)> = vec![
        ("no_subscriber", None),
        ("subscriber_egard_off", subscriber("egard=off")),
        ("subscriber_info", subscriber("info")),
        ("subscriber_debug", subscriber("egard=debug")),
    ];
    let mut i = 0usize;
    let mut access = || {
        i = (i + 7919) % CUSTOMERS;
        let pass = vault.authorize(customers[i], "newsletter").unwrap();
        let v: Revealed<String> = vault.reveal(&pass, "email").unwrap();
        black_box(v);
    };
    let run = |dispatch: &Option<Dispatch>, f: &mut dyn FnMut()| match dispatch {
        Some(d) => tracing::dispatcher::with_default(d, f),
        None => f(),
    };

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1_000))
        .without_plots()
        .configure_from_args();
    let mut g = c.benchmark_group("tracing");
    for (name, dispatch) in &cases {
        g.bench_function(*name, |b| run(dispatch, &mut || b.iter(&mut access)));
    }
    g.finish();

    // The same cases interleaved: each round times every case once, so that a noisy
    // neighbour slows them alike; the medians are compared with the no-subscriber baseline.
    if std::env::args().any(|a| a == "--bench") {
        const ROUNDS: usize = 60;
        const PER_ROUND: u32 = 2_000;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        for _ in 0..ROUNDS {
            for (k, (_, dispatch)) in cases.iter().enumerate() {
                let mut elapsed = Duration::ZERO;
                run(dispatch, &mut || {
                    let t = Instant::now();
                    for _ in 0..PER_ROUND {
                        access();
                    }
                    elapsed = t.elapsed();
                });
                times[k].push(elapsed.as_nanos() as f64 / f64::from(PER_ROUND));
            }
        }
        let medians: Vec<f64> = times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            })
            .collect();
        println!("authorize + reveal 32 B, MemoryStore, interleaved medians ({ROUNDS} rounds):");
        for ((name, _), m) in cases.iter().zip(&medians) {
            println!("  {name:<22} {m:>8.0} ns   {:.2}× no_subscriber", m / medians[0]);
        }
    }
}
