//! The integration tests of `provisioner`, all in one test binary (`cargo test --test it`),
//! so the harness is compiled and linked once rather than once per test file.
//!
//! Each module is one area (`seed_*`, `purge_*`, `faults_*`, `connect_*`, `throttle`, …);
//! its tests are named by module path, e.g. `cargo test --test it seed_roundtrip::`.
//!
//! The harness, [`common`], runs the real binary (`CARGO_BIN_EXE_provisioner`) as a child
//! process against a real PostgreSQL server (`DATABASE_URL`, else the libpq defaults): every
//! test makes its own [`common::TestDb`], a fresh uniquely named database with a scratch
//! directory, dropped (`WITH (FORCE)`) with it. Tests that must restart or reconfigure a
//! server start a private throwaway cluster ([`common::cluster`]); the fault tests put a TCP
//! proxy in between ([`common::proxy`]); the PgBouncer tests run a real PgBouncer
//! ([`common::bouncer`]). [`purge_support`] holds what the purge tests share.
//!
//! All tests share this one process and run in parallel threads: none may set process
//! environment variables, change the working directory, install signal handlers, or use a
//! fixed port, path, role or application name. Names come from [`common::unique_name`],
//! ports from the OS (`127.0.0.1:0`), and each child process gets its environment through
//! its own `Command`.
//!
//! The property tests (`fuzz_input`, `seed_roundtrip`) run with `failure_persistence: None`:
//! they read and write no regression files. (A `proptest!` here with proptest's default would
//! use `tests/proptest-regressions/<module>.txt`, next to the nearest `main.rs`; the
//! top-level `proptest-regressions/copy/encode.txt` belongs to the unit tests of `src/copy/encode.rs`.)

mod common;
mod purge_support;

mod connect_failures;
mod connect_secrets;
mod connect_service;
mod connect_session;
mod connect_tls;
mod connections_auto;
mod docs;
mod faults_interrupt;
mod faults_network;
mod faults_retry;
mod fuzz_input;
mod generate_logins;
mod generate_output;
mod generate_table;
mod hostile_names;
mod json_output;
mod layers;
mod least_privilege;
mod metrics;
mod packaging;
mod pgbouncer;
mod purge_exact;
mod purge_resume;
mod purge_safety;
mod purge_selectors;
mod resume_exact;
mod runs_output;
mod seed_bad_corpus;
mod seed_checks;
mod seed_conflicts;
mod seed_dry_run;
mod seed_errors;
mod seed_input;
mod seed_many;
mod seed_rejects;
mod seed_rejects_durable;
mod seed_roundtrip;
mod terminal;
mod throttle;
