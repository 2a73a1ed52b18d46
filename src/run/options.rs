//! How any run (seed, purge) goes: parallelism, batching, ledger, retries, pace.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use deadpool_postgres::Pool;

use super::Workers;
use super::concurrency::Connections;
use super::metrics::{About, Server, Sources};
use super::report::Progress;
use super::throttle::{Throttle, ThrottleOptions};
use crate::db::ledger::Resume;
use crate::db::privileges::{Object, Privilege};
use crate::db::retry::RetryPolicy;
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub connections: Connections,
    pub batch_size: usize,
    /// The ledger's schema; `None` runs without a ledger (no resume, no exactly-once replay).
    pub ledger_schema: Option<String>,
    pub resume: Option<Resume>,
    pub retry: RetryPolicy,
    pub throttle: ThrottleOptions,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// A unit's deadline on the client (`--batch-timeout`), see [`super::on_connection`].
    pub batch_timeout: Duration,
    /// The command line, password removed: stored with the run to print its resume command.
    pub command_line: Vec<String>,
    /// How long the attempt's lease on its run lasts unless renewed (`--lease`).
    pub lease: Duration,
    /// `--metrics-addr`, bound: serves the run's metrics from [`Self::workers`] on.
    pub metrics: Option<Arc<Server>>,
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

    /// What the throttle needs to work: watching the primary's standbys for
    /// `--max-replica-lag` needs `pg_read_all_stats`, without which `pg_stat_replication`
    /// hides their lag and the brake would never hold.
    pub fn privileges(&self) -> Vec<Privilege> {
        if self.throttle.max_replica_lag.is_none() || self.throttle.replica.is_some() {
            return Vec::new();
        }
        vec![Privilege {
            privilege: "USAGE",
            on: Object::Role("pg_read_all_stats".into()),
        }]
    }

    /// The writers for the run `about`; with `--metrics-addr`, its metrics are served from
    /// now on.
    pub fn workers(&self, pool: &Pool, progress: Arc<Progress>, about: About) -> Workers {
        let throttle = Throttle::new(self.throttle.clone());
        let metrics = self.metrics.as_ref().map(|server| {
            let sources = Sources {
                progress: &progress,
                throttle: &throttle,
                pool,
                connections: self.connections,
            };
            server.start(&about, sources)
        });
        Workers {
            connections: self.connections,
            batch_timeout: self.batch_timeout,
            retry: self.retry,
            progress,
            stop: Arc::new(AtomicBool::new(false)),
            throttle,
            pool: pool.clone(),
            metrics,
        }
    }

    /// `SET LOCAL` statements for a unit's transaction: bounded waits for locks and
    /// statements (0 leaves the server's, role's or database's setting alone), and
    /// deferrable constraints checked at the end of each statement, as immediate ones are,
    /// where the row that breaks one can still be found and set aside (at COMMIT the whole
    /// unit fails, naming no row). Local to the transaction, so they cannot leak to another
    /// client behind a transaction-mode pooler.
    pub fn session_settings(&self) -> String {
        self.settings()
            .map(|(_, set)| set)
            .chain(["SET CONSTRAINTS ALL IMMEDIATE".to_string()])
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Each of [`Self::session_settings`]' timeouts with the flag that asks for it: what
    /// the server may refuse (checked once before a run is recorded).
    pub fn settings(&self) -> impl Iterator<Item = (&'static str, String)> {
        [
            ("--lock-timeout", "lock_timeout", self.lock_timeout),
            (
                "--statement-timeout",
                "statement_timeout",
                self.statement_timeout,
            ),
        ]
        .into_iter()
        .filter(|(_, _, limit)| !limit.is_zero())
        .map(|(flag, name, limit)| {
            (
                flag,
                format!("SET LOCAL {name} = '{}ms'", limit.as_millis()),
            )
        })
    }
}
