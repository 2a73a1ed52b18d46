-- Ledger v7: runs of many inputs (`seed a.csv b.csv.gz parts/`, `seed --join RUN_ID`).
-- Such a run is a parent row (its input_path is the inputs' common base directory) with one
-- child row per input. A child is a run of its own, as a run of one input is: its batches,
-- keys, rejected rows, attempts and lease are the input's, which is what lets processes on
-- many hosts share one run through this table alone (claims take a child FOR UPDATE SKIP
-- LOCKED; a lease that expired may be taken over).
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS parent_id bigint
  REFERENCES {schema}.runs (id) ON DELETE CASCADE;
-- The input's path relative to the parent's input_path: how a joining process finds it
-- under its --input-root.
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS input_name text;
-- The process of the latest attempt (with `host`): for a completed input, who completed it.
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS pid integer;
-- When the latest attempt took the run, and the expiry of the live lease it took over
-- (NULL: the run was free), which shows a takeover waited for the lease to expire.
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS claimed_at timestamptz;
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS took_over_expired_at timestamptz;
-- An input no process has claimed yet.
ALTER TABLE {schema}.runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE {schema}.runs ADD CONSTRAINT runs_status_check
  CHECK (status IN ('pending', 'running', 'completed', 'failed', 'interrupted'));
CREATE INDEX IF NOT EXISTS runs_parent_idx ON {schema}.runs (parent_id, id)
  WHERE parent_id IS NOT NULL;
