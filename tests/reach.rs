//! Reaching customers: the audience of a purpose, the re-consent list and the change feed, on
//! MemoryStore, a SQLite file and PostgreSQL (with `EGARD_POSTGRES_URL`).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use egard::{
    AUDIENCE_PAGE, AuditBreak, AuditKind, CustomerId, Error, Evidence, LawfulBasis, MAX_CHANGES_PAGE, ManualClock,
    Purpose, Store, Vault,
};

mod common;

use common::{KEY, TamperStore, t0, vault_on, whole_log};

// ----- backends -----

on_every_backend!(
    audience_is_exactly_who_authorize_lets_through,
    a_cold_vault_lists_the_same_audience_from_the_store,
    reconsent_after_a_notice_change,
    the_feed_serves_changes_in_order_with_a_cursor_and_no_accesses,
    a_listing_is_audited_once_and_is_not_a_change,
    unknown_purposes_are_refused,
    a_withdrawal_during_a_listing_leaves_that_customer_out,
);

// ----- helpers -----

fn newsletter() -> Purpose {
    Purpose::new("newsletter", LawfulBasis::Consent)
        .fields(["email"])
        .consent_lifetime(Duration::days(30))
}

fn offers() -> Purpose {
    Purpose::new("offers", LawfulBasis::LegitimateInterests).fields(["email"])
}

fn setup(store: Arc<dyn Store>) -> (Vault, ManualClock) {
    let clock = ManualClock::new(t0());
    let vault = vault_on(store, &clock);
    vault.define_purpose(newsletter()).unwrap();
    vault.define_purpose(offers()).unwrap();
    (vault, clock)
}

fn give(vault: &Vault, c: CustomerId, purpose: &str) {
    vault.give_consent(c, purpose, Evidence::new("test")).unwrap();
}

fn audience(vault: &Vault, purpose: &str) -> Vec<CustomerId> {
    vault.audience(purpose).unwrap().collect::<Result<_, _>>().unwrap()
}

fn reconsent(vault: &Vault, purpose: &str) -> Vec<CustomerId> {
    vault
        .needs_reconsent(purpose)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn set(ids: &[CustomerId]) -> BTreeSet<CustomerId> {
    ids.iter().copied().collect()
}

/// Asserts the list is in ascending id order, each customer once.
#[track_caller]
fn assert_ordered(ids: &[CustomerId]) {
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending ids, each once");
}

/// Everyone in `customers` for whom `authorize` succeeds now.
fn authorized(vault: &Vault, customers: &[CustomerId], purpose: &str) -> BTreeSet<CustomerId> {
    customers
        .iter()
        .copied()
        .filter(|c| vault.authorize(*c, purpose).is_ok())
        .collect()
}

/// A population covering every reason to be in or out of the newsletter's audience, at
/// `t0 + 31 days` (the early ones' consents expired then).
struct Population {
    all: Vec<CustomerId>,
    expected: BTreeSet<CustomerId>,
}

fn population(vault: &Vault, clock: &ManualClock) -> Population {
    let mut all = Vec::new();
    let mut expected = BTreeSet::new();
    let mut new = || {
        let c = vault.create_customer().unwrap();
        all.push(c);
        c
    };
    // Given at t0: expired at t0 + 31 days.
    let expired = new();
    give(vault, expired, "newsletter");
    clock.advance(Duration::days(20));
    let plain = new();
    give(vault, plain, "newsletter");
    expected.insert(plain);
    let withdrawn = new();
    give(vault, withdrawn, "newsletter");
    vault.withdraw_consent(withdrawn, "newsletter").unwrap();
    let _never = new();
    let restricted = new();
    give(vault, restricted, "newsletter");
    vault.restrict(restricted).unwrap();
    let erased = new();
    give(vault, erased, "newsletter");
    vault.erase_customer(erased).unwrap();
    let renewed = new();
    give(vault, renewed, "newsletter");
    give(vault, renewed, "newsletter");
    expected.insert(renewed);
    let back = new();
    give(vault, back, "newsletter");
    vault.withdraw_consent(back, "newsletter").unwrap();
    give(vault, back, "newsletter");
    expected.insert(back);
    let lifted = new();
    give(vault, lifted, "newsletter");
    vault.restrict(lifted).unwrap();
    vault.lift_restriction(lifted).unwrap();
    expected.insert(lifted);
    let other_purpose = new();
    give(vault, other_purpose, "offers");
    let objected = new();
    give(vault, objected, "offers");
    give(vault, objected, "newsletter");
    vault.object(objected, "offers").unwrap();
    expected.insert(objected);
    for _ in 0..20 {
        let c = new();
        give(vault, c, "newsletter");
        expected.insert(c);
    }
    clock.advance(Duration::days(11));
    Population { all, expected }
}

// ----- audience -----

fn audience_is_exactly_who_authorize_lets_through(store: Arc<dyn Store>) {
    let (vault, clock) = setup(store);
    let p = population(&vault, &clock);
    let listed = audience(&vault, "newsletter");
    assert_ordered(&listed);
    assert_eq!(set(&listed), p.expected, "the newsletter's audience");
    assert_eq!(
        set(&listed),
        authorized(&vault, &p.all, "newsletter"),
        "as authorize decides"
    );
    let offers = audience(&vault, "offers");
    assert_eq!(
        set(&offers),
        authorized(&vault, &p.all, "offers"),
        "the objection ends the legitimate-interests record"
    );
    assert_eq!(offers.len(), 1, "only the customer who did not object");
}

fn a_cold_vault_lists_the_same_audience_from_the_store(store: Arc<dyn Store>) {
    let clock = ManualClock::new(t0());
    let (expected, all) = {
        let vault = vault_on(store.clone(), &clock);
        vault.define_purpose(newsletter()).unwrap();
        vault.define_purpose(offers()).unwrap();
        let p = population(&vault, &clock);
        (p.expected, p.all)
    };
    // A new vault: nothing cached, every candidate is read from the store and checked.
    let vault = vault_on(store, &clock);
    let listed = audience(&vault, "newsletter");
    assert_ordered(&listed);
    assert_eq!(set(&listed), expected);
    assert_eq!(vault.cached_customers(), 0, "listing caches nobody and unwraps no key");
    assert_eq!(set(&listed), authorized(&vault, &all, "newsletter"));
}

fn reconsent_after_a_notice_change(store: Arc<dyn Store>) {
    let (vault, _clock) = setup(store);
    let [a, b, c, d] = [(); 4].map(|()| vault.create_customer().unwrap());
    for x in [a, b, c, d] {
        give(&vault, x, "newsletter");
    }
    vault.withdraw_consent(b, "newsletter").unwrap();
    assert!(reconsent(&vault, "newsletter").is_empty(), "nobody is behind yet");
    vault.define_purpose(newsletter().notice_version(2)).unwrap();
    assert!(
        audience(&vault, "newsletter").is_empty(),
        "everyone is behind the new notice"
    );
    assert_eq!(
        set(&reconsent(&vault, "newsletter")),
        set(&[a, c, d]),
        "the withdrawn one is not asked"
    );
    give(&vault, c, "newsletter");
    assert_eq!(audience(&vault, "newsletter"), vec![c]);
    assert_eq!(set(&reconsent(&vault, "newsletter")), set(&[a, d]));
    vault.erase_customer(a).unwrap();
    assert_eq!(reconsent(&vault, "newsletter"), vec![d], "the erased one is not asked");
}

// ----- the change feed -----

fn the_feed_serves_changes_in_order_with_a_cursor_and_no_accesses(store: Arc<dyn Store>) {
    let (vault, _clock) = setup(store.clone());
    let a = vault.create_customer().unwrap();
    let b = vault.create_customer().unwrap();
    give(&vault, a, "newsletter");
    vault.authorize(a, "newsletter").unwrap();
    assert!(vault.authorize(b, "newsletter").is_err());
    vault.set_field(a, "email", "a@example.com").unwrap();
    vault.set_field(a, "email", "a2@example.com").unwrap();
    vault.export_customer(a, Evidence::new("request")).unwrap();
    let _ = audience(&vault, "newsletter");
    vault.withdraw_consent(a, "newsletter").unwrap();
    vault.restrict(b).unwrap();
    vault.lift_restriction(b).unwrap();
    vault.erase_customer(b).unwrap();

    let expected: Vec<_> = whole_log(&*store).into_iter().filter(|e| e.kind.is_change()).collect();
    let all = vault.changes_since(0, 1000).unwrap();
    assert_eq!(all, expected, "every change, in order");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let kinds: Vec<AuditKind> = all.iter().map(|e| e.kind).collect();
    for access in [
        AuditKind::AccessGranted,
        AuditKind::AccessDenied,
        AuditKind::Exported,
        AuditKind::AudienceListed,
    ] {
        assert!(!kinds.contains(&access), "no {access:?} in the feed");
    }
    for change in [
        AuditKind::PurposeDefined,
        AuditKind::ConsentGiven,
        AuditKind::FieldWritten,
        AuditKind::FieldRectified,
        AuditKind::ConsentWithdrawn,
        AuditKind::Restricted,
        AuditKind::RestrictionLifted,
        AuditKind::Erased,
    ] {
        assert!(kinds.contains(&change), "{change:?} is in the feed");
    }
    // Page through with a persisted cursor: the same events, each once.
    let mut cursor = 0;
    let mut paged = Vec::new();
    loop {
        let page = vault.changes_since(cursor, 3).unwrap();
        assert!(page.len() <= 3, "at most the limit");
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all, "paging with the cursor gives the same feed");
    assert!(
        vault.changes_since(cursor, 10).unwrap().is_empty(),
        "nothing after the end"
    );
    assert!(vault.changes_since(0, 0).unwrap().is_empty(), "limit 0");
    assert_eq!(
        vault.changes_since(0, usize::MAX).unwrap(),
        all,
        "a huge limit is capped, not refused"
    );
    // A later change shows after the cursor.
    let c = vault.create_customer().unwrap();
    give(&vault, c, "newsletter");
    let next = vault.changes_since(cursor, 10).unwrap();
    assert_eq!(
        next.iter().map(|e| (e.kind, e.customer)).collect::<Vec<_>>(),
        vec![
            (AuditKind::CustomerCreated, Some(c)),
            (AuditKind::ConsentGiven, Some(c))
        ]
    );
}

#[test]
fn the_feed_limit_is_capped() {
    let (vault, _clock) = setup(Arc::new(egard::MemoryStore::new()));
    let c = vault.create_customer().unwrap();
    for i in 0..MAX_CHANGES_PAGE {
        vault.set_field(c, "email", &format!("{i}@example.com")).unwrap();
    }
    let page = vault.changes_since(0, MAX_CHANGES_PAGE + 500).unwrap();
    assert_eq!(page.len(), MAX_CHANGES_PAGE);
    let rest = vault.changes_since(page[MAX_CHANGES_PAGE - 1].seq, usize::MAX).unwrap();
    assert_eq!(
        page.len() + rest.len(),
        MAX_CHANGES_PAGE + 3,
        "two purposes, a customer, and its writes"
    );
}

#[test]
fn a_forged_change_event_is_never_served() {
    let clock = ManualClock::new(t0());
    let tamper = TamperStore::new(Arc::new(egard::MemoryStore::new()));
    let vault = vault_on(tamper.clone(), &clock);
    vault.define_purpose(newsletter()).unwrap();
    let a = vault.create_customer().unwrap();
    give(&vault, a, "newsletter");
    vault.withdraw_consent(a, "newsletter").unwrap();
    let honest = vault.changes_since(0, 100).unwrap();
    assert_eq!(honest.last().map(|e| e.kind), Some(AuditKind::ConsentWithdrawn));
    // The withdrawal turned into a consent in the store: its MAC no longer matches.
    let mut log = tamper.real_log();
    let last = log.len() - 1;
    log[last].kind = AuditKind::ConsentGiven;
    let forged_seq = log[last].seq;
    tamper.forge_log(log.clone());
    match vault.changes_since(0, 100) {
        Err(Error::AuditBroken {
            seq,
            problem: AuditBreak::MacMismatch,
        }) => assert_eq!(seq, forged_seq),
        other => panic!("expected a MAC mismatch, got {other:?}"),
    }
    // An event made up from nothing, after the head.
    let mut made_up = tamper.real_log();
    let mut extra = made_up[last].clone();
    extra.seq += 1;
    extra.kind = AuditKind::ConsentGiven;
    made_up.push(extra);
    tamper.forge_log(made_up);
    assert!(matches!(
        vault.changes_since(forged_seq, 100),
        Err(Error::AuditBroken {
            problem: AuditBreak::MacMismatch,
            ..
        })
    ));
}

fn a_listing_is_audited_once_and_is_not_a_change(store: Arc<dyn Store>) {
    let (vault, _clock) = setup(store.clone());
    for _ in 0..3 {
        let c = vault.create_customer().unwrap();
        give(&vault, c, "newsletter");
    }
    let before = whole_log(&*store).len();
    assert_eq!(audience(&vault, "newsletter").len(), 3);
    let _ = reconsent(&vault, "newsletter");
    let log = whole_log(&*store);
    let new: Vec<_> = log[before..].iter().collect();
    assert_eq!(new.len(), 2, "one event per listing, none per customer");
    for (event, detail) in new.iter().zip(["audience", "needs_reconsent"]) {
        assert_eq!(event.kind, AuditKind::AudienceListed);
        assert_eq!(event.purpose.as_ref().map(|p| p.as_str()), Some("newsletter"));
        assert_eq!(event.customer, None, "no customer named");
        assert_eq!(event.detail, detail);
        assert!(!event.kind.is_change());
    }
    assert!(
        vault
            .changes_since(0, 1000)
            .unwrap()
            .iter()
            .all(|e| e.kind != AuditKind::AudienceListed)
    );
    vault.verify_audit().unwrap();
}

fn unknown_purposes_are_refused(store: Arc<dyn Store>) {
    let (vault, _clock) = setup(store);
    assert!(matches!(vault.audience("nope"), Err(Error::UnknownPurpose(p)) if p.as_str() == "nope"));
    assert!(matches!(vault.needs_reconsent("nope"), Err(Error::UnknownPurpose(_))));
    assert!(matches!(vault.audience("Not A Slug"), Err(Error::InvalidId { .. })));
}

fn a_withdrawal_during_a_listing_leaves_that_customer_out(store: Arc<dyn Store>) {
    let (vault, _clock) = setup(store);
    let customers: Vec<CustomerId> = (0..5)
        .map(|_| {
            let c = vault.create_customer().unwrap();
            give(&vault, c, "newsletter");
            c
        })
        .collect();
    let full = audience(&vault, "newsletter");
    assert_eq!(set(&full), set(&customers));
    let mut listing = vault.audience("newsletter").unwrap();
    let first = listing.next().unwrap().unwrap();
    assert_eq!(first, full[0]);
    let late = full[4];
    vault.withdraw_consent(late, "newsletter").unwrap();
    let rest: Vec<CustomerId> = listing.collect::<Result<_, _>>().unwrap();
    assert_eq!(rest, full[1..4].to_vec(), "the withdrawn customer is not reached");
}

// ----- paging and the store's index -----

#[test]
fn an_audience_larger_than_a_page_is_listed_whole() {
    let (vault, _clock) = setup(Arc::new(egard::MemoryStore::new()));
    let mut expected = BTreeSet::new();
    for i in 0..(AUDIENCE_PAGE * 2 + 7) {
        let c = vault.create_customer().unwrap();
        if i % 3 != 0 {
            give(&vault, c, "newsletter");
            expected.insert(c);
        }
    }
    let listed = audience(&vault, "newsletter");
    assert_ordered(&listed);
    assert_eq!(set(&listed), expected);
}

#[cfg(feature = "sqlite")]
mod sqlite_rows {
    use super::*;

    fn open(path: &std::path::Path, clock: &ManualClock) -> Vault {
        vault_on(Arc::new(egard::SqliteStore::open(path).unwrap()), clock)
    }

    /// A consent row copied from a customer who consented to one who did not, straight in the
    /// database file: the store's index proposes the second customer, the vault refuses them.
    #[test]
    fn a_forged_candidate_row_never_joins_the_audience() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egard.db");
        let clock = ManualClock::new(t0());
        let (alice, bob) = {
            let vault = open(&path, &clock);
            vault.define_purpose(newsletter()).unwrap();
            let alice = vault.create_customer().unwrap();
            let bob = vault.create_customer().unwrap();
            give(&vault, alice, "newsletter");
            (alice, bob)
        };
        let raw = rusqlite::Connection::open(&path).unwrap();
        let copied = raw
            .execute(
                "INSERT INTO consents (id, customer, purpose, basis, notice_version, given_at, expires_at,
                                       withdrawn_at, superseded_by, evidence, mac)
                 SELECT randomblob(16), ?2, purpose, basis, notice_version, given_at, expires_at,
                        withdrawn_at, superseded_by, evidence, mac
                 FROM consents WHERE customer = ?1",
                [alice.as_bytes().as_slice(), bob.as_bytes().as_slice()],
            )
            .unwrap();
        assert_eq!(copied, 1);
        let candidates = egard::SqliteStore::open(&path)
            .unwrap()
            .consent_candidates(&egard::PurposeId::new("newsletter").unwrap(), 0..=u32::MAX, None, 10)
            .unwrap();
        assert!(candidates.contains(&bob), "the forged row does propose bob");

        // A cold vault reads bob's records, and they fail their check.
        let vault = open(&path, &clock);
        let items: Vec<Result<CustomerId, Error>> = vault.audience("newsletter").unwrap().collect();
        let listed: Vec<CustomerId> = items.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(listed, vec![alice], "bob is not in the audience");
        assert!(
            items.iter().any(|r| matches!(r, Err(Error::Crypto))),
            "bob's tampered records are reported as the opaque crypto error"
        );
        assert!(vault.authorize(bob, "newsletter").is_err(), "nor can he be authorized");
        drop(vault);

        // A vault that knew bob (cached, as the vault that created him would have) does not
        // even look at the row.
        let vault = open(&path, &clock);
        assert!(vault.authorize(bob, "newsletter").is_err());
        let listed: Vec<CustomerId> = vault.audience("newsletter").unwrap().filter_map(Result::ok).collect();
        assert_eq!(listed, vec![alice]);
    }

    /// A row hidden from the index can only leave a customer out.
    #[test]
    fn a_hidden_row_only_leaves_a_customer_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egard.db");
        let clock = ManualClock::new(t0());
        let (alice, bob) = {
            let vault = open(&path, &clock);
            vault.define_purpose(newsletter()).unwrap();
            let alice = vault.create_customer().unwrap();
            let bob = vault.create_customer().unwrap();
            give(&vault, alice, "newsletter");
            give(&vault, bob, "newsletter");
            (alice, bob)
        };
        let raw = rusqlite::Connection::open(&path).unwrap();
        // Bob's consent looks withdrawn to the index (the row's MAC no longer matches).
        raw.execute(
            "UPDATE consents SET withdrawn_at = given_at WHERE customer = ?1",
            [bob.as_bytes().as_slice()],
        )
        .unwrap();
        let vault = open(&path, &clock);
        assert_eq!(audience(&vault, "newsletter"), vec![alice]);
        // Bob's own operations show the tampering.
        assert!(matches!(vault.authorize(bob, "newsletter"), Err(Error::Crypto)));
    }

    /// The audience of a SQLite file larger than a page, read cold.
    #[test]
    fn a_cold_audience_of_several_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egard.db");
        let clock = ManualClock::new(t0());
        let store = egard::SqliteStore::open_with(
            &path,
            egard::SqliteOptions::default().durability(egard::Durability::ProcessCrash),
        )
        .unwrap();
        let mut expected = BTreeSet::new();
        {
            let vault = vault_on(Arc::new(store), &clock);
            vault.define_purpose(newsletter()).unwrap();
            for i in 0..(AUDIENCE_PAGE + 40) {
                let c = vault.create_customer().unwrap();
                give(&vault, c, "newsletter");
                if i % 5 == 0 {
                    vault.withdraw_consent(c, "newsletter").unwrap();
                } else {
                    expected.insert(c);
                }
            }
        }
        let vault = open(&path, &clock);
        let listed = audience(&vault, "newsletter");
        assert_ordered(&listed);
        assert_eq!(set(&listed), expected);
    }
}

#[test]
fn the_vault_key_is_checked_by_a_vault_that_cannot_open_the_log() {
    let store: Arc<dyn Store> = Arc::new(egard::MemoryStore::new());
    let clock = ManualClock::new(t0());
    {
        let vault = vault_on(store.clone(), &clock);
        vault.define_purpose(newsletter()).unwrap();
    }
    // A wrong master key: the vault is not even built.
    let wrong = Vault::builder()
        .master_key(egard::MasterKey::from_bytes([KEY[0].wrapping_add(1); 32]))
        .store(store.clone())
        .build();
    assert!(matches!(wrong, Err(Error::Crypto)));
    // A store with a log but no stored audit key builds, and its feed is refused.
    let keyless: Arc<dyn Store> = Arc::new(egard::MemoryStore::new());
    let event = whole_log(&*store).remove(0);
    keyless.apply(&[egard::store::Write::AppendAudit(event)]).unwrap();
    let vault = vault_on(keyless, &clock);
    assert!(matches!(vault.changes_since(0, 10), Err(Error::Crypto)));
}

/// Two servers on one store: a withdrawal made on one leaves the other's audience once its
/// cache time-to-live has passed, although the other had the customer cached.
#[test]
fn a_withdrawal_on_another_server_leaves_the_audience_within_the_time_to_live() {
    let store: Arc<dyn Store> = Arc::new(egard::MemoryStore::new());
    let clock = ManualClock::new(t0());
    let a = common::process_on(store.clone(), &clock);
    a.define_purpose(newsletter()).unwrap();
    let b = common::process_on(store, &clock);
    let alice = a.create_customer().unwrap();
    let bob = a.create_customer().unwrap();
    give(&a, alice, "newsletter");
    give(&a, bob, "newsletter");
    clock.advance(Duration::seconds(2));
    // B caches both (an access each), then A withdraws bob.
    b.authorize(alice, "newsletter").unwrap();
    b.authorize(bob, "newsletter").unwrap();
    assert_eq!(set(&audience(&b, "newsletter")), set(&[alice, bob]));
    a.withdraw_consent(bob, "newsletter").unwrap();
    assert_eq!(
        audience(&a, "newsletter"),
        vec![alice],
        "at once where the change was made"
    );
    clock.advance(Duration::seconds(2));
    assert_eq!(
        audience(&b, "newsletter"),
        vec![alice],
        "within the time-to-live elsewhere"
    );
}
