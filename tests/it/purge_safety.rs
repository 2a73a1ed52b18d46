//! What stands between `purge` and deleting the wrong rows: foreign keys (refused, or
//! `--cascade`), `--dry-run`, the confirmation threshold, and retries when the server kills
//! the tool's connections mid-purge.

use std::time::Duration;

use crate::common::*;
use crate::purge_support::*;

/// The external_ids of the fixture's records, in file order, quoted for SQL.
fn fixture_ids() -> Vec<String> {
    fixture_records()
        .into_iter()
        .map(|r| format!("'{}'", r.fields[0].as_deref().expect("external_id")))
        .collect()
}

/// An SQL list: `('a', 'b')`.
fn sql_list(items: &[String]) -> String {
    format!("({})", items.join(", "))
}

/// The first `n` records of the fixture, written as a CSV of `file`; their external_ids as
/// an SQL list.
fn fixture_subset(db: &TestDb, file: &str, n: usize) -> (std::path::PathBuf, String) {
    let records: Vec<Vec<Option<String>>> = fixture_records()
        .into_iter()
        .take(n)
        .map(|r| r.fields)
        .collect();
    (
        write_records(db, file, &ACCOUNT_COLUMNS, &records),
        sql_list(&fixture_ids()[..n]),
    )
}

// ---------------------------------------------------------------------------------------------
// 4. Foreign keys
// ---------------------------------------------------------------------------------------------

/// accounts ← orders (NO ACTION, indexed), ← invoices (RESTRICT, indexed), ← notes (CASCADE,
/// indexed) ← note_tags (NO ACTION, *not* indexed). Every account has two orders and one
/// note with one tag; every other account an invoice.
fn create_children(db: &TestDb) {
    db.execute(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, \
                              account_id bigint NOT NULL REFERENCES accounts (id), item text); \
         CREATE INDEX ON orders (account_id); \
         CREATE TABLE invoices (id bigserial PRIMARY KEY, \
                                account_id bigint REFERENCES accounts (id) ON DELETE RESTRICT); \
         CREATE INDEX ON invoices (account_id); \
         CREATE TABLE notes (id bigserial PRIMARY KEY, \
                             account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE, \
                             body text); \
         CREATE INDEX ON notes (account_id); \
         CREATE TABLE note_tags (id bigserial PRIMARY KEY, \
                                 note_id bigint NOT NULL REFERENCES notes (id), tag text); \
         INSERT INTO orders (account_id, item) \
           SELECT id, 'item ' || id || '/' || k FROM accounts, generate_series(1, 2) k; \
         INSERT INTO invoices (account_id) SELECT id FROM accounts WHERE id % 2 = 0; \
         INSERT INTO notes (account_id, body) SELECT id, 'note of ' || id FROM accounts; \
         INSERT INTO note_tags (note_id, tag) SELECT id, 'tag ' || id FROM notes;",
    );
}

/// The digest of every table of [`create_children`], and of accounts.
fn all_tables(db: &TestDb) -> Vec<(i64, String)> {
    ["accounts", "orders", "invoices", "notes", "note_tags"]
        .iter()
        .map(|t| digest(db, t, "true"))
        .collect()
}

#[test]
fn blocking_foreign_keys_are_refused_at_any_depth_and_cascade_deletes_children_first() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 50);
    seed_ok(&db, &fixture_path(), &[]);
    create_children(&db);
    let (file, purged_ids) = fixture_subset(&db, "subset.csv", 200);
    let file = file.to_str().unwrap();
    let purged = format!("(SELECT id FROM accounts WHERE external_id IN {purged_ids})");
    assert_eq!(
        db.scalar_i64(&format!("SELECT count(*) FROM {purged} p")),
        200
    );
    let before = all_tables(&db);
    assert_eq!(
        before.iter().map(|d| d.0).collect::<Vec<_>>(),
        [1050, 2100, 525, 1050, 1050]
    );

    // Refused, naming every blocking reference (the one two levels down too).
    let run = purge(&db, &[file, "--json"]);
    expect_refused(&run, "would block the delete");
    for child in [
        "public.orders(account_id)",
        "public.invoices(account_id)",
        "public.note_tags(note_id)",
    ] {
        assert!(
            run.stderr.contains(child),
            "{child} not named:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains("public.notes(account_id) via"),
        "notes (ON DELETE CASCADE) does not block:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("RESTRICT"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("public.note_tags(note_id) references a purged table without an index"),
        "no warning about the unindexed note_tags.note_id:\n{}",
        run.stderr
    );
    assert_eq!(all_tables(&db), before, "a refused purge deletes nothing");

    // With only the grandchild left blocking (below a CASCADE child), still refused.
    db.execute(
        "ALTER TABLE orders DROP CONSTRAINT orders_account_id_fkey; \
         ALTER TABLE invoices DROP CONSTRAINT invoices_account_id_fkey",
    );
    let run = purge(&db, &[file]);
    expect_refused(&run, "public.note_tags(note_id)");
    assert!(!run.stderr.contains("public.orders"), "{}", run.stderr);
    assert_eq!(all_tables(&db), before, "a refused purge deletes nothing");
    db.execute(
        "ALTER TABLE orders ADD FOREIGN KEY (account_id) REFERENCES accounts (id); \
         ALTER TABLE invoices ADD FOREIGN KEY (account_id) REFERENCES accounts (id) \
           ON DELETE RESTRICT",
    );

    // --cascade: the referencing rows of the purged accounts go first, in the same
    // transaction; nobody else's.
    let kept = |table: &str, predicate: &str| digest(&db, table, predicate);
    let others_orders = kept("orders", &format!("account_id NOT IN {purged}"));
    let others_invoices = kept("invoices", &format!("account_id NOT IN {purged}"));
    let others_notes = kept("notes", &format!("account_id NOT IN {purged}"));
    let others_tags = kept(
        "note_tags",
        &format!("note_id IN (SELECT id FROM notes WHERE account_id NOT IN {purged})"),
    );
    let others_accounts = kept("accounts", &format!("id NOT IN {purged}"));
    let real = real_accounts(&db);
    let run = purge(&db, &[file, "--cascade", "--json", "--batch-size", "64"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 200);
    assert_eq!(run.figure("rows_missing"), 0);
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM accounts WHERE external_id IN {purged_ids}"
        )),
        0
    );
    assert_eq!(digest(&db, "accounts", "true"), others_accounts);
    assert_eq!(digest(&db, "orders", "true"), others_orders);
    assert_eq!(others_orders.0, 1700);
    assert_eq!(digest(&db, "invoices", "true"), others_invoices);
    assert_eq!(digest(&db, "notes", "true"), others_notes);
    assert_eq!(digest(&db, "note_tags", "true"), others_tags);
    assert_eq!(others_tags.0, 850);
    assert_eq!(real_accounts(&db), real);
}

#[test]
fn unindexed_references_are_warned_about_by_column() {
    let db = TestDb::with_accounts();
    seed_ok(&db, &fixture_path(), &[]);
    // Neither blocks: the server cascades and sets NULL. One is indexed, one is not.
    db.execute(
        "CREATE TABLE sessions (id bigserial PRIMARY KEY, \
                                owner_ref bigint REFERENCES accounts (id) ON DELETE CASCADE); \
         CREATE TABLE logins (id bigserial PRIMARY KEY, \
                              account_id bigint REFERENCES accounts (id) ON DELETE SET NULL); \
         CREATE INDEX ON logins (account_id); \
         INSERT INTO sessions (owner_ref) SELECT id FROM accounts; \
         INSERT INTO logins (account_id) SELECT id FROM accounts;",
    );
    let (file, _) = fixture_subset(&db, "subset.csv", 100);
    let run = purge(&db, &[file.to_str().unwrap(), "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 100);
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains("without an index"))
        .unwrap_or_else(|| panic!("no warning about an unindexed reference:\n{}", run.stderr));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("public.sessions(owner_ref)"),
        "the warning does not name the column: {warning}"
    );
    assert!(
        !run.stderr.contains("public.logins(account_id)"),
        "logins.account_id is indexed:\n{}",
        run.stderr
    );
    // The server did its part.
    assert_eq!(db.count("sessions"), 900);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM logins WHERE account_id IS NULL"),
        100
    );
}

/// `--cascade` is documented to delete "the rows of tables whose foreign keys would block
/// the delete (ON DELETE NO ACTION or RESTRICT)". It deletes through every reference
/// instead (`plan_references` returns `references.to_vec()`), so the rows of a table whose
/// key says ON DELETE SET NULL are deleted rather than kept with a NULL.
#[test]
fn cascade_keeps_the_rows_of_set_null_references() {
    let db = TestDb::with_accounts();
    seed_ok(&db, &fixture_path(), &[]);
    db.execute(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint REFERENCES accounts (id)); \
         CREATE INDEX ON orders (account_id); \
         CREATE TABLE audit (id bigserial PRIMARY KEY, \
                             account_id bigint REFERENCES accounts (id) ON DELETE SET NULL, \
                             what text NOT NULL); \
         CREATE INDEX ON audit (account_id); \
         INSERT INTO orders (account_id) SELECT id FROM accounts; \
         INSERT INTO audit (account_id, what) SELECT id, 'event of ' || id FROM accounts;",
    );
    let (file, _) = fixture_subset(&db, "subset.csv", 100);
    let run = purge(&db, &[file.to_str().unwrap(), "--cascade", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 100);
    assert_eq!(db.count("orders"), 900);
    assert_eq!(
        (
            db.count("audit"),
            db.scalar_i64("SELECT count(*) FROM audit WHERE account_id IS NULL")
        ),
        (1000, 100),
        "(audit rows, audit rows with account_id NULL): ON DELETE SET NULL keeps the rows"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. --dry-run
// ---------------------------------------------------------------------------------------------

#[test]
fn dry_run_changes_nothing_and_counts_what_the_real_purge_deletes() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 30);
    seed_ok(&db, &fixture_path(), &[]);
    // 300 keys of which 250 exist: the first 250 accounts of the fixture are there, the
    // last 50 keys were purged already.
    let (file, _) = fixture_subset(&db, "subset.csv", 300);
    db.execute(&format!(
        "DELETE FROM accounts WHERE external_id IN {}",
        sql_list(&fixture_ids()[250..300])
    ));
    let file = file.to_str().unwrap();
    let runs = || db.scalar_i64("SELECT count(*) FROM provisioner.runs");
    let (before, runs_before) = (digest(&db, "accounts", "true"), runs());
    assert_eq!(before.0, 980);

    let dry = purge(&db, &[file, "--dry-run", "--json", "--batch-size", "70"]);
    dry.expect_ok();
    assert_eq!(text(&dry, "command"), "purge --dry-run");
    assert_eq!(text(&dry, "status"), "completed");
    assert_eq!(dry.figure("rows_read"), 300);
    assert_eq!(dry.figure("rows_deleted"), 250);
    assert_eq!(dry.figure("rows_missing"), 50);
    assert!(dry.json()["run_id"].is_null(), "{}", dry.stdout);
    assert_eq!(digest(&db, "accounts", "true"), before);
    assert_eq!(runs(), runs_before, "a dry run records no run");

    // --where: the same.
    let predicate = "email LIKE '%@real.example' AND balance < 20";
    let dry_where = purge(&db, &["--where", predicate, "--dry-run", "--json"]);
    dry_where.expect_ok();
    assert_eq!(dry_where.figure("rows_deleted"), 15);
    assert_eq!(digest(&db, "accounts", "true"), before);
    // Above --confirm-above, a dry run does not need --yes: it deletes nothing.
    let dry_all = purge(&db, &["--where", "true", "--dry-run", "--json"]);
    dry_all.expect_ok();
    assert_eq!(dry_all.figure("rows_deleted"), 980);
    assert_eq!(digest(&db, "accounts", "true"), before);
    assert_eq!(runs(), runs_before, "a dry run records no run");

    // The real purges delete what the dry runs counted.
    let run = purge(&db, &[file, "--json", "--batch-size", "70"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 250);
    assert_eq!(run.figure("rows_missing"), 50);
    let run = purge(&db, &["--where", predicate, "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 15);
    assert_eq!(db.count("accounts"), 980 - 250 - 15);
}

/// "--dry-run: … change nothing". On a database the tool has never written to, a dry run
/// creates the ledger schema `provisioner` and its tables (`Ledger::open` runs before the
/// dry-run check), which also makes it fail where the user may read but not CREATE.
#[test]
fn dry_run_does_not_create_the_ledger() {
    let db = TestDb::with_accounts();
    let (file, _) = fixture_subset(&db, "subset.csv", 20);
    db.psql_copy("accounts", &ACCOUNT_COLUMNS, &file);
    let run = purge(&db, &[file.to_str().unwrap(), "--dry-run", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 20);
    assert_eq!(db.count("accounts"), 20);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'provisioner'"),
        0,
        "a dry run created the ledger schema"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Confirmation
// ---------------------------------------------------------------------------------------------

#[test]
fn more_rows_than_confirm_above_need_yes_without_a_terminal() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 10);
    let generated = generate(&db, "gen.csv", 1500, 21, "example.test");
    let seeded = seed_ok(&db, &generated, &[]);
    let run_id = seeded["run_id"].as_i64().unwrap().to_string();
    let f = generated.to_str().unwrap();
    let before = digest(&db, "accounts", "true");
    assert_eq!(before.0, 1510);

    // stdin is not a terminal here: every selector is refused above 1000 rows.
    for args in [
        vec![f],
        vec!["--run", &run_id],
        vec!["--where", "email LIKE '%@example.test'"],
        vec![f, "--confirm-above", "1499"],
    ] {
        let run = purge(&db, &args);
        expect_refused(&run, "--yes");
        assert_eq!(
            digest(&db, "accounts", "true"),
            before,
            "purge {args:?} deleted something"
        );
    }
    // stdin: the count is unknown, so --yes is needed whatever it is.
    let three = format!(
        "external_id\n{}\n",
        db.column_text(
            "SELECT external_id::text FROM accounts WHERE email LIKE '%@example.test' LIMIT 3"
        )
        .into_iter()
        .map(Option::unwrap)
        .collect::<Vec<_>>()
        .join("\n")
    );
    let mut args = vec!["purge", "-", "--database-url", db.url()];
    let run = run_bin(&args, Some(three.as_bytes()));
    expect_refused(&run, "--yes");
    assert_eq!(digest(&db, "accounts", "true"), before);

    // A higher threshold, or --yes, lets them through.
    let run = purge(&db, &[f, "--confirm-above", "5000", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 1500);
    assert_eq!(db.count("accounts"), 10);
    seed_ok(&db, &generated, &[]);
    let run = purge(&db, &[f, "--confirm-above", "1500", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 1500, "1500 is not above 1500");
    seed_ok(&db, &generated, &[]);
    let run = purge(&db, &[f, "--yes", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 1500);
    assert_eq!(db.count("accounts"), 10);
    args.extend(["--yes", "--json"]);
    seed_ok(&db, &generated, &[]);
    let run = run_bin(&args, Some(three.as_bytes()));
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 3);
    assert_eq!(db.count("accounts"), 1507);
}

// ---------------------------------------------------------------------------------------------
// 7. Backends terminated mid-purge
// ---------------------------------------------------------------------------------------------

#[test]
fn purge_survives_its_backends_being_terminated() {
    const ROWS: u64 = 100_000;
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 100);
    let generated = generate(&db, "gen.csv", ROWS, 31, "example.test");
    seed_ok(&db, &generated, &["--batch-size", "10000"]);
    let real = real_accounts(&db);
    assert_eq!(db.count("accounts"), ROWS as i64 + 100);

    let app = unique_name("purge_victim");
    // The setup (catalog, ledger, count) is not what is under test: start killing once the
    // run is recorded, i.e. once batches are about to flow.
    let killer = Killer::start(
        db.url().to_string(),
        &app,
        Duration::from_millis(200),
        |c| {
            c.query_one(
                "SELECT count(*) FROM provisioner.runs WHERE command = 'purge'",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
        },
    );
    let url = format!("{} application_name={app}", db.url());
    let run = run_bin(
        &[
            "purge",
            generated.to_str().unwrap(),
            "--database-url",
            &url,
            "--connections",
            "4",
            "--batch-size",
            "2000",
            "--yes",
            "--json",
        ],
        None,
    );
    let killed = killer.finish();
    run.expect_ok();
    assert!(
        killed > 0,
        "no backend was terminated while the purge ran: the test proves nothing\n{}",
        run.stderr
    );
    assert_eq!(text(&run, "status"), "completed");
    assert_eq!(run.figure("rows_read"), ROWS);
    assert_eq!(run.figure("rows_deleted"), ROWS);
    assert_eq!(run.figure("rows_missing"), 0);
    assert_eq!(run.figure("batches"), ROWS / 2000);
    assert!(
        run.figure("retries") > 0,
        "{killed} backends terminated but no retry:\n{}",
        run.stderr
    );
    assert_eq!(db.count("accounts"), 100);
    assert_eq!(real_accounts(&db), real);
    // Every batch committed exactly once, and the figures the ledger holds add up.
    let run_id = run.figure("run_id");
    let row = db
        .client()
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT seq), sum(deleted)::bigint, sum(missing)::bigint \
                 FROM provisioner.batches WHERE run_id = {run_id} AND committed_at IS NOT NULL"
            ),
            &[],
        )
        .unwrap();
    let figures: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(figures, (50, 50, ROWS as i64, 0));
    assert_eq!(
        db.scalar_text(&format!(
            "SELECT status FROM provisioner.runs WHERE id = {run_id}"
        ))
        .as_deref(),
        Some("completed")
    );
}

// ---------------------------------------------------------------------------------------------
// --lock-timeout
// ---------------------------------------------------------------------------------------------

/// Another session takes a row lock on the account with this external_id (SQL-quoted) and
/// holds it until told, then waits the given time and commits.
fn hold_lock(
    db: &TestDb,
    external_id: &str,
) -> (
    std::sync::mpsc::Sender<Duration>,
    std::thread::JoinHandle<()>,
) {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<Duration>();
    let mut holder = db.client();
    let sql = format!("SELECT 1 FROM accounts WHERE external_id = {external_id} FOR UPDATE");
    let handle = std::thread::spawn(move || {
        let mut tx = holder.transaction().unwrap();
        assert_eq!(tx.query(&sql, &[]).unwrap().len(), 1, "{sql}");
        locked_tx.send(()).unwrap();
        let after = release_rx.recv().unwrap_or_default();
        std::thread::sleep(after);
        tx.commit().unwrap();
    });
    locked_rx.recv().expect("the lock holder took its lock");
    (release_tx, handle)
}

#[test]
fn a_lock_held_elsewhere_times_out_then_resumes_or_is_retried() {
    let db = TestDb::with_accounts();
    insert_real_accounts(&db, 10);
    seed_ok(&db, &fixture_path(), &[]);
    let real = real_accounts(&db);
    let ids = fixture_ids();
    let f = fixture_path();
    let f = f.to_str().unwrap();
    let opts = [
        "--batch-size",
        "100",
        "--connections",
        "1",
        "--lock-timeout",
        "100",
    ];

    // Record 501 of the file is locked: batches 1-5 go, batch 6 gives up after
    // --lock-timeout (no retries) and the run fails, resumable.
    let (release, holder) = hold_lock(&db, &ids[500]);
    let started = std::time::Instant::now();
    let mut args = vec![f, "--max-retries", "0", "--json"];
    args.extend(opts);
    let run = purge(&db, &args);
    run.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--lock-timeout 100 took {:?}",
        started.elapsed()
    );
    assert!(run.stderr.contains("lock timeout"), "{}", run.stderr);
    assert!(text(&run, "error").contains("55P03"), "{}", run.stdout);
    assert_eq!(text(&run, "status"), "failed");
    assert_eq!(run.figure("rows_deleted"), 500);
    let failed_run = run.figure("run_id");
    assert_eq!(db.count("accounts"), 510);
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM accounts WHERE external_id IN {}",
            sql_list(&ids[500..])
        )),
        500,
        "the failed batch rolled back and no later batch ran"
    );
    release.send(Duration::ZERO).unwrap();
    holder.join().expect("lock holder");

    // --resume skips the five committed batches and deletes the rest.
    let mut args = vec![f, "--resume", "--json"];
    args.extend(opts);
    let run = purge(&db, &args);
    run.expect_ok();
    assert_eq!(run.figure("run_id"), failed_run);
    assert_eq!(run.figure("rows_resumed"), 500);
    assert_eq!(run.figure("rows_deleted"), 500);
    assert_eq!(run.figure("rows_missing"), 0);
    assert_eq!(db.count("accounts"), 10);
    assert_eq!(real_accounts(&db), real);

    // With retries, a lock timeout is replayed until the lock is gone.
    seed_ok(&db, &fixture_path(), &[]);
    let (release, holder) = hold_lock(&db, &ids[999]);
    let url = db.url().to_string();
    let file = f.to_string();
    let purging = std::thread::spawn(move || {
        run_bin(
            &[
                "purge",
                &file,
                "--database-url",
                &url,
                "--lock-timeout",
                "100",
                "--json",
            ],
            None,
        )
    });
    // Release the lock once the purge has been seen waiting for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    while db.scalar_i64(waiting) == 0 {
        assert!(
            std::time::Instant::now() < deadline && !purging.is_finished(),
            "the purge never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    release.send(Duration::from_millis(300)).unwrap();
    holder.join().expect("lock holder");
    let run = purging.join().expect("purge thread");
    run.expect_ok();
    assert!(run.figure("retries") > 0, "{}", run.stderr);
    assert_eq!(run.figure("rows_deleted"), 1000);
    assert_eq!(db.count("accounts"), 10);
    assert_eq!(real_accounts(&db), real);
}
