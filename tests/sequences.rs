//! Random sequences of operations checked against a small model of the rules: consent given,
//! withdrawn, expired; objection; restriction; erasure; passes held across all of it; the
//! clock moving; the vault restarted on the same store (so that cached and reloaded state
//! must agree).

mod common;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use common::*;
use egard::{AccessDenied, AccessPass, CustomerId, Error, Evidence, LawfulBasis, ManualClock, Purpose, Vault};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const PURPOSES: [&str; 3] = ["news", "li", "dm"];
const CUSTOMERS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Give(usize, usize),
    Withdraw(usize, usize),
    Object(usize, usize),
    Restrict(usize),
    Lift(usize),
    Erase(usize),
    Authorize(usize, usize),
    Reveal(usize),
    Advance(i64),
    Restart,
    /// A notice update of a purpose.
    Notice(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CUSTOMERS;
    let p = 0..PURPOSES.len();
    prop_oneof![
        4 => (c.clone(), p.clone()).prop_map(|(c, p)| Op::Give(c, p)),
        2 => (c.clone(), p.clone()).prop_map(|(c, p)| Op::Withdraw(c, p)),
        1 => (c.clone(), p.clone()).prop_map(|(c, p)| Op::Object(c, p)),
        1 => c.clone().prop_map(Op::Restrict),
        1 => c.clone().prop_map(Op::Lift),
        1 => (c.clone(), 0..8u8).prop_filter_map("rare", |(c, r)| (r == 0).then_some(Op::Erase(c))),
        5 => (c, p).prop_map(|(c, p)| Op::Authorize(c, p)),
        5 => (0..16usize).prop_map(Op::Reveal),
        3 => prop_oneof![
            Just(1i64),                       // a microsecond
            Just(1_000_000),                  // a second
            Just(4 * 60 * 1_000_000),         // four minutes
            Just(86_400 * 1_000_000),         // a day
            Just(5 * 86_400 * 1_000_000),     // five days
        ]
        .prop_map(Op::Advance),
        1 => Just(Op::Restart),
        1 => (0..PURPOSES.len()).prop_map(Op::Notice),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Record {
    given_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    withdrawn: bool,
    notice: u32,
}

#[derive(Debug, Default)]
struct Customer {
    records: HashMap<usize, Record>,
    objected: HashMap<usize, DateTime<Utc>>,
    restricted: bool,
    erased: bool,
}

/// What the model expects of a pass it saw issued.
struct ModelPass {
    customer: usize,
    purpose: usize,
    valid_until: DateTime<Utc>,
    ends_with_consent: bool,
    /// The first revocation, `Err(())` for erasure (which overrides).
    revoked: Option<Result<AccessDenied, ()>>,
    /// Whether its purpose's notice was updated since it was issued.
    retired: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Denied(AccessDenied),
    Erased,
    Invalid,
}

fn outcome<T>(r: Result<T, Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(Error::Denied(reason)) => Outcome::Denied(reason),
        Err(Error::Erased(_)) => Outcome::Erased,
        Err(Error::Invalid(_)) => Outcome::Invalid,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn purpose(p: usize, notice: u32) -> Purpose {
    let def = match p {
        0 => Purpose::new("news", LawfulBasis::Consent).consent_lifetime(Duration::days(10)),
        1 => Purpose::new("li", LawfulBasis::LegitimateInterests),
        _ => Purpose::new("dm", LawfulBasis::LegitimateInterests).direct_marketing(),
    };
    def.fields(["email"]).notice_version(notice)
}

fn build(store: &std::sync::Arc<dyn egard::Store>, clock: &ManualClock, notices: &[u32]) -> Vault {
    let vault = vault_on(store.clone(), clock);
    for (p, &notice) in notices.iter().enumerate() {
        vault.define_purpose(purpose(p, notice)).unwrap();
    }
    vault
}

fn run(new_store: NewStore, ops: &[Op]) -> Result<(), TestCaseError> {
    let store = new_store();
    let clock = ManualClock::new(t0());
    let mut notices = [1u32; PURPOSES.len()];
    let mut vault = build(&store, &clock, &notices);
    let ids: Vec<CustomerId> = (0..CUSTOMERS)
        .map(|_| {
            let c = vault.create_customer().unwrap();
            vault.set_field(c, "email", "e@example.com").unwrap();
            c
        })
        .collect();
    let mut model: Vec<Customer> = (0..CUSTOMERS).map(|_| Customer::default()).collect();
    let mut passes: Vec<(AccessPass, ModelPass)> = Vec::new();
    let now = |clock: &ManualClock| egard::Clock::now(clock);

    let revoke =
        |passes: &mut Vec<(AccessPass, ModelPass)>, c: usize, p: Option<usize>, reason: Result<AccessDenied, ()>| {
            for (_, m) in passes.iter_mut() {
                if m.customer == c && p.is_none_or(|p| m.purpose == p) {
                    match reason {
                        Err(()) => m.revoked = Some(Err(())),
                        Ok(r) => {
                            m.revoked.get_or_insert(Ok(r));
                        }
                    }
                }
            }
        };

    for (step, op) in ops.iter().enumerate() {
        let t = now(&clock);
        match *op {
            Op::Give(c, p) => {
                let got = outcome(vault.give_consent(ids[c], PURPOSES[p], Evidence::new("model")));
                let m = &mut model[c];
                let want = if m.erased {
                    Outcome::Erased
                } else if p == 2 && m.objected.contains_key(&p) {
                    Outcome::Denied(AccessDenied::Objected)
                } else {
                    m.records.insert(
                        p,
                        Record {
                            given_at: t,
                            expires_at: (p == 0).then(|| t + Duration::days(10)),
                            withdrawn: false,
                            notice: notices[p],
                        },
                    );
                    Outcome::Ok
                };
                prop_assert_eq!(got, want, "step {}: {:?}", step, op);
            }
            Op::Withdraw(c, p) => {
                prop_assert_eq!(
                    outcome(vault.withdraw_consent(ids[c], PURPOSES[p])),
                    Outcome::Ok,
                    "step {}",
                    step
                );
                if let Some(r) = model[c].records.get_mut(&p) {
                    r.withdrawn = true;
                }
                revoke(&mut passes, c, Some(p), Ok(AccessDenied::Withdrawn));
            }
            Op::Object(c, p) => {
                let got = outcome(vault.object(ids[c], PURPOSES[p]));
                let want = if p == 0 {
                    Outcome::Invalid
                } else if model[c].erased {
                    Outcome::Erased
                } else {
                    model[c].objected.insert(p, t);
                    revoke(&mut passes, c, Some(p), Ok(AccessDenied::Objected));
                    Outcome::Ok
                };
                prop_assert_eq!(got, want, "step {}: {:?}", step, op);
            }
            Op::Restrict(c) | Op::Lift(c) => {
                let restrict = matches!(op, Op::Restrict(_));
                let got = outcome(if restrict {
                    vault.restrict(ids[c])
                } else {
                    vault.lift_restriction(ids[c])
                });
                let want = if model[c].erased {
                    Outcome::Erased
                } else {
                    model[c].restricted = restrict;
                    if restrict {
                        revoke(&mut passes, c, None, Ok(AccessDenied::Restricted));
                    }
                    Outcome::Ok
                };
                prop_assert_eq!(got, want, "step {}: {:?}", step, op);
            }
            Op::Erase(c) => {
                let got = outcome(vault.erase_customer(ids[c]));
                let want = if model[c].erased {
                    Outcome::Erased
                } else {
                    model[c].erased = true;
                    revoke(&mut passes, c, None, Err(()));
                    Outcome::Ok
                };
                prop_assert_eq!(got, want, "step {}: {:?}", step, op);
            }
            Op::Authorize(c, p) => {
                let m = &model[c];
                let record = m.records.get(&p);
                let want = if m.erased {
                    Outcome::Erased
                } else if m.restricted {
                    Outcome::Denied(AccessDenied::Restricted)
                } else if m
                    .objected
                    .get(&p)
                    .is_some_and(|&o| p == 2 || record.is_none_or(|r| r.given_at <= o))
                {
                    Outcome::Denied(AccessDenied::Objected)
                } else {
                    match record {
                        None => Outcome::Denied(AccessDenied::NoConsent),
                        Some(r) if r.withdrawn => Outcome::Denied(AccessDenied::Withdrawn),
                        Some(r) if r.expires_at.is_some_and(|e| t >= e) => Outcome::Denied(AccessDenied::Expired),
                        Some(r) if r.notice < notices[p] => Outcome::Denied(AccessDenied::NoticeOutdated),
                        Some(_) => Outcome::Ok,
                    }
                };
                let result = vault.authorize(ids[c], PURPOSES[p]);
                if let Ok(pass) = &result {
                    let pass_end = t + egard::DEFAULT_PASS_LIFETIME;
                    let (valid_until, ends_with_consent) = match record.and_then(|r| r.expires_at) {
                        Some(e) if e <= pass_end => (e, true),
                        _ => (pass_end, false),
                    };
                    prop_assert_eq!(pass.valid_until(), valid_until, "step {}", step);
                    let model_pass = ModelPass {
                        customer: c,
                        purpose: p,
                        valid_until,
                        ends_with_consent,
                        revoked: None,
                        retired: false,
                    };
                    passes.push((result.unwrap(), model_pass));
                    prop_assert_eq!(Outcome::Ok, want, "step {}: {:?}", step, op);
                } else {
                    prop_assert_eq!(outcome(result), want, "step {}: {:?}", step, op);
                }
            }
            Op::Reveal(i) => {
                if passes.is_empty() {
                    continue;
                }
                let (pass, m) = &passes[i % passes.len()];
                let want = match m.revoked {
                    Some(Err(())) => Outcome::Erased,
                    Some(Ok(reason)) => Outcome::Denied(reason),
                    None if m.retired => Outcome::Denied(AccessDenied::NoticeOutdated),
                    None if t >= m.valid_until => Outcome::Denied(if m.ends_with_consent {
                        AccessDenied::Expired
                    } else {
                        AccessDenied::PassExpired
                    }),
                    None => Outcome::Ok,
                };
                let got = vault.reveal::<String>(pass, "email");
                if let Ok(v) = &got {
                    prop_assert_eq!(v.expose(), "e@example.com");
                }
                prop_assert_eq!(outcome(got), want, "step {}: {:?}", step, op);
            }
            Op::Advance(micros) => clock.advance(Duration::microseconds(micros)),
            Op::Restart => {
                // Passes belong to the vault that issued them; a restart ends them.
                passes.clear();
                drop(vault);
                vault = build(&store, &clock, &notices);
            }
            Op::Notice(p) => {
                notices[p] += 1;
                vault.define_purpose(purpose(p, notices[p])).unwrap();
                for (_, m) in passes.iter_mut().filter(|(_, m)| m.purpose == p) {
                    m.retired = true;
                }
            }
        }
    }
    prop_assert!(vault.verify_audit().is_ok());
    Ok(())
}

fn random_sequences_agree_with_the_model(new_store: NewStore) {
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| run(new_store, &ops));
    if let Err(e) = result {
        panic!("{e}");
    }
}

backend_tests!(random_sequences_agree_with_the_model);
