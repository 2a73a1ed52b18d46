//! Reporting: live counters, a progress bar on a terminal (log lines elsewhere), the human
//! summary on stderr and the `--json` object on stdout.
//!
//! Log lines are written through the bar (`MultiProgress::suspend`), so the two never
//! garble each other.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use console::Term;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use tracing_subscriber::fmt::MakeWriter;

use super::throttle::Throttle;
use crate::model::{Command, Invocation, Outcome, Status};

/// How often a log line reports progress when stderr is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// How progress shows while a run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, a log line every 5 s elsewhere
    Auto,
    /// The bar, even where stderr is no terminal
    Bar,
    /// A log line every 5 s
    Log,
    /// Neither
    None,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Short lines on a terminal (no timestamps, no INFO), timestamped lines elsewhere
    Text,
    /// One JSON object a line: timestamp, level, message and fields
    Json,
}

/// Where progress and logs go: stderr, with a bar only when it is a terminal (or asked).
#[derive(Clone)]
pub struct Console {
    multi: MultiProgress,
    /// The bar is drawn.
    bar: bool,
    /// A log line reports progress every few seconds.
    progress_lines: bool,
    /// stderr is a terminal: terse lines for people.
    terminal: bool,
    /// Warnings and errors in colour.
    color: bool,
    format: LogFormat,
    verbosity: i8,
}

impl Console {
    /// `verbosity`: -1 quiet (no bar, no summary, warnings only), 0 info, 1 debug, 2+ trace;
    /// `env` reads the variables that turn colour off (`NO_COLOR`, `CLICOLOR=0`, `TERM=dumb`).
    pub fn new(
        verbosity: i8,
        progress: ProgressMode,
        format: LogFormat,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let shown = verbosity >= 0;
        let bar = shown
            && match progress {
                ProgressMode::Auto => terminal,
                ProgressMode::Bar => true,
                ProgressMode::Log | ProgressMode::None => false,
            };
        let progress_lines = match progress {
            ProgressMode::Auto => !terminal,
            ProgressMode::Log => true,
            ProgressMode::Bar | ProgressMode::None => false,
        };
        let color = terminal
            && env("NO_COLOR").is_none_or(|v| v.is_empty())
            && env("CLICOLOR").as_deref() != Some("0")
            && env("TERM").as_deref() != Some("dumb");
        let target = if bar {
            // Also where stderr is no terminal, when --progress bar asks for it.
            ProgressDrawTarget::term_like_with_hz(Box::new(Narrower(Term::buffered_stderr())), 20)
        } else {
            ProgressDrawTarget::hidden()
        };
        Console {
            multi: MultiProgress::with_draw_target(target),
            bar,
            progress_lines,
            terminal: terminal && format == LogFormat::Text,
            color,
            format,
            verbosity,
        }
    }

    pub fn quiet(&self) -> bool {
        self.verbosity < 0
    }

    /// Prints a line to stderr without tearing the bar.
    pub fn eprintln(&self, line: &str) {
        self.multi.suspend(|| {
            let _ = writeln!(std::io::stderr(), "{line}");
        });
    }

    /// Prints `error: message` to stderr, `error:` in red on a terminal that takes colour.
    pub fn error(&self, message: &str) {
        self.eprintln(&format!("{}{message}", paint(self.color, RED, "error: ")));
    }

    /// Sends tracing output to stderr through the bar: terse lines for a person at a
    /// terminal, timestamped structured lines elsewhere, or JSON.
    pub fn init_logging(&self) {
        // The pool's own warnings about broken connections repeat what the retry warnings
        // say with more context; they show from -v on.
        let default = match self.verbosity {
            i8::MIN..=-1 => "warn,deadpool=error,deadpool_postgres=error",
            0 => "info,deadpool=error,deadpool_postgres=error",
            1 => "provisioner=debug,info",
            _ => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("PROVISIONER_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let fmt = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(self.clone())
            .with_target(false);
        let _ = match (self.format, self.terminal) {
            (LogFormat::Json, _) => fmt
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .try_init(),
            (LogFormat::Text, true) => fmt
                .with_ansi(self.color)
                .event_format(Terse { color: self.color })
                .try_init(),
            (LogFormat::Text, false) => fmt.with_ansi(false).try_init(),
        };
    }
}

const RED: &str = "31";
const YELLOW: &str = "33";

/// `text` in the ANSI colour `code` when `color`.
fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Log lines for a person at a terminal: no timestamp; the message alone at INFO (its fields
/// are for the structured formats), the message and its fields at the other levels, with
/// `warning:` and `error:` before those (in colour when it is on).
struct Terse {
    color: bool,
}

/// An event's message.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Terse
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        match *event.metadata().level() {
            tracing::Level::ERROR => write!(writer, "{}", paint(self.color, RED, "error: "))?,
            tracing::Level::WARN => write!(writer, "{}", paint(self.color, YELLOW, "warning: "))?,
            tracing::Level::INFO => {
                let mut message = Message(String::new());
                event.record(&mut message);
                return writeln!(writer, "{}", message.0);
            }
            other => write!(writer, "{}: ", other.as_str().to_ascii_lowercase())?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The terminal, two columns narrower: the bar's line (which indicatif pads to the width)
/// then never reaches the last column, where the `^C` the terminal echoes on Ctrl-C would
/// wrap onto a line the bar does not know to clear.
#[derive(Debug)]
struct Narrower(Term);

impl TermLike for Narrower {
    fn width(&self) -> u16 {
        TermLike::width(&self.0).saturating_sub(2).max(20)
    }
    fn height(&self) -> u16 {
        TermLike::height(&self.0)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        TermLike::move_cursor_up(&self.0, n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        TermLike::move_cursor_down(&self.0, n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        TermLike::move_cursor_right(&self.0, n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        TermLike::move_cursor_left(&self.0, n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        TermLike::write_line(&self.0, s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        TermLike::write_str(&self.0, s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        TermLike::clear_line(&self.0)
    }
    fn flush(&self) -> std::io::Result<()> {
        TermLike::flush(&self.0)
    }
}

impl<'a> MakeWriter<'a> for Console {
    type Writer = ConsoleWriter;
    fn make_writer(&'a self) -> ConsoleWriter {
        ConsoleWriter(self.multi.clone())
    }
}

pub struct ConsoleWriter(MultiProgress);

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Counters shared by the reader, the writers and the reporter.
#[derive(Debug, Default)]
pub struct Progress {
    rows_read: AtomicU64,
    rows_inserted: AtomicU64,
    rows_updated: AtomicU64,
    rows_skipped: AtomicU64,
    rows_deleted: AtomicU64,
    rows_missing: AtomicU64,
    batches: AtomicU64,
    batches_binary: AtomicU64,
    retries: AtomicU64,
    rows_resumed: AtomicU64,
    rows_rejected: AtomicU64,
    /// Writers at work now, when `--connections auto` tunes their count (0: fixed).
    connections: AtomicU64,
    /// Rows read are counted as units commit, not by a reader: see [`Progress::reading_on_commit`].
    reads_on_commit: bool,
}

impl Progress {
    /// For a purge whose units come from the ledger or a predicate, not a file: the keys it
    /// read are those its committed units deleted or found missing.
    pub fn reading_on_commit() -> Self {
        Progress {
            reads_on_commit: true,
            ..Progress::default()
        }
    }

    pub fn row_read(&self) {
        self.rows_read.fetch_add(1, Relaxed);
    }

    /// Rows of a batch an earlier attempt of the run committed, skipped on resume.
    pub fn resumed(&self, rows: u64) {
        self.rows_resumed.fetch_add(rows, Relaxed);
    }

    /// Rows a resumed run's earlier attempts rejected: they count in its summary.
    pub fn rejected_before(&self, rows: u64) {
        self.rows_rejected.fetch_add(rows, Relaxed);
    }

    pub fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// Counts what a unit did; one another attempt committed counts as resumed rows (and its
    /// rejected rows, which the run's count includes), nothing else.
    pub fn committed(&self, outcome: Outcome) {
        if outcome.resumed {
            let Outcome {
                inserted,
                updated,
                skipped,
                deleted,
                missing,
                rejected,
                ..
            } = outcome;
            self.resumed(inserted + updated + skipped + deleted + missing + rejected);
            self.rejected_before(rejected);
            return;
        }
        self.rows_inserted.fetch_add(outcome.inserted, Relaxed);
        self.rows_updated.fetch_add(outcome.updated, Relaxed);
        self.rows_skipped.fetch_add(outcome.skipped, Relaxed);
        self.rows_deleted.fetch_add(outcome.deleted, Relaxed);
        self.rows_missing.fetch_add(outcome.missing, Relaxed);
        if self.reads_on_commit {
            self.rows_read
                .fetch_add(outcome.deleted + outcome.missing, Relaxed);
        }
        self.rows_rejected.fetch_add(outcome.rejected, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        if outcome.binary {
            self.batches_binary.fetch_add(1, Relaxed);
        }
    }

    /// The count `--connections auto` settled on for now, shown with the progress.
    pub fn set_connections(&self, n: usize) {
        self.connections.store(n as u64, Relaxed);
    }

    /// What [`Progress::set_connections`] said last (0: a fixed count).
    pub(super) fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }

    /// Units committed so far.
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Relaxed)
    }

    /// Rows a unit has dealt with, whatever it did with them.
    pub(super) fn rows_done(&self) -> u64 {
        [
            &self.rows_inserted,
            &self.rows_updated,
            &self.rows_skipped,
            &self.rows_deleted,
            &self.rows_missing,
            &self.rows_rejected,
        ]
        .iter()
        .map(|c| c.load(Relaxed))
        .sum()
    }
}

/// The end-of-run figures: printed for humans and, with `--json`, as one JSON object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub command: Invocation,
    pub table: String,
    /// The ledger's run id; null with --no-ledger and for a dry run.
    pub run_id: Option<i64>,
    /// CSV records (seed), or keys read (purge).
    pub rows_read: u64,
    /// Rows of batches an earlier attempt of a resumed run had committed: not sent again.
    pub rows_resumed: u64,
    #[serde(flatten)]
    pub rows: Rows,
    pub batches: u64,
    pub retries: u64,
    pub elapsed_s: f64,
    pub rows_per_s: f64,
    /// completed, failed or interrupted.
    pub status: Status,
    /// The failure, when the run did not finish.
    pub error: Option<String>,
    /// The command that resumes the run, when it did not finish.
    pub resume_command: Option<String>,
    /// A run of many inputs: each input, as the ledger has it at the end (whichever process
    /// loaded it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputShown>,
}

/// An input of a run of many inputs, in the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputShown {
    pub name: String,
    pub status: Status,
    pub rows_read: i64,
    pub inserted: i64,
    pub updated: i64,
    pub skipped: i64,
    pub rejected: i64,
    pub batches: i64,
    /// How often it was claimed (more than once: taken over or resumed).
    pub attempts: i32,
    /// The process that last held it: for a completed input, the one that completed it.
    pub host: Option<String>,
    pub pid: Option<i32>,
}

/// What the command did to rows.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Rows {
    Seed {
        rows_inserted: u64,
        rows_updated: u64,
        rows_skipped: u64,
        rows_rejected: u64,
        batches_binary: u64,
        batches_csv: u64,
    },
    Purge {
        rows_deleted: u64,
        /// Keys that matched no row (already gone, or never there).
        rows_missing: u64,
    },
}

impl Summary {
    /// The figures `p` counted over `elapsed` seconds.
    pub fn of(p: &Progress, command: Invocation, table: String, elapsed: f64) -> Summary {
        let batches = p.batches.load(Relaxed);
        let batches_binary = p.batches_binary.load(Relaxed);
        let rows = match command.command {
            Command::Purge => Rows::Purge {
                rows_deleted: p.rows_deleted.load(Relaxed),
                rows_missing: p.rows_missing.load(Relaxed),
            },
            Command::Seed => Rows::Seed {
                rows_inserted: p.rows_inserted.load(Relaxed),
                rows_updated: p.rows_updated.load(Relaxed),
                rows_skipped: p.rows_skipped.load(Relaxed),
                rows_rejected: p.rows_rejected.load(Relaxed),
                batches_binary,
                batches_csv: batches - batches_binary,
            },
        };
        Summary {
            command,
            table,
            run_id: None,
            rows_read: p.rows_read.load(Relaxed),
            rows_resumed: p.rows_resumed.load(Relaxed),
            rows,
            batches,
            retries: p.retries.load(Relaxed),
            elapsed_s: elapsed,
            rows_per_s: p.rows_done() as f64 / elapsed.max(1e-9),
            status: Status::Completed,
            error: None,
            resume_command: None,
            inputs: Vec::new(),
        }
    }

    /// Rows set aside in reject mode, over the whole run (0 for purge).
    pub fn rows_rejected(&self) -> u64 {
        match self.rows {
            Rows::Seed { rows_rejected, .. } => rows_rejected,
            Rows::Purge { .. } => 0,
        }
    }

    pub fn human(&self) -> String {
        let status = self.status;
        let dry_run = self.command.dry_run;
        let run = self
            .run_id
            .map(|id| format!(" (run {id})"))
            .unwrap_or_default();
        let resumed = if self.rows_resumed > 0 {
            format!(", {} already committed", group(self.rows_resumed))
        } else {
            String::new()
        };
        let (did, batches) = match &self.rows {
            Rows::Seed {
                rows_inserted,
                rows_updated,
                rows_skipped,
                rows_rejected,
                batches_binary,
                batches_csv,
            } => (
                format!(
                    "{} {}, {} updated, {} skipped, {} rejected into",
                    group(*rows_inserted),
                    if dry_run {
                        "would be inserted"
                    } else {
                        "inserted"
                    },
                    group(*rows_updated),
                    group(*rows_skipped),
                    group(*rows_rejected)
                ),
                format!(": {batches_binary} binary, {batches_csv} csv"),
            ),
            Rows::Purge {
                rows_deleted,
                rows_missing,
            } => (
                format!(
                    "{} {}, {} not found in",
                    group(*rows_deleted),
                    if dry_run {
                        "would be deleted"
                    } else {
                        "deleted"
                    },
                    group(*rows_missing)
                ),
                String::new(),
            ),
        };
        format!(
            "{}{run} {status}: {} rows read{resumed}, {did} {} in {:.2} s \
             ({} rows/s; {} batches{batches}; {} retries)",
            self.command,
            group(self.rows_read),
            self.table,
            self.elapsed_s,
            group(self.rows_per_s as u64),
            self.batches,
            self.retries,
        )
    }
}

/// Thousands separators for humans: 1234567 → 1,234,567.
pub(super) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Draws the bar, or logs a line every few seconds, until [`Reporter::finish`].
pub struct Reporter {
    progress: Arc<Progress>,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
    bar: ProgressBar,
}

impl Reporter {
    /// `consumed`/`size`: input bytes (or units) read so far and in all (unknown for
    /// stdin); `throttle` says what holds the writers back, shown in the bar.
    pub fn start(
        console: &Console,
        progress: Arc<Progress>,
        (consumed, size): (Arc<AtomicU64>, Option<u64>),
        throttle: Arc<Throttle>,
    ) -> Self {
        let bar = match size {
            Some(len) => ProgressBar::new(len).with_style(
                // The message takes what the line has left.
                ProgressStyle::with_template(
                    "{spinner} [{bar:25}] {percent:>3}% ETA {eta} {wide_msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {wide_msg}").expect("valid template"),
            ),
        };
        let bar = console.multi.add(bar);
        let started = Instant::now();
        let (interactive, lines) = (console.bar, console.progress_lines);
        let task = {
            let (progress, bar) = (progress.clone(), bar.clone());
            tokio::spawn(async move {
                let tick = if interactive {
                    Duration::from_millis(200)
                } else {
                    LOG_INTERVAL
                };
                let mut interval = tokio::time::interval(tick);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    let rows = progress.rows_done();
                    let rate = rows as f64 / started.elapsed().as_secs_f64();
                    let bytes = consumed.load(Relaxed);
                    let held = throttle.status();
                    if interactive {
                        bar.set_position(bytes);
                        let connections = match progress.connections.load(Relaxed) {
                            0 => String::new(),
                            n => format!(", {n} conn"),
                        };
                        let message = format!(
                            "{} rows, {} rows/s{connections}{}",
                            group(rows),
                            group(rate as u64),
                            held.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
                        );
                        bar.set_message(message);
                    }
                    if lines {
                        let percent =
                            size.map(|s| format!("{:.1}", 100.0 * bytes as f64 / s.max(1) as f64));
                        tracing::info!(
                            rows_written = rows,
                            rows_read = progress.rows_read.load(Relaxed),
                            rows_per_s = rate as u64,
                            percent = percent.as_deref().unwrap_or("?"),
                            held = held.as_deref().unwrap_or("no"),
                            "progress"
                        );
                    }
                }
            })
        };
        Reporter {
            progress,
            started,
            task,
            bar,
        }
    }

    /// Stops the display and returns the figures of `command`; the caller fills in the run
    /// and its end.
    pub fn finish(self, command: Invocation, table: String) -> Summary {
        self.task.abort();
        self.bar.finish_and_clear();
        let elapsed = self.started.elapsed().as_secs_f64();
        Summary::of(&self.progress, command, table, elapsed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(super::group(0), "0");
        assert_eq!(super::group(999), "999");
        assert_eq!(super::group(1000), "1,000");
        assert_eq!(super::group(1234567), "1,234,567");
    }
}
