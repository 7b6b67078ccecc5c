//! The vault secrets of the key hierarchy: random keys made once per store, stored only wrapped
//! under the master key, opened with the master key their envelope names (current or previous)
//! and re-wrapped by a master-key rotation, so that what they key survives it.
//!
//! - `audit`: the HMAC key of the audit chain;
//! - `records`: the HMAC key of the authenticated records (see the `integrity` module).

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use crate::crypto::{KeyProvider, WrappedKeyEnvelope, Wrapping, random};
use crate::error::Error;
use crate::integrity::RECORD_SECRET;
use crate::store::{Store, StoreError, VaultSecret, Write};

/// The name of the stored, wrapped audit key.
pub(crate) const AUDIT_SECRET: &str = "audit";

/// Every vault secret, in the order [`open_or_install`] returns them.
pub(crate) const ALL: [&str; 2] = [AUDIT_SECRET, RECORD_SECRET];

/// The master keys a vault holds: the current one first.
pub(crate) struct Keyring<'a> {
    pub(crate) master: &'a dyn KeyProvider,
    pub(crate) previous: &'a [Box<dyn KeyProvider>],
    pub(crate) namespace: &'a str,
    /// Wrapped keys naming a master key id below this are refused.
    pub(crate) min_master_key_id: u32,
}

impl<'a> Keyring<'a> {
    /// The master key a wrapped envelope names, if this vault holds it and it is not retired
    /// ([`Error::RetiredKey`]).
    pub(crate) fn kek_for(&self, wrapped: &[u8]) -> Result<&'a dyn KeyProvider, Error> {
        let kek_id = WrappedKeyEnvelope::parse(wrapped)?.kek_id;
        if kek_id < self.min_master_key_id {
            return Err(Error::RetiredKey { master_key_id: kek_id });
        }
        std::iter::once(self.master)
            .chain(self.previous.iter().map(|k| &**k as &dyn KeyProvider))
            .find(|k| k.key_id() == kek_id)
            .ok_or(Error::Crypto)
    }

    /// Every master key this vault holds, the current one first.
    fn held(&self) -> impl Iterator<Item = &'a dyn KeyProvider> {
        std::iter::once(self.master).chain(self.previous.iter().map(|k| &**k as &dyn KeyProvider))
    }

    /// Fails with [`Error::WrongMasterKey`] when an envelope among `wrapped` names a master
    /// key id that this vault does not hold. Ids are written in clear in every envelope: the
    /// comparison tells nothing that the store does not show. An envelope that does not parse
    /// is left to the opaque error of its unwrap.
    fn check_ids<'w>(&self, wrapped: impl Iterator<Item = &'w [u8]>) -> Result<(), Error> {
        let mut expected: Vec<u32> = wrapped
            .filter_map(|w| WrappedKeyEnvelope::parse(w).ok())
            .map(|e| e.kek_id)
            .collect();
        expected.sort_unstable();
        expected.dedup();
        if expected.iter().all(|id| self.held().any(|k| k.key_id() == *id)) {
            return Ok(());
        }
        Err(Error::WrongMasterKey {
            expected,
            given: self.held().map(|k| k.key_id()).collect(),
        })
    }

    /// The raw secret `name` in `wrapped`, unwrapped with the master key its envelope names.
    pub(crate) fn unwrap(&self, name: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.kek_for(wrapped)?.unwrap_secret(self.namespace, name, wrapped)
    }
}

/// The raw bytes of every secret of [`ALL`], in that order: the stored ones, opened; on a
/// store without an audit log (`fresh`), the missing ones made now, stored wrapped under the
/// current master key in one batch. `None` for a secret that is missing from a store with a
/// log (removed, or the store predates it), or that the store answers under another name: the
/// vault then refuses what needs it, with [`Error::Crypto`].
///
/// A wrong master key fails here, so that the vault is never built: with
/// [`Error::WrongMasterKey`] when a stored secret names a master key id the vault does not
/// hold (checked for every secret before any is opened), else with the opaque
/// [`Error::Crypto`] when a secret does not open under the key its id selects (another key
/// under the same id, or a damaged secret: one error for both). A key provider that fails
/// ([`Error::KeyProvider`]) or a secret under a retired master key ([`Error::RetiredKey`])
/// fails it too: a vault is not built half-blind because a KMS was briefly down.
pub(crate) fn open_or_install(
    keys: &Keyring<'_>,
    store: &dyn Store,
    fresh: bool,
) -> Result<Vec<Option<Zeroizing<Vec<u8>>>>, Error> {
    // Two rounds: of two vaults installing secrets at once, the loser reads the winner's.
    for _ in 0..2 {
        let mut out = Vec::with_capacity(ALL.len());
        let mut install = Vec::new();
        let stored = ALL
            .iter()
            .map(|name| store.secret(name))
            .collect::<Result<Vec<_>, _>>()?;
        keys.check_ids(
            stored
                .iter()
                .zip(ALL)
                .filter_map(|(s, name)| s.as_ref().filter(|s| s.name == name))
                .map(|s| s.wrapped.as_slice()),
        )?;
        for (name, stored) in ALL.into_iter().zip(stored) {
            match stored {
                Some(secret) if secret.name == name => out.push(Some(keys.unwrap(name, &secret.wrapped)?)),
                // A store answering with another secret than the one asked for holds nothing
                // this vault can trust under that name.
                Some(_) => out.push(None),
                None if fresh => {
                    let mut raw = Zeroizing::new(vec![0u8; 32]);
                    random().fill(raw.as_mut_slice()).map_err(|_| Error::Crypto)?;
                    let wrapped = keys.master.wrap_secret(keys.namespace, name, &raw)?;
                    install.push(Write::InsertSecret(VaultSecret {
                        name: name.to_owned(),
                        wrapped,
                    }));
                    out.push(Some(raw));
                }
                None => out.push(None),
            }
        }
        if install.is_empty() {
            return Ok(out);
        }
        match store.apply(&install) {
            Ok(()) => return Ok(out),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}
