-- Ledger v5: one live attempt per run.
-- The lease of the attempt running the run: taken when it starts or resumes (a resume is
-- refused while another attempt holds a live one), renewed while it runs, released (NULL)
-- when it ends. `attempts` numbers the holder: a renewal or an end recorded by an attempt
-- that lost the lease to a later one changes nothing.
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS lease_host text;
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS lease_pid integer;
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS lease_renewed_at timestamptz;
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz;
-- The attempt of the run that committed the batch (NULL: one before v5), so that an attempt
-- meeting a batch another one committed counts it as resumed, not as its own.
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS attempt integer;
