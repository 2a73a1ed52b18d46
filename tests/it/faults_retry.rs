//! Real faults inside the server, and what the retry policy does with them:
//!
//! 1. backends terminated (`pg_terminate_backend`) every ~300 ms (12 rounds) while 200,000
//!    rows load over four connections: every batch is replayed until it commits, exactly once;
//! 2. a statement trigger that fails a third of the COPYs with a serialization failure
//!    (40001), then with a deadlock (40P01): every failed COPY is replayed, and only those;
//!    A fault that never clears is retried `--max-retries` times, or for
//!    `--retry-max-elapsed` seconds, and no more;
//! 3. a CHECK violation (23514) is permanent: not retried, and the line is named;
//! 4. a connection terminated while COPY is at some row is not blamed on that row's line.
//!
//! Every test ends by checking the table against the input: the exact row count, no key
//! twice, and the same rows psql's `\copy` loads from the same file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(150);

/// Ledger figures of every batch of every run: (batches, rows).
fn ledger_totals(db: &TestDb) -> (i64, i64) {
    let row = db
        .client()
        .query_one(
            "SELECT count(*), coalesce(sum(rows), 0)::bigint FROM provisioner.batches",
            &[],
        )
        .expect("read the ledger");
    (row.get(0), row.get(1))
}

// ---------------------------------------------------------------------------------------------
// 1. Backend killer
// ---------------------------------------------------------------------------------------------

/// Rounds of the killer, ~300 ms apart: enough to hit batches again and again, bounded so
/// that the backoff of a batch hit many times in a row cannot stretch the test.
const KILL_ROUNDS: usize = 12;

#[test]
fn terminated_backends_are_replayed_until_every_batch_commits_once() {
    const ROWS: i64 = 200_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 11);
    // Our own application_name, so parallel tests never kill each other's backends.
    let app = format!("faults_{}", db.name());
    assert!(app.len() < 64, "application_name is cut at 63 bytes: {app}");
    let url = format!("{} application_name={app}", db.url());
    let mut run = Spawned::seed(
        &csv,
        &url,
        &[
            "--connections",
            "4",
            "--batch-size",
            "2000",
            "--max-retries",
            "20",
            "--retry-max-elapsed",
            "90",
        ],
    );
    // Set-up (catalog, ledger) is not retried: start killing once batches flow.
    run.wait_for("the first committed batch", RUN_TIMEOUT, || {
        db.ledger_batches() > 0
    });

    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (stop, app) = (stop.clone(), app.clone());
        let mut client = db.client();
        thread::spawn(move || {
            let mut killed = 0i64;
            for _ in 0..KILL_ROUNDS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let row = client
                    .query_one(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
                         FROM pg_stat_activity WHERE application_name = $1",
                        &[&app],
                    )
                    .expect("terminate the run's backends");
                killed += row.get::<_, i64>(0);
                thread::sleep(Duration::from_millis(300));
            }
            killed
        })
    };
    let out = run.wait(RUN_TIMEOUT);
    stop.store(true, Ordering::SeqCst);
    let killed = killer.join().expect("the killer thread panicked");
    eprintln!("{killed} backends terminated; {}", out.stdout.trim());
    out.expect_ok();
    assert!(
        killed > 0,
        "no backend was terminated: the test proved nothing"
    );
    let json = out.json();
    assert!(
        out.figure("retries") > 0,
        "{killed} backends terminated but no retry: {json}\nstderr:\n{}",
        out.stderr
    );
    assert_eq!(json["status"], "completed", "{json}");
    assert_eq!(out.figure("rows_read"), ROWS as u64);
    assert_eq!(out.figure("rows_inserted"), ROWS as u64, "{json}");
    assert_eq!(out.figure("batches"), 100, "{json}");
    assert_eq!(ledger_totals(&db), (100, ROWS), "ledger batches and rows");
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

// ---------------------------------------------------------------------------------------------
// 2. A trigger failing a third of the COPYs with a transient SQLSTATE
// ---------------------------------------------------------------------------------------------

/// Loads 20,000 rows in batches of 1,000 while a statement-level AFTER INSERT trigger raises
/// `code` on the first COPY and then at random on a third of them. Two sequences (which a
/// rollback does not undo) count the trigger's calls and the faults it raised.
fn transient_trigger_faults_are_replayed(code: &str) {
    const ROWS: i64 = 20_000;
    const BATCHES: i64 = 20;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 3);
    db.execute(&format!(
        "CREATE SEQUENCE fault_calls; \
         CREATE SEQUENCE faults_raised; \
         CREATE FUNCTION flaky_insert() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF nextval('fault_calls') = 1 OR random() < 0.33 THEN \
             PERFORM nextval('faults_raised'); \
             RAISE EXCEPTION 'injected fault' USING ERRCODE = '{code}'; \
           END IF; \
           RETURN NULL; \
         END $$; \
         CREATE TRIGGER flaky AFTER INSERT ON accounts \
           FOR EACH STATEMENT EXECUTE FUNCTION flaky_insert();"
    ));
    let out = run_bin_bounded(
        &[
            "seed",
            path_str(&csv),
            "--database-url",
            db.url(),
            "--connections",
            "4",
            "--batch-size",
            "1000",
            "--max-retries",
            "20",
            "--json",
        ],
        RUN_TIMEOUT,
    );
    out.expect_ok();
    let sequence = |name: &str| {
        db.scalar_i64(&format!(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {name}"
        ))
    };
    let (calls, raised) = (sequence("fault_calls"), sequence("faults_raised"));
    assert!(raised > 0, "the trigger raised nothing");
    // Every COPY fires the trigger once: one call per batch, plus one per failed attempt.
    assert_eq!(calls, BATCHES + raised, "trigger calls");
    let json = out.json();
    assert_eq!(
        out.figure("retries"),
        raised as u64,
        "one retry per injected {code}: {json}\nstderr:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("SQLSTATE {code}")),
        "the retry warnings name SQLSTATE {code}:\n{}",
        out.stderr
    );
    assert_eq!(json["status"], "completed", "{json}");
    assert_eq!(out.figure("rows_inserted"), ROWS as u64, "{json}");
    assert_eq!(out.figure("batches"), BATCHES as u64, "{json}");
    assert_eq!(
        ledger_totals(&db),
        (BATCHES, ROWS),
        "ledger batches and rows"
    );
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

#[test]
fn serialization_failures_raised_by_a_trigger_are_replayed() {
    transient_trigger_faults_are_replayed("40001");
}

#[test]
fn deadlocks_raised_by_a_trigger_are_replayed() {
    transient_trigger_faults_are_replayed("40P01");
}

// ---------------------------------------------------------------------------------------------
// 2b. A transient error that never clears: the policy gives up
// ---------------------------------------------------------------------------------------------

/// A trigger failing every COPY with 40001; counts its calls in a sequence.
fn always_serialization_failure(db: &TestDb) {
    db.execute(
        "CREATE SEQUENCE fault_calls; \
         CREATE FUNCTION always_fails() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           PERFORM nextval('fault_calls'); \
           RAISE EXCEPTION 'injected fault' USING ERRCODE = '40001'; \
         END $$; \
         CREATE TRIGGER always_fails AFTER INSERT ON accounts \
           FOR EACH STATEMENT EXECUTE FUNCTION always_fails();",
    );
}

#[test]
fn retries_stop_after_max_retries_and_after_retry_max_elapsed() {
    let db = TestDb::with_accounts();
    always_serialization_failure(&db);
    let csv = db.write("fixture.csv", fixture_bytes());
    let seed = |extra: &[&str]| {
        let mut args = vec![
            "seed",
            path_str(&csv),
            "--database-url",
            db.url(),
            "--connections",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let started = std::time::Instant::now();
        let out = run_bin_bounded(&args, RUN_TIMEOUT);
        (out, started.elapsed())
    };
    let calls = || db.scalar_i64("SELECT last_value FROM fault_calls");

    // By count: the first attempt and three retries, then the run fails.
    let (out, _) = seed(&["--max-retries", "3"]);
    out.expect_code(1);
    assert_eq!(out.figure("retries"), 3, "{}", out.stdout);
    assert_eq!(calls(), 4, "COPY attempts");
    assert!(
        out.stderr.contains("gave up after 3 retries") && out.stderr.contains("40001"),
        "{}",
        out.stderr
    );
    assert_eq!(db.count("accounts"), 0);

    // By time: a hundred retries allowed, but none started a second after the first failure
    // (delays from 100 ms, doubling: a handful of retries).
    let before = calls();
    let (out, took) = seed(&["--max-retries", "100", "--retry-max-elapsed", "1"]);
    out.expect_code(1);
    let retries = out.figure("retries");
    assert!((1..=8).contains(&retries), "{retries} retries in {took:?}");
    assert_eq!(calls() - before, retries as i64 + 1, "COPY attempts");
    assert!(
        took < Duration::from_secs(20),
        "gave up only after {took:?}"
    );
    assert!(out.stderr.contains("gave up after"), "{}", out.stderr);
    assert_eq!(db.count("accounts"), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. A permanent error is not retried
// ---------------------------------------------------------------------------------------------

/// `generated.csv` of `rows` rows with record `index` (0-based) given role 'wizard', which
/// the table's CHECK refuses; returns the file and the physical line the record starts on.
pub fn csv_with_a_wizard(db: &TestDb, rows: u64, index: usize) -> (std::path::PathBuf, u64) {
    let (names, mut records) = csv_table(&generate_csv(&db.path("generated.csv"), rows, 5));
    let role = ACCOUNT_COLUMNS.iter().position(|c| *c == "role").unwrap();
    records[index][role] = Some("wizard".into());
    let text = csv_file(&names, &records, "\n");
    let line = parse_csv(&text)
        .iter()
        .find(|r| r.fields[role].as_deref() == Some("wizard"))
        .expect("the wizard record")
        .line;
    (db.write("wizard.csv", text), line)
}

#[test]
fn a_check_violation_is_not_retried_and_names_its_line() {
    let db = TestDb::with_accounts();
    // Record 12,345 is in batch 13 of 20 (batches of 1,000).
    let (csv, line) = csv_with_a_wizard(&db, 20_000, 12_345);
    let out = run_bin_bounded(
        &[
            "seed",
            path_str(&csv),
            "--database-url",
            db.url(),
            "--connections",
            "2",
            "--batch-size",
            "1000",
            "--json",
        ],
        RUN_TIMEOUT,
    );
    out.expect_code(1);
    let json = out.json();
    assert_eq!(
        out.figure("retries"),
        0,
        "a CHECK violation was retried: {json}"
    );
    assert!(
        !out.stderr.contains("replaying"),
        "a retry was announced:\n{}",
        out.stderr
    );
    assert!(
        out.named_lines().contains(&line),
        "stderr does not name line {line}:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("23514"), "no SQLSTATE:\n{}", out.stderr);
    let error = json["error"].as_str().expect("an error in the JSON");
    assert!(
        error.contains(&format!("line {line}")) && error.contains("23514"),
        "{error}"
    );
    assert_eq!(json["status"], "failed", "{json}");

    // What committed is whole batches, each recorded once, and never the failed one.
    let (batches, rows) = ledger_totals(&db);
    assert_eq!(db.count("accounts"), rows, "rows in accounts vs the ledger");
    assert_eq!(rows, batches * 1000);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM provisioner.batches WHERE seq = 13"),
        0,
        "the failed batch is in the ledger"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT email) FROM accounts"),
        rows
    );
    assert_eq!(
        db.scalar_text("SELECT status FROM provisioner.runs")
            .as_deref(),
        Some("failed")
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A terminated connection is no row's fault
// ---------------------------------------------------------------------------------------------

/// An administrator terminates the connection (`pg_terminate_backend`, 57P01) while COPY is
/// at line 4 of the file: the server's error context names that COPY line, but the row did
/// nothing wrong, so the message names the batch's lines, not a line of its own.
#[test]
fn a_terminated_connection_is_not_blamed_on_the_line_copy_was_at() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, a text); \
         CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.a = 'stall' THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$; \
         CREATE TRIGGER stall BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION stall()",
    );
    let csv = db.write("t.csv", "id,a\n1,x\n2,y\n3,stall\n4,z\n");
    let app = format!("terminated_{}", db.name());
    assert!(app.len() < 64, "application_name is cut at 63 bytes: {app}");
    let url = format!("{} application_name={app}", db.url());
    let args = ["--table", "t", "--max-retries", "0", "--connections", "1"];
    let mut run = Spawned::seed(&csv, &url, &args);
    let stalled = "SELECT count(*) FROM pg_stat_activity \
                   WHERE application_name = $1 AND wait_event = 'PgSleep'";
    let mut client = db.client();
    run.wait_for("COPY stalled at line 4", RUN_TIMEOUT, || {
        client
            .query_one(stalled, &[&app])
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    });
    client
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND wait_event = 'PgSleep'",
            &[&app],
        )
        .expect("terminate the stalled backend");
    let out = run.wait(RUN_TIMEOUT);
    out.expect_code(1);
    assert!(out.stderr.contains("57P01"), "{}", out.stderr);
    assert!(
        out.stderr.contains("batch 1 (lines 2-5)"),
        "the batch is not named:\n{}",
        out.stderr
    );
    assert_eq!(
        out.named_lines(),
        Vec::<u64>::new(),
        "a line is blamed:\n{}",
        out.stderr
    );
    assert_eq!(db.count("t"), 0);
}
