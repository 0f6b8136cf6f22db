//! The driver interface. Drivers know machines, disks and networks; nothing of labs, roles,
//! SSH keys or templates.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exec::ToolError;

/// The acceleration asked for a machine. `Auto` lets the driver decide (QEMU: KVM when a probe
/// shaped like a real node passes, and TCG for the rest of the lab when a node under KVM
/// fails at start); `Kvm` and `Tcg` are obeyed as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// What a driver runs machines on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acceleration {
    /// `kvm` or `tcg`.
    pub engine: String,
    pub reason: String,
    /// A node under KVM failed in this run and the driver went on under TCG (`reason` says
    /// why). A fallback recorded by an earlier run is a plain `tcg` with that reason.
    pub fallback: bool,
}

/// What a machine boots from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootImage {
    /// The box disk; machines get a copy-on-write overlay on top of it.
    pub disk: PathBuf,
    /// Direct kernel boot (boxes built by labctl); `None` boots the disk's own bootloader.
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    /// OVF descriptor of a VirtualBox box, if any.
    pub ovf: Option<PathBuf>,
}

/// A NIC on a lab-private L2 network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateNic {
    pub network: String,
    pub mac: String,
}

/// A host port forwarded to a guest port (always bound to 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    pub host: u16,
    pub guest: u16,
}

/// A TCP service on the host's loopback that guests reach through their NAT network (the
/// bundle server). The driver picks the address guests use: see
/// [`Driver::guest_service_endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostService {
    /// A label (for messages and rule names).
    pub name: String,
    /// Where it listens on the host: `127.0.0.1:<host_port>`.
    pub host_port: u16,
}

/// Where a guest reaches a [`HostService`]: an address on its NAT network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestEndpoint {
    pub addr: std::net::Ipv4Addr,
    pub port: u16,
}

impl std::fmt::Display for GuestEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.port == 80 {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}:{}", self.addr, self.port)
        }
    }
}

/// A lab network as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    /// Host-side address and prefix for host-only networks (VirtualBox).
    pub host_ip: Option<(std::net::Ipv4Addr, u8)>,
}

/// Everything a driver needs to create and run one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineConfig {
    /// Unique on this host (lab id + node name).
    pub id: String,
    /// The guest's hostname (for kernel arguments and display).
    pub hostname: String,
    /// Per-machine state directory (disk overlay, pidfile, serial log).
    pub dir: PathBuf,
    /// Short directory for unix sockets (QMP, network ports).
    pub run_dir: PathBuf,
    pub cpus: u32,
    pub memory_mb: u32,
    pub boot: BootImage,
    /// NIC 1 (NAT) MAC.
    pub nat_mac: String,
    pub private_nics: Vec<PrivateNic>,
    pub ssh: PortForward,
    pub forwards: Vec<PortForward>,
    /// Guest internet through NIC 1; false adds `restrict=on` (QEMU).
    pub egress: bool,
    pub accel: Accel,
    pub nested_virt: bool,
    /// 32 hex digits, unique per machine.
    pub machine_id: String,
    /// VirtualBox group.
    pub group: Option<String>,
    /// Host services the guest reaches through NIC 1, also with egress off (the bundle
    /// server). The index in this list is what [`Driver::guest_service_endpoint`] takes.
    #[serde(default)]
    pub guest_services: Vec<HostService>,
}

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// ACPI power button, then force after the timeout.
    Graceful(Duration),
    Force,
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    AlreadyStopped,
    Graceful(Duration),
    /// Forced, and why.
    Forced(String),
}

/// A machine's state, from a cheap local check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MachineStatus {
    NotCreated,
    Stopped,
    Running { pid: u32 },
}

/// A snapshot operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOp {
    Save(String),
    Restore(String),
    Delete(String),
    List,
}

/// What a driver can do, as data (read without I/O): the runner asks these instead of
/// knowing which provider it talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Features {
    /// `egress = false` cuts the guests off the internet (QEMU: `restrict=on`; VirtualBox's
    /// NAT has no such switch).
    pub blocks_egress: bool,
}

/// What a driver is and can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverInfo {
    pub name: &'static str,
    pub version: String,
    pub features: Features,
}

/// Driver errors.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("machine `{id}` is not created")]
    NotCreated { id: String },
    #[error("machine `{id}` exited while starting{}", tail_text(serial_tail))]
    DiedOnStart { id: String, serial_tail: String },
    #[error("host port 127.0.0.1:{port} is already in use")]
    PortInUse { port: u16 },
    /// A QEMU failure of its own (QMP).
    #[error(transparent)]
    Qemu(#[from] crate::qemu::QemuError),
    #[error("this build has no driver for provider `{provider}`")]
    NoDriver { provider: String },
    /// The provider's driver needs what this host system lacks: QEMU and libvirt on Windows
    /// (unix sockets, process signals).
    #[error("provider `{provider}` is not supported on Windows hosts yet")]
    NotOnWindows { provider: String },
    #[error("{0}")]
    Other(String),
    /// A VirtualBox failure; [`crate::vbox::VBoxError::hint`] says what to do about it.
    #[error(transparent)]
    VirtualBox(crate::vbox::VBoxError),
    /// A libvirt failure; [`crate::libvirt::LibvirtError::hint`] says what to do about it.
    #[error(transparent)]
    Libvirt(crate::libvirt::LibvirtError),
}

fn tail_text(t: &str) -> String {
    if t.trim().is_empty() {
        String::new()
    } else {
        format!("; last console lines:\n{t}")
    }
}

/// A hypervisor backend.
pub trait Driver: Send + Sync {
    fn info(&self) -> DriverInfo;
    /// The accelerator machines booting `boot` with `requested` run on, and why. May probe
    /// the host (a few seconds, then cached). `None`: the driver does not choose (VirtualBox).
    fn acceleration(&self, requested: Accel, boot: &BootImage) -> Option<Acceleration> {
        let _ = (requested, boot);
        None
    }
    /// What this driver can do. Fixed data: no I/O.
    fn features(&self) -> Features;
    /// The address a guest uses for `m.guest_services[index]` (`service`), or `None` when the
    /// driver cannot give guests host services. Fixed data: no I/O.
    fn guest_service_endpoint(&self, index: usize, service: &HostService) -> Option<GuestEndpoint> {
        let _ = (index, service);
        None
    }
    /// The file the guest's serial console is written to, when the driver keeps one.
    fn console_path(&self, m: &MachineConfig) -> Option<PathBuf> {
        let _ = m;
        None
    }
    /// Bring up the lab's private networks (idempotent).
    fn networks_up(
        &self,
        run_dir: &std::path::Path,
        nets: &[NetworkConfig],
    ) -> Result<(), DriverError>;
    /// Tear the lab's private networks down (idempotent).
    fn networks_down(
        &self,
        run_dir: &std::path::Path,
        nets: &[NetworkConfig],
    ) -> Result<(), DriverError>;
    /// Create the machine's disk and registration. Returns Ok for an existing machine.
    fn create(&self, m: &MachineConfig) -> Result<(), DriverError>;
    /// Boot a created machine, detached: it outlives this process.
    fn start(&self, m: &MachineConfig) -> Result<(), DriverError>;
    fn stop(&self, m: &MachineConfig, mode: StopMode) -> Result<StopOutcome, DriverError>;
    /// Remove the machine and its disk (stopping it first if needed).
    fn destroy(&self, m: &MachineConfig) -> Result<(), DriverError>;
    fn status(&self, m: &MachineConfig) -> MachineStatus;
    /// The last lines the guest printed on its console.
    fn console_tail(&self, m: &MachineConfig, lines: usize) -> String;
    fn snapshot(&self, m: &MachineConfig, op: &SnapshotOp) -> Result<Vec<String>, DriverError>;
    /// Freeze or thaw a running machine's CPUs (so that a lab-wide snapshot is consistent).
    /// Drivers that cannot pause do nothing.
    fn pause(&self, m: &MachineConfig, paused: bool) -> Result<(), DriverError> {
        let _ = (m, paused);
        Ok(())
    }
    /// Boot a stopped machine straight into a snapshot's saved state.
    fn start_from_snapshot(&self, m: &MachineConfig, name: &str) -> Result<(), DriverError> {
        self.snapshot(m, &SnapshotOp::Restore(name.to_string()))?;
        self.start(m)
    }
}
