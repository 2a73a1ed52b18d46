//! Client-side checks: the stage between reading and batching that refuses, before anything
//! is sent, the rows the server would certainly refuse, and says why in the DBA's terms
//! (line, column, value, reason).
//!
//! The rule is that a check never refuses a value PostgreSQL accepts: where the server's
//! parser has any latitude (whitespace, other spellings, newer versions' syntax), the value
//! goes to the server, whose COPY error names line and column anyway. What is checked:
//! the field count, NUL bytes and invalid UTF-8 (which no text encoding conversion lets
//! through), the length limit of `varchar(n)`/`char(n)` (counted in characters, with the
//! server's silent truncation of trailing spaces), and booleans, integers and uuids that
//! no PostgreSQL version parses.

use super::csv::Record;
use crate::db::catalog::Table;
use crate::error::Rejection;

/// The checks for one target table's columns, in CSV order.
#[derive(Debug, Clone)]
pub struct Checker {
    fields: Vec<FieldCheck>,
}

#[derive(Debug, Clone)]
struct FieldCheck {
    column: String,
    /// The column's type as `format_type` names it, for messages.
    type_name: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `varchar(n)`, `char(n)`: at most n characters (trailing spaces beyond are cut).
    Chars(usize),
    Bool,
    /// smallint, integer, bigint: the bit width.
    Int(u32),
    Uuid,
    /// Only the encoding checks.
    Any,
}

const VARCHAR: u32 = 1043;
const BPCHAR: u32 = 1042;
/// `atttypmod` of `varchar(n)`/`char(n)` is n plus this header size.
const VARHDRSZ: i32 = 4;

impl Checker {
    /// Checks for `columns` (target columns in CSV order) of `table`.
    pub fn new(table: &Table, columns: &[String]) -> Self {
        let fields = columns
            .iter()
            .map(|name| {
                let col = table.column(name);
                let kind = col.map_or(Kind::Any, |c| match c.type_oid {
                    VARCHAR | BPCHAR if c.type_mod >= VARHDRSZ => {
                        Kind::Chars((c.type_mod - VARHDRSZ) as usize)
                    }
                    16 => Kind::Bool,
                    21 => Kind::Int(16),
                    23 => Kind::Int(32),
                    20 => Kind::Int(64),
                    2950 => Kind::Uuid,
                    _ => Kind::Any,
                });
                FieldCheck {
                    column: name.clone(),
                    type_name: col.map(|c| c.type_name.clone()).unwrap_or_default(),
                    kind,
                }
            })
            .collect();
        Checker { fields }
    }

    /// Only the field count, for `width`-field records whose values go nowhere a type
    /// matters (purge's key files check their keys on the server).
    pub fn width_only(width: usize) -> Self {
        let fields = (0..width)
            .map(|i| FieldCheck {
                column: format!("field {}", i + 1),
                type_name: String::new(),
                kind: Kind::Any,
            })
            .collect();
        Checker { fields }
    }

    /// Why the server would refuse `rec`, if it certainly would. The rejection's `raw` is
    /// left empty: the caller adds the record's text when it keeps rejects.
    pub fn check(&self, rec: &Record) -> Result<(), Box<Rejection>> {
        let refuse =
            |column: Option<&str>, sqlstate: &str, reason: String, value: Option<&[u8]>| {
                Box::new(Rejection {
                    line: rec.line(),
                    column: column.map(str::to_string),
                    sqlstate: sqlstate.to_string(),
                    reason,
                    value: value.map(shorten),
                    raw: Vec::new(),
                })
            };
        if rec.unterminated() {
            let reason = "unterminated quoted field: a quote opened here is never closed, so \
                          the record runs to the end of the input"
                .to_string();
            return Err(refuse(None, "22P04", reason, None));
        }
        if let Some(bad) = rec.bad_line_end() {
            return Err(refuse(None, "22P04", bad.to_string(), None));
        }
        if rec.len() != self.fields.len() {
            let reason = format!(
                "expected {} fields (as in the header), found {}",
                self.fields.len(),
                rec.len()
            );
            return Err(refuse(None, "22P04", reason, None));
        }
        // One pass over the whole record settles the encoding of every field, nearly always.
        let clean = rec.is_clean_text();
        for (i, field) in self.fields.iter().enumerate() {
            if clean && field.kind == Kind::Any {
                continue;
            }
            let Some(v) = rec.get(i) else { continue };
            if let Some((sqlstate, reason, show)) = field.problem(v, clean) {
                return Err(refuse(
                    Some(&field.column),
                    sqlstate,
                    reason,
                    show.then_some(v),
                ));
            }
        }
        Ok(())
    }
}

impl FieldCheck {
    /// (SQLSTATE the server would give, reason, whether to show the value apart from the
    /// reason) for a value the server would refuse; `clean`: its encoding is known to be
    /// valid UTF-8 without NUL.
    fn problem(&self, v: &[u8], clean: bool) -> Option<(&'static str, String, bool)> {
        if !clean && let Some(problem) = encoding_problem(v) {
            return Some(problem);
        }
        let syntax = |what: &str| {
            let reason = format!("invalid input syntax for type {what}: {}", shorten(v));
            Some(("22P02", reason, false))
        };
        match self.kind {
            Kind::Any => None,
            Kind::Chars(max) => {
                // Characters never outnumber bytes: most values are settled by their length.
                if v.len() <= max {
                    return None;
                }
                let text = std::str::from_utf8(v).ok()?;
                let chars = text.chars().count();
                let beyond = text
                    .char_indices()
                    .nth(max)
                    .map_or("", |(at, _)| &text[at..]);
                if beyond.bytes().all(|b| b == b' ') {
                    return None; // the server cuts trailing spaces silently
                }
                let reason = format!(
                    "value too long for type {} ({chars} characters)",
                    self.type_name
                );
                Some(("22001", reason, true))
            }
            Kind::Bool => (!is_bool(trim_space(v)))
                .then(|| syntax("boolean"))
                .flatten(),
            Kind::Int(bits) => {
                let name = match bits {
                    16 => "smallint",
                    32 => "integer",
                    _ => "bigint",
                };
                match int_verdict(trim_space(v), bits) {
                    IntVerdict::Unsure => None,
                    IntVerdict::Syntax => syntax(name),
                    IntVerdict::OutOfRange => {
                        let reason =
                            format!("value {} is out of range for type {name}", shorten(v));
                        Some(("22003", reason, false))
                    }
                }
            }
            Kind::Uuid => {
                // Without branches per byte: every value of the column passes here.
                let (mut hex_digits, mut other) = (0, false);
                for &b in v {
                    let hex = HEX_DIGITS[usize::from(b)] != NOT_HEX;
                    hex_digits += usize::from(hex);
                    other |= !hex && !matches!(b, b'-' | b'{' | b'}');
                }
                (other || hex_digits != 32)
                    .then(|| syntax("uuid"))
                    .flatten()
            }
        }
    }
}

/// The NUL byte or invalid UTF-8 in `v`, which no text encoding conversion lets through.
fn encoding_problem(v: &[u8]) -> Option<(&'static str, String, bool)> {
    // `contains` on bytes is memchr; the position is only needed for a message.
    if v.contains(&0)
        && let Some(at) = v.iter().position(|&b| b == 0)
    {
        let reason = format!(
            "NUL byte at byte {} of the value (PostgreSQL text cannot hold NUL)",
            at + 1
        );
        return Some(("22021", reason, true));
    }
    let e = std::str::from_utf8(v).err()?;
    let at = e.valid_up_to();
    let bad = &v[at..at + e.error_len().unwrap_or(v.len() - at)];
    let hex: Vec<String> = bad.iter().map(|b| format!("0x{b:02x}")).collect();
    let reason = format!(
        "invalid UTF-8 at byte {} of the value ({})",
        at + 1,
        hex.join(" ")
    );
    Some(("22021", reason, true))
}

/// Each byte's value as a hex digit, or [`NOT_HEX`].
pub const HEX_DIGITS: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => NOT_HEX,
        };
        b += 1;
    }
    table
};
pub const NOT_HEX: u8 = 0xff;

/// Trims what C's `isspace` calls space, as the server's number and boolean parsers do.
fn trim_space(v: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    let start = v.iter().position(|b| !space(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !space(b)).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Exactly the spellings of the server's `parse_bool`: a prefix of true, false, yes or no,
/// `on`, `of`/`off`, `1` or `0`, any case.
fn is_bool(v: &[u8]) -> bool {
    let prefix_of = |word: &[u8], min: usize| {
        v.len() >= min && v.len() <= word.len() && word[..v.len()].eq_ignore_ascii_case(v)
    };
    match v.first().map(u8::to_ascii_lowercase) {
        Some(b't') => prefix_of(b"true", 1),
        Some(b'f') => prefix_of(b"false", 1),
        Some(b'y') => prefix_of(b"yes", 1),
        Some(b'n') => prefix_of(b"no", 1),
        Some(b'o') => prefix_of(b"on", 2) || prefix_of(b"off", 2),
        Some(b'1' | b'0') => v.len() == 1,
        _ => false,
    }
}

enum IntVerdict {
    /// Possibly valid (in some server version's syntax): the server decides.
    Unsure,
    Syntax,
    OutOfRange,
}

/// Refuses only what no server version reads as an integer: nothing there, bytes outside
/// digits, signs and the hex/octal/binary/underscore syntax of PostgreSQL 16, or plain
/// decimal digits out of the type's range.
fn int_verdict(v: &[u8], bits: u32) -> IntVerdict {
    if v.is_empty()
        || !v
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b"+-_xXoObB".contains(b))
    {
        return IntVerdict::Syntax;
    }
    let digits = v.strip_prefix(b"-").or(v.strip_prefix(b"+")).unwrap_or(v);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return IntVerdict::Unsure;
    }
    let significant = digits
        .iter()
        .position(|&b| b != b'0')
        .map_or(&[][..], |p| &digits[p..]);
    if significant.len() > 20 {
        return IntVerdict::OutOfRange;
    }
    let magnitude: i128 = significant
        .iter()
        .fold(0, |n, &d| n * 10 + i128::from(d - b'0'));
    let value = if v[0] == b'-' { -magnitude } else { magnitude };
    let limit = 1i128 << (bits - 1);
    if value < -limit || value >= limit {
        IntVerdict::OutOfRange
    } else {
        IntVerdict::Unsure
    }
}

/// Characters of a value shown in a message; longer values are cut.
const SHOWN_CHARS: usize = 40;

/// A value for a message: quoted, its first `SHOWN_CHARS` characters with control
/// characters escaped and invalid UTF-8 shown as `\xNN`, and `…` when cut.
pub fn shorten(v: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut shown = 0;
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown == SHOWN_CHARS {
                out.push_str("\"…");
                return out;
            }
            shown += 1;
            out.extend(c.escape_debug());
        }
        for b in chunk.invalid() {
            if shown == SHOWN_CHARS {
                out.push_str("\"…");
                return out;
            }
            shown += 1;
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: Kind) -> FieldCheck {
        FieldCheck {
            column: "c".into(),
            type_name: "character varying(3)".into(),
            kind,
        }
    }

    fn code(kind: Kind, v: &[u8]) -> Option<&'static str> {
        field(kind).problem(v, false).map(|(code, _, _)| code)
    }

    #[test]
    fn encoding_problems_name_the_byte() {
        let (sqlstate, reason, _) = field(Kind::Any).problem(b"ab\xffcd", false).unwrap();
        assert_eq!(sqlstate, "22021");
        assert!(
            reason.contains("byte 3") && reason.contains("0xff"),
            "{reason}"
        );
        let (_, reason, _) = field(Kind::Any).problem(b"abcdef\0", false).unwrap();
        assert!(reason.contains("NUL byte at byte 7"), "{reason}");
        assert_eq!(code(Kind::Any, "żółw".as_bytes()), None);
    }

    #[test]
    fn lengths_count_characters_and_forgive_trailing_spaces() {
        assert_eq!(code(Kind::Chars(3), "żół".as_bytes()), None);
        assert_eq!(code(Kind::Chars(3), b"abc   "), None);
        assert_eq!(code(Kind::Chars(3), b"abcd"), Some("22001"));
        assert_eq!(code(Kind::Chars(3), b"ab  x"), Some("22001"));
        assert_eq!(code(Kind::Chars(3), b"abc\t"), Some("22001"));
    }

    #[test]
    fn only_certain_type_errors_are_refused() {
        for ok in [&b"t"[..], b" TRUE ", b"of", b"off", b"1", b"Ye", b"n"] {
            assert_eq!(code(Kind::Bool, ok), None, "{ok:?}");
        }
        for bad in [&b"o"[..], b"truee", b"2", b"", b"yess"] {
            assert_eq!(code(Kind::Bool, bad), Some("22P02"), "{bad:?}");
        }
        for unsure in [
            &b" 12 "[..],
            b"0x1F",
            b"1_000",
            b"-0",
            b"\x0b5",
            b"00000000000000000000000000001",
        ] {
            assert_eq!(code(Kind::Int(32), unsure), None, "{unsure:?}");
        }
        assert_eq!(code(Kind::Int(32), b"1.5"), Some("22P02"));
        assert_eq!(code(Kind::Int(32), b"  "), Some("22P02"));
        assert_eq!(code(Kind::Int(32), b"2147483648"), Some("22003"));
        assert_eq!(code(Kind::Int(32), b"-2147483648"), None);
        assert_eq!(code(Kind::Int(16), b"40000"), Some("22003"));
        assert_eq!(
            code(Kind::Int(64), b"99999999999999999999999"),
            Some("22003")
        );
        assert_eq!(
            code(Kind::Uuid, b"{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}"),
            None
        );
        assert_eq!(code(Kind::Uuid, b"not-a-uuid"), Some("22P02"));
        assert_eq!(
            code(Kind::Uuid, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"),
            Some("22P02")
        );
    }

    proptest::proptest! {
        /// No value makes a check or a message panic, and whatever a check refuses it
        /// explains with a SQLSTATE of class 22.
        #[test]
        fn checks_never_panic(v in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let kinds = [
                Kind::Any,
                Kind::Chars(0),
                Kind::Chars(3),
                Kind::Bool,
                Kind::Int(16),
                Kind::Int(64),
                Kind::Uuid,
            ];
            for kind in kinds {
                if let Some((sqlstate, reason, _)) = field(kind).problem(&v, false) {
                    proptest::prop_assert!(sqlstate.starts_with("22") && !reason.is_empty());
                }
            }
            proptest::prop_assert!(shorten(&v).starts_with('"'));
        }
    }

    #[test]
    fn shortened_values_are_escaped_and_cut() {
        assert_eq!(shorten(b"a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(shorten(b"a\xffb"), "\"a\\xffb\"");
        let long = "x".repeat(50);
        assert_eq!(shorten(long.as_bytes()), format!("\"{}\"…", "x".repeat(40)));
    }
}
