//! Connecting like psql: a URL or conninfo string, else the libpq environment variables,
//! else psql's defaults (the OS user, the local socket). `tokio_postgres::Config` reads no
//! environment, so this module is the one place that merges them.
//!
//! Passwords stay inside `tokio_postgres::Config` (whose `Debug` redacts them); every
//! description of a target this module produces leaves them out.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Config, NoTls};

use crate::error::Error;

pub const DEFAULT_APPLICATION_NAME: &str = "provisioner";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Writers never outnumber connections, so a long wait for one means something is stuck.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the connection config from `url` (`postgres://…` or `key=value …`), filling what it
/// leaves unset from `env` (the `PG*` variables) and then from psql's defaults.
pub fn resolve(url: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let mut cfg = match url {
        Some(url) => Config::from_str(url).map_err(|e| {
            // The parser's message never echoes the string, which may hold a password.
            Error::Usage(format!("invalid database URL: {e}"))
        })?,
        None => Config::new(),
    };
    if cfg.get_hosts().is_empty() {
        match env("PGHOST").filter(|h| !h.is_empty()) {
            Some(hosts) => {
                for host in hosts.split(',') {
                    add_host(&mut cfg, host);
                }
            }
            None => {
                cfg.host_path(default_socket_dir());
            }
        }
    }
    if cfg.get_ports().is_empty()
        && let Some(ports) = env("PGPORT").filter(|p| !p.is_empty())
    {
        for port in ports.split(',') {
            let port = port
                .trim()
                .parse()
                .map_err(|_| Error::Usage(format!("PGPORT: invalid port {port:?}")))?;
            cfg.port(port);
        }
    }
    if cfg.get_user().is_none() {
        let user = env("PGUSER")
            .filter(|u| !u.is_empty())
            .or_else(|| whoami::username().ok())
            .ok_or_else(|| Error::Usage("no user name: set PGUSER or a URL".into()))?;
        cfg.user(user);
    }
    if cfg.get_dbname().is_none() {
        let db = env("PGDATABASE")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| cfg.get_user().unwrap_or_default().to_string());
        cfg.dbname(db);
    }
    if cfg.get_password().is_none()
        && let Some(pw) = env("PGPASSWORD")
    {
        cfg.password(pw);
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name(env("PGAPPNAME").unwrap_or_else(|| DEFAULT_APPLICATION_NAME.into()));
    }
    if url.is_none_or(|u| !u.contains("sslmode"))
        && let Some(mode) = env("PGSSLMODE")
    {
        cfg.ssl_mode(parse_ssl_mode(&mode)?);
    }
    if cfg.get_ssl_mode() == SslMode::Require {
        return Err(Error::Usage(
            "sslmode=require: TLS connections are not supported yet; use sslmode=disable or prefer"
                .into(),
        ));
    }
    if cfg.get_connect_timeout().is_none() {
        let timeout = env("PGCONNECT_TIMEOUT")
            .and_then(|t| t.parse().ok())
            .filter(|&t: &u64| t > 0)
            .map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs);
        cfg.connect_timeout(timeout);
    }
    Ok(cfg)
}

/// The process environment, for [`resolve`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn add_host(cfg: &mut Config, host: &str) {
    let host = host.trim();
    if host.starts_with('/') {
        cfg.host_path(host);
    } else {
        cfg.host(host);
    }
}

fn default_socket_dir() -> &'static str {
    // Debian's libpq looks in /var/run/postgresql; upstream's default is /tmp.
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql"
    } else {
        "/tmp"
    }
}

fn parse_ssl_mode(mode: &str) -> Result<SslMode, Error> {
    match mode {
        "disable" | "allow" => Ok(SslMode::Disable),
        "prefer" => Ok(SslMode::Prefer),
        "require" | "verify-ca" | "verify-full" => Ok(SslMode::Require),
        other => Err(Error::Usage(format!(
            "PGSSLMODE: unknown sslmode {other:?}"
        ))),
    }
}

/// A connection string with its password removed, for anything that is stored or shown:
/// `postgres://u:pw@h/db` → `postgres://u@h/db`, `host=h password=pw` → `host=h`.
pub fn redact(conn: &str) -> String {
    if let Some((scheme, rest)) = conn.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                format!("{user}@{hosts}")
            }
            None => authority.to_string(),
        };
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("password="))
            .collect();
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        return format!("{scheme}://{authority}{path}{query}");
    }
    conn.split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `host=… port=… user=… dbname=…`, never the password.
pub fn describe(cfg: &Config) -> String {
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = cfg.get_ports().iter().map(u16::to_string).collect();
    format!(
        "host={} port={} user={} dbname={}",
        hosts.join(","),
        if ports.is_empty() {
            "5432".into()
        } else {
            ports.join(",")
        },
        cfg.get_user().unwrap_or_default(),
        cfg.get_dbname().unwrap_or_default(),
    )
}

/// A pool of at most `size` connections. Broken connections are noticed when they are taken
/// back out (`RecyclingMethod::Fast` checks that the socket is still open).
pub fn pool(cfg: Config, size: usize) -> Result<Pool, Error> {
    let manager = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .build()
        .map_err(|e| Error::Usage(format!("cannot build the connection pool: {e}")))
}

/// Takes one connection from the pool to prove the target answers, with a one-line error
/// naming it when it does not.
pub async fn check(pool: &Pool, cfg: &Config) -> Result<deadpool_postgres::Object, Error> {
    pool.get()
        .await
        .map_err(|e: deadpool_postgres::PoolError| Error::Connect {
            target: describe(cfg),
            cause: match &e {
                deadpool_postgres::PoolError::Backend(pg) => crate::error::describe_pg(pg),
                other => other.to_string(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn url_wins_and_environment_fills_the_gaps() {
        let env = env_of(&[
            ("PGHOST", "db.example"),
            ("PGPORT", "6543"),
            ("PGUSER", "alice"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "s3cret"),
        ]);
        let cfg = resolve(Some("postgres://bob@127.0.0.1/urldb"), &env).unwrap();
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("127.0.0.1".into())]);
        // tokio-postgres gives a URL host without a port 5432; PGPORT fills only a URL without hosts.
        assert_eq!(cfg.get_ports(), &[5432]);
        let hostless = resolve(Some("postgres:///urldb"), &env).unwrap();
        assert_eq!(hostless.get_hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(hostless.get_ports(), &[6543]);
        assert_eq!(cfg.get_user(), Some("bob"));
        assert_eq!(cfg.get_dbname(), Some("urldb"));
        assert_eq!(cfg.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(cfg.get_application_name(), Some("provisioner"));
    }

    #[test]
    fn pghost_may_be_a_socket_directory_and_dbname_defaults_to_user() {
        let env = env_of(&[
            ("PGHOST", "/run/pg"),
            ("PGUSER", "carol"),
            ("PGAPPNAME", "x"),
        ]);
        let cfg = resolve(None, &env).unwrap();
        assert_eq!(cfg.get_hosts(), &[Host::Unix("/run/pg".into())]);
        assert_eq!(cfg.get_dbname(), Some("carol"));
        assert_eq!(cfg.get_application_name(), Some("x"));
        assert_eq!(
            describe(&cfg),
            "host=/run/pg port=5432 user=carol dbname=carol"
        );
    }

    #[test]
    fn descriptions_and_errors_never_carry_the_password() {
        let cfg = resolve(Some("postgres://u:hunter2@h:1/d"), env_of(&[])).unwrap();
        assert!(!describe(&cfg).contains("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let err = resolve(Some("postgres://u:hunter2@h:notaport/d"), env_of(&[])).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn redact_removes_passwords_from_urls_and_conninfo() {
        assert_eq!(
            redact("postgres://u:pw@h:5/db?sslmode=disable"),
            "postgres://u@h:5/db?sslmode=disable"
        );
        assert_eq!(redact("postgres://u@h/db?password=pw"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?password=pw&sslmode=disable"),
            "postgres://h/db?sslmode=disable"
        );
        assert_eq!(redact("postgresql:///db"), "postgresql:///db");
        assert_eq!(redact("host=h password=pw dbname=d"), "host=h dbname=d");
    }

    #[test]
    fn unsupported_sslmode_is_a_usage_error() {
        let err = resolve(
            None,
            env_of(&[("PGSSLMODE", "verify-full"), ("PGUSER", "u")]),
        );
        assert!(matches!(err, Err(Error::Usage(_))));
    }
}
