//! Makes a small demo SQLite store to try the `egard` command line on: two purposes (one
//! redefined with a newer notice), a lookup on `email`, three customers.
//!
//! ```text
//! export EGARD_MASTER_KEY=$(openssl rand -hex 32)
//! cargo run -p egard-cli --example demo_store -- shop.db
//! egard --sqlite shop.db stats
//! ```
//!
//! Prints the customer ids it made (ids only; the demo values are made up).

use egard::{Error, Evidence, LawfulBasis, Lookup, MasterKey, Normalizer, Purpose, SqliteStore, Vault};

fn main() -> Result<(), Error> {
    let path = std::env::args()
        .nth(1)
        .ok_or(Error::Config("usage: demo_store PATH (a new SQLite file)"))?;
    if std::path::Path::new(&path).exists() {
        return Err(Error::Config("the demo store file exists already: give a new path"));
    }
    let vault = Vault::builder()
        .master_key(MasterKey::from_env("EGARD_MASTER_KEY")?)
        .store(SqliteStore::open(&path)?)
        .build()?;
    vault.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description("the monthly letter")
            .fields(["email", "first_name"])
            .notice_version(1)
            .consent_lifetime(chrono::Duration::days(395)),
    )?;
    vault.define_purpose(
        Purpose::new("shipping", LawfulBasis::Contract)
            .description("delivering orders")
            .fields(["email", "address"]),
    )?;
    vault.define_lookup(Lookup::new("email", Normalizer::Email))?;
    let alice = vault.create_customer()?;
    vault.set_field(alice, "email", "alice@example.com")?;
    vault.set_field(alice, "first_name", "Alice")?;
    vault.give_consent(alice, "newsletter", Evidence::new("web-form").source("signup-page"))?;
    vault.give_consent(alice, "shipping", Evidence::new("contract").source("order-1042"))?;
    let bob = vault.create_customer()?;
    vault.set_field(bob, "email", "bob@example.com")?;
    vault.give_consent(bob, "newsletter", Evidence::new("web-form"))?;
    let carol = vault.create_customer()?;
    vault.set_field(carol, "email", "carol@example.com")?;
    vault.give_consent(carol, "newsletter", Evidence::new("web-form"))?;
    vault.withdraw_consent(carol, "newsletter")?;
    let pass = vault.authorize(alice, "newsletter")?;
    let _first_name = vault.reveal::<String>(&pass, "first_name")?;
    // A notice change: Bob's consent is now under an older notice.
    vault.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description("the monthly letter")
            .fields(["email", "first_name"])
            .notice_version(2)
            .consent_lifetime(chrono::Duration::days(395)),
    )?;
    vault.give_consent(alice, "newsletter", Evidence::new("web-form").source("renewal"))?;
    println!("alice {alice}");
    println!("bob {bob}");
    println!("carol {carol}");
    Ok(())
}
