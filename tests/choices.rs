//! Declared choices: validation writes nothing, changes are new records of the history, the
//! choices are sealed (never in clear in the store, a forged blob is the opaque crypto error,
//! erasure shreds them), exported, shown on receipts by name only, and read only through a
//! pass — on MemoryStore, a SQLite file and PostgreSQL (with `EGARD_POSTGRES_URL`).

mod common;

use std::sync::Arc;

use chrono::Duration;
use egard::{
    AccessDenied, AuditKind, ChoiceProblem, Choices, ConsentState, Controller, CustomerId, Error, Evidence,
    LawfulBasis, ManualClock, MasterKey, Purpose, ReceiptSigner, Store, Vault,
};

/// Opens the backend under test: each call a new handle on the same database.
type Open<'a> = &'a dyn Fn() -> Arc<dyn Store>;

fn vault(open: Open<'_>) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(common::KEY))
        .store(open())
        .clock(ManualClock::new(common::t0()))
        .controller(
            Controller::new("Acme SAS")
                .jurisdiction("EU")
                .policy_url("https://acme.example/privacy"),
        )
        .build()
        .unwrap()
}

fn newsletter() -> Purpose {
    Purpose::new("newsletter", LawfulBasis::Consent)
        .fields(["email"])
        .consent_lifetime(Duration::days(365))
        .choice("topics", ["rides", "food", "offers"])
        .single_choice("frequency", ["weekly", "monthly"])
}

fn defined(open: Open<'_>) -> Vault {
    let v = vault(open);
    v.define_purpose(newsletter()).unwrap();
    v
}

fn picks() -> Choices {
    Choices::new()
        .select("topics", ["rides", "food"])
        .select("frequency", ["monthly"])
}

/// How many audit events the whole log holds.
fn events(v: &Vault) -> u64 {
    v.verify_audit().unwrap().events_verified
}

#[track_caller]
fn invalid<T: std::fmt::Debug>(r: Result<T, Error>) -> (String, ChoiceProblem) {
    match r {
        Err(Error::InvalidChoice { choice, reason }) => (choice, reason),
        other => panic!("expected Error::InvalidChoice, got {other:?}"),
    }
}

fn validation_errors_write_nothing(open: Open<'_>) {
    let v = defined(open);
    let alice = v.create_customer().unwrap();
    let before = events(&v);
    let give = |c: Choices| v.give_consent_with(alice, "newsletter", Evidence::new("web-form"), &c);
    assert_eq!(
        invalid(give(Choices::new().select("colour", ["red"]))),
        ("(undeclared)".to_owned(), ChoiceProblem::UnknownChoice)
    );
    assert_eq!(
        invalid(give(Choices::new().select("topics", ["rides", "cars"]))),
        ("topics".to_owned(), ChoiceProblem::UndeclaredOption)
    );
    assert_eq!(
        invalid(give(Choices::new().select("frequency", ["weekly", "monthly"]))),
        ("frequency".to_owned(), ChoiceProblem::MoreThanOne)
    );
    assert_eq!(
        invalid(give(Choices::new().select("frequency", [] as [&str; 0]))),
        ("frequency".to_owned(), ChoiceProblem::NoneSelected)
    );
    // A bad declaration is refused too.
    for bad in [
        newsletter().choice("topics", ["x"]),
        Purpose::new("other", LawfulBasis::Consent)
            .fields(["email"])
            .choice("a", ["x", "x"]),
        Purpose::new("other", LawfulBasis::Consent)
            .fields(["email"])
            .choice("a", [] as [&str; 0]),
    ] {
        assert!(matches!(v.define_purpose(bad), Err(Error::InvalidChoice { .. })));
    }
    assert!(matches!(
        v.define_purpose(
            Purpose::new("other", LawfulBasis::Consent)
                .fields(["email"])
                .choice("Bad Name", ["x"])
        ),
        Err(Error::InvalidId { .. })
    ));
    assert_eq!(events(&v), before, "nothing was recorded");
    assert!(v.consents(alice).unwrap().is_empty(), "nothing was written");
    assert_eq!(v.purpose("newsletter").unwrap(), newsletter());
    // The valid ones go through.
    v.give_consent_with(alice, "newsletter", Evidence::new("web-form"), &picks())
        .unwrap();
    assert_eq!(v.consents(alice).unwrap().len(), 1);
}

fn changing_choices_adds_a_record_to_the_history(open: Open<'_>) {
    let v = defined(open);
    let alice = v.create_customer().unwrap();
    let first = v
        .give_consent_with(alice, "newsletter", Evidence::new("web-form"), &picks())
        .unwrap();
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert_eq!(v.choices(&pass).unwrap().expose(), &picks());
    let changed = Choices::new()
        .select("topics", ["offers"])
        .select("frequency", ["weekly"]);
    let second = v
        .change_choices(alice, "newsletter", &changed, Evidence::new("preference-center"))
        .unwrap();
    assert_ne!(first, second);
    let history = v.consents(alice).unwrap();
    assert_eq!(history.len(), 2, "both records are kept");
    let now = common::t0();
    assert_eq!(history[0].id, first);
    assert_eq!(history[0].superseded_by, Some(second));
    assert_eq!(history[0].state(now), ConsentState::Superseded);
    assert_eq!(history[1].id, second);
    assert_eq!(history[1].state(now), ConsentState::Given);
    assert_eq!(history[1].notice_version, history[0].notice_version);
    assert_eq!(history[1].expires_at, Some(history[1].given_at + Duration::days(365)));
    assert!(history.iter().all(|c| c.has_choices()));
    // A pass issued before the change reads the current choices.
    assert_eq!(v.choices(&pass).unwrap().expose(), &changed);
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert!(v.choices(&pass).unwrap().expose().is_selected("topics", "offers"));
    let log = v.audit_events(alice).unwrap();
    let last = log.iter().rev().find(|e| e.kind == AuditKind::ConsentGiven).unwrap();
    assert_eq!(last.detail, format!("{second} choices_changed"));

    // Invalid choices, unknown customer or purpose, no valid consent: typed errors, nothing
    // written.
    let before = events(&v);
    invalid(v.change_choices(
        alice,
        "newsletter",
        &Choices::new().select("frequency", ["daily"]),
        Evidence::new("preference-center"),
    ));
    assert!(matches!(
        v.change_choices(CustomerId::new(), "newsletter", &changed, Evidence::new("x")),
        Err(Error::UnknownCustomer(_))
    ));
    assert!(matches!(
        v.change_choices(alice, "nope", &changed, Evidence::new("x")),
        Err(Error::UnknownPurpose(_))
    ));
    let bob = v.create_customer().unwrap();
    let before_bob = events(&v);
    assert_eq!(
        common::denied(v.change_choices(bob, "newsletter", &changed, Evidence::new("x"))),
        AccessDenied::NoConsent
    );
    assert_eq!(events(&v), before_bob);
    assert_eq!(before + 1, before_bob, "only bob's creation was recorded");
    v.withdraw_consent(alice, "newsletter").unwrap();
    let before = events(&v);
    assert_eq!(
        common::denied(v.change_choices(alice, "newsletter", &changed, Evidence::new("x"))),
        AccessDenied::Withdrawn
    );
    assert_eq!(events(&v), before);
    assert_eq!(v.consents(alice).unwrap().len(), 2);
}

fn choices_open_only_through_a_valid_pass(open: Open<'_>) {
    let v = defined(open);
    let alice = v.create_customer().unwrap();
    v.give_consent_with(alice, "newsletter", Evidence::new("web-form"), &picks())
        .unwrap();
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert_eq!(v.choices(&pass).unwrap().expose(), &picks());
    v.restrict(alice).unwrap();
    assert_eq!(common::denied(v.choices(&pass)), AccessDenied::Restricted);
    v.lift_restriction(alice).unwrap();
    let pass = v.authorize(alice, "newsletter").unwrap();
    v.withdraw_consent(alice, "newsletter").unwrap();
    assert_eq!(common::denied(v.choices(&pass)), AccessDenied::Withdrawn);
    // A consent given without choices has none.
    v.give_consent(alice, "newsletter", Evidence::new("web-form")).unwrap();
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert!(v.choices(&pass).unwrap().expose().is_empty());
    assert!(!v.consents(alice).unwrap().last().unwrap().has_choices());
}

fn choices_are_exported_and_receipts_name_them_only(open: Open<'_>) {
    let v = defined(open);
    let alice = v.create_customer().unwrap();
    let id = v
        .give_consent_with(alice, "newsletter", Evidence::new("web-form"), &picks())
        .unwrap();
    let export = v.export_customer(alice, Evidence::new("verified-email-link")).unwrap();
    assert_eq!(export.choices.len(), 1);
    assert_eq!(export.choices[&id], picks());
    let json = serde_json::to_value(&export).unwrap();
    assert_eq!(
        json["choices"][id.to_string()],
        serde_json::json!({"frequency": ["monthly"], "topics": ["food", "rides"]})
    );
    assert!(!format!("{export:?}").contains("rides"));

    let receipt = v.consent_receipt(id, &ReceiptSigner::generate().unwrap()).unwrap();
    assert_eq!(receipt.choice_categories(), ["topics", "frequency"]);
    let text = serde_json::to_string(&receipt).unwrap();
    assert!(
        text.contains("\"choiceCategories\":[\"topics\",\"frequency\"]"),
        "{text}"
    );
    for selected in ["rides", "food", "monthly"] {
        assert!(!text.contains(selected), "the receipt shows a selection: {text}");
    }
    // A record without choices has no such member.
    let plain = v.give_consent(alice, "newsletter", Evidence::new("web-form")).unwrap();
    let receipt = v.consent_receipt(plain, &ReceiptSigner::generate().unwrap()).unwrap();
    assert!(receipt.choice_categories().is_empty());
    assert!(!serde_json::to_string(&receipt).unwrap().contains("choiceCategories"));
}

fn choices_survive_a_reopen_and_a_key_rotation(open: Open<'_>) {
    let alice = {
        let v = defined(open);
        let alice = v.create_customer().unwrap();
        v.give_consent_with(alice, "newsletter", Evidence::new("web-form"), &picks())
            .unwrap();
        alice
    };
    let v = vault(open);
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert_eq!(v.choices(&pass).unwrap().expose(), &picks());
    let before = v.consents(alice).unwrap()[0].sealed_choices.clone().unwrap();
    v.rotate_customer_key(alice).unwrap();
    let after = v.consents(alice).unwrap()[0].sealed_choices.clone().unwrap();
    assert_ne!(before, after, "sealed again under the new key");
    assert_eq!(v.choices(&pass).unwrap().expose(), &picks());
    drop(pass);
    drop(v);
    let v = vault(open);
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert_eq!(v.choices(&pass).unwrap().expose(), &picks());
}

fn erasure_shreds_the_choices(open: Open<'_>) {
    let v = defined(open);
    let alice = v.create_customer().unwrap();
    v.give_consent_with(alice, "newsletter", Evidence::new("web-form"), &picks())
        .unwrap();
    let pass = v.authorize(alice, "newsletter").unwrap();
    v.erase_customer(alice).unwrap();
    assert!(matches!(v.choices(&pass), Err(Error::Erased(_))));
    assert!(matches!(v.authorize(alice, "newsletter"), Err(Error::Erased(_))));
    let store = open();
    let snapshot = store.customer(alice).unwrap().unwrap();
    assert!(snapshot.keys.is_empty(), "no key is left to open them");
    assert!(
        snapshot.consents.iter().all(|c| c.record.sealed_choices.is_some()),
        "the record keeps only ciphertext, now noise"
    );
    assert!(matches!(
        v.change_choices(alice, "newsletter", &picks(), Evidence::new("x")),
        Err(Error::Erased(_))
    ));
}

on_every_backend_reopening!(
    validation_errors_write_nothing,
    changing_choices_adds_a_record_to_the_history,
    choices_open_only_through_a_valid_pass,
    choices_are_exported_and_receipts_name_them_only,
    choices_survive_a_reopen_and_a_key_rotation,
    erasure_shreds_the_choices,
);

/// No byte of the SQLite file holds a selection in clear: once the (clear, host-declared)
/// purpose definitions are removed, not even the option names are left.
#[cfg(feature = "sqlite")]
#[test]
fn selections_never_reach_a_sqlite_file_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("choices.db");
    let options = [
        "opt-canary-7f3a-rides",
        "opt-canary-7f3a-food",
        "opt-canary-7f3a-weekly",
    ];
    {
        let v = vault(&|| Arc::new(egard::SqliteStore::open(&path).unwrap()) as Arc<dyn Store>);
        v.define_purpose(
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .choice("topics", &options[..2])
                .single_choice("frequency", &options[2..]),
        )
        .unwrap();
        let alice = v.create_customer().unwrap();
        let c = Choices::new()
            .select("topics", &options[..2])
            .select("frequency", &options[2..]);
        v.give_consent_with(alice, "newsletter", Evidence::new("web-form"), &c)
            .unwrap();
        v.change_choices(
            alice,
            "newsletter",
            &Choices::new().select("topics", &options[1..2]),
            Evidence::new("web-form"),
        )
        .unwrap();
        v.export_customer(alice, Evidence::new("verified-email-link")).unwrap();
    }
    let scan = || {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        bytes
    };
    let contains = |bytes: &[u8], s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    let bytes = scan();
    assert!(
        contains(&bytes, options[0]),
        "the declaration is in clear (it is the host's)"
    );
    for selection in ["\"topics\":", "\"frequency\":"] {
        assert!(!contains(&bytes, selection), "a selection is in the file in clear");
    }
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch("DELETE FROM purposes; VACUUM;").unwrap();
    }
    let bytes = scan();
    for o in options {
        assert!(!contains(&bytes, o), "an option selected is in the file in clear");
    }
}

/// Whoever can write to the database but holds no master key cannot make the vault read
/// other choices: a blob moved from another record, an older blob of the same record, or no
/// blob at all all fail with the one opaque error.
#[cfg(feature = "sqlite")]
#[test]
fn a_forged_choices_blob_is_the_opaque_crypto_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forged.db");
    let open = || Arc::new(egard::SqliteStore::open(&path).unwrap()) as Arc<dyn Store>;
    let (alice, bob, alice_first, alice_second, bob_id) = {
        let v = defined(&open);
        let alice = v.create_customer().unwrap();
        let bob = v.create_customer().unwrap();
        let alice_first = v
            .give_consent_with(alice, "newsletter", Evidence::new("web-form"), &picks())
            .unwrap();
        let alice_second = v
            .change_choices(
                alice,
                "newsletter",
                &Choices::new().select("frequency", ["weekly"]),
                Evidence::new("web-form"),
            )
            .unwrap();
        let bob_id = v
            .give_consent_with(
                bob,
                "newsletter",
                Evidence::new("web-form"),
                &Choices::new().select("topics", ["offers"]),
            )
            .unwrap();
        (alice, bob, alice_first, alice_second, bob_id)
    };
    let blob = |id: egard::ConsentId| -> Vec<u8> {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.query_row(
            "SELECT choices FROM consents WHERE id = ?1",
            [id.as_uuid().as_bytes().as_slice()],
            |r| r.get(0),
        )
        .unwrap()
    };
    let set = |id: egard::ConsentId, value: Option<Vec<u8>>| {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute(
            "UPDATE consents SET choices = ?1 WHERE id = ?2",
            rusqlite::params![value, id.as_uuid().as_bytes().as_slice()],
        )
        .unwrap();
    };
    let original = blob(alice_second);
    let check = |what: &str| {
        let v = vault(&open);
        for result in [
            v.consents(alice).map(|_| ()),
            v.authorize(alice, "newsletter").map(|_| ()),
            v.export_customer(alice, Evidence::new("check")).map(|_| ()),
        ] {
            assert!(matches!(result, Err(Error::Crypto)), "{what}: {result:?}");
        }
        // The other customer is left alone.
        let pass = v.authorize(bob, "newsletter").unwrap();
        assert!(v.choices(&pass).unwrap().expose().is_selected("topics", "offers"));
    };
    for (what, forged) in [
        ("another customer's blob", Some(blob(bob_id))),
        ("an older blob of the same customer", Some(blob(alice_first))),
        ("no blob", None),
        ("a flipped byte", {
            let mut b = original.clone();
            let last = b.len() - 1;
            b[last] ^= 1;
            Some(b)
        }),
    ] {
        set(alice_second, forged);
        check(what);
    }
    set(alice_second, Some(original));
    let v = vault(&open);
    let pass = v.authorize(alice, "newsletter").unwrap();
    assert_eq!(v.choices(&pass).unwrap().expose().get("frequency").unwrap(), ["weekly"]);
}
