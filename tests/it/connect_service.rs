//! The connection service file (`pg_service.conf`), with psql as the oracle: for each way of
//! naming a service (`service=` in conninfo or a URL, `PGSERVICE`) and each clash of settings
//! (the string's own, the service's, the environment's), psql's `current_database()` says
//! where libpq goes, and the rows `provisioner seed` loads must land in that database and no
//! other. Errors (an unknown service, a syntax error) exit 2 with libpq's words. The service
//! files live in the test's scratch directory, and `PGSERVICEFILE` and `PGSYSCONFDIR` point at
//! them for both programs; the harness clears every other `PG*` variable.

use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;

use crate::common::tls::{error_line, run_with_env, scram_cluster};
use crate::common::{Run, TestDb, hosts_of, path_str};

/// A service section that reaches `db` as its conninfo does, with `extra` lines.
fn section(name: &str, db: &TestDb, extra: &[&str]) -> String {
    let cfg = tokio_postgres::Config::from_str(db.url()).expect("parse the test conninfo");
    let hosts = hosts_of(&cfg);
    let mut out = format!("[{name}]\nhost={}\n", hosts.join(","));
    // Always a port (5432 when the conninfo has none, as both default to): a PGPORT must not
    // fill it in.
    let ports: Vec<String> = cfg.get_ports().iter().map(u16::to_string).collect();
    let ports = if ports.is_empty() {
        "5432".to_string()
    } else {
        ports.join(",")
    };
    out.push_str(&format!("port={ports}\n"));
    out.push_str(&format!(
        "user={}\ndbname={}\n",
        cfg.get_user().expect("the test conninfo names a user"),
        db.name()
    ));
    if let Some(pw) = cfg.get_password() {
        out.push_str(&format!("password={}\n", String::from_utf8_lossy(pw)));
    }
    for line in extra {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// psql's `current_database()` with `conninfo` (none: psql's defaults, which `PGSERVICE` may
/// fill) and the variables `env`, or psql's error output.
fn psql_database(conninfo: Option<&str>, env: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = Command::new("psql");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("PG") || key == "DATABASE_URL" {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().copied())
        .args(["-X", "-At", "-c", "SELECT current_database()"])
        .stdin(Stdio::null());
    if let Some(conninfo) = conninfo {
        cmd.args(["-d", conninfo]);
    }
    let out = cmd.output().expect("run psql (is it on PATH?)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `provisioner seed <csv> --table hits [--database-url <url>]` with `env`.
fn seed(csv: &Path, url: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut args = vec!["seed", path_str(csv), "--table", "hits"];
    if let Some(url) = url {
        args.extend(["--database-url", url]);
    }
    run_with_env(&args, env)
}

/// Asserts that psql reaches `want` with `url` and `env`, and that seed's rows land there,
/// in none of the other `dbs`; empties `hits` again.
#[track_caller]
fn assert_reaches(
    what: &str,
    dbs: &[&TestDb],
    csv: &Path,
    (url, env): (Option<&str>, &[(&str, &str)]),
    want: &TestDb,
) {
    let oracle = psql_database(url, env).unwrap_or_else(|e| panic!("{what}: psql failed: {e}"));
    assert_eq!(oracle, want.name(), "{what}: the database psql reaches");
    seed(csv, url, env).expect_ok();
    let counts: Vec<(&str, i64)> = dbs.iter().map(|d| (d.name(), d.count("hits"))).collect();
    let expected: Vec<(&str, i64)> = dbs
        .iter()
        .map(|d| (d.name(), if d.name() == oracle { 2 } else { 0 }))
        .collect();
    assert_eq!(counts, expected, "{what}: where seed's rows landed");
    for db in dbs {
        db.execute("TRUNCATE hits");
    }
}

#[test]
fn seed_reaches_the_database_psql_reaches_through_a_service() {
    let a = TestDb::new();
    let b = TestDb::new();
    for db in [&a, &b] {
        db.execute("CREATE TABLE hits (id int PRIMARY KEY, note text)");
    }
    let dbs = [&a, &b];
    let csv = a.write("hits.csv", "id,note\n1,one\n2,two\n");
    let user_file = a.write(
        "services.conf",
        format!(
            "# two services\n\n{}\n  {}",
            section("svc_a", &a, &["sslmode=disable"]),
            section("svc_b", &b, &["sslmode=prefer"])
        ),
    );
    // The system-wide file: read only for a service the user file does not define.
    a.write(
        "pg_service.conf",
        format!(
            "{}{}",
            section("svc_a", &b, &[]),
            section("svc_system", &b, &[])
        ),
    );
    let sysconfdir = a.path("");
    let files = [
        ("PGSERVICEFILE", path_str(&user_file)),
        ("PGSYSCONFDIR", path_str(&sysconfdir)),
    ];
    let with = |more: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = files.to_vec();
        env.extend_from_slice(more);
        env
    };
    let a_name = format!("dbname={}", a.name());
    let b_name = format!("service=svc_a dbname={}", b.name());
    let b_uri = format!("postgresql:///{}?service=svc_a", b.name());

    let plain = with(&[]);
    for (what, url, want) in [
        ("service=svc_a", "service=svc_a", &a),
        ("service=svc_b", "service=svc_b", &b),
        // svc_a of the system file (database b) is never read: the user file has svc_a.
        ("the system file", "service=svc_system", &b),
        // The connection string's own dbname wins over the service's.
        ("dbname beats svc_a's", b_name.as_str(), &b),
        ("a URI's database beats svc_a's", b_uri.as_str(), &b),
    ] {
        assert_reaches(what, &dbs, &csv, (Some(url), &plain), want);
    }

    let pgservice_b = with(&[("PGSERVICE", "svc_b")]);
    assert_reaches("PGSERVICE", &dbs, &csv, (None, &pgservice_b), &b);
    let url = Some("service=svc_a");
    assert_reaches(
        "service= beats PGSERVICE",
        &dbs,
        &csv,
        (url, &pgservice_b),
        &a,
    );
    let url = Some(a_name.as_str());
    assert_reaches(
        "dbname beats PGSERVICE's",
        &dbs,
        &csv,
        (url, &pgservice_b),
        &a,
    );

    // The service's settings beat the environment's: were any of these used, the connection
    // would go elsewhere or fail (verify-full has no root certificate to verify with).
    let b_database = b.name().to_string();
    let mut environment = with(&[
        ("PGHOST", "/nonexistent/socket/dir"),
        ("PGPORT", "1"),
        ("PGUSER", "no_such_role_svc"),
        ("PGSSLMODE", "verify-full"),
    ]);
    environment.push(("PGDATABASE", &b_database));
    let url = Some("service=svc_a");
    assert_reaches("the service beats PG*", &dbs, &csv, (url, &environment), &a);
}

#[test]
fn an_unknown_service_or_a_bad_line_is_a_usage_error_in_libpqs_words() {
    let db = TestDb::new();
    let csv = db.write("hits.csv", "id,note\n1,one\n");
    let file = db.write(
        "services.conf",
        "[known]\nhost=/nonexistent\n\n[broken]\nhost=/nonexistent\nnot a setting\n\
         [nested]\nservice=known\n",
    );
    let sysconfdir = db.path("");
    let env = [
        ("PGSERVICEFILE", path_str(&file)),
        ("PGSYSCONFDIR", path_str(&sysconfdir)),
    ];
    let with_pgservice = [env[0], env[1], ("PGSERVICE", "nope")];
    let file_name = path_str(&file);
    for (what, url, env, message) in [
        (
            "service=",
            Some("service=nope"),
            &env[..],
            "definition of service \"nope\" not found".to_string(),
        ),
        (
            "PGSERVICE",
            None,
            &with_pgservice[..],
            "definition of service \"nope\" not found".to_string(),
        ),
        (
            "a syntax error",
            Some("service=broken"),
            &env[..],
            format!("syntax error in service file \"{file_name}\", line 6"),
        ),
        (
            "a nested service",
            Some("service=nested"),
            &env[..],
            format!(
                "nested service specifications not supported in service file \
                 \"{file_name}\", line 8"
            ),
        ),
    ] {
        let psql = psql_database(url, env).expect_err("psql fails too");
        assert!(psql.contains(&message), "{what}: psql says:\n{psql}");
        let run = seed(&csv, url, env);
        run.expect_code(2);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(
            errors,
            [format!("error: {message}")],
            "{what}:\n{}",
            run.stderr
        );
    }
}

/// The service's password is the one used (PGPASSWORD, wrong, loses), and it shows in no
/// output, at the most verbose log level, whether the run succeeds or fails.
#[test]
fn the_services_password_is_used_and_never_shown() {
    const PASSWORD: &str = "svc-pw-4e1a9d";
    let cluster = scram_cluster();
    let mut admin = cluster.client("postgres");
    for sql in [
        format!("CREATE ROLE svc_login LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
        "CREATE DATABASE svc_target OWNER svc_login".to_string(),
    ] {
        admin
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    cluster
        .client("svc_target")
        .batch_execute("CREATE TABLE hits (id int PRIMARY KEY, note text)")
        .expect("create hits");
    let scratch = TestDb::new();
    let csv = scratch.write("hits.csv", "id,note\n1,one\n2,two\n");
    let port = cluster.port();
    let file = scratch.write(
        "services.conf",
        format!(
            "[login]\nhost=127.0.0.1\nport={port}\nuser=svc_login\ndbname=svc_target\n\
             password={PASSWORD}\n\
             [bad]\nhost=127.0.0.1\nport=not-a-port\npassword={PASSWORD}\n"
        ),
    );
    let sysconfdir = scratch.path("");
    let env = [
        ("PGSERVICEFILE", path_str(&file)),
        ("PGSYSCONFDIR", path_str(&sysconfdir)),
        ("PGPASSWORD", "wrong-password"),
        ("PROVISIONER_LOG", "trace"),
    ];
    let shows = |run: &Run| format!("{}{}", run.stdout, run.stderr).contains(PASSWORD);

    assert_eq!(
        psql_database(Some("service=login"), &env).as_deref(),
        Ok("svc_target")
    );
    let run = seed(&csv, Some("service=login"), &env);
    run.expect_ok();
    assert!(!shows(&run), "the password shows:\n{}", run.stderr);
    let rows: i64 = cluster
        .client("svc_target")
        .query_one("SELECT count(*) FROM hits", &[])
        .expect("count hits")
        .get(0);
    assert_eq!(rows, 2);

    // PGPASSWORD is wrong: a password from the environment would have failed above; here the
    // failures are the database's (exit 1) and the service's port (exit 2).
    let run = seed(&csv, Some("service=login dbname=no_such_db"), &env);
    let line = error_line(&run);
    assert!(line.contains("no_such_db"), "{line}");
    assert!(!shows(&run), "the password shows:\n{}", run.stderr);
    let run = seed(&csv, Some("service=bad"), &env);
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!(
            "error: service file \"{}\", line 9: invalid connection string: invalid value for \
             option `port`",
            path_str(&file)
        )),
        "{}",
        run.stderr
    );
    assert!(!shows(&run), "the password shows:\n{}", run.stderr);
}
