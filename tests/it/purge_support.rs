//! Helpers shared by the `purge_*` integration tests, on top of [`crate::common`].
//!
//! The idea of every purge test: put "real" accounts (domain `real.example`, usernames
//! `real_user_N`, never produced by the fixture or `generate`) into the table first, snapshot
//! them with their ids, purge, and check the snapshot is still there, byte for byte.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{Run, TestDb, csv_file, generate_csv_with, run_bin};

/// The predicate that selects the real accounts (the ones no purge may touch).
pub const REAL: &str = "email LIKE '%@real.example'";

/// Inserts `n` real accounts with varied content (NULLs, metadata, balances).
pub fn insert_real_accounts(db: &TestDb, n: i64) {
    db.execute(&format!(
        "INSERT INTO accounts (external_id, email, username, display_name, password_hash, role, \
                               plan, country, is_active, balance, birth_date, created_at, metadata) \
         SELECT md5('real' || i)::uuid, 'real' || i || '@real.example', 'real_user_' || i, \
                CASE WHEN i % 5 = 0 THEN NULL ELSE 'Real Person ' || i END, \
                'hash' || i, (ARRAY['user','admin','support','tester'])[1 + i % 4], \
                CASE WHEN i % 3 = 0 THEN NULL ELSE 'pro' END, 'DE', i % 2 = 0, i * 1.25, \
                date '1980-01-01' + i, timestamptz '2020-01-01 00:00:00+00' + i * interval '1 hour', \
                jsonb_build_object('real', true, 'n', i) \
         FROM generate_series(1, {n}) i"
    ));
}

/// Every column (id included) of the rows `predicate` selects, one JSON text per row, in
/// id order.
pub fn rows_where(db: &TestDb, table: &str, predicate: &str) -> Vec<String> {
    db.column_text(&format!(
        "SELECT row_to_json(t)::text FROM {table} t WHERE {predicate} ORDER BY 1"
    ))
    .into_iter()
    .map(|r| r.expect("row_to_json is never NULL"))
    .collect()
}

/// The real accounts, id included.
pub fn real_accounts(db: &TestDb) -> Vec<String> {
    rows_where(db, "accounts", REAL)
}

/// md5 of every row (every column) of `table` that `predicate` selects, in ctid-independent
/// order, and how many there are.
pub fn digest(db: &TestDb, table: &str, predicate: &str) -> (i64, String) {
    let row = db
        .client()
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') \
                 FROM {table} t WHERE {predicate}"
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("digest of {table}: {e}"));
    (row.get(0), row.get(1))
}

/// `provisioner purge --database-url <db> <args…>`, stdin empty (so never a terminal).
pub fn purge(db: &TestDb, args: &[&str]) -> Run {
    let mut all = vec!["purge", "--database-url", db.url()];
    all.extend_from_slice(args);
    run_bin(&all, None)
}

/// `provisioner seed <file> --database-url <db> --json <args…>`, expected to succeed; the
/// run's JSON figures.
pub fn seed_ok(db: &TestDb, file: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "-q"];
    all.extend_from_slice(args);
    let run = db.seed(file, &all);
    run.expect_ok();
    run.json()
}

/// `provisioner generate --count <count> --seed <seed> -q --domain <domain>` into `file` in
/// the test's scratch directory.
pub fn generate(db: &TestDb, file: &str, count: u64, seed: u64, domain: &str) -> PathBuf {
    generate_csv_with(&db.path(file), count, seed, &["-q", "--domain", domain])
}

/// Writes the header and the given records of `records` (a CSV's data rows) to `file`.
pub fn write_records(
    db: &TestDb,
    file: &str,
    header: &[&str],
    records: &[Vec<Option<String>>],
) -> PathBuf {
    db.write(file, csv_file(header, records, "\n"))
}

/// A thread that, once `ready` holds, terminates every backend whose application_name is
/// `app` every `every`, until stopped; it counts the backends it terminated.
pub struct Killer {
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicI64>,
    handle: Option<JoinHandle<()>>,
}

impl Killer {
    pub fn start(
        conninfo: String,
        app: &str,
        every: Duration,
        ready: impl Fn(&mut postgres::Client) -> bool + Send + 'static,
    ) -> Killer {
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicI64::new(0));
        let (s, k, app) = (stop.clone(), killed.clone(), app.to_string());
        let handle = std::thread::spawn(move || {
            let mut client =
                postgres::Client::connect(&conninfo, postgres::NoTls).expect("killer connection");
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && !ready(&mut client) {
                assert!(Instant::now() < deadline, "the killer never got ready");
                std::thread::sleep(Duration::from_millis(10));
            }
            while !s.load(Ordering::Relaxed) {
                let n: i64 = client
                    .query_one(
                        "SELECT count(*) FILTER (WHERE t) FROM \
                         (SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity \
                          WHERE application_name = $1 AND pid <> pg_backend_pid()) x",
                        &[&app],
                    )
                    .expect("terminate backends")
                    .get(0);
                k.fetch_add(n, Ordering::Relaxed);
                std::thread::sleep(every);
            }
        });
        Killer {
            stop,
            killed,
            handle: Some(handle),
        }
    }

    /// Stops the thread; how many backends it terminated.
    pub fn finish(mut self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("handle")
            .join()
            .expect("killer thread panicked");
        self.killed.load(Ordering::Relaxed)
    }
}

impl Drop for Killer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A string figure of a run's `--json` object.
#[track_caller]
pub fn text(run: &Run, key: &str) -> String {
    let json = run.json();
    json.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("JSON has no string {key:?}: {json}"))
        .to_string()
}

/// Panics unless the run exited 2 (usage error or refusal) naming `needle` on stderr.
#[track_caller]
pub fn expect_refused(run: &Run, needle: &str) {
    run.expect_code(2);
    assert!(
        run.stderr.contains(needle),
        "stderr does not mention {needle:?}:\n{}",
        run.stderr
    );
}
