//! The keys a seed run recorded for the rows it inserted: what `purge --run` deletes by.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::Ledger;
use crate::error::Error;
use crate::model::Command;

/// What a seed run recorded for `purge --run`.
pub struct Recorded {
    /// The key columns whose values it recorded; `None` when it recorded none.
    pub key: Option<Vec<String>>,
    /// The table columns its CSV held.
    pub columns: Vec<String>,
}

/// One batch of a seed run: where it is (the run, or the input of a run of many inputs,
/// that committed it, and which input: 0 for a run of one, else 1, 2, … in order), its
/// number, how many keys it recorded and how many rows it inserted.
pub struct RecordedBatch {
    pub run_id: i64,
    pub input: i64,
    pub seq: i64,
    pub keys: u64,
    pub inserted: u64,
}

impl Ledger {
    /// What a seed run of `table` recorded for the rows it inserted. Refuses runs that are
    /// not seeds of `table`.
    pub async fn recorded_key(
        &self,
        client: &Client,
        run: i64,
        table: &str,
    ) -> Result<Recorded, Error> {
        let row = client
            .query_typed_opt(
                &format!(
                    "SELECT command, target_table, options->'recorded_key', options->'columns' \
                     FROM {}.runs WHERE id = $1",
                    self.quoted_schema()
                ),
                &[(&run, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("looking up the seed run", e))?
            .ok_or_else(|| Error::Usage(format!("--run {run}: no such run in the ledger")))?;
        let (command, target): (String, String) = (row.get(0), row.get(1));
        if command != Command::Seed.as_str() || target != table {
            return Err(Error::Usage(format!(
                "--run {run}: that run is a {command} of {target}, not a seed of {table}"
            )));
        }
        let strings = |i| {
            row.get::<_, Option<serde_json::Value>>(i)
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
        };
        Ok(Recorded {
            key: strings(2),
            columns: strings(3).unwrap_or_default(),
        })
    }

    /// How many keys a seed run (every input of a run of many inputs) recorded.
    pub async fn recorded_count(&self, client: &Client, run: i64) -> Result<u64, Error> {
        let row = client
            .query_typed_one(
                &format!(
                    "SELECT coalesce(sum(jsonb_array_length(keys->0)), 0)::bigint \
                     FROM {s}.inserted_keys WHERE run_id = $1 \
                       OR run_id IN (SELECT id FROM {s}.runs WHERE parent_id = $1)",
                    s = self.quoted_schema()
                ),
                &[(&run, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("counting the run's recorded keys", e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// The committed batches of a seed run (of every input of a run of many inputs) that
    /// inserted rows or recorded keys, in order.
    pub async fn recorded_batches(
        &self,
        client: &Client,
        run: i64,
    ) -> Result<Vec<RecordedBatch>, Error> {
        Ok(client
            .query_typed(
                &format!(
                    "WITH parts (run_id, input) AS ( \
                       SELECT $1::bigint, 0::bigint UNION ALL \
                       SELECT id, row_number() OVER (ORDER BY id) FROM {0}.runs WHERE parent_id = $1) \
                     SELECT p.run_id, p.input, b.seq, \
                            coalesce(jsonb_array_length(k.keys->0), 0)::bigint, \
                            coalesce(b.inserted, 0) \
                     FROM parts p JOIN {0}.batches b ON b.run_id = p.run_id \
                       LEFT JOIN {0}.inserted_keys k ON k.run_id = b.run_id AND k.seq = b.seq \
                     WHERE k.seq IS NOT NULL OR b.inserted > 0 \
                     ORDER BY p.input, b.seq",
                    self.quoted_schema()
                ),
                &[(&run, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("listing the run's recorded keys", e))?
            .iter()
            .map(|r| RecordedBatch {
                run_id: r.get(0),
                input: r.get(1),
                seq: r.get(2),
                keys: r.get::<_, i64>(3) as u64,
                inserted: r.get::<_, i64>(4) as u64,
            })
            .collect())
    }
}
