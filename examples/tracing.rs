//! egard's operations in your traces: a `tracing` subscriber wired to a vault, printing what a
//! dashboard would count — grants, denials by reason, store latency — with ids and codes only.
//!
//! ```sh
//! cargo run --example tracing
//! RUST_LOG=egard::audit=info cargo run --example tracing   # decisions only
//! ```

use egard::{Error, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

fn main() -> Result<(), Error> {
    // Every operation's span closes with its duration (`time.busy`); every audit entry is an
    // INFO event of target `egard::audit`; every store round trip on the hot paths a DEBUG
    // event of target `egard::store` with `micros`.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("egard=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_target(true)
        .with_ansi(false)
        .init();

    let vault = Vault::builder()
        .master_key(MasterKey::generate()?)
        .store(MemoryStore::new())
        .build()?;
    vault.define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))?;

    let customer = vault.create_customer()?;
    vault.set_field(customer, "email", "ada@example.com")?; // never in the trace

    // A denial (no consent yet), a grant, a read, a withdrawal, a denial again.
    let _ = vault.authorize(customer, "newsletter");
    vault.give_consent(customer, "newsletter", Evidence::new("web-form"))?;
    let pass = vault.authorize(customer, "newsletter")?;
    let email = vault.reveal::<String>(&pass, "email")?;
    assert_eq!(email.expose(), "ada@example.com");
    vault.withdraw_consent(customer, "newsletter")?;
    let _ = vault.authorize(customer, "newsletter");
    Ok(())
}
