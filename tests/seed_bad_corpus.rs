//! The `fixtures/bad/` corpus: one small file per kind of bad input (see its README.md), each
//! seeded in stop mode with `--batch-size 2` into a fresh `accounts` table.
//!
//! For every file, with `--format auto` and `--format csv`: the exit code (2 for header problems and the empty file, 1 for a bad
//! row), a message naming the bad record's physical line, its column where one applies and
//! a reason, and afterwards exactly the rows of the batches before the bad row's batch, in
//! the table and as committed batches in the ledger. One connection, so "before" is exact:
//! with several, a batch after the bad one may commit while the bad one is being refused.

mod common;

use common::*;

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
}

fn check_format(case: &Case, format: &str) {
    let path = repo_path(&format!("fixtures/bad/{}", case.file));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
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

    // The message: line, column, reason.
    let err = &run.stderr;
    if let Some(line) = case.line {
        assert_eq!(run.named_lines(), [line], "{what}: lines named:\n{err}");
    }
    if let Some(col) = case.column {
        let named = if case.code == 2 {
            err.contains(&format!("\"{col}\""))
        } else {
            err.contains(&format!("column {col}")) || err.contains(&format!("column \"{col}\""))
        };
        assert!(named, "{what}: column {col} not named:\n{err}");
    }
    let lower = err.to_lowercase();
    for words in case.reason {
        assert!(
            words.split('|').any(|w| lower.contains(&w.to_lowercase())),
            "{what}: reason {words:?} not in the message:\n{err}"
        );
    }

    // The data: the records of the batches before the bad one, by key.
    let (header, before) = records_before(&bytes, case.line);
    assert!(
        case.kept <= before.len() && case.kept.is_multiple_of(BATCH),
        "{what}: the case's `kept` does not fit the file"
    );
    let kept = &before[..case.kept];
    let username = header
        .iter()
        .position(|c| c.as_deref() == Some("username"))
        .unwrap_or(0);
    let mut want: Vec<Option<String>> = kept.iter().map(|r| r.fields[username].clone()).collect();
    want.sort();
    assert_eq!(
        db.column_text("SELECT username::text FROM accounts ORDER BY 1"),
        want,
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

corpus! {
    field_count_too_few: Case {
        file: "field_count_too_few.csv", code: ROW, line: Some(6), column: None,
        reason: &["expected 13 fields", "found 12"], kept: 4,
    };
    field_count_too_many: Case {
        file: "field_count_too_many.csv", code: ROW, line: Some(4), column: None,
        reason: &["expected 13 fields", "found 14"], kept: 2,
    };
    unterminated_quote_at_eof: Case {
        file: "unterminated_quote.csv", code: ROW, line: Some(8), column: None,
        reason: &["unterminated"], kept: 6,
    };
    bad_uuid: Case {
        file: "bad_uuid.csv", code: ROW, line: Some(6), column: Some("external_id"),
        reason: &["uuid", "not-a-uuid"], kept: 4,
    };
    bad_boolean: Case {
        file: "bad_boolean.csv", code: ROW, line: Some(6), column: Some("is_active"),
        reason: &["boolean", "maybe"], kept: 4,
    };
    bad_integer: Case {
        file: "bad_integer.csv", code: ROW, line: Some(6), column: Some("id"),
        reason: &["bigint", "12abc"], kept: 4,
    };
    integer_out_of_range: Case {
        file: "integer_out_of_range.csv", code: ROW, line: Some(6), column: Some("id"),
        reason: &["out of range", "bigint"], kept: 4,
    };
    bad_numeric: Case {
        file: "bad_numeric.csv", code: ROW, line: Some(6), column: Some("balance"),
        reason: &["numeric", "12,50"], kept: 4,
    };
    numeric_overflow: Case {
        file: "numeric_overflow.csv", code: ROW, line: Some(6), column: Some("balance"),
        reason: &["overflow|out of range", "12|precision"], kept: 4,
    };
    bad_date: Case {
        file: "bad_date.csv", code: ROW, line: Some(6), column: Some("birth_date"),
        reason: &["date", "2023-02-30"], kept: 4,
    };
    bad_timestamptz: Case {
        file: "bad_timestamptz.csv", code: ROW, line: Some(6), column: Some("created_at"),
        reason: &["timestamp", "next tuesday"], kept: 4,
    };
    bad_jsonb: Case {
        file: "bad_jsonb.csv", code: ROW, line: Some(6), column: Some("metadata"),
        reason: &["json"], kept: 4,
    };
    varchar_too_long: Case {
        file: "varchar_too_long.csv", code: ROW, line: Some(6), column: Some("username"),
        reason: &["too long", "64"], kept: 4,
    };
    char_too_long: Case {
        file: "char_too_long.csv", code: ROW, line: Some(6), column: Some("country"),
        reason: &["too long", "2"], kept: 4,
    };
    invalid_utf8: Case {
        file: "invalid_utf8.csv", code: ROW, line: Some(6), column: Some("display_name"),
        reason: &["utf-8|utf8", "byte"], kept: 4,
    };
    nul_byte: Case {
        file: "nul_byte.csv", code: ROW, line: Some(6), column: Some("display_name"),
        reason: &["nul|0x00"], kept: 4,
    };
    check_violation: Case {
        file: "check_violation.csv", code: ROW, line: Some(4), column: None,
        reason: &["check constraint", "accounts_role_check", "23514"], kept: 2,
    };
    duplicate_key_in_file: Case {
        file: "duplicate_key.csv", code: ROW, line: Some(7), column: None,
        reason: &["duplicate key", "(email)", "23505"], kept: 4,
    };
    embedded_newlines_before_the_bad_row: Case {
        file: "embedded_newline.csv", code: ROW, line: Some(11), column: Some("birth_date"),
        reason: &["date", "1990-13-01"], kept: 4,
    };
    header_unknown_column: Case {
        file: "header_unknown_column.csv", code: HEADER, line: None, column: Some("nickname"),
        reason: &["unknown column"], kept: 0,
    };
    header_duplicate_column: Case {
        file: "header_duplicate_column.csv", code: HEADER, line: None, column: Some("email"),
        reason: &["duplicate column"], kept: 0,
    };
    header_missing_required_column: Case {
        file: "header_missing_required.csv", code: HEADER, line: None, column: Some("username"),
        reason: &["missing column", "not null"], kept: 0,
    };
    empty_file: Case {
        file: "empty.csv", code: HEADER, line: None, column: None,
        reason: &["empty", "header"], kept: 0,
    };
}
