//! The library's error type, the exit code each error maps to, and the one place the exit
//! codes are documented ([`EXIT_CODES`], which `--help` prints and the README repeats; a test
//! keeps the two equal).
//!
//! Every message is written for the DBA at the terminal: it names the CSV line and column
//! where there is one, and the server's own words and SQLSTATE where the server refused.
//! No variant ever carries a password: connection targets are described without it.
//!
//! This module is the bottom of the crate: it names nothing else in it.

use std::fmt::{self, Write as _};

/// Exit code: the run finished.
pub const EXIT_OK: i32 = 0;
/// Exit code: the run failed (bad data, server refused, connection lost).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage or configuration error, detected before anything was written.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the run finished, but rows were rejected (reject mode, `--rejects`); they
/// are in the rejects file.
pub const EXIT_REJECTED: i32 = 3;
/// Exit code: interrupted (Ctrl-C, SIGTERM); the run can be resumed.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Every exit code and what it means: `--help` prints this table and the README repeats it
/// (a test compares the two).
pub const EXIT_CODES: [(i32, &str); 5] = [
    (EXIT_OK, "Done."),
    (
        EXIT_FAILED,
        "Failed: bad row, server error, retries ran out, or no connection; committed batches stay.",
    ),
    (
        EXIT_USAGE,
        "Usage or configuration error, or a refusal (privileges, resume, FKs); nothing was written.",
    ),
    (
        EXIT_REJECTED,
        "Done, but rows were rejected into the --rejects file (seed only).",
    ),
    (
        EXIT_INTERRUPTED,
        "Interrupted by Ctrl-C or SIGTERM; with a ledger, the message prints how to resume.",
    ),
];

/// A row refused by a client-side check or by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Physical line where the record starts.
    pub line: u64,
    /// The column, where the check or the server's error names one.
    pub column: Option<String>,
    /// The server's SQLSTATE, or for a client-side check the one the server gives for the
    /// same problem.
    pub sqlstate: String,
    pub reason: String,
    /// The value, shortened and escaped, when the reason does not show it already.
    pub value: Option<String>,
    /// The record's text as it was in the input (reject mode only).
    pub raw: Vec<u8>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        write!(f, ": {}", self.reason)?;
        if let Some(value) = &self.value {
            write!(f, ", value {value}")?;
        }
        write!(f, " [SQLSTATE {}]", self.sqlstate)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, the environment or the target table does not allow the run; nothing was written.
    #[error("{0}")]
    Usage(String),

    /// The role lacks privileges the run needs: each is named with the GRANT that gives it,
    /// all at once. `note` says what to do besides granting, where there is more to say.
    #[error(
        "{}\nNothing was written or deleted.{}",
        lacking.join("\n"),
        note.as_ref().map(|n| format!("\n{n}")).unwrap_or_default()
    )]
    MissingPrivileges {
        lacking: Vec<String>,
        note: Option<String>,
    },

    /// `--resume` names no run that can go on with this input, table and options.
    #[error("{0}")]
    ResumeRefused(String),

    /// Foreign keys would block a purge, and `--cascade` was not given.
    #[error(
        "rows of {table} are referenced by foreign keys that would block the delete:\n  - {}\n\
         Nothing was deleted. --cascade deletes the referencing rows first, in the same \
         transaction.",
        references.join("\n  - ")
    )]
    BlockingForeignKeys {
        table: String,
        references: Vec<String>,
    },

    /// The CSV header does not fit the target table; nothing was written.
    #[error("the CSV header does not match table {table}:\n  - {}", problems.join("\n  - "))]
    Header {
        table: String,
        problems: Vec<String>,
    },

    /// The async runtime could not start (threads, file descriptors): the machine's trouble.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),

    /// The input file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Input {
        path: String,
        source: std::io::Error,
    },

    /// The output (`generate`'s stdout) could not be written.
    #[error("cannot write to {path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },

    /// A record the reader cannot turn into a row.
    #[error("line {line}: {reason}")]
    Csv { line: u64, reason: String },

    /// A row a client-side check or the server refused, in stop mode.
    #[error("{0}")]
    Rejected(Box<Rejection>),

    /// Reject mode: more rows were refused than `--max-errors` allows.
    #[error("more than {limit} rows rejected (--max-errors {limit}); the one over: {last}")]
    TooManyRejects { limit: u64, last: Box<Rejection> },

    /// The rejects file could not be written during the run. `kept`: the rejected rows are
    /// in the ledger too, and a resumed run writes the file again from there.
    #[error(
        "cannot write the rejects file {path}: {source}{}",
        if *kept {
            "; the rejected rows are kept in the ledger, and resuming the run writes the file \
             again"
        } else {
            ""
        }
    )]
    RejectsFile {
        path: String,
        source: std::io::Error,
        kept: bool,
    },

    /// No connection could be made at start-up.
    #[error("could not connect to {target}: {cause}")]
    Connect { target: String, cause: String },

    /// A statement outside a COPY batch failed: catalog lookup, table creation, the
    /// ledger, or a purge batch of recorded keys or pages.
    #[error("{context}: {}", describe_pg(source))]
    Database {
        context: String,
        source: tokio_postgres::Error,
    },

    /// A batch failed; `line` and `column` are set when the server named the row.
    #[error("{}", describe_batch_failure(self))]
    Batch {
        seq: u64,
        first_line: u64,
        last_line: u64,
        line: Option<u64>,
        column: Option<String>,
        source: tokio_postgres::Error,
    },

    /// A batch outlived `--batch-timeout`: its connection was dropped (and its transaction
    /// with it). Retried like a lost connection.
    #[error(
        "batch {seq} ({span}) did not finish within --batch-timeout ({}s); its connection was dropped",
        limit.as_secs_f64()
    )]
    BatchTimeout {
        seq: u64,
        span: String,
        limit: std::time::Duration,
    },

    /// The connection pool could not hand out a connection.
    #[error("{}", describe_pool(.0))]
    Pool(deadpool_postgres::PoolError),

    /// A transient failure kept coming back until the retry policy gave up.
    #[error("gave up after {retries} retries: {last}")]
    RetriesExhausted { retries: u32, last: Box<Error> },

    /// A resumed run met a batch that differs from the one committed under the same number.
    #[error(
        "the input changed since the run started: batch {seq} (lines {first_line}-{last_line}) \
         differs from the batch committed then; refusing to go on"
    )]
    InputChanged {
        seq: u64,
        first_line: u64,
        last_line: u64,
    },

    /// A seed batch whose rows' keys come from the file inserted fewer rows than it sent: a
    /// `BEFORE INSERT` trigger created since the run started skipped some, so the file's
    /// keys are not the inserted rows' and the ledger cannot record them.
    #[error(
        "batch {seq} ({span}): the server inserted {inserted} of the {sent} rows sent; a \
         BEFORE INSERT trigger created or enabled since the run started skipped the others, so \
         the file's keys are not those of the rows inserted. Nothing of the batch was kept: \
         --resume goes on and records the keys the server returns"
    )]
    TriggerSkipped {
        seq: u64,
        span: String,
        inserted: u64,
        sent: u64,
    },
    /// Another attempt took the run over (this one had not renewed its lease in time, and
    /// it expired): this one stopped after its batches in flight.
    #[error(
        "run {run_id} was taken over by another attempt (this one could not renew its lease \
         in time); this attempt stopped: see provisioner runs show {run_id}"
    )]
    LeaseLost { run_id: i64 },

    /// A failure reading or writing one input of a run of many inputs: the input's name,
    /// then the failure (whose line and column are that input's).
    #[error("{input}: {source}")]
    InInput { input: String, source: Box<Error> },

    /// A run of many inputs failed in another process (an input failed there).
    #[error("run {run_id} failed in another process ({error}); this process stopped too")]
    FailedElsewhere { run_id: i64, error: String },

    /// Stopped by a signal; in-flight batches committed or rolled back.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Every variant is listed, so a new one must choose its code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_)
            | Error::MissingPrivileges { .. }
            | Error::ResumeRefused(_)
            | Error::BlockingForeignKeys { .. }
            | Error::Header { .. } => EXIT_USAGE,
            Error::Runtime(_)
            | Error::Input { .. }
            | Error::Output { .. }
            | Error::Csv { .. }
            | Error::Rejected(_)
            | Error::TooManyRejects { .. }
            | Error::RejectsFile { .. }
            | Error::Connect { .. }
            | Error::Database { .. }
            | Error::Batch { .. }
            | Error::BatchTimeout { .. }
            | Error::Pool(_)
            | Error::RetriesExhausted { .. }
            | Error::InputChanged { .. }
            | Error::TriggerSkipped { .. }
            | Error::LeaseLost { .. }
            | Error::FailedElsewhere { .. } => EXIT_FAILED,
            Error::InInput { source, .. } => source.exit_code(),
            Error::Interrupted => EXIT_INTERRUPTED,
        }
    }

    pub fn database(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::Database {
            context: context.into(),
            source,
        }
    }
}

fn describe_batch_failure(err: &Error) -> String {
    let Error::Batch {
        seq,
        first_line,
        last_line,
        line,
        column,
        source,
    } = err
    else {
        unreachable!("only called for Error::Batch")
    };
    let mut out = match line {
        Some(line) => format!("line {line}"),
        None => format!("batch {seq} (lines {first_line}-{last_line})"),
    };
    if let Some(column) = column {
        let _ = write!(out, ", column {column}");
    }
    let _ = write!(out, ": {}", describe_pg(source));
    out
}

/// The server's message, detail and hint, without the SQLSTATE.
pub fn server_reason(db: &tokio_postgres::error::DbError) -> String {
    let mut out = db.message().to_string();
    if let Some(detail) = db.detail() {
        let _ = write!(out, " ({detail})");
    }
    if let Some(hint) = db.hint() {
        let _ = write!(out, " hint: {hint}");
    }
    out
}

fn describe_pool(err: &deadpool_postgres::PoolError) -> String {
    match err {
        deadpool_postgres::PoolError::Backend(pg) => describe_pg(pg),
        other => format!("connection pool: {other}"),
    }
}

/// One line saying what the server or the socket said: message, detail, hint and SQLSTATE
/// for a server error, the chain of causes otherwise.
pub fn describe_pg(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} [SQLSTATE {}]", server_reason(db), db.code().code());
    }
    let mut out = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        let _ = write!(out, ": {c}");
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_header_errors_exit_2_others_exit_1() {
        assert_eq!(Error::Usage("x".into()).exit_code(), EXIT_USAGE);
        let header = Error::Header {
            table: "accounts".into(),
            problems: vec!["unknown column \"nope\"".into()],
        };
        assert_eq!(header.exit_code(), EXIT_USAGE);
        assert!(header.to_string().contains("unknown column \"nope\""));
        let csv = Error::Csv {
            line: 7,
            reason: "expected 3 fields, found 2".into(),
        };
        assert_eq!(csv.exit_code(), EXIT_FAILED);
        assert_eq!(csv.to_string(), "line 7: expected 3 fields, found 2");
    }

    #[test]
    fn refusals_are_told_apart_and_all_exit_2() {
        let privileges = Error::MissingPrivileges {
            lacking: vec![
                "role r lacks INSERT on table public.a: GRANT INSERT ON \"public\".\"a\" TO \"r\""
                    .into(),
                "role r lacks CREATE on database d: GRANT CREATE ON DATABASE \"d\" TO \"r\"".into(),
            ],
            note: Some("The ledger in schema provisioner is missing or behind.".into()),
        };
        assert_eq!(
            privileges.to_string(),
            "role r lacks INSERT on table public.a: GRANT INSERT ON \"public\".\"a\" TO \"r\"\n\
             role r lacks CREATE on database d: GRANT CREATE ON DATABASE \"d\" TO \"r\"\n\
             Nothing was written or deleted.\n\
             The ledger in schema provisioner is missing or behind."
        );
        let blocked = Error::BlockingForeignKeys {
            table: "public.accounts".into(),
            references: vec!["public.notes(account_id) via notes_fk ON DELETE NO ACTION".into()],
        };
        assert!(blocked.to_string().starts_with(
            "rows of public.accounts are referenced by foreign keys that would block the \
             delete:\n  - public.notes(account_id) via notes_fk ON DELETE NO ACTION\n\
             Nothing was deleted."
        ));
        for refusal in [
            privileges,
            blocked,
            Error::ResumeRefused("--resume 3: the run is already completed".into()),
        ] {
            assert_eq!(refusal.exit_code(), EXIT_USAGE, "{refusal}");
        }
        assert_eq!(Error::Interrupted.exit_code(), EXIT_INTERRUPTED);
    }

    #[test]
    fn every_exit_code_is_documented_once() {
        let codes: Vec<i32> = EXIT_CODES.iter().map(|(code, _)| *code).collect();
        assert_eq!(
            codes,
            [
                EXIT_OK,
                EXIT_FAILED,
                EXIT_USAGE,
                EXIT_REJECTED,
                EXIT_INTERRUPTED
            ]
        );
    }
}
