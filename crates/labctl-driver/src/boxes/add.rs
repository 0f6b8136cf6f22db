//! Adding a box: read or download it, recognise its kind, unpack and check its images, and
//! record it under the store's lock.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{AddOptions, BoxError, BoxMeta, BoxStore, FileSum, Progress, download, io, unpack};
use super::{sha256_file, valid_name, valid_user, write_atomic};
use crate::exec::find_program;

/// labctl's extension file inside a box.
#[derive(Debug, Clone, Deserialize)]
struct LabctlJson {
    os: Option<String>,
    user: Option<String>,
    private_key: Option<String>,
    disk: Option<String>,
    kernel: Option<String>,
    initrd: Option<String>,
    cmdline: Option<String>,
}

/// `BOX:member`, how a file inside a box archive is named in messages.
fn member(archive: &Path, name: &str) -> PathBuf {
    PathBuf::from(format!("{}:{name}", archive.display()))
}

/// An image error about a file unpacked from `archive`, named as its member.
fn in_archive(e: BoxError, archive: &Path, name: &str) -> BoxError {
    match e {
        BoxError::Image { why, .. } => BoxError::Image {
            path: member(archive, name),
            why,
        },
        other => other,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Qcow2,
    Tar,
    Gzip,
    Raw,
}

fn sniff(path: &Path) -> std::io::Result<Kind> {
    let mut f = std::fs::File::open(path)?;
    let mut head = vec![0u8; 512];
    let n = f.read(&mut head)?;
    head.truncate(n);
    Ok(if head.starts_with(b"QFI\xfb") {
        Kind::Qcow2
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Kind::Gzip
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Kind::Tar
    } else {
        Kind::Raw
    })
}

impl BoxStore {
    pub(super) fn add_locked(
        &self,
        name: &str,
        source: &str,
        opts: &AddOptions,
        progress: &dyn Fn(Progress),
    ) -> Result<BoxMeta, BoxError> {
        if !valid_name(name) {
            return Err(BoxError::BadName {
                name: name.to_string(),
            });
        }
        if self.dir(name).join("box.json").exists() && !opts.force {
            return Err(BoxError::Exists {
                name: name.to_string(),
            });
        }
        let remote = source.starts_with("http://") || source.starts_with("https://");
        if source.starts_with("http://") && !opts.insecure {
            return Err(BoxError::Insecure {
                url: download::redact_url(source),
            });
        }
        let expected = opts.sha256.as_ref().map(|s| s.trim().to_ascii_lowercase());
        let file = if remote {
            self.download(source, opts.insecure, expected.is_some(), progress)?
        } else {
            PathBuf::from(source.strip_prefix("file://").unwrap_or(source))
        };
        let (sha256, size) = sha256_file(&file).map_err(io("read", &file))?;
        if let Some(want) = expected
            && want != sha256
        {
            if remote {
                // The next attempt downloads afresh.
                let _ = std::fs::remove_file(&file);
            }
            return Err(BoxError::Digest {
                expected: want,
                actual: sha256,
            });
        }
        std::fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
        // A fresh directory per call (a crashed add leaves a `.add-*` the next one ignores).
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".add-{}-", name.replace('/', "--")))
            .tempdir_in(&self.root)
            .map_err(io("create", &self.root))?
            .keep();
        let result = self.unpack(&file, &tmp, opts);
        let mut meta = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let boot_files: Vec<String> = meta.boot_files().into_iter().map(String::from).collect();
        for f in boot_files {
            let path = tmp.join(&f);
            let (sha256, size) = match sha256_file(&path) {
                Ok(s) => s,
                // A box may name a file it lacks; `verify` reports it missing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(io("read", &path)(e));
                }
            };
            meta.files.insert(f.to_string(), FileSum { sha256, size });
        }
        meta.name = name.to_string();
        meta.source = download::redact_url(source);
        meta.sha256 = sha256;
        meta.size = size;
        meta.added_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let json = serde_json::to_string_pretty(&meta).unwrap_or_default();
        write_atomic(&tmp.join("box.json"), json.as_bytes()).map_err(io("write", &tmp))?;
        let dest = self.dir(name);
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(io("replace", &dest))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io("rename", &tmp))?;
        Ok(meta)
    }

    pub(super) fn qemu_img() -> Result<PathBuf, BoxError> {
        Ok(find_program(
            "qemu-img",
            "LABCTL_QEMU_IMG",
            "install QEMU's tools: `apt-get install qemu-utils`",
        )?)
    }

    fn unpack(&self, file: &Path, dir: &Path, opts: &AddOptions) -> Result<BoxMeta, BoxError> {
        if let Some(u) = &opts.user
            && !valid_user(u)
        {
            return Err(BoxError::Metadata {
                field: "--user".into(),
                value: u.escape_debug().to_string(),
                why: "is not a valid user name".into(),
            });
        }
        let mut meta = BoxMeta {
            name: String::new(),
            source: String::new(),
            sha256: String::new(),
            size: 0,
            added_at: 0,
            disk: "disk.qcow2".into(),
            kernel: None,
            initrd: None,
            cmdline: None,
            user: opts.user.clone().unwrap_or_else(|| "vagrant".into()),
            private_key: None,
            os: opts.os.clone().unwrap_or_else(|| "debian".into()),
            ovf: None,
            files: BTreeMap::new(),
        };
        match sniff(file).map_err(io("read", file))? {
            Kind::Qcow2 => {
                unpack::accept_image(&Self::qemu_img()?, file, "qcow2", &dir.join("disk.qcow2"))?;
                meta.user = opts.user.clone().unwrap_or_else(|| "root".into());
            }
            Kind::Raw => {
                unpack::accept_image(&Self::qemu_img()?, file, "raw", &dir.join("disk.qcow2"))?;
                meta.user = opts.user.clone().unwrap_or_else(|| "root".into());
            }
            kind @ (Kind::Tar | Kind::Gzip) => {
                let cap = opts.max_unpacked.unwrap_or(unpack::DEFAULT_MAX_UNPACKED);
                unpack::extract(file, dir, kind == Kind::Gzip, cap)?;
                self.adopt_vagrant_box(file, dir, &mut meta, opts)?;
            }
        }
        if let Some(key) = &opts.private_key {
            std::fs::copy(key, dir.join("private_key")).map_err(io("copy", key))?;
            meta.private_key = Some("private_key".into());
        }
        if let Some(k) = &meta.private_key {
            let p = dir.join(k);
            crate::files::set_unix_mode(&p, 0o600).map_err(io("chmod", &p))?;
        }
        Ok(meta)
    }

    fn adopt_vagrant_box(
        &self,
        file: &Path,
        dir: &Path,
        meta: &mut BoxMeta,
        opts: &AddOptions,
    ) -> Result<(), BoxError> {
        let bad = |message: String| BoxError::Format {
            path: file.to_path_buf(),
            message,
        };
        let metadata: serde_json::Value = std::fs::read_to_string(dir.join("metadata.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| bad("not a Vagrant box: no readable metadata.json".into()))?;
        let provider = metadata
            .get("provider")
            .and_then(|p| p.as_str())
            .unwrap_or_default();
        let labctl: Option<LabctlJson> = match std::fs::read_to_string(dir.join("labctl.json")) {
            Ok(text) => {
                Some(serde_json::from_str(&text).map_err(|e| bad(format!("labctl.json: {e}")))?)
            }
            Err(_) => None,
        };
        let disk_name = labctl
            .as_ref()
            .and_then(|l| l.disk.clone())
            .unwrap_or_else(|| "box.img".into());
        match provider {
            "libvirt" => {
                let name = unpack::plain_file(dir, "disk", &disk_name)?;
                let img = dir.join(&name);
                let found = unpack::sniff_format(&unpack::head(&img)?);
                let declared = metadata
                    .get("format")
                    .and_then(|f| f.as_str())
                    .unwrap_or(found);
                if declared != found {
                    return Err(BoxError::Image {
                        path: member(file, &name),
                        why: format!(
                            "metadata.json says format {declared:?} but the file is a {found} image"
                        ),
                    });
                }
                if !matches!(found, "qcow2" | "raw") {
                    return Err(BoxError::Image {
                        path: member(file, &name),
                        why: format!("a libvirt box disk must be qcow2 or raw, not {found}"),
                    });
                }
                let tmp = dir.join(".disk.qcow2.tmp");
                unpack::accept_image(&Self::qemu_img()?, &img, found, &tmp)
                    .map_err(|e| in_archive(e, file, &name))?;
                let _ = std::fs::remove_file(&img);
                std::fs::rename(&tmp, dir.join("disk.qcow2")).map_err(io("rename", &tmp))?;
            }
            "virtualbox" => {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(io("read", dir))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                files.sort();
                let vmdk = files
                    .iter()
                    .find(|p| {
                        p.extension()
                            .is_some_and(|e| e.eq_ignore_ascii_case("vmdk"))
                    })
                    .ok_or_else(|| bad("VirtualBox box without a .vmdk disk".into()))?;
                meta.ovf = files
                    .iter()
                    .find(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ovf")))
                    .and_then(|p| p.file_name())
                    .map(|f| f.to_string_lossy().to_string());
                let name = vmdk
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match Self::qemu_img().ok() {
                    Some(qemu_img) => {
                        unpack::accept_image(&qemu_img, vmdk, "vmdk", &dir.join("disk.qcow2"))
                            .map_err(|e| in_archive(e, file, &name))?;
                    }
                    None => {
                        // No qemu-img (common on Windows and macOS VirtualBox hosts): keep the
                        // VMDK as it is; the VirtualBox provider imports the OVF and needs no
                        // conversion. A QEMU lab on this box needs qemu-img and a re-add.
                        // VirtualBox follows extents too, so the VMDK must be self-contained.
                        unpack::check_vmdk_self_contained(vmdk).map_err(|why| BoxError::Image {
                            path: member(file, &name),
                            why,
                        })?;
                        tracing::info!(box_dir = %dir.display(), "qemu-img not found: keeping the VirtualBox disk unconverted (enough for provider = \"virtualbox\")");
                        meta.disk = name;
                    }
                }
            }
            other => {
                return Err(bad(format!(
                    "box provider `{}` is not supported (libvirt and virtualbox boxes are)",
                    other.escape_debug()
                )));
            }
        }
        if let Some(l) = labctl {
            let file = |field: &str, v: Option<String>| {
                v.map(|v| unpack::plain_file(dir, field, &v)).transpose()
            };
            meta.kernel = file("kernel", l.kernel)?;
            meta.initrd = file("initrd", l.initrd)?;
            meta.private_key = file("private_key", l.private_key)?;
            if let Some(c) = &l.cmdline
                && c.chars().any(char::is_control)
            {
                return Err(BoxError::Metadata {
                    field: "cmdline".into(),
                    value: c.escape_debug().to_string(),
                    why: "holds a control character".into(),
                });
            }
            meta.cmdline = l.cmdline;
            meta.user = opts
                .user
                .clone()
                .or(l.user)
                .unwrap_or_else(|| "root".into());
            meta.os = opts.os.clone().or(l.os).unwrap_or_else(|| "debian".into());
        }
        if !valid_user(&meta.user) {
            return Err(BoxError::Metadata {
                field: "user".into(),
                value: meta.user.escape_debug().to_string(),
                why: "is not a valid user name".into(),
            });
        }
        if meta.os.is_empty()
            || !meta
                .os
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(BoxError::Metadata {
                field: "os".into(),
                value: meta.os.escape_debug().to_string(),
                why: "is not an OS family name (debian, ubuntu, rocky, centos)".into(),
            });
        }
        Ok(())
    }
}
