//! `--metrics-addr`, scraped from outside while real runs go:
//!
//! 1. during a seed held to a few seconds by `--rate`, the rows-written counter grows from
//!    one scrape to a later one; once the run is over (`run_status` completed, served during
//!    `--metrics-linger`, after the summary was printed), the figures scraped are the
//!    `--json` summary's: rows read, inserted, rejected (reject mode), batches, retries; the
//!    batch latency histogram counted every batch; the labels name the run and the table;
//! 2. a purge serves its deleted rows the same way;
//! 3. an address already in use is a usage error (exit 2) naming it, before anything is
//!    written or recorded, for seed and purge.
//!
//! The tool takes port 0 and its log names the port, so no test picks a fixed one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;

/// Longest any run here may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The address the log names: `metrics at http://ADDR/metrics`.
fn metrics_addr(run: &mut Background) -> SocketAddr {
    run.find("the metrics address in the log", RUN_TIMEOUT, |run| {
        let log = run.stderr();
        let at = log.find("metrics at http://")? + "metrics at http://".len();
        log[at..].split('/').next()?.parse().ok()
    })
}

/// SIGINT (which ends `--metrics-linger`), then the exit.
fn interrupt_and_wait(run: Background) -> Run {
    run.signal("INT");
    run.wait(Duration::from_secs(10), "SIGINT did not end the linger")
}

/// One scrape: every sample, by its name and labels as served
/// (`provisioner_batches_total{command="seed",…}`), and the labels of one series parsed.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    text: String,
}

impl Scrape {
    /// The value of the series `name` whose labels include `labels` (`op="inserted"`); a
    /// series absent is 0 (a labelled counter appears at its first increment).
    fn value(&self, name: &str, labels: &[&str]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(series, _)| {
                series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
            })
            .map(|(_, v)| *v)
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} is more than one series"
        );
        found.first().copied().unwrap_or(0.0)
    }

    /// The sum over every series of `name`.
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// The constant labels of `name`'s series, as `key="value"` texts.
    fn labels(&self, name: &str) -> Vec<String> {
        let series = self
            .samples
            .keys()
            .find(|s| s.split('{').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{}", self.text));
        let inner = &series[series.find('{').expect("labels") + 1..series.len() - 1];
        inner
            .split("\",")
            .map(|l| l.trim_end_matches('"').to_string() + "\"")
            .collect()
    }

    fn running(&self) -> bool {
        self.value("provisioner_run_status", &["status=\"running\""]) == 1.0
    }
}

/// `GET /metrics` at `addr`: must answer 200 in the Prometheus text format.
#[track_caller]
fn scrape(addr: SocketAddr) -> Scrape {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                series.to_string(),
                value.parse().unwrap_or_else(|_| panic!("{l}")),
            )
        })
        .collect();
    Scrape {
        samples,
        text: body.to_string(),
    }
}

/// `count` generated accounts, every `REJECT_EVERY`th with an `is_active` no server takes.
fn input_with_rejects(db: &TestDb, count: u64) -> (PathBuf, u64) {
    const REJECT_EVERY: usize = 2_000;
    let path = generate_csv(&db.path("in.csv"), count, 16);
    let text = fs::read_to_string(&path).expect("read the input");
    let mut bad = 0;
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(n, line)| {
            if n == 0 || n % REJECT_EVERY != 7 {
                return line.to_string();
            }
            bad += 1;
            let broken = line.replacen(",t,", ",yess,", 1);
            let broken = match broken == line {
                true => line.replacen(",f,", ",yess,", 1),
                false => broken,
            };
            assert_ne!(broken, line, "no is_active field found in {line}");
            broken
        })
        .collect();
    fs::write(&path, lines.join("\n") + "\n").expect("write the input");
    (path, bad)
}

#[test]
fn a_seed_scraped_while_it_runs_grows_and_ends_at_its_summary() {
    let db = TestDb::with_accounts();
    const ROWS: u64 = 16_000;
    let (input, bad) = input_with_rejects(&db, ROWS);
    let rejects = db.path("rejects.csv");
    // 16,000 rows at 4,000 rows/s: about 4 s, in 32 batches.
    let mut run = Background::start(
        &db,
        "seed",
        &seed_args(
            &db,
            &input,
            &[
                "--metrics-addr",
                "127.0.0.1:0",
                "--metrics-linger",
                "120",
                "--rate",
                "4000",
                "--batch-size",
                "500",
                "--connections",
                "2",
                "--rejects",
                path_str(&rejects),
                "--json",
            ],
        ),
    );
    let addr = metrics_addr(&mut run);
    let inserted = |s: &Scrape| s.value("provisioner_rows_written_total", &["op=\"inserted\""]);

    // Two scrapes while the run goes, the second with more rows written.
    let first = run.find("rows written", RUN_TIMEOUT, |_| {
        Some(scrape(addr)).filter(|s| inserted(s) > 0.0 && s.running())
    });
    let second = run.find("more rows written", RUN_TIMEOUT, |_| {
        Some(scrape(addr)).filter(|s| inserted(s) > inserted(&first))
    });
    assert!(
        second.running(),
        "the run ended before a second scrape saw it grow: {} then {} rows",
        inserted(&first),
        inserted(&second)
    );
    assert!(
        inserted(&first) < (ROWS - bad) as f64,
        "the first scrape came after the last batch: {}",
        first.text
    );
    assert_eq!(
        first.value("provisioner_rate_limit_rows_per_second", &[]),
        4000.0
    );
    assert_eq!(first.value("provisioner_connections_target", &[]), 2.0);

    // The end: served after the summary, during the linger.
    let last = run.find("the run's end in the metrics", RUN_TIMEOUT, |_| {
        Some(scrape(addr))
            .filter(|s| s.value("provisioner_run_status", &["status=\"completed\""]) == 1.0)
    });
    let printed = run.find("the JSON summary while lingering", RUN_TIMEOUT, |w| {
        Some(w.stdout()).filter(|out| out.contains("\"status\":\"completed\""))
    });
    assert_eq!(
        scrape(addr).text,
        last.text,
        "the figures moved after the end"
    );
    let done = interrupt_and_wait(run);
    assert_eq!(
        done.code, 3,
        "rows were rejected: exit 3\nstderr:\n{}",
        done.stderr
    );
    assert_eq!(
        done.stdout, printed,
        "the summary was printed before the linger"
    );

    let json = done.json();
    let figure = |key: &str| {
        json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {json}")) as f64
    };
    assert_eq!(figure("rows_rejected"), bad as f64, "{json}");
    assert_eq!(figure("rows_inserted"), (ROWS - bad) as f64, "{json}");
    for (series, labels, key) in [
        ("provisioner_rows_read_total", &[][..], "rows_read"),
        (
            "provisioner_rows_written_total",
            &["op=\"inserted\""][..],
            "rows_inserted",
        ),
        (
            "provisioner_rows_written_total",
            &["op=\"updated\""][..],
            "rows_updated",
        ),
        ("provisioner_rows_skipped_total", &[][..], "rows_skipped"),
        ("provisioner_rows_rejected_total", &[][..], "rows_rejected"),
        ("provisioner_rows_resumed_total", &[][..], "rows_resumed"),
        ("provisioner_batches_total", &[][..], "batches"),
        (
            "provisioner_batch_duration_seconds_count",
            &[][..],
            "batches",
        ),
    ] {
        assert_eq!(
            last.value(series, labels),
            figure(key),
            "{series}{labels:?} against the summary's {key}\n{}",
            last.text
        );
    }
    assert_eq!(last.sum("provisioner_retries_total"), figure("retries"));
    assert_eq!(last.value("provisioner_rows_per_second", &[]), 0.0);
    assert_eq!(last.value("provisioner_connections_in_use", &[]), 0.0);
    assert_eq!(
        last.value(
            "provisioner_throttle_state",
            &["state=\"running\"", "reason=\"none\""]
        ),
        1.0
    );

    // Labels: the command, the table and the run, and no connection string.
    let run_id = json["run_id"].as_i64().expect("a run id");
    let table = json["table"].as_str().expect("a table");
    assert_eq!(
        last.labels("provisioner_batches_total"),
        [
            "command=\"seed\"".to_string(),
            format!("table=\"{table}\""),
            format!("run_id=\"{run_id}\""),
        ]
    );
    assert!(!last.text.contains(db.name()), "{}", last.text);
}

#[test]
fn a_purge_serves_its_deleted_rows() {
    let db = TestDb::with_accounts();
    db.seed(&fixture_path(), &[]).expect_ok();
    let mut run = Background::start(
        &db,
        "purge",
        &[
            "purge",
            "--where",
            "true",
            "--yes",
            "--database-url",
            db.url(),
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics-linger",
            "120",
            "--batch-size",
            "100",
            "--json",
        ],
    );
    let addr = metrics_addr(&mut run);
    let last = run.find("the purge's end in the metrics", RUN_TIMEOUT, |_| {
        Some(scrape(addr))
            .filter(|s| s.value("provisioner_run_status", &["status=\"completed\""]) == 1.0)
    });
    let done = interrupt_and_wait(run);
    done.expect_ok();
    assert_eq!(db.count("accounts"), 0);
    assert_eq!(
        last.value("provisioner_rows_written_total", &["op=\"deleted\""]),
        done.figure("rows_deleted") as f64
    );
    assert_eq!(done.figure("rows_deleted"), 1000);
    assert_eq!(
        last.value("provisioner_rows_missing_total", &[]),
        done.figure("rows_missing") as f64
    );
    assert_eq!(
        last.value("provisioner_batches_total", &[]),
        done.figure("batches") as f64
    );
    assert_eq!(
        last.labels("provisioner_batches_total")[0],
        "command=\"purge\""
    );
}

#[test]
fn an_address_in_use_exits_2_before_anything_is_written() {
    let db = TestDb::with_accounts();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let seed = db.seed(&fixture_path(), &["--metrics-addr", &addr]);
    seed.expect_code(2);
    assert!(
        seed.stderr.contains(&format!("--metrics-addr {addr}")),
        "the error names the address:\n{}",
        seed.stderr
    );
    assert_eq!(db.count("accounts"), 0, "nothing was written");
    assert_eq!(
        db.scalar_text("SELECT to_regnamespace('provisioner')::text"),
        None,
        "no run was recorded"
    );

    db.execute(
        "INSERT INTO accounts (external_id, email, username) \
                VALUES (gen_random_uuid(), 'a@example.test', 'a')",
    );
    let purge = run_bin_bounded(
        &[
            "purge",
            "--where",
            "true",
            "--yes",
            "--database-url",
            db.url(),
            "--metrics-addr",
            &addr,
        ],
        RUN_TIMEOUT,
    );
    purge.expect_code(2);
    assert!(purge.stderr.contains(&addr), "{}", purge.stderr);
    assert_eq!(db.count("accounts"), 1, "nothing was deleted");
    drop(taken);
}
