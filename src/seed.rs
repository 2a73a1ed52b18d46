//! `seed`: read (CSV) → batch → write (COPY over the pool) → record (ledger) → report.
//!
//! This module only wires the stages together: it checks the header against the catalog,
//! opens or resumes the run in the ledger, starts the reader on a blocking thread and one
//! writer task per connection, and turns their ends into one result. A permanent failure
//! closes the channel: the reader stops and batches already handed to writers still commit.
//! A first Ctrl-C or SIGTERM does the same and marks the run interrupted; a second one exits
//! at once, which the ledger makes safe too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::Config;

use crate::batch::{Batcher, ReadEnd};
use crate::catalog;
use crate::connect;
use crate::error::{EXIT_INTERRUPTED, Error};
use crate::ledger::{Ledger, RunKey, Status};
use crate::plan::{self, FormatChoice};
use crate::read::{self, CsvReader, Dialect, Record, Source};
use crate::report::{Console, Progress, Reporter, Summary};
use crate::retry::RetryPolicy;
use crate::write::{OnConflict, Writer};

/// The example table's DDL (`sql/accounts.sql`), for `--create-example-table`.
pub const EXAMPLE_TABLE_SQL: &str = include_str!("../sql/accounts.sql");
const EXAMPLE_TABLE: &str = "accounts";

/// `--resume` and `--resume RUN_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The latest unfinished run of the same input, table and options.
    Latest,
    Run(i64),
}

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub source: Source,
    pub table: String,
    pub renames: Vec<(String, String)>,
    pub connections: usize,
    pub batch_size: usize,
    pub format: FormatChoice,
    pub on_conflict: OnConflict,
    pub key: Option<Vec<String>>,
    pub create_example_table: bool,
    /// The ledger's schema; `None` runs without a ledger (no resume, no exactly-once replay).
    pub ledger_schema: Option<String>,
    pub resume: Option<Resume>,
    pub retry: RetryPolicy,
    /// The command line, password removed: stored with the run to print its resume command.
    pub command_line: Vec<String>,
}

/// How a run that started ended: its figures, and the failure if it did not finish.
#[derive(Debug)]
pub struct Finished {
    pub summary: Summary,
    pub error: Option<Error>,
}

/// Seeds `opts.table` from `opts.source`. `Err` means nothing was written (bad flags, header,
/// unreachable server); a run that started returns `Finished`, with its error if it failed.
pub async fn seed(db: Config, opts: SeedOptions, console: &Console) -> Result<Finished, Error> {
    if opts.resume.is_some() && opts.ledger_schema.is_none() {
        return Err(Error::Usage(
            "--resume needs the ledger; it cannot be combined with --no-ledger".into(),
        ));
    }
    let input = read::open(&opts.source)?;
    let pool = connect::pool(db.clone(), opts.connections)?;
    let mut client = connect::check(&pool, &db).await?;
    if opts.create_example_table {
        create_example_table(&client, &opts.table).await?;
    }
    let table = catalog::describe(&client, &opts.table)
        .await?
        .ok_or_else(|| {
            let hint = if opts.table == EXAMPLE_TABLE {
                " (--create-example-table creates it)"
            } else {
                ""
            };
            Error::Usage(format!("table {} does not exist{hint}", opts.table))
        })?;

    let (consumed, size) = (input.consumed.clone(), input.size);
    let (path, fingerprint) = (input.path.clone(), input.fingerprint.clone());
    let (csv, header) = tokio::task::spawn_blocking(move || {
        let mut csv = CsvReader::new(input.reader, Dialect::default());
        let mut header = Record::default();
        csv.read(&mut header)
            .map(|found| (csv, found.then_some(header)))
    })
    .await
    .expect("header reader panicked")?;
    let header = header.ok_or_else(|| {
        Error::Usage(format!(
            "{} is empty: expected a header line",
            opts.source.display()
        ))
    })?;
    let plan = plan::build(
        &table,
        &plan::Request {
            header: &header,
            renames: &opts.renames,
            format: opts.format,
            on_conflict: opts.on_conflict,
            key: opts.key.as_deref(),
        },
    )?;
    tracing::debug!(table = %table.display(), columns = ?plan.columns, key = ?plan.key, "plan");

    let key = RunKey {
        command: "seed",
        target_table: table.display(),
        input_path: path,
        input_size: size.map(|s| s as i64),
        input_fingerprint: fingerprint,
        options: serde_json::json!({
            "batch_size": opts.batch_size,
            "columns": plan.columns,
            "on_conflict": opts.on_conflict,
            "key": plan.key,
        }),
    };
    let (ledger, run_id, committed) = match &opts.ledger_schema {
        None => (None, None, HashMap::new()),
        Some(schema) => {
            let ledger = Ledger::open(&mut client, schema).await?;
            let (run_id, committed) = match opts.resume {
                None => (
                    ledger.start(&client, &key, &opts.command_line).await?,
                    HashMap::new(),
                ),
                Some(resume) => {
                    let wanted = match resume {
                        Resume::Latest => None,
                        Resume::Run(id) => Some(id),
                    };
                    let id = ledger.find_resumable(&client, &key, wanted).await?;
                    (id, ledger.committed(&client, id).await?)
                }
            };
            tracing::info!(
                run_id,
                resumed_batches = committed.len(),
                "run recorded in the ledger"
            );
            (Some(ledger), Some(run_id), committed)
        }
    };
    drop(client);

    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reporter = Reporter::start(console, progress.clone(), consumed, size);
    let (tx, rx) = async_channel::bounded(opts.connections);
    let signals = tokio::spawn(stop_on_signals(stop.clone(), rx.clone()));
    let reader = {
        let batcher = Batcher {
            encoder: plan.encoder.clone(),
            size: opts.batch_size,
            committed,
            progress: progress.clone(),
            stop: stop.clone(),
        };
        tokio::task::spawn_blocking(move || batcher.run(csv, &tx))
    };
    let batch_statements = ledger
        .as_ref()
        .zip(run_id)
        .map(|(l, id)| l.batch_statements(id));
    let writer = Writer::new(pool.clone(), plan.statements, batch_statements);
    let writers: Vec<_> = (0..opts.connections)
        .map(|_| {
            let (writer, rx, progress, stop) =
                (writer.clone(), rx.clone(), progress.clone(), stop.clone());
            let policy = opts.retry;
            tokio::spawn(async move {
                while let Ok(batch) = rx.recv().await {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let written = policy
                        .run(
                            || writer.write(&batch),
                            |attempt, cause, delay| {
                                progress.retried();
                                tracing::warn!(
                                    batch = batch.seq,
                                    lines = %format!("{}-{}", batch.first_line, batch.last_line),
                                    %cause,
                                    attempt,
                                    delay_ms = delay.as_millis() as u64,
                                    "batch failed; replaying it"
                                );
                            },
                        )
                        .await;
                    match written {
                        Ok(outcome) => progress.committed(&batch, outcome),
                        Err(e) => {
                            // Stop the reader and the other writers after their current batch.
                            rx.close();
                            return Err(e);
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    let mut error = None;
    for w in writers {
        if let Err(e) = w.await.expect("writer task panicked") {
            error.get_or_insert(e);
        }
    }
    let read_end = reader.await.expect("reader thread panicked");
    signals.abort();
    // A writer's failure is why the reader stopped, so it is the one to report; a signal
    // may have left batches unwritten even when the reader got to the end.
    if error.is_none() {
        match read_end {
            Err(e) => error = Some(e),
            Ok(ReadEnd::Stopped) => error = Some(Error::Interrupted),
            Ok(ReadEnd::Complete) if stop.load(Ordering::Relaxed) => {
                error = Some(Error::Interrupted)
            }
            Ok(ReadEnd::Complete) => {}
        }
    }

    let mut summary = reporter.finish(table.display());
    summary.run_id = run_id;
    summary.error = error.as_ref().map(ToString::to_string);
    let status = match &error {
        None => Status::Completed,
        Some(Error::Interrupted) => Status::Interrupted,
        Some(_) => Status::Failed,
    };
    summary.status = status.as_str();
    if let (Some(ledger), Some(run_id)) = (&ledger, run_id) {
        let finish = || async {
            let client = pool.get().await.map_err(Error::Pool)?;
            ledger
                .finish(
                    &client,
                    run_id,
                    status,
                    progress.rows_read(),
                    summary.error.as_deref(),
                )
                .await
        };
        let recorded = opts
            .retry
            .run(finish, |_, cause, _| {
                tracing::warn!(%cause, "recording the end of the run failed; retrying")
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!("the ledger could not record the end of run {run_id}: {e}");
        }
        if status != Status::Completed {
            summary.resume_command =
                Some(crate::ledger::resume_command(&opts.command_line, run_id));
        }
    }
    Ok(Finished { summary, error })
}

/// On the first Ctrl-C or SIGTERM, asks the reader and the writers to stop after the
/// batches in flight; on the second, exits at once.
async fn stop_on_signals(stop: Arc<AtomicBool>, rx: async_channel::Receiver<crate::batch::Batch>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for signals; Ctrl-C will abort without marking the run");
        return;
    };
    for first in [true, false] {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if first {
            tracing::warn!(
                "stopping: letting in-flight batches commit (press Ctrl-C again to abort at once)"
            );
            stop.store(true, Ordering::Relaxed);
            rx.close();
        } else {
            std::process::exit(EXIT_INTERRUPTED);
        }
    }
}

async fn create_example_table(client: &tokio_postgres::Client, table: &str) -> Result<(), Error> {
    if table != EXAMPLE_TABLE {
        return Err(Error::Usage(format!(
            "--create-example-table creates the table {EXAMPLE_TABLE:?}; it cannot be combined with --table {table}"
        )));
    }
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&EXAMPLE_TABLE])
        .await
        .map_err(|e| Error::database("looking for the example table", e))?
        .get(0);
    if !exists {
        client
            .batch_execute(EXAMPLE_TABLE_SQL)
            .await
            .map_err(|e| Error::database("creating the example table", e))?;
        tracing::info!("created the example table {EXAMPLE_TABLE}");
    }
    Ok(())
}
