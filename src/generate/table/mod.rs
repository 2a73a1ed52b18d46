//! `generate --table`: CSV that `seed` (and `psql \copy`) loads into a table as the catalog
//! describes it. [`prepare`] reads the table and plans each column (and refuses what cannot
//! be generated before a row is written); [`write`] streams the rows in constant memory:
//! nothing is kept of earlier rows but the keys of the current self-reference block.
//!
//! The same `--seed` against the same database gives the same bytes: the values come from
//! one seeded sequence, the parent keys from a repeatable sample in key order.

mod check;
mod fake;
mod plan;
mod template;
mod value;

use std::io::Write;

pub use plan::{Plan, TableOptions, prepare};
pub use template::Template;

use super::WriteError;
use super::feeder::Feeder;
use super::password::{Logins, each_account};
use super::rng::Rng;
use plan::{BLOCK, Source};
use value::Row;

/// Writes the header and `opts.count` rows of `plan` to `out`, and each account's login to
/// `feeder`; `hashed` is told how many accounts were hashed so far.
pub fn write(
    plan: &Plan,
    opts: &TableOptions,
    out: &mut impl Write,
    mut feeder: Option<&mut Feeder>,
    hashed: &dyn Fn(u64),
) -> Result<(), WriteError> {
    let mut rng = Rng(opts.seed);
    let logins = opts.passwords.as_ref().map(|p| Logins::new(p, opts.seed));
    // Keys taken one per row, in a shuffled order.
    let mut foreign = plan.foreign.clone();
    for f in foreign.iter_mut().filter(|f| f.distinct) {
        plan::shuffle(&mut f.keys, &mut rng);
    }
    let output = WriteError::Output;
    let mut line = String::with_capacity(1024);
    let names: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_field(name, &mut line);
    }
    line.push('\n');
    out.write_all(line.as_bytes()).map_err(output)?;
    if let Some(feeder) = feeder.as_deref_mut() {
        feeder.begin().map_err(WriteError::Feeder)?;
    }
    // Each column's value in this row, its buffer kept from row to row; `present` false: NULL.
    let mut fields: Vec<String> = vec![String::new(); plan.columns.len()];
    let mut present: Vec<bool> = vec![false; plan.columns.len()];
    // The key picked for each foreign key in this row (None: NULL).
    let mut picked: Vec<Option<usize>> = vec![None; foreign.len()];
    // The keys of this block's rows, per self-reference.
    let mut block: Vec<Vec<Vec<String>>> = vec![Vec::new(); plan.earlier.len()];
    each_account(opts.count, logins, hashed, |index, login| {
        let row = Row {
            index,
            number: plan.base + index + 1,
        };
        for (f, pick) in foreign.iter().zip(picked.iter_mut()) {
            *pick = if rng.bernoulli(f.null_rate) {
                None
            } else if f.distinct {
                Some(index as usize)
            } else {
                Some(rng.below(f.keys.len() as u64) as usize)
            };
        }
        for ((c, field), present) in plan.columns.iter().zip(&mut fields).zip(&mut present) {
            field.clear();
            *present = false;
            if rng.bernoulli(c.null_rate) {
                continue;
            }
            match &c.source {
                Source::Value(v) => v.write(&mut rng, row, c.unique, &opts.domain, field),
                Source::Set(t) => t.write(row, field),
                Source::Foreign { fk, part } => match picked[*fk] {
                    Some(k) => field.push_str(&foreign[*fk].keys[k][*part]),
                    None => continue,
                },
                Source::Password => field.push_str(&login.expect("a password column has logins").1),
                // Filled below, once the row's own key is known.
                Source::Earlier { .. } => continue,
            }
            *present = true;
        }
        for (r, reference) in plan.earlier.iter().enumerate() {
            let keys = &mut block[r];
            if index % BLOCK == 0 {
                keys.clear();
            }
            let own: Vec<String> = reference.key.iter().map(|&k| fields[k].clone()).collect();
            let target = if keys.is_empty() || rng.bernoulli(reference.null_rate) {
                (!reference.nullable).then_some(&own)
            } else {
                Some(&keys[rng.below(keys.len() as u64) as usize])
            };
            for ((c, field), present) in plan.columns.iter().zip(&mut fields).zip(&mut present) {
                if let Source::Earlier {
                    reference: at,
                    part,
                } = c.source
                    && at == r
                    && let Some(t) = target
                {
                    field.push_str(&t[part]);
                    *present = true;
                }
            }
            keys.push(own);
        }
        line.clear();
        for (n, (value, present)) in fields.iter().zip(&present).enumerate() {
            if n > 0 {
                line.push(',');
            }
            if *present {
                csv_field(value, &mut line);
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes()).map_err(output)?;
        if let (Some(feeder), Some((password, _))) = (feeder.as_deref_mut(), login) {
            let values: Vec<&str> = plan.login.iter().map(|&k| fields[k].as_str()).collect();
            feeder
                .account(&values, password)
                .map_err(WriteError::Feeder)?;
        }
        Ok(())
    })?;
    super::finish(out, feeder)
}

/// `value` as a CSV field that COPY reads back as it is: quoted when empty (an unquoted
/// empty field is NULL), or when it holds a delimiter, a quote, a line end or a backslash
/// (`\.` alone would end the data).
fn csv_field(value: &str, out: &mut String) {
    if !value.is_empty() && !value.contains([',', '"', '\n', '\r', '\\']) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}
