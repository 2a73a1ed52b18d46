//! Deleting: each purge batch is one short transaction on a pooled connection. Its statements
//! run on the unnamed statement, one round trip each (the keys' COPY on a statement closed
//! before the commit), so nothing outlives the transaction. Its keys go
//! into a temporary table (`ON COMMIT DROP`), rows that reference them are deleted first
//! when `--cascade` asks, then the target's rows. `SET LOCAL lock_timeout` bounds every wait
//! on the application's locks; a lock timeout is retried like any transient failure.
//!
//! Invariants: nothing is deleted that the selector does not name (keys are matched by
//! equality on a unique key, pages by the predicate); a batch commits at most once (its
//! ledger row is claimed first, as for seeding); a dry run counts and rolls back.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio_postgres::types::{ToSql, Type};

use crate::copy::batch::Batch;
use crate::copy::stream::CopyStatements;
use crate::db::catalog::{Reference, Table, quote_ident, quote_list};
use crate::db::ledger::BatchId;
use crate::error::Error;
use crate::model::Outcome;
use crate::run::{Sink, Transactions, Unit, Worked, Written};

/// A statement parameter.
type PgParam = dyn ToSql + Sync;

/// One purge batch.
#[derive(Debug)]
pub enum PurgeUnit {
    /// Keys read from a CSV file, as a COPY payload of the key columns.
    Keys(Batch),
    /// The keys batch `seed_seq` of a seed run (or of an input of a run of many inputs)
    /// recorded in the ledger; `seq` numbers it in the purge (see `recorded_units`).
    Recorded {
        seq: u64,
        seed_run: i64,
        seed_seq: u64,
        keys: u64,
    },
    /// A range of pages `[first, end)` of the relation `relation`, the table's `leaf`-th
    /// ([`Table::leaves`]), deleted where the predicate holds; `rows` is the planner's
    /// estimate of the rows the pages hold.
    Pages {
        seq: u64,
        leaf: usize,
        relation: String,
        first: u64,
        end: u64,
        rows: u64,
    },
}

impl From<Batch> for PurgeUnit {
    fn from(batch: Batch) -> Self {
        PurgeUnit::Keys(batch)
    }
}

impl Unit for PurgeUnit {
    fn id(&self) -> BatchId {
        match self {
            PurgeUnit::Keys(b) => b.id(),
            PurgeUnit::Recorded { seq, .. } => BatchId {
                seq: *seq,
                first_line: *seq,
                last_line: *seq,
                rows: 0,
                content_hash: 0,
            },
            PurgeUnit::Pages {
                seq, first, end, ..
            } => BatchId {
                seq: *seq,
                first_line: *first,
                last_line: end - 1,
                rows: 0,
                content_hash: 0,
            },
        }
    }

    fn rows(&self) -> u64 {
        match self {
            PurgeUnit::Keys(b) => b.rows(),
            PurgeUnit::Recorded { keys, .. } => *keys,
            PurgeUnit::Pages { rows, .. } => *rows,
        }
    }

    fn span(&self) -> String {
        match self {
            PurgeUnit::Keys(b) => b.span(),
            PurgeUnit::Recorded {
                seed_run, seed_seq, ..
            } => {
                format!("keys of run {seed_run} batch {seed_seq}")
            }
            PurgeUnit::Pages {
                relation,
                first,
                end,
                ..
            } => format!("pages {first}-{} of {relation}", end - 1),
        }
    }

    fn error(&self, source: tokio_postgres::Error) -> Error {
        match self {
            PurgeUnit::Keys(b) => b.error(source),
            other => Error::database(format!("batch {} ({})", other.seq(), other.span()), source),
        }
    }
}

const KEYS: &str = "provisioner_keys";

/// What the purge deletes by.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Keys from a CSV file, in these columns of the target.
    File,
    /// The keys a seed run recorded (`ledger` is the quoted ledger schema).
    Run { ledger: String },
    /// Rows where this trusted SQL predicate holds.
    Where { predicate: String },
}

/// The SQL a deleter runs, built once per run.
#[derive(Debug, Clone)]
pub struct DeletePlan {
    create_keys: String,
    copy: CopyStatements,
    /// Params: seed run, seed batch.
    fill_recorded: String,
    /// For `--where`, the statements on each relation of the table ([`Table::leaves`]).
    pages: Vec<PageStatements>,
    /// Rows that reference the doomed rows, deepest first (`--cascade`).
    children: Vec<String>,
    delete: String,
    count: String,
}

impl DeletePlan {
    /// `key` columns identify rows (for `Where`, a unique key used only when child rows
    /// must go first); `children` are the references to delete through (empty unless
    /// `--cascade` found blocking ones).
    pub fn new(table: &Table, key: &[String], selector: &Selector, children: &[Reference]) -> Self {
        let target = table.quoted();
        let cols = quote_list(key);
        let join = |a: &str, b: &str, ac: &[String], bc: &[String]| -> String {
            ac.iter()
                .zip(bc)
                .map(|(x, y)| format!("{a}.{} = {b}.{}", quote_ident(x), quote_ident(y)))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let on_keys = join("t", "k", key, key);
        let fill_recorded = match selector {
            Selector::Run { ledger } => {
                let casts: Vec<String> = key
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let ty = &table.column(c).expect("key columns exist").type_name;
                        format!("k.v{i}::{ty}")
                    })
                    .collect();
                let unnest: Vec<String> = (0..key.len())
                    .map(|i| format!("jsonb_array_elements_text(ik.keys->{i})"))
                    .collect();
                let names: Vec<String> = (0..key.len()).map(|i| format!("v{i}")).collect();
                format!(
                    "INSERT INTO {KEYS} ({cols}) SELECT {} FROM {ledger}.inserted_keys ik \
                     CROSS JOIN LATERAL ROWS FROM ({}) AS k({}) \
                     WHERE ik.run_id = $1 AND ik.seq = $2",
                    casts.join(", "),
                    unnest.join(", "),
                    names.join(", ")
                )
            }
            _ => String::new(),
        };
        let in_range = "ctid >= $1::text::tid AND ctid < $2::text::tid";
        let pages = match selector {
            Selector::Where { predicate } => table
                .leaves
                .iter()
                .map(|leaf| {
                    // The relation alone (its pages are not its children's), under the
                    // table's name where it is another, so the predicate reads as written.
                    let from = if leaf.oid == table.oid {
                        format!("ONLY {target}")
                    } else {
                        format!("ONLY {} AS {}", leaf.quoted(), quote_ident(&table.name))
                    };
                    let rows = format!("FROM {from} WHERE {in_range} AND ({predicate})");
                    PageStatements {
                        fill: format!("INSERT INTO {KEYS} ({cols}) SELECT {cols} {rows}"),
                        delete: children.is_empty().then(|| format!("DELETE {rows}")),
                        count: format!("SELECT count(*) {rows}"),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        // Each child's doomed rows are those that reference its parent's doomed rows.
        let doomed = |via: Option<usize>| -> String {
            let mut chain = Vec::new();
            let mut at = via;
            while let Some(i) = at {
                chain.push(&children[i]);
                at = children[i].via;
            }
            let mut rows = format!("SELECT t.* FROM {target} t JOIN {KEYS} k ON {on_keys}");
            for r in chain.iter().rev() {
                rows = format!(
                    "SELECT c.* FROM {} c JOIN ({rows}) p ON {}",
                    r.child_quoted,
                    join("c", "p", &r.child_columns, &r.parent_columns)
                );
            }
            rows
        };
        // SET NULL and SET DEFAULT references keep their rows: the server updates them.
        let child_deletes = children
            .iter()
            .rev()
            .filter(|r| r.removes_children())
            .map(|r| {
                format!(
                    "DELETE FROM {} c USING ({}) p WHERE {}",
                    r.child_quoted,
                    doomed(r.via),
                    join("c", "p", &r.child_columns, &r.parent_columns)
                )
            })
            .collect();
        DeletePlan {
            create_keys: format!(
                "CREATE TEMP TABLE {KEYS} ON COMMIT DROP AS SELECT {cols} FROM {target} WITH NO DATA"
            ),
            copy: CopyStatements::new(KEYS, &cols),
            fill_recorded,
            pages,
            children: child_deletes,
            delete: format!("DELETE FROM {target} t USING {KEYS} k WHERE {on_keys}"),
            count: format!("SELECT count(*) FROM {target} t JOIN {KEYS} k ON {on_keys}"),
        }
    }
}

/// A `--where` batch's statements on one relation of the table; params: first page, end
/// page (as tid text).
#[derive(Debug, Clone)]
struct PageStatements {
    /// The pages' matching rows' keys, into the keys table.
    fill: String,
    /// Where there is nothing to delete first: the pages' matching rows, deleted directly.
    delete: Option<String>,
    count: String,
}

/// Deletes purge batches over the pool.
#[derive(Clone)]
pub struct Deleter {
    transactions: Transactions,
    plan: Arc<DeletePlan>,
    /// Count what would be deleted, change nothing.
    dry_run: bool,
}

impl Deleter {
    /// `transactions` roll back in a dry run.
    pub fn new(transactions: Transactions, plan: DeletePlan, dry_run: bool) -> Self {
        Deleter {
            transactions,
            plan: Arc::new(plan),
            dry_run,
        }
    }

    pub async fn delete(&self, unit: &PurgeUnit, limit: Duration) -> Result<Outcome, Error> {
        let written = self
            .transactions
            .write(unit, limit, async |tx| {
                Ok(Worked {
                    outcome: self.delete_in(tx, unit).await?,
                    keys: None,
                    kept: (),
                })
            })
            .await?;
        Ok(match written {
            Written::Done(outcome, ()) | Written::AlreadyCommitted(outcome) => outcome,
        })
    }

    /// Deletes (or in a dry run counts) the unit's rows in `tx`.
    async fn delete_in(&self, tx: &Transaction<'_>, unit: &PurgeUnit) -> Result<Outcome, Error> {
        let fail = |e| unit.error(e);
        let p = &*self.plan;
        let direct = match unit {
            PurgeUnit::Pages { leaf, .. } => Some(&p.pages[*leaf]),
            _ => None,
        };
        let (keys, deleted) = match (unit, direct) {
            (
                PurgeUnit::Pages { first, end, .. },
                Some(PageStatements {
                    delete: Some(direct),
                    count,
                    ..
                }),
            ) => {
                let (from, to) = (format!("({first},0)"), format!("({end},0)"));
                let range = [(&from as &PgParam, Type::TEXT), (&to, Type::TEXT)];
                let n = if self.dry_run {
                    let row = tx.query_typed_one(count, &range).await.map_err(fail)?;
                    row.get::<_, i64>(0) as u64
                } else {
                    tx.execute_typed(direct, &range).await.map_err(fail)?
                };
                (n, n)
            }
            _ => {
                tx.batch_execute(&p.create_keys).await.map_err(fail)?;
                let keys = self.fill_keys(tx, unit).await?;
                // Without statistics the planner may scan the whole table to join a few keys.
                tx.batch_execute(&format!("ANALYZE {KEYS}"))
                    .await
                    .map_err(fail)?;
                let deleted = if self.dry_run {
                    let row = tx.query_typed_one(&p.count, &[]).await.map_err(fail)?;
                    row.get::<_, i64>(0) as u64
                } else {
                    for child in &p.children {
                        tx.execute_typed(child, &[]).await.map_err(fail)?;
                    }
                    tx.execute_typed(&p.delete, &[]).await.map_err(fail)?
                };
                (keys, deleted)
            }
        };
        Ok(Outcome {
            deleted,
            missing: keys.saturating_sub(deleted),
            ..Outcome::default()
        })
    }

    /// Puts the unit's keys into the keys table; returns how many.
    async fn fill_keys(&self, tx: &Transaction<'_>, unit: &PurgeUnit) -> Result<u64, Error> {
        let fail = |e| unit.error(e);
        let p = &*self.plan;
        match unit {
            PurgeUnit::Keys(batch) => p
                .copy
                .send(tx, batch.format, &batch.payload)
                .await
                .map_err(fail),
            PurgeUnit::Recorded {
                seed_run, seed_seq, ..
            } => tx
                .execute_typed(
                    &p.fill_recorded,
                    &[(seed_run, Type::INT8), (&(*seed_seq as i64), Type::INT8)],
                )
                .await
                .map_err(fail),
            PurgeUnit::Pages {
                leaf, first, end, ..
            } => tx
                .execute_typed(
                    &p.pages[*leaf].fill,
                    &[
                        (&format!("({first},0)"), Type::TEXT),
                        (&format!("({end},0)"), Type::TEXT),
                    ],
                )
                .await
                .map_err(fail),
        }
    }
}

impl Sink<PurgeUnit> for Deleter {
    fn write(
        &self,
        unit: &PurgeUnit,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<Outcome, Error>> + Send {
        self.delete(unit, limit)
    }
}
