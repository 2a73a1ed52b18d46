//! How every run that started ends: the summary gets the run's status, its error and (when
//! it did not finish) the command that resumes it, and the ledger records the end.

use deadpool_postgres::Pool;

use super::RunOptions;
use super::lease::Keeper;
use super::report::Summary;
use crate::db::ledger::{Ledger, resume_command};
use crate::error::Error;
use crate::model::Status;

/// How a run that started ended: its figures, and the failure if it did not finish.
#[derive(Debug)]
pub struct Finished {
    pub summary: Summary,
    pub error: Option<Error>,
}

/// Ends a run: the summary gets the run's status, error and (when it did not finish) the
/// command that resumes it; the attempt stops renewing its lease, and the ledger records the
/// end and releases the lease, unless another attempt took the run over meanwhile (then that
/// is the failure to report).
pub async fn conclude(
    pool: &Pool,
    run: &RunOptions,
    recorded: Option<(&Ledger, Keeper)>,
    mut error: Option<Error>,
    mut summary: Summary,
) -> Finished {
    let recorded = match recorded {
        Some((ledger, keeper)) => {
            let (attempt, lost) = keeper.stop().await;
            error = lost.or(error);
            Some((ledger, attempt))
        }
        None => None,
    };
    summary.error = error.as_ref().map(ToString::to_string);
    let status = match &error {
        None => Status::Completed,
        Some(Error::Interrupted) => Status::Interrupted,
        Some(_) => Status::Failed,
    };
    summary.status = status;
    if let Some((ledger, attempt)) = recorded {
        let run_id = attempt.run_id;
        summary.run_id = Some(run_id);
        let finish = || async {
            let client = pool.get().await.map_err(Error::Pool)?;
            ledger
                .finish(
                    &client,
                    attempt,
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
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "run {run_id} was taken over by another attempt: its end is that attempt's to record"
            ),
            Err(e) => tracing::warn!("the ledger could not record the end of run {run_id}: {e}"),
        }
        if status != Status::Completed {
            summary.resume_command = Some(resume_command(&run.command_line, run_id));
        }
    }
    Finished { summary, error }
}
