//! `provisioner seed`.

use clap::Args;

use super::{ConnectArgs, CsvArgs, RunArgs, block_on, finish};
use crate::error::Error;
use crate::plan::FormatChoice;
use crate::read::Source;
use crate::report::Console;
use crate::seed::{SeedOptions, seed};
use crate::write::OnConflict;

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

    /// Do not record the keys of inserted rows in the ledger. Seeding is a little faster,
    /// and `purge --run` refuses this run.
    #[arg(long)]
    pub no_record_keys: bool,

    #[command(flatten)]
    pub csv: CsvArgs,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((from.into(), to.into())),
        _ => Err(format!("expected CSV_COL=DB_COL, got {s:?}")),
    }
}

pub fn run(args: SeedArgs, console: &Console) -> Result<i32, Error> {
    let db = args.connect.config()?;
    let run = &args.run;
    let opts = SeedOptions {
        source: Source::parse(&args.input),
        csv: args.csv.options()?,
        table: args.table,
        renames: args.renames,
        format: args.format,
        on_conflict: args.on_conflict,
        key: args.key,
        create_example_table: args.create_example_table,
        record_keys: !args.no_record_keys,
        run: run.options()?,
    };
    let finished = block_on(seed(db, opts, console))??;
    Ok(finish(finished, run.json, console))
}
