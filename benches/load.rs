//! Under concurrency, and across servers (issue 15): the access path as an application server
//! runs it. Not a criterion benchmark: it measures throughput and latency percentiles of many
//! threads at once over a bounded time, so it prints a table of its own.
//!
//! For each row, every vault ("server") gets 4 reader threads doing `authorize` + `reveal`
//! (a 32-byte field) on random customers, and 1 writer thread withdrawing, re-giving and
//! rectifying (`withdraw_consent`, `give_consent`, `set_field`) on random customers, all in
//! this one process, for a bounded time. The stores are a SQLite file and PostgreSQL on
//! loopback; nothing leaves the machine. Columns:
//!
//! - audited reads/s: `authorize` + `reveal` that succeeded (each one audited), per second,
//!   all vaults together; denials (a reader meeting a customer the writer just withdrew) are
//!   audited too and counted apart;
//! - `authorize` p50 / p99 / max: the latency of every `authorize` call, grants and denials,
//!   from a log-linear histogram (about 3 % resolution, fixed memory);
//! - writes/s: writer calls that succeeded, per second; change p50 / p99: the latency of every
//!   writer call (a change is acknowledged once it is in the store and synced);
//! - errors reaching the caller, by call and kind (`Conflict` is
//!   `Error::Storage(StoreError::Conflict)`);
//! - CPU: this process's user + system time over wall time (`/proc/self/stat`, in cores); a
//!   PostgreSQL server's own CPU is not in it;
//! - audit: after the row, every vault flushes and verifies the whole chain
//!   (`verify_audit`), and the log must have grown by at least one event per audited call.
//!
//! ```text
//! cargo bench --bench load
//! EGARD_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --all-features --bench load
//! ```
//!
//! Environment: `EGARD_LOAD_SECONDS` (per row, default 10; the issue's shape is 30),
//! `EGARD_LOAD_CUSTOMERS` (default 20,000), `EGARD_LOAD_ROWS` (run only the rows whose name
//! contains one of these comma-separated words, e.g. `postgres`). Without `EGARD_POSTGRES_URL`
//! (or without the `postgres` feature) the PostgreSQL rows are skipped with a message. The
//! PostgreSQL rows work in a schema of their own, dropped at the end; the population is built
//! there once with `synchronous_commit=off` for that session only, and the measured vaults
//! connect with the server's defaults.
//!
//! `EGARD_LOAD_STORE_CALLS=1` (with the default `tracing` feature) also installs a small
//! `tracing` layer that counts the vault's store round trips (`egard::store` events: the call,
//! whether it failed, its duration) and prints, per row, how many there were, how many failed
//! (a failed `apply` that the vault retried is an internal `Conflict` or `Stale`) and the store
//! time per second of wall time: a sum near 1.0 per vault for `apply` means that the store's
//! one writer (SQLite's write lock, PostgreSQL's audit-chain lock) is never free; `sync` is the
//! fsync of a change's write-ahead log on SQLite, outside that lock. It costs a little on every
//! call: the main table is measured without it.
//!
//! Under `cargo test --benches` (no `--bench`) it runs each row for 1 s on 500 customers.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant};

use common::{Rng, value_of_len};
use egard::{
    CustomerId, Durability, Error, Evidence, LawfulBasis, MasterKey, Purpose, SqliteOptions, SqliteStore, Store,
    StoreError, Vault,
};

const READERS: usize = 4;
const KEY: [u8; 32] = [7; 32];

// ----- measurement -----

/// A log-linear latency histogram in nanoseconds: 32 sub-buckets per power of two (about 3 %
/// resolution), fixed size whatever the number of calls.
struct Histogram {
    counts: Vec<u64>,
    max: u64,
    total: u64,
}

const SUB: u32 = 5; // 2^5 sub-buckets

impl Histogram {
    fn new() -> Self {
        Self {
            counts: vec![0; (64 << SUB) as usize],
            max: 0,
            total: 0,
        }
    }

    fn index(ns: u64) -> usize {
        if ns < (1 << SUB) {
            return ns as usize;
        }
        let bits = 63 - ns.leading_zeros(); // >= SUB
        let mantissa = (ns >> (bits - SUB)) & ((1 << SUB) - 1);
        (((bits - SUB + 1) << SUB) as u64 + mantissa) as usize
    }

    /// The lower bound of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < (1 << SUB) {
            return i;
        }
        let bits = (i >> SUB) + u64::from(SUB) - 1;
        let mantissa = i & ((1 << SUB) - 1);
        (1 << bits) | (mantissa << (bits - u64::from(SUB)))
    }

    fn record(&mut self, d: StdDuration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::index(ns)] += 1;
        self.max = self.max.max(ns);
        self.total += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
        self.total += other.total;
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

/// What one thread saw.
struct Tally {
    authorize: Histogram,
    /// The latency of every writer call.
    change: Histogram,
    reads: u64,
    denials: u64,
    writes: u64,
    /// The writes that always record an event (`give_consent`, `set_field`; a withdrawal of a
    /// consent another writer withdrew first changes nothing and records nothing).
    evented_writes: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            authorize: Histogram::new(),
            change: Histogram::new(),
            reads: 0,
            denials: 0,
            writes: 0,
            evented_writes: 0,
            errors: BTreeMap::new(),
        }
    }

    fn error(&mut self, role: &str, e: &Error) {
        *self.errors.entry(format!("{role} {}", kind(e))).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.authorize.merge(&other.authorize);
        self.change.merge(&other.change);
        self.reads += other.reads;
        self.denials += other.denials;
        self.writes += other.writes;
        self.evented_writes += other.evented_writes;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// The kind of an error, never its message (which could name a customer).
fn kind(e: &Error) -> String {
    match e {
        Error::Storage(StoreError::Conflict) => "Conflict".into(),
        Error::Storage(StoreError::Stale) => "Stale".into(),
        Error::Storage(StoreError::Unavailable(_)) => "Unavailable".into(),
        Error::Storage(_) => "Storage(other)".into(),
        other => {
            let text = format!("{other:?}");
            text.split(['(', ' ', '{']).next().unwrap_or("other").to_string()
        }
    }
}

/// This process's CPU time (user + system), from `/proc/self/stat` (Linux; `None` elsewhere).
/// The fields are in clock ticks of `USER_HZ`, 100 on Linux.
fn cpu_time() -> Option<StdDuration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(StdDuration::from_millis(ticks * 10))
}

/// Counting the vault's store round trips (see the module docs).
#[cfg(feature = "tracing")]
mod store_calls {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;

    /// By (thread role, call, ok): count and total microseconds.
    type Counts = BTreeMap<(&'static str, String, bool), (u64, u64)>;
    static CALLS: Mutex<Counts> = Mutex::new(BTreeMap::new());

    thread_local! {
        static ROLE: std::cell::Cell<&'static str> = const { std::cell::Cell::new("setup") };
    }

    /// Names the calling thread's role ("reader", "writer") in the counts.
    pub fn role(role: &'static str) {
        ROLE.with(|r| r.set(role));
    }

    struct Counting;

    #[derive(Default)]
    struct Fields {
        op: String,
        ok: bool,
        micros: u64,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "op" {
                self.op = value.to_string();
            }
        }
        fn record_bool(&mut self, field: &Field, value: bool) {
            if field.name() == "ok" {
                self.ok = value;
            }
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "micros" {
                self.micros = value;
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }

    impl<S: Subscriber> Layer<S> for Counting {
        fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
            if meta.target() == "egard::store" {
                Interest::always()
            } else {
                Interest::never()
            }
        }
        fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
            meta.target() == "egard::store"
        }
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut f = Fields::default();
            event.record(&mut f);
            let mut calls = CALLS.lock().unwrap();
            let e = calls.entry((ROLE.with(|r| r.get()), f.op, f.ok)).or_default();
            e.0 += 1;
            e.1 += f.micros;
        }
    }

    pub fn install() -> bool {
        if std::env::var("EGARD_LOAD_STORE_CALLS").is_ok_and(|v| v == "1") {
            tracing_subscriber::registry().with(Counting).init();
            true
        } else {
            false
        }
    }

    pub fn reset() {
        CALLS.lock().unwrap().clear();
    }

    pub fn summary(name: &str, wall: std::time::Duration) -> String {
        let calls = CALLS.lock().unwrap();
        let parts: Vec<String> = calls
            .iter()
            .map(|((role, op, ok), (n, us))| {
                format!(
                    "{role} {op}{} {n} (mean {:.0} µs, {:.2} s/s)",
                    if *ok { "" } else { " FAILED" },
                    *us as f64 / (*n).max(1) as f64,
                    *us as f64 / 1e6 / wall.as_secs_f64()
                )
            })
            .collect();
        format!("store calls, {name}: {}", parts.join("; "))
    }
}

#[cfg(not(feature = "tracing"))]
mod store_calls {
    pub fn install() -> bool {
        if std::env::var("EGARD_LOAD_STORE_CALLS").is_ok() {
            println!("EGARD_LOAD_STORE_CALLS needs the `tracing` feature");
        }
        false
    }
    pub fn reset() {}
    pub fn role(_: &'static str) {}
    pub fn summary(_: &str, _: std::time::Duration) -> String {
        String::new()
    }
}

// ----- the workload -----

fn reader(vault: &Vault, customers: &[CustomerId], seed: u64, stop: &AtomicBool) -> Tally {
    store_calls::role("reader");
    let mut rng = Rng::new(seed);
    let mut t = Tally::new();
    while !stop.load(Ordering::Relaxed) {
        let c = customers[rng.below(customers.len())];
        let start = Instant::now();
        let pass = vault.authorize(c, "newsletter");
        t.authorize.record(start.elapsed());
        match pass {
            Ok(pass) => match vault.reveal::<String>(&pass, "email") {
                Ok(v) => {
                    black_box(v);
                    t.reads += 1;
                }
                // Withdrawn by the writer between the two calls.
                Err(Error::Denied(_)) => t.denials += 1,
                Err(e) => t.error("reveal", &e),
            },
            Err(Error::Denied(_)) => t.denials += 1,
            Err(e) => t.error("authorize", &e),
        }
    }
    t
}

fn writer(vault: &Vault, customers: &[CustomerId], seed: u64, stop: &AtomicBool) -> Tally {
    store_calls::role("writer");
    let mut rng = Rng::new(seed);
    let mut t = Tally::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let c = customers[rng.below(customers.len())];
        n += 1;
        let mut timed = |r: &dyn Fn() -> Result<(), Error>| {
            let start = Instant::now();
            let result = r();
            t.change.record(start.elapsed());
            result
        };
        let results = [
            ("withdraw", timed(&|| vault.withdraw_consent(c, "newsletter"))),
            (
                "give",
                timed(&|| {
                    vault
                        .give_consent(c, "newsletter", Evidence::new("load-test"))
                        .map(drop)
                }),
            ),
            (
                "set_field",
                timed(&|| vault.set_field(c, "email", &value_of_len(32, n))),
            ),
        ];
        for (role, r) in results {
            match r {
                Ok(()) => {
                    t.writes += 1;
                    if role != "withdraw" {
                        t.evented_writes += 1;
                    }
                }
                Err(e) => t.error(role, &e),
            }
        }
    }
    t
}

struct Measured {
    name: String,
    wall: StdDuration,
    tally: Tally,
    cpu: Option<f64>,
    events_added: u64,
    verified: Result<u64, String>,
    /// With `EGARD_LOAD_STORE_CALLS=1`: the store round trips of the row.
    calls: Option<String>,
}

/// Runs the workload on `vaults` (each with its readers and writer) for `duration`.
fn run(name: &str, vaults: &[Vault], customers: &[CustomerId], duration: StdDuration) -> Measured {
    let head_before = vaults[0].audit_anchor().unwrap().seq;
    let stop = AtomicBool::new(false);
    store_calls::reset();
    let cpu_before = cpu_time();
    let start = Instant::now();
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (v, vault) in vaults.iter().enumerate() {
            for r in 0..READERS {
                let stop = &stop;
                let seed = 1 + (v * 16 + r) as u64 * 7919;
                handles.push(s.spawn(move || reader(vault, customers, seed, stop)));
            }
            let stop = &stop;
            let seed = 99_991 + v as u64;
            handles.push(s.spawn(move || writer(vault, customers, seed, stop)));
        }
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed();
    let calls = counting().then(|| store_calls::summary(name, wall));
    let cpu = cpu_before
        .zip(cpu_time())
        .map(|(a, b)| (b - a).as_secs_f64() / wall.as_secs_f64());
    let mut tally = Tally::new();
    for t in tallies {
        tally.merge(t);
    }
    // Nothing lost: every vault's queued events written, the chain whole and reaching what each
    // vault wrote, and at least one event per audited call.
    let mut verified = Ok(0);
    for vault in vaults {
        match vault.flush_audit().and_then(|()| vault.verify_audit()) {
            Ok(report) => verified = verified.map(|_| report.events_verified),
            Err(e) => verified = Err(kind(&e)),
        }
    }
    let head_after = vaults[0].audit_anchor().unwrap().seq;
    Measured {
        name: name.to_string(),
        wall,
        tally,
        cpu,
        events_added: head_after - head_before,
        verified,
        calls,
    }
}

static COUNTING: AtomicBool = AtomicBool::new(false);

fn counting() -> bool {
    COUNTING.load(Ordering::Relaxed)
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// How many events the row must have added at least: one per audited read or denial, one per
/// consent given and field written.
fn must_record(t: &Tally) -> u64 {
    t.reads + t.denials + t.evented_writes
}

fn print_row(m: &Measured) {
    let secs = m.wall.as_secs_f64();
    let h = &m.tally.authorize;
    let errors = if m.tally.errors.is_empty() {
        "none".to_string()
    } else {
        m.tally
            .errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cpu = m.cpu.map_or("n/a".to_string(), |c| format!("{c:.2} core"));
    let audited = must_record(&m.tally);
    let audit = match &m.verified {
        Ok(n) if m.events_added >= audited => format!("verified ({n} events, +{})", m.events_added),
        Ok(_) => format!("LOST: +{} events for {audited} audited calls", m.events_added),
        Err(k) => format!("FAILED: {k}"),
    };
    let w = &m.tally.change;
    println!(
        "| {} | {:.0} | {} / {} / {} | {:.0} | {} / {} | {} | {} | {} | {} |",
        m.name,
        m.tally.reads as f64 / secs,
        fmt_ns(h.quantile(0.5)),
        fmt_ns(h.quantile(0.99)),
        fmt_ns(h.max),
        m.tally.writes as f64 / secs,
        fmt_ns(w.quantile(0.5)),
        fmt_ns(w.quantile(0.99)),
        m.tally.denials,
        errors,
        cpu,
        audit,
    );
}

fn header() {
    println!();
    println!(
        "| store | audited reads/s | authorize p50 / p99 / max | writes/s | change p50 / p99 | denials | errors reaching the caller | CPU used | audit |"
    );
    println!("|---|---:|---|---:|---|---:|---|---:|---|");
}

// ----- the population -----

fn newsletter() -> Purpose {
    Purpose::new("newsletter", LawfulBasis::Consent)
        .fields(["email"])
        .consent_lifetime(chrono::Duration::days(395))
}

/// `n` customers, each with a 32-byte `email` and a valid `newsletter` consent.
fn populate(vault: &Vault, n: usize) -> Vec<CustomerId> {
    vault.define_purpose(newsletter()).unwrap();
    let start = Instant::now();
    let mut customers = Vec::with_capacity(n);
    for i in 0..n {
        let c = vault.create_customer().unwrap();
        vault.set_field(c, "email", &value_of_len(32, i)).unwrap();
        customers.push(c);
        if i > 0 && i % 5_000 == 0 {
            eprintln!("  ... {i} customers in {:.1?}", start.elapsed());
        }
    }
    for chunk in customers.chunks(500) {
        vault
            .give_consents(chunk.iter().map(|&c| (c, "newsletter", Evidence::new("load-test"))))
            .unwrap();
    }
    eprintln!("  {n} customers in {:.1?}", start.elapsed());
    customers
}

fn builder(store: impl Store + 'static, batched: bool, shared: bool) -> Vault {
    let mut b = Vault::builder().master_key(MasterKey::from_bytes(KEY)).store(store);
    if batched {
        b = b.audit_batching(1024, StdDuration::from_millis(100));
    }
    if shared {
        // As the README says every vault sharing a store must.
        b = b.cache_ttl(chrono::Duration::seconds(2));
    }
    b.build().unwrap()
}

struct Config {
    duration: StdDuration,
    customers: usize,
    rows: Option<Vec<String>>,
}

impl Config {
    fn wants(&self, name: &str) -> bool {
        self.rows
            .as_ref()
            .is_none_or(|words| words.iter().any(|w| name.contains(w.as_str())))
    }
}

const SQLITE_ROWS: [(&str, bool); 2] = [
    ("SQLite file, default", false),
    ("SQLite file, `audit_batching(1024, 100 ms)`", true),
];

/// Name, vaults, batching.
#[cfg(feature = "postgres")]
const POSTGRES_ROWS: [(&str, usize, bool); 6] = [
    ("PostgreSQL, one vault", 1, false),
    ("PostgreSQL, one vault, batching", 1, true),
    ("PostgreSQL, two vaults", 2, false),
    ("PostgreSQL, two vaults, batching", 2, true),
    ("PostgreSQL, four vaults", 4, false),
    ("PostgreSQL, four vaults, batching", 4, true),
];

fn sqlite_rows(config: &Config, out: &mut Vec<Measured>) {
    if !SQLITE_ROWS.iter().any(|(name, _)| config.wants(name)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("load.db");
    eprintln!("SQLite file: building {} customers", config.customers);
    let customers = {
        let store = SqliteStore::open_with(&path, SqliteOptions::new().durability(Durability::ProcessCrash)).unwrap();
        populate(&builder(store, false, false), config.customers)
    };
    let open = |p: &Path| SqliteStore::open(p).unwrap();
    for (name, batched) in SQLITE_ROWS {
        if config.wants(name) {
            let vault = builder(open(&path), batched, false);
            let m = run(name, &[vault], &customers, config.duration);
            print_row(&m);
            out.push(m);
        }
    }
}

#[cfg(feature = "postgres")]
fn postgres_rows(config: &Config, out: &mut Vec<Measured>) {
    use egard::{PostgresOptions, PostgresStore};

    if !POSTGRES_ROWS.iter().any(|(name, _, _)| config.wants(name)) {
        return;
    }
    let Ok(url) = std::env::var("EGARD_POSTGRES_URL") else {
        println!("PostgreSQL rows skipped: set EGARD_POSTGRES_URL=postgres://user@host:5432/db to run them");
        return;
    };
    let schema = format!("egard_load_{}", std::process::id());
    let options = PostgresOptions::new().schema(&schema);
    // The population is built without waiting for each commit's flush (this session only).
    let fast_url = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20synchronous_commit%3Doff")
    } else {
        url.clone()
    };
    eprintln!("PostgreSQL: building {} customers", config.customers);
    let customers = {
        let store = match PostgresStore::connect_with(&fast_url, options.clone()) {
            Ok(store) => store,
            Err(_) => match PostgresStore::connect_with(&url, options.clone()) {
                Ok(store) => store,
                Err(e) => {
                    println!("PostgreSQL rows skipped: cannot connect ({})", kind(&e));
                    return;
                }
            },
        };
        populate(&builder(store, false, false), config.customers)
    };
    let connect = || PostgresStore::connect_with(&url, options.clone()).unwrap();
    for (name, vaults, batched) in POSTGRES_ROWS {
        if config.wants(name) {
            let shared = vaults > 1;
            let vs: Vec<Vault> = (0..vaults).map(|_| builder(connect(), batched, shared)).collect();
            let m = run(name, &vs, &customers, config.duration);
            print_row(&m);
            out.push(m);
        }
    }
    if let Ok(mut admin) = postgres::Client::connect(&url, postgres::NoTls) {
        let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
}

#[cfg(not(feature = "postgres"))]
fn postgres_rows(_: &Config, _: &mut Vec<Measured>) {
    println!("PostgreSQL rows skipped: build with `--features postgres` (or `--all-features`)");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: a short smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let config = Config {
        duration: StdDuration::from_secs(env("EGARD_LOAD_SECONDS").unwrap_or(if smoke { 1 } else { 10 })),
        customers: env("EGARD_LOAD_CUSTOMERS").map_or(if smoke { 500 } else { 20_000 }, |n| n as usize),
        rows: std::env::var("EGARD_LOAD_ROWS")
            .ok()
            .map(|v| v.split(',').map(|w| w.trim().to_string()).collect()),
    };
    println!(
        "load: {} customers, {:?} per row, per vault {READERS} readers (authorize + reveal 32 B) and 1 writer \
         (withdraw, give, set_field); {} cores",
        config.customers,
        config.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    COUNTING.store(store_calls::install(), Ordering::Relaxed);
    let mut out = Vec::new();
    header();
    sqlite_rows(&config, &mut out);
    postgres_rows(&config, &mut out);
    println!();
    for line in out.iter().filter_map(|m| m.calls.as_ref()) {
        println!("- {line}");
    }
    let failed = out
        .iter()
        .any(|m| m.verified.is_err() || m.events_added < must_record(&m.tally));
    assert!(!failed, "an audit chain failed to verify or lost events");
}
