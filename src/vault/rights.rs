//! The customer's rights, one call each: access and portability (Art. 15, 20), restriction
//! (Art. 18), objection (Art. 21), erasure (Art. 17), and storage limitation (Art. 5(1)(e));
//! plus master-key rotation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Vault, journal, live_key};
use crate::audit::{AuditEvent, AuditKind, Entry};
use crate::consent::Consent;
use crate::crypto::WrappedKeyEnvelope;
use crate::error::{AccessDenied, Error};
use crate::ids::{CustomerId, FieldName};
use crate::purpose::Purpose;
use crate::store::{Objection, VaultSecret, Write};

/// Everything egard holds about one customer, in clear, for the customer (Art. 15) or for
/// another controller (Art. 20): serialize it to JSON with `serde_json`.
///
/// It holds personal data in clear: `Debug` hides the field values, but the serialized form
/// is the customer's data itself. Hand it to the customer only.
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
    /// Every stored field, decrypted, by name.
    pub fields: BTreeMap<FieldName, serde_json::Value>,
    /// Every consent record, history included, oldest first.
    pub consents: Vec<Consent>,
    /// Every objection.
    pub objections: Vec<Objection>,
    /// The purposes defined, with their lawful basis, fields and retention.
    pub purposes: Vec<Purpose>,
    /// The audit events about this customer, this export included.
    pub audit_events: Vec<AuditEvent>,
}

impl std::fmt::Debug for SubjectExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectExport")
            .field("customer", &self.customer)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("values", &"[REDACTED]")
            .field("consents", &self.consents.len())
            .field("audit_events", &self.audit_events.len())
            .finish_non_exhaustive()
    }
}

/// What an erasure destroyed, and when: for the data protection officer's file. No personal
/// data in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureReceipt {
    /// The customer.
    pub customer: CustomerId,
    /// When.
    pub erased_at: DateTime<Utc>,
    /// The fields whose ciphertext was deleted.
    pub fields: Vec<FieldName>,
    /// The versions of the data keys destroyed; every copy of ciphertext under them, backups
    /// included, can no longer be opened.
    pub key_versions: Vec<u32>,
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
}

impl Vault {
    /// Right of access and portability: every field in clear, every consent with its history,
    /// the purposes, and the customer's audit trail. Audited as an export (before any data is
    /// read: if the audit cannot be written, nothing is exported).
    pub fn export_customer(&self, customer: CustomerId) -> Result<SubjectExport, Error> {
        let entry = self.entry(customer)?;
        {
            let state = entry.lock();
            live_key(&entry, &state)?;
        }
        self.commit(Vec::new(), vec![Entry::new(AuditKind::Exported, Some(customer))])?;
        let snapshot = self.snapshot(customer)?;
        let state = entry.lock();
        let key = live_key(&entry, &state)?;
        let mut fields = BTreeMap::new();
        for stored in self.store.fields(customer)? {
            let plaintext = key.open(&self.namespace, customer, stored.field.as_str(), &stored.envelope)?;
            let value = serde_json::from_slice(&plaintext).map_err(|_| Error::Codec {
                field: stored.field.clone(),
                action: "decoded",
            })?;
            fields.insert(stored.field, value);
        }
        drop(state);
        let mut consents = snapshot.consents;
        consents.sort_by_key(|c| (c.given_at, c.id));
        Ok(SubjectExport {
            customer,
            created_at: snapshot.record.created_at,
            exported_at: self.now(),
            restricted: snapshot.record.restricted,
            fields,
            consents,
            objections: snapshot.objections,
            purposes: self.purposes(),
            audit_events: self.store.audit_for(customer)?,
        })
    }

    /// Restricts processing (Art. 18): every `authorize`, and every pass already issued, is
    /// refused with [`AccessDenied::Restricted`] until lifted; the data stays stored.
    pub fn restrict(&self, customer: CustomerId) -> Result<(), Error> {
        self.set_restricted(customer, true)
    }

    /// Lifts a restriction. Passes refused during the restriction stay refused: ask for new
    /// ones.
    pub fn lift_restriction(&self, customer: CustomerId) -> Result<(), Error> {
        self.set_restricted(customer, false)
    }

    fn set_restricted(&self, customer: CustomerId, restricted: bool) -> Result<(), Error> {
        self.with_customer(customer, |entry, state| {
            live_key(entry, state)?;
            if state.restricted != restricted {
                let kind = if restricted {
                    AuditKind::Restricted
                } else {
                    AuditKind::RestrictionLifted
                };
                self.commit(
                    vec![Write::SetRestricted { customer, restricted }],
                    vec![Entry::new(kind, Some(customer))],
                )?;
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
        let def = self.purpose_def(purpose)?;
        if !def.purpose.basis().allows_objection() {
            return Err(Error::Invalid(
                "objection applies to legitimate interests or public task; for other bases withdraw the record",
            ));
        }
        self.with_customer(customer, |entry, state| {
            live_key(entry, state)?;
            let at = self.now();
            self.commit(
                vec![Write::PutObjection(Objection {
                    customer,
                    purpose: def.id.clone(),
                    at,
                })],
                vec![Entry::new(AuditKind::Objected, Some(customer)).purpose(&def.id)],
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
    pub fn erase_customer(&self, customer: CustomerId) -> Result<ErasureReceipt, Error> {
        let receipt = self.with_customer(customer, |entry, state| {
            live_key(entry, state)?;
            let snapshot = self.snapshot(customer)?;
            let mut fields: Vec<FieldName> = self.store.fields(customer)?.into_iter().map(|f| f.field).collect();
            fields.sort();
            let mut key_versions: Vec<u32> = snapshot.keys.iter().map(|k| k.version).collect();
            key_versions.sort_unstable();
            let at = self.now();
            let detail = format!("fields={},keys={}", fields.len(), key_versions.len());
            self.commit(
                vec![Write::EraseCustomer { customer, at }],
                vec![Entry::new(AuditKind::Erased, Some(customer)).detail(detail)],
            )?;
            state.revoke_erased();
            Ok(ErasureReceipt {
                customer,
                erased_at: at,
                fields,
                key_versions,
            })
        })?;
        self.cache.remove(customer);
        Ok(receipt)
    }

    /// Storage limitation (Art. 5(1)(e)): deletes every stored field that no purpose still
    /// needs. A purpose needs a field it covers while the customer's record for it is live,
    /// and for its retention period after the record ended (by expiry, withdrawal or
    /// objection; or, if the customer never gave one, after the field was written). The
    /// moment the period ends, the field goes. A restricted customer's fields are kept.
    pub fn sweep_retention(&self) -> Result<SweepReport, Error> {
        let now = self.now();
        let purposes = self.purposes();
        let ids = self.store.customer_ids()?;
        let mut deleted = Vec::new();
        for &customer in &ids {
            // A first look without the customer's lock, to pass over the many with nothing
            // to delete; the decision is made again under the lock before anything goes.
            if self.unneeded_fields(customer, &purposes, now)?.is_empty() {
                continue;
            }
            let gone = self.with_customer(customer, |_, state| {
                // Under the lock no set_field can slip between this read and the delete.
                let gone = self.unneeded_fields(customer, &purposes, now)?;
                if gone.is_empty() {
                    return Ok(gone);
                }
                let writes = gone
                    .iter()
                    .map(|field| Write::DeleteField {
                        customer,
                        field: field.clone(),
                    })
                    .collect();
                let entries = gone
                    .iter()
                    .map(|field| {
                        Entry::new(AuditKind::FieldDeleted, Some(customer))
                            .field(field)
                            .detail("retention")
                    })
                    .collect();
                self.commit(writes, entries)?;
                state.fields = None;
                Ok(gone)
            })?;
            deleted.extend(gone.into_iter().map(|field| (customer, field)));
        }
        Ok(SweepReport {
            swept_at: now,
            customers_examined: ids.len(),
            deleted,
        })
    }

    /// The stored fields of `customer` that no purpose needs any more at `now`.
    fn unneeded_fields(
        &self,
        customer: CustomerId,
        purposes: &[Purpose],
        now: DateTime<Utc>,
    ) -> Result<Vec<FieldName>, Error> {
        let Some(snapshot) = self.store.customer(customer)? else {
            return Ok(Vec::new());
        };
        // A restricted customer's data stays stored (Art. 18(1)(b), (c): restriction is what a
        // customer asks for instead of deletion).
        if snapshot.record.erased_at.is_some() || snapshot.record.restricted {
            return Ok(Vec::new());
        }
        let mut gone = Vec::new();
        for stored in self.store.fields(customer)? {
            let needed = purposes
                .iter()
                .filter(|p| p.field_names().any(|f| f == stored.field.as_str()))
                .any(|p| {
                    let retention = p.retention_period().unwrap_or_default();
                    let latest = snapshot
                        .consents
                        .iter()
                        .filter(|c| c.purpose.as_str() == p.id())
                        .max_by_key(|c| (c.given_at, c.id));
                    // An objection ends the records given before it (all of them, for direct
                    // marketing), as a withdrawal does.
                    let objected = snapshot
                        .objections
                        .iter()
                        .filter(|o| o.purpose.as_str() == p.id())
                        .map(|o| o.at)
                        .max();
                    let window_start = match latest {
                        None => stored.written_at,
                        Some(c) => {
                            let objection = objected.filter(|&o| p.is_direct_marketing() || c.given_at <= o);
                            let ended = [c.withdrawn_at, objection, c.expires_at.filter(|&e| e <= now)];
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
                gone.push(stored.field);
            }
        }
        Ok(gone)
    }

    /// Re-wraps every data key that is not under the current master key (configure the old
    /// one with [`previous_master_key`](crate::VaultBuilder::previous_master_key)), and the
    /// audit key with them: the audit chain continues under the same key and
    /// [`verify_audit`](Vault::verify_audit) verifies across the rotation. Field ciphertexts
    /// are not touched. Returns how many data keys were re-wrapped (the audit key is not
    /// counted).
    pub fn rotate_master_key(&self) -> Result<usize, Error> {
        self.rotate_audit_key()?;
        let mut rewrapped = 0;
        for customer in self.store.customer_ids()? {
            let Some(snapshot) = self.store.customer(customer)? else {
                continue;
            };
            for key in &snapshot.keys {
                let kek_id = WrappedKeyEnvelope::parse(&key.wrapped)?.kek_id;
                if kek_id == self.master.id() {
                    continue;
                }
                let old = self.previous.iter().find(|k| k.id() == kek_id).ok_or(Error::Crypto)?;
                let raw = old.unwrap(&self.namespace, customer, key.version, &key.wrapped)?;
                let wrapped = self.master.wrap(&self.namespace, customer, key.version, &raw)?;
                self.commit(
                    vec![Write::PutKey(crate::store::WrappedKey {
                        customer,
                        version: key.version,
                        wrapped,
                    })],
                    vec![Entry::new(AuditKind::KeyRotated, Some(customer)).detail(format!(
                        "key_version={},master_key={}",
                        key.version,
                        self.master.id()
                    ))],
                )?;
                rewrapped += 1;
            }
        }
        Ok(rewrapped)
    }

    /// Re-wraps the stored audit key under the current master key, if it is under another.
    fn rotate_audit_key(&self) -> Result<(), Error> {
        let Some(secret) = self.store.secret(journal::AUDIT_SECRET)? else {
            // A vault always has one once built, unless its log predates it (it then writes
            // nothing, and the commit below would be refused anyway).
            return Err(Error::Crypto);
        };
        if WrappedKeyEnvelope::parse(&secret.wrapped)?.kek_id == self.master.id() {
            return Ok(());
        }
        let raw = journal::unwrap_audit_key(&secret.wrapped, &self.master, &self.previous, &self.namespace)?;
        let wrapped = self.master.wrap_secret(&self.namespace, journal::AUDIT_SECRET, &raw)?;
        self.commit(
            vec![Write::ReplaceSecret(VaultSecret {
                name: journal::AUDIT_SECRET.to_owned(),
                wrapped,
            })],
            vec![Entry::new(AuditKind::KeyRotated, None).detail(format!("audit_key,master_key={}", self.master.id()))],
        )
    }
}
