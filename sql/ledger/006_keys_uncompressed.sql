-- Ledger v6: the recorded keys are stored out of line without compression. Keys are mostly
-- random (uuids, e-mail addresses) and compress little, while pglz on a batch's 200 kB of
-- keys cost the server more than a fifth of a seed's time on the example table (measured:
-- 200 batches of 5,000 uuids, 1.15 s compressed, 0.33 s not). Rows written before keep
-- their compression; both read the same.
ALTER TABLE {schema}.inserted_keys ALTER COLUMN keys SET STORAGE EXTERNAL;
