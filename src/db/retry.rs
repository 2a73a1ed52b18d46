//! Which failures are worth another try, and how long to wait before it.
//!
//! This is the one place errors are classified. Transient: serialization failures,
//! deadlocks, lock timeouts, server shutdowns and restarts, too many connections, connection
//! exceptions (`08xxx`), a closed socket or I/O error, a pool timeout, a batch that outlived
//! `--batch-timeout` (its connection was dropped). Everything else —
//! data and constraint errors, syntax and privileges, and anything unknown — is permanent:
//! replaying it would fail the same way, or worse, succeed differently.
//!
//! The `backoff` crate only computes the delays (exponential, with jitter). Its retry
//! helpers are not used: they treat every `?` as transient and give up only after 15
//! minutes. Swapping it out means changing [`RetryPolicy::delays`] alone.
//!
//! Among permanent failures, [`is_row_error`] picks those one row causes (classes 22, 23
//! and P0, and 54000; see `ROW_CLASSES`), which reject mode isolates instead of failing,
//! and [`is_invalid_name`] those that say a name given by the user is malformed.

use std::time::Duration;

use backoff::backoff::Backoff as _;

use crate::error::Error;

/// Why a failure may be retried, for the warning that announces the retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Worth another try.
    Transient(Cause),
    Permanent,
}

/// Why a transient failure happened: `kind`, one of a few short names (the SQLSTATE's
/// condition name, `connection_closed`, `io_error`, `connect_failed`, `pool_timeout`,
/// `batch_timeout`), for counting retries by cause; and a text naming the SQLSTATE or the
/// cause, for the warning. Shown, it is the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub kind: &'static str,
    pub text: String,
}

/// A transient verdict of `kind`, shown as `text`.
fn transient(kind: &'static str, text: impl Into<String>) -> Verdict {
    Verdict::Transient(Cause {
        kind,
        text: text.into(),
    })
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// SQLSTATEs that say "try again", by exact code or by class (the first two characters).
const TRANSIENT_CODES: &[(&str, &str)] = &[
    ("40001", "serialization_failure"),
    ("40P01", "deadlock_detected"),
    ("55P03", "lock_not_available"),
    ("57P01", "admin_shutdown"),
    ("57P02", "crash_shutdown"),
    ("57P03", "cannot_connect_now"),
    ("53300", "too_many_connections"),
];
const TRANSIENT_CLASSES: &[(&str, &str)] = &[("08", "connection_exception")];

/// Classifies a SQLSTATE.
pub fn classify_sqlstate(code: &str) -> Verdict {
    if let Some((_, name)) = TRANSIENT_CODES.iter().find(|(c, _)| *c == code) {
        return transient(name, format!("SQLSTATE {code} {name}"));
    }
    if let Some((_, name)) = TRANSIENT_CLASSES.iter().find(|(c, _)| code.starts_with(c)) {
        return transient(name, format!("SQLSTATE {code} ({name})"));
    }
    Verdict::Permanent
}

/// SQLSTATEs of errors one row causes: data exceptions (`22`), integrity violations (`23`),
/// PL/pgSQL errors such as a trigger's `RAISE EXCEPTION` or failed `ASSERT` (`P0`), and a
/// value too large for an index entry (`54000`). A batch that fails with one of these would
/// load without the offending row, so reject mode sets that row aside.
const ROW_CLASSES: &[&str] = &["22", "23", "P0"];
const ROW_CODES: &[&str] = &["54000"];

/// Whether a SQLSTATE is one a single row causes (see `ROW_CLASSES`).
pub fn is_row_sqlstate(code: &str) -> bool {
    ROW_CODES.contains(&code) || ROW_CLASSES.iter().any(|c| code.starts_with(c))
}

/// Whether a failure is a server error a single row causes.
pub fn is_row_error(err: &tokio_postgres::Error) -> bool {
    err.as_db_error()
        .is_some_and(|db| is_row_sqlstate(db.code().code()))
}

/// SQLSTATEs the server gives for a table name it cannot parse (`parse_ident('"abc')`,
/// `to_regclass('a.b.c.d')`, another database's table): the user's mistake, not the
/// server's trouble.
const NAME_CODES: &[&str] = &["22023", "42601", "42602", "0A000"];

/// Whether a failure says a name given by the user is malformed.
pub fn is_invalid_name(err: &tokio_postgres::Error) -> bool {
    err.as_db_error()
        .is_some_and(|db| NAME_CODES.contains(&db.code().code()))
}

/// Classifies a driver error: by SQLSTATE when the server sent one, else by whether the
/// connection broke (closed socket, I/O error, broken TLS, connect timeout).
pub fn classify_pg(err: &tokio_postgres::Error) -> Verdict {
    if let Some(db) = err.as_db_error() {
        return classify_sqlstate(db.code().code());
    }
    if err.is_closed() {
        return transient("connection_closed", "connection closed");
    }
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return transient("io_error", format!("I/O error: {io}"));
        }
        cause = c.source();
    }
    // Errors while connecting or in TLS carry no io::Error we can see but are network
    // trouble all the same; tokio-postgres words them so.
    let text = err.to_string();
    if text.starts_with("error connecting to server")
        || text.starts_with("error performing TLS handshake")
        || text.starts_with("timeout waiting for server")
    {
        return transient("connect_failed", text);
    }
    Verdict::Permanent
}

/// Classifies one of the library's errors.
pub fn classify(err: &Error) -> Verdict {
    match err {
        Error::Batch { source, .. } | Error::Database { source, .. } => classify_pg(source),
        Error::Pool(pool) => match pool {
            deadpool_postgres::PoolError::Backend(pg) => classify_pg(pg),
            deadpool_postgres::PoolError::Timeout(_) => {
                transient("pool_timeout", "timed out waiting for a pooled connection")
            }
            _ => Verdict::Permanent,
        },
        Error::BatchTimeout { .. } => transient("batch_timeout", "--batch-timeout expired"),
        Error::InInput { source, .. } => classify(source),
        _ => Verdict::Permanent,
    }
}

/// How often and how long to retry a batch.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries of one batch before the run fails (0: never retry).
    pub max_retries: u32,
    /// Time since the batch's first failure after which no retry starts.
    pub max_elapsed: Duration,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 10,
            max_elapsed: Duration::from_secs(300),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delays before each retry: exponential (×2) from `initial_delay`, capped at
    /// `max_delay`, each randomised by ±50% so that writers that failed together do not
    /// retry together; ends after `max_retries` or `max_elapsed`.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let mut backoff = backoff::ExponentialBackoff {
            initial_interval: self.initial_delay,
            current_interval: self.initial_delay,
            randomization_factor: 0.5,
            multiplier: 2.0,
            max_interval: self.max_delay,
            max_elapsed_time: Some(self.max_elapsed),
            ..backoff::ExponentialBackoff::default()
        };
        backoff.reset();
        std::iter::from_fn(move || backoff.next_backoff()).take(self.max_retries as usize)
    }

    /// Runs `op` until it succeeds, fails permanently, or the policy gives up. Before each
    /// retry `on_retry` hears the attempt number, the cause and the delay (to log and count).
    pub async fn run<T, F, Fut>(
        &self,
        mut op: F,
        mut on_retry: impl FnMut(u32, &Cause, Duration),
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut delays = None;
        let mut retries = 0;
        loop {
            let err = match op().await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            let Verdict::Transient(cause) = classify(&err) else {
                return Err(err);
            };
            let Some(delay) = delays.get_or_insert_with(|| self.delays()).next() else {
                return Err(if retries == 0 {
                    err
                } else {
                    Error::RetriesExhausted {
                        retries,
                        last: Box::new(err),
                    }
                });
            };
            retries += 1;
            on_retry(retries, &cause, delay);
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_as_the_table_says() {
        let transient = [
            "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300", "08000", "08003",
            "08006", "08001", "08004",
        ];
        for code in transient {
            assert!(
                matches!(classify_sqlstate(code), Verdict::Transient(_)),
                "{code} should be transient"
            );
        }
        let permanent = [
            "22001", "22P02", "22007", "23505", "23514", "23503", "23502", "42P01", "42501",
            "42601", "XX000", "53100", "57014", "25P02", "0A000",
        ];
        for code in permanent {
            assert_eq!(classify_sqlstate(code), Verdict::Permanent, "{code}");
        }
        assert_eq!(
            classify_sqlstate("40P01"),
            Verdict::Transient(Cause {
                kind: "deadlock_detected",
                text: "SQLSTATE 40P01 deadlock_detected".into()
            })
        );
        let Verdict::Transient(cause) = classify_sqlstate("08006") else {
            panic!("08006 is transient")
        };
        assert_eq!(cause.kind, "connection_exception");
        assert_eq!(cause.to_string(), "SQLSTATE 08006 (connection_exception)");
    }

    #[test]
    fn row_errors_are_data_integrity_trigger_and_index_size_errors() {
        for code in [
            "22P02", "22001", "23505", "23503", "23514", "23502", "P0001", "P0004", "54000",
        ] {
            assert!(is_row_sqlstate(code), "{code}");
            assert_eq!(classify_sqlstate(code), Verdict::Permanent, "{code}");
        }
        for code in [
            "42501", "42P01", "40001", "57014", "XX000", "25P02", "54001",
        ] {
            assert!(!is_row_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn errors_without_a_server_error_are_permanent_unless_the_pool_timed_out() {
        assert_eq!(classify(&Error::Usage("x".into())), Verdict::Permanent);
        let timeout = Error::Pool(deadpool_postgres::PoolError::Timeout(
            deadpool_postgres::TimeoutType::Wait,
        ));
        assert!(matches!(classify(&timeout), Verdict::Transient(_)));
        assert_eq!(
            classify(&Error::Pool(deadpool_postgres::PoolError::Closed)),
            Verdict::Permanent
        );
    }

    #[test]
    fn delays_grow_stay_capped_and_stop_after_max_retries() {
        let policy = RetryPolicy {
            max_retries: 6,
            max_elapsed: Duration::from_secs(60),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 6);
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(150));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(1200)));
        assert!(delays[5] >= Duration::from_millis(400), "{delays:?}");
        let never = RetryPolicy {
            max_retries: 0,
            ..policy
        };
        assert_eq!(never.delays().count(), 0);
    }
}
