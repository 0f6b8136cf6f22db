//! Stages 2 and 3: fill defaults, then check meaning and expand roles into nodes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Sink, suggest};
use crate::graph::Graph;
use crate::model::{
    Accel, Forward, Lab, Network, NetworkKind, NicAddr, Node, Provider, Role, RunPolicy, Step,
    StepRef, StepSource, mask,
};
use crate::parse::{RawLab, RawRole, RawStep, S};
use crate::render::{RenderFailure, Renderer};

/// Settings from the command line that override the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `--workers N`.
    pub workers: Option<u32>,
    /// `LABCTL_NO_EGRESS=1`: force `egress = false`.
    pub no_egress: bool,
    /// Defaults for keys lab.toml does not set (from the user's config file).
    pub defaults: LabDefaults,
}

/// Values that apply when lab.toml does not set the key: lab.toml wins over them, and they
/// win over labctl's built-in defaults. The binary fills them from the user config file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabDefaults {
    pub provider: Option<Provider>,
    pub accel: Option<Accel>,
    pub egress: Option<bool>,
}

/// Largest worker count accepted.
pub const MAX_WORKERS: u32 = 200;
pub const DEFAULT_BOX: &str = "labctl/debian-12";
const DEFAULT_SSH_PORT_BASE: u16 = 2222;

fn ident_ok(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A host name labctl also uses as a directory name: it starts and ends with a letter or
/// digit, so `.` and `..` (and `-x`) are not names.
fn dns_label_ok(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn lab_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.trim().parse().ok()?;
    let prefix: u8 = prefix.trim().parse().ok()?;
    (prefix <= 32).then_some((ip, prefix))
}

fn parse_range(s: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
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

fn enum_value<T: Copy>(
    v: Option<&S<String>>,
    field: &str,
    choices: &[(&str, T)],
    default: T,
    sink: &mut Sink<'_>,
) -> T {
    let Some(v) = v else { return default };
    if let Some((_, t)) = choices.iter().find(|(name, _)| *name == v.v) {
        return *t;
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let hint = match suggest(&v.v, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("expected one of: {}", names.join(", ")),
    };
    sink.hint(&v.span, field, format!("unknown value `{}`", v.v), hint);
    default
}

/// Where a lab may read its templates and scripts from: its own directory and the
/// directories it names in `lab.trusted_dirs`, after resolving symbolic links. A lab handed
/// around as a zip cannot make labctl upload `~/.ssh/id_ed25519` to a guest as a "script".
struct Roots {
    lab: PathBuf,
    resolved: Vec<PathBuf>,
}

impl Roots {
    fn new(dir: &Path, trusted: &[S<String>], sink: &mut Sink<'_>) -> Roots {
        let mut resolved: Vec<PathBuf> = std::fs::canonicalize(dir).into_iter().collect();
        for t in trusted {
            match std::fs::canonicalize(dir.join(&t.v)) {
                Ok(p) if p.is_dir() => resolved.push(p),
                _ => sink.at(
                    &t.span,
                    "lab.trusted_dirs",
                    format!("directory `{}` does not exist", t.v),
                ),
            }
        }
        Roots {
            lab: dir.to_path_buf(),
            resolved,
        }
    }

    /// Whether `path` (which exists) resolves inside the lab or a trusted directory.
    fn allows(&self, path: &Path) -> bool {
        std::fs::canonicalize(path).is_ok_and(|p| self.resolved.iter().any(|r| p.starts_with(r)))
    }
}

struct Ctx<'a, 's> {
    sink: &'a mut Sink<'s>,
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
        ],
        ov.defaults.provider.unwrap_or(Provider::Qemu),
        sink,
    );
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
        &[
            ("debian", "debian"),
            ("ubuntu", "ubuntu"),
            ("rocky", "rocky"),
            ("centos", "centos"),
        ],
        "debian",
        sink,
    )
    .to_string();
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
    let (roles, nodes) = build_roles(
        &raw.roles,
        &networks,
        networks_declared,
        workers,
        &templates_dir,
        &roots,
        &mut cx,
    );
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

fn pos_u32(
    v: Option<&S<i64>>,
    field: &str,
    min: i64,
    max: i64,
    default: u32,
    sink: &mut Sink<'_>,
) -> u32 {
    match v {
        Some(x) if (min..=max).contains(&x.v) => u32::try_from(x.v).unwrap_or(default),
        Some(x) => {
            sink.at(
                &x.span,
                field,
                format!("must be between {min} and {max}; got {}", x.v),
            );
            default
        }
        None => default,
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one pass over roles keeps each field's checks beside its default"
)]
fn build_roles(
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
fn port_at(base: Option<i64>, k: u32, ordinal: usize) -> u16 {
    let p = match base {
        Some(b) => b.saturating_add(i64::from(k)),
        None => i64::from(DEFAULT_SSH_PORT_BASE) + i64::try_from(ordinal).unwrap_or(0),
    };
    u16::try_from(p).unwrap_or(0)
}

fn build_steps(
    raw: &[RawStep],
    role_path: &str,
    templates_dir: &Path,
    roots: &Roots,
    sink: &mut Sink<'_>,
) -> Vec<Step> {
    let lab_dir = roots.lab.as_path();
    let mut steps: Vec<Step> = Vec::new();
    for rs in raw {
        let source = match (&rs.template, &rs.script) {
            (Some(t), None) => {
                let p = templates_dir.join(&t.v);
                if !p.is_file() {
                    let hint = std::fs::read_dir(p.parent().unwrap_or(templates_dir))
                        .ok()
                        .and_then(|rd| {
                            let names: Vec<String> = rd
                                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                                .collect();
                            let file = Path::new(&t.v).file_name()?.to_str()?.to_string();
                            suggest(&file, names.iter().map(String::as_str))
                                .map(|s| format!("did you mean `{s}`?"))
                        })
                        .unwrap_or_else(|| {
                            format!("templates are looked up in {}", templates_dir.display())
                        });
                    sink.hint(
                        &t.span,
                        &format!("{}.template", rs.path),
                        format!("template `{}` not found", t.v),
                        hint,
                    );
                } else if !roots.allows(&p) {
                    sink.hint(
                        &t.span,
                        &format!("{}.template", rs.path),
                        format!("template `{}` is outside the lab directory", t.v),
                        "list its directory in `lab.trusted_dirs` to allow it",
                    );
                }
                Some(StepSource::Template(PathBuf::from(&t.v)))
            }
            (None, Some(s)) => {
                if !lab_dir.join(&s.v).is_file() {
                    sink.at(
                        &s.span,
                        &format!("{}.script", rs.path),
                        format!("script `{}` not found next to lab.toml", s.v),
                    );
                } else if !roots.allows(&lab_dir.join(&s.v)) {
                    sink.hint(
                        &s.span,
                        &format!("{}.script", rs.path),
                        format!("script `{}` is outside the lab directory", s.v),
                        "list its directory in `lab.trusted_dirs` to allow it",
                    );
                }
                Some(StepSource::Script(PathBuf::from(&s.v)))
            }
            (Some(t), Some(_)) => {
                sink.at(
                    &t.span,
                    &rs.path,
                    "give either `template` or `script`, not both",
                );
                None
            }
            (None, None) => {
                sink.hint(
                    &rs.span,
                    &rs.path,
                    "a step needs `template` or `script`",
                    "e.g. template = \"k8s/config.sh.hbs\"",
                );
                None
            }
        };
        let Some(source) = source else { continue };
        let default_name = match &source {
            StepSource::Template(p) | StepSource::Script(p) => p
                .file_name()
                .and_then(|f| f.to_str())
                .map(|f| {
                    f.trim_end_matches(".hbs")
                        .trim_end_matches(".sh")
                        .to_string()
                })
                .unwrap_or_default(),
        };
        let name = rs.name.as_ref().map_or(default_name, |n| n.v.clone());
        let name_span = rs.name.as_ref().map_or(rs.span.clone(), |n| n.span.clone());
        if !ident_ok(&name) && !dns_label_ok(&name) {
            sink.at(
                &name_span,
                &format!("{}.name", rs.path),
                format!("`{name}` is not a valid step name"),
            );
        }
        if steps.iter().any(|s| s.name == name) {
            sink.hint(
                &name_span,
                &format!("{}.name", rs.path),
                format!("{role_path} already has a step named `{name}`"),
                "give one of them a `name`",
            );
        }
        let run = enum_value(
            rs.run.as_ref(),
            &format!("{}.run", rs.path),
            &[
                ("once", RunPolicy::Once),
                ("always", RunPolicy::Always),
                ("never", RunPolicy::Never),
            ],
            RunPolicy::Once,
            sink,
        );
        let mut after = Vec::new();
        for (j, a) in rs.after.iter().enumerate() {
            match a.v.split_once('.') {
                Some((role, step)) if !role.is_empty() && !step.is_empty() => after.push(StepRef {
                    role: role.to_string(),
                    step: step.to_string(),
                }),
                _ => sink.hint(
                    &a.span,
                    &format!("{}.after[{j}]", rs.path),
                    format!("`{}` is not a step reference", a.v),
                    "write ROLE.STEP, e.g. \"master.master_node\"",
                ),
            }
        }
        let mut ttl = BTreeMap::new();
        for (j, p) in rs.publish.iter().enumerate() {
            if !ident_ok(&p.v) {
                sink.at(
                    &p.span,
                    &format!("{}.publish[{j}]", rs.path),
                    format!("`{}` is not a valid value name", p.v),
                );
            }
            if let Some(t) = &p.ttl {
                match parse_duration(&t.v) {
                    Some(d) => {
                        ttl.insert(p.v.clone(), d);
                    }
                    None => sink.hint(
                        &t.span,
                        &format!("{}.publish[{j}].ttl", rs.path),
                        format!("`{}` is not a duration of 1 minute to 365 days", t.v),
                        "write a number and a unit (d, h, m, s), e.g. \"23h\" or \"1h50m\"",
                    ),
                }
            }
        }
        let timeout = match &rs.timeout {
            Some(t) if !(1..=86_400).contains(&t.v) => {
                sink.at(
                    &t.span,
                    &format!("{}.timeout", rs.path),
                    format!("must be 1-86400 seconds; got {}", t.v),
                );
                1800
            }
            Some(t) => t.v.unsigned_abs(),
            None => 1800,
        };
        steps.push(Step {
            name,
            source,
            args: rs.args.iter().map(|a| a.v.clone()).collect(),
            run,
            needs_egress: rs.needs_egress.as_ref().is_some_and(|v| v.v),
            packages: rs.packages.as_ref().map(|p| p.v.clone()),
            after,
            publish: rs.publish.iter().map(|p| p.v.clone()).collect(),
            ttl,
            timeout: Duration::from_secs(timeout),
        });
    }
    steps
}

/// "23h", "1h50m", "90m", "2d": one or more NUMBER UNIT pairs (d, h, m, s), 1 min to 365 days.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(d))?,
            );
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(num.take()?.checked_mul(unit)?)?;
    }
    if num.is_some() || !(60..=365 * 86_400).contains(&total) {
        return None;
    }
    Some(Duration::from_secs(total))
}

fn role_span<'r>(raw: &'r RawLab, role: &str) -> Option<&'r RawRole> {
    raw.roles.iter().find(|r| r.name.v == role)
}

fn check_addresses(lab: &Lab, raw: &RawLab, sink: &mut Sink<'_>) {
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

fn check_graph(lab: &Lab, raw: &RawLab, sink: &mut Sink<'_>) {
    let mut publishers: HashMap<&str, String> = HashMap::new();
    for (role, rr) in lab.roles.iter().zip(raw.roles.iter()) {
        let steps_raw: Vec<&RawStep> = rr
            .steps
            .iter()
            .filter(|s| s.template.is_some() ^ s.script.is_some())
            .collect();
        for (step, rs) in role.steps.iter().zip(steps_raw) {
            for (j, r) in step.after.iter().enumerate() {
                let span = rs.after.get(j).map_or(rs.span.clone(), |a| a.span.clone());
                let field = format!("{}.after[{j}]", rs.path);
                match lab.role(&r.role) {
                    None => {
                        let hint = suggest(&r.role, lab.roles.iter().map(|r| r.name.as_str()))
                            .map_or_else(
                                || "roles are the [role.NAME] tables".to_string(),
                                |s| format!("did you mean `{s}`?"),
                            );
                        sink.hint(&span, &field, format!("no role named `{}`", r.role), hint);
                    }
                    Some(target) if !target.steps.iter().any(|s| s.name == r.step) => {
                        let hint = suggest(&r.step, target.steps.iter().map(|s| s.name.as_str()))
                            .map_or_else(
                                || {
                                    format!(
                                        "role `{}` has steps: {}",
                                        target.name,
                                        target
                                            .steps
                                            .iter()
                                            .map(|s| s.name.as_str())
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    )
                                },
                                |s| format!("did you mean `{s}`?"),
                            );
                        sink.hint(
                            &span,
                            &field,
                            format!("role `{}` has no step `{}`", r.role, r.step),
                            hint,
                        );
                    }
                    Some(_) => {}
                }
            }
            for (j, p) in step.publish.iter().enumerate() {
                let me = format!("{}.{}", role.name, step.name);
                if let Some(other) = publishers.insert(p.as_str(), me.clone()) {
                    let span = rs.publish.get(j).map_or(&rs.span, |p| &p.span);
                    sink.at(
                        span,
                        &format!("{}.publish[{j}]", rs.path),
                        format!("value `{p}` is also published by {other}"),
                    );
                }
            }
        }
    }
    if !sink.diags.is_empty() {
        return;
    }
    let g = Graph::build(lab);
    if let Err(cycle) = g.topo_order() {
        let names: Vec<String> = cycle.0.iter().map(|&t| g.label(lab, t)).collect();
        let (span, field) = cycle_location(lab, raw, &g, &cycle.0);
        sink.hint(
            &span,
            &field,
            format!(
                "steps wait for each other in a cycle: {} -> {}",
                names.join(" -> "),
                names[0]
            ),
            "remove one of these `after` entries",
        );
    }
}

/// Where to report a dependency cycle: the `after` entry of one of its steps that names the
/// step before it in the cycle (`cycle[k]` waits for `cycle[k - 1]`, `cycle[0]` for the last).
/// Only called when there are no other diagnostics, so raw steps and steps correspond 1:1.
fn cycle_location(lab: &Lab, raw: &RawLab, g: &Graph, cycle: &[usize]) -> (Range<usize>, String) {
    let node_step = |t: usize| {
        let task = &g.tasks[t];
        let node = &lab.nodes[task.node];
        let raw_step = role_span(raw, &node.role).and_then(|r| r.steps.get(task.step));
        (node, &lab.steps_of(node)[task.step], raw_step)
    };
    for (k, &t) in cycle.iter().enumerate() {
        let (_, step, Some(rs)) = node_step(t) else {
            continue;
        };
        let (dep_node, dep_step, _) = node_step(cycle[(k + cycle.len() - 1) % cycle.len()]);
        let entry = step
            .after
            .iter()
            .position(|r| r.role == dep_node.role && r.step == dep_step.name);
        if let Some((j, a)) = entry.and_then(|j| Some((j, rs.after.get(j)?))) {
            return (a.span.clone(), format!("{}.after[{j}]", rs.path));
        }
    }
    match node_step(cycle[0]) {
        (_, _, Some(rs)) => (rs.span.clone(), format!("{}.after", rs.path)),
        (node, _, None) => (0..0, format!("role.{}", node.role)),
    }
}

/// Render every step for every node with placeholder values, so that unknown variables and
/// template syntax errors show up at validation time, not half way through `up`.
/// `check_on` / `forget_on` name roles; the hooks render for every node of their role.
fn check_hooks(lab: &Lab, raw: &RawLab, renderer: &Renderer, sink: &mut Sink<'_>) {
    for (role, rr) in lab.roles.iter().zip(raw.roles.iter()) {
        let hooks = [
            (&role.check, &rr.check, &rr.check_on, "check"),
            (&role.forget, &rr.forget, &rr.forget_on, "forget"),
        ];
        for (hook, text, on, name) in hooks {
            let (Some(hook), Some(text)) = (hook, text) else {
                if let Some(on) = on.first() {
                    sink.at(
                        &on.span,
                        &format!("role.{}.{name}_on", role.name),
                        format!("`{name}_on` without `{name}`"),
                    );
                }
                continue;
            };
            for target in on {
                if lab.role(&target.v).is_none() {
                    let hint = suggest(&target.v, lab.roles.iter().map(|r| r.name.as_str()))
                        .map_or_else(
                            || "roles are the [role.NAME] tables".to_string(),
                            |s| format!("did you mean `{s}`?"),
                        );
                    sink.hint(
                        &target.span,
                        &format!("role.{}.{name}_on", role.name),
                        format!("no role named `{}`", target.v),
                        hint,
                    );
                }
            }
            for node in lab.nodes.iter().filter(|n| n.role == role.name) {
                if let Err(reason) = renderer.check_arg(lab, node, &hook.run, &BTreeMap::new()) {
                    sink.at(&text.span, &format!("role.{}.{name}", role.name), reason);
                    break;
                }
            }
        }
    }
}

fn check_templates(lab: &Lab, raw: &RawLab, sink: &mut Sink<'_>) {
    let renderer = match Renderer::new(lab) {
        Ok(r) => r,
        Err(e) => {
            let rs = step_using(lab, raw, &e);
            if !read_failure_at_source(&e, rs, sink) {
                let field = rs.map_or_else(String::new, |rs| rs.path.clone());
                push_render_failure(&e, sink, &field, None);
            }
            return;
        }
    };
    check_hooks(lab, raw, &renderer, sink);
    let g = Graph::build(lab);
    let mut publisher: HashMap<usize, &[String]> = HashMap::new();
    for (t, task) in g.tasks.iter().enumerate() {
        let step = &lab.steps_of(&lab.nodes[task.node])[task.step];
        publisher.insert(t, &step.publish);
    }
    let mut reported = BTreeSet::new();
    for (t, task) in g.tasks.iter().enumerate() {
        let node = &lab.nodes[task.node];
        let step = &lab.steps_of(node)[task.step];
        let mut values = BTreeMap::new();
        for a in g.ancestors(t) {
            for name in publisher[&a] {
                values.insert(name.clone(), format!("<{name} from {}>", g.label(lab, a)));
            }
        }
        let rs = role_span(raw, &node.role).and_then(|r| r.steps.get(task.step));
        let field = rs.map_or_else(|| format!("role.{}", node.role), |s| s.path.clone());
        // Arguments are small templates written in lab.toml: report them there.
        let mut bad_arg = false;
        for (j, arg) in step.args.iter().enumerate() {
            if let Err(reason) = renderer.check_arg(lab, node, arg, &values) {
                bad_arg = true;
                let arg_field = format!("{field}.args[{j}]");
                if reported.insert(format!("{arg_field}: {reason}")) {
                    let span = rs
                        .and_then(|s| s.args.get(j))
                        .map_or(0..0, |a| a.span.clone());
                    sink.at(
                        &span,
                        &arg_field,
                        format!("{reason} (rendering for {})", node.name),
                    );
                }
            }
        }
        if bad_arg {
            continue;
        }
        if let Err(e) = renderer.render_step(lab, node, step, &values) {
            let key = e.to_string();
            if reported.insert(key) && !read_failure_at_source(&e, rs, sink) {
                let hint = e.to_string().contains("values.").then_some(
                    "published values reach only steps that run after the publisher: add it to `after`",
                );
                push_render_failure(&e, sink, &field, Some((&node.name, hint)));
            }
        }
    }
}

/// An unreadable template or script has no line of its own: report it where lab.toml names
/// it. Returns whether `e` was such a failure.
fn read_failure_at_source(e: &RenderFailure, rs: Option<&RawStep>, sink: &mut Sink<'_>) -> bool {
    let RenderFailure::Read { message, .. } = e else {
        return false;
    };
    let Some(rs) = rs else { return false };
    let (key, src) = match (&rs.template, &rs.script) {
        (Some(t), _) => ("template", t),
        (None, Some(s)) => ("script", s),
        (None, None) => return false,
    };
    sink.at(
        &src.span,
        &format!("{}.{key}", rs.path),
        format!("cannot read {key} `{}`: {message}", src.v),
    );
    true
}

/// The first step whose template a render failure is about (none for a partial).
fn step_using<'r>(lab: &Lab, raw: &'r RawLab, e: &RenderFailure) -> Option<&'r RawStep> {
    let (RenderFailure::Read { path, .. } | RenderFailure::Template { path, .. }) = e;
    for (role, rr) in lab.roles.iter().zip(&raw.roles) {
        for (step, rs) in role.steps.iter().zip(&rr.steps) {
            if let StepSource::Template(rel) = &step.source
                && lab.templates_dir.join(rel) == *path
            {
                return Some(rs);
            }
        }
    }
    None
}

/// Turn a render failure into a diagnostic in the template file. `node`: the node rendered
/// for (named in the message) and an optional hint.
fn push_render_failure(
    e: &RenderFailure,
    sink: &mut Sink<'_>,
    field: &str,
    node: Option<(&str, Option<&str>)>,
) {
    let (file, line, column, mut message) = match e {
        RenderFailure::Read { path, message } => {
            (path.clone(), 0, 0, format!("cannot read: {message}"))
        }
        RenderFailure::Template {
            path,
            line,
            column,
            message,
        } => (path.clone(), *line, *column, message.clone()),
    };
    if let Some((name, _)) = node {
        message.push_str(&format!(" (rendering for {name})"));
    }
    sink.diags.push(crate::error::Diagnostic {
        file,
        line,
        column,
        field: field.to_string(),
        message,
        hint: node.and_then(|(_, h)| h).map(str::to_string),
        snippet: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("23h"), Some(Duration::from_secs(23 * 3600)));
        assert_eq!(parse_duration("1h50m"), Some(Duration::from_secs(6600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        for text in ["23h", "1h50m", "2d", "1m30s", "1d2h3m4s"] {
            let d = parse_duration(text).expect(text);
            assert_eq!(crate::model::format_duration(d), text);
        }
        for bad in [
            "",
            "23",
            "h",
            "1x",
            "30s",
            "366d",
            "1h 2m",
            "-1h",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
