//! Master-key rotation at scale: every data key and vault secret re-wrapped under the current
//! master key, in bounded batches that each commit on their own, so that a rotation killed
//! half-way is resumed by running it again; with progress for long runs, and a sweep that
//! finds what is still under an old master key.

use std::time::{Duration, Instant};

use super::{STALE_RETRIES, Vault, secrets};
use crate::audit::{AuditKind, Entry};
use crate::crypto::{WrappedKeyEnvelope, Wrapping};
use crate::error::Error;
use crate::ids::CustomerId;
use crate::store::{StoreError, VaultSecret, WrappedKey, Write};

/// How many customers one batch of [`Vault::rotate_master_key`] re-wraps in one transaction.
pub const DEFAULT_ROTATION_BATCH: usize = 500;

/// How far a master-key rotation has got; handed to the callback of
/// [`Vault::rotate_master_key_with`] after the vault secrets and after each batch, and
/// returned at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RotationProgress {
    /// Customers in the store when the rotation started (erased ones included).
    pub customers_total: usize,
    /// Customers examined so far (their batch is committed).
    pub customers_done: usize,
    /// Data keys re-wrapped under the current master key by this run.
    pub keys_rewrapped: usize,
    /// Data keys found already under the current master key (made since, or re-wrapped by an
    /// earlier run that was interrupted).
    pub keys_current: usize,
    /// Vault secrets re-wrapped by this run (0 when an earlier run did it).
    pub secrets_rewrapped: usize,
    /// Time since this run started.
    pub elapsed: Duration,
}

impl RotationProgress {
    /// Customers examined per second so far (0 before the first batch).
    pub fn customers_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.customers_done as f64 / secs
        } else {
            0.0
        }
    }

    /// Whether every customer was examined.
    pub fn is_complete(&self) -> bool {
        self.customers_done >= self.customers_total
    }
}

/// Something still wrapped under a master key below the floor asked of [`Vault::keys_below`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyBelow {
    /// A vault secret (`audit`, `records`).
    Secret {
        /// The secret's name.
        name: String,
        /// The id of the master key its envelope names; `None` if the envelope does not
        /// parse (no key opens it).
        master_key_id: Option<u32>,
    },
    /// A customer's data key.
    DataKey {
        /// Whose.
        customer: CustomerId,
        /// The data key's version.
        version: u32,
        /// The id of the master key its envelope names; `None` if the envelope does not
        /// parse (no key opens it).
        master_key_id: Option<u32>,
    },
}

impl Vault {
    /// Re-wraps every data key that is not under the current master key (configure the old
    /// one with [`previous_master_key`](crate::VaultBuilder::previous_master_key) or
    /// [`previous_key_provider`](crate::VaultBuilder::previous_key_provider)), and the
    /// vault secrets (the audit key and the record key) with them: the audit chain and the
    /// authenticated records continue under the same keys, and
    /// [`verify_audit`](Vault::verify_audit) verifies across the rotation. Field ciphertexts
    /// are not touched. Returns how many data keys were re-wrapped (the secrets are not
    /// counted).
    ///
    /// Works in batches of [`DEFAULT_ROTATION_BATCH`] customers; see
    /// [`rotate_master_key_with`](Vault::rotate_master_key_with) for progress and for what
    /// happens when it is interrupted.
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "egard.rotate_master_key",
            level = "info",
            skip_all,
            err(level = "info", Display)
        )
    )]
    pub fn rotate_master_key(&self) -> Result<usize, Error> {
        Ok(self
            .rotate_master_key_with(DEFAULT_ROTATION_BATCH, |_| {})?
            .keys_rewrapped)
    }

    /// [`rotate_master_key`](Vault::rotate_master_key), `batch_size` customers per
    /// transaction (at least 1), calling `progress` once the vault secrets are done and after
    /// each batch is committed. Returns the final progress.
    ///
    /// Resumable: each batch commits on its own (its re-wrapped keys together with their
    /// [`AuditKind::KeyRotated`] events), and a run skips what is already under the current
    /// master key. If the process dies or the call fails half-way (a store or a
    /// [`KeyProvider`](crate::KeyProvider) error), every key is under one of the two master
    /// keys: keep both configured and run it again. Memory stays bounded by the batch: only
    /// the customer ids are listed up front (16 bytes each).
    ///
    /// A key under a master key the vault does not hold fails with [`Error::Crypto`], and
    /// under a retired one with [`Error::RetiredKey`]: nothing of that batch is written.
    ///
    /// ```
    /// # use egard::{MasterKey, MemoryStore, Vault};
    /// # let store = std::sync::Arc::new(MemoryStore::new());
    /// # let old = Vault::builder().master_key(MasterKey::from_bytes([1; 32])).store(store.clone()).build()?;
    /// # for _ in 0..5 { old.create_customer()?; }
    /// # drop(old);
    /// let vault = Vault::builder()
    ///     .master_key(MasterKey::from_bytes([2; 32]).with_id(2))
    ///     .previous_master_key(MasterKey::from_bytes([1; 32]))
    ///     .store(store)
    ///     .build()?;
    /// let done = vault.rotate_master_key_with(2, |p| {
    ///     eprintln!("{}/{} customers, {:.0}/s", p.customers_done, p.customers_total, p.customers_per_second());
    /// })?;
    /// assert_eq!((done.customers_done, done.keys_rewrapped, done.secrets_rewrapped), (5, 5, 2));
    /// assert!(vault.keys_below(2)?.is_empty());
    /// # Ok::<(), egard::Error>(())
    /// ```
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.rotate_master_key_with", level = "info", skip_all, fields(batch_size = batch_size), err(level = "info", Display)))]
    pub fn rotate_master_key_with(
        &self,
        batch_size: usize,
        mut progress: impl FnMut(&RotationProgress),
    ) -> Result<RotationProgress, Error> {
        let started = Instant::now();
        let mut p = RotationProgress {
            secrets_rewrapped: self.rotate_secrets()?,
            ..RotationProgress::default()
        };
        let ids = self.store.customer_ids()?;
        p.customers_total = ids.len();
        p.elapsed = started.elapsed();
        progress(&p);
        for chunk in ids.chunks(batch_size.max(1)) {
            let (rewrapped, current) = self.rotate_batch(chunk)?;
            p.customers_done += chunk.len();
            p.keys_rewrapped += rewrapped;
            p.keys_current += current;
            p.elapsed = started.elapsed();
            progress(&p);
        }
        Ok(p)
    }

    /// Re-wraps the data keys of `customers` that are not under the current master key, in
    /// one commit, each customer's conditional on their revision as read. Returns
    /// (re-wrapped, already current). Read again and retried if a customer changed between
    /// the read and the write.
    fn rotate_batch(&self, customers: &[CustomerId]) -> Result<(usize, usize), Error> {
        let master_id = self.master.key_id();
        let keyring = self.keyring();
        let mut attempt = 0;
        loop {
            let mut writes = Vec::new();
            let mut entries = Vec::new();
            let mut current = 0;
            for &customer in customers {
                let Some(snapshot) = self.store.customer(customer)? else {
                    continue;
                };
                let mut guarded = false;
                for key in &snapshot.keys {
                    if key.customer != customer {
                        return Err(Error::Crypto);
                    }
                    if WrappedKeyEnvelope::parse(&key.wrapped)?.kek_id == master_id {
                        current += 1;
                        continue;
                    }
                    if !guarded {
                        // The customer's record written back as read, at the revision read:
                        // the batch fails with `Stale` if the customer changed since (a
                        // customer-key rotation deleted this key, an erasure), rather than
                        // bring back a deleted key.
                        writes.push(Write::UpdateCustomer {
                            record: snapshot.record.clone(),
                            expected_rev: snapshot.record.rev,
                        });
                        guarded = true;
                    }
                    let old = keyring.kek_for(&key.wrapped)?;
                    let raw = old.unwrap(&self.namespace, customer, key.version, &key.wrapped)?;
                    let wrapped = self.master.wrap(&self.namespace, customer, key.version, &raw)?;
                    writes.push(Write::PutKey(WrappedKey {
                        customer,
                        version: key.version,
                        wrapped,
                    }));
                    entries.push(
                        Entry::new(AuditKind::KeyRotated, Some(customer))
                            .detail(format!("key_version={},master_key={master_id}", key.version)),
                    );
                }
            }
            let rewrapped = entries.len();
            if writes.is_empty() {
                return Ok((0, current));
            }
            match self.commit(writes, entries) {
                Ok(written) => {
                    written.durable()?;
                    return Ok((rewrapped, current));
                }
                // A customer of the batch changed since it was read (another process rotated
                // their data key, or erased them): read the batch again.
                Err(Error::Storage(StoreError::Stale | StoreError::MissingCustomer)) if attempt < STALE_RETRIES => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Re-wraps every stored vault secret under the current master key, if it is under
    /// another. Returns how many were re-wrapped.
    fn rotate_secrets(&self) -> Result<usize, Error> {
        let mut rewrapped = 0;
        for name in secrets::ALL {
            let Some(secret) = self.store.secret(name)? else {
                // A vault always has them once built, unless its log predates them (it then
                // writes nothing, and any commit would be refused anyway).
                return Err(Error::Crypto);
            };
            if secret.name != name {
                return Err(Error::Crypto);
            }
            if WrappedKeyEnvelope::parse(&secret.wrapped)?.kek_id == self.master.key_id() {
                continue;
            }
            let raw = self.keyring().unwrap(name, &secret.wrapped)?;
            let wrapped = self.master.wrap_secret(&self.namespace, name, &raw)?;
            self.commit(
                vec![Write::ReplaceSecret(VaultSecret {
                    name: name.to_owned(),
                    wrapped,
                })],
                vec![
                    Entry::new(AuditKind::KeyRotated, None)
                        .detail(format!("{name}_key,master_key={}", self.master.key_id())),
                ],
            )?
            .durable()?;
            rewrapped += 1;
        }
        Ok(rewrapped)
    }

    /// Finds every vault secret and data key still wrapped under a master key with an id
    /// below `min_master_key_id` (or whose envelope does not parse): what a rotation has yet
    /// to re-wrap before that id can be retired with
    /// [`VaultBuilder::min_master_key_id`](crate::VaultBuilder::min_master_key_id). Empty
    /// means the rotation is complete. Reads headers only: no key is unwrapped, no key
    /// provider is called. Erased customers hold no keys.
    ///
    /// One store read per customer; the result holds one entry per key found.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.keys_below", level = "info", skip_all, fields(min_master_key_id = min_master_key_id), err(level = "info", Display)))]
    pub fn keys_below(&self, min_master_key_id: u32) -> Result<Vec<KeyBelow>, Error> {
        let below = |wrapped: &[u8]| match WrappedKeyEnvelope::parse(wrapped) {
            Ok(p) if p.kek_id >= min_master_key_id => None,
            Ok(p) => Some(Some(p.kek_id)),
            Err(_) => Some(None),
        };
        let mut found = Vec::new();
        for name in secrets::ALL {
            let Some(secret) = self.store.secret(name)? else {
                continue;
            };
            if let Some(master_key_id) = below(&secret.wrapped) {
                found.push(KeyBelow::Secret {
                    name: name.to_owned(),
                    master_key_id,
                });
            }
        }
        for customer in self.store.customer_ids()? {
            let Some(snapshot) = self.store.customer(customer)? else {
                continue;
            };
            for key in &snapshot.keys {
                if let Some(master_key_id) = below(&key.wrapped) {
                    found.push(KeyBelow::DataKey {
                        customer,
                        version: key.version,
                        master_key_id,
                    });
                }
            }
        }
        Ok(found)
    }
}
