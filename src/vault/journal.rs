//! Writing to the store together with the audit chain, by group commit.
//!
//! Every change reaches the store as one atomic batch holding the change and its audit
//! events, so neither exists without the other. Access decisions (grants and denials) change
//! nothing but the log; by default they too are written before the call returns.
//!
//! Calls do not write one at a time. Each call hands its writes and events to the journal's
//! queue and waits; one waiting thread at a time (the committer) takes everything queued and
//! writes it: all the queued access events in one store batch, each change in a batch of its
//! own (a change can fail on its own: a stale revision, an erased customer), every batch
//! chained onto the head the store reads under its write lock
//! ([`Store::apply_chained`]). While it writes, the other threads keep deciding and queue
//! behind it, so the next batch holds everything that arrived meanwhile: the rate of audited
//! accesses grows with the threads instead of being bounded by one store write each. A call
//! returns only once the batch holding its events is in the store (fail closed: if that
//! write fails, the call fails and its events, access or change, did not happen). The
//! committer hands the role on as soon as its own call is written, so that a reader does
//! not wait for another thread's change (and its fsync) unless they were queued together.
//!
//! With [`AuditBatching`], access events are not waited for at all: they are queued in
//! memory and written when the queue is full or old enough, or on a flush (changes do not
//! carry them): the hot path then never waits for the store, at the price of losing the
//! queued access events if the process dies (at most 5 × `max_events`: one batch being
//! written and up to four more queued behind it).

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use ring::hmac;

use crate::audit::{self, AuditAnchor, AuditBreak, AuditEvent, Entry};
use crate::crypto::MacKey;
use crate::error::Error;
use crate::store::{Store, StoreError, Write};
use crate::vault::telemetry;

/// How many times a batch is retried when another writer appended to the audit log first.
/// The built-in stores read the head under their write lock and never conflict; a store
/// that keeps [`Store::apply_chained`]'s default races with the other vaults on it, and each
/// retry is one head read.
const RETRIES: usize = 128;

/// How many batches of access events may wait (under [`AuditBatching`]) while one is being
/// written.
const BACKLOG: usize = 4;

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

/// The audit chain's head, the calls waiting to be written, and the committer's turn.
pub(crate) struct Journal {
    /// `None`: the audit key could not be opened, and every write is refused.
    key: Option<MacKey>,
    batching: Option<AuditBatching>,
    queue: Mutex<Queue>,
    /// Signalled when outcomes are published or the committer's role is free.
    turn: Condvar,
}

/// Events with the time of their call, not yet chained.
type Entries = Vec<(Entry, DateTime<Utc>)>;

struct Queue {
    /// The last event this vault wrote (or found when it started).
    head: AuditAnchor,
    /// Access events accepted under batching and not yet submitted, in order.
    pending: Entries,
    since: Option<Instant>,
    /// Calls waiting for the committer, in arrival order.
    waiting: VecDeque<Submission>,
    /// Whether a thread is committing.
    committing: bool,
    next_ticket: u64,
    /// Outcomes the committer published and their callers have not picked up yet.
    done: Vec<(u64, Result<(), Refusal>)>,
    /// The tickets of the calls that took batched access events from `pending` and whose
    /// write has not landed yet (a flush waits for them).
    in_flight: Vec<u64>,
    /// How many times a failed write put batched access events back into `pending`.
    put_back: u64,
}

/// Why a batch was not written.
#[derive(Clone)]
enum Refusal {
    /// The store refused or failed.
    Store(StoreError),
    /// The store's head is behind the last event this vault wrote (or holds another event
    /// there): the log was cut back, and appending would hide the cut.
    CutBack { seq: u64 },
    /// The store panicked during the write (the panic goes on in the thread that called it).
    Panicked,
}

/// A panic caught in a store write, resumed once the journal is consistent again.
type PanicPayload = Box<dyn Any + Send>;

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Store(e) => Error::Storage(e),
            Refusal::CutBack { seq } => Error::AuditBroken {
                seq,
                problem: AuditBreak::Truncated,
            },
            Refusal::Panicked => Error::Storage(StoreError::Unavailable(
                "the store panicked during a write; nothing of this call was acknowledged".into(),
            )),
        }
    }
}

/// One call's share of a commit.
struct Submission {
    ticket: u64,
    writes: Vec<Write>,
    entries: Entries,
    /// How many of `entries`, at the front, are batched access events taken from `pending`
    /// (already reported to telemetry when queued; put back if the write fails).
    carried: usize,
}

impl Submission {
    fn is_change(&self) -> bool {
        !self.writes.is_empty()
    }
}

impl Journal {
    /// A journal continuing after `head`. Without a key (a store with a log but no stored
    /// audit key; a wrong master key fails the build before this), every write is refused with [`Error::Crypto`], so that a
    /// misconfigured vault cannot append events that would break the chain.
    pub(crate) fn new(key: Option<MacKey>, head: Option<AuditEvent>, batching: Option<AuditBatching>) -> Self {
        Self {
            key,
            batching,
            queue: Mutex::new(Queue {
                head: head.map_or(AuditAnchor::EMPTY, |e| AuditAnchor { seq: e.seq, mac: e.mac }),
                pending: Vec::new(),
                since: None,
                waiting: VecDeque::new(),
                committing: false,
                next_ticket: 0,
                done: Vec::new(),
                in_flight: Vec::new(),
                put_back: 0,
            }),
            turn: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue changes only in short sections that cannot panic half-way; the store is
        // written outside the lock.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The audit key, if it could be opened.
    pub(crate) fn key(&self) -> Option<&hmac::Key> {
        self.key.as_ref().map(MacKey::get)
    }

    /// The last event written by (or known to) this vault: the log must still hold it.
    pub(crate) fn written_head(&self) -> AuditAnchor {
        self.lock().head
    }

    /// Writes `writes` with the audit events of `entries`, atomically. Once they are in the
    /// store, a change is synced to disk (outside the committer's role, so that other
    /// threads' batches commit meanwhile) as the store's durability promises: the result of
    /// that sync is in the returned [`Written`], for the caller to report after it applied
    /// the change's effects in memory (the change is in the store either way).
    pub(crate) fn commit(
        &self,
        store: &dyn Store,
        writes: Vec<Write>,
        entries: Vec<Entry>,
        at: DateTime<Utc>,
    ) -> Result<Written, Error> {
        let change = !writes.is_empty();
        self.submit(store, writes, entries, at, 0)?;
        if !change {
            return Ok(Written(Ok(())));
        }
        Ok(Written(
            telemetry::store_call("sync", || store.sync()).map_err(Error::NotDurable),
        ))
    }

    /// Records access decisions: written now, or queued when batching is on and the queue is
    /// neither full nor old.
    pub(crate) fn record(&self, store: &dyn Store, entries: Vec<Entry>, at: DateTime<Utc>) -> Result<(), Error> {
        if let Some(batching) = self.batching {
            if self.key.is_none() {
                return Err(Error::Crypto);
            }
            let mut queue = self.lock();
            let waiting = queue.pending.len() + entries.len();
            let full = waiting >= batching.max_events;
            let old = queue.since.is_some_and(|t| t.elapsed() >= batching.max_delay);
            // While another thread writes, the queue takes up to `BACKLOG` batches more
            // instead of making every reader wait for that write: the next call after it
            // writes them. Beyond that, readers wait (the memory held stays bounded).
            let writing = queue.committing && waiting < batching.max_events.saturating_mul(BACKLOG);
            if !(full || old) || writing {
                queue.since.get_or_insert_with(Instant::now);
                telemetry::audit_entries(&entries);
                queue.pending.extend(entries.into_iter().map(|e| (e, at)));
                return Ok(());
            }
            // This call writes its own events with the oldest batch of the queue (at most
            // `max_events`, so that a change queued behind it waits for one bounded write):
            // if the write fails, its access fails and its events are dropped (fail closed),
            // the queued ones are kept. Any rest of the queue is written by the calls that
            // find it still full.
            drop(queue);
            return self.submit(store, Vec::new(), entries, at, batching.max_events.max(1));
        }
        self.submit(store, Vec::new(), entries, at, usize::MAX)
    }

    /// Writes every access event accepted before this call: those still pending now, and
    /// waits for those another thread's write has taken (written again here if that write
    /// failed and put them back).
    pub(crate) fn flush(&self, store: &dyn Store, at: DateTime<Utc>) -> Result<(), Error> {
        loop {
            let queue = self.lock();
            let taken: Vec<u64> = queue.in_flight.clone();
            let put_back = queue.put_back;
            let pending = !queue.pending.is_empty();
            drop(queue);
            if pending {
                self.submit(store, Vec::new(), Vec::new(), at, usize::MAX)?;
            }
            let mut queue = self.lock();
            while queue.in_flight.iter().any(|t| taken.contains(t)) {
                queue = self.turn.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
            // Nothing failed meanwhile: every event accepted before the call is written.
            // Otherwise some may be pending again: another round writes them.
            if queue.put_back == put_back {
                return Ok(());
            }
        }
    }

    /// Queues a call's writes and events (after up to `carry` of the pending access events,
    /// the oldest) and waits until they are written, committing itself when no other thread
    /// is.
    fn submit(
        &self,
        store: &dyn Store,
        writes: Vec<Write>,
        entries: Vec<Entry>,
        at: DateTime<Utc>,
        carry: usize,
    ) -> Result<(), Error> {
        if self.key.is_none() {
            return Err(Error::Crypto);
        }
        let mut queue = self.lock();
        // A change does not carry the batched access events: its transaction stays small
        // (under load the queue holds thousands), and they are written on their own schedule
        // (full, old, or a flush). Their times say when each access was decided.
        let mut all = if carry >= queue.pending.len() {
            queue.since = None;
            std::mem::take(&mut queue.pending)
        } else {
            let rest = queue.pending.split_off(carry);
            std::mem::replace(&mut queue.pending, rest)
        };
        let carried = all.len();
        all.extend(entries.into_iter().map(|e| (e, at)));
        if all.is_empty() && writes.is_empty() {
            return Ok(());
        }
        let ticket = queue.next_ticket;
        queue.next_ticket = queue.next_ticket.wrapping_add(1);
        if carried > 0 {
            queue.in_flight.push(ticket);
        }
        if !queue.committing && queue.waiting.is_empty() {
            // Nobody else is writing or waiting: write now, without queueing.
            queue.committing = true;
            let known = queue.head;
            drop(queue);
            let mut panicked = None;
            let outcome = self.write(store, known, &writes, all.iter(), &mut panicked);
            let mut queue = self.lock();
            let result = land(&mut queue, &outcome, ticket, all, carried);
            queue.committing = false;
            self.turn.notify_all();
            drop(queue);
            resume(panicked);
            return Ok(result?);
        }
        queue.waiting.push_back(Submission {
            ticket,
            writes,
            entries: all,
            carried,
        });
        loop {
            if let Some(i) = queue.done.iter().position(|(t, _)| *t == ticket) {
                let (_, outcome) = queue.done.swap_remove(i);
                drop(queue);
                return Ok(outcome?);
            }
            if !queue.committing {
                queue.committing = true;
                let mut panicked = None;
                queue = self.lead(queue, store, ticket, &mut panicked);
                queue.committing = false;
                // Whoever waits with work left takes the role on.
                self.turn.notify_all();
                if panicked.is_some() {
                    // Every call of the batch that panicked has its outcome; this thread's
                    // own is dropped with the panic it goes on with: written already, or
                    // taken out of the queue unwritten (its carried events back in front).
                    queue.done.retain(|(t, _)| *t != ticket);
                    if let Some(i) = queue.waiting.iter().position(|s| s.ticket == ticket) {
                        if let Some(own) = queue.waiting.remove(i) {
                            let _ = land(
                                &mut queue,
                                &Err(Refusal::Panicked),
                                own.ticket,
                                own.entries,
                                own.carried,
                            );
                        }
                    }
                    drop(queue);
                    resume(panicked);
                    return Err(Refusal::Panicked.into());
                }
                continue;
            }
            queue = self.turn.wait(queue).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The committer's round: writes what is queued, access events first in one batch, then
    /// each change, publishing each outcome as it lands, until `own` is written; what is left
    /// goes back to the front of the queue for the next committer. A panic in the store
    /// fails the batch it was writing and ends the round (it is resumed by the caller).
    fn lead<'a>(
        &'a self,
        mut queue: MutexGuard<'a, Queue>,
        store: &dyn Store,
        own: u64,
        panicked: &mut Option<PanicPayload>,
    ) -> MutexGuard<'a, Queue> {
        while !queue.done.iter().any(|(t, _)| *t == own) && panicked.is_none() {
            let taken: Vec<Submission> = queue.waiting.drain(..).collect();
            if taken.is_empty() {
                // INVARIANT: `own` was queued before this committer took the role, and every
                // queued submission gets an outcome before it leaves the queue.
                break;
            }
            let (accesses, changes): (Vec<Submission>, Vec<Submission>) =
                taken.into_iter().partition(|s| !s.is_change());
            // One store batch for the access events, one for each change. By default the
            // access events go first: their callers wait for them and each is cheap. Under
            // batching their callers no longer wait (only the one that found the queue full
            // does), so the changes go first: a withdrawal is not held behind a thousand
            // queued reads.
            let mut batches: VecDeque<Vec<Submission>> = changes.into_iter().map(|c| vec![c]).collect();
            if !accesses.is_empty() {
                if self.batching.is_some() {
                    batches.push_back(accesses);
                } else {
                    batches.push_front(accesses);
                }
            }
            while !queue.done.iter().any(|(t, _)| *t == own) && panicked.is_none() {
                let Some(batch) = batches.pop_front() else { break };
                let known = queue.head;
                drop(queue);
                let writes: &[Write] = match batch.as_slice() {
                    [change] => &change.writes,
                    _ => &[],
                };
                let outcome = self.write(
                    store,
                    known,
                    writes,
                    batch.iter().flat_map(|s| s.entries.iter()),
                    panicked,
                );
                queue = self.lock();
                self.publish(&mut queue, batch, outcome);
            }
            // Not ours: back to the front, in their order, for the next committer.
            while let Some(batch) = batches.pop_back() {
                for s in batch.into_iter().rev() {
                    queue.waiting.push_front(s);
                }
            }
        }
        queue
    }

    /// Records the outcome of one store batch for each call in it and wakes the callers.
    fn publish(&self, queue: &mut Queue, subs: Vec<Submission>, outcome: Result<AuditAnchor, Refusal>) {
        // Carried events of failed calls go back in front in their order: land them last first.
        for s in subs.into_iter().rev() {
            let result = land(queue, &outcome, s.ticket, s.entries, s.carried);
            queue.done.push((s.ticket, result));
        }
        self.turn.notify_all();
    }

    /// Chains `entries` onto the store's head and writes them with `writes`, in one batch; on
    /// a conflict with another writer (a store that keeps the racing default of
    /// [`Store::apply_chained`]), tries again. A panic in the store is caught into `panicked`
    /// (and the batch refused), so that the journal can publish every outcome and give the
    /// committer's role back before the panic goes on.
    fn write<'e>(
        &self,
        store: &dyn Store,
        known: AuditAnchor,
        writes: &[Write],
        entries: impl Iterator<Item = &'e (Entry, DateTime<Utc>)> + Clone,
        panicked: &mut Option<PanicPayload>,
    ) -> Result<AuditAnchor, Refusal> {
        let Some(key) = self.key() else {
            // INVARIANT: `submit` refuses every call without a key before queueing it.
            return Err(StoreError::Unavailable("the audit key is not open".into()).into());
        };
        let mut cut_back = None;
        let mut link = |head: AuditAnchor| {
            // The log only grows: a head behind the last event this vault wrote, or another
            // event in its place, means the log was cut back. Chaining on it would cover the
            // cut with new events; refuse instead (fail closed).
            if head.seq < known.seq || (head.seq == known.seq && head.mac != known.mac) {
                cut_back = Some(head.seq.saturating_add(1).min(known.seq));
                return Err(StoreError::Corrupt("the audit log was cut back".into()));
            }
            chain(key, head, entries.clone())
        };
        for _ in 0..RETRIES {
            let attempt = panic::catch_unwind(AssertUnwindSafe(|| {
                telemetry::store_call("apply", || store.apply_chained(writes, &mut link))
            }));
            let attempt = match attempt {
                Ok(attempt) => attempt,
                Err(payload) => {
                    *panicked = Some(payload);
                    return Err(Refusal::Panicked);
                }
            };
            match attempt {
                Ok(head) => return Ok(head),
                Err(StoreError::Conflict) => continue,
                Err(e) => {
                    return Err(match cut_back {
                        Some(seq) => Refusal::CutBack { seq },
                        None => e.into(),
                    });
                }
            }
        }
        Err(StoreError::Conflict.into())
    }
}

/// Settles one call after its batch was written or refused: moves the head on, reports the
/// call's own events, or (fail closed) drops them and queues the batched access events it
/// carried again, in front of the pending ones.
fn land(
    queue: &mut Queue,
    outcome: &Result<AuditAnchor, Refusal>,
    ticket: u64,
    mut entries: Entries,
    carried: usize,
) -> Result<(), Refusal> {
    queue.in_flight.retain(|t| *t != ticket);
    match outcome {
        Ok(head) => {
            if head.seq >= queue.head.seq {
                queue.head = *head;
            }
            // The carried events were reported when they were queued.
            telemetry::audit_entries(entries.get(carried..).unwrap_or_default().iter().map(|(e, _)| e));
            Ok(())
        }
        Err(e) => {
            if carried > 0 {
                entries.truncate(carried);
                entries.append(&mut queue.pending);
                queue.pending = entries;
                queue.since.get_or_insert_with(Instant::now);
                queue.put_back = queue.put_back.wrapping_add(1);
            }
            Err(e.clone())
        }
    }
}

/// Goes on with a panic caught in a store write, if there was one.
fn resume(panicked: Option<PanicPayload>) {
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
}

/// A batch that is in the store, and whether it could be made durable.
///
/// Its effects in memory (the cache, revoked passes) must be applied either way, since the
/// store holds it; then [`Written::durable`] reports the sync ([`Error::NotDurable`]).
#[must_use = "apply the change's effects, then report `durable()`"]
pub(crate) struct Written(Result<(), Error>);

impl Written {
    /// The result of syncing the batch to disk.
    pub(crate) fn durable(self) -> Result<(), Error> {
        self.0
    }
}

/// The events of `entries`, chained one after the other onto `head`.
fn chain<'e>(
    key: &hmac::Key,
    head: AuditAnchor,
    entries: impl Iterator<Item = &'e (Entry, DateTime<Utc>)>,
) -> Result<Vec<AuditEvent>, StoreError> {
    let AuditAnchor { mut seq, mut mac } = head;
    let mut events = Vec::with_capacity(entries.size_hint().0);
    for (e, at) in entries {
        // A stored head can be anything: the end of the sequence is refused, never a panic.
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
        events.push(event);
    }
    Ok(events)
}
