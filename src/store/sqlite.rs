//! The embedded, durable store: one SQLite database file (SQLite is bundled, nothing to
//! install).
//!
//! See [`SqliteStore`] for durability, concurrency and schema rules.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration as StdDuration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};
use uuid::Uuid;

use super::{
    Authenticated, ChainLink, CustomerRecord, CustomerSnapshot, FieldVersion, LatestChange, LookupToken, Objection,
    PurposeSnapshot, RecordMac, Store, StoreError, StoredField, StoredLookup, StoredPurpose, VaultSecret, WrappedKey,
    Write,
};
use crate::actor::Actor;
use crate::audit::{AuditAnchor, AuditEvent, AuditKind, CHANGE_KINDS_SQL};
use crate::choices::SealedChoices;
use crate::consent::{Consent, Evidence};
use crate::error::Error;
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};
use crate::integrity::basis_code;
use crate::purpose::{LawfulBasis, Purpose};

/// The forward migrations; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE purposes (
        id TEXT PRIMARY KEY NOT NULL,
        definition TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE customers (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        created_at INTEGER NOT NULL,
        restricted INTEGER NOT NULL,
        erased_at INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE data_keys (
        customer BLOB NOT NULL REFERENCES customers (id),
        version INTEGER NOT NULL,
        wrapped BLOB NOT NULL,
        PRIMARY KEY (customer, version)
    ) WITHOUT ROWID;
    CREATE TABLE fields (
        customer BLOB NOT NULL REFERENCES customers (id),
        field TEXT NOT NULL,
        envelope BLOB NOT NULL,
        written_at INTEGER NOT NULL,
        PRIMARY KEY (customer, field)
    ) WITHOUT ROWID;
    CREATE TABLE consents (
        id BLOB PRIMARY KEY NOT NULL,
        customer BLOB NOT NULL REFERENCES customers (id),
        purpose TEXT NOT NULL,
        basis TEXT NOT NULL,
        notice_version INTEGER NOT NULL,
        given_at INTEGER NOT NULL,
        expires_at INTEGER,
        withdrawn_at INTEGER,
        superseded_by BLOB,
        evidence TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX consents_by_customer ON consents (customer);
    CREATE TABLE objections (
        customer BLOB NOT NULL REFERENCES customers (id),
        purpose TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX objections_by_customer ON objections (customer);
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        customer BLOB,
        purpose TEXT,
        field TEXT,
        detail TEXT NOT NULL,
        mac BLOB NOT NULL
    );
    CREATE INDEX audit_by_customer ON audit (customer, seq) WHERE customer IS NOT NULL;",
    // Version 2: vault-level secrets (the audit key), stored wrapped under a master key.
    "CREATE TABLE vault_secrets (
        name TEXT PRIMARY KEY NOT NULL,
        wrapped BLOB NOT NULL
    ) WITHOUT ROWID;",
    // Version 3: authenticated records. Revisions and MACs of purposes, customers, consents
    // and objections; the write version of each field; the state MAC recorded by each change
    // in the audit log, with the indexes that find a customer's or purpose's latest one.
    // Rows written before have no MAC and fail their check: the vault refuses them.
    "ALTER TABLE purposes ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE purposes ADD COLUMN mac BLOB;
    ALTER TABLE customers ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE customers ADD COLUMN mac BLOB;
    ALTER TABLE customers ADD COLUMN key_uses INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE fields ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE consents ADD COLUMN mac BLOB;
    ALTER TABLE objections ADD COLUMN mac BLOB;
    ALTER TABLE audit ADD COLUMN state BLOB;
    CREATE INDEX audit_changes_by_customer ON audit (customer, seq)
        WHERE state IS NOT NULL AND customer IS NOT NULL;
    CREATE INDEX audit_changes_by_purpose ON audit (purpose, seq)
        WHERE state IS NOT NULL AND customer IS NULL;",
    // Version 4: lookups (blind indexes). Each field's lookup token, unique per field name
    // among live customers (an erasure deletes the row), and the authenticated definitions.
    "ALTER TABLE fields ADD COLUMN lookup_token BLOB;
    CREATE UNIQUE INDEX fields_by_lookup_token ON fields (field, lookup_token)
        WHERE lookup_token IS NOT NULL;
    CREATE TABLE lookups (
        field TEXT PRIMARY KEY NOT NULL,
        normalizer TEXT NOT NULL,
        mac BLOB NOT NULL
    ) WITHOUT ROWID;",
    // Version 5: reaching customers. The current (neither withdrawn nor superseded) consent
    // records by purpose and customer, which propose a purpose's audience; the change events
    // by sequence number, which serve the change feed. The kinds listed are
    // `crate::audit::CHANGE_KINDS_SQL`, which the feed's query repeats for the index to apply.
    "CREATE INDEX consents_current ON consents (purpose, customer, notice_version)
        WHERE withdrawn_at IS NULL AND superseded_by IS NULL;
    CREATE INDEX audit_change_feed ON audit (seq)
        WHERE kind IN ('purpose_defined', 'customer_created', 'consent_given', \
     'consent_withdrawn', 'field_written', 'field_rectified', 'field_deleted', 'restricted', \
     'restriction_lifted', 'objected', 'erased', 'key_rotated');",
    // Version 6: who acted. The actor the host named for the call that wrote each audit
    // event (an id such as `service:mailer`, never personal data); NULL on events written
    // before, and on the vault's own administration.
    "ALTER TABLE audit ADD COLUMN actor TEXT;",
    // Version 7: declared choices. The customer's choices given with a consent record, sealed
    // under their data key (a field envelope; NULL when none were given).
    "ALTER TABLE consents ADD COLUMN choices BLOB;",
];

/// The newest schema version this release understands.
pub const SQLITE_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// How many idle reader connections are kept.
const MAX_IDLE_READERS: usize = 16;

/// What an acknowledged write survives; see [`SqliteStore`].
///
/// Every level survives a crash of the process (SIGKILL, panic, abort): when
/// [`Store::apply`] returns, the transaction is in the WAL file, and the database is
/// consistent after any crash. They differ on an operating-system crash or a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// The default. Every batch that changes something (a customer, a key, a field, a
    /// consent, a withdrawal, an objection, a restriction, an erasure, a purpose) is fsynced
    /// before `apply` returns (`synchronous=FULL`): it survives a power cut. A batch that
    /// only logs an access (the audit events of `authorize`, of exports and of audience
    /// listings) is not fsynced
    /// (`synchronous=NORMAL`): it survives a process crash at once, and a power cut from the
    /// next fsynced batch or checkpoint on (the WAL is synced in order, so the log never has
    /// a hole; at worst it ends a few accesses early). A vault's changes reach the store
    /// through [`Store::apply_chained`], which commits without the fsync, and
    /// [`Store::sync`], which the vault calls before acknowledging the change: the WAL is
    /// synced then, outside the write lock, so other calls' batches commit meanwhile; the
    /// guarantee is the same.
    #[default]
    Changes,
    /// Every batch is fsynced (`synchronous=FULL`), access logs included: every `authorize`
    /// pays for a disk sync.
    Full,
    /// No batch is fsynced at commit (`synchronous=NORMAL`); the WAL is synced at
    /// checkpoints. The last acknowledged batches may be lost on a power cut.
    ProcessCrash,
}

impl Durability {
    /// Whether a batch needs `synchronous=FULL`.
    fn full_for(self, batch: &[Write]) -> bool {
        match self {
            Durability::Full => true,
            Durability::ProcessCrash => false,
            // A batch of events that change nothing (accesses, exports, listings) is not a
            // change; every change's batch also holds the records it changes.
            Durability::Changes => !batch
                .iter()
                .all(|w| matches!(w, Write::AppendAudit(e) if !e.kind.is_change())),
        }
    }
}

/// Options for [`SqliteStore::open_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// What an acknowledged write survives; [`Durability::Changes`] by default.
    pub durability: Durability,
}

impl SqliteOptions {
    /// The defaults: changes durable against power loss.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what an acknowledged write survives.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// A durable store in one SQLite database file: the embedded default.
///
/// # Durability
///
/// The database runs in WAL mode; every [`Store::apply`] batch is one `BEGIN IMMEDIATE`
/// transaction. When `apply` returns `Ok`, the batch survives a crash of the process
/// (SIGKILL, panic, abort) whatever the [`Durability`]; by default ([`Durability::Changes`])
/// every batch that changes something is also fsynced (`synchronous=FULL`), so that it
/// survives an operating-system crash or a power cut too: a withdrawal confirmed to a
/// customer must never come back to life. The audit events that only record an access
/// (`authorize`, exports) are committed with `synchronous=NORMAL`: an fsync per `authorize`
/// would cost milliseconds on common disks, and such an event becomes power-loss durable
/// with the next fsynced batch or checkpoint (the WAL is synced in order). Choose
/// [`Durability::Full`] to fsync those too, or [`Durability::ProcessCrash`] to fsync nothing
/// at commit, with [`SqliteStore::open_with`].
///
/// # Concurrency
///
/// One writer connection behind a mutex serialises the writers of this process (so they
/// never meet SQLite's `database is locked`); reads go through a small pool of reader
/// connections, which WAL lets run alongside the writer. Several processes may open the same
/// file: `BEGIN IMMEDIATE` and a busy timeout serialise their writers (give their vaults a
/// [`cache_ttl`](crate::VaultBuilder::cache_ttl)).
///
/// # Schema
///
/// A `schema_version` table records the schema (version 2 added the `vault_secrets` table,
/// which holds the wrapped audit key); opening an older file migrates it forward in one
/// transaction, opening a newer one fails with [`StoreError::SchemaTooNew`] and
/// changes nothing. Personal data is only ever stored as envelopes (ciphertext `BLOB`s); no
/// column holds plaintext. Stored rows are read as untrusted input: anything that does not
/// decode is [`StoreError::Corrupt`], never a panic.
///
/// ```
/// use egard::{MasterKey, SqliteStore, Vault};
///
/// let dir = tempfile::tempdir().unwrap();
/// let vault = Vault::builder()
///     .master_key(MasterKey::from_bytes([1; 32]))
///     .store(SqliteStore::open(dir.path().join("egard.db"))?)
///     .build()?;
/// # Ok::<(), egard::Error>(())
/// ```
pub struct SqliteStore {
    writer: Mutex<Writer>,
    /// `None` for an in-memory database, which only its one connection can see.
    readers: Option<Readers>,
    path: Option<PathBuf>,
    durability: Durability,
}

/// The writer connection, its current `synchronous` setting, and whether deleted bytes may
/// still be in the write-ahead log.
struct Writer {
    conn: Connection,
    full: bool,
    purge_pending: bool,
}

impl Writer {
    fn new(conn: Connection) -> Self {
        Self {
            conn,
            full: true,
            purge_pending: false,
        }
    }

    /// Copies every committed page into the database file and empties the write-ahead log
    /// (`wal_checkpoint(TRUNCATE)`): with `secure_delete` on, the deleted or overwritten bytes
    /// are then in neither file. Fails with [`StoreError::Unavailable`] while another
    /// connection reads an older snapshot (the log cannot be emptied under it); the purge is
    /// then retried after the next write.
    fn purge(&mut self) -> Result<(), StoreError> {
        self.purge_pending = true;
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(map_err)?;
        if busy != 0 {
            return Err(StoreError::Unavailable(
                "the write-ahead log could not be emptied: another connection reads an older snapshot".into(),
            ));
        }
        self.purge_pending = false;
        Ok(())
    }

    /// Sets `synchronous` for the next transaction, if it changes.
    fn synchronous(&mut self, full: bool) -> Result<(), StoreError> {
        if self.full != full {
            let mode = if full { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", mode).map_err(map_err)?;
            self.full = full;
        }
        Ok(())
    }
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it if needed, and migrates its schema
    /// forward, with the default [`Durability::Changes`].
    ///
    /// Fails with [`StoreError::SchemaTooNew`] (inside [`Error::Storage`]) if the file was
    /// written by a newer release, and with [`StoreError::Corrupt`] if it is not an egard
    /// database.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, Error> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the database file at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore, Error> {
        let path = path.as_ref().to_path_buf();
        let mut writer = Connection::open(&path).map_err(map_err)?;
        configure(&writer, true)?;
        migrate(&mut writer)?;
        Ok(SqliteStore {
            writer: Mutex::new(Writer::new(writer)),
            readers: Some(Readers {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
            }),
            path: Some(path),
            durability: options.durability,
        })
    }

    /// A private database held in memory, for tests: nothing survives the store.
    pub fn in_memory() -> Result<SqliteStore, Error> {
        let mut writer = Connection::open_in_memory().map_err(map_err)?;
        configure(&writer, false)?;
        migrate(&mut writer)?;
        Ok(SqliteStore {
            writer: Mutex::new(Writer::new(writer)),
            readers: None,
            path: None,
            durability: Durability::default(),
        })
    }

    /// The database file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Makes sure no deleted or overwritten envelope or wrapped key is left in the database
    /// file or its write-ahead log.
    ///
    /// The store does this by itself after every write that deletes or overwrites such bytes
    /// (an erasure, a rectification, a retention sweep, a re-wrap): deleted content is zeroed
    /// in place (`secure_delete`), then the log is copied into the file and emptied
    /// (`wal_checkpoint(TRUNCATE)`). The log cannot be emptied while another connection, in
    /// another process, reads a snapshot older than the write; the store then tries again
    /// after its next write, and [`purge_pending`](SqliteStore::purge_pending) says so. Call
    /// this to try now: it fails with [`StoreError::Unavailable`] (inside
    /// [`Error::Storage`]) if it still cannot.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = egard::SqliteStore::open(dir.path().join("egard.db"))?;
    /// store.purge()?;
    /// assert!(!store.purge_pending());
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn purge(&self) -> Result<(), Error> {
        if self.path.is_none() {
            // An in-memory database has no file and no log.
            return Ok(());
        }
        Ok(self.writer().purge()?)
    }

    /// Whether deleted bytes may still be in the write-ahead log: a purge after a write could
    /// not complete yet (see [`purge`](SqliteStore::purge)).
    pub fn purge_pending(&self) -> bool {
        self.writer().purge_pending
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the writer drops its transaction, which rolls back: the
        // connection is still consistent.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on a reader connection: one statement, or several in one read transaction
    /// (one consistent snapshot) when `snapshot` is asked.
    fn read<R>(
        &self,
        snapshot: bool,
        read: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let Some(readers) = &self.readers else {
            let writer = self.writer();
            return in_read_tx(&writer.conn, snapshot, read);
        };
        let pooled = readers.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open(&readers.path).map_err(map_err)?;
                configure(&conn, false)?;
                conn.pragma_update(None, "query_only", true).map_err(map_err)?;
                conn
            }
        };
        let out = in_read_tx(&conn, snapshot, read);
        let mut idle = readers.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS && conn.is_autocommit() {
            idle.push(conn);
        }
        out
    }
}

fn in_read_tx<R>(
    conn: &Connection,
    snapshot: bool,
    read: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    if !snapshot {
        // One statement is its own (implicit) read transaction.
        return read(conn);
    }
    let tx = conn.unchecked_transaction().map_err(map_err)?;
    let out = read(&tx)?;
    tx.finish().map_err(map_err)?;
    Ok(out)
}

/// Sets the pragmas every connection needs.
/// Sets the pragmas every connection needs; `synchronous=FULL` until a batch says otherwise.
fn configure(conn: &Connection, wal: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    if wal {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(map_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable("the database refused WAL mode".into()));
        }
    }
    conn.pragma_update(None, "foreign_keys", true).map_err(map_err)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(map_err)?;
    // Deleted and overwritten content (a rectified field's old envelope, an erased customer's
    // wrapped keys) is overwritten with zeros in the database pages and free pages.
    conn.pragma_update(None, "secure_delete", true).map_err(map_err)?;
    Ok(())
}

/// Brings the schema to [`SQLITE_SCHEMA_VERSION`], in one transaction; refuses newer ones.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(map_err)?;
    let versions: Vec<i64> = {
        let mut stmt = tx.prepare("SELECT version FROM schema_version").map_err(map_err)?;
        let rows = stmt.query_map([], |row| row.get(0)).map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)?
    };
    let found = match versions.as_slice() {
        [] => 0,
        [v] => u32::try_from(*v).map_err(|_| corrupt("schema version out of range"))?,
        _ => return Err(corrupt("several schema versions recorded")),
    };
    if found > SQLITE_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SQLITE_SCHEMA_VERSION,
        });
    }
    if found == SQLITE_SCHEMA_VERSION {
        return tx.commit().map_err(map_err);
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.execute_batch(step).map_err(map_err)?;
    }
    tx.execute("DELETE FROM schema_version", []).map_err(map_err)?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [i64::from(SQLITE_SCHEMA_VERSION)],
    )
    .map_err(map_err)?;
    tx.commit().map_err(map_err)
}

/// Maps a SQLite failure to a [`StoreError`] that names the failure, never a value.
fn map_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable("database busy: another process held the lock too long".into())
            }
            ErrorCode::NotADatabase => corrupt("not a SQLite database"),
            ErrorCode::DatabaseCorrupt => corrupt("the database file is malformed"),
            ErrorCode::ConstraintViolation => corrupt("a stored row violates the schema"),
            ErrorCode::TypeMismatch => corrupt("a stored value has the wrong type"),
            ErrorCode::DiskFull => StoreError::Unavailable("disk full".into()),
            ErrorCode::CannotOpen => StoreError::Unavailable("cannot open the database file".into()),
            ErrorCode::ReadOnly => StoreError::Unavailable("the database is read-only".into()),
            ErrorCode::PermissionDenied => StoreError::Unavailable("permission denied".into()),
            ErrorCode::SystemIoFailure => StoreError::Unavailable("I/O error".into()),
            _ => StoreError::Unavailable(format!("SQLite error code {}", f.extended_code)),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => corrupt("a stored value does not decode"),
        _ => StoreError::Unavailable("SQLite interface error".into()),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

// ----- encoding -----

fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn opt_micros(t: &Option<DateTime<Utc>>) -> Option<i64> {
    t.as_ref().map(micros)
}

fn seq_to_sql(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Unavailable("audit sequence number beyond i64::MAX".into()))
}

fn rev_to_sql(rev: u64) -> Result<i64, StoreError> {
    i64::try_from(rev).map_err(|_| StoreError::Unavailable("revision beyond i64::MAX".into()))
}

/// An expected revision: one no row can hold is stale by definition.
fn expected_rev_to_sql(rev: u64) -> Result<i64, StoreError> {
    i64::try_from(rev).map_err(|_| StoreError::Stale)
}

fn basis_from_code(code: &str) -> Option<LawfulBasis> {
    [
        LawfulBasis::Consent,
        LawfulBasis::Contract,
        LawfulBasis::LegalObligation,
        LawfulBasis::VitalInterests,
        LawfulBasis::PublicTask,
        LawfulBasis::LegitimateInterests,
    ]
    .into_iter()
    .find(|b| basis_code(*b) == code)
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|_| StoreError::Unavailable(format!("{what} could not be encoded")))
}

// ----- decoding (stored rows are untrusted) -----

/// Reads column `i` of a row, checking its type; `column` names it in errors.
struct Col<'r, 's> {
    row: &'r Row<'s>,
}

impl Col<'_, '_> {
    fn value(&self, i: usize, column: &str) -> Result<ValueRef<'_>, StoreError> {
        self.row
            .get_ref(i)
            .map_err(|_| StoreError::Corrupt(format!("missing column {column}")))
    }

    fn int(&self, i: usize, column: &str) -> Result<i64, StoreError> {
        self.opt_int(i, column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is null")))
    }

    fn opt_int(&self, i: usize, column: &str) -> Result<Option<i64>, StoreError> {
        match self.value(i, column)? {
            ValueRef::Integer(v) => Ok(Some(v)),
            ValueRef::Null => Ok(None),
            _ => Err(StoreError::Corrupt(format!("{column} is not an integer"))),
        }
    }

    fn blob(&self, i: usize, column: &str) -> Result<Vec<u8>, StoreError> {
        self.opt_blob(i, column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is null")))
    }

    fn opt_blob(&self, i: usize, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.value(i, column)? {
            ValueRef::Blob(b) => Ok(Some(b.to_vec())),
            ValueRef::Null => Ok(None),
            _ => Err(StoreError::Corrupt(format!("{column} is not a blob"))),
        }
    }

    fn text(&self, i: usize, column: &str) -> Result<String, StoreError> {
        self.opt_text(i, column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is null")))
    }

    fn opt_text(&self, i: usize, column: &str) -> Result<Option<String>, StoreError> {
        match self.value(i, column)? {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| StoreError::Corrupt(format!("{column} is not UTF-8"))),
            ValueRef::Null => Ok(None),
            _ => Err(StoreError::Corrupt(format!("{column} is not text"))),
        }
    }

    fn time(&self, i: usize, column: &str) -> Result<DateTime<Utc>, StoreError> {
        time_from(self.int(i, column)?, column)
    }

    fn opt_time(&self, i: usize, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(i, column)?.map(|v| time_from(v, column)).transpose()
    }

    fn uuid(&self, i: usize, column: &str) -> Result<Uuid, StoreError> {
        uuid_from(&self.blob(i, column)?, column)
    }

    fn customer(&self, i: usize, column: &str) -> Result<CustomerId, StoreError> {
        CustomerId::from_uuid(self.uuid(i, column)?)
            .map_err(|_| StoreError::Corrupt(format!("{column} is not a customer id")))
    }

    fn opt_customer(&self, i: usize, column: &str) -> Result<Option<CustomerId>, StoreError> {
        match self.opt_blob(i, column)? {
            None => Ok(None),
            Some(b) => CustomerId::from_uuid(uuid_from(&b, column)?)
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("{column} is not a customer id"))),
        }
    }

    fn purpose(&self, i: usize, column: &str) -> Result<PurposeId, StoreError> {
        PurposeId::new(&self.text(i, column)?).map_err(|_| StoreError::Corrupt(format!("{column} is not a purpose id")))
    }

    fn opt_purpose(&self, i: usize, column: &str) -> Result<Option<PurposeId>, StoreError> {
        self.opt_text(i, column)?
            .map(|s| PurposeId::new(&s).map_err(|_| StoreError::Corrupt(format!("{column} is not a purpose id"))))
            .transpose()
    }

    fn field(&self, i: usize, column: &str) -> Result<FieldName, StoreError> {
        FieldName::new(&self.text(i, column)?).map_err(|_| StoreError::Corrupt(format!("{column} is not a field name")))
    }

    fn opt_field(&self, i: usize, column: &str) -> Result<Option<FieldName>, StoreError> {
        self.opt_text(i, column)?
            .map(|s| FieldName::new(&s).map_err(|_| StoreError::Corrupt(format!("{column} is not a field name"))))
            .transpose()
    }

    fn u32(&self, i: usize, column: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(i, column)?).map_err(|_| StoreError::Corrupt(format!("{column} is out of range")))
    }

    fn u64(&self, i: usize, column: &str) -> Result<u64, StoreError> {
        u64::try_from(self.int(i, column)?).map_err(|_| StoreError::Corrupt(format!("{column} is out of range")))
    }

    fn mac(&self, i: usize, column: &str) -> Result<RecordMac, StoreError> {
        self.opt_mac(i, column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is missing (a row written before schema 3?)")))
    }

    fn opt_mac(&self, i: usize, column: &str) -> Result<Option<RecordMac>, StoreError> {
        self.opt_blob(i, column)?
            .map(|b| {
                RecordMac::try_from(b.as_slice()).map_err(|_| StoreError::Corrupt(format!("{column} is not 32 bytes")))
            })
            .transpose()
    }

    fn bool(&self, i: usize, column: &str) -> Result<bool, StoreError> {
        match self.int(i, column)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StoreError::Corrupt(format!("{column} is not a boolean"))),
        }
    }
}

fn time_from(v: i64, column: &str) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_micros(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("{column} is out of range")))
}

fn uuid_from(bytes: &[u8], column: &str) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|_| StoreError::Corrupt(format!("{column} is not a UUID")))
}

/// Runs a query and decodes every row with `decode`.
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&Col<'_, '_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let mut rows = stmt.query(params).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        out.push(decode(&Col { row })?);
    }
    Ok(out)
}

/// A page of candidates for an audience: the current records of a purpose, from the
/// `consents_current` index, of customers not erased.
const CANDIDATES_SQL: &str = "SELECT DISTINCT c.customer FROM consents c JOIN customers u ON u.id = c.customer
     WHERE c.purpose = ?1 AND c.withdrawn_at IS NULL AND c.superseded_by IS NULL AND c.customer > ?2
       AND c.notice_version >= ?3 AND c.notice_version <= ?4 AND u.erased_at IS NULL
     ORDER BY c.customer LIMIT ?5";

const AUDIT_COLUMNS: &str = "seq, at, kind, customer, purpose, field, detail, mac, state, actor";

fn decode_audit(c: &Col<'_, '_>) -> Result<AuditEvent, StoreError> {
    let seq = u64::try_from(c.int(0, "audit.seq")?).map_err(|_| corrupt("audit.seq is negative"))?;
    let kind = AuditKind::from_code(&c.text(2, "audit.kind")?).ok_or_else(|| corrupt("audit.kind is unknown"))?;
    Ok(AuditEvent {
        seq,
        at: c.time(1, "audit.at")?,
        kind,
        customer: c.opt_customer(3, "audit.customer")?,
        purpose: c.opt_purpose(4, "audit.purpose")?,
        field: c.opt_field(5, "audit.field")?,
        detail: c.text(6, "audit.detail")?,
        mac: c.mac(7, "audit.mac")?,
        state: c.opt_mac(8, "audit.state")?,
        actor: c
            .opt_text(9, "audit.actor")?
            .map(|a| Actor::new(&a).map_err(|_| corrupt("audit.actor is not an actor id")))
            .transpose()?,
    })
}

fn decode_field(c: &Col<'_, '_>) -> Result<StoredField, StoreError> {
    Ok(StoredField {
        field: c.field(0, "fields.field")?,
        envelope: c.blob(1, "fields.envelope")?,
        written_at: c.time(2, "fields.written_at")?,
        version: c.u64(3, "fields.version")?,
    })
}

/// The latest event with a state selected by `sql` (one parameter), with the MAC of the event
/// before it; read inside the caller's read transaction.
fn latest_change(
    conn: &Connection,
    sql: &str,
    param: &dyn rusqlite::ToSql,
) -> Result<Option<LatestChange>, StoreError> {
    let Some(event) = query_all(conn, sql, [param], decode_audit)?.pop() else {
        return Ok(None);
    };
    let prev_mac = match event.seq.checked_sub(1).map(seq_to_sql).transpose()? {
        Some(prev) => query_all(conn, "SELECT mac FROM audit WHERE seq = ?1", [prev], |c| {
            c.mac(0, "audit.mac")
        })?
        .pop(),
        None => None,
    };
    Ok(Some(LatestChange { event, prev_mac }))
}

// ----- writing -----

/// Whether a customer exists, and whether it was erased.
fn customer_state(tx: &Connection, id: CustomerId) -> Result<Option<bool>, StoreError> {
    tx.prepare_cached("SELECT erased_at IS NOT NULL FROM customers WHERE id = ?1")
        .map_err(map_err)?
        .query_row([id.as_bytes().as_slice()], |row| row.get::<_, bool>(0))
        .optional()
        .map_err(map_err)
}

/// Checks that `id` exists and, when `live` is asked, that it was not erased.
fn require(tx: &Connection, id: CustomerId, live: bool) -> Result<(), StoreError> {
    match customer_state(tx, id)? {
        Some(erased) if !(live && erased) => Ok(()),
        _ => Err(StoreError::MissingCustomer),
    }
}

fn exec(tx: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
    tx.prepare_cached(sql)
        .map_err(map_err)?
        .execute(params)
        .map_err(map_err)
}

/// Applies one write; returns whether it deleted or overwrote stored bytes that must not
/// survive it (an envelope, a wrapped key or secret).
fn apply_one(tx: &Connection, w: &Write) -> Result<bool, StoreError> {
    let mut shreds = false;
    match w {
        Write::PutPurpose { stored, expected_rev } => {
            let p = &stored.purpose;
            let definition = to_json(p, "a purpose")?;
            let written = match expected_rev {
                None => exec(
                    tx,
                    "INSERT INTO purposes (id, definition, rev, mac) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                    params![p.id(), definition, rev_to_sql(stored.rev)?, stored.mac.as_slice()],
                )?,
                Some(expected) => exec(
                    tx,
                    "UPDATE purposes SET definition = ?2, rev = ?3, mac = ?4 WHERE id = ?1 AND rev = ?5",
                    params![
                        p.id(),
                        definition,
                        rev_to_sql(stored.rev)?,
                        stored.mac.as_slice(),
                        expected_rev_to_sql(*expected)?
                    ],
                )?,
            };
            if written == 0 {
                return Err(StoreError::Stale);
            }
        }
        Write::InsertCustomer(r) => {
            let inserted = exec(
                tx,
                "INSERT INTO customers (id, created_at, restricted, erased_at, rev, mac, key_uses)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                params![
                    r.id.as_bytes().as_slice(),
                    micros(&r.created_at),
                    r.restricted,
                    opt_micros(&r.erased_at),
                    rev_to_sql(r.rev)?,
                    r.mac.as_slice(),
                    rev_to_sql(r.key_uses)?,
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict);
            }
        }
        Write::UpdateCustomer {
            record: r,
            expected_rev,
        } => {
            require(tx, r.id, false)?;
            let updated = exec(
                tx,
                "UPDATE customers SET restricted = ?2, erased_at = coalesce(erased_at, ?3), rev = ?4, mac = ?5,
                                      key_uses = ?7
                 WHERE id = ?1 AND rev = ?6",
                params![
                    r.id.as_bytes().as_slice(),
                    r.restricted,
                    opt_micros(&r.erased_at),
                    rev_to_sql(r.rev)?,
                    r.mac.as_slice(),
                    expected_rev_to_sql(*expected_rev)?,
                    rev_to_sql(r.key_uses)?,
                ],
            )?;
            if updated == 0 {
                return Err(StoreError::Stale);
            }
        }
        Write::PutKey(k) => {
            require(tx, k.customer, true)?;
            // A re-wrap under a new master key: the copy under the old one goes.
            shreds = true;
            exec(
                tx,
                "INSERT INTO data_keys (customer, version, wrapped) VALUES (?1, ?2, ?3)
                 ON CONFLICT (customer, version) DO UPDATE SET wrapped = excluded.wrapped",
                params![k.customer.as_bytes().as_slice(), i64::from(k.version), k.wrapped],
            )?;
        }
        Write::PutField {
            customer,
            field,
            version,
            envelope,
            at,
        } => {
            require(tx, *customer, true)?;
            shreds = exists(
                tx,
                "SELECT 1 FROM fields WHERE customer = ?1 AND field = ?2",
                params![customer.as_bytes().as_slice(), field.as_str()],
            )?;
            exec(
                tx,
                "INSERT INTO fields (customer, field, envelope, written_at, version) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (customer, field) DO UPDATE
                 SET envelope = excluded.envelope, written_at = excluded.written_at, version = excluded.version",
                params![
                    customer.as_bytes().as_slice(),
                    field.as_str(),
                    envelope,
                    micros(at),
                    rev_to_sql(*version)?
                ],
            )?;
        }
        Write::DeleteKey { customer, version } => {
            require(tx, *customer, false)?;
            shreds = exec(
                tx,
                "DELETE FROM data_keys WHERE customer = ?1 AND version = ?2",
                params![customer.as_bytes().as_slice(), i64::from(*version)],
            )? > 0;
        }
        Write::DeleteField { customer, field } => {
            require(tx, *customer, false)?;
            shreds = exec(
                tx,
                "DELETE FROM fields WHERE customer = ?1 AND field = ?2",
                params![customer.as_bytes().as_slice(), field.as_str()],
            )? > 0;
        }
        Write::PutConsent(Authenticated { record: c, mac }) => {
            require(tx, c.customer, false)?;
            exec(
                tx,
                "INSERT INTO consents (id, customer, purpose, basis, notice_version, given_at, expires_at,
                                       withdrawn_at, superseded_by, evidence, mac, choices)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (id) DO UPDATE SET
                   customer = excluded.customer, purpose = excluded.purpose, basis = excluded.basis,
                   notice_version = excluded.notice_version, given_at = excluded.given_at,
                   expires_at = excluded.expires_at, withdrawn_at = excluded.withdrawn_at,
                   superseded_by = excluded.superseded_by, evidence = excluded.evidence, mac = excluded.mac,
                   choices = excluded.choices",
                params![
                    c.id.as_uuid().as_bytes().as_slice(),
                    c.customer.as_bytes().as_slice(),
                    c.purpose.as_str(),
                    basis_code(c.basis),
                    i64::from(c.notice_version),
                    micros(&c.given_at),
                    opt_micros(&c.expires_at),
                    opt_micros(&c.withdrawn_at),
                    c.superseded_by.map(|s| s.as_uuid().as_bytes().to_vec()),
                    to_json(&c.evidence, "consent evidence")?,
                    mac.as_slice(),
                    c.sealed_choices.as_ref().map(SealedChoices::as_bytes),
                ],
            )?;
        }
        Write::PutObjection(Authenticated { record: o, mac }) => {
            require(tx, o.customer, false)?;
            exec(
                tx,
                "INSERT INTO objections (customer, purpose, at, mac) VALUES (?1, ?2, ?3, ?4)",
                params![
                    o.customer.as_bytes().as_slice(),
                    o.purpose.as_str(),
                    micros(&o.at),
                    mac.as_slice()
                ],
            )?;
        }
        Write::EraseCustomer { customer, at } => {
            require(tx, *customer, false)?;
            let id = customer.as_bytes().as_slice();
            shreds = true;
            exec(tx, "DELETE FROM data_keys WHERE customer = ?1", [id])?;
            exec(tx, "DELETE FROM fields WHERE customer = ?1", [id])?;
            exec(
                tx,
                "UPDATE customers SET erased_at = coalesce(erased_at, ?2) WHERE id = ?1",
                params![id, micros(at)],
            )?;
        }
        Write::AppendAudit(e) => append_audit(tx, e)?,
        Write::InsertSecret(v) => {
            let inserted = exec(
                tx,
                "INSERT INTO vault_secrets (name, wrapped) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![v.name, v.wrapped],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict);
            }
        }
        Write::IndexField { customer, field, token } => {
            require(tx, *customer, true)?;
            tx.prepare_cached("UPDATE fields SET lookup_token = ?3 WHERE customer = ?1 AND field = ?2")
                .map_err(map_err)?
                .execute(params![
                    customer.as_bytes().as_slice(),
                    field.as_str(),
                    token.as_ref().map(|t| t.as_slice())
                ])
                .map_err(|e| match e.sqlite_error_code() {
                    // The one unique constraint this update can break: the lookup token's.
                    Some(ErrorCode::ConstraintViolation) => StoreError::Duplicate,
                    _ => map_err(e),
                })?;
        }
        Write::PutLookup(l) => {
            let inserted = exec(
                tx,
                "INSERT INTO lookups (field, normalizer, mac) VALUES (?1, ?2, ?3) ON CONFLICT (field) DO NOTHING",
                params![l.field.as_str(), l.normalizer, l.mac.as_slice()],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict);
            }
        }
        Write::PruneAudit { through, keep } => prune_audit(tx, *through, keep)?,
        Write::ReplaceSecret(v) => {
            shreds = true;
            exec(
                tx,
                "INSERT INTO vault_secrets (name, wrapped) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET wrapped = excluded.wrapped",
                params![v.name, v.wrapped],
            )?;
        }
    }
    Ok(shreds)
}

/// Deletes the audit events up to `through` but those in `keep`: one range delete on the
/// primary key between each two kept events, in the batch's transaction.
fn prune_audit(tx: &Connection, through: u64, keep: &[u64]) -> Result<(), StoreError> {
    let mut keep: Vec<u64> = keep.iter().copied().filter(|s| *s <= through).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 0u64;
    for bound in keep.into_iter().map(Some).chain([None]) {
        let to = match bound {
            Some(k) => k.checked_sub(1),
            None => Some(through),
        };
        if let Some(to) = to.filter(|to| *to >= from) {
            exec(
                tx,
                "DELETE FROM audit WHERE seq >= ?1 AND seq <= ?2",
                params![seq_to_sql(from)?, seq_to_sql(to.min(i64::MAX as u64))?],
            )?;
        }
        match bound.and_then(|k| k.checked_add(1)) {
            Some(next) => from = next,
            None => break,
        }
    }
    Ok(())
}

/// Inserts an audit event; a taken sequence number is a [`StoreError::Conflict`].
fn append_audit(tx: &Connection, e: &AuditEvent) -> Result<(), StoreError> {
    let inserted = exec(
        tx,
        "INSERT INTO audit (seq, at, kind, customer, purpose, field, detail, mac, state, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (seq) DO NOTHING",
        params![
            seq_to_sql(e.seq)?,
            micros(&e.at),
            e.kind.code(),
            e.customer.map(|c| c.as_bytes().to_vec()),
            e.purpose.as_ref().map(PurposeId::as_str),
            e.field.as_ref().map(FieldName::as_str),
            e.detail,
            e.mac.as_slice(),
            e.state.as_ref().map(|s| s.as_slice()),
            e.actor.as_ref().map(Actor::as_str),
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

/// How many audit events one multi-row `INSERT` takes (10 parameters each, well below
/// SQLite's limit of 32,766).
const AUDIT_ROWS_PER_INSERT: usize = 32;

/// Inserts audit events, [`AUDIT_ROWS_PER_INSERT`] rows per statement (a group commit's batch
/// spends most of its time in per-statement work otherwise), the rest one by one.
fn append_audits(tx: &Connection, events: &[AuditEvent]) -> Result<(), StoreError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        let rows: Vec<String> = (0..AUDIT_ROWS_PER_INSERT)
            .map(|r| {
                let p: Vec<String> = (1..=10).map(|c| format!("?{}", r * 10 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO audit (seq, at, kind, customer, purpose, field, detail, mac, state, actor) VALUES {} \
             ON CONFLICT (seq) DO NOTHING",
            rows.join(", ")
        )
    });
    let mut chunks = events.chunks_exact(AUDIT_ROWS_PER_INSERT);
    for chunk in &mut chunks {
        let mut stmt = tx.prepare_cached(sql).map_err(map_err)?;
        for (r, e) in chunk.iter().enumerate() {
            let b = r * 10;
            let bind = |stmt: &mut rusqlite::CachedStatement<'_>, i: usize, v: &dyn rusqlite::ToSql| {
                stmt.raw_bind_parameter(b + i, v).map_err(map_err)
            };
            bind(&mut stmt, 1, &seq_to_sql(e.seq)?)?;
            bind(&mut stmt, 2, &micros(&e.at))?;
            bind(&mut stmt, 3, &e.kind.code())?;
            bind(&mut stmt, 4, &e.customer.as_ref().map(|c| c.as_bytes().as_slice()))?;
            bind(&mut stmt, 5, &e.purpose.as_ref().map(PurposeId::as_str))?;
            bind(&mut stmt, 6, &e.field.as_ref().map(FieldName::as_str))?;
            bind(&mut stmt, 7, &e.detail)?;
            bind(&mut stmt, 8, &e.mac.as_slice())?;
            bind(&mut stmt, 9, &e.state.as_ref().map(|s| s.as_slice()))?;
            bind(&mut stmt, 10, &e.actor.as_ref().map(Actor::as_str))?;
        }
        if stmt.raw_execute().map_err(map_err)? != AUDIT_ROWS_PER_INSERT {
            // Another writer holds one of these sequence numbers.
            return Err(StoreError::Conflict);
        }
    }
    for e in chunks.remainder() {
        append_audit(tx, e)?;
    }
    Ok(())
}

/// The head of the log as the transaction sees it.
fn audit_head_in(tx: &Connection) -> Result<AuditAnchor, StoreError> {
    let head = query_all(tx, "SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1", [], |c| {
        Ok(AuditAnchor {
            seq: c.u64(0, "audit.seq")?,
            mac: c.mac(1, "audit.mac")?,
        })
    })?;
    Ok(head.into_iter().next().unwrap_or(AuditAnchor::EMPTY))
}

/// Whether the query finds a row.
fn exists(tx: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<bool, StoreError> {
    tx.prepare_cached(sql).map_err(map_err)?.exists(params).map_err(map_err)
}

impl Store for SqliteStore {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer();
        writer.synchronous(self.durability.full_for(batch))?;
        let conn = &mut writer.conn;
        // IMMEDIATE: take the write lock up front, so that a concurrent writer in another
        // process waits (busy timeout) instead of failing at its first write.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let mut shreds = false;
        for w in batch {
            // INVARIANT: on error, `tx` is dropped here and rolls the whole batch back.
            shreds |= apply_one(&tx, w)?;
        }
        tx.commit().map_err(map_err)?;
        if (shreds || writer.purge_pending) && self.path.is_some() {
            // The batch is committed whatever happens here: a purge that cannot complete now
            // (a reader of an older snapshot in another process) is retried after the next
            // write, or by `SqliteStore::purge`.
            let _ = writer.purge();
        }
        Ok(())
    }

    fn apply_chained(&self, batch: &[Write], link: &mut ChainLink<'_>) -> Result<AuditAnchor, StoreError> {
        let mut writer = self.writer();
        // Under `Durability::Changes`, a change is committed without an fsync and the vault
        // calls `sync` before acknowledging it: the write lock is not held across the disk's
        // flush, so the access batches of other threads commit meanwhile.
        writer.synchronous(self.durability == Durability::Full)?;
        let conn = &mut writer.conn;
        // IMMEDIATE: the write lock is taken before the head is read and held until the
        // commit, so that another process's writer waits instead of taking the same number.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let mut shreds = false;
        for w in batch {
            // INVARIANT: on error, `tx` is dropped here and rolls the whole batch back.
            shreds |= apply_one(&tx, w)?;
        }
        let head = audit_head_in(&tx)?;
        let events = link(head)?;
        append_audits(&tx, &events)?;
        tx.commit().map_err(map_err)?;
        if (shreds || writer.purge_pending) && self.path.is_some() {
            // As in `apply`: the batch is committed whatever happens here.
            let _ = writer.purge();
        }
        Ok(events.last().map_or(head, |e| AuditAnchor { seq: e.seq, mac: e.mac }))
    }

    fn sync(&self) -> Result<(), StoreError> {
        if self.durability != Durability::Changes {
            return Ok(());
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        // The write-ahead log holds every committed batch not yet checkpointed, in order;
        // syncing it makes them all survive a power cut, as `synchronous=FULL` would have at
        // their commit. A checkpoint already synced what it moved into the database file.
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        match std::fs::OpenOptions::new().read(true).write(true).open(&wal) {
            Ok(file) => file
                .sync_data()
                .map_err(|e| StoreError::Unavailable(format!("syncing the write-ahead log: {}", e.kind()))),
            // No log file: nothing is waiting in one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "opening the write-ahead log to sync it: {}",
                e.kind()
            ))),
        }
    }

    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        self.read(true, |conn| {
            let stored = query_all(conn, "SELECT definition, rev, mac FROM purposes ORDER BY id", [], |c| {
                Ok(StoredPurpose {
                    purpose: serde_json::from_str::<Purpose>(&c.text(0, "purposes.definition")?)
                        .map_err(|_| corrupt("a stored purpose does not decode"))?,
                    rev: c.u64(1, "purposes.rev")?,
                    mac: c.mac(2, "purposes.mac")?,
                })
            })?;
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE purpose = ?1 AND customer IS NULL AND state IS NOT NULL
                 ORDER BY seq DESC LIMIT 1"
            );
            stored
                .into_iter()
                .map(|stored| {
                    let latest_change = latest_change(conn, &sql, &stored.purpose.id())?;
                    Ok(PurposeSnapshot { stored, latest_change })
                })
                .collect()
        })
    }

    fn customer_revision(&self, id: CustomerId) -> Result<Option<(u64, RecordMac)>, StoreError> {
        let key = id.as_bytes().as_slice();
        self.read(false, |conn| {
            let found = query_all(conn, "SELECT rev, mac FROM customers WHERE id = ?1", [key], |c| {
                Ok((c.u64(0, "customers.rev")?, c.mac(1, "customers.mac")?))
            })?;
            Ok(found.into_iter().next())
        })
    }

    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        let key = id.as_bytes().as_slice();
        self.read(true, |conn| {
            let records = query_all(
                conn,
                "SELECT id, created_at, restricted, erased_at, rev, mac, key_uses FROM customers WHERE id = ?1",
                [key],
                |c| {
                    Ok(CustomerRecord {
                        id: c.customer(0, "customers.id")?,
                        created_at: c.time(1, "customers.created_at")?,
                        restricted: c.bool(2, "customers.restricted")?,
                        erased_at: c.opt_time(3, "customers.erased_at")?,
                        rev: c.u64(4, "customers.rev")?,
                        mac: c.mac(5, "customers.mac")?,
                        key_uses: c.u64(6, "customers.key_uses")?,
                    })
                },
            )?;
            let Some(record) = records.into_iter().next() else {
                return Ok(None);
            };
            let keys = query_all(
                conn,
                "SELECT version, wrapped FROM data_keys WHERE customer = ?1",
                [key],
                |c| {
                    Ok(WrappedKey {
                        customer: id,
                        version: c.u32(0, "data_keys.version")?,
                        wrapped: c.blob(1, "data_keys.wrapped")?,
                    })
                },
            )?;
            let consents = query_all(
                conn,
                "SELECT id, purpose, basis, notice_version, given_at, expires_at, withdrawn_at, superseded_by,
                        evidence, mac, choices
                 FROM consents WHERE customer = ?1",
                [key],
                |c| {
                    let basis = basis_from_code(&c.text(2, "consents.basis")?)
                        .ok_or_else(|| corrupt("consents.basis is unknown"))?;
                    let evidence: Evidence = serde_json::from_str(&c.text(8, "consents.evidence")?)
                        .map_err(|_| corrupt("consents.evidence does not decode"))?;
                    let superseded_by = match c.opt_blob(7, "consents.superseded_by")? {
                        None => None,
                        Some(b) => Some(ConsentId::from_uuid(uuid_from(&b, "consents.superseded_by")?)),
                    };
                    Ok(Authenticated {
                        record: Consent {
                            id: ConsentId::from_uuid(c.uuid(0, "consents.id")?),
                            customer: id,
                            purpose: c.purpose(1, "consents.purpose")?,
                            basis,
                            notice_version: c.u32(3, "consents.notice_version")?,
                            given_at: c.time(4, "consents.given_at")?,
                            expires_at: c.opt_time(5, "consents.expires_at")?,
                            withdrawn_at: c.opt_time(6, "consents.withdrawn_at")?,
                            superseded_by,
                            evidence,
                            sealed_choices: c.opt_blob(10, "consents.choices")?.map(SealedChoices::from_bytes),
                        },
                        mac: c.mac(9, "consents.mac")?,
                    })
                },
            )?;
            let objections = query_all(
                conn,
                "SELECT purpose, at, mac FROM objections WHERE customer = ?1",
                [key],
                |c| {
                    Ok(Authenticated {
                        record: Objection {
                            customer: id,
                            purpose: c.purpose(0, "objections.purpose")?,
                            at: c.time(1, "objections.at")?,
                        },
                        mac: c.mac(2, "objections.mac")?,
                    })
                },
            )?;
            let fields = query_all(
                conn,
                "SELECT field, version, written_at, lookup_token FROM fields WHERE customer = ?1",
                [key],
                |c| {
                    Ok(FieldVersion {
                        field: c.field(0, "fields.field")?,
                        version: c.u64(1, "fields.version")?,
                        written_at: c.time(2, "fields.written_at")?,
                        token: c.opt_mac(3, "fields.lookup_token")?,
                    })
                },
            )?;
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE customer = ?1 AND state IS NOT NULL ORDER BY seq DESC LIMIT 1"
            );
            let latest_change = latest_change(conn, &sql, &key)?;
            Ok(Some(CustomerSnapshot {
                record,
                keys,
                consents,
                objections,
                fields,
                latest_change,
            }))
        })
    }

    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
        self.read(false, |conn| {
            let mut found = query_all(
                conn,
                "SELECT field, envelope, written_at, version FROM fields WHERE customer = ?1 AND field = ?2",
                params![customer.as_bytes().as_slice(), field.as_str()],
                decode_field,
            )?;
            Ok(found.pop())
        })
    }

    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
        self.read(false, |conn| {
            query_all(
                conn,
                "SELECT field, envelope, written_at, version FROM fields WHERE customer = ?1",
                [customer.as_bytes().as_slice()],
                decode_field,
            )
        })
    }

    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        self.read(false, |conn| {
            query_all(conn, "SELECT id FROM customers", [], |c| c.customer(0, "customers.id"))
        })
    }

    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        self.read(false, |conn| {
            let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq DESC LIMIT 1");
            Ok(query_all(conn, &sql, [], decode_audit)?.pop())
        })
    }

    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let Ok(from) = i64::try_from(from_seq) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(false, |conn| {
            let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2");
            query_all(conn, &sql, params![from, limit], decode_audit)
        })
    }

    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(false, |conn| {
            let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE customer = ?1 ORDER BY seq");
            query_all(conn, &sql, [customer.as_bytes().as_slice()], decode_audit)
        })
    }

    fn consent_candidates(
        &self,
        purpose: &PurposeId,
        notice_versions: std::ops::RangeInclusive<u32>,
        after: Option<CustomerId>,
        limit: usize,
    ) -> Result<Vec<CustomerId>, StoreError> {
        // An empty blob sorts before every id.
        let after: Vec<u8> = after.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(false, |conn| {
            query_all(
                conn,
                CANDIDATES_SQL,
                params![
                    purpose.as_str(),
                    after,
                    i64::from(*notice_versions.start()),
                    i64::from(*notice_versions.end()),
                    limit
                ],
                |c| c.customer(0, "consents.customer"),
            )
        })
    }

    fn audit_trail(&self, customer: CustomerId) -> Result<Vec<LatestChange>, StoreError> {
        self.read(false, |conn| {
            query_all(
                conn,
                "SELECT a.seq, a.at, a.kind, a.customer, a.purpose, a.field, a.detail, a.mac, a.state, a.actor, p.mac
                 FROM audit a LEFT JOIN audit p ON p.seq = a.seq - 1
                 WHERE a.customer = ?1 ORDER BY a.seq",
                [customer.as_bytes().as_slice()],
                |c| {
                    Ok(LatestChange {
                        event: decode_audit(c)?,
                        prev_mac: c.opt_mac(10, "audit.mac")?,
                    })
                },
            )
        })
    }

    fn audit_changes(&self, after_seq: u64, limit: usize) -> Result<Vec<LatestChange>, StoreError> {
        let Ok(after) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(false, |conn| {
            let sql = format!(
                "SELECT a.seq, a.at, a.kind, a.customer, a.purpose, a.field, a.detail, a.mac, a.state, a.actor, p.mac
                 FROM audit a LEFT JOIN audit p ON p.seq = a.seq - 1
                 WHERE a.kind IN {CHANGE_KINDS_SQL} AND a.seq > ?1 ORDER BY a.seq LIMIT ?2"
            );
            query_all(conn, &sql, params![after, limit], |c| {
                Ok(LatestChange {
                    event: decode_audit(c)?,
                    prev_mac: c.opt_mac(10, "audit.mac")?,
                })
            })
        })
    }

    fn consent_owner(&self, consent: ConsentId) -> Result<Option<CustomerId>, StoreError> {
        // `consents.id` is the primary key: one index lookup.
        self.read(false, |conn| {
            let mut found = query_all(
                conn,
                "SELECT customer FROM consents WHERE id = ?1",
                [consent.as_uuid().as_bytes().as_slice()],
                |c| c.customer(0, "consents.customer"),
            )?;
            Ok(found.pop())
        })
    }

    fn lookups(&self) -> Result<Vec<StoredLookup>, StoreError> {
        self.read(false, |conn| {
            query_all(conn, "SELECT field, normalizer, mac FROM lookups", [], |c| {
                Ok(StoredLookup {
                    field: c.field(0, "lookups.field")?,
                    normalizer: c.text(1, "lookups.normalizer")?,
                    mac: c.mac(2, "lookups.mac")?,
                })
            })
        })
    }

    fn find_indexed(&self, field: &FieldName, token: &LookupToken) -> Result<Option<CustomerId>, StoreError> {
        self.read(false, |conn| {
            let mut found = query_all(
                conn,
                "SELECT customer FROM fields WHERE field = ?1 AND lookup_token = ?2",
                params![field.as_str(), token.as_slice()],
                |c| c.customer(0, "fields.customer"),
            )?;
            // The unique index allows one row; two mean it was dropped: never pick one.
            if found.len() > 1 {
                return Err(StoreError::Corrupt("a lookup token held by several customers".into()));
            }
            Ok(found.pop())
        })
    }

    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        self.read(false, |conn| {
            let mut found = query_all(
                conn,
                "SELECT name, wrapped FROM vault_secrets WHERE name = ?1",
                [name],
                |c| {
                    Ok(VaultSecret {
                        name: c.text(0, "vault_secrets.name")?,
                        wrapped: c.blob(1, "vault_secrets.wrapped")?,
                    })
                },
            )?;
            Ok(found.pop())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egard.db");
        drop(SqliteStore::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        raw.execute(
            "UPDATE schema_version SET version = ?1",
            [i64::from(SQLITE_SCHEMA_VERSION) + 1],
        )
        .unwrap();
        drop(raw);
        match SqliteStore::open(&path) {
            Err(Error::Storage(StoreError::SchemaTooNew { found, supported })) => {
                assert_eq!(found, SQLITE_SCHEMA_VERSION + 1);
                assert_eq!(supported, SQLITE_SCHEMA_VERSION);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        let raw = Connection::open(&path).unwrap();
        let v: i64 = raw
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            v,
            i64::from(SQLITE_SCHEMA_VERSION) + 1,
            "the newer version was downgraded"
        );
    }

    #[test]
    fn a_record_written_before_schema_3_has_no_mac_and_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egard.db");
        let id = CustomerId::new();
        {
            let raw = Connection::open(&path).unwrap();
            raw.execute_batch(MIGRATIONS[0]).unwrap();
            raw.execute_batch(MIGRATIONS[1]).unwrap();
            raw.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (2);",
            )
            .unwrap();
            raw.execute(
                "INSERT INTO customers (id, created_at, restricted, erased_at) VALUES (?1, 0, 0, NULL)",
                [id.as_bytes().as_slice()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        match store.customer(id) {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("customers.mac"), "{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn the_change_feed_index_lists_the_change_kinds() {
        assert!(MIGRATIONS[4].contains(&format!("WHERE kind IN {CHANGE_KINDS_SQL}")));
    }

    #[test]
    fn the_audience_and_the_change_feed_are_answered_from_their_indexes() {
        let store = SqliteStore::in_memory().unwrap();
        let conn = &store.writer().conn;
        let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(params, |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            rows.join("; ")
        };
        let candidates = plan(CANDIDATES_SQL, &[&"p", &Vec::<u8>::new(), &1i64, &2i64, &10i64]);
        assert!(candidates.contains("consents_current"), "{candidates}");
        assert!(!candidates.contains("TEMP B-TREE"), "{candidates}");
        let feed = plan(
            &format!("SELECT seq FROM audit WHERE kind IN {CHANGE_KINDS_SQL} AND seq > ?1 ORDER BY seq LIMIT ?2"),
            &[&0i64, &10i64],
        );
        assert!(feed.contains("audit_change_feed"), "{feed}");
    }

    #[test]
    fn a_version_1_file_is_migrated_forward_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egard.db");
        let id = CustomerId::new();
        {
            let raw = Connection::open(&path).unwrap();
            raw.execute_batch(MIGRATIONS[0]).unwrap();
            raw.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);",
            )
            .unwrap();
            raw.execute(
                "INSERT INTO customers (id, created_at, restricted, erased_at) VALUES (?1, 0, 0, NULL)",
                [id.as_bytes().as_slice()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let kept: i64 = store
            .writer()
            .conn
            .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1, "the v1 data is kept");
        assert_eq!(store.secret("audit").unwrap(), None);
        let secret = VaultSecret {
            name: "audit".into(),
            wrapped: vec![1, 2, 3],
        };
        store.apply(&[Write::InsertSecret(secret.clone())]).unwrap();
        assert_eq!(store.secret("audit").unwrap(), Some(secret));
        drop(store);
        let raw = Connection::open(&path).unwrap();
        let v: i64 = raw
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 7);
        assert_eq!(SQLITE_SCHEMA_VERSION, 7);
    }

    #[test]
    fn reopening_keeps_the_schema_and_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egard.db");
        let id = CustomerId::new();
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .apply(&[Write::InsertCustomer(CustomerRecord {
                    id,
                    created_at: Utc::now(),
                    restricted: false,
                    erased_at: None,
                    rev: 1,
                    key_uses: 0,
                    mac: [0; 32],
                })])
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.customer(id).unwrap().is_some());
        let raw = Connection::open(&path).unwrap();
        let n: i64 = raw
            .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        match SqliteStore::open(&path) {
            Err(Error::Storage(StoreError::Corrupt(msg))) => assert!(msg.contains("not a SQLite database")),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egard.db");
        let store = SqliteStore::open(&path).unwrap();
        let id = CustomerId::new();
        store
            .apply(&[Write::InsertCustomer(CustomerRecord {
                id,
                created_at: Utc::now(),
                restricted: false,
                erased_at: None,
                rev: 1,
                key_uses: 0,
                mac: [0; 32],
            })])
            .unwrap();
        let raw = Connection::open(&path).unwrap();
        let key = id.as_bytes().as_slice();
        raw.execute(
            "INSERT INTO consents VALUES (?1, ?2, 'news', 'bogus', 1, 0, NULL, NULL, NULL, '{}', zeroblob(32), NULL)",
            params![vec![1u8; 16], key],
        )
        .unwrap();
        assert!(matches!(store.customer(id), Err(StoreError::Corrupt(_))));
        raw.execute("DELETE FROM consents", []).unwrap();
        raw.execute("UPDATE customers SET created_at = 'yesterday'", [])
            .unwrap();
        assert!(matches!(store.customer(id), Err(StoreError::Corrupt(_))));
        raw.execute(
            "INSERT INTO audit VALUES (1, 0, 'access_granted', NULL, NULL, NULL, '', x'00', NULL, NULL)",
            [],
        )
        .unwrap();
        assert!(matches!(store.audit_head(), Err(StoreError::Corrupt(_))));
        raw.execute("UPDATE audit SET mac = zeroblob(32), kind = 'nope'", [])
            .unwrap();
        assert!(matches!(store.audit_range(0, 10), Err(StoreError::Corrupt(_))));
        raw.execute("INSERT INTO purposes VALUES ('x', 'not json', 1, zeroblob(32))", [])
            .unwrap();
        assert!(matches!(store.purposes(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn only_changes_are_fsynced_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("egard.db")).unwrap();
        let sync = |store: &SqliteStore| -> i64 {
            store
                .writer()
                .conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        let event = |seq, kind| AuditEvent {
            seq,
            at: Utc::now(),
            kind,
            customer: None,
            purpose: None,
            field: None,
            detail: String::new(),
            state: None,
            actor: None,
            mac: [0; 32],
        };
        // 2 is FULL, 1 is NORMAL.
        assert_eq!(sync(&store), 2);
        store
            .apply(&[Write::AppendAudit(event(1, AuditKind::AccessGranted))])
            .unwrap();
        assert_eq!(sync(&store), 1, "an access log entry alone is not fsynced");
        let change = Write::PutPurpose {
            stored: StoredPurpose {
                purpose: Purpose::new("p", LawfulBasis::Consent).fields(["a"]),
                rev: 1,
                mac: [0; 32],
            },
            expected_rev: None,
        };
        store
            .apply(&[change.clone(), Write::AppendAudit(event(2, AuditKind::PurposeDefined))])
            .unwrap();
        assert_eq!(sync(&store), 2, "a change is fsynced");
        store
            .apply(&[Write::AppendAudit(event(3, AuditKind::ConsentWithdrawn))])
            .unwrap();
        assert_eq!(sync(&store), 2, "a consent event is fsynced");
        let batch = [Write::AppendAudit(event(4, AuditKind::AccessDenied))];
        assert!(Durability::Full.full_for(&batch));
        assert!(!Durability::Changes.full_for(&batch));
        assert!(!Durability::ProcessCrash.full_for(&[change]));
    }

    #[test]
    fn no_column_holds_anything_but_envelopes_and_ids() {
        // Every BLOB/TEXT column is listed here with what it holds; a new column must be
        // added on purpose.
        let store = SqliteStore::in_memory().unwrap();
        let writer = store.writer();
        let conn = &writer.conn;
        let mut columns: Vec<String> = Vec::new();
        for table in [
            "purposes",
            "customers",
            "data_keys",
            "fields",
            "consents",
            "objections",
            "audit",
            "lookups",
        ] {
            let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})")).unwrap();
            let names = stmt.query_map([], |r| r.get::<_, String>(1)).unwrap();
            for n in names {
                columns.push(format!("{table}.{}", n.unwrap()));
            }
        }
        let expected = [
            "purposes.id",
            "purposes.definition",
            "purposes.rev",
            "purposes.mac",
            "customers.id",
            "customers.created_at",
            "customers.restricted",
            "customers.erased_at",
            "customers.rev",
            "customers.mac",
            "customers.key_uses",
            "data_keys.customer",
            "data_keys.version",
            "data_keys.wrapped",
            "fields.customer",
            "fields.field",
            "fields.envelope",
            "fields.written_at",
            "fields.version",
            "fields.lookup_token", // an HMAC of a normalised value, never the value
            "consents.id",
            "consents.customer",
            "consents.purpose",
            "consents.basis",
            "consents.notice_version",
            "consents.given_at",
            "consents.expires_at",
            "consents.withdrawn_at",
            "consents.superseded_by",
            "consents.evidence",
            "consents.mac",
            "consents.choices", // the customer's choices, sealed (a field envelope)
            "objections.customer",
            "objections.purpose",
            "objections.at",
            "objections.mac",
            "audit.seq",
            "audit.at",
            "audit.kind",
            "audit.customer",
            "audit.purpose",
            "audit.field",
            "audit.detail",
            "audit.mac",
            "audit.state",
            "audit.actor", // a host-supplied id such as `service:mailer`, never personal data
            "lookups.field",
            "lookups.normalizer",
            "lookups.mac",
        ];
        assert_eq!(columns, expected);
    }
}
