use std::path::{Path, PathBuf};

use crate::Result;
use crate::bundled;
use crate::cli::InitArgs;
use crate::errors::{ExpectedError, code};
use crate::output::Printer;

pub(crate) fn run(args: &InitArgs, p: &Printer) -> Result<u8> {
    let names = bundled::lab_names();
    if args.list {
        for n in &names {
            let readme = bundled::file(&format!("labs/{n}/README.md")).unwrap_or("");
            let title = readme
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim_start_matches('#')
                .trim();
            p.out(format!("{n:<12} {title}"));
        }
        return Ok(code::OK);
    }
    let Some(toml) = bundled::file(&format!("labs/{}/lab.toml", args.lab)) else {
        return Err(ExpectedError::UnknownBundledLab {
            name: args.lab.clone(),
            known: names,
        });
    };
    let target = args.dir.join("lab.toml");
    if target.exists() && !args.force {
        return Err(ExpectedError::WouldOverwrite { path: target });
    }
    let lab_toml = rewrite_templates_dir(toml);
    let mut written = vec![write(&target, &lab_toml)?];
    if let Some(readme) = bundled::file(&format!("labs/{}/README.md", args.lab)) {
        written.push(write(&args.dir.join("README.md"), readme)?);
    }
    for (path, text) in bundled::under(&format!("labs/{}/", args.lab)) {
        let rel = path.trim_start_matches(&format!("labs/{}/", args.lab));
        if rel != "lab.toml" && rel != "README.md" {
            written.push(write(&args.dir.join(rel), text)?);
        }
    }
    // All templates: small, and a student may switch a step to another one.
    for (path, text) in bundled::under("templates/") {
        written.push(write(&args.dir.join(path), text)?);
    }
    p.info(format!(
        "wrote lab `{}` to {} ({} files); next: `labctl plan`, then `labctl up`",
        args.lab,
        args.dir.display(),
        written.len()
    ));
    Ok(code::OK)
}

/// Bundled labs point at the repository's shared `../../templates` (and trust it); an
/// initialised lab has its own copy and trusts nothing outside itself.
fn rewrite_templates_dir(toml: &str) -> String {
    toml.lines()
        .filter(|l| !(l.trim_start().starts_with("trusted_dirs") && l.contains("../../templates")))
        .map(|l| {
            if l.trim_start().starts_with("templates") && l.contains("../../templates") {
                l.replace("../../templates", "templates")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn write(path: &Path, text: &str) -> Result<PathBuf> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ExpectedError::Write {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| ExpectedError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_dir_is_made_local() {
        let t = "[lab]\nname = \"k8s\"\ntemplates = \"../../templates\"\ntrusted_dirs = [\"../../templates\"]\n";
        assert_eq!(
            rewrite_templates_dir(t),
            "[lab]\nname = \"k8s\"\ntemplates = \"templates\"\n"
        );
    }
}
