//! The qemu-system command line for a machine: a pure function, snapshot-tested.

use std::path::Path;

use super::accel::Engine;
use crate::MachineConfig;

/// Paths of a machine's runtime files.
#[derive(Debug, Clone)]
pub struct MachinePaths {
    pub disk: std::path::PathBuf,
    pub pidfile: std::path::PathBuf,
    pub serial: std::path::PathBuf,
    pub qmp: std::path::PathBuf,
}

impl MachinePaths {
    pub fn of(m: &MachineConfig) -> MachinePaths {
        MachinePaths {
            disk: m.dir.join("disk.qcow2"),
            pidfile: m.dir.join("qemu.pid"),
            serial: m.dir.join("serial.log"),
            qmp: m.run_dir.join(format!("{}.qmp", short(&m.hostname))),
        }
    }
}

/// Unix sockets live in a short directory; keep their names short too.
fn short(name: &str) -> String {
    name.chars().take(24).collect()
}

/// The per-network socket directory of a lab.
pub fn net_dir(run_dir: &Path, network: &str) -> std::path::PathBuf {
    run_dir.join(format!("net-{network}"))
}

/// The switch's socket for a network.
pub fn hub_socket(run_dir: &Path, network: &str) -> std::path::PathBuf {
    net_dir(run_dir, network).join("hub.sock")
}

/// A machine's port on a network.
pub fn port_socket(run_dir: &Path, network: &str, hostname: &str) -> std::path::PathBuf {
    net_dir(run_dir, network).join(format!("{}.dgram", short(hostname)))
}

/// The accelerator and CPU model arguments. KVM: the host's CPU (with VMX/SVM when nested
/// virtualization is asked for). TCG: `max`, every feature TCG emulates, so x86-64-v2 and
/// more (RHEL 9 user space and current container images need x86-64-v2; QEMU's default
/// `qemu64` is not). The KVM probe uses exactly these arguments.
pub fn accel_args(engine: Engine, nested_virt: bool) -> Vec<String> {
    let v: &[&str] = match (engine, nested_virt) {
        (Engine::Kvm, false) => &["-accel", "kvm", "-cpu", "host"],
        (Engine::Kvm, true) => &["-accel", "kvm", "-cpu", "host,+vmx,+svm"],
        (Engine::Tcg, _) => &["-accel", "tcg", "-cpu", "max"],
    };
    v.iter().map(|s| (*s).to_string()).collect()
}

/// The kernel command line of a direct-boot machine: the box's, then the machine id, the
/// hostname and `labctl.egress=0|1` (the libvirt driver uses the same).
pub fn kernel_cmdline(m: &MachineConfig) -> String {
    let base = m
        .boot
        .cmdline
        .clone()
        .unwrap_or_else(|| "root=/dev/vda rw console=ttyS0".into());
    format!(
        "{base} systemd.machine_id={} systemd.hostname={} labctl.egress={}",
        m.machine_id,
        m.hostname,
        u8::from(m.egress)
    )
}

/// NIC 1's user-mode network: `restrict=on` when egress is off, every forward bound to
/// 127.0.0.1 (the libvirt driver passes the same netdev through).
pub fn user_netdev(m: &MachineConfig, id: &str) -> String {
    let mut user = format!("user,id={id}");
    if !m.egress {
        user.push_str(",restrict=on");
    }
    user.push_str(&format!(
        ",hostfwd=tcp:127.0.0.1:{}-:{}",
        m.ssh.host, m.ssh.guest
    ));
    for f in &m.forwards {
        user.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
    }
    user
}

/// Build the argv (without the program) for `qemu-system-x86_64`.
pub fn qemu_args(m: &MachineConfig, engine: Engine, extra: &[String]) -> Vec<String> {
    let p = MachinePaths::of(m);
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_string()));
    push(&["-name", &format!("{},process=labctl-{}", m.hostname, m.id)]);
    let accel = accel_args(engine, m.nested_virt);
    push(&accel.iter().map(String::as_str).collect::<Vec<_>>());
    push(&["-smp", &m.cpus.to_string(), "-m", &m.memory_mb.to_string()]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-daemonize", "-pidfile", &p.pidfile.to_string_lossy()]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", p.qmp.display()),
    ]);
    push(&["-serial", &format!("file:{}", p.serial.display())]);
    push(&[
        "-drive",
        &format!(
            "file={},if=virtio,format=qcow2,discard=unmap",
            p.disk.display()
        ),
    ]);
    push(&["-device", "virtio-rng-pci"]);
    if let Some(kernel) = &m.boot.kernel {
        push(&["-kernel", &kernel.to_string_lossy()]);
        if let Some(initrd) = &m.boot.initrd {
            push(&["-initrd", &initrd.to_string_lossy()]);
        }
        push(&["-append", &kernel_cmdline(m)]);
    }
    push(&[
        "-netdev",
        &user_netdev(m, "nat"),
        "-device",
        &format!("virtio-net-pci,netdev=nat,mac={}", m.nat_mac),
    ]);
    for (i, nic) in m.private_nics.iter().enumerate() {
        let id = format!("lan{i}");
        let local = port_socket(&m.run_dir, &nic.network, &m.hostname);
        let hub = hub_socket(&m.run_dir, &nic.network);
        push(&[
            "-netdev",
            &format!(
                "dgram,id={id},local.type=unix,local.path={},remote.type=unix,remote.path={}",
                local.display(),
                hub.display()
            ),
            "-device",
            &format!("virtio-net-pci,netdev={id},mac={}", nic.mac),
        ]);
    }
    a.extend(extra.iter().cloned());
    a
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{BootImage, PortForward, PrivateNic};

    pub(crate) fn machine(egress: bool) -> MachineConfig {
        MachineConfig {
            id: "k8s-1a2b3c4d-m-k8s".into(),
            hostname: "m-k8s".into(),
            dir: "/lab/.labctl/machines/m-k8s".into(),
            run_dir: "/run/user/0/labctl/1a2b3c4d".into(),
            cpus: 2,
            memory_mb: 2048,
            boot: BootImage {
                disk: "/boxes/debian/box.img".into(),
                kernel: Some("/boxes/debian/vmlinuz".into()),
                initrd: Some("/boxes/debian/initrd.img".into()),
                cmdline: Some("root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet".into()),
                ovf: None,
            },
            nat_mac: "52:54:00:aa:00:01".into(),
            private_nics: vec![PrivateNic {
                network: "private".into(),
                mac: "52:54:00:bb:00:01".into(),
            }],
            ssh: PortForward {
                host: 60010,
                guest: 22,
            },
            forwards: vec![PortForward {
                host: 30000,
                guest: 30000,
            }],
            egress,
            accel: crate::Accel::Tcg,
            nested_virt: false,
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            group: None,
        }
    }

    #[test]
    fn argv_for_a_direct_boot_machine() {
        insta::assert_snapshot!(qemu_args(&machine(false), Engine::Tcg, &[]).join("\n"));
    }

    #[test]
    fn tcg_gets_an_x86_64_v2_cpu_and_kvm_the_host_cpu() {
        let tcg = qemu_args(&machine(false), Engine::Tcg, &[]).join(" ");
        assert!(tcg.contains("-accel tcg -cpu max"), "{tcg}");
        let mut nested = machine(false);
        nested.nested_virt = true;
        let kvm = qemu_args(&nested, Engine::Kvm, &[]).join(" ");
        assert!(kvm.contains("-accel kvm -cpu host,+vmx,+svm"), "{kvm}");
        assert_eq!(
            accel_args(Engine::Kvm, false),
            ["-accel", "kvm", "-cpu", "host"]
        );
    }

    #[test]
    fn egress_off_means_restrict_on_and_forwards_bind_loopback() {
        let off = qemu_args(&machine(false), Engine::Tcg, &[]).join(" ");
        assert!(off.contains("user,id=nat,restrict=on,"));
        let on = qemu_args(&machine(true), Engine::Tcg, &[]).join(" ");
        assert!(!on.contains("restrict=on"));
        for a in [off, on] {
            assert_eq!(
                a.matches("hostfwd=tcp:").count(),
                a.matches("hostfwd=tcp:127.0.0.1:").count()
            );
        }
    }
}
