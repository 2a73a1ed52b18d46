//! The `runs` command's view of the ledger: each run with the figures its committed batches
//! add up to.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::{Ledger, Stored, resume_command};
use crate::error::Error;
use crate::model::{Command, Status};

/// A run as the ledger records it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub id: i64,
    pub command: Command,
    pub target_table: String,
    pub input_path: String,
    pub input_size: Option<i64>,
    pub status: Status,
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
    /// An input of a run of many inputs: its name under the run's base directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_name: Option<String>,
    /// An input of a run of many inputs: the process of its latest attempt (with `host`),
    /// which completed it once it is completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// A run of many inputs: its inputs, in order (filled by `runs show`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Run>,
    /// The lease of the attempt running it, unless released (shown by `runs show`, not in
    /// its JSON, which scripts read as it is).
    #[serde(skip)]
    pub lease: Option<LeaseShown>,
}

/// The attempt holding a run's lease, as `runs show` tells it.
#[derive(Debug, Clone)]
pub struct LeaseShown {
    pub host: Option<String>,
    pub pid: Option<i32>,
    /// Seconds since it was last renewed, and until it expires (negative: since it did).
    pub seen_ago: f64,
    pub expires_in: f64,
}

impl Run {
    pub fn finished(&self) -> bool {
        self.status == Status::Completed
    }

    /// The rows the run wrote: deleted by a purge; inserted, updated or skipped by a seed.
    pub fn rows(&self) -> i64 {
        if self.command == Command::Purge {
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

impl Ledger {
    /// Runs, newest first: `id`, or the latest `limit` (not the inputs of runs of many
    /// inputs, which [`Ledger::inputs`] lists).
    pub async fn runs(
        &self,
        client: &Client,
        id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Run>, Error> {
        self.listed(
            client,
            "$1::bigint IS NULL AND r.parent_id IS NULL OR r.id = $1 ORDER BY r.id DESC LIMIT $2",
            id,
            limit,
        )
        .await
    }

    /// The inputs of the run of many inputs `parent`, in order.
    pub async fn inputs(&self, client: &Client, parent: i64) -> Result<Vec<Run>, Error> {
        let all = i64::MAX;
        self.listed(
            client,
            "r.parent_id = $1 ORDER BY r.id LIMIT $2",
            Some(parent),
            all,
        )
        .await
    }

    /// The runs `filter` selects (with `$1` and `$2` bound to `id` and `limit`).
    async fn listed(
        &self,
        client: &Client,
        filter: &str,
        id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Run>, Error> {
        let rows = client
            .query_typed(
                &format!(
                    // Counts come from the batches (a run of many inputs: its inputs'), so an
                    // unfinished run shows what committed.
                    "SELECT r.id, r.command, r.target_table, r.input_path, r.input_size, r.status, \
                       coalesce((SELECT sum(c.rows_read)::bigint FROM {s}.runs c \
                                 WHERE c.parent_id = r.id), r.rows_read), \
                       b.inserted, b.updated, b.skipped, b.n, r.attempts, r.error, r.host, \
                       to_char(r.started_at, 'YYYY-MM-DD HH24:MI:SSOF'), \
                       extract(epoch FROM coalesce(r.finished_at, greatest(r.updated_at, b.last_commit)) \
                                          - r.started_at)::float8, \
                       r.command_line, b.rejected, b.deleted, b.missing, \
                       r.lease_host, r.lease_pid, \
                       extract(epoch FROM now() - r.lease_renewed_at)::float8, \
                       extract(epoch FROM r.lease_expires_at - now())::float8, \
                       r.input_name, CASE WHEN r.parent_id IS NOT NULL THEN r.pid END \
                     FROM {s}.runs r CROSS JOIN LATERAL \
                       (SELECT coalesce(sum(inserted), 0)::bigint AS inserted, \
                               coalesce(sum(updated), 0)::bigint AS updated, \
                               coalesce(sum(skipped), 0)::bigint AS skipped, count(*) AS n, \
                               coalesce(sum(rejected), 0)::bigint AS rejected, \
                               coalesce(sum(deleted), 0)::bigint AS deleted, \
                               coalesce(sum(missing), 0)::bigint AS missing, \
                               max(committed_at) AS last_commit \
                        FROM {s}.batches WHERE run_id = ANY(array( \
                          SELECT r.id UNION ALL \
                          SELECT c.id FROM {s}.runs c WHERE c.parent_id = r.id))) b \
                     WHERE {filter}",
                    s = self.quoted_schema()
                ),
                &[(&id, Type::INT8), (&limit, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("listing runs", e))?;
        let read = |r: &tokio_postgres::Row| -> Result<Run, tokio_postgres::Error> {
            Ok(Run {
                id: r.get(0),
                command: r.try_get::<_, Stored<Command>>(1)?.0,
                target_table: r.get(2),
                input_path: r.get(3),
                input_size: r.get(4),
                status: r.try_get::<_, Stored<Status>>(5)?.0,
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
                lease: r.get::<_, Option<f64>>(23).map(|expires_in| LeaseShown {
                    host: r.get(20),
                    pid: r.get(21),
                    seen_ago: r.get::<_, Option<f64>>(22).unwrap_or_default(),
                    expires_in,
                }),
                input_name: r.get(24),
                pid: r.get(25),
                inputs: Vec::new(),
            })
        };
        rows.iter()
            .map(read)
            .collect::<Result<_, _>>()
            .map_err(|e| Error::database("reading the listed runs", e))
    }
}
