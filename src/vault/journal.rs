//! Writing to the store together with the audit chain.
//!
//! Every change reaches the store as one atomic batch holding the change and its audit
//! events, so neither exists without the other. Access decisions (grants and denials) change
//! nothing but the log; by default they too are written before the call returns. With
//! [`AuditBatching`], they are chained in memory and written with the next change, or when
//! the batch is full or old enough, in one transaction: the hot path then no longer waits for
//! the disk, at the price of losing at most one batch of access events if the process dies.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use ring::hmac;

use crate::audit::{self, AuditEvent, Entry};
use crate::crypto::MacKey;
use crate::error::Error;
use crate::store::{Store, StoreError, Write};
use crate::vault::telemetry;

/// How many times a batch is retried when another writer appended to the audit log first.
/// Several processes on one database (PostgreSQL) share one chain: a process whose head is
/// stale loses each race to a busy peer with some probability, and 16 tries were measured to
/// run out under two saturating vaults (up to 28 needed); each retry is one head read.
const RETRIES: usize = 128;

/// Group commit of access events; see [`VaultBuilder::audit_batching`].
///
/// [`VaultBuilder::audit_batching`]: crate::VaultBuilder::audit_batching
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditBatching {
    /// Write the pending access events once this many are waiting.
    pub max_events: usize,
    /// Write them once the oldest has waited this long (checked on each call).
    pub max_delay: StdDuration,
}

/// The audit chain's head and the access events not yet written.
pub(crate) struct Journal {
    /// `None`: the audit key could not be opened, and every write is refused.
    key: Option<MacKey>,
    batching: Option<AuditBatching>,
    state: Mutex<State>,
}

struct State {
    /// Sequence number and MAC of the last event in the store.
    head: (u64, [u8; 32]),
    /// Access events waiting to be written, in order, not yet chained.
    pending: Vec<(Entry, DateTime<Utc>)>,
    since: Option<Instant>,
}

impl Journal {
    /// A journal continuing after `head`. Without a key (a store with a log but no stored
    /// audit key; a wrong master key fails the build before this), every write is refused with [`Error::Crypto`], so that a
    /// misconfigured vault cannot append events that would break the chain.
    pub(crate) fn new(key: Option<MacKey>, head: Option<AuditEvent>, batching: Option<AuditBatching>) -> Self {
        Self {
            key,
            batching,
            state: Mutex::new(State {
                head: head.map(|e| (e.seq, e.mac)).unwrap_or((0, [0; 32])),
                pending: Vec::new(),
                since: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state changes only after the store accepted a batch; a panic elsewhere leaves it
        // consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The audit key, if it could be opened.
    pub(crate) fn key(&self) -> Option<&hmac::Key> {
        self.key.as_ref().map(MacKey::get)
    }

    /// The sequence number of the last event written by (or known to) this vault.
    pub(crate) fn written_seq(&self) -> u64 {
        self.lock().head.0
    }

    /// Writes `writes` with the audit events of `entries`, atomically, after any pending
    /// access events.
    pub(crate) fn commit(
        &self,
        store: &dyn Store,
        writes: Vec<Write>,
        entries: Vec<Entry>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut state = self.lock();
        self.write_with_pending(&mut state, store, writes, entries, at)
    }

    /// Records access decisions: written now, or queued when batching is on and the queue is
    /// neither full nor old.
    pub(crate) fn record(&self, store: &dyn Store, entries: Vec<Entry>, at: DateTime<Utc>) -> Result<(), Error> {
        let mut state = self.lock();
        if let Some(batching) = self.batching {
            let full = state.pending.len() + entries.len() >= batching.max_events;
            let old = state.since.is_some_and(|t| t.elapsed() >= batching.max_delay);
            if !(full || old) {
                state.since.get_or_insert_with(Instant::now);
                telemetry::audit_entries(&entries);
                state.pending.extend(entries.into_iter().map(|e| (e, at)));
                return Ok(());
            }
        }
        self.write_with_pending(&mut state, store, Vec::new(), entries, at)
    }

    /// Writes every pending access event now.
    pub(crate) fn flush(&self, store: &dyn Store, at: DateTime<Utc>) -> Result<(), Error> {
        let mut state = self.lock();
        if state.pending.is_empty() {
            return Ok(());
        }
        self.write_with_pending(&mut state, store, Vec::new(), Vec::new(), at)
    }

    /// Writes the pending access events, then `writes` with the events of `entries`, in one
    /// batch. On failure the call's own events are dropped with it (fail closed: its access
    /// or change did not happen) and the earlier pending ones stay queued.
    fn write_with_pending(
        &self,
        state: &mut State,
        store: &dyn Store,
        writes: Vec<Write>,
        entries: Vec<Entry>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut batch = std::mem::take(&mut state.pending);
        let pending = batch.len();
        batch.extend(entries.into_iter().map(|e| (e, at)));
        match self.write(state, store, writes, &batch) {
            Ok(()) => {
                state.since = None;
                // The queued events were reported when they were queued.
                telemetry::audit_entries(batch[pending..].iter().map(|(e, _)| e));
                Ok(())
            }
            Err(e) => {
                batch.truncate(pending);
                state.pending = batch;
                Err(e)
            }
        }
    }

    /// Chains `entries` after the head and applies them with `writes`; on a conflict with
    /// another writer, re-reads the head and tries again.
    fn write(
        &self,
        state: &mut State,
        store: &dyn Store,
        mut writes: Vec<Write>,
        entries: &[(Entry, DateTime<Utc>)],
    ) -> Result<(), Error> {
        let Some(key) = self.key() else {
            return Err(Error::Crypto);
        };
        let base = writes.len();
        for _ in 0..RETRIES {
            let (mut seq, mut mac) = state.head;
            for (e, at) in entries {
                // A stored head can be anything: the end of the sequence is refused, never a
                // panic.
                seq = seq
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Corrupt("the audit sequence number is at its maximum".into()))?;
                let mut event = AuditEvent {
                    seq,
                    at: *at,
                    kind: e.kind,
                    customer: e.customer,
                    purpose: e.purpose.clone(),
                    field: e.field.clone(),
                    detail: e.detail.clone(),
                    state: e.state,
                    actor: e.actor.clone(),
                    mac: [0; 32],
                };
                event.mac = audit::chain_mac(key, &mac, &event);
                mac = event.mac;
                writes.push(Write::AppendAudit(event));
            }
            match telemetry::store_call("apply", || store.apply(&writes)) {
                Ok(()) => {
                    state.head = (seq, mac);
                    return Ok(());
                }
                Err(StoreError::Conflict) if !entries.is_empty() => {
                    writes.truncate(base);
                    state.head = store.audit_head()?.map(|e| (e.seq, e.mac)).unwrap_or((0, [0; 32]));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }
}
