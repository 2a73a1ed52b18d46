//! Privileges: what a run needs, checked against the server before any data moves, all in
//! one round trip, so that a role missing several grants hears of all of them at once, each
//! with the GRANT that gives it.

use tokio_postgres::types::Type;

use crate::db::catalog::{Table, quote_ident, quote_list};
use crate::error::Error;

/// What a privilege is held on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// The current database.
    Database,
    /// The first schema of the search path (where an unqualified CREATE TABLE goes).
    CurrentSchema,
    Schema(String),
    /// Membership in a role whose privileges the run needs (e.g. `pg_read_all_stats`).
    Role(String),
    /// A table; with `columns`, a grant on just those columns is enough.
    Table {
        schema: String,
        name: String,
        columns: Vec<String>,
    },
}

/// A privilege a run needs, e.g. `INSERT` on `public.accounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privilege {
    pub privilege: &'static str,
    pub on: Object,
}

impl Privilege {
    pub fn on_table(privilege: &'static str, table: &Table) -> Self {
        Privilege::on_columns(privilege, table, &[])
    }

    pub fn on_columns(privilege: &'static str, table: &Table, columns: &[String]) -> Self {
        Privilege {
            privilege,
            on: Object::Table {
                schema: table.schema.clone(),
                name: table.name.clone(),
                columns: columns.to_vec(),
            },
        }
    }

    pub fn on_schema(privilege: &'static str, schema: &str) -> Self {
        Privilege {
            privilege,
            on: Object::Schema(schema.to_string()),
        }
    }
}

/// Temporary tables (the staged rows, the purge's keys); PUBLIC holds it by default.
pub const TEMPORARY: Privilege = Privilege {
    privilege: "TEMPORARY",
    on: Object::Database,
};

/// Refuses the run (exit 2) when the current role lacks any of `needs`, naming each missing
/// privilege with the GRANT that gives it.
pub async fn require(client: &tokio_postgres::Client, needs: &[Privilege]) -> Result<(), Error> {
    let lacking = lacking(client, needs).await?;
    if lacking.is_empty() {
        return Ok(());
    }
    Err(Error::MissingPrivileges {
        lacking: lacking.into_iter().map(|(_, line)| line).collect(),
        note: None,
    })
}

/// The privileges of `needs` the current role lacks, in order, each as its position in
/// `needs` and a line naming it with the GRANT that gives it. Checked with the server's
/// `has_*_privilege` functions in one query, so grants through role membership and
/// superusers count.
pub async fn lacking(
    client: &tokio_postgres::Client,
    needs: &[Privilege],
) -> Result<Vec<(usize, String)>, Error> {
    // One row per check: table-level, or one per column where a column grant is enough.
    // Columns of the rows: kind, schema, table, column, privilege.
    let mut cols: [Vec<Option<&str>>; 5] = Default::default();
    fn push<'a>(cols: &mut [Vec<Option<&'a str>>; 5], row: [Option<&'a str>; 5]) {
        for (col, value) in cols.iter_mut().zip(row) {
            col.push(value);
        }
    }
    for need in needs {
        let p = Some(need.privilege);
        match &need.on {
            Object::Database => push(&mut cols, [Some("database"), None, None, None, p]),
            Object::CurrentSchema => push(&mut cols, [Some("current schema"), None, None, None, p]),
            Object::Schema(s) => push(&mut cols, [Some("schema"), Some(s), None, None, p]),
            Object::Role(r) => push(&mut cols, [Some("role"), Some(r), None, None, p]),
            Object::Table {
                schema,
                name,
                columns,
            } if columns.is_empty() => push(
                &mut cols,
                [Some("table"), Some(schema), Some(name), None, p],
            ),
            Object::Table {
                schema,
                name,
                columns,
            } => {
                for c in columns {
                    push(
                        &mut cols,
                        [Some("column"), Some(schema), Some(name), Some(c), p],
                    );
                }
            }
        }
    }
    let [kinds, schemas, tables, columns, privileges] = cols;
    let row = client
        .query_typed_one(
            "SELECT current_user::text, current_database()::text, current_schema()::text, \
                    array_agg(coalesce(CASE x.k \
                      WHEN 'database' THEN has_database_privilege(current_database(), x.p) \
                      WHEN 'current schema' THEN has_schema_privilege(current_schema(), x.p) \
                      WHEN 'schema' THEN has_schema_privilege(n.oid, x.p) \
                      WHEN 'role' THEN pg_has_role(x.s, x.p) \
                      WHEN 'table' THEN has_table_privilege(r.oid, x.p) \
                      ELSE has_column_privilege(r.oid, x.c, x.p) END, false) ORDER BY x.i) \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                    WITH ORDINALITY AS x(k, s, t, c, p, i) \
             LEFT JOIN pg_namespace n ON n.nspname = x.s \
             LEFT JOIN pg_class r ON r.relnamespace = n.oid AND r.relname = x.t",
            &[
                (&kinds, Type::TEXT_ARRAY),
                (&schemas, Type::TEXT_ARRAY),
                (&tables, Type::TEXT_ARRAY),
                (&columns, Type::TEXT_ARRAY),
                (&privileges, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|e| Error::database("checking the role's privileges", e))?;
    let (role, database, current_schema): (String, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    let held: Vec<bool> = row.get::<_, Option<Vec<bool>>>(3).unwrap_or_default();
    let grantee = quote_ident(&role);
    let mut lacking = Vec::new();
    let mut at = 0;
    for (i, need) in needs.iter().enumerate() {
        let p = need.privilege;
        // A table need with columns held one row per column: it fails where any did.
        let checked: &[String] = match &need.on {
            Object::Table { columns, .. } => columns,
            _ => &[],
        };
        let n = checked.len().max(1);
        let failed: Vec<usize> = (0..n)
            .filter(|j| !held.get(at + j).copied().unwrap_or(false))
            .collect();
        at += n;
        if failed.is_empty() {
            continue;
        }
        let (object, grant) = match &need.on {
            Object::Role(r) => {
                lacking.push((
                    i,
                    format!(
                        "role {role} is not a member of {r}: GRANT {} TO {grantee}",
                        quote_ident(r)
                    ),
                ));
                continue;
            }
            Object::Database => (
                format!("database {database}"),
                format!("DATABASE {}", quote_ident(&database)),
            ),
            Object::CurrentSchema => {
                let schema = current_schema
                    .as_deref()
                    .unwrap_or("(none: empty search_path)");
                (
                    format!("schema {schema}"),
                    format!("SCHEMA {}", quote_ident(schema)),
                )
            }
            Object::Schema(s) => (format!("schema {s}"), format!("SCHEMA {}", quote_ident(s))),
            Object::Table { schema, name, .. } => (
                format!("table {schema}.{name}"),
                format!("{}.{}", quote_ident(schema), quote_ident(name)),
            ),
        };
        // Some of the columns held: name the others, quoted (a name may hold ", "), and
        // grant just those.
        let (columns, grant_columns) = if failed.len() < checked.len() {
            let names: Vec<&str> = failed.iter().map(|&j| checked[j].as_str()).collect();
            let quoted = quote_list(&names);
            (format!(" (columns {quoted})"), format!(" ({quoted})"))
        } else {
            (String::new(), String::new())
        };
        lacking.push((
            i,
            format!(
                "role {role} lacks {p} on {object}{columns}: \
                 GRANT {p}{grant_columns} ON {grant} TO {grantee}"
            ),
        ));
    }
    Ok(lacking)
}
