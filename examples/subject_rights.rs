//! A customer exercises her rights under the GDPR, one call each: access and portability
//! (Art. 15, 20), rectification (Art. 16), restriction (Art. 18), objection (Art. 21), erasure
//! (Art. 17), and the storage limitation the business owes her anyway (Art. 5(1)(e)).
//!
//! ```text
//! cargo run --example subject_rights
//! ```

use chrono::{Duration, TimeZone, Utc};
use egard::{AccessDenied, Error, Evidence, LawfulBasis, ManualClock, MasterKey, MemoryStore, Purpose, Sealed, Vault};

fn main() -> Result<(), Error> {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap());
    let vault = Vault::builder()
        .master_key(MasterKey::generate()?)
        .store(MemoryStore::new())
        .clock(clock.clone())
        .build()?;
    vault.define_purpose(
        Purpose::new("shipping", LawfulBasis::Contract)
            .description("Delivering orders")
            .fields(["first_name", "address"])
            .retention(Duration::days(30)),
    )?;
    vault.define_purpose(
        Purpose::new("offers", LawfulBasis::LegitimateInterests)
            .description("Offers for similar products to existing customers")
            .fields(["email", "first_name"])
            .direct_marketing(),
    )?;

    let alice = vault.create_customer()?;
    vault.set_field(alice, "first_name", "Alice")?;
    vault.set_field(alice, "address", "1 Rue de la Paix, Paris")?;
    vault.set_field(alice, "email", "alice@example.com")?;
    vault.give_consent(alice, "shipping", Evidence::new("contract").source("order-1042"))?;
    vault.give_consent(
        alice,
        "offers",
        Evidence::new("legitimate-interest-assessment").source("lia-2026-01"),
    )?;
    step(&format!(
        "Alice ({alice}) is a customer: three fields, a contract, a legitimate interest"
    ));

    step("1. Right of access and portability: everything, in clear, as JSON, for her");
    // How her identity was checked, recorded in the export's audit event (a slug, no value).
    let export = vault.export_customer(alice, Evidence::new("verified-email-link"))?;
    // The JSON in a buffer wiped when dropped: hand it to her and let it go.
    let json = export.to_json()?;
    say(&format!(
        "{} fields, {} consent records, {} purposes, {} audit events; {} bytes of JSON",
        export.fields.len(),
        export.consents.len(),
        export.purposes.len(),
        export.audit_events.len(),
        json.len()
    ));
    say(&format!(
        "Debug of the export hides the values: {}; audited as: {} ({})",
        !format!("{export:?} {:?}", export.fields["address"]).contains("Paix"),
        export.audit_events.last().map_or("?", |e| e.kind.code()),
        export.audit_events.last().map_or("?", |e| e.detail.as_str()),
    ));

    step("2. Rectification: she moved; the old address is gone, not kept beside the new");
    vault.set_field(alice, "address", "2 Rue de Rivoli, Paris")?;
    let pass = vault.authorize(alice, "shipping")?;
    say(&format!(
        "address now: {}",
        vault.reveal::<String>(&pass, "address")?.expose()
    ));
    let kinds: Vec<_> = vault.audit_events(alice)?.iter().map(|e| e.kind.code()).collect();
    say(&format!("audited as: {}", kinds.iter().rev().nth(1).unwrap_or(&"?")));

    step("3. Restriction: she contests how we use her data; everything stops, nothing is deleted");
    vault.restrict(alice)?;
    denied(
        "reveal through the pass issued before",
        vault.reveal::<String>(&pass, "address"),
    );
    denied("authorize(shipping)", vault.authorize(alice, "shipping"));
    vault.lift_restriction(alice)?;
    let pass = vault.authorize(alice, "shipping")?;
    say(&format!(
        "lifted: a new pass reads {}",
        vault.reveal::<String>(&pass, "first_name")?.expose()
    ));

    step("4. Objection to direct marketing: absolute");
    vault.object(alice, "offers")?;
    denied("authorize(offers)", vault.authorize(alice, "offers"));
    denied(
        "record the legitimate interest again",
        vault.give_consent(alice, "offers", Evidence::new("legitimate-interest-assessment")),
    );

    step("5. Storage limitation: Bob's contract ends; 30 days later his shipping data goes");
    let bob = vault.create_customer()?;
    vault.set_field(bob, "first_name", "Bob")?;
    vault.set_field(bob, "address", "3 Quai d'Orsay, Paris")?;
    vault.give_consent(bob, "shipping", Evidence::new("contract").source("order-1043"))?;
    vault.give_consent(alice, "shipping", Evidence::new("contract").source("order-1044"))?;
    vault.withdraw_consent(bob, "shipping")?;
    let sweep = |label: &str| -> Result<(), Error> {
        let swept = vault.sweep_retention()?;
        let names: Vec<String> = swept
            .deleted
            .iter()
            .map(|(c, f)| format!("{f} of {}", who(*c, bob)))
            .collect();
        say(&format!("{label}, the sweep deletes: {}", names.join(", ")));
        Ok(())
    };
    clock.advance(Duration::days(29));
    sweep("after 29 days (Alice's email: no purpose needs it since her objection)")?;
    clock.advance(Duration::days(1));
    sweep("after 30 days")?;

    step("6. Erasure by crypto-shredding: her key is destroyed, every copy of her data is noise");
    let kept: Sealed<String> = vault.seal(alice, "email", &"alice@example.com".to_string())?;
    let receipt = vault.erase_customer(alice)?;
    say(&format!(
        "receipt for the DPO: fields {:?}, key versions {:?}, at {}",
        receipt.fields.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
        receipt.key_versions,
        receipt.erased_at
    ));
    match vault.authorize(alice, "shipping") {
        Err(Error::Erased(_)) => say("authorize: erased, for good"),
        other => unexpected(other),
    }
    say(&format!(
        "a sealed copy kept elsewhere ({} bytes) can never be opened again",
        kept.envelope().len()
    ));

    step("7. The audit trail stays, with no personal data in it, and still verifies");
    let report = vault.verify_audit()?;
    say(&format!(
        "{} events verified; head MAC {}",
        report.events_verified,
        &report.head_mac[..16]
    ));
    Ok(())
}

fn who(customer: egard::CustomerId, bob: egard::CustomerId) -> &'static str {
    if customer == bob { "Bob" } else { "Alice" }
}

fn step(title: &str) {
    println!("\n{title}");
}

fn say(line: &str) {
    println!("   {line}");
}

fn denied<T>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Denied(reason)) => say(&format!("{what}: denied, {reason} ({})", code(reason))),
        other => unexpected(other),
    }
}

fn code(reason: AccessDenied) -> &'static str {
    reason.code()
}

fn unexpected<T>(result: Result<T, Error>) {
    match result {
        Ok(_) => eprintln!("unexpected success"),
        Err(e) => eprintln!("unexpected error: {e}"),
    }
    std::process::exit(1);
}
