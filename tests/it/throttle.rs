//! Throttling against a real server: what each brake does to a run, seen from outside.
//!
//! 1. `--rate` caps seed and purge across all connections: 30,000 rows at 10,000 rows/s
//!    cannot take less than ~2.9 s, however many connections;
//! 2. `--pause-file` holds a run before its first batch until the file is removed;
//! 3. SIGUSR1 stops the row count growing, SIGUSR2 lets the run finish; without any throttle
//!    flag SIGUSR1 must not kill the run either;
//! 4. a stop (SIGINT) ends a run even while it is paused or waiting for the rate;
//! 5. `--max-batch-latency` halves the rate while batches are slow, and the run still ends;
//!    without it, slow batches change nothing;
//! 6. `--lock-timeout` and `--statement-timeout` bound every batch (55P03, 57014), a lock
//!    timeout is retried until the lock is released, and a timeout the server cannot take is
//!    refused before anything is recorded;
//! 7. `--max-replica-lag` without standbys does not hold a run.
//!
//! Timing bounds are generous: they assert behaviour, the benchmarks measure it.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Longest any single run may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// `purge <csv> --database-url <db> <extra…>`.
fn purge_args<'a>(db: &'a TestDb, csv: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["purge", path_str(csv), "--database-url", db.url()];
    args.extend_from_slice(extra);
    args
}

/// Runs `args` to the end (bounded by `RUN_TIMEOUT`) and returns it with its wall time.
fn timed_run(args: &[&str]) -> (Run, Duration) {
    let start = Instant::now();
    let run = run_bin_bounded(args, RUN_TIMEOUT);
    (run, start.elapsed())
}

/// Every batch statement on `accounts` sleeps `seconds` (a statement-level AFTER INSERT
/// trigger), so batches are slow whatever the rate.
fn slow_inserts(db: &TestDb, seconds: f64) {
    db.execute(&format!(
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$; \
         CREATE TRIGGER slow AFTER INSERT ON accounts \
           FOR EACH STATEMENT EXECUTE FUNCTION slow_insert();"
    ));
}

/// How many lines of `text` contain `needle`.
fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

// ---------------------------------------------------------------------------------------------
// 1. --rate
// ---------------------------------------------------------------------------------------------

/// 30,000 rows at 10,000 rows/s, less a tenth of a second of burst: ~2.9 s at the least.
const RATE_ROWS: i64 = 30_000;
const RATE_FLOOR: Duration = Duration::from_millis(2500);
const RATE_CEILING: Duration = Duration::from_secs(10);

#[track_caller]
fn assert_rate_bounds(what: &str, took: Duration, run: &Run) {
    assert!(
        took >= RATE_FLOOR,
        "{what} of {RATE_ROWS} rows at --rate 10000 took {took:?}: the cap was beaten\n{}",
        run.stdout
    );
    assert!(
        took < RATE_CEILING,
        "{what} of {RATE_ROWS} rows at --rate 10000 took {took:?}\nstderr:\n{}",
        run.stderr
    );
}

#[test]
fn the_rate_caps_a_seed_across_all_connections() {
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("rate.csv"), RATE_ROWS as u64, 41);
    let args = seed_args(
        &db,
        &csv,
        &["--rate", "10000", "--connections", "4", "--json"],
    );
    let (run, took) = timed_run(&args);
    run.expect_ok();
    eprintln!("seed at --rate 10000: {took:?} {}", run.json());
    assert_eq!(run.figure("rows_inserted"), RATE_ROWS as u64);
    assert_eq!(db.count("accounts"), RATE_ROWS);
    assert_rate_bounds("a seed", took, &run);
}

#[test]
fn the_rate_caps_a_purge_by_file() {
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("rate.csv"), RATE_ROWS as u64, 43);
    db.psql_copy("accounts", &ACCOUNT_COLUMNS, &csv);
    assert_eq!(db.count("accounts"), RATE_ROWS);
    let args = purge_args(
        &db,
        &csv,
        &["--rate", "10000", "--connections", "4", "--yes", "--json"],
    );
    let (run, took) = timed_run(&args);
    run.expect_ok();
    eprintln!("purge at --rate 10000: {took:?} {}", run.json());
    assert_eq!(run.figure("rows_deleted"), RATE_ROWS as u64);
    assert_eq!(db.count("accounts"), 0);
    assert_rate_bounds("a purge", took, &run);
}

// ---------------------------------------------------------------------------------------------
// 2. --pause-file
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pause_file_holds_the_run_until_it_is_removed() {
    const ROWS: i64 = 20_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("pause.csv"), ROWS as u64, 47);
    let pause = db.write("pause", b"");
    let args = seed_args(
        &db,
        &csv,
        &[
            "--pause-file",
            path_str(&pause),
            "--connections",
            "2",
            "--json",
        ],
    );
    let started = Instant::now();
    let mut run = Background::start(&db, "seed", &args);
    run.wait_for("the pause to be logged", RUN_TIMEOUT, |log| {
        log.contains("paused: pause file")
    });
    thread::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed()));
    assert!(run.running(), "the run ended while paused");
    assert_eq!(db.count("accounts"), 0, "rows written while paused");
    assert_eq!(db.ledger_batches(), 0, "batches committed while paused");
    let log = run.stderr();
    assert!(
        log.contains(&format!("paused: pause file {} exists", pause.display())),
        "{log}"
    );

    fs::remove_file(&pause).expect("remove the pause file");
    let out = run.wait(RUN_TIMEOUT, "the pause file was removed");
    out.expect_ok();
    assert_eq!(out.figure("rows_inserted"), ROWS as u64);
    assert_eq!(db.count("accounts"), ROWS);
    let paused = out.stderr.find("paused: pause file").expect("pause logged");
    let resumed = out
        .stderr
        .find("resuming:")
        .unwrap_or_else(|| panic!("no `resuming:` line in stderr:\n{}", out.stderr));
    assert!(paused < resumed, "resumed before pausing:\n{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// 3. SIGUSR1 / SIGUSR2
// ---------------------------------------------------------------------------------------------

/// Sends SIGUSR1 once `min_rows` are in, checks the row count then stays put for a second,
/// sends SIGUSR2 and returns the finished run.
fn pause_and_resume_by_signals(db: &TestDb, mut run: Background, rows: i64, min_rows: i64) -> Run {
    run.wait_for(&format!("{min_rows} rows"), RUN_TIMEOUT, |_| {
        db.count("accounts") >= min_rows
    });
    run.signal("USR1");
    // Let the batches already admitted commit: allow a batch per connection.
    thread::sleep(Duration::from_millis(300));
    if let Some(how) = run.exit() {
        panic!(
            "SIGUSR1 ended the run ({how}) instead of pausing it\nstderr:\n{}",
            run.stderr()
        );
    }
    run.wait_for("the pause to be logged", Duration::from_secs(5), |log| {
        log.contains("paused by SIGUSR1")
    });
    thread::sleep(Duration::from_millis(700));
    let before = db.count("accounts");
    thread::sleep(Duration::from_secs(1));
    let after = db.count("accounts");
    assert!(run.running(), "the run ended while paused");
    assert_eq!(
        before,
        after,
        "rows kept coming after SIGUSR1\nstderr:\n{}",
        run.stderr()
    );
    assert!(before < rows, "the run was over before SIGUSR1 took hold");

    run.signal("USR2");
    let out = run.wait(RUN_TIMEOUT, "SIGUSR2 was sent");
    out.expect_ok();
    assert_eq!(out.figure("rows_inserted"), rows as u64);
    assert_eq!(db.count("accounts"), rows);
    let paused = out.stderr.find("paused by SIGUSR1").expect("pause logged");
    let resumed = out
        .stderr
        .rfind("resuming:")
        .unwrap_or_else(|| panic!("no `resuming:` line in stderr:\n{}", out.stderr));
    assert!(
        paused < resumed,
        "no resume after the pause:\n{}",
        out.stderr
    );
    out
}

#[test]
fn sigusr1_pauses_a_rate_limited_run_and_sigusr2_resumes_it() {
    const ROWS: i64 = 40_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("signals.csv"), ROWS as u64, 53);
    // ~5 s at 8,000 rows/s.
    let args = seed_args(
        &db,
        &csv,
        &[
            "--rate",
            "8000",
            "--batch-size",
            "1000",
            "--connections",
            "2",
            "--json",
        ],
    );
    let run = Background::start(&db, "seed", &args);
    pause_and_resume_by_signals(&db, run, ROWS, 5_000);
}

/// SIGUSR1 is the operator's brake, documented without conditions; a run started without any
/// throttle flag must not die of it (the default action of SIGUSR1 is to terminate).
#[test]
fn sigusr1_pauses_a_run_without_throttle_flags() {
    const ROWS: i64 = 20_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("signals.csv"), ROWS as u64, 59);
    // 20 batches of a fifth of a second each, one at a time: ~4 s.
    slow_inserts(&db, 0.2);
    let args = seed_args(
        &db,
        &csv,
        &["--batch-size", "1000", "--connections", "1", "--json"],
    );
    let run = Background::start(&db, "seed", &args);
    pause_and_resume_by_signals(&db, run, ROWS, 2_000);
}

// ---------------------------------------------------------------------------------------------
// 4. A stop while the throttle holds the writers
// ---------------------------------------------------------------------------------------------

/// Sends SIGINT and expects the run to end as interrupted within `STOP_BOUND`.
const STOP_BOUND: Duration = Duration::from_secs(5);

#[track_caller]
fn assert_sigint_stops(db: &TestDb, run: Background, held: &str) {
    run.signal("INT");
    let signalled = Instant::now();
    let out = run.wait(
        STOP_BOUND,
        &format!("SIGINT does not stop a run while {held}"),
    );
    eprintln!("stopped {:?} after SIGINT", signalled.elapsed());
    out.expect_code(130);
    let json = out.json();
    assert_eq!(json["status"], "interrupted", "{json}");
    assert_eq!(
        db.count("accounts") as u64,
        out.figure("rows_inserted"),
        "{json}"
    );
}

#[test]
fn sigint_stops_a_run_held_by_the_pause_file() {
    let db = TestDb::with_accounts();
    let pause = db.write("pause", b"");
    let fixture = fixture_path();
    let args = seed_args(&db, &fixture, &["--pause-file", path_str(&pause), "--json"]);
    let mut run = Background::start(&db, "seed", &args);
    run.wait_for("the pause to be logged", RUN_TIMEOUT, |log| {
        log.contains("paused: pause file")
    });
    assert_sigint_stops(&db, run, "the pause file exists");
    assert!(pause.exists());
}

#[test]
fn sigint_stops_a_run_waiting_for_the_rate() {
    let db = TestDb::with_accounts();
    let fixture = fixture_path();
    // 1,000 rows at 20 rows/s: the first batch waits ~50 s for the limiter.
    let args = seed_args(&db, &fixture, &["--rate", "20", "--json"]);
    let mut run = Background::start(&db, "seed", &args);
    run.wait_for("the run to start", RUN_TIMEOUT, |log| {
        log.contains("recorded in the ledger")
    });
    thread::sleep(Duration::from_millis(500));
    assert_sigint_stops(&db, run, "it waits for --rate");
}

// ---------------------------------------------------------------------------------------------
// 5. --max-batch-latency
// ---------------------------------------------------------------------------------------------

const HALVING: &str = "batch latency above the bound: halving the rate";
const LATENCY_ROWS: i64 = 20_000;

#[test]
fn slow_batches_halve_the_rate_and_fast_ones_bring_it_back() {
    let db = TestDb::with_accounts();
    let rows: i64 = 10_000;
    let csv = generate_csv(&db.path("latency.csv"), rows as u64, 61);
    // Batches take >= 250 ms, over the 100 ms bound, until the table holds 3,000 rows;
    // after that they are fast again.
    db.execute(
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF (SELECT count(*) FROM accounts) < 3000 THEN PERFORM pg_sleep(0.25); END IF; \
         RETURN NULL; END $$; \
         CREATE TRIGGER slow AFTER INSERT ON accounts \
           FOR EACH STATEMENT EXECUTE FUNCTION slow_insert();",
    );
    let args = seed_args(
        &db,
        &csv,
        &[
            "--batch-size",
            "500",
            "--max-batch-latency",
            "100",
            "--connections",
            "2",
            "--json",
        ],
    );
    let run = Background::start(&db, "seed", &args);
    let out = run.wait(
        Duration::from_secs(40),
        "the rate did not recover after the batches became fast again",
    );
    out.expect_ok();
    assert!(
        lines_with(&out.stderr, HALVING) > 1,
        "the rate was not halved more than once:\n{}",
        out.stderr
    );
    // The rates the bar showed, in order: down while batches were slow, up again after.
    let rates: Vec<u64> = out
        .stderr
        .lines()
        .filter_map(|l| l.split("throttled: batch latency, ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect();
    let lowest = rates.iter().enumerate().min_by_key(|(_, r)| **r);
    let (at, low) = lowest.expect("the rate was never shown as throttled");
    assert!(
        rates[at..].iter().any(|r| r > low),
        "the rate did not recover once batches were fast again: {rates:?}\n{}",
        out.stderr
    );
    assert_eq!(out.figure("rows_inserted"), rows as u64);
    assert_eq!(db.count("accounts"), rows);
}

#[test]
fn without_a_latency_bound_slow_batches_are_not_throttled() {
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("latency.csv"), LATENCY_ROWS as u64, 61);
    slow_inserts(&db, 0.25);
    let args = seed_args(
        &db,
        &csv,
        &["--batch-size", "1000", "--connections", "2", "--json"],
    );
    let (run, took) = timed_run(&args);
    run.expect_ok();
    eprintln!("20 slow batches without a latency bound: {took:?}");
    assert_eq!(
        lines_with(&run.stderr, HALVING),
        0,
        "throttled without --max-batch-latency:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("throttled:"),
        "throttled without --max-batch-latency:\n{}",
        run.stderr
    );
    assert_eq!(run.figure("rows_inserted"), LATENCY_ROWS as u64);
    assert_eq!(db.count("accounts"), LATENCY_ROWS);
}

// ---------------------------------------------------------------------------------------------
// 6. --lock-timeout, --statement-timeout
// ---------------------------------------------------------------------------------------------

/// Another session's open transaction holding ACCESS EXCLUSIVE on `accounts`.
fn lock_accounts(db: &TestDb) -> postgres::Client {
    let mut locker = db.client();
    locker
        .batch_execute("BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .expect("lock accounts");
    locker
}

#[test]
fn a_held_lock_fails_the_batch_with_55p03_when_retries_are_off() {
    let db = TestDb::with_accounts();
    let mut locker = lock_accounts(&db);
    let fixture = fixture_path();
    let args = seed_args(
        &db,
        &fixture,
        &["--lock-timeout", "200", "--max-retries", "0", "--json"],
    );
    let (run, took) = timed_run(&args);
    locker.batch_execute("COMMIT").expect("release the lock");
    run.expect_code(1);
    let json = run.json();
    assert_eq!(json["status"], "failed", "{json}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(error.contains("55P03"), "{json}");
    assert!(
        run.stderr.contains("error:") && run.stderr.contains("55P03"),
        "{}",
        run.stderr
    );
    // 200 ms, not the default 5 s.
    assert!(
        took < Duration::from_secs(3),
        "--lock-timeout 200 took {took:?}"
    );
    assert_eq!(db.count("accounts"), 0);
}

/// `--lock-timeout 0` sends no `SET LOCAL`: the database's own setting (here 300 ms) rules,
/// rather than `0` (wait forever) overriding it.
#[test]
fn lock_timeout_zero_leaves_the_databases_setting() {
    let db = TestDb::with_accounts();
    db.execute(&format!(
        "ALTER DATABASE \"{}\" SET lock_timeout = '300ms'",
        db.name()
    ));
    let mut locker = lock_accounts(&db);
    let fixture = fixture_path();
    let args = seed_args(
        &db,
        &fixture,
        &[
            "--lock-timeout",
            "0",
            "--max-retries",
            "0",
            "--batch-timeout",
            "20",
            "--json",
        ],
    );
    let (run, took) = timed_run(&args);
    locker.batch_execute("COMMIT").expect("release the lock");
    run.expect_code(1);
    let error = run.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("55P03"), "{error}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(db.count("accounts"), 0);
}

#[test]
fn a_lock_timeout_is_retried_until_the_lock_is_released() {
    let db = TestDb::with_accounts();
    let mut locker = lock_accounts(&db);
    let fixture = fixture_path();
    let args = seed_args(&db, &fixture, &["--lock-timeout", "200", "--json"]);
    let mut run = Background::start(&db, "seed", &args);
    thread::sleep(Duration::from_secs(1));
    if let Some(how) = run.exit() {
        panic!(
            "the run ended ({how}) while the lock was held\nstderr:\n{}",
            run.stderr()
        );
    }
    locker.batch_execute("COMMIT").expect("release the lock");
    let out = run.wait(RUN_TIMEOUT, "the lock was released");
    out.expect_ok();
    assert_eq!(out.figure("rows_inserted"), 1000);
    assert!(out.figure("retries") >= 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("55P03"),
        "no lock timeout was logged:\n{}",
        out.stderr
    );
    assert_eq!(db.count("accounts"), 1000);
}

#[test]
fn a_statement_timeout_bounds_each_batch() {
    let db = TestDb::with_accounts();
    slow_inserts(&db, 2.0);
    let fixture = fixture_path();
    let args = seed_args(
        &db,
        &fixture,
        &["--statement-timeout", "300", "--max-retries", "0", "--json"],
    );
    let (run, took) = timed_run(&args);
    run.expect_code(1);
    let json = run.json();
    assert!(
        json["error"].as_str().unwrap_or_default().contains("57014"),
        "{json}"
    );
    assert!(
        took < Duration::from_millis(1900),
        "--statement-timeout 300 took {took:?}"
    );
    assert_eq!(db.count("accounts"), 0);
}

/// A timeout the server cannot take (beyond its range, here 2^31 ms and more) is refused
/// before anything is recorded: exit 2 naming the flag, for seed, its dry run and purge; no
/// row written or deleted, no ledger created.
#[test]
fn a_timeout_the_server_refuses_is_a_usage_error_before_anything_is_recorded() {
    let db = TestDb::with_accounts();
    let fixture = fixture_path();
    let too_long = "3000000000";
    for (flag, extra) in [
        ("--statement-timeout", &[][..]),
        ("--lock-timeout", &[][..]),
        ("--statement-timeout", &["--dry-run"][..]),
    ] {
        let mut more = vec![flag, too_long];
        more.extend_from_slice(extra);
        let run = run_bin_bounded(&seed_args(&db, &fixture, &more), RUN_TIMEOUT);
        let what = format!("seed {flag} {too_long} {extra:?}");
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("{flag}: the server refuses it"))
                && run.stderr.contains("22023"),
            "{what}:\n{}",
            run.stderr
        );
        assert_eq!(db.count("accounts"), 0, "{what}");
        assert_eq!(
            db.scalar_text("SELECT to_regnamespace('provisioner')::text"),
            None,
            "{what}: the ledger was created"
        );
    }
    psql_load_fixture(&db);
    let args = purge_args(&db, &fixture, &["--yes", "--lock-timeout", too_long]);
    let run = run_bin_bounded(&args, RUN_TIMEOUT);
    run.expect_code(2);
    assert!(
        run.stderr.contains("--lock-timeout: the server refuses it"),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("accounts"), 1000);
    assert_eq!(
        db.scalar_text("SELECT to_regnamespace('provisioner')::text"),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// 7. --max-replica-lag without standbys
// ---------------------------------------------------------------------------------------------

#[test]
fn no_standby_means_no_replica_lag_pause() {
    let db = TestDb::with_accounts();
    let fixture = fixture_path();
    let args = seed_args(&db, &fixture, &["--max-replica-lag", "0.001", "--json"]);
    let (run, took) = timed_run(&args);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 1000);
    assert!(
        !run.stderr.contains("paused"),
        "paused without standbys:\n{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_replica_url_that_is_no_standby_is_reported_and_does_not_pause() {
    let db = TestDb::with_accounts();
    let fixture = fixture_path();
    // A password on the watched URL must not show in what the run prints.
    let replica = format!("{} password=replica-s3cret", db.url());
    let args = seed_args(
        &db,
        &fixture,
        &[
            "--max-replica-lag",
            "0.001",
            "--replica-url",
            &replica,
            "--batch-size",
            "100",
            "--rate",
            "500",
            "--json",
        ],
    );
    let (run, _) = timed_run(&args);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 1000);
    assert!(
        run.stderr.contains("--replica-url is not a standby"),
        "no warning about a primary given as the standby:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("paused"), "{}", run.stderr);
    assert!(!run.stderr.contains("replica-s3cret") && !run.stdout.contains("replica-s3cret"));
    // The command line stored for the resume command has it removed too.
    let stored = db.scalar_text("SELECT array_to_string(command_line, ' ') FROM provisioner.runs");
    assert!(!stored.unwrap_or_default().contains("replica-s3cret"));
}
