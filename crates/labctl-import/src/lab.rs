//! Machines → roles → lab.toml text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

use crate::eval::{At, Machine, NamePattern, Piece, Program, Settings, StepDef, StepKind};
use crate::{FileSource, ImportError, Imported, Notice, NoticeKind, Options, OutFile, Why};

struct Role {
    name: String,
    hostname: String,
    count: Option<i64>,
    start: Option<i64>,
    scale: bool,
    cpus: Option<i64>,
    memory: Option<i64>,
    nested: bool,
    ip: Option<Ipv4Addr>,
    ips: Vec<(String, Ipv4Addr)>,
    ssh_port: Option<i64>,
    forwards: Vec<(i64, i64)>,
    steps: Vec<Step>,
    /// The first node's position among all nodes, and the node count.
    nodes: usize,
}

struct Step {
    name: String,
    default_name: String,
    script: String,
    args: Vec<String>,
    run: Option<String>,
    after: Option<String>,
}

fn merged(global: &Settings, m: &Settings) -> Settings {
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

fn sanitize(s: &str, allow_dot: bool) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || (allow_dot && c == '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "node".into() } else { out }
}

/// Characters a node name may not have become `-` (no trimming: this is part of a pattern).
fn host_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn role_name(s: &str) -> String {
    let n = sanitize(s, false);
    if n.starts_with(|c: char| c.is_ascii_alphabetic()) {
        n
    } else {
        format!("r{n}")
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn guess_os(box_name: &str) -> Option<&'static str> {
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

fn prefix_of(mask: &str) -> Option<u8> {
    if let Ok(p) = mask.trim_start_matches('/').parse::<u8>() {
        return (p <= 32).then_some(p);
    }
    let m: Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    let p = bits.count_ones() as u8;
    (bits.leading_ones() as u8 == p).then_some(p)
}

fn network_of(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Ipv4Addr::from(u32::from(ip) & mask)
}

/// Lay out the path a script gets under `templates/`.
fn script_target(path: &str) -> (String, bool) {
    let mut parts = Vec::new();
    let mut moved = false;
    for c in Path::new(path).components() {
        match c {
            Component::Normal(x) => parts.push(x.to_string_lossy().to_string()),
            Component::CurDir => {}
            _ => moved = true,
        }
    }
    if parts.is_empty() {
        parts.push("script.sh".into());
        moved = true;
    }
    (format!("templates/{}", parts.join("/")), moved)
}

fn valid_step_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

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

fn steps_of(
    b: &mut Builder,
    role: &str,
    defs: &[StepDef],
    scale_const: Option<&str>,
    index_ok: bool,
    consts: &[(String, crate::eval::Val)],
) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for d in defs {
        let (script, source, stem) = match &d.kind {
            StepKind::Path(p) => {
                let (target, moved) = script_target(p);
                if moved {
                    b.push(
                        d.line,
                        NoticeKind::ScriptMoved {
                            from: p.clone(),
                            to: target.clone(),
                        },
                    );
                }
                let stem = Path::new(&target)
                    .file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default();
                (target, FileSource::Copy(PathBuf::from(p)), stem)
            }
            StepKind::Inline(text) => {
                let base = d
                    .name
                    .as_deref()
                    .filter(|n| valid_step_name(n))
                    .map_or_else(|| format!("{role}-inline"), |n| format!("{role}-{n}"));
                let mut target = format!("templates/{base}.sh");
                let mut k = 2;
                while b.files.iter().any(|f| {
                    f.path == Path::new(&target) && f.source != FileSource::Inline(text.clone())
                }) {
                    target = format!("templates/{base}-{k}.sh");
                    k += 1;
                }
                (
                    target,
                    FileSource::Inline(text.clone()),
                    "inline".to_string(),
                )
            }
        };
        if !b.files.iter().any(|f| f.path == Path::new(&script)) {
            b.files.push(OutFile {
                path: PathBuf::from(&script),
                source,
                line: d.line,
            });
        }
        let default_name = {
            let s = stem.trim_end_matches(".hbs");
            s.strip_suffix(".sh").unwrap_or(s).to_string()
        };
        let mut name = d
            .name
            .clone()
            .filter(|n| valid_step_name(n))
            .unwrap_or_else(|| {
                if valid_step_name(&default_name) {
                    return default_name.clone();
                }
                let s = sanitize(&default_name, false).replace('.', "-");
                if valid_step_name(&s) {
                    s
                } else {
                    format!("step-{s}")
                }
            });
        let base = name.clone();
        let mut k = 2;
        while out.iter().any(|s| s.name == name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        if d.args_split {
            b.push(d.line, NoticeKind::ArgsSplit { step: name.clone() });
        }
        let args = d
            .args
            .iter()
            .map(|a| {
                if !index_ok && a.pieces.contains(&Piece::Index) {
                    return escape(&a.lit);
                }
                a.pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Lit(s) => escape(s),
                        Piece::Index => "{{node.index}}".into(),
                        Piece::Const(c) if Some(c.as_str()) == scale_const => {
                            "{{lab.workers}}".into()
                        }
                        Piece::Const(c) => {
                            let var = var_name(c);
                            let val = consts
                                .iter()
                                .find(|(n, _)| n == c)
                                .map(|(_, v)| match v {
                                    crate::eval::Val::Int(i) => i.to_string(),
                                    other => quote(&other.to_text()),
                                })
                                .unwrap_or_else(|| "\"\"".into());
                            b.vars.insert(var.clone(), val);
                            format!("{{{{vars.{var}}}}}")
                        }
                    })
                    .collect::<String>()
            })
            .collect();
        out.push(Step {
            name,
            default_name,
            script,
            args,
            run: d.run.clone().filter(|r| r == "always" || r == "never"),
            after: None,
        });
    }
    out
}

fn escape(s: &str) -> String {
    s.replace("{{", "\\{{")
}

fn var_name(c: &str) -> String {
    let mut out: String = c
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|ch: char| ch.is_ascii_alphabetic()) {
        out.insert(0, 'v');
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{NoticeKind, Options, import};

    fn lab(src: &str) -> crate::Imported {
        import(
            src.as_bytes(),
            &Options {
                lab_name: "t".into(),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn times_loops_and_shifted_names() {
        // `N.times` counts from 0; `node-#{i + 1}` shifts the index so nodes are 1, 2, 3.
        let imp = lab(r##"
N = 3
BASE = "10.0.0."
Vagrant.configure("2") do |config|
  N.times do |i|
    config.vm.define "node-#{i + 1}" do |n|
      n.vm.network :private_network, :ip => BASE + "#{20 + i}"
      n.vm.provider :libvirt do |lv|
        lv.memory = "2048"
        lv.cpus = 2
        lv.nested = true
      end
    end
  end
end
"##);
        let t = &imp.lab_toml;
        assert!(t.contains("hostname = \"node-{i}\"\nscale = true\ncpus = 2\nmemory = 2048\nip = \"10.0.0.20\"\nnested_virt = true\n"), "{t}");
        assert!(t.contains("workers = 3\n"), "{t}");
        assert!(!t.contains("start ="), "start is 1, the default: {t}");
        assert!(
            !t.contains("provider ="),
            "libvirt is QEMU, the default: {t}"
        );
        assert_eq!(imp.nodes, 3);
    }

    #[test]
    fn args_keep_constants_and_the_index_symbolic() {
        let imp = lab(r##"
VER = "1.30"
N = 2
Vagrant.configure("2") do |config|
  config.vm.box = "bento/debian-12"
  (1..N).each do |i|
    config.vm.define "w#{i}" do |w|
      w.vm.provision "shell", path: "join.sh", args: [VER, "#{i}", "w#{i}.lab", N, "{{x}}"], run: "always"
      w.vm.provision "shell", inline: "echo #{VER}", args: "a b"
    end
  end
end
"##);
        let t = &imp.lab_toml;
        assert!(
            t.contains(r#"args = ["{{vars.ver}}", "{{node.index}}", "w{{node.index}}.lab", "{{lab.workers}}", "\\{{x}}"]"#),
            "{t}"
        );
        assert!(t.contains("run = \"always\""), "{t}");
        assert!(t.contains("[vars]\nver = \"1.30\"\n"), "{t}");
        assert!(t.contains("os = \"debian\""), "{t}");
        assert!(
            t.contains("script = \"templates/w-inline.sh\"\nargs = [\"a\", \"b\"]"),
            "{t}"
        );
        assert!(
            imp.notices
                .iter()
                .any(|n| matches!(&n.kind, NoticeKind::ArgsSplit { .. })),
            "{:?}",
            imp.notices
        );
        assert!(
            imp.files
                .iter()
                .any(|f| f.source == crate::FileSource::Inline("echo 1.30".into()))
        );
    }

    #[test]
    fn addresses_that_do_not_grow_by_one_are_noted() {
        let imp = lab(r##"
Vagrant.configure("2") do |config|
  (1..3).each do |i|
    config.vm.define "n#{i}" do |n|
      n.vm.network "private_network", ip: "10.0.#{i}.5", netmask: "255.255.0.0"
      n.vm.network "forwarded_port", guest: 80, host: 8080
    end
  end
end
"##);
        assert!(
            imp.lab_toml.contains("cidr = \"10.0.0.0/16\""),
            "{}",
            imp.lab_toml
        );
        assert!(imp.lab_toml.contains("count = 3"), "{}", imp.lab_toml);
        let fields: Vec<String> = imp
            .notices
            .iter()
            .filter_map(|n| match &n.kind {
                NoticeKind::DiffersBetweenNodes { field, .. } => Some(field.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(fields, ["ip", "forwarded port"]);
    }
}
