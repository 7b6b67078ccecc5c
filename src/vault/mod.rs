//! The vault: the one entry point that holds the keys and enforces the gate.

mod batch;
pub(crate) mod cache;
mod journal;
mod rights;

pub use journal::AuditBatching;

pub use rights::{ErasureReceipt, SubjectExport, SweepReport};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::{self, AuditBreak, AuditEvent, AuditKind, AuditReport, Entry};
use crate::clock::{Clock, SystemClock};
use crate::consent::{Consent, Evidence, decide};
use crate::crypto::{DataKey, MasterKey, WrappedKeyEnvelope};
use crate::error::{AccessDenied, Error};
use crate::gate::{AccessPass, Revealed, Sealed, decode, encode};
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};
use crate::purpose::{MAX_PERIOD, Purpose, PurposeDef};
use crate::store::{CustomerRecord, CustomerSnapshot, Store, StoreError, WrappedKey, Write};
use cache::{Cache, CustomerEntry, CustomerState};
use journal::Journal;

/// Default lifetime of an [`AccessPass`]: short, so that a pass is a request's capability and
/// not a standing permission.
pub const DEFAULT_PASS_LIFETIME: Duration = Duration::minutes(5);
/// Default bound on cached customers.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
/// Default cap on the encoded size of one field value.
pub const DEFAULT_MAX_VALUE_LEN: usize = 64 * 1024;

/// Builds a [`Vault`]; a master key and a store are required.
///
/// ```
/// use chrono::{Duration, Utc};
/// use egard::{ManualClock, MasterKey, MemoryStore, Vault};
///
/// let vault = Vault::builder()
///     .master_key(MasterKey::from_bytes([7u8; 32]))
///     .store(MemoryStore::new())
///     .clock(ManualClock::new(Utc::now()))
///     .namespace("shop-eu")
///     .pass_lifetime(Duration::seconds(30))
///     .build()?;
/// # Ok::<(), egard::Error>(())
/// ```
#[must_use]
pub struct VaultBuilder {
    master_keys: Vec<MasterKey>,
    store: Option<Box<dyn Store>>,
    clock: Arc<dyn Clock>,
    namespace: String,
    pass_lifetime: Duration,
    cache_capacity: usize,
    cache_ttl: Option<Duration>,
    max_value_len: usize,
    audit_batching: Option<AuditBatching>,
}

impl std::fmt::Debug for VaultBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBuilder")
            .field("master_keys", &self.master_keys)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl VaultBuilder {
    /// The current master key: it wraps every new data key. Required.
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.master_keys.insert(0, key);
        self
    }

    /// An older master key, still accepted to unwrap data keys it wrapped (during rotation).
    /// Keys are chosen by their id, never tried in turn.
    pub fn previous_master_key(mut self, key: MasterKey) -> Self {
        self.master_keys.push(key);
        self
    }

    /// Where records are kept. Required.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// The clock; [`SystemClock`] by default.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The vault's namespace, bound into every ciphertext (`egard` by default): a ciphertext
    /// of one namespace never opens in another. Same rule as field names.
    pub fn namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    /// How long an [`AccessPass`] works at most (5 minutes by default).
    pub fn pass_lifetime(mut self, lifetime: Duration) -> Self {
        self.pass_lifetime = lifetime;
        self
    }

    /// How many customers' unwrapped keys and consents are cached (100,000 by default; at
    /// least one). Customers with live passes are kept beyond it. See
    /// [`Vault::cached_customers`].
    pub fn cache_capacity(mut self, customers: usize) -> Self {
        self.cache_capacity = customers;
        self
    }

    /// For several processes sharing one database: cached consents, standing and purpose
    /// definitions are re-read from the store when older than `ttl`. A change made by another
    /// process (a withdrawal, objection, restriction, erasure, or a purpose defined or
    /// redefined, such as a new notice version) then takes
    /// effect here within `ttl` for new passes and for passes already issued used through
    /// [`Vault::reveal`] (which then re-reads a stale customer too), and within `ttl` plus the
    /// pass lifetime for passes used only through [`Sealed::open`]. Off by default (one
    /// process owns the store).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }

    /// The largest encoded field value accepted (64 KiB by default).
    pub fn max_value_len(mut self, bytes: usize) -> Self {
        self.max_value_len = bytes;
        self
    }

    /// Group commit of access events (grants and denials), for durable stores on a hot path.
    ///
    /// By default every access event is in the store before `authorize` returns. With
    /// batching, access events are queued in memory, in chain order, and written in one
    /// transaction with the next change, or once `max_events` are waiting, or when a call finds
    /// the oldest waiting longer than `max_delay`; reading the log, [`Vault::flush_audit`] and
    /// dropping the vault write them too. Changes (consents, fields, rights) are never queued.
    /// The price: if the process dies, at most one batch of access events is lost. If a write
    /// fails, the access that triggered it fails (fail closed) and the queue is kept.
    pub fn audit_batching(mut self, max_events: usize, max_delay: std::time::Duration) -> Self {
        self.audit_batching = Some(AuditBatching {
            max_events: max_events.max(1),
            max_delay,
        });
        self
    }

    /// Checks the configuration, reads the purposes, the audit head and the audit key from the
    /// store (on a store without an audit log, a random audit key is created, wrapped under the
    /// current master key and stored).
    ///
    /// A master key that cannot open the stored audit key (the wrong key) does not fail the
    /// build: every write is then refused with [`Error::Crypto`], as is
    /// [`Vault::verify_audit`], so that a misconfigured vault never extends the chain.
    pub fn build(self) -> Result<Vault, Error> {
        let mut keys = self.master_keys.into_iter();
        let master = keys.next().ok_or(Error::Config("a master key is required"))?;
        let previous: Vec<MasterKey> = keys.collect();
        if previous.iter().any(|k| k.id() == master.id()) {
            return Err(Error::Config("master key ids must be distinct"));
        }
        let store = self.store.ok_or(Error::Config("a store is required"))?;
        let namespace = FieldName::new(&self.namespace)
            .map_err(|_| Error::Config("namespace: 1 to 64 characters of a-z, 0-9, '.', '_' or '-'"))?;
        // Bounded like a purpose's periods, so that `now + lifetime` cannot overflow.
        if self.pass_lifetime <= Duration::zero() || self.pass_lifetime > MAX_PERIOD {
            return Err(Error::Config(
                "the pass lifetime must be positive and at most 1,000 years",
            ));
        }
        if self.cache_ttl.is_some_and(|ttl| ttl > MAX_PERIOD) {
            return Err(Error::Config("the cache time-to-live must be at most 1,000 years"));
        }
        let mut purposes = HashMap::new();
        for p in store.purposes()? {
            let def = PurposeDef::from_stored(p)?;
            purposes.insert(def.id.clone(), Arc::new(def));
        }
        let head = store.audit_head()?;
        let audit_key = journal::audit_key(store.as_ref(), &master, &previous, namespace.as_str(), head.is_some())?;
        let loaded_at = self.clock.now().trunc_subsecs(6);
        Ok(Vault {
            store,
            master,
            previous,
            namespace: Arc::from(namespace.as_str()),
            clock: self.clock,
            purposes: RwLock::new(purposes),
            purposes_loaded_at: Mutex::new(loaded_at),
            cache: Cache::new(self.cache_capacity),
            journal: Journal::new(audit_key, head, self.audit_batching),
            pass_lifetime: self.pass_lifetime,
            cache_ttl: self.cache_ttl,
            max_value_len: self.max_value_len,
        })
    }
}

/// The consent-gated vault of customer data.
///
/// It is `Send + Sync`: share one behind an `Arc` across threads. See the crate docs for a
/// tour.
pub struct Vault {
    store: Box<dyn Store>,
    master: MasterKey,
    previous: Vec<MasterKey>,
    namespace: Arc<str>,
    clock: Arc<dyn Clock>,
    purposes: RwLock<HashMap<PurposeId, Arc<PurposeDef>>>,
    /// When the purposes were last read from the store (for the multi-process time-to-live).
    purposes_loaded_at: Mutex<DateTime<Utc>>,
    cache: Cache,
    journal: Journal,
    pass_lifetime: Duration,
    cache_ttl: Option<Duration>,
    max_value_len: usize,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("namespace", &self.namespace)
            .field("master_key", &self.master)
            .field("cached_customers", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Starts building a vault.
    pub fn builder() -> VaultBuilder {
        VaultBuilder {
            master_keys: Vec::new(),
            store: None,
            clock: Arc::new(SystemClock),
            namespace: "egard".to_owned(),
            pass_lifetime: DEFAULT_PASS_LIFETIME,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_ttl: None,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            audit_batching: None,
        }
    }

    /// How many customers are in the key cache now: at most the
    /// [`cache_capacity`](VaultBuilder::cache_capacity), plus customers whose entries are
    /// held by live passes (a withdrawal must still reach those). For monitoring and tests.
    pub fn cached_customers(&self) -> usize {
        self.cache.len()
    }

    /// The current time, at the microsecond precision every backend keeps.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(6)
    }

    // ----- purposes -----

    /// Defines a purpose, or redefines it.
    ///
    /// Redefining with a higher notice version is a notice update: records given under an
    /// older version are denied with [`AccessDenied::NoticeOutdated`] until given again.
    /// Any redefinition stops the passes issued under the old definition. Defining the same
    /// purpose again unchanged does nothing. The notice version never goes down.
    pub fn define_purpose(&self, purpose: Purpose) -> Result<(), Error> {
        let def = purpose.validate()?;
        // Compare with what the store holds now, not with a stale copy (another process may
        // have raised the notice version).
        self.refresh_purposes(Refresh::Always)?;
        let mut purposes = self.purposes.write().unwrap_or_else(PoisonError::into_inner);
        let old = purposes.get(&def.id).cloned();
        if let Some(old) = &old {
            if old.purpose == def.purpose {
                return Ok(());
            }
            if def.purpose.required_notice_version() < old.purpose.required_notice_version() {
                return Err(Error::Invalid("a purpose's notice version cannot go down"));
            }
        }
        let detail = format!("notice_version={}", def.purpose.required_notice_version());
        self.commit(
            vec![Write::PutPurpose(def.purpose.clone())],
            vec![
                Entry::new(AuditKind::PurposeDefined, None)
                    .purpose(&def.id)
                    .detail(detail),
            ],
        )?;
        if let Some(old) = old {
            old.retire_for(&def);
        }
        purposes.insert(def.id.clone(), Arc::new(def));
        Ok(())
    }

    /// The current definition of a purpose.
    pub fn purpose(&self, id: &str) -> Result<Purpose, Error> {
        Ok(self.purpose_def(id)?.purpose.clone())
    }

    /// Every defined purpose.
    pub fn purposes(&self) -> Vec<Purpose> {
        let purposes = self.purposes.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Purpose> = purposes.values().map(|d| d.purpose.clone()).collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    fn purpose_def(&self, id: &str) -> Result<Arc<PurposeDef>, Error> {
        self.refresh_purposes(Refresh::IfStale)?;
        let purposes = self.purposes.read().unwrap_or_else(PoisonError::into_inner);
        match purposes.get(id) {
            Some(def) => Ok(def.clone()),
            None => Err(Error::UnknownPurpose(PurposeId::new(id)?)),
        }
    }

    /// The name of `field` as a purpose that covers it holds it, shared: stored fields and
    /// audit events then hold no copy of their own.
    fn covering_purpose_name(&self, field: &FieldName) -> Option<FieldName> {
        let purposes = self.purposes.read().unwrap_or_else(PoisonError::into_inner);
        purposes.values().find_map(|p| p.field(field.as_str()).cloned())
    }

    // ----- customers and fields -----

    /// Creates a customer with a fresh data key (stored only wrapped under the master key).
    pub fn create_customer(&self) -> Result<CustomerId, Error> {
        let id = CustomerId::new();
        let now = self.now();
        let (key, wrapped) = DataKey::generate(&self.master, &self.namespace, id, 1)?;
        self.commit(
            vec![
                Write::InsertCustomer(CustomerRecord {
                    id,
                    created_at: now,
                    restricted: false,
                    erased_at: None,
                }),
                Write::PutKey(WrappedKey {
                    customer: id,
                    version: key.version(),
                    wrapped,
                }),
            ],
            vec![Entry::new(AuditKind::CustomerCreated, Some(id))],
        )?;
        let entry = Arc::new(CustomerEntry::new(id, Some(key), CustomerState::new_customer(now)));
        let mut shard = self.cache.shard(id);
        self.cache.make_room(&mut shard);
        shard.insert(id, entry);
        Ok(id)
    }

    /// Encrypts `value` for `field` of `customer` and stores it, replacing (and so destroying)
    /// any earlier value; a rewrite is audited as a rectification (Art. 16).
    ///
    /// A field that no defined purpose covers is refused with [`Error::UnknownField`]:
    /// collect only what a purpose needs.
    pub fn set_field<T: Serialize + ?Sized>(&self, customer: CustomerId, field: &str, value: &T) -> Result<(), Error> {
        let name = self.collectable_field(field)?;
        let plaintext = encode(&name, value, self.max_value_len)?;
        self.with_customer(customer, |entry, state| {
            let key = live_key(entry, state)?;
            let envelope = key.seal(&self.namespace, customer, name.as_str(), &plaintext)?;
            let exists = match &state.fields {
                Some(fields) => fields.contains_key(&name),
                None => self.store.field(customer, &name)?.is_some(),
            };
            let kind = if exists {
                AuditKind::FieldRectified
            } else {
                AuditKind::FieldWritten
            };
            self.commit(
                vec![Write::PutField {
                    customer,
                    field: name.clone(),
                    envelope: envelope.clone(),
                    at: self.now(),
                }],
                vec![Entry::new(kind, Some(customer)).field(&name)],
            )?;
            if let Some(fields) = &mut state.fields {
                fields.insert(name.clone(), envelope);
            }
            Ok(())
        })
    }

    /// Encrypts `value` for `field` of `customer` without storing it: keep the [`Sealed`]
    /// value in your own tables, and open it later with a pass.
    pub fn seal<T: Serialize>(&self, customer: CustomerId, field: &str, value: &T) -> Result<Sealed<T>, Error> {
        let name = self.collectable_field(field)?;
        let plaintext = encode(&name, value, self.max_value_len)?;
        let entry = self.entry(customer)?;
        let envelope = {
            let state = entry.lock();
            live_key(&entry, &state)?.seal(&self.namespace, customer, name.as_str(), &plaintext)?
        };
        Ok(Sealed::new(customer, name, envelope))
    }

    fn collectable_field(&self, field: &str) -> Result<FieldName, Error> {
        let name = FieldName::new(field)?;
        self.covering_purpose_name(&name).ok_or(Error::UnknownField(name))
    }

    // ----- consent -----

    /// Records the customer's consent to `purpose` (or, for a purpose on another lawful
    /// basis, the record of that basis for this customer), under the purpose's current notice
    /// version, expiring after its consent lifetime. A live earlier record is kept as history,
    /// marked superseded by this one.
    ///
    /// Special-category purposes need [`Evidence::explicit`]. After an objection to a direct
    /// marketing purpose, no new record is accepted ([`AccessDenied::Objected`]).
    pub fn give_consent(&self, customer: CustomerId, purpose: &str, evidence: Evidence) -> Result<ConsentId, Error> {
        let def = self.purpose_def(purpose)?;
        if def.purpose.is_special_category() && !evidence.is_explicit() {
            return Err(Error::Invalid("special-category purposes need explicit consent"));
        }
        self.with_customer(customer, |_, state| {
            let (record, writes) =
                batch::new_consent(&def, customer, state, state.current.get(&def.id), &evidence, self.now())?;
            let id = record.id;
            self.commit(
                writes,
                vec![
                    Entry::new(AuditKind::ConsentGiven, Some(customer))
                        .purpose(&def.id)
                        .detail(id.to_string()),
                ],
            )?;
            state.current.insert(def.id.clone(), record);
            Ok(id)
        })
    }

    /// Withdraws the customer's consent to `purpose` (or ends the record of its other basis).
    /// When this returns, every pass already issued for this customer and purpose is refused
    /// with [`AccessDenied::Withdrawn`], in every thread. Withdrawing twice is harmless.
    pub fn withdraw_consent(&self, customer: CustomerId, purpose: &str) -> Result<(), Error> {
        let def = self.purpose_def(purpose)?;
        self.with_customer(customer, |_, state| {
            if let Some(current) = state.current.get(&def.id) {
                if current.withdrawn_at.is_none() {
                    let mut ended = current.clone();
                    ended.withdrawn_at = Some(self.now());
                    self.commit(
                        vec![Write::PutConsent(ended.clone())],
                        vec![
                            Entry::new(AuditKind::ConsentWithdrawn, Some(customer))
                                .purpose(&def.id)
                                .detail(ended.id.to_string()),
                        ],
                    )?;
                    state.current.insert(def.id.clone(), ended);
                }
            }
            state.revoke(&def.id, AccessDenied::Withdrawn);
            Ok(())
        })
    }

    /// Every consent record of a customer, history included, oldest first.
    pub fn consents(&self, customer: CustomerId) -> Result<Vec<Consent>, Error> {
        let snapshot = self.snapshot(customer)?;
        let mut all = snapshot.consents;
        all.sort_by_key(|c| (c.given_at, c.id));
        Ok(all)
    }

    // ----- the gate -----

    /// Checks that `customer` has a valid record for `purpose` (consent given under the
    /// current notice, unexpired, unwithdrawn, no objection, no restriction), writes the
    /// decision to the audit log, and on success returns the pass that opens the purpose's
    /// fields.
    ///
    /// Denials are `Err(Error::Denied(reason))`, also audited. An erased customer gives
    /// [`Error::Erased`]. If the audit log cannot be written, the access fails.
    pub fn authorize(&self, customer: CustomerId, purpose: &str) -> Result<AccessPass, Error> {
        let def = self.purpose_def(purpose)?;
        self.with_cached_customer(customer, |entry, state| {
            if state.erased {
                return Err(Error::Erased(customer));
            }
            let now = self.now();
            let record = state.current.get(&def.id);
            match decide(record, &def, state.standing(&def.id), None, now) {
                Ok(()) => {
                    let pass_end = now + self.pass_lifetime;
                    let (valid_until, ends_with_consent) = match record.and_then(|r| r.expires_at) {
                        Some(t) if t <= pass_end => (t, true),
                        _ => (pass_end, false),
                    };
                    self.journal.record(
                        self.store.as_ref(),
                        vec![Entry::new(AuditKind::AccessGranted, Some(customer)).purpose(&def.id)],
                        now,
                    )?;
                    Ok(AccessPass {
                        entry: entry.clone(),
                        revocation: state.grant(&def.id),
                        purpose: def.clone(),
                        valid_until,
                        ends_with_consent,
                        namespace: self.namespace.clone(),
                        clock: self.clock.clone(),
                    })
                }
                Err(reason) => {
                    let kind = if reason == AccessDenied::Expired {
                        AuditKind::ConsentExpired
                    } else {
                        AuditKind::AccessDenied
                    };
                    self.journal.record(
                        self.store.as_ref(),
                        vec![Entry::new(kind, Some(customer)).purpose(&def.id).detail(reason.code())],
                        now,
                    )?;
                    Err(reason.into())
                }
            }
        })
    }

    /// Reads a stored field through a pass: the pass must be live and its purpose must
    /// cover the field.
    pub fn reveal<T: DeserializeOwned + 'static>(&self, pass: &AccessPass, field: &str) -> Result<Revealed<T>, Error> {
        if !Arc::ptr_eq(&pass.namespace, &self.namespace) {
            return Err(Error::Invalid("the pass was issued by another vault"));
        }
        let customer = pass.customer();
        if self.cache_ttl.is_some() {
            // Several processes share the store: a purpose change made elsewhere stops this
            // pass within the time-to-live, as it stops `authorize`.
            self.refresh_purposes(Refresh::IfStale)?;
        }
        let (name, key, envelope) = {
            let mut state = pass.entry.lock();
            if self.cache_ttl.is_some() && !state.erased && !state.evicted {
                // Likewise a withdrawal, restriction or erasure made elsewhere.
                self.refresh(&pass.entry, &mut state, Refresh::IfStale)?;
            }
            let (name, key) = pass.check(customer, field)?;
            // The envelopes are ciphertext: caching them keeps the store off the hot path.
            // INVARIANT: every change to a customer's fields made through this vault updates
            // or drops this copy under the same lock (set_field, erasure, the sweep, a
            // time-to-live refresh).
            if state.fields.is_none() {
                let stored = self.store.fields(customer)?;
                state.fields = Some(stored.into_iter().map(|f| (f.field, f.envelope)).collect());
            }
            let envelope = state
                .fields
                .as_ref()
                .and_then(|fields| fields.get(name))
                .cloned()
                .ok_or_else(|| Error::UnknownField(name.clone()))?;
            (name, key, envelope)
        };
        let plaintext = key.open_owned(&self.namespace, customer, name.as_str(), envelope)?;
        decode(name, &plaintext)
    }

    // ----- audit -----

    /// Every audit event about a customer, oldest first.
    pub fn audit_events(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, Error> {
        self.flush_audit()?;
        Ok(self.store.audit_for(customer)?)
    }

    /// Writes the access events waiting under [`AuditBatching`] now (a no-op without
    /// batching). Reading the log, and dropping the vault, flush too.
    pub fn flush_audit(&self) -> Result<(), Error> {
        self.journal.flush(self.store.as_ref(), self.now())
    }

    /// Verifies the whole audit chain: sequence numbers from 1 without gaps, every MAC, and
    /// that the log reaches the last event this vault wrote. Any edited, dropped, inserted or
    /// reordered event is reported as [`Error::AuditBroken`] with its sequence number. A vault
    /// whose master keys cannot open the stored audit key gets [`Error::Crypto`].
    pub fn verify_audit(&self) -> Result<AuditReport, Error> {
        const PAGE: usize = 1024;
        self.flush_audit()?;
        let key = self.journal.key().ok_or(Error::Crypto)?;
        let known_seq = self.journal.written_seq();
        let mut prev = [0u8; 32];
        let mut expected = 1u64;
        loop {
            let page = self.store.audit_range(expected, PAGE)?;
            for event in &page {
                if event.seq != expected {
                    return Err(Error::AuditBroken {
                        seq: expected,
                        problem: AuditBreak::SequenceGap,
                    });
                }
                if audit::chain_mac(key, &prev, event) != event.mac {
                    return Err(Error::AuditBroken {
                        seq: event.seq,
                        problem: AuditBreak::MacMismatch,
                    });
                }
                prev = event.mac;
                expected += 1;
            }
            if page.len() < PAGE {
                break;
            }
        }
        let verified = expected - 1;
        if verified < known_seq {
            return Err(Error::AuditBroken {
                seq: verified + 1,
                problem: AuditBreak::Truncated,
            });
        }
        if let Some(head) = self.store.audit_head()? {
            if head.seq != verified {
                return Err(Error::AuditBroken {
                    seq: verified + 1,
                    problem: AuditBreak::SequenceGap,
                });
            }
        }
        Ok(AuditReport {
            events_verified: verified,
            head_mac: crate::consent::hex(&prev),
        })
    }

    // ----- internals -----

    /// Applies `writes` together with the audit events for `entries`, atomically.
    fn commit(&self, writes: Vec<Write>, entries: Vec<Entry>) -> Result<(), Error> {
        self.journal.commit(self.store.as_ref(), writes, entries, self.now())
    }

    /// The cached entry of a customer, read from the store on first touch.
    fn entry(&self, id: CustomerId) -> Result<Arc<CustomerEntry>, Error> {
        let mut shard = self.cache.shard(id);
        if let Some(entry) = shard.get(&id) {
            entry.touch();
            return Ok(entry.clone());
        }
        // Loaded under the shard lock, so that no change to this customer can slip between
        // the read and the insertion (changes go through the cached entry).
        let snapshot = self.store.customer(id)?.ok_or(Error::UnknownCustomer(id))?;
        let key = match snapshot.record.erased_at {
            Some(_) => None,
            None => Some(self.unwrap_key(&snapshot)?),
        };
        let entry = Arc::new(CustomerEntry::new(
            id,
            key,
            CustomerState::from_snapshot(&snapshot, self.now()),
        ));
        self.cache.make_room(&mut shard);
        shard.insert(id, entry.clone());
        Ok(entry)
    }

    /// Runs `change` on a customer's entry under its lock, starting again if the entry left
    /// the cache meanwhile. With several processes on the store (`cache_ttl` set), the entry
    /// is first re-read from the store, so that a change never rests on a stale copy (a
    /// withdrawal must end the record another process renewed).
    fn with_customer<R>(
        &self,
        id: CustomerId,
        change: impl FnMut(&Arc<CustomerEntry>, &mut CustomerState) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.locked_customer(id, Refresh::Always, change)
    }

    /// Runs `check` under a customer's lock with the cached copy, re-read only once older than
    /// the time-to-live (the hot path of `authorize`).
    fn with_cached_customer<R>(
        &self,
        id: CustomerId,
        check: impl FnMut(&Arc<CustomerEntry>, &mut CustomerState) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.locked_customer(id, Refresh::IfStale, check)
    }

    fn locked_customer<R>(
        &self,
        id: CustomerId,
        refresh: Refresh,
        mut run: impl FnMut(&Arc<CustomerEntry>, &mut CustomerState) -> Result<R, Error>,
    ) -> Result<R, Error> {
        loop {
            let entry = self.entry(id)?;
            let mut state = entry.lock();
            if !state.evicted {
                if !state.erased {
                    self.refresh(&entry, &mut state, refresh)?;
                }
                return run(&entry, &mut state);
            }
        }
    }

    /// Re-reads the purpose definitions when the cache time-to-live has passed: a purpose
    /// defined or redefined by another process is used from then on, and the passes issued
    /// under the old definition stop, as [`Vault::define_purpose`] stops them.
    fn refresh_purposes(&self, when: Refresh) -> Result<(), Error> {
        let Some(ttl) = self.cache_ttl else {
            return Ok(());
        };
        let now = self.now();
        if when == Refresh::IfStale {
            let loaded = self.purposes_loaded_at.lock().unwrap_or_else(PoisonError::into_inner);
            if now < *loaded + ttl {
                return Ok(());
            }
        }
        let stored = self.store.purposes()?;
        let mut purposes = self.purposes.write().unwrap_or_else(PoisonError::into_inner);
        for p in stored {
            let def = PurposeDef::from_stored(p)?;
            if let Some(old) = purposes.get(&def.id) {
                if old.purpose == def.purpose {
                    continue;
                }
                old.retire_for(&def);
            }
            purposes.insert(def.id.clone(), Arc::new(def));
        }
        *self.purposes_loaded_at.lock().unwrap_or_else(PoisonError::into_inner) = now;
        Ok(())
    }

    /// With several processes on the store (`cache_ttl` set), re-reads consents and standing
    /// when the time-to-live has passed, or always.
    fn refresh(&self, entry: &CustomerEntry, state: &mut CustomerState, when: Refresh) -> Result<(), Error> {
        let Some(ttl) = self.cache_ttl else {
            return Ok(());
        };
        let now = self.now();
        if when == Refresh::IfStale && state.loaded_at.is_some_and(|t| now < t + ttl) {
            return Ok(());
        }
        let snapshot = self.store.customer(entry.id)?.ok_or(Error::UnknownCustomer(entry.id))?;
        let fresh = CustomerState::from_snapshot(&snapshot, now);
        if fresh.erased {
            state.revoke_erased();
            return Err(Error::Erased(entry.id));
        }
        if fresh.restricted && !state.restricted {
            state.revoke_all(AccessDenied::Restricted);
        }
        for (purpose, record) in &fresh.current {
            let changed = state.current.get(purpose).is_none_or(|old| old != record);
            if changed && (record.withdrawn_at.is_some() || record.superseded_by.is_some()) {
                state.revoke(purpose, AccessDenied::Withdrawn);
            }
        }
        for purpose in fresh.objections.keys() {
            if !state.objections.contains_key(purpose) {
                state.revoke(purpose, AccessDenied::Objected);
            }
        }
        state.restricted = fresh.restricted;
        state.current = fresh.current;
        state.objections = fresh.objections;
        state.fields = None;
        state.loaded_at = Some(now);
        Ok(())
    }

    fn snapshot(&self, customer: CustomerId) -> Result<CustomerSnapshot, Error> {
        self.store.customer(customer)?.ok_or(Error::UnknownCustomer(customer))
    }

    /// Unwraps the customer's newest data key with the master key its envelope names.
    fn unwrap_key(&self, snapshot: &CustomerSnapshot) -> Result<DataKey, Error> {
        let wrapped = snapshot
            .keys
            .iter()
            .max_by_key(|k| k.version)
            .ok_or_else(|| StoreError::Corrupt("a customer has no data key".into()))?;
        let kek_id = WrappedKeyEnvelope::parse(&wrapped.wrapped)?.kek_id;
        let kek = std::iter::once(&self.master)
            .chain(&self.previous)
            .find(|k| k.id() == kek_id)
            .ok_or(Error::Crypto)?;
        DataKey::unwrap(
            kek,
            &self.namespace,
            snapshot.record.id,
            wrapped.version,
            &wrapped.wrapped,
        )
    }
}

impl Drop for Vault {
    /// Writes the access events still queued under [`AuditBatching`] (best effort: call
    /// [`Vault::flush_audit`] to see an error), and stops every pass this vault issued
    /// ([`AccessDenied::PassExpired`]): a pass never outlives its vault.
    fn drop(&mut self) {
        let _ = self.flush_audit();
        self.cache.revoke_all_passes(AccessDenied::PassExpired);
    }
}

/// When a cached customer is re-read from a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Once the cached copy is older than the time-to-live.
    IfStale,
    /// Before every change.
    Always,
}

/// The data key of a customer that was not erased.
fn live_key<'a>(entry: &'a CustomerEntry, state: &CustomerState) -> Result<&'a DataKey, Error> {
    match (&entry.key, state.erased) {
        (Some(key), false) => Ok(key),
        _ => Err(Error::Erased(entry.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Evidence, LawfulBasis, MemoryStore};

    fn batched_vault(store: Arc<MemoryStore>, max_events: usize) -> Vault {
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([3; 32]))
            .store(store)
            .audit_batching(max_events, std::time::Duration::from_secs(3600))
            .build()
            .unwrap();
        vault
            .define_purpose(Purpose::new("p", LawfulBasis::Consent).fields(["email"]))
            .unwrap();
        vault
    }

    fn stored_kinds(store: &MemoryStore) -> Vec<AuditKind> {
        store
            .audit_range(1, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    #[test]
    fn batched_access_events_wait_for_the_batch_and_keep_chain_order() {
        let store = Arc::new(MemoryStore::new());
        let vault = batched_vault(store.clone(), 3);
        let c = vault.create_customer().unwrap();
        vault.give_consent(c, "p", Evidence::new("t")).unwrap();
        let before = stored_kinds(&store).len();
        vault.authorize(c, "p").unwrap();
        assert!(vault.authorize(CustomerId::new(), "p").is_err());
        assert_eq!(
            stored_kinds(&store).len(),
            before,
            "the grant is still queued (the unknown customer was refused before any decision)"
        );
        // A change writes the queue first, in one batch with itself.
        vault.withdraw_consent(c, "p").unwrap();
        let kinds = stored_kinds(&store);
        assert_eq!(kinds[before..], [AuditKind::AccessGranted, AuditKind::ConsentWithdrawn]);
        for _ in 0..3 {
            assert!(vault.authorize(c, "p").is_err());
        }
        assert_eq!(
            stored_kinds(&store).len(),
            before + 2 + 3,
            "the third denial filled the batch"
        );
        assert_eq!(vault.verify_audit().unwrap().events_verified, (before + 5) as u64);
    }

    #[test]
    fn a_vault_with_another_master_key_cannot_extend_the_chain() {
        let store = Arc::new(MemoryStore::new());
        let right = batched_vault(store.clone(), 1);
        right.create_customer().unwrap();
        let wrong = Vault::builder()
            .master_key(MasterKey::from_bytes([4; 32]))
            .store(store.clone())
            .build()
            .unwrap();
        let other = Purpose::new("q", LawfulBasis::Consent).fields(["email"]);
        assert!(matches!(wrong.define_purpose(other.clone()), Err(Error::Crypto)));
        assert!(matches!(wrong.create_customer(), Err(Error::Crypto)));
        drop(wrong);
        right.define_purpose(other).unwrap();
        assert_eq!(right.verify_audit().unwrap().events_verified, 3);
    }

    #[test]
    fn cached_envelopes_follow_rectification_and_the_retention_sweep() {
        let clock = crate::ManualClock::new(Utc::now());
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([3; 32]))
            .store(MemoryStore::new())
            .clock(clock.clone())
            .build()
            .unwrap();
        vault
            .define_purpose(
                Purpose::new("p", LawfulBasis::Consent)
                    .fields(["email"])
                    .consent_lifetime(Duration::days(1)),
            )
            .unwrap();
        let c = vault.create_customer().unwrap();
        vault.set_field(c, "email", "old@example.com").unwrap();
        vault.give_consent(c, "p", Evidence::new("t")).unwrap();
        let pass = vault.authorize(c, "p").unwrap();
        assert_eq!(
            vault.reveal::<String>(&pass, "email").unwrap().expose(),
            "old@example.com"
        );
        vault.set_field(c, "email", "new@example.com").unwrap();
        assert_eq!(
            vault.reveal::<String>(&pass, "email").unwrap().expose(),
            "new@example.com"
        );
        // The pass outlives nothing here: sweep once the consent has ended, then look with a
        // pass issued under a fresh consent.
        clock.advance(Duration::days(2));
        assert_eq!(vault.sweep_retention().unwrap().deleted.len(), 1);
        vault.give_consent(c, "p", Evidence::new("t")).unwrap();
        let pass = vault.authorize(c, "p").unwrap();
        assert!(matches!(
            vault.reveal::<String>(&pass, "email"),
            Err(Error::UnknownField(_))
        ));
    }

    #[test]
    fn a_vault_reveals_only_through_its_own_passes() {
        let store = Arc::new(MemoryStore::new());
        let issuer = batched_vault(store.clone(), 1);
        let other = batched_vault(store, 1);
        let c = issuer.create_customer().unwrap();
        issuer.set_field(c, "email", "a@example.com").unwrap();
        issuer.give_consent(c, "p", Evidence::new("t")).unwrap();
        let pass = issuer.authorize(c, "p").unwrap();
        assert!(matches!(other.reveal::<String>(&pass, "email"), Err(Error::Invalid(_))));
        assert_eq!(
            issuer.reveal::<String>(&pass, "email").unwrap().expose(),
            "a@example.com"
        );
    }

    #[test]
    fn a_pass_does_not_outlive_its_vault() {
        let store = Arc::new(MemoryStore::new());
        let vault = batched_vault(store, 1);
        let c = vault.create_customer().unwrap();
        vault.give_consent(c, "p", Evidence::new("t")).unwrap();
        let sealed = vault.seal(c, "email", &"a@example.com".to_string()).unwrap();
        let pass = vault.authorize(c, "p").unwrap();
        assert_eq!(sealed.open(&pass).unwrap().expose(), "a@example.com");
        drop(vault);
        assert!(matches!(
            sealed.open(&pass),
            Err(Error::Denied(AccessDenied::PassExpired))
        ));
    }

    #[test]
    fn dropping_a_batching_vault_writes_its_queue() {
        let store = Arc::new(MemoryStore::new());
        let vault = batched_vault(store.clone(), 100);
        let c = vault.create_customer().unwrap();
        assert!(vault.authorize(c, "p").is_err());
        let before = stored_kinds(&store).len();
        drop(vault);
        assert_eq!(stored_kinds(&store).len(), before + 1);
        assert_eq!(stored_kinds(&store).last(), Some(&AuditKind::AccessDenied));
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_vault_and_passes_cross_threads() {
        assert_send_sync::<Vault>();
        assert_send_sync::<AccessPass>();
    }
}
