//! The command line: global options (the store, the namespace, the key) and the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
THE MASTER KEY
  From the environment variable EGARD_MASTER_KEY (64 hexadecimal digits), or from a file
  (--key-file PATH: 32 raw bytes or 64 hexadecimal digits). Never from a command-line
  argument: the arguments of a running program are visible to every user of the machine.
  --key-file wins over the variable. A key under another id than 1 needs --key-id.

EXIT CODES
  0  ok
  1  failure: no or wrong master key, no such database, newer schema, unknown customer or
     purpose, a storage or cryptographic error (nothing half-done is left behind)
  2  usage: the command line does not parse, or `erase` was asked to run without a
     terminal to confirm on and without --yes
  3  the audit chain is broken (an event edited, dropped or reordered, or the log cut back
     before the anchor given), or an audit segment does not verify

Every command prints JSON with --json (one document per line; on a failure after the
command line parsed, {\"ok\":false,\"error\":CODE,\"message\":...} on standard output too). Nothing printed
holds personal data or key material, except what `export` prints (the subject's own
data, on their request) and the customer id `find` answers.

EXAMPLES
  export EGARD_MASTER_KEY=$(cat /run/secrets/egard-master-key)
  egard --sqlite shop.db verify --anchor last-anchor.json --write-anchor last-anchor.json
  egard --sqlite shop.db customer 0190f5c2-...      # consents and access history
  egard --sqlite shop.db export 0190f5c2-... --method verified-email-link > subject.json
  echo -n 'alice@example.com' | egard --sqlite shop.db find email
  egard --sqlite shop.db audience newsletter
  egard --sqlite shop.db changes --from 0 --limit 100 --json
  egard --sqlite shop.db audit archive --before 2025-01-01T00:00:00Z --dir /srv/egard/audit
  egard --sqlite shop.db audit verify-segment --join /srv/egard/audit/audit-*.jsonl";

/// The operator's command line for an egard store: verify the audit log, answer a subject's
/// request, erase a customer, rotate a key, count who consented.
#[derive(Debug, Parser)]
#[command(name = "egard", version, about, long_about = None, after_long_help = AFTER_HELP,
          after_help = "Run `egard --help` for the master key, the exit codes and examples.")]
pub struct Cli {
    /// The store, the namespace and the master key.
    #[command(flatten)]
    pub conn: Connection,

    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the store is and how to open it.
#[derive(Debug, Args)]
pub struct Connection {
    /// An existing SQLite database file (never created: a wrong path is an error).
    #[arg(long, value_name = "PATH", global = true, conflicts_with = "postgres")]
    pub sqlite: Option<PathBuf>,

    /// A PostgreSQL URL (or key=value string). Without --sqlite or --postgres, the URL is
    /// read from EGARD_POSTGRES_URL (so that a password in it stays out of the arguments).
    #[arg(long, value_name = "URL", global = true)]
    pub postgres: Option<String>,

    /// The PostgreSQL schema the tables are in (default: the connection's search path).
    #[arg(long, value_name = "SCHEMA", global = true)]
    pub postgres_schema: Option<String>,

    /// The vault namespace (as given to `VaultBuilder::namespace`).
    #[arg(long, default_value = "egard", global = true)]
    pub namespace: String,

    /// A file holding the master key (32 raw bytes or 64 hex digits). Without it, the key is
    /// read from EGARD_MASTER_KEY.
    #[arg(long, value_name = "PATH", global = true)]
    pub key_file: Option<PathBuf>,

    /// The id of the master key (as given to `MasterKey::with_id`).
    #[arg(long, value_name = "ID", default_value_t = 1, global = true)]
    pub key_id: u32,

    /// A file holding the previous master key, during a rotation. Without it, the previous
    /// key is read from EGARD_PREVIOUS_MASTER_KEY if that is set.
    #[arg(long, value_name = "PATH", global = true)]
    pub previous_key_file: Option<PathBuf>,

    /// The id of the previous master key.
    #[arg(long, value_name = "ID", default_value_t = 1, global = true)]
    pub previous_key_id: u32,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify the audit chain and print a new anchor (exit code 3 if broken).
    ///
    /// Verifies the whole chain, optionally against an anchor kept outside the database (a
    /// log cut back before it is caught), and prints the anchor of its head now.
    Verify {
        /// An anchor file (`{"seq": N, "mac": "..."}`) written by an earlier `verify`: a log
        /// that ends before it, or holds another event there, was cut back.
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,
        /// Write the new anchor to this file (replaced) once the chain verifies. Keep it
        /// outside the database.
        #[arg(long, value_name = "FILE")]
        write_anchor: Option<PathBuf>,
    },
    /// Show a customer's consents and access history.
    ///
    /// Every consent record (history included) with its state now, and every audit event
    /// naming the customer.
    Customer {
        /// The customer id (a UUID).
        customer: String,
    },
    /// Export a customer's data, on the subject's own request (GDPR Art. 15, 20).
    ///
    /// Prints the JSON the library makes (the values in clear: it is for the subject) and
    /// records the evidence of the request in the audit log.
    Export {
        /// The customer id (a UUID).
        customer: String,
        /// How the request was verified (for example `verified-email-link`).
        #[arg(long)]
        method: String,
        /// A reference to the request (a ticket number); never personal data.
        #[arg(long)]
        source: Option<String>,
        /// Write the export to this new file (mode 0600 on Unix; an existing file is never
        /// overwritten) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Erase a customer by crypto-shredding (GDPR Art. 17) and print the receipt.
    ///
    /// Asks for confirmation on a terminal (type `erase`); without a terminal, --yes is
    /// required. Keep the receipt in an erasure ledger outside the database and its backups.
    Erase {
        /// The customer id (a UUID).
        customer: String,
        /// Do not ask: erase at once.
        #[arg(long)]
        yes: bool,
    },
    /// Find a customer by a field with a lookup; the value is read from standard input.
    ///
    /// An exact match on the normalised value. The value is read from standard input (or
    /// asked for on a terminal), never from the command line, where other users of the
    /// machine could read it. Prints the customer id; exit code 1 if nobody holds it.
    Find {
        /// The field with a lookup (for example `email`).
        field: String,
    },
    /// Count a purpose's audience and whom to ask again.
    ///
    /// The audience: who may be reached for the purpose now. To ask again: customers whose
    /// consent was given under an older notice version. Both listings are audited.
    Audience {
        /// The purpose id.
        purpose: String,
        /// Also list the customer ids.
        #[arg(long)]
        list: bool,
    },
    /// List the defined purposes.
    Purposes,
    /// Show one purpose.
    Purpose {
        /// The purpose id.
        purpose: String,
    },
    /// List the lookups (fields that `find` can search).
    Lookups,
    /// Print the change feed after a cursor.
    ///
    /// The audit events that change something (never an access event), after the sequence
    /// number given; the last one printed is the next cursor.
    Changes {
        /// The cursor: print the events after this sequence number (0: from the start).
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        from: u64,
        /// At most this many events per page (at most 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        /// Keep polling for new events until interrupted.
        #[arg(long)]
        follow: bool,
        /// How long to wait between polls with --follow, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval: u64,
    },
    /// Rotate the master key or one customer's data key.
    #[command(subcommand)]
    Rotate(Rotate),
    /// Archive old audit events into segment files, and verify segments.
    #[command(subcommand)]
    Audit(Audit),
    /// Store statistics.
    ///
    /// Customers (live, erased), consent records by state per purpose, lookups, audit events
    /// and the schema version.
    Stats,
}

/// The audit log over years.
#[derive(Debug, Subcommand)]
pub enum Audit {
    /// Move the audit events before a time into a new segment file, then prune them.
    ///
    /// Each segment (`audit-<from>-<through>.jsonl` in DIR, at most 250,000 events: one
    /// store batch each) is written, synced and renamed before anything is deleted from the
    /// store; the store keeps the few events its records are bound to. Keep DIR: it is the
    /// history. Prints what was archived, and each segment on stderr as it is made.
    Archive {
        /// Archive the events that happened before this time (RFC 3339, e.g.
        /// `2025-01-01T00:00:00Z`).
        #[arg(long, value_name = "RFC3339")]
        before: String,
        /// The directory of segment files (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
    },
    /// Verify segment files with the vault's audit key (exit code 3 if one does not).
    ///
    /// Each file on its own: its header, every event's chained MAC, its end. With --join,
    /// also that they follow each other in the order given, that the last one ends where
    /// the store's archived part ends, and the store's chain from there.
    VerifySegment {
        /// The segment files, in log order for --join.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
        /// Check that the segments join each other and the store, and verify the store.
        #[arg(long)]
        join: bool,
    },
}

/// What to rotate.
#[derive(Debug, Subcommand)]
pub enum Rotate {
    /// Re-wrap every data key and vault secret under the current master key.
    ///
    /// The current key: --key-file or EGARD_MASTER_KEY, with a new --key-id. The previous
    /// one opens what is to re-wrap
    /// (--previous-key-file or EGARD_PREVIOUS_MASTER_KEY, with --previous-key-id). Field
    /// ciphertexts are not touched. Once it succeeds the previous key can be retired.
    Master,
    /// Give one customer a new data key and re-seal their fields under it.
    Customer {
        /// The customer id (a UUID).
        customer: String,
    },
}
