//! Fetching with a private apt-get: the release's sources, simulation, download, and the
//! closure of one package set (with its extra repositories and their keys).

use std::path::{Path, PathBuf};
use std::time::Duration;

use labctl_driver::exec::Cmd;
use labctl_spec::PackageSet;

use super::{BuildEvent, BuildOptions, mirror};
use crate::manifest::{Missing, SetEntry};
use crate::{Error, OsRelease, Result, io};

const APT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The mirror of a release: Debian's and Ubuntu's own.
pub(super) fn default_mirror(os: &OsRelease) -> &'static str {
    match os.family {
        labctl_spec::Family::Ubuntu => "http://archive.ubuntu.com/ubuntu",
        _ => "http://deb.debian.org/debian",
    }
}

fn archive_keyring(os: &OsRelease) -> &'static str {
    match os.family {
        labctl_spec::Family::Ubuntu => "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
        _ => "/usr/share/keyrings/debian-archive-keyring.gpg",
    }
}

/// The release's own sources, as one-line entries.
pub(super) fn base_sources(os: &OsRelease, mirror: &str) -> Vec<String> {
    let kr = archive_keyring(os);
    let s = &os.suite;
    match os.family {
        labctl_spec::Family::Ubuntu => vec![
            format!("deb [signed-by={kr}] {mirror} {s} main universe"),
            format!("deb [signed-by={kr}] {mirror} {s}-updates main universe"),
            format!("deb [signed-by={kr}] {mirror} {s}-security main universe"),
        ],
        _ => {
            let security = mirror
                .trim_end_matches('/')
                .replace("/debian", "/debian-security");
            let mut v = vec![
                format!("deb [signed-by={kr}] {mirror} {s} main"),
                format!("deb [signed-by={kr}] {mirror} {s}-updates main"),
            ];
            if security != mirror.trim_end_matches('/') {
                v.push(format!("deb [signed-by={kr}] {security} {s}-security main"));
            }
            v
        }
    }
}

/// A private apt: its own sources, lists, status (empty: the closure a fresh guest needs)
/// and archive directory.
pub(super) struct PrivateApt {
    root: PathBuf,
    archives: PathBuf,
    arch: String,
}

impl PrivateApt {
    pub(super) fn new(
        root: PathBuf,
        archives: PathBuf,
        arch: &str,
        sources: &[String],
    ) -> Result<PrivateApt> {
        for d in [
            root.join("state/lists/partial"),
            root.join("cache"),
            root.join("etc/sources.list.d"),
            root.join("etc/preferences.d"),
            root.join("etc/trusted.gpg.d"),
            archives.join("partial"),
        ] {
            std::fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        // Written only when they change: apt rebuilds its cache when they look newer.
        let status = root.join("status");
        if !status.is_file() {
            std::fs::write(&status, b"").map_err(io("write", &status))?;
        }
        let list = root.join("etc/sources.list");
        let mut text = sources.join("\n");
        text.push('\n');
        if std::fs::read_to_string(&list).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&list, text).map_err(io("write", &list))?;
        }
        Ok(PrivateApt {
            root,
            archives,
            arch: arch.to_string(),
        })
    }

    pub(super) fn cmd(&self) -> Cmd {
        let r = &self.root;
        let o = |k: &str, v: &Path| format!("{k}={}", v.display());
        Cmd::new("apt-get")
            .timeout(APT_TIMEOUT)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", &o("Dir::State", &r.join("state"))])
            .args(["-o", &o("Dir::State::status", &r.join("status"))])
            .args(["-o", &o("Dir::Cache", &r.join("cache"))])
            .args(["-o", &o("Dir::Cache::archives", &self.archives)])
            .args([
                "-o",
                &o("Dir::Etc::sourcelist", &r.join("etc/sources.list")),
            ])
            .args([
                "-o",
                &o("Dir::Etc::sourceparts", &r.join("etc/sources.list.d")),
            ])
            .args([
                "-o",
                &o("Dir::Etc::preferences", &r.join("etc/preferences")),
            ])
            .args([
                "-o",
                &o("Dir::Etc::preferencesparts", &r.join("etc/preferences.d")),
            ])
            .args(["-o", &o("Dir::Etc::trusted", &r.join("etc/trusted.gpg"))])
            .args([
                "-o",
                &o("Dir::Etc::trustedparts", &r.join("etc/trusted.gpg.d")),
            ])
            .args(["-o", "Debug::NoLocking=1"])
            .args(["-o", &format!("APT::Architecture={}", self.arch)])
            .args(["-o", &format!("APT::Architectures={}", self.arch)])
            .args(["-o", "APT::Sandbox::User=root"])
            .args(["-o", "APT::Install-Recommends=false"])
            .arg("-q")
    }

    /// Whether `update` left any package index.
    pub(super) fn has_lists(&self) -> bool {
        std::fs::read_dir(self.root.join("state/lists")).is_ok_and(|rd| {
            rd.filter_map(std::result::Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    pub(super) fn update(&self) -> Result<()> {
        self.cmd().arg("update").run()?;
        Ok(())
    }

    /// The closure of `pkgs` as (name, version, arch), or apt's error.
    pub(super) fn simulate(
        &self,
        pkgs: &[String],
    ) -> std::result::Result<Vec<(String, String, String)>, String> {
        let out = self
            .cmd()
            .args(["-s", "-y", "install"])
            .args(pkgs)
            .run_unchecked()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let err: Vec<&str> = out
                .stderr
                .lines()
                .chain(out.stdout.lines())
                .filter(|l| {
                    l.starts_with("E:")
                        || l.contains("has no installation candidate")
                        || l.contains("Depends:")
                })
                .map(str::trim)
                .collect();
            return Err(if err.is_empty() {
                "apt-get could not resolve it".into()
            } else {
                err.join("; ")
            });
        }
        Ok(parse_inst(&out.stdout))
    }

    fn download(&self, pkgs: &[String]) -> Result<()> {
        self.cmd()
            .args(["-y", "--download-only", "install"])
            .args(pkgs)
            .run()?;
        Ok(())
    }
}

/// `Inst NAME (VERSION SOURCE [ARCH])` lines of `apt-get -s install`.
pub(crate) fn parse_inst(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(" (")?;
            let version = rest.split_whitespace().next()?;
            let inner = rest.split(')').next()?;
            let arch = inner.rsplit_once('[')?.1.split(']').next()?;
            Some((name.to_string(), version.to_string(), arch.to_string()))
        })
        .collect()
}

/// apt's file name in the archives directory: the version's `:` written `%3a`.
pub(super) fn archive_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

fn fetch_key(url: &str, dest: &Path) -> std::result::Result<(), String> {
    let out = Cmd::new("/usr/lib/apt/apt-helper")
        .timeout(Duration::from_secs(120))
        .args(["-o", "APT::Sandbox::User=root", "download-file", url])
        .arg(dest)
        .run_unchecked()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    Err(apt_reason(&format!("{}\n{}", out.stdout, out.stderr)))
}

/// The most telling line of apt's complaint: "Could not resolve 'pkgs.k8s.io'".
pub(crate) fn apt_reason(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(l) = lines.iter().find(|l| l.starts_with("E: Failed to fetch"))
        && let Some((_, why)) = l.rsplit_once("  ")
    {
        return why.trim().to_string();
    }
    if let Some(i) = lines.iter().position(|l| l.starts_with("Err:"))
        && let Some(next) = lines.get(i + 1)
    {
        return (*next).to_string();
    }
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("E:"))
        .or(lines.last())
        .map_or_else(|| "apt failed".to_string(), |l| (*l).to_string())
}

/// The sources of a set's extra repositories (their keys fetched into `keys`), or why not.
fn extra_sources(
    set: &PackageSet,
    os: &OsRelease,
    keys: &Path,
) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, r) in set.repositories_for(os.family).enumerate() {
        let mut opts = Vec::new();
        if let Some(k) = &r.key {
            std::fs::create_dir_all(keys).map_err(|e| e.to_string())?;
            let dest = keys.join(format!("{}-{i}.asc", set.name));
            fetch_key(k, &dest).map_err(|e| {
                format!(
                    "repository {}: its key {k} could not be fetched: {e}",
                    r.url
                )
            })?;
            opts.push(format!("signed-by={}", dest.display()));
        }
        let opts = if opts.is_empty() {
            String::new()
        } else {
            format!("[{}] ", opts.join(" "))
        };
        out.push(
            format!("deb {opts}{} {} {}", r.url, r.suite, r.components.join(" "))
                .trim_end()
                .to_string(),
        );
    }
    Ok(out)
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Fetch one set: returns its entry and the `.deb` files of its closure.
pub(super) fn fetch_set(
    set: &PackageSet,
    opts: &BuildOptions,
    base: &PrivateApt,
    extra_root: &Path,
    on: &mut dyn FnMut(BuildEvent),
    downloaded: &mut u64,
) -> Result<(SetEntry, Vec<PathBuf>)> {
    let wanted = set.packages_for(opts.os.family).to_vec();
    let mut entry = SetEntry::default();
    if wanted.is_empty() {
        entry.missing.push(Missing {
            name: set.name.clone(),
            reason: format!("the set lists no {} packages", opts.os.family.as_str()),
        });
        return Ok((entry, Vec::new()));
    }
    // When a set's extra repository cannot be used, the set is still resolved against the
    // release's own mirror: what it has is fetched, the rest is missing with both reasons.
    let mut repo_failure: Option<String> = None;
    let extra;
    let apt = if set.repositories_for(opts.os.family).next().is_some() {
        match extra_sources(set, &opts.os, &extra_root.join("keys")) {
            Ok(lines) => {
                let mut all = base_sources(&opts.os, &mirror(opts));
                all.extend(lines);
                on(BuildEvent::Updating {
                    sources: all.clone(),
                });
                let a = PrivateApt::new(
                    extra_root.to_path_buf(),
                    base.archives.clone(),
                    &opts.os.arch,
                    &all,
                )?;
                match a.update() {
                    Ok(()) => {
                        extra = a;
                        &extra
                    }
                    Err(e) => {
                        repo_failure = Some(format!(
                            "apt-get update failed: {}",
                            apt_reason(&e.to_string())
                        ));
                        base
                    }
                }
            }
            Err(reason) => {
                repo_failure = Some(reason);
                base
            }
        }
    } else {
        base
    };
    on(BuildEvent::Resolving {
        set: set.name.clone(),
    });
    let (ok, closure) = match apt.simulate(&wanted) {
        Ok(c) => (wanted.clone(), c),
        Err(_) => {
            // Find which ones apt cannot resolve, and resolve the rest together.
            let mut ok = Vec::new();
            for p in &wanted {
                match apt.simulate(std::slice::from_ref(p)) {
                    Ok(_) => ok.push(p.clone()),
                    Err(reason) => entry.missing.push(Missing {
                        name: p.clone(),
                        reason: match &repo_failure {
                            Some(r) => format!("{reason}; {r}"),
                            None => reason,
                        },
                    }),
                }
            }
            let closure = if ok.is_empty() {
                Vec::new()
            } else {
                apt.simulate(&ok).map_err(|reason| {
                    Error::Tool(labctl_driver::exec::ToolError::Failed {
                        command: "apt-get -s install".into(),
                        status: "resolution".into(),
                        stderr: reason,
                    })
                })?
            };
            (ok, closure)
        }
    };
    let files: Vec<PathBuf> = closure
        .iter()
        .map(|(n, v, a)| apt.archives.join(archive_name(n, v, a)))
        .collect();
    let cached = files.iter().filter(|f| f.is_file()).count();
    on(BuildEvent::Downloading {
        set: set.name.clone(),
        packages: files.len(),
        cached,
    });
    if !ok.is_empty() && cached < files.len() {
        let before: u64 = files.iter().map(|f| file_size(f)).sum();
        if let Err(e) = apt.download(&ok) {
            let reason = format!(
                "download failed: {}",
                e.to_string().lines().last().unwrap_or("").trim()
            );
            entry.missing.extend(ok.iter().map(|n| Missing {
                name: n.clone(),
                reason: reason.clone(),
            }));
            return Ok((entry, Vec::new()));
        }
        let after: u64 = files.iter().map(|f| file_size(f)).sum();
        *downloaded += after.saturating_sub(before);
    }
    let mut present = Vec::new();
    for ((n, _, _), f) in closure.iter().zip(&files) {
        if f.is_file() {
            present.push(f.clone());
        } else {
            entry.missing.push(Missing {
                name: n.clone(),
                reason: format!("apt-get did not download {}", f.display()),
            });
        }
    }
    entry.packages = ok;
    if let Some(r) = repo_failure
        && entry.missing.is_empty()
    {
        // Everything resolved from the release's mirror, but not from the repository the
        // lab asked for: not the same packages.
        entry.missing.push(Missing {
            name: "repository".into(),
            reason: r,
        });
    }
    entry.complete = entry.missing.is_empty();
    Ok((entry, present))
}
