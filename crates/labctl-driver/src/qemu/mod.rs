//! The QEMU driver: `qemu-img` overlays, detached `qemu-system-x86_64`, QMP, the lab switch.

pub mod accel;
pub mod args;
mod config;
mod error;
mod qmp;
pub mod relay;
mod start;
#[cfg(unix)]
pub mod switch;
/// Windows: the lab switch needs unix datagram sockets. The QEMU driver is refused there
/// (`open`); `labctl __switch` says so.
#[cfg(not(unix))]
pub mod switch {
    pub fn run(_run_dir: &std::path::Path, _networks: &[String]) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the lab switch is not supported on Windows yet",
        ))
    }
}

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::exec::Cmd;
use crate::files::tail_file;
use crate::proc;
use crate::{
    Accel, Acceleration, BootImage, Driver, DriverError, DriverInfo, MachineConfig, MachineStatus,
    NetworkConfig, SnapshotOp, StopMode, StopOutcome,
};
use accel::{Engine, Verdict};
pub use args::MachinePaths;
pub use config::QemuConfig;
pub use error::QemuError;
pub(crate) use start::port_from_hostfwd_error;

#[derive(Debug)]
pub struct QemuDriver {
    cfg: QemuConfig,
    version: OnceLock<String>,
    /// This run's acceleration verdict (probed or read from the cache once).
    verdict: Mutex<Option<Verdict>>,
    /// A node of this run failed under KVM and the driver went on under TCG.
    fell_back: std::sync::atomic::AtomicBool,
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DriverError + 'a {
    move |source| DriverError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

impl QemuDriver {
    pub fn new(cfg: QemuConfig) -> QemuDriver {
        QemuDriver {
            cfg,
            version: OnceLock::new(),
            verdict: Mutex::new(None),
            fell_back: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &QemuConfig {
        &self.cfg
    }
}
impl Driver for QemuDriver {
    fn info(&self) -> DriverInfo {
        let version = self
            .version
            .get_or_init(|| {
                Cmd::new(&self.cfg.qemu_system)
                    .arg("--version")
                    .timeout(Duration::from_secs(10))
                    .run()
                    .map(|o| o.stdout.lines().next().unwrap_or_default().to_string())
                    .unwrap_or_default()
            })
            .clone();
        DriverInfo {
            name: "qemu",
            version,
            features: self.features(),
        }
    }

    fn features(&self) -> crate::Features {
        crate::Features {
            blocks_egress: true,
        }
    }

    /// `10.0.2.(100+index):80`, forwarded by slirp (`guestfwd`, which `restrict=on` leaves
    /// working) through `labctl __relay` to the service's loopback port.
    fn guest_service_endpoint(
        &self,
        index: usize,
        service: &crate::HostService,
    ) -> Option<crate::GuestEndpoint> {
        let _ = service;
        if self.cfg.relay_command.is_empty() {
            return None;
        }
        args::guest_service_endpoint(index)
    }

    fn console_path(&self, m: &MachineConfig) -> Option<PathBuf> {
        Some(MachinePaths::of(m).serial)
    }

    fn acceleration(&self, requested: Accel, boot: &BootImage) -> Option<Acceleration> {
        let (engine, reason, fallback) = match requested {
            Accel::Kvm => (Engine::Kvm, "asked for (accel = kvm)".to_string(), false),
            Accel::Tcg => (Engine::Tcg, "asked for (accel = tcg)".to_string(), false),
            Accel::Auto => {
                let v = self.verdict(boot);
                let now = self.fell_back.load(std::sync::atomic::Ordering::Relaxed);
                (v.accel, v.reason, now)
            }
        };
        Some(Acceleration {
            engine: engine.name().to_string(),
            reason,
            fallback,
        })
    }

    fn networks_up(&self, run_dir: &Path, nets: &[NetworkConfig]) -> Result<(), DriverError> {
        if nets.is_empty() {
            return Ok(());
        }
        let hubs: Vec<PathBuf> = nets
            .iter()
            .map(|n| args::hub_socket(run_dir, &n.name))
            .collect();
        if Self::switch_pid(run_dir).is_some() && hubs.iter().all(|h| h.exists()) {
            return Ok(());
        }
        if let Some(pid) = Self::switch_pid(run_dir) {
            proc::signal_if(pid, false, &switch_mark(run_dir));
            proc::wait_gone(pid, Duration::from_secs(3));
        }
        std::fs::create_dir_all(run_dir).map_err(io_err("cannot create", run_dir))?;
        let Some((program, lead)) = self.cfg.switch_command.split_first() else {
            return Err(DriverError::Other("no switch command configured".into()));
        };
        let mut cmd = Cmd::new(PathBuf::from(program))
            .args(lead)
            .arg("--run-dir")
            .arg(run_dir);
        for n in nets {
            cmd = cmd.arg("--network").arg(&n.name);
        }
        for h in &hubs {
            let _ = std::fs::remove_file(h);
        }
        let pid = cmd.spawn_detached(&run_dir.join("switch.log"))?;
        let pidfile = Self::switch_pidfile(run_dir);
        crate::files::write_atomic(&pidfile, format!("{pid}\n").as_bytes())
            .map_err(io_err("cannot write", &pidfile))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !hubs.iter().all(|h| h.exists()) {
            if Instant::now() > deadline || !proc::alive(pid) {
                return Err(DriverError::Other(format!(
                    "the lab switch did not start; see {}",
                    run_dir.join("switch.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn networks_down(&self, run_dir: &Path, nets: &[NetworkConfig]) -> Result<(), DriverError> {
        for n in nets {
            let _ = std::fs::remove_dir_all(args::net_dir(run_dir, &n.name));
        }
        if let Some(pid) = Self::switch_pid(run_dir) {
            proc::signal_if(pid, false, &switch_mark(run_dir));
            if !proc::wait_gone(pid, Duration::from_secs(3)) {
                proc::signal_if(pid, true, &switch_mark(run_dir));
            }
        }
        let _ = std::fs::remove_file(Self::switch_pidfile(run_dir));
        Ok(())
    }

    fn create(&self, m: &MachineConfig) -> Result<(), DriverError> {
        let p = MachinePaths::of(m);
        if p.disk.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&m.dir).map_err(io_err("cannot create", &m.dir))?;
        let tmp = m.dir.join("disk.qcow2.tmp");
        Cmd::new(&self.cfg.qemu_img)
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&m.boot.disk)
            .arg(&tmp)
            .timeout(Duration::from_secs(60))
            .run()?;
        std::fs::rename(&tmp, &p.disk).map_err(io_err("cannot rename", &tmp))?;
        Ok(())
    }

    fn start(&self, m: &MachineConfig) -> Result<(), DriverError> {
        self.start_with(m, &[])
    }

    fn pause(&self, m: &MachineConfig, paused: bool) -> Result<(), DriverError> {
        let p = MachinePaths::of(m);
        let mut q = qmp::Qmp::connect(&p.qmp, Duration::from_secs(10))?;
        q.execute(if paused { "stop" } else { "cont" }, None)?;
        Ok(())
    }

    fn start_from_snapshot(&self, m: &MachineConfig, name: &str) -> Result<(), DriverError> {
        self.start_with(m, &["-loadvm".to_string(), name.to_string()])
    }

    fn stop(&self, m: &MachineConfig, mode: StopMode) -> Result<StopOutcome, DriverError> {
        let Some(pid) = self.running_pid(m) else {
            Self::cleanup_runtime(m);
            return Ok(StopOutcome::AlreadyStopped);
        };
        let p = MachinePaths::of(m);
        let started = Instant::now();
        let outcome = match mode {
            StopMode::Graceful(timeout) => {
                match qmp::Qmp::connect(&p.qmp, Duration::from_secs(5))
                    .and_then(|mut q| q.execute("system_powerdown", None))
                {
                    Ok(_) if proc::wait_gone(pid, timeout) => {
                        StopOutcome::Graceful(started.elapsed())
                    }
                    Ok(_) => {
                        force(m, pid, &p.qmp);
                        StopOutcome::Forced(format!(
                            "the guest did not power off within {} s",
                            timeout.as_secs()
                        ))
                    }
                    Err(e) => {
                        force(m, pid, &p.qmp);
                        StopOutcome::Forced(format!("QMP unreachable ({e})"))
                    }
                }
            }
            StopMode::Force => {
                force(m, pid, &p.qmp);
                StopOutcome::Forced("forced stop requested".into())
            }
        };
        Self::cleanup_runtime(m);
        Ok(outcome)
    }

    fn destroy(&self, m: &MachineConfig) -> Result<(), DriverError> {
        self.stop(m, StopMode::Force)?;
        if m.dir.exists() {
            std::fs::remove_dir_all(&m.dir).map_err(io_err("cannot remove", &m.dir))?;
        }
        Ok(())
    }

    fn status(&self, m: &MachineConfig) -> MachineStatus {
        if let Some(pid) = self.running_pid(m) {
            return MachineStatus::Running { pid };
        }
        if MachinePaths::of(m).disk.exists() {
            MachineStatus::Stopped
        } else {
            MachineStatus::NotCreated
        }
    }

    fn console_tail(&self, m: &MachineConfig, lines: usize) -> String {
        tail_file(&MachinePaths::of(m).serial, lines)
    }

    fn snapshot(&self, m: &MachineConfig, op: &SnapshotOp) -> Result<Vec<String>, DriverError> {
        let p = MachinePaths::of(m);
        if !p.disk.exists() {
            return Err(DriverError::NotCreated { id: m.id.clone() });
        }
        if self.running_pid(m).is_some() {
            let mut q = qmp::Qmp::connect(&p.qmp, Duration::from_secs(120))?;
            let text = match op {
                SnapshotOp::Save(n) => q.hmp(&format!("savevm {n}"))?,
                SnapshotOp::Restore(n) => q.hmp(&format!("loadvm {n}"))?,
                SnapshotOp::Delete(n) => q.hmp(&format!("delvm {n}"))?,
                SnapshotOp::List => q.hmp("info snapshots")?,
            };
            return Ok(parse_snapshot_list(&text));
        }
        let mut cmd = Cmd::new(&self.cfg.qemu_img)
            .args(["snapshot", "-f", "qcow2"])
            .timeout(Duration::from_secs(300));
        cmd = match op {
            SnapshotOp::Save(n) => cmd.arg("-c").arg(n),
            SnapshotOp::Restore(n) => cmd.arg("-a").arg(n),
            SnapshotOp::Delete(n) => cmd.arg("-d").arg(n),
            SnapshotOp::List => cmd.arg("-l"),
        };
        let out = cmd.arg(&p.disk).run()?;
        Ok(parse_snapshot_list(&out.stdout))
    }
}

/// Recognises this machine's QEMU by the end of its `-name` argument.
fn qemu_mark(m: &MachineConfig) -> impl Fn(&str) -> bool + use<> {
    let suffix = format!(",process=labctl-{}", m.id);
    move |arg: &str| arg.ends_with(&suffix)
}

/// Recognises a lab's switch by its `--run-dir` argument.
fn switch_mark(run_dir: &Path) -> impl Fn(&str) -> bool + use<> {
    let dir = run_dir.to_string_lossy().into_owned();
    move |arg: &str| arg == dir
}

fn force(m: &MachineConfig, pid: u32, qmp_path: &Path) {
    if let Ok(mut q) = qmp::Qmp::connect(qmp_path, Duration::from_secs(3)) {
        let _ = q.execute("quit", None);
        if proc::wait_gone(pid, Duration::from_secs(5)) {
            return;
        }
    }
    proc::signal_if(pid, true, &qemu_mark(m));
    proc::wait_gone(pid, Duration::from_secs(5));
}

/// Snapshot names from `qemu-img snapshot -l` or HMP `info snapshots` output.
pub fn parse_snapshot_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // "ID  TAG  VM SIZE  DATE  VM CLOCK ..." rows start with a numeric ID or "--".
            let first = cols.first()?;
            (first.chars().all(|c| c.is_ascii_digit()) || *first == "--")
                .then(|| cols.get(1).map(|s| (*s).to_string()))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hostfwd_error_port() {
        let e = "qemu-system-x86_64: -netdev user,id=nat,hostfwd=tcp:127.0.0.1:60010-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:60010-:22'";
        assert_eq!(port_from_hostfwd_error(e), Some(60010));
        assert_eq!(port_from_hostfwd_error("other error"), None);
    }

    #[test]
    fn parses_snapshot_lists() {
        let img = "Snapshot list:\nID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n1         provisioned        137 MiB 2026-11-23 10:00:00 00:00:41.123\n2         s2                   0 B 2026-11-23 10:01:00 00:00:00.000\n";
        assert_eq!(parse_snapshot_list(img), vec!["provisioned", "s2"]);
        let hmp = "List of snapshots present on all disks:\nID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n--        golden            137 MiB 2026-11-23 10:00:00 00:00:41.123\n";
        assert_eq!(parse_snapshot_list(hmp), vec!["golden"]);
        assert!(parse_snapshot_list("There is no snapshot available.").is_empty());
    }
}
