//! Two application servers, one PostgreSQL database: a withdrawal made on one server stops
//! the other within the cache time-to-live you choose.
//!
//! ```text
//! EGARD_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --features postgres --example postgres
//! ```
//!
//! It works in a PostgreSQL schema of its own and drops it at the end.

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use egard::{AccessDenied, Error, Evidence, LawfulBasis, MasterKey, PostgresOptions, PostgresStore, Purpose, Vault};

fn main() -> Result<(), Error> {
    let Ok(url) = std::env::var("EGARD_POSTGRES_URL") else {
        println!("This example needs a PostgreSQL server. Run it with:");
        println!();
        println!("    EGARD_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \\");
        println!("        cargo run --features postgres --example postgres");
        return Ok(());
    };
    let schema = format!("egard_example_{}", std::process::id());
    let result = run(&url, &schema);
    // Leave nothing behind, whatever happened.
    if let Ok(mut admin) = postgres::Client::connect(&url, postgres::NoTls) {
        let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
    result
}

fn run(url: &str, schema: &str) -> Result<(), Error> {
    // The master key comes from your KMS or secret store; every server uses the same one.
    let master = [0x5a; 32];
    let ttl = Duration::milliseconds(500);
    let server = |name: &str| -> Result<Vault, Error> {
        let store = PostgresStore::connect_with(url, PostgresOptions::new().schema(schema).application_name(name))?;
        Vault::builder()
            .master_key(MasterKey::from_bytes(master))
            .store(store)
            .namespace("shop")
            // Changes made by the other servers count here within 500 ms.
            .cache_ttl(ttl)
            .build()
    };

    println!("1. Server A connects: egard creates its tables in schema `{schema}`.");
    let a = server("shop-a")?;
    a.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .fields(["email"])
            .consent_lifetime(Duration::days(395)),
    )?;
    println!("2. Server B connects to the same database (its own connection pool).");
    let b = server("shop-b")?;

    let alice = a.create_customer()?;
    a.set_field(alice, "email", "alice@example.com")?;
    a.give_consent(alice, "newsletter", Evidence::new("web-form"))?;
    println!("3. On A: customer {alice} created, email sealed, consent to `newsletter` given.");

    let pass = b.authorize(alice, "newsletter")?;
    let email = b.reveal::<String>(&pass, "email")?;
    println!(
        "4. On B: authorized and revealed the email ({} bytes): {email:?}",
        email.expose().len()
    );

    a.withdraw_consent(alice, "newsletter")?;
    let withdrawn = Instant::now();
    println!("5. On A: Alice withdraws. A refuses at once; B learns of it within the ttl (500 ms).");
    loop {
        match b.reveal::<String>(&pass, "email") {
            Err(Error::Denied(AccessDenied::Withdrawn)) => break,
            Ok(_) => std::thread::sleep(StdDuration::from_millis(10)),
            Err(other) => return Err(other),
        }
    }
    println!(
        "   B's pass stopped {} ms after the withdrawal; a new authorize on B: {:?}",
        withdrawn.elapsed().as_millis(),
        b.authorize(alice, "newsletter").map(|_| ()).unwrap_err().to_string()
    );

    let report = b.verify_audit()?;
    println!(
        "6. Both servers wrote to one audit chain: {} events verified.",
        report.events_verified
    );
    Ok(())
}
