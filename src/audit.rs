//! The tamper-evident audit log.
//!
//! Every decision and every change is appended as an [`AuditEvent`]: a sequence number, a
//! time, a kind, the ids it concerns (customer, purpose, field) and who acted (an [`Actor`]),
//! never a value. Each event
//! carries an HMAC-SHA256 over its own content and the previous event's MAC, so an edited,
//! dropped, inserted or reordered event breaks the chain at that point.
//!
//! The audit key is 32 random bytes, made once per store by the first vault built on it and
//! stored only wrapped under the master key (the same AES-256-GCM envelope as a data key,
//! naming the master key's id; its associated data binds the namespace and marks it as a
//! vault secret, never a customer key). A vault opens it with the master key the envelope
//! names, current or previous, and [`Vault::rotate_master_key`](crate::Vault::rotate_master_key)
//! re-wraps it with the data keys, so the chain runs on under the same key across a rotation.
//! A vault whose master keys cannot open it writes nothing and cannot verify the log
//! ([`Error::Crypto`](crate::Error::Crypto)).
//!
//! The MAC input, for anyone re-implementing verification: the previous event's MAC (32 zero
//! bytes before the first event), the sequence number (u64 big-endian), the time in
//! microseconds since the Unix epoch (i64 big-endian), then the kind's code, the customer id's
//! 16 bytes, the purpose, the field, the detail and the state MAC (32 bytes), each prefixed by
//! its length (u16 big-endian; absent parts are empty); then, only for an event that names an
//! [`Actor`], the actor's id, prefixed by its length the same way. An event without an actor
//! (every event written before actors were recorded) has no such tail, so its MAC is what it
//! always was.
//!
//! An [`AuditAnchor`] (a sequence number and the MAC of the event there) kept outside the
//! database lets [`Vault::verify_audit_against`](crate::Vault::verify_audit_against) and
//! [`VaultBuilder::audit_anchor`](crate::VaultBuilder::audit_anchor) catch a log that was cut
//! back, which a chain alone cannot show.

use chrono::{DateTime, Utc};
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::error::Error;
use crate::ids::{CustomerId, FieldName, PurposeId};

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A purpose was defined or redefined.
    PurposeDefined,
    /// A customer was created (with a new data key).
    CustomerCreated,
    /// Consent (or another basis record) was given.
    ConsentGiven,
    /// Consent was withdrawn.
    ConsentWithdrawn,
    /// An access found the customer's consent expired.
    ConsentExpired,
    /// An access pass was issued.
    AccessGranted,
    /// An access was refused; the detail names the reason.
    AccessDenied,
    /// A field was written for the first time.
    FieldWritten,
    /// An existing field was rewritten (Art. 16 rectification).
    FieldRectified,
    /// A field was deleted (retention sweep).
    FieldDeleted,
    /// The customer's data was exported (Art. 15, 20).
    Exported,
    /// Processing was restricted (Art. 18).
    Restricted,
    /// A restriction was lifted.
    RestrictionLifted,
    /// The customer objected (Art. 21).
    Objected,
    /// The customer was erased by crypto-shredding (Art. 17).
    Erased,
    /// A data key, or the audit key (no customer), was re-wrapped under another master key;
    /// or a customer's data key was replaced by a new one (the detail says which).
    KeyRotated,
    /// Encryptions under a customer's data key were reserved for values sealed for the host
    /// ([`Vault::seal`](crate::Vault::seal)), counted against the key's encryption budget.
    KeyUsesReserved,
    /// A signed consent receipt was issued for one of the customer's consent records
    /// ([`Vault::consent_receipt`](crate::Vault::consent_receipt)); the detail names the
    /// consent record and the receipt.
    ReceiptIssued,
    /// A lookup (blind index) was defined on a field; the detail names its normaliser.
    LookupDefined,
    /// An existing value of a customer's field was indexed by a lookup defined after it was
    /// written.
    FieldIndexed,
    /// A customer was looked up by a field; the detail says `found` or `not_found` (never
    /// the value looked for).
    LookedUp,
    /// The audience of a purpose, or its re-consent list, was listed
    /// ([`Vault::audience`](crate::Vault::audience),
    /// [`Vault::needs_reconsent`](crate::Vault::needs_reconsent)); the detail says which.
    /// Names the purpose, never a customer.
    AudienceListed,
    /// A customer's access log was read ([`Vault::access_log`](crate::Vault::access_log)):
    /// reading who used a customer's data is itself an access, recorded with its actor.
    AccessLogRead,
    /// Old events were moved out of the store into a segment file
    /// ([`Vault::archive_audit`](crate::Vault::archive_audit)); the detail names the archived
    /// range and count (`seq=<from>-<through>;events=<n>`). Names no customer.
    AuditArchived,
}

impl AuditKind {
    /// Every kind, in declaration order.
    pub const ALL: [AuditKind; 24] = [
        AuditKind::PurposeDefined,
        AuditKind::CustomerCreated,
        AuditKind::ConsentGiven,
        AuditKind::ConsentWithdrawn,
        AuditKind::ConsentExpired,
        AuditKind::AccessGranted,
        AuditKind::AccessDenied,
        AuditKind::FieldWritten,
        AuditKind::FieldRectified,
        AuditKind::FieldDeleted,
        AuditKind::Exported,
        AuditKind::Restricted,
        AuditKind::RestrictionLifted,
        AuditKind::Objected,
        AuditKind::Erased,
        AuditKind::KeyRotated,
        AuditKind::KeyUsesReserved,
        AuditKind::ReceiptIssued,
        AuditKind::LookupDefined,
        AuditKind::FieldIndexed,
        AuditKind::LookedUp,
        AuditKind::AudienceListed,
        AuditKind::AccessLogRead,
        AuditKind::AuditArchived,
    ];

    /// A stable code for storage.
    pub fn code(self) -> &'static str {
        match self {
            Self::PurposeDefined => "purpose_defined",
            Self::CustomerCreated => "customer_created",
            Self::ConsentGiven => "consent_given",
            Self::ConsentWithdrawn => "consent_withdrawn",
            Self::ConsentExpired => "consent_expired",
            Self::AccessGranted => "access_granted",
            Self::AccessDenied => "access_denied",
            Self::FieldWritten => "field_written",
            Self::FieldRectified => "field_rectified",
            Self::FieldDeleted => "field_deleted",
            Self::Exported => "exported",
            Self::Restricted => "restricted",
            Self::RestrictionLifted => "restriction_lifted",
            Self::Objected => "objected",
            Self::Erased => "erased",
            Self::KeyRotated => "key_rotated",
            Self::KeyUsesReserved => "key_uses_reserved",
            Self::ReceiptIssued => "receipt_issued",
            Self::LookupDefined => "lookup_defined",
            Self::FieldIndexed => "field_indexed",
            Self::LookedUp => "looked_up",
            Self::AudienceListed => "audience_listed",
            Self::AccessLogRead => "access_log_read",
            Self::AuditArchived => "audit_archived",
        }
    }

    /// Whether an event of this kind *changes* something (a consent, a customer's standing or
    /// data, a purpose, a key), as opposed to recording an access or a decision that changed
    /// nothing. The change feed ([`Vault::changes_since`](crate::Vault::changes_since)) serves
    /// exactly the events of the kinds for which this is `true`.
    ///
    /// Changes: a purpose defined, a customer created, consent given or withdrawn, a field
    /// written, rectified or deleted, a restriction and its lifting, an objection, an erasure,
    /// a key rotation. Not changes: access granted or denied, a consent found expired (an
    /// expiry is not an event: see the change feed's documentation), an export, encryptions
    /// reserved for sealed values (bookkeeping of the key's budget, nothing a downstream
    /// system sees), an audience listed, a lookup made, a receipt issued, an access log read,
    /// an archival of old audit events;
    /// and the lookups'
    /// own bookkeeping (a lookup defined, an existing value indexed), which changes no
    /// customer's data or choices.
    ///
    /// ```
    /// use egard::AuditKind;
    ///
    /// assert!(AuditKind::ConsentWithdrawn.is_change());
    /// assert!(!AuditKind::AccessGranted.is_change());
    /// ```
    pub fn is_change(&self) -> bool {
        // No wildcard: a new kind must be classified here.
        match self {
            Self::PurposeDefined
            | Self::CustomerCreated
            | Self::ConsentGiven
            | Self::ConsentWithdrawn
            | Self::FieldWritten
            | Self::FieldRectified
            | Self::FieldDeleted
            | Self::Restricted
            | Self::RestrictionLifted
            | Self::Objected
            | Self::Erased
            | Self::KeyRotated => true,
            Self::ConsentExpired
            | Self::AccessGranted
            | Self::AccessDenied
            | Self::Exported
            | Self::KeyUsesReserved
            | Self::ReceiptIssued
            | Self::LookupDefined
            | Self::FieldIndexed
            | Self::LookedUp
            | Self::AudienceListed
            | Self::AccessLogRead
            | Self::AuditArchived => false,
        }
    }

    /// The kinds that are changes ([`AuditKind::is_change`]), in declaration order.
    pub fn changes() -> impl Iterator<Item = AuditKind> {
        Self::ALL.into_iter().filter(AuditKind::is_change)
    }

    /// The kind for a stored code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// The codes of the kinds that are changes, as an SQL list: the built-in stores' change-feed
/// queries use it, and their schema's partial index on the change events holds the same list
/// (a test checks that it matches [`AuditKind::is_change`]: a change there needs a migration).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) const CHANGE_KINDS_SQL: &str = "('purpose_defined', 'customer_created', 'consent_given', \
     'consent_withdrawn', 'field_written', 'field_rectified', 'field_deleted', 'restricted', \
     'restriction_lifted', 'objected', 'erased', 'key_rotated')";

/// One entry of the audit log. Ids and names only, never a value of personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When (microsecond precision).
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: AuditKind,
    /// Whom it concerns.
    pub customer: Option<CustomerId>,
    /// For which purpose.
    pub purpose: Option<PurposeId>,
    /// Which field.
    pub field: Option<FieldName>,
    /// A short code (a denial reason, a consent id, a key version); never personal data.
    pub detail: String,
    /// For a change, the state MAC of the customer (or, for a purpose definition, of the
    /// purpose) that the change produced; `None` for access decisions and master-key
    /// rotations.
    /// Loading a customer checks its stored state against the latest such event, so that
    /// older rows written back into the store are caught while the log is whole.
    #[serde(with = "opt_mac_hex", default)]
    pub state: Option<[u8; 32]>,
    /// Who acted: the [`Actor`] of the call that wrote the event (the vault's default actor,
    /// `app` unless configured, for the plain API; the one named with
    /// [`Vault::acting_as`](crate::Vault::acting_as) otherwise). `None` for events written
    /// before actors were recorded, and for the vault's own administration (purpose and
    /// lookup definitions, master-key rotation, the retention sweep, the indexing of values
    /// stored before a lookup, erasures re-applied after a restore). Covered by the MAC.
    #[serde(default)]
    pub actor: Option<Actor>,
    /// HMAC-SHA256 over the previous event's MAC and this event's content.
    #[serde(with = "mac_hex")]
    pub mac: [u8; 32],
}

/// An audit event before it is placed in the chain.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) kind: AuditKind,
    pub(crate) customer: Option<CustomerId>,
    pub(crate) purpose: Option<PurposeId>,
    pub(crate) field: Option<FieldName>,
    pub(crate) detail: String,
    pub(crate) state: Option<[u8; 32]>,
    pub(crate) actor: Option<Actor>,
}

impl Entry {
    pub(crate) fn new(kind: AuditKind, customer: Option<CustomerId>) -> Self {
        Self {
            kind,
            customer,
            purpose: None,
            field: None,
            detail: String::new(),
            state: None,
            actor: None,
        }
    }

    /// Who acted (a reference count, no copy of the id).
    pub(crate) fn actor(mut self, actor: &Actor) -> Self {
        self.actor = Some(actor.clone());
        self
    }

    /// Who acted, if anyone (`None`: the vault's own administration).
    pub(crate) fn maybe_actor(mut self, actor: Option<&Actor>) -> Self {
        self.actor = actor.cloned();
        self
    }

    pub(crate) fn purpose(mut self, purpose: &PurposeId) -> Self {
        self.purpose = Some(purpose.clone());
        self
    }

    pub(crate) fn field(mut self, field: &FieldName) -> Self {
        self.field = Some(field.clone());
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The state MAC this change produced.
    pub(crate) fn state(mut self, state: [u8; 32]) -> Self {
        self.state = Some(state);
        self
    }
}

/// The MAC of an event, chained to the previous event's MAC.
pub(crate) fn chain_mac(key: &hmac::Key, prev: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(prev);
    ctx.update(&event.seq.to_be_bytes());
    ctx.update(&event.at.timestamp_micros().to_be_bytes());
    let customer: &[u8] = match &event.customer {
        Some(c) => c.as_bytes(),
        None => &[],
    };
    let state: &[u8] = match &event.state {
        Some(s) => s,
        None => &[],
    };
    for part in [
        event.kind.code().as_bytes(),
        customer,
        event.purpose.as_ref().map_or("", |p| p.as_str()).as_bytes(),
        event.field.as_ref().map_or("", |f| f.as_str()).as_bytes(),
        event.detail.as_bytes(),
        state,
    ] {
        // Two-byte length prefixes keep a typical event within two SHA-256 blocks; every part
        // but the detail is an id, a name of at most 64 bytes, or a 32-byte MAC.
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(part);
    }
    // The actor's tail, only when there is one: an event without an actor (all those written
    // before actors were recorded) keeps the MAC it was written with. An actor id is never
    // empty, so an absent actor and a present one never give the same input.
    if let Some(actor) = &event.actor {
        let part = actor.as_str().as_bytes();
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(part);
    }
    let tag = ctx.sign();
    let mut mac = [0u8; 32];
    mac.copy_from_slice(tag.as_ref());
    mac
}

/// Checks that `event` follows `prev` in the chain (the next sequence number, its MAC chained
/// on `prev`'s) and returns it as the new link: the one check every verifier of the log (the
/// store's, a segment's, an archival's) makes on each event.
pub(crate) fn follow(key: &hmac::Key, prev: &AuditAnchor, event: &AuditEvent) -> Result<AuditAnchor, Error> {
    let expected = prev.seq.saturating_add(1);
    if event.seq != expected {
        return Err(Error::AuditBroken {
            seq: expected,
            problem: AuditBreak::SequenceGap,
        });
    }
    if !crate::integrity::macs_equal(&chain_mac(key, &prev.mac, event), &event.mac) {
        return Err(Error::AuditBroken {
            seq: event.seq,
            problem: AuditBreak::MacMismatch,
        });
    }
    Ok(AuditAnchor {
        seq: event.seq,
        mac: event.mac,
    })
}

/// The result of a successful [`Vault::verify_audit`](crate::Vault::verify_audit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// How many events were verified.
    pub events_verified: u64,
    /// The MAC of the last event, in hex: note it down elsewhere to detect a later truncation
    /// of the log.
    pub head_mac: String,
}

/// Where and how the audit chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditBreak {
    /// An event's content or MAC does not match the chain (edited, inserted or reordered).
    MacMismatch,
    /// A sequence number is missing (an event was dropped) or out of order.
    SequenceGap,
    /// The log ends before the last event this vault wrote (it was truncated).
    Truncated,
}

impl std::fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MacMismatch => "MAC mismatch (edited, inserted or reordered event)",
            Self::SequenceGap => "sequence gap (dropped or reordered event)",
            Self::Truncated => "log truncated",
        })
    }
}

/// A point of the audit log to keep outside the database: the sequence number of an event and
/// its MAC. A log that ends before it, or holds another event there, was cut back.
///
/// Serializes to JSON as `{"seq": 42, "mac": "<64 hex digits>"}`: write it to a log line, a
/// file or another system, and give the latest one to
/// [`VaultBuilder::audit_anchor`](crate::VaultBuilder::audit_anchor) when the vault starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnchor {
    /// The event's sequence number.
    pub seq: u64,
    /// The event's MAC.
    #[serde(with = "mac_hex")]
    pub mac: [u8; 32],
}

impl AuditAnchor {
    /// The anchor of an empty log: sequence number 0 and 32 zero bytes, the "previous MAC"
    /// of the first event.
    pub const EMPTY: AuditAnchor = AuditAnchor { seq: 0, mac: [0; 32] };
}

pub(crate) mod opt_mac_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(mac) => super::mac_hex::serialize(mac, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        #[derive(Deserialize)]
        struct Hex(#[serde(with = "super::mac_hex")] [u8; 32]);
        Ok(Option::<Hex>::deserialize(d)?.map(|h| h.0))
    }
}

pub(crate) mod mac_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::consent::hex(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = s.as_bytes();
        let mut out = [0u8; 32];
        if bytes.len() != 64 {
            return Err(serde::de::Error::custom("a MAC is 64 hex digits"));
        }
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = (hi * 16 + lo) as u8,
                _ => return Err(serde::de::Error::custom("a MAC is 64 hex digits")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_list_of_change_kinds_matches_is_change() {
        let codes: Vec<String> = AuditKind::changes().map(|k| format!("'{}'", k.code())).collect();
        assert_eq!(CHANGE_KINDS_SQL, format!("({})", codes.join(", ")));
        for kind in AuditKind::ALL {
            assert_eq!(
                CHANGE_KINDS_SQL.contains(&format!("'{}'", kind.code())),
                kind.is_change(),
                "{kind:?}"
            );
        }
    }
}
