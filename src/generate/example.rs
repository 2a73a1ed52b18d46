//! `generate` without `--table`: realistic, deterministic account specs for benchmarks and demos, in the
//! example table's CSV layout. The same `--seed` always gives the same bytes; emails,
//! usernames and external ids are unique within one output.
//!
//! With passwords ([`Passwords`](super::Passwords)), `password_hash` holds real hashes a web framework
//! verifies, and the feeder ([`Feeder`]) gets each account's login and clear-text password,
//! in the same order, for the load generator. Every other column is what it is without them.

use std::io::Write;
use std::ops::Range;

use super::WriteError;
use super::calendar::civil_from_days;
use super::feeder::Feeder;
use super::password::{Logins, Passwords, each_account};
use super::rng::Rng;

pub const HEADER: &str = "external_id,email,username,display_name,password_hash,role,plan,country,is_active,balance,birth_date,created_at,metadata\n";

/// (ASCII spelling for emails and usernames, display spelling).
const FIRST: &[(&str, &str)] = &[
    ("ana", "Ana"),
    ("jose", "José"),
    ("zoe", "Zoë"),
    ("francois", "François"),
    ("bjorn", "Björn"),
    ("malgorzata", "Małgorzata"),
    ("dmitri", "Дмитрий"),
    ("olga", "Ольга"),
    ("nikos", "Νίκος"),
    ("eleni", "Ελένη"),
    ("yuki", "由紀"),
    ("hiroshi", "博"),
    ("wei", "伟"),
    ("mei", "美"),
    ("minjun", "민준"),
    ("jiwoo", "지우"),
    ("aarav", "आरव"),
    ("priya", "प्रिया"),
    ("omar", "عمر"),
    ("layla", "ليلى"),
    ("noa", "נועה"),
    ("somchai", "สมชาย"),
    ("john", "John"),
    ("mary", "Mary"),
    ("liam", "Liam"),
    ("chloe", "Chloé"),
];

const LAST: &[(&str, &str)] = &[
    ("garcia", "García"),
    ("muller", "Müller"),
    ("oconnor", "O'Connor"),
    ("nunez", "Núñez"),
    ("kowalski", "Kowalski"),
    ("ivanov", "Иванов"),
    ("papadopoulos", "Παπαδόπουλος"),
    ("tanaka", "田中"),
    ("wang", "王"),
    ("kim", "김"),
    ("sharma", "शर्मा"),
    ("haddad", "حداد"),
    ("cohen", "כהן"),
    ("srisuk", "ศรีสุข"),
    ("smith", "Smith"),
    ("nguyen", "Nguyễn"),
    ("dubois", "Dubois"),
    ("rossi", "Rossi"),
];

const TAGS: &[&str] = &["", "", "", "+loadtest", "+qa", "+perf-2026"];
const PLANS: &[&str] = &["free", "free", "pro", "team", "enterprise"];
const COUNTRIES: &[&str] = &[
    "US", "GB", "DE", "FR", "ES", "PL", "RU", "GR", "JP", "CN", "KR", "IN", "EG", "IL", "TH", "BR",
    "VN", "IT", "NG", "CA",
];
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub count: u64,
    pub seed: u64,
    pub domain: String,
    /// Real password hashes in `password_hash` (else a realistic-looking fake).
    pub passwords: Option<Passwords>,
}

/// Writes the header and `count` rows to `out`, and each account's login to `feeder`.
/// `hashed` is told how many accounts were hashed so far (random passwords).
pub fn generate(
    opts: &GenerateOptions,
    out: &mut impl Write,
    mut feeder: Option<&mut Feeder>,
    hashed: &dyn Fn(u64),
) -> Result<(), WriteError> {
    let mut rng = Rng(opts.seed);
    let logins = opts.passwords.as_ref().map(|p| Logins::new(p, opts.seed));
    let mut line = Vec::with_capacity(512);
    let output = WriteError::Output;
    out.write_all(HEADER.as_bytes()).map_err(output)?;
    if let Some(feeder) = feeder.as_deref_mut() {
        feeder.begin().map_err(WriteError::Feeder)?;
    }
    each_account(opts.count, logins, hashed, |index, login| {
        line.clear();
        let n = index + 1;
        let (email, username) = row(
            &mut rng,
            n,
            &opts.domain,
            login.map(|l| l.1.as_str()),
            &mut line,
        );
        out.write_all(&line).map_err(output)?;
        if let (Some(feeder), Some((password, _))) = (feeder.as_deref_mut(), login) {
            let text = |r: &Range<usize>| std::str::from_utf8(&line[r.clone()]).expect("ASCII");
            let values: Vec<&str> = feeder
                .columns()
                .iter()
                .map(|c| text(if c == "email" { &email } else { &username }))
                .collect();
            feeder
                .account(&values, password)
                .map_err(WriteError::Feeder)?;
        }
        Ok(())
    })?;
    super::finish(out, feeder)
}

/// Writes row `n` to `out`, with `hash` in `password_hash` (a fake one when `None`);
/// returns where its email and username are in `out`.
fn row(
    rng: &mut Rng,
    n: u64,
    domain: &str,
    hash: Option<&str>,
    out: &mut Vec<u8>,
) -> (Range<usize>, Range<usize>) {
    let (first_ascii, first) = *rng.pick(FIRST);
    let (last_ascii, last) = *rng.pick(LAST);
    let (hi, lo) = (rng.next(), rng.next());
    // external_id: a version-4 UUID
    let hi = (hi & !0xF000) | 0x4000;
    let lo = (lo & !(0xC << 60)) | (0x8 << 60);
    let hex = format!("{hi:016x}{lo:016x}");
    let _ = write!(
        out,
        "{}-{}-{}-{}-{},",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let tag = rng.pick(TAGS);
    let start = out.len();
    let _ = write!(out, "{first_ascii}.{last_ascii}{tag}.{n}@{domain}");
    let email = start..out.len();
    out.push(b',');
    let start = out.len();
    let _ = write!(out, "{first_ascii}_{last_ascii}_{n}");
    let username = start..out.len();
    out.push(b',');
    match rng.below(100) {
        0..=4 => {}                          // NULL
        5 => out.extend_from_slice(b"\"\""), // empty string
        6..=15 => quoted(out, &format!("{last}, {first}")),
        _ => quoted(out, &format!("{first} {last}")),
    }
    out.push(b',');
    // A fake argon2id hash, drawn even when a real one is written so that the other
    // columns stay the same: the commas inside make it a quoted field.
    let fake_at = out.len();
    out.extend_from_slice(b"\"$argon2id$v=19$m=65536,t=3,p=4$");
    for i in 0..65 {
        out.push(if i == 22 {
            b'$'
        } else {
            BASE64[rng.below(64) as usize]
        });
    }
    out.extend_from_slice(b"\",");
    if let Some(hash) = hash {
        out.truncate(fake_at);
        quoted(out, hash);
        out.push(b',');
    }
    let role = match rng.below(100) {
        0..=84 => "user",
        85..=94 => "tester",
        95..=97 => "support",
        _ => "admin",
    };
    let _ = write!(out, "{role},");
    if !rng.chance(10) {
        out.extend_from_slice(rng.pick(PLANS).as_bytes());
    }
    out.push(b',');
    if !rng.chance(5) {
        out.extend_from_slice(rng.pick(COUNTRIES).as_bytes());
    }
    out.push(b',');
    out.extend_from_slice(if rng.chance(90) { b"t," } else { b"f," });
    let cents = rng.below(100_000_000) as i64 - if rng.chance(5) { 100_000_000 } else { 0 };
    let sign = if cents < 0 { "-" } else { "" };
    let _ = write!(out, "{sign}{}.{:02},", cents.abs() / 100, cents.abs() % 100);
    if !rng.chance(10) {
        // 1950-01-01 .. 2007-12-31
        let (y, m, d) = civil_from_days(-18262 + rng.below(21184) as i64);
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    }
    out.push(b',');
    // created_at: 2020-01-01 .. 2025-12-31, UTC
    let secs = rng.below(6 * 365 * 86_400) as i64;
    let (y, m, d) = civil_from_days(7305 + secs / 86_400);
    let s = secs % 86_400;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z,",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    if !rng.chance(20) {
        let _ = write!(
            out,
            "\"{{\"\"source\"\":\"\"generate\"\",\"\"cohort\"\":{},\"\"tags\"\":[\"\"{}\"\",\"\"{}\"\"]}}\"",
            rng.below(50),
            rng.pick(PLANS),
            first_ascii
        );
    }
    out.push(b'\n');
    (email, username)
}

fn quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(count: u64, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let opts = GenerateOptions {
            count,
            seed,
            domain: "example.test".into(),
            passwords: None,
        };
        generate(&opts, &mut out, None, &|_| {}).unwrap();
        out
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(output(100, 7), output(100, 7));
        assert_ne!(output(100, 7), output(100, 8));
    }

    #[test]
    fn rows_have_thirteen_fields_and_unique_keys() {
        use crate::input::csv::{CsvReader, Dialect, Record};
        let data = output(2000, 1);
        let mut csv = CsvReader::new(&data[..], Dialect::default());
        let mut rec = Record::default();
        let mut emails = std::collections::HashSet::new();
        let mut rows = 0;
        csv.read(&mut rec).unwrap();
        while csv.read(&mut rec).unwrap() {
            assert_eq!(rec.len(), 13, "line {}", rec.line());
            assert!(emails.insert(rec.get(1).unwrap().to_vec()));
            rows += 1;
        }
        assert_eq!(rows, 2000);
    }
}
