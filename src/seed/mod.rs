//! `seed`: read (CSV) → check → batch → write (COPY over the pool) → record (ledger) → report.
//!
//! This module only wires the stages together, in four steps: [`prepare`] checks the input,
//! the table, the header and every privilege before anything is recorded; the run is opened
//! (or resumed) in the ledger; a CSV reader (on a blocking thread) and a COPY [`Writer`] are
//! handed to the run engine (a dry run hands them to [`Writer::dry_run`] instead, with no
//! ledger); the run is concluded.

mod many;
mod plan;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use deadpool_postgres::{Object, Pool};

use crate::copy::batch::{Batch, Batcher, Buffers, InputTag, verify_source};
use crate::copy::encode::RowEncoder;
use crate::db::catalog::Table;
use crate::db::connect::Endpoint;
use crate::db::ledger::{Access, DIALECT, InputId, Ledger, RunKey};
use crate::db::privileges::{self, Object as On, Privilege};
use crate::error::Error;
use crate::input::check::Checker;
use crate::input::csv::{self, CsvOptions, CsvReader, Record};
use crate::input::rejects::Rejects;
use crate::input::source::{self, Input, Source};
use crate::model::{Command, Invocation};
use crate::run::concurrency::Connections;
use crate::run::lease::Keeper;
use crate::run::metrics::About;
use crate::run::report::{Console, Progress, Reporter};
use crate::run::{self, Finished, ProduceEnd, RunOptions, Transactions, finish, start};
pub use many::ManyInputs;
pub use plan::FormatChoice;
use plan::Plan;
pub use write::OnConflict;
use write::Writer;

/// The example table's DDL (`sql/accounts.sql`), for `--create-example-table`.
pub const EXAMPLE_TABLE_SQL: &str = include_str!("../../sql/accounts.sql");
const EXAMPLE_TABLE: &str = "accounts";

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
    /// A run of many inputs (`source` is then filled in from them).
    pub many: Option<ManyInputs>,
}

/// Seeds `opts.table` from `opts.source`. `Err` means nothing was written (bad flags, header,
/// unreachable server); a run that started returns `Finished`, with its error if it failed.
pub async fn seed(
    db: Endpoint,
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
        opts.run.connections = Connections::Fixed(1);
    }
    if let Some(many) = opts.many.take() {
        return many::seed(db, opts, many, console).await;
    }
    let Prepared {
        pool,
        client,
        table,
        csv,
        plan,
        input_id,
        consumed,
        rejects,
        ledger,
        ..
    } = prepare(db.clone(), &mut opts, false).await?;

    let size = input_id.size;
    let key = RunKey {
        command: Command::Seed,
        target_table: table.display(),
        input: input_id,
        options: recorded_options(&opts, &plan),
    };
    let (attempt, committed) = match &ledger {
        None => (None, HashMap::new()),
        Some(ledger) => {
            let check_input = |committed| {
                let (source, csv) = (opts.source.clone(), opts.csv.clone());
                verify_source(source, csv, opts.run.batch_size, committed)
            };
            let (attempt, committed) = ledger
                .open_run(
                    &client,
                    &key,
                    &opts.run.command_line,
                    opts.run.resume,
                    opts.run.lease,
                    check_input,
                )
                .await?;
            (Some(attempt), committed)
        }
    };
    let run_id = attempt.map(|a| a.run_id);
    let progress = Arc::new(Progress::default());
    let restored = match (&rejects, &ledger, run_id, opts.run.resume) {
        (Some(rejects), Some(ledger), Some(id), Some(_)) => {
            restore_rejects(&client, ledger, &[(id, None)], rejects, &progress).await
        }
        _ => Ok(()),
    };
    drop(client);

    let invocation = Invocation {
        command: Command::Seed,
        dry_run: opts.dry_run,
    };
    let about = About {
        invocation,
        table: table.display(),
        run_id,
    };
    let workers = opts.run.workers(&pool, progress.clone(), about);
    let keeper = Keeper::of_run(
        db,
        ledger.as_ref(),
        attempt,
        opts.run.lease,
        workers.stop.clone(),
    );
    let reporter = Reporter::start(
        console,
        progress.clone(),
        (consumed, size),
        workers.throttle.clone(),
    );
    let reading = Reading::new(&table, &plan, &rejects, &opts, &progress, &workers.stop);
    let batcher = reading.batcher(committed, None);
    let batch_ledger = ledger.as_ref().zip(attempt).map(|(l, a)| l.batches(a));
    let transactions = Transactions::new(
        pool.clone(),
        opts.run.session_settings(),
        batch_ledger,
        false,
    );
    let writer = Writer::new(transactions, plan.statements, rejects.clone());
    let produce = move |tx| tokio::task::spawn_blocking(move || batcher.run(csv, &tx));
    let error = match restored {
        Err(e) => Some(e),
        Ok(()) if opts.dry_run => dry_run(produce, &writer, &progress).await,
        Ok(()) => workers.drive(produce, writer).await,
    };
    // The last batch's rows may be the ones the rejects file could not take.
    let error = error.or_else(|| rejects.and_then(|r| r.check().err()));
    let summary = reporter.finish(invocation, table.display());
    Ok(finish::conclude(&pool, &opts.run, keeper, error, summary).await)
}

/// What a run records as its options: what fixes its batches' boundaries and meaning,
/// and how it reads its CSV (see [`RunKey::options`]).
fn recorded_options(opts: &SeedOptions, plan: &Plan) -> serde_json::Value {
    let mut options = serde_json::json!({
        "batch_size": opts.run.batch_size,
        "columns": plan.columns,
        "on_conflict": opts.on_conflict,
        "key": plan.key,
        "recorded_key": plan.recorded_key,
    });
    options[DIALECT] = opts.csv.recorded();
    options
}

/// What turns an input into batches, the same for every input of a run.
struct Reading {
    checker: Checker,
    encoder: RowEncoder,
    rejects: Option<Arc<Rejects>>,
    size: usize,
    collect_keys: Option<Vec<usize>>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    /// Shared by every input's batcher: buffers freed by one input's batches serve the next.
    buffers: Buffers,
}

impl Reading {
    fn new(
        table: &Table,
        plan: &Plan,
        rejects: &Option<Arc<Rejects>>,
        opts: &SeedOptions,
        progress: &Arc<Progress>,
        stop: &Arc<AtomicBool>,
    ) -> Self {
        Reading {
            checker: Checker::new(table, &plan.columns),
            encoder: plan.encoder.clone(),
            rejects: rejects.clone(),
            size: opts.run.batch_size,
            collect_keys: plan.collect_keys.clone(),
            progress: progress.clone(),
            stop: stop.clone(),
            buffers: Buffers::default(),
        }
    }

    /// The batcher of one input, skipping the batches `committed` (sequence number →
    /// content hash); `input` tags its batches in a run of many inputs.
    fn batcher(&self, committed: HashMap<u64, u64>, input: Option<Arc<InputTag>>) -> Batcher {
        Batcher {
            checker: self.checker.clone(),
            encoder: self.encoder.clone(),
            rejects: self.rejects.clone(),
            size: self.size,
            committed,
            collect_keys: self.collect_keys.clone(),
            progress: self.progress.clone(),
            stop: self.stop.clone(),
            input,
            buffers: self.buffers.clone(),
        }
    }
}

/// Everything checked and opened before the run is recorded.
struct Prepared {
    pool: Pool,
    client: Object,
    table: Table,
    csv: CsvReader<Box<dyn std::io::BufRead + Send>>,
    /// The input's header (or the names `--columns` gave).
    header: Record,
    plan: Plan,
    input_id: InputId,
    consumed: Arc<std::sync::atomic::AtomicU64>,
    rejects: Option<Arc<Rejects>>,
    ledger: Option<Ledger>,
}

/// Everything that can refuse the run, before the ledger records it: the input, the
/// connection, the table, the header against the table, the rejects file, and every
/// privilege, checked at once. The CSV options learn how the server's COPY reads.
async fn prepare(db: Endpoint, opts: &mut SeedOptions, many: bool) -> Result<Prepared, Error> {
    let Input {
        reader,
        id: input_id,
        consumed,
    } = source::open(&opts.source)?;
    let (pool, mut client) = start::connect(db, &opts.run).await?;
    if opts.create_example_table {
        create_example_table(&client, &opts.table).await?;
    }
    let hint = if opts.table == EXAMPLE_TABLE {
        " (--create-example-table creates it)"
    } else {
        ""
    };
    let table = start::table(&client, &opts.table, hint, "seed loads into tables").await?;
    let (name, dialect) = (table.display(), opts.csv.recorded());
    let read = (name.as_str(), input_id.path.as_str());
    start::check_dialect(&mut client, &opts.run, Command::Seed, read, &dialect).await?;
    opts.csv.for_server(start::server_version(&client).await?);
    let (csv, header) = {
        let (csv_opts, source) = (opts.csv.clone(), opts.source.clone());
        tokio::task::spawn_blocking(move || csv::header(reader, &csv_opts, &source))
            .await
            .expect("header reader panicked")?
    };
    let record_keys = opts.record_keys && opts.run.ledger_schema.is_some();
    let plan = plan::build(
        &table,
        &plan::Request {
            header: &header,
            renames: &opts.renames,
            format: opts.format,
            on_conflict: opts.on_conflict,
            key: opts.key.as_deref(),
            record_keys,
        },
    )?;
    if record_keys && let Err(why) = table.recordable_key(&plan.columns) {
        tracing::warn!(
            "{why}: inserted keys are not recorded, so `purge --run` will not be possible for \
             this run (purge by file or --where)"
        );
    }
    tracing::debug!(table = %table.display(), columns = ?plan.columns, key = ?plan.key, "plan");
    if let Some(rejects) = &opts.rejects
        && std::fs::canonicalize(rejects).is_ok_and(|p| p.display().to_string() == input_id.path)
    {
        return Err(Error::Usage(format!(
            "--rejects {} is the input file itself",
            rejects.display()
        )));
    }
    start::authorize(&client, &opts.run, plan.privileges.clone(), Access::Write).await?;
    let rejects = match &opts.rejects {
        None => None,
        Some(rejects) => Some(Arc::new(Rejects::open(
            rejects,
            header.raw(),
            &opts.csv.dialect,
            opts.run.resume.is_some(),
            opts.run.ledger_schema.is_some(),
            opts.max_errors,
            many,
        )?)),
    };
    // Last: opening the ledger may create it, which no refusal above should leave behind.
    let ledger = start::ledger(&mut client, &opts.run, Access::Write).await?;
    Ok(Prepared {
        pool,
        client,
        table,
        csv,
        header,
        plan,
        input_id,
        consumed,
        rejects,
        ledger,
    })
}

/// Rejected rows read from the ledger at a time, to write a resumed run's rejects file.
const REJECTS_PAGE: i64 = 5_000;

/// A resumed run's rejects: the rows its earlier attempts rejected count against the budget
/// and in the summary, and the rejects file is written again from the ledger (its header,
/// then every row in line order, input by input), which repairs a record a failed or
/// interrupted write tore and adds the rows the file lacks. `runs` are the run's own id, or
/// each of its inputs' with its name. A failure fails the run, which stays resumable.
async fn restore_rejects(
    client: &Object,
    ledger: &Ledger,
    runs: &[(i64, Option<&str>)],
    rejects: &Rejects,
    progress: &Progress,
) -> Result<(), Error> {
    let (mut counted, mut kept) = (0, 0);
    for &(run_id, _) in runs {
        let (c, k) = ledger.rejected(client, run_id).await?;
        (counted, kept) = (counted + c, kept + k);
    }
    rejects.rejected_before(counted);
    progress.rejected_before(counted);
    if kept < counted {
        tracing::warn!(
            "the run rejected {counted} rows and the ledger keeps {kept} of them (batches \
             committed by an older version keep none): the rejects file is appended to, not \
             written again"
        );
        return Ok(());
    }
    rejects.start_over()?;
    for &(run_id, input) in runs {
        let mut after = 0;
        loop {
            let page = ledger
                .rejected_rows(client, run_id, after, REJECTS_PAGE)
                .await?;
            rejects.write(&page, input)?;
            match page.last() {
                Some(last) if page.len() as i64 == REJECTS_PAGE => after = last.line,
                _ => break,
            }
        }
    }
    Ok(())
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
        Err(_) => tokio::time::timeout(run::PRODUCER_GRACE, producer)
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
        let create = Privilege {
            privilege: "CREATE",
            on: On::CurrentSchema,
        };
        privileges::require(client, &[create]).await?;
        client
            .batch_execute(EXAMPLE_TABLE_SQL)
            .await
            .map_err(|e| Error::database("creating the example table", e))?;
        tracing::info!("created the example table {EXAMPLE_TABLE}");
    }
    Ok(())
}
