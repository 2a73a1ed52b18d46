//! Private clusters configured the way real targets are: TLS with a certificate from a CA
//! made for the test (with the `openssl` CLI), client-certificate logins, password logins
//! (scram-sha-256). Built on [`super::cluster::Cluster`]: started plain, then reconfigured
//! and restarted.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::cluster::Cluster;
use super::{Run, Spawned, bin_command};

/// A role that logs in with a client certificate (`hostssl … cert`).
pub const CERT_USER: &str = "certuser";
/// A role that logs in over TLS with a password (`hostssl … scram-sha-256`), [`SCRAM_PASSWORD`].
pub const SCRAM_USER: &str = "scramuser";
pub const SCRAM_PASSWORD: &str = "scram-over-tls";

/// A certificate authority and what it signed, in a scratch directory removed on drop.
pub struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (needed for the TLS tests): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A new CA named `name`, a server certificate for `localhost` only (DNS name, no IP)
    /// and a client certificate for [`CERT_USER`], all P-256 keys valid for two days.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(super::unique_name(&format!("prov_pki_{name}")));
        fs::create_dir_all(&dir).expect("create the PKI directory");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let subject = format!("/CN={name} test CA");
        let mut ca = vec!["req", "-x509", "-keyout", "ca.key", "-out", "ca.crt"];
        ca.extend(ec);
        ca.extend(["-days", "2", "-subj", &subject]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&dir, &ca);
        let pki = Pki { dir };
        pki.sign(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth",
        );
        pki.sign("client", CERT_USER, "extendedKeyUsage=clientAuth");
        pki
    }

    /// `<stem>.key` and `<stem>.crt` for common name `cn`, with the extensions `ext`.
    fn sign(&self, stem: &str, cn: &str, ext: &str) {
        let ext_file = format!("{stem}.ext");
        fs::write(
            self.dir.join(&ext_file),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}\n"),
        )
        .expect("write the extensions file");
        let (key, csr, crt) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.crt"),
        );
        let subject = format!("/CN={cn}");
        let mut req = vec![
            "req", "-new", "-keyout", &key, "-out", &csr, "-subj", &subject,
        ];
        req.extend([
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ]);
        openssl(&self.dir, &req);
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext_file,
            ],
        );
        fs::set_permissions(self.dir.join(&key), fs::Permissions::from_mode(0o600))
            .expect("chmod the key");
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A scratch directory to use as `HOME`: empty, so no `~/.postgresql` or `~/.pgpass`
    /// of the machine's user leaks into a test.
    pub fn home(&self) -> PathBuf {
        let home = self.dir.join("home");
        fs::create_dir_all(&home).expect("create the scratch HOME");
        home
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Writes `bytes` into the cluster's data directory, owned by the server's OS user with
/// mode `mode` (the server refuses a key others may read).
fn install(cluster: &Cluster, name: &str, bytes: &[u8], mode: u32) {
    let path = cluster.data_dir().join(name);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    let owner = fs::metadata(cluster.data_dir()).expect("stat the data directory");
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        (owner.uid(), owner.gid())
    };
    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// A private cluster where `postgres` logs in without a password and every other role over
/// TCP with scram-sha-256 only.
pub fn scram_cluster() -> Cluster {
    let cluster = Cluster::start();
    reconfigure(
        &cluster,
        "\npassword_encryption = 'scram-sha-256'\n",
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    );
    cluster
}

/// Appends `conf` to postgresql.conf, replaces pg_hba.conf with `hba`, and restarts.
pub fn reconfigure(cluster: &Cluster, conf: &str, hba: &str) {
    let conf_path = cluster.data_dir().join("postgresql.conf");
    let mut text = fs::read_to_string(&conf_path).expect("read postgresql.conf");
    text.push_str(conf);
    install(cluster, "postgresql.conf", text.as_bytes(), 0o600);
    install(cluster, "pg_hba.conf", hba.as_bytes(), 0o600);
    cluster.restart();
}

/// A private cluster with `ssl = on`, serving `pki`'s `localhost` certificate, trusting
/// its CA for client certificates, logging every connection. pg_hba: [`CERT_USER`] must log
/// in over TLS with a certificate, [`SCRAM_USER`] over TLS with a password; everyone else is
/// trusted, over TLS or not.
pub fn ssl_cluster(pki: &Pki) -> Cluster {
    let cluster = Cluster::start();
    for (file, mode) in [
        ("server.crt", 0o644),
        ("server.key", 0o600),
        ("ca.crt", 0o644),
    ] {
        let bytes = fs::read(pki.path(file)).expect("read the PKI file");
        install(&cluster, file, &bytes, mode);
    }
    reconfigure(
        &cluster,
        "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
         ssl_ca_file = 'ca.crt'\nlog_connections = on\n",
        &format!(
            "local all all trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
             host all {CERT_USER} 127.0.0.1/32 reject\n\
             hostssl all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n\
             host all {SCRAM_USER} 127.0.0.1/32 reject\n\
             host all all 127.0.0.1/32 trust\n"
        ),
    );
    cluster
        .client("postgres")
        .batch_execute(&format!(
            "CREATE ROLE {CERT_USER} LOGIN SUPERUSER; \
             CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'"
        ))
        .expect("create the certificate and password roles");
    cluster
}

/// `SELECT count(*) FROM accounts` in the cluster's database `db`.
pub fn accounts_in(cluster: &Cluster, db: &str) -> i64 {
    cluster
        .client(db)
        .query_one("SELECT count(*) FROM accounts", &[])
        .unwrap_or_else(|e| panic!("count accounts in {db}: {e}"))
        .get(0)
}

/// The one `error:` line of a run that must have failed with exit 1.
#[track_caller]
pub fn error_line(run: &Run) -> String {
    run.expect_code(1);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{}", run.stderr);
    errors[0].to_string()
}

/// Runs `provisioner <args…>` with `HOME` and the extra variables `env` (the `PG*` of the
/// test's environment removed), failing the test past 60 seconds.
#[track_caller]
pub fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = bin_command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Spawned::spawn(cmd).wait(Duration::from_secs(60))
}
