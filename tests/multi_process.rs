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

/// A real store whose fields read back as written a day before the end of the calendar.
struct Skewed(Arc<MemoryStore>);
impl egard::store::Store for Skewed {
    fn apply(&self, b: &[egard::store::Write]) -> Result<(), StoreError> {
        self.0.apply(b)
    }
    fn purposes(&self) -> Result<Vec<Purpose>, StoreError> {
        self.0.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<egard::store::CustomerSnapshot>, StoreError> {
        self.0.customer(id)
    }
    fn field(&self, c: CustomerId, f: &FieldName) -> Result<Option<egard::store::StoredField>, StoreError> {
        self.0.field(c, f)
    }
    fn fields(&self, c: CustomerId) -> Result<Vec<egard::store::StoredField>, StoreError> {
        let mut v = self.0.fields(c)?;
        for f in &mut v {
            f.written_at = chrono::DateTime::<Utc>::MAX_UTC - Duration::days(1);
        }
        Ok(v)
    }
    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        self.0.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        self.0.audit_head()
    }
    fn audit_range(&self, a: u64, l: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.0.audit_range(a, l)
    }
    fn audit_for(&self, c: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        self.0.audit_for(c)
    }
    fn secret(&self, n: &str) -> Result<Option<egard::store::VaultSecret>, StoreError> {
        self.0.secret(n)
    }
}

#[test]
fn the_sweep_keeps_a_field_whose_stored_time_is_at_the_end_of_the_calendar() {
    let inner = Arc::new(MemoryStore::new());
    let v = Vault::builder()
        .master_key(MasterKey::from_bytes([9; 32]))
        .store(Skewed(inner))
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
