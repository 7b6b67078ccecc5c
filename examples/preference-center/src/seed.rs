//! The demo business: four purposes, two customers, an email lookup, and a mailer that has
//! already sent Alice a newsletter.

use chrono::Duration;
use egard::{ActingVault, Choices, CustomerId, Error, Evidence, LawfulBasis, Lookup, Normalizer, Purpose, Vault};

/// The demo customers: email and first name. Sign in with one of these addresses.
pub const DEMO_CUSTOMERS: [(&str, &str); 2] = [("alice@example.com", "Alice"), ("bob@example.com", "Bob")];

/// The purposes of the demo business. Each description is the privacy-notice text the customer
/// is shown; its SHA-256 is recorded as the evidence of each consent given on the page.
fn purposes() -> Vec<Purpose> {
    vec![
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description(
                "Once a week or once a month, an email with news about our rides and our food, and \
                 offers if you want them. We use your email address and your first name, and \
                 nothing else. Unsubscribe at any time, here or from any newsletter.",
            )
            .fields(["email", "first_name"])
            .notice_version(2)
            .consent_lifetime(Duration::days(395))
            .choice("topics", ["rides", "food", "offers"])
            .single_choice("frequency", ["weekly", "monthly"])
            .direct_marketing(),
        Purpose::new("partner_offers", LawfulBasis::Consent)
            .description(
                "We share your email address with our partners (a bike-repair chain and a grocery \
                 box), who send you their own offers. This is sharing your data with another \
                 company: under California law, a sale or share.",
            )
            .fields(["email"])
            .notice_version(1)
            .consent_lifetime(Duration::days(365))
            .sells_or_shares(),
        Purpose::new("order_history", LawfulBasis::Contract)
            .description(
                "To deliver what you order, send the invoice and handle returns, we keep your name, \
                 email and postal address for as long as you have an account.",
            )
            .fields(["email", "first_name", "postal_address"]),
        Purpose::new("analytics", LawfulBasis::LegitimateInterests)
            .description(
                "We count which pages of our app you open, to see which features are used and fix \
                 the ones that are not. You may object at any time.",
            )
            .fields(["pages_viewed"]),
    ]
}

/// Defines the demo purposes and the email lookup, and creates the demo customers, unless the
/// vault already has purposes (the server was started before on this database). Returns
/// whether it seeded.
pub fn seed_demo(vault: &Vault) -> Result<bool, Error> {
    if !vault.purposes().is_empty() {
        return Ok(false);
    }
    for purpose in purposes() {
        vault.define_purpose(purpose)?;
    }
    vault.define_lookup(Lookup::new("email", Normalizer::Email))?;

    // The shop (its sign-up and checkout) records the customers; the mailer sends Alice a
    // newsletter. Each is named in the audit log, so the customer sees who did what.
    let shop = vault.acting_as("service:shop")?;
    let [(alice_email, alice_name), (bob_email, bob_name)] = DEMO_CUSTOMERS;
    let alice = shop.create_customer()?;
    shop.set_field(alice, "email", alice_email)?;
    shop.set_field(alice, "first_name", alice_name)?;
    shop.set_field(alice, "postal_address", "12 Rue des Lilas, 75011 Paris")?;
    shop.set_field(alice, "pages_viewed", &42u32)?;
    give(
        vault,
        &shop,
        alice,
        "order_history",
        Evidence::new("checkout").source("order-1042"),
    )?;
    let newsletter = vault.purpose("newsletter")?;
    shop.give_consent_with(
        alice,
        "newsletter",
        Evidence::new("signup-form")
            .source("signup-v3")
            .notice_text(newsletter.description_text()),
        &Choices::new()
            .select("topics", ["rides", "food"])
            .select("frequency", ["monthly"]),
    )?;
    give(
        vault,
        &shop,
        alice,
        "partner_offers",
        Evidence::new("signup-form").source("signup-v3"),
    )?;
    give(
        vault,
        &shop,
        alice,
        "analytics",
        Evidence::new("app-install").source("balancing-test-7"),
    )?;
    simulate_mailer(vault, alice)?;

    let bob = shop.create_customer()?;
    shop.set_field(bob, "email", bob_email)?;
    shop.set_field(bob, "first_name", bob_name)?;
    shop.set_field(bob, "postal_address", "3 Baker Street, London")?;
    give(
        vault,
        &shop,
        bob,
        "order_history",
        Evidence::new("checkout").source("order-1043"),
    )?;
    give(
        vault,
        &shop,
        bob,
        "newsletter",
        Evidence::new("signup-form").source("signup-v3"),
    )?;
    Ok(true)
}

/// Gives a record of `purpose` with the purpose's notice text as evidence.
fn give(
    vault: &Vault,
    shop: &ActingVault<'_>,
    customer: CustomerId,
    purpose: &str,
    evidence: Evidence,
) -> Result<(), Error> {
    let notice = vault.purpose(purpose)?;
    shop.give_consent(customer, purpose, evidence.notice_text(notice.description_text()))?;
    Ok(())
}

/// `service:mailer` sending `customer` the newsletter: it opens their email and first name
/// through the gate (one audited access, in its name), and nothing else.
pub fn simulate_mailer(vault: &Vault, customer: CustomerId) -> Result<(), Error> {
    let mailer = vault.acting_as("service:mailer")?;
    let pass = mailer.authorize(customer, "newsletter")?;
    let email = mailer.reveal::<String>(&pass, "email")?;
    let first_name = mailer.reveal::<String>(&pass, "first_name")?;
    // A real mailer would send here; the demo only proves it could.
    let _ = (email.expose().len(), first_name.expose().len());
    Ok(())
}
