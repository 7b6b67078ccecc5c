//! Lookups (blind indexes): normalisation, one value per live customer, rectification and
//! erasure moving and freeing entries, indexing of values stored before the lookup, reopening,
//! the audit trail, and a store that alters the index — on MemoryStore, a SQLite file and
//! PostgreSQL (with `EGARD_POSTGRES_URL`).

mod common;

use std::sync::Arc;

use chrono::Duration;
use egard::store::{StoredLookup, Write};
use egard::{
    AuditKind, CustomerId, Error, FieldName, LawfulBasis, Lookup, ManualClock, MasterKey, MemoryStore, Normalizer,
    Purpose, Store, Vault,
};

/// Opens the backend under test: each call a new handle on the same database.
type Open<'a> = &'a dyn Fn() -> Arc<dyn Store>;

fn vault(open: Open<'_>) -> Vault {
    Vault::builder()
        .master_key(MasterKey::from_bytes(common::KEY))
        .store(open())
        .clock(ManualClock::new(common::t0()))
        .build()
        .unwrap()
}

fn with_purposes(vault: &Vault) {
    vault
        .define_purpose(
            Purpose::new("account", LawfulBasis::Contract)
                .fields(["email", "phone", "member_code", "age"])
                .consent_lifetime(Duration::days(365)),
        )
        .unwrap();
}

fn email_vault(open: Open<'_>) -> Vault {
    let v = vault(open);
    with_purposes(&v);
    v.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    v
}

#[track_caller]
fn duplicate<T: std::fmt::Debug>(result: Result<T, Error>, field: &str) -> Error {
    match result {
        Err(e @ Error::Duplicate { .. }) => {
            assert!(matches!(&e, Error::Duplicate { field: f } if f.as_str() == field));
            e
        }
        other => panic!("expected Error::Duplicate, got {other:?}"),
    }
}

fn email_of(vault: &Vault, customer: CustomerId) -> Option<String> {
    vault
        .give_consent(customer, "account", egard::Evidence::new("contract"))
        .unwrap();
    let pass = vault.authorize(customer, "account").unwrap();
    match vault.reveal::<String>(&pass, "email") {
        Ok(v) => Some(v.expose().clone()),
        Err(Error::UnknownField(_)) => None,
        Err(e) => panic!("reveal failed: {e:?}"),
    }
}

// ----- the tests, each on every backend -----

fn normalisers_find_what_they_indexed(open: Open<'_>) {
    let v = vault(open);
    with_purposes(&v);
    v.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    v.define_lookup(Lookup::new("phone", Normalizer::Phone)).unwrap();
    v.define_lookup(Lookup::new("member_code", Normalizer::Exact)).unwrap();
    let alice = v.create_customer().unwrap();
    v.set_field(alice, "email", "Alice.Martin@Example.ORG").unwrap();
    v.set_field(alice, "phone", "+33 (6) 12-34-56-78").unwrap();
    v.set_field(alice, "member_code", "Ab-12").unwrap();

    assert_eq!(
        v.find_customer("email", " alice.martin@example.org ").unwrap(),
        Some(alice)
    );
    assert_eq!(
        v.find_customer("email", "ALICE.MARTIN@EXAMPLE.ORG").unwrap(),
        Some(alice)
    );
    assert_eq!(v.find_customer("email", "alice.martin@example.com").unwrap(), None);
    assert_eq!(v.find_customer("phone", "+33612345678").unwrap(), Some(alice));
    assert_eq!(v.find_customer("phone", "+33 6 12 34 56 78").unwrap(), Some(alice));
    assert_eq!(v.find_customer("phone", "33612345678").unwrap(), None, "the '+' counts");
    assert_eq!(v.find_customer("member_code", "Ab-12").unwrap(), Some(alice));
    assert_eq!(v.find_customer("member_code", "ab-12").unwrap(), None, "exact is exact");
    assert_eq!(v.find_customer("member_code", "Ab-12 ").unwrap(), None);
    // A value is found under its own field only.
    assert_eq!(
        v.find_customer("member_code", "alice.martin@example.org").unwrap(),
        None
    );

    let mut lookups: Vec<(String, Normalizer)> = v
        .lookups()
        .iter()
        .map(|l| (l.field().to_owned(), l.normalizer()))
        .collect();
    lookups.sort();
    assert_eq!(
        lookups,
        vec![
            ("email".into(), Normalizer::Email),
            ("member_code".into(), Normalizer::Exact),
            ("phone".into(), Normalizer::Phone),
        ]
    );
}

fn a_value_belongs_to_one_live_customer(open: Open<'_>) {
    let v = email_vault(open);
    let alice = v.create_customer().unwrap();
    let bob = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    v.set_field(bob, "phone", "+1 555 0100").unwrap();
    let events_before = common::whole_log(&*open()).len();

    let e = duplicate(v.set_field(bob, "email", " ALICE@example.org"), "email");
    let message = format!("{e} {e:?}");
    assert!(
        !message.contains(&alice.to_string()),
        "the other customer is never named: {message}"
    );
    assert!(!message.contains("alice@"), "nor the value: {message}");
    assert_eq!(email_of(&v, bob), None, "nothing was written for bob");
    assert_eq!(
        common::whole_log(&*open()).len(),
        events_before + 2,
        "no event of the refused write (only the consent and access of the check above)"
    );
    assert_eq!(v.find_customer("email", "alice@example.org").unwrap(), Some(alice));

    // Rewriting one's own value (or another spelling of it) is no duplicate.
    v.set_field(alice, "email", "Alice@Example.org").unwrap();
    assert_eq!(v.find_customer("email", "alice@example.org").unwrap(), Some(alice));
    assert_eq!(
        email_of(&v, alice).as_deref(),
        Some("Alice@Example.org"),
        "the value is kept as given"
    );
}

fn rectification_moves_the_entry_and_erasure_frees_it(open: Open<'_>) {
    let v = email_vault(open);
    let alice = v.create_customer().unwrap();
    let bob = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    v.set_field(alice, "email", "alice@new.example").unwrap();
    assert_eq!(
        v.find_customer("email", "alice@example.org").unwrap(),
        None,
        "the old value is gone"
    );
    assert_eq!(v.find_customer("email", "alice@new.example").unwrap(), Some(alice));
    v.set_field(bob, "email", "alice@example.org").unwrap();
    assert_eq!(
        v.find_customer("email", "alice@example.org").unwrap(),
        Some(bob),
        "the old value is free"
    );

    v.erase_customer(alice).unwrap();
    assert_eq!(
        v.find_customer("email", "alice@new.example").unwrap(),
        None,
        "erasure removes the entry"
    );
    let carol = v.create_customer().unwrap();
    v.set_field(carol, "email", "ALICE@new.example").unwrap();
    assert_eq!(
        v.find_customer("email", "alice@new.example").unwrap(),
        Some(carol),
        "and frees the value"
    );

    // A key rotation seals the value again and keeps its entry.
    v.rotate_customer_key(carol).unwrap();
    assert_eq!(v.find_customer("email", "alice@new.example").unwrap(), Some(carol));
}

fn defining_a_lookup_indexes_the_values_already_stored(open: Open<'_>) {
    let v = vault(open);
    with_purposes(&v);
    let a = v.create_customer().unwrap();
    let b = v.create_customer().unwrap();
    let c = v.create_customer().unwrap();
    let d = v.create_customer().unwrap();
    let gone = v.create_customer().unwrap();
    v.set_field(a, "email", "a@example.org").unwrap();
    v.set_field(b, "email", "B@example.org").unwrap();
    v.set_field(c, "email", "b@EXAMPLE.org").unwrap(); // the same as b's, once normalised
    v.set_field(gone, "email", "gone@example.org").unwrap();
    v.erase_customer(gone).unwrap();
    // d has no email.
    let _ = d;

    duplicate(v.define_lookup(Lookup::new("email", Normalizer::Email)), "email");
    assert_eq!(v.find_customer("email", "a@example.org").unwrap(), Some(a));
    let holder = v.find_customer("email", "b@example.org").unwrap();
    assert!(
        holder == Some(b) || holder == Some(c),
        "one of the two holds it: {holder:?}"
    );
    assert_eq!(v.find_customer("email", "gone@example.org").unwrap(), None);
    let indexed = common::whole_log(&*open())
        .iter()
        .filter(|e| e.kind == AuditKind::FieldIndexed)
        .count();
    assert_eq!(indexed, 2, "a, and one of b and c");

    // Again: nothing more to index, the same duplicate left out.
    duplicate(v.define_lookup(Lookup::new("email", Normalizer::Email)), "email");
    let after = common::whole_log(&*open());
    assert_eq!(after.iter().filter(|e| e.kind == AuditKind::FieldIndexed).count(), 2);
    assert_eq!(after.iter().filter(|e| e.kind == AuditKind::LookupDefined).count(), 1);

    // Once the other holder's value changes, defining again indexes the one left out.
    let other = if holder == Some(b) { c } else { b };
    let first = holder.unwrap();
    v.set_field(first, "email", "first@example.org").unwrap();
    v.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    assert_eq!(v.find_customer("email", "b@example.org").unwrap(), Some(other));

    assert!(matches!(
        v.define_lookup(Lookup::new("email", Normalizer::Exact)),
        Err(Error::Invalid(_))
    ));
}

fn bad_requests_are_clear_errors(open: Open<'_>) {
    let v = email_vault(open);
    let alice = v.create_customer().unwrap();
    assert!(matches!(v.find_customer("phone", "+1 555"), Err(Error::NoLookup(f)) if f.as_str() == "phone"));
    assert!(matches!(
        v.find_customer("Not A Field", "x"),
        Err(Error::InvalidId { .. })
    ));
    assert!(matches!(v.find_customer("email", "   "), Err(Error::Invalid(_))));
    assert!(matches!(v.set_field(alice, "email", &42), Err(Error::Invalid(_))));
    assert!(matches!(v.set_field(alice, "email", " "), Err(Error::Invalid(_))));
    assert_eq!(email_of(&v, alice), None, "nothing was written");
    assert!(matches!(
        v.define_lookup(Lookup::new("Bad Field", Normalizer::Email)),
        Err(Error::InvalidId { .. })
    ));
}

fn lookups_survive_a_reopen(open: Open<'_>) {
    let alice;
    {
        let v = email_vault(open);
        alice = v.create_customer().unwrap();
        v.set_field(alice, "email", "alice@example.org").unwrap();
    }
    let v = vault(open);
    assert_eq!(v.lookups().len(), 1);
    assert_eq!(v.find_customer("email", "Alice@Example.org").unwrap(), Some(alice));
    let bob = v.create_customer().unwrap();
    duplicate(v.set_field(bob, "email", "alice@example.org"), "email");
    v.verify_audit().unwrap();
}

fn a_vault_that_did_not_know_the_lookup_uses_it(open: Open<'_>) {
    // Two servers on one store: the second learns the lookup the first defined.
    let build = || {
        Vault::builder()
            .master_key(MasterKey::from_bytes(common::KEY))
            .store(open())
            .cache_ttl(Duration::seconds(1))
            .build()
            .unwrap()
    };
    let first = build();
    let second = build();
    with_purposes(&first);
    let alice = first.create_customer().unwrap();
    first.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    first.set_field(alice, "email", "alice@example.org").unwrap();
    assert_eq!(second.find_customer("email", "alice@example.org").unwrap(), Some(alice));
}

fn lookups_are_audited_without_the_value(open: Open<'_>) {
    let v = email_vault(open);
    let alice = v.create_customer().unwrap();
    v.set_field(alice, "email", common::CANARY).unwrap();
    v.find_customer("email", common::CANARY).unwrap();
    v.find_customer("email", "nobody@example.org").unwrap();
    v.flush_audit().unwrap();
    let log = common::whole_log(&*open());
    let looked: Vec<_> = log.iter().filter(|e| e.kind == AuditKind::LookedUp).collect();
    assert_eq!(looked.len(), 2);
    assert_eq!(looked[0].customer, Some(alice));
    assert_eq!(looked[0].detail, "found");
    assert_eq!(looked[1].customer, None);
    assert_eq!(looked[1].detail, "not_found");
    assert!(
        looked
            .iter()
            .all(|e| e.field.as_ref().map(FieldName::as_str) == Some("email"))
    );
    let defined: Vec<_> = log.iter().filter(|e| e.kind == AuditKind::LookupDefined).collect();
    assert_eq!(defined.len(), 1);
    assert_eq!(defined[0].detail, "email");
    let canary = common::CANARY.to_lowercase();
    for e in &log {
        let text = format!("{e:?}");
        assert!(!text.contains(common::CANARY) && !text.contains(&canary), "{text}");
    }
    v.verify_audit().unwrap();
}

fn an_altered_index_never_names_the_wrong_customer(open: Open<'_>) {
    let v = email_vault(open);
    let alice = v.create_customer().unwrap();
    let mallory = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    v.set_field(mallory, "email", "mallory@example.org").unwrap();
    let store = open();
    let email = FieldName::new("email").unwrap();
    let token_of = |c: CustomerId| {
        store
            .customer(c)
            .unwrap()
            .unwrap()
            .fields
            .into_iter()
            .find(|f| f.field == email)
            .and_then(|f| f.token)
            .unwrap()
    };
    let alice_token = token_of(alice);
    assert_ne!(alice_token, token_of(mallory));
    // Whoever can write to the database moves alice's entry to mallory.
    store
        .apply(&[
            Write::IndexField {
                customer: alice,
                field: email.clone(),
                token: None,
            },
            Write::IndexField {
                customer: mallory,
                field: email.clone(),
                token: Some(alice_token),
            },
        ])
        .unwrap();
    common::assert_crypto(v.find_customer("email", "alice@example.org"));
    // Dropped from the index: alice is not found (a denial, never a wrong answer).
    store
        .apply(&[Write::IndexField {
            customer: mallory,
            field: email.clone(),
            token: None,
        }])
        .unwrap();
    let found = v.find_customer("email", "alice@example.org").unwrap();
    assert_eq!(found, None);

    // A stored definition is never replaced through the store (a second one on a field is a
    // conflict); one forged by the store is refused everywhere (tests/attacks.rs edits a
    // stored one in the SQLite file).
    assert!(matches!(
        store.apply(&[Write::PutLookup(StoredLookup {
            field: email.clone(),
            normalizer: "exact".into(),
            mac: [0; 32],
        })]),
        Err(egard::StoreError::Conflict)
    ));
    store
        .apply(&[Write::PutLookup(StoredLookup {
            field: FieldName::new("phone").unwrap(),
            normalizer: "exact".into(),
            mac: [0; 32],
        })])
        .unwrap();
    drop(v);
    let v = vault(open);
    common::assert_crypto(v.find_customer("phone", "+33 6 12 34 56 78"));
    let bob = v.create_customer().unwrap();
    common::assert_crypto(v.set_field(bob, "phone", "+33 6 12 34 56 78"));
    common::assert_crypto(v.define_lookup(Lookup::new("phone", Normalizer::Phone)));
    v.set_field(bob, "email", "bob@example.org").unwrap();
}

on_every_backend_reopening!(
    normalisers_find_what_they_indexed,
    a_value_belongs_to_one_live_customer,
    rectification_moves_the_entry_and_erasure_frees_it,
    defining_a_lookup_indexes_the_values_already_stored,
    bad_requests_are_clear_errors,
    lookups_survive_a_reopen,
    a_vault_that_did_not_know_the_lookup_uses_it,
    lookups_are_audited_without_the_value,
    an_altered_index_never_names_the_wrong_customer,
);

/// An index that names a customer whose authenticated state does not hold the token (a
/// corrupted index, rows intact) is refused, never answered.
#[test]
fn an_index_answer_the_state_contradicts_is_refused() {
    let store = common::TamperStore::new(Arc::new(MemoryStore::new()));
    let open = || store.clone() as Arc<dyn Store>;
    let v = email_vault(&open);
    let alice = v.create_customer().unwrap();
    let bob = v.create_customer().unwrap();
    v.set_field(alice, "email", "alice@example.org").unwrap();
    v.set_field(bob, "email", "bob@example.org").unwrap();
    store.forge_index(bob);
    common::assert_crypto(v.find_customer("email", "alice@example.org"));
    assert_eq!(v.find_customer("email", "bob@example.org").unwrap(), Some(bob));
    v.erase_customer(bob).unwrap();
    common::assert_crypto(v.find_customer("email", "bob@example.org"));
}

/// No value, normalised or not, is anywhere in the SQLite file, its log or its shared memory.
#[cfg(feature = "sqlite")]
#[test]
fn no_plaintext_in_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egard.db");
    let open = || Arc::new(egard::SqliteStore::open(&path).unwrap()) as Arc<dyn Store>;
    let v = vault(&open);
    with_purposes(&v);
    v.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
    v.define_lookup(Lookup::new("phone", Normalizer::Phone)).unwrap();
    let alice = v.create_customer().unwrap();
    v.set_field(alice, "email", "Canary.Person-7f3a9@Example.ORG").unwrap();
    v.set_field(alice, "phone", "+33 (6) 99-88-77-66").unwrap();
    assert_eq!(
        v.find_customer("email", "canary.person-7f3a9@example.org").unwrap(),
        Some(alice)
    );
    drop(v);
    let needles: [&[u8]; 4] = [
        b"Canary.Person-7f3a9",
        b"canary.person-7f3a9",
        b"+33699887766",
        b"99-88-77-66",
    ];
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} found in the database files",
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(files >= 1);
}
