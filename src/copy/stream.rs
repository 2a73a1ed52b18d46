//! `COPY … FROM STDIN` as both commands send it: the statements for either format, the
//! payload streamed in pieces, and where in the stream the server's error context says a
//! row failed.
//!
//! Invariant: the COPY is always finished (`finish`) or its transaction rolled back;
//! dropping the sink unfinished aborts it.

use bytes::Bytes;
use deadpool_postgres::Transaction;

use super::encode::Format;

/// The `COPY … FROM STDIN` statements into some columns of a table, one per format.
#[derive(Debug, Clone)]
pub struct CopyStatements {
    binary: String,
    csv: String,
}

impl CopyStatements {
    /// `into`: the quoted table; `columns`: its quoted, comma-separated columns.
    pub fn new(into: &str, columns: &str) -> Self {
        let copy = |format: Format| {
            format!(
                "COPY {into} ({columns}) FROM STDIN (FORMAT {})",
                format.sql()
            )
        };
        CopyStatements {
            binary: copy(Format::Binary),
            csv: copy(Format::Csv),
        }
    }

    /// Sends `payload`, encoded in `format`, and finishes the COPY; returns the rows copied.
    /// Prepared (named) and closed inside the transaction: nothing outlives it.
    pub async fn send(
        &self,
        tx: &Transaction<'_>,
        format: Format,
        payload: &Bytes,
    ) -> Result<u64, tokio_postgres::Error> {
        let sql = match format {
            Format::Binary => &self.binary,
            Format::Csv => &self.csv,
        };
        let sink = tx.copy_in::<_, Bytes>(sql.as_str()).await?;
        copy_payload(sink, payload).await
    }
}

/// Sends a COPY payload in pieces of this size: the driver buffers one piece at a time,
/// not a whole batch per connection.
const COPY_CHUNK: usize = 64 << 10;

/// Streams `payload` into a COPY `sink` and finishes it; returns the rows copied.
async fn copy_payload(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    payload: &bytes::Bytes,
) -> Result<u64, tokio_postgres::Error> {
    use futures_util::SinkExt;
    futures_util::pin_mut!(sink);
    let mut at = 0;
    while at < payload.len() {
        let end = (at + COPY_CHUNK).min(payload.len());
        sink.feed(payload.slice(at..end)).await?;
        at = end;
    }
    sink.as_mut().finish().await
}

/// The COPY row (its line within the COPY stream) and column a server error's context names.
pub fn copy_row(err: &tokio_postgres::Error) -> Option<(u64, Option<String>)> {
    copy_context(err.as_db_error()?.where_()?)
}

/// Parses COPY's error context into (line within the COPY stream, column).
fn copy_context(context: &str) -> Option<(u64, Option<String>)> {
    let copy = context.lines().find(|l| l.starts_with("COPY "))?;
    let rest = &copy[copy.find(", line ")? + ", line ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let row = rest[..digits].parse().ok()?;
    let column = rest[digits..].strip_prefix(", column ").map(|c| {
        let end = c.find(": ").unwrap_or(c.len());
        c[..end].to_string()
    });
    Some((row, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_context_gives_row_and_column() {
        assert_eq!(copy_context("COPY accounts, line 5"), Some((5, None)));
        assert_eq!(
            copy_context("COPY accounts, line 12, column email: \"a@b\""),
            Some((12, Some("email".into())))
        );
        assert_eq!(
            copy_context("PL/pgSQL function f() line 3 at RAISE\nCOPY t, line 7, column x"),
            Some((7, Some("x".into())))
        );
        assert_eq!(copy_context("SQL statement \"INSERT …\""), None);
    }
}
