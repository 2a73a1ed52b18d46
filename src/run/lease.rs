//! The process's hold on what it runs: the leases the ledger gave it (one run's, or the inputs
//! of a run of many inputs it claimed), renewed together every third of `--lease` until the
//! run ends, on a connection of its own, so that writers holding every pooled connection for
//! long batches cannot starve it. Losing one (another process took it over, which it may only
//! once the lease expired) stops this process, as does a run of many inputs that failed in
//! another process: two processes must not write one input at once, and a failed run stops
//! everywhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::db::connect::{self, Endpoint};
use crate::db::ledger::{Attempt, Ledger};
use crate::error::Error;

/// The leases a process holds, shared with the [`Keeper`] that renews them.
#[derive(Debug, Clone, Default)]
pub struct Holds(Arc<Mutex<Vec<Attempt>>>);

impl Holds {
    /// Renews `attempt`'s lease too, from now on.
    pub fn hold(&self, attempt: Attempt) {
        self.0.lock().expect("lease set").push(attempt);
    }

    /// Stops renewing `attempt`'s lease (the ledger released it).
    pub fn release(&self, attempt: Attempt) {
        self.0.lock().expect("lease set").retain(|a| *a != attempt);
    }

    fn now(&self) -> Vec<Attempt> {
        self.0.lock().expect("lease set").clone()
    }
}

/// Renews a process's leases in the background.
pub struct Keeper {
    held: Holds,
    lost: Arc<Mutex<Option<Error>>>,
    task: tokio::task::JoinHandle<()>,
    ledger: Ledger,
    parent: Option<i64>,
}

/// What a keeper held when it stopped: what the run's end is recorded in.
pub struct Released {
    pub ledger: Ledger,
    /// The attempts whose leases it still held (a run's, or the inputs' not completed).
    pub held: Vec<Attempt>,
    /// The run of many inputs those were inputs of.
    pub parent: Option<i64>,
    /// Why the process stopped early: a lease lost, or the run failed elsewhere.
    pub lost: Option<Error>,
}

impl Keeper {
    /// The keeper of a run of one input: renews `attempt`'s lease while the run has a
    /// ledger (`None` without one, `--no-ledger` or a dry run).
    pub fn of_run(
        db: Endpoint,
        ledger: Option<&Ledger>,
        attempt: Option<Attempt>,
        lease: Duration,
        stop: Arc<AtomicBool>,
    ) -> Option<Keeper> {
        let (ledger, attempt) = ledger.zip(attempt)?;
        Some(Keeper::start(
            db,
            ledger.clone(),
            vec![attempt],
            None,
            lease,
            stop,
        ))
    }

    /// Starts renewing the leases of `held` (and of what [`Keeper::hold`] adds) for `lease`
    /// at a time; when one is lost, or the run of many inputs `parent` failed elsewhere,
    /// sets `stop` (the writers' and the producer's) so that the process ends after its
    /// units in flight.
    pub fn start(
        db: Endpoint,
        ledger: Ledger,
        held: Vec<Attempt>,
        parent: Option<i64>,
        lease: Duration,
        stop: Arc<AtomicBool>,
    ) -> Keeper {
        let lost = Arc::new(Mutex::new(None));
        let held = Holds(Arc::new(Mutex::new(held)));
        let task = tokio::spawn({
            let (lost, held, ledger) = (lost.clone(), held.clone(), ledger.clone());
            async move {
                let pool = match connect::pool(db, 1) {
                    Ok(pool) => pool,
                    Err(e) => {
                        tracing::warn!("cannot renew the run's lease: {e}");
                        return;
                    }
                };
                let every = lease / 3;
                let renew = async || {
                    let now = held.now();
                    let client = pool.get().await.map_err(Error::Pool)?;
                    let renewed = ledger.renew(&client, &now, parent, lease).await;
                    if renewed.is_err() {
                        // Its session is not trusted again: a fresh one next time.
                        drop(deadpool_postgres::Object::take(client));
                    }
                    renewed
                };
                loop {
                    tokio::time::sleep(every).await;
                    let why = match tokio::time::timeout(every, renew()).await {
                        Ok(Ok((gone, failed))) => match (gone.first(), failed, parent) {
                            (Some(a), _, _) => Error::LeaseLost { run_id: a.run_id },
                            (None, Some(error), Some(run_id)) => {
                                Error::FailedElsewhere { run_id, error }
                            }
                            (None, _, _) => continue,
                        },
                        Ok(Err(e)) => {
                            tracing::warn!("cannot renew the run's lease: {e}; trying again");
                            continue;
                        }
                        Err(_) => {
                            tracing::warn!(
                                "renewing the run's lease takes over {} s; trying again",
                                every.as_secs_f64()
                            );
                            continue;
                        }
                    };
                    tracing::warn!("{why}; stopping this process");
                    *lost.lock().expect("lease loss") = Some(why);
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        Keeper {
            held,
            lost,
            task,
            ledger,
            parent,
        }
    }

    /// What the keeper renews, for adding and releasing leases while it runs.
    pub fn holds(&self) -> Holds {
        self.held.clone()
    }

    /// Stops renewing (the run's end releases the leases) and returns what it held.
    pub async fn stop(self) -> Released {
        self.task.abort();
        let _ = self.task.await;
        let lost = self.lost.lock().expect("lease loss").take();
        Released {
            ledger: self.ledger,
            held: self.held.now(),
            parent: self.parent,
            lost,
        }
    }
}
