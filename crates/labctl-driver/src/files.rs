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
