//! The store conformance suite: one set of checks of the [`Store`] contract that every
//! backend must pass, the built-in ones and yours.
//!
//! Enable the `conformance` feature in your dev-dependencies and call [`run_all`] from a
//! test, with a function that makes a fresh, empty store for each check:
//!
//! ```
//! # #[cfg(feature = "conformance")] {
//! use egard::MemoryStore;
//!
//! egard::store::conformance::run_all(MemoryStore::new);
//! # }
//! ```
//!
//! Each check is also a public function of its own, taking an empty store, so a failing
//! one can be run alone. A check that fails panics with a message naming the broken rule:
//! this module is test code.
//!
//! What is checked:
//! - [`Store::apply`] is all or nothing: a batch that fails (a conflicting
//!   [`Write::InsertCustomer`], a duplicate [`Write::AppendAudit`] sequence number, a write
//!   naming a missing customer), wherever the failing write sits in the batch, leaves nothing
//!   of the batch visible;
//! - writes naming a customer that was never inserted fail with
//!   [`StoreError::MissingCustomer`] (but `AppendAudit` and `PutPurpose` need no customer),
//!   and after [`Write::EraseCustomer`] so do `PutKey` and `PutField`, while consents,
//!   objections, record updates, field deletions and a repeated erasure are still accepted;
//! - conditional writes: [`Write::UpdateCustomer`] and [`Write::PutPurpose`] apply only at the
//!   revision they name (as left by earlier writes of the batch), otherwise
//!   [`StoreError::Stale`] and nothing of the batch; an update never clears `erased_at`;
//! - upserts: `PutKey` by (customer, version), `PutField` by (customer, field), `PutConsent`
//!   by id; `DeleteField`; objections are all kept;
//! - every MAC, revision and field version reads back exactly; a snapshot lists the stored
//!   fields' names, versions and times; a snapshot and the purposes come with their latest
//!   change (the highest event carrying a state that names the customer, or the purpose and
//!   no customer) and the MAC of the event before it;
//! - `EraseCustomer` deletes keys and fields, keeps consents, objections and audit events,
//!   and sets `erased_at` once (a second erasure does not move it);
//! - every read: purposes, customer snapshots, fields, customer ids, the audit head, audit
//!   ranges (ascending, from a sequence number, limited) and a customer's audit events;
//!   reads of missing things are `Ok(None)` or empty;
//! - every field of every record round-trips exactly, timestamps at microsecond precision
//!   (the vault truncates to microseconds before it stores a time) from year 1 to 9999,
//!   binary envelopes of any content and size, audit sequence numbers up to `i64::MAX`
//!   (what a signed 64-bit column holds), reads from any `u64` sequence number;
//! - concurrent writers of the same audit sequence number: exactly one wins, the others get
//!   [`StoreError::Conflict`];
//! - [`Store::consent_owner`] names the customer holding a consent record (renewed,
//!   withdrawn and erased customers' records included), `None` for an unknown id;
//! - vault secrets: [`Write::InsertSecret`] of a name already stored (or earlier in the batch)
//!   is a [`StoreError::Conflict`], [`Write::ReplaceSecret`] upserts, secrets read back
//!   exactly, take part in a batch's atomicity, and of concurrent inserters of one name
//!   exactly one wins;
//! - [`Store::consent_candidates`] proposes every customer, not erased, with a current
//!   (neither withdrawn nor superseded) record for the purpose under a notice version in the
//!   range, each once, in ascending id order, after the cursor, at most the limit, so that
//!   paging through finds them all (it may propose more: the vault confirms each);
//! - [`Store::audit_changes`] returns exactly the change events after a sequence number,
//!   ascending, limited, each with the MAC of the event before it (`None` where that event is
//!   missing).
//! - lookups: [`Write::IndexField`] sets, moves and clears a field's token, which the snapshot
//!   lists and [`Store::find_indexed`] finds; a token another customer's field holds is a
//!   [`StoreError::Duplicate`] and nothing of the batch (also when the other holder was
//!   indexed earlier in the batch), unless that field was deleted or its customer erased
//!   (earlier in the batch too); rewriting a field keeps its token, deleting it or erasing the
//!   customer frees it; definitions ([`Write::PutLookup`]) insert by field (a second one on
//!   the field, stored or in the batch, is a [`StoreError::Conflict`]) and read back
//!   exactly.

use std::collections::HashSet;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{
    Authenticated, CustomerRecord, CustomerSnapshot, FieldVersion, LatestChange, Objection, RecordMac, Store,
    StoreError, StoredField, StoredLookup, StoredPurpose, VaultSecret, WrappedKey, Write,
};
use crate::actor::Actor;
use crate::audit::{AuditAnchor, AuditEvent, AuditKind};
use crate::consent::{Consent, Evidence};
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};
use crate::purpose::{LawfulBasis, Purpose};

/// A named check.
type Check<S> = (&'static str, fn(&S));

/// Runs every check, each on a fresh store made by `make`.
///
/// Panics, naming the check and the broken rule, at the first failure.
pub fn run_all<S: Store>(make: impl Fn() -> S) {
    let checks: &[Check<S>] = &[
        ("empty_store_reads", empty_store_reads::<S>),
        ("customer_round_trip", customer_round_trip::<S>),
        ("insert_customer_conflicts", insert_customer_conflicts::<S>),
        ("missing_customer_is_refused", missing_customer_is_refused::<S>),
        (
            "apply_is_atomic_on_conflicting_insert",
            apply_is_atomic_on_conflicting_insert::<S>,
        ),
        (
            "apply_is_atomic_on_duplicate_audit_seq",
            apply_is_atomic_on_duplicate_audit_seq::<S>,
        ),
        (
            "apply_is_atomic_on_missing_customer",
            apply_is_atomic_on_missing_customer::<S>,
        ),
        ("batch_sees_its_own_insert", batch_sees_its_own_insert::<S>),
        ("put_key_upserts_by_version", put_key_upserts_by_version::<S>),
        ("delete_key", delete_key::<S>),
        ("put_field_upserts_by_name", put_field_upserts_by_name::<S>),
        ("delete_field", delete_field::<S>),
        ("put_consent_upserts_by_id", put_consent_upserts_by_id::<S>),
        (
            "consent_owner_names_the_customer",
            consent_owner_names_the_customer::<S>,
        ),
        ("objections_are_kept", objections_are_kept::<S>),
        ("update_customer_is_conditional", update_customer_is_conditional::<S>),
        ("put_purpose_is_conditional", put_purpose_is_conditional::<S>),
        (
            "latest_changes_come_with_the_state",
            latest_changes_come_with_the_state::<S>,
        ),
        ("field_versions_in_the_snapshot", field_versions_in_the_snapshot::<S>),
        ("erase_customer", erase_customer::<S>),
        ("writes_after_erasure", writes_after_erasure::<S>),
        ("purposes_round_trip", purposes_round_trip::<S>),
        ("customer_ids_lists_everyone", customer_ids_lists_everyone::<S>),
        ("audit_log_reads", audit_log_reads::<S>),
        ("audit_events_round_trip", audit_events_round_trip::<S>),
        (
            "audit_trail_serves_a_customers_events",
            audit_trail_serves_a_customers_events::<S>,
        ),
        ("records_round_trip_exactly", records_round_trip_exactly::<S>),
        (
            "concurrent_audit_appends_conflict",
            concurrent_audit_appends_conflict::<S>,
        ),
        (
            "apply_chained_links_onto_the_head",
            apply_chained_links_onto_the_head::<S>,
        ),
        ("apply_chained_is_atomic", apply_chained_is_atomic::<S>),
        (
            "concurrent_chained_appends_keep_one_chain",
            concurrent_chained_appends_keep_one_chain::<S>,
        ),
        ("vault_secrets", vault_secrets::<S>),
        (
            "vault_secrets_are_atomic_with_the_batch",
            vault_secrets_are_atomic_with_the_batch::<S>,
        ),
        (
            "concurrent_secret_inserts_conflict",
            concurrent_secret_inserts_conflict::<S>,
        ),
        (
            "consent_candidates_propose_the_current_records",
            consent_candidates_propose_the_current_records::<S>,
        ),
        (
            "audit_changes_serve_the_change_events",
            audit_changes_serve_the_change_events::<S>,
        ),
        ("lookup_index", lookup_index::<S>),
        ("lookup_index_within_a_batch", lookup_index_within_a_batch::<S>),
        ("lookup_definitions", lookup_definitions::<S>),
        (
            "prune_audit_keeps_what_it_is_told",
            prune_audit_keeps_what_it_is_told::<S>,
        ),
        (
            "prune_audit_is_atomic_with_the_batch",
            prune_audit_is_atomic_with_the_batch::<S>,
        ),
        (
            "customer_revision_matches_the_record",
            customer_revision_matches_the_record::<S>,
        ),
    ];
    for (name, check) in checks {
        let store = make();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&store)));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("store conformance check `{name}` failed: {msg}");
        }
    }
}

// ----- fixtures -----

/// A time with microseconds, as the vault stores them.
fn t(offset_micros: i64) -> DateTime<Utc> {
    let base = Utc.timestamp_micros(1_767_225_600_123_456).single().unwrap_or_default();
    base + Duration::microseconds(offset_micros)
}

fn customer_record(id: CustomerId) -> CustomerRecord {
    CustomerRecord {
        id,
        created_at: t(0),
        restricted: false,
        erased_at: None,
        rev: 1,
        key_uses: 0,
        mac: mac_of(&(id, 1u64)),
    }
}

/// A stand-in for the MAC the vault computes: any 32 bytes that depend on the record, so
/// that a store handing back another record's MAC is caught.
fn mac_of<T: serde::Serialize>(value: &T) -> RecordMac {
    let json = serde_json::to_vec(value).unwrap_or_else(|_| panic!("fixture records serialize"));
    let digest = ring::digest::digest(&ring::digest::SHA256, &json);
    let mut mac = [0u8; 32];
    mac.copy_from_slice(digest.as_ref());
    mac
}

/// `record` at revision `rev`, replacing revision `expected_rev`.
fn update(record: &CustomerRecord, rev: u64, expected_rev: u64) -> Write {
    let mut record = record.clone();
    record.rev = rev;
    record.mac = mac_of(&(record.id, rev, record.restricted, record.erased_at));
    Write::UpdateCustomer { record, expected_rev }
}

/// A restriction of a customer still at revision 1.
fn restrict(id: CustomerId) -> Write {
    let record = CustomerRecord {
        restricted: true,
        ..customer_record(id)
    };
    update(&record, 2, 1)
}

fn authenticated<T: serde::Serialize>(record: T) -> Authenticated<T> {
    let mac = mac_of(&record);
    Authenticated { record, mac }
}

fn put_consent(c: Consent) -> Write {
    Write::PutConsent(authenticated(c))
}

fn put_objection(o: Objection) -> Write {
    Write::PutObjection(authenticated(o))
}

fn stored_purpose(p: Purpose, rev: u64) -> StoredPurpose {
    let mac = mac_of(&(&p, rev));
    StoredPurpose { purpose: p, rev, mac }
}

fn put_purpose(p: Purpose, rev: u64, expected_rev: Option<u64>) -> Write {
    Write::PutPurpose {
        stored: stored_purpose(p, rev),
        expected_rev,
    }
}

/// The records of a list read back, each checked to come with its own MAC.
fn records<T: serde::Serialize + Clone>(list: &[Authenticated<T>], what: &str) -> Vec<T> {
    list.iter()
        .map(|a| {
            assert_eq!(a.mac, mac_of(&a.record), "{what}: a record came back with another MAC");
            a.record.clone()
        })
        .collect()
}

/// The purposes read back.
fn purposes_of(store: &impl Store, what: &str) -> Vec<Purpose> {
    get(store.purposes(), what)
        .into_iter()
        .map(|p| p.stored.purpose)
        .collect()
}

fn purpose_id(s: &str) -> PurposeId {
    PurposeId::new(s).unwrap_or_else(|_| panic!("fixture purpose id `{s}` is invalid"))
}

fn actor(s: &str) -> Actor {
    Actor::new(s).unwrap_or_else(|_| panic!("{s:?} is an actor"))
}

fn field_name(s: &str) -> FieldName {
    FieldName::new(s).unwrap_or_else(|_| panic!("fixture field name `{s}` is invalid"))
}

fn key(customer: CustomerId, version: u32, fill: u8) -> WrappedKey {
    WrappedKey {
        customer,
        version,
        wrapped: vec![fill; 60],
    }
}

fn put_field(customer: CustomerId, field: &str, envelope: Vec<u8>, at: DateTime<Utc>) -> Write {
    put_field_at(customer, field, 1, envelope, at)
}

fn put_field_at(customer: CustomerId, field: &str, version: u64, envelope: Vec<u8>, at: DateTime<Utc>) -> Write {
    Write::PutField {
        customer,
        field: field_name(field),
        version,
        envelope,
        at,
    }
}

fn consent(customer: CustomerId, purpose: &str) -> Consent {
    Consent {
        id: ConsentId::new(),
        customer,
        purpose: purpose_id(purpose),
        basis: LawfulBasis::Consent,
        notice_version: 1,
        given_at: t(10),
        expires_at: None,
        withdrawn_at: None,
        superseded_by: None,
        evidence: Evidence::new("web-form"),
        sealed_choices: None,
    }
}

fn event(seq: u64, customer: Option<CustomerId>) -> AuditEvent {
    let mut mac = [0u8; 32];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
    AuditEvent {
        seq,
        at: t((seq % 1_000_000_007) as i64),
        kind: AuditKind::AccessGranted,
        customer,
        purpose: None,
        field: None,
        detail: String::new(),
        state: None,
        actor: None,
        mac,
    }
}

fn ok(store: &impl Store, batch: &[Write], what: &str) {
    if let Err(e) = store.apply(batch) {
        panic!("{what}: apply failed with {e:?}");
    }
}

fn refused(store: &impl Store, batch: &[Write], expected: StoreError, what: &str) {
    match store.apply(batch) {
        Ok(()) => panic!("{what}: apply succeeded, expected {expected:?}"),
        Err(e) => assert_eq!(e, expected, "{what}: wrong error"),
    }
}

fn snapshot(store: &impl Store, id: CustomerId, what: &str) -> CustomerSnapshot {
    match store.customer(id) {
        Ok(Some(s)) => s,
        Ok(None) => panic!("{what}: customer not found"),
        Err(e) => panic!("{what}: customer() failed with {e:?}"),
    }
}

fn get<T>(r: Result<T, StoreError>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: read failed with {e:?}"))
}

fn new_customer(store: &impl Store) -> CustomerId {
    let id = CustomerId::new();
    ok(
        store,
        &[
            Write::InsertCustomer(customer_record(id)),
            Write::PutKey(key(id, 1, 0xA1)),
        ],
        "inserting a fixture customer",
    );
    id
}

fn sorted_keys(mut keys: Vec<WrappedKey>) -> Vec<WrappedKey> {
    keys.sort_by_key(|k| k.version);
    keys
}

fn sorted_fields(mut fields: Vec<StoredField>) -> Vec<StoredField> {
    fields.sort_by(|a, b| a.field.cmp(&b.field));
    fields
}

fn sorted_consents(list: &[Authenticated<Consent>], what: &str) -> Vec<Consent> {
    let mut consents = records(list, what);
    consents.sort_by_key(|c| c.id);
    consents
}

fn sorted(mut consents: Vec<Consent>) -> Vec<Consent> {
    consents.sort_by_key(|c| c.id);
    consents
}

fn sorted_objections(mut objections: Vec<Objection>) -> Vec<Objection> {
    objections.sort_by(|a, b| (&a.purpose, a.at).cmp(&(&b.purpose, b.at)));
    objections
}

fn sorted_versions(mut fields: Vec<FieldVersion>) -> Vec<FieldVersion> {
    fields.sort_by(|a, b| a.field.cmp(&b.field));
    fields
}

/// Asserts that the store holds nothing at all.
fn assert_empty(store: &impl Store, what: &str) {
    assert!(get(store.purposes(), what).is_empty(), "{what}: purposes visible");
    assert!(get(store.customer_ids(), what).is_empty(), "{what}: customers visible");
    assert_eq!(get(store.audit_head(), what), None, "{what}: audit events visible");
    assert!(
        get(store.audit_range(0, 100), what).is_empty(),
        "{what}: audit events visible"
    );
}

fn secret(name: &str, fill: u8) -> VaultSecret {
    VaultSecret {
        name: name.to_owned(),
        // Every byte value, as a wrapped key holds.
        wrapped: (0..=255u8).map(|b| b ^ fill).chain([0, fill]).collect(),
    }
}

// ----- the checks -----

/// Reads of missing things are `Ok(None)` or empty, not errors.
pub fn empty_store_reads<S: Store>(store: &S) {
    assert_empty(store, "empty store");
    assert_eq!(get(store.secret("audit"), "secret"), None, "unknown secret");
    let nobody = CustomerId::new();
    assert_eq!(get(store.customer(nobody), "customer"), None, "unknown customer");
    assert_eq!(
        get(store.field(nobody, &field_name("email")), "field"),
        None,
        "field of an unknown customer"
    );
    assert!(
        get(store.fields(nobody), "fields").is_empty(),
        "fields of an unknown customer"
    );
    assert!(
        get(store.audit_for(nobody), "audit_for").is_empty(),
        "audit of an unknown customer"
    );
    assert!(get(store.audit_range(1, 0), "audit_range").is_empty(), "limit 0");
    assert!(
        get(store.audit_range(u64::MAX, 10), "audit_range").is_empty(),
        "from u64::MAX"
    );
}

/// A customer with a key reads back as inserted, without fields in its snapshot.
pub fn customer_round_trip<S: Store>(store: &S) {
    let id = CustomerId::new();
    let record = CustomerRecord {
        id,
        created_at: t(42),
        restricted: true,
        erased_at: None,
        rev: 1,
        key_uses: 0,
        mac: [0x42; 32],
    };
    ok(
        store,
        &[
            Write::InsertCustomer(record.clone()),
            Write::PutKey(key(id, 1, 7)),
            put_field(id, "email", vec![1, 2, 3], t(50)),
        ],
        "insert",
    );
    let snap = snapshot(store, id, "after insert");
    assert_eq!(snap.record, record, "customer record round trip");
    assert_eq!(snap.keys, vec![key(id, 1, 7)], "keys in the snapshot");
    assert!(snap.consents.is_empty(), "no consents yet");
    assert!(snap.objections.is_empty(), "no objections yet");
    let field = get(store.field(id, &field_name("email")), "field");
    assert_eq!(
        field,
        Some(StoredField {
            field: field_name("email"),
            version: 1,
            envelope: vec![1, 2, 3],
            written_at: t(50),
        }),
        "field round trip"
    );
    assert_eq!(
        get(store.field(id, &field_name("phone")), "field"),
        None,
        "absent field"
    );
    let other = CustomerId::new();
    assert_eq!(get(store.customer(other), "customer"), None, "another customer");
}

/// Inserting an existing customer id is a conflict and changes nothing.
pub fn insert_customer_conflicts<S: Store>(store: &S) {
    let id = CustomerId::new();
    ok(store, &[Write::InsertCustomer(customer_record(id))], "first insert");
    let mut again = customer_record(id);
    again.restricted = true;
    again.created_at = t(999);
    refused(
        store,
        &[Write::InsertCustomer(again)],
        StoreError::Conflict,
        "second insert of the same id",
    );
    assert_eq!(
        snapshot(store, id, "after conflict").record,
        customer_record(id),
        "a refused insert must not replace the record"
    );
    let twin = CustomerId::new();
    refused(
        store,
        &[
            Write::InsertCustomer(customer_record(twin)),
            Write::InsertCustomer(customer_record(twin)),
        ],
        StoreError::Conflict,
        "the same id inserted twice in one batch",
    );
    assert_eq!(get(store.customer(twin), "customer"), None, "half of a refused batch");
}

/// Writes naming a customer never inserted fail with `MissingCustomer`; audit events and
/// purposes need no customer.
pub fn missing_customer_is_refused<S: Store>(store: &S) {
    let ghost = CustomerId::new();
    let writes = [
        ("PutKey", Write::PutKey(key(ghost, 1, 1))),
        ("UpdateCustomer", restrict(ghost)),
        ("PutField", put_field(ghost, "email", vec![1], t(0))),
        (
            "DeleteField",
            Write::DeleteField {
                customer: ghost,
                field: field_name("email"),
            },
        ),
        ("PutConsent", put_consent(consent(ghost, "news"))),
        (
            "PutObjection",
            put_objection(Objection {
                customer: ghost,
                purpose: purpose_id("news"),
                at: t(0),
            }),
        ),
        (
            "EraseCustomer",
            Write::EraseCustomer {
                customer: ghost,
                at: t(0),
            },
        ),
    ];
    for (name, w) in writes {
        refused(
            store,
            std::slice::from_ref(&w),
            StoreError::MissingCustomer,
            &format!("{name} for a customer never inserted"),
        );
    }
    assert_eq!(get(store.customer(ghost), "customer"), None, "ghost customer appeared");
    ok(
        store,
        &[
            Write::AppendAudit(event(1, Some(ghost))),
            put_purpose(Purpose::new("news", LawfulBasis::Consent).fields(["email"]), 1, None),
        ],
        "AppendAudit naming an unknown customer, and PutPurpose",
    );
    assert_eq!(get(store.audit_for(ghost), "audit_for").len(), 1, "audit of the ghost");
    assert_eq!(get(store.purposes(), "purposes").len(), 1, "purpose stored");
}

/// A batch with a conflicting `InsertCustomer` (anywhere in it) leaves nothing visible.
pub fn apply_is_atomic_on_conflicting_insert<S: Store>(store: &S) {
    let existing = CustomerId::new();
    ok(store, &[Write::InsertCustomer(customer_record(existing))], "setup");
    let fresh = CustomerId::new();
    let conflicting = Write::InsertCustomer(customer_record(existing));
    let body = vec![
        put_purpose(Purpose::new("news", LawfulBasis::Consent).fields(["email"]), 1, None),
        Write::InsertCustomer(customer_record(fresh)),
        Write::PutKey(key(fresh, 1, 3)),
        put_field(fresh, "email", vec![9; 40], t(1)),
        put_consent(consent(fresh, "news")),
        put_consent(consent(existing, "news")),
        restrict(existing),
        put_field(existing, "email", vec![8; 40], t(1)),
        Write::AppendAudit(event(1, Some(fresh))),
    ];
    for position in [0, body.len() / 2, body.len()] {
        let mut batch = body.clone();
        batch.insert(position, conflicting.clone());
        refused(
            store,
            &batch,
            StoreError::Conflict,
            &format!("batch with a conflicting insert at position {position}"),
        );
        let what = format!("after a refused batch (conflicting insert at {position})");
        assert!(get(store.purposes(), &what).is_empty(), "{what}: purpose visible");
        assert_eq!(get(store.customer(fresh), &what), None, "{what}: new customer visible");
        assert_eq!(get(store.audit_head(), &what), None, "{what}: audit event visible");
        let snap = snapshot(store, existing, &what);
        assert_eq!(
            snap.record,
            customer_record(existing),
            "{what}: existing record changed"
        );
        assert!(snap.consents.is_empty(), "{what}: consent visible");
        assert!(get(store.fields(existing), &what).is_empty(), "{what}: field visible");
        assert_eq!(get(store.customer_ids(), &what), vec![existing], "{what}: customer ids");
    }
}

/// A batch appending an audit sequence number that exists (or twice in the batch) leaves
/// nothing visible.
pub fn apply_is_atomic_on_duplicate_audit_seq<S: Store>(store: &S) {
    let id = new_customer(store);
    let first = event(1, Some(id));
    ok(store, &[Write::AppendAudit(first.clone())], "setup");
    let c = consent(id, "news");
    let changes = vec![
        put_consent(c),
        put_field(id, "email", vec![5; 30], t(3)),
        Write::PutKey(key(id, 2, 9)),
        put_objection(Objection {
            customer: id,
            purpose: purpose_id("news"),
            at: t(4),
        }),
        Write::AppendAudit(event(2, Some(id))),
    ];
    let mut dup_existing = changes.clone();
    dup_existing.push(Write::AppendAudit(event(1, None)));
    let mut dup_in_batch = changes.clone();
    dup_in_batch.push(Write::AppendAudit(event(2, None)));
    let mut dup_first = vec![Write::AppendAudit(event(1, None))];
    dup_first.extend(changes);
    for (what, batch) in [
        ("duplicate of a stored seq, last in the batch", dup_existing),
        ("a seq twice in one batch", dup_in_batch),
        ("duplicate of a stored seq, first in the batch", dup_first),
    ] {
        refused(store, &batch, StoreError::Conflict, what);
        let snap = snapshot(store, id, what);
        assert!(snap.consents.is_empty(), "{what}: consent visible");
        assert!(snap.objections.is_empty(), "{what}: objection visible");
        assert_eq!(snap.keys, vec![key(id, 1, 0xA1)], "{what}: key visible");
        assert!(get(store.fields(id), what).is_empty(), "{what}: field visible");
        assert_eq!(
            get(store.audit_head(), what),
            Some(first.clone()),
            "{what}: audit head moved or the stored event changed"
        );
        assert_eq!(get(store.audit_range(0, 10), what).len(), 1, "{what}: audit events");
    }
}

/// A batch naming a missing customer (anywhere in it) leaves nothing visible.
pub fn apply_is_atomic_on_missing_customer<S: Store>(store: &S) {
    let id = new_customer(store);
    let ghost = CustomerId::new();
    let fresh = CustomerId::new();
    let body = vec![
        Write::InsertCustomer(customer_record(fresh)),
        put_consent(consent(id, "news")),
        put_field(id, "email", vec![1; 20], t(1)),
        Write::AppendAudit(event(1, Some(id))),
        put_purpose(Purpose::new("news", LawfulBasis::Consent).fields(["email"]), 1, None),
    ];
    for position in [0, 2, body.len()] {
        let mut batch = body.clone();
        batch.insert(position, Write::PutKey(key(ghost, 1, 1)));
        let what = format!("batch naming a missing customer at position {position}");
        refused(store, &batch, StoreError::MissingCustomer, &what);
        assert_eq!(
            get(store.customer(fresh), &what),
            None,
            "{what}: inserted customer visible"
        );
        assert!(
            snapshot(store, id, &what).consents.is_empty(),
            "{what}: consent visible"
        );
        assert!(get(store.fields(id), &what).is_empty(), "{what}: field visible");
        assert_eq!(get(store.audit_head(), &what), None, "{what}: audit visible");
        assert!(get(store.purposes(), &what).is_empty(), "{what}: purpose visible");
    }
}

/// Later writes of a batch may name a customer inserted earlier in the same batch.
pub fn batch_sees_its_own_insert<S: Store>(store: &S) {
    let id = CustomerId::new();
    let c = consent(id, "news");
    ok(
        store,
        &[
            Write::InsertCustomer(customer_record(id)),
            Write::PutKey(key(id, 1, 2)),
            put_field(id, "email", vec![3; 10], t(2)),
            put_consent(c.clone()),
            restrict(id),
            Write::AppendAudit(event(1, Some(id))),
        ],
        "insert and use a customer in one batch",
    );
    let snap = snapshot(store, id, "after the batch");
    assert!(snap.record.restricted, "restriction in the same batch");
    assert_eq!(snap.keys, vec![key(id, 1, 2)], "key in the same batch");
    assert_eq!(
        records(&snap.consents, "consents"),
        vec![c],
        "consent in the same batch"
    );
    assert_eq!(get(store.fields(id), "fields").len(), 1, "field in the same batch");
}

/// `PutKey` replaces the key of the same version and adds other versions.
pub fn put_key_upserts_by_version<S: Store>(store: &S) {
    let id = new_customer(store);
    let other = new_customer(store);
    ok(store, &[Write::PutKey(key(id, 1, 0xB2))], "replace version 1");
    ok(store, &[Write::PutKey(key(id, 2, 0xC3))], "add version 2");
    assert_eq!(
        sorted_keys(snapshot(store, id, "keys").keys),
        vec![key(id, 1, 0xB2), key(id, 2, 0xC3)],
        "keys upsert by (customer, version)"
    );
    assert_eq!(
        snapshot(store, other, "other").keys,
        vec![key(other, 1, 0xA1)],
        "another customer's key changed"
    );
    let big = WrappedKey {
        customer: id,
        version: u32::MAX,
        wrapped: (0..=255u8).cycle().take(1000).collect(),
    };
    ok(store, &[Write::PutKey(big.clone())], "version u32::MAX");
    assert!(
        snapshot(store, id, "keys").keys.contains(&big),
        "key of version u32::MAX with binary content"
    );
}

/// `DeleteKey` deletes one version of one customer's key, and nothing else; a missing one is
/// no error. In a batch with the key that replaces it, both or neither happen.
pub fn delete_key<S: Store>(store: &S) {
    let id = new_customer(store);
    let other = new_customer(store);
    ok(store, &[Write::PutKey(key(id, 2, 0xC3))], "add version 2");
    ok(
        store,
        &[Write::DeleteKey {
            customer: id,
            version: 1,
        }],
        "delete version 1",
    );
    assert_eq!(
        snapshot(store, id, "keys").keys,
        vec![key(id, 2, 0xC3)],
        "version 2 stays"
    );
    assert_eq!(
        snapshot(store, other, "other").keys,
        vec![key(other, 1, 0xA1)],
        "another customer's key of the same version stays"
    );
    ok(
        store,
        &[Write::DeleteKey {
            customer: id,
            version: 9,
        }],
        "delete a version that is not there",
    );
    refused(
        store,
        &[
            Write::PutKey(key(id, 3, 0xD4)),
            Write::DeleteKey {
                customer: id,
                version: 2,
            },
            Write::AppendAudit(event(1, Some(id))),
            Write::AppendAudit(event(1, Some(id))),
        ],
        StoreError::Conflict,
        "a rotation in a batch that fails",
    );
    assert_eq!(
        snapshot(store, id, "after a failed batch").keys,
        vec![key(id, 2, 0xC3)],
        "a failed batch rotated the key half-way"
    );
}

/// `PutField` replaces the envelope and time of the same field, and leaves others alone.
pub fn put_field_upserts_by_name<S: Store>(store: &S) {
    let id = new_customer(store);
    let other = new_customer(store);
    ok(
        store,
        &[
            put_field(id, "email", vec![1; 10], t(1)),
            put_field(id, "phone", vec![2; 10], t(2)),
            put_field(other, "email", vec![3; 10], t(3)),
        ],
        "first writes",
    );
    ok(store, &[put_field(id, "email", vec![4; 12], t(4))], "rewrite");
    let fields = sorted_fields(get(store.fields(id), "fields"));
    assert_eq!(
        fields,
        vec![
            StoredField {
                field: field_name("email"),
                version: 1,
                envelope: vec![4; 12],
                written_at: t(4),
            },
            StoredField {
                field: field_name("phone"),
                version: 1,
                envelope: vec![2; 10],
                written_at: t(2),
            },
        ],
        "fields upsert by (customer, field)"
    );
    assert_eq!(
        get(store.field(other, &field_name("email")), "field").map(|f| f.envelope),
        Some(vec![3; 10]),
        "another customer's field changed"
    );
}

/// `DeleteField` removes one field, and deleting an absent field is fine.
pub fn delete_field<S: Store>(store: &S) {
    let id = new_customer(store);
    ok(
        store,
        &[
            put_field(id, "email", vec![1; 10], t(1)),
            put_field(id, "phone", vec![2; 10], t(2)),
        ],
        "writes",
    );
    let email = field_name("email");
    ok(
        store,
        &[Write::DeleteField {
            customer: id,
            field: email.clone(),
        }],
        "delete",
    );
    assert_eq!(get(store.field(id, &email), "field"), None, "deleted field still there");
    let left: Vec<FieldName> = get(store.fields(id), "fields").into_iter().map(|f| f.field).collect();
    assert_eq!(left, vec![field_name("phone")], "other field");
    ok(
        store,
        &[Write::DeleteField {
            customer: id,
            field: email.clone(),
        }],
        "deleting an absent field",
    );
    ok(store, &[put_field(id, "email", vec![7], t(9))], "write after delete");
    assert_eq!(
        get(store.field(id, &email), "field").map(|f| f.envelope),
        Some(vec![7]),
        "field written again after deletion"
    );
}

/// `PutConsent` adds a record, and replaces the record with the same id; history is kept.
pub fn put_consent_upserts_by_id<S: Store>(store: &S) {
    let id = new_customer(store);
    let first = consent(id, "news");
    ok(store, &[put_consent(first.clone())], "first consent");
    let second = Consent {
        id: ConsentId::new(),
        given_at: t(20),
        ..consent(id, "news")
    };
    let superseded = Consent {
        superseded_by: Some(second.id),
        ..first.clone()
    };
    ok(
        store,
        &[put_consent(superseded.clone()), put_consent(second.clone())],
        "renewal",
    );
    let withdrawn = Consent {
        withdrawn_at: Some(t(30)),
        ..second.clone()
    };
    ok(store, &[put_consent(withdrawn.clone())], "withdrawal");
    assert_eq!(
        sorted_consents(&snapshot(store, id, "consents").consents, "consents"),
        sorted(vec![superseded, withdrawn]),
        "consents upsert by id, history kept"
    );
}

/// `consent_owner` finds the customer of any stored consent record, history and erased
/// customers included, and nobody for an unknown id.
pub fn consent_owner_names_the_customer<S: Store>(store: &S) {
    assert_eq!(get(store.consent_owner(ConsentId::new()), "owner"), None, "empty store");
    let alice = new_customer(store);
    let bob = new_customer(store);
    let first = consent(alice, "news");
    let renewed = Consent {
        id: ConsentId::new(),
        given_at: t(20),
        ..consent(alice, "news")
    };
    let superseded = Consent {
        superseded_by: Some(renewed.id),
        ..first.clone()
    };
    let bobs = Consent {
        withdrawn_at: Some(t(30)),
        ..consent(bob, "news")
    };
    ok(store, &[put_consent(first.clone())], "first consent");
    ok(
        store,
        &[
            put_consent(superseded),
            put_consent(renewed.clone()),
            put_consent(bobs.clone()),
        ],
        "renewal and bob's",
    );
    assert_eq!(
        get(store.consent_owner(first.id), "owner"),
        Some(alice),
        "a superseded record"
    );
    assert_eq!(get(store.consent_owner(renewed.id), "owner"), Some(alice), "a renewal");
    assert_eq!(
        get(store.consent_owner(bobs.id), "owner"),
        Some(bob),
        "a withdrawn record"
    );
    assert_eq!(
        get(store.consent_owner(ConsentId::new()), "owner"),
        None,
        "an unknown id"
    );
    ok(
        store,
        &[Write::EraseCustomer {
            customer: bob,
            at: t(40),
        }],
        "erasure",
    );
    assert_eq!(
        get(store.consent_owner(bobs.id), "owner"),
        Some(bob),
        "kept after erasure"
    );
}

/// Every objection is kept, also several to one purpose.
pub fn objections_are_kept<S: Store>(store: &S) {
    let id = new_customer(store);
    let o = |p: &str, at| Objection {
        customer: id,
        purpose: purpose_id(p),
        at,
    };
    ok(store, &[put_objection(o("profiling", t(1)))], "objection");
    ok(
        store,
        &[put_objection(o("profiling", t(5))), put_objection(o("analytics", t(3)))],
        "more objections",
    );
    assert_eq!(
        sorted_objections(records(&snapshot(store, id, "objections").objections, "objections")),
        sorted_objections(vec![o("profiling", t(1)), o("profiling", t(5)), o("analytics", t(3))]),
        "objections kept"
    );
}

/// `UpdateCustomer` replaces the record only at the revision it names (as left by earlier
/// writes of the batch), otherwise fails with `Stale` and applies nothing of the batch; it
/// never clears an erasure mark.
pub fn update_customer_is_conditional<S: Store>(store: &S) {
    let id = new_customer(store);
    let mut record = customer_record(id);
    for (rev, flag) in [(2u64, true), (3, true), (4, false), (5, true)] {
        record.restricted = flag;
        // The count of the data key's uses is replaced with the record.
        record.key_uses = rev * 1000;
        let w = update(&record, rev, rev - 1);
        ok(store, std::slice::from_ref(&w), "update at the stored revision");
        let Write::UpdateCustomer { record: written, .. } = w else {
            unreachable!()
        };
        assert_eq!(snapshot(store, id, "updated").record, written, "record replaced");
        record = written;
    }
    for expected in [0, 4, 6, u64::MAX] {
        refused(
            store,
            &[
                put_field(id, "email", vec![1], t(1)),
                update(&record, 9, expected),
                Write::AppendAudit(event(1, Some(id))),
            ],
            StoreError::Stale,
            &format!("update expecting revision {expected} of a record at 5"),
        );
        assert_eq!(
            snapshot(store, id, "after a stale update").record,
            record,
            "stale update applied"
        );
        assert!(
            get(store.fields(id), "fields").is_empty(),
            "the stale batch's field visible"
        );
        assert_eq!(get(store.audit_head(), "head"), None, "the stale batch's event visible");
    }
    ok(
        store,
        &[update(&record, 6, 5), update(&record, 7, 6)],
        "two updates chained in one batch",
    );
    assert_eq!(snapshot(store, id, "chained").record.rev, 7, "the later update wins");
    refused(
        store,
        &[update(&record, 8, 7), update(&record, 9, 7)],
        StoreError::Stale,
        "a second update of the batch expecting the revision the first one replaced",
    );
    let fresh = CustomerId::new();
    ok(
        store,
        &[
            Write::InsertCustomer(customer_record(fresh)),
            update(&customer_record(fresh), 2, 1),
        ],
        "insert then update in one batch",
    );
    assert_eq!(snapshot(store, fresh, "inserted and updated").record.rev, 2, "rev");

    let erased = CustomerRecord {
        erased_at: Some(t(50)),
        ..snapshot(store, id, "before erasure").record
    };
    ok(store, &[update(&erased, 8, 7)], "mark erased");
    let live_again = CustomerRecord {
        erased_at: None,
        ..erased.clone()
    };
    ok(store, &[update(&live_again, 9, 8)], "an update that says not erased");
    let snap = snapshot(store, id, "after the update");
    assert_eq!(snap.record.erased_at, Some(t(50)), "an update cleared the erasure mark");
    assert_eq!(snap.record.rev, 9, "the update itself applied");
}

/// `PutPurpose` inserts only a purpose not stored, and replaces one only at the revision it
/// names; otherwise `Stale`, and nothing of the batch is applied.
pub fn put_purpose_is_conditional<S: Store>(store: &S) {
    let v1 = Purpose::new("news", LawfulBasis::Consent).fields(["email"]);
    let v2 = v1.clone().notice_version(2);
    ok(store, &[put_purpose(v1.clone(), 1, None)], "first definition");
    refused(
        store,
        &[put_purpose(v2.clone(), 1, None), Write::AppendAudit(event(1, None))],
        StoreError::Stale,
        "a first definition of a stored purpose",
    );
    for expected in [0, 2, u64::MAX] {
        refused(
            store,
            &[put_purpose(v2.clone(), 2, Some(expected))],
            StoreError::Stale,
            &format!("a redefinition expecting revision {expected} of a purpose at 1"),
        );
    }
    refused(
        store,
        &[put_purpose(
            Purpose::new("other", LawfulBasis::Consent).fields(["email"]),
            2,
            Some(1),
        )],
        StoreError::Stale,
        "a redefinition of a purpose never stored",
    );
    let read = get(store.purposes(), "purposes");
    assert_eq!(read.len(), 1, "refused definitions are not stored");
    assert_eq!(read[0].stored, stored_purpose(v1, 1), "the first definition is kept");
    assert_eq!(get(store.audit_head(), "head"), None, "the refused batch's event");
    ok(
        store,
        &[put_purpose(v2.clone(), 2, Some(1))],
        "redefinition at the stored revision",
    );
    assert_eq!(
        get(store.purposes(), "purposes")[0].stored,
        stored_purpose(v2, 2),
        "redefined"
    );
}

/// A customer snapshot and the purposes come with their latest change: the event with the
/// highest sequence number that carries a state and names the customer (for a purpose: the
/// purpose and no customer), with the MAC of the event before it.
pub fn latest_changes_come_with_the_state<S: Store>(store: &S) {
    let id = new_customer(store);
    let other = new_customer(store);
    ok(
        store,
        &[put_purpose(
            Purpose::new("news", LawfulBasis::Consent).fields(["email"]),
            1,
            None,
        )],
        "a purpose",
    );
    assert_eq!(snapshot(store, id, "no change yet").latest_change, None, "no event yet");
    let with_state = |seq: u64, customer: Option<CustomerId>, purpose: Option<&str>, fill: u8| {
        let mut e = event(seq, customer);
        e.kind = AuditKind::ConsentGiven;
        e.purpose = purpose.map(purpose_id);
        e.state = Some([fill; 32]);
        // Some with an actor, some without (events written before actors were recorded).
        e.actor = (fill % 2 == 1).then(|| actor("support:agent-42"));
        e
    };
    let events = [
        with_state(1, Some(id), None, 1),
        with_state(2, None, Some("news"), 2),
        with_state(3, Some(id), Some("news"), 3),
        // Events without a state (access decisions) never count.
        event(4, Some(id)),
        with_state(5, Some(other), None, 5),
        {
            let mut e = event(6, None);
            e.purpose = Some(purpose_id("news"));
            e
        },
        with_state(7, Some(other), Some("news"), 7),
    ];
    ok(
        store,
        &events.iter().cloned().map(Write::AppendAudit).collect::<Vec<_>>(),
        "events",
    );
    let latest = snapshot(store, id, "customer").latest_change;
    assert_eq!(
        latest,
        Some(LatestChange {
            event: events[2].clone(),
            prev_mac: Some(events[1].mac),
        }),
        "a customer's latest change"
    );
    let latest = snapshot(store, other, "other").latest_change;
    assert_eq!(latest.map(|l| l.event.seq), Some(7), "another customer's latest change");
    let purposes = get(store.purposes(), "purposes");
    assert_eq!(
        purposes[0].latest_change,
        Some(LatestChange {
            event: events[1].clone(),
            prev_mac: Some(events[0].mac),
        }),
        "a purpose's latest change names no customer"
    );
    let first = snapshot(store, id, "customer");
    ok(
        store,
        &[Write::AppendAudit(with_state(9, Some(id), None, 9))],
        "a change after a gap",
    );
    let latest = snapshot(store, id, "after a gap").latest_change;
    assert_eq!(
        latest,
        Some(LatestChange {
            event: with_state(9, Some(id), None, 9),
            prev_mac: None,
        }),
        "the event before is missing: no MAC"
    );
    assert_ne!(first.latest_change, latest, "the latest change moved");
}

/// The snapshot lists every stored field with its write version and time, not its envelope.
pub fn field_versions_in_the_snapshot<S: Store>(store: &S) {
    let id = new_customer(store);
    let top = i64::MAX as u64;
    ok(
        store,
        &[
            put_field_at(id, "email", 3, vec![1; 10], t(1)),
            put_field_at(id, "phone", top, vec![2; 10], t(2)),
        ],
        "fields",
    );
    let expected = |field: &str, version: u64, at| FieldVersion {
        field: field_name(field),
        version,
        written_at: at,
        token: None,
    };
    assert_eq!(
        sorted_versions(snapshot(store, id, "fields").fields),
        vec![expected("email", 3, t(1)), expected("phone", top, t(2))],
        "field versions"
    );
    ok(store, &[put_field_at(id, "email", 4, vec![3; 10], t(4))], "rewrite");
    assert_eq!(
        get(store.field(id, &field_name("email")), "field").map(|f| f.version),
        Some(4),
        "the field's version"
    );
    ok(
        store,
        &[Write::DeleteField {
            customer: id,
            field: field_name("phone"),
        }],
        "delete",
    );
    assert_eq!(
        snapshot(store, id, "after rewrite and delete").fields,
        vec![expected("email", 4, t(4))],
        "versions follow rewrites and deletions"
    );
    ok(store, &[Write::EraseCustomer { customer: id, at: t(9) }], "erase");
    assert!(
        snapshot(store, id, "erased").fields.is_empty(),
        "no field after erasure"
    );
}

/// `EraseCustomer` deletes keys and fields, keeps the rest, and sets `erased_at` once.
pub fn erase_customer<S: Store>(store: &S) {
    let id = new_customer(store);
    let other = new_customer(store);
    let c = consent(id, "news");
    let objection = Objection {
        customer: id,
        purpose: purpose_id("profiling"),
        at: t(2),
    };
    ok(
        store,
        &[
            Write::PutKey(key(id, 2, 5)),
            put_field(id, "email", vec![1; 10], t(1)),
            put_field(id, "phone", vec![2; 10], t(1)),
            put_field(other, "email", vec![3; 10], t(1)),
            put_consent(c.clone()),
            put_objection(objection.clone()),
            Write::AppendAudit(event(1, Some(id))),
        ],
        "setup",
    );
    ok(
        store,
        &[Write::EraseCustomer {
            customer: id,
            at: t(100),
        }],
        "erase",
    );
    let snap = snapshot(store, id, "after erasure");
    assert_eq!(snap.record.erased_at, Some(t(100)), "erased_at set");
    assert_eq!(
        snap.record.created_at,
        customer_record(id).created_at,
        "created_at kept"
    );
    assert!(snap.keys.is_empty(), "keys survive erasure");
    assert!(get(store.fields(id), "fields").is_empty(), "fields survive erasure");
    assert_eq!(
        get(store.field(id, &field_name("email")), "field"),
        None,
        "a field survives erasure"
    );
    assert_eq!(records(&snap.consents, "consents"), vec![c], "consents are kept");
    assert_eq!(
        records(&snap.objections, "objections"),
        vec![objection],
        "objections are kept"
    );
    assert_eq!(get(store.audit_for(id), "audit").len(), 1, "audit events are kept");
    assert!(
        get(store.customer_ids(), "ids").contains(&id),
        "an erased customer is still listed"
    );
    ok(
        store,
        &[Write::EraseCustomer {
            customer: id,
            at: t(200),
        }],
        "erase again",
    );
    assert_eq!(
        snapshot(store, id, "second erasure").record.erased_at,
        Some(t(100)),
        "a second erasure must not move erased_at"
    );
    let other_snap = snapshot(store, other, "other customer");
    assert_eq!(other_snap.record.erased_at, None, "another customer erased");
    assert_eq!(other_snap.keys.len(), 1, "another customer's keys");
    assert_eq!(get(store.fields(other), "fields").len(), 1, "another customer's fields");
}

/// After erasure, keys, fields and restriction are refused; consents, objections, deletions
/// and a repeated erasure are accepted. The same holds for writes after an erasure in the
/// same batch.
pub fn writes_after_erasure<S: Store>(store: &S) {
    let id = new_customer(store);
    ok(store, &[Write::EraseCustomer { customer: id, at: t(5) }], "erase");
    let refused_writes = [
        ("PutKey", Write::PutKey(key(id, 2, 1))),
        ("PutField", put_field(id, "email", vec![1], t(6))),
    ];
    for (name, w) in &refused_writes {
        refused(
            store,
            std::slice::from_ref(w),
            StoreError::MissingCustomer,
            &format!("{name} after erasure"),
        );
    }
    let snap = snapshot(store, id, "after refused writes");
    assert!(snap.keys.is_empty(), "a key came back after erasure");
    assert!(
        get(store.fields(id), "fields").is_empty(),
        "a field came back after erasure"
    );

    let c = Consent {
        withdrawn_at: Some(t(7)),
        ..consent(id, "news")
    };
    ok(
        store,
        &[
            put_consent(c.clone()),
            put_objection(Objection {
                customer: id,
                purpose: purpose_id("profiling"),
                at: t(7),
            }),
            Write::DeleteField {
                customer: id,
                field: field_name("email"),
            },
            Write::EraseCustomer { customer: id, at: t(8) },
            update(&customer_record(id), 2, 1),
            Write::AppendAudit(event(1, Some(id))),
        ],
        "consent, objection, deletion, erasure and a record update after erasure",
    );
    let snap = snapshot(store, id, "after accepted writes");
    assert_eq!(records(&snap.consents, "consents"), vec![c], "consent after erasure");
    assert_eq!(snap.objections.len(), 1, "objection after erasure");
    assert_eq!(snap.record.rev, 2, "record update after erasure");
    assert_eq!(snap.record.erased_at, Some(t(5)), "the update kept the erasure mark");

    // Erasure then a key or field in the same batch: refused, and the erasure with it.
    let live = new_customer(store);
    for (name, w) in [
        ("PutKey", Write::PutKey(key(live, 2, 1))),
        ("PutField", put_field(live, "email", vec![1], t(6))),
    ] {
        refused(
            store,
            &[
                Write::EraseCustomer {
                    customer: live,
                    at: t(5),
                },
                w,
            ],
            StoreError::MissingCustomer,
            &format!("{name} after an erasure in the same batch"),
        );
        let snap = snapshot(store, live, "after a refused erasure batch");
        assert_eq!(
            snap.record.erased_at, None,
            "{name}: the erasure of a refused batch is visible"
        );
        assert_eq!(snap.keys.len(), 1, "{name}: keys of a refused erasure batch are gone");
    }
}

/// Purposes round-trip with every setting, and `PutPurpose` replaces by id.
pub fn purposes_round_trip<S: Store>(store: &S) {
    let full = Purpose::new("profiling", LawfulBasis::LegitimateInterests)
        .description("Tailoring offers — «ünïcødé» and 'quotes'")
        .fields(["email", "address.city", "first_name"])
        .notice_version(7)
        .consent_lifetime(Duration::days(395))
        .retention(Duration::seconds(86_401))
        .special_category()
        .direct_marketing();
    let plain = Purpose::new("billing", LawfulBasis::Contract).fields(["address"]);
    let mut all = vec![full.clone(), plain.clone()];
    for basis in [
        LawfulBasis::Consent,
        LawfulBasis::LegalObligation,
        LawfulBasis::VitalInterests,
        LawfulBasis::PublicTask,
    ] {
        let id = format!("{basis:?}").to_lowercase();
        all.push(Purpose::new(&id, basis).fields(["x"]));
    }
    let batch: Vec<Write> = all.iter().cloned().map(|p| put_purpose(p, 1, None)).collect();
    ok(store, &batch, "put purposes");
    let mut read = get(store.purposes(), "purposes");
    read.sort_by(|a, b| a.stored.purpose.id().cmp(b.stored.purpose.id()));
    all.sort_by(|a, b| a.id().cmp(b.id()));
    let stored: Vec<StoredPurpose> = all.iter().cloned().map(|p| stored_purpose(p, 1)).collect();
    assert_eq!(
        read.into_iter().map(|p| p.stored).collect::<Vec<_>>(),
        stored,
        "purposes round trip, with revision and MAC"
    );

    let redefined = Purpose::new("billing", LawfulBasis::Contract)
        .fields(["address", "email"])
        .notice_version(2);
    let top = i64::MAX as u64;
    ok(store, &[put_purpose(redefined.clone(), top, Some(1))], "redefine");
    let read = get(store.purposes(), "purposes");
    assert_eq!(read.len(), all.len(), "a redefinition must replace, not add");
    assert!(
        read.iter().any(|p| p.stored == stored_purpose(redefined.clone(), top)),
        "redefined purpose at revision i64::MAX"
    );
    assert!(
        !purposes_of(store, "purposes").contains(&plain),
        "old definition still there"
    );
}

/// `customer_ids` lists every customer, erased ones included, once.
pub fn customer_ids_lists_everyone<S: Store>(store: &S) {
    let mut ids: Vec<CustomerId> = (0..25).map(|_| new_customer(store)).collect();
    ok(
        store,
        &[Write::EraseCustomer {
            customer: ids[3],
            at: t(1),
        }],
        "erase one",
    );
    let mut read = get(store.customer_ids(), "customer_ids");
    read.sort();
    ids.sort();
    assert_eq!(read, ids, "customer ids");
}

/// The audit head, ranges (ascending, from a sequence number, limited) and per-customer
/// reads.
pub fn audit_log_reads<S: Store>(store: &S) {
    let alice = CustomerId::new();
    let bob = CustomerId::new();
    let events: Vec<AuditEvent> = (1..=30u64)
        .map(|seq| {
            let who = match seq % 3 {
                0 => Some(alice),
                1 => Some(bob),
                _ => None,
            };
            event(seq, who)
        })
        .collect();
    // Appended out of order across batches: reads must still be ascending by seq.
    let (low, high) = events.split_at(12);
    ok(
        store,
        &high.iter().cloned().map(Write::AppendAudit).collect::<Vec<_>>(),
        "append 13..=30",
    );
    let mut low_rev: Vec<Write> = low.iter().cloned().map(Write::AppendAudit).collect();
    low_rev.reverse();
    ok(store, &low_rev, "append 12..=1, reversed");

    assert_eq!(get(store.audit_head(), "head"), events.last().cloned(), "audit head");
    assert_eq!(get(store.audit_range(1, 1000), "range"), events, "whole log ascending");
    assert_eq!(get(store.audit_range(0, 1000), "range"), events, "from 0");
    assert_eq!(
        get(store.audit_range(5, 4), "range"),
        events[4..8].to_vec(),
        "from 5, limit 4"
    );
    assert_eq!(get(store.audit_range(29, 10), "range"), events[28..].to_vec(), "tail");
    assert!(get(store.audit_range(31, 10), "range").is_empty(), "past the end");
    assert!(get(store.audit_range(3, 0), "range").is_empty(), "limit 0");
    let seqs: Vec<u64> = get(store.audit_range(10, usize::MAX), "range")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (10..=30).collect::<Vec<_>>(), "limit usize::MAX");

    let of_alice: Vec<AuditEvent> = events.iter().filter(|e| e.customer == Some(alice)).cloned().collect();
    assert_eq!(
        get(store.audit_for(alice), "audit_for"),
        of_alice,
        "alice's events ascending"
    );
    let of_bob: Vec<AuditEvent> = events.iter().filter(|e| e.customer == Some(bob)).cloned().collect();
    assert_eq!(get(store.audit_for(bob), "audit_for"), of_bob, "bob's events ascending");

    let top = i64::MAX as u64;
    ok(store, &[Write::AppendAudit(event(top, Some(alice)))], "seq i64::MAX");
    assert_eq!(
        get(store.audit_head(), "head").map(|e| e.seq),
        Some(top),
        "head at i64::MAX"
    );
    assert_eq!(
        get(store.audit_range(top, 5), "range"),
        vec![event(top, Some(alice))],
        "range at i64::MAX"
    );
    assert_eq!(
        get(store.audit_range(31, 5), "range").first().map(|e| e.seq),
        Some(top),
        "range across the gap to i64::MAX"
    );
    assert!(get(store.audit_range(u64::MAX, 5), "range").is_empty(), "from u64::MAX");
}

/// Audit events of every kind round-trip with every field.
pub fn audit_events_round_trip<S: Store>(store: &S) {
    let kinds = AuditKind::ALL;
    let who = CustomerId::new();
    let events: Vec<AuditEvent> = kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| {
            let seq = i as u64 + 1;
            let mut mac = [0u8; 32];
            for (j, b) in mac.iter_mut().enumerate() {
                *b = (j as u8).wrapping_mul(37) ^ (seq as u8) ^ 0x80;
            }
            AuditEvent {
                seq,
                at: t(-(seq as i64) * 1_000_003),
                kind,
                customer: (i % 2 == 0).then_some(who),
                purpose: (i % 3 != 0).then(|| purpose_id("news.letter-v2_x")),
                field: (i % 4 != 0).then(|| field_name("address.city")),
                detail: match i % 3 {
                    0 => String::new(),
                    1 => format!("key_version={i},master_key=k{i}"),
                    _ => "ünïcødé detail with 'quotes' and \"double\" \n newline".to_owned(),
                },
                state: (i % 2 == 1).then_some([seq as u8 ^ 0x5a; 32]),
                actor: match i % 3 {
                    0 => None,
                    1 => Some(actor("service:mailer")),
                    _ => Some(actor(&format!("Svc/batch_{i}.v2:{}", "x".repeat(40)))),
                },
                mac,
            }
        })
        .collect();
    ok(
        store,
        &events.iter().cloned().map(Write::AppendAudit).collect::<Vec<_>>(),
        "append every kind",
    );
    assert_eq!(
        get(store.audit_range(1, 100), "range"),
        events,
        "audit events round trip"
    );
    let mine: Vec<AuditEvent> = events.iter().filter(|e| e.customer.is_some()).cloned().collect();
    assert_eq!(get(store.audit_for(who), "audit_for"), mine, "audit_for round trip");
}

/// A customer's audit trail: exactly their events, ascending, each with the MAC of the event
/// before it (none for the first event, or after a gap), actors as written.
pub fn audit_trail_serves_a_customers_events<S: Store>(store: &S) {
    let who = CustomerId::new();
    let other = CustomerId::new();
    let events: Vec<AuditEvent> = (1..=12u64)
        .map(|seq| AuditEvent {
            actor: (seq % 3 != 0).then(|| actor(&format!("support:agent-{seq}"))),
            ..event(seq, [Some(who), Some(other), None][(seq % 3) as usize])
        })
        .chain(std::iter::once(AuditEvent {
            actor: Some(actor("service:mailer")),
            ..event(20, Some(who))
        }))
        .collect();
    ok(
        store,
        &events.iter().cloned().map(Write::AppendAudit).collect::<Vec<_>>(),
        "append the events",
    );
    let trail = get(store.audit_trail(who), "audit_trail");
    let mine: Vec<&AuditEvent> = events.iter().filter(|e| e.customer == Some(who)).collect();
    assert_eq!(
        trail.iter().map(|c| &c.event).collect::<Vec<_>>(),
        mine,
        "exactly the customer's events, ascending, actors included"
    );
    for c in &trail {
        let expected = match c.event.seq {
            20 => None,
            seq => seq.checked_sub(2).map(|i| events[i as usize].mac),
        };
        assert_eq!(c.prev_mac, expected, "the MAC of the event before");
    }
    assert!(
        get(store.audit_trail(CustomerId::new()), "audit_trail").is_empty(),
        "nobody's trail"
    );
}

/// Every field of customers, keys, fields, consents and objections round-trips exactly.
pub fn records_round_trip_exactly<S: Store>(store: &S) {
    let id = CustomerId::from_uuid(uuid::Uuid::new_v4()).unwrap_or_else(|_| panic!("a v4 uuid is a customer id"));
    let record = CustomerRecord {
        id,
        created_at: Utc
            .timestamp_micros(-62_135_596_800_000_000 + 1)
            .single()
            .unwrap_or_default(),
        restricted: false,
        erased_at: None,
        rev: i64::MAX as u64,
        key_uses: i64::MAX as u64,
        mac: [0xff; 32],
    };
    let envelope: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let written = Utc
        .timestamp_micros(253_402_300_799_999_999)
        .single()
        .unwrap_or_default();
    let c_full = Consent {
        id: ConsentId::from_uuid(uuid::Uuid::new_v4()),
        customer: id,
        purpose: purpose_id("health.records"),
        basis: LawfulBasis::VitalInterests,
        notice_version: u32::MAX,
        given_at: t(-1),
        expires_at: Some(t(31_536_000_000_001)),
        withdrawn_at: Some(t(777)),
        superseded_by: Some(ConsentId::new()),
        evidence: Evidence::new("paper — signed «form»")
            .source("branch-42/form-7")
            .notice_text("the notice")
            .explicit()
            .gpc(),
        sealed_choices: Some(crate::choices::SealedChoices::from_bytes(
            (0..300u32).map(|i| (i % 256) as u8).collect(),
        )),
    };
    let c_bare = Consent {
        basis: LawfulBasis::PublicTask,
        evidence: Evidence::new(""),
        ..consent(id, "a")
    };
    let mut cs = vec![c_full, c_bare];
    for basis in [
        LawfulBasis::Consent,
        LawfulBasis::Contract,
        LawfulBasis::LegalObligation,
        LawfulBasis::LegitimateInterests,
    ] {
        cs.push(Consent {
            basis,
            ..consent(id, "b")
        });
    }
    let objection = Objection {
        customer: id,
        purpose: purpose_id("a"),
        at: t(123_456_789),
    };
    let mut batch = vec![
        Write::InsertCustomer(record.clone()),
        Write::PutKey(key(id, 0, 0)),
        put_field(id, "empty", Vec::new(), t(0)),
        put_field(id, &"f".repeat(64), envelope.clone(), written),
        put_objection(objection.clone()),
    ];
    batch.extend(cs.iter().cloned().map(put_consent));
    ok(store, &batch, "write every kind of record");

    let snap = snapshot(store, id, "round trip");
    assert_eq!(snap.record, record, "customer record");
    assert_eq!(snap.keys, vec![key(id, 0, 0)], "key of version 0");
    assert_eq!(
        sorted_consents(&snap.consents, "consents"),
        sorted(cs),
        "consents, every field"
    );
    assert_eq!(records(&snap.objections, "objections"), vec![objection], "objection");
    let fields = sorted_fields(get(store.fields(id), "fields"));
    assert_eq!(
        fields,
        vec![
            StoredField {
                field: field_name("empty"),
                version: 1,
                envelope: Vec::new(),
                written_at: t(0),
            },
            StoredField {
                field: field_name(&"f".repeat(64)),
                version: 1,
                envelope,
                written_at: written,
            },
        ],
        "fields, every byte"
    );

    let erased = CustomerRecord {
        id: CustomerId::new(),
        created_at: t(5),
        restricted: true,
        erased_at: Some(t(6)),
        rev: 0,
        key_uses: 0,
        mac: [0; 32],
    };
    ok(
        store,
        &[Write::InsertCustomer(erased.clone())],
        "insert an erased record",
    );
    assert_eq!(snapshot(store, erased.id, "erased").record, erased, "erased record");
}

/// Threads appending the same audit sequence number at once: exactly one wins.
pub fn concurrent_audit_appends_conflict<S: Store>(store: &S) {
    const THREADS: usize = 8;
    for seq in 1..=5u64 {
        let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|i| {
                    s.spawn(move || {
                        let mut e = event(seq, None);
                        e.detail = format!("writer-{i}");
                        store.apply(&[Write::AppendAudit(e)])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| panic!("a writer thread panicked")))
                .collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "seq {seq}: exactly one concurrent append must win");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(
                    *e,
                    StoreError::Conflict,
                    "seq {seq}: a losing append must be a conflict"
                );
            }
        }
    }
    let details: HashSet<String> = get(store.audit_range(1, 10), "range")
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(get(store.audit_range(1, 10), "range").len(), 5, "five events");
    assert!(details.iter().all(|d| d.starts_with("writer-")), "details");
}

/// A stand-in for the chain MAC: the next MAC from the previous one and the sequence number.
fn next_mac(prev: &[u8; 32], seq: u64) -> [u8; 32] {
    let mut mac = [0u8; 32];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = prev[(i + 1) % 32]
            .wrapping_mul(31)
            .wrapping_add(seq.to_be_bytes()[i % 8])
            .wrapping_add(i as u8);
    }
    mac
}

/// `n` events chained onto `head` with [`next_mac`], each naming `detail`.
fn chained_events(head: AuditAnchor, n: usize, detail: &str) -> Vec<AuditEvent> {
    let mut out = Vec::with_capacity(n);
    let (mut seq, mut mac) = (head.seq, head.mac);
    for _ in 0..n {
        seq += 1;
        mac = next_mac(&mac, seq);
        let mut e = event(seq, None);
        e.mac = mac;
        e.detail = detail.to_owned();
        out.push(e);
    }
    out
}

/// Checks that the log is one unbroken chain of [`next_mac`] links from sequence number 1.
fn assert_one_chain(store: &impl Store, expected: u64, what: &str) {
    let events = get(store.audit_range(1, usize::MAX), "range");
    assert_eq!(events.len() as u64, expected, "{what}: event count");
    let mut prev = [0u8; 32];
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "{what}: sequence numbers without gaps");
        assert_eq!(
            e.mac,
            next_mac(&prev, e.seq),
            "{what}: event {} links onto the one before",
            e.seq
        );
        prev = e.mac;
    }
}

/// `customer_revision` answers the stored record's revision and MAC, as the snapshot does,
/// and follows every update.
pub fn customer_revision_matches_the_record<S: Store>(store: &S) {
    assert_eq!(
        get(store.customer_revision(CustomerId::new()), "missing"),
        None,
        "a missing customer"
    );
    let id = new_customer(store);
    let record = snapshot(store, id, "inserted").record;
    assert_eq!(
        get(store.customer_revision(id), "revision"),
        Some((record.rev, record.mac)),
        "as inserted"
    );
    let mut next = record.clone();
    next.rev = 2;
    next.restricted = true;
    next.mac = mac_of(&(id, 2u64));
    ok(
        store,
        &[Write::UpdateCustomer {
            record: next.clone(),
            expected_rev: 1,
        }],
        "update",
    );
    assert_eq!(
        get(store.customer_revision(id), "revision"),
        Some((2, next.mac)),
        "after an update"
    );
}

/// `apply_chained` hands the link the log's head and returns the new one.
pub fn apply_chained_links_onto_the_head<S: Store>(store: &S) {
    let mut seen = Vec::new();
    let head = get(
        store.apply_chained(&[], &mut |head| {
            seen.push(head);
            Ok(chained_events(head, 3, "first"))
        }),
        "chained append on an empty log",
    );
    assert_eq!(
        seen.last(),
        Some(&AuditAnchor::EMPTY),
        "an empty log's head is seq 0 and zero MAC"
    );
    assert_eq!(head.seq, 3, "the new head is the last event");
    let stored = get(store.audit_head(), "head").map(|e| AuditAnchor { seq: e.seq, mac: e.mac });
    assert_eq!(stored, Some(head), "the returned head is the stored one");
    let id = CustomerId::new();
    let mut seen = Vec::new();
    let next = get(
        store.apply_chained(
            &[
                Write::InsertCustomer(customer_record(id)),
                Write::PutKey(key(id, 1, 0xA1)),
            ],
            &mut |h| {
                seen.push(h);
                Ok(chained_events(h, 1, "second"))
            },
        ),
        "chained append with writes",
    );
    assert_eq!(
        seen.last(),
        Some(&head),
        "the link gets the head left by the last write"
    );
    assert_eq!(next.seq, 4, "one more event");
    assert!(
        get(store.customer(id), "customer").is_some(),
        "the writes are applied with the events"
    );
    let none = get(store.apply_chained(&[], &mut |_| Ok(Vec::new())), "no events");
    assert_eq!(none, next, "without events the head stays");
    let big = get(
        store.apply_chained(&[], &mut |h| Ok(chained_events(h, 70, "group"))),
        "a group commit's batch",
    );
    assert_eq!(big.seq, 74, "seventy more events");
    assert_one_chain(store, 74, "after chained appends");
    let mut tail = get(store.audit_range(5, 100), "range");
    assert_eq!(tail.len(), 70);
    let last = tail.pop().map(|e| (e.seq, e.detail, e.kind, e.customer));
    assert_eq!(
        last,
        Some((74, "group".to_owned(), AuditKind::AccessGranted, None)),
        "read back as written"
    );
}

/// `apply_chained` is atomic: a write that fails, or a link that fails, leaves nothing.
pub fn apply_chained_is_atomic<S: Store>(store: &S) {
    get(
        store.apply_chained(&[], &mut |h| Ok(chained_events(h, 2, "kept"))),
        "first append",
    );
    let missing = CustomerId::new();
    let refused = store.apply_chained(&[Write::PutKey(key(missing, 1, 0xA1))], &mut |h| {
        Ok(chained_events(h, 2, "lost"))
    });
    assert_eq!(
        refused,
        Err(StoreError::MissingCustomer),
        "a write to a missing customer fails the batch"
    );
    let failed = store.apply_chained(&[], &mut |_| Err(StoreError::Corrupt("the link failed".into())));
    assert!(failed.is_err(), "a failing link fails the batch");
    assert_one_chain(store, 2, "nothing of the failed batches");
}

/// Threads appending with `apply_chained` at once end with one unbroken chain holding every
/// event. A backend that keeps the trait's default may answer [`StoreError::Conflict`]; the
/// thread then tries again, as the vault does.
pub fn concurrent_chained_appends_keep_one_chain<S: Store>(store: &S) {
    chained_appends_from_threads(store, true);
}

/// As [`concurrent_chained_appends_keep_one_chain`], and no append ever fails with
/// [`StoreError::Conflict`]: the backend reads the head under a lock held until its commit,
/// as the built-in stores do. Not part of [`run_all`] (the trait's default races).
pub fn chained_appends_never_conflict<S: Store>(store: &S) {
    chained_appends_from_threads(store, false);
}

fn chained_appends_from_threads<S: Store>(store: &S, may_conflict: bool) {
    const THREADS: usize = 6;
    const APPENDS: usize = 15;
    let conflicts: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                s.spawn(move || {
                    let detail = format!("writer-{i}");
                    let mut conflicts = 0;
                    for n in 0..APPENDS {
                        let size = 1 + (i + n) % 3;
                        loop {
                            match store.apply_chained(&[], &mut |h| Ok(chained_events(h, size, &detail))) {
                                Ok(_) => break,
                                Err(StoreError::Conflict) if conflicts < 10_000 => conflicts += 1,
                                Err(e) => panic!("writer {i}: chained append failed with {e:?}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a writer thread panicked")))
            .sum()
    });
    if !may_conflict {
        assert_eq!(conflicts, 0, "chained appends must queue for the head, never conflict");
    }
    let expected: usize = (0..THREADS)
        .flat_map(|i| (0..APPENDS).map(move |n| 1 + (i + n) % 3))
        .sum();
    assert_one_chain(store, expected as u64, "after concurrent chained appends");
}

/// Secrets: insert, read back, conflict on a second insert, replace.
pub fn vault_secrets<S: Store>(store: &S) {
    ok(store, &[Write::InsertSecret(secret("audit", 1))], "insert a secret");
    assert_eq!(
        get(store.secret("audit"), "secret"),
        Some(secret("audit", 1)),
        "read back"
    );
    assert_eq!(get(store.secret("other"), "secret"), None, "another name");
    refused(
        store,
        &[Write::InsertSecret(secret("audit", 2))],
        StoreError::Conflict,
        "a second insert of a stored name",
    );
    refused(
        store,
        &[
            Write::InsertSecret(secret("other", 1)),
            Write::InsertSecret(secret("other", 2)),
        ],
        StoreError::Conflict,
        "two inserts of one name in a batch",
    );
    assert_eq!(
        get(store.secret("other"), "secret"),
        None,
        "nothing of the refused batch"
    );
    assert_eq!(get(store.secret("audit"), "secret"), Some(secret("audit", 1)), "kept");
    ok(store, &[Write::ReplaceSecret(secret("audit", 3))], "replace a secret");
    assert_eq!(
        get(store.secret("audit"), "secret"),
        Some(secret("audit", 3)),
        "replaced"
    );
    ok(
        store,
        &[Write::ReplaceSecret(secret("other", 4))],
        "replace an absent secret",
    );
    assert_eq!(
        get(store.secret("other"), "secret"),
        Some(secret("other", 4)),
        "inserted"
    );
    assert_eq!(
        get(store.secret("audit"), "secret"),
        Some(secret("audit", 3)),
        "untouched"
    );
}

/// A batch holding a secret and a failing write leaves the secret unchanged; a successful
/// one writes both.
pub fn vault_secrets_are_atomic_with_the_batch<S: Store>(store: &S) {
    ok(store, &[Write::AppendAudit(event(1, None))], "first event");
    refused(
        store,
        &[
            Write::InsertSecret(secret("audit", 1)),
            Write::AppendAudit(event(1, None)),
        ],
        StoreError::Conflict,
        "insert with a duplicate event",
    );
    assert_eq!(get(store.secret("audit"), "secret"), None, "insert rolled back");
    ok(
        store,
        &[
            Write::InsertSecret(secret("audit", 1)),
            Write::AppendAudit(event(2, None)),
        ],
        "insert with an event",
    );
    refused(
        store,
        &[
            Write::ReplaceSecret(secret("audit", 2)),
            Write::PutKey(key(CustomerId::new(), 1, 1)),
        ],
        StoreError::MissingCustomer,
        "replace with a write to a missing customer",
    );
    assert_eq!(
        get(store.secret("audit"), "secret"),
        Some(secret("audit", 1)),
        "replace rolled back"
    );
    ok(
        store,
        &[
            Write::ReplaceSecret(secret("audit", 2)),
            Write::AppendAudit(event(3, None)),
        ],
        "replace with an event",
    );
    assert_eq!(
        get(store.secret("audit"), "secret"),
        Some(secret("audit", 2)),
        "replaced"
    );
    assert_eq!(
        get(store.audit_head(), "head").map(|e| e.seq),
        Some(3),
        "events written"
    );
}

/// Threads inserting the same secret at once: exactly one wins, the others conflict.
pub fn concurrent_secret_inserts_conflict<S: Store>(store: &S) {
    const THREADS: u8 = 8;
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| s.spawn(move || store.apply(&[Write::InsertSecret(secret("audit", i))])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("an inserting thread panicked")))
            .collect()
    });
    let winners: Vec<u8> = (0..THREADS).filter(|&i| results[usize::from(i)].is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one concurrent insert must win");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(*r, StoreError::Conflict, "a losing insert must be a conflict");
    }
    assert_eq!(
        get(store.secret("audit"), "secret"),
        Some(secret("audit", winners[0])),
        "the winner's secret is stored"
    );
}

/// Every page of candidates from `after` on, `limit` at a time; checks each page's order,
/// cursor and size.
fn all_candidates(
    store: &impl Store,
    purpose: &str,
    versions: std::ops::RangeInclusive<u32>,
    limit: usize,
) -> Vec<CustomerId> {
    let mut out: Vec<CustomerId> = Vec::new();
    let mut after = None;
    loop {
        let page = get(
            store.consent_candidates(&purpose_id(purpose), versions.clone(), after, limit),
            "consent_candidates",
        );
        assert!(page.len() <= limit, "a page of candidates holds at most the limit");
        for id in &page {
            assert!(
                after.is_none_or(|a| *id > a),
                "candidates come in ascending id order, after the cursor, each once"
            );
            after = Some(*id);
        }
        out.extend(&page);
        if page.len() < limit {
            return out;
        }
    }
}

/// The candidates of a purpose's audience: every customer holding a current record under a
/// notice version in the range, each once, in id order, page after page.
pub fn consent_candidates_propose_the_current_records<S: Store>(store: &S) {
    let with = |c: Consent| -> CustomerId {
        let id = c.customer;
        ok(store, &[put_consent(c)], "a fixture consent");
        id
    };
    let fresh = || new_customer(store);
    // Current records under notice versions 1 and 2.
    let v1 = with(consent(fresh(), "news"));
    let v2 = with(Consent {
        notice_version: 2,
        ..consent(fresh(), "news")
    });
    // A renewal: the superseded record and the current one; proposed once.
    let renewed = fresh();
    let new_id = ConsentId::new();
    with(Consent {
        superseded_by: Some(new_id),
        ..consent(renewed, "news")
    });
    with(Consent {
        id: new_id,
        notice_version: 2,
        given_at: t(20),
        ..consent(renewed, "news")
    });
    // Not required: withdrawn, superseded only, another purpose, erased.
    let withdrawn = with(Consent {
        withdrawn_at: Some(t(30)),
        ..consent(fresh(), "news")
    });
    let erased = with(consent(fresh(), "news"));
    ok(
        store,
        &[Write::EraseCustomer {
            customer: erased,
            at: t(40),
        }],
        "erase",
    );
    let other = with(consent(fresh(), "other"));
    // Many more current records, to page through.
    let mut many: Vec<CustomerId> = (0..25).map(|_| with(consent(fresh(), "news"))).collect();

    let mut all_current = vec![v1, v2, renewed];
    all_current.append(&mut many);
    all_current.sort_unstable();
    for limit in [1, 2, 7, 1000] {
        let got = all_candidates(store, "news", 0..=u32::MAX, limit);
        let got_set: HashSet<CustomerId> = got.iter().copied().collect();
        assert_eq!(got_set.len(), got.len(), "each candidate once (limit {limit})");
        for id in &all_current {
            assert!(got_set.contains(id), "every current record is proposed (limit {limit})");
        }
        let customers: HashSet<CustomerId> = get(store.customer_ids(), "customer_ids").into_iter().collect();
        assert!(
            got.iter().all(|id| customers.contains(id)),
            "only the store's customers are proposed"
        );
        let _ = (withdrawn, other);
    }
    let v2_up = all_candidates(store, "news", 2..=u32::MAX, 3);
    assert!(
        v2_up.contains(&v2) && v2_up.contains(&renewed),
        "notice version 2 and up"
    );
    let v1_only = all_candidates(store, "news", 0..=1, 3);
    assert!(v1_only.contains(&v1), "notice version 1");
    // A purpose nobody holds a record for: a backend may propose anyone (the vault decides),
    // but the call works.
    get(
        store.consent_candidates(&purpose_id("absent"), 0..=u32::MAX, None, 10),
        "consent_candidates of a purpose without records",
    );
    let last = all_current.last().copied();
    assert!(
        get(
            store.consent_candidates(&purpose_id("news"), 0..=u32::MAX, last, 10),
            "consent_candidates"
        )
        .iter()
        .all(|id| Some(*id) > last),
        "after the last one, nothing before it"
    );
}

/// The change feed: exactly the change events after a sequence number, ascending, limited,
/// each with the MAC of the event before it.
pub fn audit_changes_serve_the_change_events<S: Store>(store: &S) {
    let who = CustomerId::new();
    let kinds = AuditKind::ALL;
    let events: Vec<AuditEvent> = (1..=40u64)
        .map(|seq| AuditEvent {
            kind: kinds[(seq as usize * 7) % kinds.len()],
            ..event(seq, Some(who))
        })
        .collect();
    ok(
        store,
        &events.iter().cloned().map(Write::AppendAudit).collect::<Vec<_>>(),
        "append 1..=40",
    );
    let changes: Vec<&AuditEvent> = events.iter().filter(|e| e.kind.is_change()).collect();
    assert!(changes.len() > 5 && changes.len() < events.len(), "a mixed log");
    let got = get(store.audit_changes(0, 1000), "audit_changes");
    assert_eq!(
        got.iter().map(|c| &c.event).collect::<Vec<_>>(),
        changes,
        "exactly the change events, ascending"
    );
    for c in &got {
        // Event `seq` is `events[seq - 1]`: the one before it is `events[seq - 2]`.
        let expected = c.event.seq.checked_sub(2).map(|i| events[i as usize].mac);
        assert_eq!(c.prev_mac, expected, "the MAC of the event before");
    }
    let from = changes[2].seq;
    let page = get(store.audit_changes(from, 2), "audit_changes");
    assert_eq!(
        page.iter().map(|c| c.event.seq).collect::<Vec<_>>(),
        vec![changes[3].seq, changes[4].seq],
        "after the cursor, at most the limit"
    );
    assert!(get(store.audit_changes(3, 0), "audit_changes").is_empty(), "limit 0");
    assert!(
        get(store.audit_changes(40, 10), "audit_changes").is_empty(),
        "past the end"
    );
    assert!(
        get(store.audit_changes(u64::MAX, 10), "audit_changes").is_empty(),
        "from u64::MAX"
    );
    // A gap before a change event: its previous MAC is missing.
    let lone = AuditEvent {
        kind: AuditKind::ConsentGiven,
        ..event(50, Some(who))
    };
    ok(store, &[Write::AppendAudit(lone.clone())], "append 50");
    let tail = get(store.audit_changes(40, 10), "audit_changes");
    assert_eq!(tail.len(), 1, "the event after the gap");
    assert_eq!(tail[0].event, lone);
    assert_eq!(tail[0].prev_mac, None, "no event 49: no MAC before");
}

fn index(customer: CustomerId, field: &str, token: Option<[u8; 32]>) -> Write {
    Write::IndexField {
        customer,
        field: field_name(field),
        token,
    }
}

fn token_of(store: &impl Store, id: CustomerId, field: &str) -> Option<[u8; 32]> {
    snapshot(store, id, "token")
        .fields
        .into_iter()
        .find(|f| f.field.as_str() == field)
        .and_then(|f| f.token)
}

fn found(store: &impl Store, field: &str, token: [u8; 32]) -> Option<CustomerId> {
    get(store.find_indexed(&field_name(field), &token), "find_indexed")
}

/// The blind index: set, found, kept on rewrite, moved, unique per field, freed by deletion
/// and erasure, cleared with `None`.
pub fn lookup_index<S: Store>(store: &S) {
    let a = new_customer(store);
    let b = new_customer(store);
    ok(
        store,
        &[
            put_field(a, "email", vec![1; 10], t(1)),
            put_field(b, "email", vec![2; 10], t(1)),
            put_field(b, "phone", vec![3; 10], t(1)),
            index(a, "email", Some([1; 32])),
        ],
        "index a's email",
    );
    assert_eq!(found(store, "email", [1; 32]), Some(a), "a is found by its token");
    assert_eq!(found(store, "email", [2; 32]), None, "an unknown token finds no one");
    assert_eq!(
        found(store, "phone", [1; 32]),
        None,
        "a token is found under its field only"
    );
    assert_eq!(
        token_of(store, a, "email"),
        Some([1; 32]),
        "the snapshot lists the token"
    );
    assert_eq!(token_of(store, b, "email"), None, "an unindexed field has no token");
    ok(store, &[put_field(a, "email", vec![4; 10], t(2))], "rewrite a's email");
    assert_eq!(token_of(store, a, "email"), Some([1; 32]), "a rewrite keeps the token");
    refused(
        store,
        &[
            put_field(b, "phone", vec![5; 10], t(3)),
            index(b, "email", Some([1; 32])),
        ],
        StoreError::Duplicate,
        "b taking a's token",
    );
    assert_eq!(token_of(store, b, "email"), None, "the refused batch left no token");
    assert_eq!(
        get(store.field(b, &field_name("phone")), "field").map(|f| f.envelope),
        Some(vec![3; 10]),
        "nothing of the refused batch was applied"
    );
    ok(
        store,
        &[index(b, "phone", Some([1; 32]))],
        "the same token under another field",
    );
    ok(store, &[index(a, "email", Some([7; 32]))], "move a's token");
    assert_eq!(found(store, "email", [1; 32]), None, "the old token is gone");
    assert_eq!(found(store, "email", [7; 32]), Some(a), "the new token is found");
    ok(store, &[index(b, "email", Some([1; 32]))], "b takes the freed token");
    assert_eq!(found(store, "email", [1; 32]), Some(b));
    ok(
        store,
        &[index(a, "email", Some([7; 32]))],
        "a customer re-indexing its own token",
    );
    ok(
        store,
        &[Write::DeleteField {
            customer: a,
            field: field_name("email"),
        }],
        "delete a's email",
    );
    assert_eq!(found(store, "email", [7; 32]), None, "deletion frees the token");
    ok(
        store,
        &[put_field(a, "email", vec![8; 10], t(4))],
        "a writes email again",
    );
    assert_eq!(token_of(store, a, "email"), None, "a new row starts without a token");
    ok(store, &[index(b, "email", None)], "clear b's token");
    assert_eq!(found(store, "email", [1; 32]), None, "a cleared token is not found");
    ok(store, &[index(b, "email", Some([1; 32]))], "index b again");
    ok(store, &[Write::EraseCustomer { customer: b, at: t(5) }], "erase b");
    assert_eq!(found(store, "email", [1; 32]), None, "erasure frees the token");
    assert_eq!(
        found(store, "phone", [1; 32]),
        None,
        "every token of the erased customer"
    );
    ok(store, &[index(a, "email", Some([1; 32]))], "the value is free again");
    refused(
        store,
        &[index(b, "email", Some([9; 32]))],
        StoreError::MissingCustomer,
        "index an erased customer",
    );
    refused(
        store,
        &[index(CustomerId::new(), "email", Some([9; 32]))],
        StoreError::MissingCustomer,
        "index a missing customer",
    );
}

/// The uniqueness rule as earlier writes of the same batch leave the index.
pub fn lookup_index_within_a_batch<S: Store>(store: &S) {
    let a = new_customer(store);
    let b = new_customer(store);
    let c = new_customer(store);
    ok(
        store,
        &[
            put_field(a, "email", vec![1; 10], t(1)),
            put_field(b, "email", vec![2; 10], t(1)),
            put_field(c, "email", vec![3; 10], t(1)),
        ],
        "setup",
    );
    refused(
        store,
        &[index(a, "email", Some([1; 32])), index(b, "email", Some([1; 32]))],
        StoreError::Duplicate,
        "two holders in one batch",
    );
    assert_eq!(found(store, "email", [1; 32]), None, "nothing of the refused batch");
    ok(store, &[index(a, "email", Some([1; 32]))], "a holds it");
    ok(
        store,
        &[
            Write::DeleteField {
                customer: a,
                field: field_name("email"),
            },
            index(b, "email", Some([1; 32])),
        ],
        "b takes it after a's field is deleted in the same batch",
    );
    assert_eq!(found(store, "email", [1; 32]), Some(b));
    ok(
        store,
        &[index(b, "email", Some([2; 32])), index(c, "email", Some([1; 32]))],
        "c takes it after b moved away in the same batch",
    );
    assert_eq!(found(store, "email", [1; 32]), Some(c));
    ok(
        store,
        &[
            Write::EraseCustomer { customer: c, at: t(2) },
            index(b, "email", Some([1; 32])),
        ],
        "b takes it after c's erasure in the same batch",
    );
    assert_eq!(found(store, "email", [1; 32]), Some(b));
}

/// Lookup definitions upsert by field and read back exactly.
pub fn lookup_definitions<S: Store>(store: &S) {
    assert!(get(store.lookups(), "lookups").is_empty(), "no definition yet");
    let email = StoredLookup {
        field: field_name("email"),
        normalizer: "email".into(),
        mac: [4; 32],
    };
    let phone = StoredLookup {
        field: field_name("phone"),
        normalizer: "phone".into(),
        mac: [5; 32],
    };
    ok(
        store,
        &[Write::PutLookup(email.clone()), Write::PutLookup(phone.clone())],
        "define",
    );
    let mut all = get(store.lookups(), "lookups");
    all.sort_by(|a, b| a.field.cmp(&b.field));
    assert_eq!(all, vec![email.clone(), phone.clone()], "definitions read back");
    let exact = StoredLookup {
        normalizer: "exact".into(),
        mac: [6; 32],
        ..email.clone()
    };
    assert!(
        matches!(store.apply(&[Write::PutLookup(exact)]), Err(StoreError::Conflict)),
        "a definition is never replaced: a second one on the field is a conflict"
    );
    let other = StoredLookup {
        field: field_name("member_code"),
        normalizer: "exact".into(),
        mac: [7; 32],
    };
    assert!(
        matches!(
            store.apply(&[Write::PutLookup(other.clone()), Write::PutLookup(other)]),
            Err(StoreError::Conflict)
        ),
        "two definitions of one field in a batch are a conflict, and nothing is written"
    );
    let mut all = get(store.lookups(), "lookups");
    all.sort_by(|a, b| a.field.cmp(&b.field));
    assert_eq!(all, vec![email, phone], "the first definitions stand");
}

/// `PruneAudit` deletes the events up to `through` but the kept ones, and nothing after
/// `through`; reads about what remains (latest changes, a customer's trail, the change feed)
/// answer from the remaining events.
pub fn prune_audit_keeps_what_it_is_told<S: Store>(store: &S) {
    let a = new_customer(store);
    let b = new_customer(store);
    let change = |seq: u64, customer: CustomerId| {
        let mut e = event(seq, Some(customer));
        e.kind = AuditKind::ConsentGiven;
        e.state = Some([seq as u8; 32]);
        e
    };
    let events: Vec<AuditEvent> = (1..=10u64)
        .map(|seq| match seq {
            2 | 3 | 6 => change(seq, a),
            5 | 9 => change(seq, b),
            _ => event(seq, None),
        })
        .collect();
    ok(
        store,
        &events.iter().cloned().map(Write::AppendAudit).collect::<Vec<_>>(),
        "events",
    );
    ok(
        store,
        &[Write::PruneAudit {
            through: 7,
            keep: vec![5, 3, 2, 42],
        }],
        "a prune",
    );
    let seqs: Vec<u64> = get(store.audit_range(0, 100), "range").iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        [2, 3, 5, 8, 9, 10],
        "the kept events and every one after `through`"
    );
    let remaining = get(store.audit_range(0, 100), "range");
    for e in &remaining {
        let index = usize::try_from(e.seq - 1).unwrap_or(usize::MAX);
        assert_eq!(Some(e), events.get(index), "event {} reads back as written", e.seq);
    }
    assert_eq!(
        get(store.audit_head(), "head").map(|e| e.seq),
        Some(10),
        "the head stays"
    );
    let latest = snapshot(store, a, "a").latest_change;
    assert_eq!(
        latest,
        Some(LatestChange {
            event: events[2].clone(),
            prev_mac: Some(events[1].mac),
        }),
        "a's latest change is the highest remaining one"
    );
    let latest = snapshot(store, b, "b").latest_change;
    assert_eq!(
        latest.map(|l| (l.event.seq, l.prev_mac)),
        Some((9, Some(events[7].mac)))
    );
    let trail = get(store.audit_trail(a), "trail");
    assert_eq!(
        trail.iter().map(|l| (l.event.seq, l.prev_mac)).collect::<Vec<_>>(),
        [(2, None), (3, Some(events[1].mac))],
        "a's trail: the event before the first kept one is gone"
    );
    let feed = get(store.audit_changes(0, 100), "changes");
    assert_eq!(
        feed.iter().map(|l| (l.event.seq, l.prev_mac)).collect::<Vec<_>>(),
        [(2, None), (3, Some(events[1].mac)), (5, None), (9, Some(events[7].mac))],
    );
    // Pruning again, through the head, keeping nothing: the log is empty.
    ok(
        store,
        &[Write::PruneAudit {
            through: 10,
            keep: Vec::new(),
        }],
        "a prune of everything",
    );
    assert_eq!(get(store.audit_head(), "head"), None, "nothing left");
    assert_eq!(snapshot(store, a, "a").latest_change, None, "no change left");
    // The sequence numbers go on after a prune.
    ok(store, &[Write::AppendAudit(event(11, None))], "an append after a prune");
    assert_eq!(get(store.audit_head(), "head").map(|e| e.seq), Some(11));
}

/// A prune is part of its batch: when a later write of the batch fails, nothing is deleted.
pub fn prune_audit_is_atomic_with_the_batch<S: Store>(store: &S) {
    let events: Vec<Write> = (1..=4u64).map(|s| Write::AppendAudit(event(s, None))).collect();
    ok(store, &events, "events");
    refused(
        store,
        &[
            Write::PruneAudit {
                through: 3,
                keep: vec![2],
            },
            Write::ReplaceSecret(secret("audit_base", 1)),
            Write::AppendAudit(event(4, None)),
        ],
        StoreError::Conflict,
        "a prune with a repeated sequence number",
    );
    let seqs: Vec<u64> = get(store.audit_range(0, 100), "range").iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "nothing pruned");
    assert_eq!(get(store.secret("audit_base"), "secret"), None, "nothing written");
    ok(
        store,
        &[
            Write::PruneAudit {
                through: 3,
                keep: vec![2],
            },
            Write::ReplaceSecret(secret("audit_base", 1)),
            Write::AppendAudit(event(5, None)),
        ],
        "the same prune with a new event",
    );
    let seqs: Vec<u64> = get(store.audit_range(0, 100), "range").iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [2, 4, 5]);
    assert_eq!(get(store.secret("audit_base"), "secret"), Some(secret("audit_base", 1)));
    // Writes apply in order: an event pruned earlier in the batch can be appended again
    // (a row put back), one kept cannot.
    let mut again = event(4, None);
    again.detail = "again".into();
    ok(
        store,
        &[
            Write::PruneAudit {
                through: 4,
                keep: vec![2],
            },
            Write::AppendAudit(again.clone()),
        ],
        "a prune and an append of the pruned sequence number",
    );
    assert_eq!(get(store.audit_range(4, 1), "range"), [again]);
    refused(
        store,
        &[
            Write::PruneAudit {
                through: 4,
                keep: vec![2],
            },
            Write::AppendAudit(event(2, None)),
        ],
        StoreError::Conflict,
        "an append of a kept sequence number",
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_conforms() {
        super::run_all(crate::MemoryStore::new);
    }
}
