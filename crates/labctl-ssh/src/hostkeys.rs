//! Host key pinning: each guest's SSH host key is recorded in the lab's
//! `.labctl/known_hosts` (OpenSSH format, one line per node under a `HostKeyAlias`) on its
//! first contact, right after labctl started its VM, and verified on every later connection,
//! by labctl and by the `ssh` that `labctl ssh` and `ssh-config` set up.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How a connection treats the guest's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyCheck {
    /// The lab's known_hosts file.
    pub file: PathBuf,
    /// The node's name in that file (`HostKeyAlias`).
    pub alias: String,
    /// Record the key whatever was there (first contact with a fresh disk, or a rebuild).
    /// Otherwise a recorded key must match, and a missing one is recorded.
    pub replace: bool,
}

/// What happened to the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    Matched,
    Recorded,
}

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("the host key differs from the one recorded in {}", file.display())]
    Mismatch { file: PathBuf },
    #[error("the server sent no usable host key")]
    NoKey,
    #[error("cannot update {}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One process-wide lock: node threads pin their keys concurrently into one file.
static FILE_LOCK: Mutex<()> = Mutex::new(());

/// The known_hosts line for a key blob (`alias type base64`), or None for a malformed blob.
pub fn line(alias: &str, blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let kind = std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(format!("{alias} {kind} {}", base64(blob)))
}

/// Check (or record) `blob` as the host key of `chk.alias`.
pub fn pin(chk: &HostKeyCheck, blob: &[u8]) -> Result<Pinned, HostKeyError> {
    let new = line(&chk.alias, blob).ok_or(HostKeyError::NoKey)?;
    let _g = FILE_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let io = |source| HostKeyError::Io {
        file: chk.file.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&chk.file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let prefix = format!("{} ", chk.alias);
    let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    if !chk.replace && !mine.is_empty() {
        return if mine.contains(&new.as_str()) {
            Ok(Pinned::Matched)
        } else {
            Err(HostKeyError::Mismatch {
                file: chk.file.clone(),
            })
        };
    }
    let mut out: Vec<&str> = text.lines().filter(|l| !l.starts_with(&prefix)).collect();
    out.push(&new);
    write_private(&chk.file, &(out.join("\n") + "\n")).map_err(io)?;
    Ok(Pinned::Recorded)
}

/// Write a file with mode 0600, atomically. Windows has no modes: the file gets its folder's
/// access rights (the user's profile).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(".known_hosts.tmp-{}", std::process::id()));
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn first_key_is_recorded_then_verified_and_a_rebuild_replaces_it() {
        let d = tempfile::tempdir().expect("tmp");
        let file = d.path().join("known_hosts");
        let a = blob("ssh-ed25519", b"AAAA");
        let b = blob("ssh-ed25519", b"BBBB");
        let mut chk = HostKeyCheck {
            file: file.clone(),
            alias: "labctl-k8s-1234-m-k8s".into(),
            replace: false,
        };
        assert_eq!(pin(&chk, &a).expect("record"), Pinned::Recorded);
        assert_eq!(pin(&chk, &a).expect("verify"), Pinned::Matched);
        let other = HostKeyCheck {
            alias: "labctl-k8s-1234-w1-k8s".into(),
            ..chk.clone()
        };
        assert_eq!(pin(&other, &b).expect("other node"), Pinned::Recorded);
        // Another VM answering on the node's port: refused.
        assert!(matches!(pin(&chk, &b), Err(HostKeyError::Mismatch { .. })));
        chk.replace = true;
        assert_eq!(pin(&chk, &b).expect("rebuild"), Pinned::Recorded);
        chk.replace = false;
        assert_eq!(pin(&chk, &b).expect("verify"), Pinned::Matched);
        let text = std::fs::read_to_string(&file).expect("read");
        assert_eq!(text.lines().count(), 2, "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn malformed_blobs_are_refused_without_panic() {
        for b in [&b""[..], b"\0\0", b"\xff\xff\xff\xffssh", b"\0\0\0\x03a b"] {
            assert!(line("x", b).is_none());
        }
        assert_eq!(
            line("x", &blob("ssh-ed25519", b"k")).as_deref(),
            Some("x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5aw==")
        );
    }
}
