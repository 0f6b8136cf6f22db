//! The master VM of a box (import once, snapshot `base`) and the linked clones made from it.

use std::path::Path;

use super::{
    EXTRADATA_ID, HostOs, LONG, MASTER_FILE, MASTER_SNAPSHOT, SHORT, VBoxDriver, VBoxError, args,
    file_lock, io_err, lock, ovf_is_arm, racy,
};
use crate::MachineConfig;

/// The master VM name of a box, from its directory name.
pub fn master_name(box_dir: &Path) -> String {
    let name = box_dir
        .file_name()
        .map_or_else(|| "box".into(), |n| n.to_string_lossy().into_owned());
    format!("labctl-master-{name}")
}

impl VBoxDriver {
    /// An interrupted import or clone leaves `<base>/<vm>/` with a settings file, and every
    /// later try fails with "settings file already exists". Called only when no VM of that name
    /// is registered; the folder is labctl's (inside a box or machine directory).
    pub(super) fn clean_machine_folder(&self, base: &Path, vm: &str) -> Result<(), VBoxError> {
        let folder = base.join(vm);
        if folder.exists() {
            tracing::warn!(folder = %folder.display(), "removing a machine folder an interrupted import or clone left behind");
            std::fs::remove_dir_all(&folder).map_err(io_err("cannot remove", &folder))?;
        }
        Ok(())
    }

    /// The master VM of the box whose OVF is `ovf`, imported and snapshotted if needed.
    pub(super) fn ensure_master(&self, ovf: &Path) -> Result<String, VBoxError> {
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
    pub(super) fn check_arch(&self, ovf: &Path) -> Result<(), VBoxError> {
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

    pub(super) fn create_vm(&self, m: &MachineConfig) -> Result<(), VBoxError> {
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
}
