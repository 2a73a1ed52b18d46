//! The attempt's hold on its run: the lease the ledger gave it when the run started or
//! resumed (see the ledger's runs), renewed every third of `--lease` until the run ends, on a
//! connection of its own, so that writers holding every pooled connection for long batches
//! cannot starve it. Losing it (a later attempt took the run over, which it may only once
//! the lease expired) stops this attempt: two attempts must not write one run at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::db::connect::{self, Endpoint};
use crate::db::ledger::{Attempt, Ledger};
use crate::error::Error;

/// Renews an attempt's lease in the background.
pub struct Keeper {
    attempt: Attempt,
    lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    /// Starts renewing `attempt`'s lease for `lease` at a time; when it is lost, sets `stop`
    /// (the writers' and the producer's) so that the attempt ends after its units in flight.
    pub fn start(
        db: Endpoint,
        ledger: Ledger,
        attempt: Attempt,
        lease: Duration,
        stop: Arc<AtomicBool>,
    ) -> Keeper {
        let lost = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let lost = lost.clone();
            async move {
                let pool = match connect::pool(db, 1) {
                    Ok(pool) => pool,
                    Err(e) => {
                        tracing::warn!("cannot renew the lease of run {}: {e}", attempt.run_id);
                        return;
                    }
                };
                let every = lease / 3;
                let renew = async || {
                    let client = pool.get().await.map_err(Error::Pool)?;
                    let renewed = ledger.renew(&client, attempt, lease).await;
                    if renewed.is_err() {
                        // Its session is not trusted again: a fresh one next time.
                        drop(deadpool_postgres::Object::take(client));
                    }
                    renewed
                };
                loop {
                    tokio::time::sleep(every).await;
                    match tokio::time::timeout(every, renew()).await {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => {
                            tracing::warn!(
                                "run {} was taken over by another attempt; stopping this one",
                                attempt.run_id
                            );
                            lost.store(true, Ordering::SeqCst);
                            stop.store(true, Ordering::SeqCst);
                            return;
                        }
                        Ok(Err(e)) => tracing::warn!(
                            "cannot renew the lease of run {}: {e}; trying again",
                            attempt.run_id
                        ),
                        Err(_) => tracing::warn!(
                            "renewing the lease of run {} takes over {} s; trying again",
                            attempt.run_id,
                            every.as_secs_f64()
                        ),
                    }
                }
            }
        });
        Keeper {
            attempt,
            lost,
            task,
        }
    }

    /// Stops renewing (the run's end releases the lease) and returns the attempt, with the
    /// failure to report if the lease was lost.
    pub async fn stop(self) -> (Attempt, Option<Error>) {
        self.task.abort();
        let _ = self.task.await;
        let lost = self
            .lost
            .load(Ordering::SeqCst)
            .then_some(Error::LeaseLost {
                run_id: self.attempt.run_id,
            });
        (self.attempt, lost)
    }
}
