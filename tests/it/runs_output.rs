//! `provisioner runs` and `runs show` for purge runs: the rows a purge deleted and the keys it
//! did not find, counted from its committed batches (so an unfinished run shows what it
//! committed), in the table, in `show` and in `--json`; and `--limit` below 1 refused.

use crate::common::*;
use crate::purge_support::*;

/// `provisioner runs --database-url <db> <args…>`, expected to succeed; its stdout.
fn runs(db: &TestDb, args: &[&str]) -> String {
    let mut all = vec!["runs", "--database-url", db.url()];
    all.extend_from_slice(args);
    let run = run_bin(&all, None);
    run.expect_ok();
    run.stdout
}

/// The listed run's `rows` column (the fifth) in `provisioner runs`.
fn listed_rows(db: &TestDb, run_id: u64) -> String {
    let listed = runs(db, &[]);
    let line = listed
        .lines()
        .find(|l| l.split_whitespace().next() == Some(run_id.to_string().as_str()))
        .unwrap_or_else(|| panic!("run {run_id} is not listed:\n{listed}"));
    line.split_whitespace()
        .nth(4)
        .expect("a rows column")
        .to_string()
}

/// A purge of `file` in batches of 300, one at a time.
fn args<'a>(file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        file,
        "--batch-size",
        "300",
        "--connections",
        "1",
        "--yes",
        "--json",
    ];
    all.extend_from_slice(extra);
    all
}

#[test]
fn runs_show_what_purge_runs_deleted_and_missed() {
    let db = TestDb::with_accounts();
    let generated = generate(&db, "gen.csv", 1000, 3, "example.test");
    let seeded = seed_ok(&db, &generated, &[]);
    let seed_id = seeded["run_id"].as_u64().expect("seed run id");
    let f = generated.to_str().unwrap();

    // A purge that fails in its third batch (generated usernames end with their line number).
    db.execute(
        "CREATE FUNCTION stop_here() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN RAISE EXCEPTION 'injected stop'; END $$; \
         CREATE TRIGGER stop_here BEFORE DELETE ON accounts FOR EACH ROW \
           WHEN (OLD.username ~ '_700$') EXECUTE FUNCTION stop_here()",
    );
    let failed = purge(&db, &args(f, &[]));
    failed.expect_code(1);
    let purge_id = failed.figure("run_id");
    db.execute("DROP TRIGGER stop_here ON accounts");
    assert_eq!(db.count("accounts"), 400, "batches 1 and 2 committed");

    let shown = runs(&db, &["show", &purge_id.to_string()]);
    assert!(
        shown.contains(&format!("run {purge_id} (failed)")),
        "{shown}"
    );
    assert!(
        shown.contains("committed: 2 batches: 600 rows deleted, 0 not found"),
        "{shown}"
    );
    assert!(shown.contains("injected stop"), "{shown}");
    assert!(shown.contains("resume:"), "{shown}");
    assert_eq!(listed_rows(&db, purge_id), "600");

    // Resumed to the end, then the same purge again, which finds nothing.
    let resumed = purge(&db, &args(f, &["--resume", &purge_id.to_string()]));
    resumed.expect_ok();
    assert_eq!(db.count("accounts"), 0);
    let again = purge(&db, &args(f, &[]));
    again.expect_ok();
    let again_id = again.figure("run_id");

    let shown = runs(&db, &["show", &purge_id.to_string()]);
    assert!(
        shown.contains(&format!("run {purge_id} (completed)")),
        "{shown}"
    );
    assert!(
        shown.contains("committed: 4 batches: 1000 rows deleted, 0 not found (1000 keys read)"),
        "{shown}"
    );
    assert!(!shown.contains("resume:"), "{shown}");
    let shown = runs(&db, &["show", &again_id.to_string()]);
    assert!(
        shown.contains("committed: 4 batches: 0 rows deleted, 1000 not found (1000 keys read)"),
        "{shown}"
    );
    // A seed run still shows what it wrote.
    let shown = runs(&db, &["show", &seed_id.to_string()]);
    assert!(
        shown.contains("1000 rows inserted, 0 updated, 0 skipped, 0 rejected (1000 rows read)"),
        "{shown}"
    );

    assert_eq!(listed_rows(&db, purge_id), "1000");
    assert_eq!(listed_rows(&db, again_id), "0");
    assert_eq!(listed_rows(&db, seed_id), "1000");

    let listed: serde_json::Value =
        serde_json::from_str(runs(&db, &["--json"]).trim()).expect("runs --json");
    let by_id = |id: u64| {
        listed
            .as_array()
            .expect("an array of runs")
            .iter()
            .find(|r| r["id"].as_u64() == Some(id))
            .unwrap_or_else(|| panic!("run {id} not in {listed}"))
            .clone()
    };
    let (first, second, seed) = (by_id(purge_id), by_id(again_id), by_id(seed_id));
    assert_eq!(first["rows_deleted"], 1000, "{first}");
    assert_eq!(first["rows_missing"], 0, "{first}");
    assert_eq!(second["rows_deleted"], 0, "{second}");
    assert_eq!(second["rows_missing"], 1000, "{second}");
    assert_eq!(seed["rows_inserted"], 1000, "{seed}");
    assert_eq!(seed["rows_deleted"], 0, "{seed}");
    let newest: serde_json::Value =
        serde_json::from_str(runs(&db, &["--limit", "1", "--json"]).trim()).expect("runs --json");
    assert_eq!(newest, serde_json::json!([second]));
    let shown: serde_json::Value =
        serde_json::from_str(runs(&db, &["show", &again_id.to_string(), "--json"]).trim())
            .expect("runs show --json");
    assert_eq!(shown["rows_deleted"], 0, "{shown}");
    assert_eq!(shown["rows_missing"], 1000, "{shown}");
}

#[test]
fn runs_limit_must_be_positive() {
    let db = TestDb::with_accounts();
    for limit in ["--limit=0", "--limit=-1"] {
        let run = run_bin(&["runs", "--database-url", db.url(), limit], None);
        run.expect_code(2);
        assert!(run.stderr.contains("--limit"), "{limit}: {}", run.stderr);
    }
}
