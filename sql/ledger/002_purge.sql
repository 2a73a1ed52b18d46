-- Ledger v2: what purge needs.
-- The keys of the rows each seed batch inserted (not those it skipped or updated), so that
-- `purge --run` deletes exactly what a run added. Written in the batch's own transaction.
-- The key columns are in the run's options ("recorded_key"); `keys` holds their values
-- column-major as text: [[k1, k2, …]] for a one-column key.
CREATE TABLE IF NOT EXISTS {schema}.inserted_keys (
  run_id bigint NOT NULL,
  seq    bigint NOT NULL,
  keys   jsonb NOT NULL,
  PRIMARY KEY (run_id, seq),
  FOREIGN KEY (run_id, seq) REFERENCES {schema}.batches (run_id, seq) ON DELETE CASCADE
);

-- A purge batch's figures.
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS deleted bigint;
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS missing bigint;
-- When the batch's transaction began; with committed_at (the clock when its work was done)
-- this bounds how long the batch held its locks.
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS started_at timestamptz;
