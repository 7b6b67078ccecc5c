//! Pluggable storage.
//!
//! A [`Store`] keeps what the vault hands it: purpose definitions, customer records, wrapped
//! data keys, sealed field envelopes, consent records and audit events. It only ever sees
//! ciphertext and identifiers, never a value of personal data in clear.
//!
//! The trait is small on purpose: reads are one method each, and every change arrives as a
//! batch of [`Write`]s that the backend applies atomically (all or nothing). That is how an
//! erasure, or a consent together with its audit event, can never be half-written.
//!
//! Backends: [`MemoryStore`] (tests, ephemeral), `SqliteStore` (feature `sqlite`, the
//! embedded default), `PostgresStore` (feature `postgres`). A third-party backend can run the
//! same conformance suite as the built-in ones (feature `conformance`).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{POSTGRES_SCHEMA_VERSION, PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SQLITE_SCHEMA_VERSION, SqliteOptions, SqliteStore};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditAnchor, AuditEvent};
use crate::consent::Consent;
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};
use crate::purpose::Purpose;

/// A storage failure. Messages describe the failure, never stored values (which are
/// ciphertext and identifiers anyway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A write conflicted with a concurrent one (for example two writers appending the same
    /// audit sequence number); the batch was not applied and may be retried.
    #[error("conflicting concurrent write")]
    Conflict,
    /// A conditional write found the record at another revision than the one it was based on
    /// (another writer changed the customer or purpose first); the batch was not applied.
    /// Read the record again and redo the change.
    #[error("the record changed since it was read")]
    Stale,
    /// The batch referred to a customer that does not exist (or was erased).
    #[error("customer not found")]
    MissingCustomer,
    /// Stored data could not be decoded: it was corrupted or written by something else.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The stored schema is newer than this release understands; refusing to downgrade.
    #[error("stored schema version {found} is newer than the supported version {supported}")]
    SchemaTooNew {
        /// Version found in the store.
        found: u32,
        /// Newest version this release supports.
        supported: u32,
    },
    /// The backend is unreachable or failed; the batch was not applied.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// An [`IndexField`](Write::IndexField) gave a lookup token that another customer's field
    /// holds: one value belongs to at most one live customer. The batch was not applied.
    #[error("the value is already indexed for another customer")]
    Duplicate,
}

/// What [`Store::apply_chained`] calls with the head of the audit log (its last event's
/// sequence number and MAC) to get the events to append after it.
pub type ChainLink<'a> = dyn FnMut(AuditAnchor) -> Result<Vec<AuditEvent>, StoreError> + 'a;

/// The blind-index token of a looked-up field: HMAC-SHA256 of the normalised value under the
/// lookup's key, which the store never sees. Never the value, never a reversible form.
pub type LookupToken = [u8; 32];

/// A lookup definition as stored: the field, its normaliser and the MAC that binds both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLookup {
    /// The looked-up field.
    pub field: FieldName,
    /// The normaliser's stable code (`email`, `phone`, `exact`).
    pub normalizer: String,
    /// The MAC of the definition.
    #[serde(with = "crate::audit::mac_hex")]
    pub mac: RecordMac,
}

/// A MAC that authenticates a stored record: HMAC-SHA256 under the vault's record key, which
/// the store never sees. The store keeps it next to the record and hands it back as it was.
pub type RecordMac = [u8; 32];

/// A customer as stored: an id, some dates and flags, no personal data; and the MAC that
/// binds them and every other record of the customer.
///
/// `rev` counts the changes made to the customer (1 when created) and `mac` authenticates
/// the customer's whole state at that revision: this record, the MACs of the customer's
/// consent records and objections, the versions of their fields and data keys. The audit
/// event of every change carries the new `mac`, so that an older state written back is
/// caught while the log is whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// The customer.
    pub id: CustomerId,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
    /// Whether processing is restricted (Art. 18).
    pub restricted: bool,
    /// When the customer was erased (a tombstone), if ever.
    pub erased_at: Option<DateTime<Utc>>,
    /// The revision of the customer's state: 1 when created, one more with every change.
    pub rev: u64,
    /// How many encryptions the customer's current data key has made or has been reserved
    /// for: a data key is never used past the vault's encryption budget (see
    /// [`ENCRYPTION_BUDGET`](crate::ENCRYPTION_BUDGET)).
    pub key_uses: u64,
    /// The customer's state MAC at this revision.
    #[serde(with = "crate::audit::mac_hex")]
    pub mac: RecordMac,
}

/// A stored record with the MAC that authenticates it (its identity and its whole content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticated<T> {
    /// The record.
    pub record: T,
    /// Its MAC.
    #[serde(with = "crate::audit::mac_hex")]
    pub mac: RecordMac,
}

/// A purpose definition as stored: the definition, its revision (1 when first defined, one
/// more with every redefinition) and the MAC that binds both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPurpose {
    /// The definition.
    pub purpose: Purpose,
    /// Its revision.
    pub rev: u64,
    /// The MAC of the definition at this revision.
    #[serde(with = "crate::audit::mac_hex")]
    pub mac: RecordMac,
}

/// An audit event with the MAC of the event just before it (`None` when that event is
/// missing), so that the event's own MAC can be checked without reading the whole chain.
///
/// A customer or purpose snapshot holds the latest audit event that recorded its state, read
/// in the same consistent snapshot as the state itself; [`Store::audit_changes`] returns the
/// change feed's events this way too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestChange {
    /// The event; its `state` is the MAC of the state it recorded.
    pub event: AuditEvent,
    /// The MAC of the event at `event.seq - 1`.
    pub prev_mac: Option<RecordMac>,
}

/// A purpose as read back: the stored definition and the latest audit event that recorded
/// one of its definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeSnapshot {
    /// The stored definition.
    pub stored: StoredPurpose,
    /// The latest `PurposeDefined` event of this purpose (with a `state`), if any.
    pub latest_change: Option<LatestChange>,
}

/// A customer's data key, wrapped under a master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Whose key.
    pub customer: CustomerId,
    /// The data key's version (field envelopes name it).
    pub version: u32,
    /// The wrapped-key envelope (it names the master key id).
    pub wrapped: Vec<u8>,
}

/// A vault-level secret (such as the audit chain's key), stored only wrapped under a master
/// key. The vault writes it once per store and re-wraps it on rotation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultSecret {
    /// Which secret (for example `audit`).
    pub name: String,
    /// The wrapped-key envelope (it names the master key id).
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for VaultSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSecret")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An objection (Art. 21) by a customer to processing for a purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objection {
    /// Who objected.
    pub customer: CustomerId,
    /// To which purpose.
    pub purpose: PurposeId,
    /// When.
    pub at: DateTime<Utc>,
}

/// One change; a batch of them is applied atomically by [`Store::apply`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Write {
    /// Inserts a purpose definition (`expected_rev: None`; [`StoreError::Stale`] if one with
    /// the same id exists) or replaces the one stored at revision `expected_rev`
    /// ([`StoreError::Stale`] if the stored revision is another, or none is stored).
    PutPurpose {
        /// The new definition.
        stored: StoredPurpose,
        /// The revision it replaces, `None` for a first definition.
        expected_rev: Option<u64>,
    },
    /// Inserts a new customer (fails with [`StoreError::Conflict`] if the id exists).
    InsertCustomer(CustomerRecord),
    /// Replaces a customer's record if its stored revision (as left by earlier writes of the
    /// batch) is `expected_rev`, otherwise fails with [`StoreError::Stale`]. An erasure mark
    /// is never cleared: a stored `erased_at` is kept whatever the new record says.
    UpdateCustomer {
        /// The new record (same id).
        record: CustomerRecord,
        /// The revision it replaces.
        expected_rev: u64,
    },
    /// Inserts or replaces a wrapped data key of an existing customer.
    PutKey(WrappedKey),
    /// Inserts or replaces a sealed field of an existing customer.
    PutField {
        /// The customer.
        customer: CustomerId,
        /// The field.
        field: FieldName,
        /// The write version the envelope is bound to (the customer's revision it was
        /// written at).
        version: u64,
        /// The field envelope (ciphertext).
        envelope: Vec<u8>,
        /// When it was written.
        at: DateTime<Utc>,
    },
    /// Deletes a wrapped data key of a customer, if present (the old key of a key rotation:
    /// crypto-shredding of what it sealed).
    DeleteKey {
        /// The customer.
        customer: CustomerId,
        /// The key's version.
        version: u32,
    },
    /// Deletes a sealed field, if present.
    DeleteField {
        /// The customer.
        customer: CustomerId,
        /// The field.
        field: FieldName,
    },
    /// Inserts a consent record, or replaces the record with the same id.
    PutConsent(Authenticated<Consent>),
    /// Records an objection.
    PutObjection(Authenticated<Objection>),
    /// Crypto-shredding: deletes every wrapped key and sealed field of the customer and marks
    /// the customer record erased at the given time (kept if already set). Consents,
    /// objections and audit events stay (they hold no personal data).
    EraseCustomer {
        /// The customer.
        customer: CustomerId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Appends an audit event. Fails with [`StoreError::Conflict`] if an event with the
    /// same sequence number exists.
    AppendAudit(AuditEvent),
    /// Inserts a vault secret. Fails with [`StoreError::Conflict`] if a secret with the same
    /// name exists (stored or earlier in the same batch): of two vaults installing one at
    /// once, one wins and the other reads the winner's.
    InsertSecret(VaultSecret),
    /// Replaces a vault secret (re-wrapped on rotation), or inserts it if absent.
    ReplaceSecret(VaultSecret),
    /// Sets (or with `None` clears) the lookup token of a stored field of an existing,
    /// unerased customer. Fails with [`StoreError::Duplicate`] if another customer's field of
    /// the same name holds the same token (stored, or set earlier in the batch; a field
    /// deleted or a customer erased earlier in the batch no longer holds one). Rewriting the
    /// field ([`Write::PutField`]) keeps its token; deleting it or erasing the customer drops it.
    /// A token for a field the customer does not have is ignored.
    IndexField {
        /// The customer.
        customer: CustomerId,
        /// The field.
        field: FieldName,
        /// The token, or `None` to take the field out of the index.
        token: Option<LookupToken>,
    },
    /// Inserts a lookup definition. Fails with [`StoreError::Conflict`] if the field has one
    /// (stored or earlier in the same batch): of two vaults defining a lookup on one field at
    /// once, one wins and the other reads the winner's (a definition is never replaced, so
    /// two vaults never index one field with two normalisers).
    PutLookup(StoredLookup),
    /// Deletes every audit event with a sequence number up to `through` (included) whose
    /// sequence number is not in `keep`, and nothing else: the events after `through` and
    /// the ones kept stay exactly as they were. Sequence numbers that are not stored are
    /// ignored. Written by [`Vault::archive_audit`](crate::Vault::archive_audit), in one
    /// batch with the record of what was archived and the event that records the archival,
    /// only after the events were written to a segment file.
    ///
    /// A store answers reads about the remaining events as it did before (a customer's or
    /// purpose's latest change is the highest remaining event that qualifies). The built-in
    /// SQL stores delete in the batch's one transaction, however many rows that is (millions
    /// of rows hold the write lock for seconds: archive in steps if that matters); the
    /// in-memory store frees the events' memory.
    PruneAudit {
        /// The highest sequence number deleted.
        through: u64,
        /// Sequence numbers up to `through` that stay, any order.
        keep: Vec<u64>,
    },
}

impl Write {
    /// The customer this write must find stored, and whether it is refused once that customer
    /// was erased: `Some((customer, refused_once_erased))`, or `None` for writes that name no
    /// existing customer. This is the [`Store`] contract's rule for
    /// [`StoreError::MissingCustomer`], for backends to apply.
    pub fn target_customer(&self) -> Option<(CustomerId, bool)> {
        match self {
            Write::PutKey(k) => Some((k.customer, true)),
            Write::PutField { customer, .. } | Write::IndexField { customer, .. } => Some((*customer, true)),
            Write::UpdateCustomer { record, .. } => Some((record.id, false)),
            Write::DeleteKey { customer, .. }
            | Write::DeleteField { customer, .. }
            | Write::EraseCustomer { customer, .. } => Some((*customer, false)),
            Write::PutConsent(c) => Some((c.record.customer, false)),
            Write::PutObjection(o) => Some((o.record.customer, false)),
            Write::PutPurpose { .. }
            | Write::InsertCustomer(_)
            | Write::AppendAudit(_)
            | Write::InsertSecret(_)
            | Write::ReplaceSecret(_)
            | Write::PutLookup(_)
            | Write::PruneAudit { .. } => None,
        }
    }
}

/// A sealed field as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredField {
    /// The field.
    pub field: FieldName,
    /// The write version its envelope is bound to.
    pub version: u64,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// When it was last written.
    pub written_at: DateTime<Utc>,
}

/// A stored field without its envelope: its name, write version and time, as the customer's
/// state binds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldVersion {
    /// The field.
    pub field: FieldName,
    /// The write version its envelope is bound to.
    pub version: u64,
    /// When it was last written.
    pub written_at: DateTime<Utc>,
    /// Its lookup token, if the field is indexed.
    pub token: Option<LookupToken>,
}

/// Everything stored about one customer but the envelopes, read in one consistent snapshot
/// (one round trip where it matters).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSnapshot {
    /// The customer record.
    pub record: CustomerRecord,
    /// The wrapped data keys, any order.
    pub keys: Vec<WrappedKey>,
    /// Every consent record, history included, any order.
    pub consents: Vec<Authenticated<Consent>>,
    /// Every objection, any order.
    pub objections: Vec<Authenticated<Objection>>,
    /// Every stored field's name and version, any order.
    pub fields: Vec<FieldVersion>,
    /// The latest audit event about this customer that carries a `state`, if any.
    pub latest_change: Option<LatestChange>,
}

/// A storage backend. Implementations must be safe to share between threads.
///
/// The store is trusted with bytes, never with decisions: the vault authenticates every record
/// that decides an access (see [`RecordMac`]) and checks what it reads back, so a store that
/// loses, alters or replays records can make operations fail, but never grant one.
///
/// Contract, checked by the conformance suite:
/// - [`apply`](Store::apply) is atomic: after an error, none of the batch is visible;
///   after success, all of it is, to every later read (also after a crash and reopen for a
///   durable backend).
/// - Writes naming a customer that was never inserted fail with
///   [`StoreError::MissingCustomer`], except `AppendAudit`, `PruneAudit`, `PutPurpose` and the
///   secrets.
///   Once a customer is erased (also earlier in the same batch), `PutKey` and `PutField` fail
///   the same way; consents, objections, record updates, field deletions and a repeated
///   erasure (which keeps the first `erased_at`) are still accepted, and no record update
///   clears `erased_at`.
/// - Conditional writes (`UpdateCustomer`, `PutPurpose`) compare the stored revision, as
///   left by earlier writes of the same batch, and fail with [`StoreError::Stale`] on a
///   mismatch.
/// - A duplicate `InsertCustomer` id or `AppendAudit` sequence number, stored or earlier in
///   the same batch, fails with [`StoreError::Conflict`]; so does an `InsertSecret` whose
///   name exists, stored or earlier in the same batch.
/// - Every record, MAC and revision reads back exactly as written.
/// - A customer snapshot (and the list of purposes) is read in one consistent snapshot,
///   together with its latest change: the audit event with the highest sequence number that
///   names the customer (for a purpose: names the purpose and no customer) and carries a
///   `state`, and the MAC of the event before it.
/// - Reads of missing things are `Ok(None)` or empty, not errors.
/// - [`consent_candidates`](Store::consent_candidates) proposes at least every customer, not
///   erased, holding a current record (neither withdrawn nor superseded) for the purpose under
///   a notice version in the range asked, in ascending id order, each once; it may propose
///   more (the vault confirms every candidate), never fewer.
/// - [`audit_changes`](Store::audit_changes) returns exactly the events whose kind
///   [is a change](crate::AuditKind::is_change), after the given sequence number, ascending,
///   each with the MAC of the event before it; [`audit_trail`](Store::audit_trail) returns
///   exactly the events of [`audit_for`](Store::audit_for), each with the MAC of the event
///   before it (`None` for the first event of the log).
/// - An audit event's `actor` reads back as written (`None` as `None`).
/// - [`apply_chained`](Store::apply_chained) is atomic like `apply`, hands `link` the head of
///   the log as it stands inside the write, and returns the new head.
pub trait Store: Send + Sync + 'static {
    /// Applies a batch of writes atomically.
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError>;

    /// Applies `batch` together with the audit events that `link` chains onto the log's head,
    /// atomically, and returns the new head.
    ///
    /// `link` gets the head (the sequence number and MAC of the last event; sequence number 0
    /// and 32 zero bytes for an empty log) and returns the events to append after it, numbered
    /// on from the head, in order. It may be called more than once (a backend that retries
    /// the write calls it again; only the last call's events are written) and its error
    /// aborts the write.
    ///
    /// This is how the vault appends to the log. A backend shared by several vaults or
    /// processes should read the head under a lock that it holds until the batch commits:
    /// concurrent writers then queue for the next sequence number instead of racing for it,
    /// and none ever fails with [`StoreError::Conflict`] for it. The built-in stores do (the
    /// PostgreSQL store with a transaction-scoped advisory lock, SQLite with its write lock,
    /// the memory store under its own). The default reads the head with
    /// [`audit_head`](Store::audit_head), then calls [`apply`](Store::apply) with the batch and
    /// the events: when another writer appended in between, `apply` fails with `Conflict`
    /// (duplicate sequence number) and the vault calls this again.
    fn apply_chained(&self, batch: &[Write], link: &mut ChainLink<'_>) -> Result<AuditAnchor, StoreError> {
        let head = self
            .audit_head()?
            .map_or(AuditAnchor::EMPTY, |e| AuditAnchor { seq: e.seq, mac: e.mac });
        let events = link(head)?;
        let new_head = events.last().map_or(head, |e| AuditAnchor { seq: e.seq, mac: e.mac });
        let mut all = Vec::with_capacity(batch.len() + events.len());
        all.extend_from_slice(batch);
        all.extend(events.into_iter().map(Write::AppendAudit));
        self.apply(&all)?;
        Ok(new_head)
    }

    /// Makes every batch written so far with [`apply_chained`](Store::apply_chained) durable
    /// to the level the backend promises for changes. A backend may commit a chained batch
    /// without waiting for the disk (so that the next batch need not wait for that wait) and
    /// sync here instead: the vault calls `sync` after a change's batch is written and before
    /// it acknowledges the change, without holding up other calls. The default does nothing
    /// (a backend whose `apply_chained` is durable when it returns). SQLite with
    /// [`Durability::Changes`] syncs its write-ahead log here.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Every purpose definition, each with its latest change.
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError>;

    /// Everything about one customer but their sealed envelopes; `None` if never created.
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError>;

    /// One sealed field.
    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError>;

    /// Every sealed field of a customer, any order.
    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError>;

    /// The revision and state MAC of a customer's stored record, without the rest of the
    /// snapshot: a vault with a cache time-to-live asks this when its copy is old, and reads
    /// the whole snapshot only when it changed. Every change writes the customer's record at
    /// a new revision with a new MAC, so an unchanged pair means an unchanged state (a store
    /// that answers wrongly can only keep the vault on the state it checked last, as one that
    /// writes the old rows back could). The default reads the whole snapshot; a backend
    /// should answer from the customer's row alone.
    fn customer_revision(&self, id: CustomerId) -> Result<Option<(u64, RecordMac)>, StoreError> {
        Ok(self.customer(id)?.map(|s| (s.record.rev, s.record.mac)))
    }

    /// The ids of every customer (erased ones included), any order.
    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError>;

    /// The audit event with the highest sequence number.
    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError>;

    /// Up to `limit` audit events with sequence numbers from `from_seq` on, ascending.
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;

    /// Every audit event about one customer, ascending.
    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError>;

    /// One vault secret by name.
    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError>;

    /// Candidates for the audience (or the re-consent list) of `purpose`: up to `limit`
    /// customers with ids greater than `after` (from the first with `None`), in ascending id
    /// order, each once, among which must be every customer who is not erased and holds a
    /// record for `purpose` that is neither withdrawn nor superseded, given under a notice
    /// version in `notice_versions` (bounds included).
    ///
    /// The store only proposes: the vault checks every candidate against its authenticated
    /// state before it counts, so a backend may propose more (the default proposes every
    /// customer, a page at a time, which is correct but reads every customer's id for each
    /// page). A backend should answer from an index, as the built-in ones do.
    fn consent_candidates(
        &self,
        purpose: &PurposeId,
        notice_versions: std::ops::RangeInclusive<u32>,
        after: Option<CustomerId>,
        limit: usize,
    ) -> Result<Vec<CustomerId>, StoreError> {
        let _ = (purpose, notice_versions);
        let mut ids = self.customer_ids()?;
        ids.retain(|id| after.is_none_or(|a| *id > a));
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids)
    }

    /// Up to `limit` audit events with sequence numbers greater than `after_seq`, ascending,
    /// of the kinds that [are changes](crate::AuditKind::is_change), each with the MAC of the
    /// event just before it (for the vault to check the event's own MAC).
    ///
    /// The default pages through [`audit_range`](Store::audit_range) and filters (reading
    /// every event from `after_seq` on); a backend should answer from an index, as the
    /// built-in ones do.
    fn audit_changes(&self, after_seq: u64, limit: usize) -> Result<Vec<LatestChange>, StoreError> {
        const PAGE: usize = 1024;
        let mut out = Vec::new();
        // The event at `after_seq` is read too: its MAC is the one before the first change.
        let mut from = after_seq;
        let mut prev: Option<(u64, RecordMac)> = None;
        while out.len() < limit {
            let page = self.audit_range(from, PAGE)?;
            let full = page.len() == PAGE;
            let mut next = None;
            for event in page {
                next = event.seq.checked_add(1);
                let (seq, mac) = (event.seq, event.mac);
                if seq > after_seq && event.kind.is_change() && out.len() < limit {
                    let prev_mac = prev.filter(|(s, _)| Some(*s) == seq.checked_sub(1)).map(|(_, m)| m);
                    out.push(LatestChange { event, prev_mac });
                }
                prev = Some((seq, mac));
            }
            match next {
                Some(n) if full => from = n,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Every audit event about one customer, ascending, each with the MAC of the event just
    /// before it (for the vault to check each event's own MAC, as the customer's
    /// [access log](crate::Vault::access_log) does): what [`audit_for`](Store::audit_for)
    /// returns, with the previous MACs.
    ///
    /// The default reads [`audit_for`](Store::audit_for) and then the event before each one
    /// (one [`audit_range`](Store::audit_range) read per event); a backend should answer in
    /// one query, as the built-in ones do, and a wrapper around another store should forward
    /// it.
    fn audit_trail(&self, customer: CustomerId) -> Result<Vec<LatestChange>, StoreError> {
        let events = self.audit_for(customer)?;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let prev_mac = match event.seq.checked_sub(1).filter(|&s| s > 0) {
                Some(prev) => self
                    .audit_range(prev, 1)?
                    .into_iter()
                    .next()
                    .filter(|e| e.seq == prev)
                    .map(|e| e.mac),
                None => None,
            };
            out.push(LatestChange { event, prev_mac });
        }
        Ok(out)
    }

    /// The customer holding the consent record `consent` (history included), `None` if no
    /// stored record has this id. The vault uses it only to know whose records to read: it
    /// then finds the record among that customer's checked records, so a wrong answer can
    /// make [`Vault::consent_receipt`](crate::Vault::consent_receipt) fail, never issue a
    /// receipt for a record that was not checked.
    ///
    /// The default reads every customer in turn (a linear scan, correct for any store):
    /// backends that keep consents in an indexed table should answer with one lookup by id,
    /// and a wrapper around another store should forward it.
    fn consent_owner(&self, consent: ConsentId) -> Result<Option<CustomerId>, StoreError> {
        for id in self.customer_ids()? {
            if let Some(snapshot) = self.customer(id)? {
                if snapshot.consents.iter().any(|c| c.record.id == consent) {
                    return Ok(Some(id));
                }
            }
        }
        Ok(None)
    }

    /// Every lookup definition, any order.
    fn lookups(&self) -> Result<Vec<StoredLookup>, StoreError>;

    /// The customer whose `field` holds the lookup `token`, if any (an index read: one
    /// customer at most, by the [`IndexField`](Write::IndexField) rule).
    fn find_indexed(&self, field: &FieldName, token: &LookupToken) -> Result<Option<CustomerId>, StoreError>;

    /// An identity of this store object, the same for every handle to it: the vault uses it
    /// to refuse a second vault without a cache time-to-live on one store in one process
    /// (that vault would not see the first one's changes). The default is the object's
    /// address; a wrapper around another store should return its inner store's identity.
    fn instance_id(&self) -> usize {
        std::ptr::from_ref(self).cast::<()>().addr()
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        (**self).apply(batch)
    }
    fn apply_chained(&self, batch: &[Write], link: &mut ChainLink<'_>) -> Result<AuditAnchor, StoreError> {
        (**self).apply_chained(batch, link)
    }
    fn sync(&self) -> Result<(), StoreError> {
        (**self).sync()
    }
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        (**self).purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        (**self).customer(id)
    }
    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
        (**self).field(customer, field)
    }
    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
        (**self).fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        (**self).customer_ids()
    }
    fn customer_revision(&self, id: CustomerId) -> Result<Option<(u64, RecordMac)>, StoreError> {
        (**self).customer_revision(id)
    }
    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        (**self).audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        (**self).audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        (**self).audit_for(customer)
    }
    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        (**self).secret(name)
    }
    fn consent_candidates(
        &self,
        purpose: &PurposeId,
        notice_versions: std::ops::RangeInclusive<u32>,
        after: Option<CustomerId>,
        limit: usize,
    ) -> Result<Vec<CustomerId>, StoreError> {
        (**self).consent_candidates(purpose, notice_versions, after, limit)
    }
    fn audit_changes(&self, after_seq: u64, limit: usize) -> Result<Vec<LatestChange>, StoreError> {
        (**self).audit_changes(after_seq, limit)
    }
    fn audit_trail(&self, customer: CustomerId) -> Result<Vec<LatestChange>, StoreError> {
        (**self).audit_trail(customer)
    }
    fn consent_owner(&self, consent: ConsentId) -> Result<Option<CustomerId>, StoreError> {
        (**self).consent_owner(consent)
    }
    fn lookups(&self) -> Result<Vec<StoredLookup>, StoreError> {
        (**self).lookups()
    }
    fn find_indexed(&self, field: &FieldName, token: &LookupToken) -> Result<Option<CustomerId>, StoreError> {
        (**self).find_indexed(field, token)
    }
    fn instance_id(&self) -> usize {
        (**self).instance_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that keeps every default method: the in-memory store, seen through the
    /// required methods only.
    struct Defaults(MemoryStore);

    impl Store for Defaults {
        fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
            self.0.apply(batch)
        }
        fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
            self.0.purposes()
        }
        fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
            self.0.customer(id)
        }
        fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
            self.0.field(customer, field)
        }
        fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
            self.0.fields(customer)
        }
        fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
            self.0.customer_ids()
        }
        fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
            self.0.audit_head()
        }
        fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
            self.0.audit_range(from_seq, limit)
        }
        fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
            self.0.audit_for(customer)
        }
        fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
            self.0.secret(name)
        }
        fn lookups(&self) -> Result<Vec<StoredLookup>, StoreError> {
            self.0.lookups()
        }
        fn find_indexed(&self, field: &FieldName, token: &LookupToken) -> Result<Option<CustomerId>, StoreError> {
            self.0.find_indexed(field, token)
        }
    }

    #[test]
    fn the_default_consent_owner_scans_every_customer() {
        conformance::consent_owner_names_the_customer(&Defaults(MemoryStore::new()));
        conformance::consent_owner_names_the_customer(&std::sync::Arc::new(Defaults(MemoryStore::new())));
    }

    #[test]
    fn the_default_audit_trail_reads_the_event_before_each() {
        conformance::audit_trail_serves_a_customers_events(&Defaults(MemoryStore::new()));
        conformance::audit_trail_serves_a_customers_events(&std::sync::Arc::new(Defaults(MemoryStore::new())));
    }
}
