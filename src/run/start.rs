//! How every run begins, seed and purge alike, before anything is recorded or moved: the
//! pool and a first connection (which proves the target answers), the target table from the
//! catalog, then ONE check of every privilege the run needs (the command's, the throttle's
//! and the ledger's), so that a role missing several grants hears of all of them at once,
//! and the ledger opened last.

use deadpool_postgres::{Object, Pool};

use super::RunOptions;
use crate::db::catalog::{self, Relation, Table};
use crate::db::connect::{self, Endpoint};
use crate::db::ledger::{self, Access, Ledger};
use crate::db::privileges::Privilege;
use crate::error::{Error, describe_pg};
use crate::model::Command;

/// The pool of `run`'s size and its first connection, after `run`'s options were checked,
/// the server's among them.
pub async fn connect(db: Endpoint, run: &RunOptions) -> Result<(Pool, Object), Error> {
    run.check()?;
    let pool = connect::pool(db.clone(), run.connections.max())?;
    let mut client = connect::check(&pool, &db).await?;
    check_settings(&mut client, run).await?;
    Ok((pool, client))
}

/// Tries once, in a transaction rolled back, the settings every unit's transaction makes,
/// so that one the server refuses (a timeout beyond its range) is a usage error before
/// anything is recorded, not a failure of the first batch.
async fn check_settings(client: &mut Object, run: &RunOptions) -> Result<(), Error> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::database("checking the session settings", e))?;
    for (flag, set) in run.settings() {
        if let Err(e) = tx.batch_execute(&set).await {
            if e.as_db_error().is_none() {
                return Err(Error::database("checking the session settings", e));
            }
            return Err(Error::Usage(format!(
                "{flag}: the server refuses it: {}",
                describe_pg(&e)
            )));
        }
    }
    tx.rollback()
        .await
        .map_err(|e| Error::database("checking the session settings", e))
}

/// The server's `server_version_num` (150020 for 15.20): what its COPY does depends on it.
pub async fn server_version(client: &Object) -> Result<i32, Error> {
    let row = client
        .query_typed_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::database("reading the server's version", e))?;
    Ok(row.get(0))
}

/// The table `name` names (as SQL would parse it), or a usage error: one that ends with
/// `hint` when there is no such relation, or that names what it is when it is no table
/// (`does` says what the command does to tables: "seed loads into tables").
pub async fn table(client: &Object, name: &str, hint: &str, does: &str) -> Result<Table, Error> {
    match catalog::describe(client, name).await? {
        Relation::Table(table) => Ok(table),
        Relation::Other(kind) => Err(Error::Usage(format!("{name} is {kind}; {does}"))),
        Relation::Missing => Err(Error::Usage(format!("table {name} does not exist{hint}"))),
    }
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
