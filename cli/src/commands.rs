//! The commands. Each opens the vault, does one thing through the library's public API, and
//! prints the outcome as text or JSON.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use egard::{AuditAnchor, AuditEvent, AuditKind, ConsentState, CustomerId, Error, Evidence, Purpose, Vault};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cli::{Audit, Cli, Command, Rotate};
use crate::connect::{self, Opened};
use crate::output::{Failure, print_json, progress};

/// Runs the command the command line names.
pub fn run(cli: &Cli) -> Result<(), Failure> {
    let json = cli.json;
    // Check what needs no store first, so that a bad argument changes nothing.
    match &cli.command {
        Command::Customer { customer }
        | Command::Export { customer, .. }
        | Command::Erase { customer, .. }
        | Command::Rotate(Rotate::Customer { customer }) => {
            customer_id(customer)?;
        }
        _ => {}
    }
    let opened = connect::open(&cli.conn)?;
    let vault = &opened.vault;
    match &cli.command {
        Command::Verify { anchor, write_anchor } => verify(vault, anchor.as_deref(), write_anchor.as_deref(), json),
        Command::Customer { customer } => show_customer(vault, customer_id(customer)?, json),
        Command::Export {
            customer,
            method,
            source,
            out,
        } => export(vault, customer_id(customer)?, method, source.as_deref(), out.as_deref()),
        Command::Erase { customer, yes } => erase(vault, customer_id(customer)?, *yes, json),
        Command::Find { field } => find(vault, field, json),
        Command::Audience { purpose, list } => audience(vault, purpose, *list, json),
        Command::Purposes => purposes(vault, json),
        Command::Purpose { purpose } => {
            let p = vault.purpose(purpose)?;
            if json {
                print_json(&purpose_json(&p));
            } else {
                print_purpose(&p);
            }
            Ok(())
        }
        Command::Lookups => lookups(vault, json),
        Command::Changes {
            from,
            limit,
            follow,
            interval,
        } => changes(vault, *from, *limit, *follow, *interval, json),
        Command::Rotate(Rotate::Master) => rotate_master(vault, json),
        Command::Rotate(Rotate::Customer { customer }) => {
            let c = customer_id(customer)?;
            vault.rotate_customer_key(c)?;
            if json {
                print_json(&json!({"ok": true, "customer": c.to_string(), "rotated": true}));
            } else {
                println!("customer {c}: new data key, fields re-sealed under it");
            }
            Ok(())
        }
        Command::Stats => stats(&opened, json),
        Command::Audit(Audit::Archive { before, dir }) => archive(vault, before, dir, json),
        Command::Audit(Audit::VerifySegment { files, join }) => verify_segments(vault, files, *join, json),
    }
}

/// A customer id from the command line; the rejected text is not repeated.
fn customer_id(text: &str) -> Result<CustomerId, Failure> {
    CustomerId::from_str(text.trim()).map_err(|e: Error| Failure::new("invalid_id", e.to_string()))
}

// ----- verify -----

fn verify(vault: &Vault, anchor: Option<&Path>, write_anchor: Option<&Path>, json: bool) -> Result<(), Failure> {
    let anchor = anchor.map(read_anchor).transpose()?;
    let bar = progress(None, json, "verifying the audit chain");
    bar.enable_steady_tick(Duration::from_millis(120));
    let verdict = match &anchor {
        Some(a) => vault.verify_audit_against(a),
        None => vault.verify_audit_with_progress(&mut |p| bar.set_position(p.events)),
    };
    bar.finish_and_clear();
    let report = verdict?;
    let new_anchor = vault.audit_anchor()?;
    if let Some(path) = write_anchor {
        let text = serde_json::to_string(&new_anchor)
            .map_err(|_| Failure::new("failure", "the anchor could not be encoded"))?;
        write_replacing(path, format!("{text}\n").as_bytes())?;
    }
    if json {
        print_json(&json!({
            "ok": true,
            "events_verified": report.events_verified,
            "head_mac": report.head_mac,
            "checked_against_anchor": anchor.map(|a| a.seq),
            "anchor": new_anchor,
        }));
    } else {
        println!("audit log intact: {} events verified", report.events_verified);
        if let Some(a) = anchor {
            println!("it reaches the anchor given (event {})", a.seq);
        }
        let text = serde_json::to_string(&new_anchor).unwrap_or_default();
        println!("new anchor (keep it outside the database): {text}");
    }
    Ok(())
}

fn read_anchor(path: &Path) -> Result<AuditAnchor, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            "bad_anchor",
            format!("cannot read the anchor file {}: {e}", path.display()),
        )
    })?;
    serde_json::from_str(&text).map_err(|_| {
        Failure::new(
            "bad_anchor",
            format!(
                "{} is not an anchor ({{\"seq\": N, \"mac\": \"64 hex digits\"}})",
                path.display()
            ),
        )
    })
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed over it: a crash
/// leaves the old file or the new one, never half of one.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new("io", format!("cannot write {}: {e}", path.display()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

// ----- audit archive, verify-segment -----

fn archive(vault: &Vault, before: &str, dir: &Path, json: bool) -> Result<(), Failure> {
    let before = chrono::DateTime::parse_from_rfc3339(before.trim())
        .map_err(|_| Failure::usage("--before must be an RFC 3339 time, e.g. 2025-01-01T00:00:00Z"))?
        .with_timezone(&Utc);
    let bar = progress(None, json, "archiving the audit log");
    bar.enable_steady_tick(Duration::from_millis(120));
    // One segment (and one bounded store batch) per step, until nothing is old enough.
    let result = vault.archive_audit_to_dir_all(before, dir, &mut |p| {
        bar.set_message(format!("archiving the audit log: {:?}", p.stage).to_lowercase());
        bar.set_position(p.seq);
    });
    let reports = match result {
        Ok(reports) => reports,
        Err(e) => {
            bar.finish_and_clear();
            return Err(e.into());
        }
    };
    bar.finish_and_clear();
    if json {
        print_json(&json!({"ok": true, "archived": reports}));
    } else if reports.is_empty() {
        println!("nothing to archive: no event before {before} after the last archival");
    } else {
        let events: u64 = reports.iter().map(|r| r.events).sum();
        let bytes: u64 = reports.iter().map(|r| r.segment_bytes).sum();
        let kept: u64 = reports.last().map_or(0, |r| r.kept);
        for r in &reports {
            println!(
                "archived events {}-{} ({} events, {} bytes) into {}",
                r.from_seq,
                r.through_seq,
                r.events,
                r.segment_bytes,
                r.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
        println!(
            "{events} events in {} segment(s), {bytes} bytes; the store keeps {kept} below the archived point (the events its records are bound to)",
            reports.len()
        );
    }
    Ok(())
}

fn verify_segments(vault: &Vault, files: &[std::path::PathBuf], join: bool, json: bool) -> Result<(), Failure> {
    let open = |path: &std::path::PathBuf| {
        std::fs::File::open(path).map_err(|e| Failure::new("io", format!("cannot read {}: {e}", path.display())))
    };
    let bar = progress(Some(files.len() as u64), json, "verifying segments");
    let mut reports = Vec::new();
    for path in files {
        let report = vault
            .verify_audit_segment(std::io::BufReader::new(open(path)?))
            .map_err(|e| {
                bar.finish_and_clear();
                let mut failure = Failure::from(e);
                failure.message = format!("{}: {}", path.display(), failure.message);
                failure
            })?;
        bar.inc(1);
        reports.push((path, report));
    }
    bar.finish_and_clear();
    let joined = if join {
        let readers = files
            .iter()
            .map(|p| open(p).map(std::io::BufReader::new))
            .collect::<Result<Vec<_>, _>>()?;
        Some(vault.verify_audit_with_segments(readers)?)
    } else {
        None
    };
    if json {
        let segments: Vec<Value> = reports
            .iter()
            .map(|(path, r)| json!({"file": path.display().to_string(), "report": r}))
            .collect();
        print_json(&json!({"ok": true, "segments": segments, "joined": joined}));
    } else {
        for (path, r) in &reports {
            println!(
                "{}: intact, events {}-{} ({} events)",
                path.display(),
                r.start.seq.saturating_add(1),
                r.end.seq,
                r.events
            );
        }
        if let Some(j) = joined {
            println!(
                "the segments join each other and the store: history verified from event {} on, {} events in the store",
                j.history_from.map_or(1, |a| a.seq.saturating_add(1)),
                j.store.events_verified
            );
        }
    }
    Ok(())
}

// ----- customer -----

fn state_code(state: ConsentState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

fn event_json(e: &AuditEvent) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

fn event_line(e: &AuditEvent) -> String {
    let mut line = format!("#{:<6} {}  {}", e.seq, e.at.format("%Y-%m-%dT%H:%M:%SZ"), e.kind.code());
    if let Some(a) = &e.actor {
        line.push_str(&format!("  actor={a}"));
    }
    if let Some(c) = e.customer {
        line.push_str(&format!("  customer={c}"));
    }
    if let Some(p) = &e.purpose {
        line.push_str(&format!("  purpose={p}"));
    }
    if let Some(f) = &e.field {
        line.push_str(&format!("  field={f}"));
    }
    if !e.detail.is_empty() {
        line.push_str(&format!("  {}", e.detail));
    }
    line
}

fn show_customer(vault: &Vault, c: CustomerId, json: bool) -> Result<(), Failure> {
    let now = Utc::now();
    let consents = vault.consents(c)?;
    let history = vault.audit_events(c)?;
    let erased = is_erased(&history);
    if json {
        let consents: Vec<Value> = consents
            .iter()
            .map(|k| {
                let mut v = serde_json::to_value(k).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut v {
                    map.insert("state".into(), Value::String(state_code(k.state(now))));
                }
                v
            })
            .collect();
        print_json(&json!({
            "customer": c.to_string(),
            "erased": erased,
            "consents": consents,
            "history": history.iter().map(event_json).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!("customer {c}{}", if erased { " (erased)" } else { "" });
    println!("consents ({}):", consents.len());
    for k in &consents {
        let mut line = format!(
            "  {:<20} {:<10} notice v{}  given {}",
            k.purpose.to_string(),
            state_code(k.state(now)),
            k.notice_version,
            k.given_at.format("%Y-%m-%dT%H:%M:%SZ")
        );
        if let Some(t) = k.expires_at {
            line.push_str(&format!("  expires {}", t.format("%Y-%m-%dT%H:%M:%SZ")));
        }
        if let Some(t) = k.withdrawn_at {
            line.push_str(&format!("  withdrawn {}", t.format("%Y-%m-%dT%H:%M:%SZ")));
        }
        line.push_str(&format!("  evidence {}  id {}", k.evidence.method(), k.id));
        println!("{line}");
    }
    println!("history ({} events):", history.len());
    for e in &history {
        println!("  {}", event_line(e));
    }
    Ok(())
}

/// Whether the customer's audit history holds their erasure (an erased customer's consent
/// history is kept; their keys and data are gone).
fn is_erased(history: &[AuditEvent]) -> bool {
    history.iter().any(|e| e.kind == AuditKind::Erased)
}

// ----- export -----

fn export(vault: &Vault, c: CustomerId, method: &str, source: Option<&str>, out: Option<&Path>) -> Result<(), Failure> {
    let mut evidence = Evidence::new(method);
    if let Some(s) = source {
        evidence = evidence.source(s);
    }
    // The file first: if it cannot be made, nothing is exported (nor audited as exported).
    let mut file = match out {
        Some(path) => Some(create_private(path)?),
        None => None,
    };
    let result = vault
        .export_customer(c, evidence)
        .and_then(|export| export.to_json())
        .map_err(Failure::from);
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(failure) => {
            if let Some(path) = out {
                let _ = std::fs::remove_file(path);
            }
            return Err(failure);
        }
    };
    match (&mut file, out) {
        (Some(f), Some(path)) => {
            f.write_all(&bytes)
                .and_then(|()| f.write_all(b"\n"))
                .and_then(|()| f.sync_all())
                .map_err(|e| Failure::new("io", format!("cannot write {}: {e}", path.display())))?;
            eprintln!("export of customer {c} written to {}", path.display());
        }
        _ => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.write_all(b"\n"))
                .and_then(|()| stdout.flush())
                .map_err(|e| Failure::new("io", format!("cannot write the export: {e}")))?;
        }
    }
    Ok(())
}

/// A new file only the owner can read; an existing file is an error, never overwritten.
fn create_private(path: &Path) -> Result<std::fs::File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| Failure::new("io", format!("cannot create {}: {e}", path.display())))
}

// ----- erase -----

fn erase(vault: &Vault, c: CustomerId, yes: bool, json: bool) -> Result<(), Failure> {
    // An unknown or already erased customer is said before anything is asked.
    vault.consents(c)?;
    if is_erased(&vault.audit_events(c)?) {
        return Err(Error::Erased(c).into());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "erase asks for confirmation on a terminal; without one, give --yes",
            ));
        }
        eprint!(
            "Erase customer {c}? Their data keys are destroyed: their data in this store can never \
             be opened again. Type `erase` to confirm: "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| Failure::new("io", format!("cannot read the confirmation: {e}")))?;
        if answer.trim() != "erase" {
            return Err(Failure::new("not_confirmed", "not confirmed: nothing was erased"));
        }
    }
    let receipt = vault.erase_customer(c)?;
    if json {
        print_json(&json!({"ok": true, "receipt": receipt}));
    } else {
        println!(
            "customer {c} erased at {}",
            receipt.erased_at.format("%Y-%m-%dT%H:%M:%S%.6fZ")
        );
        let fields: Vec<String> = receipt.fields.iter().map(ToString::to_string).collect();
        println!(
            "fields shredded: {}",
            if fields.is_empty() {
                "(none)".to_owned()
            } else {
                fields.join(", ")
            }
        );
        let versions: Vec<String> = receipt.key_versions.iter().map(ToString::to_string).collect();
        println!("data key versions destroyed: {}", versions.join(", "));
        let receipt_json = serde_json::to_string(&receipt).unwrap_or_default();
        println!("receipt (keep it in the erasure ledger, outside the database): {receipt_json}");
    }
    Ok(())
}

// ----- find -----

fn find(vault: &Vault, field: &str, json: bool) -> Result<(), Failure> {
    let stdin = std::io::stdin();
    let on_terminal = stdin.is_terminal();
    if on_terminal {
        eprint!("value of `{field}` to find (it shows as you type): ");
        let _ = std::io::stderr().flush();
    }
    let mut value = Zeroizing::new(String::new());
    if on_terminal {
        stdin.lock().read_line(&mut value)
    } else {
        stdin.lock().read_to_string(&mut value)
    }
    .map_err(|_| Failure::new("io", "cannot read the value from standard input (it must be UTF-8)"))?;
    // One trailing line end is the terminal's or `echo`'s, not the value's.
    let trimmed = value
        .strip_suffix("\r\n")
        .or_else(|| value.strip_suffix('\n'))
        .unwrap_or(&value);
    if trimmed.is_empty() {
        return Err(Failure::usage("no value on standard input"));
    }
    match vault.find_customer(field, trimmed)? {
        Some(c) => {
            if json {
                print_json(&json!({"ok": true, "field": field, "customer": c.to_string()}));
            } else {
                println!("{c}");
            }
            Ok(())
        }
        None => Err(Failure::new(
            "not_found",
            format!("no live customer holds this value in `{field}`"),
        )),
    }
}

// ----- audience -----

fn audience(vault: &Vault, purpose: &str, list: bool, json: bool) -> Result<(), Failure> {
    let bar = progress(None, json, "listing the audience");
    let mut reachable = Vec::new();
    let mut reachable_count = 0u64;
    for c in vault.audience(purpose)? {
        let c = c?;
        reachable_count += 1;
        bar.inc(1);
        if list {
            reachable.push(c.to_string());
        }
    }
    bar.set_message("listing whom to ask again");
    bar.set_position(0);
    let mut reconsent = Vec::new();
    let mut reconsent_count = 0u64;
    for c in vault.needs_reconsent(purpose)? {
        let c = c?;
        reconsent_count += 1;
        bar.inc(1);
        if list {
            reconsent.push(c.to_string());
        }
    }
    bar.finish_and_clear();
    if json {
        let mut doc = json!({
            "purpose": purpose,
            "audience": reachable_count,
            "needs_reconsent": reconsent_count,
        });
        if let (true, Value::Object(map)) = (list, &mut doc) {
            map.insert("audience_ids".into(), json!(reachable));
            map.insert("needs_reconsent_ids".into(), json!(reconsent));
        }
        print_json(&doc);
    } else {
        println!("purpose {purpose}");
        println!("audience (may be reached now): {reachable_count}");
        for c in &reachable {
            println!("  {c}");
        }
        println!("to ask again (consent under an older notice): {reconsent_count}");
        for c in &reconsent {
            println!("  {c}");
        }
    }
    Ok(())
}

// ----- purposes and lookups -----

fn purpose_json(p: &Purpose) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

fn basis_code(p: &Purpose) -> String {
    serde_json::to_value(p.basis())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn purposes(vault: &Vault, json: bool) -> Result<(), Failure> {
    let all = vault.purposes();
    if json {
        print_json(&Value::Array(all.iter().map(purpose_json).collect()));
        return Ok(());
    }
    if all.is_empty() {
        println!("no purposes defined");
    }
    for p in &all {
        let fields: Vec<&str> = p.field_names().collect();
        println!(
            "{:<20} {:<20} notice v{}  fields: {}",
            p.id(),
            basis_code(p),
            p.required_notice_version(),
            fields.join(", ")
        );
    }
    Ok(())
}

fn print_purpose(p: &Purpose) {
    let fields: Vec<&str> = p.field_names().collect();
    println!("purpose          {}", p.id());
    println!("description      {}", p.description_text());
    println!("lawful basis     {}", basis_code(p));
    println!("fields           {}", fields.join(", "));
    println!("notice version   {}", p.required_notice_version());
    let days = |d: Option<chrono::Duration>| match d {
        Some(d) => format!("{} days", d.num_days()),
        None => "none".to_owned(),
    };
    println!("consent lifetime {}", days(p.lifetime()));
    println!("retention        {}", days(p.retention_period()));
    println!("special category {}", p.is_special_category());
    println!("direct marketing {}", p.is_direct_marketing());
}

fn lookups(vault: &Vault, json: bool) -> Result<(), Failure> {
    let all = vault.lookups();
    if json {
        let docs: Vec<Value> = all
            .iter()
            .map(|l| json!({"field": l.field(), "normalizer": l.normalizer().code()}))
            .collect();
        print_json(&Value::Array(docs));
        return Ok(());
    }
    if all.is_empty() {
        println!("no lookups defined");
    }
    for l in &all {
        println!("{:<20} normalizer {}", l.field(), l.normalizer().code());
    }
    Ok(())
}

// ----- changes -----

fn changes(vault: &Vault, from: u64, limit: u64, follow: bool, interval_ms: u64, json: bool) -> Result<(), Failure> {
    let limit = usize::try_from(limit).unwrap_or(egard::MAX_CHANGES_PAGE);
    let mut cursor = from;
    loop {
        let page = vault.changes_since(cursor, limit)?;
        if let Some(last) = page.last() {
            cursor = last.seq;
        }
        if json {
            if !page.is_empty() || !follow {
                print_json(&json!({
                    "events": page.iter().map(event_json).collect::<Vec<_>>(),
                    "next": cursor,
                }));
            }
        } else {
            for e in &page {
                println!("{}", event_line(e));
            }
            if !follow {
                println!("next cursor: {cursor}");
            }
        }
        let _ = std::io::stdout().flush();
        if !follow {
            return Ok(());
        }
        // A full page: more may be waiting, ask again at once.
        if page.len() < limit {
            std::thread::sleep(Duration::from_millis(interval_ms));
        }
    }
}

// ----- rotation -----

fn rotate_master(vault: &Vault, json: bool) -> Result<(), Failure> {
    let bar = progress(None, json, "re-wrapping data keys under the current master key");
    bar.enable_steady_tick(Duration::from_millis(120));
    let result = vault.rotate_master_key();
    bar.finish_and_clear();
    let rewrapped = result?;
    if json {
        print_json(&json!({"ok": true, "rewrapped": rewrapped}));
    } else {
        println!("master key rotation done: {rewrapped} data keys re-wrapped under the current key");
        println!("every key now opens with the current master key alone: the previous one can be retired");
    }
    Ok(())
}

// ----- stats -----

/// Consent records by state, for one purpose.
#[derive(Default, serde::Serialize)]
struct StateCounts {
    given: u64,
    withdrawn: u64,
    expired: u64,
    superseded: u64,
}

fn stats(opened: &Opened, json: bool) -> Result<(), Failure> {
    let vault = &opened.vault;
    let store = &opened.store;
    let ids = store.customer_ids().map_err(Error::from)?;
    let now = Utc::now();
    let mut by_purpose: BTreeMap<String, StateCounts> = vault
        .purposes()
        .iter()
        .map(|p| (p.id().to_owned(), StateCounts::default()))
        .collect();
    let (mut live, mut erased, mut unreadable) = (0u64, 0u64, 0u64);
    let bar = progress(Some(ids.len() as u64), json, "reading customers");
    for &c in &ids {
        bar.inc(1);
        match vault.consents(c) {
            Ok(_) if is_erased(&vault.audit_events(c)?) => erased += 1,
            Ok(consents) => {
                live += 1;
                for k in consents {
                    let counts = by_purpose.entry(k.purpose.to_string()).or_default();
                    match k.state(now) {
                        ConsentState::Given => counts.given += 1,
                        ConsentState::Withdrawn => counts.withdrawn += 1,
                        ConsentState::Expired => counts.expired += 1,
                        ConsentState::Superseded => counts.superseded += 1,
                    }
                }
            }
            // A customer whose records fail their check is counted, not shown: `customer`
            // says more about one.
            Err(Error::Crypto) => unreadable += 1,
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.into());
            }
        }
    }
    bar.finish_and_clear();
    let events = store.audit_head().map_err(Error::from)?.map_or(0, |e| e.seq);
    let lookups = vault.lookups().len();
    let doc = json!({
        "backend": opened.backend.name(),
        "schema_version": opened.backend.schema_version(),
        "customers": {"total": ids.len(), "live": live, "erased": erased, "failing_checks": unreadable},
        "purposes": by_purpose.len(),
        "consent_records": by_purpose,
        "lookups": lookups,
        "audit_events": events,
    });
    if json {
        print_json(&doc);
        return Ok(());
    }
    println!("backend          {}", opened.backend.name());
    println!("schema version   {}", opened.backend.schema_version());
    println!(
        "customers        {} ({live} live, {erased} erased, {unreadable} failing their checks)",
        ids.len()
    );
    println!("lookups          {lookups}");
    println!("audit events     {events}");
    println!("consent records by state (history included):");
    println!(
        "  {:<20} {:>8} {:>10} {:>8} {:>11}",
        "purpose", "given", "withdrawn", "expired", "superseded"
    );
    for (p, n) in &by_purpose {
        println!(
            "  {:<20} {:>8} {:>10} {:>8} {:>11}",
            p, n.given, n.withdrawn, n.expired, n.superseded
        );
    }
    Ok(())
}
