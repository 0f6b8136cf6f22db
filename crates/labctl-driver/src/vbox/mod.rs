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

pub mod args;
mod error;
pub mod parse;
pub mod preflight;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::exec::{Cmd, Output, ToolError, describe_status, find_program};
use crate::files::tail_file;
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
/// Serialises appends to the transcript file.
static RECORD: Mutex<()> = Mutex::new(());

fn check_version(raw: &str, v: VBoxVersion) -> Result<VBoxVersion, VBoxError> {
    match version_problem(v) {
        Some(reason) => Err(VBoxError::UnsupportedVersion {
            found: raw.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(v),
    }
}

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
    /// The host CPU architecture (`x86_64`, `aarch64`), as `std::env::consts::ARCH` says.
    pub host_arch: String,
    /// Pause before the first retry of a transient error; doubles after.
    pub retry_backoff: Duration,
    /// How often `stop` looks whether the guest has powered off.
    pub poll_interval: Duration,
    /// `LC_ALL` and `LANG` for VBoxManage ([`child_locale`]).
    pub locale: String,
    /// labctl's data directory: the host-wide host-only network lock lives there.
    pub data_dir: Option<PathBuf>,
    /// Append every call to this file as JSON lines (`LABCTL_VBOX_RECORD`).
    pub record: Option<PathBuf>,
}

/// The locale VBoxManage runs in: English, UTF-8. Plain `C` gave empty output on some hosts
/// (vagrant#13145), so a UTF-8 locale: `C.UTF-8` on Linux when it is installed, else
/// `en_US.UTF-8` (macOS has no `C.UTF-8`). Windows ignores both variables (VirtualBox follows
/// the system language there), which is why only machine-readable output is parsed.
pub fn child_locale(host_os: HostOs, c_utf8_installed: bool) -> &'static str {
    match host_os {
        HostOs::Linux | HostOs::Other if c_utf8_installed => "C.UTF-8",
        _ => "en_US.UTF-8",
    }
}

fn c_utf8_installed() -> bool {
    ["/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// Where VBoxManage may be installed, in the order to try, for a host OS. `env` reads an
/// environment variable. Windows: `%VBOX_MSI_INSTALL_PATH%` (set by the MSI installer),
/// `%VBOX_INSTALL_PATH%` (older installers; may hold several `;`-separated folders), then
/// `%ProgramFiles%\Oracle\VirtualBox` and `C:\Program Files\Oracle\VirtualBox`. Windows
/// paths are built as text so that this is testable on any host.
pub fn vboxmanage_candidates(
    host_os: HostOs,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<PathBuf> {
    match host_os {
        HostOs::Windows => {
            let mut dirs: Vec<String> = Vec::new();
            for var in ["VBOX_MSI_INSTALL_PATH", "VBOX_INSTALL_PATH"] {
                if let Some(v) = env(var) {
                    dirs.extend(
                        v.to_string_lossy()
                            .split(';')
                            .map(str::trim)
                            .filter(|d| !d.is_empty())
                            .map(String::from),
                    );
                }
            }
            if let Some(pf) = env("ProgramFiles") {
                dirs.push(format!("{}\\Oracle\\VirtualBox", pf.to_string_lossy()));
            }
            dirs.push("C:\\Program Files\\Oracle\\VirtualBox".into());
            let mut out: Vec<PathBuf> = Vec::new();
            for d in dirs {
                let p = PathBuf::from(format!(
                    "{}\\VBoxManage.exe",
                    d.trim_end_matches(['\\', '/'])
                ));
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            out
        }
        HostOs::MacOs => vec![
            PathBuf::from("/Applications/VirtualBox.app/Contents/MacOS/VBoxManage"),
            PathBuf::from("/usr/local/bin/VBoxManage"),
        ],
        _ => vec![
            PathBuf::from("/usr/bin/VBoxManage"),
            PathBuf::from("/usr/local/bin/VBoxManage"),
            PathBuf::from("/usr/lib/virtualbox/VBoxManage"),
        ],
    }
}

impl VBoxConfig {
    /// VBoxManage from `LABCTL_VBOXMANAGE`, PATH, or where the installers put it
    /// ([`vboxmanage_candidates`]).
    pub fn discover() -> Result<VBoxConfig, DriverError> {
        let host_os = HostOs::current();
        let name = if host_os == HostOs::Windows {
            "VBoxManage.exe"
        } else {
            "VBoxManage"
        };
        let mut cfg = match find_program(name, "LABCTL_VBOXMANAGE", NOT_INSTALLED_HINT) {
            Ok(p) => VBoxConfig::with_program(p),
            Err(e) => vboxmanage_candidates(host_os, &|k| std::env::var_os(k))
                .into_iter()
                .find(|p| p.is_file())
                .map(VBoxConfig::with_program)
                .ok_or(DriverError::Tool(e))?,
        };
        if host_os == HostOs::MacOs && cfg.host_arch == "x86_64" {
            // An x86_64 labctl under Rosetta on Apple silicon: the CPU is still arm64.
            let arm = Cmd::new("/usr/sbin/sysctl")
                .args(["-in", "hw.optional.arm64"])
                .timeout(Duration::from_secs(5))
                .run()
                .ok();
            cfg.host_arch = effective_arch(&cfg.host_arch, arm.as_ref().map(|o| o.stdout.as_str()));
        }
        Ok(cfg)
    }

    /// Defaults for a given VBoxManage; `LABCTL_VBOX_RECORD` names the transcript file.
    pub fn with_program(vboxmanage: PathBuf) -> VBoxConfig {
        let host_os = HostOs::current();
        VBoxConfig {
            vboxmanage,
            networks_conf: PathBuf::from(preflight::NETWORKS_CONF),
            host_os,
            host_arch: std::env::consts::ARCH.to_string(),
            retry_backoff: Duration::from_millis(500),
            poll_interval: Duration::from_millis(500),
            locale: child_locale(host_os, c_utf8_installed()).to_string(),
            data_dir: None,
            record: std::env::var_os("LABCTL_VBOX_RECORD")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// labctl's data directory (for the host-only network lock).
    #[must_use]
    pub fn with_data_dir(mut self, dir: PathBuf) -> VBoxConfig {
        self.data_dir = Some(dir);
        self
    }
}

/// The oldest VirtualBox labctl drives: 6.0 placed imported disks differently
/// (ApplianceImplImport.cpp), and 6.1 is the oldest release still seen in classrooms.
pub const MIN_VERSION: VBoxVersion = VBoxVersion::new(6, 1, 0);

/// Why a VirtualBox version is refused, if it is.
pub fn version_problem(v: VBoxVersion) -> Option<&'static str> {
    if v < MIN_VERSION {
        Some("labctl needs VirtualBox 6.1 or later")
    } else if v == VBoxVersion::new(7, 0, 0) {
        Some(
            "VirtualBox 7.0.0 leaves NAT port-forwarding rules out of `showvminfo --machinereadable` when an adapter has several, so labctl cannot manage them",
        )
    } else {
        None
    }
}

/// The host CPU: `arch` as compiled, unless macOS's `sysctl -in hw.optional.arm64` says `1`
/// (an x86_64 binary under Rosetta on Apple silicon).
pub fn effective_arch(arch: &str, sysctl_arm64: Option<&str>) -> String {
    if sysctl_arm64.is_some_and(|o| o.trim() == "1") {
        "aarch64".into()
    } else {
        arch.into()
    }
}

/// Whether an OVF describes a 64-bit ARM guest (VirtualBox OS type `*_arm64`).
pub fn ovf_is_arm(ovf_text: &str) -> bool {
    let t = ovf_text.to_ascii_lowercase();
    t.contains("_arm64") || t.contains("aarch64")
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
    let mut tag = format!("{:x}", h.finalize());
    tag.truncate(8);
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

/// The VM's `VBox.log`: `<machine dir>/<vm>/Logs/VBox.log` (clones are made with
/// `--basefolder <machine dir>`).
fn vbox_log(m: &MachineConfig) -> PathBuf {
    m.dir.join(&m.id).join("Logs").join("VBox.log")
}

/// The VM's `VBox.log` where `showvminfo` says (`LogFldr`), else where it should be.
fn vm_log(m: &MachineConfig, info: &VmInfo) -> PathBuf {
    info.log_folder
        .as_deref()
        .map_or_else(|| vbox_log(m), |f| Path::new(f).join("VBox.log"))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// The part of a file after `offset` bytes (all of it when the file got shorter: rotated).
fn read_from(p: &Path, offset: u64) -> String {
    let Ok(bytes) = std::fs::read(p) else {
        return String::new();
    };
    let start = usize::try_from(offset)
        .ok()
        .filter(|o| *o <= bytes.len())
        .unwrap_or(0);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// One recorded VBoxManage call (`LABCTL_VBOX_RECORD`), a JSON line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TranscriptEntry {
    pub argv: Vec<String>,
    /// The locale variables VBoxManage ran with.
    pub env: BTreeMap<String, String>,
    /// Exit code; None when killed by a signal.
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
}

/// Lab-private host-only networks on this host: (host address, prefix) → name for VirtualBox 7
/// on macOS (`labctl-192.168.56.0-24`).
pub fn hostonlynet_name(ip: Ipv4Addr, prefix: u8) -> String {
    let net = Ipv4Addr::from(u32::from(ip) & u32::from(netmask(prefix)));
    format!("labctl-{net}-{prefix}")
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
        let cmd = Cmd::new(&self.cfg.vboxmanage)
            .args(argv)
            .env("LC_ALL", &self.cfg.locale)
            .env("LANG", &self.cfg.locale)
            .timeout(timeout);
        let mut attempt = 1;
        loop {
            let out = self.run_recorded(&cmd, argv)?;
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

    /// One call, appended to the transcript file when recording.
    fn run_recorded(&self, cmd: &Cmd, argv: &[String]) -> Result<Output, VBoxError> {
        let started = Instant::now();
        let out = cmd.run_unchecked()?;
        if let Some(path) = &self.cfg.record {
            let entry = TranscriptEntry {
                argv: argv.to_vec(),
                env: [
                    ("LC_ALL".to_string(), self.cfg.locale.clone()),
                    ("LANG".to_string(), self.cfg.locale.clone()),
                ]
                .into_iter()
                .collect(),
                exit: out.status.code(),
                stdout: out.stdout.clone(),
                stderr: out.stderr.clone(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            let _guard = lock(&RECORD);
            let written = serde_json::to_string(&entry).ok().and_then(|line| {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .ok()?;
                f.write_all(format!("{line}\n").as_bytes()).ok()
            });
            if written.is_none() {
                tracing::warn!(file = %path.display(), "cannot append to the VirtualBox transcript");
            }
        }
        Ok(out)
    }

    /// The VirtualBox version (detected once); versions labctl cannot drive are refused.
    pub fn version(&self) -> Result<VBoxVersion, VBoxError> {
        if let Some((raw, v)) = self.version.get() {
            return check_version(raw, *v);
        }
        let _probe = lock(&self.version_probe);
        if let Some((raw, v)) = self.version.get() {
            return check_version(raw, *v);
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
        let _ = self.version.set((raw.clone(), v));
        check_version(&raw, v)
    }

    /// Whether VirtualBox accepts a host-only network (any address in it, and its prefix):
    /// the check `networks_up` makes before creating anything, also asked by `labctl doctor`.
    /// macOS host-only networks (VirtualBox 7) are not restricted by networks.conf.
    pub fn preflight_hostonly(&self, network: (Ipv4Addr, u8)) -> Result<(), VBoxError> {
        if self.uses_hostonlynets()? {
            return Ok(());
        }
        Ok(preflight::check_hostonly_range_on_host(
            self.version()?,
            self.cfg.host_os,
            &self.cfg.networks_conf,
            network,
        )?)
    }

    /// VirtualBox 7 on macOS: host-only networks instead of interfaces.
    fn uses_hostonlynets(&self) -> Result<bool, VBoxError> {
        Ok(self.cfg.host_os == HostOs::MacOs && self.version()?.at_least(7, 0, 0))
    }

    fn features(&self) -> Result<Features, VBoxError> {
        let v = self.version()?;
        Ok(Features {
            nested_hw_virt: v.at_least(6, 0, 0),
            nat_localhost_reachable: v.at_least(7, 0, 0),
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

    /// Snapshot names, from `showvminfo --machinereadable` (`SnapshotName*`, never translated).
    fn snapshots(&self, vm: &str) -> Result<Vec<String>, VBoxError> {
        Ok(self.vm_info(vm)?.map(|i| i.snapshots).unwrap_or_default())
    }

    /// An interrupted import or clone leaves `<base>/<vm>/` with a settings file, and every
    /// later try fails with "settings file already exists". Called only when no VM of that name
    /// is registered; the folder is labctl's (inside a box or machine directory).
    fn clean_machine_folder(&self, base: &Path, vm: &str) -> Result<(), VBoxError> {
        let folder = base.join(vm);
        if folder.exists() {
            tracing::warn!(folder = %folder.display(), "removing a machine folder an interrupted import or clone left behind");
            std::fs::remove_dir_all(&folder).map_err(io_err("cannot remove", &folder))?;
        }
        Ok(())
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
                self.check_arch(ovf)?;
                self.clean_machine_folder(box_dir, &name)?;
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
        crate::files::write_atomic(
            &path,
            serde_json::to_string_pretty(&record)
                .unwrap_or_default()
                .as_bytes(),
        )
        .map_err(io_err("cannot write", &path))?;
        lock(&self.masters).insert(ovf.to_path_buf(), name.clone());
        Ok(name)
    }

    /// Unregister and delete the master VM imported from the box in `box_dir`, if one is
    /// recorded there (before the box is removed: a registered master whose disks are gone is
    /// an "inaccessible" VM in VirtualBox's list). The recorded UUID must match the registered
    /// VM, so a foreign VM that took the name is left alone. VirtualBox refuses while linked
    /// clones still hang off the master; that error is returned. The master's name, or None
    /// when nothing was recorded or registered.
    pub fn remove_master(&self, box_dir: &Path) -> Result<Option<String>, VBoxError> {
        let path = box_dir.join(MASTER_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let name = record["vm"].as_str().unwrap_or_default().to_string();
        if name != master_name(box_dir) {
            return Err(VBoxError::Unexpected {
                command: format!("read {}", path.display()),
                message: format!("the recorded master VM `{name}` is not this box's"),
            });
        }
        let _racy = racy();
        let _flock = file_lock(&box_dir.join(".vbox-master.lock"));
        match self.vm_info(&name)? {
            Some(info) if Some(info.uuid.as_str()) == record["uuid"].as_str() => {
                self.run(&args::unregister_delete(&name), LONG)?;
            }
            Some(_) => {
                tracing::warn!(vm = %name, "a VM with the master's name but another UUID is registered: left alone");
                let _ = std::fs::remove_file(&path);
                return Ok(None);
            }
            None => {
                let _ = std::fs::remove_file(&path);
                return Ok(None);
            }
        }
        let _ = std::fs::remove_file(&path);
        lock(&self.masters).retain(|_, v| *v != name);
        Ok(Some(name))
    }

    /// Apple-silicon hosts run only ARM guests (VirtualBox 7.1): refuse an x86 box before the
    /// import rather than fail at the first boot.
    fn check_arch(&self, ovf: &Path) -> Result<(), VBoxError> {
        if self.cfg.host_os == HostOs::MacOs && self.cfg.host_arch == "aarch64" {
            let text = std::fs::read_to_string(ovf).map_err(io_err("cannot read", ovf))?;
            if !ovf_is_arm(&text) {
                return Err(VBoxError::ArchMismatch {
                    ovf: ovf.to_path_buf(),
                });
            }
        }
        Ok(())
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
                Some(i) if i.state.has_process() => Err(e),
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

    /// `startvm`; an error after which the VM runs anyway is accepted (VBoxManage has exited
    /// 1 after a successful start, e.g. when the GUI frontend's session closed early).
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
                } else if matches!(e, VBoxError::Tool(ToolError::Failed { .. }))
                    && self.vm_info(vm)?.is_some_and(|i| i.state.is_up())
                {
                    tracing::warn!(vm, error = %e, "startvm reported an error but the VM is running");
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Make NIC 1's NAT rules of a running VM what the machine wants (`controlvm natpf1
    /// delete/add`): a saved VM resumes with the rules it was saved with, and a port that was
    /// taken moves. Returns a port VirtualBox could not bind, from `VBox.log`.
    fn apply_forwards_live(
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
    fn taken_port(&self, m: &MachineConfig, log: &str) -> Option<u16> {
        let ours: Vec<u16> = std::iter::once(m.ssh.host)
            .chain(m.forwards.iter().map(|f| f.host))
            .collect();
        parse::nat_redirect_failures(log)
            .into_iter()
            .find(|p| ours.contains(p))
    }

    /// The last lines of the serial console and, for a VM that died, of `VBox.log`.
    fn death_note(&self, m: &MachineConfig, serial: &Path) -> String {
        let mut t = tail_file(serial, 20);
        let log = tail_file(&vbox_log(m), 15);
        if !log.trim().is_empty() {
            if !t.trim().is_empty() {
                t.push('\n');
            }
            t.push_str("VBox.log:\n");
            t.push_str(&log);
        }
        t
    }

    /// The host-wide lock around host-only network setup, so that two labctl processes do not
    /// both create an interface for the same subnet.
    fn hostonly_lock(&self) -> Option<std::fs::File> {
        let dir = self.cfg.data_dir.clone().unwrap_or_else(std::env::temp_dir);
        file_lock(&dir.join("vbox-hostonly.lock"))
    }

    fn up_networks(&self, run_dir: &Path, nets: &[NetworkConfig]) -> Result<(), VBoxError> {
        let hostonly: Vec<(&NetworkConfig, (Ipv4Addr, u8))> = nets
            .iter()
            .filter_map(|n| n.host_ip.map(|h| (n, h)))
            .collect();
        let mut map: BTreeMap<String, Attachment> = BTreeMap::new();
        if !hostonly.is_empty() {
            let networks = self.uses_hostonlynets()?;
            if !networks {
                // Refuse before creating anything.
                for (_, h) in &hostonly {
                    self.preflight_hostonly(*h)?;
                }
            }
            let _racy = racy();
            let _flock = self.hostonly_lock();
            if networks {
                self.up_hostonlynets(&hostonly, &mut map)?;
            } else {
                self.up_hostonlyifs(&hostonly, &mut map)?;
            }
        }
        for n in nets.iter().filter(|n| n.host_ip.is_none()) {
            map.insert(
                n.name.clone(),
                Attachment::Intnet(intnet_name(run_dir, &n.name)),
            );
        }
        let path = run_dir.join(NETWORKS_FILE);
        crate::files::write_atomic(
            &path,
            serde_json::to_string_pretty(&map)
                .unwrap_or_default()
                .as_bytes(),
        )
        .map_err(io_err("cannot write", &path))?;
        lock(&self.nets).insert(run_dir.to_path_buf(), map);
        Ok(())
    }

    fn up_hostonlyifs(
        &self,
        hostonly: &[(&NetworkConfig, (Ipv4Addr, u8))],
        map: &mut BTreeMap<String, Attachment>,
    ) -> Result<(), VBoxError> {
        let mut ifs = parse::list_hostonlyifs(&self.run(&args::list_hostonlyifs(), SHORT)?.stdout);
        for (n, (ip, prefix)) in hostonly {
            let (ip, mask) = (*ip, netmask(*prefix));
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
                            command: "VBoxManage hostonlyif create --machinereadable".into(),
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
        Ok(())
    }

    /// VirtualBox 7 on macOS: one host-only network per subnet, the host's address as vmnet's
    /// start address (`--lower-ip`), the rest of the subnet up to `--upper-ip`.
    fn up_hostonlynets(
        &self,
        hostonly: &[(&NetworkConfig, (Ipv4Addr, u8))],
        map: &mut BTreeMap<String, Attachment>,
    ) -> Result<(), VBoxError> {
        let mut existing =
            parse::list_hostonlynets(&self.run(&args::list_hostonlynets(), SHORT)?.stdout);
        for (n, (ip, prefix)) in hostonly {
            let (ip, mask) = (*ip, netmask(*prefix));
            let name = match existing
                .iter()
                .find(|h| h.lower_ip == Some(ip) && h.netmask == Some(mask))
            {
                Some(h) => h.name.clone(),
                None => {
                    let name = hostonlynet_name(ip, *prefix);
                    let broadcast = u32::from(ip) | !u32::from(mask);
                    let upper = Ipv4Addr::from(broadcast.saturating_sub(1));
                    self.run(&args::hostonlynet_add(&name, mask, ip, upper), SHORT)?;
                    existing.push(parse::HostOnlyNet {
                        name: name.clone(),
                        netmask: Some(mask),
                        lower_ip: Some(ip),
                        upper_ip: Some(upper),
                    });
                    name
                }
            };
            map.insert(n.name.clone(), Attachment::Hostonlynet(name));
        }
        Ok(())
    }

    fn create_vm(&self, m: &MachineConfig) -> Result<(), VBoxError> {
        self.version()?;
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
            self.clean_machine_folder(&m.dir, &m.id)?;
            self.run(
                &args::clone_linked(&master, MASTER_SNAPSHOT, &m.id, &m.dir),
                LONG,
            )?;
        }
        self.run(&args::setextradata(&m.id, EXTRADATA_ID, &m.id), SHORT)?;
        Ok(())
    }

    fn start_vm(&self, m: &MachineConfig) -> Result<(), DriverError> {
        let mut info = self
            .lookup(m)?
            .ok_or_else(|| DriverError::NotCreated { id: m.id.clone() })?;
        if info.state.is_up() {
            // Running: the forwards may have moved (a port was taken; see below).
            return match self.apply_forwards_live(m, &info)? {
                Some(port) => Err(DriverError::PortInUse { port }),
                None => Ok(()),
            };
        }
        if !m.egress {
            // The runner tells the user once per lab (Driver::features().blocks_egress).
            tracing::debug!(vm = %m.id, "VirtualBox NAT cannot block guest internet access");
        }
        let serial = m.dir.join(SERIAL_LOG);
        if info.state == VmState::GuruMeditation {
            tracing::warn!(vm = %m.id, "the VM is stuck in a guru meditation; powering it off first");
            self.force_off(&m.id)?;
            info = self
                .lookup(m)?
                .ok_or_else(|| DriverError::NotCreated { id: m.id.clone() })?;
        }
        let configured = info.state.is_mutable();
        if configured {
            let nets = self.attachments(m)?;
            let argv = args::modifyvm(m, &nets, Some(&info), self.features()?, &serial);
            self.run(&argv, SHORT)?;
        }
        if serial.exists() {
            let _ = std::fs::rename(&serial, m.dir.join(format!("{SERIAL_LOG}.1")));
        }
        self.startvm(&m.id)?;
        let after = match self.vm_info(&m.id)? {
            Some(i) if i.state.is_up() => i,
            _ => {
                return Err(DriverError::DiedOnStart {
                    id: m.id.clone(),
                    serial_tail: self.death_note(m, &serial),
                });
            }
        };
        // Every VM process starts a new VBox.log (the previous one becomes VBox.log.1), so the
        // whole file is this boot's.
        let mut taken = self.taken_port(m, &read_from(&vm_log(m, &after), 0));
        if !configured {
            // Resumed from a saved state: settings were locked, apply the forwards now.
            taken = taken.or(self.apply_forwards_live(m, &after)?);
        }
        match taken {
            Some(port) => {
                tracing::warn!(vm = %m.id, port, "VirtualBox's NAT could not bind a forwarded port (VBox.log: NAT: Failed to redirect)");
                Err(DriverError::PortInUse { port })
            }
            None => Ok(()),
        }
    }

    fn stop_vm(&self, m: &MachineConfig, mode: StopMode) -> Result<StopOutcome, VBoxError> {
        let info = match self.lookup(m) {
            Ok(Some(info)) => info,
            Ok(None) | Err(VBoxError::ForeignVm { .. }) => return Ok(StopOutcome::AlreadyStopped),
            Err(e) => return Err(e),
        };
        if info.state == VmState::GuruMeditation {
            self.force_off(&m.id)?;
            return Ok(StopOutcome::Forced(
                "the VM was stuck in a guru meditation".into(),
            ));
        }
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
                if info.state.has_process() {
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
        if let SnapshotOp::Save(n) | SnapshotOp::Restore(n) | SnapshotOp::Delete(n) = op
            && !parse::snapshot_name_ok(n)
        {
            return Err(VBoxError::BadSnapshotName { name: n.clone() }.into());
        }
        match op {
            SnapshotOp::Save(n) => {
                self.run(&args::snapshot_take(&m.id, n), LONG)?;
            }
            SnapshotOp::Restore(n) => {
                if !info.snapshots.contains(n) {
                    return Err(VBoxError::NoSuchSnapshot {
                        vm: m.id.clone(),
                        name: n.clone(),
                    }
                    .into());
                }
                // VirtualBox restores only powered-off VMs; a running one comes back running.
                let was_up = info.state.is_up();
                if info.state.has_process() {
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
            SnapshotOp::List => return Ok(info.snapshots),
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
    use super::*;

    #[test]
    fn vboxmanage_on_windows_from_the_installer_variables_then_the_default_folder() {
        let env = |k: &str| -> Option<OsString> {
            match k {
                "VBOX_MSI_INSTALL_PATH" => Some("D:\\Apps\\VirtualBox\\".into()),
                "VBOX_INSTALL_PATH" => Some("E:\\Old VB;D:\\Apps\\VirtualBox".into()),
                "ProgramFiles" => Some("C:\\Program Files".into()),
                _ => None,
            }
        };
        let got: Vec<String> = vboxmanage_candidates(HostOs::Windows, &env)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "D:\\Apps\\VirtualBox\\VBoxManage.exe",
                "E:\\Old VB\\VBoxManage.exe",
                "C:\\Program Files\\Oracle\\VirtualBox\\VBoxManage.exe",
            ]
        );
        let none = |_: &str| -> Option<OsString> { None };
        assert_eq!(
            vboxmanage_candidates(HostOs::Windows, &none),
            [PathBuf::from(
                "C:\\Program Files\\Oracle\\VirtualBox\\VBoxManage.exe"
            )]
        );
        assert_eq!(
            vboxmanage_candidates(HostOs::MacOs, &none)[0],
            PathBuf::from("/Applications/VirtualBox.app/Contents/MacOS/VBoxManage")
        );
        assert_eq!(
            vboxmanage_candidates(HostOs::Linux, &none)[0],
            PathBuf::from("/usr/bin/VBoxManage")
        );
    }

    #[test]
    fn locale_for_vboxmanage() {
        assert_eq!(child_locale(HostOs::Linux, true), "C.UTF-8");
        assert_eq!(child_locale(HostOs::Linux, false), "en_US.UTF-8");
        assert_eq!(child_locale(HostOs::MacOs, true), "en_US.UTF-8");
        assert_eq!(child_locale(HostOs::Windows, true), "en_US.UTF-8");
    }

    #[test]
    fn supported_versions() {
        for (v, ok) in [
            ((5, 2, 44), false),
            ((6, 0, 24), false),
            ((6, 1, 0), true),
            ((6, 1, 50), true),
            ((7, 0, 0), false),
            ((7, 0, 2), true),
            ((7, 1, 4), true),
        ] {
            let got = version_problem(VBoxVersion::new(v.0, v.1, v.2));
            assert_eq!(got.is_none(), ok, "{v:?}: {got:?}");
        }
    }

    #[test]
    fn rosetta_is_seen_through() {
        assert_eq!(effective_arch("x86_64", Some("1\n")), "aarch64");
        assert_eq!(effective_arch("x86_64", Some("0\n")), "x86_64");
        assert_eq!(effective_arch("x86_64", None), "x86_64");
    }

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
