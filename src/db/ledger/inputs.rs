//! Runs of many inputs: a parent run with one child run per input (see
//! sql/ledger/007_inputs.sql). Processes on any host share such a run through these rows
//! alone: each claims an input it may take (`FOR UPDATE SKIP LOCKED`: two claimers never
//! wait on, or get, the same row), holds it by a lease it renews, and completes it once the
//! ledger holds every batch of it. A lease that expired (its process died or stalled) may be
//! taken by another claim, which goes on after the input's committed batches, as a resume
//! does. Whoever ends the last decides the parent's status, under the parent's row lock, so
//! that two processes ending at once cannot both leave it running.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::runs::{me, seconds};
use super::{Attempt, InputId, Ledger, RunKey, Stored};
use crate::error::Error;
use crate::model::Status;

/// An input of a run of many inputs: its name under the run's base directory and its
/// identity (canonical path, size, fingerprint).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedInput {
    pub name: String,
    pub id: InputId,
}

/// A run of many inputs, as a joining or resuming process finds it.
#[derive(Debug, Clone)]
pub struct Parent {
    pub id: i64,
    pub command: String,
    pub target_table: String,
    /// The inputs' common base directory when the run started.
    pub base: String,
    pub options: serde_json::Value,
    pub status: Status,
    pub error: Option<String>,
    /// The command line that started it (no password), which resumes it with `--resume`.
    pub command_line: Vec<String>,
}

/// What a claim got.
#[derive(Debug)]
pub enum Claim {
    /// An input, now held by this process as `attempt`.
    Claimed { attempt: Attempt, input: NamedInput },
    /// Nothing free now: inputs others hold are not completed. Ask again in this long (when
    /// the soonest lease expires, or a moment when a claimer had a row locked).
    Wait(Duration),
    /// Every input is completed.
    Done,
    /// The run failed in another process, with this error.
    Failed(String),
}

/// The longest a process with nothing to claim waits before it looks again: a lease that
/// expires, or the run's last input completed by another process (which wakes no one: a
/// look finding nothing changes nothing, so costs the server one cheap read).
const MAX_WAIT: Duration = Duration::from_millis(250);

impl Ledger {
    /// Records a new run of many inputs, running, with every input pending, in one
    /// transaction; returns the parent's id.
    pub async fn start_inputs(
        &self,
        client: &mut Client,
        key: &RunKey,
        command_line: &[String],
        inputs: &[NamedInput],
    ) -> Result<i64, Error> {
        let s = self.quoted_schema();
        let fail = |e| Error::database("recording the run in the ledger", e);
        let (host, pid) = me();
        let tx = client.transaction().await.map_err(fail)?;
        let parent: i64 = tx
            .query_typed_one(
                &format!(
                    "INSERT INTO {s}.runs (command, target_table, input_path, input_size, \
                       input_fingerprint, options, command_line, status, host, pid, claimed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, now()) RETURNING id"
                ),
                &[
                    (&key.command.as_str(), Type::TEXT),
                    (&key.target_table, Type::TEXT),
                    (&key.input.path, Type::TEXT),
                    (&key.input.size.map(|s| s as i64), Type::INT8),
                    (&key.input.fingerprint, Type::TEXT),
                    (&key.options, Type::JSONB),
                    (&command_line, Type::TEXT_ARRAY),
                    (&host, Type::TEXT),
                    (&pid, Type::INT4),
                ],
            )
            .await
            .map_err(fail)?
            .get(0);
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        let paths: Vec<&str> = inputs.iter().map(|i| i.id.path.as_str()).collect();
        let sizes: Vec<Option<i64>> = inputs.iter().map(|i| i.id.size.map(|s| s as i64)).collect();
        let prints: Vec<&str> = inputs.iter().map(|i| i.id.fingerprint.as_str()).collect();
        tx.execute_typed(
            &format!(
                "INSERT INTO {s}.runs (parent_id, command, target_table, input_path, input_name, \
                   input_size, input_fingerprint, options, command_line, status, attempts) \
                 SELECT p.id, p.command, p.target_table, i.path, i.name, i.size, i.print, \
                        p.options, p.command_line, 'pending', 0 \
                 FROM {s}.runs p, unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) \
                        WITH ORDINALITY AS i(name, path, size, print, n) \
                 WHERE p.id = $1 ORDER BY i.n"
            ),
            &[
                (&parent, Type::INT8),
                (&names, Type::TEXT_ARRAY),
                (&paths, Type::TEXT_ARRAY),
                (&sizes, Type::INT8_ARRAY),
                (&prints, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(
            run_id = parent,
            inputs = inputs.len(),
            "run {parent} of {} inputs recorded in the ledger",
            inputs.len()
        );
        Ok(parent)
    }

    /// The run of many inputs `id`, if there is one.
    pub async fn parent(&self, client: &Client, id: i64) -> Result<Option<Parent>, Error> {
        let row = client
            .query_typed_opt(
                &format!(
                    "SELECT id, command, target_table, input_path, options, status, error, \
                       command_line \
                     FROM {s}.runs p WHERE id = $1 AND parent_id IS NULL \
                       AND EXISTS (SELECT FROM {s}.runs c WHERE c.parent_id = p.id)",
                    s = self.quoted_schema()
                ),
                &[(&id, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("looking up the run", e))?;
        row.map(|r| {
            Ok(Parent {
                id: r.get(0),
                command: r.get(1),
                target_table: r.get(2),
                base: r.get(3),
                options: r.get(4),
                status: r.try_get::<_, Stored<Status>>(5)?.0,
                error: r.get(6),
                command_line: r.get(7),
            })
        })
        .transpose()
        .map_err(|e| Error::database("reading the run", e))
    }

    /// The inputs of run `parent`, in order, as recorded.
    pub async fn inputs_of(
        &self,
        client: &Client,
        parent: i64,
    ) -> Result<Vec<(NamedInput, Status)>, Error> {
        client
            .query_typed(
                &format!(
                    "SELECT input_name, input_path, input_size, input_fingerprint, status \
                     FROM {}.runs WHERE parent_id = $1 ORDER BY id",
                    self.quoted_schema()
                ),
                &[(&parent, Type::INT8)],
            )
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|r| Ok((named_input(r, 0), r.try_get::<_, Stored<Status>>(4)?.0)))
                    .collect()
            })
            .map_err(|e| Error::database("reading the run's inputs", e))
    }

    /// Records the input `run_id` as it is now (a resume found it changed where nothing of it
    /// committed).
    pub async fn record_input(
        &self,
        client: &Client,
        run_id: i64,
        now: &InputId,
    ) -> Result<(), Error> {
        client
            .execute_typed(
                &format!(
                    "UPDATE {}.runs SET input_size = $2, input_fingerprint = $3, updated_at = now() \
                     WHERE id = $1",
                    self.quoted_schema()
                ),
                &[
                    (&run_id, Type::INT8),
                    (&now.size.map(|s| s as i64), Type::INT8),
                    (&now.fingerprint, Type::TEXT),
                ],
            )
            .await
            .map_err(|e| Error::database("recording the input as it is now", e))?;
        Ok(())
    }

    /// Marks the run of many inputs running again for a process joining it (`resume`
    /// false) or resuming it: a join is refused unless the run is running or was
    /// interrupted; a resume unless it is unfinished, and it puts the inputs that failed back
    /// for claiming.
    pub async fn rejoin(
        &self,
        client: &Client,
        parent: &Parent,
        resume: bool,
    ) -> Result<(), Error> {
        let id = parent.id;
        let how = if resume { "--resume" } else { "--join" };
        match parent.status {
            Status::Completed => {
                return Err(Error::ResumeRefused(format!(
                    "{how} {id}: the run is already completed; nothing to do"
                )));
            }
            Status::Failed if !resume => {
                return Err(Error::ResumeRefused(format!(
                    "--join {id}: the run failed ({}); resume it with --resume {id} once its \
                     cause is fixed",
                    parent.error.as_deref().unwrap_or("no error recorded")
                )));
            }
            _ => {}
        }
        let s = self.quoted_schema();
        client
            .execute_typed(
                &format!(
                    "WITH parent AS (UPDATE {s}.runs SET status = 'running', error = NULL, \
                       finished_at = NULL, updated_at = now(), \
                       attempts = attempts + CASE WHEN $2 THEN 1 ELSE 0 END \
                     WHERE id = $1) \
                     UPDATE {s}.runs SET status = 'interrupted', updated_at = now() \
                     WHERE $2 AND parent_id = $1 AND status = 'failed'"
                ),
                &[(&id, Type::INT8), (&resume, Type::BOOL)],
            )
            .await
            .map_err(|e| Error::database("marking the run as running", e))?;
        Ok(())
    }

    /// Claims an input of run `parent` that is not completed and that no live lease holds,
    /// the first such in order that no other claimer has locked, for `lease`.
    pub async fn claim_input(
        &self,
        client: &Client,
        parent: i64,
        lease: Duration,
    ) -> Result<Claim, Error> {
        let s = self.quoted_schema();
        let (host, pid) = me();
        let fail = |e| Error::database("claiming an input of the run", e);
        let claimed = client
            .query_typed_opt(
                &format!(
                    "WITH free AS ( \
                       SELECT id, lease_expires_at FROM {s}.runs \
                       WHERE parent_id = $1 AND status IN ('pending', 'running', 'interrupted') \
                         AND (lease_expires_at IS NULL OR lease_expires_at <= now()) \
                         AND (SELECT status FROM {s}.runs WHERE id = $1) \
                               IN ('running', 'interrupted') \
                       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     UPDATE {s}.runs r SET status = 'running', attempts = r.attempts + 1, \
                       error = NULL, finished_at = NULL, updated_at = now(), host = $2, pid = $3, \
                       lease_host = $2, lease_pid = $3, lease_renewed_at = now(), \
                       lease_expires_at = now() + make_interval(secs => $4), claimed_at = now(), \
                       took_over_expired_at = free.lease_expires_at \
                     FROM free WHERE r.id = free.id \
                     RETURNING r.id, r.attempts, r.input_name, r.input_path, r.input_size, \
                       r.input_fingerprint, free.lease_expires_at IS NOT NULL"
                ),
                &[
                    (&parent, Type::INT8),
                    (&host, Type::TEXT),
                    (&pid, Type::INT4),
                    (&seconds(lease), Type::FLOAT8),
                ],
            )
            .await
            .map_err(fail)?;
        if let Some(r) = claimed {
            // A run another process left interrupted goes on.
            client
                .execute_typed(
                    &format!(
                        "UPDATE {s}.runs SET status = 'running', updated_at = now() \
                         WHERE id = $1 AND status = 'interrupted'"
                    ),
                    &[(&parent, Type::INT8)],
                )
                .await
                .map_err(fail)?;
            let attempt = Attempt {
                run_id: r.get(0),
                number: r.get(1),
            };
            let input = named_input(&r, 2);
            if r.get::<_, bool>(6) {
                tracing::warn!(
                    input = %input.name,
                    "taking over an input whose holder's lease expired; going on after its \
                     committed batches"
                );
            }
            return Ok(Claim::Claimed { attempt, input });
        }
        let state = client
            .query_typed_one(
                &format!(
                    "SELECT CASE WHEN p.status = 'failed' THEN coalesce(p.error, '') END, \
                       count(c.id) FILTER (WHERE c.status <> 'completed'), \
                       extract(epoch FROM min(c.lease_expires_at - now()) \
                         FILTER (WHERE c.status <> 'completed'))::float8 \
                     FROM {s}.runs p LEFT JOIN {s}.runs c ON c.parent_id = p.id \
                     WHERE p.id = $1 GROUP BY p.status, p.error"
                ),
                &[(&parent, Type::INT8)],
            )
            .await
            .map_err(fail)?;
        if state.get::<_, i64>(1) == 0 {
            return Ok(Claim::Done);
        }
        if let Some(error) = state.get::<_, Option<String>>(0) {
            return Ok(Claim::Failed(error));
        }
        let soonest = state.get::<_, Option<f64>>(2).unwrap_or(0.0);
        // A row another claimer had locked is free again in a moment; an expired lease is
        // taken at the next look.
        let wait = Duration::from_secs_f64(soonest.clamp(0.05, MAX_WAIT.as_secs_f64()));
        Ok(Claim::Wait(wait))
    }

    /// Renews the leases `held` for `lease` more; returns the attempts among them that no
    /// longer hold theirs (another process took the input over after the lease expired),
    /// and, for a run of many inputs (`parent`), its error when it failed (in another
    /// process: every process stops).
    pub async fn renew(
        &self,
        client: &Client,
        held: &[Attempt],
        parent: Option<i64>,
        lease: Duration,
    ) -> Result<(Vec<Attempt>, Option<String>), Error> {
        let s = self.quoted_schema();
        let ids: Vec<i64> = held.iter().map(|a| a.run_id).collect();
        let numbers: Vec<i32> = held.iter().map(|a| a.number).collect();
        let row = client
            .query_typed_one(
                &format!(
                    "WITH renewed AS ( \
                       UPDATE {s}.runs r SET lease_renewed_at = now(), \
                         lease_expires_at = now() + make_interval(secs => $3) \
                       FROM unnest($1::bigint[], $2::int[]) AS h(id, n) \
                       WHERE r.id = h.id AND r.attempts = h.n AND r.lease_expires_at IS NOT NULL \
                       RETURNING r.id) \
                     SELECT array(SELECT id FROM renewed), \
                       (SELECT coalesce(error, '') FROM {s}.runs \
                        WHERE id = $4 AND status = 'failed')"
                ),
                &[
                    (&ids, Type::INT8_ARRAY),
                    (&numbers, Type::INT4_ARRAY),
                    (&seconds(lease), Type::FLOAT8),
                    (&parent, Type::INT8),
                ],
            )
            .await
            .map_err(|e| Error::database("renewing the run's lease", e))?;
        let renewed: Vec<i64> = row.get(0);
        let lost = held
            .iter()
            .filter(|a| !renewed.contains(&a.run_id))
            .copied()
            .collect();
        Ok((lost, row.get(1)))
    }

    /// Completes the input `attempt` holds, releasing its lease, if the ledger holds all its
    /// `batches` (1 to `batches`); `false` when it does not, or the attempt lost the input.
    pub async fn complete_input(
        &self,
        client: &Client,
        attempt: Attempt,
        batches: u64,
        rows_read: u64,
    ) -> Result<bool, Error> {
        let s = self.quoted_schema();
        let done = client
            .execute_typed(
                &format!(
                    "UPDATE {s}.runs SET status = 'completed', error = NULL, \
                       rows_read = greatest(rows_read, $4), updated_at = now(), \
                       finished_at = now(), lease_host = NULL, lease_pid = NULL, \
                       lease_renewed_at = NULL, lease_expires_at = NULL \
                     WHERE id = $1 AND attempts = $2 \
                       AND (SELECT count(*) FROM {s}.batches WHERE run_id = $1) = $3"
                ),
                &[
                    (&attempt.run_id, Type::INT8),
                    (&attempt.number, Type::INT4),
                    (&(batches as i64), Type::INT8),
                    (&(rows_read as i64), Type::INT8),
                ],
            )
            .await
            .map_err(|e| Error::database("recording an input as completed", e))?;
        Ok(done == 1)
    }

    /// Records how this process's part of run `parent` ended and returns the run's status:
    /// completed once every input is; failed at once when this process failed (`failure`:
    /// the others stop when they see it); otherwise running while another process holds a
    /// live lease, else interrupted (or failed, when an input failed). Under the parent's
    /// row lock, so the last of processes ending together sees the others' ends.
    pub async fn end_inputs(
        &self,
        client: &mut Client,
        parent: i64,
        failure: Option<&str>,
        interrupted: bool,
    ) -> Result<Status, Error> {
        let s = self.quoted_schema();
        let fail = |e| Error::database("recording the end of the run", e);
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute_typed(
            &format!("SELECT FROM {s}.runs WHERE id = $1 FOR UPDATE"),
            &[(&parent, Type::INT8)],
        )
        .await
        .map_err(fail)?;
        let row = tx
            .query_typed_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE status <> 'completed'), \
                       count(*) FILTER (WHERE status <> 'completed' AND lease_expires_at > now()), \
                       count(*) FILTER (WHERE status = 'failed'), \
                       coalesce(sum(rows_read), 0)::bigint \
                     FROM {s}.runs WHERE parent_id = $1"
                ),
                &[(&parent, Type::INT8)],
            )
            .await
            .map_err(fail)?;
        let (open, live, failed) = (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
        );
        let status = if open == 0 {
            Status::Completed
        } else if failure.is_some() && !interrupted {
            Status::Failed
        } else if live > 0 {
            Status::Running
        } else if failed > 0 {
            Status::Failed
        } else {
            Status::Interrupted
        };
        tx.execute_typed(
            &format!(
                "UPDATE {s}.runs SET status = $2, rows_read = $3, updated_at = now(), \
                   error = CASE WHEN $2 IN ('failed', 'interrupted') THEN coalesce($4, error) END, \
                   finished_at = CASE WHEN $2 = 'completed' THEN now() END \
                 WHERE id = $1 AND status <> 'completed' \
                   AND NOT (status = 'failed' AND $2 = 'running')"
            ),
            &[
                (&parent, Type::INT8),
                (&status.as_str(), Type::TEXT),
                (&row.get::<_, i64>(3), Type::INT8),
                (&failure, Type::TEXT),
            ],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(status)
    }
}

/// The input whose name, path, size and fingerprint are `r`'s columns `at` to `at + 3`.
fn named_input(r: &tokio_postgres::Row, at: usize) -> NamedInput {
    NamedInput {
        name: r.get(at),
        id: InputId {
            path: r.get(at + 1),
            size: r.get::<_, Option<i64>>(at + 2).map(|s| s as u64),
            fingerprint: r.get(at + 3),
        },
    }
}
