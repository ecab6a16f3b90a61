//! The library's layers import downwards only (src/lib.rs draws them): a
//! module may use its own layer and the layers below it, never one above.

use std::path::{Path, PathBuf};

/// Bottom up, as src/lib.rs lists them.
const LAYERS: &[&str] = &["sys", "store", "tree", "policy", "ops", "exit", "daemon"];

/// The parts of `tree/`, bottom up, as src/tree/mod.rs lists them.
const TREE: &[&str] = &[
    "types",
    "objects",
    "record",
    "reader",
    "head",
    "snapshot",
    "namespace",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first path segments after each `prefix` (such as `crate::`) in
/// `code`, comments and the test module at the end removed, with
/// `crate::{a::x, b}` giving `a` and `b`. Tests may set up with any layer.
fn imports(code: &str, prefix: &str) -> Vec<String> {
    let code = code.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if at_start && depth == 0 {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                        continue;
                    }
                    if !item.is_empty() {
                        found.push(std::mem::take(&mut item));
                        at_start = false;
                    }
                }
            }
            if !item.is_empty() {
                found.push(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

/// The imports under `src/<dir>` that point up `order` (the parts of `dir`,
/// bottom up, named by their first path segment after `prefix`), and how
/// many files belong to one of the parts. Files of no part (the binary,
/// the crate root) may use every part.
fn upward_imports(dir: &str, order: &[&str], prefix: &str) -> (Vec<String>, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut upward = Vec::new();
    let mut seen = 0;
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap();
        let first = rel.components().next().unwrap().as_os_str();
        let part = first.to_str().unwrap().trim_end_matches(".rs");
        let Some(mine) = order.iter().position(|p| *p == part) else {
            continue;
        };
        seen += 1;
        let code = std::fs::read_to_string(file).unwrap();
        for name in imports(&code, prefix) {
            if order.iter().position(|p| *p == name) > Some(mine) {
                upward.push(format!("{} imports {prefix}{name}", rel.display()));
            }
        }
    }
    upward.sort();
    upward.dedup();
    (upward, seen)
}

#[test]
fn imports_point_down_the_layers() {
    let (upward, seen) = upward_imports("", LAYERS, "crate::");
    assert!(seen > 50, "only {seen} files of the layers found");
    assert!(
        upward.is_empty(),
        "imports that point up the layers ({}):\n{}",
        LAYERS.join(" < "),
        upward.join("\n")
    );
}

#[test]
fn the_parts_of_the_tree_import_downwards_too() {
    let (upward, seen) = upward_imports("tree", TREE, "crate::tree::");
    assert!(seen > 10, "only {seen} files of the tree found");
    assert!(
        upward.is_empty(),
        "tree parts that import upwards ({}):\n{}",
        TREE.join(" < "),
        upward.join("\n")
    );
}

#[test]
fn the_import_reader_sees_groups_and_skips_comments_and_tests() {
    let code = "use crate::{store::id, tree};\n// crate::daemon\nlet x = crate::ops::check();\nuse foo_crate::policy;\n#[cfg(test)]\nuse crate::exit;";
    assert_eq!(imports(code, "crate::"), ["store", "tree", "ops"]);
}
