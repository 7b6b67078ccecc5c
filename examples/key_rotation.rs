//! Moving a vault's master key into a KMS: a `KeyProvider` (here a stand-in that keeps its
//! key in process, as a KMS would keep it in its own hardware), a rotation from the old
//! `MasterKey` to it with progress, the sweep that shows nothing is left, and the old key
//! retired.
//!
//! ```text
//! cargo run --example key_rotation
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use egard::{
    Error, Evidence, KeyProvider, KeyProviderError, LawfulBasis, MasterKey, MemoryStore, Purpose, Store, Vault,
};
use zeroize::Zeroizing;

/// A stand-in for a KMS client: `wrap_key` and `unwrap_key` would be `Encrypt` and `Decrypt`
/// calls, with `aad` as the encryption context (see the `KeyProvider` docs for AWS KMS, GCP
/// Cloud KMS and Vault Transit). It counts its calls, to show the warm path makes none.
struct StandInKms {
    key: MasterKey,
    calls: AtomicUsize,
}

impl KeyProvider for StandInKms {
    fn key_id(&self) -> u32 {
        2
    }

    fn wrap_key(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.key.wrap_key(key, aad)
    }

    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.key.unwrap_key(wrapped, aad)
    }
}

fn main() -> Result<(), Error> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let old_key = || MasterKey::from_bytes([0x11; 32]).with_id(1);

    // A vault under a master key from the environment or a file (id 1), with customers.
    let vault = Vault::builder().master_key(old_key()).store(store.clone()).build()?;
    vault.define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email"]))?;
    let mut customers = Vec::new();
    for n in 0..1_000 {
        let c = vault.create_customer()?;
        vault.set_field(c, "email", &format!("customer{n}@example.com"))?;
        vault.give_consent(c, "account", Evidence::new("contract"))?;
        customers.push(c);
    }
    drop(vault);

    // The KMS key (id 2) becomes the current one; the old key stays until the rotation is done.
    let kms = Arc::new(StandInKms {
        key: MasterKey::generate()?.with_id(2),
        calls: AtomicUsize::new(0),
    });
    let vault = Vault::builder()
        .key_provider(kms.clone())
        .previous_master_key(old_key())
        .store(store.clone())
        .build()?;
    println!("still under master key 1: {} keys", vault.keys_below(2)?.len());
    let done = vault.rotate_master_key_with(250, |p| {
        println!(
            "  {:>5}/{} customers, {} keys re-wrapped, {:.0} customers/s",
            p.customers_done,
            p.customers_total,
            p.keys_rewrapped,
            p.customers_per_second()
        );
    })?;
    println!(
        "rotated: {} data keys and {} vault secrets, in {:.1?}",
        done.keys_rewrapped, done.secrets_rewrapped, done.elapsed
    );
    assert!(vault.keys_below(2)?.is_empty());
    drop(vault);

    // Key 1 retired: the vault holds only the KMS key, and refuses anything under an older id.
    let vault = Vault::builder()
        .key_provider(kms.clone())
        .min_master_key_id(2)
        .store(store)
        .build()?;
    let calls = kms.calls.load(Ordering::Relaxed);
    let pass = vault.authorize(customers[7], "account")?;
    println!("customer 7: {}", vault.reveal::<String>(&pass, "email")?.expose());
    for _ in 0..1_000 {
        let pass = vault.authorize(customers[7], "account")?;
        vault.reveal::<String>(&pass, "email")?;
    }
    println!(
        "KMS calls for 1,001 authorize+reveal of one customer: {} (one unwrap on the cache miss)",
        kms.calls.load(Ordering::Relaxed) - calls
    );
    vault.verify_audit()?;
    println!("audit chain verified across the rotation");
    Ok(())
}
