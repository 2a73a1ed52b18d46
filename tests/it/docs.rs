//! What the README says of the binary, checked against the binary: the exit codes it lists
//! are the ones `--help` prints (both come from one table in `src/error.rs`), and the test
//! command it gives is the one CI runs.

use std::fs;

use crate::common::*;

/// The rows of the table under `## Exit codes` in the README: (code, meaning).
fn readme_exit_codes() -> Vec<(String, String)> {
    let readme = fs::read_to_string(repo_path("README.md")).expect("read README.md");
    let section = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("the README has an Exit codes section");
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .strip_prefix('|')?
                .strip_suffix('|')?
                .split('|')
                .collect();
            let [code, meaning] = cells[..] else {
                return None;
            };
            let code = code.trim();
            code.parse::<i32>().ok()?;
            Some((code.to_string(), meaning.trim().to_string()))
        })
        .collect()
}

/// The lines after `Exit codes:` in `help`: (code, meaning).
fn help_exit_codes(help: &str) -> Vec<(String, String)> {
    help.split("\nExit codes:\n")
        .nth(1)
        .expect("--help lists the exit codes")
        .lines()
        .map_while(|l| {
            let (code, meaning) = l.trim_start().split_once("  ")?;
            code.parse::<i32>().ok()?;
            Some((code.to_string(), meaning.trim().to_string()))
        })
        .collect()
}

#[test]
fn the_readme_lists_the_exit_codes_every_help_prints() {
    let documented = readme_exit_codes();
    let codes: Vec<&str> = documented.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["0", "1", "2", "3", "130"], "{documented:?}");
    for args in [
        &["--help"][..],
        &["seed", "--help"],
        &["purge", "--help"],
        &["runs", "--help"],
        &["generate", "--help"],
    ] {
        let run = run_bin(args, None);
        run.expect_ok();
        assert_eq!(
            help_exit_codes(&run.stdout),
            documented,
            "provisioner {} and the README disagree",
            args.join(" ")
        );
    }
}

#[test]
fn the_readme_test_command_is_the_one_ci_runs() {
    let readme = fs::read_to_string(repo_path("README.md")).expect("read README.md");
    let tests = readme
        .split("\n## Tests\n")
        .nth(1)
        .expect("a Tests section");
    let command = tests
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .nth(1)
        .expect("a command in the Tests section");
    // The line under the comment that says so (the package test, .ci/package-test, follows).
    let ci = fs::read_to_string(repo_path(".ci/run")).expect("read .ci/run");
    let run = ci
        .lines()
        .skip_while(|l| l.trim() != "# The README's test command:")
        .nth(1)
        .expect("a line after `# The README's test command:` in .ci/run");
    assert_eq!(run.trim(), command.trim());
}
