//! A signed apt repository per OS release: `apt/<family>-<release>/` with
//! `dists/labctl/{Release,InRelease,Release.gpg}`, `dists/labctl/main/binary-<arch>/Packages`
//! (and `.gz`), and `pool/*.deb`. Guests use
//! `deb [signed-by=/etc/apt/keyrings/labctl-bundle.asc] http://ADDR/b/NAME/apt/debian-12 labctl main`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::deb::{Control, read_control};
use crate::manifest::{sha256_bytes, sha256_file, write_atomic};
use crate::{OsRelease, Result, io};

pub const SUITE: &str = "labctl";
pub const COMPONENT: &str = "main";

/// The repository directory of an OS release inside a bundle, relative: `apt/debian-12`.
pub fn repo_rel(os: &OsRelease) -> String {
    format!("apt/{}", os.key())
}

/// A package in a repository's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPackage {
    pub package: String,
    pub version: String,
    pub arch: String,
    /// File name in `pool/`.
    pub file: String,
    pub size: u64,
}

/// The pool name of a package: `name_version_arch.deb`, the version's epoch colon written
/// `_` so that no file name needs URL escaping (a version has no `_`).
pub fn pool_name(c: &Control) -> Option<String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ".+-~:".contains(ch))
    };
    let (p, v, a) = (c.get("Package")?, c.get("Version")?, c.get("Architecture")?);
    (ok(p) && ok(v) && ok(a) && !p.contains(':') && !a.contains(':'))
        .then(|| format!("{p}_{}_{a}.deb", v.replace(':', "_")))
}

/// Copy `.deb` files into a repository's pool (hard link when possible). Returns what was
/// added, by package name.
pub fn add_to_pool(repo: &Path, debs: &[PathBuf]) -> Result<Vec<PoolPackage>> {
    let pool = repo.join("pool");
    std::fs::create_dir_all(&pool).map_err(io("create", &pool))?;
    let mut out = Vec::new();
    for deb in debs {
        let c = read_control(deb)?;
        let file = pool_name(&c).ok_or_else(|| crate::Error::BadDeb {
            path: deb.clone(),
            reason: "Package, Version or Architecture missing or not plain".into(),
        })?;
        let dest = pool.join(&file);
        if !dest.exists() {
            let tmp = pool.join(format!(".{file}.part"));
            if std::fs::hard_link(deb, &tmp).is_err() {
                std::fs::copy(deb, &tmp).map_err(io("copy", deb))?;
            }
            std::fs::rename(&tmp, &dest).map_err(io("write", &dest))?;
        }
        let size = std::fs::metadata(&dest).map_err(io("read", &dest))?.len();
        out.push(PoolPackage {
            package: c.get("Package").unwrap_or_default().to_string(),
            version: c.get("Version").unwrap_or_default().to_string(),
            arch: c.get("Architecture").unwrap_or_default().to_string(),
            file,
            size,
        });
    }
    Ok(out)
}

/// The `Packages` index of every `.deb` in `repo/pool`, sorted by package and version.
pub fn packages_index(repo: &Path) -> Result<String> {
    let pool = repo.join("pool");
    let mut entries: BTreeMap<String, String> = BTreeMap::new();
    let rd = match std::fs::read_dir(&pool) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(io("read", &pool)(e)),
    };
    for e in rd {
        let e = e.map_err(io("read", &pool))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".deb") || name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let c = read_control(&path)?;
        let mut para = String::new();
        for (k, v) in &c.fields {
            if ["Filename", "Size", "MD5sum", "SHA1", "SHA256"]
                .iter()
                .any(|f| f.eq_ignore_ascii_case(k))
            {
                continue;
            }
            para.push_str(&format!("{k}: {v}\n"));
        }
        let size = std::fs::metadata(&path).map_err(io("read", &path))?.len();
        para.push_str(&format!(
            "Filename: pool/{name}\nSize: {size}\nSHA256: {}\n",
            sha256_file(&path)?
        ));
        entries.insert(name, para);
    }
    Ok(entries.into_values().collect::<Vec<_>>().join("\n"))
}

/// Write the indices and `Release` of `repo` for `os`, and sign it.
pub(crate) fn write_repo(
    repo: &Path,
    os: &OsRelease,
    bundle: &str,
    signer: &crate::keys::Signer,
) -> Result<()> {
    let release = write_indices(repo, os, bundle)?;
    signer.sign_release(&release)
}

/// Write `Packages`, `Packages.gz` and `Release` (unsigned); returns the Release path.
pub fn write_indices(repo: &Path, os: &OsRelease, bundle: &str) -> Result<PathBuf> {
    let dists = repo.join("dists").join(SUITE);
    let bin_rel = format!("{COMPONENT}/binary-{}", os.arch);
    let bin = dists.join(&bin_rel);
    std::fs::create_dir_all(&bin).map_err(io("create", &bin))?;
    let packages = packages_index(repo)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(packages.as_bytes())
        .map_err(io("compress", bin.join("Packages.gz")))?;
    let gz = gz
        .finish()
        .map_err(io("compress", bin.join("Packages.gz")))?;
    write_atomic(&bin.join("Packages"), packages.as_bytes())?;
    write_atomic(&bin.join("Packages.gz"), &gz)?;
    let mut release = format!(
        "Origin: labctl\nLabel: labctl bundle {bundle}\nSuite: {SUITE}\nCodename: {SUITE}\nDate: {}\nArchitectures: {} all\nComponents: {COMPONENT}\nDescription: labctl bundle {bundle} for {} {} ({})\nSHA256:\n",
        crate::time::now_rfc2822(),
        os.arch,
        os.family.as_str(),
        os.release,
        os.suite,
    );
    for (name, bytes) in [
        ("Packages", packages.as_bytes()),
        ("Packages.gz", gz.as_slice()),
    ] {
        release.push_str(&format!(
            " {} {:>10} {bin_rel}/{name}\n",
            sha256_bytes(bytes),
            bytes.len()
        ));
    }
    let path = dists.join("Release");
    write_atomic(&path, release.as_bytes())?;
    // Stale signatures would not verify; they are rewritten by signing.
    for f in ["InRelease", "Release.gpg"] {
        let _ = std::fs::remove_file(dists.join(f));
    }
    Ok(path)
}

/// Parse a `Packages` index back into paragraphs.
pub fn parse_packages(text: &str) -> Vec<Control> {
    text.split("\n\n").filter_map(Control::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deb::tests::build_deb;

    #[test]
    fn packages_parse_back_and_release_hashes_match() {
        let d = tempfile::tempdir().unwrap();
        let a = build_deb(d.path(), "lab-a", "1:2.0-1", "lab-b", "xz");
        let b = build_deb(d.path(), "lab-b", "0.1", "", "gzip");
        let repo = d.path().join("apt/debian-12");
        let added = add_to_pool(&repo, &[a.clone(), b]).unwrap();
        assert_eq!(added[0].file, "lab-a_1_2.0-1_all.deb");
        let os = OsRelease::parse("debian-12").unwrap();
        let release = write_indices(&repo, &os, "t").unwrap();

        let text =
            std::fs::read_to_string(repo.join("dists/labctl/main/binary-amd64/Packages")).unwrap();
        let paras = parse_packages(&text);
        assert_eq!(paras.len(), 2);
        let pa = &paras[0];
        assert_eq!(pa.get("Package"), Some("lab-a"));
        assert_eq!(pa.get("Version"), Some("1:2.0-1"));
        assert_eq!(pa.get("Depends"), Some("lab-b"));
        assert_eq!(pa.get("Filename"), Some("pool/lab-a_1_2.0-1_all.deb"));
        assert_eq!(pa.get("SHA256"), Some(sha256_file(&a).unwrap().as_str()));
        assert_eq!(
            pa.get("Size"),
            Some(std::fs::metadata(&a).unwrap().len().to_string().as_str())
        );

        let rel = std::fs::read_to_string(&release).unwrap();
        let rc = Control::parse(&rel).unwrap();
        assert_eq!(rc.get("Suite"), Some("labctl"));
        assert_eq!(rc.get("Components"), Some("main"));
        assert!(rc.get("Date").unwrap().ends_with(" UTC"));
        let sums = rc.get("SHA256").unwrap();
        let mut n = 0;
        for line in sums.lines().skip(1) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let bytes = std::fs::read(repo.join("dists/labctl").join(parts[2])).unwrap();
            assert_eq!(parts[0], sha256_bytes(&bytes), "{}", parts[2]);
            assert_eq!(parts[1], bytes.len().to_string());
            n += 1;
        }
        assert_eq!(n, 2);
        // Packages.gz holds the same text.
        let gz = std::fs::read(repo.join("dists/labctl/main/binary-amd64/Packages.gz")).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut s)
            .unwrap();
        assert_eq!(s, text);
    }
}
