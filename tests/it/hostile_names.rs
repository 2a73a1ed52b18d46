//! Hostile identifiers: a schema, tables, columns, a constraint, a ledger schema and a role
//! whose names hold spaces, upper case, double and single quotes, semicolons, `--`,
//! backslashes, `$1`, `%s` and non-ASCII go through every statement the tool builds from
//! names (COPY, the staged merge, the ledger, purge by keys, by run, by predicate and with
//! `--cascade`, the privilege check), change exactly what they should, inject nothing, and
//! are shown readably in messages (the suggested GRANT pastes into psql as it is).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::rejects::read_rejects;
use crate::common::*;

const SCHEMA: &str = "Load Test";
const TABLE: &str = r#"Acc "x"; drop table accounts;--"#;
const CHILD: &str = r#"Kid "y"; delete from accounts;--"#;
/// The table as `--table` takes it (SQL spelling).
const TABLE_SQL: &str = r#""Load Test"."Acc ""x""; drop table accounts;--""#;
const CHILD_SQL: &str = r#""Load Test"."Kid ""y""; delete from accounts;--""#;
/// The table as messages and `--json` show it.
const TABLE_SHOWN: &str = r#"Load Test.Acc "x"; drop table accounts;--"#;
const LEDGER: &str = "Ledger; drop schema public cascade;--";
const LEDGER_SQL: &str = r#""Ledger; drop schema public cascade;--""#;

/// The key's type (a domain over text), which `purge --run` casts to.
const MAIL_SQL: &str = r#""Load Test"."mail ""addr""; --""#;
/// The unique key.
const EMAIL: &str = r#"E-Mail "primary""#;
/// An integer under a CHECK constraint.
const NAIVE: &str = "naïve; drop";
const NAME: &str = "Ünïcødé 名前";
const ITS: &str = "it's";
const DOLLAR: &str = "$1";
/// A numeric column.
const TOTAL: &str = r"%s \ Total--";
const COLUMNS: [&str; 6] = [EMAIL, NAIVE, NAME, ITS, DOLLAR, TOTAL];
/// The CHECK constraint on `NAIVE`.
const CHECK: &str = r#"chk "naïve"; --"#;
/// The child's column referencing `EMAIL`.
const PARENT_EMAIL: &str = "parent's E-Mail";

fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The canary `accounts` (1000 rows, loaded with no ledger) and the hostile schema, table
/// and ledger-free database around them; returns the canary's dump to compare at the end.
fn hostile_db() -> (TestDb, Vec<String>) {
    let db = TestDb::with_accounts();
    db.seed(&fixture_path(), &["--no-ledger"]).expect_ok();
    assert_eq!(db.count("accounts"), 1000);
    db.execute(&format!(
        "CREATE SCHEMA {s}; \
         CREATE DOMAIN {MAIL_SQL} AS text; \
         CREATE TABLE {TABLE_SQL} ( \
           id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
           {email} {MAIL_SQL} NOT NULL UNIQUE, \
           {naive} integer CONSTRAINT {check} CHECK ({naive} >= 0), \
           {name} text, {its} text, {dollar} text, {total} numeric(10,2))",
        s = qi(SCHEMA),
        email = qi(EMAIL),
        naive = qi(NAIVE),
        check = qi(CHECK),
        name = qi(NAME),
        its = qi(ITS),
        dollar = qi(DOLLAR),
        total = qi(TOTAL),
    ));
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT to_regclass('{}')::text",
            TABLE_SQL.replace('\'', "''")
        )),
        Some(TABLE_SQL.to_string()),
        "the hostile table was created under its name"
    );
    let canary = db.dump("accounts");
    (db, canary)
}

/// The canary is as it was, `public` is there, and no ledger was made under the default name.
#[track_caller]
fn assert_untouched(db: &TestDb, canary: &[String]) {
    assert_eq!(
        db.scalar_text("SELECT to_regclass('public.accounts')::text"),
        Some("accounts".to_string()),
        "accounts still exists"
    );
    assert_eq!(db.count("accounts"), 1000, "rows of accounts");
    assert_same_rows("accounts", &db.dump("accounts"), canary);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname IN ('public', 'Load Test')"),
        2,
        "schemas public and Load Test"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'provisioner'"),
        0,
        "a ledger under the default name"
    );
}

/// One data row for email `u{i}@x.test`: hostile text values, `naive` and `total` as given.
fn row(i: u32, naive: &str, total: &str) -> Vec<Option<String>> {
    vec![
        Some(format!("u{i}@x.test")),
        Some(naive.to_string()),
        Some(format!("名前 {i} ü")),
        Some(format!("it's row {i}'); drop table accounts;--")),
        Some(format!("$1 %s \\ \"{i}\"")),
        Some(total.to_string()),
    ]
}

fn rows(range: std::ops::Range<u32>) -> Vec<Vec<Option<String>>> {
    range
        .map(|i| row(i, &i.to_string(), &format!("{i}.25")))
        .collect()
}

/// A CSV file whose header is quoted as CSV needs (`csv_file` writes headers as they are).
fn csv_with(db: &TestDb, file: &str, header: &[&str], records: &[Vec<Option<String>>]) -> PathBuf {
    let mut text = csv_record(&header.iter().map(|h| Some(*h)).collect::<Vec<_>>());
    text.push('\n');
    for r in records {
        text.push_str(&csv_record(r));
        text.push('\n');
    }
    db.write(file, text)
}

fn hostile_csv(db: &TestDb, file: &str, records: &[Vec<Option<String>>]) -> PathBuf {
    csv_with(db, file, &COLUMNS, records)
}

fn key_csv(db: &TestDb, file: &str, emails: &[u32]) -> PathBuf {
    let records: Vec<Vec<Option<String>>> = emails
        .iter()
        .map(|i| vec![Some(format!("u{i}@x.test"))])
        .collect();
    csv_with(db, file, &[EMAIL], &records)
}

/// `provisioner <args…> --database-url <db> --ledger-schema <LEDGER>`.
fn run(db: &TestDb, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--database-url", db.url(), "--ledger-schema", LEDGER]);
    run_bin_bounded(&all, Duration::from_secs(120))
}

fn seed(db: &TestDb, csv: &Path, args: &[&str]) -> Run {
    let mut all = vec!["seed", path_str(csv), "--table", TABLE_SQL, "--json"];
    all.extend_from_slice(args);
    run(db, &all)
}

fn purge(db: &TestDb, args: &[&str]) -> Run {
    let mut all = vec!["purge"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--table", TABLE_SQL, "--yes", "--json"]);
    run(db, &all)
}

/// The hostile child table, its unindexed foreign key (`ON DELETE NO ACTION`) on the
/// hostile key, one row per parent `u{i}@x.test` named.
fn create_child(db: &TestDb, parents: &[u32]) {
    db.execute(&format!(
        "CREATE TABLE {CHILD_SQL} (id serial PRIMARY KEY, {} text REFERENCES {TABLE_SQL} ({}))",
        qi(PARENT_EMAIL),
        qi(EMAIL)
    ));
    let mut client = db.client();
    for i in parents {
        client
            .execute(
                &format!("INSERT INTO {CHILD_SQL} ({}) VALUES ($1)", qi(PARENT_EMAIL)),
                &[&format!("u{i}@x.test")],
            )
            .expect("insert a child row");
    }
}

fn rows_in(db: &TestDb) -> i64 {
    db.count(TABLE_SQL)
}

fn ledger_runs(db: &TestDb) -> i64 {
    db.scalar_i64(&format!("SELECT count(*) FROM {LEDGER_SQL}.runs"))
}

#[test]
fn hostile_names_through_seed_rejects_dry_run_ledger_runs_and_every_purge() {
    let (db, canary) = hostile_db();

    // Plain COPY, the hostile header naming the hostile columns.
    let first = hostile_csv(&db, "first.csv", &rows(0..20));
    let r = seed(&db, &first, &[]);
    r.expect_ok();
    assert_eq!(r.figure("rows_inserted"), 20);
    assert_eq!(r.json()["table"].as_str(), Some(TABLE_SHOWN));
    assert_eq!(rows_in(&db), 20);
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT {} || '|' || {} || '|' || {} || '|' || {}::text FROM {TABLE_SQL} WHERE {} = 'u7@x.test'",
            qi(NAME),
            qi(ITS),
            qi(DOLLAR),
            qi(TOTAL),
            qi(EMAIL)
        )),
        Some("名前 7 ü|it's row 7'); drop table accounts;--|$1 %s \\ \"7\"|7.25".to_string()),
        "hostile values went in as data"
    );
    assert_eq!(ledger_runs(&db), 1);

    // --on-conflict error: the duplicate key is named with its hostile column, readably.
    let r = seed(&db, &first, &["--connections", "1"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("line 2") && r.stderr.contains(r#"E-Mail ""primary"""#),
        "the refusal names the line and the key column:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("u0@x.test") && r.stderr.contains("already exists"),
        "the refusal names the key:\n{}",
        r.stderr
    );
    let failed_run = r.json()["run_id"].as_i64().expect("the failed run's id");
    assert_eq!(rows_in(&db), 20);

    // The failed run's resume command (`runs show`), read back by a shell, is the exact
    // argument list; with the conflicting rows gone, pasted into a shell it finishes the run.
    let r = run(&db, &["runs", "show", &failed_run.to_string(), "--json"]);
    r.expect_ok();
    let resume = r.json()["resume_command"]
        .as_str()
        .unwrap_or_else(|| panic!("the failed run has a resume command: {}", r.stdout))
        .to_string();
    let words = std::process::Command::new("sh")
        .args(["-c", &format!("set -- {resume}; printf '%s\\n' \"$@\"")])
        .output()
        .expect("run sh");
    let words = String::from_utf8(words.stdout).expect("UTF-8 words");
    let words: Vec<&str> = words.lines().collect();
    for pair in [["--table", TABLE_SQL], ["--ledger-schema", LEDGER]] {
        assert!(
            words.windows(2).any(|w| w == pair),
            "the resume command {resume} does not carry {pair:?} (read back as {words:?})"
        );
    }

    db.execute(&format!("DELETE FROM {TABLE_SQL}"));
    let out = std::process::Command::new("sh")
        .args(["-c", &resume])
        .env_clear()
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "the resume command {resume} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows_in(&db), 20);
    assert_eq!(ledger_runs(&db), 2, "the resumed run is the failed one");

    // The staged path: skip, then update keyed on the hostile column from a plain-named CSV
    // mapped onto the hostile columns.
    let r = seed(&db, &first, &["--on-conflict", "skip"]);
    r.expect_ok();
    assert_eq!(
        (r.figure("rows_inserted"), r.figure("rows_skipped")),
        (0, 20)
    );
    let plain_header = ["mail", "n", "name", "its", "dollar", "total"];
    let tenfold: Vec<Vec<Option<String>>> = (0..20)
        .map(|i| row(i, &(10 * i).to_string(), "1.50"))
        .collect();
    let plain = db.write("plain.csv", csv_file(&plain_header, &tenfold, "\n"));
    let maps: Vec<String> = plain_header
        .iter()
        .zip(COLUMNS)
        .map(|(from, to)| format!("{from}={to}"))
        .collect();
    let mut args = vec!["--on-conflict", "update", "--key", EMAIL];
    for m in &maps {
        args.extend_from_slice(&["--map", m]);
    }
    let r = seed(&db, &plain, &args);
    r.expect_ok();
    assert_eq!(
        (r.figure("rows_inserted"), r.figure("rows_updated")),
        (0, 20)
    );
    assert_eq!(rows_in(&db), 20);
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT sum({})::text || '/' || sum({})::text FROM {TABLE_SQL}",
            qi(NAIVE),
            qi(TOTAL)
        )),
        Some("1900/30.00".to_string()),
        "update set every non-key hostile column"
    );

    // A dry run: counted, rolled back, not recorded.
    let runs_before = ledger_runs(&db);
    let later = hostile_csv(&db, "later.csv", &rows(100..105));
    let r = seed(&db, &later, &["--dry-run"]);
    r.expect_ok();
    assert_eq!(r.json()["command"].as_str(), Some("seed --dry-run"));
    assert_eq!(r.figure("rows_inserted"), 5);
    assert_eq!(rows_in(&db), 20);
    assert_eq!(ledger_runs(&db), runs_before, "a dry run is not recorded");

    // Reject mode: a row breaking the hostile CHECK, one with a bad value in the hostile
    // numeric column; the rejects file names that column.
    let mixed = vec![
        row(200, "1", "1.00"),
        row(201, "2", "2.00"),
        row(202, "-1", "3.00"),
        row(203, "4", "abc"),
        row(204, "5", "5.00"),
    ];
    let mixed_csv = hostile_csv(&db, "mixed.csv", &mixed);
    let rejects = db.path("rejects.csv");
    let r = seed(&db, &mixed_csv, &["--rejects", path_str(&rejects)]);
    r.expect_code(3);
    assert_eq!(
        (r.figure("rows_inserted"), r.figure("rows_rejected")),
        (3, 2)
    );
    let rejects_run = r.json()["run_id"].as_i64().expect("the rejects run's id");
    assert_eq!(rows_in(&db), 23);
    let (header, rejected) = read_rejects(&rejects);
    let mut want_header = csv_record(&COLUMNS.map(Some));
    want_header.truncate(want_header.trim_end().len());
    assert_eq!(
        String::from_utf8_lossy(&header),
        format!("{want_header},rejected_line,rejected_column,rejected_sqlstate,rejected_reason"),
        "the rejects header repeats the hostile header"
    );
    let summary: Vec<(u64, Option<&str>, &str)> = rejected
        .iter()
        .map(|r| (r.line, r.column.as_deref(), r.sqlstate.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![(4, None, "23514"), (5, Some(TOTAL), "22P02")],
        "rejected rows: {rejected:#?}"
    );
    assert!(
        rejected[0]
            .reason
            .contains(&format!("check constraint \"{CHECK}\"")),
        "the CHECK rejection names the constraint readably: {}",
        rejected[0].reason
    );

    // The ledger lives in the hostile schema; runs and runs show read it.
    assert_eq!(
        ledger_runs(&db),
        5,
        "seed, failed then resumed seed, skip, update, rejects"
    );
    let r = run(&db, &["runs", "--json"]);
    r.expect_ok();
    let listed = r.json();
    let summary: Vec<(&str, &str, [u64; 4])> = listed
        .as_array()
        .expect("runs --json is an array")
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
            (
                r["target_table"].as_str().expect("target_table"),
                r["status"].as_str().expect("status"),
                [
                    n("rows_inserted"),
                    n("rows_updated"),
                    n("rows_skipped"),
                    n("rows_rejected"),
                ],
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (TABLE_SHOWN, "completed", [3, 0, 0, 2]),
            (TABLE_SHOWN, "completed", [0, 20, 0, 0]),
            (TABLE_SHOWN, "completed", [0, 0, 20, 0]),
            (TABLE_SHOWN, "completed", [20, 0, 0, 0]),
            (TABLE_SHOWN, "completed", [20, 0, 0, 0]),
        ],
        "runs --json, newest first: {listed}"
    );
    let r = run(&db, &["runs"]);
    r.expect_ok();
    assert_eq!(
        r.stdout.matches(TABLE_SHOWN).count(),
        5,
        "runs lists the table readably:\n{}",
        r.stdout
    );
    let r = run(&db, &["runs", "show", &rejects_run.to_string()]);
    r.expect_ok();
    assert!(
        r.stdout.contains(&format!("table:     {TABLE_SHOWN}")),
        "runs show names the table:\n{}",
        r.stdout
    );
    // Purge by the keys in a file with the hostile header (one key not there).
    let keys = key_csv(&db, "keys.csv", &[5, 6, 7, 8, 9, 999]);
    let r = purge(&db, &[path_str(&keys)]);
    r.expect_ok();
    assert_eq!((r.figure("rows_deleted"), r.figure("rows_missing")), (5, 1));
    assert_eq!(rows_in(&db), 18);

    // Purge --run: exactly the three rows the rejects run inserted.
    let r = purge(&db, &["--run", &rejects_run.to_string()]);
    r.expect_ok();
    assert_eq!(r.figure("rows_deleted"), 3);
    assert_eq!(rows_in(&db), 15);
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM {TABLE_SQL} WHERE {} LIKE 'u20_@x.test'",
            qi(EMAIL)
        )),
        0
    );

    // Purge --where, the predicate quoting the hostile columns itself: naïve = 10·i, so
    // i = 15…19.
    let predicate = format!(
        "{} >= 150 AND {} LIKE 'it''s row %' AND {} <> '$1; --'",
        qi(NAIVE),
        qi(ITS),
        qi(DOLLAR)
    );
    let r = purge(&db, &["--where", &predicate]);
    r.expect_ok();
    assert_eq!(r.figure("rows_deleted"), 5);
    assert_eq!(rows_in(&db), 10);

    // --cascade into a hostile child table: refused (and named) without it, then done.
    create_child(&db, &[0, 0, 1, 3]);
    let doomed = key_csv(&db, "doomed.csv", &[0, 1]);
    let r = purge(&db, &[path_str(&doomed)]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains(&format!("Load Test.{CHILD}({PARENT_EMAIL}) via")),
        "the refusal names the hostile child readably:\n{}",
        r.stderr
    );
    assert_eq!((rows_in(&db), db.count(CHILD_SQL)), (10, 4));
    // The warning about the unindexed reference suggests an index that pastes into psql.
    let create_index = r
        .stderr
        .split_once("Consider ")
        .and_then(|(_, rest)| rest.split_once(" first"))
        .map(|(sql, _)| sql.to_string())
        .unwrap_or_else(|| panic!("no CREATE INDEX suggested:\n{}", r.stderr));
    assert_eq!(
        create_index,
        format!("CREATE INDEX ON {CHILD_SQL} ({})", qi(PARENT_EMAIL))
    );
    db.psql(&format!("{create_index};"));
    let r = purge(&db, &[path_str(&doomed), "--cascade"]);
    r.expect_ok();
    assert!(
        !r.stderr.contains("without an index"),
        "the suggested index did not count:\n{}",
        r.stderr
    );
    assert_eq!(r.figure("rows_deleted"), 2);
    assert_eq!((rows_in(&db), db.count(CHILD_SQL)), (8, 1));
    assert_eq!(
        db.column_text(&format!("SELECT {} FROM {CHILD_SQL}", qi(PARENT_EMAIL))),
        vec![Some("u3@x.test".to_string())]
    );
    assert_eq!(
        db.column_text(&format!(
            "SELECT {} FROM {TABLE_SQL} ORDER BY id",
            qi(EMAIL)
        )),
        [2, 3, 4, 10, 11, 12, 13, 14]
            .map(|i| Some(format!("u{i}@x.test")))
            .to_vec()
    );
    assert_eq!(
        ledger_runs(&db),
        9,
        "5 seeds and 4 purges (a refusal records no run)"
    );

    assert_untouched(&db, &canary);
}

/// A login role with a hostile name, dropped with what it was granted in `db`, panics
/// included.
struct Role {
    name: String,
    admin_url: String,
    url: String,
}

impl Role {
    fn new(db: &TestDb) -> Role {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("Tester \"{nanos}\"; drop role postgres;-- 'ü'");
        db.execute(&format!("CREATE ROLE {} LOGIN", qi(&name)));
        let addr = server_tcp_addr();
        let quoted = name.replace('\\', "\\\\").replace('\'', "\\'");
        Role {
            url: format!(
                "host={} port={} user='{quoted}' dbname={}",
                addr.ip(),
                addr.port(),
                db.name()
            ),
            admin_url: db.url().to_string(),
            name,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--database-url", &self.url, "--ledger-schema", LEDGER]);
        run_bin_bounded(&all, Duration::from_secs(120))
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let q = qi(&self.name);
        let dropped = postgres::Client::connect(&self.admin_url, postgres::NoTls)
            .and_then(|mut c| c.batch_execute(&format!("DROP OWNED BY {q}; DROP ROLE {q}")));
        match dropped {
            Ok(()) => {}
            Err(e) if std::thread::panicking() => eprintln!("DROP ROLE {q}: {e}"),
            Err(e) => panic!("DROP ROLE {q}: {e}"),
        }
    }
}

/// Expects the refusal (exit 2) to be exactly `want` (each `role … lacks …: GRANT …` line),
/// then pastes each suggested GRANT into psql as the admin.
#[track_caller]
fn grant_what_is_named(db: &TestDb, run: &Run, want: &[String]) {
    run.expect_code(2);
    let lacks: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.split_once("error: ").map_or(Some(l), |(_, m)| Some(m)))
        .filter(|l| l.contains(" lacks "))
        .collect();
    assert_eq!(lacks, want, "the refusal:\n{}", run.stderr);
    for line in lacks {
        let (_, grant) = line.split_once(": GRANT ").expect("a GRANT");
        db.psql(&format!("GRANT {grant};"));
    }
}

#[test]
fn least_privilege_refusals_name_hostile_objects_with_grants_that_paste_into_psql() {
    let (db, canary) = hostile_db();
    // The ledger, made by the admin, and the grants docs/connecting.md gives on it (quoted).
    run(&db, &["runs"]).expect_ok();
    let role = Role::new(&db);
    let grantee = qi(&role.name);
    db.execute(&format!(
        "GRANT USAGE ON SCHEMA {LEDGER_SQL} TO {grantee}; \
         GRANT SELECT ON {LEDGER_SQL}.migrations TO {grantee}; \
         GRANT SELECT, INSERT, UPDATE ON {LEDGER_SQL}.runs, {LEDGER_SQL}.batches TO {grantee}; \
         GRANT SELECT, INSERT ON {LEDGER_SQL}.inserted_keys, {LEDGER_SQL}.rejected_rows \
           TO {grantee};"
    ));
    let lacks = |privilege: &str, object: &str, grant_on: &str| {
        format!(
            "role {} lacks {privilege} on {object}: GRANT {privilege} ON {grant_on} TO {grantee}",
            role.name
        )
    };
    let table_sql = format!("{}.{}", qi(SCHEMA), qi(TABLE));
    assert_eq!(table_sql, TABLE_SQL);

    // Seed: nothing on the hostile schema or table yet.
    let csv = hostile_csv(&db, "first.csv", &rows(0..20));
    let seed_args = ["seed", path_str(&csv), "--table", TABLE_SQL, "--json"];
    let r = role.run(&seed_args);
    grant_what_is_named(
        &db,
        &r,
        &[
            lacks("USAGE", "schema Load Test", "SCHEMA \"Load Test\""),
            lacks("INSERT", &format!("table {TABLE_SHOWN}"), TABLE_SQL),
        ],
    );
    assert_eq!((rows_in(&db), ledger_runs(&db)), (0, 0), "nothing moved");
    let r = role.run(&seed_args);
    r.expect_ok();
    assert_eq!(r.figure("rows_inserted"), 20);
    assert_eq!(rows_in(&db), 20);

    // Purge with --cascade into the hostile child: DELETE and SELECT on both tables.
    create_child(&db, &[0, 4]);
    let keys = key_csv(&db, "keys.csv", &[0, 1, 2]);
    let purge_args = [
        "purge",
        path_str(&keys),
        "--table",
        TABLE_SQL,
        "--cascade",
        "--yes",
        "--json",
    ];
    // Every missing privilege at once: the target's and the child's.
    let child_shown = format!("table Load Test.{CHILD}");
    let missing = [
        lacks("SELECT", &format!("table {TABLE_SHOWN}"), TABLE_SQL),
        lacks("DELETE", &format!("table {TABLE_SHOWN}"), TABLE_SQL),
        lacks("SELECT", &child_shown, CHILD_SQL),
        lacks("DELETE", &child_shown, CHILD_SQL),
    ];
    grant_what_is_named(&db, &role.run(&purge_args), &missing);
    assert_eq!(
        (rows_in(&db), db.count(CHILD_SQL), ledger_runs(&db)),
        (20, 2, 1),
        "nothing moved"
    );
    let r = role.run(&purge_args);
    r.expect_ok();
    assert_eq!(r.figure("rows_deleted"), 3);
    assert_eq!((rows_in(&db), db.count(CHILD_SQL)), (17, 1));

    assert_untouched(&db, &canary);
}

#[test]
fn hostile_table_name_is_quoted_everywhere() {
    let db = TestDb::with_accounts();
    db.execute(
        "CREATE SCHEMA \"Load Test\";\
         CREATE TABLE \"Load Test\".\"Acc \"\"x\"\"; drop table accounts;--\" \
           (LIKE accounts INCLUDING ALL);",
    );
    let table = TABLE_SQL;
    let run = db.seed(&fixture_path(), &["--table", table, "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 1000);
    assert_eq!(run.json()["table"].as_str(), Some(TABLE_SHOWN));
    assert_eq!(db.count(table), 1000);

    // The staged path (a temp table made from the target, then INSERT … ON CONFLICT).
    let run = db.seed(
        &fixture_path(),
        &["--table", table, "--on-conflict", "update", "--json"],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_updated"), 1000);
    let run = db.seed(
        &fixture_path(),
        &["--table", table, "--on-conflict", "skip", "--json"],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_skipped"), 1000);
    assert_eq!(db.count(table), 1000);

    assert_eq!(
        db.scalar_text("SELECT to_regclass('public.accounts')::text"),
        Some("accounts".to_string()),
        "accounts still exists"
    );
    assert_eq!(db.count("accounts"), 0, "nothing went into accounts");
}
