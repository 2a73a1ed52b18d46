//! Inside a batch's transaction: claim the batch first, record what it did last, in the same
//! transaction as its data (see the ledger's invariant).

use tokio_postgres::types::Type;

use super::{Attempt, Ledger};
use crate::error::Rejection;
use crate::model::Outcome;

/// Where a batch sits in its input, as its ledger row records it.
#[derive(Debug, Clone, Copy)]
pub struct BatchId {
    pub seq: u64,
    pub first_line: u64,
    pub last_line: u64,
    pub rows: u64,
    pub content_hash: u64,
}

/// A run's ledger rows as seen from inside a batch's transaction: claim the batch first,
/// record what it did last, in the same transaction as its data. Each statement is one round
/// trip on the unnamed statement (`query_typed`): a named statement prepared once per
/// connection would outlive its transaction, which a transaction-mode pooler cannot carry.
#[derive(Debug, Clone)]
pub struct BatchLedger {
    run_id: i64,
    /// The attempt writing: recorded with each batch it claims.
    attempt: i32,
    claim: String,
    record: String,
    lookup: String,
    record_keys: String,
    record_rejected: String,
    rejected: String,
}

/// A batch the ledger already holds as committed.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// What it did; `resumed` when another attempt of the run committed it.
    pub outcome: Outcome,
    /// The content it was committed with.
    pub content_hash: u64,
}

impl BatchLedger {
    /// Claims the batch for this transaction. `Some` when it already committed (a try of
    /// this attempt whose COMMIT reply was lost, or another attempt): the caller must not
    /// write it again and should roll back. Waits while another open transaction holds the
    /// claim.
    pub async fn claim(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        id: BatchId,
    ) -> Result<Option<Committed>, tokio_postgres::Error> {
        let seq = id.seq as i64;
        let claimed = tx
            .execute_typed(
                &self.claim,
                &[
                    (&self.run_id, Type::INT8),
                    (&seq, Type::INT8),
                    (&(id.first_line as i64), Type::INT8),
                    (&(id.last_line as i64), Type::INT8),
                    (&(id.rows as i64), Type::INT8),
                    (&(id.content_hash as i64), Type::INT8),
                    (&self.attempt, Type::INT4),
                ],
            )
            .await?;
        if claimed == 1 {
            return Ok(None);
        }
        let row = tx
            .query_typed_one(
                &self.lookup,
                &[(&self.run_id, Type::INT8), (&seq, Type::INT8)],
            )
            .await?;
        let n = |i| row.get::<_, i64>(i) as u64;
        Ok(Some(Committed {
            outcome: Outcome {
                inserted: n(0),
                updated: n(1),
                skipped: n(2),
                deleted: n(3),
                missing: n(4),
                rejected: n(5),
                binary: false,
                resumed: row.get::<_, Option<i32>>(6) != Some(self.attempt),
            },
            content_hash: n(7),
        }))
    }

    /// Records what the batch did, and the keys of the rows it inserted (a JSON text, see
    /// `inserted_keys` in sql/ledger/002_purge.sql).
    pub async fn record(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        seq: u64,
        outcome: &Outcome,
        inserted_keys: Option<&str>,
    ) -> Result<(), tokio_postgres::Error> {
        let seq = seq as i64;
        let n = |v: u64| v as i64;
        tx.execute_typed(
            &self.record,
            &[
                (&self.run_id, Type::INT8),
                (&seq, Type::INT8),
                (&n(outcome.inserted), Type::INT8),
                (&n(outcome.updated), Type::INT8),
                (&n(outcome.skipped), Type::INT8),
                (&n(outcome.deleted), Type::INT8),
                (&n(outcome.missing), Type::INT8),
                (&n(outcome.rejected), Type::INT8),
            ],
        )
        .await?;
        if let Some(keys) = inserted_keys {
            tx.execute_typed(
                &self.record_keys,
                &[
                    (&self.run_id, Type::INT8),
                    (&seq, Type::INT8),
                    (&keys, Type::TEXT),
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Records the rows the batch set aside (reject mode), so that they are kept exactly
    /// when the batch commits, whatever becomes of the rejects file.
    pub async fn record_rejected(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        seq: u64,
        rejected: &[Rejection],
    ) -> Result<(), tokio_postgres::Error> {
        if rejected.is_empty() {
            return Ok(());
        }
        let lines: Vec<i64> = rejected.iter().map(|r| r.line as i64).collect();
        let columns: Vec<Option<&str>> = rejected.iter().map(|r| r.column.as_deref()).collect();
        let sqlstates: Vec<&str> = rejected.iter().map(|r| r.sqlstate.as_str()).collect();
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        let raws: Vec<&[u8]> = rejected.iter().map(|r| r.raw.as_slice()).collect();
        tx.execute_typed(
            &self.record_rejected,
            &[
                (&self.run_id, Type::INT8),
                (&(seq as i64), Type::INT8),
                (&lines, Type::INT8_ARRAY),
                (&columns, Type::TEXT_ARRAY),
                (&sqlstates, Type::TEXT_ARRAY),
                (&reasons, Type::TEXT_ARRAY),
                (&raws, Type::BYTEA_ARRAY),
            ],
        )
        .await?;
        Ok(())
    }

    /// The rows a committed batch set aside, in line order, as [`Self::record_rejected`]
    /// recorded them.
    pub async fn rejected(
        &self,
        client: &tokio_postgres::Client,
        seq: u64,
    ) -> Result<Vec<Rejection>, tokio_postgres::Error> {
        let rows = client
            .query_typed(
                &self.rejected,
                &[(&self.run_id, Type::INT8), (&(seq as i64), Type::INT8)],
            )
            .await?;
        Ok(rows.iter().map(rejection).collect())
    }
}

/// A row of `rejected_rows` (`line, column_name, sqlstate, reason, raw`) as the rejection it
/// records.
pub(super) fn rejection(row: &tokio_postgres::Row) -> Rejection {
    Rejection {
        line: row.get::<_, i64>(0) as u64,
        column: row.get(1),
        sqlstate: row.get(2),
        reason: row.get(3),
        value: None,
        raw: row.get(4),
    }
}

impl Ledger {
    /// The run's ledger rows, for the writers of `attempt`.
    pub fn batches(&self, attempt: Attempt) -> BatchLedger {
        let s = self.quoted_schema();
        BatchLedger {
            run_id: attempt.run_id,
            attempt: attempt.number,
            claim: format!(
                "INSERT INTO {s}.batches (run_id, seq, first_line, last_line, rows, content_hash, \
                   started_at, attempt) \
                 VALUES ($1, $2, $3, $4, $5, $6, now(), $7) ON CONFLICT (run_id, seq) DO NOTHING"
            ),
            record: format!(
                "UPDATE {s}.batches SET inserted = $3, updated = $4, skipped = $5, deleted = $6, \
                   missing = $7, rejected = $8, committed_at = clock_timestamp() \
                 WHERE run_id = $1 AND seq = $2"
            ),
            lookup: format!(
                "SELECT coalesce(inserted, 0), coalesce(updated, 0), coalesce(skipped, 0), \
                        coalesce(deleted, 0), coalesce(missing, 0), coalesce(rejected, 0), \
                        attempt, content_hash \
                 FROM {s}.batches WHERE run_id = $1 AND seq = $2"
            ),
            record_keys: format!(
                "INSERT INTO {s}.inserted_keys (run_id, seq, keys) VALUES ($1, $2, $3::text::jsonb)"
            ),
            record_rejected: format!(
                "INSERT INTO {s}.rejected_rows (run_id, seq, line, column_name, sqlstate, reason, raw) \
                 SELECT $1, $2, r.* FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], \
                                                $7::bytea[]) AS r"
            ),
            rejected: format!(
                "SELECT line, column_name, sqlstate, reason, raw FROM {s}.rejected_rows \
                 WHERE run_id = $1 AND seq = $2 ORDER BY line"
            ),
        }
    }
}
