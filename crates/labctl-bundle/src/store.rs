//! The bundle store: `<data_dir>/bundles/<name>/`, private keys in `<data_dir>/bundle-keys/`.

use std::path::{Path, PathBuf};

use crate::manifest::{MANIFEST, Manifest, Missing};
use crate::{Error, Result, io};

/// The bundles of one labctl data directory.
#[derive(Debug, Clone)]
pub struct Store {
    data_dir: PathBuf,
}

/// One line of `bundle list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    pub name: String,
    pub created: String,
    /// OS keys (`debian-12`).
    pub os: Vec<String>,
    /// (set name, complete for every OS it was built for).
    pub sets: Vec<(String, bool)>,
    pub images: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Whether a bundle holds a package set for an OS release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Every package of the set, with its dependency closure.
    Complete,
    /// The bundle exists but lacks these (name and reason); the set name itself when the
    /// bundle never had the set for that release.
    Missing(Vec<Missing>),
    /// No bundle of that name is installed.
    NoBundle,
}

impl Store {
    pub fn new(data_dir: impl Into<PathBuf>) -> Store {
        Store {
            data_dir: data_dir.into(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn bundles_dir(&self) -> PathBuf {
        self.data_dir.join("bundles")
    }

    /// The directory of a bundle (whether or not it exists); the name is checked.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        if !labctl_spec::bundle_name_ok(name) {
            return Err(Error::BadName(name.to_string()));
        }
        Ok(self.bundles_dir().join(name))
    }

    /// Where the bundle's private signing key lives (never exported).
    pub fn keys_dir(&self, name: &str) -> Result<PathBuf> {
        if !labctl_spec::bundle_name_ok(name) {
            return Err(Error::BadName(name.to_string()));
        }
        Ok(self.data_dir.join("bundle-keys").join(name))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.dir(name).is_ok_and(|d| d.join(MANIFEST).is_file())
    }

    pub fn load(&self, name: &str) -> Result<Manifest> {
        let dir = self.dir(name)?;
        if !dir.join(MANIFEST).is_file() {
            return Err(Error::NotFound(name.to_string()));
        }
        Manifest::read(&dir)
    }

    /// Every installed bundle, by name. Directories that are not bundles (an import in
    /// progress, `.import-*`) are skipped.
    pub fn list(&self) -> Result<Vec<BundleSummary>> {
        let root = self.bundles_dir();
        let rd = match std::fs::read_dir(&root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &root)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io("read", &root))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !labctl_spec::bundle_name_ok(&name) || !e.path().join(MANIFEST).is_file() {
                continue;
            }
            let m = Manifest::read(&e.path())?;
            out.push(summary(&m, &e.path()));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn summary(&self, name: &str) -> Result<BundleSummary> {
        let m = self.load(name)?;
        Ok(summary(&m, &self.dir(name)?))
    }

    /// Remove a bundle and its private key.
    pub fn remove(&self, name: &str) -> Result<()> {
        let dir = self.dir(name)?;
        if !dir.join(MANIFEST).is_file() {
            return Err(Error::NotFound(name.to_string()));
        }
        // Rename first, so a half-removed bundle never looks installed.
        let trash = self
            .bundles_dir()
            .join(format!(".remove-{name}-{}", std::process::id()));
        std::fs::rename(&dir, &trash).map_err(io("remove", &dir))?;
        std::fs::remove_dir_all(&trash).map_err(io("remove", &trash))?;
        let keys = self.keys_dir(name)?;
        if keys.exists() {
            std::fs::remove_dir_all(&keys).map_err(io("remove", &keys))?;
        }
        Ok(())
    }

    /// Does bundle `bundle` hold package set `set` complete for `os` (`debian-12`)?
    pub fn covers(&self, bundle: &str, set: &str, os: &str) -> Coverage {
        if !self.exists(bundle) {
            return Coverage::NoBundle;
        }
        let m = match self.load(bundle) {
            Ok(m) => m,
            Err(e) => {
                return Coverage::Missing(vec![Missing {
                    name: MANIFEST.into(),
                    reason: e.to_string(),
                }]);
            }
        };
        match m.sets.get(set).and_then(|by_os| by_os.get(os)) {
            Some(e) if e.complete => Coverage::Complete,
            Some(e) if e.missing.is_empty() => Coverage::Missing(vec![Missing {
                name: set.into(),
                reason: "the set is not complete in the bundle".into(),
            }]),
            Some(e) => Coverage::Missing(e.missing.clone()),
            None => Coverage::Missing(vec![Missing {
                name: set.into(),
                reason: format!(
                    "bundle `{bundle}` was not built with package set `{set}` for {os}"
                ),
            }]),
        }
    }
}

fn summary(m: &Manifest, dir: &Path) -> BundleSummary {
    BundleSummary {
        name: m.name.clone(),
        created: m.created.clone(),
        os: m
            .os
            .iter()
            .map(|o| format!("{}-{}", o.family, o.release))
            .collect(),
        sets: m
            .sets
            .iter()
            .map(|(k, by_os)| (k.clone(), by_os.values().all(|e| e.complete)))
            .collect(),
        images: m.images.len(),
        files: m.files.len(),
        bytes: m.size(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SetEntry;

    #[test]
    fn coverage() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        assert_eq!(s.covers("k8s", "runtime", "debian-12"), Coverage::NoBundle);
        assert_eq!(s.covers("../x", "runtime", "debian-12"), Coverage::NoBundle);
        let dir = s.dir("k8s").unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = Manifest::new("k8s");
        m.sets.entry("runtime".into()).or_default().insert(
            "debian-12".into(),
            SetEntry {
                complete: true,
                packages: vec!["containerd".into()],
                missing: vec![],
            },
        );
        let miss = Missing {
            name: "kubelet".into(),
            reason: "no route".into(),
        };
        m.sets.entry("kubernetes".into()).or_default().insert(
            "debian-12".into(),
            SetEntry {
                complete: false,
                packages: vec![],
                missing: vec![miss.clone()],
            },
        );
        m.write(&dir).unwrap();
        assert_eq!(s.covers("k8s", "runtime", "debian-12"), Coverage::Complete);
        assert_eq!(
            s.covers("k8s", "kubernetes", "debian-12"),
            Coverage::Missing(vec![miss])
        );
        match s.covers("k8s", "runtime", "ubuntu-24.04") {
            Coverage::Missing(v) => assert!(v[0].reason.contains("ubuntu-24.04"), "{v:?}"),
            other => panic!("{other:?}"),
        }
        let l = s.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            l[0].sets,
            [("kubernetes".into(), false), ("runtime".into(), true)]
        );
        s.remove("k8s").unwrap();
        assert!(s.list().unwrap().is_empty());
        assert!(matches!(s.remove("k8s"), Err(Error::NotFound(_))));
    }
}
