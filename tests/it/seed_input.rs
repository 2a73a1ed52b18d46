//! Inputs: stdin, gzip (file, stdin, no `.gz` name, several members), a UTF-8 BOM, CRLF
//! and CR line ends, blank lines. Each must load exactly what psql loads from the plain
//! fixture.

use std::time::Duration;

use crate::common::*;

/// Loads `accounts` of `db` with `run`, checks the figures, compares with `want` and empties
/// the table for the next variant.
#[track_caller]
fn assert_loads_fixture(db: &TestDb, what: &str, run: Run, want: &[String]) {
    run.expect_ok();
    assert_eq!(run.figure("rows_read"), 1000, "{what}: rows_read");
    assert_eq!(run.figure("rows_inserted"), 1000, "{what}: rows_inserted");
    assert_same_rows(what, &db.dump("accounts"), want);
    db.execute("TRUNCATE accounts");
}

/// The fixture rewritten with `eol` ending every record (line breaks inside quoted fields
/// are kept as they are), behind `prefix`.
fn fixture_with_line_ends(prefix: &str, eol: &str) -> String {
    let rows: Vec<Vec<Option<String>>> = fixture_records().into_iter().map(|r| r.fields).collect();
    let text = format!("{prefix}{}", csv_file(&ACCOUNT_COLUMNS, &rows, eol));
    // The rewrite holds the same records.
    let parsed = parse_csv(text.trim_start_matches('\u{feff}'));
    assert_eq!(parsed.len(), 1001);
    assert_eq!(
        parsed[1..].iter().map(|r| &r.fields).collect::<Vec<_>>(),
        rows.iter().collect::<Vec<_>>()
    );
    text
}

#[test]
fn stdin_loads_like_the_file() {
    let db = TestDb::with_accounts();
    let want = fixture_reference(&db);
    let run = db.seed_stdin(&fixture_bytes(), &["--json"]);
    assert_loads_fixture(&db, "stdin", run, &want);
}

#[test]
fn gzip_is_recognised_by_its_magic_bytes() {
    let db = TestDb::with_accounts();
    let want = fixture_reference(&db);
    let plain = fixture_bytes();
    let gz = gzip(&plain);

    let file = db.write("accounts.csv.gz", &gz);
    assert_loads_fixture(&db, "accounts.csv.gz", db.seed(&file, &["--json"]), &want);

    let file = db.write("accounts.data", &gz);
    assert_loads_fixture(
        &db,
        "gzip without a .gz name",
        db.seed(&file, &["--json"]),
        &want,
    );

    assert_loads_fixture(&db, "gzip on stdin", db.seed_stdin(&gz, &["--json"]), &want);

    // `cat a.gz b.gz`: two members, split in the middle of a record.
    let cut = plain.len() / 2;
    let mut two = gzip(&plain[..cut]);
    two.extend(gzip(&plain[cut..]));
    let file = db.write("two_members.csv.gz", &two);
    assert_loads_fixture(&db, "two gzip members", db.seed(&file, &["--json"]), &want);
}

#[test]
fn bom_and_crlf_or_cr_line_ends_load_the_same() {
    let db = TestDb::with_accounts();
    let want = fixture_reference(&db);

    let bom_crlf = fixture_with_line_ends("\u{feff}", "\r\n");
    let file = db.write("bom_crlf.csv", &bom_crlf);
    assert_loads_fixture(&db, "BOM + CRLF", db.seed(&file, &["--json"]), &want);
    assert_loads_fixture(
        &db,
        "BOM + CRLF on stdin",
        db.seed_stdin(bom_crlf.as_bytes(), &["--json"]),
        &want,
    );
    let file = db.write("bom_crlf.csv.gz", gzip(bom_crlf.as_bytes()));
    assert_loads_fixture(&db, "BOM + CRLF, gzip", db.seed(&file, &["--json"]), &want);

    let bom_cr = fixture_with_line_ends("\u{feff}", "\r");
    let file = db.write("bom_cr.csv", &bom_cr);
    assert_loads_fixture(&db, "BOM + CR", db.seed(&file, &["--json"]), &want);
}

#[test]
fn blank_lines_are_skipped() {
    let db = TestDb::with_accounts();
    let want = fixture_reference(&db);
    let rows: Vec<Vec<Option<String>>> = fixture_records().into_iter().map(|r| r.fields).collect();
    for eol in ["\n", "\r\n"] {
        let mut text = format!("{eol}{}{eol}{eol}", ACCOUNT_COLUMNS.join(","));
        for (i, row) in rows.iter().enumerate() {
            text.push_str(&csv_record(row));
            text.push_str(eol);
            if i % 97 == 0 {
                text.push_str(eol);
                text.push_str(eol);
            }
        }
        text.push_str(eol);
        text.push_str(eol);
        let file = db.write("blank_lines.csv", &text);
        assert_loads_fixture(
            &db,
            &format!("blank lines, eol {eol:?}"),
            db.seed(&file, &["--json"]),
            &want,
        );
    }
}

/// In a one-column file a blank line is a row (one empty unquoted field: NULL), as COPY
/// reads it; with more columns COPY would refuse it, and it is skipped.
#[test]
fn a_blank_line_in_a_one_column_file_loads_like_psql() {
    let db = TestDb::new();
    db.execute("CREATE TABLE t (id serial PRIMARY KEY, a text)");
    let file = db.write("one.csv", "a\nx\n\ny\n\n");
    db.seed(&file, &["--table", "t"]).expect_ok();
    let ours = db.dump("t");
    db.execute("TRUNCATE t RESTART IDENTITY");
    db.psql_copy("t", &["a"], &file);
    assert_same_rows("one-column file with blank lines", &ours, &db.dump("t"));
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t WHERE a IS NULL"), 2);
}

/// A producer at the other end of a pipe may hand over its first bytes one at a time (a
/// network stream, a slow decompressor): gzip and the BOM must be recognised all the same.
#[test]
fn slow_stdin_still_recognises_gzip_and_bom() {
    let db = TestDb::with_accounts();
    let want = fixture_reference(&db);
    let gz = gzip(&fixture_bytes());
    let bom_crlf = fixture_with_line_ends("\u{feff}", "\r\n").into_bytes();

    let mut failures = Vec::new();
    for (what, bytes) in [("gzip", gz), ("BOM + CRLF", bom_crlf)] {
        let chunks = vec![
            bytes[..1].to_vec(),
            bytes[1..2].to_vec(),
            bytes[2..].to_vec(),
        ];
        let run = run_bin_chunked(
            &["seed", "-", "--database-url", db.url(), "--json"],
            Some(chunks),
            Duration::from_millis(150),
        );
        if run.code != 0 {
            failures.push(format!(
                "{what}, first bytes one at a time: exit {}\n{}",
                run.code, run.stderr
            ));
            continue;
        }
        assert_loads_fixture(&db, what, run, &want);
    }
    assert_eq!(db.count("accounts"), 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn copy_dialect_options_and_headerless_files_load_like_psql() {
    let db = TestDb::with_accounts();
    // ';' delimiter, '|' quote, '\' escape, NULL spelled NULL; no header line.
    let text = "a1b2c3d4-0000-4000-8000-000000000001;a@x.example;a;NULL;|semi;colon|;2024-01-01T00:00:00Z\n\
                a1b2c3d4-0000-4000-8000-000000000002;b@x.example;b;;|esc \\| pipe|;2024-01-02T00:00:00Z\n\
                a1b2c3d4-0000-4000-8000-000000000003;c@x.example;c;|NULL|;\\N;2024-01-03T00:00:00Z\n";
    let file = db.write("dialect.csv", text);
    let columns = "external_id,email,username,display_name,password_hash,created_at";
    let run = db.seed(
        &file,
        &[
            "--json",
            "--delimiter",
            ";",
            "--quote",
            "|",
            "--escape",
            "\\",
            "--null",
            "NULL",
            "--no-header",
            "--columns",
            columns,
        ],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 3);
    let ours = db.dump("accounts");
    db.execute("TRUNCATE accounts");
    let file = file.to_str().unwrap();
    db.psql(&format!(
        "\\copy accounts ({columns}) FROM '{file}' WITH (FORMAT csv, DELIMITER ';', QUOTE '|', \
         ESCAPE '\\', NULL 'NULL')"
    ));
    assert_same_rows("dialect options", &ours, &db.dump("accounts"));
    // An unquoted NULL is NULL, a quoted one is text, an empty field is an empty string.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM accounts WHERE display_name IS NULL"),
        1
    );
    assert_eq!(
        db.scalar_text("SELECT display_name FROM accounts WHERE username = 'c'"),
        Some("NULL".into())
    );
    assert_eq!(
        db.scalar_text("SELECT password_hash FROM accounts WHERE username = 'b'"),
        Some("esc | pipe".into())
    );
}
