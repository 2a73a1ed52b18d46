//! Connecting like psql: a URL or conninfo string, then the service it (or `PGSERVICE`)
//! names in the connection service file ([`service`]), else the libpq environment variables,
//! else psql's defaults (the OS user, the local socket); the password from the URL, the
//! service, PGPASSWORD or the password file; TLS with libpq's `sslmode` ([`tls`]).
//! `tokio_postgres::Config` reads no environment, no password file and knows only three
//! `sslmode`s, so [`resolve`] is the one place that merges all of it, and [`pool`] the one
//! place connections are made.
//!
//! Passwords stay inside `tokio_postgres::Config` (whose `Debug` redacts them); every
//! description of a target this module produces leaves them out.

mod conninfo;
mod pgpass;
pub mod service;
pub mod tls;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, TimeoutType};
use tokio_postgres::Config;
use tokio_postgres::config::Host;

pub use conninfo::redact;
use tls::{RootCert, SslMode, TlsOptions};

use crate::error::Error;

pub const DEFAULT_APPLICATION_NAME: &str = "provisioner";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Writers never outnumber connections, so a long wait for one means something is stuck.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// What tokio-postgres understands; its `sslmode` only says whether TLS is asked for.
    pub config: Config,
    /// What the server's certificate must prove, and the client certificate.
    pub tls: TlsOptions,
}

/// Builds the endpoint from `url` (`postgres://…` or `key=value …`), filling what it leaves
/// unset from the service it or `PGSERVICE` names, then from `env` (the `PG*` variables,
/// `HOME`) and then from libpq's defaults.
pub fn resolve(url: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Endpoint, Error> {
    // Messages about the string never echo it: it may hold a password.
    let invalid = |e: String| Error::Usage(format!("invalid database URL: {e}"));
    let split = match url {
        Some(url) => conninfo::split(url).map_err(invalid)?,
        None => conninfo::Split::default(),
    };
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    // As in libpq, the service fills what the string leaves unset, before the environment.
    let name = split
        .get("service")
        .map(str::to_string)
        .or_else(|| env("PGSERVICE"));
    let split = match name {
        Some(name) => {
            let conn = with_service(url.unwrap_or_default(), &name, &env)?;
            conninfo::split(&conn).map_err(invalid)?
        }
        None => split,
    };
    let rest = match env("PGPORT") {
        Some(ports) => conninfo::with_default_ports(&split.rest, &ports),
        None => split.rest.clone(),
    };
    let mut cfg = Config::from_str(&rest).map_err(|e| invalid(crate::error::describe_pg(&e)))?;
    if cfg.get_hosts().is_empty() {
        let hostaddrs: Vec<String> = cfg
            .get_hostaddrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        match env("PGHOST") {
            // hostaddr alone: the addresses are the names too, which TLS needs.
            _ if !hostaddrs.is_empty() => {
                for addr in hostaddrs {
                    cfg.host(addr);
                }
            }
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
        && let Some(ports) = env("PGPORT")
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
            .or_else(|| whoami::username().ok())
            .ok_or_else(|| Error::Usage("no user name: set PGUSER or a URL".into()))?;
        cfg.user(user);
    }
    if cfg.get_dbname().is_none() {
        let db =
            env("PGDATABASE").unwrap_or_else(|| cfg.get_user().unwrap_or_default().to_string());
        cfg.dbname(db);
    }
    if cfg.get_password().is_none() {
        let from_file = || {
            let file = split
                .get("passfile")
                .map(PathBuf::from)
                .or_else(|| env("PGPASSFILE").map(PathBuf::from))
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
            password_from_file(&cfg, &file)
        };
        if let Some(pw) = env("PGPASSWORD").or_else(from_file) {
            cfg.password(pw);
        }
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name(env("PGAPPNAME").unwrap_or_else(|| DEFAULT_APPLICATION_NAME.into()));
    }
    if let Some(options) = server_options(cfg.get_options(), &env) {
        cfg.options(options);
    }
    let tls = tls_options(&split, &env)?;
    // libpq ignores sslmode on unix sockets, where the server never speaks TLS.
    let sockets_only = cfg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
    cfg.ssl_mode(if sockets_only {
        SslMode::Disable.negotiation()
    } else {
        tls.mode.negotiation()
    });
    if cfg.get_connect_timeout().is_none() {
        let timeout = env("PGCONNECT_TIMEOUT")
            .and_then(|t| t.parse().ok())
            .filter(|&t: &u64| t > 0)
            .map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs);
        cfg.connect_timeout(timeout);
    }
    Ok(Endpoint { config: cfg, tls })
}

/// `conn` with the settings of the service `name` that it does not set itself. A setting of
/// the service that this tool cannot take is an error naming its file and line (never its
/// value), like the same parameter in a connection string.
fn with_service(
    conn: &str,
    name: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let service = service::lookup(name, env).map_err(Error::Usage)?;
    let given = conninfo::given_keys(conn)
        .map_err(|e| Error::Usage(format!("invalid database URL: {e}")))?;
    let mut settings = Vec::new();
    for setting in &service.settings {
        if given.contains(&setting.key) {
            continue;
        }
        // Ours are checked where they are used; the rest as tokio-postgres will read them.
        if !conninfo::OURS.contains(&setting.key.as_str()) {
            let alone = format!("{}={}", setting.key, conninfo::quote(&setting.value));
            Config::from_str(&alone).map_err(|e| {
                Error::Usage(format!(
                    "{}: {}",
                    service.place(setting),
                    crate::error::describe_pg(&e)
                ))
            })?;
        }
        settings.push((setting.key.as_str(), setting.value.as_str()));
    }
    tracing::debug!(
        "service {name:?} from {}: {}",
        service.file.display(),
        settings
            .iter()
            .map(|(key, _)| *key)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(conninfo::with_settings(conn, &settings))
}

/// The variables libpq sends as settings of the session (unless set to `default`), and
/// the setting each is.
const SESSION_VARIABLES: [(&str, &str); 3] = [
    ("PGDATESTYLE", "datestyle"),
    ("PGTZ", "timezone"),
    ("PGGEQO", "geqo"),
];

/// The server options a session starts with, as psql's: the string's `options`, else
/// `PGOPTIONS`, then what `PGDATESTYLE`, `PGTZ` and `PGGEQO` set. libpq sends those three as
/// startup parameters of their own, which tokio-postgres cannot; as `-c` switches after the
/// others they take the same precedence (the server applies options first, then the rest).
fn server_options(given: Option<&str>, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut options = given.map(str::to_string).or_else(|| env("PGOPTIONS"));
    for (var, setting) in SESSION_VARIABLES {
        let Some(value) = env(var).filter(|v| !v.eq_ignore_ascii_case("default")) else {
            continue;
        };
        let out = options.get_or_insert_with(String::new);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("-c ");
        out.push_str(setting);
        out.push('=');
        // The server splits options at white space; a backslash escapes the next byte.
        for c in value.chars() {
            if c == '\\' || c.is_ascii_whitespace() {
                out.push('\\');
            }
            out.push(c);
        }
    }
    options
}

/// `sslmode`, `sslrootcert`, `sslcert`, `sslkey` from the string, else `PGSSL*`, else
/// libpq's defaults: `prefer`, and the files in `~/.postgresql/` when they exist.
fn tls_options(
    split: &conninfo::Split,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<TlsOptions, Error> {
    let setting = |key: &str, var: &str| split.get(key).map(str::to_string).or_else(|| env(var));
    let home_file = |name: &str| {
        env("HOME")
            .map(|h| Path::new(&h).join(".postgresql").join(name))
            .filter(|p| p.exists())
    };
    // A file named explicitly must exist: a typo must not quietly turn verification off.
    let named_file = |key: &str, var: &str| -> Result<Option<PathBuf>, Error> {
        match setting(key, var) {
            Some(path) if !Path::new(&path).exists() => {
                Err(Error::Usage(format!("{key} file {path} does not exist")))
            }
            other => Ok(other.map(PathBuf::from)),
        }
    };
    let root_cert = match setting("sslrootcert", "PGSSLROOTCERT").as_deref() {
        Some("system") => Some(RootCert::System),
        _ => named_file("sslrootcert", "PGSSLROOTCERT")?
            .or_else(|| home_file("root.crt"))
            .map(RootCert::File),
    };
    let mode = match setting("sslmode", "PGSSLMODE") {
        Some(mode) => SslMode::parse(&mode)
            .ok_or_else(|| Error::Usage(format!("unknown sslmode {mode:?}")))?,
        None if root_cert == Some(RootCert::System) => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if mode == SslMode::Disable {
        return Ok(TlsOptions {
            mode,
            root_cert: None,
            client_cert: None,
        });
    }
    let cert = named_file("sslcert", "PGSSLCERT")?.or_else(|| home_file("postgresql.crt"));
    let client_cert = match cert {
        Some(cert) => {
            let key = setting("sslkey", "PGSSLKEY")
                .map(PathBuf::from)
                .or_else(|| home_file("postgresql.key"))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "client certificate {} has no key: set sslkey (or PGSSLKEY)",
                        cert.display()
                    ))
                })?;
            Some((cert, key))
        }
        None => None,
    };
    let tls = TlsOptions {
        mode,
        root_cert,
        client_cert,
    };
    tls.validate()?;
    Ok(tls)
}

/// The password file's entry for the first of the target's hosts that has one. A socket in
/// the default directory also matches `localhost`, as in libpq.
fn password_from_file(cfg: &Config, file: &Path) -> Option<String> {
    let ports = cfg.get_ports();
    let mut names: Vec<(String, String)> = Vec::new();
    for (i, host) in cfg.get_hosts().iter().map(host_name).enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        if host == default_socket_dir() {
            names.push(("localhost".into(), port.to_string()));
        }
        names.push((host, port.to_string()));
    }
    let keys: Vec<pgpass::Key<'_>> = names
        .iter()
        .map(|(host, port)| pgpass::Key {
            host,
            port,
            database: cfg.get_dbname().unwrap_or_default(),
            user: cfg.get_user().unwrap_or_default(),
        })
        .collect();
    pgpass::lookup(file, &keys)
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

fn host_name(host: &Host) -> String {
    match host {
        Host::Tcp(name) => name.clone(),
        Host::Unix(path) => path.display().to_string(),
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

/// `host=… port=… user=… dbname=…`, never the password.
pub fn describe(cfg: &Config) -> String {
    let hosts: Vec<String> = cfg.get_hosts().iter().map(host_name).collect();
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

/// How long one connection's whole start-up (TCP, TLS, authentication) may take: the
/// connect timeout for each host tried. tokio-postgres bounds only the TCP connect itself.
fn startup_timeout(cfg: &Config) -> Duration {
    let hosts = cfg.get_hosts().len().max(1);
    cfg.get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
        * hosts as u32
}

/// A pool of at most `size` connections, all made with the endpoint's TLS settings. Broken
/// connections are noticed when they are taken back out (`RecyclingMethod::Fast` checks that
/// the socket is still open).
pub fn pool(endpoint: Endpoint, size: usize) -> Result<Pool, Error> {
    let connector = endpoint.tls.connector()?;
    let startup = startup_timeout(&endpoint.config);
    let manager = Manager::from_config(
        endpoint.config,
        connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(startup))
        .build()
        .map_err(|e| Error::Usage(format!("cannot build the connection pool: {e}")))
}

/// Takes one connection from the pool to prove the endpoint answers, with a one-line error
/// naming it when it does not.
pub async fn check(pool: &Pool, endpoint: &Endpoint) -> Result<deadpool_postgres::Object, Error> {
    pool.get().await.map_err(|e| Error::Connect {
        target: describe(&endpoint.config),
        cause: match &e {
            PoolError::Backend(pg) => endpoint.tls.describe_failure(pg).unwrap_or_else(|| {
                let cause = crate::error::describe_pg(pg);
                if cause.ends_with("password missing") {
                    "the server asks for a password and none was given (URL, PGPASSWORD, \
                     PGPASSFILE or ~/.pgpass)"
                        .into()
                } else {
                    cause
                }
            }),
            PoolError::Timeout(TimeoutType::Create) => format!(
                "no answer within {} s (--connect-timeout)",
                startup_timeout(&endpoint.config).as_secs()
            ),
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("connect_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".postgresql")).unwrap();
        dir
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
        let cfg = resolve(Some("postgres://bob@127.0.0.1/urldb"), &env)
            .unwrap()
            .config;
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("127.0.0.1".into())]);
        // As in libpq, PGPORT fills in for a URL host that names no port, not for one that does.
        assert_eq!(cfg.get_ports(), &[6543]);
        let ported = resolve(Some("postgres://bob@127.0.0.1:7/urldb"), &env).unwrap();
        assert_eq!(ported.config.get_ports(), &[7]);
        let hostless = resolve(Some("postgres:///urldb"), &env).unwrap().config;
        assert_eq!(hostless.get_hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(hostless.get_ports(), &[6543]);
        assert_eq!(cfg.get_user(), Some("bob"));
        assert_eq!(cfg.get_dbname(), Some("urldb"));
        assert_eq!(cfg.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(cfg.get_application_name(), Some("provisioner"));
        assert_eq!(cfg.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
    }

    #[test]
    fn pgoptions_and_the_session_variables_become_options_as_psql_sends_them() {
        let options = |url: &str, pairs: &[(&str, &str)]| {
            resolve(Some(url), env_of(pairs))
                .unwrap()
                .config
                .get_options()
                .map(str::to_string)
        };
        assert_eq!(options("host=h", &[]), None);
        assert_eq!(
            options("host=h", &[("PGOPTIONS", "-c work_mem=64MB")]).as_deref(),
            Some("-c work_mem=64MB")
        );
        // The string's options win over PGOPTIONS; PGTZ and the others come after either.
        let all = [
            ("PGOPTIONS", "-c timezone=UTC"),
            ("PGTZ", "America/New_York"),
            ("PGDATESTYLE", "SQL, DMY"),
            ("PGGEQO", "off"),
        ];
        assert_eq!(
            options("host=h", &all).as_deref(),
            Some(
                "-c timezone=UTC -c datestyle=SQL,\\ DMY -c timezone=America/New_York -c geqo=off"
            )
        );
        assert_eq!(
            options("host=h options='-c search_path=s'", &all[..2]).as_deref(),
            Some("-c search_path=s -c timezone=America/New_York")
        );
        assert_eq!(options("host=h", &[("PGTZ", "DEFAULT")]), None);
        assert_eq!(
            options("host=h", &[("PGTZ", "a\\b c")]).as_deref(),
            Some("-c timezone=a\\\\b\\ c")
        );
    }

    #[test]
    fn pghost_may_be_a_socket_directory_and_dbname_defaults_to_user() {
        let env = env_of(&[
            ("PGHOST", "/run/pg"),
            ("PGUSER", "carol"),
            ("PGAPPNAME", "x"),
            ("PGSSLMODE", "require"),
        ]);
        let target = resolve(None, &env).unwrap();
        let cfg = &target.config;
        assert_eq!(cfg.get_hosts(), &[Host::Unix("/run/pg".into())]);
        assert_eq!(cfg.get_dbname(), Some("carol"));
        assert_eq!(cfg.get_application_name(), Some("x"));
        // No TLS on a unix socket, whatever sslmode says (as in libpq).
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        assert_eq!(target.tls.mode, SslMode::Require);
        assert_eq!(
            describe(cfg),
            "host=/run/pg port=5432 user=carol dbname=carol"
        );
    }

    #[test]
    fn hostaddr_alone_is_the_host_name_too() {
        let env = env_of(&[("PGHOST", "elsewhere"), ("PGUSER", "u")]);
        let cfg = resolve(Some("hostaddr=127.0.0.1 port=5"), &env)
            .unwrap()
            .config;
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("127.0.0.1".into())]);
        assert_eq!(describe(&cfg), "host=127.0.0.1 port=5 user=u dbname=u");
    }

    #[test]
    fn descriptions_and_errors_never_carry_the_password() {
        let cfg = resolve(Some("postgres://u:hunter2@h:1/d"), env_of(&[])).unwrap();
        assert!(!describe(&cfg.config).contains("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        for bad in [
            "postgres://u:hunter2@h:notaport/d",
            "host=h password=hunter2 port",
            "host=h password='hunter2",
            "host=h password=hunter2 nosuchoption=1",
        ] {
            let err = resolve(Some(bad), env_of(&[])).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn sslmode_and_files_come_from_the_url_then_the_environment_then_home() {
        use tokio_postgres::config::SslMode as Pg;
        let home = scratch("tls");
        let ca = home.join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let ca_str = ca.to_str().unwrap();
        let env = env_of(&[("PGSSLMODE", "require"), ("PGSSLROOTCERT", ca_str)]);
        let url = format!("host=h sslmode=verify-full sslrootcert={ca_str}");
        let t = resolve(Some(&url), &env).unwrap();
        assert_eq!(t.tls.mode, SslMode::VerifyFull);
        assert_eq!(t.config.get_ssl_mode(), Pg::Require);
        assert_eq!(t.tls.root_cert, Some(RootCert::File(ca.clone())));
        let t = resolve(Some("postgres://h/db?sslmode=verify-ca"), &env).unwrap();
        assert_eq!(t.tls.mode, SslMode::VerifyCa);
        assert_eq!(t.tls.root_cert, Some(RootCert::File(ca.clone())));
        let t = resolve(Some("host=h"), &env).unwrap();
        assert_eq!(t.tls.mode, SslMode::Require);
        // Defaults: prefer, and ~/.postgresql files only when they exist.
        let home_env = env_of(&[("HOME", home.to_str().unwrap())]);
        let t = resolve(Some("host=h"), &home_env).unwrap();
        assert_eq!(t.tls.mode, SslMode::Prefer);
        assert_eq!(t.config.get_ssl_mode(), Pg::Prefer);
        assert_eq!(t.tls.root_cert, None);
        assert_eq!(t.tls.client_cert, None);
        let dot = home.join(".postgresql");
        for f in ["root.crt", "postgresql.crt", "postgresql.key"] {
            std::fs::write(dot.join(f), "x").unwrap();
        }
        let t = resolve(Some("host=h"), &home_env).unwrap();
        assert_eq!(t.tls.root_cert, Some(RootCert::File(dot.join("root.crt"))));
        assert_eq!(
            t.tls.client_cert,
            Some((dot.join("postgresql.crt"), dot.join("postgresql.key")))
        );
        let t = resolve(Some("host=h sslrootcert=system"), &home_env).unwrap();
        assert_eq!(t.tls.mode, SslMode::VerifyFull);
        let t = resolve(Some("host=h sslmode=disable"), &home_env).unwrap();
        assert_eq!(t.config.get_ssl_mode(), Pg::Disable);
        assert_eq!(t.tls.root_cert, None);
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn impossible_tls_settings_are_usage_errors() {
        let env = env_of(&[("PGUSER", "u")]);
        for bad in [
            "host=h sslmode=verify-full",
            "host=h sslmode=sometimes",
            "host=h sslmode=require sslrootcert=system",
            "host=h sslmode=require sslrootcert=/nonexistent/ca.pem",
            "host=h sslcert=/nonexistent/client.crt",
        ] {
            let err = resolve(Some(bad), &env).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
        }
        let err = resolve(Some("host=h sslcrl=/crl.pem"), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid database URL: invalid connection string: unknown option `sslcrl`"
        );
    }

    /// A service file with `svc` (every setting), `other` and `bad` (values that cannot
    /// work), and the variables that point at it and at an empty system directory.
    fn service_setup(name: &str) -> (PathBuf, Vec<(String, String)>) {
        let dir = scratch(name);
        let file = dir.join("services.conf");
        std::fs::write(
            &file,
            "# services\n\
             [svc]\n\
             host=svc.example\n\
             port=6000\n\
             user=svcuser\n\
             dbname=svcdb\n\
             password=svc pw\n\
             sslmode=disable\n\
             application_name=svcapp\n\
             connect_timeout=7\n\
             options=-c work_mem=8MB\n\
             \n\
             [other]\n\
             host=other.example\n\
             dbname=otherdb\n\
             [socket]\n\
             host=/run/svc\n\
             [bad]\n\
             password=hunter2\n\
             port=notaport\n\
             sslcrl=/crl.pem\n",
        )
        .unwrap();
        let vars = vec![
            ("PGSERVICEFILE".to_string(), file.display().to_string()),
            ("PGSYSCONFDIR".to_string(), dir.display().to_string()),
        ];
        (dir, vars)
    }

    fn with_vars<'a>(
        vars: &'a [(String, String)],
        more: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut all: Vec<(&str, &str)> =
            vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(more);
        all
    }

    #[test]
    fn a_service_fills_what_the_string_leaves_unset_before_the_environment() {
        use tokio_postgres::config::SslMode as Pg;
        let (dir, vars) = service_setup("service_precedence");
        let environment = [
            ("PGHOST", "env.example"),
            ("PGPORT", "7000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envpw"),
            ("PGSSLMODE", "require"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "9"),
            ("PGOPTIONS", "-c geqo=off"),
            ("PGSERVICE", "other"),
        ];
        let env = env_of(&with_vars(&vars, &environment));

        // service= names the service, not PGSERVICE; its settings beat every variable.
        let t = resolve(Some("service=svc"), &env).unwrap();
        let cfg = &t.config;
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("svc.example".into())]);
        assert_eq!(cfg.get_ports(), &[6000]);
        assert_eq!(cfg.get_user(), Some("svcuser"));
        assert_eq!(cfg.get_dbname(), Some("svcdb"));
        assert_eq!(cfg.get_password(), Some(&b"svc pw"[..]));
        assert_eq!(t.tls.mode, SslMode::Disable);
        assert_eq!(cfg.get_ssl_mode(), Pg::Disable);
        assert_eq!(cfg.get_application_name(), Some("svcapp"));
        assert_eq!(cfg.get_connect_timeout(), Some(&Duration::from_secs(7)));
        assert_eq!(cfg.get_options(), Some("-c work_mem=8MB"));

        // What the string sets wins over the service.
        let cfg = resolve(Some("service=svc dbname=mine user=me port=5"), &env)
            .unwrap()
            .config;
        assert_eq!(
            (cfg.get_dbname(), cfg.get_user(), cfg.get_ports()),
            (Some("mine"), Some("me"), &[5][..])
        );
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("svc.example".into())]);

        // PGSERVICE when the string names none; the environment fills the rest.
        for url in [None, Some("connect_timeout=3")] {
            let cfg = resolve(url, &env).unwrap().config;
            assert_eq!(cfg.get_hosts(), &[Host::Tcp("other.example".into())]);
            assert_eq!(cfg.get_dbname(), Some("otherdb"));
            assert_eq!(cfg.get_ports(), &[7000]);
            assert_eq!(cfg.get_user(), Some("envuser"));
            assert_eq!(cfg.get_password(), Some(&b"envpw"[..]));
        }
        // An empty PGSERVICE is no service, as every empty variable here.
        let none = env_of(&with_vars(&vars, &[("PGSERVICE", ""), ("PGHOST", "h")]));
        assert_eq!(
            resolve(None, &none).unwrap().config.get_hosts(),
            &[Host::Tcp("h".into())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_service_in_a_url_fills_what_the_url_leaves_unset() {
        let (dir, vars) = service_setup("service_url");
        let env = env_of(&with_vars(
            &vars,
            &[("PGPORT", "7000"), ("PGSERVICE", "other")],
        ));
        // The URL's host, user and database win; its host takes the service's port (not
        // tokio-postgres's 5432, nor PGPORT).
        let t = resolve(Some("postgres://me@h2/urldb?service=svc"), &env).unwrap();
        let cfg = &t.config;
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("h2".into())]);
        assert_eq!(cfg.get_ports(), &[6000]);
        assert_eq!(
            (cfg.get_user(), cfg.get_dbname()),
            (Some("me"), Some("urldb"))
        );
        assert_eq!(cfg.get_password(), Some(&b"svc pw"[..]));
        assert_eq!(t.tls.mode, SslMode::Disable);
        let cfg = resolve(Some("postgres://h2:5/urldb?service=svc"), &env)
            .unwrap()
            .config;
        assert_eq!(cfg.get_ports(), &[5]);
        let cfg = resolve(Some("postgresql:///?service=svc&dbname=q"), &env)
            .unwrap()
            .config;
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("svc.example".into())]);
        assert_eq!(cfg.get_ports(), &[6000]);
        assert_eq!(cfg.get_dbname(), Some("q"));
        let cfg = resolve(Some("postgres:///d?service=socket"), &env)
            .unwrap()
            .config;
        assert_eq!(cfg.get_hosts(), &[Host::Unix("/run/svc".into())]);
        assert_eq!(cfg.get_ports(), &[7000]);
        // PGSERVICE serves a URL too.
        let cfg = resolve(Some("postgres://u@/d"), &env).unwrap().config;
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("other.example".into())]);
        assert_eq!(cfg.get_dbname(), Some("d"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_service_or_a_setting_that_cannot_work_is_a_usage_error() {
        let (dir, vars) = service_setup("service_errors");
        let env = env_of(&with_vars(&vars, &[]));
        let err = resolve(Some("host=h service=nope"), &env).unwrap_err();
        assert_eq!(err.to_string(), "definition of service \"nope\" not found");
        assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        let pgservice = env_of(&with_vars(&vars, &[("PGSERVICE", "nope")]));
        let err = resolve(None, &pgservice).unwrap_err();
        assert_eq!(err.to_string(), "definition of service \"nope\" not found");

        let file = dir.join("services.conf");
        let err = resolve(Some("service=bad"), &env).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "service file \"{}\", line 20: invalid connection string: invalid value for \
                 option `port`",
                file.display()
            )
        );
        let err = resolve(Some("service=bad port=1"), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "service file \"{}\", line 21: invalid connection string: unknown option \
                 `sslcrl`",
                file.display()
            )
        );
        // A setting the string overrides is not used, so not checked (as in libpq).
        let cfg = resolve(Some("service=bad port=1 sslcrl=x"), &env);
        assert!(cfg.is_err(), "the string's own sslcrl is still refused");
        std::fs::write(&file, "[bad]\npassword=hunter2\nport=notaport\n").unwrap();
        let cfg = resolve(Some("service=bad port=1"), &env).unwrap().config;
        assert_eq!(cfg.get_password(), Some(&b"hunter2"[..]));
        for url in ["service=bad", "postgres://h/d?service=bad"] {
            let err = resolve(Some(url), &env).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_password_file_is_read_after_the_url_and_pgpassword() {
        use std::os::unix::fs::PermissionsExt;
        let home = scratch("pgpass");
        let file = home.join(".pgpass");
        std::fs::write(
            &file,
            "localhost:5432:db:u:socketpw\n127.0.0.1:6000:db:u:tcppw\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let home_str = home.to_str().unwrap();
        let env = env_of(&[("HOME", home_str)]);
        let pw = |url: &str, env: &dyn Fn(&str) -> Option<String>| {
            resolve(Some(url), env)
                .unwrap()
                .config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        };
        assert_eq!(
            pw("host=127.0.0.1 port=6000 user=u dbname=db", &env).as_deref(),
            Some("tcppw")
        );
        let socket = format!("host={} user=u dbname=db", default_socket_dir());
        assert_eq!(pw(&socket, &env).as_deref(), Some("socketpw"));
        assert_eq!(pw("host=127.0.0.1 port=6001 user=u dbname=db", &env), None);
        assert_eq!(
            pw(
                "host=127.0.0.1 port=6000 user=u dbname=db password=url",
                &env
            )
            .as_deref(),
            Some("url")
        );
        let with_pgpassword = env_of(&[("HOME", home_str), ("PGPASSWORD", "envpw")]);
        assert_eq!(
            pw(
                "host=127.0.0.1 port=6000 user=u dbname=db",
                &with_pgpassword
            )
            .as_deref(),
            Some("envpw")
        );
        let other = home.join("other");
        std::fs::write(&other, "*:*:*:*:otherpw\n").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        let passfile = format!("host=h user=u passfile={}", other.display());
        assert_eq!(pw(&passfile, &env).as_deref(), Some("otherpw"));
        let via_env = env_of(&[("HOME", home_str), ("PGPASSFILE", other.to_str().unwrap())]);
        assert_eq!(pw("host=h user=u", &via_env).as_deref(), Some("otherpw"));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
