//! A customer's data key over its life: its encryptions counted against a budget, and its
//! rotation (a new key, the stored fields sealed again under it, the old key destroyed).
//!
//! AES-256-GCM with random 96-bit nonces is safe for at most 2³² encryptions under one key
//! (NIST SP 800-38D, 8.3): past that, the chance of two nonces colliding, which would expose
//! the XOR of two plaintexts and the key's authentication subkey, passes 2⁻³³. The customer's
//! authenticated state counts the encryptions of their current key (`key_uses`, bound by the
//! state MAC, so a store cannot wind it back); a stored field's write counts one in its own
//! change, and values sealed for the host count against uses reserved in blocks. A key at its
//! budget is replaced in the change that would pass it.

use chrono::{DateTime, Utc};

use super::cache::{CustomerEntry, CustomerState};
use super::records::Draft;
use super::{Vault, live_key};
use crate::actor::Actor;
use crate::audit::{AuditKind, Entry};
use crate::crypto::DataKey;
use crate::error::Error;
use crate::ids::{CustomerId, FieldName};
use crate::store::{StoreError, WrappedKey};

/// The most encryptions one data key makes: 2³², the limit NIST SP 800-38D sets for
/// AES-GCM with random 96-bit nonces. Lower it with
/// [`VaultBuilder::encryption_budget`](crate::VaultBuilder::encryption_budget).
pub const ENCRYPTION_BUDGET: u64 = 1 << 32;

/// How many encryptions a vault reserves at once for values sealed for the host (a quarter of
/// a smaller budget).
const RESERVATION: u64 = 1024;

impl Vault {
    /// Gives the customer a new data key: every stored field (and the declared choices kept
    /// with their consent records) is opened under the old key and sealed again under the new
    /// one, in one atomic change with the new wrapped key and the
    /// deletion of the old one (crypto-shredding of everything it sealed). Audited as
    /// [`AuditKind::KeyRotated`] with the new key's version. Passes already issued go on
    /// working, with the new key.
    ///
    /// A value sealed for the host with [`Vault::seal`] before the rotation no longer opens:
    /// its key is gone. Seal such values again after a rotation (or do not rotate the keys
    /// of customers whose values you keep sealed).
    ///
    /// The vault also rotates a key by itself when it reaches its encryption budget
    /// ([`ENCRYPTION_BUDGET`]).
    ///
    /// ```
    /// # use egard::{LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
    /// # let vault = Vault::builder().master_key(MasterKey::from_bytes([1; 32])).store(MemoryStore::new()).build()?;
    /// # vault.define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email"]))?;
    /// let customer = vault.create_customer()?;
    /// vault.set_field(customer, "email", "a@example.com")?;
    /// vault.give_consent(customer, "account", egard::Evidence::new("contract"))?;
    /// vault.rotate_customer_key(customer)?;
    /// let pass = vault.authorize(customer, "account")?;
    /// assert_eq!(vault.reveal::<String>(&pass, "email")?.expose(), "a@example.com");
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn rotate_customer_key(&self, customer: CustomerId) -> Result<(), Error> {
        self.rotate_customer_key_as(&self.default_actor, customer)
    }

    /// [`rotate_customer_key`](Vault::rotate_customer_key), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.rotate_customer_key", level = "info", skip_all, fields(actor = %actor, customer = %customer), err(level = "info", Display)))]
    pub(crate) fn rotate_customer_key_as(&self, actor: &Actor, customer: CustomerId) -> Result<(), Error> {
        self.with_customer(customer, |entry, state, mut draft| {
            live_key(entry, state)?;
            let (key, event) = self.rekey(entry, state, &mut draft, "requested")?;
            self.commit_customer(state, draft, vec![event.actor(actor)])?;
            self.install_key(entry, state, key);
            Ok(())
        })
    }

    /// Adds a key rotation to `draft`: a new data key, every stored field and every consent
    /// record's sealed choices sealed again under it. Returns the new key (to install once the change is stored) and its audit entry.
    pub(super) fn rekey(
        &self,
        entry: &CustomerEntry,
        state: &CustomerState,
        draft: &mut Draft<'_>,
        reason: &str,
    ) -> Result<(DataKey, Entry), Error> {
        let customer = entry.id;
        let current = draft.current();
        let fields: Vec<(FieldName, u64, DateTime<Utc>)> = current
            .fields
            .iter()
            .map(|(name, (version, at))| (name.clone(), *version, *at))
            .collect();
        if u64::try_from(fields.len()).unwrap_or(u64::MAX) >= self.encryption_budget {
            return Err(Error::Config(
                "the encryption budget is smaller than this customer's fields: raise it",
            ));
        }
        let version = current
            .keys
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("a data key's version is at its maximum".into()))?;
        let (new_key, wrapped) = DataKey::generate(&*self.master, &self.namespace, customer, version)?;
        let stored = self.store.fields(customer)?;
        let write_version = draft.version();
        let mut resealed = Vec::with_capacity(fields.len());
        let resealed_choices;
        {
            let old = live_key(entry, state)?;
            for (name, version, at) in fields {
                let field = stored.iter().find(|f| f.field == name);
                // Another process wrote the field since the state was read: start again.
                let field = match field {
                    Some(f) if f.version == version => f,
                    _ => return Err(StoreError::Stale.into()),
                };
                let plaintext = old.open(&self.namespace, customer, name.as_str(), version, &field.envelope)?;
                let envelope = new_key.seal(&self.namespace, customer, name.as_str(), write_version, &plaintext)?;
                resealed.push((name, envelope, at));
            }
            let choices = self.reseal_choices(customer, &old, &new_key, draft)?;
            let total = u64::try_from(resealed.len())
                .unwrap_or(u64::MAX)
                .saturating_add(choices);
            if total >= self.encryption_budget {
                return Err(Error::Config(
                    "the encryption budget is smaller than this customer's fields and choices: raise it",
                ));
            }
            resealed_choices = choices;
        }
        draft.replace_key(
            WrappedKey {
                customer,
                version,
                wrapped,
            },
            resealed,
        );
        draft.use_key(resealed_choices)?;
        let event = Entry::new(AuditKind::KeyRotated, Some(customer))
            .detail(format!("data_key_version={version},reason={reason}"));
        Ok((new_key, event))
    }

    /// Puts a rotated key in place once its change is stored.
    pub(super) fn install_key(&self, entry: &CustomerEntry, state: &mut CustomerState, key: DataKey) {
        entry.replace_key(key);
        // The envelopes were all sealed again, and reservations were for the old key.
        state.fields = None;
        state.reserved = 0..0;
    }

    /// Reserves encryptions of the customer's data key for values sealed for the host, in
    /// one audited change (rotating the key first if it is at its budget).
    pub(super) fn reserve_key_uses(&self, actor: &Actor, customer: CustomerId) -> Result<(), Error> {
        self.with_customer(customer, |entry, state, mut draft| {
            live_key(entry, state)?;
            let mut entries = Vec::new();
            let rotated = if draft.current().record.key_uses >= self.encryption_budget {
                let (key, event) = self.rekey(entry, state, &mut draft, "budget")?;
                entries.push(event.actor(actor));
                Some(key)
            } else {
                None
            };
            let start = draft.current().record.key_uses;
            // A quarter of the budget at most, so that processes sharing a key each get some.
            let block = RESERVATION.min((self.encryption_budget / 4).max(1));
            let n = block.min(self.encryption_budget.saturating_sub(start));
            draft.use_key(n)?;
            entries.push(
                Entry::new(AuditKind::KeyUsesReserved, Some(customer))
                    .detail(format!("uses={n}"))
                    .actor(actor),
            );
            self.commit_customer(state, draft, entries)?;
            if let Some(key) = rotated {
                self.install_key(entry, state, key);
            }
            state.reserved = start..start.saturating_add(n);
            Ok(())
        })
    }
}
