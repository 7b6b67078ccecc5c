//! Every parser, fed truncated and random input: an error, never a panic; and what it accepts
//! is exactly what it should.

mod common;

use std::str::FromStr;

use chrono::Duration;
use common::*;
use egard::crypto::{ENVELOPE_OVERHEAD, FieldEnvelope, WrappedKeyEnvelope};
use egard::{
    AuditEvent, Consent, CustomerId, Error, Evidence, FieldName, LawfulBasis, ManualClock, MasterKey, MemoryStore,
    Purpose, PurposeId, Sealed, Vault,
};
use proptest::prelude::*;

/// The slug rule, written independently of the crate.
fn is_slug(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// A real sealed value, its binary form and its JSON (made once).
fn real_sealed() -> (Sealed<String>, Vec<u8>, String) {
    static ONCE: std::sync::OnceLock<(Sealed<String>, Vec<u8>, String)> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let (vault, _) = vault();
        define_standard_purposes(&vault);
        let c = vault.create_customer().unwrap();
        let sealed: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
        let bytes = sealed.to_bytes();
        let json = serde_json::to_string(&sealed).unwrap();
        (sealed, bytes, json)
    })
    .clone()
}

const WRAPPED_LEN: usize = ENVELOPE_OVERHEAD + 32;

// ----- truncation of real input -----

#[test]
fn every_truncation_of_real_input_is_refused_or_fails_to_open() {
    let (vault, _) = vault();
    define_standard_purposes(&vault);
    let c = vault.create_customer().unwrap();
    consent(&vault, c, "newsletter");
    let pass = vault.authorize(c, "newsletter").unwrap();
    let sealed: Sealed<String> = vault.seal(c, "email", &CANARY.to_string()).unwrap();
    let bytes = sealed.to_bytes();
    let json = serde_json::to_string(&sealed).unwrap();
    let envelope = sealed.envelope();

    for len in 0..envelope.len() {
        let cut = &envelope[..len];
        let parsed = FieldEnvelope::parse(cut);
        assert_eq!(parsed.is_ok(), len >= ENVELOPE_OVERHEAD, "{len}");
        assert!(WrappedKeyEnvelope::parse(cut).is_err() || len == WRAPPED_LEN);
    }
    for len in 0..bytes.len() {
        // Parses (an envelope cut inside its ciphertext still has a valid layout) or not,
        // but never opens.
        if let Ok(s) = Sealed::<String>::from_bytes(&bytes[..len]) {
            assert!(matches!(s.open(&pass), Err(Error::Crypto)), "{len}");
        }
    }
    for len in 0..json.len() {
        if let Some(cut) = json.get(..len) {
            assert!(serde_json::from_str::<Sealed<String>>(cut).is_err(), "{len}");
        }
    }
    assert_eq!(sealed.open(&pass).unwrap().expose(), CANARY);
    // The full forms round trip.
    assert_eq!(Sealed::<String>::from_bytes(&bytes).unwrap(), sealed);
    assert_eq!(serde_json::from_str::<Sealed<String>>(&json).unwrap(), sealed);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::from_value::<Sealed<String>>(value).unwrap(), sealed);
    assert_eq!(
        serde_json::from_reader::<_, Sealed<String>>(json.as_bytes()).unwrap(),
        sealed
    );
}

#[test]
fn envelope_layouts_are_checked() {
    // Field envelopes are format 2 (their associated data binds the write version).
    let mut good = vec![2u8, 1, 0, 0, 0, 7];
    good.extend([0u8; 12 + 16]);
    assert_eq!(FieldEnvelope::parse(&good).unwrap().dek_version, 7);
    for (i, bad) in [(0, 0u8), (0, 1), (0, 3), (0, 255), (1, 0), (1, 2), (1, 255)] {
        let mut m = good.clone();
        m[i] = bad;
        assert!(
            matches!(FieldEnvelope::parse(&m), Err(Error::Crypto)),
            "byte {i} = {bad}"
        );
    }
    // Wrapped keys are format 1: neither layout parses as the other.
    let mut wrapped = vec![1u8, 1, 0, 0, 1, 2];
    wrapped.extend([0u8; 12 + 32 + 16]);
    assert_eq!(WrappedKeyEnvelope::parse(&wrapped).unwrap().kek_id, 258);
    assert!(matches!(FieldEnvelope::parse(&wrapped), Err(Error::Crypto)));
    let mut as_field = wrapped.clone();
    as_field[0] = 2;
    assert!(matches!(WrappedKeyEnvelope::parse(&as_field), Err(Error::Crypto)));
    // After the header, the body is the key provider's own bytes: 1 to MAX_WRAPPED_LEN of
    // them parse; a `MasterKey` accepts only its own exact length (nonce, key, tag).
    assert!(matches!(WrappedKeyEnvelope::parse(&wrapped[..6]), Err(Error::Crypto)));
    assert!(WrappedKeyEnvelope::parse(&wrapped[..7]).is_ok());
    let mut longest = wrapped[..6].to_vec();
    longest.resize(6 + egard::crypto::MAX_WRAPPED_LEN, 0);
    assert!(WrappedKeyEnvelope::parse(&longest).is_ok());
    longest.push(0);
    assert!(matches!(WrappedKeyEnvelope::parse(&longest), Err(Error::Crypto)));
    let master = egard::MasterKey::from_bytes([1; 32]);
    let body = egard::KeyProvider::wrap_key(&master, &[9; 32], b"aad").unwrap();
    assert_eq!(body.len(), 12 + 32 + 16);
    assert_eq!(
        &**egard::KeyProvider::unwrap_key(&master, &body, b"aad").unwrap(),
        &[9; 32]
    );
    for len in [0, 1, body.len() - 1] {
        assert_eq!(
            egard::KeyProvider::unwrap_key(&master, &body[..len], b"aad").err(),
            Some(egard::KeyProviderError::Invalid)
        );
    }
    let mut longer = body.clone();
    longer.push(0);
    assert_eq!(
        egard::KeyProvider::unwrap_key(&master, &longer, b"aad").err(),
        Some(egard::KeyProviderError::Invalid)
    );
    assert_eq!(
        egard::KeyProvider::unwrap_key(&master, &body, b"other aad").err(),
        Some(egard::KeyProviderError::Invalid)
    );
}

#[test]
fn customer_ids_must_be_uuid_v4_or_v7_however_they_arrive() {
    let v4 = uuid::Uuid::new_v4();
    let v1ish = uuid::Uuid::from_bytes([0x11; 16]); // version nibble 1
    let nil = uuid::Uuid::nil();
    assert!(CustomerId::from_str(&v4.to_string()).is_ok());
    assert!(CustomerId::from_str(&CustomerId::new().to_string()).is_ok());
    for bad in [v1ish, nil, uuid::Uuid::max()] {
        assert!(CustomerId::from_str(&bad.to_string()).is_err(), "{bad}");
        assert!(CustomerId::from_uuid(bad).is_err(), "{bad}");
        assert!(
            serde_json::from_value::<CustomerId>(bad.to_string().into()).is_err(),
            "{bad} accepted through serde"
        );
    }
    // A sealed value naming such a customer is refused in both forms.
    let (sealed, mut bytes, json) = real_sealed();
    bytes[1..17].copy_from_slice(nil.as_bytes());
    assert!(Sealed::<String>::from_bytes(&bytes).is_err());
    let doctored = json.replace(&sealed.customer().to_string(), &nil.to_string());
    assert!(serde_json::from_str::<Sealed<String>>(&doctored).is_err());
}

#[test]
fn master_keys_parse_only_64_hex_digits() {
    assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
    assert!(MasterKey::from_hex(&format!("  {}\n", "AB".repeat(32))).is_ok());
    for bad in [
        String::new(),
        "ab".repeat(31),
        "ab".repeat(33),
        format!("{}zz", "ab".repeat(31)),
        format!("{}é", "a".repeat(62)),
        format!("+{}", "a".repeat(63)),
    ] {
        assert!(matches!(MasterKey::from_hex(&bad), Err(Error::Config(_))), "{bad:?}");
    }
    // Same bytes from hex and from bytes: the same key.
    let store = std::sync::Arc::new(MemoryStore::new());
    let clock = ManualClock::new(t0());
    let a = vault_on(store.clone(), &clock);
    define_standard_purposes(&a);
    let c = a.create_customer().unwrap();
    consent(&a, c, "newsletter");
    drop(a);
    let b = Vault::builder()
        .master_key(MasterKey::from_hex(&"07".repeat(32)).unwrap())
        .store(store)
        .clock(clock)
        .build()
        .unwrap();
    assert!(b.authorize(c, "newsletter").is_ok());
}

#[test]
fn master_keys_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.key");
    std::fs::write(&raw, KEY).unwrap();
    assert!(MasterKey::from_file(&raw).is_ok());
    let hex = dir.path().join("hex.key");
    std::fs::write(&hex, format!("{}\n", "07".repeat(32))).unwrap();
    assert!(MasterKey::from_file(&hex).is_ok());
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, [0xffu8; 31]).unwrap();
    assert!(matches!(MasterKey::from_file(&bad), Err(Error::Config(_))));
    assert!(matches!(
        MasterKey::from_file(dir.path().join("missing")),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        MasterKey::from_env("EGARD_TEST_SURELY_UNSET_VARIABLE"),
        Err(Error::Config(_))
    ));
}

#[test]
fn extreme_durations_are_refused_not_overflowed() {
    let (vault, _) = vault();
    for d in [Duration::MAX, Duration::days(100_000_000), Duration::days(365_251)] {
        let r = vault.define_purpose(
            Purpose::new("p", LawfulBasis::Consent)
                .fields(["a"])
                .consent_lifetime(d),
        );
        assert!(matches!(r, Err(Error::Invalid(_))), "{d}: {r:?}");
        let r = vault.define_purpose(Purpose::new("q", LawfulBasis::Contract).fields(["a"]).retention(d));
        assert!(matches!(r, Err(Error::Invalid(_))), "{d}: {r:?}");
        for (lifetime, ttl) in [(d, Duration::minutes(1)), (Duration::minutes(1), d)] {
            let built = Vault::builder()
                .master_key(MasterKey::from_bytes(KEY))
                .store(MemoryStore::new())
                .pass_lifetime(lifetime)
                .cache_ttl(ttl)
                .build();
            assert!(matches!(built, Err(Error::Config(_))), "{d}");
        }
    }
    // The longest accepted periods work end to end.
    let thousand_years = Duration::days(365_250);
    vault
        .define_purpose(
            Purpose::new("p", LawfulBasis::Consent)
                .fields(["a"])
                .consent_lifetime(thousand_years)
                .retention(thousand_years),
        )
        .unwrap();
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "a", "x").unwrap();
    vault.give_consent(c, "p", Evidence::new("x")).unwrap();
    let pass = vault.authorize(c, "p").unwrap();
    assert!(vault.reveal::<String>(&pass, "a").is_ok());
    vault.withdraw_consent(c, "p").unwrap();
    assert!(vault.sweep_retention().unwrap().deleted.is_empty());
    let v = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(MemoryStore::new())
        .pass_lifetime(thousand_years)
        .cache_ttl(thousand_years)
        .build()
        .unwrap();
    define_standard_purposes(&v);
    let c = v.create_customer().unwrap();
    consent(&v, c, "shipping");
    assert!(v.authorize(c, "shipping").is_ok());
    assert!(v.authorize(c, "shipping").is_ok());
}

// ----- random input -----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn field_envelope_parse_never_panics(
        format in 0u8..4,
        alg in 0u8..3,
        rest in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        // The header bytes come from a small range so that every run also reaches the
        // accepting branch (format 2, algorithm 1), which uniform random bytes hit once in
        // 65,536 cases.
        let mut bytes = vec![format, alg];
        bytes.extend(rest);
        let ok = FieldEnvelope::parse(&bytes).is_ok();
        prop_assert_eq!(ok, bytes.len() >= ENVELOPE_OVERHEAD && format == 2 && alg == 1);
    }

    #[test]
    fn field_envelope_parse_of_random_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let _ = FieldEnvelope::parse(&bytes);
    }

    #[test]
    fn wrapped_key_parse_never_panics(
        format in 0u8..3,
        alg in 0u8..3,
        rest in proptest::collection::vec(any::<u8>(), 0..(egard::crypto::MAX_WRAPPED_LEN + 16)),
    ) {
        // The header (6 bytes) then the provider's body of 1 to MAX_WRAPPED_LEN bytes.
        let mut bytes = vec![format, alg];
        bytes.extend(rest);
        let ok = WrappedKeyEnvelope::parse(&bytes).is_ok();
        let body = bytes.len().saturating_sub(6);
        prop_assert_eq!(
            ok,
            format == 1 && alg == 1 && (1..=egard::crypto::MAX_WRAPPED_LEN).contains(&body)
        );
    }

    #[test]
    fn wrapped_key_parse_of_right_length_reads_the_key_id(
        id in any::<u32>(),
        rest in proptest::collection::vec(any::<u8>(), WRAPPED_LEN - 6),
    ) {
        let mut bytes = vec![1, 1];
        bytes.extend(id.to_be_bytes());
        bytes.extend(rest);
        prop_assert_eq!(WrappedKeyEnvelope::parse(&bytes).unwrap().kek_id, id);
    }

    #[test]
    fn sealed_from_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        let _ = Sealed::<String>::from_bytes(&bytes);
    }

    #[test]
    fn sealed_from_a_valid_prefix_and_random_tail_never_panics(
        cut in 0usize..80,
        tail in proptest::collection::vec(any::<u8>(), 0..80),
        name_len in any::<u8>(),
    ) {
        let (_, bytes, _) = real_sealed();
        let mut m = bytes[..cut.min(bytes.len())].to_vec();
        m.extend(&tail);
        let _ = Sealed::<String>::from_bytes(&m);
        // A lying field-name length.
        let mut m = bytes.clone();
        m[17] = name_len;
        let _ = Sealed::<String>::from_bytes(&m);
    }

    #[test]
    fn sealed_from_random_json_never_panics(
        text in any::<String>(),
        customer in any::<String>(),
        field in any::<String>(),
        envelope in any::<String>(),
        raw in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let _ = serde_json::from_str::<Sealed<String>>(&text);
        let _ = serde_json::from_slice::<Sealed<String>>(&raw);
        let doc = serde_json::json!({ "customer": customer, "field": field, "envelope": envelope });
        let _ = serde_json::from_value::<Sealed<String>>(doc.clone());
        let _ = serde_json::from_str::<Sealed<String>>(&doc.to_string());
        // A well-formed label around a random envelope.
        let doc = serde_json::json!({
            "customer": CustomerId::new(),
            "field": "email",
            "envelope": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw),
        });
        let parsed = serde_json::from_value::<Sealed<String>>(doc);
        prop_assert_eq!(parsed.is_ok(), FieldEnvelope::parse(&raw).is_ok());
    }

    #[test]
    fn slugs_accept_exactly_the_rule(s in any::<String>()) {
        prop_assert_eq!(FieldName::new(&s).is_ok(), is_slug(&s));
        prop_assert_eq!(PurposeId::new(&s).is_ok(), is_slug(&s));
        prop_assert_eq!(FieldName::from_str(&s).is_ok(), is_slug(&s));
        prop_assert_eq!(serde_json::from_value::<FieldName>(s.clone().into()).is_ok(), is_slug(&s));
        prop_assert_eq!(serde_json::from_value::<PurposeId>(s.clone().into()).is_ok(), is_slug(&s));
    }

    #[test]
    fn valid_slugs_round_trip(s in "[a-z0-9._-]{1,64}") {
        let f = FieldName::new(&s).unwrap();
        prop_assert_eq!(f.as_str(), s.as_str());
        prop_assert_eq!(serde_json::from_str::<FieldName>(&serde_json::to_string(&f).unwrap()).unwrap(), f);
        let upper = format!("{}A", s);
        prop_assert!(FieldName::new(&upper).is_err());
    }

    #[test]
    fn customer_id_parse_never_panics(s in any::<String>(), bytes in any::<[u8; 16]>()) {
        let _ = CustomerId::from_str(&s);
        let _ = serde_json::from_value::<CustomerId>(s.into());
        let uuid = uuid::Uuid::from_bytes(bytes);
        let ok = matches!(uuid.get_version_num(), 4 | 7);
        prop_assert_eq!(CustomerId::from_uuid(uuid).is_ok(), ok);
        prop_assert_eq!(CustomerId::from_str(&uuid.to_string()).is_ok(), ok);
        prop_assert_eq!(serde_json::from_value::<CustomerId>(uuid.to_string().into()).is_ok(), ok);
    }

    #[test]
    fn master_key_from_hex_never_panics(s in any::<String>(), hexish in "[0-9a-fA-F]{60,68}") {
        prop_assert!(MasterKey::from_hex(&s).is_err() || s.trim().len() == 64);
        prop_assert_eq!(MasterKey::from_hex(&hexish).is_ok(), hexish.len() == 64);
    }

    #[test]
    fn stored_records_from_random_json_never_panic(text in any::<String>(), raw in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = serde_json::from_str::<Purpose>(&text);
        let _ = serde_json::from_str::<Consent>(&text);
        let _ = serde_json::from_str::<Evidence>(&text);
        let _ = serde_json::from_str::<AuditEvent>(&text);
        let _ = serde_json::from_slice::<AuditEvent>(&raw);
        let _ = serde_json::from_slice::<Purpose>(&raw);
    }

    #[test]
    fn audit_event_mac_parsing_never_panics(mac in any::<String>(), seconds in any::<i64>()) {
        let doc = serde_json::json!({
            "seq": 1, "at": "2026-03-01T12:00:00Z", "kind": "exported",
            "customer": null, "purpose": null, "field": null, "detail": "", "mac": mac,
        });
        let _ = serde_json::from_value::<AuditEvent>(doc);
        let doc = serde_json::json!({
            "id": "p", "description": "", "basis": "consent", "fields": ["a"], "notice_version": 1,
            "consent_lifetime": seconds, "retention": seconds, "special_category": false,
            "direct_marketing": false,
        });
        let _ = serde_json::from_value::<Purpose>(doc);
    }
}
