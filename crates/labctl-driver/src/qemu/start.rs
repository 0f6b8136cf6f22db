//! Starting a machine's QEMU: the acceleration verdict, the launch, the console watch and
//! the fall-back from KVM to TCG.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::accel::{self, Engine, ProbeImage, ProbeSpec, Verdict};
use super::{MachinePaths, QemuDriver, args, force, io_err, qemu_mark, switch_mark};
use crate::exec::Cmd;
use crate::files::tail_file;
use crate::proc;
use crate::{Accel, BootImage, DriverError, MachineConfig};

impl QemuDriver {
    fn probe_spec(&self, boot: &BootImage) -> ProbeSpec<'_> {
        ProbeSpec {
            qemu: &self.cfg.qemu_system,
            kvm_device: &self.cfg.kvm_device,
            image: boot
                .kernel
                .clone()
                .map_or(ProbeImage::BootSector, ProbeImage::Kernel),
            kvm_argv: args::accel_args(Engine::Kvm, false),
            timeout: self.cfg.probe_timeout,
        }
    }

    /// The verdict for `accel = auto`: this run's, else the cached one for this host, else a
    /// probe. Concurrent callers wait for the one probe.
    pub(super) fn verdict(&self, boot: &BootImage) -> Verdict {
        let mut g = match self.verdict.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(v) = g.as_ref() {
            return v.clone();
        }
        let v = accel::detect(&self.probe_spec(boot), &self.cfg.cache_dir);
        *g = Some(v.clone());
        v
    }

    /// Probe again, ignoring the cache (`labctl doctor --reprobe`).
    pub fn reprobe(&self, boot: &BootImage) -> Verdict {
        let v = accel::reprobe(&self.probe_spec(boot), &self.cfg.cache_dir);
        let mut g = match self.verdict.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Some(v.clone());
        v
    }

    /// A node under KVM failed: the rest of the lab, and later runs on this host, use TCG.
    fn fall_back(&self, boot: &BootImage, why: &str) {
        let v = Verdict {
            accel: Engine::Tcg,
            reason: format!("KVM unusable here: {why}"),
            key: accel::cache_key(&self.cfg.qemu_system, &self.probe_spec(boot).image),
            source: accel::Source::NodeFailed,
            probe_ms: 0,
        };
        let mut g = match self.verdict.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.as_ref().is_some_and(|old| old.accel == Engine::Tcg) {
            return; // another node got here first
        }
        tracing::info!(reason = %v.reason, "falling back to TCG");
        self.fell_back
            .store(true, std::sync::atomic::Ordering::Relaxed);
        accel::store(&self.cfg.cache_dir, &v);
        *g = Some(v);
    }

    fn engine_for(&self, m: &MachineConfig) -> Engine {
        match m.accel {
            Accel::Kvm => Engine::Kvm,
            Accel::Tcg => Engine::Tcg,
            Accel::Auto => self.verdict(&m.boot).accel,
        }
    }

    /// The PID of this machine's QEMU: the pidfile's number, and only if that process's
    /// `-name` carries this machine's unique `process=labctl-<id>` (a copied lab's pidfile
    /// or a PID reused after a reboot names someone else's process).
    pub(super) fn running_pid(&self, m: &MachineConfig) -> Option<u32> {
        let p = MachinePaths::of(m);
        let pid = proc::read_pidfile(&p.pidfile)?;
        proc::is_ours(pid, &qemu_mark(m)).then_some(pid)
    }

    pub(super) fn cleanup_runtime(m: &MachineConfig) {
        let p = MachinePaths::of(m);
        let _ = std::fs::remove_file(&p.pidfile);
        let _ = std::fs::remove_file(&p.qmp);
        for nic in &m.private_nics {
            let _ = std::fs::remove_file(args::port_socket(&m.run_dir, &nic.network, &m.hostname));
        }
    }

    pub(super) fn switch_pidfile(run_dir: &Path) -> PathBuf {
        run_dir.join("switch.pid")
    }

    /// Boot, with extra qemu-system arguments (`-loadvm NAME`). With `accel = auto` a node
    /// that fails under KVM (QEMU exits at start, or a direct-boot guest prints nothing on
    /// its console within `console_timeout`) is stopped and started again under TCG, and the
    /// TCG verdict is recorded for the rest of the lab and later runs.
    pub(super) fn start_with(
        &self,
        m: &MachineConfig,
        extra: &[String],
    ) -> Result<(), DriverError> {
        if self.running_pid(m).is_some() {
            return Ok(());
        }
        let engine = self.engine_for(m);
        match self.launch(m, engine, extra) {
            Ok(()) if engine == Engine::Kvm && m.accel == Accel::Auto => {
                match self.wait_console(m) {
                    Ok(()) => Ok(()),
                    Err(why) => {
                        self.fall_back(&m.boot, &why);
                        self.launch(m, Engine::Tcg, extra)
                    }
                }
            }
            Ok(()) => Ok(()),
            Err(e @ DriverError::PortInUse { .. }) => Err(e),
            Err(e) if engine == Engine::Kvm && m.accel == Accel::Auto => {
                self.fall_back(&m.boot, &kvm_failure(&e));
                self.launch(m, Engine::Tcg, extra)
            }
            Err(e) => Err(e),
        }
    }

    /// After a KVM start: Ok once the guest printed something, Err(why) when it died or
    /// stayed silent. Boxes that boot from their disk are not watched (their firmware and
    /// boot loader need not print on the serial port).
    fn wait_console(&self, m: &MachineConfig) -> Result<(), String> {
        if m.boot.kernel.is_none() {
            return Ok(());
        }
        let p = MachinePaths::of(m);
        let deadline = Instant::now() + self.cfg.console_timeout;
        loop {
            if std::fs::metadata(&p.serial).is_ok_and(|md| md.len() > 0) {
                return Ok(());
            }
            let Some(pid) = self.running_pid(m) else {
                return Err("the node's QEMU exited right after starting under KVM".into());
            };
            if Instant::now() >= deadline {
                force(m, pid, &p.qmp);
                Self::cleanup_runtime(m);
                return Err(format!(
                    "a node under KVM printed nothing on its console within {} s",
                    self.cfg.console_timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn launch(
        &self,
        m: &MachineConfig,
        engine: Engine,
        extra: &[String],
    ) -> Result<(), DriverError> {
        let p = MachinePaths::of(m);
        if !p.disk.exists() {
            return Err(DriverError::NotCreated { id: m.id.clone() });
        }
        Self::cleanup_runtime(m);
        std::fs::create_dir_all(&m.run_dir).map_err(io_err("cannot create", &m.run_dir))?;
        for nic in &m.private_nics {
            let d = args::net_dir(&m.run_dir, &nic.network);
            std::fs::create_dir_all(&d).map_err(io_err("cannot create", &d))?;
        }
        if p.serial.exists() {
            let _ = std::fs::rename(&p.serial, m.dir.join("serial.log.1"));
        }
        let argv = args::qemu_args(m, engine, &self.cfg.relay_command, extra);
        let _ = std::fs::write(m.dir.join("qemu.args"), argv.join("\n") + "\n");
        let out = Cmd::new(&self.cfg.qemu_system)
            .args(&argv)
            .timeout(Duration::from_secs(120))
            .run_unchecked()?;
        if !out.status.success() {
            if let Some(port) = port_from_hostfwd_error(&out.stderr) {
                return Err(DriverError::PortInUse { port });
            }
            return Err(DriverError::Tool(crate::exec::ToolError::Failed {
                command: format!("qemu-system-x86_64 ({})", m.hostname),
                status: crate::exec::describe_status(out.status),
                stderr: out.stderr,
            }));
        }
        if self.running_pid(m).is_none() {
            return Err(DriverError::DiedOnStart {
                id: m.id.clone(),
                serial_tail: tail_file(&p.serial, 20),
            });
        }
        Ok(())
    }

    /// PID of the lab switch, if it runs.
    pub fn switch_pid(run_dir: &Path) -> Option<u32> {
        let pid = proc::read_pidfile(&Self::switch_pidfile(run_dir))?;
        proc::is_ours(pid, &switch_mark(run_dir)).then_some(pid)
    }
}

/// Why a start under KVM failed, in one line.
fn kvm_failure(e: &DriverError) -> String {
    match e {
        DriverError::Tool(crate::exec::ToolError::Failed { status, stderr, .. }) => {
            match accel::first_error_line(stderr) {
                Some(line) => format!("QEMU exited at start under KVM ({status}): {line}"),
                None => format!("QEMU exited at start under KVM ({status})"),
            }
        }
        DriverError::DiedOnStart { .. } => "QEMU died right after starting under KVM".into(),
        other => format!("starting under KVM failed: {other}"),
    }
}

/// The port QEMU could not forward, from its error text.
pub(crate) fn port_from_hostfwd_error(stderr: &str) -> Option<u16> {
    let i = stderr.find("host forwarding rule")?;
    let rest = &stderr[i..];
    let j = rest.find("127.0.0.1:")? + "127.0.0.1:".len();
    rest[j..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}
