//! The seed plan: which CSV column feeds which table column, how values are encoded, what a
//! conflicting key does and which privileges that takes. Decided and checked against the
//! catalog before any data moves, so every problem with the header, the mapping or the key
//! is reported at once (exit 2).

use std::collections::HashMap;

use super::write::{MergeSpec, OnConflict, Statements};
use crate::copy::encode::{Encoder, RowEncoder};
use crate::db::catalog::{Table, UniqueKey};
use crate::db::privileges::{Privilege, TEMPORARY};
use crate::error::Error;
use crate::input::csv::Record;

/// `--format`: the COPY format to prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatChoice {
    /// Binary when every column type has an encoder, CSV otherwise.
    Auto,
    /// Binary; refused when a column type has no encoder.
    Binary,
    /// CSV: the server parses every value.
    Csv,
}

/// What the writers need, validated.
#[derive(Debug)]
pub struct Plan {
    /// Target columns in CSV order.
    pub columns: Vec<String>,
    pub encoder: RowEncoder,
    pub statements: Statements,
    /// The conflict target; `None` with `skip` means any unique conflict.
    pub key: Option<Vec<String>>,
    /// The unique key whose values the ledger records for every inserted row, so that
    /// `purge --run` can delete exactly them (see [`Table::recordable_key`]). `None` when
    /// not asked for or when the CSV covers none that will do.
    pub recorded_key: Option<Vec<String>>,
    /// With a direct COPY, the CSV fields the reader collects those values from. `None`
    /// when the server reports the keys it inserted: a merge, or a table whose `BEFORE
    /// INSERT` triggers may skip or change rows.
    pub collect_keys: Option<Vec<usize>>,
    /// What loading this way needs (see [`privileges`]).
    pub privileges: Vec<Privilege>,
}

pub struct Request<'a> {
    pub header: &'a Record,
    /// `--map csv_col=db_col`.
    pub renames: &'a [(String, String)],
    pub format: FormatChoice,
    pub on_conflict: OnConflict,
    pub key: Option<&'a [String]>,
    /// Record inserted keys in the ledger (off with --no-record-keys).
    pub record_keys: bool,
}

pub fn build(table: &Table, req: &Request) -> Result<Plan, Error> {
    let mut problems = Vec::new();
    let names = header_names(req.header, &mut problems);
    let renames: HashMap<&str, &str> = req
        .renames
        .iter()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    for from in renames.keys() {
        if !names.iter().any(|n| n == from) {
            problems.push(format!("--map names {from:?}, which is not in the header"));
        }
    }
    let columns: Vec<String> = names
        .iter()
        .map(|n| renames.get(n.as_str()).map_or(n.clone(), |t| t.to_string()))
        .collect();

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in columns.iter().enumerate() {
        if let Some(first) = seen.insert(name, i) {
            problems.push(format!(
                "duplicate column {name:?} (header fields {} and {})",
                first + 1,
                i + 1
            ));
        }
        match table.column(name) {
            None => problems.push(format!("unknown column {name:?}")),
            Some(c) if c.generated => problems.push(format!(
                "column {name:?} is generated and cannot be written"
            )),
            Some(_) => {}
        }
    }
    for col in table.columns.iter().filter(|c| c.required()) {
        if !columns.contains(&col.name) {
            problems.push(format!(
                "missing column {:?} ({}, NOT NULL without a default)",
                col.name, col.type_name
            ));
        }
    }
    if !problems.is_empty() {
        let known: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        problems.push(format!("the table's columns are: {}", known.join(", ")));
        return Err(Error::Header {
            table: table.display(),
            problems,
        });
    }

    let encoders: Vec<Option<Encoder>> = columns
        .iter()
        .map(|n| Encoder::for_type(table.column(n).expect("checked above").type_oid))
        .collect();
    if req.format == FormatChoice::Binary {
        let missing: Vec<String> = columns
            .iter()
            .zip(&encoders)
            .filter(|(_, e)| e.is_none())
            .map(|(n, _)| format!("{n} ({})", table.column(n).expect("checked").type_name))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Usage(format!(
                "--format binary: no binary encoder for {}; use --format auto or csv",
                missing.join(", ")
            )));
        }
    }
    let encoder = RowEncoder::new(encoders, req.format != FormatChoice::Csv);
    let key = conflict_key(table, &columns, req.on_conflict, req.key)?;
    let recorded_key = req
        .record_keys
        .then(|| table.recordable_key(&columns).ok())
        .flatten()
        .map(|u| u.columns.clone());
    // A trigger may skip a row or change its key: the file's keys would not be the rows
    // inserted, so the rows go through the staging table and the server returns the keys.
    let staged_insert = recorded_key.is_some() && table.insert_triggers;
    let statements = Statements::new(
        table,
        &columns,
        MergeSpec {
            mode: req.on_conflict,
            key: key.as_deref(),
            recorded_key: recorded_key.as_deref(),
            staged_insert,
        },
    );
    let collect_keys = recorded_key
        .as_ref()
        .filter(|_| req.on_conflict == OnConflict::Error && !staged_insert)
        .map(|k| {
            k.iter()
                .map(|c| columns.iter().position(|n| n == c).expect("covered"))
                .collect()
        });
    let privileges = privileges(
        table,
        &columns,
        req.on_conflict,
        key.as_deref(),
        staged_insert,
    );
    Ok(Plan {
        columns,
        encoder,
        statements,
        key,
        recorded_key,
        collect_keys,
        privileges,
    })
}

/// What seeding `columns` (CSV order) of `table` needs: USAGE on its schema and INSERT on
/// the columns; a staged merge (`skip`, `update`) or insert (`staged`) also reads the table
/// (SELECT) from a temporary table, and `update` overwrites the columns outside the key
/// (UPDATE).
fn privileges(
    table: &Table,
    columns: &[String],
    mode: OnConflict,
    key: Option<&[String]>,
    staged: bool,
) -> Vec<Privilege> {
    let mut needs = vec![
        Privilege::on_schema("USAGE", &table.schema),
        Privilege::on_columns("INSERT", table, columns),
    ];
    if mode != OnConflict::Error || staged {
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

fn header_names(header: &Record, problems: &mut Vec<String>) -> Vec<String> {
    (0..header.len())
        .map(|i| {
            let raw = header.get(i).unwrap_or_default();
            match std::str::from_utf8(raw) {
                Ok("") => {
                    problems.push(format!("header field {} is empty", i + 1));
                    String::new()
                }
                Ok(s) => s.to_string(),
                Err(_) => {
                    problems.push(format!("header field {} is not valid UTF-8", i + 1));
                    String::from_utf8_lossy(raw).into_owned()
                }
            }
        })
        .collect()
}

/// The `ON CONFLICT` target: `--key` when given (it must match a unique index), else the
/// primary key or the first unique key the CSV covers. `skip` without `--key` needs none.
/// `ON CONFLICT` cannot use an index that is not valid nor a deferrable constraint: either
/// is refused here, before the run is recorded, rather than by the server at the first
/// batch.
fn conflict_key(
    table: &Table,
    columns: &[String],
    mode: OnConflict,
    key: Option<&[String]>,
) -> Result<Option<Vec<String>>, Error> {
    if mode == OnConflict::Error {
        return match key {
            Some(_) => Err(Error::Usage(
                "--key names the conflict target of --on-conflict skip or update; \
                 with --on-conflict error (the default) it would be ignored"
                    .into(),
            )),
            None => Ok(None),
        };
    }
    match key {
        Some(key) => {
            let absent: Vec<&String> = key.iter().filter(|k| !columns.contains(k)).collect();
            if !absent.is_empty() {
                return Err(Error::Usage(format!(
                    "--key: column(s) {absent:?} are not among the CSV's columns"
                )));
            }
            let Some(unique) = table.unique_keys.iter().find(|u| u.is(key)) else {
                return Err(Error::Usage(format!(
                    "--key {}: {} has no primary key or unique index on exactly these columns",
                    key.join(","),
                    table.display()
                )));
            };
            arbiter(unique, &format!("--key {}", key.join(","))).map(Some)
        }
        None if mode == OnConflict::Skip => match table.deferrable.as_slice() {
            [] => Ok(None),
            names => Err(Error::Usage(format!(
                "--on-conflict skip without --key: ON CONFLICT cannot run on {}, which has the \
                 deferrable constraint(s) {}; pass --key naming a unique key that is not \
                 deferrable",
                table.display(),
                names.join(", ")
            ))),
        },
        None => match table
            .unique_keys
            .iter()
            .find(|u| u.columns.iter().all(|c| columns.contains(c)))
        {
            Some(unique) => arbiter(
                unique,
                &format!(
                    "--on-conflict update by ({}), the key the CSV covers",
                    unique.columns.join(", ")
                ),
            )
            .map(Some),
            None => Err(Error::Usage(format!(
                "--on-conflict update needs a key: the CSV covers no primary key or unique index of {}; pass --key",
                table.display()
            ))),
        },
    }
}

/// `unique`'s columns, if `ON CONFLICT` can use it; `chosen` says what chose it.
fn arbiter(unique: &UniqueKey, chosen: &str) -> Result<Vec<String>, Error> {
    unique
        .check_valid()
        .map_err(|why| Error::Usage(format!("{chosen}: {why}")))?;
    if unique.deferrable {
        return Err(Error::Usage(format!(
            "{chosen}: its constraint is deferrable, which ON CONFLICT cannot use; pass --key \
             naming a unique key that is not deferrable"
        )));
    }
    Ok(unique.columns.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::catalog::Column;
    use crate::input::csv::{CsvReader, Dialect};

    fn key(column: &str) -> UniqueKey {
        UniqueKey {
            columns: vec![column.into()],
            index: format!("t_{column}_key"),
            valid: true,
            deferrable: false,
        }
    }

    fn table() -> Table {
        let col = |name: &str, oid, not_null, has_default| Column {
            name: name.into(),
            type_oid: oid,
            type_name: "t".into(),
            type_mod: -1,
            not_null,
            has_default,
            generated: false,
        };
        Table {
            oid: 0,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![
                col("id", 20, true, true),
                col("email", 25, true, false),
                col("name", 25, false, false),
                col("ip", 869, false, false),
            ],
            unique_keys: vec![key("id"), key("email")],
            partitioned: false,
            leaves: Vec::new(),
            insert_triggers: false,
            deferrable: Vec::new(),
        }
    }

    fn header(line: &str) -> Record {
        let mut rec = Record::default();
        CsvReader::new(line.as_bytes(), Dialect::default())
            .read(&mut rec)
            .unwrap();
        rec
    }

    fn request<'a>(h: &'a Record, renames: &'a [(String, String)]) -> Request<'a> {
        Request {
            header: h,
            renames,
            format: FormatChoice::Auto,
            on_conflict: OnConflict::Error,
            key: None,
            record_keys: true,
        }
    }

    #[test]
    fn all_header_problems_are_listed_at_once() {
        let h = header("name,nope,name\n");
        let err = build(&table(), &request(&h, &[])).unwrap_err();
        let Error::Header { problems, .. } = &err else {
            panic!("{err}")
        };
        assert!(
            problems
                .iter()
                .any(|p| p.contains("unknown column \"nope\""))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("duplicate column \"name\""))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("missing column \"email\""))
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn renames_apply_and_update_defaults_to_the_covered_unique_key() {
        let h = header("mail,name\n");
        let renames = [("mail".to_string(), "email".to_string())];
        let mut req = request(&h, &renames);
        req.on_conflict = OnConflict::Update;
        let plan = build(&table(), &req).unwrap();
        assert_eq!(plan.columns, ["email", "name"]);
        assert_eq!(plan.key, Some(vec!["email".to_string()]));
        assert_eq!(plan.recorded_key, Some(vec!["email".to_string()]));
        assert_eq!(
            plan.collect_keys, None,
            "a merge reports its inserted keys itself"
        );
        req.on_conflict = OnConflict::Error;
        assert_eq!(build(&table(), &req).unwrap().collect_keys, Some(vec![0]));
        req.record_keys = false;
        assert_eq!(build(&table(), &req).unwrap().recorded_key, None);
    }

    #[test]
    fn binary_is_refused_for_types_without_an_encoder() {
        let h = header("email,ip\n");
        let mut req = request(&h, &[]);
        req.format = FormatChoice::Binary;
        let err = build(&table(), &req).unwrap_err();
        assert!(err.to_string().contains("ip"), "{err}");
        req.format = FormatChoice::Auto;
        assert!(build(&table(), &req).is_ok());
    }

    #[test]
    fn a_key_without_a_unique_index_is_refused() {
        let h = header("email,name\n");
        let key = ["name".to_string()];
        let mut req = request(&h, &[]);
        req.on_conflict = OnConflict::Skip;
        req.key = Some(&key);
        assert!(matches!(build(&table(), &req), Err(Error::Usage(_))));
    }

    #[test]
    fn a_key_with_on_conflict_error_is_refused_not_ignored() {
        let h = header("email,name\n");
        let key = ["email".to_string()];
        let mut req = request(&h, &[]);
        req.key = Some(&key);
        let err = build(&table(), &req).unwrap_err();
        assert!(
            err.to_string().contains("--on-conflict skip or update"),
            "{err}"
        );
        req.on_conflict = OnConflict::Skip;
        assert!(build(&table(), &req).is_ok());
    }
}
