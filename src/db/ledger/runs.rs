//! A run's identity and lifecycle: recorded as running, resumed (after checking that the
//! input, table and options are the ones it started with), finished. Whether a run may be
//! resumed is decided by [`check_resumable`], a pure function of what the ledger holds.

use std::collections::HashMap;

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::Ledger;
use super::batches::rejection;
use crate::error::{Error, Rejection};
use crate::model::{Command, Status};

/// `--resume` and `--resume RUN_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The latest unfinished run of the same input, table and options.
    Latest,
    Run(i64),
}

impl Resume {
    /// The run asked for by id, if any.
    pub fn id(self) -> Option<i64> {
        match self {
            Resume::Latest => None,
            Resume::Run(id) => Some(id),
        }
    }
}

/// Which input a run reads, as the ledger records it: a resume must read the same.
#[derive(Debug, Clone, PartialEq)]
pub struct InputId {
    /// The canonical path, `-` for stdin, or what a purge without a file deletes by
    /// (`run:7`, `where:…`).
    pub path: String,
    /// Bytes on disk, when known.
    pub size: Option<u64>,
    /// A hash of the input's start (empty without a file): a resume refuses an input whose
    /// fingerprint changed.
    pub fingerprint: String,
}

impl InputId {
    /// What a purge without a file records as its input.
    pub fn named(name: String) -> Self {
        InputId {
            path: name,
            size: None,
            fingerprint: String::new(),
        }
    }

    fn size(&self) -> Option<i64> {
        self.size.map(|s| s as i64)
    }
}

/// What identifies a run for `--resume`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunKey {
    pub command: Command,
    pub target_table: String,
    pub input: InputId,
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

/// A run the ledger holds that `--resume` may mean, as [`check_resumable`] weighs it.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    id: i64,
    completed: bool,
    target_table: String,
    input: InputId,
    options: serde_json::Value,
}

/// Whether `found` (the run `wanted` names, else the latest unfinished one like `key`) may be
/// resumed for `key`: its id and recorded options, or why not (exit 2).
fn check_resumable(
    key: &RunKey,
    wanted: Option<i64>,
    found: Option<Candidate>,
) -> Result<(i64, serde_json::Value), Error> {
    let Some(run) = found else {
        return Err(Error::ResumeRefused(match wanted {
            Some(id) => format!(
                "--resume {id}: no {} run with that id in the ledger",
                key.command
            ),
            None => format!(
                "--resume: no unfinished {} run of {} into {} with these options; run without --resume to start one",
                key.command, key.input.path, key.target_table
            ),
        }));
    };
    let run_id = run.id;
    let mismatch = |what: &str, then: String, now: String| {
        Err(Error::ResumeRefused(format!(
            "--resume {run_id}: the {what} differs from the run's ({then} then, {now} now); \
             refusing to resume. Start a new run without --resume, or resume with the original {what}."
        )))
    };
    if run.completed {
        return Err(Error::ResumeRefused(format!(
            "--resume {run_id}: the run is already completed; nothing to resume"
        )));
    }
    if run.target_table != key.target_table {
        return mismatch("table", run.target_table, key.target_table.clone());
    }
    if run.input.path != key.input.path {
        return mismatch("input", run.input.path, key.input.path.clone());
    }
    if identity(&run.options) != identity(&key.options) {
        return mismatch(
            "batching options",
            identity(&run.options).to_string(),
            identity(&key.options).to_string(),
        );
    }
    if run.input != key.input {
        return Err(Error::ResumeRefused(format!(
            "--resume {run_id}: {} changed since the run started (size {} then, {} now; \
             content fingerprint {}); refusing to resume",
            key.input.path,
            run.input.size.map_or("unknown".into(), |s| s.to_string()),
            key.input.size.map_or("unknown".into(), |s| s.to_string()),
            if run.input.fingerprint == key.input.fingerprint {
                "unchanged"
            } else {
                "changed"
            },
        )));
    }
    Ok((run_id, run.options))
}

impl Ledger {
    /// Starts a new run, or resumes one (`resume`), and returns its id with the batches it
    /// already committed (sequence number → content hash).
    pub async fn open_run(
        &self,
        client: &Client,
        key: &RunKey,
        command_line: &[String],
        resume: Option<Resume>,
    ) -> Result<(i64, HashMap<u64, u64>), Error> {
        let opened = match resume {
            None => (self.start(client, key, command_line).await?, HashMap::new()),
            Some(resume) => {
                let id = self.find_resumable(client, key, resume.id()).await?;
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
                    (&key.command.as_str(), Type::TEXT),
                    (&key.target_table, Type::TEXT),
                    (&key.input.path, Type::TEXT),
                    (&key.input.size(), Type::INT8),
                    (&key.input.fingerprint, Type::TEXT),
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
    async fn find_resumable(
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
    /// unfinished run of the same command, table, input path and options; refused as
    /// [`check_resumable`] says. Changes nothing.
    pub async fn resumable(
        &self,
        client: &Client,
        key: &RunKey,
        id: Option<i64>,
    ) -> Result<(i64, serde_json::Value), Error> {
        let found = client
            .query_typed_opt(
                &format!(
                    "SELECT id, status, target_table, input_path, input_size, input_fingerprint, options \
                     FROM {}.runs WHERE command = $1 AND ($2::bigint IS NULL AND target_table = $3 \
                       AND input_path = $4 AND options - '{LAYOUT}' = $5 AND status <> 'completed' \
                       OR id = $2) \
                     ORDER BY id DESC LIMIT 1",
                    self.quoted_schema()
                ),
                &[
                    (&key.command.as_str(), Type::TEXT),
                    (&id, Type::INT8),
                    (&key.target_table, Type::TEXT),
                    (&key.input.path, Type::TEXT),
                    (&identity(&key.options), Type::JSONB),
                ],
            )
            .await
            .map_err(|e| Error::database("looking up the run to resume", e))?
            .map(|row| Candidate {
                id: row.get(0),
                completed: row.get::<_, &str>(1) == Status::Completed.as_str(),
                target_table: row.get(2),
                input: InputId {
                    path: row.get(3),
                    size: row.get::<_, Option<i64>>(4).map(|s| s as u64),
                    fingerprint: row.get(5),
                },
                options: row.get(6),
            });
        check_resumable(key, id, found)
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
    /// summary and budget; and how many of them `rejected_rows` holds (fewer only where
    /// batches committed before ledger v4 kept them).
    pub async fn rejected(&self, client: &Client, run_id: i64) -> Result<(u64, u64), Error> {
        let s = self.quoted_schema();
        let row = client
            .query_typed_one(
                &format!(
                    "SELECT (SELECT coalesce(sum(rejected), 0)::bigint FROM {s}.batches \
                             WHERE run_id = $1), \
                            (SELECT count(*) FROM {s}.rejected_rows WHERE run_id = $1)"
                ),
                &[(&run_id, Type::INT8)],
            )
            .await
            .map_err(|e| Error::database("counting the run's rejected rows", e))?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    /// Up to `limit` of the rows the run rejected, those after line `after`, in line order.
    pub async fn rejected_rows(
        &self,
        client: &Client,
        run_id: i64,
        after: u64,
        limit: i64,
    ) -> Result<Vec<Rejection>, Error> {
        Ok(client
            .query_typed(
                &format!(
                    "SELECT line, column_name, sqlstate, reason, raw FROM {}.rejected_rows \
                     WHERE run_id = $1 AND line > $2 ORDER BY line LIMIT $3",
                    self.quoted_schema()
                ),
                &[
                    (&run_id, Type::INT8),
                    (&(after as i64), Type::INT8),
                    (&limit, Type::INT8),
                ],
            )
            .await
            .map_err(|e| Error::database("reading the run's rejected rows", e))?
            .iter()
            .map(rejection)
            .collect())
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

    fn key() -> RunKey {
        RunKey {
            command: Command::Seed,
            target_table: "public.accounts".into(),
            input: InputId {
                path: "/data/a.csv".into(),
                size: Some(100),
                fingerprint: "f".into(),
            },
            options: serde_json::json!({"batch_size": 10}),
        }
    }

    fn candidate() -> Candidate {
        let key = key();
        Candidate {
            id: 7,
            completed: false,
            target_table: key.target_table,
            input: key.input,
            options: serde_json::json!({"batch_size": 10, "layout": {"pages": 3}}),
        }
    }

    #[track_caller]
    fn refused(found: Option<Candidate>, wanted: Option<i64>, says: &str) {
        match check_resumable(&key(), wanted, found) {
            Err(e @ Error::ResumeRefused(_)) => {
                assert!(e.to_string().contains(says), "{e}");
                assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
            }
            other => panic!("expected a refusal saying {says:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_matching_unfinished_run_resumes_with_its_recorded_layout() {
        let (id, options) = check_resumable(&key(), None, Some(candidate())).unwrap();
        assert_eq!(id, 7);
        assert_eq!(options["layout"]["pages"], 3, "the recorded layout is kept");
    }

    #[test]
    fn every_difference_refuses_the_resume_and_names_it() {
        refused(None, Some(9), "--resume 9: no seed run with that id");
        refused(
            None,
            None,
            "no unfinished seed run of /data/a.csv into public.accounts",
        );
        let completed = Candidate {
            completed: true,
            ..candidate()
        };
        refused(Some(completed), Some(7), "already completed");
        let table = Candidate {
            target_table: "public.other".into(),
            ..candidate()
        };
        refused(Some(table), Some(7), "the table differs");
        let input = Candidate {
            input: InputId {
                path: "/data/b.csv".into(),
                ..candidate().input
            },
            ..candidate()
        };
        refused(Some(input), Some(7), "the input differs");
        let options = Candidate {
            options: serde_json::json!({"batch_size": 20}),
            ..candidate()
        };
        refused(Some(options), Some(7), "the batching options differs");
        let size = Candidate {
            input: InputId {
                size: Some(99),
                ..candidate().input
            },
            ..candidate()
        };
        refused(
            Some(size),
            None,
            "size 99 then, 100 now; content fingerprint unchanged",
        );
        let content = Candidate {
            input: InputId {
                fingerprint: "g".into(),
                ..candidate().input
            },
            ..candidate()
        };
        refused(Some(content), None, "content fingerprint changed");
    }
}
