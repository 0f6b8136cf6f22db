//! Where the QEMU driver finds its programs, and its timeouts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::DriverError;
use crate::exec::find_program;

/// Programs and places the QEMU driver uses.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub qemu_system: PathBuf,
    pub qemu_img: PathBuf,
    /// Program and leading arguments that run the lab switch (`labctl __switch`).
    pub switch_command: Vec<OsString>,
    /// Program and leading arguments that carry one guest connection to a host service
    /// (`labctl __relay`; the port is appended). Empty: guests get no host services.
    pub relay_command: Vec<OsString>,
    /// Where the acceleration verdict is cached.
    pub cache_dir: PathBuf,
    /// The KVM device (`LABCTL_KVM_DEVICE` overrides `/dev/kvm`; tests point it elsewhere).
    pub kvm_device: PathBuf,
    /// How long the KVM probe may take to print its marker.
    pub probe_timeout: Duration,
    /// A direct-boot node under KVM that prints nothing on its console for this long is taken
    /// as hung (`LABCTL_KVM_CONSOLE_TIMEOUT`, seconds). Well above a TCG boot's first line.
    pub console_timeout: Duration,
}

impl QemuConfig {
    /// Find the programs on PATH (or `LABCTL_QEMU_SYSTEM` / `LABCTL_QEMU_IMG`).
    pub fn discover(
        switch_command: Vec<OsString>,
        cache_dir: PathBuf,
    ) -> Result<QemuConfig, DriverError> {
        let secs = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Duration::from_secs(default), Duration::from_secs)
        };
        Ok(QemuConfig {
            qemu_system: find_program(
                "qemu-system-x86_64",
                "LABCTL_QEMU_SYSTEM",
                "install QEMU: `apt-get install qemu-system-x86` (Debian/Ubuntu), `brew install qemu` (macOS)",
            )?,
            qemu_img: find_program(
                "qemu-img",
                "LABCTL_QEMU_IMG",
                "install QEMU's tools: `apt-get install qemu-utils`",
            )?,
            switch_command,
            relay_command: Vec::new(),
            cache_dir,
            kvm_device: std::env::var_os("LABCTL_KVM_DEVICE")
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("/dev/kvm"), PathBuf::from),
            probe_timeout: secs("LABCTL_KVM_PROBE_TIMEOUT", 10),
            console_timeout: secs("LABCTL_KVM_CONSOLE_TIMEOUT", 30),
        })
    }
}

impl QemuConfig {
    /// The same, with the command that relays guest connections to host services.
    #[must_use]
    pub fn with_relay_command(mut self, relay_command: Vec<OsString>) -> QemuConfig {
        self.relay_command = relay_command;
        self
    }
}
