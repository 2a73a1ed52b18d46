//! Reject mode never loses a rejected row: the ledger keeps each batch's rejected rows in
//! the batch's own transaction, the rejects file is written from them once the batch
//! committed (also by a replay that finds its batch committed after the reply to its COMMIT
//! was lost), and a resume writes the file again from the ledger. A disk that fills up fails
//! the run (exit 1, naming the file) without a half record in the file; a torn or short file
//! is repaired by a resume; a path that cannot take the file refuses the run (exit 2) before
//! anything is recorded.

use crate::common::proxy::Proxy;
use crate::common::rejects::read_rejects_of;
use crate::common::tmpfs::Tmpfs;
use crate::common::*;
use crate::seed_rejects::{COLS, good, join, rejecting, target, uuid};

/// 400 records, of which every 8th is refused by the server through a foreign key (found by
/// bisection), every 8th by a trigger (named by COPY) and every 8th by the reader's checks
/// (not a uuid): 150 rejected rows whose reasons are the same on every run. Returns the
/// file's bytes and each bad record's text.
fn many_bad() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for i in 1..=400u32 {
        let row = match i % 8 {
            0 => format!("{},f{i}@example.test,f{i},F,user,blue", uuid(i)).into_bytes(),
            2 => format!("not-a-uuid-{i},u{i}@example.test,u{i},U,user,red").into_bytes(),
            4 => format!("{},b{i}@example.test,bot{i},B,user,red", uuid(i)).into_bytes(),
            _ => good(i),
        };
        if i % 2 == 0 && i % 8 != 6 {
            bad.push(row.clone());
        }
        rows.push(row);
    }
    (format!("{COLS}\n{}\n", join(&rows)).into_bytes(), bad)
}

/// The accounts the file loaded, by the columns it gave them, in order.
fn loaded(db: &TestDb) -> Vec<Option<String>> {
    db.column_text(
        "SELECT concat_ws(',', external_id, email, username, display_name, role, team) \
         FROM accounts ORDER BY external_id",
    )
}

/// What a run without any fault leaves: the rejects file's bytes and the table's rows.
fn reference(bytes: &[u8], bad: &[Vec<u8>]) -> (Vec<u8>, Vec<Option<String>>) {
    let db = target();
    let file = db.write("many_bad.csv", bytes);
    let rejects = db.path("rejects.csv");
    db.seed(
        &file,
        &rejecting(&rejects, &["--batch-size", "50", "--connections", "1"]),
    )
    .expect_code(3);
    let raws: Vec<&[u8]> = bad.iter().map(Vec::as_slice).collect();
    let got = read_rejects_of(&rejects, COLS.as_bytes(), &raws);
    let sqlstates = |state: &str| got.iter().filter(|r| r.sqlstate == state).count();
    assert_eq!(
        (sqlstates("23503"), sqlstates("P0001"), sqlstates("22P02")),
        (50, 50, 50),
        "{got:#?}"
    );
    (std::fs::read(&rejects).unwrap(), loaded(&db))
}

/// The rows the ledger keeps and counts for the run, which must agree.
#[track_caller]
fn ledger_rejected(db: &TestDb) -> i64 {
    let kept = db.count("provisioner.rejected_rows");
    assert_eq!(
        kept,
        db.scalar_i64("SELECT coalesce(sum(rejected), 0)::bigint FROM provisioner.batches"),
        "the ledger keeps every row its batches count as rejected"
    );
    kept
}

/// The rejects file is the first part of `full`, cut at the end of a record: no half record.
#[track_caller]
fn assert_whole_records_of(file: &[u8], full: &[u8]) {
    assert!(
        full.starts_with(file) && file.ends_with(b"\n"),
        "the rejects file is not the reference cut at a record's end:\n{}",
        String::from_utf8_lossy(file)
    );
}

#[test]
fn a_full_disk_fails_the_run_cleanly_and_a_resume_writes_every_rejected_row() {
    let (bytes, bad) = many_bad();
    let (want_file, want_rows) = reference(&bytes, &bad);
    // Room for the header and about two batches' rejected rows.
    let disk = Tmpfs::mount(8 * 1024);
    let db = target();
    let file = db.write("many_bad.csv", &bytes);
    let rejects = disk.path("rejects.csv");
    let args = rejecting(
        &rejects,
        &["--batch-size", "50", "--connections", "1", "--json"],
    );

    let run = db.seed(&file, &args);
    run.expect_code(1);
    let error = run.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(path_str(&rejects))
            && error.contains("No space left on device")
            && error.contains("kept in the ledger"),
        "{error}"
    );
    assert_eq!(run.json()["status"], "failed");
    let first = std::fs::read(&rejects).unwrap();
    assert_whole_records_of(&first, &want_file);
    let committed = db.ledger_batches();
    assert!((1..8).contains(&committed), "{committed} batches committed");
    assert_eq!(
        loaded(&db).len() as i64,
        db.scalar_i64("SELECT sum(inserted)::bigint FROM provisioner.batches") + 1,
        "the table holds what the committed batches inserted, and the row target() put there"
    );
    assert!(
        ledger_rejected(&db) > first.split(|&b| b == b'\n').count() as i64 - 2,
        "the ledger keeps the rows the file could not take"
    );

    // Still full: the resume fails the same way and loses nothing.
    let mut resume = args.clone();
    resume.push("--resume");
    let run = db.seed(&file, &resume);
    run.expect_code(1);
    assert!(
        run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert_whole_records_of(&std::fs::read(&rejects).unwrap(), &want_file);

    disk.resize(1024 * 1024);
    let run = db.seed(&file, &resume);
    run.expect_code(3);
    assert_eq!(
        run.figure("rows_rejected"),
        150,
        "the run's rejects, all attempts"
    );
    assert_eq!(
        std::fs::read(&rejects).unwrap(),
        want_file,
        "the rejects file is byte for byte the one a run without the fault writes"
    );
    assert_eq!(loaded(&db), want_rows, "every good row, once");
    assert_eq!(ledger_rejected(&db), 150);
    assert_eq!(
        db.scalar_i64("SELECT attempts::bigint FROM provisioner.runs"),
        3
    );
}

#[test]
fn a_resume_repairs_a_torn_rejects_file_and_adds_the_rows_it_lacks() {
    let (bytes, bad) = many_bad();
    let (want_file, want_rows) = reference(&bytes, &bad);
    let db = target();
    let file = db.write("many_bad.csv", &bytes);
    let rejects = db.path("rejects.csv");
    let base = ["--batch-size", "50", "--connections", "1"];
    let mut first = rejecting(&rejects, &base);
    first.extend(["--max-errors", "80"]);
    db.seed(&file, &first).expect_code(1);
    let written = std::fs::read(&rejects).unwrap();
    assert_whole_records_of(&written, &want_file);
    let records = read_rejects_of(&rejects, COLS.as_bytes(), &raws_of(&bad, &written));
    assert!(records.len() >= 2, "{records:#?}");

    // As a crash mid-write would leave it: the last record gone, the one before it torn.
    let mut torn = written.clone();
    torn.truncate(torn.len() - 1);
    let last_start = torn.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    torn.truncate(last_start - 20);
    std::fs::write(&rejects, &torn).unwrap();

    let mut resume = rejecting(&rejects, &base);
    resume.push("--resume");
    db.seed(&file, &resume).expect_code(3);
    assert_eq!(
        std::fs::read(&rejects).unwrap(),
        want_file,
        "the rejects file is byte for byte the one a run without the fault writes"
    );
    assert_eq!(loaded(&db), want_rows);
    assert_eq!(ledger_rejected(&db), 150);
}

#[test]
fn a_batch_found_committed_after_a_lost_commit_reply_writes_its_rows_from_the_ledger() {
    let (bytes, bad) = many_bad();
    let (want_file, want_rows) = reference(&bytes, &bad);
    let db = target();
    // The ledger made beforehand, so that the run's first COMMIT is its first batch's.
    run_bin(&["runs", "--database-url", db.url()], None).expect_ok();
    let file = db.write("many_bad.csv", &bytes);
    let rejects = db.path("rejects.csv");
    let proxy = Proxy::start(server_tcp_addr());
    proxy.lose_commit_replies(1);
    let url = db.url_via(proxy.addr());
    let args = rejecting(
        &rejects,
        &["--batch-size", "50", "--connections", "1", "--json"],
    );
    // Exactly the run's rejected rows: the batch found committed counts its rows once.
    let budget = [&args[..], &["--max-errors", "150"]].concat();
    let run = db_seed_via(&file, &url, &budget);
    run.expect_code(3);
    assert_eq!(proxy.commit_replies_lost(), 1);
    assert_eq!(
        run.stderr
            .matches("had already committed; not replayed")
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(run.figure("rows_rejected"), 150);
    assert_eq!(
        std::fs::read(&rejects).unwrap(),
        want_file,
        "the first batch's rows the server refused come from the ledger"
    );
    assert_eq!(loaded(&db), want_rows);
}

/// `provisioner seed <input> --database-url <url> <args…>`.
fn db_seed_via(input: &std::path::Path, url: &str, args: &[&str]) -> Run {
    let mut all = vec!["seed", path_str(input), "--database-url", url];
    all.extend_from_slice(args);
    run_bin(&all, None)
}

/// The bad records whose lines `written` holds, in order (the file's first records).
fn raws_of<'a>(bad: &'a [Vec<u8>], written: &[u8]) -> Vec<&'a [u8]> {
    let records = written.split(|&b| b == b'\n').count() - 2;
    bad[..records].iter().map(Vec::as_slice).collect()
}

#[test]
fn a_rejects_path_that_cannot_take_the_file_refuses_the_run_before_anything_is_recorded() {
    let db = target();
    let file = db.write("one.csv", format!("{COLS}\n{}\n", join(&[good(1)])));
    let missing = db.path("no_such_dir").join("rejects.csv");
    let directory = db.path("");
    let full = std::path::Path::new("/dev/full");
    for path in [&missing, &directory, full] {
        let run = db.seed(&file, &rejecting(path, &[]));
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("--rejects {}", path.display())),
            "{}",
            run.stderr
        );
        assert_eq!(
            db.scalar_text("SELECT to_regclass('provisioner.runs')::text"),
            None,
            "--rejects {}: no ledger, so no run recorded",
            path.display()
        );
        assert_eq!(db.count("accounts"), 1, "only the row target() put there");
    }
    assert!(!missing.parent().unwrap().exists());

    // A resume is refused the same way, and the run it names is left as it was.
    let rejects = db.path("rejects.csv");
    let bad = format!(
        "{COLS}\n{}\nnot-a-uuid,x@example.test,x,X,user,red\n",
        join(&[good(1)])
    );
    let file = db.write("bad.csv", bad);
    db.seed(&file, &rejecting(&rejects, &["--max-errors", "0"]))
        .expect_code(1);
    let run = db.seed(&file, &rejecting(full, &["--resume"]));
    run.expect_code(2);
    assert!(
        run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.scalar_text("SELECT status || ' ' || attempts FROM provisioner.runs"),
        Some("failed 1".into())
    );
}
