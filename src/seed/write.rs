//! Writing: each batch is one transaction on a pooled connection holding one
//! `COPY … FROM STDIN`, straight into the table (`--on-conflict error`) or into a staging
//! table that is merged with `INSERT … ON CONFLICT` (`skip`, `update`).
//!
//! In reject mode each try of a batch runs in a savepoint: a row the server refuses (named
//! by COPY's error context, or found by bisecting on prefixes of the batch) is set aside
//! and the rest tried again, in the same transaction. `seed --dry-run` loads every batch
//! in a savepoint of one transaction that is rolled back at the end.
//!
//! Invariants: a COPY is always finished or its transaction rolled back; nothing outlives
//! the transaction that made it (the staging table is `ON COMMIT DROP`), so the writers are
//! safe behind a transaction-mode pooler; with a ledger, the batch's ledger row is claimed
//! first in the same transaction, so a batch commits at most once however often it is
//! replayed, and its rejected rows are recorded in that transaction; a batch's rejects
//! reach the rejects file only after it committed; a try that failed is rolled back and
//! its savepoint released, so however many rows are refused, a transaction holds one open
//! savepoint at a time and the locks of its kept work; a connection that failed is never
//! handed out again.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::copy::batch::Batch;
use crate::copy::encode::Format;
use crate::copy::stream::{CopyStatements, copy_row};
use crate::db::catalog::{Table, quote_ident, quote_list};
use crate::db::retry::is_row_error;
use crate::error::{Error, Rejection, server_reason};
use crate::input::rejects::Rejects;
use crate::model::Outcome;
use crate::run::report::Progress;
use crate::run::{Sink, Transactions, Unit, Worked, Written};

/// What to do with a row whose key already exists.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
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
    copy: CopyStatements,
    /// `skip`/`update`: the staging table and the merge into the target.
    staged: Option<Staged>,
}

#[derive(Debug, Clone)]
struct Staged {
    create: String,
    /// Run right after the merge: see [`Writer::attempt`].
    drop: String,
    /// Returns (inserted, updated, keys of the inserted rows as JSON text or NULL).
    merge: String,
}

const STAGE: &str = "provisioner_stage";

/// The savepoint each try of a batch (or of a part of it) runs in.
const TRY: &str = "provisioner_try";
/// The savepoint each batch of a dry run runs in.
const BATCH: &str = "provisioner_batch";

/// The smallest part of a batch reject mode sends on its own after a refusal where the rows
/// are not refused one after another: small enough that a refusal costs little, large
/// enough that round trips do not dominate.
const MIN_CHUNK: usize = 64;

/// The conflict handling and key recording a merge does.
#[derive(Debug, Clone, Copy)]
pub struct MergeSpec<'a> {
    pub mode: OnConflict,
    /// The conflict target; `None` with `skip` means any unique conflict.
    pub key: Option<&'a [String]>,
    /// Columns whose values the ledger records for each inserted row (for `purge --run`).
    pub recorded_key: Option<&'a [String]>,
    /// With `error`: insert through the staging table too, so that the server returns the
    /// keys of the rows it really inserted (the table's triggers may skip or change rows).
    pub staged_insert: bool,
}

impl Statements {
    /// `columns` are the target columns in CSV order.
    pub fn new(table: &Table, columns: &[String], spec: MergeSpec) -> Self {
        let cols = quote_list(columns);
        let target = table.quoted();
        let staged = match spec.mode {
            OnConflict::Error if !spec.staged_insert => None,
            OnConflict::Error | OnConflict::Skip | OnConflict::Update => Some(Staged {
                create: format!(
                    "CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT {cols} FROM {target} WITH NO DATA"
                ),
                drop: format!("DROP TABLE {STAGE}"),
                merge: merge_sql(&target, columns, spec),
            }),
        };
        let into = if staged.is_some() {
            STAGE.to_string()
        } else {
            target
        };
        Statements {
            copy: CopyStatements::new(&into, &cols),
            staged,
        }
    }
}

fn merge_sql(target: &str, columns: &[String], spec: MergeSpec) -> String {
    let cols = quote_list(columns);
    // Staged rows in file order (a fresh table's ctid order is its COPY order).
    let source = format!("(SELECT *, ctid AS provisioner_pos FROM {STAGE}) AS staged");
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
                format!(" ON CONFLICT ({key_cols}) DO {action}"),
            )
        }
        // A plain insert: a conflict fails, as it does in a COPY.
        (OnConflict::Error, _) => (source, String::new()),
        (_, key) => (
            source,
            format!(
                " ON CONFLICT {} DO NOTHING",
                key.map(|k| format!("({})", quote_list(k)))
                    .unwrap_or_default()
            ),
        ),
    };
    // Only DO UPDATE returns rows it did not insert, told apart by xmax (which a partitioned
    // table cannot return, so nothing else asks for it).
    let inserted = match spec.mode {
        OnConflict::Update => "(t.xmax = 0)",
        OnConflict::Error | OnConflict::Skip => "true",
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
        "WITH merged AS (INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {rows}{action} \
                         RETURNING {inserted} AS inserted{returning}) \
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), {keys} \
         FROM merged"
    )
}

/// What loading one batch did, before its transaction commits.
struct Loaded {
    outcome: Outcome,
    /// The keys of the inserted rows, as JSON text, for the ledger; `None` when they are
    /// the batch's own (a direct COPY of all its rows).
    keys: Option<String>,
    /// The batch's rejected rows: the client-side ones and those the server refused.
    rejected: Vec<Rejection>,
}

/// Writes batches over the pool.
#[derive(Clone)]
pub struct Writer {
    transactions: Transactions,
    statements: Arc<Statements>,
    /// Reject mode: rows the server refuses are set aside here instead of failing the run.
    rejects: Option<Arc<Rejects>>,
}

impl Writer {
    pub fn new(
        transactions: Transactions,
        statements: Statements,
        rejects: Option<Arc<Rejects>>,
    ) -> Self {
        Writer {
            transactions,
            statements: Arc::new(statements),
            rejects,
        }
    }

    /// Writes one batch in its own transaction. A batch the ledger shows committed (by an
    /// earlier attempt whose COMMIT reply was lost) is not written again: its recorded
    /// outcome is returned. In reject mode the batch's rejected rows are recorded in the
    /// ledger in its transaction, and go to the rejects file once it committed; a batch
    /// whose rows the file could not take still counts as written, and the run stops before
    /// the next one. `limit` is the batch's deadline (`--batch-timeout`).
    pub async fn write(&self, batch: &Batch, limit: Duration) -> Result<Outcome, Error> {
        self.write_batch(batch, limit)
            .await
            .map_err(|e| batch.in_input(e))
    }

    async fn write_batch(&self, batch: &Batch, limit: Duration) -> Result<Outcome, Error> {
        if let Some(rejects) = &self.rejects {
            rejects.check()?;
        }
        let mut reserved = 0;
        let result = self
            .transactions
            .write(batch, limit, async |tx| {
                let loaded = self.load(tx, batch, &mut reserved).await?;
                if let Some(ledger) = self.transactions.ledger_for(batch) {
                    ledger
                        .record_rejected(tx, batch.seq, &loaded.rejected)
                        .await
                        .map_err(|e| batch.error(e))?;
                }
                // A direct COPY inserted every row sent, whose keys the reader collected; a
                // merge reports the keys of the rows it really inserted.
                let keys = match loaded.keys {
                    Some(keys) => Some(Cow::Owned(keys)),
                    None => batch.keys.as_deref().map(Cow::Borrowed),
                };
                Ok(Worked {
                    outcome: loaded.outcome,
                    keys,
                    kept: loaded.rejected,
                })
            })
            .await;
        let (outcome, rejected) = match result {
            Ok(Written::Done(outcome, rejected)) => (outcome, rejected),
            // Another attempt committed it: its rejects are that attempt's to write.
            Ok(Written::AlreadyCommitted(done)) if done.resumed => {
                tracing::info!(
                    batch = batch.seq,
                    "batch {} was committed by another attempt of the run; not written again",
                    batch.seq
                );
                return Ok(done);
            }
            Ok(Written::AlreadyCommitted(done)) => {
                tracing::info!(
                    batch = batch.seq,
                    "batch {} had already committed; not replayed",
                    batch.seq
                );
                let rejected = self.committed_rejections(batch, &done).await?;
                // This attempt sent it, as this batch: in its format.
                let done = Outcome {
                    binary: batch.format == Format::Binary,
                    ..done
                };
                (done, rejected)
            }
            Err(e) => {
                // The replay (if any) finds its rejections again.
                if let Some(rejects) = &self.rejects {
                    rejects.release(reserved);
                }
                return Err(self.name_failing_row(e, batch).await);
            }
        };
        if let Some(rejects) = &self.rejects {
            // The batch committed, so it counts even when the file cannot take its rows (the
            // ledger keeps them): the failure stays with the file, whose `check` stops the
            // run before the next batch, or at its end.
            let _ = rejects.write(&rejected, batch.input_name());
        }
        Ok(outcome)
    }

    /// The rejected rows of `batch`, which an earlier attempt committed with the outcome
    /// `done`: the reader's own, plus the server's read back from the ledger and counted
    /// against the budget again (their reservations went back when that attempt's COMMIT
    /// reply was lost).
    async fn committed_rejections(
        &self,
        batch: &Batch,
        done: &Outcome,
    ) -> Result<Vec<Rejection>, Error> {
        let (Some(rejects), Some(ledger)) = (&self.rejects, self.transactions.ledger_for(batch))
        else {
            return Ok(batch.rejected.clone());
        };
        if done.rejected == batch.rejected.len() as u64 {
            return Ok(batch.rejected.clone());
        }
        let client = self.transactions.pool().get().await.map_err(Error::Pool)?;
        let rejected = ledger
            .rejected(&client, batch.seq)
            .await
            .map_err(|e| batch.error(e))?;
        for r in &rejected {
            if !batch.rejected.iter().any(|own| own.line == r.line) {
                rejects.reserve(r)?;
            }
        }
        Ok(rejected)
    }

    /// For a row-level failure the server did not place (a staged merge, a check at the
    /// end of the statement): the same error naming the first row that fails, found in a
    /// transaction that is rolled back. Any other error is returned as is.
    async fn name_failing_row(&self, err: Error, batch: &Batch) -> Error {
        if !unplaced_row_error(&err) {
            return err;
        }
        let Ok(mut client) = self.transactions.pool().get().await else {
            return err;
        };
        let Ok(tx) = client.transaction().await else {
            return err;
        };
        if tx
            .batch_execute(self.transactions.settings())
            .await
            .is_err()
        {
            return err;
        }
        let named = self.name_in(&tx, batch, err).await;
        // Nothing is kept; a failed rollback only loses the connection.
        let _ = tx.rollback().await;
        named
    }

    /// `err` naming the row of `batch` that [`Self::bisect`] finds in `tx` (whose work is
    /// rolled back afterwards), when it is a row-level failure the server did not place;
    /// else `err` as it is.
    async fn name_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &Batch,
        err: Error,
    ) -> Error {
        if !unplaced_row_error(&err) {
            return err;
        }
        let all: Vec<usize> = (0..batch.rows).collect();
        let found = match self.try_in_savepoint(tx, batch, false).await {
            Ok(Err(failed)) if is_row_error(&failed) => self
                .bisect(tx, batch, &all, failed, &mut Parts::default())
                .await
                .ok(),
            _ => None,
        };
        match found {
            Some((row, cause)) => batch.failed_at(batch.lines.get(row).copied(), None, cause),
            None => err,
        }
    }

    /// Loads `batch` in `tx`. In reject mode each try runs in a savepoint: when the server
    /// refuses a row, that row is set aside (reserved against the budget, counted in
    /// `reserved`), the rows before it are loaded, and the rows not yet loaded are tried
    /// again, in parts, until they load.
    async fn load(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &Batch,
        reserved: &mut u64,
    ) -> Result<Loaded, Error> {
        let mut rejected = batch.rejected.clone();
        let Some(rejects) = &self.rejects else {
            let (outcome, keys) = self.attempt(tx, batch).await.map_err(|e| batch.error(e))?;
            all_inserted(batch, &outcome, batch.rows)?;
            return Ok(Loaded {
                outcome,
                keys,
                rejected,
            });
        };
        let fail = |source| batch.error(source);
        let (mut pending, mut loaded): (Vec<usize>, Vec<usize>) =
            ((0..batch.rows).collect(), vec![]);
        let mut parts = Parts::default();
        // After a refusal the rows pending go in parts an eighth the size of the last try
        // (not below MIN_CHUNK), so a batch with many bad rows does not send its whole tail
        // again for each; and no larger than twice the rows the refused one came after, so
        // rows refused one after another go one or two at a time (a one-row try that fails
        // names its row without a bisection). Parts that load grow back to MIN_CHUNK.
        let mut chunk = batch.rows;
        while !pending.is_empty() {
            let take = chunk.min(pending.len());
            // The first try sends the batch as it is: a clean batch costs no copy.
            let selected;
            let current = if take == batch.rows {
                batch
            } else {
                selected = batch.select(&pending[..take]);
                &selected
            };
            let err = match self
                .try_in_savepoint(tx, current, true)
                .await
                .map_err(fail)?
            {
                Ok(done) => {
                    parts.add(done);
                    loaded.extend(pending.drain(..take));
                    chunk = chunk.max(MIN_CHUNK.min(2 * take));
                    continue;
                }
                Err(e) if is_row_error(&e) => e,
                Err(e) => return Err(current.error(e)),
            };
            let named =
                copy_row(&err).and_then(|(n, column)| Some((current.row_of_copy_line(n)?, column)));
            // The rows before the refused one load without it. Bisection loaded them; COPY
            // got past them (its error names the row), so they are loaded now, so that
            // later rejections do not send them again.
            let (row, column, err, head_loaded) = match named {
                Some((row, column)) => {
                    let head_loaded = row == 0
                        || self
                            .try_in_savepoint(tx, &batch.select(&pending[..row]), true)
                            .await
                            .map_err(fail)?
                            .map(|done| parts.add(done))
                            .is_ok();
                    (row, column, err, head_loaded)
                }
                None => {
                    let (row, cause) = self
                        .bisect(tx, batch, &pending[..take], err, &mut parts)
                        .await
                        .map_err(fail)?;
                    (row, None, cause, true)
                }
            };
            let db = err.as_db_error().expect("a row error is a server error");
            let rejection = Rejection {
                line: current.lines[row],
                column,
                sqlstate: db.code().code().to_string(),
                reason: server_reason(db),
                value: None,
                raw: batch
                    .records
                    .as_ref()
                    .map(|r| r[pending[row]].raw().to_vec())
                    .unwrap_or_default(),
            };
            rejects.reserve(&rejection)?;
            *reserved += 1;
            tracing::debug!(%rejection, "row rejected by the server");
            rejected.push(rejection);
            chunk = (take / 8).max(MIN_CHUNK).min((2 * row).max(1));
            if head_loaded {
                loaded.extend(pending.drain(..row));
                pending.remove(0);
            } else {
                pending.remove(row);
            }
        }
        all_inserted(batch, &parts.outcome, loaded.len())?;
        let outcome = Outcome {
            rejected: rejected.len() as u64,
            binary: batch.format == Format::Binary,
            ..parts.outcome
        };
        // A merge reports the keys of the rows it inserted. A direct COPY inserted the rows
        // loaded; unless that is all of them, their keys are not the batch's.
        let keys = if self.statements.staged.is_some() {
            parts.keys()
        } else {
            (loaded.len() < batch.rows)
                .then(|| batch.keys_of(&loaded))
                .flatten()
        };
        Ok(Loaded {
            outcome,
            keys,
            rejected,
        })
    }

    /// Tries `batch` in a savepoint of `tx`, kept when it loads and `keep` says so, rolled
    /// back otherwise. The outer error is the savepoint's own; the inner, the try's.
    ///
    /// A savepoint rolled back is released too: `ROLLBACK TO` alone leaves it open, the
    /// next try would nest inside it, and every level left open takes a transaction id and
    /// its lock as soon as a try inside it writes, until the server runs out of lock slots
    /// (`out of shared memory`) after a few thousand refused rows.
    async fn try_in_savepoint(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &Batch,
        keep: bool,
    ) -> Result<Result<(Outcome, Option<String>), tokio_postgres::Error>, tokio_postgres::Error>
    {
        // Sent together, a round trip less: a SAVEPOINT that fails aborts the transaction,
        // and the try fails with it.
        let savepoint = format!("SAVEPOINT {TRY}");
        let (savepoint, result) =
            tokio::join!(tx.batch_execute(&savepoint), self.attempt(tx, batch));
        savepoint?;
        if keep && result.is_ok() {
            tx.batch_execute(&format!("RELEASE SAVEPOINT {TRY}"))
                .await?;
        } else {
            tx.batch_execute(&format!(
                "ROLLBACK TO SAVEPOINT {TRY}; RELEASE SAVEPOINT {TRY}"
            ))
            .await?;
        }
        Ok(result)
    }

    /// The first of the `rows` of `batch` (ascending) that fails in `tx`, given that all of
    /// them together fail with the row-level error `failed`, and the error it causes: found
    /// by bisection, each probe a range of the rows in a savepoint of `tx`, kept when it
    /// loads (added to `parts`) and rolled back when it fails. So the rows before the failing
    /// one end up loaded, and a probe sends only rows after those already loaded. Returns
    /// the failing row's position in `rows`.
    async fn bisect(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &Batch,
        rows: &[usize],
        failed: tokio_postgres::Error,
        parts: &mut Parts,
    ) -> Result<(usize, tokio_postgres::Error), tokio_postgres::Error> {
        // A row fails alone or with the rows before it, never because of rows after it.
        let (mut loaded, mut failing, mut cause) = (0, rows.len(), failed);
        while failing - loaded > 1 {
            let mid = loaded + (failing - loaded) / 2;
            match self
                .try_in_savepoint(tx, &batch.select(&rows[loaded..mid]), true)
                .await?
            {
                Ok(done) => {
                    parts.add(done);
                    loaded = mid;
                }
                Err(e) if is_row_error(&e) => (failing, cause) = (mid, e),
                Err(e) => return Err(e),
            }
        }
        // The smallest failing range's own error: a larger one may fail on a later row first.
        Ok((loaded, cause))
    }

    /// One try at the batch's rows in `tx`: COPY straight into the table, or into a fresh
    /// staging table that is then merged. Returns what it did and, for a merge, the keys
    /// of the rows it inserted (a direct COPY inserted the batch's [`Batch::keys`]).
    async fn attempt(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &Batch,
    ) -> Result<(Outcome, Option<String>), tokio_postgres::Error> {
        let st = &*self.statements;
        if let Some(staged) = &st.staged {
            tx.batch_execute(&staged.create).await?;
        }
        let copied = st.copy.send(tx, batch.format, &batch.payload).await?;
        let binary = batch.format == Format::Binary;
        let Some(staged) = &st.staged else {
            // A BEFORE trigger that returns NULL skips its row, and COPY does not count it.
            let outcome = Outcome {
                inserted: copied,
                skipped: batch.rows as u64 - copied,
                binary,
                ..Outcome::default()
            };
            return Ok((outcome, None));
        };
        let row = tx.query_typed_one(staged.merge.as_str(), &[]).await?;
        // Gone as soon as it is merged: the next batch of a dry run stages again in the same
        // transaction.
        tx.batch_execute(&staged.drop).await?;
        let (inserted, updated) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
        let outcome = Outcome {
            inserted,
            updated,
            skipped: copied - inserted - updated,
            binary,
            ..Outcome::default()
        };
        Ok((outcome, row.get::<_, Option<String>>(2)))
    }

    /// `seed --dry-run`: loads every batch `batches` brings, each in a savepoint of one
    /// transaction on one connection (so later batches see earlier ones, and conflicts
    /// count as they would), then rolls it all back. Nothing is recorded; in reject mode the
    /// rejects file is written as for a real run. Stops at the first failure, which names
    /// its row.
    pub async fn dry_run(
        &self,
        batches: async_channel::Receiver<Batch>,
        progress: &Progress,
    ) -> Result<(), Error> {
        let mut client = self.transactions.pool().get().await.map_err(Error::Pool)?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| Error::database("starting the dry run's transaction", e))?;
        tx.batch_execute(self.transactions.settings())
            .await
            .map_err(|e| Error::database("starting the dry run's transaction", e))?;
        let mut reserved = 0;
        while let Ok(batch) = batches.recv().await {
            let fail = |source| batch.error(source);
            tx.batch_execute(&format!("SAVEPOINT {BATCH}"))
                .await
                .map_err(fail)?;
            match self.load(&tx, &batch, &mut reserved).await {
                Ok(loaded) => {
                    tx.batch_execute(&format!("RELEASE SAVEPOINT {BATCH}"))
                        .await
                        .map_err(fail)?;
                    if let Some(rejects) = &self.rejects {
                        rejects.write(&loaded.rejected, batch.input_name())?;
                    }
                    progress.committed(loaded.outcome);
                }
                Err(e) => {
                    batches.close();
                    tx.batch_execute(&format!(
                        "ROLLBACK TO SAVEPOINT {BATCH}; RELEASE SAVEPOINT {BATCH}"
                    ))
                    .await
                    .map_err(fail)?;
                    return Err(self.name_in(&tx, &batch, e).await);
                }
            }
        }
        tx.rollback()
            .await
            .map_err(|e| Error::database("rolling back the dry run", e))
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

/// With the keys the reader collected (a direct COPY), the server must have inserted every
/// one of the `sent` rows: a trigger that skipped some, created after the run planned to
/// trust the file's keys, would make the ledger record keys of rows the batch did not
/// insert, which `purge --run` would then delete. The batch fails instead; a resumed run
/// sees the trigger and has the server return the keys.
fn all_inserted(batch: &Batch, outcome: &Outcome, sent: usize) -> Result<(), Error> {
    if batch.keys.is_none() || outcome.inserted == sent as u64 {
        return Ok(());
    }
    Err(Error::TriggerSkipped {
        seq: batch.seq,
        span: batch.span(),
        inserted: outcome.inserted,
        sent: sent as u64,
    })
}

/// What the parts of a batch that loaded did, and the keys of the rows their merges
/// inserted, column by column.
#[derive(Default)]
struct Parts {
    outcome: Outcome,
    keys: Option<Vec<Vec<serde_json::Value>>>,
}

impl Parts {
    /// Adds what one part did and the keys its merge returned (column-major JSON text;
    /// `None`: a direct COPY, or a merge that inserted nothing).
    fn add(&mut self, (done, keys): (Outcome, Option<String>)) {
        self.outcome.inserted += done.inserted;
        self.outcome.updated += done.updated;
        self.outcome.skipped += done.skipped;
        let Some(keys) = keys else { return };
        let part: Vec<Vec<serde_json::Value>> =
            serde_json::from_str(&keys).expect("a merge returns one JSON array per key column");
        match &mut self.keys {
            None => self.keys = Some(part),
            Some(columns) => columns.iter_mut().zip(part).for_each(|(c, p)| c.extend(p)),
        }
    }

    /// The keys of all the rows the merges inserted, as the ledger records them; `None`
    /// when there are none.
    fn keys(self) -> Option<String> {
        self.keys
            .map(|columns| serde_json::to_string(&columns).expect("JSON values serialize"))
    }
}

/// A failure the server blamed on a row without saying which (no COPY line in its context).
fn unplaced_row_error(err: &Error) -> bool {
    matches!(err, Error::Batch { line: None, source, .. } if is_row_error(source))
}
