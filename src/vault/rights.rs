//! The customer's rights, one call each: access and portability (Art. 15, 20), restriction
//! (Art. 18), objection (Art. 21), erasure (Art. 17), and storage limitation (Art. 5(1)(e)).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::exported::ExportedValue;
use super::records::Verified;
use super::{Vault, live_key};
use crate::actor::Actor;
use crate::audit::{AuditEvent, AuditKind, Entry};
use crate::choices::Choices;
use crate::consent::{Consent, Evidence};
use crate::error::{AccessDenied, Error};
use crate::ids::{ConsentId, CustomerId, FieldName, is_slug};
use crate::integrity;
use crate::purpose::Purpose;
use crate::store::Objection;
#[cfg(feature = "tracing")]
use crate::vault::telemetry;

/// Everything egard holds about one customer, in clear, for the customer (Art. 15) or for
/// another controller (Art. 20): serialize it to JSON with [`to_json`](SubjectExport::to_json)
/// (a buffer wiped when dropped) or `serde_json`.
///
/// It holds personal data in clear: every field value is an [`ExportedValue`], wiped from
/// memory when dropped and `[REDACTED]` in `Debug` (of the export, of `fields`, and of each
/// value), but the serialized form is the customer's data itself. Hand it to the customer only.
#[derive(Serialize)]
pub struct SubjectExport {
    /// The customer.
    pub customer: CustomerId,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
    /// When exported.
    pub exported_at: DateTime<Utc>,
    /// Whether processing is restricted.
    pub restricted: bool,
    /// Every stored field, decrypted, by name: each value the JSON text it was sealed as.
    pub fields: BTreeMap<FieldName, ExportedValue>,
    /// Every consent record, history included, oldest first.
    pub consents: Vec<Consent>,
    /// The declared choices given with each consent record that holds some, decrypted, by
    /// consent id.
    pub choices: BTreeMap<ConsentId, Choices>,
    /// Every objection.
    pub objections: Vec<Objection>,
    /// The purposes defined, with their lawful basis, fields and retention.
    pub purposes: Vec<Purpose>,
    /// The audit events about this customer, this export included: the ones the store
    /// holds (after an archival, the events after [`audit_archived_through`] and the few kept
    /// below it).
    ///
    /// [`audit_archived_through`]: SubjectExport::audit_archived_through
    pub audit_events: Vec<AuditEvent>,
    /// Where older history lives: the audit log was archived up to this event (sequence
    /// number and time), and the customer's events up to it are in the controller's
    /// archive segments, not in `audit_events`. `None` if the log was never archived.
    pub audit_archived_through: Option<super::ArchivedThrough>,
}

impl std::fmt::Debug for SubjectExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectExport")
            .field("customer", &self.customer)
            .field("fields", &self.fields)
            .field("consents", &self.consents.len())
            .field("choices", &self.choices.len())
            .field("audit_events", &self.audit_events.len())
            .finish_non_exhaustive()
    }
}

/// The detail of an export's audit event: the evidence's method and source, each checked to
/// be a slug so that no personal data (a name, an address, a free-text note) enters the log.
fn export_detail(evidence: &Evidence) -> Result<String, Error> {
    const RULE: Error = Error::Invalid(
        "an export's evidence method and source must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'",
    );
    if !is_slug(evidence.method()) || !evidence.source_ref().is_none_or(is_slug) {
        return Err(RULE);
    }
    Ok(match evidence.source_ref() {
        Some(source) => format!("method={},source={source}", evidence.method()),
        None => format!("method={}", evidence.method()),
    })
}

/// What an erasure destroyed, and when: for the data protection officer's file, and for the
/// erasure ledger a host keeps outside the database and its backups. No personal data in it.
///
/// It serializes to JSON and back. After a database is restored from a backup taken before
/// some erasures, [`Vault::reapply_erasures`] with the receipts kept since erases those
/// customers again. The `mac` (under the vault's record key, which a backup of the same
/// database shares) makes a receipt that egard did not issue fail there: a ledger's writer
/// cannot erase anyone by forging one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// The customer.
    pub customer: CustomerId,
    /// When.
    pub erased_at: DateTime<Utc>,
    /// The fields whose ciphertext was deleted.
    pub fields: Vec<FieldName>,
    /// The versions of the data keys destroyed; every copy of ciphertext under them, backups
    /// included, can no longer be opened once no copy of the wrapped key is left (see
    /// SECURITY.md, "When shredding is complete").
    pub key_versions: Vec<u32>,
    /// The receipt's MAC under the vault's record key, in hexadecimal (record MAC input
    /// `egard/erasure/v1`: see SECURITY.md).
    #[serde(with = "crate::audit::mac_hex")]
    pub mac: [u8; 32],
}

/// What a retention sweep deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// When the sweep ran.
    pub swept_at: DateTime<Utc>,
    /// How many customers were examined.
    pub customers_examined: usize,
    /// The fields deleted, by customer.
    pub deleted: Vec<(CustomerId, FieldName)>,
    /// The audit events archived by the retention rule
    /// ([`VaultBuilder::audit_retention`](crate::VaultBuilder::audit_retention)): one report
    /// per new segment file (the range, the count, the file), in log order. Empty without a
    /// rule, or when no event was old enough.
    pub archived: Vec<super::ArchiveReport>,
}

impl Vault {
    /// Right of access and portability: every field in clear, every consent with its history
    /// and the choices given with it (decrypted), the purposes, and the customer's audit
    /// trail.
    ///
    /// `evidence` says how the identity of whoever asked was checked: its
    /// [method](Evidence::new) (such as `verified-email-link`) and, if given, its
    /// [source](Evidence::source) (a reference such as a ticket number) are recorded in the
    /// export's audit event as `method=<method>` or `method=<method>,source=<source>`. The
    /// log holds no personal data, so both must be slugs (1 to 64 characters of `a-z`, `0-9`,
    /// `.`, `_`, `-`), or the export is refused with [`Error::Invalid`] and nothing is recorded
    /// or read. A notice hash or the explicit mark, meaningless for an export, are not recorded.
    ///
    /// Audited as an export before any data is read: if the audit cannot be written, nothing
    /// is exported. An erased customer gives [`Error::Erased`], an unknown one
    /// [`Error::UnknownCustomer`]; neither is audited.
    ///
    /// ```
    /// use egard::{AuditKind, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
    ///
    /// let vault = Vault::builder().master_key(MasterKey::from_bytes([3; 32])).store(MemoryStore::new()).build()?;
    /// vault.define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["email"]))?;
    /// let alice = vault.create_customer()?;
    /// vault.set_field(alice, "email", "alice@example.com")?;
    ///
    /// let export = vault.export_customer(alice, Evidence::new("verified-email-link").source("dsar-2026-014"))?;
    /// assert_eq!(export.fields["email"].expose(), r#""alice@example.com""#);
    /// let event = export.audit_events.last().unwrap();
    /// assert_eq!(event.kind, AuditKind::Exported);
    /// assert_eq!(event.detail, "method=verified-email-link,source=dsar-2026-014");
    ///
    /// // No personal data enters the log through the evidence.
    /// assert!(vault.export_customer(alice, Evidence::new("called by Alice Martin")).is_err());
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn export_customer(&self, customer: CustomerId, evidence: Evidence) -> Result<SubjectExport, Error> {
        self.export_customer_as(&self.default_actor, customer, evidence)
    }

    /// [`export_customer`](Vault::export_customer), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.export_customer", level = "info", skip_all, fields(actor = %actor, customer = %customer), err(level = "info", Display)))]
    pub(crate) fn export_customer_as(
        &self,
        actor: &Actor,
        customer: CustomerId,
        evidence: Evidence,
    ) -> Result<SubjectExport, Error> {
        let detail = export_detail(&evidence)?;
        let entry = self.entry(customer)?;
        {
            let state = entry.lock();
            live_key(&entry, &state)?;
        }
        self.commit(
            Vec::new(),
            vec![
                Entry::new(AuditKind::Exported, Some(customer))
                    .detail(detail)
                    .actor(actor),
            ],
        )?
        .durable()?;
        let state = entry.lock();
        let key = live_key(&entry, &state)?;
        let (verified, stored) = self.consistent_fields(customer)?;
        let mut fields = BTreeMap::new();
        for (name, (version, _)) in &verified.fields {
            // The checked state names every stored field and its version; a missing row or an
            // envelope of another write is a store that lost or replayed it.
            let envelope = stored.get(name).ok_or(Error::Crypto)?;
            let plaintext = key.open(&self.namespace, customer, name.as_str(), *version, envelope)?;
            fields.insert(name.clone(), ExportedValue::from_plaintext(name, plaintext)?);
        }
        let consents = verified.consents_in_order();
        let choices = self.open_all_choices(customer, &key, &consents)?;
        drop(key);
        drop(state);
        let objections = verified.objections.into_iter().map(|(o, _)| o).collect();
        Ok(SubjectExport {
            customer,
            created_at: verified.record.created_at,
            exported_at: self.now(),
            restricted: verified.record.restricted,
            fields,
            consents,
            choices,
            objections,
            purposes: self.purposes(),
            audit_events: self.audit_events(customer)?,
            audit_archived_through: self.audit_archived_through()?,
        })
    }

    /// The customer's checked state and their stored envelopes by name, read so that both
    /// show the same state: read again while another process changed the customer between the
    /// two reads.
    fn consistent_fields(&self, customer: CustomerId) -> Result<(Verified, BTreeMap<FieldName, Vec<u8>>), Error> {
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let verified = self.verified_customer(customer)?;
            let stored: BTreeMap<FieldName, Vec<u8>> = self
                .store
                .fields(customer)?
                .into_iter()
                .map(|f| (f.field, f.envelope))
                .collect();
            let after = self.store.customer(customer)?.ok_or(Error::UnknownCustomer(customer))?;
            if integrity::macs_equal(&after.record.mac, &verified.record.mac) {
                return Ok((verified, stored));
            }
        }
        Err(crate::store::StoreError::Stale.into())
    }

    /// Restricts processing (Art. 18): every `authorize`, and every pass already issued, is
    /// refused with [`AccessDenied::Restricted`] until lifted; the data stays stored.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.restrict", level = "info", skip_all, fields(actor = %self.default_actor(), customer = %customer), err(level = "info", Display)))]
    pub fn restrict(&self, customer: CustomerId) -> Result<(), Error> {
        self.set_restricted(&self.default_actor, customer, true)
    }

    /// Lifts a restriction. Passes refused during the restriction stay refused: ask for new
    /// ones.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.lift_restriction", level = "info", skip_all, fields(actor = %self.default_actor(), customer = %customer), err(level = "info", Display)))]
    pub fn lift_restriction(&self, customer: CustomerId) -> Result<(), Error> {
        self.set_restricted(&self.default_actor, customer, false)
    }

    /// Restricts processing or lifts the restriction, recording `actor`.
    pub(crate) fn set_restricted(&self, actor: &Actor, customer: CustomerId, restricted: bool) -> Result<(), Error> {
        self.with_customer(customer, |entry, state, mut draft| {
            live_key(entry, state)?;
            if state.restricted != restricted {
                let kind = if restricted {
                    AuditKind::Restricted
                } else {
                    AuditKind::RestrictionLifted
                };
                draft.set_restricted(restricted);
                self.commit_customer(state, draft, vec![Entry::new(kind, Some(customer)).actor(actor)])?;
                state.restricted = restricted;
            }
            if restricted {
                state.revoke_all(AccessDenied::Restricted);
            }
            Ok(())
        })
    }

    /// Records the customer's objection (Art. 21) to a purpose based on legitimate interests
    /// or public task: refused with [`AccessDenied::Objected`] from now on, passes included.
    /// For a direct-marketing purpose the objection is absolute; otherwise a record given
    /// later (documenting compelling legitimate grounds) opens the purpose again.
    ///
    /// A purpose based on consent is refused here: withdraw the consent instead.
    pub fn object(&self, customer: CustomerId, purpose: &str) -> Result<(), Error> {
        self.object_as(&self.default_actor, customer, purpose)
    }

    /// [`object`](Vault::object), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.object", level = "info", skip_all, fields(actor = %actor, customer = %customer, purpose = telemetry::name(purpose)), err(level = "info", Display)))]
    pub(crate) fn object_as(&self, actor: &Actor, customer: CustomerId, purpose: &str) -> Result<(), Error> {
        let def = self.purpose_def(purpose)?;
        if !def.purpose.basis().allows_objection() {
            return Err(Error::Invalid(
                "objection applies to legitimate interests or public task; for other bases withdraw the record",
            ));
        }
        self.with_customer(customer, |entry, state, mut draft| {
            live_key(entry, state)?;
            let at = self.now();
            draft.put_objection(Objection {
                customer,
                purpose: def.id.clone(),
                at,
            });
            self.commit_customer(
                state,
                draft,
                vec![
                    Entry::new(AuditKind::Objected, Some(customer))
                        .purpose(&def.id)
                        .actor(actor),
                ],
            )?;
            state.objections.insert(def.id.clone(), at);
            state.revoke(&def.id, AccessDenied::Objected);
            Ok(())
        })
    }

    /// Erasure by crypto-shredding (Art. 17): deletes the customer's wrapped data keys and
    /// sealed fields, keeps a tombstone and the audit trail (neither holds personal data),
    /// and stops every pass and cached key at once. Every [`Sealed`](crate::Sealed) value of
    /// this customer kept anywhere, backups included, can never be opened again; `authorize`
    /// gives [`Error::Erased`].
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.erase_customer", level = "info", skip_all, fields(actor = %self.default_actor(), customer = %customer), err(level = "info", Display)))]
    pub fn erase_customer(&self, customer: CustomerId) -> Result<ErasureReceipt, Error> {
        self.erase(Some(&self.default_actor), customer, "")
    }

    /// Erases `customer`, recording `actor` (`None` for the vault's own administration);
    /// `why` prefixes the audit detail.
    ///
    /// Crypto-shredding needs no key: a customer this vault cannot load because their data
    /// key does not unwrap (the key provider is down or refuses, the key is under a retired or
    /// unknown master key) is erased all the same, from their checked records.
    pub(crate) fn erase(
        &self,
        actor: Option<&Actor>,
        customer: CustomerId,
        why: &str,
    ) -> Result<ErasureReceipt, Error> {
        match self.erase_cached(actor, customer, why) {
            Err(Error::KeyProvider(_) | Error::RetiredKey { .. } | Error::Crypto) if !self.is_cached(customer) => {
                self.erase_without_key(actor, customer, why)
            }
            other => other,
        }
    }

    fn is_cached(&self, customer: CustomerId) -> bool {
        self.cache.shard(customer).contains_key(&customer)
    }

    /// Erases a customer whose data key this vault cannot unwrap: the change is made on their
    /// checked stored records (records that fail their check fail the erasure, as everywhere),
    /// conditional on the revision read; then a cached entry another thread may have loaded
    /// meanwhile has its passes stopped and its key wiped.
    fn erase_without_key(
        &self,
        actor: Option<&Actor>,
        customer: CustomerId,
        why: &str,
    ) -> Result<ErasureReceipt, Error> {
        let record_key = self.record_key()?;
        for _ in 0..super::STALE_RETRIES {
            let verified = self.verified_customer(customer)?;
            if verified.record.erased_at.is_some() {
                return Err(Error::Erased(customer));
            }
            let fields: Vec<FieldName> = verified.fields.keys().cloned().collect();
            let key_versions: Vec<u32> = verified.keys.keys().copied().collect();
            let at = self.now();
            let detail = format!("{why}fields={},keys={}", fields.len(), key_versions.len());
            let mut draft = super::Draft::new(record_key, verified)?;
            draft.erase(at);
            let finished = draft.finish();
            let mac = finished.state.record.mac;
            let written = self.commit(
                finished.writes,
                vec![
                    Entry::new(AuditKind::Erased, Some(customer))
                        .detail(detail)
                        .state(mac)
                        .maybe_actor(actor),
                ],
            );
            let written = match written {
                Err(Error::Storage(crate::store::StoreError::Stale)) => continue,
                Err(e) => return Err(e),
                Ok(written) => written,
            };
            let cached = self.cache.shard(customer).get(&customer).cloned();
            if let Some(entry) = cached {
                entry.lock().revoke_erased();
                entry.erase_key();
            }
            self.cache.remove(customer);
            written.durable()?;
            return Ok(ErasureReceipt {
                customer,
                erased_at: at,
                mac: record_key.erasure(customer, at, &fields, &key_versions),
                fields,
                key_versions,
            });
        }
        Err(crate::store::StoreError::Stale.into())
    }

    /// Erases a customer through their cached entry (loaded, with their key, if need be).
    fn erase_cached(&self, actor: Option<&Actor>, customer: CustomerId, why: &str) -> Result<ErasureReceipt, Error> {
        let record_key = self.record_key()?;
        let receipt = self.with_customer(customer, |entry, state, mut draft| {
            live_key(entry, state)?;
            let fields: Vec<FieldName> = draft.current().fields.keys().cloned().collect();
            let key_versions: Vec<u32> = draft.current().keys.keys().copied().collect();
            let at = self.now();
            let detail = format!("{why}fields={},keys={}", fields.len(), key_versions.len());
            draft.erase(at);
            self.commit_customer(
                state,
                draft,
                vec![
                    Entry::new(AuditKind::Erased, Some(customer))
                        .detail(detail)
                        .maybe_actor(actor),
                ],
            )?;
            state.revoke_erased();
            // The passes still alive hold this entry: the key leaves it now, wiped.
            entry.erase_key();
            let mac = record_key.erasure(customer, at, &fields, &key_versions);
            Ok(ErasureReceipt {
                customer,
                erased_at: at,
                fields,
                key_versions,
                mac,
            })
        })?;
        self.cache.remove(customer);
        Ok(receipt)
    }

    /// Erases again, after a restore from a backup, every customer of `receipts` that the
    /// restored database still holds: the erasure ledger a host keeps outside the database
    /// (every [`ErasureReceipt`] that [`erase_customer`](Vault::erase_customer) returned)
    /// brings the restored store back to what the customers asked for. Each is audited as an
    /// erasure with the detail `reapplied`. Customers already erased, or unknown here (created
    /// after the backup), are passed over. Returns the customers erased again.
    ///
    /// Every receipt is checked before anything is erased: one that egard did not issue for
    /// this store (its MAC fails) refuses the whole call with [`Error::Crypto`], and nothing
    /// is erased.
    ///
    /// ```
    /// # use egard::{MasterKey, MemoryStore, Vault};
    /// # let vault = Vault::builder().master_key(MasterKey::from_bytes([1; 32])).store(MemoryStore::new()).build()?;
    /// let customer = vault.create_customer()?;
    /// let ledger = vec![vault.erase_customer(customer)?];
    /// let line = serde_json::to_string(&ledger).unwrap(); // kept outside the database
    /// // ... the database is restored from a backup taken before the erasure ...
    /// let ledger: Vec<egard::ErasureReceipt> = serde_json::from_str(&line).unwrap();
    /// let again = vault.reapply_erasures(&ledger)?;
    /// assert!(again.is_empty(), "nothing was restored here: the customer is still erased");
    /// # Ok::<(), egard::Error>(())
    /// ```
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.reapply_erasures", level = "info", skip_all, fields(receipts = receipts.len()), err(level = "info", Display)))]
    pub fn reapply_erasures(&self, receipts: &[ErasureReceipt]) -> Result<Vec<CustomerId>, Error> {
        let key = self.record_key()?;
        for r in receipts {
            let mac = key.erasure(r.customer, r.erased_at, &r.fields, &r.key_versions);
            if !integrity::macs_equal(&mac, &r.mac) {
                return Err(Error::Crypto);
            }
        }
        let mut erased = Vec::new();
        for r in receipts {
            if erased.contains(&r.customer) {
                continue;
            }
            // The vault's own administration: no actor.
            match self.erase(None, r.customer, "reapplied,") {
                Ok(_) => erased.push(r.customer),
                Err(Error::Erased(_) | Error::UnknownCustomer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(erased)
    }

    /// Storage limitation (Art. 5(1)(e)): deletes every stored field that no purpose still
    /// needs. A purpose needs a field it covers while the customer's record for it is live,
    /// and for its retention period after the record ended (by expiry, withdrawal or
    /// objection; or, if the customer never gave one, after the field was written). The
    /// moment the period ends, the field goes. A restricted customer's fields are kept.
    ///
    /// A customer whose stored records fail their check, or whose data key is under a retired
    /// master key ([`Error::RetiredKey`]), is left alone and the sweep goes on; the first such
    /// failure is returned at the end, after every other customer was swept.
    ///
    /// With an audit retention rule ([`VaultBuilder::audit_retention`](crate::VaultBuilder::audit_retention)),
    /// the sweep then archives every audit event older than the rule into a new segment file
    /// ([`Vault::archive_audit_to_dir_all`], as many segments as needed) and reports them in
    /// [`SweepReport::archived`]. If that
    /// archival fails (a full disk, an unwritable directory: [`Error::Io`]), the sweep returns
    /// its error; the fields already deleted stay deleted, and no audit event is lost (see
    /// [`Vault::archive_audit`]).
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "egard.sweep_retention",
            level = "info",
            skip_all,
            err(level = "info", Display)
        )
    )]
    pub fn sweep_retention(&self) -> Result<SweepReport, Error> {
        let now = self.now();
        let purposes = self.purposes();
        let ids = self.store.customer_ids()?;
        let mut deleted = Vec::new();
        let mut first_failure = None;
        for &customer in &ids {
            // A first look without the customer's lock, to pass over the many with nothing
            // to delete; the decision is made again under the lock before anything goes.
            let first_look = match self.verified_customer(customer) {
                Ok(verified) => unneeded_fields(&verified, &purposes, now),
                Err(Error::UnknownCustomer(_)) => continue,
                Err(e) => {
                    first_failure.get_or_insert(e);
                    continue;
                }
            };
            if first_look.is_empty() {
                continue;
            }
            let swept = self.with_customer(customer, |_, state, mut draft| {
                // Under the lock no set_field can slip between this read and the delete.
                let gone = unneeded_fields(draft.current(), &purposes, now);
                if gone.is_empty() {
                    return Ok(gone);
                }
                for field in &gone {
                    draft.delete_field(field.clone());
                }
                let entries = gone
                    .iter()
                    .map(|field| {
                        Entry::new(AuditKind::FieldDeleted, Some(customer))
                            .field(field)
                            .detail("retention")
                    })
                    .collect();
                self.commit_customer(state, draft, entries)?;
                Ok(gone)
            });
            match swept {
                Ok(gone) => deleted.extend(gone.into_iter().map(|field| (customer, field))),
                Err(
                    e @ (Error::Crypto
                    | Error::RetiredKey { .. }
                    | Error::Storage(crate::store::StoreError::Corrupt(_))),
                ) => {
                    first_failure.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = first_failure {
            return Err(e);
        }
        // The audit log's retention rule, after the fields: their deletions are then in the
        // log, not yet old enough to be archived.
        let archived = match &self.audit_retention {
            Some((keep, dir)) => self.archive_audit_to_dir_all(self.archive_cutoff(*keep), dir, &mut |_| {})?,
            None => Vec::new(),
        };
        Ok(SweepReport {
            swept_at: now,
            customers_examined: ids.len(),
            deleted,
            archived,
        })
    }
}

/// The stored fields of a customer that no purpose needs any more at `now`.
fn unneeded_fields(state: &Verified, purposes: &[Purpose], now: DateTime<Utc>) -> Vec<FieldName> {
    // A restricted customer's data stays stored (Art. 18(1)(b), (c): restriction is what a
    // customer asks for instead of deletion).
    if state.record.erased_at.is_some() || state.record.restricted {
        return Vec::new();
    }
    let mut gone = Vec::new();
    for (field, (_, written_at)) in &state.fields {
        let needed = purposes
            .iter()
            .filter(|p| p.field_names().any(|f| f == field.as_str()))
            .any(|p| {
                let retention = p.retention_period().unwrap_or_default();
                let latest = state
                    .consents
                    .values()
                    .map(|(c, _)| c)
                    .filter(|c| c.purpose.as_str() == p.id())
                    .max_by_key(|c| (c.given_at, c.id));
                // An objection ends the records given before it (all of them, for direct
                // marketing), as a withdrawal does.
                let objected = state
                    .objections
                    .iter()
                    .filter(|(o, _)| o.purpose.as_str() == p.id())
                    .map(|(o, _)| o.at)
                    .max();
                let window_start = match latest {
                    None => *written_at,
                    Some(c) => {
                        let objection = objected.filter(|&o| p.is_direct_marketing() || c.given_at <= o);
                        let expired = crate::consent::expiry(c, p).filter(|&e| e <= now);
                        let ended = [c.withdrawn_at, objection, expired];
                        match ended.into_iter().flatten().min() {
                            Some(end) => end,
                            None => return true,
                        }
                    }
                };
                // Stored times are untrusted: a window ending past the calendar's range is
                // still open.
                window_start.checked_add_signed(retention).is_none_or(|end| now < end)
            });
        if !needed {
            gone.push(field.clone());
        }
    }
    gone
}
