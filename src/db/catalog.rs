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

/// A unique index on plain columns (no predicate, no expressions).
#[derive(Debug, Clone)]
pub struct UniqueKey {
    pub columns: Vec<String>,
    /// The index's name, for messages.
    pub index: String,
    /// `indisvalid`: an index whose `CREATE … CONCURRENTLY` failed is left invalid. It does
    /// not vouch for the rows already there, and `ON CONFLICT` cannot use it.
    pub valid: bool,
    /// Its constraint is `DEFERRABLE`, which `ON CONFLICT` cannot use.
    pub deferrable: bool,
}

impl UniqueKey {
    /// The same columns as `columns`, in any order.
    pub fn is(&self, columns: &[String]) -> bool {
        self.columns.len() == columns.len() && columns.iter().all(|c| self.columns.contains(c))
    }

    /// `Err` says why the key cannot be relied on: its index is not valid.
    pub fn check_valid(&self) -> Result<(), String> {
        if self.valid {
            return Ok(());
        }
        Err(format!(
            "the unique index {} on ({}) is not valid (a failed CREATE INDEX CONCURRENTLY \
             leaves it so; REINDEX it or drop it): it does not vouch for the rows already there",
            self.index,
            self.columns.join(", ")
        ))
    }
}

/// A relation that holds rows of a table: the table itself, a partition or an inheritance
/// child, at any depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// A foreign table: its rows are elsewhere, it has no pages.
    pub foreign: bool,
}

impl Leaf {
    /// `"schema"."name"`, safe to put in SQL text.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `schema.name` for messages.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// The primary key first, then unique indexes in creation order.
    pub unique_keys: Vec<UniqueKey>,
    /// A partitioned table: its rows are in its partitions, and its unique keys (which hold
    /// the partition key) span them.
    pub partitioned: bool,
    /// The relations holding its rows, the table itself first unless it is partitioned:
    /// every partition and inheritance child that has rows, at any depth.
    pub leaves: Vec<Leaf>,
    /// An enabled `BEFORE INSERT … FOR EACH ROW` trigger on it or below it, which may skip
    /// or change the rows a COPY sends.
    pub insert_triggers: bool,
    /// Its deferrable unique, primary key and exclusion constraints: `ON CONFLICT` without
    /// a target refuses to run where there is one.
    pub deferrable: Vec<String>,
}

/// What a name given as the target table turned out to be.
pub enum Relation {
    Table(Table),
    /// Another kind of relation: `a view`, `a sequence`, …
    Other(&'static str),
    Missing,
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

    /// An inheritance parent with children: a DELETE on it also deletes from them, and its
    /// unique indexes do not cover them, so a key of it may name a row in each.
    pub fn inherited(&self) -> bool {
        !self.partitioned && self.leaves.len() > 1
    }

    /// Whether `key` names at most one row of everything a DELETE on the table reaches: a
    /// valid unique index on exactly those columns of a table without inheritance children.
    /// `Err` says why not.
    pub fn identifies(&self, key: &[String]) -> Result<(), String> {
        if self.inherited() {
            return Err(format!(
                "{} has inheritance children, which its unique indexes do not cover: one key \
                 could name a row in each of them",
                self.display()
            ));
        }
        match self.unique_keys.iter().find(|u| u.is(key)) {
            None => Err(format!(
                "{} has no primary key or unique index on exactly ({})",
                self.display(),
                key.join(", ")
            )),
            Some(u) => u.check_valid(),
        }
    }

    /// The key a seed records for the rows it inserts, for `purge --run`: the primary key,
    /// else the first valid unique key whose columns are all NOT NULL, that `columns` all
    /// hold. A row with a NULL key could not be found again, so a nullable key is never
    /// recorded. `Err` says why there is none.
    pub fn recordable_key(&self, columns: &[String]) -> Result<&UniqueKey, String> {
        let covered: Vec<&UniqueKey> = self
            .unique_keys
            .iter()
            .filter(|u| u.columns.iter().all(|c| columns.contains(c)))
            .collect();
        let not_null = |u: &&UniqueKey| {
            u.columns
                .iter()
                .all(|c| self.column(c).is_some_and(|c| c.not_null))
        };
        if let Some(key) = covered.iter().find(|u| u.valid && not_null(u)) {
            return Ok(key);
        }
        if covered.is_empty() {
            return Err(format!(
                "the CSV covers no primary key or unique index of {}",
                self.display()
            ));
        }
        let why: Vec<String> = covered
            .iter()
            .map(|u| {
                u.check_valid().err().unwrap_or_else(|| {
                    format!(
                        "({}) allows NULL, and a row with a NULL key could not be found again",
                        u.columns.join(", ")
                    )
                })
            })
            .collect();
        Err(format!(
            "no unique key of {} that the CSV covers will do: {}",
            self.display(),
            why.join("; ")
        ))
    }
}

/// Looks `name` up the way SQL would parse it (`accounts`, `app.accounts`,
/// `"Load Test"."Acc"`), honouring the search path.
pub async fn describe(client: &tokio_postgres::Client, name: &str) -> Result<Relation, Error> {
    let ctx = |what: &str| format!("reading the catalog for {name} ({what})");
    let found = client
        .query_typed_opt(
            // to_regclass raises when the role lacks USAGE on the named schema; such a name
            // is looked up in the catalog instead, so that the privilege check names the
            // missing USAGE with its GRANT.
            "SELECT c.oid, n.nspname, c.relname, c.relkind::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = ( \
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
        Ok(None) => return Ok(Relation::Missing),
        // to_regclass raises on malformed names such as an unclosed quote.
        Err(e) if is_invalid_name(&e) => {
            return Err(Error::Usage(format!(
                "invalid table name {name:?}: {}",
                describe_pg(&e)
            )));
        }
        Err(e) => return Err(Error::database(ctx("table"), e)),
    };
    let partitioned = match row.get::<_, &str>(3) {
        "r" => false,
        "p" => true,
        "v" => return Ok(Relation::Other("a view")),
        "m" => return Ok(Relation::Other("a materialized view")),
        "f" => return Ok(Relation::Other("a foreign table")),
        "S" => return Ok(Relation::Other("a sequence")),
        "i" | "I" => return Ok(Relation::Other("an index")),
        "c" => return Ok(Relation::Other("a composite type")),
        _ => return Ok(Relation::Other("not a table")),
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
                          ORDER BY k.ord), \
                    i.indexrelid::regclass::text, i.indisvalid, \
                    coalesce((SELECT con.condeferrable FROM pg_constraint con \
                              WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid \
                                AND con.contype IN ('p', 'u')), false) \
             FROM pg_index i \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
             ORDER BY i.indisprimary DESC, i.indexrelid",
            &[(&oid, Type::OID)],
        )
        .await
        .map_err(|e| Error::database(ctx("unique keys"), e))?
        .into_iter()
        .map(|r| UniqueKey {
            columns: r.get(0),
            index: r.get(1),
            valid: r.get(2),
            deferrable: r.get(3),
        })
        .collect();
    // Partitions and inheritance children alike are in pg_inherits.
    let tree = "WITH RECURSIVE tree(oid) AS (SELECT $1::oid UNION \
                  SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)";
    let leaves = client
        .query_typed(
            &format!(
                "{tree} SELECT c.oid, n.nspname::text, c.relname::text, c.relkind = 'f' \
                 FROM tree JOIN pg_class c ON c.oid = tree.oid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind <> 'p' ORDER BY c.oid <> $1, n.nspname, c.relname"
            ),
            &[(&oid, Type::OID)],
        )
        .await
        .map_err(|e| Error::database(ctx("partitions and children"), e))?
        .into_iter()
        .map(|r| Leaf {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            foreign: r.get(3),
        })
        .collect();
    // tgtype bits: 1 row, 2 before, 4 insert. A trigger disabled ('D') never fires; any
    // other may, depending on session_replication_role.
    let more = client
        .query_typed_one(
            &format!(
                "{tree} SELECT EXISTS (SELECT FROM pg_trigger t JOIN tree ON t.tgrelid = tree.oid \
                                      WHERE t.tgtype & 7 = 7 AND t.tgenabled <> 'D'), \
                        array(SELECT conname::text FROM pg_constraint \
                              WHERE conrelid = $1 AND condeferrable AND contype IN ('p', 'u', 'x') \
                              ORDER BY conname)"
            ),
            &[(&oid, Type::OID)],
        )
        .await
        .map_err(|e| Error::database(ctx("triggers and constraints"), e))?;
    Ok(Relation::Table(Table {
        oid,
        schema: row.get(1),
        name: row.get(2),
        columns,
        unique_keys,
        partitioned,
        leaves,
        insert_triggers: more.get(0),
        deferrable: more.get(1),
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
