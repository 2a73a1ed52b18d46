//! `seed --dry-run`: the whole file is read, checked and loaded in one transaction that is
//! rolled back; the counts are what a real run would report, and nothing is written to the
//! table or the ledger.

use crate::common::rejects::read_rejects;
use crate::common::*;

const COLS: &str = "external_id,email,username,role";

fn row(i: u32, email: &str, role: &str) -> String {
    format!("00000000-0000-4000-8000-{i:012},{email},user_{i},{role}")
}

/// The table holds one account (`taken@example.test`); the file has five new rows, a row
/// with the taken email (line 3), a row repeating the email of line 2 in a later batch
/// (line 6) and a CHECK violation (line 8).
fn setup() -> (TestDb, std::path::PathBuf) {
    let db = TestDb::with_accounts();
    db.execute(
        "INSERT INTO accounts (external_id, email, username) \
         VALUES ('00000000-0000-4000-8000-000000000999', 'taken@example.test', 'taken')",
    );
    let rows = [
        row(1, "a@example.test", "user"),
        row(2, "taken@example.test", "user"),
        row(3, "b@example.test", "user"),
        row(4, "c@example.test", "user"),
        row(5, "a@example.test", "user"),
        row(6, "d@example.test", "admin"),
        row(7, "w@example.test", "wizard"),
        row(8, "e@example.test", "user"),
    ];
    let file = db.write("dry.csv", format!("{COLS}\n{}\n", rows.join("\n")));
    (db, file)
}

#[track_caller]
fn assert_nothing_written(db: &TestDb) {
    assert_eq!(db.count("accounts"), 1, "the table is as it was");
    assert_eq!(
        db.scalar_text("SELECT coalesce(to_regnamespace('provisioner')::text, 'none')"),
        Some("none".into()),
        "no ledger was created"
    );
}

#[test]
fn a_dry_run_reports_what_would_happen_and_writes_nothing() {
    let (db, file) = setup();
    let batches = ["--batch-size", "3"];

    // Stop mode: the first bad row is named, exit 1.
    let mut args = vec!["--dry-run", "--on-conflict", "skip", "--json"];
    args.extend(batches);
    let run = db.seed(&file, &args);
    run.expect_code(1);
    assert_eq!(run.named_lines(), [8], "{}", run.stderr);
    assert!(run.stderr.contains("23514"), "{}", run.stderr);
    assert_eq!(run.json()["command"], "seed --dry-run");
    assert_nothing_written(&db);

    // Reject mode: the CHECK violation is set aside; the later batch sees the earlier
    // batch's a@example.test, so both repeated emails count as skipped.
    let rejects = db.path("rejects.csv");
    args.extend(["--rejects", path_str(&rejects)]);
    let run = db.seed(&file, &args);
    run.expect_code(3);
    assert_eq!(run.figure("rows_read"), 8);
    assert_eq!(run.figure("rows_inserted"), 5);
    assert_eq!(run.figure("rows_skipped"), 2);
    assert_eq!(run.figure("rows_rejected"), 1);
    assert!(run.json()["run_id"].is_null(), "{}", run.stdout);
    assert!(run.stderr.contains("5 would be inserted"), "{}", run.stderr);
    let (_, got) = read_rejects(&rejects);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].line, got[0].sqlstate.as_str()), (8, "23514"));
    assert_nothing_written(&db);

    // Without skip, the conflicts are errors: in reject mode they are rejected too.
    let run = db.seed(
        &file,
        &[
            "--dry-run",
            "--json",
            "--batch-size",
            "3",
            "--rejects",
            path_str(&rejects),
        ],
    );
    run.expect_code(3);
    assert_eq!(run.figure("rows_inserted"), 5);
    assert_eq!(run.figure("rows_rejected"), 3);
    let (_, got) = read_rejects(&rejects);
    assert_eq!(got.iter().map(|r| r.line).collect::<Vec<_>>(), [3, 6, 8]);
    assert_nothing_written(&db);

    // A clean file: exit 0 with the counts, and still nothing written.
    let clean = db.write(
        "clean.csv",
        format!("{COLS}\n{}\n", row(1, "z@example.test", "user")),
    );
    let run = db.seed(&clean, &["--dry-run", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 1);
    assert_eq!(run.figure("batches"), 1);
    assert_nothing_written(&db);

    // Batches of one through the staging table, the first wholly rejected by a check:
    // each batch stages on its own in the one transaction.
    let partly = db.write(
        "partly.csv",
        format!(
            "{COLS}\nnot-a-uuid,y@example.test,y,user\n{}\n",
            row(2, "z@example.test", "user")
        ),
    );
    let run = db.seed(
        &partly,
        &[
            "--dry-run",
            "--json",
            "--on-conflict",
            "skip",
            "--batch-size",
            "1",
            "--rejects",
            path_str(&rejects),
        ],
    );
    run.expect_code(3);
    assert_eq!(run.figure("rows_inserted"), 1);
    assert_eq!(run.figure("rows_rejected"), 1);
    assert_nothing_written(&db);

    // A dry run records nothing, so it has nothing to resume.
    db.seed(&file, &["--dry-run", "--resume"]).expect_code(2);
    assert_nothing_written(&db);
}
