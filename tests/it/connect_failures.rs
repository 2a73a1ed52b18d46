//! Connecting fails fast and says what failed in one line: host, port, user, database (never
//! a password). A server that accepts the TCP connection and then says nothing is the worst
//! case: tokio-postgres's own timeout covers only the TCP connect, so `--connect-timeout`
//! must bound the whole start-up.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::tls::{error_line, run_with_env};
use crate::common::{Run, TestDb, fixture_path, path_str};

/// A TCP port that accepts connections and never answers: the start-up packet (or TLS
/// request) waits forever. Connections are held open until the value is dropped, which stops
/// the listener (the tests share one process: nothing may outlive its test).
struct SilentServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => held.push(stream),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        SilentServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A port of 127.0.0.1 nothing listens on, and no other test can start listening on while
/// the value lives: it is the local port of a connection the value holds open (bound without
/// `SO_REUSEADDR`, so neither a `bind` to port 0 nor one to that port gets it), and a
/// connection attempt to it is refused. A port merely found free and let go could be taken
/// by a server, proxy or PgBouncer another test starts meanwhile.
struct ClosedPort {
    port: u16,
    _held: (TcpListener, TcpStream, TcpStream),
}

impl ClosedPort {
    fn new() -> ClosedPort {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect to it");
        let (server, _) = listener.accept().expect("accept the connection");
        ClosedPort {
            port: client.local_addr().unwrap().port(),
            _held: (listener, client, server),
        }
    }
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
    let server = SilentServer::start();
    let port = server.port;
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
    let closed = ClosedPort::new();
    let port = closed.port;
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
    let server = SilentServer::start();
    let port = server.port;
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
