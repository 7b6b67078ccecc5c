//! An in-memory store: for tests, examples and ephemeral use. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{CustomerRecord, CustomerSnapshot, Objection, Store, StoreError, StoredField, WrappedKey, Write};
use crate::audit::AuditEvent;
use crate::consent::Consent;
use crate::ids::{CustomerId, FieldName};
use crate::purpose::Purpose;

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
    purposes: BTreeMap<String, Purpose>,
    customers: HashMap<CustomerId, Slot>,
    audit: BTreeMap<u64, AuditEvent>,
}

struct Slot {
    record: CustomerRecord,
    keys: Vec<WrappedKey>,
    fields: Vec<StoredField>,
    consents: Vec<Consent>,
    objections: Vec<Objection>,
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

fn target(w: &Write) -> Option<(CustomerId, bool)> {
    // (customer, refused once erased)
    match w {
        Write::PutKey(k) => Some((k.customer, true)),
        Write::PutField { customer, .. } => Some((*customer, true)),
        Write::SetRestricted { customer, .. } => Some((*customer, true)),
        Write::DeleteField { customer, .. } | Write::EraseCustomer { customer, .. } => Some((*customer, false)),
        Write::PutConsent(c) => Some((c.customer, false)),
        Write::PutObjection(o) => Some((o.customer, false)),
        Write::PutPurpose(_) | Write::InsertCustomer(_) | Write::AppendAudit(_) => None,
    }
}

impl Inner {
    /// Checks the whole batch against the current state without changing anything.
    fn check(&self, batch: &[Write]) -> Result<(), StoreError> {
        let mut inserted = HashSet::new();
        let mut erased = HashSet::new();
        let mut seqs = HashSet::new();
        for w in batch {
            let conflict = match w {
                Write::InsertCustomer(r) => self.customers.contains_key(&r.id) || !inserted.insert(r.id),
                Write::AppendAudit(e) => self.audit.contains_key(&e.seq) || !seqs.insert(e.seq),
                _ => false,
            };
            if conflict {
                return Err(StoreError::Conflict);
            }
            if let Some((id, refused_if_erased)) = target(w) {
                let stored_erased = match self.customers.get(&id) {
                    Some(slot) => slot.record.erased_at.is_some(),
                    None if inserted.contains(&id) => false,
                    None => return Err(StoreError::MissingCustomer),
                };
                if refused_if_erased && (stored_erased || erased.contains(&id)) {
                    return Err(StoreError::MissingCustomer);
                }
            }
            if let Write::EraseCustomer { customer, .. } = w {
                erased.insert(*customer);
            }
        }
        Ok(())
    }

    fn slot(customers: &mut HashMap<CustomerId, Slot>, id: CustomerId) -> Option<&mut Slot> {
        customers.get_mut(&id)
    }

    /// Applies one write that [`Inner::check`] accepted.
    fn apply(&mut self, w: &Write) {
        match w {
            Write::PutPurpose(p) => {
                self.purposes.insert(p.id().to_owned(), p.clone());
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
            Write::PutKey(k) => {
                if let Some(s) = Self::slot(&mut self.customers, k.customer) {
                    s.keys.retain(|old| old.version != k.version);
                    s.keys.push(k.clone());
                }
            }
            Write::SetRestricted { customer, restricted } => {
                if let Some(s) = Self::slot(&mut self.customers, *customer) {
                    s.record.restricted = *restricted;
                }
            }
            Write::PutField {
                customer,
                field,
                envelope,
                at,
            } => {
                if let Some(s) = Self::slot(&mut self.customers, *customer) {
                    let new = StoredField {
                        field: field.clone(),
                        envelope: envelope.clone(),
                        written_at: *at,
                    };
                    match s.fields.iter_mut().find(|f| &f.field == field) {
                        Some(old) => *old = new,
                        None => s.fields.push(new),
                    }
                }
            }
            Write::DeleteField { customer, field } => {
                if let Some(s) = Self::slot(&mut self.customers, *customer) {
                    s.fields.retain(|f| &f.field != field);
                }
            }
            Write::PutConsent(c) => {
                if let Some(s) = Self::slot(&mut self.customers, c.customer) {
                    match s.consents.iter_mut().find(|old| old.id == c.id) {
                        Some(old) => *old = c.clone(),
                        None => s.consents.push(c.clone()),
                    }
                }
            }
            Write::PutObjection(o) => {
                if let Some(s) = Self::slot(&mut self.customers, o.customer) {
                    s.objections.push(o.clone());
                }
            }
            Write::EraseCustomer { customer, at } => {
                if let Some(s) = Self::slot(&mut self.customers, *customer) {
                    s.keys = Vec::new();
                    s.fields = Vec::new();
                    s.record.erased_at.get_or_insert(*at);
                }
            }
            Write::AppendAudit(e) => {
                self.audit.insert(e.seq, e.clone());
            }
        }
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

    fn purposes(&self) -> Result<Vec<Purpose>, StoreError> {
        Ok(self.read().purposes.values().cloned().collect())
    }

    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        Ok(self.read().customers.get(&id).map(|s| CustomerSnapshot {
            record: s.record.clone(),
            keys: s.keys.clone(),
            consents: s.consents.clone(),
            objections: s.objections.clone(),
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
}
