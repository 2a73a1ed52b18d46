//! Client-side checks: in stop mode the first bad row stops the run naming line, column,
//! value and reason, before its batch is sent, while earlier batches stay committed and
//! recorded; and a check never refuses a value the server accepts: for every value tried,
//! the tool rejects it exactly when `COPY` refuses it, with the server's SQLSTATE.

use std::io::Write;

use crate::common::rejects::read_rejects;
use crate::common::*;

const COLS: &str = "external_id,email,username,display_name";

fn row(i: u32) -> Vec<u8> {
    format!("00000000-0000-4000-8000-{i:012},u{i}@example.test,user_{i},User {i}").into_bytes()
}

/// Five good rows (lines 2-6), then `bad` on line 7, then a good row.
fn file_with(db: &TestDb, bad: &[u8]) -> std::path::PathBuf {
    let mut text = format!("{COLS}\n").into_bytes();
    for i in 1..=5 {
        text.extend(row(i));
        text.push(b'\n');
    }
    text.extend_from_slice(bad);
    text.push(b'\n');
    text.extend(row(7));
    text.push(b'\n');
    db.write("bad.csv", text)
}

#[test]
fn stop_mode_names_the_first_bad_row_and_keeps_the_batches_before_it() {
    let long = format!(
        "00000000-0000-4000-8000-000000000006,l@example.test,{},L",
        "x".repeat(65)
    );
    let cases: [(&str, Vec<u8>, &[&str]); 5] = [
        (
            "NUL byte",
            b"00000000-0000-4000-8000-000000000006,n@example.test,nul,ab\0c".to_vec(),
            &[
                "column display_name",
                "NUL byte at byte 3",
                "\"ab\\0c\"",
                "22021",
            ],
        ),
        (
            "invalid UTF-8",
            b"00000000-0000-4000-8000-000000000006,n@example.test,utf,ab\xc3(".to_vec(),
            &[
                "column display_name",
                "invalid UTF-8 at byte 3",
                "0xc3",
                "22021",
            ],
        ),
        (
            "too long for varchar(64)",
            long.into_bytes(),
            &[
                "column username",
                "character varying(64)",
                "65 characters",
                "22001",
            ],
        ),
        (
            "wrong number of fields",
            b"00000000-0000-4000-8000-000000000006,n@example.test".to_vec(),
            &["expected 4 fields", "found 2"],
        ),
        (
            "not a uuid",
            b"0000-4000,n@example.test,uuid,U".to_vec(),
            &["column external_id", "type uuid", "22P02"],
        ),
    ];
    for (what, bad, says) in cases {
        let db = TestDb::with_accounts();
        let file = file_with(&db, &bad);
        let run = db.seed(
            &file,
            &["--batch-size", "2", "--connections", "1", "--json"],
        );
        run.expect_code(1);
        assert_eq!(run.named_lines(), [7], "{what}: {}", run.stderr);
        for s in says {
            assert!(
                run.stderr.contains(s),
                "{what}: no {s:?} in:\n{}",
                run.stderr
            );
        }
        // Batches [2,3] and [4,5] committed and are recorded; [6,7] never went.
        assert_eq!(db.count("accounts"), 4, "{what}");
        assert_eq!(db.ledger_batches(), 2, "{what}");
        assert_eq!(run.figure("rows_inserted"), 4, "{what}");
        assert_eq!(
            db.scalar_text("SELECT status FROM provisioner.runs"),
            Some("failed".into()),
            "{what}"
        );
    }
}

/// Values of each type the checks know, some accepted by the server in unusual spellings
/// and some refused.
const CANDIDATES: &[(&str, &[&[u8]])] = &[
    (
        "n",
        &[
            b" 12 ",
            b"+7",
            b"-32768",
            b"32767",
            b"32768",
            b"-32769",
            b"00000000000000000012",
            b"1.5",
            b"",
            b"abc",
            b"0x1F",
            b"1_000",
            b"\x0b5",
            b"99999999999999999999999",
        ],
    ),
    (
        "i",
        &[
            b"2147483647",
            b"2147483648",
            b"-2147483648",
            b" -0 ",
            b"1e3",
            b"--1",
        ],
    ),
    (
        "g",
        &[
            b"9223372036854775807",
            b"9223372036854775808",
            b"-9223372036854775808",
        ],
    ),
    (
        "b",
        &[
            b" TRUE ", b"of", b"off", b"o", b"Ye", b"yess", b"1", b"2", b"n", b"", b"truee", b"F",
        ],
    ),
    (
        "u",
        &[
            b"{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}",
            b"a0eebc999c0b4ef8bb6d6bb9bd380a11",
            b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            b" a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            b"not-a-uuid",
        ],
    ),
    (
        "v",
        &[
            "żół".as_bytes(),
            b"ab   ",
            b"abc  ",
            b"abcd",
            b"ab \t",
            "żółw".as_bytes(),
            b"a\xffb",
            b"a\0",
        ],
    ),
    ("c", &[b"x ", b"ab   ", b"abc", b"a"]),
    ("t", &[b"any \xe2\x82\xac text", b"\xe2\x82", b"x\0y"]),
];

/// The server's verdict on `value` for `column`: `None` when `COPY` takes it, else its
/// SQLSTATE.
fn server_verdict(client: &mut postgres::Client, column: &str, value: &[u8]) -> Option<String> {
    let mut tx = client.transaction().expect("begin");
    let sql = format!("COPY checked ({column}) FROM STDIN (FORMAT csv)");
    let result = (|| {
        let mut writer = tx.copy_in(sql.as_str())?;
        let mut line = vec![b'"'];
        line.extend(
            value
                .iter()
                .flat_map(|&b| if b == b'"' { vec![b'"', b'"'] } else { vec![b] }),
        );
        line.extend_from_slice(b"\"\n");
        writer.write_all(&line).expect("write to COPY");
        writer.finish()
    })();
    let verdict = result.err().map(|e| {
        e.as_db_error()
            .map(|db| db.code().code().to_string())
            .unwrap_or_else(|| panic!("COPY failed without a server error: {e}"))
    });
    drop(tx);
    verdict
}

#[test]
fn checks_reject_exactly_what_the_server_refuses() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE checked (id bigint GENERATED ALWAYS AS IDENTITY, n smallint, i integer, \
         g bigint, b boolean, u uuid, v varchar(3), c char(2), t text)",
    );
    let mut client = db.client();
    let header = "n,i,g,b,u,v,c,t";
    let columns: Vec<&str> = header.split(',').collect();
    let mut file = format!("{header}\n").into_bytes();
    let mut expected = Vec::new(); // (line, column, value, server's SQLSTATE or None)
    let mut line = 1;
    for (column, values) in CANDIDATES {
        let at = columns.iter().position(|c| c == column).expect("a column");
        for value in *values {
            line += 1;
            let mut record = vec![b'"'; 0];
            for i in 0..columns.len() {
                if i > 0 {
                    record.push(b',');
                }
                if i == at {
                    record.push(b'"');
                    record.extend_from_slice(value);
                    record.push(b'"');
                }
            }
            file.extend_from_slice(&record);
            file.push(b'\n');
            let verdict = server_verdict(&mut client, column, value);
            expected.push((
                line,
                column.to_string(),
                String::from_utf8_lossy(value).into_owned(),
                verdict,
            ));
        }
    }
    assert!(
        expected.iter().any(|e| e.3.is_none()) && expected.iter().any(|e| e.3.is_some()),
        "the candidates must hold both accepted and refused values"
    );
    let path = db.write("candidates.csv", &file);
    let rejects = db.path("rejects.csv");
    // Batches of one: each value meets the client check (or the server) alone.
    let run = db.seed(
        &path,
        &[
            "--table",
            "checked",
            "--rejects",
            path_str(&rejects),
            "--batch-size",
            "1",
            "--json",
        ],
    );
    run.expect_code(3);
    let (_, got) = read_rejects(&rejects);
    let mut mismatches = Vec::new();
    for (line, column, value, verdict) in &expected {
        let rejected = got.iter().find(|r| r.line == *line);
        let ours = rejected.map(|r| r.sqlstate.clone());
        if &ours != verdict {
            mismatches.push(format!(
                "line {line}, {column} = {value:?}: server {verdict:?}, provisioner {ours:?} ({:?})",
                rejected.map(|r| &r.reason)
            ));
        }
        if let Some(r) = rejected {
            assert_eq!(
                r.column.as_deref(),
                Some(column.as_str()),
                "line {line}: {}",
                r.reason
            );
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // The client-side checks did their part (their reasons are worded apart from the
    // server's), not only the server.
    for client_words in [
        "invalid UTF-8 at byte 2",
        "(4 characters)",
        "NUL byte at byte 2",
    ] {
        assert!(
            got.iter().any(|r| r.reason.contains(client_words)),
            "no client-side rejection says {client_words:?}: {got:#?}"
        );
    }
    let accepted = expected.iter().filter(|e| e.3.is_none()).count() as i64;
    assert_eq!(db.count("checked"), accepted);
}
