//! How every run that started ends: the summary gets the run's status, its error and (when
//! it did not finish) the command that resumes it, and the ledger records the end.

use deadpool_postgres::Pool;

use super::RunOptions;
use super::lease::Keeper;
use super::report::Summary;
use crate::db::ledger::resume_command;
use crate::error::Error;
use crate::model::Status;

/// How a run that started ended: its figures, and the failure if it did not finish.
#[derive(Debug)]
pub struct Finished {
    pub summary: Summary,
    pub error: Option<Error>,
}

/// Ends a run: the summary gets the run's status, error and (when it did not finish) the
/// command that resumes it; the process stops renewing its leases (`keeper`, `None` without a
/// ledger), and the ledger records the end of what it still held and releases the leases,
/// unless another process took them over meanwhile (then that is the failure to report). For
/// a run of many inputs, the parent's status follows (see
/// [`end_inputs`](crate::db::ledger::Ledger::end_inputs)).
pub async fn conclude(
    pool: &Pool,
    run: &RunOptions,
    keeper: Option<Keeper>,
    mut error: Option<Error>,
    mut summary: Summary,
) -> Finished {
    let released = match keeper {
        Some(keeper) => {
            let released = keeper.stop().await;
            error = released.lost.or(error);
            Some((released.ledger, released.held, released.parent))
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
    let Some((ledger, held, parent)) = released else {
        return Finished { summary, error };
    };
    // A run of one input reads what the summary counts; an input left unfinished keeps
    // what it recorded.
    let rows_read = if parent.is_none() {
        summary.rows_read
    } else {
        0
    };
    for attempt in held {
        let run_id = attempt.run_id;
        let finish = || async {
            let client = pool.get().await.map_err(Error::Pool)?;
            ledger
                .finish(
                    &client,
                    attempt,
                    status,
                    rows_read,
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
        summary.run_id.get_or_insert(run_id);
    }
    if let Some(parent) = parent {
        summary.run_id = Some(parent);
        let end = || async {
            let mut client = pool.get().await.map_err(Error::Pool)?;
            let interrupted = status == Status::Interrupted;
            ledger
                .end_inputs(&mut client, parent, summary.error.as_deref(), interrupted)
                .await
        };
        match run
            .retry
            .run(end, |_, cause, _| {
                tracing::warn!(%cause, "recording the end of the run failed; retrying")
            })
            .await
        {
            Ok(Status::Running) => tracing::info!(
                "run {parent} goes on in other processes: provisioner runs show {parent}"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("the ledger could not record the end of run {parent}: {e}"),
        }
    }
    if status != Status::Completed
        && let Some(run_id) = summary.run_id
    {
        summary.resume_command = Some(resume_command(&run.command_line, run_id));
    }
    Finished { summary, error }
}
