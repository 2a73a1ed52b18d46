//! What the .deb ships besides the binary, made by the binary from its own clap definitions:
//! `provisioner completions SHELL` and the hidden `provisioner man DIR` (which `.ci/package`
//! calls). `.ci/package-test` installs the package itself; these need no server.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use crate::common::*;

/// The subcommands `--help` lists under `Commands:`, but `help`.
fn listed_subcommands(help: &str) -> Vec<String> {
    help.split("\nCommands:\n")
        .nth(1)
        .expect("--help lists the commands")
        .lines()
        .map_while(|l| l.strip_prefix("  ")?.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The long flags of one `--help`: every `--name` at the start of an option's line.
fn long_flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            // `-v, --verbose…`: the long one.
            let l = match l.as_bytes() {
                [b'-', short, b',', b' ', ..] if *short != b'-' => &l[4..],
                _ => l,
            };
            let name: String = l
                .strip_prefix("--")?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty()).then(|| format!("--{name}"))
        })
        .collect()
}

#[test]
fn completions_for_each_shell_name_the_subcommands_but_not_the_hidden_one() {
    let subcommands = listed_subcommands(&run_bin(&["--help"], None).stdout);
    assert!(subcommands.contains(&"seed".to_owned()), "{subcommands:?}");
    assert!(
        !subcommands.contains(&"man".to_owned()),
        "man is hidden: {subcommands:?}"
    );
    // What the shells that show descriptions would show for the hidden one.
    let man_help = run_bin(&["man", "--help"], None).stdout;
    let man_about = man_help
        .lines()
        .next()
        .expect("man --help has an about line");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = run_bin(&["completions", shell], None);
        run.expect_ok();
        for sub in &subcommands {
            assert!(run.stdout.contains(sub.as_str()), "{shell}: no {sub}");
        }
        assert!(run.stdout.contains("dry-run"), "{shell}: no seed flags");
        assert!(
            !run.stdout.contains("provisioner__man") && !run.stdout.contains(man_about),
            "{shell} offers the hidden man subcommand"
        );
    }
    run_bin(&["completions", "tcsh"], None).expect_code(2);
}

/// What `provisioner se<TAB>` and `provisioner seed --dry<TAB>` complete to in bash, with the
/// script as the .deb installs it (`.ci/package-test` repeats the first on the installed file).
#[test]
fn bash_completes_the_subcommand_and_its_flags() {
    let script = run_bin(&["completions", "bash"], None).stdout;
    let complete = |words: &str| -> String {
        let out = Command::new("bash")
            .args(["--norc", "--noprofile", "-c"])
            .arg(format!(
                "eval \"$SCRIPT\"\n\
                 COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
                 fn=$(complete -p provisioner | grep -o -- '-F [^ ]*' | cut -c4-)\n\
                 \"$fn\" provisioner \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
                 echo \"${{COMPREPLY[*]}}\""
            ))
            .env("SCRIPT", &script)
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    };
    assert_eq!(complete("provisioner se"), "seed");
    assert_eq!(complete("provisioner seed --dry"), "--dry-run");
    assert_eq!(complete("provisioner ru"), "runs");
    assert_eq!(
        complete("provisioner m"),
        "",
        "the hidden man subcommand is offered"
    );
}

#[test]
fn man_writes_one_page_per_subcommand_with_every_flag_of_its_help() {
    let dir = std::env::temp_dir().join(unique_name("provisioner_man"));
    let run = run_bin(&["man", dir.to_str().expect("a UTF-8 path")], None);
    // The pages by file name, read before anything can fail, and the directory removed.
    let pages: BTreeMap<String, String> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let path = e.expect("an entry").path();
                    let name = path.file_name().expect("a name").to_string_lossy().into();
                    (name, fs::read_to_string(&path).expect("read a page"))
                })
                .collect()
        })
        .unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    run.expect_ok();
    assert_eq!(run.stdout.lines().count(), pages.len(), "{}", run.stdout);

    // Every subcommand `--help` lists, and the nested `runs show`; none for help or man.
    let subcommands = listed_subcommands(&run_bin(&["--help"], None).stdout);
    let mut commands: Vec<Vec<&str>> = vec![vec![]];
    commands.extend(subcommands.iter().map(|s| vec![s.as_str()]));
    commands.push(vec!["runs", "show"]);
    let name = |path: &[&str]| [&["provisioner"], path].concat().join("-");
    let mut expected: Vec<String> = commands.iter().map(|p| name(p) + ".1").collect();
    expected.sort();
    assert_eq!(pages.keys().cloned().collect::<Vec<_>>(), expected);

    for path in &commands {
        let name = name(path);
        let page = &pages[&format!("{name}.1")];
        assert!(
            page.contains(&format!("\n.TH {name} 1 ")),
            "{name}: {page:.200}"
        );
        // roff escapes each - as \-.
        let page = page.replace("\\-", "-");
        let help = run_bin(&[path.as_slice(), &["--help"]].concat(), None).stdout;
        let flags = long_flags(&help);
        assert!(flags.contains(&"--help".to_owned()), "{name}: {flags:?}");
        for flag in flags {
            assert!(page.contains(&flag), "{name}.1 lacks {flag}");
        }
    }
}
