//! Pure parsers for `VBoxManage` output, table-tested on the samples in `tests/data/`.
//!
//! Formats follow VirtualBox's own sources (`src/VBox/Frontends/VBoxManage/VBoxManageInfo.cpp`,
//! `VBoxManageList.cpp`, `VBoxManageHostonly.cpp`, `VBoxManageSnapshot.cpp`, `VBoxManageMisc.cpp`,
//! `VBoxManage.cpp`) and the manual's `showvminfo` chapter.

use std::net::Ipv4Addr;

/// A VirtualBox version, from `VBoxManage --version` (`7.0.20r163906`, `6.1.50_Debianr161033`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VBoxVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl VBoxVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> VBoxVersion {
        VBoxVersion {
            major,
            minor,
            patch,
        }
    }

    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        *self >= VBoxVersion::new(major, minor, patch)
    }
}

impl std::fmt::Display for VBoxVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version in `VBoxManage --version` output. Warnings VBoxManage prints first (e.g. about a
/// missing kernel module) are skipped: the version is the last line that starts with a digit.
/// Distribution suffixes (`_Debian`, `_Ubuntu`) and the `r<revision>` part are ignored.
pub fn version(text: &str) -> Option<VBoxVersion> {
    text.lines().rev().map(str::trim).find_map(|line| {
        if !line.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let head: String = line
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = head.split('.').filter(|p| !p.is_empty());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        Some(VBoxVersion::new(major, minor, patch))
    })
}

/// Keys whose values VirtualBox prints raw, without escaping `"` or `\\`: snapshot names
/// (VBoxManageInfo.cpp `showSnapshots`, 7.0.14 line 280) and NAT rules (`Forwarding(n)`, line
/// 1686, "@todo … escaping"). Their value is everything between `="` and the line's last `"`.
fn is_raw_key(key: &str) -> bool {
    key.starts_with("SnapshotName")
        || key.starts_with("CurrentSnapshotName")
        || key.starts_with("SnapshotDescription")
        || key.starts_with("Forwarding(")
}

/// `key=value` pairs of `--machinereadable` output, in order. Quoted values are unescaped
/// (VirtualBox escapes `"` and `\\` with a backslash for most strings), except for the keys it
/// prints raw ([`is_raw_key`]); numbers are bare. CRLF line ends are accepted.
pub fn machine_readable(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            let (key, rest) = if let Some(quoted) = line.strip_prefix('"') {
                let (k, len) = unquote(quoted)?;
                (k, quoted.get(len..)?.strip_prefix('=')?)
            } else {
                let (k, v) = line.split_once('=')?;
                (k.to_string(), v)
            };
            let value = match rest.strip_prefix('"') {
                Some(q) if is_raw_key(&key) => q.strip_suffix('"').unwrap_or(q).to_string(),
                Some(q) => unquote(q).map_or_else(|| q.to_string(), |(v, _)| v),
                None => rest.to_string(),
            };
            Some((key, value))
        })
        .collect()
}

/// Reads a quoted string whose opening quote is already consumed; returns the text and the
/// number of bytes consumed including the closing quote.
fn unquote(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '"' => return Some((out, i + 1)),
            _ => out.push(c),
        }
    }
    None
}

/// A machine's state, from `VMState="..."` (VirtualBox's short state names,
/// VBoxManageInfo.cpp `machineStateToName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    Running,
    Paused,
    PoweredOff,
    /// The VM process died (crash, host OOM, killed).
    Aborted,
    /// `saved` or `aborted-saved`: a state file to resume from; settings are locked.
    Saved,
    /// `gurumeditation`: the VM hit a fatal error; its process waits to be powered off.
    GuruMeditation,
    /// Transitional or rare states (`starting`, `stopping`, `saving`, …).
    Other(String),
}

impl VmState {
    pub fn parse(s: &str) -> VmState {
        match s {
            "running" => VmState::Running,
            "paused" => VmState::Paused,
            "poweroff" => VmState::PoweredOff,
            "aborted" => VmState::Aborted,
            "saved" | "aborted-saved" => VmState::Saved,
            "gurumeditation" => VmState::GuruMeditation,
            other => VmState::Other(other.to_string()),
        }
    }

    /// Running, paused or in transition: a working VM process exists.
    pub fn is_up(&self) -> bool {
        matches!(
            self,
            VmState::Running | VmState::Paused | VmState::Other(_) // starting, stopping, live snapshotting, …
        )
    }

    /// A VM process exists and must be powered off before the VM can start again or be
    /// deleted (up, or stuck in a guru meditation).
    pub fn has_process(&self) -> bool {
        self.is_up() || *self == VmState::GuruMeditation
    }

    /// The guest died: `aborted` or `gurumeditation`.
    pub fn is_dead(&self) -> bool {
        matches!(self, VmState::Aborted | VmState::GuruMeditation)
    }

    /// Settings can be changed (`modifyvm` works).
    pub fn is_mutable(&self) -> bool {
        matches!(self, VmState::PoweredOff | VmState::Aborted)
    }
}

/// A NAT port-forwarding rule, `Forwarding(N)="name,tcp,127.0.0.1,2222,,22"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRule {
    pub name: String,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
    pub guest_ip: String,
    pub guest_port: u16,
}

impl NatRule {
    pub fn parse(s: &str) -> Option<NatRule> {
        let f: Vec<&str> = s.split(',').collect();
        if f.len() != 6 {
            return None;
        }
        Some(NatRule {
            name: f[0].to_string(),
            protocol: f[1].to_string(),
            host_ip: f[2].to_string(),
            host_port: f[3].parse().ok()?,
            guest_ip: f[4].to_string(),
            guest_port: f[5].parse().ok()?,
        })
    }
}

/// One network adapter of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NicInfo {
    /// 1-based, as in `--nic1`.
    pub index: u8,
    /// `nat`, `hostonly`, `intnet`, `bridged`, `natnetwork`, `none`, …
    pub attachment: String,
    /// 12 hex digits, no colons.
    pub mac: Option<String>,
    pub hostonly_adapter: Option<String>,
    /// `hostonly-networkN`: the host-only *network* (VirtualBox 7 on macOS).
    pub hostonly_network: Option<String>,
    pub intnet: Option<String>,
    pub cable_connected: Option<bool>,
    pub nat_rules: Vec<NatRule>,
}

/// What `showvminfo --machinereadable` says about a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    pub name: String,
    pub uuid: String,
    pub state: VmState,
    /// The `.vbox` settings file.
    pub cfg_file: Option<String>,
    /// `LogFldr`: where `VBox.log` is.
    pub log_folder: Option<String>,
    pub groups: Option<String>,
    pub cpus: Option<u32>,
    pub memory_mb: Option<u32>,
    /// Adapters that are present, `nic<N>="none"` ones included, by index.
    pub nics: Vec<NicInfo>,
    /// Serial port 1 log file, when `uartmode1="file,<path>"`.
    pub uart1_file: Option<String>,
    pub current_snapshot: Option<String>,
    /// Snapshot names in tree order (`SnapshotName*`, VBoxManageInfo.cpp `showSnapshots`).
    pub snapshots: Vec<String>,
}

impl VmInfo {
    pub fn nic(&self, index: u8) -> Option<&NicInfo> {
        self.nics.iter().find(|n| n.index == index)
    }
}

/// Index of a per-NIC key such as `macaddress2` (prefix `macaddress`).
fn nic_index(key: &str, prefix: &str) -> Option<u8> {
    let n = key.strip_prefix(prefix)?;
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|i| *i >= 1)
}

/// Parse `VBoxManage showvminfo <vm> --machinereadable`. None without `name`, `UUID` and
/// `VMState` (e.g. for an inaccessible VM).
pub fn showvminfo(text: &str) -> Option<VmInfo> {
    let pairs = machine_readable(text);
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut nics: Vec<NicInfo> = Vec::new();
    fn entry(nics: &mut Vec<NicInfo>, index: u8) -> &mut NicInfo {
        if let Some(pos) = nics.iter().position(|n| n.index == index) {
            return &mut nics[pos];
        }
        nics.push(NicInfo {
            index,
            ..NicInfo::default()
        });
        nics.last_mut().expect("just pushed")
    }
    // `Forwarding(N)` lines carry no NIC index: they follow the `nic<N>` line of their NIC.
    let mut last_nic: Option<u8> = None;
    for (k, v) in &pairs {
        if let Some(i) = nic_index(k, "nic") {
            entry(&mut nics, i).attachment = v.clone();
            last_nic = Some(i);
        } else if let Some(i) = nic_index(k, "macaddress") {
            entry(&mut nics, i).mac = Some(v.clone());
        } else if let Some(i) = nic_index(k, "hostonlyadapter") {
            entry(&mut nics, i).hostonly_adapter = Some(v.clone());
        } else if let Some(i) = nic_index(k, "hostonly-network") {
            entry(&mut nics, i).hostonly_network = Some(v.clone());
        } else if let Some(i) = nic_index(k, "intnet") {
            entry(&mut nics, i).intnet = Some(v.clone());
        } else if let Some(i) = nic_index(k, "cableconnected") {
            entry(&mut nics, i).cable_connected = Some(v == "on");
        } else if k.starts_with("Forwarding(")
            && let (Some(i), Some(rule)) = (last_nic, NatRule::parse(v))
        {
            entry(&mut nics, i).nat_rules.push(rule);
        }
    }
    nics.sort_by_key(|n| n.index);
    Some(VmInfo {
        name: get("name")?,
        uuid: get("UUID")?,
        state: VmState::parse(&get("VMState")?),
        cfg_file: get("CfgFile"),
        log_folder: get("LogFldr"),
        groups: get("groups"),
        cpus: get("cpus").and_then(|v| v.parse().ok()),
        memory_mb: get("memory").and_then(|v| v.parse().ok()),
        nics,
        uart1_file: get("uartmode1").and_then(|v| v.strip_prefix("file,").map(str::to_string)),
        current_snapshot: get("CurrentSnapshotName"),
        snapshots: snapshot_names(&pairs),
    })
}

/// `VBoxManage list vms` / `list runningvms`: `"name" {uuid}` per line.
pub fn list_vms(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix('"')?;
            let (name, uuid) = rest.rsplit_once("\" {")?;
            let uuid = uuid.strip_suffix('}')?;
            Some((name.to_string(), uuid.to_string()))
        })
        .collect()
}

/// One host-only interface from `VBoxManage list hostonlyifs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOnlyIf {
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub dhcp: Option<bool>,
    pub status: Option<String>,
}

/// `Key: value` lines of a `list` block, keys dropped (they are translated, the values are not).
fn key_values(block: &[&str]) -> Vec<String> {
    block
        .iter()
        .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        .collect()
}

/// `VBoxManage list hostonlyifs`: one block per interface (VBoxManageList.cpp
/// `listHostOnlyNetworkInterfaces`: Name, GUID, DHCP, IPAddress, NetworkMask, IPV6Address,
/// IPV6NetworkMaskPrefixLength, HardwareAddress, MediumType, Wireless, Status,
/// VBoxNetworkName). The keys are translated in VirtualBox 7 (`List::tr`), so this reads the
/// values by position: the name is the block's first value, the address and the mask the first
/// two IPv4 values. Blocks are separated by blank lines.
pub fn list_hostonlyifs(text: &str) -> Vec<HostOnlyIf> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    lines
        .split(|l| l.trim().is_empty())
        .filter_map(|block| {
            let values = key_values(block);
            let name = values.first().filter(|n| !n.is_empty())?.clone();
            let mut ips = values.iter().filter_map(|v| v.parse::<Ipv4Addr>().ok());
            let (ip, netmask) = (ips.next(), ips.next());
            // DHCP is the third value, Status the one before VBoxNetworkName (Windows and older
            // releases print no `Wireless:` line); their words are translated, so English only.
            let dhcp = values.get(2).and_then(|v| match v.as_str() {
                "Enabled" => Some(true),
                "Disabled" => Some(false),
                _ => None,
            });
            let status = values
                .len()
                .checked_sub(2)
                .and_then(|i| values.get(i))
                .filter(|v| ["Up", "Down"].contains(&v.as_str()))
                .cloned();
            Some(HostOnlyIf {
                name,
                ip,
                netmask,
                dhcp,
                status,
            })
        })
        .collect()
}

/// One host-only network from `VBoxManage list hostonlynets` (VirtualBox 7 on macOS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOnlyNet {
    pub name: String,
    pub netmask: Option<Ipv4Addr>,
    /// The host's address on the network (vmnet's start address).
    pub lower_ip: Option<Ipv4Addr>,
    pub upper_ip: Option<Ipv4Addr>,
}

/// `VBoxManage list hostonlynets` (VBoxManageList.cpp `listHostOnlyNetworks`: Name, GUID, a
/// blank line, State, NetworkMask, LowerIP, UpperIP, `VBoxNetworkName: hostonly-NAME`, a blank
/// line). Keys are translated; a network ends at its `hostonly-` line, the name is its first
/// value, the IPv4 values are the mask, the lower and the upper address in that order.
pub fn list_hostonlynets(text: &str) -> Vec<HostOnlyNet> {
    let mut out = Vec::new();
    let mut block: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((_, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        let end = v.starts_with("hostonly-");
        block.push(v);
        if end {
            let mut ips = block.iter().filter_map(|v| v.parse::<Ipv4Addr>().ok());
            if let Some(name) = block.first().filter(|n| !n.is_empty()) {
                out.push(HostOnlyNet {
                    name: name.clone(),
                    netmask: ips.next(),
                    lower_ip: ips.next(),
                    upper_ip: ips.next(),
                });
            }
            block.clear();
        }
    }
    out
}

/// The interface `VBoxManage hostonlyif create --machinereadable` made: the bare name on its
/// own line (VBoxManageHostonly.cpp, 6.x and 7.x); progress lines (`0%...`) are skipped. The
/// English human-readable form, `Interface 'vboxnet0' was successfully created`, is accepted too.
pub fn hostonlyif_created(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    for line in &lines {
        if let Some(rest) = line.strip_prefix("Interface '")
            && let Some((name, _)) = rest.split_once("' was successfully created")
        {
            return Some(name.to_string());
        }
    }
    match lines.as_slice() {
        [name] if !name.contains('\'') => Some((*name).to_string()),
        _ => None,
    }
}

fn snapshot_names(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("SnapshotName")
                .is_some_and(|rest| rest.chars().all(|c| c == '-' || c.is_ascii_digit()))
        })
        .map(|(_, v)| v.clone())
        .collect()
}

/// Snapshot names from `showvminfo --machinereadable` or `snapshot <vm> list
/// --machinereadable` (tree order: `SnapshotName`, `SnapshotName-1`, `SnapshotName-1-1`, …),
/// read raw (VirtualBox does not escape them). No lines, no snapshots.
pub fn snapshot_list(text: &str) -> Vec<String> {
    snapshot_names(&machine_readable(text))
}

/// Whether a snapshot name survives VirtualBox's unescaped machine-readable output: no `"`,
/// no `\\`, no line break, not empty.
pub fn snapshot_name_ok(name: &str) -> bool {
    !name.is_empty() && !name.contains(['"', '\\', '\n', '\r'])
}

/// `VBoxManage getextradata <vm> <key>`: `Value: <v>`, or `No value set!` (VBoxManageMisc.cpp;
/// both translated in 7.x). Language-independent: the text after the first `: ` of the first
/// line that has one.
pub fn extradata_value(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.trim_end_matches('\r')
            .split_once(": ")
            .map(|(_, v)| v.trim_end().to_string())
    })
}

/// Host ports VirtualBox's NAT could not bind, from a VM's `VBox.log`: slirp.c logs
/// `NAT: Failed to redirect TCP 127.0.0.1:2222 -> 0.0.0.0:22 (Address already in use)` and
/// the VM boots anyway (7.0's DrvNAT.cpp tests `< 0`, slirp returns 1). Older releases wrote
/// `NAT: failed to redirect TCP 2222 => 22`.
pub fn nat_redirect_failures(log: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in log.lines() {
        let lower = line.to_ascii_lowercase();
        let Some(i) = lower.find("nat: failed to redirect ") else {
            continue;
        };
        let rest = &line[i + "nat: failed to redirect ".len()..];
        let mut words = rest.split_whitespace();
        let _proto = words.next();
        let Some(host) = words.next() else {
            continue;
        };
        let port = host.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        if let Some(p) = port
            && !ports.contains(&p)
        {
            ports.push(p);
        }
    }
    ports
}

/// Whether VBoxManage reported an error on stderr. "Sometimes, VBoxManage fails but doesn't
/// actually return a non-zero exit code" (Vagrant's driver), so this is checked even on success.
pub fn reports_error(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        l.find(": error:").is_some_and(|i| {
            let head = l[..i].trim_end();
            let prog = head.rsplit(['/', '\\']).next().unwrap_or(head);
            prog.eq_ignore_ascii_case("VBoxManage") || prog.eq_ignore_ascii_case("VBoxManage.exe")
        })
    })
}

/// Errors that go away when retried: another VBoxManage or the VM process briefly holds the
/// machine's session lock (e.g. right after `controlvm poweroff`).
pub fn is_transient(stderr: &str) -> bool {
    const TRANSIENT: &[&str] = &[
        "VBOX_E_INVALID_OBJECT_STATE",
        "is already locked",
        "session is busy",
    ];
    TRANSIENT.iter().any(|t| stderr.contains(t))
}

/// The VM (or snapshot, or interface) does not exist.
pub fn is_not_found(stderr: &str) -> bool {
    stderr.contains("VBOX_E_OBJECT_NOT_FOUND")
        || stderr.contains("Could not find a registered machine")
}

/// The line that says hardware virtualization is unavailable, if any.
pub fn hw_virt_problem(stderr: &str) -> Option<String> {
    const MARKERS: &[&str] = &[
        "VERR_VMX_NO_VMX",
        "VERR_SVM_DISABLED",
        "VERR_SVM_NO_SVM",
        "VERR_VMX_MSR_ALL_VMX_DISABLED",
        "VERR_VMX_MSR_VMX_DISABLED",
        "VERR_NEM_NOT_AVAILABLE",
        "VT-x is not available",
        "AMD-V is not available",
        "AMD-V is disabled",
        "VT-x is disabled",
    ];
    stderr
        .lines()
        .find(|l| MARKERS.iter().any(|m| l.contains(m)))
        .map(|l| {
            let l = l.trim();
            match l.find(": error:") {
                Some(i) => l[i + ": error:".len()..].trim().to_string(),
                None => l.to_string(),
            }
        })
}

/// The line that says VirtualBox's kernel driver is missing, if any.
pub fn kernel_driver_problem(text: &str) -> Option<String> {
    const MARKERS: &[&str] = &[
        "VERR_VM_DRIVER_NOT_INSTALLED",
        "VERR_VM_DRIVER_NOT_ACCESSIBLE",
        "VERR_VM_DRIVER_LOAD_ERROR",
        "Kernel driver not installed",
        "vboxdrv kernel module is not loaded",
    ];
    text.lines()
        .find(|l| MARKERS.iter().any(|m| l.contains(m)))
        .map(|l| {
            let l = l.trim();
            match l.find(": error:") {
                Some(i) => l[i + ": error:".len()..].trim().to_string(),
                None => l.to_string(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_in_machine_readable_strings() {
        let pairs = machine_readable("name=\"a \\\"b\\\" c\\\\d\"\nmemory=1024\n\"key=x\"=\"v\"\n");
        assert_eq!(
            pairs,
            vec![
                ("name".into(), "a \"b\" c\\d".into()),
                ("memory".into(), "1024".into()),
                ("key=x".into(), "v".into()),
            ]
        );
    }

    #[test]
    fn error_lines_on_stderr() {
        assert!(reports_error("VBoxManage: error: Could not find"));
        assert!(reports_error("0%...\nVBoxManage.exe: error: boom"));
        assert!(reports_error("/usr/lib/virtualbox/VBoxManage: error: x"));
        assert!(!reports_error("warning: something"));
        assert!(!reports_error("vboxnet0: error: unrelated tool"));
    }

    #[test]
    fn nat_rules() {
        assert_eq!(
            NatRule::parse("ssh,tcp,127.0.0.1,2222,,22"),
            Some(NatRule {
                name: "ssh".into(),
                protocol: "tcp".into(),
                host_ip: "127.0.0.1".into(),
                host_port: 2222,
                guest_ip: String::new(),
                guest_port: 22,
            })
        );
        assert_eq!(NatRule::parse("bad"), None);
    }
}
