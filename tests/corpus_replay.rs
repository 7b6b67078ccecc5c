//! Replays the minimised fuzzing corpora of `tests/corpus/<target>/` through the same harness
//! functions the fuzz targets call (`fuzz/`), so every CI run re-checks every input the
//! fuzzers found interesting. Needs the `fuzzing` feature (CI runs `--all-features`).
#![cfg(feature = "fuzzing")]

use std::path::{Path, PathBuf};

use egard::fuzzing;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(target)
}

fn replay(target: &str) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus folder {} missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus of {target} is empty");
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| fuzzing::run(target, &data));
        assert!(outcome.is_ok(), "{target}: input {} fails", file.display());
    }
    // The valid seeds are checked too, so that a change breaking valid inputs shows here.
    for seed in fuzzing::seeds(target) {
        fuzzing::run(target, &seed);
    }
}

#[test]
fn field_envelope_corpus() {
    replay("field_envelope");
}

#[test]
fn wrapped_key_corpus() {
    replay("wrapped_key");
}

#[test]
fn sealed_json_corpus() {
    replay("sealed_json");
}

#[test]
fn sealed_bytes_corpus() {
    replay("sealed_bytes");
}

#[test]
fn vault_ops_corpus() {
    replay("vault_ops");
}

#[test]
fn sqlite_records_corpus() {
    replay("sqlite_records");
    fuzzing::cleanup();
}

#[test]
fn json_decode_corpus() {
    replay("json_decode");
}

/// Writes the seed inputs into `tests/corpus/` (run once by hand before fuzzing:
/// `EGARD_WRITE_SEEDS=1 cargo test --features fuzzing --test corpus_replay -- --ignored`).
#[test]
#[ignore]
fn write_seeds() {
    if std::env::var_os("EGARD_WRITE_SEEDS").is_none() {
        return;
    }
    for target in fuzzing::TARGETS {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in fuzzing::seeds(target).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}
