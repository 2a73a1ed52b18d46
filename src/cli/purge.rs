//! `provisioner purge`.

use clap::Args;

use super::{ConnectArgs, CsvArgs, RunArgs, block_on, exit_codes_help, finish};
use crate::error::Error;
use crate::input::source::Source;
use crate::purge::{PurgeOptions, Target, purge};
use crate::run::report::Console;

#[derive(Debug, Args)]
#[command(
    after_help = format!(
        "Give exactly one of FILE, --run or --where. Re-running a finished purge deletes nothing \
         and exits 0.\n\n\
         Examples:\n  \
         provisioner purge --run 12 --dry-run             # what seed run 12 inserted\n  \
         provisioner purge --run 12 --yes\n  \
         provisioner purge accounts.csv --key email\n  \
         provisioner purge --where \"email LIKE '%@loadtest.example'\" --rate 2000\n\n{}",
        exit_codes_help()
    )
)]
pub struct PurgeArgs {
    /// CSV file whose key column(s) name the rows to delete (the file used to seed works
    /// as is; other columns are ignored); .gz is decompressed; - reads stdin.
    #[arg(value_name = "FILE|-", required_unless_present_any = ["run", "where_"],
          conflicts_with_all = ["run", "where_"])]
    pub input: Option<String>,

    /// With FILE: the key columns, a primary key or valid unique index of the table (not of
    /// an inheritance parent, whose children it does not cover) [default: the primary key or
    /// the first valid unique key the CSV header covers].
    #[arg(
        help_heading = "Target and conflicts",
        long,
        value_delimiter = ',',
        value_name = "COL[,COL]",
        requires = "input"
    )]
    pub key: Option<Vec<String>>,

    /// Delete exactly the rows seed run RUN_ID inserted (not the ones it skipped or
    /// updated), by the keys it recorded in the ledger.
    #[arg(
        help_heading = "Target and conflicts",
        long,
        value_name = "RUN_ID",
        conflicts_with = "where_"
    )]
    pub run: Option<i64>,

    /// Delete the rows this SQL predicate selects, e.g. "email LIKE '%@loadtest.example'",
    /// in the table and every partition or inheritance child of it. Trusted SQL: it is put
    /// in the statement as written. Parallel batches take disjoint page ranges, so they
    /// never wait on each other.
    #[arg(
        help_heading = "Target and conflicts",
        long = "where",
        value_name = "SQL"
    )]
    pub where_: Option<String>,

    /// Table to delete from, as SQL would name it.
    #[arg(
        help_heading = "Target and conflicts",
        long,
        default_value = "accounts",
        value_name = "NAME"
    )]
    pub table: String,

    /// Count what would be deleted, batch by batch, and change nothing.
    #[arg(help_heading = "Run and retries", long)]
    pub dry_run: bool,

    /// Delete without asking, however many rows.
    #[arg(help_heading = "Target and conflicts", long, short = 'y')]
    pub yes: bool,

    /// Above this many rows, ask for confirmation on a terminal; elsewhere require --yes.
    #[arg(
        help_heading = "Target and conflicts",
        long,
        default_value_t = 1000,
        value_name = "ROWS"
    )]
    pub confirm_above: u64,

    /// Delete the rows of tables whose foreign keys would block the delete (ON DELETE NO
    /// ACTION or RESTRICT) first, in the same transaction. Without it such keys are refused.
    #[arg(help_heading = "Target and conflicts", long)]
    pub cascade: bool,

    #[command(flatten, next_help_heading = "Input")]
    pub csv: CsvArgs,

    #[command(flatten, next_help_heading = "Run and retries")]
    pub run_args: RunArgs,

    #[command(flatten, next_help_heading = "Connection")]
    pub connect: ConnectArgs,
}

pub fn run(args: PurgeArgs, console: &Console) -> Result<i32, Error> {
    let db = args.connect.config()?;
    let run = &args.run_args;
    if args.key.is_some() && args.input.is_none() {
        return Err(Error::Usage(
            "--key goes with FILE: --run uses the key its seed recorded, --where needs none".into(),
        ));
    }
    let target = match (args.input, args.run, args.where_) {
        (Some(input), None, None) => Target::File {
            source: Source::parse(&input),
            csv: args.csv.options()?,
            key: args.key,
        },
        (None, Some(id), None) => Target::Run(id),
        (None, None, Some(predicate)) => Target::Where(predicate),
        _ => {
            return Err(Error::Usage(
                "give exactly one selector: FILE, --run RUN_ID or --where SQL".into(),
            ));
        }
    };
    let opts = PurgeOptions {
        target,
        table: args.table,
        dry_run: args.dry_run,
        yes: args.yes,
        confirm_above: args.confirm_above,
        cascade: args.cascade,
        run: run.options(&args.connect)?,
    };
    let metrics = opts.run.metrics.clone();
    let finished = block_on(purge(db, opts, console))??;
    Ok(finish(finished, run.json, metrics, console))
}
