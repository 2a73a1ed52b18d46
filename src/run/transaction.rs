//! The one shape of a unit's transaction, for seed and purge alike: on a pooled connection,
//! within the unit's deadline, BEGIN → the `SET LOCAL` settings and the ledger's claim (sent
//! together: one round trip) → the command's work → the ledger's record → COMMIT.
//!
//! Invariants: with a ledger, a unit commits at most once however often it is replayed (its
//! claim comes first, in its own transaction; see the ledger); nothing outlives the
//! transaction (`SET LOCAL`, statements on the unnamed statement), so the writers are safe
//! behind a transaction-mode pooler; a dry run rolls back and records nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};

use super::{Unit, on_connection};
use crate::db::ledger::{BatchLedger, Committed};
use crate::error::Error;
use crate::model::Outcome;

/// What a unit's work did in its transaction.
pub struct Worked<'k, T> {
    pub outcome: Outcome,
    /// The keys of the rows it inserted, as JSON text, when the ledger records them.
    pub keys: Option<Cow<'k, str>>,
    /// Whatever else the command keeps from its work.
    pub kept: T,
}

/// How a unit's transaction ended.
pub enum Written<T> {
    /// Committed now (rolled back in a dry run), with what its work kept.
    Done(Outcome, T),
    /// It had committed already: a try whose COMMIT reply was lost, or another attempt of
    /// the run (then the outcome says `resumed`). The ledger says so, nothing was written
    /// again, and this is what was recorded then.
    AlreadyCommitted(Outcome),
}

/// The transactions of one run's units.
#[derive(Clone)]
pub struct Transactions {
    pool: Pool,
    /// `SET LOCAL` statements every transaction starts with.
    settings: Arc<str>,
    ledger: Option<Arc<BatchLedger>>,
    dry_run: bool,
}

impl Transactions {
    /// A dry run records nothing: it keeps no `ledger`.
    pub fn new(pool: Pool, settings: String, ledger: Option<BatchLedger>, dry_run: bool) -> Self {
        Transactions {
            pool,
            settings: settings.into(),
            ledger: ledger.filter(|_| !dry_run).map(Arc::new),
            dry_run,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The `SET LOCAL` statements a transaction of the run starts with.
    pub fn settings(&self) -> &str {
        &self.settings
    }

    /// The ledger rows `unit` is recorded in (its input's, or the run's), for what a command
    /// records in a unit's transaction besides its counts and keys (a seed's rejected rows);
    /// `None` without a ledger, and in a dry run.
    pub fn ledger_for<'a>(&'a self, unit: &'a impl Unit) -> Option<&'a BatchLedger> {
        if self.dry_run {
            return None;
        }
        unit.ledger().or(self.ledger.as_deref())
    }

    /// Runs `work` for `unit` in its own transaction within `limit` (see [`on_connection`]).
    pub async fn write<'k, U: Unit, T>(
        &self,
        unit: &U,
        limit: Duration,
        work: impl AsyncFnOnce(&mut Transaction<'_>) -> Result<Worked<'k, T>, Error>,
    ) -> Result<Written<T>, Error> {
        on_connection(&self.pool, limit, unit, async |client| {
            let fail = |e| unit.error(e);
            let mut tx = client.transaction().await.map_err(fail)?;
            let id = unit.id();
            if let Some(done) = self.begin(&tx, unit).await.map_err(fail)? {
                tx.rollback().await.map_err(fail)?;
                // Committed with other content (by an attempt that read the input before it
                // changed): this is not that batch, and skipping it would lose its rows.
                if done.content_hash != id.content_hash {
                    return Err(Error::InputChanged {
                        seq: id.seq,
                        first_line: id.first_line,
                        last_line: id.last_line,
                    });
                }
                return Ok(Written::AlreadyCommitted(done.outcome));
            }
            let worked = work(&mut tx).await?;
            if self.dry_run {
                tx.rollback().await.map_err(fail)?;
                return Ok(Written::Done(worked.outcome, worked.kept));
            }
            if let Some(ledger) = self.ledger_for(unit) {
                ledger
                    .record(&tx, unit.seq(), &worked.outcome, worked.keys.as_deref())
                    .await
                    .map_err(fail)?;
            }
            tx.commit().await.map_err(fail)?;
            Ok(Written::Done(worked.outcome, worked.kept))
        })
        .await
    }

    /// The settings and the claim, pipelined. `Some`: the unit had already committed (see
    /// [`BatchLedger::claim`]).
    async fn begin(
        &self,
        tx: &Transaction<'_>,
        unit: &impl Unit,
    ) -> Result<Option<Committed>, tokio_postgres::Error> {
        let claim = async {
            match self.ledger_for(unit) {
                Some(ledger) => ledger.claim(tx, unit.id()).await,
                None => Ok(None),
            }
        };
        let ((), done) = tokio::try_join!(tx.batch_execute(&self.settings), claim)?;
        Ok(done)
    }
}
