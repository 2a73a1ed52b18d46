//! A seed of many inputs: one run whose inputs any number of processes on any hosts read,
//! coordinated through the ledger alone (see the ledger's inputs).
//!
//! The process that starts the run checks every input (there, and with the first one's
//! header) and records them; it and every process that joins (`--join`) then claim inputs,
//! one at a time per lane (`--parallel-inputs` lanes, each reading on a thread of its own),
//! all feeding the same writers. An input is completed once the ledger holds every batch of
//! it: its lane waits until none of its batches is in flight any more, then the ledger
//! counts them. A process with nothing left to claim waits on the inputs others hold and
//! takes over any whose lease expires, so every process stays until the run's last input is
//! completed. Without a ledger (`--no-ledger`, `--dry-run`) there is no one to share with:
//! the lanes take the inputs in order.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;

use super::write::Writer;
use super::{Prepared, Reading, SeedOptions, dry_run, prepare, recorded_options, restore_rejects};
use crate::copy::batch::{Batch, InputTag, verify_source};
use crate::db::connect::{self, Endpoint};
use crate::db::ledger::{
    Access, Attempt, Claim, DIALECT, InputId, Ledger, NamedInput, Parent, Resume, RunKey,
};
use crate::db::retry::RetryPolicy;
use crate::error::Error;
use crate::input::csv::{self, CsvOptions, CsvReader, Record};
use crate::input::source::{self, Inputs, Source};
use crate::model::{Command, Invocation, Status};
use crate::run::finish::{self, Finished};
use crate::run::lease::{Holds, Keeper};
use crate::run::metrics::About;
use crate::run::report::{Console, InputShown, Progress, Reporter, Summary};
use crate::run::{ProduceEnd, Transactions, start};

/// How a run of many inputs is asked for.
#[derive(Debug, Clone)]
pub struct ManyInputs {
    /// The inputs given; `None` with `--join`, which takes the run's.
    pub given: Option<Inputs>,
    /// `--join RUN_ID`.
    pub join: Option<i64>,
    /// `--input-root`: where a joining or resuming process finds the inputs by name.
    pub root: Option<PathBuf>,
    /// `--parallel-inputs`: inputs read at once.
    pub parallel: usize,
}

/// The run a joining or resuming process goes on with.
struct Existing {
    parent: Parent,
    inputs: Vec<(NamedInput, Status)>,
    /// Joining a run already completed: its inputs, for the summary (nothing is left to do).
    completed: Option<Vec<InputShown>>,
}

type Reader = CsvReader<Box<dyn std::io::BufRead + Send>>;

pub(super) async fn seed(
    db: Endpoint,
    mut opts: SeedOptions,
    many: ManyInputs,
    console: &Console,
) -> Result<Finished, Error> {
    let existing = existing_run(db.clone(), &mut opts, &many).await?;
    if let Some(run) = &existing
        && let Some(inputs) = &run.completed
    {
        // A process that joins late has nothing left to do: the run it joins succeeded.
        tracing::info!("run {} is completed: nothing left to claim", run.parent.id);
        let invocation = Invocation {
            command: Command::Seed,
            dry_run: false,
        };
        let table = run.parent.target_table.clone();
        let mut summary = Summary::of(&Progress::default(), invocation, table, 0.0);
        summary.run_id = Some(run.parent.id);
        summary.inputs = inputs.clone();
        return Ok(Finished {
            summary,
            error: None,
        });
    }
    let root = match (&many.root, &many.given, &existing) {
        (Some(root), _, _) => root.clone(),
        (None, Some(given), _) => given.base.clone(),
        (None, None, Some(run)) => PathBuf::from(&run.parent.base),
        (None, None, None) => unreachable!("--join names a run"),
    };
    // What this process may read: the inputs given, or those of the run not completed yet.
    let todo: Vec<NamedInput> = match (&existing, &many.given) {
        (Some(run), given) => {
            if let Some(given) = given {
                same_names(run, given)?;
            }
            run.inputs
                .iter()
                .filter(|(_, status)| *status != Status::Completed)
                .map(|(input, _)| input.clone())
                .collect()
        }
        (None, Some(given)) => given
            .files
            .iter()
            .map(|(name, path)| NamedInput {
                name: name.clone(),
                id: InputId::named(path.display().to_string()),
            })
            .collect(),
        (None, None) => unreachable!("inputs or a run"),
    };
    let Some(first) = todo.first() else {
        let id = existing.as_ref().map_or(0, |r| r.parent.id);
        return Err(Error::ResumeRefused(format!(
            "run {id}: every input is completed; nothing to do"
        )));
    };
    opts.source = Source::Path(root.join(&first.name));
    let Prepared {
        pool,
        client,
        table,
        header,
        plan,
        rejects,
        ledger,
        ..
    } = prepare(db.clone(), &mut opts, true).await?;
    let mut options = recorded_options(&opts, &plan);
    options["map"] = serde_json::json!(opts.renames);
    // Every input is checked before anything is recorded.
    let against = match (&existing, many.join) {
        (None, _) => Against::Nothing,
        (Some(_), Some(_)) => Against::Recorded,
        (Some(_), None) => Against::Committed,
    };
    let (checked, changed_names) = check_inputs(&opts.csv, &root, &todo, &header, against).await?;
    let progress = Arc::new(Progress::default());
    let mut client = client;
    let parent = match (&ledger, &existing) {
        (None, _) => None,
        (Some(ledger), Some(run)) => {
            if run.parent.options != options {
                return Err(Error::ResumeRefused(format!(
                    "run {}: it loads with other options ({} then, {} now); refusing",
                    run.parent.id, run.parent.options, options
                )));
            }
            let resume = opts.run.resume.is_some();
            let id = run.parent.id;
            accept_changed(&client, ledger, id, &checked, &changed_names, &opts, &root).await?;
            ledger.rejoin(&client, &run.parent, resume).await?;
            if let (Some(rejects), true) = (&rejects, resume) {
                let inputs = ledger.inputs(&client, run.parent.id).await?;
                let runs: Vec<(i64, Option<&str>)> = inputs
                    .iter()
                    .map(|i| (i.id, i.input_name.as_deref()))
                    .collect();
                restore_rejects(&client, ledger, &runs, rejects, &progress).await?;
            }
            Some(run.parent.id)
        }
        (Some(ledger), None) => {
            let given = many.given.as_ref().expect("inputs given");
            let key = RunKey {
                command: Command::Seed,
                target_table: table.display(),
                input: run_identity(given, &checked),
                options,
            };
            let command_line = &opts.run.command_line;
            Some(
                ledger
                    .start_inputs(&mut client, &key, command_line, &checked)
                    .await?,
            )
        }
    };
    drop(client);

    let about = About {
        invocation: Invocation {
            command: Command::Seed,
            dry_run: opts.dry_run,
        },
        table: table.display(),
        run_id: parent,
    };
    let workers = opts.run.workers(&pool, progress.clone(), about);
    let keeper = ledger.as_ref().zip(parent).map(|(ledger, parent)| {
        let stop = workers.stop.clone();
        Keeper::start(
            db.clone(),
            ledger.clone(),
            Vec::new(),
            Some(parent),
            opts.run.lease,
            stop,
        )
    });
    let consumed = Arc::new(AtomicU64::new(0));
    // The bar measures what this process reads: all of it for the process that started
    // the run, an unknown share for one that joined (`runs show --watch` shows the run).
    let size = match existing {
        None => checked
            .iter()
            .map(|i| i.id.size.unwrap_or(0))
            .sum::<u64>()
            .into(),
        Some(_) => None,
    };
    let reporter = Reporter::start(
        console,
        progress.clone(),
        (consumed.clone(), size),
        workers.throttle.clone(),
    );
    let feed = Arc::new(Feed {
        shared: match (&ledger, parent, &keeper) {
            (Some(ledger), Some(parent), Some(keeper)) => Some(Shared {
                ledger: ledger.clone(),
                parent,
                lease: opts.run.lease,
                retry: opts.run.retry,
                claims: connect::pool(db.clone(), 1)?,
                holds: keeper.holds(),
            }),
            _ => None,
        },
        queue: Mutex::new(checked.into()),
        root,
        csv: opts.csv.clone(),
        header,
        reading: Reading::new(&table, &plan, &rejects, &opts, &progress, &workers.stop),
        consumed,
        stop: workers.stop.clone(),
        parallel: many.parallel.max(1),
    });
    let transactions = Transactions::new(
        pool.clone(),
        opts.run.session_settings(),
        None,
        opts.dry_run,
    );
    let writer = Writer::new(transactions, plan.statements, rejects.clone());
    let produce = move |tx| tokio::spawn(feed.run(tx));
    let error = if opts.dry_run {
        dry_run(produce, &writer, &progress).await
    } else {
        workers.drive(produce, writer).await
    };
    let error = error.or_else(|| rejects.and_then(|r| r.check().err()));
    let invocation = Invocation {
        command: Command::Seed,
        dry_run: opts.dry_run,
    };
    let summary = reporter.finish(invocation, table.display());
    let mut finished = finish::conclude(&pool, &opts.run, keeper, error, summary).await;
    if let (Some(ledger), Some(parent)) = (&ledger, parent) {
        let shown = async {
            let client = pool.get().await.map_err(Error::Pool)?;
            inputs_shown(&client, ledger, parent).await
        };
        match shown.await {
            Ok(inputs) => finished.summary.inputs = inputs,
            Err(e) => tracing::warn!("cannot read the run's inputs for the summary: {e}"),
        }
    }
    Ok(finished)
}

/// For `--join RUN_ID` or `--resume RUN_ID`: the run of many inputs, with its inputs. A
/// joining process loads as the run does: its table, mapping, conflict handling, key,
/// batch size and CSV dialect are taken from the ledger. `None` for a new run.
async fn existing_run(
    db: Endpoint,
    opts: &mut SeedOptions,
    many: &ManyInputs,
) -> Result<Option<Existing>, Error> {
    let (id, how) = match (many.join, opts.run.resume) {
        (Some(id), _) => (id, "--join"),
        (None, Some(Resume::Run(id))) => (id, "--resume"),
        (None, Some(Resume::Latest)) => {
            return Err(Error::Usage(
                "--resume of a run of many inputs needs the run's id: --resume RUN_ID (its \
                 summary and `provisioner runs` show it)"
                    .into(),
            ));
        }
        (None, None) => return Ok(None),
    };
    if opts.run.ledger_schema.is_none() {
        return Err(Error::Usage(format!(
            "{how} needs the ledger; it cannot be combined with --no-ledger"
        )));
    }
    let (_pool, mut client) = start::connect(db, &opts.run).await?;
    let missing =
        || Error::ResumeRefused(format!("{how} {id}: no run of many inputs with that id"));
    let ledger = start::ledger(&mut client, &opts.run, Access::Read)
        .await?
        .ok_or_else(missing)?;
    let parent = ledger.parent(&client, id).await?.ok_or_else(missing)?;
    if parent.command != Command::Seed.as_str() {
        return Err(Error::ResumeRefused(format!(
            "{how} {id}: that run is a {}, not a seed",
            parent.command
        )));
    }
    if many.join.is_some() {
        load_as_recorded(opts, &parent)?;
        // The run is resumed as it was started, whichever process it failed in.
        opts.run.command_line = parent.command_line.clone();
    }
    let inputs = ledger.inputs_of(&client, id).await?;
    let completed = match parent.status {
        Status::Completed if many.join.is_some() => Some(inputs_shown(&client, &ledger, id).await?),
        _ => None,
    };
    Ok(Some(Existing {
        parent,
        inputs,
        completed,
    }))
}

/// Sets what a joining process loads with from what run `parent` recorded.
fn load_as_recorded(opts: &mut SeedOptions, parent: &Parent) -> Result<(), Error> {
    let o = &parent.options;
    let unreadable = |what: &str| {
        Error::ResumeRefused(format!(
            "--join {}: the run's {what} is not one this version reads ({o})",
            parent.id
        ))
    };
    opts.table = parent.target_table.clone();
    opts.run.batch_size = o["batch_size"]
        .as_u64()
        .ok_or_else(|| unreadable("batch size"))? as usize;
    opts.on_conflict = serde_json::from_value(o["on_conflict"].clone())
        .map_err(|_| unreadable("conflict handling"))?;
    opts.key = serde_json::from_value(o["key"].clone()).map_err(|_| unreadable("key"))?;
    opts.renames = serde_json::from_value(o["map"].clone()).map_err(|_| unreadable("--map"))?;
    opts.csv = CsvOptions::from_recorded(&o[DIALECT]).ok_or_else(|| unreadable("CSV dialect"))?;
    Ok(())
}

/// Refuses a resume given other inputs than the run's.
fn same_names(run: &Existing, given: &Inputs) -> Result<(), Error> {
    let mut recorded: Vec<&str> = run.inputs.iter().map(|(i, _)| i.name.as_str()).collect();
    let mut now: Vec<&str> = given.files.iter().map(|(name, _)| name.as_str()).collect();
    recorded.sort_unstable();
    now.sort_unstable();
    if recorded != now {
        return Err(Error::ResumeRefused(format!(
            "--resume {}: the inputs given are not the run's ({} then, {} now); resume with \
             the same inputs",
            run.parent.id,
            recorded.join(" "),
            now.join(" ")
        )));
    }
    Ok(())
}

/// The identity a run of many inputs records for itself: its base directory, the inputs'
/// total size, and a hash of every input's name, size and fingerprint.
fn run_identity(given: &Inputs, inputs: &[NamedInput]) -> InputId {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for input in inputs {
        hasher.update(input.name.as_bytes());
        hasher.update(&input.id.size.unwrap_or(0).to_le_bytes());
        hasher.update(input.id.fingerprint.as_bytes());
    }
    InputId {
        path: given.base.display().to_string(),
        size: Some(inputs.iter().map(|i| i.id.size.unwrap_or(0)).sum()),
        fingerprint: format!("{:032x}", hasher.digest128()),
    }
}

/// Whether `found` is the file the run recorded as `recorded` (its path may differ: another
/// host, another root).
fn same_file(recorded: &InputId, found: &InputId) -> bool {
    recorded.size == found.size && recorded.fingerprint == found.fingerprint
}

/// Opens the input `name` under `root`, reads its header and checks it is `header`; returns
/// the reader past it, with the input as found. `consumed` counts the bytes read.
fn open_input(
    root: &Path,
    name: &str,
    csv: &CsvOptions,
    header: &Record,
    consumed: Arc<AtomicU64>,
) -> Result<(Reader, InputId), Error> {
    let source = Source::Path(root.join(name));
    let input = source::open_counted(&source, consumed)?;
    let (reader, found) = csv::header(input.reader, csv, &source)?;
    if !found.same_fields(header) {
        return Err(Error::Usage(format!(
            "{}: its header ({}) is not the first input's ({}); every input of a run needs the \
             same header",
            source.display(),
            String::from_utf8_lossy(found.raw()).trim_end(),
            String::from_utf8_lossy(header.raw()).trim_end(),
        )));
    }
    Ok((reader, input.id))
}

/// How the inputs are checked against a run that is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Against {
    /// A new run: nothing recorded yet.
    Nothing,
    /// Joining: each input must be the file the run recorded.
    Recorded,
    /// Resuming: an input may have changed where the run has not committed batches of it
    /// (a bad row fixed), which is checked against the ledger afterwards.
    Committed,
}

/// Checks every input before anything is recorded: it opens and its header is `header`;
/// joining, it is the file the run recorded. Returns the inputs as found (as recorded,
/// joining), with the names of those that changed (resuming).
async fn check_inputs(
    csv: &CsvOptions,
    root: &Path,
    inputs: &[NamedInput],
    header: &Record,
    against: Against,
) -> Result<(Vec<NamedInput>, Vec<String>), Error> {
    let (csv, root, inputs, header) = (
        csv.clone(),
        root.to_path_buf(),
        inputs.to_vec(),
        header.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let mut changed_names = Vec::new();
        let mut found_inputs = Vec::new();
        for input in inputs {
            let counted = Arc::new(AtomicU64::new(0));
            let (_, found) = open_input(&root, &input.name, &csv, &header, counted)?;
            let same = same_file(&input.id, &found);
            match against {
                Against::Recorded if !same => return Err(changed(&root, &input, &found)),
                Against::Recorded => found_inputs.push(input),
                Against::Committed if !same => {
                    changed_names.push(input.name.clone());
                    found_inputs.push(NamedInput { id: found, ..input });
                }
                Against::Nothing | Against::Committed => {
                    found_inputs.push(NamedInput { id: found, ..input })
                }
            }
        }
        Ok((found_inputs, changed_names))
    })
    .await
    .expect("the input check panicked")
}

/// Before a resume goes on with inputs that changed (`changed`, as `found`): checks that
/// each still holds the batches the run committed of it, as a resume of one input does,
/// and records it as it is now. Refused (exit 2) at the first committed batch that differs.
async fn accept_changed(
    client: &tokio_postgres::Client,
    ledger: &Ledger,
    parent: i64,
    found: &[NamedInput],
    changed_names: &[String],
    opts: &SeedOptions,
    root: &Path,
) -> Result<(), Error> {
    let recorded = ledger.inputs(client, parent).await?;
    for name in changed_names {
        let (Some(run), Some(input)) = (
            recorded
                .iter()
                .find(|r| r.input_name.as_deref() == Some(name)),
            found.iter().find(|i| &i.name == name),
        ) else {
            continue;
        };
        let committed = ledger.committed(client, run.id).await?;
        let source = Source::Path(root.join(name));
        verify_source(source, opts.csv.clone(), opts.run.batch_size, committed)
            .await
            .map_err(|e| match e {
                Error::InputChanged { seq, .. } => Error::ResumeRefused(format!(
                    "--resume {parent}: {name} changed where the run committed batch {seq} of \
                     it; refusing. Change only rows the run has not committed, or start a new \
                     run"
                )),
                other => other,
            })?;
        ledger.record_input(client, run.id, &input.id).await?;
        tracing::info!(
            input = %name,
            "input {name} changed, but not in the batches the run committed of it; going on \
             with it as it is now"
        );
    }
    Ok(())
}

/// The refusal of an input that is not the file the run recorded under its name (exit 2).
fn changed(root: &Path, input: &NamedInput, found: &InputId) -> Error {
    let size = |s: Option<u64>| s.map_or("unknown".into(), |s| s.to_string());
    Error::ResumeRefused(format!(
        "{}: not the input the run recorded as {} ({} bytes then, {} now{}); refusing. Give \
         --input-root the directory holding the run's inputs",
        root.join(&input.name).display(),
        input.name,
        size(input.id.size),
        size(found.size),
        if input.id.size == found.size {
            ", and its first MiB differs"
        } else {
            ""
        }
    ))
}

/// The inputs of run `parent` for the summary, as the ledger has them now.
async fn inputs_shown(
    client: &tokio_postgres::Client,
    ledger: &Ledger,
    parent: i64,
) -> Result<Vec<InputShown>, Error> {
    Ok(ledger
        .inputs(client, parent)
        .await?
        .into_iter()
        .map(|i| InputShown {
            name: i.input_name.unwrap_or_default(),
            status: i.status,
            rows_read: i.rows_read,
            inserted: i.rows_inserted,
            updated: i.rows_updated,
            skipped: i.rows_skipped,
            rejected: i.rows_rejected,
            batches: i.batches,
            attempts: i.attempts,
            host: i.host,
            pid: i.pid,
        })
        .collect())
}

/// What the lanes share when the run is shared through the ledger.
struct Shared {
    ledger: Ledger,
    parent: i64,
    lease: Duration,
    retry: RetryPolicy,
    /// A connection of the lanes' own, for claims and completions: the writers may hold
    /// every pooled one for long batches.
    claims: Pool,
    /// The leases the keeper renews.
    holds: Holds,
}

/// The producer of a run of many inputs: its lanes, and what they read with.
struct Feed {
    /// `None` without a ledger: the lanes take `queue` in order.
    shared: Option<Shared>,
    queue: Mutex<VecDeque<NamedInput>>,
    root: PathBuf,
    csv: CsvOptions,
    header: Record,
    reading: Reading,
    consumed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    parallel: usize,
}

/// What a lane does next.
enum Next {
    Read(NamedInput, Option<Attempt>),
    /// Nothing to claim now: look again in this long.
    Wait(Duration),
    End(ProduceEnd),
}

/// How reading an input ended.
enum Read {
    /// Read to its end with nothing to record, or stopped.
    Ended(ProduceEnd),
    /// Read to its end: complete it once its batches landed.
    Landing(Landing),
}

/// An input read to its end whose batches may still be in flight.
struct Landing {
    name: String,
    attempt: Attempt,
    /// Resolves once no batch of it is held any more.
    landed: tokio::sync::oneshot::Receiver<()>,
    batches: u64,
    records: u64,
}

/// How often a lane waiting on its input's batches looks whether the run stopped.
const LOOK: Duration = Duration::from_millis(100);

impl Feed {
    /// Runs the lanes until every input is completed (or the run stops); the first lane's
    /// failure stops the others.
    async fn run(self: Arc<Self>, tx: async_channel::Sender<Batch>) -> Result<ProduceEnd, Error> {
        let lanes: Vec<_> = (0..self.parallel)
            .map(|_| {
                let (feed, tx) = (self.clone(), tx.clone());
                tokio::spawn(async move {
                    let ended = feed.lane(&tx).await;
                    if !matches!(ended, Ok(ProduceEnd::Complete)) {
                        // The other lanes stop at their next batch, the writers once the
                        // batches already sent are written.
                        tx.close();
                    }
                    ended
                })
            })
            .collect();
        drop(tx);
        let mut ended = Ok(ProduceEnd::Complete);
        for lane in lanes {
            match lane.await.expect("lane panicked") {
                Err(e) if ended.is_ok() => ended = Err(e),
                Ok(ProduceEnd::Stopped) if matches!(ended, Ok(ProduceEnd::Complete)) => {
                    ended = Ok(ProduceEnd::Stopped)
                }
                _ => {}
            }
        }
        ended
    }

    /// Claims and reads inputs until none is left. An input read to its end is completed in
    /// the background once its batches landed, while the lane reads the next: the writers
    /// never wait for an input's end to be recorded.
    async fn lane(
        self: &Arc<Self>,
        tx: &async_channel::Sender<Batch>,
    ) -> Result<ProduceEnd, Error> {
        let mut landing = Vec::new();
        loop {
            if settle(&mut landing, false).await? == ProduceEnd::Stopped {
                return Ok(ProduceEnd::Stopped);
            }
            match self.next(tx).await? {
                Next::Read(input, attempt) => {
                    let read = self.read(tx, &input, attempt).await;
                    match read.map_err(|e| in_input(&input.name, e))? {
                        Read::Ended(ProduceEnd::Complete) => {}
                        Read::Ended(ProduceEnd::Stopped) => return Ok(ProduceEnd::Stopped),
                        Read::Landing(pending) => {
                            let (feed, tx) = (self.clone(), tx.clone());
                            landing.push(tokio::spawn(
                                async move { feed.complete(&tx, pending).await },
                            ));
                        }
                    }
                }
                // This lane's own inputs first: they may be all that is left.
                Next::Wait(_) if !landing.is_empty() => {
                    if settle(&mut landing, true).await? == ProduceEnd::Stopped {
                        return Ok(ProduceEnd::Stopped);
                    }
                }
                Next::Wait(wait) => tokio::time::sleep(wait).await,
                Next::End(end) => {
                    let settled = settle(&mut landing, true).await?;
                    return Ok(if settled == ProduceEnd::Stopped {
                        settled
                    } else {
                        end
                    });
                }
            }
        }
    }

    /// The next input to read: claimed from the ledger (or how long to wait, while others
    /// hold the rest), or the next in order without one.
    async fn next(&self, tx: &async_channel::Sender<Batch>) -> Result<Next, Error> {
        let Some(shared) = &self.shared else {
            let next = self.queue.lock().expect("input queue").pop_front();
            return Ok(next.map_or(Next::End(ProduceEnd::Complete), |input| {
                Next::Read(input, None)
            }));
        };
        if self.stop.load(Ordering::Relaxed) || tx.is_closed() {
            return Ok(Next::End(ProduceEnd::Stopped));
        }
        let claim = || async {
            let client = shared.claims.get().await.map_err(Error::Pool)?;
            let lease = shared.lease;
            shared
                .ledger
                .claim_input(&client, shared.parent, lease)
                .await
        };
        let claimed = shared
            .retry
            .run(
                claim,
                |_, cause, _| tracing::warn!(%cause, "claiming an input failed; retrying"),
            )
            .await?;
        match claimed {
            Claim::Claimed { attempt, input } => {
                shared.holds.hold(attempt);
                tracing::info!(
                    input = %input.name,
                    attempt = attempt.number,
                    "claimed input {} (attempt {})",
                    input.name,
                    attempt.number
                );
                Ok(Next::Read(input, Some(attempt)))
            }
            Claim::Wait(wait) => Ok(Next::Wait(wait)),
            Claim::Done => Ok(Next::End(ProduceEnd::Complete)),
            Claim::Failed(error) => Err(Error::FailedElsewhere {
                run_id: shared.parent,
                error,
            }),
        }
    }

    /// Reads one input into batches, after the batches the ledger holds of it; with a
    /// ledger, completes it once all of them are there.
    async fn read(
        &self,
        tx: &async_channel::Sender<Batch>,
        input: &NamedInput,
        attempt: Option<Attempt>,
    ) -> Result<Read, Error> {
        let (csv, found) = {
            let (root, name) = (self.root.clone(), input.name.clone());
            let (opts, header, consumed) =
                (self.csv.clone(), self.header.clone(), self.consumed.clone());
            tokio::task::spawn_blocking(move || open_input(&root, &name, &opts, &header, consumed))
                .await
                .expect("opening an input panicked")?
        };
        let shared = self.shared.as_ref().zip(attempt);
        if shared.is_some() && !same_file(&input.id, &found) {
            return Err(changed(&self.root, input, &found));
        }
        let (committed, batches) = match shared {
            Some((shared, attempt)) => {
                let client = shared.claims.get().await.map_err(Error::Pool)?;
                let committed = shared.ledger.committed(&client, attempt.run_id).await?;
                (committed, Some(shared.ledger.batches(attempt)))
            }
            None => (HashMap::new(), None),
        };
        let (tag, landed) = InputTag::new(input.name.clone(), batches);
        let batcher = self.reading.batcher(committed, Some(tag));
        let sender = tx.clone();
        let read = tokio::task::spawn_blocking(move || batcher.read(csv, &sender))
            .await
            .expect("reader panicked")?;
        match shared.filter(|_| read.end == ProduceEnd::Complete) {
            Some((_, attempt)) => Ok(Read::Landing(Landing {
                name: input.name.clone(),
                attempt,
                landed,
                batches: read.batches,
                records: read.records,
            })),
            None => Ok(Read::Ended(read.end)),
        }
    }

    /// Completes an input read to its end once none of its batches is in flight: if the
    /// ledger holds them all, it is completed and its lease released.
    async fn complete(
        &self,
        tx: &async_channel::Sender<Batch>,
        pending: Landing,
    ) -> Result<ProduceEnd, Error> {
        let shared = self.shared.as_ref().expect("a ledger");
        let Landing {
            name,
            attempt,
            landed,
            batches,
            records,
        } = pending;
        tokio::pin!(landed);
        loop {
            tokio::select! {
                _ = &mut landed => break,
                _ = tokio::time::sleep(LOOK) => {
                    if tx.is_closed() || self.stop.load(Ordering::Relaxed) {
                        return Ok(ProduceEnd::Stopped);
                    }
                }
            }
        }
        let complete = || async {
            let client = shared.claims.get().await.map_err(Error::Pool)?;
            let ledger = &shared.ledger;
            ledger
                .complete_input(&client, attempt, batches, records)
                .await
        };
        let completed = shared
            .retry
            .run(complete, |_, cause, _| {
                tracing::warn!(%cause, "recording an input as completed failed; retrying")
            })
            .await
            .map_err(|e| in_input(&name, e))?;
        if !completed {
            // A batch of it failed: the writers report why.
            return Ok(ProduceEnd::Stopped);
        }
        shared.holds.release(attempt);
        tracing::info!(input = %name, rows = records, "input {name} completed: {records} rows");
        Ok(ProduceEnd::Complete)
    }
}

/// `e`, met reading or completing the input `name`, naming it.
fn in_input(name: &str, e: Error) -> Error {
    Error::InInput {
        input: name.to_string(),
        source: Box::new(e),
    }
}

/// Waits for the completions in `landing` that are done (`all`: for every one) and takes
/// them out; `Stopped` if one of them stopped, the first failure if one failed.
async fn settle(
    landing: &mut Vec<tokio::task::JoinHandle<Result<ProduceEnd, Error>>>,
    all: bool,
) -> Result<ProduceEnd, Error> {
    let mut end = ProduceEnd::Complete;
    let mut kept = Vec::new();
    for task in landing.drain(..) {
        if !all && !task.is_finished() {
            kept.push(task);
            continue;
        }
        if task.await.expect("completing an input panicked")? == ProduceEnd::Stopped {
            end = ProduceEnd::Stopped;
        }
    }
    *landing = kept;
    Ok(end)
}
