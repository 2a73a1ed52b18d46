//! Batching: groups records into fixed-size batches, encodes each into one COPY payload, and
//! hands it to the writers through a bounded channel.
//!
//! Boundaries are deterministic (every `size` records), so a batch is the same batch on every
//! run over the same input. The channel's bound is what keeps memory constant: the reader
//! blocks when the writers fall behind, never buffering more than the channel holds.

use std::io::BufRead;
use std::sync::Arc;

use bytes::Bytes;

use crate::encode::{Format, RowEncoder};
use crate::error::Error;
use crate::read::{CsvReader, Record};
use crate::report::Progress;

/// One batch: the unit of a COPY, a transaction and a retry.
#[derive(Debug, Clone)]
pub struct Batch {
    /// 1-based position in the input.
    pub seq: u64,
    pub rows: usize,
    pub first_line: u64,
    pub last_line: u64,
    /// Physical line where each record starts, to name the line the server refuses.
    pub lines: Vec<u64>,
    pub format: Format,
    pub payload: Bytes,
}

impl Batch {
    /// The file line of the batch's `n`th row (1-based, as COPY counts in its error context).
    pub fn line_of_row(&self, n: u64) -> Option<u64> {
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        self.lines.get(i).copied()
    }
}

/// How the reader stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The input is exhausted and every batch was handed over.
    Complete,
    /// The writers closed the channel (one failed); the rest of the input is unread.
    Stopped,
}

/// Reads the rest of `csv` into batches and sends them; runs on a blocking thread.
pub fn run<R: BufRead>(
    mut csv: CsvReader<R>,
    encoder: &RowEncoder,
    size: usize,
    tx: &async_channel::Sender<Batch>,
    progress: &Arc<Progress>,
) -> Result<ReadEnd, Error> {
    let mut records: Vec<Record> = Vec::with_capacity(size);
    let mut filled = 0;
    let mut seq = 0;
    let mut payload = Vec::new();
    loop {
        if filled == records.len() {
            records.push(Record::default());
        }
        let more = csv.read(&mut records[filled])?;
        if more {
            let rec = &records[filled];
            if rec.len() != encoder.columns() {
                return Err(Error::Csv {
                    line: rec.line(),
                    reason: format!(
                        "expected {} fields (as in the header), found {}",
                        encoder.columns(),
                        rec.len()
                    ),
                });
            }
            filled += 1;
            progress.row_read();
        }
        if filled == size || (!more && filled > 0) {
            seq += 1;
            let rows = &records[..filled];
            let format = encoder.encode(rows, &mut payload);
            let batch = Batch {
                seq,
                rows: filled,
                first_line: rows[0].line(),
                last_line: rows[filled - 1].end_line(),
                lines: rows.iter().map(Record::line).collect(),
                format,
                payload: Bytes::copy_from_slice(&payload),
            };
            filled = 0;
            if tx.send_blocking(batch).is_err() {
                return Ok(ReadEnd::Stopped);
            }
        }
        if !more {
            return Ok(ReadEnd::Complete);
        }
    }
}
