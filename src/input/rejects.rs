//! Reject mode (`--rejects FILE [--max-errors N]`): rows the checks or the server refuse are
//! set aside instead of stopping the run, written to a rejects file, and counted against a
//! budget shared by the reader and every writer.
//!
//! The rejects file is CSV in the input's own dialect: the input's header followed by
//! `rejected_line`, `rejected_column`, `rejected_sqlstate` and `rejected_reason`, then one
//! line per rejected row: the record's text exactly as it was in the input, then those
//! four fields. A batch's rejects are written only after its transaction committed, so a
//! retried batch never writes them twice; a resumed run appends.
//!
//! The budget is exact across parallel writers: a rejection is reserved when it is found
//! (the run fails as soon as a reservation would exceed the limit) and released when the
//! transaction that found it fails and will be replayed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::csv::{Dialect, quote_into};
use crate::error::{Error, Rejection};

/// Columns the rejects file adds after the input's own.
pub const EXTRA_COLUMNS: [&str; 4] = [
    "rejected_line",
    "rejected_column",
    "rejected_sqlstate",
    "rejected_reason",
];

/// The rejects file and the budget of rejections.
#[derive(Debug)]
pub struct Rejects {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    dialect: Dialect,
    /// `--max-errors`: more rejected rows than this fail the run; `None`: no limit.
    limit: Option<u64>,
    /// Rejections reserved so far, those of batches committed before a resume included.
    used: AtomicU64,
}

impl Rejects {
    /// Opens `path`: truncated for a new run, appended to by a resumed one (`append`). The
    /// header (`header_raw`, the input's header as it was, plus [`EXTRA_COLUMNS`]) is
    /// written when the file is empty.
    pub fn open(
        path: &Path,
        header_raw: &[u8],
        dialect: &Dialect,
        append: bool,
        limit: Option<u64>,
    ) -> Result<Self, Error> {
        let fail = |source| Error::RejectsFile {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(fail)?;
        if file.metadata().map_err(fail)?.len() == 0 {
            let mut header = header_raw.to_vec();
            for name in EXTRA_COLUMNS {
                header.push(dialect.delimiter);
                header.extend_from_slice(name.as_bytes());
            }
            header.push(b'\n');
            file.write_all(&header).map_err(fail)?;
        }
        Ok(Rejects {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            dialect: dialect.clone(),
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Counts the rows a resumed run rejected before against the budget.
    pub fn rejected_before(&self, n: u64) {
        self.used.fetch_add(n, Ordering::SeqCst);
    }

    /// Counts one rejection against the budget; fails the run when it would exceed it.
    pub fn reserve(&self, rejection: &Rejection) -> Result<(), Error> {
        let limit = self.limit.unwrap_or(u64::MAX);
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < limit).then_some(used + 1)
            })
            .map(|_| ())
            .map_err(|_| Error::TooManyRejects {
                limit,
                last: Box::new(rejection.clone()),
            })
    }

    /// Gives back `n` reservations of a transaction that failed and will be replayed.
    pub fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::SeqCst);
    }

    /// Appends the rejected rows of one committed batch, in line order.
    pub fn write(&self, rejections: &[Rejection]) -> Result<(), Error> {
        if rejections.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&Rejection> = rejections.iter().collect();
        sorted.sort_by_key(|r| r.line);
        let d = &self.dialect;
        let mut out = Vec::new();
        for r in sorted {
            out.extend_from_slice(&r.raw);
            out.push(d.delimiter);
            out.extend_from_slice(r.line.to_string().as_bytes());
            out.push(d.delimiter);
            if let Some(column) = &r.column {
                quote_into(&mut out, column.as_bytes(), d);
            }
            out.push(d.delimiter);
            quote_into(&mut out, r.sqlstate.as_bytes(), d);
            out.push(d.delimiter);
            quote_into(&mut out, r.reason.as_bytes(), d);
            out.push(b'\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&out).map_err(|source| Error::RejectsFile {
            path: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(line: u64) -> Rejection {
        Rejection {
            line,
            column: Some("email".into()),
            sqlstate: "23514".into(),
            reason: "new row violates check constraint \"c\"".into(),
            value: None,
            raw: format!("{line},\"a\nb\"").into_bytes(),
        }
    }

    #[test]
    fn the_budget_is_exact_and_released_reservations_come_back() {
        let dir = std::env::temp_dir().join(format!("rejects-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("budget.csv");
        let rejects = Rejects::open(&path, b"a,b", &Dialect::default(), false, Some(2)).unwrap();
        rejects.rejected_before(1);
        rejects.reserve(&rejection(2)).unwrap();
        let err = rejects.reserve(&rejection(3)).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        rejects.release(1);
        rejects.reserve(&rejection(3)).unwrap();
        rejects.write(&[rejection(9), rejection(4)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "a,b,rejected_line,rejected_column,rejected_sqlstate,rejected_reason\n\
             4,\"a\nb\",4,\"email\",\"23514\",\"new row violates check constraint \"\"c\"\"\"\n\
             9,\"a\nb\",9,\"email\",\"23514\",\"new row violates check constraint \"\"c\"\"\"\n"
        );
        // A resumed run appends without a second header.
        drop(rejects);
        let again = Rejects::open(&path, b"a,b", &Dialect::default(), true, None).unwrap();
        again.write(&[rejection(11)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("rejected_line").count(), 1);
        assert!(
            text.ends_with(
                "11,\"email\",\"23514\",\"new row violates check constraint \"\"c\"\"\"\n"
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
