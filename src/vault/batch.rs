//! Batches: many changes in one store transaction, for throughput on durable backends.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use chrono::{DateTime, Utc};

use super::cache::CustomerState;
use super::choices::{check_evidence, given_detail};
use super::records::{Draft, Finished};
use super::{STALE_RETRIES, Vault, note_state};
use crate::actor::Actor;
use crate::audit::{AuditKind, Entry};
use crate::choices::SealedChoices;
use crate::consent::{Consent, Evidence};
use crate::error::{AccessDenied, Error};
use crate::ids::{ConsentId, CustomerId, PurposeId};
use crate::purpose::PurposeDef;
use crate::store::StoreError;

impl Vault {
    /// Records many consents (or records of other lawful bases) at once: each item is what
    /// [`give_consent`](Vault::give_consent) takes, with the same rules, the same superseding
    /// of a live earlier record and one `ConsentGiven` audit event each; but the whole batch
    /// is one store transaction. On a durable store that is one disk sync for the batch
    /// instead of one per consent.
    ///
    /// All or nothing: if any item is refused (unknown purpose or customer, an erased
    /// customer, an objection to direct marketing, special-category data without explicit
    /// consent, the Global Privacy Control signal without explicit consent:
    /// [`Error::GpcConflict`]) or the store fails, nothing of the batch is recorded and the error is
    /// returned. Items apply in order: a customer may appear several times, and a later item
    /// for the same purpose supersedes an earlier one. Returns the new consent ids, in the
    /// order of the items.
    ///
    /// ```
    /// use egard::{Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
    ///
    /// let vault = Vault::builder()
    ///     .master_key(MasterKey::from_bytes([3; 32]))
    ///     .store(MemoryStore::new())
    ///     .build()?;
    /// vault.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))?;
    /// let customers = [vault.create_customer()?, vault.create_customer()?];
    /// let ids = vault.give_consents(customers.iter().map(|&c| (c, "newsletter", Evidence::new("import"))))?;
    /// assert_eq!(ids.len(), 2);
    /// vault.authorize(customers[1], "newsletter")?;
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn give_consents<'p, I>(&self, items: I) -> Result<Vec<ConsentId>, Error>
    where
        I: IntoIterator<Item = (CustomerId, &'p str, Evidence)>,
    {
        self.give_consents_as(&self.default_actor, items)
    }

    /// [`give_consents`](Vault::give_consents), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.give_consents", level = "info", skip_all, fields(actor = %actor), err(level = "info", Display)))]
    pub(crate) fn give_consents_as<'p, I>(&self, actor: &Actor, items: I) -> Result<Vec<ConsentId>, Error>
    where
        I: IntoIterator<Item = (CustomerId, &'p str, Evidence)>,
    {
        let mut batch = Vec::new();
        for (customer, purpose, evidence) in items {
            let def = self.purpose_def(purpose)?;
            check_evidence(&def, &evidence)?;
            batch.push((customer, def, evidence));
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<CustomerId> = batch.iter().map(|(c, _, _)| *c).collect();
        ids.sort_unstable();
        ids.dedup();
        let key = self.record_key()?;
        let mut attempts = 0;
        loop {
            // Entries first (no lock held), then their locks in id order, so that two batches
            // can never wait for each other.
            let entries = ids.iter().map(|&id| self.entry(id)).collect::<Result<Vec<_>, _>>()?;
            let mut states: Vec<MutexGuard<'_, CustomerState>> = entries.iter().map(|e| e.lock()).collect();
            if states.iter().any(|s| s.evicted) {
                continue;
            }
            let result = entries
                .iter()
                .zip(states.iter_mut())
                .map(|(entry, state)| Draft::new(key, self.read_for_change(entry, state)?))
                .collect::<Result<Vec<_>, Error>>()
                .and_then(|drafts| self.give_consents_locked(actor, &batch, &ids, &mut states, drafts));
            match result {
                Err(Error::Storage(StoreError::Stale)) if attempts + 1 < STALE_RETRIES => {
                    attempts += 1;
                    let stale: Vec<bool> = states.iter().map(|s| s.evicted).collect();
                    drop(states);
                    for (entry, stale) in entries.iter().zip(stale) {
                        if stale {
                            self.cache.remove_entry(entry);
                        }
                    }
                }
                other => return other,
            }
        }
    }

    fn give_consents_locked(
        &self,
        actor: &Actor,
        batch: &[(CustomerId, Arc<PurposeDef>, Evidence)],
        ids: &[CustomerId],
        states: &mut [MutexGuard<'_, CustomerState>],
        mut drafts: Vec<Draft<'_>>,
    ) -> Result<Vec<ConsentId>, Error> {
        debug_assert_eq!(drafts.len(), states.len());
        let now = self.now();
        // The records as they will be once the batch is applied.
        let mut latest: HashMap<(CustomerId, PurposeId), Consent> = HashMap::new();
        let mut audit = Vec::with_capacity(batch.len());
        let mut new_ids = Vec::with_capacity(batch.len());
        for (customer, def, evidence) in batch {
            let i = ids
                .binary_search(customer)
                .map_err(|_| Error::UnknownCustomer(*customer))?;
            let (state, draft) = match (states.get(i), drafts.get_mut(i)) {
                (Some(state), Some(draft)) => (state, draft),
                _ => return Err(Error::UnknownCustomer(*customer)),
            };
            let key = (*customer, def.id.clone());
            let previous = latest.get(&key).or_else(|| state.current.get(&def.id));
            let record = new_consent(def, *customer, state, previous, evidence, now, draft, None)?;
            audit.push((
                i,
                Entry::new(AuditKind::ConsentGiven, Some(*customer))
                    .purpose(&def.id)
                    .detail(given_detail(record.id, evidence, false))
                    .actor(actor),
            ));
            new_ids.push(record.id);
            latest.insert(key, record);
        }
        let finished: Vec<Finished> = drafts.into_iter().map(Draft::finish).collect();
        let entries = audit
            .into_iter()
            .map(|(i, e)| match finished.get(i) {
                Some(f) => e.state(f.state.record.mac),
                None => e,
            })
            .collect();
        let writes = finished.iter().flat_map(|f| f.writes.iter().cloned()).collect();
        let written = self.commit(writes, entries)?;
        for (state, f) in states.iter_mut().zip(&finished) {
            note_state(state, &f.state);
        }
        for ((customer, purpose), record) in latest {
            if let Ok(i) = ids.binary_search(&customer) {
                if let Some(state) = states.get_mut(i) {
                    state.current.insert(purpose, record);
                }
            }
        }
        written.durable()?;
        Ok(new_ids)
    }
}

/// Records a consent given at `now` in `draft`, and returns it (with the id and sealed choices
/// given, if any, sealed for that id): the live earlier record
/// `previous`, if any, is kept as history and marked superseded by the new one. Refused for an
/// erased customer, and after an objection to a direct-marketing purpose.
#[allow(clippy::too_many_arguments)] // the parts of one record, each needed
pub(super) fn new_consent(
    def: &PurposeDef,
    customer: CustomerId,
    state: &CustomerState,
    previous: Option<&Consent>,
    evidence: &Evidence,
    now: DateTime<Utc>,
    draft: &mut Draft<'_>,
    sealed: Option<(ConsentId, SealedChoices)>,
) -> Result<Consent, Error> {
    if state.erased {
        return Err(Error::Erased(customer));
    }
    if def.purpose.is_direct_marketing() && state.objections.contains_key(&def.id) {
        return Err(AccessDenied::Objected.into());
    }
    let (id, sealed_choices) = match sealed {
        Some((id, sealed)) => (id, Some(sealed)),
        None => (ConsentId::new(), None),
    };
    let record = Consent {
        id,
        customer,
        purpose: def.id.clone(),
        basis: def.purpose.basis(),
        notice_version: def.purpose.required_notice_version(),
        given_at: now,
        expires_at: def.purpose.lifetime().map(|d| now + d),
        withdrawn_at: None,
        superseded_by: None,
        evidence: evidence.clone(),
        sealed_choices,
    };
    if let Some(prev) = previous {
        if prev.withdrawn_at.is_none() && prev.superseded_by.is_none() {
            let mut prev = prev.clone();
            prev.superseded_by = Some(record.id);
            draft.put_consent(prev);
        }
    }
    draft.put_consent(record.clone());
    Ok(record)
}
