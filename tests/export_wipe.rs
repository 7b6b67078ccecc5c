//! The values of a subject export are wiped before their memory is freed.
//!
//! This test binary runs on an allocator that looks into every block as it is freed (and
//! every block a growing buffer leaves behind) for a canary value. An export of a customer
//! whose field holds the canary, and its JSON from `to_json`, must free no block with the
//! canary still in it. Positive controls show the watch catches what it should: a plain
//! `Vec`, the `String` of `serde_json::to_string`, and a value decoded into a
//! `serde_json::Value` (what `export_customer` used to hand out).
//!
//! One test only: the allocator is the whole binary's, and another test running beside it
//! could free a canary of its own.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use egard::{Evidence, LawfulBasis, Purpose};

/// The canary (long enough that nothing else matches it by chance).
const NEEDLE: &[u8] = b"WIPE-CANARY-5c1d-93ab";

static WATCHING: AtomicBool = AtomicBool::new(false);
static FREED_WITH_CANARY: AtomicUsize = AtomicUsize::new(0);

struct Watch;

// SAFETY: every call is passed on to the system allocator with the same layout. Blocks are
// handed out zeroed, so every byte `dealloc` reads was written.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCHING.load(Ordering::SeqCst) {
            // SAFETY: the block is still allocated, `layout.size()` bytes long, and zeroed
            // when allocated.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
                FREED_WITH_CANARY.fetch_add(1, Ordering::SeqCst);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    // `realloc` is the trait's own: a new block, a copy, then `dealloc` of the old one, so the
    // block a growing buffer leaves behind is looked into too.
}

#[global_allocator]
static ALLOCATOR: Watch = Watch;

/// How many blocks freed while `f` ran still held the canary.
fn freed_with_canary(f: impl FnOnce()) -> usize {
    let before = FREED_WITH_CANARY.load(Ordering::SeqCst);
    WATCHING.store(true, Ordering::SeqCst);
    f();
    WATCHING.store(false, Ordering::SeqCst);
    FREED_WITH_CANARY.load(Ordering::SeqCst) - before
}

#[test]
fn exported_values_are_wiped_before_their_memory_is_freed() {
    let canary = std::str::from_utf8(NEEDLE).unwrap();
    let (vault, _) = vault();
    vault
        .define_purpose(Purpose::new("account", LawfulBasis::Contract).fields(["email", "notes"]))
        .unwrap();
    let c = vault.create_customer().unwrap();
    vault.set_field(c, "email", canary).unwrap();
    vault.set_field(c, "notes", &[canary, "and more"]).unwrap();

    // Positive control: a plain buffer holding the canary is seen when freed.
    assert_eq!(
        freed_with_canary(|| drop(std::hint::black_box(NEEDLE.to_vec()))),
        1,
        "the watch sees a plain Vec"
    );
    // A wiped one is not.
    assert_eq!(freed_with_canary(|| drop(zeroize::Zeroizing::new(NEEDLE.to_vec()))), 0);

    // The export, its values read and serialized into the wiped buffer, then dropped.
    let leaked = freed_with_canary(|| {
        let export = vault.export_customer(c, Evidence::new("verified-email-link")).unwrap();
        assert!(
            export.fields["email"].expose().contains(canary),
            "the canary was exported"
        );
        assert!(export.fields["notes"].expose().contains(canary));
        let json = export.to_json().unwrap();
        assert!(
            json.windows(NEEDLE.len()).any(|w| w == NEEDLE),
            "the canary is in the JSON"
        );
        drop(json);
        drop(export);
    });
    assert_eq!(leaked, 0, "an export freed memory with a value still in it");

    // What the host does with the export is the host's: `serde_json::to_string` gives a
    // `String` that is not wiped, and decoding a value into a `serde_json::Value` (the old
    // `SubjectExport::fields`) leaves copies too. The watch catches both.
    let export = vault.export_customer(c, Evidence::new("verified-email-link")).unwrap();
    assert!(freed_with_canary(|| drop(serde_json::to_string(&export).unwrap())) >= 1);
    let decoded = freed_with_canary(|| {
        let value: serde_json::Value = serde_json::from_str(export.fields["email"].expose()).unwrap();
        drop(value);
    });
    assert!(decoded >= 1, "a decoded serde_json::Value is not wiped");
    assert_eq!(freed_with_canary(|| drop(export)), 0);
}
