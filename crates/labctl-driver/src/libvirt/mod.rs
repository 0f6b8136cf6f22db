//! The libvirt driver: `virsh -c <uri>` through [`crate::exec`], like VBoxManage.
//!
//! Per hypervisor host: one directory storage pool (`labctl`) holding each box once (base
//! volumes named by the box's sha256) and one qcow2 volume per node backed by it. Per lab:
//! an isolated libvirt network per lab network. Per node: a domain from [`xml::domain`].
//! See docs/libvirt.md.

mod engine;
mod error;
mod host;
pub mod parse;
mod volumes;
pub mod xml;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::exec::{Cmd, Output, find_program};
use crate::files::tail_file;
use crate::qemu::accel::Engine;
use crate::{
    Accel, Acceleration, BootImage, Driver, DriverError, DriverInfo, MachineConfig, MachineStatus,
    NetworkConfig, SnapshotOp, StopMode, StopOutcome,
};
pub use error::{LibvirtError, NOT_INSTALLED_HINT};
pub use host::available_memory_mb;
use parse::{DomState, Missing};
use volumes::BaseVolumes;

/// The storage pool labctl keeps its volumes in, on every host.
pub const POOL: &str = "labctl";

/// `qemu:///system` as root, `qemu:///session` otherwise (libvirt's own rule for
/// unprivileged users).
pub fn default_uri() -> &'static str {
    #[cfg(unix)]
    let root = rustix::process::geteuid().is_root();
    #[cfg(not(unix))]
    let root = false;
    if root {
        "qemu:///system"
    } else {
        "qemu:///session"
    }
}

/// Whether a URI names this machine's daemon (`qemu:///system`), not a remote host
/// (`qemu+ssh://user@host/system`).
pub fn is_local(uri: &str) -> bool {
    uri.split_once("://")
        .is_some_and(|(_, rest)| rest.starts_with('/'))
}

/// Programs and places the libvirt driver uses.
#[derive(Debug, Clone)]
pub struct LibvirtConfig {
    pub virsh: PathBuf,
    pub uri: String,
    /// The pool's directory on the hypervisor host.
    pub pool_dir: PathBuf,
    /// Where the local acceleration verdict is cached (shared with the QEMU driver).
    pub cache_dir: PathBuf,
    /// Bound on one virsh call (uploads get ten times this).
    pub timeout: Duration,
}

impl LibvirtConfig {
    /// Find `virsh` (or `LABCTL_VIRSH`). `uri`: `None` is [`default_uri`]. The pool lives in
    /// `/var/lib/libvirt/labctl` for system URIs and in `<data dir>/libvirt-pool` for a
    /// local session daemon.
    pub fn discover(
        uri: Option<&str>,
        data_dir: &Path,
        cache_dir: &Path,
    ) -> Result<LibvirtConfig, DriverError> {
        let virsh = find_program("virsh", "LABCTL_VIRSH", NOT_INSTALLED_HINT)
            .map_err(|e| DriverError::from(LibvirtError::from(e)))?;
        let uri = uri
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| default_uri())
            .to_string();
        let session = uri.trim_end_matches('/').ends_with("/session");
        let pool_dir = if session && is_local(&uri) {
            data_dir.join("libvirt-pool")
        } else {
            PathBuf::from("/var/lib/libvirt/labctl")
        };
        Ok(LibvirtConfig {
            virsh,
            uri,
            pool_dir,
            cache_dir: cache_dir.to_path_buf(),
            timeout: Duration::from_secs(120),
        })
    }
}

/// The libvirt driver.
#[derive(Debug)]
pub struct LibvirtDriver {
    cfg: LibvirtConfig,
    version: OnceLock<String>,
    verdict: Mutex<Option<(Engine, String)>>,
    /// A domain failed under KVM in this run and the driver went on under TCG (for this
    /// run only: a remote host's verdict is not cached).
    fell_back: std::sync::atomic::AtomicBool,
    /// Held while the pool and a box's base volumes are made (nodes are created in parallel).
    upload: Mutex<()>,
}

fn domain_name(m: &MachineConfig) -> String {
    format!("labctl-{}", m.id)
}

fn disk_volume(m: &MachineConfig) -> String {
    format!("labctl-{}.qcow2", m.id)
}

/// A lab's network on the host: the lab is told apart by its run directory (unique per lab
/// on the machine that runs labctl).
pub fn network_name(run_dir: &Path, network: &str) -> String {
    let h = Sha256::digest(run_dir.as_os_str().as_encoded_bytes());
    let mut hex = format!("{h:x}");
    hex.truncate(8);
    format!("labctl-{hex}-{network}")
}

impl LibvirtDriver {
    pub fn new(cfg: LibvirtConfig) -> LibvirtDriver {
        LibvirtDriver {
            cfg,
            version: OnceLock::new(),
            verdict: Mutex::new(None),
            fell_back: std::sync::atomic::AtomicBool::new(false),
            upload: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &LibvirtConfig {
        &self.cfg
    }

    fn virsh(&self) -> Cmd {
        Cmd::new(&self.cfg.virsh)
            .arg("-c")
            .arg(&self.cfg.uri)
            .timeout(self.cfg.timeout)
    }

    /// Run; a non-zero exit is an error (a connection failure typed as such).
    fn run(&self, cmd: Cmd) -> Result<Output, LibvirtError> {
        let out = cmd.run_unchecked()?;
        if out.status.success() {
            return Ok(out);
        }
        Err(self.failure(&cmd, out))
    }

    fn failure(&self, cmd: &Cmd, out: Output) -> LibvirtError {
        if let Some(detail) = parse::connect_failure(&out.stderr) {
            return LibvirtError::Connect {
                uri: self.cfg.uri.clone(),
                detail,
            };
        }
        LibvirtError::Tool(crate::exec::ToolError::Failed {
            command: cmd.display(),
            status: crate::exec::describe_status(out.status),
            stderr: if out.stderr.trim().is_empty() {
                out.stdout
            } else {
                out.stderr
            },
        })
    }

    /// Run; `Ok(None)` when the object the call names does not exist.
    fn run_found(&self, cmd: Cmd, what: Missing) -> Result<Option<Output>, LibvirtError> {
        let out = cmd.run_unchecked()?;
        if out.status.success() {
            return Ok(Some(out));
        }
        if parse::missing(&out.stderr) == Some(what) {
            return Ok(None);
        }
        Err(self.failure(&cmd, out))
    }

    /// Run, treating "not running" / "already active" / a missing object as done.
    fn run_idempotent(&self, cmd: Cmd, what: Missing) -> Result<(), LibvirtError> {
        let out = cmd.run_unchecked()?;
        if out.status.success()
            || parse::not_running(&out.stderr)
            || parse::already_active(&out.stderr)
            || parse::missing(&out.stderr) == Some(what)
        {
            return Ok(());
        }
        Err(self.failure(&cmd, out))
    }

    /// `virsh <cmd> FILE` with `xml` in a temporary file (virsh reads it on this machine,
    /// also for remote URIs).
    fn with_xml_file(&self, sub: &str, xml: &str) -> Result<Output, LibvirtError> {
        let mut f = tempfile::Builder::new()
            .prefix("labctl-virsh-")
            .suffix(".xml")
            .tempfile()
            .map_err(|source| LibvirtError::Io {
                what: "cannot create a temporary file in",
                path: std::env::temp_dir(),
                source,
            })?;
        std::io::Write::write_all(&mut f, xml.as_bytes()).map_err(|source| LibvirtError::Io {
            what: "cannot write",
            path: f.path().to_path_buf(),
            source,
        })?;
        self.run(self.virsh().arg(sub).arg(f.path()))
    }

    fn domstate(&self, dom: &str) -> Result<Option<DomState>, LibvirtError> {
        Ok(self
            .run_found(self.virsh().args(["domstate", dom]), Missing::Domain)?
            .map(|o| parse::domstate(&o.stdout)))
    }

    /// The serial log's path on the hypervisor host: the machine directory for a local
    /// daemon (libvirt opens it itself and hands QEMU the descriptor), libvirt's log
    /// directory on a remote host.
    fn serial_path(&self, m: &MachineConfig) -> PathBuf {
        if is_local(&self.cfg.uri) {
            m.dir.join("serial.log")
        } else {
            PathBuf::from(format!(
                "/var/log/libvirt/qemu/{}-serial.log",
                domain_name(m)
            ))
        }
    }

    fn define(&self, m: &MachineConfig, base: &BaseVolumes) -> Result<(), DriverError> {
        let (engine, _) = self.engine(m.accel, &m.boot);
        let name = domain_name(m);
        let vol = disk_volume(m);
        let serial = self.serial_path(m).to_string_lossy().into_owned();
        let networks: Vec<String> = m
            .private_nics
            .iter()
            .map(|n| network_name(&m.run_dir, &n.network))
            .collect();
        let x = xml::domain(&xml::DomainSpec {
            m,
            name: &name,
            engine,
            pool: POOL,
            disk_volume: &vol,
            kernel: base.kernel.as_deref(),
            initrd: base.initrd.as_deref(),
            serial: &serial,
            networks: &networks,
        });
        if is_local(&self.cfg.uri) {
            std::fs::create_dir_all(&m.dir).map_err(|source| DriverError::Io {
                what: "cannot create",
                path: m.dir.clone(),
                source,
            })?;
            let _ = crate::files::write_atomic(&m.dir.join("domain.xml"), x.as_bytes());
        }
        self.with_xml_file("define", &x)?;
        Ok(())
    }

    fn wait_off(&self, dom: &str, timeout: Duration) -> Result<bool, LibvirtError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.domstate(dom)? {
                None | Some(DomState::Off) => return Ok(true),
                _ if Instant::now() >= deadline => return Ok(false),
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

impl Driver for LibvirtDriver {
    fn info(&self) -> DriverInfo {
        let version = self
            .version
            .get_or_init(|| {
                self.run(self.virsh().arg("version").timeout(Duration::from_secs(20)))
                    .map(|o| parse::version(&o.stdout))
                    .unwrap_or_default()
            })
            .clone();
        DriverInfo {
            name: "libvirt",
            version,
            features: self.features(),
        }
    }

    fn features(&self) -> crate::Features {
        crate::Features {
            blocks_egress: true,
        }
    }

    fn acceleration(&self, requested: Accel, boot: &BootImage) -> Option<Acceleration> {
        let (engine, reason) = self.engine(requested, boot);
        Some(Acceleration {
            engine: engine.name().to_string(),
            reason,
            // Not `fallback`: that promises a verdict recorded for later runs, and this one
            // lasts for this run (the reason says what happened).
            fallback: false,
        })
    }

    fn console_path(&self, m: &MachineConfig) -> Option<PathBuf> {
        is_local(&self.cfg.uri).then(|| self.serial_path(m))
    }

    fn networks_up(&self, run_dir: &Path, nets: &[NetworkConfig]) -> Result<(), DriverError> {
        for n in nets {
            let name = network_name(run_dir, &n.name);
            let found = self.run_found(self.virsh().args(["net-info", &name]), Missing::Network)?;
            if found.is_none() {
                self.with_xml_file("net-define", &xml::network(&name))?;
            }
            self.run_idempotent(self.virsh().args(["net-start", &name]), Missing::Network)?;
        }
        Ok(())
    }

    fn networks_down(&self, run_dir: &Path, nets: &[NetworkConfig]) -> Result<(), DriverError> {
        for n in nets {
            let name = network_name(run_dir, &n.name);
            self.run_idempotent(self.virsh().args(["net-destroy", &name]), Missing::Network)?;
            self.run_idempotent(self.virsh().args(["net-undefine", &name]), Missing::Network)?;
        }
        Ok(())
    }

    fn create(&self, m: &MachineConfig) -> Result<(), DriverError> {
        let base = self.base_volumes(&m.boot)?;
        let vol = disk_volume(m);
        if self.volume_exists(&vol)?.is_none() {
            self.run(self.virsh().args([
                "vol-create-as",
                POOL,
                &vol,
                &base.capacity.to_string(),
                "--format",
                "qcow2",
                "--backing-vol",
                &base.disk,
                "--backing-vol-format",
                "qcow2",
            ]))?;
        }
        // Defined again on every create: the XML follows the lab (CPUs, memory, ports).
        if !matches!(
            self.domstate(&domain_name(m))?,
            Some(DomState::Running | DomState::Paused)
        ) {
            self.define(m, &base)?;
        }
        Ok(())
    }

    fn start(&self, m: &MachineConfig) -> Result<(), DriverError> {
        let dom = domain_name(m);
        match self.domstate(&dom)? {
            None => return Err(DriverError::NotCreated { id: m.id.clone() }),
            Some(DomState::Running) => return Ok(()),
            Some(DomState::Paused) => {
                self.run(self.virsh().args(["resume", &dom]))?;
                return Ok(());
            }
            _ => {}
        }
        let serial = self.serial_path(m);
        if is_local(&self.cfg.uri) && serial.exists() {
            let _ = std::fs::rename(&serial, m.dir.join("serial.log.1"));
        }
        let cmd = self.virsh().args(["start", &dom]);
        let mut out = cmd.run_unchecked()?;
        // KVM chosen by `auto` that QEMU cannot use (a remote host's libvirt offers KVM that
        // fails, as nested KVM can): this domain and every later one go on under TCG.
        if !out.status.success() && self.fall_back_from_kvm(m.accel, &out.stderr) {
            self.define(m, &self.base_volumes(&m.boot)?)?;
            out = cmd.run_unchecked()?;
        }
        if !out.status.success() {
            if let Some(port) = crate::qemu::port_from_hostfwd_error(&out.stderr) {
                return Err(DriverError::PortInUse { port });
            }
            return Err(self.failure(&cmd, out).into());
        }
        Ok(())
    }

    fn stop(&self, m: &MachineConfig, mode: StopMode) -> Result<StopOutcome, DriverError> {
        let dom = domain_name(m);
        match self.domstate(&dom)? {
            None | Some(DomState::Off) => return Ok(StopOutcome::AlreadyStopped),
            _ => {}
        }
        let started = Instant::now();
        let destroy = || self.run_idempotent(self.virsh().args(["destroy", &dom]), Missing::Domain);
        match mode {
            StopMode::Graceful(timeout) => {
                match self.run_idempotent(self.virsh().args(["shutdown", &dom]), Missing::Domain) {
                    Ok(()) if self.wait_off(&dom, timeout)? => {
                        Ok(StopOutcome::Graceful(started.elapsed()))
                    }
                    Ok(()) => {
                        destroy()?;
                        Ok(StopOutcome::Forced(format!(
                            "the guest did not power off within {} s",
                            timeout.as_secs()
                        )))
                    }
                    Err(e) => {
                        destroy()?;
                        Ok(StopOutcome::Forced(format!("ACPI shutdown failed ({e})")))
                    }
                }
            }
            StopMode::Force => {
                destroy()?;
                Ok(StopOutcome::Forced("forced stop requested".into()))
            }
        }
    }

    fn destroy(&self, m: &MachineConfig) -> Result<(), DriverError> {
        let dom = domain_name(m);
        self.stop(m, StopMode::Force)?;
        self.run_idempotent(
            self.virsh()
                .args(["undefine", &dom, "--snapshots-metadata"]),
            Missing::Domain,
        )?;
        self.delete_volume(&disk_volume(m))?;
        if is_local(&self.cfg.uri) && m.dir.exists() {
            std::fs::remove_dir_all(&m.dir).map_err(|source| DriverError::Io {
                what: "cannot remove",
                path: m.dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn status(&self, m: &MachineConfig) -> MachineStatus {
        match self.domstate(&domain_name(m)) {
            Ok(Some(DomState::Running | DomState::Paused | DomState::ShuttingDown)) => {
                MachineStatus::Running { pid: 0 }
            }
            Ok(Some(_)) => MachineStatus::Stopped,
            Ok(None) => MachineStatus::NotCreated,
            Err(e) => {
                tracing::warn!(error = %e, machine = %m.id, "libvirt status");
                MachineStatus::NotCreated
            }
        }
    }

    fn console_tail(&self, m: &MachineConfig, lines: usize) -> String {
        if is_local(&self.cfg.uri) {
            tail_file(&self.serial_path(m), lines)
        } else {
            String::new()
        }
    }

    fn snapshot(&self, m: &MachineConfig, op: &SnapshotOp) -> Result<Vec<String>, DriverError> {
        let dom = domain_name(m);
        if self.domstate(&dom)?.is_none() {
            return Err(DriverError::NotCreated { id: m.id.clone() });
        }
        let list = || -> Result<Vec<String>, LibvirtError> {
            let out = self.run(self.virsh().args(["snapshot-list", &dom, "--name"]))?;
            Ok(parse::names(&out.stdout))
        };
        let no_such = |name: &str| LibvirtError::NoSuchSnapshot {
            vm: m.hostname.clone(),
            name: name.to_string(),
        };
        match op {
            SnapshotOp::List => return Ok(list()?),
            SnapshotOp::Save(n) => {
                // Saving a name again replaces it (as QEMU's savevm does).
                if list()?.iter().any(|s| s == n) {
                    self.run(self.virsh().args(["snapshot-delete", &dom, n]))?;
                }
                self.run(
                    self.virsh()
                        .args(["snapshot-create-as", &dom, n])
                        .timeout(self.cfg.timeout * 5),
                )?;
            }
            SnapshotOp::Restore(n) => {
                let cmd = self
                    .virsh()
                    .args(["snapshot-revert", &dom, n])
                    .timeout(self.cfg.timeout * 5);
                if self.run_found(cmd, Missing::Snapshot)?.is_none() {
                    return Err(no_such(n).into());
                }
            }
            SnapshotOp::Delete(n) => {
                let cmd = self.virsh().args(["snapshot-delete", &dom, n]);
                if self.run_found(cmd, Missing::Snapshot)?.is_none() {
                    return Err(no_such(n).into());
                }
            }
        }
        Ok(Vec::new())
    }

    fn pause(&self, m: &MachineConfig, paused: bool) -> Result<(), DriverError> {
        let dom = domain_name(m);
        self.run(
            self.virsh()
                .args([if paused { "suspend" } else { "resume" }, &dom]),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
