//! Resource bounds: the field size cap, and the bounded key cache (measured with a counting
//! allocator: memory stays flat however many customers pass through).
//!
//! The tests of this file share the process-wide allocation counter, so they run one at a
//! time under `SERIAL`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};

use egard::{
    AccessDenied, CustomerId, DEFAULT_MAX_VALUE_LEN, Error, Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose,
    SqliteStore, Store, Vault,
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

fn vault_on<S: Store>(store: Arc<S>, capacity: usize) -> Vault {
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes([3; 32]))
        .store(store)
        .cache_capacity(capacity)
        .build()
        .unwrap();
    vault.define_purpose(purpose()).unwrap();
    vault
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

/// Bytes allocated now.
fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Touches each customer once (sealing loads the customer's key into the cache, and reserves
/// uses of it in the store) and gives the allocation growth over the round.
fn touch_all(vault: &Vault, customers: &[CustomerId]) -> isize {
    let before = live_bytes();
    for &c in customers {
        drop(vault.seal(c, "email", &"x".to_owned()).unwrap());
    }
    live_bytes() - before
}

#[test]
fn the_key_cache_stays_bounded_and_memory_flat() {
    let _serial = serial();
    const N: usize = 600;
    const CAPACITY: usize = 50;
    // SQLite keeps its pages with its own allocator, outside the count: what grows here is the
    // vault's, not the store's (each first seal of a loaded customer writes a reservation).
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let customers: Vec<CustomerId> = {
        let setup = vault_on(store.clone(), 10);
        (0..3 * N).map(|_| setup.create_customer().unwrap()).collect()
    };
    let (first, rest) = customers.split_at(N);
    let (second, third) = rest.split_at(N);

    // A bounded vault: customers pass through its cache; it never holds more than CAPACITY.
    let bounded = vault_on(store.clone(), CAPACITY);
    touch_all(&bounded, first); // warm-up: the shards reach their final size
    assert!(bounded.cached_customers() <= CAPACITY);
    let growth_second = touch_all(&bounded, second);
    assert!(bounded.cached_customers() <= CAPACITY);
    let growth_third = touch_all(&bounded, third);
    assert!(bounded.cached_customers() <= CAPACITY);
    assert!(bounded.cached_customers() >= CAPACITY / 2, "the cache is used at all");

    // Control: a vault whose cache holds everyone grows with every customer, which shows
    // what the measurement would see if the bound did not hold.
    drop(bounded);
    let unbounded = vault_on(store, 10 * N);
    touch_all(&unbounded, first);
    let growth_unbounded = touch_all(&unbounded, second);
    assert_eq!(unbounded.cached_customers(), 2 * N);
    let per_customer = growth_unbounded / N as isize;
    assert!(per_customer > 100, "a cached customer costs {per_customer} bytes");

    // Flat: another N customers through the bounded cache cost less than two cached
    // customers' worth in total (the unbounded cache grew by N of them).
    for growth in [growth_second, growth_third] {
        assert!(
            growth < 2 * per_customer,
            "bounded cache grew by {growth} bytes over {N} customers (one cached customer: {per_customer} bytes)"
        );
    }
}

#[test]
fn a_small_capacity_is_an_exact_bound() {
    let _serial = serial();
    let store = Arc::new(MemoryStore::new());
    let setup = vault_on(store.clone(), 10);
    let customers: Vec<CustomerId> = (0..100).map(|_| setup.create_customer().unwrap()).collect();
    drop(setup);
    for capacity in [0, 1, 3, 31, 33, 64] {
        let vault = vault_on(store.clone(), capacity);
        touch_all(&vault, &customers);
        assert!(
            vault.cached_customers() <= capacity.max(1),
            "capacity {capacity}: {} cached",
            vault.cached_customers()
        );
    }
    // Customers held by live passes stay cached beyond the bound (a withdrawal must reach
    // their passes), and are dropped once the passes are gone.
    let vault = vault_on(store, 2);
    let passes: Vec<_> = customers[..10]
        .iter()
        .map(|&c| {
            vault.give_consent(c, "support", Evidence::new("contract")).unwrap();
            vault.authorize(c, "support").unwrap()
        })
        .collect();
    assert_eq!(vault.cached_customers(), 10);
    vault.withdraw_consent(customers[0], "support").unwrap();
    assert!(matches!(
        vault.reveal::<String>(&passes[0], "email"),
        Err(Error::Denied(AccessDenied::Withdrawn))
    ));
    drop(passes);
    touch_all(&vault, &customers[10..]);
    assert!(vault.cached_customers() <= 2);
}
