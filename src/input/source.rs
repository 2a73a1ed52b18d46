//! Opening the input: a file, stdin or gzip (of either), with its identity for `--resume`
//! (canonical path, size, a fingerprint of its start) and a count of the bytes read, for
//! progress.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::ledger::InputId;
use crate::error::Error;

const READ_BUFFER: usize = 256 << 10;

/// Where rows come from: a path or `-` for stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    Path(std::path::PathBuf),
}

impl Source {
    pub fn parse(arg: &str) -> Self {
        if arg == "-" {
            Source::Stdin
        } else {
            Source::Path(arg.into())
        }
    }

    pub fn display(&self) -> String {
        match self {
            Source::Stdin => "stdin".into(),
            Source::Path(p) => p.display().to_string(),
        }
    }

    /// Whether the input can only be read once, as it comes: stdin, or a path that is no
    /// regular file (a FIFO, `/dev/stdin` from a pipe, a device).
    pub fn is_stream(&self) -> bool {
        match self {
            Source::Stdin => true,
            Source::Path(p) => !std::fs::metadata(p).is_ok_and(|m| m.is_file()),
        }
    }
}

/// How much of the input's start its fingerprint covers.
const FINGERPRINT_BYTES: u64 = 1 << 20;

/// An opened input: decompressed bytes to parse, plus what progress reporting needs.
pub struct Input {
    pub reader: Box<dyn BufRead + Send>,
    /// The canonical path (`-` for stdin), the size of a regular file (progress is measured
    /// against it), and the xxh3-128 of the first MiB as read (compressed for gzip), in hex.
    pub id: InputId,
    /// Bytes consumed from the file or stdin so far (compressed bytes for gzip).
    pub consumed: Arc<AtomicU64>,
}

/// Opens `source`; gzip is recognised by its magic bytes, so `.gz` files and gzip on stdin
/// both work without a flag.
pub fn open(source: &Source) -> Result<Input, Error> {
    let io_err = |source_err| Error::Input {
        path: source.display(),
        source: source_err,
    };
    let (mut raw, size, path): (Box<dyn Read + Send>, Option<u64>, String) = match source {
        Source::Stdin => (Box::new(io::stdin()), None, "-".into()),
        Source::Path(path) => {
            // A path that cannot be opened is the command line's mistake: nothing has started.
            let unopenable =
                |e: io::Error| Error::Usage(format!("cannot open {}: {e}", path.display()));
            let file = File::open(path).map_err(unopenable)?;
            let meta = file.metadata().map_err(io_err)?;
            // A pipe, FIFO or device has no size to measure progress by, and may have no
            // name to canonicalize (`/dev/stdin` from a pipe is `pipe:[…]`).
            let size = meta.is_file().then_some(meta.len());
            let canonical = match std::fs::canonicalize(path) {
                Err(_) if !meta.is_file() => std::path::absolute(path).map_err(unopenable)?,
                named => named.map_err(unopenable)?,
            };
            (Box::new(file), size, canonical.display().to_string())
        }
    };
    let mut prefix = Vec::new();
    (&mut raw)
        .take(FINGERPRINT_BYTES)
        .read_to_end(&mut prefix)
        .map_err(io_err)?;
    let fingerprint = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&prefix));
    let consumed = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: Box::new(io::Cursor::new(prefix).chain(raw)),
        consumed: consumed.clone(),
    };
    let mut buffered = BufReader::with_capacity(READ_BUFFER, counted);
    let is_gzip = buffered
        .fill_buf()
        .map_err(io_err)?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + Send> = if is_gzip {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::bufread::MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(Input {
        reader,
        id: InputId {
            path,
            size,
            fingerprint,
        },
        consumed,
    })
}

struct Counted {
    inner: Box<dyn Read + Send>,
    consumed: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
