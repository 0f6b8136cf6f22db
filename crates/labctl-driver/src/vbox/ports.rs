//! NAT port forwards of a running VM, and the `VBox.log` lines that say a host port was taken.

use std::path::{Path, PathBuf};

use super::lifecycle::vbox_log;
use super::{SHORT, VBoxDriver, VBoxError, VmInfo, args, parse};
use crate::MachineConfig;

/// The VM's `VBox.log` where `showvminfo` says (`LogFldr`), else where it should be.
pub(super) fn vm_log(m: &MachineConfig, info: &VmInfo) -> PathBuf {
    info.log_folder
        .as_deref()
        .map_or_else(|| vbox_log(m), |f| Path::new(f).join("VBox.log"))
}

pub(super) fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// The part of a file after `offset` bytes (all of it when the file got shorter: rotated).
pub(super) fn read_from(p: &Path, offset: u64) -> String {
    let Ok(bytes) = std::fs::read(p) else {
        return String::new();
    };
    let start = usize::try_from(offset)
        .ok()
        .filter(|o| *o <= bytes.len())
        .unwrap_or(0);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

impl VBoxDriver {
    /// Make NIC 1's NAT rules of a running VM what the machine wants (`controlvm natpf1
    /// delete/add`): a saved VM resumes with the rules it was saved with, and a port that was
    /// taken moves. Returns a port VirtualBox could not bind, from `VBox.log`.
    pub(super) fn apply_forwards_live(
        &self,
        m: &MachineConfig,
        info: &VmInfo,
    ) -> Result<Option<u16>, VBoxError> {
        let want = args::nat_rules(m);
        let have: Vec<parse::NatRule> =
            info.nic(1).map(|n| n.nat_rules.clone()).unwrap_or_default();
        let ours = |name: &str| {
            name == "ssh"
                || name
                    .strip_prefix("tcp")
                    .is_some_and(|p| p.parse::<u16>().is_ok())
        };
        let log = vm_log(m, info);
        let offset = file_len(&log);
        let mut changed = false;
        for rule in &have {
            let wanted = want.iter().find(|(n, _)| *n == rule.name);
            let same =
                wanted.is_some_and(|(_, spec)| parse::NatRule::parse(spec).as_ref() == Some(rule));
            if ours(&rule.name) && !same {
                self.run(&args::natpf_delete(&m.id, &rule.name), SHORT)?;
                changed = true;
            }
        }
        for (name, spec) in &want {
            let present = have
                .iter()
                .any(|r| r.name == *name && parse::NatRule::parse(spec).as_ref() == Some(r));
            if !present {
                self.run(&args::natpf_add(&m.id, spec), SHORT)?;
                changed = true;
            }
        }
        if !changed {
            return Ok(None);
        }
        Ok(self.taken_port(m, &read_from(&log, offset)))
    }

    /// The first of the machine's host ports that `VBox.log` text says NAT could not bind.
    pub(super) fn taken_port(&self, m: &MachineConfig, log: &str) -> Option<u16> {
        let ours: Vec<u16> = std::iter::once(m.ssh.host)
            .chain(m.forwards.iter().map(|f| f.host))
            .collect();
        parse::nat_redirect_failures(log)
            .into_iter()
            .find(|p| ours.contains(p))
    }
}
