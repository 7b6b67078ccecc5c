//! Checked parsing of the versioned byte layouts. No input, however short or malformed, makes
//! these functions panic; every malformed input is the one opaque [`Error::Crypto`].
//!
//! Field envelope: `format u8 (2) | alg u8 (1) | dek_version u32 BE | nonce 12 | ciphertext | tag 16`.
//! Wrapped data key or vault secret: `format u8 (1) | alg u8 (1) | master_key_id u32 BE | body`,
//! where the body is what the [`KeyProvider`](super::KeyProvider) of that id returned (1 to
//! [`MAX_WRAPPED_LEN`] bytes); a [`MasterKey`](super::MasterKey)'s is `nonce 12 | key 32 | tag 16`.

use ring::aead::NONCE_LEN;

use super::provider::MAX_WRAPPED_LEN;
use super::{ALG_AES_256_GCM, FIELD_FORMAT, WRAPPED_FORMAT};
use crate::error::Error;

pub(crate) const HEADER_LEN: usize = 6;
const TAG_LEN: usize = 16;

/// Bytes a field envelope adds to its plaintext: header, nonce and tag.
pub const ENVELOPE_OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

pub(crate) fn field_header(dek_version: u32) -> [u8; HEADER_LEN] {
    header(FIELD_FORMAT, dek_version)
}

pub(crate) fn wrapped_header(kek_id: u32) -> [u8; HEADER_LEN] {
    header(WRAPPED_FORMAT, kek_id)
}

fn header(format: u8, key_ref: u32) -> [u8; HEADER_LEN] {
    let v = key_ref.to_be_bytes();
    [format, ALG_AES_256_GCM, v[0], v[1], v[2], v[3]]
}

/// The parts of an envelope, borrowed from its bytes.
struct Parts<'a> {
    header: &'a [u8],
    key_ref: u32,
    nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    sealed: &'a [u8],
}

fn split(bytes: &[u8], format: u8) -> Result<Parts<'_>, Error> {
    if bytes.len() < ENVELOPE_OVERHEAD {
        return Err(Error::Crypto);
    }
    let (header, rest) = bytes.split_at(HEADER_LEN);
    if header[0] != format || header[1] != ALG_AES_256_GCM {
        return Err(Error::Crypto);
    }
    let key_ref = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| Error::Crypto)?;
    Ok(Parts {
        header,
        key_ref,
        nonce,
        sealed,
    })
}

/// A parsed field envelope.
///
/// ```
/// // Any byte string parses or fails cleanly:
/// assert!(egard::crypto::FieldEnvelope::parse(&[2, 1, 0]).is_err());
/// ```
#[derive(Debug)]
pub struct FieldEnvelope<'a> {
    pub(crate) header: &'a [u8],
    /// The version of the customer data key that sealed it.
    pub dek_version: u32,
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) sealed: &'a [u8],
}

impl<'a> FieldEnvelope<'a> {
    /// Parses the layout (it does not decrypt).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let p = split(bytes, FIELD_FORMAT)?;
        Ok(Self {
            header: p.header,
            dek_version: p.key_ref,
            nonce: p.nonce,
            sealed: p.sealed,
        })
    }
}

/// A parsed wrapped data key or vault secret.
#[derive(Debug)]
pub struct WrappedKeyEnvelope<'a> {
    pub(crate) header: &'a [u8],
    /// The id of the master key ([`KeyProvider`](super::KeyProvider)) that wrapped it.
    pub kek_id: u32,
    /// What the provider returned.
    pub(crate) body: &'a [u8],
}

impl<'a> WrappedKeyEnvelope<'a> {
    /// Parses the layout (it does not decrypt): the header, then 1 to
    /// [`MAX_WRAPPED_LEN`] bytes of the provider's.
    ///
    /// ```
    /// use egard::crypto::WrappedKeyEnvelope;
    ///
    /// assert_eq!(WrappedKeyEnvelope::parse(&[1, 1, 0, 0, 0, 9, 0xaa]).unwrap().kek_id, 9);
    /// assert!(WrappedKeyEnvelope::parse(&[1, 1, 0, 0, 0, 9]).is_err());
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() <= HEADER_LEN || bytes.len() > HEADER_LEN + MAX_WRAPPED_LEN {
            return Err(Error::Crypto);
        }
        let (header, body) = bytes.split_at(HEADER_LEN);
        if header[0] != WRAPPED_FORMAT || header[1] != ALG_AES_256_GCM {
            return Err(Error::Crypto);
        }
        Ok(Self {
            header,
            kek_id: u32::from_be_bytes([header[2], header[3], header[4], header[5]]),
            body,
        })
    }
}
