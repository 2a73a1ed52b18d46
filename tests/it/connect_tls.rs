//! TLS against private clusters with `ssl = on` and a certificate for `localhost` signed by a
//! CA made for the test: each `sslmode` connects, or refuses, for the reason libpq would, and
//! a connection that should be encrypted really is (the server says so).

use std::path::Path;

use crate::common::cluster::{Cluster, SUPERUSER};
use crate::common::tls::{
    CERT_USER, Pki, SCRAM_PASSWORD, SCRAM_USER, accounts_in, error_line, run_with_env, ssl_cluster,
};
use crate::common::{Run, fixture_path, fixture_records, path_str};

/// `host=<host> port=… user=<user> dbname=<db> application_name=<app> <extra>`.
fn url(cluster: &Cluster, host: &str, user: &str, db: &str, app: &str, extra: &str) -> String {
    format!(
        "host={host} port={} user={user} dbname={db} application_name={app} {extra}",
        cluster.port()
    )
}

/// `seed fixtures/accounts.csv --database-url <url>` with `HOME` set to `home`.
fn seed(url: &str, home: &Path) -> Run {
    run_with_env(
        &["seed", path_str(&fixture_path()), "--database-url", url],
        &[("HOME", path_str(home))],
    )
}

/// Whether the server logged `app`'s connection as encrypted (`log_connections`).
fn logged_with_tls(cluster: &Cluster, app: &str) -> bool {
    cluster
        .server_log()
        .lines()
        .any(|l| l.contains(&format!("application_name={app}")) && l.contains("SSL enabled"))
}

#[test]
fn verify_full_needs_the_right_ca_and_host_name_and_verify_ca_only_the_ca() {
    let pki = Pki::new("right");
    let other = Pki::new("other");
    let home = pki.home();
    let cluster = ssl_cluster(&pki);
    let rows = fixture_records().len() as i64;
    let ca = format!("sslrootcert={}", path_str(&pki.ca()));
    let other_ca = format!("sslrootcert={}", path_str(&other.ca()));

    // verify-full, the right CA, the name on the certificate: seeds over TLS.
    cluster.create_database_with_accounts("full_ok");
    let ok = url(
        &cluster,
        "localhost",
        SUPERUSER,
        "full_ok",
        "tls_full_ok",
        &ca,
    );
    seed(&format!("{ok} sslmode=verify-full"), &home).expect_ok();
    assert_eq!(accounts_in(&cluster, "full_ok"), rows);
    assert!(
        logged_with_tls(&cluster, "tls_full_ok"),
        "the server did not log the seed's connection as TLS:\n{}",
        cluster.server_log()
    );

    // verify-full, a CA that did not sign the server's certificate.
    cluster.create_database_with_accounts("full_other_ca");
    let wrong = url(
        &cluster,
        "localhost",
        SUPERUSER,
        "full_other_ca",
        "x",
        &other_ca,
    );
    let line = error_line(&seed(&format!("{wrong} sslmode=verify-full"), &home));
    let target = format!(
        "could not connect to host=localhost port={} user={SUPERUSER} dbname=full_other_ca",
        cluster.port()
    );
    assert!(line.contains(&target), "{line}");
    assert!(
        line.contains("TLS: certificate verify failed: unknown issuer"),
        "{line}"
    );
    assert_eq!(accounts_in(&cluster, "full_other_ca"), 0);
    // sslrootcert=system (verify-full by default): the system's roots did not sign it either.
    let system = url(&cluster, "localhost", SUPERUSER, "full_other_ca", "x", "");
    let line = error_line(&seed(&format!("{system} sslrootcert=system"), &home));
    assert!(
        line.contains("unknown issuer: not signed by a CA in the system's trusted roots"),
        "{line}"
    );

    // verify-full by IP address: the certificate names only localhost.
    cluster.create_database_with_accounts("by_ip");
    let by_ip = url(&cluster, "127.0.0.1", SUPERUSER, "by_ip", "tls_by_ip", &ca);
    let line = error_line(&seed(&format!("{by_ip} sslmode=verify-full"), &home));
    assert!(
        line.contains("certificate verify failed: name mismatch (sslmode=verify-full expects 127.0.0.1; the certificate is for localhost)"),
        "{line}"
    );
    assert_eq!(accounts_in(&cluster, "by_ip"), 0);

    // verify-ca by IP address: the chain is all it checks.
    seed(&format!("{by_ip} sslmode=verify-ca"), &home).expect_ok();
    assert_eq!(accounts_in(&cluster, "by_ip"), rows);
    assert!(logged_with_tls(&cluster, "tls_by_ip"));

    // require without a CA: encrypted, nothing verified.
    cluster.create_database_with_accounts("require");
    let require = url(
        &cluster,
        "127.0.0.1",
        SUPERUSER,
        "require",
        "tls_require",
        "",
    );
    seed(&format!("{require} sslmode=require"), &home).expect_ok();
    assert_eq!(accounts_in(&cluster, "require"), rows);
    assert!(logged_with_tls(&cluster, "tls_require"));

    // require with a root certificate checks the chain, as libpq does (verify-ca).
    let line = error_line(&seed(
        &format!("{require} sslmode=require {other_ca}"),
        &home,
    ));
    assert!(line.contains("unknown issuer"), "{line}");

    // The settings may come from the environment too.
    cluster.create_database_with_accounts("from_env");
    let plain = url(&cluster, "localhost", SUPERUSER, "from_env", "tls_env", "");
    run_with_env(
        &["seed", path_str(&fixture_path()), "--database-url", &plain],
        &[
            ("HOME", path_str(&home)),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", path_str(&pki.ca())),
        ],
    )
    .expect_ok();
    assert_eq!(accounts_in(&cluster, "from_env"), rows);
    assert!(logged_with_tls(&cluster, "tls_env"));
}

/// Runs `SELECT <sql>` on a connection from the library's own pool for `url`.
fn query_through_pool(url: &str, home: &Path, sql: &str) -> Result<String, String> {
    let home = path_str(home).to_string();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let env = |k: &str| (k == "HOME").then(|| home.clone());
        let target = provisioner::connect::resolve(Some(url), env).map_err(|e| e.to_string())?;
        let pool = provisioner::connect::pool(target.clone(), 1).map_err(|e| e.to_string())?;
        let client = provisioner::connect::check(&pool, &target)
            .await
            .map_err(|e| e.to_string())?;
        let row = client
            .query_one(&format!("SELECT ({sql})::text"), &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    })
}

#[test]
fn the_pool_encrypts_when_asked_and_logs_in_with_a_client_certificate() {
    let pki = Pki::new("pool");
    let home = pki.home();
    let cluster = ssl_cluster(&pki);
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let base = url(&cluster, "localhost", SUPERUSER, "postgres", "pool", "");
    let ca = format!("sslrootcert={}", path_str(&pki.ca()));
    for (mode, encrypted) in [
        ("disable", "false"),
        ("allow", "true"),
        ("prefer", "true"),
        ("require", "true"),
        ("verify-full", "true"),
    ] {
        let got = query_through_pool(&format!("{base} sslmode={mode} {ca}"), &home, ssl);
        assert_eq!(got.as_deref(), Ok(encrypted), "sslmode={mode}");
    }

    // SCRAM over TLS binds the login to this TLS channel (SCRAM-SHA-256-PLUS).
    let scram = url(&cluster, "localhost", SCRAM_USER, "postgres", "scram", &ca);
    let who = query_through_pool(
        &format!("{scram} sslmode=verify-full password={SCRAM_PASSWORD} channel_binding=require"),
        &home,
        "SELECT current_user",
    );
    assert_eq!(who.as_deref(), Ok(SCRAM_USER));

    // hostssl … cert: the certificate's CN is the user.
    let cert_url = url(&cluster, "localhost", CERT_USER, "postgres", "cert", &ca);
    let client_files = format!(
        "sslcert={} sslkey={}",
        path_str(&pki.path("client.crt")),
        path_str(&pki.path("client.key"))
    );
    let who = query_through_pool(
        &format!("{cert_url} sslmode=verify-full {client_files}"),
        &home,
        "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert_eq!(who.as_deref(), Ok("certuser true"));
    // The default files ~/.postgresql/postgresql.crt and .key are used as libpq does.
    let dot = home.join(".postgresql");
    std::fs::create_dir_all(&dot).unwrap();
    std::fs::copy(pki.path("client.crt"), dot.join("postgresql.crt")).unwrap();
    std::fs::copy(pki.path("client.key"), dot.join("postgresql.key")).unwrap();
    let who = query_through_pool(
        &format!("{cert_url} sslmode=verify-full"),
        &home,
        "SELECT current_user",
    );
    assert_eq!(who.as_deref(), Ok("certuser"));
    std::fs::remove_dir_all(&dot).unwrap();
    // A certificate from a CA the server does not trust: refused in the handshake.
    let stranger = Pki::new("stranger");
    let err = query_through_pool(
        &format!(
            "{cert_url} sslmode=verify-full sslcert={} sslkey={}",
            path_str(&stranger.path("client.crt")),
            path_str(&stranger.path("client.key"))
        ),
        &home,
        "1",
    )
    .expect_err("a client certificate from an unknown CA");
    assert!(
        err.contains("TLS: the server refused the handshake (UnknownCA); does it trust the CA of the client certificate"),
        "{err}"
    );
    // Without a certificate the server refuses the login.
    let err = query_through_pool(&format!("{cert_url} sslmode=verify-full"), &home, "1")
        .expect_err("no client certificate");
    assert!(err.contains("could not connect to host=localhost"), "{err}");
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn without_tls_on_the_server_prefer_connects_in_plain_and_require_refuses() {
    let pki = Pki::new("plain");
    let home = pki.home();
    let cluster = Cluster::start();
    cluster.create_database_with_accounts("prefer");
    let prefer = url(&cluster, "127.0.0.1", SUPERUSER, "prefer", "plain", "");
    seed(&prefer, &home).expect_ok();
    assert_eq!(
        accounts_in(&cluster, "prefer"),
        fixture_records().len() as i64
    );
    cluster.create_database_with_accounts("require");
    let require = url(&cluster, "127.0.0.1", SUPERUSER, "require", "plain", "");
    let line = error_line(&seed(&format!("{require} sslmode=require"), &home));
    assert!(
        line.ends_with(&format!(
            "could not connect to host=127.0.0.1 port={} user={SUPERUSER} dbname=require: \
             TLS: the server does not support TLS (sslmode=require)",
            cluster.port()
        )),
        "{line}"
    );
    assert_eq!(accounts_in(&cluster, "require"), 0);
}
