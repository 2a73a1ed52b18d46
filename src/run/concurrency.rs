//! How many writers work at once: a fixed `--connections N`, or `--connections auto`, which
//! finds the count while the run goes, so that nobody has to guess it for a given server.
//!
//! Auto starts with two writers and climbs a hill, one connection at a time: after each
//! window of work it compares the rows per second reached with the best seen so far. A count
//! that gains more than [`GAIN`] is kept and the next one tried; one that does not is left
//! for the best, which is held for [`HOLD`] windows before the counts beside it are tried
//! again (one more, then one fewer, which is kept when it loses less than [`GAIN`]: fewer
//! connections for the same work spare the server). Each trial that loses doubles the hold,
//! up to [`MAX_HOLD`] windows, so a long run on a steady load spends ever less time on
//! counts that lose (a trial of one connection on a server that needs two costs 40 % of its
//! window); a trial that wins starts over at [`HOLD`]. So on a steady load the count stays
//! within one of the best. While the throttle holds the writers back (`--rate`,
//! `--max-batch-latency`, a lagging replica, a pause), throughput says nothing about the
//! count, and the count stays as it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::report::Progress;
use super::throttle::Throttle;

/// A count must bring more than this share of throughput to be kept.
const GAIN: f64 = 0.08;
/// Windows the best count is held before its neighbours are tried again, at first; doubled
/// by every trial that loses, up to `MAX_HOLD` (a minute of 2-second windows).
const HOLD: u32 = 4;
const MAX_HOLD: u32 = 32;
/// A window lasts at least this long, and until each writer committed a few units.
const WINDOW: Duration = Duration::from_secs(2);
const UNITS_PER_WRITER: u64 = 3;
/// Auto starts with this many writers (fewer when the maximum is lower).
const START: usize = 2;

/// How many writers may write at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    Fixed(usize),
    /// Tuned while the run goes, from 1 up to `max`.
    Auto {
        max: usize,
    },
}

impl Connections {
    /// The most connections the run may open.
    pub fn max(self) -> usize {
        match self {
            Connections::Fixed(n) | Connections::Auto { max: n } => n,
        }
    }

    fn start(self) -> usize {
        match self {
            Connections::Fixed(n) => n,
            Connections::Auto { max } => START.min(max),
        }
    }
}

/// The hill climber: fed the throughput of each window at the current count, it says the
/// count for the next one. Pure, so its behaviour is tested without a server.
#[derive(Debug)]
struct Climber {
    max: usize,
    current: usize,
    best: usize,
    /// The best count's throughput, as last measured at it.
    best_rate: Option<f64>,
    /// Windows left to hold the best count.
    hold: u32,
    /// How long the next hold lasts.
    patience: u32,
    /// Which neighbour of the best is tried next: one more, or one fewer.
    up_next: bool,
}

impl Climber {
    fn new(start: usize, max: usize) -> Self {
        Climber {
            max,
            current: start,
            best: start,
            best_rate: None,
            hold: 0,
            patience: HOLD,
            up_next: true,
        }
    }

    /// The count for the next window, given the rows per second the last one reached at the
    /// current count and whether the throttle held the writers back in it.
    fn next(&mut self, rate: f64, throttled: bool) -> usize {
        if throttled {
            return self.current;
        }
        let Some(best_rate) = self.best_rate else {
            self.best_rate = Some(rate);
            return self.try_neighbour();
        };
        if self.current == self.best {
            // The server's pace changes as indexes grow: the best is what it does now.
            self.best_rate = Some(rate);
            if self.hold > 0 {
                self.hold -= 1;
                return self.current;
            }
            return self.try_neighbour();
        }
        let kept = if self.current > self.best {
            rate > best_rate * (1.0 + GAIN)
        } else {
            rate > best_rate * (1.0 - GAIN)
        };
        if kept {
            let climbing = self.current > self.best;
            (self.best, self.best_rate) = (self.current, Some(rate));
            self.patience = HOLD;
            if climbing && self.current < self.max {
                // Still climbing: try one more at once.
                self.current += 1;
                return self.current;
            }
        }
        self.current = self.best;
        self.hold_best(!kept);
        self.current
    }

    /// Holds the best count for a while; longer each time after a trial that `lost`.
    fn hold_best(&mut self, lost: bool) {
        self.hold = self.patience;
        if lost {
            self.patience = (self.patience * 2).min(MAX_HOLD);
        }
    }

    /// Tries the neighbour whose turn it is, when there is one.
    fn try_neighbour(&mut self) -> usize {
        let up = self.up_next;
        self.up_next = !up;
        if up && self.best < self.max {
            self.current = self.best + 1;
        } else if !up && self.best > 1 {
            self.current = self.best - 1;
        } else {
            self.hold_best(false);
        }
        self.current
    }
}

/// The writers' permits: one per writer that may write now.
pub struct Gate {
    permits: Arc<Semaphore>,
    connections: Connections,
}

impl Gate {
    pub fn new(connections: Connections) -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(connections.start())),
            connections,
        }
    }

    /// Waits for a permit to write one unit; `None` once the gate is closed.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// With `--connections auto`, tunes the permits every window until `stop` is set or the
    /// task is aborted; shows the count in `progress`. Nothing to do for a fixed count.
    pub fn spawn_tuner(
        &self,
        progress: Arc<Progress>,
        throttle: Arc<Throttle>,
        stop: Arc<AtomicBool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Connections::Auto { max } = self.connections else {
            return None;
        };
        let permits = self.permits.clone();
        let start = self.connections.start();
        progress.set_connections(start);
        Some(tokio::spawn(async move {
            let mut climber = Climber::new(start, max);
            let (mut rows, mut units) = (progress.rows_done(), progress.batches());
            let mut since = Instant::now();
            let mut held = false;
            // The first window only warms up (connections opened, the reader ahead): what it
            // measures would flatter whatever count comes next.
            let mut warm = false;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(WINDOW / 8).await;
                held |= throttle.status().is_some();
                let elapsed = since.elapsed();
                let done = progress.batches() - units;
                if elapsed < WINDOW || done < UNITS_PER_WRITER * climber.current as u64 {
                    continue;
                }
                let rate = (progress.rows_done() - rows) as f64 / elapsed.as_secs_f64();
                let before = climber.current;
                let after = match warm {
                    true => climber.next(rate, held),
                    false => before,
                };
                warm = true;
                if after != before {
                    tracing::info!(
                        rows_per_s = rate as u64,
                        "connections: {before} → {after} ({} rows/s)",
                        super::report::group(rate as u64)
                    );
                    resize(&permits, before, after);
                    progress.set_connections(after);
                }
                (rows, units, since, held) = (
                    progress.rows_done(),
                    progress.batches(),
                    Instant::now(),
                    false,
                );
            }
        }))
    }

    /// Lets no writer start another unit.
    pub fn close(&self) {
        self.permits.close();
    }
}

/// Adds or takes away permits: a permit taken away is waited for until a writer gives it
/// back, so no unit in flight is disturbed.
fn resize(permits: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        permits.add_permits(to - from);
    } else {
        let (permits, fewer) = (permits.clone(), (from - to) as u32);
        tokio::spawn(async move {
            if let Ok(taken) = permits.acquire_many_owned(fewer).await {
                taken.forget();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the climber for `windows` windows against `rate(n)`; returns the counts.
    fn climb(max: usize, windows: usize, rate: impl Fn(usize, usize) -> f64) -> Vec<usize> {
        let mut climber = Climber::new(START.min(max), max);
        let mut counts = vec![climber.current];
        for w in 0..windows {
            let n = climber.current;
            counts.push(climber.next(rate(n, w), false));
        }
        counts
    }

    #[test]
    fn climbs_to_where_throughput_stops_growing_and_stays_within_one() {
        // Throughput grows up to 5 connections, then falls a little (contention).
        let curve = |n: usize, w: usize| {
            let base = if n <= 5 {
                n as f64 * 20_000.0
            } else {
                100_000.0 - n as f64 * 2_000.0
            };
            // ±3 % of noise, deterministic.
            base * (1.0 + 0.03 * ((w * 7919 % 13) as f64 / 6.0 - 1.0))
        };
        let counts = climb(16, 60, curve);
        assert_eq!(
            counts[..5],
            [2, 3, 4, 5, 6],
            "climbs one at a time: {counts:?}"
        );
        let settled = &counts[10..];
        assert!(
            settled.iter().all(|&n| (4..=6).contains(&n)),
            "strays beyond one of 5: {counts:?}"
        );
        assert!(
            settled.iter().filter(|&&n| n == 5).count() > settled.len() / 2,
            "does not hold the best: {counts:?}"
        );
    }

    #[test]
    fn a_flat_load_settles_low_and_the_maximum_is_kept() {
        // A rate cap, or a server already saturated: more connections bring nothing.
        let counts = climb(16, 40, |_, _| 20_000.0);
        assert!(counts.iter().all(|&n| n <= 3), "{counts:?}");
        let late = &counts[15..];
        assert!(late.iter().all(|&n| n <= 2), "{counts:?}");
        assert!(
            late.iter().filter(|&&n| n == 1).count() > late.len() / 2,
            "fewer connections for the same work: {counts:?}"
        );
        // Growth without end stops at the maximum.
        let counts = climb(4, 20, |n, _| n as f64 * 10_000.0);
        assert!(counts.iter().all(|&n| n <= 4), "{counts:?}");
        assert!(counts[6..].iter().all(|&n| n >= 3), "{counts:?}");
    }

    #[test]
    fn trials_that_lose_grow_rarer_on_a_steady_load() {
        // A 2-core server: one connection does 60 % of two, three 90 %.
        let curve = |n: usize, _| match n {
            1 => 60_000.0,
            2 => 100_000.0,
            _ => 90_000.0,
        };
        let counts = climb(16, 200, curve);
        assert!(counts.iter().all(|&n| (1..=3).contains(&n)), "{counts:?}");
        let away = |windows: &[usize]| windows.iter().filter(|&&n| n != 2).count();
        // Trials at 4, 8, 16, 32, 32… windows apart: 10 of the first 100 windows, 3 of
        // the next 100.
        assert!(away(&counts[..100]) <= 10, "{counts:?}");
        assert!(away(&counts[100..]) <= 4, "{counts:?}");
    }

    #[test]
    fn a_throttled_window_changes_nothing() {
        let mut climber = Climber::new(2, 8);
        for _ in 0..10 {
            assert_eq!(climber.next(1.0, true), 2);
        }
        assert_eq!(Connections::Fixed(3).start(), 3);
        assert_eq!(Connections::Auto { max: 1 }.start(), 1);
    }
}
