//! The labs and templates shipped inside the binary.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// Names of the bundled labs (directories under `labs/`).
pub(crate) fn lab_names() -> Vec<String> {
    let mut names: Vec<String> = FILES
        .iter()
        .filter_map(|(p, _)| {
            p.strip_prefix("labs/")?
                .strip_suffix("/lab.toml")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Contents of a bundled file by repository path.
pub(crate) fn file(path: &str) -> Option<&'static str> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, c)| *c)
}

/// Every bundled file under a directory prefix.
pub(crate) fn under(prefix: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    FILES
        .iter()
        .copied()
        .filter(move |(p, _)| p.starts_with(prefix))
}
