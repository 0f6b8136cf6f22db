//! A role as imported, and the helpers that derive its settings: merging, OS guess, netmasks.

use std::net::Ipv4Addr;

use super::steps::Step;
use crate::eval::{At, Settings};

pub(super) struct Role {
    pub(super) name: String,
    pub(super) hostname: String,
    pub(super) count: Option<i64>,
    pub(super) start: Option<i64>,
    pub(super) scale: bool,
    pub(super) cpus: Option<i64>,
    pub(super) memory: Option<i64>,
    pub(super) nested: bool,
    pub(super) ip: Option<Ipv4Addr>,
    pub(super) ips: Vec<(String, Ipv4Addr)>,
    pub(super) ssh_port: Option<i64>,
    pub(super) forwards: Vec<(i64, i64)>,
    pub(super) steps: Vec<Step>,
    /// The first node's position among all nodes, and the node count.
    pub(super) nodes: usize,
}

pub(super) fn merged(global: &Settings, m: &Settings) -> Settings {
    fn pick<T: Clone>(a: &Option<At<T>>, b: &Option<At<T>>) -> Option<At<T>> {
        a.clone().or_else(|| b.clone())
    }
    Settings {
        box_name: pick(&m.box_name, &global.box_name),
        hostname: pick(&m.hostname, &global.hostname),
        cpus: pick(&m.cpus, &global.cpus),
        memory: pick(&m.memory, &global.memory),
        nested: pick(&m.nested, &global.nested),
        linked_clone: pick(&m.linked_clone, &global.linked_clone),
        group: pick(&m.group, &global.group),
        boot_timeout: pick(&m.boot_timeout, &global.boot_timeout),
        provider: pick(&m.provider, &global.provider),
        nets: global.nets.iter().chain(&m.nets).cloned().collect(),
        ssh: m.ssh.clone().or_else(|| global.ssh.clone()),
        forwards: global.forwards.iter().chain(&m.forwards).cloned().collect(),
        steps: global.steps.iter().chain(&m.steps).cloned().collect(),
    }
}

pub(super) fn guess_os(box_name: &str) -> Option<&'static str> {
    let b = box_name.to_ascii_lowercase();
    [
        ("centos", "centos"),
        ("rocky", "rocky"),
        ("alma", "rocky"),
        ("rhel", "rocky"),
        ("ubuntu", "ubuntu"),
        ("jammy", "ubuntu"),
        ("focal", "ubuntu"),
        ("bionic", "ubuntu"),
        ("xenial", "ubuntu"),
        ("noble", "ubuntu"),
        ("debian", "debian"),
        ("bookworm", "debian"),
        ("bullseye", "debian"),
    ]
    .iter()
    .find(|(k, _)| b.contains(k))
    .map(|(_, v)| *v)
}

pub(super) fn prefix_of(mask: &str) -> Option<u8> {
    if let Ok(p) = mask.trim_start_matches('/').parse::<u8>() {
        return (p <= 32).then_some(p);
    }
    let m: Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    let p = bits.count_ones() as u8;
    (bits.leading_ones() as u8 == p).then_some(p)
}

pub(super) fn network_of(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Ipv4Addr::from(u32::from(ip) & mask)
}
