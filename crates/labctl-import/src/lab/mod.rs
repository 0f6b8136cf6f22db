//! Machines → roles → lab.toml text.

mod names;
mod roles;
mod steps;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::eval::{At, Machine, NamePattern, Program, Settings};
use crate::{ImportError, Imported, Notice, NoticeKind, Options, OutFile, Why};
use names::{host_chars, quote, role_name, sanitize};
use roles::{Role, guess_os, merged, network_of, prefix_of};
use steps::steps_of;

struct Builder {
    notices: Vec<Notice>,
    files: Vec<OutFile>,
    vars: BTreeMap<String, String>,
}

impl Builder {
    fn push(&mut self, line: usize, kind: NoticeKind) {
        let n = Notice { line, kind };
        if !self.notices.contains(&n) {
            self.notices.push(n);
        }
    }
}

pub(crate) fn build(mut p: Program, opts: &Options) -> Result<Imported, ImportError> {
    let mut b = Builder {
        notices: std::mem::take(&mut p.notices),
        files: Vec::new(),
        vars: BTreeMap::new(),
    };
    if p.machines.is_empty() {
        let g = &p.global;
        let any = g.box_name.is_some()
            || g.hostname.is_some()
            || !g.nets.is_empty()
            || !g.steps.is_empty()
            || g.provider.is_some();
        if !any {
            return Err(ImportError::NoMachine);
        }
        let name = g
            .hostname
            .as_ref()
            .map(|h| h.v.clone())
            .unwrap_or_else(|| "default".into());
        p.machines.push(Machine {
            define: 0,
            line: g.hostname.as_ref().map_or(0, |h| h.line),
            name,
            index: None,
            loop_id: None,
            probe: false,
            s: Settings::default(),
        });
    }
    let all: Vec<(Machine, Settings)> = p
        .machines
        .iter()
        .map(|m| (m.clone(), merged(&p.global, &m.s)))
        .collect();

    // Lab-wide settings: the first value wins, others are listed.
    let mut box_name: Option<At<String>> = None;
    let mut group: Option<At<String>> = None;
    let mut provider: Option<&'static str> = None;
    let mut linked_clone: Option<bool> = None;
    let mut boot_timeout: Option<i64> = None;
    for (m, s) in all.iter().filter(|(m, _)| !m.probe) {
        let _ = m;
        for (slot, val, what) in [
            (&mut box_name, &s.box_name, "vm.box"),
            (&mut group, &s.group, "--groups"),
        ] {
            match (slot.as_ref(), val) {
                (None, Some(v)) => *slot = Some(v.clone()),
                (Some(cur), Some(v)) if cur.v != v.v => b.push(
                    v.line,
                    NoticeKind::NotImported {
                        construct: format!("{what} {}", quote(&v.v)),
                        why: Why::OncePerLab,
                    },
                ),
                _ => {}
            }
        }
        if provider.is_none() {
            provider = s.provider.as_ref().map(|p| p.v);
        }
        if linked_clone.is_none() {
            linked_clone = s.linked_clone.as_ref().map(|l| l.v);
        }
        if boot_timeout.is_none() {
            boot_timeout = s.boot_timeout.as_ref().map(|l| l.v.clamp(10, 7200));
        }
    }

    // Roles, in order of their `define`.
    let mut order: Vec<usize> = Vec::new();
    for (m, _) in &all {
        if !order.contains(&m.define) {
            order.push(m.define);
        }
    }
    // Which loop scales: the one bounded by a constant named like *WORKER*, else the last one
    // bounded by a constant.
    let scaled_loop = {
        let cands: Vec<(usize, &str)> = order
            .iter()
            .filter_map(|d| {
                let m = all.iter().find(|(m, _)| m.define == *d)?;
                let l = p.loops.get(&m.0.loop_id?)?;
                let bound = l.bound.as_deref()?;
                (l.end >= l.start && p.patterns.get(d).is_some_and(Option::is_some))
                    .then_some((*d, bound))
            })
            .collect();
        cands
            .iter()
            .find(|(_, n)| n.to_ascii_uppercase().contains("WORKER"))
            .or(cands.last())
            .copied()
    };
    let scale_const = scaled_loop.map(|(_, c)| c.to_string());
    let mut workers: Option<i64> = None;

    let mut roles: Vec<Role> = Vec::new();
    let mut used_names: Vec<String> = Vec::new();
    let mut net_list: Vec<(Ipv4Addr, u8)> = Vec::new();
    let mut role_nets: Vec<Vec<(Ipv4Addr, u8, usize)>> = Vec::new();
    for d in &order {
        let mut inst: Vec<&(Machine, Settings)> = all
            .iter()
            .filter(|(m, _)| m.define == *d && !m.probe)
            .collect();
        let probes: Vec<&(Machine, Settings)> = all
            .iter()
            .filter(|(m, _)| m.define == *d && m.probe)
            .collect();
        let Some(first) = inst.first().copied() else {
            continue;
        };
        let pattern: Option<&NamePattern> = p.patterns.get(d).and_then(Option::as_ref);
        if pattern.is_none() {
            // The same name in every iteration is the same machine.
            inst.truncate(1);
        }
        let (fm, fs) = (&first.0, &first.1);
        let loop_info = fm.loop_id.and_then(|l| p.loops.get(&l));
        let shift = pattern.map_or(0, |p| p.shift);
        let index_of = |m: &Machine| m.index.unwrap_or(0) + shift;
        let mut name = match pattern {
            Some(pt) => role_name(&format!("{}{}", pt.prefix, pt.suffix)),
            None => role_name(&fm.name),
        };
        while used_names.contains(&name) {
            name.push_str("-2");
        }
        used_names.push(name.clone());
        let hostname = match pattern {
            Some(pt) => format!("{}{{i}}{}", host_chars(&pt.prefix), host_chars(&pt.suffix)),
            None => sanitize(&fm.name, true),
        };
        let node_name = |m: &Machine| match pattern {
            Some(pt) => format!(
                "{}{}{}",
                host_chars(&pt.prefix),
                index_of(m),
                host_chars(&pt.suffix)
            ),
            None => sanitize(&m.name, true),
        };
        if let Some(h) = &fs.hostname
            && h.v != fm.name
        {
            b.push(
                h.line,
                NoticeKind::HostnameIgnored {
                    machine: node_name(fm),
                    hostname: h.v.clone(),
                },
            );
        }
        let n = inst.len() as i64;
        let mut scale = false;
        let mut count = None;
        let mut start = None;
        if pattern.is_some() {
            start = Some(index_of(fm));
            if scaled_loop.is_some_and(|(sd, _)| sd == *d) {
                scale = true;
                workers = Some(n);
                b.push(
                    loop_info.map_or(fm.line, |l| l.line),
                    NoticeKind::Scaled {
                        role: name.clone(),
                        constant: loop_info.and_then(|l| l.bound.clone()),
                    },
                );
            } else if n > 1 {
                count = Some(n);
            }
        }
        // Per-node values must follow base + (i - start).
        let same = |b: &mut Builder, field: &str, f: &dyn Fn(&Settings) -> String| {
            let v0 = f(fs);
            if inst.iter().any(|(_, s)| f(s) != v0) {
                b.push(
                    fm.line,
                    NoticeKind::DiffersBetweenNodes {
                        field: field.into(),
                        role: name.clone(),
                    },
                );
            }
        };
        same(&mut b, "cpus", &|s| {
            format!("{:?}", s.cpus.as_ref().map(|x| x.v))
        });
        same(&mut b, "memory", &|s| {
            format!("{:?}", s.memory.as_ref().map(|x| x.v))
        });
        same(&mut b, "provisioning steps", &|s| {
            s.steps
                .iter()
                .map(|st| {
                    format!(
                        "{:?}{:?}",
                        st.kind,
                        st.args.iter().map(|a| &a.lit).collect::<Vec<_>>()
                    )
                })
                .collect::<Vec<_>>()
                .join(";")
        });
        let linear = |b: &mut Builder,
                      field: &'static str,
                      line: usize,
                      get: &dyn Fn(&Settings) -> Option<String>,
                      parse: &dyn Fn(&str) -> Option<u64>,
                      show: &dyn Fn(u64) -> String|
         -> Result<u64, ImportError> {
            let raw0 = get(fs).unwrap_or_default();
            let base = parse(&raw0).ok_or_else(|| ImportError::Unsupported {
                line,
                message: format!("{field} `{raw0}` is not valid"),
            })?;
            let i0 = index_of(fm);
            for (m, s) in inst.iter().skip(1) {
                let want = show(base + (index_of(m) - i0) as u64);
                if get(s).as_deref() != Some(want.as_str()) {
                    b.push(
                        line,
                        NoticeKind::DiffersBetweenNodes {
                            field: field.into(),
                            role: name.clone(),
                        },
                    );
                    return Ok(base);
                }
            }
            for (m, s) in &probes {
                let want = show(base + (index_of(m) - i0) as u64);
                let got = get(s).unwrap_or_default();
                if got != want {
                    b.push(
                        line,
                        NoticeKind::Concatenated {
                            field,
                            node: node_name(m),
                            vagrant: got,
                            labctl: want,
                        },
                    );
                    break;
                }
            }
            Ok(base)
        };
        let parse_ip = |s: &str| s.parse::<Ipv4Addr>().ok().map(|a| u64::from(u32::from(a)));
        let show_ip = |v: u64| Ipv4Addr::from(v as u32).to_string();
        let parse_port = |s: &str| s.parse::<u64>().ok();
        let show_port = |v: u64| v.to_string();

        let mut addrs = Vec::new();
        for (k, net) in fs.nets.iter().enumerate() {
            let base = linear(
                &mut b,
                "ip",
                net.line,
                &|s| s.nets.get(k).map(|n| n.ip.clone()),
                &parse_ip,
                &show_ip,
            )?;
            let ip = Ipv4Addr::from(base as u32);
            let prefix = match &net.netmask {
                Some(m) => prefix_of(m).ok_or_else(|| ImportError::Unsupported {
                    line: net.line,
                    message: format!("netmask `{m}` is not valid"),
                })?,
                None => 24,
            };
            let cidr = (network_of(ip, prefix), prefix);
            if !net_list.contains(&cidr) {
                net_list.push(cidr);
            }
            addrs.push((ip, prefix, net.line));
        }
        role_nets.push(addrs);
        let ssh_port = match &fs.ssh {
            Some(port) => Some(linear(
                &mut b,
                "ssh port",
                port.line,
                &|s| s.ssh.as_ref().map(|p| p.host.clone()),
                &parse_port,
                &show_port,
            )? as i64),
            None => None,
        };
        let mut forwards = Vec::new();
        for (k, f) in fs.forwards.iter().enumerate() {
            let host = linear(
                &mut b,
                "forwarded port",
                f.line,
                &|s| s.forwards.get(k).map(|p| p.host.clone()),
                &parse_port,
                &show_port,
            )?;
            forwards.push((f.guest, host as i64));
        }
        let steps = steps_of(
            &mut b,
            &name,
            &fs.steps,
            scale_const.as_deref(),
            shift == 0,
            &p.consts,
        );
        roles.push(Role {
            name: name.clone(),
            hostname,
            count,
            start,
            scale,
            cpus: fs.cpus.as_ref().map(|c| c.v),
            memory: fs.memory.as_ref().map(|c| c.v),
            nested: fs.nested.as_ref().is_some_and(|c| c.v),
            ip: None,
            ips: Vec::new(),
            ssh_port,
            forwards,
            steps,
            nodes: inst.len(),
        });
    }

    // Networks: in order of first use; the first is every node's primary address.
    let net_names: Vec<String> = (0..net_list.len())
        .map(|i| {
            if i == 0 {
                "private".into()
            } else {
                format!("net{i}")
            }
        })
        .collect();
    let mut taken: Vec<Ipv4Addr> = Vec::new();
    for (role, addrs) in roles.iter_mut().zip(&role_nets) {
        for (ip, prefix, _) in addrs {
            let cidr = (network_of(*ip, *prefix), *prefix);
            let k = net_list.iter().position(|c| *c == cidr).unwrap_or(0);
            if k == 0 && role.ip.is_none() {
                role.ip = Some(*ip);
            } else if !role.ips.iter().any(|(n, _)| *n == net_names[k]) && k != 0 {
                role.ips.push((net_names[k].clone(), *ip));
            }
            for j in 0..role.nodes as u32 {
                taken.push(Ipv4Addr::from(u32::from(*ip) + j));
            }
        }
    }
    if let Some(&(net, prefix)) = net_list.first() {
        // lab.toml needs an address on the first network for every node.
        let top = u32::from(net) | (u32::MAX >> prefix);
        let mut next = top - 1;
        for role in roles.iter_mut().filter(|r| r.ip.is_none()) {
            let n = if role.scale {
                workers.unwrap_or(1) as u32
            } else {
                role.count.unwrap_or(1) as u32
            };
            let first = next - (n - 1);
            while (first..=next).any(|a| taken.contains(&Ipv4Addr::from(a))) {
                next -= 1;
            }
            let first = next - (n - 1);
            role.ip = Some(Ipv4Addr::from(first));
            b.push(
                0,
                NoticeKind::NotImported {
                    construct: format!(
                        "role {} has no private_network address; labctl needs one, so it gets {}",
                        role.name,
                        Ipv4Addr::from(first)
                    ),
                    why: Why::Automatic,
                },
            );
            next = first - 1;
        }
    }

    // Vagrant provisions machines one after another: keep that order between roles.
    let mut prev: Option<String> = None;
    for role in roles.iter_mut() {
        if let Some(first) = role.steps.first_mut()
            && let Some(pv) = &prev
        {
            first.after = Some(pv.clone());
            b.push(
                0,
                NoticeKind::Sequential {
                    role: role.name.clone(),
                    after: pv.clone(),
                },
            );
        }
        if let Some(last) = role.steps.last() {
            prev = Some(format!("{}.{}", role.name, last.name));
        }
    }
    if roles.iter().any(|r| !r.steps.is_empty()) {
        b.push(0, NoticeKind::EgressUnknown);
    }

    let os = match box_name.as_ref().and_then(|bx| guess_os(&bx.v)) {
        Some(os) => {
            b.push(0, NoticeKind::OsGuessed { os, from_box: true });
            os
        }
        None => {
            b.push(
                0,
                NoticeKind::OsGuessed {
                    os: "debian",
                    from_box: false,
                },
            );
            "debian"
        }
    };

    // The text.
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Imported from a Vagrantfile by `labctl import`; see docs/lab-spec.md."
    );
    let _ = writeln!(t, "[lab]");
    let _ = writeln!(t, "name = {}", quote(&opts.lab_name));
    if provider == Some("virtualbox") {
        let _ = writeln!(t, "provider = \"virtualbox\"");
    }
    if let Some(bx) = &box_name {
        let _ = writeln!(t, "box = {}", quote(&bx.v));
    }
    if let Some(g) = &group {
        let _ = writeln!(t, "group = {}", quote(&g.v));
    }
    let _ = writeln!(t, "os = {}", quote(os));
    if let Some(w) = workers {
        let _ = writeln!(t, "workers = {w}");
    }
    if linked_clone == Some(false) {
        let _ = writeln!(t, "linked_clone = false");
    }
    if let Some(bt) = boot_timeout {
        let _ = writeln!(t, "boot_timeout = {bt}");
    }
    if !b.vars.is_empty() {
        let _ = writeln!(t, "\n[vars]");
        for (k, v) in &b.vars {
            let _ = writeln!(t, "{k} = {v}");
        }
    }
    for (i, (net, prefix)) in net_list.iter().enumerate() {
        let _ = writeln!(t, "\n[[network]]");
        let _ = writeln!(t, "name = {}", quote(&net_names[i]));
        let _ = writeln!(t, "cidr = \"{net}/{prefix}\"");
    }
    let mut nodes = 0;
    for r in &roles {
        nodes += if r.scale {
            workers.unwrap_or(1) as usize
        } else {
            r.count.unwrap_or(1) as usize
        };
        let _ = writeln!(t, "\n[role.{}]", r.name);
        let _ = writeln!(t, "hostname = {}", quote(&r.hostname));
        if r.scale {
            let _ = writeln!(t, "scale = true");
        }
        if let Some(c) = r.count {
            let _ = writeln!(t, "count = {c}");
        }
        if let Some(s) = r.start
            && s != 1
        {
            let _ = writeln!(t, "start = {s}");
        }
        if let Some(c) = r.cpus {
            let _ = writeln!(t, "cpus = {c}");
        }
        if let Some(m) = r.memory {
            let _ = writeln!(t, "memory = {m}");
        }
        if let Some(ip) = r.ip {
            let _ = writeln!(t, "ip = \"{ip}\"");
        }
        if !r.ips.is_empty() {
            let list: Vec<String> = r
                .ips
                .iter()
                .map(|(n, ip)| format!("{n} = \"{ip}\""))
                .collect();
            let _ = writeln!(t, "ips = {{ {} }}", list.join(", "));
        }
        if let Some(p) = r.ssh_port {
            let _ = writeln!(t, "ssh_port = {p}");
        }
        if r.nested {
            let _ = writeln!(t, "nested_virt = true");
        }
        for (g, h) in &r.forwards {
            let _ = writeln!(t, "\n[[role.{}.forward]]", r.name);
            let _ = writeln!(t, "guest = {g}");
            let _ = writeln!(t, "host = {h}");
        }
        for s in &r.steps {
            let _ = writeln!(t, "\n[[role.{}.step]]", r.name);
            if s.name != s.default_name {
                let _ = writeln!(t, "name = {}", quote(&s.name));
            }
            let _ = writeln!(t, "script = {}", quote(&s.script));
            if !s.args.is_empty() {
                let a: Vec<String> = s.args.iter().map(|a| quote(a)).collect();
                let _ = writeln!(t, "args = [{}]", a.join(", "));
            }
            if let Some(run) = &s.run {
                let _ = writeln!(t, "run = {}", quote(run));
            }
            if let Some(a) = &s.after {
                let _ = writeln!(t, "after = [{}]", quote(a));
            }
        }
    }
    b.notices.sort_by_key(|n| n.line);
    Ok(Imported {
        lab_toml: t,
        files: b.files,
        notices: b.notices,
        nodes,
    })
}

#[cfg(test)]
mod tests;
