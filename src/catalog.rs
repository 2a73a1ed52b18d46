//! The target table as the catalog describes it: columns, types, defaults and unique keys,
//! read once before any data moves; whether the current role holds the privileges a run
//! needs, checked before any data moves too. Also the one place identifiers are quoted.
//!
//! Every statement here is one round trip on the unnamed statement (`query_typed`), outside
//! any transaction: safe behind a transaction-mode pooler, which may run each on a different
//! server connection.

use tokio_postgres::types::Type;

use crate::error::Error;
use crate::write::OnConflict;

/// Quotes an SQL identifier: `Acc "x"` becomes `"Acc ""x"""`. Every identifier that reaches
/// SQL text goes through here; values never do (they travel as parameters or COPY data).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes and joins a list of identifiers with `, `.
pub fn quote_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// `format_type` output, e.g. `character varying(64)`.
    pub type_name: String,
    /// `atttypmod`: for `varchar(n)` and `char(n)` it is n + 4; -1 when there is none.
    pub type_mod: i32,
    pub not_null: bool,
    /// A default, an identity or a generated expression supplies a value when none is given.
    pub has_default: bool,
    /// Generated columns cannot be written at all.
    pub generated: bool,
}

impl Column {
    pub fn required(&self) -> bool {
        self.not_null && !self.has_default
    }
}

/// A unique index usable as an `ON CONFLICT` target (no predicate, no expressions).
#[derive(Debug, Clone)]
pub struct UniqueKey {
    pub name: String,
    pub primary: bool,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// The primary key first, then unique indexes in creation order.
    pub unique_keys: Vec<UniqueKey>,
}

impl Table {
    /// `"schema"."name"`, safe to put in SQL text.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `schema.name` for messages.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Looks `name` up the way SQL would parse it (`accounts`, `app.accounts`,
/// `"Load Test"."Acc"`), honouring the search path. `Ok(None)` when there is no such table.
pub async fn describe(client: &tokio_postgres::Client, name: &str) -> Result<Option<Table>, Error> {
    let ctx = |what: &str| format!("reading the catalog for {name} ({what})");
    let found = client
        .query_typed_opt(
            // to_regclass raises when the role lacks USAGE on the named schema; such a name
            // is looked up in the catalog instead, so that the privilege check names the
            // missing USAGE with its GRANT.
            "SELECT c.oid, n.nspname, c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND c.oid = ( \
               SELECT CASE WHEN s.oid IS NOT NULL AND NOT has_schema_privilege(s.oid, 'USAGE') \
                        THEN (SELECT oid FROM pg_class WHERE relnamespace = s.oid AND relname = p[2]) \
                        ELSE to_regclass($1) END \
               FROM parse_ident($1) AS p \
               LEFT JOIN pg_namespace s ON cardinality(p) = 2 AND s.nspname = p[1])",
            &[(&name, Type::TEXT)],
        )
        .await;
    let row = match found {
        Ok(Some(row)) => row,
        Ok(None) => return Ok(None),
        // to_regclass raises on malformed names such as an unclosed quote.
        Err(e) if crate::retry::is_invalid_name(&e) => {
            return Err(Error::Usage(format!(
                "invalid table name {name:?}: {}",
                crate::error::describe_pg(&e)
            )));
        }
        Err(e) => return Err(Error::database(ctx("table"), e)),
    };
    let oid: u32 = row.get(0);
    let columns = client
        .query_typed(
            "SELECT attname::text, atttypid, format_type(atttypid, atttypmod), attnotnull, \
                    atthasdef OR attidentity <> '', attgenerated <> '', atttypmod \
             FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[(&oid, Type::OID)],
        )
        .await
        .map_err(|e| Error::database(ctx("columns"), e))?
        .into_iter()
        .map(|r| Column {
            name: r.get(0),
            type_oid: r.get(1),
            type_name: r.get(2),
            not_null: r.get(3),
            has_default: r.get(4),
            generated: r.get(5),
            type_mod: r.get(6),
        })
        .collect();
    let unique_keys = client
        .query_typed(
            "SELECT i.indexrelid::regclass::text, i.indisprimary, \
                    array(SELECT a.attname::text \
                          FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                          ORDER BY k.ord) \
             FROM pg_index i \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
             ORDER BY i.indisprimary DESC, i.indexrelid",
            &[(&oid, Type::OID)],
        )
        .await
        .map_err(|e| Error::database(ctx("unique keys"), e))?
        .into_iter()
        .map(|r| UniqueKey {
            name: r.get(0),
            primary: r.get(1),
            columns: r.get(2),
        })
        .collect();
    Ok(Some(Table {
        oid,
        schema: row.get(1),
        name: row.get(2),
        columns,
        unique_keys,
    }))
}

/// A foreign key that points at a table whose rows may be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub constraint: String,
    /// The referencing (child) table, quoted, and for messages.
    pub child_quoted: String,
    pub child: String,
    /// Its schema and name, unquoted.
    pub child_schema: String,
    pub child_name: String,
    pub child_oid: u32,
    pub child_columns: Vec<String>,
    /// The referenced (parent) table's oid and columns.
    pub parent_oid: u32,
    pub parent_columns: Vec<String>,
    /// `ON DELETE CASCADE`, `SET NULL` or `SET DEFAULT`: the server handles the child rows.
    /// `NO ACTION` and `RESTRICT` make a delete of a referenced row fail instead.
    pub handled_by_server: bool,
    pub on_delete: String,
    /// Some index on the child starts with the referencing columns; without one, every
    /// deleted parent row costs a scan of the child.
    pub indexed: bool,
    /// The planner's estimate of the child's rows.
    pub child_rows_estimate: i64,
    /// The reference through which the parent's rows are reached (`None`: the parent is the
    /// table being purged).
    pub via: Option<usize>,
}

impl Reference {
    /// Deleting a parent row deletes (CASCADE) or must first delete (NO ACTION, RESTRICT)
    /// the rows that reference it; SET NULL and SET DEFAULT keep them.
    pub fn removes_children(&self) -> bool {
        !matches!(self.on_delete.as_str(), "SET NULL" | "SET DEFAULT")
    }
}

/// Every foreign key that points at `table`, and at the tables whose rows deleting from it
/// would delete (cascade) or would have to delete first (`--cascade`). A reference comes
/// after the one it is reached through; each table is explored once, so cycles end.
pub async fn references(
    client: &tokio_postgres::Client,
    table: u32,
) -> Result<Vec<Reference>, Error> {
    let mut found: Vec<Reference> = Vec::new();
    let mut frontier: Vec<(u32, Option<usize>)> = vec![(table, None)];
    let mut seen = vec![table];
    while let Some((parent, via)) = frontier.pop() {
        let rows = client
            .query_typed(
                "SELECT con.conname::text, format('%I.%I', n.nspname, c.relname), \
                        n.nspname::text || '.' || c.relname::text, con.conrelid, \
                        array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) \
                              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o), \
                        array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) \
                              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o), \
                        con.confdeltype::text, \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = con.conrelid \
                                AND (i.indkey::int2[])[0:cardinality(con.conkey) - 1] @> con.conkey \
                                AND cardinality(con.conkey) <= i.indnkeyatts), \
                        greatest(c.reltuples, 0)::bigint, n.nspname::text, c.relname::text \
                 FROM pg_constraint con \
                 JOIN pg_class c ON c.oid = con.conrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE con.contype = 'f' AND con.confrelid = $1 \
                 ORDER BY con.conname",
                &[(&parent, Type::OID)],
            )
            .await
            .map_err(|e| Error::database("reading the foreign keys that reference the table", e))?;
        for r in rows {
            let action: String = r.get(6);
            let reference = Reference {
                constraint: r.get(0),
                child_quoted: r.get(1),
                child: r.get(2),
                child_schema: r.get(9),
                child_name: r.get(10),
                child_oid: r.get(3),
                child_columns: r.get(4),
                parent_oid: parent,
                parent_columns: r.get(5),
                handled_by_server: matches!(action.as_str(), "c" | "n" | "d"),
                on_delete: match action.as_str() {
                    "c" => "CASCADE",
                    "n" => "SET NULL",
                    "d" => "SET DEFAULT",
                    "r" => "RESTRICT",
                    _ => "NO ACTION",
                }
                .into(),
                indexed: r.get(7),
                child_rows_estimate: r.get(8),
                via,
            };
            // SET NULL and SET DEFAULT keep the child rows: nothing further down is touched.
            if reference.removes_children() && !seen.contains(&reference.child_oid) {
                seen.push(reference.child_oid);
                frontier.push((reference.child_oid, Some(found.len())));
            }
            found.push(reference);
        }
    }
    Ok(found)
}

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
const TEMPORARY: Privilege = Privilege {
    privilege: "TEMPORARY",
    on: Object::Database,
};

/// What seeding `columns` (CSV order) of `table` needs: USAGE on its schema and INSERT on
/// the columns; a staged merge (`skip`, `update`) also reads the table (SELECT) from a
/// temporary table, and `update` overwrites the columns outside the key (UPDATE).
pub fn seed_privileges(
    table: &Table,
    columns: &[String],
    mode: OnConflict,
    key: Option<&[String]>,
) -> Vec<Privilege> {
    let mut needs = vec![
        Privilege::on_schema("USAGE", &table.schema),
        Privilege::on_columns("INSERT", table, columns),
    ];
    if mode != OnConflict::Error {
        needs.push(Privilege::on_table("SELECT", table));
        needs.push(TEMPORARY);
    }
    if let (OnConflict::Update, Some(key)) = (mode, key) {
        let updated: Vec<String> = columns
            .iter()
            .filter(|c| !key.contains(c))
            .cloned()
            .collect();
        if !updated.is_empty() {
            needs.push(Privilege::on_columns("UPDATE", table, &updated));
        }
    }
    needs
}

/// What purging `table` needs: USAGE on its schema, SELECT (the keys are joined, pages and
/// predicates read), temporary tables (the keys) and, unless it is a dry run, DELETE.
pub fn purge_privileges(table: &Table, dry_run: bool) -> Vec<Privilege> {
    let mut needs = vec![
        Privilege::on_schema("USAGE", &table.schema),
        Privilege::on_table("SELECT", table),
        TEMPORARY,
    ];
    if !dry_run {
        needs.push(Privilege::on_table("DELETE", table));
    }
    needs
}

/// What `--cascade` needs on the referencing tables it deletes from first (none in a dry
/// run, which only counts the target's rows): USAGE, SELECT and DELETE, like the target.
pub fn cascade_privileges(children: &[Reference], dry_run: bool) -> Vec<Privilege> {
    if dry_run {
        return Vec::new();
    }
    let mut needs: Vec<Privilege> = Vec::new();
    for r in children.iter().filter(|r| r.removes_children()) {
        let table = Object::Table {
            schema: r.child_schema.clone(),
            name: r.child_name.clone(),
            columns: Vec::new(),
        };
        for (privilege, on) in [
            ("USAGE", Object::Schema(r.child_schema.clone())),
            ("SELECT", table.clone()),
            ("DELETE", table),
        ] {
            let need = Privilege { privilege, on };
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
    }
    needs
}

/// Refuses the run (a usage error, exit 2) when the current role lacks any of `needs`,
/// naming each missing privilege with the GRANT that gives it. Checked with the server's
/// `has_*_privilege` functions, so grants through role membership and superusers count.
pub async fn require(client: &tokio_postgres::Client, needs: &[Privilege]) -> Result<(), Error> {
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
    for need in needs {
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
                lacking.push(format!(
                    "role {role} is not a member of {r}: GRANT {} TO {grantee}",
                    quote_ident(r)
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
        lacking.push(format!(
            "role {role} lacks {p} on {object}{columns}: \
             GRANT {p}{grant_columns} ON {grant} TO {grantee}"
        ));
    }
    if lacking.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{}\nNothing was written or deleted.",
        lacking.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes_and_keeps_everything_else() {
        assert_eq!(quote_ident("accounts"), "\"accounts\"");
        assert_eq!(
            quote_ident("Acc \"x\"; drop table accounts;--"),
            "\"Acc \"\"x\"\"; drop table accounts;--\""
        );
        assert_eq!(quote_list(&["a", "B c"]), "\"a\", \"B c\"");
    }
}
