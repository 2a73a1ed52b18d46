//! Batching: groups records into fixed-size batches, encodes each into one COPY payload, and
//! hands it to the writers through a bounded channel.
//!
//! Boundaries are deterministic (every `size` records), so a batch is the same batch on every
//! run over the same input: that is what lets a resumed run skip the batches the ledger says
//! committed, after checking their content hash. The channel's bound is what keeps memory
//! constant: the reader blocks when the writers fall behind.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::encode::{Format, RowEncoder};
use crate::error::Error;
use crate::ledger::BatchId;
use crate::pipeline::{ProduceEnd, Unit};
use crate::read::{CsvReader, Record};
use crate::report::Progress;

/// One batch: the unit of a COPY, a transaction, a ledger row and a retry.
#[derive(Debug, Clone)]
pub struct Batch {
    /// 1-based position in the input.
    pub seq: u64,
    pub rows: usize,
    pub first_line: u64,
    pub last_line: u64,
    /// Physical line where each record starts, to name the line the server refuses.
    pub lines: Vec<u64>,
    /// xxh3 of the batch's fields, as the ledger records it.
    pub content_hash: u64,
    /// CSV batches: the COPY stream line each row starts on (empty for binary, where
    /// COPY's line N is row N).
    pub copy_lines: Vec<u64>,
    pub format: Format,
    pub payload: Bytes,
    /// The recorded key's values of every row, column-major JSON text, when the ledger
    /// records inserted keys and the rows go straight into the table.
    pub keys: Option<String>,
}

impl Batch {
    pub fn id(&self) -> BatchId {
        BatchId {
            seq: self.seq,
            first_line: self.first_line,
            last_line: self.last_line,
            rows: self.rows as u64,
            content_hash: self.content_hash,
        }
    }

    /// The file line of the row on COPY's line `n` (as its error context counts).
    pub fn line_of_copy_line(&self, n: u64) -> Option<u64> {
        let row = if self.copy_lines.is_empty() {
            usize::try_from(n.checked_sub(1)?).ok()?
        } else {
            self.copy_lines
                .partition_point(|&start| start <= n)
                .checked_sub(1)?
        };
        self.lines.get(row).copied()
    }
}

impl Unit for Batch {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn rows(&self) -> u64 {
        self.rows as u64
    }

    fn span(&self) -> String {
        format!("lines {}-{}", self.first_line, self.last_line)
    }
}

/// Turns a CSV stream into batches for the writers.
pub struct Batcher {
    pub encoder: RowEncoder,
    pub size: usize,
    /// Batches a resumed run already committed: sequence number → content hash.
    pub committed: HashMap<u64, u64>,
    /// Fields whose values to collect per batch for the ledger (see [`Batch::keys`]).
    pub collect_keys: Option<Vec<usize>>,
    pub progress: Arc<Progress>,
    pub stop: Arc<AtomicBool>,
}

impl Batcher {
    /// Reads the rest of `csv` into batches and sends them; runs on a blocking thread.
    pub fn run<R: BufRead, U: From<Batch>>(
        &self,
        mut csv: CsvReader<R>,
        tx: &async_channel::Sender<U>,
    ) -> Result<ProduceEnd, Error> {
        let mut records: Vec<Record> = Vec::with_capacity(self.size);
        let mut filled = 0;
        let mut seq = 0;
        let (mut payload, mut copy_lines) = (Vec::new(), Vec::new());
        let columns = self.encoder.width();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(ProduceEnd::Stopped);
            }
            if filled == records.len() {
                records.push(Record::default());
            }
            let more = csv.read(&mut records[filled])?;
            if more {
                let rec = &records[filled];
                if rec.len() != columns {
                    return Err(Error::Csv {
                        line: rec.line(),
                        reason: format!(
                            "expected {columns} fields (as in the header), found {}",
                            rec.len()
                        ),
                    });
                }
                filled += 1;
                self.progress.row_read();
            }
            if filled == self.size || (!more && filled > 0) {
                seq += 1;
                let rows = &records[..filled];
                let mut hasher = Xxh3::new();
                rows.iter().for_each(|r| r.hash_into(&mut hasher));
                let content_hash = hasher.digest();
                let (first_line, last_line) = (rows[0].line(), rows[filled - 1].end_line());
                if let Some(&committed_hash) = self.committed.get(&seq) {
                    if committed_hash != content_hash {
                        return Err(Error::InputChanged {
                            seq,
                            first_line,
                            last_line,
                        });
                    }
                    self.progress.resumed(filled as u64);
                } else {
                    let format = self.encoder.encode(rows, &mut payload, &mut copy_lines);
                    let batch = Batch {
                        seq,
                        rows: filled,
                        first_line,
                        last_line,
                        lines: rows.iter().map(Record::line).collect(),
                        content_hash,
                        copy_lines: copy_lines.clone(),
                        keys: self.collect_keys.as_deref().map(|f| keys_json(rows, f)),
                        format,
                        payload: Bytes::copy_from_slice(&payload),
                    };
                    if tx.send_blocking(batch.into()).is_err() {
                        return Ok(ProduceEnd::Stopped);
                    }
                }
                filled = 0;
            }
            if !more {
                if let Some(&extra) = self.committed.keys().filter(|&&s| s > seq).min() {
                    // The ledger holds a batch the input no longer reaches: it got shorter.
                    return Err(Error::InputChanged {
                        seq: extra,
                        first_line: 0,
                        last_line: 0,
                    });
                }
                return Ok(ProduceEnd::Complete);
            }
        }
    }
}

/// The values of `fields` in `rows`, column-major, as JSON text: `[["a","b"],["1","2"]]`.
/// Rows with a NULL (or non-UTF-8) key are left out: no key, nothing to purge by.
fn keys_json(rows: &[Record], fields: &[usize]) -> String {
    let keyed: Vec<Vec<&str>> = rows
        .iter()
        .filter_map(|r| {
            fields
                .iter()
                .map(|&f| r.get(f).and_then(|v| std::str::from_utf8(v).ok()))
                .collect()
        })
        .collect();
    let columns: Vec<Vec<&str>> = (0..fields.len())
        .map(|c| keyed.iter().map(|k| k[c]).collect())
        .collect();
    serde_json::to_string(&columns).expect("strings always serialize")
}
