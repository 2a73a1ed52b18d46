-- Ledger v4: the rows reject mode set aside, each with its batch.
-- Written in the batch's own transaction, so a rejected row is kept exactly when its batch
-- committed, whatever becomes of the rejects file: a resumed run writes the file again from
-- here, and a replay that finds its batch committed writes the batch's rows from here.
-- `raw` is the record's text as it was in the input (it may hold any bytes).
CREATE TABLE IF NOT EXISTS {schema}.rejected_rows (
  run_id      bigint NOT NULL,
  seq         bigint NOT NULL,
  line        bigint NOT NULL,
  column_name text,
  sqlstate    text NOT NULL,
  reason      text NOT NULL,
  raw         bytea NOT NULL,
  PRIMARY KEY (run_id, line),
  FOREIGN KEY (run_id, seq) REFERENCES {schema}.batches (run_id, seq) ON DELETE CASCADE
);
