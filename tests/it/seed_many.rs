//! Runs of many inputs: `seed DIR`, `seed a.csv b/c.csv.gz`, `seed --join RUN_ID`.
//!
//! A run of many inputs is a parent row in `provisioner.runs` with one child row per input;
//! processes claim inputs by lease, and one killed with `kill -9` loses its input only when
//! the lease expires, to a process that continues after the input's committed batches:
//!
//! 1. 12 inputs (plain and gzip) loaded by three processes, one killed mid-input and never
//!    restarted: every row exactly once, the killed one's input taken over only after its
//!    lease expired and completed by a survivor;
//! 2. a joiner whose `--input-root` holds another file under an input's name (other bytes,
//!    another size, or none) is refused (exit 2) and claims nothing; so are flags `--join`
//!    takes from the ledger; a joiner with the right files (a completed input need not be
//!    there) completes the run;
//! 3. `purge --run PARENT` deletes exactly what every input inserted;
//! 4. `--parallel-inputs 3`: three inputs read at once, not more, the directory's `*.csv` and
//!    `*.csv.gz` only, the `--json` summary's `inputs`, and `runs show`;
//! 5. inputs whose headers differ, and 6. `-` with another input: exit 2, nothing recorded;
//!    one file is a run of one input, as before;
//! 7. stop mode: a bad row fails the run; fixed, `--resume ID` completes it;
//! 8. reject mode: the rejects file names the input of each rejected row;
//! 9. Ctrl-C interrupts the run and the input it held; a joiner finishes it, while
//!    `runs show --watch` follows the run to its end.
//!
//! Every test loads a table `items` and compares it with what `psql \copy` loads from the
//! same inputs into `reference`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::purge_support::{digest, purge};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The inputs' header, and the columns of `items`.
const HEADER: [&str; 5] = ["item_id", "part", "n", "label", "amount"];

/// A fresh database holding `items` (keyed by the CSV's `item_id`) and `reference`, like it.
fn items_db() -> TestDb {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE items (item_id bigint PRIMARY KEY, part text NOT NULL, \
                             n integer NOT NULL, label text, amount numeric(12,2)); \
         CREATE TABLE reference (LIKE items INCLUDING ALL);",
    );
    db
}

/// Record `i` (0-based) of input number `part`: keys unique across inputs, and labels with
/// NULL, '', quotes, commas, a line break and non-ASCII text.
fn record(part: usize, i: usize) -> Vec<Option<String>> {
    let label = match i % 19 {
        0 => None,
        1 => Some(String::new()),
        2 => Some(format!("comma, \"quote\" {i}")),
        3 => Some(format!("two\nlines {i}")),
        4 => Some(format!("Zoë ✓ {i}")),
        _ => Some(format!("item {part}-{i}")),
    };
    let cents = (part * 7919 + i * 104_729) % 1_000_000;
    let sign = if i % 23 == 5 { "-" } else { "" };
    vec![
        Some((part * 100_000 + i).to_string()),
        Some(format!("p{part:02}")),
        Some(((i as i64 * 37) % 2001 - 1000).to_string()),
        label,
        Some(format!("{sign}{}.{:02}", cents / 100, cents % 100)),
    ]
}

/// One input as written: its name relative to the directory, a plain copy for psql, and
/// its records.
struct Input {
    name: String,
    plain: PathBuf,
    records: Vec<Vec<Option<String>>>,
}

impl Input {
    fn rows(&self) -> i64 {
        self.records.len() as i64
    }
}

/// The bytes of a CSV of `records` under [`HEADER`], gzip-compressed when `gz`.
fn csv_bytes(records: &[Vec<Option<String>>], gz: bool) -> Vec<u8> {
    let text = csv_file(&HEADER, records, "\n");
    if gz {
        gzip(text.as_bytes())
    } else {
        text.into_bytes()
    }
}

/// Writes `records` to `dir/name` (gzip when `gz`, whatever the name) and a plain copy for
/// psql under the scratch directory's `plain/`.
fn write_input(
    db: &TestDb,
    dir: &Path,
    name: &str,
    records: Vec<Vec<Option<String>>>,
    gz: bool,
) -> Input {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, csv_bytes(&records, gz)).unwrap();
    let plain = db.path(&format!("plain/{}", name.replace('/', "_")));
    fs::create_dir_all(plain.parent().unwrap()).unwrap();
    fs::write(&plain, csv_file(&HEADER, &records, "\n")).unwrap();
    Input {
        name: name.to_string(),
        plain,
        records,
    }
}

/// Writes one input per `(name, rows, gzip)` into the scratch directory's `dir`; input
/// number k (1-based) holds `record(k, 0..rows)`.
fn write_inputs(db: &TestDb, dir: &str, specs: &[(&str, usize, bool)]) -> (PathBuf, Vec<Input>) {
    let dir = db.path(dir);
    fs::create_dir_all(&dir).unwrap();
    let inputs = specs
        .iter()
        .enumerate()
        .map(|(k, &(name, rows, gz))| {
            let records = (0..rows).map(|i| record(k + 1, i)).collect();
            write_input(db, &dir, name, records, gz)
        })
        .collect();
    (dir, inputs)
}

/// Copies the files (not the subdirectories) of `from` into a new directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Loads every input into `reference` with psql; returns the rows loaded.
fn load_reference(db: &TestDb, inputs: &[Input]) -> i64 {
    for input in inputs {
        db.psql_copy("reference", &HEADER, &input.plain);
    }
    let rows = db.count("reference");
    assert_eq!(rows, inputs.iter().map(Input::rows).sum::<i64>());
    rows
}

/// `items` holds exactly what psql loaded into `reference`: `rows` rows, none twice.
#[track_caller]
fn assert_items_equal_reference(db: &TestDb, rows: i64) {
    assert_eq!(db.count("items"), rows, "rows in items");
    assert_same_rows(
        "items vs psql \\copy",
        &db.dump("items"),
        &db.dump("reference"),
    );
}

/// `seed <inputs…> --database-url <db> <extra…>`.
fn seed_many<'a>(db: &'a TestDb, inputs: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["seed"];
    args.extend_from_slice(inputs);
    args.extend(["--database-url", db.url()]);
    args.extend_from_slice(extra);
    args
}

/// `seed --join <id> --database-url <db> <extra…>`.
fn join<'a>(db: &'a TestDb, id: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["seed", "--join", id, "--database-url", db.url()];
    args.extend_from_slice(extra);
    args
}

/// The id of the run of many inputs (the one row without a parent), once there is one.
fn parent_id(db: &TestDb) -> Option<i64> {
    db.client()
        .query(
            "SELECT id FROM provisioner.runs WHERE parent_id IS NULL ORDER BY id",
            &[],
        )
        .ok()
        .and_then(|rows| rows.first().map(|r| r.get(0)))
}

/// Rows in `provisioner.runs` (0 while the ledger does not exist).
fn ledger_runs(db: &TestDb) -> i64 {
    db.client()
        .query_one("SELECT count(*) FROM provisioner.runs", &[])
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// One input's row in the ledger, and the rows its batches committed.
#[derive(Debug, Clone, PartialEq)]
struct Child {
    id: i64,
    name: String,
    status: String,
    attempts: i64,
    pid: Option<i64>,
    lease_pid: Option<i64>,
    lease_expires_at: Option<String>,
    claimed_at: Option<String>,
    took_over_expired_at: Option<String>,
    rows_read: i64,
    batch_rows: i64,
}

/// The inputs of run `parent`, by name.
fn children(db: &TestDb, parent: i64) -> Vec<Child> {
    db.client()
        .query(
            "SELECT r.id, r.input_name, r.status, r.attempts::bigint, r.pid::bigint, \
                    r.lease_pid::bigint, r.lease_expires_at::text, r.claimed_at::text, \
                    r.took_over_expired_at::text, r.rows_read, \
                    (SELECT coalesce(sum(b.rows), 0)::bigint FROM provisioner.batches b \
                      WHERE b.run_id = r.id) \
             FROM provisioner.runs r WHERE r.parent_id = $1 ORDER BY r.input_name",
            &[&parent],
        )
        .expect("the inputs of the run")
        .iter()
        .map(|r| Child {
            id: r.get(0),
            name: r.get(1),
            status: r.get(2),
            attempts: r.get(3),
            pid: r.get(4),
            lease_pid: r.get(5),
            lease_expires_at: r.get(6),
            claimed_at: r.get(7),
            took_over_expired_at: r.get(8),
            rows_read: r.get(9),
            batch_rows: r.get(10),
        })
        .collect()
}

/// The run's status in the ledger.
fn status_of(db: &TestDb, id: i64) -> String {
    db.scalar_text(&format!(
        "SELECT status FROM provisioner.runs WHERE id = {id}"
    ))
    .unwrap_or_else(|| panic!("run {id} has no status"))
}

/// Asserts every input of run `parent` is completed, read and committed whole, its lease
/// released, and that the parent is completed with no batch of its own.
#[track_caller]
fn assert_all_completed(db: &TestDb, parent: i64, inputs: &[Input]) -> Vec<Child> {
    let kids = children(db, parent);
    let mut want: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    want.sort();
    let names: Vec<&str> = kids.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, want, "the run's inputs: {kids:#?}");
    let rows: BTreeMap<&str, i64> = inputs.iter().map(|i| (i.name.as_str(), i.rows())).collect();
    for c in &kids {
        assert_eq!(c.status, "completed", "{c:?}");
        assert_eq!(c.rows_read, rows[c.name.as_str()], "rows_read: {c:?}");
        assert_eq!(
            c.batch_rows,
            rows[c.name.as_str()],
            "rows its committed batches hold (a batch committed twice, or one lost): {c:?}"
        );
        assert_eq!(
            (c.lease_pid, c.lease_expires_at.as_deref()),
            (None, None),
            "a completed input's lease is released: {c:?}"
        );
    }
    assert_eq!(status_of(db, parent), "completed", "the parent run");
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM provisioner.batches WHERE run_id = {parent}"
        )),
        0,
        "batches are recorded under the inputs' runs, not the parent"
    );
    kids
}

/// The `inputs` of a `--json` summary, by name: (status, rows_read, inserted).
fn json_inputs(json: &serde_json::Value) -> BTreeMap<String, (String, u64, u64)> {
    json["inputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"inputs\" array in the summary: {json}"))
        .iter()
        .map(|i| {
            let text = |k: &str| {
                i[k].as_str()
                    .unwrap_or_else(|| panic!("input without a {k}: {i}"))
                    .to_string()
            };
            let figure = |k: &str| {
                i[k].as_u64()
                    .unwrap_or_else(|| panic!("input without an unsigned {k}: {i}"))
            };
            (
                text("name"),
                (text("status"), figure("rows_read"), figure("inserted")),
            )
        })
        .collect()
}

/// Asserts the summary lists exactly `inputs`, each completed with all its rows inserted.
#[track_caller]
fn assert_json_inputs_completed(json: &serde_json::Value, inputs: &[Input]) {
    let got = json_inputs(json);
    let want: BTreeMap<String, (String, u64, u64)> = inputs
        .iter()
        .map(|i| {
            let rows = i.rows() as u64;
            (i.name.clone(), ("completed".to_string(), rows, rows))
        })
        .collect();
    assert_eq!(got, want, "the summary's inputs: {json}");
}

/// The `canonicalize`d path as text.
fn canonical(path: &Path) -> String {
    fs::canonicalize(path)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", path.display()))
        .to_str()
        .expect("UTF-8 path")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Three processes, one killed
// ---------------------------------------------------------------------------------------------

/// Rows per second of each process in test 1: an input of 300 to 800 rows takes 0.75 to 2
/// seconds, a batch of 25 rows about 60 ms.
const RATE: &str = "400";

/// An input process `pid` holds mid-way: it committed a batch in its current claim, and at
/// least `margin` rows of the input are still to commit. Returns the child's id, name, claim
/// number and lease expiry.
fn held_mid_input(
    db: &TestDb,
    parent: i64,
    pid: u32,
    rows: &BTreeMap<String, i64>,
    margin: i64,
) -> Option<(i64, String, i64, String)> {
    let found = db
        .client()
        .query(
            "SELECT r.id, r.input_name, r.attempts::bigint, r.lease_expires_at::text, \
                    (SELECT coalesce(sum(b.rows), 0)::bigint FROM provisioner.batches b \
                      WHERE b.run_id = r.id), \
                    (SELECT count(*) FROM provisioner.batches b \
                      WHERE b.run_id = r.id AND b.attempt = r.attempts) \
             FROM provisioner.runs r \
             WHERE r.parent_id = $1 AND r.lease_pid = $2 AND r.status = 'running' \
               AND r.lease_expires_at IS NOT NULL",
            &[&parent, &(pid as i32)],
        )
        .ok()?;
    found.iter().find_map(|r| {
        let name: String = r.get(1);
        let committed: i64 = r.get(4);
        let mine: i64 = r.get(5);
        let total = *rows.get(&name)?;
        (mine >= 1 && committed + margin <= total).then(|| (r.get(0), name, r.get(2), r.get(3)))
    })
}

#[test]
fn twelve_inputs_three_processes_one_killed_every_row_exactly_once() {
    let db = items_db();
    let names: Vec<String> = (1..=12)
        .map(|i| {
            if i % 2 == 0 {
                format!("part-{i:02}.csv.gz")
            } else {
                format!("part-{i:02}.csv")
            }
        })
        .collect();
    let specs: Vec<(&str, usize, bool)> = names
        .iter()
        .enumerate()
        .map(|(k, n)| (n.as_str(), 300 + 100 * ((k * 5) % 6), n.ends_with(".gz")))
        .collect();
    let (dir, inputs) = write_inputs(&db, "in", &specs);
    // C finds the inputs in a copy, by their relative names.
    let copy = db.path("copy");
    copy_dir(&dir, &copy);
    let total = load_reference(&db, &inputs);
    let rows: BTreeMap<String, i64> = inputs.iter().map(|i| (i.name.clone(), i.rows())).collect();

    let lease = ["--lease", "3", "--rate", RATE, "--connections", "2"];
    let mut a_args = seed_many(
        &db,
        &[path_str(&dir)],
        &["--table", "items", "--batch-size", "25", "--json"],
    );
    a_args.extend(lease);
    let mut a = Spawned::start(&a_args);
    let mut parent = None;
    a.wait_for("the run's parent row", TIMEOUT, || {
        parent = parent_id(&db);
        parent.is_some()
    });
    let parent = parent.unwrap();
    let id = parent.to_string();
    let mut b = Spawned::start(&join(&db, &id, &lease));
    let c_args = [&lease[..], &["--input-root", path_str(&copy), "--json"]].concat();
    let c = Spawned::start(&join(&db, &id, &c_args));
    let (a_pid, b_pid, c_pid) = (a.pid(), b.pid(), c.pid());

    // B mid-input: a batch of its claim committed, four or more to go.
    let mut held = None;
    b.wait_for(
        "process B to hold an input with a committed batch and rows left",
        TIMEOUT,
        || {
            held = held_mid_input(&db, parent, b_pid, &rows, 100);
            held.is_some()
        },
    );
    let (victim, victim_name, b_attempt, expiry_seen) = held.unwrap();
    let killed = b.kill_and_collect();
    assert_eq!(killed.code, -1, "B was killed by a signal: {killed:?}");
    let after_kill = children(&db, parent)
        .into_iter()
        .find(|c| c.id == victim)
        .unwrap();
    assert!(
        after_kill.status != "completed" && after_kill.attempts == b_attempt,
        "B's input {victim_name} was completed or claimed again the moment B was killed, \
         before its lease (to {expiry_seen}) expired: {after_kill:?}"
    );

    let a_out = a.wait(TIMEOUT);
    let c_out = c.wait(TIMEOUT);
    a_out.expect_ok();
    c_out.expect_ok();

    assert_items_equal_reference(&db, total);
    let kids = assert_all_completed(&db, parent, &inputs);
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT input_path FROM provisioner.runs WHERE id = {parent}"
        ))
        .as_deref(),
        Some(canonical(&dir).as_str()),
        "the parent's input_path is the inputs' base directory"
    );
    for c in &kids {
        assert!(
            c.pid == Some(i64::from(a_pid)) || c.pid == Some(i64::from(c_pid)),
            "input {} was completed by pid {:?}, neither A ({a_pid}) nor C ({c_pid}); B was \
             {b_pid}: {c:?}",
            c.name,
            c.pid
        );
    }

    // Every other input: claimed once, while free.
    for c in kids.iter().filter(|c| c.id != victim) {
        assert!(
            c.attempts == 1 && c.took_over_expired_at.is_none(),
            "input {} was claimed once, free (only B's was taken over): {c:?}",
            c.name
        );
    }

    // B's input: taken over once its lease expired, not before, and continued after the
    // batches B committed (they are still there, under B's claim).
    let v = kids.iter().find(|c| c.id == victim).unwrap();
    assert!(v.attempts >= 2, "B's input was claimed again: {v:?}");
    let check = db
        .client()
        .query_one(
            "SELECT took_over_expired_at IS NOT NULL, \
                    coalesce(claimed_at >= took_over_expired_at, false), \
                    coalesce(took_over_expired_at >= $2::text::timestamptz, false), \
                    (SELECT count(*) FROM provisioner.batches b \
                      WHERE b.run_id = r.id AND b.attempt = $3) \
             FROM provisioner.runs r WHERE id = $1",
            &[&victim, &expiry_seen, &(b_attempt as i32)],
        )
        .expect("B's input in the ledger");
    let (took_over, after_expiry, not_earlier, b_batches): (bool, bool, bool, i64) =
        (check.get(0), check.get(1), check.get(2), check.get(3));
    assert!(
        took_over && after_expiry && not_earlier,
        "B's input {victim_name} must be taken over from B's expired lease, at or after its \
         expiry (B's lease ran to at least {expiry_seen}): {v:?}"
    );
    assert!(
        b_batches >= 1,
        "the batches B committed for {victim_name} are kept, not redone: {v:?}"
    );

    eprintln!(
        "B (pid {b_pid}) killed holding {victim_name} (claim {b_attempt}, lease to \
         {expiry_seen}); A {a_pid}, C {c_pid}; then: {v:?}"
    );

    // A's and C's summaries: the parent's id and every input of the run completed.
    for out in [&a_out, &c_out] {
        let json = out.json();
        assert_eq!(json["run_id"], parent, "{json}");
        assert_json_inputs_completed(&json, &inputs);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A joiner whose input root differs
// ---------------------------------------------------------------------------------------------

/// What a claim changes in an input's row: id, status, attempts, pid, lease_pid.
type ClaimState = (i64, String, i64, Option<i64>, Option<i64>);

/// The claim state of every input of run `parent`.
fn claims(db: &TestDb, parent: i64) -> Vec<ClaimState> {
    children(db, parent)
        .into_iter()
        .map(|c| (c.id, c.status, c.attempts, c.pid, c.lease_pid))
        .collect()
}

#[test]
fn a_joiner_whose_input_root_differs_is_refused_and_claims_nothing() {
    let db = items_db();
    let (dir, inputs) = write_inputs(
        &db,
        "in",
        &[
            ("part-01.csv", 150, false),
            ("part-02.csv.gz", 400, true),
            ("part-03.csv", 400, false),
            ("part-04.csv.gz", 400, true),
        ],
    );
    let total = load_reference(&db, &inputs);

    // A starts the run slowly and is killed once it completed part-01: the ledger stands
    // still, part-03 and part-04 not completed (A is on part-02 at most, 16 batches long).
    let mut a = Spawned::start(&seed_many(
        &db,
        &[path_str(&dir)],
        &[
            "--table",
            "items",
            "--batch-size",
            "25",
            "--lease",
            "3",
            "--rate",
            "200",
        ],
    ));
    a.wait_for("part-01 to be completed", TIMEOUT, || {
        db.client()
            .query_one(
                "SELECT count(*) FROM provisioner.runs \
                 WHERE input_name = 'part-01.csv' AND status = 'completed'",
                &[],
            )
            .is_ok_and(|r| r.get::<_, i64>(0) == 1)
    });
    a.kill_and_collect();
    // Once the server has seen A's connections close, nothing of A can still land.
    wait_until("A's connections to close", TIMEOUT, || {
        db.scalar_i64(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend'",
        ) == 0
    });
    let parent = parent_id(&db).expect("a parent run");
    let id = parent.to_string();
    let before = claims(&db, parent);
    let batches = db.ledger_batches();
    assert_eq!(before.len(), 4, "{before:?}");
    for name in ["part-03.csv", "part-04.csv.gz"] {
        let c = children(&db, parent);
        let c = c.iter().find(|c| c.name == name).unwrap();
        assert_ne!(c.status, "completed", "{c:?}");
    }

    let original = fs::read(dir.join("part-03.csv")).unwrap();
    let same_size = {
        // One digit of the first record's `n` changed: same size, other bytes.
        let mut bytes = original.clone();
        let at = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        let at = at + bytes[at..].iter().position(u8::is_ascii_digit).unwrap();
        bytes[at] = if bytes[at] == b'9' {
            b'1'
        } else {
            bytes[at] + 1
        };
        bytes
    };
    let longer = [&original[..], b"999999,p03,1,one more,1.00\n"].concat();
    let other_gz = csv_bytes(&(0..400).map(|i| record(9, i)).collect::<Vec<_>>(), true);
    type Change = Box<dyn Fn(&Path)>;
    let variants: Vec<(&str, &str, Change)> = vec![
        (
            "part-03.csv with one byte changed",
            "part-03.csv",
            Box::new(move |root| fs::write(root.join("part-03.csv"), &same_size).unwrap()),
        ),
        (
            "part-03.csv with a row more",
            "part-03.csv",
            Box::new(move |root| fs::write(root.join("part-03.csv"), &longer).unwrap()),
        ),
        (
            "part-04.csv.gz holding other rows",
            "part-04.csv.gz",
            Box::new(move |root| fs::write(root.join("part-04.csv.gz"), &other_gz).unwrap()),
        ),
        (
            "part-04.csv.gz missing",
            "part-04.csv.gz",
            Box::new(|root| fs::remove_file(root.join("part-04.csv.gz")).unwrap()),
        ),
    ];
    for (k, (what, name, change)) in variants.iter().enumerate() {
        let root = db.path(&format!("root{k}"));
        copy_dir(&dir, &root);
        change(&root);
        let joiner = Spawned::start(&join(&db, &id, &["--input-root", path_str(&root)]));
        let pid = i64::from(joiner.pid());
        let out = joiner.wait(TIMEOUT);
        assert_eq!(
            out.code, 2,
            "{what}: a joiner must be refused (exit 2)\nstderr:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(name),
            "{what}: the refusal does not name {name}:\n{}",
            out.stderr
        );
        assert_eq!(claims(&db, parent), before, "{what}: the joiner claimed");
        assert!(
            !claims(&db, parent)
                .iter()
                .any(|c| c.3 == Some(pid) || c.4 == Some(pid)),
            "{what}: an input bears the refused joiner's pid {pid}"
        );
        assert_eq!(db.ledger_batches(), batches, "{what}: batches committed");
    }

    // What --join takes from the ledger cannot be given with it.
    for flags in [
        &["--table", "items"][..],
        &["--batch-size", "10"][..],
        &["--on-conflict", "skip"][..],
        &["--delimiter", ";"][..],
    ] {
        let out = run_bin_bounded(&join(&db, &id, flags), TIMEOUT);
        assert_eq!(
            out.code, 2,
            "--join with {flags:?} is a usage error\nstderr:\n{}",
            out.stderr
        );
        assert_eq!(claims(&db, parent), before, "--join {flags:?} claimed");
    }

    // The same files elsewhere, but for part-01, completed, which need not be there: the
    // joiner takes A's input over once its lease expired, and completes the run.
    let good = db.path("good");
    copy_dir(&dir, &good);
    fs::remove_file(good.join("part-01.csv")).unwrap();
    let out = run_bin_bounded(
        &join(&db, &id, &["--input-root", path_str(&good), "--json"]),
        TIMEOUT,
    );
    out.expect_ok();
    assert_items_equal_reference(&db, total);
    assert_all_completed(&db, parent, &inputs);
}

// ---------------------------------------------------------------------------------------------
// 3. purge --run PARENT
// ---------------------------------------------------------------------------------------------

#[test]
fn purge_run_of_a_many_input_run_leaves_exactly_the_rows_there_before() {
    let db = items_db();
    db.execute(
        "INSERT INTO items SELECT i, 'before', i, CASE WHEN i % 4 = 0 THEN NULL \
         ELSE 'there before ' || i END, i * 1.25 FROM generate_series(1, 60) i",
    );
    let before = digest(&db, "items", "true");
    // Inputs in two directories, named as files: the base is their common parent.
    let (dir, inputs) = write_inputs(
        &db,
        "in",
        &[
            ("x/part-01.csv", 300, false),
            ("x/part-02.csv.gz", 250, true),
            ("y/part-03.csv", 200, false),
        ],
    );
    let files: Vec<PathBuf> = inputs.iter().map(|i| dir.join(&i.name)).collect();
    let files: Vec<&str> = files.iter().map(|p| path_str(p)).collect();
    let out = run_bin_bounded(
        &seed_many(
            &db,
            &files,
            &["--table", "items", "--batch-size", "40", "--json"],
        ),
        TIMEOUT,
    );
    out.expect_ok();
    let parent = out.json()["run_id"].as_i64().expect("a run id");
    assert_eq!(parent_id(&db), Some(parent));
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT input_path FROM provisioner.runs WHERE id = {parent}"
        ))
        .as_deref(),
        Some(canonical(&dir).as_str()),
        "the parent's input_path is the inputs' common base directory"
    );
    assert_all_completed(&db, parent, &inputs);
    assert_eq!(db.count("items"), 60 + 750);

    let id = parent.to_string();
    let purged = purge(&db, &["--run", &id, "--table", "items", "--yes", "--json"]);
    purged.expect_ok();
    assert_eq!(purged.figure("rows_deleted"), 750, "{}", purged.stdout);
    assert_eq!(purged.figure("rows_missing"), 0, "{}", purged.stdout);
    assert_eq!(
        digest(&db, "items", "true"),
        before,
        "purge --run {parent} must leave exactly the rows there before"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. --parallel-inputs
// ---------------------------------------------------------------------------------------------

#[test]
fn parallel_inputs_reads_three_at_once_and_loads_every_input_of_the_directory() {
    let db = items_db();
    let (dir, inputs) = write_inputs(
        &db,
        "in",
        &[
            ("part-01.csv", 500, false),
            ("part-02.csv.gz", 500, true),
            ("part-03.csv", 500, false),
            ("part-04.csv.gz", 500, true),
            // gzip, though named .csv: recognised by its magic bytes.
            ("part-05.csv", 500, true),
            ("part-06.csv", 500, false),
        ],
    );
    let total = load_reference(&db, &inputs);
    // Not inputs: other extensions, and a subdirectory (not recursive).
    let stray = csv_file(&HEADER, &[record(50, 0), record(50, 1)], "\n");
    fs::write(dir.join("notes.txt"), &stray).unwrap();
    fs::write(dir.join("part-07.csv.bak"), &stray).unwrap();
    fs::create_dir_all(dir.join("nested")).unwrap();
    fs::write(dir.join("nested/part-08.csv"), &stray).unwrap();

    let mut run = Spawned::start(&seed_many(
        &db,
        &[path_str(&dir)],
        &[
            "--table",
            "items",
            "--parallel-inputs",
            "3",
            "--batch-size",
            "25",
            "--connections",
            "2",
            "--rate",
            "750",
            "--json",
        ],
    ));
    let pid = run.pid();
    // How many inputs are running at once, sampled while the run goes.
    let mut most = 0;
    let deadline = Instant::now() + TIMEOUT;
    while run.running() {
        assert!(
            Instant::now() < deadline,
            "the run did not end in {TIMEOUT:?}"
        );
        if let Ok(row) = db.client().query_one(
            "SELECT count(*) FROM provisioner.runs \
             WHERE parent_id IS NOT NULL AND status = 'running'",
            &[],
        ) {
            most = most.max(row.get::<_, i64>(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run.wait(TIMEOUT);
    out.expect_ok();
    // Three inputs read at once. (An input read to its end stays `running` until its last
    // batches commit, while its lane reads the next one: the ledger may show more.)
    assert!(
        most >= 3,
        "--parallel-inputs 3: never three inputs running at once (at most {most})"
    );

    assert_items_equal_reference(&db, total);
    let json = out.json();
    let parent = json["run_id"].as_i64().expect("a run id");
    assert_eq!(json["status"], "completed", "{json}");
    assert_eq!(json["rows_inserted"], total, "{json}");
    assert_json_inputs_completed(&json, &inputs);
    let summed: u64 = json_inputs(&json).values().map(|v| v.1).sum();
    assert_eq!(summed, total as u64, "{json}");
    assert_all_completed(&db, parent, &inputs);
    // No more than three read at once: the first three inputs are claimed together, and a
    // fourth only once a lane has read one of them to its end, which the rate makes take
    // about a second (500 rows at 250 rows/s each, less the batches read ahead).
    let claims: Vec<f64> = db
        .client()
        .query(
            "SELECT extract(epoch FROM claimed_at - min(claimed_at) OVER ())::float8 \
             FROM provisioner.runs WHERE parent_id = $1 ORDER BY claimed_at",
            &[&parent],
        )
        .expect("claim times")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(claims.len(), inputs.len(), "{claims:?}");

    assert!(
        claims[2] < 0.5 && claims[3] >= 0.4,
        "--parallel-inputs 3: the inputs were claimed at {claims:?} s from the first; the \
         first three at once, the fourth after one of them was read"
    );

    let shown = run_bin_bounded(
        &[
            "runs",
            "show",
            &parent.to_string(),
            "--database-url",
            db.url(),
        ],
        TIMEOUT,
    );
    shown.expect_ok();
    for input in &inputs {
        let line = shown
            .stdout
            .lines()
            .find(|l| l.contains(&input.name))
            .unwrap_or_else(|| panic!("runs show does not list {}:\n{}", input.name, shown.stdout));
        assert!(
            line.contains("completed")
                && line.contains(&input.rows().to_string())
                && line.contains(&pid.to_string()),
            "runs show: {}'s line lacks its status, rows or process ({pid}):\n{}",
            input.name,
            shown.stdout
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5, 6. Refused before anything is recorded
// ---------------------------------------------------------------------------------------------

#[test]
fn inputs_whose_headers_differ_are_refused_naming_the_input() {
    let db = items_db();
    let (dir, _) = write_inputs(
        &db,
        "in",
        &[("part-01.csv", 50, false), ("part-03.csv", 50, false)],
    );
    // The second input by name, gzip, with `amount` spelled `amt`.
    let mut header = HEADER;
    header[4] = "amt";
    let text = csv_file(&header, &[record(2, 0), record(2, 1)], "\n");
    fs::write(dir.join("part-02.csv.gz"), gzip(text.as_bytes())).unwrap();

    let out = run_bin_bounded(
        &seed_many(&db, &[path_str(&dir)], &["--table", "items"]),
        TIMEOUT,
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("part-02.csv.gz"),
        "the refusal does not name the input whose header differs:\n{}",
        out.stderr
    );
    let files = [dir.join("part-01.csv"), dir.join("part-02.csv.gz")];
    let out = run_bin_bounded(
        &seed_many(
            &db,
            &[path_str(&files[0]), path_str(&files[1])],
            &["--table", "items"],
        ),
        TIMEOUT,
    );
    out.expect_code(2);
    assert!(out.stderr.contains("part-02.csv.gz"), "{}", out.stderr);
    assert_eq!(ledger_runs(&db), 0, "nothing is recorded");
    assert_eq!(db.count("items"), 0);
}

#[test]
fn stdin_together_with_another_input_is_a_usage_error() {
    let db = items_db();
    let (dir, inputs) = write_inputs(
        &db,
        "in",
        &[("part-01.csv", 20, false), ("part-02.csv", 30, false)],
    );
    let file = dir.join(&inputs[0].name);
    let stdin = fs::read(&file).unwrap();
    for args in [
        seed_many(&db, &["-", path_str(&file)], &["--table", "items"]),
        seed_many(&db, &[path_str(&file), "-"], &["--table", "items"]),
        seed_many(&db, &["-", path_str(&dir)], &["--table", "items"]),
    ] {
        let out = run_bin(&args, Some(&stdin));
        assert_eq!(out.code, 2, "{args:?}: exit code\nstderr:\n{}", out.stderr);
    }
    assert_eq!(ledger_runs(&db), 0, "nothing is recorded");
    assert_eq!(db.count("items"), 0);

    // What is refused is `-` among others: two files are a run of many inputs.
    let second = dir.join(&inputs[1].name);
    let out = run_bin(
        &seed_many(
            &db,
            &[path_str(&file), path_str(&second)],
            &["--table", "items", "--json"],
        ),
        Some(&stdin),
    );
    out.expect_ok();
    let total = load_reference(&db, &inputs);
    assert_items_equal_reference(&db, total);
    let parent = out.json()["run_id"].as_i64().expect("a run id");
    assert_all_completed(&db, parent, &inputs);
}

#[test]
fn one_file_is_a_run_of_one_input_as_before() {
    let db = items_db();
    let (dir, inputs) = write_inputs(&db, "in", &[("part-01.csv.gz", 40, true)]);
    let out = run_bin_bounded(
        &seed_many(
            &db,
            &[path_str(&dir.join(&inputs[0].name))],
            &["--table", "items", "--json"],
        ),
        TIMEOUT,
    );
    out.expect_ok();
    let total = load_reference(&db, &inputs);
    assert_items_equal_reference(&db, total);
    let runs = db.column_text(
        "SELECT concat_ws(' ', id, coalesce(parent_id::text, 'none'), status) \
         FROM provisioner.runs ORDER BY id",
    );
    let id = out.json()["run_id"].as_i64().expect("a run id");
    assert_eq!(
        runs,
        [Some(format!("{id} none completed"))],
        "one row, without a parent"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Stop mode, then --resume
// ---------------------------------------------------------------------------------------------

#[test]
fn a_bad_row_fails_the_run_and_once_fixed_resume_completes_it() {
    let db = items_db();
    let specs = [
        ("part-01.csv", 200, false),
        ("part-02.csv.gz", 200, true),
        ("part-03.csv", 200, false),
        ("part-04.csv.gz", 200, true),
    ];
    let (dir, inputs) = write_inputs(&db, "in", &specs);
    // Record 120 of part-02 (in its third batch of 50) has a non-integer `n`.
    let mut bad = inputs[1].records.clone();
    bad[120][2] = Some("12x".into());
    fs::write(dir.join("part-02.csv.gz"), csv_bytes(&bad, true)).unwrap();
    let total = load_reference(&db, &inputs);

    let args = seed_many(
        &db,
        &[path_str(&dir)],
        &[
            "--table",
            "items",
            "--batch-size",
            "50",
            "--connections",
            "1",
            "--json",
        ],
    );
    let out = run_bin_bounded(&args, TIMEOUT);
    out.expect_code(1);
    let json = out.json();
    let parent = json["run_id"].as_i64().expect("a run id");
    assert_eq!(parent_id(&db), Some(parent));
    assert_eq!(status_of(&db, parent), "failed", "the parent");
    let kids = children(&db, parent);
    let failed = kids.iter().find(|c| c.name == "part-02.csv.gz").unwrap();
    assert_eq!(failed.status, "failed", "{kids:#?}");
    // At most its first two batches (records 0-99) committed.
    assert!(
        failed.batch_rows <= 100 && failed.batch_rows % 50 == 0,
        "part-02's committed batches: {kids:#?}"
    );
    let first = kids.iter().find(|c| c.name == "part-01.csv").unwrap();
    assert_eq!(first.status, "completed", "{kids:#?}");
    let listed = json_inputs(&json);
    assert_eq!(
        listed.get("part-02.csv.gz").map(|i| i.0.as_str()),
        Some("failed"),
        "the summary's inputs: {json}"
    );
    assert_eq!(listed.len(), inputs.len(), "the summary's inputs: {json}");
    let command = json["resume_command"]
        .as_str()
        .unwrap_or_else(|| panic!("the failed run's summary has no resume_command: {json}"));
    assert!(
        command.contains(path_str(&dir)) && command.ends_with(&format!("--resume {parent}")),
        "the resume command is the command line plus --resume {parent}: {command}"
    );

    // Fixed: the resume loads the rest, exactly once.
    fs::write(
        dir.join("part-02.csv.gz"),
        csv_bytes(&inputs[1].records, true),
    )
    .unwrap();
    let id = parent.to_string();
    let resume = [&args[..], &["--resume", &id]].concat();
    let out = run_bin_bounded(&resume, TIMEOUT);
    out.expect_ok();
    let json = out.json();
    assert_eq!(json["run_id"], parent, "{json}");
    assert_eq!(json["status"], "completed", "{json}");
    assert_items_equal_reference(&db, total);
    let kids = assert_all_completed(&db, parent, &inputs);
    let first = kids.iter().find(|c| c.name == "part-01.csv").unwrap();
    assert_eq!(
        first.attempts, 1,
        "a completed input is not claimed again by the resume: {first:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Reject mode
// ---------------------------------------------------------------------------------------------

#[test]
fn reject_mode_names_the_input_of_each_rejected_row() {
    let db = items_db();
    let (dir, mut inputs) = write_inputs(
        &db,
        "in",
        &[
            ("part-01.csv", 80, false),
            ("part-02.csv.gz", 80, true),
            ("part-03.csv", 80, false),
        ],
    );
    // Record 30 of part-02 has a non-integer `n`: rejected, the rest of the input loads.
    let mut records = inputs[1].records.clone();
    records[30][2] = Some("thirty".into());
    let text = csv_file(&HEADER, &records, "\n");
    fs::write(dir.join("part-02.csv.gz"), gzip(text.as_bytes())).unwrap();
    let parsed = parse_csv(&text);
    let bad_line = parsed[31].line;
    let raw_bad = physical_lines(&text)[bad_line as usize - 1].clone();
    assert_eq!(
        parse_csv(&raw_bad)[0].fields,
        records[30],
        "one-line record"
    );
    // The reference: every other row.
    records.remove(30);
    inputs[1] = write_input(&db, &db.path("ref"), "part-02.csv.gz", records, false);
    let total = load_reference(&db, &inputs);

    let rejects = db.path("rejects.csv");
    let out = run_bin_bounded(
        &seed_many(
            &db,
            &[path_str(&dir)],
            &[
                "--table",
                "items",
                "--batch-size",
                "20",
                "--rejects",
                path_str(&rejects),
                "--json",
            ],
        ),
        TIMEOUT,
    );
    out.expect_code(3);
    let json = out.json();
    assert_eq!(json["rows_rejected"], 1, "{json}");
    assert_items_equal_reference(&db, total);
    let listed = json_inputs(&json);
    let want: BTreeMap<String, (String, u64, u64)> = [
        ("part-01.csv", 80, 80),
        ("part-02.csv.gz", 80, 79),
        ("part-03.csv", 80, 80),
    ]
    .into_iter()
    .map(|(n, read, inserted)| (n.to_string(), ("completed".to_string(), read, inserted)))
    .collect();
    assert_eq!(listed, want, "the summary's inputs: {json}");

    let file = fs::read_to_string(&rejects).expect("the rejects file");
    let header = format!(
        "{},rejected_line,rejected_column,rejected_sqlstate,rejected_reason,rejected_input\n",
        HEADER.join(",")
    );
    assert!(
        file.starts_with(&format!("{header}{raw_bad},")),
        "the rejects file: the header with the five added columns, then the record as it \
         was in the input:\n{file}"
    );
    let got = parse_csv(&file);
    assert_eq!(got.len(), 2, "a header and one rejected record:\n{file}");
    let fields = &got[1].fields;
    assert_eq!(fields.len(), 10, "{fields:?}");
    let added: Vec<&str> = fields[5..]
        .iter()
        .map(|f| f.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(added[0], bad_line.to_string(), "rejected_line: {fields:?}");
    assert_eq!(added[1], "n", "rejected_column: {fields:?}");
    assert_eq!(added[2], "22P02", "rejected_sqlstate: {fields:?}");
    assert!(!added[3].is_empty(), "rejected_reason: {fields:?}");
    assert_eq!(added[4], "part-02.csv.gz", "rejected_input: {fields:?}");
}

/// Ctrl-C in a run of many inputs: the process ends after its batches in flight (exit 130)
/// and marks the run and the input it held interrupted; a process that joins the interrupted
/// run finishes it after the input's committed batches, while `runs show --watch` (no
/// terminal: one block per refresh) follows the run until it ends.
#[test]
fn sigint_interrupts_the_run_and_a_joiner_finishes_it_while_runs_show_watches() {
    let db = items_db();
    let (dir, inputs) = write_inputs(
        &db,
        "in",
        &[
            ("part-01.csv", 300, false),
            ("part-02.csv.gz", 300, true),
            ("part-03.csv", 300, false),
        ],
    );
    let total = load_reference(&db, &inputs);
    let mut first = Spawned::start(&seed_many(
        &db,
        &[path_str(&dir)],
        &[
            "--table",
            "items",
            "--batch-size",
            "25",
            "--connections",
            "1",
            "--rate",
            RATE,
        ],
    ));
    // Batches of the run's inputs (0 while the ledger is still to be made).
    let committed = || {
        db.client()
            .query_one(
                "SELECT count(*) FROM provisioner.batches b JOIN provisioner.runs r \
                 ON r.id = b.run_id WHERE r.parent_id IS NOT NULL",
                &[],
            )
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    first.wait_for("a few committed batches", TIMEOUT, || committed() >= 3);
    first.signal("INT");
    let interrupted = first.wait(TIMEOUT);
    assert_eq!(interrupted.code, 130, "{}", interrupted.stderr);
    let parent = parent_id(&db).expect("the run");
    assert_eq!(status_of(&db, parent), "interrupted");
    let kids = children(&db, parent);
    let held: Vec<&Child> = kids.iter().filter(|c| c.status == "interrupted").collect();
    assert_eq!(held.len(), 1, "the input it held is interrupted: {kids:?}");
    assert!(
        held[0].batch_rows > 0 && held[0].lease_pid.is_none(),
        "{kids:?}"
    );
    assert!(
        kids.iter().any(|c| c.status == "pending"),
        "some input was not claimed yet: {kids:?}"
    );

    let id = parent.to_string();
    let url = db.url().to_string();
    let mut joiner = Spawned::start(&join(
        &db,
        &id,
        &["--json", "--connections", "1", "--rate", RATE],
    ));
    // Watched once the joiner has taken the run up again: an interrupted run has ended.
    joiner.wait_for("the run running again", TIMEOUT, || {
        status_of(&db, parent) == "running"
    });
    let watch = Spawned::start(&[
        "runs",
        "show",
        &id,
        "--watch",
        "--every",
        "0.3",
        "--database-url",
        &url,
    ]);
    let joined = joiner.wait(TIMEOUT);
    assert_eq!(joined.code, 0, "{}", joined.stderr);
    let json: serde_json::Value = serde_json::from_str(joined.stdout.trim()).unwrap();
    assert_json_inputs_completed(&json, &inputs);
    assert_all_completed(&db, parent, &inputs);
    assert_items_equal_reference(&db, total);
    let kids = children(&db, parent);
    let resumed = kids.iter().find(|c| c.id == held[0].id).unwrap();
    assert_eq!(resumed.attempts, 2, "{kids:?}");
    assert_eq!(
        resumed.took_over_expired_at, None,
        "an input released by Ctrl-C is free at once: {kids:?}"
    );

    // The watch saw the run going, then completed, and ended by itself.
    let watched = watch.wait(TIMEOUT);
    assert_eq!(watched.code, 0, "{}", watched.stderr);
    let blocks = watched.stdout.matches(&format!("run {parent} (")).count();
    assert!(blocks >= 2, "one block per refresh:\n{}", watched.stdout);
    let last = watched
        .stdout
        .rsplit(&format!("run {parent} ("))
        .next()
        .unwrap();
    assert!(last.starts_with("completed)"), "{}", watched.stdout);
    assert!(last.contains("3 of 3 inputs completed"), "{last}");
    for input in &inputs {
        assert!(last.contains(&input.name), "{last}");
    }
    assert!(
        !watched.stdout.contains('\x1b'),
        "no terminal, no escape codes:\n{}",
        watched.stdout
    );

    // A process joining once the run is completed has nothing to do, and says so: exit 0.
    let late = run_bin_bounded(&join(&db, &id, &["--json"]), TIMEOUT);
    assert_eq!(late.code, 0, "{}", late.stderr);
    let json: serde_json::Value = serde_json::from_str(late.stdout.trim()).unwrap();
    assert_eq!(json["rows_read"], 0, "{json}");
    assert_json_inputs_completed(&json, &inputs);
}
