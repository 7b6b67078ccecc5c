//! One store, one truth in a process: a store object serves one vault without a cache
//! time-to-live, or any number of vaults that all have one.
//!
//! A vault without a time-to-live trusts its cache: a second vault on the same store object
//! would change customers behind its back (a withdrawal there would not stop passes here).
//! Vaults with a time-to-live re-read what they cache, as processes sharing a database do.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::error::Error;

/// How the vaults of this process use one store object.
enum Use {
    /// One vault without a time-to-live.
    Exclusive,
    /// This many vaults, each with a time-to-live.
    Shared(usize),
}

fn registry() -> &'static Mutex<HashMap<usize, Use>> {
    static CLAIMS: OnceLock<Mutex<HashMap<usize, Use>>> = OnceLock::new();
    CLAIMS.get_or_init(Mutex::default)
}

/// A vault's use of its store object, given back when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    store: usize,
}

impl Claim {
    /// Claims the store object `store` (its [`Store::instance_id`](crate::Store::instance_id))
    /// for a vault with (`shared`) or without a cache time-to-live.
    pub(crate) fn take(store: usize, shared: bool) -> Result<Claim, Error> {
        let mut claims = registry().lock().unwrap_or_else(PoisonError::into_inner);
        match (claims.get_mut(&store), shared) {
            (None, false) => {
                claims.insert(store, Use::Exclusive);
            }
            (None, true) => {
                claims.insert(store, Use::Shared(1));
            }
            (Some(Use::Shared(n)), true) => *n += 1,
            (Some(Use::Exclusive), _) | (Some(Use::Shared(_)), false) => {
                return Err(Error::Config(
                    "this store already serves another vault in this process, and a vault without a \
                     cache_ttl would not see the other's changes: share one Vault between threads \
                     (it is Send + Sync), or give every vault on this store a cache_ttl",
                ));
            }
        }
        Ok(Claim { store })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claims = registry().lock().unwrap_or_else(PoisonError::into_inner);
        let last = match claims.get_mut(&self.store) {
            Some(Use::Shared(n)) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if last {
            claims.remove(&self.store);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exclusive_or_many_shared_claims() {
        // Addresses no store has: the registry is process-wide.
        let (a, b) = (usize::MAX - 1, usize::MAX - 2);
        let first = Claim::take(a, false).unwrap();
        assert!(Claim::take(a, false).is_err());
        assert!(Claim::take(a, true).is_err());
        drop(first);
        let again = Claim::take(a, false).unwrap();
        drop(again);
        let s1 = Claim::take(b, true).unwrap();
        let s2 = Claim::take(b, true).unwrap();
        assert!(Claim::take(b, false).is_err());
        drop(s1);
        assert!(Claim::take(b, false).is_err(), "one shared vault is still there");
        drop(s2);
        drop(Claim::take(b, false).unwrap());
    }
}
