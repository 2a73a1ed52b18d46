//! Values of one column as COPY's text input: the generator a type and its constraints
//! call for, and, for a unique column, the row's number worked into every value.

use std::fmt::Write as _;

use super::fake::Fake;
use crate::generate::calendar::civil_from_days;
use crate::generate::rng::Rng;

/// Inclusive ranges of integers (units of a scaled number, days, seconds), one picked at
/// random per value.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranges(pub Vec<(i128, i128)>);

impl Ranges {
    pub fn one(lo: i128, hi: i128) -> Ranges {
        Ranges(vec![(lo, hi)])
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|(lo, hi)| lo > hi)
    }

    /// Each range cut to `lo..=hi`; empty ones dropped.
    pub fn clamp(&self, lo: i128, hi: i128) -> Ranges {
        Ranges(
            self.0
                .iter()
                .map(|&(a, b)| (a.max(lo), b.min(hi)))
                .filter(|(a, b)| a <= b)
                .collect(),
        )
    }

    /// Each range narrowed to `lo..=hi` where they overlap, else to its part nearest to it,
    /// as wide: a realistic window (birth dates of adults) where the constraints allow, and
    /// values near it where they rule it out (a partition of the years before 2020 gets the
    /// 2010s, not the Bronze Age).
    pub fn prefer(&self, lo: i128, hi: i128) -> Ranges {
        let width = hi.saturating_sub(lo);
        Ranges(
            self.0
                .iter()
                .map(|&(a, b)| {
                    if b < lo {
                        (a.max(b.saturating_sub(width)), b)
                    } else if a > hi {
                        (a, b.min(a.saturating_add(width)))
                    } else {
                        (a.max(lo), b.min(hi))
                    }
                })
                .collect(),
        )
    }

    /// How many values the ranges hold (saturating).
    pub fn size(&self) -> u128 {
        self.0
            .iter()
            .map(|(lo, hi)| (hi - lo) as u128 + 1)
            .fold(0u128, u128::saturating_add)
    }

    fn pick(&self, rng: &mut Rng) -> i128 {
        let &(lo, hi) = rng.pick(&self.0);
        rng.between(lo, hi)
    }

    /// The `i`-th value in order, if there are that many.
    fn nth(&self, mut i: u128) -> Option<i128> {
        for &(lo, hi) in &self.0 {
            let size = (hi - lo) as u128 + 1;
            if i < size {
                return Some(lo + i as i128);
            }
            i -= size;
        }
        None
    }
}

/// Where a number's, date's or timestamp's values fall: `usual` in general (a realistic
/// window, where the constraints leave one), `unique` for a unique column's, counted up from
/// the window's start through all the constraints allow.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub usual: Ranges,
    pub unique: Ranges,
}

impl Span {
    fn pick(&self, rng: &mut Rng, row: Row, unique: bool) -> i128 {
        if unique && let Some(v) = self.unique.nth(u128::from(row.index)) {
            return v;
        }
        self.usual.pick(rng)
    }
}

/// Text of a length (in characters) and maybe a pattern.
#[derive(Debug, Clone)]
pub struct Text {
    pub fake: Option<Fake>,
    pub min: usize,
    pub max: usize,
    pub pattern: Option<Pattern>,
}

/// A regular expression a value must match, and a generator of strings that match it.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub check: regex::Regex,
    pub generate: rand_regex::Regex,
}

impl Pattern {
    /// `None` when the pattern is one the generator cannot make strings for.
    pub fn new(pattern: &str) -> Option<Pattern> {
        let check = regex::Regex::new(&ascii_classes(pattern, false)).ok()?;
        let made = ascii_classes(pattern, true);
        // The generator cannot take anchors; a string that matches the whole pattern without
        // them matches it with them.
        let inner = made.strip_prefix('^').unwrap_or(&made);
        let inner = match inner.strip_suffix('$') {
            Some(s) if !s.ends_with('\\') => s,
            _ => inner,
        };
        let generate = rand_regex::Regex::compile(inner, 8).ok()?;
        Some(Pattern { check, generate })
    }
}

/// `pattern` with `\d`, `\w` and `\s` spelled as the ASCII classes they are in the
/// server's regular expressions (in Rust's they are Unicode's), and with `dots` each `.`
/// outside a class made a lowercase letter: what a generated string holds.
fn ascii_classes(pattern: &str, dots: bool) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('d' | 'w' | 's')) => {
                    let class = match e {
                        'd' => "0-9",
                        'w' => "A-Za-z0-9_",
                        _ => " \\t",
                    };
                    if in_class {
                        out.push_str(class);
                    } else {
                        out.push('[');
                        out.push_str(class);
                        out.push(']');
                    }
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // `^` and then `]` first in a class are not its end.
                let mut ahead = chars.clone();
                if ahead.next() == Some('^') {
                    out.push(chars.next().expect("looked ahead"));
                }
                let mut ahead = chars.clone();
                if ahead.next() == Some(']') {
                    out.push(chars.next().expect("looked ahead"));
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '.' if dots && !in_class => out.push_str("[a-z]"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone)]
pub enum Value {
    Bool,
    /// A number in units of 10^-scale.
    Number {
        span: Span,
        scale: u32,
    },
    Float {
        lo: f64,
        hi: f64,
    },
    Text(Text),
    Uuid,
    /// Days since 2000-01-01.
    Date(Span),
    /// Seconds since 2000-01-01 00:00 UTC.
    Timestamp {
        span: Span,
        zone: bool,
    },
    Time,
    Interval,
    Json,
    Bytea,
    Inet,
    Cidr,
    MacAddr,
    Money,
    Point,
    Tsvector,
    Xml,
    OneOf(Vec<String>),
    Array(Box<Value>),
}

/// What a row is: its place in this output (0-based) and its number, counting on from the
/// rows already in the table (1-based).
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub index: u64,
    pub number: u64,
}

impl Value {
    /// Whether a unique column of this kind can have a different value in every row.
    pub fn can_be_unique(&self) -> bool {
        matches!(
            self,
            Value::Number { .. }
                | Value::Date(_)
                | Value::Timestamp { .. }
                | Value::Uuid
                | Value::Text(_)
        )
    }

    /// Whether a unique text column's values (the realistic part and the row's number)
    /// match its pattern, tried on a few rows; when they do not, values made from the
    /// pattern alone may repeat.
    pub fn unique_matches_pattern(&self, domain: &str) -> bool {
        let Value::Text(text) = self else { return true };
        let Some(pattern) = &text.pattern else {
            return true;
        };
        let mut rng = Rng(0);
        (0..20).all(|n| {
            let mut s = String::new();
            text.candidate(&mut rng, Some(n), domain, &mut s);
            pattern.check.is_match(&s)
        })
    }

    /// How many different values a unique column of this kind has, if that is a limit.
    pub fn unique_values(&self) -> Option<u128> {
        match self {
            Value::Number { span, .. } | Value::Date(span) | Value::Timestamp { span, .. } => {
                Some(span.unique.size())
            }
            Value::Text(text) => Some(text.unique_values()),
            _ => None,
        }
    }

    /// Appends a value to `out`; `unique` works `row` into it. A unique column's values are
    /// enough for the rows (the plan checks [`Value::unique_values`]).
    pub fn write(&self, rng: &mut Rng, row: Row, unique: bool, domain: &str, out: &mut String) {
        match self {
            Value::Bool => out.push(if rng.chance(50) { 't' } else { 'f' }),
            Value::Number { span, scale } => write_scaled(span.pick(rng, row, unique), *scale, out),
            Value::Float { lo, hi } => {
                let unit = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                let _ = write!(out, "{:.4}", lo + (hi - lo) * unit);
            }
            Value::Text(text) => text.write(rng, unique.then_some(row.number), domain, out),
            Value::Uuid => {
                let (hi, lo) = (rng.next(), rng.next());
                let hi = (hi & !0xF000) | 0x4000;
                let lo = (lo & !(0xC << 60)) | (0x8 << 60);
                let _ = write!(
                    out,
                    "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    hi >> 32,
                    (hi >> 16) & 0xFFFF,
                    hi & 0xFFFF,
                    lo >> 48,
                    lo & 0xFFFF_FFFF_FFFF
                );
            }
            Value::Date(span) => write_date(span.pick(rng, row, unique) as i64, out),
            Value::Timestamp { span, zone } => {
                let secs = span.pick(rng, row, unique) as i64;
                write_date(secs.div_euclid(86_400), out);
                let s = secs.rem_euclid(86_400);
                let _ = write!(out, " {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
                if *zone {
                    out.push_str("+00");
                }
            }
            Value::Time => {
                let s = rng.below(86_400);
                let _ = write!(out, "{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
            }
            Value::Interval => {
                let s = rng.below(86_400);
                let _ = write!(
                    out,
                    "{} days {:02}:{:02}:{:02}",
                    rng.below(30),
                    s / 3600,
                    s / 60 % 60,
                    s % 60
                );
            }
            Value::Json => {
                let _ = write!(
                    out,
                    "{{\"source\": \"generate\", \"n\": {}, \"tag\": \"{}\"}}",
                    rng.below(1000),
                    rng.pick(fake_words())
                );
            }
            Value::Bytea => {
                out.push_str("\\x");
                for _ in 0..8 + rng.below(25) {
                    let _ = write!(out, "{:02x}", rng.below(256));
                }
            }
            Value::Inet => Fake::Ip.write(rng, None, domain, out),
            Value::Cidr => {
                let _ = write!(out, "10.{}.{}.0/24", rng.below(256), rng.below(256));
            }
            Value::MacAddr => {
                for i in 0..6 {
                    if i > 0 {
                        out.push(':');
                    }
                    let _ = write!(out, "{:02x}", rng.below(256));
                }
            }
            Value::Money => write_scaled(rng.between(0, 1_000_000), 2, out),
            Value::Point => {
                let _ = write!(
                    out,
                    "({},{})",
                    rng.between(-180_000, 180_000) as f64 / 1000.0,
                    rng.between(-90_000, 90_000) as f64 / 1000.0
                );
            }
            Value::Tsvector => {
                for i in 0..1 + rng.below(4) {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(rng.word(fake_words()));
                }
            }
            Value::Xml => {
                let _ = write!(out, "<note>{}</note>", rng.pick(fake_words()));
            }
            Value::OneOf(values) => out.push_str(rng.pick(values).as_str()),
            Value::Array(element) => {
                out.push('{');
                let mut item = String::new();
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    item.clear();
                    element.write(rng, row, false, domain, &mut item);
                    // Every element quoted: the array literal's rules, whatever the type.
                    out.push('"');
                    for c in item.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
                out.push('}');
            }
        }
    }
}

fn fake_words() -> &'static [&'static str] {
    <fake::locales::EN as fake::locales::Data>::LOREM_WORD
}

impl Text {
    /// Appends the text; `number` (a unique column's row number) is worked into it.
    fn write(&self, rng: &mut Rng, number: Option<u64>, domain: &str, out: &mut String) {
        let start = out.len();
        for _ in 0..20 {
            out.truncate(start);
            self.candidate(rng, number, domain, out);
            if self.fits(&out[start..]) {
                return;
            }
        }
        // The pattern wins over realism: a string made to match it.
        if let Some(pattern) = &self.pattern {
            for _ in 0..100 {
                let s: String = rng.sample(&pattern.generate);
                if self.fits(&s) {
                    out.truncate(start);
                    out.push_str(&s);
                    return;
                }
            }
        }
    }

    /// How many unique values fit: the row's number alone must fit the length.
    fn unique_values(&self) -> u128 {
        match self.fake {
            // An email or a user name carries its number among other characters.
            Some(Fake::Email | Fake::Username) => u128::MAX,
            _ => 10u128.saturating_pow(self.max.min(38) as u32),
        }
    }

    fn fits(&self, s: &str) -> bool {
        let chars = s.chars().count();
        chars >= self.min
            && chars <= self.max
            && !s.contains('\0')
            && self.pattern.as_ref().is_none_or(|p| p.check.is_match(s))
    }

    fn candidate(&self, rng: &mut Rng, number: Option<u64>, domain: &str, out: &mut String) {
        let start = out.len();
        let carries_number = matches!(self.fake, Some(Fake::Email | Fake::Username));
        match self.fake {
            Some(fake) => fake.write(rng, number, domain, out),
            None => {
                for i in 0..1 + rng.below(3) {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(rng.word(fake_words()));
                }
            }
        }
        let suffix = match number {
            Some(n) if !carries_number => {
                let dashed = format!("-{n}");
                // A short column holds the number alone.
                if dashed.len() > self.max {
                    n.to_string()
                } else {
                    dashed
                }
            }
            _ => String::new(),
        };
        // Too long: the realistic part is cut, the number kept.
        let room = self.max.saturating_sub(suffix.chars().count());
        if out[start..].chars().count() > room {
            let cut = out[start..]
                .char_indices()
                .nth(room)
                .map_or(out.len(), |(i, _)| start + i);
            out.truncate(cut);
        }
        out.push_str(&suffix);
        // Too short: padded with letters.
        while out[start..].chars().count() < self.min {
            out.push((b'a' + rng.below(26) as u8) as char);
        }
    }
}

trait Sample {
    fn sample(&mut self, regex: &rand_regex::Regex) -> String;
}

impl Sample for Rng {
    fn sample(&mut self, regex: &rand_regex::Regex) -> String {
        use rand::distr::Distribution;
        regex.sample(self)
    }
}

/// `units` × 10^-`scale` in decimal.
fn write_scaled(units: i128, scale: u32, out: &mut String) {
    if scale == 0 {
        let _ = write!(out, "{units}");
        return;
    }
    let div = 10i128.pow(scale);
    let sign = if units < 0 { "-" } else { "" };
    let (int, frac) = (units.abs() / div, units.abs() % div);
    let _ = write!(out, "{sign}{int}.{frac:0width$}", width = scale as usize);
}

fn write_date(days: i64, out: &mut String) {
    let (y, m, d) = civil_from_days(days);
    if y < 1 {
        let _ = write!(out, "{:04}-{m:02}-{d:02} BC", 1 - y);
    } else {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &Value, rng: &mut Rng, index: u64, unique: bool) -> String {
        let mut s = String::new();
        v.write(
            rng,
            Row {
                index,
                number: index + 1,
            },
            unique,
            "example.test",
            &mut s,
        );
        s
    }

    #[test]
    fn numbers_keep_their_scale_and_range_and_unique_ones_count_up() {
        let v = Value::Number {
            span: Span {
                usual: Ranges::one(-150, 150),
                unique: Ranges::one(-150, 150),
            },
            scale: 2,
        };
        let mut rng = Rng(1);
        for i in 0..500 {
            let s = text(&v, &mut rng, i, false);
            let x: f64 = s.parse().unwrap();
            assert!((-1.5..=1.5).contains(&x), "{s}");
            assert_eq!(s.split('.').nth(1).map(str::len), Some(2), "{s}");
        }
        assert_eq!(text(&v, &mut rng, 0, true), "-1.50");
        assert_eq!(text(&v, &mut rng, 151, true), "0.01");
        assert_eq!(v.unique_values(), Some(301));
    }

    #[test]
    fn text_keeps_its_length_pattern_and_number() {
        let v = Value::Text(Text {
            fake: None,
            min: 3,
            max: 12,
            pattern: Pattern::new("^[a-z]{3,8}-[0-9]+$"),
        });
        let mut rng = Rng(2);
        let pattern = regex::Regex::new("^[a-z]{3,8}-[0-9]+$").unwrap();
        for i in 0..300 {
            let s = text(&v, &mut rng, i, false);
            assert!(s.len() <= 12 && pattern.is_match(&s), "{s}");
        }
        let v = Value::Text(Text {
            fake: Some(Fake::FullName),
            min: 0,
            max: 10,
            pattern: None,
        });
        for i in 0..300 {
            let s = text(&v, &mut rng, i, true);
            assert!(s.chars().count() <= 10, "{s}");
            assert!(s.ends_with(&format!("-{}", i + 1)), "{s}");
        }
    }

    #[test]
    fn classes_are_the_servers_ascii_ones() {
        assert_eq!(
            ascii_classes(r"^\d{5}(-\d{4})?$", false),
            r"^[0-9]{5}(-[0-9]{4})?$"
        );
        assert_eq!(
            ascii_classes(r"^[\w.]+@.+$", true),
            r"^[A-Za-z0-9_.]+@[a-z]+$"
        );
        assert_eq!(ascii_classes(r"[]a.]\.", true), r"[]a.]\.");
        let p = Pattern::new(r"^\d{5}(-\d{4})?$").unwrap();
        let mut rng = Rng(9);
        for _ in 0..100 {
            let s: String = rng.sample(&p.generate);
            assert!(s.chars().all(|c| c.is_ascii_digit() || c == '-'), "{s}");
        }
    }

    #[test]
    fn ranges_prefer_the_window_or_what_is_nearest_to_it() {
        let r = Ranges(vec![(0, 100), (-1000, -500), (900, 5000)]);
        assert_eq!(
            r.prefer(10, 20),
            Ranges(vec![(10, 20), (-510, -500), (900, 910)])
        );
        assert_eq!(Ranges::one(i128::MIN, 5).prefer(10, 20), Ranges::one(-5, 5));
    }

    #[test]
    fn arrays_quote_every_element() {
        let v = Value::Array(Box::new(Value::OneOf(vec!["a\"b".into(), "c,d".into()])));
        let mut rng = Rng(5);
        let all: Vec<String> = (0..50).map(|i| text(&v, &mut rng, i, false)).collect();
        assert!(all.contains(&"{}".to_string()), "{all:?}");
        assert!(all.iter().any(|s| s.contains(r#""a\"b""#)), "{all:?}");
    }
}
