//! Errors. None of them ever carries personal data: they name ids, purposes and fields only.

use crate::audit::AuditBreak;
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};
use crate::store::StoreError;

/// Why an access was refused. Each cause has its own reason, so an application can tell the
/// customer what would make the access possible (for example, a renewed consent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum AccessDenied {
    /// The customer never gave consent (or, for another lawful basis, no record of that basis
    /// exists for this customer). Deny by default.
    NoConsent,
    /// The consent has expired.
    Expired,
    /// The customer withdrew the consent.
    Withdrawn,
    /// The consent was given under an older privacy-notice version than the purpose requires.
    NoticeOutdated,
    /// The field is not among the fields the purpose may read (data minimisation).
    FieldNotCovered,
    /// The pass or sealed value belongs to another customer.
    WrongCustomer,
    /// Processing of this customer's data is restricted (GDPR Art. 18).
    Restricted,
    /// The customer objected to processing for this purpose (GDPR Art. 21).
    Objected,
    /// The access pass outlived its own short lifetime; ask for a new one.
    PassExpired,
    /// The purpose was redefined after the pass was issued; ask for a new one.
    PurposeChanged,
}

impl AccessDenied {
    /// Every reason, in declaration order.
    pub const ALL: [AccessDenied; 10] = [
        AccessDenied::NoConsent,
        AccessDenied::Expired,
        AccessDenied::Withdrawn,
        AccessDenied::NoticeOutdated,
        AccessDenied::FieldNotCovered,
        AccessDenied::WrongCustomer,
        AccessDenied::Restricted,
        AccessDenied::Objected,
        AccessDenied::PassExpired,
        AccessDenied::PurposeChanged,
    ];

    /// A stable, lowercase code for the reason, used in audit events and storage.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoConsent => "no_consent",
            Self::Expired => "expired",
            Self::Withdrawn => "withdrawn",
            Self::NoticeOutdated => "notice_outdated",
            Self::FieldNotCovered => "field_not_covered",
            Self::WrongCustomer => "wrong_customer",
            Self::Restricted => "restricted",
            Self::Objected => "objected",
            Self::PassExpired => "pass_expired",
            Self::PurposeChanged => "purpose_changed",
        }
    }
}

impl std::fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoConsent => "no consent (or other lawful basis) is recorded for this purpose",
            Self::Expired => "the consent has expired",
            Self::Withdrawn => "the consent was withdrawn",
            Self::NoticeOutdated => "the consent was given under an outdated privacy notice",
            Self::FieldNotCovered => "the field is not covered by the purpose",
            Self::WrongCustomer => "the pass or sealed value belongs to another customer",
            Self::Restricted => "processing of this customer's data is restricted",
            Self::Objected => "the customer objected to processing for this purpose",
            Self::PassExpired => "the access pass has expired",
            Self::PurposeChanged => "the purpose was redefined after the pass was issued",
        })
    }
}

/// Why a receipt could not be signed or verified. Messages never quote keys or receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The bytes given to [`ReceiptSigner::from_pkcs8`](crate::ReceiptSigner::from_pkcs8) are
    /// not an Ed25519 PKCS#8 private key.
    #[error("not an Ed25519 PKCS#8 private key")]
    InvalidSigningKey,
    /// The receipt's signature does not verify with this public key: the receipt was changed
    /// after it was signed, or it was signed with another key (or the public key is not 32
    /// bytes).
    #[error("the signature does not verify with this public key")]
    BadSignature,
    /// The receipt names a signature algorithm other than `Ed25519`.
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
}

/// Every error egard returns.
///
/// Messages name ids, purposes and fields, never a value of personal data: they are safe to
/// log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The access was refused; the reason says why.
    #[error("access denied: {0}")]
    Denied(AccessDenied),
    /// No purpose with this id is defined.
    #[error("unknown purpose `{0}`")]
    UnknownPurpose(PurposeId),
    /// No customer with this id exists.
    #[error("unknown customer {0}")]
    UnknownCustomer(CustomerId),
    /// The field is not stored for this customer, or no defined purpose covers it.
    #[error("unknown field `{0}`")]
    UnknownField(FieldName),
    /// The customer was erased: their data can never be opened again.
    #[error("customer {0} was erased")]
    Erased(CustomerId),
    /// An identifier did not follow its rule. The rejected input is not repeated.
    #[error("invalid {kind}: expected {rule}")]
    InvalidId {
        /// What kind of identifier.
        kind: &'static str,
        /// The rule it must follow.
        rule: &'static str,
    },
    /// The request is not valid as configured (for example an objection to a purpose based
    /// on consent, or a purpose with no fields).
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    /// A value is larger than the vault accepts.
    #[error("value of field `{field}` is larger than {max} bytes")]
    TooLarge {
        /// The field.
        field: FieldName,
        /// The limit in bytes.
        max: usize,
    },
    /// A value could not be encoded, or a decrypted value did not decode as the type asked
    /// for. The decoder's own message (which can quote the value) is dropped on purpose.
    #[error("field `{field}` could not be {action} as the requested type")]
    Codec {
        /// The field.
        field: FieldName,
        /// `"encoded"` or `"decoded"`.
        action: &'static str,
    },
    /// Decryption or key unwrapping failed: tampered or moved ciphertext, or the wrong master
    /// key. Deliberately opaque.
    #[error("cryptographic operation failed")]
    Crypto,
    /// The [`KeyProvider`](crate::KeyProvider) that holds the master key could not wrap or
    /// unwrap a key (unreachable, or it refused). Nothing was written: the operation can be
    /// retried once the provider answers again. (A wrapped key that does not open is
    /// [`Error::Crypto`].)
    #[error("key provider: {0}")]
    KeyProvider(crate::crypto::KeyProviderError),
    /// A data key or vault secret is wrapped under a master key the vault was told to refuse
    /// (see [`VaultBuilder::min_master_key_id`](crate::VaultBuilder::min_master_key_id)):
    /// finish the master-key rotation ([`Vault::keys_below`](crate::Vault::keys_below) finds
    /// what is left), or lower the floor.
    #[error("the key is wrapped under retired master key {master_key_id}")]
    RetiredKey {
        /// The id of the retired master key the wrapped key names.
        master_key_id: u32,
    },
    /// The store's vault secrets are wrapped under master key ids that this vault does not
    /// hold: the master key given to [`VaultBuilder`](crate::VaultBuilder) is not the one the
    /// store was made with (or rotated to). Only key ids are named, never key material; ids
    /// are written in clear in every wrapped key, so naming them tells nothing new.
    ///
    /// A key with the right id that still cannot open the secrets (another key given the
    /// same id, or a damaged secret) fails with the opaque [`Error::Crypto`] instead: telling
    /// those two apart would be an oracle.
    #[error(
        "wrong master key: the store's keys are wrapped under master key id(s) {expected:?}, this vault holds id(s) {given:?}"
    )]
    WrongMasterKey {
        /// The master key ids the stored vault secrets name, ascending, without repeats.
        expected: Vec<u32>,
        /// The master key ids this vault holds: the current one first, then the previous ones.
        given: Vec<u32>,
    },
    /// The audit log does not verify: the event at `seq` was edited, dropped, inserted or
    /// moved, or the log was truncated.
    #[error("audit log broken at event {seq}: {problem}")]
    AuditBroken {
        /// Where the chain breaks.
        seq: u64,
        /// How.
        problem: AuditBreak,
    },
    /// The value is already held by another live customer in a field with a lookup: one
    /// normalised value belongs to at most one customer. Nothing was written. The other
    /// customer is never named.
    #[error("the value of field `{field}` belongs to another customer")]
    Duplicate {
        /// The looked-up field.
        field: FieldName,
    },
    /// No lookup is defined on this field (see `Vault::define_lookup`).
    #[error("no lookup is defined on field `{0}`")]
    NoLookup(FieldName),
    /// The vault builder was missing something.
    #[error("vault configuration: {0}")]
    Config(&'static str),
    /// The storage backend failed.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// The change was applied and is in effect (in the store, in the log and in this vault),
    /// but the store could not make it durable: syncing it to disk failed. It may be lost if
    /// the machine stops before the store syncs again. Do not redo the change; look at the
    /// storage (a full or failing disk).
    #[error("the change is in effect but could not be made durable: {0}")]
    NotDurable(StoreError),
    /// No consent record with this id is stored.
    #[error("unknown consent {0}")]
    UnknownConsent(ConsentId),
    /// A customer's declared choices, or a purpose's declaration of them, were refused.
    /// Only the name of a declared choice is given (a name the purpose does not declare is
    /// not repeated: it reads `(undeclared)`), never an option selected. Nothing was written.
    #[error("invalid choice `{choice}`: {reason}")]
    InvalidChoice {
        /// The choice's name.
        choice: String,
        /// Why.
        reason: crate::choices::ChoiceProblem,
    },
    /// A consent to a purpose covered by the Global Privacy Control signal
    /// ([`Purpose::is_covered_by_gpc`](crate::Purpose::is_covered_by_gpc)) was asked for with
    /// evidence carrying the signal ([`Evidence::gpc`](crate::Evidence::gpc)) but without the
    /// customer's explicit confirmation ([`Evidence::explicit`](crate::Evidence::explicit)).
    /// Nothing was written.
    #[error(
        "the request carries the Global Privacy Control signal: consent to `{purpose}` needs the customer's explicit confirmation"
    )]
    GpcConflict {
        /// The purpose.
        purpose: PurposeId,
    },
    /// An audit segment file does not verify: it does not parse, its header or trailer was
    /// edited, it was written by another vault (another audit key or namespace), it is
    /// truncated, or segments given together do not join. (An edited or dropped event inside
    /// a segment is [`Error::AuditBroken`].)
    #[error("audit segment invalid: {0}")]
    SegmentInvalid(&'static str),
    /// Reading or writing a file failed (an audit segment, its directory). Nothing was
    /// deleted from the store. Names the action and the kind of failure, never a path's
    /// contents.
    #[error("could not {action}: {kind}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The kind of I/O failure.
        kind: std::io::ErrorKind,
    },
    /// A consent receipt could not be signed or does not verify; see [`ReceiptError`].
    #[error("consent receipt: {0}")]
    Receipt(#[from] ReceiptError),
}

impl From<AccessDenied> for Error {
    fn from(reason: AccessDenied) -> Self {
        Error::Denied(reason)
    }
}
