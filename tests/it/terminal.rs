//! What a person sees at an 80-column terminal: the binary runs in a real pseudo-terminal
//! (a private tmux server, one per test), and the tests read the screen as tmux shows it.
//! Short lines without timestamps or `INFO`, the bar on one line that never wraps and is
//! gone at the end, warnings in yellow and errors in red unless colour is off, a clean
//! screen after Ctrl-C. Elsewhere (a pipe): timestamped lines, or JSON with `--log-format
//! json`; `--progress` overrides the choice.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A tmux server of its own with one 80×24 window running a command.
struct Screen {
    socket: String,
}

impl Screen {
    /// Runs `command` (a shell line) in the window; it stays open after the command ends,
    /// with `[exit N]` below its output.
    fn start(command: &str) -> Screen {
        let socket = unique_name("tty");
        let line = format!("{command}; echo \"[exit $?]\"; sleep 600");
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "80", "-y", "24", "-s", "t", &line])
            .stdin(Stdio::null())
            .status()
            .expect("tmux runs (.ci/run installs it)");
        assert!(status.success(), "tmux new-session: {status}");
        Screen { socket }
    }

    /// The screen's lines (a line the terminal wrapped joined again: one that wraps shows as
    /// longer than 80), with colour escapes when `escapes`.
    fn capture(&self, escapes: bool) -> String {
        let mut args = vec!["-L", &self.socket, "capture-pane", "-p", "-J", "-t", "t"];
        if escapes {
            args.push("-e");
        }
        let out = Command::new("tmux").args(&args).output().expect("capture");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t", keys])
            .status()
            .expect("send-keys");
        assert!(status.success());
    }

    /// Waits until the screen shows `text`; returns the screen.
    #[track_caller]
    fn wait_for(&self, text: &str) -> String {
        let mut screen = String::new();
        wait_until(
            &format!("{text:?} on the screen"),
            Duration::from_secs(60),
            || {
                screen = self.capture(false);
                screen.contains(text)
            },
        );
        screen
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// The binary with `args`, quoted for the shell, colour left to the terminal.
fn command(env: &str, args: &[&str]) -> String {
    let quoted: Vec<String> = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    format!(
        "env -u NO_COLOR -u CLICOLOR TERM=xterm-256color {env} {}",
        quoted.join(" ")
    )
}

/// A seed of `rows` generated rows at `rate` rows/s, on a screen of its own.
fn seed_on_screen(db: &TestDb, rows: u64, rate: &str) -> Screen {
    let csv = generate_csv(&db.path("in.csv"), rows, 3);
    Screen::start(&command(
        "",
        &[
            "seed",
            path_str(&csv),
            "--database-url",
            db.url(),
            "--rate",
            rate,
            "--connections",
            "2",
        ],
    ))
}

fn bar_lines(screen: &str) -> Vec<&str> {
    screen.lines().filter(|l| l.contains("ETA")).collect()
}

#[test]
fn a_seed_shows_short_lines_one_bar_that_fits_and_the_summary() {
    let db = TestDb::with_accounts();
    let screen = seed_on_screen(&db, 100_000, "25000");
    let during = screen.wait_for("ETA");
    let bars = bar_lines(&during);
    assert_eq!(bars.len(), 1, "one bar line:\n{during}");
    assert!(
        bars[0].chars().count() <= 80 && bars[0].contains("rows/s"),
        "the bar fits 80 columns:\n{during}"
    );
    let end = screen.wait_for("[exit 0]");
    assert!(
        end.contains("run 1 recorded in the ledger (attempt 1)"),
        "{end}"
    );
    assert!(
        end.contains("seed (run 1) completed: 100,000 rows read"),
        "{end}"
    );
    assert!(bar_lines(&end).is_empty(), "the bar is gone:\n{end}");
    for noise in ["INFO", "run_id=", "Z "] {
        assert!(!end.contains(noise), "no {noise:?} on a terminal:\n{end}");
    }
}

#[test]
fn ctrl_c_leaves_a_clean_screen_with_the_resume_command() {
    let db = TestDb::with_accounts();
    let screen = seed_on_screen(&db, 50_000, "2000");
    screen.wait_for("rows/s");
    screen.keys("C-c");
    let end = screen.wait_for("[exit 130]");
    assert!(bar_lines(&end).is_empty(), "the bar is gone:\n{end}");
    assert!(!end.contains("[="), "no bar left over:\n{end}");
    assert!(end.contains("interrupted"), "{end}");
    let resume = end
        .lines()
        .find(|l| l.starts_with("resume with: "))
        .unwrap_or_else(|| panic!("a resume line at the start of a line:\n{end}"));
    assert!(resume.contains("--resume 1"), "{end}");
}

#[test]
fn warnings_are_yellow_errors_red_and_no_color_turns_them_off() {
    let db = TestDb::new();
    db.execute("CREATE TABLE t (a int, b int, CONSTRAINT a_or_b CHECK (a > 0 OR b > 0))");
    let generate = [
        "generate",
        "--table",
        "t",
        "--count",
        "1",
        "--database-url",
        db.url(),
    ];
    let out = db.path("out.csv");
    let warn = |env: &str| {
        let screen = Screen::start(&format!(
            "{} > '{}'",
            command(env, &generate),
            path_str(&out)
        ));
        screen.wait_for("[exit 0]");
        screen.capture(true)
    };
    let colored = warn("");
    assert!(
        colored.contains("\x1b[33mwarning: ") && colored.contains("a_or_b"),
        "a yellow warning:\n{colored:?}"
    );
    for off in ["NO_COLOR=1", "CLICOLOR=0", "TERM=dumb"] {
        let plain = warn(off);
        assert!(
            plain.contains("warning: CHECK constraint a_or_b") && !plain.contains("\x1b[33m"),
            "{off}: no colour:\n{plain:?}"
        );
    }
    let screen = Screen::start(&command(
        "",
        &["seed", "/nonexistent.csv", "--database-url", db.url()],
    ));
    screen.wait_for("[exit 2]");
    let failed = screen.capture(true);
    assert!(
        failed.contains("\x1b[31merror: "),
        "a red error:\n{failed:?}"
    );
}

#[test]
fn elsewhere_lines_are_structured_or_json_and_progress_follows_the_flag() {
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("in.csv"), 12_000, 5);
    let seed = |extra: &[&str]| {
        let mut args = seed_args(&db, &csv, extra);
        args.extend(["--on-conflict", "skip"]);
        run_bin(&args, None)
    };
    let text = seed(&[]);
    text.expect_ok();
    assert!(
        text.stderr
            .contains(" INFO run 1 recorded in the ledger (attempt 1) run_id=1"),
        "timestamped structured lines in a pipe:\n{}",
        text.stderr
    );
    // Over 5 s, when the progress line comes.
    let json = seed(&[
        "--log-format",
        "json",
        "--progress",
        "log",
        "--rate",
        "2000",
    ]);
    json.expect_ok();
    let events: Vec<serde_json::Value> = json
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let recorded = events
        .iter()
        .find(|e| e["message"] == "run 2 recorded in the ledger (attempt 1)")
        .unwrap_or_else(|| panic!("the run's event:\n{}", json.stderr));
    assert_eq!(recorded["level"], "INFO");
    assert_eq!(recorded["run_id"], 2);
    assert!(
        events.iter().any(|e| e["message"] == "progress"),
        "--progress log writes progress lines:\n{}",
        json.stderr
    );
    let quiet = seed(&["--progress", "none", "--rate", "2000"]);
    quiet.expect_ok();
    assert!(!quiet.stderr.contains("progress"), "{}", quiet.stderr);
}
