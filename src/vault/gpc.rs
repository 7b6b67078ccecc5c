//! Privacy signals: the Global Privacy Control (`Sec-GPC: 1`) applied to a customer.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use super::{Vault, live_key};
use crate::actor::Actor;
use crate::audit::{AuditKind, Entry};
use crate::consent::Evidence;
use crate::error::{AccessDenied, Error};
use crate::ids::{CustomerId, PurposeId, is_slug};
use crate::purpose::{LawfulBasis, PurposeDef};
use crate::store::Objection;

/// What [`Vault::honor_gpc`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpcOutcome {
    /// The purposes whose current consent was withdrawn.
    pub withdrawn: Vec<PurposeId>,
    /// The purposes (on legitimate interests or public task) objected to.
    pub objected: Vec<PurposeId>,
}

impl GpcOutcome {
    /// Whether anything changed (and so was recorded).
    pub fn changed(&self) -> bool {
        !self.withdrawn.is_empty() || !self.objected.is_empty()
    }
}

/// The detail of the events of a signal applied: `gpc`, then the evidence's method and source
/// (each must be a slug, so that no personal data enters the log).
fn signal_detail(evidence: &Evidence) -> Result<String, Error> {
    if !is_slug(evidence.method()) || !evidence.source_ref().is_none_or(is_slug) {
        return Err(Error::Invalid(
            "the evidence of a privacy signal must have a method and source of 1 to 64 characters of a-z, 0-9, '.', '_' or '-'",
        ));
    }
    Ok(match evidence.source_ref() {
        Some(source) => format!("gpc,method={},source={source}", evidence.method()),
        None => format!("gpc,method={}", evidence.method()),
    })
}

impl Vault {
    /// The purposes the signal covers (by id), and the ids of every purpose known. A purpose
    /// whose definition failed its check may be one the signal covers: `Error::Crypto`.
    fn gpc_purposes(&self) -> Result<(Vec<Arc<PurposeDef>>, HashSet<PurposeId>), Error> {
        let purposes = self.purposes.read().unwrap_or_else(PoisonError::into_inner);
        if !purposes.tampered.is_empty() {
            return Err(Error::Crypto);
        }
        let mut covered: Vec<Arc<PurposeDef>> = purposes
            .defs
            .values()
            .filter(|d| d.purpose.is_covered_by_gpc())
            .cloned()
            .collect();
        covered.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((covered, purposes.defs.keys().cloned().collect()))
    }

    /// Applies the Global Privacy Control signal (a request with the `Sec-GPC: 1` header) for
    /// `customer`: for every purpose the signal covers ([`Purpose::is_covered_by_gpc`]: direct
    /// marketing, or selling or sharing data), the customer's current consent is withdrawn
    /// (basis [`LawfulBasis::Consent`]) or the customer objects (legitimate interests or
    /// public task, [`Vault::object`]); purposes on other bases are left alone. Passes
    /// already issued for those purposes stop at once.
    ///
    /// `evidence` says where the signal came from (for example `Evidence::new("sec-gpc-header")
    /// .source("preference-center").gpc()`); its method and source are recorded in the audit
    /// events, after `gpc` (detail `<consent id> gpc,method=…` for a withdrawal,
    /// `gpc,method=…` for an objection), so both must be slugs, or the call is refused with
    /// [`Error::Invalid`] and nothing is recorded.
    ///
    /// A purpose whose definition fails its check, or that the customer holds a live record
    /// for but the store no longer lists (purposes are never deleted: it was hidden), fails
    /// the call with the opaque [`Error::Crypto`] and nothing is recorded.
    ///
    /// The outcome lists the purposes by id. An unknown customer gives
    /// [`Error::UnknownCustomer`], an erased one [`Error::Erased`] (nothing of theirs opens any
    /// more).
    ///
    /// Applying the signal again when nothing is left to change changes nothing and records
    /// nothing: a host may call it on every request that carries the header. A record the
    /// customer gave with the signal present and their explicit confirmation (see
    /// [`Vault::give_consent`]) is left alone: that later, specific choice is not undone by
    /// the same signal sent again with the next request. A later consent
    /// given while the signal is present needs the customer's explicit confirmation (see
    /// [`Vault::give_consent`]).
    ///
    /// ```
    /// use egard::{Error, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
    ///
    /// let vault = Vault::builder().master_key(MasterKey::from_bytes([3; 32])).store(MemoryStore::new()).build()?;
    /// vault.define_purpose(Purpose::new("ads", LawfulBasis::Consent).fields(["email"]).sells_or_shares())?;
    /// let alice = vault.create_customer()?;
    /// vault.give_consent(alice, "ads", Evidence::new("web-form"))?;
    ///
    /// let signal = Evidence::new("sec-gpc-header").gpc();
    /// let outcome = vault.honor_gpc(alice, signal.clone())?;
    /// assert_eq!(outcome.withdrawn[0].as_str(), "ads");
    /// assert!(!vault.honor_gpc(alice, signal.clone())?.changed());
    ///
    /// // Opting in again while the signal is present needs explicit confirmation.
    /// assert!(matches!(vault.give_consent(alice, "ads", signal.clone()), Err(Error::GpcConflict { .. })));
    /// vault.give_consent(alice, "ads", signal.explicit())?;
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// [`Purpose::is_covered_by_gpc`]: crate::Purpose::is_covered_by_gpc
    pub fn honor_gpc(&self, customer: CustomerId, evidence: Evidence) -> Result<GpcOutcome, Error> {
        self.honor_gpc_as(&self.default_actor, customer, evidence)
    }

    /// [`honor_gpc`](Vault::honor_gpc), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.honor_gpc", level = "info", skip_all, fields(actor = %actor, customer = %customer), err(level = "info", Display)))]
    pub(crate) fn honor_gpc_as(
        &self,
        actor: &Actor,
        customer: CustomerId,
        evidence: Evidence,
    ) -> Result<GpcOutcome, Error> {
        let detail = signal_detail(&evidence)?;
        self.refresh_purposes(super::Refresh::IfStale)?;
        let (covered, known) = self.gpc_purposes()?;
        self.with_customer(customer, |entry, state, mut draft| {
            live_key(entry, state)?;
            // A purpose is never deleted: one the customer holds a live record for but that
            // the store does not list was hidden (it may be one the signal covers, put back
            // once the signal has passed it by). Read the definitions again once (another
            // process may have defined it since), then refuse.
            let hidden = |known: &HashSet<PurposeId>| {
                state
                    .current
                    .iter()
                    .any(|(id, r)| r.withdrawn_at.is_none() && r.superseded_by.is_none() && !known.contains(id))
            };
            let mut covered = covered.clone();
            if hidden(&known) {
                self.refresh_purposes(super::Refresh::Always)?;
                let (again, known) = self.gpc_purposes()?;
                if hidden(&known) {
                    return Err(Error::Crypto);
                }
                covered = again;
            }
            let now = self.now();
            let mut outcome = GpcOutcome::default();
            let mut entries = Vec::new();
            let mut ended = Vec::new();
            for def in &covered {
                let current = state.current.get(&def.id);
                // The customer's explicit confirmation despite the signal is the later and
                // more specific choice: the signal, sent again with every request, does not
                // undo it.
                if current.is_some_and(|r| {
                    r.withdrawn_at.is_none()
                        && r.superseded_by.is_none()
                        && r.evidence.has_gpc()
                        && r.evidence.is_explicit()
                }) {
                    continue;
                }
                match def.purpose.basis() {
                    LawfulBasis::Consent => {
                        let Some(current) = current else { continue };
                        if current.withdrawn_at.is_some() || current.superseded_by.is_some() {
                            continue;
                        }
                        let mut record = current.clone();
                        record.withdrawn_at = Some(now);
                        draft.put_consent(record.clone());
                        entries.push(
                            Entry::new(AuditKind::ConsentWithdrawn, Some(customer))
                                .purpose(&def.id)
                                .detail(format!("{} {detail}", record.id))
                                .actor(actor),
                        );
                        outcome.withdrawn.push(def.id.clone());
                        ended.push(record);
                    }
                    basis if basis.allows_objection() => {
                        // An objection already stands unless a record was given after it
                        // (which reopens a purpose other than direct marketing).
                        let stands = state.objections.get(&def.id).is_some_and(|at| {
                            def.purpose.is_direct_marketing() || current.is_none_or(|r| r.given_at <= *at)
                        });
                        if stands {
                            continue;
                        }
                        draft.put_objection(Objection {
                            customer,
                            purpose: def.id.clone(),
                            at: now,
                        });
                        entries.push(
                            Entry::new(AuditKind::Objected, Some(customer))
                                .purpose(&def.id)
                                .detail(detail.clone())
                                .actor(actor),
                        );
                        outcome.objected.push(def.id.clone());
                    }
                    _ => {}
                }
            }
            if entries.is_empty() {
                return Ok(outcome);
            }
            self.commit_customer(state, draft, entries)?;
            for record in ended {
                state.revoke(&record.purpose, AccessDenied::Withdrawn);
                state.current.insert(record.purpose.clone(), record);
            }
            for purpose in &outcome.objected {
                state.objections.insert(purpose.clone(), now);
                state.revoke(purpose, AccessDenied::Objected);
            }
            Ok(outcome)
        })
    }
}
