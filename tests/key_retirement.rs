//! Retiring a master key: `VaultBuilder::min_master_key_id` refuses whatever is still wrapped
//! under an older id, even with that key configured as a previous one (a restored backup row,
//! or an old key left in a deployment), and `Vault::keys_below` finds everything a rotation
//! has yet to re-wrap.

use std::sync::Arc;

use egard::store::{WrappedKey, Write};
use egard::{
    CustomerId, Error, Evidence, FieldName, KeyBelow, LawfulBasis, MasterKey, MemoryStore, Purpose, SqliteStore, Store,
    Vault, VaultBuilder,
};

fn k1() -> MasterKey {
    MasterKey::from_bytes([0x71; 32]).with_id(1)
}

fn k2() -> MasterKey {
    MasterKey::from_bytes([0x72; 32]).with_id(2)
}

fn email(vault: &Vault, c: CustomerId) -> Result<String, Error> {
    let pass = vault.authorize(c, "account")?;
    Ok(vault.reveal::<String>(&pass, "email")?.expose().clone())
}

/// A store with `n` customers under master key 1.
fn populated(store: Arc<dyn Store>, n: usize) -> Vec<CustomerId> {
    let vault = Vault::builder().master_key(k1()).store(store).build().unwrap();
    vault
        .define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email"]))
        .unwrap();
    (0..n)
        .map(|i| {
            let c = vault.create_customer().unwrap();
            vault.set_field(c, "email", &format!("r{i}@example.com")).unwrap();
            vault.give_consent(c, "account", Evidence::new("contract")).unwrap();
            c
        })
        .collect()
}

fn both(store: &Arc<dyn Store>) -> VaultBuilder {
    Vault::builder()
        .master_key(k2())
        .previous_master_key(k1())
        .store(store.clone())
}

#[test]
fn the_current_key_must_be_at_or_above_the_floor() {
    let refused = Vault::builder()
        .master_key(k1())
        .min_master_key_id(2)
        .store(MemoryStore::new())
        .build();
    assert!(matches!(refused, Err(Error::Config(_))));
    let ok = Vault::builder()
        .master_key(k2())
        .min_master_key_id(2)
        .store(MemoryStore::new())
        .build();
    assert!(ok.is_ok());
}

#[test]
fn the_sweep_finds_what_is_left_and_the_floor_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("retire.db")).unwrap());
    let customers = populated(store.clone(), 4);

    // Before the rotation: everything is under key 1.
    {
        let vault = both(&store).build().unwrap();
        let below = vault.keys_below(2).unwrap();
        assert_eq!(below.len(), 2 + 4);
        for name in ["audit", "records"] {
            assert!(below.contains(&KeyBelow::Secret {
                name: name.into(),
                master_key_id: Some(1)
            }));
        }
        for &c in &customers {
            assert!(below.contains(&KeyBelow::DataKey {
                customer: c,
                version: 1,
                master_key_id: Some(1)
            }));
        }
        assert!(vault.keys_below(1).unwrap().is_empty(), "nothing is below key 1");
    }
    // A floor set too early: the vault secrets are under the retired key, so no vault is
    // built (rather than one that refuses everything), even with key 1 configured.
    match both(&store).min_master_key_id(2).build() {
        Err(Error::RetiredKey { master_key_id: 1 }) => {}
        other => panic!("a floor above the stored secrets: {other:?}"),
    }

    // The old wrapped key of one customer, as a backup taken before the rotation holds it.
    let victim = customers[2];
    let old_row: WrappedKey = store.customer(victim).unwrap().unwrap().keys[0].clone();

    let vault = both(&store).build().unwrap();
    assert_eq!(vault.rotate_master_key().unwrap(), 4);
    assert!(vault.keys_below(2).unwrap().is_empty(), "the rotation is complete");
    drop(vault);

    // The row comes back (a partial restore, or a write by someone holding the database).
    store.apply(&[Write::PutKey(old_row)]).unwrap();

    // With key 1 still configured and no floor, it is used again without a word.
    {
        let vault = both(&store).build().unwrap();
        assert_eq!(email(&vault, victim).unwrap(), "r2@example.com");
        assert_eq!(
            vault.keys_below(2).unwrap(),
            vec![KeyBelow::DataKey {
                customer: victim,
                version: 1,
                master_key_id: Some(1)
            }]
        );
    }
    // With the floor, it is refused; every other customer reads as before.
    {
        let vault = both(&store).min_master_key_id(2).build().unwrap();
        match email(&vault, victim) {
            Err(Error::RetiredKey { master_key_id: 1 }) => {}
            other => panic!("a key under a retired master key: {other:?}"),
        }
        for (i, &c) in customers.iter().enumerate().filter(|&(_, &c)| c != victim) {
            assert_eq!(email(&vault, c).unwrap(), format!("r{i}@example.com"));
        }
        // The rotation refuses it too (retired means retired), and writes nothing.
        assert!(matches!(
            vault.rotate_master_key(),
            Err(Error::RetiredKey { master_key_id: 1 })
        ));
        assert_eq!(vault.keys_below(2).unwrap().len(), 1);
        vault.verify_audit().unwrap();
    }
    // Lift the floor, finish the rotation, and set it again: all clear.
    {
        let vault = both(&store).build().unwrap();
        assert_eq!(vault.rotate_master_key().unwrap(), 1);
    }
    let vault = Vault::builder()
        .master_key(k2())
        .min_master_key_id(2)
        .store(store.clone())
        .build()
        .unwrap();
    assert!(vault.keys_below(2).unwrap().is_empty());
    for (i, &c) in customers.iter().enumerate() {
        assert_eq!(email(&vault, c).unwrap(), format!("r{i}@example.com"));
    }
    vault.verify_audit().unwrap();
}

#[test]
fn the_sweep_reports_a_key_that_does_not_parse() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let customers = populated(store.clone(), 2);
    store
        .apply(&[Write::PutKey(WrappedKey {
            customer: customers[0],
            version: 1,
            wrapped: vec![0xff; 10],
        })])
        .unwrap();
    let vault = Vault::builder().master_key(k1()).store(store).build().unwrap();
    assert_eq!(
        vault.keys_below(1).unwrap(),
        vec![KeyBelow::DataKey {
            customer: customers[0],
            version: 1,
            master_key_id: None
        }]
    );
    assert!(matches!(email(&vault, customers[0]), Err(Error::Crypto)));
    assert_eq!(email(&vault, customers[1]).unwrap(), "r1@example.com");
}

#[test]
fn the_retention_sweep_passes_over_a_customer_under_a_retired_key() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let customers = populated(store.clone(), 4);
    {
        // A field no purpose needs: the customers never agreed to the purpose covering it.
        let vault = Vault::builder().master_key(k1()).store(store.clone()).build().unwrap();
        vault
            .define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["nickname"]))
            .unwrap();
        for &c in &customers {
            vault.set_field(c, "nickname", "nick").unwrap();
        }
    }
    // The first customer the sweep visits: the others come after it.
    let victim = store.customer_ids().unwrap()[0];
    let old_row = store.customer(victim).unwrap().unwrap().keys[0].clone();
    both(&store).build().unwrap().rotate_master_key().unwrap();
    store.apply(&[Write::PutKey(old_row)]).unwrap();

    let vault = both(&store).min_master_key_id(2).build().unwrap();
    match vault.sweep_retention() {
        Err(Error::RetiredKey { master_key_id: 1 }) => {}
        other => panic!("the sweep with a customer under a retired key: {other:?}"),
    }
    // The others were swept all the same; the victim's field is still there.
    let nickname = FieldName::new("nickname").unwrap();
    for &c in customers.iter().filter(|&&c| c != victim) {
        assert!(store.field(c, &nickname).unwrap().is_none());
    }
    assert!(store.field(victim, &nickname).unwrap().is_some());
}
