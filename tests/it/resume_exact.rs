//! A resume continues the same run, or is refused:
//!
//! 1. read in another CSV dialect than the run's (`--delimiter`, `--quote`, `--escape`,
//!    `--null`, `--no-header --columns`), by seed or by a purge of a file, it is refused
//!    (exit 2) naming the flag and both values, before anything is written or recorded; a
//!    run recorded before runs recorded their dialect is taken to have read COPY's defaults;
//! 2. one live attempt per run: a second `--resume` while one runs is refused naming it, and
//!    the first completes with exact counts; after `kill -9` a resume on the same host takes
//!    the run over at once, and the batches whose COMMIT the killed attempt had sent count
//!    as resumed, not as the resume's; another host's lease is taken over only once it
//!    expired; an attempt whose run was taken over stops and records nothing; the same
//!    through PgBouncer in transaction mode;
//! 3. a fixed file resumes, whatever its size, when the batches the run committed are
//!    unchanged, to exactly what `psql \copy` loads from it; a fix that changes a committed
//!    batch is refused, naming it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::bouncer::Bouncer;
use crate::common::proxy::Proxy;
use crate::common::*;
use crate::faults_interrupt::{
    RUN_TIMEOUT, fast_batches, slow_batches, status_of, terminated_run, wait_for_a_batch_in_flight,
};

/// How many attempts the run has had.
fn attempts_of(db: &TestDb, run_id: i64) -> i64 {
    db.scalar_i64(&format!(
        "SELECT attempts::bigint FROM provisioner.runs WHERE id = {run_id}"
    ))
}

/// `args` and `--resume`.
fn resumed<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [args, &["--resume"]].concat()
}

/// `out` is a refusal (exit 2) whose message says each of `says`.
#[track_caller]
fn expect_refused(out: &Run, says: &[&str]) {
    out.expect_code(2);
    for part in says {
        assert!(
            out.stderr.contains(part),
            "the refusal does not say {part:?}:\n{}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The CSV dialect
// ---------------------------------------------------------------------------------------------

/// The dialect of [`dialect_file`]: every flag away from its default.
const DIALECT: [&str; 8] = [
    "--delimiter",
    ";",
    "--quote",
    "'",
    "--escape",
    "\\",
    "--null",
    "NULL",
];
const DIALECT_COLUMNS: &str = "external_id,email,username,display_name,role,plan";
const DIALECT_ROWS: usize = 60;

/// A file in [`DIALECT`]: `;` between fields, display names quoted with `'`, holding the
/// delimiter and a quote escaped with `\`, and `NULL` for a NULL plan. Record `bad` (0-based)
/// has a role the CHECK constraint refuses.
fn dialect_file(db: &TestDb, name: &str, bad: Option<usize>) -> PathBuf {
    let mut text = DIALECT_COLUMNS.replace(',', ";") + "\n";
    for i in 0..DIALECT_ROWS {
        let role = if Some(i) == bad { "wizard" } else { "tester" };
        text.push_str(&format!(
            "00000000-0000-4000-8000-{i:012};u{i}@example.test;user_{i};'Name; \\'{i}\\'';{role};NULL\n"
        ));
    }
    db.write(name, text)
}

/// `accounts` holds exactly what `psql \copy` loads from `file` read in [`DIALECT`].
#[track_caller]
fn assert_accounts_equal_dialect_file(db: &TestDb, file: &Path) {
    let cols = DIALECT_COLUMNS;
    db.execute(&format!(
        "CREATE TABLE reference AS SELECT {cols} FROM accounts WITH NO DATA"
    ));
    db.psql(&format!(
        "\\copy reference ({cols}) FROM '{}' WITH (FORMAT csv, HEADER, DELIMITER ';', \
         QUOTE '''', ESCAPE '\\', NULL 'NULL')",
        path_str(file)
    ));
    let differ = db.scalar_i64(&format!(
        "SELECT count(*) FROM ((SELECT {cols} FROM accounts EXCEPT ALL SELECT {cols} FROM reference) \
         UNION ALL (SELECT {cols} FROM reference EXCEPT ALL SELECT {cols} FROM accounts)) d"
    ));
    assert_eq!(differ, 0, "accounts differs from psql's \\copy of the file");
    assert_eq!(db.count("reference"), DIALECT_ROWS as i64);
    assert_eq!(
        db.scalar_text("SELECT display_name FROM accounts WHERE username = 'user_7'")
            .as_deref(),
        Some("Name; '7'")
    );
    db.execute("DROP TABLE reference");
}

/// The dialect with `flag`'s value replaced by `value`.
fn dialect_with<'a>(flag: &str, value: &'a str) -> Vec<&'a str> {
    let mut out: Vec<&str> = DIALECT.to_vec();
    let at = out.iter().position(|f| *f == flag).expect("a dialect flag");
    out[at + 1] = value;
    out
}

/// Each way a resume can read the file otherwise, and what its refusal must say.
fn other_dialects() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![
        (
            dialect_with("--delimiter", ","),
            r#"--delimiter ";" then, "," now"#,
        ),
        (
            dialect_with("--quote", "\""),
            r#"--quote "'" then, "\"" now"#,
        ),
        (
            dialect_with("--escape", "'"),
            r#"--escape "\\" then, "'" now"#,
        ),
        (dialect_with("--null", ""), r#"--null "NULL" then, "" now"#),
        (
            [&DIALECT[..], &["--no-header", "--columns", DIALECT_COLUMNS]].concat(),
            "--no-header/--columns: a header line then, --no-header --columns \
             external_id,email,username,display_name,role,plan now",
        ),
    ]
}

#[test]
fn a_seed_resumed_in_another_dialect_is_refused_naming_the_flag_and_both_values() {
    let db = TestDb::with_accounts();
    let file = dialect_file(&db, "dialect.csv", Some(25));
    let base = seed_args(
        &db,
        &file,
        &["--batch-size", "10", "--connections", "1", "--json"],
    );
    let first = run_bin_bounded(&[&base[..], &DIALECT[..]].concat(), RUN_TIMEOUT);
    first.expect_code(1);
    assert!(first.stderr.contains("line 27"), "{}", first.stderr);
    assert_eq!(db.count("accounts"), 20);
    let run_id = first.figure("run_id") as i64;
    // Fixed: the role has the same length, so only the dialect can refuse the resume.
    dialect_file(&db, "dialect.csv", None);

    for (flags, says) in other_dialects() {
        let out = run_bin_bounded(&resumed(&[&base[..], &flags[..]].concat()), RUN_TIMEOUT);
        expect_refused(
            &out,
            &[&format!("--resume {run_id}: the CSV dialect differs"), says],
        );
        assert_eq!(db.count("accounts"), 20, "{says}: rows written");
        assert_eq!(
            status_of(&db, run_id),
            "failed",
            "{says}: the run was marked"
        );
        assert_eq!(
            attempts_of(&db, run_id),
            1,
            "{says}: an attempt was recorded"
        );
    }

    // In its own dialect, the run resumes to exactly what psql loads.
    let out = run_bin_bounded(&resumed(&[&base[..], &DIALECT[..]].concat()), RUN_TIMEOUT);
    out.expect_ok();
    assert_eq!(
        (out.figure("rows_resumed"), out.figure("rows_inserted")),
        (20, 40),
        "{}",
        out.stdout
    );
    assert_accounts_equal_dialect_file(&db, &file);
}

#[test]
fn a_purge_of_a_file_resumed_in_another_dialect_is_refused() {
    let db = TestDb::with_accounts();
    let file = dialect_file(&db, "dialect.csv", None);
    let seeded = run_bin_bounded(
        &[&seed_args(&db, &file, &["--json"])[..], &DIALECT[..]].concat(),
        RUN_TIMEOUT,
    );
    seeded.expect_ok();
    // The delete of user_25 (batch 3) fails until the trigger goes.
    db.execute(
        "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN RAISE EXCEPTION 'kept'; END $$; \
         CREATE TRIGGER keep BEFORE DELETE ON accounts FOR EACH ROW \
           WHEN (OLD.username = 'user_25') EXECUTE FUNCTION keep()",
    );
    let base = [
        "purge",
        path_str(&file),
        "--database-url",
        db.url(),
        "--batch-size",
        "10",
        "--connections",
        "1",
        "--yes",
        "--json",
    ];
    let first = run_bin_bounded(&[&base[..], &DIALECT[..]].concat(), RUN_TIMEOUT);
    first.expect_code(1);
    let run_id = first.figure("run_id") as i64;
    assert_eq!(db.count("accounts"), 40);
    db.execute("DROP TRIGGER keep ON accounts");

    for (flags, says) in other_dialects() {
        let out = run_bin_bounded(&resumed(&[&base[..], &flags[..]].concat()), RUN_TIMEOUT);
        expect_refused(
            &out,
            &[&format!("--resume {run_id}: the CSV dialect differs"), says],
        );
        assert_eq!(db.count("accounts"), 40, "{says}: rows deleted");
        assert_eq!(
            attempts_of(&db, run_id),
            1,
            "{says}: an attempt was recorded"
        );
    }
    let out = run_bin_bounded(&resumed(&[&base[..], &DIALECT[..]].concat()), RUN_TIMEOUT);
    out.expect_ok();
    assert_eq!(out.figure("rows_deleted"), 40, "{}", out.stdout);
    assert_eq!(db.count("accounts"), 0);
}

/// A run recorded before runs recorded their dialect is taken to have read COPY's defaults:
/// resumed with them it goes on (and records them); with others it is refused, saying so.
#[test]
fn a_run_recorded_without_its_dialect_is_taken_to_have_read_the_defaults() {
    let db = TestDb::with_accounts();
    let (names, mut rows) = csv_table(&generate_csv(&db.path("generated.csv"), 3_000, 5));
    rows[1_700][5] = Some("wizard".into());
    let file = db.write("accounts.csv", csv_file(&names, &rows, "\n"));
    let base = seed_args(
        &db,
        &file,
        &["--batch-size", "500", "--connections", "1", "--json"],
    );
    let first = run_bin_bounded(&base, RUN_TIMEOUT);
    first.expect_code(1);
    let run_id = first.figure("run_id") as i64;
    db.execute(&format!(
        "UPDATE provisioner.runs SET options = options - 'dialect' WHERE id = {run_id}"
    ));
    rows[1_700][5] = Some("tester".into());
    db.write("accounts.csv", csv_file(&names, &rows, "\n"));

    let out = run_bin_bounded(
        &resumed(&[&base[..], &["--null", "-"]].concat()),
        RUN_TIMEOUT,
    );
    expect_refused(
        &out,
        &[r#"--null "" then, "-" now"#, "taken as COPY's defaults"],
    );
    assert_eq!(attempts_of(&db, run_id), 1);

    let out = run_bin_bounded(&resumed(&base), RUN_TIMEOUT);
    out.expect_ok();
    assert_accounts_equal_csv(db.url(), &file, 3_000);
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT options -> 'dialect' ->> 'delimiter' FROM provisioner.runs WHERE id = {run_id}"
        ))
        .as_deref(),
        Some(","),
        "the resume records the dialect it was accepted with"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. One live attempt per run
// ---------------------------------------------------------------------------------------------

/// The pid holding the run's lease, if any.
fn lease_pid(db: &TestDb, run_id: i64) -> Option<i64> {
    db.scalar_text(&format!(
        "SELECT lease_pid::text FROM provisioner.runs WHERE id = {run_id}"
    ))
    .map(|p| p.parse().expect("a pid"))
}

#[test]
fn a_second_resume_while_one_runs_is_refused_and_the_first_completes_exactly() {
    const ROWS: i64 = 20_000;
    const BATCHES: u64 = 20;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 23);
    let args = seed_args(
        &db,
        &csv,
        &["--connections", "2", "--batch-size", "1000", "--json"],
    );
    // Slow enough that the second resume is refused long before the first one ends.
    slow_batches(&db, 1.0);
    let first = terminated_run(&db, &args);
    let run_id = first.figure("run_id") as i64;
    let committed = db.count("accounts");
    assert_eq!(first.figure("rows_inserted") as i64, committed);
    assert_eq!(first.figure("batches") as i64, db.ledger_batches());

    let mut second = Spawned::start(&resumed(&args));
    let pid = second.pid() as i64;
    second.wait_for("the resume to start its attempt", RUN_TIMEOUT, || {
        attempts_of(&db, run_id) == 2
    });
    wait_for_a_batch_in_flight(&mut second, &db);
    let third = run_bin_bounded(&resumed(&args), RUN_TIMEOUT);
    expect_refused(
        &third,
        &[
            &format!("--resume {run_id}: another attempt of the run is live: pid {pid} on "),
            "last seen",
        ],
    );
    assert!(
        second.running(),
        "the first resume ended before the second was refused"
    );
    assert_eq!(
        attempts_of(&db, run_id),
        2,
        "the refused resume took an attempt"
    );
    assert_eq!(
        lease_pid(&db, run_id),
        Some(pid),
        "the lease is not the first resume's"
    );
    fast_batches(&db);

    let second = second.wait(RUN_TIMEOUT);
    second.expect_ok();
    let json = second.json();
    assert_eq!(json["run_id"], run_id, "{json}");
    assert_eq!(second.figure("rows_resumed") as i64, committed, "{json}");
    assert_eq!(
        second.figure("rows_inserted") as i64,
        ROWS - committed,
        "{json}"
    );
    assert_eq!(
        second.figure("batches"),
        BATCHES - first.figure("batches"),
        "{json}"
    );
    assert_eq!(
        second.figure("batches_binary") + second.figure("batches_csv"),
        second.figure("batches"),
        "{json}"
    );
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
    assert_eq!(status_of(&db, run_id), "completed");
    assert_eq!(lease_pid(&db, run_id), None, "the lease was not released");
}

/// `kill -9` while a batch's COMMIT is on its way to the server (a proxy holds it, as a slow
/// network would): the resume started at once takes the run over (same host, the process is
/// gone), waits on that batch's claim until the COMMIT lands, meets it committed by the killed
/// attempt, and counts it as resumed, not as its own.
#[test]
fn a_resume_right_after_kill_9_takes_over_and_counts_only_what_it_committed() {
    const ROWS: i64 = 20_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 29);
    let proxy = Proxy::start(server_tcp_addr());
    let url = db.url_via(proxy.addr());
    let args = vec![
        "seed",
        path_str(&csv),
        "--database-url",
        &url,
        "--connections",
        "2",
        "--batch-size",
        "1000",
        "--json",
    ];
    let mut first = Spawned::start(&args);
    first.wait_for("a committed batch", RUN_TIMEOUT, || db.ledger_batches() > 0);
    proxy.delay_commit(Duration::from_secs(6));
    first.wait_for("a COMMIT held on its way", RUN_TIMEOUT, || {
        proxy.commits_held() > 0
    });
    let killed = first.kill_and_collect();
    assert_eq!(killed.code, -1, "killed by a signal: {killed:?}");

    let second = run_bin_bounded(&resumed(&args), RUN_TIMEOUT);
    second.expect_ok();
    assert!(
        second
            .stderr
            .contains("committed by another attempt of the run"),
        "the resume met no batch the killed attempt committed after it started:\n{}",
        second.stderr
    );
    let run_id = second.figure("run_id") as i64;
    assert_eq!(attempts_of(&db, run_id), 2);
    let theirs = db.scalar_i64(&format!(
        "SELECT coalesce(sum(rows), 0)::bigint FROM provisioner.batches \
         WHERE run_id = {run_id} AND attempt = 1"
    ));
    let (mine, my_batches) = {
        let row = db
            .client()
            .query_one(
                "SELECT coalesce(sum(rows), 0)::bigint, count(*) FROM provisioner.batches \
                 WHERE run_id = $1 AND attempt = 2",
                &[&run_id],
            )
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    let json = second.json();
    assert_eq!(second.figure("rows_inserted") as i64, mine, "{json}");
    assert_eq!(second.figure("rows_resumed") as i64, theirs, "{json}");
    assert_eq!(theirs + mine, ROWS, "{json}");
    assert_eq!(second.figure("batches") as i64, my_batches, "{json}");
    assert_eq!(
        second.figure("batches_binary") + second.figure("batches_csv"),
        my_batches as u64,
        "{json}"
    );
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

/// Records, as another host's live attempt would have left it, the run's lease: `pid` on
/// `host`, expiring in `seconds`.
fn lease_held_by(db: &TestDb, run_id: i64, host: &str, pid: i64, seconds: u32) {
    db.client()
        .execute(
            "UPDATE provisioner.runs SET lease_host = $2, lease_pid = $3::bigint::int, \
               lease_renewed_at = now(), lease_expires_at = now() + make_interval(secs => $4) \
             WHERE id = $1",
            &[&run_id, &host, &pid, &f64::from(seconds)],
        )
        .expect("write the lease");
}

#[test]
fn a_lease_from_another_host_is_taken_over_only_once_it_expired() {
    const ROWS: i64 = 6_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 31);
    let args = seed_args(
        &db,
        &csv,
        &["--connections", "1", "--batch-size", "1000", "--json"],
    );
    slow_batches(&db, 0.3);
    let first = terminated_run(&db, &args);
    fast_batches(&db);
    let run_id = first.figure("run_id") as i64;
    let committed = db.count("accounts");
    let unchanged = |what: &str| {
        assert_eq!(db.count("accounts"), committed, "{what}: rows written");
        assert_eq!(
            status_of(&db, run_id),
            "interrupted",
            "{what}: the run was marked"
        );
        assert_eq!(
            attempts_of(&db, run_id),
            1,
            "{what}: an attempt was recorded"
        );
    };
    let here = db
        .scalar_text(&format!(
            "SELECT host FROM provisioner.runs WHERE id = {run_id}"
        ))
        .expect("the run's host");

    // This host, its process still there (this test's): refused, however long ago it was seen.
    let me = std::process::id() as i64;
    lease_held_by(&db, run_id, &here, me, 60);
    let out = run_bin_bounded(&resumed(&args), RUN_TIMEOUT);
    expect_refused(
        &out,
        &[
            &format!("pid {me} on {here}"),
            &format!("once process {me} is gone"),
        ],
    );
    unchanged("this host, its process there");

    // Another host: refused while its lease runs, whatever runs here under its pid.
    lease_held_by(&db, run_id, "elsewhere.example", 4242, 10);
    let out = run_bin_bounded(&resumed(&args), RUN_TIMEOUT);
    expect_refused(
        &out,
        &["pid 4242 on elsewhere.example", "once its lease expires"],
    );
    unchanged("another host, live");

    // Once it expired, the run is taken over.
    wait_until("the other host's lease to expire", RUN_TIMEOUT, || {
        db.scalar_i64(&format!(
            "SELECT count(*) FROM provisioner.runs WHERE id = {run_id} AND lease_expires_at <= now()"
        )) == 1
    });
    let out = run_bin_bounded(&resumed(&args), RUN_TIMEOUT);
    out.expect_ok();
    assert_eq!(
        out.figure("rows_resumed") as i64,
        committed,
        "{}",
        out.stdout
    );
    assert_eq!(attempts_of(&db, run_id), 2);
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

/// Another attempt took the run over (as one from another host may once this one's lease
/// expired): this one notices at its next renewal, stops, and records nothing of its end.
#[test]
fn an_attempt_whose_run_was_taken_over_stops_and_records_nothing() {
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), 20_000, 37);
    slow_batches(&db, 0.3);
    let args = seed_args(
        &db,
        &csv,
        &[
            "--connections",
            "1",
            "--batch-size",
            "1000",
            "--lease",
            "3",
            "--json",
        ],
    );
    let mut run = Spawned::start(&args);
    run.wait_for("the first committed batch", RUN_TIMEOUT, || {
        db.ledger_batches() > 0
    });
    db.execute(
        "UPDATE provisioner.runs SET attempts = attempts + 1, lease_host = 'elsewhere.example', \
           lease_pid = 4242, lease_renewed_at = now(), lease_expires_at = now() + interval '1 hour'",
    );
    let out = run.wait(Duration::from_secs(30));
    out.expect_code(1);
    assert!(
        out.stderr.contains("was taken over by another attempt"),
        "{}",
        out.stderr
    );
    fast_batches(&db);
    let run_id = out.figure("run_id") as i64;
    assert_eq!(
        status_of(&db, run_id),
        "running",
        "the end was recorded over the new attempt"
    );
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT lease_host FROM provisioner.runs WHERE id = {run_id}"
        ))
        .as_deref(),
        Some("elsewhere.example")
    );
    assert!(db.ledger_batches() < 20, "the attempt did not stop");
    assert_eq!(
        db.count("accounts"),
        db.scalar_i64("SELECT sum(rows)::bigint FROM provisioner.batches")
    );
}

/// Through PgBouncer in transaction mode: the lease is taken, renewed (every second with
/// `--lease 3`) and checked with plain statements, so a live attempt holds its run and a
/// second resume is refused; after `kill -9`, the resume takes over at once.
#[test]
fn through_pgbouncer_a_live_attempt_holds_its_run_and_a_killed_one_is_taken_over() {
    const ROWS: i64 = 20_000;
    let bouncer = Bouncer::start();
    let db = TestDb::with_accounts();
    let url = bouncer.url(&db);
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 41);
    let args = [
        "seed",
        path_str(&csv),
        "--database-url",
        &url,
        "--connections",
        "4",
        "--batch-size",
        "500",
        "--lease",
        "3",
        "--json",
    ];
    let mut first = Spawned::start(&[&args[..], &["--rate", "1000"]].concat());
    first.wait_for("four committed batches", RUN_TIMEOUT, || {
        db.ledger_batches() >= 4
    });
    let renewed = "SELECT extract(epoch FROM lease_renewed_at)::text FROM provisioner.runs";
    let taken = db.scalar_text(renewed);
    first.wait_for("a renewal of the lease", RUN_TIMEOUT, || {
        db.scalar_text(renewed) != taken
    });
    let out = run_bin_bounded(&resumed(&args), RUN_TIMEOUT);
    expect_refused(
        &out,
        &[&format!(
            "another attempt of the run is live: pid {} on ",
            first.pid()
        )],
    );
    assert!(first.running(), "the first attempt ended before the resume");
    let killed = first.kill_and_collect();
    assert_eq!(killed.code, -1, "killed by a signal: {killed:?}");
    let committed = db.ledger_batches();

    let out = run_bin_bounded(&resumed(&args), RUN_TIMEOUT);
    out.expect_ok();
    assert_eq!(
        out.figure("rows_resumed") + out.figure("rows_inserted"),
        ROWS as u64,
        "{}",
        out.stdout
    );
    assert!(out.figure("rows_resumed") >= committed as u64 * 500);
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
    assert_eq!(db.ledger_batches(), 40);
}

// ---------------------------------------------------------------------------------------------
// 3. Fix the file, then resume
// ---------------------------------------------------------------------------------------------

/// 3,000 generated accounts, record 1,700 (batch 4 of 500) with a role the CHECK refuses,
/// seeded in stop mode on one connection: batches 1 to 3 commit, the run fails. Returns the
/// header, the records, the file and the seed's arguments' extra flags.
struct Failed {
    names: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    file: PathBuf,
    run_id: i64,
}

const FLAGS: [&str; 5] = ["--batch-size", "500", "--connections", "1", "--json"];

fn failed_at_record_1700(db: &TestDb) -> Failed {
    let (names, mut rows) = csv_table(&generate_csv(&db.path("generated.csv"), 3_000, 43));
    rows[1_700][5] = Some("wizard".into());
    let mut failed = Failed {
        names,
        rows,
        file: db.path("accounts.csv"),
        run_id: 0,
    };
    failed.write();
    let out = run_bin_bounded(&seed_args(db, &failed.file, &FLAGS), RUN_TIMEOUT);
    out.expect_code(1);
    assert!(out.stderr.contains("accounts_role_check"), "{}", out.stderr);
    assert_eq!(db.count("accounts"), 1_500);
    failed.run_id = out.figure("run_id") as i64;
    failed
}

impl Failed {
    fn write(&self) {
        std::fs::write(&self.file, csv_file(&self.names, &self.rows, "\n")).unwrap();
    }

    /// The bad row fixed: another role, of another length, and a display name that now
    /// spans two lines, so every line after it moves.
    fn fix(&mut self) {
        self.rows[1_700][5] = Some("user".into());
        self.rows[1_700][3] = Some("Fixed\nName".into());
        self.write();
    }
}

/// The size and fingerprint the ledger holds for the run.
fn recorded_input(db: &TestDb, run_id: i64) -> (i64, String) {
    let row = db
        .client()
        .query_one(
            "SELECT input_size, input_fingerprint FROM provisioner.runs WHERE id = $1",
            &[&run_id],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn a_size_changing_fix_of_a_bad_row_resumes_to_exactly_the_fixed_file() {
    let db = TestDb::with_accounts();
    let mut failed = failed_at_record_1700(&db);
    let before = recorded_input(&db, failed.run_id);
    failed.fix();
    let size = std::fs::metadata(&failed.file).unwrap().len() as i64;
    assert_ne!(size, before.0, "the fix keeps the file's size");

    let out = run_bin_bounded(&resumed(&seed_args(&db, &failed.file, &FLAGS)), RUN_TIMEOUT);
    out.expect_ok();
    assert_eq!(out.figure("run_id") as i64, failed.run_id);
    assert_eq!(
        (out.figure("rows_resumed"), out.figure("rows_inserted")),
        (1_500, 1_500),
        "{}",
        out.stdout
    );
    assert_accounts_equal_csv(db.url(), &failed.file, 3_000);
    let after = recorded_input(&db, failed.run_id);
    assert_eq!(after.0, size, "the run records the fixed file's size");
    assert_ne!(
        after.1, before.1,
        "the run records the fixed file's fingerprint"
    );
    assert_eq!(status_of(&db, failed.run_id), "completed");
}

#[test]
fn a_fix_that_changes_a_committed_batch_is_refused_naming_it() {
    let db = TestDb::with_accounts();
    let mut failed = failed_at_record_1700(&db);
    let before = recorded_input(&db, failed.run_id);
    let (first, last) = {
        let row = db
            .client()
            .query_one(
                "SELECT first_line, last_line FROM provisioner.batches WHERE seq = 2",
                &[],
            )
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    let kept = failed.rows[600][3].clone();
    failed.rows[600][3] = Some("Changed in batch 2".into());
    failed.fix();

    let args = resumed(&seed_args(&db, &failed.file, &FLAGS));
    let out = run_bin_bounded(&args, RUN_TIMEOUT);
    expect_refused(
        &out,
        &[
            "changed since the run started",
            &format!("batch 2 (lines {first}-{last}), which the run committed, is not what it was"),
        ],
    );
    assert_eq!(db.count("accounts"), 1_500, "rows written");
    assert_eq!(
        status_of(&db, failed.run_id),
        "failed",
        "the run was marked"
    );
    assert_eq!(
        attempts_of(&db, failed.run_id),
        1,
        "an attempt was recorded"
    );
    assert_eq!(
        recorded_input(&db, failed.run_id),
        before,
        "the new file was recorded"
    );

    // Batch 2 as it was, the fix kept: the run goes on.
    failed.rows[600][3] = kept;
    failed.write();
    let out = run_bin_bounded(&args, RUN_TIMEOUT);
    out.expect_ok();
    assert_accounts_equal_csv(db.url(), &failed.file, 3_000);
}
