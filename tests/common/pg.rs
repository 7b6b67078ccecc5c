//! A PostgreSQL schema of one test's own, for the tests that need a real server.
//!
//! The server is given by `EGARD_POSTGRES_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`). Without it a test using [`db_or_skip!`] says
//! plainly that it was skipped and passes, unless `EGARD_REQUIRE_POSTGRES=1` (set by
//! `.ci/run`), where a missing or unreachable server fails.
#![allow(dead_code)]

use std::io::Write as _;
use std::time::{Duration as StdDuration, Instant};

use egard::{PostgresOptions, PostgresStore};

/// A PostgreSQL schema of one test's own, dropped when the test ends (also on failure).
pub struct TestDb {
    pub url: String,
    pub schema: String,
    pub app: String,
}

impl TestDb {
    /// `None` (after saying so) when no server is configured and none is required.
    pub fn new() -> Option<TestDb> {
        let required = std::env::var("EGARD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let Ok(url) = std::env::var("EGARD_POSTGRES_URL") else {
            assert!(
                !required,
                "EGARD_REQUIRE_POSTGRES=1 but EGARD_POSTGRES_URL is not set: the PostgreSQL tests cannot be skipped"
            );
            // Straight to stderr, past the test harness's capture, so that the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: PostgreSQL test (set EGARD_POSTGRES_URL=postgres://user@host:5432/db to run it)"
            );
            return None;
        };
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Some(TestDb {
            url,
            schema: format!("egard_test_{tag}"),
            app: format!("egard_test_{}", &tag[..12]),
        })
    }

    pub fn options(&self) -> PostgresOptions {
        PostgresOptions::new()
            .schema(&self.schema)
            .pool_size(4)
            .application_name(&self.app)
    }

    pub fn store(&self) -> PostgresStore {
        PostgresStore::connect_with(&self.url, self.options())
            .unwrap_or_else(|e| panic!("PostgreSQL at EGARD_POSTGRES_URL is unreachable: {e}"))
    }

    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    /// Ends every connection of this test's stores (and of no one else's), and waits until
    /// those backends are gone (`pg_terminate_backend` only signals them).
    pub fn terminate_backends(&self) -> u64 {
        let mut admin = self.admin();
        let pids: Vec<i32> = admin
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1",
                &[&self.app],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for pid in &pids {
            admin.execute("SELECT pg_terminate_backend($1)", &[pid]).unwrap();
        }
        let deadline = Instant::now() + StdDuration::from_secs(60);
        loop {
            let left: i64 = admin
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", &[&pids])
                .unwrap()
                .get(0);
            assert!(Instant::now() < deadline, "terminated backends did not exit");
            if left == 0 {
                return pids.len() as u64;
            }
            std::thread::sleep(StdDuration::from_millis(5));
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema));
        }
    }
}

#[macro_export]
macro_rules! db_or_skip {
    () => {
        match $crate::common::pg::TestDb::new() {
            Some(db) => db,
            None => return,
        }
    };
}
