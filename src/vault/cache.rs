//! The vault's cache of customers: unwrapped data keys, current consent records, standing, and
//! the revocation flags of issued passes.
//!
//! Every change to a customer goes through its cached entry, under the entry's lock, so a
//! withdrawal and the flags of passes already handed out change together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use chrono::{DateTime, Utc};

use super::records::Verified;
use crate::consent::{Consent, Standing};
use crate::crypto::DataKey;
use crate::error::{AccessDenied, Error};
use crate::gate::Revocation;
use crate::ids::{CustomerId, FieldName, PurposeId};
use crate::store::RecordMac;

/// One cached customer.
#[derive(Debug)]
pub(crate) struct CustomerEntry {
    pub(crate) id: CustomerId,
    /// The unwrapped data key; `None` once erased. Erasure wipes it and takes it out under
    /// the write lock ([`CustomerEntry::erase_key`]), so that no pass, which holds the entry,
    /// keeps it alive; a use of the key holds the read lock for the one seal or open.
    key: RwLock<Option<DataKey>>,
    state: Mutex<CustomerState>,
    /// Used since the last eviction scan passed it (a second chance before eviction).
    recent: AtomicBool,
}

/// What the vault knows of one customer, kept in step with the store.
#[derive(Debug, Default)]
pub(crate) struct CustomerState {
    pub(crate) restricted: bool,
    pub(crate) erased: bool,
    /// Set when the entry leaves the cache; a change holding a stale entry must start again.
    pub(crate) evicted: bool,
    /// When the entry was read from the store (for the multi-process time-to-live).
    pub(crate) loaded_at: Option<DateTime<Utc>>,
    /// The revision and state MAC of the customer's stored state this entry reflects: a
    /// change is made on top of exactly this state, and a stored state with another MAC was
    /// changed elsewhere (or tampered with) and is checked against the audit log.
    pub(crate) rev: u64,
    pub(crate) mac: RecordMac,
    /// The write version of every stored field, by name (sorted): the version an envelope
    /// must be bound to for it to open.
    pub(crate) versions: Vec<(FieldName, u64)>,
    /// The latest record per purpose (older ones are history, kept in the store).
    pub(crate) current: HashMap<PurposeId, Consent>,
    /// The latest objection per purpose.
    pub(crate) objections: HashMap<PurposeId, DateTime<Utc>>,
    /// The customer's sealed field envelopes (ciphertext), read from the store on the first
    /// reveal and kept in step by every change made through this vault; `None` until read.
    pub(crate) fields: Option<HashMap<FieldName, Vec<u8>>>,
    /// Encryptions of the current data key reserved in the store by this vault for values
    /// sealed for the host, not used yet: the next one is `reserved.start`.
    pub(crate) reserved: std::ops::Range<u64>,
    /// The flag shared by the live passes of each purpose.
    grants: HashMap<PurposeId, Arc<Revocation>>,
    /// Flags revoked for another reason that passes still hold: an erasure must reach them
    /// too, since it overrides every other reason.
    revoked: Vec<Arc<Revocation>>,
}

impl CustomerState {
    /// The state of a customer just created: nothing given yet.
    pub(crate) fn new_customer(now: DateTime<Utc>, rev: u64, mac: RecordMac) -> Self {
        Self {
            loaded_at: Some(now),
            rev,
            mac,
            ..Self::default()
        }
    }

    /// The state of a customer as checked against its MACs.
    pub(crate) fn from_verified(verified: &Verified, now: DateTime<Utc>) -> Self {
        let mut current: HashMap<PurposeId, Consent> = HashMap::new();
        for (c, _) in verified.consents.values() {
            // Ties on `given_at` (two records within one microsecond) go to the later id:
            // consent ids are time-ordered (UUID v7, monotonic within a process).
            let newer = current.get(&c.purpose).is_none_or(|old| {
                (c.superseded_by.is_none(), c.given_at, c.id) > (old.superseded_by.is_none(), old.given_at, old.id)
            });
            if newer {
                current.insert(c.purpose.clone(), c.clone());
            }
        }
        let mut objections: HashMap<PurposeId, DateTime<Utc>> = HashMap::new();
        for (o, _) in &verified.objections {
            let at = objections.entry(o.purpose.clone()).or_insert(o.at);
            *at = (*at).max(o.at);
        }
        Self {
            restricted: verified.record.restricted,
            erased: verified.record.erased_at.is_some(),
            evicted: false,
            loaded_at: Some(now),
            rev: verified.record.rev,
            mac: verified.record.mac,
            versions: verified.versions(),
            current,
            objections,
            fields: None,
            reserved: 0..0,
            grants: HashMap::new(),
            revoked: Vec::new(),
        }
    }

    /// The write version a stored field's envelope is bound to, if the field is stored.
    pub(crate) fn version(&self, field: &FieldName) -> Option<u64> {
        let i = self.versions.binary_search_by(|(f, _)| f.cmp(field)).ok()?;
        self.versions.get(i).map(|(_, v)| *v)
    }

    pub(crate) fn standing(&self, purpose: &PurposeId) -> Standing {
        Standing {
            restricted: self.restricted,
            objected_at: self.objections.get(purpose).copied(),
        }
    }

    /// The flag for new passes of `purpose`, shared with the passes already issued.
    pub(crate) fn grant(&mut self, purpose: &PurposeId) -> Arc<Revocation> {
        let flag = self.grants.entry(purpose.clone()).or_default();
        if !flag.is_live() {
            *flag = Arc::default();
        }
        flag.clone()
    }

    /// Revokes every pass issued for `purpose`.
    pub(crate) fn revoke(&mut self, purpose: &PurposeId, reason: AccessDenied) {
        if let Some(flag) = self.grants.remove(purpose) {
            flag.revoke(reason);
            self.keep_revoked(flag);
        }
    }

    /// Revokes every pass of this customer.
    pub(crate) fn revoke_all(&mut self, reason: AccessDenied) {
        let flags: Vec<_> = self.grants.drain().map(|(_, flag)| flag).collect();
        for flag in flags {
            flag.revoke(reason);
            self.keep_revoked(flag);
        }
    }

    /// Keeps a revoked flag while passes hold it (dropping those no pass holds any more).
    fn keep_revoked(&mut self, flag: Arc<Revocation>) {
        self.revoked.retain(|f| Arc::strong_count(f) > 1);
        if Arc::strong_count(&flag) > 1 {
            self.revoked.push(flag);
        }
    }

    /// Revokes every pass of this customer for good: the customer was erased.
    pub(crate) fn revoke_erased(&mut self) {
        for (_, flag) in self.grants.drain() {
            flag.revoke_erased();
        }
        for flag in self.revoked.drain(..) {
            flag.revoke_erased();
        }
        self.erased = true;
        self.fields = None;
    }
}

impl CustomerEntry {
    pub(crate) fn new(id: CustomerId, key: Option<DataKey>, state: CustomerState) -> Self {
        Self {
            id,
            key: RwLock::new(key),
            state: Mutex::new(state),
            recent: AtomicBool::new(true),
        }
    }

    fn read_key(&self) -> RwLockReadGuard<'_, Option<DataKey>> {
        // The key is only ever replaced whole: a poisoned lock still guards a consistent value.
        self.key.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The data key, held for one use; [`Error::Erased`] once erased. Hold it briefly, and
    /// never take the entry's state lock while holding it (erasure takes the state lock,
    /// then the key's).
    pub(crate) fn key(&self) -> Result<KeyRef<'_>, Error> {
        let guard = self.read_key();
        match *guard {
            Some(_) => Ok(KeyRef { guard, id: self.id }),
            None => Err(Error::Erased(self.id)),
        }
    }

    /// The version of the data key, if it was not erased.
    pub(crate) fn key_version(&self) -> Option<u32> {
        self.read_key().as_ref().map(DataKey::version)
    }

    /// A key rotation: the new key takes the old one's place (wiped where it lies), so that
    /// the passes holding this entry go on with the new key. The caller holds the entry's
    /// state lock, and the rotation is stored.
    pub(crate) fn replace_key(&self, new: DataKey) {
        let mut key = self.key.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = key.as_mut() {
            k.wipe();
        }
        *key = Some(new);
    }

    /// Erasure: wipes the data key where it lies and drops it, so that the passes still
    /// holding this entry hold no key. The caller holds the entry's state lock.
    pub(crate) fn erase_key(&self) {
        let mut key = self.key.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = key.as_mut() {
            k.wipe();
        }
        *key = None;
    }

    /// Marks the entry as used, so that the next eviction scan passes it over once.
    pub(crate) fn touch(&self) {
        // Read first: no write to a shared cache line when already marked.
        if !self.recent.load(Ordering::Relaxed) {
            self.recent.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, CustomerState> {
        // Every change to the state is a few assignments after the store accepted it, so a
        // panic elsewhere cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A customer's data key, read-locked for one use (see [`CustomerEntry::key`]).
pub(crate) struct KeyRef<'a> {
    guard: RwLockReadGuard<'a, Option<DataKey>>,
    id: CustomerId,
}

impl KeyRef<'_> {
    fn get(&self) -> Result<&DataKey, Error> {
        // INVARIANT: made only over a key, which cannot go while the read lock is held.
        self.guard.as_ref().ok_or(Error::Erased(self.id))
    }

    /// See [`DataKey::seal`].
    pub(crate) fn seal(
        &self,
        namespace: &str,
        customer: CustomerId,
        field: &str,
        version: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.get()?.seal(namespace, customer, field, version, plaintext)
    }

    /// See [`DataKey::open`].
    pub(crate) fn open(
        &self,
        namespace: &str,
        customer: CustomerId,
        field: &str,
        version: u64,
        envelope: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        self.get()?.open(namespace, customer, field, version, envelope)
    }

    /// See [`DataKey::seal_choices`].
    pub(crate) fn seal_choices(
        &self,
        namespace: &str,
        customer: CustomerId,
        consent: crate::ids::ConsentId,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.get()?.seal_choices(namespace, customer, consent, plaintext)
    }

    /// See [`DataKey::open_choices`].
    pub(crate) fn open_choices(
        &self,
        namespace: &str,
        customer: CustomerId,
        consent: crate::ids::ConsentId,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        self.get()?.open_choices(namespace, customer, consent, sealed)
    }

    /// See [`DataKey::open_owned`].
    pub(crate) fn open_owned(
        &self,
        namespace: &str,
        customer: CustomerId,
        field: &str,
        version: u64,
        envelope: Vec<u8>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        self.get()?.open_owned(namespace, customer, field, version, envelope)
    }
}

const SHARDS: usize = 32;

/// A bounded map of customers, in shards to keep threads apart.
pub(crate) struct Cache {
    shards: Vec<Mutex<HashMap<CustomerId, Arc<CustomerEntry>>>>,
    per_shard: usize,
}

impl Cache {
    /// A cache of at most `capacity` customers (at least one), beyond those held by live
    /// passes. Rounding down per shard keeps the total within the capacity; a small
    /// capacity gets fewer shards.
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = SHARDS.min(capacity.max(1));
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard: (capacity / shards).max(1),
        }
    }

    pub(crate) fn shard(&self, id: CustomerId) -> MutexGuard<'_, HashMap<CustomerId, Arc<CustomerEntry>>> {
        let b = id.as_bytes();
        let i = usize::from(b[15] ^ b[7]) % self.shards.len();
        // A shard holds only map operations; a poisoned one is still a consistent map.
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room in a shard: drops entries that no pass refers to (an entry with live passes
    /// must stay, or a later withdrawal could not reach their flags), giving entries used
    /// since the last scan a second chance (otherwise the first entries in the map's order
    /// would be evicted over and over, and a busy customer that lands there would miss the
    /// cache on every access).
    pub(crate) fn make_room(&self, shard: &mut HashMap<CustomerId, Arc<CustomerEntry>>) {
        if shard.len() < self.per_shard {
            return;
        }
        let excess = shard.len() + 1 - self.per_shard;
        let mut victims: Vec<CustomerId> = Vec::with_capacity(excess);
        for (id, e) in shard.iter() {
            if victims.len() == excess {
                break;
            }
            if Arc::strong_count(e) == 1 && !e.recent.swap(false, Ordering::Relaxed) {
                victims.push(*id);
            }
        }
        if victims.len() < excess {
            // Every free entry was used since the last scan: their marks are cleared now.
            let more: Vec<CustomerId> = shard
                .iter()
                .filter(|(id, e)| Arc::strong_count(e) == 1 && !victims.contains(id))
                .map(|(id, _)| *id)
                .take(excess - victims.len())
                .collect();
            victims.extend(more);
        }
        for id in victims {
            if let Some(entry) = shard.remove(&id) {
                entry.lock().evicted = true;
            }
        }
    }

    /// Stops every pass of every cached customer (the vault is going away; entries with live
    /// passes are always cached, so this reaches them all).
    pub(crate) fn revoke_all_passes(&self, reason: AccessDenied) {
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in shard.values() {
                entry.lock().revoke_all(reason);
            }
        }
    }

    /// Removes a customer (after erasure).
    pub(crate) fn remove(&self, id: CustomerId) {
        if let Some(entry) = self.shard(id).remove(&id) {
            entry.lock().evicted = true;
        }
    }

    /// Removes this very entry (not a newer one of the same customer), if it is still cached.
    /// The caller must not hold the entry's lock.
    pub(crate) fn remove_entry(&self, entry: &Arc<CustomerEntry>) {
        let removed = {
            let mut shard = self.shard(entry.id);
            match shard.get(&entry.id) {
                Some(cached) if Arc::ptr_eq(cached, entry) => shard.remove(&entry.id),
                _ => None,
            }
        };
        if let Some(entry) = removed {
            entry.lock().evicted = true;
        }
    }

    /// How many customers are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(recent: bool) -> Arc<CustomerEntry> {
        let e = CustomerEntry::new(CustomerId::new(), None, CustomerState::default());
        e.recent.store(recent, Ordering::Relaxed);
        Arc::new(e)
    }

    #[test]
    fn eviction_gives_recently_used_entries_a_second_chance() {
        // 32 customers per shard, all used lately but one: making room evicts that one.
        let cache = Cache::new(32 * SHARDS);
        let stale = entry(false);
        let stale_id = stale.id;
        let mut map: HashMap<CustomerId, Arc<CustomerEntry>> =
            (0..31).map(|_| entry(true)).map(|e| (e.id, e)).collect();
        map.insert(stale_id, stale);
        cache.make_room(&mut map);
        assert_eq!(map.len(), 31);
        assert!(
            !map.contains_key(&stale_id),
            "the entry not used since the last scan goes"
        );
    }

    #[test]
    fn eviction_makes_room_when_every_entry_was_used_but_never_drops_a_pinned_one() {
        let cache = Cache::new(3 * SHARDS);
        let pinned = entry(true);
        let mut map: HashMap<CustomerId, Arc<CustomerEntry>> = [entry(true), entry(true), pinned.clone()]
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        cache.make_room(&mut map);
        assert_eq!(map.len(), 2);
        assert!(map.contains_key(&pinned.id), "an entry a pass refers to stays");
        let other = map.values().find(|e| e.id != pinned.id).unwrap();
        assert!(
            !other.recent.load(Ordering::Relaxed),
            "the scan used up its second chance"
        );
    }
}
