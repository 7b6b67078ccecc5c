//! The key-encryption key behind a trait: [`KeyProvider`] wraps and unwraps data keys and
//! vault secrets with a key that may never leave a KMS or an HSM. egard frames what it gets
//! back (the header naming the key id) and binds the associated data; the provider only sees
//! a 32-byte key, the associated data, and its own ciphertext.

use zeroize::Zeroizing;

use super::envelope::{self, WrappedKeyEnvelope};
use super::{AadBuf, KEY_LEN, scrub_stack};
use crate::error::Error;
use crate::ids::CustomerId;

/// Why a [`KeyProvider`] could not wrap or unwrap a key. It carries no message: an error
/// from a KMS client can quote request contents, so a provider maps its failure to one of
/// these reasons (and logs its own details, without key material, where it sees fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyProviderError {
    /// The provider could not be reached or did not answer in time (network, throttling, an
    /// HSM session lost). Retrying later may succeed; nothing was written.
    Unavailable,
    /// The provider refused the operation (permissions, a disabled or scheduled-for-deletion
    /// key). Retrying will not help until an operator acts.
    Denied,
    /// The wrapped bytes did not open under the provider's key: tampered, moved to another
    /// customer or secret, or wrapped by another key. egard reports this as the one opaque
    /// [`Error::Crypto`], as it does for every failed open. (Returned by egard itself, as
    /// [`Error::KeyProvider`], when a provider's wrap gives back something it cannot store:
    /// nothing, or more than [`MAX_WRAPPED_LEN`] bytes.)
    Invalid,
}

impl std::fmt::Display for KeyProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "the key provider is unavailable",
            Self::Denied => "the key provider refused the operation",
            Self::Invalid => "the wrapped key did not open",
        })
    }
}

impl std::error::Error for KeyProviderError {}

impl From<KeyProviderError> for Error {
    fn from(e: KeyProviderError) -> Self {
        match e {
            KeyProviderError::Invalid => Error::Crypto,
            other => Error::KeyProvider(other),
        }
    }
}

/// A key-encryption key: it wraps each customer's data key and the vault's secrets (the
/// audit key and the record key), and unwraps them again. The key itself may live in a KMS or
/// an HSM and never leave it; egard only ever hands it a 32-byte key to wrap, or the bytes it
/// wrapped to unwrap, with the associated data that binds them to their place.
///
/// [`MasterKey`](crate::MasterKey) implements it in-process (AES-256-GCM with `ring`); give
/// any other to [`VaultBuilder::key_provider`](crate::VaultBuilder::key_provider), and the
/// one it replaces to [`previous_key_provider`](crate::VaultBuilder::previous_key_provider)
/// while [`Vault::rotate_master_key`](crate::Vault::rotate_master_key) re-wraps.
///
/// # The contract
///
/// - [`key_id`](KeyProvider::key_id) is stable and unique among the providers of one vault:
///   egard writes it in the header of everything the provider wraps and, on unwrap, picks the
///   provider by that id. Keys are never tried in turn.
/// - [`wrap_key`](KeyProvider::wrap_key) returns the provider's own ciphertext of `key`
///   (1 to [`MAX_WRAPPED_LEN`] bytes), authenticated together with `aad`; egard stores it
///   after a 6-byte header. [`unwrap_key`](KeyProvider::unwrap_key) gets those bytes back
///   with the same `aad` and returns the key, or [`KeyProviderError::Invalid`] if they do not
///   open with that `aad` (an authenticated encryption such as AES-GCM gives this for free;
///   a provider without associated data must bind `aad` some other way, for example as an
///   encryption context).
/// - The associated data (the header with the key id, the vault namespace, the customer id
///   and the data-key version, or the secret's name) is not secret, and holds no personal
///   data.
/// - Errors carry no message, and a provider never logs the key or the plaintext it gets.
/// - A wrap may fail: egard calls the provider before it writes anything, so a failed wrap
///   fails the operation (with [`Error::KeyProvider`]) and leaves the store as it was.
///
/// # How often it is called
///
/// Once per customer created, per customer-key rotation and per data key re-wrapped by a
/// master-key rotation (wraps), once per customer read into the key cache (unwraps), and
/// once per vault secret when a vault is built. Unwrapped data keys stay in the vault's
/// bounded cache, so `authorize`, `reveal` and `set_field` on a cached customer never call
/// the provider: a KMS is on the cold path only.
///
/// # Writing one for a KMS
///
/// A sketch for the AWS KMS `Encrypt`/`Decrypt` API (with any client; egard depends on none):
///
/// ```ignore
/// use base64::Engine as _;
/// use egard::{KeyProvider, KeyProviderError};
/// use zeroize::Zeroizing;
///
/// struct AwsKms { client: aws_sdk_kms::Client, key_arn: String, id: u32, rt: tokio::runtime::Handle }
///
/// /// Throttling, timeouts and network errors => Unavailable; AccessDenied, DisabledException,
/// /// KMSInvalidStateException => Denied; InvalidCiphertextException => Invalid.
/// fn classify<E>(e: &aws_sdk_kms::error::SdkError<E>) -> KeyProviderError { /* ... */ }
///
/// impl KeyProvider for AwsKms {
///     fn key_id(&self) -> u32 { self.id }
///
///     fn wrap_key(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
///         // KMS binds associated data as an "encryption context" of strings.
///         let context = base64::engine::general_purpose::STANDARD.encode(aad);
///         let out = self.rt.block_on(
///             self.client.encrypt().key_id(&self.key_arn)
///                 .plaintext(key.to_vec().into())
///                 .encryption_context("egard", context)
///                 .send(),
///         ).map_err(|e| classify(&e))?;
///         out.ciphertext_blob.map(|b| b.into_inner()).ok_or(KeyProviderError::Unavailable)
///     }
///
///     fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
///         let context = base64::engine::general_purpose::STANDARD.encode(aad);
///         let out = self.rt.block_on(
///             self.client.decrypt().key_id(&self.key_arn)
///                 .ciphertext_blob(wrapped.to_vec().into())
///                 .encryption_context("egard", context)
///                 .send(),
///         ).map_err(|e| classify(&e))?;
///         Ok(Zeroizing::new(out.plaintext.ok_or(KeyProviderError::Invalid)?.into_inner()))
///     }
/// }
/// ```
///
/// - **GCP Cloud KMS**: `encrypt`/`decrypt` on a `cryptoKeys/...` resource, with `aad` as the
///   request's `additional_authenticated_data` (bytes, up to 64 KiB); a failed `decrypt`
///   (`INVALID_ARGUMENT`) is [`KeyProviderError::Invalid`], `UNAVAILABLE` and
///   `DEADLINE_EXCEEDED` are [`KeyProviderError::Unavailable`], `PERMISSION_DENIED` is
///   [`KeyProviderError::Denied`].
/// - **HashiCorp Vault Transit**: `POST transit/encrypt/<name>` with `plaintext` (base64 of
///   the key) and `associated_data` (base64 of `aad`, for an `aes256-gcm96` key) returns
///   `vault:v<N>:<base64>`; store those bytes as the wrapped form and send them back to
///   `transit/decrypt/<name>` with the same `associated_data`. Transit's own key versions
///   live inside its ciphertext, so `transit/rewrap` can be run without egard; egard's
///   `key_id` then names the Transit key, not its version.
/// - An **HSM** through PKCS#11: `C_WrapKey`/`C_UnwrapKey` with `CKM_AES_GCM` and `aad` as
///   the mechanism's additional authenticated data, the data key passed as a session object.
///
/// Calls block the calling thread (egard is synchronous): an async client is driven with a
/// runtime handle, as above, and should have a timeout, mapped to `Unavailable`.
pub trait KeyProvider: Send + Sync + 'static {
    /// The id of this key-encryption key, written in every key it wraps.
    fn key_id(&self) -> u32;

    /// Wraps `key` (32 bytes), binding `aad`; returns the provider's ciphertext (1 to
    /// [`MAX_WRAPPED_LEN`] bytes). It must not keep `key`.
    fn wrap_key(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyProviderError>;

    /// Unwraps what [`wrap_key`](KeyProvider::wrap_key) returned for the same `aad`;
    /// [`KeyProviderError::Invalid`] if it does not open.
    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyProviderError>;
}

/// The longest ciphertext a [`KeyProvider`] may return for one key (AWS KMS ciphertexts of a
/// 32-byte key are under 200 bytes; Vault Transit's about 90).
pub const MAX_WRAPPED_LEN: usize = 4096;

impl<P: KeyProvider + ?Sized> KeyProvider for std::sync::Arc<P> {
    fn key_id(&self) -> u32 {
        (**self).key_id()
    }
    fn wrap_key(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        (**self).wrap_key(key, aad)
    }
    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        (**self).unwrap_key(wrapped, aad)
    }
}

impl<P: KeyProvider + ?Sized> KeyProvider for Box<P> {
    fn key_id(&self) -> u32 {
        (**self).key_id()
    }
    fn wrap_key(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        (**self).wrap_key(key, aad)
    }
    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        (**self).unwrap_key(wrapped, aad)
    }
}

/// The associated data of a customer's data key: the header, the namespace, the customer, a
/// label and the key's version.
fn dek_aad(header: &[u8], namespace: &str, customer: CustomerId, version: u32) -> AadBuf {
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

/// Wrapping and unwrapping through any [`KeyProvider`], in egard's envelope: the header
/// (format, algorithm, the provider's key id), then the provider's bytes.
pub(crate) trait Wrapping {
    /// Wraps a customer's data key.
    fn wrap(&self, namespace: &str, customer: CustomerId, version: u32, key: &[u8]) -> Result<Vec<u8>, Error>;
    /// Unwraps a customer's data key.
    fn unwrap(
        &self,
        namespace: &str,
        customer: CustomerId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error>;
    /// Wraps a vault-level secret (such as the audit key) of the namespace, under its name.
    fn wrap_secret(&self, namespace: &str, name: &str, key: &[u8]) -> Result<Vec<u8>, Error>;
    /// Unwraps what [`Wrapping::wrap_secret`] wrapped.
    fn unwrap_secret(&self, namespace: &str, name: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}

impl<P: KeyProvider + ?Sized> Wrapping for P {
    fn wrap(&self, namespace: &str, customer: CustomerId, version: u32, key: &[u8]) -> Result<Vec<u8>, Error> {
        let wrapped = seal(self, key, |header| dek_aad(header, namespace, customer, version));
        scrub_stack();
        wrapped
    }

    fn unwrap(
        &self,
        namespace: &str,
        customer: CustomerId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let raw = open(self, wrapped, |header| dek_aad(header, namespace, customer, version));
        scrub_stack();
        raw
    }

    fn wrap_secret(&self, namespace: &str, name: &str, key: &[u8]) -> Result<Vec<u8>, Error> {
        let wrapped = seal(self, key, |header| secret_aad(header, namespace, name));
        scrub_stack();
        wrapped
    }

    fn unwrap_secret(&self, namespace: &str, name: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let raw = open(self, wrapped, |header| secret_aad(header, namespace, name));
        scrub_stack();
        raw
    }
}

/// Wraps `key` through the provider and frames the result.
#[inline(never)]
fn seal<P: KeyProvider + ?Sized>(
    provider: &P,
    key: &[u8],
    aad: impl FnOnce(&[u8]) -> AadBuf,
) -> Result<Vec<u8>, Error> {
    let header = envelope::wrapped_header(provider.key_id());
    let aad = aad(&header);
    let body = provider.wrap_key(key, aad.bytes())?;
    if body.is_empty() || body.len() > MAX_WRAPPED_LEN {
        // A provider breaking its contract: nothing is stored that could not be read back.
        return Err(Error::KeyProvider(KeyProviderError::Invalid));
    }
    let mut out = Vec::with_capacity(envelope::HEADER_LEN + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parses a wrapped key, checks it names this provider, and unwraps it through the provider.
#[inline(never)]
fn open<P: KeyProvider + ?Sized>(
    provider: &P,
    wrapped: &[u8],
    aad: impl FnOnce(&[u8]) -> AadBuf,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let parsed = WrappedKeyEnvelope::parse(wrapped)?;
    if parsed.kek_id != provider.key_id() {
        return Err(Error::Crypto);
    }
    let aad = aad(parsed.header);
    let raw = provider.unwrap_key(parsed.body, aad.bytes())?;
    if raw.len() != KEY_LEN {
        return Err(Error::Crypto);
    }
    Ok(raw)
}
