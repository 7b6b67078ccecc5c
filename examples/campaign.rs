//! A newsletter campaign, as a business runs one with egard, on a SQLite file of 10,000
//! customers: find a customer at sign-in by email, send the newsletter to exactly those who
//! agreed (opening only their email), stop at once for someone who withdraws mid-campaign, ask
//! again after a notice change, and keep an email provider in step through the change feed.
//!
//! ```text
//! cargo run --example campaign
//! ```

use std::path::Path;
use std::time::Instant;

use chrono::Duration;
use egard::{
    AccessDenied, AuditEvent, AuditKind, CustomerId, Durability, Error, Evidence, LawfulBasis, Lookup, MasterKey,
    Normalizer, Purpose, SqliteOptions, SqliteStore, Vault,
};

const CUSTOMERS: usize = 10_000;

fn main() -> Result<(), Error> {
    let dir = tempfile_dir();
    let db = dir.join("campaign.db");
    let cursor_file = dir.join("email-provider.cursor");
    // A demo key; in production, `MasterKey::from_env` or a key provider.
    let key_bytes = [42u8; 32];
    // The import runs on a vault of its own that does not fsync every customer (a power cut
    // would lose the end of the import, which is then run again); the campaign runs on the
    // default, where every change is fsynced.
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(key_bytes))
        .store(SqliteStore::open_with(
            &db,
            SqliteOptions::new().durability(Durability::ProcessCrash),
        )?)
        .build()?;

    step("The business: an account (contract) and a newsletter (consent, notice v1)");
    vault.define_purpose(
        Purpose::new("account", LawfulBasis::Contract)
            .description("Running the customer's account")
            .fields(["email", "first_name"]),
    )?;
    vault.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description("A monthly newsletter")
            .fields(["email"])
            .notice_version(1)
            .consent_lifetime(Duration::days(395))
            .direct_marketing(),
    )?;
    vault.define_lookup(Lookup::new("email", Normalizer::Email))?;
    say("a lookup on `email`: customers are found by email through a blind index, never a table in clear");

    let started = Instant::now();
    let mut customers = Vec::with_capacity(CUSTOMERS);
    for i in 0..CUSTOMERS {
        let c = vault.create_customer()?;
        vault.set_field(c, "email", &format!("Customer.{i:05}@Example.org"))?;
        vault.set_field(c, "first_name", &format!("Customer {i}"))?;
        customers.push(c);
    }
    vault.give_consents(
        customers
            .iter()
            .map(|&c| (c, "account", Evidence::new("signup").source("web"))),
    )?;
    // Two customers in three subscribed to the newsletter.
    let subscribed: Vec<CustomerId> = customers
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, c)| c)
        .collect();
    vault.give_consents(subscribed.iter().map(|&c| {
        (
            c,
            "newsletter",
            Evidence::new("newsletter-form").notice_text("Newsletter notice v1"),
        )
    }))?;
    say(&format!(
        "{CUSTOMERS} customers, {} subscribed to the newsletter, on {} ({:.1} s)",
        subscribed.len(),
        db.display(),
        started.elapsed().as_secs_f64()
    ));
    drop(vault);
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(key_bytes))
        .store(SqliteStore::open(&db)?)
        .build()?;

    step("1. Sign-in: the customer types her email, any way she likes");
    let typed = "  customer.04242@EXAMPLE.ORG ";
    let found = vault.find_customer("email", typed)?;
    say(&format!("find_customer(\"email\", {typed:?}) -> {found:?}"));
    assert_eq!(found, Some(customers[4242]));
    say(&format!(
        "an unknown email finds no one: {:?}",
        vault.find_customer("email", "nobody@example.org")?
    ));

    // The email provider keeps its own copy of who may be written to, fed by the change feed.
    let mut provider = EmailProvider::default();
    provider.sync(&vault, &cursor_file)?;

    step("2. The newsletter goes out to the audience: those for whom `authorize` succeeds now");
    let mut withdrawer = None;
    let mut seen = std::collections::HashSet::new();
    let mut sent = 0;
    let mut stopped = 0;
    for (n, customer) in vault.audience("newsletter")?.enumerate() {
        let customer = customer?;
        seen.insert(customer);
        if n == 50 {
            // Mid-campaign, a customer who has not had this issue yet clicks "unsubscribe" in
            // last month's.
            let who = subscribed
                .iter()
                .copied()
                .find(|c| !seen.contains(c))
                .ok_or(Error::Invalid("no one left"))?;
            vault.withdraw_consent(who, "newsletter")?;
            say(&format!("(after {n} sends, customer {who} withdraws)"));
            withdrawer = Some(who);
        }
        // One pass per recipient, for this purpose: it opens the email and nothing else.
        match vault.authorize(customer, "newsletter") {
            Ok(pass) => {
                let email = vault.reveal::<String>(&pass, "email")?;
                assert!(matches!(
                    vault.reveal::<String>(&pass, "first_name"),
                    Err(Error::Denied(AccessDenied::FieldNotCovered))
                ));
                send(email.expose());
                sent += 1;
            }
            Err(Error::Denied(AccessDenied::Withdrawn)) => stopped += 1,
            Err(e) => return Err(e),
        }
    }
    let withdrawer = withdrawer.ok_or(Error::Invalid("the campaign had fewer than 50 recipients"))?;
    say(&format!(
        "sent {sent} newsletters, revealing one email each; the one who withdrew was not sent one \
         (the audience checks each customer when it reaches them; {stopped} refused at authorize)"
    ));
    assert_eq!(sent + stopped, subscribed.len() - 1);

    step("3. The email provider follows the change feed from its persisted cursor");
    provider.sync(&vault, &cursor_file)?;
    say(&format!(
        "the provider suppresses {} address(es) now (by customer id; it never saw the email from egard)",
        provider.suppressed.len()
    ));
    assert!(provider.suppressed.contains(&withdrawer));

    step("4. A new privacy notice (v2): every consent given under v1 must be given again");
    vault.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description("A monthly newsletter, now with partner offers")
            .fields(["email"])
            .notice_version(2)
            .consent_lifetime(Duration::days(395))
            .direct_marketing(),
    )?;
    let audience_now = vault.audience("newsletter")?.count();
    let ask_again: Vec<CustomerId> = vault.needs_reconsent("newsletter")?.collect::<Result<_, _>>()?;
    say(&format!(
        "audience now: {audience_now}; to ask again: {} customers (the one who withdrew is not asked)",
        ask_again.len()
    ));
    assert_eq!(audience_now, 0);
    assert_eq!(ask_again.len(), subscribed.len() - 1);
    assert!(!ask_again.contains(&withdrawer));
    for &c in ask_again.iter().take(3) {
        say(&format!("ask {c} again"));
    }
    // A few say yes under the new notice.
    for &c in ask_again.iter().take(10) {
        vault.give_consent(
            c,
            "newsletter",
            Evidence::new("newsletter-form").notice_text("Newsletter notice v2"),
        )?;
    }
    say(&format!(
        "ten agree again: the audience is {}",
        vault.audience("newsletter")?.count()
    ));

    step("5. The provider restarts and resumes from its cursor file");
    let mut restarted = EmailProvider::default();
    let handled = restarted.sync(&vault, &cursor_file)?;
    say(&format!(
        "{handled} new change(s) since its last run; it now writes to {} re-subscribed customers",
        restarted.subscribed.len()
    ));
    say("expiries are not events: the provider re-reads the audience before each send, or uses each consent's expiry");

    vault.verify_audit()?;
    for c in [customers[4242], withdrawer] {
        for event in vault.audit_events(c)? {
            assert!(!format!("{event:?}").to_lowercase().contains("example.org"));
        }
    }
    step("The audit log verifies; the customers' audit events name ids, purposes and fields, never an email.");
    drop(vault);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A downstream system that must never write to someone who withdrew: it keeps the last
/// sequence number it handled in a file, and applies what changed since.
#[derive(Default)]
struct EmailProvider {
    subscribed: std::collections::HashSet<CustomerId>,
    suppressed: std::collections::HashSet<CustomerId>,
}

impl EmailProvider {
    /// Reads the change feed from the persisted cursor, applies it, stores the new cursor.
    fn sync(&mut self, vault: &Vault, cursor_file: &Path) -> Result<usize, Error> {
        let mut cursor: u64 = std::fs::read_to_string(cursor_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut handled = 0;
        loop {
            let page: Vec<AuditEvent> = vault.changes_since(cursor, 500)?;
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            for event in &page {
                self.apply(event);
                handled += 1;
            }
            // Persist after each page: a crash replays at most one page (applying is idempotent).
            std::fs::write(cursor_file, cursor.to_string())
                .map_err(|_| Error::Invalid("cannot write the cursor file"))?;
        }
        Ok(handled)
    }

    fn apply(&mut self, event: &AuditEvent) {
        let (Some(customer), Some(purpose)) = (event.customer, event.purpose.as_ref()) else {
            return;
        };
        if purpose.as_str() != "newsletter" {
            return;
        }
        match event.kind {
            AuditKind::ConsentGiven => {
                self.suppressed.remove(&customer);
                self.subscribed.insert(customer);
            }
            AuditKind::ConsentWithdrawn | AuditKind::Objected => {
                self.subscribed.remove(&customer);
                self.suppressed.insert(customer);
            }
            _ => {}
        }
    }
}

/// Stands for the mail server: nothing is printed, the value is dropped (and wiped) at once.
fn send(email: &str) {
    std::hint::black_box(email);
}

/// A directory of its own under the system's temporary directory, emptied at each run.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("egard-campaign-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn step(title: &str) {
    println!("\n{title}");
}

fn say(line: &str) {
    println!("   {line}");
}
