//! Reaching customers: the audience of a purpose, the re-consent list and the change feed.
//!
//! The store proposes, the vault decides. A purpose's audience is read from the store's index
//! of current consent records a page at a time, and every candidate is confirmed against the
//! customer's authenticated state (the cached state, or the stored records checked against
//! their MACs and the audit log) by the same decision [`Vault::authorize`] makes. A row forged
//! into the index proposes a customer the check then refuses; a row hidden from it can only
//! leave a customer out. The change feed serves audit events, each checked against its MAC.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::cache::CustomerState;
use super::records::Anchor;
use super::{Refresh, Vault};
use crate::actor::Actor;
use crate::audit::{self, AuditBreak, AuditEvent, AuditKind, Entry};
use crate::consent::{self, decide};
use crate::error::Error;
use crate::ids::CustomerId;
use crate::integrity;
use crate::purpose::PurposeDef;
use crate::store::{LatestChange, StoreError};
use crate::vault::telemetry;

/// How many candidates [`Vault::audience`] and [`Vault::needs_reconsent`] read from the store
/// at a time: what a listing holds in memory, whatever the number of customers.
pub const AUDIENCE_PAGE: usize = 512;

/// The most events one call of [`Vault::changes_since`] returns; a larger `limit` is lowered
/// to it.
pub const MAX_CHANGES_PAGE: usize = 1000;

/// Which list is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    /// The customers `authorize` would let through now.
    Audience,
    /// The customers whose live record was given under an older notice version.
    Reconsent,
}

impl List {
    fn code(self) -> &'static str {
        match self {
            List::Audience => "audience",
            List::Reconsent => "needs_reconsent",
        }
    }
}

/// A listing in progress: a page of candidates from the store, confirmed one by one.
struct Listing<'v> {
    vault: &'v Vault,
    def: Arc<PurposeDef>,
    list: List,
    notice_versions: std::ops::RangeInclusive<u32>,
    /// The last candidate read from the store (the cursor of the next page).
    after: Option<CustomerId>,
    page: std::vec::IntoIter<CustomerId>,
    /// No page follows the current one.
    last_page: bool,
    /// Once a page could not be read, the listing ends.
    failed: bool,
}

impl Iterator for Listing<'_> {
    type Item = Result<CustomerId, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(id) = self.page.next() {
                match self.vault.reaches(id, &self.def, self.list) {
                    Ok(true) => return Some(Ok(id)),
                    Ok(false) => continue,
                    // This customer's records failed their check (or could not be read): the
                    // error is theirs, and the listing goes on with the next one.
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.last_page {
                return None;
            }
            match self.next_page() {
                Ok(()) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Listing<'_> {
    fn next_page(&mut self) -> Result<(), Error> {
        let page = self.vault.store.consent_candidates(
            &self.def.id,
            self.notice_versions.clone(),
            self.after,
            AUDIENCE_PAGE,
        )?;
        // A store that does not move forward could keep a listing going for ever.
        let mut last = self.after;
        for id in &page {
            if last.is_some_and(|l| *id <= l) {
                return Err(StoreError::Corrupt("audience candidates out of order".into()).into());
            }
            last = Some(*id);
        }
        self.last_page = page.len() < AUDIENCE_PAGE;
        self.after = last;
        self.page = page.into_iter();
        Ok(())
    }
}

impl Vault {
    /// The customers who may be reached for `purpose` now: exactly those for whom
    /// [`authorize`](Vault::authorize)`(customer, purpose)` would succeed at the time each is
    /// read: a record under the current notice version, unexpired, unwithdrawn, no objection,
    /// not restricted, not erased.
    ///
    /// Streamed: candidates are read from the store's index of current consent records,
    /// [`AUDIENCE_PAGE`] at a time (in customer id order), so a listing holds one page in
    /// memory whatever the number of customers. Each candidate is confirmed against the
    /// customer's authenticated state when the iterator reaches it, by the decision
    /// `authorize` makes (from the cache when the customer is cached, otherwise from the
    /// stored records, checked against their MACs and the audit log, without caching them or
    /// unwrapping a key): a withdrawal made during the listing leaves out the customers not
    /// reached yet. Nothing is decrypted; to write to a customer, `authorize` them and reveal
    /// what the purpose covers, as usual.
    ///
    /// **The store proposes, the vault decides**: a row forged into the store's index never
    /// puts a customer in the audience (their check fails, and the item for them is
    /// `Err(Error::Crypto)`; the listing goes on with the next customer); a row hidden from
    /// the index can only leave a customer out (which [`verify_audit`](Vault::verify_audit)
    /// and the customer's own operations then show as tampering).
    ///
    /// **Audit**: one [`AuditKind::AudienceListed`] event per call, naming the purpose (detail
    /// `audience`), written before anything is listed (if it cannot be written, the call
    /// fails). Listing a customer is not an access to their data, so no event per customer;
    /// the count is not recorded, as the listing is lazy (the host knows how far it read).
    ///
    /// Fails with [`Error::UnknownPurpose`] for a purpose that is not defined.
    ///
    /// ```
    /// use egard::{Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
    ///
    /// let vault = Vault::builder().master_key(MasterKey::from_bytes([1; 32])).store(MemoryStore::new()).build()?;
    /// vault.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))?;
    /// let alice = vault.create_customer()?;
    /// let bob = vault.create_customer()?;
    /// vault.give_consent(alice, "newsletter", Evidence::new("web-form"))?;
    /// vault.give_consent(bob, "newsletter", Evidence::new("web-form"))?;
    /// vault.withdraw_consent(bob, "newsletter")?;
    ///
    /// let reachable: Vec<_> = vault.audience("newsletter")?.collect::<Result<_, _>>()?;
    /// assert_eq!(reachable, vec![alice]);
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn audience(&self, purpose: &str) -> Result<impl Iterator<Item = Result<CustomerId, Error>> + '_, Error> {
        self.audience_as(&self.default_actor, purpose)
    }

    /// [`audience`](Vault::audience), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.audience", level = "info", skip_all, fields(actor = %actor, purpose = telemetry::name(purpose)), err(level = "info", Display)))]
    pub(crate) fn audience_as(
        &self,
        actor: &Actor,
        purpose: &str,
    ) -> Result<impl Iterator<Item = Result<CustomerId, Error>> + '_, Error> {
        let def = self.purpose_def(purpose)?;
        let required = def.purpose.required_notice_version();
        self.listing(actor, def, List::Audience, required..=u32::MAX)
    }

    /// The customers to ask again for `purpose`: those whose latest record for it is
    /// unwithdrawn and unexpired but was given under an older notice version than the
    /// purpose's current one (after a notice change), and who are not erased and did not
    /// object. Restricted customers are listed too (a restriction is temporary; asking does
    /// not process their data).
    ///
    /// Streamed and confirmed as [`audience`](Vault::audience) is, with the same guarantees
    /// against the store, and audited the same way (one [`AuditKind::AudienceListed`] event,
    /// detail `needs_reconsent`). Fails with [`Error::UnknownPurpose`] for a purpose that is
    /// not defined.
    pub fn needs_reconsent(
        &self,
        purpose: &str,
    ) -> Result<impl Iterator<Item = Result<CustomerId, Error>> + '_, Error> {
        self.needs_reconsent_as(&self.default_actor, purpose)
    }

    /// [`needs_reconsent`](Vault::needs_reconsent), recording `actor`.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.needs_reconsent", level = "info", skip_all, fields(actor = %actor, purpose = telemetry::name(purpose)), err(level = "info", Display)))]
    pub(crate) fn needs_reconsent_as(
        &self,
        actor: &Actor,
        purpose: &str,
    ) -> Result<impl Iterator<Item = Result<CustomerId, Error>> + '_, Error> {
        let def = self.purpose_def(purpose)?;
        let required = def.purpose.required_notice_version();
        // Under a notice version 0 nobody can be behind: an empty range (1..=0) lists nobody.
        let versions = match required.checked_sub(1) {
            Some(older) => 0..=older,
            None => std::ops::RangeInclusive::new(1, 0),
        };
        self.listing(actor, def, List::Reconsent, versions)
    }

    fn listing(
        &self,
        actor: &Actor,
        def: Arc<PurposeDef>,
        list: List,
        notice_versions: std::ops::RangeInclusive<u32>,
    ) -> Result<Listing<'_>, Error> {
        self.journal.record(
            self.store.as_ref(),
            vec![
                Entry::new(AuditKind::AudienceListed, None)
                    .purpose(&def.id)
                    .detail(list.code())
                    .actor(actor),
            ],
            self.recording_now(),
        )?;
        let empty = notice_versions.is_empty();
        Ok(Listing {
            vault: self,
            def,
            list,
            notice_versions,
            after: None,
            page: Vec::new().into_iter(),
            last_page: empty,
            failed: false,
        })
    }

    /// Whether customer `id` belongs to `list` of the purpose now, by their authenticated
    /// state: the cached one if cached (as `authorize` reads it), otherwise the stored records,
    /// fully checked (and not cached). A customer the store does not know is not listed.
    fn reaches(&self, id: CustomerId, def: &PurposeDef, list: List) -> Result<bool, Error> {
        let cached = self.cache.shard(id).get(&id).cloned();
        if let Some(entry) = cached {
            let mut state = entry.lock();
            if !state.evicted {
                let fresh = if state.erased {
                    Ok(())
                } else {
                    self.refresh(&entry, &mut state, Refresh::IfStale)
                };
                match fresh {
                    Ok(()) => return Ok(belongs(&state, def, list, self.now())),
                    // A new data key made elsewhere marked the entry evicted: it leaves the
                    // cache (as `authorize` drops it), and the stored state is read below.
                    Err(Error::Storage(StoreError::Stale)) => {
                        drop(state);
                        self.cache.remove_entry(&entry);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let Some(snapshot) = telemetry::store_call("customer", || self.store.customer(id))? else {
            return Ok(false);
        };
        let verified = self.verify_customer(id, snapshot, Anchor::Log)?;
        let now = self.now();
        Ok(belongs(&CustomerState::from_verified(&verified, now), def, list, now))
    }

    /// The change feed: at most `limit` (capped at [`MAX_CHANGES_PAGE`]) audit events after
    /// sequence number `seq`, in ascending order, of the kinds that
    /// [change something](AuditKind::is_change): consent given or withdrawn, objection,
    /// restriction and its lifting, field written, rectified or deleted, erasure, purpose
    /// defined, customer created, key rotation. Never an access event (grants, denials,
    /// expiries found, exports, listings).
    ///
    /// The sequence number is the cursor: keep the `seq` of the last event handled, durably,
    /// and ask for the events after it; start from 0. Events carry ids and names only, never
    /// personal data. Each event is checked against its MAC (chained to the event before it)
    /// before it is returned: an event forged or edited in the store fails the call with
    /// [`Error::AuditBroken`], never reaches the consumer. An event deleted from the store
    /// is missing from the feed, and breaks the chain that
    /// [`verify_audit`](Vault::verify_audit) checks.
    ///
    /// # Propagating withdrawals to an email provider
    ///
    /// ```
    /// use egard::{AuditKind, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
    ///
    /// # let vault = Vault::builder().master_key(MasterKey::from_bytes([1; 32])).store(MemoryStore::new()).build()?;
    /// # vault.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))?;
    /// # let alice = vault.create_customer()?;
    /// # vault.give_consent(alice, "newsletter", Evidence::new("web-form"))?;
    /// # vault.withdraw_consent(alice, "newsletter")?;
    /// let mut cursor: u64 = 0; // in real life: read from where the sync keeps it
    /// loop {
    ///     let page = vault.changes_since(cursor, 500)?;
    ///     let Some(last) = page.last() else { break };
    ///     let next = last.seq;
    ///     for event in &page {
    ///         let newsletter = event.purpose.as_ref().is_some_and(|p| p.as_str() == "newsletter");
    ///         match event.kind {
    ///             AuditKind::ConsentWithdrawn | AuditKind::Objected if newsletter => {
    ///                 // provider.unsubscribe(event.customer) -- idempotent on the provider's side
    ///             }
    ///             AuditKind::Restricted | AuditKind::Erased => {
    ///                 // provider.suppress(event.customer)
    ///             }
    ///             _ => {}
    ///         }
    ///     }
    ///     cursor = next; // persist it only after the page was handled: at least once
    /// }
    /// # assert!(cursor > 0);
    /// # Ok::<(), egard::Error>(())
    /// ```
    ///
    /// Handle each page, then persist the cursor: after a crash the page is handled again,
    /// so make the downstream calls idempotent. An event names the customer by id: the
    /// provider's list should be keyed by it (or the host maps it, through a pass, to the
    /// address it once sent).
    ///
    /// **After an archival** ([`archive_audit`](Vault::archive_audit)), the events up to
    /// [`audit_archived_through`](Vault::audit_archived_through) are in the host's segment
    /// files, not in the store: a cursor below it is served what the store keeps (the few
    /// rows kept below the archived point whose MAC the store can show, then every change
    /// after it). A consumer whose cursor is below the archived point has missed changes:
    /// compare it with `audit_archived_through()` and resynchronise from the current state
    /// (the [`audience`](Vault::audience)) instead of replaying.
    ///
    /// **Expiries are not events**: a consent stops opening data when its time comes, and
    /// nothing is written then. A consumer that mirrors the audience must either re-read
    /// [`audience`](Vault::audience) before each send (the simple and exact way), or
    /// compute each record's end from its expiry ([`Vault::consents`]) and drop the customer
    /// at that time. A notice change (a `PurposeDefined` event with a higher notice version)
    /// likewise drops everyone whose record is older at once: re-read the audience, and ask
    /// [`needs_reconsent`](Vault::needs_reconsent) whom to ask again.
    #[cfg_attr(feature = "tracing", tracing::instrument(name = "egard.changes_since", level = "debug", skip_all, fields(seq = seq, limit = limit), err(level = "info", Display)))]
    pub fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<AuditEvent>, Error> {
        let limit = limit.min(MAX_CHANGES_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.journal.key().ok_or(Error::Crypto)?;
        let page = self.store.audit_changes(seq, limit)?;
        if page.len() > limit {
            return Err(StoreError::Corrupt("the store returned more change events than asked".into()).into());
        }
        let mut base = None;
        let mut last = seq;
        let mut out = Vec::with_capacity(page.len());
        for LatestChange { event, prev_mac } in page {
            if event.seq <= last {
                return Err(StoreError::Corrupt("change events out of order".into()).into());
            }
            if !event.kind.is_change() {
                return Err(StoreError::Corrupt("the store returned an access event as a change".into()).into());
            }
            let prev = match (event.seq, prev_mac) {
                (1, _) => [0; 32],
                (_, Some(prev)) => prev,
                // A row kept at or below the audit base whose predecessor was archived: its
                // MAC is covered by the base's digest, not by the chain here; it is in the
                // host's segments, not served from the store. Checked against the digest's
                // rows, so that deleting a kept row cannot hide the event after it.
                (s, None) if self.below_audit_base(s, &mut base)? => {
                    self.check_archived_predecessor(key, s, &base)?;
                    continue;
                }
                (s, None) => {
                    return Err(Error::AuditBroken {
                        seq: s.saturating_sub(1),
                        problem: AuditBreak::SequenceGap,
                    });
                }
            };
            if !integrity::macs_equal(&audit::chain_mac(key, &prev, &event), &event.mac) {
                return Err(Error::AuditBroken {
                    seq: event.seq,
                    problem: AuditBreak::MacMismatch,
                });
            }
            last = event.seq;
            out.push(event);
        }
        Ok(out)
    }
}

/// Whether a customer in `state` belongs to `list` of the purpose at `now`.
fn belongs(state: &CustomerState, def: &PurposeDef, list: List, now: DateTime<Utc>) -> bool {
    if state.erased {
        return false;
    }
    let record = state.current.get(&def.id);
    match list {
        // INVARIANT: the very decision `authorize` makes.
        List::Audience => decide(record, def, state.standing(&def.id), None, now).is_ok(),
        List::Reconsent => {
            let Some(r) = record else {
                return false;
            };
            let objected = state
                .objections
                .get(&def.id)
                .is_some_and(|at| def.purpose.is_direct_marketing() || r.given_at <= *at);
            r.withdrawn_at.is_none()
                && r.superseded_by.is_none()
                && !objected
                && r.basis == def.purpose.basis()
                && consent::expiry(r, &def.purpose).is_none_or(|t| now < t)
                && r.notice_version < def.purpose.required_notice_version()
        }
    }
}
