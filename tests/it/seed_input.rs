//! Inputs: stdin, gzip (file, stdin, no `.gz` name, several members), a UTF-8 BOM, CRLF
//! and CR line ends, blank lines. Each must load exactly what psql loads from the plain
//! fixture. Also `/dev/stdin` from a pipe, a FIFO (no size, so no percent in the progress),
//! and a line holding only `\.`, which ends the data where the server's COPY says so.

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

/// `seed /dev/stdin` with a pipe on stdin reads it as `seed -` does: the path names a pipe,
/// which has no size and no name to canonicalize.
#[test]
fn dev_stdin_from_a_pipe_loads_like_stdin() {
    let db = TestDb::with_accounts();
    let want = fixture_reference(&db);
    let args = ["seed", "/dev/stdin", "--database-url", db.url(), "--json"];
    let run = run_bin(&args, Some(&fixture_bytes()));
    assert_loads_fixture(&db, "/dev/stdin from a pipe", run, &want);
    assert_eq!(
        db.column_text(
            "SELECT input_path || ':' || coalesce(input_size::text, 'null') FROM provisioner.runs"
        ),
        [Some("/dev/stdin:null".to_string())]
    );
}

/// A FIFO has no size: the progress lines (every 5 s when stderr is no terminal) show no
/// percent, and the run records no size, where a percent of a size of 0 would be nonsense.
#[test]
fn a_fifo_loads_with_progress_but_no_percent() {
    const ROWS: u64 = 20_000;
    let db = TestDb::with_accounts();
    let bytes = std::fs::read(generate_csv(&db.path("accounts.csv"), ROWS, 7)).expect("read");
    let fifo = db.path("accounts.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let args = [
        "seed",
        path_str(&fifo),
        "--database-url",
        db.url(),
        "--json",
    ];
    let run = std::thread::scope(|scope| {
        scope.spawn(|| {
            use std::io::Write;
            // Opening blocks until the reader opens its end.
            let mut pipe = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open the FIFO");
            // More than the first MiB the input's fingerprint waits for, so that batches go.
            let cut = 3 << 20;
            pipe.write_all(&bytes[..cut]).expect("write the FIFO");
            pipe.flush().expect("flush the FIFO");
            // A pause longer than the 5 s between progress lines, once the run is under way.
            wait_until("a committed batch", Duration::from_secs(60), || {
                db.ledger_batches() > 0
            });
            std::thread::sleep(Duration::from_millis(5500));
            pipe.write_all(&bytes[cut..]).expect("write the FIFO");
        });
        run_bin_bounded(&args, Duration::from_secs(90))
    });
    let progress: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" progress "))
        .collect();
    assert!(!progress.is_empty(), "no progress line:\n{}", run.stderr);
    for line in &progress {
        assert!(
            line.contains("percent=\"?\""),
            "a percent of a FIFO: {line}"
        );
    }
    assert_eq!(
        db.column_text("SELECT input_size::text FROM provisioner.runs"),
        [None]
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), ROWS);
    assert_eq!(db.count("accounts"), ROWS as i64);
}

/// Up to PostgreSQL 17, COPY's CSV reading ends at a line holding only `\.` (psql's `\copy`
/// too); from 18 on the line is data. `seed` does what the connected server does: here, on
/// the local server, the rows before the line load and the rest is not read, as with psql.
#[test]
fn a_line_holding_only_backslash_dot_ends_the_data_where_the_server_says_so() {
    let db = TestDb::new();
    let ends = db.scalar_i64("SELECT current_setting('server_version_num')::bigint") < 180_000;
    db.execute(
        "CREATE TABLE two (id serial PRIMARY KEY, a text, b text); \
         CREATE TABLE one (id serial PRIMARY KEY, a text)",
    );
    for (table, columns, text, rows) in [
        (
            "two",
            &["a", "b"][..],
            "a,b\n1,x\n2,\"y\nz\"\n\\.\n3,z\n",
            2,
        ),
        ("one", &["a"][..], "a\r\nx\r\n\\.\r\ny\r\n", 1),
    ] {
        let file = db.write(&format!("{table}.csv"), text);
        let run = db.seed(&file, &["--table", table, "--json"]);
        if !ends {
            // The line is data: a record of one field (the two-column file refuses it).
            assert_eq!(
                run.code,
                if table == "one" { 0 } else { 1 },
                "{}",
                run.stderr
            );
            continue;
        }
        run.expect_ok();
        assert_eq!(run.figure("rows_inserted"), rows, "{table}");
        assert!(run.stderr.contains("\\. ends the data"), "{}", run.stderr);
        let ours = db.dump(table);
        db.execute(&format!("TRUNCATE {table}"));
        db.psql_copy(table, columns, &file);
        assert_same_rows(&format!("{table}: \\."), &ours, &db.dump(table));
    }
}
