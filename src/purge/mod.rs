//! `purge`: select (keys from CSV, a seed run's recorded keys, or a predicate) → batch →
//! delete (over the pool) → record (ledger) → report.
//!
//! Before anything is deleted it checks the selector against the catalog ([`select`]), looks
//! at every foreign key that reaches the table, checks the privileges and asks for
//! confirmation above a threshold ([`guard`]). Then it hands a producer of units and a
//! [`Deleter`] to the run engine.

mod delete;
mod guard;
mod select;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::copy::batch::{Batcher, Buffers, verify_source};
use crate::copy::encode::{Encoder, RowEncoder};
use crate::db::connect::Endpoint;
use crate::db::ledger::{Access, DIALECT, LAYOUT, Resume, RunKey};
use crate::error::Error;
use crate::input::check::Checker;
use crate::model::{Command, Invocation};
use crate::run::lease::Keeper;
use crate::run::metrics::About;
use crate::run::report::{Console, Progress, Reporter};
use crate::run::{Finished, ProduceEnd, RunOptions, Transactions, Unit, finish, start};
use delete::{DeletePlan, Deleter, PurgeUnit};
pub use select::Target;
use select::{KeyFile, PageLayout, check_recorded_resume, recorded_units, resumed_layout};

#[derive(Debug, Clone)]
pub struct PurgeOptions {
    pub target: Target,
    pub table: String,
    pub dry_run: bool,
    /// Delete without asking, whatever the count.
    pub yes: bool,
    /// Ask (on a terminal) or require `--yes` above this many rows.
    pub confirm_above: u64,
    /// Delete rows of referencing tables whose foreign keys would block, first.
    pub cascade: bool,
    pub run: RunOptions,
}

/// A producer of the purge's units for the run engine.
type Produce = Box<
    dyn FnOnce(
            async_channel::Sender<PurgeUnit>,
        ) -> tokio::task::JoinHandle<Result<ProduceEnd, Error>>
        + Send,
>;

pub async fn purge(
    db: Endpoint,
    mut opts: PurgeOptions,
    console: &Console,
) -> Result<Finished, Error> {
    let (pool, mut client) = start::connect(db.clone(), &opts.run).await?;
    if let Target::File { csv, .. } = &mut opts.target {
        csv.for_server(start::server_version(&client).await?);
    }
    let table = start::table(&client, &opts.table, "", "purge deletes from tables").await?;
    let children = guard::children(&client, &table, opts.cascade).await?;
    let needs = guard::privileges(&table, &children, &opts.target, opts.dry_run);
    let access = if opts.dry_run {
        Access::Read
    } else {
        Access::Write
    };
    start::authorize(&client, &opts.run, needs, access).await?;
    let ledger = start::ledger(&mut client, &opts.run, access).await?;
    let resumed = opts.run.resume.filter(|_| !opts.dry_run);
    let selection = select::select(&client, &table, &opts.target, ledger.as_ref(), resumed).await?;
    if !children.is_empty() && selection.key.is_empty() {
        let why = match table.inherited() {
            true => "; it has inheritance children, which its unique indexes do not cover",
            false => "",
        };
        return Err(Error::Usage(format!(
            "--cascade needs a primary key or valid unique index on {} to find the \
             referencing rows{why}",
            table.display()
        )));
    }
    // The estimate only serves the confirmation: with --yes (or a dry run) it is not worth
    // an extra pass over the file or the table.
    if !opts.dry_run && !opts.yes {
        let estimate = guard::estimate(&client, &table, &opts.target, ledger.as_ref()).await?;
        guard::confirm(&table, estimate, &opts)?;
    }

    // A --where run's relations, as measured now, and its page ranges over them.
    let measured = match &opts.target {
        Target::Where(_) => Some(select::measure(&client, &table).await?),
        _ => None,
    };
    let mut layout = measured
        .as_ref()
        .map(|m| PageLayout::new(&table, m, opts.run.batch_size));
    let mut options = serde_json::json!({
        "batch_size": opts.run.batch_size,
        "key": selection.key,
        "cascade": opts.cascade,
    });
    // A file of keys is read in a dialect a resume must read it in too.
    let file = match &opts.target {
        Target::File { source, csv, .. } => {
            options[DIALECT] = csv.recorded();
            Some((source.clone(), csv.clone()))
        }
        _ => None,
    };
    let mut run_key = RunKey {
        command: Command::Purge,
        target_table: table.display(),
        input: selection.input,
        options,
    };
    let mut resume = opts.run.resume;
    // Everything that can fail happens before the run is recorded (or marked running again),
    // so that no error leaves it `running`. A resume goes on with the run's own page ranges,
    // and only with what its committed batches say it can.
    if let (Some(ledger), Some(wanted), false, Target::Where(_) | Target::Run(_)) =
        (&ledger, resume, opts.dry_run, &opts.target)
    {
        let run = ledger.resumable(&client, &run_key, wanted.id()).await?;
        let id = run.id;
        match &measured {
            Some(measured) => {
                let resumed = resumed_layout(
                    ledger,
                    &client,
                    id,
                    &run.options,
                    &table,
                    measured,
                    opts.run.batch_size,
                )
                .await?;
                layout = Some(resumed);
            }
            None => check_recorded_resume(ledger, &client, id).await?,
        }
        // The run just checked, whatever ran since.
        resume = Some(Resume::Run(id));
    }
    let units = match (&opts.target, &layout, &measured) {
        (_, Some(layout), Some(measured)) => {
            // The run records the ranges it goes on with.
            run_key.options[LAYOUT] = serde_json::to_value(layout).expect("a layout serializes");
            layout.units(&table, measured)
        }
        (Target::Run(run), _, _) => recorded_units(&client, ledger.as_ref(), *run).await?,
        // A file's units come from its reader.
        _ => Vec::new(),
    };
    let (attempt, committed) = match (&ledger, opts.dry_run) {
        (Some(ledger), false) => {
            let batch_size = opts.run.batch_size;
            let check_input = |committed| async move {
                match file {
                    Some((source, csv)) => verify_source(source, csv, batch_size, committed).await,
                    // Nothing but a file can change.
                    None => Ok(()),
                }
            };
            let (attempt, committed) = ledger
                .open_run(
                    &client,
                    &run_key,
                    &opts.run.command_line,
                    resume,
                    opts.run.lease,
                    check_input,
                )
                .await?;
            (Some(attempt), committed)
        }
        _ => (None, HashMap::new()),
    };
    drop(client);

    let progress = Arc::new(match opts.target {
        Target::File { .. } => Progress::default(),
        _ => Progress::reading_on_commit(),
    });
    let about = About {
        invocation: Invocation {
            command: Command::Purge,
            dry_run: opts.dry_run,
        },
        table: table.display(),
        run_id: attempt.map(|a| a.run_id),
    };
    let workers = opts.run.workers(&pool, progress.clone(), about);
    let keeper = Keeper::of_run(
        db,
        ledger.as_ref(),
        attempt,
        opts.run.lease,
        workers.stop.clone(),
    );
    let plan = DeletePlan::new(&table, &selection.key, &selection.selector, &children);
    let transactions = Transactions::new(
        pool.clone(),
        opts.run.session_settings(),
        ledger.as_ref().zip(attempt).map(|(l, a)| l.batches(a)),
        opts.dry_run,
    );
    let deleter = Deleter::new(transactions, plan, opts.dry_run);
    let stop = workers.stop.clone();
    let (produce, consumed, size): (Produce, _, _) = match selection.file {
        Some(KeyFile {
            reader,
            header,
            consumed,
            size,
        }) => {
            let fields = selection
                .key
                .iter()
                .zip(KeyFile::positions(&header, &selection.key))
                .map(|(k, i)| {
                    let type_oid = table.column(k).expect("key column").type_oid;
                    (i, Encoder::for_type(type_oid))
                })
                .collect();
            let batcher = Batcher {
                encoder: RowEncoder::project(fields, true),
                checker: Checker::width_only(header.len()),
                rejects: None,
                size: opts.run.batch_size,
                committed,
                collect_keys: None,
                progress: progress.clone(),
                stop,
                input: None,
                buffers: Buffers::default(),
            };
            let produce = move |tx: async_channel::Sender<PurgeUnit>| {
                tokio::task::spawn_blocking(move || batcher.run(reader, &tx))
            };
            (Box::new(produce), consumed, size)
        }
        None => {
            let handed = Arc::new(AtomicU64::new(0));
            let size = Some(units.len() as u64);
            let counted = handed.clone();
            let produce = move |tx: async_channel::Sender<PurgeUnit>| {
                tokio::spawn(async move {
                    for unit in units {
                        counted.fetch_add(1, Ordering::Relaxed);
                        if committed.contains_key(&unit.seq()) {
                            continue;
                        }
                        if stop.load(Ordering::Relaxed) || tx.send(unit).await.is_err() {
                            return Ok(ProduceEnd::Stopped);
                        }
                    }
                    Ok(ProduceEnd::Complete)
                })
            };
            (Box::new(produce), handed, size)
        }
    };
    let reporter = Reporter::start(
        console,
        progress.clone(),
        (consumed, size),
        workers.throttle.clone(),
    );
    let error = workers.drive(produce, deleter).await;
    let invocation = Invocation {
        command: Command::Purge,
        dry_run: opts.dry_run,
    };
    let summary = reporter.finish(invocation, table.display());
    Ok(finish::conclude(&pool, &opts.run, keeper, error, summary).await)
}
