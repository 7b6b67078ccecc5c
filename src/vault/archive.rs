//! The audit log over years: archival of old events into self-verifying segments.
//!
//! Every read appends an event, so a log that is never cut grows without bound. Archival
//! moves the events older than a point out of the store into a **segment**: a file the host
//! keeps, which holds the events, their MACs and the anchors at both ends, and which only
//! the holder of the vault's audit key can make or re-label (see `FORMAT.md`). Then, in one
//! atomic store batch, it deletes the archived events from the store ([`Write::PruneAudit`]),
//! stores the **audit base** (the last archived event's sequence number and MAC, under a MAC
//! of its own) and appends an [`AuditKind::AuditArchived`] event through the normal commit
//! path, so that the archival is itself in the chain. Nothing is deleted before the segment
//! was written; a failure at any step loses no event (see [`Vault::archive_audit`]).
//!
//! # What stays in the store
//!
//! A customer's (or purpose's) stored state is checked on load against its latest
//! state-bearing audit event and the MAC of the event just before it. Archival therefore
//! **keeps**, below the cut, the latest state-bearing event of every customer and every
//! purpose, the event just before each, and the last archived event itself (the base, whose
//! MAC the first event after it chains from). The base record carries a SHA-256 digest over
//! every kept row (its sequence number, its MAC and a MAC of its content), so that
//! [`Vault::verify_audit`] proves the store holds exactly the rows archival kept: a row
//! deleted, edited, or written back from a backup below the base is caught.
//!
//! The log's memory is bounded by the number of customers and purposes (two rows each at
//! most below the base) plus the events since the last archival: with a retention rule
//! ([`VaultBuilder::audit_retention`](crate::VaultBuilder::audit_retention)), by the rate of
//! events times the retention period.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

use super::Vault;
use crate::audit::{self, AuditAnchor, AuditBreak, AuditEvent, AuditKind, Entry};
use crate::error::Error;
use crate::ids::{CustomerId, PurposeId};
use crate::integrity;
use crate::store::{StoreError, VaultSecret, Write};

/// The name of the stored audit base record (a vault secret, stored in clear but MAC'd).
pub(crate) const AUDIT_BASE_SECRET: &str = "audit_base";
/// The prefix of the marker each archival inserts, named after the base it starts from: of
/// two archivals from one base at once (two processes), one wins and the other conflicts.
const ARCHIVAL_MARKER_PREFIX: &str = "audit_archival_from_";

/// The `format` of a segment's header line.
pub const SEGMENT_FORMAT: &str = "egard-audit-segment";
/// The segment format's version.
pub const SEGMENT_VERSION: u32 = 1;

const BASE_DOMAIN: &[u8] = b"egard/audit-base/v1\0";
const HEADER_DOMAIN: &[u8] = b"egard/audit-segment-header/v1\0";
const TRAILER_DOMAIN: &[u8] = b"egard/audit-segment-trailer/v1\0";
const KEPT_DOMAIN: &[u8] = b"egard/audit-kept/v1\0";

/// How many events are read from the store at once.
const PAGE: usize = 1024;

/// How many events one segment holds at most by default (see
/// [`VaultBuilder::audit_segment_events`](crate::VaultBuilder::audit_segment_events)): the
/// store batch that prunes them holds the write lock for a few seconds at most (1.7 s at most
/// on SQLite for 250,000 rows on the machine of BENCHMARKS.md).
pub const DEFAULT_SEGMENT_EVENTS: u64 = 250_000;

/// The point up to which the audit log was archived out of the store: the events up to
/// `seq` (included) are in the host's segment files, but for the few the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedThrough {
    /// The sequence number of the last archived event.
    pub seq: u64,
    /// The time of that event: every event at or before `seq` happened at or before it.
    pub at: DateTime<Utc>,
}

/// What [`Vault::archive_audit`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ArchiveReport {
    /// The first archived event's sequence number.
    pub from_seq: u64,
    /// The last archived event's sequence number (the store's new base).
    pub through_seq: u64,
    /// How many events the segment holds.
    pub events: u64,
    /// How many events at or below `through_seq` the store keeps (see the module docs).
    pub kept: u64,
    /// The anchor the segment starts from: the event just before it (sequence 0 and 32 zero
    /// bytes at the start of the log).
    pub start: AuditAnchor,
    /// The last archived event.
    pub end: AuditAnchor,
    /// The segment's size in bytes.
    pub segment_bytes: u64,
    /// The segment file, for [`Vault::archive_audit_to_dir`].
    pub path: Option<PathBuf>,
}

/// What [`Vault::verify_audit_with_segments`] verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ArchiveVerification {
    /// The anchor the first segment starts from (sequence 0 when the history is complete);
    /// `None` when no segment was given.
    pub history_from: Option<AuditAnchor>,
    /// How many segments were verified.
    pub segments: usize,
    /// How many events they hold together.
    pub archived_events: u64,
    /// The store's own verification.
    pub store: crate::AuditReport,
}

/// What [`Vault::verify_audit_segment`] found in a segment that verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SegmentReport {
    /// The anchor it starts from.
    pub start: AuditAnchor,
    /// Its last event.
    pub end: AuditAnchor,
    /// How many events it holds.
    pub events: u64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// What a long audit operation is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditStage {
    /// Checking the kept rows below the base against its digest.
    CheckingKept,
    /// Verifying the chain in the store.
    Verifying,
    /// Writing events into a segment.
    Archiving,
    /// Deleting the archived events from the store (one batch).
    Pruning,
}

/// Progress of [`Vault::verify_audit_with_progress`] and
/// [`Vault::archive_audit_with_progress`]: reported every 1,024 events and at each stage's
/// start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditProgress {
    /// What is being done.
    pub stage: AuditStage,
    /// How many events this stage has handled so far.
    pub events: u64,
    /// The sequence number reached.
    pub seq: u64,
}

/// The stored audit base, as read back and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Base {
    version: u32,
    /// The last archived event.
    pub(crate) anchor: AuditAnchor,
    /// Its time.
    pub(crate) at: DateTime<Utc>,
    /// How many rows at or below the anchor the store keeps.
    pub(crate) kept: u64,
    /// SHA-256 over the kept rows (see [`kept_digest`]).
    #[serde(with = "crate::audit::mac_hex")]
    pub(crate) kept_digest: [u8; 32],
    /// HMAC under the audit key over everything above and the namespace.
    #[serde(with = "crate::audit::mac_hex")]
    mac: [u8; 32],
}

impl Base {
    fn compute_mac(&self, key: &hmac::Key, namespace: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(BASE_DOMAIN);
        update_lp(&mut ctx, namespace.as_bytes());
        ctx.update(&self.version.to_be_bytes());
        ctx.update(&self.anchor.seq.to_be_bytes());
        ctx.update(&self.anchor.mac);
        ctx.update(&self.at.timestamp_micros().to_be_bytes());
        ctx.update(&self.kept.to_be_bytes());
        ctx.update(&self.kept_digest);
        tag(ctx)
    }
}

fn update_lp(ctx: &mut hmac::Context, part: &[u8]) {
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    ctx.update(&len.to_be_bytes());
    ctx.update(part);
}

fn tag(ctx: hmac::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// The digest of the kept rows: SHA-256 over a domain label, then for each row in ascending
/// order its sequence number (u64 big-endian), its MAC, and its chain MAC computed with 32
/// zero bytes as the previous MAC (a MAC of its content under the audit key).
fn kept_digest<'a>(key: &hmac::Key, rows: impl Iterator<Item = &'a AuditEvent>) -> ([u8; 32], u64) {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(KEPT_DOMAIN);
    let mut n = 0u64;
    for row in rows {
        ctx.update(&row.seq.to_be_bytes());
        ctx.update(&row.mac);
        ctx.update(&audit::chain_mac(key, &[0; 32], row));
        n = n.saturating_add(1);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    (out, n)
}

/// A segment's first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    namespace: String,
    created_at: DateTime<Utc>,
    start: AuditAnchor,
    #[serde(with = "crate::audit::mac_hex")]
    header_mac: [u8; 32],
}

impl Header {
    fn compute_mac(&self, key: &hmac::Key) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(HEADER_DOMAIN);
        update_lp(&mut ctx, self.format.as_bytes());
        ctx.update(&self.version.to_be_bytes());
        update_lp(&mut ctx, self.namespace.as_bytes());
        ctx.update(&self.created_at.timestamp_micros().to_be_bytes());
        ctx.update(&self.start.seq.to_be_bytes());
        ctx.update(&self.start.mac);
        tag(ctx)
    }
}

/// A segment's last line: `{"trailer": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailerLine {
    trailer: Trailer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    end: AuditAnchor,
    events: u64,
    #[serde(with = "crate::audit::mac_hex")]
    segment_mac: [u8; 32],
}

impl Trailer {
    fn compute_mac(&self, key: &hmac::Key, header_mac: &[u8; 32]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(TRAILER_DOMAIN);
        ctx.update(header_mac);
        ctx.update(&self.end.seq.to_be_bytes());
        ctx.update(&self.end.mac);
        ctx.update(&self.events.to_be_bytes());
        tag(ctx)
    }
}

const TRAILER_PREFIX: &str = "{\"trailer\":";

fn bad(what: &'static str) -> Error {
    Error::SegmentInvalid(what)
}

fn io(action: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Io { action, kind: e.kind() }
}

/// What a state-bearing event pins: a customer's or a purpose's latest change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pin {
    Customer(CustomerId),
    Purpose(PurposeId),
}

fn pin_of(e: &AuditEvent) -> Option<Pin> {
    e.state?;
    match (&e.customer, &e.purpose) {
        (Some(c), _) => Some(Pin::Customer(*c)),
        (None, Some(p)) => Some(Pin::Purpose(p.clone())),
        (None, None) => None,
    }
}

/// The rows to keep, as events are seen in ascending order: the latest pinned event per
/// customer or purpose, with the event just before it.
#[derive(Default)]
struct Keeper {
    latest: HashMap<Pin, (AuditEvent, Option<AuditEvent>)>,
    previous: Option<AuditEvent>,
}

impl Keeper {
    fn see(&mut self, e: &AuditEvent) {
        if let Some(pin) = pin_of(e) {
            let before = self.previous.take().filter(|p| Some(p.seq) == e.seq.checked_sub(1));
            self.latest.insert(pin, (e.clone(), before));
        }
        self.previous = Some(e.clone());
    }

    /// The kept rows, ascending, with the last archived event.
    fn finish(self, last: AuditEvent) -> Vec<AuditEvent> {
        let mut rows: BTreeMap<u64, AuditEvent> = BTreeMap::new();
        for (e, before) in self.latest.into_values() {
            if let Some(b) = before {
                rows.insert(b.seq, b);
            }
            rows.insert(e.seq, e);
        }
        rows.insert(last.seq, last);
        rows.into_values().collect()
    }
}

impl Vault {
    /// The stored audit base, checked against its MAC; `None` if the log was never archived.
    pub(crate) fn audit_base(&self) -> Result<Option<Base>, Error> {
        let Some(secret) = self.store.secret(AUDIT_BASE_SECRET)? else {
            return Ok(None);
        };
        let key = self.journal.key().ok_or(Error::Crypto)?;
        let base: Base = serde_json::from_slice(&secret.wrapped)
            .map_err(|_| StoreError::Corrupt("the audit base record does not decode".into()))?;
        if base.version != 1
            || !whole_micros(&base.at)
            || !integrity::macs_equal(&base.compute_mac(key, &self.namespace), &base.mac)
        {
            return Err(Error::AuditBroken {
                seq: base.anchor.seq,
                problem: AuditBreak::MacMismatch,
            });
        }
        Ok(Some(base))
    }

    /// Up to where the audit log was archived out of the store, if it ever was: the events
    /// up to [`ArchivedThrough::seq`] live in the host's segment files (the store keeps only
    /// the few that stored state is bound to). A change-feed consumer whose cursor is below
    /// it has missed the archived changes and should resynchronise from the current state
    /// (for example the [audience](Vault::audience)) rather than replay the feed.
    ///
    /// ```
    /// use egard::{MasterKey, MemoryStore, Vault};
    ///
    /// let vault = Vault::builder().master_key(MasterKey::from_bytes([1; 32])).store(MemoryStore::new()).build()?;
    /// assert_eq!(vault.audit_archived_through()?, None);
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn audit_archived_through(&self) -> Result<Option<ArchivedThrough>, Error> {
        Ok(self.audit_base()?.map(|b| ArchivedThrough {
            seq: b.anchor.seq,
            at: b.at,
        }))
    }

    /// The kept rows at or below the base, checked against its digest.
    pub(crate) fn checked_kept(
        &self,
        key: &hmac::Key,
        base: &Base,
        progress: &mut dyn FnMut(AuditProgress),
    ) -> Result<Vec<AuditEvent>, Error> {
        progress(AuditProgress {
            stage: AuditStage::CheckingKept,
            events: 0,
            seq: 0,
        });
        let mut rows = Vec::new();
        let mut from = 0u64;
        loop {
            let page = self.store.audit_range(from, PAGE)?;
            let full = page.len() == PAGE;
            let mut next = None;
            for e in page {
                if e.seq > base.anchor.seq {
                    next = None;
                    break;
                }
                if rows.last().is_some_and(|l: &AuditEvent| l.seq >= e.seq) {
                    return Err(StoreError::Corrupt("audit events out of order".into()).into());
                }
                next = e.seq.checked_add(1);
                rows.push(e);
            }
            match next {
                Some(n) if full => from = n,
                _ => break,
            }
        }
        let (digest, n) = kept_digest(key, rows.iter());
        if n != base.kept {
            return Err(Error::AuditBroken {
                seq: base.anchor.seq,
                problem: AuditBreak::SequenceGap,
            });
        }
        if !integrity::macs_equal(&digest, &base.kept_digest)
            || rows
                .last()
                .is_none_or(|l| l.seq != base.anchor.seq || !integrity::macs_equal(&l.mac, &base.anchor.mac))
        {
            return Err(Error::AuditBroken {
                seq: base.anchor.seq,
                problem: AuditBreak::MacMismatch,
            });
        }
        progress(AuditProgress {
            stage: AuditStage::CheckingKept,
            events: n,
            seq: base.anchor.seq,
        });
        Ok(rows)
    }

    /// Moves the audit events that happened before `before` (and after the last archival),
    /// at most [`audit_segment_events`](crate::VaultBuilder::audit_segment_events) of them
    /// ([`DEFAULT_SEGMENT_EVENTS`](crate::DEFAULT_SEGMENT_EVENTS) by default: call again while it returns `Some` to archive
    /// more), out of the store into a segment written to `out`, then deletes them from the store
    /// but for the rows that stored state is bound to (see the module docs), in one atomic
    /// batch with the new audit base and an [`AuditKind::AuditArchived`] event. `Ok(None)`
    /// when there is nothing to archive: nothing is written to `out` nor to the store.
    ///
    /// **What the store keeps.** Loading a customer (or a purpose) checks its stored state
    /// against its latest state-bearing audit event and the MAC of the event before it, so the
    /// store keeps, at or below the archived point, each customer's and purpose's latest such
    /// event, the event just before each, and the last archived event (the *base*, which the
    /// next event chains from). The base record, MAC'd under the audit key, holds a digest of
    /// exactly those rows: [`verify_audit`](Vault::verify_audit) then shows any of them
    /// deleted, edited or joined by a row written back from a backup. A customer untouched for
    /// years still loads and authorizes after the archival; its older history is in the
    /// segments. The store's log is thereby bounded by two rows per customer and purpose plus
    /// the events since the archived point (the in-memory store frees the rest).
    ///
    /// The events are verified (their chain from the current base) while they are written;
    /// the kept rows below the current base are checked against its digest first. Nothing
    /// is deleted unless `out` took every byte and flushed: if writing fails, the store is
    /// untouched ([`Error::Io`]). If the process dies after the segment was written but
    /// before the store batch, the store still holds every event and the next archival
    /// writes a segment from the same start again (the first one is then superseded: keep
    /// the one whose end the store's base names). `out` is only flushed: for a file that must
    /// survive a power cut, use [`archive_audit_to_dir`](Vault::archive_audit_to_dir), which
    /// syncs it before anything is deleted.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use egard::{Clock, ManualClock, MasterKey, MemoryStore, Vault};
    ///
    /// let clock = ManualClock::new(Utc::now());
    /// let vault = Vault::builder()
    ///     .master_key(MasterKey::from_bytes([1; 32]))
    ///     .store(MemoryStore::new())
    ///     .clock(clock.clone())
    ///     .build()?;
    /// vault.create_customer()?;
    /// clock.advance(Duration::days(400));
    /// let mut segment = Vec::new();
    /// let report = vault.archive_audit(clock.now() - Duration::days(365), &mut segment)?.unwrap();
    /// assert_eq!(report.from_seq, 1);
    /// assert_eq!(vault.verify_audit_segment(segment.as_slice())?.end, report.end);
    /// vault.verify_audit()?; // the store's chain goes on from the archived end
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn archive_audit(
        &self,
        before: DateTime<Utc>,
        out: &mut dyn std::io::Write,
    ) -> Result<Option<ArchiveReport>, Error> {
        self.archive_audit_with_progress(before, out, &mut |_| {})
    }

    /// [`archive_audit`](Vault::archive_audit), reporting its progress.
    pub fn archive_audit_with_progress(
        &self,
        before: DateTime<Utc>,
        out: &mut dyn std::io::Write,
        progress: &mut dyn FnMut(AuditProgress),
    ) -> Result<Option<ArchiveReport>, Error> {
        let _one = self
            .archive_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(prepared) = self.write_segment(before, u64::MAX, out, progress)? else {
            return Ok(None);
        };
        self.prune(prepared, None, progress).map(Some)
    }

    /// [`archive_audit`](Vault::archive_audit) (one segment, at most
    /// [`audit_segment_events`](crate::VaultBuilder::audit_segment_events) events) into a new
    /// file of `dir`, named
    /// `audit-<from>-<through>.jsonl` with sequence numbers zero-padded to 20 digits (so the
    /// names sort in log order): written to a temporary file, synced, renamed, and the
    /// directory synced, before anything is deleted from the store. `Ok(None)` when there is
    /// nothing to archive (no file is made). A process killed while writing leaves a
    /// `.audit-segment-*.tmp` file, never renamed and never pruned: the next archival into the
    /// directory deletes such files once they are an hour old (a younger one may be another
    /// process's segment being written).
    pub fn archive_audit_to_dir(&self, before: DateTime<Utc>, dir: &Path) -> Result<Option<ArchiveReport>, Error> {
        self.archive_audit_to_dir_with_progress(before, dir, &mut |_| {})
    }

    /// [`archive_audit_to_dir`](Vault::archive_audit_to_dir), reporting its progress.
    pub fn archive_audit_to_dir_with_progress(
        &self,
        before: DateTime<Utc>,
        dir: &Path,
        progress: &mut dyn FnMut(AuditProgress),
    ) -> Result<Option<ArchiveReport>, Error> {
        self.archive_step_to_dir(before, u64::MAX, dir, progress)
    }

    /// Archives every event before `before` into as many segments of `dir` as needed (see
    /// [`audit_segment_events`](crate::VaultBuilder::audit_segment_events)), one store batch
    /// each, in log order: what the retention rule of
    /// [`sweep_retention`](Vault::sweep_retention) and `egard audit archive` run. It stops at
    /// the log's head as it was when it started, so that the archival events it writes itself
    /// (and anything written meanwhile) wait for the next run. An empty list when there is
    /// nothing to archive. On an error, the segments already made are archived and pruned,
    /// and the error is returned.
    pub fn archive_audit_to_dir_all(
        &self,
        before: DateTime<Utc>,
        dir: &Path,
        progress: &mut dyn FnMut(AuditProgress),
    ) -> Result<Vec<ArchiveReport>, Error> {
        self.flush_audit()?;
        let head = self.store.audit_head()?.map_or(0, |e| e.seq);
        let mut reports = Vec::new();
        while let Some(report) = self.archive_step_to_dir(before, head, dir, progress)? {
            let done = report.through_seq >= head;
            reports.push(report);
            if done {
                break;
            }
        }
        Ok(reports)
    }

    /// One segment into `dir`, of events up to `through_max` at most.
    fn archive_step_to_dir(
        &self,
        before: DateTime<Utc>,
        through_max: u64,
        dir: &Path,
        progress: &mut dyn FnMut(AuditProgress),
    ) -> Result<Option<ArchiveReport>, Error> {
        let _one = self
            .archive_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::create_dir_all(dir).map_err(io("create the segment directory"))?;
        remove_stale_temporary_segments(dir);
        let tmp = dir.join(format!(".audit-segment-{}.tmp", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            let file = std::fs::File::create(&tmp).map_err(io("create a segment file"))?;
            let mut w = std::io::BufWriter::new(file);
            let prepared = self.write_segment(before, through_max, &mut w, progress)?;
            let file = w.into_inner().map_err(|e| io("write a segment file")(e.into_error()))?;
            if prepared.is_some() {
                file.sync_all().map_err(io("sync a segment file"))?;
            }
            Ok::<_, Error>(prepared)
        })();
        let prepared = match written {
            Ok(Some(p)) => p,
            Ok(None) => {
                let _ = std::fs::remove_file(&tmp);
                return Ok(None);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let path = dir.join(format!(
            "audit-{:020}-{:020}.jsonl",
            prepared.start.seq.saturating_add(1),
            prepared.end.seq
        ));
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("rename a segment file")(e));
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync the segment directory"))?;
        self.prune(prepared, Some(path), progress).map(Some)
    }

    /// Writes the segment of the events before `before`; `None` if there is none.
    fn write_segment(
        &self,
        before: DateTime<Utc>,
        through_max: u64,
        out: &mut dyn std::io::Write,
        progress: &mut dyn FnMut(AuditProgress),
    ) -> Result<Option<Prepared>, Error> {
        self.flush_audit()?;
        let key = self.journal.key().ok_or(Error::Crypto)?;
        let base = self.audit_base()?;
        let mut keeper = Keeper::default();
        let start = match &base {
            Some(b) => {
                for row in self.checked_kept(key, b, progress)? {
                    keeper.see(&row);
                }
                b.anchor
            }
            None => AuditAnchor { seq: 0, mac: [0; 32] },
        };
        let mut header = Header {
            format: SEGMENT_FORMAT.to_owned(),
            version: SEGMENT_VERSION,
            namespace: self.namespace.to_string(),
            created_at: self.now(),
            start,
            header_mac: [0; 32],
        };
        header.header_mac = header.compute_mac(key);
        let mut bytes = 0u64;
        let mut line = Vec::with_capacity(512);
        let mut emit = |line: &[u8], out: &mut dyn std::io::Write| -> Result<(), Error> {
            out.write_all(line).map_err(io("write a segment"))?;
            bytes = bytes.saturating_add(line.len() as u64);
            Ok(())
        };
        let mut prev = start;
        let mut last: Option<AuditEvent> = None;
        let mut events = 0u64;
        let mut from = start.seq.saturating_add(1);
        'pages: loop {
            let page = self.store.audit_range(from, PAGE)?;
            let full = page.len() == PAGE;
            for e in page {
                if e.at >= before || events >= self.audit_segment_events || e.seq > through_max {
                    break 'pages;
                }
                let next = audit::follow(key, &prev, &e)?;
                if events == 0 {
                    line.clear();
                    serde_json::to_writer(&mut line, &header).map_err(|_| bad("the header does not encode"))?;
                    line.push(b'\n');
                    emit(&line, out)?;
                }
                line.clear();
                serde_json::to_writer(&mut line, &e).map_err(|_| bad("an event does not encode"))?;
                line.push(b'\n');
                emit(&line, out)?;
                keeper.see(&e);
                prev = next;
                events = events.saturating_add(1);
                if events % PAGE as u64 == 0 {
                    progress(AuditProgress {
                        stage: AuditStage::Archiving,
                        events,
                        seq: e.seq,
                    });
                }
                let next = e.seq.checked_add(1);
                last = Some(e);
                match next {
                    Some(n) => from = n,
                    None => break 'pages,
                }
            }
            if !full {
                break;
            }
        }
        let Some(last) = last else {
            return Ok(None);
        };
        let mut trailer = Trailer {
            end: prev,
            events,
            segment_mac: [0; 32],
        };
        trailer.segment_mac = trailer.compute_mac(key, &header.header_mac);
        line.clear();
        serde_json::to_writer(&mut line, &TrailerLine { trailer }).map_err(|_| bad("the trailer does not encode"))?;
        line.push(b'\n');
        emit(&line, out)?;
        out.flush().map_err(io("flush a segment"))?;
        progress(AuditProgress {
            stage: AuditStage::Archiving,
            events,
            seq: prev.seq,
        });
        let at = last.at;
        let kept = keeper.finish(last);
        Ok(Some(Prepared {
            start,
            end: prev,
            at,
            events,
            kept,
            bytes,
        }))
    }

    /// Deletes what a written segment holds from the store, but the kept rows, in one batch
    /// with the new base, the archival's marker and its audit event.
    fn prune(
        &self,
        prepared: Prepared,
        path: Option<PathBuf>,
        progress: &mut dyn FnMut(AuditProgress),
    ) -> Result<ArchiveReport, Error> {
        let key = self.journal.key().ok_or(Error::Crypto)?;
        progress(AuditProgress {
            stage: AuditStage::Pruning,
            events: 0,
            seq: prepared.end.seq,
        });
        let (kept_digest, kept) = kept_digest(key, prepared.kept.iter());
        let mut base = Base {
            version: 1,
            anchor: prepared.end,
            at: prepared.at,
            kept,
            kept_digest,
            mac: [0; 32],
        };
        base.mac = base.compute_mac(key, &self.namespace);
        let encoded = serde_json::to_vec(&base).map_err(|_| bad("the audit base does not encode"))?;
        let from_seq = prepared.start.seq.saturating_add(1);
        let writes = vec![
            Write::PruneAudit {
                through: prepared.end.seq,
                keep: prepared.kept.iter().map(|e| e.seq).collect(),
            },
            Write::ReplaceSecret(VaultSecret {
                name: AUDIT_BASE_SECRET.to_owned(),
                wrapped: encoded,
            }),
            Write::InsertSecret(VaultSecret {
                name: format!("{ARCHIVAL_MARKER_PREFIX}{}", prepared.start.seq),
                wrapped: prepared.end.seq.to_be_bytes().to_vec(),
            }),
        ];
        let entry = Entry::new(AuditKind::AuditArchived, None).detail(format!(
            "seq={from_seq}-{};events={}",
            prepared.end.seq, prepared.events
        ));
        // Once the prune is in the store, archival has succeeded. If syncing it failed, a
        // power cut may undo it, and then the events are still in the store as well as in
        // the segment: nothing is lost, so the report is returned (an error here would tell
        // the host that the segment it was given is not needed).
        let _not_synced = self.commit(writes, vec![entry])?.durable();
        progress(AuditProgress {
            stage: AuditStage::Pruning,
            events: prepared.events.saturating_sub(kept.min(prepared.events)),
            seq: prepared.end.seq,
        });
        Ok(ArchiveReport {
            from_seq,
            through_seq: prepared.end.seq,
            events: prepared.events,
            kept,
            start: prepared.start,
            end: prepared.end,
            segment_bytes: prepared.bytes,
            path,
        })
    }

    /// Verifies a segment file with this vault's audit key: its header (format, version,
    /// this vault's namespace, its MAC), every event's chained MAC from the start anchor
    /// without gaps, and the trailer (the end anchor, the count, the segment MAC). Reads the
    /// file once, line by line.
    ///
    /// An edited or foreign header (another vault's key, another namespace) fails with
    /// [`Error::SegmentInvalid`]; an edited event with [`Error::AuditBroken`] and
    /// [`AuditBreak::MacMismatch`]; a dropped event line with [`AuditBreak::SequenceGap`]
    /// (or, for the last one, [`AuditBreak::Truncated`]); a missing trailer, or anything that
    /// does not parse, with [`Error::SegmentInvalid`]. No input makes it panic.
    pub fn verify_audit_segment(&self, reader: impl std::io::Read) -> Result<SegmentReport, Error> {
        let key = self.journal.key().ok_or(Error::Crypto)?;
        let mut reader = std::io::BufReader::new(reader);
        let mut line = String::new();
        let read = |reader: &mut std::io::BufReader<_>, line: &mut String| -> Result<bool, Error> {
            line.clear();
            let n = reader.read_line(line).map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => bad("a segment line is not UTF-8"),
                kind => Error::Io {
                    action: "read a segment",
                    kind,
                },
            })?;
            Ok(n > 0)
        };
        if !read(&mut reader, &mut line)? {
            return Err(bad("the segment is empty"));
        }
        let header: Header = serde_json::from_str(line.trim_end()).map_err(|_| bad("the header does not parse"))?;
        if header.format != SEGMENT_FORMAT || header.version != SEGMENT_VERSION {
            return Err(bad("not an egard audit segment of a known version"));
        }
        if !integrity::macs_equal(&header.compute_mac(key), &header.header_mac) {
            return Err(bad(
                "the header's MAC does not verify (edited, or written by another vault)",
            ));
        }
        if header.namespace != *self.namespace {
            return Err(bad("the segment belongs to another namespace"));
        }
        let mut prev = header.start;
        let mut events = 0u64;
        let trailer = loop {
            if !read(&mut reader, &mut line)? {
                return Err(bad("the segment ends without its trailer (truncated)"));
            }
            let text = line.trim_end();
            if text.starts_with(TRAILER_PREFIX) {
                let t: TrailerLine = serde_json::from_str(text).map_err(|_| bad("the trailer does not parse"))?;
                break t.trailer;
            }
            let e: AuditEvent = serde_json::from_str(text).map_err(|_| bad("an event line does not parse"))?;
            // The MAC covers the event's content at the microsecond: the line must be exactly
            // what egard wrote for it (no added member, nothing below the microsecond), so
            // that a verified segment carries nothing the MACs do not.
            let canonical = serde_json::to_string(&e).map_err(|_| bad("an event line does not encode"))?;
            if canonical != text || !whole_micros(&e.at) {
                return Err(bad(
                    "an event line is not as written (an added member, or a time below the microsecond)",
                ));
            }
            prev = audit::follow(key, &prev, &e)?;
            events = events.saturating_add(1);
        };
        if !integrity::macs_equal(&trailer.compute_mac(key, &header.header_mac), &trailer.segment_mac) {
            return Err(bad("the trailer's MAC does not verify (edited trailer)"));
        }
        if trailer.end.seq != prev.seq
            || !integrity::macs_equal(&trailer.end.mac, &prev.mac)
            || trailer.events != events
        {
            return Err(Error::AuditBroken {
                seq: prev.seq.saturating_add(1),
                problem: AuditBreak::Truncated,
            });
        }
        if read(&mut reader, &mut line)? {
            return Err(bad("lines after the trailer"));
        }
        if events == 0 {
            return Err(bad("a segment holds at least one event"));
        }
        Ok(SegmentReport {
            start: header.start,
            end: trailer.end,
            events,
            created_at: header.created_at,
        })
    }

    /// Verifies segments and the store together: each segment on its own
    /// ([`verify_audit_segment`](Vault::verify_audit_segment)), each one starting where the
    /// one before ended (give them in log order), the last one ending where the store's base
    /// is, and then the store ([`verify_audit`](Vault::verify_audit)). The first segment may
    /// start after the beginning of the log (if the host disposed of older segments): the
    /// report's [`history_from`](ArchiveVerification::history_from) says where the verified
    /// history starts.
    pub fn verify_audit_with_segments<R: std::io::Read>(
        &self,
        segments: impl IntoIterator<Item = R>,
    ) -> Result<ArchiveVerification, Error> {
        let mut first: Option<AuditAnchor> = None;
        let mut end: Option<AuditAnchor> = None;
        let mut count = 0usize;
        let mut archived_events = 0u64;
        for segment in segments {
            let report = self.verify_audit_segment(segment)?;
            if let Some(end) = end {
                if end.seq != report.start.seq || !integrity::macs_equal(&end.mac, &report.start.mac) {
                    return Err(bad(
                        "the segments do not join: one does not start where the previous ended",
                    ));
                }
            }
            first.get_or_insert(report.start);
            end = Some(report.end);
            count = count.saturating_add(1);
            archived_events = archived_events.saturating_add(report.events);
        }
        let base = self.audit_base()?.map(|b| b.anchor);
        match (end, base) {
            (None, _) => {}
            (Some(end), Some(base)) if end.seq == base.seq && integrity::macs_equal(&end.mac, &base.mac) => {}
            (Some(_), _) => {
                return Err(bad("the last segment does not end at the store's audit base"));
            }
        }
        Ok(ArchiveVerification {
            history_from: first,
            segments: count,
            archived_events,
            store: self.verify_audit()?,
        })
    }

    /// Whether `seq` is at or below the audit base (read once per call, into `cache`).
    pub(crate) fn below_audit_base(&self, seq: u64, cache: &mut Option<Option<Base>>) -> Result<bool, Error> {
        if cache.is_none() {
            *cache = Some(self.audit_base()?);
        }
        Ok(cache
            .as_ref()
            .and_then(Option::as_ref)
            .is_some_and(|b| seq <= b.anchor.seq))
    }

    /// Checks that a row at or below the audit base, served without the event before it, is
    /// one of the kept rows and that the event before it was archived, not deleted: against
    /// the kept rows read once per base and checked against its digest (a deleted kept row
    /// fails that check; a row inserted below the base is not among them).
    pub(crate) fn check_archived_predecessor(
        &self,
        key: &hmac::Key,
        seq: u64,
        base: &Option<Option<Base>>,
    ) -> Result<(), Error> {
        let Some(Some(base)) = base else {
            // INVARIANT: called only after `below_audit_base` found a base.
            return Err(StoreError::Corrupt("no audit base to check a kept row against".into()).into());
        };
        let index = self.kept_index(key, base)?;
        let kept = |s: u64| index.seqs.binary_search(&s).is_ok();
        if !kept(seq) || seq.checked_sub(1).is_some_and(kept) {
            return Err(Error::AuditBroken {
                seq: seq.saturating_sub(1),
                problem: AuditBreak::SequenceGap,
            });
        }
        Ok(())
    }

    /// The kept rows of `base`, checked against its digest: cached until the base changes.
    fn kept_index(&self, key: &hmac::Key, base: &Base) -> Result<Arc<KeptIndex>, Error> {
        let mut cached = self
            .kept_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(index) = cached.as_ref().filter(|i| i.base == base.anchor) {
            return Ok(index.clone());
        }
        let rows = self.checked_kept(key, base, &mut |_| {})?;
        let index = Arc::new(KeptIndex {
            base: base.anchor,
            seqs: rows.iter().map(|e| e.seq).collect(),
        });
        *cached = Some(index.clone());
        Ok(index)
    }

    /// When the retention rule says events are old enough to archive: `now - keep`.
    pub(crate) fn archive_cutoff(&self, keep: Duration) -> DateTime<Utc> {
        self.now().checked_sub_signed(keep).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// Whether a time has nothing below the microsecond (what the MACs cover).
fn whole_micros(at: &DateTime<Utc>) -> bool {
    at.timestamp_subsec_nanos() % 1000 == 0
}

/// The last sequence number an `audit_archived` event's detail (`seq=<from>-<through>;events=<n>`)
/// says was archived.
pub(crate) fn archived_through(detail: &str) -> Result<u64, Error> {
    detail
        .strip_prefix("seq=")
        .and_then(|rest| rest.split(';').next())
        .and_then(|range| range.split_once('-'))
        .and_then(|(_, through)| through.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("an audit_archived event's detail does not decode".into()).into())
}

/// The sequence numbers of the rows a store keeps at or below an audit base, in ascending
/// order, read and checked against the base's digest.
pub(crate) struct KeptIndex {
    base: AuditAnchor,
    seqs: Vec<u64>,
}

/// A segment written, waiting for its prune.
struct Prepared {
    start: AuditAnchor,
    end: AuditAnchor,
    at: DateTime<Utc>,
    events: u64,
    kept: Vec<AuditEvent>,
    bytes: u64,
}

/// How old a temporary segment file must be before an archival deletes it as left by a crash.
const STALE_TEMPORARY_SEGMENT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes the `.audit-segment-*.tmp` files of `dir` older than [`STALE_TEMPORARY_SEGMENT`]:
/// segments whose writer died before renaming them (never pruned, so never needed). Best
/// effort: a file that cannot be read or deleted is left.
fn remove_stale_temporary_segments(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(".audit-segment-") && name.ends_with(".tmp")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_TEMPORARY_SEGMENT);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
