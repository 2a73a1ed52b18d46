//! The layer rule at the top of `src/lib.rs`, checked on the source: a module never names a
//! module of a higher layer, and the top-level modules of one layer never name each other.
//! Every `crate::` path counts, `use` lines, inline paths and doc links alike.

use std::fs;
use std::path::Path;

use crate::common::repo_path;

/// The layers, lowest first, as `src/lib.rs` states them.
const LAYERS: &[&[&str]] = &[
    &["error", "model"],
    &["db"],
    &["run"],
    &["input"],
    &["copy"],
    &["seed", "purge", "generate"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// What the file of top-level module `top` names that the rule forbids, one line each.
fn violations(top: &str, file: &str, text: &str) -> Vec<String> {
    let Some(from) = layer_of(top) else {
        return vec![format!(
            "{file}: module {top} is in no layer: add it to the rule in src/lib.rs and here"
        )];
    };
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("crate::") {
            let name: String = line[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == top {
                continue;
            }
            let why = match layer_of(&name) {
                None => format!("names crate::{name}, which is not a module of a layer"),
                Some(to) if to > from => {
                    format!("(layer {from}) names {name} (layer {to}), above it")
                }
                Some(to) if to == from => format!("names {name}, beside it in layer {to}"),
                Some(_) => continue,
            };
            found.push(format!("{file}:{}: {top} {why}", n + 1));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_names_a_module_of_a_higher_layer() {
    let src = repo_path("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found = Vec::new();
    let mut checked = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src/");
        let first = rel.components().next().expect("a file name");
        let top = first.as_os_str().to_str().expect("UTF-8 names");
        let top = top.strip_suffix(".rs").unwrap_or(top);
        // The crate root and the binary stand above every layer.
        if top == "lib" || top == "main" {
            continue;
        }
        let text = fs::read_to_string(path).expect("read a source file");
        found.extend(violations(top, &rel.display().to_string(), &text));
        checked += 1;
    }
    assert!(
        checked > 30,
        "only {checked} files found under {}",
        src.display()
    );
    assert!(found.is_empty(), "layer rule broken:\n{}", found.join("\n"));
}

#[test]
fn the_check_finds_upward_sideways_and_unknown_paths() {
    let text = "use crate::error::Error;\n\
                use crate::run::Unit;\n\
                fn f() { crate::purge::x(); crate::Console::new(0); }\n";
    let found = violations("seed", "seed/mod.rs", text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("names purge, beside it"), "{found:?}");
    assert!(
        found[1].contains("crate::Console, which is not a module"),
        "{found:?}"
    );
    let found = violations("db", "db/ledger/mod.rs", "use crate::run::Unit;");
    assert!(
        found[0].contains("db (layer 1) names run (layer 2), above it"),
        "{found:?}"
    );
    assert!(violations("error", "error.rs", "use crate::model::Outcome;")[0].contains("beside"));
}
