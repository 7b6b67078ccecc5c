//! Erasure that reaches every byte, on a real SQLite file: after a rectification or an
//! erasure, no copy of the old envelope or of the wrapped key is left in the database file,
//! its write-ahead log or its free pages; a restore from a backup taken before an erasure is
//! noticed (anchor) and undone (the erasure ledger re-applied).
#![cfg(feature = "sqlite")]

mod common;

use std::path::{Path, PathBuf};

use egard::{Error, Evidence, LawfulBasis, MasterKey, Purpose, SqliteStore, Vault};

const KEY: [u8; 32] = [5; 32];

fn vault_on(path: &Path) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(SqliteStore::open(path).unwrap())
        .build()
        .unwrap()
}

fn define(vault: &Vault) {
    vault
        .define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email", "city"]))
        .unwrap();
}

/// Every file SQLite keeps for the database at `db` (the file, its log, its shared memory).
fn files_of(db: &Path) -> Vec<PathBuf> {
    let dir = db.parent().unwrap();
    let name = db.file_name().unwrap().to_str().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(name))
        .collect()
}

/// The files (by name) holding `needle` anywhere in their raw bytes.
fn holders(db: &Path, needle: &[u8]) -> Vec<String> {
    assert!(needle.len() >= 16, "a needle that cannot match by chance");
    files_of(db)
        .into_iter()
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The stored bytes of a customer's envelope of `field`, and of their wrapped data keys, read
/// with a connection of our own, as anyone with the file could.
fn raw_envelope(db: &Path, customer: egard::CustomerId, field: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT envelope FROM fields WHERE customer = ?1 AND field = ?2",
        rusqlite::params![customer.as_bytes().as_slice(), field],
        |r| r.get(0),
    )
    .unwrap()
}

fn raw_keys(db: &Path, customer: egard::CustomerId) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT wrapped FROM data_keys WHERE customer = ?1")
        .unwrap();
    stmt.query_map([customer.as_bytes().as_slice()], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_rectified_fields_old_envelope_is_in_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("egard.db");
    let vault = vault_on(&db);
    define(&vault);
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", "old-address@example.com").unwrap();
    vault.set_field(c, "city", "Lyon").unwrap();
    let old = raw_envelope(&db, c, "email");
    assert_eq!(
        holders(&db, &old).len(),
        1,
        "the envelope is stored before the rectification"
    );

    vault.set_field(c, "email", "new-address@example.com").unwrap();

    assert_eq!(holders(&db, &old), Vec::<String>::new(), "old envelope left behind");
    let new = raw_envelope(&db, c, "email");
    assert_ne!(new, old);
    assert!(!holders(&db, &new).is_empty(), "the new envelope is stored");
    // And the store is still whole: the new value opens.
    vault.give_consent(c, "newsletter", Evidence::new("web-form")).unwrap();
    let pass = vault.authorize(c, "newsletter").unwrap();
    assert_eq!(
        vault.reveal::<String>(&pass, "email").unwrap().expose(),
        "new-address@example.com"
    );
}

#[test]
fn an_erased_customers_keys_and_envelopes_are_in_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("egard.db");
    let vault = vault_on(&db);
    define(&vault);
    let c = vault.create_customer().unwrap();
    let other = vault.create_customer().unwrap();
    vault.set_field(c, "email", "erase-me@example.com").unwrap();
    vault.set_field(c, "city", "Nantes").unwrap();
    vault.set_field(other, "email", "keep-me@example.com").unwrap();
    let mut secrets = raw_keys(&db, c);
    assert_eq!(secrets.len(), 1);
    secrets.push(raw_envelope(&db, c, "email"));
    secrets.push(raw_envelope(&db, c, "city"));
    let kept = raw_envelope(&db, other, "email");
    for s in &secrets {
        assert!(!holders(&db, s).is_empty());
    }

    vault.erase_customer(c).unwrap();

    for s in &secrets {
        assert_eq!(holders(&db, s), Vec::<String>::new(), "erased bytes left behind");
    }
    assert!(!holders(&db, &kept).is_empty(), "another customer's data stays");
    let store = SqliteStore::open(&db).unwrap();
    assert!(!store.purge_pending());
}

#[test]
fn a_retention_sweep_leaves_no_deleted_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("egard.db");
    let vault = vault_on(&db);
    // The customer never consented and the purpose keeps nothing after: the sweep deletes
    // the field.
    define(&vault);
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "city", "Brest").unwrap();
    let old = raw_envelope(&db, c, "city");
    let report = vault.sweep_retention().unwrap();
    assert_eq!(report.deleted, vec![(c, "city".parse().unwrap())]);
    assert_eq!(holders(&db, &old), Vec::<String>::new());
}

#[test]
fn a_restore_from_before_an_erasure_is_noticed_and_the_ledger_erases_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("egard.db");
    let backup = dir.path().join("backup.db");
    let (alice, bob, carol, ledger, anchor) = {
        let vault = vault_on(&db);
        define(&vault);
        let alice = vault.create_customer().unwrap();
        let bob = vault.create_customer().unwrap();
        let carol = vault.create_customer().unwrap();
        for c in [alice, bob, carol] {
            vault.set_field(c, "email", "someone@example.com").unwrap();
            vault.give_consent(c, "newsletter", Evidence::new("web-form")).unwrap();
        }
        // The nightly backup, a consistent copy of the live database.
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
            .unwrap();
        // Alice and Bob ask to be forgotten; their receipts go to the ledger, kept elsewhere.
        let ledger = vec![vault.erase_customer(alice).unwrap(), vault.erase_customer(bob).unwrap()];
        let ledger = serde_json::to_string(&ledger).unwrap();
        (alice, bob, carol, ledger, vault.audit_anchor().unwrap())
    };

    // The disk fails; the backup is restored in place of the database.
    for f in files_of(&db) {
        std::fs::remove_file(f).unwrap();
    }
    std::fs::copy(&backup, &db).unwrap();

    // Noticed: against the anchor taken after the erasures, the restored log is cut short.
    let refused = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(SqliteStore::open(&db).unwrap())
        .audit_anchor(anchor)
        .build();
    assert!(matches!(refused, Err(Error::AuditBroken { .. })), "{refused:?}");

    // Without the ledger, the restored copy would bring Alice back.
    let vault = vault_on(&db);
    let pass = vault.authorize(alice, "newsletter").unwrap();
    drop(pass);

    // A forged ledger erases nobody: Carol never asked.
    let ledger: Vec<egard::ErasureReceipt> = serde_json::from_str(&ledger).unwrap();
    let mut forged = ledger.clone();
    forged[0].customer = carol;
    assert!(matches!(vault.reapply_erasures(&forged), Err(Error::Crypto)));
    assert!(vault.authorize(carol, "newsletter").is_ok());
    assert!(
        vault.authorize(alice, "newsletter").is_ok(),
        "nothing erased by a refused call"
    );

    // The real ledger erases Alice and Bob again, and only them.
    let mut again = vault.reapply_erasures(&ledger).unwrap();
    again.sort();
    let mut expected = vec![alice, bob];
    expected.sort();
    assert_eq!(again, expected);
    for c in [alice, bob] {
        assert!(matches!(vault.authorize(c, "newsletter"), Err(Error::Erased(_))));
        assert!(raw_keys(&db, c).is_empty());
    }
    assert!(vault.authorize(carol, "newsletter").is_ok());
    let erasures = vault
        .audit_events(alice)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == egard::AuditKind::Erased)
        .collect::<Vec<_>>();
    assert_eq!(erasures.len(), 1, "the backup's log had no erasure of Alice");
    assert!(erasures[0].detail.starts_with("reapplied"));
    // Applying the ledger twice changes nothing.
    assert!(vault.reapply_erasures(&ledger).unwrap().is_empty());
    assert!(vault.verify_audit().is_ok());
}
