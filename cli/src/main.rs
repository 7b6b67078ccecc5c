//! `egard`: the operator's command line for an egard store.
//!
//! Verify the audit log, answer a subject's request, erase a customer, rotate a key or count
//! who consented, without writing a Rust program each time. Run `egard --help` for the
//! commands and `egard COMMAND --help` for each one.
//!
//! The master key comes from the environment (`EGARD_MASTER_KEY`) or a file (`--key-file`),
//! never from a command-line argument, which other users of the machine can read.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cli;
mod commands;
mod connect;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` are not failures; clap picks the stream and the code
            // (2 for a usage error).
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(output::EXIT_USAGE));
        }
    };
    match commands::run(&cli) {
        Ok(()) => ExitCode::from(output::EXIT_OK),
        Err(failure) => {
            failure.report(cli.json);
            ExitCode::from(failure.code)
        }
    }
}
