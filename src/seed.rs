//! `seed`: read (CSV) → batch → write (COPY over the pool) → record (ledger) → report.
//!
//! This module only wires the stages together: it checks the header against the catalog,
//! opens or resumes the run in the ledger (and the rejects file in reject mode), and hands a
//! CSV reader (on a blocking thread) and a COPY writer to the [`pipeline`],
//! which runs them; a dry run hands them to [`Writer::dry_run`] instead, with no ledger.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::batch::{Batch, Batcher};
use crate::catalog;
use crate::check::Checker;
use crate::connect;
use crate::error::Error;
use crate::ledger::{Ledger, RunKey};
use crate::pipeline::{self, Finished, ProduceEnd, RunOptions};
use crate::plan::{self, FormatChoice};
use crate::read::{self, CsvOptions, Source};
use crate::reject::Rejects;
use crate::report::{Console, Progress, Reporter};
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
    pub csv: CsvOptions,
    pub table: String,
    pub renames: Vec<(String, String)>,
    pub format: FormatChoice,
    pub on_conflict: OnConflict,
    pub key: Option<Vec<String>>,
    pub create_example_table: bool,
    /// Record the keys of inserted rows in the ledger, for `purge --run`.
    pub record_keys: bool,
    /// Reject mode: refused rows go to this file instead of stopping the run.
    pub rejects: Option<PathBuf>,
    /// With `rejects`: more rejected rows than this fail the run (`None`: no limit).
    pub max_errors: Option<u64>,
    /// Load in one transaction that is rolled back, with no ledger: what would happen.
    pub dry_run: bool,
    pub run: RunOptions,
}

/// Seeds `opts.table` from `opts.source`. `Err` means nothing was written (bad flags, header,
/// unreachable server); a run that started returns `Finished`, with its error if it failed.
pub async fn seed(
    db: connect::Endpoint,
    mut opts: SeedOptions,
    console: &Console,
) -> Result<Finished, Error> {
    if opts.dry_run {
        if opts.run.resume.is_some() {
            return Err(Error::Usage(
                "--dry-run cannot be combined with --resume: a dry run records nothing".into(),
            ));
        }
        // A dry run leaves no trace in the database, the ledger included.
        opts.run.ledger_schema = None;
        opts.run.connections = 1;
    }
    opts.run.check()?;
    let input = read::open(&opts.source)?;
    let pool = connect::pool(db.clone(), opts.run.connections)?;
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
    let (csv, header) = {
        let (csv_opts, source) = (opts.csv.clone(), opts.source.clone());
        tokio::task::spawn_blocking(move || read::header(input.reader, &csv_opts, &source))
            .await
            .expect("header reader panicked")?
    };
    let plan = plan::build(
        &table,
        &plan::Request {
            header: &header,
            renames: &opts.renames,
            format: opts.format,
            on_conflict: opts.on_conflict,
            key: opts.key.as_deref(),
            record_keys: opts.record_keys && opts.run.ledger_schema.is_some(),
        },
    )?;
    if opts.record_keys && opts.run.ledger_schema.is_some() && plan.recorded_key.is_none() {
        tracing::warn!(
            "the CSV covers no primary key or unique index of {}: inserted keys are not \
             recorded, so `purge --run` will not be possible for this run",
            table.display()
        );
    }
    tracing::debug!(table = %table.display(), columns = ?plan.columns, key = ?plan.key, "plan");
    let needs =
        catalog::seed_privileges(&table, &plan.columns, opts.on_conflict, plan.key.as_deref());
    catalog::require(&client, &needs).await?;
    opts.run.check_privileges(&client).await?;
    let checker = Checker::new(&table, &plan.columns);

    let key = RunKey {
        command: "seed",
        target_table: table.display(),
        input_path: path,
        input_size: size.map(|s| s as i64),
        input_fingerprint: fingerprint,
        options: serde_json::json!({
            "batch_size": opts.run.batch_size,
            "columns": plan.columns,
            "on_conflict": opts.on_conflict,
            "key": plan.key,
            "recorded_key": plan.recorded_key,
        }),
    };
    // Everything that can refuse the run comes before the ledger records it.
    let rejects = match &opts.rejects {
        None => None,
        Some(rejects_path) => {
            if std::fs::canonicalize(rejects_path)
                .is_ok_and(|p| p.display().to_string() == key.input_path)
            {
                return Err(Error::Usage(format!(
                    "--rejects {} is the input file itself",
                    rejects_path.display()
                )));
            }
            Some(Arc::new(Rejects::open(
                rejects_path,
                header.raw(),
                &opts.csv.dialect,
                opts.run.resume.is_some(),
                opts.max_errors,
            )?))
        }
    };
    let (ledger, run_id, committed) = match &opts.run.ledger_schema {
        None => (None, None, HashMap::new()),
        Some(schema) => {
            let ledger = Ledger::open(&mut client, schema).await?;
            let (run_id, committed) = ledger
                .open_run(&client, &key, &opts.run.command_line, opts.run.resume)
                .await?;
            (Some(ledger), Some(run_id), committed)
        }
    };
    let progress = Arc::new(Progress::default());
    if let (Some(rejects), Some(ledger), Some(id), Some(_)) =
        (&rejects, &ledger, run_id, opts.run.resume)
    {
        // Best effort: the run is recorded now, and a count missing here only understates
        // the summary and the budget; the run itself stays resumable.
        match ledger.rejected(&client, id).await {
            Ok(already) => {
                rejects.rejected_before(already);
                progress.rejected_before(already);
            }
            Err(e) => tracing::warn!("cannot count the rows run {id} rejected before: {e}"),
        }
    }
    drop(client);

    let workers = opts.run.workers(&pool, progress.clone());
    let reporter = Reporter::start(
        console,
        progress.clone(),
        (consumed, size),
        workers.throttle.clone(),
    );
    let batcher = Batcher {
        encoder: plan.encoder.clone(),
        checker,
        rejects: rejects.clone(),
        size: opts.run.batch_size,
        committed,
        collect_keys: plan.collect_keys.clone(),
        progress: progress.clone(),
        stop: workers.stop.clone(),
    };
    let batch_statements = ledger.as_ref().zip(run_id).map(|(l, id)| l.batches(id));
    let writer = Writer::new(
        pool.clone(),
        plan.statements,
        batch_statements,
        opts.run.session_settings(),
        rejects,
    );
    let produce = move |tx| tokio::task::spawn_blocking(move || batcher.run(csv, &tx));
    let error = if opts.dry_run {
        dry_run(produce, &writer, &progress).await
    } else {
        workers.drive(produce, writer).await
    };
    let mut summary = reporter.finish("seed", table.display());
    if opts.dry_run {
        summary.command = "seed --dry-run";
    }
    let recorded = ledger.as_ref().zip(run_id);
    Ok(pipeline::conclude(&pool, &opts.run, recorded, error, summary).await)
}

/// Runs a dry run's producer and its one writer; returns the failure, if any: the writer's
/// first, else the producer's.
async fn dry_run(
    produce: impl FnOnce(
        async_channel::Sender<Batch>,
    ) -> tokio::task::JoinHandle<Result<ProduceEnd, Error>>,
    writer: &Writer,
    progress: &Progress,
) -> Option<Error> {
    let (tx, rx) = async_channel::bounded(1);
    let producer = produce(tx);
    let written = writer.dry_run(rx, progress).await;
    let produced = match &written {
        // The producer stops at its next batch; one blocked on a quiet stdin is left behind.
        Err(_) => tokio::time::timeout(pipeline::PRODUCER_GRACE, producer)
            .await
            .unwrap_or(Ok(Ok(ProduceEnd::Stopped))),
        Ok(()) => producer.await,
    };
    written
        .err()
        .or_else(|| produced.expect("producer panicked").err())
}

async fn create_example_table(client: &tokio_postgres::Client, table: &str) -> Result<(), Error> {
    if table != EXAMPLE_TABLE {
        return Err(Error::Usage(format!(
            "--create-example-table creates the table {EXAMPLE_TABLE:?}; it cannot be combined with --table {table}"
        )));
    }
    let exists: bool = client
        .query_typed_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[(&EXAMPLE_TABLE, tokio_postgres::types::Type::TEXT)],
        )
        .await
        .map_err(|e| Error::database("looking for the example table", e))?
        .get(0);
    if !exists {
        let create = catalog::Privilege {
            privilege: "CREATE",
            on: catalog::Object::CurrentSchema,
        };
        catalog::require(client, &[create]).await?;
        client
            .batch_execute(EXAMPLE_TABLE_SQL)
            .await
            .map_err(|e| Error::database("creating the example table", e))?;
        tracing::info!("created the example table {EXAMPLE_TABLE}");
    }
    Ok(())
}
