//! The validated lab: what every other crate consumes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which hypervisor runs the lab. Also recorded in `.labctl/state.json` (same lowercase
/// words), so a state written before this was an enum still loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Qemu,
    Virtualbox,
    Libvirt,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Qemu => "qemu",
            Provider::Virtualbox => "virtualbox",
            Provider::Libvirt => "libvirt",
        }
    }
}

/// The lab's guest OS (`lab.os`). Recorded per node in `.labctl/state.json` as the same
/// lowercase word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Debian,
    Ubuntu,
    Rocky,
    Centos,
}

impl Os {
    pub const ALL: [Os; 4] = [Os::Debian, Os::Ubuntu, Os::Rocky, Os::Centos];
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Debian => "debian",
            Os::Ubuntu => "ubuntu",
            Os::Rocky => "rocky",
            Os::Centos => "centos",
        }
    }
    /// The package family its package sets name packages for (CentOS has none).
    pub fn family(self) -> Option<Family> {
        Family::parse(self.as_str())
    }
}

impl std::fmt::Display for Os {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Hardware acceleration choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM if a real probe proves it works, otherwise TCG.
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// How a lab network is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// The host has an address on it (VirtualBox host-only); QEMU: the lab switch.
    Hostonly,
    /// Only the VMs are on it (VirtualBox intnet); QEMU: the lab switch.
    Internal,
}

/// A private L2 network shared by the lab's VMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub name: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub kind: NetworkKind,
    /// The host's address on a host-only network (VirtualBox).
    pub host_ip: Ipv4Addr,
    /// Inclusive address ranges reserved for something else (MetalLB, VIPs).
    pub reserved: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl Network {
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.address)
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !mask(self.prefix))
    }
}

pub(crate) fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// When a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunPolicy {
    /// On the first successful `up`; again only when its rendered content changes or on request.
    Once,
    /// On every `up`.
    Always,
    /// Only when asked for by name (`labctl provision --step`).
    Never,
}

impl RunPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RunPolicy::Once => "once",
            RunPolicy::Always => "always",
            RunPolicy::Never => "never",
        }
    }
}

/// Where a step's script comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepSource {
    /// A Handlebars template, path relative to the lab's templates directory.
    Template(PathBuf),
    /// A script uploaded as is, path relative to lab.toml.
    Script(PathBuf),
}

/// A dependency on a step of every node of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRef {
    pub role: String,
    pub step: String,
}

impl std::fmt::Display for StepRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.role, self.step)
    }
}

/// One provisioning step of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub name: String,
    pub source: StepSource,
    /// Arguments, themselves small templates (`{{lab.workers}}`).
    pub args: Vec<String>,
    pub run: RunPolicy,
    /// Needs the guest's internet (package downloads).
    pub needs_egress: bool,
    /// The package set (`[[package_set]]`) this step installs: with egress off, the step may
    /// still run when the attached bundle holds that set complete for the lab's OS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<String>,
    pub after: Vec<StepRef>,
    pub publish: Vec<String>,
    /// How long a published value stays good (`publish = [{ name, ttl }]`), by value name.
    /// A step that needs an older value makes labctl run this step again first.
    #[serde(serialize_with = "secs_map")]
    pub ttl: BTreeMap<String, Duration>,
    #[serde(with = "secs")]
    pub timeout: Duration,
}

/// A duration the way lab.toml writes it: "23h", "1h50m", "2d", "90s".
pub fn format_duration(d: Duration) -> String {
    let mut rest = d.as_secs();
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= secs {
            out.push_str(&format!("{}{unit}", rest / secs));
            rest %= secs;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

fn secs_map<S: serde::Serializer>(m: &BTreeMap<String, Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (k, v.as_secs())))
}

/// A forwarded host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Forward {
    pub guest: u16,
    pub host: u16,
}

/// A role: a node definition repeated `count` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub name: String,
    /// Hostname pattern; `{i}` is the node index.
    pub hostname: String,
    pub count: u32,
    pub start: u32,
    /// Whether `count` comes from `lab.workers` / `--workers`.
    pub scale: bool,
    pub steps: Vec<Step>,
    /// Readiness check: is this node back in the lab (after `reset`)?
    pub check: Option<Hook>,
    /// Run before a node is rebuilt, e.g. to delete its stale Node object on the master.
    pub forget: Option<Hook>,
}

/// A shell command (a small template with the node's context) run on a node of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hook {
    pub run: String,
    /// Roles whose nodes may run it, in order: the first of their nodes that is running and
    /// is not the node concerned runs it (another is tried if it fails). Empty: the node itself.
    pub on: Vec<String>,
}

/// An address of a node on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NicAddr {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

/// One VM of the lab, with computed addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub role: String,
    pub index: u32,
    /// Position in the lab (0 = first node), stable for a given lab and worker count.
    pub ordinal: usize,
    pub cpus: u32,
    pub memory_mb: u32,
    pub ssh_port: u16,
    pub nics: Vec<NicAddr>,
    pub forwards: Vec<Forward>,
    pub nested_virt: bool,
}

impl Node {
    /// The node's address on the lab's first network.
    pub fn ip(&self) -> Option<std::net::Ipv4Addr> {
        self.nics.first().map(|n| n.ip)
    }
}

/// A validated lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lab {
    /// Absolute path of lab.toml.
    pub file: PathBuf,
    /// Directory holding lab.toml.
    pub dir: PathBuf,
    pub name: String,
    pub provider: Provider,
    /// The libvirt connection URI (`provider = "libvirt"` only); `None`: libvirt's default
    /// for this user (`qemu:///system` as root, `qemu:///session` otherwise).
    pub uri: Option<String>,
    #[serde(rename = "box")]
    pub box_name: String,
    pub group: Option<String>,
    pub accel: Accel,
    pub egress: bool,
    pub os: Os,
    pub workers: u32,
    pub linked_clone: bool,
    pub golden_snapshot: bool,
    #[serde(with = "secs")]
    pub boot_timeout: Duration,
    pub templates_dir: PathBuf,
    pub vars: BTreeMap<String, String>,
    pub networks: Vec<Network>,
    pub roles: Vec<Role>,
    pub nodes: Vec<Node>,
    /// The bundle attached to the lab (`bundle = "NAME"`; `--bundle` overrides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// What the lab's steps install, per OS family (`[[package_set]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub package_sets: Vec<PackageSet>,
    /// Container images the lab needs (`[images] refs`), normalized.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageRef>,
}

impl Lab {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }
    pub fn package_set(&self, name: &str) -> Option<&PackageSet> {
        self.package_sets.iter().find(|p| p.name == name)
    }
    /// The steps of a node, in order.
    pub fn steps_of(&self, node: &Node) -> &[Step] {
        self.role(&node.role).map_or(&[], |r| r.steps.as_slice())
    }
}

/// An OS family a package set names packages for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Debian,
    Ubuntu,
    Rocky,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Debian, Family::Ubuntu, Family::Rocky];
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Debian => "debian",
            Family::Ubuntu => "ubuntu",
            Family::Rocky => "rocky",
        }
    }
    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// A named group of packages a step installs (`[[package_set]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageSet {
    pub name: String,
    /// Package names per OS family.
    pub packages: BTreeMap<Family, Vec<String>>,
    /// Extra repositories a family needs for this set.
    pub repositories: Vec<Repository>,
}

impl PackageSet {
    pub fn packages_for(&self, family: Family) -> &[String] {
        self.packages.get(&family).map_or(&[], Vec::as_slice)
    }
    pub fn repositories_for(&self, family: Family) -> impl Iterator<Item = &Repository> {
        self.repositories.iter().filter(move |r| r.family == family)
    }
}

/// An extra package repository (`[[package_set.repository]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repository {
    pub family: Family,
    /// Base URL (http or https).
    pub url: String,
    /// The apt suite; `/` for a flat repository.
    pub suite: String,
    /// apt components (empty for a flat repository).
    pub components: Vec<String>,
    /// URL of the repository's signing key.
    pub key: Option<String>,
}

/// A container image reference, normalized the way containerd does it
/// (`busybox` → `docker.io/library/busybox:latest`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    /// Registry host (and port), e.g. `registry.k8s.io`.
    pub registry: String,
    /// Repository path, e.g. `pause` or `calico/node`.
    pub repository: String,
    /// Tag; `None` only when a digest is given without a tag.
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse and normalize a reference; `None` when it is not one.
    pub fn parse(s: &str) -> Option<ImageRef> {
        if s.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d.strip_prefix("sha256:")?;
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return None;
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(c) if slash.is_none_or(|sl| c > sl) => {
                (&rest[..c], Some(rest[c + 1..].to_string()))
            }
            _ => (rest, None),
        };
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                || t.starts_with(['.', '-']))
        {
            return None;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let comp_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(comp_ok)
            || registry.is_empty()
            || !registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        {
            return None;
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".into())
        } else {
            tag
        };
        Some(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

mod secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}
