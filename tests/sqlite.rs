//! SqliteStore under the vault: persistence across reopen, the batch API, many threads.

#![cfg(feature = "sqlite")]

use std::sync::Arc;

use egard::{
    AccessDenied, AuditKind, Error, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, SqliteStore, Store, Vault,
};

const KEY: [u8; 32] = [0x5a; 32];

fn vault(store: impl Store) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .build()
        .unwrap()
}

fn define(vault: &Vault) {
    vault
        .define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email", "first_name"]))
        .unwrap();
    vault
        .define_purpose(
            Purpose::new("ads", LawfulBasis::LegitimateInterests)
                .fields(["email"])
                .direct_marketing(),
        )
        .unwrap();
}

#[test]
fn everything_survives_a_reopen_and_stays_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let (alice, consent) = {
        let v = vault(SqliteStore::open(&path).unwrap());
        define(&v);
        let alice = v.create_customer().unwrap();
        v.set_field(alice, "email", "canary-alice@example.com").unwrap();
        let consent = v.give_consent(alice, "newsletter", Evidence::new("web-form")).unwrap();
        (alice, consent)
    };
    let raw = std::fs::read(&path).unwrap();
    let wal = std::fs::read(dir.path().join("egard.db-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(b"canary-alice".len()).any(|w| w == b"canary-alice"),
            "plaintext found in the database files"
        );
    }

    let v = vault(SqliteStore::open(&path).unwrap());
    assert_eq!(v.purposes().len(), 2);
    assert_eq!(v.consents(alice).unwrap()[0].id, consent);
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert_eq!(
        v.reveal::<String>(&pass, "email").unwrap().expose(),
        "canary-alice@example.com"
    );
    assert!(v.verify_audit().unwrap().events_verified >= 5);
    v.withdraw_consent(alice, "newsletter").unwrap();
    drop(pass);
    drop(v);

    let v = vault(SqliteStore::open(&path).unwrap());
    assert!(matches!(
        v.authorize(alice, "newsletter"),
        Err(Error::Denied(AccessDenied::Withdrawn))
    ));
    v.verify_audit().unwrap();
}

#[test]
fn a_wrong_master_key_fails_at_build_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let alice = {
        let v = vault(SqliteStore::open(&path).unwrap());
        define(&v);
        let alice = v.create_customer().unwrap();
        v.set_field(alice, "email", "alice@example.com").unwrap();
        v.give_consent(alice, "newsletter", Evidence::new("web-form")).unwrap();
        alice
    };
    {
        // Another key under the same id: the one opaque error, at build.
        let wrong = Vault::builder()
            .master_key(MasterKey::from_bytes([0x11; 32]))
            .store(SqliteStore::open(&path).unwrap())
            .build();
        assert!(matches!(wrong, Err(Error::Crypto)));
        // Another id: said plainly.
        let wrong = Vault::builder()
            .master_key(MasterKey::from_bytes([0x11; 32]).with_id(5))
            .store(SqliteStore::open(&path).unwrap())
            .build();
        let err = wrong.unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong master key: the store's keys are wrapped under master key id(s) [1], this vault holds id(s) [5]"
        );
    }
    let v = vault(SqliteStore::open(&path).unwrap());
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert_eq!(
        v.reveal::<String>(&pass, "email").unwrap().expose(),
        "alice@example.com"
    );
}

fn batch_checks(v: &Vault) {
    define(v);
    let customers: Vec<_> = (0..50).map(|_| v.create_customer().unwrap()).collect();
    for &c in &customers {
        v.set_field(c, "email", "x@example.com").unwrap();
    }
    // A live consent before the batch is superseded by it; a customer twice in the batch.
    let first = v
        .give_consent(customers[0], "newsletter", Evidence::new("web"))
        .unwrap();
    let mut items: Vec<_> = customers
        .iter()
        .map(|&c| (c, "newsletter", Evidence::new("import")))
        .collect();
    items.push((customers[1], "newsletter", Evidence::new("import-again")));
    let ids = v.give_consents(items).unwrap();
    assert_eq!(ids.len(), 51);
    for &c in &customers {
        let pass = v.authorize(c, "newsletter").unwrap();
        assert_eq!(v.reveal::<String>(&pass, "email").unwrap().expose(), "x@example.com");
    }
    let history = v.consents(customers[0]).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].id, first);
    assert_eq!(history[0].superseded_by, Some(ids[0]));
    let twice = v.consents(customers[1]).unwrap();
    assert_eq!(twice.len(), 2);
    let superseded: Vec<_> = twice.iter().filter(|c| c.superseded_by.is_some()).collect();
    assert_eq!(superseded.len(), 1);
    assert_eq!(superseded[0].id, ids[1]);
    assert_eq!(superseded[0].superseded_by, Some(ids[50]));
    let given = v
        .audit_events(customers[1])
        .unwrap()
        .iter()
        .filter(|e| e.kind == AuditKind::ConsentGiven)
        .count();
    assert_eq!(given, 2, "one audit event per item");

    // Withdrawal after a batch still takes effect at once.
    let pass = v.authorize(customers[2], "newsletter").unwrap();
    v.withdraw_consent(customers[2], "newsletter").unwrap();
    assert!(matches!(
        v.reveal::<String>(&pass, "email"),
        Err(Error::Denied(AccessDenied::Withdrawn))
    ));

    // All or nothing: one erased customer in the batch refuses all of it.
    let erased = customers[3];
    v.erase_customer(erased).unwrap();
    let fresh = v.create_customer().unwrap();
    let before = v.verify_audit().unwrap().events_verified;
    let refused = v.give_consents([
        (fresh, "newsletter", Evidence::new("import")),
        (erased, "newsletter", Evidence::new("import")),
    ]);
    assert!(matches!(refused, Err(Error::Erased(c)) if c == erased));
    assert!(v.consents(fresh).unwrap().is_empty());
    assert!(matches!(
        v.authorize(fresh, "newsletter"),
        Err(Error::Denied(AccessDenied::NoConsent))
    ));
    // (The denial just now was audited, the refused batch was not.)
    assert_eq!(v.verify_audit().unwrap().events_verified, before + 1);
    // An objection to direct marketing refuses the batch too.
    v.object(fresh, "ads").unwrap();
    assert!(matches!(
        v.give_consents([
            (customers[4], "ads", Evidence::new("i")),
            (fresh, "ads", Evidence::new("i"))
        ]),
        Err(Error::Denied(AccessDenied::Objected))
    ));
    assert!(matches!(
        v.authorize(customers[4], "ads"),
        Err(Error::Denied(AccessDenied::NoConsent))
    ));
    assert!(matches!(
        v.give_consents([(fresh, "nope", Evidence::new("i"))]),
        Err(Error::UnknownPurpose(_))
    ));
    assert_eq!(v.give_consents([]).unwrap(), Vec::new());
    v.verify_audit().unwrap();
}

#[test]
fn give_consents_on_memory() {
    batch_checks(&vault(MemoryStore::new()));
}

#[test]
fn give_consents_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    batch_checks(&vault(SqliteStore::open(dir.path().join("batch.db")).unwrap()));
}

#[test]
fn many_threads_share_one_vault_without_lock_errors() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let v = Arc::new(vault(SqliteStore::open(dir.path().join("threads.db")).unwrap()));
    define(&v);
    let shared: Vec<_> = (0..4).map(|_| v.create_customer().unwrap()).collect();
    for &c in &shared {
        v.set_field(c, "email", "shared@example.com").unwrap();
    }
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let v = v.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                let own = v.create_customer().unwrap();
                v.set_field(own, "email", &format!("t{t}@example.com")).unwrap();
                let mut revealed = 0usize;
                for round in 0..ROUNDS {
                    for &c in [own].iter().chain(&shared) {
                        if round % 3 == t % 3 {
                            v.give_consent(c, "newsletter", Evidence::new("web")).unwrap();
                        }
                        match v.authorize(c, "newsletter") {
                            Ok(pass) => match v.reveal::<String>(&pass, "email") {
                                Ok(_) => revealed += 1,
                                // Another thread withdrew in between: the pass stopped.
                                Err(Error::Denied(AccessDenied::Withdrawn)) => {}
                                Err(e) => panic!("reveal failed: {e:?}"),
                            },
                            Err(Error::Denied(AccessDenied::NoConsent | AccessDenied::Withdrawn)) => {}
                            Err(e) => panic!("authorize failed: {e:?}"),
                        }
                        if round % 4 == t % 4 {
                            v.withdraw_consent(c, "newsletter").unwrap();
                        }
                    }
                }
                revealed
            })
        })
        .collect();
    let revealed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(revealed > 0, "no reveal succeeded");
    let report = v.verify_audit().unwrap();
    assert!(report.events_verified as usize > THREADS * ROUNDS);
}
