//! Archival under SIGKILL, for real: a child process writes audit events and archives them
//! (segments of a few events, so that it is nearly always inside an archival step: reading,
//! writing the segment, syncing, renaming or pruning) and prints the head of the log after each
//! write; the parent kills it at random moments, reopens the SQLite file, and checks that every
//! acknowledged event is in the store or in a segment that verifies, that the segments join
//! the store's chain, and that the log verifies.
//!
//! The child is this same test binary, run again with `EGARD_ARCHIVE_CRASH_DB` set.

#![cfg(all(feature = "sqlite", unix))]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;
use egard::{AuditAnchor, AuditEvent, Evidence, LawfulBasis, MasterKey, Purpose, SqliteStore, Store, Vault};

const KILLS: usize = 8;
const KEY: [u8; 32] = [0xa7; 32];
const DB_VAR: &str = "EGARD_ARCHIVE_CRASH_DB";
const DIR_VAR: &str = "EGARD_ARCHIVE_CRASH_DIR";

fn open(db: &str) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(SqliteStore::open(db).unwrap())
        .audit_segment_events(7)
        .build()
        .unwrap()
}

fn random() -> u64 {
    let b = uuid::Uuid::new_v4();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap())
}

/// Not a test of its own: the child process of [`archival_survives_sigkill`].
#[test]
fn archive_child_entry_point() {
    let (Ok(db), Ok(dir)) = (std::env::var(DB_VAR), std::env::var(DIR_VAR)) else {
        return;
    };
    let vault = open(&db);
    let _ = vault.define_purpose(Purpose::new("news", LawfulBasis::Consent).fields(["email"]));
    let ack = |a: AuditAnchor| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {}", serde_json::to_string(&a).unwrap()).unwrap();
        out.flush().unwrap();
    };
    loop {
        let c = vault.create_customer().unwrap();
        vault.give_consent(c, "news", Evidence::new("crash")).unwrap();
        for _ in 0..(random() % 6) {
            drop(vault.authorize(c, "news").unwrap());
        }
        ack(vault.audit_anchor().unwrap());
        vault
            .archive_audit_to_dir_all(Utc::now(), Path::new(&dir), &mut |_| {})
            .unwrap();
    }
}

/// The segments of a directory by the sequence number they start from: each one's end and file.
type ByStart = HashMap<u64, Vec<(AuditAnchor, PathBuf)>>;

/// Every event of every segment file in `dir` that verifies alone (a file is renamed into
/// place only once written and synced, so every one must), by sequence number; and the
/// segments by start.
fn segments(vault: &Vault, dir: &Path, kill: usize) -> (HashMap<u64, AuditEvent>, ByStart) {
    let mut events = HashMap::new();
    let mut by_start = ByStart::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue; // a segment being written when the child died: never renamed, never pruned
        }
        let report = vault
            .verify_audit_segment(std::fs::File::open(&path).unwrap())
            .unwrap_or_else(|e| panic!("kill {kill}: segment {name} does not verify: {e}"));
        for line in std::fs::read_to_string(&path).unwrap().lines().skip(1) {
            if let Ok(e) = serde_json::from_str::<AuditEvent>(line) {
                events.insert(e.seq, e);
            }
        }
        by_start.entry(report.start.seq).or_default().push((report.end, path));
    }
    (events, by_start)
}

/// The segments from the start of the log to `base`, following starts and ends (a segment
/// left by a run killed before its prune has the same start as the one written after it).
fn chain_to(by_start: &ByStart, from: AuditAnchor, base: AuditAnchor) -> Option<Vec<PathBuf>> {
    if from == base {
        return Some(Vec::new());
    }
    for (end, path) in by_start.get(&from.seq).into_iter().flatten() {
        if end.seq <= base.seq {
            if let Some(mut rest) = chain_to(by_start, *end, base) {
                rest.insert(0, path.clone());
                return Some(rest);
            }
        }
    }
    None
}

#[test]
fn archival_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("archive.db").to_str().unwrap().to_owned();
    let dir = tmp.path().join("segments");
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<AuditAnchor> = Vec::new();
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "archive_child_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DB_VAR, &db)
            .env(DIR_VAR, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    if let Some(ack) = text.strip_prefix("ACK ") {
                        let _ = tx.send(serde_json::from_str::<AuditAnchor>(ack).unwrap());
                    }
                }
                line.clear();
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).expect("the child never wrote");
        std::thread::sleep(Duration::from_millis(50 + random() % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(std::iter::once(first).chain(rx.try_iter()));

        // Reopen: the log verifies, and every acknowledged event is in the store or in a
        // segment, with the MAC it was acknowledged with.
        let vault = open(&db);
        vault
            .verify_audit()
            .unwrap_or_else(|e| panic!("kill {kill}: the log does not verify: {e}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (archived, by_start) = segments(&vault, &dir, kill);
        let store = SqliteStore::open(&db).unwrap();
        for a in &acked {
            let in_store = store
                .audit_range(a.seq, 1)
                .unwrap()
                .into_iter()
                .find(|e| e.seq == a.seq);
            let found = in_store.or_else(|| archived.get(&a.seq).cloned());
            let found = found.unwrap_or_else(|| panic!("kill {kill}: acknowledged event {} lost", a.seq));
            assert_eq!(found.mac, a.mac, "kill {kill}: event {} is another one", a.seq);
        }
        // The segments join from the start of the log to the store's base.
        if let Some(base) = vault.audit_archived_through().unwrap() {
            let base_mac = store.audit_range(base.seq, 1).unwrap()[0].mac;
            let chain = chain_to(
                &by_start,
                AuditAnchor { seq: 0, mac: [0; 32] },
                AuditAnchor {
                    seq: base.seq,
                    mac: base_mac,
                },
            )
            .unwrap_or_else(|| panic!("kill {kill}: the segments do not reach the base {}", base.seq));
            let files: Vec<_> = chain.iter().map(|p| std::fs::File::open(p).unwrap()).collect();
            let joined = vault
                .verify_audit_with_segments(files)
                .unwrap_or_else(|e| panic!("kill {kill}: segments and store do not join: {e}"));
            assert_eq!(joined.history_from.map(|a| a.seq), Some(0));
        }
        drop(vault);
    }
    let vault = open(&db);
    let base = vault.audit_archived_through().unwrap().expect("the child archived");
    assert!(base.seq > 20, "archived only through {}", base.seq);
    assert!(
        acked.len() > KILLS,
        "only {} acknowledged heads in {KILLS} runs",
        acked.len()
    );
    eprintln!("{KILLS} kills, {} acknowledged heads, all present", acked.len());
}
