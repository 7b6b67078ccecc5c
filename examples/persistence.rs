//! Durable storage: close the vault, open the file again, and read through a fresh pass;
//! a wrong master key opens nothing and destroys nothing.
//!
//! ```text
//! cargo run --example persistence
//! ```

use egard::{Error, Evidence, LawfulBasis, MasterKey, Purpose, SqliteStore, Vault};

fn open(path: &std::path::Path, key: [u8; 32]) -> Result<Vault, Error> {
    Vault::builder()
        .master_key(MasterKey::from_bytes(key))
        .store(SqliteStore::open(path)?)
        .build()
}

fn main() -> Result<(), Error> {
    // Demo keys only: in production the master key comes from your KMS or the environment.
    let right_key = [0x42; 32];
    let wrong_key = [0x24; 32];
    let dir = tempfile::tempdir().map_err(|_| Error::Invalid("no temporary directory"))?;
    let path = dir.path().join("customers.db");

    println!("1. Write, then close everything");
    let alice = {
        let vault = open(&path, right_key)?;
        vault.define_purpose(Purpose::new("billing", LawfulBasis::Contract).fields(["address"]))?;
        let alice = vault.create_customer()?;
        vault.set_field(alice, "address", "1 Rue de la Paix, Paris")?;
        vault.give_consent(alice, "billing", Evidence::new("contract").source("order-1042"))?;
        println!("   customer {alice}: address sealed, contract recorded, vault dropped");
        alice
    };

    println!("2. Reopen the file: a new vault, an empty cache, a fresh pass");
    {
        let vault = open(&path, right_key)?;
        let pass = vault.authorize(alice, "billing")?;
        let address = vault.reveal::<String>(&pass, "address")?;
        println!("   address = {}", address.expose());
    }

    println!("3. Reopen with the wrong master key");
    {
        // The store opens (it holds only ciphertext), but the vault is not built: its keys do
        // not open. Another key under the same id fails with the one opaque error (no oracle
        // telling a wrong key from a damaged one); a key under another id is named plainly.
        match open(&path, wrong_key) {
            Err(Error::Crypto) => println!("   build: {} (Error::Crypto)", Error::Crypto),
            Err(other) => return Err(other),
            Ok(_) => return Err(Error::Invalid("a wrong master key built a vault")),
        }
        let renamed = Vault::builder()
            .master_key(MasterKey::from_bytes(wrong_key).with_id(2))
            .store(SqliteStore::open(&path)?)
            .build();
        match renamed {
            Err(e @ Error::WrongMasterKey { .. }) => println!("   build: {e}"),
            Err(other) => return Err(other),
            Ok(_) => return Err(Error::Invalid("a wrong master key built a vault")),
        }
    }

    println!("4. Nothing was lost: the right key still opens everything");
    let vault = open(&path, right_key)?;
    let pass = vault.authorize(alice, "billing")?;
    println!("   address = {}", vault.reveal::<String>(&pass, "address")?.expose());
    let report = vault.verify_audit()?;
    println!(
        "   audit chain intact over three sessions: {} events",
        report.events_verified
    );
    Ok(())
}
