//! Batching: groups records into fixed-size batches, encodes each into one COPY payload, and
//! hands it to the writers through a bounded channel.
//!
//! Every record passes the client-side [checks](crate::input::check) first: in stop mode the first
//! refused one ends the run before its batch is sent; in reject mode it travels with its
//! batch, outside the payload, to the rejects file.
//!
//! Boundaries are deterministic (every `size` records, refused ones included), so a batch is
//! the same batch on every run over the same input: that is what lets a resumed run skip the
//! batches the ledger says committed, after checking their content hash ([`verify_source`]
//! checks them all first when the file is not the one the run recorded). The channel's bound
//! is what keeps memory constant: the reader blocks when the writers fall behind.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use super::encode::{Format, Layout, Payload, RowEncoder, select_rows};
use super::stream::copy_row;
use crate::db::ledger::{BatchId, BatchLedger};
use crate::db::retry::is_row_error;
use crate::error::{Error, Rejection};
use crate::input::check::Checker;
use crate::input::csv::{self, CsvOptions, CsvReader, Record};
use crate::input::rejects::Rejects;
use crate::input::source::{self, Source};
use crate::run::report::Progress;
use crate::run::{ProduceEnd, Unit};

/// One batch: the unit of a COPY, a transaction, a ledger row and a retry.
#[derive(Debug, Clone)]
pub struct Batch {
    /// 1-based position in the input.
    pub seq: u64,
    /// Rows in the payload.
    pub rows: usize,
    pub first_line: u64,
    pub last_line: u64,
    /// Physical line where each row of the payload starts, to name the line the server
    /// refuses.
    pub lines: Vec<u64>,
    /// xxh3 of the fields of every record of the batch (rejected ones too), as the ledger
    /// records it.
    pub content_hash: u64,
    /// Where each row sits in the payload (and, for CSV, on which COPY line).
    pub layout: Layout,
    pub format: Format,
    pub payload: Bytes,
    /// The recorded key's values of every row, column-major JSON text, when the ledger
    /// records inserted keys and the rows go straight into the table.
    pub keys: Option<String>,
    /// Reject mode: the payload's records (their text goes to the rejects file, their keys
    /// into the ledger when only some of them are sent) and the fields of the recorded key.
    pub records: Option<Arc<[Record]>>,
    pub key_fields: Option<Arc<[usize]>>,
    /// Reject mode: the batch's records the client-side checks refused (not in the payload).
    pub rejected: Vec<Rejection>,
    /// The input it belongs to, in a run of many inputs.
    pub input: Option<Arc<InputTag>>,
}

/// The input of a run of many inputs that a batch belongs to.
#[derive(Debug)]
pub struct InputTag {
    /// Its name under the run's base directory, for the rejects file.
    pub name: String,
    /// Its ledger rows (each input is a run of its own); `None` without a ledger.
    pub ledger: Option<BatchLedger>,
    /// Dropped with the last holder (the input's batches and its reader): how the reader's
    /// lane learns that none of the input's batches is in flight any more.
    _landed: tokio::sync::oneshot::Sender<()>,
}

impl InputTag {
    /// The tag, and what resolves (with an error: the sender is dropped) once every holder
    /// of the tag dropped it.
    pub fn new(
        name: String,
        ledger: Option<BatchLedger>,
    ) -> (Arc<InputTag>, tokio::sync::oneshot::Receiver<()>) {
        let (landed, all_landed) = tokio::sync::oneshot::channel();
        let tag = InputTag {
            name,
            ledger,
            _landed: landed,
        };
        (Arc::new(tag), all_landed)
    }
}

impl Batch {
    /// The payload row on COPY's line `n` (as its error context counts).
    pub fn row_of_copy_line(&self, n: u64) -> Option<usize> {
        let row = if self.layout.copy_lines.is_empty() {
            usize::try_from(n.checked_sub(1)?).ok()?
        } else {
            self.layout
                .copy_lines
                .partition_point(|&start| start <= n)
                .checked_sub(1)?
        };
        (row < self.rows).then_some(row)
    }

    /// A failure of the batch, naming the file `line` and `column` where they are known.
    pub fn failed_at(
        &self,
        line: Option<u64>,
        column: Option<String>,
        source: tokio_postgres::Error,
    ) -> Error {
        Error::Batch {
            seq: self.seq,
            first_line: self.first_line,
            last_line: self.last_line,
            line,
            column,
            source,
        }
    }

    /// `e`, a failure of this batch, naming its input in a run of many inputs (the lines
    /// and columns it names are that input's). The rejects file's own failures name none.
    pub fn in_input(&self, e: Error) -> Error {
        match (&self.input, e) {
            (_, e @ (Error::RejectsFile { .. } | Error::TooManyRejects { .. })) | (None, e) => e,
            (Some(input), e) => Error::InInput {
                input: input.name.clone(),
                source: Box::new(e),
            },
        }
    }

    /// The name of its input, in a run of many inputs.
    pub fn input_name(&self) -> Option<&str> {
        self.input.as_deref().map(|i| i.name.as_str())
    }

    /// The file line of the row on COPY's line `n`.
    pub fn line_of_copy_line(&self, n: u64) -> Option<u64> {
        self.lines.get(self.row_of_copy_line(n)?).copied()
    }

    /// [`Batch::keys`] of only the payload rows `rows` (reject mode, which keeps the
    /// records; `None` otherwise).
    pub fn keys_of(&self, rows: &[usize]) -> Option<String> {
        let records = self.records.as_deref()?;
        let fields = self.key_fields.as_deref()?;
        Some(keys_json(rows.iter().map(|&i| &records[i]), fields))
    }

    /// The batch's payload rows `keep` (ascending), to send: a prefix while looking for a
    /// failing row, or the rows left after one was rejected. Only what sending needs is
    /// carried over (lines and payload); the records, keys and rejections stay with the
    /// whole batch, whose row numbers the caller keeps.
    pub fn select(&self, keep: &[usize]) -> Batch {
        let mut payload = Vec::new();
        let layout = select_rows(self.format, &self.payload, &self.layout, keep, &mut payload);
        Batch {
            rows: keep.len(),
            lines: keep.iter().map(|&i| self.lines[i]).collect(),
            layout,
            payload: payload.into(),
            keys: None,
            records: None,
            rejected: Vec::new(),
            key_fields: None,
            input: None,
            ..*self
        }
    }
}

impl Unit for Batch {
    fn id(&self) -> BatchId {
        BatchId {
            seq: self.seq,
            first_line: self.first_line,
            last_line: self.last_line,
            rows: (self.rows + self.rejected.len()) as u64,
            content_hash: self.content_hash,
        }
    }

    fn rows(&self) -> u64 {
        self.rows as u64
    }

    fn span(&self) -> String {
        match &self.input {
            Some(input) => format!(
                "{} lines {}-{}",
                input.name, self.first_line, self.last_line
            ),
            None => format!("lines {}-{}", self.first_line, self.last_line),
        }
    }

    fn ledger(&self) -> Option<&BatchLedger> {
        self.input.as_ref()?.ledger.as_ref()
    }

    /// The failure with the batch's lines, and the exact line and column when the server's
    /// error context names a COPY row (`COPY accounts, line 5, column email: "…"`) and the
    /// row caused it: a connection terminated or a statement timed out while COPY was at
    /// some row is no fault of that row's.
    fn error(&self, source: tokio_postgres::Error) -> Error {
        let named = copy_row(&source).filter(|_| is_row_error(&source));
        let (line, column) = named.map_or((None, None), |(row, column)| {
            (self.line_of_copy_line(row), column)
        });
        self.failed_at(line, column, source)
    }
}

/// Where batches start and end, and what each holds: every `size` records, refused ones
/// included, hashed field by field. The same on every reading of the same input, which is
/// what lets a resumed run skip the batches it committed, after checking their content.
struct Cutter {
    size: usize,
    hasher: Xxh3,
    /// [`Record::hash_into`]'s buffer.
    scratch: Vec<u8>,
    /// Records in the current batch so far.
    taken: usize,
    /// Batches cut so far.
    seq: u64,
    first_line: u64,
    last_line: u64,
}

/// A batch as [`Cutter`] cut it.
#[derive(Debug, Clone, Copy)]
struct Cut {
    seq: u64,
    records: usize,
    first_line: u64,
    last_line: u64,
    content_hash: u64,
}

impl Cutter {
    fn new(size: usize) -> Self {
        Cutter {
            size,
            hasher: Xxh3::new(),
            scratch: Vec::new(),
            taken: 0,
            seq: 0,
            first_line: 0,
            last_line: 0,
        }
    }

    /// Takes `rec` into the current batch; `true` when it is the batch's first.
    fn take(&mut self, rec: &Record) -> bool {
        rec.hash_into(&mut self.hasher, &mut self.scratch);
        let first = self.taken == 0;
        if first {
            self.first_line = rec.line();
        }
        self.last_line = rec.end_line();
        self.taken += 1;
        first
    }

    /// The number of the batch being filled.
    fn current(&self) -> u64 {
        self.seq + 1
    }

    /// Ends the current batch if it is complete: full, or the input ended (`more` false)
    /// with records in it.
    fn cut(&mut self, more: bool) -> Option<Cut> {
        if self.taken < self.size && (more || self.taken == 0) {
            return None;
        }
        self.seq += 1;
        let cut = Cut {
            seq: self.seq,
            records: self.taken,
            first_line: self.first_line,
            last_line: self.last_line,
            content_hash: self.hasher.digest(),
        };
        self.hasher.reset();
        self.taken = 0;
        Some(cut)
    }

    /// At the input's end: fails when `committed` holds a batch the input no longer
    /// reaches (it got shorter).
    fn ended(&self, committed: &HashMap<u64, u64>) -> Result<(), Error> {
        match committed.keys().filter(|&&s| s > self.seq).min() {
            Some(&extra) => Err(Error::InputChanged {
                seq: extra,
                first_line: 0,
                last_line: 0,
            }),
            None => Ok(()),
        }
    }
}

impl Cut {
    /// Whether a resumed run committed this batch (`committed`: sequence number → content
    /// hash); `InputChanged` when it committed other content under this number.
    fn committed(&self, committed: &HashMap<u64, u64>) -> Result<bool, Error> {
        match committed.get(&self.seq) {
            None => Ok(false),
            Some(&hash) if hash == self.content_hash => Ok(true),
            Some(_) => Err(Error::InputChanged {
                seq: self.seq,
                first_line: self.first_line,
                last_line: self.last_line,
            }),
        }
    }
}

/// Opens `source` again and checks the batches of `size` records a resumed run committed
/// (`committed`: sequence number → content hash) against it, on a blocking thread:
/// `InputChanged` at the first that differs or that the input no longer reaches. Nothing is
/// checked, encoded or sent: a resume runs this before anything is written when the input
/// file is not the one the run recorded.
pub async fn verify_source(
    source: Source,
    csv: CsvOptions,
    size: usize,
    committed: HashMap<u64, u64>,
) -> Result<(), Error> {
    tokio::task::spawn_blocking(move || {
        let input = source::open(&source)?;
        let (reader, _) = csv::header(input.reader, &csv, &source)?;
        verify_committed(reader, size, &committed)
    })
    .await
    .expect("the input check panicked")
}

/// [`verify_source`] past the header: reads `csv` in the batches [`Batcher::run`] cuts, up to
/// the last one `committed` holds.
fn verify_committed<R: BufRead>(
    mut csv: CsvReader<R>,
    size: usize,
    committed: &HashMap<u64, u64>,
) -> Result<(), Error> {
    let Some(&last) = committed.keys().max() else {
        return Ok(());
    };
    // As in reject mode: a defective record (unterminated, another line end) is a record, hashed as a batch held it.
    csv.hand_over_defective(true);
    let mut cutter = Cutter::new(size);
    let mut record = Record::default();
    loop {
        let more = csv.read(&mut record)?;
        if more {
            cutter.take(&record);
        }
        if let Some(cut) = cutter.cut(more) {
            cut.committed(committed)?;
            if cut.seq >= last {
                return Ok(());
            }
        }
        if !more {
            return cutter.ended(committed);
        }
    }
}

/// Turns a CSV stream into batches for the writers.
pub struct Batcher {
    pub encoder: RowEncoder,
    /// The client-side checks every record passes before it joins a batch.
    pub checker: Checker,
    /// Reject mode: where refused records go instead of stopping the run.
    pub rejects: Option<Arc<Rejects>>,
    pub size: usize,
    /// Batches a resumed run already committed: sequence number → content hash.
    pub committed: HashMap<u64, u64>,
    /// Fields whose values to collect per batch for the ledger (see [`Batch::keys`]).
    pub collect_keys: Option<Vec<usize>>,
    pub progress: Arc<Progress>,
    pub stop: Arc<AtomicBool>,
    /// In a run of many inputs, the input read, which every batch carries.
    pub input: Option<Arc<InputTag>>,
    /// Where sent batches' payload buffers come back to, for the next batches (of this
    /// input, or of the next inputs of a run of many).
    pub buffers: Buffers,
}

/// How reading an input ended, with what it cut.
#[derive(Debug, Clone, Copy)]
pub struct ReadEnd {
    pub end: ProduceEnd,
    /// Batches cut, committed before or not, and records read.
    pub batches: u64,
    pub records: u64,
}

impl Batcher {
    /// Reads the rest of `csv` into batches and sends them; runs on a blocking thread.
    ///
    /// A batch is every `size` records, refused ones included, so its boundaries do not
    /// depend on the mode. In stop mode the first refused record ends the run before its
    /// batch is sent; in reject mode it travels with its batch, to be written to the
    /// rejects file once the batch committed.
    pub fn run<R: BufRead, U: From<Batch>>(
        &self,
        csv: CsvReader<R>,
        tx: &async_channel::Sender<U>,
    ) -> Result<ProduceEnd, Error> {
        self.read(csv, tx).map(|read| read.end)
    }

    /// [`Batcher::run`], telling what it cut.
    pub fn read<R: BufRead, U: From<Batch>>(
        &self,
        mut csv: CsvReader<R>,
        tx: &async_channel::Sender<U>,
    ) -> Result<ReadEnd, Error> {
        let mut records_read = 0;
        let ended = |end, cutter: &Cutter, records| ReadEnd {
            end,
            batches: cutter.seq,
            records,
        };
        csv.keep_raw(self.rejects.is_some());
        csv.hand_over_defective(self.rejects.is_some());
        let buffers = &self.buffers;
        let mut records: Vec<Record> = Vec::with_capacity(self.size);
        // Records in the current batch: kept in `records[..filled]`, or refused.
        let mut filled = 0;
        let mut resumed = false;
        let mut rejected = Vec::new();
        let mut cutter = Cutter::new(self.size);
        // The batch's payload and keys are built as its records arrive (see [`Payload`]).
        let mut payload = Payload::default();
        let mut keys = self.collect_keys.as_deref().map(KeysJson::new);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(ended(ProduceEnd::Stopped, &cutter, records_read));
            }
            if filled == records.len() {
                records.push(Record::default());
            }
            let more = csv.read(&mut records[filled])?;
            if more {
                let rec = &records[filled];
                self.progress.row_read();
                records_read += 1;
                if cutter.take(rec) {
                    // A batch an earlier attempt committed is not checked again: its rows
                    // were loaded or rejected then.
                    resumed = self.committed.contains_key(&cutter.current());
                    if !resumed {
                        payload = Payload::start(&self.encoder, buffers.take());
                        if let Some(keys) = &mut keys {
                            keys.clear();
                        }
                    }
                }
                match self.checker.check(rec) {
                    Err(mut rejection) if !resumed => match &self.rejects {
                        None => return Err(Error::Rejected(rejection)),
                        Some(rejects) => {
                            rejects.reserve(&rejection)?;
                            rejection.raw = rec.raw().to_vec();
                            rejected.push(*rejection);
                        }
                    },
                    _ => {
                        if !resumed {
                            payload.push(&self.encoder, rec);
                            if let Some(keys) = &mut keys {
                                keys.push(rec);
                            }
                        }
                        filled += 1;
                    }
                }
            }
            if let Some(cut) = cutter.cut(more) {
                if cut.committed(&self.committed)? {
                    self.progress.resumed(cut.records as u64);
                } else {
                    let rows = &records[..filled];
                    let format = payload.finish(&self.encoder, rows);
                    let keep_records = self.rejects.is_some();
                    let payload = std::mem::take(&mut payload);
                    let batch = Batch {
                        seq: cut.seq,
                        rows: filled,
                        first_line: cut.first_line,
                        last_line: cut.last_line,
                        lines: rows.iter().map(Record::line).collect(),
                        content_hash: cut.content_hash,
                        layout: payload.layout,
                        keys: keys.as_ref().map(KeysJson::finish),
                        format,
                        payload: buffers.share(payload.bytes),
                        records: keep_records.then(|| rows.iter().cloned().collect()),
                        key_fields: keep_records
                            .then(|| self.collect_keys.as_deref().map(Arc::from))
                            .flatten(),
                        rejected: std::mem::take(&mut rejected),
                        input: self.input.clone(),
                    };
                    if tx.send_blocking(batch.into()).is_err() {
                        return Ok(ended(ProduceEnd::Stopped, &cutter, records_read));
                    }
                }
                filled = 0;
            }
            if !more {
                cutter.ended(&self.committed)?;
                return Ok(ended(ProduceEnd::Complete, &cutter, records_read));
            }
        }
    }
}

/// The payload buffers of sent batches, back for the next ones once the writers are done
/// with them: a batch's megabyte is then not mapped, zeroed and unmapped each time (most of
/// the client's page faults before).
#[derive(Clone, Default)]
pub struct Buffers(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

/// Buffers kept for reuse: as many as batches can be in flight is plenty.
const KEPT_BUFFERS: usize = 32;

impl Buffers {
    /// A buffer from an earlier batch, or a new one.
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .expect("buffer pool")
            .pop()
            .unwrap_or_default()
    }

    /// `bytes` as a payload that comes back here when its last holder drops it.
    fn share(&self, bytes: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returned {
            bytes,
            home: self.clone(),
        })
    }
}

struct Returned {
    bytes: Vec<u8>,
    home: Buffers,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        let mut kept = self.home.0.lock().expect("buffer pool");
        if kept.len() < KEPT_BUFFERS {
            kept.push(std::mem::take(&mut self.bytes));
        }
    }
}

/// Builds [`keys_json`] a record at a time: one JSON array of the values per field.
struct KeysJson<'a> {
    fields: &'a [usize],
    /// Per field: its values so far, JSON strings joined by commas.
    columns: Vec<Vec<u8>>,
    /// Per field: its length before the record being added, to take a partial key back.
    before: Vec<usize>,
}

impl<'a> KeysJson<'a> {
    fn new(fields: &'a [usize]) -> Self {
        KeysJson {
            fields,
            columns: vec![Vec::new(); fields.len()],
            before: vec![0; fields.len()],
        }
    }

    fn clear(&mut self) {
        self.columns.iter_mut().for_each(Vec::clear);
    }

    /// Adds `rec`'s key; a NULL (or non-UTF-8) one is left out: nothing to purge by.
    fn push(&mut self, rec: &Record) {
        for (i, &f) in self.fields.iter().enumerate() {
            let Some(value) = rec.get(f).and_then(|v| std::str::from_utf8(v).ok()) else {
                // The fields written already take their value back.
                for (column, &len) in self.columns[..i].iter_mut().zip(&self.before) {
                    column.truncate(len);
                }
                return;
            };
            let column = &mut self.columns[i];
            self.before[i] = column.len();
            if !column.is_empty() {
                column.push(b',');
            }
            serde_json::to_writer(&mut *column, value).expect("strings always serialize");
        }
    }

    fn finish(&self) -> String {
        let mut json = String::from("[");
        for (c, column) in self.columns.iter().enumerate() {
            json.push_str(if c == 0 { "[" } else { ",[" });
            json.push_str(std::str::from_utf8(column).expect("serde_json writes UTF-8"));
            json.push(']');
        }
        json.push(']');
        json
    }
}

/// The values of `fields` in `rows`, column-major, as JSON text: `[["a","b"],["1","2"]]`.
/// Rows with a NULL (or non-UTF-8) key are left out: no key, nothing to purge by.
fn keys_json<'a>(rows: impl IntoIterator<Item = &'a Record>, fields: &[usize]) -> String {
    let mut keys = KeysJson::new(fields);
    for r in rows {
        keys.push(r);
    }
    keys.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::csv::Dialect;

    fn records(text: &str) -> Vec<Record> {
        let mut csv = CsvReader::new(text.as_bytes(), Dialect::default());
        let mut out = Vec::new();
        let mut rec = Record::default();
        while csv.read(&mut rec).unwrap() {
            out.push(rec.clone());
        }
        out
    }

    #[test]
    fn keys_json_is_column_major_and_leaves_out_rows_without_a_key() {
        let rows = records("a,1,x\n,2,y\n\"b\"\"q\",3,z\nc,,w\n");
        assert_eq!(keys_json(&rows, &[0, 1]), r#"[["a","b\"q"],["1","3"]]"#);
        assert_eq!(keys_json(&rows, &[2]), r#"[["x","y","z","w"]]"#);
        assert_eq!(keys_json(&rows[1..2], &[0]), "[[]]");
        assert_eq!(keys_json(&rows, &[]), "[]");
        // A key left out after its first field was written takes it back, and the next
        // rows follow on.
        let rows = records("a,1\nc,\nd,4\n");
        assert_eq!(keys_json(&rows, &[0, 1]), r#"[["a","d"],["1","4"]]"#);
    }
}
