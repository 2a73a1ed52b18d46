//! The command line: clap structs, one file per subcommand, and the dispatch that turns
//! parsed flags into library calls and an exit code.

mod completions;
mod generate;
mod purge;
mod runs;
mod seed;

use clap::{Args, Parser, Subcommand};

use std::sync::Arc;
use std::time::Duration;

use crate::db::connect;
use crate::db::ledger::{DEFAULT_SCHEMA, Resume};
use crate::db::retry::RetryPolicy;
use crate::error::{EXIT_CODES, EXIT_FAILED, Error};
use crate::input::csv::{CsvOptions, Dialect};
use crate::run::concurrency::Connections;
use crate::run::metrics::Server;
use crate::run::report::{Console, LogFormat, ProgressMode};
use crate::run::throttle::{self, ThrottleOptions};
use crate::run::{Finished, RunOptions};

/// Seed PostgreSQL with test accounts from CSV: fast, resumable, never a row lost or twice.
#[derive(Debug, Parser)]
#[command(
    name = "provisioner",
    version,
    max_term_width = 100,
    after_help = format!("{}\nEach subcommand's --help says more.", exit_codes_help())
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output: -v debug, -vv trace (PROVISIONER_LOG=filter overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// How a run shows its progress on stderr.
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto,
          value_name = "WHEN")]
    pub progress: ProgressMode,

    /// How log lines are written on stderr (colour follows NO_COLOR, CLICOLOR=0 and
    /// TERM=dumb).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text,
          value_name = "FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load account specs from CSV (files, .gz files, directories of them, or - for stdin)
    /// into a table.
    Seed(seed::SeedArgs),
    /// Delete test accounts in batches: the keys in a CSV file, exactly the rows a seed run
    /// inserted, or the rows a predicate selects.
    Purge(purge::PurgeArgs),
    /// Write N realistic, deterministic rows as CSV to stdout: accounts for the example
    /// table, or rows any table accepts (--table), with logins for a load test.
    Generate(generate::GenerateArgs),
    /// List the runs recorded in the ledger, or show one with `runs show ID`.
    Runs(runs::RunsArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions(completions::CompletionsArgs),
    /// Write the man pages (provisioner.1, provisioner-seed.1, …) into DIR: for packaging.
    #[command(hide = true)]
    Man(completions::ManArgs),
}

/// Where to connect. Anything the URL leaves out comes from PGHOST, PGPORT, PGUSER,
/// PGPASSWORD, PGPASSFILE (or ~/.pgpass), PGDATABASE, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT,
/// PGSSLKEY, PGAPPNAME, PGCONNECT_TIMEOUT, then psql's defaults. PGOPTIONS, PGTZ, PGDATESTYLE
/// and PGGEQO set up every session as they do psql's.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// postgres://user@host:port/db or "host=… dbname=…" [default: PG* variables, then the
    /// local socket as the OS user]
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL",
        global = true
    )]
    pub database_url: Option<String>,

    /// Give up connecting after this many seconds: TCP connect, TLS and login together, per
    /// host tried [default: connect_timeout in the URL, else PGCONNECT_TIMEOUT, else 30]
    #[arg(long, value_name = "SECONDS", global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: Option<u64>,
}

impl ConnectArgs {
    fn config(&self) -> Result<connect::Endpoint, Error> {
        self.endpoint(self.database_url.as_deref())
    }

    /// `url` resolved like --database-url, --connect-timeout included (--replica-url too).
    fn endpoint(&self, url: Option<&str>) -> Result<connect::Endpoint, Error> {
        let mut endpoint = connect::resolve(url, connect::process_env)?;
        if let Some(seconds) = self.connect_timeout {
            endpoint
                .config
                .connect_timeout(Duration::from_secs(seconds));
        }
        Ok(endpoint)
    }
}

/// Where the run ledger lives.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// Schema of the run ledger (runs and committed batches) in the target database; created
    /// and migrated automatically.
    #[arg(long, default_value = DEFAULT_SCHEMA, value_name = "SCHEMA", global = true)]
    pub ledger_schema: String,
}

/// Rows per batch unless --batch-size says otherwise. Measured on 1M example rows: 5,000
/// is as fast as 10,000 or 20,000 and holds a third of the memory.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;

/// How to read a CSV file: COPY's options, and the columns of a file without a header.
#[derive(Debug, Args)]
pub struct CsvArgs {
    /// Field delimiter, one byte (COPY's DELIMITER).
    #[arg(long, default_value = ",", value_name = "CHAR", value_parser = one_byte)]
    pub delimiter: u8,

    /// Quote character, one byte (COPY's QUOTE).
    #[arg(long, default_value = "\"", value_name = "CHAR", value_parser = one_byte)]
    pub quote: u8,

    /// Escape character inside quotes, one byte (COPY's ESCAPE) [default: the quote].
    #[arg(long, value_name = "CHAR", value_parser = one_byte)]
    pub escape: Option<u8>,

    /// An unquoted field equal to this is NULL (COPY's NULL); a quoted one never is.
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub null: String,

    /// The file has no header line: every line is data, and --columns names the columns.
    #[arg(long, requires = "columns")]
    pub no_header: bool,

    /// With --no-header: the column names, in the file's order.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "COL,COL,…",
        requires = "no_header"
    )]
    pub columns: Option<Vec<String>>,
}

impl CsvArgs {
    fn options(&self) -> Result<CsvOptions, Error> {
        let dialect = Dialect {
            delimiter: self.delimiter,
            quote: self.quote,
            escape: self.escape.unwrap_or(self.quote),
            null: self.null.clone().into_bytes(),
        };
        let specials = [dialect.delimiter, dialect.quote, b'\n', b'\r'];
        if dialect.delimiter == dialect.quote || dialect.null.iter().any(|b| specials.contains(b)) {
            return Err(Error::Usage(
                "--delimiter and --quote must differ, and --null cannot hold either or a line end"
                    .into(),
            ));
        }
        Ok(CsvOptions {
            dialect,
            columns: self.columns.clone(),
            // The command sets it from the server's version, once connected.
            end_marker: false,
        })
    }
}

fn one_byte(s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [b] if !matches!(b, b'\n' | b'\r') => Ok(*b),
        _ => Err(format!("expected one ASCII character, got {s:?}")),
    }
}

/// What every run (seed, purge) takes: parallelism, batching, ledger, retries, output.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Connections to the database, and batches in flight, at most: a number, or auto, which
    /// starts with 2 and adds one while throughput grows by more than 8 % (up to
    /// --max-connections), keeping the count within one of the best; the bar shows it.
    #[arg(long, default_value = "auto", value_name = "N|auto", value_parser = parse_connections)]
    pub connections: Count,

    /// With --connections auto: the most connections it may open.
    #[arg(long, default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub max_connections: u16,

    /// Rows (purge: keys) per batch; each batch is one transaction, one ledger row and the
    /// unit of retry.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_name = "N", value_parser = parse_batch_size)]
    pub batch_size: usize,

    /// Print one JSON object with the run's figures on stdout at the end.
    #[arg(help_heading = "Output", long)]
    pub json: bool,

    /// Continue the latest unfinished run of this input, table and batching options (or run
    /// RUN_ID), skipping the batches it committed. Refused if the input changed.
    #[arg(long, value_name = "RUN_ID", num_args = 0..=1, default_missing_value = "latest",
          value_parser = parse_resume)]
    pub resume: Option<Resume>,

    /// Do not record the run in the ledger: no resume, and a batch whose COMMIT outcome is
    /// unknown (connection lost during COMMIT) cannot be told apart from one that failed.
    #[arg(long, conflicts_with = "resume")]
    pub no_ledger: bool,

    #[command(flatten)]
    pub ledger: LedgerArgs,

    /// How long this attempt's hold on its run (a lease in the ledger) lasts unless renewed;
    /// it is renewed every third of that while the run goes on. A --resume of a run whose
    /// lease is live is refused: on the same host it takes over at once when the holder's
    /// process is gone (kill -9), from another host once the lease expired.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease: u64,

    /// Replays of one failed batch (serialization failures, deadlocks, lost connections,
    /// lock timeouts…) before the run fails. 0 disables retries.
    #[arg(long, default_value_t = RetryPolicy::default().max_retries, value_name = "N")]
    pub max_retries: u32,

    /// Stop retrying a batch this many seconds after its first failure.
    #[arg(long, default_value_t = RetryPolicy::default().max_elapsed.as_secs(), value_name = "SECONDS")]
    pub retry_max_elapsed: u64,

    /// Longest wait for a lock, per statement (SET LOCAL lock_timeout); a lock timeout is
    /// retried. 0 leaves the server's (or role's) setting.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub lock_timeout: u64,

    /// Longest run of one statement (SET LOCAL statement_timeout). 0: the server's setting.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub statement_timeout: u64,

    /// Longest time one batch may take on the client's clock, however the server's timeouts
    /// are set: past it the batch's connection is dropped (its transaction dies with it) and
    /// the batch is retried. Guards against a COPY stalled on the network, which
    /// statement_timeout does not end.
    #[arg(long, default_value_t = DEFAULT_BATCH_TIMEOUT_S, value_name = "SECONDS",
          value_parser = parse_seconds)]
    pub batch_timeout: f64,

    /// Rows per second at most, across all connections: a smooth global cap.
    #[arg(help_heading = "Throttling", long, value_name = "ROWS_PER_SEC", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,

    /// While batches take longer than this to commit, halve the rate (from the achieved rate
    /// when there is no --rate); recover it gradually when they are fast again.
    #[arg(help_heading = "Throttling", long, value_name = "MS")]
    pub max_batch_latency: Option<u64>,

    /// Pause between batches while a standby in pg_stat_replication replays more than this
    /// many seconds behind.
    #[arg(help_heading = "Throttling", long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub max_replica_lag: Option<f64>,

    /// With --max-replica-lag: the standby to watch, as a URL or conninfo (its password is
    /// never shown) [default: every standby in the primary's pg_stat_replication].
    #[arg(
        help_heading = "Throttling",
        long,
        value_name = "URL",
        requires = "max_replica_lag"
    )]
    pub replica_url: Option<String>,

    /// Pause between batches while this file exists (the operator's emergency brake).
    /// SIGUSR1 pauses and SIGUSR2 resumes too.
    #[arg(help_heading = "Throttling", long, value_name = "PATH")]
    pub pause_file: Option<std::path::PathBuf>,

    /// Serve the run's metrics for Prometheus at http://HOST:PORT/metrics while it lasts: rows
    /// read, written, skipped and rejected, batches, retries by cause, the current rate, the
    /// throttle's state, connections in use and batch latencies, labelled with the command,
    /// table and run id. An address in use is refused (exit 2) before anything is written;
    /// port 0 takes a free one, which the log names. Use 127.0.0.1 unless others must scrape.
    #[arg(help_heading = "Output", long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,

    /// With --metrics-addr: go on serving the final figures this many seconds after the run
    /// ended and printed its summary, so that the last scrape sees them (Ctrl-C ends it).
    #[arg(help_heading = "Output", long, default_value_t = 0, value_name = "SECONDS",
          requires = "metrics_addr", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub metrics_linger: u64,
}

impl RunArgs {
    fn options(&self, connect: &ConnectArgs) -> Result<RunOptions, Error> {
        let replica = self
            .replica_url
            .as_deref()
            .map(|url| connect.endpoint(Some(url)))
            .transpose()?;
        Ok(RunOptions {
            connections: match self.connections {
                Count::Fixed(n) => Connections::Fixed(usize::from(n)),
                Count::Auto => Connections::Auto {
                    max: usize::from(self.max_connections),
                },
            },
            batch_size: self.batch_size,
            ledger_schema: (!self.no_ledger).then(|| self.ledger.ledger_schema.clone()),
            resume: self.resume,
            retry: RetryPolicy {
                max_retries: self.max_retries,
                max_elapsed: Duration::from_secs(self.retry_max_elapsed),
                ..RetryPolicy::default()
            },
            throttle: ThrottleOptions {
                rate: self.rate,
                max_batch_latency: self.max_batch_latency.map(Duration::from_millis),
                max_replica_lag: self.max_replica_lag.map(Duration::from_secs_f64),
                replica,
                pause_file: self.pause_file.clone(),
            },
            lock_timeout: Duration::from_millis(self.lock_timeout),
            statement_timeout: Duration::from_millis(self.statement_timeout),
            batch_timeout: Duration::from_secs_f64(self.batch_timeout),
            command_line: redacted_command_line(),
            lease: Duration::from_secs(self.lease),
            metrics: self
                .metrics_addr
                .as_deref()
                .map(|addr| Server::bind(addr, Duration::from_secs(self.metrics_linger)))
                .transpose()?,
        })
    }
}

/// `--connections`: tuned while the run goes, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Auto,
    Fixed(u16),
}

/// `--connections`: `auto` or a count from 1 to 256.
fn parse_connections(s: &str) -> Result<Count, String> {
    match s {
        "auto" => Ok(Count::Auto),
        n => match n.parse::<u16>() {
            Ok(n) if (1..=256).contains(&n) => Ok(Count::Fixed(n)),
            _ => Err(format!(
                "expected auto or a number from 1 to 256, got {n:?}"
            )),
        },
    }
}

fn parse_resume(s: &str) -> Result<Resume, String> {
    match s {
        "latest" => Ok(Resume::Latest),
        id => id
            .parse()
            .map(Resume::Run)
            .map_err(|_| format!("expected a run id, got {id:?}")),
    }
}

/// `--batch-timeout`'s default: far beyond a healthy batch (a 5,000-row batch commits in
/// well under a second), short enough that a stalled one does not hold the run for long.
pub const DEFAULT_BATCH_TIMEOUT_S: f64 = 300.0;

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n > 0.0 && n <= 86_400.0 => Ok(n),
        _ => Err(format!(
            "expected seconds, more than 0 and at most 86400, got {s:?}"
        )),
    }
}

fn parse_batch_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of rows from 1 to 1000000, got {s:?}"
        )),
    }
}

/// Flags whose value is a connection string, which may hold a password.
const CONNECTION_FLAGS: [&str; 2] = ["--database-url", "--replica-url"];

/// The process's command line with the password of any --database-url or --replica-url
/// removed.
fn redacted_command_line() -> Vec<String> {
    let mut out = Vec::new();
    let mut redact_next = false;
    for arg in std::env::args() {
        if redact_next {
            out.push(connect::redact(&arg));
            redact_next = false;
        } else if let Some((flag, url)) = arg
            .split_once('=')
            .filter(|(flag, _)| CONNECTION_FLAGS.contains(flag))
        {
            out.push(format!("{flag}={}", connect::redact(url)));
        } else {
            redact_next = CONNECTION_FLAGS.contains(&arg.as_str());
            out.push(arg);
        }
    }
    out
}

impl Cli {
    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(2) as i8
        }
    }
}

/// The exit codes as every `--help` ends with them: one source, [`EXIT_CODES`].
fn exit_codes_help() -> String {
    let mut out = String::from("Exit codes:");
    for (code, meaning) in EXIT_CODES {
        out.push_str(&format!("\n  {code:>3}  {meaning}"));
    }
    out
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli, console: &Console) -> i32 {
    let result = match cli.command {
        Command::Seed(args) => seed::run(args, console),
        Command::Purge(args) => purge::run(args, console),
        Command::Generate(args) => generate::run(args),
        Command::Runs(args) => runs::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => completions::run_man(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            console.error(&e.to_string());
            e.exit_code()
        }
    }
}

/// Runs `work` on a fresh runtime. The runtime is not waited for at the end: a reader left
/// blocked on a quiet stdin after a stop must not hold the process.
fn block_on<F: std::future::Future>(work: F) -> Result<F::Output, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let output = runtime.block_on(async {
        throttle::listen_for_pause_signals();
        work.await
    });
    runtime.shutdown_background();
    Ok(output)
}

/// Prints the summary (human on stderr, JSON on stdout) and says how the run ended; then
/// serves the final metrics for `--metrics-linger`, if asked.
fn finish(finished: Finished, json: bool, metrics: Option<Arc<Server>>, console: &Console) -> i32 {
    let summary = &finished.summary;
    if let Some(metrics) = &metrics {
        metrics.ended(summary.status);
    }
    if let Some(e) = &finished.error {
        console.error(&e.to_string());
    }
    if let Some(cmd) = &summary.resume_command {
        console.eprintln(&format!("resume with: {cmd}"));
    }
    if !console.quiet() {
        console.eprintln(&summary.human());
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(summary).expect("a summary always serializes")
        );
    }
    if let Some(metrics) = metrics {
        let _ = block_on(metrics.linger());
    }
    finished.error.map_or(0, |e| e.exit_code().max(EXIT_FAILED))
}
