//! Reject mode (`--rejects FILE [--max-errors N]`): rows the checks or the server refuse are
//! set aside instead of stopping the run, written to a rejects file, and counted against a
//! budget shared by the reader and every writer.
//!
//! The rejects file is CSV in the input's own dialect: the input's header followed by
//! `rejected_line`, `rejected_column`, `rejected_sqlstate` and `rejected_reason`, then one
//! line per rejected row: the record's text exactly as it was in the input, then those
//! four fields. A batch's rejects are written only after its transaction committed (which
//! kept them in the ledger too), so a retried batch never writes them twice, and each write
//! is flushed to disk before the batch counts as done. A write that fails is undone (the
//! file is cut back to where it was: no half record stays) and the file takes no more: the
//! run fails, and a resumed run writes the file again from the ledger ([`Rejects::start_over`]).
//!
//! The budget is exact across parallel writers: a rejection is reserved when it is found
//! (the run fails as soon as a reservation would exceed the limit) and released when the
//! transaction that found it fails and will be replayed.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
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

/// The column a run of many inputs adds last: the input's name.
pub const INPUT_COLUMN: &str = "rejected_input";

/// The rejects file and the budget of rejections.
#[derive(Debug)]
pub struct Rejects {
    path: PathBuf,
    /// A run of many inputs: each row names its input in [`INPUT_COLUMN`].
    by_input: bool,
    /// The file's first line: the input's header and [`EXTRA_COLUMNS`].
    header: Vec<u8>,
    dialect: Dialect,
    /// The ledger keeps the rejected rows too, so a resumed run can write them again.
    kept: bool,
    out: Mutex<Output>,
    /// `--max-errors`: more rejected rows than this fail the run; `None`: no limit.
    limit: Option<u64>,
    /// Rejections reserved so far, those of batches committed before a resume included.
    used: AtomicU64,
}

#[derive(Debug)]
struct Output {
    file: File,
    /// A regular file, which can be cut back; anything else (a device, a pipe) is a stream.
    regular: bool,
    /// Why the first write that failed did: the file takes no more.
    failed: Option<io::Error>,
}

impl Rejects {
    /// Opens `path` and writes its header, flushed: a path that cannot take it (a missing
    /// directory, a directory, a full disk, `/dev/full`) refuses the run (exit 2) before
    /// anything is recorded. A new run's file is cut to nothing first. A resumed run's
    /// (`resume`) is not cut before the resume is accepted: it already begins with this
    /// very header, written over its own first line, and [`Rejects::start_over`] then
    /// writes it again from the ledger. `kept`: the ledger keeps the rejected rows too.
    pub fn open(
        path: &Path,
        header_raw: &[u8],
        dialect: &Dialect,
        resume: bool,
        kept: bool,
        limit: Option<u64>,
        by_input: bool,
    ) -> Result<Self, Error> {
        let refuse = |e: io::Error| {
            Error::Usage(format!(
                "--rejects {}: cannot write to it: {e}",
                path.display()
            ))
        };
        let mut header = header_raw.to_vec();
        let input = by_input.then_some(INPUT_COLUMN);
        for name in EXTRA_COLUMNS.into_iter().chain(input) {
            header.push(dialect.delimiter);
            header.extend_from_slice(name.as_bytes());
        }
        header.push(b'\n');
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(!resume)
            .open(path)
            .map_err(refuse)?;
        let regular = file.metadata().map_err(refuse)?.is_file();
        let written = if regular {
            file.write_all_at(&header, 0)
        } else {
            (&file).write_all(&header)
        };
        written.and_then(|()| flush(&file)).map_err(refuse)?;
        Ok(Rejects {
            path: path.to_path_buf(),
            by_input,
            header,
            dialect: dialect.clone(),
            kept,
            out: Mutex::new(Output {
                file,
                regular,
                failed: None,
            }),
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

    /// Appends the rejected rows of one committed batch (of the input named `input`, in a
    /// run of many inputs), in line order, flushed to disk. Fails, naming the file and the cause, when the write does or an earlier one did.
    pub fn write(&self, rejections: &[Rejection], input: Option<&str>) -> Result<(), Error> {
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
            if self.by_input {
                out.push(d.delimiter);
                quote_into(&mut out, input.unwrap_or_default().as_bytes(), d);
            }
            out.push(b'\n');
        }
        self.put(&out, false)
    }

    /// Cuts the file back to its header, for a resumed run to [`write`](Rejects::write)
    /// every row the ledger kept, in line order: that repairs a record a failed or
    /// interrupted write tore and adds the rows the file lacks. (A stream, which cannot be
    /// cut, got its header when it was opened.)
    pub fn start_over(&self) -> Result<(), Error> {
        self.put(&self.header, true)
    }

    /// Fails, naming the file and the cause, when a write to it failed: the run stops.
    pub fn check(&self) -> Result<(), Error> {
        let out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        match &out.failed {
            Some(e) => Err(self.error(again(e))),
            None => Ok(()),
        }
    }

    /// Writes `bytes` at the end of the file, or in place of everything (`over`), flushed
    /// to disk. A write that fails leaves the file as it was and no more writes go to it.
    fn put(&self, bytes: &[u8], over: bool) -> Result<(), Error> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = &out.failed {
            return Err(self.error(again(e)));
        }
        out.put(bytes, over).map_err(|e| {
            out.failed = Some(again(&e));
            self.error(e)
        })
    }

    fn error(&self, source: io::Error) -> Error {
        Error::RejectsFile {
            path: self.path.display().to_string(),
            source,
            kept: self.kept,
        }
    }
}

impl Output {
    fn put(&mut self, bytes: &[u8], over: bool) -> io::Result<()> {
        if !self.regular {
            if over {
                return Ok(());
            }
            self.file.write_all(bytes)?;
            return flush(&self.file);
        }
        let at = if over {
            self.file.set_len(0)?;
            0
        } else {
            self.file.metadata()?.len()
        };
        let written = self
            .file
            .write_all_at(bytes, at)
            .and_then(|()| flush(&self.file));
        if written.is_err() {
            // Best effort: cutting a file shorter needs no space.
            let _ = self.file.set_len(at);
        }
        written
    }
}

/// Flushes what was written to `file` to disk; a device or a pipe has nothing to flush.
fn flush(file: &File) -> io::Result<()> {
    match file.sync_data() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// The same failure again, for the next write that asks (`io::Error` is not `Clone`).
fn again(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
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
        let rejects = Rejects::open(
            &path,
            b"a,b",
            &Dialect::default(),
            false,
            true,
            Some(2),
            false,
        )
        .unwrap();
        rejects.rejected_before(1);
        rejects.reserve(&rejection(2)).unwrap();
        let err = rejects.reserve(&rejection(3)).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        rejects.release(1);
        rejects.reserve(&rejection(3)).unwrap();
        rejects.write(&[rejection(9), rejection(4)], None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "a,b,rejected_line,rejected_column,rejected_sqlstate,rejected_reason\n\
             4,\"a\nb\",4,\"email\",\"23514\",\"new row violates check constraint \"\"c\"\"\"\n\
             9,\"a\nb\",9,\"email\",\"23514\",\"new row violates check constraint \"\"c\"\"\"\n"
        );
        // A resumed run's file is not cut when it is opened, and gets no second header;
        // starting over leaves only the header, for the rows the ledger kept.
        drop(rejects);
        let again =
            Rejects::open(&path, b"a,b", &Dialect::default(), true, true, None, false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        again.write(&[rejection(11)], None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("rejected_line").count(), 1);
        assert!(
            text.ends_with(
                "11,\"email\",\"23514\",\"new row violates check constraint \"\"c\"\"\"\n"
            )
        );
        again.start_over().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a,b,rejected_line,rejected_column,rejected_sqlstate,rejected_reason\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_of_many_inputs_names_each_rows_input_last() {
        let dir = std::env::temp_dir().join(format!("rejects-inputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inputs.csv");
        let dialect = Dialect {
            delimiter: b';',
            ..Dialect::default()
        };
        let rejects = Rejects::open(&path, b"a;b", &dialect, false, true, None, true).unwrap();
        rejects
            .write(&[rejection(4)], Some("parts/p 1.csv"))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a;b;rejected_line;rejected_column;rejected_sqlstate;rejected_reason;rejected_input\n\
             4,\"a\nb\";4;\"email\";\"23514\";\"new row violates check constraint \"\"c\"\"\";\
             \"parts/p 1.csv\"\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
