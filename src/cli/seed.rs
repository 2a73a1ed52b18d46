//! `provisioner seed`.

use clap::Args;

use std::time::Duration;

use super::{ConnectArgs, LedgerArgs, finish, redacted_command_line, runtime};
use crate::error::Error;
use crate::plan::FormatChoice;
use crate::read::Source;
use crate::report::Console;
use crate::retry::RetryPolicy;
use crate::seed::{Resume, SeedOptions, seed};
use crate::write::OnConflict;

/// Rows per batch unless --batch-size says otherwise. Measured on 1M example rows: 5,000
/// is as fast as 10,000 or 20,000 and holds a third of the memory.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 done; 1 failed (the message names the CSV line and the \
server's error; batches committed before the failure stay committed and recorded); 2 usage or \
configuration error, nothing written; 130 interrupted (Ctrl-C, SIGTERM): the message gives the \
command that resumes the run."
)]
pub struct SeedArgs {
    /// CSV file with a header line naming the target columns; .gz is decompressed; - reads stdin.
    #[arg(value_name = "FILE|-")]
    pub input: String,

    /// Target table, as SQL would name it: accounts, app.accounts, "Load Test"."Accounts".
    #[arg(long, default_value = "accounts", value_name = "NAME")]
    pub table: String,

    /// Load the CSV column CSV_COL into the table column DB_COL (repeatable).
    #[arg(long = "map", value_name = "CSV_COL=DB_COL", value_parser = parse_rename)]
    pub renames: Vec<(String, String)>,

    /// Connections to the database, and batches in flight, at most.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connections: u16,

    /// Rows per batch; each batch is one COPY in one transaction.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_parser = parse_batch_size)]
    pub batch_size: usize,

    /// COPY format: auto is binary when every column type has a binary encoder, else csv.
    /// A batch holding a value whose meaning only the server can settle (e.g. a timestamp
    /// without a UTC offset) is sent as csv either way.
    #[arg(long, value_enum, default_value_t = FormatChoice::Auto)]
    pub format: FormatChoice,

    /// What a row whose key already exists does: error fails the run naming the key and
    /// the line; skip keeps the existing row; update overwrites it.
    #[arg(long, value_enum, default_value_t = OnConflict::Error)]
    pub on_conflict: OnConflict,

    /// Conflict key for skip/update: columns of a primary key or unique index [default:
    /// update: the primary key or first unique index the CSV covers; skip: any unique conflict]
    #[arg(long, value_delimiter = ',', value_name = "COL[,COL]")]
    pub key: Option<Vec<String>>,

    /// Create the example table `accounts` (sql/accounts.sql) if it does not exist.
    #[arg(long)]
    pub create_example_table: bool,

    /// Print one JSON object with the run's figures on stdout at the end.
    #[arg(long)]
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

    /// Do not record the keys of inserted rows in the ledger. Seeding is a little faster,
    /// and `purge --run` refuses this run.
    #[arg(long)]
    pub no_record_keys: bool,

    /// Replays of one failed batch (serialization failures, deadlocks, lost connections…)
    /// before the run fails. 0 disables retries.
    #[arg(long, default_value_t = RetryPolicy::default().max_retries, value_name = "N")]
    pub max_retries: u32,

    /// Stop retrying a batch this many seconds after its first failure.
    #[arg(long, default_value_t = RetryPolicy::default().max_elapsed.as_secs(), value_name = "SECONDS")]
    pub retry_max_elapsed: u64,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((from.into(), to.into())),
        _ => Err(format!("expected CSV_COL=DB_COL, got {s:?}")),
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

fn parse_batch_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of rows from 1 to 1000000, got {s:?}"
        )),
    }
}

pub fn run(args: SeedArgs, console: &Console) -> Result<i32, Error> {
    let db = args.connect.config()?;
    let opts = SeedOptions {
        source: Source::parse(&args.input),
        table: args.table,
        renames: args.renames,
        connections: usize::from(args.connections),
        batch_size: args.batch_size,
        format: args.format,
        on_conflict: args.on_conflict,
        key: args.key,
        create_example_table: args.create_example_table,
        record_keys: !args.no_record_keys,
        ledger_schema: (!args.no_ledger).then_some(args.ledger.ledger_schema),
        resume: args.resume,
        retry: RetryPolicy {
            max_retries: args.max_retries,
            max_elapsed: Duration::from_secs(args.retry_max_elapsed),
            ..RetryPolicy::default()
        },
        command_line: redacted_command_line(),
    };
    let finished = runtime()?.block_on(seed(db, opts, console))?;
    Ok(finish(finished, args.json, console))
}
