//! Resource bounds: the field size cap, and the bounded key cache (measured with a counting
//! allocator: memory stays flat however many customers pass through).
//!
//! The tests of this file share the process-wide allocation counter, so they run one at a
//! time under `SERIAL`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, Ordering};

use egard::{
    AccessDenied, DEFAULT_MAX_VALUE_LEN, Error, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose,
    Vault,
};

/// Counts the bytes currently allocated by this test binary.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged and only adds bookkeeping; the library itself stays `forbid(unsafe_code)`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn purpose() -> Purpose {
    Purpose::new("support", LawfulBasis::Contract).fields(["email", "notes"])
}

#[test]
fn a_value_past_max_value_len_is_too_large() {
    let _serial = serial();
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes([3; 32]))
        .store(MemoryStore::new())
        .max_value_len(100)
        .build()
        .unwrap();
    vault.define_purpose(purpose()).unwrap();
    let c = vault.create_customer().unwrap();
    // A JSON string of n characters encodes to n + 2 bytes.
    vault.set_field(c, "notes", &"a".repeat(98)).unwrap();
    let secret = "b".repeat(99);
    for result in [
        vault.set_field(c, "notes", &secret),
        vault.seal(c, "notes", &secret).map(|_| ()),
    ] {
        match result {
            Err(e @ Error::TooLarge { .. }) => {
                let Error::TooLarge { field, max } = &e else {
                    unreachable!()
                };
                assert_eq!((field.as_str(), *max), ("notes", 100));
                assert!(!e.to_string().contains("bbb") && !format!("{e:?}").contains("bbb"));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
    // The refused write left the earlier value in place.
    vault.give_consent(c, "support", Evidence::new("contract")).unwrap();
    let pass = vault.authorize(c, "support").unwrap();
    assert_eq!(vault.reveal::<String>(&pass, "notes").unwrap().expose().len(), 98);

    // The default cap is 64 KiB.
    let big = Vault::builder()
        .master_key(MasterKey::from_bytes([3; 32]))
        .store(MemoryStore::new())
        .build()
        .unwrap();
    big.define_purpose(purpose()).unwrap();
    let c = big.create_customer().unwrap();
    big.set_field(c, "notes", &"c".repeat(DEFAULT_MAX_VALUE_LEN - 2))
        .unwrap();
    assert!(matches!(
        big.set_field(c, "notes", &"c".repeat(DEFAULT_MAX_VALUE_LEN - 1)),
        Err(Error::TooLarge { .. })
    ));
}
