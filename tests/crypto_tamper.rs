//! Tampered, moved and wrongly keyed ciphertext: every failed open is `Error::Crypto` (or,
//! where the envelope is intact but the label on it is not, the denial that label earns).

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use egard::store::{WrappedKey, Write};
use egard::{AccessDenied, CustomerId, Error, ManualClock, MasterKey, Sealed, Store, Vault};

/// A vault on a fresh store of the backend, with the standard purposes and one customer
/// whose email is the canary.
fn setup(new_store: NewStore) -> (Arc<dyn Store>, Vault, ManualClock, CustomerId) {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let vault = vault_on(store.clone(), &clock);
    define_standard_purposes(&vault);
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", CANARY).unwrap();
    vault.set_field(c, "first_name", "Alice").unwrap();
    vault.set_field(c, "address", "1 Rue de la Paix").unwrap();
    consent(&vault, c, "newsletter");
    consent(&vault, c, "shipping");
    (store, vault, clock, c)
}

/// One way of damaging a byte string.
struct Mutation {
    what: String,
    /// The byte changed, for a flip; `None` for a change of length.
    at: Option<usize>,
    bytes: Vec<u8>,
}

/// Every single-bit flip, every single-byte inversion, every truncation and an extension of
/// `original`.
fn mutations(original: &[u8]) -> Vec<Mutation> {
    let mut out = Vec::new();
    for i in 0..original.len() {
        for bit in 0..8 {
            let mut bytes = original.to_vec();
            bytes[i] ^= 1 << bit;
            out.push(Mutation {
                what: format!("bit {bit} of byte {i}"),
                at: Some(i),
                bytes,
            });
        }
        let mut bytes = original.to_vec();
        bytes[i] ^= 0xff;
        out.push(Mutation {
            what: format!("byte {i} inverted"),
            at: Some(i),
            bytes,
        });
    }
    for len in 0..original.len() {
        out.push(Mutation {
            what: format!("truncated to {len}"),
            at: None,
            bytes: original[..len].to_vec(),
        });
    }
    let mut longer = original.to_vec();
    longer.push(0);
    out.push(Mutation {
        what: "one byte appended".into(),
        at: None,
        bytes: longer,
    });
    out
}

fn every_mutation_of_a_stored_field_envelope_fails_with_crypto(new_store: NewStore) {
    let (store, vault, clock, c) = setup(new_store);
    drop(vault);
    let original = stored_envelope(&*store, c, "email");
    assert!(!original.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));
    let cases = mutations(&original);
    assert!(cases.len() > 8 * original.len());
    // A vault caches the envelopes it has read, so each tampering is read by a fresh vault,
    // as after a restart on a store that was tampered with at rest.
    let reveal_fresh = || {
        let vault = vault_on(store.clone(), &clock);
        let pass = vault.authorize(c, "newsletter").unwrap();
        vault.reveal::<String>(&pass, "email").map(|v| v.expose().clone())
    };
    for Mutation { what, bytes, .. } in cases {
        put_envelope(&*store, c, "email", bytes);
        match reveal_fresh() {
            Err(Error::Crypto) => {}
            other => panic!("{what}: expected Error::Crypto, got {:?}", other.map(|_| ())),
        }
    }
    // The harness itself is sound: the original bytes open again.
    put_envelope(&*store, c, "email", original);
    assert_eq!(reveal_fresh().unwrap(), CANARY);
}

fn every_mutation_of_a_stored_wrapped_key_fails_with_crypto(new_store: NewStore) {
    let (store, vault, clock, c) = setup(new_store);
    drop(vault);
    let snapshot = store.customer(c).unwrap().unwrap();
    let original = snapshot.keys[0].clone();
    let put_key = |wrapped: Vec<u8>| {
        store
            .apply(&[Write::PutKey(WrappedKey {
                customer: c,
                version: original.version,
                wrapped,
            })])
            .unwrap();
    };
    for Mutation { what, bytes, .. } in mutations(&original.wrapped) {
        put_key(bytes);
        // A new vault reads the key afresh (a running one keeps it unwrapped in memory).
        let vault = vault_on(store.clone(), &clock);
        match vault.authorize(c, "newsletter") {
            Err(Error::Crypto) => {}
            other => panic!("{what}: expected Error::Crypto, got {other:?}"),
        }
    }
    put_key(original.wrapped);
    let vault = vault_on(store.clone(), &clock);
    let pass = vault.authorize(c, "newsletter").unwrap();
    assert_eq!(vault.reveal::<String>(&pass, "email").unwrap().expose(), CANARY);
}

fn ciphertext_moved_to_another_field_or_customer_fails(new_store: NewStore) {
    let (store, vault, _, alice) = setup(new_store);
    let bob = vault.create_customer().unwrap();
    vault.set_field(bob, "email", "bob@example.com").unwrap();
    vault.set_field(bob, "first_name", "Bob").unwrap();
    consent(&vault, bob, "newsletter");
    let alice_pass = vault.authorize(alice, "newsletter").unwrap();
    let bob_pass = vault.authorize(bob, "newsletter").unwrap();
    let alice_email = stored_envelope(&*store, alice, "email");

    // To another field of the same customer, one the pass covers: the AAD names the field.
    put_envelope(&*store, alice, "first_name", alice_email.clone());
    assert_crypto(vault.reveal::<String>(&alice_pass, "first_name"));
    // To the same field of another customer: another data key, and the AAD names the customer.
    put_envelope(&*store, bob, "email", alice_email.clone());
    assert_crypto(vault.reveal::<String>(&bob_pass, "email"));
    // Alice's own copy still opens.
    assert_eq!(vault.reveal::<String>(&alice_pass, "email").unwrap().expose(), CANARY);
}

fn a_data_key_moved_to_another_customer_fails(new_store: NewStore) {
    let (store, vault, clock, alice) = setup(new_store);
    let bob = vault.create_customer().unwrap();
    vault.set_field(bob, "email", "bob@example.com").unwrap();
    consent(&vault, bob, "newsletter");
    drop(vault);
    let alice_key = store.customer(alice).unwrap().unwrap().keys[0].clone();
    store
        .apply(&[Write::PutKey(WrappedKey {
            customer: bob,
            ..alice_key
        })])
        .unwrap();
    let vault = vault_on(store, &clock);
    assert_crypto(vault.authorize(bob, "newsletter"));
    assert!(vault.authorize(alice, "newsletter").is_ok());
}

fn a_wrong_master_key_fails_with_crypto(new_store: NewStore) {
    let (store, vault, clock, c) = setup(new_store);
    let sealed: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
    drop(vault);
    // Another key under the right id (1): the vault secrets do not open, so the vault is not
    // built, with the one opaque error (no oracle telling a wrong key from a damaged one).
    let wrong = Vault::builder()
        .master_key(MasterKey::from_bytes([8; 32]))
        .store(store.clone())
        .clock(clock.clone())
        .build();
    assert_crypto(wrong);
    // Nothing was written by the failed build: the right key still opens everything.
    let right = vault_on(store, &clock);
    let pass = right.authorize(c, "newsletter").unwrap();
    assert_eq!(sealed.open(&pass).unwrap().expose(), CANARY);
    assert_eq!(right.reveal::<String>(&pass, "email").unwrap().expose(), CANARY);
    assert!(right.verify_audit().is_ok());
}

fn a_master_key_with_another_id_is_not_tried(new_store: NewStore) {
    let (store, vault, clock, c) = setup(new_store);
    drop(vault);
    let build = |current: MasterKey, previous: Option<MasterKey>| {
        let mut b = Vault::builder()
            .master_key(current)
            .store(store.clone())
            .clock(clock.clone());
        if let Some(p) = previous {
            b = b.previous_master_key(p);
        }
        b.build()
    };
    // The right bytes under another id: keys are selected by id, never tried in turn; the
    // build says so, naming the ids (which every envelope shows in clear).
    assert!(matches!(
        build(MasterKey::from_bytes(KEY).with_id(2), None),
        Err(Error::WrongMasterKey { ref expected, ref given }) if expected == &[1] && given == &[2]
    ));
    // Wrong bytes under the right id, next to the right key under another id: still no, and
    // opaque.
    assert_crypto(build(
        MasterKey::from_bytes([9; 32]).with_id(1),
        Some(MasterKey::from_bytes(KEY).with_id(2)),
    ));
    // Rotation: the old key as a previous key, selected by its id.
    let new_key = || MasterKey::from_bytes([42; 32]).with_id(2);
    let v = build(new_key(), Some(MasterKey::from_bytes(KEY))).unwrap();
    assert!(v.authorize(c, "newsletter").is_ok());
    assert_eq!(v.rotate_master_key().unwrap(), 1);
    assert_eq!(v.rotate_master_key().unwrap(), 0, "nothing left to rotate");
    drop(v);
    let v = build(new_key(), None).unwrap();
    let pass = v.authorize(c, "newsletter").unwrap();
    assert_eq!(v.reveal::<String>(&pass, "email").unwrap().expose(), CANARY);
    drop((pass, v));
    // The old key alone no longer opens anything: the vault secrets were re-wrapped too.
    assert!(matches!(
        build(MasterKey::from_bytes(KEY), None),
        Err(Error::WrongMasterKey { ref expected, ref given }) if expected == &[2] && given == &[1]
    ));
}

fn another_namespace_never_opens(new_store: NewStore) {
    let (store, vault, clock, c) = setup(new_store);
    drop(vault);
    let other = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock)
        .namespace("another-shop")
        .build();
    // The vault secrets bind the namespace they were made in: the vault is not built.
    assert_crypto(other);
    let _ = c;
}

backend_tests!(
    every_mutation_of_a_stored_field_envelope_fails_with_crypto,
    every_mutation_of_a_stored_wrapped_key_fails_with_crypto,
    ciphertext_moved_to_another_field_or_customer_fails,
    a_data_key_moved_to_another_customer_fails,
    a_wrong_master_key_fails_with_crypto,
    a_master_key_with_another_id_is_not_tried,
    another_namespace_never_opens,
);

// ----- Sealed<T> kept by the application -----

/// Bytes of `Sealed::to_bytes` before the envelope: version, customer id, name length, name.
fn sealed_prefix_len(sealed: &Sealed<String>) -> usize {
    1 + 16 + 1 + sealed.field().as_str().len()
}

#[test]
fn every_bit_flip_of_sealed_bytes_fails() {
    let (_, vault, _, c) = setup(memory);
    let pass = vault.authorize(c, "newsletter").unwrap();
    let sealed: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
    let bytes = sealed.to_bytes();
    assert_eq!(Sealed::<String>::from_bytes(&bytes).unwrap(), sealed);
    let prefix = sealed_prefix_len(&sealed);
    for Mutation { what, at, bytes: m } in mutations(&bytes) {
        let result = Sealed::<String>::from_bytes(&m).and_then(|s| s.open(&pass));
        let in_envelope = at.is_some_and(|i| i >= prefix);
        match result {
            // A flip inside the envelope is a tampered ciphertext, whatever the byte.
            Err(Error::Crypto) => {}
            _ if in_envelope => panic!("{what}: expected Error::Crypto, got {:?}", result.map(|_| ())),
            // A flip in the label: malformed, not a customer id or field name, another
            // customer, another field.
            Err(Error::Invalid(_) | Error::InvalidId { .. }) => {}
            Err(Error::Denied(AccessDenied::WrongCustomer | AccessDenied::FieldNotCovered)) => {}
            other => panic!("{what}: unexpected {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn every_bit_flip_of_a_sealed_envelope_in_json_fails_with_crypto() {
    let (_, vault, _, c) = setup(memory);
    let pass = vault.authorize(c, "newsletter").unwrap();
    let sealed: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
    let json: serde_json::Value = serde_json::to_value(&sealed).unwrap();
    assert!(!json.to_string().contains(CANARY));
    let envelope = BASE64.decode(json["envelope"].as_str().unwrap()).unwrap();
    assert_eq!(envelope, sealed.envelope());
    for Mutation { what, at, bytes: m } in mutations(&envelope) {
        let mut doctored = json.clone();
        doctored["envelope"] = BASE64.encode(&m).into();
        match serde_json::from_value::<Sealed<String>>(doctored) {
            // Only a malformed layout (unknown format or algorithm, too short) is refused
            // while parsing; everything else must fail to open.
            Err(_) => assert!(matches!(at, Some(0 | 1) | None), "{what}: refused while parsing"),
            Ok(s) => match s.open(&pass) {
                Err(Error::Crypto) => {}
                other => panic!("{what}: expected Error::Crypto, got {:?}", other.map(|_| ())),
            },
        }
    }
}

#[test]
fn a_sealed_value_relabelled_to_another_customer_or_field_fails() {
    let (_, vault, _, alice) = setup(memory);
    let bob = vault.create_customer().unwrap();
    consent(&vault, bob, "newsletter");
    consent(&vault, bob, "shipping");
    let alice_news = vault.authorize(alice, "newsletter").unwrap();
    let alice_ship = vault.authorize(alice, "shipping").unwrap();
    let bob_news = vault.authorize(bob, "newsletter").unwrap();
    let sealed: Sealed<String> = vault.seal(alice, "email", &CANARY.to_string()).unwrap();
    let json = serde_json::to_value(&sealed).unwrap();
    let relabel = |key: &str, value: String| {
        let mut j = json.clone();
        j[key] = value.into();
        serde_json::from_value::<Sealed<String>>(j).unwrap()
    };

    let to_bob = relabel("customer", bob.to_string());
    assert_eq!(denied(to_bob.open(&alice_news)), AccessDenied::WrongCustomer);
    assert_crypto(to_bob.open(&bob_news));

    let to_first_name = relabel("field", "first_name".into());
    assert_crypto(to_first_name.open(&alice_news));

    let to_address = relabel("field", "address".into());
    assert_eq!(denied(to_address.open(&alice_news)), AccessDenied::FieldNotCovered);
    assert_crypto(to_address.open(&alice_ship));

    // The same through the binary form.
    let mut bytes = sealed.to_bytes();
    bytes[1..17].copy_from_slice(bob.as_bytes());
    let to_bob = Sealed::<String>::from_bytes(&bytes).unwrap();
    assert_eq!(to_bob.customer(), bob);
    assert_crypto(to_bob.open(&bob_news));

    // Untouched, it opens.
    assert_eq!(sealed.open(&alice_news).unwrap().expose(), CANARY);
}

#[test]
fn a_sealed_value_of_another_vault_does_not_open() {
    // Two vaults under the same master key, on different stores: a sealed value of one,
    // relabelled to a customer of the other, never opens there (each customer has their
    // own random data key).
    let (_, vault_a, _, a) = setup(memory);
    let sealed: Sealed<String> = vault_a.seal(a, "email", &CANARY.to_string()).unwrap();
    let (_, vault_b, _, b) = setup(memory);
    let pass_b = vault_b.authorize(b, "newsletter").unwrap();
    let mut bytes = sealed.to_bytes();
    bytes[1..17].copy_from_slice(b.as_bytes());
    let moved = Sealed::<String>::from_bytes(&bytes).unwrap();
    assert_crypto(moved.open(&pass_b));
}

#[test]
fn two_seals_of_the_same_value_differ() {
    let (_, vault, _, c) = setup(memory);
    let a: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
    let b: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
    assert_ne!(a.envelope(), b.envelope(), "fresh random nonce per seal");
    assert_eq!(
        &a.envelope()[..6],
        &[2, 1, 0, 0, 0, 1],
        "format 2, AES-256-GCM, data key v1"
    );
    assert_eq!(
        a.envelope().len(),
        egard::crypto::ENVELOPE_OVERHEAD + serde_json::to_vec(CANARY).unwrap().len()
    );
}
