//! Throttling: how fast the writers may go, so a shared database stays healthy.
//!
//! - `--rate`: one cap in rows per second shared by every connection (governor's GCRA, one
//!   cell per row, a burst of a tenth of a second), so the rate is smooth, not bursty.
//! - `--max-batch-latency`: while batches take longer than the bound, the rate is halved
//!   (starting from the rate actually achieved when there is no cap); while they are fast
//!   again it recovers by a quarter per batch, up to the cap.
//! - `--max-replica-lag`: writers pause while a standby in `pg_stat_replication` lags more.
//! - `--pause-file` and SIGUSR1/SIGUSR2: the operator's brake; writers pause between batches.
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

#[derive(Debug, Clone, Default)]
pub struct ThrottleOptions {
    /// Rows per second, across all connections.
    pub rate: Option<u32>,
    pub max_batch_latency: Option<Duration>,
    pub max_replica_lag: Option<Duration>,
    pub pause_file: Option<PathBuf>,
}

impl ThrottleOptions {
    pub fn is_active(&self) -> bool {
        self.rate.is_some()
            || self.max_batch_latency.is_some()
            || self.max_replica_lag.is_some()
            || self.pause_file.is_some()
    }
}

/// Shared by all writers of a run.
pub struct Throttle {
    opts: ThrottleOptions,
    /// The rate in force (`None`: unlimited) and its limiter.
    limiter: RwLock<Option<(u32, Arc<DefaultDirectRateLimiter>)>>,
    /// Set by SIGUSR1, cleared by SIGUSR2.
    signal_pause: AtomicBool,
    /// The latest replica lag above the bound, from the watcher.
    replica_lag: Mutex<Option<f64>>,
    /// What holds the writers back now, for the progress bar.
    status: Mutex<Option<String>>,
    started: Instant,
    /// Rows written so far, for the achieved rate.
    rows: std::sync::atomic::AtomicU64,
}

impl Throttle {
    pub fn new(opts: ThrottleOptions) -> Arc<Self> {
        let throttle = Arc::new(Throttle {
            limiter: RwLock::new(None),
            signal_pause: AtomicBool::new(false),
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
        self.status.lock().expect("status lock").clone()
    }

    fn set_status(&self, status: Option<String>) {
        let mut current = self.status.lock().expect("status lock");
        if *current != status {
            match &status {
                Some(s) => tracing::warn!("{s}"),
                None => tracing::info!("resuming: nothing holds the writers back any more"),
            }
            *current = status;
        }
    }

    fn set_rate(&self, rate: Option<u32>) {
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

    fn rate(&self) -> Option<u32> {
        self.limiter
            .read()
            .expect("limiter lock")
            .as_ref()
            .map(|(r, _)| *r)
    }

    /// Waits until a batch of `rows` may be written: through any pause, then the rate.
    pub async fn admit(&self, rows: u64) {
        loop {
            let paused = if self.signal_pause.load(Ordering::Relaxed) {
                Some("paused by SIGUSR1 (SIGUSR2 resumes)".to_string())
            } else if let Some(path) = self.opts.pause_file.as_ref().filter(|p| p.exists()) {
                Some(format!("paused: pause file {} exists", path.display()))
            } else {
                self.replica_lag
                    .lock()
                    .expect("lag lock")
                    .map(|lag| format!("paused: replica lag {lag:.1}s"))
            };
            match paused {
                Some(reason) => {
                    self.set_status(Some(reason));
                    tokio::time::sleep(PAUSE_POLL).await;
                }
                None => break,
            }
        }
        let limiter = self.limiter.read().expect("limiter lock").clone();
        match limiter {
            Some((rate, limiter)) => {
                if self.opts.rate.is_some_and(|cap| rate < cap) || self.opts.rate.is_none() {
                    self.set_status(Some(format!("throttled: batch latency, {rate} rows/s")));
                } else {
                    self.set_status(None);
                }
                // The limiter admits at most its burst at once: wait for the batch in parts.
                let burst = (rate / 10).max(1);
                let mut left = rows;
                while left > 0 {
                    let part = left.min(u64::from(burst)) as u32;
                    let n = NonZeroU32::new(part).expect("part > 0");
                    let _ = limiter.until_n_ready(n).await;
                    left -= u64::from(part);
                }
            }
            None => self.set_status(None),
        }
    }

    /// Hears how long a batch of `rows` took; adjusts the rate under `--max-batch-latency`.
    pub fn observe(&self, took: Duration, rows: u64) {
        let total = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        let achieved = total as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        self.adjust(took, achieved);
    }

    /// `achieved` is the run's rate so far, the starting point when there is no cap.
    fn adjust(&self, took: Duration, achieved: f64) {
        let Some(bound) = self.opts.max_batch_latency else {
            return;
        };
        let current = self.rate();
        if took > bound {
            let base = current.map_or(achieved, f64::from);
            let halved = ((base / 2.0) as u32).max(1);
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

    /// Starts the background parts: SIGUSR1/SIGUSR2, and the replica lag watcher on `pool`.
    pub fn spawn_watchers(
        self: &Arc<Self>,
        pool: deadpool_postgres::Pool,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(pause_on_signals(self.clone()))];
        if let Some(bound) = self.opts.max_replica_lag {
            tasks.push(tokio::spawn(watch_replica_lag(self.clone(), pool, bound)));
        }
        tasks
    }
}

async fn pause_on_signals(throttle: Arc<Throttle>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut pause), Ok(mut resume)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::warn!("cannot listen for SIGUSR1/SIGUSR2");
        return;
    };
    loop {
        tokio::select! {
            _ = pause.recv() => throttle.signal_pause.store(true, Ordering::Relaxed),
            _ = resume.recv() => throttle.signal_pause.store(false, Ordering::Relaxed),
        }
    }
}

/// Polls the largest `replay_lag` of the primary's standbys every second.
async fn watch_replica_lag(
    throttle: Arc<Throttle>,
    pool: deadpool_postgres::Pool,
    bound: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let lag = async {
            let client = pool.get().await.ok()?;
            let row = client
                .query_one(
                    "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication",
                    &[],
                )
                .await
                .ok()?;
            Some(row.get::<_, f64>(0))
        }
        .await;
        // An unreadable lag (no privilege, connection trouble) does not pause the run.
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
        for _ in 0..5 {
            throttle.admit(1000).await;
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
        throttle.admit(10).await;
        assert!(start.elapsed() >= Duration::from_millis(450));
        assert!(throttle.status().is_none());
        remover.await.unwrap();
    }
}
