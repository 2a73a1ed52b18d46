//! Seeding and purging through a real PgBouncer in transaction pooling mode (1.18: no
//! prepared statement support), with fewer server connections than the run's client
//! connections, so consecutive transactions of one client land on different server
//! connections. A named prepared statement kept past its transaction, a session `SET` or an
//! advisory lock outside a transaction would break here (or worse, leak to another client).
//! Plus the client-side batch watchdog: a COPY stalled on the network is abandoned at
//! `--batch-timeout` and replayed.

use std::time::Duration;

use crate::common::bouncer::Bouncer;
use crate::common::proxy::Proxy;
use crate::common::*;

const LONG: Duration = Duration::from_secs(120);

fn run(args: &[&str]) -> Run {
    run_bin_bounded(args, LONG)
}

fn seed_via(url: &str, csv: &std::path::Path, extra: &[&str]) -> Run {
    let mut args = vec!["seed", path_str(csv), "--database-url", url, "--json"];
    args.extend_from_slice(extra);
    run(&args)
}

fn purge_via(url: &str, extra: &[&str]) -> Run {
    let mut args = vec!["purge", "--database-url", url, "--json", "--yes"];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn seed_through_transaction_pooling_gives_exact_rows_resumes_and_lists_runs() {
    let bouncer = Bouncer::start();

    // The fixture, 4 clients over 2 server connections.
    let db = TestDb::with_accounts();
    let url = bouncer.url(&db);
    let fixture = fixture_path();
    let seeded = seed_via(
        &url,
        &fixture,
        &["--connections", "4", "--batch-size", "50"],
    );
    seeded.expect_ok();
    assert_eq!(seeded.figure("rows_inserted"), 1000);
    assert_accounts_equal_csv(db.url(), &fixture, 1000);
    assert_eq!(db.ledger_batches(), 20);

    // Again with skip, then update: the staged merges, through the pooler too.
    let skipped = seed_via(
        &url,
        &fixture,
        &[
            "--connections",
            "4",
            "--batch-size",
            "50",
            "--on-conflict",
            "skip",
        ],
    );
    skipped.expect_ok();
    assert_eq!(
        (
            skipped.figure("rows_inserted"),
            skipped.figure("rows_skipped")
        ),
        (0, 1000)
    );
    let updated = seed_via(
        &url,
        &fixture,
        &[
            "--connections",
            "4",
            "--batch-size",
            "50",
            "--on-conflict",
            "update",
        ],
    );
    updated.expect_ok();
    assert_eq!(
        (
            updated.figure("rows_inserted"),
            updated.figure("rows_updated")
        ),
        (0, 1000)
    );
    assert_accounts_equal_csv(db.url(), &fixture, 1000);

    // `runs` through the pooler: the three runs, completed.
    let runs = run(&["runs", "--database-url", &url, "--json"]);
    runs.expect_ok();
    let listed: serde_json::Value = serde_json::from_str(runs.stdout.trim()).expect("runs JSON");
    let statuses: Vec<&str> = listed
        .as_array()
        .expect("an array of runs")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["completed"; 3], "{listed}");

    // 50k generated rows in small batches, killed mid-run, then resumed: exactly once.
    let db = TestDb::with_accounts();
    let url = bouncer.url(&db);
    let csv = generate_csv(&db.path("50k.csv"), 50_000, 7);
    let args = [
        "seed",
        path_str(&csv),
        "--database-url",
        &url,
        "--connections",
        "4",
        "--batch-size",
        "500",
        "--json",
    ];
    let mut first = Spawned::start(&[&args[..], &["--rate", "10000"]].concat());
    first.wait_for("ten committed batches", LONG, || db.ledger_batches() >= 10);
    let killed = first.kill_and_collect();
    assert_eq!(killed.code, -1, "killed by a signal: {killed:?}");
    let committed = db.ledger_batches();
    assert!(committed < 100, "the run finished before it was killed");
    let resumed = run(&[&args[..], &["--resume"]].concat());
    resumed.expect_ok();
    assert_eq!(
        resumed.figure("rows_resumed") + resumed.figure("rows_inserted"),
        50_000,
        "{}",
        resumed.stdout
    );
    assert!(resumed.figure("rows_resumed") >= committed as u64 * 500);
    assert_accounts_equal_csv(db.url(), &csv, 50_000);
    assert_eq!(db.ledger_batches(), 100);
}

#[test]
fn purge_through_transaction_pooling_by_file_run_and_predicate_is_exact() {
    let bouncer = Bouncer::start();
    let db = TestDb::with_accounts();
    let url = bouncer.url(&db);
    let fixture = fixture_path();
    let many = ["--connections", "4", "--batch-size", "50"];

    // By file.
    seed_via(&url, &fixture, &many).expect_ok();
    let purged = purge_via(&url, &[&[path_str(&fixture)][..], &many].concat());
    purged.expect_ok();
    assert_eq!(
        (purged.figure("rows_deleted"), purged.figure("rows_missing")),
        (1000, 0)
    );
    assert_eq!(db.count("accounts"), 0);

    // By run: only what that run inserted, not the row that was there before.
    db.execute(
        "INSERT INTO accounts (external_id, email, username) \
         VALUES ('00000000-0000-0000-0000-000000000001', 'keep@example.test', 'keep')",
    );
    let seeded = seed_via(&url, &fixture, &many);
    seeded.expect_ok();
    let run_id = seeded.figure("run_id").to_string();
    let purged = purge_via(&url, &[&["--run", &run_id][..], &many].concat());
    purged.expect_ok();
    assert_eq!(purged.figure("rows_deleted"), 1000);
    assert_eq!(db.count("accounts"), 1);

    // By predicate, in page ranges.
    seed_via(&url, &fixture, &many).expect_ok();
    let predicate = "email <> 'keep@example.test'";
    let purged = purge_via(&url, &[&["--where", predicate][..], &many].concat());
    purged.expect_ok();
    assert_eq!(purged.figure("rows_deleted"), 1000);
    assert_eq!(db.count("accounts"), 1);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM provisioner.runs WHERE status = 'completed'"),
        6
    );
}

/// A COPY whose data the network swallows waits forever on both sides: the server ignores
/// `statement_timeout` while it waits for the client, and the client waits for a reply.
/// The watchdog drops the connection at `--batch-timeout` and the batch is replayed.
#[test]
fn a_stalled_copy_is_abandoned_at_the_batch_timeout_and_replayed_exactly_once() {
    let proxy = Proxy::start(server_tcp_addr());
    let db = TestDb::with_accounts();
    let url = db.url_via(proxy.addr());
    let fixture = fixture_path();
    let opts = [
        "--connections",
        "2",
        "--batch-size",
        "100",
        "--batch-timeout",
        "2",
        "--statement-timeout",
        "500",
    ];

    proxy.stall_copies(1);
    let seeded = seed_via(&url, &fixture, &opts);
    seeded.expect_ok();
    assert_eq!(proxy.copies_stalled(), 1);
    assert_eq!(seeded.figure("retries"), 1, "{}", seeded.stderr);
    assert!(
        seeded.stderr.contains("--batch-timeout"),
        "the retry does not say why:\n{}",
        seeded.stderr
    );
    assert_eq!(seeded.figure("rows_inserted"), 1000);
    assert_accounts_equal_csv(db.url(), &fixture, 1000);
    assert_eq!(db.ledger_batches(), 10);

    // The purge's key COPY, the same way.
    proxy.stall_copies(1);
    let purged = purge_via(&url, &[&[path_str(&fixture)][..], &opts].concat());
    purged.expect_ok();
    assert_eq!(proxy.copies_stalled(), 2);
    assert_eq!(purged.figure("retries"), 1, "{}", purged.stderr);
    assert_eq!(purged.figure("rows_deleted"), 1000);
    assert_eq!(db.count("accounts"), 0);
}

/// Rows of the mixed file for reject mode through the pooler.
const MIXED_ROWS: usize = 3000;

/// What one row of the mixed file is: good, or refused by a check or by the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mixed {
    Good,
    /// Four fields of five: the client's field count check (22P04).
    Short,
    /// `not-a-uuid-N`: the client's uuid check (22P02), column external_id.
    BadUuid,
    /// Role `wizard`: the CHECK constraint (23514).
    Wizard,
    /// Username `bot_N`: the trigger's `RAISE EXCEPTION … USING ERRCODE = 'P0001'`.
    Bot,
    /// The email of the account that was there before (23505).
    Taken,
    /// The email of the row before, in the same batch of 50 (23505): the later one loses,
    /// whatever order the batches commit in.
    RepeatsPrevious,
}

impl Mixed {
    /// Six bad rows in every hundred, each batch of 50 holding three, none first in a batch.
    fn of(i: usize) -> Mixed {
        match i % 100 {
            7 => Mixed::Short,
            19 => Mixed::BadUuid,
            31 => Mixed::Wizard,
            42 => Mixed::Bot,
            55 => Mixed::Taken,
            68 => Mixed::RepeatsPrevious,
            _ => Mixed::Good,
        }
    }

    /// The rejects file's column, SQLSTATE and a word of its reason for this kind of row.
    fn rejection(self) -> (Option<&'static str>, &'static str, &'static str) {
        match self {
            Mixed::Good => unreachable!("a good row is not rejected"),
            Mixed::Short => (None, "22P04", "expected 5 fields"),
            Mixed::BadUuid => (Some("external_id"), "22P02", "uuid"),
            Mixed::Wizard => (None, "23514", "accounts_role_check"),
            Mixed::Bot => (None, "P0001", "no bots: bot_"),
            Mixed::Taken | Mixed::RepeatsPrevious => (None, "23505", "accounts_email_key"),
        }
    }
}

/// The i-th (0-based) record of the mixed file, on line i + 2.
fn mixed_record(i: usize) -> String {
    let uuid = format!("00000000-0000-4000-8000-{i:012}");
    let (email, username) = (format!("u{i}@example.test"), format!("user_{i}"));
    match Mixed::of(i) {
        Mixed::Good => format!("{uuid},{email},{username},User {i},user"),
        Mixed::Short => format!("{uuid},{email},{username},User {i}"),
        Mixed::BadUuid => format!("not-a-uuid-{i},{email},{username},User {i},user"),
        Mixed::Wizard => format!("{uuid},{email},{username},User {i},wizard"),
        Mixed::Bot => format!("{uuid},{email},bot_{i},User {i},user"),
        Mixed::Taken => format!("{uuid},taken@example.test,{username},User {i},user"),
        Mixed::RepeatsPrevious => {
            format!("{uuid},u{}@example.test,{username},User {i},user", i - 1)
        }
    }
}

/// A fresh `accounts` with one account (`taken@example.test`) and a trigger refusing bots.
fn mixed_target() -> TestDb {
    let db = TestDb::with_accounts();
    db.execute(
        "CREATE FUNCTION no_bots() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.username LIKE 'bot%' THEN \
             RAISE EXCEPTION 'no bots: %', NEW.username USING ERRCODE = 'P0001'; \
           END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER no_bots BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION no_bots(); \
         INSERT INTO accounts (external_id, email, username) \
           VALUES ('00000000-0000-4000-8000-999999999999', 'taken@example.test', 'taken');",
    );
    db
}

/// The rejects file holds exactly the bad rows of the mixed file, each once, as they were in
/// the input, with their line, column, SQLSTATE and reason (in any batch order).
#[track_caller]
fn assert_mixed_rejects(rejects: &std::path::Path, what: &str) {
    use crate::common::rejects::read_rejects;
    let (header, mut got) = read_rejects(rejects);
    assert_eq!(
        header,
        b"external_id,email,username,display_name,role,\
          rejected_line,rejected_column,rejected_sqlstate,rejected_reason",
        "{what}: the rejects file's header"
    );
    got.sort_by_key(|r| r.line);
    let bad: Vec<usize> = (0..MIXED_ROWS)
        .filter(|&i| Mixed::of(i) != Mixed::Good)
        .collect();
    let lines: Vec<u64> = got.iter().map(|r| r.line).collect();
    let want_lines: Vec<u64> = bad.iter().map(|&i| i as u64 + 2).collect();
    assert_eq!(lines, want_lines, "{what}: the rejected lines");
    for (r, &i) in got.iter().zip(&bad) {
        let (column, sqlstate, reason) = Mixed::of(i).rejection();
        assert_eq!(r.raw, mixed_record(i).as_bytes(), "{what}: line {}", r.line);
        assert_eq!(
            (r.column.as_deref(), r.sqlstate.as_str()),
            (column, sqlstate),
            "{what}: line {}: {}",
            r.line,
            r.reason
        );
        assert!(
            r.reason.contains(reason),
            "{what}: line {}: {reason:?} not in {:?}",
            r.line,
            r.reason
        );
    }
}

/// Reject mode through transaction pooling: the savepoints of a batch's tries, the COPY that
/// names the refused row and the bisection for the rows it does not name all stay inside one
/// transaction, so one server connection; 4 clients share 2. A dry run, one transaction of
/// savepoints through the pooler, writes nothing and counts what a real run would load.
#[test]
fn reject_mode_through_transaction_pooling_loads_the_good_rows_and_rejects_exactly_the_bad() {
    let bouncer = Bouncer::start();
    let db = mixed_target();
    let records: Vec<String> = (0..MIXED_ROWS).map(mixed_record).collect();
    let file = db.write(
        "mixed.csv",
        format!(
            "external_id,email,username,display_name,role\n{}\n",
            records.join("\n")
        ),
    );
    let good: Vec<usize> = (0..MIXED_ROWS)
        .filter(|&i| Mixed::of(i) == Mixed::Good)
        .collect();
    let bad = MIXED_ROWS - good.len();
    let mut want_names: Vec<Option<String>> = good
        .iter()
        .map(|i| Some(format!("user_{i}")))
        .chain([Some("taken".to_string())])
        .collect();
    want_names.sort();
    let names = |db: &TestDb| db.column_text("SELECT username::text FROM accounts ORDER BY 1");
    let many = ["--connections", "4", "--batch-size", "50"];

    let rejects = db.path("rejects.csv");
    let run = seed_via(
        &bouncer.url(&db),
        &file,
        &[&many[..], &["--rejects", path_str(&rejects)]].concat(),
    );
    run.expect_code(3);
    assert_eq!(
        (
            run.figure("rows_read"),
            run.figure("rows_inserted"),
            run.figure("rows_rejected")
        ),
        (MIXED_ROWS as u64, good.len() as u64, bad as u64),
        "{}",
        run.stdout
    );
    assert_eq!(names(&db), want_names, "the accounts after the run");
    assert_mixed_rejects(&rejects, "seed --rejects");
    assert_eq!(db.ledger_batches(), (MIXED_ROWS / 50) as i64);
    assert_eq!(
        db.scalar_i64("SELECT sum(rejected)::bigint FROM provisioner.batches"),
        bad as i64
    );

    // The dry run, on a fresh copy of the target.
    let dry = mixed_target();
    let dry_rejects = dry.path("rejects.csv");
    let run = seed_via(
        &bouncer.url(&dry),
        &file,
        &[
            &many[..],
            &["--rejects", path_str(&dry_rejects), "--dry-run"],
        ]
        .concat(),
    );
    run.expect_code(3);
    assert_eq!(
        (run.figure("rows_inserted"), run.figure("rows_rejected")),
        (good.len() as u64, bad as u64),
        "{}",
        run.stdout
    );
    assert_eq!(run.json()["command"], "seed --dry-run");
    assert!(run.stderr.contains("would be inserted"), "{}", run.stderr);
    assert_mixed_rejects(&dry_rejects, "seed --dry-run --rejects");
    assert_eq!(
        names(&dry),
        [Some("taken".to_string())],
        "the dry run wrote rows"
    );
    assert_eq!(
        dry.scalar_text("SELECT to_regnamespace('provisioner')::text"),
        None,
        "the dry run created the ledger"
    );
}
