//! Several processes on one store (`cache_ttl` set): a change made through a process whose
//! cached copy is stale still acts on what the store holds; and stored times at the edge of
//! the calendar do not panic the retention sweep.

use std::sync::Arc;

use chrono::{Duration, Utc};
use egard::*;

fn vault(store: Arc<MemoryStore>, clock: ManualClock) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes([9; 32]))
        .store(store)
        .clock(clock)
        .cache_ttl(Duration::seconds(10))
        .build()
        .unwrap()
}

#[test]
fn a_withdrawal_through_a_stale_process_ends_the_record_another_process_renewed() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Utc::now());
    let p1 = vault(store.clone(), clock.clone());
    p1.define_purpose(Purpose::new("p", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let p2 = vault(store.clone(), clock.clone());
    let c = p1.create_customer().unwrap();
    p1.set_field(c, "email", "a@example.com").unwrap();
    p1.give_consent(c, "p", Evidence::new("t")).unwrap();
    // P2 renews the consent (R2 supersedes R1); P1 still caches R1 within its TTL.
    p2.give_consent(c, "p", Evidence::new("t")).unwrap();
    // The customer withdraws through P1.
    p1.withdraw_consent(c, "p").unwrap();
    clock.advance(Duration::seconds(11));
    for vault in [&p1, &p2] {
        assert!(matches!(
            vault.authorize(c, "p"),
            Err(Error::Denied(AccessDenied::Withdrawn))
        ));
    }
}

#[test]
fn a_restriction_through_a_stale_process_is_written() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Utc::now());
    let p1 = vault(store.clone(), clock.clone());
    p1.define_purpose(Purpose::new("p", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let p2 = vault(store.clone(), clock.clone());
    let c = p1.create_customer().unwrap();
    p1.give_consent(c, "p", Evidence::new("t")).unwrap();
    p1.restrict(c).unwrap();
    p2.lift_restriction(c).unwrap();
    // P1 still believes the customer is restricted; the customer asks again through P1.
    p1.restrict(c).unwrap();
    clock.advance(Duration::seconds(11));
    assert!(matches!(
        p2.authorize(c, "p"),
        Err(Error::Denied(AccessDenied::Restricted))
    ));
}

#[test]
fn a_stale_process_cannot_take_the_notice_version_down() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Utc::now());
    let p1 = vault(store.clone(), clock.clone());
    p1.define_purpose(
        Purpose::new("p", LawfulBasis::Consent)
            .fields(["email"])
            .notice_version(1),
    )
    .unwrap();
    let p2 = vault(store.clone(), clock.clone());
    let c = p1.create_customer().unwrap();
    p1.give_consent(c, "p", Evidence::new("t")).unwrap();
    p2.define_purpose(
        Purpose::new("p", LawfulBasis::Consent)
            .fields(["email"])
            .notice_version(3),
    )
    .unwrap();
    // P1 (stale) tries to edit the description at version 2.
    let stale = Purpose::new("p", LawfulBasis::Consent)
        .fields(["email"])
        .notice_version(2)
        .description("x");
    assert!(matches!(p1.define_purpose(stale), Err(Error::Invalid(_))));
    let p3 = vault(store.clone(), clock.clone());
    assert_eq!(p3.purpose("p").unwrap().required_notice_version(), 3);
    assert!(matches!(
        p1.authorize(c, "p"),
        Err(Error::Denied(AccessDenied::NoticeOutdated))
    ));
}

#[test]
fn the_sweep_keeps_a_field_whose_stored_time_is_at_the_end_of_the_calendar() {
    // Written a day before the end of the calendar: its retention window ends past it.
    let clock = egard::ManualClock::new(chrono::DateTime::<Utc>::MAX_UTC - Duration::days(1));
    let v = Vault::builder()
        .master_key(MasterKey::from_bytes([9; 32]))
        .store(MemoryStore::new())
        .clock(clock)
        .build()
        .unwrap();
    v.define_purpose(
        Purpose::new("p", LawfulBasis::Consent)
            .fields(["email"])
            .retention(Duration::days(30)),
    )
    .unwrap();
    let c = v.create_customer().unwrap();
    v.set_field(c, "email", "a@example.com").unwrap();
    let report = v.sweep_retention().unwrap();
    assert!(
        report.deleted.is_empty(),
        "a window ending past the calendar is still open"
    );
}

#[test]
fn a_field_rectified_by_another_process_reveals_through_a_pass_issued_before() {
    // Found by benches/load.rs: a pass issued by P2, then the field rewritten by P1, then P2's
    // first reveal (within P2's time-to-live, its envelopes not yet read) must not look like
    // tampering (`Error::Crypto`).
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Utc::now());
    let p1 = vault(store.clone(), clock.clone());
    p1.define_purpose(Purpose::new("p", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let p2 = vault(store.clone(), clock.clone());
    let c = p1.create_customer().unwrap();
    p1.set_field(c, "email", "old@example.com").unwrap();
    p1.give_consent(c, "p", Evidence::new("t")).unwrap();
    let pass = p2.authorize(c, "p").unwrap();
    p1.set_field(c, "email", "new@example.com").unwrap();
    let revealed = p2.reveal::<String>(&pass, "email").unwrap();
    assert_eq!(revealed.expose(), "new@example.com");
}
