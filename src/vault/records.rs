//! Reading and changing a customer's authenticated records.
//!
//! Nothing the store returns about a customer is used before [`Vault::verify_customer`] has
//! checked it: the ids against the one asked for, every record against its MAC, the whole
//! against the customer's state MAC, and that state MAC against the latest audit event that
//! recorded one (unless it is the very state this vault last saw). A change is then made on
//! top of the checked state through a [`Draft`], which writes the records with their MACs and
//! the customer's next state MAC, conditional on the revision it was based on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Vault;
use crate::audit;
use crate::consent::Consent;
use crate::error::Error;
use crate::ids::{ConsentId, CustomerId, FieldName};
use crate::integrity::{self, RecordKey};
use crate::store::{
    Authenticated, CustomerRecord, CustomerSnapshot, LatestChange, LookupToken, Objection, RecordMac, StoreError,
    WrappedKey, Write,
};
use crate::vault::telemetry;

/// A customer's stored state, checked against its MACs (and, unless it is the state the vault
/// already knew, against the audit log).
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) record: CustomerRecord,
    /// The wrapped data keys, by version.
    pub(crate) keys: BTreeMap<u32, WrappedKey>,
    /// Every consent record with its MAC, by id.
    pub(crate) consents: BTreeMap<ConsentId, (Consent, RecordMac)>,
    /// Every objection with its MAC.
    pub(crate) objections: Vec<(Objection, RecordMac)>,
    /// Every stored field: write version and time, by name.
    pub(crate) fields: BTreeMap<FieldName, (u64, DateTime<Utc>)>,
    /// The lookup token of every indexed field, by name.
    pub(crate) tokens: BTreeMap<FieldName, LookupToken>,
}

impl Verified {
    /// The state MAC these records call for.
    fn state_mac(&self, key: &RecordKey) -> RecordMac {
        let key_versions: Vec<u32> = self.keys.keys().copied().collect();
        let consents: BTreeMap<ConsentId, RecordMac> = self.consents.iter().map(|(id, (_, mac))| (*id, *mac)).collect();
        let mut objections: Vec<RecordMac> = self.objections.iter().map(|(_, mac)| *mac).collect();
        objections.sort_unstable();
        key.customer(&integrity::CustomerState {
            record: &self.record,
            key_versions: &key_versions,
            consents: &consents,
            objections: &objections,
            fields: &self.fields,
            tokens: &self.tokens,
        })
    }

    /// The write version of every stored field, sorted by name.
    pub(crate) fn versions(&self) -> Vec<(FieldName, u64)> {
        self.fields.iter().map(|(f, (v, _))| (f.clone(), *v)).collect()
    }

    /// The newest data key.
    pub(crate) fn newest_key(&self) -> Option<&WrappedKey> {
        self.keys.values().next_back()
    }

    /// Whether this customer, not erased, holds the lookup `token` for `field`.
    pub(crate) fn holds_token(&self, field: &FieldName, token: &LookupToken) -> bool {
        self.record.erased_at.is_none() && self.tokens.get(field).is_some_and(|t| integrity::macs_equal(t, token))
    }

    /// Every consent record, oldest first.
    pub(crate) fn consents_in_order(&self) -> Vec<Consent> {
        let mut all: Vec<Consent> = self.consents.values().map(|(c, _)| c.clone()).collect();
        all.sort_by_key(|c| (c.given_at, c.id));
        all
    }
}

/// How far a customer's stored state must be checked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Anchor {
    /// Against the latest audit event that recorded a state of the customer.
    Log,
    /// The state this vault knows (and checked, or wrote): a stored state with this MAC needs
    /// no look at the log; another one does.
    Known(RecordMac),
}

impl Vault {
    /// Checks a snapshot read for customer `id`: see the module docs. Any failure is the one
    /// opaque [`Error::Crypto`], never a grant, and concerns this customer only.
    pub(crate) fn verify_customer(
        &self,
        id: CustomerId,
        snapshot: CustomerSnapshot,
        anchor: Anchor,
    ) -> Result<Verified, Error> {
        let key = self.record_key()?;
        let CustomerSnapshot {
            record,
            keys,
            consents,
            objections,
            fields,
            latest_change,
        } = snapshot;
        if record.id != id {
            return Err(Error::Crypto);
        }
        let mut verified = Verified {
            record,
            keys: BTreeMap::new(),
            consents: BTreeMap::new(),
            objections: Vec::with_capacity(objections.len()),
            fields: BTreeMap::new(),
            tokens: BTreeMap::new(),
        };
        for k in keys {
            if k.customer != id || verified.keys.insert(k.version, k).is_some() {
                return Err(Error::Crypto);
            }
        }
        for Authenticated { record: c, mac } in consents {
            if c.customer != id || !integrity::macs_equal(&key.consent(&c), &mac) {
                return Err(Error::Crypto);
            }
            if verified.consents.insert(c.id, (c, mac)).is_some() {
                return Err(Error::Crypto);
            }
        }
        for Authenticated { record: o, mac } in objections {
            if o.customer != id || !integrity::macs_equal(&key.objection(&o), &mac) {
                return Err(Error::Crypto);
            }
            verified.objections.push((o, mac));
        }
        for f in fields {
            if let Some(token) = f.token {
                verified.tokens.insert(f.field.clone(), token);
            }
            if verified.fields.insert(f.field, (f.version, f.written_at)).is_some() {
                return Err(Error::Crypto);
            }
        }
        if !integrity::macs_equal(&verified.state_mac(key), &verified.record.mac) {
            return Err(Error::Crypto);
        }
        match anchor {
            Anchor::Known(mac) if integrity::macs_equal(&mac, &verified.record.mac) => {}
            _ => self.check_latest_change(latest_change.as_ref(), Some(id), &verified.record.mac)?,
        }
        Ok(verified)
    }

    /// Checks that `latest` is an authentic audit event about `customer` (or, with `None`, a
    /// purpose) that recorded exactly the state `mac`.
    pub(crate) fn check_latest_change(
        &self,
        latest: Option<&LatestChange>,
        customer: Option<CustomerId>,
        mac: &RecordMac,
    ) -> Result<(), Error> {
        let audit_key = self.journal.key().ok_or(Error::Crypto)?;
        let latest = latest.ok_or(Error::Crypto)?;
        let event = &latest.event;
        let prev = match (event.seq, latest.prev_mac) {
            (1, _) => [0; 32],
            (_, Some(prev)) => prev,
            (_, None) => return Err(Error::Crypto),
        };
        let recorded = event.state.as_ref().is_some_and(|s| integrity::macs_equal(s, mac));
        if event.customer != customer
            || !recorded
            || !integrity::macs_equal(&audit::chain_mac(audit_key, &prev, event), &event.mac)
        {
            return Err(Error::Crypto);
        }
        Ok(())
    }

    /// Reads and fully checks a customer's stored state (for the reads that do not go through
    /// the cache: the consent history, exports, the retention sweep).
    pub(crate) fn verified_customer(&self, id: CustomerId) -> Result<Verified, Error> {
        let snapshot =
            telemetry::store_call("customer", || self.store.customer(id))?.ok_or(Error::UnknownCustomer(id))?;
        self.verify_customer(id, snapshot, Anchor::Log)
    }

    /// The record key, if the vault's master keys could open it.
    pub(crate) fn record_key(&self) -> Result<&RecordKey, Error> {
        self.record_key.as_ref().ok_or(Error::Crypto)
    }
}

/// A change to one customer, made on top of their checked state: every record it writes is
/// authenticated, and [`Draft::finish`] adds the customer's record at the next revision with
/// its new state MAC, conditional on the revision the change was based on.
pub(crate) struct Draft<'k> {
    key: &'k RecordKey,
    base_rev: u64,
    rev: u64,
    state: Verified,
    writes: Vec<Write>,
}

/// What a finished draft gives: the writes to apply and the customer's new state.
pub(crate) struct Finished {
    pub(crate) writes: Vec<Write>,
    pub(crate) state: Verified,
}

impl<'k> Draft<'k> {
    /// A change on top of `state`, at the next revision.
    pub(crate) fn new(key: &'k RecordKey, state: Verified) -> Result<Self, Error> {
        let base_rev = state.record.rev;
        let rev = base_rev
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("a customer's revision is at its maximum".into()))?;
        Ok(Self {
            key,
            base_rev,
            rev,
            state,
            writes: Vec::new(),
        })
    }

    /// The customer's checked state before this change.
    pub(crate) fn current(&self) -> &Verified {
        &self.state
    }

    /// The write version of fields written by this change.
    pub(crate) fn version(&self) -> u64 {
        self.rev
    }

    /// Inserts a consent record, or replaces the one with the same id.
    pub(crate) fn put_consent(&mut self, consent: Consent) {
        let mac = self.key.consent(&consent);
        self.state.consents.insert(consent.id, (consent.clone(), mac));
        self.writes
            .push(Write::PutConsent(Authenticated { record: consent, mac }));
    }

    /// Records an objection.
    pub(crate) fn put_objection(&mut self, objection: Objection) {
        let mac = self.key.objection(&objection);
        self.state.objections.push((objection.clone(), mac));
        self.writes
            .push(Write::PutObjection(Authenticated { record: objection, mac }));
    }

    /// Stores a field envelope sealed at [`Draft::version`].
    pub(crate) fn put_field(&mut self, field: FieldName, envelope: Vec<u8>, at: DateTime<Utc>) {
        self.state.fields.insert(field.clone(), (self.rev, at));
        self.writes.push(Write::PutField {
            customer: self.state.record.id,
            field,
            version: self.rev,
            envelope,
            at,
        });
    }

    /// Counts `n` more encryptions under the customer's current data key.
    pub(crate) fn use_key(&mut self, n: u64) -> Result<(), Error> {
        let uses = &mut self.state.record.key_uses;
        *uses = uses
            .checked_add(n)
            .ok_or_else(|| StoreError::Corrupt("a data key's use count is at its maximum".into()))?;
        Ok(())
    }

    /// A key rotation: `wrapped` replaces every data key of the customer (the old ones are
    /// deleted), and `resealed` (each stored field sealed again under it at
    /// [`Draft::version`], with the time it was first written) replaces every envelope. The
    /// new key's use count starts with those encryptions.
    pub(crate) fn replace_key(&mut self, wrapped: WrappedKey, resealed: Vec<(FieldName, Vec<u8>, DateTime<Utc>)>) {
        let customer = self.state.record.id;
        let old: Vec<u32> = self.state.keys.keys().copied().collect();
        self.writes.push(Write::PutKey(wrapped.clone()));
        for version in old {
            if version != wrapped.version {
                self.state.keys.remove(&version);
                self.writes.push(Write::DeleteKey { customer, version });
            }
        }
        self.state.keys.insert(wrapped.version, wrapped);
        self.state.record.key_uses = u64::try_from(resealed.len()).unwrap_or(u64::MAX);
        for (field, envelope, at) in resealed {
            self.put_field(field, envelope, at);
        }
    }

    /// Sets (or with `None` clears) the lookup token of a stored field.
    pub(crate) fn index_field(&mut self, field: FieldName, token: Option<LookupToken>) {
        match token {
            Some(token) => self.state.tokens.insert(field.clone(), token),
            None => self.state.tokens.remove(&field),
        };
        self.writes.push(Write::IndexField {
            customer: self.state.record.id,
            field,
            token,
        });
    }

    /// Deletes a stored field.
    pub(crate) fn delete_field(&mut self, field: FieldName) {
        self.state.tokens.remove(&field);
        self.state.fields.remove(&field);
        self.writes.push(Write::DeleteField {
            customer: self.state.record.id,
            field,
        });
    }

    /// Sets the restriction flag.
    pub(crate) fn set_restricted(&mut self, restricted: bool) {
        self.state.record.restricted = restricted;
    }

    /// Crypto-shredding: the keys and fields go, the record is marked erased.
    pub(crate) fn erase(&mut self, at: DateTime<Utc>) {
        self.state.keys.clear();
        self.state.fields.clear();
        self.state.tokens.clear();
        self.state.record.erased_at.get_or_insert(at);
        self.writes.push(Write::EraseCustomer {
            customer: self.state.record.id,
            at,
        });
    }

    /// The writes of the change, ending with the customer's record at the next revision and
    /// its new state MAC.
    pub(crate) fn finish(mut self) -> Finished {
        self.state.record.rev = self.rev;
        self.state.record.mac = self.state.state_mac(self.key);
        self.writes.push(Write::UpdateCustomer {
            record: self.state.record.clone(),
            expected_rev: self.base_rev,
        });
        Finished {
            writes: self.writes,
            state: self.state,
        }
    }
}

/// The checked state of a customer being created: no consent, no field yet.
pub(crate) fn new_customer(key: &RecordKey, record: CustomerRecord, wrapped: WrappedKey) -> Verified {
    let mut state = Verified {
        record,
        keys: BTreeMap::from([(wrapped.version, wrapped)]),
        consents: BTreeMap::new(),
        objections: Vec::new(),
        fields: BTreeMap::new(),
        tokens: BTreeMap::new(),
    };
    state.record.mac = state.state_mac(key);
    state
}
