//! The target table as the catalog describes it: columns, types, defaults, unique keys and
//! the foreign keys that reference it, read once before any data moves. Also the one place
//! identifiers are quoted.
//!
//! Every statement here is one round trip on the unnamed statement (`query_typed`), outside
//! any transaction: safe behind a transaction-mode pooler, which may run each on a different
//! server connection.

use tokio_postgres::types::Type;

use crate::db::retry::is_invalid_name;
use crate::error::{Error, describe_pg};

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
        Err(e) if is_invalid_name(&e) => {
            return Err(Error::Usage(format!(
                "invalid table name {name:?}: {}",
                describe_pg(&e)
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
            "SELECT array(SELECT a.attname::text \
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
        .map(|r| UniqueKey { columns: r.get(0) })
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
