//! The shared harness of the integration tests (every module of `tests/it`).
//!
//! Every test makes its own [`TestDb`]: a fresh, uniquely named database created through an
//! admin connection (`DATABASE_URL`, else the libpq-style defaults the binary itself uses) and
//! dropped with `WITH (FORCE)` when the value goes out of scope, panics included. The binary
//! under test is run as a child process that sees only `--database-url`: every `PG*` variable
//! and `DATABASE_URL` are removed from its environment, and from psql's.
//!
//! The test-side CSV code ([`parse_csv`], [`csv_field`], [`csv_record`]) is a small,
//! independent model of PostgreSQL's CSV COPY dialect, used to build inputs and to locate
//! physical lines; it does not share code with `src/read.rs` on purpose.

pub mod bouncer;
pub mod cluster;
pub mod proxy;
pub mod rejects;
pub mod tls;
pub mod tmpfs;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::config::Host;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_provisioner");

/// The example table's columns in `fixtures/accounts.csv` order (everything but `id`).
pub const ACCOUNT_COLUMNS: [&str; 13] = [
    "external_id",
    "email",
    "username",
    "display_name",
    "password_hash",
    "role",
    "plan",
    "country",
    "is_active",
    "balance",
    "birth_date",
    "created_at",
    "metadata",
];

/// A path inside the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn fixture_path() -> PathBuf {
    repo_path("fixtures/accounts.csv")
}

pub fn fixture_bytes() -> Vec<u8> {
    fs::read(fixture_path()).expect("read fixtures/accounts.csv")
}

/// The example table's DDL, `sql/accounts.sql`.
pub fn accounts_sql() -> String {
    fs::read_to_string(repo_path("sql/accounts.sql")).expect("read sql/accounts.sql")
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

const NO_SERVER_HELP: &str = "no PostgreSQL server answered for the integration tests. Start \
the local one with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
or set DATABASE_URL to a server where this user may CREATE DATABASE";

/// The admin connection's config, resolved once the way the binary resolves its own.
fn admin_config() -> &'static tokio_postgres::Config {
    static CFG: OnceLock<tokio_postgres::Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let url = std::env::var("DATABASE_URL").ok();
        provisioner::connect::resolve(url.as_deref(), provisioner::connect::process_env)
            .map(|endpoint| endpoint.config)
            .unwrap_or_else(|e| panic!("cannot resolve the admin connection: {e}"))
    })
}

/// A connection for creating and dropping databases. When no database was named (neither
/// in `DATABASE_URL` nor PGDATABASE) and the default one (named after the user) does not
/// exist, falls back to `postgres`, as an administrator would.
fn admin_client() -> postgres::Client {
    let cfg = admin_config();
    let first = postgres::Config::from(cfg.clone()).connect(postgres::NoTls);
    match first {
        Ok(client) => client,
        Err(e) if e.code() == Some(&postgres::error::SqlState::INVALID_CATALOG_NAME) => {
            let mut fallback = cfg.clone();
            fallback.dbname("postgres");
            postgres::Config::from(fallback)
                .connect(postgres::NoTls)
                .unwrap_or_else(|e| {
                    panic!(
                        "{NO_SERVER_HELP}\n(tried {}, then dbname=postgres: {e})",
                        provisioner::connect::describe(cfg)
                    )
                })
        }
        Err(e) => panic!(
            "{NO_SERVER_HELP}\n(tried {}: {e})",
            provisioner::connect::describe(cfg)
        ),
    }
}

/// Quotes a conninfo value: `'…'` with `\` and `'` escaped.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\', '=']) {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `host=… port=… user=… dbname=<dbname> [password=…]` for the admin server.
/// The hosts of `cfg`, as a conninfo `host=` lists them (a socket directory or a name).
pub fn hosts_of(cfg: &tokio_postgres::Config) -> Vec<String> {
    cfg.get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect()
}

fn conninfo_for(dbname: &str) -> String {
    let cfg = admin_config();
    let hosts = hosts_of(cfg);
    let mut out = format!("host={}", conninfo_value(&hosts.join(",")));
    let ports: Vec<String> = cfg.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        out.push_str(&format!(" port={}", ports.join(",")));
    }
    out.push_str(&format!(
        " user={} dbname={}",
        conninfo_value(cfg.get_user().unwrap_or_default()),
        conninfo_value(dbname)
    ));
    if let Some(pw) = cfg.get_password() {
        out.push_str(&format!(
            " password={}",
            conninfo_value(&String::from_utf8_lossy(pw))
        ));
    }
    out
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `<prefix>_<pid>_<n>_<nanos>`: a name no other test of this process (`n` counts up) nor of
/// another test process (its pid, the time) uses. For databases, roles, application names,
/// scratch directories: every test runs in parallel with the others in this one process, so
/// nothing may have a fixed name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A fresh database for one test, dropped (`WITH (FORCE)`) on drop, and a scratch directory
/// for its files, removed with it.
pub struct TestDb {
    name: String,
    conninfo: String,
    dir: PathBuf,
}

impl TestDb {
    pub fn new() -> TestDb {
        let name = unique_name("prov_test");
        let mut admin = admin_client();
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let dir = std::env::temp_dir().join(&name);
        fs::create_dir_all(&dir).expect("create the test's scratch directory");
        TestDb {
            conninfo: conninfo_for(&name),
            name,
            dir,
        }
    }

    /// A fresh database holding the example table `accounts`.
    pub fn with_accounts() -> TestDb {
        let db = TestDb::new();
        db.create_accounts();
        db
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The conninfo string given to the binary as `--database-url` (and to psql as `-d`).
    pub fn url(&self) -> &str {
        &self.conninfo
    }

    /// A new connection to this database, its session time zone fixed to UTC.
    pub fn client(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&self.conninfo, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name));
        c.batch_execute("SET TimeZone = 'UTC'")
            .expect("SET TimeZone");
        c
    }

    pub fn execute(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Creates the example table from `sql/accounts.sql`.
    pub fn create_accounts(&self) {
        self.execute(&accounts_sql());
    }

    /// `SELECT count(*) FROM <table>` (the name as SQL would spell it).
    pub fn count(&self, table: &str) -> i64 {
        self.scalar_i64(&format!("SELECT count(*) FROM {table}"))
    }

    /// The single bigint (or count) the query returns.
    pub fn scalar_i64(&self, sql: &str) -> i64 {
        self.client()
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// The single text value (maybe NULL) the query returns; cast in SQL if needed.
    pub fn scalar_text(&self, sql: &str) -> Option<String> {
        self.client()
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// The first column of every row, as text (maybe NULL).
    pub fn column_text(&self, sql: &str) -> Vec<Option<String>> {
        self.client()
            .query(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Every row of `table` as JSON text of all its columns but `id` (so NULL and '' stay
    /// apart, numerics keep their scale and timestamptz are shown in UTC), sorted. Two loads of
    /// the same data give equal dumps.
    pub fn dump(&self, table: &str) -> Vec<String> {
        let mut client = self.client();
        let cols: Vec<String> = client
            .query(
                "SELECT attname::text FROM pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
                   AND attname <> 'id' ORDER BY attnum",
                &[&table],
            )
            .unwrap_or_else(|e| panic!("columns of {table}: {e}"))
            .iter()
            .map(|r| quote_ident(r.get(0)))
            .collect();
        assert!(!cols.is_empty(), "table {table} has no columns to dump");
        let sql = format!(
            "SELECT row_to_json(x)::text FROM (SELECT {} FROM {table}) x",
            cols.join(", ")
        );
        let mut rows: Vec<String> = client
            .query(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        rows.sort();
        rows
    }

    /// A path in this test's scratch directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes `bytes` to `file` in the scratch directory and returns its path.
    pub fn write(&self, file: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(file);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// `provisioner seed <input> --database-url <this db> <args…>`.
    pub fn seed(&self, input: &Path, args: &[&str]) -> Run {
        let input = input.to_str().expect("UTF-8 path");
        let mut all = vec!["seed", input, "--database-url", &self.conninfo];
        all.extend_from_slice(args);
        run_bin(&all, None)
    }

    /// `provisioner seed - --database-url <this db> <args…>` with `stdin` piped in.
    pub fn seed_stdin(&self, stdin: &[u8], args: &[&str]) -> Run {
        let mut all = vec!["seed", "-", "--database-url", &self.conninfo];
        all.extend_from_slice(args);
        run_bin(&all, Some(stdin))
    }

    /// The reference load: `psql \copy <table> (<columns>) FROM '<file>' (FORMAT csv, HEADER)`.
    pub fn psql_copy(&self, table: &str, columns: &[&str], file: &Path) {
        let file = file.to_str().expect("UTF-8 path");
        assert!(
            !file.contains('\''),
            "psql \\copy path with a quote: {file}"
        );
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        self.psql(&format!(
            "\\copy {table} ({}) FROM '{file}' WITH (FORMAT csv, HEADER)",
            cols.join(", ")
        ));
    }

    /// Runs one psql command (`-c`) against this database; panics when psql fails.
    pub fn psql(&self, command: &str) -> String {
        psql_at(&self.conninfo, command)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        match admin_client().batch_execute(&sql) {
            Ok(()) => {}
            Err(e) if std::thread::panicking() => eprintln!("{sql}: {e}"),
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// How a run of the binary ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics (showing stderr) unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} where {code} was expected\nstderr:\n{}\nstdout:\n{}",
            self.code, self.stderr, self.stdout
        );
        self
    }

    #[track_caller]
    pub fn expect_ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// The `--json` object: the last line of stdout.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no JSON on stdout; stderr:\n{}", self.stderr));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {line}"))
    }

    /// An unsigned figure of the `--json` object.
    #[track_caller]
    pub fn figure(&self, key: &str) -> u64 {
        let json = self.json();
        json.get(key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(|| panic!("JSON has no unsigned {key:?}: {json}"))
    }

    /// Every `line N` the stderr names.
    pub fn named_lines(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut rest = self.stderr.as_str();
        while let Some(at) = rest.find("line ") {
            rest = &rest[at + "line ".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse() {
                out.push(n);
            }
        }
        out
    }
}

/// Removes every `PG*` variable and `DATABASE_URL`, so only `--database-url` (or psql's `-d`)
/// says where to connect.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("PG") || key == "DATABASE_URL" {
            cmd.env_remove(&key);
        }
    }
}

/// Runs the binary with `args`; `stdin` is piped in when given, else stdin is empty.
pub fn run_bin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let chunks = stdin.map(|s| vec![s.to_vec()]);
    run_bin_chunked(args, chunks, Duration::ZERO)
}

/// Runs the binary with `args`, writing each of `chunks` to its stdin with a pause of `pause`
/// before every chunk but the first, as a slow producer at the other end of a pipe would.
pub fn run_bin_chunked(args: &[&str], chunks: Option<Vec<Vec<u8>>>, pause: Duration) -> Run {
    let mut cmd = bin_command();
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if chunks.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("spawn the provisioner binary");
    let feeder = chunks.map(|chunks| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            for (i, chunk) in chunks.iter().enumerate() {
                if i > 0 {
                    std::thread::sleep(pause);
                }
                // The child may exit before reading everything (e.g. a header error): a
                // broken pipe is its business, not the test's.
                if pipe.write_all(chunk).and_then(|()| pipe.flush()).is_err() {
                    break;
                }
            }
        })
    });
    let out = child
        .wait_with_output()
        .expect("wait for the provisioner binary");
    if let Some(feeder) = feeder {
        feeder.join().expect("stdin feeder panicked");
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

// ---------------------------------------------------------------------------------------------
// Test-side CSV, PostgreSQL's dialect
// ---------------------------------------------------------------------------------------------

/// One record: the physical line it starts on (1-based, `\r\n` counting as one line end) and
/// its fields (`None` for an unquoted empty field, i.e. NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    pub line: u64,
    pub fields: Vec<Option<String>>,
}

/// Splits `text` into records as PostgreSQL's CSV COPY would: `"` quotes (anywhere in a
/// field), `""` inside quotes is a quote, an unquoted empty field is NULL. Blank lines are
/// skipped. Panics on an unterminated quote.
pub fn parse_csv(text: &str) -> Vec<CsvRecord> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1u64;
    let mut fields: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut started = false;
    let mut start_line = 1u64;
    let end_field = |fields: &mut Vec<Option<String>>, field: &mut String, quoted: &mut bool| {
        let value = std::mem::take(field);
        fields.push(if value.is_empty() && !*quoted {
            None
        } else {
            Some(value)
        });
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        if !started {
            started = true;
            start_line = line;
        }
        let line_end = match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                    Some("\r\n")
                } else {
                    Some("\r")
                }
            }
            '\n' => Some("\n"),
            _ => None,
        };
        if let Some(le) = line_end {
            line += 1;
            if in_quotes {
                field.push_str(le);
            } else {
                let blank = fields.is_empty() && field.is_empty() && !quoted;
                if !blank {
                    end_field(&mut fields, &mut field, &mut quoted);
                    records.push(CsvRecord {
                        line: start_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                started = false;
            }
            continue;
        }
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' {
            in_quotes = true;
            quoted = true;
        } else if c == ',' {
            end_field(&mut fields, &mut field, &mut quoted);
        } else {
            field.push(c);
        }
    }
    assert!(
        !in_quotes,
        "unterminated quote in a record from line {start_line}"
    );
    if started {
        end_field(&mut fields, &mut field, &mut quoted);
        records.push(CsvRecord {
            line: start_line,
            fields,
        });
    }
    records
}

/// The file's physical lines as an editor shows them (`\r\n`, `\r` and `\n` each end one).
/// Line N is element N - 1.
pub fn physical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(std::mem::take(&mut cur));
            }
            '\n' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One field in PostgreSQL's CSV: NULL unquoted and empty, anything that needs it quoted
/// (empty, `,`, `"`, CR, LF, or `\.`), quotes doubled.
pub fn csv_field(value: Option<&str>) -> String {
    match value {
        None => String::new(),
        Some(v) if v.is_empty() || v.contains([',', '"', '\r', '\n']) || v == "\\." => {
            format!("\"{}\"", v.replace('"', "\"\""))
        }
        Some(v) => v.to_string(),
    }
}

/// One record without its line end.
pub fn csv_record<S: AsRef<str>>(fields: &[Option<S>]) -> String {
    fields
        .iter()
        .map(|f| csv_field(f.as_ref().map(AsRef::as_ref)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The header's names and the records' fields of the CSV file at `path`: a generated file,
/// to change and write back with [`csv_file`].
pub fn csv_table(path: &Path) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let text = fs::read_to_string(path).expect("read the CSV");
    let mut records = parse_csv(&text).into_iter().map(|r| r.fields);
    let header = records.next().expect("a header line");
    let names = header
        .into_iter()
        .map(|f| f.expect("a header name"))
        .collect();
    (names, records.collect())
}

/// Header and records, each ended by `eol`.
pub fn csv_file<S: std::borrow::Borrow<str>>(
    header: &[S],
    records: &[Vec<Option<String>>],
    eol: &str,
) -> String {
    let mut out = header.join(",");
    out.push_str(eol);
    for r in records {
        out.push_str(&csv_record(r));
        out.push_str(eol);
    }
    out
}

/// The fixture as records (the header excluded).
pub fn fixture_records() -> Vec<CsvRecord> {
    let text = String::from_utf8(fixture_bytes()).expect("the fixture is UTF-8");
    let mut records = parse_csv(&text);
    let header = records.remove(0);
    let names: Vec<&str> = header
        .fields
        .iter()
        .map(|f| f.as_deref().unwrap())
        .collect();
    assert_eq!(names, ACCOUNT_COLUMNS, "fixture header");
    records
}

/// Loads the fixture into `accounts` of `db` with psql, the reference.
pub fn psql_load_fixture(db: &TestDb) {
    db.psql_copy("accounts", &ACCOUNT_COLUMNS, &fixture_path());
}

/// Asserts two dumps are equal, showing the first difference rather than both whole dumps.
#[track_caller]
pub fn assert_same_rows(what: &str, got: &[String], want: &[String]) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: row {i} of the sorted dumps differs\n   got: {}\n  want: {}",
            got[i], want[i]
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} rows where {} were expected",
        got.len(),
        want.len()
    );
}

/// Creates table `reference` like `accounts` in `db`, loads the fixture into it with psql and
/// returns its dump: what every load of the fixture must equal.
pub fn fixture_reference(db: &TestDb) -> Vec<String> {
    db.execute("CREATE TABLE reference (LIKE accounts INCLUDING ALL)");
    db.psql_copy("reference", &ACCOUNT_COLUMNS, &fixture_path());
    let dump = db.dump("reference");
    assert_eq!(dump.len(), 1000, "psql loads the 1000 fixture rows");
    dump
}

// ---------------------------------------------------------------------------------------------
// Fault tests (`faults_*`): the server over TCP, runs in the background, generated data
// ---------------------------------------------------------------------------------------------

/// The admin server's TCP address: its host when `DATABASE_URL` names one, else 127.0.0.1 (a
/// unix socket's server listens there too), on its port (5432 unless told otherwise).
pub fn server_tcp_addr() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let cfg = admin_config();
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        _ => "127.0.0.1".to_string(),
    };
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(std::net::SocketAddr::is_ipv4))
        .unwrap_or_else(|| panic!("cannot resolve the server's TCP address {host}:{port}"))
}

impl TestDb {
    /// This database's conninfo, but reaching the server over TCP at `addr` (a proxy), in
    /// clear text (`sslmode=disable`): the proxy must see the protocol to find COMMITs.
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let cfg = admin_config();
        let mut out = format!(
            "host={} port={} user={} dbname={} sslmode=disable",
            addr.ip(),
            addr.port(),
            conninfo_value(cfg.get_user().unwrap_or_default()),
            conninfo_value(&self.name)
        );
        if let Some(pw) = cfg.get_password() {
            out.push_str(&format!(
                " password={}",
                conninfo_value(&String::from_utf8_lossy(pw))
            ));
        }
        out
    }

    /// Rows in the ledger's `provisioner.batches` (0 while the ledger does not exist yet).
    pub fn ledger_batches(&self) -> i64 {
        committed_batches(&mut self.client())
    }
}

/// Rows in `provisioner.batches` seen by `client` (0 while the ledger does not exist yet).
pub fn committed_batches(client: &mut postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM provisioner.batches", &[])
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// The binary under test, its environment cleared of `PG*` and `DATABASE_URL`.
pub fn bin_command() -> Command {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    cmd
}

/// `provisioner generate --count <count> --seed <seed>` into `path`.
pub fn generate_csv(path: &Path, count: u64, seed: u64) -> PathBuf {
    generate_csv_with(path, count, seed, &[])
}

/// `provisioner generate --count <count> --seed <seed> <extra…>` into `path`.
pub fn generate_csv_with(path: &Path, count: u64, seed: u64, extra: &[&str]) -> PathBuf {
    let file = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let status = bin_command()
        .args(["generate", "--count", &count.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::inherit())
        .status()
        .expect("run provisioner generate");
    assert!(status.success(), "generate failed: {status}");
    path.to_path_buf()
}

/// Waits until `cond` holds, checking every 25 ms; panics after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A path as the UTF-8 argument the binary takes.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `seed <csv> --database-url <db> <extra…>`.
pub fn seed_args<'a>(db: &'a TestDb, csv: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["seed", path_str(csv), "--database-url", db.url()];
    args.extend_from_slice(extra);
    args
}

/// A run of the binary in the background, its output collected; killed (SIGKILL) on drop if
/// it is still running, so no test leaves one behind.
pub struct Spawned {
    child: Option<std::process::Child>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Spawned {
    /// Starts `provisioner <args…>` with an empty stdin.
    pub fn start(args: &[&str]) -> Spawned {
        let mut cmd = bin_command();
        cmd.args(args);
        Spawned::spawn(cmd)
    }

    /// Starts `provisioner seed <csv> --database-url <url> <args…> --json`.
    pub fn seed(csv: &Path, url: &str, args: &[&str]) -> Spawned {
        let mut all = vec!["seed", path_str(csv), "--database-url", url];
        all.extend_from_slice(args);
        all.push("--json");
        Spawned::start(&all)
    }

    /// Starts `sh -c <script>` (e.g. a printed resume command) with a cleared environment.
    pub fn shell(script: &str) -> Spawned {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        Spawned::spawn(cmd)
    }

    /// Starts `provisioner <args…>` with its stdin a pipe; [`Spawned::take_stdin`] gives the
    /// writing end.
    pub fn start_piped(args: &[&str]) -> Spawned {
        let mut cmd = bin_command();
        cmd.args(args);
        Spawned::spawn_with(cmd, Stdio::piped())
    }

    /// The writing end of a [`Spawned::start_piped`] run's stdin.
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.child
            .as_mut()
            .and_then(|c| c.stdin.take())
            .expect("a piped stdin")
    }

    /// Starts `cmd` without `PG*` or `DATABASE_URL` in its environment, stdin empty.
    pub fn spawn(cmd: Command) -> Spawned {
        Spawned::spawn_with(cmd, Stdio::null())
    }

    fn spawn_with(mut cmd: Command, stdin: Stdio) -> Spawned {
        clean_env(&mut cmd);
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let collect = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = pipe.read_to_end(&mut out);
                out
            })
        };
        let stdout = collect(Box::new(child.stdout.take().expect("piped stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("piped stderr")));
        Spawned {
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Whether the process has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().expect("child").try_wait(), Ok(None))
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`) with kill(1).
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// Waits until `cond` holds; panics (showing the run's output) if the process exits first
    /// or `timeout` passes.
    #[track_caller]
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if cond() {
                return;
            }
            if !self.running() {
                let run = self.collect();
                panic!(
                    "the run exited (code {}) before {what}\nstderr:\n{}\nstdout:\n{}",
                    run.code, run.stderr, run.stdout
                );
            }
            if std::time::Instant::now() >= deadline {
                let run = self.kill_and_collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nstderr:\n{}",
                    run.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the exit; past `timeout` the process is killed and the test fails.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Run {
        let deadline = std::time::Instant::now() + timeout;
        while self.running() {
            if std::time::Instant::now() >= deadline {
                let run = self.kill_and_collect();
                panic!(
                    "the run did not finish within {timeout:?}\nstderr:\n{}\nstdout:\n{}",
                    run.stderr, run.stdout
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.collect()
    }

    /// SIGKILL now, then the output (its code is -1: killed by a signal).
    pub fn kill_and_collect(&mut self) -> Run {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.collect()
    }

    fn collect(&mut self) -> Run {
        let mut child = self.child.take().expect("child");
        let status = child.wait().expect("wait for the provisioner binary");
        let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.map(|h| h.join().unwrap_or_default()).unwrap_or_default())
                .into_owned()
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a signal by name (`INT`, `USR1`, `KILL`…) to `pid` with kill(1).
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pid} failed");
}

/// Runs `provisioner <args…>`, failing the test (and killing it) past `timeout`.
#[track_caller]
pub fn run_bin_bounded(args: &[&str], timeout: Duration) -> Run {
    Spawned::start(args).wait(timeout)
}

/// Runs one psql command against `conninfo`; panics when psql fails.
pub fn psql_at(conninfo: &str, command: &str) -> String {
    psql_with_env(conninfo, &[], command)
}

/// [`psql_at`] with the variables `env` (`PGTZ`, `PGOPTIONS`…) set for psql.
pub fn psql_with_env(conninfo: &str, env: &[(&str, &str)], command: &str) -> String {
    let mut cmd = Command::new("psql");
    clean_env(&mut cmd);
    cmd.envs(env.iter().copied());
    let out = cmd
        .env("PGCLIENTENCODING", "UTF8")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c"])
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql (is it on PATH?): {e}"));
    assert!(
        out.status.success(),
        "psql {command:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts `accounts` (at `conninfo`) is exactly what `csv` (the example header) holds:
/// `rows` rows, no email or external_id twice, and, row for row (all columns but `id`), what
/// psql's `\copy` of the same file loads into a scratch table.
#[track_caller]
pub fn assert_accounts_equal_csv(conninfo: &str, csv: &Path, rows: i64) {
    let mut client = postgres::Client::connect(conninfo, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to check accounts: {e}"));
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT email), count(DISTINCT external_id) FROM accounts",
            &[],
        )
        .expect("count accounts");
    let (count, emails, ids): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(count, rows, "rows in accounts");
    assert_eq!(emails, count, "duplicate emails in accounts");
    assert_eq!(ids, count, "duplicate external_ids in accounts");

    let cols = ACCOUNT_COLUMNS.join(", ");
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS csv_reference; \
             CREATE TABLE csv_reference AS SELECT {cols} FROM accounts WITH NO DATA"
        ))
        .expect("create csv_reference");
    let file = csv.to_str().expect("UTF-8 path");
    assert!(
        !file.contains('\''),
        "psql \\copy path with a quote: {file}"
    );
    psql_at(
        conninfo,
        &format!("\\copy csv_reference ({cols}) FROM '{file}' WITH (FORMAT csv, HEADER)"),
    );
    let diff = format!(
        "SELECT (SELECT count(*) FROM (SELECT {cols} FROM accounts EXCEPT ALL \
                                       SELECT {cols} FROM csv_reference) a), \
                (SELECT count(*) FROM (SELECT {cols} FROM csv_reference EXCEPT ALL \
                                       SELECT {cols} FROM accounts) b), \
                (SELECT count(*) FROM csv_reference)"
    );
    let row = client.query_one(&diff, &[]).expect("compare with the CSV");
    let (extra, missing, reference): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(reference, rows, "psql loads {rows} rows from the CSV");
    assert_eq!(
        (extra, missing),
        (0, 0),
        "accounts differs from the CSV: {extra} rows not in the file, \
         {missing} rows of the file missing"
    );
    client
        .batch_execute("DROP TABLE csv_reference")
        .expect("drop csv_reference");
}

/// A run of the binary in the background whose stdout and stderr go to files, so the test
/// can read its log while it runs. Killed (SIGKILL) on drop if still running.
pub struct Background {
    child: Option<std::process::Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    /// Starts `provisioner <args…>`; its output goes to `<name>.out` / `<name>.err` in the
    /// test's scratch directory.
    pub fn start(db: &TestDb, name: &str, args: &[&str]) -> Background {
        let stdout = db.path(&format!("{name}.out"));
        let stderr = db.path(&format!("{name}.err"));
        let file = |p: &Path| fs::File::create(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let child = bin_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(file(&stdout))
            .stderr(file(&stderr))
            .spawn()
            .expect("spawn the provisioner binary");
        Background {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// The log so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().expect("child").try_wait(), Ok(None))
    }

    /// How it exited, if it did: the code, or the signal that killed it.
    pub fn exit(&mut self) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.as_mut().expect("child").try_wait().ok()??;
        Some(match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => format!("{status}"),
        })
    }

    /// Sends a signal by name (`INT`, `USR1`…) with kill(1).
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// The output on stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits until `cond` holds of the log; panics (showing the log) if the run exits first
    /// or `timeout` passes.
    #[track_caller]
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut cond: impl FnMut(&str) -> bool) {
        self.find(what, timeout, |run| cond(&run.stderr()).then_some(()))
    }

    /// Waits until `found` finds something, as [`Background::wait_for`] does.
    #[track_caller]
    pub fn find<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(t) = found(self) {
                return t;
            }
            if let Some(how) = self.exit() {
                panic!(
                    "the run ended ({how}) before {what}\nstderr:\n{}",
                    self.stderr()
                );
            }
            if std::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the exit; past `timeout` the process is killed and the test fails with
    /// `why` and the log.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration, why: &str) -> Run {
        let deadline = std::time::Instant::now() + timeout;
        while self.running() {
            if std::time::Instant::now() >= deadline {
                let _ = self.child.as_mut().expect("child").kill();
                let _ = self.child.as_mut().expect("child").wait();
                panic!(
                    "the run did not finish within {timeout:?}: {why}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.take().expect("child").wait().expect("wait");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
