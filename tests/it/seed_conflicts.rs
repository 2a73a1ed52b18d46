//! `--on-conflict error|skip|update` and `--key` (hostile names: `hostile_names.rs`).

use std::collections::HashMap;

use crate::common::*;

/// The `Key (col)=(value)` the server's unique-violation detail names in `stderr`.
fn named_key(stderr: &str) -> (String, String) {
    let at = stderr
        .find("Key (")
        .unwrap_or_else(|| panic!("no `Key (…)=(…)` in stderr:\n{stderr}"));
    let rest = &stderr[at + "Key (".len()..];
    let (col, rest) = rest.split_once(")=(").expect("Key (col)=(value)");
    let value = rest
        .split_once(") already exists")
        .map(|(v, _)| v)
        .unwrap_or_else(|| panic!("no `) already exists` after the key in:\n{stderr}"));
    (col.to_string(), value.to_string())
}

/// external_id → display_name, for every row of `accounts`.
fn display_names(db: &TestDb) -> HashMap<String, Option<String>> {
    let mut client = db.client();
    client
        .query("SELECT external_id::text, display_name FROM accounts", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// external_id → id, for every row of `accounts`.
fn ids(db: &TestDb) -> HashMap<String, i64> {
    let mut client = db.client();
    client
        .query("SELECT external_id::text, id FROM accounts", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn fixture_as_rows() -> Vec<Vec<Option<String>>> {
    fixture_records().into_iter().map(|r| r.fields).collect()
}

#[test]
fn conflicts_error_skip_update_and_key() {
    let db = TestDb::with_accounts();
    let fixture = fixture_path();
    db.seed(&fixture, &[]).expect_ok();
    assert_eq!(db.count("accounts"), 1000);
    let ids_before = ids(&db);

    // Default: the first conflicting row fails the run, naming the key and its line. (One
    // connection, so the first batch is the one that fails first.)
    let run = db.seed(&fixture, &["--connections", "1", "--json"]);
    run.expect_code(1);
    assert!(run.stderr.contains("Key (external_id)=("), "{}", run.stderr);
    let (column, value) = named_key(&run.stderr);
    assert_eq!(column, "external_id");
    let lines = run.named_lines();
    assert!(!lines.is_empty(), "no line named in:\n{}", run.stderr);
    let line = lines[0];
    let text = String::from_utf8(fixture_bytes()).unwrap();
    let physical = physical_lines(&text);
    assert_eq!(
        line, 2,
        "the first data row conflicts first:\n{}",
        run.stderr
    );
    assert!(
        physical[line as usize - 1]
            .to_lowercase()
            .contains(&value.to_lowercase()),
        "line {line} of the file does not hold the key {value}: {}",
        physical[line as usize - 1]
    );
    let json_error = run.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(json_error.contains(&value), "JSON error: {json_error}");
    assert_eq!(db.count("accounts"), 1000);

    // skip: every row already there.
    let run = db.seed(&fixture, &["--on-conflict", "skip", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_read"), 1000);
    assert_eq!(run.figure("rows_inserted"), 0);
    assert_eq!(run.figure("rows_updated"), 0);
    assert_eq!(run.figure("rows_skipped"), 1000);
    assert_eq!(db.count("accounts"), 1000);

    // update: a copy with some display names changed, to text, '' and NULL.
    let mut rows = fixture_as_rows();
    let mut expected: HashMap<String, Option<String>> = HashMap::new();
    for (i, row) in rows.iter_mut().enumerate() {
        if i % 7 == 0 {
            row[3] = match i {
                0 => None,
                7 => Some(String::new()),
                _ => Some(format!("Renamed #{i}, \"q\"\nsecond line")),
            };
        }
        expected.insert(row[0].clone().unwrap(), row[3].clone());
    }
    let modified = db.write("modified.csv", csv_file(&ACCOUNT_COLUMNS, &rows, "\n"));
    let run = db.seed(&modified, &["--on-conflict", "update", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 0);
    assert_eq!(run.figure("rows_updated"), 1000);
    assert_eq!(run.figure("rows_skipped"), 0);
    assert_eq!(db.count("accounts"), 1000);
    // Keys are lower-case in the table; the fixture may spell them otherwise.
    let expected: HashMap<String, Option<String>> = expected
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect();
    let got = display_names(&db);
    assert_eq!(got.len(), 1000);
    for (key, want) in &expected {
        assert_eq!(got.get(key), Some(want), "display_name of {key}");
    }
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM accounts WHERE display_name LIKE 'Renamed #%'"),
        (0..1000).filter(|i| i % 7 == 0).count() as i64 - 2
    );
    assert_eq!(ids(&db), ids_before, "update keeps every row's id");

    // skip with --key email: the 1000 known emails skip, two new rows go in.
    let mut rows = fixture_as_rows();
    for n in 1..=2 {
        let mut new = rows[n].clone();
        new[0] = Some(format!("00000000-0000-4000-8000-00000000000{n}"));
        new[1] = Some(format!("new{n}@example.test"));
        new[2] = Some(format!("new_user_{n}"));
        rows.push(new);
    }
    let with_new = db.write("with_new.csv", csv_file(&ACCOUNT_COLUMNS, &rows, "\n"));
    let run = db.seed(
        &with_new,
        &["--on-conflict", "skip", "--key", "email", "--json"],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 2);
    assert_eq!(run.figure("rows_skipped"), 1000);
    assert_eq!(db.count("accounts"), 1002);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM accounts WHERE email LIKE 'new_@example.test'"),
        2
    );

    // A key without a unique index is a usage error, and nothing is written.
    let run = db.seed(
        &with_new,
        &["--on-conflict", "skip", "--key", "display_name"],
    );
    run.expect_code(2);
    assert!(run.stderr.contains("display_name"), "{}", run.stderr);
    assert_eq!(db.count("accounts"), 1002);
}

#[test]
fn conflict_error_names_the_physical_line_of_a_row_deep_in_the_file() {
    let db = TestDb::with_accounts();
    let records = fixture_records();
    // The last record starts well past line 1001: earlier records span several lines.
    let last = records.last().unwrap();
    assert!(last.line > 1001, "the fixture has multi-line records");
    let one = db.write(
        "one.csv",
        csv_file(&ACCOUNT_COLUMNS, std::slice::from_ref(&last.fields), "\n"),
    );
    db.seed(&one, &[]).expect_ok();
    assert_eq!(db.count("accounts"), 1);

    let run = db.seed(
        &fixture_path(),
        &["--connections", "1", "--batch-size", "1000"],
    );
    run.expect_code(1);
    let (_, value) = named_key(&run.stderr);
    assert!(
        run.named_lines().contains(&last.line),
        "expected line {} (the conflicting row) in:\n{}",
        last.line,
        run.stderr
    );
    let text = String::from_utf8(fixture_bytes()).unwrap();
    let physical = physical_lines(&text);
    assert!(
        physical[last.line as usize - 1]
            .to_lowercase()
            .contains(&value.to_lowercase()),
        "line {} does not hold {value}",
        last.line
    );
    // One batch: it rolled back whole.
    assert_eq!(db.count("accounts"), 1);
}

/// `--on-conflict skip` and `update` go through a staging table; a row the target refuses
/// (here a CHECK violation) must still be reported by its line, as exit code 1 promises.
#[test]
fn on_conflict_skip_and_update_failures_name_the_line() {
    let db = TestDb::with_accounts();
    let rows: Vec<Vec<Option<String>>> = (1..=4)
        .map(|i| {
            vec![
                Some(format!("00000000-0000-4000-8000-00000000000{i}")),
                Some(format!("u{i}@example.test")),
                Some(format!("u{i}")),
                Some(if i == 3 {
                    "Bad\nRole".into()
                } else {
                    format!("U {i}")
                }),
                Some(if i == 3 {
                    "wizard".into()
                } else {
                    "user".into()
                }),
            ]
        })
        .collect();
    let file = db.write(
        "bad_role.csv",
        csv_file(
            &["external_id", "email", "username", "display_name", "role"],
            &rows,
            "\n",
        ),
    );
    // Lines: header 1, rows 2, 3, 4-5 (two lines), 6.
    for mode in ["skip", "update"] {
        let run = db.seed(&file, &["--on-conflict", mode]);
        run.expect_code(1);
        assert!(run.stderr.contains("23514"), "{}", run.stderr);
        assert!(
            run.named_lines().contains(&4),
            "--on-conflict {mode}: the refused row starts on line 4, but stderr says:\n{}",
            run.stderr
        );
    }
    assert_eq!(db.count("accounts"), 0);
}
