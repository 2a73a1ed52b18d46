//! What a purge deletes: the keys in a CSV file (by a unique key of the table), exactly the
//! keys a seed run recorded, or the rows where a predicate holds, taken in page ranges that
//! a resume finds again.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::delete::{PurgeUnit, Selector};
use crate::db::catalog::{Leaf, Table};
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
                key: run_key(ledger, client, table, *run).await?,
                selector: Selector::Run {
                    ledger: ledger.quoted_schema().to_string(),
                },
                input: InputId::named(format!("run:{run}")),
                file: None,
            }
        }
        Target::Where(predicate) => {
            if let Some(leaf) = table.leaves.iter().find(|l| l.foreign) {
                return Err(Error::Usage(format!(
                    "--where: {} holds rows of {} but is a foreign table, which has no pages to \
                     cut into ranges; purge by file or --run",
                    leaf.display(),
                    table.display()
                )));
            }
            check_predicate(client, table, predicate).await?;
            Selection {
                key: table
                    .unique_keys
                    .iter()
                    .find(|u| table.identifies(&u.columns).is_ok())
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

/// The key seed run `run` recorded, if it still identifies the rows of `table`; else why
/// `purge --run` cannot be exact.
async fn run_key(
    ledger: &Ledger,
    client: &tokio_postgres::Client,
    table: &Table,
    run: i64,
) -> Result<Vec<String>, Error> {
    let recorded = ledger.recorded_key(client, run, &table.display()).await?;
    let Some(key) = recorded.key else {
        let why = match table.recordable_key(&recorded.columns) {
            Err(why) => why,
            Ok(_) => "it ran with --no-record-keys".into(),
        };
        return Err(Error::Usage(format!(
            "--run {run}: the run did not record the keys it inserted ({why}); purge by file \
             or --where"
        )));
    };
    table.identifies(&key).map_err(|why| {
        Error::Usage(format!(
            "--run {run}: the run recorded the keys ({}), but {why}; purge by --where",
            key.join(", ")
        ))
    })?;
    Ok(key)
}

fn header_position(header: &Record, name: &str) -> Option<usize> {
    (0..header.len()).find(|&i| header.get(i) == Some(name.as_bytes()))
}

/// The key a CSV purges by: `--key` (which must identify rows, see [`Table::identifies`]),
/// else the primary key or the first valid unique key whose columns are all in the header.
fn file_key(table: &Table, header: &Record, key: Option<&[String]>) -> Result<Vec<String>, Error> {
    let in_header = |c: &String| header_position(header, c).is_some();
    let key = match key {
        Some(key) => {
            table.identifies(key).map_err(|why| {
                Error::Usage(format!(
                    "--key {}: {why}; purging by it could delete rows the file does not name",
                    key.join(",")
                ))
            })?;
            key.to_vec()
        }
        None => {
            let covered = table
                .unique_keys
                .iter()
                .filter(|u| u.columns.iter().all(in_header));
            let Some(key) = covered.clone().find(|u| u.valid).or(covered.clone().next()) else {
                return Err(Error::Usage(format!(
                    "the CSV header has no primary key or unique key of {}; name one with --key",
                    table.display()
                )));
            };
            table.identifies(&key.columns).map_err(|why| {
                Error::Usage(format!(
                    "the CSV's key ({}): {why}; purging by it could delete rows the file does \
                     not name",
                    key.columns.join(", ")
                ))
            })?;
            key.columns.clone()
        }
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

/// Where an input's number goes in a `--run` purge's batch numbers: above any batch number
/// of one input (2^32 batches).
const INPUT_SHIFT: u32 = 32;

/// The units of a `--run` purge, in order: the seed run's batches that recorded keys, each
/// numbered as the seed batch whose keys it deletes, so that a purge batch means the same
/// seed batch on every attempt, whatever batches a resumed seed added in between. A run of
/// many inputs numbers them input by input: input `i`'s batch `s` is `i << 32 | s`. Refuses
/// a run whose recorded keys name rows it did not insert (as versions that took a direct
/// COPY's keys from the file recorded when a trigger skipped rows); warns of rows it
/// inserted without recording their key, which the purge cannot find.
pub async fn recorded_units(
    client: &tokio_postgres::Client,
    ledger: Option<&Ledger>,
    run: i64,
) -> Result<Vec<PurgeUnit>, Error> {
    let batches = ledger
        .expect("checked")
        .recorded_batches(client, run)
        .await?;
    let over: Vec<String> = batches
        .iter()
        .filter(|b| b.keys > b.inserted)
        .map(|b| {
            format!(
                "{} of run {} ({} keys, {} rows inserted)",
                b.seq, b.run_id, b.keys, b.inserted
            )
        })
        .collect();
    if !over.is_empty() {
        return Err(Error::Usage(format!(
            "--run {run}: batch(es) {} of the run recorded more keys than rows they inserted \
             (a trigger skipped rows the ledger recorded anyway), so their keys may name rows \
             the run did not insert; refusing. Purge by --where instead",
            over.join(", ")
        )));
    }
    let unrecorded: u64 = batches
        .iter()
        .map(|b| b.inserted.saturating_sub(b.keys))
        .sum();
    if unrecorded > 0 {
        tracing::warn!(
            "run {run} inserted {unrecorded} rows whose key it did not record (a NULL in the \
             key): purge --run cannot find them and leaves them"
        );
    }
    Ok(batches
        .into_iter()
        .filter(|b| b.keys > 0)
        .map(|b| PurgeUnit::Recorded {
            seq: (b.input as u64) << INPUT_SHIFT | b.seq as u64,
            seed_run: b.run_id,
            seed_seq: b.seq as u64,
            keys: b.keys,
        })
        .collect())
}

/// Refuses to resume a `--run` purge whose committed batches do not each delete the seed
/// batch their number names (runs of versions that numbered them by position): resuming
/// would skip seed batches.
pub async fn check_recorded_resume(
    ledger: &Ledger,
    client: &tokio_postgres::Client,
    run_id: i64,
) -> Result<(), Error> {
    for (seq, first, last) in ledger.committed_spans(client, run_id).await? {
        if first != seq || last != seq {
            return Err(Error::ResumeRefused(format!(
                "--resume {run_id}: batch {seq} of the run deleted the keys of seed batch \
                 {first}, but batch {seq} means seed batch {seq} now; refusing to resume, as it \
                 would skip seed batches. Start a new purge without --resume: what the run \
                 deleted stays deleted."
            )));
        }
    }
    Ok(())
}

/// How a `--where` purge cuts the table into page ranges: a list of segments, each a run of
/// ranges over one relation that holds the table's rows (the table itself, a partition, an
/// inheritance child; see [`Table::leaves`]), numbered on across the segments. Recorded in
/// the run's options when it first starts, and again, extended, by each resume: the ledger
/// knows a committed batch only by its number, so batch N must be the same pages of the same
/// relation on every attempt, whatever ANALYZE or autovacuum made of the statistics
/// meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PageLayout {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Segment {
    schema: String,
    name: String,
    /// Pages `[first, first + pages)`, in ranges of `pages_per_batch`; the last range is not
    /// cut at the end, so that it stays the same range when the relation grows.
    first: u64,
    pages: u64,
    pages_per_batch: u64,
}

impl Segment {
    fn batches(&self) -> u64 {
        self.pages.div_ceil(self.pages_per_batch)
    }

    /// Where the segment's last range ends.
    fn end(&self) -> u64 {
        self.first + self.batches() * self.pages_per_batch
    }

    fn of(&self, leaf: &Leaf) -> bool {
        self.schema == leaf.schema && self.name == leaf.name
    }
}

/// The layout as runs recorded it before a table's partitions and children had ranges of
/// their own: the table's pages alone (see [`PageLayout::recorded`]).
#[derive(serde::Deserialize)]
struct TableLayout {
    pages_per_batch: u64,
    pages: u64,
}

/// One relation holding the table's rows, as its size and statistics are now.
pub struct Measured {
    pages: u64,
    /// The planner's rows per page, or a count where it was never analyzed.
    per_page: f64,
}

impl Measured {
    /// Pages per range so that a range holds about `batch_size` rows of the relation (fewer
    /// match the predicate).
    fn pages_per_batch(&self, batch_size: usize) -> u64 {
        ((batch_size as f64 / self.per_page).floor() as u64).max(1)
    }
}

impl PageLayout {
    /// Every relation of `table` ([`Table::leaves`]) cut as it is `measured` now.
    pub fn new(table: &Table, measured: &[Measured], batch_size: usize) -> Self {
        let mut layout = PageLayout {
            segments: Vec::new(),
        };
        layout.extend(table, measured, batch_size);
        layout
    }

    /// Adds a segment for the pages of each relation of `table` that no segment covers yet:
    /// the pages it grew, or all of a relation that was not there before.
    fn extend(&mut self, table: &Table, measured: &[Measured], batch_size: usize) {
        for (leaf, now) in table.leaves.iter().zip(measured) {
            let covered = self
                .segments
                .iter()
                .filter(|s| s.of(leaf))
                .map(Segment::end)
                .max()
                .unwrap_or(0);
            if now.pages > covered {
                self.segments.push(Segment {
                    schema: leaf.schema.clone(),
                    name: leaf.name.clone(),
                    first: covered,
                    pages: now.pages - covered,
                    pages_per_batch: now.pages_per_batch(batch_size),
                });
            }
        }
    }

    /// The layout a run recorded in its `options`, if any: segments, or one table's pages
    /// (as runs recorded it before partitions and children had ranges of their own).
    fn recorded(options: &serde_json::Value, table: &Table) -> Option<PageLayout> {
        let layout = options.get(LAYOUT)?;
        if let Ok(layout) = serde_json::from_value::<PageLayout>(layout.clone()) {
            return Some(layout);
        }
        let old = serde_json::from_value::<TableLayout>(layout.clone()).ok()?;
        Some(PageLayout {
            segments: vec![Segment {
                schema: table.schema.clone(),
                name: table.name.clone(),
                first: 0,
                pages: old.pages,
                pages_per_batch: old.pages_per_batch,
            }],
        })
    }

    /// Batch `seq`'s segment and pages, `[first, end)`.
    fn range(&self, seq: u64) -> Option<(&Segment, u64, u64)> {
        let mut before = 0;
        for segment in &self.segments {
            let n = segment.batches();
            if seq > before && seq <= before + n {
                let first = segment.first + (seq - before - 1) * segment.pages_per_batch;
                return Some((segment, first, first + segment.pages_per_batch));
            }
            before += n;
        }
        None
    }

    /// The units, in order, each naming its relation by its place in `table.leaves`; the
    /// ranges of a relation no longer there are left out (its rows went with it).
    /// `measured` only estimates their size for progress.
    pub fn units(&self, table: &Table, measured: &[Measured]) -> Vec<PurgeUnit> {
        let mut units = Vec::new();
        let mut seq = 0;
        for segment in &self.segments {
            let leaf = table.leaves.iter().position(|l| segment.of(l));
            for k in 0..segment.batches() {
                seq += 1;
                let Some(leaf) = leaf else { continue };
                let first = segment.first + k * segment.pages_per_batch;
                units.push(PurgeUnit::Pages {
                    seq,
                    leaf,
                    relation: table.leaves[leaf].display(),
                    first,
                    end: first + segment.pages_per_batch,
                    rows: (segment.pages_per_batch as f64 * measured[leaf].per_page) as u64,
                });
            }
        }
        units
    }
}

/// Each relation of `table` ([`Table::leaves`]) as its size and statistics are now.
pub async fn measure(
    client: &tokio_postgres::Client,
    table: &Table,
) -> Result<Vec<Measured>, Error> {
    let oids: Vec<u32> = table.leaves.iter().map(|l| l.oid).collect();
    let rows = client
        .query_typed(
            "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint, \
                    c.reltuples::float8, greatest(c.relpages, 1)::float8 \
             FROM unnest($1::oid[]) WITH ORDINALITY AS l(oid, i) JOIN pg_class c ON c.oid = l.oid \
             ORDER BY l.i",
            &[(&oids, tokio_postgres::types::Type::OID_ARRAY)],
        )
        .await
        .map_err(|e| Error::database("reading the table's size", e))?;
    if rows.len() != oids.len() {
        return Err(Error::Usage(format!(
            "the partitions or inheritance children of {} changed while the purge started; \
             run it again",
            table.display()
        )));
    }
    let mut measured = Vec::with_capacity(rows.len());
    for (leaf, row) in table.leaves.iter().zip(rows) {
        let pages = row.get::<_, i64>(0) as u64;
        let (reltuples, relpages) = (row.get::<_, f64>(1), row.get::<_, f64>(2));
        // Rows per page: the planner's statistics, or a count where the relation was never
        // analyzed (reltuples = -1).
        let per_page = if reltuples >= 0.0 {
            reltuples / relpages
        } else {
            let counted = client
                .query_typed_one(&format!("SELECT count(*) FROM ONLY {}", leaf.quoted()), &[])
                .await
                .map_err(|e| {
                    Error::database(format!("counting the rows of {}", leaf.display()), e)
                })?;
            counted.get::<_, i64>(0) as f64 / pages.max(1) as f64
        }
        .max(1.0);
        measured.push(Measured { pages, per_page });
    }
    Ok(measured)
}

/// The page ranges a resumed `--where` run goes on with: the ones it recorded, else (a run
/// recorded before they were) the ones `measured` now; either extended to the pages and
/// relations no range covers yet. Refuses the resume when a committed batch is not the range
/// its number now names: resuming would skip pages no attempt deleted.
pub async fn resumed_layout(
    ledger: &Ledger,
    client: &tokio_postgres::Client,
    run_id: i64,
    options: &serde_json::Value,
    table: &Table,
    measured: &[Measured],
    batch_size: usize,
) -> Result<PageLayout, Error> {
    let layout = match PageLayout::recorded(options, table) {
        Some(mut recorded) => {
            recorded.extend(table, measured, batch_size);
            recorded
        }
        None => PageLayout::new(table, measured, batch_size),
    };
    for (seq, first, last) in ledger.committed_spans(client, run_id).await? {
        // A range cut at its relation's end, as runs recorded before the ranges were, is the
        // same range.
        let same = layout
            .range(seq)
            .is_some_and(|(segment, want_first, want_end)| {
                first == want_first
                    && (last + 1 == want_end
                        || (last + 1 < want_end && last + 1 >= segment.first + segment.pages))
            });
        if !same {
            let now = layout
                .range(seq)
                .map_or("no range".into(), |(s, first, end)| {
                    format!("pages {first}-{} of {}.{}", end - 1, s.schema, s.name)
                });
            return Err(Error::ResumeRefused(format!(
                "--resume {run_id}: batch {seq} of the run deleted pages {first}-{last}, but batch \
                 {seq} is {now} now (the table's statistics changed since the run started); \
                 refusing to resume, as it would skip pages. Start a new purge without \
                 --resume: what the run deleted stays deleted."
            )));
        }
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(oid: u32, name: &str) -> Leaf {
        Leaf {
            oid,
            schema: "public".into(),
            name: name.into(),
            foreign: false,
        }
    }

    fn table(leaves: Vec<Leaf>) -> Table {
        Table {
            oid: 1,
            schema: "public".into(),
            name: "t".into(),
            columns: Vec::new(),
            unique_keys: Vec::new(),
            partitioned: false,
            leaves,
            insert_triggers: false,
            deferrable: Vec::new(),
        }
    }

    /// Each unit's number, relation (its place in the leaves) and pages.
    fn pages(units: &[PurgeUnit]) -> Vec<(u64, usize, u64, u64)> {
        units
            .iter()
            .map(|u| match u {
                PurgeUnit::Pages {
                    seq,
                    leaf,
                    first,
                    end,
                    ..
                } => (*seq, *leaf, *first, *end),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn at(pages: u64, per_page: f64) -> Measured {
        Measured { pages, per_page }
    }

    #[test]
    fn page_ranges_are_numbered_across_relations_and_a_resume_only_adds_to_them() {
        let t = table(vec![leaf(1, "t"), leaf(2, "child")]);
        // 30 rows a batch: 3 pages of t (10 rows a page), 1 page of child (100 rows a page).
        let then = [at(10, 10.0), at(2, 100.0)];
        let layout = PageLayout::new(&t, &then, 30);
        assert_eq!(
            pages(&layout.units(&t, &then)),
            [
                (1, 0, 0, 3),
                (2, 0, 3, 6),
                (3, 0, 6, 9),
                (4, 0, 9, 12),
                (5, 1, 0, 1),
                (6, 1, 1, 2)
            ]
        );

        // Then t grew to 14 pages, denser; child was dropped; another child appeared. The
        // ranges recorded keep their numbers (those of a relation gone are not run), and the
        // new ones follow.
        let options = serde_json::json!({ LAYOUT: layout });
        let mut resumed = PageLayout::recorded(&options, &t).expect("recorded");
        let t = table(vec![leaf(1, "t"), leaf(3, "late")]);
        let now = [at(14, 30.0), at(1, 1.0)];
        resumed.extend(&t, &now, 30);
        assert_eq!(
            pages(&resumed.units(&t, &now)),
            [
                (1, 0, 0, 3),
                (2, 0, 3, 6),
                (3, 0, 6, 9),
                (4, 0, 9, 12),
                (7, 0, 12, 13),
                (8, 0, 13, 14),
                (9, 1, 0, 30)
            ]
        );
        let named = |seq| resumed.range(seq).map(|(s, a, b)| (s.name.clone(), a, b));
        assert_eq!(named(5), Some(("child".to_string(), 0, 1)));
        assert_eq!(named(10), None);
    }

    #[test]
    fn a_layout_recorded_for_the_table_alone_is_its_first_segment() {
        let t = table(vec![leaf(1, "t")]);
        let options = serde_json::json!({ LAYOUT: { "pages_per_batch": 4, "pages": 10 } });
        let layout = PageLayout::recorded(&options, &t).expect("the old form reads");
        assert_eq!(
            pages(&layout.units(&t, &[at(10, 1.0)])),
            [(1, 0, 0, 4), (2, 0, 4, 8), (3, 0, 8, 12)]
        );
        assert!(PageLayout::recorded(&serde_json::json!({}), &t).is_none());
    }

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
