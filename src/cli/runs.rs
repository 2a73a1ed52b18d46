//! `provisioner runs` and `provisioner runs show ID`.

use clap::{Args, Subcommand};

use super::{ConnectArgs, LedgerArgs, block_on, exit_codes_help};
use crate::db::connect;
use crate::db::ledger::{self, Access, LeaseShown, Ledger, Run};
use crate::error::Error;
use crate::model::{Command, Status};
use std::io::IsTerminal;

#[derive(Debug, Args)]
#[command(
    after_help = format!(
        "Examples:\n  \
         provisioner runs --limit 5\n  \
         provisioner runs show 12\n  \
         provisioner runs show 12 --watch --every 5     # a run of many inputs, live\n  \
         provisioner runs --json | jq '.[0].id'\n\n{}",
        exit_codes_help()
    )
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

        /// Redraw the run every few seconds until it ends: per input and per host, rows,
        /// rows/s and ETA (on a terminal in place; elsewhere one block each time).
        #[arg(long)]
        watch: bool,

        /// With --watch: seconds between refreshes.
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS", requires = "watch",
              value_parser = parse_every)]
        every: f64,
    },
}

fn parse_every(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("expected seconds between 0.1 and 3600, got {s:?}")),
    }
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
            Some(RunsCommand::Show { id, watch, every }) => {
                let mut before: Option<(std::time::Instant, i64)> = None;
                let terminal = std::io::stdout().is_terminal();
                loop {
                    let run = show(&ledger, &client, id).await?;
                    let resume = (!run.finished()).then(|| run.resume_command());
                    let now = std::time::Instant::now();
                    let rate = before.map(|(then, rows)| {
                        (run.rows() - rows) as f64 / now.duration_since(then).as_secs_f64()
                    });
                    if args.json {
                        let mut value = serde_json::to_value(&run).expect("a run serializes");
                        value["resume_command"] = resume.into();
                        println!("{value}");
                    } else {
                        if watch && terminal {
                            // Home and clear: the block is drawn again in place.
                            print!("\x1b[H\x1b[2J");
                        }
                        print_run(&run, resume);
                        if !run.inputs.is_empty() {
                            print_inputs(&run, rate);
                        }
                    }
                    if !watch || run.status != Status::Running {
                        break;
                    }
                    before = Some((now, run.rows()));
                    tokio::time::sleep(std::time::Duration::from_secs_f64(every)).await;
                    if !terminal && !args.json {
                        println!();
                    }
                }
            }
        }
        Ok(0)
    })?
}

/// Run `id`, with its inputs when it is a run of many inputs.
async fn show(ledger: &Ledger, client: &tokio_postgres::Client, id: i64) -> Result<Run, Error> {
    let mut run = ledger
        .runs(client, Some(id), 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Usage(format!("no run {id} in the ledger")))?;
    run.inputs = ledger.inputs(client, id).await?;
    Ok(run)
}

/// A run of many inputs, input by input and host by host, with its pace: `rate` is the rows
/// per second since the last refresh (else over the whole run) and the ETA assumes the
/// inputs not completed hold as many rows per byte as those completed.
fn print_inputs(run: &Run, rate: Option<f64>) {
    let rate = rate.unwrap_or(run.rows() as f64 / run.duration_s.max(1e-3));
    let done: Vec<&Run> = run
        .inputs
        .iter()
        .filter(|i| i.status == Status::Completed)
        .collect();
    let total_size: i64 = run.inputs.iter().filter_map(|i| i.input_size).sum();
    let done_size: i64 = done.iter().filter_map(|i| i.input_size).sum();
    let done_rows: i64 = done.iter().map(|i| i.rows()).sum();
    let eta = (done_size > 0 && rate > 0.0 && run.status == Status::Running).then(|| {
        let rows_expected = total_size as f64 * done_rows as f64 / done_size as f64;
        (rows_expected - run.rows() as f64).max(0.0) / rate
    });
    println!(
        "  pace:      {:.0} rows/s; {} of {} inputs completed{}",
        rate,
        done.len(),
        run.inputs.len(),
        eta.map(|s| format!("; about {s:.0} s to go"))
            .unwrap_or_default()
    );
    println!(
        "  {:<32}  {:<11}  {:>12}  {:>8}  {:>8}  holder",
        "input", "status", "rows", "batches", "attempts"
    );
    // Per process (host and pid) that last held each input.
    let mut processes: Vec<(String, i64, usize)> = Vec::new();
    for i in &run.inputs {
        let holder = match (&i.lease, i.status) {
            (Some(lease), _) => format!(
                "pid {} on {}{}",
                lease.pid.map_or("?".into(), |p| p.to_string()),
                lease.host.as_deref().unwrap_or("?"),
                if lease.expires_in > 0.0 {
                    String::new()
                } else {
                    " (lease expired)".into()
                }
            ),
            (None, Status::Pending) => "-".into(),
            (None, _) => format!(
                "pid {} on {}",
                i.pid.map_or("?".into(), |p| p.to_string()),
                i.host.as_deref().unwrap_or("?")
            ),
        };
        println!(
            "  {:<32}  {:<11}  {:>12}  {:>8}  {:>8}  {holder}",
            i.input_name.as_deref().unwrap_or("?"),
            i.status,
            i.rows(),
            i.batches,
            i.attempts
        );
        if let (Some(host), Some(pid)) = (&i.host, i.pid) {
            let process = format!("pid {pid} on {host}");
            match processes.iter_mut().find(|(p, _, _)| *p == process) {
                Some(entry) => (entry.1, entry.2) = (entry.1 + i.rows(), entry.2 + 1),
                None => processes.push((process, i.rows(), 1)),
            }
        }
    }
    for (process, rows, inputs) in processes {
        println!("  {process}: {rows} rows over {inputs} input(s)");
    }
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
