//! Stage 1: TOML text → raw lab, checking structure and types only.
//!
//! The walker reads the spanned TOML tree itself (rather than serde derive) so that it can
//! report every problem at once, each with its location and field path, and suggest the
//! closest known key for a typo.

mod fields;
mod raw;

use toml::de::{DeTable, DeValue};

use crate::error::Sink;

pub(crate) use fields::{
    Table, Value, as_table, check_keys, get_int, get_str, get_str_array, get_table,
    get_table_array, wrong_type,
};
use fields::{get_bool, join, scalar_map, scalar_string};
pub(crate) use raw::*;

pub(crate) const LAB_KEYS: &[&str] = &[
    "name",
    "provider",
    "uri",
    "box",
    "group",
    "accel",
    "egress",
    "os",
    "workers",
    "linked_clone",
    "golden_snapshot",
    "boot_timeout",
    "templates",
    "trusted_dirs",
    "bundle",
];
const TOP_KEYS: &[&str] = &["lab", "vars", "network", "role", "package_set", "images"];
const PACKAGE_SET_KEYS: &[&str] = &["name", "debian", "ubuntu", "rocky", "repository"];
const REPOSITORY_KEYS: &[&str] = &["family", "url", "suite", "components", "key"];
const IMAGES_KEYS: &[&str] = &["refs"];
const NETWORK_KEYS: &[&str] = &["name", "cidr", "kind", "host_ip", "reserved"];
const ROLE_KEYS: &[&str] = &[
    "hostname",
    "count",
    "start",
    "scale",
    "cpus",
    "memory",
    "ip",
    "ips",
    "ssh_port",
    "nested_virt",
    "check",
    "check_on",
    "forget",
    "forget_on",
    "forward",
    "step",
];
const FORWARD_KEYS: &[&str] = &["guest", "host"];
const PUBLISH_KEYS: &[&str] = &["name", "ttl"];
const STEP_KEYS: &[&str] = &[
    "name",
    "template",
    "script",
    "args",
    "run",
    "needs_egress",
    "packages",
    "after",
    "publish",
    "timeout",
];

/// Parse lab.toml text. Returns whatever could be read; problems go to `sink`.
pub(crate) fn parse(src: &str, sink: &mut Sink<'_>) -> RawLab {
    let (doc, errors) = DeTable::parse_recoverable(src);
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        sink.at(&span, "", format!("invalid TOML: {}", e.message().trim()));
    }
    if !errors.is_empty() {
        return RawLab::default();
    }
    let top = doc.get_ref();
    let mut raw = RawLab::default();
    check_keys(top, "", TOP_KEYS, sink);

    match get_table(top, "lab", "lab", sink) {
        Some((t, span)) => {
            raw.lab_span = span;
            check_keys(t, "lab", LAB_KEYS, sink);
            raw.name = get_str(t, "lab", "name", sink);
            raw.provider = get_str(t, "lab", "provider", sink);
            raw.uri = get_str(t, "lab", "uri", sink);
            raw.box_name = get_str(t, "lab", "box", sink);
            raw.group = get_str(t, "lab", "group", sink);
            raw.accel = get_str(t, "lab", "accel", sink);
            raw.egress = get_bool(t, "lab", "egress", sink);
            raw.os = get_str(t, "lab", "os", sink);
            raw.workers = get_int(t, "lab", "workers", sink);
            raw.linked_clone = get_bool(t, "lab", "linked_clone", sink);
            raw.golden_snapshot = get_bool(t, "lab", "golden_snapshot", sink);
            raw.boot_timeout = get_int(t, "lab", "boot_timeout", sink);
            raw.templates = get_str(t, "lab", "templates", sink);
            raw.trusted_dirs = get_str_array(t, "lab", "trusted_dirs", sink);
            raw.bundle = get_str(t, "lab", "bundle", sink);
        }
        None => {
            if top.get("lab").is_none() {
                sink.hint(
                    &(0..0),
                    "lab",
                    "missing table [lab]",
                    "add `[lab]` with at least `name = \"...\"`",
                );
            }
        }
    }

    if let Some((t, _)) = get_table(top, "vars", "vars", sink) {
        raw.vars = scalar_map(t, "vars", sink);
    }

    for (i, (t, span)) in get_table_array(top, "network", "network", sink)
        .into_iter()
        .enumerate()
    {
        let path = format!("network[{i}]");
        check_keys(t, &path, NETWORK_KEYS, sink);
        raw.networks.push(RawNetwork {
            name: get_str(t, &path, "name", sink),
            cidr: get_str(t, &path, "cidr", sink),
            kind: get_str(t, &path, "kind", sink),
            host_ip: get_str(t, &path, "host_ip", sink),
            reserved: get_str_array(t, &path, "reserved", sink),
            span,
            path,
        });
    }

    for (i, (t, span)) in get_table_array(top, "package_set", "package_set", sink)
        .into_iter()
        .enumerate()
    {
        let path = format!("package_set[{i}]");
        check_keys(t, &path, PACKAGE_SET_KEYS, sink);
        let families = ["debian", "ubuntu", "rocky"]
            .into_iter()
            .filter_map(|f| {
                let v = t.get(f)?;
                let key = S {
                    v: f.to_string(),
                    span: v.span(),
                };
                Some((key, get_str_array(t, &path, f, sink)))
            })
            .collect();
        let repositories = get_table_array(t, &path, "repository", sink)
            .into_iter()
            .enumerate()
            .map(|(j, (rt, rspan))| {
                let rpath = format!("{path}.repository[{j}]");
                check_keys(rt, &rpath, REPOSITORY_KEYS, sink);
                RawRepository {
                    family: get_str(rt, &rpath, "family", sink),
                    url: get_str(rt, &rpath, "url", sink),
                    suite: get_str(rt, &rpath, "suite", sink),
                    components: get_str_array(rt, &rpath, "components", sink),
                    key: get_str(rt, &rpath, "key", sink),
                    span: rspan,
                    path: rpath,
                }
            })
            .collect();
        raw.package_sets.push(RawPackageSet {
            name: get_str(t, &path, "name", sink),
            families,
            repositories,
            span,
            path,
        });
    }

    if let Some((t, _)) = get_table(top, "images", "images", sink) {
        check_keys(t, "images", IMAGES_KEYS, sink);
        raw.images = get_str_array(t, "images", "refs", sink);
    }

    if let Some((roles, _)) = get_table(top, "role", "role", sink) {
        for (key, value) in roles {
            let name = S {
                v: key.get_ref().to_string(),
                span: key.span(),
            };
            let path = format!("role.{}", name.v);
            let Some(t) = as_table(value, &path, sink) else {
                continue;
            };
            raw.roles.push(parse_role(name, t, &path, sink));
        }
    }
    raw
}

fn parse_role(name: S<String>, t: &Table<'_>, path: &str, sink: &mut Sink<'_>) -> RawRole {
    check_keys(t, path, ROLE_KEYS, sink);
    let mut role = RawRole {
        hostname: get_str(t, path, "hostname", sink),
        count: get_int(t, path, "count", sink),
        start: get_int(t, path, "start", sink),
        scale: get_bool(t, path, "scale", sink),
        cpus: get_int(t, path, "cpus", sink),
        memory: get_int(t, path, "memory", sink),
        ip: get_str(t, path, "ip", sink),
        ssh_port: get_int(t, path, "ssh_port", sink),
        nested_virt: get_bool(t, path, "nested_virt", sink),
        check: get_str(t, path, "check", sink),
        check_on: get_str_array(t, path, "check_on", sink),
        forget: get_str(t, path, "forget", sink),
        forget_on: get_str_array(t, path, "forget_on", sink),
        name,
        ..RawRole::default()
    };
    if let Some((ips, _)) = get_table(t, path, "ips", sink) {
        role.ips = scalar_map(ips, &format!("{path}.ips"), sink);
    }
    for (i, (ft, span)) in get_table_array(t, path, "forward", sink)
        .into_iter()
        .enumerate()
    {
        let fpath = format!("{path}.forward[{i}]");
        check_keys(ft, &fpath, FORWARD_KEYS, sink);
        role.forwards.push(RawForward {
            guest: get_int(ft, &fpath, "guest", sink),
            host: get_int(ft, &fpath, "host", sink),
            span,
            path: fpath,
        });
    }
    for (i, (st, span)) in get_table_array(t, path, "step", sink)
        .into_iter()
        .enumerate()
    {
        let spath = format!("{path}.step[{i}]");
        check_keys(st, &spath, STEP_KEYS, sink);
        role.steps.push(RawStep {
            name: get_str(st, &spath, "name", sink),
            template: get_str(st, &spath, "template", sink),
            script: get_str(st, &spath, "script", sink),
            args: get_args(st, &spath, sink),
            run: get_str(st, &spath, "run", sink),
            needs_egress: get_bool(st, &spath, "needs_egress", sink),
            packages: get_str(st, &spath, "packages", sink),
            after: get_str_array(st, &spath, "after", sink),
            publish: get_publish(st, &spath, sink),
            timeout: get_int(st, &spath, "timeout", sink),
            span,
            path: spath,
        });
    }
    role
}

/// `publish`: a name, or a list of names and `{ name, ttl }` tables.
fn get_publish(t: &Table<'_>, path: &str, sink: &mut Sink<'_>) -> Vec<RawPublish> {
    let field = join(path, "publish");
    let Some(v) = t.get("publish") else {
        return Vec::new();
    };
    let one = |item: &Value<'_>, f: &str, sink: &mut Sink<'_>| match item.get_ref() {
        DeValue::String(s) => Some(RawPublish {
            v: s.to_string(),
            span: item.span(),
            ttl: None,
        }),
        DeValue::Table(tt) => {
            check_keys(tt, f, PUBLISH_KEYS, sink);
            let name = get_str(tt, f, "name", sink);
            let ttl = get_str(tt, f, "ttl", sink);
            match name {
                Some(n) => Some(RawPublish {
                    v: n.v,
                    span: n.span,
                    ttl,
                }),
                None => {
                    sink.hint(
                        &item.span(),
                        f,
                        "missing `name`",
                        "write { name = \"join_command\", ttl = \"23h\" }",
                    );
                    None
                }
            }
        }
        _ => {
            wrong_type(item, f, "a string or a table { name, ttl }", sink);
            None
        }
    };
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| one(item, &format!("{field}[{i}]"), sink))
            .collect(),
        DeValue::String(_) | DeValue::Table(_) => one(v, &field, sink).into_iter().collect(),
        _ => {
            wrong_type(
                v,
                &field,
                "an array of strings or tables { name, ttl }",
                sink,
            );
            Vec::new()
        }
    }
}

/// Step arguments: strings, integers or booleans, as a list or a single value.
fn get_args(t: &Table<'_>, path: &str, sink: &mut Sink<'_>) -> Vec<S<String>> {
    let field = join(path, "args");
    let Some(v) = t.get("args") else {
        return Vec::new();
    };
    let one = |item: &Value<'_>, f: &str, sink: &mut Sink<'_>| scalar_string(item, f, sink);
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| one(item, &format!("{field}[{i}]"), sink))
            .collect(),
        _ => one(v, &field, sink).into_iter().collect(),
    }
}
