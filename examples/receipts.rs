//! A signed consent receipt: the customer's own copy of what she agreed to, which anyone can
//! check with the business's public key. Issues one, prints it, verifies it, then shows a
//! copy edited to hide the withdrawal failing to verify.
//!
//! ```text
//! cargo run --example receipts
//! ```

use chrono::{Duration, TimeZone, Utc};
use egard::{
    ConsentReceipt, Controller, Error, Evidence, LawfulBasis, ManualClock, MasterKey, MemoryStore, Purpose,
    ReceiptSigner, Vault,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap());
    let vault = Vault::builder()
        .master_key(MasterKey::generate()?)
        .store(MemoryStore::new())
        .clock(clock.clone())
        // Who the business is: printed in every receipt (no customer data here).
        .controller(
            Controller::new("Acme Books SAS")
                .jurisdiction("EU")
                .policy_url("https://books.example/privacy/v2")
                .contact("Data Protection Officer")
                .address("1 rue de la Paix, 75002 Paris", "FR")
                .email("dpo@books.example")
                .url("https://books.example")
                .service("Acme Books online shop")
                .withdrawal_method("https://books.example/account/consents"),
        )
        .build()?;
    vault.define_purpose(
        Purpose::new("newsletter", LawfulBasis::Consent)
            .description("Our monthly newsletter")
            .fields(["email", "first_name"])
            .notice_version(2)
            .consent_lifetime(Duration::days(395)),
    )?;

    let alice = vault.create_customer()?;
    vault.set_field(alice, "email", "alice@example.com")?;
    let consent = vault.give_consent(
        alice,
        "newsletter",
        Evidence::new("web-form")
            .source("signup-page-v3")
            .notice_text("One newsletter a month; unsubscribe at any time."),
    )?;

    // The signing key is the business's own, separate from the master key. In production:
    // ReceiptSigner::generate_pkcs8() once, kept in a secret store, and from_pkcs8 at start-up.
    let signer = ReceiptSigner::generate()?;
    let public_key = signer.public_key().to_vec(); // publish it (or its base64url form)

    // A month later Alice withdraws, and asks for her receipt.
    clock.advance(Duration::days(30));
    vault.withdraw_consent(alice, "newsletter")?;
    let receipt = vault.consent_receipt(consent, &signer)?;
    let json = serde_json::to_string_pretty(&receipt)?;
    assert!(
        !json.contains("alice@example.com"),
        "a receipt names the customer by id only"
    );
    println!("{json}");

    // Alice, or anyone she shows it to, checks it with the published key.
    let kept: ConsentReceipt = serde_json::from_str(&json)?;
    kept.verify(&public_key)?;
    println!(
        "\nverified: consent {} is {:?}",
        kept.consent_id(),
        kept.consent_state()
    );

    // A copy edited to say the consent still stands does not verify.
    let mut doc: serde_json::Value = serde_json::from_str(&json)?;
    let purpose = &mut doc["services"][0]["purposes"][0];
    purpose["consentState"] = "given".into();
    if let Some(members) = purpose.as_object_mut() {
        members.remove("withdrawnAt");
    }
    let tampered: ConsentReceipt = serde_json::from_value(doc)?;
    match tampered.verify(&public_key) {
        Err(Error::Receipt(reason)) => println!("tampered copy refused: {reason}"),
        Err(other) => return Err(other.into()),
        Ok(()) => return Err("a tampered receipt verified".into()),
    }

    // Issuing the receipt is in the audit log like everything else.
    let last = vault.audit_events(alice)?.pop().ok_or("no audit event")?;
    println!("audited: {:?} {}", last.kind, last.detail);
    vault.verify_audit()?;
    Ok(())
}
