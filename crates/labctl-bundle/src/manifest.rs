//! `manifest.json`: what a bundle holds, and the sha256 of every file in it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result, io};

pub const SCHEMA: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub name: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub os: Vec<OsEntry>,
    /// set name → OS key (`debian-12`) → what the bundle holds of it.
    pub sets: BTreeMap<String, BTreeMap<String, SetEntry>>,
    pub images: Vec<ImageEntry>,
    /// Images asked for that the bundle does not hold, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_images: Vec<Missing>,
    /// Relative path (with `/`) → sha256 hex, for every file but manifest.json.
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsEntry {
    pub family: String,
    pub release: String,
    pub suite: String,
    pub arch: String,
    /// The apt repository's directory, relative to the bundle: `apt/debian-12`.
    pub repo: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SetEntry {
    /// Every package asked for is in the bundle, with its dependency closure.
    pub complete: bool,
    /// The packages asked for that the bundle holds (closure not listed).
    pub packages: Vec<String>,
    pub missing: Vec<Missing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Full reference: `registry.k8s.io/pause:3.10`.
    #[serde(rename = "ref")]
    pub reference: String,
    pub digest: String,
    pub media_type: String,
}

impl Manifest {
    pub fn new(name: &str) -> Manifest {
        Manifest {
            schema: SCHEMA,
            name: name.to_string(),
            created: crate::time::now_rfc3339(),
            os: Vec::new(),
            sets: BTreeMap::new(),
            images: Vec::new(),
            missing_images: Vec::new(),
            files: BTreeMap::new(),
        }
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(io("read", &path))?;
        Manifest::parse(&text, &path)
    }

    pub fn parse(text: &[u8], path: &Path) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(text).map_err(|e| Error::BadManifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if m.schema != SCHEMA {
            return Err(Error::BadManifest {
                path: path.to_path_buf(),
                reason: format!("schema {} (this labctl reads schema {SCHEMA})", m.schema),
            });
        }
        if !labctl_spec::bundle_name_ok(&m.name) {
            return Err(Error::BadManifest {
                path: path.to_path_buf(),
                reason: format!("`{}` is not a valid bundle name", m.name),
            });
        }
        for f in m.files.keys() {
            if safe_relative(f).is_none() {
                return Err(Error::UnsafePath(f.clone()));
            }
        }
        Ok(m)
    }

    /// Write atomically (temp file + rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| Error::BadManifest {
            path: dir.join(MANIFEST),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        write_atomic(&dir.join(MANIFEST), &text)
    }

    /// Recompute `files` from what is in `dir`.
    pub fn rehash(&mut self, dir: &Path) -> Result<()> {
        self.files.clear();
        for rel in walk_files(dir)? {
            if rel == MANIFEST {
                continue;
            }
            let h = sha256_file(&dir.join(&rel))?;
            self.files.insert(rel, h);
        }
        Ok(())
    }

    pub fn os_entry(&self, key: &str) -> Option<&OsEntry> {
        self.os
            .iter()
            .find(|o| format!("{}-{}", o.family, o.release) == key)
    }

    /// Total size of the bundle's files, in bytes.
    pub fn size(&self, dir: &Path) -> u64 {
        self.files
            .keys()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum()
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create a file in", dir))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io("write", path))?;
    tmp.persist(path).map_err(|e| io("write", path)(e.error))?;
    Ok(())
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io("read", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn sha256_bytes(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

pub(crate) fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// Every regular file under `dir`, as sorted relative paths with `/`. Symbolic links and
/// other special files are refused: a bundle holds plain files only.
pub(crate) fn walk_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let rd = std::fs::read_dir(&abs).map_err(io("read", &abs))?;
        for e in rd {
            let e = e.map_err(io("read", &abs))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                return Err(Error::UnsafePath(e.path().display().to_string()));
            };
            let r = rel.join(name);
            let ft = e.file_type().map_err(io("read", e.path()))?;
            if ft.is_dir() {
                stack.push(r);
            } else if ft.is_file() {
                out.push(
                    r.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            } else {
                return Err(Error::UnsafePath(r.display().to_string()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A relative path of plain names (no `..`, `.`, empty, absolute or backslash parts).
pub(crate) fn safe_relative(p: &str) -> Option<PathBuf> {
    if p.is_empty() || p.starts_with('/') || p.contains('\\') || p.contains('\0') {
        return None;
    }
    let mut out = PathBuf::new();
    for seg in p.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert!(safe_relative("apt/debian-12/pool/a.deb").is_some());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a/",
        ] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }

    proptest::proptest! {
        /// An accepted archive path never climbs out of the directory it is joined to.
        #[test]
        fn safe_paths_stay_inside(p in "[./a\\\\]{0,20}") {
            if let Some(rel) = safe_relative(&p) {
                proptest::prop_assert!(rel.components().all(|c| matches!(c, std::path::Component::Normal(_))));
            }
        }
    }

    #[test]
    fn manifest_round_trip_and_rehash() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("apt/x")).unwrap();
        std::fs::write(d.path().join("apt/x/f"), b"abc").unwrap();
        let mut m = Manifest::new("t");
        m.rehash(d.path()).unwrap();
        assert_eq!(
            m.files.get("apt/x/f").map(String::as_str),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        m.write(d.path()).unwrap();
        assert_eq!(Manifest::read(d.path()).unwrap(), m);
        m.rehash(d.path()).unwrap();
        assert!(!m.files.contains_key(MANIFEST));
    }
}
