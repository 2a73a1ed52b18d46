//! What a purge deletes: the keys in a CSV file (by a unique key of the table), exactly the
//! keys a seed run recorded, or the rows where a predicate holds, taken in page ranges that
//! a resume finds again.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::delete::{PurgeUnit, Selector};
use crate::db::catalog::Table;
use crate::db::ledger::{InputId, LAYOUT, Ledger, Resume};
use crate::error::{Error, describe_pg};
use crate::input::csv::{self, CsvOptions, CsvReader, Record};
use crate::input::source::{self, Source};
use crate::model::Command;

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

/// A target resolved against the table and the ledger.
pub struct Selection {
    /// The columns that identify a row (for `--where`, a unique key used only when child
    /// rows must go first; empty when the table has none).
    pub key: Vec<String>,
    pub selector: Selector,
    /// What the run records as its input: a file, or `run:ID` / `where:PREDICATE`.
    pub input: InputId,
    /// The opened key file, for a file target.
    pub file: Option<KeyFile>,
}

/// A CSV file of keys, opened and past its header.
pub struct KeyFile {
    pub reader: CsvReader<Box<dyn BufRead + Send>>,
    pub header: Record,
    /// Bytes read so far and in all, for progress.
    pub consumed: Arc<AtomicU64>,
    pub size: Option<u64>,
}

impl KeyFile {
    /// Where the key columns sit in the records of a file with `header`.
    pub fn positions(header: &Record, key: &[String]) -> Vec<usize> {
        key.iter()
            .map(|k| header_position(header, k).expect("checked by file_key"))
            .collect()
    }
}

/// Resolves `target`: opens and checks a key file (first, for a resume, that the run read
/// it in the same dialect), reads the key a seed run recorded, or checks a predicate;
/// refuses (exit 2) what cannot be purged exactly.
pub async fn select(
    client: &tokio_postgres::Client,
    table: &Table,
    target: &Target,
    ledger: Option<&Ledger>,
    resume: Option<Resume>,
) -> Result<Selection, Error> {
    Ok(match target {
        Target::File { source, csv, key } => {
            let input = source::open(source)?;
            if let (Some(ledger), Some(resume)) = (ledger, resume) {
                let (table, path) = (table.display(), &input.id.path);
                let dialect = csv.recorded();
                ledger
                    .check_dialect(client, Command::Purge, &table, path, resume.id(), &dialect)
                    .await?;
            }
            let (reader, header) = {
                let (csv, source) = (csv.clone(), source.clone());
                tokio::task::spawn_blocking(move || csv::header(input.reader, &csv, &source))
                    .await
                    .expect("header reader panicked")?
            };
            let key = file_key(table, &header, key.as_deref())?;
            Selection {
                key,
                selector: Selector::File,
                file: Some(KeyFile {
                    reader,
                    header,
                    consumed: input.consumed,
                    size: input.id.size,
                }),
                input: input.id,
            }
        }
        Target::Run(run) => {
            let ledger = ledger.ok_or_else(|| {
                Error::Usage(
                    "purge --run needs the ledger (none found, or --no-ledger given)".into(),
                )
            })?;
            Selection {
                key: ledger.recorded_key(client, *run, &table.display()).await?,
                selector: Selector::Run {
                    ledger: ledger.quoted_schema().to_string(),
                },
                input: InputId::named(format!("run:{run}")),
                file: None,
            }
        }
        Target::Where(predicate) => {
            check_predicate(client, table, predicate).await?;
            Selection {
                key: table
                    .unique_keys
                    .first()
                    .map(|u| u.columns.clone())
                    .unwrap_or_default(),
                selector: Selector::Where {
                    predicate: predicate.clone(),
                },
                input: InputId::named(format!("where:{predicate}")),
                file: None,
            }
        }
    })
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
                describe_pg(&e)
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

/// The units of a `--run` purge, in order: the seed run's batches that recorded keys.
pub async fn recorded_units(
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
pub struct PageLayout {
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
    pub fn units(self, rows_per_page: f64) -> Vec<PurgeUnit> {
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
pub async fn measure(
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
pub async fn resumed_layout(
    ledger: &Ledger,
    client: &tokio_postgres::Client,
    run_id: i64,
    options: &serde_json::Value,
    measured: PageLayout,
) -> Result<PageLayout, Error> {
    let layout = match options
        .get(LAYOUT)
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
            return Err(Error::ResumeRefused(format!(
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
