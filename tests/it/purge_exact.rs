//! Purge deletes exactly its rows, or refuses (exit 2) before anything is recorded:
//!
//! 1. `purge --run` deletes the rows the seed really inserted, when a `BEFORE INSERT`
//!    trigger skipped some ("insert or ignore") or changed their key, in every load mode;
//!    a skipping trigger created while a run is under way fails the batch instead of
//!    recording the file's keys;
//! 2. `--where` covers every partition and inheritance child; a key that does not identify
//!    one row across an inheritance hierarchy, or whose unique index is not valid, is refused;
//! 3. a unique key that allows NULL is never recorded, and `purge --run` says why;
//! 4. a resumed `purge --run` deletes the seed batches a resumed seed added in between;
//! 5. a deferrable `ON CONFLICT` key and a view as `--table` are refused, and named.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use crate::purge_support::*;

/// Skips a row whose external_id is already in the table, as an application's
/// "insert or ignore" trigger does.
const INSERT_OR_IGNORE: &str = "CREATE FUNCTION insert_or_ignore() RETURNS trigger \
     LANGUAGE plpgsql AS $$ BEGIN \
       IF EXISTS (SELECT FROM accounts WHERE external_id = NEW.external_id) THEN RETURN NULL; \
       END IF; RETURN NEW; END $$; \
     CREATE TRIGGER insert_or_ignore BEFORE INSERT ON accounts FOR EACH ROW \
       EXECUTE FUNCTION insert_or_ignore();";

/// Loads the fixture into table `fixture` (like `accounts`), to copy rows from.
fn fixture_table(db: &TestDb) {
    db.execute("CREATE TABLE fixture (LIKE accounts INCLUDING ALL)");
    db.psql_copy("fixture", &ACCOUNT_COLUMNS, &fixture_path());
}

/// Every 7th fixture account (142 of them) is already in `accounts`, with another
/// display name, before any seed: the rows an "insert or ignore" trigger skips.
fn already_there(db: &TestDb) -> i64 {
    fixture_table(db);
    let cols = ACCOUNT_COLUMNS.join(", ");
    db.execute(&format!(
        "INSERT INTO accounts ({cols}) SELECT {} FROM \
           (SELECT *, row_number() OVER (ORDER BY external_id) AS n FROM fixture) f \
         WHERE n % 7 = 0",
        cols.replace("display_name", "'already here'")
    ));
    db.scalar_i64("SELECT count(*) FROM accounts WHERE display_name = 'already here'")
}

/// The fixture's records, with a row the table's CHECK refuses after the 450th.
fn fixture_with_a_bad_row(db: &TestDb) -> PathBuf {
    let mut records: Vec<Vec<Option<String>>> =
        fixture_records().into_iter().map(|r| r.fields).collect();
    let mut bad = records[0].clone();
    bad[0] = Some("00000000-0000-4000-8000-00000000bad1".into());
    bad[1] = Some("bad@role.example".into());
    bad[2] = Some("bad_role".into());
    bad[5] = Some("nobody".into());
    records.insert(450, bad);
    write_records(db, "with_bad.csv", &ACCOUNT_COLUMNS, &records)
}

/// Purges seed run `run_id` and checks it deleted exactly `inserted` rows, all found.
#[track_caller]
fn purge_run_exactly(db: &TestDb, run_id: i64, inserted: u64) {
    let id = run_id.to_string();
    let run = purge(db, &["--run", &id, "--yes", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), inserted, "{}", run.stderr);
    assert_eq!(run.figure("rows_missing"), 0, "{}", run.stderr);
}

#[test]
fn purge_run_deletes_only_what_an_insert_or_ignore_trigger_let_in() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 20);
    let there = already_there(&db);
    assert_eq!(there, 142);
    db.execute(INSERT_OR_IGNORE);
    let before = digest(&db, "accounts", "true");
    let fixture = fixture_path();
    let inserted = 1000 - there as u64;

    for mode in [&[][..], &["--on-conflict", "skip"][..]] {
        let mut args = vec!["--batch-size", "100", "--connections", "2"];
        args.extend_from_slice(mode);
        let seeded = seed_ok(&db, &fixture, &args);
        assert_eq!(seeded["rows_inserted"], inserted, "{mode:?}");
        assert_eq!(seeded["rows_skipped"], there, "{mode:?}");
        assert_eq!(db.count("accounts"), 20 + 1000);
        purge_run_exactly(&db, seeded["run_id"].as_i64().unwrap(), inserted);
        assert_eq!(
            digest(&db, "accounts", "true"),
            before,
            "{mode:?}: purge --run deleted rows the seed did not insert"
        );
    }

    // Reject mode, where a refused row splits its batch into parts.
    let with_bad = fixture_with_a_bad_row(&db);
    let rejects = db.path("rejects.csv");
    let run = db.seed(
        &with_bad,
        &[
            "--rejects",
            path_str(&rejects),
            "--batch-size",
            "100",
            "--json",
            "-q",
        ],
    );
    run.expect_code(3);
    assert_eq!(run.figure("rows_inserted"), inserted);
    assert_eq!(run.figure("rows_rejected"), 1);
    purge_run_exactly(&db, run.figure("run_id") as i64, inserted);
    assert_eq!(digest(&db, "accounts", "true"), before);

    // What the dry run says would be inserted is what the runs inserted.
    let dry = db.seed(&fixture, &["--dry-run", "--json", "--batch-size", "100"]);
    dry.expect_ok();
    assert_eq!(dry.figure("rows_inserted"), inserted);
    assert_eq!(dry.figure("rows_skipped"), there as u64);
    assert_eq!(digest(&db, "accounts", "true"), before);
}

#[test]
fn purge_run_deletes_the_rows_a_trigger_gave_another_key() {
    let db = TestDb::with_accounts();
    fixture_table(&db);
    // A quarter of the fixture's rows get another external_id on the way in; rows with
    // their original external_id (and other emails and usernames) are there already.
    let changed = "hashtext(email) % 4 = 0";
    let cols = ACCOUNT_COLUMNS.join(", ");
    db.execute(&format!(
        "INSERT INTO accounts ({cols}) SELECT {} FROM fixture WHERE {changed}",
        cols.replace("email", "'twin_' || email")
            .replace("username", "'twin_' || username")
    ));
    let twins = db.count("accounts");
    assert!(twins > 150, "{twins} twins");
    db.execute(&format!(
        "CREATE FUNCTION rekey() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF {} THEN NEW.external_id := md5(NEW.external_id::text)::uuid; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER rekey BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION rekey();",
        changed.replace("email", "NEW.email")
    ));
    let before = digest(&db, "accounts", "true");

    let seeded = seed_ok(&db, &fixture_path(), &["--batch-size", "250"]);
    assert_eq!(seeded["rows_inserted"], 1000);
    purge_run_exactly(&db, seeded["run_id"].as_i64().unwrap(), 1000);
    assert_eq!(
        digest(&db, "accounts", "true"),
        before,
        "purge --run deleted the twins, or left the rows whose key the trigger changed"
    );
}

/// `SELECT count(*) FROM provisioner.runs`, or None while the ledger is not there.
fn recorded_runs(db: &TestDb) -> Option<i64> {
    db.client()
        .query_one("SELECT count(*) FROM provisioner.runs", &[])
        .ok()
        .map(|r| r.get(0))
}

#[test]
fn a_skipping_trigger_created_during_a_run_fails_its_batch_and_the_resume_is_exact() {
    let db = TestDb::with_accounts();
    let there = already_there(&db);
    let before = digest(&db, "accounts", "true");
    let pause = db.write("pause", b"");
    let fixture = fixture_path();
    // The run plans with no trigger on the table, then waits before its first batch.
    let mut run = Spawned::seed(
        &fixture,
        db.url(),
        &["--pause-file", path_str(&pause), "--batch-size", "100"],
    );
    run.wait_for("the run to be recorded", Duration::from_secs(60), || {
        recorded_runs(&db) == Some(1)
    });
    db.execute(INSERT_OR_IGNORE);
    std::fs::remove_file(&pause).expect("remove the pause file");
    let out = run.wait(Duration::from_secs(60));
    out.expect_code(1);
    assert!(
        out.stderr.contains("of the 100 rows sent") && out.stderr.contains("BEFORE INSERT"),
        "{}",
        out.stderr
    );
    assert_eq!(
        digest(&db, "accounts", "true"),
        before,
        "the failed batch kept rows"
    );
    let run_id = out.figure("run_id");

    let resumed = seed_ok(&db, &fixture, &["--batch-size", "100", "--resume"]);
    assert_eq!(resumed["run_id"], run_id);
    let inserted = 1000 - there as u64;
    assert_eq!(resumed["rows_inserted"], inserted);
    purge_run_exactly(&db, run_id as i64, inserted);
    assert_eq!(digest(&db, "accounts", "true"), before);
}

// ---------------------------------------------------------------------------------------------
// 2. Partitions and inheritance children
// ---------------------------------------------------------------------------------------------

/// Rows `note = 'purge me'` selects.
const MARKED: &str = "note = 'purge me'";

#[test]
fn where_purges_every_partition_and_resumes_over_them() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE events (id bigint NOT NULL, region text NOT NULL, email text NOT NULL, \
           note text, PRIMARY KEY (id, region)) PARTITION BY LIST (region); \
         CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu'); \
         CREATE SCHEMA other; \
         CREATE TABLE other.events_us PARTITION OF events FOR VALUES IN ('us'); \
         CREATE TABLE events_asia PARTITION OF events FOR VALUES IN ('asia') \
           PARTITION BY RANGE (id); \
         CREATE TABLE events_asia_lo PARTITION OF events_asia FOR VALUES FROM (MINVALUE) TO (5000); \
         CREATE TABLE events_asia_hi PARTITION OF events_asia FOR VALUES FROM (5000) TO (MAXVALUE); \
         INSERT INTO events SELECT i, (ARRAY['eu', 'us', 'asia'])[1 + i % 3], 'u' || i || '@x', \
           CASE WHEN i % 4 = 0 THEN 'purge me' END FROM generate_series(1, 12000) i; \
         ANALYZE events;",
    );
    let kept = digest(&db, "events", &format!("{MARKED} IS NOT TRUE"));
    let marked = db.scalar_i64(&format!("SELECT count(*) FROM events WHERE {MARKED}"));
    assert_eq!(marked, 3000);
    let args = |extra: &[&'static str]| {
        let mut args = vec![
            "--table",
            "events",
            "--where",
            MARKED,
            "--batch-size",
            "300",
            "--yes",
            "--json",
        ];
        args.extend_from_slice(extra);
        args
    };

    let dry = purge(&db, &args(&["--dry-run"]));
    dry.expect_ok();
    assert_eq!(dry.figure("rows_deleted"), 3000);

    // A delete trigger stops the first attempt in the middle of one partition.
    let victim = db.scalar_i64(&format!(
        "SELECT id FROM other.events_us WHERE {MARKED} ORDER BY id OFFSET 500 LIMIT 1"
    ));
    db.execute(&format!(
        "CREATE FUNCTION stop_here() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN RAISE EXCEPTION 'injected stop'; END $$; \
         CREATE TRIGGER stop_here BEFORE DELETE ON other.events_us FOR EACH ROW \
           WHEN (OLD.id = {victim}) EXECUTE FUNCTION stop_here()"
    ));
    let first = purge(&db, &args(&["--connections", "1"]));
    first.expect_code(1);
    assert!(first.stderr.contains("injected stop"), "{}", first.stderr);
    let left = db.scalar_i64(&format!("SELECT count(*) FROM events WHERE {MARKED}"));
    assert!(left > 0 && left < 3000, "{left} marked rows left");
    db.execute("DROP TRIGGER stop_here ON other.events_us");
    // Meanwhile a partition grows and a new one appears.
    db.execute(
        "INSERT INTO events SELECT i, 'eu', 'v' || i || '@x', 'purge me' \
           FROM generate_series(20000, 23000) i; \
         CREATE TABLE events_sa PARTITION OF events FOR VALUES IN ('sa'); \
         INSERT INTO events SELECT i, 'sa', 'w' || i || '@x', \
           CASE WHEN i % 2 = 0 THEN 'purge me' END FROM generate_series(1, 2000) i;",
    );
    let kept = {
        let now = digest(&db, "events", &format!("{MARKED} IS NOT TRUE"));
        assert_eq!(now.0, kept.0 + 1000);
        now
    };
    let left = db.scalar_i64(&format!("SELECT count(*) FROM events WHERE {MARKED}"));

    let resumed = purge(&db, &args(&["--resume"]));
    resumed.expect_ok();
    assert_eq!(resumed.figure("run_id"), first.figure("run_id"));
    assert_eq!(resumed.figure("rows_deleted"), left as u64);
    assert_eq!(
        db.scalar_i64(&format!("SELECT count(*) FROM events WHERE {MARKED}")),
        0
    );
    assert_eq!(
        digest(&db, "events", &format!("{MARKED} IS NOT TRUE")),
        kept
    );
    // The resumed run recorded the ranges it went on with: one segment per relation, and
    // more for what grew or appeared.
    let segments = db.scalar_i64(&format!(
        "SELECT jsonb_array_length(options->'layout')::bigint FROM provisioner.runs WHERE id = {}",
        first.figure("run_id")
    ));
    assert!(segments >= 6, "{segments} segments");
}

#[test]
fn a_partitioned_table_is_seeded_and_purged_by_run_and_by_file() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE events (id bigint NOT NULL, region text NOT NULL, note text, \
           PRIMARY KEY (id, region)) PARTITION BY LIST (region); \
         CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu'); \
         CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us'); \
         INSERT INTO events SELECT i, (ARRAY['eu', 'us'])[1 + i % 2], 'there' \
           FROM generate_series(1, 100) i;",
    );
    let before = digest(&db, "events", "true");
    let records: Vec<Vec<Option<String>>> = (51..=250)
        .map(|i| {
            let region = if i % 2 == 0 { "eu" } else { "us" };
            vec![Some(i.to_string()), Some(region.into()), Some("new".into())]
        })
        .collect();
    let file = write_records(&db, "events.csv", &["id", "region", "note"], &records);
    // Rows 51-100 are there: skipped, and not the run's to purge.
    let seeded = seed_ok(
        &db,
        &file,
        &[
            "--table",
            "events",
            "--on-conflict",
            "skip",
            "--batch-size",
            "60",
        ],
    );
    assert_eq!(seeded["rows_inserted"], 150);
    assert_eq!(seeded["rows_skipped"], 50);
    let id = seeded["run_id"].as_i64().unwrap().to_string();
    let run = purge(&db, &["--table", "events", "--run", &id, "--yes", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 150);
    assert_eq!(digest(&db, "events", "true"), before);

    // By file: the primary key holds the partition key, so it names one row of the table.
    let run = purge(
        &db,
        &["--table", "events", path_str(&file), "--yes", "--json"],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 50);
    assert_eq!(db.count("events"), 50);
}

#[test]
fn inheritance_children_are_purged_by_where_and_their_keys_refused() {
    let db = TestDb::new();
    // Three tables that share codes: the parent's unique index covers only its own rows. The
    // children hold more pages than the parent.
    db.execute(
        "CREATE TABLE people (id bigint NOT NULL, code text NOT NULL UNIQUE, note text); \
         CREATE TABLE staff (badge int) INHERITS (people); \
         CREATE TABLE contractors () INHERITS (people); \
         CREATE TABLE interns () INHERITS (staff); \
         INSERT INTO people SELECT i, 'c' || i, CASE WHEN i % 3 = 0 THEN 'purge me' END \
           FROM generate_series(1, 1000) i; \
         INSERT INTO staff SELECT i, 'c' || i, CASE WHEN i % 3 = 0 THEN 'purge me' END, i \
           FROM generate_series(1, 3000) i; \
         INSERT INTO contractors SELECT i, 'c' || i, CASE WHEN i % 3 = 0 THEN 'purge me' END \
           FROM generate_series(1, 6000) i; \
         INSERT INTO interns SELECT i, 'c' || i, CASE WHEN i % 3 = 0 THEN 'purge me' END, i \
           FROM generate_series(1, 2000) i; \
         ANALYZE people, staff, contractors, interns;",
    );
    let everything = digest(&db, "people", "true");

    // By file: one code names a row in each table.
    let file = db.write("codes.csv", "code\nc3\nc4\n");
    let run = purge(&db, &["--table", "people", path_str(&file), "--yes"]);
    expect_refused(&run, "inheritance children");
    let run = purge(
        &db,
        &[
            "--table",
            "people",
            path_str(&file),
            "--key",
            "code",
            "--yes",
        ],
    );
    expect_refused(&run, "inheritance children");
    // By --run: the keys a seed of the parent recorded.
    let seed_file = db.write("new.csv", "id,code\n1,n1\n2,n2\n");
    let seeded = seed_ok(&db, &seed_file, &["--table", "people"]);
    let id = seeded["run_id"].as_i64().unwrap().to_string();
    expect_refused(
        &purge(&db, &["--table", "people", "--run", &id, "--yes"]),
        "inheritance children",
    );
    db.execute("DELETE FROM ONLY people WHERE code IN ('n1', 'n2')");
    assert_eq!(digest(&db, "people", "true"), everything);
    // --cascade needs a key that finds the referencing rows across the tables.
    db.execute(
        "CREATE TABLE badges (code text REFERENCES people (code)); \
         INSERT INTO badges VALUES ('c3')",
    );
    let run = purge(
        &db,
        &["--table", "people", "--where", MARKED, "--cascade", "--yes"],
    );
    expect_refused(&run, "inheritance children");
    db.execute("DROP TABLE badges");
    assert_eq!(digest(&db, "people", "true"), everything);

    let kept = digest(&db, "people", &format!("{MARKED} IS NOT TRUE"));
    let marked = db.scalar_i64(&format!("SELECT count(*) FROM people WHERE {MARKED}"));
    assert_eq!(marked, 333 + 1000 + 2000 + 666);
    let run = purge(
        &db,
        &[
            "--table",
            "people",
            "--where",
            MARKED,
            "--batch-size",
            "500",
            "--yes",
            "--json",
        ],
    );
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), marked as u64);
    assert_eq!(
        db.scalar_i64(&format!("SELECT count(*) FROM people WHERE {MARKED}")),
        0
    );
    assert_eq!(
        digest(&db, "people", &format!("{MARKED} IS NOT TRUE")),
        kept
    );
}

#[test]
fn a_unique_index_that_is_not_valid_is_no_key() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
           code text NOT NULL, name text); \
         INSERT INTO items (code, name) VALUES ('a', 'one'), ('a', 'two'), ('b', 'three');",
    );
    // A build that fails on the duplicate leaves the index behind, not valid.
    let failed = db
        .client()
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY items_code_key ON items (code)");
    assert!(failed.is_err(), "the index build should fail");
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_index WHERE indexrelid = 'items_code_key'::regclass \
             AND NOT indisvalid"
        ),
        1
    );
    let everything = digest(&db, "items", "true");

    let keys = db.write("keys.csv", "code\na\n");
    expect_refused(
        &purge(&db, &["--table", "items", path_str(&keys), "--yes"]),
        "not valid",
    );
    expect_refused(
        &purge(
            &db,
            &[
                "--table",
                "items",
                path_str(&keys),
                "--key",
                "code",
                "--yes",
            ],
        ),
        "not valid",
    );
    let new = db.write("new.csv", "code,name\nc,four\n");
    for mode in [
        &["--on-conflict", "skip", "--key", "code"][..],
        &["--on-conflict", "update"][..],
    ] {
        let mut args = vec!["--table", "items"];
        args.extend_from_slice(mode);
        expect_refused(&db.seed(&new, &args), "not valid");
    }
    assert_eq!(digest(&db, "items", "true"), everything);
    assert_eq!(db.count("provisioner.runs"), 0, "a refusal recorded a run");

    // A seed records no key it cannot trust, says so, and purge --run says why.
    let run = db.seed(&new, &["--table", "items", "--json"]);
    run.expect_ok();
    assert!(run.stderr.contains("not valid"), "{}", run.stderr);
    let id = run.figure("run_id").to_string();
    expect_refused(
        &purge(&db, &["--table", "items", "--run", &id, "--yes"]),
        "not valid",
    );
    assert_eq!(db.count("items"), 4);
}

// ---------------------------------------------------------------------------------------------
// 3. NULL keys
// ---------------------------------------------------------------------------------------------

#[test]
fn a_key_that_allows_null_is_not_recorded() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, code text UNIQUE, \
           label text NOT NULL); \
         CREATE TABLE labels (code text UNIQUE, ext text NOT NULL UNIQUE, label text NOT NULL);",
    );
    let file = db.write("tags.csv", "code,label\nt1,a\n,b\nt3,c\n,d\n");
    let run = db.seed(&file, &["--table", "tags", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 4);
    assert!(run.stderr.contains("allows NULL"), "{}", run.stderr);
    let id = run.figure("run_id").to_string();
    let refused = purge(&db, &["--table", "tags", "--run", &id, "--yes"]);
    expect_refused(&refused, "allows NULL");
    assert_eq!(db.count("tags"), 4);

    // The key recorded is one whose columns are NOT NULL, even when a nullable one comes first.
    let file = db.write(
        "labels.csv",
        "code,ext,label\nt1,e1,a\n,e2,b\nt3,e3,c\n,e4,d\n",
    );
    let seeded = seed_ok(&db, &file, &["--table", "labels"]);
    let id = seeded["run_id"].as_i64().unwrap().to_string();
    let run = purge(&db, &["--table", "labels", "--run", &id, "--yes", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 4);
    assert_eq!(db.count("labels"), 0);
}

// ---------------------------------------------------------------------------------------------
// 4. A seed resumed between two attempts of a purge
// ---------------------------------------------------------------------------------------------

/// A trigger on `table` that, for the row `when` selects, waits a moment (so the other
/// connection's batch commits first) and fails.
fn slow_failure(db: &TestDb, name: &str, event: &str, when: &str) {
    db.execute(&format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN PERFORM pg_sleep(1.5); RAISE EXCEPTION 'injected {name}'; END $$; \
         CREATE TRIGGER {name} BEFORE {event} ON accounts FOR EACH ROW WHEN ({when}) \
           EXECUTE FUNCTION {name}();"
    ));
}

#[test]
fn a_purge_resumed_after_its_seed_filled_a_gap_deletes_every_seed_batch() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 20);
    let real = real_accounts(&db);
    let file = generate(&db, "gen.csv", 300, 5, "example.test");
    let lines = |n: usize| -> String {
        let text = std::fs::read_to_string(&file).unwrap();
        let line = text.lines().nth(n).unwrap().to_string();
        line.split(',').nth(2).unwrap().to_string()
    };
    // The seed's batch 2 (lines 102-201) fails late, after batch 3 committed: a gap.
    slow_failure(
        &db,
        "seed_stop",
        "INSERT",
        &format!("NEW.username = '{}'", lines(150)),
    );
    let args = ["--batch-size", "100", "--connections", "2", "--json"];
    let seed = db.seed(&file, &args);
    seed.expect_code(1);
    let seed_id = seed.figure("run_id");
    let committed = db.column_text(&format!(
        "SELECT seq::text FROM provisioner.batches WHERE run_id = {seed_id} ORDER BY seq"
    ));
    assert_eq!(committed, [Some("1".into()), Some("3".into())]);
    db.execute("DROP TRIGGER seed_stop ON accounts");

    // The purge's batch for seed batch 1 fails late, after the one for seed batch 3 committed.
    slow_failure(
        &db,
        "purge_stop",
        "DELETE",
        &format!("OLD.username = '{}'", lines(50)),
    );
    let id = seed_id.to_string();
    let purge_args = |extra: &[&'static str]| {
        let mut args = vec![
            "--run",
            id.as_str(),
            "--connections",
            "2",
            "--yes",
            "--json",
        ];
        args.extend_from_slice(extra);
        args
    };
    let first = purge(&db, &purge_args(&[]));
    first.expect_code(1);
    assert!(
        first.stderr.contains("injected purge_stop"),
        "{}",
        first.stderr
    );
    assert_eq!(db.count("accounts"), 20 + 100);
    db.execute("DROP TRIGGER purge_stop ON accounts");

    // The seed is resumed: its batch 2 fills the gap.
    let mut resume = args.to_vec();
    resume.push("--resume");
    db.seed(&file, &resume).expect_ok();
    // Seed batch 3's rows are gone, batch 1's are there and batch 2's came back.
    assert_eq!(db.count("accounts"), 20 + 200);

    let resumed = purge(&db, &purge_args(&["--resume"]));
    resumed.expect_ok();
    assert_eq!(resumed.figure("run_id"), first.figure("run_id"));
    assert_eq!(real_accounts(&db), real);
    assert_eq!(
        db.count("accounts"),
        20,
        "the resumed purge skipped a seed batch"
    );

    // A purge run whose batches were numbered by position (as before) is not resumed when
    // a number names another seed batch now.
    let purge_id = resumed.figure("run_id");
    db.execute(&format!(
        "UPDATE provisioner.runs SET status = 'failed' WHERE id = {purge_id}; \
         DELETE FROM provisioner.batches WHERE run_id = {purge_id} AND seq <> 3; \
         UPDATE provisioner.batches SET seq = 2 WHERE run_id = {purge_id}"
    ));
    let refused = purge(&db, &purge_args(&["--resume"]));
    expect_refused(&refused, "seed batch 3");
}

// ---------------------------------------------------------------------------------------------
// 5. Refused and named
// ---------------------------------------------------------------------------------------------

#[test]
fn a_deferrable_conflict_key_is_refused_before_anything_is_recorded() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE codes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
           code text NOT NULL, label text, \
           CONSTRAINT codes_code_key UNIQUE (code) DEFERRABLE INITIALLY IMMEDIATE); \
         INSERT INTO codes (code, label) VALUES ('a', 'there');",
    );
    let file = db.write("codes.csv", "code,label\na,new\nb,new\n");
    for mode in [
        &["--on-conflict", "skip", "--key", "code"][..],
        &["--on-conflict", "skip"][..],
        &["--on-conflict", "update"][..],
    ] {
        let mut args = vec!["--table", "codes"];
        args.extend_from_slice(mode);
        expect_refused(&db.seed(&file, &args), "deferrable");
    }
    assert_eq!(db.count("codes"), 1);
    assert_eq!(
        db.scalar_text("SELECT to_regclass('provisioner.runs')::text"),
        None,
        "a refusal recorded a run"
    );
    // Without ON CONFLICT the key is fine, and recorded.
    let file = db.write("more.csv", "code,label\nb,new\nc,new\n");
    let seeded = seed_ok(&db, &file, &["--table", "codes"]);
    let id = seeded["run_id"].as_i64().unwrap().to_string();
    let run = purge(&db, &["--table", "codes", "--run", &id, "--yes", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 2);
    assert_eq!(db.count("codes"), 1);
}

#[test]
fn a_view_is_named_as_a_view() {
    let db = TestDb::with_accounts();
    db.execute(
        "CREATE VIEW active_accounts AS SELECT * FROM accounts WHERE is_active; \
         CREATE MATERIALIZED VIEW account_count AS SELECT count(*) FROM accounts;",
    );
    let fixture = fixture_path();
    expect_refused(
        &db.seed(&fixture, &["--table", "active_accounts"]),
        "active_accounts is a view; seed loads into tables",
    );
    expect_refused(
        &purge(
            &db,
            &["--table", "active_accounts", "--where", "true", "--yes"],
        ),
        "active_accounts is a view; purge deletes from tables",
    );
    expect_refused(
        &db.seed(&fixture, &["--table", "account_count"]),
        "account_count is a materialized view",
    );
    expect_refused(
        &db.seed(&fixture, &["--table", "nowhere"]),
        "table nowhere does not exist",
    );
    assert_eq!(db.count("accounts"), 0);
}
