//! The host-supplied master key (key-encryption key).

use std::fmt;

use ring::aead::{LessSafeKey, NONCE_LEN, Nonce};
use ring::rand::SecureRandom;
use zeroize::{Zeroize, Zeroizing};

use super::envelope::{self, WrappedKeyEnvelope};
use super::{AadBuf, KEY_LEN, aes_key, fresh_nonce, random, scrub_stack, wipe_aes_key};
use crate::error::Error;
use crate::ids::CustomerId;

/// The master key (key-encryption key) that wraps every customer's data key.
///
/// The host supplies it (from bytes, hex, an environment variable or a file) and egard never
/// stores it. Each master key has a numeric id, written in every key it wraps, so that the
/// right key is selected on unwrap and keys can be rotated. `Debug` shows the id only.
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

    fn aad(header: &[u8], namespace: &str, customer: CustomerId, version: u32) -> AadBuf {
        let mut aad = AadBuf::new(header);
        aad.part(namespace.as_bytes())
            .part(customer.as_bytes())
            .part(b"dek")
            .part(&version.to_be_bytes());
        aad
    }

    /// The associated data of a vault secret: the header, the namespace, a label no customer
    /// key uses, and the secret's name.
    fn secret_aad(header: &[u8], namespace: &str, name: &str) -> AadBuf {
        let mut aad = AadBuf::new(header);
        aad.part(namespace.as_bytes())
            .part(b"vault-secret")
            .part(name.as_bytes());
        aad
    }

    pub(crate) fn wrap(
        &self,
        namespace: &str,
        customer: CustomerId,
        version: u32,
        key: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let wrapped = self.seal_key(key, |header| Self::aad(header, namespace, customer, version));
        scrub_stack();
        wrapped
    }

    pub(crate) fn unwrap(
        &self,
        namespace: &str,
        customer: CustomerId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let raw = self.open_key(wrapped, |header| Self::aad(header, namespace, customer, version));
        scrub_stack();
        raw
    }

    /// Wraps a vault-level secret (such as the audit key) of the namespace, under its name.
    pub(crate) fn wrap_secret(&self, namespace: &str, name: &str, key: &[u8]) -> Result<Vec<u8>, Error> {
        let wrapped = self.seal_key(key, |header| Self::secret_aad(header, namespace, name));
        scrub_stack();
        wrapped
    }

    /// Unwraps what [`MasterKey::wrap_secret`] wrapped.
    pub(crate) fn unwrap_secret(
        &self,
        namespace: &str,
        name: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let raw = self.open_key(wrapped, |header| Self::secret_aad(header, namespace, name));
        scrub_stack();
        raw
    }

    /// Seals a raw key in place in a buffer that holds it in clear until sealed: wiped if
    /// sealing fails, handed out (without a copy) once it holds only ciphertext.
    #[inline(never)]
    fn seal_key(&self, key: &[u8], aad: impl FnOnce(&[u8]) -> AadBuf) -> Result<Vec<u8>, Error> {
        let nonce = fresh_nonce()?;
        let header = envelope::wrapped_header(self.id);
        let aad = aad(&header);
        let mut out = Zeroizing::new(Vec::with_capacity(envelope::WRAPPED_LEN));
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key);
        let start = envelope::HEADER_LEN + NONCE_LEN;
        let tag = self
            .kek
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), aad.aad(), &mut out[start..])
            .map_err(|_| Error::Crypto)?;
        out.extend_from_slice(tag.as_ref());
        Ok(std::mem::take(&mut *out))
    }

    /// Opens a wrapped key in place in a buffer wiped on drop.
    #[inline(never)]
    fn open_key(&self, wrapped: &[u8], aad: impl FnOnce(&[u8]) -> AadBuf) -> Result<Zeroizing<Vec<u8>>, Error> {
        let parsed = WrappedKeyEnvelope::parse(wrapped)?;
        if parsed.kek_id != self.id {
            return Err(Error::Crypto);
        }
        let aad = aad(parsed.header);
        let mut buf = Zeroizing::new(parsed.sealed.to_vec());
        let len = self
            .kek
            .open_in_place(Nonce::assume_unique_for_key(parsed.nonce), aad.aad(), &mut buf)
            .map_err(|_| Error::Crypto)?
            .len();
        buf.truncate(len);
        if buf.len() != KEY_LEN {
            return Err(Error::Crypto);
        }
        Ok(buf)
    }
}
