//! Faults between the binary and the server, and of the server itself:
//!
//! 1. a TCP proxy cuts every connection a few times mid-run: the batches in flight are
//!    replayed on new connections, each committing once;
//! 2. the proxy loses the reply to three COMMITs the server did commit: the replays find the
//!    batches in the ledger and do not write them again (the exactly-once case), which
//!    without the ledger ends in a duplicate key, as the control test shows;
//! 3. a private cluster is restarted (`pg_ctl restart -m fast`) mid-run, a batch in flight.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::cluster::Cluster;
use crate::common::proxy::Proxy;
use crate::common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(150);

/// Runs recorded in the ledger (0 while it does not exist yet).
fn ledger_runs(db: &TestDb) -> i64 {
    db.client()
        .query_one("SELECT count(*) FROM provisioner.runs", &[])
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// Ledger figures of every batch: (batches, rows, rows inserted).
fn ledger_totals(client: &mut postgres::Client) -> (i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT count(*), coalesce(sum(rows), 0)::bigint, coalesce(sum(inserted), 0)::bigint \
             FROM provisioner.batches",
            &[],
        )
        .expect("read the ledger");
    (row.get(0), row.get(1), row.get(2))
}

// ---------------------------------------------------------------------------------------------
// 1. Every connection cut, a few times
// ---------------------------------------------------------------------------------------------

#[test]
fn connections_cut_mid_run_are_replayed_exactly_once() {
    const ROWS: i64 = 200_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 21);
    let proxy = Proxy::start(server_tcp_addr());
    let url = db.url_via(proxy.addr());
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
    // Set-up (catalog, ledger) is not retried: cut once batches flow.
    run.wait_for("the first committed batch", RUN_TIMEOUT, || {
        db.ledger_batches() > 0
    });
    let mut rounds = Vec::new();
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(400));
        if !run.running() {
            break;
        }
        rounds.push(proxy.cut_all());
    }
    let out = run.wait(RUN_TIMEOUT);
    out.expect_ok();
    let json = out.json();
    eprintln!("connections cut per round: {rounds:?}; {json}");
    assert!(
        proxy.cuts() > 0,
        "no connection was cut (rounds: {rounds:?}): the test proved nothing"
    );
    assert!(
        out.figure("retries") > 0,
        "{} connections cut but no retry: {json}\nstderr:\n{}",
        proxy.cuts(),
        out.stderr
    );
    assert!(proxy.accepted() > 4, "no new connection after the cuts");
    assert_eq!(json["status"], "completed", "{json}");
    assert_eq!(out.figure("rows_inserted"), ROWS as u64, "{json}");
    assert_eq!(out.figure("batches"), 100, "{json}");
    assert_eq!(
        ledger_totals(&mut db.client()),
        (100, ROWS, ROWS),
        "ledger batches, rows and rows inserted"
    );
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

// ---------------------------------------------------------------------------------------------
// 2. The reply to COMMIT lost: exactly once
// ---------------------------------------------------------------------------------------------

const ALREADY_COMMITTED: &str = "had already committed; not replayed";

#[test]
fn a_lost_commit_reply_is_found_in_the_ledger_and_not_written_twice() {
    const ROWS: i64 = 50_000;
    const BATCHES: i64 = 50;
    const LOST: usize = 3;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 23);
    let proxy = Proxy::start(server_tcp_addr());
    let url = db.url_via(proxy.addr());
    let mut run = Spawned::seed(&csv, &url, &["--connections", "2", "--batch-size", "1000"]);
    // The ledger's own set-up transaction commits through the proxy too, and set-up is not
    // retried: lose replies only once the run is recorded, i.e. from the batches on.
    run.wait_for("the run in the ledger", RUN_TIMEOUT, || {
        ledger_runs(&db) > 0
    });
    proxy.lose_commit_replies(LOST);
    let out = run.wait(RUN_TIMEOUT);
    out.expect_ok();
    let json = out.json();
    eprintln!(
        "COMMITs seen: {}, replies lost: {}; {json}",
        proxy.commits_seen(),
        proxy.commit_replies_lost()
    );
    assert_eq!(
        proxy.commit_replies_lost(),
        LOST,
        "COMMITs the server acknowledged whose reply was lost"
    );
    assert_eq!(
        out.stderr.matches(ALREADY_COMMITTED).count(),
        LOST,
        "each lost reply is found committed in the ledger once:\n{}",
        out.stderr
    );
    assert!(out.figure("retries") >= LOST as u64, "{json}");
    assert_eq!(json["status"], "completed", "{json}");
    // The batches found in the ledger count with the outcome recorded there.
    assert_eq!(out.figure("rows_inserted"), ROWS as u64, "{json}");
    assert_eq!(out.figure("batches"), BATCHES as u64, "{json}");
    assert_eq!(
        ledger_totals(&mut db.client()),
        (BATCHES, ROWS, ROWS),
        "ledger batches, rows and rows inserted"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM provisioner.batches WHERE inserted IS NULL"),
        0,
        "a batch claimed but never recorded"
    );
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

/// The control: the same fault without the ledger replays a batch that did commit, which the
/// unique email refuses. So the test above does exercise a replay of committed data.
#[test]
fn without_the_ledger_a_lost_commit_reply_is_replayed_into_a_duplicate_key() {
    const ROWS: i64 = 5_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 29);
    let proxy = Proxy::start(server_tcp_addr());
    // Without a ledger no set-up transaction commits: the first COMMIT is the first batch's.
    proxy.lose_commit_replies(1);
    let out = run_bin_bounded(
        &[
            "seed",
            path_str(&csv),
            "--database-url",
            &db.url_via(proxy.addr()),
            "--connections",
            "1",
            "--batch-size",
            "1000",
            "--no-ledger",
            "--json",
        ],
        RUN_TIMEOUT,
    );
    assert_eq!(proxy.commit_replies_lost(), 1);
    out.expect_code(1);
    assert!(out.figure("retries") >= 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("23505"),
        "the replay of a committed batch should hit the unique key:\n{}",
        out.stderr
    );
    // The first batch committed once, and the run stopped at its replay.
    assert_eq!(db.count("accounts"), 1000);
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT email) FROM accounts"),
        1000
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The server restarted mid-run
// ---------------------------------------------------------------------------------------------

#[test]
fn a_server_restart_mid_run_is_ridden_out() {
    const ROWS: i64 = 200_000;
    let cluster = Cluster::start();
    cluster.create_database_with_accounts("faults");
    // The restart must catch a batch in flight: between batches the pool merely reconnects,
    // and nothing would be retried. So while `hold` is on, a batch's statement sleeps in the
    // server (a statement-level AFTER INSERT trigger); it is switched on once batches flow,
    // off again (for the replays) once a batch sleeps, and then the server restarts.
    cluster
        .client("faults")
        .batch_execute(
            "CREATE TABLE public.hold (held boolean NOT NULL); \
             INSERT INTO public.hold VALUES (false); \
             CREATE FUNCTION public.hold_batch() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF (SELECT held FROM public.hold) THEN PERFORM pg_sleep(10); END IF; \
             RETURN NULL; END $$; \
             CREATE TRIGGER hold AFTER INSERT ON accounts \
               FOR EACH STATEMENT EXECUTE FUNCTION public.hold_batch();",
        )
        .expect("create the hold trigger");
    let scratch = tempdir("restart");
    let csv = generate_csv(&scratch.0.join("generated.csv"), ROWS as u64, 31);
    let url = cluster.url("faults", "application_name=faults_restart");
    let mut run = Spawned::seed(
        &csv,
        &url,
        &[
            "--connections",
            "2",
            "--batch-size",
            "2000",
            "--max-retries",
            "20",
            "--retry-max-elapsed",
            "90",
        ],
    );
    {
        let mut client = cluster.client("faults");
        run.wait_for("the first committed batch", RUN_TIMEOUT, || {
            committed_batches(&mut client) > 0
        });
        client
            .batch_execute("UPDATE public.hold SET held = true")
            .expect("hold the next batch");
        run.wait_for("a batch held in the server", RUN_TIMEOUT, || {
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name = 'faults_restart' AND wait_event = 'PgSleep'",
                    &[],
                )
                .map(|r| r.get::<_, i64>(0) > 0)
                .expect("look for the held batch")
        });
        client
            .batch_execute("UPDATE public.hold SET held = false")
            .expect("let the replays through");
    }
    let before = cluster.postmaster_pid();
    let started = Instant::now();
    cluster.restart();
    let restart_took = started.elapsed();
    let after = cluster.postmaster_pid();
    assert_ne!(before, after, "the postmaster was not restarted");
    let out = run.wait(RUN_TIMEOUT);
    out.expect_ok();
    let json = out.json();
    eprintln!("restart took {restart_took:?}; {json}");
    assert!(
        out.figure("retries") > 0,
        "the server restarted but nothing was retried: {json}\nstderr:\n{}",
        out.stderr
    );
    assert_eq!(json["status"], "completed", "{json}");
    assert_eq!(out.figure("rows_inserted"), ROWS as u64, "{json}");
    assert_eq!(out.figure("batches"), 100, "{json}");
    let mut client = cluster.client("faults");
    assert_eq!(ledger_totals(&mut client), (100, ROWS, ROWS));
    let status: String = client
        .query_one("SELECT status FROM provisioner.runs", &[])
        .expect("the run's status")
        .get(0);
    assert_eq!(status, "completed");
    assert_accounts_equal_csv(&cluster.url("faults", ""), &csv, ROWS);
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

fn tempdir(what: &str) -> TempDir {
    let dir = std::env::temp_dir().join(unique_name(&format!("prov_faults_{what}")));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    TempDir(dir)
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
