//! Host-only address ranges VirtualBox accepts.
//!
//! Since 6.1.28, VirtualBox on Linux, macOS and Solaris hosts "will only allow IP addresses in
//! 192.168.56.0/21 range to be assigned to host-only adapters"; other ranges must be listed in
//! `/etc/vbox/networks.conf` as `* 10.0.0.0/8 192.168.0.0/16` lines ("Lines starting with the
//! hash # are ignored"). Windows hosts are not restricted. Source: the VirtualBox manual,
//! <https://www.virtualbox.org/manual/ch06.html#network_hostonly>, and the 6.1.28 changelog
//! <https://www.virtualbox.org/wiki/Changelog-6.1#v28>. Without this check the failure shows up
//! late and cryptic: `VBoxManage: error: Code E_ACCESSDENIED (0x80070005) - Access denied` from
//! `hostonlyif ipconfig`.

use std::net::Ipv4Addr;
use std::path::Path;

use super::parse::VBoxVersion;

/// Where VirtualBox reads the allowed host-only ranges.
pub const NETWORKS_CONF: &str = "/etc/vbox/networks.conf";

/// The range allowed when there is no networks.conf.
pub const DEFAULT_RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(192, 168, 56, 0), 21);

/// The first version with the restriction.
pub const RESTRICTED_SINCE: VBoxVersion = VBoxVersion::new(6, 1, 28);

/// The host operating system, as far as VirtualBox's rules go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOs {
    Linux,
    MacOs,
    Solaris,
    Windows,
    Other,
}

impl HostOs {
    pub fn current() -> HostOs {
        match std::env::consts::OS {
            "linux" => HostOs::Linux,
            "macos" => HostOs::MacOs,
            "solaris" | "illumos" => HostOs::Solaris,
            "windows" => HostOs::Windows,
            _ => HostOs::Other,
        }
    }

    fn restricted(self) -> bool {
        matches!(self, HostOs::Linux | HostOs::MacOs | HostOs::Solaris)
    }

    fn label(self) -> &'static str {
        match self {
            HostOs::Linux => "Linux",
            HostOs::MacOs => "macOS",
            HostOs::Solaris => "Solaris",
            HostOs::Windows => "Windows",
            HostOs::Other => "this",
        }
    }
}

/// A host-only network VirtualBox will refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightError {
    /// The lab network (address, prefix).
    pub network: (Ipv4Addr, u8),
    pub version: VBoxVersion,
    pub host_os: HostOs,
    /// The IPv4 ranges VirtualBox allows now.
    pub allowed: Vec<(Ipv4Addr, u8)>,
    /// Whether networks.conf exists (then only its ranges count).
    pub conf_present: bool,
}

impl PreflightError {
    /// The line to add to networks.conf.
    pub fn conf_line(&self) -> String {
        format!("* {}", cidr_text(self.network))
    }

    /// An allowed range to move the lab into, and a /24 in it.
    fn alternative(&self) -> Option<((Ipv4Addr, u8), Ipv4Addr)> {
        self.allowed
            .iter()
            .find(|(_, p)| *p <= 24)
            .map(|r| (*r, network_of(r.0, 24)))
    }
}

impl std::fmt::Display for PreflightError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let allowed = if self.allowed.is_empty() {
            "none".to_string()
        } else {
            self.allowed
                .iter()
                .map(|r| cidr_text(*r))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let from = if self.conf_present {
            format!(", from {NETWORKS_CONF}")
        } else {
            String::new()
        };
        write!(
            f,
            "host-only network {} is outside the ranges VirtualBox {} allows on {} hosts ({allowed}{from}); add the line `{}` to {NETWORKS_CONF} (as root)",
            cidr_text(self.network),
            self.version,
            self.host_os.label(),
            self.conf_line(),
        )?;
        if let Some((range, net)) = self.alternative() {
            let o = net.octets();
            let p = format!("{}.{}.{}", o[0], o[1], o[2]);
            write!(
                f,
                ", or move the lab into {}, e.g. `cidr = \"{net}/24\"` with node IPs {p}.10, {p}.101, …",
                cidr_text(range)
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for PreflightError {}

fn cidr_text((a, p): (Ipv4Addr, u8)) -> String {
    format!("{a}/{p}")
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn network_of(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & mask(prefix))
}

/// Whether `inner` lies entirely inside `outer`.
fn contains(outer: (Ipv4Addr, u8), inner: (Ipv4Addr, u8)) -> bool {
    inner.1 >= outer.1 && u32::from(inner.0) & mask(outer.1) == u32::from(outer.0) & mask(outer.1)
}

/// IPv4 ranges from networks.conf text: `* RANGE RANGE …` lines; `#` lines and IPv6 ranges are
/// skipped, as are entries that do not parse. The `*` must be a word of its own
/// (VBoxNetAdpCtl.cpp reads the line word by word): `*10.0.0.0/8` allows nothing.
pub fn parse_networks_conf(text: &str) -> Vec<(Ipv4Addr, u8)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix('*'))
        .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
        .flat_map(str::split_whitespace)
        .filter_map(|r| {
            let (a, p) = r.split_once('/')?;
            let a: Ipv4Addr = a.parse().ok()?;
            let p: u8 = p.parse().ok().filter(|p| *p <= 32)?;
            Some((network_of(a, p), p))
        })
        .collect()
}

/// Whether VirtualBox will accept a host-only network. `network` is any address in the network
/// plus its prefix (e.g. the host's address on it); `networks_conf` is the text of
/// /etc/vbox/networks.conf, None when the file does not exist.
pub fn check_hostonly_range(
    version: VBoxVersion,
    host_os: HostOs,
    networks_conf: Option<&str>,
    network: (Ipv4Addr, u8),
) -> Result<(), PreflightError> {
    if !host_os.restricted() || version < RESTRICTED_SINCE {
        return Ok(());
    }
    let net = (network_of(network.0, network.1), network.1);
    let allowed = match networks_conf {
        Some(text) => parse_networks_conf(text),
        None => vec![DEFAULT_RANGE],
    };
    if allowed.iter().any(|r| contains(*r, net)) {
        return Ok(());
    }
    Err(PreflightError {
        network: net,
        version,
        host_os,
        allowed,
        conf_present: networks_conf.is_some(),
    })
}

/// [`check_hostonly_range`] with the host's networks.conf (`conf_path`, normally
/// [`NETWORKS_CONF`]). A file that exists but cannot be read counts as missing.
pub fn check_hostonly_range_on_host(
    version: VBoxVersion,
    host_os: HostOs,
    conf_path: &Path,
    network: (Ipv4Addr, u8),
) -> Result<(), PreflightError> {
    let text = std::fs::read_to_string(conf_path).ok();
    check_hostonly_range(version, host_os, text.as_deref(), network)
}
