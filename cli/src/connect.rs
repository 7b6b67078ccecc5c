//! Opening the store and building the vault, as a host program would, with every failure
//! said plainly: no store given, a path with no database (never created by accident), no
//! key, a wrong key, a newer schema.

use std::sync::Arc;

use egard::store::Store;
use egard::{Actor, Error, MasterKey, PostgresOptions, PostgresStore, SqliteStore, Vault};

use crate::cli::Connection;
use crate::output::Failure;

/// The environment variable holding the master key (64 hex digits).
pub const KEY_VAR: &str = "EGARD_MASTER_KEY";
/// The environment variable holding the PostgreSQL URL when neither `--sqlite` nor
/// `--postgres` is given.
pub const POSTGRES_URL_VAR: &str = "EGARD_POSTGRES_URL";
/// The environment variable holding the previous master key, during a rotation.
pub const PREVIOUS_KEY_VAR: &str = "EGARD_PREVIOUS_MASTER_KEY";

/// Which backend the store is, for `stats`.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The schema version a store of this backend has once this release opened it (an older
    /// one is migrated on open, a newer one refused).
    pub fn schema_version(self) -> u32 {
        match self {
            Backend::Sqlite => egard::store::SQLITE_SCHEMA_VERSION,
            Backend::Postgres => egard::store::POSTGRES_SCHEMA_VERSION,
        }
    }

    /// The backend's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// An open vault, with the store behind it for what only the store can count.
pub struct Opened {
    /// The vault.
    pub vault: Vault,
    /// The same store the vault uses.
    pub store: Arc<dyn Store>,
    /// Its backend.
    pub backend: Backend,
}

/// Opens the store and builds the vault.
pub fn open(conn: &Connection) -> Result<Opened, Failure> {
    // The key first: a missing key is said before anything is opened.
    let master = master_key(conn)?;
    let previous = previous_key(conn)?;
    // An explicit --sqlite wins over EGARD_POSTGRES_URL in the environment.
    let postgres = match (&conn.sqlite, &conn.postgres) {
        (None, None) => std::env::var(POSTGRES_URL_VAR).ok().filter(|url| !url.is_empty()),
        (_, url) => url.clone(),
    };
    let (store, backend): (Arc<dyn Store>, Backend) = match (&conn.sqlite, &postgres) {
        (Some(path), _) => {
            // `SqliteStore::open` creates a missing file: an operator's typo must not make an
            // empty database (and then report an empty, intact audit log).
            if !path.is_file() {
                return Err(Failure::new(
                    "no_database",
                    format!("no database file at {}", path.display()),
                ));
            }
            let store = SqliteStore::open(path).map_err(|e| store_failure(e, "the SQLite database"))?;
            (Arc::new(store), Backend::Sqlite)
        }
        (None, Some(url)) => {
            let mut options = PostgresOptions::new();
            if let Some(schema) = &conn.postgres_schema {
                options = options.schema(schema);
            }
            let store = PostgresStore::connect_with(url, options).map_err(|e| store_failure(e, "PostgreSQL"))?;
            (Arc::new(store), Backend::Postgres)
        }
        (None, None) => {
            return Err(Failure::usage(
                "no store: give --sqlite PATH or --postgres URL (or set EGARD_POSTGRES_URL)",
            ));
        }
    };
    // The command line is one more process on a store that applications use at the same
    // time: it caches nothing (a zero time-to-live), so it acts on what the store holds now.
    // What it does is recorded as done by the operator at the command line.
    let actor = Actor::new(CLI_ACTOR).map_err(Failure::from)?;
    let mut builder = Vault::builder()
        .master_key(master)
        .store(store.clone())
        .namespace(&conn.namespace)
        .cache_ttl(chrono::Duration::zero())
        .default_actor(actor);
    if let Some(previous) = previous {
        builder = builder.previous_master_key(previous);
    }
    let vault = builder.build().map_err(build_failure)?;
    Ok(Opened { vault, store, backend })
}

/// The actor the command line's audit events name (exports, erasures, listings, lookups).
pub const CLI_ACTOR: &str = "operator:cli";

/// The master key: `--key-file`, else `EGARD_MASTER_KEY`.
fn master_key(conn: &Connection) -> Result<MasterKey, Failure> {
    let key = match &conn.key_file {
        Some(path) => {
            MasterKey::from_file(path).map_err(|e| key_failure(e, &format!("--key-file {}", path.display())))?
        }
        None => match std::env::var_os(KEY_VAR) {
            Some(_) => MasterKey::from_env(KEY_VAR).map_err(|e| key_failure(e, KEY_VAR))?,
            None => {
                return Err(Failure::new(
                    "no_master_key",
                    format!("no master key: set {KEY_VAR} (64 hexadecimal digits) or give --key-file PATH"),
                ));
            }
        },
    };
    Ok(key.with_id(conn.key_id))
}

/// The previous master key, if one is given: `--previous-key-file`, else
/// `EGARD_PREVIOUS_MASTER_KEY`.
fn previous_key(conn: &Connection) -> Result<Option<MasterKey>, Failure> {
    let key = match &conn.previous_key_file {
        Some(path) => Some(
            MasterKey::from_file(path)
                .map_err(|e| key_failure(e, &format!("--previous-key-file {}", path.display())))?,
        ),
        None if std::env::var_os(PREVIOUS_KEY_VAR).is_some() => {
            Some(MasterKey::from_env(PREVIOUS_KEY_VAR).map_err(|e| key_failure(e, PREVIOUS_KEY_VAR))?)
        }
        None => None,
    };
    Ok(key.map(|k| k.with_id(conn.previous_key_id)))
}

fn key_failure(e: Error, source: &str) -> Failure {
    // The library's messages never quote the key; neither does this one.
    Failure::new(
        "bad_master_key",
        format!("the master key from {source} is unusable: {e}"),
    )
}

fn store_failure(e: Error, what: &str) -> Failure {
    let mut failure = Failure::from(e);
    failure.message = format!("cannot open {what}: {}", failure.message);
    failure
}

/// A failed build, said for an operator.
fn build_failure(e: Error) -> Failure {
    match e {
        Error::WrongMasterKey { .. } => Failure::from(e),
        // The id matched, yet the store's keys do not open: one opaque error, as the library
        // gives (no oracle telling a wrong key under the right id from damaged key records).
        Error::Crypto => Failure::new(
            "wrong_master_key",
            "the master key cannot open this store's keys: it is the wrong key (under the right \
             id), or the stored keys are damaged",
        ),
        Error::Config(what) => Failure::usage(format!("vault configuration: {what}")),
        other => Failure::from(other),
    }
}
