//! An in-memory store: for tests, examples and ephemeral use. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{
    Authenticated, ChainLink, CustomerRecord, CustomerSnapshot, FieldVersion, LatestChange, LookupToken, Objection,
    PurposeSnapshot, RecordMac, Store, StoreError, StoredField, StoredLookup, StoredPurpose, VaultSecret, WrappedKey,
    Write,
};
use crate::audit::{AuditAnchor, AuditEvent};
use crate::consent::Consent;
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};

/// A thread-safe store held in memory.
///
/// ```
/// use egard::{MasterKey, MemoryStore, Vault};
///
/// let vault = Vault::builder()
///     .master_key(MasterKey::from_bytes([1; 32]))
///     .store(MemoryStore::new())
///     .build()?;
/// # Ok::<(), egard::Error>(())
/// ```
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("MemoryStore")
            .field("customers", &inner.customers.len())
            .field("audit_events", &inner.audit.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    purposes: BTreeMap<String, StoredPurpose>,
    /// By id, so that the audience pages in id order.
    customers: BTreeMap<CustomerId, Slot>,
    audit: BTreeMap<u64, AuditEvent>,
    /// The sequence number of the latest event with a `state`, per customer and per purpose
    /// (events naming no customer).
    customer_changes: HashMap<CustomerId, u64>,
    purpose_changes: HashMap<PurposeId, u64>,
    secrets: BTreeMap<String, VaultSecret>,
    lookups: BTreeMap<FieldName, StoredLookup>,
    /// The blind index: who holds each (field, token); and each customer's tokens, kept
    /// apart from the slots so that a customer without an indexed field pays nothing.
    index: HashMap<(FieldName, LookupToken), CustomerId>,
    tokens: HashMap<CustomerId, Vec<(FieldName, LookupToken)>>,
}

struct Slot {
    record: CustomerRecord,
    keys: Vec<WrappedKey>,
    fields: Vec<StoredField>,
    consents: Vec<Authenticated<Consent>>,
    objections: Vec<Authenticated<Objection>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch (batches are
        // checked before any change), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends without the spare capacity of `Vec::push` (which would double it): a customer's
/// lists are short and grow rarely, and memory is what a store of many customers spends.
fn push_exact<T>(list: &mut Vec<T>, item: T) {
    list.reserve_exact(1);
    list.push(item);
}

impl Inner {
    /// Checks the whole batch against the current state without changing anything.
    fn check(&self, batch: &[Write]) -> Result<(), StoreError> {
        let mut inserted = HashSet::new();
        let mut secrets = HashSet::new();
        let mut lookups: HashSet<&FieldName> = HashSet::new();
        let mut erased = HashSet::new();
        // Revisions as left by earlier writes of the batch.
        let mut revs: HashMap<CustomerId, u64> = HashMap::new();
        let mut purpose_revs: HashMap<&str, u64> = HashMap::new();
        // Duplicate sequence numbers within the batch: while they ascend (as the vault writes
        // them) none can repeat, so the set is only built, without allocating on the hot
        // path, once one does not.
        let mut last_seq: Option<u64> = None;
        let mut seqs: Option<HashSet<u64>> = None;
        // Audit events deleted by a `PruneAudit` earlier in the batch: (through, kept).
        let mut pruned: Vec<(u64, HashSet<u64>)> = Vec::new();
        // The index as earlier writes of the batch leave it: entries taken, and (customer,
        // field) pairs whose stored entry no longer counts.
        let mut taken: HashMap<(&FieldName, &LookupToken), CustomerId> = HashMap::new();
        let mut dropped: HashSet<(CustomerId, &FieldName)> = HashSet::new();
        for (i, w) in batch.iter().enumerate() {
            let conflict = match w {
                Write::InsertCustomer(r) => {
                    let taken = self.customers.contains_key(&r.id) || !inserted.insert(r.id);
                    revs.insert(r.id, r.rev);
                    taken
                }
                Write::InsertSecret(v) => self.secrets.contains_key(&v.name) || !secrets.insert(v.name.as_str()),
                Write::PutLookup(l) => self.lookups.contains_key(&l.field) || !lookups.insert(&l.field),
                Write::ReplaceSecret(v) => {
                    secrets.insert(v.name.as_str());
                    false
                }
                Write::AppendAudit(e) => {
                    let repeated = match (&mut seqs, last_seq) {
                        (Some(set), _) => !set.insert(e.seq),
                        (None, Some(last)) if e.seq <= last => {
                            let mut set: HashSet<u64> = batch[..i]
                                .iter()
                                .filter_map(|w| match w {
                                    Write::AppendAudit(earlier) => Some(earlier.seq),
                                    _ => None,
                                })
                                .collect();
                            let repeated = !set.insert(e.seq);
                            seqs = Some(set);
                            repeated
                        }
                        (None, _) => false,
                    };
                    last_seq = Some(e.seq);
                    let stored = self.audit.contains_key(&e.seq)
                        && !pruned
                            .iter()
                            .any(|(through, keep)| e.seq <= *through && !keep.contains(&e.seq));
                    stored || repeated
                }
                Write::PruneAudit { through, keep } => {
                    pruned.push((*through, keep.iter().copied().collect()));
                    false
                }
                Write::PutPurpose { stored, expected_rev } => {
                    let id = stored.purpose.id();
                    let current = purpose_revs
                        .get(id)
                        .copied()
                        .or_else(|| self.purposes.get(id).map(|p| p.rev));
                    if current != *expected_rev {
                        return Err(StoreError::Stale);
                    }
                    purpose_revs.insert(id, stored.rev);
                    false
                }
                Write::IndexField {
                    customer,
                    field,
                    token: Some(token),
                } => {
                    let holder = taken.get(&(field, token)).copied().or_else(|| {
                        self.index
                            .get(&(field.clone(), *token))
                            .copied()
                            .filter(|c| !dropped.contains(&(*c, field)) && !erased.contains(c))
                    });
                    if holder.is_some_and(|c| c != *customer) {
                        return Err(StoreError::Duplicate);
                    }
                    taken.retain(|(f, _), c| !(*f == field && c == customer));
                    taken.insert((field, token), *customer);
                    dropped.insert((*customer, field));
                    false
                }
                Write::IndexField { customer, field, .. } | Write::DeleteField { customer, field } => {
                    taken.retain(|(f, _), c| !(*f == field && c == customer));
                    dropped.insert((*customer, field));
                    false
                }
                Write::EraseCustomer { customer, .. } => {
                    taken.retain(|_, c| c != customer);
                    false
                }
                _ => false,
            };
            if conflict {
                return Err(StoreError::Conflict);
            }
            if let Some((id, refused_if_erased)) = w.target_customer() {
                let stored_erased = match self.customers.get(&id) {
                    Some(slot) => slot.record.erased_at.is_some(),
                    None if inserted.contains(&id) => false,
                    None => return Err(StoreError::MissingCustomer),
                };
                if refused_if_erased && (stored_erased || erased.contains(&id)) {
                    return Err(StoreError::MissingCustomer);
                }
            }
            match w {
                Write::EraseCustomer { customer, .. } => {
                    erased.insert(*customer);
                }
                Write::UpdateCustomer { record, expected_rev } => {
                    let current = revs
                        .get(&record.id)
                        .copied()
                        .or_else(|| self.customers.get(&record.id).map(|s| s.record.rev));
                    if current != Some(*expected_rev) {
                        return Err(StoreError::Stale);
                    }
                    revs.insert(record.id, record.rev);
                    if record.erased_at.is_some() {
                        erased.insert(record.id);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn slot(customers: &mut BTreeMap<CustomerId, Slot>, id: CustomerId) -> Option<&mut Slot> {
        customers.get_mut(&id)
    }

    /// Applies one write that [`Inner::check`] accepted.
    fn apply(&mut self, w: &Write) {
        match w {
            Write::PutPurpose { stored, .. } => {
                self.purposes.insert(stored.purpose.id().to_owned(), stored.clone());
            }
            Write::InsertCustomer(r) => {
                self.customers.insert(
                    r.id,
                    Slot {
                        record: r.clone(),
                        keys: Vec::new(),
                        fields: Vec::new(),
                        consents: Vec::new(),
                        objections: Vec::new(),
                    },
                );
            }
            Write::UpdateCustomer { record, .. } => {
                if let Some(s) = Self::slot(&mut self.customers, record.id) {
                    let erased_at = s.record.erased_at.or(record.erased_at);
                    s.record = record.clone();
                    s.record.erased_at = erased_at;
                }
            }
            Write::PutKey(k) => {
                if let Some(s) = Self::slot(&mut self.customers, k.customer) {
                    s.keys.retain(|old| old.version != k.version);
                    push_exact(&mut s.keys, k.clone());
                }
            }
            Write::PutField {
                customer,
                field,
                version,
                envelope,
                at,
            } => {
                if let Some(s) = Self::slot(&mut self.customers, *customer) {
                    let new = StoredField {
                        field: field.clone(),
                        version: *version,
                        envelope: envelope.clone(),
                        written_at: *at,
                    };
                    match s.fields.iter_mut().find(|f| &f.field == field) {
                        Some(old) => *old = new,
                        None => push_exact(&mut s.fields, new),
                    }
                }
            }
            Write::DeleteKey { customer, version } => {
                if let Some(s) = Self::slot(&mut self.customers, *customer) {
                    s.keys.retain(|k| k.version != *version);
                }
            }
            Write::DeleteField { customer, field } => {
                if let Some(s) = Self::slot(&mut self.customers, *customer) {
                    s.fields.retain(|f| &f.field != field);
                }
                self.set_token(*customer, field, None);
            }
            Write::IndexField { customer, field, token } => {
                let has_field = self
                    .customers
                    .get(customer)
                    .is_some_and(|s| s.fields.iter().any(|f| &f.field == field));
                if has_field {
                    self.set_token(*customer, field, *token);
                }
            }
            Write::PutLookup(l) => {
                self.lookups.insert(l.field.clone(), l.clone());
            }
            Write::PutConsent(c) => {
                if let Some(s) = Self::slot(&mut self.customers, c.record.customer) {
                    match s.consents.iter_mut().find(|old| old.record.id == c.record.id) {
                        Some(old) => *old = c.clone(),
                        None => push_exact(&mut s.consents, c.clone()),
                    }
                }
            }
            Write::PutObjection(o) => {
                if let Some(s) = Self::slot(&mut self.customers, o.record.customer) {
                    push_exact(&mut s.objections, o.clone());
                }
            }
            Write::EraseCustomer { customer, at } => {
                if let Some(s) = Self::slot(&mut self.customers, *customer) {
                    s.keys = Vec::new();
                    s.fields = Vec::new();
                    s.record.erased_at.get_or_insert(*at);
                }
                for (field, token) in self.tokens.remove(customer).unwrap_or_default() {
                    self.index.remove(&(field, token));
                }
            }
            Write::AppendAudit(e) => self.append(e.clone()),
            Write::InsertSecret(v) | Write::ReplaceSecret(v) => {
                self.secrets.insert(v.name.clone(), v.clone());
            }
            Write::PruneAudit { through, keep } => self.prune_audit(*through, keep),
        }
    }

    /// Deletes the events up to `through` but those in `keep`, freeing their memory (a
    /// `BTreeMap` gives back its nodes as they empty); the latest-change indexes that pointed
    /// at a deleted event are recomputed from what remains.
    fn prune_audit(&mut self, through: u64, keep: &[u64]) {
        let keep: HashSet<u64> = keep.iter().copied().filter(|s| *s <= through).collect();
        let above = match through.checked_add(1) {
            Some(next) => self.audit.split_off(&next),
            None => BTreeMap::new(),
        };
        let below = std::mem::replace(&mut self.audit, above);
        for (seq, event) in below {
            if keep.contains(&seq) {
                self.audit.insert(seq, event);
            }
        }
        let gone = |seq: &u64| *seq <= through && !keep.contains(seq);
        let customers: Vec<CustomerId> = self
            .customer_changes
            .iter()
            .filter(|(_, s)| gone(s))
            .map(|(c, _)| *c)
            .collect();
        let purposes: Vec<PurposeId> = self
            .purpose_changes
            .iter()
            .filter(|(_, s)| gone(s))
            .map(|(p, _)| p.clone())
            .collect();
        if customers.is_empty() && purposes.is_empty() {
            return;
        }
        for c in &customers {
            self.customer_changes.remove(c);
        }
        for p in &purposes {
            self.purpose_changes.remove(p);
        }
        for e in self.audit.values().filter(|e| e.state.is_some()) {
            match (&e.customer, &e.purpose) {
                (Some(c), _) if customers.contains(c) => {
                    self.customer_changes.insert(*c, e.seq);
                }
                (None, Some(p)) if purposes.contains(p) => {
                    self.purpose_changes.insert(p.clone(), e.seq);
                }
                _ => {}
            }
        }
    }

    /// Appends an audit event, noting it as its customer's or purpose's latest change if it
    /// carries a state.
    fn append(&mut self, e: AuditEvent) {
        if e.state.is_some() {
            let latest = match (&e.customer, &e.purpose) {
                (Some(c), _) => Some(self.customer_changes.entry(*c).or_insert(e.seq)),
                (None, Some(p)) => Some(self.purpose_changes.entry(p.clone()).or_insert(e.seq)),
                (None, None) => None,
            };
            if let Some(latest) = latest {
                *latest = (*latest).max(e.seq);
            }
        }
        self.audit.insert(e.seq, e);
    }

    /// Sets or clears the token of one customer's field, in both directions of the index.
    fn set_token(&mut self, customer: CustomerId, field: &FieldName, token: Option<LookupToken>) {
        let list = self.tokens.entry(customer).or_default();
        if let Some(i) = list.iter().position(|(f, _)| f == field) {
            let (f, old) = list.swap_remove(i);
            self.index.remove(&(f, old));
        }
        if let Some(token) = token {
            push_exact(list, (field.clone(), token));
            self.index.insert((field.clone(), token), customer);
        }
        if list.is_empty() {
            self.tokens.remove(&customer);
        }
    }

    /// The token of one customer's field.
    fn token(&self, customer: CustomerId, field: &FieldName) -> Option<LookupToken> {
        self.tokens
            .get(&customer)
            .and_then(|list| list.iter().find(|(f, _)| f == field).map(|(_, t)| *t))
    }

    /// The event at `seq` with the MAC of the one before it.
    fn latest_change(&self, seq: Option<u64>) -> Option<LatestChange> {
        let seq = seq?;
        let event = self.audit.get(&seq)?.clone();
        let prev_mac = seq.checked_sub(1).and_then(|p| self.audit.get(&p)).map(|e| e.mac);
        Some(LatestChange { event, prev_mac })
    }
}

impl Store for MemoryStore {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        let mut inner = self.write();
        inner.check(batch)?;
        for w in batch {
            inner.apply(w);
        }
        Ok(())
    }

    fn apply_chained(&self, batch: &[Write], link: &mut ChainLink<'_>) -> Result<AuditAnchor, StoreError> {
        // The head is read and the events appended under one write lock: no other writer
        // can take the next sequence number in between.
        let mut inner = self.write();
        inner.check(batch)?;
        let head = inner
            .audit
            .last_key_value()
            .map_or(AuditAnchor::EMPTY, |(&seq, e)| AuditAnchor { seq, mac: e.mac });
        let events = link(head)?;
        let mut expected = head.seq;
        for e in &events {
            if Some(e.seq) != expected.checked_add(1) {
                return Err(StoreError::Conflict);
            }
            expected = e.seq;
        }
        let new_head = events.last().map_or(head, |e| AuditAnchor { seq: e.seq, mac: e.mac });
        for w in batch {
            inner.apply(w);
        }
        for e in events {
            inner.append(e);
        }
        Ok(new_head)
    }

    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        let inner = self.read();
        Ok(inner
            .purposes
            .values()
            .map(|p| PurposeSnapshot {
                stored: p.clone(),
                latest_change: PurposeId::new(p.purpose.id())
                    .ok()
                    .and_then(|id| inner.latest_change(inner.purpose_changes.get(&id).copied())),
            })
            .collect())
    }

    fn customer_revision(&self, id: CustomerId) -> Result<Option<(u64, RecordMac)>, StoreError> {
        Ok(self.read().customers.get(&id).map(|s| (s.record.rev, s.record.mac)))
    }

    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        let inner = self.read();
        Ok(inner.customers.get(&id).map(|s| CustomerSnapshot {
            record: s.record.clone(),
            keys: s.keys.clone(),
            consents: s.consents.clone(),
            objections: s.objections.clone(),
            fields: s
                .fields
                .iter()
                .map(|f| FieldVersion {
                    field: f.field.clone(),
                    version: f.version,
                    written_at: f.written_at,
                    token: inner.token(id, &f.field),
                })
                .collect(),
            latest_change: inner.latest_change(inner.customer_changes.get(&id).copied()),
        }))
    }

    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
        Ok(self
            .read()
            .customers
            .get(&customer)
            .and_then(|s| s.fields.iter().find(|f| &f.field == field).cloned()))
    }

    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
        Ok(self
            .read()
            .customers
            .get(&customer)
            .map(|s| s.fields.clone())
            .unwrap_or_default())
    }

    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        Ok(self.read().customers.keys().copied().collect())
    }

    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        Ok(self.read().audit.values().next_back().cloned())
    }

    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .read()
            .audit
            .range(from_seq..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .read()
            .audit
            .values()
            .filter(|e| e.customer == Some(customer))
            .cloned()
            .collect())
    }

    fn audit_trail(&self, customer: CustomerId) -> Result<Vec<LatestChange>, StoreError> {
        let inner = self.read();
        Ok(inner
            .audit
            .values()
            .filter(|e| e.customer == Some(customer))
            .filter_map(|e| inner.latest_change(Some(e.seq)))
            .collect())
    }

    fn consent_candidates(
        &self,
        purpose: &PurposeId,
        notice_versions: std::ops::RangeInclusive<u32>,
        after: Option<CustomerId>,
        limit: usize,
    ) -> Result<Vec<CustomerId>, StoreError> {
        use std::ops::Bound;
        let inner = self.read();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(inner
            .customers
            .range((from, Bound::Unbounded))
            .filter(|(_, slot)| {
                slot.record.erased_at.is_none()
                    && slot.consents.iter().any(|c| {
                        let c = &c.record;
                        c.purpose == *purpose
                            && c.withdrawn_at.is_none()
                            && c.superseded_by.is_none()
                            && notice_versions.contains(&c.notice_version)
                    })
            })
            .map(|(id, _)| *id)
            .take(limit)
            .collect())
    }

    fn audit_changes(&self, after_seq: u64, limit: usize) -> Result<Vec<LatestChange>, StoreError> {
        let inner = self.read();
        let Some(from) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        Ok(inner
            .audit
            .range(from..)
            .filter(|(_, e)| e.kind.is_change())
            .take(limit)
            .filter_map(|(seq, _)| inner.latest_change(Some(*seq)))
            .collect())
    }

    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        Ok(self.read().secrets.get(name).cloned())
    }

    fn consent_owner(&self, consent: ConsentId) -> Result<Option<CustomerId>, StoreError> {
        Ok(self
            .read()
            .customers
            .iter()
            .find(|(_, s)| s.consents.iter().any(|c| c.record.id == consent))
            .map(|(id, _)| *id))
    }

    fn lookups(&self) -> Result<Vec<StoredLookup>, StoreError> {
        Ok(self.read().lookups.values().cloned().collect())
    }

    fn find_indexed(&self, field: &FieldName, token: &LookupToken) -> Result<Option<CustomerId>, StoreError> {
        Ok(self.read().index.get(&(field.clone(), *token)).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKind;

    fn event(seq: u64) -> Write {
        Write::AppendAudit(AuditEvent {
            seq,
            at: chrono::Utc::now(),
            kind: AuditKind::PurposeDefined,
            customer: None,
            purpose: None,
            field: None,
            detail: String::new(),
            state: None,
            actor: None,
            mac: [0; 32],
        })
    }

    fn seqs(store: &MemoryStore) -> Vec<u64> {
        store.audit_range(0, 100).unwrap().iter().map(|e| e.seq).collect()
    }

    #[test]
    fn an_audit_sequence_number_repeated_in_a_batch_or_already_stored_conflicts() {
        let store = MemoryStore::new();
        store.apply(&[event(1), event(2)]).unwrap();
        for batch in [
            vec![event(3), event(3)],
            vec![event(3), event(4), event(3)],
            vec![event(5), event(3), event(4), event(3)],
            vec![event(2)],
            vec![event(3), event(1)],
        ] {
            assert_eq!(store.apply(&batch), Err(StoreError::Conflict));
            assert_eq!(seqs(&store), [1, 2], "nothing of a refused batch is applied");
        }
        store.apply(&[event(4), event(3), event(5)]).unwrap();
        assert_eq!(seqs(&store), [1, 2, 3, 4, 5]);
    }
}
