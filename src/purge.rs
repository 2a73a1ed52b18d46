//! `purge`: select (keys from CSV, a seed run's recorded keys, or a predicate) → batch →
//! delete (over the pool) → record (ledger) → report.
//!
//! Before anything is deleted it checks the selector against the catalog, looks at every
//! foreign key that reaches the table (refusing the ones that would block unless
//! `--cascade`, warning about unindexed ones), estimates how many rows will go and asks for
//! confirmation above a threshold. Then it hands a producer and a [`Deleter`] to the
//! [`pipeline`].

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::Batcher;
use crate::catalog::{self, Reference, Table, quote_ident};
use crate::connect;
use crate::delete::{DeletePlan, Deleter, PurgeUnit, Selector};
use crate::encode::{Encoder, RowEncoder};
use crate::error::Error;
use crate::ledger::{self, Ledger, RunKey};
use crate::pipeline::{self, Finished, ProduceEnd, RunOptions};
use crate::read::{self, CsvOptions, Record, Source};
use crate::report::{Console, Progress, Reporter};
use crate::seed::Resume;

/// What `purge` deletes.
#[derive(Debug, Clone)]
pub enum Target {
    /// The keys in a CSV file (`key`: columns, default the primary key or the unique key
    /// the CSV covers).
    File {
        source: Source,
        csv: CsvOptions,
        key: Option<Vec<String>>,
    },
    /// Exactly the rows a seed run inserted.
    Run(i64),
    /// Rows matching a trusted SQL predicate.
    Where(String),
}

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

pub async fn purge(
    db: connect::Endpoint,
    opts: PurgeOptions,
    console: &Console,
) -> Result<Finished, Error> {
    opts.run.check()?;
    let pool = connect::pool(db.clone(), opts.run.connections)?;
    let mut client = connect::check(&pool, &db).await?;
    let table = catalog::describe(&client, &opts.table)
        .await?
        .ok_or_else(|| Error::Usage(format!("table {} does not exist", opts.table)))?;
    let references = catalog::references(&client, table.oid).await?;
    let children = plan_references(&table, &references, opts.cascade)?;
    // Every missing privilege named at once: the target's and those of the children
    // --cascade deletes from.
    let mut needs = catalog::purge_privileges(&table, opts.dry_run);
    needs.extend(catalog::cascade_privileges(&children, opts.dry_run));
    catalog::require(&client, &needs).await?;
    opts.run.check_privileges(&client).await?;
    let ledger = match &opts.run.ledger_schema {
        // A dry run changes nothing, the ledger included: it only reads one that exists.
        Some(schema) if opts.dry_run => Ledger::existing(&client, schema).await?,
        Some(schema) => Some(Ledger::open(&mut client, schema).await?),
        None => None,
    };

    // What to delete by, and the producer's input.
    let mut file = None;
    let (key, selector, run_key_input) = match &opts.target {
        Target::File { source, csv, key } => {
            let input = read::open(source)?;
            let (reader, header) = {
                let (csv, source) = (csv.clone(), source.clone());
                tokio::task::spawn_blocking(move || read::header(input.reader, &csv, &source))
                    .await
                    .expect("header reader panicked")?
            };
            let key = file_key(&table, &header, key.as_deref())?;
            let identity = (input.path.clone(), input.size, input.fingerprint.clone());
            file = Some((reader, header, key.clone(), input.consumed, input.size));
            (key, Selector::File, identity)
        }
        Target::Run(run) => {
            let ledger = ledger.as_ref().ok_or_else(|| {
                Error::Usage(
                    "purge --run needs the ledger (none found, or --no-ledger given)".into(),
                )
            })?;
            let key = ledger.recorded_key(&client, *run, &table.display()).await?;
            (
                key,
                Selector::Run {
                    ledger: ledger.quoted_schema().to_string(),
                },
                (format!("run:{run}"), None, String::new()),
            )
        }
        Target::Where(predicate) => {
            check_predicate(&client, &table, predicate).await?;
            let key = table
                .unique_keys
                .first()
                .map(|u| u.columns.clone())
                .unwrap_or_default();
            (
                key,
                Selector::Where {
                    predicate: predicate.clone(),
                },
                (format!("where:{predicate}"), None, String::new()),
            )
        }
    };

    if !children.is_empty() && key.is_empty() {
        return Err(Error::Usage(format!(
            "--cascade needs a primary key or unique index on {} to find the referencing rows",
            table.display()
        )));
    }
    // The estimate only serves the confirmation: with --yes (or a dry run) it is not worth
    // an extra pass over the file or the table.
    if !opts.dry_run && !opts.yes {
        let estimate = estimate(&client, &table, &opts, ledger.as_ref()).await?;
        confirm(&table, estimate, &opts)?;
    }

    // A --where run's page ranges, as measured now; the run records them.
    let measured = match &opts.target {
        Target::Where(_) => Some(measure(&client, &table, opts.run.batch_size).await?),
        _ => None,
    };
    let mut options = serde_json::json!({
        "batch_size": opts.run.batch_size,
        "key": key,
        "cascade": opts.cascade,
    });
    if let Some((layout, _)) = measured {
        options[ledger::LAYOUT] = serde_json::to_value(layout).expect("a layout serializes");
    }
    let run_key = RunKey {
        command: "purge",
        target_table: table.display(),
        input_path: run_key_input.0,
        input_size: run_key_input.1.map(|s| s as i64),
        input_fingerprint: run_key_input.2,
        options,
    };
    let mut resume = opts.run.resume;
    // Everything that can fail happens before the run is recorded (or marked running again),
    // so that no error leaves it `running`.
    let units = match (&opts.target, measured) {
        (_, Some((mut layout, rows_per_page))) => {
            if let (Some(ledger), Some(wanted), false) = (&ledger, resume, opts.dry_run) {
                let wanted = match wanted {
                    Resume::Latest => None,
                    Resume::Run(id) => Some(id),
                };
                let (id, recorded) = ledger.resumable(&client, &run_key, wanted).await?;
                layout = resumed_layout(ledger, &client, id, &recorded, layout).await?;
                // The run just checked, whatever ran since.
                resume = Some(Resume::Run(id));
            }
            layout.units(rows_per_page)
        }
        (Target::Run(run), None) => recorded_units(&client, ledger.as_ref(), *run).await?,
        // A file's units come from its reader.
        (_, None) => Vec::new(),
    };
    let (run_id, committed) = match (&ledger, opts.dry_run) {
        (Some(ledger), false) => {
            let (id, committed) = ledger
                .open_run(&client, &run_key, &opts.run.command_line, resume)
                .await?;
            (Some(id), committed)
        }
        _ => (None, HashMap::new()),
    };
    drop(client);

    let progress = Arc::new(Progress::default());
    let workers = opts.run.workers(&pool, progress.clone());
    let plan = DeletePlan::new(
        &table,
        &key,
        &selector,
        &children,
        opts.run.session_settings(),
    );
    let deleter = Deleter::new(
        pool.clone(),
        plan,
        ledger.as_ref().zip(run_id).map(|(l, id)| l.batches(id)),
        opts.dry_run,
    );
    let error = match file {
        Some((reader, header, key, consumed, size)) => {
            let reporter = Reporter::start(
                console,
                progress.clone(),
                (consumed, size),
                workers.throttle.clone(),
            );
            let fields = key
                .iter()
                .map(|k| {
                    let i = header_position(&header, k).expect("checked by file_key");
                    (
                        i,
                        Encoder::for_type(table.column(k).expect("key column").type_oid),
                    )
                })
                .collect();
            let batcher = Batcher {
                encoder: RowEncoder::project(header.len(), fields, true),
                checker: crate::check::Checker::width_only(header.len()),
                rejects: None,
                size: opts.run.batch_size,
                committed,
                collect_keys: None,
                progress: progress.clone(),
                stop: workers.stop.clone(),
            };
            let error = workers
                .drive(
                    move |tx| tokio::task::spawn_blocking(move || batcher.run(reader, &tx)),
                    deleter,
                )
                .await;
            (error, reporter)
        }
        None => {
            let handed = Arc::new(AtomicU64::new(0));
            let reporter = Reporter::start(
                console,
                progress.clone(),
                (handed.clone(), Some(units.len() as u64)),
                workers.throttle.clone(),
            );
            let stop = workers.stop.clone();
            let error = workers
                .drive(
                    move |tx| {
                        tokio::spawn(async move {
                            for unit in units {
                                handed.fetch_add(1, Ordering::Relaxed);
                                if committed.contains_key(&pipeline::Unit::seq(&unit)) {
                                    continue;
                                }
                                if stop.load(Ordering::Relaxed) || tx.send(unit).await.is_err() {
                                    return Ok(ProduceEnd::Stopped);
                                }
                            }
                            Ok(ProduceEnd::Complete)
                        })
                    },
                    deleter,
                )
                .await;
            (error, reporter)
        }
    };
    let (error, reporter) = error;
    let mut summary = reporter.finish("purge", table.display());
    if let crate::report::Rows::Purge {
        rows_deleted,
        rows_missing,
    } = summary.rows
        && !matches!(opts.target, Target::File { .. })
    {
        // Without a file, what was read is what the ledger or the predicate supplied.
        summary.rows_read = rows_deleted + rows_missing;
    }
    if opts.dry_run {
        summary.command = "purge --dry-run";
    }
    let recorded = ledger.as_ref().zip(run_id);
    Ok(pipeline::conclude(&pool, &opts.run, recorded, error, summary).await)
}

fn header_position(header: &Record, name: &str) -> Option<usize> {
    (0..header.len()).find(|&i| header.get(i) == Some(name.as_bytes()))
}

/// The key a CSV purges by: `--key` (which must be a unique key of the table), else the
/// primary key or the first unique key whose columns are all in the header.
fn file_key(table: &Table, header: &Record, key: Option<&[String]>) -> Result<Vec<String>, Error> {
    let in_header = |c: &String| header_position(header, c).is_some();
    let key = match key {
        Some(key) => {
            if !table
                .unique_keys
                .iter()
                .any(|u| u.columns.len() == key.len() && key.iter().all(|k| u.columns.contains(k)))
            {
                return Err(Error::Usage(format!(
                    "--key {}: {} has no primary key or unique index on exactly these columns; \
                     purging by a non-unique column could delete rows the file does not name",
                    key.join(","),
                    table.display()
                )));
            }
            key.to_vec()
        }
        None => table
            .unique_keys
            .iter()
            .find(|u| u.columns.iter().all(in_header))
            .map(|u| u.columns.clone())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "the CSV header has no primary key or unique key of {}; name one with --key",
                    table.display()
                ))
            })?,
    };
    let absent: Vec<&String> = key.iter().filter(|c| !in_header(c)).collect();
    if !absent.is_empty() {
        return Err(Error::Usage(format!(
            "the CSV header lacks the key column(s) {absent:?}"
        )));
    }
    Ok(key)
}

/// Refuses a predicate that is not one expression, or that the server cannot plan, before
/// anything is deleted. The predicate is trusted SQL, but a stray parenthesis must not let
/// it escape the page range it is combined with (`x') OR (true`), nor a semicolon or a
/// comment swallow what follows it.
async fn check_predicate(
    client: &tokio_postgres::Client,
    table: &Table,
    predicate: &str,
) -> Result<(), Error> {
    one_expression(predicate).map_err(|why| Error::Usage(format!("--where: {why}")))?;
    // The extended protocol runs exactly one statement.
    client
        .execute_typed(
            &format!(
                "EXPLAIN SELECT 1 FROM {} WHERE ({predicate})",
                table.quoted()
            ),
            &[],
        )
        .await
        .map_err(|e| {
            Error::Usage(format!(
                "--where: the server refuses the predicate: {}",
                crate::error::describe_pg(&e)
            ))
        })?;
    Ok(())
}

/// Checks that parentheses balance outside string literals and quoted identifiers, and
/// that there is no `;`, comment or `$` (dollar quoting, parameters) outside them.
fn one_expression(predicate: &str) -> Result<(), String> {
    let mut depth = 0i32;
    let mut chars = predicate.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // A doubled quote inside is an escaped quote: it closes and reopens.
                while let Some(d) = chars.next() {
                    if d == c && chars.peek() != Some(&c) {
                        break;
                    }
                    if d == c {
                        chars.next();
                    }
                }
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("a ')' closes more than the predicate opened".into());
                }
            }
            ';' => return Err("';' is not allowed: give one expression".into()),
            '$' => return Err("'$' (dollar quoting, parameters) is not allowed".into()),
            '-' if chars.peek() == Some(&'-') => return Err("comments are not allowed".into()),
            '/' if chars.peek() == Some(&'*') => return Err("comments are not allowed".into()),
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(())
}

/// The references whose rows must be deleted first. Refuses (listing them) when some
/// would block the delete and `--cascade` was not given; warns about unindexed ones.
fn plan_references(
    table: &Table,
    references: &[Reference],
    cascade: bool,
) -> Result<Vec<Reference>, Error> {
    for r in references.iter().filter(|r| !r.indexed) {
        tracing::warn!(
            "{}({}) references {} without an index: each deleted row scans {} (~{} rows). \
             Consider CREATE INDEX ON {} ({}) first",
            r.child,
            r.child_columns.join(", "),
            if r.via.is_none() {
                table.display()
            } else {
                "a purged table".into()
            },
            r.child,
            r.child_rows_estimate,
            r.child_quoted,
            r.child_columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let blocking: Vec<&Reference> = references.iter().filter(|r| !r.handled_by_server).collect();
    if blocking.is_empty() {
        return Ok(Vec::new());
    }
    if !cascade {
        let list: Vec<String> = blocking
            .iter()
            .map(|r| {
                format!(
                    "{}({}) via {} ON DELETE {}",
                    r.child,
                    r.child_columns.join(", "),
                    r.constraint,
                    r.on_delete
                )
            })
            .collect();
        return Err(Error::Usage(format!(
            "rows of {} are referenced by foreign keys that would block the delete:\n  - {}\n\
             Nothing was deleted. --cascade deletes the referencing rows first, in the same \
             transaction.",
            table.display(),
            list.join("\n  - ")
        )));
    }
    Ok(references.to_vec())
}

/// How many rows the purge will delete at most: keys in the file (files only), keys the
/// run recorded, or rows matching the predicate. `None` when it cannot be known (stdin).
async fn estimate(
    client: &tokio_postgres::Client,
    table: &Table,
    opts: &PurgeOptions,
    ledger: Option<&Ledger>,
) -> Result<Option<u64>, Error> {
    Ok(match &opts.target {
        Target::File {
            source: Source::Stdin,
            ..
        } => None,
        Target::File { source, csv, .. } => {
            let (source, csv) = (source.clone(), csv.clone());
            let rows = tokio::task::spawn_blocking(move || -> Result<u64, Error> {
                let (mut reader, _) = read::header(read::open(&source)?.reader, &csv, &source)?;
                let mut rec = Record::default();
                let mut n: u64 = 0;
                while reader.read(&mut rec)? {
                    n += 1;
                }
                Ok(n)
            })
            .await
            .expect("counting thread panicked")?;
            Some(rows)
        }
        Target::Run(run) => Some(
            ledger
                .expect("checked")
                .recorded_count(client, *run)
                .await?,
        ),
        Target::Where(predicate) => {
            let row = client
                .query_typed_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE ({predicate})",
                        table.quoted()
                    ),
                    &[],
                )
                .await
                .map_err(|e| Error::database("counting the rows the predicate selects", e))?;
            Some(row.get::<_, i64>(0) as u64)
        }
    })
}

/// Above the threshold: ask on a terminal, else require `--yes`.
fn confirm(table: &Table, estimate: Option<u64>, opts: &PurgeOptions) -> Result<(), Error> {
    if estimate.is_some_and(|n| n <= opts.confirm_above) {
        return Ok(());
    }
    let what = estimate.map_or("an unknown number of".to_string(), |n| format!("up to {n}"));
    let reads_stdin = matches!(
        opts.target,
        Target::File {
            source: Source::Stdin,
            ..
        }
    );
    if reads_stdin || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(Error::Usage(format!(
            "refusing to delete {what} rows from {} without --yes (the threshold is {})",
            table.display(),
            opts.confirm_above
        )));
    }
    eprint!(
        "Delete {what} rows from {}? Type 'yes' to go on: ",
        table.display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed; nothing was deleted".into()))
    }
}

/// The units of a `--run` purge, in order: the seed run's batches that recorded keys.
async fn recorded_units(
    client: &tokio_postgres::Client,
    ledger: Option<&Ledger>,
    run: i64,
) -> Result<Vec<PurgeUnit>, Error> {
    Ok(ledger
        .expect("checked")
        .recorded_batches(client, run)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, (seed_seq, keys))| PurgeUnit::Recorded {
            seq: i as u64 + 1,
            seed_run: run,
            seed_seq,
            keys,
        })
        .collect())
}

/// How a `--where` purge cuts the table into page ranges. Recorded in the run's options
/// when it first starts and reused by a resume: the ledger knows a committed batch only by
/// its number, so batch N must be the same pages on every attempt, whatever ANALYZE or
/// autovacuum made of the statistics meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PageLayout {
    pages_per_batch: u64,
    /// The table's pages when measured: the ranges cover `[0, pages)`.
    pages: u64,
}

impl PageLayout {
    /// Batch `seq`'s pages, `[first, end)`. The last range is not cut at the table's end, so
    /// that it stays the same range when the table grows.
    fn range(self, seq: u64) -> (u64, u64) {
        let step = self.pages_per_batch;
        ((seq - 1) * step, seq * step)
    }

    /// The units, in order; `rows_per_page` only estimates their size for progress.
    fn units(self, rows_per_page: f64) -> Vec<PurgeUnit> {
        let step = self.pages_per_batch;
        (1..=self.pages.div_ceil(step))
            .map(|seq| {
                let (first, end) = self.range(seq);
                PurgeUnit::Pages {
                    seq,
                    first,
                    end,
                    rows: (step as f64 * rows_per_page) as u64,
                }
            })
            .collect()
    }
}

/// The table's page ranges for batches of about `batch_size` rows, as its size and
/// statistics are now, with the estimated rows per page.
async fn measure(
    client: &tokio_postgres::Client,
    table: &Table,
    batch_size: usize,
) -> Result<(PageLayout, f64), Error> {
    let row = client
        .query_typed_one(
            "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint, \
                    c.reltuples::float8, greatest(c.relpages, 1)::float8 \
             FROM pg_class c WHERE c.oid = $1",
            &[(&table.oid, tokio_postgres::types::Type::OID)],
        )
        .await
        .map_err(|e| Error::database("reading the table's size", e))?;
    let pages = row.get::<_, i64>(0) as u64;
    let (reltuples, relpages) = (row.get::<_, f64>(1), row.get::<_, f64>(2));
    // Rows per page: the planner's statistics, or a count where the table was never
    // analyzed (reltuples = -1).
    let per_page = if reltuples >= 0.0 {
        reltuples / relpages
    } else {
        let counted = client
            .query_typed_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
            .await
            .map_err(|e| Error::database("counting the table's rows", e))?;
        counted.get::<_, i64>(0) as f64 / pages.max(1) as f64
    }
    .max(1.0);
    // Pages per batch so that a batch holds about --batch-size rows of the table (fewer
    // match the predicate).
    let pages_per_batch = ((batch_size as f64 / per_page).floor() as u64).max(1);
    Ok((
        PageLayout {
            pages_per_batch,
            pages,
        },
        per_page,
    ))
}

/// The page ranges a resumed `--where` run goes on with: the ones it recorded (extended to
/// pages the table grew since), else (a run recorded before they were) the ones measured
/// now, `measured`. Refuses the resume when a committed batch is not the range its number
/// now names: resuming would skip pages no attempt deleted.
async fn resumed_layout(
    ledger: &Ledger,
    client: &tokio_postgres::Client,
    run_id: i64,
    options: &serde_json::Value,
    measured: PageLayout,
) -> Result<PageLayout, Error> {
    let layout = match options
        .get(ledger::LAYOUT)
        .and_then(|l| serde_json::from_value::<PageLayout>(l.clone()).ok())
    {
        Some(recorded) => PageLayout {
            pages: recorded.pages.max(measured.pages),
            ..recorded
        },
        None => measured,
    };
    for (seq, first, last) in ledger.committed_spans(client, run_id).await? {
        let (want_first, want_end) = layout.range(seq);
        // A range cut at the table's end, as runs recorded before the ranges were, is the
        // same range.
        let same = first == want_first
            && (last + 1 == want_end || (last + 1 < want_end && last + 1 >= layout.pages));
        if !same {
            return Err(Error::Usage(format!(
                "--resume {run_id}: batch {seq} of the run deleted pages {first}-{last}, but batch \
                 {seq} is pages {want_first}-{} now (the table's statistics changed since the run \
                 started); refusing to resume, as it would skip pages. Start a new purge without \
                 --resume: what the run deleted stays deleted.",
                want_end - 1
            )));
        }
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::one_expression;

    #[test]
    fn a_predicate_must_be_one_expression() {
        for ok in [
            "email LIKE '%@loadtest.example'",
            "(a = 1 OR b = 2) AND c IN (1, 2)",
            "name = 'it''s (not) closed'",
            "\"Odd ) name\" = 1",
        ] {
            assert_eq!(one_expression(ok), Ok(()), "{ok}");
        }
        for bad in [
            "email = 'x') OR (true",
            "true; DROP TABLE accounts",
            "true -- ",
            "true /* */",
            "x = $1",
            "((a)",
        ] {
            assert!(one_expression(bad).is_err(), "{bad}");
        }
    }
}
