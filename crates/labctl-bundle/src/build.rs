//! `bundle build`: fetch a lab's package sets for its guest OS release with apt-get (a
//! private configuration and state, the distribution's own mirror), add local material
//! (`--from-dir`, OCI layouts), write the signed apt repository and the manifest.
//!
//! Resumable: apt's lists and the downloaded `.deb` files stay in `<cache>/bundle/<os>/`
//! and are reused by the next build. Progress goes out as [`BuildEvent`]s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labctl_driver::exec::Cmd;
use labctl_spec::{ImageRef, PackageSet};

use crate::apt::{add_to_pool, repo_rel};
use crate::keys::Signer;
use crate::manifest::{Manifest, Missing, OsEntry, SetEntry};
use crate::{Error, OsRelease, Result, Store, io};

const APT_TIMEOUT: Duration = Duration::from_secs(1800);

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub name: String,
    pub os: OsRelease,
    pub sets: Vec<PackageSet>,
    pub images: Vec<ImageRef>,
    /// Directories whose `.deb` files go into the repository as they are.
    pub from_dirs: Vec<PathBuf>,
    /// Fetch nothing: only `from_dirs` (sets are then judged by package names alone).
    pub offline: bool,
    /// Where apt's state and downloaded packages are kept between builds.
    pub cache_dir: PathBuf,
    /// The distribution mirror (`http://deb.debian.org/debian`).
    pub mirror: Option<String>,
}

/// Progress of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// apt is reading the mirror's indices.
    Updating {
        sources: Vec<String>,
    },
    Resolving {
        set: String,
    },
    /// `packages`: the closure's size; `cached`: how many are already downloaded.
    Downloading {
        set: String,
        packages: usize,
        cached: usize,
    },
    SetDone {
        set: String,
        complete: bool,
        debs: usize,
        bytes: u64,
    },
    ImageMissing {
        reference: String,
        reason: String,
    },
    FromDir {
        dir: PathBuf,
        debs: usize,
    },
    Signing,
    /// `apt-get update` failed: sets are judged by what the bundle already holds.
    MirrorUnreachable {
        reason: String,
    },
}

/// One set in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReport {
    pub name: String,
    pub complete: bool,
    pub packages: Vec<String>,
    /// `.deb` files of the closure and their total size.
    pub debs: usize,
    pub bytes: u64,
    pub missing: Vec<Missing>,
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    pub name: String,
    pub os: String,
    pub dir: PathBuf,
    pub sets: Vec<SetReport>,
    pub images: usize,
    pub missing_images: Vec<Missing>,
    /// Total size of the bundle's files.
    pub bytes: u64,
    pub files: usize,
    /// Bytes apt downloaded during this build (the rest came from the cache).
    pub downloaded: u64,
}

/// The mirror of a release: Debian's and Ubuntu's own.
fn default_mirror(os: &OsRelease) -> &'static str {
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
fn base_sources(os: &OsRelease, mirror: &str) -> Vec<String> {
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
struct PrivateApt {
    root: PathBuf,
    archives: PathBuf,
    arch: String,
}

impl PrivateApt {
    fn new(root: PathBuf, archives: PathBuf, arch: &str, sources: &[String]) -> Result<PrivateApt> {
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

    fn cmd(&self) -> Cmd {
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
    fn has_lists(&self) -> bool {
        std::fs::read_dir(self.root.join("state/lists")).is_ok_and(|rd| {
            rd.filter_map(std::result::Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    fn update(&self) -> Result<()> {
        self.cmd().arg("update").run()?;
        Ok(())
    }

    /// The closure of `pkgs` as (name, version, arch), or apt's error.
    fn simulate(
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
fn archive_name(name: &str, version: &str, arch: &str) -> String {
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
fn fetch_set(
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

fn mirror(opts: &BuildOptions) -> String {
    opts.mirror
        .clone()
        .unwrap_or_else(|| default_mirror(&opts.os).to_string())
}

fn debs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io("read", &d))? {
            let e = e.map_err(io("read", &d))?;
            let ft = e.file_type().map_err(io("read", e.path()))?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.path().extension().is_some_and(|x| x == "deb") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The pool entries of the named packages.
fn pool_files(repo: &Path, names: &[String]) -> Result<Vec<crate::apt::PoolPackage>> {
    let text = crate::apt::packages_index(repo)?;
    Ok(crate::apt::parse_packages(&text)
        .into_iter()
        .filter(|c| {
            c.get("Package")
                .is_some_and(|p| names.iter().any(|n| n.split('=').next() == Some(p)))
        })
        .map(|c| crate::apt::PoolPackage {
            package: c.get("Package").unwrap_or_default().to_string(),
            version: c.get("Version").unwrap_or_default().to_string(),
            arch: c.get("Architecture").unwrap_or_default().to_string(),
            file: c
                .get("Filename")
                .unwrap_or_default()
                .trim_start_matches("pool/")
                .to_string(),
            size: c.get("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
        })
        .collect())
}

/// Build (or update) bundle `opts.name`.
pub fn build(
    store: &Store,
    opts: &BuildOptions,
    on: &mut dyn FnMut(BuildEvent),
) -> Result<BuildReport> {
    let dir = store.dir(&opts.name)?;
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let mut m = if store.exists(&opts.name) {
        store.load(&opts.name)?
    } else {
        Manifest::new(&opts.name)
    };
    let key = opts.os.key();
    let repo = dir.join(repo_rel(&opts.os));
    std::fs::create_dir_all(&repo).map_err(io("create", &repo))?;
    let mut downloaded = 0u64;
    let mut reports = Vec::new();

    // Local packages first: a set may then be complete without fetching.
    let mut pool_names: BTreeMap<String, ()> = BTreeMap::new();
    for d in &opts.from_dirs {
        let debs = debs_in(d)?;
        on(BuildEvent::FromDir {
            dir: d.clone(),
            debs: debs.len(),
        });
        for p in add_to_pool(&repo, &debs)? {
            pool_names.insert(p.package, ());
        }
    }
    for p in crate::apt::packages_index(&repo).map(|t| crate::apt::parse_packages(&t))? {
        if let Some(n) = p.get("Package") {
            pool_names.insert(n.to_string(), ());
        }
    }

    let cache = opts.cache_dir.join(&key);
    // Why a set is judged by the pool alone: an offline build, or a mirror that cannot be read.
    let mut no_fetch = "not in the --from-dir packages (offline build)".to_string();
    let base = if opts.offline {
        None
    } else {
        let sources = base_sources(&opts.os, &mirror(opts));
        on(BuildEvent::Updating {
            sources: sources.clone(),
        });
        let a = PrivateApt::new(
            cache.join("apt"),
            cache.join("debs"),
            &opts.os.arch,
            &sources,
        )?;
        // `apt-get update` exits 0 when a mirror cannot be reached (only warnings): what
        // counts is whether it has any package index to resolve against.
        let failed = match a.cmd().arg("update").run_unchecked() {
            Ok(out) if out.status.success() && a.has_lists() => None,
            Ok(out) => Some(apt_reason(&format!("{}\n{}", out.stdout, out.stderr))),
            Err(e) => return Err(e.into()),
        };
        match failed {
            None => Some(a),
            Some(reason) => {
                on(BuildEvent::MirrorUnreachable {
                    reason: reason.clone(),
                });
                no_fetch = format!("the mirror could not be read (apt-get update: {reason})");
                None
            }
        }
    };
    for set in &opts.sets {
        let (entry, debs) = match &base {
            Some(apt) => fetch_set(
                set,
                opts,
                apt,
                &cache.join(format!("apt-{}", set.name)),
                on,
                &mut downloaded,
            )?,
            None => {
                // Offline: judged by package names in the pool (the closure is not checked).
                let wanted = set.packages_for(opts.os.family);
                let base_name = |p: &String| p.split('=').next().unwrap_or(p).to_string();
                let missing: Vec<Missing> = wanted
                    .iter()
                    .filter(|p| !pool_names.contains_key(&base_name(p)))
                    .map(|p| Missing {
                        name: p.clone(),
                        reason: no_fetch.clone(),
                    })
                    .collect();
                let entry = SetEntry {
                    complete: missing.is_empty() && !wanted.is_empty(),
                    packages: wanted
                        .iter()
                        .filter(|p| pool_names.contains_key(&base_name(p)))
                        .cloned()
                        .collect(),
                    missing,
                };
                (entry, Vec::new())
            }
        };
        let mut added = add_to_pool(&repo, &debs)?;
        if base.is_none() {
            // Offline: the set's own packages, as found in the pool.
            added = pool_files(&repo, &entry.packages)?;
        }
        let bytes = added.iter().map(|p| p.size).sum();
        on(BuildEvent::SetDone {
            set: set.name.clone(),
            complete: entry.complete,
            debs: added.len(),
            bytes,
        });
        reports.push(SetReport {
            name: set.name.clone(),
            complete: entry.complete,
            packages: entry.packages.clone(),
            debs: added.len(),
            bytes,
            missing: entry.missing.clone(),
        });
        m.sets
            .entry(set.name.clone())
            .or_default()
            .insert(key.clone(), entry);
    }

    // Images: labctl has no registry client; images come from `bundle add-image`.
    let held: Vec<String> = crate::oci::images(&dir.join("oci"))?
        .into_iter()
        .map(|e| e.reference)
        .collect();
    m.missing_images.clear();
    for r in &opts.images {
        let full = r.to_string();
        if held.contains(&full) {
            continue;
        }
        let reason =
            "not fetched: labctl has no registry client; add it with `labctl bundle add-image`"
                .to_string();
        on(BuildEvent::ImageMissing {
            reference: full.clone(),
            reason: reason.clone(),
        });
        m.missing_images.push(Missing { name: full, reason });
    }

    if !m
        .os
        .iter()
        .any(|o| format!("{}-{}", o.family, o.release) == key)
    {
        m.os.push(OsEntry {
            family: opts.os.family.as_str().into(),
            release: opts.os.release.clone(),
            suite: opts.os.suite.clone(),
            arch: opts.os.arch.clone(),
            repo: repo_rel(&opts.os),
        });
    }
    on(BuildEvent::Signing);
    seal(store, &mut m)?;
    let bytes = m.size(&dir);
    Ok(BuildReport {
        name: opts.name.clone(),
        os: key,
        dir,
        sets: reports,
        images: m.images.len(),
        missing_images: m.missing_images.clone(),
        bytes,
        files: m.files.len(),
        downloaded,
    })
}

/// Add the images of an OCI layout to bundle `name` (created if needed).
pub fn add_image_layout(
    store: &Store,
    name: &str,
    layout: &Path,
    reference: Option<&ImageRef>,
) -> Result<Vec<crate::ImageEntry>> {
    let dir = store.dir(name)?;
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let mut m = if store.exists(name) {
        store.load(name)?
    } else {
        Manifest::new(name)
    };
    let added = crate::oci::add_layout(&dir.join("oci"), layout, reference)?;
    m.missing_images
        .retain(|mi| !added.iter().any(|a| a.reference == mi.name));
    seal(store, &mut m)?;
    Ok(added)
}

/// Add the images of a `docker save` archive to bundle `name`.
pub fn add_image_docker_archive(
    store: &Store,
    name: &str,
    archive: &Path,
    reference: Option<&ImageRef>,
) -> Result<Vec<crate::ImageEntry>> {
    let root = store.bundles_dir();
    std::fs::create_dir_all(&root).map_err(io("create", &root))?;
    let work = tempfile::Builder::new()
        .prefix(".docker-archive-")
        .tempdir_in(&root)
        .map_err(io("create a directory in", &root))?;
    crate::oci::docker_archive_to_layout(archive, work.path())?;
    add_image_layout(store, name, &work.path().join("layout"), reference)
}

/// Rewrite and sign every apt repository, refresh the image list, the public key and the
/// sha256 of every file, and write the manifest.
pub fn seal(store: &Store, m: &mut Manifest) -> Result<()> {
    let dir = store.dir(&m.name)?;
    let keys = store.keys_dir(&m.name)?;
    // A bundle imported from elsewhere has no private key here: it gets a new one (and a
    // new key.asc) when labctl changes it.
    let signer = match Signer::open(&keys, &m.name) {
        Some(s) if !m.os.is_empty() => s,
        _ => Signer::open_or_create(&keys, &m.name)?,
    };
    for os in &m.os {
        let rel = OsRelease::parse(&format!("{}-{}", os.family, os.release)).ok_or_else(|| {
            Error::BadManifest {
                path: dir.join(crate::manifest::MANIFEST),
                reason: format!("unknown OS {}-{}", os.family, os.release),
            }
        })?;
        crate::apt::write_repo(&dir.join(&os.repo), &rel, &m.name, &signer)?;
    }
    let key = signer.public_armored()?;
    crate::manifest::write_atomic(&dir.join("key.asc"), key.as_bytes())?;
    m.images = crate::oci::images(&dir.join("oci"))?;
    m.rehash(&dir)?;
    m.write(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deb::tests::build_deb;
    use labctl_spec::Family;

    #[test]
    fn parses_apt_simulation() {
        let out = "NOTE: This is only a simulation!\nInst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\nInst libgcc-s1 (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64]) []\nInst tzdata (2025b-0+deb12u1 Debian:12.15/oldstable [all])\nConf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n";
        let v = parse_inst(out);
        assert_eq!(
            v,
            [
                ("libc6".into(), "2.36-9+deb12u14".into(), "amd64".into()),
                (
                    "libgcc-s1".into(),
                    "12.2.0-14+deb12u1".into(),
                    "amd64".into()
                ),
                ("tzdata".into(), "2025b-0+deb12u1".into(), "all".into()),
            ]
        );
        assert_eq!(archive_name("x", "1:2.0", "amd64"), "x_1%3a2.0_amd64.deb");
        // apt-helper download-file's output on this host (no route to pkgs.k8s.io).
        let helper = "Ign:1 https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key\nErr:1 https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key\n  Could not resolve 'pkgs.k8s.io'\nE: Failed to fetch https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key  Could not resolve 'pkgs.k8s.io'\nE: Download Failed\n";
        assert_eq!(apt_reason(helper), "Could not resolve 'pkgs.k8s.io'");
        assert_eq!(
            apt_reason("Err:1 x\n  Connection refused\n"),
            "Connection refused"
        );
        assert_eq!(
            apt_reason("E: Unable to locate package kubelet\n"),
            "E: Unable to locate package kubelet"
        );
    }

    #[test]
    fn an_unreachable_mirror_leaves_a_bundle_of_what_there_is() {
        let d = tempfile::tempdir().unwrap();
        let debs = d.path().join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        build_deb(&debs, "lab-a", "1.0", "", "gzip");
        let store = Store::new(d.path().join("home"));
        let mut packages = BTreeMap::new();
        packages.insert(
            Family::Debian,
            vec!["lab-a".to_string(), "lab-z".to_string()],
        );
        // Port 9 on loopback: nothing listens, nothing leaves the host.
        let opts = BuildOptions {
            name: "t".into(),
            os: OsRelease::parse("debian-12").unwrap(),
            sets: vec![PackageSet {
                name: "runtime".into(),
                packages,
                repositories: vec![],
            }],
            images: vec![],
            from_dirs: vec![debs],
            offline: false,
            cache_dir: d.path().join("cache"),
            mirror: Some("http://127.0.0.1:9/debian".into()),
        };
        let mut events = Vec::new();
        let r = build(&store, &opts, &mut |e| events.push(e)).unwrap();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, BuildEvent::MirrorUnreachable { .. })),
            "{events:?}"
        );
        assert!(!r.sets[0].complete);
        assert_eq!(r.sets[0].missing.len(), 1, "{:?}", r.sets[0].missing);
        assert_eq!(r.sets[0].missing[0].name, "lab-z");
        assert!(
            r.sets[0].missing[0]
                .reason
                .starts_with("the mirror could not be read"),
            "{:?}",
            r.sets[0].missing
        );
        assert!(store.exists("t"));
    }

    #[test]
    fn offline_build_from_dir_signs_a_repository_apt_accepts() {
        let d = tempfile::tempdir().unwrap();
        let debs = d.path().join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        build_deb(&debs, "lab-a", "1.0", "lab-b", "xz");
        build_deb(&debs, "lab-b", "1.0", "", "gzip");
        let store = Store::new(d.path().join("home"));
        let mut packages = BTreeMap::new();
        packages.insert(
            Family::Debian,
            vec!["lab-a".to_string(), "lab-b".to_string()],
        );
        let mut other = BTreeMap::new();
        other.insert(Family::Debian, vec!["kubelet".to_string()]);
        let opts = BuildOptions {
            name: "t".into(),
            os: OsRelease::parse("debian-12").unwrap(),
            sets: vec![
                PackageSet {
                    name: "runtime".into(),
                    packages,
                    repositories: vec![],
                },
                PackageSet {
                    name: "kubernetes".into(),
                    packages: other,
                    repositories: vec![],
                },
            ],
            images: vec![ImageRef::parse("registry.k8s.io/pause:3.10").unwrap()],
            from_dirs: vec![debs],
            offline: true,
            cache_dir: d.path().join("cache"),
            mirror: None,
        };
        let mut events = Vec::new();
        let r = build(&store, &opts, &mut |e| events.push(e)).unwrap();
        assert!(r.sets[0].complete && !r.sets[1].complete, "{r:?}");
        assert_eq!(r.missing_images.len(), 1);
        assert!(events.contains(&BuildEvent::Signing));
        assert_eq!(
            store.covers("t", "runtime", "debian-12"),
            crate::Coverage::Complete
        );
        let m = store.load("t").unwrap();
        crate::archive::verify_dir(&store.dir("t").unwrap(), &m).unwrap();

        // apt itself (a private configuration reading the repository through file:) verifies
        // the signature with key.asc and resolves lab-a with its dependency.
        let dir = store.dir("t").unwrap();
        let root = d.path().join("client");
        let src = format!(
            "deb [signed-by={}] file:{} labctl main",
            dir.join("key.asc").display(),
            dir.join("apt/debian-12").display()
        );
        let apt = PrivateApt::new(root.clone(), root.join("archives"), "amd64", &[src]).unwrap();
        apt.update().unwrap();
        let closure = apt.simulate(&["lab-a".into()]).unwrap();
        let names: Vec<&str> = closure.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["lab-b", "lab-a"]);
        // A tampered Release is refused by apt.
        let rel = dir.join("apt/debian-12/dists/labctl/InRelease");
        let text = std::fs::read_to_string(&rel)
            .unwrap()
            .replace("Origin: labctl", "Origin: labctX");
        std::fs::write(&rel, text).unwrap();
        std::fs::remove_dir_all(root.join("state/lists")).unwrap();
        let apt = PrivateApt::new(
            root.clone(),
            root.join("archives"),
            "amd64",
            &[format!(
                "deb [signed-by={}] file:{} labctl main",
                dir.join("key.asc").display(),
                dir.join("apt/debian-12").display()
            )],
        )
        .unwrap();
        let out = apt.cmd().arg("update").run_unchecked().unwrap();
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains("not signed")
                || all.contains("BADSIG")
                || all.contains("NOSPLIT")
                || all.contains("signature"),
            "{all}"
        );
    }
}
