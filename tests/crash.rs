//! Crash safety, for real: a child process writes consents, withdrawals and fields in a loop
//! and prints each write once it is acknowledged; the parent kills it with SIGKILL at random
//! moments, reopens the store, and checks that every acknowledged write is there and that
//! nothing half-written is visible.
//!
//! The child is this same test binary, run again with `EGARD_CRASH_DB` set: see
//! [`child_process_entry_point`].

#![cfg(all(feature = "sqlite", unix))]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use egard::{AuditKind, ConsentId, CustomerId, Evidence, LawfulBasis, MasterKey, Purpose, SqliteStore, Store, Vault};

const KILLS: usize = 24;
const KEY: [u8; 32] = [0xc4; 32];
const DB_VAR: &str = "EGARD_CRASH_DB";
const RUN_VAR: &str = "EGARD_CRASH_RUN";

/// With `batching`, access events are group-committed with the next change (some may be lost
/// by a kill, by design; changes never are).
fn open(path: &str, batching: bool) -> (Vault, Vec<CustomerId>) {
    let store = SqliteStore::open(path).unwrap();
    let ids = store.customer_ids().unwrap();
    let mut builder = Vault::builder().master_key(MasterKey::from_bytes(KEY)).store(store);
    if batching {
        builder = builder.audit_batching(8, Duration::from_millis(20));
    }
    (builder.build().unwrap(), ids)
}

/// Random bytes without a dependency: a v4 UUID is 122 random bits from the OS.
fn random() -> u64 {
    let b = uuid::Uuid::new_v4();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap())
}

/// Not a test of its own: when `EGARD_CRASH_DB` is set, this is the child process of
/// [`acknowledged_writes_survive_sigkill`], and it writes until it is killed. Without the
/// variable it returns at once.
#[test]
fn child_process_entry_point() {
    let Ok(path) = std::env::var(DB_VAR) else {
        return;
    };
    let run: u64 = std::env::var(RUN_VAR).unwrap().parse().unwrap();
    // Every other run group-commits its access events.
    let (vault, mut customers) = open(&path, run % 2 == 1);
    vault
        .define_purpose(Purpose::new("newsletter", LawfulBasis::Consent).fields(["email"]))
        .unwrap();
    let ack = |line: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {line}").unwrap();
        out.flush().unwrap();
    };
    let mut n = 0u64;
    loop {
        n += 1;
        let r = random();
        let pick = |customers: &[CustomerId], salt: u64| customers[((r >> 8) ^ salt) as usize % customers.len()];
        match if customers.is_empty() { 0 } else { r % 8 } {
            0 => {
                let c = vault.create_customer().unwrap();
                ack(format!("customer {c}"));
                customers.push(c);
                vault.set_field(c, "email", &format!("{run}:{n}")).unwrap();
                ack(format!("field {c} {run} {n}"));
            }
            1 | 2 => {
                let c = pick(&customers, 0);
                vault.set_field(c, "email", &format!("{run}:{n}")).unwrap();
                ack(format!("field {c} {run} {n}"));
            }
            3 | 4 => {
                let c = pick(&customers, 0);
                let id = vault.give_consent(c, "newsletter", Evidence::new("web")).unwrap();
                ack(format!("give {c} {id}"));
            }
            5 => {
                let c = pick(&customers, 0);
                vault.withdraw_consent(c, "newsletter").unwrap();
                ack(format!("withdraw {c}"));
            }
            6 => {
                let batch: Vec<CustomerId> = (0..4).map(|i| pick(&customers, i * 7919)).collect();
                let ids = vault
                    .give_consents(batch.iter().map(|&c| (c, "newsletter", Evidence::new("import"))))
                    .unwrap();
                for (c, id) in batch.iter().zip(ids) {
                    ack(format!("give {c} {id}"));
                }
            }
            _ => {
                let c = pick(&customers, 0);
                if let Ok(pass) = vault.authorize(c, "newsletter") {
                    // A kill between create_customer and its first set_field leaves a
                    // customer without an email: that one is refused as unknown.
                    match vault.reveal::<String>(&pass, "email") {
                        Ok(_) | Err(egard::Error::UnknownField(_)) => {}
                        Err(e) => panic!("reveal failed: {e}"),
                    }
                }
            }
        }
    }
}

/// What the children acknowledged, in order.
#[derive(Default)]
struct Model {
    customers: HashSet<CustomerId>,
    /// The last acknowledged value per customer, as (run, n).
    fields: HashMap<CustomerId, (u64, u64)>,
    given: HashMap<CustomerId, Vec<ConsentId>>,
    /// Consents that must not be live: given before an acknowledged withdrawal.
    ended: HashSet<ConsentId>,
}

impl Model {
    fn record(&mut self, line: &str) {
        let parts: Vec<&str> = line.split(' ').collect();
        let c: CustomerId = parts[1].parse().unwrap();
        match parts[0] {
            "customer" => {
                self.customers.insert(c);
            }
            "field" => {
                self.fields
                    .insert(c, (parts[2].parse().unwrap(), parts[3].parse().unwrap()));
            }
            "give" => {
                let id = ConsentId::from_uuid(parts[2].parse().unwrap());
                self.given.entry(c).or_default().push(id);
            }
            "withdraw" => {
                self.ended.extend(self.given.get(&c).into_iter().flatten().copied());
            }
            other => panic!("unknown acknowledgement {other}"),
        }
    }

    fn check(&self, path: &str, kill: usize) {
        let (vault, ids) = open(path, false);
        let ids: HashSet<CustomerId> = ids.into_iter().collect();
        vault
            .verify_audit()
            .unwrap_or_else(|e| panic!("kill {kill}: audit chain broken: {e}"));
        for c in &self.customers {
            assert!(ids.contains(c), "kill {kill}: acknowledged customer {c} lost");
        }
        for &c in &ids {
            // Every customer, acknowledged or not, is whole: its key unwraps, every field
            // opens, every consent has its audit event.
            let export = vault
                .export_customer(c, Evidence::new("crash-check"))
                .unwrap_or_else(|e| panic!("kill {kill}: customer {c} is half-written: {e}"));
            let events = &export.audit_events;
            let has_event = |kind: AuditKind, detail: &str| events.iter().any(|e| e.kind == kind && e.detail == detail);
            assert!(
                events.iter().any(|e| e.kind == AuditKind::CustomerCreated),
                "kill {kill}: customer {c} without its creation event"
            );
            let consent_ids: HashSet<ConsentId> = export.consents.iter().map(|r| r.id).collect();
            for record in &export.consents {
                let id = record.id.to_string();
                assert!(
                    has_event(AuditKind::ConsentGiven, &id),
                    "kill {kill}: consent {id} without its audit event"
                );
                if record.withdrawn_at.is_some() {
                    assert!(
                        has_event(AuditKind::ConsentWithdrawn, &id),
                        "kill {kill}: withdrawal of {id} without its audit event"
                    );
                }
                if let Some(next) = record.superseded_by {
                    assert!(
                        consent_ids.contains(&next),
                        "kill {kill}: consent {id} superseded by a record that does not exist"
                    );
                }
                if self.ended.contains(&record.id) {
                    assert!(
                        record.withdrawn_at.is_some() || record.superseded_by.is_some(),
                        "kill {kill}: acknowledged withdrawal of {id} lost"
                    );
                }
            }
            for id in self.given.get(&c).into_iter().flatten() {
                assert!(consent_ids.contains(id), "kill {kill}: acknowledged consent {id} lost");
            }
            let live = export
                .consents
                .iter()
                .filter(|r| r.withdrawn_at.is_none() && r.superseded_by.is_none())
                .count();
            assert!(live <= 1, "kill {kill}: customer {c} has {live} live consents");
            if let Some(&(run, n)) = self.fields.get(&c) {
                let value = export
                    .fields
                    .get("email")
                    .and_then(|v| serde_json::from_str::<String>(v.expose()).ok());
                let value = value.unwrap_or_else(|| panic!("kill {kill}: acknowledged field of {c} lost"));
                let (r, m) = value.split_once(':').unwrap();
                let stored: (u64, u64) = (r.parse().unwrap(), m.parse().unwrap());
                assert!(stored >= (run, n), "kill {kill}: field of {c} older than acknowledged");
            }
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let path = path.to_str().unwrap().to_owned();
    let exe = std::env::current_exe().unwrap();
    let mut model = Model::default();
    let mut acknowledged = 0;
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "child_process_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DB_VAR, &path)
            .env(RUN_VAR, kill.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            // Only whole lines count: a line cut by the kill was not acknowledged.
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    if let Some(ack) = text.strip_prefix("ACK ") {
                        let _ = tx.send(ack.to_owned());
                    }
                }
                line.clear();
            }
        });
        // Kill at a random moment once the child is writing.
        let first = rx.recv_timeout(Duration::from_secs(60)).expect("the child never wrote");
        std::thread::sleep(Duration::from_millis(random() % 150));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let lines: Vec<String> = std::iter::once(first).chain(rx.try_iter()).collect();
        acknowledged += lines.len();
        for line in &lines {
            model.record(line);
        }
        model.check(&path, kill);
    }
    assert!(
        acknowledged > KILLS * 5,
        "only {acknowledged} acknowledged writes in {KILLS} runs"
    );
    eprintln!("{KILLS} kills, {acknowledged} acknowledged writes, all present");
}
