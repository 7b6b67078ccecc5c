//! Harness functions shared by the fuzz targets (`fuzz/`) and the corpus replay test
//! (`tests/corpus_replay.rs`). Feature `fuzzing`; not part of the public API.
//!
//! Each function takes arbitrary bytes, runs them through one parser of untrusted input (and
//! the decryption behind it, with fixed test keys), and checks properties that must hold for
//! every input. A violated property is a panic: that is how a fuzzer reports it. The
//! functions themselves are the only place in the crate that asserts on input, on purpose.

use std::sync::{Arc, OnceLock};

use chrono::{Duration, TimeZone, Utc};

use crate::clock::ManualClock;
use crate::consent::Evidence;
use crate::crypto::{
    DETACHED_VERSION, DataKey, ENVELOPE_OVERHEAD, FieldEnvelope, MasterKey, WrappedKeyEnvelope, Wrapping,
};
use crate::error::{AccessDenied, Error};
use crate::gate::{AccessPass, Sealed, decode};
use crate::ids::{CustomerId, FieldName};
use crate::purpose::{LawfulBasis, Purpose};
use crate::store::{Authenticated, MemoryStore, Store, WrappedKey, Write};
use crate::vault::Vault;

/// The names of the fuzz targets, which are also the folders of `tests/corpus/`.
pub const TARGETS: [&str; 7] = [
    "field_envelope",
    "wrapped_key",
    "sealed_json",
    "sealed_bytes",
    "vault_ops",
    "sqlite_records",
    "json_decode",
];

/// Runs the harness of `target` on `data`. Unknown targets panic.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "field_envelope" => field_envelope(data),
        "wrapped_key" => wrapped_key(data),
        "sealed_json" => sealed_json(data),
        "sealed_bytes" => sealed_bytes(data),
        "vault_ops" => vault_ops(data),
        "sqlite_records" => sqlite_records(data),
        "json_decode" => json_decode(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

const NAMESPACE: &str = "egard";
const DEK_VERSION: u32 = 1;
/// The write version the field-envelope target opens at.
const FIELD_VERSION: u64 = 1;

/// Fixed keys and one customer whose id is known, so that valid inputs can be built.
struct Fixture {
    master: MasterKey,
    customer: CustomerId,
    other: CustomerId,
    dek: DataKey,
    wrapped: Vec<u8>,
    vault: Vault,
    pass: AccessPass,
}

fn fixed_customer(last: u8) -> CustomerId {
    let mut bytes = [0x5a; 16];
    bytes[6] = 0x4a; // version 4
    bytes[8] = 0x9a; // RFC 4122 variant
    bytes[15] = last;
    match CustomerId::from_uuid(uuid::Uuid::from_bytes(bytes)) {
        Ok(id) => id,
        Err(_) => unreachable!("a version-4 UUID is a valid customer id"),
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let customer = fixed_customer(1);
        let other = fixed_customer(2);
        let master = MasterKey::from_bytes([0x11; 32]);
        let wrapped = master
            .wrap(NAMESPACE, customer, DEK_VERSION, &[0x22; 32])
            .expect("wrap the fixture key");
        let dek = DataKey::unwrap(&master, NAMESPACE, customer, DEK_VERSION, &wrapped).expect("unwrap the fixture key");
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid date");
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([0x11; 32]))
            .store(MemoryStore::new())
            .clock(ManualClock::new(at))
            .pass_lifetime(Duration::days(365_000))
            .build()
            .expect("build the fixture vault");
        vault
            .define_purpose(Purpose::new("support", LawfulBasis::Contract).fields(["email", "name"]))
            .expect("define the fixture purpose");
        vault
            .create_customer_with_id(customer)
            .expect("create the fixture customer");
        vault
            .give_consent(customer, "support", Evidence::new("fuzz"))
            .expect("record the fixture basis");
        let pass = vault
            .authorize(customer, "support")
            .expect("authorize the fixture pass");
        Fixture {
            master,
            customer,
            other,
            dek,
            wrapped,
            vault,
            pass,
        }
    })
}

/// Field envelope: parse, then open under the fixture's data key for `email`.
pub fn field_envelope(data: &[u8]) {
    let f = fixture();
    let parsed = FieldEnvelope::parse(data);
    assert_eq!(parsed.is_ok(), data.len() >= ENVELOPE_OVERHEAD && data[..2] == [2, 1]);
    let opened = f.dek.open(NAMESPACE, f.customer, "email", FIELD_VERSION, data);
    if let Ok(plaintext) = opened {
        assert!(parsed.is_ok(), "an envelope that opens must parse");
        assert_eq!(plaintext.len() + ENVELOPE_OVERHEAD, data.len());
        // The associated data binds the field, the customer, the namespace and the write.
        assert!(f.dek.open(NAMESPACE, f.customer, "name", FIELD_VERSION, data).is_err());
        assert!(f.dek.open(NAMESPACE, f.other, "email", FIELD_VERSION, data).is_err());
        assert!(f.dek.open("other", f.customer, "email", FIELD_VERSION, data).is_err());
        assert!(
            f.dek
                .open(NAMESPACE, f.customer, "email", FIELD_VERSION + 1, data)
                .is_err()
        );
        let field = FieldName::new("email").expect("a valid field name");
        let _ = decode::<String>(&field, &plaintext);
        let _ = decode::<serde_json::Value>(&field, &plaintext);
    }
}

/// Wrapped data key: parse, then unwrap under the fixture's master key.
pub fn wrapped_key(data: &[u8]) {
    let f = fixture();
    let parsed = WrappedKeyEnvelope::parse(data);
    assert_eq!(
        parsed.is_ok(),
        data.len() > 6 && data.len() <= 6 + crate::crypto::MAX_WRAPPED_LEN && data[..2] == [1, 1]
    );
    if let Ok(raw) = f.master.unwrap(NAMESPACE, f.customer, DEK_VERSION, data) {
        assert_eq!(raw.len(), 32);
        assert!(parsed.is_ok_and(|p| p.kek_id == f.master.id()));
        // The associated data binds the customer, the key version and the namespace.
        assert!(f.master.unwrap(NAMESPACE, f.other, DEK_VERSION, data).is_err());
        assert!(f.master.unwrap(NAMESPACE, f.customer, DEK_VERSION + 1, data).is_err());
        assert!(f.master.unwrap("other", f.customer, DEK_VERSION, data).is_err());
        assert!(DataKey::unwrap(&f.master, NAMESPACE, f.customer, DEK_VERSION, data).is_ok());
    }
    // Another master key never opens it (keys are selected by id, never tried in turn).
    let other = MasterKey::from_bytes([0x33; 32]);
    assert!(other.unwrap(NAMESPACE, f.customer, DEK_VERSION, data).is_err());
}

/// Checks a parsed sealed value: both serialised forms round-trip to the same value, and
/// opening it through the fixture pass either fails cleanly or gives a value only for the
/// fixture customer and a field the pass covers.
fn check_sealed(sealed: &Sealed<String>) {
    let f = fixture();
    let bytes = sealed.to_bytes();
    let from_bytes = Sealed::<String>::from_bytes(&bytes).expect("to_bytes output parses");
    assert!(from_bytes == *sealed, "binary round trip changed the value");
    let json = serde_json::to_vec(sealed).expect("a sealed value serializes");
    let from_json: Sealed<String> = serde_json::from_slice(&json).expect("serialized JSON parses");
    assert!(from_json == *sealed, "JSON round trip changed the value");
    match sealed.open(&f.pass) {
        Ok(_) => {
            assert_eq!(sealed.customer(), f.customer);
            assert!(f.pass.fields().contains(sealed.field()));
        }
        Err(Error::Denied(AccessDenied::WrongCustomer)) => assert_ne!(sealed.customer(), f.customer),
        Err(Error::Denied(AccessDenied::FieldNotCovered)) => assert!(!f.pass.fields().contains(sealed.field())),
        Err(Error::Crypto | Error::Codec { .. }) => {}
        Err(e) => panic!("unexpected error opening a sealed value: {e:?}"),
    }
}

/// `Sealed<T>` from JSON.
pub fn sealed_json(data: &[u8]) {
    if let Ok(sealed) = serde_json::from_slice::<Sealed<String>>(data) {
        check_sealed(&sealed);
    }
}

/// `Sealed<T>` from its binary form ([`Sealed::from_bytes`]).
pub fn sealed_bytes(data: &[u8]) {
    if let Ok(sealed) = Sealed::<String>::from_bytes(data) {
        assert_eq!(sealed.to_bytes(), data, "the binary form is canonical");
        check_sealed(&sealed);
    }
}

/// Operation sequences on a vault, including raw bytes planted in the store as a tampered
/// database would hold them. Nothing may panic, the audit chain always verifies, and a value
/// revealed is the last value written (unless the store was tampered with).
pub fn vault_ops(data: &[u8]) {
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid date"),
    );
    let store = Arc::new(MemoryStore::new());
    let build = |store: Arc<MemoryStore>| {
        Vault::builder()
            .master_key(MasterKey::from_bytes([0x11; 32]).with_id(2))
            .previous_master_key(MasterKey::from_bytes([0x44; 32]))
            .store(store)
            .clock(clock.clone())
            .cache_capacity(4)
            .max_value_len(256)
            .build()
            .expect("build a vault")
    };
    let mut vault = build(store.clone());
    const PURPOSES: [&str; 3] = ["news", "ship", "ads"];
    const FIELDS: [&str; 4] = ["email", "name", "address", "phone"];
    let define = |vault: &Vault, i: usize, notice: u32| {
        let p = match i {
            0 => Purpose::new("news", LawfulBasis::Consent)
                .fields(["email", "name"])
                .consent_lifetime(Duration::days(10)),
            1 => Purpose::new("ship", LawfulBasis::Contract).fields(["name", "address"]),
            _ => Purpose::new("ads", LawfulBasis::LegitimateInterests)
                .fields(["email", "phone"])
                .direct_marketing(),
        };
        vault.define_purpose(p.notice_version(notice))
    };
    for i in 0..3 {
        define(&vault, i, 1).expect("define a purpose");
    }
    let mut customers: Vec<CustomerId> = Vec::new();
    let mut passes: Vec<AccessPass> = Vec::new();
    let mut sealed: Vec<Sealed<String>> = Vec::new();
    // The last value written per (customer, field); `None` once tampered or erased.
    let mut written: std::collections::HashMap<(CustomerId, &str), Option<String>> = Default::default();
    // Customers whose stored records that decide access differ from what the vault last wrote
    // (a fresh vault is built after each tampering): no access may be granted to them until
    // the records are put back exactly as they were (no vault operation can change them in
    // the meantime: each one fails its check). `legit` keeps what the vault last wrote.
    let mut tampered: std::collections::HashSet<CustomerId> = Default::default();
    let mut legit: std::collections::HashMap<CustomerId, crate::store::CustomerSnapshot> = Default::default();
    // Notes what the vault wrote for `c` before a tampering, and afterwards whether the
    // records now differ from it.
    let before_tampering =
        |c: CustomerId,
         tampered: &std::collections::HashSet<CustomerId>,
         legit: &mut std::collections::HashMap<CustomerId, crate::store::CustomerSnapshot>| {
            if !tampered.contains(&c) {
                if let Ok(Some(s)) = store.customer(c) {
                    legit.insert(c, s);
                }
            }
        };
    let after_tampering =
        |c: CustomerId,
         tampered: &mut std::collections::HashSet<CustomerId>,
         legit: &std::collections::HashMap<CustomerId, crate::store::CustomerSnapshot>| {
            let now = store.customer(c).ok().flatten();
            let same = match (now, legit.get(&c)) {
                (Some(now), Some(was)) => same_records(&now, was),
                _ => false,
            };
            if same {
                tampered.remove(&c);
            } else {
                tampered.insert(c);
            }
        };
    // Earlier stored states, for an attacker to write back as from a backup.
    let mut history: Vec<crate::store::CustomerSnapshot> = Vec::new();
    let mut input = data.iter().copied();
    let mut next = move || input.next();
    let mut steps = 0;
    while let Some(op) = next() {
        steps += 1;
        if steps > 64 {
            break;
        }
        let arg = next().unwrap_or(0);
        let pick = |n: usize| usize::from(arg) % n.max(1);
        let customer = (!customers.is_empty()).then(|| customers[pick(customers.len())]);
        let purpose = PURPOSES[usize::from(arg >> 4) % PURPOSES.len()];
        let field = FIELDS[usize::from(arg >> 2) % FIELDS.len()];
        match op % 20 {
            0 => {
                let notice = vault
                    .purpose(PURPOSES[pick(3)])
                    .map_or(1, |p| p.required_notice_version());
                let _ = define(&vault, pick(3), notice + u32::from(arg & 1));
            }
            1 if customers.len() < 8 => customers.extend(vault.create_customer().ok()),
            2 => {
                if let Some(c) = customer {
                    let len = usize::from(next().unwrap_or(0));
                    let value: String = std::iter::repeat_n('x', len).collect::<String>() + &steps.to_string();
                    if vault.set_field(c, field, &value).is_ok() {
                        written.insert((c, field), Some(value));
                    }
                }
            }
            3 => {
                if let Some(c) = customer {
                    let _ = vault.give_consent(c, purpose, Evidence::new("fuzz"));
                }
            }
            4 => {
                if let Some(c) = customer {
                    let _ = vault.withdraw_consent(c, purpose);
                }
            }
            5 => clock.advance(Duration::hours(i64::from(arg))),
            6 => {
                if let Some(c) = customer {
                    if let Ok(pass) = vault.authorize(c, purpose) {
                        assert!(!tampered.contains(&c), "access granted on tampered records");
                        if passes.len() < 16 {
                            passes.push(pass);
                        }
                    }
                }
            }
            7 => {
                if let Some(pass) = passes.get(pick(passes.len())) {
                    if let Ok(v) = vault.reveal::<String>(pass, field) {
                        if let Some(Some(expected)) = written.get(&(pass.customer(), field)) {
                            assert_eq!(v.expose(), expected, "revealed a value that was not written");
                        }
                    }
                    let _ = vault.reveal::<u64>(pass, field);
                }
            }
            8 => {
                if let Some(c) = customer {
                    let _ = if arg & 1 == 0 {
                        vault.restrict(c)
                    } else {
                        vault.lift_restriction(c)
                    };
                }
            }
            9 => {
                if let Some(c) = customer {
                    let _ = vault.object(c, purpose);
                }
            }
            10 => {
                if let Some(c) = customer {
                    if vault.erase_customer(c).is_ok() {
                        written.retain(|(k, _), _| *k != c);
                    }
                }
            }
            11 => {
                // A tampered field envelope in the database.
                if let Some(c) = customer {
                    let len = usize::from(next().unwrap_or(0)) % 64;
                    let envelope: Vec<u8> = (0..len).map_while(|_| next()).collect();
                    let name = FieldName::new(field).expect("a valid field name");
                    let at = clock_now(&clock);
                    if store
                        .apply(&[Write::PutField {
                            customer: c,
                            field: name,
                            version: u64::from(arg),
                            envelope,
                            at,
                        }])
                        .is_ok()
                    {
                        written.insert((c, field), None);
                    }
                }
            }
            12 => {
                // A tampered wrapped key in the database; a fresh vault must read it.
                if let Some(c) = customer {
                    let version = u32::from(next().unwrap_or(1));
                    let wrapped: Vec<u8> = (0..usize::from(arg) % 72).map_while(|_| next()).collect();
                    before_tampering(c, &tampered, &mut legit);
                    let _ = store.apply(&[Write::PutKey(WrappedKey {
                        customer: c,
                        version,
                        wrapped,
                    })]);
                    after_tampering(c, &mut tampered, &legit);
                    written.retain(|(k, _), _| *k != c);
                    passes.clear();
                    drop(vault);
                    vault = build(store.clone());
                }
            }
            13 => {
                if let Some(c) = customer {
                    if let Ok(export) = vault.export_customer(c, Evidence::new("fuzz")) {
                        let _ = serde_json::to_vec(&export);
                    }
                }
            }
            14 => {
                let _ = vault.sweep_retention();
                // A sweep may delete fields: forget what was expected of them.
                written.clear();
            }
            15 => {
                if let Some(c) = customer {
                    if let Ok(s) = vault.seal(c, field, &format!("sealed{steps}")) {
                        sealed.push(s);
                    }
                }
                if let (Some(s), Some(pass)) = (sealed.get(pick(sealed.len())), passes.get(pick(passes.len()))) {
                    let _ = s.open(pass);
                }
            }
            16 => {
                // A forged consent record: a live record for a customer who may never have
                // consented, with a MAC made of input bytes.
                if let Some(c) = customer {
                    let mut mac = [0u8; 32];
                    for b in &mut mac {
                        *b = next().unwrap_or(0);
                    }
                    let Ok(purpose) = crate::ids::PurposeId::new(purpose) else {
                        continue;
                    };
                    let forged = crate::consent::Consent {
                        id: crate::ids::ConsentId::new(),
                        customer: c,
                        purpose,
                        basis: LawfulBasis::Consent,
                        notice_version: u32::from(arg),
                        given_at: clock_now(&clock),
                        expires_at: None,
                        withdrawn_at: None,
                        superseded_by: None,
                        evidence: Evidence::new("forged").explicit(),
                        sealed_choices: None,
                    };
                    before_tampering(c, &tampered, &mut legit);
                    if store
                        .apply(&[Write::PutConsent(Authenticated { record: forged, mac })])
                        .is_ok()
                    {
                        after_tampering(c, &mut tampered, &legit);
                        passes.clear();
                        drop(vault);
                        vault = build(store.clone());
                    }
                }
            }
            17 => {
                // Earlier, correctly authenticated rows written back (as from a backup): all
                // of a customer's records (its state record last, forced over the current
                // revision), or only its consent records.
                if let Some(old) = history.get(pick(history.len())).cloned() {
                    let c = old.record.id;
                    let Ok(Some(now)) = store.customer(c) else {
                        continue;
                    };
                    let mut writes: Vec<Write> = old.consents.iter().cloned().map(Write::PutConsent).collect();
                    let whole = arg & 1 == 0;
                    if whole {
                        writes.push(Write::UpdateCustomer {
                            record: old.record.clone(),
                            expected_rev: now.record.rev,
                        });
                    }
                    before_tampering(c, &tampered, &mut legit);
                    if store.apply(&writes).is_ok() {
                        after_tampering(c, &mut tampered, &legit);
                        written.retain(|(k, _), _| *k != c);
                        passes.clear();
                        drop(vault);
                        vault = build(store.clone());
                    }
                }
            }
            18 => {
                if let Some(c) = customer {
                    if history.len() < 8 {
                        history.extend(store.customer(c).ok().flatten());
                    }
                }
            }
            19 => {
                // A fresh vault reads everything back from the store.
                passes.clear();
                drop(vault);
                vault = build(store.clone());
            }
            _ => {}
        }
    }
    let _ = vault.rotate_master_key();
    vault
        .verify_audit()
        .expect("the audit chain verifies after any sequence");
}

/// Whether two snapshots hold the same records (in any order), whatever their latest change.
fn same_records(a: &crate::store::CustomerSnapshot, b: &crate::store::CustomerSnapshot) -> bool {
    fn sorted<T: Clone, K: Ord>(v: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
        let mut v = v.to_vec();
        v.sort_by_key(|x| key(x));
        v
    }
    a.record == b.record
        && sorted(&a.keys, |k| k.version) == sorted(&b.keys, |k| k.version)
        && sorted(&a.consents, |c| c.record.id) == sorted(&b.consents, |c| c.record.id)
        && sorted(&a.objections, |o| o.mac) == sorted(&b.objections, |o| o.mac)
        && sorted(&a.fields, |f| f.field.clone()) == sorted(&b.fields, |f| f.field.clone())
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<Utc> {
    use crate::clock::Clock;
    clock.now()
}

/// Stored records decoded by the SQLite backend: rows written straight into the database
/// file (any SQLite type in any column, as a damaged or hostile file could hold), then read
/// through every `Store` method and through a vault built on the store. Nothing may panic;
/// a bad row is an error.
///
/// Input: a sequence of rows, each `table u8` then one value per column, each value
/// `tag u8` (null, integer, text, blob, or a "plausible" value: the fixture customer id, a
/// small integer, a known name) followed by its bytes. Without the `sqlite` feature, a no-op.
pub fn sqlite_records(data: &[u8]) {
    #[cfg(feature = "sqlite")]
    sqlite::records(data);
    #[cfg(not(feature = "sqlite"))]
    let _ = data;
}

/// Removes the database file of [`sqlite_records`] (call once its inputs are all run).
pub fn cleanup() {
    #[cfg(feature = "sqlite")]
    let _ = std::fs::remove_dir_all(sqlite::folder());
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::{Arc, Mutex, OnceLock, PoisonError};

    use rusqlite::types::Value;

    use super::{NAMESPACE, fixture};
    use crate::consent::Evidence;
    use crate::crypto::MasterKey;
    use crate::error::Error;
    use crate::ids::FieldName;
    use crate::store::{SqliteStore, Store, StoreError};
    use crate::vault::Vault;

    const TABLES: [(&str, usize); 7] = [
        ("purposes", 4),
        ("customers", 6),
        ("data_keys", 3),
        ("fields", 5),
        ("consents", 11),
        ("objections", 4),
        ("audit", 9),
    ];

    struct Db {
        store: Arc<SqliteStore>,
        raw: Mutex<rusqlite::Connection>,
    }

    /// The folder of this process's database file; see [`cleanup`](super::cleanup).
    pub(super) fn folder() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("egard-fuzz-{}", std::process::id()))
    }

    fn db() -> &'static Db {
        static DB: OnceLock<Db> = OnceLock::new();
        DB.get_or_init(|| {
            let dir = folder();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a temporary folder");
            let path = dir.join("fuzz.db");
            let store = Arc::new(SqliteStore::open(&path).expect("open the fuzz database"));
            let raw = rusqlite::Connection::open(&path).expect("open a second connection");
            raw.pragma_update(None, "synchronous", "OFF").expect("synchronous=OFF");
            raw.busy_timeout(std::time::Duration::from_secs(5))
                .expect("busy timeout");
            Db {
                store,
                raw: Mutex::new(raw),
            }
        })
    }

    fn value(input: &mut impl Iterator<Item = u8>) -> Value {
        let f = fixture();
        let bytes = |input: &mut dyn Iterator<Item = u8>| {
            let len = usize::from(input.next().unwrap_or(0) % 80);
            input.take(len).collect::<Vec<u8>>()
        };
        match input.next().unwrap_or(0) % 8 {
            0 => Value::Null,
            1 => {
                let b: Vec<u8> = input.take(8).collect();
                let mut a = [0u8; 8];
                a[..b.len()].copy_from_slice(&b);
                Value::Integer(i64::from_be_bytes(a))
            }
            2 => Value::Text(String::from_utf8_lossy(&bytes(input)).into_owned()),
            3 => Value::Blob(bytes(input)),
            4 => Value::Blob(f.customer.as_bytes().to_vec()),
            5 => Value::Integer(i64::from(input.next().unwrap_or(0) % 4)),
            6 => Value::Text(
                ["support", "email", "access_granted", "contract", "{}", "consent"]
                    [usize::from(input.next().unwrap_or(0)) % 6]
                    .to_owned(),
            ),
            _ => Value::Blob(f.wrapped.clone()),
        }
    }

    pub(super) fn records(data: &[u8]) {
        let db = db();
        let f = fixture();
        {
            let raw = db.raw.lock().unwrap_or_else(PoisonError::into_inner);
            let mut input = data.iter().copied();
            let mut rows = 0;
            while let Some(t) = input.next() {
                rows += 1;
                if rows > 6 {
                    break;
                }
                let (table, columns) = TABLES[usize::from(t) % TABLES.len()];
                let values: Vec<Value> = (0..columns).map(|_| value(&mut input)).collect();
                let marks = vec!["?"; columns].join(", ");
                // Constraint failures (NOT NULL, keys, CHECK) just skip the row.
                let _ = raw.execute(
                    &format!("INSERT OR REPLACE INTO {table} VALUES ({marks})"),
                    rusqlite::params_from_iter(values),
                );
            }
        }
        let store = &db.store;
        let id = f.customer;
        let email = FieldName::new("email").expect("a valid field name");
        let _ = store.purposes();
        let _ = store.customer(id);
        let _ = store.field(id, &email);
        let _ = store.fields(id);
        let _ = store.customer_ids();
        let _ = store.audit_head();
        let _ = store.audit_range(0, 16);
        let _ = store.audit_for(id);
        let built = Vault::builder()
            .master_key(MasterKey::from_bytes([0x11; 32]))
            .namespace(NAMESPACE)
            .store(store.clone())
            .build();
        if let Ok(vault) = built {
            // Every row was written straight into the file, none by a vault: nothing of it may
            // be trusted, so no access may be granted.
            assert!(
                vault.authorize(id, "support").is_err(),
                "access granted on rows no vault wrote"
            );
            let _ = vault.seal(id, "email", &"x".to_owned());
            let _ = vault.export_customer(id, Evidence::new("fuzz"));
            let _ = vault.consents(id);
            let _ = vault.sweep_retention();
            let _ = vault.rotate_master_key();
            match vault.verify_audit() {
                // Crypto: a damaged log with no stored audit key (the vault refuses to write).
                Ok(_) | Err(Error::AuditBroken { .. } | Error::Crypto | Error::Storage(StoreError::Corrupt(_))) => {}
                Err(e) => panic!("unexpected error verifying a damaged log: {e:?}"),
            }
        }
        // Back to an empty database for the next input.
        let raw = db.raw.lock().unwrap_or_else(PoisonError::into_inner);
        for (table, _) in TABLES {
            let _ = raw.execute(&format!("DELETE FROM {table}"), []);
        }
        // The audit key too (not a fuzzed table): each input starts from an empty store.
        let _ = raw.execute("DELETE FROM vault_secrets", []);
    }
}

/// Valid inputs to start fuzzing from (and to keep in the corpus).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let f = fixture();
    let seal = |customer: CustomerId, field: &str, value: &str| -> Sealed<String> {
        match f.vault.seal(customer, field, &value.to_owned()) {
            Ok(s) => s,
            Err(_) => Sealed::new(
                customer,
                FieldName::new(field).expect("a valid field name"),
                f.dek
                    .seal(NAMESPACE, customer, field, DETACHED_VERSION, value.as_bytes())
                    .expect("seal a seed"),
            ),
        }
    };
    match target {
        "field_envelope" => vec![
            f.dek
                .seal(NAMESPACE, f.customer, "email", FIELD_VERSION, b"\"alice@example.com\"")
                .expect("seal a seed"),
            f.dek
                .seal(NAMESPACE, f.customer, "email", FIELD_VERSION, b"")
                .expect("seal a seed"),
            f.dek
                .seal(NAMESPACE, f.customer, "email", FIELD_VERSION, b"[1,2,{}]")
                .expect("seal a seed"),
        ],
        "wrapped_key" => vec![f.wrapped.clone()],
        "sealed_json" => vec![
            serde_json::to_vec(&seal(f.customer, "email", "alice@example.com")).expect("serialize a seed"),
            serde_json::to_vec(&seal(f.customer, "name", "Alice")).expect("serialize a seed"),
        ],
        "sealed_bytes" => vec![
            seal(f.customer, "email", "alice@example.com").to_bytes(),
            seal(f.customer, "name", "").to_bytes(),
        ],
        "vault_ops" => vec![
            vec![1, 0, 2, 0, 3, 3, 0, 6, 0, 7, 0],
            vec![1, 0, 1, 1, 2, 4, 5, 3, 0, 6, 0, 4, 0, 7, 0, 10, 0, 7, 0, 13, 0],
            vec![
                1, 0, 2, 0, 3, 3, 0, 6, 0, 11, 0, 20, 1, 1, 0, 0, 0, 0, 7, 0, 12, 1, 40, 1, 1, 6, 0, 15, 0,
            ],
        ],
        "sqlite_records" => vec![
            // A customer row with the fixture id, its wrapped key, then a field.
            vec![1, 4, 5, 0, 5, 0, 0, 2, 4, 5, 1, 7, 3, 4, 6, 1, 3, 2, 5, 0],
            // A purpose row, a consent row and an audit row of plausible values.
            vec![
                0, 6, 0, 2, 3, b'{', b'}', b'x', 4, 3, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 4, 6,
                0, 6, 3, 5, 1, 5, 0, 0, 0, 0, 0, 6, 4, 6, 2, 5, 1, 5, 0, 6, 4, 6, 0, 6, 1, 2, 0, 3, 32,
            ],
        ],
        "json_decode" => vec![
            br#"{"name":"Al\"ice","tags":["a\\b","\u00e9\ud834\udd1e"],"n":-0.0,"m":18446744073709551615}"#.to_vec(),
            br#"[{"Struct":{"a":-9223372036854775808,"b":"x\ny"}},"Unit",{"Newtype":"\u0000"}]"#.to_vec(),
            br#"{"id":1,"kind":{"Tuple":[255,"t"]},"bytes":[0,1,255],"extra":[1e999,"\ud800"]}"#.to_vec(),
        ],
        _ => Vec::new(),
    }
}

/// An enum of every variant kind, for [`json_decode`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum JsonKind {
    /// A unit variant.
    Unit,
    /// A newtype variant.
    Newtype(String),
    /// A tuple variant.
    Tuple(u8, String),
    /// A struct variant.
    Struct {
        /// A signed integer.
        a: i64,
        /// An optional string.
        b: Option<String>,
    },
}

/// A record of typed fields, for [`json_decode`]; unknown fields are ignored.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JsonRecord {
    /// An integer.
    id: u32,
    /// An enum.
    kind: JsonKind,
    /// Bytes, as serde_json writes them (an array of numbers).
    bytes: Vec<u8>,
}

/// Whether serde_json, the reference, reads floats correctly rounded (`float_roundtrip`, which
/// the fuzz crate and the dev-dependencies turn on), as `crate::codec` does.
fn reference_rounds_floats_correctly() -> bool {
    // 2^53 + 1 is a tie: round half to even gives 2^53 (a naive reading gives 2^53 + 2).
    serde_json::from_str::<f64>("9007199254740993.0").ok() == Some(9_007_199_254_740_992.0)
}

/// Decodes `data` as `T` with the crate's decoder and with serde_json: both accept with the
/// same value (compared by JSON text, which tells `1` from `1.0` and `0.0` from `-0.0`) or both
/// refuse.
fn json_same<T: serde::de::DeserializeOwned + serde::Serialize>(data: &[u8]) {
    let ours: Result<T, _> = crate::codec::from_slice(data);
    let theirs: Result<T, _> = serde_json::from_slice(data);
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => assert_eq!(
            serde_json::to_string(&ours).ok(),
            serde_json::to_string(&theirs).ok(),
            "the decoders read different values"
        ),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("crate::codec accepts what serde_json refuses: {e}"),
        (Err(e), Ok(_)) => panic!("crate::codec refuses what serde_json accepts: {e}"),
    }
}

/// The JSON decoder of revealed plaintext (`crate::codec`) against serde_json on the same
/// bytes, as `serde_json::Value` and as typed values (strings, bytes, options, enums, structs
/// with ignored fields, numeric map keys): both accept with equal values or both refuse, and
/// nothing panics.
pub fn json_decode(data: &[u8]) {
    static EXACT: OnceLock<bool> = OnceLock::new();
    assert!(
        *EXACT.get_or_init(reference_rounds_floats_correctly),
        "the json_decode harness needs serde_json's float_roundtrip feature"
    );
    json_same::<serde_json::Value>(data);
    json_same::<String>(data);
    json_same::<Option<Vec<String>>>(data);
    json_same::<Vec<JsonKind>>(data);
    json_same::<JsonRecord>(data);
    json_same::<std::collections::BTreeMap<u64, f64>>(data);
    json_same::<(i128, u128, bool, char)>(data);
}
