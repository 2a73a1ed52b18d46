//! The exact bytes of `--json`: `seed` (a load, a dry run, reject mode, a run that fails in
//! stop mode), `purge` (`--run`, a `--where` dry run), `runs` and `runs show ID` (a seed, a
//! purge, a failed seed with its resume command). Scripts parse these; a refactor must not
//! change a byte of them. Each output is compared whole, as one string, after [`mask`] has
//! replaced only what differs from run to run or machine to machine: timings, the start
//! time, the host name, and the paths and URL the test itself made. Run ids are not masked:
//! in a fresh database they are 1, 2, 3… in the order of the runs.
//!
//! The test's database is reached without a password (as in CI, trust authentication): with
//! one, the command lines the ledger stores are redacted and do not read back as `<url>`.

use std::path::Path;

use crate::common::*;

/// `stdout` with only what differs from run to run and machine to machine replaced:
///
/// - the paths and the URL the test itself made, literally: the binary (`<bin>`), this
///   database's conninfo (`<url>`), its scratch directory (`<scratch>/`) and the repository
///   (`<repo>/`);
/// - the number after `"elapsed_s":`, `"rows_per_s":` and `"duration_s":` by its kind:
///   `<float>` when it is written as a float (a `.` or an exponent), `<int>` otherwise, so a
///   change of type or of number formatting still shows;
/// - the string after `"started_at":` when it has today's shape, `YYYY-MM-DD HH:MM:SS±HH`,
///   by `"<timestamp>"`; the string after `"host":` by `"<host>"`.
///
/// Anything else (a key renamed or moved, a null that became a string, a timestamp in
/// another format) is left as it is, and fails the comparison.
fn mask(db: &TestDb, stdout: &str) -> String {
    let scratch = db.path("");
    let repo = repo_path("");
    let out = stdout
        .replace(BIN, "<bin>")
        .replace(db.url(), "<url>")
        .replace(path_str(&scratch), "<scratch>/")
        .replace(path_str(&repo), "<repo>/");
    assert!(
        !out.contains(db.name()),
        "the database's name is still in the masked output:\n{out}"
    );
    mask_volatile(&out)
}

/// The values of [`mask`] that change from run to run: timings, `started_at`, `host`.
fn mask_volatile(json: &str) -> String {
    let mut out = json.to_string();
    for key in ["elapsed_s", "rows_per_s", "duration_s"] {
        out = mask_values(&out, key, |v| {
            let number = v
                .bytes()
                .all(|b| b.is_ascii_digit() || b"-+.eE".contains(&b));
            match (number, v.contains(['.', 'e', 'E'])) {
                (false, _) => None,
                (true, true) => Some("<float>"),
                (true, false) => Some("<int>"),
            }
        });
    }
    out = mask_values(&out, "started_at", |v| {
        timestamp_shape(v).then_some("\"<timestamp>\"")
    });
    mask_values(&out, "host", |v| {
        (v.len() >= 2 && v.starts_with('"') && v.ends_with('"')).then_some("\"<host>\"")
    })
}

/// Replaces the value after every `"<key>":` in `json` (a number, `null`, or a string
/// without escapes) by what `placeholder` gives for its text, if anything.
fn mask_values(
    json: &str,
    key: &str,
    placeholder: impl Fn(&str) -> Option<&'static str>,
) -> String {
    let tag = format!("\"{key}\":");
    let mut out = String::new();
    let mut rest = json;
    while let Some(at) = rest.find(&tag) {
        let (before, after) = rest.split_at(at + tag.len());
        out.push_str(before);
        let len = if let Some(string) = after.strip_prefix('"') {
            string.find('"').map_or(after.len(), |end| end + 2)
        } else {
            after.find([',', '}', ']']).unwrap_or(after.len())
        };
        let value = &after[..len];
        out.push_str(placeholder(value).unwrap_or(value));
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// `"YYYY-MM-DD HH:MM:SS±HH"` or `"…±HH:MM"` (quotes included): `started_at` as `runs`
/// writes it, in the session's time zone.
fn timestamp_shape(v: &str) -> bool {
    let fits = |text: &str, shape: &str| {
        text.len() == shape.len()
            && text.bytes().zip(shape.bytes()).all(|(b, s)| match s {
                b'0' => b.is_ascii_digit(),
                b'+' => b == b'+' || b == b'-',
                _ => b == s,
            })
    };
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return false;
    };
    let (Some(datetime), Some(offset)) = (inner.get(..19), inner.get(19..)) else {
        return false;
    };
    fits(datetime, "0000-00-00 00:00:00") && (fits(offset, "+00") || fits(offset, "+00:00"))
}

/// Runs `provisioner <args…>`: its exit code and its stdout, masked.
fn json_of(db: &TestDb, args: &[&str]) -> (i32, String) {
    let run = run_bin(args, None);
    (run.code, mask(db, &run.stdout))
}

fn seed(db: &TestDb, file: &Path, extra: &[&str]) -> (i32, String) {
    json_of(db, &seed_args(db, file, extra))
}

fn purge(db: &TestDb, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["purge", "--database-url", db.url()];
    args.extend_from_slice(extra);
    json_of(db, &args)
}

fn runs(db: &TestDb, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["runs", "--database-url", db.url()];
    args.extend_from_slice(extra);
    json_of(db, &args)
}

/// Asserts a run's exit code and its whole masked stdout.
#[track_caller]
fn expect(what: &str, (code, stdout): (i32, String), want_code: i32, want: &str) {
    assert_eq!(stdout, want, "{what}: the --json output changed");
    assert_eq!(code, want_code, "{what}: exit code\n{stdout}");
}

#[test]
fn seed_purge_and_runs_json_are_byte_for_byte_what_they_were() {
    let db = TestDb::with_accounts();
    let fixture = fixture_path();
    let header = "external_id,email,username,role";
    // Line 3's role fails the CHECK: rejected in reject mode.
    let one_bad = db.write(
        "one_bad.csv",
        format!(
            "{header}\n\
             00000000-0000-4000-8000-000000000001,a1@json.test,a1,user\n\
             00000000-0000-4000-8000-000000000002,a2@json.test,a2,wizard\n\
             00000000-0000-4000-8000-000000000003,a3@json.test,a3,admin\n"
        ),
    );
    // Line 4 repeats the email of one_bad.csv's line 2: in stop mode, in batches of two, the
    // first batch commits and the second fails the run.
    let stop_bad = db.write(
        "stop_bad.csv",
        format!(
            "{header}\n\
             00000000-0000-4000-8000-000000000011,b1@json.test,b1,user\n\
             00000000-0000-4000-8000-000000000012,b2@json.test,b2,user\n\
             00000000-0000-4000-8000-000000000013,a1@json.test,b3,user\n\
             00000000-0000-4000-8000-000000000014,b4@json.test,b4,user\n"
        ),
    );
    let rejects = db.path("rejects.csv");

    // No run id: a dry run is not recorded.
    expect(
        "seed --dry-run",
        seed(&db, &fixture, &["--dry-run", "--json"]),
        0,
        concat!(
            r#"{"command":"seed --dry-run","table":"public.accounts","run_id":null,"#,
            r#""rows_read":1000,"rows_resumed":0,"rows_inserted":1000,"rows_updated":0,"#,
            r#""rows_skipped":0,"rows_rejected":0,"batches_binary":1,"batches_csv":0,"batches":1,"#,
            r#""retries":0,"elapsed_s":<float>,"rows_per_s":<float>,"status":"completed","#,
            r#""error":null,"resume_command":null}"#,
            "\n",
        ),
    );
    // Run 1: four batches of at most 300 rows.
    expect(
        "seed",
        seed(&db, &fixture, &["--batch-size", "300", "--json"]),
        0,
        concat!(
            r#"{"command":"seed","table":"public.accounts","run_id":1,"rows_read":1000,"#,
            r#""rows_resumed":0,"rows_inserted":1000,"rows_updated":0,"rows_skipped":0,"#,
            r#""rows_rejected":0,"batches_binary":4,"batches_csv":0,"batches":4,"retries":0,"#,
            r#""elapsed_s":<float>,"rows_per_s":<float>,"status":"completed","error":null,"#,
            r#""resume_command":null}"#,
            "\n",
        ),
    );
    // Run 2: reject mode, one row rejected, exit 3.
    expect(
        "seed --rejects",
        seed(&db, &one_bad, &["--rejects", path_str(&rejects), "--json"]),
        3,
        concat!(
            r#"{"command":"seed","table":"public.accounts","run_id":2,"rows_read":3,"#,
            r#""rows_resumed":0,"rows_inserted":2,"rows_updated":0,"rows_skipped":0,"#,
            r#""rows_rejected":1,"batches_binary":1,"batches_csv":0,"batches":1,"retries":0,"#,
            r#""elapsed_s":<float>,"rows_per_s":<float>,"status":"completed","error":null,"#,
            r#""resume_command":null}"#,
            "\n",
        ),
    );
    // Run 3: fails in its second batch, with the error and the command that resumes it.
    expect(
        "seed (failed)",
        seed(
            &db,
            &stop_bad,
            &["--batch-size", "2", "--connections", "1", "--json"],
        ),
        1,
        concat!(
            r#"{"command":"seed","table":"public.accounts","run_id":3,"rows_read":4,"#,
            r#""rows_resumed":0,"rows_inserted":2,"rows_updated":0,"rows_skipped":0,"#,
            r#""rows_rejected":0,"batches_binary":1,"batches_csv":0,"batches":1,"retries":0,"#,
            r#""elapsed_s":<float>,"rows_per_s":<float>,"status":"failed","#,
            r#""error":"line 4: duplicate key value violates unique constraint "#,
            r#"\"accounts_email_key\" (Key (email)=(a1@json.test) already exists.) [SQLSTATE "#,
            r#"23505]","#,
            r#""resume_command":"<bin> seed <scratch>/stop_bad.csv --database-url '<url>' "#,
            r#"--batch-size 2 --connections 1 --json --resume 3"}"#,
            "\n",
        ),
    );
    // Run 4: the rows run 1 inserted.
    expect(
        "purge --run",
        purge(&db, &["--run", "1", "--yes", "--json"]),
        0,
        concat!(
            r#"{"command":"purge","table":"public.accounts","run_id":4,"rows_read":1000,"#,
            r#""rows_resumed":0,"rows_deleted":1000,"rows_missing":0,"batches":4,"retries":0,"#,
            r#""elapsed_s":<float>,"rows_per_s":<float>,"status":"completed","error":null,"#,
            r#""resume_command":null}"#,
            "\n",
        ),
    );
    // The four rows left by runs 2 and 3, counted, not deleted: not recorded.
    expect(
        "purge --where --dry-run",
        purge(
            &db,
            &["--where", "email LIKE '%@json.test'", "--dry-run", "--json"],
        ),
        0,
        concat!(
            r#"{"command":"purge --dry-run","table":"public.accounts","run_id":null,"#,
            r#""rows_read":4,"#,
            r#""rows_resumed":0,"rows_deleted":4,"rows_missing":0,"batches":1,"retries":0,"#,
            r#""elapsed_s":<float>,"rows_per_s":<float>,"status":"completed","error":null,"#,
            r#""resume_command":null}"#,
            "\n",
        ),
    );
    // The ledger: newest run first, the keys in declaration order.
    expect(
        "runs",
        runs(&db, &["--json"]),
        0,
        concat!(
            r#"[{"id":4,"command":"purge","target_table":"public.accounts","input_path":"run:1","#,
            r#""input_size":null,"status":"completed","rows_read":1000,"rows_inserted":0,"#,
            r#""rows_updated":0,"rows_skipped":0,"rows_rejected":0,"rows_deleted":1000,"#,
            r#""rows_missing":0,"batches":4,"attempts":1,"error":null,"host":"<host>","#,
            r#""started_at":"<timestamp>","duration_s":<float>,"command_line":["<bin>","purge","#,
            r#""--database-url","<url>","--run","1","--yes","--json"]},{"id":3,"command":"seed","#,
            r#""target_table":"public.accounts","input_path":"<scratch>/stop_bad.csv","#,
            r#""input_size":264,"status":"failed","rows_read":4,"rows_inserted":2,"#,
            r#""rows_updated":0,"#,
            r#""rows_skipped":0,"rows_rejected":0,"rows_deleted":0,"rows_missing":0,"batches":1,"#,
            r#""attempts":1,"error":"line 4: duplicate key value violates unique constraint "#,
            r#"\"accounts_email_key\" (Key (email)=(a1@json.test) already exists.) [SQLSTATE "#,
            r#"23505]","host":"<host>","started_at":"<timestamp>","duration_s":<float>,"#,
            r#""command_line":["<bin>","seed","<scratch>/stop_bad.csv","--database-url","<url>","#,
            r#""--batch-size","2","--connections","1","--json"]},{"id":2,"command":"seed","#,
            r#""target_table":"public.accounts","input_path":"<scratch>/one_bad.csv","#,
            r#""input_size":209,"status":"completed","rows_read":3,"rows_inserted":2,"#,
            r#""rows_updated":0,"rows_skipped":0,"rows_rejected":1,"rows_deleted":0,"#,
            r#""rows_missing":0,"batches":1,"attempts":1,"error":null,"host":"<host>","#,
            r#""started_at":"<timestamp>","duration_s":<float>,"command_line":["<bin>","seed","#,
            r#""<scratch>/one_bad.csv","--database-url","<url>","--rejects","#,
            r#""<scratch>/rejects.csv","--json"]},{"id":1,"command":"seed","#,
            r#""target_table":"public.accounts","input_path":"<repo>/fixtures/accounts.csv","#,
            r#""input_size":348794,"status":"completed","rows_read":1000,"rows_inserted":1000,"#,
            r#""rows_updated":0,"rows_skipped":0,"rows_rejected":0,"rows_deleted":0,"#,
            r#""rows_missing":0,"batches":4,"attempts":1,"error":null,"host":"<host>","#,
            r#""started_at":"<timestamp>","duration_s":<float>,"command_line":["<bin>","seed","#,
            r#""<repo>/fixtures/accounts.csv","--database-url","<url>","--batch-size","300","#,
            r#""--json"]}]"#,
            "\n",
        ),
    );
    // One run: the keys sorted, and its resume command (null once finished).
    expect(
        "runs show 1 (seed)",
        runs(&db, &["show", "1", "--json"]),
        0,
        concat!(
            r#"{"attempts":1,"batches":4,"command":"seed","command_line":["<bin>","seed","#,
            r#""<repo>/fixtures/accounts.csv","--database-url","<url>","--batch-size","300","#,
            r#""--json"],"duration_s":<float>,"error":null,"host":"<host>","id":1,"#,
            r#""input_path":"<repo>/fixtures/accounts.csv","input_size":348794,"#,
            r#""resume_command":null,"rows_deleted":0,"rows_inserted":1000,"rows_missing":0,"#,
            r#""rows_read":1000,"rows_rejected":0,"rows_skipped":0,"rows_updated":0,"#,
            r#""started_at":"<timestamp>","status":"completed","target_table":"public.accounts"}"#,
            "\n",
        ),
    );
    expect(
        "runs show 4 (purge)",
        runs(&db, &["show", "4", "--json"]),
        0,
        concat!(
            r#"{"attempts":1,"batches":4,"command":"purge","command_line":["<bin>","purge","#,
            r#""--database-url","<url>","--run","1","--yes","--json"],"duration_s":<float>,"#,
            r#""error":null,"host":"<host>","id":4,"input_path":"run:1","input_size":null,"#,
            r#""resume_command":null,"rows_deleted":1000,"rows_inserted":0,"rows_missing":0,"#,
            r#""rows_read":1000,"rows_rejected":0,"rows_skipped":0,"rows_updated":0,"#,
            r#""started_at":"<timestamp>","status":"completed","target_table":"public.accounts"}"#,
            "\n",
        ),
    );
    expect(
        "runs show 3 (failed seed)",
        runs(&db, &["show", "3", "--json"]),
        0,
        concat!(
            r#"{"attempts":1,"batches":1,"command":"seed","command_line":["<bin>","seed","#,
            r#""<scratch>/stop_bad.csv","--database-url","<url>","--batch-size","2","#,
            r#""--connections","1","--json"],"duration_s":<float>,"#,
            r#""error":"line 4: duplicate key value violates unique constraint "#,
            r#"\"accounts_email_key\" (Key (email)=(a1@json.test) already exists.) [SQLSTATE "#,
            r#"23505]","host":"<host>","id":3,"input_path":"<scratch>/stop_bad.csv","#,
            r#""input_size":264,"#,
            r#""resume_command":"<bin> seed <scratch>/stop_bad.csv --database-url '<url>' "#,
            r#"--batch-size 2 --connections 1 --json --resume 3","rows_deleted":0,"#,
            r#""rows_inserted":2,"rows_missing":0,"rows_read":4,"rows_rejected":0,"#,
            r#""rows_skipped":0,"#,
            r#""rows_updated":0,"started_at":"<timestamp>","status":"failed","#,
            r#""target_table":"public.accounts"}"#,
            "\n",
        ),
    );
}

/// The masking rule itself: only the value of the named keys, and only when it has the
/// expected type and shape.
#[test]
fn the_mask_hides_only_volatile_values_of_the_expected_type() {
    assert_eq!(
        mask_volatile(
            r#"{"elapsed_s":0.052,"rows_per_s":19208.6,"duration_s":1e-5,"rows_read":1000}"#
        ),
        r#"{"elapsed_s":<float>,"rows_per_s":<float>,"duration_s":<float>,"rows_read":1000}"#
    );
    // A number written as an integer, or no number at all, shows.
    assert_eq!(
        mask_volatile(r#"{"elapsed_s":3,"rows_per_s":"3.5","duration_s":null}"#),
        r#"{"elapsed_s":<int>,"rows_per_s":"3.5","duration_s":null}"#
    );
    assert_eq!(
        mask_volatile(r#"[{"host":"vm","started_at":"2026-11-30 07:08:55+00"}]"#),
        r#"[{"host":"<host>","started_at":"<timestamp>"}]"#
    );
    assert_eq!(
        mask_volatile(r#"{"started_at":"2026-11-30 07:08:55-03:30"}"#),
        r#"{"started_at":"<timestamp>"}"#
    );
    // Another timestamp format, a host that is not a string, a key merely containing a
    // masked one: left as they are.
    for kept in [
        r#"{"started_at":"2026-11-30T07:08:55Z"}"#,
        r#"{"started_at":"2026-11-30 07:08:55.123+00"}"#,
        r#"{"started_at":1796022534}"#,
        r#"{"host":null}"#,
        r#"{"remote_host":"x","total_elapsed_s":1.5}"#,
    ] {
        assert_eq!(mask_volatile(kept), kept);
    }
}
