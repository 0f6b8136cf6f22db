//! `VBoxManage` command lines: pure functions, snapshot-tested.
//!
//! Syntax from the VBoxManage reference (<https://www.virtualbox.org/manual/ch08.html>).

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::parse::VmInfo;
use crate::MachineConfig;

/// VirtualBox supports NICs 1..=8 with the default PIIX3 chipset.
pub const MAX_NICS: u8 = 8;

/// How a lab network reaches a VM's NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attachment {
    /// A host-only interface (`vboxnet0`), for networks the host has an address on.
    Hostonly(String),
    /// An internal network (`--intnet`), only the VMs are on it.
    Intnet(String),
    /// A host-only network (`--host-only-net`): VirtualBox 7 on macOS, where host-only
    /// interfaces are gone.
    Hostonlynet(String),
}

/// What the running VirtualBox version supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `--nested-hw-virt` (6.0 and later).
    pub nested_hw_virt: bool,
    /// `--nat-localhostreachable1` (7.0 and later, where the NAT gateway no longer reaches
    /// the host's loopback unless it is switched on).
    pub nat_localhost_reachable: bool,
}

fn s<I: IntoIterator<Item = T>, T: Into<String>>(items: I) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

/// A path as VBoxManage gets it. Windows' verbatim prefix (`\\?\C:\…`, what
/// `canonicalize` returns there) is dropped: VirtualBox does not take it for `--basefolder`.
fn path(p: &Path) -> String {
    let s = p.to_string_lossy();
    match s.strip_prefix("\\\\?\\") {
        Some(rest) if !rest.starts_with("UNC\\") => rest.to_string(),
        _ => s.into_owned(),
    }
}

/// `--version`
pub fn version() -> Vec<String> {
    s(["--version"])
}

/// `list vms`
pub fn list_vms() -> Vec<String> {
    s(["list", "vms"])
}

/// `list hostonlyifs`
pub fn list_hostonlyifs() -> Vec<String> {
    s(["list", "hostonlyifs"])
}

/// `showvminfo NAME --machinereadable`
pub fn showvminfo(vm: &str) -> Vec<String> {
    s(["showvminfo", vm, "--machinereadable"])
}

/// Import an OVF appliance as one VM.
pub fn import(ovf: &Path, vm: &str, basefolder: &Path) -> Vec<String> {
    s([
        "import".to_string(),
        path(ovf),
        "--vsys".into(),
        "0".into(),
        "--vmname".into(),
        vm.into(),
        "--basefolder".into(),
        path(basefolder),
        // The box's NAT MAC: guests tie their first NIC's configuration to it.
        "--options".into(),
        "keepnatmacs".into(),
    ])
}

/// A linked clone of `master` at `snapshot`.
pub fn clone_linked(master: &str, snapshot: &str, vm: &str, basefolder: &Path) -> Vec<String> {
    s([
        "clonevm".to_string(),
        master.into(),
        "--snapshot".into(),
        snapshot.into(),
        "--options".into(),
        "link,keepnatmacs".into(),
        "--name".into(),
        vm.into(),
        "--register".into(),
        "--basefolder".into(),
        path(basefolder),
    ])
}

/// `snapshot NAME take SNAP`
pub fn snapshot_take(vm: &str, snap: &str) -> Vec<String> {
    s(["snapshot", vm, "take", snap])
}

/// `snapshot NAME restore SNAP`
pub fn snapshot_restore(vm: &str, snap: &str) -> Vec<String> {
    s(["snapshot", vm, "restore", snap])
}

/// `snapshot NAME delete SNAP`
pub fn snapshot_delete(vm: &str, snap: &str) -> Vec<String> {
    s(["snapshot", vm, "delete", snap])
}

/// `snapshot NAME list --machinereadable`
pub fn snapshot_list(vm: &str) -> Vec<String> {
    s(["snapshot", vm, "list", "--machinereadable"])
}

/// `startvm NAME --type headless`
pub fn startvm(vm: &str) -> Vec<String> {
    s(["startvm", vm, "--type", "headless"])
}

/// `controlvm NAME acpipowerbutton`
pub fn acpi_power_button(vm: &str) -> Vec<String> {
    s(["controlvm", vm, "acpipowerbutton"])
}

/// `controlvm NAME poweroff`
pub fn poweroff(vm: &str) -> Vec<String> {
    s(["controlvm", vm, "poweroff"])
}

/// `controlvm NAME pause` or `controlvm NAME resume`
pub fn pause(vm: &str, paused: bool) -> Vec<String> {
    s(["controlvm", vm, if paused { "pause" } else { "resume" }])
}

/// `unregistervm NAME --delete`
pub fn unregister_delete(vm: &str) -> Vec<String> {
    s(["unregistervm", vm, "--delete"])
}

/// `hostonlyif create --machinereadable` (prints the bare interface name, in any language)
pub fn hostonlyif_create() -> Vec<String> {
    s(["hostonlyif", "create", "--machinereadable"])
}

/// `list hostonlynets` (VirtualBox 7, macOS)
pub fn list_hostonlynets() -> Vec<String> {
    s(["list", "hostonlynets"])
}

/// `hostonlynet add --name N --netmask M --lower-ip L --upper-ip U --enable`
pub fn hostonlynet_add(
    name: &str,
    netmask: Ipv4Addr,
    lower: Ipv4Addr,
    upper: Ipv4Addr,
) -> Vec<String> {
    s([
        "hostonlynet".to_string(),
        "add".into(),
        "--name".into(),
        name.into(),
        "--netmask".into(),
        netmask.to_string(),
        "--lower-ip".into(),
        lower.to_string(),
        "--upper-ip".into(),
        upper.to_string(),
        "--enable".into(),
    ])
}

/// `controlvm NAME natpf1 delete RULE` (running VM)
pub fn natpf_delete(vm: &str, rule: &str) -> Vec<String> {
    s(["controlvm", vm, "natpf1", "delete", rule])
}

/// `controlvm NAME natpf1 SPEC` (running VM)
pub fn natpf_add(vm: &str, spec: &str) -> Vec<String> {
    s(["controlvm", vm, "natpf1", spec])
}

/// NIC 1's NAT rules for a machine: (rule name, `--natpf1` spec), SSH first, bound to
/// 127.0.0.1 only.
pub fn nat_rules(m: &MachineConfig) -> Vec<(String, String)> {
    let mut out = vec![(
        "ssh".to_string(),
        format!("ssh,tcp,127.0.0.1,{},,{}", m.ssh.host, m.ssh.guest),
    )];
    for f in &m.forwards {
        let name = forward_rule_name(f.host);
        out.push((
            name.clone(),
            format!("{name},tcp,127.0.0.1,{},,{}", f.host, f.guest),
        ));
    }
    out
}

/// `hostonlyif ipconfig IF --ip A --netmask M`
pub fn hostonlyif_ipconfig(ifname: &str, ip: Ipv4Addr, netmask: Ipv4Addr) -> Vec<String> {
    s([
        "hostonlyif".to_string(),
        "ipconfig".into(),
        ifname.into(),
        "--ip".into(),
        ip.to_string(),
        "--netmask".into(),
        netmask.to_string(),
    ])
}

/// `setextradata NAME KEY VALUE`
pub fn setextradata(vm: &str, key: &str, value: &str) -> Vec<String> {
    s(["setextradata", vm, key, value])
}

/// `getextradata NAME KEY`
pub fn getextradata(vm: &str, key: &str) -> Vec<String> {
    s(["getextradata", vm, key])
}

/// A MAC in VirtualBox's form: 12 upper-case hex digits, no separators.
pub fn vbox_mac(mac: &str) -> String {
    mac.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The NAT rule name of a forwarded port.
pub fn forward_rule_name(host: u16) -> String {
    format!("tcp{host}")
}

/// VirtualBox group paths start with `/`.
fn group_path(g: &str) -> String {
    if g.starts_with('/') {
        g.to_string()
    } else {
        format!("/{g}")
    }
}

/// `modifyvm` for a stopped VM: CPUs, memory, group, nested virtualization, NIC 1 on NAT with
/// the SSH and other forwards (127.0.0.1 only), NIC 2.. on the lab networks (`nets[i]` is the
/// attachment of `m.private_nics[i]`), surplus NICs off, serial port 1 into `serial_log`.
/// `current` (the VM as it is) names NAT rules to delete first, so the call can be repeated.
pub fn modifyvm(
    m: &MachineConfig,
    nets: &[Attachment],
    current: Option<&VmInfo>,
    features: Features,
    serial_log: &Path,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_string()));
    push(&["modifyvm", &m.id]);
    push(&[
        "--cpus",
        &m.cpus.to_string(),
        "--memory",
        &m.memory_mb.to_string(),
    ]);
    if let Some(g) = &m.group {
        push(&["--groups", &group_path(g)]);
    }
    if features.nested_hw_virt {
        push(&["--nested-hw-virt", if m.nested_virt { "on" } else { "off" }]);
    }
    // NIC 1 keeps the box's MAC (import/clone keep NAT MACs): the guest's own network
    // configuration for its first NIC may match that MAC.
    push(&["--nic1", "nat", "--cableconnected1", "on"]);
    if let Some(nic1) = current.and_then(|c| c.nic(1)) {
        for rule in &nic1.nat_rules {
            push(&["--natpf1", "delete", &rule.name]);
        }
    }
    for (_, spec) in nat_rules(m) {
        push(&["--natpf1", &spec]);
    }
    // Host services (the bundle server) listen on the host's 127.0.0.1; guests reach them at
    // the NAT gateway 10.0.2.2, which VirtualBox before 7.0 maps to the host's loopback and
    // 7.0 and later only with this switch (not verified on a real VirtualBox).
    if !m.guest_services.is_empty() && features.nat_localhost_reachable {
        push(&["--nat-localhostreachable1", "on"]);
    }
    let mut last = 1u8;
    for (i, (nic, att)) in m.private_nics.iter().zip(nets).enumerate() {
        let n = u8::try_from(i + 2).unwrap_or(MAX_NICS).min(MAX_NICS);
        last = n;
        let idx = n.to_string();
        match att {
            Attachment::Hostonly(ifname) => push(&[
                &format!("--nic{idx}"),
                "hostonly",
                &format!("--hostonlyadapter{idx}"),
                ifname,
            ]),
            Attachment::Intnet(name) => push(&[
                &format!("--nic{idx}"),
                "intnet",
                &format!("--intnet{idx}"),
                name,
            ]),
            Attachment::Hostonlynet(name) => push(&[
                &format!("--nic{idx}"),
                "hostonlynet",
                &format!("--host-only-net{idx}"),
                name,
            ]),
        }
        push(&[
            &format!("--macaddress{idx}"),
            &vbox_mac(&nic.mac),
            &format!("--cableconnected{idx}"),
            "on",
        ]);
    }
    if let Some(c) = current {
        for nic in &c.nics {
            if nic.index > last && nic.attachment != "none" {
                push(&[&format!("--nic{}", nic.index), "none"]);
            }
        }
    }
    push(&[
        "--uart1",
        "0x3F8",
        "4",
        "--uartmode1",
        "file",
        &path(serial_log),
    ]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vbox::parse;
    use crate::{Accel, BootImage, PortForward, PrivateNic};

    fn machine() -> MachineConfig {
        MachineConfig {
            id: "k8s-1a2b3c4d-m-k8s".into(),
            hostname: "m-k8s".into(),
            dir: "/lab/.labctl/machines/m-k8s".into(),
            run_dir: "/run/user/0/labctl/1a2b3c4d".into(),
            cpus: 2,
            memory_mb: 2048,
            boot: BootImage {
                disk: "/boxes/sysnet4admin--CentOS-k8s/disk.qcow2".into(),
                kernel: None,
                initrd: None,
                cmdline: None,
                ovf: Some("/boxes/sysnet4admin--CentOS-k8s/box.ovf".into()),
            },
            nat_mac: "52:54:00:aa:00:01".into(),
            private_nics: vec![
                PrivateNic {
                    network: "private".into(),
                    mac: "52:54:00:bb:00:01".into(),
                },
                PrivateNic {
                    network: "storage".into(),
                    mac: "52:54:00:cc:00:01".into(),
                },
            ],
            ssh: PortForward {
                host: 60010,
                guest: 22,
            },
            forwards: vec![PortForward {
                host: 30000,
                guest: 30080,
            }],
            egress: true,
            accel: Accel::Kvm,
            nested_virt: false,
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            guest_services: Vec::new(),
            group: Some("k8s-SgMST-1.13.1(github_SysNet4Admin)".into()),
        }
    }

    fn nets() -> Vec<Attachment> {
        vec![
            Attachment::Hostonly("vboxnet0".into()),
            Attachment::Intnet("labctl-1a2b3c4d-storage".into()),
        ]
    }

    const NEW: Features = Features {
        nested_hw_virt: true,
        nat_localhost_reachable: true,
    };

    #[test]
    fn modifyvm_first_start() {
        let argv = modifyvm(
            &machine(),
            &nets(),
            None,
            NEW,
            Path::new("/lab/.labctl/machines/m-k8s/serial.log"),
        );
        insta::assert_snapshot!(argv.join("\n"));
    }

    #[test]
    fn modifyvm_again_deletes_old_rules_and_surplus_nics() {
        // As the box left it: NIC 1 NAT with Vagrant's rule, NIC 4 host-only.
        let current = parse::showvminfo(
            "name=\"k8s-1a2b3c4d-m-k8s\"\nUUID=\"u\"\nVMState=\"poweroff\"\nnic1=\"nat\"\nForwarding(0)=\"ssh,tcp,127.0.0.1,2222,,22\"\nForwarding(1)=\"tcp30000,tcp,127.0.0.1,30000,,30080\"\nhostonlyadapter4=\"vboxnet3\"\nnic4=\"hostonly\"\nnic5=\"none\"\n",
        )
        .expect("parses");
        let mut m = machine();
        m.private_nics.truncate(1);
        m.forwards.clear();
        m.group = None;
        m.nested_virt = true;
        let argv = modifyvm(
            &m,
            &nets()[..1],
            Some(&current),
            NEW,
            Path::new("/lab/.labctl/machines/m-k8s/serial.log"),
        );
        insta::assert_snapshot!(argv.join("\n"));
    }

    #[test]
    fn nested_virt_flag_only_where_supported() {
        let mut m = machine();
        m.nested_virt = true;
        let old = modifyvm(
            &m,
            &nets(),
            None,
            Features {
                nested_hw_virt: false,
                nat_localhost_reachable: false,
            },
            Path::new("/s.log"),
        );
        assert!(!old.iter().any(|a| a == "--nested-hw-virt"));
        let new = modifyvm(&m, &nets(), None, NEW, Path::new("/s.log"));
        let i = new
            .iter()
            .position(|a| a == "--nested-hw-virt")
            .expect("flag");
        assert_eq!(new[i + 1], "on");
    }

    #[test]
    fn host_services_make_the_host_loopback_reachable_on_7_0_and_later() {
        let mut m = machine();
        let plain = modifyvm(&m, &nets(), None, NEW, Path::new("/s.log"));
        assert!(!plain.iter().any(|a| a == "--nat-localhostreachable1"));
        m.guest_services.push(crate::HostService {
            name: "bundle".into(),
            host_port: 41234,
        });
        let new = modifyvm(&m, &nets(), None, NEW, Path::new("/s.log"));
        let i = new
            .iter()
            .position(|a| a == "--nat-localhostreachable1")
            .expect("flag");
        assert_eq!(new[i + 1], "on");
        let old = modifyvm(
            &m,
            &nets(),
            None,
            Features {
                nested_hw_virt: true,
                nat_localhost_reachable: false,
            },
            Path::new("/s.log"),
        );
        assert!(!old.iter().any(|a| a == "--nat-localhostreachable1"));
    }

    #[test]
    fn other_commands() {
        let base = Path::new("/boxes/sysnet4admin--CentOS-k8s");
        let all = [
            version(),
            list_vms(),
            list_hostonlyifs(),
            showvminfo("k8s-1a2b3c4d-m-k8s"),
            import(
                &base.join("box.ovf"),
                "labctl-master-sysnet4admin--CentOS-k8s",
                base,
            ),
            snapshot_take("labctl-master-sysnet4admin--CentOS-k8s", "base"),
            clone_linked(
                "labctl-master-sysnet4admin--CentOS-k8s",
                "base",
                "k8s-1a2b3c4d-m-k8s",
                Path::new("/lab/.labctl/machines/m-k8s"),
            ),
            startvm("k8s-1a2b3c4d-m-k8s"),
            acpi_power_button("k8s-1a2b3c4d-m-k8s"),
            poweroff("k8s-1a2b3c4d-m-k8s"),
            unregister_delete("k8s-1a2b3c4d-m-k8s"),
            snapshot_restore("k8s-1a2b3c4d-m-k8s", "provisioned"),
            snapshot_delete("k8s-1a2b3c4d-m-k8s", "provisioned"),
            snapshot_list("k8s-1a2b3c4d-m-k8s"),
            hostonlyif_create(),
            hostonlyif_ipconfig(
                "vboxnet0",
                Ipv4Addr::new(192, 168, 56, 1),
                Ipv4Addr::new(255, 255, 255, 0),
            ),
            setextradata("k8s-1a2b3c4d-m-k8s", "/labctl/id", "k8s-1a2b3c4d-m-k8s"),
            getextradata("k8s-1a2b3c4d-m-k8s", "/labctl/id"),
            list_hostonlynets(),
            hostonlynet_add(
                "labctl-192.168.1.0-24",
                Ipv4Addr::new(255, 255, 255, 0),
                Ipv4Addr::new(192, 168, 1, 1),
                Ipv4Addr::new(192, 168, 1, 254),
            ),
            natpf_delete("k8s-1a2b3c4d-m-k8s", "ssh"),
            natpf_add("k8s-1a2b3c4d-m-k8s", "ssh,tcp,127.0.0.1,60011,,22"),
        ];
        let text: Vec<String> = all.iter().map(|a| a.join(" ")).collect();
        insta::assert_snapshot!(text.join("\n"));
    }

    #[test]
    fn hostonly_networks_attach_with_host_only_net() {
        let argv = modifyvm(
            &machine(),
            &[
                Attachment::Hostonlynet("labctl-192.168.1.0-24".into()),
                Attachment::Intnet("labctl-1a2b3c4d-storage".into()),
            ],
            None,
            NEW,
            Path::new("/s.log"),
        )
        .join(" ");
        assert!(
            argv.contains("--nic2 hostonlynet --host-only-net2 labctl-192.168.1.0-24 --macaddress2 525400BB0001"),
            "{argv}"
        );
        assert!(
            !argv.contains("--macaddress1"),
            "NIC 1 keeps the box's MAC: {argv}"
        );
    }

    #[test]
    fn windows_verbatim_paths_lose_their_prefix() {
        assert_eq!(
            path(Path::new("\\\\?\\C:\\Users\\st\\lab")),
            "C:\\Users\\st\\lab"
        );
        assert_eq!(
            path(Path::new("\\\\?\\UNC\\srv\\share")),
            "\\\\?\\UNC\\srv\\share"
        );
        assert_eq!(path(Path::new("/home/st/lab")), "/home/st/lab");
    }

    #[test]
    fn macs_lose_their_colons() {
        assert_eq!(vbox_mac("52:54:00:ab:cd:ef"), "525400ABCDEF");
        assert_eq!(vbox_mac("080027AABBCC"), "080027AABBCC");
    }
}
