//! `generate`'s output: a stdout that cannot take the rows (a full disk) fails the command
//! with a message that says it could not write.

use std::process::Stdio;

use crate::common::*;

#[test]
fn a_full_disk_is_a_write_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let out = bin_command()
        .args(["generate", "--count", "10000"])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("run provisioner generate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: cannot write to stdout: No space left on device"),
        "{stderr}"
    );
}
