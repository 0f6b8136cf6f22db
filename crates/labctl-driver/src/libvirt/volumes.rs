//! The libvirt driver's storage: the `labctl` pool, and each box uploaded once per host as
//! base volumes named by its sha256.

use std::path::Path;

use super::{LibvirtDriver, LibvirtError, POOL, parse, xml};
use crate::BootImage;
use crate::DriverError;
use crate::exec::Output;
use parse::Missing;

/// The box's files as volumes on the host.
#[derive(Debug, Clone)]
pub(super) struct BaseVolumes {
    pub(super) disk: String,
    pub(super) capacity: u64,
    pub(super) kernel: Option<String>,
    pub(super) initrd: Option<String>,
}

/// What names a box's base volumes: the box's sha256 from the store's `box.json` next to the
/// disk (per file when recorded), else the disk file's own sha256.
fn box_key(boot: &BootImage) -> Result<String, DriverError> {
    let meta = boot
        .disk
        .parent()
        .map(|d| d.join("box.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let file_name = boot
        .disk
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let recorded = meta.as_ref().and_then(|v| {
        v.pointer(&format!("/files/{file_name}/sha256"))
            .or_else(|| v.get("sha256"))
            .and_then(|s| s.as_str())
            .map(str::to_string)
    });
    let sha = match recorded {
        Some(s) if s.len() >= 16 => s,
        _ => {
            crate::files::sha256_file(&boot.disk)
                .map_err(|source| DriverError::Io {
                    what: "cannot read",
                    path: boot.disk.clone(),
                    source,
                })?
                .0
        }
    };
    Ok(sha.chars().take(16).collect())
}

impl LibvirtDriver {
    pub(super) fn ensure_pool(&self) -> Result<(), LibvirtError> {
        let found = self.run_found(self.virsh().args(["pool-info", POOL]), Missing::Pool)?;
        if found.is_none() {
            let xml = xml::pool(POOL, &self.cfg.pool_dir.to_string_lossy());
            self.with_xml_file("pool-define", &xml)?;
            self.run(self.virsh().args(["pool-build", POOL]))?;
            let _ = self.run(self.virsh().args(["pool-autostart", POOL]));
        }
        self.run_idempotent(self.virsh().args(["pool-start", POOL]), Missing::Pool)?;
        Ok(())
    }

    pub(super) fn volume_exists(&self, name: &str) -> Result<Option<Output>, LibvirtError> {
        self.run_found(
            self.virsh()
                .args(["vol-info", "--pool", POOL, name, "--bytes"]),
            Missing::Volume,
        )
    }

    pub(super) fn vol_path(&self, name: &str) -> Result<String, LibvirtError> {
        let out = self.run(self.virsh().args(["vol-path", "--pool", POOL, name]))?;
        Ok(out.stdout.trim().to_string())
    }

    pub(super) fn delete_volume(&self, name: &str) -> Result<(), LibvirtError> {
        self.run_idempotent(
            self.virsh().args(["vol-delete", "--pool", POOL, name]),
            Missing::Volume,
        )
    }

    /// Upload a file as a new volume (`vol-create-as` + `vol-upload`).
    pub(super) fn upload(&self, name: &str, file: &Path, format: &str) -> Result<(), LibvirtError> {
        let size = std::fs::metadata(file)
            .map_err(|source| LibvirtError::Io {
                what: "cannot read",
                path: file.to_path_buf(),
                source,
            })?
            .len();
        self.delete_volume(name)?;
        self.run(self.virsh().args([
            "vol-create-as",
            POOL,
            name,
            &size.max(1).to_string(),
            "--format",
            format,
        ]))?;
        let up = self.run(
            self.virsh()
                .args(["vol-upload", "--pool", POOL, name])
                .arg(file)
                .timeout(self.cfg.timeout * 10),
        );
        if let Err(e) = up {
            let _ = self.delete_volume(name);
            return Err(e);
        }
        Ok(())
    }

    /// The box's base volumes, uploaded once per host. A marker volume written last says
    /// the set is complete (an interrupted upload is redone).
    pub(super) fn base_volumes(&self, boot: &BootImage) -> Result<BaseVolumes, DriverError> {
        let key = box_key(boot)?;
        let _g = match self.upload.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        self.ensure_pool()?;
        let disk = format!("labctl-box-{key}.qcow2");
        let kernel = format!("labctl-box-{key}-vmlinuz");
        let initrd = format!("labctl-box-{key}-initrd");
        let marker = format!("labctl-box-{key}.complete");
        if self.volume_exists(&marker)?.is_none() {
            self.upload(&disk, &boot.disk, "qcow2")?;
            if let Some(k) = &boot.kernel {
                self.upload(&kernel, k, "raw")?;
            }
            if let Some(i) = &boot.initrd {
                self.upload(&initrd, i, "raw")?;
            }
            self.run(
                self.virsh()
                    .args(["vol-create-as", POOL, &marker, "1", "--format", "raw"]),
            )?;
        }
        let info = self
            .volume_exists(&disk)?
            .ok_or_else(|| LibvirtError::Unexpected {
                command: format!("virsh vol-info --pool {POOL} {disk}"),
                message: "the box's base volume is gone while its marker is there".into(),
            })?;
        let capacity =
            parse::capacity_bytes(&info.stdout).ok_or_else(|| LibvirtError::Unexpected {
                command: format!("virsh vol-info --pool {POOL} {disk} --bytes"),
                message: "no `Capacity:` line".into(),
            })?;
        Ok(BaseVolumes {
            disk,
            capacity,
            kernel: match boot.kernel {
                Some(_) => Some(self.vol_path(&kernel)?),
                None => None,
            },
            initrd: match boot.initrd {
                Some(_) => Some(self.vol_path(&initrd)?),
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_key_prefers_the_recorded_sha() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("disk.qcow2"), b"disk").unwrap();
        let boot = BootImage {
            disk: d.path().join("disk.qcow2"),
            kernel: None,
            initrd: None,
            cmdline: None,
            ovf: None,
        };
        // No box.json: the disk's own sha256.
        assert_eq!(box_key(&boot).unwrap(), "1044dec7206e8d7c");
        std::fs::write(
            d.path().join("box.json"),
            r#"{"sha256":"e0763fb6cac306beb8fbab6a132e5f632413619445343ef645a8599d618d9d52"}"#,
        )
        .unwrap();
        assert_eq!(box_key(&boot).unwrap(), "e0763fb6cac306be");
        std::fs::write(
            d.path().join("box.json"),
            r#"{"sha256":"e0763fb6cac306beb8fbab6a132e5f632413619445343ef645a8599d618d9d52","files":{"disk.qcow2":{"sha256":"0123456789abcdef0123","size":4}}}"#,
        )
        .unwrap();
        assert_eq!(box_key(&boot).unwrap(), "0123456789abcdef");
    }
}
