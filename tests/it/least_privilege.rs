//! Least privilege: a role holding only the GRANTs of docs/connecting.md seeds and purges
//! with exact counts, and a role missing any one of them is refused before anything moves
//! (exit 2, the privilege named, no row written to the table or the ledger).
//!
//! Roles are cluster-wide: each test makes its own, uniquely named, and drops it in a guard
//! (after DROP OWNED BY in the test's database), panics included. Trust authentication on
//! 127.0.0.1 lets the tests connect as any role.

use std::time::Duration;

use crate::common::*;

const LONG: Duration = Duration::from_secs(120);

/// A login role for one test; dropped with everything it owns or was granted in `db`.
struct Role {
    name: String,
    admin_url: String,
    url: String,
}

impl Role {
    fn new(db: &TestDb, tag: &str) -> Role {
        let name = unique_name(&format!("prov_{tag}"));
        db.execute(&format!("CREATE ROLE {name} LOGIN"));
        let addr = server_tcp_addr();
        Role {
            url: format!(
                "host={} port={} user={name} dbname={}",
                addr.ip(),
                addr.port(),
                db.name()
            ),
            admin_url: db.url().to_string(),
            name,
        }
    }

    /// Runs `sql` as the admin, `{role}` standing for this role.
    fn admin(&self, sql: &str) {
        let sql = sql.replace("{role}", &self.name);
        let mut client = postgres::Client::connect(&self.admin_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect as admin: {e}"));
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--database-url", &self.url]);
        run_bin_bounded(&all, LONG)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let name = &self.name;
        let dropped = postgres::Client::connect(&self.admin_url, postgres::NoTls)
            .and_then(|mut c| c.batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}")));
        match dropped {
            Ok(()) => {}
            Err(e) if std::thread::panicking() => eprintln!("DROP ROLE {name}: {e}"),
            Err(e) => panic!("DROP ROLE {name}: {e}"),
        }
    }
}

/// The least-privilege GRANTs on the ledger, as docs/connecting.md gives them.
const LEDGER_GRANTS: &str = "GRANT USAGE ON SCHEMA provisioner TO {role}; \
     GRANT SELECT ON provisioner.migrations TO {role}; \
     GRANT SELECT, INSERT, UPDATE ON provisioner.runs, provisioner.batches TO {role}; \
     GRANT SELECT, INSERT ON provisioner.inserted_keys, provisioner.rejected_rows TO {role};";

/// A database with `accounts` and a current ledger, created by the admin.
fn prepared_db() -> TestDb {
    let db = TestDb::with_accounts();
    run_bin_bounded(&["runs", "--database-url", db.url()], LONG).expect_ok();
    db
}

fn ledger_runs(db: &TestDb) -> i64 {
    db.scalar_i64("SELECT count(*) FROM provisioner.runs")
}

/// Exit 2, `missing` named, and nothing written: `accounts` still holds `rows`, the ledger
/// no new run.
#[track_caller]
fn expect_refused(db: &TestDb, run: &Run, missing: &str, rows: i64, runs: i64) {
    run.expect_code(2);
    assert!(
        run.stderr.contains(missing),
        "the refusal does not name {missing:?}:\n{}",
        run.stderr
    );
    assert_eq!(
        db.count("accounts"),
        rows,
        "rows written despite the refusal"
    );
    assert_eq!(ledger_runs(db), runs, "a run recorded despite the refusal");
}

#[test]
fn seed_needs_only_insert_select_and_the_ledger_grants_and_names_what_is_missing() {
    let db = prepared_db();
    let role = Role::new(&db, "seed");
    let fixture = fixture_path();
    let f = path_str(&fixture);
    let r = &role.name;

    // Each missing privilege, alone (everything else granted), on an empty table.
    let cases = [
        ("USAGE ON SCHEMA provisioner", "USAGE on schema provisioner"),
        ("INSERT ON accounts", "INSERT on table public.accounts"),
        (
            "INSERT ON provisioner.batches",
            "INSERT on table provisioner.batches",
        ),
        (
            "UPDATE ON provisioner.runs",
            "UPDATE on table provisioner.runs",
        ),
        (
            "SELECT ON provisioner.migrations",
            "SELECT on table provisioner.migrations",
        ),
        (
            "INSERT ON provisioner.inserted_keys",
            "INSERT on table provisioner.inserted_keys",
        ),
        (
            "INSERT ON provisioner.rejected_rows",
            "INSERT on table provisioner.rejected_rows",
        ),
    ];
    // A refused run leaves an earlier rejects file as it was.
    let rejects = db.write("rejects.csv", "an earlier run's rejects\n");
    for (revoked, missing) in cases {
        role.admin(&format!(
            "GRANT INSERT ON accounts TO {{role}}; {LEDGER_GRANTS} REVOKE {revoked} FROM {{role}};"
        ));
        let run = role.run(&["seed", f, "--json", "--rejects", path_str(&rejects)]);
        expect_refused(&db, &run, &format!("role {r} lacks {missing}"), 0, 0);
        assert_eq!(
            std::fs::read_to_string(&rejects).unwrap(),
            "an earlier run's rejects\n",
            "without {missing}"
        );
    }
    role.admin(&format!(
        "GRANT INSERT ON accounts TO {{role}}; {LEDGER_GRANTS}"
    ));

    // INSERT on the table and the ledger grants: a direct COPY works.
    let run = role.run(&[
        "seed",
        f,
        "--json",
        "--connections",
        "3",
        "--batch-size",
        "100",
    ]);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 1000);
    assert_accounts_equal_csv(db.url(), &fixture, 1000);

    // A staged merge reads the table too, and update overwrites it.
    let run = role.run(&["seed", f, "--on-conflict", "skip"]);
    expect_refused(
        &db,
        &run,
        &format!(
            "role {r} lacks SELECT on table public.accounts: GRANT SELECT ON \"public\".\"accounts\" TO \"{r}\""
        ),
        1000,
        1,
    );
    role.admin("GRANT SELECT ON accounts TO {role}");
    let run = role.run(&["seed", f, "--on-conflict", "skip", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_skipped"), 1000);
    let run = role.run(&["seed", f, "--on-conflict", "update"]);
    expect_refused(
        &db,
        &run,
        &format!("role {r} lacks UPDATE on table public.accounts"),
        1000,
        2,
    );
    // UPDATE on just the columns it overwrites is enough; with some of them granted, the
    // refusal names the others and the column GRANT that completes the set.
    let updated: Vec<&str> = ACCOUNT_COLUMNS
        .iter()
        .copied()
        .filter(|c| *c != "external_id")
        .collect();
    let (first, rest) = updated.split_at(2);
    role.admin(&format!(
        "GRANT UPDATE ({}) ON accounts TO {{role}}",
        first.join(", ")
    ));
    let run = role.run(&["seed", f, "--on-conflict", "update"]);
    let quoted: Vec<String> = rest.iter().map(|c| format!("\"{c}\"")).collect();
    let grant = format!(
        "GRANT UPDATE ({}) ON \"public\".\"accounts\" TO \"{r}\"",
        quoted.join(", ")
    );
    expect_refused(&db, &run, &grant, 1000, 2);
    assert!(
        run.stderr
            .contains(&format!("(columns {})", quoted.join(", "))),
        "{}",
        run.stderr
    );
    role.admin(&grant);
    let run = role.run(&["seed", f, "--on-conflict", "update", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_updated"), 1000);
    assert_accounts_equal_csv(db.url(), &fixture, 1000);

    // The role can read the ledger it writes.
    role.run(&["runs"]).expect_ok();
}

#[test]
fn purge_needs_only_select_delete_and_the_ledger_grants_and_cascade_needs_the_children() {
    let db = prepared_db();
    let role = Role::new(&db, "purge");
    let fixture = fixture_path();
    let f = path_str(&fixture);
    let r = &role.name;
    run_bin_bounded(&["seed", f, "--database-url", db.url()], LONG).expect_ok();
    db.execute(
        "CREATE TABLE notes (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts (id)); \
         CREATE INDEX ON notes (account_id); \
         INSERT INTO notes SELECT id, id FROM accounts WHERE id % 10 = 0",
    );
    role.admin(&format!(
        "{LEDGER_GRANTS} GRANT SELECT ON accounts TO {{role}};"
    ));

    // A dry run only reads.
    let run = role.run(&["purge", f, "--dry-run", "--cascade", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 1000);

    let run = role.run(&["purge", f, "--yes", "--cascade"]);
    expect_refused(
        &db,
        &run,
        &format!("role {r} lacks DELETE on table public.accounts"),
        1000,
        1,
    );
    role.admin("GRANT DELETE ON accounts TO {role}");
    let run = role.run(&["purge", f, "--yes", "--cascade"]);
    expect_refused(
        &db,
        &run,
        &format!("role {r} lacks SELECT on table public.notes"),
        1000,
        1,
    );
    assert!(
        run.stderr
            .contains(&format!("role {r} lacks DELETE on table public.notes"))
    );
    assert_eq!(db.count("notes"), 100);
    role.admin("GRANT SELECT, DELETE ON notes TO {role}");
    let run = role.run(&[
        "purge",
        f,
        "--yes",
        "--cascade",
        "--json",
        "--batch-size",
        "100",
    ]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 1000);
    assert_eq!((db.count("accounts"), db.count("notes")), (0, 0));

    // Exactly what a seed run inserted, by the keys it recorded (SELECT on inserted_keys).
    let seeded = run_bin_bounded(&["seed", f, "--database-url", db.url(), "--json"], LONG);
    seeded.expect_ok();
    let id = seeded.figure("run_id").to_string();
    let run = role.run(&["purge", "--run", &id, "--yes", "--cascade", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_deleted"), 1000);
    assert_eq!(db.count("accounts"), 0);
}

#[test]
fn a_missing_ledger_needs_create_on_the_database_and_the_example_table_on_the_schema() {
    let db = TestDb::new();
    let role = Role::new(&db, "ddl");
    let fixture = fixture_path();
    let f = path_str(&fixture);
    let r = &role.name;
    let db_name = db.name();

    let run = role.run(&["seed", f, "--create-example-table"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains(&format!("role {r} lacks CREATE on schema public")),
        "{}",
        run.stderr
    );
    db.create_accounts();
    role.admin("GRANT INSERT ON accounts TO {role}");
    let run = role.run(&["seed", f]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains(&format!("role {r} lacks CREATE on database {db_name}")),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("accounts"), 0);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'provisioner'"),
        0,
        "the ledger schema was created anyway"
    );

    // Without the ledger, INSERT is all a seed needs.
    let run = role.run(&["seed", f, "--no-ledger", "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 1000);
    db.execute("TRUNCATE accounts");

    // With CREATE on the database, the role sets the ledger up itself, once.
    role.admin(&format!(
        "GRANT CREATE ON DATABASE \"{db_name}\" TO {{role}}"
    ));
    let run = role.run(&["seed", f, "--json"]);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 1000);
    assert_accounts_equal_csv(db.url(), &fixture, 1000);
    assert_eq!(ledger_runs(&db), 1);
}

/// `--max-replica-lag` watching the primary reads `pg_stat_replication`, which hides the
/// standbys' lag from a role without `pg_read_all_stats`: such a run would never pause, so it
/// is refused before anything moves, naming the grant.
#[test]
fn max_replica_lag_on_the_primary_needs_pg_read_all_stats() {
    let db = prepared_db();
    let role = Role::new(&db, "lag");
    role.admin(&format!(
        "GRANT INSERT ON accounts TO {{role}}; {LEDGER_GRANTS}"
    ));
    let fixture = fixture_path();
    let args = [
        "seed",
        path_str(&fixture),
        "--max-replica-lag",
        "5",
        "--json",
    ];
    let run = role.run(&args);
    expect_refused(&db, &run, "GRANT \"pg_read_all_stats\" TO", 0, 0);
    assert!(
        run.stderr.contains("is not a member of pg_read_all_stats"),
        "{}",
        run.stderr
    );

    role.admin("GRANT pg_read_all_stats TO {role}");
    let run = role.run(&args);
    run.expect_ok();
    assert_eq!(run.figure("rows_inserted"), 1000);
    assert_eq!(db.count("accounts"), 1000);
}

/// Every privilege a run needs is checked in one call: a role that lacks several (on the
/// table, on the ledger, and the role `--max-replica-lag` needs) hears of all of them in one
/// refusal, not one run at a time.
#[test]
fn a_role_missing_several_grants_hears_of_all_of_them_at_once() {
    let db = prepared_db();
    let role = Role::new(&db, "many");
    role.admin(
        "GRANT USAGE ON SCHEMA provisioner TO {role}; \
         GRANT SELECT ON provisioner.migrations TO {role};",
    );
    let fixture = fixture_path();
    let run = role.run(&["seed", path_str(&fixture), "--max-replica-lag", "5"]);
    let r = &role.name;
    for missing in [
        format!("role {r} lacks INSERT on table public.accounts"),
        format!("role {r} lacks INSERT on table provisioner.runs"),
        format!("role {r} lacks UPDATE on table provisioner.batches"),
        format!("role {r} lacks SELECT on table provisioner.inserted_keys"),
        format!("role {r} is not a member of pg_read_all_stats"),
    ] {
        expect_refused(&db, &run, &missing, 0, 0);
    }
    assert_eq!(
        run.stderr
            .matches("Nothing was written or deleted.")
            .count(),
        1,
        "one refusal:\n{}",
        run.stderr
    );
}
