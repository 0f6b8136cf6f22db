//! The raw lab as read from TOML: each value with the span it was written at.

use std::ops::Range;

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
