//! `--connections auto`: the count of writers is tuned while the run goes, and settles.

use crate::common::*;

/// The counts `--connections auto` moved through, from its log lines `connections: A → B`.
fn counts(stderr: &str) -> Vec<u64> {
    let mut counts = vec![2];
    for line in stderr.lines() {
        if let Some((_, change)) = line.split_once("connections: ") {
            let to = change
                .split_whitespace()
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a count in {line:?}"));
            counts.push(to);
        }
    }
    counts
}

/// On a steady load (a rate cap well below what two connections reach, even in a debug build
/// on a busy machine: more connections cannot bring more rows per second) the count settles low and then moves at most one away from where it settled, while every row
/// is loaded exactly once.
#[test]
fn on_a_steady_load_the_count_settles_within_one() {
    const ROWS: i64 = 120_000;
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), ROWS as u64, 33);
    let run = run_bin(
        &seed_args(
            &db,
            &csv,
            &[
                "--connections",
                "auto",
                "--max-connections",
                "8",
                "--rate",
                "6000",
                "--batch-size",
                "500",
                "--json",
            ],
        ),
        None,
    );
    run.expect_ok();
    let seen = counts(&run.stderr);
    assert!(
        seen.len() > 2,
        "the count was never tried: {seen:?}\n{}",
        run.stderr
    );
    assert!(
        seen.iter().all(|&n| n <= 3),
        "it climbed on a flat load: {seen:?}"
    );
    let settled = *seen.last().unwrap();
    let late = &seen[seen.len() / 2..];
    assert!(
        late.iter().all(|&n| n.abs_diff(settled) <= 1),
        "it oscillates beyond one connection: {seen:?}"
    );
    assert_eq!(run.figure("rows_inserted"), ROWS as u64);
    assert_accounts_equal_csv(db.url(), &csv, ROWS);
}

#[test]
fn a_fixed_count_is_never_tuned_and_auto_is_the_default() {
    let db = TestDb::with_accounts();
    let csv = generate_csv(&db.path("generated.csv"), 60_000, 34);
    let fixed = run_bin(
        &seed_args(
            &db,
            &csv,
            &["--connections", "3", "--rate", "20000", "--json"],
        ),
        None,
    );
    fixed.expect_ok();
    assert_eq!(
        counts(&fixed.stderr),
        [2],
        "a fixed count changed:\n{}",
        fixed.stderr
    );
    let help = run_bin(&["seed", "--help"], None);
    assert!(help.stdout.contains("[default: auto]"), "{}", help.stdout);
    let refused = run_bin(&seed_args(&db, &csv, &["--connections", "0"]), None);
    refused.expect_code(2);
}
