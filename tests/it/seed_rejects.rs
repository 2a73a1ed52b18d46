//! Reject mode (`--rejects FILE [--max-errors N]`): every good row loads, every bad one is in
//! the rejects file as it was in the input, with its line, column, SQLSTATE and reason, and
//! the run exits 3; more than N bad rows fail the run (exit 1); a resumed run's file holds
//! each rejected row once. Rows refused one after another, and rows that break a deferred
//! foreign key, are set aside like any other.

use crate::common::rejects::{Rejected, read_rejects};
use crate::common::*;

pub(crate) const COLS: &str = "external_id,email,username,display_name,role,team";

pub(crate) fn uuid(i: u32) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// A good record for the columns above.
pub(crate) fn good(i: u32) -> Vec<u8> {
    format!("{},g{i}@example.test,g{i},G {i},user,red", uuid(i)).into_bytes()
}

/// The example table plus what the server refuses rows for: a foreign key to `teams`
/// (which holds only `red`), a trigger that raises for usernames starting with `bot`, and an
/// existing account whose email a row of the file repeats.
pub(crate) fn target() -> TestDb {
    let db = TestDb::with_accounts();
    db.execute(
        "CREATE TABLE teams (code text PRIMARY KEY); INSERT INTO teams VALUES ('red'); \
         ALTER TABLE accounts ADD COLUMN team text REFERENCES teams (code); \
         CREATE FUNCTION no_bots() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.username LIKE 'bot%' THEN RAISE EXCEPTION 'no bots: %', NEW.username; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER no_bots BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION no_bots(); \
         INSERT INTO accounts (external_id, email, username) \
           VALUES ('00000000-0000-4000-8000-000000000999', 'taken@example.test', 'taken');",
    );
    db
}

/// A bad record: its text, the line it starts on, and what the rejects file must say.
struct Bad {
    raw: Vec<u8>,
    line: u64,
    column: Option<&'static str>,
    sqlstate: &'static str,
    reason: &'static str,
}

/// The mixed file: header on line 1, then records (one line each unless said otherwise).
/// Returns the file's bytes, the usernames that must load, and the bad records.
fn mixed_file() -> (Vec<u8>, Vec<String>, Vec<Bad>) {
    let long = "x".repeat(65);
    let padded = format!("{}   ", "y".repeat(64)); // 64 characters and spaces the server cuts
    let bad = |raw: Vec<u8>, line, column, sqlstate, reason| Bad {
        raw,
        line,
        column,
        sqlstate,
        reason,
    };
    let records: Vec<(Vec<u8>, Option<Bad>)> = vec![
        (good(1), None),
        {
            let raw = format!("{},short@example.test,short,user,red", uuid(2)).into_bytes();
            (
                raw.clone(),
                Some(bad(raw, 3, None, "22P04", "expected 6 fields")),
            )
        },
        {
            // Invalid UTF-8 in a value that spans lines 4-5.
            let mut raw = format!("{},utf@example.test,utf,\"ab", uuid(3)).into_bytes();
            raw.extend_from_slice(b"\xff\ncd\",user,red");
            let b = bad(
                raw.clone(),
                4,
                Some("display_name"),
                "22021",
                "invalid UTF-8 at byte 3",
            );
            (raw, Some(b))
        },
        {
            let mut raw = format!("{},nul@example.test,nul,ab", uuid(4)).into_bytes();
            raw.extend_from_slice(b"c\0,user,red");
            let b = bad(
                raw.clone(),
                6,
                Some("display_name"),
                "22021",
                "NUL byte at byte 4",
            );
            (raw, Some(b))
        },
        {
            let raw = format!("{},long@example.test,{long},L,user,red", uuid(5)).into_bytes();
            let b = bad(raw.clone(), 7, Some("username"), "22001", "value too long");
            (raw, Some(b))
        },
        (
            format!("{},pad@example.test,{padded},P,user,red", uuid(6)).into_bytes(),
            None,
        ),
        {
            let raw = format!("{},wiz@example.test,wizard,W,wizard,red", uuid(7)).into_bytes();
            let b = bad(raw.clone(), 9, None, "23514", "accounts_role_check");
            (raw, Some(b))
        },
        {
            // The email of the first row: a duplicate within the file.
            let raw = format!("{},g1@example.test,dup,D,user,red", uuid(8)).into_bytes();
            let b = bad(raw.clone(), 10, None, "23505", "accounts_email_key");
            (raw, Some(b))
        },
        {
            let raw = format!("{},taken@example.test,taken2,T,user,red", uuid(9)).into_bytes();
            let b = bad(raw.clone(), 11, None, "23505", "accounts_email_key");
            (raw, Some(b))
        },
        {
            let raw = format!("{},bot@example.test,bot1,B,user,red", uuid(10)).into_bytes();
            let b = bad(raw.clone(), 12, None, "P0001", "no bots: bot1");
            (raw, Some(b))
        },
        {
            let raw = format!("{},blue@example.test,blue,B,user,blue", uuid(11)).into_bytes();
            let b = bad(raw.clone(), 13, None, "23503", "accounts_team_fkey");
            (raw, Some(b))
        },
        (good(12), None),
        {
            let raw = b"not-a-uuid,nu@example.test,nu,N,user,red".to_vec();
            let b = bad(raw.clone(), 15, Some("external_id"), "22P02", "type uuid");
            (raw, Some(b))
        },
        (good(13), None),
    ];
    let mut file = format!("{COLS}\n").into_bytes();
    let mut loaded = vec!["taken".to_string()];
    let mut bads = Vec::new();
    for (raw, bad) in records {
        file.extend_from_slice(&raw);
        file.push(b'\n');
        match bad {
            Some(b) => bads.push(b),
            None => {
                let fields: Vec<&[u8]> = raw.split(|&b| b == b',').collect();
                loaded.push(String::from_utf8(fields[2].to_vec()).unwrap());
            }
        }
    }
    loaded[2] = "y".repeat(64);
    loaded.sort();
    (file, loaded, bads)
}

#[track_caller]
fn assert_rejects(got: &[Rejected], want: &[&Bad]) {
    let lines: Vec<u64> = got.iter().map(|r| r.line).collect();
    let wanted: Vec<u64> = want.iter().map(|b| b.line).collect();
    assert_eq!(lines, wanted, "rejected lines: {got:#?}");
    for (r, b) in got.iter().zip(want) {
        assert_eq!(
            r.raw,
            b.raw,
            "line {}: the record must be as it was in the input: {:?}",
            b.line,
            String::from_utf8_lossy(&r.raw)
        );
        assert_eq!(r.column.as_deref(), b.column, "line {}: column", b.line);
        assert_eq!(r.sqlstate, b.sqlstate, "line {}: {}", b.line, r.reason);
        assert!(
            r.reason.contains(b.reason),
            "line {}: reason {:?} lacks {:?}",
            b.line,
            r.reason,
            b.reason
        );
    }
}

#[test]
fn reject_mode_loads_the_good_rows_and_rejects_exactly_the_bad_ones() {
    let (bytes, loaded, bads) = mixed_file();
    // Binary COPY, CSV COPY (whose error lines count newlines in values), and a staged
    // merge that skips the two rows whose email exists (no rejection for them then).
    for (args, skipped) in [
        (&[][..], 0),
        (&["--format", "csv"][..], 0),
        (&["--on-conflict", "skip"][..], 2),
    ] {
        let db = target();
        let file = db.write("mixed.csv", &bytes);
        let rejects = db.path("rejects.csv");
        let mut all = rejecting(
            &rejects,
            &["--batch-size", "3", "--connections", "1", "--json"],
        );
        all.extend_from_slice(args);
        let run = db.seed(&file, &all);
        run.expect_code(3);
        let want: Vec<&Bad> = bads
            .iter()
            .filter(|b| skipped == 0 || !matches!(b.line, 10 | 11))
            .collect();
        assert_eq!(run.figure("rows_read"), 14, "{args:?}");
        assert_eq!(run.figure("rows_inserted"), 4, "{args:?}");
        assert_eq!(run.figure("rows_skipped"), skipped, "{args:?}");
        assert_eq!(run.figure("rows_rejected"), want.len() as u64, "{args:?}");
        assert_eq!(
            db.column_text("SELECT username FROM accounts ORDER BY username"),
            loaded.iter().cloned().map(Some).collect::<Vec<_>>(),
            "{args:?}"
        );
        let (header, got) = read_rejects(&rejects);
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!("{COLS},rejected_line,rejected_column,rejected_sqlstate,rejected_reason")
        );
        assert_rejects(&got, &want);
        assert_eq!(
            db.scalar_i64("SELECT sum(rejected)::bigint FROM provisioner.batches"),
            want.len() as i64,
            "the ledger counts each batch's rejected rows"
        );
        assert_eq!(
            db.column_text(
                "SELECT k FROM provisioner.inserted_keys, jsonb_array_elements_text(keys->0) k \
                 ORDER BY k"
            ),
            [1, 6, 12, 13].map(|i| Some(uuid(i))),
            "{args:?}: the ledger records the keys of exactly the rows inserted"
        );
    }
}

#[test]
fn more_rejected_rows_than_max_errors_fail_the_run() {
    let db = target();
    let rows = [
        good(1),
        b"bad,1".to_vec(),
        good(2),
        b"bad,2".to_vec(),
        b"bad,3".to_vec(),
        good(3),
    ];
    let file = db.write("three_bad.csv", format!("{COLS}\n{}\n", join(&rows)));
    let rejects = db.path("rejects.csv");
    let run = db.seed(&file, &rejecting(&rejects, &["--max-errors", "2"]));
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("more than 2 rows rejected (--max-errors 2)")
            && run.stderr.contains("line 6"),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("accounts"), 1, "the only batch never committed");
    assert_eq!(
        read_rejects(&rejects).1,
        [],
        "nothing committed, nothing rejected"
    );

    let run = db.seed(
        &file,
        &rejecting(&rejects, &["--max-errors", "3", "--json"]),
    );
    run.expect_code(3);
    assert_eq!(run.figure("rows_rejected"), 3);
    assert_eq!(db.count("accounts"), 4);

    // --max-errors means nothing without a rejects file.
    db.seed(&file, &["--max-errors", "3"]).expect_code(2);
}

/// `--rejects <rejects>` and `extra`.
pub(crate) fn rejecting<'a>(rejects: &'a std::path::Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--rejects", path_str(rejects)];
    args.extend_from_slice(extra);
    args
}

pub(crate) fn join(rows: &[Vec<u8>]) -> String {
    rows.iter()
        .map(|r| String::from_utf8(r.clone()).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_resumed_run_writes_each_rejected_row_once() {
    let db = target();
    // Batches of two: [good, bad fields] [CHECK violation, good] [good, bad uuid].
    let wizard = format!("{},w@example.test,w,W,wizard,red", uuid(7)).into_bytes();
    let rows = [
        good(1),
        b"bad,1".to_vec(),
        wizard,
        good(2),
        good(3),
        b"not-a-uuid,u@example.test,u,U,user,red".to_vec(),
    ];
    let file = db.write("resume.csv", format!("{COLS}\n{}\n", join(&rows)));
    let rejects = db.path("rejects.csv");
    let base = ["--batch-size", "2", "--connections", "1", "--json"];
    let mut first = rejecting(&rejects, &base);
    first.extend(["--max-errors", "1"]);
    let run = db.seed(&file, &first);
    run.expect_code(1);
    assert!(run.stderr.contains("--max-errors 1"), "{}", run.stderr);
    let (_, got) = read_rejects(&rejects);
    assert_eq!(
        got.iter().map(|r| r.line).collect::<Vec<_>>(),
        [3],
        "only the committed batch's reject is written"
    );
    assert_eq!(
        db.count("accounts"),
        2,
        "the existing row and the first batch's"
    );

    let mut resumed = rejecting(&rejects, &base);
    resumed.extend(["--max-errors", "3", "--resume"]);
    let run = db.seed(&file, &resumed);
    run.expect_code(3);
    assert_eq!(
        run.figure("rows_rejected"),
        3,
        "the run's rejects, both attempts"
    );
    assert_eq!(run.figure("rows_resumed"), 2);
    let (_, got) = read_rejects(&rejects);
    assert_eq!(got.iter().map(|r| r.line).collect::<Vec<_>>(), [3, 4, 7]);
    assert_eq!(got[1].sqlstate, "23514");
    assert_eq!(db.count("accounts"), 4);
    let shown = run_bin(&["runs", "show", "1", "--database-url", db.url()], None);
    shown.expect_ok();
    assert!(shown.stdout.contains("3 rejected"), "{}", shown.stdout);
}

#[test]
fn the_rejects_file_cannot_be_the_input() {
    let db = target();
    let file = db.write("self.csv", format!("{COLS}\n{}\n", join(&[good(1)])));
    let run = db.seed(&file, &["--rejects", path_str(&file)]);
    run.expect_code(2);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        format!("{COLS}\n{}\n", join(&[good(1)])).into_bytes(),
        "the input is untouched"
    );
    assert_eq!(
        db.scalar_text("SELECT to_regclass('provisioner.runs')::text"),
        None,
        "no ledger, so no run recorded"
    );
    assert_eq!(db.count("accounts"), 1, "only the row target() put there");
}

#[test]
fn a_batch_with_many_refused_rows_loads_every_good_one() {
    let db = target();
    // One batch of 300 rows, every third refused by the server: a CHECK violation, the
    // email of the row before it, a username the trigger refuses, or a team that is not
    // there (a foreign key, checked at the end of the COPY: found by bisection).
    let mut rows = Vec::new();
    let mut bad_lines = Vec::new();
    for i in 1..=300u32 {
        let line = u64::from(i) + 1;
        let raw = match i % 9 {
            3 => format!("{},w{i}@example.test,w{i},W,wizard,red", uuid(i)),
            6 => format!("{},g{}@example.test,d{i},D,user,red", uuid(i), i - 1),
            0 if i % 2 == 0 => format!("{},b{i}@example.test,bot{i},B,user,red", uuid(i)),
            0 => format!("{},t{i}@example.test,t{i},T,user,blue", uuid(i)),
            _ => String::from_utf8(good(i)).unwrap(),
        };
        if i % 3 == 0 {
            bad_lines.push(line);
        }
        rows.push(raw.into_bytes());
    }
    let file = db.write("many.csv", format!("{COLS}\n{}\n", join(&rows)));
    let rejects = db.path("rejects.csv");
    let run = db.seed(
        &file,
        &rejecting(&rejects, &["--batch-size", "300", "--json"]),
    );
    run.expect_code(3);
    assert_eq!(run.figure("rows_inserted"), 200);
    assert_eq!(run.figure("rows_rejected"), 100);
    assert_eq!(db.count("accounts"), 201);
    let (_, got) = read_rejects(&rejects);
    assert_eq!(got.iter().map(|r| r.line).collect::<Vec<_>>(), bad_lines);
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM accounts WHERE username LIKE 'g%' OR username = 'taken'"
        ),
        201
    );
}

#[test]
fn a_value_too_large_for_its_index_is_rejected() {
    let db = target();
    // 20,000 characters that do not compress: far over a btree entry's 2,704 bytes.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: String = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let huge = format!("{},{noise}@example.test,huge,H,user,red", uuid(2)).into_bytes();
    let file = db.write(
        "huge.csv",
        format!("{COLS}\n{}\n", join(&[good(1), huge, good(3)])),
    );
    let rejects = db.path("rejects.csv");
    let run = db.seed(&file, &rejecting(&rejects, &["--json"]));
    run.expect_code(3);
    assert_eq!(run.figure("rows_inserted"), 2);
    let (_, got) = read_rejects(&rejects);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].line, got[0].sqlstate.as_str()),
        (3, "54000"),
        "{}",
        got[0].reason
    );
}

#[test]
fn a_batch_of_only_refused_rows_rejects_every_one() {
    // 2,000 rows in one batch, each breaking the foreign key: none is named by COPY, so
    // each is found by bisection, in a savepoint rolled back. Savepoints left open used to
    // exhaust the server's lock table (out of shared memory, SQLSTATE 53200).
    // (Ids from 10,001: target()'s own row has the uuid of 999.)
    let rows: Vec<Vec<u8>> = (1..=2000u32)
        .map(|i| format!("{},f{i}@example.test,f{i},F,user,blue", uuid(10_000 + i)).into_bytes())
        .collect();
    for args in [&[][..], &["--on-conflict", "skip"][..]] {
        let db = target();
        let file = db.write("all_bad.csv", format!("{COLS}\n{}\n", join(&rows)));
        let rejects = db.path("rejects.csv");
        let mut all = rejecting(&rejects, &["--batch-size", "2000", "--json"]);
        all.extend_from_slice(args);
        let run = db.seed(&file, &all);
        run.expect_code(3);
        assert_eq!(run.figure("rows_inserted"), 0, "{args:?}");
        assert_eq!(run.figure("rows_rejected"), 2000, "{args:?}");
        assert_eq!(
            db.count("accounts"),
            1,
            "{args:?}: only the row target() put there"
        );
        let (_, got) = read_rejects(&rejects);
        assert_eq!(
            got.iter().map(|r| r.line).collect::<Vec<_>>(),
            (2..=2001).collect::<Vec<u64>>(),
            "{args:?}"
        );
        assert!(
            got.iter()
                .all(|r| r.sqlstate == "23503" && r.reason.contains("accounts_team_fkey")),
            "{args:?}: {:?}",
            got.iter().find(|r| r.sqlstate != "23503")
        );
    }
}

#[test]
fn a_deferred_foreign_key_is_checked_where_its_row_can_be_named() {
    let deferred = || {
        let db = target();
        db.execute(
            "ALTER TABLE accounts DROP CONSTRAINT accounts_team_fkey; \
             ALTER TABLE accounts ADD CONSTRAINT accounts_team_fkey FOREIGN KEY (team) \
               REFERENCES teams (code) DEFERRABLE INITIALLY DEFERRED",
        );
        db
    };
    // Batches of two: [1, 2] [3, blue on line 5] [5].
    let blue = format!("{},blue@example.test,blue,B,user,blue", uuid(4)).into_bytes();
    let rows = [good(1), good(2), good(3), blue, good(5)];
    let text = format!("{COLS}\n{}\n", join(&rows));
    let base = ["--batch-size", "2", "--connections", "1", "--json"];
    let names_line_5 = |run: &Run, what: &str| {
        let error = run.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.starts_with("line 5: ") && error.contains("23503"),
            "{what}: {error}"
        );
    };

    let db = deferred();
    let file = db.write("deferred.csv", &text);
    let run = db.seed(&file, &base);
    run.expect_code(1);
    names_line_5(&run, "stop mode");
    assert_eq!(db.count("accounts"), 3, "the first batch committed");

    let db = deferred();
    let file = db.write("deferred.csv", &text);
    let run = db.seed(&file, &[&base[..], &["--dry-run"]].concat());
    run.expect_code(1);
    names_line_5(&run, "--dry-run");
    assert_eq!(db.count("accounts"), 1, "a dry run writes nothing");

    for dry_run in [false, true] {
        let db = deferred();
        let file = db.write("deferred.csv", &text);
        let rejects = db.path("rejects.csv");
        let mut args = rejecting(&rejects, &base);
        if dry_run {
            args.push("--dry-run");
        }
        let run = db.seed(&file, &args);
        run.expect_code(3);
        assert_eq!(run.figure("rows_inserted"), 4, "dry run {dry_run}");
        assert_eq!(run.figure("rows_rejected"), 1, "dry run {dry_run}");
        let (_, got) = read_rejects(&rejects);
        assert_eq!(
            got.iter()
                .map(|r| (r.line, r.sqlstate.as_str()))
                .collect::<Vec<_>>(),
            [(5, "23503")],
            "dry run {dry_run}"
        );
        assert_eq!(db.count("accounts"), if dry_run { 1 } else { 5 });
    }
}
