//! The audit log over years: archival of old events into self-verifying segments, the prune
//! that keeps what stored state is bound to, verification across the archive, tampering with
//! segments and with the pruned store, crashes at every step of an archival, and the retention
//! rule run by the sweep. On memory, a real SQLite file and PostgreSQL.

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::*;
use egard::store::Write;
use egard::{AuditAnchor, AuditBreak, AuditKind, AuditStage, Error, Evidence, ManualClock, MasterKey, Store, Vault};

/// An old history (customers `old` and `quiet` and the purposes, at t0), then a year later a
/// recent one (`busy` changes and reads). Returns (old, quiet, busy) and the seq of the last
/// old event.
fn history(vault: &Vault, clock: &ManualClock) -> (egard::CustomerId, egard::CustomerId, egard::CustomerId, u64) {
    define_standard_purposes(vault);
    let old = customer_with_data(vault);
    consent(vault, old, "newsletter");
    let quiet = customer_with_data(vault);
    vault
        .give_consent(quiet, "shipping", Evidence::new("order-form"))
        .unwrap();
    let busy = customer_with_data(vault);
    consent(vault, busy, "newsletter");
    for _ in 0..5 {
        drop(vault.authorize(old, "newsletter").unwrap());
        drop(vault.authorize(busy, "newsletter").unwrap());
    }
    let last_old = vault.audit_anchor().unwrap().seq;
    clock.advance(Duration::days(365));
    vault.withdraw_consent(busy, "newsletter").unwrap();
    vault.set_field(busy, "address", "2 Rue Neuve").unwrap();
    let _ = vault.authorize(busy, "newsletter");
    (old, quiet, busy, last_old)
}

fn cutoff(clock: &ManualClock) -> chrono::DateTime<chrono::Utc> {
    egard::Clock::now(clock) - Duration::days(30)
}

#[track_caller]
fn assert_broken<T: std::fmt::Debug>(result: Result<T, Error>, problem: AuditBreak) -> u64 {
    match result {
        Err(Error::AuditBroken { seq, problem: p }) if p == problem => seq,
        other => panic!("expected AuditBroken ({problem:?}), got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>) {
    match result {
        Err(Error::SegmentInvalid(_)) => {}
        other => panic!("expected SegmentInvalid, got {other:?}"),
    }
}

fn seqs(store: &dyn Store) -> Vec<u64> {
    whole_log(store).iter().map(|e| e.seq).collect()
}

fn archival_verifies_before_and_after_and_across_reopening(open: &dyn Fn() -> Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(open(), &clock);
    let (old, quiet, busy, last_old) = history(&vault, &clock);
    let before = whole_log(&*open());
    let head = vault.audit_anchor().unwrap();
    let mut segment = Vec::new();
    let mut stages = Vec::new();
    let report = vault
        .archive_audit_with_progress(cutoff(&clock), &mut segment, &mut |p| stages.push(p.stage))
        .unwrap()
        .expect("old events to archive");
    assert!(stages.contains(&AuditStage::Archiving) && stages.contains(&AuditStage::Pruning));
    assert_eq!((report.from_seq, report.through_seq), (1, last_old));
    assert_eq!(report.events, last_old);
    assert_eq!(report.start, AuditAnchor { seq: 0, mac: [0; 32] });
    assert_eq!(report.segment_bytes, segment.len() as u64);
    let end = before.iter().find(|e| e.seq == last_old).unwrap();
    assert_eq!(
        report.end,
        AuditAnchor {
            seq: end.seq,
            mac: end.mac
        }
    );

    // Every event after the cut is still there, unchanged; the archival is the new head.
    let after = whole_log(&*open());
    for e in before.iter().filter(|e| e.seq > last_old) {
        assert_eq!(after.iter().find(|a| a.seq == e.seq), Some(e), "event {} kept", e.seq);
    }
    let archived = after.last().unwrap();
    assert_eq!(archived.seq, head.seq + 1);
    assert_eq!(archived.kind, AuditKind::AuditArchived);
    assert_eq!(archived.detail, format!("seq=1-{last_old};events={last_old}"));
    assert_eq!(archived.customer, None);
    // Below the cut only the kept rows remain: far fewer than were archived, the base among them.
    let kept: Vec<u64> = after.iter().map(|e| e.seq).filter(|s| *s <= last_old).collect();
    assert_eq!(kept.len() as u64, report.kept);
    assert!(kept.contains(&last_old));
    assert!(report.kept < report.events, "{kept:?}");

    let seg = vault.verify_audit_segment(segment.as_slice()).unwrap();
    assert_eq!(
        (seg.start, seg.end, seg.events),
        (report.start, report.end, report.events)
    );
    let verified = vault.verify_audit().unwrap();
    assert_eq!(verified.events_verified, after.len() as u64);
    let joined = vault.verify_audit_with_segments([segment.as_slice()]).unwrap();
    assert_eq!(joined.history_from, Some(AuditAnchor { seq: 0, mac: [0; 32] }));
    assert_eq!(joined.archived_events, report.events);
    assert_eq!(vault.audit_archived_through().unwrap().map(|a| a.seq), Some(last_old));

    // A second archival, later, starts where the first ended.
    clock.advance(Duration::days(60));
    assert_eq!(denied(vault.authorize(old, "newsletter")), egard::AccessDenied::Expired);
    let mut second = Vec::new();
    let report2 = vault.archive_audit(cutoff(&clock), &mut second).unwrap().unwrap();
    assert_eq!(report2.start, report.end);
    assert_eq!(report2.from_seq, last_old + 1);
    vault.verify_audit().unwrap();
    vault
        .verify_audit_with_segments([segment.as_slice(), second.as_slice()])
        .unwrap();
    // Segments out of order, or one missing, do not join.
    assert_invalid(vault.verify_audit_with_segments([second.as_slice(), segment.as_slice()]));
    assert_invalid(vault.verify_audit_with_segments([segment.as_slice()]));
    assert!(vault.archive_audit(cutoff(&clock), &mut Vec::new()).unwrap().is_none());

    // A new vault on the reopened store: builds (the purposes' latest changes were kept),
    // verifies, and serves the customers untouched since long before the cut.
    drop(vault);
    let vault = vault_on(open(), &clock);
    vault.verify_audit().unwrap();
    // `old`'s state loads and checks (its consent simply expired meanwhile).
    assert_eq!(denied(vault.authorize(old, "newsletter")), egard::AccessDenied::Expired);
    let pass = vault.authorize(quiet, "shipping").unwrap();
    assert_eq!(
        vault.reveal::<String>(&pass, "address").unwrap().expose(),
        "1 Rue de la Paix"
    );
    assert!(vault.authorize(busy, "newsletter").is_err(), "the withdrawal holds");
    // An anchor at a base is checked against it; one at a pruned sequence number cannot be
    // checked from the store (only against a segment); one at a kept row is checked there.
    vault.verify_audit_against(&report.end).unwrap();
    let stored = seqs(&*open());
    let pruned = (1..report.end.seq).find(|s| !stored.contains(s)).unwrap();
    vault
        .verify_audit_against(&AuditAnchor {
            seq: pruned,
            mac: [9; 32],
        })
        .unwrap();
    let kept = *stored.first().unwrap();
    assert_broken(
        vault.verify_audit_against(&AuditAnchor {
            seq: kept,
            mac: [9; 32],
        }),
        AuditBreak::Truncated,
    );
    assert_broken(
        vault.verify_audit_against(&AuditAnchor {
            seq: report2.end.seq,
            mac: [9; 32],
        }),
        AuditBreak::Truncated,
    );
    drop(vault);
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(open())
        .audit_anchor(report.end)
        .build()
        .unwrap();
}

fn the_rest_serves_what_is_kept(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(store, &clock);
    let (old, _quiet, busy, last_old) = history(&vault, &clock);
    vault.archive_audit(cutoff(&clock), &mut Vec::new()).unwrap().unwrap();
    // The change feed from the start serves what is kept, checked, in order.
    let changes = vault.changes_since(0, 1000).unwrap();
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        changes
            .iter()
            .any(|e| e.seq > last_old && e.kind == AuditKind::ConsentWithdrawn)
    );
    assert!(changes.iter().all(|e| e.kind.is_change()));
    // A customer's access log and export: the kept events, and where the rest lives.
    let log = vault.access_log(old).unwrap();
    assert!(!log.is_empty());
    let events = vault.audit_events(busy).unwrap();
    assert!(
        events.iter().any(|e| e.seq <= last_old),
        "busy's pinned change? {events:?}"
    );
    let export = vault
        .export_customer(busy, Evidence::new("verified-email-link"))
        .unwrap();
    assert_eq!(export.audit_archived_through.map(|a| a.seq), Some(last_old));
    assert!(export.audit_events.iter().any(|e| e.kind == AuditKind::Exported));
    vault.verify_audit().unwrap();
}

fn a_replayed_customer_row_is_still_caught(open: &dyn Fn() -> Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(open(), &clock);
    let (old, _, _, _) = history(&vault, &clock);
    let stale = open().customer(old).unwrap().unwrap().record;
    // A change to `old` long ago, then archival of everything up to it.
    vault.withdraw_consent(old, "newsletter").unwrap();
    clock.advance(Duration::days(90));
    vault.archive_audit(cutoff(&clock), &mut Vec::new()).unwrap().unwrap();
    let current = open().customer(old).unwrap().unwrap().record;
    drop(vault);
    // The record from before the withdrawal, written back.
    open()
        .apply(&[Write::UpdateCustomer {
            record: stale,
            expected_rev: current.rev,
        }])
        .unwrap();
    let vault = vault_on(open(), &clock);
    assert_crypto(vault.authorize(old, "newsletter"));
}

fn deleting_a_kept_or_unarchived_row_is_caught(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    let (_, _, _, last_old) = history(&vault, &clock);
    vault.archive_audit(cutoff(&clock), &mut Vec::new()).unwrap().unwrap();
    vault.verify_audit().unwrap();
    let all = seqs(&*store);
    let kept: Vec<u64> = all.iter().copied().filter(|s| *s <= last_old).collect();
    // A kept row (not the base) deleted.
    let victim = kept[0];
    assert!(victim < last_old);
    store
        .apply(&[Write::PruneAudit {
            through: victim,
            keep: Vec::new(),
        }])
        .unwrap();
    assert_broken(vault.verify_audit(), AuditBreak::SequenceGap);

    // An unarchived row deleted, on a fresh history.
    let store2: Arc<dyn Store> = Arc::new(egard::MemoryStore::new());
    let vault2 = vault_on(store2.clone(), &clock);
    let (_, _, _, last_old) = history(&vault2, &clock);
    vault2.archive_audit(cutoff(&clock), &mut Vec::new()).unwrap().unwrap();
    let all = seqs(&*store2);
    let gone = last_old + 2;
    store2
        .apply(&[Write::PruneAudit {
            through: gone,
            keep: all.iter().copied().filter(|s| *s < gone).collect(),
        }])
        .unwrap();
    assert_eq!(assert_broken(vault2.verify_audit(), AuditBreak::SequenceGap), gone);
}

fn tampered_segments_are_detected(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(store, &clock);
    history(&vault, &clock);
    let mut segment = Vec::new();
    vault.archive_audit(cutoff(&clock), &mut segment).unwrap().unwrap();
    let text = String::from_utf8(segment.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let join = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    vault.verify_audit_segment(text.as_bytes()).unwrap();

    // An edited event.
    let mut edited = lines.clone();
    let line = edited[3].replace("\"detail\":\"", "\"detail\":\"x");
    edited[3] = &line;
    assert_broken(
        vault.verify_audit_segment(join(&edited).as_bytes()),
        AuditBreak::MacMismatch,
    );
    // A dropped event line, in the middle and at the end.
    let mut dropped = lines.clone();
    dropped.remove(4);
    assert_eq!(
        assert_broken(
            vault.verify_audit_segment(join(&dropped).as_bytes()),
            AuditBreak::SequenceGap
        ),
        4
    );
    let mut dropped = lines.clone();
    dropped.remove(lines.len() - 2);
    assert_broken(
        vault.verify_audit_segment(join(&dropped).as_bytes()),
        AuditBreak::Truncated,
    );
    // An edited header (re-labelled to another time) or trailer; a missing trailer.
    let mut header = lines.clone();
    let line = header[0].replace("\"created_at\":\"20", "\"created_at\":\"19");
    assert_ne!(line, header[0]);
    header[0] = &line;
    assert_invalid(vault.verify_audit_segment(join(&header).as_bytes()));
    let mut trailer = lines.clone();
    let line = trailer[lines.len() - 1].replace("\"events\":", "\"events\":1");
    trailer[lines.len() - 1] = &line;
    assert_invalid(vault.verify_audit_segment(join(&trailer).as_bytes()));
    assert_invalid(vault.verify_audit_segment(join(&lines[..lines.len() - 1]).as_bytes()));
    // Garbage of every kind: an error, never a panic.
    for junk in [
        &b""[..],
        b"\n",
        b"{}",
        b"\xff\xfe",
        b"{\"format\":1}\n",
        &segment[..segment.len() / 2],
    ] {
        assert!(vault.verify_audit_segment(junk).is_err());
    }
    // A segment written by another vault (another audit key), with the same namespace.
    let other = Vault::builder()
        .master_key(MasterKey::from_bytes([8; 32]))
        .store(egard::MemoryStore::new())
        .clock(clock.clone())
        .build()
        .unwrap();
    other.create_customer().unwrap();
    clock.advance(Duration::days(31));
    let mut foreign = Vec::new();
    other.archive_audit(cutoff(&clock), &mut foreign).unwrap().unwrap();
    other.verify_audit_segment(foreign.as_slice()).unwrap();
    assert_invalid(vault.verify_audit_segment(foreign.as_slice()));
}

/// A writer that fails after `ok` bytes.
struct FailingWriter {
    ok: usize,
}

impl std::io::Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.ok {
            return Err(std::io::Error::other("disk full (test)"));
        }
        self.ok -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn a_crash_during_archival_loses_nothing(store: Arc<dyn Store>) {
    let tamper = TamperStore::new(store);
    let clock = ManualClock::new(t0());
    let vault = vault_on(tamper.clone(), &clock);
    history(&vault, &clock);
    let before = tamper.real_log();

    // The segment cannot be written: the store is untouched.
    let failed = vault.archive_audit(cutoff(&clock), &mut FailingWriter { ok: 700 });
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    assert_eq!(tamper.real_log(), before);
    assert_eq!(vault.audit_archived_through().unwrap(), None);

    // The segment file is written, then the store batch fails (as if the process died before
    // it): the store still holds everything, nothing is half-pruned.
    let dir = tempfile::tempdir().unwrap();
    tamper.fail_audit_appends(true);
    assert!(vault.archive_audit_to_dir(cutoff(&clock), dir.path()).is_err());
    tamper.fail_audit_appends(false);
    assert_eq!(tamper.real_log(), before);
    assert_eq!(vault.audit_archived_through().unwrap(), None);
    vault.verify_audit().unwrap();
    let orphans: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(orphans.len(), 1, "the segment was written: {orphans:?}");

    // Temporary segments left by runs that died while writing: an hour-old one is deleted
    // by the next run, a young one (maybe another process's, being written) is left.
    let stale = dir.path().join(".audit-segment-0123456789abcdef.tmp");
    let young = dir.path().join(".audit-segment-fedcba9876543210.tmp");
    for path in [&stale, &young] {
        std::fs::write(path, b"{\"partial\":").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    // The next run works, and its segment verifies with the store.
    let report = vault.archive_audit_to_dir(cutoff(&clock), dir.path()).unwrap().unwrap();
    let path = report.path.clone().unwrap();
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("audit-{:020}-{:020}.jsonl", 1, report.through_seq)
    );
    vault.verify_audit().unwrap();
    vault
        .verify_audit_with_segments([std::fs::File::open(&path).unwrap()])
        .unwrap();
    // It left no temporary file of its own, and deleted the stale one.
    let temporary: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert_eq!(temporary, vec![young]);
}

fn retention_archives_through_the_sweep(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store.clone())
        .clock(clock.clone())
        .audit_retention(Duration::days(30), dir.path())
        .audit_segment_events(4)
        .build()
        .unwrap();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "newsletter");
    let first = vault.sweep_retention().unwrap();
    assert!(first.archived.is_empty(), "nothing 30 days old yet");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    clock.advance(Duration::days(31));
    drop(vault.authorize(c, "newsletter"));
    let last_old = whole_log(&*store)
        .iter()
        .filter(|e| e.at < egard::Clock::now(&clock) - Duration::days(30))
        .map(|e| e.seq)
        .max()
        .unwrap();
    let swept = vault.sweep_retention().unwrap();
    // In steps of at most 4 events, each its own segment and store batch, in log order.
    let archived = swept.archived;
    assert_eq!(archived.len() as u64, last_old.div_ceil(4), "{archived:?}");
    assert!(archived.iter().all(|r| r.events <= 4));
    assert!(archived.windows(2).all(|w| w[0].end == w[1].start));
    assert_eq!(archived.last().unwrap().through_seq, last_old);
    let mut paths: Vec<_> = archived.iter().map(|r| r.path.clone().unwrap()).collect();
    assert!(paths.iter().all(|p| p.starts_with(dir.path())));
    let mut listed: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    listed.sort();
    paths.sort();
    assert_eq!(listed, paths, "the file names sort in log order");
    let files: Vec<_> = paths.iter().map(|p| std::fs::File::open(p).unwrap()).collect();
    let joined = vault.verify_audit_with_segments(files).unwrap();
    assert_eq!(joined.archived_events, last_old);
    assert!(
        vault.sweep_retention().unwrap().archived.is_empty(),
        "nothing new is old enough"
    );
    // A retention rule must be a positive period.
    assert!(matches!(
        Vault::builder()
            .master_key(MasterKey::from_bytes(KEY))
            .store(egard::MemoryStore::new())
            .audit_retention(Duration::zero(), dir.path())
            .build(),
        Err(Error::Config(_))
    ));
}

fn restored_rows_or_an_older_base_are_caught(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    let (old, _, _, _) = history(&vault, &clock);
    let full = whole_log(&*store);
    vault.archive_audit(cutoff(&clock), &mut Vec::new()).unwrap().unwrap();
    let first_base = store.secret("audit_base").unwrap().unwrap();
    // An archived row written back (a partial restore): verify sees a row the base did not keep.
    let stored = seqs(&*store);
    let archived = full.iter().find(|e| !stored.contains(&e.seq)).unwrap().clone();
    store.apply(&[Write::AppendAudit(archived.clone())]).unwrap();
    assert_broken(vault.verify_audit(), AuditBreak::SequenceGap);
    store
        .apply(&[Write::PruneAudit {
            through: archived.seq,
            keep: stored.iter().copied().filter(|s| *s < archived.seq).collect(),
        }])
        .unwrap();
    vault.verify_audit().unwrap();
    // A kept row edited in place (its MAC kept): the digest covers its content.
    let kept = whole_log(&*store)[0].clone();
    let mut edited = kept.clone();
    edited.detail.push('x');
    let others: Vec<u64> = seqs(&*store).into_iter().filter(|s| *s != kept.seq).collect();
    store
        .apply(&[
            Write::PruneAudit {
                through: kept.seq,
                keep: others,
            },
            Write::AppendAudit(edited),
        ])
        .unwrap();
    assert_broken(vault.verify_audit(), AuditBreak::MacMismatch);
    let others: Vec<u64> = seqs(&*store).into_iter().filter(|s| *s != kept.seq).collect();
    store
        .apply(&[
            Write::PruneAudit {
                through: kept.seq,
                keep: others,
            },
            Write::AppendAudit(kept),
        ])
        .unwrap();
    vault.verify_audit().unwrap();
    // A second archival, then the first base written back over the second.
    clock.advance(Duration::days(60));
    assert_eq!(denied(vault.authorize(old, "newsletter")), egard::AccessDenied::Expired);
    vault.archive_audit(cutoff(&clock), &mut Vec::new()).unwrap().unwrap();
    vault.verify_audit().unwrap();
    store.apply(&[Write::ReplaceSecret(first_base)]).unwrap();
    assert!(matches!(vault.verify_audit(), Err(Error::AuditBroken { .. })));
    // A forged base (a MAC the key did not make).
    let mut forged: serde_json::Value =
        serde_json::from_slice(&store.secret("audit_base").unwrap().unwrap().wrapped).unwrap();
    forged["kept"] = serde_json::json!(0);
    store
        .apply(&[Write::ReplaceSecret(egard::store::VaultSecret {
            name: "audit_base".into(),
            wrapped: serde_json::to_vec(&forged).unwrap(),
        })])
        .unwrap();
    assert_broken(vault.verify_audit(), AuditBreak::MacMismatch);
}

fn the_audit_base_survives_a_master_key_rotation(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    history(&vault, &clock);
    let mut segment = Vec::new();
    vault.archive_audit(cutoff(&clock), &mut segment).unwrap().unwrap();
    drop(vault);
    let new_key = || MasterKey::from_bytes([9; 32]).with_id(2);
    let rotating = Vault::builder()
        .key_provider(new_key())
        .previous_master_key(MasterKey::from_bytes(KEY))
        .store(store.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    rotating.rotate_master_key().unwrap();
    drop(rotating);
    let rotated = Vault::builder()
        .master_key(new_key())
        .store(store)
        .clock(clock.clone())
        .build()
        .unwrap();
    rotated.verify_audit_with_segments([segment.as_slice()]).unwrap();
}

on_every_backend!(
    restored_rows_or_an_older_base_are_caught,
    the_audit_base_survives_a_master_key_rotation,
    the_rest_serves_what_is_kept,
    deleting_a_kept_or_unarchived_row_is_caught,
    tampered_segments_are_detected,
    a_crash_during_archival_loses_nothing,
    retention_archives_through_the_sweep,
);

mod reopening {
    use super::*;
    on_every_backend_reopening!(
        archival_verifies_before_and_after_and_across_reopening,
        a_replayed_customer_row_is_still_caught,
    );
}

/// A store that runs a hook once, just before the first batch that prunes the audit log: the
/// moment another process's archival can slip in.
struct RaceStore {
    inner: Arc<dyn Store>,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Store for RaceStore {
    fn apply(&self, batch: &[Write]) -> Result<(), egard::StoreError> {
        if batch.iter().any(|w| matches!(w, Write::PruneAudit { .. })) {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        self.inner.apply(batch)
    }
    fn purposes(&self) -> Result<Vec<egard::store::PurposeSnapshot>, egard::StoreError> {
        self.inner.purposes()
    }
    fn customer(&self, id: egard::CustomerId) -> Result<Option<egard::store::CustomerSnapshot>, egard::StoreError> {
        self.inner.customer(id)
    }
    fn field(
        &self,
        customer: egard::CustomerId,
        field: &egard::FieldName,
    ) -> Result<Option<egard::store::StoredField>, egard::StoreError> {
        self.inner.field(customer, field)
    }
    fn fields(&self, customer: egard::CustomerId) -> Result<Vec<egard::store::StoredField>, egard::StoreError> {
        self.inner.fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<egard::CustomerId>, egard::StoreError> {
        self.inner.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: egard::CustomerId) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_for(customer)
    }
    fn audit_trail(&self, customer: egard::CustomerId) -> Result<Vec<egard::store::LatestChange>, egard::StoreError> {
        self.inner.audit_trail(customer)
    }
    fn audit_changes(&self, after: u64, limit: usize) -> Result<Vec<egard::store::LatestChange>, egard::StoreError> {
        self.inner.audit_changes(after, limit)
    }
    fn secret(&self, name: &str) -> Result<Option<egard::store::VaultSecret>, egard::StoreError> {
        self.inner.secret(name)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, egard::StoreError> {
        self.inner.lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<egard::CustomerId>, egard::StoreError> {
        self.inner.find_indexed(field, token)
    }
    fn instance_id(&self) -> usize {
        self.inner.instance_id()
    }
}

/// Two processes archive from the same base at once: one prunes, the other's batch conflicts
/// and deletes nothing; the log verifies with the winner's segment.
fn two_archivals_from_one_base_cannot_both_prune(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let first = Arc::new(process_on(store.clone(), &clock));
    history(&first, &clock);
    let winner_segment = Arc::new(std::sync::Mutex::new(Vec::new()));
    let race = Arc::new(RaceStore {
        inner: store.clone(),
        hook: std::sync::Mutex::new(None),
    });
    let second = process_on(race.clone(), &clock);
    let (winner, segment, at) = (first.clone(), winner_segment.clone(), cutoff(&clock));
    *race.hook.lock().unwrap() = Some(Box::new(move || {
        winner
            .archive_audit(at, &mut *segment.lock().unwrap())
            .unwrap()
            .unwrap();
    }));
    let lost = second.archive_audit(cutoff(&clock), &mut Vec::new());
    assert!(
        matches!(lost, Err(Error::Storage(egard::StoreError::Conflict))),
        "{lost:?}"
    );
    let segment = winner_segment.lock().unwrap().clone();
    first.verify_audit_with_segments([segment.as_slice()]).unwrap();
    second.verify_audit_with_segments([segment.as_slice()]).unwrap();
}

mod racing {
    use super::*;
    on_every_backend!(two_archivals_from_one_base_cannot_both_prune);
}

mod any_input {
    use super::*;
    use proptest::prelude::*;

    /// A vault and a segment of its log, made once.
    fn fixture() -> &'static (Vault, Vec<u8>, egard::SegmentReport) {
        static FIXTURE: std::sync::OnceLock<(Vault, Vec<u8>, egard::SegmentReport)> = std::sync::OnceLock::new();
        FIXTURE.get_or_init(|| {
            let clock = ManualClock::new(t0());
            let vault = vault_on(memory(), &clock);
            history(&vault, &clock);
            let mut segment = Vec::new();
            vault.archive_audit(cutoff(&clock), &mut segment).unwrap().unwrap();
            let report = vault.verify_audit_segment(segment.as_slice()).unwrap();
            (vault, segment, report)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any byte changed, any cut, anything inserted: an error (never a panic), or, when the
        /// change means the same (a hex digit's case), the same segment.
        #[test]
        fn a_changed_segment_never_verifies_as_another(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
            action in 0u8..3,
        ) {
            let (vault, segment, report) = fixture();
            let mut bytes = segment.clone();
            match action {
                0 => {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                1 => bytes.truncate(cut.index(bytes.len())),
                _ => bytes.insert(at.index(bytes.len()), byte),
            }
            if let Ok(got) = vault.verify_audit_segment(bytes.as_slice()) {
                prop_assert_eq!(&got, report);
            }
        }
    }
}
