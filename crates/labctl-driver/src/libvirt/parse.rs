//! Reading `virsh` output. Every test input below is output of virsh 9.0.0 (Debian 12),
//! captured from a real daemon.

/// A domain's state, from `virsh domstate` (the first line; `--reason` adds ` (why)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomState {
    Running,
    Paused,
    /// Shut off, crashed, or suspended to disk: not running, disk intact.
    Off,
    /// Going down (`in shutdown`).
    ShuttingDown,
    Other(String),
}

pub fn domstate(text: &str) -> DomState {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let state = first.split(" (").next().unwrap_or("").trim();
    match state {
        "running" | "idle" => DomState::Running,
        "paused" | "pmsuspended" => DomState::Paused,
        "shut off" | "crashed" => DomState::Off,
        "in shutdown" => DomState::ShuttingDown,
        other => DomState::Other(other.to_string()),
    }
}

/// One name a line: `list --all --name`, `net-list --all --name`, `snapshot-list --name`,
/// `pool-list --all --name` (virsh pads the names and ends with an empty line).
pub fn names(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `vol-list POOL` (no `--name` in 9.0): the volume names, from the table's first column.
pub fn vol_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut body = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("---") {
            body = true;
            continue;
        }
        if !body || t.is_empty() {
            continue;
        }
        if let Some(name) = t.split_whitespace().next() {
            out.push(name.to_string());
        }
    }
    out
}

/// `Capacity:` of `vol-info --bytes`, in bytes.
pub fn capacity_bytes(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Capacity:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// What a failed virsh call says was missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Domain,
    Network,
    Pool,
    Volume,
    Snapshot,
}

/// The object a failed call did not find, from its stderr.
pub fn missing(stderr: &str) -> Option<Missing> {
    let s = stderr;
    if s.contains("Domain snapshot not found") {
        Some(Missing::Snapshot)
    } else if s.contains("Domain not found") || s.contains("failed to get domain") {
        Some(Missing::Domain)
    } else if s.contains("Network not found") || s.contains("failed to get network") {
        Some(Missing::Network)
    } else if s.contains("Storage pool not found") || s.contains("failed to get pool") {
        Some(Missing::Pool)
    } else if s.contains("Storage volume not found") || s.contains("failed to get vol") {
        Some(Missing::Volume)
    } else {
        None
    }
}

/// `Some(detail)` when virsh could not reach the daemon at all.
pub fn connect_failure(stderr: &str) -> Option<String> {
    if !stderr.contains("failed to connect to the hypervisor") {
        return None;
    }
    let detail = stderr
        .lines()
        .map(|l| l.trim().trim_start_matches("error:").trim())
        .filter(|l| !l.is_empty() && !l.contains("failed to connect to the hypervisor"))
        .collect::<Vec<_>>()
        .join("; ");
    Some(if detail.is_empty() {
        "failed to connect to the hypervisor".into()
    } else {
        detail
    })
}

/// "Requested operation is not valid: domain is not running" (destroy/shutdown of a stopped
/// domain): nothing to do.
pub fn not_running(stderr: &str) -> bool {
    stderr.contains("domain is not running")
}

/// "network is already active" / "storage pool 'x' is already active" (`net-start`,
/// `pool-start` of an active one): nothing to do.
pub fn already_active(stderr: &str) -> bool {
    stderr.contains("is already active")
}

/// "libvirt 9.0.0 (QEMU 7.2.22)" from `virsh version`.
pub fn version(text: &str) -> String {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
    };
    let lib = field("Using library:").unwrap_or_default();
    match field("Running hypervisor:") {
        Some(h) if !lib.is_empty() => format!("{lib} ({h})"),
        Some(h) => h,
        None => lib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domstate_reads_plain_and_reason_forms() {
        assert_eq!(domstate("running\n\n"), DomState::Running);
        assert_eq!(domstate("running (from snapshot)\n\n"), DomState::Running);
        assert_eq!(domstate("shut off\n\n"), DomState::Off);
        assert_eq!(domstate("shut off (destroyed)\n\n"), DomState::Off);
        assert_eq!(domstate("paused (user)\n"), DomState::Paused);
        assert_eq!(domstate("in shutdown\n"), DomState::ShuttingDown);
        assert_eq!(domstate("crashed (panicked)\n"), DomState::Off);
        assert_eq!(domstate("blocked\n"), DomState::Other("blocked".into()));
    }

    #[test]
    fn name_lists_drop_padding_and_blank_lines() {
        assert_eq!(names("labctl-test-n1\n\n"), vec!["labctl-test-n1"]);
        assert_eq!(
            names("default\nlabctl-test-private\n\n"),
            vec!["default", "labctl-test-private"]
        );
        assert_eq!(names("labctl              \n\n"), vec!["labctl"]);
        assert!(names("\n").is_empty());
    }

    #[test]
    fn vol_list_table() {
        let t = " Name                 Path\n------------------------------------------------------------------\n box-e0763fb6.qcow2   /var/lib/libvirt/labctl/box-e0763fb6.qcow2\n n1.qcow2             /var/lib/libvirt/labctl/n1.qcow2\n\n";
        assert_eq!(vol_names(t), vec!["box-e0763fb6.qcow2", "n1.qcow2"]);
        let empty = " Name   Path\n---------------\n\n";
        assert!(vol_names(empty).is_empty());
    }

    #[test]
    fn vol_info_capacity() {
        let t = "Name:           box-e0763fb6.qcow2\nType:           file\nCapacity:       8589934592 bytes\nAllocation:     275648512 bytes\n\n";
        assert_eq!(capacity_bytes(t), Some(8_589_934_592));
        assert_eq!(capacity_bytes("Name: x\n"), None);
    }

    #[test]
    fn missing_objects_from_stderr() {
        assert_eq!(
            missing("error: failed to get domain 'nope'\n"),
            Some(Missing::Domain)
        );
        assert_eq!(
            missing(
                "error: failed to get network 'nope'\nerror: Network not found: no network with matching name 'nope'\n"
            ),
            Some(Missing::Network)
        );
        assert_eq!(
            missing(
                "error: failed to get pool 'nope'\nerror: Storage pool not found: no storage pool with matching name 'nope'\n"
            ),
            Some(Missing::Pool)
        );
        assert_eq!(
            missing(
                "error: Domain snapshot not found: no domain snapshot with matching name 'nope'\n"
            ),
            Some(Missing::Snapshot)
        );
        assert_eq!(
            missing(
                "error: failed to get vol 'x.qcow2'\nerror: Storage volume not found: no storage vol with matching path 'x.qcow2'\n"
            ),
            Some(Missing::Volume)
        );
        assert_eq!(
            missing("error: internal error: Unknown CPU model max\n"),
            None
        );
    }

    #[test]
    fn connection_failures_keep_the_reason() {
        let local = "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n";
        assert_eq!(
            connect_failure(local).as_deref(),
            Some(
                "Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory"
            )
        );
        let ssh = "error: failed to connect to the hypervisor\nerror: Cannot recv data: ssh: connect to host 127.0.0.2 port 22: Connection refused: Connection reset by peer\n";
        assert!(
            connect_failure(ssh)
                .unwrap_or_default()
                .contains("Connection refused")
        );
        assert_eq!(connect_failure("error: failed to get domain 'x'"), None);
    }

    #[test]
    fn version_line() {
        let t = "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.22\n\n";
        assert_eq!(version(t), "libvirt 9.0.0 (QEMU 7.2.22)");
        assert_eq!(version(""), "");
    }

    #[test]
    fn benign_failures() {
        assert!(not_running(
            "error: Failed to destroy domain 'labctl-test-n1'\nerror: Requested operation is not valid: domain is not running\n"
        ));
        assert!(already_active(
            "error: Failed to start network x\nerror: Requested operation is not valid: network is already active\n"
        ));
    }
}
