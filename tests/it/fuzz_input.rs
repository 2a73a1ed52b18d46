//! Property tests of the input path on hostile bytes: the CSV reader, the COPY encoders and,
//! end to end, the binary.
//!
//! In process (no database): arbitrary bytes biased toward CSV structure (quotes,
//! delimiters, CR, LF, backslashes, NUL, invalid UTF-8, a BOM, very long fields) under
//! arbitrary dialects never panic the reader, which yields records or an error naming a
//! line, with line numbers that only grow; records written in any dialect read back field
//! for field (NULL and empty string apart) however the input is split into reads; the CSV
//! payload the encoder makes reads back the same in COPY's default dialect; and the binary
//! encoder either refuses a batch or writes a well-formed COPY binary stream whose values
//! decode to what was read. Whether the server reads accepted values back equal to `psql
//! \copy` is `seed_roundtrip.rs`'s job.
//!
//! With a database: mangled CSV (plain, gzipped, or with its gzip stream mangled) fed to
//! `provisioner seed` ends in exit 0, 1 or 2, never a panic.

use std::io::BufReader;

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use provisioner::Error;
use provisioner::encode::{Encoder, Format, Layout, RowEncoder, select_rows};
use provisioner::read::{self, CsvOptions, CsvReader, Dialect, Record, Source};

/// A field value, `None` for NULL.
type Field = Option<Vec<u8>>;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Pieces that make CSV interesting: structure bytes of every dialect used below, line ends,
/// NUL, invalid and multi-byte UTF-8, a BOM, and plain text.
const PIECES: &[&[u8]] = &[
    b"\"",
    b"\"\"",
    b",",
    b";",
    b"\t",
    b"|",
    b"'",
    b"\\",
    b"\\N",
    b"\r",
    b"\n",
    b"\r\n",
    b"\0",
    b"\xff",
    b"\xc3",
    BOM,
    "é".as_bytes(),
    "😀".as_bytes(),
    b"a",
    b"bc",
    b"1",
    b"-",
    b".",
    b" ",
    b"NULL",
    b"x",
];

fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        40 => prop::sample::select(PIECES).prop_map(<[u8]>::to_vec),
        6 => prop::collection::vec(any::<u8>(), 0..6),
        // A very long run: bigger than any read buffer used here.
        1 => (prop::sample::select(PIECES), 1_000usize..20_000).prop_map(|(p, n)| p.repeat(n)),
    ]
}

/// Bytes with CSV-ish structure, sometimes behind a BOM.
fn csvish_bytes() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(piece(), 0..48)).prop_map(|(bom, pieces)| {
        let mut out = if bom { BOM.to_vec() } else { Vec::new() };
        out.extend(pieces.concat());
        out
    })
}

const ANY_NULLS: &[&[u8]] = &[b"", b"\\N", b"NULL", b"a", b"\""];
const VALID_NULLS: &[&[u8]] = &[b"", b"\\N", b"NULL", "∅".as_bytes()];
/// `None`: the escape is the quote.
const ESCAPES: &[Option<u8>] = &[None, Some(b'\\'), Some(b'"'), Some(b'!'), Some(b',')];

/// Any dialect at all, including ones the command line refuses (delimiter = quote, a line
/// end as delimiter): the library must not panic on them either.
fn any_dialect() -> impl Strategy<Value = Dialect> {
    let byte = prop::sample::select(&b",;\t|\"'\\\0\xffa\r\n"[..]);
    let null = prop::sample::select(ANY_NULLS);
    (byte.clone(), byte.clone(), byte, null).prop_map(|(delimiter, quote, escape, null)| Dialect {
        delimiter,
        quote,
        escape,
        null: null.to_vec(),
    })
}

/// A dialect the command line accepts (`CsvArgs::options`): delimiter and quote differ, no
/// line end among them, and NULL holds neither.
fn valid_dialect() -> impl Strategy<Value = Dialect> {
    let delimiter = prop::sample::select(&b",;\t|x\xff"[..]);
    let quote = prop::sample::select(&b"\"'`\\"[..]);
    let escape = prop::sample::select(ESCAPES);
    let null = prop::sample::select(VALID_NULLS);
    (delimiter, quote, escape, null)
        .prop_filter("delimiter and quote differ", |(d, q, _, _)| d != q)
        .prop_map(|(delimiter, quote, escape, null)| Dialect {
            delimiter,
            quote,
            escape: escape.unwrap_or(quote),
            null: null.to_vec(),
        })
        .prop_filter("NULL holds no delimiter or quote", |d| {
            !d.null.iter().any(|b| [d.delimiter, d.quote].contains(b))
        })
}

/// Read buffer sizes: 1 byte (every byte its own read), odd small sizes, and large.
fn capacity() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1), 2usize..17, Just(8192)]
}

/// A record's fields, first line and last line.
type ReadRecord = (Vec<Field>, u64, u64);

/// Every record `reader` yields, with its lines, until the end or the first error.
fn read_all<R: std::io::BufRead>(mut reader: CsvReader<R>) -> (Vec<ReadRecord>, Option<Error>) {
    let mut out = Vec::new();
    let mut rec = Record::default();
    loop {
        match reader.read(&mut rec) {
            Ok(true) => out.push((fields_of(&rec), rec.line(), rec.end_line())),
            Ok(false) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn fields_of(rec: &Record) -> Vec<Field> {
    (0..rec.len())
        .map(|i| rec.get(i).map(<[u8]>::to_vec))
        .collect()
}

/// Physical lines of `bytes` as an editor counts them: `\r\n`, `\r` and `\n` each end one.
fn line_ends(bytes: &[u8]) -> u64 {
    let mut n = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' || b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            n += 1;
        }
    }
    n
}

/// Proptest with `cases` cases and no regression files (the tree stays clean).
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        max_shrink_iters: 256,
        failure_persistence: None,
        ..Config::default()
    })
}

#[track_caller]
fn run_property<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    if let Err(e) = runner(cases).run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The reader on arbitrary bytes
// ---------------------------------------------------------------------------------------------

/// Never a panic; records or a clean `line N: …` error; lines start at 1, never go back, stay
/// within the input; and the result does not depend on how the input is split into reads.
#[test]
fn reader_on_arbitrary_bytes_yields_records_or_an_error_naming_a_line() {
    run_property(
        2500,
        (csvish_bytes(), any_dialect(), capacity(), any::<bool>()),
        |(bytes, dialect, cap, marker)| {
            let last_line = 1 + line_ends(&bytes);
            let reader = |input| {
                let mut reader = CsvReader::new(input, dialect.clone());
                reader.end_marker(marker);
                reader
            };
            let whole = read_all(reader(BufReader::with_capacity(
                bytes.len().max(1),
                &bytes[..],
            )));
            // Any split of the input into reads gives the same result, a BOM's included, and
            // a `\r\n` or an end-of-data marker cut in two.
            let split = read_all(reader(BufReader::with_capacity(cap, &bytes[..])));
            let (records, error) = &whole;
            let mut prev_end = 0;
            for (fields, line, end_line) in records {
                prop_assert!(!fields.is_empty());
                prop_assert!(
                    *line > prev_end,
                    "line {line} after a record ending on {prev_end}"
                );
                prop_assert!(end_line >= line && *end_line <= last_line);
                prev_end = *end_line;
            }
            if let Some(e) = error {
                let Error::Csv { line, reason } = e else {
                    return Err(TestCaseError::fail(format!("not a CSV error: {e:?}")));
                };
                prop_assert!(
                    *line > prev_end && *line <= last_line,
                    "error on line {line}"
                );
                prop_assert!(!reason.is_empty());
                let prefix = format!("line {line}: ");
                prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
            }
            prop_assert_eq!(&whole.0, &split.0, "records differ with {}-byte reads", cap);
            prop_assert_eq!(
                whole.1.map(|e| e.to_string()),
                split.1.map(|e| e.to_string())
            );
            Ok(())
        },
    );
}

/// A quote that never closes: the reader gives up at its record size cap, naming the line,
/// instead of buffering the rest of the input.
#[test]
fn an_unterminated_quote_stops_at_the_record_size_cap() {
    use std::io::Read;
    let endless = std::io::Cursor::new(&b"a,b\n1,\"x"[..]).chain(std::io::repeat(b'y'));
    let mut reader = CsvReader::new(BufReader::new(endless), Dialect::default());
    let mut rec = Record::default();
    assert!(reader.read(&mut rec).expect("the first record"));
    match reader.read(&mut rec) {
        Err(Error::Csv { line: 2, reason }) => assert!(reason.contains("larger than"), "{reason}"),
        other => panic!("expected a line 2 error, got {other:?}"),
    }
}

/// The header step on arbitrary bytes: a clean error for an input without a header line.
#[test]
fn header_of_arbitrary_bytes_never_panics() {
    run_property(1000, (csvish_bytes(), any_dialect()), |(bytes, dialect)| {
        let opts = CsvOptions {
            dialect,
            columns: None,
            end_marker: false,
        };
        let source = Source::Path("fuzz.csv".into());
        match read::header(&bytes[..], &opts, &source) {
            Ok((mut csv, header)) => {
                prop_assert!(!header.is_empty());
                let mut rec = Record::default();
                while let Ok(true) = csv.read(&mut rec) {}
            }
            Err(Error::Usage(msg)) => {
                prop_assert!(msg.contains("empty"), "{msg}");
                prop_assert!(
                    bytes
                        .iter()
                        .all(|b| BOM.contains(b) || *b == b'\r' || *b == b'\n')
                );
            }
            Err(Error::Csv { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Records in any dialect read back, and so does the encoder's CSV payload
// ---------------------------------------------------------------------------------------------

/// A field value: short structure-heavy bytes, sometimes NULL, now and then very long.
fn field() -> impl Strategy<Value = Field> {
    let bytes = prop_oneof![
        20 => prop::collection::vec(prop::sample::select(PIECES), 0..6).prop_map(|p| p.concat()),
        1 => (prop::sample::select(PIECES), 1_000usize..10_000).prop_map(|(p, n)| p.repeat(n)),
    ];
    prop::option::weighted(0.8, bytes)
}

/// Records of one width (1 to 6 fields), 1 to 12 of them.
fn records() -> impl Strategy<Value = Vec<Vec<Field>>> {
    (1usize..7)
        .prop_flat_map(|width| prop::collection::vec(prop::collection::vec(field(), width), 1..12))
}

/// How the test writes a file: which values it quotes and which line end it uses.
#[derive(Debug, Clone)]
struct FileStyle {
    quote_all: bool,
    bom: bool,
    /// The line end after each record (one kind a file, as COPY requires); the last record
    /// may have none.
    eol: &'static [u8],
    final_eol: bool,
}

fn file_style() -> impl Strategy<Value = FileStyle> {
    const EOLS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(EOLS),
        any::<bool>(),
    )
        .prop_map(|(quote_all, bom, eol, final_eol)| FileStyle {
            quote_all,
            bom,
            eol,
            final_eol,
        })
}

/// A value for one record in `d`, quoted when it must be (or always): the test's own
/// writer, independent of the encoder's. `alone`: the record's only field, which must not
/// make a blank line (skipped by the reader). `\.` is quoted, as COPY writes it: alone on a
/// line it would end the data.
fn write_field(out: &mut Vec<u8>, v: &Field, d: &Dialect, quote_all: bool, alone: bool) {
    let Some(v) = v else {
        out.extend_from_slice(&d.null);
        return;
    };
    let special = |b: &u8| [d.delimiter, d.quote, b'\r', b'\n'].contains(b);
    let needs_quotes = quote_all
        || *v == d.null
        || v.is_empty() && alone
        || v.iter().any(special)
        || v.starts_with(BOM)
        || v == b"\\.";
    if !needs_quotes {
        out.extend_from_slice(v);
        return;
    }
    out.push(d.quote);
    for &b in v {
        if b == d.quote || b == d.escape {
            out.push(d.escape);
        }
        out.push(b);
    }
    out.push(d.quote);
}

/// Whether `rec`, written in `d`, starts its line with `\.` and a line end, which COPY up to
/// PostgreSQL 17 reads as the end of the data (see `CopyReadLineText`).
fn opens_like_the_marker(rec: &[Field], d: &Dialect, style: &FileStyle) -> bool {
    let mut first = Vec::new();
    write_field(&mut first, &rec[0], d, style.quote_all, rec.len() == 1);
    first.starts_with(b"\\.") && matches!(first.get(2), Some(b'\r' | b'\n'))
}

/// `records` as a file in `d`, and the physical line each record starts and ends on.
fn write_file(
    records: &[Vec<Field>],
    d: &Dialect,
    style: &FileStyle,
) -> (Vec<u8>, Vec<(u64, u64)>) {
    let mut out = if style.bom { BOM.to_vec() } else { Vec::new() };
    let mut lines = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let start = 1 + line_ends(&out);
        for (n, v) in rec.iter().enumerate() {
            if n > 0 {
                out.push(d.delimiter);
            }
            write_field(&mut out, v, d, style.quote_all, rec.len() == 1);
        }
        lines.push((start, 1 + line_ends(&out)));
        if i + 1 < records.len() || style.final_eol {
            out.extend_from_slice(style.eol);
        }
    }
    (out, lines)
}

/// A lone NULL in a one-field record with an empty NULL string is a blank line, which the
/// reader skips (as COPY would refuse it): make it the empty string instead.
fn no_blank_records(mut records: Vec<Vec<Field>>, d: &Dialect) -> Vec<Vec<Field>> {
    for rec in &mut records {
        if rec.len() == 1 && rec[0].is_none() && d.null.is_empty() {
            rec[0] = Some(Vec::new());
        }
    }
    records
}

/// `records` but those of one NULL field: in a payload, such a row is an empty line, which
/// COPY reads as one NULL and the tool's reader skips as blank (it reads input, not payloads).
fn without_lone_nulls(records: &[Vec<Field>]) -> Vec<Vec<Field>> {
    records
        .iter()
        .filter(|r| r[..] != [None])
        .cloned()
        .collect()
}

/// Reads `bytes` to the end, failing the case on any error; `marker`: a line holding only
/// `\.` ends the data, as COPY reads up to PostgreSQL 17.
fn read_ok(
    bytes: &[u8],
    d: &Dialect,
    cap: usize,
    marker: bool,
) -> Result<Vec<Record>, TestCaseError> {
    let mut reader = CsvReader::new(BufReader::with_capacity(cap, bytes), d.clone());
    reader.end_marker(marker);
    let mut out = Vec::new();
    let mut rec = Record::default();
    loop {
        match reader.read(&mut rec) {
            Ok(true) => out.push(rec.clone()),
            Ok(false) => return Ok(out),
            Err(e) => return Err(TestCaseError::fail(format!("read error: {e}"))),
        }
    }
}

/// COPY's line (as its error context counts: `\n` bytes, quoted ones included) on which each
/// row of an all-quoted default-dialect payload starts.
fn copy_lines_of(records: &[Vec<Field>]) -> Vec<u64> {
    let mut line = 1;
    records
        .iter()
        .map(|rec| {
            let at = line;
            line += 1 + rec
                .iter()
                .flatten()
                .map(|v| v.iter().filter(|&&b| b == b'\n').count() as u64)
                .sum::<u64>();
            at
        })
        .collect()
}

#[test]
fn records_in_any_dialect_read_back_and_their_csv_payload_reparses() {
    let strategy = (
        records(),
        valid_dialect(),
        file_style(),
        capacity(),
        capacity(),
        any::<bool>(),
    );
    run_property(1500, strategy, |(records, d, style, cap, cap2, marker)| {
        let records = no_blank_records(records, &d);
        // With `\` as the quote, a quoted first field that begins with `.` and a line end
        // starts its line with `\.` and a line end: COPY up to PostgreSQL 17 ends the data
        // there, quote or not, so no file can hold that record for such a server.
        prop_assume!(
            !marker
                || !records
                    .iter()
                    .any(|rec| opens_like_the_marker(rec, &d, &style))
        );
        let (file, lines) = write_file(&records, &d, &style);
        let read = read_ok(&file, &d, cap, marker)?;
        prop_assert_eq!(read.len(), records.len());
        for ((rec, want), (line, end_line)) in read.iter().zip(&records).zip(&lines) {
            prop_assert_eq!(&fields_of(rec), want);
            prop_assert_eq!((rec.line(), rec.end_line()), (*line, *end_line));
        }

        // The CSV payload, in COPY's default dialect, gives back the same fields, also to a
        // server whose COPY ends the data at a line holding only `\.`.
        let width = records[0].len();
        let encoder = RowEncoder::new(vec![None; width], true);
        let (mut payload, mut layout) = (Vec::new(), Layout::default());
        prop_assert_eq!(
            encoder.encode(&read, &mut payload, &mut layout),
            Format::Csv
        );
        let again = read_ok(&payload, &Dialect::default(), cap2, true)?;
        let again: Vec<Vec<Field>> = again.iter().map(fields_of).collect();
        prop_assert_eq!(&again, &without_lone_nulls(&records));
        prop_assert_eq!(&layout.copy_lines, &copy_lines_of(&records));
        check_row_ends(&layout, records.len(), payload.len())?;
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 3. The binary encoder: refuses, or writes a well-formed COPY binary stream
// ---------------------------------------------------------------------------------------------

const ENCODERS: [Encoder; 14] = [
    Encoder::Bool,
    Encoder::Int2,
    Encoder::Int4,
    Encoder::Int8,
    Encoder::Float4,
    Encoder::Float8,
    Encoder::Numeric,
    Encoder::Text,
    Encoder::Json,
    Encoder::Jsonb,
    Encoder::Uuid,
    Encoder::Date,
    Encoder::Timestamp,
    Encoder::Timestamptz,
];

/// Bytes that spell numbers, dates, times and uuids, wrong as often as right.
const TYPED_PIECES: &[&[u8]] = &[
    b"0",
    b"1",
    b"7",
    b"9",
    b"12",
    b"2024",
    b"-",
    b"+",
    b".",
    b"e",
    b"E",
    b":",
    b"T",
    b"Z",
    b" ",
    b"t",
    b"f",
    b"true",
    b"no",
    b"on",
    b"a",
    b"F",
    b"x",
    b"00",
    b"99",
    b"-05",
    b"+05:30",
    b"9223372036854775807",
    b"9223372036854775808",
    b"32768",
    b"2147483648",
    b"1e400",
    b"NaN",
    b"Infinity",
    b"\xff",
    b"\0",
    b"{}",
    b"\"",
];

const BOOLS: &[&str] = &["t", "FALSE", "yes", "Off", "1", "0"];

/// A value for `enc`: a well-formed spelling, or typed pieces put together at random.
fn typed_value(enc: Encoder) -> BoxedStrategy<Vec<u8>> {
    let soup = prop::collection::vec(prop::sample::select(TYPED_PIECES), 0..10)
        .prop_map(|p| p.concat())
        .boxed();
    let good: BoxedStrategy<String> = match enc {
        Encoder::Bool => prop::sample::select(BOOLS)
            .prop_map(String::from)
            .boxed(),
        Encoder::Int2 | Encoder::Int4 | Encoder::Int8 => any::<i64>()
            .prop_map(|n| format!("{}", n >> (n as u32 % 64)))
            .boxed(),
        Encoder::Float4 | Encoder::Float8 => (any::<f64>(), any::<bool>())
            .prop_map(|(x, exp)| if exp { format!("{x:e}") } else { format!("{x}") })
            .boxed(),
        Encoder::Numeric => ("[+-]?[0-9]{0,30}", "(\\.[0-9]{0,30})?")
            .prop_map(|(i, f)| i + &f)
            .boxed(),
        Encoder::Uuid => "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
            .prop_map(String::from)
            .boxed(),
        Encoder::Date => "[0-9]{4}-[01][0-9]-[0-3][0-9]".prop_map(String::from).boxed(),
        Encoder::Timestamp | Encoder::Timestamptz => {
            "[0-9]{4}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9](:[0-6][0-9](\\.[0-9]{1,7})?)?(Z|[+-][01][0-9](:?[0-5][0-9])?)?"
                .prop_map(String::from)
                .boxed()
        }
        Encoder::Text | Encoder::Json | Encoder::Jsonb => any::<String>().boxed(),
    };
    prop_oneof![3 => good.prop_map(String::into_bytes), 2 => soup].boxed()
}

/// A column: its encoder (or none) and its values.
#[derive(Debug, Clone)]
struct Column {
    encoder: Option<Encoder>,
    values: Vec<Field>,
}

/// A batch: 1 to 6 columns of `rows` values each, NULLs among them.
fn batch() -> impl Strategy<Value = Vec<Column>> {
    (1usize..10).prop_flat_map(|rows| {
        let column = prop::option::weighted(0.95, prop::sample::select(&ENCODERS[..]))
            .prop_flat_map(move |encoder| {
                let value = match encoder {
                    Some(e) => typed_value(e),
                    None => typed_value(Encoder::Text),
                };
                prop::collection::vec(prop::option::weighted(0.85, value), rows)
                    .prop_map(move |values| Column { encoder, values })
            });
        prop::collection::vec(column, 1..7)
    })
}

/// A big-endian integer of `N` bytes at `at`, advancing it.
fn take<const N: usize>(buf: &[u8], at: &mut usize) -> Result<[u8; N], TestCaseError> {
    let bytes = buf
        .get(*at..*at + N)
        .ok_or_else(|| TestCaseError::fail(format!("stream ends at {} of {}", *at, buf.len())))?;
    *at += N;
    Ok(bytes.try_into().expect("N bytes"))
}

/// Parses a COPY binary stream: signature, flags, extension, then per row the field count
/// and each field's length and bytes, then the trailer and nothing after it.
fn parse_binary(buf: &[u8]) -> Result<Vec<Vec<Field>>, TestCaseError> {
    prop_assert!(buf.starts_with(b"PGCOPY\n\xff\r\n\0"), "no signature");
    let mut at = 11;
    prop_assert_eq!(i32::from_be_bytes(take(buf, &mut at)?), 0, "flags");
    let ext = i32::from_be_bytes(take(buf, &mut at)?);
    prop_assert!(ext >= 0);
    at += ext as usize;
    let mut rows = Vec::new();
    loop {
        let count = i16::from_be_bytes(take(buf, &mut at)?);
        if count == -1 {
            break;
        }
        prop_assert!(count >= 0, "field count {}", count);
        let mut row = Vec::new();
        for _ in 0..count {
            let len = i32::from_be_bytes(take(buf, &mut at)?);
            if len == -1 {
                row.push(None);
                continue;
            }
            prop_assert!(len >= 0, "field length {}", len);
            let end = at + len as usize;
            prop_assert!(end <= buf.len(), "field runs past the end");
            row.push(Some(buf[at..end].to_vec()));
            at = end;
        }
        rows.push(row);
    }
    prop_assert_eq!(at, buf.len(), "bytes after the trailer");
    Ok(rows)
}

/// What `text` means as a decimal, canonically: sign only when non-zero, integer part
/// without leading zeros, the fraction's digits all kept (they are the scale).
fn canonical_decimal(text: &str) -> String {
    let (neg, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let int = int.trim_start_matches('0');
    let zero = int.is_empty() && frac.bytes().all(|b| b == b'0');
    let mut out = String::new();
    if neg && !zero {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// A binary numeric (ndigits, weight, sign, dscale, base-10000 digits) as decimal text.
fn decode_numeric(v: &[u8]) -> Result<String, TestCaseError> {
    let mut at = 0;
    let ndigits = i16::from_be_bytes(take(v, &mut at)?);
    let weight = i16::from_be_bytes(take(v, &mut at)?);
    let sign = u16::from_be_bytes(take(v, &mut at)?);
    let dscale = i16::from_be_bytes(take(v, &mut at)?);
    prop_assert!(ndigits >= 0 && dscale >= 0 && (sign == 0 || sign == 0x4000));
    prop_assert_eq!(v.len(), 8 + 2 * ndigits as usize, "numeric length");
    let mut digits = Vec::new();
    for _ in 0..ndigits {
        let d = i16::from_be_bytes(take(v, &mut at)?);
        prop_assert!((0..10_000).contains(&d), "numeric digit {}", d);
        digits.push(d);
    }
    prop_assert!(
        digits.first() != Some(&0) && digits.last() != Some(&0),
        "unstripped zeros"
    );
    let group = |w: i32| -> i16 {
        let i = i32::from(weight) - w;
        if i < 0 {
            0
        } else {
            digits.get(i as usize).copied().unwrap_or(0)
        }
    };
    let mut int = String::new();
    for w in (0..=i32::from(weight).max(0)).rev() {
        if int.is_empty() {
            int = group(w).to_string();
        } else {
            int.push_str(&format!("{:04}", group(w)));
        }
    }
    let mut frac = String::new();
    let mut w = -1;
    while frac.len() < dscale as usize {
        frac.push_str(&format!("{:04}", group(w)));
        w -= 1;
    }
    let rest: String = frac[dscale as usize..].to_string();
    prop_assert!(rest.bytes().all(|b| b == b'0'), "digits beyond the scale");
    frac.truncate(dscale as usize);
    let mut out = if sign == 0x4000 {
        "-".to_string()
    } else {
        String::new()
    };
    out.push_str(&int);
    if dscale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

/// One binary value checked against the text it came from.
fn check_value(enc: Encoder, text: &[u8], bin: &[u8]) -> Result<(), TestCaseError> {
    let s = String::from_utf8_lossy(text);
    let plain = s.strip_prefix('+').unwrap_or(&s);
    match enc {
        Encoder::Text | Encoder::Json => prop_assert_eq!(bin, text),
        Encoder::Jsonb => {
            prop_assert_eq!(bin.first(), Some(&1u8), "jsonb version byte");
            prop_assert_eq!(&bin[1..], text);
        }
        Encoder::Bool => {
            let want = matches!(
                s.to_ascii_lowercase().as_str(),
                "t" | "true" | "y" | "yes" | "on" | "1"
            );
            prop_assert_eq!(bin, &[u8::from(want)][..]);
        }
        Encoder::Int2 => {
            prop_assert_eq!(bin, &plain.parse::<i16>().map_err(fail)?.to_be_bytes()[..])
        }
        Encoder::Int4 => {
            prop_assert_eq!(bin, &plain.parse::<i32>().map_err(fail)?.to_be_bytes()[..])
        }
        Encoder::Int8 => {
            prop_assert_eq!(bin, &plain.parse::<i64>().map_err(fail)?.to_be_bytes()[..])
        }
        Encoder::Float4 => {
            let x: f32 = s.parse().map_err(fail)?;
            prop_assert!(x.is_finite());
            prop_assert_eq!(bin, &x.to_be_bytes()[..]);
        }
        Encoder::Float8 => {
            let x: f64 = s.parse().map_err(fail)?;
            prop_assert!(x.is_finite());
            prop_assert_eq!(bin, &x.to_be_bytes()[..]);
        }
        Encoder::Numeric => prop_assert_eq!(decode_numeric(bin)?, canonical_decimal(&s)),
        Encoder::Uuid => {
            let hex: String = s.chars().filter(|&c| c != '-').collect();
            let want: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(fail)?;
            prop_assert_eq!(bin, &want[..]);
        }
        Encoder::Date => {
            let days = days_since_2000(&s).ok_or_else(|| fail(&s))?;
            prop_assert_eq!(bin, &(days as i32).to_be_bytes()[..]);
        }
        Encoder::Timestamp | Encoder::Timestamptz => {
            let micros = timestamp_micros(&s).ok_or_else(|| fail(&s))?;
            prop_assert_eq!(bin, &micros.to_be_bytes()[..]);
        }
    }
    Ok(())
}

/// Days from 2000-01-01 to `YYYY-MM-DD` (the start of `text`), counted year by year: slow
/// and plain, unlike the encoder's closed form.
fn days_since_2000(text: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let year_days = |y: i64| if leap(y) { 366 } else { 365 };
    let mut days: i64 = if y >= 2000 {
        (2000..y).map(year_days).sum()
    } else {
        -(y..2000).map(year_days).sum::<i64>()
    };
    const MONTH_DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let before = usize::try_from(m - 1).ok()?;
    days += MONTH_DAYS.get(..before)?.iter().sum::<i64>() + i64::from(m > 2 && leap(y));
    Some(days + d - 1)
}

/// Microseconds from 2000-01-01 00:00 UTC to `YYYY-MM-DD[T ]HH:MM[:SS[.f]][offset]`.
fn timestamp_micros(text: &str) -> Option<i64> {
    let days = days_since_2000(text)?;
    let rest = text.get(11..)?;
    let time_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
        .unwrap_or(rest.len());
    let (time, zone) = rest.split_at(time_len);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m) = (parts.next()??, parts.next()??);
    let sec = parts.next().unwrap_or(Some(0))?;
    let micros = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse::<i64>().ok()?
    };
    let offset = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits: String = zone[1..].chars().filter(char::is_ascii_digit).collect();
            let oh = digits.get(..2)?.parse::<i64>().ok()?;
            let om = digits
                .get(2..)
                .filter(|m| !m.is_empty())
                .map_or(Some(0), |m| m.parse().ok())?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some((days * 86_400 + h * 3600 + m * 60 + sec - offset) * 1_000_000 + micros)
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("accepted a value the reference refuses: {e}"))
}

/// Records of `columns` as the reader makes them (written all-quoted in COPY's dialect).
fn records_of(columns: &[Column]) -> Result<Vec<Record>, TestCaseError> {
    let rows: Vec<Vec<Field>> = (0..columns[0].values.len())
        .map(|r| columns.iter().map(|c| c.values[r].clone()).collect())
        .collect();
    let style = FileStyle {
        quote_all: true,
        bom: false,
        eol: b"\n",
        final_eol: true,
    };
    let d = Dialect::default();
    let rows = no_blank_records(rows, &d);
    read_ok(&write_file(&rows, &d, &style).0, &d, 8192, false)
}

/// The encoder sends `fields` (record field index, encoder) of `records` in binary format
/// exactly when every value has an encoder that accepts it, and then the stream holds them.
fn check_encoding(
    records: &[Record],
    fields: Vec<(usize, Option<Encoder>)>,
) -> Result<(), TestCaseError> {
    let accepted = |enc: Option<Encoder>, v: Option<&[u8]>| match (enc, v) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(e), Some(v)) => e.encode(v, &mut Vec::new()).is_some(),
    };
    let all_accepted = fields.iter().all(|(_, e)| e.is_some())
        && records
            .iter()
            .all(|r| fields.iter().all(|&(i, e)| accepted(e, r.get(i))));
    let encoder = RowEncoder::project(fields.clone(), true);
    let (mut out, mut layout) = (Vec::new(), Layout::default());
    let format = encoder.encode(records, &mut out, &mut layout);
    prop_assert_eq!(format == Format::Binary, all_accepted);
    if format == Format::Csv {
        check_row_ends(&layout, records.len(), out.len())?;
        let back: Vec<Vec<Field>> = read_ok(&out, &Dialect::default(), 8192, true)?
            .iter()
            .map(fields_of)
            .collect();
        let want: Vec<Vec<Field>> = records
            .iter()
            .map(|r| {
                fields
                    .iter()
                    .map(|&(i, _)| r.get(i).map(<[u8]>::to_vec))
                    .collect()
            })
            .collect();
        prop_assert_eq!(back, without_lone_nulls(&want));
        return Ok(());
    }
    prop_assert!(layout.copy_lines.is_empty());
    check_row_ends(&layout, records.len(), out.len() - 2)?;
    let rows = parse_binary(&out)?;
    prop_assert_eq!(rows.len(), records.len());
    for (row, rec) in rows.iter().zip(records) {
        prop_assert_eq!(row.len(), fields.len(), "fields in a row");
        for (bin, &(i, enc)) in row.iter().zip(&fields) {
            match (bin, rec.get(i)) {
                (None, None) => {}
                (Some(bin), Some(text)) => check_value(enc.expect("all encodable"), text, bin)?,
                (bin, text) => {
                    return Err(TestCaseError::fail(format!(
                        "NULL not kept: binary {bin:?}, text {text:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// One end per row, in order, the last where the rows end (before binary's trailer).
fn check_row_ends(layout: &Layout, rows: usize, end: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(layout.row_ends.len(), rows, "row ends");
    prop_assert!(
        layout.row_ends.windows(2).all(|w| w[0] < w[1]),
        "row ends out of order"
    );
    if let Some(&last) = layout.row_ends.last() {
        prop_assert_eq!(last, end, "the last row's end");
    }
    Ok(())
}

#[test]
fn binary_encoder_refuses_or_writes_a_well_formed_stream() {
    run_property(2000, batch(), |columns| {
        let records = records_of(&columns)?;
        let fields: Vec<(usize, Option<Encoder>)> =
            columns.iter().map(|c| c.encoder).enumerate().collect();
        check_encoding(&records, fields)
    });
}

/// The projection purge uses: some fields of wider records, in any order, even twice.
#[test]
fn projected_fields_encode_the_same_way() {
    let strategy = batch().prop_flat_map(|columns| {
        let n = columns.len();
        let picks = prop::collection::vec(0..n, 1..=n + 1);
        (Just(columns), picks)
    });
    run_property(800, strategy, |(columns, picks)| {
        let records = records_of(&columns)?;
        let fields = picks.iter().map(|&i| (i, columns[i].encoder)).collect();
        check_encoding(&records, fields)
    });
}

/// Picking rows out of an encoded batch (what isolating the rows the server refuses does)
/// gives the very payload and layout that encoding those rows alone in the batch's format
/// gives.
#[test]
fn selected_rows_are_the_rows_encoded_alone() {
    let strategy = batch().prop_flat_map(|columns| {
        let rows = columns[0].values.len();
        (Just(columns), prop::collection::vec(any::<bool>(), rows))
    });
    run_property(1000, strategy, |(columns, mask)| {
        let records = records_of(&columns)?;
        let encoders: Vec<Option<Encoder>> = columns.iter().map(|c| c.encoder).collect();
        let (mut out, mut layout) = (Vec::new(), Layout::default());
        let format =
            RowEncoder::new(encoders.clone(), true).encode(&records, &mut out, &mut layout);
        let keep: Vec<usize> = (0..records.len()).filter(|&i| mask[i]).collect();
        let mut picked = Vec::new();
        let picked_layout = select_rows(format, &out, &layout, &keep, &mut picked);

        let alone: Vec<Record> = keep.iter().map(|&i| records[i].clone()).collect();
        let (mut want, mut want_layout) = (Vec::new(), Layout::default());
        let want_format = RowEncoder::new(encoders, format == Format::Binary).encode(
            &alone,
            &mut want,
            &mut want_layout,
        );
        prop_assert_eq!(want_format, format);
        prop_assert_eq!(picked, want);
        prop_assert_eq!(picked_layout, want_layout);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 4. End to end: mangled CSV never panics the binary
// ---------------------------------------------------------------------------------------------

/// One change to a file's bytes; positions are fractions of its length.
#[derive(Debug, Clone)]
enum Mangle {
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Duplicate(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    let at = any::<prop::sample::Index>;
    prop_oneof![
        4 => (at(), piece()).prop_map(|(a, p)| Mangle::Insert(a, p)),
        2 => (at(), 1usize..40).prop_map(|(a, n)| Mangle::Delete(a, n)),
        1 => (at(), 1usize..200).prop_map(|(a, n)| Mangle::Duplicate(a, n)),
        1 => at().prop_map(Mangle::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mangle) {
    let pos = |a: &prop::sample::Index, len: usize| if len == 0 { 0 } else { a.index(len + 1) };
    match m {
        Mangle::Insert(a, p) => {
            let at = pos(a, bytes.len());
            bytes.splice(at..at, p.iter().copied());
        }
        Mangle::Delete(a, n) => {
            let at = pos(a, bytes.len());
            bytes.drain(at..(at + n).min(bytes.len()));
        }
        Mangle::Duplicate(a, n) => {
            let at = pos(a, bytes.len());
            let copy = bytes[at..(at + n).min(bytes.len())].to_vec();
            bytes.splice(at..at, copy);
        }
        Mangle::Truncate(a) => bytes.truncate(pos(a, bytes.len())),
    }
}

/// Flags that change how the binary reads and sends the file.
fn flags() -> impl Strategy<Value = Vec<&'static str>> {
    const FORMATS: &[&str] = &["auto", "csv", "binary"];
    const BATCHES: &[&str] = &["1", "2", "3", "5000"];
    const DIALECTS: &[&[&str]] = &[
        &[],
        &["--delimiter", ";"],
        &["--escape", "\\"],
        &["--null", "\\N"],
    ];
    let (format, batch, dialect) = (
        prop::sample::select(FORMATS),
        prop::sample::select(BATCHES),
        prop::sample::select(DIALECTS),
    );
    (format, batch, dialect).prop_map(|(format, batch, dialect)| {
        let mut args = vec![
            "--format",
            format,
            "--batch-size",
            batch,
            "--connections",
            "2",
        ];
        args.extend_from_slice(dialect);
        args
    })
}

#[test]
fn mangled_csv_never_panics_the_binary() {
    let db = TestDb::with_accounts();
    // The fixture's first 12 records: Unicode, quoted commas and quotes, JSON, NULLs.
    let text = String::from_utf8(fixture_bytes()).expect("the fixture is UTF-8");
    let lines = physical_lines(&text);
    let header_and_rows = parse_csv(&text);
    let end = header_and_rows[13].line as usize - 1;
    let base = lines[..end].join("\n") + "\n";
    // 0: plain; 1: the mangled CSV gzipped; 2: the gzip stream mangled (its magic kept).
    let strategy = (prop::collection::vec(mangle(), 1..4), flags(), 0..3);
    let mut runner = TestRunner::new(Config {
        cases: 40,
        max_shrink_iters: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(mangles, args, compress)| {
        let mut bytes = base.clone().into_bytes();
        if compress == 2 {
            let gz = gzip(&bytes);
            bytes = gz[2..].to_vec();
            mangles.iter().for_each(|m| apply(&mut bytes, m));
            bytes.splice(0..0, gz[..2].iter().copied());
        } else {
            mangles.iter().for_each(|m| apply(&mut bytes, m));
            if compress == 1 {
                bytes = gzip(&bytes);
            }
        }
        db.execute("TRUNCATE accounts");
        let file = db.write("mangled.csv", &bytes);
        let run = db.seed(&file, &args);
        prop_assert!(
            [0, 1, 2].contains(&run.code) && !run.stderr.contains("panicked"),
            "exit {} for {:?} (compression {}) with {:?}:\n{}",
            run.code,
            String::from_utf8_lossy(&bytes),
            compress,
            args,
            run.stderr
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
