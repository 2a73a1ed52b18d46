//! How every run begins, seed and purge alike, before anything is recorded or moved: the
//! pool and a first connection (which proves the target answers), the target table from the
//! catalog, then ONE check of every privilege the run needs (the command's, the throttle's
//! and the ledger's), so that a role missing several grants hears of all of them at once,
//! and the ledger opened last.

use deadpool_postgres::{Object, Pool};

use super::RunOptions;
use crate::db::catalog::{self, Table};
use crate::db::connect::{self, Endpoint};
use crate::db::ledger::{self, Access, Ledger};
use crate::db::privileges::Privilege;
use crate::error::Error;
use crate::model::Command;

/// The pool of `run`'s size and its first connection, after `run`'s options were checked.
pub async fn connect(db: Endpoint, run: &RunOptions) -> Result<(Pool, Object), Error> {
    run.check()?;
    let pool = connect::pool(db.clone(), run.connections)?;
    let client = connect::check(&pool, &db).await?;
    Ok((pool, client))
}

/// The table `name` names (as SQL would parse it), or a usage error that ends with `hint`.
pub async fn table(client: &Object, name: &str, hint: &str) -> Result<Table, Error> {
    catalog::describe(client, name)
        .await?
        .ok_or_else(|| Error::Usage(format!("table {name} does not exist{hint}")))
}

/// Checks in one call `needs` (what the command does to its tables), what `run`'s throttle
/// needs and what using the ledger for `access` needs.
pub async fn authorize(
    client: &Object,
    run: &RunOptions,
    mut needs: Vec<Privilege>,
    access: Access,
) -> Result<(), Error> {
    needs.extend(run.privileges());
    let ledger = run.ledger_schema.as_deref().map(|schema| (schema, access));
    ledger::authorize(client, needs, ledger).await
}

/// The run's ledger, once [`authorize`] allowed it: `None` with `--no-ledger`, or when
/// reading one that is not there.
pub async fn ledger(
    client: &mut Object,
    run: &RunOptions,
    access: Access,
) -> Result<Option<Ledger>, Error> {
    match &run.ledger_schema {
        None => Ok(None),
        Some(schema) => Ledger::open(client, schema, access).await,
    }
}

/// For a resume, before the input is read: refuses one whose run read its CSV (at `path`,
/// into `table`) in another dialect than `dialect`, naming the flags (see
/// [`Ledger::check_dialect`]). The ledger is only read, if it is there: nothing is created
/// before the run is allowed, and whatever fails here is checked again later.
pub async fn check_dialect(
    client: &mut Object,
    run: &RunOptions,
    command: Command,
    (table, path): (&str, &str),
    dialect: &serde_json::Value,
) -> Result<(), Error> {
    let (Some(resume), Some(schema)) = (run.resume, &run.ledger_schema) else {
        return Ok(());
    };
    match Ledger::open(client, schema, Access::Read).await {
        Ok(Some(ledger)) => {
            ledger
                .check_dialect(client, command, table, path, resume.id(), dialect)
                .await
        }
        _ => Ok(()),
    }
}
