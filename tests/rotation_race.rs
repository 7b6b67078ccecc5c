//! A master-key rotation racing another vault's customer-key rotation on the same store: the
//! other vault replaces a customer's data key (deleting the old one) between the rotation's
//! read and its write. The rotation must not write the deleted key back (which would revive
//! a shredded key and break the customer's state check): its batch is conditional on each
//! customer's revision, fails as stale, and is read again.

use std::sync::{Arc, Mutex};

use chrono::Duration;
use egard::store::{CustomerSnapshot, PurposeSnapshot, StoredField, StoredLookup, VaultSecret, Write};
use egard::{
    AuditEvent, CustomerId, Error, Evidence, FieldName, LawfulBasis, MasterKey, MemoryStore, Purpose, Store,
    StoreError, Vault,
};

type Hook = Box<dyn FnOnce() + Send>;

/// A memory store that runs a hook once, just before the first batch that writes a data key
/// after it is armed.
struct HookStore {
    inner: MemoryStore,
    hook: Mutex<Option<Hook>>,
}

impl Store for HookStore {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        if batch.iter().any(|w| matches!(w, Write::PutKey(_))) {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        self.inner.apply(batch)
    }
    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        self.inner.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        self.inner.customer(id)
    }
    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
        self.inner.field(customer, field)
    }
    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
        self.inner.fields(customer)
    }
    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        self.inner.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        self.inner.audit_head()
    }
    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_range(from_seq, limit)
    }
    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_for(customer)
    }
    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        self.inner.secret(name)
    }
    fn lookups(&self) -> Result<Vec<StoredLookup>, StoreError> {
        self.inner.lookups()
    }
    fn find_indexed(
        &self,
        field: &FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<CustomerId>, StoreError> {
        self.inner.find_indexed(field, token)
    }
}

fn k1() -> MasterKey {
    MasterKey::from_bytes([0x81; 32]).with_id(1)
}

fn k2() -> MasterKey {
    MasterKey::from_bytes([0x82; 32]).with_id(2)
}

/// A vault holding both keys, sharing the store with another (hence the time-to-live).
fn both(store: &Arc<HookStore>) -> Vault {
    Vault::builder()
        .master_key(k2())
        .previous_master_key(k1())
        .store(store.clone())
        .cache_ttl(Duration::milliseconds(1))
        .build()
        .unwrap()
}

fn email(vault: &Vault, c: CustomerId) -> Result<String, Error> {
    let pass = vault.authorize(c, "account")?;
    Ok(vault.reveal::<String>(&pass, "email")?.expose().clone())
}

#[test]
fn a_customer_key_rotated_during_the_master_key_rotation_is_not_brought_back() {
    let store = Arc::new(HookStore {
        inner: MemoryStore::new(),
        hook: Mutex::new(None),
    });
    let customers: Vec<CustomerId> = {
        let vault = Vault::builder().master_key(k1()).store(store.clone()).build().unwrap();
        vault
            .define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email"]))
            .unwrap();
        (0..3)
            .map(|i| {
                let c = vault.create_customer().unwrap();
                vault.set_field(c, "email", &format!("x{i}@example.com")).unwrap();
                vault.give_consent(c, "account", Evidence::new("contract")).unwrap();
                c
            })
            .collect()
    };
    let victim = customers[1];

    let rotating = both(&store);
    let other = Arc::new(both(&store));
    // Just before the rotation's first batch is written: the other vault gives the victim a
    // new data key (version 2, under key 2) and deletes version 1.
    let racer = other.clone();
    *store.hook.lock().unwrap() = Some(Box::new(move || racer.rotate_customer_key(victim).unwrap()));

    let done = rotating.rotate_master_key_with(10, |_| {}).unwrap();
    assert!(store.hook.lock().unwrap().is_none(), "the race happened");
    // Read again after the stale batch: the victim's new key was already current.
    assert_eq!((done.keys_rewrapped, done.keys_current), (2, 1));

    let keys = store.customer(victim).unwrap().unwrap().keys;
    assert_eq!(keys.len(), 1, "the deleted key is not written back");
    assert_eq!(keys[0].version, 2);
    assert!(rotating.keys_below(2).unwrap().is_empty());
    for (i, &c) in customers.iter().enumerate() {
        assert_eq!(email(&rotating, c).unwrap(), format!("x{i}@example.com"));
        assert_eq!(email(&other, c).unwrap(), format!("x{i}@example.com"));
    }
    rotating.verify_audit().unwrap();
}
