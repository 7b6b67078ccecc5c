//! Signed consent receipts, issued from the customer's checked records.

use super::Vault;
use crate::actor::Actor;
use crate::audit::{AuditKind, Entry};
use crate::consent::{ConsentState, expiry};
use crate::error::Error;
use crate::ids::ConsentId;
use crate::receipt::{ConsentReceipt, Facts, ReceiptSigner};

impl Vault {
    /// A signed receipt of the consent record `consent` (or of a record of another lawful
    /// basis), for the customer to keep: see [`ConsentReceipt`]. Issuing it is audited
    /// ([`AuditKind::ReceiptIssued`]).
    ///
    /// The record comes from the customer's authenticated state, checked against its MAC and
    /// the audit log like every read that decides something: a record edited, replayed or
    /// planted in the store fails with [`Error::Crypto`] and never makes a receipt. The receipt
    /// shows the record's state now: a withdrawn consent gives a receipt that says
    /// `withdrawn` and when (so does a record ended by the customer's objection, with the
    /// objection's time); an expired or renewed one says so too. Consent records outlive
    /// an erasure (they hold no personal data), and so does the customer's right to a receipt
    /// of them.
    ///
    /// Fails with [`Error::UnknownConsent`] when no record has this id, and with
    /// [`Error::Config`] when the vault was built without a
    /// [`controller`](crate::VaultBuilder::controller).
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
    /// vault.withdraw_consent(alice, "newsletter")?;
    ///
    /// let signer = ReceiptSigner::generate()?;
    /// let receipt = vault.consent_receipt(consent, &signer)?;
    /// assert_eq!(receipt.consent_state(), Some("withdrawn"));
    /// assert_eq!(receipt.principal(), alice.to_string());
    /// receipt.verify(signer.public_key())?;
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn consent_receipt(&self, consent: ConsentId, signer: &ReceiptSigner) -> Result<ConsentReceipt, Error> {
        self.consent_receipt_as(&self.default_actor, consent, signer)
    }

    /// [`consent_receipt`](Vault::consent_receipt), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.consent_receipt", level = "info", skip_all, fields(actor = %actor, consent = %consent), err(level = "info", Display)))]
    pub(crate) fn consent_receipt_as(
        &self,
        actor: &Actor,
        consent: ConsentId,
        signer: &ReceiptSigner,
    ) -> Result<ConsentReceipt, Error> {
        let controller = self.controller.as_ref().ok_or(Error::Config(
            "consent receipts need the controller's details (VaultBuilder::controller)",
        ))?;
        // The store only says whose records to read; the record itself is taken from that
        // customer's checked state.
        let customer = self
            .store
            .consent_owner(consent)?
            .ok_or(Error::UnknownConsent(consent))?;
        let verified = match self.verified_customer(customer) {
            Err(Error::UnknownCustomer(_)) => return Err(Error::UnknownConsent(consent)),
            other => other?,
        };
        let (record, _) = verified.consents.get(&consent).ok_or(Error::UnknownConsent(consent))?;
        let def = self.purpose_def(record.purpose.as_str())?;
        let now = self.now();
        let ends = expiry(record, &def.purpose);
        // An objection ends a legitimate-interests or public-task record as a withdrawal ends
        // a consent (by the rule the gate applies): the receipt says so, with its time.
        let objected = verified
            .objections
            .iter()
            .map(|(o, _)| o)
            .filter(|o| o.purpose == record.purpose && (def.purpose.is_direct_marketing() || record.given_at <= o.at))
            .map(|o| o.at)
            .min();
        let withdrawn_at = record.withdrawn_at.or(objected);
        let state = if record.superseded_by.is_some() {
            ConsentState::Superseded
        } else if withdrawn_at.is_some() {
            ConsentState::Withdrawn
        } else if ends.is_some_and(|t| now >= t) {
            ConsentState::Expired
        } else {
            ConsentState::Given
        };
        let receipt = ConsentReceipt::issue(
            &Facts {
                record,
                purpose: &def.purpose,
                expiry: ends,
                state,
                withdrawn_at,
                controller,
                now,
            },
            signer,
        )?;
        // Fail closed: no receipt leaves unless its issue is in the log.
        self.commit(
            Vec::new(),
            vec![
                Entry::new(AuditKind::ReceiptIssued, Some(customer))
                    .purpose(&record.purpose)
                    .detail(format!("consent={consent} receipt={}", receipt.receipt_id()))
                    .actor(actor),
            ],
        )?
        .durable()?;
        Ok(receipt)
    }
}
