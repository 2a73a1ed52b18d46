//! Throttling: how fast the writers may go, so a shared database stays healthy.
//!
//! - `--rate`: one cap in rows per second shared by every connection (governor's GCRA, one
//!   cell per row, a burst of a tenth of a second), so the rate is smooth, not bursty.
//! - `--max-batch-latency`: while batches take longer than the bound, the rate is halved
//!   (starting from the rate actually achieved when there is no cap); while they are fast
//!   again it recovers by a quarter per batch, up to the cap.
//! - `--max-replica-lag`: writers pause while a standby in `pg_stat_replication` lags more,
//!   or, with `--replica-url`, while that standby's last replayed transaction is older.
//! - `--pause-file` and SIGUSR1/SIGUSR2: the operator's brake; writers pause between batches.
//!   The signals work in every run, throttled or not.
//!
//! Writers ask [`Throttle::admit`] before each batch and report to [`Throttle::observe`]
//! after it; what holds them back is shown in the progress bar and logged when it changes.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// How often a paused writer looks again.
const PAUSE_POLL: Duration = Duration::from_millis(200);

/// `--max-batch-latency` halves the rate down to this fraction of where it started and no
/// further: latency that does not fall with the rate is not the run's doing.
const MAX_SLOWDOWN: f64 = 8.0;

/// Set by SIGUSR1, cleared by SIGUSR2: process-wide, like the signals themselves.
static SIGNAL_PAUSE: AtomicBool = AtomicBool::new(false);

/// Listens for SIGUSR1 (pause) and SIGUSR2 (resume) for the life of the process. Installed
/// before any work starts, so neither signal can kill the process.
pub fn listen_for_pause_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut pause), Ok(mut resume)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::warn!("cannot listen for SIGUSR1/SIGUSR2");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = pause.recv() => SIGNAL_PAUSE.store(true, Ordering::Relaxed),
                _ = resume.recv() => SIGNAL_PAUSE.store(false, Ordering::Relaxed),
            }
        }
    });
}

/// What holds the writers back, named for the metrics: the state it puts them in (`paused`
/// or `throttled`) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// SIGUSR1 (SIGUSR2 resumes).
    Signal,
    PauseFile,
    ReplicaLag,
    /// `--max-batch-latency` lowered the rate.
    BatchLatency,
}

impl Hold {
    pub const ALL: [Hold; 4] = [
        Hold::Signal,
        Hold::PauseFile,
        Hold::ReplicaLag,
        Hold::BatchLatency,
    ];

    pub fn state(self) -> &'static str {
        match self {
            Hold::Signal | Hold::PauseFile | Hold::ReplicaLag => "paused",
            Hold::BatchLatency => "throttled",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Hold::Signal => "signal",
            Hold::PauseFile => "pause_file",
            Hold::ReplicaLag => "replica_lag",
            Hold::BatchLatency => "batch_latency",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ThrottleOptions {
    /// Rows per second, across all connections.
    pub rate: Option<u32>,
    pub max_batch_latency: Option<Duration>,
    pub max_replica_lag: Option<Duration>,
    /// The standby to watch (`--replica-url`); without it, the primary's
    /// `pg_stat_replication` is read for every standby at once.
    pub replica: Option<crate::db::connect::Endpoint>,
    pub pause_file: Option<PathBuf>,
}

/// Shared by all writers of a run.
pub struct Throttle {
    opts: ThrottleOptions,
    /// The rate in force (`None`: unlimited) and its limiter.
    limiter: RwLock<Option<(u32, Arc<DefaultDirectRateLimiter>)>>,
    /// Bumped at every rate change.
    generation: std::sync::atomic::AtomicU64,
    /// The slowest `--max-batch-latency` may make the run: the cap (or the rate achieved
    /// when throttling began) divided by [`MAX_SLOWDOWN`].
    floor: std::sync::OnceLock<u32>,
    /// The latest replica lag above the bound, from the watcher.
    replica_lag: Mutex<Option<f64>>,
    /// What holds the writers back now, for the metrics and the progress bar.
    status: Mutex<Option<(Hold, String)>>,
    started: Instant,
    /// Rows written so far, for the achieved rate.
    rows: std::sync::atomic::AtomicU64,
}

impl Throttle {
    pub fn new(opts: ThrottleOptions) -> Arc<Self> {
        let throttle = Arc::new(Throttle {
            limiter: RwLock::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            floor: std::sync::OnceLock::new(),
            replica_lag: Mutex::new(None),
            status: Mutex::new(None),
            started: Instant::now(),
            rows: std::sync::atomic::AtomicU64::new(0),
            opts,
        });
        throttle.set_rate(throttle.opts.rate);
        throttle
    }

    /// What holds the writers back, if anything ("paused: …", "throttled: …").
    pub fn status(&self) -> Option<String> {
        let status = self.status.lock().expect("status lock");
        status.as_ref().map(|(_, text)| text.clone())
    }

    /// What holds the writers back, if anything, as the metrics name it.
    pub fn hold(&self) -> Option<Hold> {
        self.status
            .lock()
            .expect("status lock")
            .as_ref()
            .map(|(hold, _)| *hold)
    }

    fn set_status(&self, status: Option<(Hold, String)>) {
        let mut current = self.status.lock().expect("status lock");
        if *current != status {
            match &status {
                Some((_, s)) => tracing::warn!("{s}"),
                None => tracing::info!("resuming: nothing holds the writers back any more"),
            }
            *current = status;
        }
    }

    fn set_rate(&self, rate: Option<u32>) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        let limiter = rate.and_then(NonZeroU32::new).map(|r| {
            // A tenth of a second of burst: smooth, yet not a wait per row.
            let burst = NonZeroU32::new((r.get() / 10).max(1)).expect("at least 1");
            (
                r.get(),
                Arc::new(RateLimiter::direct(Quota::per_second(r).allow_burst(burst))),
            )
        });
        *self.limiter.write().expect("limiter lock") = limiter;
    }

    /// The rate in force, rows per second (`None`: unlimited).
    pub(super) fn rate(&self) -> Option<u32> {
        self.limiter
            .read()
            .expect("limiter lock")
            .as_ref()
            .map(|(r, _)| *r)
    }

    /// Waits until a batch of `rows` may be written: through any pause, then the rate.
    /// Returns the rate's generation to hand back to [`Throttle::observe`], or `None` when
    /// `stop` was set meanwhile (the batch must not be written).
    pub async fn admit(&self, rows: u64, stop: &AtomicBool) -> Option<u64> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let paused = if SIGNAL_PAUSE.load(Ordering::Relaxed) {
                Some((
                    Hold::Signal,
                    "paused by SIGUSR1 (SIGUSR2 resumes)".to_string(),
                ))
            } else if let Some(path) = self.opts.pause_file.as_ref().filter(|p| p.exists()) {
                let text = format!("paused: pause file {} exists", path.display());
                Some((Hold::PauseFile, text))
            } else {
                self.replica_lag
                    .lock()
                    .expect("lag lock")
                    .map(|lag| (Hold::ReplicaLag, format!("paused: replica lag {lag:.1}s")))
            };
            match paused {
                Some(reason) => {
                    self.set_status(Some(reason));
                    tokio::time::sleep(PAUSE_POLL).await;
                }
                None => break,
            }
        }
        let generation = self.generation.load(Ordering::Relaxed);
        let limiter = self.limiter.read().expect("limiter lock").clone();
        match limiter {
            Some((rate, limiter)) => {
                if self.opts.rate.is_some_and(|cap| rate < cap) || self.opts.rate.is_none() {
                    let text = format!("throttled: batch latency, {rate} rows/s");
                    self.set_status(Some((Hold::BatchLatency, text)));
                } else {
                    self.set_status(None);
                }
                // The limiter admits at most its burst at once: wait for the batch in parts.
                let burst = (rate / 10).max(1);
                let mut left = rows;
                while left > 0 {
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    let part = left.min(u64::from(burst)) as u32;
                    let n = NonZeroU32::new(part).expect("part > 0");
                    let _ = limiter.until_n_ready(n).await;
                    left -= u64::from(part);
                }
            }
            None => self.set_status(None),
        }
        Some(generation)
    }

    /// Hears how long a batch of `rows` admitted at `generation` took; adjusts the rate
    /// under `--max-batch-latency`.
    pub fn observe(&self, took: Duration, rows: u64, generation: u64) {
        let total = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        let achieved = total as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        // Batches admitted before the last change say nothing about the rate now in force:
        // the writers in flight together must not halve it once each.
        if generation == self.generation.load(Ordering::Relaxed) {
            self.adjust(took, achieved);
        }
    }

    /// `achieved` is the run's rate so far, the starting point when there is no cap.
    fn adjust(&self, took: Duration, achieved: f64) {
        let Some(bound) = self.opts.max_batch_latency else {
            return;
        };
        let current = self.rate();
        if took > bound {
            let base = current.map_or(achieved, f64::from);
            let floor = *self.floor.get_or_init(|| {
                ((self.opts.rate.map_or(achieved, f64::from) / MAX_SLOWDOWN) as u32).max(1)
            });
            let halved = ((base / 2.0) as u32).max(floor);
            if current != Some(halved) {
                tracing::warn!(
                    latency_ms = took.as_millis() as u64,
                    bound_ms = bound.as_millis() as u64,
                    rate = halved,
                    "batch latency above the bound: halving the rate"
                );
                self.set_rate(Some(halved));
            }
        } else if let Some(rate) = current {
            let recovered = ((f64::from(rate) * 1.25) as u32).max(rate + 1);
            match self.opts.rate {
                Some(cap) if recovered >= cap => self.set_rate(Some(cap)),
                // Uncapped: back to no limit once well above what the run achieves.
                None if f64::from(recovered) > achieved * 4.0 && self.started.elapsed() > bound => {
                    self.set_rate(None)
                }
                _ => self.set_rate(Some(recovered)),
            }
        }
    }

    /// Starts the replica lag watcher, when asked for: on the standby of `--replica-url`,
    /// else on `pool` (the primary).
    pub fn spawn_watchers(
        self: &Arc<Self>,
        pool: deadpool_postgres::Pool,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(bound) = self.opts.max_replica_lag else {
            return Vec::new();
        };
        let (pool, query) = match &self.opts.replica {
            Some(replica) => match crate::db::connect::pool(replica.clone(), 1) {
                Ok(pool) => (pool, STANDBY_LAG),
                Err(e) => {
                    tracing::warn!("--replica-url: {e}; replica lag is not watched");
                    return Vec::new();
                }
            },
            None => (pool, PRIMARY_LAG),
        };
        vec![tokio::spawn(watch_replica_lag(
            self.clone(),
            pool,
            query,
            bound,
        ))]
    }
}

/// The largest replay lag of the primary's standbys, in seconds.
const PRIMARY_LAG: &str =
    "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication";

/// On a standby: the age of the last replayed transaction (while the run writes, that is
/// how far behind it is); NULL on a server that is not a standby.
const STANDBY_LAG: &str = "SELECT CASE WHEN pg_is_in_recovery() THEN \
     coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8";

/// Polls the replica lag every second.
async fn watch_replica_lag(
    throttle: Arc<Throttle>,
    pool: deadpool_postgres::Pool,
    query: &'static str,
    bound: Duration,
) {
    let mut warned = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let lag = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            let row = client
                .query_typed_one(query, &[])
                .await
                .map_err(|e| crate::error::describe_pg(&e))?;
            Ok::<_, String>(row.get::<_, Option<f64>>(0))
        }
        .await;
        let lag = match lag {
            Ok(None) => {
                if !warned {
                    tracing::warn!("--replica-url is not a standby: its lag is not watched");
                    warned = true;
                }
                None
            }
            Ok(lag) => lag,
            Err(e) => {
                if !warned {
                    tracing::warn!("cannot read the replica lag (still trying every second): {e}");
                    warned = true;
                }
                None
            }
        };
        // An unreadable lag (connection trouble) does not pause the run; it is warned about.
        *throttle.replica_lag.lock().expect("lag lock") = lag.filter(|&l| l > bound.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rate_cap_spaces_batches() {
        let throttle = Throttle::new(ThrottleOptions {
            rate: Some(10_000),
            ..ThrottleOptions::default()
        });
        let start = Instant::now();
        let stop = AtomicBool::new(false);
        for _ in 0..5 {
            throttle.admit(1000, &stop).await;
        }
        // 5,000 rows at 10,000/s, less the first tenth of a second of burst.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(350), "{took:?}");
        assert!(took <= Duration::from_millis(700), "{took:?}");
    }

    #[test]
    fn latency_halves_the_rate_and_recovery_stops_at_the_cap() {
        let throttle = Throttle::new(ThrottleOptions {
            rate: Some(8000),
            max_batch_latency: Some(Duration::from_millis(100)),
            ..ThrottleOptions::default()
        });
        throttle.adjust(Duration::from_millis(300), 0.0);
        assert_eq!(throttle.rate(), Some(4000));
        throttle.adjust(Duration::from_millis(300), 0.0);
        assert_eq!(throttle.rate(), Some(2000));
        for _ in 0..20 {
            throttle.adjust(Duration::from_millis(10), 0.0);
        }
        assert_eq!(throttle.rate(), Some(8000));
    }

    #[test]
    fn batches_admitted_before_a_change_do_not_halve_again_and_a_floor_holds() {
        let throttle = Throttle::new(ThrottleOptions {
            rate: Some(16_000),
            max_batch_latency: Some(Duration::from_millis(100)),
            ..ThrottleOptions::default()
        });
        let before = throttle.generation.load(Ordering::Relaxed);
        throttle.observe(Duration::from_millis(300), 1000, before);
        assert_eq!(throttle.rate(), Some(8000));
        // A second writer's batch, admitted at the old rate, reports in late.
        throttle.observe(Duration::from_millis(300), 1000, before);
        assert_eq!(throttle.rate(), Some(8000));
        for _ in 0..20 {
            throttle.adjust(Duration::from_millis(300), 0.0);
        }
        assert_eq!(throttle.rate(), Some(2000), "16,000 / 8 at the slowest");
    }

    #[test]
    fn without_a_cap_latency_starts_from_the_achieved_rate() {
        let throttle = Throttle::new(ThrottleOptions {
            max_batch_latency: Some(Duration::from_millis(100)),
            ..ThrottleOptions::default()
        });
        assert_eq!(throttle.rate(), None);
        throttle.adjust(Duration::from_millis(300), 50_000.0);
        assert_eq!(throttle.rate(), Some(25_000));
    }

    #[tokio::test]
    async fn a_pause_file_holds_writers_until_it_is_gone() {
        let path = std::env::temp_dir().join(format!("provisioner-pause-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let throttle = Throttle::new(ThrottleOptions {
            pause_file: Some(path.clone()),
            ..ThrottleOptions::default()
        });
        let remover = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                std::fs::remove_file(path).unwrap();
            })
        };
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        throttle.admit(10, &AtomicBool::new(false)).await;
        assert!(start.elapsed() >= Duration::from_millis(450));
        assert!(throttle.status().is_none());
        remover.await.unwrap();
    }
}
