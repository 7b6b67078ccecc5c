//! The host-supplied master key (key-encryption key).

use std::fmt;

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use ring::rand::SecureRandom;
use zeroize::{Zeroize, Zeroizing};

use super::provider::{KeyProvider, KeyProviderError};
use super::{KEY_LEN, aes_key, fresh_nonce, random, scrub_stack, wipe_aes_key};
use crate::error::Error;

/// What a master key's wrap gives: nonce, the key's ciphertext, tag.
const WRAPPED_BODY_LEN: usize = NONCE_LEN + KEY_LEN + 16;

/// The master key (key-encryption key) that wraps every customer's data key.
///
/// The host supplies it (from bytes, hex, an environment variable or a file) and egard never
/// stores it. Each master key has a numeric id, written in every key it wraps, so that the
/// right key is selected on unwrap and keys can be rotated. `Debug` shows the id only.
///
/// It is the in-process [`KeyProvider`]: AES-256-GCM with `ring`. For a key that must stay
/// in a KMS or an HSM, implement [`KeyProvider`] instead and give it to
/// [`VaultBuilder::key_provider`](crate::VaultBuilder::key_provider).
///
/// Its key schedule is made once, on the heap, and never moves; it is wiped in place when
/// the key is dropped, and the raw bytes it was made from are wiped at once.
///
/// ```
/// use egard::MasterKey;
///
/// let key = MasterKey::from_bytes([7u8; 32]).with_id(3);
/// assert_eq!(key.id(), 3);
/// assert_eq!(format!("{key:?}"), "MasterKey { id: 3, .. }");
/// ```
pub struct MasterKey {
    id: u32,
    kek: Box<LessSafeKey>,
}

impl Drop for MasterKey {
    /// Wipes the key schedule where it lies.
    fn drop(&mut self) {
        wipe_aes_key(&mut self.kek);
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A master key from 32 bytes, with id 1. The array passed in is wiped (a copy the
    /// caller keeps is the caller's to wipe).
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        let key = Self::from_array(&bytes);
        bytes.zeroize();
        key
    }

    /// A master key from the 32 bytes behind `bytes`, which are never copied here; then the
    /// stack the key schedule was made on is scrubbed.
    fn from_array(bytes: &[u8; KEY_LEN]) -> Self {
        let key = Self::schedule(bytes);
        scrub_stack();
        key
    }

    /// Makes the key schedule, on the heap (see [`scrub_stack`] for the copies on the stack).
    #[inline(never)]
    fn schedule(bytes: &[u8; KEY_LEN]) -> Self {
        // INVARIANT: ring accepts any 32-byte AES-256 key; the error arm cannot be taken.
        let kek = match aes_key(bytes) {
            Ok(kek) => kek,
            Err(_) => unreachable!("AES-256 accepts every 32-byte key"),
        };
        Self {
            id: 1,
            kek: Box::new(kek),
        }
    }

    /// A new random master key, with id 1. Keep it safe: without it nothing can be opened.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random().fill(bytes.as_mut()).map_err(|_| Error::Crypto)?;
        Ok(Self::from_array(&bytes))
    }

    /// A master key from 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(hex: &str) -> Result<Self, Error> {
        let hex = hex.trim().as_bytes();
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if hex.len() != 2 * KEY_LEN {
            return Err(Error::Config("a master key is 64 hexadecimal digits"));
        }
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = (hi * 16 + lo) as u8,
                _ => return Err(Error::Config("a master key is 64 hexadecimal digits")),
            }
        }
        Ok(Self::from_array(&bytes))
    }

    /// A master key from an environment variable holding 64 hexadecimal digits.
    pub fn from_env(var: &str) -> Result<Self, Error> {
        let value = Zeroizing::new(std::env::var(var).map_err(|_| Error::Config("master key variable is not set"))?);
        Self::from_hex(&value)
    }

    /// A master key from a file holding 32 raw bytes or 64 hexadecimal digits.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let data = Zeroizing::new(std::fs::read(path).map_err(|_| Error::Config("master key file cannot be read"))?);
        if let Ok(raw) = <&[u8; KEY_LEN]>::try_from(data.as_slice()) {
            return Ok(Self::from_array(raw));
        }
        let text = std::str::from_utf8(&data).map_err(|_| Error::Config("a master key is 64 hexadecimal digits"))?;
        Self::from_hex(text)
    }

    /// The same key under another id (ids tell master keys apart during rotation).
    pub fn with_id(mut self, id: u32) -> Self {
        self.id = id;
        self
    }

    /// This key's id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl KeyProvider for MasterKey {
    fn key_id(&self) -> u32 {
        self.id
    }

    /// `nonce 12 | ciphertext 32 | tag 16`, sealed in place in a buffer that holds the key in
    /// clear until sealed: wiped if sealing fails, handed out (without a copy) once it holds
    /// only ciphertext.
    fn wrap_key(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        let nonce = fresh_nonce().map_err(|_| KeyProviderError::Unavailable)?;
        let mut out = Zeroizing::new(Vec::with_capacity(WRAPPED_BODY_LEN));
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key);
        let tag = self
            .kek
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| KeyProviderError::Invalid)?;
        out.extend_from_slice(tag.as_ref());
        Ok(std::mem::take(&mut *out))
    }

    /// Opens in place, in a buffer wiped on drop.
    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        if wrapped.len() != WRAPPED_BODY_LEN {
            return Err(KeyProviderError::Invalid);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| KeyProviderError::Invalid)?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = self
            .kek
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| KeyProviderError::Invalid)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}
