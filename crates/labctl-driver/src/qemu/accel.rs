//! Is KVM really usable? `/dev/kvm` can open and QMP can report KVM enabled while guests
//! hang (nested virtualization). The probe boots a 512-byte guest that writes a marker to
//! its serial port; if the marker does not appear within a few seconds, the answer is TCG.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Accel;
use crate::exec::Cmd;

const MARKER: &str = "LABCTL-KVM-OK";

/// The probe's answer, cached per host kernel and QEMU binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub accel: Accel,
    pub reason: String,
    pub key: String,
}

/// A real-mode boot sector: print MARKER on COM1, then halt.
pub fn boot_sector() -> Vec<u8> {
    let mut code = vec![0xBA, 0xF8, 0x03]; // mov dx, 0x3f8
    for b in MARKER.bytes().chain(*b"\r\n") {
        code.extend_from_slice(&[0xB0, b, 0xEE]); // mov al, b ; out dx, al
    }
    code.extend_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]); // cli ; hlt ; jmp back to hlt
    code.resize(510, 0);
    code.extend_from_slice(&[0x55, 0xAA]);
    code
}

fn cache_key(qemu: &Path) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mtime = std::fs::metadata(qemu)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    format!("{}|{}|{mtime}", kernel.trim(), qemu.display())
}

/// Decide between KVM and TCG, using the cached verdict when the host has not changed.
pub fn detect(qemu: &Path, cache_dir: &Path, timeout: Duration) -> Verdict {
    let key = cache_key(qemu);
    let cache = cache_dir.join("accel.json");
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Ok(v) = serde_json::from_str::<Verdict>(&text)
        && v.key == key
    {
        return v;
    }
    let (accel, reason) = probe(qemu, timeout);
    let v = Verdict { accel, reason, key };
    let _ = std::fs::create_dir_all(cache_dir);
    if let Ok(text) = serde_json::to_string(&v) {
        let _ = crate::boxes::write_atomic(&cache, text.as_bytes());
    }
    v
}

fn probe(qemu: &Path, timeout: Duration) -> (Accel, String) {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return (Accel::Tcg, "/dev/kvm is missing or not accessible".into());
    }
    let dir = match tempdir() {
        Ok(d) => d,
        Err(e) => return (Accel::Tcg, format!("cannot create a probe directory: {e}")),
    };
    let img = dir.join("probe.img");
    let serial = dir.join("serial.txt");
    if let Err(e) = std::fs::write(&img, boot_sector()) {
        return (Accel::Tcg, format!("cannot write probe image: {e}"));
    }
    let cmd = Cmd::new(qemu).args([
        "-accel".to_string(),
        "kvm".into(),
        "-M".into(),
        "pc".into(),
        "-m".into(),
        "16".into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", serial.display()),
        "-drive".into(),
        format!("file={},format=raw,if=ide", img.display()),
    ]);
    let started = Instant::now();
    let result = match cmd.spawn_child() {
        Err(e) => (Accel::Tcg, format!("probe did not start: {e}")),
        Ok(mut child) => {
            let mut verdict = None;
            while started.elapsed() < timeout {
                if std::fs::read_to_string(&serial).is_ok_and(|s| s.contains(MARKER)) {
                    verdict = Some((
                        Accel::Kvm,
                        format!("probe guest ran in {} ms", started.elapsed().as_millis()),
                    ));
                    break;
                }
                if let Ok(Some(st)) = child.try_wait() {
                    verdict = Some((
                        Accel::Tcg,
                        format!("probe exited early ({})", crate::exec::describe_status(st)),
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            verdict.unwrap_or_else(|| {
                (
                    Accel::Tcg,
                    format!(
                        "KVM guest printed nothing within {} s (nested KVM hangs)",
                        timeout.as_secs()
                    ),
                )
            })
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    tracing::info!(accel = ?result.0, reason = %result.1, "acceleration probe");
    result
}

fn tempdir() -> std::io::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("labctl-probe-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_is_bootable_and_prints_marker() {
        let s = boot_sector();
        assert_eq!(s.len(), 512);
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        // every marker byte is loaded into AL and written to the port
        for b in MARKER.bytes() {
            assert!(s.windows(3).any(|w| w == [0xB0, b, 0xEE]));
        }
    }
}
