//! `provisioner runs` and `provisioner runs show ID`.

use clap::{Args, Subcommand};

use super::{ConnectArgs, LedgerArgs, block_on, exit_codes_help};
use crate::db::connect;
use crate::db::ledger::{self, Access, LeaseShown, Ledger, Run};
use crate::error::Error;
use crate::model::Command;

#[derive(Debug, Args)]
#[command(
    after_help = exit_codes_help()
)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub show: Option<RunsCommand>,

    /// How many runs to list, newest first.
    #[arg(long, default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,

    /// Print JSON (an array, or one object for `show`) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub ledger: LedgerArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run in full: counts, batches, error, and the command that resumes it.
    Show {
        /// The run's id, as `provisioner runs` lists it.
        #[arg(value_name = "ID")]
        id: i64,
    },
}

pub fn run(args: RunsArgs) -> Result<i32, Error> {
    let db = args.connect.config()?;
    block_on(async {
        let pool = connect::pool(db.clone(), 1)?;
        let mut client = connect::check(&pool, &db).await?;
        let schema = args.ledger.ledger_schema.as_str();
        ledger::authorize(&client, Vec::new(), Some((schema, Access::Write))).await?;
        let ledger = Ledger::open(&mut client, schema, Access::Write)
            .await?
            .expect("a ledger opened for writing is there");
        match args.show {
            None => {
                let runs = ledger.runs(&client, None, args.limit).await?;
                if args.json {
                    println!("{}", serde_json::to_string(&runs).expect("runs serialize"));
                } else {
                    print_table(&runs);
                }
            }
            Some(RunsCommand::Show { id }) => {
                let run = ledger
                    .runs(&client, Some(id), 1)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::Usage(format!("no run {id} in the ledger")))?;
                let resume = (!run.finished()).then(|| run.resume_command());
                if args.json {
                    let mut value = serde_json::to_value(&run).expect("a run serializes");
                    value["resume_command"] = resume.into();
                    println!("{value}");
                } else {
                    print_run(&run, resume);
                }
            }
        }
        Ok(0)
    })?
}

fn print_table(runs: &[Run]) {
    println!(
        "{:>6}  {:<7}  {:<24}  {:<11}  {:>12}  {:<22}  {:>10}  host",
        "id", "command", "table", "status", "rows", "started", "duration"
    );
    for r in runs {
        println!(
            "{:>6}  {:<7}  {:<24}  {:<11}  {:>12}  {:<22}  {:>9.1}s  {}",
            r.id,
            r.command,
            r.target_table,
            r.status,
            r.rows(),
            r.started_at,
            r.duration_s,
            r.host.as_deref().unwrap_or("-")
        );
    }
}

/// Who runs the run now, as far as its lease tells.
fn describe_lease(lease: &LeaseShown) -> String {
    let holder = format!(
        "pid {} on {}, last seen {:.0} s ago",
        lease.pid.map_or("?".into(), |p| p.to_string()),
        lease.host.as_deref().unwrap_or("an unknown host"),
        lease.seen_ago.max(0.0)
    );
    if lease.expires_in > 0.0 {
        format!(
            "{holder}; its lease runs {:.0} s more (a --resume is refused until then, unless \
             that process is gone from its host)",
            lease.expires_in.ceil()
        )
    } else {
        format!("{holder}; its lease expired: it is gone, and --resume takes the run over")
    }
}

fn print_run(run: &Run, resume: Option<String>) {
    println!("run {} ({})", run.id, run.status);
    println!("  command:   {}", run.command_line.join(" "));
    println!("  table:     {}", run.target_table);
    println!(
        "  input:     {} ({} bytes)",
        run.input_path,
        run.input_size.map_or("unknown".into(), |s| s.to_string())
    );
    println!(
        "  started:   {} on {}",
        run.started_at,
        run.host.as_deref().unwrap_or("-")
    );
    println!(
        "  duration:  {:.1} s over {} attempt(s)",
        run.duration_s, run.attempts
    );
    if run.command == Command::Purge {
        println!(
            "  committed: {} batches: {} rows deleted, {} not found ({} keys read)",
            run.batches, run.rows_deleted, run.rows_missing, run.rows_read
        );
    } else {
        println!(
            "  committed: {} batches: {} rows inserted, {} updated, {} skipped, {} rejected \
             ({} rows read)",
            run.batches,
            run.rows_inserted,
            run.rows_updated,
            run.rows_skipped,
            run.rows_rejected,
            run.rows_read
        );
    }
    if let Some(lease) = &run.lease {
        println!("  attempt:   {}", describe_lease(lease));
    }
    if let Some(error) = &run.error {
        println!("  error:     {error}");
    }
    if let Some(cmd) = resume {
        println!("  resume:    {cmd}");
    }
}
