//! Encoding rows for `COPY … FROM STDIN`, in binary format where every target column has an
//! encoder, in CSV format otherwise.
//!
//! Binary format saves the server from parsing text (about a quarter of its CPU on the
//! example table), but the server's own parsers are the definition of what a value means.
//! So each binary encoder is strict: it accepts only spellings whose meaning is beyond doubt
//! (`2024-03-05T14:22:31Z`, `12.50`, `true`) and refuses the rest (`infinity`, `1e5`,
//! a timestamp without an offset, whose meaning depends on the session's time zone). A batch
//! holding a refused value is sent in CSV format instead, so the server decides, and the
//! loaded data is the same as `psql \copy` of the same file either way.

use crate::input::check::{HEX_DIGITS, NOT_HEX};
use crate::input::csv::Record;

/// The wire format of one COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Binary,
    Csv,
}

impl Format {
    pub fn sql(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Csv => "csv",
        }
    }
}

/// A column type this module can encode in binary format, by the type's OID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// text, varchar, bpchar: the server applies the length limit as it would for CSV.
    Text,
    Json,
    Jsonb,
    Uuid,
    Date,
    Timestamp,
    Timestamptz,
}

impl Encoder {
    pub fn for_type(oid: u32) -> Option<Encoder> {
        Some(match oid {
            16 => Encoder::Bool,
            21 => Encoder::Int2,
            23 => Encoder::Int4,
            20 => Encoder::Int8,
            700 => Encoder::Float4,
            701 => Encoder::Float8,
            1700 => Encoder::Numeric,
            25 | 1043 | 1042 => Encoder::Text,
            114 => Encoder::Json,
            3802 => Encoder::Jsonb,
            2950 => Encoder::Uuid,
            1082 => Encoder::Date,
            1114 => Encoder::Timestamp,
            1184 => Encoder::Timestamptz,
            _ => return None,
        })
    }

    /// Appends the value's binary field (length word and bytes) to `out`; `None` when the
    /// spelling is not one this encoder is sure of, and `out` is then left as it was.
    pub fn encode(self, v: &[u8], out: &mut Vec<u8>) -> Option<()> {
        match self {
            Encoder::Text | Encoder::Json => put_field(out, v),
            Encoder::Jsonb => {
                put_len(out, v.len() + 1)?;
                out.push(1);
                out.extend_from_slice(v);
            }
            Encoder::Bool => put_field(out, &[parse_bool(v)? as u8]),
            Encoder::Int2 => put_field(out, &i16::try_from(parse_int(v)?).ok()?.to_be_bytes()),
            Encoder::Int4 => put_field(out, &i32::try_from(parse_int(v)?).ok()?.to_be_bytes()),
            Encoder::Int8 => put_field(out, &parse_int(v)?.to_be_bytes()),
            Encoder::Float4 => put_field(out, &parse_float::<f32>(v)?.to_be_bytes()),
            Encoder::Float8 => put_field(out, &parse_float::<f64>(v)?.to_be_bytes()),
            Encoder::Numeric => encode_numeric(v, out)?,
            Encoder::Uuid => put_field(out, &parse_uuid(v)?),
            Encoder::Date => put_field(out, &parse_date(v)?.to_be_bytes()),
            Encoder::Timestamp => put_field(out, &parse_timestamp(v, false)?.to_be_bytes()),
            Encoder::Timestamptz => put_field(out, &parse_timestamp(v, true)?.to_be_bytes()),
        }
        Some(())
    }
}

/// What starts and ends every binary COPY payload: signature, flags, header extension
/// length; then the end-of-data marker.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const BINARY_TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// Where each row of an encoded payload is: what picking a subset of a batch's rows needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// CSV: the COPY stream line each row starts on (empty for binary, where COPY's line N
    /// is row N). COPY's error context counts newlines inside quoted values, so row and
    /// line differ there.
    pub copy_lines: Vec<u64>,
    /// The byte offset in the payload where each row ends.
    pub row_ends: Vec<usize>,
}

impl Layout {
    fn clear(&mut self) {
        self.copy_lines.clear();
        self.row_ends.clear();
    }
}

/// Writes into `out` (cleared first) a payload of `format` holding only the rows `keep`
/// (indices, ascending) of `payload`, whose rows `layout` describes; returns their layout.
pub fn select_rows(
    format: Format,
    payload: &[u8],
    layout: &Layout,
    keep: &[usize],
    out: &mut Vec<u8>,
) -> Layout {
    out.clear();
    let mut picked = Layout::default();
    let first_start = match format {
        Format::Binary => BINARY_HEADER.len(),
        Format::Csv => 0,
    };
    if format == Format::Binary {
        out.extend_from_slice(BINARY_HEADER);
    }
    let mut line = 1;
    for &row in keep {
        let start = row
            .checked_sub(1)
            .map_or(first_start, |prev| layout.row_ends[prev]);
        let bytes = &payload[start..layout.row_ends[row]];
        if format == Format::Csv {
            picked.copy_lines.push(line);
            line += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        out.extend_from_slice(bytes);
        picked.row_ends.push(out.len());
    }
    if format == Format::Binary {
        out.extend_from_slice(BINARY_TRAILER);
    }
    picked
}

/// A batch's payload, encoded a row at a time as the rows are read, while they are still in
/// the cache: binary while every value has a binary spelling this module is sure of; after
/// one that has not, the whole batch is encoded in CSV at the end.
#[derive(Debug, Default)]
pub struct Payload {
    pub bytes: Vec<u8>,
    pub layout: Layout,
    /// Still binary: every row so far is in `bytes`.
    binary: bool,
}

impl Payload {
    /// An empty payload in `buffer` (cleared; its capacity is kept).
    pub fn start(encoder: &RowEncoder, mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        if encoder.prefer_binary {
            buffer.extend_from_slice(BINARY_HEADER);
        }
        Payload {
            bytes: buffer,
            layout: Layout::default(),
            binary: encoder.prefer_binary,
        }
    }

    /// Adds the next row.
    pub fn push(&mut self, encoder: &RowEncoder, rec: &Record) {
        if !self.binary {
            return;
        }
        match encoder.push_binary(rec, &mut self.bytes) {
            Some(()) => self.layout.row_ends.push(self.bytes.len()),
            None => self.binary = false,
        }
    }

    /// Ends the payload of `rows` (every row pushed, in order); says its format.
    pub fn finish(&mut self, encoder: &RowEncoder, rows: &[Record]) -> Format {
        if self.binary {
            self.bytes.extend_from_slice(BINARY_TRAILER);
            return Format::Binary;
        }
        self.bytes.clear();
        self.layout.clear();
        encoder.encode_csv(rows, &mut self.bytes, &mut self.layout);
        Format::Csv
    }
}

/// Turns records into a COPY payload for one batch.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    /// The fields to send, in order, with their column's encoder (`None`: no binary encoder).
    fields: Vec<(usize, Option<Encoder>)>,
    prefer_binary: bool,
}

impl RowEncoder {
    /// Sends every field of `encoders.len()`-field records.
    pub fn new(encoders: Vec<Option<Encoder>>, prefer_binary: bool) -> Self {
        Self::project(encoders.into_iter().enumerate().collect(), prefer_binary)
    }

    /// Sends only `fields` of the records (purge sends the key columns of a CSV that may hold
    /// more). `prefer_binary` is honoured only when every field has an encoder.
    pub fn project(fields: Vec<(usize, Option<Encoder>)>, prefer_binary: bool) -> Self {
        let prefer_binary = prefer_binary && fields.iter().all(|(_, e)| e.is_some());
        RowEncoder {
            fields,
            prefer_binary,
        }
    }

    /// Encodes `rows` into `out` (cleared first), describes where each row went in
    /// `layout`, and says which format it used.
    pub fn encode(&self, rows: &[Record], out: &mut Vec<u8>, layout: &mut Layout) -> Format {
        let mut payload = Payload::start(self, std::mem::take(out));
        for rec in rows {
            payload.push(self, rec);
        }
        let format = payload.finish(self, rows);
        *out = payload.bytes;
        *layout = payload.layout;
        format
    }

    /// Appends `rec` as one binary row; `None` (and `out` as it was) when a value has no
    /// binary spelling this module is sure of.
    fn push_binary(&self, rec: &Record, out: &mut Vec<u8>) -> Option<()> {
        let start = out.len();
        let row = (|| {
            out.extend_from_slice(&i16::try_from(self.fields.len()).ok()?.to_be_bytes());
            for &(i, enc) in &self.fields {
                match rec.get(i) {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => enc?.encode(v, out)?,
                }
            }
            Some(())
        })();
        if row.is_none() {
            out.truncate(start);
        }
        row
    }

    /// CSV in COPY's default dialect: every value quoted, so NULL (an empty unquoted field) and
    /// the empty string (`""`) stay apart whatever dialect the input used.
    fn encode_csv(&self, rows: &[Record], out: &mut Vec<u8>, layout: &mut Layout) {
        let mut line = 1;
        for rec in rows {
            layout.copy_lines.push(line);
            line += 1;
            for (n, &(i, _)) in self.fields.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                if let Some(v) = rec.get(i) {
                    out.push(b'"');
                    for &b in v {
                        match b {
                            b'"' => out.push(b'"'),
                            b'\n' => line += 1,
                            _ => {}
                        }
                        out.push(b);
                    }
                    out.push(b'"');
                }
            }
            out.push(b'\n');
            layout.row_ends.push(out.len());
        }
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Option<()> {
    out.extend_from_slice(&i32::try_from(len).ok()?.to_be_bytes());
    Some(())
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // A value over 1 GiB is refused by the server in either format; the length word cannot
    // overflow for anything the reader accepts (records are capped far below that).
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn parse_bool(v: &[u8]) -> Option<bool> {
    const TRUE: [&[u8]; 6] = [b"t", b"true", b"y", b"yes", b"on", b"1"];
    const FALSE: [&[u8]; 6] = [b"f", b"false", b"n", b"no", b"off", b"0"];
    if TRUE.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(true)
    } else if FALSE.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(false)
    } else {
        None
    }
}

/// `[+-]digits`, nothing else (no spaces, underscores or hex, which vary by server version).
fn parse_int(v: &[u8]) -> Option<i64> {
    let (neg, digits) = split_sign(v);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?.checked_add(if neg { -d } else { d })?;
    }
    Some(n)
}

fn split_sign(v: &[u8]) -> (bool, &[u8]) {
    match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    }
}

trait Float: std::str::FromStr + Copy {
    fn is_normal_or_zero(self) -> bool;
    fn is_zero(self) -> bool;
}

impl Float for f32 {
    fn is_normal_or_zero(self) -> bool {
        self.is_normal() || self == 0.0
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

impl Float for f64 {
    fn is_normal_or_zero(self) -> bool {
        self.is_normal() || self == 0.0
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

/// Plain decimal or exponent notation with a finite, normal result; the server's strtod
/// rounds the same way Rust's parser does. Infinity, NaN, overflow and underflow are left
/// to the server, whose answer (or error) is the reference.
fn parse_float<F: Float>(v: &[u8]) -> Option<F> {
    if v.is_empty()
        || !v
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    let x: F = std::str::from_utf8(v).ok()?.parse().ok()?;
    if !x.is_normal_or_zero() {
        return None;
    }
    let mantissa = v.split(|b| matches!(b, b'e' | b'E')).next()?;
    if x.is_zero() && mantissa.iter().any(|b| (b'1'..=b'9').contains(b)) {
        return None; // underflow: the server reports it as out of range
    }
    Some(x)
}

/// `[+-]digits[.digits]` into Postgres's base-10000 representation; the server rounds to the
/// column's scale exactly as it rounds text input.
fn encode_numeric(v: &[u8], out: &mut Vec<u8>) -> Option<()> {
    const NUMERIC_NEG: u16 = 0x4000;
    // Longer spellings go to the server as text.
    const MAX_DIGITS: usize = 1000;
    let (neg, rest) = split_sign(v);
    if rest.len() > MAX_DIGITS {
        return None;
    }
    let (int, frac) = match rest.iter().position(|&b| b == b'.') {
        Some(dot) => (&rest[..dot], &rest[dot + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if int.is_empty() && frac.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let dscale = u16::try_from(frac.len()).ok()?;
    // Base-10000 digits: the integer part padded on the left, the fraction on the right. On
    // the stack: at most MAX_DIGITS decimal digits, so at most this many groups.
    const MAX_GROUPS: usize = MAX_DIGITS / 4 + 2;
    let mut groups = [0i16; MAX_GROUPS];
    let mut n = 0;
    let int_groups = int.len().div_ceil(4);
    let pad = int_groups * 4 - int.len();
    let mut acc = 0i16;
    for (i, &d) in std::iter::repeat_n(&b'0', pad).chain(int).enumerate() {
        acc = acc * 10 + i16::from(d - b'0');
        if i % 4 == 3 {
            groups[n] = acc;
            n += 1;
            acc = 0;
        }
    }
    for chunk in frac.chunks(4) {
        let mut g = 0i16;
        for i in 0..4 {
            g = g * 10 + chunk.get(i).map_or(0, |d| i16::from(d - b'0'));
        }
        groups[n] = g;
        n += 1;
    }
    let leading = groups[..n].iter().take_while(|&&g| g == 0).count();
    let significant = groups[leading..n].len()
        - groups[leading..n]
            .iter()
            .rev()
            .take_while(|&&g| g == 0)
            .count();
    let digits = &groups[leading..leading + significant];
    let (weight, sign) = if digits.is_empty() {
        (0, 0)
    } else {
        let weight = int_groups as i32 - 1 - leading as i32;
        (weight, if neg { NUMERIC_NEG } else { 0 })
    };
    let weight = i16::try_from(weight).ok()?;
    put_len(out, 8 + 2 * digits.len())?;
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in digits {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(())
}

/// The canonical 8-4-4-4-12 form or 32 bare hex digits, either case.
fn parse_uuid(v: &[u8]) -> Option<[u8; 16]> {
    let dashed = match v.len() {
        36 => true,
        32 => false,
        _ => return None,
    };
    let mut out = [0u8; 16];
    let mut nibble = 0;
    for (i, &b) in v.iter().enumerate() {
        if dashed && matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
            continue;
        }
        out[nibble / 2] |= hex_val(b)? << if nibble % 2 == 0 { 4 } else { 0 };
        nibble += 1;
    }
    Some(out)
}

fn hex_val(b: u8) -> Option<u8> {
    Some(HEX_DIGITS[usize::from(b)]).filter(|&d| d != NOT_HEX)
}

fn digits_at(v: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = v.get(at..at + n)?;
    s.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Days from 2000-01-01 (Postgres's epoch) to a proleptic Gregorian date.
pub fn days_since_2000(year: i64, month: u32, day: u32) -> i64 {
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 - 10_957
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        _ => 28,
    }
}

/// `YYYY-MM-DD`, year 1 to 9999.
fn parse_date(v: &[u8]) -> Option<i32> {
    if v.len() != 10 {
        return None;
    }
    parse_ymd(v).map(|d| d as i32)
}

fn parse_ymd(v: &[u8]) -> Option<i64> {
    let (y, m, d) = (
        digits_at(v, 0, 4)?,
        digits_at(v, 5, 2)?,
        digits_at(v, 8, 2)?,
    );
    if v.get(4) != Some(&b'-') || v.get(7) != Some(&b'-') {
        return None;
    }
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_since_2000(i64::from(y), m, d))
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]]`, then for timestamptz an offset (`Z`, `±HH`,
/// `±HH:MM`, `±HHMM`) which must be there, and for timestamp none (the server would ignore
/// it silently). Microseconds since 2000-01-01 00:00 UTC.
fn parse_timestamp(v: &[u8], with_zone: bool) -> Option<i64> {
    let days = parse_ymd(v)?;
    if !matches!(v.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (h, mi) = (digits_at(v, 11, 2)?, digits_at(v, 14, 2)?);
    if v.get(13) != Some(&b':') || h > 23 || mi > 59 {
        return None;
    }
    let mut pos = 16;
    let mut secs = 0;
    let mut micros = 0i64;
    if v.get(pos) == Some(&b':') {
        secs = digits_at(v, pos + 1, 2)?;
        if secs > 59 {
            return None;
        }
        pos += 3;
        if v.get(pos) == Some(&b'.') {
            let frac: Vec<u8> = v[pos + 1..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            if frac.is_empty() || frac.len() > 6 {
                return None; // more than 6 digits: the server rounds; let it
            }
            micros = i64::from(digits_at(&frac, 0, frac.len())?) * 10i64.pow(6 - frac.len() as u32);
            pos += 1 + frac.len();
        }
    }
    let rest = &v[pos..];
    let offset_secs = if with_zone {
        parse_offset(rest)?
    } else if rest.is_empty() {
        0
    } else {
        return None;
    };
    let secs_of_day = i64::from(h * 3600 + mi * 60 + secs);
    Some((days * 86_400 + secs_of_day - offset_secs) * 1_000_000 + micros)
}

fn parse_offset(v: &[u8]) -> Option<i64> {
    if v == b"Z" || v == b"z" {
        return Some(0);
    }
    let sign = match v.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = digits_at(v, 1, 2)?;
    let m = match v.len() {
        3 => 0,
        5 => digits_at(v, 3, 2)?,
        6 if v[3] == b':' => digits_at(v, 4, 2)?,
        _ => return None,
    };
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * i64::from(h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: Encoder, v: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        e.encode(v.as_bytes(), &mut out).map(|_| out[4..].to_vec())
    }

    #[test]
    fn numeric_matches_postgres_base_10000_layout() {
        // 12.5 → ndigits 2, weight 0, pos, dscale 1, digits [12, 5000]
        assert_eq!(
            enc(Encoder::Numeric, "12.5").unwrap(),
            [0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88]
        );
        // -0.00 is zero with scale 2 and a positive sign
        assert_eq!(
            enc(Encoder::Numeric, "-0.00").unwrap(),
            [0, 0, 0, 0, 0, 0, 0, 2]
        );
        // 0.00001 → one digit 1000 at weight -2
        assert_eq!(
            enc(Encoder::Numeric, "0.00001").unwrap(),
            [0, 1, 0xff, 0xfe, 0, 0, 0, 5, 0x03, 0xe8]
        );
        // 100000000 → [1, 0, 0] trailing zeros stripped: one digit 1 at weight 2
        assert_eq!(
            enc(Encoder::Numeric, "-100000000").unwrap(),
            [0, 1, 0, 2, 0x40, 0, 0, 0, 0, 1]
        );
        for refused in ["", ".", "1e5", "NaN", " 1", "1,5", "--1", "Infinity"] {
            assert!(enc(Encoder::Numeric, refused).is_none(), "{refused:?}");
        }
        // The longest accepted values fill the groups kept on the stack, no more.
        for long in [
            "9".repeat(1000),
            format!("1.{}", "7".repeat(998)),
            format!("{}.{}", "3".repeat(997), "1".repeat(2)),
        ] {
            let encoded = enc(Encoder::Numeric, &long).unwrap();
            let ndigits = i16::from_be_bytes([encoded[0], encoded[1]]) as usize;
            assert_eq!(encoded.len(), 8 + 2 * ndigits);
        }
        assert!(enc(Encoder::Numeric, &"9".repeat(1001)).is_none());
        assert!(enc(Encoder::Numeric, ".5").is_some());
        assert!(enc(Encoder::Numeric, "5.").is_some());
    }

    #[test]
    fn dates_and_timestamps_count_from_2000() {
        assert_eq!(parse_date(b"2000-01-01"), Some(0));
        assert_eq!(parse_date(b"1999-12-31"), Some(-1));
        assert_eq!(parse_date(b"2024-02-29"), Some(8825));
        assert_eq!(parse_date(b"2023-02-29"), None);
        assert_eq!(parse_date(b"0000-01-01"), None);
        assert_eq!(parse_timestamp(b"2000-01-01T00:00:00Z", true), Some(0));
        assert_eq!(
            parse_timestamp(b"2000-01-01 02:00:00+02", true),
            Some(0),
            "offsets are subtracted"
        );
        assert_eq!(
            parse_timestamp(b"1999-12-31T17:00:00.5-0700", true),
            Some(500_000)
        );
        assert_eq!(
            parse_timestamp(b"2000-01-01 00:00:01.25+05:30", true),
            Some(1_250_000 - 19_800_000_000)
        );
        assert_eq!(parse_timestamp(b"2000-01-01 00:00", false), Some(0));
        // no offset on timestamptz, an offset on timestamp, leap second, 7 fraction digits
        for refused in [
            &b"2000-01-01 00:00:00"[..],
            b"2000-01-01 23:59:60Z",
            b"2000-01-01 00:00:00.1234567Z",
            b"2000-01-01 24:00:00Z",
            b"epoch",
        ] {
            assert_eq!(parse_timestamp(refused, true), None);
        }
        assert_eq!(parse_timestamp(b"2000-01-01 00:00:00Z", false), None);
    }

    #[test]
    fn scalars_refuse_what_the_server_might_read_differently() {
        assert_eq!(parse_bool(b"TRUE"), Some(true));
        assert_eq!(parse_bool(b"off"), Some(false));
        assert_eq!(parse_bool(b"tr"), None);
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        assert_eq!(parse_int(b"1_000"), None);
        assert_eq!(parse_int(b" 1"), None);
        assert!(enc(Encoder::Int2, "40000").is_none());
        assert_eq!(parse_float::<f64>(b"1.5e3"), Some(1500.0));
        assert_eq!(parse_float::<f64>(b"1e400"), None);
        assert_eq!(parse_float::<f64>(b"1e-400"), None);
        assert_eq!(parse_float::<f64>(b"inf"), None);
        assert_eq!(parse_float::<f32>(b"0.0"), Some(0.0));
        assert_eq!(
            parse_uuid(b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            parse_uuid(b"a0eebc999c0b4ef8bb6d6bb9bd380a11")
        );
        assert_eq!(parse_uuid(b"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"), None);
    }

    proptest::proptest! {
        /// Any subset of a batch's rows, picked from its payload, is the payload those rows
        /// would have on their own, in either format.
        #[test]
        fn selected_rows_are_the_payload_of_those_rows_alone(
            text in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(
                        vec![b'1', b'x', b',', b'"', b'\n', b'\r', 0, 0xff, b' ']
                    ),
                    proptest::num::u8::ANY,
                ],
                0..200,
            ),
            keep_mask in proptest::collection::vec(proptest::bool::ANY, 0..64),
            binary in proptest::bool::ANY,
        ) {
            use crate::input::csv::{CsvReader, Dialect};
            let mut reader = CsvReader::new(&text[..], Dialect::default());
            let mut rows = Vec::new();
            let mut rec = Record::default();
            while let Ok(true) = reader.read(&mut rec) {
                if rec.len() == 2 {
                    rows.push(rec.clone());
                }
            }
            let encoders = if binary {
                vec![Some(Encoder::Int4), Some(Encoder::Text)]
            } else {
                vec![None, None]
            };
            let enc = RowEncoder::new(encoders, true);
            let (mut out, mut layout) = (Vec::new(), Layout::default());
            let format = enc.encode(&rows, &mut out, &mut layout);
            let keep: Vec<usize> = (0..rows.len())
                .filter(|&i| keep_mask.get(i).copied().unwrap_or(true))
                .collect();
            let mut picked = Vec::new();
            let picked_layout = select_rows(format, &out, &layout, &keep, &mut picked);
            let alone: Vec<Record> = keep.iter().map(|&i| rows[i].clone()).collect();
            let (mut want, mut want_layout) = (Vec::new(), Layout::default());
            // In the batch's own format: the rows alone might be encodable in binary.
            match format {
                Format::Binary => {
                    let encoded = enc.encode(&alone, &mut want, &mut want_layout);
                    proptest::prop_assert_eq!(encoded, Format::Binary);
                }
                Format::Csv => enc.encode_csv(&alone, &mut want, &mut want_layout),
            }
            proptest::prop_assert_eq!(picked, want);
            proptest::prop_assert_eq!(picked_layout, want_layout);
        }
    }

    #[test]
    fn a_refused_value_sends_the_whole_batch_as_csv() {
        use crate::input::csv::{CsvReader, Dialect};
        let mut reader = CsvReader::new(&b"1,x\n2,\"\"\n3,\n"[..], Dialect::default());
        let mut rows = Vec::new();
        let mut rec = Record::default();
        while reader.read(&mut rec).unwrap() {
            rows.push(rec.clone());
        }
        let enc = RowEncoder::new(vec![Some(Encoder::Int4), Some(Encoder::Text)], true);
        let (mut out, mut layout) = (Vec::new(), Layout::default());
        assert_eq!(enc.encode(&rows, &mut out, &mut layout), Format::Binary);
        assert!(layout.copy_lines.is_empty());
        // Rows 1 and 3 alone are the payload of a batch of those two rows.
        let mut picked = Vec::new();
        let picked_layout = select_rows(Format::Binary, &out, &layout, &[0, 2], &mut picked);
        let mut alone = Vec::new();
        let alone_layout = {
            let mut l = Layout::default();
            enc.encode(&[rows[0].clone(), rows[2].clone()], &mut alone, &mut l);
            l
        };
        assert_eq!((picked.clone(), picked_layout), (alone, alone_layout));
        rows[1] = {
            let mut r = Record::default();
            CsvReader::new(&b"0x10,\"\"\n"[..], Dialect::default())
                .read(&mut r)
                .unwrap();
            r
        };
        assert_eq!(enc.encode(&rows, &mut out, &mut layout), Format::Csv);
        assert_eq!(out, b"\"1\",\"x\"\n\"0x10\",\"\"\n\"3\",\n");
        assert_eq!(layout.copy_lines, [1, 2, 3]);
        assert_eq!(layout.row_ends, [8, 18, 23]);
    }

    #[test]
    fn csv_copy_lines_count_newlines_inside_values() {
        use crate::input::csv::{CsvReader, Dialect};
        let mut reader =
            CsvReader::new(&b"1,\"a\nb\nc\"\n2,x\n3,\"\r\n\"\n"[..], Dialect::default());
        let mut rows = Vec::new();
        let mut rec = Record::default();
        while reader.read(&mut rec).unwrap() {
            rows.push(rec.clone());
        }
        let enc = RowEncoder::new(vec![Some(Encoder::Int4), None], true);
        let (mut out, mut layout) = (Vec::new(), Layout::default());
        assert_eq!(enc.encode(&rows, &mut out, &mut layout), Format::Csv);
        assert_eq!(layout.copy_lines, [1, 4, 5]);
        let mut picked = Vec::new();
        let picked_layout = select_rows(Format::Csv, &out, &layout, &[1, 2], &mut picked);
        assert_eq!(picked_layout.copy_lines, [1, 2]);
        assert_eq!(picked, b"\"2\",\"x\"\n\"3\",\"\r\n\"\n");
    }
}
