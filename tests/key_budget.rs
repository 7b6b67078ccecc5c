//! A data key is never used past its encryption budget: the encryptions of every key are
//! counted in the customer's authenticated state (stored writes one by one, values sealed for
//! the host in reserved blocks) and a key at its budget is replaced. And a customer's key can
//! be rotated on request: fields read back, old key gone, passes go on, audit verifies.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use egard::crypto::FieldEnvelope;
use egard::{AuditKind, Error, LawfulBasis, ManualClock, MasterKey, Purpose, Sealed, Store, Vault};

fn vault_with_budget(store: Arc<dyn Store>, clock: &ManualClock, budget: u64, ttl: bool) -> Vault {
    let mut builder = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock.clone())
        .encryption_budget(budget);
    if ttl {
        builder = builder.cache_ttl(chrono::Duration::seconds(1));
    }
    builder.build().unwrap()
}

fn define(vault: &Vault) {
    vault
        .define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email", "city"]))
        .unwrap();
}

/// Which data key version sealed an envelope (from its header).
fn key_version(envelope: &[u8]) -> u32 {
    FieldEnvelope::parse(envelope).unwrap().dek_version
}

/// Counts, per key version, the distinct envelopes seen (each encryption has its own nonce,
/// so each envelope is one encryption).
#[derive(Default)]
struct Uses(HashMap<u32, std::collections::HashSet<Vec<u8>>>);

impl Uses {
    fn see(&mut self, envelope: &[u8]) {
        self.0
            .entry(key_version(envelope))
            .or_default()
            .insert(envelope.to_vec());
    }
    fn max(&self) -> usize {
        self.0.values().map(|s| s.len()).max().unwrap_or(0)
    }
    fn keys(&self) -> usize {
        self.0.len()
    }
}

fn stored_writes_never_pass_the_budget(make: NewStore) {
    let store = make();
    let clock = ManualClock::new(t0());
    let vault = vault_with_budget(store.clone(), &clock, 4, false);
    define(&vault);
    let c = vault.create_customer().unwrap();
    let mut uses = Uses::default();
    for i in 0..15 {
        let field = if i % 2 == 0 { "email" } else { "city" };
        vault.set_field(c, field, &format!("value-{i}")).unwrap();
        for f in store.fields(c).unwrap() {
            uses.see(&f.envelope);
        }
    }
    assert!(uses.max() <= 4, "a key sealed {} values", uses.max());
    assert!(uses.keys() >= 4, "the key was never replaced: {} keys", uses.keys());
    // One key left in the store: each rotation destroyed the one before.
    let snapshot = store.customer(c).unwrap().unwrap();
    assert_eq!(snapshot.keys.len(), 1);
    assert!(snapshot.record.key_uses <= 4);
    // The latest values read back.
    consent(&vault, c, "account");
    let pass = vault.authorize(c, "account").unwrap();
    assert_eq!(vault.reveal::<String>(&pass, "email").unwrap().expose(), "value-14");
    assert_eq!(vault.reveal::<String>(&pass, "city").unwrap().expose(), "value-13");
    let rotations = vault
        .audit_events(c)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == AuditKind::KeyRotated)
        .count();
    assert_eq!(rotations, uses.keys() - 1);
    assert!(vault.verify_audit().is_ok());
}

fn host_sealed_values_never_pass_the_budget(make: NewStore) {
    let store = make();
    let clock = ManualClock::new(t0());
    let vault = vault_with_budget(store.clone(), &clock, 8, false);
    define(&vault);
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "stored@example.com").unwrap();
    consent(&vault, c, "account");
    let mut uses = Uses::default();
    let mut sealed = Vec::new();
    for i in 0..40 {
        let value: Sealed<String> = vault.seal(c, "city", &format!("city-{i}")).unwrap();
        uses.see(value.envelope());
        sealed.push(value);
        for f in store.fields(c).unwrap() {
            uses.see(&f.envelope);
        }
    }
    assert!(uses.max() <= 8, "a key made {} encryptions", uses.max());
    assert!(uses.keys() >= 5);
    assert!(store.customer(c).unwrap().unwrap().record.key_uses <= 8);
    let reservations = vault
        .audit_events(c)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == AuditKind::KeyUsesReserved)
        .count();
    assert!(reservations >= 10, "{reservations} reservations of 2 for 40 seals");
    // Values sealed under the current key open; those under a destroyed key do not.
    let pass = vault.authorize(c, "account").unwrap();
    let last = sealed.last().unwrap();
    assert_eq!(last.open(&pass).unwrap().expose(), "city-39");
    assert_crypto(sealed[0].open(&pass));
    assert_eq!(
        vault.reveal::<String>(&pass, "email").unwrap().expose(),
        "stored@example.com"
    );
}

fn two_processes_reserve_disjoint_uses(make: NewStore) {
    let store = make();
    let clock = ManualClock::new(t0());
    let a = vault_with_budget(store.clone(), &clock, 16, true);
    define(&a);
    let b = vault_with_budget(store.clone(), &clock, 16, true);
    let c = a.create_customer().unwrap();
    let mut uses = Uses::default();
    for i in 0..24 {
        // Each vault goes on from its own reservation, interleaved with the other's.
        let v = if (i / 3) % 2 == 0 { &a } else { &b };
        let value: Sealed<String> = v.seal(c, "city", &format!("city-{i}")).unwrap();
        uses.see(value.envelope());
    }
    assert!(uses.max() <= 16, "a key made {} encryptions", uses.max());
    assert!(store.customer(c).unwrap().unwrap().record.key_uses <= 16);
}

fn rotation_on_request(make: NewStore) {
    let store = make();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define(&vault);
    let c = vault.create_customer().unwrap();
    let other = vault.create_customer().unwrap();
    vault.set_field(c, "email", "alice@example.com").unwrap();
    vault.set_field(c, "city", "Lille").unwrap();
    vault.set_field(other, "email", "bob@example.com").unwrap();
    consent(&vault, c, "account");
    let before_pass = vault.authorize(c, "account").unwrap();
    let detached: Sealed<String> = vault.seal(c, "city", &"Metz".to_string()).unwrap();
    let old_key = store.customer(c).unwrap().unwrap().keys;
    let old_email = stored_envelope(store.as_ref(), c, "email");

    vault.rotate_customer_key(c).unwrap();

    let snapshot = store.customer(c).unwrap().unwrap();
    assert_eq!(snapshot.keys.len(), 1);
    assert_eq!(snapshot.keys[0].version, old_key[0].version + 1, "a new version");
    assert_ne!(snapshot.keys[0].wrapped, old_key[0].wrapped);
    assert_eq!(snapshot.record.key_uses, 2, "two fields sealed again");
    assert_ne!(stored_envelope(store.as_ref(), c, "email"), old_email);
    for f in store.fields(c).unwrap() {
        assert_eq!(key_version(&f.envelope), snapshot.keys[0].version);
    }
    // The pass issued before goes on; a new one too; the detached value is gone with its key.
    assert_eq!(
        vault.reveal::<String>(&before_pass, "email").unwrap().expose(),
        "alice@example.com"
    );
    let pass = vault.authorize(c, "account").unwrap();
    assert_eq!(vault.reveal::<String>(&pass, "city").unwrap().expose(), "Lille");
    assert_crypto(detached.open(&pass));
    // The old envelope written back does not open under the new key.
    put_envelope(store.as_ref(), c, "email", old_email);
    drop((pass, before_pass, vault));
    let restarted = vault_on(store.clone(), &clock);
    let pass = restarted.authorize(c, "account").unwrap();
    assert!(restarted.reveal::<String>(&pass, "email").is_err());
    // Another customer is untouched; the chain verifies; the event names the new version.
    let other_pass = {
        consent(&restarted, other, "account");
        restarted.authorize(other, "account").unwrap()
    };
    assert_eq!(
        restarted.reveal::<String>(&other_pass, "email").unwrap().expose(),
        "bob@example.com"
    );
    let rotated = restarted
        .audit_events(c)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == AuditKind::KeyRotated)
        .unwrap();
    assert_eq!(rotated.detail, "data_key_version=2,reason=requested");
    assert!(restarted.verify_audit().is_ok());
}

fn an_erased_customers_key_is_not_rotated(make: NewStore) {
    let store = make();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store, &clock);
    define(&vault);
    let c = vault.create_customer().unwrap();
    vault.erase_customer(c).unwrap();
    assert!(matches!(vault.rotate_customer_key(c), Err(Error::Erased(_))));
    assert!(matches!(
        vault.seal(c, "email", &"x@example.com".to_string()),
        Err(Error::Erased(_))
    ));
}

backend_tests!(
    stored_writes_never_pass_the_budget,
    host_sealed_values_never_pass_the_budget,
    two_processes_reserve_disjoint_uses,
    rotation_on_request,
    an_erased_customers_key_is_not_rotated,
);

#[test]
fn a_budget_out_of_range_is_refused() {
    for budget in [0, egard::ENCRYPTION_BUDGET + 1] {
        let built = Vault::builder()
            .master_key(MasterKey::from_bytes(KEY))
            .store(memory())
            .encryption_budget(budget)
            .build();
        assert!(matches!(built, Err(Error::Config(_))), "budget {budget}");
    }
}

#[test]
fn a_budget_smaller_than_the_fields_is_a_clear_error() {
    let clock = ManualClock::new(t0());
    let vault = vault_with_budget(memory(), &clock, 2, false);
    define(&vault);
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "a@example.com").unwrap();
    vault.set_field(c, "city", "Caen").unwrap();
    // Two fields fill a budget of two: the next write cannot rotate within it.
    assert!(matches!(vault.set_field(c, "city", "Pau"), Err(Error::Config(_))));
    let pass = {
        consent(&vault, c, "account");
        vault.authorize(c, "account").unwrap()
    };
    assert_eq!(
        vault.reveal::<String>(&pass, "city").unwrap().expose(),
        "Caen",
        "nothing lost"
    );
}
