//! Splitting the input into records exactly as PostgreSQL's `COPY … (FORMAT csv)` would.
//!
//! Why not the csv crate: it cannot tell an unquoted empty field (NULL to Postgres) from a
//! quoted `""` (an empty string), and that difference is data. This reader keeps it, follows
//! COPY's rules for quotes and escapes (a quote may open anywhere in a field, `\N` is text),
//! accepts a UTF-8 BOM and `\n`, `\r\n` or `\r` line ends (the first line's kind, as COPY
//! takes it: any other outside quotes is refused), ends the data at a line holding only `\.`
//! where the server's COPY does, skips blank lines (in a one-column file a blank line is a
//! row, as COPY reads it), and tracks the physical line (as an editor counts it) where every
//! record starts.

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

/// How to read the input: COPY's dialect options, the column names when the file has no
/// header line, and what the server's COPY makes of a line holding only `\.`.
#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    pub dialect: Dialect,
    /// `--no-header --columns a,b,c`: the names, and every line is data.
    pub columns: Option<Vec<String>>,
    /// A line holding only `\.` ends the data, as COPY reads CSV up to PostgreSQL 17 (see
    /// [`CsvOptions::for_server`]); from 18 on it is data.
    pub end_marker: bool,
}

/// The first `server_version_num` whose COPY reads a CSV line holding only `\.` as data.
const MARKER_IS_DATA_FROM: i32 = 180_000;

impl CsvOptions {
    /// Reads as the COPY of a server of `server_version_num` does.
    pub fn for_server(&mut self, server_version_num: i32) {
        self.end_marker = server_version_num < MARKER_IS_DATA_FROM;
    }
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

    /// The way of reading a run recorded ([`CsvOptions::recorded`]), for a process joining
    /// it; `None` when the record is not one this version writes.
    pub fn from_recorded(recorded: &serde_json::Value) -> Option<CsvOptions> {
        let byte = |member: &str| match recorded.get(member)?.as_str()?.as_bytes() {
            &[b] => Some(b),
            _ => None,
        };
        let columns = match recorded.get("columns")? {
            serde_json::Value::Null => None,
            names => Some(serde_json::from_value(names.clone()).ok()?),
        };
        Some(CsvOptions {
            dialect: Dialect {
                delimiter: byte("delimiter")?,
                quote: byte("quote")?,
                escape: byte("escape")?,
                null: recorded.get("null")?.as_str()?.as_bytes().to_vec(),
            },
            columns,
            end_marker: true,
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
    csv.end_marker(opts.end_marker);
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
    /// The input ended inside this record's quotes (see [`CsvReader::hand_over_defective`]).
    unterminated: bool,
    /// The record's line end is not of the input's kind (see [`CsvReader::hand_over_defective`]).
    bad_line_end: Option<BadLineEnd>,
}

impl Record {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The field's bytes, or `None` when it is NULL.
    #[inline]
    /// Whether `other` holds the same fields (whatever quoting or line end they had).
    pub fn same_fields(&self, other: &Record) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.get(i) == other.get(i))
    }

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

    /// Whether the record ends in a line end of another kind than the input's first line,
    /// which COPY refuses.
    pub fn bad_line_end(&self) -> Option<BadLineEnd> {
        self.bad_line_end
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

    /// Whether every field is UTF-8 without a NUL byte, found in one pass over the record:
    /// when the whole is valid UTF-8, a field is exactly when it starts and ends on
    /// character boundaries.
    pub fn is_clean_text(&self) -> bool {
        let data = &self.data;
        !data.contains(&0)
            && simdutf8::basic::from_utf8(data).is_ok()
            && self
                .ends
                .iter()
                .all(|&end| data.get(end).is_none_or(|&b| (b as i8) >= -0x40))
    }

    /// Feeds the record's fields, NULLs included, to a hash of the batch's content.
    /// `scratch` is a buffer the caller keeps: the field ends go to the hash in one update,
    /// which digests the same as one update each.
    pub fn hash_into(&self, hasher: &mut xxhash_rust::xxh3::Xxh3, scratch: &mut Vec<u8>) {
        hasher.update(&self.data);
        scratch.clear();
        for (&end, &null) in self.ends.iter().zip(&self.nulls) {
            scratch.extend_from_slice(&((end as u64) | (u64::from(null) << 63)).to_le_bytes());
        }
        hasher.update(scratch);
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.nulls.clear();
        self.raw.clear();
        self.unterminated = false;
        self.bad_line_end = None;
    }
}

/// How a line ends outside quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    Lf,
    CrLf,
    Cr,
}

impl LineEnd {
    fn shown(self) -> &'static str {
        match self {
            LineEnd::Lf => "\\n",
            LineEnd::CrLf => "\\r\\n",
            LineEnd::Cr => "\\r",
        }
    }
}

/// A line end outside quotes of another kind than the input's first line: COPY takes the
/// kind from the first line and refuses any other after it (SQLSTATE 22P04), where a lenient
/// reader would silently keep a stray `\r` in a value or split a record differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLineEnd {
    pub first: LineEnd,
    pub this: LineEnd,
}

impl std::fmt::Display for BadLineEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // COPY's words: it meets either a `\n` it does not expect, or a `\r`.
        let what = if self.this == LineEnd::Lf || self.first == LineEnd::Cr {
            "newline"
        } else {
            "carriage return"
        };
        write!(
            f,
            "unquoted {what} found in data: the first line ends in {}, this one in {} \
             (COPY allows one kind of line end; use a quoted field to represent a {what})",
            self.first.shown(),
            self.this.shown()
        )
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
    hand_over_defective: bool,
    /// Bytes taken from the input while looking ahead (for a BOM that was not one, or for
    /// the end-of-data marker), parsed first.
    pushback: Vec<u8>,
    /// A one-column file: a blank line is a row whose field is empty (NULL by default).
    blank_is_row: bool,
    /// How the first line ended, once it did: every other line must end the same way.
    line_end: Option<LineEnd>,
    /// A line holding only `\.` ends the data ([`CsvOptions::end_marker`]).
    end_marker: bool,
    /// The end-of-data marker was read: nothing after it is.
    ended: bool,
    /// The bytes that are not plain data outside quotes, and inside them: the dialect's
    /// delimiter and quote, or quote and escape, and the line-end bytes (lines are counted).
    special_unquoted: [u8; 4],
    special_quoted: [u8; 4],
    /// The quote is its own escape, so a doubled one inside quotes is one quote of data;
    /// and it is no line-end byte, so taking the two at once counts no line wrong (a
    /// dialect the command line refuses, but the reader reads any alike however split).
    doubled_quote_is_data: bool,
}

impl<R: BufRead> CsvReader<R> {
    pub fn new(input: R, dialect: Dialect) -> Self {
        CsvReader {
            input,
            line: 1,
            prev_cr: false,
            at_start: true,
            keep_raw: false,
            hand_over_defective: false,
            pushback: Vec::new(),
            blank_is_row: false,
            line_end: None,
            end_marker: false,
            ended: false,
            special_unquoted: [dialect.delimiter, dialect.quote, b'\r', b'\n'],
            special_quoted: [dialect.quote, dialect.escape, b'\r', b'\n'],
            doubled_quote_is_data: dialect.escape == dialect.quote
                && !matches!(dialect.quote, b'\r' | b'\n'),
            dialect,
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

    /// Whether a line holding only `\.` ends the data ([`CsvOptions::end_marker`]); off by
    /// default.
    pub fn end_marker(&mut self, on: bool) {
        self.end_marker = on;
    }

    /// Hand over a record COPY would refuse whole, instead of failing the read, so that
    /// reject mode sets it aside: one whose quote the input never closes, marked
    /// [`Record::unterminated`] (with [`CsvReader::keep_raw`], the rest of the input is its
    /// text), and one whose line end is of another kind than the first line's, marked
    /// [`Record::bad_line_end`] (reading goes on after that line end).
    pub fn hand_over_defective(&mut self, on: bool) {
        self.hand_over_defective = on;
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
        if self.ended || self.end_marker && self.at_end_marker()? {
            return Ok(None);
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
            let buf = if pushed.is_empty() {
                fill(&mut self.input, self.line)?
            } else {
                &pushed[..]
            };
            if buf.is_empty() {
                let in_quotes = match state {
                    State::Unquoted => false,
                    State::Quoted => true,
                    State::AfterEscape => escape != quote,
                };
                if in_quotes && self.hand_over_defective {
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
            // How the record ended: `Some(None)` for a `\r` that ends the chunk, which may be
            // the first half of a `\r\n`.
            let mut ended: Option<Option<LineEnd>> = None;
            // The part of this chunk that belongs to the record, for `raw`.
            let (mut raw_from, mut raw_to) = (if started { 0 } else { buf.len() }, None);
            while consumed < buf.len() {
                // The bytes that mean nothing in this state (most of them) are copied in one
                // go; the first one of a record goes the slow way, which notes where it starts.
                if started && state != State::AfterEscape {
                    let special = match state {
                        State::Unquoted => self.special_unquoted,
                        _ => self.special_quoted,
                    };
                    let rest = &buf[consumed..];
                    let run = plain_run(rest, special);
                    if run > 0 {
                        rec.data.extend_from_slice(&rest[..run]);
                        consumed += run;
                        // None of them is a line end.
                        self.prev_cr = false;
                        blank = false;
                        continue;
                    }
                    // A quote doubled inside quotes where it is its own escape (`""`, JSON
                    // text is full of them): one quote of data, in one step.
                    if state == State::Quoted
                        && self.doubled_quote_is_data
                        && rest.starts_with(&[quote; 2])
                    {
                        rec.data.push(quote);
                        consumed += 2;
                        self.prev_cr = false;
                        blank = false;
                        continue;
                    }
                }
                let b = buf[consumed];
                consumed += 1;
                // Line counting is independent of quoting: `\r\n` is one line end.
                let newline = b == b'\n' && !self.prev_cr || b == b'\r';
                self.prev_cr = b == b'\r';
                if !started {
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
                            // The `\n` of a `\r\n` belongs to this line end: taken with it.
                            ended = Some(match (b, buf.get(consumed)) {
                                (b'\n', _) => Some(LineEnd::Lf),
                                (_, Some(b'\n')) => {
                                    consumed += 1;
                                    Some(LineEnd::CrLf)
                                }
                                (_, Some(_)) => Some(LineEnd::Cr),
                                (_, None) => None,
                            });
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
            if let Some(end) = ended {
                self.prev_cr = false;
                let end = match end {
                    Some(end) => end,
                    None => self.after_cr()?,
                };
                return self.line_ended(rec, end, blank);
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

    /// The line end of a `\r` that ended a chunk (so `pushback` is empty): `\r\n` (its `\n`
    /// taken) when the input's next byte is `\n`, else `\r`.
    fn after_cr(&mut self) -> Result<LineEnd, Error> {
        if fill(&mut self.input, self.line)?.first() == Some(&b'\n') {
            self.input.consume(1);
            return Ok(LineEnd::CrLf);
        }
        Ok(LineEnd::Cr)
    }

    /// A record ended by `end`: the first line end fixes the input's kind; a record ended by
    /// another kind fails the read, or is handed over marked when asked to.
    fn line_ended(
        &mut self,
        rec: &mut Record,
        end: LineEnd,
        blank: bool,
    ) -> Result<Option<Line>, Error> {
        let first = *self.line_end.get_or_insert(end);
        if first != end {
            let bad = BadLineEnd { first, this: end };
            if !self.hand_over_defective {
                return Err(Error::Csv {
                    line: rec.line,
                    reason: bad.to_string(),
                });
            }
            rec.bad_line_end = Some(bad);
            return Ok(Some(Line::Record));
        }
        Ok(Some(if blank { Line::Blank } else { Line::Record }))
    }

    /// Whether the next line holds only `\.` and a line end of the input's kind (any kind
    /// before the first line ended), which ends the data of COPY up to PostgreSQL 17: then
    /// nothing more is read. `\.` and a line end of another kind is refused, as COPY refuses
    /// it (even where `\` is the quote and the line end would be quoted data: COPY looks for
    /// the marker before it looks at quotes). Anything else after `\.` (other bytes, the end
    /// of the input) is data, as there.
    fn at_end_marker(&mut self) -> Result<bool, Error> {
        // Most lines do not start with a backslash: a look at the buffer, nothing moved.
        let next = match self.pushback.first() {
            Some(&b) => Some(b),
            None => fill(&mut self.input, self.line)?.first().copied(),
        };
        if next != Some(b'\\') {
            return Ok(false);
        }
        let line_end = self.line_end;
        let line = self.line;
        let refuse = |reason: &str| Error::Csv {
            line,
            reason: format!(
                "{reason} (a line holding only \\. ends the data, as the server's COPY reads CSV)"
            ),
        };
        let marker = match (self.peek(3)?, line_end) {
            (b"\\.\n", None | Some(LineEnd::Lf)) | (b"\\.\r", None | Some(LineEnd::Cr)) => true,
            (b"\\.\r", Some(LineEnd::CrLf)) => match self.peek(4)? {
                b"\\.\r\n" => true,
                _ => return Err(refuse("end-of-copy marker corrupt")),
            },
            (b"\\.\r" | b"\\.\n", Some(_)) => {
                return Err(refuse(
                    "end-of-copy marker does not match previous newline style",
                ));
            }
            _ => false,
        };
        if marker {
            self.ended = true;
            tracing::warn!(
                "line {}: a line holding only \\. ends the data, as the server's COPY reads CSV \
                 (PostgreSQL 17 and older): what follows it is not read",
                self.line
            );
        }
        Ok(marker)
    }

    /// The next `n` bytes of the input (fewer at its end), moved into `pushback` so that the
    /// parser still reads them.
    fn peek(&mut self, n: usize) -> Result<&[u8], Error> {
        while self.pushback.len() < n {
            let buf = fill(&mut self.input, self.line)?;
            if buf.is_empty() {
                break;
            }
            let take = (n - self.pushback.len()).min(buf.len());
            self.pushback.extend_from_slice(&buf[..take]);
            self.input.consume(take);
        }
        Ok(&self.pushback[..n.min(self.pushback.len())])
    }

    /// Drops a UTF-8 BOM at the start of the input, however the reads split it; bytes that
    /// began like one but were not are kept for the parser.
    fn take_bom(&mut self) -> Result<(), Error> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let mut seen = 0;
        while seen < BOM.len() {
            let buf = fill(&mut self.input, self.line)?;
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

/// How many bytes at the start of `bytes` are none of `special`: the plain run the reader
/// copies in one go. Sixteen bytes at a time where SSE2 is there (every x86-64), as this
/// scan is most of the reader's time.
fn plain_run(bytes: &[u8], special: [u8; 4]) -> usize {
    let mut at = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has these
        // instructions; each load reads the 16 bytes of `block`, with no alignment needed.
        unsafe {
            let [a, b, c, d] = special.map(|s| _mm_set1_epi8(s as i8));
            while let Some(block) = bytes.get(at..at + 16) {
                let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                let hits = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, a), _mm_cmpeq_epi8(v, b)),
                    _mm_or_si128(_mm_cmpeq_epi8(v, c), _mm_cmpeq_epi8(v, d)),
                );
                let mask = _mm_movemask_epi8(hits);
                if mask != 0 {
                    return at + mask.trailing_zeros() as usize;
                }
                at += 16;
            }
        }
    }
    at + bytes[at..]
        .iter()
        .position(|b| special.contains(b))
        .unwrap_or(bytes.len() - at)
}

/// The input's buffered bytes, refilled when empty (empty at its end); a read error names
/// `line`, where the reader was.
fn fill<R: BufRead>(input: &mut R, line: u64) -> Result<&[u8], Error> {
    let failed = |e: io::Error| Error::Csv {
        line,
        reason: format!("read error: {e}"),
    };
    // Reads a signal interrupted are tried again. The buffer is taken by a second call, which
    // returns it as it is: the borrow checker does not let the first leave the loop.
    loop {
        match input.fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(e)),
            Ok(_) => break,
        }
    }
    input.fill_buf().map_err(failed)
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

    #[test]
    fn a_recorded_dialect_reads_back_as_it_was() {
        let opts = CsvOptions {
            dialect: Dialect {
                delimiter: b'|',
                quote: b'\'',
                escape: b'\\',
                null: b"NULL".to_vec(),
            },
            columns: Some(vec!["a".into(), "b c".into()]),
            end_marker: true,
        };
        let back = CsvOptions::from_recorded(&opts.recorded()).unwrap();
        assert_eq!(back.recorded(), opts.recorded());
        assert_eq!(back.dialect.null, b"NULL");
        let defaults = CsvOptions::from_recorded(&crate::db::ledger::unrecorded_dialect());
        assert_eq!(defaults.unwrap().dialect.delimiter, b',');
        assert!(CsvOptions::from_recorded(&serde_json::json!({"delimiter": "ab"})).is_none());
    }
    use std::io::BufReader;

    proptest::proptest! {
        #[test]
        fn plain_run_stops_at_the_first_special_byte(
            bytes in proptest::collection::vec(proptest::sample::select(b"ab,\"\r\n;\xff".to_vec()), 0..80),
            plain_prefix in 0usize..40,
        ) {
            // Long plain stretches too, so that whole 16-byte blocks are skipped.
            let mut bytes = bytes;
            bytes.splice(0..0, std::iter::repeat_n(b'x', plain_prefix));
            let special = [b',', b'"', b'\r', b'\n'];
            let want = bytes.iter().position(|b| special.contains(b)).unwrap_or(bytes.len());
            proptest::prop_assert_eq!(plain_run(&bytes, special), want);
        }
    }

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
            end_marker: true,
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
        let input = b"\xEF\xBB\xBFa,b\r\n\r\n1,\"x\r\ny\"\r\n\r\n2,\"\"\"q\"\"\"\r\n3,";
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
    fn a_doubled_quote_counts_the_same_lines_however_the_reads_split_it() {
        // The fast step for a doubled quote must not skip line ends, even where the quote is
        // one (found by fuzz_input): the lines counted agree with 1-byte reads.
        let lines = |input: &'static [u8], quote: u8, capacity: usize| {
            let dialect = Dialect {
                quote,
                escape: quote,
                ..Dialect::default()
            };
            let mut csv = CsvReader::new(BufReader::with_capacity(capacity, input), dialect);
            let mut rec = Record::default();
            let mut got = Vec::new();
            while let Ok(true) = csv.read(&mut rec) {
                got.push((rec.get(1).map(<[u8]>::to_vec), rec.line(), rec.end_line()));
            }
            got
        };
        for (input, quote) in [
            (&b"a,\"x\"\"y\"\nb,c\n"[..], b'"'),
            (&b"a,\nx\n\n\n\ny\n\nb,c\n"[..], b'\n'),
        ] {
            assert_eq!(lines(input, quote, 64), lines(input, quote, 1), "{input:?}");
        }
        assert_eq!(
            lines(b"a,\"x\"\"y\"\nb,c\n", b'"', 64)[0],
            (Some(b"x\"y".to_vec()), 1, 1)
        );
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
            let input = &b"a\nx\n\n\ny\n"[..];
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

    /// What reading `input` gives, with 1-byte and whole reads alike: each record's line and
    /// first field (`None` for NULL), then the error's line and reason, if any.
    type Outcome = (Vec<(u64, Option<String>)>, Option<(u64, String)>);

    fn read_with(input: &[u8], marker: bool, capacity: usize) -> Outcome {
        let mut csv = CsvReader::new(
            BufReader::with_capacity(capacity, input),
            Dialect::default(),
        );
        csv.end_marker(marker);
        let mut rec = Record::default();
        let mut got = Vec::new();
        loop {
            match csv.read(&mut rec) {
                Ok(true) => got.push((
                    rec.line(),
                    rec.get(0).map(|v| String::from_utf8_lossy(v).into_owned()),
                )),
                Ok(false) => return (got, None),
                Err(Error::Csv { line, reason }) => return (got, Some((line, reason))),
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn read_all(input: &[u8], marker: bool) -> Outcome {
        let whole = read_with(input, marker, 8192);
        assert_eq!(read_with(input, marker, 1), whole, "1-byte reads differ");
        whole
    }

    fn text(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn the_first_line_end_decides_and_another_one_outside_quotes_is_refused() {
        let refused = |input: &[u8]| {
            let (_, error) = read_all(input, false);
            error.unwrap_or_else(|| panic!("{input:?} was read"))
        };
        // As PostgreSQL 15's COPY: a `\r` in an LF file (alone, or in `\r\n`), a `\n` or a
        // lone `\r` in a CRLF file (at the end of the input too), a `\n` in a CR file.
        for (input, line, what) in [
            (&b"a,b\n1,2\r\n3,4\n"[..], 2, "unquoted carriage return"),
            (b"a,b\n1,2\r3,4\n", 2, "unquoted carriage return"),
            (b"a,b\n1,2\r", 2, "unquoted carriage return"),
            (b"a,b\r\n1,2\n3,4\r\n", 2, "unquoted newline"),
            (b"a,b\r\n1,2\r3,4\r\n", 2, "unquoted carriage return"),
            (b"a,b\r\n1,2\r", 2, "unquoted carriage return"),
            (b"a,b\r1,2\r\n3,4\r", 2, "unquoted newline"),
            (b"a,b\r1,2\r3,4\n", 3, "unquoted newline"),
            (
                b"a,b\n\"1\n\",\"x\r\ny\"\n3,4\r\n",
                5,
                "unquoted carriage return",
            ),
            (b"a,b\n1,2\n\r\n", 3, "unquoted carriage return"),
        ] {
            let (got_line, reason) = refused(input);
            assert_eq!(got_line, line, "{input:?}: {reason}");
            assert!(reason.starts_with(what), "{input:?}: {reason}");
        }
        let (_, reason) = refused(b"a\n1\r\n");
        assert_eq!(
            reason,
            "unquoted carriage return found in data: the first line ends in \\n, this one in \
             \\r\\n (COPY allows one kind of line end; use a quoted field to represent a \
             carriage return)"
        );
        // Quoted line breaks of any kind are data, and do not decide the kind.
        assert_eq!(
            read_all(b"\"a\r\nb\",c\n\"x\ry\",\"\n\"\n\"1\r\",2", false),
            (
                vec![(1, text("a\r\nb")), (3, text("x\ry")), (6, text("1\r"))],
                None
            )
        );
        for eol in ["\n", "\r\n", "\r"] {
            let input = format!("a,b{eol}1,2{eol}{eol}3,4{eol}");
            let want = vec![(1, text("a")), (2, text("1")), (4, text("3"))];
            assert_eq!(read_all(input.as_bytes(), false), (want, None), "{eol:?}");
        }
    }

    #[test]
    fn a_record_with_another_line_end_is_handed_over_marked_and_reading_goes_on() {
        let input = b"a,b\n1,2\n3,4\r\n5,6\n7,8\r9,10\n\r\n11,12\n";
        for capacity in [1, 8192] {
            let reader = BufReader::with_capacity(capacity, &input[..]);
            let mut csv = CsvReader::new(reader, Dialect::default());
            csv.keep_raw(true);
            csv.hand_over_defective(true);
            let mut rec = Record::default();
            let mut got = Vec::new();
            while csv.read(&mut rec).unwrap() {
                let raw = String::from_utf8(rec.raw().to_vec()).unwrap();
                got.push((rec.line(), raw, rec.bad_line_end().map(|b| b.this)));
            }
            let cr = Some(LineEnd::Cr);
            let crlf = Some(LineEnd::CrLf);
            assert_eq!(
                got,
                [
                    (1, "a,b".into(), None),
                    (2, "1,2".into(), None),
                    (3, "3,4".into(), crlf),
                    (4, "5,6".into(), None),
                    (5, "7,8".into(), cr),
                    (6, "9,10".into(), None),
                    (7, String::new(), crlf),
                    (8, "11,12".into(), None),
                ],
                "{capacity}-byte reads"
            );
        }
    }

    #[test]
    fn a_line_holding_only_backslash_dot_ends_the_data_up_to_postgresql_17() {
        let mut opts = CsvOptions::default();
        opts.for_server(170_005);
        assert!(opts.end_marker);
        opts.for_server(180_000);
        assert!(!opts.end_marker);

        let lf = b"a,b\n1,2\n\\.\n3,4\n";
        assert_eq!(
            read_all(lf, true),
            (vec![(1, text("a")), (2, text("1"))], None)
        );
        // PostgreSQL 18 reads it as data: here a record of one field.
        assert_eq!(
            read_all(lf, false),
            (
                vec![
                    (1, text("a")),
                    (2, text("1")),
                    (3, text("\\.")),
                    (4, text("3"))
                ],
                None
            )
        );
        // With the input's own line end: CRLF, CR, and before any line end, any.
        for input in [
            &b"a,b\r\n1,2\r\n\\.\r\n3,4\r\n"[..],
            b"a,b\r1,2\r\\.\r3,4\r",
            b"a,b\r1,2\r\\.\r\n3,4\r",
        ] {
            let want = (vec![(1, text("a")), (2, text("1"))], None);
            assert_eq!(read_all(input, true), want, "{input:?}");
        }
        for first in [&b"\\.\n1,2\n"[..], b"\\.\r\n1,2\n", b"\\.\r1,2\n"] {
            assert_eq!(read_all(first, true), (vec![], None), "{first:?}");
        }
        // Not alone on its line, quoted, inside a quoted field or at the very end: data.
        for (input, want) in [
            (&b"a\n\\.x\n"[..], vec![(1, text("a")), (2, text("\\.x"))]),
            (b"a\n\"\\.\"\n", vec![(1, text("a")), (2, text("\\."))]),
            (
                b"a\n\"x\n\\.\ny\"\n",
                vec![(1, text("a")), (2, text("x\n\\.\ny"))],
            ),
            (b"a\n\\.", vec![(1, text("a")), (2, text("\\."))]),
            (b"a\nb,\\.\n", vec![(1, text("a")), (2, text("b"))]),
        ] {
            assert_eq!(read_all(input, true), (want, None), "{input:?}");
        }
        // With another line end it is refused, as COPY refuses it, quoted or not.
        let mismatch = "end-of-copy marker does not match previous newline style";
        for (input, what) in [
            (&b"a\n\\.\r3\n"[..], mismatch),
            (b"a\r\n\\.\n3\r\n", mismatch),
            (b"a\r\\.\n3\r", mismatch),
            (b"a\r\n\\.\rb\r\n", "end-of-copy marker corrupt"),
        ] {
            let (got, error) = read_all(input, true);
            assert_eq!(got, [(1, text("a"))], "{input:?}");
            let (line, reason) = error.expect("refused");
            assert_eq!(line, 2, "{input:?}");
            assert!(reason.starts_with(what), "{input:?}: {reason}");
        }
    }

    /// With `\\` as the quote, a quoted field starting `.` and a line end looks like the
    /// marker, and COPY (PostgreSQL 15, checked with server-side COPY) takes it as one: it ends
    /// the data before the first line end, and is refused after a line end of another kind.
    #[test]
    fn the_marker_wins_over_a_backslash_quote_as_in_copy() {
        let dialect = Dialect {
            quote: b'\\',
            escape: b'\\',
            ..Dialect::default()
        };
        let read = |input: &[u8]| {
            let mut csv = CsvReader::new(input, dialect.clone());
            csv.end_marker(true);
            let mut rec = Record::default();
            let mut rows = 0;
            loop {
                match csv.read(&mut rec) {
                    Ok(true) => rows += 1,
                    Ok(false) => return Ok(rows),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        assert_eq!(read(b"\\.\r\\"), Ok(0));
        let refused = read(b"a\n\\.\r\\").unwrap_err();
        assert!(
            refused.starts_with("line 2: end-of-copy marker does not match previous newline style"),
            "{refused}"
        );
    }
}
