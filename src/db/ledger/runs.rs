//! A run's identity and lifecycle: recorded as running, resumed (after checking that the
//! input, table, options and CSV dialect are the ones it started with), finished. Whether a
//! run may be resumed is decided by [`check_resumable`] and [`check_lease`], pure functions
//! of what the ledger holds.
//!
//! One attempt at a time: the attempt running a run holds its lease (host, pid, expiry),
//! taken in one conditional `UPDATE` when it starts or resumes, renewed while it runs and
//! released when it ends. A resume finding a live lease is refused, unless its holder ran on
//! this host and its process is gone (`kill -9`); another host's lease is taken over once it
//! expired. All of it is plain statements, no session state, so it works behind a
//! transaction-mode pooler.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

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
    /// recorded one, so it is not part of what identifies the run. Its [`DIALECT`] member,
    /// for a run that reads a CSV file, is how it reads it: a resume must read it the same
    /// way, and is told which flag differs.
    pub options: serde_json::Value,
}

/// The member of [`RunKey::options`] a run records at first start and a resume reuses.
pub const LAYOUT: &str = "layout";

/// The member of [`RunKey::options`] holding a CSV run's dialect: `delimiter`, `quote`,
/// `escape` and `null` as COPY's options of the same names, and `columns`, the names given
/// with `--no-header` (null: the file has a header line).
pub const DIALECT: &str = "dialect";

/// The dialect of a CSV run recorded before runs recorded theirs (ledger v4 and older):
/// taken to be COPY's defaults with a header line, which is what such a run read unless it
/// was given dialect flags, which the ledger cannot tell.
pub fn unrecorded_dialect() -> serde_json::Value {
    serde_json::json!({"delimiter": ",", "quote": "\"", "escape": "\"", "null": "", "columns": null})
}

/// `options` without its [`LAYOUT`] and [`DIALECT`]: the batching options a resume must match
/// (the dialect is compared on its own, to name the flag that differs).
fn identity(options: &serde_json::Value) -> serde_json::Value {
    let mut options = options.clone();
    if let Some(map) = options.as_object_mut() {
        map.remove(LAYOUT);
        map.remove(DIALECT);
    }
    options
}

/// The flags of the dialect's members that differ between `then` (the run's) and `now`, each
/// with both values, e.g. `--delimiter ";" then, "," now`.
fn dialect_differences(then: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let (Some(then), Some(now)) = (then.as_object(), now.as_object()) else {
        return Vec::new();
    };
    let null = serde_json::Value::Null;
    let mut members: Vec<&String> = then.keys().chain(now.keys()).collect();
    members.sort();
    members.dedup();
    members
        .into_iter()
        .filter(|m| then.get(*m).unwrap_or(&null) != now.get(*m).unwrap_or(&null))
        .map(|m| {
            let (a, b) = (then.get(m).unwrap_or(&null), now.get(m).unwrap_or(&null));
            if m == "columns" {
                let shown = |v: &serde_json::Value| match v.as_array() {
                    Some(names) => format!(
                        "--no-header --columns {}",
                        names
                            .iter()
                            .map(|n| n.as_str().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    None => "a header line".to_string(),
                };
                format!("--no-header/--columns: {} then, {} now", shown(a), shown(b))
            } else {
                format!("--{m} {a} then, {b} now")
            }
        })
        .collect()
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

/// One attempt of a run: what its batches and its end are recorded under, and what holds
/// the run's lease while it runs. `number` is the run's `attempts` when it took the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub run_id: i64,
    pub number: i32,
}

/// The attempt holding a run's lease, as the ledger shows it.
#[derive(Debug, Clone, PartialEq)]
struct Holder {
    host: Option<String>,
    pid: Option<i32>,
    /// When it last took or renewed the lease (server time), and how many seconds ago.
    seen_at: String,
    seen_ago: f64,
    /// Seconds until the lease expires; 0 or less: it has.
    expires_in: f64,
}

/// A run the ledger holds that `--resume` may mean, as [`check_resumable`] weighs it.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    id: i64,
    completed: bool,
    target_table: String,
    input: InputId,
    options: serde_json::Value,
    /// The run's attempts so far: which attempt holds, or last held, its lease.
    attempts: i32,
    /// The lease, unless released.
    lease: Option<Holder>,
}

/// A run `--resume` may go on with, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumable {
    pub id: i64,
    /// The options it recorded (its page layout included).
    pub options: serde_json::Value,
    /// Its input file's size or fingerprint changed since: its committed batches must be
    /// checked against the file before the run goes on.
    input_changed: bool,
    /// Its input as it recorded it.
    input: InputId,
    attempts: i32,
    /// Its lease is live, but held by a process of this host that is gone.
    take_over: bool,
}

/// Whether `found` (the run `wanted` names, else the latest unfinished one like `key`) may be
/// resumed for `key` as far as its identity goes (the lease is [`check_lease`]'s), or why not
/// (exit 2).
fn check_resumable(
    key: &RunKey,
    wanted: Option<i64>,
    found: Option<Candidate>,
) -> Result<Resumable, Error> {
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
    if let Some(refused) = key
        .options
        .get(DIALECT)
        .and_then(|now| dialect_refusal(run_id, run.options.get(DIALECT), now))
    {
        return Err(refused);
    }
    let input_changed = run.input != key.input;
    // A file can be read again to check the batches the run committed; stdin cannot.
    if input_changed && key.input.size.is_none() {
        return Err(Error::ResumeRefused(format!(
            "--resume {run_id}: the input on stdin is not the run's (content fingerprint \
             changed); refusing to resume. Resume with the same input."
        )));
    }
    Ok(Resumable {
        id: run_id,
        options: run.options,
        input_changed,
        input: run.input,
        attempts: run.attempts,
        take_over: false,
    })
}

/// The refusal of a resume of run `run_id`, which read its CSV as `recorded` says (`None`:
/// not recorded, taken as [`unrecorded_dialect`]), reading it as `now` says, when they
/// differ: it names each flag that differs, with both values.
fn dialect_refusal(
    run_id: i64,
    recorded: Option<&serde_json::Value>,
    now: &serde_json::Value,
) -> Option<Error> {
    let then = recorded.cloned().unwrap_or_else(unrecorded_dialect);
    let differences = dialect_differences(&then, now);
    if differences.is_empty() {
        return None;
    }
    Some(Error::ResumeRefused(format!(
        "--resume {run_id}: the CSV dialect differs from the run's: {}{}; refusing to resume, \
         as the batches it committed were read the run's way. Resume with the run's flags, or \
         start a new run without --resume.",
        differences.join("; "),
        if recorded.is_none() {
            " (the run was recorded before runs recorded their dialect: taken as COPY's \
             defaults with a header line)"
        } else {
            ""
        }
    )))
}

/// Whether the run's `lease` lets another attempt start, from host `host`: `Ok(false)` when
/// there is none or it expired, `Ok(true)` when it is live but its holder ran on this host
/// and `alive` says its process is gone (it was killed), else the refusal (exit 2) naming
/// the holder.
fn check_lease(
    run_id: i64,
    lease: Option<&Holder>,
    host: Option<&str>,
    alive: impl Fn(i32) -> bool,
) -> Result<bool, Error> {
    let Some(holder) = lease.filter(|h| h.expires_in > 0.0) else {
        return Ok(false);
    };
    let here = host.is_some() && holder.host.as_deref() == host;
    if here && holder.pid.is_some_and(|pid| !alive(pid)) {
        return Ok(true);
    }
    let pid = holder.pid.map_or("?".into(), |p| p.to_string());
    let on = holder.host.as_deref().unwrap_or("an unknown host");
    Err(Error::ResumeRefused(format!(
        "--resume {run_id}: another attempt of the run is live: pid {pid} on {on}, last seen \
         {:.0} s ago ({}); refusing to run a second one at once. Wait for it to end \
         (provisioner runs show {run_id}), or stop it: {}",
        holder.seen_ago.max(0.0),
        holder.seen_at,
        if here {
            format!("once process {pid} is gone, a resume on this host takes over at once")
        } else {
            format!(
                "if it is dead, a resume takes over once its lease expires, in {:.0} s",
                holder.expires_in.ceil()
            )
        }
    )))
}

/// Whether process `pid` of this host exists (signal 0 sends nothing; EPERM: it exists, as
/// another user's).
fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for the process; it has no effect on it.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process, as a lease records its holder.
pub(super) fn me() -> (Option<String>, i32) {
    (whoami::hostname().ok(), std::process::id() as i32)
}

/// The lease's duration as SQL takes it (seconds, float8).
pub(super) fn seconds(lease: Duration) -> f64 {
    lease.as_secs_f64()
}

/// The refusal of a resume whose input file changed and whose committed batch `seq` is not
/// what it was; any other failure of the check is returned as is.
fn committed_batch_changed(run: &Resumable, key: &RunKey, e: Error) -> Error {
    let Error::InputChanged {
        seq,
        first_line,
        last_line,
    } = e
    else {
        return e;
    };
    let size = |s: Option<u64>| s.map_or("unknown".into(), |s| s.to_string());
    let which = if first_line == 0 {
        format!("the input now ends before batch {seq}, which the run committed")
    } else {
        format!(
            "batch {seq} (lines {first_line}-{last_line}), which the run committed, is not what \
             it was then"
        )
    };
    Error::ResumeRefused(format!(
        "--resume {}: {} changed since the run started (size {} then, {} now), and {which}; \
         refusing to resume. Change only lines the run has not committed (restore that batch \
         as it was), or start a new run without --resume.",
        run.id,
        key.input.path,
        size(run.input.size),
        size(key.input.size),
    ))
}

impl Ledger {
    /// Starts a new run, or resumes one (`resume`), as an attempt holding the run's lease for
    /// `lease` (to be renewed, see [`Ledger::renew`]); returns it with the batches the run
    /// already committed (sequence number → content hash). A resumed run whose input file
    /// changed is first checked with `check_input`, given those batches: it reads the file
    /// again and fails with `Error::InputChanged` at a committed batch whose content differs,
    /// which refuses the resume. Every refusal comes before anything is recorded.
    pub async fn open_run<C>(
        &self,
        client: &Client,
        key: &RunKey,
        command_line: &[String],
        resume: Option<Resume>,
        lease: Duration,
        check_input: impl FnOnce(HashMap<u64, u64>) -> C,
    ) -> Result<(Attempt, HashMap<u64, u64>), Error>
    where
        C: Future<Output = Result<(), Error>>,
    {
        let opened = match resume {
            None => (
                self.start(client, key, command_line, lease).await?,
                HashMap::new(),
            ),
            Some(resume) => {
                let run = self.resumable(client, key, resume.id()).await?;
                if run.input_changed {
                    let committed = self.committed(client, run.id).await?;
                    check_input(committed)
                        .await
                        .map_err(|e| committed_batch_changed(&run, key, e))?;
                }
                let attempt = self.take(client, key, &run, lease).await?;
                // Read once the lease is held: no other attempt adds to them now.
                (attempt, self.committed(client, run.id).await?)
            }
        };
        tracing::info!(
            run_id = opened.0.run_id,
            attempt = opened.0.number,
            resumed_batches = opened.1.len(),
            "run {} recorded in the ledger (attempt {})",
            opened.0.run_id,
            opened.0.number
        );
        Ok(opened)
    }

    /// Records a new run as running, its first attempt holding the lease.
    async fn start(
        &self,
        client: &Client,
        key: &RunKey,
        command_line: &[String],
        lease: Duration,
    ) -> Result<Attempt, Error> {
        let (host, pid) = me();
        client
            .query_typed_one(
                &format!(
                    "INSERT INTO {}.runs (command, target_table, input_path, input_size, \
                       input_fingerprint, options, command_line, status, host, pid, claimed_at, \
                       lease_host, lease_pid, lease_renewed_at, lease_expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, now(), $8, $9, now(), \
                             now() + make_interval(secs => $10)) \
                     RETURNING id, attempts",
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
                    (&pid, Type::INT4),
                    (&seconds(lease), Type::FLOAT8),
                ],
            )
            .await
            .map(|r| Attempt {
                run_id: r.get(0),
                number: r.get(1),
            })
            .map_err(|e| Error::database("recording the run in the ledger", e))
    }

    /// Takes the lease of `run` for a new attempt and marks the run running again, with the
    /// input as it is now (a changed file passed its check), the dialect it is read with and
    /// the [`LAYOUT`] it goes on with, if `key` has one.
    /// Atomic: it succeeds only if no other attempt took the run since it was checked, and
    /// the lease is free, expired, or held by a gone process of this host, as checked.
    async fn take(
        &self,
        client: &Client,
        key: &RunKey,
        run: &Resumable,
        lease: Duration,
    ) -> Result<Attempt, Error> {
        let (host, pid) = me();
        // A run recorded before runs recorded their dialect gets it now (it was checked to
        // be the one it is taken to have); a --where purge's layout, as extended now.
        let updated: serde_json::Map<_, _> = [DIALECT, LAYOUT]
            .into_iter()
            .filter_map(|member| Some((member.to_string(), key.options.get(member)?.clone())))
            .collect();
        let updated = serde_json::Value::Object(updated);
        let taken = client
            .query_typed_opt(
                &format!(
                    "UPDATE {}.runs SET status = 'running', attempts = attempts + 1, error = NULL, \
                       finished_at = NULL, updated_at = now(), input_size = $3, \
                       input_fingerprint = $4, options = options || $5, lease_host = $6, \
                       lease_pid = $7, lease_renewed_at = now(), host = $6, pid = $7, \
                       claimed_at = now(), took_over_expired_at = lease_expires_at, \
                       lease_expires_at = now() + make_interval(secs => $8) \
                     WHERE id = $1 AND attempts = $2 AND status <> 'completed' \
                       AND (lease_expires_at IS NULL OR lease_expires_at <= now() OR $9) \
                     RETURNING attempts",
                    self.quoted_schema()
                ),
                &[
                    (&run.id, Type::INT8),
                    (&run.attempts, Type::INT4),
                    (&key.input.size(), Type::INT8),
                    (&key.input.fingerprint, Type::TEXT),
                    (&updated, Type::JSONB),
                    (&host, Type::TEXT),
                    (&pid, Type::INT4),
                    (&seconds(lease), Type::FLOAT8),
                    (&run.take_over, Type::BOOL),
                ],
            )
            .await
            .map_err(|e| Error::database("marking the run as resumed", e))?;
        match taken {
            Some(row) => Ok(Attempt {
                run_id: run.id,
                number: row.get(0),
            }),
            None => {
                // Another attempt got there first: say who, as a resume now would.
                self.resumable(client, key, Some(run.id)).await?;
                Err(Error::ResumeRefused(format!(
                    "--resume {0}: another attempt took the run while this one was starting; \
                     see provisioner runs show {0}",
                    run.id
                )))
            }
        }
    }

    /// The run to resume, with the options it recorded: `id` when given, else the latest
    /// unfinished run of the same command, table, input path and options (one read with the
    /// same CSV dialect first); refused as [`check_resumable`] and [`check_lease`] say.
    /// Changes nothing.
    pub async fn resumable(
        &self,
        client: &Client,
        key: &RunKey,
        id: Option<i64>,
    ) -> Result<Resumable, Error> {
        let found = client
            .query_typed_opt(
                &format!(
                    "SELECT id, status, target_table, input_path, input_size, input_fingerprint, \
                       options, attempts, lease_host, lease_pid, \
                       to_char(lease_renewed_at, 'YYYY-MM-DD HH24:MI:SSOF'), \
                       extract(epoch FROM now() - lease_renewed_at)::float8, \
                       extract(epoch FROM lease_expires_at - now())::float8 \
                     FROM {}.runs WHERE command = $1 AND parent_id IS NULL \
                       AND ($2::bigint IS NULL AND target_table = $3 \
                       AND input_path = $4 AND options - '{LAYOUT}' - '{DIALECT}' = $5 \
                       AND status <> 'completed' OR id = $2) \
                     ORDER BY coalesce(options -> '{DIALECT}', $6) IS NOT DISTINCT FROM $7 DESC, \
                       id DESC LIMIT 1",
                    self.quoted_schema()
                ),
                &[
                    (&key.command.as_str(), Type::TEXT),
                    (&id, Type::INT8),
                    (&key.target_table, Type::TEXT),
                    (&key.input.path, Type::TEXT),
                    (&identity(&key.options), Type::JSONB),
                    (&unrecorded_dialect(), Type::JSONB),
                    (&key.options.get(DIALECT), Type::JSONB),
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
                attempts: row.get(7),
                lease: row.get::<_, Option<f64>>(12).map(|expires_in| Holder {
                    host: row.get(8),
                    pid: row.get(9),
                    seen_at: row.get::<_, Option<String>>(10).unwrap_or_default(),
                    seen_ago: row.get::<_, Option<f64>>(11).unwrap_or_default(),
                    expires_in,
                }),
            });
        let lease = found.as_ref().and_then(|c| c.lease.clone());
        let mut run = check_resumable(key, id, found)?;
        run.take_over = check_lease(run.id, lease.as_ref(), me().0.as_deref(), alive)?;
        Ok(run)
    }

    /// Before the input is read: refuses a resume of the run `id` names (else the latest
    /// unfinished `command` run of `path` into `table`, one read in `dialect` first) when it
    /// read its CSV in another dialect, naming the flags. Read the wrong way, the input would
    /// fail sooner and say less (a header the wrong delimiter leaves in one piece). Only that:
    /// [`Ledger::resumable`] checks the rest, and any failure here is left to it.
    pub async fn check_dialect(
        &self,
        client: &Client,
        command: Command,
        table: &str,
        path: &str,
        id: Option<i64>,
        dialect: &serde_json::Value,
    ) -> Result<(), Error> {
        let found = client
            .query_typed_opt(
                &format!(
                    "SELECT id, options -> '{DIALECT}' FROM {}.runs \
                     WHERE command = $1 AND status <> 'completed' AND parent_id IS NULL \
                       AND ($2::bigint IS NULL AND target_table = $3 AND input_path = $4 OR id = $2) \
                     ORDER BY coalesce(options -> '{DIALECT}', $5) IS NOT DISTINCT FROM $6 DESC, \
                       id DESC LIMIT 1",
                    self.quoted_schema()
                ),
                &[
                    (&command.as_str(), Type::TEXT),
                    (&id, Type::INT8),
                    (&table, Type::TEXT),
                    (&path, Type::TEXT),
                    (&unrecorded_dialect(), Type::JSONB),
                    (&dialect, Type::JSONB),
                ],
            )
            .await;
        match found {
            Ok(Some(row)) => {
                let recorded: Option<serde_json::Value> = row.get(1);
                match dialect_refusal(row.get(0), recorded.as_ref(), dialect) {
                    Some(refused) => Err(refused),
                    None => Ok(()),
                }
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::debug!("the early check of the resumed run's dialect could not run: {e}");
                Ok(())
            }
        }
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

    /// Marks the run's end and releases `attempt`'s lease; `false` (nothing recorded) when the
    /// attempt no longer held it: the run's end is then the later attempt's to record.
    pub async fn finish(
        &self,
        client: &Client,
        attempt: Attempt,
        status: Status,
        rows_read: u64,
        error: Option<&str>,
    ) -> Result<bool, Error> {
        let recorded = client
            .execute_typed(
                &format!(
                    "UPDATE {}.runs SET status = $3, error = $4, rows_read = greatest(rows_read, $5), \
                       updated_at = now(), finished_at = CASE WHEN $3 = 'completed' THEN now() END, \
                       lease_host = NULL, lease_pid = NULL, lease_renewed_at = NULL, \
                       lease_expires_at = NULL \
                     WHERE id = $1 AND attempts = $2",
                    self.quoted_schema()
                ),
                &[
                    (&attempt.run_id, Type::INT8),
                    (&attempt.number, Type::INT4),
                    (&status.as_str(), Type::TEXT),
                    (&error, Type::TEXT),
                    (&(rows_read as i64), Type::INT8),
                ],
            )
            .await
            .map_err(|e| Error::database("recording the end of the run", e))?;
        Ok(recorded == 1)
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
            options: serde_json::json!({"batch_size": 10, "dialect": unrecorded_dialect()}),
        }
    }

    fn candidate() -> Candidate {
        let key = key();
        Candidate {
            id: 7,
            completed: false,
            target_table: key.target_table,
            input: key.input,
            options: serde_json::json!({
                "batch_size": 10,
                "layout": {"pages": 3},
                "dialect": unrecorded_dialect()
            }),
            attempts: 1,
            lease: None,
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
        let run = check_resumable(&key(), None, Some(candidate())).unwrap();
        assert_eq!(run.id, 7);
        assert_eq!(
            run.options["layout"]["pages"], 3,
            "the recorded layout is kept"
        );
        assert!(!run.input_changed);
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
        let stdin = |fingerprint: &str| InputId {
            path: "-".into(),
            size: None,
            fingerprint: fingerprint.into(),
        };
        let piped = Candidate {
            input: stdin("g"),
            ..candidate()
        };
        let key_on_stdin = RunKey {
            input: stdin("f"),
            ..key()
        };
        match check_resumable(&key_on_stdin, None, Some(piped)) {
            Err(e) => assert!(
                e.to_string().contains("input on stdin is not the run's"),
                "{e}"
            ),
            Ok(run) => panic!("a changed stdin resumed: {run:?}"),
        }
    }

    #[test]
    fn a_file_of_another_size_or_fingerprint_resumes_once_checked() {
        for input in [
            InputId {
                size: Some(99),
                ..candidate().input
            },
            InputId {
                fingerprint: "g".into(),
                ..candidate().input
            },
        ] {
            let found = Candidate {
                input,
                ..candidate()
            };
            let run = check_resumable(&key(), None, Some(found)).unwrap();
            assert!(run.input_changed, "{run:?}");
        }
    }

    #[test]
    fn another_dialect_refuses_the_resume_naming_each_flag_and_both_values() {
        let with = |dialect: serde_json::Value| RunKey {
            options: serde_json::json!({"batch_size": 10, "dialect": dialect}),
            ..key()
        };
        let semicolon = serde_json::json!({
            "delimiter": ";", "quote": "'", "escape": "'", "null": "NULL", "columns": ["a", "b"]
        });
        // Recorded before runs recorded their dialect: taken as the defaults.
        let unrecorded = Candidate {
            options: serde_json::json!({"batch_size": 10}),
            ..candidate()
        };
        let e = check_resumable(&with(semicolon.clone()), Some(7), Some(unrecorded)).unwrap_err();
        let said = e.to_string();
        for part in [
            r#"--delimiter "," then, ";" now"#,
            r#"--quote "\"" then, "'" now"#,
            r#"--escape "\"" then, "'" now"#,
            r#"--null "" then, "NULL" now"#,
            "--no-header/--columns: a header line then, --no-header --columns a,b now",
            "taken as COPY's defaults",
        ] {
            assert!(said.contains(part), "{part:?} not in {said}");
        }
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        // Recorded: compared as recorded, and no word of defaults.
        let recorded = Candidate {
            options: serde_json::json!({"batch_size": 10, "dialect": semicolon}),
            ..candidate()
        };
        let e = check_resumable(&key(), Some(7), Some(recorded.clone())).unwrap_err();
        assert!(
            e.to_string().contains(r#"--null "NULL" then, "" now"#),
            "{e}"
        );
        assert!(!e.to_string().contains("defaults"), "{e}");
        let run = check_resumable(&with(semicolon), Some(7), Some(recorded)).unwrap();
        assert_eq!(run.id, 7);
    }

    fn holder(host: &str, pid: i32, expires_in: f64) -> Holder {
        Holder {
            host: Some(host.into()),
            pid: Some(pid),
            seen_at: "2024-05-01 12:00:00+00".into(),
            seen_ago: 2.4,
            expires_in,
        }
    }

    #[test]
    fn a_live_lease_refuses_unless_its_holder_on_this_host_is_gone() {
        let here = Some("here");
        let gone = |_| false;
        let running = |_| true;
        assert!(!check_lease(7, None, here, running).unwrap());
        // Expired: free to take, whoever held it.
        let expired = holder("there", 42, -0.5);
        assert!(!check_lease(7, Some(&expired), here, running).unwrap());
        // This host, process gone (kill -9): taken over at once.
        let killed = holder("here", 42, 25.0);
        assert!(check_lease(7, Some(&killed), here, gone).unwrap());
        // This host, process there: refused.
        let e = check_lease(7, Some(&killed), here, running).unwrap_err();
        let said = e.to_string();
        assert!(
            said.contains("pid 42 on here, last seen 2 s ago (2024-05-01 12:00:00+00)"),
            "{said}"
        );
        assert!(said.contains("once process 42 is gone"), "{said}");
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        // Another host, live: refused until it expires, whatever its pid is here.
        let elsewhere = holder("there", 42, 24.2);
        let e = check_lease(7, Some(&elsewhere), here, gone).unwrap_err();
        assert!(e.to_string().contains("pid 42 on there"), "{e}");
        assert!(e.to_string().contains("expires, in 25 s"), "{e}");
        // An unknown host of our own is no host of the holder's.
        assert!(check_lease(7, Some(&killed), None, gone).is_err());
    }

    #[test]
    fn this_process_is_alive_and_no_pid_0_is_asked_about() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(0));
        assert!(!alive(-1));
    }
}
