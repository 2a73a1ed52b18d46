//! Passwords: read from the URL, PGPASSWORD or the password file, and never shown. Every
//! subcommand that connects runs with a distinctive password, at the most verbose log
//! level, with `--json`, succeeding and failing (wrong password, nobody listening, missing
//! table); its stdout, stderr, the ledger's rows and what `runs` prints must not hold the
//! password in any spelling.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::cluster::Cluster;
use crate::common::tls::{Pki, accounts_in, run_with_env, scram_cluster};
use crate::common::{Run, fixture_path, fixture_records, path_str};

/// The role's password: a colon and an at sign (escaped in the password file, encoded in a
/// URL) and a space (quoted in conninfo).
const PASSWORD: &str = "Pw-leak:7f3b9c @canary";
/// The password as a URL carries it.
const PASSWORD_IN_URL: &str = "Pw-leak%3A7f3b9c%20%40canary";
/// Any of these in any output is a leak; the middle part catches a password cut in pieces.
const SPELLINGS: [&str; 4] = [PASSWORD, PASSWORD_IN_URL, "7f3b9c", "canary"];
const USER: &str = "leaker";
/// A role whose password is not [`PASSWORD`]: logging in with it fails.
const OTHER_USER: &str = "notleaker";

/// A private cluster where everyone but `postgres` logs in over TCP with scram-sha-256, and
/// [`USER`] (password [`PASSWORD`]) and [`OTHER_USER`] may seed and purge.
fn password_cluster() -> Cluster {
    let cluster = scram_cluster();
    let mut admin = cluster.client("postgres");
    let quoted = PASSWORD.replace('\'', "''");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {USER} LOGIN SUPERUSER PASSWORD '{quoted}'; \
             CREATE ROLE {OTHER_USER} LOGIN SUPERUSER PASSWORD 'something-else'"
        ))
        .expect("create the password roles");
    cluster
}

/// A password file holding `line`, with `mode`.
fn passfile(dir: &Path, name: &str, line: &str, mode: u32) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, format!("# test entries\n{line}\n")).expect("write the password file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    file
}

/// One way of handing the password over: the connection string and extra environment.
struct Source {
    name: &'static str,
    url: String,
    env: Vec<(String, String)>,
}

/// The four ways of giving [`PASSWORD`] to `user` of `db` at `port`: in a URL, in conninfo,
/// as PGPASSWORD, in a password file (written to `dir`).
fn sources(port: u16, db: &str, user: &str, dir: &Path) -> [Source; 4] {
    let conninfo = format!("host=127.0.0.1 port={port} user={user} dbname={db}");
    let line = format!(
        "127.0.0.1:{port}:{db}:{user}:{}",
        PASSWORD.replace(':', "\\:")
    );
    let file = passfile(dir, &format!("pgpass_{user}_{port}_{db}"), &line, 0o600);
    [
        Source {
            name: "URL",
            url: format!("postgres://{user}:{PASSWORD_IN_URL}@127.0.0.1:{port}/{db}"),
            env: vec![],
        },
        Source {
            name: "conninfo",
            url: format!("{conninfo} password='{PASSWORD}'"),
            env: vec![],
        },
        Source {
            name: "PGPASSWORD",
            url: conninfo.clone(),
            env: vec![("PGPASSWORD".into(), PASSWORD.into())],
        },
        Source {
            name: "PGPASSFILE",
            url: conninfo,
            env: vec![("PGPASSFILE".into(), path_str(&file).into())],
        },
    ]
}

/// Runs the binary with `args` after `--database-url <source's URL>`, at the most verbose
/// level, and fails the test if the password shows in its output.
#[track_caller]
fn run_checked(source: &Source, home: &Path, args: &[&str]) -> Run {
    let mut all: Vec<&str> = vec!["-vv"];
    all.extend_from_slice(args);
    all.extend(["--database-url", &source.url]);
    let mut env: Vec<(&str, &str)> = vec![("HOME", path_str(home)), ("PROVISIONER_LOG", "trace")];
    env.extend(source.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let run = run_with_env(&all, &env);
    assert_no_password(
        &format!("{} via {}", args.join(" "), source.name),
        &format!("{}\n{}", run.stdout, run.stderr),
    );
    run
}

#[track_caller]
fn assert_no_password(what: &str, text: &str) {
    for spelling in SPELLINGS {
        assert!(
            !text.contains(spelling),
            "{what}: the password ({spelling:?}) appears in:\n{text}"
        );
    }
}

#[test]
fn no_subcommand_shows_the_password_at_any_log_level_in_success_or_failure() {
    let pki = Pki::new("secrets");
    let home = pki.home();
    let cluster = password_cluster();
    let fixture = path_str(&fixture_path()).to_string();
    let rows = fixture_records().len() as i64;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for i in 0..4 {
        let db = format!("leak_{i}");
        cluster.create_database_with_accounts(&db);
        let dir = pki.path("");
        let source = &sources(cluster.port(), &db, USER, &dir)[i];
        let unreachable = &sources(closed_port, &db, USER, &dir)[i];
        let wrong = &sources(cluster.port(), &db, OTHER_USER, &dir)[i];

        // Success: seed (watching itself as the "replica", whose URL holds the password
        // too), the ledger listed and shown, the run purged.
        let seed = run_checked(
            source,
            &home,
            &[
                "seed",
                &fixture,
                "--json",
                "--max-replica-lag",
                "60",
                "--replica-url",
                &source.url,
            ],
        );
        seed.expect_ok();
        assert!(
            seed.stderr.contains("DEBUG") || seed.stderr.contains("TRACE"),
            "{}: not the most verbose log level:\n{}",
            source.name,
            seed.stderr
        );
        let run_id = seed.json()["run_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("run_id in {}", seed.stdout));
        assert_eq!(
            accounts_in(&cluster, &db),
            rows,
            "{}: seeded rows",
            source.name
        );
        run_checked(source, &home, &["runs"]).expect_ok();
        run_checked(source, &home, &["runs", "--json"]).expect_ok();
        let id = run_id.to_string();
        run_checked(source, &home, &["runs", "show", &id]).expect_ok();
        run_checked(source, &home, &["runs", "show", &id, "--json"]).expect_ok();
        // A run that fails on its data is recorded with its error and a resume command.
        let again = run_checked(source, &home, &["seed", &fixture, "--json"]);
        again.expect_code(1);
        let failed = again.json()["run_id"]
            .as_i64()
            .expect("the failed run's id");
        let failed = failed.to_string();
        let shown = run_checked(source, &home, &["runs", "show", &failed]);
        assert!(
            shown.stdout.contains("--database-url"),
            "{}: runs show prints the command line:\n{}",
            source.name,
            shown.stdout
        );
        run_checked(source, &home, &["purge", "--run", &id, "--yes", "--json"]).expect_ok();
        assert_eq!(
            accounts_in(&cluster, &db),
            0,
            "{}: purged rows",
            source.name
        );

        // Failures: a missing table, nobody listening, the password of another role.
        let missing = run_checked(
            source,
            &home,
            &["seed", &fixture, "--table", "nosuch", "--json"],
        );
        assert_ne!(
            missing.code, 0,
            "{}: seed into a missing table",
            source.name
        );
        run_checked(
            source,
            &home,
            &["purge", "--where", "true", "--table", "nosuch", "--yes"],
        );
        let refused = run_checked(unreachable, &home, &["seed", &fixture, "--json"]);
        refused.expect_code(1);
        assert!(
            refused.stderr.contains("could not connect"),
            "{}",
            refused.stderr
        );
        run_checked(unreachable, &home, &["runs"]).expect_code(1);
        for args in [
            vec!["seed", fixture.as_str(), "--json"],
            vec!["purge", "--run", &id, "--yes", "--json"],
            vec!["runs", "--json"],
            vec!["runs", "show", &id],
        ] {
            let run = run_checked(wrong, &home, &args);
            run.expect_code(1);
            assert!(
                run.stderr.contains("password authentication failed"),
                "{}: {args:?}:\n{}",
                source.name,
                run.stderr
            );
        }

        // What the ledger keeps: every column of every run and batch.
        let mut client = cluster.client(&db);
        for table in ["runs", "batches"] {
            let dump: Vec<String> = client
                .query(
                    &format!("SELECT row_to_json(t)::text FROM provisioner.{table} t"),
                    &[],
                )
                .unwrap_or_else(|e| panic!("read the ledger's {table}: {e}"))
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(
                !dump.is_empty(),
                "{}: the ledger's {table} is empty",
                source.name
            );
            assert_no_password(
                &format!("{}: the ledger's {table}", source.name),
                &dump.join("\n"),
            );
        }
    }
}

#[test]
fn the_password_file_logs_in_only_when_private() {
    let pki = Pki::new("pgpass");
    let home = pki.home();
    let cluster = password_cluster();
    cluster.create_database_with_accounts("pgpass");
    let url = format!(
        "host=127.0.0.1 port={} user={USER} dbname=pgpass",
        cluster.port()
    );
    let line = format!(
        "localhost:*:*:*:wrong\n127.0.0.1:{}:pgpass:{USER}:{}\n*:*:*:*:wrong",
        cluster.port(),
        PASSWORD.replace(':', "\\:")
    );
    let fixture = path_str(&fixture_path()).to_string();
    let seed = |file: &Path| {
        run_with_env(
            &["seed", &fixture, "--database-url", &url],
            &[("HOME", path_str(&home)), ("PGPASSFILE", path_str(file))],
        )
    };

    // Readable by its owner only: the first matching line logs in.
    let private = passfile(&pki.path(""), "private", &line, 0o600);
    seed(&private).expect_ok();
    let rows = fixture_records().len() as i64;
    assert_eq!(accounts_in(&cluster, "pgpass"), rows);

    // Readable by the group: ignored with libpq's warning; the login then fails clearly.
    let shared = passfile(&pki.path(""), "shared", &line, 0o640);
    let run = seed(&shared);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less",
            shared.display()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "error: could not connect to host=127.0.0.1 port={} user={USER} dbname=pgpass: \
             the server asks for a password and none was given",
            cluster.port()
        )),
        "{}",
        run.stderr
    );

    // ~/.pgpass is the default.
    cluster.create_database_with_accounts("home_pgpass");
    passfile(
        &home,
        ".pgpass",
        &format!(
            "127.0.0.1:*:home_pgpass:{USER}:{}",
            PASSWORD.replace(':', "\\:")
        ),
        0o600,
    );
    let home_url = url.replace("dbname=pgpass", "dbname=home_pgpass");
    run_with_env(
        &["seed", &fixture, "--database-url", &home_url],
        &[("HOME", path_str(&home))],
    )
    .expect_ok();
    assert_eq!(accounts_in(&cluster, "home_pgpass"), rows);
}
