//! PostgreSQL storage, for fleets of application servers sharing one database.
//!
//! Built on the synchronous [`postgres`](::postgres) client and an [`r2d2`] connection pool,
//! with a small connection manager of egard's own that prepares every statement once per
//! connection. Plain PostgreSQL SQL only (no extensions), so the same schema runs on managed
//! PostgreSQL and on Postgres-wire distributed databases.
//!
//! Rules, the same as every durable egard backend:
//! - a schema version table (`egard_schema_version`) and forward migrations, applied under an
//!   advisory lock so that many servers starting at once migrate once; a database written by
//!   a newer release is refused with [`StoreError::SchemaTooNew`], never downgraded;
//! - every [`Store::apply`] batch is one transaction (one statement for a lone audit event);
//! - the customer rows a batch touches are locked (`FOR UPDATE`) for the transaction, so an
//!   erasure in one process and a key or field write in another can never interleave into a
//!   key that outlives its erasure;
//! - errors carry a SQLSTATE or an I/O error kind, never a stored value or a server message;
//! - every stored row is decoded with checks: a bad row is [`StoreError::Corrupt`], never a
//!   panic.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::postgres::error::SqlState;
use ::postgres::tls::{MakeTlsConnect, TlsConnect};
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Row, Socket, Statement};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Authenticated, ChainLink, CustomerRecord, CustomerSnapshot, FieldVersion, LatestChange, LookupToken, Objection,
    PurposeSnapshot, RecordMac, Store, StoreError, StoredField, StoredLookup, StoredPurpose, VaultSecret, WrappedKey,
    Write,
};
use crate::actor::Actor;
use crate::audit::{AuditAnchor, AuditEvent, AuditKind, CHANGE_KINDS_SQL};
use crate::consent::Consent;
use crate::error::Error;
use crate::ids::{ConsentId, CustomerId, FieldName, PurposeId};

/// The newest schema version this release writes and understands.
pub const POSTGRES_SCHEMA_VERSION: u32 = 6;

/// How to connect: the schema to work in, the pool size and timeouts.
///
/// ```
/// use std::time::Duration;
/// use egard::PostgresOptions;
///
/// let options = PostgresOptions::new()
///     .schema("egard")
///     .pool_size(16)
///     .connect_timeout(Duration::from_secs(5));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PostgresOptions {
    schema: Option<String>,
    pool_size: u32,
    connect_timeout: Duration,
    application_name: Option<String>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresOptions {
    /// The defaults: tables in the connection's default schema (usually `public`), a pool of
    /// at most 8 connections, a 10-second connect timeout.
    pub fn new() -> Self {
        Self {
            schema: None,
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            application_name: None,
        }
    }

    /// Keeps egard's tables in this PostgreSQL schema, created if missing (the role then
    /// needs `CREATE` on the database; a schema created beforehand by an administrator is
    /// used as it is). 1 to 63 characters of `a-z`, `0-9` and `_`, not starting with a digit.
    pub fn schema(mut self, schema: &str) -> Self {
        self.schema = Some(schema.to_owned());
        self
    }

    /// The most connections the pool opens (8 by default; at least 1).
    pub fn pool_size(mut self, connections: u32) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// How long to wait for a connection, when opening one or when the pool is exhausted
    /// (10 seconds by default). Applies unless the URL sets `connect_timeout` itself.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `application_name` the connections report in `pg_stat_activity` (`egard` by
    /// default, unless the URL sets one).
    pub fn application_name(mut self, name: &str) -> Self {
        self.application_name = Some(name.to_owned());
        self
    }
}

/// A [`Store`] in a PostgreSQL database, shared by any number of processes.
///
/// ```no_run
/// use egard::{MasterKey, PostgresStore, Vault};
///
/// let store = PostgresStore::connect("postgres://egard@db.internal:5432/app")?;
/// let vault = Vault::builder()
///     .master_key(MasterKey::from_env("EGARD_MASTER_KEY")?)
///     .store(store)
///     // Several servers on one database: changes made elsewhere count here within 5 s.
///     .cache_ttl(chrono::Duration::seconds(5))
///     .build()?;
/// # Ok::<(), egard::Error>(())
/// ```
///
/// The tables it creates (names prefixed `egard_`, in the configured schema): `schema_version`,
/// `purposes`, `customers`, `keys`, `fields`, `consents`, `objections`, `audit` and
/// `vault_secrets` (the wrapped audit key, added by schema version 2). See the
/// README for the full layout.
pub struct PostgresStore {
    pool: r2d2::Pool<Manager>,
    schema: Option<String>,
    /// Bumped whenever a connection is found dead: pooled connections older than the current
    /// epoch are checked with an empty query before their next use (connections killed
    /// together, as by a restart or failover, are found without costing the hot path a
    /// round trip each time).
    epoch: Arc<AtomicU64>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it can hold a password.
        let state = self.pool.state();
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a `key=value` string), creates
    /// or migrates egard's tables, and opens a pool of connections, without TLS.
    pub fn connect(url: &str) -> Result<PostgresStore, Error> {
        Self::connect_with(url, PostgresOptions::new())
    }

    /// Like [`connect`](Self::connect), with egard's tables in the PostgreSQL schema `schema`
    /// (created if missing): several vaults, or tests, can then share one database apart.
    pub fn connect_with_schema(url: &str, schema: &str) -> Result<PostgresStore, Error> {
        Self::connect_with(url, PostgresOptions::new().schema(schema))
    }

    /// Like [`connect`](Self::connect), with options.
    pub fn connect_with(url: &str, options: PostgresOptions) -> Result<PostgresStore, Error> {
        Self::connect_with_tls(url, options, NoTls)
    }

    /// Like [`connect_with`](Self::connect_with), over TLS: `tls` is any connector for the
    /// `postgres` crate, such as `postgres_native_tls::MakeTlsConnector` or
    /// `postgres_openssl::MakeTlsConnector` (managed databases usually require TLS; set
    /// `sslmode=require` in the URL).
    pub fn connect_with_tls<T>(url: &str, options: PostgresOptions, tls: T) -> Result<PostgresStore, Error>
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let mut config: Config = url
            .parse()
            .map_err(|_| Error::Config("the PostgreSQL URL or connection string does not parse"))?;
        if let Some(schema) = &options.schema {
            check_schema_name(schema)?;
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        match &options.application_name {
            Some(name) => {
                config.application_name(name);
            }
            None if config.get_application_name().is_none() => {
                config.application_name("egard");
            }
            None => {}
        }
        let sql = Arc::new(Sql::new(options.schema.as_deref()));
        let connect: ConnectFn = Box::new(move || config.connect(tls.clone()));

        // Migrate on a connection of its own before the pool prepares its statements.
        let mut client = connect().map_err(|e| pg_error("connect", e))?;
        migrate(&mut client, &sql, options.schema.as_deref())?;
        drop(client);

        let epoch = Arc::new(AtomicU64::new(0));
        let manager = Manager {
            connect,
            sql,
            epoch: epoch.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size)
            .min_idle(Some(1))
            .connection_timeout(options.connect_timeout.max(Duration::from_millis(100)))
            .test_on_check_out(false)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(|_| StoreError::Unavailable("could not open the connection pool".into()))?;
        Ok(PostgresStore {
            pool,
            schema: options.schema,
            epoch,
        })
    }

    /// The PostgreSQL schema egard's tables are in, if one was configured.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// A pooled connection; one of an older epoch than the last connection loss is checked
    /// first, and dropped (for a new one) if dead.
    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        let current = self.epoch.load(Ordering::Acquire);
        for _ in 0..=self.pool.max_size() {
            let mut conn = self
                .pool
                .get()
                .map_err(|_| StoreError::Unavailable("no database connection could be had in time".into()))?;
            if conn.epoch >= current || conn.client.simple_query("").is_ok() {
                conn.epoch = conn.epoch.max(current);
                return Ok(conn);
            }
            // Dead: dropping it here discards it (`has_broken`); try the next one.
        }
        Err(StoreError::Unavailable("no live database connection".into()))
    }

    /// Notes a failure on `conn`: if the connection is gone, every pooled connection will be
    /// checked before its next use. Returns whether it was gone.
    fn lost(&self, conn: &mut Conn) -> bool {
        // A backend ended by the server (an administrator, a failover) can report its error
        // before the client sees the socket closed: an empty query tells, on error paths only.
        let gone = conn.client.is_closed() || conn.client.simple_query("").is_err();
        if gone {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        gone
    }

    /// Runs a read, again on another connection while the one used turned out dead (reads
    /// change nothing, so this is always safe); at most once per pooled connection.
    fn query(&self, what: &'static str, q: Q, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let mut retries = self.pool.max_size();
        loop {
            let mut conn = self.conn()?;
            let conn = &mut *conn;
            let stmt = conn.stmt(q)?.clone();
            match conn.client.query(&stmt, params) {
                Ok(rows) => return Ok(rows),
                Err(e) => {
                    if self.lost(conn) && retries > 0 {
                        retries -= 1;
                        continue;
                    }
                    return Err(pg_error(what, e));
                }
            }
        }
    }
}

fn check_schema_name(schema: &str) -> Result<(), Error> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(Error::Config(
            "PostgreSQL schema: 1 to 63 characters of a-z, 0-9 and '_', not starting with a digit or 'pg_'",
        ))
    }
}

// ----- connections -----

type ConnectFn = Box<dyn Fn() -> Result<Client, ::postgres::Error> + Send + Sync>;

/// Opens connections for the pool and prepares egard's statements on each.
struct Manager {
    connect: ConnectFn,
    sql: Arc<Sql>,
    epoch: Arc<AtomicU64>,
}

/// A pooled connection with its prepared statements.
struct Conn {
    client: Client,
    stmts: Vec<Statement>,
    /// The store's connection-loss epoch when this connection was last known alive.
    epoch: u64,
}

impl Conn {
    fn stmt(&self, q: Q) -> Result<&Statement, StoreError> {
        self.stmts
            .get(q as usize)
            .ok_or_else(|| StoreError::Unavailable("statement not prepared".into()))
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = ::postgres::Error;

    fn connect(&self) -> Result<Conn, ::postgres::Error> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut client = (self.connect)()?;
        let mut stmts = Vec::with_capacity(Q::ALL.len());
        for q in Q::ALL {
            stmts.push(client.prepare(self.sql.text(q))?);
        }
        Ok(Conn { client, stmts, epoch })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), ::postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

// ----- SQL -----

/// The statements, prepared once per connection.
#[derive(Debug, Clone, Copy)]
enum Q {
    LockCustomer,
    InsertCustomer,
    UpdateCustomer,
    InsertPurpose,
    UpdatePurpose,
    PutKey,
    DeleteKey,
    PutField,
    DeleteField,
    PutConsent,
    PutObjection,
    EraseMark,
    EraseKeys,
    EraseFields,
    AppendAudit,
    AppendAudits,
    AuditLock,
    AuditHeadInTx,
    CustomerRevision,
    Purposes,
    Customer,
    Field,
    Fields,
    CustomerIds,
    AuditHead,
    AuditRange,
    AuditFor,
    InsertSecret,
    ReplaceSecret,
    Secret,
    ConsentCandidates,
    AuditChanges,
    AuditTrail,
    ConsentOwner,
    IndexField,
    PutLookup,
    Lookups,
    FindIndexed,
    PruneAudit,
}

impl Q {
    const ALL: [Q; 39] = [
        Q::LockCustomer,
        Q::InsertCustomer,
        Q::UpdateCustomer,
        Q::InsertPurpose,
        Q::UpdatePurpose,
        Q::PutKey,
        Q::DeleteKey,
        Q::PutField,
        Q::DeleteField,
        Q::PutConsent,
        Q::PutObjection,
        Q::EraseMark,
        Q::EraseKeys,
        Q::EraseFields,
        Q::AppendAudit,
        Q::AppendAudits,
        Q::AuditLock,
        Q::AuditHeadInTx,
        Q::CustomerRevision,
        Q::Purposes,
        Q::Customer,
        Q::Field,
        Q::Fields,
        Q::CustomerIds,
        Q::AuditHead,
        Q::AuditRange,
        Q::AuditFor,
        Q::InsertSecret,
        Q::ReplaceSecret,
        Q::Secret,
        Q::ConsentCandidates,
        Q::AuditChanges,
        Q::AuditTrail,
        Q::ConsentOwner,
        Q::IndexField,
        Q::PutLookup,
        Q::Lookups,
        Q::FindIndexed,
        Q::PruneAudit,
    ];
}

/// The SQL text of every statement and migration, with the table names qualified by the
/// configured schema.
struct Sql {
    texts: Vec<String>,
    /// `"schema".egard_` or `egard_`.
    prefix: String,
}

const AUDIT_COLUMNS: &str = "seq, at, kind, customer, purpose, field, detail, mac, state, actor";

/// The forward migrations, in order; `{p}` stands for the table prefix. Version `i + 1` is
/// `MIGRATIONS[i]`. Never edit a released one: add the next.
const MIGRATIONS: [&str; 6] = [
    r#"
CREATE TABLE {p}purposes (
    id          text PRIMARY KEY,
    definition  jsonb NOT NULL
);
CREATE TABLE {p}customers (
    id          uuid PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    restricted  boolean NOT NULL DEFAULT false,
    erased_at   timestamptz
);
CREATE TABLE {p}keys (
    customer    uuid NOT NULL REFERENCES {p}customers (id),
    version     bigint NOT NULL,
    wrapped     bytea NOT NULL,
    PRIMARY KEY (customer, version)
);
CREATE TABLE {p}fields (
    customer    uuid NOT NULL REFERENCES {p}customers (id),
    field       text NOT NULL,
    envelope    bytea NOT NULL,
    written_at  timestamptz NOT NULL,
    PRIMARY KEY (customer, field)
);
CREATE TABLE {p}consents (
    id          uuid PRIMARY KEY,
    customer    uuid NOT NULL REFERENCES {p}customers (id),
    purpose     text NOT NULL,
    given_at    timestamptz NOT NULL,
    record      jsonb NOT NULL
);
CREATE INDEX egard_consents_by_customer ON {p}consents (customer);
CREATE TABLE {p}objections (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer    uuid NOT NULL REFERENCES {p}customers (id),
    purpose     text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX egard_objections_by_customer ON {p}objections (customer);
CREATE TABLE {p}audit (
    seq         bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    customer    uuid,
    purpose     text,
    field       text,
    detail      text NOT NULL,
    mac         bytea NOT NULL
);
CREATE INDEX egard_audit_by_customer ON {p}audit (customer, seq);
"#,
    // Version 2: vault-level secrets (the audit key), stored wrapped under a master key.
    r#"
CREATE TABLE {p}vault_secrets (
    name        text PRIMARY KEY,
    wrapped     bytea NOT NULL
);
"#,
    // Version 3: authenticated records. Revisions and MACs of purposes, customers, consents
    // and objections; the write version of each field; the state MAC recorded by each change
    // in the audit log, with the indexes that find a customer's or purpose's latest one.
    // Rows written before have no MAC and fail their check: the vault refuses them.
    r#"
ALTER TABLE {p}purposes ADD COLUMN rev bigint NOT NULL DEFAULT 0, ADD COLUMN mac bytea;
ALTER TABLE {p}customers ADD COLUMN rev bigint NOT NULL DEFAULT 0, ADD COLUMN mac bytea,
    ADD COLUMN key_uses bigint NOT NULL DEFAULT 0;
ALTER TABLE {p}fields ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE {p}consents ADD COLUMN mac bytea;
ALTER TABLE {p}objections ADD COLUMN mac bytea;
ALTER TABLE {p}audit ADD COLUMN state bytea;
CREATE INDEX egard_audit_changes_by_customer ON {p}audit (customer, seq)
    WHERE state IS NOT NULL AND customer IS NOT NULL;
CREATE INDEX egard_audit_changes_by_purpose ON {p}audit (purpose, seq)
    WHERE state IS NOT NULL AND customer IS NULL;
"#,
    // Version 4: lookups (blind indexes). Each field's lookup token, unique per field name
    // among live customers (an erasure deletes the row), and the authenticated definitions.
    r#"
ALTER TABLE {p}fields ADD COLUMN lookup_token bytea;
CREATE UNIQUE INDEX egard_fields_by_lookup_token ON {p}fields (field, lookup_token)
    WHERE lookup_token IS NOT NULL;
CREATE TABLE {p}lookups (
    field       text PRIMARY KEY,
    normalizer  text NOT NULL,
    mac         bytea NOT NULL
);
"#,
    // Version 5: reaching customers. The current (neither withdrawn nor superseded) consent
    // records by purpose and customer, which propose a purpose's audience; the change events
    // by sequence number, which serve the change feed. The kinds listed are
    // `crate::audit::CHANGE_KINDS_SQL`, which the feed's query repeats for the index to apply.
    r#"
CREATE INDEX IF NOT EXISTS egard_consents_current
    ON {p}consents (purpose, customer, ((record->>'notice_version')::bigint))
    WHERE (record->>'withdrawn_at') IS NULL AND (record->>'superseded_by') IS NULL;
CREATE INDEX IF NOT EXISTS egard_audit_change_feed ON {p}audit (seq)
    WHERE kind IN ('purpose_defined', 'customer_created', 'consent_given', 'consent_withdrawn', 'field_written', 'field_rectified', 'field_deleted', 'restricted', 'restriction_lifted', 'objected', 'erased', 'key_rotated');
"#,
    // Version 6: who acted. The actor the host named for the call that wrote each audit
    // event (an id such as `service:mailer`, never personal data); NULL on events written
    // before, and on the vault's own administration.
    r#"
ALTER TABLE {p}audit ADD COLUMN IF NOT EXISTS actor text;
"#,
];

impl Sql {
    fn new(schema: Option<&str>) -> Self {
        let prefix = match schema {
            // The name was checked: a-z, 0-9 and '_' only, so quoting cannot be escaped.
            Some(s) => format!("\"{s}\".egard_"),
            None => "egard_".to_owned(),
        };
        let p = &prefix;
        let texts = Q::ALL
            .iter()
            .map(|q| match q {
                Q::LockCustomer => format!("SELECT erased_at FROM {p}customers WHERE id = $1 FOR UPDATE"),
                Q::InsertCustomer => format!(
                    "INSERT INTO {p}customers (id, created_at, restricted, erased_at, rev, mac, key_uses) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"
                ),
                Q::UpdateCustomer => format!(
                    "UPDATE {p}customers SET restricted = $2, erased_at = COALESCE(erased_at, $3), rev = $4, \
                     mac = $5, key_uses = $7 WHERE id = $1 AND rev = $6"
                ),
                Q::InsertPurpose => format!(
                    "INSERT INTO {p}purposes (id, definition, rev, mac) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                Q::UpdatePurpose => {
                    format!("UPDATE {p}purposes SET definition = $2, rev = $3, mac = $4 WHERE id = $1 AND rev = $5")
                }
                Q::PutKey => format!(
                    "INSERT INTO {p}keys (customer, version, wrapped) VALUES ($1, $2, $3) \
                     ON CONFLICT (customer, version) DO UPDATE SET wrapped = EXCLUDED.wrapped"
                ),
                Q::PutField => format!(
                    "INSERT INTO {p}fields (customer, field, envelope, written_at, version) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer, field) DO UPDATE \
                     SET envelope = EXCLUDED.envelope, written_at = EXCLUDED.written_at, version = EXCLUDED.version"
                ),
                Q::DeleteKey => format!("DELETE FROM {p}keys WHERE customer = $1 AND version = $2"),
                Q::DeleteField => format!("DELETE FROM {p}fields WHERE customer = $1 AND field = $2"),
                Q::PutConsent => format!(
                    "INSERT INTO {p}consents (id, customer, purpose, given_at, record, mac) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (id) DO UPDATE SET customer = EXCLUDED.customer, purpose = EXCLUDED.purpose, \
                     given_at = EXCLUDED.given_at, record = EXCLUDED.record, mac = EXCLUDED.mac"
                ),
                Q::PutObjection => {
                    format!("INSERT INTO {p}objections (customer, purpose, at, mac) VALUES ($1, $2, $3, $4)")
                }
                Q::EraseMark => {
                    format!("UPDATE {p}customers SET erased_at = COALESCE(erased_at, $2) WHERE id = $1")
                }
                Q::EraseKeys => format!("DELETE FROM {p}keys WHERE customer = $1"),
                Q::EraseFields => format!("DELETE FROM {p}fields WHERE customer = $1"),
                // A hash anti-join against the kept sequence numbers: one pass over the
                // range, however many are kept.
                Q::PruneAudit => format!(
                    "DELETE FROM {p}audit a WHERE a.seq <= $1 \
                     AND NOT EXISTS (SELECT 1 FROM unnest($2::bigint[]) AS k(s) WHERE k.s = a.seq)"
                ),
                Q::AppendAudit => format!(
                    "INSERT INTO {p}audit ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (seq) DO NOTHING"
                ),
                // Several events in one statement (a group commit's batch).
                Q::AppendAudits => format!(
                    "INSERT INTO {p}audit ({AUDIT_COLUMNS}) SELECT * FROM unnest($1::bigint[], \
                     $2::timestamptz[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[], \
                     $8::bytea[], $9::bytea[], $10::text[]) ON CONFLICT (seq) DO NOTHING"
                ),
                // The audit chain's lock: held from before the head is read until the commit.
                Q::AuditLock => "SELECT pg_advisory_xact_lock($1)".to_owned(),
                Q::AuditHeadInTx => format!("SELECT seq, mac FROM {p}audit ORDER BY seq DESC LIMIT 1"),
                // One statement, one consistent snapshot: every purpose with its latest change
                // and the MAC of the event before that change.
                Q::Purposes => format!(
                    "SELECT p.definition, p.rev, p.mac, a.seq, a.at, a.kind, a.customer, a.purpose, a.field, \
                     a.detail, a.mac, a.state, a.actor, (SELECT b.mac FROM {p}audit b WHERE b.seq = a.seq - 1) \
                     FROM {p}purposes p LEFT JOIN LATERAL (SELECT * FROM {p}audit x \
                     WHERE x.purpose = p.id AND x.customer IS NULL AND x.state IS NOT NULL \
                     ORDER BY x.seq DESC LIMIT 1) a ON true ORDER BY p.id"
                ),
                // One round trip for the whole snapshot, one consistent snapshot; the paired
                // arrays share their order.
                Q::Customer => format!(
                    "SELECT c.created_at, c.restricted, c.erased_at, c.rev, c.mac, \
                     ARRAY(SELECT k.version FROM {p}keys k WHERE k.customer = c.id ORDER BY k.version), \
                     ARRAY(SELECT k.wrapped FROM {p}keys k WHERE k.customer = c.id ORDER BY k.version), \
                     ARRAY(SELECT r.record FROM {p}consents r WHERE r.customer = c.id ORDER BY r.given_at, r.id), \
                     ARRAY(SELECT COALESCE(r.mac, '') FROM {p}consents r WHERE r.customer = c.id \
                           ORDER BY r.given_at, r.id), \
                     ARRAY(SELECT o.purpose FROM {p}objections o WHERE o.customer = c.id ORDER BY o.id), \
                     ARRAY(SELECT o.at FROM {p}objections o WHERE o.customer = c.id ORDER BY o.id), \
                     ARRAY(SELECT COALESCE(o.mac, '') FROM {p}objections o WHERE o.customer = c.id ORDER BY o.id), \
                     ARRAY(SELECT f.field FROM {p}fields f WHERE f.customer = c.id ORDER BY f.field), \
                     ARRAY(SELECT f.version FROM {p}fields f WHERE f.customer = c.id ORDER BY f.field), \
                     ARRAY(SELECT f.written_at FROM {p}fields f WHERE f.customer = c.id ORDER BY f.field), \
                     a.seq, a.at, a.kind, a.customer, a.purpose, a.field, a.detail, a.mac, a.state, a.actor, \
                     (SELECT b.mac FROM {p}audit b WHERE b.seq = a.seq - 1), c.key_uses, \
                     ARRAY(SELECT COALESCE(f.lookup_token, '') FROM {p}fields f WHERE f.customer = c.id \
                           ORDER BY f.field) \
                     FROM {p}customers c LEFT JOIN LATERAL (SELECT * FROM {p}audit x \
                     WHERE x.customer = c.id AND x.state IS NOT NULL ORDER BY x.seq DESC LIMIT 1) a ON true \
                     WHERE c.id = $1"
                ),
                Q::Field => format!(
                    "SELECT field, envelope, written_at, version FROM {p}fields WHERE customer = $1 AND field = $2"
                ),
                Q::Fields => format!(
                    "SELECT field, envelope, written_at, version FROM {p}fields WHERE customer = $1 ORDER BY field"
                ),
                Q::CustomerIds => format!("SELECT id FROM {p}customers"),
                Q::CustomerRevision => format!("SELECT rev, mac FROM {p}customers WHERE id = $1"),
                Q::AuditHead => format!("SELECT {AUDIT_COLUMNS} FROM {p}audit ORDER BY seq DESC LIMIT 1"),
                Q::AuditRange => {
                    format!("SELECT {AUDIT_COLUMNS} FROM {p}audit WHERE seq >= $1 ORDER BY seq LIMIT $2")
                }
                Q::AuditFor => format!("SELECT {AUDIT_COLUMNS} FROM {p}audit WHERE customer = $1 ORDER BY seq"),
                Q::InsertSecret => format!(
                    "INSERT INTO {p}vault_secrets (name, wrapped) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
                ),
                Q::ReplaceSecret => format!(
                    "INSERT INTO {p}vault_secrets (name, wrapped) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET wrapped = EXCLUDED.wrapped"
                ),
                Q::Secret => format!("SELECT name, wrapped FROM {p}vault_secrets WHERE name = $1"),
                Q::ConsentCandidates => format!(
                    "SELECT DISTINCT c.customer FROM {p}consents c JOIN {p}customers u ON u.id = c.customer \
                     WHERE c.purpose = $1 AND (c.record->>'withdrawn_at') IS NULL \
                     AND (c.record->>'superseded_by') IS NULL AND c.customer > $2 \
                     AND ((c.record->>'notice_version')::bigint) >= $3 \
                     AND ((c.record->>'notice_version')::bigint) <= $4 AND u.erased_at IS NULL \
                     ORDER BY c.customer LIMIT $5"
                ),
                Q::AuditChanges => format!(
                    "SELECT a.seq, a.at, a.kind, a.customer, a.purpose, a.field, a.detail, a.mac, a.state, a.actor, p.mac \
                     FROM {p}audit a LEFT JOIN {p}audit p ON p.seq = a.seq - 1 \
                     WHERE a.kind IN {CHANGE_KINDS_SQL} AND a.seq > $1 ORDER BY a.seq LIMIT $2"
                ),
                Q::AuditTrail => format!(
                    "SELECT a.seq, a.at, a.kind, a.customer, a.purpose, a.field, a.detail, a.mac, a.state, a.actor, p.mac \
                     FROM {p}audit a LEFT JOIN {p}audit p ON p.seq = a.seq - 1 \
                     WHERE a.customer = $1 ORDER BY a.seq"
                ),
                // `consents.id` is the primary key: one index lookup.
                Q::ConsentOwner => format!("SELECT customer FROM {p}consents WHERE id = $1"),
                Q::IndexField => {
                    format!("UPDATE {p}fields SET lookup_token = $3 WHERE customer = $1 AND field = $2")
                }
                Q::PutLookup => format!(
                    "INSERT INTO {p}lookups (field, normalizer, mac) VALUES ($1, $2, $3) \
                     ON CONFLICT (field) DO NOTHING"
                ),
                Q::Lookups => format!("SELECT field, normalizer, mac FROM {p}lookups ORDER BY field"),
                Q::FindIndexed => {
                    format!("SELECT customer FROM {p}fields WHERE field = $1 AND lookup_token = $2")
                }
            })
            .collect();
        Sql { texts, prefix }
    }

    fn text(&self, q: Q) -> &str {
        self.texts.get(q as usize).map_or("", String::as_str)
    }

    fn migration(&self, i: usize) -> Option<String> {
        MIGRATIONS.get(i).map(|m| m.replace("{p}", &self.prefix))
    }
}

/// Creates the schema and the version table if missing, refuses a newer schema, applies the
/// missing migrations; all in one transaction, under an advisory lock.
fn migrate(client: &mut Client, sql: &Sql, schema: Option<&str>) -> Result<(), StoreError> {
    let e = |e| pg_error("migrate", e);
    let mut tx = client.transaction().map_err(e)?;
    // Many servers starting at once: one migrates, the others wait and then find it done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
        .map_err(e)?;
    if let Some(schema) = schema {
        let exists = tx
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
            .map_err(e)?
            .is_some();
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")).map_err(e)?;
        }
    }
    let p = &sql.prefix;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {p}schema_version (\
         version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .map_err(e)?;
    let row = tx
        .query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {p}schema_version"), &[])
        .map_err(e)?;
    let found: i32 = row.try_get(0).map_err(|_| corrupt("schema version"))?;
    let found = u32::try_from(found).map_err(|_| corrupt("schema version"))?;
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: POSTGRES_SCHEMA_VERSION,
        });
    }
    for version in found + 1..=POSTGRES_SCHEMA_VERSION {
        let i = usize::try_from(version - 1).map_err(|_| corrupt("schema version"))?;
        let text = sql.migration(i).ok_or_else(|| corrupt("schema version"))?;
        tx.batch_execute(&text).map_err(e)?;
        let v = i32::try_from(version).map_err(|_| corrupt("schema version"))?;
        tx.execute(&format!("INSERT INTO {p}schema_version (version) VALUES ($1)"), &[&v])
            .map_err(e)?;
    }
    tx.commit().map_err(e)
}

/// The advisory lock key of a schema's migrations (FNV-1a, stable across releases).
fn lock_key(schema: Option<&str>) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"egard-migrate:".iter().chain(schema.unwrap_or("").as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// The advisory lock key of a schema's audit chain (FNV-1a, stable across releases: every
/// process appending to the same chain must take the same lock).
fn audit_lock_key(schema: Option<&str>) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"egard-audit:".iter().chain(schema.unwrap_or("").as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

// ----- errors -----

/// Maps a client error to a store error: SQLSTATE or I/O error kind only, never a server
/// message (a message or detail can quote a value).
fn pg_error(context: &str, e: ::postgres::Error) -> StoreError {
    if let Some(state) = e.code() {
        if *state == SqlState::UNIQUE_VIOLATION
            || *state == SqlState::T_R_SERIALIZATION_FAILURE
            || *state == SqlState::T_R_DEADLOCK_DETECTED
        {
            return StoreError::Conflict;
        }
        if *state == SqlState::FOREIGN_KEY_VIOLATION {
            return StoreError::MissingCustomer;
        }
        let code = state.code();
        if code.starts_with("22") {
            return StoreError::Corrupt(format!(
                "{context}: a value is out of range for the database (SQLSTATE {code})"
            ));
        }
        return StoreError::Unavailable(format!("{context}: database error (SQLSTATE {code})"));
    }
    if e.is_closed() {
        return StoreError::Unavailable(format!("{context}: the connection to the database was lost"));
    }
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return StoreError::Unavailable(format!("{context}: I/O error ({})", io.kind()));
        }
        source = s.source();
    }
    StoreError::Unavailable(format!("{context}: the database client failed"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("undecodable stored {what}"))
}

// ----- encoding and decoding -----

fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit sequence number out of range".into()))
}

fn get<'a, T: ::postgres::types::FromSql<'a>>(row: &'a Row, i: usize, what: &str) -> Result<T, StoreError> {
    row.try_get(i).map_err(|_| corrupt(what))
}

fn customer_id(uuid: Uuid, what: &str) -> Result<CustomerId, StoreError> {
    CustomerId::from_uuid(uuid).map_err(|_| corrupt(what))
}

fn decode_audit(row: &Row) -> Result<AuditEvent, StoreError> {
    decode_audit_at(row, 0)
}

/// An audit event from the ten columns of [`AUDIT_COLUMNS`] starting at column `o`.
fn decode_audit_at(row: &Row, o: usize) -> Result<AuditEvent, StoreError> {
    const W: &str = "audit event";
    let seq: i64 = get(row, o, W)?;
    let kind: &str = get(row, o + 2, W)?;
    let customer: Option<Uuid> = get(row, o + 3, W)?;
    let purpose: Option<&str> = get(row, o + 4, W)?;
    let field: Option<&str> = get(row, o + 5, W)?;
    let mac: &[u8] = get(row, o + 7, W)?;
    let state: Option<&[u8]> = get(row, o + 8, W)?;
    let actor: Option<&str> = get(row, o + 9, W)?;
    Ok(AuditEvent {
        seq: u64::try_from(seq).map_err(|_| corrupt(W))?,
        at: get(row, o + 1, W)?,
        kind: AuditKind::from_code(kind).ok_or_else(|| corrupt(W))?,
        customer: customer.map(|c| customer_id(c, W)).transpose()?,
        purpose: purpose.map(PurposeId::new).transpose().map_err(|_| corrupt(W))?,
        field: field.map(FieldName::new).transpose().map_err(|_| corrupt(W))?,
        detail: get(row, o + 6, W)?,
        mac: mac.try_into().map_err(|_| corrupt(W))?,
        state: state.map(RecordMac::try_from).transpose().map_err(|_| corrupt(W))?,
        actor: actor.map(Actor::new).transpose().map_err(|_| corrupt(W))?,
    })
}

/// The latest change from the audit columns starting at `o` (all null when there is none)
/// followed by the MAC of the event before it.
fn decode_latest(row: &Row, o: usize) -> Result<Option<LatestChange>, StoreError> {
    let seq: Option<i64> = get(row, o, "audit event")?;
    if seq.is_none() {
        return Ok(None);
    }
    let prev: Option<&[u8]> = get(row, o + 10, "audit event")?;
    Ok(Some(LatestChange {
        event: decode_audit_at(row, o)?,
        prev_mac: prev
            .map(RecordMac::try_from)
            .transpose()
            .map_err(|_| corrupt("audit event"))?,
    }))
}

fn mac_of(bytes: Option<&[u8]>, what: &str) -> Result<RecordMac, StoreError> {
    bytes
        .ok_or_else(|| StoreError::Corrupt(format!("{what} has no MAC (a row written before schema 3?)")))
        .and_then(|b| RecordMac::try_from(b).map_err(|_| corrupt(what)))
}

fn rev_of(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

fn rev_param(rev: u64) -> Result<i64, StoreError> {
    i64::try_from(rev).map_err(|_| StoreError::Corrupt("revision out of range".into()))
}

/// An expected revision: one no row can hold is stale by definition.
fn expected_rev_param(rev: u64) -> Result<i64, StoreError> {
    i64::try_from(rev).map_err(|_| StoreError::Stale)
}

fn decode_field(row: &Row) -> Result<StoredField, StoreError> {
    const W: &str = "field";
    let name: &str = get(row, 0, W)?;
    Ok(StoredField {
        field: FieldName::new(name).map_err(|_| corrupt(W))?,
        envelope: get(row, 1, W)?,
        written_at: get(row, 2, W)?,
        version: rev_of(get(row, 3, W)?, W)?,
    })
}

fn decode_purpose(row: &Row) -> Result<PurposeSnapshot, StoreError> {
    const W: &str = "purpose";
    let v: serde_json::Value = get(row, 0, W)?;
    Ok(PurposeSnapshot {
        stored: StoredPurpose {
            purpose: serde_json::from_value(v).map_err(|_| corrupt(W))?,
            rev: rev_of(get(row, 1, W)?, W)?,
            mac: mac_of(get(row, 2, W)?, W)?,
        },
        latest_change: decode_latest(row, 3)?,
    })
}

fn decode_snapshot(id: CustomerId, row: &Row) -> Result<CustomerSnapshot, StoreError> {
    const W: &str = "customer";
    let versions: Vec<i64> = get(row, 5, W)?;
    let wrapped: Vec<Vec<u8>> = get(row, 6, W)?;
    if versions.len() != wrapped.len() {
        return Err(corrupt(W));
    }
    let keys = versions
        .into_iter()
        .zip(wrapped)
        .map(|(v, w)| {
            Ok(WrappedKey {
                customer: id,
                version: u32::try_from(v).map_err(|_| corrupt("data key"))?,
                wrapped: w,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let records: Vec<serde_json::Value> = get(row, 7, W)?;
    let consent_macs: Vec<Vec<u8>> = get(row, 8, W)?;
    if records.len() != consent_macs.len() {
        return Err(corrupt(W));
    }
    let consents = records
        .into_iter()
        .zip(consent_macs)
        .map(|(r, mac)| {
            let c: Consent = serde_json::from_value(r).map_err(|_| corrupt("consent"))?;
            if c.customer != id {
                return Err(corrupt("consent"));
            }
            Ok(Authenticated {
                record: c,
                mac: mac_of(Some(mac.as_slice()).filter(|m| !m.is_empty()), "consent")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let purposes: Vec<String> = get(row, 9, W)?;
    let ats: Vec<DateTime<Utc>> = get(row, 10, W)?;
    let objection_macs: Vec<Vec<u8>> = get(row, 11, W)?;
    if purposes.len() != ats.len() || purposes.len() != objection_macs.len() {
        return Err(corrupt(W));
    }
    let objections = purposes
        .into_iter()
        .zip(ats)
        .zip(objection_macs)
        .map(|((p, at), mac)| {
            Ok(Authenticated {
                record: Objection {
                    customer: id,
                    purpose: PurposeId::new(&p).map_err(|_| corrupt("objection"))?,
                    at,
                },
                mac: mac_of(Some(mac.as_slice()).filter(|m| !m.is_empty()), "objection")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let names: Vec<String> = get(row, 12, W)?;
    let field_versions: Vec<i64> = get(row, 13, W)?;
    let written: Vec<DateTime<Utc>> = get(row, 14, W)?;
    // An empty token stands for none (arrays of bytea cannot hold NULL through the client).
    let tokens: Vec<Vec<u8>> = get(row, 27, W)?;
    if names.len() != field_versions.len() || names.len() != written.len() || names.len() != tokens.len() {
        return Err(corrupt(W));
    }
    let fields = names
        .into_iter()
        .zip(field_versions)
        .zip(written)
        .zip(tokens)
        .map(|(((name, version), written_at), token)| {
            Ok(FieldVersion {
                field: FieldName::new(&name).map_err(|_| corrupt("field"))?,
                version: rev_of(version, "field")?,
                written_at,
                token: match token.as_slice() {
                    [] => None,
                    t => Some(LookupToken::try_from(t).map_err(|_| corrupt("lookup token"))?),
                },
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(CustomerSnapshot {
        record: CustomerRecord {
            id,
            created_at: get(row, 0, W)?,
            restricted: get(row, 1, W)?,
            erased_at: get(row, 2, W)?,
            rev: rev_of(get(row, 3, W)?, W)?,
            mac: mac_of(get(row, 4, W)?, W)?,
            key_uses: rev_of(get(row, 26, W)?, W)?,
        },
        keys,
        consents,
        objections,
        fields,
        latest_change: decode_latest(row, 15)?,
    })
}

fn audit_params(e: &AuditEvent) -> Result<AuditParams<'_>, StoreError> {
    Ok(AuditParams {
        seq: seq_param(e.seq)?,
        customer: e.customer.map(|c| *c.as_uuid()),
        purpose: e.purpose.as_ref().map(PurposeId::as_str),
        field: e.field.as_ref().map(FieldName::as_str),
        mac: &e.mac,
        event: e,
    })
}

struct AuditParams<'a> {
    seq: i64,
    customer: Option<Uuid>,
    purpose: Option<&'a str>,
    field: Option<&'a str>,
    mac: &'a [u8],
    event: &'a AuditEvent,
}

impl AuditParams<'_> {
    fn execute(&self, client: &mut impl ::postgres::GenericClient, stmt: &Statement) -> Result<(), StoreError> {
        let rows = client
            .execute(
                stmt,
                &[
                    &self.seq,
                    &self.event.at,
                    &self.event.kind.code(),
                    &self.customer,
                    &self.purpose,
                    &self.field,
                    &self.event.detail,
                    &self.mac,
                    &self.event.state.as_ref().map(|s| s.as_slice()),
                    &self.event.actor.as_ref().map(Actor::as_str),
                ],
            )
            .map_err(|e| pg_error("append audit event", e))?;
        if rows == 0 {
            // Another writer holds this sequence number.
            return Err(StoreError::Conflict);
        }
        Ok(())
    }
}

/// What the transaction knows of a customer it locked or inserted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    Missing,
    Live,
    Erased,
}

fn json<T: serde::Serialize>(value: &T, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|_| StoreError::Corrupt(format!("{what} could not be encoded")))
}

/// How a batch failed: before anything was sent (BEGIN), or inside the transaction.
enum BatchError {
    Begin(::postgres::Error),
    Store(StoreError),
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        BatchError::Store(e)
    }
}

/// The audit events a batch chains onto the log's head, and the lock that guards the head.
struct Chained<'l, 'a> {
    link: &'l mut ChainLink<'a>,
    lock_key: i64,
}

/// Applies a batch of several writes in one transaction on `client`; with `chained`, then
/// takes the audit chain's lock, reads the head and appends the events `link` chains onto it.
/// Returns the head the transaction left.
fn run_batch(
    client: &mut Client,
    stmts: &[Statement],
    batch: &[Write],
    chained: Option<&mut Chained<'_, '_>>,
) -> Result<Option<AuditAnchor>, BatchError> {
    let ctx = |e| pg_error("apply", e);
    let st = |q: Q| {
        stmts
            .get(q as usize)
            .ok_or_else(|| StoreError::Unavailable("statement not prepared".into()))
    };
    let mut tx = client.transaction().map_err(BatchError::Begin)?;

    // Lock every customer the batch names, in a fixed order (no deadlock between two
    // batches), so that no other transaction can erase or change them until we commit.
    let mut standing: HashMap<CustomerId, Standing> = HashMap::new();
    let named: BTreeSet<CustomerId> = batch
        .iter()
        .filter_map(|w| w.target_customer().map(|(c, _)| c))
        .collect();
    for id in named {
        let row = tx.query_opt(st(Q::LockCustomer)?, &[id.as_uuid()]).map_err(ctx)?;
        let s = match row {
            None => Standing::Missing,
            Some(row) => match get::<Option<DateTime<Utc>>>(&row, 0, "customer")? {
                Some(_) => Standing::Erased,
                None => Standing::Live,
            },
        };
        standing.insert(id, s);
    }

    for w in batch {
        if let Some((id, refused_if_erased)) = w.target_customer() {
            match standing.get(&id).copied().unwrap_or(Standing::Missing) {
                Standing::Missing => return Err(StoreError::MissingCustomer.into()),
                Standing::Erased if refused_if_erased => return Err(StoreError::MissingCustomer.into()),
                _ => {}
            }
        }
        match w {
            Write::PutPurpose { stored, expected_rev } => {
                let p = &stored.purpose;
                let definition = json(p, "a purpose")?;
                let rev = rev_param(stored.rev)?;
                let mac: &[u8] = &stored.mac;
                let rows = match expected_rev {
                    None => tx
                        .execute(st(Q::InsertPurpose)?, &[&p.id(), &definition, &rev, &mac])
                        .map_err(ctx)?,
                    Some(expected) => tx
                        .execute(
                            st(Q::UpdatePurpose)?,
                            &[&p.id(), &definition, &rev, &mac, &expected_rev_param(*expected)?],
                        )
                        .map_err(ctx)?,
                };
                if rows == 0 {
                    return Err(StoreError::Stale.into());
                }
            }
            Write::InsertCustomer(r) => {
                let mac: &[u8] = &r.mac;
                let rows = tx
                    .execute(
                        st(Q::InsertCustomer)?,
                        &[
                            r.id.as_uuid(),
                            &r.created_at,
                            &r.restricted,
                            &r.erased_at,
                            &rev_param(r.rev)?,
                            &mac,
                            &rev_param(r.key_uses)?,
                        ],
                    )
                    .map_err(ctx)?;
                if rows == 0 {
                    return Err(StoreError::Conflict.into());
                }
                let s = if r.erased_at.is_some() {
                    Standing::Erased
                } else {
                    Standing::Live
                };
                standing.insert(r.id, s);
            }
            Write::UpdateCustomer {
                record: r,
                expected_rev,
            } => {
                let mac: &[u8] = &r.mac;
                let rows = tx
                    .execute(
                        st(Q::UpdateCustomer)?,
                        &[
                            r.id.as_uuid(),
                            &r.restricted,
                            &r.erased_at,
                            &rev_param(r.rev)?,
                            &mac,
                            &expected_rev_param(*expected_rev)?,
                            &rev_param(r.key_uses)?,
                        ],
                    )
                    .map_err(ctx)?;
                if rows == 0 {
                    return Err(StoreError::Stale.into());
                }
                if r.erased_at.is_some() {
                    standing.insert(r.id, Standing::Erased);
                }
            }
            Write::PutKey(k) => {
                tx.execute(
                    st(Q::PutKey)?,
                    &[k.customer.as_uuid(), &i64::from(k.version), &k.wrapped],
                )
                .map_err(ctx)?;
            }
            Write::PutField {
                customer,
                field,
                version,
                envelope,
                at,
            } => {
                tx.execute(
                    st(Q::PutField)?,
                    &[customer.as_uuid(), &field.as_str(), envelope, at, &rev_param(*version)?],
                )
                .map_err(ctx)?;
            }
            Write::DeleteKey { customer, version } => {
                tx.execute(st(Q::DeleteKey)?, &[customer.as_uuid(), &i64::from(*version)])
                    .map_err(ctx)?;
            }
            Write::DeleteField { customer, field } => {
                tx.execute(st(Q::DeleteField)?, &[customer.as_uuid(), &field.as_str()])
                    .map_err(ctx)?;
            }
            Write::PutConsent(Authenticated { record: c, mac }) => {
                let mac: &[u8] = mac;
                let params: [&(dyn ToSql + Sync); 6] = [
                    c.id.as_uuid(),
                    c.customer.as_uuid(),
                    &c.purpose.as_str(),
                    &c.given_at,
                    &json(c, "a consent")?,
                    &mac,
                ];
                tx.execute(st(Q::PutConsent)?, &params).map_err(ctx)?;
            }
            Write::PutObjection(Authenticated { record: o, mac }) => {
                let mac: &[u8] = mac;
                tx.execute(
                    st(Q::PutObjection)?,
                    &[o.customer.as_uuid(), &o.purpose.as_str(), &o.at, &mac],
                )
                .map_err(ctx)?;
            }
            Write::EraseCustomer { customer, at } => {
                tx.execute(st(Q::EraseMark)?, &[customer.as_uuid(), at]).map_err(ctx)?;
                tx.execute(st(Q::EraseKeys)?, &[customer.as_uuid()]).map_err(ctx)?;
                tx.execute(st(Q::EraseFields)?, &[customer.as_uuid()]).map_err(ctx)?;
                standing.insert(*customer, Standing::Erased);
            }
            Write::AppendAudit(event) => {
                audit_params(event)?.execute(&mut tx, st(Q::AppendAudit)?)?;
            }
            Write::InsertSecret(v) => {
                let rows = tx.execute(st(Q::InsertSecret)?, &[&v.name, &v.wrapped]).map_err(ctx)?;
                if rows == 0 {
                    return Err(StoreError::Conflict.into());
                }
            }
            Write::ReplaceSecret(v) => {
                tx.execute(st(Q::ReplaceSecret)?, &[&v.name, &v.wrapped]).map_err(ctx)?;
            }
            Write::PruneAudit { through, keep } => {
                let through = seq_param((*through).min(i64::MAX as u64))?;
                let keep = keep.iter().filter_map(|s| i64::try_from(*s).ok()).collect::<Vec<i64>>();
                tx.execute(st(Q::PruneAudit)?, &[&through, &keep]).map_err(ctx)?;
            }
            Write::IndexField { customer, field, token } => {
                let token: Option<&[u8]> = token.as_ref().map(|t| t.as_slice());
                tx.execute(st(Q::IndexField)?, &[customer.as_uuid(), &field.as_str(), &token])
                    .map_err(|e| match e.code() {
                        // The one unique constraint this update can break: the lookup token's.
                        Some(state) if *state == SqlState::UNIQUE_VIOLATION => StoreError::Duplicate,
                        _ => ctx(e),
                    })?;
            }
            Write::PutLookup(l) => {
                let mac: &[u8] = &l.mac;
                let rows = tx
                    .execute(st(Q::PutLookup)?, &[&l.field.as_str(), &l.normalizer, &mac])
                    .map_err(ctx)?;
                if rows == 0 {
                    return Err(StoreError::Conflict.into());
                }
            }
        }
    }
    let mut head = None;
    if let Some(chained) = chained {
        // Taken last, after the customers' row locks: a transaction that holds it waits for
        // nothing else but its commit, so appends never deadlock with the writes above.
        tx.execute(st(Q::AuditLock)?, &[&chained.lock_key]).map_err(ctx)?;
        let current = match tx.query_opt(st(Q::AuditHeadInTx)?, &[]).map_err(ctx)? {
            None => AuditAnchor::EMPTY,
            Some(row) => AuditAnchor {
                seq: u64::try_from(get::<i64>(&row, 0, "audit")?).map_err(|_| corrupt("audit sequence number"))?,
                mac: mac_of(Some(get::<&[u8]>(&row, 1, "audit")?), "audit MAC")?,
            },
        };
        let events = (chained.link)(current)?;
        append_events(&mut tx, st(Q::AppendAudit)?, st(Q::AppendAudits)?, &events)?;
        head = Some(
            events
                .last()
                .map_or(current, |e| AuditAnchor { seq: e.seq, mac: e.mac }),
        );
    }
    // Dropping the transaction on any early return above rolls it back.
    tx.commit().map_err(|e| BatchError::Store(pg_error("commit", e)))?;
    Ok(head)
}

/// Inserts audit events: one statement for one event, one `unnest` statement for several.
fn append_events(
    tx: &mut ::postgres::Transaction<'_>,
    one: &Statement,
    many: &Statement,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    match events {
        [] => Ok(()),
        [event] => audit_params(event)?.execute(tx, one),
        _ => {
            let seqs = events
                .iter()
                .map(|e| seq_param(e.seq))
                .collect::<Result<Vec<i64>, _>>()?;
            let ats: Vec<DateTime<Utc>> = events.iter().map(|e| e.at).collect();
            let kinds: Vec<&str> = events.iter().map(|e| e.kind.code()).collect();
            let customers: Vec<Option<Uuid>> = events.iter().map(|e| e.customer.map(|c| *c.as_uuid())).collect();
            let purposes: Vec<Option<&str>> = events
                .iter()
                .map(|e| e.purpose.as_ref().map(PurposeId::as_str))
                .collect();
            let fields: Vec<Option<&str>> = events.iter().map(|e| e.field.as_ref().map(FieldName::as_str)).collect();
            let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
            let macs: Vec<&[u8]> = events.iter().map(|e| e.mac.as_slice()).collect();
            let states: Vec<Option<&[u8]>> = events.iter().map(|e| e.state.as_ref().map(|s| s.as_slice())).collect();
            let actors: Vec<Option<&str>> = events.iter().map(|e| e.actor.as_ref().map(Actor::as_str)).collect();
            let rows = tx
                .execute(
                    many,
                    &[
                        &seqs, &ats, &kinds, &customers, &purposes, &fields, &details, &macs, &states, &actors,
                    ],
                )
                .map_err(|e| pg_error("append audit events", e))?;
            if rows != events.len() as u64 {
                // Another writer holds one of these sequence numbers.
                return Err(StoreError::Conflict);
            }
            Ok(())
        }
    }
}

impl PostgresStore {
    /// Runs `batch` (and the chained audit events) in one transaction, trying again on a
    /// fresh connection when a pooled one turns out dead before anything was sent.
    fn transact(
        &self,
        batch: &[Write],
        mut chained: Option<&mut Chained<'_, '_>>,
    ) -> Result<Option<AuditAnchor>, StoreError> {
        let mut retries = self.pool.max_size();
        loop {
            let mut conn = self.conn()?;
            let conn = &mut *conn;
            match run_batch(&mut conn.client, &conn.stmts, batch, chained.as_deref_mut()) {
                Ok(head) => return Ok(head),
                // Nothing was sent but BEGIN: safe to try again on a live connection.
                Err(BatchError::Begin(e)) => {
                    if self.lost(conn) && retries > 0 {
                        retries -= 1;
                        continue;
                    }
                    return Err(pg_error("apply", e));
                }
                Err(BatchError::Store(e)) => {
                    self.lost(conn);
                    return Err(e);
                }
            }
        }
    }
}

impl Store for PostgresStore {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // A lone audit event (every authorize) is one statement: atomic without BEGIN/COMMIT.
        // It is not retried on a dead connection: it may have been applied.
        if let [Write::AppendAudit(event)] = batch {
            let params = audit_params(event)?;
            let mut conn = self.conn()?;
            let conn = &mut *conn;
            let stmt = conn.stmt(Q::AppendAudit)?.clone();
            let result = params.execute(&mut conn.client, &stmt);
            if result.is_err() {
                self.lost(conn);
            }
            return result;
        }
        self.transact(batch, None).map(|_| ())
    }

    fn apply_chained(&self, batch: &[Write], link: &mut ChainLink<'_>) -> Result<AuditAnchor, StoreError> {
        let mut chained = Chained {
            link,
            lock_key: audit_lock_key(self.schema.as_deref()),
        };
        self.transact(batch, Some(&mut chained))?
            .ok_or_else(|| StoreError::Unavailable("the audit head was not read".into()))
    }

    fn purposes(&self) -> Result<Vec<PurposeSnapshot>, StoreError> {
        let rows = self.query("read purposes", Q::Purposes, &[])?;
        rows.iter().map(decode_purpose).collect()
    }

    fn customer(&self, id: CustomerId) -> Result<Option<CustomerSnapshot>, StoreError> {
        let rows = self.query("read customer", Q::Customer, &[id.as_uuid()])?;
        rows.first().map(|row| decode_snapshot(id, row)).transpose()
    }

    fn field(&self, customer: CustomerId, field: &FieldName) -> Result<Option<StoredField>, StoreError> {
        let rows = self.query("read field", Q::Field, &[customer.as_uuid(), &field.as_str()])?;
        rows.first().map(decode_field).transpose()
    }

    fn fields(&self, customer: CustomerId) -> Result<Vec<StoredField>, StoreError> {
        let rows = self.query("read fields", Q::Fields, &[customer.as_uuid()])?;
        rows.iter().map(decode_field).collect()
    }

    fn customer_revision(&self, id: CustomerId) -> Result<Option<(u64, RecordMac)>, StoreError> {
        let rows = self.query("read a customer's revision", Q::CustomerRevision, &[id.as_uuid()])?;
        rows.first()
            .map(|row| {
                Ok((
                    rev_of(get(row, 0, "customer revision")?, "customer revision")?,
                    mac_of(get::<Option<&[u8]>>(row, 1, "customer MAC")?, "customer MAC")?,
                ))
            })
            .transpose()
    }

    fn customer_ids(&self) -> Result<Vec<CustomerId>, StoreError> {
        let rows = self.query("read customer ids", Q::CustomerIds, &[])?;
        rows.iter()
            .map(|row| customer_id(get(row, 0, "customer id")?, "customer id"))
            .collect()
    }

    fn audit_head(&self) -> Result<Option<AuditEvent>, StoreError> {
        let rows = self.query("read audit head", Q::AuditHead, &[])?;
        rows.first().map(decode_audit).transpose()
    }

    fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let Ok(from) = i64::try_from(from_seq) else {
            // No stored sequence number reaches this far.
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query("read audit range", Q::AuditRange, &[&from, &limit])?;
        rows.iter().map(decode_audit).collect()
    }

    fn audit_for(&self, customer: CustomerId) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = self.query("read audit events", Q::AuditFor, &[customer.as_uuid()])?;
        rows.iter().map(decode_audit).collect()
    }

    fn consent_candidates(
        &self,
        purpose: &PurposeId,
        notice_versions: std::ops::RangeInclusive<u32>,
        after: Option<CustomerId>,
        limit: usize,
    ) -> Result<Vec<CustomerId>, StoreError> {
        // No customer id is nil (they are UUID v4 or v7): the nil UUID sorts before them all.
        let after: Uuid = after.map_or(Uuid::nil(), |a| *a.as_uuid());
        let (from, to) = (i64::from(*notice_versions.start()), i64::from(*notice_versions.end()));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            "read audience candidates",
            Q::ConsentCandidates,
            &[&purpose.as_str(), &after, &from, &to, &limit],
        )?;
        rows.iter()
            .map(|row| customer_id(get(row, 0, "consent customer")?, "consent customer"))
            .collect()
    }

    fn audit_changes(&self, after_seq: u64, limit: usize) -> Result<Vec<LatestChange>, StoreError> {
        let Ok(after) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query("read change feed", Q::AuditChanges, &[&after, &limit])?;
        rows.iter()
            .map(|row| decode_latest(row, 0)?.ok_or_else(|| corrupt("audit event")))
            .collect()
    }

    fn audit_trail(&self, customer: CustomerId) -> Result<Vec<LatestChange>, StoreError> {
        let rows = self.query("read audit trail", Q::AuditTrail, &[customer.as_uuid()])?;
        rows.iter()
            .map(|row| decode_latest(row, 0)?.ok_or_else(|| corrupt("audit event")))
            .collect()
    }

    fn consent_owner(&self, consent: ConsentId) -> Result<Option<CustomerId>, StoreError> {
        let rows = self.query("read consent owner", Q::ConsentOwner, &[consent.as_uuid()])?;
        rows.first()
            .map(|row| customer_id(get(row, 0, "consent owner")?, "consent owner"))
            .transpose()
    }

    fn lookups(&self) -> Result<Vec<StoredLookup>, StoreError> {
        let rows = self.query("read lookups", Q::Lookups, &[])?;
        rows.iter()
            .map(|row| {
                let field: String = get(row, 0, "lookup")?;
                Ok(StoredLookup {
                    field: FieldName::new(&field).map_err(|_| corrupt("lookup"))?,
                    normalizer: get(row, 1, "lookup")?,
                    mac: mac_of(get(row, 2, "lookup")?, "lookup")?,
                })
            })
            .collect()
    }

    fn find_indexed(&self, field: &FieldName, token: &LookupToken) -> Result<Option<CustomerId>, StoreError> {
        let token: &[u8] = token;
        let rows = self.query("find indexed", Q::FindIndexed, &[&field.as_str(), &token])?;
        // The unique index allows one row; two mean it was dropped: never pick one.
        if rows.len() > 1 {
            return Err(StoreError::Corrupt("a lookup token held by several customers".into()));
        }
        rows.first()
            .map(|row| customer_id(get(row, 0, "customer id")?, "customer id"))
            .transpose()
    }

    fn secret(&self, name: &str) -> Result<Option<VaultSecret>, StoreError> {
        let rows = self.query("read vault secret", Q::Secret, &[&name])?;
        rows.first()
            .map(|row| {
                Ok(VaultSecret {
                    name: get(row, 0, "vault secret")?,
                    wrapped: get(row, 1, "vault secret")?,
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for good in ["egard", "tenant_7", "_x", "a"] {
            assert!(check_schema_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Egard", "7x", "a-b", "a\"b", "pg_catalog", &"x".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statements_are_qualified_by_the_schema() {
        let sql = Sql::new(Some("tenant_1"));
        // The advisory lock names no table: its key differs per schema instead.
        for q in Q::ALL.into_iter().filter(|q| !matches!(q, Q::AuditLock)) {
            assert!(sql.text(q).contains("\"tenant_1\".egard_"), "{q:?}");
        }
        assert_ne!(audit_lock_key(Some("tenant_1")), audit_lock_key(None));
        assert_ne!(audit_lock_key(None), lock_key(None));
        let migration = sql.migration(0).unwrap();
        assert!(!migration.contains("{p}"));
        assert!(migration.contains("CREATE TABLE \"tenant_1\".egard_audit"));
        assert!(Sql::new(None).text(Q::AuditHead).contains("FROM egard_audit"));
    }

    #[test]
    fn the_change_feed_index_lists_the_change_kinds() {
        let migration = Sql::new(None).migration(4).unwrap();
        assert!(migration.contains(&format!("WHERE kind IN {CHANGE_KINDS_SQL}")));
    }

    #[test]
    fn migration_lock_keys_differ_per_schema() {
        assert_ne!(lock_key(Some("a")), lock_key(Some("b")));
        assert_eq!(lock_key(None), lock_key(None));
    }

    #[test]
    fn a_url_with_a_password_never_shows_in_errors() {
        let err = PostgresStore::connect("postgres://user:s3cret@127.0.0.1:1/db?connect_timeout=1").unwrap_err();
        assert!(matches!(err, Error::Storage(StoreError::Unavailable(_))), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("s3cret"));
        let err = PostgresStore::connect("postgres://user:s3cret@[bad").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cret"));
    }
}
