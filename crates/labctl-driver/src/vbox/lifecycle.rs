//! A VM's states: lookup, start (guru meditation, saved state, `startvm` exit 1), stop,
//! destroy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ports::{read_from, vm_log};
use super::{
    BOOT, EXTRADATA_ID, LONG, SERIAL_LOG, SHORT, VBoxDriver, VBoxError, VmInfo, VmState, args,
    io_err, parse,
};
use crate::exec::ToolError;
use crate::files::tail_file;
use crate::{DriverError, MachineConfig, StopMode, StopOutcome};

/// The VM's `VBox.log`: `<machine dir>/<vm>/Logs/VBox.log` (clones are made with
/// `--basefolder <machine dir>`).
pub(super) fn vbox_log(m: &MachineConfig) -> PathBuf {
    m.dir.join(&m.id).join("Logs").join("VBox.log")
}

impl VBoxDriver {
    /// The machine's VM if it exists and is labctl's; a same-named VM that is not labctl's is
    /// [`VBoxError::ForeignVm`].
    pub(super) fn lookup(&self, m: &MachineConfig) -> Result<Option<VmInfo>, VBoxError> {
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

    /// Power off now; fine if it already is off.
    pub(super) fn force_off(&self, vm: &str) -> Result<(), VBoxError> {
        match self.run(&args::poweroff(vm), SHORT) {
            Ok(_) => Ok(()),
            Err(e) => match self.vm_info(vm)? {
                Some(i) if i.state.has_process() => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Wait until the VM is no longer up; false on timeout.
    pub(super) fn wait_off(&self, vm: &str, timeout: Duration) -> Result<bool, VBoxError> {
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
    pub(super) fn startvm(&self, vm: &str) -> Result<(), VBoxError> {
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

    /// The last lines of the serial console and, for a VM that died, of `VBox.log`.
    pub(super) fn death_note(&self, m: &MachineConfig, serial: &Path) -> String {
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

    pub(super) fn start_vm(&self, m: &MachineConfig) -> Result<(), DriverError> {
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

    pub(super) fn stop_vm(
        &self,
        m: &MachineConfig,
        mode: StopMode,
    ) -> Result<StopOutcome, VBoxError> {
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

    pub(super) fn destroy_vm(&self, m: &MachineConfig) -> Result<(), VBoxError> {
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
}
