//! Every environment variable the sources read (a `"LABCTL_…"` string literal in any crate's
//! `src/`) is in the one table of docs/internals.md, so the table cannot fall behind.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `LABCTL_…` names that appear right after a double quote.
fn quoted_vars(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("\"LABCTL_") {
        let name: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        out.push(name);
    }
    out
}

#[test]
fn every_variable_the_sources_read_is_in_the_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let table = std::fs::read_to_string(root.join("docs/internals.md")).expect("internals.md");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates"))
        .expect("crates")
        .flatten()
    {
        rust_files(&krate.path().join("src"), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut seen = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("source");
        seen.extend(quoted_vars(&text));
    }
    assert!(seen.contains("LABCTL_HOME"), "{seen:?}");
    let missing: Vec<&String> = seen
        .iter()
        .filter(|v| !v.starts_with("LABCTL_TEST_") && !table.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/internals.md does not list {missing:?}"
    );
}

#[test]
fn quoted_names_are_found_and_unquoted_ones_are_not() {
    assert_eq!(
        quoted_vars(r#"env("LABCTL_A_1") + "x LABCTL_B" + LABCTL_C"#),
        ["LABCTL_A_1"]
    );
}
