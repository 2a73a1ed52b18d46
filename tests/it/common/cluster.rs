//! A private, throwaway PostgreSQL cluster for tests that must restart the server: `initdb`
//! into a fresh temporary directory, its own port on 127.0.0.1 and its own unix socket
//! directory, `pg_ctl restart -m fast` on demand, and `pg_ctl stop -m immediate` plus removal
//! of the directory on drop (panics included).
//!
//! The server binaries come from `PROVISIONER_TEST_PG_BIN` or the newest
//! `/usr/lib/postgresql/*/bin`. initdb refuses to run as root, so when the tests run as root
//! every server command runs as the `postgres` OS user (`runuser -u postgres --`), which owns
//! the directory. Every command is bounded in time.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The superuser initdb creates; trust authentication, no password.
pub const SUPERUSER: &str = "postgres";
/// How long any one server command (initdb, start, restart, stop) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

fn server_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROVISIONER_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/*/bin/initdb: set PROVISIONER_TEST_PG_BIN")
}

pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port on 127.0.0.1")
        .port()
}

/// Runs `cmd` to completion, killing it after `timeout`.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output();
                panic!("{what} did not finish within {timeout:?}: {out:?}");
            }
        }
    }
    child
        .wait_with_output()
        .expect("collect the command's output")
}

impl Cluster {
    /// initdb and start a new cluster; panics (with the server log) when it does not come up.
    pub fn start() -> Cluster {
        let root = std::env::temp_dir().join(super::unique_name("prov_cluster"));
        fs::create_dir_all(&root).expect("create the cluster's directory");
        let as_postgres = running_as_root();
        let mut cluster = Cluster {
            data: root.join("data"),
            log: root.join("server.log"),
            root,
            port: 0,
            bin: server_bin_dir(),
            as_postgres,
        };
        if as_postgres {
            let out = run_bounded(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(&cluster.root);
                    c
                },
                COMMAND_TIMEOUT,
            );
            assert!(out.status.success(), "chown postgres: {out:?}");
        }
        cluster.server_command(
            "initdb",
            &[
                "-D",
                cluster.data.to_str().unwrap(),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        // Throwaway data: no fsync. Only 127.0.0.1 and our own socket directory.
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(cluster.data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(
            conf,
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n\
             max_connections = 40\nshared_buffers = 32MB\n",
            cluster.root.display()
        )
        .expect("write postgresql.conf");
        // A port picked free may be taken by the time the server binds it: try a few.
        for attempt in 0..5 {
            cluster.port = free_port();
            let port_opt = format!("-p {}", cluster.port);
            let ok = cluster.try_server_command(
                "pg_ctl",
                &[
                    "-D",
                    cluster.data.to_str().unwrap(),
                    "-l",
                    cluster.log.to_str().unwrap(),
                    "-o",
                    &port_opt,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            if ok {
                return cluster;
            }
            if attempt == 4 {
                panic!("the test cluster did not start:\n{}", cluster.server_log());
            }
        }
        unreachable!()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A conninfo for `dbname` over TCP, plus `extra` (`key=value …`).
    pub fn url(&self, dbname: &str, extra: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname={dbname} {extra}",
            self.port
        )
    }

    pub fn client(&self, dbname: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(dbname, "connect_timeout=10"), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test cluster's {dbname}: {e}"))
    }

    /// Creates database `name` holding the example table `accounts`.
    pub fn create_database_with_accounts(&self, name: &str) {
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.client(name)
            .batch_execute(&super::accounts_sql())
            .expect("create accounts in the test cluster");
    }

    /// The postmaster's PID, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> u32 {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).expect("postmaster.pid");
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a PID in postmaster.pid")
    }

    /// `pg_ctl restart -m fast`, waiting until the server accepts connections again.
    pub fn restart(&self) {
        let port_opt = format!("-p {}", self.port);
        self.server_command(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                self.log.to_str().unwrap(),
                "-o",
                &port_opt,
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "restart",
            ],
        );
    }

    pub fn server_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("PG") {
                cmd.env_remove(&key);
            }
        }
        cmd.current_dir(&self.root);
        cmd
    }

    fn try_server_command(&self, program: &str, args: &[&str]) -> bool {
        let mut cmd = self.command(program);
        cmd.args(args);
        let out = run_bounded(cmd, COMMAND_TIMEOUT);
        if !out.status.success() {
            eprintln!(
                "{program} {args:?} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    fn server_command(&self, program: &str, args: &[&str]) {
        assert!(
            self.try_server_command(program, args),
            "{program} {args:?} failed; server log:\n{}",
            self.server_log()
        );
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let mut cmd = self.command("pg_ctl");
            cmd.args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w"])
                .args(["-t", "30", "stop"]);
            let _ = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}
