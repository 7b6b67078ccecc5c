//! Model-based property test: random sequences of operations run against the real [`Vault`]
//! and against a small reference model written here from the documented rules. After every
//! step both must agree on the outcome of the operation (the exact `AccessDenied` reason or
//! `Error` kind), and on every allow/deny decision and revealed value of every pass handed
//! out so far, old and new. The audience and the re-consent list of every purpose are
//! compared too: as operations in the sequence, and after the last step.
//!
//! The store is a parameter: the same sequences run on every backend.
//!
//! `EGARD_MODEL_CASES=N` sets the number of cases per store (default 2000 on MemoryStore and
//! on SqliteStore; a quarter of that with audit batching).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use egard::{
    AccessDenied, AccessPass, Error, Evidence, LawfulBasis, ManualClock, MasterKey, MemoryStore, Purpose, Sealed,
    Store, Vault, VaultBuilder,
};
use proptest::prelude::*;

const FIELDS: [&str; 5] = ["email", "name", "address", "phone", "shoe_size"];
/// Purpose 4 is never defined.
const PURPOSES: [&str; 5] = ["news", "ship", "ads", "fraud", "nope"];
const MAX_VALUE_LEN: usize = 48;
const PASS_LIFETIME_SECS: i64 = 3600;

/// The purposes, in two variants each (a redefinition can change the fields).
fn purpose(p: usize, variant: u8, notice: u32) -> Purpose {
    let v = variant % 2;
    let base = match p {
        0 => Purpose::new("news", LawfulBasis::Consent)
            .fields(if v == 0 { &["email", "name"][..] } else { &["email"][..] })
            .consent_lifetime(Duration::days(10)),
        1 => Purpose::new("ship", LawfulBasis::Contract).fields(if v == 0 {
            &["name", "address"][..]
        } else {
            &["name", "address", "phone"][..]
        }),
        2 => Purpose::new("ads", LawfulBasis::LegitimateInterests)
            .fields(if v == 0 {
                &["email", "phone"][..]
            } else {
                &["phone"][..]
            })
            .consent_lifetime(Duration::days(3))
            .direct_marketing(),
        _ => Purpose::new("fraud", LawfulBasis::LegitimateInterests).fields(if v == 0 {
            &["email", "address"][..]
        } else {
            &["address"][..]
        }),
    };
    base.notice_version(notice)
}

fn purpose_fields(p: usize, variant: u8) -> Vec<&'static str> {
    purpose(p, variant, 1)
        .field_names()
        .map(|f| FIELDS.iter().find(|x| **x == f).copied().unwrap())
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Define {
        p: usize,
        variant: u8,
        notice_delta: i8,
    },
    Create,
    SetField {
        c: usize,
        f: usize,
        too_large: bool,
    },
    Give {
        c: usize,
        p: usize,
    },
    Withdraw {
        c: usize,
        p: usize,
    },
    Advance {
        secs: i64,
    },
    Authorize {
        c: usize,
        p: usize,
    },
    Reveal {
        pass: usize,
        f: usize,
        as_number: bool,
    },
    Seal {
        c: usize,
        f: usize,
    },
    OpenSealed {
        s: usize,
        pass: usize,
    },
    Restrict {
        c: usize,
    },
    Lift {
        c: usize,
    },
    Object {
        c: usize,
        p: usize,
    },
    Erase {
        c: usize,
    },
    Export {
        c: usize,
    },
    /// The vault is dropped and built again on the same store: everything is read back and
    /// checked against its MACs and the audit log (passes die with the old vault).
    Restart,
    /// The customers `authorize` lets through for a purpose, listed from the store's index.
    Audience {
        p: usize,
    },
    /// The customers to ask again after a notice change.
    Reconsent {
        p: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0usize..5;
    let f = 0usize..5;
    prop_oneof![
        2 => (0usize..4, 0u8..2, -1i8..=1).prop_map(|(p, variant, notice_delta)| Op::Define { p, variant, notice_delta }),
        3 => Just(Op::Create),
        5 => (any::<usize>(), f.clone(), prop::bool::weighted(0.1)).prop_map(|(c, f, too_large)| Op::SetField { c, f, too_large }),
        6 => (any::<usize>(), p.clone()).prop_map(|(c, p)| Op::Give { c, p }),
        2 => (any::<usize>(), p.clone()).prop_map(|(c, p)| Op::Withdraw { c, p }),
        3 => prop_oneof![Just(1i64), Just(60), Just(PASS_LIFETIME_SECS), Just(86_400), Just(3 * 86_400), Just(11 * 86_400)]
            .prop_map(|secs| Op::Advance { secs }),
        7 => (any::<usize>(), p.clone()).prop_map(|(c, p)| Op::Authorize { c, p }),
        4 => (any::<usize>(), f.clone(), prop::bool::weighted(0.1)).prop_map(|(pass, f, as_number)| Op::Reveal { pass, f, as_number }),
        2 => (any::<usize>(), f).prop_map(|(c, f)| Op::Seal { c, f }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(s, pass)| Op::OpenSealed { s, pass }),
        1 => any::<usize>().prop_map(|c| Op::Restrict { c }),
        1 => any::<usize>().prop_map(|c| Op::Lift { c }),
        2 => (any::<usize>(), p).prop_map(|(c, p)| Op::Object { c, p }),
        1 => any::<usize>().prop_map(|c| Op::Erase { c }),
        1 => any::<usize>().prop_map(|c| Op::Export { c }),
        1 => Just(Op::Restart),
        2 => (0usize..5).prop_map(|p| Op::Audience { p }),
        1 => (0usize..5).prop_map(|p| Op::Reconsent { p }),
    ]
}

/// The observable outcome of one call: what both sides must agree on.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Ok,
    Value(String),
    Fields(Vec<(String, String)>),
    Denied(AccessDenied),
    Erased,
    UnknownField,
    UnknownPurpose,
    Invalid,
    TooLarge,
    Codec,
    /// A listing of customers, as their indexes, sorted.
    Customers(Vec<usize>),
}

fn err(e: Error) -> Out {
    match e {
        Error::Denied(r) => Out::Denied(r),
        Error::Erased(_) => Out::Erased,
        Error::UnknownField(_) => Out::UnknownField,
        Error::UnknownPurpose(_) => Out::UnknownPurpose,
        Error::Invalid(_) => Out::Invalid,
        Error::TooLarge { .. } => Out::TooLarge,
        Error::Codec { .. } => Out::Codec,
        other => panic!("unexpected error from the vault: {other:?}"),
    }
}

fn ok<T>(r: Result<T, Error>) -> Out {
    r.map_or_else(err, |_| Out::Ok)
}

// ----- the reference model -----

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flag {
    Live,
    Denied(AccessDenied),
    Erased,
}

#[derive(Debug)]
struct MPurpose {
    variant: u8,
    notice: u32,
    generation: usize,
}

#[derive(Debug)]
struct Generation {
    fields: Vec<&'static str>,
    retired: Option<AccessDenied>,
}

#[derive(Debug, Clone)]
struct Record {
    given_at: DateTime<Utc>,
    notice: u32,
    expires_at: Option<DateTime<Utc>>,
    withdrawn: bool,
}

#[derive(Debug, Default)]
struct MCustomer {
    erased: bool,
    restricted: bool,
    fields: HashMap<&'static str, String>,
    records: HashMap<usize, Record>,
    objections: HashMap<usize, DateTime<Utc>>,
}

#[derive(Debug)]
struct MPass {
    customer: usize,
    generation: usize,
    flag: usize,
    valid_until: DateTime<Utc>,
    ends_with_consent: bool,
}

#[derive(Debug)]
struct Model {
    now: DateTime<Utc>,
    purposes: Vec<MPurpose>,
    generations: Vec<Generation>,
    customers: Vec<MCustomer>,
    /// Revocation flags; passes of one customer and purpose share one until it is revoked.
    flags: Vec<Flag>,
    grants: HashMap<(usize, usize), usize>,
    passes: Vec<MPass>,
    sealed: Vec<(usize, &'static str, String)>,
}

impl Model {
    fn new(now: DateTime<Utc>) -> Self {
        let mut m = Model {
            now,
            purposes: Vec::new(),
            generations: Vec::new(),
            customers: Vec::new(),
            flags: Vec::new(),
            grants: HashMap::new(),
            passes: Vec::new(),
            sealed: Vec::new(),
        };
        for p in 0..4 {
            m.generations.push(Generation {
                fields: purpose_fields(p, 0),
                retired: None,
            });
            m.purposes.push(MPurpose {
                variant: 0,
                notice: 1,
                generation: p,
            });
        }
        m
    }

    fn basis(p: usize) -> LawfulBasis {
        purpose(p, 0, 1).basis()
    }

    fn direct_marketing(p: usize) -> bool {
        purpose(p, 0, 1).is_direct_marketing()
    }

    fn lifetime(p: usize) -> Option<Duration> {
        purpose(p, 0, 1).lifetime()
    }

    fn covered(&self, f: &str) -> bool {
        self.purposes
            .iter()
            .any(|p| self.generations[p.generation].fields.contains(&f))
    }

    fn revoke(&mut self, c: usize, p: usize, reason: AccessDenied) {
        if let Some(flag) = self.grants.remove(&(c, p)) {
            if self.flags[flag] == Flag::Live {
                self.flags[flag] = Flag::Denied(reason);
            }
        }
    }

    fn revoke_all(&mut self, c: usize, reason: AccessDenied) {
        for p in 0..4 {
            self.revoke(c, p, reason);
        }
    }

    fn define(&mut self, p: usize, variant: u8, notice: i64) -> Out {
        if notice < 1 {
            return Out::Invalid;
        }
        let old = &self.purposes[p];
        let notice = notice as u32;
        if old.variant == variant && old.notice == notice {
            return Out::Ok;
        }
        if notice < old.notice {
            return Out::Invalid;
        }
        let reason = if notice != old.notice {
            AccessDenied::NoticeOutdated
        } else {
            AccessDenied::PurposeChanged
        };
        let old_generation = old.generation;
        self.generations[old_generation].retired.get_or_insert(reason);
        self.generations.push(Generation {
            fields: purpose_fields(p, variant),
            retired: None,
        });
        self.purposes[p] = MPurpose {
            variant,
            notice,
            generation: self.generations.len() - 1,
        };
        Out::Ok
    }

    fn set_field(&mut self, c: usize, f: usize, value: &str) -> Out {
        let name = FIELDS[f];
        if !self.covered(name) {
            return Out::UnknownField;
        }
        if value.len() + 2 > MAX_VALUE_LEN {
            return Out::TooLarge;
        }
        let cust = &mut self.customers[c];
        if cust.erased {
            return Out::Erased;
        }
        cust.fields.insert(name, value.to_owned());
        Out::Ok
    }

    fn give(&mut self, c: usize, p: usize) -> Out {
        if p >= 4 {
            return Out::UnknownPurpose;
        }
        let now = self.now;
        let notice = self.purposes[p].notice;
        let cust = &mut self.customers[c];
        if cust.erased {
            return Out::Erased;
        }
        if Self::direct_marketing(p) && cust.objections.contains_key(&p) {
            return Out::Denied(AccessDenied::Objected);
        }
        cust.records.insert(
            p,
            Record {
                given_at: now,
                notice,
                expires_at: Self::lifetime(p).map(|d| now + d),
                withdrawn: false,
            },
        );
        Out::Ok
    }

    fn withdraw(&mut self, c: usize, p: usize) -> Out {
        if p >= 4 {
            return Out::UnknownPurpose;
        }
        if let Some(r) = self.customers[c].records.get_mut(&p) {
            r.withdrawn = true;
        }
        self.revoke(c, p, AccessDenied::Withdrawn);
        Out::Ok
    }

    fn decide(&self, c: usize, p: usize) -> Result<Option<DateTime<Utc>>, AccessDenied> {
        let cust = &self.customers[c];
        if cust.restricted {
            return Err(AccessDenied::Restricted);
        }
        let record = cust.records.get(&p);
        if let Some(objected) = cust.objections.get(&p) {
            if Self::direct_marketing(p) || record.is_none_or(|r| r.given_at <= *objected) {
                return Err(AccessDenied::Objected);
            }
        }
        let r = record.ok_or(AccessDenied::NoConsent)?;
        if r.withdrawn {
            return Err(AccessDenied::Withdrawn);
        }
        if r.expires_at.is_some_and(|t| self.now >= t) {
            return Err(AccessDenied::Expired);
        }
        if r.notice < self.purposes[p].notice {
            return Err(AccessDenied::NoticeOutdated);
        }
        Ok(r.expires_at)
    }

    fn authorize(&mut self, c: usize, p: usize) -> Out {
        if p >= 4 {
            return Out::UnknownPurpose;
        }
        if self.customers[c].erased {
            return Out::Erased;
        }
        match self.decide(c, p) {
            Err(reason) => Out::Denied(reason),
            Ok(expires_at) => {
                let flag = match self.grants.get(&(c, p)) {
                    Some(&f) if self.flags[f] == Flag::Live => f,
                    _ => {
                        self.flags.push(Flag::Live);
                        self.grants.insert((c, p), self.flags.len() - 1);
                        self.flags.len() - 1
                    }
                };
                let pass_end = self.now + Duration::seconds(PASS_LIFETIME_SECS);
                let (valid_until, ends_with_consent) = match expires_at {
                    Some(t) if t <= pass_end => (t, true),
                    _ => (pass_end, false),
                };
                self.passes.push(MPass {
                    customer: c,
                    generation: self.purposes[p].generation,
                    flag,
                    valid_until,
                    ends_with_consent,
                });
                Out::Ok
            }
        }
    }

    /// The checks of a pass, in the order the gate makes them.
    fn check_pass(&self, pass: usize, customer: usize, f: &str) -> Result<(), Out> {
        let pass = &self.passes[pass];
        if pass.customer != customer {
            return Err(Out::Denied(AccessDenied::WrongCustomer));
        }
        match self.flags[pass.flag] {
            Flag::Live => {}
            Flag::Erased => return Err(Out::Erased),
            Flag::Denied(r) => return Err(Out::Denied(r)),
        }
        let generation = &self.generations[pass.generation];
        if let Some(r) = generation.retired {
            return Err(Out::Denied(r));
        }
        if self.now >= pass.valid_until {
            return Err(Out::Denied(if pass.ends_with_consent {
                AccessDenied::Expired
            } else {
                AccessDenied::PassExpired
            }));
        }
        if !generation.fields.contains(&f) {
            return Err(Out::Denied(AccessDenied::FieldNotCovered));
        }
        Ok(())
    }

    fn reveal(&self, pass: usize, f: usize, as_number: bool) -> Out {
        let customer = self.passes[pass].customer;
        if let Err(out) = self.check_pass(pass, customer, FIELDS[f]) {
            return out;
        }
        match self.customers[customer].fields.get(FIELDS[f]) {
            None => Out::UnknownField,
            Some(_) if as_number => Out::Codec,
            Some(v) => Out::Value(v.clone()),
        }
    }

    fn seal(&mut self, c: usize, f: usize, value: &str) -> Out {
        if !self.covered(FIELDS[f]) {
            return Out::UnknownField;
        }
        if self.customers[c].erased {
            return Out::Erased;
        }
        self.sealed.push((c, FIELDS[f], value.to_owned()));
        Out::Ok
    }

    fn open_sealed(&self, s: usize, pass: usize) -> Out {
        let (c, f, value) = &self.sealed[s];
        match self.check_pass(pass, *c, f) {
            Err(out) => out,
            Ok(()) => Out::Value(value.clone()),
        }
    }

    fn set_restricted(&mut self, c: usize, restricted: bool) -> Out {
        if self.customers[c].erased {
            return Out::Erased;
        }
        self.customers[c].restricted = restricted;
        if restricted {
            self.revoke_all(c, AccessDenied::Restricted);
        }
        Out::Ok
    }

    fn object(&mut self, c: usize, p: usize) -> Out {
        if p >= 4 {
            return Out::UnknownPurpose;
        }
        if !Self::basis(p).allows_objection() {
            return Out::Invalid;
        }
        if self.customers[c].erased {
            return Out::Erased;
        }
        self.customers[c].objections.insert(p, self.now);
        self.revoke(c, p, AccessDenied::Objected);
        Out::Ok
    }

    fn erase(&mut self, c: usize) -> Out {
        if self.customers[c].erased {
            return Out::Erased;
        }
        // Erasure overrides every other reason, also on passes already refused.
        for p in 0..4 {
            self.grants.remove(&(c, p));
        }
        for pass in self.passes.iter().filter(|pass| pass.customer == c) {
            self.flags[pass.flag] = Flag::Erased;
        }
        let cust = &mut self.customers[c];
        cust.erased = true;
        cust.fields.clear();
        Out::Ok
    }

    /// Every customer, not erased, whom `authorize` would let through for `p` now.
    fn audience(&self, p: usize) -> Out {
        if p >= 4 {
            return Out::UnknownPurpose;
        }
        Out::Customers(
            (0..self.customers.len())
                .filter(|&c| !self.customers[c].erased && self.decide(c, p).is_ok())
                .collect(),
        )
    }

    /// Every customer, not erased, whose record for `p` is unwithdrawn, unexpired, not
    /// objected to, and given under an older notice than the current one.
    fn reconsent(&self, p: usize) -> Out {
        if p >= 4 {
            return Out::UnknownPurpose;
        }
        let behind = |cust: &MCustomer| {
            let Some(r) = cust.records.get(&p) else {
                return false;
            };
            let objected = cust
                .objections
                .get(&p)
                .is_some_and(|at| Self::direct_marketing(p) || r.given_at <= *at);
            !cust.erased
                && !r.withdrawn
                && !objected
                && r.expires_at.is_none_or(|t| self.now < t)
                && r.notice < self.purposes[p].notice
        };
        Out::Customers(
            (0..self.customers.len())
                .filter(|&c| behind(&self.customers[c]))
                .collect(),
        )
    }

    /// A new vault: the passes of the old one are gone, and new ones get new flags.
    fn restart(&mut self) {
        self.passes.clear();
        self.grants.clear();
    }

    fn export(&self, c: usize) -> Out {
        let cust = &self.customers[c];
        if cust.erased {
            return Out::Erased;
        }
        let mut fields: Vec<(String, String)> = cust.fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        fields.sort();
        Out::Fields(fields)
    }
}

// ----- the real side -----

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn reveal_real(vault: &Vault, pass: &AccessPass, f: usize, as_number: bool) -> Out {
    if as_number {
        vault
            .reveal::<u64>(pass, FIELDS[f])
            .map_or_else(err, |v| Out::Value(v.expose().to_string()))
    } else {
        vault
            .reveal::<String>(pass, FIELDS[f])
            .map_or_else(err, |v| Out::Value(v.expose().clone()))
    }
}

/// A listing from the vault, as the customers' indexes, sorted; it must come in ascending id
/// order, each customer once.
fn listed(
    customers: &[egard::CustomerId],
    listing: Result<impl Iterator<Item = Result<egard::CustomerId, Error>>, Error>,
) -> Out {
    let ids: Vec<egard::CustomerId> = match listing.and_then(|l| l.collect::<Result<_, _>>()) {
        Ok(ids) => ids,
        Err(e) => return err(e),
    };
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "a listing in ascending id order");
    let mut indexes: Vec<usize> = ids
        .iter()
        .map(|id| {
            customers
                .iter()
                .position(|c| c == id)
                .expect("a listed customer exists")
        })
        .collect();
    indexes.sort_unstable();
    Out::Customers(indexes)
}

/// Runs `ops` on a vault over `store` (with any further settings from `configure`) and on the
/// model, comparing after every step.
fn run(ops: &[Op], store: impl Store, configure: impl Fn(VaultBuilder) -> VaultBuilder) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(start());
    let store: Arc<dyn Store> = Arc::new(store);
    let build = || {
        let builder = Vault::builder()
            .master_key(MasterKey::from_bytes([9; 32]))
            .store(store.clone())
            .clock(clock.clone())
            .pass_lifetime(Duration::seconds(PASS_LIFETIME_SECS))
            .max_value_len(MAX_VALUE_LEN);
        configure(builder).build().unwrap()
    };
    let mut vault = build();
    for p in 0..4 {
        vault.define_purpose(purpose(p, 0, 1)).unwrap();
    }
    let mut model = Model::new(start());
    let mut customers = Vec::new();
    let mut passes: Vec<AccessPass> = Vec::new();
    let mut sealed: Vec<Sealed<String>> = Vec::new();

    for (step, op) in ops.iter().enumerate() {
        let n = customers.len();
        let (real, expected) = match op {
            Op::Define {
                p,
                variant,
                notice_delta,
            } => {
                let notice = i64::from(model.purposes[*p].notice) + i64::from(*notice_delta);
                let real = ok(vault.define_purpose(purpose(*p, *variant, u32::try_from(notice).unwrap_or(0))));
                (real, model.define(*p, *variant, notice))
            }
            Op::Create => {
                customers.push(vault.create_customer().unwrap());
                model.customers.push(MCustomer::default());
                (Out::Ok, Out::Ok)
            }
            Op::Advance { secs } => {
                clock.advance(Duration::seconds(*secs));
                model.now += Duration::seconds(*secs);
                (Out::Ok, Out::Ok)
            }
            Op::Restart => {
                passes.clear();
                drop(vault);
                vault = build();
                model.restart();
                (Out::Ok, Out::Ok)
            }
            Op::Audience { p } => (listed(&customers, vault.audience(PURPOSES[*p])), model.audience(*p)),
            Op::Reconsent { p } => (
                listed(&customers, vault.needs_reconsent(PURPOSES[*p])),
                model.reconsent(*p),
            ),
            _ if n == 0 => continue,
            Op::SetField { c, f, too_large } => {
                let c = c % n;
                let value = if *too_large {
                    "x".repeat(MAX_VALUE_LEN)
                } else {
                    format!("{}-{step}", FIELDS[*f])
                };
                let real = ok(vault.set_field(customers[c], FIELDS[*f], &value));
                (real, model.set_field(c, *f, &value))
            }
            Op::Give { c, p } => {
                let c = c % n;
                let real = ok(vault.give_consent(customers[c], PURPOSES[*p], Evidence::new("model-test")));
                (real, model.give(c, *p))
            }
            Op::Withdraw { c, p } => {
                let c = c % n;
                (
                    ok(vault.withdraw_consent(customers[c], PURPOSES[*p])),
                    model.withdraw(c, *p),
                )
            }
            Op::Authorize { c, p } => {
                let c = c % n;
                let real = match vault.authorize(customers[c], PURPOSES[*p]) {
                    Ok(pass) => {
                        passes.push(pass);
                        Out::Ok
                    }
                    Err(e) => err(e),
                };
                let expected = model.authorize(c, *p);
                if real == Out::Ok && expected == Out::Ok {
                    let (pass, m) = (passes.last().unwrap(), model.passes.last().unwrap());
                    prop_assert_eq!(pass.valid_until(), m.valid_until, "step {}: pass validity", step);
                    prop_assert_eq!(pass.customer(), customers[c]);
                }
                (real, expected)
            }
            Op::Reveal { pass, f, as_number } => {
                if passes.is_empty() {
                    continue;
                }
                let i = pass % passes.len();
                (
                    reveal_real(&vault, &passes[i], *f, *as_number),
                    model.reveal(i, *f, *as_number),
                )
            }
            Op::Seal { c, f } => {
                let c = c % n;
                let value = format!("sealed-{}-{step}", FIELDS[*f]);
                let real = match vault.seal(customers[c], FIELDS[*f], &value) {
                    Ok(s) => {
                        sealed.push(s);
                        Out::Ok
                    }
                    Err(e) => err(e),
                };
                (real, model.seal(c, *f, &value))
            }
            Op::OpenSealed { s, pass } => {
                if sealed.is_empty() || passes.is_empty() {
                    continue;
                }
                let (s, p) = (s % sealed.len(), pass % passes.len());
                let real = sealed[s]
                    .open(&passes[p])
                    .map_or_else(err, |v| Out::Value(v.expose().clone()));
                (real, model.open_sealed(s, p))
            }
            Op::Restrict { c } => {
                let c = c % n;
                (ok(vault.restrict(customers[c])), model.set_restricted(c, true))
            }
            Op::Lift { c } => {
                let c = c % n;
                (ok(vault.lift_restriction(customers[c])), model.set_restricted(c, false))
            }
            Op::Object { c, p } => {
                let c = c % n;
                (ok(vault.object(customers[c], PURPOSES[*p])), model.object(c, *p))
            }
            Op::Erase { c } => {
                let c = c % n;
                (ok(vault.erase_customer(customers[c])), model.erase(c))
            }
            Op::Export { c } => {
                let c = c % n;
                let real = match vault.export_customer(customers[c], Evidence::new("model")) {
                    Ok(export) => {
                        let mut fields: Vec<(String, String)> = export
                            .fields
                            .iter()
                            .map(|(k, v)| {
                                let text = serde_json::from_str::<String>(v.expose());
                                (k.to_string(), text.unwrap_or_else(|_| "<not a string>".to_owned()))
                            })
                            .collect();
                        fields.sort();
                        Out::Fields(fields)
                    }
                    Err(e) => err(e),
                };
                (real, model.export(c))
            }
        };
        prop_assert_eq!(real, expected, "step {}: {:?}", step, op);

        // Every pass handed out so far, on every field: same decision, same value.
        for (i, pass) in passes.iter().enumerate() {
            for (f, name) in FIELDS.iter().enumerate() {
                prop_assert_eq!(
                    reveal_real(&vault, pass, f, false),
                    model.reveal(i, f, false),
                    "after step {} ({:?}): pass {} on {}",
                    step,
                    op,
                    i,
                    name
                );
            }
        }
    }
    // At the end, every purpose's audience and re-consent list, from a cold vault too.
    for cold in [false, true] {
        if cold {
            drop(vault);
            vault = build();
        }
        for (p, name) in PURPOSES.iter().enumerate() {
            prop_assert_eq!(
                listed(&customers, vault.audience(name)),
                model.audience(p),
                "audience of {} at the end (cold vault: {})",
                name,
                cold
            );
            prop_assert_eq!(
                listed(&customers, vault.needs_reconsent(name)),
                model.reconsent(p),
                "re-consent list of {} at the end (cold vault: {})",
                name,
                cold
            );
        }
    }
    vault.verify_audit().unwrap();
    Ok(())
}

fn cases() -> u32 {
    std::env::var("EGARD_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2048, ..ProptestConfig::default() })]

    // One test per backend.
    #[test]
    fn vault_agrees_with_the_model_on_memory_store(ops in prop::collection::vec(op(), 1..48)) {
        run(&ops, MemoryStore::new(), |b| b)?;
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn vault_agrees_with_the_model_on_sqlite_store(ops in prop::collection::vec(op(), 1..48)) {
        run(&ops, egard::SqliteStore::in_memory().unwrap(), |b| b)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, max_shrink_iters: 2048, ..ProptestConfig::default() })]

    /// Group commit of access events changes when events are written, never a decision.
    #[test]
    fn vault_agrees_with_the_model_with_audit_batching(ops in prop::collection::vec(op(), 1..48)) {
        run(&ops, MemoryStore::new(), |b| b.audit_batching(4, std::time::Duration::from_secs(3600)))?;
    }
}

/// A sequence that exercises each rule once, so that the model itself is known to be
/// checked on every branch even if the random cases were few.
#[test]
fn a_fixed_sequence_covers_every_rule() {
    let idx = |k: usize| k;
    let ops = vec![
        Op::Create,
        Op::SetField {
            c: idx(0),
            f: 0,
            too_large: false,
        },
        Op::SetField {
            c: idx(0),
            f: 4,
            too_large: false,
        },
        Op::SetField {
            c: idx(0),
            f: 1,
            too_large: true,
        },
        Op::Authorize { c: idx(0), p: 0 },
        Op::Give { c: idx(0), p: 0 },
        Op::Authorize { c: idx(0), p: 0 },
        Op::Reveal {
            pass: idx(0),
            f: 0,
            as_number: true,
        },
        Op::Define {
            p: 0,
            variant: 1,
            notice_delta: 0,
        },
        Op::Authorize { c: idx(0), p: 0 },
        Op::Define {
            p: 0,
            variant: 1,
            notice_delta: 1,
        },
        Op::Authorize { c: idx(0), p: 0 },
        Op::Give { c: idx(0), p: 0 },
        Op::Authorize { c: idx(0), p: 0 },
        Op::Advance {
            secs: PASS_LIFETIME_SECS,
        },
        Op::Give { c: idx(0), p: 2 },
        Op::Object { c: idx(0), p: 2 },
        Op::Give { c: idx(0), p: 2 },
        Op::Object { c: idx(0), p: 0 },
        Op::Seal { c: idx(0), f: 0 },
        Op::Authorize { c: idx(0), p: 0 },
        Op::OpenSealed {
            s: idx(0),
            pass: idx(0),
        },
        Op::Restrict { c: idx(0) },
        Op::Lift { c: idx(0) },
        Op::Advance { secs: 11 * 86_400 },
        Op::Authorize { c: idx(0), p: 0 },
        Op::Withdraw { c: idx(0), p: 0 },
        Op::Restart,
        Op::Authorize { c: idx(0), p: 0 },
        Op::Export { c: idx(0) },
        Op::Erase { c: idx(0) },
        Op::Erase { c: idx(0) },
        Op::Restart,
        Op::Authorize { c: idx(0), p: 1 },
        Op::Authorize { c: idx(0), p: 4 },
        Op::Create,
        Op::Give { c: idx(1), p: 0 },
        Op::Audience { p: 0 },
        Op::Define {
            p: 0,
            variant: 1,
            notice_delta: 1,
        },
        Op::Audience { p: 0 },
        Op::Reconsent { p: 0 },
        Op::Give { c: idx(1), p: 0 },
        Op::Reconsent { p: 0 },
        Op::Audience { p: 0 },
        Op::Audience { p: 4 },
        Op::Reconsent { p: 4 },
    ];
    run(&ops, MemoryStore::new(), |b| b).unwrap();
}
