//! Resuming a `purge --where` that stopped part way, after the table's statistics changed:
//!
//! 1. the resumed run cuts the table into the same page ranges as its first attempt (they
//!    are recorded in the run's ledger options), so every selected row is deleted and
//!    nothing else, however ANALYZE moved the rows-per-page estimate meanwhile;
//! 2. a run that recorded no ranges (as runs before they were recorded did) and whose
//!    recomputed ranges no longer match its committed batches is refused, deletes nothing,
//!    and is not left `running`.

use crate::common::*;
use crate::purge_support::*;

/// About a third of the generated rows, spread over every page of the table.
const SELECTED: &str = "email LIKE '%@example.test' AND id % 3 = 0";
/// Rows outside the selection, deleted between the attempts to move the statistics.
const THINNED: &str = "email LIKE '%@example.test' AND id % 3 = 1";

/// A table of 20,000 generated rows plus real ones, analyzed, and a trigger that fails the
/// delete of one selected row half way through the table. Returns the failed run's id.
fn fail_half_way(db: &TestDb) -> i64 {
    insert_real_accounts(db, 30);
    let generated = generate(db, "gen.csv", 20_000, 11, "example.test");
    seed_ok(db, &generated, &[]);
    db.execute("ANALYZE accounts");
    let selected = db.scalar_i64(&format!("SELECT count(*) FROM accounts WHERE {SELECTED}"));
    assert!(selected > 6_000, "the selection holds {selected} rows");
    let victim = db.scalar_i64(&format!(
        "SELECT id FROM accounts WHERE {SELECTED} ORDER BY id OFFSET {} LIMIT 1",
        selected / 2
    ));
    db.execute(&format!(
        "CREATE FUNCTION stop_here() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN RAISE EXCEPTION 'injected stop'; END $$; \
         CREATE TRIGGER stop_here BEFORE DELETE ON accounts FOR EACH ROW \
           WHEN (OLD.id = {victim}) EXECUTE FUNCTION stop_here()"
    ));
    let run = purge(db, &where_args(&[]));
    run.expect_code(1);
    assert!(run.stderr.contains("injected stop"), "{}", run.stderr);
    db.execute("DROP TRIGGER stop_here ON accounts");
    let left = db.scalar_i64(&format!("SELECT count(*) FROM accounts WHERE {SELECTED}"));
    assert!(
        left > 0 && left < selected,
        "the failed attempt should have deleted part of the selection: {left} of {selected} left"
    );
    run.figure("run_id") as i64
}

fn where_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--where",
        SELECTED,
        "--batch-size",
        "500",
        "--connections",
        "1",
        "--yes",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

/// Deletes a third of the table outside the selection and re-analyzes it: the table keeps
/// its pages but holds a third fewer rows per page, so a batch of 500 rows now spans about
/// half as many pages again.
fn move_the_statistics(db: &TestDb) {
    let per_page = || {
        db.scalar_i64(
            "SELECT (reltuples / greatest(relpages, 1))::bigint FROM pg_class \
             WHERE oid = 'accounts'::regclass",
        )
    };
    let before = per_page();
    db.execute(&format!("DELETE FROM accounts WHERE {THINNED}"));
    db.execute("VACUUM ANALYZE accounts");
    let after = per_page();
    assert!(
        after * 4 < before * 3,
        "the rows-per-page estimate should drop by about a third: {before} -> {after}"
    );
}

#[test]
fn a_resumed_where_purge_deletes_every_selected_row_after_analyze() {
    let db = TestDb::with_accounts();
    let run_id = fail_half_way(&db);
    move_the_statistics(&db);
    let keep = digest(&db, "accounts", &format!("NOT ({SELECTED})"));
    let real = real_accounts(&db);
    let left = db.scalar_i64(&format!("SELECT count(*) FROM accounts WHERE {SELECTED}"));
    let total = db.count("accounts");

    // The latest unfinished run of the same predicate and options: the page ranges it
    // recorded are not part of what it must match.
    let run = purge(&db, &where_args(&["--resume"]));
    run.expect_ok();
    assert_eq!(text(&run, "status"), "completed");
    assert_eq!(run.figure("run_id"), run_id as u64);
    assert_eq!(
        db.scalar_i64(&format!("SELECT count(*) FROM accounts WHERE {SELECTED}")),
        0,
        "the resumed run left selected rows behind"
    );
    assert_eq!(run.figure("rows_deleted"), left as u64);
    assert_eq!(db.count("accounts"), total - left);
    assert_eq!(
        digest(&db, "accounts", &format!("NOT ({SELECTED})")),
        keep,
        "rows outside the selection are untouched"
    );
    assert_eq!(real_accounts(&db), real);
    // The two attempts' batches are contiguous page ranges that cover the table once.
    let gaps = db.scalar_i64(&format!(
        "SELECT count(*) FROM (SELECT first_line, lag(last_line) OVER (ORDER BY seq) AS prev \
         FROM provisioner.batches WHERE run_id = {run_id}) b \
         WHERE prev IS NOT NULL AND first_line <> prev + 1"
    ));
    assert_eq!(gaps, 0, "the run's page ranges have gaps or overlaps");
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT status FROM provisioner.runs WHERE id = {run_id}"
        ))
        .as_deref(),
        Some("completed")
    );
}

#[test]
fn a_where_purge_whose_ranges_moved_is_refused_on_resume() {
    let db = TestDb::with_accounts();
    let run_id = fail_half_way(&db);
    // As a run recorded before the page ranges were kept in its options.
    db.execute(&format!(
        "UPDATE provisioner.runs SET options = options - 'layout' WHERE id = {run_id}"
    ));
    move_the_statistics(&db);
    let everything = digest(&db, "accounts", "true");

    let id = run_id.to_string();
    let run = purge(&db, &where_args(&["--resume", &id]));
    expect_refused(&run, "refusing to resume");
    assert!(run.stderr.contains("pages"), "{}", run.stderr);
    assert_eq!(
        digest(&db, "accounts", "true"),
        everything,
        "the refused resume deleted something"
    );
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT status FROM provisioner.runs WHERE id = {run_id}"
        ))
        .as_deref(),
        Some("failed"),
        "the refused run is left as it was, not running"
    );
}
