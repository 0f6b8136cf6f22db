//! `build`: the lab-level keys, then each concern's checks in order.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::networks::{check_addresses, parse_cidr, parse_range};
use super::roles::build_roles;
use super::steps::check_graph;
use super::templates::{Roots, check_templates};
use super::{Ctx, DEFAULT_BOX, MAX_WORKERS, Overrides, enum_value, ident_ok};
use crate::error::Sink;
use crate::model::{Accel, Lab, Network, NetworkKind, Os, Provider, mask};
use crate::parse::{RawLab, RawRole};

pub(super) fn lab_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
}

/// Defaults and validation. `file` is the absolute path of lab.toml.
pub(crate) fn build(raw: RawLab, file: &Path, ov: Overrides, sink: &mut Sink<'_>) -> Option<Lab> {
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut cx = Ctx { sink };
    let sink = &mut *cx.sink;

    // [lab]
    let name = match &raw.name {
        Some(n) if lab_name_ok(&n.v) => n.v.clone(),
        Some(n) => {
            sink.at(
                &n.span,
                "lab.name",
                format!(
                    "`{}` is not a valid lab name: use 1-40 lowercase letters, digits and dashes",
                    n.v
                ),
            );
            n.v.clone()
        }
        None => {
            if raw.lab_span != (0..0) {
                sink.hint(
                    &raw.lab_span,
                    "lab.name",
                    "missing",
                    "add `name = \"my-lab\"` under [lab]",
                );
            }
            String::new()
        }
    };
    let provider = enum_value(
        raw.provider.as_ref(),
        "lab.provider",
        &[
            ("qemu", Provider::Qemu),
            ("virtualbox", Provider::Virtualbox),
            ("libvirt", Provider::Libvirt),
        ],
        ov.defaults.provider.unwrap_or(Provider::Qemu),
        sink,
    );
    let uri = raw
        .uri
        .as_ref()
        .and_then(|u| super::uri_value(u, provider, sink));
    let accel = enum_value(
        raw.accel.as_ref(),
        "lab.accel",
        &[
            ("auto", Accel::Auto),
            ("kvm", Accel::Kvm),
            ("tcg", Accel::Tcg),
        ],
        ov.defaults.accel.unwrap_or(Accel::Auto),
        sink,
    );
    let os = enum_value(
        raw.os.as_ref(),
        "lab.os",
        &Os::ALL.map(|o| (o.as_str(), o)),
        Os::Debian,
        sink,
    );
    let box_name = raw
        .box_name
        .as_ref()
        .map_or_else(|| DEFAULT_BOX.to_string(), |b| b.v.clone());
    if let Some(b) = &raw.box_name
        && (b.v.is_empty() || b.v.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        sink.at(
            &b.span,
            "lab.box",
            "a box name must be non-empty with no spaces",
        );
    }
    let egress = !ov.no_egress
        && raw
            .egress
            .as_ref()
            .map_or(ov.defaults.egress.unwrap_or(true), |e| e.v);
    let boot_timeout = match &raw.boot_timeout {
        Some(t) if !(10..=7200).contains(&t.v) => {
            sink.at(
                &t.span,
                "lab.boot_timeout",
                format!("must be 10-7200 seconds; got {}", t.v),
            );
            600
        }
        Some(t) => t.v.unsigned_abs(),
        None => 600,
    };
    let templates_dir = raw
        .templates
        .as_ref()
        .map_or_else(|| dir.join("templates"), |t| dir.join(&t.v));
    if let Some(t) = &raw.templates
        && !templates_dir.is_dir()
    {
        sink.at(
            &t.span,
            "lab.templates",
            format!("directory {} does not exist", templates_dir.display()),
        );
    }
    let roots = Roots::new(&dir, &raw.trusted_dirs, sink);
    if let Some(t) = &raw.templates
        && templates_dir.is_dir()
        && !roots.allows(&templates_dir)
    {
        sink.hint(
            &t.span,
            "lab.templates",
            format!("`{}` is outside the lab directory", t.v),
            format!(
                "list it in `lab.trusted_dirs` to allow it: trusted_dirs = [\"{}\"]",
                t.v
            ),
        );
    }

    // [vars]
    let mut vars = BTreeMap::new();
    for (k, v) in &raw.vars {
        let field = format!("vars.{}", k.v);
        if !ident_ok(&k.v) {
            sink.at(
                &k.span,
                &field,
                "variable names start with a letter and use only letters, digits and `_`",
            );
        }
        if v.v.chars().any(|c| c.is_control() && c != '\t') {
            sink.at(&v.span, &field, "value contains a control character");
        }
        vars.insert(k.v.clone(), v.v.clone());
    }

    // [[network]]
    let mut networks: Vec<Network> = Vec::new();
    for (i, rn) in raw.networks.iter().enumerate() {
        let name = rn.name.as_ref().map_or_else(
            || {
                if i == 0 {
                    "private".to_string()
                } else {
                    format!("net{i}")
                }
            },
            |n| n.v.clone(),
        );
        if let Some(n) = &rn.name
            && !ident_ok(&n.v)
        {
            sink.at(
                &n.span,
                &format!("{}.name", rn.path),
                "use letters, digits and `_`",
            );
        }
        if networks.iter().any(|n| n.name == name) {
            sink.at(
                &rn.span,
                &format!("{}.name", rn.path),
                format!("network `{name}` is declared twice"),
            );
        }
        let Some(cidr) = &rn.cidr else {
            sink.hint(
                &rn.span,
                &format!("{}.cidr", rn.path),
                "missing",
                "e.g. `cidr = \"192.168.1.0/24\"`",
            );
            continue;
        };
        let Some((ip, prefix)) = parse_cidr(&cidr.v) else {
            sink.hint(
                &cidr.span,
                &format!("{}.cidr", rn.path),
                format!("`{}` is not an IPv4 network", cidr.v),
                "write it as ADDRESS/PREFIX, e.g. 192.168.1.0/24",
            );
            continue;
        };
        if !(8..=30).contains(&prefix) {
            sink.at(
                &cidr.span,
                &format!("{}.cidr", rn.path),
                format!("prefix must be 8-30; got /{prefix}"),
            );
            continue;
        }
        let address = Ipv4Addr::from(u32::from(ip) & mask(prefix));
        let kind = enum_value(
            rn.kind.as_ref(),
            &format!("{}.kind", rn.path),
            &[
                ("hostonly", NetworkKind::Hostonly),
                ("internal", NetworkKind::Internal),
            ],
            NetworkKind::Hostonly,
            sink,
        );
        let mut net = Network {
            name,
            address,
            prefix,
            kind,
            host_ip: Ipv4Addr::from(u32::from(address) + 1),
            reserved: Vec::new(),
        };
        if let Some(h) = &rn.host_ip {
            match h.v.parse::<Ipv4Addr>() {
                Ok(hip) if net.contains(hip) => net.host_ip = hip,
                Ok(_) => sink.at(
                    &h.span,
                    &format!("{}.host_ip", rn.path),
                    format!("{} is outside {}", h.v, net.cidr()),
                ),
                Err(_) => sink.at(
                    &h.span,
                    &format!("{}.host_ip", rn.path),
                    format!("`{}` is not an IPv4 address", h.v),
                ),
            }
        }
        for (j, r) in rn.reserved.iter().enumerate() {
            let field = format!("{}.reserved[{j}]", rn.path);
            match parse_range(&r.v) {
                Some((a, b)) if net.contains(a) && net.contains(b) => net.reserved.push((a, b)),
                Some(_) => sink.at(
                    &r.span,
                    &field,
                    format!("range {} is outside {}", r.v, net.cidr()),
                ),
                None => sink.hint(
                    &r.span,
                    &field,
                    format!("`{}` is not an address range", r.v),
                    "write FIRST-LAST, e.g. 192.168.1.11-192.168.1.13, or a CIDR",
                ),
            }
        }
        networks.push(net);
    }

    // [role.*]
    let scaled: Vec<&RawRole> = raw
        .roles
        .iter()
        .filter(|r| r.scale.as_ref().is_some_and(|s| s.v))
        .collect();
    for extra in scaled.iter().skip(1) {
        if let Some(s) = &extra.scale {
            cx.sink.at(
                &s.span,
                &format!("role.{}.scale", extra.name.v),
                format!(
                    "only one role may scale with --workers; `{}` already does",
                    scaled[0].name.v
                ),
            );
        }
    }
    let sink = &mut *cx.sink;
    let workers = match (ov.workers, &raw.workers) {
        (Some(n), _) => {
            if scaled.is_empty() {
                sink.unlocated(
                    "--workers",
                    "this lab has no role that scales",
                    "drop --workers, or set `scale = true` on the worker role",
                );
                n
            } else if !(1..=MAX_WORKERS).contains(&n) {
                sink.unlocated(
                    "--workers",
                    format!("must be between 1 and {MAX_WORKERS}; got {n}"),
                    if n < 1 {
                        "for a lab without workers, use a lab whose roles do not scale"
                    } else {
                        "a bigger class needs more labs, not more workers in one lab"
                    },
                );
                // Go on with one worker, as for a bad `lab.workers`: expanding
                // `--workers 4000000000` into nodes would never finish.
                1
            } else {
                n
            }
        }
        (None, Some(w)) => {
            if !(1..=i64::from(MAX_WORKERS)).contains(&w.v) {
                let hint = if w.v < 1 {
                    "for a lab without workers, remove the scaled role (`scale = true`) instead"
                } else {
                    "a bigger class needs more labs, not more workers in one lab"
                };
                sink.hint(
                    &w.span,
                    "lab.workers",
                    format!("must be between 1 and {MAX_WORKERS}; got {}", w.v),
                    hint,
                );
                1
            } else {
                u32::try_from(w.v).unwrap_or(1)
            }
        }
        (None, None) => 1,
    };

    let networks_declared = !raw.networks.is_empty();
    let (roles, mut nodes) = build_roles(
        &raw.roles,
        &networks,
        networks_declared,
        workers,
        &templates_dir,
        &roots,
        &mut cx,
    );
    if ov.port_offset != 0 {
        shift_ports(&mut nodes, ov.port_offset);
    }
    let sink = &mut *cx.sink;
    if raw.roles.is_empty() && raw.lab_span != (0..0) {
        sink.hint(
            &raw.lab_span,
            "role",
            "the lab defines no nodes",
            "add a `[role.master]` table",
        );
    }

    let (bundle, package_sets, images) = crate::packages::build(&raw, sink);
    let lab = Lab {
        bundle,
        package_sets,
        images,
        file: file.to_path_buf(),
        dir,
        name,
        provider,
        uri,
        box_name,
        group: raw.group.as_ref().map(|g| g.v.clone()),
        accel,
        egress,
        os,
        workers: if scaled.is_empty() { 0 } else { workers },
        linked_clone: raw.linked_clone.as_ref().is_none_or(|v| v.v),
        golden_snapshot: raw.golden_snapshot.as_ref().is_none_or(|v| v.v),
        boot_timeout: Duration::from_secs(boot_timeout),
        templates_dir,
        vars,
        networks,
        roles,
        nodes,
    };
    check_addresses(&lab, &raw, sink);
    check_graph(&lab, &raw, sink);
    if sink.diags.is_empty() {
        check_templates(&lab, &raw, sink);
    }
    Some(lab)
}

/// Move every host port by `offset` (`Overrides::port_offset`). A port that leaves 1-65535
/// becomes 0, which `check_addresses` reports as out of range at the role's line.
fn shift_ports(nodes: &mut [crate::model::Node], offset: i32) {
    let shift = |p: u16| {
        if p == 0 {
            return 0;
        }
        u16::try_from(i64::from(p) + i64::from(offset)).unwrap_or(0)
    };
    for n in nodes {
        n.ssh_port = shift(n.ssh_port);
        for f in &mut n.forwards {
            f.host = shift(f.host);
        }
    }
}
