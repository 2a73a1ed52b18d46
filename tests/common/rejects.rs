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
