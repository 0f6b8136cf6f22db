//! `bundle export` / `bundle import`: one tar archive `<name>/manifest.json`, `<name>/...`;
//! the manifest lists the sha256 of every other file, and import checks every one of them
//! (and that no file is missing or extra) before it installs the bundle atomically.

use std::io::Read;
use std::path::Path;

use crate::manifest::{MANIFEST, Manifest, safe_relative, sha256_file, walk_files};
use crate::{Error, Result, Store, io};

/// Write bundle `name` to `file` (a tar archive). The bundle's files are checked against
/// its manifest first, so a damaged bundle is not handed on.
pub fn export(store: &Store, name: &str, file: &Path) -> Result<u64> {
    let dir = store.dir(name)?;
    let m = store.load(name)?;
    verify_dir(&dir, &m)?;
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io("create a file in", parent))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
    tar.mode(tar::HeaderMode::Deterministic);
    let mut add = |rel: &str| -> Result<()> {
        let p = dir.join(rel);
        let mut f = std::fs::File::open(&p).map_err(io("read", &p))?;
        tar.append_file(format!("{name}/{rel}"), &mut f)
            .map_err(io("write", file))
    };
    add(MANIFEST)?;
    for rel in m.files.keys() {
        add(rel)?;
    }
    let w = tar.into_inner().map_err(io("write", file))?;
    drop(w);
    tmp.as_file().sync_all().map_err(io("write", file))?;
    let size = tmp.as_file().metadata().map_err(io("write", file))?.len();
    tmp.persist(file).map_err(|e| io("write", file)(e.error))?;
    Ok(size)
}

/// Every file of the bundle matches the manifest, and there is no other.
pub fn verify_dir(dir: &Path, m: &Manifest) -> Result<()> {
    let present = walk_files(dir)?;
    for rel in &present {
        if rel != MANIFEST && !m.files.contains_key(rel) {
            return Err(Error::Unlisted { file: rel.clone() });
        }
    }
    for (rel, sum) in &m.files {
        let p = dir.join(rel);
        if !p.is_file() {
            return Err(Error::MissingFile { file: rel.clone() });
        }
        if &sha256_file(&p)? != sum {
            return Err(Error::Tampered { file: rel.clone() });
        }
    }
    Ok(())
}

/// Install the bundle in `file`. Refuses an archive with unsafe paths, links or special
/// files, a file whose sha256 differs from the manifest's (naming it), and a name already
/// installed. Nothing is left behind on failure.
pub fn import(store: &Store, file: &Path) -> Result<Manifest> {
    let root = store.bundles_dir();
    std::fs::create_dir_all(&root).map_err(io("create", &root))?;
    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(&root)
        .map_err(io("create a directory in", &root))?;
    let f = std::fs::File::open(file).map_err(io("read", file))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let mut top: Option<String> = None;
    let entries = ar
        .entries()
        .map_err(|e| Error::NotABundle(format!("not a tar archive: {e}")))?;
    for e in entries {
        let mut e = e.map_err(|e| Error::NotABundle(format!("damaged tar archive: {e}")))?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let path = raw.trim_end_matches('/');
        let kind = e.header().entry_type();
        let (first, rest) = path.split_once('/').unwrap_or((path, ""));
        if !labctl_spec::bundle_name_ok(first) {
            return Err(Error::UnsafePath(raw));
        }
        match &top {
            Some(t) if t != first => return Err(Error::UnsafePath(raw)),
            Some(_) => {}
            None => top = Some(first.to_string()),
        }
        if rest.is_empty() {
            if kind.is_dir() {
                continue;
            }
            return Err(Error::UnsafePath(raw));
        }
        let rel = safe_relative(rest).ok_or_else(|| Error::UnsafePath(raw.clone()))?;
        let dest = staging.path().join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io("create", &dest))?;
            continue;
        }
        if !kind.is_file() {
            return Err(Error::UnsafePath(raw));
        }
        if dest.exists() {
            return Err(Error::NotABundle(format!("`{rest}` appears twice")));
        }
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(io("create", p))?;
        }
        let mut out = std::fs::File::create(&dest).map_err(io("write", &dest))?;
        std::io::copy(&mut (&mut e).take(u64::MAX), &mut out).map_err(io("write", &dest))?;
    }
    let name = top.ok_or_else(|| Error::NotABundle("the archive is empty".into()))?;
    if !staging.path().join(MANIFEST).is_file() {
        return Err(Error::NotABundle(format!("no {name}/{MANIFEST}")));
    }
    let m = Manifest::read(staging.path())?;
    if m.name != name {
        return Err(Error::NotABundle(format!(
            "the manifest names bundle `{}` but the archive holds `{name}`",
            m.name
        )));
    }
    verify_dir(staging.path(), &m)?;
    let dest = store.dir(&name)?;
    if dest.exists() {
        return Err(Error::Exists(name));
    }
    let kept = staging.keep();
    if let Err(e) = std::fs::rename(&kept, &dest) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(io("install", &dest)(e));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(store: &Store, name: &str) {
        let dir = store.dir(name).unwrap();
        std::fs::create_dir_all(dir.join("apt/debian-12/pool")).unwrap();
        std::fs::write(dir.join("apt/debian-12/pool/a.deb"), b"deb bytes").unwrap();
        std::fs::write(dir.join("key.asc"), b"key").unwrap();
        let mut m = Manifest::new(name);
        m.rehash(&dir).unwrap();
        m.write(&dir).unwrap();
    }

    fn tree(dir: &Path) -> Vec<(String, String)> {
        walk_files(dir)
            .unwrap()
            .into_iter()
            .map(|r| {
                let h = sha256_file(&dir.join(&r)).unwrap();
                (r, h)
            })
            .collect()
    }

    #[test]
    fn round_trip_is_byte_identical() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("home"));
        bundle(&s, "k8s");
        let before = tree(&s.dir("k8s").unwrap());
        let file = d.path().join("k8s.tar");
        export(&s, "k8s", &file).unwrap();
        s.remove("k8s").unwrap();
        let m = import(&s, &file).unwrap();
        assert_eq!(m.name, "k8s");
        assert_eq!(tree(&s.dir("k8s").unwrap()), before);
        assert!(matches!(import(&s, &file), Err(Error::Exists(_))));
        // No staging directory is left behind.
        let left: Vec<_> = std::fs::read_dir(s.bundles_dir()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_tampered_archive_is_refused_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("home"));
        bundle(&s, "k8s");
        let file = d.path().join("k8s.tar");
        export(&s, "k8s", &file).unwrap();
        s.remove("k8s").unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.windows(9).position(|w| w == b"deb bytes").unwrap();
        bytes[at] = b'D';
        std::fs::write(&file, &bytes).unwrap();
        match import(&s, &file) {
            Err(Error::Tampered { file }) => assert_eq!(file, "apt/debian-12/pool/a.deb"),
            other => panic!("{other:?}"),
        }
        assert!(!s.exists("k8s"));
        assert_eq!(std::fs::read_dir(s.bundles_dir()).unwrap().count(), 0);
    }

    fn raw_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // set_path refuses `..`; write the raw name as a hostile archive would.
            let name = h.as_old_mut();
            name.name[..p.len()].copy_from_slice(p.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn path_escapes_and_extra_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("home"));
        for bad in [
            "k8s/../../evil",
            "/etc/x",
            "k8s/a/../../b",
            "../k8s/x",
            "k8s//x",
        ] {
            let f = d.path().join("bad.tar");
            std::fs::write(&f, raw_tar(&[(bad, b"x")])).unwrap();
            assert!(matches!(import(&s, &f), Err(Error::UnsafePath(_))), "{bad}");
        }
        assert!(!d.path().join("evil").exists() && !d.path().join("b").exists());
        // A file the manifest does not list.
        bundle(&s, "k8s");
        let f = d.path().join("k8s.tar");
        export(&s, "k8s", &f).unwrap();
        s.remove("k8s").unwrap();
        let mut bytes = std::fs::read(&f).unwrap();
        let end = bytes.len() - 1024;
        bytes.truncate(end);
        bytes.extend(raw_tar(&[("k8s/extra", b"x")]));
        std::fs::write(&f, &bytes).unwrap();
        assert!(matches!(import(&s, &f), Err(Error::Unlisted { .. })));
    }
}
