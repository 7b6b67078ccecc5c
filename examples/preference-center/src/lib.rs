//! The preference center: a web page where a customer of a business that uses egard signs in,
//! sees every purpose their data may be used for and gives or withdraws consent, reads the
//! values egard holds about them, sees who used their data, downloads it, and deletes their
//! account.
//!
//! Built on axum and tokio; the synchronous [`egard::Vault`] runs behind
//! [`tokio::task::spawn_blocking`]. Pages are server-rendered HTML that needs no JavaScript.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use egard::{MasterKey, SqliteStore, Vault};
//! use egard_preference_center::{Config, app, seed_demo};
//!
//! let vault = Arc::new(
//!     Vault::builder().master_key(MasterKey::from_env("EGARD_MASTER_KEY")?).store(SqliteStore::open("prefs.db")?).build()?,
//! );
//! seed_demo(&vault)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app(vault, Config::new("http://127.0.0.1:8080"))).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//!
//! - Sign-in by a one-time link (256 random bits, kept hashed, valid for 10 minutes, once),
//!   handed to the [`Config::mail`] console instead of an email; the page after asking for one
//!   is the same whether the address is known or not.
//! - A session cookie that is `HttpOnly`, `SameSite=Lax`, and `Secure` (under the `__Host-`
//!   prefix) with [`Config::secure_cookies`]; sessions and links live server-side, hashed.
//! - A CSRF token on every form, checked in constant time on every POST (a POST without it is
//!   refused with 403 and changes nothing), and a POST from another origin is refused.
//! - Content-Security-Policy without any script, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`, `Cache-Control: no-store`.
//! - The [`Config::log`] console gets one line per request: method, route template, status,
//!   duration. Never an email, a value, a token or a cookie.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod html;
mod pages;
mod seed;
mod session;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use egard::Vault;

pub use seed::{DEMO_CUSTOMERS, seed_demo, simulate_mailer};

/// Where the server writes lines: its log, or the stand-in for an email provider.
pub trait Console: Send + Sync + 'static {
    /// Writes one line.
    fn line(&self, line: &str);
}

/// Writes to the process's standard output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Console for Stdout {
    fn line(&self, line: &str) {
        println!("{line}");
    }
}

/// Writes to the process's standard error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Console for Stderr {
    fn line(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Keeps every line in memory (for tests: read the sign-in link, check the log).
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Console for Captured {
    fn line(&self, line: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line.to_owned());
    }
}

/// How the preference center runs.
#[derive(Clone)]
pub struct Config {
    /// The address customers reach the server at, without a trailing slash (for example
    /// `https://prefs.example.com`): sign-in links are made from it, never from the request's
    /// `Host` header, which a client chooses.
    pub public_url: String,
    /// Whether the session cookie is `Secure` (and named with the `__Host-` prefix), and
    /// `Strict-Transport-Security` is sent: set it whenever the server is reached over TLS.
    pub secure_cookies: bool,
    /// How long a sign-in link works (10 minutes by default).
    pub link_lifetime: Duration,
    /// How long a signed-in session lasts (1 hour by default).
    pub session_lifetime: Duration,
    /// The server's log (standard error by default).
    pub log: Arc<dyn Console>,
    /// Where sign-in links are "emailed" (standard output by default).
    pub mail: Arc<dyn Console>,
}

impl Config {
    /// The defaults, for a server reached at `public_url`.
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            secure_cookies: public_url.starts_with("https://"),
            link_lifetime: Duration::from_secs(10 * 60),
            session_lifetime: Duration::from_secs(60 * 60),
            log: Arc::new(Stderr),
            mail: Arc::new(Stdout),
        }
    }

    /// Sets [`secure_cookies`](Config::secure_cookies).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// Sets [`link_lifetime`](Config::link_lifetime).
    pub fn link_lifetime(mut self, lifetime: Duration) -> Self {
        self.link_lifetime = lifetime;
        self
    }

    /// Sets [`session_lifetime`](Config::session_lifetime).
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.session_lifetime = lifetime;
        self
    }

    /// Sets the [`log`](Config::log) console.
    pub fn log(mut self, console: impl Console) -> Self {
        self.log = Arc::new(console);
        self
    }

    /// Sets the [`mail`](Config::mail) console.
    pub fn mail(mut self, console: impl Console) -> Self {
        self.mail = Arc::new(console);
        self
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-egard_session"
        } else {
            "egard_session"
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("public_url", &self.public_url)
            .field("secure_cookies", &self.secure_cookies)
            .field("link_lifetime", &self.link_lifetime)
            .field("session_lifetime", &self.session_lifetime)
            .finish_non_exhaustive()
    }
}

/// The preference center's routes, serving `vault`. Serve it with `axum::serve`.
pub fn app(vault: Arc<Vault>, config: Config) -> Router {
    pages::router(vault, config)
}
