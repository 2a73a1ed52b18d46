//! The keys a seed run recorded for the rows it inserted: what `purge --run` deletes by.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::Ledger;
use crate::error::Error;
use crate::model::Command;

impl Ledger {
    /// The key columns a seed run recorded for the rows it inserted into `table`. Refuses
    /// runs that are not seeds of `table` or recorded no keys.
    pub async fn recorded_key(
        &self,
        client: &Client,
        run: i64,
        table: &str,
    ) -> Result<Vec<String>, Error> {
        let row = client
            .query_typed_opt(
                &format!(
                    "SELECT command, target_table, options->'recorded_key' FROM {}.runs WHERE id = $1",
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
        let key: Option<serde_json::Value> = row.get(2);
        key.and_then(|k| serde_json::from_value::<Vec<String>>(k).ok())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--run {run}: the run did not record the keys it inserted (it ran with \
                     --no-record-keys, or its CSV covered no unique key); purge by file or --where"
                ))
            })
    }

    /// How many keys a seed run recorded.
    pub async fn recorded_count(&self, client: &Client, run: i64) -> Result<u64, Error> {
        let row = client
            .query_typed_one(
                &format!(
                    "SELECT coalesce(sum(jsonb_array_length(keys->0)), 0)::bigint \
                     FROM {}.inserted_keys WHERE run_id = $1",
                    self.quoted_schema()
                ),
                &[(&run, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("counting the run's recorded keys", e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// The batches of a seed run that recorded keys, in order, with how many each recorded.
    pub async fn recorded_batches(
        &self,
        client: &Client,
        run: i64,
    ) -> Result<Vec<(i64, u64)>, Error> {
        Ok(client
            .query_typed(
                &format!(
                    "SELECT seq, jsonb_array_length(keys->0)::bigint FROM {}.inserted_keys \
                     WHERE run_id = $1 ORDER BY seq",
                    self.quoted_schema()
                ),
                &[(&run, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("listing the run's recorded keys", e))?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }
}
