//! The XML labctl gives libvirt: domains, networks, the storage pool. Pure functions,
//! snapshot-tested.

use std::fmt::Write as _;

use crate::MachineConfig;
use crate::qemu::accel::Engine;
use crate::qemu::args::{kernel_cmdline, user_netdev};

/// Escape text for an XML attribute or element.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Everything of a domain that is not in the [`MachineConfig`]: names and paths on the
/// hypervisor host.
#[derive(Debug, Clone)]
pub struct DomainSpec<'a> {
    pub m: &'a MachineConfig,
    pub name: &'a str,
    pub engine: Engine,
    pub pool: &'a str,
    /// The node's qcow2 volume (backed by the box's base volume).
    pub disk_volume: &'a str,
    /// Paths of the box's kernel and initrd volumes on the host (direct boot).
    pub kernel: Option<&'a str>,
    pub initrd: Option<&'a str>,
    /// The serial console's log file on the host.
    pub serial: &'a str,
    /// The libvirt network of each private NIC, in `m.private_nics` order.
    pub networks: &'a [String],
}

/// PCI slots are fixed so that NIC 1 (user-mode network, given on QEMU's command line, so
/// libvirt does not know its slot) comes first, as in the QEMU driver: the guest names it
/// `eth0`, the private NICs follow.
const SLOT_NAT: u32 = 2;
const SLOT_DISK: u32 = 3;
const SLOT_RNG: u32 = 4;
const SLOT_FIRST_PRIVATE: u32 = 5;

fn pci(slot: u32) -> String {
    format!("<address type='pci' domain='0x0000' bus='0x00' slot='0x{slot:02x}' function='0x0'/>")
}

/// A domain's UUID from the machine id (32 hex digits): stable, so redefining updates it.
pub fn uuid(machine_id: &str) -> String {
    let h: String = machine_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The domain XML of a node.
///
/// - `type='kvm'` or `'qemu'` (TCG) by the QEMU driver's acceleration rule; the CPU is the
///   host's under KVM (`host-passthrough`, which carries VMX/SVM when the host allows nested
///   virtualization) and `maximum` under TCG (QEMU's `-cpu max`: libvirt 9.0 refuses a
///   `custom` model named `max`).
/// - NIC 1 is QEMU's user-mode network passed through `<qemu:commandline>` with the same
///   netdev as the QEMU driver (`restrict=on` when egress is off, forwards on 127.0.0.1 of
///   the hypervisor host): libvirt 9.0's `<interface type='user'>` has port forwards only
///   with the passt backend and no `restrict`.
pub fn domain(d: &DomainSpec<'_>) -> String {
    let m = d.m;
    let mut x = String::new();
    let (kind, cpu) = match d.engine {
        Engine::Kvm => ("kvm", "<cpu mode='host-passthrough' check='none'/>"),
        Engine::Tcg => ("qemu", "<cpu mode='maximum' check='none'/>"),
    };
    let _ = writeln!(
        x,
        "<domain type='{kind}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
    );
    let _ = writeln!(x, "  <name>{}</name>", escape(d.name));
    let _ = writeln!(x, "  <uuid>{}</uuid>", uuid(&m.machine_id));
    let _ = writeln!(
        x,
        "  <description>labctl machine {} (hostname {})</description>",
        escape(&m.id),
        escape(&m.hostname)
    );
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", m.memory_mb);
    let _ = writeln!(x, "  <vcpu>{}</vcpu>", m.cpus);
    x.push_str("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
    if let Some(k) = d.kernel {
        let _ = writeln!(x, "    <kernel>{}</kernel>", escape(k));
        if let Some(i) = d.initrd {
            let _ = writeln!(x, "    <initrd>{}</initrd>", escape(i));
        }
        let _ = writeln!(x, "    <cmdline>{}</cmdline>", escape(&kernel_cmdline(m)));
    } else {
        x.push_str("    <boot dev='hd'/>\n");
    }
    x.push_str("  </os>\n");
    let _ = writeln!(x, "  {cpu}");
    x.push_str("  <features>\n    <acpi/>\n  </features>\n");
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n");
    x.push_str("  <devices>\n");
    let _ = writeln!(
        x,
        "    <disk type='volume' device='disk'>\n      <driver name='qemu' type='qcow2' discard='unmap'/>\n      <source pool='{}' volume='{}'/>\n      <target dev='vda' bus='virtio'/>\n      {}\n    </disk>",
        escape(d.pool),
        escape(d.disk_volume),
        pci(SLOT_DISK)
    );
    for (i, (nic, net)) in m.private_nics.iter().zip(d.networks).enumerate() {
        let _ = writeln!(
            x,
            "    <interface type='network'>\n      <source network='{}'/>\n      <mac address='{}'/>\n      <model type='virtio'/>\n      {}\n    </interface>",
            escape(net),
            escape(&nic.mac),
            pci(SLOT_FIRST_PRIVATE + i as u32)
        );
    }
    let serial = escape(d.serial);
    let _ = writeln!(
        x,
        "    <serial type='file'>\n      <source path='{serial}' append='on'/>\n      <target port='0'/>\n    </serial>\n    <console type='file'>\n      <source path='{serial}' append='on'/>\n      <target type='serial' port='0'/>\n    </console>"
    );
    let _ = writeln!(
        x,
        "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n      {}\n    </rng>",
        pci(SLOT_RNG)
    );
    x.push_str("    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n");
    x.push_str("  </devices>\n  <qemu:commandline>\n");
    for arg in [
        "-netdev".to_string(),
        user_netdev(m, "labnat"),
        "-device".to_string(),
        format!(
            "virtio-net-pci,netdev=labnat,mac={},bus=pci.0,addr=0x{SLOT_NAT:x}",
            m.nat_mac
        ),
    ] {
        let _ = writeln!(x, "    <qemu:arg value='{}'/>", escape(&arg));
    }
    x.push_str("  </qemu:commandline>\n</domain>\n");
    x
}

/// An isolated network: no `<forward>` (nothing leaves the bridge), no `<ip>` (so no DHCP
/// and no address of the host on it; as with the QEMU driver's switch, a lab's `host_ip`
/// is for VirtualBox's host-only networks).
pub fn network(name: &str) -> String {
    format!(
        "<network>\n  <name>{}</name>\n  <bridge stp='off' delay='0'/>\n</network>\n",
        escape(name)
    )
}

/// labctl's storage pool: a directory on the hypervisor host.
pub fn pool(name: &str, path: &str) -> String {
    format!(
        "<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        escape(name),
        escape(path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(m: &'a MachineConfig, nets: &'a [String], engine: Engine) -> DomainSpec<'a> {
        DomainSpec {
            m,
            name: "labctl-k8s-1a2b3c4d-m-k8s",
            engine,
            pool: "labctl",
            disk_volume: "labctl-k8s-1a2b3c4d-m-k8s.qcow2",
            kernel: Some("/var/lib/libvirt/labctl/labctl-box-e0763fb6cac306be-vmlinuz"),
            initrd: Some("/var/lib/libvirt/labctl/labctl-box-e0763fb6cac306be-initrd"),
            serial: "/lab/.labctl/machines/m-k8s/serial.log",
            networks: nets,
        }
    }

    #[test]
    fn domain_xml_of_a_direct_boot_node_under_tcg() {
        let m = crate::qemu::args::tests::machine(false);
        let nets = vec!["labctl-5e6f7a8b-private".to_string()];
        insta::assert_snapshot!(domain(&spec(&m, &nets, Engine::Tcg)));
    }

    #[test]
    fn kvm_gets_the_host_cpu_and_egress_drops_restrict() {
        let m = crate::qemu::args::tests::machine(true);
        let nets = vec!["n".to_string()];
        let x = domain(&spec(&m, &nets, Engine::Kvm));
        assert!(x.starts_with("<domain type='kvm'"), "{x}");
        assert!(x.contains("<cpu mode='host-passthrough'"), "{x}");
        assert!(!x.contains("restrict=on"), "{x}");
        assert!(x.contains("labctl.egress=1"), "{x}");
        let off = crate::qemu::args::tests::machine(false);
        let x = domain(&spec(&off, &nets, Engine::Tcg));
        assert!(x.starts_with("<domain type='qemu'"), "{x}");
        assert!(x.contains("user,id=labnat,restrict=on,hostfwd=tcp:127.0.0.1:60010-:22"));
        assert!(x.contains("labctl.egress=0"), "{x}");
    }

    #[test]
    fn a_disk_boot_box_has_no_kernel() {
        let m = crate::qemu::args::tests::machine(false);
        let mut s = spec(&m, &[], Engine::Tcg);
        s.kernel = None;
        s.initrd = None;
        let x = domain(&s);
        assert!(!x.contains("<kernel>") && !x.contains("<cmdline>"), "{x}");
        assert!(x.contains("<boot dev='hd'/>"), "{x}");
        assert!(
            !x.contains("<interface"),
            "no network given: no private NIC"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a&b<'\">"), "a&amp;b&lt;&apos;&quot;&gt;");
        let x = pool("labctl", "/srv/it's");
        assert!(x.contains("/srv/it&apos;s"), "{x}");
    }

    #[test]
    fn uuid_from_machine_id() {
        assert_eq!(
            uuid("0123456789abcdef0123456789abcdef"),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(uuid("ab").len(), 36);
    }

    #[test]
    fn network_and_pool_xml() {
        let net = network("labctl-5e6f7a8b-private");
        assert!(!net.contains("<forward") && !net.contains("<ip") && !net.contains("dhcp"));
        insta::assert_snapshot!(net);
        insta::assert_snapshot!(pool("labctl", "/var/lib/libvirt/labctl"));
    }
}
