//! `generate`: CSV rows for `seed`, deterministic for a given `--seed`.
//!
//! Without `--table`, realistic accounts in the example table's layout ([`example`]); with
//! it, rows for any table as the catalog describes it ([`table`]). Either can hold real
//! password hashes ([`password`]) and write the load generator's feeder ([`feeder`]).

pub mod calendar;
pub mod example;
pub mod feeder;
pub mod password;
pub mod rng;
pub mod table;

pub use example::{GenerateOptions, generate};
pub use feeder::{Feeder, FeederFormat};
pub use password::{Hasher, Passwords, Scheme};

/// Where a write failed: the CSV output or the feeder.
#[derive(Debug)]
pub enum WriteError {
    Output(std::io::Error),
    Feeder(std::io::Error),
}

/// Ends the feeder and flushes the output, once every row is written.
fn finish(out: &mut impl std::io::Write, feeder: Option<&mut Feeder>) -> Result<(), WriteError> {
    if let Some(feeder) = feeder {
        feeder.end().map_err(WriteError::Feeder)?;
    }
    out.flush().map_err(WriteError::Output)
}
