//! The audit log over years (issue 15): what a long log costs on disk, how fast it verifies,
//! and how fast it is archived and pruned. Not a criterion benchmark: one pass over a log of
//! `EGARD_AUDIT_EVENTS` events (default 200,000), printing a table.
//!
//! On a SQLite file: 1,000 customers with a consent, then `authorize` round-robin over them
//! (each call appends one `access_granted` event; the vault batches access events 10,000 at a
//! time, as a busy server would with `audit_batching`) until the log holds the number of
//! events asked for. Then, printed:
//!
//! - bytes per event on disk: the database file plus its write-ahead log after a checkpoint
//!   (`SqliteStore::purge`), divided by the events;
//! - `verify_audit` throughput (events per second, the whole chain);
//! - archival of every event (`archive_audit_to_dir_all`, segments of at most
//!   `DEFAULT_SEGMENT_EVENTS`): events per second of writing the segments (read, verified,
//!   written, synced), their bytes per event, and the prunes (one store batch per segment:
//!   delete every archived row but the kept ones, the base record, the archival's event),
//!   in all and the longest one (how long the store's write lock is held at most);
//! - `verify_audit_segment` throughput, and `verify_audit` after the prune.
//!
//! ```text
//! cargo bench --bench audit_log
//! EGARD_AUDIT_EVENTS=10000000 cargo bench --bench audit_log
//! ```
//!
//! Under `cargo test --benches` (no `--bench` flag) it runs once on 5,000 events, as a smoke
//! test.

use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use egard::{AuditStage, Evidence, LawfulBasis, MasterKey, Purpose, SqliteStore, Vault};

fn main() {
    // Under `cargo test --benches` (no `--bench` flag): a smoke test on a small log.
    let default = if std::env::args().any(|a| a == "--bench") {
        200_000
    } else {
        5_000
    };
    let events: u64 = std::env::var("EGARD_AUDIT_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("audit.db");
    let segments = dir.path().join("segments");
    let store = std::sync::Arc::new(SqliteStore::open(&db).expect("a SQLite file"));
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes([7; 32]))
        .store(store.clone())
        .audit_batching(10_000, StdDuration::from_secs(3600))
        .build()
        .expect("a vault");
    vault
        .define_purpose(Purpose::new("news", LawfulBasis::Consent).fields(["email"]))
        .expect("a purpose");
    let customers: Vec<_> = (0..1000)
        .map(|_| {
            let c = vault.create_customer().expect("a customer");
            vault
                .give_consent(c, "news", Evidence::new("bench"))
                .expect("a consent");
            c
        })
        .collect();

    let started = Instant::now();
    let mut head = vault.audit_anchor().expect("an anchor").seq;
    let mut i = 0usize;
    while head < events {
        for _ in 0..(events - head).min(100_000) {
            let c = customers[i % customers.len()];
            i += 1;
            drop(vault.authorize(c, "news").expect("a grant"));
        }
        head = vault.audit_anchor().expect("an anchor").seq;
        eprint!("\rfilling: {head} events");
    }
    eprintln!();
    let fill = started.elapsed();
    store.purge().expect("a checkpoint");
    let on_disk = file_size(&db) + file_size(&dir.path().join("audit.db-wal"));

    let started = Instant::now();
    let verified = vault.verify_audit().expect("an intact log");
    let verify = started.elapsed();

    // Archival in steps of at most `DEFAULT_SEGMENT_EVENTS`: each step's prune (one store
    // batch) is timed from its start to its commit.
    let mut pruning: Option<Instant> = None;
    let mut prunes: Vec<StdDuration> = Vec::new();
    let started = Instant::now();
    let reports = vault
        .archive_audit_to_dir_all(Utc::now() + Duration::seconds(1), &segments, &mut |p| {
            if p.stage == AuditStage::Pruning {
                match pruning.take() {
                    None => pruning = Some(Instant::now()),
                    Some(t) => prunes.push(t.elapsed()),
                }
            }
        })
        .expect("an archival");
    let total = started.elapsed();
    let prune: StdDuration = prunes.iter().sum();
    let prune_max = prunes.iter().max().copied().unwrap_or_default();
    let write = total.saturating_sub(prune);
    let archived: u64 = reports.iter().map(|r| r.events).sum();
    let segment_bytes: u64 = reports.iter().map(|r| r.segment_bytes).sum();
    let kept = reports.last().map_or(0, |r| r.kept);

    let started = Instant::now();
    let mut segment_events = 0u64;
    for r in &reports {
        let path = r.path.clone().expect("a segment file");
        let seg = vault
            .verify_audit_segment(std::io::BufReader::new(
                std::fs::File::open(&path).expect("the segment"),
            ))
            .expect("an intact segment");
        segment_events += seg.events;
    }
    let verify_segment = started.elapsed();
    let started = Instant::now();
    let after = vault.verify_audit().expect("an intact log after the prune");
    let verify_after = started.elapsed();
    store.purge().expect("a checkpoint");
    let on_disk_after = file_size(&db) + file_size(&dir.path().join("audit.db-wal"));

    let per_s = |n: u64, d: StdDuration| n as f64 / d.as_secs_f64().max(1e-9);
    println!("events in the log: {}", verified.events_verified);
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| fill (authorize, batched 10,000) | {:.0} events/s ({:.1} s) |",
        per_s(head, fill),
        fill.as_secs_f64()
    );
    println!(
        "| SQLite file + WAL after checkpoint | {:.1} MB, {:.0} bytes/event |",
        on_disk as f64 / 1e6,
        on_disk as f64 / head as f64
    );
    println!(
        "| verify_audit, whole chain | {:.0} events/s ({:.2} s) |",
        per_s(verified.events_verified, verify),
        verify.as_secs_f64()
    );
    println!(
        "| archive: read, verify, write and sync {} segment(s) | {:.0} events/s ({:.2} s) |",
        reports.len(),
        per_s(archived, write),
        write.as_secs_f64()
    );
    println!(
        "| segment size | {:.1} MB, {:.0} bytes/event |",
        segment_bytes as f64 / 1e6,
        segment_bytes as f64 / archived.max(1) as f64
    );
    println!(
        "| prune: {} batch(es) deleting {} rows (kept {}) | {:.2} s in all, {:.2} s for the longest batch |",
        prunes.len(),
        archived - kept.min(archived),
        kept,
        prune.as_secs_f64(),
        prune_max.as_secs_f64()
    );
    println!(
        "| verify_audit_segment | {:.0} events/s ({:.2} s) |",
        per_s(segment_events, verify_segment),
        verify_segment.as_secs_f64()
    );
    println!(
        "| verify_audit after the prune ({} rows) | {:.3} s |",
        after.events_verified,
        verify_after.as_secs_f64()
    );
    println!(
        "| SQLite file after the prune (free pages kept for reuse, no VACUUM) | {:.1} MB |",
        on_disk_after as f64 / 1e6
    );
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
