//! Untrusted box contents: the archive, its metadata and its disk images.
//!
//! A box comes from strangers. Its archive is read in-process (never by an external `tar`)
//! and only regular files and directories with one plain name each are written, within a
//! size cap. Every disk image is inspected with `qemu-img info -f <format>` before use: a
//! backing file, an external data file, encryption or a VMDK that is not one self-contained
//! file is refused (each can make QEMU read a host file and hand it to the guest), and an
//! accepted image is converted into labctl's own qcow2 with both formats explicit.

use std::io::Read;
use std::path::{Component, Path};
use std::time::Duration;

use super::BoxError;
use crate::exec::Cmd;

/// Default cap on everything a box archive unpacks to.
pub const DEFAULT_MAX_UNPACKED: u64 = 64 << 30;

fn entry_err(entry: &str, why: impl Into<String>) -> BoxError {
    BoxError::Entry {
        entry: entry.escape_debug().to_string(),
        why: why.into(),
    }
}

/// The one plain name of an archive entry (`./x` and `x` are `x`); None for the archive's
/// root directory itself. Anything with a directory part, `..`, or a root is refused.
fn plain_entry_name(raw: &Path, shown: &str) -> Result<Option<String>, BoxError> {
    let mut name = None;
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) if name.is_none() => {
                name = Some(
                    n.to_str()
                        .ok_or_else(|| entry_err(shown, "the name is not UTF-8"))?
                        .to_string(),
                );
            }
            Component::Normal(_) => {
                return Err(entry_err(
                    shown,
                    "entries in subdirectories are not accepted (a box is one flat directory)",
                ));
            }
            Component::ParentDir => return Err(entry_err(shown, "the path climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(entry_err(shown, "the path is absolute"));
            }
        }
    }
    Ok(name)
}

/// Extract a .box (tar, optionally gzip-compressed) into the empty directory `dest`.
pub fn extract(file: &Path, dest: &Path, gzip: bool, max_total: u64) -> Result<(), BoxError> {
    let f = std::fs::File::open(file).map_err(super::io("read", file))?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
    } else {
        Box::new(std::io::BufReader::new(f))
    };
    let mut archive = tar::Archive::new(reader);
    let bad_archive = |e: std::io::Error| BoxError::Format {
        path: file.to_path_buf(),
        message: format!("not a readable box archive: {e}"),
    };
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let raw = entry.path().map_err(bad_archive)?.into_owned();
        let shown = raw.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        let what = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => {
                return Err(entry_err(&shown, "symbolic links are not accepted"));
            }
            tar::EntryType::Link => return Err(entry_err(&shown, "hard links are not accepted")),
            tar::EntryType::GNUSparse => {
                return Err(entry_err(&shown, "sparse members are not accepted"));
            }
            other => {
                return Err(entry_err(
                    &shown,
                    format!("only regular files and directories are accepted, not {other:?}"),
                ));
            }
        };
        let Some(name) = plain_entry_name(&raw, &shown)? else {
            if what == "dir" {
                continue;
            }
            return Err(entry_err(&shown, "a file without a name"));
        };
        if what == "dir" {
            // A flat box has no subdirectories; an empty one is harmless but useless.
            return Err(entry_err(
                &shown,
                "subdirectories are not accepted (a box is one flat directory)",
            ));
        }
        let size = entry.header().size().map_err(bad_archive)?;
        total = total.saturating_add(size);
        if total > max_total {
            return Err(entry_err(
                &shown,
                format!(
                    "the box unpacks to more than the {} MiB allowed",
                    max_total >> 20
                ),
            ));
        }
        let path = dest.join(&name);
        let out = {
            use crate::files::UnixMode as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .unix_mode(0o644)
                .open(&path)
        };
        let mut out = match out {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(entry_err(&shown, "the name appears twice"));
            }
            Err(e) => return Err(super::io("write", &path)(e)),
        };
        // Never more than the header said (a lying header cannot grow the file).
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)
            .map_err(super::io("write", &path))?;
        if copied != size {
            return Err(entry_err(&shown, "the archive ends inside this member"));
        }
    }
    Ok(())
}

/// A file name from box metadata (`disk`, `kernel`, `initrd`, `private_key`): one plain
/// name of a regular file in the box directory (not a link, not `..`, no `/`).
pub fn plain_file(dir: &Path, field: &str, value: &str) -> Result<String, BoxError> {
    let bad = |why: &str| BoxError::Metadata {
        field: field.to_string(),
        value: value.escape_debug().to_string(),
        why: why.to_string(),
    };
    let mut comps = Path::new(value).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(n)), None) if n.to_str() == Some(value) => {}
        _ => return Err(bad("must be a plain file name inside the box")),
    }
    match std::fs::symlink_metadata(dir.join(value)) {
        Ok(m) if m.file_type().is_file() => Ok(value.to_string()),
        Ok(_) => Err(bad("is not a regular file")),
        Err(_) => Err(bad("is not in the box")),
    }
}

/// What `qemu-img info` says about an image, reduced to what decides its acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
}

/// Why an image is refused, from `qemu-img info --output=json` (a pure function).
pub fn judge_image(json: &str, path: &Path) -> Result<ImageInfo, String> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("unreadable `qemu-img info` output: {e}"))?;
    let format = v
        .get("format")
        .and_then(|f| f.as_str())
        .ok_or("`qemu-img info` names no format")?
        .to_string();
    for key in ["backing-filename", "full-backing-filename", "backing-image"] {
        if let Some(b) = v.get(key) {
            return Err(format!(
                "it has a backing file ({}): QEMU would read that host file",
                b.as_str().map_or_else(|| b.to_string(), str::to_string)
            ));
        }
    }
    if v.get("encrypted").and_then(serde_json::Value::as_bool) == Some(true) {
        return Err("it is encrypted".into());
    }
    let spec = v.get("format-specific");
    let spec_type = spec.and_then(|s| s.get("type")).and_then(|t| t.as_str());
    let data = spec.and_then(|s| s.get("data"));
    if let Some(d) = data {
        if let Some(f) = d.get("data-file") {
            return Err(format!(
                "it has an external data file ({}): QEMU would read that host file",
                f.as_str().map_or_else(|| f.to_string(), str::to_string)
            ));
        }
        if d.get("encrypt").is_some() {
            return Err("it is encrypted".into());
        }
    }
    if format == "vmdk" || spec_type == Some("vmdk") {
        let create = data
            .and_then(|d| d.get("create-type"))
            .and_then(|c| c.as_str())
            .unwrap_or("unknown");
        if !matches!(create, "monolithicSparse" | "streamOptimized") {
            return Err(format!(
                "it is a VMDK of type {create}: only the self-contained monolithicSparse and streamOptimized are accepted (a descriptor can name any host file as an extent)"
            ));
        }
        let me = path.to_string_lossy();
        let extents = data
            .and_then(|d| d.get("extents"))
            .and_then(|e| e.as_array())
            .cloned()
            .unwrap_or_default();
        for e in extents {
            let f = e.get("filename").and_then(|f| f.as_str()).unwrap_or("");
            if f != me {
                return Err(format!(
                    "one of its extents is another file ({f}): QEMU would read that host file"
                ));
            }
        }
    }
    let virtual_size = v
        .get("virtual-size")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Ok(ImageInfo {
        format,
        virtual_size,
    })
}

/// Inspect `src` as `format` and convert it into labctl's own qcow2 at `dest`.
pub fn accept_image(
    qemu_img: &Path,
    src: &Path,
    format: &str,
    dest: &Path,
) -> Result<ImageInfo, BoxError> {
    let out = Cmd::new(qemu_img)
        .args(["info", "--output=json", "-f", format])
        .arg(src)
        .timeout(Duration::from_secs(60))
        .run()?;
    let info = judge_image(&out.stdout, src).map_err(|why| BoxError::Image {
        path: src.to_path_buf(),
        why,
    })?;
    if info.format != format {
        return Err(BoxError::Image {
            path: src.to_path_buf(),
            why: format!("it is {}, not {format}", info.format),
        });
    }
    Cmd::new(qemu_img)
        .args(["convert", "-q", "-f", format, "-O", "qcow2"])
        .arg(src)
        .arg(dest)
        .timeout(Duration::from_secs(3600))
        .run()?;
    Ok(info)
}

/// Without qemu-img: the VMDK must be one self-contained sparse file (`KDMV` header) whose
/// embedded descriptor says monolithicSparse or streamOptimized and names no other file as
/// an extent (a descriptor can name `/home/u/.ssh/id_ed25519`; VirtualBox would read it).
pub fn check_vmdk_self_contained(path: &Path) -> Result<(), String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut header = [0u8; 512];
    f.read_exact(&mut header)
        .map_err(|_| "it is not a sparse VMDK (too short)".to_string())?;
    if !header.starts_with(b"KDMV") {
        return Err(
            "it is a VMDK descriptor, not a self-contained sparse VMDK (its extents can be any host file)".into(),
        );
    }
    let u64_at = |i: usize| {
        header
            .get(i..i + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let (offset, size) = (u64_at(28), u64_at(36));
    if offset == 0 || size == 0 {
        // No embedded descriptor: streamOptimized keeps it elsewhere; a single extent.
        return Ok(());
    }
    let len = size.saturating_mul(512).min(1 << 20);
    f.seek(SeekFrom::Start(offset.saturating_mul(512)))
        .map_err(|e| format!("cannot read its descriptor: {e}"))?;
    let mut text = Vec::new();
    f.take(len)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read its descriptor: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let me = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    judge_vmdk_descriptor(&text, &me)
}

/// The embedded descriptor's verdict (a pure function).
pub fn judge_vmdk_descriptor(text: &str, me: &str) -> Result<(), String> {
    let mut create = None;
    for line in text.lines().map(|l| l.trim_matches(char::from(0)).trim()) {
        if let Some(v) = line.strip_prefix("createType") {
            create = Some(
                v.trim_start_matches([' ', '='])
                    .trim_matches('"')
                    .to_string(),
            );
        }
        if ["RW ", "RDONLY ", "NOACCESS "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            let file = line.split('"').nth(1).unwrap_or("");
            if file != me {
                return Err(format!(
                    "one of its extents is another file ({file}): it would be read from the host"
                ));
            }
        }
    }
    match create.as_deref() {
        Some("monolithicSparse" | "streamOptimized") => Ok(()),
        Some(other) => Err(format!(
            "it is a VMDK of type {other}: only the self-contained monolithicSparse and streamOptimized are accepted"
        )),
        None => Err("its descriptor names no type".into()),
    }
}

/// The image formats labctl accepts and how to tell them by their first bytes.
pub fn sniff_format(head: &[u8]) -> &'static str {
    if head.starts_with(b"QFI\xfb") {
        "qcow2"
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        "vmdk"
    } else {
        "raw"
    }
}

/// The first bytes of a file.
pub fn head(path: &Path) -> Result<Vec<u8>, BoxError> {
    let mut f = std::fs::File::open(path).map_err(super::io("read", path))?;
    let mut head = vec![0u8; 512];
    let n = f.read(&mut head).map_err(super::io("read", path))?;
    head.truncate(n);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        let ok = |s: &str| plain_entry_name(Path::new(s), s).expect(s);
        assert_eq!(ok("box.img").as_deref(), Some("box.img"));
        assert_eq!(ok("./box.img").as_deref(), Some("box.img"));
        assert_eq!(ok("./").as_deref(), None);
        for bad in ["../x", "/etc/passwd", "a/b", "./a/../b", "x/.."] {
            assert!(plain_entry_name(Path::new(bad), bad).is_err(), "{bad}");
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // makes a real sparse VMDK with qemu-img
    fn judges_vmdk_descriptors() {
        let ok =
            "# Disk DescriptorFile\ncreateType=\"monolithicSparse\"\nRW 2048 SPARSE \"d.vmdk\"\n";
        assert!(judge_vmdk_descriptor(ok, "d.vmdk").is_ok());
        let flat = "createType=\"monolithicFlat\"\nRW 2048 FLAT \"d-flat.vmdk\" 0\n";
        assert!(
            judge_vmdk_descriptor(flat, "d.vmdk")
                .unwrap_err()
                .contains("d-flat.vmdk")
        );
        let other = "createType=\"monolithicSparse\"\nRW 1 SPARSE \"/home/u/.ssh/id_ed25519\"\n";
        assert!(
            judge_vmdk_descriptor(other, "d.vmdk")
                .unwrap_err()
                .contains("id_ed25519")
        );
        assert!(judge_vmdk_descriptor("", "d.vmdk").is_err());
        // A real sparse VMDK from qemu-img, when it is installed.
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("d.vmdk");
        if std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk"])
            .arg(&p)
            .arg("1M")
            .status()
            .is_ok_and(|s| s.success())
        {
            check_vmdk_self_contained(&p).expect("qemu-img's sparse vmdk");
        }
        std::fs::write(&p, "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n").expect("w");
        assert!(check_vmdk_self_contained(&p).is_err());
    }

    #[test]
    fn judges_qemu_img_info() {
        let p = Path::new("/b/box.img");
        let ok = r#"{"format":"qcow2","virtual-size":1048576,"format-specific":{"type":"qcow2","data":{"compat":"1.1"}}}"#;
        assert_eq!(judge_image(ok, p).expect("ok").virtual_size, 1_048_576);
        let backing = r#"{"format":"qcow2","backing-filename":"/home/u/.ssh/id_ed25519"}"#;
        assert!(
            judge_image(backing, p)
                .unwrap_err()
                .contains("backing file (/home/u/.ssh/id_ed25519)")
        );
        let data = r#"{"format":"qcow2","format-specific":{"type":"qcow2","data":{"data-file":"/etc/shadow"}}}"#;
        assert!(
            judge_image(data, p)
                .unwrap_err()
                .contains("external data file (/etc/shadow)")
        );
        let enc = r#"{"format":"qcow2","encrypted":true}"#;
        assert!(judge_image(enc, p).unwrap_err().contains("encrypted"));
        let flat = r#"{"format":"vmdk","format-specific":{"type":"vmdk","data":{"create-type":"monolithicFlat","extents":[{"filename":"/home/u/.ssh/id_ed25519"}]}}}"#;
        assert!(judge_image(flat, p).unwrap_err().contains("monolithicFlat"));
        let sparse_other = r#"{"format":"vmdk","format-specific":{"type":"vmdk","data":{"create-type":"monolithicSparse","extents":[{"filename":"/etc/passwd"}]}}}"#;
        assert!(
            judge_image(sparse_other, p)
                .unwrap_err()
                .contains("/etc/passwd")
        );
        let sparse = r#"{"format":"vmdk","format-specific":{"type":"vmdk","data":{"create-type":"streamOptimized","extents":[{"filename":"/b/box.img"}]}}}"#;
        assert!(judge_image(sparse, p).is_ok());
        for junk in ["", "null", "[]", "{}", r#"{"format":7}"#] {
            assert!(judge_image(junk, p).is_err(), "{junk}");
        }
    }
}
