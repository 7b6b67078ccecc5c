//! The gate: [`Sealed<T>`] (ciphertext) → [`AccessPass`] (the capability) → [`Revealed<T>`]
//! (plaintext). No public path goes from sealed to revealed without a pass, and only
//! [`Vault::authorize`](crate::Vault::authorize) makes passes, after the consent check.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

use crate::clock::Clock;
use crate::crypto::{DETACHED_VERSION, FieldEnvelope};
use crate::error::{AccessDenied, Error};
use crate::ids::{CustomerId, FieldName, PurposeId};
use crate::purpose::PurposeDef;
use crate::vault::cache::{CustomerEntry, KeyRef};

/// Why passes stopped working, shared by every pass of one customer and purpose. Set once by a
/// withdrawal, objection, restriction, erasure or purpose change; read on every use of a pass.
#[derive(Debug, Default)]
pub(crate) struct Revocation(AtomicU8);

const LIVE: u8 = 0;
const ERASED: u8 = u8::MAX;

impl Revocation {
    pub(crate) fn revoke(&self, reason: AccessDenied) {
        // Keep the first reason, except that erasure overrides everything.
        let _ = self
            .0
            .compare_exchange(LIVE, reason_code(reason), Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn revoke_erased(&self) {
        self.0.store(ERASED, Ordering::Release);
    }

    pub(crate) fn is_live(&self) -> bool {
        self.0.load(Ordering::Acquire) == LIVE
    }

    pub(crate) fn check(&self, customer: CustomerId) -> Result<(), Error> {
        match self.0.load(Ordering::Acquire) {
            LIVE => Ok(()),
            ERASED => Err(Error::Erased(customer)),
            code => Err(Error::Denied(reason_from_code(code))),
        }
    }
}

fn reason_code(reason: AccessDenied) -> u8 {
    AccessDenied::ALL
        .iter()
        .position(|r| *r == reason)
        .map_or(1, |i| i as u8 + 1)
}

fn reason_from_code(code: u8) -> AccessDenied {
    AccessDenied::ALL
        .get(usize::from(code).wrapping_sub(1))
        .copied()
        .unwrap_or(AccessDenied::NoConsent)
}

/// The capability to read one customer's fields for one purpose, for a short while.
///
/// Only [`Vault::authorize`](crate::Vault::authorize) makes one, after checking consent (or
/// the purpose's other lawful basis) and writing that check to the audit log. It cannot be
/// cloned, serialized or built elsewhere. It stops working at the earlier of the consent's
/// expiry and its own short lifetime, and at once when the customer withdraws, objects, is
/// restricted or erased, or the purpose is redefined: every use re-checks.
pub struct AccessPass {
    pub(crate) entry: Arc<CustomerEntry>,
    pub(crate) revocation: Arc<Revocation>,
    pub(crate) purpose: Arc<PurposeDef>,
    pub(crate) valid_until: DateTime<Utc>,
    /// Whether `valid_until` is the consent's expiry (rather than the pass lifetime).
    pub(crate) ends_with_consent: bool,
    pub(crate) namespace: Arc<str>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl fmt::Debug for AccessPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPass")
            .field("customer", &self.entry.id)
            .field("purpose", &self.purpose.id)
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

impl AccessPass {
    /// The customer whose data this pass opens.
    pub fn customer(&self) -> CustomerId {
        self.entry.id
    }

    /// The purpose it was issued for.
    pub fn purpose(&self) -> &PurposeId {
        &self.purpose.id
    }

    /// The fields the purpose may read.
    pub fn fields(&self) -> &[FieldName] {
        &self.purpose.fields
    }

    /// When it stops working at the latest.
    pub fn valid_until(&self) -> DateTime<Utc> {
        self.valid_until
    }

    /// Checks the pass for one use on `field` of `customer`; gives the field's validated name
    /// and the data key, read-locked for that use.
    pub(crate) fn check(&self, customer: CustomerId, field: &str) -> Result<(&FieldName, KeyRef<'_>), Error> {
        self.check_live(customer)?;
        let field = self.purpose.field(field).ok_or(AccessDenied::FieldNotCovered)?;
        // INVARIANT: a live revocation flag means the entry was not erased, and only erasure
        // drops an entry's key; a missing key is reported as erasure all the same.
        let key = self.entry.key()?;
        Ok((field, key))
    }

    /// Checks the pass for one use on the purpose itself (not a field: the customer's declared
    /// choices for it); gives the data key, read-locked for that use.
    pub(crate) fn check_purpose(&self, customer: CustomerId) -> Result<KeyRef<'_>, Error> {
        self.check_live(customer)?;
        self.entry.key()
    }

    /// The checks of every use: the customer, the revocation flags, the pass's time.
    fn check_live(&self, customer: CustomerId) -> Result<(), Error> {
        if customer != self.entry.id {
            return Err(AccessDenied::WrongCustomer.into());
        }
        self.revocation.check(customer)?;
        self.purpose.retired.check(customer)?;
        if self.clock.now() >= self.valid_until {
            return Err(if self.ends_with_consent {
                AccessDenied::Expired
            } else {
                AccessDenied::PassExpired
            }
            .into());
        }
        Ok(())
    }

    /// Opens a detached envelope (one made by [`Vault::seal`](crate::Vault::seal)) of `field`
    /// of `customer` after checking the pass.
    pub(crate) fn open<T: DeserializeOwned + 'static>(
        &self,
        customer: CustomerId,
        field: &str,
        envelope: &[u8],
    ) -> Result<Revealed<T>, Error> {
        let (field, key) = self.check(customer, field)?;
        let plaintext = key.open(&self.namespace, customer, field.as_str(), DETACHED_VERSION, envelope)?;
        decode(field, &plaintext)
    }
}

/// Decodes plaintext as `T` with [`crate::codec`], which leaves no unwiped copy of unescaped
/// strings behind. The decoder's message is dropped all the same.
pub(crate) fn decode<T: DeserializeOwned + 'static>(field: &FieldName, plaintext: &[u8]) -> Result<Revealed<T>, Error> {
    crate::codec::from_slice(plaintext)
        .map(|value| Revealed { value })
        .map_err(|_| Error::Codec {
            field: field.clone(),
            action: "decoded",
        })
}

/// Encodes a value for sealing, into a buffer wiped on drop.
///
/// The value is measured first and written once into a buffer of exactly its size: a growing
/// buffer would leave unwiped copies of the plaintext behind in freed memory, and a value over
/// `max` is refused before anything is allocated for it.
pub(crate) fn encode<T: Serialize + ?Sized>(
    field: &FieldName,
    value: &T,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let codec = || Error::Codec {
        field: field.clone(),
        action: "encoded",
    };
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(|_| codec())?;
    if count.0 > max {
        return Err(Error::TooLarge {
            field: field.clone(),
            max,
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *bytes, value).map_err(|_| codec())?;
    Ok(bytes)
}

/// Plaintext personal data, handed out only through an [`AccessPass`].
///
/// Read it with [`expose`](Revealed::expose). It prints as `[REDACTED]`, cannot be
/// serialized, and is wiped from memory when dropped: `String`, `Vec<u8>` and
/// `Option`/`Vec` of `String` are wiped in place; for your own types, ask for
/// `Revealed<zeroize::Zeroizing<T>>` with `T: Zeroize`. (The decrypted bytes the value was
/// decoded from are always wiped.)
pub struct Revealed<T: 'static> {
    value: T,
}

impl<T: 'static> Revealed<T> {
    /// Plaintext that a pass was checked for.
    pub(crate) fn new(value: T) -> Self {
        Self { value }
    }

    /// The plaintext. Handle with care: it is what egard exists to protect.
    pub fn expose(&self) -> &T {
        &self.value
    }
}

impl<T: 'static> fmt::Debug for Revealed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T: 'static> fmt::Display for Revealed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T: 'static> Drop for Revealed<T> {
    fn drop(&mut self) {
        let any: &mut dyn Any = &mut self.value;
        if let Some(s) = any.downcast_mut::<String>() {
            s.zeroize();
        } else if let Some(v) = any.downcast_mut::<Vec<u8>>() {
            v.zeroize();
        } else if let Some(o) = any.downcast_mut::<Option<String>>() {
            o.zeroize();
        } else if let Some(v) = any.downcast_mut::<Vec<String>>() {
            v.zeroize();
        }
    }
}

/// A value of personal data, sealed under its customer's data key for one field.
///
/// Ciphertext only: safe to keep in your own tables or send through queues. It serializes to
/// JSON as `{"customer", "field", "envelope"}` (envelope in base64), or to bytes with
/// [`to_bytes`](Sealed::to_bytes). It opens only with an [`AccessPass`] of the same customer
/// whose purpose covers the field; moved to another customer or field, it fails to open.
pub struct Sealed<T> {
    customer: CustomerId,
    field: FieldName,
    envelope: Vec<u8>,
    _type: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Sealed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("customer", &self.customer)
            .field("field", &self.field)
            .field("bytes", &self.envelope.len())
            .finish()
    }
}

impl<T> Clone for Sealed<T> {
    fn clone(&self) -> Self {
        Self {
            customer: self.customer,
            field: self.field.clone(),
            envelope: self.envelope.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> PartialEq for Sealed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.customer == other.customer && self.field == other.field && self.envelope == other.envelope
    }
}

impl<T> Eq for Sealed<T> {}

const SEALED_BYTES_VERSION: u8 = 1;

impl<T> Sealed<T> {
    pub(crate) fn new(customer: CustomerId, field: FieldName, envelope: Vec<u8>) -> Self {
        Self {
            customer,
            field,
            envelope,
            _type: PhantomData,
        }
    }

    /// Whose data it is.
    pub fn customer(&self) -> CustomerId {
        self.customer
    }

    /// Which field it was sealed for.
    pub fn field(&self) -> &FieldName {
        &self.field
    }

    /// The field envelope (ciphertext).
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// Opens it through a pass of the same customer whose purpose covers the field.
    ///
    /// Errors: [`AccessDenied::WrongCustomer`], [`AccessDenied::FieldNotCovered`], any reason
    /// the pass was revoked or expired, [`Error::Erased`], or [`Error::Crypto`] if the
    /// ciphertext was tampered with or moved.
    pub fn open(&self, pass: &AccessPass) -> Result<Revealed<T>, Error>
    where
        T: DeserializeOwned + 'static,
    {
        pass.open(self.customer, self.field.as_str(), &self.envelope)
    }

    /// A compact binary form: `version u8 | customer 16 | field length u8 | field | envelope`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let name = self.field.as_str().as_bytes();
        let mut out = Vec::with_capacity(18 + name.len() + self.envelope.len());
        out.push(SEALED_BYTES_VERSION);
        out.extend_from_slice(self.customer.as_bytes());
        // INVARIANT: field names are at most 64 bytes.
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&self.envelope);
        out
    }

    /// Parses the binary form of [`to_bytes`](Sealed::to_bytes). Any malformed input is an
    /// error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let malformed = || Error::Invalid("malformed sealed value");
        let (&version, rest) = bytes.split_first().ok_or_else(malformed)?;
        if version != SEALED_BYTES_VERSION || rest.len() < 17 {
            return Err(malformed());
        }
        let (id, rest) = rest.split_at(16);
        let id = <[u8; 16]>::try_from(id).map_err(|_| malformed())?;
        let customer = CustomerId::from_uuid(uuid::Uuid::from_bytes(id))?;
        let (&len, rest) = rest.split_first().ok_or_else(malformed)?;
        let len = usize::from(len);
        if rest.len() < len {
            return Err(malformed());
        }
        let (name, envelope) = rest.split_at(len);
        let field = FieldName::new(std::str::from_utf8(name).map_err(|_| malformed())?)?;
        FieldEnvelope::parse(envelope)?;
        Ok(Self::new(customer, field, envelope.to_vec()))
    }
}

#[derive(Serialize, Deserialize)]
struct SealedRepr<'a> {
    customer: CustomerId,
    field: FieldName,
    #[serde(borrow)]
    envelope: std::borrow::Cow<'a, str>,
}

impl<T> Serialize for Sealed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SealedRepr {
            customer: self.customer,
            field: self.field.clone(),
            envelope: BASE64.encode(&self.envelope).into(),
        }
        .serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Sealed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let repr = SealedRepr::deserialize(d)?;
        let envelope = BASE64
            .decode(repr.envelope.as_bytes())
            .map_err(|_| serde::de::Error::custom("sealed envelope is not base64"))?;
        FieldEnvelope::parse(&envelope).map_err(|_| serde::de::Error::custom("malformed sealed envelope"))?;
        Ok(Self::new(repr.customer, repr.field, envelope))
    }
}
