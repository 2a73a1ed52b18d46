//! What `generate --table` reads of a table beyond [`describe`](super::catalog::describe):
//! each column's type down to its base (an enum's labels, a domain's base and CHECKs, an
//! array's element), defaults, CHECK constraints, foreign keys (those declared on its
//! partitions too) and partition bounds; and what is already there: its rows, the largest
//! value of an integer column, a sample of a referenced table's keys.
//!
//! Constraint and bound texts are the server's own deparsing (`pg_get_constraintdef`,
//! `pg_get_expr`), so their spelling is regular; understanding them is the caller's job.

use std::future::Future;
use std::pin::Pin;

use tokio_postgres::types::Type;

use crate::db::catalog::{Table, quote_ident, quote_list};
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct TypeShape {
    /// `pg_type.typname` of this level (`int4`, `varchar`, `_text`, the domain's name).
    pub name: String,
    /// `typcategory`: `S` string, `N` numeric, `D` date/time, … for types not known by name.
    pub category: char,
    /// The length or precision modifier (`atttypmod`, or a domain's `typtypmod`); -1: none.
    pub type_mod: i32,
    pub kind: TypeKind,
}

#[derive(Debug, Clone)]
pub enum TypeKind {
    Base,
    Enum(Vec<String>),
    /// A domain's CHECK constraints are written with `VALUE` for the value.
    Domain {
        base: Box<TypeShape>,
        checks: Vec<Check>,
        not_null: bool,
    },
    Array(Box<TypeShape>),
    /// A composite, range or pseudo type.
    Other,
}

impl TypeShape {
    /// Below any domains: the type the value is written as.
    pub fn base(&self) -> &TypeShape {
        match &self.kind {
            TypeKind::Domain { base, .. } => base.base(),
            _ => self,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ColumnShape {
    pub name: String,
    pub ty: TypeShape,
    pub not_null: bool,
    /// The default's expression as the server prints it (`nextval(…)`, `'user'::text`).
    pub default: Option<String>,
    pub identity: bool,
    pub generated: bool,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    /// `CHECK ((age >= 18))`, as `pg_get_constraintdef` prints it.
    pub definition: String,
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub parent_oid: u32,
    /// `schema.name`, for messages, and quoted for SQL.
    pub parent: String,
    pub parent_quoted: String,
    pub parent_columns: Vec<String>,
    /// The planner's estimate of the parent's rows (-1: never analyzed).
    pub parent_rows_estimate: f64,
}

#[derive(Debug, Clone)]
pub struct Partitioning {
    /// `RANGE (created_at)`, `LIST (country)`, `HASH (id)`.
    pub key: String,
    /// Each partition's bound: `FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`,
    /// `FOR VALUES IN ('US', 'CA')`, `DEFAULT`, …
    pub bounds: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Shape {
    pub columns: Vec<ColumnShape>,
    pub checks: Vec<Check>,
    /// Declared on the table or on any of its partitions, each once.
    pub foreign_keys: Vec<ForeignKey>,
    pub partitioning: Option<Partitioning>,
}

/// Reads `table`'s shape.
pub async fn read(client: &tokio_postgres::Client, table: &Table) -> Result<Shape, Error> {
    let ctx = |what: &str| format!("reading the catalog for {} ({what})", table.display());
    let rows = client
        .query_typed(
            "SELECT a.attname::text, a.atttypid, a.atttypmod, a.attnotnull, \
                    pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', a.attgenerated <> '' \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[(&table.oid, Type::OID)],
        )
        .await
        .map_err(|e| Error::database(ctx("columns"), e))?;
    let mut columns = Vec::with_capacity(rows.len());
    for r in rows {
        let generated: bool = r.get(6);
        columns.push(ColumnShape {
            name: r.get(0),
            ty: type_shape(client, r.get(1), r.get(2)).await?,
            not_null: r.get(3),
            default: if generated { None } else { r.get(4) },
            identity: r.get(5),
            generated,
        });
    }
    let checks = client
        .query_typed(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = $1 AND contype = 'c' ORDER BY conname",
            &[(&table.oid, Type::OID)],
        )
        .await
        .map_err(|e| Error::database(ctx("CHECK constraints"), e))?
        .into_iter()
        .map(|r| Check {
            name: r.get(0),
            definition: r.get(1),
        })
        .collect();
    let oids: Vec<u32> = std::iter::once(table.oid)
        .chain(table.leaves.iter().map(|l| l.oid))
        .collect();
    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    let found = client
        .query_typed(
            "SELECT con.conname::text, \
                    array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) \
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o), \
                    con.confrelid, n.nspname::text || '.' || c.relname::text, \
                    format('%I.%I', n.nspname, c.relname), \
                    array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) \
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o), \
                    c.reltuples::float8 \
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.confrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE con.contype = 'f' AND con.conrelid = ANY($1) \
             ORDER BY con.conrelid <> $2, con.conname",
            &[(&oids, Type::OID_ARRAY), (&table.oid, Type::OID)],
        )
        .await
        .map_err(|e| Error::database(ctx("foreign keys"), e))?;
    for r in found {
        let fk = ForeignKey {
            name: r.get(0),
            columns: r.get(1),
            parent_oid: r.get(2),
            parent: r.get(3),
            parent_quoted: r.get(4),
            parent_columns: r.get(5),
            parent_rows_estimate: r.get(6),
        };
        // A partition's copy of the parent table's key is the same key.
        if !foreign_keys
            .iter()
            .any(|f| f.columns == fk.columns && f.parent_oid == fk.parent_oid)
        {
            foreign_keys.push(fk);
        }
    }
    let partitioning = if table.partitioned {
        let r = client
            .query_typed_one(
                "SELECT pg_get_partkeydef($1), \
                        array(SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
                              JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1 \
                              ORDER BY c.relname)",
                &[(&table.oid, Type::OID)],
            )
            .await
            .map_err(|e| Error::database(ctx("partitions"), e))?;
        Some(Partitioning {
            key: r.get(0),
            bounds: r.get(1),
        })
    } else {
        None
    };
    Ok(Shape {
        columns,
        checks,
        foreign_keys,
        partitioning,
    })
}

type Shaped<'a> = Pin<Box<dyn Future<Output = Result<TypeShape, Error>> + Send + 'a>>;

/// The type `oid` with modifier `type_mod`, down to its base.
fn type_shape(client: &tokio_postgres::Client, oid: u32, type_mod: i32) -> Shaped<'_> {
    Box::pin(async move {
        let r = client
            .query_typed_one(
                "SELECT t.typname::text, t.typcategory::text, t.typtype::text, t.typbasetype, \
                        t.typtypmod, t.typelem, t.typnotnull, \
                        array(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = t.oid \
                              ORDER BY enumsortorder), \
                        array(SELECT conname::text FROM pg_constraint \
                              WHERE contypid = t.oid AND contype = 'c' ORDER BY conname), \
                        array(SELECT pg_get_constraintdef(oid) FROM pg_constraint \
                              WHERE contypid = t.oid AND contype = 'c' ORDER BY conname) \
                 FROM pg_type t WHERE t.oid = $1",
                &[(&oid, Type::OID)],
            )
            .await
            .map_err(|e| Error::database(format!("reading the catalog for type {oid}"), e))?;
        let category = r.get::<_, String>(1).chars().next().unwrap_or('U');
        let kind = match (r.get::<_, &str>(2), category) {
            ("e", _) => TypeKind::Enum(r.get(7)),
            ("d", _) => {
                let names: Vec<String> = r.get(8);
                let definitions: Vec<String> = r.get(9);
                TypeKind::Domain {
                    base: Box::new(type_shape(client, r.get(3), r.get(4)).await?),
                    checks: names
                        .into_iter()
                        .zip(definitions)
                        .map(|(name, definition)| Check { name, definition })
                        .collect(),
                    not_null: r.get(6),
                }
            }
            ("b", 'A') => TypeKind::Array(Box::new(type_shape(client, r.get(5), type_mod).await?)),
            ("b", _) => TypeKind::Base,
            _ => TypeKind::Other,
        };
        Ok(TypeShape {
            name: r.get(0),
            category,
            type_mod,
            kind,
        })
    })
}

/// Rows already in `table` (counted).
pub async fn row_count(client: &tokio_postgres::Client, table: &Table) -> Result<i64, Error> {
    let r = client
        .query_typed_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
        .await
        .map_err(|e| Error::database(format!("counting the rows of {}", table.display()), e))?;
    Ok(r.get(0))
}

/// The largest value of integer column `column` of `table`, 0 when it has none.
pub async fn max_of(
    client: &tokio_postgres::Client,
    table: &Table,
    column: &str,
) -> Result<i64, Error> {
    let r = client
        .query_typed_one(
            &format!(
                "SELECT coalesce(max({})::int8, 0) FROM {}",
                quote_ident(column),
                table.quoted()
            ),
            &[],
        )
        .await
        .map_err(|e| {
            Error::database(
                format!("reading the largest {column} of {}", table.display()),
                e,
            )
        })?;
    Ok(r.get(0))
}

/// Up to `limit` keys of `fk`'s parent as text, in key order: a repeatable sample (`seed`) of
/// about twice as many rows as needed, so that a big parent is not read whole into memory.
pub async fn sample_keys(
    client: &tokio_postgres::Client,
    fk: &ForeignKey,
    limit: u32,
    seed: u64,
) -> Result<Vec<Vec<String>>, Error> {
    let percent = if fk.parent_rows_estimate > 0.0 {
        (200.0 * f64::from(limit) / fk.parent_rows_estimate).min(100.0)
    } else {
        100.0
    };
    let cols = quote_list(&fk.parent_columns);
    let texts: Vec<String> = fk
        .parent_columns
        .iter()
        .map(|c| format!("{}::text", quote_ident(c)))
        .collect();
    let not_null: Vec<String> = fk
        .parent_columns
        .iter()
        .map(|c| format!("{} IS NOT NULL", quote_ident(c)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} TABLESAMPLE BERNOULLI ($1) REPEATABLE ($2) WHERE {} ORDER BY {cols} \
         LIMIT $3",
        texts.join(", "),
        fk.parent_quoted,
        not_null.join(" AND ")
    );
    // REPEATABLE takes a float8; the seed's low 52 bits keep it exact.
    let repeat = (seed & ((1 << 52) - 1)) as f64;
    let rows = client
        .query_typed(
            &sql,
            &[
                (&(percent as f32), Type::FLOAT4),
                (&repeat, Type::FLOAT8),
                (&i64::from(limit), Type::INT8),
            ],
        )
        .await
        .map_err(|e| Error::database(format!("sampling the keys of {}", fk.parent), e))?;
    Ok(rows
        .into_iter()
        .map(|r| (0..fk.parent_columns.len()).map(|i| r.get(i)).collect())
        .collect())
}
