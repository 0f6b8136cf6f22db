//! Stage 1: TOML text → raw lab, checking structure and types only.
//!
//! The walker reads the spanned TOML tree itself (rather than serde derive) so that it can
//! report every problem at once, each with its location and field path, and suggest the
//! closest known key for a typo.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Sink, suggest};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct S<T> {
    pub(crate) v: T,
    pub(crate) span: Range<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct RawLab {
    pub(crate) lab_span: Range<usize>,
    pub(crate) name: Option<S<String>>,
    pub(crate) provider: Option<S<String>>,
    pub(crate) uri: Option<S<String>>,
    pub(crate) box_name: Option<S<String>>,
    pub(crate) group: Option<S<String>>,
    pub(crate) accel: Option<S<String>>,
    pub(crate) egress: Option<S<bool>>,
    pub(crate) os: Option<S<String>>,
    pub(crate) workers: Option<S<i64>>,
    pub(crate) linked_clone: Option<S<bool>>,
    pub(crate) golden_snapshot: Option<S<bool>>,
    pub(crate) boot_timeout: Option<S<i64>>,
    pub(crate) templates: Option<S<String>>,
    pub(crate) trusted_dirs: Vec<S<String>>,
    pub(crate) vars: Vec<(S<String>, S<String>)>,
    pub(crate) networks: Vec<RawNetwork>,
    pub(crate) roles: Vec<RawRole>,
    pub(crate) bundle: Option<S<String>>,
    pub(crate) package_sets: Vec<RawPackageSet>,
    pub(crate) images: Vec<S<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawPackageSet {
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
    pub(crate) name: Option<S<String>>,
    /// (family key, its package names), in file order.
    pub(crate) families: Vec<(S<String>, Vec<S<String>>)>,
    pub(crate) repositories: Vec<RawRepository>,
}

#[derive(Debug, Default)]
pub(crate) struct RawRepository {
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
    pub(crate) family: Option<S<String>>,
    pub(crate) url: Option<S<String>>,
    pub(crate) suite: Option<S<String>>,
    pub(crate) components: Vec<S<String>>,
    pub(crate) key: Option<S<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawNetwork {
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
    pub(crate) name: Option<S<String>>,
    pub(crate) cidr: Option<S<String>>,
    pub(crate) kind: Option<S<String>>,
    pub(crate) host_ip: Option<S<String>>,
    pub(crate) reserved: Vec<S<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawRole {
    pub(crate) name: S<String>,
    pub(crate) hostname: Option<S<String>>,
    pub(crate) count: Option<S<i64>>,
    pub(crate) start: Option<S<i64>>,
    pub(crate) scale: Option<S<bool>>,
    pub(crate) cpus: Option<S<i64>>,
    pub(crate) memory: Option<S<i64>>,
    pub(crate) ip: Option<S<String>>,
    pub(crate) ips: Vec<(S<String>, S<String>)>,
    pub(crate) ssh_port: Option<S<i64>>,
    pub(crate) nested_virt: Option<S<bool>>,
    pub(crate) check: Option<S<String>>,
    pub(crate) check_on: Vec<S<String>>,
    pub(crate) forget: Option<S<String>>,
    pub(crate) forget_on: Vec<S<String>>,
    pub(crate) forwards: Vec<RawForward>,
    pub(crate) steps: Vec<RawStep>,
}

#[derive(Debug, Default)]
pub(crate) struct RawForward {
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
    pub(crate) guest: Option<S<i64>>,
    pub(crate) host: Option<S<i64>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawStep {
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
    pub(crate) name: Option<S<String>>,
    pub(crate) template: Option<S<String>>,
    pub(crate) script: Option<S<String>>,
    pub(crate) args: Vec<S<String>>,
    pub(crate) run: Option<S<String>>,
    pub(crate) needs_egress: Option<S<bool>>,
    pub(crate) packages: Option<S<String>>,
    pub(crate) after: Vec<S<String>>,
    pub(crate) publish: Vec<RawPublish>,
    pub(crate) timeout: Option<S<i64>>,
}

/// One entry of `publish`: `"name"` or `{ name = "name", ttl = "23h" }`.
#[derive(Debug, Default)]
pub(crate) struct RawPublish {
    /// The value name.
    pub(crate) v: String,
    pub(crate) span: Range<usize>,
    pub(crate) ttl: Option<S<String>>,
}

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

pub(crate) type Table<'i> = DeTable<'i>;
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn check_keys(t: &Table<'_>, path: &str, allowed: &[&str], sink: &mut Sink<'_>) {
    for key in t.keys() {
        let k = key.get_ref().as_ref();
        if !allowed.contains(&k) {
            let field = join(path, k);
            match suggest(k, allowed.iter().copied()) {
                Some(s) => sink.hint(
                    &key.span(),
                    &field,
                    "unknown key",
                    format!("did you mean `{s}`?"),
                ),
                None => sink.hint(
                    &key.span(),
                    &field,
                    "unknown key",
                    format!("expected one of: {}", allowed.join(", ")),
                ),
            }
        }
    }
}

pub(crate) fn kind_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(crate) fn wrong_type(v: &Value<'_>, field: &str, want: &str, sink: &mut Sink<'_>) {
    sink.at(
        &v.span(),
        field,
        format!("expected {want}, found {}", kind_name(v.get_ref())),
    );
}

pub(crate) fn as_table<'a, 'i>(
    v: &'a Value<'i>,
    field: &str,
    sink: &mut Sink<'_>,
) -> Option<&'a Table<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => {
            wrong_type(v, field, "a table", sink);
            None
        }
    }
}

pub(crate) fn get_table<'a, 'i>(
    t: &'a Table<'i>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Option<(&'a Table<'i>, Range<usize>)> {
    let v = t.get(key)?;
    let field = if path == key {
        key.to_string()
    } else {
        join(path, key)
    };
    as_table(v, &field, sink).map(|tab| (tab, v.span()))
}

pub(crate) fn get_table_array<'a, 'i>(
    t: &'a Table<'i>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Vec<(&'a Table<'i>, Range<usize>)> {
    let field = if path == key {
        key.to_string()
    } else {
        join(path, key)
    };
    let Some(v) = t.get(key) else {
        return Vec::new();
    };
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                as_table(item, &format!("{field}[{i}]"), sink).map(|tab| (tab, item.span()))
            })
            .collect(),
        DeValue::Table(tab) => {
            sink.hint(
                &v.span(),
                &field,
                "expected an array of tables",
                format!("write `[[{field}]]` instead of `[{field}]`"),
            );
            let _ = tab;
            Vec::new()
        }
        _ => {
            wrong_type(v, &field, "an array of tables", sink);
            Vec::new()
        }
    }
}

pub(crate) fn get_str(
    t: &Table<'_>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Option<S<String>> {
    let v = t.get(key)?;
    match v.get_ref() {
        DeValue::String(s) => Some(S {
            v: s.to_string(),
            span: v.span(),
        }),
        _ => {
            wrong_type(v, &join(path, key), "a string", sink);
            None
        }
    }
}

fn get_bool(t: &Table<'_>, path: &str, key: &str, sink: &mut Sink<'_>) -> Option<S<bool>> {
    let v = t.get(key)?;
    match v.get_ref() {
        DeValue::Boolean(b) => Some(S {
            v: *b,
            span: v.span(),
        }),
        _ => {
            wrong_type(v, &join(path, key), "a boolean (true or false)", sink);
            None
        }
    }
}

fn int_of(v: &Value<'_>) -> Option<i64> {
    match v.get_ref() {
        DeValue::Integer(i) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            let digits = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0o"))
                .or_else(|| digits.strip_prefix("0b"))
                .unwrap_or(&digits)
                .to_string();
            i64::from_str_radix(&digits, i.radix()).ok()
        }
        _ => None,
    }
}

pub(crate) fn get_int(t: &Table<'_>, path: &str, key: &str, sink: &mut Sink<'_>) -> Option<S<i64>> {
    let v = t.get(key)?;
    match (v.get_ref(), int_of(v)) {
        (DeValue::Integer(_), Some(n)) => Some(S {
            v: n,
            span: v.span(),
        }),
        (DeValue::Integer(_), None) => {
            sink.at(&v.span(), &join(path, key), "integer is out of range");
            None
        }
        _ => {
            wrong_type(v, &join(path, key), "an integer", sink);
            None
        }
    }
}

pub(crate) fn get_str_array(
    t: &Table<'_>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Vec<S<String>> {
    let field = join(path, key);
    let Some(v) = t.get(key) else {
        return Vec::new();
    };
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item.get_ref() {
                DeValue::String(s) => Some(S {
                    v: s.to_string(),
                    span: item.span(),
                }),
                _ => {
                    wrong_type(item, &format!("{field}[{i}]"), "a string", sink);
                    None
                }
            })
            .collect(),
        DeValue::String(s) => vec![S {
            v: s.to_string(),
            span: v.span(),
        }],
        _ => {
            wrong_type(v, &field, "an array of strings", sink);
            Vec::new()
        }
    }
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

fn scalar_string(v: &Value<'_>, field: &str, sink: &mut Sink<'_>) -> Option<S<String>> {
    let text = match v.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(_) => int_of(v)?.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        _ => {
            wrong_type(v, field, "a string, an integer or a boolean", sink);
            return None;
        }
    };
    Some(S {
        v: text,
        span: v.span(),
    })
}

fn scalar_map(t: &Table<'_>, path: &str, sink: &mut Sink<'_>) -> Vec<(S<String>, S<String>)> {
    t.iter()
        .filter_map(|(k, v)| {
            let name = S {
                v: k.get_ref().to_string(),
                span: k.span(),
            };
            let field = join(path, &name.v);
            scalar_string(v, &field, sink).map(|val| (name, val))
        })
        .collect()
}
