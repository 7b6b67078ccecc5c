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

use crate::audit::AuditEvent;
use crate::consent::Consent;
use crate::ids::{CustomerId, FieldName, PurposeId};
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
}

/// A customer as stored: an id, some dates and flags, no personal data.
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
    /// Inserts or replaces a purpose definition.
    PutPurpose(Purpose),
    /// Inserts a new customer (fails with [`StoreError::Conflict`] if the id exists).
    InsertCustomer(CustomerRecord),
    /// Inserts or replaces a wrapped data key of an existing customer.
    PutKey(WrappedKey),
    /// Sets or clears the restriction flag of an existing customer.
    SetRestricted {
        /// The customer.
        customer: CustomerId,
        /// The new flag.
        restricted: bool,
    },
    /// Inserts or replaces a sealed field of an existing customer.
    PutField {
        /// The customer.
        customer: CustomerId,
        /// The field.
        field: FieldName,
        /// The field envelope (ciphertext).
        envelope: Vec<u8>,
        /// When it was written.
        at: DateTime<Utc>,
    },
    /// Deletes a sealed field, if present.
    DeleteField {
        /// The customer.
        customer: CustomerId,
        /// The field.
        field: FieldName,
    },
    /// Inserts a consent record, or replaces the record with the same id.
    PutConsent(Consent),
    /// Records an objection.
    PutObjection(Objection),
    /// Crypto-shredding: deletes every wrapped key and sealed field of the customer and marks
    /// the customer record erased at the given time. Consents and audit events stay (they
    /// hold no personal data).
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
}

impl Write {
    /// The customer this write must find stored, and whether it is refused once that customer
    /// was erased: `Some((customer, refused_once_erased))`, or `None` for writes that name no
    /// existing customer. This is the [`Store`] contract's rule for
    /// [`StoreError::MissingCustomer`], for backends to apply.
    pub fn target_customer(&self) -> Option<(CustomerId, bool)> {
        match self {
            Write::PutKey(k) => Some((k.customer, true)),
            Write::PutField { customer, .. } | Write::SetRestricted { customer, .. } => Some((*customer, true)),
            Write::DeleteField { customer, .. } | Write::EraseCustomer { customer, .. } => Some((*customer, false)),
            Write::PutConsent(c) => Some((c.customer, false)),
            Write::PutObjection(o) => Some((o.customer, false)),
            Write::PutPurpose(_)
            | Write::InsertCustomer(_)
            | Write::AppendAudit(_)
            | Write::InsertSecret(_)
            | Write::ReplaceSecret(_) => None,
        }
    }
}

/// A sealed field as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredField {
    /// The field.
    pub field: FieldName,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// When it was last written.
    pub written_at: DateTime<Utc>,
}

/// Everything stored about one customer, read at once (one round trip where it matters).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSnapshot {
    /// The customer record.
    pub record: CustomerRecord,
    /// The wrapped data keys, any order.
    pub keys: Vec<WrappedKey>,
    /// Every consent record, history included, any order.
    pub consents: Vec<Consent>,
    /// Every objection, any order.
    pub objections: Vec<Objection>,
}

/// A storage backend. Implementations must be safe to share between threads.
///
/// Contract, checked by the conformance suite:
/// - [`apply`](Store::apply) is atomic: after an error, none of the batch is visible;
///   after success, all of it is, to every later read (also after a crash and reopen for a
///   durable backend).
/// - Writes naming a customer that was never inserted fail with
///   [`StoreError::MissingCustomer`], except `AppendAudit` and `PutPurpose`. Once a
///   customer is erased (also earlier in the same batch), `PutKey`, `PutField` and
///   `SetRestricted` fail the same way; consents, objections, field deletions and a
///   repeated erasure (which keeps the first `erased_at`) are still accepted.
/// - A duplicate `InsertCustomer` id or `AppendAudit` sequence number, stored or earlier in
///   the same batch, fails with [`StoreError::Conflict`]; so does an `InsertSecret` whose
///   name exists, stored or earlier in the same batch.
/// - Reads of missing things are `Ok(None)` or empty, not errors.
pub trait Store: Send + Sync + 'static {
    /// Applies a batch of writes atomically.
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError>;

    /// Every purpose definition.
    fn purposes(&self) -> Result<Vec<Purpose>, StoreError>;

    /// Everything about one customer but their sealed fields; `None` if never created.
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError>;

    /// One sealed field.
    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError>;

    /// Every sealed field of a customer, any order.
    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError>;

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
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        (**self).apply(batch)
    }
    fn purposes(&self) -> Result<Vec<Purpose>, StoreError> {
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
}
