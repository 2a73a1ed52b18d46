//! The run ledger: what each run is and which of its batches committed, kept in the target
//! database itself (schema `provisioner` unless `--ledger-schema` says otherwise).
//!
//! Invariant: a batch's ledger row is written in the same transaction as the batch's data,
//! and written first (`INSERT … ON CONFLICT DO NOTHING` on the run and sequence number). So
//! the row exists exactly when the data committed, a replay of a batch that did commit finds
//! it and stops, and a replay racing a transaction whose COMMIT outcome is still unknown waits
//! for that outcome instead of guessing. Migrations are embedded, versioned and idempotent.

use std::collections::HashMap;

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::catalog::{self, Object, Privilege, quote_ident};
use crate::error::Error;
use crate::pipeline::Outcome;

pub const DEFAULT_SCHEMA: &str = "provisioner";

/// Embedded migrations, applied in order; `{schema}` stands for the quoted schema name.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../sql/ledger/001_runs_and_batches.sql")),
    (2, include_str!("../sql/ledger/002_purge.sql")),
    (3, include_str!("../sql/ledger/003_rejected.sql")),
];

/// The oldest ledger version [`Ledger::existing`] reads: runs, batches and recorded keys
/// are there from version 2; later versions only add what writers record (`rejected`).
const READABLE_FROM: i32 = 2;

/// What identifies a run for `--resume`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunKey {
    pub command: &'static str,
    pub target_table: String,
    pub input_path: String,
    pub input_size: Option<i64>,
    pub input_fingerprint: String,
    /// Batch size, columns, conflict mode and key: everything that fixes batch boundaries
    /// and what a batch does. Its `layout` member, where there is one, is how the run cut its
    /// input when it first started (a `--where` purge's page ranges): a resume reuses the
    /// recorded one, so it is not part of what identifies the run.
    pub options: serde_json::Value,
}

/// The member of [`RunKey::options`] a run records at first start and a resume reuses.
pub const LAYOUT: &str = "layout";

/// `options` without its [`LAYOUT`]: what a resume must match.
fn identity(options: &serde_json::Value) -> serde_json::Value {
    let mut options = options.clone();
    if let Some(map) = options.as_object_mut() {
        map.remove(LAYOUT);
    }
    options
}

/// A run as the ledger records it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub id: i64,
    pub command: String,
    pub target_table: String,
    pub input_path: String,
    pub input_size: Option<i64>,
    pub status: String,
    pub rows_read: i64,
    pub rows_inserted: i64,
    pub rows_updated: i64,
    pub rows_skipped: i64,
    /// Rows set aside in reject mode.
    pub rows_rejected: i64,
    /// Rows a purge deleted.
    pub rows_deleted: i64,
    /// Keys a purge looked for and did not find.
    pub rows_missing: i64,
    pub batches: i64,
    pub attempts: i32,
    pub error: Option<String>,
    pub host: Option<String>,
    pub started_at: String,
    pub duration_s: f64,
    pub command_line: Vec<String>,
}

impl Run {
    pub fn finished(&self) -> bool {
        self.status == "completed"
    }

    pub fn is_purge(&self) -> bool {
        self.command == "purge"
    }

    /// The rows the run wrote: deleted by a purge; inserted, updated or skipped by a seed.
    pub fn rows(&self) -> i64 {
        if self.is_purge() {
            self.rows_deleted
        } else {
            self.rows_inserted + self.rows_updated + self.rows_skipped
        }
    }

    /// The shell command that resumes this run.
    pub fn resume_command(&self) -> String {
        resume_command(&self.command_line, self.id)
    }
}

/// `command_line` without any earlier `--resume`, plus `--resume ID`, quoted for a POSIX shell.
pub fn resume_command(command_line: &[String], id: i64) -> String {
    let mut out: Vec<String> = Vec::with_capacity(command_line.len() + 2);
    let mut args = command_line.iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "--resume" {
            if args.peek().is_some_and(|a| a.parse::<i64>().is_ok()) {
                args.next();
            }
            continue;
        }
        if arg.starts_with("--resume=") {
            continue;
        }
        out.push(shell_quote(arg));
    }
    out.push("--resume".into());
    out.push(id.to_string());
    out.join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The run's final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Completed,
    Failed,
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

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
    claim: String,
    record: String,
    lookup: String,
    record_keys: String,
}

impl BatchLedger {
    /// Claims the batch for this transaction. `Some(outcome)` when it already committed (an
    /// earlier attempt whose COMMIT reply was lost): the caller must not write it again and
    /// should roll back. Waits while another open transaction holds the claim.
    pub async fn claim(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        id: BatchId,
    ) -> Result<Option<Outcome>, tokio_postgres::Error> {
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
        Ok(Some(Outcome {
            inserted: n(0),
            updated: n(1),
            skipped: n(2),
            deleted: n(3),
            missing: n(4),
            rejected: n(5),
            binary: false,
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
}

/// Starts a batch's work in its transaction: its `SET LOCAL` settings and, with a ledger,
/// its claim, sent together (pipelined) so that both cost one round trip. `Some(outcome)`:
/// the batch had already committed (see [`BatchLedger::claim`]).
pub async fn begin_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    settings: &str,
    ledger: Option<&BatchLedger>,
    id: BatchId,
) -> Result<Option<Outcome>, tokio_postgres::Error> {
    let claim = async {
        match ledger {
            Some(ledger) => ledger.claim(tx, id).await,
            None => Ok(None),
        }
    };
    let ((), done) = tokio::try_join!(tx.batch_execute(settings), claim)?;
    Ok(done)
}

/// The ledger in one schema of the target database.
#[derive(Debug, Clone)]
pub struct Ledger {
    schema: String,
}

/// The ledger tables and the privileges the runs need on them (besides USAGE on the
/// schema): what the README's least-privilege GRANTs give.
const GRANTS: &[(&str, &[&str])] = &[
    ("migrations", &["SELECT"]),
    ("runs", &["SELECT", "INSERT", "UPDATE"]),
    ("batches", &["SELECT", "INSERT", "UPDATE"]),
    ("inserted_keys", &["SELECT", "INSERT"]),
];

impl Ledger {
    /// The ledger in `schema`, created or migrated first when it is missing or behind (then
    /// serialised by an advisory lock, so two runs starting at once do not race). A ledger
    /// already current is only read: no DDL, so a role without CREATE can use it. Refuses
    /// (exit 2) a role that lacks the privileges the runs need on it, naming them.
    pub async fn open(client: &mut Client, schema: &str) -> Result<Ledger, Error> {
        let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        let ledger = if Ledger::version(client, schema).await? == Some(latest) {
            Ledger {
                schema: quote_ident(schema),
            }
        } else {
            Ledger::migrate(client, schema).await?
        };
        let mut needs = vec![Privilege::on_schema("USAGE", schema)];
        for (table, privileges) in GRANTS {
            for privilege in privileges.iter() {
                needs.push(Privilege {
                    privilege,
                    on: Object::Table {
                        schema: schema.to_string(),
                        name: table.to_string(),
                        columns: Vec::new(),
                    },
                });
            }
        }
        catalog::require(client, &needs).await?;
        Ok(ledger)
    }

    /// Creates the schema (only when missing: CREATE SCHEMA IF NOT EXISTS would need CREATE
    /// on the database even then) and applies pending migrations.
    async fn migrate(client: &mut Client, schema: &str) -> Result<Ledger, Error> {
        let q = quote_ident(schema);
        let ctx = |what: &str| format!("preparing the ledger in schema {schema} ({what})");
        let exists: bool = client
            .query_typed_one(
                "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)",
                &[(&schema, Type::TEXT)],
            )
            .await
            .map_err(|e| Error::database(ctx("schema"), e))?
            .get(0);
        // The privilege to create what is missing, named before the server refuses it.
        let creates = if exists {
            Privilege::on_schema("CREATE", schema)
        } else {
            Privilege {
                privilege: "CREATE",
                on: Object::Database,
            }
        };
        catalog::require(client, &[creates]).await.map_err(|e| {
            Error::Usage(format!(
                "{e}\nThe ledger in schema {schema} is missing or behind: create or migrate it \
                 once as a role that may (or run with --no-ledger)."
            ))
        })?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| Error::database(ctx("begin"), e))?;
        tx.execute_typed(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[(&schema, Type::TEXT)],
        )
        .await
        .map_err(|e| Error::database(ctx("lock"), e))?;
        // "already exists, skipping" notices are noise on every run but the first.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await
            .map_err(|e| Error::database(ctx("settings"), e))?;
        // Another run may have created it meanwhile.
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {q}"))
                .await
                .map_err(|e| Error::database(ctx("schema"), e))?;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {q}.migrations \
               (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(|e| Error::database(ctx("schema"), e))?;
        let applied: Vec<i32> = tx
            .query_typed(&format!("SELECT version FROM {q}.migrations"), &[])
            .await
            .map_err(|e| Error::database(ctx("versions"), e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
            tx.batch_execute(&sql.replace("{schema}", &q))
                .await
                .map_err(|e| Error::database(ctx(&format!("migration {version}")), e))?;
            tx.execute_typed(
                &format!("INSERT INTO {q}.migrations (version) VALUES ($1)"),
                &[(version, Type::INT4)],
            )
            .await
            .map_err(|e| Error::database(ctx("record migration"), e))?;
        }
        tx.commit()
            .await
            .map_err(|e| Error::database(ctx("commit"), e))?;
        Ok(Ledger { schema: q })
    }

    /// The ledger in `schema` if it is there and holds what a reader needs (version
    /// `READABLE_FROM` on), without creating or migrating anything (for runs that must
    /// change nothing, like a dry run).
    pub async fn existing(client: &Client, schema: &str) -> Result<Option<Ledger>, Error> {
        let version = Ledger::version(client, schema).await?;
        Ok((version >= Some(READABLE_FROM)).then(|| Ledger {
            schema: quote_ident(schema),
        }))
    }

    /// The version of the ledger in `schema`; `None` when there is none.
    async fn version(client: &Client, schema: &str) -> Result<Option<i32>, Error> {
        let q = quote_ident(schema);
        // From the catalog, which needs no privilege on the schema.
        let found: bool = client
            .query_typed_one(
                "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                                WHERE n.nspname = $1 AND c.relname = 'migrations')",
                &[(&schema, Type::TEXT)],
            )
            .await
            .map_err(|e| Error::database("looking for the ledger", e))?
            .get(0);
        if !found {
            return Ok(None);
        }
        catalog::require(
            client,
            &[
                Privilege::on_schema("USAGE", schema),
                Privilege {
                    privilege: "SELECT",
                    on: Object::Table {
                        schema: schema.to_string(),
                        name: "migrations".into(),
                        columns: Vec::new(),
                    },
                },
            ],
        )
        .await?;
        let version: Option<i32> = client
            .query_typed_one(&format!("SELECT max(version) FROM {q}.migrations"), &[])
            .await
            .map_err(|e| Error::database("reading the ledger's version", e))?
            .get(0);
        Ok(version)
    }

    /// The ledger's schema, already quoted.
    pub fn quoted_schema(&self) -> &str {
        &self.schema
    }

    /// Starts a new run, or resumes one (`resume`), and returns its id with the batches it
    /// already committed (sequence number → content hash).
    pub async fn open_run(
        &self,
        client: &Client,
        key: &RunKey,
        command_line: &[String],
        resume: Option<crate::seed::Resume>,
    ) -> Result<(i64, HashMap<u64, u64>), Error> {
        let opened = match resume {
            None => (self.start(client, key, command_line).await?, HashMap::new()),
            Some(resume) => {
                let wanted = match resume {
                    crate::seed::Resume::Latest => None,
                    crate::seed::Resume::Run(id) => Some(id),
                };
                let id = self.find_resumable(client, key, wanted).await?;
                (id, self.committed(client, id).await?)
            }
        };
        tracing::info!(
            run_id = opened.0,
            resumed_batches = opened.1.len(),
            "run recorded in the ledger"
        );
        Ok(opened)
    }

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
        if command != "seed" || target != table {
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

    /// The run's ledger rows, for the writers.
    pub fn batches(&self, run_id: i64) -> BatchLedger {
        let s = self.quoted_schema();
        BatchLedger {
            run_id,
            claim: format!(
                "INSERT INTO {s}.batches (run_id, seq, first_line, last_line, rows, content_hash, started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (run_id, seq) DO NOTHING"
            ),
            record: format!(
                "UPDATE {s}.batches SET inserted = $3, updated = $4, skipped = $5, deleted = $6, \
                   missing = $7, rejected = $8, committed_at = clock_timestamp() \
                 WHERE run_id = $1 AND seq = $2"
            ),
            lookup: format!(
                "SELECT coalesce(inserted, 0), coalesce(updated, 0), coalesce(skipped, 0), \
                        coalesce(deleted, 0), coalesce(missing, 0), coalesce(rejected, 0) \
                 FROM {s}.batches WHERE run_id = $1 AND seq = $2"
            ),
            record_keys: format!(
                "INSERT INTO {s}.inserted_keys (run_id, seq, keys) VALUES ($1, $2, $3::text::jsonb)"
            ),
        }
    }

    /// Records a new run as running and returns its id.
    pub async fn start(
        &self,
        client: &Client,
        key: &RunKey,
        command_line: &[String],
    ) -> Result<i64, Error> {
        let host = whoami::hostname().ok();
        client
            .query_typed_one(
                &format!(
                    "INSERT INTO {}.runs (command, target_table, input_path, input_size, \
                       input_fingerprint, options, command_line, status, host) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8) RETURNING id",
                    self.quoted_schema()
                ),
                &[
                    (&key.command, Type::TEXT),
                    (&key.target_table, Type::TEXT),
                    (&key.input_path, Type::TEXT),
                    (&key.input_size, Type::INT8),
                    (&key.input_fingerprint, Type::TEXT),
                    (&key.options, Type::JSONB),
                    (&command_line, Type::TEXT_ARRAY),
                    (&host, Type::TEXT),
                ],
            )
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::database("recording the run in the ledger", e))
    }

    /// Finds the run to resume (see [`Ledger::resumable`]) and marks it running again.
    pub async fn find_resumable(
        &self,
        client: &Client,
        key: &RunKey,
        id: Option<i64>,
    ) -> Result<i64, Error> {
        let (run_id, _) = self.resumable(client, key, id).await?;
        client
            .execute_typed(
                &format!(
                    "UPDATE {}.runs SET status = 'running', attempts = attempts + 1, error = NULL, \
                     finished_at = NULL, updated_at = now() WHERE id = $1",
                    self.quoted_schema()
                ),
                &[(&run_id, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("marking the run as resumed", e))?;
        Ok(run_id)
    }

    /// The run to resume, with the options it recorded: `id` when given, else the latest
    /// unfinished run of the same command, table, input path and options. Refuses (usage
    /// error) when the run does not match, is finished, or the input changed since it
    /// started. Changes nothing.
    pub async fn resumable(
        &self,
        client: &Client,
        key: &RunKey,
        id: Option<i64>,
    ) -> Result<(i64, serde_json::Value), Error> {
        let rows = client
            .query_typed(
                &format!(
                    "SELECT id, status, target_table, input_path, input_size, input_fingerprint, options \
                     FROM {}.runs WHERE command = $1 AND ($2::bigint IS NULL AND target_table = $3 \
                       AND input_path = $4 AND options - '{LAYOUT}' = $5 AND status <> 'completed' \
                       OR id = $2) \
                     ORDER BY id DESC LIMIT 1",
                    self.quoted_schema()
                ),
                &[
                    (&key.command, Type::TEXT),
                    (&id, Type::INT8),
                    (&key.target_table, Type::TEXT),
                    (&key.input_path, Type::TEXT),
                    (&identity(&key.options), Type::JSONB),
                ],
            )
            .await
            .map_err(|e| Error::database("looking up the run to resume", e))?;
        let Some(row) = rows.first() else {
            return Err(Error::Usage(match id {
                Some(id) => format!(
                    "--resume {id}: no {} run with that id in the ledger",
                    key.command
                ),
                None => format!(
                    "--resume: no unfinished {} run of {} into {} with these options; run without --resume to start one",
                    key.command, key.input_path, key.target_table
                ),
            }));
        };
        let run_id: i64 = row.get(0);
        let status: &str = row.get(1);
        let mismatch = |what: &str, then: String, now: String| {
            Err(Error::Usage(format!(
                "--resume {run_id}: the {what} differs from the run's ({then} then, {now} now); \
                 refusing to resume. Start a new run without --resume, or resume with the original {what}."
            )))
        };
        if status == "completed" {
            return Err(Error::Usage(format!(
                "--resume {run_id}: the run is already completed; nothing to resume"
            )));
        }
        let (table, path): (String, String) = (row.get(2), row.get(3));
        if table != key.target_table {
            return mismatch("table", table, key.target_table.clone());
        }
        if path != key.input_path {
            return mismatch("input", path, key.input_path.clone());
        }
        let options: serde_json::Value = row.get(6);
        if identity(&options) != identity(&key.options) {
            return mismatch(
                "batching options",
                identity(&options).to_string(),
                identity(&key.options).to_string(),
            );
        }
        let (size, fingerprint): (Option<i64>, String) = (row.get(4), row.get(5));
        if size != key.input_size || fingerprint != key.input_fingerprint {
            return Err(Error::Usage(format!(
                "--resume {run_id}: {} changed since the run started (size {} then, {} now; \
                 content fingerprint {}); refusing to resume",
                key.input_path,
                size.map_or("unknown".into(), |s| s.to_string()),
                key.input_size.map_or("unknown".into(), |s| s.to_string()),
                if fingerprint == key.input_fingerprint {
                    "unchanged"
                } else {
                    "changed"
                },
            )));
        }
        Ok((run_id, options))
    }

    /// Committed batches of a run: sequence number → content hash.
    pub async fn committed(
        &self,
        client: &Client,
        run_id: i64,
    ) -> Result<HashMap<u64, u64>, Error> {
        Ok(client
            .query_typed(
                &format!(
                    "SELECT seq, content_hash FROM {}.batches WHERE run_id = $1",
                    self.quoted_schema()
                ),
                &[(&run_id, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("reading the run's committed batches", e))?
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
            .collect())
    }

    /// Where each committed batch of a run sits, in order: sequence number, first and last
    /// line (or page).
    pub async fn committed_spans(
        &self,
        client: &Client,
        run_id: i64,
    ) -> Result<Vec<(u64, u64, u64)>, Error> {
        Ok(client
            .query_typed(
                &format!(
                    "SELECT seq, first_line, last_line FROM {}.batches WHERE run_id = $1 ORDER BY seq",
                    self.quoted_schema()
                ),
                &[(&run_id, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("reading the run's committed batches", e))?
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0) as u64,
                    r.get::<_, i64>(1) as u64,
                    r.get::<_, i64>(2) as u64,
                )
            })
            .collect())
    }

    /// Rows the run's committed batches rejected (reject mode), for a resumed run's
    /// summary and budget.
    pub async fn rejected(&self, client: &Client, run_id: i64) -> Result<u64, Error> {
        let row = client
            .query_typed_one(
                &format!(
                    "SELECT coalesce(sum(rejected), 0)::bigint FROM {}.batches WHERE run_id = $1",
                    self.quoted_schema()
                ),
                &[(&run_id, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("counting the run's rejected rows", e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Marks the run's end.
    pub async fn finish(
        &self,
        client: &Client,
        run_id: i64,
        status: Status,
        rows_read: u64,
        error: Option<&str>,
    ) -> Result<(), Error> {
        client
            .execute_typed(
                &format!(
                    "UPDATE {}.runs SET status = $2, error = $3, rows_read = greatest(rows_read, $4), \
                       updated_at = now(), finished_at = CASE WHEN $2 = 'completed' THEN now() END \
                     WHERE id = $1",
                    self.quoted_schema()
                ),
                &[
                    (&run_id, Type::INT8),
                    (&status.as_str(), Type::TEXT),
                    (&error, Type::TEXT),
                    (&(rows_read as i64), Type::INT8),
                ],
            )
            .await
            .map_err(|e| Error::database("recording the end of the run", e))?;
        Ok(())
    }

    /// Runs, newest first.
    pub async fn runs(
        &self,
        client: &Client,
        id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Run>, Error> {
        let rows = client
            .query_typed(
                &format!(
                    // Counts come from the batches, so an unfinished run shows what committed.
                    "SELECT r.id, r.command, r.target_table, r.input_path, r.input_size, r.status, \
                       r.rows_read, b.inserted, b.updated, b.skipped, b.n, r.attempts, r.error, r.host, \
                       to_char(r.started_at, 'YYYY-MM-DD HH24:MI:SSOF'), \
                       extract(epoch FROM coalesce(r.finished_at, greatest(r.updated_at, b.last_commit)) \
                                          - r.started_at)::float8, \
                       r.command_line, b.rejected, b.deleted, b.missing \
                     FROM {s}.runs r CROSS JOIN LATERAL \
                       (SELECT coalesce(sum(inserted), 0)::bigint AS inserted, \
                               coalesce(sum(updated), 0)::bigint AS updated, \
                               coalesce(sum(skipped), 0)::bigint AS skipped, count(*) AS n, \
                               coalesce(sum(rejected), 0)::bigint AS rejected, \
                               coalesce(sum(deleted), 0)::bigint AS deleted, \
                               coalesce(sum(missing), 0)::bigint AS missing, \
                               max(committed_at) AS last_commit \
                        FROM {s}.batches WHERE run_id = r.id) b \
                     WHERE $1::bigint IS NULL OR r.id = $1 ORDER BY r.id DESC LIMIT $2",
                    s = self.quoted_schema()
                ),
                &[(&id, Type::INT8), (&limit, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("listing runs", e))?;
        Ok(rows
            .iter()
            .map(|r| Run {
                id: r.get(0),
                command: r.get(1),
                target_table: r.get(2),
                input_path: r.get(3),
                input_size: r.get(4),
                status: r.get(5),
                rows_read: r.get(6),
                rows_inserted: r.get(7),
                rows_updated: r.get(8),
                rows_skipped: r.get(9),
                rows_rejected: r.get(17),
                rows_deleted: r.get(18),
                rows_missing: r.get(19),
                batches: r.get(10),
                attempts: r.get(11),
                error: r.get(12),
                host: r.get(13),
                started_at: r.get(14),
                duration_s: r.get(15),
                command_line: r.get(16),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_command_replaces_any_earlier_resume_and_quotes() {
        let line: Vec<String> = [
            "provisioner",
            "seed",
            "my file.csv",
            "--resume",
            "7",
            "--table",
            "a's",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            resume_command(&line, 9),
            "provisioner seed 'my file.csv' --table 'a'\\''s' --resume 9"
        );
        let bare: Vec<String> = ["provisioner", "seed", "f.csv", "--resume"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            resume_command(&bare, 3),
            "provisioner seed f.csv --resume 3"
        );
    }
}
