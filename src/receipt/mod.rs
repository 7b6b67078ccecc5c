//! Signed consent receipts: a JSON document the customer keeps, which proves what they agreed
//! to, with whom, when, and whether the agreement still stands.
//!
//! A receipt follows the Kantara Initiative Consent Receipt Specification v1.1 (its member
//! names and structure), adds egard's own members (the lawful basis, the notice version, the
//! expiry, the state of the record, how to withdraw), and is signed with Ed25519 over a
//! canonical serialisation (RFC 8785 JCS restricted to what a receipt holds, see
//! [`canonical`]), so that anyone can check it with the controller's public key, in any
//! language. `docs/receipts.md` describes every member, the signature, and the mapping to
//! the W3C DPV profile of ISO/IEC TS 27560.

mod canonical;
mod controller;
mod signer;

pub use controller::Controller;
pub use signer::ReceiptSigner;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Deserializer, Serialize};

use crate::consent::{Consent, ConsentState};
use crate::error::{Error, ReceiptError};
use crate::purpose::{LawfulBasis, Purpose};

/// The Kantara specification version a receipt follows.
pub(crate) const KANTARA_VERSION: &str = "KI-CR-v1.1.0";
/// The one signature algorithm.
const ALG: &str = "Ed25519";

/// A signed consent receipt: one consent record (or record of another lawful basis) as the
/// customer can keep it, in the Kantara Consent Receipt v1.1 format with egard's members,
/// signed by the controller with Ed25519.
///
/// Made by [`Vault::consent_receipt`](crate::Vault::consent_receipt); serialise it with
/// `serde_json` to hand it over, and check one with [`verify`](ConsentReceipt::verify). A
/// receipt names the customer by their customer id, a pseudonym: it holds no personal data
/// in clear. `docs/receipts.md` describes every member.
///
/// Deserialising is strict so that what verifies is exactly what the document says: unknown
/// members, a `null` in place of an absent member, and numbers with a fraction are refused.
///
/// ```
/// use egard::{Controller, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, ReceiptSigner, Vault};
///
/// let vault = Vault::builder()
///     .master_key(MasterKey::generate()?)
///     .store(MemoryStore::new())
///     .controller(Controller::new("Acme Books SAS").jurisdiction("EU").policy_url("https://books.example/privacy"))
///     .build()?;
/// vault.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))?;
/// let alice = vault.create_customer()?;
/// let consent = vault.give_consent(alice, "newsletter", Evidence::new("web-form"))?;
///
/// let signer = ReceiptSigner::generate()?;
/// let receipt = vault.consent_receipt(consent, &signer)?;
/// let json = serde_json::to_string_pretty(&receipt).unwrap();      // for the customer
///
/// let kept: egard::ConsentReceipt = serde_json::from_str(&json).unwrap();
/// kept.verify(signer.public_key())?;
/// let forged = json.replace("\"given\"", "\"withdrawn\"");
/// let forged: egard::ConsentReceipt = serde_json::from_str(&forged).unwrap();
/// assert!(forged.verify(signer.public_key()).is_err());
/// # Ok::<(), egard::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsentReceipt {
    version: String,
    jurisdiction: String,
    consent_timestamp: i64,
    collection_method: String,
    #[serde(rename = "consentReceiptID")]
    consent_receipt_id: String,
    public_key: String,
    language: String,
    pii_principal_id: String,
    pii_controllers: Vec<PiiController>,
    policy_url: String,
    services: Vec<Service>,
    sensitive: bool,
    spi_cat: Vec<String>,
    // egard's members.
    consent_id: String,
    issued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    collection_source: Option<String>,
    signature: Signature,
}

/// A controller as Kantara v1.1 names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PiiController {
    pii_controller: String,
    on_behalf: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pii_controller_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Address {
    street_address: String,
    address_country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Service {
    service: String,
    purposes: Vec<ReceiptPurpose>,
}

/// One purpose of a receipt: Kantara's members, then egard's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReceiptPurpose {
    purpose: String,
    consent_type: String,
    pii_category: Vec<String>,
    primary_purpose: bool,
    termination: String,
    third_party_disclosure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    third_party_name: Option<String>,
    sensitive: bool,
    spi_cat: Vec<String>,
    // egard's members.
    purpose_id: String,
    lawful_basis: String,
    notice_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    notice_hash: Option<String>,
    consent_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    withdrawn_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    withdrawal_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    superseded_by: Option<String>,
    /// The names of the choices the purpose declares, when the record holds the customer's
    /// choices (never what they selected); absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    choice_categories: Vec<String>,
}

/// The signature: not itself part of what is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signature {
    alg: String,
    value: String,
}

/// An optional member that, when present, must hold a value (`null` is refused), so that a
/// document and its re-serialisation are the same document.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A time as receipts print it: RFC 3339, UTC, microseconds, `Z`.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The stable code of a state, as receipts print it.
pub(crate) fn state_code(state: ConsentState) -> &'static str {
    match state {
        ConsentState::Given => "given",
        ConsentState::Withdrawn => "withdrawn",
        ConsentState::Expired => "expired",
        ConsentState::Superseded => "superseded",
    }
}

/// The stable code of a lawful basis, as receipts (and purposes) print it.
fn basis_code(basis: LawfulBasis) -> &'static str {
    match basis {
        LawfulBasis::Consent => "consent",
        LawfulBasis::Contract => "contract",
        LawfulBasis::LegalObligation => "legal_obligation",
        LawfulBasis::VitalInterests => "vital_interests",
        LawfulBasis::PublicTask => "public_task",
        LawfulBasis::LegitimateInterests => "legitimate_interests",
    }
}

/// Kantara's `consentType`: the kind of consent, or for another lawful basis, that basis.
fn consent_type(record: &Consent) -> &'static str {
    match record.basis {
        LawfulBasis::Consent if record.evidence.is_explicit() => "EXPLICIT",
        LawfulBasis::Consent => "EXPRESSED",
        LawfulBasis::Contract => "CONTRACT",
        LawfulBasis::LegalObligation => "LEGAL_OBLIGATION",
        LawfulBasis::VitalInterests => "VITAL_INTERESTS",
        LawfulBasis::PublicTask => "PUBLIC_TASK",
        LawfulBasis::LegitimateInterests => "LEGITIMATE_INTERESTS",
    }
}

/// What a receipt states, taken from the vault's checked records.
pub(crate) struct Facts<'a> {
    /// The consent record, as checked against its MAC and the customer's state.
    pub(crate) record: &'a Consent,
    /// The purpose's current definition.
    pub(crate) purpose: &'a Purpose,
    /// When the record stops opening data (its own expiry or the purpose's lifetime).
    pub(crate) expiry: Option<DateTime<Utc>>,
    /// The record's state now.
    pub(crate) state: ConsentState,
    /// When the record was withdrawn, or ended by an objection.
    pub(crate) withdrawn_at: Option<DateTime<Utc>>,
    /// The controller.
    pub(crate) controller: &'a Controller,
    /// When the receipt is issued.
    pub(crate) now: DateTime<Utc>,
}

impl ConsentReceipt {
    /// Builds and signs the receipt of `facts`.
    pub(crate) fn issue(facts: &Facts<'_>, signer: &ReceiptSigner) -> Result<Self, Error> {
        let Facts {
            record,
            purpose,
            expiry,
            state,
            withdrawn_at,
            controller,
            now,
        } = *facts;
        let sensitive = purpose.is_special_category();
        let fields: Vec<String> = purpose.field_names().map(str::to_owned).collect();
        let spi_cat = if sensitive { fields.clone() } else { Vec::new() };
        let third_party = controller.third_parties.get(record.purpose.as_str()).cloned();
        let termination = match (expiry, &controller.withdrawal_method) {
            (Some(t), Some(m)) => format!("ends at {}, or earlier when withdrawn ({m})", time(t)),
            (Some(t), None) => format!("ends at {}, or earlier when withdrawn", time(t)),
            (None, Some(m)) => format!("ends when withdrawn ({m})"),
            (None, None) => "ends when withdrawn".to_owned(),
        };
        let description = if purpose.description_text().is_empty() {
            record.purpose.as_str().to_owned()
        } else {
            purpose.description_text().to_owned()
        };
        let mut receipt = ConsentReceipt {
            version: KANTARA_VERSION.to_owned(),
            jurisdiction: controller.jurisdiction.clone(),
            consent_timestamp: record.given_at.timestamp(),
            collection_method: record.evidence.method().to_owned(),
            consent_receipt_id: uuid::Uuid::new_v4().to_string(),
            public_key: URL_SAFE_NO_PAD.encode(signer.public_key()),
            language: controller.language.clone(),
            pii_principal_id: record.customer.to_string(),
            pii_controllers: vec![PiiController {
                pii_controller: controller.name.clone(),
                on_behalf: controller.on_behalf,
                contact: controller.contact.clone(),
                address: controller.address.as_ref().map(|(street, country)| Address {
                    street_address: street.clone(),
                    address_country: country.clone(),
                }),
                email: controller.email.clone(),
                phone: controller.phone.clone(),
                pii_controller_url: controller.url.clone(),
            }],
            policy_url: controller.policy_url.clone(),
            services: vec![Service {
                service: controller.service.clone().unwrap_or_else(|| controller.name.clone()),
                purposes: vec![ReceiptPurpose {
                    purpose: description,
                    consent_type: consent_type(record).to_owned(),
                    pii_category: fields,
                    primary_purpose: true,
                    termination,
                    third_party_disclosure: third_party.is_some(),
                    third_party_name: third_party,
                    sensitive,
                    spi_cat: spi_cat.clone(),
                    purpose_id: record.purpose.as_str().to_owned(),
                    lawful_basis: basis_code(record.basis).to_owned(),
                    notice_version: record.notice_version,
                    notice_hash: record.evidence.notice_hash().map(str::to_owned),
                    consent_state: state_code(state).to_owned(),
                    expires_at: expiry.map(time),
                    withdrawn_at: withdrawn_at.map(time),
                    withdrawal_method: controller.withdrawal_method.clone(),
                    superseded_by: record.superseded_by.map(|id| id.to_string()),
                    choice_categories: if record.has_choices() {
                        purpose.choices().iter().map(|c| c.name().to_owned()).collect()
                    } else {
                        Vec::new()
                    },
                }],
            }],
            sensitive,
            spi_cat,
            consent_id: record.id.to_string(),
            issued_at: time(now),
            collection_source: record.evidence.source_ref().map(str::to_owned),
            signature: Signature {
                alg: ALG.to_owned(),
                value: String::new(),
            },
        };
        let message = receipt.signed_bytes()?;
        receipt.signature.value = URL_SAFE_NO_PAD.encode(signer.sign(&message));
        Ok(receipt)
    }

    /// The bytes the signature covers: the canonical serialisation (see `docs/receipts.md`)
    /// of the receipt without its `signature` member. For a verifier written elsewhere to
    /// compare with.
    ///
    /// Fails with [`ReceiptError::BadSignature`] for a receipt that has no canonical form (an
    /// integer beyond ±(2⁵³ − 1)): no signature can cover it.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut value = serde_json::to_value(self).map_err(|_| ReceiptError::BadSignature)?;
        if let serde_json::Value::Object(members) = &mut value {
            members.remove("signature");
        }
        Ok(canonical::to_vec(&value).map_err(|_| ReceiptError::BadSignature)?)
    }

    /// Checks the signature with the controller's public key (the 32 bytes of
    /// [`ReceiptSigner::public_key`]). Any change to any member after signing, a receipt
    /// signed with another key, or a key that is not 32 bytes fails with
    /// [`Error::Receipt`]\([`ReceiptError::BadSignature`]); an algorithm other than `Ed25519`
    /// with [`ReceiptError::UnsupportedAlgorithm`].
    ///
    /// A valid signature says the controller issued this receipt; the state it shows is the
    /// state at [`issued_at`](ConsentReceipt::issued_at).
    pub fn verify(&self, public_key: &[u8]) -> Result<(), Error> {
        if self.signature.alg != ALG {
            return Err(ReceiptError::UnsupportedAlgorithm.into());
        }
        let signature = URL_SAFE_NO_PAD
            .decode(&self.signature.value)
            .map_err(|_| ReceiptError::BadSignature)?;
        let message = self.signed_bytes()?;
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&message, &signature)
            .map_err(|_| ReceiptError::BadSignature)?;
        Ok(())
    }

    /// This receipt's own id (Kantara's `consentReceiptID`, a random UUID).
    pub fn receipt_id(&self) -> &str {
        &self.consent_receipt_id
    }

    /// The id of the consent record the receipt is about.
    pub fn consent_id(&self) -> &str {
        &self.consent_id
    }

    /// The customer (Kantara's `piiPrincipalId`: the customer id, never an email).
    pub fn principal(&self) -> &str {
        &self.pii_principal_id
    }

    /// When the receipt was issued (RFC 3339).
    pub fn issued_at(&self) -> &str {
        &self.issued_at
    }

    /// The purpose's id (the first purpose's: egard issues one purpose per receipt).
    pub fn purpose_id(&self) -> Option<&str> {
        self.first_purpose().map(|p| p.purpose_id.as_str())
    }

    /// The state of the consent record when the receipt was issued: `given`, `withdrawn`,
    /// `expired` or `superseded`.
    pub fn consent_state(&self) -> Option<&str> {
        self.first_purpose().map(|p| p.consent_state.as_str())
    }

    /// The names of the choices recorded with the consent (the categories, never the
    /// selections); empty when the record holds none.
    pub fn choice_categories(&self) -> &[String] {
        self.first_purpose().map_or(&[], |p| p.choice_categories.as_slice())
    }

    /// When the consent was withdrawn (RFC 3339), if it was.
    pub fn withdrawn_at(&self) -> Option<&str> {
        self.first_purpose().and_then(|p| p.withdrawn_at.as_deref())
    }

    fn first_purpose(&self) -> Option<&ReceiptPurpose> {
        self.services.first().and_then(|s| s.purposes.first())
    }
}
