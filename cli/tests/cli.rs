//! The `egard` binary, run for real on a SQLite file made through the library: every
//! command, its JSON, its exit codes, and what it does with bad input (a wrong or missing
//! key, a wrong path, a newer schema, unknown customers and purposes, a tampered log).

use std::path::PathBuf;

use assert_cmd::Command;
use egard::{CustomerId, Evidence, LawfulBasis, Lookup, MasterKey, Normalizer, Purpose, SqliteStore, Vault};
use predicates::prelude::*;
use serde_json::Value;

/// The demo master key, as hex (the key is `[7; 32]`).
const KEY_HEX: &str = "0707070707070707070707070707070707070707070707070707070707070707";
/// Another key.
const OTHER_KEY_HEX: &str = "0808080808080808080808080808080808080808080808080808080808080808";
/// A value of personal data that must appear only in an export and never elsewhere.
const EMAIL: &str = "alice.canary@example.com";

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    alice: CustomerId,
    bob: CustomerId,
    carol: CustomerId,
}

impl Fixture {
    /// A store with two purposes (the newsletter's notice raised after Bob consented), a
    /// lookup on `email`, Alice (consents to both, one access), Bob (consent under the old
    /// notice) and Carol (withdrew).
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shop.db");
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([7; 32]))
            .store(SqliteStore::open(&db).unwrap())
            .build()
            .unwrap();
        let newsletter = |v| {
            Purpose::new("newsletter", LawfulBasis::Consent)
                .fields(["email"])
                .notice_version(v)
        };
        vault.define_purpose(newsletter(1)).unwrap();
        vault
            .define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["email", "address"]))
            .unwrap();
        vault.define_lookup(Lookup::new("email", Normalizer::Email)).unwrap();
        let alice = vault.create_customer().unwrap();
        vault.set_field(alice, "email", EMAIL).unwrap();
        let bob = vault.create_customer().unwrap();
        vault.set_field(bob, "email", "bob@example.com").unwrap();
        vault
            .give_consent(bob, "newsletter", Evidence::new("web-form"))
            .unwrap();
        vault.define_purpose(newsletter(2)).unwrap();
        vault
            .give_consent(alice, "newsletter", Evidence::new("web-form"))
            .unwrap();
        vault
            .give_consent(alice, "shipping", Evidence::new("contract"))
            .unwrap();
        let carol = vault.create_customer().unwrap();
        vault
            .give_consent(carol, "newsletter", Evidence::new("web-form"))
            .unwrap();
        vault.withdraw_consent(carol, "newsletter").unwrap();
        let pass = vault
            .acting_as("service:mailer")
            .unwrap()
            .authorize(alice, "newsletter")
            .unwrap();
        assert_eq!(vault.reveal::<String>(&pass, "email").unwrap().expose(), EMAIL);
        Fixture {
            _dir: dir,
            db,
            alice,
            bob,
            carol,
        }
    }

    /// `egard --sqlite DB ARGS...` with the right key in the environment and nothing on
    /// standard input.
    fn egard(&self, args: &[&str]) -> Command {
        let mut cmd = bare();
        cmd.env("EGARD_MASTER_KEY", KEY_HEX)
            .arg("--sqlite")
            .arg(&self.db)
            .args(args);
        cmd
    }

    fn sql(&self, statement: &str) {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        conn.execute_batch(statement).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.db.parent().unwrap().join(name)
    }
}

/// The binary, with none of the variables it reads from a developer's environment.
fn bare() -> Command {
    let mut cmd = Command::cargo_bin("egard").unwrap();
    for var in ["EGARD_MASTER_KEY", "EGARD_PREVIOUS_MASTER_KEY", "EGARD_POSTGRES_URL"] {
        cmd.env_remove(var);
    }
    cmd.write_stdin("");
    cmd
}

/// Runs `cmd`, expects `code`, and returns standard output and standard error.
fn run(cmd: &mut Command, code: i32) -> (String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stdout: {stdout}; stderr: {stderr}"
    );
    // No personal data and no key in anything but an export.
    for secret in [EMAIL, KEY_HEX, OTHER_KEY_HEX] {
        assert!(!stderr.contains(secret), "stderr leaks: {stderr}");
    }
    (stdout, stderr)
}

/// Runs `cmd`, expects exit code 0 and one JSON document on standard output.
fn json(cmd: &mut Command) -> Value {
    let (stdout, _) = run(cmd, 0);
    assert!(!stdout.contains(EMAIL), "stdout leaks: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Runs `cmd` with `--json`, expects failure `code`, and returns the failure document.
fn json_failure(cmd: &mut Command, code: i32) -> Value {
    let (stdout, stderr) = run(cmd.arg("--json"), code);
    assert!(stderr.starts_with("egard: error: "), "{stderr}");
    let doc: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], code);
    doc
}

#[test]
fn help_documents_the_exit_codes_and_the_key() {
    let mut help = bare().arg("--help").assert().success();
    for needle in [
        "EXIT CODES",
        "0  ok",
        "2  usage",
        "3  the audit chain is broken",
        "EGARD_MASTER_KEY",
        "Never from a command-line",
    ] {
        help = help.stdout(predicate::str::contains(needle));
    }
    bare()
        .args(["find", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("standard input"));
}

#[test]
fn usage_errors_exit_with_2() {
    run(&mut bare(), 2);
    run(bare().arg("no-such-command"), 2);
    run(bare().args(["changes", "--limit", "0"]), 2);
    // There is no option to give the key on the command line.
    run(bare().args(["--key", KEY_HEX, "stats"]), 2);
    let f = Fixture::new();
    let (_, stderr) = run(bare().env("EGARD_MASTER_KEY", KEY_HEX).arg("stats"), 2);
    assert!(stderr.contains("no store"), "{stderr}");
    let _ = f;
}

#[test]
fn verify_prints_an_anchor_and_checks_against_it() {
    let f = Fixture::new();
    let anchor = f.path("anchor.json");
    let doc = json(f.egard(&["verify", "--json", "--write-anchor"]).arg(&anchor));
    assert_eq!(doc["ok"], true);
    let events = doc["events_verified"].as_u64().unwrap();
    assert!(events > 10);
    assert_eq!(doc["anchor"]["seq"], events);
    assert_eq!(doc["anchor"]["mac"].as_str().unwrap().len(), 64);
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&anchor).unwrap()).unwrap();
    assert_eq!(stored, doc["anchor"]);
    // Against the anchor: intact.
    let (stdout, _) = run(f.egard(&["verify", "--anchor"]).arg(&anchor), 0);
    assert!(
        stdout.contains(&format!("audit log intact: {events} events verified")),
        "{stdout}"
    );
    // The log cut back behind the anchor: verifies on its own, not against the anchor.
    f.sql(&format!("DELETE FROM audit WHERE seq = {events}"));
    run(&mut f.egard(&["verify"]), 0);
    let doc = json_failure(f.egard(&["verify", "--anchor"]).arg(&anchor), 3);
    assert_eq!(doc["error"], "audit_broken");
    // A file that is not an anchor is a failure, not a broken chain.
    std::fs::write(f.path("bad.json"), "{}").unwrap();
    run(f.egard(&["verify", "--anchor"]).arg(f.path("bad.json")), 1);
}

#[test]
fn a_tampered_audit_event_makes_verify_exit_with_3() {
    let f = Fixture::new();
    run(&mut f.egard(&["verify"]), 0);
    // Whoever can write to the database edits one access event.
    f.sql("UPDATE audit SET detail = 'edited' WHERE seq = (SELECT max(seq) FROM audit WHERE kind = 'access_granted')");
    let (stdout, stderr) = run(&mut f.egard(&["verify"]), 3);
    assert!(stdout.is_empty());
    assert!(stderr.contains("audit log is BROKEN at event"), "{stderr}");
    let doc = json_failure(&mut f.egard(&["verify"]), 3);
    assert_eq!(doc["error"], "audit_broken");
}

#[test]
fn a_wrong_or_missing_key_is_said_plainly() {
    let f = Fixture::new();
    // Another key under the same id: one opaque message (no oracle), at once.
    let mut cmd = f.egard(&["stats"]);
    cmd.env("EGARD_MASTER_KEY", OTHER_KEY_HEX);
    let doc = json_failure(&mut cmd, 1);
    assert_eq!(doc["error"], "wrong_master_key");
    assert!(
        doc["message"]
            .as_str()
            .unwrap()
            .contains("cannot open this store's keys")
    );
    // Another id: named.
    let doc = json_failure(&mut f.egard(&["stats", "--key-id", "3"]), 1);
    assert_eq!(
        doc["message"],
        "wrong master key: the store's keys are wrapped under master key id(s) [1], this vault holds id(s) [3]"
    );
    // No key at all.
    let (_, stderr) = run(bare().arg("--sqlite").arg(&f.db).arg("stats"), 1);
    assert!(stderr.contains("no master key: set EGARD_MASTER_KEY"), "{stderr}");
    // A key that is not one.
    let mut cmd = f.egard(&["stats"]);
    cmd.env("EGARD_MASTER_KEY", "not hex");
    let (_, stderr) = run(&mut cmd, 1);
    assert!(stderr.contains("64 hexadecimal digits"), "{stderr}");
    // From a file: works, and wins over the variable.
    let key_file = f.path("master.key");
    std::fs::write(&key_file, KEY_HEX).unwrap();
    let mut cmd = f.egard(&["stats", "--json", "--key-file"]);
    cmd.arg(&key_file).env("EGARD_MASTER_KEY", OTHER_KEY_HEX);
    assert_eq!(json(&mut cmd)["customers"]["total"], 3);
    run(f.egard(&["stats", "--key-file"]).arg(f.path("missing.key")), 1);
    // Nothing was written by the failed runs: the log is as it was.
    assert_eq!(json(&mut f.egard(&["verify", "--json"]))["ok"], true);
}

#[test]
fn a_wrong_path_is_an_error_and_creates_nothing() {
    let f = Fixture::new();
    let missing = f.path("typo.db");
    let (_, stderr) = run(f.egard(&["verify"]).arg("--sqlite").arg(&missing), 1);
    assert!(stderr.contains("no database file at"), "{stderr}");
    assert!(!missing.exists(), "a database was created by accident");
    let doc = json_failure(f.egard(&["stats", "--sqlite"]).arg(f.path("")), 1);
    assert_eq!(doc["error"], "no_database");
}

#[test]
fn a_newer_schema_is_refused() {
    let f = Fixture::new();
    f.sql("UPDATE schema_version SET version = 99");
    let (_, stderr) = run(&mut f.egard(&["stats"]), 1);
    assert!(
        stderr.contains("stored schema version 99 is newer than the supported version"),
        "{stderr}"
    );
}

#[test]
fn customer_shows_consents_and_access_history() {
    let f = Fixture::new();
    let alice = f.alice.to_string();
    let doc = json(&mut f.egard(&["customer", &alice, "--json"]));
    assert_eq!(doc["customer"], alice.as_str());
    assert_eq!(doc["erased"], false);
    let states: Vec<(&str, &str)> = doc["consents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["purpose"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("newsletter", "given"), ("shipping", "given")]);
    let kinds: Vec<&str> = doc["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"access_granted"), "{kinds:?}");
    assert!(kinds.contains(&"field_written"), "{kinds:?}");
    // Who acted: the actor named for the grant, the default one for the plain API.
    let actor_of = |kind: &str| {
        doc["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["actor"].clone())
            .unwrap()
    };
    assert_eq!(actor_of("access_granted"), "service:mailer");
    assert_eq!(actor_of("field_written"), "app");
    let (stdout, _) = run(&mut f.egard(&["customer", &alice]), 0);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("access_granted") && l.contains("actor=service:mailer")),
        "{stdout}"
    );
    let (stdout, _) = run(&mut f.egard(&["customer", &f.carol.to_string()]), 0);
    assert!(
        stdout.contains("newsletter") && stdout.contains("withdrawn"),
        "{stdout}"
    );
    // Unknown and invalid ids.
    let doc = json_failure(&mut f.egard(&["customer", &CustomerId::new().to_string()]), 1);
    assert_eq!(doc["error"], "unknown_customer");
    let doc = json_failure(&mut f.egard(&["customer", "not-a-uuid"]), 1);
    assert_eq!(doc["error"], "invalid_id");
}

#[test]
fn export_answers_the_subject_and_is_audited() {
    let f = Fixture::new();
    let alice = f.alice.to_string();
    let (stdout, _) = run(
        &mut f.egard(&[
            "export",
            &alice,
            "--method",
            "verified-email-link",
            "--source",
            "ticket-42",
        ]),
        0,
    );
    // The subject's own data: here, and only here.
    let export: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(export["fields"]["email"], EMAIL);
    // To a new private file; an existing file is never overwritten.
    let out = f.path("alice.json");
    run(
        f.egard(&["export", &alice, "--method", "verified-email-link", "--out"])
            .arg(&out),
        0,
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written["fields"]["email"], EMAIL);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    }
    run(
        f.egard(&["export", &alice, "--method", "verified-email-link", "--out"])
            .arg(&out),
        1,
    );
    // Both exports are in the log, with their evidence, done by the operator at the command
    // line.
    let history = json(&mut f.egard(&["customer", &alice, "--json"]));
    assert!(
        history["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "exported")
            .all(|e| e["actor"] == "operator:cli")
    );
    let exports: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "exported")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        exports,
        [
            "method=verified-email-link,source=ticket-42",
            "method=verified-email-link"
        ]
    );
    // Bad evidence, unknown customer: nothing exported, nothing created.
    run(&mut f.egard(&["export", &alice, "--method", "Not A Slug"]), 1);
    let unknown = CustomerId::new().to_string();
    let out = f.path("unknown.json");
    run(f.egard(&["export", &unknown, "--method", "m", "--out"]).arg(&out), 1);
    assert!(!out.exists());
    run(&mut f.egard(&["export", &alice]), 2);
}

#[test]
fn erase_needs_confirmation_and_prints_the_receipt() {
    let f = Fixture::new();
    let alice = f.alice.to_string();
    // Not a terminal and no --yes: refused, nothing erased.
    let (_, stderr) = run(&mut f.egard(&["erase", &alice]), 2);
    assert!(stderr.contains("--yes"), "{stderr}");
    let doc = json(&mut f.egard(&["customer", &alice, "--json"]));
    assert_eq!(doc["erased"], false);
    // With --yes: erased, and the receipt printed.
    let doc = json(&mut f.egard(&["erase", &alice, "--yes", "--json"]));
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["receipt"]["customer"], alice.as_str());
    assert_eq!(doc["receipt"]["fields"], serde_json::json!(["email"]));
    let doc = json(&mut f.egard(&["customer", &alice, "--json"]));
    assert_eq!(doc["erased"], true);
    // Twice, or an unknown customer: a failure.
    let doc = json_failure(&mut f.egard(&["erase", &alice, "--yes"]), 1);
    assert_eq!(doc["error"], "erased");
    run(&mut f.egard(&["erase", &CustomerId::new().to_string(), "--yes"]), 1);
    // Text receipt.
    let (stdout, _) = run(&mut f.egard(&["erase", &f.bob.to_string(), "--yes"]), 0);
    assert!(
        stdout.contains("erased at") && stdout.contains("fields shredded: email"),
        "{stdout}"
    );
    run(&mut f.egard(&["verify"]), 0);
    let stats = json(&mut f.egard(&["stats", "--json"]));
    assert_eq!(
        stats["customers"],
        serde_json::json!({"total": 3, "live": 1, "erased": 2, "failing_checks": 0})
    );
}

#[test]
fn find_reads_the_value_from_standard_input() {
    let f = Fixture::new();
    let mut cmd = f.egard(&["find", "email"]);
    cmd.write_stdin(format!("  {}\n", EMAIL.to_uppercase()));
    let (stdout, _) = run(&mut cmd, 0);
    assert_eq!(stdout.trim(), f.alice.to_string());
    let mut cmd = f.egard(&["find", "email", "--json"]);
    cmd.write_stdin("bob@example.com");
    assert_eq!(json(&mut cmd)["customer"], f.bob.to_string());
    // Nobody holds it.
    let mut cmd = f.egard(&["find", "email"]);
    cmd.write_stdin("nobody@example.com\n");
    let doc = json_failure(&mut cmd, 1);
    assert_eq!(doc["error"], "not_found");
    // No lookup on that field; no value.
    let mut cmd = f.egard(&["find", "address"]);
    cmd.write_stdin("x\n");
    assert_eq!(json_failure(&mut cmd, 1)["error"], "no_lookup");
    run(&mut f.egard(&["find", "email"]), 2);
    // The value is not an argument (clap repeats what was typed on the terminal).
    let out = f.egard(&["find", "email", EMAIL]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn audience_counts_the_reachable_and_whom_to_ask_again() {
    let f = Fixture::new();
    let doc = json(&mut f.egard(&["audience", "newsletter", "--json", "--list"]));
    assert_eq!(doc["audience"], 1);
    assert_eq!(doc["needs_reconsent"], 1);
    assert_eq!(doc["audience_ids"], serde_json::json!([f.alice.to_string()]));
    assert_eq!(doc["needs_reconsent_ids"], serde_json::json!([f.bob.to_string()]));
    let (stdout, _) = run(&mut f.egard(&["audience", "shipping"]), 0);
    assert!(stdout.contains("audience (may be reached now): 1"), "{stdout}");
    let doc = json_failure(&mut f.egard(&["audience", "no-such-purpose"]), 1);
    assert_eq!(doc["error"], "unknown_purpose");
}

#[test]
fn purposes_and_lookups_are_listed_and_shown() {
    let f = Fixture::new();
    let doc = json(&mut f.egard(&["purposes", "--json"]));
    let ids: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["newsletter", "shipping"]);
    let doc = json(&mut f.egard(&["purpose", "newsletter", "--json"]));
    assert_eq!(doc["id"], "newsletter");
    let (stdout, _) = run(&mut f.egard(&["purpose", "shipping"]), 0);
    assert!(stdout.contains("lawful basis     contract"), "{stdout}");
    assert!(stdout.contains("fields           email, address"), "{stdout}");
    let doc = json_failure(&mut f.egard(&["purpose", "nope"]), 1);
    assert_eq!(doc["error"], "unknown_purpose");
    run(&mut f.egard(&["purpose", "Not A Slug"]), 1);
    let doc = json(&mut f.egard(&["lookups", "--json"]));
    assert_eq!(doc, serde_json::json!([{"field": "email", "normalizer": "email"}]));
}

#[test]
fn changes_follow_the_feed_from_a_cursor() {
    let f = Fixture::new();
    let first = json(&mut f.egard(&["changes", "--from", "0", "--limit", "3", "--json"]));
    let events = first["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["seq"], 1);
    assert_eq!(events[0]["kind"], "purpose_defined");
    let next = first["next"].as_u64().unwrap();
    assert_eq!(Some(next), events[2]["seq"].as_u64());
    // The rest, from the cursor: later events only, never an access event.
    let rest = json(&mut f.egard(&["changes", "--from", &next.to_string(), "--limit", "1000", "--json"]));
    let rest = rest["events"].as_array().unwrap();
    assert!(rest.iter().all(|e| e["seq"].as_u64().unwrap() > next));
    assert!(rest.iter().all(|e| e["kind"] != "access_granted"));
    assert!(rest.iter().any(|e| e["kind"] == "consent_withdrawn"));
    let (stdout, _) = run(&mut f.egard(&["changes", "--from", "0"]), 0);
    assert!(stdout.contains("consent_withdrawn"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("next cursor: {}", rest.last().unwrap()["seq"])),
        "{stdout}"
    );
}

#[test]
fn rotation_of_the_master_key_and_of_a_customer_key() {
    let f = Fixture::new();
    // The new key under id 2, the old one as the previous key.
    let mut cmd = f.egard(&["rotate", "master", "--key-id", "2", "--json"]);
    cmd.env("EGARD_MASTER_KEY", OTHER_KEY_HEX)
        .env("EGARD_PREVIOUS_MASTER_KEY", KEY_HEX);
    let doc = json(&mut cmd);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["rewrapped"], 3);
    // The old key alone no longer opens the store, and says so.
    let doc = json_failure(&mut f.egard(&["verify"]), 1);
    assert_eq!(
        doc["message"],
        "wrong master key: the store's keys are wrapped under master key id(s) [2], this vault holds id(s) [1]"
    );
    // The new key alone does, from a file this time.
    let key_file = f.path("new.key");
    std::fs::write(&key_file, OTHER_KEY_HEX).unwrap();
    let with_new = |args: &[&str]| {
        let mut cmd = bare();
        cmd.arg("--sqlite")
            .arg(&f.db)
            .arg("--key-file")
            .arg(&key_file)
            .args(["--key-id", "2"])
            .args(args);
        cmd
    };
    assert_eq!(json(&mut with_new(&["verify", "--json"]))["ok"], true);
    let alice = f.alice.to_string();
    let doc = json(&mut with_new(&["rotate", "customer", &alice, "--json"]));
    assert_eq!(doc["rotated"], true);
    let (stdout, _) = run(&mut with_new(&["export", &alice, "--method", "m"]), 0);
    assert!(stdout.contains(EMAIL));
    run(
        &mut with_new(&["rotate", "customer", &CustomerId::new().to_string()]),
        1,
    );
    // The same id for both keys is a usage error.
    let mut cmd = f.egard(&["rotate", "master"]);
    cmd.env("EGARD_PREVIOUS_MASTER_KEY", KEY_HEX);
    run(&mut cmd, 2);
}

#[test]
fn stats_count_customers_consents_and_events() {
    let f = Fixture::new();
    let doc = json(&mut f.egard(&["stats", "--json"]));
    assert_eq!(doc["backend"], "sqlite");
    assert_eq!(doc["schema_version"], egard::store::SQLITE_SCHEMA_VERSION);
    assert_eq!(doc["customers"]["total"], 3);
    assert_eq!(doc["customers"]["live"], 3);
    assert_eq!(doc["lookups"], 1);
    assert_eq!(doc["purposes"], 2);
    assert_eq!(
        doc["consent_records"]["newsletter"],
        serde_json::json!({"given": 2, "withdrawn": 1, "expired": 0, "superseded": 0})
    );
    assert_eq!(doc["consent_records"]["shipping"]["given"], 1);
    let verified = json(&mut f.egard(&["verify", "--json"]))["events_verified"].clone();
    assert_eq!(doc["audit_events"], verified);
    let (stdout, _) = run(&mut f.egard(&["stats"]), 0);
    assert!(stdout.contains("customers        3 (3 live, 0 erased"), "{stdout}");
}

/// A PostgreSQL schema of this test's own, dropped at the end (also on failure).
struct PgSchema {
    url: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

/// The command line on PostgreSQL: the URL from `EGARD_POSTGRES_URL` or `--postgres`, the
/// schema from `--postgres-schema`. Skipped without a server, unless
/// `EGARD_REQUIRE_POSTGRES=1` (as `.ci/run` sets).
#[test]
fn postgres_stores_are_reached_through_the_url() {
    let required = std::env::var("EGARD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let Ok(url) = std::env::var("EGARD_POSTGRES_URL") else {
        assert!(!required, "EGARD_REQUIRE_POSTGRES=1 but EGARD_POSTGRES_URL is not set");
        eprintln!("SKIPPED: PostgreSQL test (set EGARD_POSTGRES_URL to run it)");
        return;
    };
    let schema = PgSchema {
        url: url.clone(),
        name: format!("egard_cli_{}", CustomerId::new().to_string().replace('-', "")),
    };
    let store = egard::PostgresStore::connect_with(&url, egard::PostgresOptions::new().schema(&schema.name)).unwrap();
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes([7; 32]))
        .store(store)
        .build()
        .unwrap();
    vault
        .define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["address"]))
        .unwrap();
    let c = vault.create_customer().unwrap();
    vault.give_consent(c, "shipping", Evidence::new("contract")).unwrap();
    drop(vault);
    // From the environment.
    let mut cmd = bare();
    cmd.env("EGARD_MASTER_KEY", KEY_HEX)
        .env("EGARD_POSTGRES_URL", &url)
        .args(["--postgres-schema", &schema.name, "stats", "--json"]);
    let doc = json(&mut cmd);
    assert_eq!(doc["backend"], "postgres");
    assert_eq!(doc["schema_version"], egard::store::POSTGRES_SCHEMA_VERSION);
    assert_eq!(doc["customers"]["total"], 1);
    assert_eq!(doc["consent_records"]["shipping"]["given"], 1);
    // From the argument; and a wrong key said plainly there too.
    let mut cmd = bare();
    cmd.env("EGARD_MASTER_KEY", KEY_HEX).args([
        "--postgres",
        &url,
        "--postgres-schema",
        &schema.name,
        "verify",
        "--json",
    ]);
    assert_eq!(json(&mut cmd)["events_verified"], 3);
    let mut cmd = bare();
    cmd.env("EGARD_MASTER_KEY", KEY_HEX).args([
        "--postgres",
        &url,
        "--postgres-schema",
        &schema.name,
        "--key-id",
        "9",
        "stats",
    ]);
    run(&mut cmd, 1);
    // An explicit --sqlite wins over the variable.
    let f = Fixture::new();
    let mut cmd = f.egard(&["stats", "--json"]);
    cmd.env("EGARD_POSTGRES_URL", &url);
    assert_eq!(json(&mut cmd)["backend"], "sqlite");
}

/// `erase` on a terminal asks, and erases only on `erase`. The terminal is made by
/// util-linux `script`; without it the test says it was skipped.
#[test]
fn erase_on_a_terminal_asks_for_confirmation() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no `script` to make a terminal with");
        return;
    }
    let f = Fixture::new();
    let bin = assert_cmd::cargo::cargo_bin("egard");
    let erase = |answer: &str| {
        let line = format!("{} --sqlite {} erase {}", bin.display(), f.db.display(), f.alice);
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env("EGARD_MASTER_KEY", KEY_HEX)
            .write_stdin(format!("{answer}\n"));
        cmd.output().unwrap()
    };
    let refused = erase("no");
    assert_eq!(refused.status.code(), Some(1));
    let shown = String::from_utf8_lossy(&refused.stdout);
    assert!(shown.contains("Type `erase` to confirm"), "{shown}");
    assert!(shown.contains("nothing was erased"), "{shown}");
    assert_eq!(
        json(&mut f.egard(&["customer", &f.alice.to_string(), "--json"]))["erased"],
        false
    );
    let done = erase("erase");
    assert_eq!(done.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&done.stdout).contains("erased at"));
    assert_eq!(
        json(&mut f.egard(&["customer", &f.alice.to_string(), "--json"]))["erased"],
        true
    );
}

#[test]
fn audit_archive_writes_a_segment_that_verifies_and_joins_the_store() {
    let f = Fixture::new();
    let dir = f.path("segments");
    // Nothing before 2000.
    let doc = json(
        f.egard(&[
            "audit",
            "archive",
            "--json",
            "--before",
            "2000-01-01T00:00:00Z",
            "--dir",
        ])
        .arg(&dir),
    );
    assert_eq!(doc["archived"], serde_json::json!([]));
    // Everything so far (the fixture wrote its events a moment ago).
    let before = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let doc = json(
        f.egard(&["audit", "archive", "--json", "--before", &before, "--dir"])
            .arg(&dir),
    );
    assert_eq!(doc["archived"].as_array().unwrap().len(), 1);
    let archived = &doc["archived"][0];
    assert_eq!(archived["from_seq"], 1);
    let through = archived["through_seq"].as_u64().unwrap();
    assert!(through > 10);
    let segment = PathBuf::from(archived["path"].as_str().unwrap());
    assert_eq!(
        segment.file_name().unwrap().to_str().unwrap(),
        format!("audit-{:020}-{:020}.jsonl", 1, through)
    );
    // The segment verifies alone and joined with the store; the store verifies on its own.
    let (stdout, _) = run(f.egard(&["audit", "verify-segment"]).arg(&segment), 0);
    assert!(stdout.contains(&format!("intact, events 1-{through}")), "{stdout}");
    let doc = json(f.egard(&["audit", "verify-segment", "--join", "--json"]).arg(&segment));
    assert_eq!(doc["joined"]["archived_events"], through);
    run(&mut f.egard(&["verify"]), 0);
    // The customers untouched since still show their consents.
    run(&mut f.egard(&["customer", &f.alice.to_string()]), 0);
    // A tampered segment: exit code 3, naming the file.
    let text = std::fs::read_to_string(&segment).unwrap();
    let tampered = f.path("tampered.jsonl");
    std::fs::write(
        &tampered,
        text.replacen("\"kind\":\"customer_created\"", "\"kind\":\"erased\"", 1),
    )
    .unwrap();
    let doc = json_failure(f.egard(&["audit", "verify-segment"]).arg(&tampered), 3);
    assert_eq!(doc["error"], "audit_broken");
    let header = f.path("header.jsonl");
    std::fs::write(
        &header,
        text.replacen("\"namespace\":\"egard\"", "\"namespace\":\"other\"", 1),
    )
    .unwrap();
    let doc = json_failure(f.egard(&["audit", "verify-segment"]).arg(&header), 3);
    assert_eq!(doc["error"], "segment_invalid");
    // A second archival (the first one's own event): segments join in order only, and the
    // last one must reach the store's base.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let before = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let doc = json(
        f.egard(&["audit", "archive", "--json", "--before", &before, "--dir"])
            .arg(&dir),
    );
    let second = PathBuf::from(doc["archived"][0]["path"].as_str().unwrap());
    assert_eq!(doc["archived"][0]["from_seq"], through + 1);
    run(
        f.egard(&["audit", "verify-segment", "--join"])
            .arg(&segment)
            .arg(&second),
        0,
    );
    let doc = json_failure(
        f.egard(&["audit", "verify-segment", "--join"])
            .arg(&second)
            .arg(&segment),
        3,
    );
    assert_eq!(doc["error"], "segment_invalid");
    json_failure(f.egard(&["audit", "verify-segment", "--join"]).arg(&segment), 3);
    // A bad time is a usage error, and nothing is archived.
    run(
        f.egard(&["audit", "archive", "--before", "yesterday", "--dir"])
            .arg(&dir),
        2,
    );
}
