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
//! Not covered: `egress = false` (VirtualBox NAT has no "restrict"), direct kernel boot, and
//! macOS's host-only *networks* (VirtualBox 7 on Apple hosts); host-only interfaces are left in
//! place by `networks_down` since other labs or VMs may use them.

pub mod args;
mod error;
pub mod parse;
pub mod preflight;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::exec::{Cmd, Output, ToolError, describe_status, find_program};
use crate::qemu::tail_file;
use crate::{
    Driver, DriverError, DriverInfo, MachineConfig, MachineStatus, NetworkConfig, SnapshotOp,
    StopMode, StopOutcome,
};
pub use args::{Attachment, Features};
pub use error::{NOT_INSTALLED_HINT, VBoxError};
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

const TRIES: u32 = 3;
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

/// Where VBoxManage is and how patient to be.
#[derive(Debug, Clone)]
pub struct VBoxConfig {
    pub vboxmanage: PathBuf,
    /// `/etc/vbox/networks.conf` (host-only ranges).
    pub networks_conf: PathBuf,
    pub host_os: HostOs,
    /// Pause before the first retry of a transient error; doubles after.
    pub retry_backoff: Duration,
    /// How often `stop` looks whether the guest has powered off.
    pub poll_interval: Duration,
}

impl VBoxConfig {
    /// VBoxManage from `LABCTL_VBOXMANAGE`, PATH, or where the installers put it.
    pub fn discover() -> Result<VBoxConfig, DriverError> {
        match find_program("VBoxManage", "LABCTL_VBOXMANAGE", NOT_INSTALLED_HINT) {
            Ok(p) => Ok(VBoxConfig::with_program(p)),
            Err(e) => [
                "/usr/bin/VBoxManage",
                "/usr/local/bin/VBoxManage",
                "/Applications/VirtualBox.app/Contents/MacOS/VBoxManage",
            ]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .map(VBoxConfig::with_program)
            .ok_or(DriverError::Tool(e)),
        }
    }

    /// Defaults for a given VBoxManage.
    pub fn with_program(vboxmanage: PathBuf) -> VBoxConfig {
        VBoxConfig {
            vboxmanage,
            networks_conf: PathBuf::from(preflight::NETWORKS_CONF),
            host_os: HostOs::current(),
            retry_backoff: Duration::from_millis(500),
            poll_interval: Duration::from_millis(500),
        }
    }
}

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

fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    })
}

/// The internal-network name of a lab network: unique per lab (run directory), readable.
pub fn intnet_name(run_dir: &Path, network: &str) -> String {
    let mut h = Sha256::new();
    h.update(run_dir.to_string_lossy().as_bytes());
    let tag: String = h
        .finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("labctl-{tag}-{network}")
}

/// The master VM name of a box, from its directory name.
pub fn master_name(box_dir: &Path) -> String {
    let name = box_dir
        .file_name()
        .map_or_else(|| "box".into(), |n| n.to_string_lossy().into_owned());
    format!("labctl-master-{name}")
}

/// An exclusive lock on a file, held until the file is dropped (across processes).
fn file_lock(path: &Path) -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).ok()?;
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

    /// Run VBoxManage. A non-zero exit or `VBoxManage: error:` on stderr is a failure;
    /// transient failures are retried.
    pub fn run(&self, argv: &[String], timeout: Duration) -> Result<Output, VBoxError> {
        let cmd = Cmd::new(&self.cfg.vboxmanage).args(argv).timeout(timeout);
        let mut attempt = 1;
        loop {
            let out = cmd.run_unchecked()?;
            if out.status.success() && !parse::reports_error(&out.stderr) {
                return Ok(out);
            }
            if attempt < TRIES && parse::is_transient(&out.stderr) {
                tracing::debug!(command = %cmd.display(), attempt, stderr = %out.stderr.trim(), "transient VirtualBox error, retrying");
                std::thread::sleep(self.cfg.retry_backoff * (1 << (attempt - 1)));
                attempt += 1;
                continue;
            }
            return Err(failure(&cmd, out));
        }
    }

    /// The VirtualBox version (detected once).
    pub fn version(&self) -> Result<VBoxVersion, VBoxError> {
        if let Some((_, v)) = self.version.get() {
            return Ok(*v);
        }
        let _probe = lock(&self.version_probe);
        if let Some((_, v)) = self.version.get() {
            return Ok(*v);
        }
        let out = self.run(&args::version(), Duration::from_secs(30))?;
        let v = parse::version(&out.stdout).ok_or_else(|| VBoxError::Unexpected {
            command: "VBoxManage --version".into(),
            message: format!("no version in {:?}", out.stdout.trim()),
        })?;
        if let Some(w) = parse::kernel_driver_problem(&out.stdout) {
            tracing::warn!(warning = %w, "VirtualBox cannot start VMs until its kernel driver loads (`sudo /sbin/vboxconfig`)");
        }
        let raw = out
            .stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or_default()
            .to_string();
        let _ = self.version.set((raw, v));
        Ok(v)
    }

    fn features(&self) -> Result<Features, VBoxError> {
        let v = self.version()?;
        Ok(Features {
            nested_hw_virt: v.at_least(6, 0, 0),
        })
    }

    /// `showvminfo`, None when VirtualBox has no such VM.
    pub fn vm_info(&self, vm: &str) -> Result<Option<VmInfo>, VBoxError> {
        match self.run(&args::showvminfo(vm), SHORT) {
            Ok(out) => {
                parse::showvminfo(&out.stdout)
                    .map(Some)
                    .ok_or_else(|| VBoxError::Unexpected {
                        command: format!("VBoxManage showvminfo {vm} --machinereadable"),
                        message: "no name, UUID or VMState".into(),
                    })
            }
            Err(e) if e.output().is_some_and(parse::is_not_found) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The machine's VM if it exists and is labctl's; a same-named VM that is not labctl's is
    /// [`VBoxError::ForeignVm`].
    fn lookup(&self, m: &MachineConfig) -> Result<Option<VmInfo>, VBoxError> {
        let Some(info) = self.vm_info(&m.id)? else {
            return Ok(None);
        };
        if info
            .cfg_file
            .as_deref()
            .is_some_and(|f| Path::new(f).starts_with(&m.dir))
        {
            return Ok(Some(info));
        }
        let out = self.run(&args::getextradata(&m.id, EXTRADATA_ID), SHORT)?;
        if parse::extradata_value(&out.stdout).as_deref() == Some(m.id.as_str()) {
            Ok(Some(info))
        } else {
            Err(VBoxError::ForeignVm { name: m.id.clone() })
        }
    }

    fn snapshots(&self, vm: &str) -> Result<Vec<String>, VBoxError> {
        match self.run(&args::snapshot_list(vm), SHORT) {
            Ok(out) => Ok(parse::snapshot_list(&out.stdout)),
            Err(e)
                if e.output()
                    .is_some_and(|o| o.contains("does not have any snapshots")) =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// The master VM of the box whose OVF is `ovf`, imported and snapshotted if needed.
    fn ensure_master(&self, ovf: &Path) -> Result<String, VBoxError> {
        if let Some(name) = lock(&self.masters).get(ovf) {
            return Ok(name.clone());
        }
        let box_dir = ovf.parent().unwrap_or_else(|| Path::new("."));
        let name = master_name(box_dir);
        let _racy = racy();
        let _flock = file_lock(&box_dir.join(".vbox-master.lock"));
        if let Some(name) = lock(&self.masters).get(ovf) {
            return Ok(name.clone());
        }
        let info = match self.vm_info(&name)? {
            Some(info) => info,
            None => {
                tracing::info!(ovf = %ovf.display(), vm = %name, "importing the box into VirtualBox (once per box)");
                self.run(&args::import(ovf, &name, box_dir), LONG)?;
                self.run(
                    &args::setextradata(&name, EXTRADATA_ID, &format!("master:{}", ovf.display())),
                    SHORT,
                )?;
                self.vm_info(&name)?.ok_or_else(|| VBoxError::Unexpected {
                    command: format!("VBoxManage import {}", ovf.display()),
                    message: format!("VM `{name}` is not registered after the import"),
                })?
            }
        };
        if !self.snapshots(&name)?.iter().any(|s| s == MASTER_SNAPSHOT) {
            self.run(&args::snapshot_take(&name, MASTER_SNAPSHOT), LONG)?;
        }
        let record = serde_json::json!({
            "vm": name,
            "uuid": info.uuid,
            "ovf": ovf,
            "snapshot": MASTER_SNAPSHOT,
        });
        let path = box_dir.join(MASTER_FILE);
        crate::boxes::write_atomic(
            &path,
            serde_json::to_string_pretty(&record)
                .unwrap_or_default()
                .as_bytes(),
        )
        .map_err(io_err("cannot write", &path))?;
        lock(&self.masters).insert(ovf.to_path_buf(), name.clone());
        Ok(name)
    }

    /// The attachments of the machine's private NICs, from `networks_up`.
    fn attachments(&self, m: &MachineConfig) -> Result<Vec<Attachment>, VBoxError> {
        if m.private_nics.is_empty() {
            return Ok(Vec::new());
        }
        let map = {
            let cached = lock(&self.nets).get(&m.run_dir).cloned();
            match cached {
                Some(map) => map,
                None => std::fs::read_to_string(m.run_dir.join(NETWORKS_FILE))
                    .ok()
                    .and_then(|t| serde_json::from_str::<BTreeMap<String, Attachment>>(&t).ok())
                    .unwrap_or_default(),
            }
        };
        m.private_nics
            .iter()
            .map(|n| {
                map.get(&n.network)
                    .cloned()
                    .ok_or_else(|| VBoxError::NetworkNotUp {
                        network: n.network.clone(),
                    })
            })
            .collect()
    }

    /// Power off now; fine if it already is off.
    fn force_off(&self, vm: &str) -> Result<(), VBoxError> {
        match self.run(&args::poweroff(vm), SHORT) {
            Ok(_) => Ok(()),
            Err(e) => match self.vm_info(vm)? {
                Some(i) if i.state.is_up() => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Wait until the VM is no longer up; false on timeout.
    fn wait_off(&self, vm: &str, timeout: Duration) -> Result<bool, VBoxError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.vm_info(vm)? {
                Some(i) if i.state.is_up() => {}
                _ => return Ok(true),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(self.cfg.poll_interval);
        }
    }

    fn startvm(&self, vm: &str) -> Result<(), VBoxError> {
        match self.run(&args::startvm(vm), BOOT) {
            Ok(_) => Ok(()),
            Err(e) => {
                let out = e.output().unwrap_or_default();
                if let Some(detail) = parse::hw_virt_problem(out) {
                    Err(VBoxError::NoHwVirt {
                        vm: vm.to_string(),
                        detail,
                    })
                } else if let Some(detail) = parse::kernel_driver_problem(out) {
                    Err(VBoxError::KernelDriver {
                        vm: vm.to_string(),
                        detail,
                    })
                } else {
                    Err(e)
                }
            }
        }
    }

    fn up_networks(&self, run_dir: &Path, nets: &[NetworkConfig]) -> Result<(), VBoxError> {
        let hostonly: Vec<(&NetworkConfig, (Ipv4Addr, u8))> = nets
            .iter()
            .filter_map(|n| n.host_ip.map(|h| (n, h)))
            .collect();
        if !hostonly.is_empty() {
            // Refuse before creating anything.
            let v = self.version()?;
            for (_, h) in &hostonly {
                preflight::check_hostonly_range_on_host(
                    v,
                    self.cfg.host_os,
                    &self.cfg.networks_conf,
                    *h,
                )?;
            }
        }
        let mut map: BTreeMap<String, Attachment> = BTreeMap::new();
        if !hostonly.is_empty() {
            let _racy = racy();
            let mut ifs =
                parse::list_hostonlyifs(&self.run(&args::list_hostonlyifs(), SHORT)?.stdout);
            for (n, (ip, prefix)) in hostonly {
                let mask = netmask(prefix);
                let ifname = match ifs.iter().find(|i| i.ip == Some(ip)) {
                    Some(i) => {
                        if i.netmask != Some(mask) {
                            self.run(&args::hostonlyif_ipconfig(&i.name, ip, mask), SHORT)?;
                        }
                        i.name.clone()
                    }
                    None => {
                        let out = self.run(&args::hostonlyif_create(), SHORT)?;
                        let name = parse::hostonlyif_created(&out.stdout).ok_or_else(|| {
                            VBoxError::Unexpected {
                                command: "VBoxManage hostonlyif create".into(),
                                message: format!("no interface name in {:?}", out.stdout.trim()),
                            }
                        })?;
                        self.run(&args::hostonlyif_ipconfig(&name, ip, mask), SHORT)?;
                        ifs.push(parse::HostOnlyIf {
                            name: name.clone(),
                            ip: Some(ip),
                            netmask: Some(mask),
                            dhcp: None,
                            status: None,
                        });
                        name
                    }
                };
                map.insert(n.name.clone(), Attachment::Hostonly(ifname));
            }
        }
        for n in nets.iter().filter(|n| n.host_ip.is_none()) {
            map.insert(
                n.name.clone(),
                Attachment::Intnet(intnet_name(run_dir, &n.name)),
            );
        }
        let path = run_dir.join(NETWORKS_FILE);
        crate::boxes::write_atomic(
            &path,
            serde_json::to_string_pretty(&map)
                .unwrap_or_default()
                .as_bytes(),
        )
        .map_err(io_err("cannot write", &path))?;
        lock(&self.nets).insert(run_dir.to_path_buf(), map);
        Ok(())
    }

    fn create_vm(&self, m: &MachineConfig) -> Result<(), VBoxError> {
        if self.lookup(m)?.is_some() {
            return Ok(());
        }
        let ovf = m.boot.ovf.clone().ok_or_else(|| VBoxError::NoOvf {
            vm: m.id.clone(),
            disk: m.boot.disk.clone(),
        })?;
        let master = self.ensure_master(&ovf)?;
        std::fs::create_dir_all(&m.dir).map_err(io_err("cannot create", &m.dir))?;
        {
            let _racy = racy();
            self.run(
                &args::clone_linked(&master, MASTER_SNAPSHOT, &m.id, &m.dir),
                LONG,
            )?;
        }
        self.run(&args::setextradata(&m.id, EXTRADATA_ID, &m.id), SHORT)?;
        Ok(())
    }

    fn start_vm(&self, m: &MachineConfig) -> Result<(), DriverError> {
        let info = self
            .lookup(m)?
            .ok_or_else(|| DriverError::NotCreated { id: m.id.clone() })?;
        if info.state.is_up() {
            return Ok(());
        }
        if !m.egress {
            // The runner tells the user once per lab (Driver::blocks_egress).
            tracing::debug!(vm = %m.id, "VirtualBox NAT cannot block guest internet access");
        }
        let serial = m.dir.join(SERIAL_LOG);
        if info.state.is_mutable() {
            let nets = self.attachments(m)?;
            let argv = args::modifyvm(m, &nets, Some(&info), self.features()?, &serial);
            self.run(&argv, SHORT)?;
        }
        if serial.exists() {
            let _ = std::fs::rename(&serial, m.dir.join(format!("{SERIAL_LOG}.1")));
        }
        self.startvm(&m.id)?;
        match self.vm_info(&m.id)? {
            Some(i) if i.state.is_up() => Ok(()),
            _ => Err(DriverError::DiedOnStart {
                id: m.id.clone(),
                serial_tail: tail_file(&serial, 20),
            }),
        }
    }

    fn stop_vm(&self, m: &MachineConfig, mode: StopMode) -> Result<StopOutcome, VBoxError> {
        let info = match self.lookup(m) {
            Ok(Some(info)) => info,
            Ok(None) | Err(VBoxError::ForeignVm { .. }) => return Ok(StopOutcome::AlreadyStopped),
            Err(e) => return Err(e),
        };
        if !info.state.is_up() {
            return Ok(StopOutcome::AlreadyStopped);
        }
        let started = Instant::now();
        let timeout = match mode {
            StopMode::Force => {
                self.force_off(&m.id)?;
                return Ok(StopOutcome::Forced("forced stop requested".into()));
            }
            StopMode::Graceful(t) => t,
        };
        if let Err(e) = self.run(&args::acpi_power_button(&m.id), SHORT) {
            self.force_off(&m.id)?;
            return Ok(StopOutcome::Forced(format!(
                "the ACPI power button did not work ({e})"
            )));
        }
        if self.wait_off(&m.id, timeout)? {
            return Ok(StopOutcome::Graceful(started.elapsed()));
        }
        self.force_off(&m.id)?;
        Ok(StopOutcome::Forced(format!(
            "the guest did not power off within {} s",
            timeout.as_secs()
        )))
    }

    fn destroy_vm(&self, m: &MachineConfig) -> Result<(), VBoxError> {
        match self.lookup(m) {
            Ok(Some(info)) => {
                if info.state.is_up() {
                    self.force_off(&m.id)?;
                }
                self.run(&args::unregister_delete(&m.id), LONG)?;
            }
            Ok(None) => {}
            Err(VBoxError::ForeignVm { name }) => {
                tracing::warn!(vm = %name, "leaving a VirtualBox VM of the same name alone: labctl did not create it");
            }
            Err(e) => return Err(e),
        }
        if m.dir.exists() {
            std::fs::remove_dir_all(&m.dir).map_err(io_err("cannot remove", &m.dir))?;
        }
        Ok(())
    }

    fn snapshot_vm(&self, m: &MachineConfig, op: &SnapshotOp) -> Result<Vec<String>, DriverError> {
        let info = self
            .lookup(m)?
            .ok_or_else(|| DriverError::NotCreated { id: m.id.clone() })?;
        match op {
            SnapshotOp::Save(n) => {
                self.run(&args::snapshot_take(&m.id, n), LONG)?;
            }
            SnapshotOp::Restore(n) => {
                if !self.snapshots(&m.id)?.contains(n) {
                    return Err(VBoxError::NoSuchSnapshot {
                        vm: m.id.clone(),
                        name: n.clone(),
                    }
                    .into());
                }
                // VirtualBox restores only powered-off VMs; a running one comes back running.
                let was_up = info.state.is_up();
                if was_up {
                    self.force_off(&m.id)?;
                }
                self.run(&args::snapshot_restore(&m.id, n), LONG)?;
                if was_up {
                    self.startvm(&m.id)?;
                }
            }
            SnapshotOp::Delete(n) => {
                self.run(&args::snapshot_delete(&m.id, n), LONG)?;
            }
            SnapshotOp::List => {}
        }
        Ok(self.snapshots(&m.id)?)
    }
}

/// The error for a failed call: exit status, or "exit status 0" when only stderr said so.
fn failure(cmd: &Cmd, out: Output) -> VBoxError {
    if out.status.code() == Some(126) {
        return VBoxError::Broken {
            command: cmd.display(),
        };
    }
    let status = if out.status.success() {
        "exit status 0, but it reported an error".to_string()
    } else {
        describe_status(out.status)
    };
    VBoxError::Tool(ToolError::Failed {
        command: cmd.display(),
        status,
        stderr: if out.stderr.trim().is_empty() {
            out.stdout
        } else {
            out.stderr
        },
    })
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
        }
    }

    fn blocks_egress(&self) -> bool {
        false
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
            Ok(Some(_)) => MachineStatus::Stopped,
            Ok(None) | Err(VBoxError::ForeignVm { .. }) => MachineStatus::NotCreated,
            Err(e) => {
                tracing::warn!(vm = %m.id, error = %e, "cannot read the VM's state");
                MachineStatus::NotCreated
            }
        }
    }

    fn console_tail(&self, m: &MachineConfig, lines: usize) -> String {
        tail_file(&m.dir.join(SERIAL_LOG), lines)
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
