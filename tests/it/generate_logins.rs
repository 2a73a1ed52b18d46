//! `generate --password`: accounts a load test can log in as, checked by verifiers that are
//! not ours: bcrypt by the server's pgcrypto, the other schemes by Python's argon2-cffi,
//! passlib and hashlib (`.ci/run` installs the first two from PyPI). The feeder holds each
//! account's login and password in the accounts' order, readable by its owner only.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;

/// Generates `count` accounts with `extra` into the database's directory; returns the CSV
/// and the feeder.
fn generate_logins(
    db: &TestDb,
    name: &str,
    count: u64,
    extra: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let feeder = db.path(&format!("{name}.feeder"));
    let mut args = vec!["--credentials", path_str(&feeder)];
    args.extend_from_slice(extra);
    let csv = generate_csv_with(&db.path(&format!("{name}.csv")), count, 7, &args);
    (csv, feeder)
}

#[test]
fn random_bcrypt_passwords_log_in_by_pgcrypto_for_every_account() {
    let db = TestDb::with_accounts();
    db.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto");
    let (csv, feeder) = generate_logins(
        &db,
        "bcrypt",
        300,
        &["--password", "random", "--hash", "bcrypt", "--cost", "4"],
    );
    let mode = std::fs::metadata(&feeder).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the feeder holds passwords");
    db.seed(&csv, &[]).expect_ok();
    db.execute("CREATE TABLE feeder (username text, email text, password text)");
    db.psql_copy("feeder", &["username", "email", "password"], &feeder);
    // pgcrypto knows the $2a$ spelling only; $2a$ and $2b$ hash alike below 255 bytes.
    let verified = |password: &str| {
        db.scalar_i64(&format!(
            "SELECT count(*) FROM accounts a JOIN feeder f USING (username, email) \
             WHERE crypt({password}, replace(a.password_hash, '$2b$', '$2a$')) \
                   = replace(a.password_hash, '$2b$', '$2a$')"
        ))
    };
    assert_eq!(db.count("feeder"), 300);
    assert_eq!(verified("f.password"), 300, "every account logs in");
    assert_eq!(
        verified("f.password || 'x'"),
        0,
        "a wrong password does not"
    );
    let hashes = db.scalar_i64("SELECT count(DISTINCT password_hash) FROM accounts");
    assert_eq!(hashes, 300, "a password and a salt of its own per account");
    // In the accounts' order, and the same again for the same seed.
    let (_, feeder_order) = csv_table(&feeder);
    let (_, accounts) = csv_table(&csv);
    for (login, account) in feeder_order.iter().zip(&accounts) {
        assert_eq!(login[0], account[2], "username");
        assert_eq!(login[1], account[1], "email");
    }
    let (again, feeder_again) = generate_logins(
        &db,
        "bcrypt-again",
        300,
        &["--password", "random", "--hash", "bcrypt", "--cost", "4"],
    );
    assert_eq!(std::fs::read(&csv).unwrap(), std::fs::read(again).unwrap());
    assert_eq!(
        std::fs::read(&feeder).unwrap(),
        std::fs::read(feeder_again).unwrap()
    );
}

#[test]
fn every_other_scheme_verifies_with_an_independent_implementation() {
    let db = TestDb::new();
    let checks = [
        ("argon2id", "1"),
        ("scrypt", "4"),
        ("pbkdf2-sha256", "1000"),
        ("sha512-crypt", "1000"),
    ];
    for (scheme, cost) in checks {
        let (csv, feeder) = generate_logins(
            &db,
            scheme,
            40,
            &["--password", "random", "--hash", scheme, "--cost", cost],
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(VERIFY)
            .args([scheme, path_str(&csv), path_str(&feeder)])
            .output()
            .expect("run python3");
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{scheme}: {said}");
        assert_eq!(said.trim(), "40 verified, 0 wrong accepted", "{scheme}");
    }
}

/// Verifies every account's hash against its feeder password, and a wrong password against
/// each, with implementations that are not the tool's.
const VERIFY: &str = r#"
import base64, csv, hashlib, sys
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from passlib.hash import scrypt, sha512_crypt
scheme, accounts, feeder = sys.argv[1:4]
def b64(s): return base64.b64decode(s + "=" * (-len(s) % 4))
def check(password, hashed):
    if scheme == "argon2id":
        try: return PasswordHasher().verify(hashed, password)
        except VerifyMismatchError: return False
    if scheme == "scrypt": return scrypt.verify(password, hashed)
    if scheme == "sha512-crypt": return sha512_crypt.verify(password, hashed)
    _, name, params, salt, digest = hashed.split("$")
    assert name == "pbkdf2-sha256", hashed
    p = dict(kv.split("=") for kv in params.split(","))
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), b64(salt), int(p["i"]), int(p["l"]))
    return got == b64(digest)
rows = list(csv.DictReader(open(accounts, newline="")))
logins = list(csv.DictReader(open(feeder, newline="")))
assert [r["username"] for r in rows] == [l["username"] for l in logins]
ok = sum(check(l["password"], r["password_hash"]) for r, l in zip(rows, logins))
wrong = sum(check(l["password"] + "x", r["password_hash"]) for r, l in zip(rows, logins))
print(f"{ok} verified, {wrong} wrong accepted")
"#;

#[test]
fn a_shared_password_is_hashed_once_and_the_json_feeder_holds_it_for_every_account() {
    let db = TestDb::new();
    let password = r#"s3cr,et "quoted""#;
    let (csv, feeder) = generate_logins(
        &db,
        "shared",
        1000,
        &[
            "--password",
            password,
            "--hash",
            "bcrypt",
            "--cost",
            "4",
            "--credentials-format",
            "json",
            "--credentials-columns",
            "email",
        ],
    );
    let (_, accounts) = csv_table(&csv);
    let hashes: std::collections::HashSet<_> = accounts.iter().map(|a| a[4].clone()).collect();
    assert_eq!(hashes.len(), 1, "one hash for all: {hashes:?}");
    let logins: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&feeder).unwrap()).expect("a JSON array");
    assert_eq!(logins.len(), 1000);
    for (login, account) in logins.iter().zip(&accounts) {
        let object = login.as_object().unwrap();
        assert_eq!(object.len(), 2, "{login}");
        assert_eq!(login["email"].as_str(), account[1].as_deref());
        assert_eq!(login["password"], password);
    }
    // Without --password the accounts are the same but for their (fake) hashes.
    let plain = generate_csv(&db.path("plain.csv"), 1000, 7);
    let (_, without) = csv_table(&plain);
    for (with, without) in accounts.iter().zip(&without) {
        assert_eq!(with[..4], without[..4]);
        assert_eq!(with[5..], without[5..]);
        assert_ne!(with[4], without[4]);
    }
}

#[test]
fn feeder_flags_without_a_password_and_a_cost_out_of_range_are_refused() {
    let run = run_bin(
        &["generate", "--count", "1", "--credentials", "/tmp/x"],
        None,
    );
    run.expect_code(2);
    let run = run_bin(
        &["generate", "--count", "1", "--password", "p", "--cost", "3"],
        None,
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains("--cost 3: --hash bcrypt takes 4 to 31"),
        "{}",
        run.stderr
    );
}
