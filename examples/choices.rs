//! What each customer wants, on a SQLite file: the newsletter declares topics and a frequency,
//! customers choose when they subscribe, one changes their mind, one browser sends the Global
//! Privacy Control signal, and a month of sends gives each customer only the topics they chose,
//! as often as they chose. Counts only are printed: no personal data.
//!
//! ```text
//! cargo run --example choices
//! ```

use std::collections::BTreeMap;

use chrono::Duration;
use egard::{
    AccessDenied, Choices, CustomerId, Durability, Error, Evidence, LawfulBasis, MasterKey, Purpose, SqliteOptions,
    SqliteStore, Vault,
};

const CUSTOMERS: usize = 300;
const TOPICS: [&str; 3] = ["rides", "food", "offers"];
const FREQUENCIES: [&str; 2] = ["weekly", "monthly"];

fn main() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("egard-choices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|_| Error::Invalid("cannot create the demo directory"))?;
    let vault = Vault::builder()
        // A demo key; in production, `MasterKey::from_env` or a key provider.
        .master_key(MasterKey::from_bytes([42u8; 32]))
        .store(SqliteStore::open_with(
            dir.join("choices.db"),
            SqliteOptions::new().durability(Durability::ProcessCrash),
        )?)
        .build()?;

    step("The newsletter declares what a subscriber chooses: topics (any) and a frequency (one)");
    vault.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description("Our newsletter, on the topics you pick, as often as you like")
            .fields(["email"])
            .consent_lifetime(Duration::days(395))
            .direct_marketing()
            .choice("topics", TOPICS)
            .single_choice("frequency", FREQUENCIES),
    )?;

    let mut customers = Vec::with_capacity(CUSTOMERS);
    for i in 0..CUSTOMERS {
        let c = vault.create_customer()?;
        vault.set_field(c, "email", &format!("subscriber.{i:04}@example.org"))?;
        // Each picks one to three topics and a frequency (a fixed pattern, for the demo).
        let topics: Vec<&str> = TOPICS
            .iter()
            .enumerate()
            .filter(|(t, _)| (i >> t) & 1 == 1 || (i % 7 == *t))
            .map(|(_, t)| *t)
            .collect();
        let choices = Choices::new()
            .select("topics", &topics)
            .select("frequency", [FREQUENCIES[i % 2]]);
        vault.give_consent_with(c, "newsletter", Evidence::new("signup-form").source("web"), &choices)?;
        customers.push(c);
    }
    say(&format!(
        "{CUSTOMERS} subscribers, each with their own topics and frequency"
    ));

    step("A choice outside the declaration is refused, and nothing is written");
    let refused = vault.give_consent_with(
        customers[0],
        "newsletter",
        Evidence::new("signup-form"),
        &Choices::new().select("frequency", ["daily"]),
    );
    say(&format!(
        "{}",
        refused.err().ok_or(Error::Invalid("a daily newsletter was accepted"))?
    ));

    step("One subscriber changes their mind in the preference center: a new record in the history");
    let changer = customers[1];
    vault.change_choices(
        changer,
        "newsletter",
        &Choices::new()
            .select("topics", ["offers"])
            .select("frequency", ["weekly"]),
        Evidence::new("preference-center").explicit(),
    )?;
    say(&format!(
        "their history now holds {} newsletter records (the first superseded, kept)",
        vault.consents(changer)?.len()
    ));

    step("Another one's browser sends `Sec-GPC: 1`: the vault honours it");
    let gpc = customers[2];
    let outcome = vault.honor_gpc(gpc, Evidence::new("sec-gpc-header").source("web").gpc())?;
    say(&format!("withdrawn: {:?}", outcome.withdrawn));
    let again = vault.honor_gpc(gpc, Evidence::new("sec-gpc-header").source("web").gpc())?;
    say(&format!(
        "the same signal on the next request changes nothing: {}",
        again.changed()
    ));

    step(
        "A month of sends: four weekly issues (the monthly one goes with the fourth); each topic only to who chose it",
    );
    let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
    let mut emails = 0;
    let mut skipped_frequency = 0;
    let mut refused = 0;
    for week in 1..=4 {
        let monthly = week == 4;
        for customer in vault.audience("newsletter")? {
            let customer: CustomerId = customer?;
            let pass = match vault.authorize(customer, "newsletter") {
                Ok(pass) => pass,
                Err(Error::Denied(AccessDenied::Withdrawn)) => {
                    refused += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let choices = vault.choices(&pass)?;
            let choices = choices.expose();
            let wants_this_issue = match choices.get("frequency") {
                Some([f]) if f == "weekly" => true,
                Some([f]) if f == "monthly" => monthly,
                // No frequency chosen: the monthly issue only.
                _ => monthly,
            };
            if !wants_this_issue {
                skipped_frequency += 1;
                continue;
            }
            let topics: Vec<&str> = TOPICS
                .iter()
                .copied()
                .filter(|t| choices.is_selected("topics", t))
                .collect();
            if topics.is_empty() {
                continue;
            }
            let email = vault.reveal::<String>(&pass, "email")?;
            send(email.expose(), &topics);
            emails += 1;
            for t in topics {
                *per_topic.entry(t).or_default() += 1;
            }
        }
    }
    say(&format!("{emails} emails sent over the month; by topic: {per_topic:?}"));
    say(&format!(
        "{skipped_frequency} weekly slots skipped for monthly subscribers; {refused} refusals at authorize"
    ));
    assert!(emails > 0 && skipped_frequency > 0);
    assert!(
        vault.audience("newsletter")?.all(|c| c.map_or(true, |c| c != gpc)),
        "the GPC customer is out of the audience"
    );

    vault.verify_audit()?;
    step("The audit log verifies; choices are sealed under each customer's key, never in clear.");
    drop(vault);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Stands for the mail server: nothing is printed, the values are dropped at once.
fn send(email: &str, topics: &[&str]) {
    std::hint::black_box((email, topics));
}

fn step(title: &str) {
    println!("\n{title}");
}

fn say(line: &str) {
    println!("   {line}");
}
