//! The vault: the one entry point that holds the keys and enforces the gate.

mod actors;
mod archive;
mod batch;
pub(crate) mod cache;
mod choices;
mod claims;
mod exported;
mod gpc;
mod journal;
mod keys;
mod lookups;
mod reach;
mod receipts;
pub(crate) mod records;
mod rights;
mod rotation;
mod secrets;
mod telemetry;

pub use actors::{AccessKind, AccessRecord, ActingVault};
pub use archive::{
    ArchiveReport, ArchiveVerification, ArchivedThrough, AuditProgress, AuditStage, DEFAULT_SEGMENT_EVENTS,
    SEGMENT_FORMAT, SEGMENT_VERSION, SegmentReport,
};
pub use exported::ExportedValue;
pub use gpc::GpcOutcome;
pub use journal::AuditBatching;
use journal::Written;
pub use keys::ENCRYPTION_BUDGET;
pub use reach::{AUDIENCE_PAGE, MAX_CHANGES_PAGE};

pub use rights::{ErasureReceipt, SubjectExport, SweepReport};
pub use rotation::{DEFAULT_ROTATION_BATCH, KeyBelow, RotationProgress};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::Actor;
use crate::audit::{self, AuditAnchor, AuditBreak, AuditEvent, AuditKind, AuditReport, Entry};
use crate::clock::{Clock, Monotonic, SystemClock};
use crate::consent::{Consent, Evidence, decide};
use crate::crypto::{DETACHED_VERSION, DataKey, KeyProvider, MacKey, MasterKey, scrub_stack};
use crate::error::{AccessDenied, Error};
use crate::gate::{AccessPass, Revealed, Sealed, decode, encode};
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};
use crate::integrity::{self, RecordKey};
use crate::purpose::{MAX_PERIOD, Purpose, PurposeDef};
use crate::receipt::Controller;
use crate::store::{CustomerRecord, PurposeSnapshot, Store, StoreError, StoredPurpose, WrappedKey, Write};
use cache::{Cache, CustomerEntry, CustomerState, KeyRef};
use claims::Claim;
use journal::Journal;
use records::{Anchor, Draft, Verified};
use secrets::Keyring;

/// Default lifetime of an [`AccessPass`]: short, so that a pass is a request's capability and
/// not a standing permission.
pub const DEFAULT_PASS_LIFETIME: Duration = Duration::minutes(5);
/// Default bound on cached customers.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
/// Default cap on the encoded size of one field value.
pub const DEFAULT_MAX_VALUE_LEN: usize = 64 * 1024;

/// How many times a change is made again on a fresh read when another writer changed the same
/// customer (or purpose) between the read and the write.
const STALE_RETRIES: usize = 16;

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
    master_keys: Vec<Box<dyn KeyProvider>>,
    min_master_key_id: u32,
    store: Option<Box<dyn Store>>,
    clock: Arc<dyn Clock>,
    namespace: String,
    pass_lifetime: Duration,
    cache_capacity: usize,
    cache_ttl: Option<Duration>,
    max_value_len: usize,
    audit_batching: Option<AuditBatching>,
    audit_anchor: Option<AuditAnchor>,
    encryption_budget: u64,
    controller: Option<Controller>,
    default_actor: Actor,
    audit_retention: Option<(Duration, std::path::PathBuf)>,
    audit_segment_events: u64,
}

impl std::fmt::Debug for VaultBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBuilder")
            .field(
                "master_key_ids",
                &self.master_keys.iter().map(|k| k.key_id()).collect::<Vec<_>>(),
            )
            .field("namespace", &self.namespace)
            .field("default_actor", &self.default_actor)
            .finish_non_exhaustive()
    }
}

impl VaultBuilder {
    /// The current master key: it wraps every new data key. Required (this, or
    /// [`key_provider`](VaultBuilder::key_provider)).
    pub fn master_key(self, key: MasterKey) -> Self {
        self.key_provider(key)
    }

    /// An older master key, still accepted to unwrap data keys it wrapped (during rotation).
    /// Keys are chosen by their id, never tried in turn.
    pub fn previous_master_key(self, key: MasterKey) -> Self {
        self.previous_key_provider(key)
    }

    /// The current master key, held by a [`KeyProvider`] (a KMS, an HSM, or a
    /// [`MasterKey`]): it wraps every new data key and, on a new store, the vault secrets.
    /// Required (this, or [`master_key`](VaultBuilder::master_key)); the last one given is
    /// the current one.
    pub fn key_provider(mut self, provider: impl KeyProvider) -> Self {
        self.master_keys.insert(0, Box::new(provider));
        self
    }

    /// An older master key behind a [`KeyProvider`], still accepted to unwrap what it wrapped
    /// until [`Vault::rotate_master_key`] has re-wrapped everything under the current one.
    /// Chosen by its [`key_id`](KeyProvider::key_id), never tried in turn.
    pub fn previous_key_provider(mut self, provider: impl KeyProvider) -> Self {
        self.master_keys.push(Box::new(provider));
        self
    }

    /// Retires every master key with an id below `id`: a data key or vault secret still
    /// wrapped under one is refused with [`Error::RetiredKey`], even if its key is configured
    /// as a previous one (a restored backup, or an old key left in a deployment, cannot bring
    /// back what a rotation replaced). The current master key's id must be at least `id`.
    /// `0` (the default) retires nothing.
    ///
    /// Set it once [`Vault::keys_below`] finds nothing left under the old ids: a rotation
    /// cannot re-wrap what is under a retired key.
    pub fn min_master_key_id(mut self, id: u32) -> Self {
        self.min_master_key_id = id;
        self
    }

    /// Where records are kept. Required.
    ///
    /// One store object (and every `Arc` clone of it) serves one vault, unless every vault on
    /// it has a [`cache_ttl`](VaultBuilder::cache_ttl): a second vault would not see the
    /// first one's changes in its cache, so [`build`](VaultBuilder::build) refuses it. Share
    /// one `Vault` between threads instead (it is `Send + Sync`).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// The clock; [`SystemClock`] by default.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The vault's namespace, bound into every ciphertext and record MAC (`egard` by
    /// default): a ciphertext of one namespace never opens in another. Same rule as field
    /// names.
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
    ///
    /// Changes are always made on top of the stored state, whatever the time-to-live: a
    /// change that finds the customer changed by another process since its read is made
    /// again on a fresh read.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }

    /// The largest encoded field value accepted (64 KiB by default).
    pub fn max_value_len(mut self, bytes: usize) -> Self {
        self.max_value_len = bytes;
        self
    }

    /// How many encryptions one data key makes at most before the customer gets a new one
    /// ([`ENCRYPTION_BUDGET`], 2³², by default; at most that, at least 1). A lower budget
    /// lowers the chance of two random nonces colliding under one key further, at the price of
    /// more frequent rotations (see [`Vault::rotate_customer_key`]).
    pub fn encryption_budget(mut self, encryptions: u64) -> Self {
        self.encryption_budget = encryptions;
        self
    }

    /// Group commit of access events (grants and denials), for durable stores on a hot path.
    ///
    /// By default every access event is in the store before `authorize` returns. With
    /// batching, access events are queued in memory, in order, and written in one transaction
    /// once `max_events` are waiting, or when a call finds the oldest waiting longer than
    /// `max_delay`; reading the log, [`Vault::flush_audit`] and dropping the vault write them
    /// too. Changes (consents, fields, rights) are never queued, and do not wait for the
    /// queue: a change may be written before access events decided earlier (each event's
    /// time says when it was decided).
    /// While one thread writes a batch, the others queue up to four batches more rather than
    /// wait for it. The price: if the process dies, the access events not yet written are
    /// lost, at most 5 × `max_events` (SECURITY.md, "What a failure loses"). If a write fails,
    /// the access that triggered it fails (fail closed) and the queue is kept.
    ///
    /// A change queued while a batch is being written waits for that batch (then goes before
    /// the access events queued with it): on a busy SQLite file a batch takes about 10–25 µs
    /// per event, so `max_events` bounds a change's latency too (measured with 4 readers and a
    /// writer on 2 cores: 1,024 gave the writer 22–26 changes/s at a p50 of 35–47 ms, 256
    /// gave 68/s at 14 ms, for about the same reads per second; BENCHMARKS.md).
    pub fn audit_batching(mut self, max_events: usize, max_delay: std::time::Duration) -> Self {
        self.audit_batching = Some(AuditBatching {
            max_events: max_events.max(1),
            max_delay,
        });
        self
    }

    /// An [`AuditAnchor`] kept outside the database (see [`Vault::audit_anchor`]): the vault
    /// refuses to build on a log that was cut back behind it (one that ends before it, or
    /// holds another event at its sequence number), with [`Error::AuditBroken`] and
    /// [`AuditBreak::Truncated`], rather than extend it.
    ///
    /// A chain of MACs shows any event edited, dropped or reordered, but not the last events
    /// cut off together with the changes they recorded (a whole-database restore): only an
    /// anchor from outside does.
    pub fn audit_anchor(mut self, anchor: AuditAnchor) -> Self {
        self.audit_anchor = Some(anchor);
        self
    }

    /// A retention rule for the audit log: [`Vault::sweep_retention`] then also archives every
    /// audit event older than `keep` into a new segment file in `dir`
    /// ([`Vault::archive_audit_to_dir`]) and prunes it from the store; the sweep's report
    /// says what was archived. Without a rule nothing is ever archived. Events are never
    /// deleted without being written to a synced segment first: keep `dir` (and its copies)
    /// as long as the history must be provable. `keep` must be positive and at most 1,000
    /// years.
    ///
    /// ```
    /// use chrono::Duration;
    /// use egard::{MasterKey, MemoryStore, Vault};
    ///
    /// let dir = std::env::temp_dir().join("egard-audit-doc");
    /// let vault = Vault::builder()
    ///     .master_key(MasterKey::from_bytes([1; 32]))
    ///     .store(MemoryStore::new())
    ///     .audit_retention(Duration::days(365), &dir)
    ///     .build()?;
    /// let report = vault.sweep_retention()?;
    /// assert!(report.archived.is_empty()); // nothing a year old yet
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn audit_retention(mut self, keep: Duration, dir: impl Into<std::path::PathBuf>) -> Self {
        self.audit_retention = Some((keep, dir.into()));
        self
    }

    /// How many events one audit segment holds at most ([`DEFAULT_SEGMENT_EVENTS`](crate::DEFAULT_SEGMENT_EVENTS),
    /// 250,000, by default; at least 1): each archival step writes one segment and prunes
    /// its events in one store batch, which holds the store's write lock while it deletes, so
    /// this bounds that time (about 5 µs per row on SQLite in BENCHMARKS.md, 1.7 s for 250,000).
    /// [`Vault::sweep_retention`] archives in as many steps as needed.
    pub fn audit_segment_events(mut self, events: u64) -> Self {
        self.audit_segment_events = events.max(1);
        self
    }

    /// The controller's details, as [`consent receipts`](Vault::consent_receipt) name them
    /// (the business's, never a customer's). Required for receipts only.
    ///
    /// ```
    /// use egard::{Controller, MasterKey, MemoryStore, Vault};
    ///
    /// let vault = Vault::builder()
    ///     .master_key(MasterKey::from_bytes([7u8; 32]))
    ///     .store(MemoryStore::new())
    ///     .controller(
    ///         Controller::new("Acme Books SAS")
    ///             .jurisdiction("EU")
    ///             .policy_url("https://books.example/privacy")
    ///             .withdrawal_method("https://books.example/account/consents"),
    ///     )
    ///     .build()?;
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn controller(mut self, controller: Controller) -> Self {
        self.controller = Some(controller);
        self
    }

    /// The actor the plain API records in the audit events it writes ([`Actor::default`],
    /// `app`, unless set here); [`Vault::acting_as`] names another one for a call.
    pub fn default_actor(mut self, actor: Actor) -> Self {
        self.default_actor = actor;
        self
    }

    /// Checks the configuration; reads the audit head, the vault secrets (on a store without
    /// an audit log, the audit key and the record key are made now, wrapped under the current
    /// master key and stored) and the purposes, each checked against its MAC and the log;
    /// checks the log against the [`audit_anchor`](VaultBuilder::audit_anchor), if one is given.
    ///
    /// A master key that cannot open the stored vault secrets (the wrong key) fails the
    /// build, so that a misconfigured vault never extends the chain nor trusts a record: with
    /// [`Error::WrongMasterKey`], naming the key ids, when the stored secrets are wrapped
    /// under master key ids this vault does not hold; with the opaque [`Error::Crypto`] when
    /// the id matches but the secret does not open (another key given the same id, or a
    /// damaged secret: one error for both, so that the build is no oracle).
    ///
    /// ```
    /// use egard::{Error, MasterKey, MemoryStore, Vault};
    /// use std::sync::Arc;
    ///
    /// let store = Arc::new(MemoryStore::new());
    /// let key = || MasterKey::from_bytes([7; 32]);
    /// Vault::builder().master_key(key()).store(store.clone()).build()?.create_customer()?;
    /// let wrong = Vault::builder().master_key(key().with_id(2)).store(store.clone()).build();
    /// assert!(matches!(wrong, Err(Error::WrongMasterKey { .. })));
    /// assert_eq!(
    ///     wrong.unwrap_err().to_string(),
    ///     "wrong master key: the store's keys are wrapped under master key id(s) [1], this vault holds id(s) [2]"
    /// );
    /// let wrong = Vault::builder().master_key(MasterKey::from_bytes([8; 32])).store(store).build();
    /// assert!(matches!(wrong, Err(Error::Crypto)));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// Fails with [`Error::Config`] when this store object already serves another vault
    /// without a time-to-live, or this vault has none and the store serves another vault (see
    /// [`store`](VaultBuilder::store)).
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.build", level = "info", skip_all, fields(namespace = self.namespace.as_str()), err(level = "info", Display)))]
    pub fn build(self) -> Result<Vault, Error> {
        let vault = self.build_vault();
        // The vault secrets were unwrapped and their HMAC keys made below this frame.
        scrub_stack();
        vault
    }

    /// What [`build`](VaultBuilder::build) does, in a frame of its own that the scrub after
    /// it writes over.
    #[inline(never)]
    fn build_vault(self) -> Result<Vault, Error> {
        let mut keys = self.master_keys.into_iter();
        let master = keys.next().ok_or(Error::Config("a master key is required"))?;
        let previous: Vec<Box<dyn KeyProvider>> = keys.collect();
        let mut ids: Vec<u32> = previous.iter().map(|k| k.key_id()).collect();
        ids.push(master.key_id());
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Config("master key ids must be distinct"));
        }
        if master.key_id() < self.min_master_key_id {
            return Err(Error::Config("the current master key's id is below min_master_key_id"));
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
        if let Some(controller) = &self.controller {
            controller.validate()?;
        }
        if self
            .audit_retention
            .as_ref()
            .is_some_and(|(keep, _)| *keep <= Duration::zero() || *keep > MAX_PERIOD)
        {
            return Err(Error::Config(
                "the audit retention must be positive and at most 1,000 years",
            ));
        }
        if self.encryption_budget == 0 || self.encryption_budget > ENCRYPTION_BUDGET {
            return Err(Error::Config(
                "the encryption budget must be at least 1 and at most 2^32",
            ));
        }
        let claim = Claim::take(store.instance_id(), self.cache_ttl.is_some())?;
        let namespace: Arc<str> = Arc::from(namespace.as_str());
        let head = store.audit_head()?;
        let keyring = Keyring {
            master: &*master,
            previous: &previous,
            namespace: &namespace,
            min_master_key_id: self.min_master_key_id,
        };
        let mut opened = secrets::open_or_install(&keyring, store.as_ref(), head.is_none())?.into_iter();
        let audit_key = opened.next().flatten().map(|raw| MacKey::new(&raw));
        let record_key = opened
            .next()
            .flatten()
            .map(|raw| RecordKey::new(&raw, namespace.clone()));
        let clock = Arc::new(Monotonic::new(self.clock, head.as_ref().map(|e| e.at)));
        let loaded_at = clock.now();
        let vault = Vault {
            store,
            master,
            previous,
            min_master_key_id: self.min_master_key_id,
            namespace,
            clock,
            purposes: RwLock::new(Purposes::default()),
            purposes_loaded_at: Mutex::new(loaded_at),
            lookups: RwLock::new(lookups::Lookups::default()),
            lookups_loaded_at: Mutex::new(loaded_at),
            cache: Cache::new(self.cache_capacity),
            journal: Journal::new(audit_key, head, self.audit_batching),
            record_key,
            pass_lifetime: self.pass_lifetime,
            cache_ttl: self.cache_ttl,
            max_value_len: self.max_value_len,
            encryption_budget: self.encryption_budget,
            controller: self.controller,
            default_actor: self.default_actor,
            audit_retention: self.audit_retention,
            audit_segment_events: self.audit_segment_events,
            archive_lock: Mutex::new(()),
            kept_index: Mutex::new(None),
            _claim: claim,
        };
        if let Some(anchor) = &self.audit_anchor {
            vault.check_anchor(anchor)?;
        }
        vault.load_purposes()?;
        if vault.record_key.is_some() {
            vault.load_lookups()?;
        }
        Ok(vault)
    }
}

/// The purposes a vault knows.
#[derive(Default)]
struct Purposes {
    defs: HashMap<PurposeId, Arc<PurposeDef>>,
    /// Purposes whose stored definition failed its check: every operation on them is refused
    /// with [`Error::Crypto`] until the stored definition is put right.
    tampered: HashSet<PurposeId>,
}

/// The consent-gated vault of customer data.
///
/// It is `Send + Sync`: share one behind an `Arc` across threads. See the crate docs for a
/// tour.
pub struct Vault {
    store: Box<dyn Store>,
    master: Box<dyn KeyProvider>,
    previous: Vec<Box<dyn KeyProvider>>,
    /// Wrapped keys under a master key id below this are refused.
    min_master_key_id: u32,
    namespace: Arc<str>,
    /// The host's clock, never going back past what this vault recorded or decided at.
    clock: Arc<Monotonic>,
    purposes: RwLock<Purposes>,
    /// When the purposes were last read from the store (for the multi-process time-to-live).
    purposes_loaded_at: Mutex<DateTime<Utc>>,
    lookups: RwLock<lookups::Lookups>,
    /// When the lookups were last read from the store.
    lookups_loaded_at: Mutex<DateTime<Utc>>,
    cache: Cache,
    journal: Journal,
    /// `None` when the master keys cannot open the stored record key: nothing is trusted then.
    record_key: Option<RecordKey>,
    pass_lifetime: Duration,
    cache_ttl: Option<Duration>,
    max_value_len: usize,
    /// Encryptions per data key at most.
    encryption_budget: u64,
    /// The controller's details, for consent receipts.
    controller: Option<Controller>,
    /// Who the plain API records as acting.
    default_actor: Actor,
    /// The audit log's retention rule: how long events stay in the store, and where their
    /// segments go.
    audit_retention: Option<(Duration, std::path::PathBuf)>,
    /// How many events one audit segment holds at most.
    audit_segment_events: u64,
    /// One archival at a time in this process.
    archive_lock: Mutex<()>,
    /// The rows kept at or below the audit base, checked against its digest once per base.
    kept_index: Mutex<Option<Arc<archive::KeptIndex>>>,
    /// This vault's use of its store object, released on drop.
    _claim: Claim,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("namespace", &self.namespace)
            .field("master_key_id", &self.master.key_id())
            .field("cached_customers", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Starts building a vault.
    pub fn builder() -> VaultBuilder {
        VaultBuilder {
            master_keys: Vec::new(),
            min_master_key_id: 0,
            store: None,
            clock: Arc::new(SystemClock),
            namespace: "egard".to_owned(),
            pass_lifetime: DEFAULT_PASS_LIFETIME,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_ttl: None,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            encryption_budget: ENCRYPTION_BUDGET,
            audit_batching: None,
            audit_anchor: None,
            controller: None,
            default_actor: Actor::default(),
            audit_retention: None,
            audit_segment_events: DEFAULT_SEGMENT_EVENTS,
        }
    }

    /// How many customers are in the key cache now: at most the
    /// [`cache_capacity`](VaultBuilder::cache_capacity), plus customers whose entries are
    /// held by live passes (a withdrawal must still reach those). For monitoring and tests.
    pub fn cached_customers(&self) -> usize {
        self.cache.len()
    }

    /// The current time, at the microsecond precision every backend keeps.
    /// The time of a decision: the clock, truncated to the microsecond (as stores keep
    /// times), and never earlier than what this vault recorded or decided at before.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The time of a decision that is recorded: as [`now`](Vault::now), and every later
    /// decision is made at this time or after, exactly.
    fn recording_now(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        self.clock.raise(now);
        now
    }

    fn keyring(&self) -> Keyring<'_> {
        Keyring {
            master: &*self.master,
            previous: &self.previous,
            namespace: &self.namespace,
            min_master_key_id: self.min_master_key_id,
        }
    }

    // ----- purposes -----

    /// Defines a purpose, or redefines it.
    ///
    /// Redefining with a higher notice version is a notice update: records given under an
    /// older version are denied with [`AccessDenied::NoticeOutdated`] until given again.
    /// Any redefinition stops the passes issued under the old definition. Defining the same
    /// purpose again unchanged does nothing. The notice version never goes down.
    ///
    /// The stored definition is authenticated (a MAC under the record key, bound to its
    /// revision and to the audit log): a purpose whose stored definition fails its check is
    /// refused here and everywhere with [`Error::Crypto`] until the stored row is put right,
    /// so that a tampered definition is never silently overwritten.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.define_purpose", level = "info", skip_all, fields(purpose = telemetry::name(purpose.id())), err(level = "info", Display)))]
    pub fn define_purpose(&self, purpose: Purpose) -> Result<(), Error> {
        let def = purpose.validate()?;
        let key = self.record_key()?;
        for attempt in 0..STALE_RETRIES {
            // Compare with what the store holds now, not with a stale copy (another process
            // may have raised the notice version): always with a time-to-live, and after a
            // conflict without one.
            if attempt > 0 || self.cache_ttl.is_some() {
                self.refresh_purposes(Refresh::Always)?;
            }
            let mut purposes = self.purposes.write().unwrap_or_else(PoisonError::into_inner);
            if purposes.tampered.contains(&def.id) {
                return Err(Error::Crypto);
            }
            let old = purposes.defs.get(&def.id).cloned();
            if let Some(old) = &old {
                if old.purpose == def.purpose {
                    return Ok(());
                }
                if def.purpose.required_notice_version() < old.purpose.required_notice_version() {
                    return Err(Error::Invalid("a purpose's notice version cannot go down"));
                }
            }
            let expected_rev = old.as_ref().map(|o| o.rev);
            let rev = expected_rev
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt("a purpose's revision is at its maximum".into()))?;
            let mac = key.purpose(&def.purpose, rev);
            let detail = format!("notice_version={}", def.purpose.required_notice_version());
            let written = self.commit(
                vec![Write::PutPurpose {
                    stored: StoredPurpose {
                        purpose: def.purpose.clone(),
                        rev,
                        mac,
                    },
                    expected_rev,
                }],
                vec![
                    Entry::new(AuditKind::PurposeDefined, None)
                        .purpose(&def.id)
                        .detail(detail)
                        .state(mac),
                ],
            );
            let written = match written {
                Err(Error::Storage(StoreError::Stale)) => continue,
                Err(e) => return Err(e),
                Ok(written) => written,
            };
            let mut def = def;
            def.rev = rev;
            def.mac = mac;
            if let Some(old) = old {
                old.retire_for(&def);
            }
            purposes.defs.insert(def.id.clone(), Arc::new(def));
            return written.durable();
        }
        Err(StoreError::Stale.into())
    }

    /// The current definition of a purpose.
    pub fn purpose(&self, id: &str) -> Result<Purpose, Error> {
        Ok(self.purpose_def(id)?.purpose.clone())
    }

    /// Every defined purpose (those whose stored definition fails its check are left out).
    pub fn purposes(&self) -> Vec<Purpose> {
        let purposes = self.purposes.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Purpose> = purposes.defs.values().map(|d| d.purpose.clone()).collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    fn purpose_def(&self, id: &str) -> Result<Arc<PurposeDef>, Error> {
        self.refresh_purposes(Refresh::IfStale)?;
        let purposes = self.purposes.read().unwrap_or_else(PoisonError::into_inner);
        match purposes.defs.get(id) {
            Some(def) => Ok(def.clone()),
            None if purposes.tampered.contains(id) => Err(Error::Crypto),
            None => Err(Error::UnknownPurpose(PurposeId::new(id)?)),
        }
    }

    /// The name of `field` as a purpose that covers it holds it, shared: stored fields and
    /// audit events then hold no copy of their own.
    fn covering_purpose_name(&self, field: &FieldName) -> Option<FieldName> {
        let purposes = self.purposes.read().unwrap_or_else(PoisonError::into_inner);
        purposes.defs.values().find_map(|p| p.field(field.as_str()).cloned())
    }

    /// Checks a stored purpose against its MAC and against the latest audit event that
    /// recorded one of its definitions.
    fn verify_purpose(&self, snapshot: PurposeSnapshot) -> Result<PurposeDef, Error> {
        let key = self.record_key()?;
        let PurposeSnapshot { stored, latest_change } = snapshot;
        if !integrity::macs_equal(&key.purpose(&stored.purpose, stored.rev), &stored.mac) {
            return Err(Error::Crypto);
        }
        let def = PurposeDef::from_stored(stored.purpose, stored.rev, stored.mac)?;
        let latest = latest_change.as_ref().ok_or(Error::Crypto)?;
        if latest.event.purpose.as_ref() != Some(&def.id) {
            return Err(Error::Crypto);
        }
        self.check_latest_change(Some(latest), None, &def.mac)?;
        Ok(def)
    }

    /// Reads every purpose, checking each; a purpose that fails its check is set apart.
    fn load_purposes(&self) -> Result<(), Error> {
        let stored = self.store.purposes()?;
        let mut purposes = self.purposes.write().unwrap_or_else(PoisonError::into_inner);
        for snapshot in stored {
            let id = PurposeId::new(snapshot.stored.purpose.id())
                .map_err(|_| StoreError::Corrupt("invalid stored purpose id".into()))?;
            self.install_purpose(&mut purposes, id, self.verify_purpose(snapshot))?;
        }
        Ok(())
    }

    /// Puts a purpose read from the store in place: a new definition retires the passes of
    /// the old one; one that failed its check is set apart (and retires them too).
    fn install_purpose(
        &self,
        purposes: &mut Purposes,
        id: PurposeId,
        checked: Result<PurposeDef, Error>,
    ) -> Result<(), Error> {
        match checked {
            Ok(def) => {
                purposes.tampered.remove(&id);
                if let Some(old) = purposes.defs.get(&id) {
                    if old.rev == def.rev && integrity::macs_equal(&old.mac, &def.mac) {
                        return Ok(());
                    }
                    old.retire_for(&def);
                }
                purposes.defs.insert(id, Arc::new(def));
                Ok(())
            }
            Err(Error::Crypto) => {
                if let Some(old) = purposes.defs.remove(&id) {
                    old.retired.revoke(AccessDenied::PurposeChanged);
                }
                purposes.tampered.insert(id);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    // ----- customers and fields -----

    /// Creates a customer with a fresh data key (stored only wrapped under the master key).
    pub fn create_customer(&self) -> Result<CustomerId, Error> {
        self.create_customer_with_id(CustomerId::new())
    }

    /// Creates the customer `id` (the fuzz harness needs a known one).
    pub(crate) fn create_customer_with_id(&self, id: CustomerId) -> Result<CustomerId, Error> {
        self.create_customer_as(&self.default_actor, id)
    }

    /// Creates the customer `id`, recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.create_customer", level = "info", skip_all, fields(actor = %actor), err(level = "info", Display)))]
    pub(crate) fn create_customer_as(&self, actor: &Actor, id: CustomerId) -> Result<CustomerId, Error> {
        let created = self.create_with_key(actor, id);
        // The data key was made below this frame.
        scrub_stack();
        created
    }

    /// Makes the customer's data key, stores the customer and caches it, in a frame of its
    /// own that the scrub after it writes over.
    #[inline(never)]
    fn create_with_key(&self, actor: &Actor, id: CustomerId) -> Result<CustomerId, Error> {
        let key = self.record_key()?;
        let now = self.now();
        let (data_key, wrapped) = DataKey::generate(&*self.master, &self.namespace, id, 1)?;
        let wrapped = WrappedKey {
            customer: id,
            version: data_key.version(),
            wrapped,
        };
        let record = CustomerRecord {
            id,
            created_at: now,
            restricted: false,
            erased_at: None,
            rev: 1,
            key_uses: 0,
            mac: [0; 32],
        };
        let state = records::new_customer(key, record, wrapped.clone());
        let written = self.commit(
            vec![Write::InsertCustomer(state.record.clone()), Write::PutKey(wrapped)],
            vec![
                Entry::new(AuditKind::CustomerCreated, Some(id))
                    .actor(actor)
                    .state(state.record.mac),
            ],
        )?;
        let entry = Arc::new(CustomerEntry::new(
            id,
            Some(data_key),
            CustomerState::new_customer(now, state.record.rev, state.record.mac),
        ));
        let mut shard = self.cache.shard(id);
        self.cache.make_room(&mut shard);
        shard.insert(id, entry);
        drop(shard);
        written.durable()?;
        Ok(id)
    }

    /// Encrypts `value` for `field` of `customer` and stores it, replacing (and so destroying)
    /// any earlier value; a rewrite is audited as a rectification (Art. 16).
    ///
    /// The envelope is bound to the write (the customer's revision it is written at), which
    /// the customer's authenticated state records: an older envelope written back into the
    /// store never opens.
    ///
    /// A field that no defined purpose covers is refused with [`Error::UnknownField`]:
    /// collect only what a purpose needs.
    ///
    /// A field with a lookup ([`Vault::define_lookup`]) takes text, and is indexed in the same
    /// atomic change; a value another live customer holds is refused with
    /// [`Error::Duplicate`] and nothing is written.
    pub fn set_field<T: Serialize + ?Sized>(&self, customer: CustomerId, field: &str, value: &T) -> Result<(), Error> {
        self.set_field_as(&self.default_actor, customer, field, value)
    }

    /// [`set_field`](Vault::set_field), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.set_field", level = "info", skip_all, fields(actor = %actor, customer = %customer, field = telemetry::name(field)), err(level = "info", Display)))]
    pub(crate) fn set_field_as<T: Serialize + ?Sized>(
        &self,
        actor: &Actor,
        customer: CustomerId,
        field: &str,
        value: &T,
    ) -> Result<(), Error> {
        let name = self.collectable_field(field)?;
        let plaintext = encode(&name, value, self.max_value_len)?;
        let token = self.token_for_write(&name, &plaintext)?;
        self.with_customer(customer, |entry, state, mut draft| {
            live_key(entry, state)?;
            let kind = if draft.current().fields.contains_key(&name) {
                AuditKind::FieldRectified
            } else {
                AuditKind::FieldWritten
            };
            let mut entries = Vec::new();
            // A key at its budget is replaced in the same change, before this encryption.
            let rotated = if draft.current().record.key_uses >= self.encryption_budget {
                let (key, entry) = self.rekey(entry, state, &mut draft, "budget")?;
                entries.push(entry.actor(actor));
                Some(key)
            } else {
                None
            };
            let envelope = match &rotated {
                Some(key) => key.seal(&self.namespace, customer, name.as_str(), draft.version(), &plaintext)?,
                None => live_key(entry, state)?.seal(
                    &self.namespace,
                    customer,
                    name.as_str(),
                    draft.version(),
                    &plaintext,
                )?,
            };
            draft.use_key(1)?;
            draft.put_field(name.clone(), envelope.clone(), self.now());
            self.index_write(&mut draft, &name, token, &plaintext)?;
            entries.push(Entry::new(kind, Some(customer)).field(&name).actor(actor));
            self.commit_customer(state, draft, entries)
                .map_err(|e| lookups::duplicate_as(e, &name))?;
            if let Some(key) = rotated {
                self.install_key(entry, state, key);
            }
            if let Some(fields) = &mut state.fields {
                fields.insert(name.clone(), envelope);
            }
            Ok(())
        })
    }

    /// Encrypts `value` for `field` of `customer` without storing it: keep the [`Sealed`]
    /// value in your own tables, and open it later with a pass. (Such a value is not bound to
    /// a write of the customer's state: keeping it current is up to you.)
    ///
    /// Each seal counts against the data key's encryption budget: the vault reserves uses in
    /// the store in blocks (one audited write per block of 1,024), and a value sealed under a
    /// key that was rotated since ([`Vault::rotate_customer_key`], or a key at its budget)
    /// no longer opens: seal it again.
    pub fn seal<T: Serialize>(&self, customer: CustomerId, field: &str, value: &T) -> Result<Sealed<T>, Error> {
        self.seal_as(&self.default_actor, customer, field, value)
    }

    /// [`seal`](Vault::seal), recording `actor` (on the reservation of key uses, when one is
    /// made).
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.seal", level = "debug", skip_all, fields(actor = %actor, customer = %customer, field = telemetry::name(field)), err(level = "info", Display)))]
    pub(crate) fn seal_as<T: Serialize>(
        &self,
        actor: &Actor,
        customer: CustomerId,
        field: &str,
        value: &T,
    ) -> Result<Sealed<T>, Error> {
        let name = self.collectable_field(field)?;
        let plaintext = encode(&name, value, self.max_value_len)?;
        for _ in 0..STALE_RETRIES {
            let entry = self.entry(customer)?;
            {
                let mut state = entry.lock();
                if state.evicted {
                    continue;
                }
                if !state.reserved.is_empty() {
                    let envelope = live_key(&entry, &state)?.seal(
                        &self.namespace,
                        customer,
                        name.as_str(),
                        DETACHED_VERSION,
                        &plaintext,
                    )?;
                    state.reserved.start += 1;
                    return Ok(Sealed::new(customer, name, envelope));
                }
            }
            self.reserve_key_uses(actor, customer)?;
        }
        Err(StoreError::Stale.into())
    }

    fn collectable_field(&self, field: &str) -> Result<FieldName, Error> {
        let name = FieldName::new(field)?;
        match self.covering_purpose_name(&name) {
            Some(name) => Ok(name),
            // A purpose whose stored definition failed its check may be the one that covers it.
            None if self.has_tampered_purposes() => Err(Error::Crypto),
            None => Err(Error::UnknownField(name)),
        }
    }

    fn has_tampered_purposes(&self) -> bool {
        !self
            .purposes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .tampered
            .is_empty()
    }

    // ----- consent -----

    /// Records the customer's consent to `purpose` (or, for a purpose on another lawful
    /// basis, the record of that basis for this customer), under the purpose's current notice
    /// version, expiring after its consent lifetime. A live earlier record is kept as history,
    /// marked superseded by this one.
    ///
    /// Special-category purposes need [`Evidence::explicit`]. After an objection to a direct
    /// marketing purpose, no new record is accepted ([`AccessDenied::Objected`]).
    ///
    /// A purpose covered by the Global Privacy Control signal
    /// ([`Purpose::is_covered_by_gpc`]) asked for with evidence that carries the signal
    /// ([`Evidence::gpc`]) needs [`Evidence::explicit`] too: the customer confirmed it despite
    /// the signal, which the record keeps (its evidence has both marks) and the audit event
    /// notes (`despite_gpc`). Without it the consent is refused with [`Error::GpcConflict`]
    /// and nothing is written. To record the customer's choices too, see
    /// [`give_consent_with`](Vault::give_consent_with).
    pub fn give_consent(&self, customer: CustomerId, purpose: &str, evidence: Evidence) -> Result<ConsentId, Error> {
        self.give_consent_as(&self.default_actor, customer, purpose, evidence)
    }

    /// [`give_consent`](Vault::give_consent), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.give_consent", level = "info", skip_all, fields(actor = %actor, customer = %customer, purpose = telemetry::name(purpose)), err(level = "info", Display)))]
    pub(crate) fn give_consent_as(
        &self,
        actor: &Actor,
        customer: CustomerId,
        purpose: &str,
        evidence: Evidence,
    ) -> Result<ConsentId, Error> {
        self.record_consent(actor, customer, purpose, evidence, None, false)
    }

    /// Withdraws the customer's consent to `purpose` (or ends the record of its other basis).
    /// When this returns, every pass already issued for this customer and purpose is refused
    /// with [`AccessDenied::Withdrawn`], in every thread. Withdrawing twice is harmless.
    pub fn withdraw_consent(&self, customer: CustomerId, purpose: &str) -> Result<(), Error> {
        self.withdraw_consent_as(&self.default_actor, customer, purpose)
    }

    /// [`withdraw_consent`](Vault::withdraw_consent), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.withdraw_consent", level = "info", skip_all, fields(actor = %actor, customer = %customer, purpose = telemetry::name(purpose)), err(level = "info", Display)))]
    pub(crate) fn withdraw_consent_as(&self, actor: &Actor, customer: CustomerId, purpose: &str) -> Result<(), Error> {
        let def = self.purpose_def(purpose)?;
        self.with_customer(customer, |_, state, mut draft| {
            if let Some(current) = state.current.get(&def.id) {
                if current.withdrawn_at.is_none() {
                    let mut ended = current.clone();
                    ended.withdrawn_at = Some(self.now());
                    draft.put_consent(ended.clone());
                    self.commit_customer(
                        state,
                        draft,
                        vec![
                            Entry::new(AuditKind::ConsentWithdrawn, Some(customer))
                                .purpose(&def.id)
                                .detail(ended.id.to_string())
                                .actor(actor),
                        ],
                    )?;
                    state.current.insert(def.id.clone(), ended);
                }
            }
            state.revoke(&def.id, AccessDenied::Withdrawn);
            Ok(())
        })
    }

    /// Every consent record of a customer, history included, oldest first, each checked
    /// against its MAC and the customer's state.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.consents", level = "debug", skip_all, fields(customer = %customer), err(level = "info", Display)))]
    pub fn consents(&self, customer: CustomerId) -> Result<Vec<Consent>, Error> {
        Ok(self.verified_customer(customer)?.consents_in_order())
    }

    // ----- the gate -----

    /// Checks that `customer` has a valid record for `purpose` (consent given under the
    /// current notice, unexpired, unwithdrawn, no objection, no restriction), writes the
    /// decision to the audit log, and on success returns the pass that opens the purpose's
    /// fields.
    ///
    /// Denials are `Err(Error::Denied(reason))`, also audited. An erased customer gives
    /// [`Error::Erased`], audited as a denial too. If the audit log cannot be written, the
    /// access fails.
    pub fn authorize(&self, customer: CustomerId, purpose: &str) -> Result<AccessPass, Error> {
        self.authorize_as(&self.default_actor, customer, purpose)
    }

    /// [`authorize`](Vault::authorize), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.authorize", level = "debug", skip_all, fields(actor = %actor, customer = %customer, purpose = telemetry::name(purpose)), err(level = "info", Display)))]
    pub(crate) fn authorize_as(&self, actor: &Actor, customer: CustomerId, purpose: &str) -> Result<AccessPass, Error> {
        let def = self.purpose_def(purpose)?;
        self.with_cached_customer(customer, |entry, state| {
            let now = self.recording_now();
            if state.erased {
                self.journal.record(
                    self.store.as_ref(),
                    vec![
                        Entry::new(AuditKind::AccessDenied, Some(customer))
                            .purpose(&def.id)
                            .detail("erased")
                            .actor(actor),
                    ],
                    now,
                )?;
                return Err(Error::Erased(customer));
            }
            let record = state.current.get(&def.id);
            match decide(record, &def, state.standing(&def.id), None, now) {
                Ok(()) => {
                    let pass_end = now + self.pass_lifetime;
                    let expiry = record.and_then(|r| crate::consent::expiry(r, &def.purpose));
                    let (valid_until, ends_with_consent) = match expiry {
                        Some(t) if t <= pass_end => (t, true),
                        _ => (pass_end, false),
                    };
                    self.journal.record(
                        self.store.as_ref(),
                        vec![
                            Entry::new(AuditKind::AccessGranted, Some(customer))
                                .purpose(&def.id)
                                .actor(actor),
                        ],
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
                        vec![
                            Entry::new(kind, Some(customer))
                                .purpose(&def.id)
                                .detail(reason.code())
                                .actor(actor),
                        ],
                        now,
                    )?;
                    Err(reason.into())
                }
            }
        })
    }

    /// Reads a stored field through a pass: the pass must be live and its purpose must
    /// cover the field.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.reveal", level = "debug", skip_all, fields(customer = %pass.customer(), purpose = pass.purpose().as_str(), field = telemetry::name(field)), err(level = "info", Display)))]
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
        let mut state = pass.entry.lock();
        let mut stale = false;
        if self.cache_ttl.is_some() && !state.erased && !state.evicted {
            // Likewise a withdrawal, restriction or erasure made elsewhere. A new data key made
            // elsewhere has revoked the pass (the check below says so) and evicted the entry.
            match self.refresh(&pass.entry, &mut state, Refresh::IfStale) {
                Err(Error::Storage(StoreError::Stale)) => stale = true,
                other => other?,
            }
        }
        let parts = self.envelope_for(pass, &mut state, field);
        drop(state);
        if stale {
            self.cache.remove_entry(&pass.entry);
        }
        let (name, key, version, envelope) = parts?;
        let plaintext = match key.open_owned(&self.namespace, customer, name.as_str(), version, envelope) {
            Err(Error::Crypto) if self.cache_ttl.is_some() && !stale => {
                // Another process may have rewritten the field since this vault checked the
                // customer's state (within the time-to-live): its envelope is then bound to a
                // newer write version than the cached one. Check the stored state again and
                // open once more; a tampered envelope fails this time too.
                let mut state = pass.entry.lock();
                let mut rotated = false;
                if !state.erased && !state.evicted {
                    match self.refresh(&pass.entry, &mut state, Refresh::Always) {
                        // A new data key made elsewhere: the pass is revoked (checked below).
                        Err(Error::Storage(StoreError::Stale)) => rotated = true,
                        other => other?,
                    }
                }
                state.fields = None;
                let parts = self.envelope_for(pass, &mut state, field);
                drop(state);
                if rotated {
                    self.cache.remove_entry(&pass.entry);
                }
                let (name, key, version, envelope) = parts?;
                key.open_owned(&self.namespace, customer, name.as_str(), version, envelope)?
            }
            other => other?,
        };
        decode(name, &plaintext)
    }

    /// Checks a pass for one use on `field` and gives what opening the field's envelope needs:
    /// its name, the data key, the write version from the customer's checked state (never the
    /// store's row: an envelope written back from an earlier write does not open under it)
    /// and the envelope.
    fn envelope_for<'p>(
        &self,
        pass: &'p AccessPass,
        state: &mut CustomerState,
        field: &str,
    ) -> Result<(&'p FieldName, KeyRef<'p>, u64, Vec<u8>), Error> {
        let customer = pass.customer();
        let (name, key) = pass.check(customer, field)?;
        let version = state.version(name).ok_or_else(|| Error::UnknownField(name.clone()))?;
        // The envelopes are ciphertext: caching them keeps the store off the hot path.
        // INVARIANT: every change to a customer's fields made through this vault updates or
        // drops this copy under the same lock (set_field, erasure, the sweep, a refresh from
        // the store).
        if state.fields.is_none() {
            let stored = telemetry::store_call("fields", || self.store.fields(customer))?;
            state.fields = Some(stored.into_iter().map(|f| (f.field, f.envelope)).collect());
        }
        let envelope = state
            .fields
            .as_ref()
            .and_then(|fields| fields.get(name))
            .cloned()
            // The checked state says the field is stored: a missing row is a store that lost or
            // dropped it.
            .ok_or(Error::Crypto)?;
        Ok((name, key, version, envelope))
    }

    // ----- audit -----

    /// Every audit event about a customer, oldest first, each checked against its chained MAC
    /// first: an edited, forged or foreign row fails the call with [`Error::AuditBroken`] (or a
    /// corrupt-store error) rather than being returned. A row deleted from the store is not
    /// seen here; [`verify_audit`](Vault::verify_audit) catches that.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.audit_events", level = "debug", skip_all, fields(customer = %customer), err(level = "info", Display)))]
    pub fn audit_events(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, Error> {
        self.flush_audit()?;
        let key = self.journal.key().ok_or(Error::Crypto)?;
        self.checked_trail(key, customer)
    }

    /// Writes the access events waiting under [`AuditBatching`] now (a no-op without
    /// batching). Reading the log, and dropping the vault, flush too.
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(name = "egard.flush_audit", level = "debug", skip_all, err(level = "info", Display))
    )]
    pub fn flush_audit(&self) -> Result<(), Error> {
        self.journal.flush(self.store.as_ref(), self.recording_now())
    }

    /// Verifies the whole audit chain: sequence numbers from 1 without gaps, every MAC, and
    /// that the log reaches the last event this vault wrote. Any edited, dropped, inserted or
    /// reordered event is reported as [`Error::AuditBroken`] with its sequence number. A vault
    /// whose master keys cannot open the stored audit key gets [`Error::Crypto`].
    ///
    /// A log cut back together with the changes it recorded (a whole-database restore) still
    /// verifies here when this vault did not write past the cut: keep
    /// [`audit_anchor`](Vault::audit_anchor)s outside the database and use
    /// [`verify_audit_against`](Vault::verify_audit_against).
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(name = "egard.verify_audit", level = "info", skip_all, err(level = "info", Display))
    )]
    pub fn verify_audit(&self) -> Result<AuditReport, Error> {
        self.verify_chain(None)
    }

    /// Verifies the whole audit chain as [`verify_audit`](Vault::verify_audit) does, and that
    /// it has not been cut back behind `anchor`: a log that ends before the anchor, or holds
    /// another event at its sequence number, fails with [`Error::AuditBroken`] and
    /// [`AuditBreak::Truncated`].
    ///
    /// ```
    /// use egard::{MasterKey, MemoryStore, Vault};
    ///
    /// let vault = Vault::builder().master_key(MasterKey::from_bytes([1; 32])).store(MemoryStore::new()).build()?;
    /// vault.create_customer()?;
    /// let anchor = vault.audit_anchor()?;          // keep it outside the database
    /// let line = serde_json::to_string(&anchor).unwrap();
    /// vault.create_customer()?;
    /// let anchor: egard::AuditAnchor = serde_json::from_str(&line).unwrap();
    /// assert_eq!(vault.verify_audit_against(&anchor)?.events_verified, 2);
    /// # Ok::<(), egard::Error>(())
    /// ```
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.verify_audit_against", level = "info", skip_all, fields(anchor_seq = anchor.seq), err(level = "info", Display)))]
    pub fn verify_audit_against(&self, anchor: &AuditAnchor) -> Result<AuditReport, Error> {
        self.verify_chain(Some(anchor))
    }

    /// The audit log's head as an [`AuditAnchor`] (sequence number and MAC, after writing any
    /// queued access events), its MAC checked against the event before it. An empty log gives
    /// the anchor at sequence number 0.
    ///
    /// Keep anchors where whoever can write to the database cannot reach them: a log line
    /// shipped elsewhere, a file on another system, a ticket, a transparency log. Take one at
    /// least as often as you could bear to lose changes without noticing (every minute, or
    /// after each batch of changes), and give the latest to
    /// [`VaultBuilder::audit_anchor`] when a vault starts.
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(name = "egard.audit_anchor", level = "debug", skip_all, err(level = "info", Display))
    )]
    pub fn audit_anchor(&self) -> Result<AuditAnchor, Error> {
        self.flush_audit()?;
        let key = self.journal.key().ok_or(Error::Crypto)?;
        let Some(head) = self.store.audit_head()? else {
            return Ok(AuditAnchor { seq: 0, mac: [0; 32] });
        };
        let prev = self.mac_before(head.seq)?;
        if !integrity::macs_equal(&audit::chain_mac(key, &prev, &head), &head.mac) {
            return Err(Error::AuditBroken {
                seq: head.seq,
                problem: AuditBreak::MacMismatch,
            });
        }
        Ok(AuditAnchor {
            seq: head.seq,
            mac: head.mac,
        })
    }

    /// The MAC of the event before `seq` (32 zero bytes before the first).
    fn mac_before(&self, seq: u64) -> Result<[u8; 32], Error> {
        let Some(prev_seq) = seq.checked_sub(1).filter(|&s| s > 0) else {
            return Ok([0; 32]);
        };
        match self.store.audit_range(prev_seq, 1)?.first() {
            Some(e) if e.seq == prev_seq => Ok(e.mac),
            _ => Err(Error::AuditBroken {
                seq: prev_seq,
                problem: AuditBreak::SequenceGap,
            }),
        }
    }

    /// Refuses a log cut back behind `anchor`.
    fn check_anchor(&self, anchor: &AuditAnchor) -> Result<(), Error> {
        if anchor.seq == 0 {
            return Ok(());
        }
        let truncated = Error::AuditBroken {
            seq: anchor.seq,
            problem: AuditBreak::Truncated,
        };
        match self.store.audit_range(anchor.seq, 1)?.first() {
            Some(e) if e.seq == anchor.seq => {
                if integrity::macs_equal(&e.mac, &anchor.mac) {
                    Ok(())
                } else {
                    Err(truncated)
                }
            }
            // Not in the store: archived (an anchor below the base cannot be checked from the
            // store alone; one at the base must name its MAC), or cut back.
            _ => match self.audit_base()? {
                Some(base) if anchor.seq < base.anchor.seq => Ok(()),
                Some(base) if anchor.seq == base.anchor.seq && integrity::macs_equal(&base.anchor.mac, &anchor.mac) => {
                    Ok(())
                }
                _ => Err(truncated),
            },
        }
    }

    fn verify_chain(&self, anchor: Option<&AuditAnchor>) -> Result<AuditReport, Error> {
        self.verify_chain_with(anchor, &mut |_| {})
    }

    /// [`verify_audit`](Vault::verify_audit), reporting its progress every 1,024 events (a
    /// log of millions of events takes a while: see `BENCHMARKS.md`).
    pub fn verify_audit_with_progress(&self, progress: &mut dyn FnMut(AuditProgress)) -> Result<AuditReport, Error> {
        self.verify_chain_with(None, progress)
    }

    /// Verifies the chain; after an archival, from the audit base on (see the `archive`
    /// module): the base record's MAC, the kept rows at or below it against its digest, then
    /// every event after it chained from its MAC.
    fn verify_chain_with(
        &self,
        anchor: Option<&AuditAnchor>,
        progress: &mut dyn FnMut(AuditProgress),
    ) -> Result<AuditReport, Error> {
        const PAGE: usize = 1024;
        self.flush_audit()?;
        let key = self.journal.key().ok_or(Error::Crypto)?;
        // The last event this vault wrote is an anchor too: the log must still hold it.
        let written = self.journal.written_head();
        let known_seq = written.seq.max(anchor.map_or(0, |a| a.seq));
        let base = self.audit_base()?;
        let mut prev = [0u8; 32];
        let mut verified = 0u64;
        let mut count = 0u64;
        if let Some(base) = &base {
            let kept = self.checked_kept(key, base, progress)?;
            // An anchor in the archived range (also this vault's last event, when another
            // process archived past it): checked against the kept row at its sequence number
            // if the store kept one (the base's at least); below that, only a segment can
            // show it (`verify_audit_with_segments`).
            for a in anchor.into_iter().chain([&written]) {
                if a.seq == 0 || a.seq > base.anchor.seq {
                    continue;
                }
                if let Some(row) = kept.iter().find(|r| r.seq == a.seq) {
                    if !integrity::macs_equal(&row.mac, &a.mac) {
                        return Err(Error::AuditBroken {
                            seq: a.seq,
                            problem: AuditBreak::Truncated,
                        });
                    }
                }
            }
            prev = base.anchor.mac;
            verified = base.anchor.seq;
            count = base.kept;
        }
        'pages: while let Some(from) = verified.checked_add(1) {
            let page = self.store.audit_range(from, PAGE)?;
            for event in &page {
                // INVARIANT: the loop stops once `verified` reaches u64::MAX.
                audit::follow(
                    key,
                    &AuditAnchor {
                        seq: verified,
                        mac: prev,
                    },
                    event,
                )?;
                if event.kind == AuditKind::AuditArchived {
                    // An archival up to `through` leaves a base at or above it: without one,
                    // the base was deleted (and the pruned rows perhaps written back).
                    let through = archive::archived_through(&event.detail)?;
                    if base.as_ref().is_none_or(|b| b.anchor.seq < through) {
                        return Err(Error::AuditBroken {
                            seq: through,
                            problem: AuditBreak::Truncated,
                        });
                    }
                }
                let replaced = |a: &AuditAnchor| a.seq == event.seq && !integrity::macs_equal(&a.mac, &event.mac);
                if anchor.is_some_and(replaced) || replaced(&written) {
                    // A valid chain with another event where the anchor stands: the log was
                    // cut back behind it and written again.
                    return Err(Error::AuditBroken {
                        seq: event.seq,
                        problem: AuditBreak::Truncated,
                    });
                }
                prev = event.mac;
                verified = event.seq;
                count = count.saturating_add(1);
                if verified == u64::MAX {
                    break 'pages;
                }
            }
            progress(AuditProgress {
                stage: AuditStage::Verifying,
                events: count,
                seq: verified,
            });
            if page.len() < PAGE {
                break;
            }
        }
        if verified < known_seq {
            return Err(Error::AuditBroken {
                seq: verified.saturating_add(1),
                problem: AuditBreak::Truncated,
            });
        }
        if let Some(head) = self.store.audit_head()? {
            if head.seq != verified {
                return Err(Error::AuditBroken {
                    seq: verified.saturating_add(1),
                    problem: AuditBreak::SequenceGap,
                });
            }
        }
        Ok(AuditReport {
            events_verified: count,
            head_mac: crate::consent::hex(&prev),
        })
    }

    // ----- internals -----

    /// Applies `writes` together with the audit events for `entries`, atomically. Apply the
    /// change's effects in memory, then report [`Written::durable`].
    fn commit(&self, writes: Vec<Write>, entries: Vec<Entry>) -> Result<Written, Error> {
        self.journal
            .commit(self.store.as_ref(), writes, entries, self.recording_now())
    }

    /// Applies a customer's change: its records, the customer's record at the next revision
    /// with its new state MAC, and the audit events for `entries`, each carrying that state
    /// MAC; then notes the new state in the cached entry.
    fn commit_customer(&self, state: &mut CustomerState, draft: Draft<'_>, entries: Vec<Entry>) -> Result<(), Error> {
        let finished = draft.finish();
        let mac = finished.state.record.mac;
        let entries = entries.into_iter().map(|e| e.state(mac)).collect();
        let written = self.commit(finished.writes, entries)?;
        note_state(state, &finished.state);
        written.durable()
    }

    /// The cached entry of a customer, read from the store and checked on first touch.
    fn entry(&self, id: CustomerId) -> Result<Arc<CustomerEntry>, Error> {
        let mut shard = self.cache.shard(id);
        if let Some(entry) = shard.get(&id) {
            entry.touch();
            return Ok(entry.clone());
        }
        let entry = self.load_entry(id, &mut shard);
        drop(shard);
        // The data key was unwrapped below this frame.
        scrub_stack();
        entry
    }

    /// Reads a customer missing from the cache, checks it, unwraps its data key and caches
    /// it (the caller holds the shard's lock).
    #[inline(never)]
    fn load_entry(
        &self,
        id: CustomerId,
        shard: &mut HashMap<CustomerId, Arc<CustomerEntry>>,
    ) -> Result<Arc<CustomerEntry>, Error> {
        // Loaded under the shard lock, so that no change to this customer can slip between
        // the read and the insertion (changes go through the cached entry).
        let snapshot =
            telemetry::store_call("customer", || self.store.customer(id))?.ok_or(Error::UnknownCustomer(id))?;
        let verified = self.verify_customer(id, snapshot, Anchor::Log)?;
        let key = match verified.record.erased_at {
            Some(_) => None,
            None => Some(self.unwrap_key(id, &verified)?),
        };
        let entry = Arc::new(CustomerEntry::new(
            id,
            key,
            CustomerState::from_verified(&verified, self.now()),
        ));
        self.cache.make_room(shard);
        shard.insert(id, entry.clone());
        Ok(entry)
    }

    /// Runs `change` on a customer under the entry's lock, with a [`Draft`] on top of the
    /// customer's stored state, read now and checked: against the cached state if it is the
    /// same, against the log if another process changed it (the cached entry is then brought
    /// up to date first, its passes revoked as the change calls for). Starts again if the
    /// entry left the cache meanwhile, or if another writer changed the customer between the
    /// read and the write.
    fn with_customer<R>(
        &self,
        id: CustomerId,
        mut change: impl FnMut(&Arc<CustomerEntry>, &mut CustomerState, Draft<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let key = self.record_key()?;
        let mut attempts = 0;
        loop {
            let entry = self.entry(id)?;
            let mut state = entry.lock();
            if state.evicted {
                continue;
            }
            let result = self
                .read_for_change(&entry, &mut state)
                .and_then(|verified| change(&entry, &mut state, Draft::new(key, verified)?));
            match result {
                Err(Error::Storage(StoreError::Stale)) if attempts + 1 < STALE_RETRIES => {
                    attempts += 1;
                    let stale = state.evicted;
                    drop(state);
                    if stale {
                        self.cache.remove_entry(&entry);
                    }
                }
                other => return other,
            }
        }
    }

    /// Reads the customer's stored state for a change and brings the cached entry up to date.
    fn read_for_change(&self, entry: &CustomerEntry, state: &mut CustomerState) -> Result<Verified, Error> {
        let snapshot = telemetry::store_call("customer", || self.store.customer(entry.id))?
            .ok_or(Error::UnknownCustomer(entry.id))?;
        let verified = self.verify_customer(entry.id, snapshot, Anchor::Known(state.mac))?;
        if !integrity::macs_equal(&verified.record.mac, &state.mac) {
            self.bring_up_to_date(entry, state, &verified)?;
        }
        Ok(verified)
    }

    /// Runs `check` under a customer's lock with the cached copy, re-read only once older than
    /// the time-to-live (the hot path of `authorize`).
    fn with_cached_customer<R>(
        &self,
        id: CustomerId,
        mut check: impl FnMut(&Arc<CustomerEntry>, &mut CustomerState) -> Result<R, Error>,
    ) -> Result<R, Error> {
        loop {
            let entry = self.entry(id)?;
            let mut state = entry.lock();
            if state.evicted {
                continue;
            }
            if !state.erased {
                match self.refresh(&entry, &mut state, Refresh::IfStale) {
                    Err(Error::Storage(StoreError::Stale)) => {
                        drop(state);
                        self.cache.remove_entry(&entry);
                        continue;
                    }
                    other => other?,
                }
            }
            return check(&entry, &mut state);
        }
    }

    /// Re-reads the purpose definitions when the cache time-to-live has passed (or always, when
    /// asked): a purpose defined or redefined by another process is used from then on, and the
    /// passes issued under the old definition stop, as [`Vault::define_purpose`] stops them.
    fn refresh_purposes(&self, when: Refresh) -> Result<(), Error> {
        let now = self.now();
        match (self.cache_ttl, when) {
            (_, Refresh::Always) => {}
            (None, Refresh::IfStale) => return Ok(()),
            (Some(ttl), Refresh::IfStale) => {
                let loaded = self.purposes_loaded_at.lock().unwrap_or_else(PoisonError::into_inner);
                if now < *loaded + ttl {
                    return Ok(());
                }
            }
        }
        let stored = self.store.purposes()?;
        let mut purposes = self.purposes.write().unwrap_or_else(PoisonError::into_inner);
        for snapshot in stored {
            let id = PurposeId::new(snapshot.stored.purpose.id())
                .map_err(|_| StoreError::Corrupt("invalid stored purpose id".into()))?;
            let unchanged = purposes
                .defs
                .get(&id)
                .is_some_and(|d| d.rev == snapshot.stored.rev && integrity::macs_equal(&d.mac, &snapshot.stored.mac));
            if unchanged {
                continue;
            }
            self.install_purpose(&mut purposes, id, self.verify_purpose(snapshot))?;
        }
        *self.purposes_loaded_at.lock().unwrap_or_else(PoisonError::into_inner) = now;
        Ok(())
    }

    /// With several processes on the store (`cache_ttl` set), re-reads the customer's state
    /// when the time-to-live has passed, or always.
    fn refresh(&self, entry: &CustomerEntry, state: &mut CustomerState, when: Refresh) -> Result<(), Error> {
        let Some(ttl) = self.cache_ttl else {
            return Ok(());
        };
        let now = self.now();
        if when == Refresh::IfStale {
            if state.loaded_at.is_some_and(|t| now < t + ttl) {
                return Ok(());
            }
            // One small read first: most customers did not change since, and the state this
            // entry holds was checked when it was read or written.
            if let Some((rev, mac)) =
                telemetry::store_call("customer_revision", || self.store.customer_revision(entry.id))?
            {
                if rev == state.rev && integrity::macs_equal(&mac, &state.mac) {
                    state.loaded_at = Some(now);
                    return Ok(());
                }
            }
        }
        let snapshot = telemetry::store_call("customer", || self.store.customer(entry.id))?
            .ok_or(Error::UnknownCustomer(entry.id))?;
        let verified = self.verify_customer(entry.id, snapshot, Anchor::Known(state.mac))?;
        if !integrity::macs_equal(&verified.record.mac, &state.mac) {
            self.bring_up_to_date(entry, state, &verified)?;
        }
        state.loaded_at = Some(now);
        Ok(())
    }

    /// Brings a cached entry up to the customer's checked stored state, changed by another
    /// process: passes are revoked as a withdrawal, objection, restriction or erasure calls
    /// for. A new data key (a key rotation elsewhere) revokes every pass and marks the entry
    /// evicted: the caller drops it from the cache, once its lock is released, and starts
    /// again ([`StoreError::Stale`]).
    fn bring_up_to_date(
        &self,
        entry: &CustomerEntry,
        state: &mut CustomerState,
        verified: &Verified,
    ) -> Result<(), Error> {
        let fresh = CustomerState::from_verified(verified, self.now());
        if fresh.erased {
            state.revoke_erased();
            entry.erase_key();
            note_state(state, verified);
            return Ok(());
        }
        if entry.key_version() != verified.newest_key().map(|k| k.version) {
            state.revoke_all(AccessDenied::PassExpired);
            state.fields = None;
            state.evicted = true;
            return Err(StoreError::Stale.into());
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
        note_state(state, verified);
        Ok(())
    }

    /// Unwraps the customer's newest data key (its version bound by the checked state) with
    /// the master key its envelope names, for the customer asked for.
    fn unwrap_key(&self, id: CustomerId, verified: &Verified) -> Result<DataKey, Error> {
        let wrapped = verified.newest_key().ok_or(Error::Crypto)?;
        let kek = self.keyring().kek_for(&wrapped.wrapped)?;
        DataKey::unwrap(kek, &self.namespace, id, wrapped.version, &wrapped.wrapped)
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
    /// Now.
    Always,
}

/// Notes in a cached entry the revision, state MAC, field versions and current records of the
/// state it now reflects.
fn note_state(state: &mut CustomerState, verified: &Verified) {
    state.rev = verified.record.rev;
    state.mac = verified.record.mac;
    state.versions = verified.versions();
    // A change may rewrite a current record in place (a key rotation seals its choices
    // again): keep the cached copy the same as the stored one.
    for record in state.current.values_mut() {
        if let Some((stored, _)) = verified.consents.get(&record.id) {
            if stored != record {
                record.clone_from(stored);
            }
        }
    }
    if let Some(fields) = &mut state.fields {
        fields.retain(|name, _| verified.fields.contains_key(name));
    }
}

/// The data key of a customer that was not erased, read-locked for one use.
fn live_key<'a>(entry: &'a CustomerEntry, state: &CustomerState) -> Result<KeyRef<'a>, Error> {
    if state.erased {
        return Err(Error::Erased(entry.id));
    }
    entry.key()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Evidence, LawfulBasis, MemoryStore};

    fn batched_vault(store: Arc<MemoryStore>, max_events: usize) -> Vault {
        define_p(
            Vault::builder()
                .master_key(MasterKey::from_bytes([3; 32]))
                .store(store)
                .audit_batching(max_events, std::time::Duration::from_secs(3600))
                .build()
                .unwrap(),
        )
    }

    /// One of several vaults on one store (each with a time-to-live, as they must be).
    fn shared_vault(store: Arc<MemoryStore>, key: u8) -> Vault {
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([key; 32]))
            .store(store)
            .cache_ttl(Duration::hours(1))
            .build()
            .unwrap();
        if key == 3 { define_p(vault) } else { vault }
    }

    fn define_p(vault: Vault) -> Vault {
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
    fn batched_access_events_wait_for_the_batch_and_changes_do_not_wait_for_them() {
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
        // A change is written at once, on its own: the queued grant waits for its batch.
        vault.withdraw_consent(c, "p").unwrap();
        let kinds = stored_kinds(&store);
        assert_eq!(kinds[before..], [AuditKind::ConsentWithdrawn]);
        assert!(vault.authorize(c, "p").is_err());
        assert_eq!(stored_kinds(&store).len(), before + 1, "the grant and a denial queued");
        assert!(vault.authorize(c, "p").is_err());
        assert_eq!(
            stored_kinds(&store)[before..],
            [
                AuditKind::ConsentWithdrawn,
                AuditKind::AccessGranted,
                AuditKind::AccessDenied,
                AuditKind::AccessDenied
            ],
            "the second denial filled the batch of three, written in the order decided"
        );
        let log = store.audit_range(1, usize::MAX).unwrap();
        assert!(
            log[before + 1].at <= log[before].at,
            "the grant's time says it was decided before the withdrawal written ahead of it"
        );
        assert_eq!(vault.verify_audit().unwrap().events_verified, (before + 4) as u64);
    }

    #[test]
    fn a_second_vault_without_a_time_to_live_on_one_store_is_refused() {
        let store = Arc::new(MemoryStore::new());
        let first = batched_vault(store.clone(), 1);
        let refused = Vault::builder()
            .master_key(MasterKey::from_bytes([3; 32]))
            .store(store.clone())
            .build();
        assert!(matches!(refused, Err(Error::Config(_))));
        let shared = Vault::builder()
            .master_key(MasterKey::from_bytes([3; 32]))
            .store(store.clone())
            .cache_ttl(Duration::seconds(1))
            .build();
        assert!(
            matches!(shared, Err(Error::Config(_))),
            "nor one with a time-to-live beside it"
        );
        drop(first);
        let second = batched_vault(store.clone(), 1);
        drop(second);
        let a = shared_vault(store.clone(), 3);
        let b = shared_vault(store.clone(), 3);
        assert!(matches!(
            Vault::builder()
                .master_key(MasterKey::from_bytes([3; 32]))
                .store(store)
                .build(),
            Err(Error::Config(_))
        ));
        drop((a, b));
    }

    #[test]
    fn a_vault_with_another_master_key_cannot_extend_the_chain() {
        let store = Arc::new(MemoryStore::new());
        let right = shared_vault(store.clone(), 3);
        right.create_customer().unwrap();
        // Another key under the same id: the vault is not even built (one opaque error).
        let wrong = Vault::builder()
            .master_key(MasterKey::from_bytes([4; 32]))
            .store(store.clone())
            .cache_ttl(Duration::hours(1))
            .build();
        assert!(matches!(wrong, Err(Error::Crypto)));
        // Another id: said plainly, naming the ids.
        let wrong = Vault::builder()
            .master_key(MasterKey::from_bytes([3; 32]).with_id(7))
            .store(store.clone())
            .cache_ttl(Duration::hours(1))
            .build();
        assert!(matches!(
            wrong,
            Err(Error::WrongMasterKey { ref expected, ref given }) if expected == &[1] && given == &[7]
        ));
        let other = Purpose::new("q", LawfulBasis::Consent).fields(["email"]);
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
        let issuer = shared_vault(store.clone(), 3);
        let other = shared_vault(store, 3);
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
