//! The user's config file: defaults for every lab of this user.
//!
//! `$LABCTL_CONFIG`, else `$XDG_CONFIG_HOME/labctl/config.toml`, else
//! `~/.config/labctl/config.toml`. A missing file is no config. Precedence, highest first:
//! command-line flag > environment variable > lab.toml > this file > built-in default
//! (docs/internals.md).

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::errors::ExpectedError;

/// The keys of config.toml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserConfig {
    /// `qemu` or `virtualbox`: for labs whose lab.toml has no `provider`.
    pub(crate) provider: Option<String>,
    /// `auto`, `kvm` or `tcg`: for labs whose lab.toml has no `accel`.
    pub(crate) accel: Option<String>,
    /// `--jobs` when neither the flag nor `LABCTL_JOBS` is given.
    pub(crate) jobs: Option<usize>,
    /// For labs whose lab.toml has no `egress`; `--no-egress`/`LABCTL_NO_EGRESS` still win.
    pub(crate) egress: Option<bool>,
    /// The bundle for labs whose lab.toml has no `bundle`; `--bundle`/`LABCTL_BUNDLE` win.
    pub(crate) bundle: Option<String>,
}

/// Where the config file is looked for.
pub(crate) fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LABCTL_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("labctl").join("config.toml"))
}

fn invalid(path: &std::path::Path, message: String) -> ExpectedError {
    ExpectedError::Config {
        path: path.to_path_buf(),
        message,
    }
}

/// Read and check the file (once per process).
pub(crate) fn load() -> Result<UserConfig, ExpectedError> {
    static CACHE: OnceLock<Result<UserConfig, (PathBuf, String)>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let Some(path) = path() else {
                return Ok(UserConfig::default());
            };
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(UserConfig::default());
                }
                Err(e) => return Err((path, format!("cannot read it: {e}"))),
            };
            let Ok(text) = String::from_utf8(text) else {
                return Err((path, "it is not UTF-8 text".into()));
            };
            parse(&text).map_err(|m| (path, m))
        })
        .clone()
        .map_err(|(p, m)| invalid(&p, m))
}

/// Parse and check values.
pub(crate) fn parse(text: &str) -> Result<UserConfig, String> {
    let c: UserConfig = toml::from_str(text).map_err(|e| {
        let msg = labctl_spec::shorten_values(e.message().trim());
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: {msg}")
            }
            None => msg,
        }
    })?;
    if let Some(p) = &c.provider
        && !matches!(p.as_str(), "qemu" | "virtualbox" | "libvirt")
    {
        return Err(format!(
            "provider `{}`: use `qemu`, `virtualbox` or `libvirt`",
            labctl_spec::shorten_values(p)
        ));
    }
    if let Some(a) = &c.accel
        && !matches!(a.as_str(), "auto" | "kvm" | "tcg")
    {
        return Err(format!(
            "accel `{}`: use `auto`, `kvm` or `tcg`",
            labctl_spec::shorten_values(a)
        ));
    }
    if c.jobs == Some(0) {
        return Err("jobs must be at least 1".into());
    }
    if let Some(b) = &c.bundle
        && !labctl_spec::bundle_name_ok(b)
    {
        return Err(format!(
            "bundle `{}`: 1-64 of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit",
            labctl_spec::shorten_values(b)
        ));
    }
    Ok(c)
}

impl UserConfig {
    /// The lab.toml defaults this file gives.
    pub(crate) fn lab_defaults(&self) -> labctl_spec::LabDefaults {
        labctl_spec::LabDefaults {
            provider: match self.provider.as_deref() {
                Some("virtualbox") => Some(labctl_spec::Provider::Virtualbox),
                Some("qemu") => Some(labctl_spec::Provider::Qemu),
                Some("libvirt") => Some(labctl_spec::Provider::Libvirt),
                _ => None,
            },
            accel: match self.accel.as_deref() {
                Some("auto") => Some(labctl_spec::Accel::Auto),
                Some("kvm") => Some(labctl_spec::Accel::Kvm),
                Some("tcg") => Some(labctl_spec::Accel::Tcg),
                _ => None,
            },
            egress: self.egress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_refuses_others() {
        let c = parse("provider = \"virtualbox\"\naccel = \"tcg\"\njobs = 2\negress = false\n")
            .unwrap();
        assert_eq!(c.jobs, Some(2));
        assert_eq!(
            c.lab_defaults(),
            labctl_spec::LabDefaults {
                provider: Some(labctl_spec::Provider::Virtualbox),
                accel: Some(labctl_spec::Accel::Tcg),
                egress: Some(false),
            }
        );
        assert_eq!(parse("").unwrap(), UserConfig::default());
        let errs: Vec<String> = [
            "provder = \"qemu\"",
            "provider = \"vmware\"",
            "accel = \"fast\"",
            "jobs = 0",
            "jobs = \"two\"",
            "egress = 1",
        ]
        .iter()
        .map(|t| format!("{t} => {}", parse(t).unwrap_err()))
        .collect();
        insta::assert_snapshot!(errs.join("\n"));
    }
}
