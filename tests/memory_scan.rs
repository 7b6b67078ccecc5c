//! Memory scans (issue 11): an attacker holding a copy of process memory after an erasure
//! must find no copy of the erased customer's data key.
//!
//! The scanner reads the process's own memory through `/proc/self/maps` and `/proc/self/mem`,
//! in safe Rust. The scenario runs on a real SQLite file; the test obtains the raw data key
//! itself, by opening the wrapped key row of the file with the known master key (the
//! associated-data layout of `src/crypto/master.rs`), in place inside one buffer whose own
//! address is excluded from the hits.
//!
//! Every scan runs under one lock, so that tests of this file never run side by side (the
//! other test's allocations and stack are no concern, but a scan must not race a vault that is
//! being built).
#![cfg(all(target_os = "linux", feature = "sqlite"))]

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use egard::{CustomerId, Error, Evidence, LawfulBasis, MasterKey, Purpose, SqliteStore, Vault};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Serializes the scans of this file.
static SCAN: Mutex<()> = Mutex::new(());

/// The master key of the scenario, known to the test.
const MASTER: [u8; 32] = [
    0x4d, 0x61, 0x73, 0x74, 0x65, 0x72, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x6f, 0x66, 0x2d, 0x74, 0x68, 0x65, 0x2d, 0x6d,
    0x65, 0x6d, 0x6f, 0x72, 0x79, 0x2d, 0x73, 0x63, 0x61, 0x6e, 0x21, 0x21, 0x21,
];

/// How much memory one read of `/proc/self/mem` covers.
const CHUNK: usize = 1 << 20;

/// A place where the needle was found: its address and the region's start (for the report).
#[derive(Debug)]
struct Hit {
    address: usize,
    region: usize,
}

/// Every address of a readable mapping of this process holding `needle`, except the
/// addresses in `exclude` (the needle's own buffer). The scanner's own buffer is excluded too,
/// and wiped after each chunk so that it never carries a copy from one chunk to the next.
///
/// Every allocation of the scanner is large (above the allocator's mmap threshold), so that
/// it comes from fresh pages and never reuses, and so overwrites, freed memory whose
/// leftovers the scan looks for.
fn scan(needle: &[u8], exclude: &[usize]) -> Vec<Hit> {
    const BIG: usize = 1 << 20;
    assert!(needle.len() >= 8, "a needle this short could match by chance");
    let mut buf = Zeroizing::new(vec![0u8; CHUNK + needle.len()]);
    let buf_range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let mut maps = String::with_capacity(BIG);
    File::open("/proc/self/maps")
        .and_then(|mut f| f.read_to_string(&mut maps))
        .expect("read /proc/self/maps");
    let mut regions: Vec<(usize, usize)> = Vec::with_capacity(BIG / 16);
    regions.extend(maps.lines().filter_map(|line| {
        let mut cols = line.split_whitespace();
        let range = cols.next()?;
        let perms = cols.next()?;
        let name = cols.nth(3).unwrap_or("");
        if !perms.starts_with('r') || name.starts_with("[vvar") || name == "[vsyscall]" {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        Some((
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        ))
    }));
    let mem = File::open("/proc/self/mem").expect("open /proc/self/mem");
    let mut hits = Vec::with_capacity(BIG / 16);
    for (start, end) in regions {
        let mut at = start;
        while at < end {
            // Each read overlaps the previous one by the needle's length less one byte, so that
            // a copy straddling two chunks is found.
            let want = (end - at).min(buf.len());
            let got = match mem.read_at(&mut buf[..want], at as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut from = 0;
            while let Some(i) = find(&buf[from..got], needle) {
                let address = at + from + i;
                if !exclude.contains(&address) && !buf_range.contains(&address) {
                    hits.push(Hit { address, region: start });
                }
                from += i + 1;
            }
            buf[..got].fill(0);
            std::hint::black_box(&mut buf[..got]);
            if got < needle.len() || at + got >= end {
                break;
            }
            at += got + 1 - needle.len();
        }
    }
    hits
}

/// The offset of the first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let i = hay[from..=hay.len() - needle.len()].iter().position(|&b| b == first)?;
        if hay[from + i..from + i + needle.len()] == *needle {
            return Some(from + i);
        }
        from += i + 1;
    }
    None
}

/// Overwrites the stack below the caller's frame.
#[inline(never)]
fn scrub_own_stack() {
    let mut zeros = [0u8; 32 * 1024];
    std::hint::black_box(&mut zeros);
}

/// [`data_key_from_file`] on a thread of its own whose stack is scrubbed before it ends: the
/// test's own decryption leaves no copy behind, and the stack of the test's thread, where
/// egard ran, is left as egard left it.
fn data_key_on_own_thread(path: &Path, namespace: &str, customer: CustomerId) -> (Zeroizing<Vec<u8>>, Range<usize>) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let key = data_key_from_file(path, namespace, customer);
            scrub_own_stack();
            key
        })
        .join()
        .unwrap()
    })
}

/// The customer's raw data key: its wrapped key row in the SQLite file, opened with ring
/// under the known master key, in place. Returns the buffer and where the key lies in it.
#[inline(never)]
fn data_key_from_file(path: &Path, namespace: &str, customer: CustomerId) -> (Zeroizing<Vec<u8>>, Range<usize>) {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the vault file");
    let (version, wrapped): (u32, Vec<u8>) = conn
        .query_row(
            "SELECT version, wrapped FROM data_keys WHERE customer = ?1",
            [customer.as_bytes().as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the customer's wrapped data key");
    drop(conn);
    // Layout: format u8 | alg u8 | master key id u32 BE | nonce 12 | key 32 | tag 16.
    let mut buf = Zeroizing::new(wrapped);
    assert_eq!(buf.len(), 6 + NONCE_LEN + 32 + 16);
    let header = buf[..6].to_vec();
    let nonce = <[u8; NONCE_LEN]>::try_from(&buf[6..6 + NONCE_LEN]).unwrap();
    // The associated data: the header, then the namespace, the customer, the label `dek` and
    // the key's version, each prefixed by its length as a big-endian u32.
    let mut aad = header;
    for part in [
        namespace.as_bytes(),
        customer.as_bytes(),
        b"dek",
        &version.to_be_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    let kek = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &MASTER).unwrap());
    let start = 6 + NONCE_LEN;
    let len = kek
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut buf[start..])
        .expect("the wrapped key opens under the known master key")
        .len();
    assert_eq!(len, 32);
    (buf, start..start + 32)
}

fn report(when: &str, hits: &[Hit]) {
    eprintln!("{when}: {} hit(s)", hits.len());
    for h in hits {
        eprintln!("  {:#x} (region at {:#x})", h.address, h.region);
    }
}

/// A customer with two fields and consent to `support`.
fn customer_with_data(vault: &Vault) -> CustomerId {
    let customer = vault.create_customer().unwrap();
    vault.set_field(customer, "email", "alice@example.com").unwrap();
    vault.set_field(customer, "first_name", "Alice").unwrap();
    vault.give_consent(customer, "support", Evidence::new("form")).unwrap();
    customer
}

/// Reads the customer's email through a new pass, which is returned (still alive).
fn read_email(vault: &Vault, customer: CustomerId) -> egard::AccessPass {
    let pass = vault.authorize(customer, "support").unwrap();
    let revealed = vault.reveal::<String>(&pass, "email").unwrap();
    assert_eq!(revealed.expose(), "alice@example.com");
    pass
}

/// With AES-NI, ring's AES-256 key schedule starts with the raw key bytes: the cached key is
/// found by the scan before erasure (which proves the scan works), and nowhere after it.
///
/// Customer A is erased while a pass of theirs is alive; customer B is only cached, and must
/// be gone once the vault is dropped (the key wiped on drop). Both keys are made by a first
/// vault, then unwrapped from the file by a second one (a restarted process).
#[test]
fn an_erased_customers_data_key_is_gone_from_memory_even_while_a_pass_is_alive() {
    let _scan = SCAN.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let open = || {
        Vault::builder()
            .master_key(MasterKey::from_bytes(MASTER))
            .store(SqliteStore::open(&path).unwrap())
            .build()
            .unwrap()
    };
    let vault = open();
    vault
        .define_purpose(Purpose::new("support", LawfulBasis::Consent).fields(["email", "first_name"]))
        .unwrap();
    let a = customer_with_data(&vault);
    let b = customer_with_data(&vault);
    drop(read_email(&vault, a));
    drop(vault);

    // A restarted process: the keys are unwrapped from the file on the first access.
    let vault = open();
    let pass = read_email(&vault, a);
    drop(read_email(&vault, b));

    let (key_a, at_a) = data_key_on_own_thread(&path, "egard", a);
    let (key_b, at_b) = data_key_on_own_thread(&path, "egard", b);
    let (key_a, key_b) = (&key_a[at_a], &key_b[at_b]);
    let scan_a = || scan(key_a, &[key_a.as_ptr() as usize]);
    let scan_b = || scan(key_b, &[key_b.as_ptr() as usize]);

    let before = scan_a();
    report("A before erasure (key cached, pass alive)", &before);
    assert!(
        !before.is_empty(),
        "the scan must find the cached key before erasure, or it proves nothing \
         (with AES-NI, ring's key schedule starts with the raw key)"
    );
    let cached_b = scan_b();
    report("B cached", &cached_b);

    vault.erase_customer(a).unwrap();
    assert!(matches!(vault.reveal::<String>(&pass, "email"), Err(Error::Erased(_))));
    let after = scan_a();
    report("A after erasure (pass still alive)", &after);

    drop(pass);
    drop(vault);
    let after_drop = scan_a();
    report("A after dropping the pass and the vault", &after_drop);
    let dropped_b = scan_b();
    report("B after dropping the vault", &dropped_b);

    assert_eq!(
        before.len(),
        1,
        "the cached key schedule must be the only copy: no dead copy left by the key's \
         unwrapping on the cache miss, nor by the vault dropped before"
    );
    assert_eq!(cached_b.len(), 1, "the cached key schedule of B must be its only copy");
    assert!(
        after.is_empty(),
        "{} copies of the erased key while a pass is alive",
        after.len()
    );
    assert!(
        after_drop.is_empty(),
        "{} copies of the erased key after the vault is gone",
        after_drop.len()
    );
    assert!(
        dropped_b.is_empty(),
        "{} copies of a cached key after its vault is gone",
        dropped_b.len()
    );
}

/// A random canary of 32 hexadecimal digits, pushed into `out` (no formatting machinery, which
/// could leave copies behind).
fn push_canary(out: &mut String) {
    let mut raw = Zeroizing::new([0u8; 16]);
    SystemRandom::new().fill(raw.as_mut()).unwrap();
    for b in raw.iter() {
        for nibble in [b >> 4, b & 0xf] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap());
        }
    }
}

#[test]
fn a_revealed_value_with_escapes_leaves_no_unescaped_copy() {
    let _scan = SCAN.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::builder()
        .master_key(MasterKey::from_bytes(MASTER))
        .store(SqliteStore::open(dir.path().join("vault.db")).unwrap())
        .build()
        .unwrap();
    vault
        .define_purpose(Purpose::new("support", LawfulBasis::Consent).fields(["note"]))
        .unwrap();
    let customer = vault.create_customer().unwrap();
    // The value: canary, a quote, a backslash, canary. Its JSON form escapes both, so the
    // decoder must unescape it into a buffer of its own: the needle is the unescaped value.
    let mut value = Zeroizing::new(String::with_capacity(2 * 32 + 2));
    push_canary(&mut value);
    value.push('"');
    value.push('\\');
    push_canary(&mut value);
    vault.set_field(customer, "note", value.as_str()).unwrap();
    vault.give_consent(customer, "support", Evidence::new("form")).unwrap();
    let pass = vault.authorize(customer, "support").unwrap();
    let revealed = vault.reveal::<String>(&pass, "note").unwrap();
    assert_eq!(revealed.expose().as_str(), value.as_str());
    drop(revealed);

    // The needle leaves out the value's first 31 bytes: the allocator writes its own
    // pointers over the start of a freed buffer, and the copy sought is in a freed one.
    let needle = &value.as_bytes()[31..];
    let hits = scan(needle, &[needle.as_ptr() as usize]);
    report("after the revealed value was dropped", &hits);
    assert!(
        hits.is_empty(),
        "{} copies of the unescaped value after the Revealed was dropped",
        hits.len()
    );
}
