//! Seeding and purging through a real PgBouncer in transaction pooling mode (1.18: no
//! prepared statement support), with fewer server connections than the run's client
//! connections, so consecutive transactions of one client land on different server
//! connections. A named prepared statement kept past its transaction, a session `SET` or an
//! advisory lock outside a transaction would break here (or worse, leak to another client).
//! Plus the client-side batch watchdog: a COPY stalled on the network is abandoned at
//! `--batch-timeout` and replayed.

mod common;

use std::time::Duration;

use common::bouncer::Bouncer;
use common::proxy::Proxy;
use common::*;

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
    let mut first = common::Spawned::start(&[&args[..], &["--rate", "10000"]].concat());
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
