//! `provisioner`: seed PostgreSQL with test accounts from CSV, fast and without losing or
//! duplicating a row.
//!
//! The data's path, one module a stage:
//! [`read`] (CSV with COPY's semantics) → [`check`] (rows the server would refuse) →
//! [`batch`] (fixed-size batches, encoded by [`encode`]) → [`write`](mod@write) (one COPY per
//! transaction over the [`connect`] pool) → [`ledger`] (runs and committed batches, in the
//! target database) → [`report`] (progress, summary, JSON). [`catalog`] and [`plan`] check
//! the target before any data moves; [`retry`] decides which failures are replayed;
//! [`reject`] keeps refused rows aside in reject mode; [`seed`] wires the stages together.
//! `purge` runs [`delete`] through the same [`pipeline`] (bounded channel, writers with
//! retries, signals), paced by [`throttle`]; [`error`] maps failures to exit codes;
//! [`generate`] writes benchmark data; [`cli`] is the command line.

pub mod batch;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod connect;
pub mod delete;
pub mod encode;
pub mod error;
pub mod generate;
pub mod ledger;
pub mod pipeline;
pub mod plan;
pub mod purge;
pub mod read;
pub mod reject;
pub mod report;
pub mod retry;
pub mod seed;
pub mod throttle;
pub mod write;

pub use error::Error;
pub use pipeline::Finished;
