//! `egard-preference-center`: the demo preference center on a SQLite file.
//!
//! ```text
//! cargo run -p egard-preference-center -- --db prefs.db [--addr 127.0.0.1:8080] [--public-url URL] [--secure-cookies]
//! ```
//!
//! The master key comes from `EGARD_MASTER_KEY` (64 hexadecimal digits); without it, a fixed
//! demo key is used and the server says so. Sign-in links are printed on standard output,
//! the request log goes to standard error.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use egard::{MasterKey, SqliteStore, Vault};
use egard_preference_center::{Config, app, seed_demo};

/// A fixed key for the demo only: anyone who reads this file can open a demo database.
const DEMO_KEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";

const USAGE: &str = "usage: egard-preference-center --db FILE [--addr HOST:PORT] [--public-url URL] [--secure-cookies]";

struct Args {
    db: PathBuf,
    addr: SocketAddr,
    public_url: Option<String>,
    secure_cookies: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut db = None;
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut public_url = None;
    let mut secure_cookies = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => db = Some(PathBuf::from(args.next().ok_or("--db needs a file")?)),
            "--addr" => {
                addr = args
                    .next()
                    .ok_or("--addr needs HOST:PORT")?
                    .parse()
                    .map_err(|_| "--addr needs HOST:PORT, such as 127.0.0.1:8080")?;
            }
            "--public-url" => public_url = Some(args.next().ok_or("--public-url needs a URL")?),
            "--secure-cookies" => secure_cookies = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(Args {
        db: db.ok_or_else(|| format!("--db is required\n{USAGE}"))?,
        addr,
        public_url,
        secure_cookies,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let key = if std::env::var_os("EGARD_MASTER_KEY").is_some() {
        MasterKey::from_env("EGARD_MASTER_KEY").map_err(|e| e.to_string())?
    } else {
        eprintln!("EGARD_MASTER_KEY is not set: using the fixed demo key (never do this with real data)");
        MasterKey::from_hex(DEMO_KEY).map_err(|e| e.to_string())?
    };
    let db = args.db.clone();
    let vault = tokio::task::spawn_blocking(move || -> Result<Vault, egard::Error> {
        let vault = Vault::builder()
            .master_key(key)
            .store(SqliteStore::open(&db)?)
            .build()?;
        if seed_demo(&vault)? {
            eprintln!("seeded the demo purposes and customers (see README: the preference center)");
        }
        Ok(vault)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let public_url = args.public_url.unwrap_or_else(|| format!("http://{local}"));
    let config = Config::new(&public_url).secure_cookies(args.secure_cookies || public_url.starts_with("https://"));
    eprintln!("preference center on {public_url} (database {})", args.db.display());
    axum::serve(listener, app(Arc::new(vault), config))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
