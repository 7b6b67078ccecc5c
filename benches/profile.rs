//! One access-path case in a loop, for instruction counts under callgrind (repeatable on a
//! noisy machine, unlike wall-clock time):
//!
//! ```text
//! cargo bench --bench profile --no-run
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='profile::run*' \
//!     target/release/deps/profile-<hash> reveal_32 20000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! Without arguments (as `cargo bench` runs it) it runs every case briefly and prints the
//! wall-clock time per operation.

mod common;

use std::hint::black_box;
use std::time::Instant;

use egard::{AccessPass, CustomerId, Revealed, Vault};

use common::{Newsletter, population, probes, value_of_len, vault_over};

struct Ctx<'a> {
    vault: &'a Vault,
    cold: &'a Vault,
    granted: &'a [CustomerId],
    expired: &'a [CustomerId],
    withdrawn: &'a [CustomerId],
    passes: &'a [AccessPass],
}

const CASES: [&str; 10] = [
    "reveal_32",
    "reveal_256",
    "authorize_warm",
    "authorize_cold",
    "authorize_reveal_32",
    "denied_no_consent",
    "denied_expired",
    "denied_withdrawn",
    "seal_32",
    "set_field_32",
];

/// Runs `iters` operations of `case`; the only function callgrind collects.
#[inline(never)]
fn run(ctx: &Ctx<'_>, case: &str, iters: usize) {
    let value_32 = value_of_len(32, 7);
    for i in 0..iters {
        let g = ctx.granted[i % ctx.granted.len()];
        match case {
            "reveal_32" => {
                let v: Revealed<String> = ctx.vault.reveal(&ctx.passes[i % ctx.passes.len()], "email").unwrap();
                black_box(v);
            }
            "reveal_256" => {
                let v: Revealed<String> = ctx.vault.reveal(&ctx.passes[i % ctx.passes.len()], "bio").unwrap();
                black_box(v);
            }
            "authorize_warm" => {
                black_box(ctx.vault.authorize(g, "newsletter").unwrap());
            }
            "authorize_cold" => {
                black_box(ctx.cold.authorize(g, "newsletter").unwrap());
            }
            "authorize_reveal_32" => {
                let pass = ctx.vault.authorize(g, "newsletter").unwrap();
                let v: Revealed<String> = ctx.vault.reveal(&pass, "email").unwrap();
                black_box(v);
            }
            "denied_no_consent" => {
                black_box(ctx.vault.authorize(g, "research").unwrap_err());
            }
            "denied_withdrawn" => {
                let w = ctx.withdrawn[i % ctx.withdrawn.len()];
                black_box(ctx.vault.authorize(w, "newsletter").unwrap_err());
            }
            "denied_expired" => {
                let e = ctx.expired[i % ctx.expired.len()];
                black_box(ctx.vault.authorize(e, "newsletter").unwrap_err());
            }
            "seal_32" => {
                black_box(ctx.vault.seal(g, "email", &value_32).unwrap());
            }
            "set_field_32" => ctx.vault.set_field(g, "email", &value_32).unwrap(),
            other => panic!("unknown case {other}; one of {CASES:?}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let n = std::env::var("EGARD_PROFILE_CUSTOMERS").map_or(1_000, |v| v.parse().unwrap());
    let pop = population(n);
    let granted_idx = probes(n, Newsletter::Valid, 250, 1);
    let granted: Vec<CustomerId> = granted_idx.iter().map(|&i| pop.customers[i]).collect();
    let expired: Vec<CustomerId> = probes(n, Newsletter::Expired, 250, 2)
        .into_iter()
        .map(|i| pop.customers[i])
        .collect();
    let withdrawn: Vec<CustomerId> = probes(n, Newsletter::Withdrawn, 250, 3)
        .into_iter()
        .map(|i| pop.customers[i])
        .collect();
    for &c in expired.iter().chain(&withdrawn) {
        let _ = pop.vault.authorize(c, "newsletter");
    }
    for (&c, &i) in granted.iter().zip(&granted_idx) {
        pop.vault.set_field(c, "bio", &value_of_len(256, i)).unwrap();
    }
    let passes: Vec<AccessPass> = granted
        .iter()
        .map(|&c| pop.vault.authorize(c, "newsletter").unwrap())
        .collect();
    let cold = vault_over(pop.store.clone(), &pop.clock, 1);
    let ctx = Ctx {
        vault: &pop.vault,
        cold: &cold,
        granted: &granted,
        expired: &expired,
        withdrawn: &withdrawn,
        passes: &passes,
    };
    match args.as_slice() {
        [case, iters] => run(&ctx, case, iters.parse().unwrap()),
        _ => {
            for case in CASES {
                let iters = 20_000;
                let t = Instant::now();
                run(&ctx, case, iters);
                println!("{case:<22} {:>8.0} ns/op", t.elapsed().as_nanos() as f64 / iters as f64);
            }
        }
    }
}
