//! From a table's shape to what each column of the output gets: which columns are written
//! (those the server cannot fill), each one's generator within its type and constraints,
//! the column of each unique key that varies with every row, the foreign keys' sampled
//! parent keys. Every refusal happens here, before a row is written.

use std::collections::HashMap;

use super::check::{self, Bound, Op, Rule};
use super::fake;
use super::template::Template;
use super::value::{Pattern, Ranges, Span, Text, Value};
use crate::db::catalog::Table;
use crate::db::shape::{self, ColumnShape, ForeignKey, TypeKind, TypeShape};
use crate::error::Error;
use crate::generate::calendar::days_since_2000;
use crate::generate::password::Passwords;
use crate::generate::rng::Rng;

#[derive(Debug, Clone)]
pub struct TableOptions {
    pub count: u64,
    pub seed: u64,
    pub domain: String,
    /// The share of NULLs in a nullable column.
    pub null_rate: f64,
    /// Exactly these columns, in this order (else: every column the server cannot fill).
    pub columns: Option<Vec<String>>,
    pub set: Vec<(String, Template)>,
    /// Keys of a referenced table held in memory.
    pub fk_sample: u32,
    pub passwords: Option<Passwords>,
    pub password_column: Option<String>,
    /// The feeder's login columns (else `username` and `email`, those the table has).
    pub login_columns: Option<Vec<String>>,
}

/// What a column of the output gets.
#[derive(Debug, Clone)]
pub enum Source {
    Value(Value),
    Set(Template),
    /// Part `part` of the key picked for foreign key `fk`.
    Foreign {
        fk: usize,
        part: usize,
    },
    /// Part `part` of an earlier row's key, through self-reference `reference`.
    Earlier {
        reference: usize,
        part: usize,
    },
    Password,
}

#[derive(Debug, Clone)]
pub struct Planned {
    pub name: String,
    pub source: Source,
    pub null_rate: f64,
    /// Varies with every row: the column that makes a unique key unique.
    pub unique: bool,
}

/// A foreign key's sampled parent keys.
#[derive(Debug, Clone)]
pub struct Foreign {
    pub keys: Vec<Vec<String>>,
    /// Each row takes the next key (the columns are a unique key of the table).
    pub distinct: bool,
    pub null_rate: f64,
}

/// A foreign key to the table itself whose key the output writes: each row points at an
/// earlier row of its block, or at itself (or NULL) when it is the block's first.
#[derive(Debug, Clone)]
pub struct SelfReference {
    /// The output columns of the referenced key.
    pub key: Vec<usize>,
    pub nullable: bool,
    pub null_rate: f64,
}

/// The rows a self-reference may point at: an earlier row of the same block, so that with
/// seed's batches (5,000 rows by default, a multiple of this) the row it points at is
/// committed in the same transaction.
pub const BLOCK: u64 = 1000;

#[derive(Debug, Clone)]
pub struct Plan {
    pub columns: Vec<Planned>,
    pub foreign: Vec<Foreign>,
    pub earlier: Vec<SelfReference>,
    /// The output columns the feeder holds.
    pub login: Vec<usize>,
    pub login_names: Vec<String>,
    /// Rows already in the table (counted only when a row number is written): row numbers
    /// count on from here.
    pub base: u64,
    /// What could not be honoured, for the user to read.
    pub warnings: Vec<String>,
}

/// Reads `table` and plans its rows.
pub async fn prepare(
    client: &tokio_postgres::Client,
    table: &Table,
    opts: &TableOptions,
) -> Result<Plan, Error> {
    let shape = shape::read(client, table).await?;
    let mut warnings = Vec::new();
    let refuse = |msg: String| Error::Usage(format!("generate --table {}: {msg}", table.display()));

    // The rules of CHECK constraints, per column.
    let mut rules: HashMap<String, Vec<Rule>> = HashMap::new();
    for c in &shape.checks {
        match check::understand(&c.definition) {
            Some(found) => {
                for (column, rule) in found {
                    rules.entry(column).or_default().push(rule);
                }
            }
            None => warnings.push(format!(
                "CHECK constraint {} is not understood ({}): rows that break it will be \
                 refused by the server (seed with --rejects FILE to load the others)",
                c.name, c.definition
            )),
        }
    }
    let partition = partition_bounds(&shape, &mut warnings);

    // The columns written.
    let set: HashMap<&str, &Template> = opts.set.iter().map(|(c, t)| (c.as_str(), t)).collect();
    let password_column = password_column(&shape.columns, opts)?;
    let unique_columns: Vec<&str> = table
        .unique_keys
        .iter()
        .flat_map(|k| k.columns.iter().map(String::as_str))
        .collect();
    let column = |name: &str| shape.columns.iter().find(|c| c.name == name);
    let written: Vec<&ColumnShape> = match &opts.columns {
        Some(names) => {
            let mut chosen = Vec::new();
            for name in names {
                let c = column(name).ok_or_else(|| refuse(format!("no column {name:?}")))?;
                chosen.push(c);
            }
            chosen
        }
        None => shape
            .columns
            .iter()
            .filter(|c| {
                set.contains_key(c.name.as_str())
                    || password_column.as_deref() == Some(c.name.as_str())
                    || !c.generated
                        && !c.identity
                        && match &c.default {
                            None => true,
                            // A constant default would repeat in a unique column.
                            Some(d) => unique_columns.contains(&c.name.as_str()) && !volatile(d),
                        }
            })
            .collect(),
    };
    for (name, _) in &opts.set {
        if !written.iter().any(|c| &c.name == name) {
            return Err(refuse(format!(
                "--set {name}: {}",
                match column(name) {
                    Some(_) => "the column is not among --columns",
                    None => "no such column",
                }
            )));
        }
    }
    if let Some(c) = written.iter().find(|c| c.generated) {
        return Err(refuse(format!(
            "column {} is generated: it cannot be written",
            c.name
        )));
    }
    if opts.columns.is_some()
        && let Some(c) = shape.columns.iter().find(|c| {
            c.not_null
                && c.default.is_none()
                && !c.identity
                && !c.generated
                && !written.iter().any(|w| w.name == c.name)
        })
    {
        return Err(refuse(format!(
            "column {} is NOT NULL without a default: --columns must name it",
            c.name
        )));
    }
    let position = |name: &str| written.iter().position(|c| c.name == name);

    // Foreign keys whose columns are all written; those to the table itself point at
    // earlier rows when the output writes the key they reference.
    let mut foreign = Vec::new();
    let mut earlier = Vec::new();
    let mut sources: Vec<Option<Source>> = vec![None; written.len()];
    for fk in &shape.foreign_keys {
        let at: Option<Vec<usize>> = fk.columns.iter().map(|c| position(c)).collect();
        let Some(at) = at else {
            if fk.columns.iter().any(|c| position(c).is_some()) {
                warnings.push(format!(
                    "foreign key {}: only some of its columns are written; their values are \
                     not taken from {}",
                    fk.name, fk.parent
                ));
            }
            continue;
        };
        if at
            .iter()
            .any(|&i| set.contains_key(written[i].name.as_str()))
        {
            continue;
        }
        let nullable = at.iter().all(|&i| !written[i].not_null);
        let null_rate = if nullable { opts.null_rate } else { 0.0 };
        let key: Option<Vec<usize>> = fk.parent_columns.iter().map(|c| position(c)).collect();
        if fk.parent_oid == table.oid
            && let Some(key) = key
        {
            for (part, &i) in at.iter().enumerate() {
                sources[i] = Some(Source::Earlier {
                    reference: earlier.len(),
                    part,
                });
            }
            earlier.push(SelfReference {
                key,
                nullable,
                null_rate: null_rate.max(0.2 * f64::from(u8::from(nullable))),
            });
            continue;
        }
        let keys = shape::sample_keys(client, fk, opts.fk_sample, opts.seed).await?;
        if keys.is_empty() {
            if !nullable {
                return Err(refuse(format!(
                    "foreign key {} references {}, which has no rows: generate and seed it first",
                    fk.name, fk.parent
                )));
            }
            warnings.push(format!(
                "foreign key {}: {} has no rows, so ({}) is NULL in every row",
                fk.name,
                fk.parent,
                fk.columns.join(", ")
            ));
        }
        let distinct = table
            .unique_keys
            .iter()
            .any(|u| u.columns.iter().all(|c| fk.columns.contains(c)));
        if distinct && keys.len() < opts.count as usize {
            return Err(refuse(distinct_shortage(fk, keys.len(), opts)));
        }
        for (part, &i) in at.iter().enumerate() {
            sources[i] = Some(Source::Foreign {
                fk: foreign.len(),
                part,
            });
        }
        foreign.push(Foreign {
            null_rate: if keys.is_empty() { 1.0 } else { null_rate },
            keys,
            distinct,
        });
    }

    // Every other column: its template, the password, or a value within its constraints.
    let mut columns = Vec::with_capacity(written.len());
    for (i, c) in written.iter().enumerate() {
        let (source, nullable) = if let Some(t) = set.get(c.name.as_str()) {
            (Source::Set((*t).clone()), false)
        } else if let Some(s) = sources[i].take() {
            (s, false)
        } else if opts.passwords.is_some() && password_column.as_deref() == Some(&c.name) {
            (Source::Password, false)
        } else {
            let mut column_rules = rules.get(&c.name).cloned().unwrap_or_default();
            domain_rules(&c.ty, &mut column_rules, &mut warnings);
            let bounds = partition
                .as_ref()
                .filter(|(column, _)| column == &c.name)
                .map(|(_, b)| b.as_slice());
            match value_of_type(
                &c.name,
                &c.ty,
                c.ty.type_mod,
                &column_rules,
                bounds,
                &mut warnings,
            ) {
                Ok(Some(v)) => {
                    let not_null = c.not_null
                        || column_rules.contains(&Rule::NotNull)
                        || domain_not_null(&c.ty);
                    (Source::Value(v), !not_null)
                }
                Ok(None) if !c.not_null => {
                    warnings.push(format!(
                        "column {} is of type {}, which generate does not know: it is NULL in \
                         every row (give it values with --set {}=…)",
                        c.name, c.ty.name, c.name
                    ));
                    (Source::Value(Value::OneOf(Vec::new())), true)
                }
                Ok(None) => {
                    return Err(refuse(format!(
                        "column {} is of type {}, which generate does not know: give it values \
                         with --set {}=TEMPLATE",
                        c.name, c.ty.name, c.name
                    )));
                }
                Err(why) => return Err(refuse(format!("column {}: {why}", c.name))),
            }
        };
        let unknown = matches!(&source, Source::Value(Value::OneOf(v)) if v.is_empty());
        columns.push(Planned {
            name: c.name.clone(),
            source,
            null_rate: if unknown {
                1.0
            } else if nullable {
                opts.null_rate
            } else {
                0.0
            },
            unique: false,
        });
    }

    // Each unique key the output writes whole gets a column that varies with every row.
    for key in &table.unique_keys {
        let at: Option<Vec<usize>> = key.columns.iter().map(|c| position(c)).collect();
        let Some(at) = at else { continue };
        let covered = at.iter().any(|&i| match &columns[i].source {
            Source::Foreign { fk, .. } => foreign[*fk].distinct,
            Source::Set(template) => template.numbered(),
            _ => columns[i].unique,
        });
        if covered {
            continue;
        }
        let varying = at
            .iter()
            .copied()
            .find(|&i| matches!(&columns[i].source, Source::Value(v) if v.can_be_unique()));
        match varying {
            Some(i) => {
                columns[i].unique = true;
                columns[i].null_rate = 0.0;
                if let Source::Value(v) = &columns[i].source
                    && !v.unique_matches_pattern(&opts.domain)
                {
                    warnings.push(format!(
                        "unique column {}: its CHECK pattern leaves no room for the row's \
                         number, so values made from the pattern may repeat (seed with \
                         --on-conflict skip, or --rejects FILE)",
                        columns[i].name
                    ));
                }
            }
            None => warnings.push(format!(
                "unique key ({}) has no column that can differ in every row: rows may repeat \
                 a key (seed with --on-conflict skip, or --rejects FILE)",
                key.columns.join(", ")
            )),
        }
    }

    // Unique numbers count on from the largest one there, texts from the rows there; every
    // unique column must have enough values for the rows.
    // Counting a big table's rows takes a while: only when a row number is written.
    let numbered = columns.iter().any(|c| match &c.source {
        Source::Set(template) => template.numbered(),
        Source::Value(Value::Text(_)) => c.unique,
        _ => false,
    });
    let base = if numbered {
        shape::row_count(client, table).await? as u64
    } else {
        0
    };
    for c in columns.iter_mut().filter(|c| c.unique) {
        if let Source::Value(Value::Number { span, scale: 0 }) = &mut c.source {
            let max = shape::max_of(client, table, &c.name).await?;
            span.unique = span.unique.clamp(i128::from(max) + 1, i128::MAX);
        }
        let needed = match &c.source {
            // A text's values carry the row's number, which counts on from the rows there.
            Source::Value(Value::Text(_)) => base + opts.count,
            _ => opts.count,
        };
        if let Source::Value(v) = &c.source
            && let Some(n) = v.unique_values()
            && n < u128::from(needed)
        {
            return Err(refuse(format!(
                "unique column {} has room for {n} more values within its type and \
                 constraints, fewer than --count {}",
                c.name, opts.count
            )));
        }
    }

    let login_names = login_columns(&written, opts)?;
    let login = login_names
        .iter()
        .map(|n| position(n).expect("checked"))
        .collect();
    Ok(Plan {
        columns,
        foreign,
        earlier,
        login,
        login_names,
        base,
        warnings,
    })
}

fn distinct_shortage(fk: &ForeignKey, sampled: usize, opts: &TableOptions) -> String {
    format!(
        "foreign key {} is also a unique key: each row needs a key of {} of its own, and \
         {sampled} were sampled (--fk-sample {}) for --count {}",
        fk.name, fk.parent, opts.fk_sample, opts.count
    )
}

/// A default the server computes anew for each row (a sequence, a random UUID).
fn volatile(default: &str) -> bool {
    [
        "nextval(",
        "gen_random_uuid(",
        "uuid_generate_",
        "random(",
        "clock_timestamp(",
    ]
    .iter()
    .any(|f| default.contains(f))
}

/// The column that gets the password hashes: `--password-column`, else the first of
/// `password_hash`, `encrypted_password`, `password` the table has.
fn password_column(columns: &[ColumnShape], opts: &TableOptions) -> Result<Option<String>, Error> {
    if opts.passwords.is_none() {
        return Ok(None);
    }
    if let Some(name) = &opts.password_column {
        return match columns.iter().find(|c| &c.name == name) {
            Some(_) => Ok(Some(name.clone())),
            None => Err(Error::Usage(format!(
                "--password-column {name}: no such column"
            ))),
        };
    }
    ["password_hash", "encrypted_password", "password"]
        .iter()
        .find(|n| columns.iter().any(|c| c.name == **n))
        .map(|n| Some(n.to_string()))
        .ok_or_else(|| {
            Error::Usage(
                "--password: the table has no password_hash, encrypted_password or password \
                 column; name it with --password-column"
                    .into(),
            )
        })
}

/// The feeder's login columns: `--credentials-columns`, else `username` and `email`, those
/// the output has.
fn login_columns(written: &[&ColumnShape], opts: &TableOptions) -> Result<Vec<String>, Error> {
    if opts.passwords.is_none() {
        return Ok(Vec::new());
    }
    let has = |n: &str| written.iter().any(|c| c.name == n);
    match &opts.login_columns {
        Some(names) => {
            if let Some(n) = names.iter().find(|n| !has(n)) {
                return Err(Error::Usage(format!(
                    "--credentials-columns: {n} is not a column the output writes"
                )));
            }
            Ok(names.clone())
        }
        None => {
            let found: Vec<String> = ["username", "email"]
                .iter()
                .filter(|n| has(n))
                .map(|n| n.to_string())
                .collect();
            if found.is_empty() {
                return Err(Error::Usage(
                    "--credentials: the output has no username or email column; name the \
                     login columns with --credentials-columns"
                        .into(),
                ));
            }
            Ok(found)
        }
    }
}

/// The partition key's column and the partitions' bounds, when they are understood.
fn partition_bounds(
    shape: &shape::Shape,
    warnings: &mut Vec<String>,
) -> Option<(String, Vec<Bound>)> {
    let p = shape.partitioning.as_ref()?;
    let bounds: Option<Vec<Bound>> = p.bounds.iter().map(|b| check::partition_bound(b)).collect();
    match (check::partition_column(&p.key), bounds) {
        (_, Some(b)) if b.contains(&Bound::Any) => None,
        (Some(column), Some(b)) => Some((column, b)),
        _ => {
            warnings.push(format!(
                "the partition key {} is not understood: rows that fall in no partition will \
                 be refused",
                p.key
            ));
            None
        }
    }
}

/// The CHECKs of `ty`'s domains, as rules on the column.
fn domain_rules(ty: &TypeShape, rules: &mut Vec<Rule>, warnings: &mut Vec<String>) {
    if let TypeKind::Domain { base, checks, .. } = &ty.kind {
        for c in checks {
            match check::understand(&c.definition) {
                Some(found) => rules.extend(found.into_iter().map(|(_, r)| r)),
                None => {
                    let warning = format!(
                        "CHECK constraint {} of domain {} is not understood ({}): values that \
                         break it will be refused by the server (seed with --rejects FILE to \
                         load the others)",
                        c.name, ty.name, c.definition
                    );
                    // A domain of several columns is reported once.
                    if !warnings.contains(&warning) {
                        warnings.push(warning);
                    }
                }
            }
        }
        domain_rules(base, rules, warnings);
    }
}

fn domain_not_null(ty: &TypeShape) -> bool {
    match &ty.kind {
        TypeKind::Domain { base, not_null, .. } => *not_null || domain_not_null(base),
        _ => false,
    }
}

/// How constants of a column's type are counted.
#[derive(Clone, Copy)]
enum Unit {
    Scaled(u32),
    Days,
    Seconds,
}

/// `text` in `unit`s, rounded down, and whether it was exact.
fn parse_unit(text: &str, unit: Unit) -> Option<(i128, bool)> {
    match unit {
        Unit::Scaled(scale) => {
            let (neg, digits) = match text.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, text),
            };
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
            let kept: String = frac
                .chars()
                .chain(std::iter::repeat('0'))
                .take(scale as usize)
                .collect();
            let rest = frac.get(scale as usize..).unwrap_or("");
            let exact = rest.chars().all(|c| c == '0');
            let magnitude = int.checked_mul(10i128.pow(scale))? + kept.parse::<i128>().unwrap_or(0);
            Some(if neg {
                (-magnitude - i128::from(!exact), exact)
            } else {
                (magnitude, exact)
            })
        }
        Unit::Days | Unit::Seconds => {
            let secs = if text == "now" {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs() as i128
                    - 946_684_800
            } else {
                parse_timestamp(text)?
            };
            Some(match unit {
                Unit::Days => (secs.div_euclid(86_400), secs.rem_euclid(86_400) == 0),
                _ => (secs, true),
            })
        }
    }
}

/// `YYYY-MM-DD[ HH:MM:SS[.fff]][±HH[:MM]]` in seconds since 2000-01-01 UTC.
fn parse_timestamp(text: &str) -> Option<i128> {
    let (date, rest) = text.split_at(text.find([' ', 'T']).unwrap_or(text.len()));
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let mut secs = i128::from(days_since_2000(y, m, d)) * 86_400;
    let rest = rest.trim_start_matches([' ', 'T']);
    if rest.is_empty() {
        return Some(secs);
    }
    let zone_at = rest.find(['+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let mut hms = time.split(':');
    let h: i128 = hms.next()?.parse().ok()?;
    let mi: i128 = hms.next().unwrap_or("0").parse().ok()?;
    let s: f64 = hms.next().unwrap_or("0").parse().ok()?;
    secs += h * 3600 + mi * 60 + s as i128;
    if !zone.is_empty() {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let mut zp = zone[1..].split(':');
        let zh: i128 = zp.next()?.parse().ok()?;
        let zm: i128 = zp.next().unwrap_or("0").parse().ok()?;
        secs -= sign * (zh * 3600 + zm * 60);
    }
    Some(secs)
}

/// Days of (year, month, day), for windows.
fn day(y: i64, m: u32, d: u32) -> i128 {
    i128::from(days_since_2000(y, m, d))
}

/// The window a column's name suggests for its dates, in days.
fn date_window(name: &str) -> (i128, i128) {
    let name = name.to_ascii_lowercase();
    if name.contains("birth") || name == "dob" {
        // Adults: 18 to 80 years before 2026.
        (day(1946, 1, 1), day(2007, 12, 31))
    } else if ["expire", "valid_until", "ends", "due", "until"]
        .iter()
        .any(|w| name.contains(w))
    {
        (day(2027, 1, 1), day(2030, 12, 31))
    } else {
        // The past: 2021 to 2025.
        (day(2021, 1, 1), day(2025, 12, 31))
    }
}

/// The window a column's name suggests for its numbers (in whole units).
fn number_window(name: &str) -> (i128, i128) {
    let name = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| name.contains(w));
    if name == "age" || name.ends_with("_age") {
        (18, 90)
    } else if has(&["year"]) {
        (1950, 2025)
    } else if has(&[
        "price", "amount", "total", "cost", "balance", "salary", "fee",
    ]) {
        (0, 10_000)
    } else if has(&["quantity", "qty", "count", "stock"]) {
        (0, 100)
    } else if has(&["latitude"]) || name == "lat" {
        (-90, 90)
    } else if has(&["longitude"]) || name == "lon" || name == "lng" {
        (-180, 180)
    } else if has(&["rating", "stars"]) {
        (1, 5)
    } else if has(&["percent", "pct", "score"]) {
        (0, 100)
    } else {
        (1, 1_000_000)
    }
}

/// The generator for column `name` of type `ty` under `rules` and its partitions' `bounds`;
/// `Ok(None)` for a type generate does not know; `Err` when no value satisfies the
/// constraints.
fn value_of_type(
    name: &str,
    ty: &TypeShape,
    type_mod: i32,
    rules: &[Rule],
    bounds: Option<&[Bound]>,
    warnings: &mut Vec<String>,
) -> Result<Option<Value>, String> {
    let base = ty.base();
    let type_mod = if type_mod >= 0 {
        type_mod
    } else {
        base.type_mod
    };
    // Listed values: CHECK … IN, = constant, an enum's labels, list partitions.
    let mut one_of: Option<Vec<String>> = match &base.kind {
        TypeKind::Enum(labels) => Some(labels.clone()),
        _ => None,
    };
    let mut narrow = |values: Vec<String>| {
        one_of = Some(match one_of.take() {
            None => values,
            Some(have) => have.into_iter().filter(|v| values.contains(v)).collect(),
        });
    };
    for r in rules {
        match r {
            Rule::OneOf(values) => narrow(values.clone()),
            Rule::Compare(Op::Eq, v) => narrow(vec![v.clone()]),
            _ => {}
        }
    }
    if let Some(bounds) = bounds
        && let Some(Bound::In(_)) = bounds.first()
    {
        let values = bounds
            .iter()
            .flat_map(|b| match b {
                Bound::In(v) => v.iter().flatten().cloned().collect(),
                _ => Vec::new(),
            })
            .collect();
        narrow(values);
    }
    let not_in: Vec<&String> = rules
        .iter()
        .filter_map(|r| match r {
            Rule::Compare(Op::Ne, v) => Some(v),
            _ => None,
        })
        .collect();
    if let Some(values) = one_of {
        let values: Vec<String> = values
            .into_iter()
            .filter(|v| !not_in.contains(&v))
            .collect();
        if values.is_empty() {
            return Err("no value satisfies its constraints".into());
        }
        return Ok(Some(Value::OneOf(values)));
    }
    if let TypeKind::Array(element) = &base.kind {
        let mut element_rules = Vec::new();
        domain_rules(element, &mut element_rules, warnings);
        let inner = value_of_type(name, element, -1, &element_rules, None, warnings)?;
        return Ok(inner.map(|v| Value::Array(Box::new(v))));
    }
    let ranged = |unit: Unit, lo: i128, hi: i128, window: (i128, i128)| {
        ranges_for(unit, lo, hi, window, rules, bounds)
    };
    let day_secs = |(lo, hi): (i128, i128)| (lo * 86_400, hi * 86_400 + 86_399);
    let value = match base.name.as_str() {
        "bool" => Value::Bool,
        "int2" | "int4" | "int8" => {
            let max = match base.name.as_str() {
                "int2" => i128::from(i16::MAX),
                "int4" => i128::from(i32::MAX),
                _ => i128::from(i64::MAX),
            };
            Value::Number {
                span: ranged(Unit::Scaled(0), -max - 1, max, number_window(name))?,
                scale: 0,
            }
        }
        "numeric" => {
            let (precision, scale) = if type_mod >= 4 {
                let m = type_mod - 4;
                ((m >> 16) as u32 & 0xFFFF, (m & 0xFFFF) as u32)
            } else {
                (17, 2)
            };
            let limit = 10i128.pow(precision.min(30)) - 1;
            let unit = 10i128.pow(scale);
            let (lo, hi) = number_window(name);
            Value::Number {
                span: ranged(Unit::Scaled(scale), -limit, limit, (lo * unit, hi * unit))?,
                scale,
            }
        }
        "float4" | "float8" => {
            let mut lo = 0.0;
            let mut hi = 1000.0;
            for r in rules {
                if let Rule::Compare(op, v) = r
                    && let Ok(x) = v.parse::<f64>()
                {
                    match op {
                        Op::Gt => lo = f64::max(lo, x + 1e-3),
                        Op::Ge => lo = f64::max(lo, x),
                        Op::Lt => hi = f64::min(hi, x - 1e-3),
                        Op::Le => hi = f64::min(hi, x),
                        _ => {}
                    }
                }
            }
            if lo > hi {
                // The realistic window is ruled out: the constraints' own.
                hi = lo + 1000.0;
            }
            Value::Float { lo, hi }
        }
        "date" => Value::Date(ranged(
            Unit::Days,
            day(-4000, 1, 1),
            day(9999, 12, 31),
            date_window(name),
        )?),
        "timestamp" | "timestamptz" => Value::Timestamp {
            span: ranged(
                Unit::Seconds,
                day(-4000, 1, 1) * 86_400,
                day(9999, 12, 31) * 86_400,
                day_secs(date_window(name)),
            )?,
            zone: base.name == "timestamptz",
        },
        "uuid" => Value::Uuid,
        "time" | "timetz" => Value::Time,
        "interval" => Value::Interval,
        "json" | "jsonb" => Value::Json,
        "bytea" => Value::Bytea,
        "inet" => Value::Inet,
        "cidr" => Value::Cidr,
        "macaddr" => Value::MacAddr,
        "money" => Value::Money,
        "point" => Value::Point,
        "tsvector" => Value::Tsvector,
        "xml" => Value::Xml,
        _ if base.category == 'S'
            || matches!(base.kind, TypeKind::Base) && base.name == "citext" =>
        {
            Value::Text(text_for(name, base, type_mod, rules)?)
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

fn text_for(name: &str, base: &TypeShape, type_mod: i32, rules: &[Rule]) -> Result<Text, String> {
    let declared = match base.name.as_str() {
        "varchar" | "bpchar" if type_mod >= 4 => Some((type_mod - 4) as usize),
        "bpchar" => Some(1),
        _ => None,
    };
    let mut min = 0usize;
    let mut max = declared.unwrap_or(usize::MAX);
    let mut pattern = None;
    for r in rules {
        match r {
            Rule::Length(op, n) => {
                let n = (*n).max(0) as usize;
                match op {
                    Op::Gt => min = min.max(n + 1),
                    Op::Ge => min = min.max(n),
                    Op::Lt => max = max.min(n.saturating_sub(1)),
                    Op::Le => max = max.min(n),
                    Op::Eq => (min, max) = (min.max(n), max.min(n)),
                    Op::Ne => {}
                }
            }
            Rule::Compare(Op::Ne, v) if v.is_empty() => min = min.max(1),
            Rule::Matches(p) => {
                pattern = Some(Pattern::new(p).ok_or_else(|| {
                    format!(
                        "the pattern {p:?} of its CHECK is one generate cannot make strings for"
                    )
                })?)
            }
            _ => {}
        }
    }
    if min > max {
        return Err(format!("no length from {min} to {max} characters"));
    }
    Ok(Text {
        fake: fake::by_name(name, declared),
        min,
        max,
        pattern,
    })
}

/// Where a number, date or timestamp column's values fall, in `unit`s: the type's `lo..=hi`,
/// cut by its CHECK comparisons and its partitions' ranges; usually within the realistic
/// `window` where that leaves any, counted up from its start in a unique column.
fn ranges_for(
    unit: Unit,
    lo: i128,
    hi: i128,
    window: (i128, i128),
    rules: &[Rule],
    bounds: Option<&[Bound]>,
) -> Result<Span, String> {
    let (mut lo, mut hi) = (lo, hi);
    for r in rules {
        let Rule::Compare(op, v) = r else { continue };
        let Some((floor, exact)) = parse_unit(v, unit) else {
            continue;
        };
        match op {
            Op::Gt => lo = lo.max(floor + 1),
            Op::Ge => lo = lo.max(floor + i128::from(!exact)),
            Op::Lt => hi = hi.min(floor - i128::from(exact)),
            Op::Le => hi = hi.min(floor),
            _ => {}
        }
    }
    let partitions = match bounds {
        Some(bounds) if matches!(bounds.first(), Some(Bound::Range(..))) => Ranges(
            bounds
                .iter()
                .filter_map(|b| match b {
                    Bound::Range(from, to) => {
                        let from = match from {
                            Some(f) => parse_unit(f, unit)?.0,
                            None => lo,
                        };
                        let to = match to {
                            Some(t) => parse_unit(t, unit)?.0 - 1,
                            None => hi,
                        };
                        Some((from, to))
                    }
                    _ => None,
                })
                .collect(),
        ),
        _ => Ranges::one(lo, hi),
    };
    let ranges = partitions.clamp(lo, hi);
    if ranges.is_empty() {
        return Err("no value satisfies its constraints".into());
    }
    Ok(Span {
        usual: ranges.prefer(window.0, window.1),
        unique: ranges.prefer(window.0, i128::MAX),
    })
}

/// Shuffles `keys` with `rng` (Fisher–Yates), for foreign keys taken one per row.
pub fn shuffle(keys: &mut [Vec<String>], rng: &mut Rng) {
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_in_units() {
        assert_eq!(parse_unit("1.005", Unit::Scaled(2)), Some((100, false)));
        assert_eq!(parse_unit("-1.005", Unit::Scaled(2)), Some((-101, false)));
        assert_eq!(parse_unit("-5", Unit::Scaled(0)), Some((-5, true)));
        assert_eq!(parse_unit("2000-01-02", Unit::Days), Some((1, true)));
        assert_eq!(
            parse_unit("2000-01-01 01:00:00+01", Unit::Seconds),
            Some((0, true))
        );
        assert_eq!(
            parse_unit("2000-01-01 00:00:00-05:30", Unit::Seconds),
            Some((19_800, true))
        );
    }

    #[test]
    fn ranges_follow_checks_partitions_and_windows() {
        let rules = [
            Rule::Compare(Op::Gt, "0".into()),
            Rule::Compare(Op::Le, "100".into()),
        ];
        let r = ranges_for(Unit::Scaled(0), -1000, 1000, (1, 1_000_000), &rules, None).unwrap();
        assert_eq!(r.usual, Ranges::one(1, 100));
        let r = ranges_for(Unit::Scaled(0), -5, 5_000_000, (1, 1_000_000), &[], None).unwrap();
        assert_eq!(r.usual, Ranges::one(1, 1_000_000));
        assert_eq!(
            r.unique,
            Ranges::one(1, 5_000_000),
            "unique values count past the window"
        );
        let bounds = [
            Bound::Range(Some("2024-01-01".into()), Some("2024-02-01".into())),
            Bound::Range(Some("2024-02-01".into()), Some("2024-03-01".into())),
        ];
        let r = ranges_for(
            Unit::Days,
            day(1, 1, 1),
            day(9999, 1, 1),
            (day(2021, 1, 1), day(2025, 12, 31)),
            &[],
            Some(&bounds),
        )
        .unwrap();
        assert_eq!(
            r.usual,
            Ranges(vec![
                (day(2024, 1, 1), day(2024, 1, 31)),
                (day(2024, 2, 1), day(2024, 2, 29))
            ])
        );
        let none = [
            Rule::Compare(Op::Gt, "5".into()),
            Rule::Compare(Op::Lt, "6".into()),
        ];
        assert!(ranges_for(Unit::Scaled(0), 0, 10, (0, 10), &none, None).is_err());
    }
}
