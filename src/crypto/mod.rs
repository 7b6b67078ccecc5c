//! The key hierarchy: a host-supplied master key wraps one random data key per customer; each
//! field is sealed under its customer's data key.
//!
//! Every failed open is the same opaque [`Error::Crypto`]: no oracle tells a tampered
//! ciphertext from a wrong key.

mod envelope;
mod master;
mod provider;

pub use envelope::{ENVELOPE_OVERHEAD, FieldEnvelope, WrappedKeyEnvelope};
pub use master::MasterKey;
pub(crate) use provider::Wrapping;
pub use provider::{KeyProvider, KeyProviderError, MAX_WRAPPED_LEN};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::ids::{ConsentId, CustomerId};

/// Byte layout version of field envelopes written by this release (2: the associated data binds
/// the field's write version).
pub(crate) const FIELD_FORMAT: u8 = 2;
/// Byte layout version of wrapped keys and vault secrets.
pub(crate) const WRAPPED_FORMAT: u8 = 1;
/// The write version of a value sealed with [`Vault::seal`](crate::Vault::seal) for the host to
/// keep: stored fields are bound to their customer's revision (from 1), so the two never open
/// in each other's place.
pub(crate) const DETACHED_VERSION: u64 = 0;
/// Algorithm id for AES-256-GCM.
pub(crate) const ALG_AES_256_GCM: u8 = 1;
const KEY_LEN: usize = 32;

/// The longest associated data, that of a field envelope: the 6-byte header, then four parts
/// each with a 4-byte length prefix: the namespace (at most 64 bytes), the customer id (16),
/// the field name (at most 64) and the write version (8). A wrapped data key's (namespace,
/// customer, `dek`, version u32) and a vault secret's (namespace, `vault-secret`, name of at
/// most 64 bytes) are shorter. 174 bytes in all.
const AAD_MAX: usize = envelope::HEADER_LEN + 4 * 4 + 64 + 16 + 64 + 8;

/// Builds the associated data on the stack: the header bytes, then each part prefixed by its
/// length as a big-endian u32, so that no two different inputs give the same bytes.
struct AadBuf {
    bytes: [u8; AAD_MAX],
    len: usize,
}

impl AadBuf {
    fn new(header: &[u8]) -> Self {
        let mut buf = Self {
            bytes: [0; AAD_MAX],
            len: 0,
        };
        buf.raw(header);
        buf
    }

    fn raw(&mut self, part: &[u8]) {
        // INVARIANT: namespaces and field names are validated slugs of at most 64 bytes, and
        // secret names are the constants `audit` and `records`, so every caller stays within
        // AAD_MAX (a field envelope's associated data at its longest fills it exactly). Were a
        // part ever longer, the bytes past AAD_MAX would be dropped rather than overflow the
        // buffer (and not be bound by the associated data).
        let end = (self.len + part.len()).min(AAD_MAX);
        let n = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&part[..n]);
        self.len = end;
    }

    fn part(&mut self, part: &[u8]) -> &mut Self {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        self.raw(&len.to_be_bytes());
        self.raw(part);
        self
    }

    fn aad(&self) -> Aad<&[u8]> {
        Aad::from(self.bytes())
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The crate's one source of randomness.
pub(crate) fn random() -> &'static SystemRandom {
    static RNG: std::sync::OnceLock<SystemRandom> = std::sync::OnceLock::new();
    RNG.get_or_init(SystemRandom::new)
}

fn fresh_nonce() -> Result<[u8; NONCE_LEN], Error> {
    let mut nonce = [0u8; NONCE_LEN];
    random().fill(&mut nonce).map_err(|_| Error::Crypto)?;
    Ok(nonce)
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, Error> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Crypto)
}

/// Overwrites a ring key in place with the key made from 32 zero bytes.
///
/// ring's keys have no zeroize, and with AES-NI an AES-256 key schedule starts with the raw
/// key bytes verbatim: assigning a whole new key overwrites every byte of the old schedule
/// (and of the GCM table derived from it) where it lies. `black_box` keeps the store from
/// being elided as dead, even right before the memory is freed.
pub(crate) fn wipe_aes_key(key: &mut LessSafeKey) {
    // INVARIANT: AES-256 accepts every 32-byte key, so the assignment always happens.
    if let Ok(zero) = aes_key(&[0u8; KEY_LEN]) {
        *key = zero;
    }
    std::hint::black_box(&*key);
}

/// How many bytes of stack [`scrub_stack`] overwrites: more than the deepest chain of calls
/// that makes or unwraps a key reaches below its caller. Measured in debug builds, where
/// frames are largest, by `tests/memory_scan.rs`: 16 KiB left 12 dead copies of a data key
/// unwrapped on a cache miss, 32 KiB none.
const SCRUB_LEN: usize = 32 * 1024;

/// Overwrites the stack below the caller's frame with zeros.
///
/// A key moved by value (through `Result`, `Option`, constructors, ring's own functions)
/// leaves its bytes in dead stack slots that no destructor reaches. Called right after a call
/// that made or unwrapped a key has returned, this writes over the frames that call used. It
/// costs a memset of [`SCRUB_LEN`] bytes (about 0.3 µs, measured); it stays off the warm
/// path (`authorize` and `reveal` with a cached key).
#[inline(never)]
pub(crate) fn scrub_stack() {
    let mut zeros = [0u8; SCRUB_LEN];
    std::hint::black_box(&mut zeros);
}

/// An HMAC-SHA256 key egard holds (the audit key, the record key), wiped in place when
/// dropped. (ring keeps the hash states after the padded key, not the raw bytes; they are
/// as good as the key for making MACs, so they are wiped all the same.)
///
/// Boxed: the key never moves once made, so moving a `MacKey` leaves no copy behind.
pub(crate) struct MacKey(Box<hmac::Key>);

impl MacKey {
    /// The key from its raw bytes.
    pub(crate) fn new(raw: &[u8]) -> Self {
        Self(Box::new(hmac::Key::new(hmac::HMAC_SHA256, raw)))
    }

    /// The ring key, to sign with.
    pub(crate) fn get(&self) -> &hmac::Key {
        &self.0
    }
}

impl Drop for MacKey {
    /// Overwrites the hash states in place with those of an all-zero key.
    fn drop(&mut self) {
        *self.0 = hmac::Key::new(hmac::HMAC_SHA256, &[0u8; KEY_LEN]);
        std::hint::black_box(&*self.0);
    }
}

/// A customer's unwrapped data key, ready to seal and open (the AES key schedule is done
/// once, here, because it dominates the cost of small fields). Its key schedule is wiped in
/// place when dropped (see [`DataKey::wipe`]).
pub(crate) struct DataKey {
    version: u32,
    /// Boxed: the schedule is made once and never moves, so moving a `DataKey` (through
    /// `Result`, `Option`, the cache entry) copies a pointer, not the key.
    key: Box<LessSafeKey>,
}

impl Drop for DataKey {
    /// Wipes the key schedule where it lies.
    fn drop(&mut self) {
        self.wipe();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A new random data key; returns it with its wrapped form under `kek`.
    pub(crate) fn generate<P: KeyProvider + ?Sized>(
        kek: &P,
        namespace: &str,
        customer: CustomerId,
        version: u32,
    ) -> Result<(DataKey, Vec<u8>), Error> {
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        random().fill(raw.as_mut()).map_err(|_| Error::Crypto)?;
        let wrapped = kek.wrap(namespace, customer, version, raw.as_ref())?;
        Ok((
            DataKey {
                version,
                key: Box::new(aes_key(raw.as_ref())?),
            },
            wrapped,
        ))
    }

    /// Overwrites the key schedule in place with that of an all-zero key: what this key
    /// seals or opens from then on is worthless. Used on drop, and by erasure on the key a
    /// cache entry holds, before it lets go of it (setting an `Option` to `None` would leave
    /// the old bytes where they were).
    pub(crate) fn wipe(&mut self) {
        wipe_aes_key(&mut self.key);
    }

    /// Unwraps a stored data key. The master key is chosen by the id in the envelope header
    /// by the caller; this checks it matches.
    pub(crate) fn unwrap<P: KeyProvider + ?Sized>(
        kek: &P,
        namespace: &str,
        customer: CustomerId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<DataKey, Error> {
        let raw = kek.unwrap(namespace, customer, version, wrapped)?;
        Ok(DataKey {
            version,
            key: Box::new(aes_key(raw.as_ref())?),
        })
    }

    /// The key's version, written in each field envelope it seals.
    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// Seals `plaintext` for `field` of `customer`, bound to the write version `version` (the
    /// customer's revision the field is written at, or [`DETACHED_VERSION`]).
    pub(crate) fn seal(
        &self,
        namespace: &str,
        customer: CustomerId,
        field: &str,
        version: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.seal_envelope(plaintext, |header| {
            field_aad(header, namespace, customer, field, version)
        })
    }

    /// Opens a field envelope written at `version`; the plaintext is wiped when dropped.
    pub(crate) fn open(
        &self,
        namespace: &str,
        customer: CustomerId,
        field: &str,
        version: u64,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.open_owned(namespace, customer, field, version, envelope.to_vec())
    }

    /// Opens a field envelope the caller owns, in place: no second copy of the ciphertext
    /// (the hot path of `reveal`, whose store hands back an owned envelope). The whole
    /// buffer is wiped when dropped.
    pub(crate) fn open_owned(
        &self,
        namespace: &str,
        customer: CustomerId,
        field: &str,
        version: u64,
        envelope: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.open_envelope(envelope, |header| {
            field_aad(header, namespace, customer, field, version)
        })
    }

    /// Seals `plaintext` in the field envelope layout (header, nonce, ciphertext, tag) under
    /// the associated data `aad` builds from the header.
    fn seal_envelope(&self, plaintext: &[u8], aad: impl FnOnce(&[u8]) -> AadBuf) -> Result<Vec<u8>, Error> {
        let nonce = fresh_nonce()?;
        let header = envelope::field_header(self.version);
        let aad = aad(&header);
        let mut out = Vec::with_capacity(ENVELOPE_OVERHEAD + plaintext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let body_start = envelope::HEADER_LEN + NONCE_LEN;
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), aad.aad(), &mut out[body_start..])
            .map_err(|_| Error::Crypto)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens an envelope in the field layout in place, under the associated data `aad` builds
    /// from its header; the whole buffer is wiped when dropped.
    fn open_envelope(&self, envelope: Vec<u8>, aad: impl FnOnce(&[u8]) -> AadBuf) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut buf = Zeroizing::new(envelope);
        let parsed = FieldEnvelope::parse(&buf)?;
        if parsed.dek_version != self.version {
            return Err(Error::Crypto);
        }
        let nonce = parsed.nonce;
        let aad = aad(parsed.header);
        // The ciphertext and tag are the envelope's tail.
        let start = buf.len() - parsed.sealed.len();
        let len = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), aad.aad(), &mut buf[start..])
            .map_err(|_| Error::Crypto)?
            .len();
        buf.copy_within(start..start + len, 0);
        buf.truncate(len);
        Ok(buf)
    }
}

/// The label that takes the field name's place in the associated data of a customer's sealed
/// choices: not a field name (those have no `/`), so neither opens as the other.
pub(crate) const CHOICES_LABEL: &str = "egard/choices";

impl DataKey {
    /// Seals a customer's declared choices (their JSON encoding), bound to the consent record
    /// they are given with: the field envelope layout, with associated data naming
    /// [`CHOICES_LABEL`] and the consent id instead of a field and a write version.
    pub(crate) fn seal_choices(
        &self,
        namespace: &str,
        customer: CustomerId,
        consent: ConsentId,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.seal_envelope(plaintext, |header| choices_aad(header, namespace, customer, consent))
    }

    /// Opens sealed choices of `consent`; the plaintext is wiped when dropped.
    pub(crate) fn open_choices(
        &self,
        namespace: &str,
        customer: CustomerId,
        consent: ConsentId,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.open_envelope(sealed.to_vec(), |header| {
            choices_aad(header, namespace, customer, consent)
        })
    }
}

/// The associated data of sealed choices: the header, then the namespace, the customer,
/// [`CHOICES_LABEL`] and the consent id (16 bytes), each length-prefixed.
fn choices_aad(header: &[u8], namespace: &str, customer: CustomerId, consent: ConsentId) -> AadBuf {
    let mut aad = AadBuf::new(header);
    aad.part(namespace.as_bytes())
        .part(customer.as_bytes())
        .part(CHOICES_LABEL.as_bytes())
        .part(consent.as_uuid().as_bytes());
    aad
}

/// The associated data of a field envelope: the header, then the namespace, the customer, the
/// field and the write version, each length-prefixed.
fn field_aad(header: &[u8], namespace: &str, customer: CustomerId, field: &str, version: u64) -> AadBuf {
    let mut aad = AadBuf::new(header);
    aad.part(namespace.as_bytes())
        .part(customer.as_bytes())
        .part(field.as_bytes())
        .part(&version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests;
