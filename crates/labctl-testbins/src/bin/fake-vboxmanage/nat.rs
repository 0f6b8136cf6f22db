//! NIC 1's NAT rules and what VirtualBox's NAT logs for them (`VBox.log`).

use std::fs;
use std::path::Path;

use crate::model::Vm;
use crate::state::env_list;

/// NIC 1's NAT rules (`name,tcp,hostip,hostport,guestip,guestport`).
pub(crate) fn nat_rules(vm: &Vm) -> Vec<String> {
    vm.config
        .nics
        .get(&1)
        .map(|n| n.rules.clone())
        .unwrap_or_default()
}

/// What VirtualBox's NAT logs for a rule (slirp.c): "Set redirect", or "Failed to redirect"
/// when the host port is taken (`FAKE_VBOX_TAKEN_PORTS`).
pub(crate) fn nat_log_line(state: &Path, rule: &str) -> String {
    let f: Vec<&str> = rule.split(',').collect();
    if f.len() != 6 {
        return String::new();
    }
    let host_ip = if f[2].is_empty() { "0.0.0.0" } else { f[2] };
    let first = fs::read_to_string(state.join("first-ssh-taken")).unwrap_or_default();
    let taken = env_list("FAKE_VBOX_TAKEN_PORTS")
        .iter()
        .any(|p| p == f[3] || (p == "first-ssh" && first.trim() == f[3]));
    if taken {
        format!(
            "00:00:01.234567 NAT: Failed to redirect TCP {host_ip}:{} -> 0.0.0.0:{} (Address already in use)\n",
            f[3], f[5]
        )
    } else {
        format!(
            "00:00:01.234567 NAT: Set redirect TCP {host_ip}:{} -> 0.0.0.0:{}\n",
            f[3], f[5]
        )
    }
}
