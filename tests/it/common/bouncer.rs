//! A real PgBouncer in transaction pooling mode for the `pgbouncer` tests: an ini file in a
//! fresh temporary directory, a free port on 127.0.0.1, every database of the test server
//! (`* = host=… port=…`), trust authentication for the admin user, and fewer server
//! connections per database (`default_pool_size = 2`) than the runs open client connections,
//! so server connections really are shared between clients transaction by transaction. Both
//! are kept open (`min_pool_size`) and handed out in turn (`server_round_robin`), so even a
//! lone client's two consecutive round trips outside a transaction land on different server
//! connections: a named statement prepared in one and used in the next fails at once.
//!
//! The binary is `PROVISIONER_TEST_PGBOUNCER` or `pgbouncer` on PATH or `/usr/sbin/pgbouncer`
//! (Debian: `apt-get install pgbouncer`); without it the test fails and says so. PgBouncer
//! refuses to run as root, so as root it runs as the `postgres` OS user, which owns the
//! directory. It is killed, and the directory removed, on drop (panics included). A port
//! taken between picking and binding it (another test may be starting a server) is retried.

use std::fs;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;

/// Server connections per database and user: fewer than the runs' `--connections 4`.
pub const POOL_SIZE: usize = 2;

pub struct Bouncer {
    dir: PathBuf,
    port: u16,
    child: Child,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PROVISIONER_TEST_PGBOUNCER") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pgbouncer"))
        .chain([PathBuf::from("/usr/sbin/pgbouncer")])
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "the pgbouncer tests need PgBouncer, which is not installed: \
             `apt-get install pgbouncer` (or set PROVISIONER_TEST_PGBOUNCER to its binary)"
        )
    })
}

/// `id -u NAME` / `id -g NAME`.
fn id_of(flag: &str, name: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, name])
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no OS user {name:?} to run pgbouncer as (it refuses root)"))
}

impl Bouncer {
    /// Starts PgBouncer in front of the test server; panics (with its log) when it does not
    /// accept connections within 15 seconds.
    pub fn start() -> Bouncer {
        let bin = binary();
        let cfg = super::admin_config();
        let user = cfg.get_user().unwrap_or_default().to_string();
        let upstream = match cfg.get_hosts().first() {
            Some(Host::Unix(dir)) => format!(
                "host={} port={}",
                dir.display(),
                cfg.get_ports().first().copied().unwrap_or(5432)
            ),
            _ => {
                let addr = super::server_tcp_addr();
                format!("host={} port={}", addr.ip(), addr.port())
            }
        };
        let dir = std::env::temp_dir().join(super::unique_name("prov_bouncer"));
        fs::create_dir_all(&dir).expect("create the pgbouncer directory");
        let users = format!("\"{user}\" \"\"\n");
        fs::write(dir.join("userlist.txt"), users).expect("write userlist.txt");
        let owner = super::cluster::running_as_root()
            .then(|| (id_of("-u", "postgres"), id_of("-g", "postgres")));
        // A port picked free may be taken (by another test's server, proxy or bouncer) by the
        // time PgBouncer binds it: then it exits at once, and another port is tried.
        for attempt in 0..5 {
            let port = super::cluster::free_port();
            match try_start(&bin, &dir, &upstream, port, owner) {
                Ok(child) => return Bouncer { dir, port, child },
                Err(log) if attempt < 4 && log.contains("Address already in use") => {
                    eprintln!("pgbouncer could not listen on {port}, trying another port:\n{log}");
                }
                Err(log) => {
                    let _ = fs::remove_dir_all(&dir);
                    panic!("pgbouncer did not start:\n{log}");
                }
            }
        }
        unreachable!()
    }

    /// The conninfo that reaches `db` through PgBouncer.
    pub fn url(&self, db: &super::TestDb) -> String {
        db.url_via(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
    }
}

/// Starts PgBouncer on `port` with its files in `dir` (as `owner`, when given), waiting until
/// it accepts connections; its log when it exits first or does not listen in time.
fn try_start(
    bin: &Path,
    dir: &Path,
    upstream: &str,
    port: u16,
    owner: Option<(u32, u32)>,
) -> Result<Child, String> {
    let ini = format!(
        "[databases]\n\
         * = {upstream}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {dir}/userlist.txt\n\
         pool_mode = transaction\n\
         max_client_conn = 200\n\
         server_round_robin = 1\n\
         min_pool_size = {POOL_SIZE}\n\
         default_pool_size = {POOL_SIZE}\n\
         ignore_startup_parameters = extra_float_digits\n\
         logfile = {dir}/pgbouncer.log\n\
         pidfile = {dir}/pgbouncer.pid\n",
        dir = dir.display()
    );
    let ini_path = dir.join("pgbouncer.ini");
    fs::write(&ini_path, ini).expect("write pgbouncer.ini");
    let log_path = dir.join("pgbouncer.log");
    let _ = fs::remove_file(&log_path);
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let mut cmd = Command::new(bin);
    cmd.arg(&ini_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((uid, gid)) = owner {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(dir)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown the pgbouncer directory");
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("pgbouncer exited ({status}):\n{}", log()));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "pgbouncer did not listen on 127.0.0.1:{port} within 15 s:\n{}",
                log()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
