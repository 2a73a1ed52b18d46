//! The `fixtures/bad/` corpus: one small file per kind of bad input (see its README.md), each
//! seeded with `--batch-size 2` into a fresh `accounts` table.
//!
//! Stop mode, with `--format auto` and `--format csv`: the exit code (2 for header problems
//! and the empty file, 1 for a bad row), a message naming the bad record's physical line, its
//! column where one applies and a reason, and afterwards exactly the rows of the batches
//! before the bad row's batch, in the table and as committed batches in the ledger. One
//! connection, so "before" is exact: with several, a batch after the bad one may commit
//! while the bad one is being refused.
//!
//! Reject mode (`--rejects`), with `--format auto`, `--format csv` and `--on-conflict skip`:
//! exit 3, every other record in the table, and the rejects file holding the input's header
//! plus the four added columns and the bad record's text byte for byte (sliced from the
//! input by physical lines) with its line, column, SQLSTATE and a reason. Header problems
//! still exit 2 and create no rejects file. `--dry-run` names the same line and column as
//! the real run (stop mode) or writes the same rejects file (reject mode), and leaves the
//! table empty and the database without a ledger.

use crate::common::rejects::read_rejects_of;
use crate::common::*;

/// What seeding one corpus file must do.
struct Case {
    file: &'static str,
    code: i32,
    /// The physical line the message must name (the bad record's first line).
    line: Option<u64>,
    /// The column the message must name: `column NAME` for a row, `"NAME"` for a header.
    column: Option<&'static str>,
    /// Words the message must hold (case-insensitive); `a|b` accepts either.
    reason: &'static [&'static str],
    /// Data records before the bad record's batch: what must be loaded and recorded.
    kept: usize,
    /// Reject mode: the SQLSTATE the rejects file gives the bad record ("" for header cases).
    sqlstate: &'static str,
}

const BATCH: usize = 2;

/// Both ways a batch can go: binary where the encoders accept every value (a batch holding
/// a value they refuse goes as CSV), and CSV throughout, where the server parses every value
/// and names no column for some problems (invalid UTF-8, NUL) unless the tool does first.
const FORMATS: [&str; 2] = ["auto", "csv"];

fn check(case: Case) {
    for format in FORMATS {
        check_format(&case, format);
    }
    if case.code == HEADER {
        check_header_with_rejects_and_dry_run(&case);
        return;
    }
    let real_rejects = check_rejects(&case);
    check_dry_run(&case, &real_rejects);
}

fn corpus_file(case: &Case) -> (std::path::PathBuf, Vec<u8>) {
    let path = repo_path(&format!("fixtures/bad/{}", case.file));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    (path, bytes)
}

/// The run exited `case.code`, without a panic, and its message names the case's line,
/// column and reason.
#[track_caller]
fn assert_reported(case: &Case, run: &Run, what: &str) {
    assert_eq!(
        run.code, case.code,
        "{what}: exit code\nstderr:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{what}: panic:\n{}",
        run.stderr
    );
    let err = &run.stderr;
    if let Some(line) = case.line {
        assert_eq!(run.named_lines(), [line], "{what}: lines named:\n{err}");
    }
    if let Some(col) = case.column {
        let named = if case.code == HEADER {
            err.contains(&format!("\"{col}\""))
        } else {
            err.contains(&format!("column {col}")) || err.contains(&format!("column \"{col}\""))
        };
        assert!(named, "{what}: column {col} not named:\n{err}");
    }
    assert_reason(case, err, what);
}

/// `text` holds every word of the case's reason but its SQLSTATE (case-insensitive; `a|b`
/// accepts either).
#[track_caller]
fn assert_reason(case: &Case, text: &str, what: &str) {
    let lower = text.to_lowercase();
    for words in case.reason.iter().filter(|w| **w != case.sqlstate) {
        assert!(
            words.split('|').any(|w| lower.contains(&w.to_lowercase())),
            "{what}: reason {words:?} not in {text:?}"
        );
    }
}

/// The table is empty and the database holds no ledger at all (not even its schema).
#[track_caller]
fn assert_nothing_written(db: &TestDb, what: &str) {
    assert_eq!(db.count("accounts"), 0, "{what}: rows in the table");
    assert_eq!(
        db.scalar_text("SELECT to_regnamespace('provisioner')::text"),
        None,
        "{what}: the ledger schema was created"
    );
}

fn check_format(case: &Case, format: &str) {
    let (path, bytes) = corpus_file(case);
    let db = TestDb::with_accounts();
    let batch = BATCH.to_string();
    let args = [
        "--batch-size",
        &batch,
        "--connections",
        "1",
        "--format",
        format,
    ];
    let run = db.seed(&path, &args);
    let what = format!("{} --format {format}", case.file);
    assert_reported(case, &run, &what);

    // The data: the records of the batches before the bad one, by key.
    let (header, before) = records_before(&bytes, case.line);
    assert!(
        case.kept <= before.len() && case.kept.is_multiple_of(BATCH),
        "{what}: the case's `kept` does not fit the file"
    );
    let kept = &before[..case.kept];
    assert_eq!(
        table_usernames(&db),
        usernames(&header, kept),
        "{what}: rows in the table"
    );

    // The ledger: those batches, committed under their own lines.
    let want_batches: Vec<(i64, i64, i64, i64)> = kept
        .chunks(BATCH)
        .enumerate()
        .map(|(i, rows)| {
            let next = before
                .get((i + 1) * BATCH)
                .map_or_else(|| case.line.expect("a bad row after them"), |r| r.line);
            (
                i as i64 + 1,
                rows[0].line as i64,
                next as i64 - 1,
                rows.len() as i64,
            )
        })
        .collect();
    assert_eq!(ledger_batches(&db), want_batches, "{what}: ledger batches");
    if case.code == 1 {
        assert_eq!(
            db.column_text("SELECT status FROM provisioner.runs"),
            [Some("failed".to_string())],
            "{what}: the run's status"
        );
    }
}

/// The header's fields and the data records wholly before physical line `line` (all when
/// `None`), read by the tests' own CSV model. Invalid UTF-8 is replaced, which moves no line
/// break.
fn records_before(bytes: &[u8], line: Option<u64>) -> (Vec<Option<String>>, Vec<CsvRecord>) {
    let text = String::from_utf8_lossy(bytes);
    let prefix: String = match line {
        None => text.into_owned(),
        Some(line) => text.split_inclusive('\n').take(line as usize - 1).collect(),
    };
    let mut records = parse_csv(&prefix).into_iter();
    let header = records.next().map(|r| r.fields).unwrap_or_default();
    (header, records.collect())
}

/// `(seq, first_line, last_line, rows)` of every batch in the ledger (none when it is absent).
fn ledger_batches(db: &TestDb) -> Vec<(i64, i64, i64, i64)> {
    if db.ledger_batches() == 0 {
        return Vec::new();
    }
    db.client()
        .query(
            "SELECT seq, first_line, last_line, rows FROM provisioner.batches ORDER BY seq",
            &[],
        )
        .expect("read provisioner.batches")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The `username` of each of `records`, sorted.
fn usernames(header: &[Option<String>], records: &[CsvRecord]) -> Vec<Option<String>> {
    // Looked up only when there are records: a header case keeps none, and may lack it.
    let username = || {
        header
            .iter()
            .position(|c| c.as_deref() == Some("username"))
            .expect("the header names username")
    };
    let mut names: Vec<Option<String>> = records
        .iter()
        .map(|r| r.fields[username()].clone())
        .collect();
    names.sort();
    names
}

fn table_usernames(db: &TestDb) -> Vec<Option<String>> {
    db.column_text("SELECT username::text FROM accounts ORDER BY 1")
}

/// A row-level file cut around its one bad record, by physical lines.
struct Split {
    /// The header line, without its line end.
    header: Vec<u8>,
    /// The bad record's text: its physical lines from `case.line` to the one that closes its
    /// last quote, without that line's line end; to the end of the file when a quote is
    /// never closed.
    bad: Vec<u8>,
    /// The header and the good records: the file without the bad record's lines.
    good: Vec<u8>,
}

/// `(start, end without the line end, end with it)` of each physical line; `\n`, `\r\n` and
/// `\r` each end one.
fn physical_line_spans(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut spans = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let eol = match (bytes[i], bytes.get(i + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r' | b'\n', _) => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        spans.push((start, i, i + eol));
        i += eol;
        start = i;
    }
    if start < bytes.len() {
        spans.push((start, bytes.len(), bytes.len()));
    }
    spans
}

fn split(bytes: &[u8], line: u64) -> Split {
    let spans = physical_line_spans(bytes);
    let from = spans[line as usize - 1].0;
    // The corpus quotes with `"` and escapes by doubling it, so a record ends on the first
    // line after which it holds an even number of quotes.
    let closing = spans[line as usize - 1..]
        .iter()
        .find(|&&(_, end, _)| bytes[from..end].iter().filter(|&&b| b == b'"').count() % 2 == 0);
    let (bad_end, cut_end) =
        closing.map_or((bytes.len(), bytes.len()), |&(_, end, next)| (end, next));
    Split {
        header: bytes[..spans[0].1].to_vec(),
        bad: bytes[from..bad_end].to_vec(),
        good: [&bytes[..from], &bytes[cut_end..]].concat(),
    }
}

/// Reject mode over a row-level file: `--format auto`, `--format csv` and `--on-conflict
/// skip`. Returns the rejects file of the `--format auto` run.
fn check_rejects(case: &Case) -> Vec<u8> {
    let (path, bytes) = corpus_file(case);
    let line = case.line.expect("a row-level case names its line");
    let split = split(&bytes, line);
    let (header, good) = records_before(&split.good, None);
    let want_names = usernames(&header, &good);
    let batch = BATCH.to_string();
    let mut auto_rejects = None;
    for extra in [
        ["--format", "auto"],
        ["--format", "csv"],
        ["--on-conflict", "skip"],
    ] {
        let db = TestDb::with_accounts();
        let rejects = db.path("rejects.csv");
        let mut args = vec!["--batch-size", &batch, "--connections", "1", "--json"];
        args.extend(["--rejects", path_str(&rejects)]);
        args.extend(extra);
        let run = db.seed(&path, &args);
        let what = format!("{} --rejects {}", case.file, extra.join(" "));
        assert!(
            !run.stderr.contains("panicked"),
            "{what}: panic:\n{}",
            run.stderr
        );
        // A duplicate key is what `skip` skips: nothing is rejected then.
        let skipped = extra[1] == "skip" && case.sqlstate == "23505";
        run.expect_code(if skipped { 0 } else { 3 });
        assert_eq!(
            table_usernames(&db),
            want_names,
            "{what}: rows in the table"
        );
        let records = good.len() + 1;
        assert_eq!(
            db.scalar_i64(
                "SELECT count(*) FROM provisioner.batches WHERE committed_at IS NOT NULL"
            ),
            records.div_ceil(BATCH) as i64,
            "{what}: committed batches in the ledger"
        );
        assert_eq!(
            db.column_text("SELECT status FROM provisioner.runs"),
            [Some("completed".to_string())],
            "{what}: the run's status"
        );
        assert_eq!(run.figure("rows_read"), records as u64, "{what}: rows_read");
        if skipped {
            assert_eq!(run.figure("rows_skipped"), 1, "{what}: rows_skipped");
            assert_eq!(run.figure("rows_rejected"), 0, "{what}: rows_rejected");
            assert_eq!(read_rejects_of(&rejects, &split.header, &[]), [], "{what}");
            continue;
        }
        assert_eq!(run.figure("rows_rejected"), 1, "{what}: rows_rejected");
        assert_eq!(
            run.figure("rows_inserted"),
            good.len() as u64,
            "{what}: rows_inserted"
        );
        assert_eq!(
            db.scalar_i64("SELECT sum(rejected)::bigint FROM provisioner.batches"),
            1,
            "{what}: rows rejected in the ledger"
        );
        let got = read_rejects_of(&rejects, &split.header, &[&split.bad]);
        let r = &got[0];
        assert_eq!(r.line, line, "{what}: rejected_line");
        assert_eq!(r.column.as_deref(), case.column, "{what}: rejected_column");
        assert_eq!(r.sqlstate, case.sqlstate, "{what}: rejected_sqlstate");
        assert!(!r.reason.trim().is_empty(), "{what}: an empty reason");
        assert_reason(case, &r.reason, &what);
        if extra[1] == "auto" {
            auto_rejects = Some(std::fs::read(&rejects).expect("read the rejects file"));
        }
    }
    auto_rejects.expect("the --format auto run")
}

/// `--dry-run` over a row-level file: in stop mode exit 1 naming what the real run names; with
/// `--rejects` exit 3 and the real run's rejects file (`real_rejects`). Either way nothing
/// is written.
fn check_dry_run(case: &Case, real_rejects: &[u8]) {
    let (path, _) = corpus_file(case);
    let batch = BATCH.to_string();
    let db = TestDb::with_accounts();
    let args = ["--dry-run", "--batch-size", &batch, "--connections", "1"];
    let what = format!("{} --dry-run", case.file);
    assert_reported(case, &db.seed(&path, &args), &what);
    assert_nothing_written(&db, &what);

    // A fresh table: the server's message for a CHECK violation shows the row's `id`, and a
    // sequence does not roll back, so the run before would have moved it.
    let db = TestDb::with_accounts();
    let rejects = db.path("rejects.csv");
    let mut with_rejects = args.to_vec();
    with_rejects.extend(["--rejects", path_str(&rejects), "--json"]);
    let run = db.seed(&path, &with_rejects);
    let what = format!("{} --dry-run --rejects", case.file);
    run.expect_code(3);
    assert_eq!(run.figure("rows_rejected"), 1, "{what}: rows_rejected");
    assert_eq!(
        std::fs::read(&rejects).expect("read the rejects file"),
        real_rejects,
        "{what}: the rejects file differs from the real run's"
    );
    assert_nothing_written(&db, &what);
}

/// A header problem or an empty file in reject mode, and in a dry run with `--rejects`: exit
/// 2 with the same message, no rejects file created and an existing one left as it was,
/// nothing written.
fn check_header_with_rejects_and_dry_run(case: &Case) {
    let (path, _) = corpus_file(case);
    let db = TestDb::with_accounts();
    let rejects = db.path("rejects.csv");
    let args = ["--batch-size", "2", "--rejects", path_str(&rejects)];
    let what = format!("{} --rejects", case.file);
    assert_reported(case, &db.seed(&path, &args), &what);
    assert!(!rejects.exists(), "{what}: a rejects file was created");
    assert_nothing_written(&db, &what);

    // A rejects file left from an earlier run is not truncated, in a real run or a dry one.
    let before = b"left from an earlier run\n";
    std::fs::write(&rejects, before).expect("write the old rejects file");
    for extra in [&[][..], &["--dry-run"]] {
        let what = format!("{} --rejects {}", case.file, extra.join(" "));
        assert_reported(case, &db.seed(&path, &[&args[..], extra].concat()), &what);
        assert_eq!(
            std::fs::read(&rejects).expect("read the rejects file"),
            before,
            "{what}: an existing rejects file was changed"
        );
        assert_nothing_written(&db, &what);
    }
}

macro_rules! corpus {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check($case);
            }
        )*

        /// Every file in `fixtures/bad/` has a test above and a row in its README, and every
        /// test a file.
        #[test]
        fn every_corpus_file_is_tested() {
            let tested = [$($case.file),*];
            let dir = repo_path("fixtures/bad");
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
                .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(".csv"))
                .collect();
            files.sort();
            let mut tested: Vec<String> = tested.iter().map(|f| f.to_string()).collect();
            tested.sort();
            assert_eq!(files, tested);
            let readme = std::fs::read_to_string(dir.join("README.md")).expect("fixtures/bad/README.md");
            for file in &files {
                assert!(readme.contains(&format!("| {file} |")), "README.md lacks {file}");
            }
        }
    };
}

const ROW: i32 = 1;
const HEADER: i32 = 2;

const UNTERMINATED: Case = Case {
    file: "unterminated_quote.csv",
    code: ROW,
    line: Some(8),
    column: None,
    reason: &["unterminated"],
    kept: 6,
    sqlstate: "22P04",
};

corpus! {
    field_count_too_few: Case {
        file: "field_count_too_few.csv", code: ROW, line: Some(6), column: None,
        reason: &["expected 13 fields", "found 12"], kept: 4, sqlstate: "22P04",
    };
    field_count_too_many: Case {
        file: "field_count_too_many.csv", code: ROW, line: Some(4), column: None,
        reason: &["expected 13 fields", "found 14"], kept: 2, sqlstate: "22P04",
    };
    unterminated_quote_at_eof: UNTERMINATED;
    bad_uuid: Case {
        file: "bad_uuid.csv", code: ROW, line: Some(6), column: Some("external_id"),
        reason: &["uuid", "not-a-uuid"], kept: 4, sqlstate: "22P02",
    };
    bad_boolean: Case {
        file: "bad_boolean.csv", code: ROW, line: Some(6), column: Some("is_active"),
        reason: &["boolean", "maybe"], kept: 4, sqlstate: "22P02",
    };
    bad_integer: Case {
        file: "bad_integer.csv", code: ROW, line: Some(6), column: Some("id"),
        reason: &["bigint", "12abc"], kept: 4, sqlstate: "22P02",
    };
    integer_out_of_range: Case {
        file: "integer_out_of_range.csv", code: ROW, line: Some(6), column: Some("id"),
        reason: &["out of range", "bigint"], kept: 4, sqlstate: "22003",
    };
    bad_numeric: Case {
        file: "bad_numeric.csv", code: ROW, line: Some(6), column: Some("balance"),
        reason: &["numeric", "12,50"], kept: 4, sqlstate: "22P02",
    };
    numeric_overflow: Case {
        file: "numeric_overflow.csv", code: ROW, line: Some(6), column: Some("balance"),
        reason: &["overflow|out of range", "12|precision"], kept: 4, sqlstate: "22003",
    };
    bad_date: Case {
        file: "bad_date.csv", code: ROW, line: Some(6), column: Some("birth_date"),
        reason: &["date", "2023-02-30"], kept: 4, sqlstate: "22008",
    };
    bad_timestamptz: Case {
        file: "bad_timestamptz.csv", code: ROW, line: Some(6), column: Some("created_at"),
        reason: &["timestamp", "next tuesday"], kept: 4, sqlstate: "22007",
    };
    bad_jsonb: Case {
        file: "bad_jsonb.csv", code: ROW, line: Some(6), column: Some("metadata"),
        reason: &["json"], kept: 4, sqlstate: "22P02",
    };
    varchar_too_long: Case {
        file: "varchar_too_long.csv", code: ROW, line: Some(6), column: Some("username"),
        reason: &["too long", "64"], kept: 4, sqlstate: "22001",
    };
    char_too_long: Case {
        file: "char_too_long.csv", code: ROW, line: Some(6), column: Some("country"),
        reason: &["too long", "2"], kept: 4, sqlstate: "22001",
    };
    invalid_utf8: Case {
        file: "invalid_utf8.csv", code: ROW, line: Some(6), column: Some("display_name"),
        reason: &["utf-8|utf8", "byte"], kept: 4, sqlstate: "22021",
    };
    nul_byte: Case {
        file: "nul_byte.csv", code: ROW, line: Some(6), column: Some("display_name"),
        reason: &["nul|0x00"], kept: 4, sqlstate: "22021",
    };
    check_violation: Case {
        file: "check_violation.csv", code: ROW, line: Some(4), column: None,
        reason: &["check constraint", "accounts_role_check", "23514"], kept: 2, sqlstate: "23514",
    };
    duplicate_key_in_file: Case {
        file: "duplicate_key.csv", code: ROW, line: Some(7), column: None,
        reason: &["duplicate key", "(email)", "23505"], kept: 4, sqlstate: "23505",
    };
    mixed_line_endings: Case {
        file: "mixed_line_endings.csv", code: ROW, line: Some(7), column: None,
        reason: &["unquoted carriage return", "\\r\\n"], kept: 4, sqlstate: "22P04",
    };
    embedded_newlines_before_the_bad_row: Case {
        file: "embedded_newline.csv", code: ROW, line: Some(11), column: Some("birth_date"),
        reason: &["date", "1990-13-01"], kept: 4, sqlstate: "22008",
    };
    header_unknown_column: Case {
        file: "header_unknown_column.csv", code: HEADER, line: None, column: Some("nickname"),
        reason: &["unknown column"], kept: 0, sqlstate: "",
    };
    header_duplicate_column: Case {
        file: "header_duplicate_column.csv", code: HEADER, line: None, column: Some("email"),
        reason: &["duplicate column"], kept: 0, sqlstate: "",
    };
    header_missing_required_column: Case {
        file: "header_missing_required.csv", code: HEADER, line: None, column: Some("username"),
        reason: &["missing column", "not null"], kept: 0, sqlstate: "",
    };
    empty_file: Case {
        file: "empty.csv", code: HEADER, line: None, column: None,
        reason: &["empty", "header"], kept: 0, sqlstate: "",
    };
}
