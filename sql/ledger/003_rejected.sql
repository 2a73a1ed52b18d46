-- Ledger v3: reject mode (`seed --rejects`).
-- Rows of the batch set aside (refused by a client-side check or by the server) instead of
-- loaded; written in the batch's own transaction, so a resumed run's summary and its
-- --max-errors budget count the rows its earlier attempts rejected.
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS rejected bigint;
