//! Reading a `.deb`: the `ar` archive, its `control.tar.{gz,xz,zst}`, and the control
//! paragraph that apt's `Packages` index repeats.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result, io};

/// The control paragraph of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// Fields in file order, multi-line values kept as written (continuation lines included).
    pub fields: Vec<(String, String)>,
}

impl Control {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Parse one deb822 paragraph.
    pub fn parse(text: &str) -> Option<Control> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                let (_, v) = fields.last_mut()?;
                v.push('\n');
                v.push_str(line);
            } else {
                let (k, v) = line.split_once(':')?;
                fields.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        (!fields.is_empty()).then_some(Control { fields })
    }
}

/// Largest control member read (a control.tar is a few KB).
const MAX_CONTROL: u64 = 16 << 20;

/// Read the control paragraph of the `.deb` at `path`.
pub fn read_control(path: &Path) -> Result<Control> {
    let bad = |reason: &str| Error::BadDeb {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut f = std::fs::File::open(path).map_err(io("read", path))?;
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).map_err(|_| bad("too short"))?;
    if &magic != b"!<arch>\n" {
        return Err(bad("not an ar archive"));
    }
    loop {
        let mut hdr = [0u8; 60];
        if f.read_exact(&mut hdr).is_err() {
            return Err(bad("no control.tar member"));
        }
        let name = String::from_utf8_lossy(&hdr[..16])
            .trim()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = String::from_utf8_lossy(&hdr[48..58])
            .trim()
            .parse()
            .map_err(|_| bad("bad ar member size"))?;
        if name.starts_with("control.tar") {
            if size > MAX_CONTROL {
                return Err(bad("control.tar is too large"));
            }
            let mut member = Vec::new();
            (&mut f)
                .take(size)
                .read_to_end(&mut member)
                .map_err(io("read", path))?;
            let tar_bytes = decompress(&name, &member).map_err(|r| bad(&r))?;
            let mut ar = tar::Archive::new(tar_bytes.as_slice());
            let entries = ar.entries().map_err(|_| bad("control.tar is not a tar"))?;
            for e in entries {
                let mut e = e.map_err(|_| bad("control.tar is not a tar"))?;
                let p = e.path().map_err(|_| bad("bad path in control.tar"))?;
                let p = p.to_string_lossy().trim_start_matches("./").to_string();
                if p == "control" {
                    let mut text = String::new();
                    e.read_to_string(&mut text)
                        .map_err(|_| bad("control is not UTF-8 text"))?;
                    return Control::parse(&text).ok_or_else(|| bad("empty control file"));
                }
            }
            return Err(bad("control.tar has no control file"));
        }
        // Skip this member (members are 2-byte aligned).
        let skip = size + (size % 2);
        std::io::copy(&mut (&mut f).take(skip), &mut std::io::sink()).map_err(io("read", path))?;
    }
}

fn decompress(name: &str, data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match name {
        "control.tar" => out.extend_from_slice(data),
        "control.tar.gz" => {
            flate2::read::GzDecoder::new(data)
                .take(MAX_CONTROL)
                .read_to_end(&mut out)
                .map_err(|e| format!("control.tar.gz: {e}"))?;
        }
        "control.tar.xz" => {
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), &mut out)
                .map_err(|e| format!("control.tar.xz: {e}"))?;
        }
        "control.tar.zst" => {
            let dec = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| format!("control.tar.zst: {e}"))?;
            dec.take(MAX_CONTROL)
                .read_to_end(&mut out)
                .map_err(|e| format!("control.tar.zst: {e}"))?;
        }
        other => return Err(format!("unknown compression of {other}")),
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use labctl_driver::exec::Cmd;

    /// Build a tiny .deb with the real `dpkg-deb` (`-Z` picks the compression).
    pub(crate) fn build_deb(
        dir: &Path,
        name: &str,
        version: &str,
        depends: &str,
        z: &str,
    ) -> std::path::PathBuf {
        let root = dir.join(format!("{name}-src"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(root.join("usr/share/doc").join(name)).unwrap();
        std::fs::write(root.join("usr/share/doc").join(name).join("marker"), name).unwrap();
        let dep = if depends.is_empty() {
            String::new()
        } else {
            format!("Depends: {depends}\n")
        };
        std::fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: labctl tests <t@example.org>\n{dep}Description: test package {name}\n a second line\n"
            ),
        )
        .unwrap();
        let out = dir.join(format!("{name}_{version}_all.deb"));
        Cmd::new("dpkg-deb")
            .args(["--root-owner-group", &format!("-Z{z}"), "--build"])
            .arg(&root)
            .arg(&out)
            .run()
            .unwrap();
        out
    }

    #[test]
    fn reads_control_of_every_compression() {
        let d = tempfile::tempdir().unwrap();
        for z in ["gzip", "xz", "zstd", "none"] {
            let sub = d.path().join(z);
            std::fs::create_dir_all(&sub).unwrap();
            let deb = build_deb(&sub, "hello-lab", "1.0-1", "libc6 (>= 2.3)", z);
            let c = read_control(&deb).unwrap_or_else(|e| panic!("{z}: {e}"));
            assert_eq!(c.get("Package"), Some("hello-lab"), "{z}");
            assert_eq!(c.get("version"), Some("1.0-1"));
            assert_eq!(c.get("Depends"), Some("libc6 (>= 2.3)"));
            assert_eq!(
                c.get("Description"),
                Some("test package hello-lab\n a second line")
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_deb() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.deb");
        std::fs::write(&p, b"!<arch>\nshort").unwrap();
        assert!(matches!(read_control(&p), Err(Error::BadDeb { .. })));
        std::fs::write(&p, b"hello").unwrap();
        assert!(matches!(read_control(&p), Err(Error::BadDeb { .. })));
    }
}
