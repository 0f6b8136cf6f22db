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
    /// one of QEMU's own KVM failure lines in its error ([`kvm_failure`]). If so the verdict becomes TCG (with QEMU's line as the
    /// reason) for the rest of this run (not cached: the next run asks again), and the caller defines and starts the domain again.
    pub(super) fn fall_back_from_kvm(&self, requested: Accel, stderr: &str) -> bool {
        if requested != Accel::Auto {
            return false;
        }
        let Some(line) = kvm_failure(stderr) else {
            return false;
        };
        let mut g = match self.verdict.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !matches!(g.as_ref(), Some((Engine::Kvm, _))) {
            // Another node fell back first: this one was defined under KVM before that.
            return self.fell_back.load(std::sync::atomic::Ordering::Relaxed);
        }
        *g = Some((Engine::Tcg, format!("KVM unusable on the host: {line}")));
        self.fell_back
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(uri = %self.cfg.uri, reason = %line, "KVM failed; going on under TCG");
        true
    }
}

/// What QEMU itself says when it cannot run a guest under KVM (lower case). Phrases, not the
/// word `kvm`: virsh's own `Failed to start domain 'labctl-<lab>-…'` line and paths name the
/// lab, and a lab may be called `kvm-intro`.
const KVM_FAILURES: &[&str] = &[
    "failed to set msr",
    "kvm_buf_set_msrs",
    "kvm run failed",
    "could not access kvm kernel module",
    "failed to initialize kvm",
    "kvm: entry failed",
    "kvm_init_vcpu failed",
];

/// QEMU's line saying it cannot run under KVM (`failed to set MSR 0x10a to 0x69`), without
/// libvirt's `error: …` prefixes and QEMU's timestamp; `None` when the start failed for
/// another reason (a port taken, a missing disk), whatever the domain is called.
fn kvm_failure(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .map(str::trim)
        // virsh's summary line, which names the domain (and so the lab).
        .filter(|l| !l.starts_with("error: Failed to start domain"))
        .find(|l| {
            let low = l.to_ascii_lowercase();
            KVM_FAILURES.iter().any(|p| low.contains(p))
        })?;
    // The phrase QEMU wrote, after libvirt's prefixes and QEMU's `qemu-system-…: ` (the
    // last one, so that `error: ` after it goes too).
    let own = line
        .rsplit_once("qemu-system-x86_64: ")
        .map_or(line, |(_, r)| r);
    let own = own.trim_start_matches("error: ");
    let own = own
        .rsplit_once("connecting to monitor: ")
        .map_or(own, |(_, r)| r);
    Some(own.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// virsh 9.0's stderr when QEMU aborts under a broken nested KVM (seen on this machine).
    const BROKEN_KVM: &str = "error: Failed to start domain 'labctl-two-ann-1b057d08-w1-k8s'
error: internal error: qemu unexpectedly closed the monitor: 2026-12-02T07:04:34.162767Z qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69
qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.
";

    /// QEMU 7.2 started by libvirt 9.0 when /dev/kvm cannot be opened (kvm_init's message).
    const NO_KVM_MODULE: &str = "error: Failed to start domain 'labctl-web-0f3c2a1b-m'
error: internal error: process exited while connecting to monitor: Could not access KVM kernel module: Permission denied
2026-12-02T07:11:02.118034Z qemu-system-x86_64: failed to initialize kvm: Permission denied
";

    /// A lab named `kvm-intro` whose forwarded SSH port is taken on the host: QEMU's hostfwd
    /// message (qemu/net/slirp.c), under virsh's line naming the domain.
    const KVM_INTRO_PORT_TAKEN: &str = "error: Failed to start domain 'labctl-kvm-intro-9e1d77aa-m'
error: internal error: qemu unexpectedly closed the monitor: 2026-12-02T07:20:41.551200Z qemu-system-x86_64: -netdev user,id=labnat,restrict=on,hostfwd=tcp:127.0.0.1:60010-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:60010-:22'
";

    /// The same lab failing because its disk is missing (libvirt's own check, before QEMU).
    const KVM_INTRO_NO_DISK: &str = "error: Failed to start domain 'labctl-kvm-intro-9e1d77aa-m'
error: Cannot access storage file '/var/lib/libvirt/labctl/labctl-kvm-intro-9e1d77aa-m.qcow2': No such file or directory
";

    #[test]
    fn qemus_kvm_failures_are_recognised_and_quoted() {
        assert_eq!(
            kvm_failure(BROKEN_KVM).as_deref(),
            Some("failed to set MSR 0x10a to 0x69")
        );
        assert_eq!(
            kvm_failure(NO_KVM_MODULE).as_deref(),
            Some("Could not access KVM kernel module: Permission denied")
        );
        assert_eq!(
            kvm_failure("qemu-system-x86_64: kvm run failed Bad address\n").as_deref(),
            Some("kvm run failed Bad address")
        );
    }

    #[test]
    fn a_lab_named_kvm_that_fails_for_another_reason_does_not_fall_back() {
        assert_eq!(kvm_failure(KVM_INTRO_PORT_TAKEN), None);
        assert_eq!(kvm_failure(KVM_INTRO_NO_DISK), None);
        // The port message is still found by the caller's PortInUse check.
        assert_eq!(
            crate::qemu::port_from_hostfwd_error(KVM_INTRO_PORT_TAKEN),
            Some(60010)
        );
    }
}
