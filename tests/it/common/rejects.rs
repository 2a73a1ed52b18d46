//! Reading a rejects file (`seed --rejects`) byte by byte: the records it holds may carry
//! invalid UTF-8 and quoted line breaks, exactly as they were in the input.

use std::path::Path;

/// One rejected record: the input's text as it was, then the four fields the tool adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub raw: Vec<u8>,
    pub line: u64,
    pub column: Option<String>,
    pub sqlstate: String,
    pub reason: String,
}

/// The header line (raw) and the records of the rejects file at `path` (default dialect).
pub fn read_rejects(path: &Path) -> (Vec<u8>, Vec<Rejected>) {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("read rejects {}: {e}", path.display()));
    let mut records = split_records(&bytes).into_iter();
    let header = records
        .next()
        .unwrap_or_else(|| panic!("the rejects file {} is empty", path.display()));
    let header_raw = header.0;
    let rejected = records
        .map(|(text, starts)| {
            assert!(
                starts.len() >= 5,
                "too few fields in {:?}",
                String::from_utf8_lossy(&text)
            );
            let n = starts.len();
            let field = |i: usize| {
                let end = if i + 1 < n {
                    starts[i + 1] - 1
                } else {
                    text.len()
                };
                unquote(&text[starts[i]..end])
            };
            Rejected {
                raw: text[..starts[n - 4] - 1].to_vec(),
                line: field(n - 4).parse().expect("rejected_line is a number"),
                column: Some(field(n - 3)).filter(|c| !c.is_empty()),
                sqlstate: field(n - 2),
                reason: field(n - 1),
            }
        })
        .collect();
    (header_raw, rejected)
}

/// Records (without their `\n`) and the offset where each of their fields starts.
fn split_records(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<usize>)> {
    let mut out = Vec::new();
    let (mut start, mut starts, mut quoted) = (0, vec![0], false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => starts.push(i + 1 - start),
            b'\n' if !quoted => {
                out.push((
                    bytes[start..i].to_vec(),
                    std::mem::replace(&mut starts, vec![0]),
                ));
                start = i + 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        start,
        bytes.len(),
        "the rejects file does not end with a line end"
    );
    out
}

fn unquote(field: &[u8]) -> String {
    let text = String::from_utf8(field.to_vec()).expect("added fields are UTF-8");
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => text,
    }
}

/// The rejects file at `path`, read knowing what it must hold: the input's header line
/// (`header`, raw, without its line end) plus the four added columns, then, in this order,
/// records whose text is byte for byte each of `raws`, each followed by its four fields.
/// Panics, showing the file, when it holds anything else (so a record whose text is not a
/// balanced CSV record, such as one with an unterminated quote, is still read exactly).
pub fn read_rejects_of(path: &Path, header: &[u8], raws: &[&[u8]]) -> Vec<Rejected> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("read rejects {}: {e}", path.display()));
    let show = || String::from_utf8_lossy(&bytes).into_owned();
    let mut want_header = header.to_vec();
    for name in [
        "rejected_line",
        "rejected_column",
        "rejected_sqlstate",
        "rejected_reason",
    ] {
        want_header.push(b',');
        want_header.extend_from_slice(name.as_bytes());
    }
    want_header.push(b'\n');
    assert!(
        bytes.starts_with(&want_header),
        "the rejects file does not start with the input's header and the added columns:\n{}",
        show()
    );
    let mut at = want_header.len();
    let mut out = Vec::new();
    for raw in raws {
        let rest = &bytes[at..];
        assert!(
            rest.starts_with(raw) && rest.get(raw.len()) == Some(&b','),
            "at byte {at} the rejects file does not hold the record {:?} and a delimiter:\n{}",
            String::from_utf8_lossy(raw),
            show()
        );
        at += raw.len() + 1;
        let mut fields = Vec::new();
        for last in [false, false, false, true] {
            let (value, next) = field_at(&bytes, at)
                .unwrap_or_else(|| panic!("a malformed added field at byte {at}:\n{}", show()));
            let end = if last { b'\n' } else { b',' };
            assert_eq!(
                bytes.get(next),
                Some(&end),
                "after the added field at byte {at}:\n{}",
                show()
            );
            fields.push(value);
            at = next + 1;
        }
        out.push(Rejected {
            raw: raw.to_vec(),
            line: fields[0].parse().expect("rejected_line is a number"),
            column: Some(fields[1].clone()).filter(|c| !c.is_empty()),
            sqlstate: fields[2].clone(),
            reason: fields[3].clone(),
        });
    }
    assert_eq!(
        at,
        bytes.len(),
        "the rejects file holds more than the rejected records:\n{}",
        show()
    );
    out
}

/// The CSV field starting at byte `at` (quoted or not, UTF-8): its value and the offset just
/// past it; `None` when a quote is never closed.
fn field_at(bytes: &[u8], at: usize) -> Option<(String, usize)> {
    if bytes.get(at) != Some(&b'"') {
        let len = bytes[at..]
            .iter()
            .position(|&b| b == b',' || b == b'\n')
            .unwrap_or(bytes.len() - at);
        return Some((unquote(&bytes[at..at + len]), at + len));
    }
    let mut i = at + 1;
    loop {
        match (bytes.get(i)?, bytes.get(i + 1)) {
            (b'"', Some(b'"')) => i += 2,
            (b'"', _) => return Some((unquote(&bytes[at..=i]), i + 1)),
            _ => i += 1,
        }
    }
}
