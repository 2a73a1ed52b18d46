//! What guards a purge before anything is deleted: the foreign keys that reach the table
//! (refused when they would block, unless `--cascade`; warned about when unindexed), the
//! privileges it needs, and how many rows it would delete, confirmed above a threshold.

use std::io::{IsTerminal, Write};

use super::PurgeOptions;
use super::select::Target;
use crate::db::catalog::{self, Reference, Table, quote_ident};
use crate::db::ledger::Ledger;
use crate::db::privileges::{Object, Privilege, TEMPORARY};
use crate::error::Error;
use crate::input::csv::{self, Record};
use crate::input::source::{self, Source};

/// The references whose rows must be deleted first, of all that reach `table`. Refuses
/// (listing them) when some would block the delete and `--cascade` was not given; warns
/// about unindexed ones.
pub async fn children(
    client: &tokio_postgres::Client,
    table: &Table,
    cascade: bool,
) -> Result<Vec<Reference>, Error> {
    let references = catalog::references(client, table.oid).await?;
    plan_references(table, &references, cascade)
}

fn plan_references(
    table: &Table,
    references: &[Reference],
    cascade: bool,
) -> Result<Vec<Reference>, Error> {
    for r in references.iter().filter(|r| !r.indexed) {
        tracing::warn!(
            "{}({}) references {} without an index: each deleted row scans {} (~{} rows). \
             Consider CREATE INDEX ON {} ({}) first",
            r.child,
            r.child_columns.join(", "),
            if r.via.is_none() {
                table.display()
            } else {
                "a purged table".into()
            },
            r.child,
            r.child_rows_estimate,
            r.child_quoted,
            r.child_columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let blocking: Vec<&Reference> = references.iter().filter(|r| !r.handled_by_server).collect();
    if blocking.is_empty() {
        return Ok(Vec::new());
    }
    if !cascade {
        let references = blocking
            .iter()
            .map(|r| {
                format!(
                    "{}({}) via {} ON DELETE {}",
                    r.child,
                    r.child_columns.join(", "),
                    r.constraint,
                    r.on_delete
                )
            })
            .collect();
        return Err(Error::BlockingForeignKeys {
            table: table.display(),
            references,
        });
    }
    Ok(references.to_vec())
}

/// How many rows the purge will delete at most: keys in the file (files only), keys the
/// run recorded, or rows matching the predicate. `None` when it cannot be known: stdin, a
/// FIFO or a pipe, which can be read only once.
pub async fn estimate(
    client: &tokio_postgres::Client,
    table: &Table,
    target: &Target,
    ledger: Option<&Ledger>,
) -> Result<Option<u64>, Error> {
    Ok(match target {
        Target::File { source, .. } if source.is_stream() => None,
        Target::File { source, csv, .. } => {
            let (source, csv) = (source.clone(), csv.clone());
            let rows = tokio::task::spawn_blocking(move || -> Result<u64, Error> {
                let (mut reader, _) = csv::header(source::open(&source)?.reader, &csv, &source)?;
                let mut rec = Record::default();
                let mut n: u64 = 0;
                while reader.read(&mut rec)? {
                    n += 1;
                }
                Ok(n)
            })
            .await
            .expect("counting thread panicked")?;
            Some(rows)
        }
        Target::Run(run) => Some(
            ledger
                .expect("checked")
                .recorded_count(client, *run)
                .await?,
        ),
        Target::Where(predicate) => {
            let row = client
                .query_typed_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE ({predicate})",
                        table.quoted()
                    ),
                    &[],
                )
                .await
                .map_err(|e| Error::database("counting the rows the predicate selects", e))?;
            Some(row.get::<_, i64>(0) as u64)
        }
    })
}

/// Above the threshold: ask on a terminal, else require `--yes`.
pub fn confirm(table: &Table, estimate: Option<u64>, opts: &PurgeOptions) -> Result<(), Error> {
    if estimate.is_some_and(|n| n <= opts.confirm_above) {
        return Ok(());
    }
    let what = estimate.map_or("an unknown number of".to_string(), |n| format!("up to {n}"));
    let reads_stdin = matches!(
        opts.target,
        Target::File {
            source: Source::Stdin,
            ..
        }
    );
    if reads_stdin || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(Error::Usage(format!(
            "refusing to delete {what} rows from {} without --yes (the threshold is {})",
            table.display(),
            opts.confirm_above
        )));
    }
    eprint!(
        "Delete {what} rows from {}? Type 'yes' to go on: ",
        table.display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed; nothing was deleted".into()))
    }
}

/// What purging `table` needs: USAGE on its schema, SELECT (the keys are joined, pages and
/// predicates read), temporary tables (the keys) and, unless it is a dry run, DELETE; on the
/// referencing tables `children` that `--cascade` deletes from first, the same; and for
/// `--where`, the same on each partition or inheritance child, whose pages it reads and
/// deletes from directly.
pub fn privileges(
    table: &Table,
    children: &[Reference],
    target: &Target,
    dry_run: bool,
) -> Vec<Privilege> {
    let mut needs = vec![
        Privilege::on_schema("USAGE", &table.schema),
        Privilege::on_table("SELECT", table),
        TEMPORARY,
    ];
    if !dry_run {
        needs.push(Privilege::on_table("DELETE", table));
    }
    let mut also = |schema: &str, name: &str, delete: bool| {
        let on = Object::Table {
            schema: schema.to_string(),
            name: name.to_string(),
            columns: Vec::new(),
        };
        let mut wanted = vec![
            Privilege::on_schema("USAGE", schema),
            Privilege {
                privilege: "SELECT",
                on: on.clone(),
            },
        ];
        if delete {
            wanted.push(Privilege {
                privilege: "DELETE",
                on,
            });
        }
        for need in wanted {
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
    };
    // A dry run only counts the target's rows: nothing on the tables --cascade deletes from.
    if !dry_run {
        for r in children.iter().filter(|r| r.removes_children()) {
            also(&r.child_schema, &r.child_name, true);
        }
    }
    if matches!(target, Target::Where(_)) {
        for leaf in table.leaves.iter().filter(|l| l.oid != table.oid) {
            also(&leaf.schema, &leaf.name, !dry_run);
        }
    }
    needs
}
