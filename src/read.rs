//! Reading: opening the input (file, stdin, gzip) and splitting it into records exactly as
//! PostgreSQL's `COPY … (FORMAT csv)` would.
//!
//! Why not the csv crate: it cannot tell an unquoted empty field (NULL to Postgres) from a
//! quoted `""` (an empty string), and that difference is data. This reader keeps it, follows
//! COPY's rules for quotes and escapes (a quote may open anywhere in a field, `\N` is text),
//! accepts a UTF-8 BOM and `\n`, `\r\n` or `\r` line ends, skips blank lines, and tracks the
//! physical line (as an editor counts it) where every record starts.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// A record larger than this is refused rather than buffered: an unterminated quote must not
/// turn a constant-memory reader into one that swallows the whole file.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

const READ_BUFFER: usize = 256 << 10;

/// Where rows come from: a path or `-` for stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    Path(std::path::PathBuf),
}

impl Source {
    pub fn parse(arg: &str) -> Self {
        if arg == "-" {
            Source::Stdin
        } else {
            Source::Path(arg.into())
        }
    }

    pub fn display(&self) -> String {
        match self {
            Source::Stdin => "stdin".into(),
            Source::Path(p) => p.display().to_string(),
        }
    }
}

/// How much of the input's start its fingerprint covers.
const FINGERPRINT_BYTES: u64 = 1 << 20;

/// An opened input: decompressed bytes to parse, plus what progress reporting needs.
pub struct Input {
    pub reader: Box<dyn BufRead + Send>,
    /// The canonical path, or `-` for stdin: part of the run's identity.
    pub path: String,
    /// Size on disk, when known (files); progress is measured against it.
    pub size: Option<u64>,
    /// xxh3-128 of the first MiB as read (compressed for gzip), in hex: a resumed run
    /// refuses an input whose fingerprint changed.
    pub fingerprint: String,
    /// Bytes consumed from the file or stdin so far (compressed bytes for gzip).
    pub consumed: Arc<AtomicU64>,
}

/// Opens `source`; gzip is recognised by its magic bytes, so `.gz` files and gzip on stdin
/// both work without a flag.
pub fn open(source: &Source) -> Result<Input, Error> {
    let io_err = |source_err| Error::Input {
        path: source.display(),
        source: source_err,
    };
    let (mut raw, size, path): (Box<dyn Read + Send>, Option<u64>, String) = match source {
        Source::Stdin => (Box::new(io::stdin()), None, "-".into()),
        Source::Path(path) => {
            let file = File::open(path).map_err(io_err)?;
            let size = file.metadata().map_err(io_err)?.len();
            let canonical = std::fs::canonicalize(path).map_err(io_err)?;
            (Box::new(file), Some(size), canonical.display().to_string())
        }
    };
    let mut prefix = Vec::new();
    (&mut raw)
        .take(FINGERPRINT_BYTES)
        .read_to_end(&mut prefix)
        .map_err(io_err)?;
    let fingerprint = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&prefix));
    let consumed = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: Box::new(io::Cursor::new(prefix).chain(raw)),
        consumed: consumed.clone(),
    };
    let mut buffered = BufReader::with_capacity(READ_BUFFER, counted);
    let is_gzip = buffered
        .fill_buf()
        .map_err(io_err)?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + Send> = if is_gzip {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::bufread::MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(Input {
        reader,
        path,
        size,
        fingerprint,
        consumed,
    })
}

struct Counted {
    inner: Box<dyn Read + Send>,
    consumed: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

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
                header.data.extend_from_slice(name.as_bytes());
                header.ends.push(header.data.len());
                header.nulls.push(false);
            }
        }
        None => {
            if !csv.read(&mut header)? {
                return Err(Error::Usage(format!(
                    "{} is empty: expected a header line (or --no-header --columns)",
                    source.display()
                )));
            }
        }
    }
    Ok((csv, header))
}

/// One record, reused from one read to the next so the hot loop does not allocate.
#[derive(Debug, Default, Clone)]
pub struct Record {
    data: Vec<u8>,
    ends: Vec<usize>,
    nulls: Vec<bool>,
    line: u64,
    end_line: u64,
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
}

impl<R: BufRead> CsvReader<R> {
    pub fn new(input: R, dialect: Dialect) -> Self {
        CsvReader {
            input,
            dialect,
            line: 1,
            prev_cr: false,
            at_start: true,
        }
    }

    /// Reads the next non-blank record into `rec`; `Ok(false)` at the end of the input.
    pub fn read(&mut self, rec: &mut Record) -> Result<bool, Error> {
        loop {
            rec.clear();
            match self.read_raw(rec)? {
                None => return Ok(false),
                Some(Line::Blank) => continue,
                Some(Line::Record) => return Ok(true),
            }
        }
    }

    fn read_raw(&mut self, rec: &mut Record) -> Result<Option<Line>, Error> {
        let d = &self.dialect;
        let (delim, quote, escape, null) = (d.delimiter, d.quote, d.escape, &d.null[..]);
        let mut state = State::Unquoted;
        let mut field_start = 0usize;
        let mut saw_quote = false;
        let mut started = false;
        let mut blank = true;
        rec.line = self.line;
        loop {
            let buf = match self.input.fill_buf() {
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
            let mut skip = 0;
            if self.at_start {
                self.at_start = false;
                if buf.starts_with(b"\xEF\xBB\xBF") {
                    skip = 3;
                }
            }
            let mut consumed = skip;
            let mut done = false;
            for &b in &buf[skip..] {
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
            self.input.consume(consumed);
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

/// Ends the field that started at `start`: NULL when it was never quoted and equals `null`.
fn finish_field(rec: &mut Record, start: usize, saw_quote: bool, null: &[u8]) {
    let is_null = !saw_quote && rec.data[start..] == *null;
    rec.ends.push(rec.data.len());
    rec.nulls.push(is_null);
}
