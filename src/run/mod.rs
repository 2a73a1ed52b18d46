//! The run engine both commands share: a producer fills a bounded channel with units of work
//! (batches of rows or keys), one writer task per connection takes them out and writes each
//! in its own transaction ([`transaction`]), replaying transient failures, and the run ends
//! in one verdict that the ledger records ([`finish`]). [`start`] is how every run begins,
//! [`lease`] keeps the attempt's hold on its run, [`throttle`] paces the writers,
//! [`report`] shows and sums up what they did and [`metrics`] serves it to Prometheus.
//!
//! The first permanent failure closes the channel: the producer stops and the units already
//! taken still finish. The first Ctrl-C or SIGTERM does the same and marks the run
//! interrupted; the second exits at once, which the ledger makes safe.

pub mod concurrency;
pub mod finish;
pub mod lease;
pub mod metrics;
mod options;
pub mod report;
pub mod start;
pub mod throttle;
pub mod transaction;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

pub use finish::Finished;
pub use options::RunOptions;
pub use transaction::{Transactions, Worked, Written};

use crate::db::ledger::{BatchId, BatchLedger};
use crate::db::retry::RetryPolicy;
use crate::error::{EXIT_INTERRUPTED, Error};
use crate::model::Outcome;
use concurrency::{Connections, Gate};
use report::Progress;
use throttle::Throttle;

/// How long a stopped run waits for its producer to notice.
pub(crate) const PRODUCER_GRACE: Duration = Duration::from_millis(500);

/// A unit of work: one transaction, one ledger row, one retry.
pub trait Unit: Send + Sync + 'static {
    /// Where the unit sits in its run, as its ledger row records it.
    fn id(&self) -> BatchId;
    fn seq(&self) -> u64 {
        self.id().seq
    }
    /// Rows the unit holds (an estimate where only the server knows), for the rate cap.
    fn rows(&self) -> u64;
    /// What the unit covers, for logs: input lines, or a page range.
    fn span(&self) -> String;
    /// A driver error met while writing the unit, as the run reports it: naming the unit,
    /// and the line and column where the server names a row.
    fn error(&self, source: tokio_postgres::Error) -> Error;
    /// The ledger rows the unit is claimed and recorded in when they are not the run's own:
    /// those of its input, in a run of many inputs.
    fn ledger(&self) -> Option<&BatchLedger> {
        None
    }
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
async fn on_connection<T>(
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceEnd {
    /// Everything was handed over.
    Complete,
    /// The channel closed (a writer failed, or a signal) or a stop was asked for.
    Stopped,
}

/// What the writers share.
#[derive(Clone)]
pub struct Workers {
    connections: Connections,
    batch_timeout: Duration,
    retry: RetryPolicy,
    progress: Arc<Progress>,
    /// Set by the first signal: producers check it between units.
    pub stop: Arc<AtomicBool>,
    /// Pauses and paces the writers; a no-op unless asked for (or SIGUSR1).
    pub throttle: Arc<Throttle>,
    /// For the throttle's replica-lag watcher.
    pool: Pool,
    /// With `--metrics-addr`: where retries and batch latencies are counted.
    metrics: Option<metrics::Recorder>,
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
        // The units read ahead: one a writer, at most 4, which bounds memory whatever the
        // count (at 16 fixed connections, peak RSS 59 MiB at 1M rows, 81 with 16 ahead):
        // writers busy with 16 units gain nothing from more than a few more ready.
        let ahead = self.connections.max().min(4);
        let (tx, rx) = async_channel::bounded::<U>(ahead);
        let signals = tokio::spawn(stop_on_signals(self.stop.clone(), rx.clone()));
        let watchers = self.throttle.spawn_watchers(self.pool.clone());
        let gate = Arc::new(Gate::new(self.connections));
        let tuner = gate.spawn_tuner(
            self.progress.clone(),
            self.throttle.clone(),
            self.stop.clone(),
        );
        let producer = produce(tx);
        let writers: Vec<_> = (0..self.connections.max())
            .map(|_| {
                let (sink, rx, me, gate) = (sink.clone(), rx.clone(), self.clone(), gate.clone());
                tokio::spawn(async move {
                    // A writer takes a unit only with a permit, held until the unit is done.
                    while let Some(_permit) = gate.enter().await {
                        let Ok(unit) = rx.recv().await else { break };
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
                                let took = started.elapsed();
                                me.throttle.observe(took, unit.rows(), generation);
                                if let Some(metrics) = &me.metrics {
                                    metrics.committed(took);
                                }
                                me.progress.committed(outcome)
                            }
                            Err(e) => {
                                // The producer and the other writers stop after their unit.
                                rx.close();
                                gate.close();
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        // Once the channel is closed and empty, each writer still waiting for a permit gets
        // one in turn, finds nothing to take, and gives it back.
        let mut error = None;
        for w in writers {
            if let Err(e) = w.await.expect("writer task panicked") {
                error.get_or_insert(e);
            }
        }
        if let Some(tuner) = tuner {
            tuner.abort();
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
                    if let Some(metrics) = &self.metrics {
                        metrics.retried(cause.kind);
                    }
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
