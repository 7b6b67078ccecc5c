//! The consent gate against whoever can write to the database without the master key: an
//! SQL injection elsewhere in the host, a careless administrator, a partial restore, a buggy
//! backend.
//!
//! Each scenario builds the same small world through an honest vault, then edits the
//! database behind its back with plain SQL (on a real SQLite file, and on a real PostgreSQL
//! server when one is configured), then starts a vault afresh and asks for what the edit was
//! meant to open. Every edit would have opened something before records were authenticated;
//! now the customer (or purpose) concerned fails with `Error::Crypto`, and everyone else
//! goes on as before.
#![cfg(feature = "sqlite")]

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use egard::{
    AccessDenied, AuditAnchor, AuditBreak, CustomerId, Error, Evidence, LawfulBasis, ManualClock, MasterKey, Purpose,
    SqliteStore, Store, Vault,
};

const KEY: [u8; 32] = [0x5e; 32];
const DIAGNOSIS: &str = "CANARY-diagnosis-7f3a9";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap()
}

/// The tables an attacker may write to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Purposes,
    Customers,
    Keys,
    Fields,
    Consents,
    Objections,
    Audit,
}

impl Table {
    const ALL_BUT_AUDIT: [Table; 6] = [
        Table::Purposes,
        Table::Customers,
        Table::Keys,
        Table::Fields,
        Table::Consents,
        Table::Objections,
    ];

    fn sqlite(self) -> &'static str {
        match self {
            Table::Purposes => "purposes",
            Table::Customers => "customers",
            Table::Keys => "data_keys",
            Table::Fields => "fields",
            Table::Consents => "consents",
            Table::Objections => "objections",
            Table::Audit => "audit",
        }
    }

    fn postgres(self) -> &'static str {
        match self {
            Table::Keys => "keys",
            other => other.sqlite(),
        }
    }
}

/// A database the test can also write to directly, as the attacker does.
trait Db {
    /// A new store object on the database: what a process starting up opens.
    fn open(&self) -> Arc<dyn Store>;
    /// Whether this is PostgreSQL (the SQL of some edits differs).
    fn is_postgres(&self) -> bool;
    /// The qualified name of a table.
    fn table(&self, t: Table) -> String;
    /// A customer id as an SQL literal.
    fn id(&self, c: CustomerId) -> String;
    /// Bytes as an SQL literal.
    fn bytes(&self, b: &[u8]) -> String;
    /// Runs SQL directly on the database, as its administrator.
    fn exec(&self, sql: &str);
    /// Keeps a copy of the whole database as it is now, under `name`.
    fn copy(&self, name: &str);
    /// Writes the rows of `tables` back as they were in the copy `name` (every other table
    /// left as it is now).
    fn restore(&self, name: &str, tables: &[Table]);
}

/// The world every scenario starts from.
struct World {
    /// Withdrew the newsletter.
    withdrawn: CustomerId,
    /// Never consented to anything.
    never: CustomerId,
    /// Consented to the newsletter, then restricted.
    restricted: CustomerId,
    /// Consented to the newsletter and (explicitly) to care; has a diagnosis the newsletter
    /// never covered; rectified their email.
    patient: CustomerId,
    /// Consented to the newsletter, then erased.
    erased: CustomerId,
    /// Objected to the promotions (legitimate interests, direct marketing).
    objector: CustomerId,
    /// Consented to a one-day trial, now expired.
    expired: CustomerId,
    /// A customer with a shipping contract, untouched by every scenario: must keep working.
    bystander: CustomerId,
    /// The patient's email envelope before the rectification.
    old_email: Vec<u8>,
    /// The audit log's anchor after the world was built.
    anchor: AuditAnchor,
    clock: ManualClock,
}

fn vault_on(store: Arc<dyn Store>, clock: &ManualClock) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn give(v: &Vault, c: CustomerId, purpose: &str) {
    v.give_consent(c, purpose, Evidence::new("web-form").explicit())
        .unwrap();
}

/// Builds the world through an honest vault; a copy of the database named `before` is taken
/// midway, before the withdrawal, restriction, rectification, erasure and objection.
fn world(db: &dyn Db) -> World {
    let clock = ManualClock::new(t0());
    let v = vault_on(db.open(), &clock);
    v.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .fields(["email"])
            .consent_lifetime(Duration::days(365)),
    )
    .unwrap();
    v.define_purpose(
        Purpose::new("care", LawfulBasis::Consent)
            .fields(["diagnosis"])
            .special_category(),
    )
    .unwrap();
    v.define_purpose(
        Purpose::new("promo", LawfulBasis::LegitimateInterests)
            .fields(["email"])
            .direct_marketing(),
    )
    .unwrap();
    v.define_purpose(
        Purpose::new("trial", LawfulBasis::Consent)
            .fields(["email"])
            .consent_lifetime(Duration::days(1)),
    )
    .unwrap();
    v.define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["address"]))
        .unwrap();
    let customer = |email: &str| {
        let c = v.create_customer().unwrap();
        v.set_field(c, "email", email).unwrap();
        c
    };
    let w = World {
        withdrawn: customer("withdrawn@example.com"),
        never: customer("never@example.com"),
        restricted: customer("restricted@example.com"),
        patient: customer("old@example.com"),
        erased: customer("erased@example.com"),
        objector: customer("objector@example.com"),
        expired: customer("expired@example.com"),
        bystander: customer("bystander@example.com"),
        old_email: Vec::new(),
        anchor: AuditAnchor { seq: 0, mac: [0; 32] },
        clock: clock.clone(),
    };
    v.set_field(w.patient, "diagnosis", DIAGNOSIS).unwrap();
    v.set_field(w.bystander, "address", "1 Rue de la Paix").unwrap();
    for c in [w.withdrawn, w.restricted, w.patient, w.erased] {
        give(&v, c, "newsletter");
    }
    give(&v, w.patient, "care");
    give(&v, w.objector, "promo");
    give(&v, w.expired, "trial");
    give(&v, w.bystander, "shipping");
    drop(v);
    db.copy("before");
    let old_email = db
        .open()
        .field(w.patient, &egard::FieldName::new("email").unwrap())
        .unwrap()
        .unwrap()
        .envelope;

    clock.advance(Duration::hours(1));
    let v = vault_on(db.open(), &clock);
    v.withdraw_consent(w.withdrawn, "newsletter").unwrap();
    v.restrict(w.restricted).unwrap();
    v.set_field(w.patient, "email", "new@example.com").unwrap();
    v.erase_customer(w.erased).unwrap();
    v.object(w.objector, "promo").unwrap();
    let anchor = v.audit_anchor().unwrap();
    drop(v);
    clock.advance(Duration::days(2));
    World { anchor, old_email, ..w }
}

/// What each customer of the world may do, asked of a fresh vault: the refusals an honest
/// store gives.
fn assert_honest(v: &Vault, w: &World) {
    let reason = |c, p| match v.authorize(c, p) {
        Err(Error::Denied(r)) => r,
        other => panic!("{p}: expected a denial, got {other:?}"),
    };
    assert_eq!(reason(w.withdrawn, "newsletter"), AccessDenied::Withdrawn);
    assert_eq!(reason(w.never, "newsletter"), AccessDenied::NoConsent);
    assert_eq!(reason(w.restricted, "newsletter"), AccessDenied::Restricted);
    assert_eq!(reason(w.objector, "promo"), AccessDenied::Objected);
    assert_eq!(reason(w.expired, "trial"), AccessDenied::Expired);
    assert!(matches!(v.authorize(w.erased, "newsletter"), Err(Error::Erased(_))));
    let pass = v.authorize(w.patient, "newsletter").unwrap();
    assert_eq!(v.reveal::<String>(&pass, "email").unwrap().expose(), "new@example.com");
    assert!(matches!(
        v.reveal::<String>(&pass, "diagnosis"),
        Err(Error::Denied(AccessDenied::FieldNotCovered))
    ));
    assert_bystander(v, w);
}

/// The bystander, whose records no scenario touches, keeps working.
fn assert_bystander(v: &Vault, w: &World) {
    let pass = v.authorize(w.bystander, "shipping").unwrap();
    assert_eq!(
        v.reveal::<String>(&pass, "address").unwrap().expose(),
        "1 Rue de la Paix"
    );
}

/// The one opaque refusal of a record that fails its check; never a grant.
#[track_caller]
fn assert_refused<T>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Crypto) => {}
        Err(other) => panic!("{what}: expected Error::Crypto, got {other:?}"),
        Ok(_) => panic!("{what}: GRANTED on tampered records"),
    }
}

/// An edit of the database and what it must no longer open.
struct Scenario {
    name: &'static str,
    edit: fn(&dyn Db, &World),
    check: fn(&Vault, &World),
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "a withdrawn consent revived",
        edit: |db, w| {
            let sql = if db.is_postgres() {
                format!(
                    "UPDATE {} SET record = jsonb_set(record, '{{withdrawn_at}}', 'null') WHERE customer = {}",
                    db.table(Table::Consents),
                    db.id(w.withdrawn)
                )
            } else {
                format!(
                    "UPDATE {} SET withdrawn_at = NULL WHERE customer = {}",
                    db.table(Table::Consents),
                    db.id(w.withdrawn)
                )
            };
            db.exec(&sql);
        },
        check: |v, w| {
            assert_refused("revived consent", v.authorize(w.withdrawn, "newsletter"));
            assert_refused("revived consent, the history", v.consents(w.withdrawn));
        },
    },
    Scenario {
        name: "a consent row inserted for a customer who never consented",
        edit: |db, w| {
            // The bystander's record, with its MAC, copied to another customer and purpose.
            let sql = if db.is_postgres() {
                format!(
                    "INSERT INTO {t} (id, customer, purpose, given_at, record, mac)
                     SELECT gen_random_uuid(), {never}, 'newsletter', given_at,
                            jsonb_set(jsonb_set(jsonb_set(record, '{{customer}}', to_jsonb({never}::text)),
                                      '{{purpose}}', '\"newsletter\"'), '{{basis}}', '\"consent\"'), mac
                     FROM {t} WHERE customer = {by}",
                    t = db.table(Table::Consents),
                    never = db.id(w.never),
                    by = db.id(w.bystander)
                )
            } else {
                format!(
                    "INSERT INTO {t} SELECT randomblob(16), {never}, 'newsletter', 'consent', notice_version,
                            given_at, NULL, NULL, NULL, evidence, mac, choices
                     FROM {t} WHERE customer = {by}",
                    t = db.table(Table::Consents),
                    never = db.id(w.never),
                    by = db.id(w.bystander)
                )
            };
            db.exec(&sql);
        },
        check: |v, w| assert_refused("forged consent", v.authorize(w.never, "newsletter")),
    },
    Scenario {
        name: "a restriction lifted",
        edit: |db, w| {
            let value = if db.is_postgres() { "false" } else { "0" };
            db.exec(&format!(
                "UPDATE {} SET restricted = {value} WHERE id = {}",
                db.table(Table::Customers),
                db.id(w.restricted)
            ));
        },
        check: |v, w| {
            assert_refused("lifted restriction", v.authorize(w.restricted, "newsletter"));
            assert_refused("lifted restriction, a change", v.lift_restriction(w.restricted));
        },
    },
    Scenario {
        name: "a data key's use count wound back",
        edit: |db, w| {
            db.exec(&format!(
                "UPDATE {} SET key_uses = 0 WHERE id = {}",
                db.table(Table::Customers),
                db.id(w.patient)
            ));
        },
        check: |v, w| {
            // The patient's key has sealed their fields: a count of 0 is a lie.
            assert_refused("wound-back key uses", v.authorize(w.patient, "newsletter"));
            assert_refused(
                "wound-back key uses, a change",
                v.set_field(w.patient, "email", "x@example.com"),
            );
        },
    },
    Scenario {
        name: "a special-category field added to a purpose",
        edit: |db, _| {
            let sql = if db.is_postgres() {
                format!(
                    "UPDATE {} SET definition = jsonb_set(definition, '{{fields}}', '[\"email\", \"diagnosis\"]')
                     WHERE id = 'newsletter'",
                    db.table(Table::Purposes)
                )
            } else {
                format!(
                    "UPDATE {} SET definition = json_set(definition, '$.fields', json_array('email', 'diagnosis'))
                     WHERE id = 'newsletter'",
                    db.table(Table::Purposes)
                )
            };
            db.exec(&sql);
        },
        check: |v, w| {
            assert_refused("widened purpose", v.authorize(w.patient, "newsletter"));
            assert_refused("widened purpose, its definition", v.purpose("newsletter"));
            // Other purposes stand.
            let care = v.authorize(w.patient, "care").unwrap();
            assert_eq!(v.reveal::<String>(&care, "diagnosis").unwrap().expose(), DIAGNOSIS);
        },
    },
    Scenario {
        name: "an erasure undone",
        edit: |db, w| {
            db.exec(&format!(
                "UPDATE {} SET erased_at = NULL WHERE id = {}",
                db.table(Table::Customers),
                db.id(w.erased)
            ));
        },
        check: |v, w| assert_refused("undone erasure", v.authorize(w.erased, "newsletter")),
    },
    Scenario {
        name: "an objection deleted",
        edit: |db, w| {
            db.exec(&format!(
                "DELETE FROM {} WHERE customer = {}",
                db.table(Table::Objections),
                db.id(w.objector)
            ));
        },
        check: |v, w| assert_refused("deleted objection", v.authorize(w.objector, "promo")),
    },
    Scenario {
        name: "an expired consent made unexpiring",
        edit: |db, w| {
            let sql = if db.is_postgres() {
                format!(
                    "UPDATE {} SET record = jsonb_set(record, '{{expires_at}}', 'null') WHERE customer = {}",
                    db.table(Table::Consents),
                    db.id(w.expired)
                )
            } else {
                format!(
                    "UPDATE {} SET expires_at = NULL WHERE customer = {}",
                    db.table(Table::Consents),
                    db.id(w.expired)
                )
            };
            db.exec(&sql);
        },
        check: |v, w| assert_refused("unexpiring consent", v.authorize(w.expired, "trial")),
    },
    Scenario {
        name: "the withdrawal's audit event deleted",
        edit: |db, w| {
            // The last change recorded for the customer: the state before it looks current.
            db.exec(&format!(
                "DELETE FROM {t} WHERE seq = (SELECT max(seq) FROM {t} WHERE customer = {c} AND state IS NOT NULL)",
                t = db.table(Table::Audit),
                c = db.id(w.withdrawn)
            ));
        },
        check: |v, w| {
            assert_refused("audit event deleted", v.authorize(w.withdrawn, "newsletter"));
            assert!(matches!(
                v.verify_audit(),
                Err(Error::AuditBroken {
                    problem: AuditBreak::SequenceGap,
                    ..
                })
            ));
        },
    },
    Scenario {
        name: "the consents table written back from an earlier copy",
        edit: |db, _| db.restore("before", &[Table::Consents]),
        check: |v, w| {
            assert_refused("replayed consents", v.authorize(w.withdrawn, "newsletter"));
            v.verify_audit().unwrap();
        },
    },
    Scenario {
        name: "every table but the audit log written back from an earlier copy",
        edit: |db, _| db.restore("before", &Table::ALL_BUT_AUDIT),
        check: |v, w| {
            for (c, p) in [
                (w.withdrawn, "newsletter"),
                (w.restricted, "newsletter"),
                (w.patient, "newsletter"),
                (w.erased, "newsletter"),
                (w.objector, "promo"),
            ] {
                assert_refused(&format!("replayed rows, {p}"), v.authorize(c, p));
            }
            // Customers unchanged since the copy are unaffected.
            assert!(matches!(
                v.authorize(w.never, "newsletter"),
                Err(Error::Denied(AccessDenied::NoConsent))
            ));
            v.verify_audit().unwrap();
        },
    },
    Scenario {
        name: "a field's earlier row written back after a rectification",
        edit: |db, _| db.restore("before", &[Table::Fields]),
        check: |v, w| assert_refused("replayed field row", v.authorize(w.patient, "newsletter")),
    },
    Scenario {
        name: "a field's earlier envelope written back, its write version kept",
        edit: |db, w| {
            // Only the ciphertext goes back: the row still names the current write.
            db.exec(&format!(
                "UPDATE {} SET envelope = {} WHERE customer = {} AND field = 'email'",
                db.table(Table::Fields),
                db.bytes(&w.old_email),
                db.id(w.patient)
            ));
        },
        check: |v, w| {
            let pass = v.authorize(w.patient, "newsletter").unwrap();
            assert_refused("older envelope", v.reveal::<String>(&pass, "email"));
        },
    },
];

/// Runs every scenario on a fresh database made by `make`.
fn run_scenarios(make: impl Fn() -> Box<dyn Db>) {
    for s in SCENARIOS {
        let db = make();
        let w = world(&*db);
        {
            let v = vault_on(db.open(), &w.clock);
            assert_honest(&v, &w);
        }
        (s.edit)(&*db, &w);
        let v = vault_on(db.open(), &w.clock);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (s.check)(&v, &w);
            assert_bystander(&v, &w);
        }));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("scenario `{}`: {msg}", s.name);
        }
    }
}

/// A whole-database restore (the audit log with everything else) cannot be told from the
/// database alone; an anchor kept outside can.
fn whole_restore_is_caught_by_an_anchor(db: &dyn Db) {
    let w = world(db);
    let mut all = Table::ALL_BUT_AUDIT.to_vec();
    all.push(Table::Audit);
    db.restore("before", &all);
    // Without the anchor, a fresh vault sees a consistent, older world...
    let v = vault_on(db.open(), &w.clock);
    assert!(
        v.authorize(w.withdrawn, "newsletter").is_ok(),
        "the world before the withdrawal"
    );
    assert!(v.verify_audit().is_ok());
    // ...which the anchor from after shows cut back.
    assert!(matches!(
        v.verify_audit_against(&w.anchor),
        Err(Error::AuditBroken {
            problem: AuditBreak::Truncated,
            ..
        })
    ));
    drop(v);
    let refused = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(db.open())
        .clock(w.clock.clone())
        .audit_anchor(w.anchor)
        .build();
    assert!(matches!(
        refused,
        Err(Error::AuditBroken {
            problem: AuditBreak::Truncated,
            ..
        })
    ));
}

/// The last events cut off the log, with the change they recorded written back: the anchor
/// shows it, and the customer's state no longer matches what the log says of it.
fn a_cut_back_log_fails_against_its_anchor(db: &dyn Db) {
    let w = world(db);
    let v = vault_on(db.open(), &w.clock);
    assert_eq!(v.verify_audit_against(&w.anchor).unwrap().events_verified, w.anchor.seq);
    drop(v);
    db.exec(&format!(
        "DELETE FROM {} WHERE seq > {}",
        db.table(Table::Audit),
        w.anchor.seq - 2
    ));
    let v = vault_on(db.open(), &w.clock);
    assert!(matches!(
        v.verify_audit_against(&w.anchor),
        Err(Error::AuditBroken {
            problem: AuditBreak::Truncated,
            ..
        })
    ));
    // The cut-off events recorded the erasure and the objection: those customers' stored
    // states are newer than anything the log now holds.
    assert_refused("cut-back log", v.authorize(w.objector, "promo"));
    drop(v);
    let refused = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(db.open())
        .clock(w.clock.clone())
        .audit_anchor(w.anchor)
        .build();
    assert!(matches!(refused, Err(Error::AuditBroken { .. })));
}

// ----- SQLite -----

struct SqliteDb {
    dir: tempfile::TempDir,
}

impl SqliteDb {
    fn boxed() -> Box<dyn Db> {
        Box::new(SqliteDb {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("egard.db")
    }

    fn raw(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.path()).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        conn
    }
}

impl Db for SqliteDb {
    fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(self.path()).unwrap())
    }
    fn is_postgres(&self) -> bool {
        false
    }
    fn table(&self, t: Table) -> String {
        t.sqlite().to_owned()
    }
    fn id(&self, c: CustomerId) -> String {
        self.bytes(c.as_bytes())
    }
    fn bytes(&self, b: &[u8]) -> String {
        format!("x'{}'", hex(b))
    }
    fn exec(&self, sql: &str) {
        self.raw().execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn copy(&self, name: &str) {
        let to = self.dir.path().join(format!("{name}.db"));
        self.raw().execute("VACUUM INTO ?1", [to.to_str().unwrap()]).unwrap();
    }
    fn restore(&self, name: &str, tables: &[Table]) {
        let from = self.dir.path().join(format!("{name}.db"));
        // As the database's owner would: without the foreign-key checks in the way.
        let mut sql = format!(
            "PRAGMA foreign_keys = OFF; ATTACH '{}' AS {name}; BEGIN;",
            from.display()
        );
        for t in tables {
            let t = t.sqlite();
            sql.push_str(&format!(
                "DELETE FROM main.{t}; INSERT INTO main.{t} SELECT * FROM {name}.{t};"
            ));
        }
        sql.push_str(&format!("COMMIT; DETACH {name};"));
        self.exec(&sql);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sqlite_every_edit_of_a_record_that_decides_access_is_refused() {
    run_scenarios(SqliteDb::boxed);
}

#[test]
fn sqlite_a_whole_database_restore_is_caught_by_an_anchor() {
    whole_restore_is_caught_by_an_anchor(&*SqliteDb::boxed());
}

#[test]
fn sqlite_a_cut_back_log_fails_against_its_anchor() {
    a_cut_back_log_fails_against_its_anchor(&*SqliteDb::boxed());
}

// ----- PostgreSQL -----

#[cfg(feature = "postgres")]
mod postgres_db {
    use super::*;
    use common::pg::TestDb;

    pub struct PgDb(pub TestDb);

    impl PgDb {
        fn prefix(&self) -> String {
            format!("\"{}\".", self.0.schema)
        }
    }

    impl Db for PgDb {
        fn open(&self) -> Arc<dyn Store> {
            Arc::new(self.0.store())
        }
        fn is_postgres(&self) -> bool {
            true
        }
        fn table(&self, t: Table) -> String {
            format!("{}egard_{}", self.prefix(), t.postgres())
        }
        fn id(&self, c: CustomerId) -> String {
            format!("'{c}'::uuid")
        }
        fn bytes(&self, b: &[u8]) -> String {
            format!("'\\x{}'::bytea", hex(b))
        }
        fn exec(&self, sql: &str) {
            self.0
                .admin()
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        fn copy(&self, name: &str) {
            let p = self.prefix();
            let mut sql = String::new();
            for t in Table::ALL_BUT_AUDIT.iter().chain([&Table::Audit]) {
                let t = t.postgres();
                sql.push_str(&format!("CREATE TABLE {p}copy_{name}_{t} AS TABLE {p}egard_{t};"));
            }
            self.exec(&sql);
        }
        fn restore(&self, name: &str, tables: &[Table]) {
            let p = self.prefix();
            // As the database's owner would: without the foreign-key triggers in the way.
            let mut sql = "BEGIN; SET LOCAL session_replication_role = replica;".to_owned();
            for t in tables {
                let t = t.postgres();
                sql.push_str(&format!(
                    "DELETE FROM {p}egard_{t}; INSERT INTO {p}egard_{t} SELECT * FROM {p}copy_{name}_{t};"
                ));
            }
            sql.push_str("COMMIT;");
            self.exec(&sql);
        }
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_every_edit_of_a_record_that_decides_access_is_refused() {
    if common::pg::TestDb::new().is_none() {
        return;
    }
    run_scenarios(|| Box::new(postgres_db::PgDb(common::pg::TestDb::new().unwrap())));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_a_whole_database_restore_is_caught_by_an_anchor() {
    let db = db_or_skip!();
    whole_restore_is_caught_by_an_anchor(&postgres_db::PgDb(db));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_a_cut_back_log_fails_against_its_anchor() {
    let db = db_or_skip!();
    a_cut_back_log_fails_against_its_anchor(&postgres_db::PgDb(db));
}

// ----- a store that lies, the log, and one process -----

/// A real store that answers for another customer than the one asked for: whoever asks for
/// `asked` gets `given`'s records.
struct Swapping {
    inner: Arc<dyn Store>,
    asked: CustomerId,
    given: CustomerId,
}

impl Swapping {
    fn swap(&self, id: CustomerId) -> CustomerId {
        if id == self.asked { self.given } else { id }
    }
}

impl Store for Swapping {
    fn apply(&self, batch: &[egard::store::Write]) -> Result<(), egard::StoreError> {
        self.inner.apply(batch)
    }
    fn purposes(&self) -> Result<Vec<egard::store::PurposeSnapshot>, egard::StoreError> {
        self.inner.purposes()
    }
    fn customer(&self, id: CustomerId) -> Result<Option<egard::store::CustomerSnapshot>, egard::StoreError> {
        self.inner.customer(self.swap(id))
    }
    fn field(
        &self,
        c: CustomerId,
        f: &egard::FieldName,
    ) -> Result<Option<egard::store::StoredField>, egard::StoreError> {
        self.inner.field(self.swap(c), f)
    }
    fn fields(&self, c: CustomerId) -> Result<Vec<egard::store::StoredField>, egard::StoreError> {
        self.inner.fields(self.swap(c))
    }
    fn customer_ids(&self) -> Result<Vec<CustomerId>, egard::StoreError> {
        self.inner.customer_ids()
    }
    fn audit_head(&self) -> Result<Option<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_head()
    }
    fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_range(from, limit)
    }
    fn audit_for(&self, c: CustomerId) -> Result<Vec<egard::AuditEvent>, egard::StoreError> {
        self.inner.audit_for(self.swap(c))
    }
    fn secret(&self, name: &str) -> Result<Option<egard::store::VaultSecret>, egard::StoreError> {
        self.inner.secret(name)
    }
    fn lookups(&self) -> Result<Vec<egard::store::StoredLookup>, egard::StoreError> {
        self.inner.lookups()
    }
    fn find_indexed(
        &self,
        field: &egard::FieldName,
        token: &egard::store::LookupToken,
    ) -> Result<Option<egard::CustomerId>, egard::StoreError> {
        self.inner.find_indexed(field, token)
    }
}

#[test]
fn a_store_answering_for_another_customer_opens_nothing_and_seals_nothing() {
    let inner: Arc<dyn Store> = Arc::new(egard::MemoryStore::new());
    let clock = ManualClock::new(t0());
    let (y, z) = {
        let v = vault_on(inner.clone(), &clock);
        v.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))
            .unwrap();
        let y = v.create_customer().unwrap();
        let z = v.create_customer().unwrap();
        v.set_field(y, "email", "y@example.com").unwrap();
        v.set_field(z, "email", "z@example.com").unwrap();
        give(&v, y, "newsletter");
        (y, z)
    };
    let v = vault_on(
        Arc::new(Swapping {
            inner: inner.clone(),
            asked: z,
            given: y,
        }),
        &clock,
    );
    // Z never consented: Y's consent must not open Z, nor Y's key seal Z's data.
    assert_refused("wrong customer, authorize", v.authorize(z, "newsletter"));
    assert_refused("wrong customer, seal", v.seal(z, "email", &"secret".to_owned()));
    assert_refused("wrong customer, set_field", v.set_field(z, "email", "x@example.com"));
    assert_refused("wrong customer, consents", v.consents(z));
    assert!(matches!(v.audit_events(z), Err(Error::Storage(_))));
    // Y, asked for as Y, is fine.
    let pass = v.authorize(y, "newsletter").unwrap();
    assert_eq!(v.reveal::<String>(&pass, "email").unwrap().expose(), "y@example.com");
}

#[test]
fn a_store_answering_with_another_customers_envelopes_opens_nothing() {
    // The customer's record is right, but the envelope row holds another customer's.
    let inner: Arc<dyn Store> = Arc::new(egard::MemoryStore::new());
    let clock = ManualClock::new(t0());
    let v = vault_on(inner.clone(), &clock);
    v.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let y = v.create_customer().unwrap();
    let z = v.create_customer().unwrap();
    v.set_field(y, "email", "y@example.com").unwrap();
    v.set_field(z, "email", "z@example.com").unwrap();
    give(&v, z, "newsletter");
    drop(v);
    // The envelope rows of Y written under Z's id: same field, another customer's write.
    let y_email = inner
        .field(y, &egard::FieldName::new("email").unwrap())
        .unwrap()
        .unwrap();
    let z_email = inner
        .field(z, &egard::FieldName::new("email").unwrap())
        .unwrap()
        .unwrap();
    inner
        .apply(&[egard::store::Write::PutField {
            customer: z,
            field: y_email.field.clone(),
            version: z_email.version,
            envelope: y_email.envelope.clone(),
            at: z_email.written_at,
        }])
        .unwrap();
    let v = vault_on(inner, &clock);
    let pass = v.authorize(z, "newsletter").unwrap();
    assert_refused("another customer's envelope", v.reveal::<String>(&pass, "email"));
}

#[test]
fn a_second_vault_on_one_store_object_without_a_time_to_live_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("egard.db")).unwrap());
    let clock = ManualClock::new(t0());
    let a = vault_on(store.clone(), &clock);
    let second = Vault::builder()
        .master_key(MasterKey::from_bytes(KEY))
        .store(store.clone())
        .build();
    assert!(
        matches!(second, Err(Error::Config(_))),
        "B would not see A's withdrawals"
    );
    drop(a);
    // Either one vault, shared between threads, or every vault with a time-to-live.
    let shared = |ttl| {
        Vault::builder()
            .master_key(MasterKey::from_bytes(KEY))
            .store(store.clone())
            .clock(clock.clone())
            .cache_ttl(ttl)
            .build()
            .unwrap()
    };
    let a = shared(Duration::zero());
    let b = shared(Duration::zero());
    a.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let c = a.create_customer().unwrap();
    give(&a, c, "newsletter");
    let pass = a.authorize(c, "newsletter").unwrap();
    // With a time-to-live of zero, B's withdrawal and erasure stop A at once.
    b.withdraw_consent(c, "newsletter").unwrap();
    assert!(matches!(
        a.authorize(c, "newsletter"),
        Err(Error::Denied(AccessDenied::Withdrawn))
    ));
    assert!(matches!(
        a.reveal::<String>(&pass, "email"),
        Err(Error::Denied(AccessDenied::Withdrawn))
    ));
    give(&b, c, "newsletter");
    let pass = a.authorize(c, "newsletter").unwrap();
    b.erase_customer(c).unwrap();
    assert!(matches!(a.authorize(c, "newsletter"), Err(Error::Erased(_))));
    assert!(matches!(a.reveal::<String>(&pass, "email"), Err(Error::Erased(_))));
}

#[test]
fn a_stored_audit_sequence_number_at_its_maximum_is_an_error_not_a_panic() {
    let store: Arc<dyn Store> = Arc::new(egard::MemoryStore::new());
    let clock = ManualClock::new(t0());
    let v = vault_on(store.clone(), &clock);
    v.create_customer().unwrap();
    drop(v);
    let mut head = store.audit_head().unwrap().unwrap();
    head.seq = u64::MAX;
    store.apply(&[egard::store::Write::AppendAudit(head)]).unwrap();
    let v = vault_on(store, &clock);
    assert!(matches!(
        v.create_customer(),
        Err(Error::Storage(egard::StoreError::Corrupt(_)))
    ));
    assert!(matches!(
        v.define_purpose(Purpose::new("p", LawfulBasis::Consent).fields(["email"])),
        Err(Error::Storage(egard::StoreError::Corrupt(_)))
    ));
    assert!(v.verify_audit().is_err());
}

#[test]
fn a_refusal_of_an_erased_customer_is_audited() {
    let (v, _) = {
        let clock = ManualClock::new(t0());
        (vault_on(Arc::new(egard::MemoryStore::new()), &clock), clock)
    };
    v.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let c = v.create_customer().unwrap();
    give(&v, c, "newsletter");
    v.erase_customer(c).unwrap();
    let before = v.audit_events(c).unwrap().len();
    assert!(matches!(v.authorize(c, "newsletter"), Err(Error::Erased(_))));
    let events = v.audit_events(c).unwrap();
    assert_eq!(events.len(), before + 1, "the refusal is a decision, and it is logged");
    let last = events.last().unwrap();
    assert_eq!(last.kind, egard::AuditKind::AccessDenied);
    assert_eq!(last.detail, "erased");
    assert_eq!(last.purpose.as_ref().map(|p| p.as_str()), Some("newsletter"));
    v.verify_audit().unwrap();
}
