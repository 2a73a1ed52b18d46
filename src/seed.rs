//! `seed`: read (CSV) → batch → write (COPY over the pool) → report.
//!
//! This module only wires the stages together: it checks the header against the catalog,
//! starts the reader on a blocking thread and one writer task per connection, and turns
//! their ends into one result. The first failure closes the channel, the reader stops, and
//! batches already handed to writers still commit.

use std::sync::Arc;

use tokio_postgres::Config;

use crate::batch::{self, ReadEnd};
use crate::catalog;
use crate::connect;
use crate::error::Error;
use crate::plan::{self, FormatChoice};
use crate::read::{self, CsvReader, Dialect, Record, Source};
use crate::report::{Console, Progress, Reporter, Summary};
use crate::write::{OnConflict, Writer};

/// The example table's DDL (`sql/accounts.sql`), for `--create-example-table`.
pub const EXAMPLE_TABLE_SQL: &str = include_str!("../sql/accounts.sql");
const EXAMPLE_TABLE: &str = "accounts";

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
    let input = read::open(&opts.source)?;
    let pool = connect::pool(db.clone(), opts.connections)?;
    let client = connect::check(&pool, &db).await?;
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
    drop(client);

    let (consumed, size) = (input.consumed.clone(), input.size);
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

    let progress = Arc::new(Progress::default());
    let reporter = Reporter::start(console, progress.clone(), consumed, size);
    let (tx, rx) = async_channel::bounded(opts.connections);
    let reader = {
        let (encoder, progress, size) = (plan.encoder.clone(), progress.clone(), opts.batch_size);
        tokio::task::spawn_blocking(move || batch::run(csv, &encoder, size, &tx, &progress))
    };
    let writer = Writer::new(pool, plan.statements);
    let writers: Vec<_> = (0..opts.connections)
        .map(|_| {
            let (writer, rx, progress) = (writer.clone(), rx.clone(), progress.clone());
            tokio::spawn(async move {
                while let Ok(batch) = rx.recv().await {
                    match writer.write(&batch).await {
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
    if error.is_none() {
        // A writer failure explains any early stop; otherwise the reader's own error counts.
        match read_end {
            // `Stopped` happens only when a writer failed, which was handled above.
            Ok(ReadEnd::Complete | ReadEnd::Stopped) => {}
            Err(e) => error = Some(e),
        }
    }
    let summary = reporter.finish(table.display(), error.as_ref().map(ToString::to_string));
    Ok(Finished { summary, error })
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
