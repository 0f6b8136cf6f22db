//! Dynamic shell completion: node, lab, snapshot and box names from this host's state.
//!
//! The scripts `labctl completions SHELL` prints call `labctl` again with `COMPLETE=SHELL`
//! (clap_complete's environment engine); `main_impl` answers those calls before parsing. A
//! candidate function never fails: anything it cannot read gives no candidates.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

use clap_complete::engine::{CompletionCandidate, PathCompleter, ValueCompleter};

/// The lab the command line is about: `LABCTL_LAB`, else the current directory. (`--lab` on
/// the same command line is not visible to a candidate function.)
fn lab_dir() -> Option<PathBuf> {
    let given = std::env::var_os("LABCTL_LAB").map_or_else(|| PathBuf::from("."), PathBuf::from);
    if given.is_dir() {
        return Some(given);
    }
    if given.is_file() {
        return given.parent().map(PathBuf::from);
    }
    let name = given.to_string_lossy().to_string();
    labctl_runner::find_lab(&crate::commands::env(), &name)
        .into_iter()
        .next()
}

/// Node names: from the lab's state (`.labctl/state.json`), else from lab.toml.
pub(crate) fn nodes() -> Vec<CompletionCandidate> {
    let Some(dir) = lab_dir() else {
        return Vec::new();
    };
    let paths = labctl_runner::lab_paths(&dir, "");
    if let Ok(Some(st)) = labctl_runner::state::LabState::load(&paths) {
        return st
            .nodes
            .iter()
            .map(|(name, n)| CompletionCandidate::new(name).help(Some(n.role.clone().into())))
            .collect();
    }
    match labctl_spec::load(&dir.join("lab.toml"), labctl_spec::Overrides::default()) {
        Ok(lab) => lab
            .nodes
            .iter()
            .map(|n| CompletionCandidate::new(&n.name).help(Some(n.role.clone().into())))
            .collect(),
        Err(_) => Vec::new(),
    }
}

struct Quiet;
impl labctl_runner::events::Reporter for Quiet {
    fn event(&self, _: labctl_runner::events::Event) {}
}

/// Node names, then the snapshot names those nodes have.
pub(crate) fn snapshots() -> Vec<CompletionCandidate> {
    let mut out = nodes();
    if let Some(dir) = lab_dir() {
        let paths = labctl_runner::lab_paths(&dir, "");
        let env = crate::commands::env();
        let list = labctl_runner::snapshot(
            &paths,
            &env,
            &[],
            &labctl_runner::SnapshotCmd::List,
            Arc::new(Quiet),
        );
        let mut names: Vec<String> = list
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(_, names)| names)
            .collect();
        names.sort();
        names.dedup();
        out.extend(
            names
                .into_iter()
                .map(|n| CompletionCandidate::new(n).help(Some("snapshot".into()))),
        );
    }
    out
}

/// Installed boxes.
pub(crate) fn boxes() -> Vec<CompletionCandidate> {
    crate::commands::env()
        .boxes()
        .list()
        .into_iter()
        .map(|b| CompletionCandidate::new(b.name))
        .collect()
}

/// `--lab`: names of the labs registered on this host, then directories.
#[derive(Clone, Copy)]
pub(crate) struct LabOrDir;

impl ValueCompleter for LabOrDir {
    fn complete(&self, current: &OsStr) -> Vec<CompletionCandidate> {
        let prefix = current.to_string_lossy();
        let mut out: Vec<CompletionCandidate> = labctl_runner::list(&crate::commands::env())
            .0
            .into_iter()
            .filter(|l| l.name.starts_with(&*prefix))
            .map(|l| {
                CompletionCandidate::new(l.name).help(Some(l.dir.display().to_string().into()))
            })
            .collect();
        out.extend(PathCompleter::dir().complete(current));
        out
    }
}
