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
}
