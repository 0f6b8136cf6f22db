//! The VirtualBox driver: `VBoxManage` behind the [`Driver`] trait.
//!
//! - Each box's OVF is imported once as a master VM (`labctl-master-<box dir>`, recorded in
//!   `<box dir>/vbox-master.json`) with a snapshot `base`; every node is a linked clone of it
//!   (Vagrant's `linked_clone`), so a node costs a differencing disk and seconds, not a copy.
//! - Every call goes through [`crate::exec::Cmd`]. `VBoxManage: error:` on stderr is a failure
//!   even with exit status 0; known-transient errors (session locks) are retried, 3 tries.
//! - The calls that race inside VirtualBox (import, clonevm, hostonlyif create) are serialised
//!   by a process-wide mutex (plus a file lock around the master import); boot, stop and
//!   status of different VMs run in parallel.
//! - The version is detected once; differences between versions are handled here, in one
//!   driver (today: `--nested-hw-virt` from 6.0, the host-only range rules from 6.1.28).
//! - A VM is labctl's when its settings file lives in the machine directory or it carries
//!   extradata `/labctl/id` = machine id; a same-named VM that is neither is never touched.
//!
//! - VBoxManage runs with `LC_ALL`/`LANG` set to a UTF-8 C or en_US locale, and only
//!   machine-readable output is parsed (VirtualBox 7 translates the rest, and its own language
//!   setting overrides the environment): snapshot names from `showvminfo --machinereadable`,
//!   the new interface from `hostonlyif create --machinereadable`, list blocks by position.
//! - Supported: VirtualBox 6.1 and later, except 7.0.0 (it omits `Forwarding(n)` lines).
//! - VirtualBox 7 on macOS has no host-only interfaces: host-only *networks* instead.
//! - `LABCTL_VBOX_RECORD=FILE` appends every call (argv, locale, exit, output, duration) to FILE
//!   as JSON lines, for transcripts users contribute (docs/virtualbox.md).
//!
//! Not covered: `egress = false` (VirtualBox NAT has no "restrict") and direct kernel boot;
//! host-only interfaces are left in place by `networks_down` since other labs or VMs may use them.
//!
//! Files: `config` (where VBoxManage is, locale, versions), `call` (running it, transcripts,
//! `showvminfo`), `master` (import and linked clones), `networks` (host-only and internal
//! networks), `lifecycle` (states: start, stop, destroy), `ports` (NAT forwards of a running
//! VM, `VBox.log`), `snapshot`; `args` builds argv, `parse` reads output.

pub mod args;
mod call;
mod config;
mod error;
mod lifecycle;
mod master;
mod networks;
pub mod parse;
mod ports;
pub mod preflight;
mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::files::tail_file;
use crate::{
    Driver, DriverError, DriverInfo, MachineConfig, MachineStatus, NetworkConfig, SnapshotOp,
    StopMode, StopOutcome,
};
pub use args::{Attachment, Features};
pub use call::TranscriptEntry;
pub use config::{
    MIN_VERSION, VBoxConfig, child_locale, effective_arch, locate_vboxmanage, ovf_is_arm,
    vboxmanage_candidates, vboxmanage_name, version_problem,
};
pub use error::{NOT_INSTALLED_HINT, VBoxError};
use lifecycle::vbox_log;
pub use master::master_name;
pub use networks::{hostonlynet_name, intnet_name};
pub use parse::{VBoxVersion, VmInfo, VmState};
pub use preflight::{HostOs, PreflightError};

/// Serialises the VBoxManage calls that race inside VirtualBox, process-wide.
static RACY: Mutex<()> = Mutex::new(());

fn racy() -> MutexGuard<'static, ()> {
    RACY.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Extradata key that marks labctl's VMs.
pub const EXTRADATA_ID: &str = "/labctl/id";
/// The master snapshot linked clones start from.
pub const MASTER_SNAPSHOT: &str = "base";
/// Lab network → attachment, in the lab's run directory.
pub const NETWORKS_FILE: &str = "vbox-networks.json";
/// The master VM of a box, in the box directory.
pub const MASTER_FILE: &str = "vbox-master.json";
/// The serial console log, in the machine directory.
pub const SERIAL_LOG: &str = "serial.log";

const SHORT: Duration = Duration::from_secs(120);
const BOOT: Duration = Duration::from_secs(300);
const LONG: Duration = Duration::from_secs(3600);

/// The VirtualBox driver.
#[derive(Debug)]
pub struct VBoxDriver {
    cfg: VBoxConfig,
    /// `--version` output and its parse, detected once.
    version: OnceLock<(String, VBoxVersion)>,
    version_probe: Mutex<()>,
    /// OVF → master VM name, for masters this process has checked (snapshot `base` included).
    masters: Mutex<HashMap<PathBuf, String>>,
    /// Run directory → lab network → attachment, as `networks_up` left it.
    nets: Mutex<HashMap<PathBuf, BTreeMap<String, Attachment>>>,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VBoxError + 'a {
    move |source| VBoxError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// An exclusive lock on a file, held until the file is dropped (across processes).
fn file_lock(path: &Path) -> Option<std::fs::File> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    f.lock().ok()?;
    Some(f)
}

impl VBoxDriver {
    pub fn new(cfg: VBoxConfig) -> VBoxDriver {
        VBoxDriver {
            cfg,
            version: OnceLock::new(),
            version_probe: Mutex::new(()),
            masters: Mutex::new(HashMap::new()),
            nets: Mutex::new(HashMap::new()),
        }
    }

    /// A driver for the VBoxManage [`VBoxConfig::discover`] finds.
    pub fn discover() -> Result<VBoxDriver, DriverError> {
        Ok(VBoxDriver::new(VBoxConfig::discover()?))
    }

    pub fn config(&self) -> &VBoxConfig {
        &self.cfg
    }
}

impl Driver for VBoxDriver {
    fn info(&self) -> DriverInfo {
        let _ = self.version();
        DriverInfo {
            name: "virtualbox",
            version: self
                .version
                .get()
                .map(|(raw, _)| raw.clone())
                .unwrap_or_default(),
            features: Driver::features(self),
        }
    }

    fn features(&self) -> crate::Features {
        crate::Features {
            blocks_egress: false,
        }
    }

    /// The NAT gateway, `10.0.2.2:<host port>`: VirtualBox's NAT maps it to the host's
    /// loopback (7.0 and later with `--nat-localhostreachable1 on`, set by `modifyvm`).
    /// Not verified on a real VirtualBox.
    fn guest_service_endpoint(
        &self,
        index: usize,
        service: &crate::HostService,
    ) -> Option<crate::GuestEndpoint> {
        let _ = index;
        Some(crate::GuestEndpoint {
            addr: std::net::Ipv4Addr::new(10, 0, 2, 2),
            port: service.host_port,
        })
    }

    fn console_path(&self, m: &MachineConfig) -> Option<PathBuf> {
        Some(m.dir.join(SERIAL_LOG))
    }

    fn networks_up(&self, run_dir: &Path, nets: &[NetworkConfig]) -> Result<(), DriverError> {
        Ok(self.up_networks(run_dir, nets)?)
    }

    fn networks_down(&self, run_dir: &Path, _nets: &[NetworkConfig]) -> Result<(), DriverError> {
        lock(&self.nets).remove(run_dir);
        let _ = std::fs::remove_file(run_dir.join(NETWORKS_FILE));
        Ok(())
    }

    fn create(&self, m: &MachineConfig) -> Result<(), DriverError> {
        Ok(self.create_vm(m)?)
    }

    fn start(&self, m: &MachineConfig) -> Result<(), DriverError> {
        self.start_vm(m)
    }

    fn stop(&self, m: &MachineConfig, mode: StopMode) -> Result<StopOutcome, DriverError> {
        Ok(self.stop_vm(m, mode)?)
    }

    fn destroy(&self, m: &MachineConfig) -> Result<(), DriverError> {
        Ok(self.destroy_vm(m)?)
    }

    fn status(&self, m: &MachineConfig) -> MachineStatus {
        match self.lookup(m) {
            Ok(Some(info)) if info.state.is_up() => MachineStatus::Running { pid: 0 },
            Ok(Some(info)) => {
                if info.state.is_dead() {
                    tracing::warn!(vm = %m.id, state = ?info.state, log = %tail_file(&vbox_log(m), 5), "the VM died");
                }
                MachineStatus::Stopped
            }
            Ok(None) | Err(VBoxError::ForeignVm { .. }) => MachineStatus::NotCreated,
            Err(e) => {
                tracing::warn!(vm = %m.id, error = %e, "cannot read the VM's state");
                MachineStatus::NotCreated
            }
        }
    }

    fn console_tail(&self, m: &MachineConfig, lines: usize) -> String {
        let serial = tail_file(&m.dir.join(SERIAL_LOG), lines);
        if serial.trim().is_empty() {
            // No console output: VirtualBox's own log says more than nothing.
            tail_file(&vbox_log(m), lines)
        } else {
            serial
        }
    }

    fn snapshot(&self, m: &MachineConfig, op: &SnapshotOp) -> Result<Vec<String>, DriverError> {
        self.snapshot_vm(m, op)
    }

    /// `controlvm pause|resume`, for lab-wide snapshots that are consistent across nodes.
    /// A machine that is not in the opposite state is left alone.
    fn pause(&self, m: &MachineConfig, paused: bool) -> Result<(), DriverError> {
        let info = self
            .lookup(m)?
            .ok_or_else(|| DriverError::NotCreated { id: m.id.clone() })?;
        let from = if paused {
            VmState::Running
        } else {
            VmState::Paused
        };
        if info.state == from {
            self.run(&args::pause(&m.id, paused), SHORT)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn arm_ovfs_and_hostonlynet_names() {
        assert!(ovf_is_arm("<vbox:Machine OSType=\"Ubuntu_arm64\">"));
        assert!(!ovf_is_arm("<vbox:Machine OSType=\"Debian_64\">"));
        assert_eq!(
            hostonlynet_name(Ipv4Addr::new(192, 168, 1, 1), 24),
            "labctl-192.168.1.0-24"
        );
    }
}
