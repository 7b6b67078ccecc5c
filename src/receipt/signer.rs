//! The Ed25519 key that signs consent receipts.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::error::ReceiptError;

/// The controller's Ed25519 key for signing [`ConsentReceipt`](crate::ConsentReceipt)s.
///
/// It is separate from the master key, and from every other key of the vault: it opens no
/// data, and a leaked one lets its holder forge receipts, nothing more (replace it and publish
/// the new public key). Keep it in the same kind of place as the master key all the same.
///
/// `Debug` prints the public key only.
///
/// ```
/// use egard::ReceiptSigner;
///
/// // Once: make a key and keep its PKCS#8 bytes in your secret store.
/// let pkcs8 = ReceiptSigner::generate_pkcs8()?;
/// // At start-up: load it, and publish the public key where customers can find it.
/// let signer = ReceiptSigner::from_pkcs8(&pkcs8)?;
/// assert_eq!(signer.public_key().len(), 32);
/// assert!(format!("{signer:?}").starts_with("ReceiptSigner { public_key: "));
///
/// assert!(ReceiptSigner::from_pkcs8(b"not a key").is_err());
/// # Ok::<(), egard::Error>(())
/// ```
pub struct ReceiptSigner {
    key: Ed25519KeyPair,
}

impl ReceiptSigner {
    /// A new random key, for tests and short-lived use: it cannot be saved. For a key that
    /// outlives the process, use [`generate_pkcs8`](ReceiptSigner::generate_pkcs8) and
    /// [`from_pkcs8`](ReceiptSigner::from_pkcs8).
    pub fn generate() -> Result<Self, Error> {
        let pkcs8 = Self::generate_pkcs8()?;
        Self::from_pkcs8(&pkcs8)
    }

    /// A new random key as a PKCS#8 v2 document (DER), to keep in a secret store and load with
    /// [`from_pkcs8`](ReceiptSigner::from_pkcs8). The bytes are wiped when dropped.
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, Error> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| ReceiptError::InvalidSigningKey)?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
    }

    /// Loads an Ed25519 private key from a PKCS#8 document (DER): v2 as
    /// [`generate_pkcs8`](ReceiptSigner::generate_pkcs8) and ring make it, or v1 as
    /// `openssl genpkey -algorithm ed25519 -outform DER` makes it.
    ///
    /// Anything else is [`Error::Receipt`] with [`ReceiptError::InvalidSigningKey`] (the bytes
    /// are never repeated).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, Error> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| ReceiptError::InvalidSigningKey)?;
        Ok(Self { key })
    }

    /// The public key: the 32 bytes of the Ed25519 public key (RFC 8032), which
    /// [`ConsentReceipt::verify`](crate::ConsentReceipt::verify) takes. Receipts carry it too,
    /// base64url-encoded, in their `publicKey` member.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// Signs `message` (the receipt's canonical bytes).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).as_ref().to_vec()
    }
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSigner")
            .field("public_key", &URL_SAFE_NO_PAD.encode(self.public_key()))
            .finish_non_exhaustive()
    }
}
