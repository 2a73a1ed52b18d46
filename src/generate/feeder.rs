//! The feeder: each generated account's login and clear-text password, in the order of the
//! accounts, for the load generator. CSV with a header (k6's papaparse, Locust, JMeter's CSV
//! Data Set Config and Gatling's `csv` feeder read it as it is) or a JSON array of objects
//! (k6's `SharedArray`). The file holds passwords: it is created readable by its owner only.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The feeder's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeederFormat {
    Csv,
    Json,
}

/// The column of the clear-text password.
const PASSWORD: &str = "password";

/// The feeder file being written.
pub struct Feeder {
    out: BufWriter<File>,
    format: FeederFormat,
    /// The login columns, under the table's names, before `password`.
    columns: Vec<String>,
    /// Accounts written so far.
    pub written: u64,
}

impl Feeder {
    /// Creates (or empties) `path`, mode 0600 whatever it was before.
    pub fn create(
        path: &Path,
        format: FeederFormat,
        columns: Vec<String>,
    ) -> std::io::Result<Feeder> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // An existing file keeps its mode on open: set it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(Feeder {
            out: BufWriter::new(file),
            format,
            columns,
            written: 0,
        })
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The header (CSV) or the array's start (JSON).
    pub fn begin(&mut self) -> std::io::Result<()> {
        match self.format {
            FeederFormat::Csv => {
                for c in &self.columns {
                    write_csv_field(&mut self.out, c)?;
                    self.out.write_all(b",")?;
                }
                writeln!(self.out, "{PASSWORD}")
            }
            FeederFormat::Json => self.out.write_all(b"["),
        }
    }

    /// One account: its login columns' values, in the columns' order, and its password.
    pub fn account(&mut self, login: &[&str], password: &str) -> std::io::Result<()> {
        match self.format {
            FeederFormat::Csv => {
                for value in login {
                    write_csv_field(&mut self.out, value)?;
                    self.out.write_all(b",")?;
                }
                write_csv_field(&mut self.out, password)?;
                self.out.write_all(b"\n")?;
            }
            FeederFormat::Json => {
                let mut object = serde_json::Map::new();
                for (c, value) in self.columns.iter().zip(login) {
                    object.insert(c.clone(), (*value).into());
                }
                object.insert(PASSWORD.into(), password.into());
                self.out
                    .write_all(if self.written == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.out, &object)?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// The array's end (JSON), flushed.
    pub fn end(&mut self) -> std::io::Result<()> {
        if self.format == FeederFormat::Json {
            self.out.write_all(b"\n]\n")?;
        }
        self.out.flush()
    }
}

/// `value` as a CSV field: quoted when it holds a delimiter, a quote or a line end.
fn write_csv_field(out: &mut impl Write, value: &str) -> std::io::Result<()> {
    if value.contains([',', '"', '\n', '\r']) {
        write!(out, "\"{}\"", value.replace('"', "\"\""))
    } else {
        out.write_all(value.as_bytes())
    }
}
