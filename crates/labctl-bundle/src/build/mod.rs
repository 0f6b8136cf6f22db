//! `bundle build`: fetch a lab's package sets for its guest OS release with apt-get (a
//! private configuration and state, the distribution's own mirror), add local material
//! (`--from-dir`, OCI layouts), write the signed apt repository and the manifest.
//!
//! Resumable: apt's lists and the downloaded `.deb` files stay in `<cache>/bundle/<os>/`
//! and are reused by the next build. Progress goes out as [`BuildEvent`]s.
mod fetch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use labctl_spec::{ImageRef, PackageSet};

use crate::apt::{add_to_pool, repo_rel};
use crate::keys::Signer;
use crate::manifest::{Manifest, Missing, OsEntry, SetEntry};
use crate::{Error, OsRelease, Result, Store, io};
use fetch::{PrivateApt, apt_reason, base_sources, default_mirror, fetch_set};

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
mod tests;
