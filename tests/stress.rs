//! Concurrency stress: reader threads reveal through passes (and ask for new ones) while a
//! writer thread withdraws, restricts, objects and erases. Once a revoking call has
//! returned, no reveal or authorization that starts afterwards may succeed, whichever thread
//! it runs on and whenever its pass was issued.
//!
//! The happens-before point: the writer sets the round's `revoked` flag (SeqCst) only after
//! the revoking call returned; each reader reads that flag *before* starting a call, and if
//! it was set, the call must fail.
//!
//! Bounded in rounds and iterations; a watchdog fails the test instead of hanging if the
//! threads do not finish (deadlock or livelock).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration as StdDuration, Instant};

use egard::{
    AccessDenied, AccessPass, CustomerId, Error, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Store, Vault,
};

const READERS: usize = 4;
const ROUNDS: usize = 40;
/// Attempts every reader makes after a revocation before the next round starts.
const AFTER: usize = 20;
const WATCHDOG: StdDuration = StdDuration::from_secs(120);

#[derive(Debug, Clone, Copy)]
enum Revoke {
    Withdraw,
    Restrict,
    Object,
    Erase,
}

struct Round {
    customer: CustomerId,
    kind: Revoke,
    /// The purpose the revocation ends.
    purpose: &'static str,
    value: String,
    pass: AccessPass,
    revoked: AtomicBool,
    /// Reveals that succeeded before the revocation (to know the readers really ran).
    opened: AtomicUsize,
    /// Attempts started after the revocation was seen.
    after: AtomicUsize,
}

fn expected_denial(kind: Revoke, e: &Error) -> bool {
    match kind {
        Revoke::Withdraw => matches!(e, Error::Denied(AccessDenied::Withdrawn)),
        Revoke::Restrict => matches!(e, Error::Denied(AccessDenied::Restricted)),
        Revoke::Object => matches!(e, Error::Denied(AccessDenied::Objected)),
        Revoke::Erase => matches!(e, Error::Erased(_)),
    }
}

fn reader(vault: Arc<Vault>, current: Arc<Mutex<Option<Arc<Round>>>>, stop: Arc<AtomicBool>) -> Result<usize, String> {
    let mut checks = 0;
    // Passes this reader obtained itself, possibly racing with the revocation.
    let mut own: Vec<(Arc<Round>, AccessPass)> = Vec::new();
    while !stop.load(SeqCst) {
        let Some(round) = current.lock().unwrap().clone() else {
            thread::yield_now();
            continue;
        };
        own.retain(|(r, _)| Arc::ptr_eq(r, &round));
        // The happens-before point: read the flag BEFORE starting any call.
        let revoked = round.revoked.load(SeqCst);
        let result = vault.reveal::<String>(&round.pass, "email");
        match (&result, revoked) {
            (Ok(v), false) => {
                if v.expose() != &round.value {
                    return Err("revealed a wrong value".into());
                }
                round.opened.fetch_add(1, SeqCst);
            }
            (Ok(_), true) => {
                return Err(format!(
                    "{:?}: a reveal started after the revocation succeeded",
                    round.kind
                ));
            }
            (Err(e), true) if !expected_denial(round.kind, e) => {
                return Err(format!("{:?}: unexpected error after revocation: {e:?}", round.kind));
            }
            (Err(_), _) => {}
        }
        for (_, pass) in &own {
            if vault.reveal::<String>(pass, "email").is_ok() && revoked {
                return Err(format!("{:?}: a pass issued during the race still opens", round.kind));
            }
        }
        let fresh = vault.authorize(round.customer, round.purpose);
        match fresh {
            Ok(_) if revoked => {
                return Err(format!(
                    "{:?}: an authorization started after the revocation succeeded",
                    round.kind
                ));
            }
            Ok(pass) if own.len() < 4 => own.push((round.clone(), pass)),
            Err(e) if revoked && !expected_denial(round.kind, &e) => {
                return Err(format!(
                    "{:?}: unexpected authorize error after revocation: {e:?}",
                    round.kind
                ));
            }
            _ => {}
        }
        if revoked {
            round.after.fetch_add(1, SeqCst);
        }
        checks += 1;
    }
    Ok(checks)
}

/// Waits (yielding) until `done` holds or a reader stopped the test; the watchdog bounds the
/// time.
fn wait_for(stop: &AtomicBool, done: impl Fn() -> bool) {
    while !done() && !stop.load(SeqCst) {
        thread::yield_now();
    }
}

fn writer(vault: Arc<Vault>, current: Arc<Mutex<Option<Arc<Round>>>>, stop: &AtomicBool) -> Result<(), String> {
    let kinds = [Revoke::Withdraw, Revoke::Restrict, Revoke::Object, Revoke::Erase];
    for i in 0..ROUNDS {
        let kind = kinds[i % kinds.len()];
        let customer = vault.create_customer().map_err(|e| e.to_string())?;
        let value = format!("reader-{i}@example.com");
        vault.set_field(customer, "email", &value).map_err(|e| e.to_string())?;
        let purpose = if matches!(kind, Revoke::Object) {
            "fraud"
        } else {
            "news"
        };
        vault
            .give_consent(customer, purpose, Evidence::new("stress"))
            .map_err(|e| e.to_string())?;
        let pass = vault.authorize(customer, purpose).map_err(|e| e.to_string())?;
        let round = Arc::new(Round {
            customer,
            kind,
            purpose,
            value,
            pass,
            revoked: AtomicBool::new(false),
            opened: AtomicUsize::new(0),
            after: AtomicUsize::new(0),
        });
        *current.lock().unwrap() = Some(round.clone());
        // Let the readers open it a few times, then revoke while they keep going.
        wait_for(stop, || round.opened.load(SeqCst) >= READERS);
        let result = match kind {
            Revoke::Withdraw => vault.withdraw_consent(customer, purpose),
            Revoke::Restrict => vault.restrict(customer),
            Revoke::Object => vault.object(customer, purpose),
            Revoke::Erase => vault.erase_customer(customer).map(|_| ()),
        };
        result.map_err(|e| e.to_string())?;
        // The revoking call has returned: from here on, nothing may open.
        round.revoked.store(true, SeqCst);
        wait_for(stop, || round.after.load(SeqCst) >= READERS * AFTER);
        if stop.load(SeqCst) {
            return Err(format!("round {i}: stopped by a reader"));
        }
    }
    Ok(())
}

#[test]
fn no_reveal_succeeds_after_a_revocation_returned() {
    stress(MemoryStore::new());
}

#[cfg(feature = "sqlite")]
#[test]
fn no_reveal_succeeds_after_a_revocation_returned_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    stress(egard::SqliteStore::open(dir.path().join("stress.db")).unwrap());
}

fn stress(store: impl Store) {
    let vault = Arc::new(
        Vault::builder()
            .master_key(MasterKey::from_bytes([5; 32]))
            .store(store)
            .build()
            .unwrap(),
    );
    vault
        .define_purpose(Purpose::new("news", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    vault
        .define_purpose(Purpose::new("fraud", LawfulBasis::LegitimateInterests).fields(["email"]))
        .unwrap();
    let current: Arc<Mutex<Option<Arc<Round>>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(String, Result<usize, String>)>();

    for r in 0..READERS {
        let (vault, current, stop, tx) = (vault.clone(), current.clone(), stop.clone(), tx.clone());
        thread::spawn(move || {
            let outcome = reader(vault, current, stop.clone());
            if outcome.is_err() {
                stop.store(true, SeqCst);
            }
            let _ = tx.send((format!("reader {r}"), outcome));
        });
    }
    {
        let (vault, current, stop, tx) = (vault.clone(), current.clone(), stop.clone(), tx.clone());
        thread::spawn(move || {
            let outcome = writer(vault, current, &stop).map(|()| ROUNDS);
            stop.store(true, SeqCst);
            let _ = tx.send(("writer".to_owned(), outcome));
        });
    }
    drop(tx);

    // The watchdog: every thread must report within the bound, or the test fails.
    let deadline = Instant::now() + WATCHDOG;
    let mut reports = Vec::new();
    while reports.len() < READERS + 1 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(report) => reports.push(report),
            Err(_) => panic!(
                "deadlock or livelock: only {} of {} threads finished within {WATCHDOG:?}",
                reports.len(),
                READERS + 1
            ),
        }
    }
    let errors: Vec<String> = reports
        .iter()
        .filter_map(|(who, outcome)| outcome.as_ref().err().map(|e| format!("{who}: {e}")))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    for (who, outcome) in &reports {
        assert!(outcome.as_ref().is_ok_and(|n| *n > 0), "{who} did no work");
    }
    vault.verify_audit().unwrap();
}
