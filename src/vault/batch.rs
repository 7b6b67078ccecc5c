//! Batches: many changes in one store transaction, for throughput on durable backends.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use chrono::{DateTime, Utc};

use super::cache::{CustomerEntry, CustomerState};
use super::{Refresh, Vault};
use crate::audit::{AuditKind, Entry};
use crate::consent::{Consent, Evidence};
use crate::error::{AccessDenied, Error};
use crate::ids::{ConsentId, CustomerId, PurposeId};
use crate::purpose::PurposeDef;
use crate::store::Write;

impl Vault {
    /// Records many consents (or records of other lawful bases) at once: each item is what
    /// [`give_consent`](Vault::give_consent) takes, with the same rules, the same superseding
    /// of a live earlier record and one `ConsentGiven` audit event each; but the whole batch
    /// is one store transaction. On a durable store that is one disk sync for the batch
    /// instead of one per consent.
    ///
    /// All or nothing: if any item is refused (unknown purpose or customer, an erased
    /// customer, an objection to direct marketing, special-category data without explicit
    /// consent) or the store fails, nothing of the batch is recorded and the error is
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
        let mut batch = Vec::new();
        for (customer, purpose, evidence) in items {
            let def = self.purpose_def(purpose)?;
            if def.purpose.is_special_category() && !evidence.is_explicit() {
                return Err(Error::Invalid("special-category purposes need explicit consent"));
            }
            batch.push((customer, def, evidence));
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<CustomerId> = batch.iter().map(|(c, _, _)| *c).collect();
        ids.sort_unstable();
        ids.dedup();
        loop {
            // Entries first (no lock held), then their locks in id order, so that two batches
            // can never wait for each other.
            let entries = ids.iter().map(|&id| self.entry(id)).collect::<Result<Vec<_>, _>>()?;
            let mut states: Vec<MutexGuard<'_, CustomerState>> = entries.iter().map(|e| e.lock()).collect();
            if states.iter().any(|s| s.evicted) {
                continue;
            }
            for (entry, state) in entries.iter().zip(states.iter_mut()) {
                if !state.erased {
                    self.refresh(entry, state, Refresh::Always)?;
                }
            }
            return self.give_consents_locked(&batch, &ids, &entries, &mut states);
        }
    }

    fn give_consents_locked(
        &self,
        batch: &[(CustomerId, Arc<PurposeDef>, Evidence)],
        ids: &[CustomerId],
        entries: &[Arc<CustomerEntry>],
        states: &mut [MutexGuard<'_, CustomerState>],
    ) -> Result<Vec<ConsentId>, Error> {
        debug_assert_eq!(entries.len(), states.len());
        let now = self.now();
        // The records as they will be once the batch is applied.
        let mut latest: HashMap<(CustomerId, PurposeId), Consent> = HashMap::new();
        let mut writes = Vec::with_capacity(batch.len() * 2);
        let mut audit = Vec::with_capacity(batch.len());
        let mut new_ids = Vec::with_capacity(batch.len());
        for (customer, def, evidence) in batch {
            let i = ids
                .binary_search(customer)
                .map_err(|_| Error::UnknownCustomer(*customer))?;
            let state = &states[i];
            let key = (*customer, def.id.clone());
            let previous = latest.get(&key).or_else(|| state.current.get(&def.id));
            let (record, record_writes) = new_consent(def, *customer, state, previous, evidence, now)?;
            writes.extend(record_writes);
            audit.push(
                Entry::new(AuditKind::ConsentGiven, Some(*customer))
                    .purpose(&def.id)
                    .detail(record.id.to_string()),
            );
            new_ids.push(record.id);
            latest.insert(key, record);
        }
        self.commit(writes, audit)?;
        for ((customer, purpose), record) in latest {
            if let Ok(i) = ids.binary_search(&customer) {
                states[i].current.insert(purpose, record);
            }
        }
        Ok(new_ids)
    }
}

/// The record of a consent given at `now`, and the writes that store it: the live earlier
/// record `previous`, if any, is kept as history and marked superseded by the new one.
/// Refused for an erased customer, and after an objection to a direct-marketing purpose.
pub(super) fn new_consent(
    def: &PurposeDef,
    customer: CustomerId,
    state: &CustomerState,
    previous: Option<&Consent>,
    evidence: &Evidence,
    now: DateTime<Utc>,
) -> Result<(Consent, Vec<Write>), Error> {
    if state.erased {
        return Err(Error::Erased(customer));
    }
    if def.purpose.is_direct_marketing() && state.objections.contains_key(&def.id) {
        return Err(AccessDenied::Objected.into());
    }
    let record = Consent {
        id: ConsentId::new(),
        customer,
        purpose: def.id.clone(),
        basis: def.purpose.basis(),
        notice_version: def.purpose.required_notice_version(),
        given_at: now,
        expires_at: def.purpose.lifetime().map(|d| now + d),
        withdrawn_at: None,
        superseded_by: None,
        evidence: evidence.clone(),
    };
    let mut writes = Vec::with_capacity(2);
    if let Some(prev) = previous {
        if prev.withdrawn_at.is_none() && prev.superseded_by.is_none() {
            let mut prev = prev.clone();
            prev.superseded_by = Some(record.id);
            writes.push(Write::PutConsent(prev));
        }
    }
    writes.push(Write::PutConsent(record.clone()));
    Ok((record, writes))
}
