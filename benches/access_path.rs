//! The access-check path, against the floor, in one run.
//!
//! ```text
//! cargo bench --bench access_path
//! ```
//!
//! For populations of 1,000, 100,000 and 1,000,000 customers in a `MemoryStore` (override with
//! `EGARD_BENCH_POPULATIONS=1000,100000`), measures the floor (a plain `HashMap` consent check
//! and ring AES-256-GCM opens with pre-built keys) and egard's access path, then prints each
//! case's median and its ratio to the floor measured in the same run, read back from
//! criterion's `estimates.json`. See BENCHMARKS.md for what each case measures.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant, SystemTime};

use chrono::{DateTime, Duration, Utc};
use criterion::Criterion;
use egard::{AccessPass, Consent, ConsentId, CustomerId, Evidence, LawfulBasis, MasterKey, PurposeId, Revealed, Vault};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use common::{Newsletter, newsletter_of, population, probes, value_of_len, vault_over};

/// How many customers of each kind every case cycles through, spread over the population.
const PROBES: usize = 250;
/// Associated-data length of an egard field envelope for namespace `egard` and field `email`:
/// header 6, then (4 + 5), (4 + 16), (4 + 5).
const AAD_LEN: usize = 44;

/// The cases, in the order they are reported, with the floor each one is compared to.
const CASES: [(&str, &str); 17] = [
    ("floor_check", ""),
    ("floor_open_32", ""),
    ("floor_open_256", ""),
    ("floor_check_open_32", ""),
    ("floor_check_open_256", ""),
    ("ref_audit_mac", "floor_check"),
    ("reveal_32", "floor_check_open_32"),
    ("reveal_256", "floor_check_open_256"),
    ("authorize_warm", "floor_check"),
    ("authorize_cold", "floor_check"),
    ("authorize_reveal_32", "floor_check_open_32"),
    ("authorize_reveal_32_batched", "floor_check_open_32"),
    ("denied_no_consent", "floor_check"),
    ("denied_expired", "floor_check"),
    ("denied_withdrawn", "floor_check"),
    ("seal_32", "floor_open_32"),
    ("set_field_32", "floor_open_32"),
];

/// The floor: what the access check costs at the very least, in plain Rust and ring.
struct Floor {
    consents: HashMap<(CustomerId, PurposeId), Consent>,
    required_notice: u32,
    fields: Vec<&'static str>,
    /// Per probed customer: the lookup key, a pre-built data key, and 32- and 256-byte sealed
    /// values with their nonces.
    probes: Vec<FloorProbe>,
    aad: [u8; AAD_LEN],
}

struct FloorProbe {
    key: (CustomerId, PurposeId),
    aes: LessSafeKey,
    nonce: [u8; NONCE_LEN],
    sealed_32: Vec<u8>,
    sealed_256: Vec<u8>,
}

impl Floor {
    /// The same population of records as the vault's, in a `HashMap`.
    fn new(customers: &[CustomerId], granted: &[usize]) -> Self {
        let now = Utc::now();
        let newsletter = PurposeId::new("newsletter").unwrap();
        let mut consents = HashMap::with_capacity(customers.len() * 3);
        let record = |c: CustomerId, purpose: &PurposeId, given: DateTime<Utc>, lifetime: Option<Duration>| Consent {
            id: ConsentId::new(),
            customer: c,
            purpose: purpose.clone(),
            basis: LawfulBasis::Consent,
            notice_version: 1,
            given_at: given,
            expires_at: lifetime.map(|d| given + d),
            withdrawn_at: None,
            superseded_by: None,
            evidence: Evidence::new("web-form").source("signup-v3"),
            sealed_choices: None,
        };
        let account = PurposeId::new("account").unwrap();
        let analytics = PurposeId::new("analytics").unwrap();
        for (i, &c) in customers.iter().enumerate() {
            consents.insert((c, account.clone()), record(c, &account, now, None));
            consents.insert(
                (c, analytics.clone()),
                record(c, &analytics, now, Some(Duration::days(365))),
            );
            let mut n = match newsletter_of(i) {
                Newsletter::Expired => record(c, &newsletter, now - Duration::days(400), Some(Duration::days(395))),
                _ => record(c, &newsletter, now, Some(Duration::days(395))),
            };
            if newsletter_of(i) == Newsletter::Withdrawn {
                n.withdrawn_at = Some(now);
            }
            consents.insert((c, newsletter.clone()), n);
        }
        let rng = SystemRandom::new();
        let mut aad = [0u8; AAD_LEN];
        rng.fill(&mut aad).unwrap();
        let probes = granted
            .iter()
            .map(|&i| {
                let mut raw = [0u8; 32];
                rng.fill(&mut raw).unwrap();
                let aes = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).unwrap());
                let mut nonce = [0u8; NONCE_LEN];
                rng.fill(&mut nonce).unwrap();
                let seal = |len: usize| {
                    let mut v = value_of_len(len, i).into_bytes();
                    aes.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut v)
                        .unwrap();
                    v
                };
                FloorProbe {
                    key: (customers[i], newsletter.clone()),
                    sealed_32: seal(32),
                    sealed_256: seal(256),
                    aes,
                    nonce,
                }
            })
            .collect();
        Self {
            consents,
            required_notice: 1,
            fields: vec!["bio", "email", "first_name"],
            probes,
            aad,
        }
    }

    /// The same rule as egard's decision: a record exists, not withdrawn nor superseded, not
    /// expired at the current time, under the required notice, and the field is covered.
    fn check(&self, key: &(CustomerId, PurposeId), field: &str) -> bool {
        let now = Utc::now();
        match self.consents.get(key) {
            Some(c) => {
                c.withdrawn_at.is_none()
                    && c.superseded_by.is_none()
                    && c.expires_at.is_none_or(|t| now < t)
                    && c.notice_version >= self.required_notice
                    && self.fields.contains(&field)
            }
            None => false,
        }
    }

    /// ring AES-256-GCM open of a sealed value with a pre-built key (copied to a stack buffer
    /// first: the stored ciphertext stays intact, as a store's would).
    fn open(&self, p: &FloorProbe, sealed: &[u8]) -> usize {
        let mut buf = [0u8; 256 + 16];
        let buf = &mut buf[..sealed.len()];
        buf.copy_from_slice(sealed);
        let plain = p
            .aes
            .open_in_place(Nonce::assume_unique_for_key(p.nonce), Aad::from(&self.aad), buf)
            .unwrap();
        black_box(plain).len()
    }
}

/// Cycles through a list: the next element on every call.
struct Cycle<'a, T> {
    items: &'a [T],
    i: usize,
}

impl<'a, T> Cycle<'a, T> {
    fn new(items: &'a [T]) -> Self {
        Self { items, i: 0 }
    }

    #[allow(clippy::should_implement_trait)]
    fn next(&mut self) -> &'a T {
        let item = &self.items[self.i];
        self.i += 1;
        if self.i == self.items.len() {
            self.i = 0;
        }
        item
    }
}

/// One case: a name and one operation.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Medians (ns per operation) timed by a plain loop, the cases interleaved round-robin so
/// that every case sees the same load on a shared machine: `ROUNDS` rounds, each running a
/// batch of every case, starting at a different case each round. A batch is at least two
/// passes over the case's probed customers, so that every case runs on data as warm in the
/// CPU caches as the others (denials have their own customers, which no other case touches),
/// and at least `BATCH_NS` long.
fn interleaved(cases: &mut [Case<'_>]) -> Vec<f64> {
    const ROUNDS: usize = 100;
    const BATCH_NS: f64 = 100_000.0;
    let batches: Vec<usize> = cases
        .iter_mut()
        .map(|(_, f)| {
            for _ in 0..16 {
                f();
            }
            let t = Instant::now();
            for _ in 0..16 {
                f();
            }
            let per_op = t.elapsed().as_nanos() as f64 / 16.0;
            ((BATCH_NS / per_op.max(1.0)) as usize).clamp(2 * PROBES, 20_000)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for round in 0..ROUNDS {
        for k in 0..cases.len() {
            let c = (round + k) % cases.len();
            let f = &mut cases[c].1;
            let t = Instant::now();
            for _ in 0..batches[c] {
                f();
            }
            samples[c].push(t.elapsed().as_nanos() as f64 / batches[c] as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// A population with everything its cases need.
struct Fixture {
    n: usize,
    pop: common::Population,
    floor: Floor,
    granted: Vec<CustomerId>,
    expired: Vec<CustomerId>,
    withdrawn: Vec<CustomerId>,
    /// Passes for the reveal cases, made by [`Fixture::issue_passes`] just before measuring
    /// (a pass lives five minutes).
    passes: Vec<AccessPass>,
    cold: Vault,
    batched: Vault,
    mac_key: ring::hmac::Key,
    value_32: String,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let pop = population(n);
        eprintln!(
            "population n={n}: built in {:.2?} ({:.0} ns per customer)",
            pop.setup,
            pop.setup.as_nanos() as f64 / n as f64,
        );
        let vault = &pop.vault;
        let at = |idx: Vec<usize>| idx.into_iter().map(|i| pop.customers[i]).collect::<Vec<_>>();
        let granted_idx = probes(n, Newsletter::Valid, PROBES, 1);
        let granted = at(granted_idx.clone());
        let expired = at(probes(n, Newsletter::Expired, PROBES, 2));
        let withdrawn = at(probes(n, Newsletter::Withdrawn, PROBES, 3));
        for (&c, &i) in granted.iter().zip(&granted_idx) {
            vault.set_field(c, "bio", &value_of_len(256, i)).unwrap();
        }
        // Warm the vault's cache for every probed customer (as a service's steady state).
        for &c in granted.iter().chain(&expired).chain(&withdrawn) {
            let _ = vault.authorize(c, "newsletter");
        }
        let floor = Floor::new(&pop.customers, &granted_idx);
        // A vault with a cache of one customer per shard over the same store: every authorize
        // through it is a first touch (store read, data-key unwrap, cache fill).
        let cold = vault_over(pop.store.clone(), &pop.clock, 1);
        // The same, with group commit of access events (VaultBuilder::audit_batching): events
        // are still chained (one HMAC each) but written 64 at a time. On a handle of its own
        // and without a time-to-live, as a single-process vault is: what it measures does not
        // depend on seeing the other vaults' changes.
        let batched = Vault::builder()
            .master_key(MasterKey::from_bytes(common::MASTER))
            .store(common::OtherHandle(pop.store.clone()))
            .clock(pop.clock.clone())
            .audit_batching(64, StdDuration::from_millis(100))
            .build()
            .unwrap();
        for &c in granted.iter() {
            batched.authorize(c, "newsletter").unwrap();
        }
        Self {
            n,
            pop,
            floor,
            granted,
            expired,
            withdrawn,
            passes: Vec::new(),
            cold,
            batched,
            mac_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[9; 32]),
            value_32: value_of_len(32, 7),
        }
    }

    fn issue_passes(&mut self) {
        let vault = &self.pop.vault;
        self.passes = self
            .granted
            .iter()
            .map(|&c| vault.authorize(c, "newsletter").unwrap())
            .collect();
    }

    fn cases(&self) -> Vec<Case<'_>> {
        let vault = &self.pop.vault;
        let (floor, granted, expired, withdrawn, passes) =
            (&self.floor, &self.granted, &self.expired, &self.withdrawn, &self.passes);
        let (cold, batched, mac_key, value_32) = (&self.cold, &self.batched, &self.mac_key, &self.value_32);
        let cases: Vec<Case<'_>> = vec![
            // ----- the floor -----
            ("floor_check", {
                let mut p = Cycle::new(&floor.probes);
                Box::new(move || {
                    black_box(floor.check(&p.next().key, "email"));
                })
            }),
            ("floor_open_32", {
                let mut p = Cycle::new(&floor.probes);
                Box::new(move || {
                    let p = p.next();
                    black_box(floor.open(p, &p.sealed_32));
                })
            }),
            ("floor_open_256", {
                let mut p = Cycle::new(&floor.probes);
                Box::new(move || {
                    let p = p.next();
                    black_box(floor.open(p, &p.sealed_256));
                })
            }),
            ("floor_check_open_32", {
                let mut p = Cycle::new(&floor.probes);
                Box::new(move || {
                    let p = p.next();
                    assert!(floor.check(&p.key, "email"));
                    black_box(floor.open(p, &p.sealed_32));
                })
            }),
            ("floor_check_open_256", {
                let mut p = Cycle::new(&floor.probes);
                Box::new(move || {
                    let p = p.next();
                    assert!(floor.check(&p.key, "bio"));
                    black_box(floor.open(p, &p.sealed_256));
                })
            }),
            // A reference, not a floor: the HMAC-SHA256 chain link the vault computes for each
            // access_granted audit event (same key type, same input pieces and lengths), to
            // show its share of `authorize`.
            ("ref_audit_mac", {
                let mut prev = [0u8; 32];
                let mut seq = 0u64;
                let mut p = Cycle::new(granted);
                let key = mac_key;
                Box::new(move || {
                    seq += 1;
                    let mut ctx = ring::hmac::Context::with_key(key);
                    ctx.update(&prev);
                    ctx.update(&seq.to_be_bytes());
                    ctx.update(&Utc::now().timestamp_micros().to_be_bytes());
                    for part in [&b"access_granted"[..], p.next().as_bytes(), b"newsletter", b"", b""] {
                        ctx.update(&(part.len() as u64).to_be_bytes());
                        ctx.update(part);
                    }
                    prev.copy_from_slice(ctx.sign().as_ref());
                    black_box(&prev);
                })
            }),
            // ----- reveal through existing passes -----
            ("reveal_32", {
                let mut p = Cycle::new(passes);
                Box::new(move || {
                    let v: Revealed<String> = vault.reveal(p.next(), "email").unwrap();
                    black_box(v);
                })
            }),
            ("reveal_256", {
                let mut p = Cycle::new(passes);
                Box::new(move || {
                    let v: Revealed<String> = vault.reveal(p.next(), "bio").unwrap();
                    black_box(v);
                })
            }),
            // ----- authorize -----
            ("authorize_warm", {
                let mut p = Cycle::new(granted);
                Box::new(move || {
                    black_box(vault.authorize(*p.next(), "newsletter").unwrap());
                })
            }),
            ("authorize_cold", {
                let mut p = Cycle::new(granted);
                Box::new(move || {
                    black_box(cold.authorize(*p.next(), "newsletter").unwrap());
                })
            }),
            ("authorize_reveal_32", {
                let mut p = Cycle::new(granted);
                Box::new(move || {
                    let pass = vault.authorize(*p.next(), "newsletter").unwrap();
                    let v: Revealed<String> = vault.reveal(&pass, "email").unwrap();
                    black_box(v);
                })
            }),
            ("authorize_reveal_32_batched", {
                let mut p = Cycle::new(granted);
                Box::new(move || {
                    let pass = batched.authorize(*p.next(), "newsletter").unwrap();
                    let v: Revealed<String> = batched.reveal(&pass, "email").unwrap();
                    black_box(v);
                })
            }),
            // ----- denials -----
            ("denied_no_consent", {
                let mut p = Cycle::new(granted);
                Box::new(move || {
                    black_box(vault.authorize(*p.next(), "research").unwrap_err());
                })
            }),
            ("denied_expired", {
                let mut p = Cycle::new(expired);
                Box::new(move || {
                    black_box(vault.authorize(*p.next(), "newsletter").unwrap_err());
                })
            }),
            ("denied_withdrawn", {
                let mut p = Cycle::new(withdrawn);
                Box::new(move || {
                    black_box(vault.authorize(*p.next(), "newsletter").unwrap_err());
                })
            }),
            // ----- writing -----
            ("seal_32", {
                let mut p = Cycle::new(granted);
                Box::new(move || {
                    black_box(vault.seal(*p.next(), "email", value_32).unwrap());
                })
            }),
            ("set_field_32", {
                let mut p = Cycle::new(granted);
                Box::new(move || vault.set_field(*p.next(), "email", value_32).unwrap())
            }),
        ];
        assert!(cases.iter().map(|c| c.0).eq(CASES.iter().map(|c| c.0)));
        cases
    }
}

/// Whether this is a benchmark run (`cargo bench`), not `cargo test --benches`.
fn c_is_benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// The median (ns) criterion wrote for `pop_<n>/<case>` in this run, if it ran.
fn median(home: &Path, n: usize, case: &str, since: SystemTime) -> Option<f64> {
    let path = home
        .join(format!("pop_{n}"))
        .join(case)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// Criterion's medians of this run.
fn criterion_medians(home: &Path, populations: &[usize], since: SystemTime) -> HashMap<(usize, &'static str), f64> {
    populations
        .iter()
        .flat_map(|&n| CASES.iter().map(move |&(case, _)| (n, case)))
        .filter_map(|(n, case)| median(home, n, case, since).map(|v| ((n, case), v)))
        .collect()
}

fn report(title: &str, m: &HashMap<(usize, &'static str), f64>, populations: &[usize]) {
    if m.is_empty() {
        return;
    }
    println!("\n== {title}: medians, and ratios to the floor measured in this run");
    print!("{:<28}", "case");
    for n in populations {
        print!("{:>24}", format!("n={n} (× floor)"));
    }
    if populations.len() > 1 {
        print!("{:>12}", "growth");
    }
    println!("{:>24}", "floor");
    for &(case, floor) in &CASES {
        print!("{case:<28}");
        for &n in populations {
            let cell = match (m.get(&(n, case)), m.get(&(n, floor))) {
                (Some(v), Some(f)) => format!("{} ({:.2}×)", ns(*v), v / f),
                (Some(v), None) => ns(*v),
                _ => "-".to_owned(),
            };
            print!("{cell:>24}");
        }
        if let (Some(first), Some(last)) = (populations.first(), populations.last()) {
            if populations.len() > 1 {
                let cell = match (m.get(&(*first, case)), m.get(&(*last, case))) {
                    (Some(a), Some(b)) => format!("{:.2}×", b / a),
                    _ => "-".to_owned(),
                };
                print!("{cell:>12}");
            }
        }
        println!("{:>24}", if floor.is_empty() { "(floor)" } else { floor });
    }
    println!("\n== targets");
    for &n in populations {
        let ratio = |a: &str, b: &str| Some(m.get(&(n, a))? / m.get(&(n, b))?);
        let verdict = |r: Option<f64>, max: f64| match r {
            Some(r) if r <= max => format!("{r:.2}× ≤ {max}× met"),
            Some(r) => format!("{r:.2}× > {max}× MISSED"),
            None => "not measured".to_owned(),
        };
        println!("n={n}:");
        println!(
            "  reveal_32 / floor_check_open_32              {}",
            verdict(ratio("reveal_32", "floor_check_open_32"), 1.3)
        );
        println!(
            "  reveal_256 / floor_check_open_256            {}",
            verdict(ratio("reveal_256", "floor_check_open_256"), 1.3)
        );
        println!(
            "  authorize_reveal_32 / floor_check_open_32    {}",
            verdict(ratio("authorize_reveal_32", "floor_check_open_32"), 2.0)
        );
        println!(
            "  authorize_cold / authorize_warm              {}",
            verdict(ratio("authorize_cold", "authorize_warm"), 3.0)
        );
        for denied in ["denied_no_consent", "denied_expired", "denied_withdrawn"] {
            println!(
                "  {denied} / authorize_warm {:>w$}{}",
                "",
                verdict(ratio(denied, "authorize_warm"), 1.0),
                w = 20 - denied.len()
            );
        }
    }
    if let (Some(&first), Some(&last)) = (populations.first(), populations.last()) {
        if first != last {
            let worst = CASES
                .iter()
                .filter(|(case, _)| !case.starts_with("floor_") && !case.starts_with("ref_"))
                .filter_map(|&(case, _)| Some((case, m.get(&(last, case))? / m.get(&(first, case))?)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((case, g)) = worst {
                println!(
                    "growth n={first} → n={last}, worst egard case {case}: {}",
                    if g <= 2.0 {
                        format!("{g:.2}× ≤ 2× met")
                    } else {
                        format!("{g:.2}× > 2× MISSED")
                    }
                );
            }
        }
    }
}

fn ns(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} µs", v / 1000.0)
    } else {
        format!("{v:.0} ns")
    }
}

fn main() {
    let since = SystemTime::now();
    // `cargo bench` passes --bench; without it (cargo test --benches) criterion runs each case
    // once as a test, and the small population is enough.
    let populations: Vec<usize> = match std::env::var("EGARD_BENCH_POPULATIONS") {
        Ok(list) => list.split(',').map(|s| s.trim().parse().unwrap()).collect(),
        Err(_) if c_is_benching() => vec![1_000, 100_000, 1_000_000],
        Err(_) => vec![1_000],
    };
    let home = criterion_home();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(StdDuration::from_millis(300))
        .measurement_time(StdDuration::from_millis(800))
        .nresamples(10_000)
        .without_plots()
        .output_directory(&home)
        .configure_from_args();
    // Every population is built first and kept, so that the interleaved loop can run the
    // cases of all of them together: growth is then measured under the same load too.
    let mut fixtures: Vec<Fixture> = populations.iter().map(|&n| Fixture::new(n)).collect();
    for f in &mut fixtures {
        f.issue_passes();
    }
    let mut all: Vec<(usize, Case<'_>)> = Vec::new();
    for f in &fixtures {
        let mut cases = f.cases();
        let mut g = c.benchmark_group(format!("pop_{}", f.n));
        for (name, run) in &mut cases {
            g.bench_function(*name, |b| b.iter(&mut *run));
        }
        g.finish();
        all.extend(cases.into_iter().map(|case| (f.n, case)));
    }
    let mut own = HashMap::new();
    if c_is_benching() {
        let t = Instant::now();
        let (keys, mut cases): (Vec<(usize, &'static str)>, Vec<Case<'_>>) =
            all.into_iter().map(|(n, (name, run))| ((n, name), (name, run))).unzip();
        let medians = interleaved(&mut cases);
        eprintln!("interleaved loop over every population timed in {:.2?}", t.elapsed());
        own.extend(keys.into_iter().zip(medians));
    }
    c.final_summary();
    report(
        "access path, criterion (target/criterion/pop_<n>/<case>/new/estimates.json)",
        &criterion_medians(&home, &populations, since),
        &populations,
    );
    report(
        "access path, interleaved loop (100 rounds, every case of every population in each round)",
        &own,
        &populations,
    );
    eprintln!("whole run: {:.1?}", since.elapsed().unwrap_or_default());
}
