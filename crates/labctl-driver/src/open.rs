//! The driver crate's one entry point: a provider name and the host's places in, a driver
//! out. Discovery (which programs, where), acceleration and per-driver helpers stay behind it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{Driver, DriverError};

/// What every driver may need of the host: labctl's data and cache directories, how to
/// start the lab switch (the QEMU driver's private networks), and the libvirt connection.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub switch_command: Vec<OsString>,
    /// The libvirt connection URI (`qemu:///system`, `qemu+ssh://user@host/system`);
    /// `None` is [`crate::libvirt::default_uri`]. Other drivers ignore it.
    pub uri: Option<String>,
    /// How to relay one guest connection to a host service (`labctl __relay`; QEMU's
    /// `guestfwd`). Empty: guests get no host services.
    pub relay_command: Vec<OsString>,
}

/// The providers this build has a driver for.
pub const PROVIDERS: &[&str] = &["qemu", "virtualbox", "libvirt"];

/// Open the driver for `provider` (`qemu`, `virtualbox`, `libvirt`). Opening finds the
/// programs (`virsh` for libvirt) but does not connect: the first call does.
pub fn open(provider: &str, host: &HostEnv) -> Result<Arc<dyn Driver>, DriverError> {
    match provider {
        "qemu" | "libvirt" if !cfg!(unix) => Err(DriverError::NotOnWindows {
            provider: provider.to_string(),
        }),
        "qemu" => Ok(Arc::new(crate::qemu::QemuDriver::new(
            crate::qemu::QemuConfig::discover(host.switch_command.clone(), host.cache_dir.clone())?
                .with_relay_command(host.relay_command.clone()),
        ))),
        "virtualbox" => Ok(Arc::new(crate::vbox::VBoxDriver::new(
            crate::vbox::VBoxConfig::discover()?.with_data_dir(host.data_dir.clone()),
        ))),
        "libvirt" => Ok(Arc::new(crate::libvirt::LibvirtDriver::new(
            crate::libvirt::LibvirtConfig::discover(
                host.uri.as_deref(),
                &host.data_dir,
                &host.cache_dir,
            )?,
        ))),
        other => Err(DriverError::NoDriver {
            provider: other.to_string(),
        }),
    }
}

/// The memory (MiB) the libvirt host at `host.uri` can still give guests (`virsh
/// nodememstats`: free, buffers and page cache), for placing a class's labs on a host whose
/// capacity class.toml does not give.
pub fn libvirt_host_memory_mb(host: &HostEnv) -> Result<u64, DriverError> {
    if !cfg!(unix) {
        return Err(DriverError::NotOnWindows {
            provider: "libvirt".into(),
        });
    }
    let cfg = crate::libvirt::LibvirtConfig::discover(
        host.uri.as_deref(),
        &host.data_dir,
        &host.cache_dir,
    )?;
    Ok(crate::libvirt::available_memory_mb(&cfg)?)
}

/// Drop what drivers keep on this host for a box, before the box is removed: VirtualBox's
/// imported master VM (unregistered with its disks). Returns what was removed, by name. A host
/// without VirtualBox has nothing registered to drop.
pub fn forget_box(box_dir: &std::path::Path, host: &HostEnv) -> Result<Vec<String>, DriverError> {
    if !box_dir.join(crate::vbox::MASTER_FILE).exists() {
        return Ok(Vec::new());
    }
    let Ok(cfg) = crate::vbox::VBoxConfig::discover() else {
        return Ok(Vec::new());
    };
    let d = crate::vbox::VBoxDriver::new(cfg.with_data_dir(host.data_dir.clone()));
    Ok(d.remove_master(box_dir)?.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_provider_is_a_typed_error() {
        let e = open("vmware", &HostEnv::default()).err();
        assert!(
            matches!(&e, Some(DriverError::NoDriver { provider }) if provider == "vmware"),
            "{e:?}"
        );
    }
}
