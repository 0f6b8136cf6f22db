//! Guest configuration over SSH (what Vagrant calls guest capabilities): hostname, the private
//! NICs' static addresses, and the lab's key in place of the box's insecure one. The script is
//! a pure function of the inputs (snapshot-tested) and idempotent.

use std::net::Ipv4Addr;

/// How the guest configures networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetStack {
    /// Debian: systemd-networkd.
    Networkd,
    /// Rocky/CentOS/EL: NetworkManager.
    NetworkManager,
    /// Ubuntu: netplan.
    Netplan,
}

impl NetStack {
    /// The network stack of an OS family (`debian`, `ubuntu`, `rocky`, `centos`).
    pub fn for_os(os: &str) -> NetStack {
        match os {
            "ubuntu" => NetStack::Netplan,
            "rocky" | "centos" | "alma" | "rhel" | "fedora" => NetStack::NetworkManager,
            _ => NetStack::Networkd,
        }
    }
}

/// A private NIC to address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSetup {
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

/// What to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSetup {
    pub hostname: String,
    pub user: String,
    pub nics: Vec<NicSetup>,
    pub stack: NetStack,
    /// The lab's public key; it replaces every key in the user's authorized_keys.
    pub authorized_key: String,
}

fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell script (run as root) that brings a guest to `setup`.
pub fn script(setup: &GuestSetup) -> String {
    let mut s = String::from("#!/bin/sh\n# labctl guest configuration (idempotent)\nset -eu\n");
    let host = single_quote(&setup.hostname);
    s.push_str(&format!(
        "if [ \"$(hostname)\" != {host} ]; then\n  hostnamectl set-hostname {host} 2>/dev/null || {{ echo {host} > /etc/hostname; hostname {host}; }}\nfi\n"
    ));
    if let Some(first) = setup.nics.first() {
        s.push_str(&format!(
            "# the node's own name resolves to its private address, never only to loopback\nsed -i '/# labctl-self$/d' /etc/hosts\necho \"{} {} # labctl-self\" >> /etc/hosts\n",
            first.ip, setup.hostname
        ));
    }
    for (i, nic) in setup.nics.iter().enumerate() {
        let mac = nic.mac.to_ascii_lowercase();
        s.push_str(&format!(
            "IF=$(ip -o link | awk -v mac={mac} 'tolower($0) ~ mac {{ sub(/:$/, \"\", $2); sub(/@.*/, \"\", $2); print $2; exit }}')\n[ -n \"$IF\" ] || {{ echo \"labctl: no NIC with MAC {mac}\" >&2; exit 1; }}\n"
        ));
        match setup.stack {
            NetStack::Networkd => s.push_str(&format!(
                "mkdir -p /etc/systemd/network\ncat > /etc/systemd/network/20-labctl-{i}.network <<'LABCTL_EOF'\n[Match]\nMACAddress={mac}\n\n[Network]\nAddress={ip}/{prefix}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\nLABCTL_EOF\nnetworkctl reload\nnetworkctl reconfigure \"$IF\"\n",
                ip = nic.ip,
                prefix = nic.prefix
            )),
            NetStack::NetworkManager => s.push_str(&format!(
                "nmcli -t -f NAME con show | grep -qx labctl-{i} && nmcli con delete labctl-{i} >/dev/null\nnmcli con add type ethernet ifname \"$IF\" con-name labctl-{i} ipv4.method manual ipv4.addresses {ip}/{prefix} ipv6.method disabled >/dev/null\nnmcli con up labctl-{i} >/dev/null\n",
                ip = nic.ip,
                prefix = nic.prefix
            )),
            NetStack::Netplan => s.push_str(&format!(
                "cat > /etc/netplan/60-labctl-{i}.yaml <<LABCTL_EOF\nnetwork:\n  version: 2\n  ethernets:\n    labctl{i}:\n      match:\n        macaddress: \"{mac}\"\n      set-name: \"$IF\"\n      addresses: [\"{ip}/{prefix}\"]\n      dhcp4: false\nLABCTL_EOF\nchmod 600 /etc/netplan/60-labctl-{i}.yaml\nnetplan apply\n",
                ip = nic.ip,
                prefix = nic.prefix
            )),
        }
        s.push_str(&format!(
            "for _ in $(seq 1 50); do ip -4 -o addr show dev \"$IF\" | grep -q ' {ip}/' && break; sleep 0.2; done\nip -4 -o addr show dev \"$IF\" | grep -q ' {ip}/' || {{ echo \"labctl: {ip} did not come up on $IF\" >&2; exit 1; }}\n",
            ip = nic.ip
        ));
    }
    let user = single_quote(&setup.user);
    s.push_str(&format!(
        "HOME_DIR=$(getent passwd {user} | cut -d: -f6)\ninstall -d -m 700 -o {user} \"$HOME_DIR/.ssh\"\nprintf '%s\\n' {key} > \"$HOME_DIR/.ssh/authorized_keys.labctl\"\nchmod 600 \"$HOME_DIR/.ssh/authorized_keys.labctl\"\nchown {user} \"$HOME_DIR/.ssh/authorized_keys.labctl\"\nmv \"$HOME_DIR/.ssh/authorized_keys.labctl\" \"$HOME_DIR/.ssh/authorized_keys\"\n",
        key = single_quote(&setup.authorized_key)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(stack: NetStack) -> GuestSetup {
        GuestSetup {
            hostname: "w1-k8s".into(),
            user: "root".into(),
            nics: vec![NicSetup {
                mac: "52:54:00:AB:00:02".into(),
                ip: "192.168.1.101".parse().expect("ip"),
                prefix: 24,
            }],
            stack,
            authorized_key: "ssh-ed25519 AAAAC3Nza labctl@k8s".into(),
        }
    }

    #[test]
    fn networkd_script() {
        insta::assert_snapshot!(script(&setup(NetStack::Networkd)));
    }

    #[test]
    fn networkmanager_script() {
        insta::assert_snapshot!(script(&setup(NetStack::NetworkManager)));
    }

    #[test]
    fn netplan_script() {
        insta::assert_snapshot!(script(&setup(NetStack::Netplan)));
    }

    #[test]
    fn os_families_map_to_stacks() {
        assert_eq!(NetStack::for_os("debian"), NetStack::Networkd);
        assert_eq!(NetStack::for_os("ubuntu"), NetStack::Netplan);
        assert_eq!(NetStack::for_os("rocky"), NetStack::NetworkManager);
        assert_eq!(NetStack::for_os("centos"), NetStack::NetworkManager);
    }
}
