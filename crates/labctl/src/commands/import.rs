//! `labctl import`: a Vagrantfile → lab.toml plus its scripts (labctl-import does the work;
//! this module reads, writes and words the notices).

use std::path::{Path, PathBuf};

use labctl_import::{FileSource, ImportError, Notice, NoticeKind, Options, Why};

use crate::Result;
use crate::cli::ImportArgs;
use crate::errors::{ExpectedError, code};
use crate::output::Printer;

/// Why a Vagrantfile could not be imported.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportFailure {
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Import(#[from] ImportError),
}

pub(crate) fn run(args: &ImportArgs, p: &Printer) -> Result<u8> {
    let vf = &args.vagrantfile;
    let fail = |source: ImportFailure| ExpectedError::Import {
        path: vf.clone(),
        source,
    };
    let text = std::fs::read(vf).map_err(|e| fail(ImportFailure::Read(e)))?;
    let vdir = vf
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let out = args.out.clone().unwrap_or_else(|| vdir.clone());
    let lab_name = args.name.clone().unwrap_or_else(|| default_name(&out));
    let imp = labctl_import::import(
        &text,
        &Options {
            lab_name: lab_name.clone(),
        },
    )
    .map_err(|e| fail(e.into()))?;

    let target = out.join("lab.toml");
    if target.exists() && !args.force {
        return Err(ExpectedError::WouldOverwrite { path: target });
    }
    let mut missing = Vec::new();
    for f in &imp.files {
        let to = out.join(&f.path);
        if to.exists() && !args.force {
            return Err(ExpectedError::WouldOverwrite { path: to });
        }
        let content = match &f.source {
            FileSource::Copy(rel) => match std::fs::read(vdir.join(rel)) {
                Ok(c) => c,
                Err(_) => {
                    missing.push((f.line, rel.clone(), f.path.clone()));
                    continue;
                }
            },
            FileSource::Inline(s) => s.clone().into_bytes(),
        };
        write(&to, &content)?;
    }
    write(&target, imp.lab_toml.as_bytes())?;

    for n in &imp.notices {
        p.info(word(vf, n));
    }
    for (line, rel, to) in &missing {
        p.info(format!(
            "warning: {}:{line}: script {} does not exist; copy it to {} before `labctl up`",
            vf.display(),
            vdir.join(rel).display(),
            out.join(to).display()
        ));
    }
    match labctl_spec::load(&target, labctl_spec::Overrides::default()) {
        Ok(lab) => {
            let steps: usize = lab.nodes.iter().map(|n| lab.steps_of(n).len()).sum();
            p.out(format!(
                "{}: wrote lab `{}` to {} ({} node{}, {steps} step{}); next: `labctl plan --lab {}`",
                p.styles.ok("ok"),
                lab.name,
                target.display(),
                lab.nodes.len(),
                if lab.nodes.len() == 1 { "" } else { "s" },
                if steps == 1 { "" } else { "s" },
                out.display(),
            ));
            Ok(code::OK)
        }
        Err(e) if !missing.is_empty() => {
            p.info(format!(
                "wrote {}; it will validate once the missing scripts are there ({} problem{} now)",
                target.display(),
                e.diagnostics().len(),
                if e.diagnostics().len() == 1 { "" } else { "s" }
            ));
            Ok(code::SPEC)
        }
        Err(e) => Err(e.into()),
    }
}

fn write(path: &Path, content: &[u8]) -> Result<()> {
    let err = |source| ExpectedError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, content).map_err(err)
}

/// A lab name from a directory name: 1-40 of `a-z 0-9 -`.
fn default_name(dir: &Path) -> String {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let base = abs
        .file_name()
        .map(|f| f.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut s: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s: String = s.trim_matches('-').chars().take(40).collect();
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() { "imported".into() } else { s }
}

fn word(vf: &Path, n: &Notice) -> String {
    let at = if n.line == 0 {
        String::new()
    } else {
        format!("{}: ", n.line)
    };
    let _ = vf;
    match &n.kind {
        NoticeKind::NotImported { construct, why } => format!(
            "not imported: {at}{construct} ({})",
            match why {
                Why::NotEvaluated => "Ruby that labctl import does not evaluate",
                Why::NoEquivalent => "no lab.toml equivalent",
                Why::Automatic => "labctl does this itself",
                Why::OncePerLab => "one per lab; the first one is kept",
            }
        ),
        NoticeKind::Concatenated {
            field,
            node,
            vagrant,
            labctl,
        } => format!(
            "note: {at}the {field} is built by joining strings: {node} would get {vagrant}; labctl adds the node's index to the first node's {field} and gives {labctl}"
        ),
        NoticeKind::DiffersBetweenNodes { field, role } => format!(
            "note: {at}{field} differs between the nodes of role {role}; the first node's is used for all"
        ),
        NoticeKind::HostnameIgnored { machine, hostname } => format!(
            "note: {at}vm.hostname `{hostname}` differs from the machine name; the node and its hostname are both `{machine}`"
        ),
        NoticeKind::Scaled { role, constant } => match constant {
            Some(c) => format!(
                "note: {at}role {role} has `scale = true`: `[lab] workers` is the Vagrantfile's {c}; `--workers N` changes it"
            ),
            None => format!("note: {at}role {role} has `scale = true`; `--workers N` changes its count"),
        },
        NoticeKind::Sequential { role, after } => format!(
            "note: Vagrant provisions machines one after another, so role {role}'s first step waits for {after} (remove that `after` to let them run in parallel)"
        ),
        NoticeKind::OsGuessed { os, from_box: true } => {
            format!("note: os = \"{os}\", guessed from the box name")
        }
        NoticeKind::OsGuessed { os, from_box: false } => format!(
            "note: os = \"{os}\": the box name does not tell; set `os` in lab.toml if it is another"
        ),
        NoticeKind::ScriptMoved { from, to } => {
            format!("note: {at}script {from} is copied to {to}")
        }
        NoticeKind::ArgsSplit { step } => format!(
            "note: {at}the arguments of step {step} were one string; they are split at spaces"
        ),
        NoticeKind::EgressUnknown => "note: no step is marked `needs_egress = true`; mark the ones that download, so that they are skipped (not failed) when guests have no internet".into(),
    }
}
