//! Unit tests of the crypto internals: envelope layout, associated-data binding, key wrapping,
//! vault secrets, and the one opaque error.

use super::envelope::{self, HEADER_LEN};

/// A wrapped key under a `MasterKey`: header, nonce, key, tag.
const WRAPPED_LEN: usize = ENVELOPE_OVERHEAD + KEY_LEN;
use super::*;

const NS: &str = "egard";

fn kek() -> MasterKey {
    MasterKey::from_bytes([7; 32])
}

fn customer() -> CustomerId {
    CustomerId::new()
}

fn data_key(version: u32) -> (DataKey, Vec<u8>, CustomerId) {
    let c = customer();
    let (key, wrapped) = DataKey::generate(&kek(), NS, c, version).unwrap();
    (key, wrapped, c)
}

fn is_crypto<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Crypto))
}

// ----- field envelopes -----

#[test]
fn seal_then_open_round_trips_any_length() {
    let (key, _, c) = data_key(1);
    for len in [0usize, 1, 15, 16, 17, 1000] {
        let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let env = key.seal(NS, c, "email", 1, &plaintext).unwrap();
        assert_eq!(env.len(), ENVELOPE_OVERHEAD + len);
        assert_eq!(&*key.open(NS, c, "email", 1, &env).unwrap(), &plaintext[..]);
    }
}

#[test]
fn the_header_names_format_algorithm_and_key_version() {
    let (key, _, c) = data_key(0x0102_0304);
    let env = key.seal(NS, c, "email", 1, b"x").unwrap();
    assert_eq!(&env[..HEADER_LEN], &[FIELD_FORMAT, ALG_AES_256_GCM, 1, 2, 3, 4]);
    let parsed = FieldEnvelope::parse(&env).unwrap();
    assert_eq!(parsed.dek_version, 0x0102_0304);
    assert_eq!(parsed.header, &env[..HEADER_LEN]);
    assert_eq!(&parsed.nonce[..], &env[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
    assert_eq!(parsed.sealed.len(), 1 + 16);
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let (key, _, c) = data_key(1);
    let nonces: std::collections::HashSet<Vec<u8>> = (0..200)
        .map(|_| key.seal(NS, c, "email", 1, b"same").unwrap()[HEADER_LEN..HEADER_LEN + NONCE_LEN].to_vec())
        .collect();
    assert_eq!(nonces.len(), 200);
}

#[test]
fn the_associated_data_binds_namespace_customer_field_and_header() {
    let (key, _, c) = data_key(1);
    let env = key.seal(NS, c, "email", 1, b"secret").unwrap();
    assert!(key.open(NS, c, "email", 1, &env).is_ok());
    assert!(is_crypto(key.open("other", c, "email", 1, &env)));
    assert!(is_crypto(key.open(NS, customer(), "email", 1, &env)));
    assert!(is_crypto(key.open(NS, c, "phone", 1, &env)));
    assert!(is_crypto(key.open(NS, c, "", 1, &env)));
    // The write version: an envelope of an earlier (or later) write never opens as this one.
    for version in [0, 2, u64::MAX] {
        assert!(is_crypto(key.open(NS, c, "email", version, &env)), "version {version}");
    }
    let detached = key.seal(NS, c, "email", DETACHED_VERSION, b"secret").unwrap();
    assert!(is_crypto(key.open(NS, c, "email", 1, &detached)));
    // Length prefixes: moving a byte between namespace and field changes the AAD.
    let env = key.seal("ab", c, "cd", 1, b"secret").unwrap();
    assert!(is_crypto(key.open("a", c, "bcd", 1, &env)));
    assert!(is_crypto(key.open("abc", c, "d", 1, &env)));
}

#[test]
fn a_version_mismatch_is_refused_before_decrypting() {
    let (key, _, c) = data_key(1);
    let mut env = key.seal(NS, c, "email", 1, b"secret").unwrap();
    env[5] = 2;
    assert!(is_crypto(key.open(NS, c, "email", 1, &env)));
}

#[test]
fn every_single_bit_flip_fails_with_the_one_opaque_error() {
    let (key, _, c) = data_key(1);
    let env = key.seal(NS, c, "email", 1, b"\"CANARY-7f3a9\"").unwrap();
    for i in 0..env.len() {
        for bit in 0..8 {
            let mut m = env.clone();
            m[i] ^= 1 << bit;
            assert!(is_crypto(key.open(NS, c, "email", 1, &m)), "bit {bit} of byte {i}");
        }
    }
    for len in 0..env.len() {
        assert!(
            is_crypto(key.open(NS, c, "email", 1, &env[..len])),
            "truncated to {len}"
        );
    }
}

#[test]
fn another_data_key_cannot_open() {
    let (a, _, c) = data_key(1);
    let (b, _) = DataKey::generate(&kek(), NS, c, 1).unwrap();
    let env = a.seal(NS, c, "email", 1, b"secret").unwrap();
    assert!(is_crypto(b.open(NS, c, "email", 1, &env)));
}

// ----- wrapped data keys -----

#[test]
fn a_wrapped_key_unwraps_to_the_same_key() {
    let (key, wrapped, c) = data_key(3);
    assert_eq!(wrapped.len(), WRAPPED_LEN);
    assert_eq!(&wrapped[..HEADER_LEN], &envelope::wrapped_header(1));
    let unwrapped = DataKey::unwrap(&kek(), NS, c, 3, &wrapped).unwrap();
    assert_eq!(unwrapped.version(), 3);
    let env = key.seal(NS, c, "email", 1, b"secret").unwrap();
    assert_eq!(&*unwrapped.open(NS, c, "email", 1, &env).unwrap(), b"secret");
    // Two wraps of the same key differ (fresh nonce).
    let raw = [9u8; 32];
    assert_ne!(kek().wrap(NS, c, 1, &raw).unwrap(), kek().wrap(NS, c, 1, &raw).unwrap());
}

#[test]
fn a_wrapped_key_is_bound_to_its_customer_version_namespace_and_master_key() {
    let (_, wrapped, c) = data_key(1);
    assert!(DataKey::unwrap(&kek(), NS, c, 1, &wrapped).is_ok());
    assert!(is_crypto(DataKey::unwrap(&kek(), NS, customer(), 1, &wrapped)));
    assert!(is_crypto(DataKey::unwrap(&kek(), NS, c, 2, &wrapped)));
    assert!(is_crypto(DataKey::unwrap(&kek(), "other", c, 1, &wrapped)));
    assert!(is_crypto(DataKey::unwrap(
        &MasterKey::from_bytes([8; 32]),
        NS,
        c,
        1,
        &wrapped
    )));
    // The right bytes under another id are not even tried.
    assert!(is_crypto(DataKey::unwrap(&kek().with_id(2), NS, c, 1, &wrapped)));
    // Nor is the header's key id changed to match.
    let mut relabelled = wrapped.clone();
    relabelled[5] = 2;
    assert!(is_crypto(DataKey::unwrap(&kek().with_id(2), NS, c, 1, &relabelled)));
    for i in 0..wrapped.len() {
        let mut m = wrapped.clone();
        m[i] ^= 0x80;
        assert!(is_crypto(DataKey::unwrap(&kek(), NS, c, 1, &m)), "byte {i}");
    }
}

#[test]
fn only_32_byte_keys_unwrap() {
    let c = customer();
    // A 16-byte key wraps to a shorter envelope, which the exact-length parse refuses.
    let short = kek().wrap(NS, c, 1, &[1u8; 16]).unwrap();
    assert_eq!(short.len(), WRAPPED_LEN - 16);
    assert!(is_crypto(kek().unwrap(NS, c, 1, &short)));
}

// ----- associated data buffer -----

#[test]
fn aad_parts_are_length_prefixed() {
    let mut a = AadBuf::new(&[1, 2]);
    a.part(b"ab").part(b"c");
    let mut b = AadBuf::new(&[1, 2]);
    b.part(b"a").part(b"bc");
    assert_ne!(a.aad().as_ref(), b.aad().as_ref());
    assert_eq!(a.aad().as_ref(), &[1, 2, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1, b'c']);
}

#[test]
fn aad_never_overflows_its_buffer() {
    let mut a = AadBuf::new(&[0; HEADER_LEN]);
    let long = [b'x'; 300];
    a.part(&long).part(&long).part(&long);
    assert_eq!(a.aad().as_ref().len(), AAD_MAX);
    // The longest real input, a field envelope's, fits whole and fills it exactly: header, a
    // 64-byte namespace, a customer, a 64-byte field name and the u64 write version.
    let mut real = AadBuf::new(&[0; HEADER_LEN]);
    real.part(&[b'n'; 64])
        .part(&[0; 16])
        .part(&[b'f'; 64])
        .part(&7u64.to_be_bytes());
    assert_eq!(real.aad().as_ref().len(), HEADER_LEN + 4 * 4 + 64 + 16 + 64 + 8);
    assert_eq!(real.aad().as_ref().len(), AAD_MAX);
    assert_eq!(
        &real.aad().as_ref()[AAD_MAX - 12..],
        &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]
    );
}

// ----- master keys -----

#[test]
fn master_keys_from_hex_match_from_bytes() {
    let c = customer();
    let wrapped = kek().wrap(NS, c, 1, &[5; 32]).unwrap();
    let from_hex = MasterKey::from_hex(&"07".repeat(32)).unwrap();
    assert!(from_hex.unwrap(NS, c, 1, &wrapped).is_ok());
    let generated = MasterKey::generate().unwrap();
    assert!(is_crypto(generated.unwrap(NS, c, 1, &wrapped)));
    assert_eq!(generated.id(), 1);
    assert_eq!(format!("{generated:?}"), "MasterKey { id: 1, .. }");
}

#[test]
fn data_key_debug_shows_the_version_only() {
    let (key, _, _) = data_key(4);
    assert_eq!(format!("{key:?}"), "DataKey { version: 4, .. }");
}

// ----- opening in place (reveal's path) -----

#[test]
fn open_owned_opens_in_place_what_open_opens() {
    let (key, _, c) = data_key(1);
    for len in [0, 1, 32, 256] {
        let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let envelope = key.seal(NS, c, "email", 1, &plaintext).unwrap();
        let borrowed = key.open(NS, c, "email", 1, &envelope).unwrap();
        let owned = key.open_owned(NS, c, "email", 1, envelope.clone()).unwrap();
        assert_eq!(borrowed.as_slice(), plaintext.as_slice());
        assert_eq!(owned.as_slice(), plaintext.as_slice());
    }
}

#[test]
fn open_owned_refuses_a_moved_tampered_or_truncated_envelope() {
    let (key, _, c) = data_key(1);
    let envelope = key.seal(NS, c, "email", 1, b"secret value").unwrap();
    assert!(is_crypto(key.open_owned(NS, c, "phone", 1, envelope.clone())));
    assert!(is_crypto(key.open_owned("other", c, "email", 1, envelope.clone())));
    assert!(is_crypto(key.open_owned(NS, customer(), "email", 1, envelope.clone())));
    for i in 0..envelope.len() {
        let mut tampered = envelope.clone();
        tampered[i] ^= 1;
        assert!(is_crypto(key.open_owned(NS, c, "email", 1, tampered)), "byte {i}");
    }
    for len in 0..envelope.len() {
        assert!(
            is_crypto(key.open_owned(NS, c, "email", 1, envelope[..len].to_vec())),
            "length {len}"
        );
    }
}

#[test]
fn a_vault_secret_is_bound_to_its_namespace_name_and_master_key() {
    let master = kek();
    let secret = [5u8; 32];
    let wrapped = master.wrap_secret(NS, "audit", &secret).unwrap();
    assert_eq!(WrappedKeyEnvelope::parse(&wrapped).unwrap().kek_id, master.id());
    assert_eq!(&**master.unwrap_secret(NS, "audit", &wrapped).unwrap(), &secret[..]);
    assert!(master.unwrap_secret("other-ns", "audit", &wrapped).is_err());
    assert!(master.unwrap_secret(NS, "other", &wrapped).is_err());
    assert!(
        MasterKey::from_bytes([8; 32])
            .unwrap_secret(NS, "audit", &wrapped)
            .is_err()
    );
    // Not a customer key, and a customer key is not a vault secret.
    let c = CustomerId::new();
    assert!(master.unwrap(NS, c, 1, &wrapped).is_err());
    let customer_key = master.wrap(NS, c, 1, &secret).unwrap();
    assert!(master.unwrap_secret(NS, "audit", &customer_key).is_err());
}

// ----- sealed choices -----

#[test]
fn sealed_choices_are_bound_to_their_consent_and_never_open_as_a_field() {
    let (key, _, c) = data_key(1);
    let consent = ConsentId::new();
    let plaintext = br#"{"topics":["food"]}"#;
    let sealed = key.seal_choices(NS, c, consent, plaintext).unwrap();
    assert_eq!(&*key.open_choices(NS, c, consent, &sealed).unwrap(), plaintext);
    assert!(
        is_crypto(key.open_choices(NS, c, ConsentId::new(), &sealed)),
        "another record"
    );
    assert!(
        is_crypto(key.open_choices(NS, customer(), consent, &sealed)),
        "another customer"
    );
    assert!(
        is_crypto(key.open_choices("shop", c, consent, &sealed)),
        "another namespace"
    );
    for version in [0, 1, 2] {
        assert!(
            is_crypto(key.open(NS, c, CHOICES_LABEL, version, &sealed)),
            "as a field"
        );
    }
    let field = key.seal(NS, c, "choices", 1, plaintext).unwrap();
    assert!(
        is_crypto(key.open_choices(NS, c, consent, &field)),
        "a field as choices"
    );
    let (other, _, _) = data_key(2);
    assert!(
        is_crypto(other.open_choices(NS, c, consent, &sealed)),
        "another key version"
    );
    for i in 0..sealed.len() {
        let mut flipped = sealed.clone();
        flipped[i] ^= 0x01;
        assert!(is_crypto(key.open_choices(NS, c, consent, &flipped)));
    }
    assert!(is_crypto(key.open_choices(NS, c, consent, &sealed[..10])));
}
