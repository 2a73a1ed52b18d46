//! `purge`'s three selectors — a CSV's keys, a seed run's recorded keys, a predicate — each
//! deleting exactly what it names and nothing else; and the command line that must name
//! exactly one of them.

use crate::common::*;
use crate::purge_support::*;

// ---------------------------------------------------------------------------------------------
// 1. FILE
// ---------------------------------------------------------------------------------------------

#[test]
fn purge_by_file_deletes_exactly_its_keys_is_idempotent_and_checks_the_key() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 50);
    let real = real_accounts(&db);
    assert_eq!(real.len(), 50);
    let fixture = fixture_path();
    seed_ok(&db, &fixture, &[]);
    assert_eq!(db.count("accounts"), 1050);

    // Default key (the first unique key the header covers: external_id); 1000 rows is not
    // above the default --confirm-above, so no --yes.
    let run = purge(
        &db,
        &[fixture.to_str().unwrap(), "--json", "--batch-size", "300"],
    );
    run.expect_ok();
    assert_eq!(text(&run, "command"), "purge");
    assert_eq!(text(&run, "status"), "completed");
    assert_eq!(text(&run, "table"), "public.accounts");
    assert_eq!(run.figure("rows_read"), 1000);
    assert_eq!(run.figure("rows_deleted"), 1000);
    assert_eq!(run.figure("rows_missing"), 0);
    assert_eq!(run.figure("batches"), 4);
    assert!(run.json()["error"].is_null(), "{}", run.stdout);
    assert_eq!(db.count("accounts"), 50);
    assert_eq!(real_accounts(&db), real, "the real accounts are untouched");

    // The same purge again: nothing left to delete, every key missing, still success.
    let run = purge(&db, &[fixture.to_str().unwrap(), "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_read"), 1000);
    assert_eq!(run.figure("rows_deleted"), 0);
    assert_eq!(run.figure("rows_missing"), 1000);
    assert_eq!(text(&run, "status"), "completed");
    assert_eq!(real_accounts(&db), real);

    // --key email.
    seed_ok(&db, &fixture, &[]);
    assert_eq!(db.count("accounts"), 1050);
    let run = purge(
        &db,
        &[fixture.to_str().unwrap(), "--key", "email", "--json"],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 1000);
    assert_eq!(run.figure("rows_missing"), 0);
    assert_eq!(db.count("accounts"), 50);
    assert_eq!(real_accounts(&db), real);

    // Keys that are not unique or not in the CSV are refused, and delete nothing.
    seed_ok(&db, &fixture, &[]);
    let before = digest(&db, "accounts", "true");
    assert_eq!(before.0, 1050);
    let f = fixture.to_str().unwrap();

    // Not a unique key: it could delete rows the file does not name.
    expect_refused(
        &purge(&db, &[f, "--key", "display_name"]),
        "--key display_name",
    );
    // Two unique columns are not a unique key together.
    expect_refused(&purge(&db, &[f, "--key", "external_id,email"]), "--key");
    // No such column.
    expect_refused(&purge(&db, &[f, "--key", "nope"]), "--key nope");

    // A CSV whose header covers no unique key; and one lacking the --key column.
    let records: Vec<Vec<Option<String>>> = fixture_records()
        .into_iter()
        .take(10)
        .map(|r| vec![r.fields[3].clone(), r.fields[6].clone()])
        .collect();
    let no_key = write_records(&db, "no_key.csv", &["display_name", "plan"], &records);
    expect_refused(
        &purge(&db, &[no_key.to_str().unwrap()]),
        "no primary key or unique key",
    );
    let ids_only: Vec<Vec<Option<String>>> = fixture_records()
        .into_iter()
        .take(10)
        .map(|r| vec![r.fields[0].clone()])
        .collect();
    let ids = write_records(&db, "ids.csv", &["external_id"], &ids_only);
    expect_refused(
        &purge(&db, &[ids.to_str().unwrap(), "--key", "email"]),
        "lacks the key column",
    );
    // An empty file has no header.
    let empty = db.write("empty.csv", "");
    expect_refused(&purge(&db, &[empty.to_str().unwrap()]), "empty");

    assert_eq!(
        digest(&db, "accounts", "true"),
        before,
        "a refused purge deletes nothing"
    );

    // The same ids-only file, keyed by what it has, deletes exactly those 10.
    let run = purge(&db, &[ids.to_str().unwrap(), "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 10);
    assert_eq!(db.count("accounts"), 1040);
    assert_eq!(real_accounts(&db), real);
}

/// A key file is read as the server's COPY reads it: up to PostgreSQL 17 a line holding only
/// `\.` ends the keys, so the keys after it are not deleted; from 18 on it is a key (of no
/// row here) and reading goes on.
#[test]
fn purge_by_file_stops_at_a_line_holding_only_backslash_dot_where_the_server_does() {
    let db = TestDb::with_accounts();
    seed_ok(&db, &fixture_path(), &[]);
    let emails = db.column_text("SELECT email FROM accounts ORDER BY email LIMIT 5");
    let emails: Vec<String> = emails.into_iter().flatten().collect();
    let text = format!(
        "email\n{}\n{}\n\\.\n{}\n{}\n{}\n",
        emails[0], emails[1], emails[2], emails[3], emails[4]
    );
    let file = db.write("keys.csv", text);
    let run = purge(&db, &[path_str(&file), "--yes", "--json"]);
    run.expect_ok();
    let ends = db.scalar_i64("SELECT current_setting('server_version_num')::bigint") < 180_000;
    let (read, deleted) = if ends { (2, 2) } else { (6, 5) };
    assert_eq!(run.figure("rows_read"), read, "{}", run.stdout);
    assert_eq!(run.figure("rows_deleted"), deleted, "{}", run.stdout);
    assert_eq!(db.count("accounts"), 1000 - deleted as i64);
    let after = format!(
        "accounts WHERE email IN ('{}', '{}', '{}')",
        emails[2], emails[3], emails[4]
    );
    assert_eq!(db.count(&after), if ends { 3 } else { 0 });
}

// ---------------------------------------------------------------------------------------------
// 2. --run
// ---------------------------------------------------------------------------------------------

#[test]
fn purge_by_run_deletes_only_the_rows_that_run_inserted_and_refuses_other_runs() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 30);
    // 100 accounts of the fixture (every 10th, so they fall in every seed batch) are there
    // before the seed run, with exactly the fixture's content.
    let overlap: Vec<Vec<Option<String>>> = fixture_records()
        .into_iter()
        .step_by(10)
        .map(|r| r.fields)
        .collect();
    assert_eq!(overlap.len(), 100);
    let overlap_file = write_records(&db, "overlap.csv", &ACCOUNT_COLUMNS, &overlap);
    db.psql_copy("accounts", &ACCOUNT_COLUMNS, &overlap_file);
    let kept = rows_where(&db, "accounts", "true");
    assert_eq!(kept.len(), 130);

    let seeded = seed_ok(
        &db,
        &fixture_path(),
        &[
            "--on-conflict",
            "skip",
            "--batch-size",
            "150",
            "--connections",
            "2",
        ],
    );
    assert_eq!(seeded["rows_inserted"], 900);
    assert_eq!(seeded["rows_skipped"], 100);
    let run_id = seeded["run_id"].as_i64().expect("seed run_id");
    assert_eq!(db.count("accounts"), 1030);
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT sum(jsonb_array_length(keys->0))::bigint FROM provisioner.inserted_keys \
             WHERE run_id = {run_id}"
        )),
        900,
        "the run recorded the keys of exactly the rows it inserted"
    );

    let id = run_id.to_string();
    let run = purge(&db, &["--run", &id, "--json", "--connections", "3"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 900);
    assert_eq!(run.figure("rows_missing"), 0);
    assert_eq!(run.figure("rows_read"), 900);
    assert_eq!(
        rows_where(&db, "accounts", "true"),
        kept,
        "the 100 accounts the run skipped, and the real ones, are still there as they were"
    );

    // Again: nothing left, exit 0.
    let run = purge(&db, &["--run", &id, "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 0);
    assert_eq!(run.figure("rows_missing"), 900);
    assert_eq!(rows_where(&db, "accounts", "true"), kept);

    // A seed in the default mode (keys taken from the CSV as the rows go in).
    let generated = generate(&db, "gen.csv", 300, 11, "example.test");
    let seeded = seed_ok(&db, &generated, &["--batch-size", "100"]);
    assert_eq!(seeded["rows_inserted"], 300);
    let gen_run = seeded["run_id"].as_i64().unwrap().to_string();
    let run = purge(&db, &["--run", &gen_run, "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 300);
    assert_eq!(run.figure("rows_missing"), 0);
    assert_eq!(rows_where(&db, "accounts", "true"), kept);

    // A run that recorded no keys, a run that does not exist, a run that is not a seed, and
    // --run without the ledger are refused, and delete nothing.
    let no_keys_file = generate(&db, "no_keys.csv", 200, 12, "example.test");
    let seeded = seed_ok(&db, &no_keys_file, &["--no-record-keys"]);
    assert_eq!(seeded["rows_inserted"], 200);
    let no_keys = seeded["run_id"].as_i64().unwrap().to_string();
    let before = digest(&db, "accounts", "true");
    assert_eq!(before.0, 330);
    expect_refused(&purge(&db, &["--run", &no_keys]), "did not record the keys");
    expect_refused(&purge(&db, &["--run", "987654"]), "no such run");
    expect_refused(&purge(&db, &["--run", &gen_run, "--no-ledger"]), "ledger");
    let purge_run = run.figure("run_id").to_string();
    expect_refused(&purge(&db, &["--run", &purge_run]), "not a seed");
    assert_eq!(digest(&db, "accounts", "true"), before);
}

/// The figure `key=N` of a progress log line.
fn progress_figure(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    let digits: String = line[at + key.len() + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or_else(|_| panic!("{key} in {line}"))
}

/// While a `--run` purge goes, its progress lines (every 5 s when stderr is no terminal) count
/// the keys read as its batches commit, as its summary does: not 0.
#[test]
fn purge_by_run_progress_counts_the_keys_read() {
    let db = TestDb::with_accounts();
    let seeded = seed_ok(&db, &fixture_path(), &["--batch-size", "100"]);
    let id = seeded["run_id"].as_i64().expect("seed run_id").to_string();
    // Each batch's DELETE waits a second: ten batches on one connection outlast a progress
    // line.
    db.execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$; \
         CREATE TRIGGER slow BEFORE DELETE ON accounts \
         FOR EACH STATEMENT EXECUTE FUNCTION slow()",
    );
    let run = purge(&db, &["--run", &id, "--json", "--connections", "1"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_read"), 1000);
    assert_eq!(run.figure("rows_deleted"), 1000);
    let mut read = 0;
    for line in run.stderr.lines().filter(|l| l.contains(" progress ")) {
        let written = progress_figure(line, "rows_written");
        assert_eq!(progress_figure(line, "rows_read"), written, "{line}");
        read = read.max(written);
    }
    assert!(read > 0, "no progress line with keys read:\n{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// 3. --where
// ---------------------------------------------------------------------------------------------

/// Selects about a third of the generated rows, and none of the real ones.
const PREDICATE: &str = "email LIKE '%@example.test' AND (plan = 'free' OR balance < 100000)";

#[test]
fn purge_where_deletes_exactly_the_matching_rows_in_parallel_and_refuses_bad_sql() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 40);
    let generated = generate(&db, "gen.csv", 20_000, 5, "example.test");
    seed_ok(&db, &generated, &[]);
    // Statistics, so that --batch-size 500 cuts the table into ~40 page ranges (see
    // `purge_where_batches_hold_at_most_batch_size_rows_on_a_fresh_table` for without).
    db.execute("ANALYZE accounts");
    // Holes in the pages, as a table that lived would have.
    db.execute("DELETE FROM accounts WHERE username LIKE '%7'");
    let matching = db.scalar_i64(&format!("SELECT count(*) FROM accounts WHERE {PREDICATE}"));
    assert!(
        (2_000..18_000).contains(&matching),
        "the predicate selects {matching} rows: not a useful split"
    );
    let keep = digest(&db, "accounts", &format!("NOT ({PREDICATE})"));
    let real = real_accounts(&db);
    let total = db.count("accounts");

    // A predicate the server cannot plan is refused before anything is deleted.
    let everything = digest(&db, "accounts", "true");
    for bad in ["email LIKE", "no_such_column = 1", "email = 'x' AND", "1"] {
        let run = purge(&db, &["--where", bad, "--yes", "--json"]);
        expect_refused(&run, "--where");
        assert_eq!(
            digest(&db, "accounts", "true"),
            everything,
            "--where {bad:?} deleted something"
        );
    }

    let run = purge(
        &db,
        &[
            "--where",
            PREDICATE,
            "--connections",
            "4",
            "--batch-size",
            "500",
            "--yes",
            "--json",
        ],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), matching as u64);
    assert_eq!(run.figure("rows_missing"), 0);
    assert_eq!(run.figure("rows_read"), matching as u64);
    assert!(
        run.figure("batches") >= 20,
        "--batch-size 500 over ~20k rows: {} batches",
        run.figure("batches")
    );
    assert_eq!(
        db.scalar_i64(&format!("SELECT count(*) FROM accounts WHERE {PREDICATE}")),
        0
    );
    assert_eq!(db.count("accounts"), total - matching);
    assert_eq!(
        digest(&db, "accounts", &format!("NOT ({PREDICATE})")),
        keep,
        "the non-matching rows are untouched"
    );
    assert_eq!(real_accounts(&db), real);
    // The ledger's batches add up and none was committed twice.
    let run_id = run.figure("run_id");
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT sum(deleted)::bigint FROM provisioner.batches WHERE run_id = {run_id}"
        )),
        matching
    );

    // Again: nothing matches any more.
    let run = purge(&db, &["--where", PREDICATE, "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 0);
    assert_eq!(db.count("accounts"), total - matching);
}

/// "Pages per batch so that a batch holds about --batch-size rows of the table (fewer match
/// the predicate, never more)" (src/purge.rs). On a table that was never analyzed (just
/// seeded), `reltuples` is -1, the estimate falls back to one row per page, and every batch
/// spans --batch-size *pages* (~24 rows each here): one transaction deletes ~24x the rows
/// asked for, and --connections has next to nothing to spread.
#[test]
fn purge_where_batches_hold_at_most_batch_size_rows_on_a_fresh_table() {
    let db = TestDb::with_accounts();
    let generated = generate(&db, "gen.csv", 10_000, 9, "example.test");
    seed_ok(&db, &generated, &[]);
    let run = purge(
        &db,
        &[
            "--where",
            "email LIKE '%@example.test'",
            "--batch-size",
            "200",
            "--yes",
            "--json",
        ],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 10_000);
    let run_id = run.figure("run_id");
    let largest = db.scalar_i64(&format!(
        "SELECT max(deleted) FROM provisioner.batches WHERE run_id = {run_id}"
    ));
    assert!(
        largest <= 200,
        "a batch of a --batch-size 200 purge deleted {largest} rows ({} batches for 10000 rows)",
        run.figure("batches")
    );
}

// ---------------------------------------------------------------------------------------------
// 8. The command line
// ---------------------------------------------------------------------------------------------

#[test]
fn purge_needs_exactly_one_selector() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 5);
    let seeded = seed_ok(&db, &fixture_path(), &[]);
    let run_id = seeded["run_id"].as_i64().unwrap().to_string();
    let before = digest(&db, "accounts", "true");
    let f = fixture_path();
    let f = f.to_str().unwrap();
    let w = "email LIKE '%'";
    for args in [
        vec!["--yes"],
        vec!["--dry-run", "--json"],
        vec![f, "--run", &run_id, "--yes"],
        vec![f, "--where", w, "--yes"],
        vec!["--run", &run_id, "--where", w, "--yes"],
        vec![f, "--run", &run_id, "--where", w, "--yes"],
        vec!["-", "--where", w, "--yes"],
        // Not a selector problem, but a refusal all the same.
        vec!["--where", w, "--yes", "--table", "no_such_table"],
    ] {
        let run = purge(&db, &args);
        assert_eq!(
            run.code, 2,
            "purge {args:?} exited {}\nstderr:\n{}",
            run.code, run.stderr
        );
        assert_eq!(
            digest(&db, "accounts", "true"),
            before,
            "purge {args:?} deleted something"
        );
    }
    // One selector at a time still works.
    let run = purge(&db, &["--run", &run_id, "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 1000);
    assert_eq!(db.count("accounts"), 5);
}

/// `--key` is "With FILE" (`requires = "input"` in src/cli/purge.rs), but clap drops that
/// requirement because FILE conflicts with the --run/--where that is present: `--key` is
/// accepted and silently ignored with the other selectors.
#[test]
fn purge_key_is_refused_without_a_file() {
    let db = TestDb::with_accounts();
    let seeded = seed_ok(&db, &fixture_path(), &[]);
    let run_id = seeded["run_id"].as_i64().unwrap().to_string();
    let before = digest(&db, "accounts", "true");
    for args in [
        vec!["--run", &run_id, "--key", "email", "--yes"],
        vec!["--where", "email LIKE '%'", "--key", "email", "--yes"],
    ] {
        let run = purge(&db, &args);
        assert_eq!(
            (run.code, digest(&db, "accounts", "true")),
            (2, before.clone()),
            "purge {args:?}: --key without FILE must be a usage error that deletes nothing\n\
             stderr:\n{}",
            run.stderr
        );
    }
}
