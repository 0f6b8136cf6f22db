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

/// The first guest address of the host services: service `i` is `10.0.2.(100+i)`, port 80.
pub const GUEST_SERVICE_BASE: [u8; 4] = [10, 0, 2, 100];

/// Where a guest reaches `guest_services[index]`: `10.0.2.(100+index):80` on the NAT
/// network (slirp's `guestfwd`), `None` past the last address of the /24.
pub fn guest_service_endpoint(index: usize) -> Option<crate::GuestEndpoint> {
    let last = u8::try_from(index)
        .ok()
        .and_then(|i| GUEST_SERVICE_BASE[3].checked_add(i))
        .filter(|l| *l < 255)?;
    Some(crate::GuestEndpoint {
        addr: std::net::Ipv4Addr::new(
            GUEST_SERVICE_BASE[0],
            GUEST_SERVICE_BASE[1],
            GUEST_SERVICE_BASE[2],
            last,
        ),
        port: 80,
    })
}

/// A word for the command that slirp runs for a `guestfwd=…-cmd:` rule: single-quoted for
/// its shell-style parsing.
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@+".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The `guestfwd` options of the NAT netdev: one per host service, each guest connection to
/// `10.0.2.(100+i):80` runs `relay… <port>` (labctl's `__relay`: stdin and stdout to
/// `127.0.0.1:<port>`). slirp's other form, `…-tcp:127.0.0.1:PORT`, opens ONE connection
/// when QEMU starts and carries every guest connection over it: a second HTTP request after
/// the server closed the first connection gets nothing (tried on QEMU 7.2). Commas are doubled
/// (QEMU's option syntax).
pub fn guestfwd_options(m: &MachineConfig, relay: &[std::ffi::OsString]) -> String {
    let mut out = String::new();
    if relay.is_empty() {
        return out;
    }
    for (i, svc) in m.guest_services.iter().enumerate() {
        let Some(ep) = guest_service_endpoint(i) else {
            break;
        };
        let mut cmd: Vec<String> = relay
            .iter()
            .map(|w| shell_word(&w.to_string_lossy()))
            .collect();
        cmd.push(svc.host_port.to_string());
        out.push_str(&format!(
            ",guestfwd=tcp:{}:{}-cmd:{}",
            ep.addr,
            ep.port,
            cmd.join(" ").replace(',', ",,")
        ));
    }
    out
}

/// Build the argv (without the program) for `qemu-system-x86_64`. `relay` is the program and
/// leading arguments that carry one guest connection to a host service (`labctl __relay`).
pub fn qemu_args(
    m: &MachineConfig,
    engine: Engine,
    relay: &[std::ffi::OsString],
    extra: &[String],
) -> Vec<String> {
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
    let user = user_netdev(m, "nat") + &guestfwd_options(m, relay);
    push(&[
        "-netdev",
        &user,
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
            guest_services: Vec::new(),
        }
    }

    #[test]
    fn argv_for_a_direct_boot_machine() {
        insta::assert_snapshot!(qemu_args(&machine(false), Engine::Tcg, &[], &[]).join("\n"));
    }

    #[test]
    fn tcg_gets_an_x86_64_v2_cpu_and_kvm_the_host_cpu() {
        let tcg = qemu_args(&machine(false), Engine::Tcg, &[], &[]).join(" ");
        assert!(tcg.contains("-accel tcg -cpu max"), "{tcg}");
        let mut nested = machine(false);
        nested.nested_virt = true;
        let kvm = qemu_args(&nested, Engine::Kvm, &[], &[]).join(" ");
        assert!(kvm.contains("-accel kvm -cpu host,+vmx,+svm"), "{kvm}");
        assert_eq!(
            accel_args(Engine::Kvm, false),
            ["-accel", "kvm", "-cpu", "host"]
        );
    }

    #[test]
    fn egress_off_means_restrict_on_and_forwards_bind_loopback() {
        let off = qemu_args(&machine(false), Engine::Tcg, &[], &[]).join(" ");
        assert!(off.contains("user,id=nat,restrict=on,"));
        let on = qemu_args(&machine(true), Engine::Tcg, &[], &[]).join(" ");
        assert!(!on.contains("restrict=on"));
        for a in [off, on] {
            assert_eq!(
                a.matches("hostfwd=tcp:").count(),
                a.matches("hostfwd=tcp:127.0.0.1:").count()
            );
        }
    }

    #[test]
    fn host_services_are_guestfwd_rules_that_run_the_relay_per_connection() {
        let mut m = machine(false);
        m.guest_services = vec![
            crate::HostService {
                name: "bundle".into(),
                host_port: 41234,
            },
            crate::HostService {
                name: "other".into(),
                host_port: 41235,
            },
        ];
        let relay: Vec<std::ffi::OsString> =
            vec!["/opt/lab,ctl/bin/labctl".into(), "__relay".into()];
        let argv = qemu_args(&m, Engine::Tcg, &relay, &[]);
        let netdev = argv
            .iter()
            .find(|a| a.starts_with("user,id=nat"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            netdev,
            "user,id=nat,restrict=on,hostfwd=tcp:127.0.0.1:60010-:22,\
             hostfwd=tcp:127.0.0.1:30000-:30000,\
             guestfwd=tcp:10.0.2.100:80-cmd:'/opt/lab,,ctl/bin/labctl' __relay 41234,\
             guestfwd=tcp:10.0.2.101:80-cmd:'/opt/lab,,ctl/bin/labctl' __relay 41235"
        );
        // No relay program: no rule (the runner does not attach services then).
        let none = qemu_args(&m, Engine::Tcg, &[], &[]).join(" ");
        assert!(!none.contains("guestfwd"), "{none}");
    }

    #[test]
    fn guest_service_addresses_stay_inside_the_nat_network() {
        assert_eq!(
            guest_service_endpoint(0).map(|e| e.to_string()),
            Some("10.0.2.100".to_string())
        );
        assert_eq!(
            guest_service_endpoint(154).map(|e| e.addr.to_string()),
            Some("10.0.2.254".to_string())
        );
        assert_eq!(guest_service_endpoint(155), None);
        assert_eq!(shell_word("a b'c"), "'a b'\\''c'");
    }
}
