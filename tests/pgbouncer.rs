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
fn seed_through_transaction_pooling_gives_exact_rows_and_resumes() {
    let bouncer = Bouncer::start();
    let db = TestDb::with_accounts();
    let url = bouncer.url(&db);

    // The fixture, 4 clients over 2 server connections.
    let fixture = fixture_path();
    let seeded = seed_via(
        &url,
        &fixture,
        &["--connections", "4", "--batch-size", "50"],
    );
    seeded.expect_ok();
    assert_eq!(seeded.figure("rows_inserted"), 1000);
    assert_accounts_equal_csv(db.url(), &fixture, 1000);

    // 50k generated rows in small batches.
    let db = TestDb::with_accounts();
    let url = bouncer.url(&db);
    let csv = generate_csv(&db.path("50k.csv"), 50_000, 7);
    let seeded = seed_via(&url, &csv, &["--connections", "4", "--batch-size", "500"]);
    seeded.expect_ok();
    assert_eq!(seeded.figure("rows_inserted"), 50_000);
    assert_eq!(seeded.figure("batches"), 100);
    assert_accounts_equal_csv(db.url(), &csv, 50_000);
    assert_eq!(db.ledger_batches(), 100);
}
