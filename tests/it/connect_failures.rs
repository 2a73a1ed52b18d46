//! Connecting fails fast and says what failed in one line: host, port, user, database (never
//! a password). A server that accepts the TCP connection and then says nothing is the worst
//! case: tokio-postgres's own timeout covers only the TCP connect, so `--connect-timeout`
//! must bound the whole start-up.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::tls::{error_line, run_with_env};
use crate::common::{Run, TestDb, fixture_path, path_str};

/// A TCP port that accepts connections and never answers: the start-up packet (or TLS
/// request) waits forever. Connections are held open until the process ends.
fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs `seed fixtures/accounts.csv --database-url <url> <extra…>` with `env`, returning the
/// run and how long it took.
fn seed(url: &str, extra: &[&str], env: &[(&str, &str)]) -> (Run, Duration) {
    let fixture = fixture_path();
    let mut args = vec!["seed", path_str(&fixture), "--database-url", url];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let run = run_with_env(&args, env);
    (run, started.elapsed())
}

#[test]
fn a_server_that_never_answers_fails_within_the_connect_timeout() {
    let port = silent_server();
    let url = format!("host=127.0.0.1 port={port} user=someone dbname=somedb password=pw-3c1d");
    let expected = format!(
        "error: could not connect to host=127.0.0.1 port={port} user=someone dbname=somedb: \
         no answer within 2 s (--connect-timeout)"
    );
    // The flag, the URL's connect_timeout and PGCONNECT_TIMEOUT all bound the whole start-up.
    for (what, url, extra, env) in [
        (
            "--connect-timeout",
            url.clone(),
            vec!["--connect-timeout", "2"],
            vec![],
        ),
        (
            "connect_timeout=",
            format!("{url} connect_timeout=2"),
            vec![],
            vec![],
        ),
        (
            "PGCONNECT_TIMEOUT",
            url.clone(),
            vec![],
            vec![("PGCONNECT_TIMEOUT", "2")],
        ),
        // The flag wins over the URL.
        (
            "flag over URL",
            format!("{url} connect_timeout=600"),
            vec!["--connect-timeout", "2"],
            vec![],
        ),
        // Without TLS the wait is for the login's reply, not the TLS answer: bounded too.
        (
            "sslmode=disable",
            format!("{url} sslmode=disable"),
            vec!["--connect-timeout", "2"],
            vec![],
        ),
    ] {
        let (run, took) = seed(&url, &extra, &env);
        assert_eq!(error_line(&run), expected, "stderr:\n{}", run.stderr);
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(10),
            "{what}: took {took:?}"
        );
        assert!(!run.stderr.contains("pw-3c1d"), "{}", run.stderr);
    }
    let started = Instant::now();
    let run = run_with_env(
        &["runs", "--connect-timeout", "2", "--database-url", &url],
        &[],
    );
    assert_eq!(error_line(&run), expected, "stderr:\n{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn refused_connections_and_unknown_databases_name_the_target_in_one_line() {
    let port = closed_port();
    let url = format!("postgres://someone:pw-9e2a@127.0.0.1:{port}/somedb");
    let (run, took) = seed(&url, &[], &[]);
    let line = error_line(&run);
    assert!(
        line.starts_with(&format!(
            "error: could not connect to host=127.0.0.1 port={port} user=someone dbname=somedb: "
        )) && line.contains("Connection refused"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("pw-9e2a"), "{}", run.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // A database that does not exist, on the real server.
    let db = TestDb::new();
    let missing = db.url().replace(db.name(), "prov_no_such_database");
    let (run, _) = seed(&missing, &[], &[]);
    let line = error_line(&run);
    assert!(
        line.contains("dbname=prov_no_such_database: database \"prov_no_such_database\" does not exist [SQLSTATE 3D000]"),
        "{}",
        run.stderr
    );
}

#[test]
fn impossible_settings_are_usage_errors_before_connecting() {
    let port = silent_server();
    for (url, message) in [
        (
            format!("host=localhost port={port} sslmode=verify-full"),
            "sslmode=verify-full needs a root certificate",
        ),
        (
            format!("host=localhost port={port} sslmode=require sslrootcert=/nonexistent/ca.crt"),
            "sslrootcert file /nonexistent/ca.crt does not exist",
        ),
        (
            format!("host=localhost port={port} sslmode=maybe"),
            "unknown sslmode \"maybe\"",
        ),
    ] {
        let (run, took) = seed(&url, &[], &[("HOME", "/nonexistent")]);
        run.expect_code(2);
        assert!(run.stderr.contains(message), "{url}:\n{}", run.stderr);
        assert!(took < Duration::from_secs(5), "{url}: took {took:?}");
    }
}
