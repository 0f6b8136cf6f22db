//! Roles expanded into nodes: counts, names, SSH ports, forwards.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::Path;

use super::steps::build_steps;
use super::templates::Roots;
use super::{Ctx, MAX_WORKERS, dns_label_ok, ident_ok, pos_u32};
use crate::error::suggest;
use crate::model::{Forward, Network, NicAddr, Node, Role};
use crate::parse::{RawRole, S};

pub(super) const DEFAULT_SSH_PORT_BASE: u16 = 2222;

#[allow(
    clippy::too_many_lines,
    reason = "one pass over roles keeps each field's checks beside its default"
)]
pub(super) fn build_roles(
    raw_roles: &[RawRole],
    networks: &[Network],
    networks_declared: bool,
    workers: u32,
    templates_dir: &Path,
    roots: &Roots,
    cx: &mut Ctx<'_, '_>,
) -> (Vec<Role>, Vec<Node>) {
    let sink = &mut *cx.sink;
    let mut roles = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for rr in raw_roles {
        let path = format!("role.{}", rr.name.v);
        if !ident_ok(&rr.name.v) && !dns_label_ok(&rr.name.v) {
            sink.at(
                &rr.name.span,
                &path,
                "role names use letters, digits, `-` and `_`",
            );
        }
        let scale = rr.scale.as_ref().is_some_and(|s| s.v);
        let count = if scale {
            if let Some(c) = &rr.count {
                sink.hint(
                    &c.span,
                    &format!("{path}.count"),
                    "a scaled role takes its count from lab.workers",
                    "remove `count`",
                );
            }
            workers
        } else {
            pos_u32(
                rr.count.as_ref(),
                &format!("{path}.count"),
                1,
                i64::from(MAX_WORKERS),
                1,
                sink,
            )
        };
        let start = pos_u32(
            rr.start.as_ref(),
            &format!("{path}.start"),
            0,
            1000,
            1,
            sink,
        );
        let cpus = pos_u32(rr.cpus.as_ref(), &format!("{path}.cpus"), 1, 64, 1, sink);
        let memory = pos_u32(
            rr.memory.as_ref(),
            &format!("{path}.memory"),
            256,
            262_144,
            1024,
            sink,
        );
        let hostname = rr.hostname.as_ref().map_or_else(
            || {
                if count > 1 || scale {
                    format!("{}{{i}}", rr.name.v)
                } else {
                    rr.name.v.clone()
                }
            },
            |h| h.v.clone(),
        );
        let hostname_span = rr
            .hostname
            .as_ref()
            .map_or(rr.name.span.clone(), |h| h.span.clone());
        if (count > 1 || scale) && !hostname.contains("{i}") {
            sink.hint(
                &hostname_span,
                &format!("{path}.hostname"),
                format!("`{hostname}` would give every node of this role the same name"),
                "put `{i}` where the node number goes, e.g. \"w{i}-k8s\"",
            );
        }
        let steps = build_steps(&rr.steps, &path, templates_dir, roots, sink);
        // Addresses for each network.
        let mut bases: Vec<(usize, S<Ipv4Addr>)> = Vec::new();
        if let Some(net) = networks.first() {
            match &rr.ip {
                Some(ip) => match ip.v.parse::<Ipv4Addr>() {
                    Ok(a) => bases.push((0, S { v: a, span: ip.span.clone() })),
                    Err(_) => sink.hint(
                        &ip.span,
                        &format!("{path}.ip"),
                        format!("`{}` is not an IPv4 address", ip.v),
                        "addresses are computed per node from this base: give a plain address such as 192.168.1.101",
                    ),
                },
                None => sink.hint(
                    &rr.name.span,
                    &format!("{path}.ip"),
                    format!("missing: every node needs an address on network `{}`", net.name),
                    format!("add `ip = \"...\"` inside {}", net.cidr()),
                ),
            }
        } else if let Some(ip) = rr.ip.as_ref().filter(|_| !networks_declared) {
            sink.hint(
                &ip.span,
                &format!("{path}.ip"),
                "the lab declares no network",
                "add a [[network]] table",
            );
        }
        for (k, v) in &rr.ips {
            let field = format!("{path}.ips.{}", k.v);
            match networks.iter().position(|n| n.name == k.v) {
                Some(0) => sink.hint(
                    &k.span,
                    &field,
                    "the first network's address is `ip`",
                    "move it to `ip`",
                ),
                Some(ni) => match v.v.parse::<Ipv4Addr>() {
                    Ok(a) => bases.push((
                        ni,
                        S {
                            v: a,
                            span: v.span.clone(),
                        },
                    )),
                    Err(_) => sink.at(&v.span, &field, format!("`{}` is not an IPv4 address", v.v)),
                },
                None => {
                    let hint = suggest(&k.v, networks.iter().map(|n| n.name.as_str())).map_or_else(
                        || "declare it in a [[network]] table".to_string(),
                        |s| format!("did you mean `{s}`?"),
                    );
                    sink.hint(&k.span, &field, format!("no network named `{}`", k.v), hint);
                }
            }
        }
        let ssh_base = rr.ssh_port.as_ref().map(|p| p.v);
        let forwards: Vec<(i64, i64, Range<usize>, String)> = rr
            .forwards
            .iter()
            .filter_map(|f| match (&f.guest, &f.host) {
                (Some(g), Some(h)) => Some((g.v, h.v, h.span.clone(), f.path.clone())),
                (Some(g), None) => Some((g.v, g.v, g.span.clone(), f.path.clone())),
                (None, _) => {
                    sink.at(&f.span, &format!("{}.guest", f.path), "missing guest port");
                    None
                }
            })
            .collect();
        for k in 0..count {
            let index = start + k;
            let name = hostname.replace("{i}", &index.to_string());
            if !dns_label_ok(&name) {
                sink.at(
                    &hostname_span,
                    &format!("{path}.hostname"),
                    format!("`{name}` is not a valid hostname (letters, digits, `-`, up to 63)"),
                );
            }
            let ordinal = nodes.len();
            let mut nics = Vec::new();
            for (ni, base) in &bases {
                let ip = u32::from(base.v).checked_add(k);
                nics.push(NicAddr {
                    network: networks[*ni].name.clone(),
                    ip: Ipv4Addr::from(ip.unwrap_or(u32::MAX)),
                    prefix: networks[*ni].prefix,
                });
            }
            let ssh_port = port_at(ssh_base, k, ordinal);
            let node_forwards = forwards
                .iter()
                .map(|(g, h, _, _)| Forward {
                    guest: u16::try_from(*g).unwrap_or(0),
                    host: u16::try_from(h.saturating_add(i64::from(k))).unwrap_or(0),
                })
                .collect();
            nodes.push(Node {
                name,
                role: rr.name.v.clone(),
                index,
                ordinal,
                cpus,
                memory_mb: memory,
                ssh_port,
                nics,
                forwards: node_forwards,
                nested_virt: rr.nested_virt.as_ref().is_some_and(|v| v.v),
            });
        }
        roles.push(Role {
            name: rr.name.v.clone(),
            hostname,
            count,
            start,
            scale,
            steps,
            check: rr.check.as_ref().map(|c| crate::model::Hook {
                run: c.v.clone(),
                on: rr.check_on.iter().map(|o| o.v.clone()).collect(),
            }),
            forget: rr.forget.as_ref().map(|c| crate::model::Hook {
                run: c.v.clone(),
                on: rr.forget_on.iter().map(|o| o.v.clone()).collect(),
            }),
        });
    }
    (roles, nodes)
}

/// SSH port of the k-th node of a role: base + k, or the lab default by ordinal. 0 = out of range.
pub(super) fn port_at(base: Option<i64>, k: u32, ordinal: usize) -> u16 {
    let p = match base {
        Some(b) => b.saturating_add(i64::from(k)),
        None => i64::from(DEFAULT_SSH_PORT_BASE) + i64::try_from(ordinal).unwrap_or(0),
    };
    u16::try_from(p).unwrap_or(0)
}
