//! Splitting the input into records exactly as PostgreSQL's `COPY … (FORMAT csv)` would.
//!
//! Why not the csv crate: it cannot tell an unquoted empty field (NULL to Postgres) from a
//! quoted `""` (an empty string), and that difference is data. This reader keeps it, follows
//! COPY's rules for quotes and escapes (a quote may open anywhere in a field, `\N` is text),
//! accepts a UTF-8 BOM and `\n`, `\r\n` or `\r` line ends, skips blank lines (in a one-column
//! file a blank line is a row, as COPY reads it), and tracks the physical line (as an editor
//! counts it) where every record starts.

use std::io::{self, BufRead};

use super::source::Source;
use crate::error::Error;

/// A record larger than this is refused rather than buffered: an unterminated quote must not
/// turn a constant-memory reader into one that swallows the whole file.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// COPY's CSV dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: u8,
    pub escape: u8,
    /// An unquoted field equal to this is NULL (COPY's `NULL` option; empty by default).
    pub null: Vec<u8>,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
        }
    }
}

/// How to read the input: COPY's dialect options, and the column names when the file has
/// no header line.
#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    pub dialect: Dialect,
    /// `--no-header --columns a,b,c`: the names, and every line is data.
    pub columns: Option<Vec<String>>,
}

impl CsvOptions {
    /// How the run records this way of reading (its `dialect` option, see the ledger): a
    /// resume must read the input the same way.
    pub fn recorded(&self) -> serde_json::Value {
        let d = &self.dialect;
        let byte = |b: u8| char::from(b).to_string();
        serde_json::json!({
            "delimiter": byte(d.delimiter),
            "quote": byte(d.quote),
            "escape": byte(d.escape),
            "null": String::from_utf8_lossy(&d.null),
            "columns": self.columns,
        })
    }
}

/// Opens the CSV reader on `reader` and returns it with the header: the first record, or
/// the names given for a file without one. An input with no header line is an error.
pub fn header<R: BufRead>(
    reader: R,
    opts: &CsvOptions,
    source: &Source,
) -> Result<(CsvReader<R>, Record), Error> {
    let mut csv = CsvReader::new(reader, opts.dialect.clone());
    let mut header = Record::default();
    match &opts.columns {
        Some(names) => {
            for name in names {
                if !header.data.is_empty() {
                    header.raw.push(opts.dialect.delimiter);
                }
                header.data.extend_from_slice(name.as_bytes());
                header.ends.push(header.data.len());
                header.nulls.push(false);
                quote_into(&mut header.raw, name.as_bytes(), &opts.dialect);
            }
        }
        None => {
            // The header's own text heads a rejects file; one line, so always kept.
            csv.keep_raw(true);
            let found = csv.read(&mut header)?;
            csv.keep_raw(false);
            if !found {
                return Err(Error::Usage(format!(
                    "{} is empty: expected a header line (or --no-header --columns)",
                    source.display()
                )));
            }
        }
    }
    csv.set_width(header.len());
    Ok((csv, header))
}

/// Appends `value` to `out` as one field of `dialect`: quoted, with the quote and escape
/// bytes escaped, so that the reader gives back exactly `value`.
pub fn quote_into(out: &mut Vec<u8>, value: &[u8], dialect: &Dialect) {
    out.push(dialect.quote);
    for &b in value {
        if b == dialect.quote || b == dialect.escape {
            out.push(dialect.escape);
        }
        out.push(b);
    }
    out.push(dialect.quote);
}

/// One record, reused from one read to the next so the hot loop does not allocate.
#[derive(Debug, Default, Clone)]
pub struct Record {
    data: Vec<u8>,
    ends: Vec<usize>,
    nulls: Vec<bool>,
    line: u64,
    end_line: u64,
    /// The record's text as it was in the input, without its line end; only kept when the
    /// reader is asked to ([`CsvReader::keep_raw`]), for the rejects file.
    raw: Vec<u8>,
    /// The input ended inside this record's quotes (see [`CsvReader::hand_over_unterminated`]).
    unterminated: bool,
}

impl Record {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The field's bytes, or `None` when it is NULL.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if self.nulls[i] {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.data[start..self.ends[i]])
    }

    /// Whether the input ended inside a quote this record opened: its fields are whatever
    /// was read, COPY would refuse it.
    pub fn unterminated(&self) -> bool {
        self.unterminated
    }

    /// The record's text as it was in the input (empty unless the reader keeps it).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Physical line where the record starts (1-based).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Physical line where the record ends (differs from `line` when a quoted field spans lines).
    pub fn end_line(&self) -> u64 {
        self.end_line
    }

    /// Feeds the record's fields, NULLs included, to a hash of the batch's content.
    pub fn hash_into(&self, hasher: &mut xxhash_rust::xxh3::Xxh3) {
        hasher.update(&self.data);
        for (&end, &null) in self.ends.iter().zip(&self.nulls) {
            hasher.update(&((end as u64) | (u64::from(null) << 63)).to_le_bytes());
        }
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.nulls.clear();
        self.raw.clear();
        self.unterminated = false;
    }
}

enum Line {
    Record,
    /// A line with no bytes at all: skipped, where COPY would fail on it.
    Blank,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Outside quotes.
    Unquoted,
    /// Inside quotes.
    Quoted,
    /// Inside quotes, just after the escape byte (which may also be the quote byte).
    AfterEscape,
}

/// Splits a byte stream into records.
pub struct CsvReader<R> {
    input: R,
    dialect: Dialect,
    /// Physical line of the next byte.
    line: u64,
    prev_cr: bool,
    at_start: bool,
    keep_raw: bool,
    hand_over_unterminated: bool,
    /// Bytes taken from the input while looking for a BOM that was not one, parsed first.
    pushback: Vec<u8>,
    /// A one-column file: a blank line is a row whose field is empty (NULL by default).
    blank_is_row: bool,
}

impl<R: BufRead> CsvReader<R> {
    pub fn new(input: R, dialect: Dialect) -> Self {
        CsvReader {
            input,
            dialect,
            line: 1,
            prev_cr: false,
            at_start: true,
            keep_raw: false,
            hand_over_unterminated: false,
            pushback: Vec::new(),
            blank_is_row: false,
        }
    }

    /// Records have `width` fields. With one, a blank line is a row, as COPY reads it (one
    /// empty unquoted field); with more, COPY would refuse it and it is skipped.
    pub fn set_width(&mut self, width: usize) {
        self.blank_is_row = width == 1;
    }

    /// Keep each record's text as it was in the input ([`Record::raw`]); off by default,
    /// which keeps the hot loop free of the copy.
    pub fn keep_raw(&mut self, on: bool) {
        self.keep_raw = on;
    }

    /// Hand over a record whose quote the input never closes, marked
    /// [`Record::unterminated`] (with [`CsvReader::keep_raw`], the rest of the input is its
    /// text), instead of failing the read: reject mode sets it aside.
    pub fn hand_over_unterminated(&mut self, on: bool) {
        self.hand_over_unterminated = on;
    }

    /// Reads the next record into `rec` (blank lines skipped unless the file has one
    /// column); `Ok(false)` at the end of the input.
    pub fn read(&mut self, rec: &mut Record) -> Result<bool, Error> {
        loop {
            rec.clear();
            match self.read_raw(rec)? {
                None => return Ok(false),
                Some(Line::Blank) if !self.blank_is_row => continue,
                Some(_) => return Ok(true),
            }
        }
    }

    fn read_raw(&mut self, rec: &mut Record) -> Result<Option<Line>, Error> {
        if std::mem::take(&mut self.at_start) {
            self.take_bom()?;
        }
        let d = &self.dialect;
        let (delim, quote, escape, null) = (d.delimiter, d.quote, d.escape, &d.null[..]);
        let mut state = State::Unquoted;
        let mut field_start = 0usize;
        let mut saw_quote = false;
        let mut started = false;
        let mut blank = true;
        rec.line = self.line;
        loop {
            let pushed = std::mem::take(&mut self.pushback);
            let filled = if pushed.is_empty() {
                self.input.fill_buf()
            } else {
                Ok(&pushed[..])
            };
            let buf = match filled {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Csv {
                        line: self.line,
                        reason: format!("read error: {e}"),
                    });
                }
            };
            if buf.is_empty() {
                let in_quotes = match state {
                    State::Unquoted => false,
                    State::Quoted => true,
                    State::AfterEscape => escape != quote,
                };
                if in_quotes && self.hand_over_unterminated {
                    finish_field(rec, field_start, saw_quote, null);
                    rec.end_line = self.line;
                    rec.unterminated = true;
                    return Ok(Some(Line::Record));
                }
                if in_quotes {
                    return Err(Error::Csv {
                        line: rec.line,
                        reason: "unterminated quoted field (a quote opened here is never closed)"
                            .into(),
                    });
                }
                if !started {
                    return Ok(None);
                }
                finish_field(rec, field_start, saw_quote, null);
                rec.end_line = self.line;
                return Ok(Some(Line::Record));
            }
            let mut consumed = 0;
            let mut done = false;
            // The part of this chunk that belongs to the record, for `raw`.
            let (mut raw_from, mut raw_to) = (if started { 0 } else { buf.len() }, None);
            for &b in buf {
                consumed += 1;
                // Line counting is independent of quoting: `\r\n` is one line end.
                let newline = b == b'\n' && !self.prev_cr || b == b'\r';
                self.prev_cr = b == b'\r';
                if !started {
                    if b == b'\n' && !newline {
                        // The `\n` of a `\r\n` that ended the previous record.
                        continue;
                    }
                    started = true;
                    rec.line = self.line;
                    raw_from = consumed - 1;
                }
                if newline {
                    self.line += 1;
                }
                let terminator = b == b'\n' || b == b'\r';
                if !terminator {
                    blank = false;
                }
                if state == State::AfterEscape {
                    if b == quote || b == escape {
                        // An escaped quote or escape byte: literal, still inside quotes.
                        rec.data.push(b);
                        state = State::Quoted;
                        continue;
                    }
                    if escape == quote {
                        // The quote byte closed the quoted section; `b` is outside it.
                        state = State::Unquoted;
                    } else {
                        // A lone escape byte is literal; `b` is still inside quotes.
                        rec.data.push(escape);
                        state = State::Quoted;
                    }
                }
                match state {
                    State::Unquoted => {
                        if b == delim {
                            finish_field(rec, field_start, saw_quote, null);
                            field_start = rec.data.len();
                            saw_quote = false;
                        } else if b == quote {
                            saw_quote = true;
                            state = State::Quoted;
                        } else if terminator {
                            finish_field(rec, field_start, saw_quote, null);
                            rec.end_line = self.line - 1;
                            raw_to = Some(consumed - 1);
                            done = true;
                            break;
                        } else {
                            rec.data.push(b);
                        }
                    }
                    State::Quoted | State::AfterEscape => {
                        if b == escape {
                            state = State::AfterEscape;
                        } else if b == quote {
                            state = State::Unquoted;
                        } else {
                            rec.data.push(b);
                        }
                    }
                }
            }
            if self.keep_raw && raw_from < consumed {
                rec.raw
                    .extend_from_slice(&buf[raw_from..raw_to.unwrap_or(consumed)]);
            }
            if pushed.is_empty() {
                self.input.consume(consumed);
            } else {
                self.pushback = pushed[consumed..].to_vec();
            }
            if done {
                return Ok(Some(if blank { Line::Blank } else { Line::Record }));
            }
            if rec.data.len() > MAX_RECORD_BYTES {
                return Err(Error::Csv {
                    line: rec.line,
                    reason: format!(
                        "record is larger than {} MiB (an unterminated quote?)",
                        MAX_RECORD_BYTES >> 20
                    ),
                });
            }
        }
    }
}

impl<R: BufRead> CsvReader<R> {
    /// Drops a UTF-8 BOM at the start of the input, however the reads split it; bytes that
    /// began like one but were not are kept for the parser.
    fn take_bom(&mut self) -> Result<(), Error> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let mut seen = 0;
        while seen < BOM.len() {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Csv {
                        line: 1,
                        reason: format!("read error: {e}"),
                    });
                }
            };
            let take = (BOM.len() - seen).min(buf.len());
            if take == 0 || buf[..take] != BOM[seen..seen + take] {
                break;
            }
            self.input.consume(take);
            seen += take;
        }
        if seen < BOM.len() {
            self.pushback = BOM[..seen].to_vec();
        }
        Ok(())
    }
}

/// Ends the field that started at `start`: NULL when it was never quoted and equals `null`.
fn finish_field(rec: &mut Record, start: usize, saw_quote: bool, null: &[u8]) {
    let is_null = !saw_quote && rec.data[start..] == *null;
    rec.ends.push(rec.data.len());
    rec.nulls.push(is_null);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn the_defaults_are_recorded_as_the_ledger_takes_an_unrecorded_dialect() {
        assert_eq!(
            CsvOptions::default().recorded(),
            crate::db::ledger::unrecorded_dialect()
        );
        let given = CsvOptions {
            dialect: Dialect {
                delimiter: b';',
                quote: b'\'',
                escape: b'\\',
                null: b"\\N".to_vec(),
            },
            columns: Some(vec!["a".into(), "b".into()]),
        };
        assert_eq!(
            given.recorded(),
            serde_json::json!({
                "delimiter": ";", "quote": "'", "escape": "\\", "null": "\\N", "columns": ["a", "b"]
            })
        );
    }

    #[test]
    fn kept_raw_text_is_the_record_as_it_was_without_its_line_end() {
        let input = b"\xEF\xBB\xBFa,b\r\n\r\n1,\"x\r\ny\"\r\n\n2,\"\"\"q\"\"\"\r3,";
        let mut csv = CsvReader::new(&input[..], Dialect::default());
        csv.keep_raw(true);
        let mut rec = Record::default();
        let mut got = Vec::new();
        while csv.read(&mut rec).unwrap() {
            got.push((rec.line(), String::from_utf8(rec.raw().to_vec()).unwrap()));
        }
        assert_eq!(
            got,
            [
                (1, "a,b".to_string()),
                (3, "1,\"x\r\ny\"".to_string()),
                (6, "2,\"\"\"q\"\"\"".to_string()),
                (7, "3,".to_string()),
            ]
        );
        let mut quiet = CsvReader::new(&input[..], Dialect::default());
        quiet.read(&mut rec).unwrap();
        assert!(rec.raw().is_empty(), "raw text is kept only when asked for");
    }

    #[test]
    fn a_bom_is_dropped_however_the_reads_split_it_and_a_false_start_is_kept() {
        let first_field = |input: &'static [u8]| {
            let mut csv = CsvReader::new(BufReader::with_capacity(1, input), Dialect::default());
            let mut rec = Record::default();
            assert!(csv.read(&mut rec).unwrap());
            rec.get(0).map(<[u8]>::to_vec)
        };
        assert_eq!(first_field(b"\xEF\xBB\xBFa,b\n"), Some(b"a".to_vec()));
        assert_eq!(first_field(b"\xEF\xBBa,b\n"), Some(b"\xEF\xBBa".to_vec()));
        assert_eq!(first_field(b"\xEF"), Some(b"\xEF".to_vec()));
    }

    #[test]
    fn a_blank_line_is_a_row_of_one_empty_field_only_in_one_column_files() {
        let rows = |width: usize| {
            let input = &b"a\nx\n\n\r\ny\n"[..];
            let mut csv = CsvReader::new(input, Dialect::default());
            csv.set_width(width);
            let mut rec = Record::default();
            let mut got = Vec::new();
            while csv.read(&mut rec).unwrap() {
                got.push((rec.line(), rec.get(0).map(<[u8]>::to_vec)));
            }
            got
        };
        let text = |s: &str| Some(s.as_bytes().to_vec());
        assert_eq!(
            rows(1),
            [
                (1, text("a")),
                (2, text("x")),
                (3, None),
                (4, None),
                (5, text("y"))
            ]
        );
        assert_eq!(rows(2), [(1, text("a")), (2, text("x")), (5, text("y"))]);
    }

    #[test]
    fn raw_text_spans_buffer_refills() {
        let input = b"abc,\"de\nf\"\nxyz,1\n";
        let reader = BufReader::with_capacity(2, &input[..]);
        let mut csv = CsvReader::new(reader, Dialect::default());
        csv.keep_raw(true);
        let mut rec = Record::default();
        assert!(csv.read(&mut rec).unwrap());
        assert_eq!(rec.raw(), b"abc,\"de\nf\"");
        assert!(csv.read(&mut rec).unwrap());
        assert_eq!(rec.raw(), b"xyz,1");
    }
}
