//! `provisioner seed`.

use clap::Args;

use super::{ConnectArgs, CsvArgs, RunArgs, block_on, exit_codes_help, finish};
use crate::error::{EXIT_OK, EXIT_REJECTED, Error};
use crate::input::source::{self, Source};
use crate::run::report::Console;
use crate::seed::{FormatChoice, ManyInputs, OnConflict, SeedOptions, seed};

#[derive(Debug, Args)]
#[command(
    after_help = format!(
        "The rejects file is CSV in the input's dialect: the input's header plus rejected_line, \
         rejected_column, rejected_sqlstate, rejected_reason (and rejected_input, in a run of \
         many inputs); then each rejected record exactly as it was in the input, followed by \
         those fields.\n\n\
         Examples:\n  \
         provisioner seed accounts.csv.gz --table app.accounts\n  \
         provisioner seed accounts.csv --on-conflict skip --rejects bad.csv\n  \
         provisioner seed parts/ --parallel-inputs 2          # a run of many inputs\n  \
         provisioner seed --join 12                             # from another host\n  \
         provisioner seed accounts.csv --resume                 # after Ctrl-C or a crash\n  \
         provisioner generate --count 100000 | provisioner seed - --rate 5000\n\n{}",
        exit_codes_help()
    )
)]
pub struct SeedArgs {
    /// CSV files with a header line naming the target columns (.gz is decompressed), or
    /// directories (their *.csv and *.csv.gz files, by name); - reads stdin, alone. More
    /// than one input, or a directory, makes a run of many inputs that other processes can
    /// --join; every input needs the same header.
    #[arg(value_name = "FILE|DIR|-", required_unless_present = "join")]
    pub inputs: Vec<String>,

    /// Read up to K inputs of a run of many inputs at once, each on a thread of its own,
    /// all feeding the same connections.
    #[arg(help_heading = "Input", long, default_value_t = 1, value_name = "K", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel_inputs: u16,

    /// Join the running run of many inputs RUN_ID, from this or any host: claim inputs it
    /// has not finished, hold each by a lease (--lease), and stay until every input is
    /// completed, taking over those whose holder's lease expires. The table, mapping,
    /// conflict handling, key, batch size and CSV dialect are the run's.
    #[arg(help_heading = "Input", 
        long,
        value_name = "RUN_ID",
        conflicts_with_all = [
            "inputs", "resume", "dry_run", "table", "renames", "on_conflict", "key",
            "create_example_table", "batch_size", "delimiter", "quote", "escape", "null",
            "no_header", "columns", "no_ledger"
        ]
    )]
    pub join: Option<i64>,

    /// Where a joining or resuming process finds the run's inputs, by their names under the
    /// directory the run started from [default: that directory]. Each must be the file the
    /// run recorded (same size and first MiB).
    #[arg(help_heading = "Input", long, value_name = "DIR")]
    pub input_root: Option<std::path::PathBuf>,

    /// Target table, as SQL would name it: accounts, app.accounts, "Load Test"."Accounts".
    #[arg(
        help_heading = "Target and conflicts",
        long,
        default_value = "accounts",
        value_name = "NAME"
    )]
    pub table: String,

    /// Load the CSV column CSV_COL into the table column DB_COL (repeatable).
    #[arg(help_heading = "Target and conflicts", long = "map", value_name = "CSV_COL=DB_COL", value_parser = parse_rename)]
    pub renames: Vec<(String, String)>,

    /// COPY format: auto is binary when every column type has a binary encoder, else csv.
    /// A batch holding a value whose meaning only the server can settle (e.g. a timestamp
    /// without a UTC offset) is sent as csv either way.
    #[arg(help_heading = "Run and retries", long, value_enum, default_value_t = FormatChoice::Auto)]
    pub format: FormatChoice,

    /// What a row whose key already exists does: error fails the run naming the key and
    /// the line; skip keeps the existing row; update overwrites it.
    #[arg(help_heading = "Target and conflicts", long, value_enum, default_value_t = OnConflict::Error)]
    pub on_conflict: OnConflict,

    /// Conflict key for skip/update: columns of a primary key or valid unique index whose
    /// constraint is not deferrable [default: update: the primary key or first unique index
    /// the CSV covers; skip: any unique conflict]
    #[arg(
        help_heading = "Target and conflicts",
        long,
        value_delimiter = ',',
        value_name = "COL[,COL]"
    )]
    pub key: Option<Vec<String>>,

    /// Create the example table `accounts` (sql/accounts.sql) if it does not exist.
    #[arg(help_heading = "Target and conflicts", long)]
    pub create_example_table: bool,

    /// Do not record the keys of inserted rows in the ledger. Seeding is a little faster,
    /// and `purge --run` refuses this run. (Keys are recorded by the primary key or a valid
    /// unique key on NOT NULL columns the CSV covers; without one, none are.)
    #[arg(help_heading = "Run and retries", long)]
    pub no_record_keys: bool,

    /// Reject mode: load every good row and write each row a check or the server refuses
    /// (with its line, column, SQLSTATE and reason) to this CSV file instead of stopping
    /// at the first. The ledger keeps those rows too: a resumed run writes the file again.
    #[arg(help_heading = "Output", long, value_name = "FILE")]
    pub rejects: Option<std::path::PathBuf>,

    /// With --rejects: more rejected rows than this fail the run (exit 1) [default: no
    /// limit].
    #[arg(help_heading = "Output", long, value_name = "N", requires = "rejects")]
    pub max_errors: Option<u64>,

    /// Check the whole file and load it in one transaction that is rolled back: reports
    /// what would be inserted, skipped, updated and rejected, and writes nothing to the
    /// database (no ledger run either). With --rejects, the rejects file is written.
    #[arg(help_heading = "Run and retries", long, conflicts_with = "resume")]
    pub dry_run: bool,

    #[command(flatten, next_help_heading = "Input")]
    pub csv: CsvArgs,

    #[command(flatten, next_help_heading = "Run and retries")]
    pub run: RunArgs,

    #[command(flatten, next_help_heading = "Connection")]
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
    let many = match (&args.join, source::expand(&args.inputs)?) {
        (None, None) if args.input_root.is_some() => {
            return Err(Error::Usage(
                "--input-root is for --join, and for --resume of a run of many inputs".into(),
            ));
        }
        (None, None) => None,
        (join, given) => Some(ManyInputs {
            given,
            join: *join,
            root: args.input_root,
            parallel: args.parallel_inputs.into(),
        }),
    };
    let single = args.inputs.first().map_or("-", String::as_str);
    let opts = SeedOptions {
        source: Source::parse(single),
        csv: args.csv.options()?,
        table: args.table,
        renames: args.renames,
        format: args.format,
        on_conflict: args.on_conflict,
        key: args.key,
        create_example_table: args.create_example_table,
        record_keys: !args.no_record_keys,
        rejects: args.rejects,
        max_errors: args.max_errors,
        dry_run: args.dry_run,
        run: run.options(&args.connect)?,
        many,
    };
    let metrics = opts.run.metrics.clone();
    let finished = block_on(seed(db, opts, console))??;
    let rejected = finished.summary.rows_rejected();
    Ok(match finish(finished, run.json, metrics, console) {
        EXIT_OK if rejected > 0 => EXIT_REJECTED,
        code => code,
    })
}
