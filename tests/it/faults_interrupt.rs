//! Runs that stop before the end, and resuming them:
//!
//! 1. SIGKILL at two moments (the first run, then its first resume), then `--resume` to the
//!    end: every row once, the rows the killed attempts committed not sent again;
//! 2. SIGINT: in-flight batches finish, the run is `interrupted`, exit 130, stderr prints the
//!    resume command, and that command, pasted into a shell, finishes the run;
//! 3. a second SIGINT exits at once, and the run resumes all the same; SIGINT also stops a
//!    run reading a stdin whose producer stalls;
//! 4. after SIGTERM, `--resume` refuses an input whose committed batches changed (a row
//!    removed, a byte edited in the first MiB, a byte edited past it) and a run that does not
//!    exist or is finished;
//! 5. `provisioner runs` and `runs show ID` show runs and, for an unfinished one, its resume
//!    command.

use std::thread;
use std::time::Duration;

use crate::common::*;

pub(crate) const RUN_TIMEOUT: Duration = Duration::from_secs(150);

/// The run's status in the ledger.
pub(crate) fn status_of(db: &TestDb, run_id: i64) -> String {
    db.scalar_text(&format!(
        "SELECT status FROM provisioner.runs WHERE id = {run_id}"
    ))
    .unwrap_or_else(|| panic!("run {run_id} has no status"))
}

/// Rows the ledger records as committed, summed over its batches.
fn ledger_rows(db: &TestDb) -> i64 {
    db.scalar_i64("SELECT coalesce(sum(rows), 0)::bigint FROM provisioner.batches")
}

/// Rows in `accounts` and rows the ledger records as committed, read in one statement (one
/// snapshot), so a transaction committing meanwhile cannot make them differ.
fn table_and_ledger_rows(db: &TestDb) -> (i64, i64) {
    let row = db
        .client()
        .query_one(
            "SELECT (SELECT count(*) FROM accounts), \
                    (SELECT coalesce(sum(rows), 0)::bigint FROM provisioner.batches)",
            &[],
        )
        .expect("count rows and ledger rows");
    (row.get(0), row.get(1))
}

/// Whether batch `seq` committed (false while the ledger does not exist yet).
fn batch_committed(db: &TestDb, seq: i64) -> bool {
    db.client()
        .query_one(
            "SELECT count(*) FROM provisioner.batches WHERE seq = $1",
            &[&seq],
        )
        .map(|r| r.get::<_, i64>(0) > 0)
        .unwrap_or(false)
}

/// Makes every batch take at least `seconds` (a statement trigger that sleeps), so that a
/// batch seen in flight ([`wait_for_a_batch_in_flight`]) still is when a signal arrives.
/// Undone by [`fast_batches`].
pub(crate) fn slow_batches(db: &TestDb, seconds: f64) {
    db.execute(&format!(
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$; \
         CREATE TRIGGER slow AFTER INSERT ON accounts \
           FOR EACH STATEMENT EXECUTE FUNCTION slow_insert();"
    ));
}

pub(crate) fn fast_batches(db: &TestDb) {
    db.execute("DROP TRIGGER slow ON accounts");
}

/// Waits until a batch sleeps in the [`slow_batches`] trigger. That one batch committed does
/// not mean the next one is in flight: on a loaded machine the reader may still be filling
/// it, and a signal then finds nothing to wait for.
#[track_caller]
pub(crate) fn wait_for_a_batch_in_flight(run: &mut Spawned, db: &TestDb) {
    run.wait_for("a batch in flight", RUN_TIMEOUT, || {
        db.scalar_i64(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event = 'PgSleep'",
        ) > 0
    });
}

/// The `resume with: <command>` line of stderr.
#[track_caller]
fn printed_resume_command(run: &Run) -> String {
    run.stderr
        .lines()
        .find_map(|l| l.strip_prefix("resume with: "))
        .unwrap_or_else(|| panic!("no `resume with:` line in stderr:\n{}", run.stderr))
        .to_string()
}

/// Starts a seed and sends SIGTERM (which stops a run as SIGINT does) once batch 1
/// committed; returns the ended run (exit 130).
pub(crate) fn terminated_run(db: &TestDb, args: &[&str]) -> Run {
    let mut run = Spawned::start(args);
    run.wait_for("batch 1 to commit", RUN_TIMEOUT, || batch_committed(db, 1));
    run.signal("TERM");
    let out = run.wait(RUN_TIMEOUT);
    out.expect_code(130);
    out
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9, twice, then resume
// ---------------------------------------------------------------------------------------------

#[test]
fn a_run_killed_twice_resumes_to_every_row_exactly_once() {
    const ROWS: i64 = 300_000;
    const BATCHES: i64 = 60;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 13);
    let args = seed_args(&db, &csv, &["--connections", "2", "--json"]);
    let mut resume_args = args.clone();
    resume_args.push("--resume");

    // First attempt: killed about half a second in, once it has committed something.
    let mut run = Spawned::start(&args);
    run.wait_for("the first committed batch", RUN_TIMEOUT, || {
        db.ledger_batches() > 0
    });
    thread::sleep(Duration::from_millis(300));
    assert!(
        run.running(),
        "the first attempt ended before it was killed"
    );
    let killed = run.kill_and_collect();
    assert_eq!(killed.code, -1, "killed by a signal: {killed:?}");
    let first = db.ledger_batches();

    // Second attempt: resumed, and killed again ten batches later.
    let mut run = Spawned::start(&resume_args);
    run.wait_for("ten more committed batches", RUN_TIMEOUT, || {
        db.ledger_batches() >= first + 10
    });
    assert!(
        run.running(),
        "the second attempt ended before it was killed"
    );
    let killed = run.kill_and_collect();
    assert_eq!(killed.code, -1, "killed by a signal: {killed:?}");
    let second = db.ledger_batches();
    assert!(second > first && second < BATCHES, "{first} then {second}");
    // A SIGKILL'd client leaves nothing half-done: what is in the table is what the ledger
    // says committed (a COMMIT already sent may still land: both are read in one snapshot).
    let (rows, recorded) = table_and_ledger_rows(&db);
    assert_eq!(
        rows, recorded,
        "rows in accounts vs rows the ledger records"
    );

    // Third attempt: to the end.
    let out = run_bin_bounded(&resume_args, RUN_TIMEOUT);
    out.expect_ok();
    let json = out.json();
    eprintln!("batches committed before the kills: {first}, {second}; {json}");
    let resumed = out.figure("rows_resumed");
    assert!(resumed > 0, "nothing counted as resumed: {json}");
    assert!(resumed >= second as u64 * 5000, "{json}");
    assert_eq!(resumed + out.figure("rows_inserted"), ROWS as u64, "{json}");
    assert_eq!(json["status"], "completed", "{json}");
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM provisioner.batches"),
        BATCHES
    );

    // One run, three attempts, completed.
    let listed = run_bin_bounded(&["runs", "--json", "--database-url", db.url()], RUN_TIMEOUT);
    listed.expect_ok();
    let runs: serde_json::Value = serde_json::from_str(listed.stdout.trim()).expect("runs JSON");
    let runs = runs.as_array().expect("an array of runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run["id"], json["run_id"], "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["attempts"], 3, "{run}");
    assert_eq!(run["batches"], BATCHES, "{run}");
    assert_eq!(run["rows_inserted"], ROWS, "{run}");
}

// ---------------------------------------------------------------------------------------------
// 2. SIGINT, and the printed resume command
// ---------------------------------------------------------------------------------------------

#[test]
fn sigint_marks_the_run_interrupted_and_its_printed_command_resumes_it() {
    const ROWS: i64 = 60_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 17);
    slow_batches(&db, 0.4);
    let args = seed_args(&db, &csv, &["--connections", "2", "--json"]);
    let mut run = Spawned::start(&args);
    run.wait_for("the first committed batch", RUN_TIMEOUT, || {
        db.ledger_batches() > 0
    });
    wait_for_a_batch_in_flight(&mut run, &db);
    let before = db.ledger_batches();
    assert!(run.running(), "the run ended before SIGINT");
    run.signal("INT");
    let out = run.wait(Duration::from_secs(60));
    out.expect_code(130);
    assert!(
        db.ledger_batches() > before,
        "the batches in flight at SIGINT did not commit ({before} committed before)\nstderr:\n{}",
        out.stderr
    );
    fast_batches(&db);

    let json = out.json();
    let run_id = json["run_id"].as_i64().expect("a run id");
    assert_eq!(json["status"], "interrupted", "{json}");
    let command = printed_resume_command(&out);
    assert!(
        command.ends_with(&format!("--resume {run_id}")),
        "the printed command does not resume run {run_id}: {command}"
    );
    assert_eq!(json["resume_command"], command.as_str(), "{json}");
    assert_eq!(status_of(&db, run_id), "interrupted");
    // The table holds exactly what the ledger says committed.
    let committed = db.count("accounts");
    assert!(
        committed > 0 && committed < ROWS,
        "{committed} rows committed"
    );
    assert_eq!(committed, ledger_rows(&db));
    assert_eq!(out.figure("rows_inserted") as i64, committed, "{json}");

    // `runs show` offers the same command.
    let shown = run_bin_bounded(
        &[
            "runs",
            "show",
            &run_id.to_string(),
            "--database-url",
            db.url(),
        ],
        RUN_TIMEOUT,
    );
    shown.expect_ok();
    assert!(
        shown
            .stdout
            .contains(&format!("run {run_id} (interrupted)")),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains(&format!("resume:    {command}")),
        "{}",
        shown.stdout
    );

    // The printed command, as a user would paste it into a shell.
    let resumed = Spawned::shell(&command).wait(RUN_TIMEOUT);
    resumed.expect_ok();
    let json = resumed.json();
    assert_eq!(json["run_id"], run_id, "{json}");
    assert_eq!(json["status"], "completed", "{json}");
    assert_eq!(resumed.figure("rows_resumed"), committed as u64, "{json}");
    assert_eq!(
        resumed.figure("rows_resumed") + resumed.figure("rows_inserted"),
        ROWS as u64,
        "{json}"
    );
    assert_eq!(status_of(&db, run_id), "completed");
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

// ---------------------------------------------------------------------------------------------
// 3. A second SIGINT
// ---------------------------------------------------------------------------------------------

#[test]
fn a_second_sigint_exits_at_once_and_the_run_still_resumes() {
    const ROWS: i64 = 40_000;
    const SLOW: Duration = Duration::from_secs(2);
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 37);
    let args = seed_args(
        &db,
        &csv,
        &["--connections", "2", "--batch-size", "2000", "--json"],
    );
    // Batches that take two seconds: the second signal lands while the first one waits
    // for them.
    slow_batches(&db, SLOW.as_secs_f64());
    let mut run = Spawned::start(&args);
    run.wait_for("the first committed batch", RUN_TIMEOUT, || {
        db.ledger_batches() > 0
    });
    wait_for_a_batch_in_flight(&mut run, &db);
    let signalled = std::time::Instant::now();
    run.signal("INT");
    thread::sleep(Duration::from_millis(150));
    assert!(
        run.running(),
        "the first SIGINT did not wait for the batches in flight"
    );
    run.signal("INT");
    let out = run.wait(Duration::from_secs(60));
    let took = signalled.elapsed();
    out.expect_code(130);
    assert!(
        took < SLOW,
        "the second SIGINT did not exit at once ({took:?} after the first)\nstderr:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("resume with:"),
        "the run ended normally:\n{}",
        out.stderr
    );
    let run_id = db.scalar_i64("SELECT max(id) FROM provisioner.runs");
    assert_eq!(
        status_of(&db, run_id),
        "running",
        "the abrupt exit recorded an end"
    );
    // The batches in flight die with their connections: DROP TRIGGER waits for them.
    fast_batches(&db);
    let (rows, recorded) = table_and_ledger_rows(&db);
    assert_eq!(
        rows, recorded,
        "rows in accounts vs rows the ledger records"
    );

    let mut resume = args.clone();
    resume.push("--resume");
    let resumed = run_bin_bounded(&resume, RUN_TIMEOUT);
    resumed.expect_ok();
    assert!(resumed.figure("rows_resumed") > 0, "{}", resumed.stdout);
    assert_eq!(
        resumed.figure("rows_resumed") + resumed.figure("rows_inserted"),
        ROWS as u64
    );
    assert_eq!(status_of(&db, run_id), "completed");
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

// ---------------------------------------------------------------------------------------------
// 3b. SIGINT while stdin is idle
// ---------------------------------------------------------------------------------------------

/// `seed -` fed by a producer that stalls (a slow pipe, a network stream): SIGINT must stop
/// the run although the reader is blocked waiting for input and no batch is in flight.
#[test]
fn sigint_stops_a_run_whose_stdin_producer_stalls() {
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), 12_000, 43);
    let bytes = std::fs::read(&csv).unwrap();
    let mut run = Spawned::start_piped(&[
        "seed",
        "-",
        "--database-url",
        db.url(),
        "--connections",
        "2",
        "--batch-size",
        "5000",
        "--json",
    ]);
    let mut stdin = run.take_stdin();
    let feeder = thread::spawn(move || {
        use std::io::Write;
        // Everything, then nothing more: the pipe stays open, as a stalled producer keeps it.
        let _ = stdin.write_all(&bytes).and_then(|()| stdin.flush());
        stdin
    });
    // Two whole batches commit; the third (2,000 rows) waits for more input.
    run.wait_for("two committed batches", RUN_TIMEOUT, || {
        db.ledger_batches() >= 2
    });
    wait_until("the feeder to hand over every byte", RUN_TIMEOUT, || {
        feeder.is_finished()
    });
    let stdin = feeder.join().expect("the feeder panicked");
    thread::sleep(Duration::from_millis(300));
    run.signal("INT");
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while run.running() && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let stopped = !run.running();
    let out = run.kill_and_collect();
    drop(stdin);
    assert!(
        stopped,
        "SIGINT did not stop the run within 8 s while its stdin was idle (no batch in \
         flight); it waits for input that may never come\nstderr:\n{}",
        out.stderr
    );
    out.expect_code(130);
    assert_eq!(out.json()["status"], "interrupted", "{}", out.stdout);
    let (rows, recorded) = table_and_ledger_rows(&db);
    assert_eq!((rows, recorded), (10_000, 10_000));
}

// ---------------------------------------------------------------------------------------------
// 4. Resume refusals
// ---------------------------------------------------------------------------------------------

/// The offset of the first ASCII lowercase letter at or after `from`.
fn letter_at_or_after(bytes: &[u8], from: usize) -> usize {
    from + bytes[from..]
        .iter()
        .position(u8::is_ascii_lowercase)
        .expect("a lowercase letter")
}

/// `bytes` with the letter at `at` replaced by another letter: same size, same CSV shape.
fn edited(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] = if out[at] == b'q' { b'x' } else { b'q' };
    out
}

#[test]
fn resume_refuses_an_input_that_changed() {
    const ROWS: i64 = 50_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 19);
    let original = std::fs::read(&csv).expect("read the CSV");
    let args = seed_args(&db, &csv, &["--connections", "2", "--json"]);
    let mut resume = args.clone();
    resume.push("--resume");

    // Slow batches, so that SIGTERM surely comes before the end.
    slow_batches(&db, 0.2);
    let out = terminated_run(&db, &args);
    fast_batches(&db);
    let run_id = out.json()["run_id"].as_i64().expect("a run id");
    let committed = db.count("accounts");
    assert!(committed > 0 && committed < ROWS);
    let refused = |what: &str, code: i32, message: &str| {
        let out = run_bin_bounded(&resume, RUN_TIMEOUT);
        assert_eq!(out.code, code, "{what}: exit code\nstderr:\n{}", out.stderr);
        assert!(
            out.stderr.contains(message),
            "{what}: stderr does not say {message:?}:\n{}",
            out.stderr
        );
        assert_eq!(db.count("accounts"), committed, "{what}: rows written");
    };

    // A row of batch 1, which committed, removed: the size differs, and so does batch 1.
    let line_2 = original.iter().position(|&b| b == b'\n').unwrap() + 1;
    let line_3 = line_2 + original[line_2..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let shorter = [&original[..line_2], &original[line_3..]].concat();
    std::fs::write(&csv, &shorter).unwrap();
    refused(
        "a row of batch 1 removed",
        2,
        "changed since the run started",
    );
    assert_eq!(status_of(&db, run_id), "interrupted");

    // One byte edited in the first MiB: same size, another fingerprint.
    std::fs::write(
        &csv,
        edited(&original, letter_at_or_after(&original, 700_000)),
    )
    .unwrap();
    refused(
        "a byte edited in the first MiB",
        2,
        "changed since the run started",
    );
    assert_eq!(status_of(&db, run_id), "interrupted");

    // One byte edited past the first MiB but inside batch 1, which committed: the fingerprint
    // cannot see it, the batch's content hash does, before anything is written.
    let last_line_of_batch_1 =
        db.scalar_i64("SELECT last_line FROM provisioner.batches WHERE seq = 1") as usize;
    let at = letter_at_or_after(&original, (1 << 20) + 1000);
    let line_of_edit = 1 + original[..at].iter().filter(|&&b| b == b'\n').count();
    assert!(
        line_of_edit < last_line_of_batch_1,
        "the edit (line {line_of_edit}) is not inside batch 1 (to line {last_line_of_batch_1})"
    );
    std::fs::write(&csv, edited(&original, at)).unwrap();
    let out = run_bin_bounded(&resume, RUN_TIMEOUT);
    assert!(
        out.code == 1 || out.code == 2,
        "a changed committed batch: exit {}\nstderr:\n{}",
        out.code,
        out.stderr
    );
    assert!(
        out.stderr.contains("input changed"),
        "stderr does not say the input changed:\n{}",
        out.stderr
    );
    assert_eq!(db.count("accounts"), committed, "rows written");

    // The original back: the run resumes and completes.
    std::fs::write(&csv, &original).unwrap();
    let out = run_bin_bounded(&resume, RUN_TIMEOUT);
    out.expect_ok();
    assert_eq!(
        out.figure("rows_resumed"),
        committed as u64,
        "{}",
        out.stdout
    );
    assert_eq!(out.json()["run_id"], run_id);
    assert_accounts_equal_csv(db.url(), &csv, ROWS);

    // Nothing left to resume.
    let out = run_bin_bounded(&resume, RUN_TIMEOUT);
    out.expect_code(2);
    assert!(out.stderr.contains("no unfinished"), "{}", out.stderr);
    let mut by_id = args.clone();
    let id = run_id.to_string();
    by_id.extend(["--resume", &id]);
    let out = run_bin_bounded(&by_id, RUN_TIMEOUT);
    out.expect_code(2);
    assert!(out.stderr.contains("already completed"), "{}", out.stderr);
    assert_eq!(db.count("accounts"), ROWS);
}

#[test]
fn resume_without_an_unfinished_run_is_refused() {
    let db = TestDb::with_accounts();
    let csv = db.write("fixture.csv", fixture_bytes());
    let out = run_bin_bounded(&seed_args(&db, &csv, &["--resume", "--json"]), RUN_TIMEOUT);
    out.expect_code(2);
    assert!(
        out.stderr.contains("no unfinished seed run"),
        "{}",
        out.stderr
    );
    let out = run_bin_bounded(&seed_args(&db, &csv, &["--resume", "42"]), RUN_TIMEOUT);
    out.expect_code(2);
    assert!(out.stderr.contains("--resume 42"), "{}", out.stderr);
    assert_eq!(db.count("accounts"), 0);
}

// ---------------------------------------------------------------------------------------------
// 5. `provisioner runs`
// ---------------------------------------------------------------------------------------------

#[test]
fn runs_lists_runs_and_shows_how_to_resume_an_unfinished_one() {
    let db = TestDb::with_accounts();
    // Run 1 fails on its third batch: a role the CHECK refuses at record 2,500.
    let (names, mut rows) = csv_table(&generate_csv(&db.path("generated.csv"), 3_000, 41));
    rows[2_500][5] = Some("wizard".into());
    let failing = db.write("failing.csv", csv_file(&names, &rows, "\n"));
    let out = run_bin_bounded(
        &seed_args(
            &db,
            &failing,
            &["--connections", "1", "--batch-size", "1000", "--json"],
        ),
        RUN_TIMEOUT,
    );
    out.expect_code(1);
    assert_eq!(out.json()["run_id"], 1);
    // Run 2 completes, into another table.
    db.execute("CREATE TABLE accounts2 (LIKE accounts INCLUDING ALL)");
    let fixture = db.write("fixture.csv", fixture_bytes());
    let out = run_bin_bounded(
        &seed_args(&db, &fixture, &["--table", "accounts2", "--json"]),
        RUN_TIMEOUT,
    );
    out.expect_ok();
    assert_eq!(out.json()["run_id"], 2);

    let runs = |args: &[&str]| {
        let mut all = vec!["runs"];
        all.extend_from_slice(args);
        all.extend(["--database-url", db.url()]);
        let out = run_bin_bounded(&all, RUN_TIMEOUT);
        out.expect_ok();
        out.stdout
    };

    // The table: newest first, id, table, status.
    let listed = runs(&[]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two runs:\n{listed}");
    let cells = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (newest, oldest) = (cells(lines[1]), cells(lines[2]));
    assert_eq!(
        newest[..4],
        ["2", "seed", "public.accounts2", "completed"],
        "{listed}"
    );
    assert_eq!(newest[4], "1000", "{listed}");
    assert_eq!(
        oldest[..4],
        ["1", "seed", "public.accounts", "failed"],
        "{listed}"
    );
    assert_eq!(oldest[4], "2000", "{listed}");

    let listed: serde_json::Value = serde_json::from_str(runs(&["--json"]).trim()).unwrap();
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], 2);
    assert_eq!(listed[0]["status"], "completed");
    assert_eq!(listed[0]["target_table"], "public.accounts2");
    assert_eq!(listed[1]["id"], 1);
    assert_eq!(listed[1]["status"], "failed");
    assert_eq!(listed[1]["target_table"], "public.accounts");
    assert_eq!(listed[1]["rows_inserted"], 2000);
    assert_eq!(listed[1]["batches"], 2);

    // The failed run: its error and the command that resumes it.
    let shown = runs(&["show", "1"]);
    assert!(shown.starts_with("run 1 (failed)\n"), "{shown}");
    assert!(shown.contains("table:     public.accounts\n"), "{shown}");
    assert!(shown.contains("23514"), "{shown}");
    let resume = shown
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("resume:"))
        .unwrap_or_else(|| panic!("no resume line:\n{shown}"))
        .trim();
    assert!(resume.contains(" seed "), "{resume}");
    assert!(resume.contains(path_str(&failing)), "{resume}");
    assert!(resume.ends_with("--resume 1"), "{resume}");
    let shown: serde_json::Value =
        serde_json::from_str(runs(&["show", "1", "--json"]).trim()).expect("runs show --json");
    assert_eq!(shown["id"], 1);
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["target_table"], "public.accounts");
    assert_eq!(shown["resume_command"], resume, "{shown}");

    // The completed run: nothing to resume.
    let shown = runs(&["show", "2"]);
    assert!(shown.starts_with("run 2 (completed)\n"), "{shown}");
    assert!(!shown.contains("resume:"), "{shown}");
    let shown: serde_json::Value =
        serde_json::from_str(runs(&["show", "2", "--json"]).trim()).unwrap();
    assert!(shown["resume_command"].is_null(), "{shown}");

    // A run that does not exist.
    let out = run_bin_bounded(
        &["runs", "show", "99", "--database-url", db.url()],
        RUN_TIMEOUT,
    );
    out.expect_code(2);
    assert!(out.stderr.contains("no run 99"), "{}", out.stderr);
}
