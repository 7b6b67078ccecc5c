//! Declared choices: given with a consent, changed as a new record of its history, sealed
//! under the customer's data key, read back only through a pass.

use std::sync::Arc;

use super::cache::{CustomerState, KeyRef};
use super::records::Draft;
use super::{Refresh, Vault, batch, live_key};
use crate::actor::Actor;
use crate::audit::{AuditKind, Entry};
use crate::choices::{Choices, SealedChoices};
use crate::consent::{Evidence, decide};
use crate::error::Error;
use crate::gate::{AccessPass, Revealed, encode};
use crate::ids::{ConsentId, CustomerId, FieldName};
use crate::purpose::PurposeDef;
use crate::store::StoreError;

/// Refuses evidence that cannot found a record for `def`: special-category data without
/// explicit consent; a purpose covered by the Global Privacy Control signal, asked for with
/// the signal present but without the customer's explicit confirmation.
pub(super) fn check_evidence(def: &PurposeDef, evidence: &Evidence) -> Result<(), Error> {
    if def.purpose.is_special_category() && !evidence.is_explicit() {
        return Err(Error::Invalid("special-category purposes need explicit consent"));
    }
    if def.purpose.is_covered_by_gpc() && evidence.has_gpc() && !evidence.is_explicit() {
        return Err(Error::GpcConflict {
            purpose: def.id.clone(),
        });
    }
    Ok(())
}

/// The detail of a `consent_given` event: the consent id, then what is worth knowing about
/// how it was given (`choices_changed`, `despite_gpc`), comma-separated after a space.
pub(super) fn given_detail(id: ConsentId, evidence: &Evidence, choices_changed: bool) -> String {
    let mut notes = Vec::new();
    if choices_changed {
        notes.push("choices_changed");
    }
    if evidence.has_gpc() {
        notes.push("despite_gpc");
    }
    if notes.is_empty() {
        id.to_string()
    } else {
        format!("{id} {}", notes.join(","))
    }
}

/// The name the errors of encoding a customer's choices refer to.
fn choices_name() -> Result<FieldName, Error> {
    FieldName::new("choices")
}

impl Vault {
    /// Records the customer's consent to `purpose`, as [`give_consent`](Vault::give_consent)
    /// does, together with the choices they made, checked against the purpose's declared
    /// choices ([`Purpose::choice`](crate::Purpose::choice),
    /// [`Purpose::single_choice`](crate::Purpose::single_choice)).
    ///
    /// A choice the purpose does not declare, an option it does not offer, or anything but
    /// exactly one option for a single choice is refused with [`Error::InvalidChoice`] (which
    /// names the choice, never the options), and nothing is written. A declared choice may be
    /// left out. Empty choices record none.
    ///
    /// The choices are personal data: sealed under the customer's data key, bound to this
    /// consent record (its MAC covers the sealed bytes), never stored in clear; read them
    /// through a pass with [`Vault::choices`].
    ///
    /// ```
    /// use egard::{Choices, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
    ///
    /// let vault = Vault::builder().master_key(MasterKey::from_bytes([3; 32])).store(MemoryStore::new()).build()?;
    /// vault.define_purpose(
    ///     Purpose::new("newsletter", LawfulBasis::Consent)
    ///         .fields(["email"])
    ///         .choice("topics", ["rides", "food", "offers"])
    ///         .single_choice("frequency", ["weekly", "monthly"]),
    /// )?;
    /// let alice = vault.create_customer()?;
    /// let choices = Choices::new().select("topics", ["rides", "food"]).select("frequency", ["monthly"]);
    /// vault.give_consent_with(alice, "newsletter", Evidence::new("web-form"), &choices)?;
    ///
    /// let pass = vault.authorize(alice, "newsletter")?;
    /// assert!(vault.choices(&pass)?.expose().is_selected("topics", "food"));
    ///
    /// let bad = Choices::new().select("frequency", ["daily"]);
    /// assert!(matches!(
    ///     vault.give_consent_with(alice, "newsletter", Evidence::new("web-form"), &bad),
    ///     Err(egard::Error::InvalidChoice { .. })
    /// ));
    /// # Ok::<(), egard::Error>(())
    /// ```
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.give_consent_with", level = "info", skip_all, fields(customer = %customer, purpose = super::telemetry::name(purpose)), err(level = "info", Display)))]
    pub fn give_consent_with(
        &self,
        customer: CustomerId,
        purpose: &str,
        evidence: Evidence,
        choices: &Choices,
    ) -> Result<ConsentId, Error> {
        self.record_consent(&self.default_actor, customer, purpose, evidence, Some(choices), false)
    }

    /// Changes the choices the customer made for `purpose`: a new consent record, carrying
    /// the new choices, supersedes the current one (kept in the history), under the same
    /// notice version and with the expiry a renewal gets. Audited as a consent given, with
    /// the detail `choices_changed`.
    ///
    /// Needs a currently valid record for the purpose: otherwise the reason is returned as
    /// [`Error::Denied`] (for example [`AccessDenied::NoConsent`] or
    /// [`AccessDenied::Withdrawn`](crate::AccessDenied::Withdrawn)) and nothing is written.
    /// The choices are checked as [`give_consent_with`](Vault::give_consent_with) checks
    /// them, and so is the evidence (a request carrying the Global Privacy Control signal
    /// needs [`Evidence::explicit`] for a purpose the signal covers).
    ///
    /// [`AccessDenied::NoConsent`]: crate::AccessDenied::NoConsent
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.change_choices", level = "info", skip_all, fields(customer = %customer, purpose = super::telemetry::name(purpose)), err(level = "info", Display)))]
    pub fn change_choices(
        &self,
        customer: CustomerId,
        purpose: &str,
        choices: &Choices,
        evidence: Evidence,
    ) -> Result<ConsentId, Error> {
        self.record_consent(&self.default_actor, customer, purpose, evidence, Some(choices), true)
    }

    /// The customer's declared choices for the purpose of `pass`, as given with the consent
    /// behind it (empty when none were given). Only through a pass: a withdrawn, expired or
    /// restricted consent (or any other reason that stops the pass) is refused as
    /// [`Vault::reveal`] refuses it.
    ///
    /// The choices are decrypted here, on each call, not when the pass is issued.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.choices", level = "debug", skip_all, fields(customer = %pass.customer(), purpose = pass.purpose().as_str()), err(level = "info", Display)))]
    pub fn choices(&self, pass: &AccessPass) -> Result<Revealed<Choices>, Error> {
        if !Arc::ptr_eq(&pass.namespace, &self.namespace) {
            return Err(Error::Invalid("the pass was issued by another vault"));
        }
        if self.cache_ttl.is_some() {
            self.refresh_purposes(Refresh::IfStale)?;
        }
        let mut state = pass.entry.lock();
        let mut stale = false;
        if self.cache_ttl.is_some() && !state.erased && !state.evicted {
            match self.refresh(&pass.entry, &mut state, Refresh::IfStale) {
                Err(Error::Storage(StoreError::Stale)) => stale = true,
                other => other?,
            }
        }
        let opened = self.open_current_choices(pass, &state);
        drop(state);
        if stale {
            self.cache.remove_entry(&pass.entry);
        }
        let plaintext = opened?;
        match plaintext {
            None => Ok(Revealed::new(Choices::new())),
            Some(plaintext) => crate::codec::from_slice::<Choices>(&plaintext)
                .map(Revealed::new)
                // The plaintext was authenticated: one that does not decode is not ours.
                .map_err(|_| Error::Crypto),
        }
    }

    /// Checks the pass and opens the sealed choices of the customer's current record for its
    /// purpose (`None`: none given).
    fn open_current_choices(
        &self,
        pass: &AccessPass,
        state: &CustomerState,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, Error> {
        let customer = pass.customer();
        let key = pass.check_purpose(customer)?;
        let record = state
            .current
            .get(&pass.purpose.id)
            .ok_or(crate::AccessDenied::NoConsent)?;
        match &record.sealed_choices {
            None => Ok(None),
            Some(sealed) => key
                .open_choices(&self.namespace, customer, record.id, sealed.as_bytes())
                .map(Some),
        }
    }

    /// Gives (or, with `change`, changes the choices of) a consent: see
    /// [`give_consent_with`](Vault::give_consent_with) and
    /// [`change_choices`](Vault::change_choices).
    pub(crate) fn record_consent(
        &self,
        actor: &Actor,
        customer: CustomerId,
        purpose: &str,
        evidence: Evidence,
        choices: Option<&Choices>,
        change: bool,
    ) -> Result<ConsentId, Error> {
        let def = self.purpose_def(purpose)?;
        check_evidence(&def, &evidence)?;
        let plaintext = match choices {
            Some(choices) if !choices.is_empty() => {
                choices.check(def.purpose.choices())?;
                Some(encode(&choices_name()?, choices, self.max_value_len)?)
            }
            _ => None,
        };
        self.with_customer(customer, |entry, state, mut draft| {
            let now = self.now();
            if change {
                let current = state.current.get(&def.id);
                if state.erased {
                    return Err(Error::Erased(customer));
                }
                decide(current, &def, state.standing(&def.id), None, now)?;
            }
            let id = ConsentId::new();
            let mut entries = Vec::new();
            let mut rotated = None;
            let sealed = match &plaintext {
                None => None,
                Some(plaintext) => {
                    live_key(entry, state)?;
                    // A key at its budget is replaced in the same change, before this
                    // encryption.
                    if draft.current().record.key_uses >= self.encryption_budget {
                        let (key, event) = self.rekey(entry, state, &mut draft, "budget")?;
                        entries.push(event.actor(actor));
                        rotated = Some(key);
                    }
                    let bytes = match &rotated {
                        Some(key) => key.seal_choices(&self.namespace, customer, id, plaintext)?,
                        None => live_key(entry, state)?.seal_choices(&self.namespace, customer, id, plaintext)?,
                    };
                    draft.use_key(1)?;
                    Some((id, SealedChoices::from_bytes(bytes)))
                }
            };
            let record = batch::new_consent(
                &def,
                customer,
                state,
                state.current.get(&def.id),
                &evidence,
                now,
                &mut draft,
                sealed,
            )?;
            let id = record.id;
            entries.push(
                Entry::new(AuditKind::ConsentGiven, Some(customer))
                    .purpose(&def.id)
                    .detail(given_detail(id, &evidence, change))
                    .actor(actor),
            );
            self.commit_customer(state, draft, entries)?;
            if let Some(key) = rotated {
                self.install_key(entry, state, key);
            }
            state.current.insert(def.id.clone(), record);
            Ok(id)
        })
    }

    /// For a key rotation: every consent record of the customer that holds sealed choices,
    /// opened under the old key and sealed again under `new_key`, written into `draft`.
    /// Returns how many were sealed again.
    pub(super) fn reseal_choices(
        &self,
        customer: CustomerId,
        old: &KeyRef<'_>,
        new_key: &crate::crypto::DataKey,
        draft: &mut Draft<'_>,
    ) -> Result<u64, Error> {
        let records: Vec<_> = draft
            .current()
            .consents
            .values()
            .filter(|(c, _)| c.sealed_choices.is_some())
            .map(|(c, _)| c.clone())
            .collect();
        let mut n = 0u64;
        for mut record in records {
            if let Some(sealed) = &record.sealed_choices {
                let plaintext = old.open_choices(&self.namespace, customer, record.id, sealed.as_bytes())?;
                let bytes = new_key.seal_choices(&self.namespace, customer, record.id, &plaintext)?;
                record.sealed_choices = Some(SealedChoices::from_bytes(bytes));
                draft.put_consent(record);
                n = n.saturating_add(1);
            }
        }
        Ok(n)
    }

    /// Opens the sealed choices of every record of a checked customer, for their export.
    pub(super) fn open_all_choices(
        &self,
        customer: CustomerId,
        key: &KeyRef<'_>,
        records: &[crate::consent::Consent],
    ) -> Result<std::collections::BTreeMap<ConsentId, Choices>, Error> {
        let mut all = std::collections::BTreeMap::new();
        for record in records {
            if let Some(sealed) = &record.sealed_choices {
                let plaintext = key.open_choices(&self.namespace, customer, record.id, sealed.as_bytes())?;
                let choices = crate::codec::from_slice::<Choices>(&plaintext).map_err(|_| Error::Crypto)?;
                all.insert(record.id, choices);
            }
        }
        Ok(all)
    }
}
