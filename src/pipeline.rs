//! The pipeline both commands share: a producer fills a bounded channel with units of work
//! (batches of rows or keys), one writer task per connection takes them out and writes each
//! in its own transaction, replaying transient failures, and the run ends in one verdict
//! that the ledger records.
//!
//! The first permanent failure closes the channel: the producer stops and the units already
//! taken still finish. The first Ctrl-C or SIGTERM does the same and marks the run
//! interrupted; the second exits at once, which the ledger makes safe.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::error::{EXIT_INTERRUPTED, Error};
use crate::ledger::{Ledger, Status};
use crate::report::{Progress, Summary};
use crate::retry::RetryPolicy;
use crate::throttle::Throttle;

/// Sends a COPY payload in pieces of this size: the driver buffers one piece at a time,
/// not a whole batch per connection.
const COPY_CHUNK: usize = 64 << 10;

/// Streams `payload` into a COPY `sink` and finishes it; returns the rows copied.
pub async fn copy_payload(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    payload: &bytes::Bytes,
) -> Result<u64, tokio_postgres::Error> {
    use futures_util::SinkExt;
    futures_util::pin_mut!(sink);
    let mut at = 0;
    while at < payload.len() {
        let end = (at + COPY_CHUNK).min(payload.len());
        sink.feed(payload.slice(at..end)).await?;
        at = end;
    }
    sink.as_mut().finish().await
}

/// How long a stopped run waits for its producer to notice.
pub(crate) const PRODUCER_GRACE: Duration = Duration::from_millis(500);

/// What one committed unit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub inserted: u64,
    pub updated: u64,
    pub skipped: u64,
    pub deleted: u64,
    /// Keys that matched no row.
    pub missing: u64,
    /// Rows set aside in reject mode (refused by a client-side check or by the server).
    pub rejected: u64,
    /// Sent in binary COPY format.
    pub binary: bool,
}

/// A unit of work: one transaction, one ledger row, one retry.
pub trait Unit: Send + Sync + 'static {
    fn seq(&self) -> u64;
    /// Rows the unit holds (an estimate where only the server knows), for the rate cap.
    fn rows(&self) -> u64;
    /// What the unit covers, for logs: input lines, or a page range.
    fn span(&self) -> String;
}

/// Writes one unit in one transaction; returns what it did. `limit` is the unit's deadline
/// (`--batch-timeout`), kept by [`on_connection`].
pub trait Sink<U>: Clone + Send + Sync + 'static {
    fn write(
        &self,
        unit: &U,
        limit: Duration,
    ) -> impl Future<Output = Result<Outcome, Error>> + Send;
}

/// Runs one unit's `work` on a pooled connection within `limit`. A connection whose work
/// failed or ran out of time is discarded, never handed out again: its session's state is
/// not trusted, and a transaction left on a stalled connection dies with it (the server
/// rolls it back when the socket closes). The deadline is kept here, on the client, because
/// a `COPY … FROM STDIN` waiting for the client's data ignores `statement_timeout`; a unit
/// that misses it is replayed like one whose connection was lost, which the ledger's claim
/// makes safe.
pub async fn on_connection<T>(
    pool: &Pool,
    limit: Duration,
    unit: &impl Unit,
    work: impl AsyncFnOnce(&mut deadpool_postgres::Client) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut client = pool.get().await.map_err(Error::Pool)?;
    let result = tokio::time::timeout(limit, work(&mut client))
        .await
        .unwrap_or_else(|_| {
            Err(Error::BatchTimeout {
                seq: unit.seq(),
                span: unit.span(),
                limit,
            })
        });
    if result.is_err() {
        drop(deadpool_postgres::Object::take(client));
    }
    result
}

/// How the producer stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ProduceEnd {
    /// Everything was handed over.
    Complete,
    /// The channel closed (a writer failed, or a signal) or a stop was asked for.
    Stopped,
}

/// How any run (seed, purge) goes: parallelism, batching, ledger, retries, pace.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub connections: usize,
    pub batch_size: usize,
    /// The ledger's schema; `None` runs without a ledger (no resume, no exactly-once replay).
    pub ledger_schema: Option<String>,
    pub resume: Option<crate::seed::Resume>,
    pub retry: RetryPolicy,
    pub throttle: crate::throttle::ThrottleOptions,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// A unit's deadline on the client (`--batch-timeout`), see [`on_connection`].
    pub batch_timeout: Duration,
    /// The command line, password removed: stored with the run to print its resume command.
    pub command_line: Vec<String>,
}

impl RunOptions {
    /// Refuses combinations that cannot work, before anything happens.
    pub fn check(&self) -> Result<(), Error> {
        if self.resume.is_some() && self.ledger_schema.is_none() {
            return Err(Error::Usage(
                "--resume needs the ledger; it cannot be combined with --no-ledger".into(),
            ));
        }
        Ok(())
    }

    /// Refuses (exit 2, naming the grant) a run whose throttle could not work: watching the
    /// primary's standbys for `--max-replica-lag` needs `pg_read_all_stats`, without which
    /// `pg_stat_replication` hides their lag and the brake would never hold.
    pub async fn check_privileges(&self, client: &tokio_postgres::Client) -> Result<(), Error> {
        if self.throttle.max_replica_lag.is_none() || self.throttle.replica.is_some() {
            return Ok(());
        }
        let stats = crate::catalog::Privilege {
            privilege: "USAGE",
            on: crate::catalog::Object::Role("pg_read_all_stats".into()),
        };
        crate::catalog::require(client, &[stats]).await
    }

    /// The writers for this run.
    pub fn workers(&self, pool: &Pool, progress: Arc<Progress>) -> Workers {
        Workers {
            connections: self.connections,
            batch_timeout: self.batch_timeout,
            retry: self.retry,
            progress,
            stop: Arc::new(AtomicBool::new(false)),
            throttle: Throttle::new(self.throttle.clone()),
            pool: pool.clone(),
        }
    }

    /// `SET LOCAL` statements for a unit's transaction: bounded waits for locks and
    /// statements (0 leaves the server's, role's or database's setting alone). Local to the
    /// transaction, so they cannot leak to another client behind a transaction-mode pooler.
    pub fn session_settings(&self) -> String {
        [
            ("lock_timeout", self.lock_timeout),
            ("statement_timeout", self.statement_timeout),
        ]
        .iter()
        .filter(|(_, limit)| !limit.is_zero())
        .map(|(name, limit)| format!("SET LOCAL {name} = '{}ms'", limit.as_millis()))
        .collect::<Vec<_>>()
        .join("; ")
    }
}

/// What the writers share.
#[derive(Clone)]
pub struct Workers {
    pub connections: usize,
    pub batch_timeout: Duration,
    pub retry: RetryPolicy,
    pub progress: Arc<Progress>,
    /// Set by the first signal: producers check it between units.
    pub stop: Arc<AtomicBool>,
    /// Pauses and paces the writers; a no-op unless asked for (or SIGUSR1).
    pub throttle: Arc<Throttle>,
    /// For the throttle's replica-lag watcher.
    pub pool: Pool,
}

impl Workers {
    /// Runs `sink` over everything `produce` sends and returns the run's failure, if any:
    /// the first writer failure, else the producer's, else `Interrupted` after a signal.
    pub async fn drive<U: Unit, S: Sink<U>>(
        &self,
        produce: impl FnOnce(
            async_channel::Sender<U>,
        ) -> tokio::task::JoinHandle<Result<ProduceEnd, Error>>,
        sink: S,
    ) -> Option<Error> {
        let (tx, rx) = async_channel::bounded::<U>(self.connections);
        let signals = tokio::spawn(stop_on_signals(self.stop.clone(), rx.clone()));
        let watchers = self.throttle.spawn_watchers(self.pool.clone());
        let producer = produce(tx);
        let writers: Vec<_> = (0..self.connections)
            .map(|_| {
                let (sink, rx, me) = (sink.clone(), rx.clone(), self.clone());
                tokio::spawn(async move {
                    while let Ok(unit) = rx.recv().await {
                        if me.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let Some(generation) = me.throttle.admit(unit.rows(), &me.stop).await
                        else {
                            break;
                        };
                        let started = Instant::now();
                        match me.write(&sink, &unit).await {
                            Ok(outcome) => {
                                me.throttle
                                    .observe(started.elapsed(), unit.rows(), generation);
                                me.progress.committed(outcome)
                            }
                            Err(e) => {
                                // The producer and the other writers stop after their unit.
                                rx.close();
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let mut error = None;
        for w in writers {
            if let Err(e) = w.await.expect("writer task panicked") {
                error.get_or_insert(e);
            }
        }
        // After a failure or a signal the writers are done, but a reader blocked on a quiet
        // stdin would never notice: give it a moment, then leave it behind.
        let produced = if error.is_some() || self.stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(PRODUCER_GRACE, producer).await {
                Ok(joined) => joined.expect("producer panicked"),
                Err(_) => Ok(ProduceEnd::Stopped),
            }
        } else {
            producer.await.expect("producer panicked")
        };
        signals.abort();
        watchers.iter().for_each(|w| w.abort());
        // A writer's failure is why the producer stopped, so it is the one to report; a
        // signal may have left units unwritten even when the producer got to the end.
        if error.is_none() {
            match produced {
                Err(e) => error = Some(e),
                Ok(ProduceEnd::Stopped) => error = Some(Error::Interrupted),
                Ok(ProduceEnd::Complete) if self.stop.load(Ordering::Relaxed) => {
                    error = Some(Error::Interrupted)
                }
                Ok(ProduceEnd::Complete) => {}
            }
        }
        error
    }

    async fn write<U: Unit, S: Sink<U>>(&self, sink: &S, unit: &U) -> Result<Outcome, Error> {
        self.retry
            .run(
                || sink.write(unit, self.batch_timeout),
                |attempt, cause, delay| {
                    self.progress.retried();
                    tracing::warn!(
                        batch = unit.seq(),
                        span = %unit.span(),
                        %cause,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "batch failed; replaying it"
                    );
                },
            )
            .await
    }
}

/// How a run that started ended: its figures, and the failure if it did not finish.
#[derive(Debug)]
pub struct Finished {
    pub summary: Summary,
    pub error: Option<Error>,
}

/// Ends a run: the summary gets the run's status, error and (when it did not finish) the
/// command that resumes it; the ledger records the end.
pub async fn conclude(
    pool: &Pool,
    run: &RunOptions,
    recorded: Option<(&Ledger, i64)>,
    error: Option<Error>,
    mut summary: Summary,
) -> Finished {
    summary.error = error.as_ref().map(ToString::to_string);
    let status = match &error {
        None => Status::Completed,
        Some(Error::Interrupted) => Status::Interrupted,
        Some(_) => Status::Failed,
    };
    summary.status = status.as_str();
    if let Some((ledger, run_id)) = recorded {
        summary.run_id = Some(run_id);
        let finish = || async {
            let client = pool.get().await.map_err(Error::Pool)?;
            ledger
                .finish(
                    &client,
                    run_id,
                    status,
                    summary.rows_read,
                    summary.error.as_deref(),
                )
                .await
        };
        let recorded = run
            .retry
            .run(finish, |_, cause, _| {
                tracing::warn!(%cause, "recording the end of the run failed; retrying")
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!("the ledger could not record the end of run {}: {e}", run_id);
        }
        if status != Status::Completed {
            summary.resume_command = Some(crate::ledger::resume_command(&run.command_line, run_id));
        }
    }
    Finished { summary, error }
}

/// On the first Ctrl-C or SIGTERM, asks the producer and the writers to stop after the
/// units in flight; on the second, exits at once.
async fn stop_on_signals<U>(stop: Arc<AtomicBool>, channel: async_channel::Receiver<U>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for signals; Ctrl-C will abort without marking the run");
        return;
    };
    for first in [true, false] {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if first {
            tracing::warn!(
                "stopping: letting in-flight batches commit (press Ctrl-C again to abort at once)"
            );
            stop.store(true, Ordering::Relaxed);
            channel.close();
        } else {
            std::process::exit(EXIT_INTERRUPTED);
        }
    }
}
