//! `--metrics-addr`: the run's figures in the Prometheus text format (0.0.4), served over
//! HTTP at `/metrics` while the run lasts, and `--metrics-linger` seconds after it, for the
//! dashboard a load test watches.
//!
//! The listener is bound when the flags are read, before anything connects or is written, so
//! an address already in use is a usage error. A thread of its own answers, one request at a
//! time (`GET /metrics`, 404 for any other path), so scrapes are answered whatever the run's
//! tasks are doing, and still while the process lingers after its runtime is gone.
//!
//! Most figures are read at each scrape from where the run counts them already: the
//! [`Progress`] counters that the summary adds up (so the final figures are the `--json`
//! summary's), the throttle's state and rate, the pool. The per-row path pays nothing. Two
//! are counted for the metrics alone, once per batch: retries by cause (the kinds of
//! [`crate::db::retry`]'s classification) and each batch's latency.
//!
//! Every series carries the run's labels `command`, `table` and `run_id` (`run_id` only when
//! the ledger records the run, `dry_run="true"` on a dry run). No connection string, path or
//! other free text is ever a label.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeMetric, prometheus_text,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::concurrency::Connections;
use super::report::{Progress, Rows, Summary};
use super::throttle::{Hold, Throttle};
use crate::error::Error;
use crate::model::{Invocation, Status};

/// The current rate is the rows done over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// A client that sends nothing, or reads nothing, is given up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a request that is read (its line and headers).
const MAX_REQUEST: u64 = 16 * 1024;

/// The endpoint of `--metrics-addr`: bound by [`Server::bind`], serving the run's metrics
/// from [`Server::start`] on.
pub struct Server {
    addr: SocketAddr,
    linger: Duration,
    /// The run's metrics, once it started; until then `/metrics` answers with none.
    registry: Arc<RwLock<Option<Registry>>>,
    /// How the run went: running until [`Server::ended`].
    status: Arc<Mutex<Status>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}

/// What a run is, as every series' labels say.
#[derive(Debug, Clone)]
pub struct About {
    pub invocation: Invocation,
    /// The target table, as the summary names it.
    pub table: String,
    /// The ledger's run id (the parent's, in a run of many inputs); none without a ledger.
    pub run_id: Option<i64>,
}

/// Where the figures served are read from: the run's own counters and state.
pub struct Sources<'a> {
    pub progress: &'a Arc<Progress>,
    pub throttle: &'a Arc<Throttle>,
    pub pool: &'a Pool,
    pub connections: Connections,
}

impl Server {
    /// Listens on `addr` (`HOST:PORT`; port 0 takes a free one, which the log names) and
    /// answers scrapes from now on. An address that cannot be listened on (in use, not
    /// local, not an address) is a usage error naming it. After the run, the final figures
    /// are served for `linger` more (see [`Server::linger`]).
    pub fn bind(addr: &str, linger: Duration) -> Result<Arc<Server>, Error> {
        let refused = |e: std::io::Error| {
            Error::Usage(format!("--metrics-addr {addr}: cannot listen there: {e}"))
        };
        let listener = TcpListener::bind(addr).map_err(refused)?;
        let bound = listener.local_addr().map_err(refused)?;
        let registry = Arc::new(RwLock::new(None));
        let served = registry.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&listener, &served))
            .map_err(Error::Runtime)?;
        tracing::info!("metrics at http://{bound}/metrics");
        Ok(Arc::new(Server {
            addr: bound,
            linger,
            registry,
            status: Arc::new(Mutex::new(Status::Running)),
        }))
    }

    /// Serves the figures of the run that starts now, read from `sources`; returns what the
    /// writers feed (retries, batch latencies). Within a runtime, the current rate is sampled
    /// every second on it; without one it is the rate since the start.
    pub fn start(&self, about: &About, sources: Sources) -> Recorder {
        let mut labels: Vec<(Cow<'static, str>, Cow<'static, str>)> = vec![
            ("command".into(), about.invocation.command.as_str().into()),
            ("table".into(), about.table.clone().into()),
        ];
        if let Some(id) = about.run_id {
            labels.push(("run_id".into(), id.to_string().into()));
        }
        if about.invocation.dry_run {
            labels.push(("dry_run".into(), "true".into()));
        }
        let mut registry = Registry::with_prefix_and_labels("provisioner", labels.into_iter());
        let recorder = Recorder {
            retries: Family::default(),
            latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
        };
        registry.register(
            "retries",
            "Batches replayed after a transient failure, by cause (the SQLSTATE's condition \
             name, connection_closed, io_error, connect_failed, pool_timeout, batch_timeout)",
            recorder.retries.clone(),
        );
        registry.register_with_unit(
            "batch_duration",
            "Time from a batch's admission by the throttle to its commit, retries included",
            Unit::Seconds,
            recorder.latency.clone(),
        );
        let rate = Arc::new(Rate {
            progress: sources.progress.clone(),
            samples: Mutex::new(VecDeque::from([(Instant::now(), 0)])),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let rate = rate.clone();
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    rate.sample();
                }
            });
        }
        registry.register_collector(Box::new(Figures {
            invocation: about.invocation,
            progress: sources.progress.clone(),
            throttle: sources.throttle.clone(),
            pool: sources.pool.clone(),
            connections: sources.connections,
            rate,
            status: self.status.clone(),
        }));
        *self.status.lock().expect("status lock") = Status::Running;
        *self.registry.write().expect("registry lock") = Some(registry);
        recorder
    }

    /// The run ended so: its status is served from now on, and the current rate is 0.
    pub fn ended(&self, status: Status) {
        *self.status.lock().expect("status lock") = status;
    }

    /// After the run and its summary: serves the final figures for `--metrics-linger`
    /// seconds, or until SIGINT or SIGTERM.
    pub async fn linger(&self) {
        if self.linger.is_zero() {
            return;
        }
        tracing::info!(
            "serving the final metrics at http://{}/metrics for {} s (Ctrl-C ends it)",
            self.addr,
            self.linger.as_secs()
        );
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return tokio::time::sleep(self.linger).await;
        };
        tokio::select! {
            _ = tokio::time::sleep(self.linger) => {}
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}

/// What the writers count for the metrics, once per batch.
#[derive(Clone)]
pub struct Recorder {
    retries: Family<[(&'static str, &'static str); 1], Counter>,
    latency: Histogram,
}

impl Recorder {
    /// A batch is replayed after a failure of `kind` (see [`crate::db::retry::Cause`]).
    pub fn retried(&self, kind: &'static str) {
        self.retries.get_or_create(&[("cause", kind)]).inc();
    }

    /// A batch committed, `took` after the throttle let it go.
    pub fn committed(&self, took: Duration) {
        self.latency.observe(took.as_secs_f64());
    }
}

/// The rows done per second over the last [`RATE_WINDOW`], from a sample a second.
struct Rate {
    progress: Arc<Progress>,
    /// When, and how many rows were done then; the oldest at most a window ago.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Rate {
    fn sample(&self) {
        let now = Instant::now();
        let mut samples = self.samples.lock().expect("samples lock");
        samples.push_back((now, self.progress.rows_done()));
        while samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            samples.pop_front();
        }
    }

    fn current(&self) -> f64 {
        let samples = self.samples.lock().expect("samples lock");
        let Some(&(since, rows)) = samples.front() else {
            return 0.0;
        };
        let elapsed = since.elapsed().as_secs_f64();
        if elapsed < 1e-3 {
            return 0.0;
        }
        self.progress.rows_done().saturating_sub(rows) as f64 / elapsed
    }
}

/// The figures read at each scrape.
struct Figures {
    invocation: Invocation,
    progress: Arc<Progress>,
    throttle: Arc<Throttle>,
    pool: Pool,
    connections: Connections,
    rate: Arc<Rate>,
    status: Arc<Mutex<Status>>,
}

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Figures")
            .field("invocation", &self.invocation)
            .finish_non_exhaustive()
    }
}

impl Collector for Figures {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The summary's own sums: what `--json` prints at the end.
        let summary = Summary::of(&self.progress, self.invocation, String::new(), 1.0);
        let e = &mut e;
        counter(
            e,
            "rows_read",
            "CSV records read (seed), or keys read (purge).",
            summary.rows_read,
        )?;
        match summary.rows {
            Rows::Seed {
                rows_inserted,
                rows_updated,
                rows_skipped,
                rows_rejected,
                ..
            } => {
                let written = [("inserted", rows_inserted), ("updated", rows_updated)];
                family(
                    e,
                    "rows_written",
                    WRITTEN,
                    "op",
                    &written,
                    ConstCounter::new,
                )?;
                counter(
                    e,
                    "rows_skipped",
                    "Rows left out because their key exists (--on-conflict skip).",
                    rows_skipped,
                )?;
                counter(
                    e,
                    "rows_rejected",
                    "Rows set aside in reject mode (--rejects), over the whole run.",
                    rows_rejected,
                )?;
            }
            Rows::Purge {
                rows_deleted,
                rows_missing,
            } => {
                let written = [("deleted", rows_deleted)];
                family(
                    e,
                    "rows_written",
                    WRITTEN,
                    "op",
                    &written,
                    ConstCounter::new,
                )?;
                counter(
                    e,
                    "rows_missing",
                    "Keys that matched no row (already gone, or never there).",
                    rows_missing,
                )?;
            }
        }
        counter(
            e,
            "rows_resumed",
            "Rows of batches an earlier attempt of the run committed, not sent again.",
            summary.rows_resumed,
        )?;
        counter(
            e,
            "batches",
            "Batches committed, each in its own transaction.",
            summary.batches,
        )?;
        let status = *self.status.lock().expect("status lock");
        let rate = match status {
            Status::Running => self.rate.current(),
            _ => 0.0,
        };
        gauge(
            e,
            "rows_per_second",
            "Rows done per second over the last 5 seconds.",
            rate,
        )?;
        gauge(
            e,
            "rate_limit_rows_per_second",
            "The rate the throttle lets through now (--rate, lowered by --max-batch-latency); \
             0: no limit.",
            self.throttle.rate().unwrap_or(0),
        )?;
        let hold = self.throttle.hold();
        let mut states = vec![(("running", "none"), u8::from(hold.is_none()))];
        states.extend(
            Hold::ALL
                .iter()
                .map(|h| ((h.state(), h.reason()), u8::from(hold == Some(*h)))),
        );
        let mut m = e.encode_descriptor(
            "throttle_state",
            "1 for what holds the writers back now (state paused or throttled, and why), \
             else for running.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for ((state, reason), on) in states {
            let labels = [("state", state), ("reason", reason)];
            ConstGauge::new(u32::from(on)).encode(m.encode_family(&labels)?)?;
        }
        let pool = self.pool.status();
        gauge(
            e,
            "connections_in_use",
            "Connections of the writers' pool taken by a batch now.",
            pool.size.saturating_sub(pool.available),
        )?;
        let target = match (self.connections, self.progress.connections()) {
            (Connections::Auto { .. }, n) if n > 0 => n,
            (connections, _) => connections.max() as u64,
        };
        gauge(
            e,
            "connections_target",
            "Writers that may work at once now: --connections N, or where auto stands.",
            target,
        )?;
        let statuses = [
            Status::Running,
            Status::Completed,
            Status::Failed,
            Status::Interrupted,
        ]
        .map(|s| (s.as_str(), u32::from(s == status)));
        family(
            e,
            "run_status",
            STATUS,
            "status",
            &statuses,
            ConstGauge::new,
        )
    }
}

const WRITTEN: &str = "Rows written: inserted or updated (seed), deleted (purge).";
const STATUS: &str = "1 for how the run stands: running, completed, failed or interrupted.";

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge<N: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One series of `name` for each of `values`, labelled `label`.
fn family<N: Copy, M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(&'static str, N)],
    metric: impl Fn(N) -> M,
) -> Result<(), std::fmt::Error> {
    let Some(&(_, first)) = values.first() else {
        return Ok(());
    };
    let mut m = e.encode_descriptor(name, help, None, metric(first).metric_type())?;
    for &(value, n) in values {
        let labels = [(label, value)];
        metric(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Answers each connection in turn until the process ends.
fn serve(listener: &TcpListener, registry: &RwLock<Option<Registry>>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(&stream, registry) {
                    tracing::debug!("metrics: a request failed: {e}");
                }
            }
            // Out of file descriptors, or the like: try again in a moment.
            Err(e) => {
                tracing::debug!("metrics: accepting a connection failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request and answers it: the metrics for `GET /metrics` (or `HEAD`), else 404
/// (405 for another method on `/metrics`). The connection is closed after the answer.
fn answer(stream: &TcpStream, registry: &RwLock<Option<Registry>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.take(MAX_REQUEST));
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers are read (and ignored), so that closing does not reset the connection
    // over unread data before the client has the answer.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 0 && !header.trim_end().is_empty() {
        header.clear();
    }
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or_default();
    let plain = "text/plain; charset=utf-8";
    let (status, content_type, body, allow) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let mut body = String::new();
            let encoded = match &*registry.read().expect("registry lock") {
                Some(registry) => prometheus_text::encode(&mut body, registry),
                None => Ok(()),
            };
            match encoded {
                Ok(()) => ("200 OK", prometheus_text::CONTENT_TYPE, body, false),
                Err(_) => ("500 Internal Server Error", plain, String::new(), false),
            }
        }
        (_, "/metrics") => (
            "405 Method Not Allowed",
            plain,
            "GET /metrics\n".into(),
            true,
        ),
        _ => (
            "404 Not Found",
            plain,
            "not found: the metrics are at /metrics\n".into(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    if allow {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if method != "HEAD" {
        out.push_str(&body);
    }
    let mut stream = stream;
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Command, Outcome};
    use crate::run::throttle::ThrottleOptions;

    /// `GET <path>` on `addr`: the status line, the headers and the body.
    fn get(addr: SocketAddr, method: &str, path: &str) -> (String, String, String) {
        let mut stream = TcpStream::connect(addr).expect("connect");
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("a head");
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status.to_string(), headers.to_string(), body.to_string())
    }

    fn pool() -> Pool {
        let mut config = deadpool_postgres::Config::new();
        config.host = Some("127.0.0.1".into());
        config.dbname = Some("unused".into());
        config
            .create_pool(None, tokio_postgres::NoTls)
            .expect("a pool (it connects lazily)")
    }

    #[test]
    fn serves_the_run_in_the_text_format_and_nothing_else() {
        let server = Server::bind("127.0.0.1:0", Duration::ZERO).expect("bind");
        let addr = server.addr;
        // Before the run starts: an empty exposition.
        let (status, _, body) = get(addr, "GET", "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "");

        let progress = Arc::new(Progress::default());
        let throttle = Throttle::new(ThrottleOptions {
            rate: Some(5000),
            ..ThrottleOptions::default()
        });
        let about = About {
            invocation: Invocation {
                command: Command::Seed,
                dry_run: false,
            },
            table: r#""Load ""Test"""."A\b""#.into(),
            run_id: Some(42),
        };
        let sources = Sources {
            progress: &progress,
            throttle: &throttle,
            pool: &pool(),
            connections: Connections::Fixed(3),
        };
        let recorder = server.start(&about, sources);
        for _ in 0..5 {
            progress.row_read();
        }
        progress.committed(Outcome {
            inserted: 4,
            rejected: 1,
            ..Outcome::default()
        });
        recorder.committed(Duration::from_millis(30));
        recorder.retried("deadlock_detected");
        recorder.retried("deadlock_detected");
        recorder.retried("connection_closed");

        let (status, headers, body) = get(addr, "GET", "/metrics?x=1");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            "{headers}"
        );
        let labels = r#"command="seed",table="\"Load \"\"Test\"\"\".\"A\\b\"",run_id="42""#;
        for line in [
            format!("provisioner_rows_read_total{{{labels}}} 5"),
            format!("provisioner_rows_written_total{{{labels},op=\"inserted\"}} 4"),
            format!("provisioner_rows_written_total{{{labels},op=\"updated\"}} 0"),
            format!("provisioner_rows_rejected_total{{{labels}}} 1"),
            format!("provisioner_batches_total{{{labels}}} 1"),
            format!("provisioner_retries_total{{{labels},cause=\"deadlock_detected\"}} 2"),
            format!("provisioner_retries_total{{{labels},cause=\"connection_closed\"}} 1"),
            format!("provisioner_batch_duration_seconds_count{{{labels}}} 1"),
            format!("provisioner_batch_duration_seconds_bucket{{{labels},le=\"0.04\"}} 1"),
            format!("provisioner_batch_duration_seconds_bucket{{{labels},le=\"0.02\"}} 0"),
            format!("provisioner_rate_limit_rows_per_second{{{labels}}} 5000"),
            format!("provisioner_throttle_state{{{labels},state=\"running\",reason=\"none\"}} 1"),
            format!(
                "provisioner_throttle_state{{{labels},state=\"paused\",reason=\"pause_file\"}} 0"
            ),
            format!("provisioner_connections_in_use{{{labels}}} 0"),
            format!("provisioner_connections_target{{{labels}}} 3"),
            format!("provisioner_run_status{{{labels},status=\"running\"}} 1"),
            "# TYPE provisioner_batch_duration_seconds histogram".to_string(),
            "# TYPE provisioner_rows_per_second gauge".to_string(),
        ] {
            assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
        }

        server.ended(Status::Completed);
        let (_, _, body) = get(addr, "GET", "/metrics");
        let done = format!("provisioner_run_status{{{labels},status=\"completed\"}} 1");
        assert!(body.lines().any(|l| l == done), "{body}");
        let rate = format!("provisioner_rows_per_second{{{labels}}} 0.0");
        assert!(body.lines().any(|l| l == rate), "{body}");

        let (status, headers, body) = get(addr, "HEAD", "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains("Content-Length: "), "{headers}");
        assert_eq!(body, "");
        assert_eq!(get(addr, "GET", "/").0, "HTTP/1.1 404 Not Found");
        assert_eq!(get(addr, "GET", "/metricsx").0, "HTTP/1.1 404 Not Found");
        let (status, headers, _) = get(addr, "POST", "/metrics");
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        assert!(headers.contains("Allow: GET, HEAD"), "{headers}");
    }

    #[test]
    fn an_address_in_use_or_malformed_is_a_usage_error_naming_it() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let err = Server::bind(&addr, Duration::ZERO).expect_err("the port is taken");
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
        assert!(err.to_string().contains(&addr), "{err}");
        let err = Server::bind("9187", Duration::ZERO).expect_err("no host");
        assert!(err.to_string().contains("--metrics-addr 9187"), "{err}");
    }

    #[test]
    fn the_current_rate_is_over_the_last_samples() {
        let progress = Arc::new(Progress::default());
        let start = Instant::now() - Duration::from_secs(2);
        let rate = Rate {
            progress: progress.clone(),
            samples: Mutex::new(VecDeque::from([(start, 0)])),
        };
        progress.committed(Outcome {
            inserted: 1000,
            ..Outcome::default()
        });
        let r = rate.current();
        assert!((400.0..=500.0).contains(&r), "{r}");
        rate.sample();
        // The old sample stays until it is a window old.
        assert_eq!(rate.samples.lock().unwrap().len(), 2);
    }
}
