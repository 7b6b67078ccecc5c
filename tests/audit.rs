//! The audit log: what it records, that `verify_audit` counts an intact chain and finds an
//! edited, dropped, inserted, swapped or truncated event (tampering with the stored log
//! underneath the vault), that a failed audit write fails the operation (fail closed), and
//! that the chain's key, stored wrapped under the master key, survives a master-key rotation.

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::*;
use egard::crypto::WrappedKeyEnvelope;
use egard::store::Write;
use egard::{AccessDenied, AuditBreak, AuditEvent, AuditKind, Error, Evidence, ManualClock, MasterKey, Store, Vault};

struct Setup {
    tamper: Arc<TamperStore>,
    vault: Vault,
    clock: ManualClock,
}

/// A vault over a `TamperStore` on the backend, with a known history of exactly 10 events.
fn setup(new_store: NewStore) -> Setup {
    let tamper = TamperStore::new(new_store());
    let clock = ManualClock::new(t0());
    let vault = vault_on(tamper.clone(), &clock);
    define_standard_purposes(&vault); // 1, 2
    let c = customer_with_data(&vault); // 3 created, 4-6 fields
    consent(&vault, c, "newsletter"); // 7
    clock.advance(Duration::seconds(1));
    let pass = vault.authorize(c, "newsletter").unwrap(); // 8 granted
    let _ = vault.authorize(c, "shipping"); // 9 denied
    vault.withdraw_consent(c, "newsletter").unwrap(); // 10
    drop(pass);
    Setup { tamper, vault, clock }
}

#[track_caller]
fn assert_broken(vault: &Vault, seq: u64, problem: AuditBreak) {
    match vault.verify_audit() {
        Err(Error::AuditBroken { seq: s, problem: p }) => {
            assert_eq!(
                (s, p),
                (seq, problem),
                "reported at the wrong place or for the wrong reason"
            )
        }
        other => panic!("expected AuditBroken at {seq} ({problem:?}), got {other:?}"),
    }
}

fn an_intact_log_verifies_and_counts_its_events(new_store: NewStore) {
    let Setup { tamper, vault, .. } = setup(new_store);
    let report = vault.verify_audit().unwrap();
    assert_eq!(report.events_verified, 10);
    let log = tamper.real_log();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let last_mac: String = log[9].mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(report.head_mac, last_mac);
    // More events, more verified; reading the log does not add to it.
    let c = vault.create_customer().unwrap();
    assert_eq!(vault.verify_audit().unwrap().events_verified, 11);
    vault.audit_events(c).unwrap();
    assert_eq!(vault.verify_audit().unwrap().events_verified, 11);
    // A vault started afresh on the same store continues the same chain.
    drop(vault);
    let clock = ManualClock::new(t0());
    let restarted = vault_on(tamper.clone(), &clock);
    assert_eq!(restarted.verify_audit().unwrap().events_verified, 11);
    restarted.create_customer().unwrap();
    assert_eq!(restarted.verify_audit().unwrap().events_verified, 12);
}

fn events_record_what_happened_and_nothing_more(new_store: NewStore) {
    let Setup { tamper, vault, .. } = setup(new_store);
    let log = tamper.real_log();
    let kinds: Vec<AuditKind> = log.iter().map(|e| e.kind).collect();
    use AuditKind::*;
    assert_eq!(
        kinds,
        [
            PurposeDefined,
            PurposeDefined,
            CustomerCreated,
            FieldWritten,
            FieldWritten,
            FieldWritten,
            ConsentGiven,
            AccessGranted,
            AccessDenied,
            ConsentWithdrawn,
        ]
    );
    let c = log[2].customer.unwrap();
    assert_eq!(log[0].customer, None);
    assert_eq!(log[0].detail, "notice_version=1");
    assert_eq!(log[3].field.as_ref().map(|f| f.as_str()), Some("email"));
    assert_eq!(log[7].purpose.as_ref().map(|p| p.as_str()), Some("newsletter"));
    assert_eq!(log[8].purpose.as_ref().map(|p| p.as_str()), Some("shipping"));
    assert_eq!(log[8].detail, egard::AccessDenied::NoConsent.code());
    assert_eq!(log[6].detail, vault.consents(c).unwrap()[0].id.to_string());
    assert_eq!(log[7].at, t0() + Duration::seconds(1));
    // The customer's own events, in order, and only theirs.
    let other = vault.create_customer().unwrap();
    let mine = vault.audit_events(c).unwrap();
    assert_eq!(mine, log[2..].to_vec());
    assert_eq!(vault.audit_events(other).unwrap().len(), 1);
    // Every code round-trips.
    for k in kinds {
        assert_eq!(AuditKind::from_code(k.code()), Some(k));
    }
    assert_eq!(AuditKind::from_code("nonsense"), None);
}

fn an_edited_event_is_found(new_store: NewStore) {
    let Setup { tamper, vault, .. } = setup(new_store);
    type Edit = fn(&mut AuditEvent);
    let edits: Vec<(&str, Edit)> = vec![
        ("detail", |e| e.detail = "edited".into()),
        ("kind", |e| e.kind = AuditKind::Erased),
        ("time", |e| e.at += Duration::microseconds(1)),
        ("customer", |e| e.customer = Some(egard::CustomerId::new())),
        ("customer removed or added", |e| {
            e.customer = match e.customer {
                Some(_) => None,
                None => Some(egard::CustomerId::new()),
            }
        }),
        ("purpose", |e| {
            e.purpose = Some(egard::PurposeId::new("edited").unwrap())
        }),
        ("field", |e| e.field = Some(egard::FieldName::new("edited").unwrap())),
        ("time moved back a day", |e| e.at -= Duration::days(1)),
        ("mac", |e| e.mac[31] ^= 1),
    ];
    for (what, edit) in edits {
        for at in [1usize, 9, 10] {
            let mut log = tamper.real_log();
            let original = log[at - 1].clone();
            edit(&mut log[at - 1]);
            assert_ne!(log[at - 1], original, "{what}: the edit must change something");
            tamper.forge_log(log);
            match vault.verify_audit() {
                Err(Error::AuditBroken {
                    seq,
                    problem: AuditBreak::MacMismatch,
                }) => assert_eq!(seq, at as u64, "{what}"),
                other => panic!("{what} of event {at}: {other:?}"),
            }
        }
    }
    // Re-chaining the edited event and every later one needs the audit key: a forger who
    // recomputes nothing is caught at the first edit, whatever follows.
    let mut log = tamper.real_log();
    log[3].detail = "x".into();
    log[6].detail = "y".into();
    tamper.forge_log(log);
    assert_broken(&vault, 4, AuditBreak::MacMismatch);
}

fn a_dropped_event_is_found(new_store: NewStore) {
    let Setup { tamper, vault, .. } = setup(new_store);
    for dropped in [1usize, 5, 9] {
        let mut log = tamper.real_log();
        log.remove(dropped - 1);
        tamper.forge_log(log);
        assert_broken(&vault, dropped as u64, AuditBreak::SequenceGap);
    }
    // Dropped and the rest renumbered to close the gap: the MACs do not follow.
    let mut log = tamper.real_log();
    log.remove(4);
    for e in &mut log[4..] {
        e.seq -= 1;
    }
    tamper.forge_log(log);
    assert_broken(&vault, 5, AuditBreak::MacMismatch);
    // The last event dropped: this vault knows it wrote 10.
    let mut log = tamper.real_log();
    log.pop();
    tamper.forge_log(log);
    assert_broken(&vault, 10, AuditBreak::Truncated);
    // Everything dropped.
    tamper.forge_log(Vec::new());
    assert_broken(&vault, 1, AuditBreak::Truncated);
}

fn a_truncated_log_changes_the_head_a_new_vault_reports(new_store: NewStore) {
    // A vault started on an already truncated log cannot know what it never saw; the head
    // MAC noted from an earlier report tells.
    let Setup { tamper, vault, clock } = setup(new_store);
    let noted = vault.verify_audit().unwrap();
    let mut log = tamper.real_log();
    log.pop();
    tamper.forge_log(log);
    drop(vault);
    let fresh = vault_on(tamper.clone(), &clock);
    let report = fresh.verify_audit().unwrap();
    assert_eq!(report.events_verified, 9);
    assert_ne!(report.head_mac, noted.head_mac);
}

fn an_inserted_event_is_found(new_store: NewStore) {
    let Setup { tamper, vault, .. } = setup(new_store);
    let real = tamper.real_log();
    // A forged event, renumbering the rest.
    let mut forged = real[7].clone();
    forged.detail = "forged".into();
    let mut log = real.clone();
    log.insert(
        4,
        AuditEvent {
            seq: 5,
            ..forged.clone()
        },
    );
    for e in &mut log[5..] {
        e.seq += 1;
    }
    tamper.forge_log(log);
    assert_broken(&vault, 5, AuditBreak::MacMismatch);
    // A replayed copy of a real event, next to it.
    let mut log = real.clone();
    log.insert(4, real[4].clone());
    tamper.forge_log(log);
    assert_broken(&vault, 6, AuditBreak::SequenceGap);
    // A forged event appended at the end.
    let mut log = real.clone();
    log.push(AuditEvent { seq: 11, ..forged });
    tamper.forge_log(log);
    assert_broken(&vault, 11, AuditBreak::MacMismatch);
    // A genuine event from another vault's chain (same key, other store, other customers).
    let Setup { tamper: other, .. } = setup(new_store);
    let mut log = real.clone();
    log[4] = other.real_log()[4].clone();
    tamper.forge_log(log);
    assert_broken(&vault, 5, AuditBreak::MacMismatch);
}

fn a_swapped_event_is_found(new_store: NewStore) {
    let Setup { tamper, vault, .. } = setup(new_store);
    let real = tamper.real_log();
    // Two rows swapped as stored, each keeping its sequence number.
    let mut log = real.clone();
    log.swap(7, 8);
    tamper.forge_log(log);
    assert_broken(&vault, 8, AuditBreak::SequenceGap);
    // Swapped and renumbered, so the sequence looks right.
    let mut log = real.clone();
    log.swap(7, 8);
    log[7].seq = 8;
    log[8].seq = 9;
    tamper.forge_log(log);
    assert_broken(&vault, 8, AuditBreak::MacMismatch);
    // Swapped with their MACs exchanged too.
    let mut log = real.clone();
    log.swap(2, 3);
    log[2].seq = 3;
    log[3].seq = 4;
    let (a, b) = (log[2].mac, log[3].mac);
    log[2].mac = b;
    log[3].mac = a;
    tamper.forge_log(log);
    assert_broken(&vault, 3, AuditBreak::MacMismatch);
    // Put back, it verifies.
    tamper.forge_log(real);
    assert_eq!(vault.verify_audit().unwrap().events_verified, 10);
}

fn a_failed_audit_write_fails_the_operation(new_store: NewStore) {
    let Setup { tamper, vault, clock } = setup(new_store);
    let c = customer_with_data(&vault);
    consent(&vault, c, "shipping");
    let before = tamper.real_log().len();
    let consents_before = vault.consents(c).unwrap();
    tamper.fail_audit_appends(true);

    // No pass without its audit event, granted or denied.
    assert!(matches!(vault.authorize(c, "shipping"), Err(Error::Storage(_))));
    assert!(matches!(vault.authorize(c, "newsletter"), Err(Error::Storage(_))));
    // No change without its audit event, and nothing half-written.
    assert!(matches!(
        vault.give_consent(c, "newsletter", Evidence::new("x")),
        Err(Error::Storage(_))
    ));
    assert_eq!(vault.consents(c).unwrap(), consents_before);
    assert!(matches!(
        vault.set_field(c, "address", "new street"),
        Err(Error::Storage(_))
    ));
    assert!(matches!(vault.create_customer(), Err(Error::Storage(_))));
    assert!(matches!(
        vault.export_customer(c, Evidence::new("verified-email-link")),
        Err(Error::Storage(_))
    ));
    assert!(matches!(vault.restrict(c), Err(Error::Storage(_))));
    assert!(matches!(vault.erase_customer(c), Err(Error::Storage(_))));
    assert!(matches!(vault.withdraw_consent(c, "shipping"), Err(Error::Storage(_))));
    clock.advance(Duration::days(400));
    assert!(matches!(vault.sweep_retention(), Err(Error::Storage(_))));
    assert_eq!(tamper.real_log().len(), before);

    // Back to normal: nothing was lost or half-done, and the chain has no gap.
    tamper.fail_audit_appends(false);
    let pass = vault.authorize(c, "shipping").unwrap();
    assert_eq!(
        vault.reveal::<String>(&pass, "address").unwrap().expose(),
        "1 Rue de la Paix"
    );
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::NoConsent);
    assert!(!tamper.customer(c).unwrap().unwrap().record.restricted);
    let report = vault.verify_audit().unwrap();
    assert_eq!(report.events_verified as usize, before + 2);
}

fn two_vaults_sharing_a_store_keep_one_chain(new_store: NewStore) {
    // Two processes on one database: each appends after the other's events.
    let store = new_store();
    let clock = ManualClock::new(t0());
    let a = process_on(store.clone(), &clock);
    define_standard_purposes(&a);
    let b = process_on(store.clone(), &clock);
    let x = a.create_customer().unwrap();
    let y = b.create_customer().unwrap();
    a.set_field(x, "email", "x@example.com").unwrap();
    b.set_field(y, "email", "y@example.com").unwrap();
    a.create_customer().unwrap();
    b.create_customer().unwrap();
    let log = whole_log(&*store);
    assert_eq!(log.len(), 8);
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert_eq!(a.verify_audit().unwrap().events_verified, 8);
    assert_eq!(b.verify_audit().unwrap().events_verified, 8);
}

/// The master key id that wraps the stored audit key.
fn audit_key_kek_id(store: &dyn Store) -> u32 {
    let secret = store
        .secret("audit")
        .unwrap()
        .expect("a built vault stores its audit key");
    WrappedKeyEnvelope::parse(&secret.wrapped).unwrap().kek_id
}

/// One of the vaults (processes) on `store`, with these master keys.
fn build(store: &Arc<dyn Store>, clock: &ManualClock, current: MasterKey, previous: Option<MasterKey>) -> Vault {
    try_build(store, clock, current, previous).unwrap()
}

/// As [`build`], returning the builder's error.
fn try_build(
    store: &Arc<dyn Store>,
    clock: &ManualClock,
    current: MasterKey,
    previous: Option<MasterKey>,
) -> Result<Vault, Error> {
    let mut b = Vault::builder()
        .master_key(current)
        .store(store.clone())
        .clock(clock.clone())
        .cache_ttl(chrono::Duration::seconds(1));
    if let Some(p) = previous {
        b = b.previous_master_key(p);
    }
    b.build()
}

fn the_chain_verifies_across_a_master_key_rotation(new_store: NewStore) {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let new_key = || MasterKey::from_bytes([42; 32]).with_id(2);
    let old = vault_on(store.clone(), &clock);
    define_standard_purposes(&old);
    let c = customer_with_data(&old);
    consent(&old, c, "newsletter");
    let before = old.verify_audit().unwrap();
    assert_eq!(audit_key_kek_id(&*store), 1);
    drop(old);
    // The new key current, the old one as previous: the stored audit key is opened with the
    // key its envelope names, so events written before the rotation chain on.
    let rotating = build(&store, &clock, new_key(), Some(MasterKey::from_bytes(KEY)));
    let pass = rotating.authorize(c, "newsletter").unwrap();
    assert_eq!(
        rotating.reveal::<String>(&pass, "email").unwrap().expose(),
        "alice@example.com"
    );
    assert_eq!(
        rotating.rotate_master_key().unwrap(),
        1,
        "one data key; the audit key is not counted"
    );
    assert_eq!(audit_key_kek_id(&*store), 2, "the audit key was re-wrapped");
    let rotated = whole_log(&*store)
        .into_iter()
        .filter(|e| e.kind == AuditKind::KeyRotated)
        .collect::<Vec<_>>();
    assert_eq!(rotated.len(), 3, "the data key, the audit key and the record key");
    for secret in ["audit_key", "records_key"] {
        assert!(
            rotated
                .iter()
                .any(|e| e.customer.is_none() && e.detail.starts_with(secret)),
            "{secret}"
        );
    }
    // Keep using it: more events after the rotation, all under the same audit key.
    let d = rotating.create_customer().unwrap();
    rotating.set_field(d, "email", "d@example.com").unwrap();
    rotating.withdraw_consent(c, "newsletter").unwrap();
    let report = rotating.verify_audit().unwrap();
    assert_eq!(report.events_verified, whole_log(&*store).len() as u64);
    assert!(report.events_verified > before.events_verified);
    assert_eq!(rotating.rotate_master_key().unwrap(), 0, "nothing left to rotate");
    assert_eq!(
        rotating.verify_audit().unwrap(),
        report,
        "a second rotation writes nothing"
    );
    drop(rotating);
    // Only the new key: it verifies the whole log and writes on.
    let after = build(&store, &clock, new_key(), None);
    assert_eq!(after.verify_audit().unwrap(), report);
    after.create_customer().unwrap();
    assert_eq!(
        after.verify_audit().unwrap().events_verified,
        report.events_verified + 1
    );
    // The old key alone opens neither the data nor the audit key any more: a vault with it is
    // not built, and the error names the ids.
    assert!(matches!(
        try_build(&store, &clock, MasterKey::from_bytes(KEY), None),
        Err(Error::WrongMasterKey { ref expected, ref given }) if expected == &[2] && given == &[1]
    ));
    assert_eq!(
        after.verify_audit().unwrap().events_verified,
        report.events_verified + 1
    );
}

fn the_audit_key_is_selected_by_id_never_tried(new_store: NewStore) {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    drop(vault);
    // The right bytes under another id (said plainly), and wrong bytes under the right id
    // next to them (the one opaque error): neither vault is built.
    assert!(matches!(
        try_build(&store, &clock, MasterKey::from_bytes(KEY).with_id(2), None),
        Err(Error::WrongMasterKey { .. })
    ));
    assert!(matches!(
        try_build(
            &store,
            &clock,
            MasterKey::from_bytes([9; 32]),
            Some(MasterKey::from_bytes(KEY).with_id(2)),
        ),
        Err(Error::Crypto)
    ));
    assert_eq!(vault_on(store, &clock).verify_audit().unwrap().events_verified, 2);
}

fn vaults_building_on_an_empty_store_at_once_share_one_audit_key(new_store: NewStore) {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                barrier.wait();
                let vault = process_on(store.clone(), &clock);
                vault.create_customer().unwrap();
            });
        }
    });
    assert_eq!(
        vault_on(store.clone(), &clock).verify_audit().unwrap().events_verified,
        4
    );
}

fn a_log_without_its_audit_key_is_never_extended(new_store: NewStore) {
    // An audit log, but no stored audit key (removed, or written before keys were stored):
    // no new key is made up for it, nothing is written.
    let store = new_store();
    let clock = ManualClock::new(t0());
    let other = new_store();
    vault_on(other.clone(), &clock).create_customer().unwrap();
    let event = whole_log(&*other).remove(0);
    store.apply(&[Write::AppendAudit(event)]).unwrap();
    let vault = vault_on(store.clone(), &clock);
    assert!(matches!(vault.create_customer(), Err(Error::Crypto)));
    assert!(matches!(vault.verify_audit(), Err(Error::Crypto)));
    assert_eq!(store.secret("audit").unwrap(), None);
    assert_eq!(whole_log(&*store).len(), 1);
}

fn many_threads_append_one_unbroken_chain(new_store: NewStore) {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let vault = Arc::new(vault_on(store.clone(), &clock));
    define_standard_purposes(&vault);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let vault = vault.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let c = vault.create_customer().unwrap();
                    vault.set_field(c, "email", "t@example.com").unwrap();
                    consent(&vault, c, "newsletter");
                    vault.authorize(c, "newsletter").unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(vault.verify_audit().unwrap().events_verified, 2 + 4 * 10 * 4);
    assert_eq!(whole_log(&*store).len(), 162);
}

fn batched_access_events_fail_closed_when_written(new_store: NewStore) {
    let tamper = TamperStore::new(new_store());
    let clock = ManualClock::new(t0());
    let vault = Vault::builder()
        .master_key(egard::MasterKey::from_bytes(KEY))
        .store(tamper.clone())
        .clock(clock.clone())
        .audit_batching(3, std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    define_standard_purposes(&vault);
    let c = customer_with_data(&vault);
    consent(&vault, c, "shipping");
    let before = tamper.real_log().len();
    vault.authorize(c, "shipping").unwrap();
    assert_eq!(denied(vault.authorize(c, "newsletter")), AccessDenied::NoConsent);
    assert_eq!(tamper.real_log().len(), before, "two access events queued");
    // The third fills the batch: the write fails, and so does the access.
    tamper.fail_audit_appends(true);
    assert!(matches!(vault.authorize(c, "shipping"), Err(Error::Storage(_))));
    assert!(matches!(vault.set_field(c, "email", "x"), Err(Error::Storage(_))));
    tamper.fail_audit_appends(false);
    // The queue was kept, in order; the failed access left no event.
    let report = vault.verify_audit().unwrap();
    assert_eq!(report.events_verified as usize, before + 2);
    let kinds: Vec<AuditKind> = tamper.real_log()[before..].iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [AuditKind::AccessGranted, AuditKind::AccessDenied]);
    // Dropping the vault writes what is queued.
    vault.authorize(c, "shipping").unwrap();
    drop(vault);
    let restarted = vault_on(tamper.clone(), &clock);
    assert_eq!(restarted.verify_audit().unwrap().events_verified as usize, before + 3);
}

fn verification_crosses_page_boundaries(new_store: NewStore) {
    // verify_audit reads the log in pages of 1024 events: break it on both sides of a page.
    let Setup { tamper, vault, .. } = setup(new_store);
    let c = tamper.real_log()[2].customer.unwrap();
    consent(&vault, c, "shipping");
    for _ in tamper.real_log().len()..2050 {
        vault.authorize(c, "shipping").unwrap();
    }
    let total = tamper.real_log().len() as u64;
    assert_eq!(vault.verify_audit().unwrap().events_verified, total);
    let real = tamper.real_log();
    for at in [1024usize, 1025, 2048, 2049] {
        let mut log = real.clone();
        log.remove(at - 1);
        tamper.forge_log(log);
        assert_broken(&vault, at as u64, AuditBreak::SequenceGap);
        let mut log = real.clone();
        log[at - 1].detail = "edited".into();
        tamper.forge_log(log);
        assert_broken(&vault, at as u64, AuditBreak::MacMismatch);
    }
    let mut log = real.clone();
    log.swap(1023, 1024);
    tamper.forge_log(log);
    assert_broken(&vault, 1024, AuditBreak::SequenceGap);
    tamper.forge_log(real[..1024].to_vec());
    assert_broken(&vault, 1025, AuditBreak::Truncated);
    tamper.forge_log(real);
    assert_eq!(vault.verify_audit().unwrap().events_verified, total);
}

backend_tests!(
    verification_crosses_page_boundaries,
    batched_access_events_fail_closed_when_written,
    an_intact_log_verifies_and_counts_its_events,
    events_record_what_happened_and_nothing_more,
    an_edited_event_is_found,
    a_dropped_event_is_found,
    a_truncated_log_changes_the_head_a_new_vault_reports,
    an_inserted_event_is_found,
    a_swapped_event_is_found,
    a_failed_audit_write_fails_the_operation,
    two_vaults_sharing_a_store_keep_one_chain,
    many_threads_append_one_unbroken_chain,
    the_chain_verifies_across_a_master_key_rotation,
    the_audit_key_is_selected_by_id_never_tried,
    vaults_building_on_an_empty_store_at_once_share_one_audit_key,
    a_log_without_its_audit_key_is_never_extended,
);

#[test]
fn a_vault_with_another_master_key_cannot_verify_the_log() {
    let store = memory();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let before = vault.verify_audit().unwrap().events_verified;
    drop(vault);
    let other = Vault::builder()
        .master_key(egard::MasterKey::from_bytes([1; 32]))
        .store(store.clone())
        .build();
    // It cannot open the stored audit key: it is not built (the one opaque error, as the id
    // matches), so it gives no verdict on the log, and writes nothing.
    assert!(matches!(other, Err(Error::Crypto)));
    let vault = vault_on(store, &clock);
    assert_eq!(vault.verify_audit().unwrap().events_verified, before);
}
