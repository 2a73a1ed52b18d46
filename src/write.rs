//! Writing: each batch is one transaction on a pooled connection holding one
//! `COPY … FROM STDIN`, straight into the table (`--on-conflict error`) or into a staging
//! table that is merged with `INSERT … ON CONFLICT` (`skip`, `update`).
//!
//! Invariants: a COPY is always finished or its transaction rolled back; nothing outlives
//! the transaction that made it (the staging table is `ON COMMIT DROP`), so the writers are
//! safe behind a transaction-mode pooler; with a ledger, the batch's ledger row is claimed
//! first in the same transaction, so a batch commits at most once however often it is
//! replayed; a connection that failed is never handed out again.

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;

use crate::batch::Batch;
use crate::catalog::{Table, quote_ident, quote_list};
use crate::encode::Format;
use crate::error::Error;
use crate::ledger::{BatchLedger, begin_batch};
use crate::pipeline::{Outcome, Sink, copy_payload, on_connection};
use crate::retry::Verdict;

/// What to do with a row whose key already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Fail the run, naming the key and the CSV line.
    Error,
    /// Keep the existing row; the input row counts as skipped.
    Skip,
    /// Overwrite the existing row's columns with the input's.
    Update,
}

/// The SQL a writer runs, built once per run from the validated plan.
#[derive(Debug, Clone)]
pub struct Statements {
    copy_binary: String,
    copy_csv: String,
    /// `skip`/`update`: the staging table and the merge into the target.
    staged: Option<Staged>,
}

#[derive(Debug, Clone)]
struct Staged {
    create: String,
    /// Returns (inserted, updated, keys of the inserted rows as JSON text or NULL).
    merge: String,
    /// The merge of the first `$1` staged rows only, to find which row a failure comes from.
    merge_prefix: String,
}

const STAGE: &str = "provisioner_stage";

/// The conflict handling and key recording a merge does.
#[derive(Debug, Clone, Copy)]
pub struct MergeSpec<'a> {
    pub mode: OnConflict,
    /// The conflict target; `None` with `skip` means any unique conflict.
    pub key: Option<&'a [String]>,
    /// Columns whose values the ledger records for each inserted row (for `purge --run`).
    pub recorded_key: Option<&'a [String]>,
}

impl Statements {
    /// `columns` are the target columns in CSV order.
    pub fn new(table: &Table, columns: &[String], spec: MergeSpec) -> Self {
        let cols = quote_list(columns);
        let target = table.quoted();
        let copy = |into: &str, format: Format| {
            format!("COPY {into} ({cols}) FROM STDIN (FORMAT {})", format.sql())
        };
        let staged = match spec.mode {
            OnConflict::Error => None,
            OnConflict::Skip | OnConflict::Update => Some(Staged {
                create: format!(
                    "CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT {cols} FROM {target} WITH NO DATA"
                ),
                merge: merge_sql(&target, columns, spec, false),
                merge_prefix: merge_sql(&target, columns, spec, true),
            }),
        };
        let into = if staged.is_some() {
            STAGE.to_string()
        } else {
            target
        };
        Statements {
            copy_binary: copy(&into, Format::Binary),
            copy_csv: copy(&into, Format::Csv),
            staged,
        }
    }
}

fn merge_sql(target: &str, columns: &[String], spec: MergeSpec, prefix: bool) -> String {
    let cols = quote_list(columns);
    // Staged rows in file order (a fresh table's ctid order is its COPY order).
    let limit = if prefix {
        " ORDER BY ctid LIMIT $1"
    } else {
        ""
    };
    let source = format!("(SELECT *, ctid AS provisioner_pos FROM {STAGE}{limit}) AS staged");
    let (rows, action) = match (spec.mode, spec.key) {
        (OnConflict::Update, Some(key)) => {
            let sets: Vec<String> = columns
                .iter()
                .filter(|c| !key.contains(c))
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                .collect();
            let action = if sets.is_empty() {
                "NOTHING".to_string()
            } else {
                format!("UPDATE SET {}", sets.join(", "))
            };
            let key_cols = quote_list(key);
            // A key repeated inside one batch would make DO UPDATE touch a row twice (an
            // error): the last occurrence in the file wins, as it would row by row. Sorting by
            // key also makes concurrent batches lock rows in one order.
            (
                format!(
                    "(SELECT DISTINCT ON ({key_cols}) {cols} FROM {source} \
                      ORDER BY {key_cols}, provisioner_pos DESC) AS latest"
                ),
                format!("({key_cols}) DO {action}"),
            )
        }
        (_, key) => (
            source,
            format!(
                "{} DO NOTHING",
                key.map(|k| format!("({})", quote_list(k)))
                    .unwrap_or_default()
            ),
        ),
    };
    let (returning, keys) = match spec.recorded_key {
        Some(recorded) => {
            let returned: Vec<String> = recorded
                .iter()
                .enumerate()
                .map(|(i, c)| format!("t.{} AS provisioner_k{i}", quote_ident(c)))
                .collect();
            let aggregated: Vec<String> = (0..recorded.len())
                .map(|i| format!("jsonb_agg(provisioner_k{i}) FILTER (WHERE inserted)"))
                .collect();
            (
                format!(", {}", returned.join(", ")),
                format!(
                    "CASE WHEN bool_or(inserted) THEN jsonb_build_array({})::text END",
                    aggregated.join(", ")
                ),
            )
        }
        None => (String::new(), "NULL::text".to_string()),
    };
    format!(
        "WITH merged AS (INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {rows} \
                         ON CONFLICT {action} RETURNING (t.xmax = 0) AS inserted{returning}) \
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), {keys} \
         FROM merged"
    )
}

/// Writes batches over the pool.
#[derive(Clone)]
pub struct Writer {
    pool: Pool,
    statements: std::sync::Arc<Statements>,
    ledger: Option<std::sync::Arc<BatchLedger>>,
    /// `SET LOCAL` timeouts run first in every batch transaction.
    session: std::sync::Arc<str>,
}

impl Writer {
    pub fn new(
        pool: Pool,
        statements: Statements,
        ledger: Option<BatchLedger>,
        session: String,
    ) -> Self {
        Writer {
            pool,
            statements: std::sync::Arc::new(statements),
            ledger: ledger.map(std::sync::Arc::new),
            session: session.into(),
        }
    }

    /// Writes one batch in its own transaction. A batch the ledger shows committed (by an
    /// earlier attempt whose COMMIT reply was lost) is not written again: its recorded
    /// outcome is returned.
    pub async fn write(&self, batch: &Batch, limit: Duration) -> Result<Outcome, Error> {
        let mut result = on_connection(&self.pool, limit, batch, async |client| {
            self.write_on(client, batch).await
        })
        .await;
        if let Err(Error::Batch {
            line: line @ None,
            source,
            ..
        }) = &mut result
        {
            // A staged merge names no row; find it, so the message can name its line.
            if source.as_db_error().is_some()
                && crate::retry::classify_pg(source) == Verdict::Permanent
            {
                *line = self.locate_merge_failure(batch).await;
            }
        }
        result
    }

    /// For a batch whose staged merge failed: the file line of the first row that makes
    /// the merge fail, found by bisecting on prefixes of the staged rows inside savepoints
    /// of a transaction that is rolled back. `None` when not staged or not reproducible.
    async fn locate_merge_failure(&self, batch: &Batch) -> Option<u64> {
        let staged = self.statements.staged.as_ref()?;
        let mut client = self.pool.get().await.ok()?;
        let mut tx = client.transaction().await.ok()?;
        self.stage_and_copy(&tx, batch).await.ok()?;
        let mut fails = async |rows: usize| -> Option<bool> {
            let probe = tx.transaction().await.ok()?;
            let failed = probe
                .execute(staged.merge_prefix.as_str(), &[&(rows as i64)])
                .await
                .is_err();
            probe.rollback().await.ok()?;
            Some(failed)
        };
        // The smallest failing prefix ends at the culprit: it fails alone or with the rows
        // before it, never because of rows after it.
        let (mut lo, mut hi) = (1, batch.rows);
        if !fails(hi).await? {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if fails(mid).await? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        tx.rollback().await.ok()?;
        batch.lines.get(lo - 1).copied()
    }

    /// Creates the staging table when there is one and COPYs the batch into it (or straight
    /// into the target); returns the rows copied.
    async fn stage_and_copy(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &Batch,
    ) -> Result<u64, Error> {
        let fail = |source| batch_error(batch, source);
        let st = &*self.statements;
        if let Some(staged) = &st.staged {
            tx.batch_execute(&staged.create).await.map_err(fail)?;
        }
        let copy_sql = match batch.format {
            Format::Binary => &st.copy_binary,
            Format::Csv => &st.copy_csv,
        };
        // Prepared (named) and closed inside the transaction: nothing outlives it.
        let sink = tx
            .copy_in::<_, Bytes>(copy_sql.as_str())
            .await
            .map_err(fail)?;
        copy_payload(sink, &batch.payload).await.map_err(fail)
    }

    async fn write_on(
        &self,
        client: &mut deadpool_postgres::Client,
        batch: &Batch,
    ) -> Result<Outcome, Error> {
        let fail = |source| batch_error(batch, source);
        let tx = client.transaction().await.map_err(fail)?;
        if let Some(done) = begin_batch(&tx, &self.session, self.ledger.as_deref(), batch.id())
            .await
            .map_err(fail)?
        {
            tx.rollback().await.map_err(fail)?;
            tracing::info!(
                batch = batch.seq,
                "batch had already committed; not replayed"
            );
            return Ok(done);
        }
        let copied = self.stage_and_copy(&tx, batch).await?;
        let binary = batch.format == Format::Binary;
        let (outcome, merged_keys) = match &self.statements.staged {
            None => (
                Outcome {
                    inserted: copied,
                    binary,
                    ..Outcome::default()
                },
                None,
            ),
            Some(staged) => {
                let row = tx
                    .query_one(staged.merge.as_str(), &[])
                    .await
                    .map_err(fail)?;
                let (inserted, updated) =
                    (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
                let outcome = Outcome {
                    inserted,
                    updated,
                    skipped: copied - inserted - updated,
                    binary,
                    ..Outcome::default()
                };
                (outcome, row.get::<_, Option<String>>(2))
            }
        };
        if let Some(ledger) = &self.ledger {
            // A direct COPY inserted every row of the batch, whose keys the reader collected;
            // a merge reports the keys of the rows it really inserted.
            let keys = merged_keys.as_deref().or(batch.keys.as_deref());
            ledger
                .record(&tx, batch.seq, &outcome, keys)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(outcome)
    }
}

impl Sink<Batch> for Writer {
    fn write(
        &self,
        batch: &Batch,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<Outcome, Error>> + Send {
        Writer::write(self, batch, limit)
    }
}

/// Wraps a failure with the batch's lines, and the exact line and column when the server's
/// error context names a COPY row (`COPY accounts, line 5, column email: "…"`).
pub(crate) fn batch_error(batch: &Batch, source: tokio_postgres::Error) -> Error {
    let (line, column) = source
        .as_db_error()
        .and_then(|db| db.where_())
        .and_then(copy_context)
        .map_or((None, None), |(row, column)| {
            (batch.line_of_copy_line(row), column)
        });
    Error::Batch {
        seq: batch.seq,
        first_line: batch.first_line,
        last_line: batch.last_line,
        line,
        column,
        source,
    }
}

/// Parses COPY's error context into (line within the COPY stream, column).
fn copy_context(context: &str) -> Option<(u64, Option<String>)> {
    let copy = context.lines().find(|l| l.starts_with("COPY "))?;
    let rest = &copy[copy.find(", line ")? + ", line ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let row = rest[..digits].parse().ok()?;
    let column = rest[digits..].strip_prefix(", column ").map(|c| {
        let end = c.find(": ").unwrap_or(c.len());
        c[..end].to_string()
    });
    Some((row, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_context_gives_row_and_column() {
        assert_eq!(copy_context("COPY accounts, line 5"), Some((5, None)));
        assert_eq!(
            copy_context("COPY accounts, line 12, column email: \"a@b\""),
            Some((12, Some("email".into())))
        );
        assert_eq!(
            copy_context("PL/pgSQL function f() line 3 at RAISE\nCOPY t, line 7, column x"),
            Some((7, Some("x".into())))
        );
        assert_eq!(copy_context("SQL statement \"INSERT …\""), None);
    }
}
