//! Errors: header problems (exit 2, nothing written, all listed at once) and bad rows (exit 1,
//! the message names the physical line; earlier batches stay committed).

use crate::common::*;

const COLS: [&str; 5] = ["external_id", "email", "username", "display_name", "role"];

/// A valid row for the five columns above; `i` makes it unique.
fn row(i: u32) -> Vec<Option<String>> {
    vec![
        Some(format!("00000000-0000-4000-8000-{i:012}")),
        Some(format!("user{i}@example.test")),
        Some(format!("user_{i}")),
        Some(format!("User {i}")),
        Some("user".into()),
    ]
}

/// A row whose display name spans `lines` physical lines.
fn multiline_row(i: u32, lines: usize) -> Vec<Option<String>> {
    let mut r = row(i);
    r[3] = Some(
        (1..=lines)
            .map(|n| format!("User {i} part {n}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    r
}

// ---------------------------------------------------------------------------------------------
// 4. Header errors
// ---------------------------------------------------------------------------------------------

#[test]
fn header_problems_are_all_listed_and_nothing_is_written() {
    let db = TestDb::with_accounts();
    // Unknown `bogus`, `email` twice, `username` (NOT NULL, no default) missing.
    let file = db.write(
        "bad_header.csv",
        "external_id,email,bogus,email,display_name\n\
         00000000-0000-4000-8000-000000000001,a@example.test,x,a@example.test,A\n",
    );
    let run = db.seed(&file, &["--json"]);
    run.expect_code(2);
    let err = &run.stderr;
    assert!(
        err.contains("\"bogus\""),
        "unknown column not named:\n{err}"
    );
    assert!(
        err.contains("duplicate") && err.contains("\"email\""),
        "duplicate column not named:\n{err}"
    );
    assert!(
        err.contains("\"username\""),
        "missing NOT NULL column not named:\n{err}"
    );
    // Columns with a default (role, is_active, …) or nullable ones are not missing.
    for fine in ["\"role\"", "\"is_active\"", "\"password_hash\""] {
        assert!(!err.contains(fine), "{fine} reported as a problem:\n{err}");
    }
    assert_eq!(db.count("accounts"), 0);
}

#[test]
fn map_renames_a_csv_column_to_a_table_column() {
    let db = TestDb::with_accounts();
    let file = db.write(
        "renamed.csv",
        "external_id,mail,login\n\
         00000000-0000-4000-8000-000000000001,a@example.test,alice\n\
         00000000-0000-4000-8000-000000000002,b@example.test,bob\n",
    );
    let run = db.seed(&file, &[]);
    run.expect_code(2);
    assert!(run.stderr.contains("\"mail\""), "{}", run.stderr);
    assert_eq!(db.count("accounts"), 0);

    let run = db.seed(
        &file,
        &["--map", "mail=email", "--map", "login=username", "--json"],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 2);
    assert_eq!(
        db.column_text("SELECT email || ' ' || username FROM accounts ORDER BY email"),
        [
            Some("a@example.test alice".to_string()),
            Some("b@example.test bob".to_string())
        ]
    );
}

#[test]
fn empty_header_only_and_missing_table() {
    let db = TestDb::with_accounts();

    let empty = db.write("empty.csv", "");
    let run = db.seed(&empty, &[]);
    run.expect_code(2);
    assert!(run.stderr.contains("empty"), "{}", run.stderr);
    db.seed_stdin(b"", &[]).expect_code(2);

    let header_only = db.write("header_only.csv", ACCOUNT_COLUMNS.join(",") + "\n");
    let run = db.seed(&header_only, &["--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_read"), 0);
    assert_eq!(run.figure("rows_inserted"), 0);
    assert_eq!(run.figure("batches"), 0);
    assert_eq!(db.count("accounts"), 0);

    let run = db.seed(&fixture_path(), &["--table", "no_such_table"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("no_such_table") && run.stderr.contains("does not exist"),
        "{}",
        run.stderr
    );
    let missing = db.path("no_such_file.csv");
    let run = db.seed(&missing, &[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("cannot open") && run.stderr.contains("no_such_file.csv"),
        "{}",
        run.stderr
    );
    for malformed in ["\"accounts", "a.b.c.d", "otherdb.public.accounts"] {
        let run = db.seed(&fixture_path(), &["--table", malformed]);
        run.expect_code(2);
        assert!(
            run.stderr.contains("invalid table name"),
            "{malformed}: {}",
            run.stderr
        );
    }
    assert_eq!(db.count("accounts"), 0);
}

// ---------------------------------------------------------------------------------------------
// 7. Bad rows name their physical line
// ---------------------------------------------------------------------------------------------

/// `rows` under the five-column header, `eol` between records.
fn file_of(db: &TestDb, name: &str, rows: &[Vec<Option<String>>], eol: &str) -> std::path::PathBuf {
    let text = csv_file(&COLS, rows, eol);
    // The test's own model must agree on where each record starts.
    let parsed = parse_csv(&text);
    assert_eq!(parsed.len(), rows.len() + 1);
    db.write(name, text)
}

#[test]
fn wrong_field_count_names_the_physical_line() {
    for eol in ["\n", "\r\n"] {
        let db = TestDb::with_accounts();
        // Lines: header 1, row 2, rows 3-4 (two lines), row 5, short row 6, row 7.
        let mut short = row(4);
        short.pop();
        let rows = vec![row(1), multiline_row(2, 2), row(3), short, row(5)];
        let file = file_of(&db, "short.csv", &rows, eol);
        assert_eq!(
            parse_csv(&std::fs::read_to_string(&file).unwrap())[4].line,
            6
        );

        let run = db.seed(&file, &[]);
        run.expect_code(1);
        assert_eq!(run.named_lines(), [6], "eol {eol:?}:\n{}", run.stderr);
        assert_eq!(db.count("accounts"), 0, "the only batch never went");

        // Batches of two: rows 1-2 were a whole batch before the bad row and stay.
        let run = db.seed(&file, &["--batch-size", "2", "--connections", "1"]);
        run.expect_code(1);
        assert_eq!(run.named_lines(), [6], "eol {eol:?}:\n{}", run.stderr);
        assert_eq!(db.count("accounts"), 2);
    }
}

#[test]
fn check_violation_names_line_sqlstate_and_constraint() {
    let db = TestDb::with_accounts();
    // Lines: header 1, row 2, rows 3-5 (three lines), row 6, wizard 7, rows 8, 9.
    let mut wizard = row(4);
    wizard[4] = Some("wizard".into());
    let rows = vec![row(1), multiline_row(2, 3), row(3), wizard, row(5), row(6)];
    let file = file_of(&db, "wizard.csv", &rows, "\n");

    let run = db.seed(&file, &["--json"]);
    run.expect_code(1);
    assert_eq!(run.named_lines(), [7], "{}", run.stderr);
    assert!(run.stderr.contains("23514"), "{}", run.stderr);
    assert!(run.stderr.contains("accounts_role_check"), "{}", run.stderr);
    let json_error = run.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(json_error.contains("line 7"), "JSON error: {json_error}");
    assert_eq!(db.count("accounts"), 0);

    // Batches of two over one connection: [1, 2] commits, [3, wizard] fails, nothing after.
    let run = db.seed(
        &file,
        &["--batch-size", "2", "--connections", "1", "--json"],
    );
    run.expect_code(1);
    assert_eq!(run.named_lines(), [7], "{}", run.stderr);
    assert_eq!(run.figure("rows_inserted"), 2);
    assert_eq!(db.count("accounts"), 2);
    assert_eq!(
        db.column_text("SELECT username FROM accounts ORDER BY username"),
        [Some("user_1".to_string()), Some("user_2".to_string())]
    );
}

#[test]
fn invalid_uuid_names_line_and_column() {
    let db = TestDb::with_accounts();
    // Lines: header 1, row 2, rows 3-4, rows 5, 6, bad uuid 7, row 8.
    let mut bad = row(5);
    bad[0] = Some("not-a-uuid".into());
    let rows = vec![row(1), multiline_row(2, 2), row(3), row(4), bad, row(6)];
    let file = file_of(&db, "bad_uuid.csv", &rows, "\n");

    // Batches of two over one connection: two batches commit, the third fails.
    let run = db.seed(&file, &["--batch-size", "2", "--connections", "1"]);
    run.expect_code(1);
    assert_eq!(run.named_lines(), [7], "{}", run.stderr);
    assert!(run.stderr.contains("column external_id"), "{}", run.stderr);
    assert!(run.stderr.contains("22P02"), "{}", run.stderr);
    assert_eq!(db.count("accounts"), 4);
}

/// A batch sent in CSV format (`--format csv`, or a value only the server can read) whose
/// earlier rows hold line breaks: the server's `COPY …, line N` counts those line breaks,
/// so N is not the row's position in the batch. The message must still name the bad row's
/// own line, and must never name another row's.
#[test]
fn csv_batch_errors_name_the_right_line_after_embedded_newlines() {
    let db = TestDb::with_accounts();
    // Lines: header 1, row 2, rows 3-5 (three lines), bad row 6, rows 7, 8, 9.
    let mut wizard = row(3);
    wizard[4] = Some("wizard".into());
    let rows = vec![row(1), multiline_row(2, 3), wizard, row(4), row(5), row(6)];
    let check_file = file_of(&db, "wizard.csv", &rows, "\n");
    let mut bad_uuid = row(3);
    bad_uuid[0] = Some("not-a-uuid".into());
    let rows = vec![
        row(1),
        multiline_row(2, 3),
        bad_uuid,
        row(4),
        row(5),
        row(6),
    ];
    let uuid_file = file_of(&db, "bad_uuid.csv", &rows, "\n");

    let mut failures = Vec::new();
    for (what, file, args) in [
        (
            "CHECK violation, --format csv",
            &check_file,
            &["--format", "csv"][..],
        ),
        ("invalid uuid, --format auto", &uuid_file, &[][..]),
    ] {
        let run = db.seed(file, args);
        run.expect_code(1);
        if run.named_lines() != [6] {
            failures.push(format!("{what}: expected line 6, got:\n{}", run.stderr));
        }
    }
    assert_eq!(db.count("accounts"), 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
