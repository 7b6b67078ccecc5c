//! Exit codes, failures and what is printed: plain text for people, JSON (`--json`) for
//! scripts. Nothing printed here carries personal data or key material: errors of egard name
//! ids, purposes and fields only.

use std::io::{IsTerminal, Write};

use egard::Error;
use indicatif::{ProgressBar, ProgressStyle};

/// Exit code of a command that did what was asked.
pub const EXIT_OK: u8 = 0;
/// Exit code of a command that failed: a store, key, customer or purpose problem.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a command line that does not parse, or a confirmation that cannot be asked.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `verify` (or any command) that found the audit chain broken.
pub const EXIT_BROKEN_CHAIN: u8 = 3;

/// A failed command: what to tell the operator, and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code (see the `EXIT_` constants).
    pub code: u8,
    /// One line for the operator, without personal data.
    pub message: String,
    /// A stable, lowercase code for scripts (`--json`).
    pub kind: &'static str,
}

impl Failure {
    /// A failure with exit code 1.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.into(),
            kind,
        }
    }

    /// A usage failure (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
            kind: "usage",
        }
    }

    /// Prints the failure on standard error, and with `--json` also as a JSON object on
    /// standard output, so that a script reading standard output always gets one document.
    pub fn report(&self, json: bool) {
        eprintln!("egard: error: {}", self.message);
        if json {
            let doc = serde_json::json!({
                "ok": false,
                "error": self.kind,
                "message": self.message,
                "exit_code": self.code,
            });
            print_json(&doc);
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::AuditBroken { seq, problem } => Failure {
                code: EXIT_BROKEN_CHAIN,
                message: format!("the audit log is BROKEN at event {seq}: {problem}"),
                kind: "audit_broken",
            },
            Error::SegmentInvalid(_) => Failure {
                code: EXIT_BROKEN_CHAIN,
                message: e.to_string(),
                kind: "segment_invalid",
            },
            Error::WrongMasterKey { .. } => Failure::new("wrong_master_key", e.to_string()),
            Error::UnknownCustomer(_) => Failure::new("unknown_customer", e.to_string()),
            Error::UnknownPurpose(_) => Failure::new("unknown_purpose", e.to_string()),
            Error::Erased(_) => Failure::new("erased", e.to_string()),
            Error::NoLookup(_) => Failure::new("no_lookup", e.to_string()),
            Error::InvalidId { .. } => Failure::new("invalid_id", e.to_string()),
            Error::Storage(_) => Failure::new("storage", e.to_string()),
            Error::Crypto => Failure::new(
                "crypto",
                "cryptographic operation failed: a record does not open with this master key \
                 (tampered or damaged data, or the wrong key)",
            ),
            other => Failure::new("failure", other.to_string()),
        }
    }
}

/// Prints a JSON document on standard output, one line.
pub fn print_json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`egard ... | head`) is not worth a panic.
    let _ = writeln!(out, "{value}");
}

/// A progress bar on standard error when it is a terminal and the output is for people;
/// hidden otherwise (piped, or `--json`).
pub fn progress(len: Option<u64>, json: bool, what: &str) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{msg} [{bar:40}] {pos}/{len} ({eta})"
    } else {
        "{spinner} {msg} {pos}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}
