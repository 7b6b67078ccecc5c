//! Finding a customer by a field's value through a blind index (see the `lookup` module).
//!
//! A lookup definition is a stored, authenticated record (a MAC under the record key binding
//! the field and the normaliser), shared by every vault on the store. Each indexed field's
//! token is part of the customer's authenticated state, so the store's index only *proposes*
//! a customer: [`Vault::find_customer`] answers with a customer only after their checked state
//! confirms the token. A store that alters the index can hide a customer (the lookup finds no
//! one, or fails), never make the vault name the wrong one.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use super::records::Draft;
use super::{Refresh, Vault, live_key};
use crate::actor::Actor;
use crate::audit::{AuditKind, Entry};
use crate::error::Error;
use crate::ids::{CustomerId, FieldName};
use crate::integrity::{self, LookupKey, RecordKey};
use crate::lookup::{Lookup, Normalizer};
use crate::store::{LookupToken, StoreError, StoredLookup, Write};
#[cfg(feature = "tracing")]
use crate::vault::telemetry;

/// A lookup the vault knows: its normaliser and its key.
pub(crate) struct LookupDef {
    normalizer: Normalizer,
    key: LookupKey,
}

impl LookupDef {
    fn new(record_key: &RecordKey, field: &FieldName, normalizer: Normalizer) -> Self {
        Self {
            normalizer,
            key: record_key.lookup_key(field, normalizer),
        }
    }

    /// The token of a value as the host gives it.
    fn token(&self, value: &str) -> Result<LookupToken, Error> {
        Ok(self.key.token(&self.normalizer.normalize(value)?))
    }

    /// The token of a field's plaintext (its JSON encoding): a looked-up field holds text.
    pub(crate) fn token_of_plaintext(&self, plaintext: &[u8]) -> Result<LookupToken, Error> {
        let text: zeroize::Zeroizing<String> =
            crate::codec::from_slice(plaintext).map_err(|_| Error::Invalid("a field with a lookup holds text"))?;
        self.token(&text)
    }
}

/// The lookups a vault knows, by field; and the fields whose stored definition failed its
/// check (every operation on them is refused with [`Error::Crypto`]).
#[derive(Default)]
pub(crate) struct Lookups {
    defs: HashMap<FieldName, Arc<LookupDef>>,
    tampered: std::collections::HashSet<FieldName>,
}

impl Vault {
    /// Defines a lookup on a field, so that customers can be found by its value with
    /// [`Vault::find_customer`]; values already stored in the field are indexed now.
    ///
    /// The definition is stored (every vault sharing the store uses it) and authenticated.
    /// From then on, [`Vault::set_field`] indexes the field in the same atomic change as the
    /// value, and refuses a value that another live customer holds with
    /// [`Error::Duplicate`]; rectification moves the entry, erasure and deletion free it.
    ///
    /// The index holds HMAC-SHA256 tokens of the normalised values under a key derived for
    /// this lookup from the vault's record key: never the value, never a reversible form.
    ///
    /// Defining the same lookup again is harmless and indexes whatever is still missing (a
    /// run interrupted half-way, or values written by a vault that did not know the lookup
    /// yet); defining one on the field with another normaliser is refused. If stored values of
    /// two customers normalise to the same value, the first keeps it, the others stay out of
    /// the index, and the call ends with [`Error::Duplicate`] once every other customer is
    /// indexed. The definition is audited as [`AuditKind::LookupDefined`], each value indexed
    /// afterwards as [`AuditKind::FieldIndexed`].
    ///
    /// ```
    /// use egard::{LawfulBasis, Lookup, MasterKey, MemoryStore, Normalizer, Purpose, Vault};
    ///
    /// let vault = Vault::builder().master_key(MasterKey::generate()?).store(MemoryStore::new()).build()?;
    /// vault.define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email"]))?;
    /// vault.define_lookup(Lookup::new("email", Normalizer::Email))?;
    ///
    /// let alice = vault.create_customer()?;
    /// vault.set_field(alice, "email", "Alice.Martin@Example.ORG")?;
    /// assert_eq!(vault.find_customer("email", " alice.martin@example.org ")?, Some(alice));
    /// assert_eq!(vault.find_customer("email", "bob@example.org")?, None);
    ///
    /// let bob = vault.create_customer()?;
    /// assert!(matches!(
    ///     vault.set_field(bob, "email", "ALICE.MARTIN@example.org"),
    ///     Err(egard::Error::Duplicate { .. })
    /// ));
    /// # Ok::<(), egard::Error>(())
    /// ```
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.define_lookup", level = "info", skip_all, fields(field = telemetry::name(lookup.field())), err(level = "info", Display)))]
    pub fn define_lookup(&self, lookup: Lookup) -> Result<(), Error> {
        match self.define_lookup_once(&lookup) {
            // Another vault defined a lookup on the field since the definitions were read
            // (the store never replaces one): its definition decides, as if read first.
            Err(Error::Storage(StoreError::Conflict)) => self.define_lookup_once(&lookup),
            other => other,
        }
    }

    fn define_lookup_once(&self, lookup: &Lookup) -> Result<(), Error> {
        let field = FieldName::new(lookup.field())?;
        let normalizer = lookup.normalizer();
        let key = self.record_key()?;
        self.load_lookups()?;
        let def = {
            let lookups = self.lookups.read().unwrap_or_else(PoisonError::into_inner);
            if lookups.tampered.contains(&field) {
                return Err(Error::Crypto);
            }
            lookups.defs.get(&field).cloned()
        };
        let def = match def {
            Some(def) if def.normalizer != normalizer => {
                return Err(Error::Invalid("a lookup on this field exists with another normaliser"));
            }
            Some(def) => def,
            None => {
                let stored = StoredLookup {
                    field: field.clone(),
                    normalizer: normalizer.code().to_owned(),
                    mac: key.lookup(&field, normalizer),
                };
                let written = self.commit(
                    vec![Write::PutLookup(stored)],
                    vec![
                        Entry::new(AuditKind::LookupDefined, None)
                            .field(&field)
                            .detail(normalizer.code()),
                    ],
                )?;
                let def = Arc::new(LookupDef::new(key, &field, normalizer));
                self.lookups
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .defs
                    .insert(field.clone(), def.clone());
                written.durable()?;
                def
            }
        };
        self.index_existing(&field, &def)
    }

    /// Every lookup this vault knows, by field name.
    pub fn lookups(&self) -> Vec<Lookup> {
        let lookups = self.lookups.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Lookup> = lookups
            .defs
            .iter()
            .map(|(field, def)| Lookup::new(field.as_str(), def.normalizer))
            .collect();
        all.sort_by(|a, b| a.field().cmp(b.field()));
        all
    }

    /// The customer whose `field` holds `value` (normalised as the field's lookup says), if
    /// any: the blind index answers without opening any value.
    ///
    /// A field without a lookup is [`Error::NoLookup`]; a value with nothing left once
    /// normalised is [`Error::Invalid`]. The store's answer is confirmed against the
    /// customer's authenticated state: an index entry the state contradicts fails with
    /// [`Error::Crypto`]. Each lookup is audited as [`AuditKind::LookedUp`] with the field
    /// and the outcome (`found`, naming the customer, or `not_found`), never the value.
    pub fn find_customer(&self, field: &str, value: &str) -> Result<Option<CustomerId>, Error> {
        self.find_customer_as(&self.default_actor, field, value)
    }

    /// [`find_customer`](Vault::find_customer), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.find_customer", level = "debug", skip_all, fields(actor = %actor, field = telemetry::name(field)), err(level = "info", Display)))]
    pub(crate) fn find_customer_as(
        &self,
        actor: &Actor,
        field: &str,
        value: &str,
    ) -> Result<Option<CustomerId>, Error> {
        let field = FieldName::new(field)?;
        let def = self.lookup_def(&field)?.ok_or_else(|| Error::NoLookup(field.clone()))?;
        let token = def.token(value)?;
        let found = self.confirmed_holder(&field, &token)?;
        let entry = match found {
            Some(id) => Entry::new(AuditKind::LookedUp, Some(id)).field(&field).detail("found"),
            None => Entry::new(AuditKind::LookedUp, None).field(&field).detail("not_found"),
        }
        .actor(actor);
        self.journal
            .record(self.store.as_ref(), vec![entry], self.recording_now())?;
        Ok(found)
    }

    /// The customer the store's index names for `token`, once their checked state confirms
    /// it. A customer changed between the two reads is asked once more.
    fn confirmed_holder(&self, field: &FieldName, token: &LookupToken) -> Result<Option<CustomerId>, Error> {
        let mut last = None;
        for _ in 0..2 {
            let Some(id) = self.store.find_indexed(field, token)? else {
                return Ok(None);
            };
            if self.verified_customer(id)?.holds_token(field, token) {
                return Ok(Some(id));
            }
            if last == Some(id) {
                // The store insists on an entry the customer's authenticated state denies.
                return Err(Error::Crypto);
            }
            last = Some(id);
        }
        Err(Error::Crypto)
    }

    /// The lookup part of a write of `field` (its value's `plaintext`) in `draft`: the token
    /// `set_field` computed, if the field has a lookup, is checked against the one-value rule
    /// and indexed with the value.
    ///
    /// If the customer's state says the field is indexed but this vault knows no lookup on it
    /// (another vault defined it since, or the store hides the definition), the definitions
    /// are read again; if there is still none, the old value's entry goes with it rather than
    /// naming the customer for a value they no longer hold. The store's unique index is not
    /// trusted with the rule: a value another live customer holds (by their checked state) is
    /// refused here too.
    pub(crate) fn index_write(
        &self,
        draft: &mut Draft<'_>,
        field: &FieldName,
        token: Option<LookupToken>,
        plaintext: &[u8],
    ) -> Result<(), Error> {
        let indexed = draft.current().tokens.contains_key(field);
        let token = match token {
            None if indexed => {
                self.load_lookups()?;
                self.token_for_write(field, plaintext)?
            }
            other => other,
        };
        if let Some(token) = &token {
            if self.held_by_another(field, token, draft.current().record.id)? {
                return Err(Error::Duplicate { field: field.clone() });
            }
        }
        if token.is_some() || indexed {
            draft.index_field(field.clone(), token);
        }
        Ok(())
    }

    /// Whether a live customer other than `customer` holds `token` for `field`, by the store's
    /// index confirmed against that customer's checked state (so that the one-value rule
    /// does not rest on the store's unique index alone).
    pub(crate) fn held_by_another(
        &self,
        field: &FieldName,
        token: &LookupToken,
        customer: CustomerId,
    ) -> Result<bool, Error> {
        let Some(other) = self.store.find_indexed(field, token)? else {
            return Ok(false);
        };
        if other == customer {
            return Ok(false);
        }
        match self.verified_customer(other) {
            Err(Error::UnknownCustomer(_)) => Ok(false),
            verified => Ok(verified?.holds_token(field, token)),
        }
    }

    /// The lookup on `field`, if one is defined: the stored definitions are read again when
    /// this vault does not know it (another vault may have defined it) or, with a cache
    /// time-to-live, once that has passed.
    pub(crate) fn lookup_def(&self, field: &FieldName) -> Result<Option<Arc<LookupDef>>, Error> {
        let known = |vault: &Vault| -> Result<Option<Arc<LookupDef>>, Error> {
            let lookups = vault.lookups.read().unwrap_or_else(PoisonError::into_inner);
            if lookups.tampered.contains(field) {
                return Err(Error::Crypto);
            }
            Ok(lookups.defs.get(field).cloned())
        };
        if self.lookups_stale(Refresh::IfStale) {
            self.load_lookups()?;
        }
        match known(self)? {
            Some(def) => Ok(Some(def)),
            None => {
                self.load_lookups()?;
                known(self)
            }
        }
    }

    /// The lookup token `set_field` writes with a value of `field`, if the field has a lookup.
    pub(crate) fn token_for_write(&self, field: &FieldName, plaintext: &[u8]) -> Result<Option<LookupToken>, Error> {
        if self.lookups_stale(Refresh::IfStale) {
            self.load_lookups()?;
        }
        let def = {
            let lookups = self.lookups.read().unwrap_or_else(PoisonError::into_inner);
            if lookups.tampered.contains(field) {
                return Err(Error::Crypto);
            }
            lookups.defs.get(field).cloned()
        };
        def.map(|def| def.token_of_plaintext(plaintext)).transpose()
    }

    /// Whether the lookups should be read again: with a cache time-to-live, once it passed.
    fn lookups_stale(&self, when: Refresh) -> bool {
        match (self.cache_ttl, when) {
            (_, Refresh::Always) => true,
            (None, Refresh::IfStale) => false,
            (Some(ttl), Refresh::IfStale) => {
                let loaded = *self.lookups_loaded_at.lock().unwrap_or_else(PoisonError::into_inner);
                self.now() >= loaded + ttl
            }
        }
    }

    /// Reads every stored lookup definition and checks it; one that fails its check (or names
    /// no known normaliser) is set apart.
    pub(crate) fn load_lookups(&self) -> Result<(), Error> {
        let key = self.record_key()?;
        let stored = self.store.lookups()?;
        let now = self.now();
        let mut lookups = self.lookups.write().unwrap_or_else(PoisonError::into_inner);
        for s in stored {
            let checked = Normalizer::from_code(&s.normalizer)
                .filter(|n| integrity::macs_equal(&key.lookup(&s.field, *n), &s.mac));
            match checked {
                Some(n) => {
                    lookups.tampered.remove(&s.field);
                    let same = lookups.defs.get(&s.field).is_some_and(|d| d.normalizer == n);
                    if !same {
                        let def = Arc::new(LookupDef::new(key, &s.field, n));
                        lookups.defs.insert(s.field, def);
                    }
                }
                None => {
                    lookups.defs.remove(&s.field);
                    lookups.tampered.insert(s.field);
                }
            }
        }
        *self.lookups_loaded_at.lock().unwrap_or_else(PoisonError::into_inner) = now;
        Ok(())
    }

    /// Indexes the values of `field` stored before its lookup was defined, one customer per
    /// change; see [`Vault::define_lookup`] for the outcome.
    fn index_existing(&self, field: &FieldName, def: &LookupDef) -> Result<(), Error> {
        let mut first_problem = None;
        for id in self.store.customer_ids()? {
            match self.index_one(id, field, def) {
                Ok(()) | Err(Error::UnknownCustomer(_)) => {}
                Err(e @ (Error::Duplicate { .. } | Error::Invalid(_))) => {
                    first_problem.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        first_problem.map_or(Ok(()), Err)
    }

    /// Indexes one customer's stored value of `field`, if they hold one not indexed yet.
    fn index_one(&self, id: CustomerId, field: &FieldName, def: &LookupDef) -> Result<(), Error> {
        self.with_customer(id, |entry, state, mut draft| {
            let current = draft.current();
            if current.record.erased_at.is_some() {
                return Ok(());
            }
            let Some((version, _)) = current.fields.get(field).copied() else {
                return Ok(());
            };
            let stored = self.store.field(id, field)?.ok_or(Error::Crypto)?;
            if stored.version != version {
                return Err(Error::Crypto);
            }
            let plaintext =
                live_key(entry, state)?.open(&self.namespace, id, field.as_str(), version, &stored.envelope)?;
            let token = def.token_of_plaintext(&plaintext)?;
            if current
                .tokens
                .get(field)
                .is_some_and(|t| integrity::macs_equal(t, &token))
            {
                return Ok(());
            }
            if self.held_by_another(field, &token, id)? {
                return Err(Error::Duplicate { field: field.clone() });
            }
            draft.index_field(field.clone(), Some(token));
            self.commit_customer(
                state,
                draft,
                vec![Entry::new(AuditKind::FieldIndexed, Some(id)).field(field)],
            )
            .map_err(|e| duplicate_as(e, field))
        })
    }
}

/// A store's refusal of a token another customer holds, as the error the host sees.
pub(crate) fn duplicate_as(e: Error, field: &FieldName) -> Error {
    match e {
        Error::Storage(StoreError::Duplicate) => Error::Duplicate { field: field.clone() },
        other => other,
    }
}
