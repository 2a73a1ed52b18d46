//! The run ledger: what each run is and which of its batches committed, kept in the target
//! database itself (schema `provisioner` unless `--ledger-schema` says otherwise).
//!
//! Invariant: a batch's ledger row is written in the same transaction as the batch's data,
//! and written first (`INSERT … ON CONFLICT DO NOTHING` on the run and sequence number). So
//! the row exists exactly when the data committed, a replay of a batch that did commit finds
//! it and stops, and a replay racing a transaction whose COMMIT outcome is still unknown waits
//! for that outcome instead of guessing. Migrations are embedded, versioned and idempotent.
//!
//! One file a concern: this one opens (and creates or migrates) the ledger; [`runs`] keeps
//! a run's identity and lifecycle and decides whether it may be resumed; [`batches`] is the
//! claim and record inside a batch's transaction; [`keys`] reads what `purge --run` deletes
//! by; [`listing`] is the `runs` command's view.

mod batches;
mod inputs;
mod keys;
mod listing;
mod runs;

use std::str::FromStr;

use tokio_postgres::Client;
use tokio_postgres::types::{FromSql, Type};

use crate::db::catalog::quote_ident;
use crate::db::privileges::{self, Object, Privilege};
use crate::error::Error;

pub use batches::{BatchId, BatchLedger, Committed};
pub use inputs::{Claim, NamedInput, Parent};
pub use listing::{LeaseShown, Run};
#[cfg(test)]
pub use runs::unrecorded_dialect;
pub use runs::{Attempt, DIALECT, InputId, LAYOUT, Resume, RunKey, resume_command};

pub const DEFAULT_SCHEMA: &str = "provisioner";

/// A name the ledger stores as text (a command, a status), read into its type; a name this
/// version does not know (a newer one wrote it) is an error, not a guess.
pub(super) struct Stored<T>(pub(super) T);

impl<'a, T: FromStr> FromSql<'a> for Stored<T> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let name = <&str as FromSql>::from_sql(ty, raw)?;
        let parsed = name
            .parse()
            .map_err(|_| format!("unknown name {name:?} in the ledger"))?;
        Ok(Stored(parsed))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// Embedded migrations, applied in order; `{schema}` stands for the quoted schema name.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../sql/ledger/001_runs_and_batches.sql"),
    ),
    (2, include_str!("../../../sql/ledger/002_purge.sql")),
    (3, include_str!("../../../sql/ledger/003_rejected.sql")),
    (4, include_str!("../../../sql/ledger/004_rejected_rows.sql")),
    (5, include_str!("../../../sql/ledger/005_lease.sql")),
    (
        6,
        include_str!("../../../sql/ledger/006_keys_uncompressed.sql"),
    ),
    (7, include_str!("../../../sql/ledger/007_inputs.sql")),
];

/// The oldest ledger version [`Ledger::existing`] reads: runs, batches and recorded keys
/// are there from version 2; later versions only add what writers record (`rejected`,
/// `rejected_rows`).
const READABLE_FROM: i32 = 2;

/// The ledger tables and the privileges the runs need on them (besides USAGE on the
/// schema): what the least-privilege GRANTs in docs/connecting.md give.
const GRANTS: &[(&str, &[&str])] = &[
    ("migrations", &["SELECT"]),
    ("runs", &["SELECT", "INSERT", "UPDATE"]),
    ("batches", &["SELECT", "INSERT", "UPDATE"]),
    ("inserted_keys", &["SELECT", "INSERT"]),
    ("rejected_rows", &["SELECT", "INSERT"]),
];

/// What a command does with the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Records runs: creates or migrates the ledger when it is missing or behind.
    Write,
    /// Reads one that exists, changing nothing (a dry run leaves no trace, the ledger
    /// included).
    Read,
}

/// The ledger in one schema of the target database.
#[derive(Debug, Clone)]
pub struct Ledger {
    schema: String,
}

/// Checks, in ONE round trip, the privileges a command needs (`needs`) and those its use of
/// the ledger in `ledger` needs, so that a role missing several hears of all of them at once
/// (exit 2). Changes nothing.
pub async fn authorize(
    client: &Client,
    mut needs: Vec<Privilege>,
    ledger: Option<(&str, Access)>,
) -> Result<(), Error> {
    let own = needs.len();
    if let Some((schema, access)) = ledger {
        needs.extend(Ledger::needs(client, schema, access).await?);
    }
    let lacking = privileges::lacking(client, &needs).await?;
    if !lacking.is_empty() {
        // Creating the ledger takes more than a GRANT on it: say what else will do.
        let creates = lacking
            .iter()
            .any(|&(i, _)| i >= own && needs[i].privilege == "CREATE");
        return Err(Error::MissingPrivileges {
            lacking: lacking.into_iter().map(|(_, line)| line).collect(),
            note: ledger
                .filter(|_| creates)
                .map(|(schema, _)| missing_or_behind(schema)),
        });
    }
    Ok(())
}

fn missing_or_behind(schema: &str) -> String {
    format!(
        "The ledger in schema {schema} is missing or behind: create or migrate it once as a \
         role that may (or run with --no-ledger)."
    )
}

impl Ledger {
    /// The ledger in `schema`, once [`authorize`] allowed `access` to it: for writing, created
    /// or migrated when it is missing or behind; for reading, `None` when it is not there.
    pub async fn open(
        client: &mut Client,
        schema: &str,
        access: Access,
    ) -> Result<Option<Ledger>, Error> {
        match access {
            Access::Write => Ledger::current(client, schema).await.map(Some),
            Access::Read => Ledger::existing(client, schema).await,
        }
    }

    /// What using the ledger in `schema` needs, as far as the catalog tells without any
    /// privilege: USAGE on the schema and the [`GRANTS`] on the tables that are there; for
    /// writing, CREATE where the ledger is still to be made (on the database when the schema
    /// is missing, on the schema when the ledger in it is). A ledger that is there but behind
    /// is found only by reading its version: [`Ledger::migrate`] checks that CREATE itself.
    async fn needs(client: &Client, schema: &str, access: Access) -> Result<Vec<Privilege>, Error> {
        let names: Vec<&str> = GRANTS.iter().map(|(t, _)| *t).collect();
        let row = client
            .query_typed_one(
                "SELECT n.oid IS NOT NULL, \
                        array(SELECT c.relname::text FROM pg_class c \
                              WHERE c.relnamespace = n.oid AND c.relname = ANY($2)) \
                 FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = $1",
                &[(&schema, Type::TEXT), (&names, Type::TEXT_ARRAY)],
            )
            .await
            .map_err(|e| Error::database("looking for the ledger", e))?;
        let (schema_exists, tables): (bool, Vec<String>) = (row.get(0), row.get(1));
        let table = |name: &str| Object::Table {
            schema: schema.to_string(),
            name: name.to_string(),
            columns: Vec::new(),
        };
        let present = tables.iter().any(|t| t == "migrations");
        let mut needs = Vec::new();
        if access == Access::Write && !present {
            needs.push(if schema_exists {
                Privilege::on_schema("CREATE", schema)
            } else {
                Privilege {
                    privilege: "CREATE",
                    on: Object::Database,
                }
            });
        }
        if present {
            needs.push(Privilege::on_schema("USAGE", schema));
            let wanted: &[(&str, &[&str])] = match access {
                Access::Write => GRANTS,
                Access::Read => &GRANTS[..1],
            };
            for (name, privileges) in wanted.iter().filter(|(n, _)| tables.iter().any(|t| t == n)) {
                for privilege in privileges.iter() {
                    needs.push(Privilege {
                        privilege,
                        on: table(name),
                    });
                }
            }
        }
        Ok(needs)
    }

    /// The ledger in `schema`, created or migrated first when it is missing or behind (then
    /// serialised by an advisory lock, so two runs starting at once do not race). A ledger
    /// already current is only read: no DDL, so a role without CREATE can use it. The
    /// privileges to use it were checked by [`authorize`].
    async fn current(client: &mut Client, schema: &str) -> Result<Ledger, Error> {
        let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if Ledger::version(client, schema).await? == Some(latest) {
            return Ok(Ledger {
                schema: quote_ident(schema),
            });
        }
        Ledger::migrate(client, schema).await
    }

    /// Creates the schema (only when missing: CREATE SCHEMA IF NOT EXISTS would need CREATE
    /// on the database even then) and applies pending migrations.
    async fn migrate(client: &mut Client, schema: &str) -> Result<Ledger, Error> {
        let q = quote_ident(schema);
        let ctx = |what: &str| format!("preparing the ledger in schema {schema} ({what})");
        let exists: bool = client
            .query_typed_one(
                "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)",
                &[(&schema, Type::TEXT)],
            )
            .await
            .map_err(|e| Error::database(ctx("schema"), e))?
            .get(0);
        // The privilege to create what is missing, named before the server refuses it.
        let creates = if exists {
            Privilege::on_schema("CREATE", schema)
        } else {
            Privilege {
                privilege: "CREATE",
                on: Object::Database,
            }
        };
        let lacking = privileges::lacking(client, &[creates]).await?;
        if !lacking.is_empty() {
            return Err(Error::MissingPrivileges {
                lacking: lacking.into_iter().map(|(_, line)| line).collect(),
                note: Some(missing_or_behind(schema)),
            });
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| Error::database(ctx("begin"), e))?;
        tx.execute_typed(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[(&schema, Type::TEXT)],
        )
        .await
        .map_err(|e| Error::database(ctx("lock"), e))?;
        // "already exists, skipping" notices are noise on every run but the first.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await
            .map_err(|e| Error::database(ctx("settings"), e))?;
        // Another run may have created it meanwhile.
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {q}"))
                .await
                .map_err(|e| Error::database(ctx("schema"), e))?;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {q}.migrations \
               (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(|e| Error::database(ctx("schema"), e))?;
        let applied: Vec<i32> = tx
            .query_typed(&format!("SELECT version FROM {q}.migrations"), &[])
            .await
            .map_err(|e| Error::database(ctx("versions"), e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
            tx.batch_execute(&sql.replace("{schema}", &q))
                .await
                .map_err(|e| Error::database(ctx(&format!("migration {version}")), e))?;
            tx.execute_typed(
                &format!("INSERT INTO {q}.migrations (version) VALUES ($1)"),
                &[(version, Type::INT4)],
            )
            .await
            .map_err(|e| Error::database(ctx("record migration"), e))?;
        }
        tx.commit()
            .await
            .map_err(|e| Error::database(ctx("commit"), e))?;
        Ok(Ledger { schema: q })
    }

    /// The ledger in `schema` if it is there and holds what a reader needs (version
    /// `READABLE_FROM` on), without creating or migrating anything.
    async fn existing(client: &Client, schema: &str) -> Result<Option<Ledger>, Error> {
        let version = Ledger::version(client, schema).await?;
        Ok((version >= Some(READABLE_FROM)).then(|| Ledger {
            schema: quote_ident(schema),
        }))
    }

    /// The version of the ledger in `schema`; `None` when there is none.
    async fn version(client: &Client, schema: &str) -> Result<Option<i32>, Error> {
        let q = quote_ident(schema);
        // From the catalog, which needs no privilege on the schema.
        let found: bool = client
            .query_typed_one(
                "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                                WHERE n.nspname = $1 AND c.relname = 'migrations')",
                &[(&schema, Type::TEXT)],
            )
            .await
            .map_err(|e| Error::database("looking for the ledger", e))?
            .get(0);
        if !found {
            return Ok(None);
        }
        let version: Option<i32> = client
            .query_typed_one(&format!("SELECT max(version) FROM {q}.migrations"), &[])
            .await
            .map_err(|e| Error::database("reading the ledger's version", e))?
            .get(0);
        Ok(version)
    }

    /// The ledger's schema, already quoted.
    pub fn quoted_schema(&self) -> &str {
        &self.schema
    }
}
