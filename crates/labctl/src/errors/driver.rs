//! Advice for the drivers' typed errors (VirtualBox, libvirt): the drivers say what went
//! wrong, the binary words what the user can do about it.

use labctl_driver::exec::ToolError;
use labctl_driver::libvirt::LibvirtError;
use labctl_driver::vbox::VBoxError;

/// What the user can do about a VirtualBox error.
pub fn vbox_hint(e: &VBoxError) -> Option<String> {
    match e {
        VBoxError::NotInstalled { .. } => Some(labctl_driver::vbox::NOT_INSTALLED_HINT.into()),
        VBoxError::Broken { .. } => Some(
            "reinstall VirtualBox; on Linux, `sudo /sbin/vboxconfig` rebuilds its kernel modules"
                .into(),
        ),
        VBoxError::NoHwVirt { .. } => Some(
            "enable virtualization (Intel VT-x / AMD-V, sometimes called SVM) in the BIOS/UEFI setup; on Windows also turn Hyper-V off (`bcdedit /set hypervisorlaunchtype off`, then reboot); inside a VM, enable nested virtualization on the outer hypervisor"
                .into(),
        ),
        VBoxError::KernelDriver { .. } => Some(
            "on Linux run `sudo /sbin/vboxconfig` (it needs the kernel headers; with Secure Boot the modules must be signed); on macOS allow Oracle's system extension under System Settings → Privacy & Security, then reboot"
                .into(),
        ),
        VBoxError::ForeignVm { name } => Some(format!(
            "rename or remove that VM in VirtualBox (`VBoxManage unregistervm {name}`), or give the lab another name"
        )),
        VBoxError::NoOvf { .. } => Some(
            "add a box made for VirtualBox (`labctl box add` of a virtualbox .box), or use the qemu provider"
                .into(),
        ),
        VBoxError::UnsupportedVersion { .. } => Some(
            "install the current VirtualBox 7.1 (or 7.0.x after 7.0.0, or 6.1.50) from https://www.virtualbox.org/wiki/Downloads, or use the qemu provider"
                .into(),
        ),
        VBoxError::ArchMismatch { .. } => Some(
            "use an arm64 box made for VirtualBox, or the qemu provider (QEMU can emulate x86, slowly)"
                .into(),
        ),
        VBoxError::BadSnapshotName { .. } => {
            Some("pick a name of letters, digits, `-`, `_`, `.` and spaces".into())
        }
        VBoxError::NetworkNotUp { .. } => {
            Some("`labctl up` sets the lab's networks up before starting machines".into())
        }
        VBoxError::HostOnlyRange(e) => Some(format!(
            "`echo '{}' | sudo tee -a /etc/vbox/networks.conf`; see https://www.virtualbox.org/manual/ch06.html#network_hostonly",
            e.conf_line()
        )),
        VBoxError::Tool(ToolError::Timeout { .. }) => Some(
            "VirtualBox did not answer; check for a stuck VBoxSVC process or a dialog in the VirtualBox window"
                .into(),
        ),
        _ => None,
    }
}

/// What the user can do about a libvirt error.
pub fn libvirt_hint(e: &LibvirtError) -> Option<String> {
    match e {
        LibvirtError::NotInstalled { .. } => Some(labctl_driver::libvirt::NOT_INSTALLED_HINT.into()),
        LibvirtError::Connect { uri, .. } if uri.contains("+ssh://") => Some(format!(
            "check `virsh -c {uri} version` works from this shell (key-based SSH login, libvirtd running on the host, your user in the `libvirt` group there); docs/libvirt.md"
        )),
        LibvirtError::Connect { uri, .. } => Some(format!(
            "start libvirt (`systemctl start libvirtd`, or `virtqemud` on split-daemon hosts) and check `virsh -c {uri} version`; for qemu:///system without root, add your user to the `libvirt` group; or set `uri` in lab.toml / `--uri`"
        )),
        LibvirtError::ForeignDomain { name } => Some(format!(
            "remove or rename that domain (`virsh undefine {name}`), or give the lab another name"
        )),
        LibvirtError::Tool(ToolError::Timeout { .. }) => Some(
            "libvirt did not answer in time; check the daemon (`virsh version`) and, for a remote URI, the SSH connection"
                .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_hints_differ_for_local_and_ssh_uris() {
        let local = LibvirtError::Connect {
            uri: "qemu:///system".into(),
            detail: "x".into(),
        };
        assert!(
            libvirt_hint(&local)
                .unwrap_or_default()
                .contains("libvirt` group")
        );
        let remote = LibvirtError::Connect {
            uri: "qemu+ssh://lab@h1/system".into(),
            detail: "x".into(),
        };
        assert!(libvirt_hint(&remote).unwrap_or_default().contains("SSH"));
    }

    #[test]
    fn a_libvirt_timeout_points_at_the_daemon_and_a_vbox_one_at_vboxsvc() {
        let t = || ToolError::Timeout {
            command: "x".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert!(
            libvirt_hint(&LibvirtError::Tool(t()))
                .unwrap_or_default()
                .contains("virsh version")
        );
        assert!(
            vbox_hint(&VBoxError::Tool(t()))
                .unwrap_or_default()
                .contains("VBoxSVC")
        );
    }
}
