//! The first thing to run: a customer lends their data for a purpose, and takes it back.
//!
//! ```text
//! cargo run --example quickstart            # the tour, stored in egard-quickstart.db
//! cargo run --example quickstart            # again: Alice's data is still there, still sealed
//! ```
//!
//! The database file is `egard-quickstart.db` in the current directory (or the path given as
//! the first argument); delete it to start over.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use egard::{
    AccessDenied, AccessPass, CustomerId, Error, Evidence, LawfulBasis, ManualClock, MasterKey, Purpose, Revealed,
    Sealed, SqliteStore, Store, Vault,
};

/// !!! A FIXED, PUBLIC KEY, FOR THIS DEMO ONLY !!!
///
/// A persistent store needs the same master key on every run, so the demo hard-codes one.
/// Anyone who reads this file can open the demo's data. In production the master key comes
/// from your KMS, a file or an environment variable (`MasterKey::from_env`), and egard never
/// stores it.
const DEMO_ONLY_MASTER_KEY: [u8; 32] = *b"egard quickstart DEMO key-unsafe";

fn main() -> Result<(), Error> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("egard-quickstart.db"));
    // Durable, embedded storage: one SQLite file. An Arc, so that we can peek at the store.
    let store = Arc::new(SqliteStore::open(&path)?);
    let mut customers = store.customer_ids()?;
    customers.sort(); // time-ordered ids: the first one created is Alice
    let head = store.audit_head()?;

    // A clock we can move, so that we can watch a consent expire. A later run starts after the
    // last event the earlier runs recorded.
    let start = match &head {
        Some(last) => last.at + Duration::days(1),
        None => Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap(),
    };
    let clock = ManualClock::new(start);
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(DEMO_ONLY_MASTER_KEY))
        .store(store.clone())
        .clock(clock.clone())
        .build()?;

    match customers.first() {
        None => first_run(&vault, &clock, &path),
        Some(&alice) => later_run(&vault, alice, &path, customers.len()),
    }
}

fn first_run(vault: &Vault, clock: &ManualClock, path: &Path) -> Result<(), Error> {
    println!("A new store at {}", path.display());
    step("1. Two purposes, each naming the fields it needs and its lawful basis");
    vault.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description("A monthly newsletter")
            .fields(["email", "first_name"])
            .notice_version(2)
            .consent_lifetime(Duration::days(395)),
    )?;
    vault.define_purpose(
        Purpose::new("shipping", LawfulBasis::Contract)
            .description("Delivering what the customer bought")
            .fields(["first_name", "address"]),
    )?;
    say("`newsletter` (consent) reads email and first_name; `shipping` (contract) reads first_name and address.");

    step("2. A customer, with personal data sealed under her own data key");
    let alice = vault.create_customer()?;
    vault.set_field(alice, "email", "alice@example.com")?;
    vault.set_field(alice, "first_name", "Alice")?;
    vault.set_field(alice, "address", "1 Rue de la Paix, Paris")?;
    say(&format!("customer {alice}: three fields stored, as ciphertext only."));
    match vault.set_field(alice, "shoe_size", &38) {
        Err(Error::UnknownField(f)) => say(&format!(
            "`{f}` is refused: no purpose needs it, so it is not collected."
        )),
        other => unexpected(other),
    }

    step("3. Nothing opens by default");
    denied(
        "authorize(newsletter) before any consent",
        vault.authorize(alice, "newsletter"),
    );

    step("4. Alice consents to the newsletter (web form, notice v2)");
    let consent = vault.give_consent(alice, "newsletter", Evidence::new("web-form").source("signup-page"))?;
    say(&format!("consent {consent} recorded, valid 395 days."));
    let pass: AccessPass = vault.authorize(alice, "newsletter")?;
    let email: Revealed<String> = vault.reveal(&pass, "email")?;
    say(&format!(
        "revealed through the pass: email = {} (Debug prints {email:?})",
        email.expose()
    ));

    step("5. The pass opens only what its purpose covers, only for this customer");
    denied(
        "reveal(address) with the newsletter pass",
        vault.reveal::<String>(&pass, "address"),
    );
    denied(
        "authorize(shipping) without a contract record",
        vault.authorize(alice, "shipping"),
    );
    let bob = vault.create_customer()?;
    vault.set_field(bob, "email", "bob@example.com")?;
    let bobs: Sealed<String> = vault.seal(bob, "email", &"bob@example.com".to_string())?;
    denied("open Bob's sealed email with Alice's pass", bobs.open(&pass));

    step("6. A sealed value can live in your own tables and still needs a pass");
    let sealed: Sealed<String> = vault.seal(alice, "email", &"alice@work.example".to_string())?;
    let json = serde_json::to_string(&sealed).map_err(|_| Error::Invalid("json"))?;
    say(&format!(
        "{} bytes of JSON, no plaintext in it: {}",
        json.len(),
        !json.contains("alice@")
    ));
    let back: Sealed<String> = serde_json::from_str(&json).map_err(|_| Error::Invalid("json"))?;
    say(&format!("opened with the pass: {}", back.open(&pass)?.expose()));

    step("7. Alice withdraws: the pass she already gave stops working at once");
    vault.withdraw_consent(alice, "newsletter")?;
    denied(
        "reveal(email) through the old pass",
        vault.reveal::<String>(&pass, "email"),
    );
    denied(
        "authorize(newsletter) after withdrawal",
        vault.authorize(alice, "newsletter"),
    );

    step("8. Consents expire: Alice consents again, then 396 days pass");
    vault.give_consent(alice, "newsletter", Evidence::new("web-form"))?;
    let fresh = vault.authorize(alice, "newsletter")?;
    say(&format!("fresh pass valid until {}", fresh.valid_until()));
    clock.advance(Duration::days(396));
    denied(
        "authorize(newsletter) after expiry",
        vault.authorize(alice, "newsletter"),
    );
    denied(
        "reveal through a pass after expiry",
        vault.reveal::<String>(&fresh, "email"),
    );

    step("9. A new privacy notice needs a new consent");
    vault.give_consent(alice, "newsletter", Evidence::new("web-form"))?;
    vault.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description("A monthly newsletter")
            .fields(["email", "first_name"])
            .notice_version(3)
            .consent_lifetime(Duration::days(395)),
    )?;
    denied(
        "authorize(newsletter) under notice v3",
        vault.authorize(alice, "newsletter"),
    );

    step("10. Every decision is in a tamper-evident log");
    let report = vault.verify_audit()?;
    say(&format!(
        "{} audit events verified; Alice has {} of them, none with a value in it.",
        report.events_verified,
        vault.audit_events(alice)?.len()
    ));

    step("11. Everything is on disk");
    say(&format!(
        "run me again: the next run finds Alice's data in {}",
        path.display()
    ));
    Ok(())
}

/// A second (or later) run: the store already holds Alice from the first one.
fn later_run(vault: &Vault, alice: CustomerId, path: &Path, customers: usize) -> Result<(), Error> {
    println!("Found the store of an earlier run at {}", path.display());
    println!("(delete the file to see the tour from the start)");

    step("1. Alice's data is still there, and still sealed");
    say(&format!(
        "{customers} customers on disk; the first one created is Alice, {alice}."
    ));
    let on_disk = [path.to_path_buf(), PathBuf::from(format!("{}-wal", path.display()))]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .any(|bytes| bytes.windows(b"alice@".len()).any(|w| w == b"alice@"));
    say(&format!(
        "her email appears in clear in the database files: {on_disk} (ciphertext only)"
    ));

    step("2. Her consents came back with her, and so did the rules");
    let history = vault.consents(alice)?;
    say(&format!(
        "{} consent records on file; the newest was given under notice v{}, the purpose now asks for v{}.",
        history.len(),
        history.last().map_or(0, |c| c.notice_version),
        vault.purpose("newsletter")?.required_notice_version()
    ));
    match vault.authorize(alice, "newsletter") {
        Ok(pass) => say(&format!(
            "authorize(newsletter): granted, a consent from an earlier run is still valid until {}",
            pass.valid_until()
        )),
        denial => denied("authorize(newsletter) with what is on file", denial),
    }

    step("3. A fresh consent under the current notice opens her sealed email again");
    vault.give_consent(alice, "newsletter", Evidence::new("web-form").source("renewal-page"))?;
    let pass = vault.authorize(alice, "newsletter")?;
    let email: Revealed<String> = vault.reveal(&pass, "email")?;
    say(&format!("revealed through a new pass: email = {}", email.expose()));
    vault.withdraw_consent(alice, "newsletter")?;
    say("(and withdrawn again before we leave)");

    step("4. The audit chain spans every run");
    let report = vault.verify_audit()?;
    say(&format!(
        "{} audit events verified, Alice has {} of them.",
        report.events_verified,
        vault.audit_events(alice)?.len()
    ));
    Ok(())
}

fn step(title: &str) {
    println!("\n{title}");
}

fn say(line: &str) {
    println!("   {line}");
}

fn denied<T>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Denied(reason)) => say(&format!("{what}: denied, {reason} ({})", reason_name(reason))),
        other => unexpected(other),
    }
}

fn reason_name(reason: AccessDenied) -> &'static str {
    reason.code()
}

fn unexpected<T>(result: Result<T, Error>) {
    match result {
        Ok(_) => eprintln!("unexpected success"),
        Err(e) => eprintln!("unexpected error: {e}"),
    }
    std::process::exit(1);
}
