//! KVM or TCG for the libvirt driver's domains.

use std::path::PathBuf;
use std::time::Duration;

use super::{LibvirtDriver, is_local};
use crate::exec::find_program;
use crate::qemu::accel::{self, Engine, ProbeImage, ProbeSpec, Verdict};
use crate::{Accel, BootImage};

impl LibvirtDriver {
    /// KVM or TCG for a machine, by the QEMU driver's rule: `kvm`/`tcg` as asked; `auto` is
    /// the QEMU driver's probe for a local daemon (same cache), and for a remote host
    /// whether its libvirt offers domain type `kvm` (`virsh domcapabilities --virttype kvm`).
    pub(super) fn engine(&self, requested: Accel, boot: &BootImage) -> (Engine, String) {
        match requested {
            Accel::Kvm => return (Engine::Kvm, "asked for (accel = kvm)".into()),
            Accel::Tcg => return (Engine::Tcg, "asked for (accel = tcg)".into()),
            Accel::Auto => {}
        }
        let mut g = match self.verdict.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(v) = g.as_ref() {
            return v.clone();
        }
        let v = if is_local(&self.cfg.uri) {
            self.local_verdict(boot)
        } else {
            match self.run(self.virsh().args(["domcapabilities", "--virttype", "kvm"])) {
                Ok(_) => (Engine::Kvm, "the host's libvirt offers KVM".into()),
                Err(e) => (
                    Engine::Tcg,
                    format!("the host's libvirt offers no KVM ({e})"),
                ),
            }
        };
        *g = Some(v.clone());
        v
    }

    pub(super) fn local_verdict(&self, boot: &BootImage) -> (Engine, String) {
        let qemu = match find_program("qemu-system-x86_64", "LABCTL_QEMU_SYSTEM", "") {
            Ok(q) => q,
            Err(_) => {
                return (
                    Engine::Tcg,
                    "no qemu-system-x86_64 to probe KVM with".into(),
                );
            }
        };
        let kvm_device = std::env::var_os("LABCTL_KVM_DEVICE")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/dev/kvm"), PathBuf::from);
        let spec = ProbeSpec {
            qemu: &qemu,
            kvm_device: &kvm_device,
            image: boot
                .kernel
                .clone()
                .map_or(ProbeImage::BootSector, ProbeImage::Kernel),
            kvm_argv: crate::qemu::args::accel_args(Engine::Kvm, false),
            timeout: Duration::from_secs(10),
        };
        let Verdict { accel, reason, .. } = accel::detect(&spec, &self.cfg.cache_dir);
        (accel, reason)
    }

    /// After a domain failed to start: whether it failed under KVM that `auto` chose, with
    /// QEMU naming KVM in its error. If so the verdict becomes TCG (with QEMU's line as the
    /// reason) for the rest of this run (not cached: the next run asks again), and the caller defines and starts the domain again.
    pub(super) fn fall_back_from_kvm(&self, requested: Accel, stderr: &str) -> bool {
        if requested != Accel::Auto || !stderr.to_ascii_lowercase().contains("kvm") {
            return false;
        }
        let mut g = match self.verdict.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !matches!(g.as_ref(), Some((Engine::Kvm, _))) {
            // Another node fell back first: this one was defined under KVM before that.
            return self.fell_back.load(std::sync::atomic::Ordering::Relaxed);
        }
        let line = kvm_error_line(stderr);
        *g = Some((Engine::Tcg, format!("KVM unusable on the host: {line}")));
        self.fell_back
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(uri = %self.cfg.uri, reason = %line, "KVM failed; going on under TCG");
        true
    }
}

/// QEMU's line that names KVM (`failed to set MSR 0x10a`, `kvm_buf_set_msrs: Assertion …`),
/// without libvirt's `error: …` prefixes and QEMU's timestamp.
fn kvm_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .find(|l| l.contains("qemu-system") && l.to_ascii_lowercase().contains("error"))
        .or_else(|| {
            lines
                .iter()
                .find(|l| l.to_ascii_lowercase().contains("kvm"))
        })
        .copied()
        .unwrap_or_default();
    let pick = pick
        .rsplit_once("qemu-system-x86_64: ")
        .map_or(pick, |(_, r)| r);
    pick.trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// virsh 9.0's stderr when QEMU aborts under a broken nested KVM (seen on this machine).
    const BROKEN_KVM: &str = "error: Failed to start domain 'labctl-two-ann-1b057d08-w1-k8s'
error: internal error: qemu unexpectedly closed the monitor: 2026-12-02T07:04:34.162767Z qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69
qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.
";

    #[test]
    fn the_kvm_line_is_qemus_own() {
        assert_eq!(
            kvm_error_line(BROKEN_KVM),
            "failed to set MSR 0x10a to 0x69"
        );
        assert_eq!(
            kvm_error_line("error: internal error: process exited while connecting to monitor: Could not access KVM kernel module"),
            "error: internal error: process exited while connecting to monitor: Could not access KVM kernel module"
                .trim_start_matches("error: ")
        );
    }
}
