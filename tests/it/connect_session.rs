//! The session the libpq environment asks for, as psql gets it: `PGTZ`, `PGDATESTYLE` and
//! `PGOPTIONS` set the time zone, the date style and any `-c` setting of every connection, so
//! a load reads timestamps without an offset, and ambiguous dates, as `\copy` would. psql is
//! the oracle; the harness clears `PG*` for every child, so the test sets them for both.

use std::process::Stdio;

use crate::common::*;

#[test]
fn pgtz_pgdatestyle_and_pgoptions_set_the_session_as_in_psql() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz, d date, \
           zone text DEFAULT current_setting('TimeZone'), \
           style text DEFAULT current_setting('DateStyle'), \
           probe text DEFAULT current_setting('provisioner.probe', true))",
    );
    let csv = db.write(
        "ev.csv",
        "id,at,d\n1,2024-03-05 14:22:31,05/03/2024\n2,2024-07-01 00:00:00,01/07/2024\n",
    );
    let env = [
        ("PGTZ", "Asia/Tokyo"),
        ("PGDATESTYLE", "ISO, DMY"),
        ("PGOPTIONS", "-c provisioner.probe=from\\ pgoptions"),
    ];
    let out = bin_command()
        .args(["seed", path_str(&csv), "--database-url", db.url()])
        .args(["--table", "ev", "--json"])
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("run provisioner seed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let ours = db.dump("ev");

    db.execute("TRUNCATE ev");
    let file = path_str(&csv);
    psql_with_env(
        db.url(),
        &env,
        &format!("\\copy ev (id, at, d) FROM '{file}' WITH (FORMAT csv, HEADER)"),
    );
    assert_same_rows("PGTZ, PGDATESTYLE, PGOPTIONS", &ours, &db.dump("ev"));

    // Not by chance: the session had the variables' settings, so the values moved.
    let session = Some("Asia/Tokyo|ISO, DMY|from pgoptions".to_string());
    assert_eq!(
        db.column_text("SELECT zone || '|' || style || '|' || probe FROM ev"),
        [session.clone(), session]
    );
    assert_eq!(
        db.column_text("SELECT at::text || ' ' || d::text FROM ev ORDER BY id"),
        [
            Some("2024-03-05 05:22:31+00 2024-03-05".to_string()),
            Some("2024-06-30 15:00:00+00 2024-07-01".to_string()),
        ]
    );
}
