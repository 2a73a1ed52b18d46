//! `provisioner`: seed PostgreSQL with test accounts from CSV, fast and without losing or
//! duplicating a row, and purge exactly those rows afterwards.
//!
//! # The data's path
//! read (`input`: source, COPY-compatible CSV, client-side checks, rejects file) →
//! batch and encode (`copy`) → write (COPY or DELETE, in the transactions of the `run`
//! engine) → record (the ledger in `db`) → report (`run`'s report). `seed` and
//! `purge` wire those stages together; `cli` is the command line.
//!
//! # Layers
//! Lowest first; a module never names a module of a higher layer (a test in
//! `tests/it/layers.rs` checks every `crate::` path against this list):
//!
//! 1. `error` (the error type, exit codes) and `model` (plain data: commands, statuses,
//!    outcomes)
//! 2. `db`: connecting, the catalog, privileges, retry classification, the ledger
//! 3. `run`: the engine both commands share (units, writers, transactions, throttle,
//!    report, start and finish)
//! 4. `input`: source, CSV reader, checks, rejects file
//! 5. `copy`: COPY encoding, batches, COPY streams
//! 6. `seed`, `purge`, `generate`: the commands
//! 7. `cli`: flags → options → commands → exit code

pub mod cli;
mod copy;
mod db;
mod error;
mod generate;
mod input;
mod model;
mod purge;
mod run;
mod seed;

pub use error::Error;
pub use run::report::Console;

/// Connecting as `provisioner` does (libpq's rules for URLs, `PG*` variables, `.pgpass` and
/// `sslmode`), for tools and tests that must reach the same server.
pub mod connect {
    pub use crate::db::connect::{Endpoint, check, describe, pool, process_env, resolve};
}

/// Reading CSV exactly as `COPY … (FORMAT csv)` does.
pub mod read {
    pub use crate::input::csv::{CsvOptions, CsvReader, Dialect, Record, header};
    pub use crate::input::source::Source;
}

/// Encoding records for `COPY … FROM STDIN`, binary or CSV.
pub mod encode {
    pub use crate::copy::encode::{Encoder, Format, Layout, RowEncoder, select_rows};
}
