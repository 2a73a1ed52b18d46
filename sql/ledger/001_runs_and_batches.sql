-- Ledger v1: one row per run, one row per committed batch.
-- {schema} is replaced by the quoted ledger schema (--ledger-schema, default provisioner).
CREATE TABLE IF NOT EXISTS {schema}.runs (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  command        text NOT NULL,
  target_table   text NOT NULL,
  -- The input's identity: path ('-' for stdin), size in bytes (NULL for stdin), and a
  -- fingerprint of its first MiB. Resume refuses when any of them changed.
  input_path     text NOT NULL,
  input_size     bigint,
  input_fingerprint text NOT NULL,
  -- What fixes the batch boundaries and their meaning: batch size, columns, conflict mode, key.
  options        jsonb NOT NULL,
  -- The command line with any password removed, to print the command that resumes the run.
  command_line   text[] NOT NULL,
  status         text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
  -- Rows read by the furthest attempt; what was written is summed from the batches.
  rows_read      bigint NOT NULL DEFAULT 0,
  attempts       integer NOT NULL DEFAULT 1,
  error          text,
  host           text,
  started_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz
);

CREATE INDEX IF NOT EXISTS runs_resume_idx ON {schema}.runs (command, target_table, input_path);

-- A batch's row is written in the same transaction as its data, so it exists exactly when
-- the batch committed; the primary key makes a second commit of the same batch impossible.
CREATE TABLE IF NOT EXISTS {schema}.batches (
  run_id       bigint NOT NULL REFERENCES {schema}.runs (id) ON DELETE CASCADE,
  seq          bigint NOT NULL,
  first_line   bigint NOT NULL,
  last_line    bigint NOT NULL,
  rows         bigint NOT NULL,
  -- xxh3 of the batch's fields: a resumed run checks the input still holds the same rows.
  content_hash bigint NOT NULL,
  inserted     bigint,
  updated      bigint,
  skipped      bigint,
  committed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, seq)
);
