//! Networks, CIDRs, ranges and node addresses.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use super::role_span;
use crate::error::Sink;
use crate::model::{Lab, NetworkKind, mask};
use crate::parse::RawLab;

pub(super) fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.trim().parse().ok()?;
    let prefix: u8 = prefix.trim().parse().ok()?;
    (prefix <= 32).then_some((ip, prefix))
}

pub(super) fn parse_range(s: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().ok()?;
        let b: Ipv4Addr = b.trim().parse().ok()?;
        return (u32::from(a) <= u32::from(b)).then_some((a, b));
    }
    if s.contains('/') {
        let (ip, prefix) = parse_cidr(s)?;
        let lo = u32::from(ip) & mask(prefix);
        return Some((Ipv4Addr::from(lo), Ipv4Addr::from(lo | !mask(prefix))));
    }
    let ip: Ipv4Addr = s.trim().parse().ok()?;
    Some((ip, ip))
}

pub(super) fn check_addresses(lab: &Lab, raw: &RawLab, sink: &mut Sink<'_>) {
    let mut seen_ip: HashMap<(String, Ipv4Addr), String> = HashMap::new();
    let mut seen_port: HashMap<u16, String> = HashMap::new();
    let mut reported_roles: BTreeSet<(String, &'static str)> = BTreeSet::new();
    for node in &lab.nodes {
        let Some(rr) = role_span(raw, &node.role) else {
            continue;
        };
        let rpath = format!("role.{}", node.role);
        for nic in &node.nics {
            let Some(net) = lab.networks.iter().find(|n| n.name == nic.network) else {
                continue;
            };
            let (span, field) = if lab.networks.first().is_some_and(|n| n.name == net.name) {
                (
                    rr.ip.as_ref().map(|s| s.span.clone()),
                    format!("{rpath}.ip"),
                )
            } else {
                (
                    rr.ips
                        .iter()
                        .find(|(k, _)| k.v == net.name)
                        .map(|(_, v)| v.span.clone()),
                    format!("{rpath}.ips.{}", net.name),
                )
            };
            let span = span.unwrap_or_else(|| rr.name.span.clone());
            let ip = nic.ip;
            let problem = if !net.contains(ip) {
                Some(format!(
                    "{} gets {ip}, outside network `{}` ({})",
                    node.name,
                    net.name,
                    net.cidr()
                ))
            } else if ip == net.address || ip == net.broadcast() {
                Some(format!(
                    "{} gets {ip}, the network's own or broadcast address",
                    node.name
                ))
            } else if net.kind == NetworkKind::Hostonly && ip == net.host_ip {
                Some(format!(
                    "{} gets {ip}, the host's address on `{}`",
                    node.name, net.name
                ))
            } else if let Some((a, b)) = net
                .reserved
                .iter()
                .find(|(a, b)| (u32::from(*a)..=u32::from(*b)).contains(&u32::from(ip)))
            {
                Some(format!(
                    "{} gets {ip}, inside the reserved range {a}-{b}",
                    node.name
                ))
            } else if let Some(other) = seen_ip.get(&(net.name.clone(), ip)) {
                Some(format!("{} gets {ip}, already used by {other}", node.name))
            } else {
                seen_ip.insert((net.name.clone(), ip), node.name.clone());
                None
            };
            if let Some(p) = problem
                && reported_roles.insert((format!("{field}{ip}"), "ip"))
            {
                sink.hint(
                    &span,
                    &field,
                    p,
                    "move the base address or shrink the worker count",
                );
            }
        }
        let port_span = rr
            .ssh_port
            .as_ref()
            .map_or_else(|| rr.name.span.clone(), |p| p.span.clone());
        let mut ports = vec![(node.ssh_port, format!("{rpath}.ssh_port"), port_span, "SSH")];
        for (f, rf) in node.forwards.iter().zip(rr.forwards.iter()) {
            let span = rf
                .host
                .as_ref()
                .or(rf.guest.as_ref())
                .map_or(rf.span.clone(), |s| s.span.clone());
            ports.push((
                f.host,
                format!("{}.host", rf.path),
                span.clone(),
                "forwarded",
            ));
            if f.guest == 0 {
                sink.at(
                    &span,
                    &format!("{}.guest", rf.path),
                    "guest port must be 1-65535",
                );
            }
        }
        for (port, field, span, what) in ports {
            let problem = if port < 1024 {
                Some(format!(
                    "{} {what} port would be {}, outside 1024-65535",
                    node.name,
                    if port == 0 {
                        "out of range".to_string()
                    } else {
                        port.to_string()
                    }
                ))
            } else if let Some(other) = seen_port.get(&port) {
                Some(format!(
                    "{} {what} port {port} is already used by {other}",
                    node.name
                ))
            } else {
                seen_port.insert(port, node.name.clone());
                None
            };
            if let Some(p) = problem {
                sink.hint(
                    &span,
                    &field,
                    p,
                    "ports are computed as base + node number - 1; pick a base with room",
                );
            }
        }
    }
}
