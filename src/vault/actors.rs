//! Who used a customer's data: calls made in the name of an actor, and the customer-facing
//! access log.
//!
//! Every audit event a call writes names the [`Actor`] behind it. The plain [`Vault`] API
//! records the vault's default actor ([`VaultBuilder::default_actor`](crate::VaultBuilder::default_actor),
//! `app` unless set); [`Vault::acting_as`] gives a handle, [`ActingVault`], whose methods are
//! the vault's audited operations recorded in another actor's name. The handle borrows the
//! vault and holds the actor (a reference-counted id): making one costs one validation, and
//! each call costs what the plain call costs.

use std::collections::HashMap;
use std::sync::PoisonError;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Vault;
use super::gpc::GpcOutcome;
use super::rights::{ErasureReceipt, SubjectExport};
use crate::actor::Actor;
use crate::audit::{self, AuditBreak, AuditEvent, AuditKind, Entry};
use crate::choices::Choices;
use crate::consent::Evidence;
use crate::error::Error;
use crate::gate::{AccessPass, Revealed, Sealed};
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};
use crate::integrity;
use crate::receipt::{ConsentReceipt, ReceiptSigner};
use crate::store::{LatestChange, StoreError};

/// What an entry of a customer's [access log](Vault::access_log) records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum AccessKind {
    /// An [`authorize`](Vault::authorize) let the actor read the fields of the purpose.
    Granted,
    /// An `authorize` was refused: no data was opened. `reason` is the denial's code
    /// ([`AccessDenied::code`](crate::AccessDenied::code), such as `withdrawn`; `erased` for
    /// an access to an erased customer).
    Denied {
        /// The denial reason code.
        reason: String,
    },
    /// The customer's data was exported (subject access, portability:
    /// [`export_customer`](Vault::export_customer)): every stored field was read.
    Exported,
    /// The customer was found by the value of a field ([`find_customer`](Vault::find_customer)).
    LookedUp,
    /// A field was written or rectified ([`set_field`](Vault::set_field)).
    Written,
    /// The customer was erased ([`erase_customer`](Vault::erase_customer)).
    Erased,
    /// The access log itself was read ([`access_log`](Vault::access_log)).
    LogRead,
}

/// One entry of a customer's [access log](Vault::access_log): when, who, for which purpose,
/// which fields, and what happened. Ids and names only, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// The audit event's sequence number (ascending through the log).
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// For which purpose (for grants and denials).
    pub purpose: Option<PurposeId>,
    /// Who acted; `None` for events written before actors were recorded, or by the vault's
    /// own administration (an erasure re-applied after a restore).
    pub actor: Option<Actor>,
    /// The fields concerned: for a grant or denial, the fields the purpose covers **as the
    /// purpose is defined now** (not as it was at the time: a purpose redefined since shows
    /// its current fields; one no longer known shows none); for a write or a lookup, the
    /// field; empty for an export (every stored field), an erasure and a log read.
    pub fields: Vec<FieldName>,
    /// What happened (in JSON, flattened into the record: `"kind": "denied", "reason": …`).
    #[serde(flatten)]
    pub kind: AccessKind,
}

/// The vault, acting in the name of an [`Actor`]: every audit event its methods write names
/// that actor. Made by [`Vault::acting_as`] or [`Vault::with_actor`]; cheap (a borrow and a
/// reference-counted id), made per request or per job.
///
/// Its methods are the vault's, with the same rules, errors and guarantees; only the actor
/// recorded differs. Vault-wide administration (purpose and lookup definitions, key rotation
/// under a new master key, the retention sweep) is not here: those events name no actor.
///
/// ```
/// use egard::{AccessKind, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
///
/// let vault = Vault::builder().master_key(MasterKey::from_bytes([1; 32])).store(MemoryStore::new()).build()?;
/// vault.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))?;
/// let alice = vault.create_customer()?;
/// vault.set_field(alice, "email", "alice@example.com")?;
/// vault.give_consent(alice, "newsletter", Evidence::new("web-form"))?;
///
/// let mailer = vault.acting_as("service:mailer")?;
/// let pass = mailer.authorize(alice, "newsletter")?;
/// let email = mailer.reveal::<String>(&pass, "email")?;
/// # assert_eq!(email.expose(), "alice@example.com");
///
/// // An email address (personal data) is never an actor.
/// assert!(vault.acting_as("bob@example.com").is_err());
///
/// // What Alice sees: who used her data, for what, and which fields.
/// let log = vault.acting_as("customer:self")?.access_log(alice)?;
/// let granted = log.iter().find(|r| r.kind == AccessKind::Granted).unwrap();
/// assert_eq!(granted.actor.as_ref().unwrap().as_str(), "service:mailer");
/// assert_eq!(granted.fields[0].as_str(), "email");
/// assert_eq!(log.last().unwrap().kind, AccessKind::LogRead);
/// # Ok::<(), egard::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ActingVault<'v> {
    vault: &'v Vault,
    actor: Actor,
}

impl Vault {
    /// A handle on this vault that records `actor` (such as `support:agent-42` or
    /// `service:mailer`) in every audit event it writes. An actor that does not follow the
    /// [`Actor`] rule (an email address, a name with spaces, empty, longer than 64 bytes) is
    /// refused with [`Error::InvalidId`], before anything is read or recorded.
    pub fn acting_as(&self, actor: &str) -> Result<ActingVault<'_>, Error> {
        Ok(self.with_actor(Actor::new(actor)?))
    }

    /// A handle on this vault that records `actor`, already validated (no check, no copy of
    /// the id: keep one [`Actor`] per service and hand out clones).
    pub fn with_actor(&self, actor: Actor) -> ActingVault<'_> {
        ActingVault { vault: self, actor }
    }

    /// The actor the plain API records ([`VaultBuilder::default_actor`](crate::VaultBuilder::default_actor)).
    pub fn default_actor(&self) -> &Actor {
        &self.default_actor
    }

    /// Who used the customer's data, oldest first: the customer-facing view of their audit
    /// trail. Each [`AccessRecord`] says when, which actor, for which purpose, which fields,
    /// and what happened ([`AccessKind`]): the accesses granted and refused, the exports, the
    /// lookups that found the customer, the fields written, the erasure, and the reads of
    /// this log. Consent changes are in [`Vault::consents`]; the full trail (key bookkeeping
    /// included) is [`Vault::audit_events`].
    ///
    /// **Checked**: every event read is checked against its MAC, chained to the event before
    /// it (as [`changes_since`](Vault::changes_since) does), before it is shown; an event
    /// forged or edited in the store (its actor included) fails the call with
    /// [`Error::AuditBroken`], never reaches the customer. An event deleted from the store is
    /// missing here, and breaks the chain that [`verify_audit`](Vault::verify_audit) checks.
    ///
    /// **Audited**: reading the log is an access to the customer's record, so it is recorded
    /// first ([`AuditKind::AccessLogRead`], with the actor: the default one here, another
    /// through [`acting_as`](Vault::acting_as)) and the log returned ends with this read. If
    /// the event cannot be written, nothing is read. Works for an erased customer too (the
    /// trail outlives the data); an unknown customer is [`Error::UnknownCustomer`], not
    /// recorded.
    pub fn access_log(&self, customer: CustomerId) -> Result<Vec<AccessRecord>, Error> {
        self.access_log_as(&self.default_actor, customer)
    }

    /// Every audit event about `customer`, oldest first, each checked against its chained MAC
    /// (with the MAC of the event before it, which the store gives alongside): a forged,
    /// edited or foreign row is [`Error::AuditBroken`] or a corrupt store, never returned.
    pub(crate) fn checked_trail(&self, key: &ring::hmac::Key, customer: CustomerId) -> Result<Vec<AuditEvent>, Error> {
        let trail = self.store.audit_trail(customer)?;
        let mut base = None;
        let mut last = 0u64;
        let mut out = Vec::with_capacity(trail.len());
        for LatestChange { event, prev_mac } in trail {
            if event.customer != Some(customer) {
                return Err(StoreError::Corrupt("the store returned another customer's audit events".into()).into());
            }
            if event.seq <= last {
                return Err(StoreError::Corrupt("audit events out of order".into()).into());
            }
            let prev = match (event.seq, prev_mac) {
                (1, _) => [0; 32],
                (_, Some(prev)) => prev,
                // A row kept at or below the audit base whose predecessor was archived: its
                // MAC is covered by the base's digest, not by the chain here; it is in the
                // host's segments, not served from the store. Checked against the digest's
                // rows, so that deleting a kept row cannot hide the event after it.
                (s, None) if self.below_audit_base(s, &mut base)? => {
                    self.check_archived_predecessor(key, s, &base)?;
                    continue;
                }
                (s, None) => {
                    return Err(Error::AuditBroken {
                        seq: s.saturating_sub(1),
                        problem: AuditBreak::SequenceGap,
                    });
                }
            };
            if !integrity::macs_equal(&audit::chain_mac(key, &prev, &event), &event.mac) {
                return Err(Error::AuditBroken {
                    seq: event.seq,
                    problem: AuditBreak::MacMismatch,
                });
            }
            last = event.seq;
            out.push(event);
        }
        Ok(out)
    }

    /// [`access_log`](Vault::access_log), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.access_log", level = "info", skip_all, fields(actor = %actor, customer = %customer), err(level = "info", Display)))]
    pub(crate) fn access_log_as(&self, actor: &Actor, customer: CustomerId) -> Result<Vec<AccessRecord>, Error> {
        let key = self.journal.key().ok_or(Error::Crypto)?;
        if self.store.customer(customer)?.is_none() {
            return Err(Error::UnknownCustomer(customer));
        }
        self.journal.record(
            self.store.as_ref(),
            vec![Entry::new(AuditKind::AccessLogRead, Some(customer)).actor(actor)],
            self.recording_now(),
        )?;
        self.flush_audit()?;
        let trail = self.checked_trail(key, customer)?;
        let covered: HashMap<PurposeId, Vec<FieldName>> = {
            let purposes = self.purposes.read().unwrap_or_else(PoisonError::into_inner);
            purposes
                .defs
                .iter()
                .map(|(id, def)| (id.clone(), def.fields.to_vec()))
                .collect()
        };
        let mut out = Vec::new();
        for event in trail {
            let purpose_fields = || {
                event
                    .purpose
                    .as_ref()
                    .and_then(|p| covered.get(p))
                    .cloned()
                    .unwrap_or_default()
            };
            let field = || event.field.iter().cloned().collect::<Vec<_>>();
            let (kind, fields) = match event.kind {
                AuditKind::AccessGranted => (AccessKind::Granted, purpose_fields()),
                AuditKind::AccessDenied | AuditKind::ConsentExpired => (
                    AccessKind::Denied {
                        reason: event.detail.clone(),
                    },
                    purpose_fields(),
                ),
                AuditKind::Exported => (AccessKind::Exported, Vec::new()),
                AuditKind::LookedUp => (AccessKind::LookedUp, field()),
                AuditKind::FieldWritten | AuditKind::FieldRectified => (AccessKind::Written, field()),
                AuditKind::Erased => (AccessKind::Erased, Vec::new()),
                AuditKind::AccessLogRead => (AccessKind::LogRead, Vec::new()),
                _ => continue,
            };
            out.push(AccessRecord {
                seq: event.seq,
                at: event.at,
                purpose: event.purpose,
                actor: event.actor,
                fields,
                kind,
            });
        }
        Ok(out)
    }
}

impl ActingVault<'_> {
    /// The actor this handle records.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// [`Vault::create_customer`], in this actor's name.
    pub fn create_customer(&self) -> Result<CustomerId, Error> {
        self.vault.create_customer_as(&self.actor, CustomerId::new())
    }

    /// [`Vault::set_field`], in this actor's name.
    pub fn set_field<T: Serialize + ?Sized>(&self, customer: CustomerId, field: &str, value: &T) -> Result<(), Error> {
        self.vault.set_field_as(&self.actor, customer, field, value)
    }

    /// [`Vault::seal`], in this actor's name (recorded when a block of key uses is reserved).
    pub fn seal<T: Serialize>(&self, customer: CustomerId, field: &str, value: &T) -> Result<Sealed<T>, Error> {
        self.vault.seal_as(&self.actor, customer, field, value)
    }

    /// [`Vault::give_consent`], in this actor's name (who collected the consent).
    pub fn give_consent(&self, customer: CustomerId, purpose: &str, evidence: Evidence) -> Result<ConsentId, Error> {
        self.vault.give_consent_as(&self.actor, customer, purpose, evidence)
    }

    /// [`Vault::give_consents`], in this actor's name.
    pub fn give_consents<'p, I>(&self, items: I) -> Result<Vec<ConsentId>, Error>
    where
        I: IntoIterator<Item = (CustomerId, &'p str, Evidence)>,
    {
        self.vault.give_consents_as(&self.actor, items)
    }

    /// [`Vault::give_consent_with`], recording this actor.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.give_consent_with", level = "info", skip_all, fields(actor = %self.actor, customer = %customer, purpose = super::telemetry::name(purpose)), err(level = "info", Display)))]
    pub fn give_consent_with(
        &self,
        customer: CustomerId,
        purpose: &str,
        evidence: Evidence,
        choices: &Choices,
    ) -> Result<ConsentId, Error> {
        self.vault
            .record_consent(&self.actor, customer, purpose, evidence, Some(choices), false)
    }

    /// [`Vault::change_choices`], recording this actor.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.change_choices", level = "info", skip_all, fields(actor = %self.actor, customer = %customer, purpose = super::telemetry::name(purpose)), err(level = "info", Display)))]
    pub fn change_choices(
        &self,
        customer: CustomerId,
        purpose: &str,
        choices: &Choices,
        evidence: Evidence,
    ) -> Result<ConsentId, Error> {
        self.vault
            .record_consent(&self.actor, customer, purpose, evidence, Some(choices), true)
    }

    /// [`Vault::choices`] (reading the choices through a pass is not audited, as `reveal` is not).
    pub fn choices(&self, pass: &AccessPass) -> Result<Revealed<Choices>, Error> {
        self.vault.choices(pass)
    }

    /// [`Vault::honor_gpc`], recording this actor.
    pub fn honor_gpc(&self, customer: CustomerId, evidence: Evidence) -> Result<GpcOutcome, Error> {
        self.vault.honor_gpc_as(&self.actor, customer, evidence)
    }

    /// [`Vault::withdraw_consent`], in this actor's name.
    pub fn withdraw_consent(&self, customer: CustomerId, purpose: &str) -> Result<(), Error> {
        self.vault.withdraw_consent_as(&self.actor, customer, purpose)
    }

    /// [`Vault::authorize`], in this actor's name: the grant or denial names the actor.
    pub fn authorize(&self, customer: CustomerId, purpose: &str) -> Result<AccessPass, Error> {
        self.vault.authorize_as(&self.actor, customer, purpose)
    }

    /// [`Vault::reveal`]. Reveals write no audit event (the grant that issued the pass is the
    /// recorded access, with its actor): here for a handle to cover a whole request.
    pub fn reveal<T: DeserializeOwned + 'static>(&self, pass: &AccessPass, field: &str) -> Result<Revealed<T>, Error> {
        self.vault.reveal(pass, field)
    }

    /// [`Vault::export_customer`], in this actor's name.
    pub fn export_customer(&self, customer: CustomerId, evidence: Evidence) -> Result<SubjectExport, Error> {
        self.vault.export_customer_as(&self.actor, customer, evidence)
    }

    /// [`Vault::restrict`], in this actor's name.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.restrict", level = "info", skip_all, fields(actor = %self.actor, customer = %customer), err(level = "info", Display)))]
    pub fn restrict(&self, customer: CustomerId) -> Result<(), Error> {
        self.vault.set_restricted(&self.actor, customer, true)
    }

    /// [`Vault::lift_restriction`], in this actor's name.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.lift_restriction", level = "info", skip_all, fields(actor = %self.actor, customer = %customer), err(level = "info", Display)))]
    pub fn lift_restriction(&self, customer: CustomerId) -> Result<(), Error> {
        self.vault.set_restricted(&self.actor, customer, false)
    }

    /// [`Vault::object`], in this actor's name.
    pub fn object(&self, customer: CustomerId, purpose: &str) -> Result<(), Error> {
        self.vault.object_as(&self.actor, customer, purpose)
    }

    /// [`Vault::erase_customer`], in this actor's name.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.erase_customer", level = "info", skip_all, fields(actor = %self.actor, customer = %customer), err(level = "info", Display)))]
    pub fn erase_customer(&self, customer: CustomerId) -> Result<ErasureReceipt, Error> {
        self.vault.erase(Some(&self.actor), customer, "")
    }

    /// [`Vault::find_customer`], in this actor's name.
    pub fn find_customer(&self, field: &str, value: &str) -> Result<Option<CustomerId>, Error> {
        self.vault.find_customer_as(&self.actor, field, value)
    }

    /// [`Vault::consent_receipt`], in this actor's name.
    pub fn consent_receipt(&self, consent: ConsentId, signer: &ReceiptSigner) -> Result<ConsentReceipt, Error> {
        self.vault.consent_receipt_as(&self.actor, consent, signer)
    }

    /// [`Vault::rotate_customer_key`], in this actor's name.
    pub fn rotate_customer_key(&self, customer: CustomerId) -> Result<(), Error> {
        self.vault.rotate_customer_key_as(&self.actor, customer)
    }

    /// [`Vault::audience`], in this actor's name (the listing's event names the actor).
    pub fn audience(&self, purpose: &str) -> Result<impl Iterator<Item = Result<CustomerId, Error>> + '_, Error> {
        self.vault.audience_as(&self.actor, purpose)
    }

    /// [`Vault::needs_reconsent`], in this actor's name.
    pub fn needs_reconsent(
        &self,
        purpose: &str,
    ) -> Result<impl Iterator<Item = Result<CustomerId, Error>> + '_, Error> {
        self.vault.needs_reconsent_as(&self.actor, purpose)
    }

    /// [`Vault::access_log`], in this actor's name (the read of the log names the actor).
    pub fn access_log(&self, customer: CustomerId) -> Result<Vec<AccessRecord>, Error> {
        self.vault.access_log_as(&self.actor, customer)
    }
}
