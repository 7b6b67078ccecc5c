//! `KeyProvider`: a provider of the test's own (its wrapped form is not a `MasterKey`'s) that
//! counts its calls and can be told to fail. The warm path never calls it; creation, rotation
//! and cache misses call it as documented; a failing provider is a typed error that writes
//! nothing, and the vault works again once it recovers; a master-key rotation goes from a
//! `MasterKey` to the provider and back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use egard::crypto::WrappedKeyEnvelope;
use egard::{
    CustomerId, Error, Evidence, KeyProvider, KeyProviderError, LawfulBasis, MasterKey, MemoryStore, Purpose, Store,
    Vault,
};
use zeroize::Zeroizing;

const MARK: &[u8] = b"test-kms:";

/// A stand-in for a KMS: an AES key it never hands out, its own wrapped format (a marker,
/// then the inner key's bytes), call counters, and a switch to make it fail.
struct TestKms {
    id: u32,
    inner: MasterKey,
    wraps: AtomicUsize,
    unwraps: AtomicUsize,
    /// 0: works; 1: unavailable; 2: denied; 3: wraps return nothing.
    mode: AtomicU8,
}

impl TestKms {
    fn new(id: u32, seed: u8) -> Arc<Self> {
        Arc::new(Self {
            id,
            inner: MasterKey::from_bytes([seed; 32]).with_id(id),
            wraps: AtomicUsize::new(0),
            unwraps: AtomicUsize::new(0),
            mode: AtomicU8::new(0),
        })
    }

    fn counts(&self) -> (usize, usize) {
        (self.wraps.load(Ordering::SeqCst), self.unwraps.load(Ordering::SeqCst))
    }

    fn fail(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), KeyProviderError> {
        match self.mode.load(Ordering::SeqCst) {
            1 => Err(KeyProviderError::Unavailable),
            2 => Err(KeyProviderError::Denied),
            _ => Ok(()),
        }
    }
}

impl KeyProvider for TestKms {
    fn key_id(&self) -> u32 {
        self.id
    }

    fn wrap_key(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        self.wraps.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        if self.mode.load(Ordering::SeqCst) == 3 {
            return Ok(Vec::new());
        }
        let mut out = MARK.to_vec();
        out.extend(self.inner.wrap_key(key, aad)?);
        Ok(out)
    }

    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let body = wrapped.strip_prefix(MARK).ok_or(KeyProviderError::Invalid)?;
        self.inner.unwrap_key(body, aad)
    }
}

fn purpose() -> Purpose {
    Purpose::new("account", LawfulBasis::Contract).fields(["email"])
}

fn vault_on(store: Arc<dyn Store>, kms: &Arc<TestKms>, capacity: usize) -> Result<Vault, Error> {
    Vault::builder()
        .key_provider(kms.clone())
        .store(store)
        .cache_capacity(capacity)
        .build()
}

/// A customer with an email and a contract on record.
fn customer(vault: &Vault, n: usize) -> CustomerId {
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", &format!("c{n}@example.com")).unwrap();
    vault.give_consent(c, "account", Evidence::new("contract")).unwrap();
    c
}

fn email(vault: &Vault, c: CustomerId) -> Result<String, Error> {
    let pass = vault.authorize(c, "account")?;
    Ok(vault.reveal::<String>(&pass, "email")?.expose().clone())
}

#[test]
fn the_provider_wraps_in_its_own_format_and_the_warm_path_never_calls_it() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let kms = TestKms::new(7, 1);
    let vault = vault_on(store.clone(), &kms, 1000).unwrap();
    // A new store: the audit key and the record key are made and wrapped.
    assert_eq!(kms.counts(), (2, 0));
    vault.define_purpose(purpose()).unwrap();
    let c = customer(&vault, 0);
    assert_eq!(kms.counts(), (3, 0), "one wrap per customer created");
    let stored = store.customer(c).unwrap().unwrap();
    let envelope = WrappedKeyEnvelope::parse(&stored.keys[0].wrapped).unwrap();
    assert_eq!(envelope.kek_id, 7);
    assert_eq!(
        &stored.keys[0].wrapped[6..6 + MARK.len()],
        MARK,
        "the provider's own bytes are stored"
    );

    for _ in 0..100 {
        assert_eq!(email(&vault, c).unwrap(), "c0@example.com");
        vault.set_field(c, "email", "c0@example.com").unwrap();
    }
    assert_eq!(
        kms.counts(),
        (3, 0),
        "authorize, reveal and set_field on a cached customer"
    );

    // A second vault on the store: the two secrets at build, then one unwrap per cache miss.
    drop(vault);
    let vault = vault_on(store, &kms, 1000).unwrap();
    assert_eq!(kms.counts(), (3, 2));
    assert_eq!(email(&vault, c).unwrap(), "c0@example.com");
    assert_eq!(kms.counts(), (3, 3));
    for _ in 0..50 {
        email(&vault, c).unwrap();
    }
    assert_eq!(kms.counts(), (3, 3));

    // A customer-key rotation makes one new key (one wrap), and unwraps nothing.
    vault.rotate_customer_key(c).unwrap();
    assert_eq!(kms.counts(), (4, 3));
    assert_eq!(email(&vault, c).unwrap(), "c0@example.com");
    assert_eq!(kms.counts(), (4, 3));
    vault.verify_audit().unwrap();
}

#[test]
fn a_failing_provider_is_a_typed_error_writes_nothing_and_the_vault_recovers() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let kms = TestKms::new(9, 2);
    // A cache of one customer, so that reading the other is a cache miss.
    let vault = vault_on(store.clone(), &kms, 1).unwrap();
    vault.define_purpose(purpose()).unwrap();
    let a = customer(&vault, 1);
    let b = customer(&vault, 2);
    assert_eq!(email(&vault, b).unwrap(), "c2@example.com");

    for (mode, reason) in [(1, KeyProviderError::Unavailable), (2, KeyProviderError::Denied)] {
        kms.fail(mode);
        let ids = store.customer_ids().unwrap();
        let head = store.audit_head().unwrap();
        let a_before = store.customer(a).unwrap();
        let b_before = store.customer(b).unwrap();

        match vault.create_customer() {
            Err(Error::KeyProvider(r)) => assert_eq!(r, reason),
            other => panic!("create_customer with a failing provider: {other:?}"),
        }
        match vault.rotate_customer_key(b) {
            Err(Error::KeyProvider(r)) => assert_eq!(r, reason),
            other => panic!("rotate_customer_key with a failing provider: {other:?}"),
        }
        // `a` is not cached: its key must be unwrapped.
        match email(&vault, a) {
            Err(Error::KeyProvider(r)) => assert_eq!(r, reason),
            other => panic!("a cache miss with a failing provider: {other:?}"),
        }
        // The error names the provider's reason and nothing else.
        assert_eq!(
            Error::KeyProvider(reason).to_string(),
            format!("key provider: {reason}")
        );

        // Nothing was written: no customer, no audit event, no key changed.
        assert_eq!(store.customer_ids().unwrap(), ids);
        assert_eq!(store.audit_head().unwrap(), head);
        assert_eq!(store.customer(a).unwrap(), a_before);
        assert_eq!(store.customer(b).unwrap(), b_before);

        kms.fail(0);
        assert_eq!(email(&vault, a).unwrap(), "c1@example.com");
        vault.rotate_customer_key(b).unwrap();
        assert_eq!(email(&vault, b).unwrap(), "c2@example.com");
        let c = vault.create_customer().unwrap();
        assert_eq!(store.customer_ids().unwrap().len(), ids.len() + 1);
        assert!(store.customer_ids().unwrap().contains(&c));
    }

    // A provider that returns nothing for a wrap breaks its contract: refused, nothing stored.
    kms.fail(3);
    let ids = store.customer_ids().unwrap();
    assert!(matches!(
        vault.create_customer(),
        Err(Error::KeyProvider(KeyProviderError::Invalid))
    ));
    assert_eq!(store.customer_ids().unwrap(), ids);
    kms.fail(0);
    vault.verify_audit().unwrap();
    drop(vault);

    // A vault is not built half-blind while its provider is down (it would refuse every
    // write until rebuilt): the build fails, and succeeds once the provider is back.
    for (mode, reason) in [(1, KeyProviderError::Unavailable), (2, KeyProviderError::Denied)] {
        kms.fail(mode);
        match vault_on(store.clone(), &kms, 1) {
            Err(Error::KeyProvider(r)) => assert_eq!(r, reason),
            other => panic!("a build with a failing provider: {other:?}"),
        }
    }
    kms.fail(0);
    let vault = vault_on(store, &kms, 1).unwrap();
    assert_eq!(email(&vault, a).unwrap(), "c1@example.com");
    vault.verify_audit().unwrap();
}

#[test]
fn a_wrapped_key_the_provider_cannot_open_is_the_opaque_crypto_error() {
    let store = Arc::new(MemoryStore::new());
    let kms = TestKms::new(4, 3);
    let vault = vault_on(store.clone(), &kms, 1).unwrap();
    vault.define_purpose(purpose()).unwrap();
    let a = customer(&vault, 1);
    drop(vault);
    // Another key under the same id: its unwrap says `Invalid`, which egard reports as the
    // one opaque error, as for any failed open.
    // The vault secrets do not open either, so the vault is not built (a damaged key and a
    // wrong one under the same id are one error: no oracle).
    let impostor = TestKms::new(4, 99);
    assert!(matches!(vault_on(store.clone(), &impostor, 1), Err(Error::Crypto)));
    // The right provider still reads everything.
    let vault = vault_on(store, &kms, 1).unwrap();
    assert_eq!(email(&vault, a).unwrap(), "c1@example.com");
}

#[test]
fn rotation_from_a_master_key_to_a_provider_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotate.db");
    let open = || -> Arc<dyn Store> { Arc::new(egard::SqliteStore::open(&path).unwrap()) };
    let old = || MasterKey::from_bytes([0x51; 32]).with_id(1);
    let kms = TestKms::new(2, 0x52);

    let vault = Vault::builder().master_key(old()).store(open()).build().unwrap();
    vault.define_purpose(purpose()).unwrap();
    let customers: Vec<CustomerId> = (0..5).map(|n| customer(&vault, n)).collect();
    drop(vault);

    // MasterKey 1 -> provider 2.
    let vault = Vault::builder()
        .key_provider(kms.clone())
        .previous_master_key(old())
        .store(open())
        .build()
        .unwrap();
    assert_eq!(kms.counts(), (0, 0), "the secrets are still under the old key");
    let done = vault.rotate_master_key_with(2, |_| {}).unwrap();
    assert_eq!((done.keys_rewrapped, done.secrets_rewrapped), (5, 2));
    assert_eq!(kms.counts(), (7, 0), "one wrap per data key and secret");
    assert!(vault.keys_below(2).unwrap().is_empty());
    drop(vault);

    // Only the provider now: everything reads back, the log verifies across the rotation.
    let vault = Vault::builder()
        .key_provider(kms.clone())
        .store(open())
        .build()
        .unwrap();
    for (n, &c) in customers.iter().enumerate() {
        assert_eq!(email(&vault, c).unwrap(), format!("c{n}@example.com"));
    }
    assert_eq!(kms.counts(), (7, 2 + 5));
    vault.verify_audit().unwrap();
    drop(vault);
    // The old key alone opens nothing: the vault is not even built, and says which key ids
    // the store needs.
    match Vault::builder().master_key(old()).store(open()).build() {
        Err(Error::WrongMasterKey { expected, given }) => {
            assert_eq!((expected, given), (vec![2], vec![1]));
        }
        other => panic!("a vault with the retired key alone: {other:?}"),
    }

    // Provider 2 -> MasterKey 3.
    let back = || MasterKey::from_bytes([0x53; 32]).with_id(3);
    let vault = Vault::builder()
        .master_key(back())
        .previous_key_provider(kms.clone())
        .store(open())
        .build()
        .unwrap();
    let before = kms.counts();
    assert_eq!(vault.rotate_master_key().unwrap(), 5);
    assert_eq!(
        kms.counts(),
        (before.0, before.1 + 7),
        "one unwrap per data key and secret"
    );
    assert!(vault.keys_below(3).unwrap().is_empty());
    drop(vault);

    let vault = Vault::builder().master_key(back()).store(open()).build().unwrap();
    for (n, &c) in customers.iter().enumerate() {
        assert_eq!(email(&vault, c).unwrap(), format!("c{n}@example.com"));
    }
    vault.verify_audit().unwrap();
    drop(vault);
    // The provider alone no longer opens the store: it is refused at build.
    assert!(matches!(
        Vault::builder().key_provider(kms.clone()).store(open()).build(),
        Err(Error::WrongMasterKey { expected, given }) if expected == vec![3] && given == vec![2]
    ));
}

#[test]
fn a_rotation_that_fails_on_the_provider_resumes_once_it_recovers() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let old = || MasterKey::from_bytes([0x61; 32]).with_id(1);
    let vault = Vault::builder().master_key(old()).store(store.clone()).build().unwrap();
    vault.define_purpose(purpose()).unwrap();
    let customers: Vec<CustomerId> = (0..6).map(|n| customer(&vault, n)).collect();
    drop(vault);

    let kms = TestKms::new(2, 0x62);
    let vault = Vault::builder()
        .key_provider(kms.clone())
        .previous_master_key(old())
        .store(store.clone())
        .build()
        .unwrap();
    // The provider goes down after the secrets and the first batch of two.
    let mut batches = 0;
    let failed = vault.rotate_master_key_with(2, |p| {
        if p.customers_done > 0 {
            batches += 1;
            kms.fail(1);
        }
    });
    assert!(matches!(failed, Err(Error::KeyProvider(KeyProviderError::Unavailable))));
    assert_eq!(batches, 1);
    let left = vault.keys_below(2).unwrap();
    assert_eq!(left.len(), 4, "the failed batch wrote nothing: {left:?}");

    kms.fail(0);
    let done = vault.rotate_master_key_with(2, |_| {}).unwrap();
    assert_eq!(
        (
            done.keys_rewrapped,
            done.keys_current,
            done.secrets_rewrapped,
            done.customers_done
        ),
        (4, 2, 0, 6)
    );
    assert!(done.is_complete());
    assert!(vault.keys_below(2).unwrap().is_empty());
    drop(vault);
    let vault = Vault::builder().key_provider(kms).store(store).build().unwrap();
    for (n, &c) in customers.iter().enumerate() {
        assert_eq!(email(&vault, c).unwrap(), format!("c{n}@example.com"));
    }
    vault.verify_audit().unwrap();
}

#[test]
fn progress_is_reported_after_the_secrets_and_after_each_batch() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let old = || MasterKey::from_bytes([0x71; 32]).with_id(1);
    let vault = Vault::builder().master_key(old()).store(store.clone()).build().unwrap();
    for _ in 0..5 {
        vault.create_customer().unwrap();
    }
    drop(vault);
    let kms = TestKms::new(2, 0x72);
    let vault = Vault::builder()
        .key_provider(kms.clone())
        .previous_master_key(old())
        .store(store)
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let done = vault
        .rotate_master_key_with(2, |p| {
            seen.push((
                p.customers_done,
                p.customers_total,
                p.keys_rewrapped,
                p.secrets_rewrapped,
            ))
        })
        .unwrap();
    assert_eq!(
        seen,
        [(0, 5, 0, 2), (2, 5, 2, 2), (4, 5, 4, 2), (5, 5, 5, 2)],
        "the secrets first, then one report per committed batch"
    );
    assert_eq!((done.customers_done, done.keys_rewrapped), (5, 5));
    assert!(done.is_complete());
    // Run again (a batch size of 0 is taken as 1): everything is already current.
    let mut reports = 0;
    let again = vault.rotate_master_key_with(0, |_| reports += 1).unwrap();
    assert_eq!(
        (again.keys_rewrapped, again.keys_current, again.secrets_rewrapped),
        (0, 5, 0)
    );
    assert_eq!(reports, 1 + 5);
    assert_eq!(vault.rotate_master_key().unwrap(), 0);
}

/// Crypto-shredding needs no key: a customer whose data key cannot be unwrapped now (the
/// provider is down, or refuses) is erased all the same, and stays erased.
#[test]
fn erasure_does_not_wait_for_the_provider() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let kms = TestKms::new(7, 1);
    let (alice, bob) = {
        let vault = vault_on(store.clone(), &kms, 100).unwrap();
        vault.define_purpose(purpose()).unwrap();
        (customer(&vault, 1), customer(&vault, 2))
    };
    // A new process: nobody cached, every data key behind the provider.
    let vault = vault_on(store.clone(), &kms, 100).unwrap();
    for mode in [1, 2] {
        kms.fail(mode);
        let who = if mode == 1 { alice } else { bob };
        assert!(
            matches!(email(&vault, who), Err(Error::KeyProvider(_))),
            "the data needs the provider"
        );
        let receipt = vault.erase_customer(who).unwrap();
        assert_eq!(receipt.customer, who);
        assert_eq!(receipt.fields.len(), 1);
        assert_eq!(receipt.key_versions, vec![1]);
        let snapshot = store.customer(who).unwrap().unwrap();
        assert!(
            snapshot.keys.is_empty() && snapshot.fields.is_empty(),
            "keys and fields are gone"
        );
        assert!(snapshot.record.erased_at.is_some());
        kms.fail(0);
        assert!(matches!(email(&vault, who), Err(Error::Erased(c)) if c == who));
        assert!(matches!(vault.erase_customer(who), Err(Error::Erased(c)) if c == who));
    }
    vault.verify_audit().unwrap();
    // The erasure receipts are the vault's own: a fresh vault re-applies them as no-ops.
    drop(vault);
    let vault = vault_on(store, &kms, 100).unwrap();
    assert!(vault.reapply_erasures(&[]).unwrap().is_empty());
}
