//! The target table as the catalog describes it: columns, types, defaults and unique keys,
//! read once before any data moves. Also the one place identifiers are quoted.

use crate::error::Error;

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
        .query_opt(
            "SELECT c.oid, n.nspname, c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
            &[&name],
        )
        .await;
    let row = match found {
        Ok(Some(row)) => row,
        Ok(None) => return Ok(None),
        // to_regclass raises on malformed names such as an unclosed quote.
        Err(e) if e.as_db_error().is_some() => {
            return Err(Error::Usage(format!(
                "invalid table name {name:?}: {}",
                crate::error::describe_pg(&e)
            )));
        }
        Err(e) => return Err(Error::database(ctx("table"), e)),
    };
    let oid: u32 = row.get(0);
    let columns = client
        .query(
            "SELECT attname::text, atttypid, format_type(atttypid, atttypmod), attnotnull, \
                    atthasdef OR attidentity <> '', attgenerated <> '' \
             FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[&oid],
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
        })
        .collect();
    let unique_keys = client
        .query(
            "SELECT i.indexrelid::regclass::text, i.indisprimary, \
                    array(SELECT a.attname::text \
                          FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                          ORDER BY k.ord) \
             FROM pg_index i \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
             ORDER BY i.indisprimary DESC, i.indexrelid",
            &[&oid],
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
        schema: row.get(1),
        name: row.get(2),
        columns,
        unique_keys,
    }))
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
