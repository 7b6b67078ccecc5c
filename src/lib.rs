#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod actor;
mod audit;
mod choices;
mod clock;
mod codec;
mod consent;
pub mod crypto;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod ids;
mod integrity;
mod lookup;
mod purpose;
mod receipt;
pub mod store;
mod vault;

pub use actor::{Actor, DEFAULT_ACTOR, MAX_ACTOR_LEN};
pub use audit::{AuditAnchor, AuditBreak, AuditEvent, AuditKind, AuditReport};
pub use choices::{ChoiceProblem, ChoiceSpec, Choices, SealedChoices};
pub use clock::{Clock, ManualClock, SystemClock};
pub use consent::{Consent, ConsentState, Evidence};
pub use crypto::{KeyProvider, KeyProviderError, MasterKey};
pub use error::{AccessDenied, Error, ReceiptError};
pub use gate::{AccessPass, Revealed, Sealed};
pub use ids::{ConsentId, CustomerId, FieldName, PurposeId};
pub use lookup::{Lookup, Normalizer};
pub use purpose::{LawfulBasis, Purpose};
pub use receipt::{ConsentReceipt, Controller, ReceiptSigner};
#[cfg(feature = "sqlite")]
pub use store::{Durability, SqliteOptions, SqliteStore};
pub use store::{MemoryStore, Store, StoreError};
#[cfg(feature = "postgres")]
pub use store::{PostgresOptions, PostgresStore};
pub use vault::{
    AUDIENCE_PAGE, AccessKind, AccessRecord, ActingVault, ArchiveReport, ArchiveVerification, ArchivedThrough,
    AuditBatching, AuditProgress, AuditStage, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_VALUE_LEN, DEFAULT_PASS_LIFETIME,
    DEFAULT_ROTATION_BATCH, DEFAULT_SEGMENT_EVENTS, ENCRYPTION_BUDGET, ErasureReceipt, ExportedValue, GpcOutcome,
    KeyBelow, MAX_CHANGES_PAGE, RotationProgress, SEGMENT_FORMAT, SEGMENT_VERSION, SegmentReport, SubjectExport,
    SweepReport, Vault, VaultBuilder,
};
