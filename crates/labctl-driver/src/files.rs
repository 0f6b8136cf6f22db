//! Small file helpers shared by the drivers, the box store and the runner: atomic writes
//! whose mode is set when the file is created, the sha256 of a file, and the tail of a
//! console log with terminal control sequences removed.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Write a file atomically (a temporary file in the same directory, fsync, rename), mode 0644.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// Write a file atomically with `mode` from its creation on (secrets are never readable by
/// others, not even for an instant).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = b.tempfile_in(dir)?;
    f.write_all(bytes)?;
    f.as_file().sync_all()?;
    f.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The Unix mode of a file opened with [`std::fs::OpenOptions`], set at creation. On Windows a
/// new file gets its folder's access rights instead (no mode), so this does nothing there.
pub trait UnixMode {
    fn unix_mode(&mut self, mode: u32) -> &mut Self;
}

impl UnixMode for std::fs::OpenOptions {
    #[cfg(unix)]
    fn unix_mode(&mut self, mode: u32) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, mode)
    }

    #[cfg(not(unix))]
    fn unix_mode(&mut self, _mode: u32) -> &mut Self {
        self
    }
}

impl UnixMode for std::fs::DirBuilder {
    #[cfg(unix)]
    fn unix_mode(&mut self, mode: u32) -> &mut Self {
        std::os::unix::fs::DirBuilderExt::mode(self, mode)
    }

    #[cfg(not(unix))]
    fn unix_mode(&mut self, _mode: u32) -> &mut Self {
        self
    }
}

/// `std::fs::canonicalize`, except that on Windows the verbatim prefix it adds (`\\?\C:\…`) is
/// dropped when the plain path names the same file ([`plain_windows_path`]): users see these
/// paths, and OpenSSH and VBoxManage do not take verbatim ones. The same as
/// `std::fs::canonicalize` on Unix.
pub fn canonicalize(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let canon = std::fs::canonicalize(path)?;
    #[cfg(windows)]
    if let Some(plain) = plain_windows_path(&canon.to_string_lossy()) {
        return Ok(std::path::PathBuf::from(plain));
    }
    Ok(canon)
}

/// The plain form of a Windows verbatim path, when Windows reads the plain form as the same
/// path: `\\?\C:\dir\file` → `C:\dir\file`, `\\?\UNC\server\share\dir` →
/// `\\server\share\dir`. None when `verbatim` is not such a path or its plain form would mean
/// something else: 260 characters or more, a `.` or `..` component, a `/`, a component ending in
/// `.` or a space, or a reserved device name (`CON`, `NUL`, `COM1`, … also with an extension).
/// Pure text, so that it is tested on every host (the rules `dunce` applies).
pub fn plain_windows_path(verbatim: &str) -> Option<String> {
    let rest = verbatim.strip_prefix("\\\\?\\")?;
    let (plain, parts) = if let Some(unc) = rest.strip_prefix("UNC\\") {
        (format!("\\\\{unc}"), unc)
    } else {
        let b = rest.as_bytes();
        let drive = b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\';
        if !drive {
            return None;
        }
        (rest.to_string(), &rest[3..])
    };
    let reserved = |c: &str| {
        let stem = c
            .split('.')
            .next()
            .unwrap_or(c)
            .trim_end()
            .to_ascii_uppercase();
        matches!(
            stem.as_str(),
            "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
        ) || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit()
            && stem.as_bytes()[3] != b'0')
    };
    let bad = plain.len() >= 260
        || plain.contains('/')
        || parts
            .split('\\')
            .any(|c| c == "." || c == ".." || c.ends_with('.') || c.ends_with(' ') || reserved(c));
    (!bad).then_some(plain)
}

/// `chmod`: set a file's Unix mode. Nothing on Windows (access rights, not modes; a file gets
/// its folder's).
pub fn set_unix_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// sha256 (lowercase hex) and size of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((format!("{:x}", h.finalize()), size))
}

/// The last `lines` non-empty lines of a console log, control characters and ANSI escape
/// sequences removed. Reads at most the last 256 KiB (console logs grow without bound).
pub fn tail_file(path: &Path, lines: usize) -> String {
    const MAX: u64 = 256 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    if len > MAX {
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(len - MAX)).is_err() {
            return String::new();
        }
    }
    let mut bytes = Vec::new();
    if f.take(MAX).read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let clean: Vec<String> = text
        .lines()
        .map(|l| {
            strip_ansi(l)
                .chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect::<String>()
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    clean[clean.len().saturating_sub(lines)..].join("\n")
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_strips_control_and_ansi() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("serial.log");
        std::fs::write(&f, "a\n\x1b[0;32mOK\x1b[0m b\r\n\nc\n").expect("write");
        assert_eq!(tail_file(&f, 2), "OK b\nc");
        assert_eq!(tail_file(&dir.path().join("missing"), 2), "");
    }

    #[test]
    fn tail_reads_only_the_end_of_a_big_log() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("serial.log");
        let mut text = "x".repeat(600 * 1024);
        text.push_str("\nlast line\n");
        std::fs::write(&f, text).expect("write");
        assert!(tail_file(&f, 1).ends_with("last line"));
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_replaces_with_the_mode_from_creation() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("values.json");
        write_atomic_mode(&p, b"1", 0o600).expect("write");
        write_atomic_mode(&p, b"2", 0o600).expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"2");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn windows_verbatim_paths_become_plain_when_they_mean_the_same() {
        let plain = |s: &str| plain_windows_path(s);
        assert_eq!(
            plain("\\\\?\\C:\\Users\\st\\lab").as_deref(),
            Some("C:\\Users\\st\\lab")
        );
        assert_eq!(plain("\\\\?\\d:\\").as_deref(), Some("d:\\"));
        assert_eq!(
            plain("\\\\?\\UNC\\srv\\share\\lab").as_deref(),
            Some("\\\\srv\\share\\lab")
        );
        // Not verbatim, or not a drive or UNC path.
        assert_eq!(plain("C:\\Users"), None);
        assert_eq!(plain("/home/st/lab"), None);
        assert_eq!(plain("\\\\?\\Volume{0b1c}\\x"), None);
        assert_eq!(plain("\\\\?\\C:"), None);
        // The plain form would name something else.
        for s in [
            "\\\\?\\C:\\lab\\NUL",
            "\\\\?\\C:\\lab\\com1.txt",
            "\\\\?\\C:\\lab\\aux .log",
            "\\\\?\\C:\\lab.",
            "\\\\?\\C:\\lab \\x",
            "\\\\?\\C:\\a\\..\\b",
            "\\\\?\\C:\\a/b",
        ] {
            assert_eq!(plain(s), None, "{s}");
        }
        assert_eq!(
            plain("\\\\?\\C:\\lab\\com0\\lpt").as_deref(),
            Some("C:\\lab\\com0\\lpt")
        );
        let long = format!("\\\\?\\C:\\{}", "a".repeat(260));
        assert_eq!(plain(&long), None);
    }

    #[cfg(unix)]
    #[test]
    fn canonicalize_is_std_on_unix() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("x");
        std::fs::create_dir(&p).expect("mkdir");
        assert_eq!(
            canonicalize(&p.join("..").join("x")).expect("canon"),
            std::fs::canonicalize(&p).expect("std")
        );
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").expect("write");
        let (h, n) = sha256_file(&p).expect("hash");
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
