//! Opening the input: a file, stdin or gzip (of either), with its identity for `--resume`
//! (canonical path, size, a fingerprint of its start) and a count of the bytes read, for
//! progress.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
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
    open_counted(source, Arc::new(AtomicU64::new(0)))
}

/// [`open`], counting the bytes read into `consumed` (which many inputs may share).
pub fn open_counted(source: &Source, consumed: Arc<AtomicU64>) -> Result<Input, Error> {
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

/// The inputs of a run of many inputs: every file, under the directory they have in common.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// The canonical common base directory: names are relative to it.
    pub base: PathBuf,
    /// Each input's name under `base` and its canonical path, in the order given
    /// (a directory's files sorted by name).
    pub files: Vec<(String, PathBuf)>,
}

/// Whether a directory's file is an input: `*.csv` and `*.csv.gz`.
fn is_csv_name(name: &str) -> bool {
    name.ends_with(".csv") || name.ends_with(".csv.gz")
}

/// The inputs `args` name: files, and the `*.csv` and `*.csv.gz` files of directories
/// (sorted by name, not recursive). `None` when they are one file or `-` (a run of one
/// input); `-` is refused among others, as is a directory with no input or a file named
/// twice.
pub fn expand(args: &[String]) -> Result<Option<Inputs>, Error> {
    let usage = |msg: String| Error::Usage(msg);
    if args.len() > 1 && args.iter().any(|a| a == "-") {
        return Err(usage(
            "- (stdin) cannot be combined with other inputs: give the files, or pipe one \
             stream alone"
                .into(),
        ));
    }
    let single = |a: &String| a == "-" || !Path::new(a).is_dir();
    if args.is_empty() || args.len() == 1 && single(&args[0]) {
        return Ok(None);
    }
    let mut files = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        let canonical = |p: &Path| {
            std::fs::canonicalize(p).map_err(|e| usage(format!("cannot open {}: {e}", p.display())))
        };
        if path.is_dir() {
            let listed = std::fs::read_dir(path)
                .map_err(|e| usage(format!("cannot list {}: {e}", path.display())))?;
            let mut found = Vec::new();
            for entry in listed {
                let entry = entry.map_err(|e| usage(format!("cannot list {arg}: {e}")))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_csv_name(&name) && entry.path().is_file() {
                    found.push(canonical(&entry.path())?);
                }
            }
            if found.is_empty() {
                return Err(usage(format!("{arg}: no *.csv or *.csv.gz file in it")));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(canonical(path)?);
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = files.iter().find(|f| !seen.insert(*f)) {
        return Err(usage(format!(
            "{} is given twice (a run reads each input once)",
            twice.display()
        )));
    }
    let mut base = files[0].parent().unwrap_or(Path::new("/")).to_path_buf();
    while !files.iter().all(|f| f.starts_with(&base)) {
        base = base.parent().unwrap_or(Path::new("/")).to_path_buf();
    }
    let files = files
        .into_iter()
        .map(|f| {
            let name = f.strip_prefix(&base).unwrap_or(&f).display().to_string();
            (name, f)
        })
        .collect();
    Ok(Some(Inputs { base, files }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_expand_under_their_common_directory() {
        let root = std::env::temp_dir().join(format!("expand-{}", std::process::id()));
        let parts = root.join("parts");
        std::fs::create_dir_all(parts.join("nested")).unwrap();
        for name in ["b.csv.gz", "a.csv", "notes.txt", "nested/c.csv"] {
            std::fs::write(parts.join(name), "id\n").unwrap();
        }
        std::fs::write(root.join("top.csv"), "id\n").unwrap();
        let arg = |p: &Path| p.display().to_string();
        let one = expand(&[arg(&root.join("top.csv"))]).unwrap();
        assert_eq!(one, None, "one file is a run of one input");
        let many = expand(&[arg(&parts), arg(&root.join("top.csv"))])
            .unwrap()
            .unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert_eq!(many.base, root);
        let names: Vec<&str> = many.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["parts/a.csv", "parts/b.csv.gz", "top.csv"]);
        assert_eq!(many.files[2].1, root.join("top.csv"));
        let refused = |args: &[String], says: &str| {
            let e = expand(args).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        };
        refused(&["-".into(), arg(&parts)], "cannot be combined");
        refused(&[arg(&parts), arg(&parts.join("a.csv"))], "given twice");
        refused(
            &[
                arg(&parts.join("nested/c.csv")),
                arg(&root.join("missing.csv")),
            ],
            "cannot open",
        );
        std::fs::create_dir_all(root.join("empty")).unwrap();
        refused(&[arg(&root.join("empty"))], "no *.csv or *.csv.gz");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
