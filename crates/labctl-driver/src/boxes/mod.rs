//! The box store: base images labctl boots machines from.
//!
//! `box add` accepts a qcow2 or raw disk, a Vagrant libvirt box (box.img + metadata.json), a
//! Vagrant VirtualBox box (OVF + VMDK, converted with `qemu-img convert`) and the boxes
//! `scripts/build-box.sh` makes (a libvirt box plus `labctl.json`: kernel, login, guest OS).
//! Each box lives in `<data dir>/boxes/<name>/` with a `box.json`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exec::{ToolError, find_program};

pub mod download;
pub mod unpack;

pub use crate::files::{sha256_file, write_atomic};

/// What labctl knows about a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxMeta {
    pub name: String,
    /// Where it came from (path or URL).
    pub source: String,
    /// sha256 of the file that was added.
    pub sha256: String,
    /// Size in bytes of the file that was added.
    pub size: u64,
    /// Seconds since the epoch.
    pub added_at: u64,
    /// The qcow2 disk machines get overlays of (file in the box directory).
    pub disk: String,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
    /// Login for first contact.
    pub user: String,
    /// Private key file for first contact (in the box directory).
    pub private_key: Option<String>,
    /// debian, ubuntu, rocky, centos (guest configuration method).
    pub os: String,
    /// OVF descriptor, for VirtualBox imports.
    pub ovf: Option<String>,
    /// sha256 and size of the files machines boot from (disk, kernel, initrd), taken when
    /// the box was added, so that a damaged box can be told apart ([`BoxStore::verify`]).
    /// Empty for boxes added by a labctl that did not record them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileSum>,
}

/// sha256 (hex) and size of one file of a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub sha256: String,
    pub size: u64,
}

/// One file of an installed box, compared with what was recorded when it was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FileCheck {
    /// Same size and sha256 as recorded.
    Intact {
        size: u64,
    },
    /// Present; nothing was recorded to compare with.
    Unrecorded {
        size: u64,
    },
    Missing,
    /// Size or content differs from the record.
    Changed {
        recorded: FileSum,
        actual: FileSum,
    },
    Unreadable {
        message: String,
    },
}

impl BoxMeta {
    /// The files machines boot from, in the box directory.
    pub fn boot_files(&self) -> Vec<&str> {
        [Some(&self.disk), self.kernel.as_ref(), self.initrd.as_ref()]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

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

/// Box store errors.
#[derive(Debug, thiserror::Error)]
pub enum BoxError {
    #[error("no box named `{name}`")]
    NotFound { name: String, known: Vec<String> },
    #[error("box `{name}` already exists")]
    Exists { name: String },
    #[error("`{name}` is not a valid box name (letters, digits, `.`, `-`, `_`, one `/`)")]
    BadName { name: String },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("box archive entry \"{entry}\": {why}")]
    Entry { entry: String, why: String },
    #[error("box metadata `{field}` = \"{value}\" {why}")]
    Metadata {
        field: String,
        value: String,
        why: String,
    },
    #[error("disk image {} is refused: {why}", path.display())]
    Image { path: PathBuf, why: String },
    #[error("`{url}` is plain http: a box fetched that way can be swapped on the wire")]
    Insecure { url: String },
    #[error("the box's sha256 is {actual}, not the {expected} asked for")]
    Digest { expected: String, actual: String },
    #[error("downloading {url} failed")]
    Download {
        url: String,
        #[source]
        source: ToolError,
    },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BoxError + 'a {
    move |source| BoxError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Download progress: bytes so far and the total when known.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
}

/// Options for `add`.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    pub force: bool,
    /// Login user when the box does not say (default `vagrant`, or `root` for plain disks).
    pub user: Option<String>,
    /// Private key when the box ships none.
    pub private_key: Option<PathBuf>,
    /// Guest OS family when the box does not say.
    pub os: Option<String>,
    /// Cap on what a box archive unpacks to (default [`unpack::DEFAULT_MAX_UNPACKED`]).
    pub max_unpacked: Option<u64>,
    /// Allow plain `http://` (and redirects to it).
    pub insecure: bool,
    /// The sha256 the added file must have (hex).
    pub sha256: Option<String>,
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

/// A login user name as Linux and OpenSSH accept it: `[a-z_][a-z0-9_-]*` (and a final `$`),
/// at most 32 bytes. Anything else (a newline, a space, `%`) could inject into ssh_config.
pub fn valid_user(user: &str) -> bool {
    let body = user.strip_suffix('$').unwrap_or(user);
    !body.is_empty()
        && user.len() <= 32
        && body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Boxes under one directory.
#[derive(Debug, Clone)]
pub struct BoxStore {
    pub root: PathBuf,
    pub download_dir: PathBuf,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.matches('/').count() <= 1
        && !name.starts_with(['/', '.'])
        && !name.ends_with('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
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
    pub fn new(root: PathBuf, download_dir: PathBuf) -> BoxStore {
        BoxStore { root, download_dir }
    }

    /// Directory of a box (`/` in names becomes `--`).
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name.replace('/', "--"))
    }

    pub fn get(&self, name: &str) -> Result<BoxMeta, BoxError> {
        let path = self.dir(name).join("box.json");
        let text = std::fs::read_to_string(&path).map_err(|_| BoxError::NotFound {
            name: name.to_string(),
            known: self.list().into_iter().map(|b| b.name).collect(),
        })?;
        serde_json::from_str(&text).map_err(|e| BoxError::Format {
            path,
            message: e.to_string(),
        })
    }

    pub fn list(&self) -> Vec<BoxMeta> {
        let mut out: Vec<BoxMeta> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path().join("box.json")).ok())
                    .filter_map(|t| serde_json::from_str(&t).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Check each boot file of an installed box against its record (reads every byte).
    pub fn verify(&self, meta: &BoxMeta) -> Vec<(String, FileCheck)> {
        let dir = self.dir(&meta.name);
        meta.boot_files()
            .into_iter()
            .map(|f| {
                let path = dir.join(f);
                let check = if !path.exists() {
                    FileCheck::Missing
                } else {
                    match (sha256_file(&path), meta.files.get(f)) {
                        (Err(e), _) => FileCheck::Unreadable {
                            message: e.to_string(),
                        },
                        (Ok((_, size)), None) => FileCheck::Unrecorded { size },
                        (Ok((sha256, size)), Some(rec)) => {
                            if rec.sha256 == sha256 && rec.size == size {
                                FileCheck::Intact { size }
                            } else {
                                FileCheck::Changed {
                                    recorded: rec.clone(),
                                    actual: FileSum { sha256, size },
                                }
                            }
                        }
                    }
                };
                (f.to_string(), check)
            })
            .collect()
    }

    pub fn remove(&self, name: &str) -> Result<(), BoxError> {
        let _lock = self.lock()?;
        self.get(name)?;
        let dir = self.dir(name);
        std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))
    }

    /// Hold the store's lock (`<root>/.lock`, flock) until the file is dropped: adds and
    /// removals are serialised across threads and processes. Without it two labs brought up at
    /// once on a fresh host both added the built box: one failed on the other's temporary
    /// directory, or replaced the box directory while the other's overlays already used it.
    fn lock(&self) -> Result<std::fs::File, BoxError> {
        std::fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
        let path = self.root.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("lock", &path)(e.into()))?;
        Ok(f)
    }

    /// The box `name`, added from `source` first unless it is already in the store (checked
    /// under the store's lock, so concurrent callers add it once and all get it).
    pub fn ensure(
        &self,
        name: &str,
        source: &str,
        opts: &AddOptions,
        progress: &dyn Fn(Progress),
    ) -> Result<BoxMeta, BoxError> {
        let _lock = self.lock()?;
        if let Ok(m) = self.get(name) {
            return Ok(m);
        }
        self.add_locked(name, source, opts, progress)
    }

    /// Add a box from a file or an http(s) URL.
    pub fn add(
        &self,
        name: &str,
        source: &str,
        opts: &AddOptions,
        progress: &dyn Fn(Progress),
    ) -> Result<BoxMeta, BoxError> {
        let _lock = self.lock()?;
        self.add_locked(name, source, opts, progress)
    }

    fn add_locked(
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

    fn qemu_img() -> Result<PathBuf, BoxError> {
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
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(k);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(io("chmod", &p))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Cmd;

    #[test]
    fn names() {
        assert!(valid_name("labctl/debian-12"));
        assert!(valid_name("sysnet4admin/CentOS-k8s"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("a/b/c"));
        assert!(!valid_name("a b"));
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("x.json");
        write_atomic(&p, b"1").expect("write");
        write_atomic(&p, b"2").expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "2");
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 1);
    }

    /// A store in a temporary directory and a 16 MiB qcow2 made by the real qemu-img (None
    /// without qemu-img).
    fn store_and_disk() -> Option<(tempfile::TempDir, BoxStore, PathBuf)> {
        let qemu_img = BoxStore::qemu_img().ok()?;
        let d = tempfile::tempdir().expect("tmp");
        let store = BoxStore::new(d.path().join("boxes"), d.path().join("dl"));
        let disk = d.path().join("a.qcow2");
        Cmd::new(qemu_img)
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("16M")
            .run()
            .expect("create");
        Some((d, store, disk))
    }

    /// Four threads (labs brought up at once on a fresh host) ensure the same box: it is
    /// added once, every caller gets it, and no temporary directory is left.
    #[test]
    fn concurrent_ensures_add_a_box_once() {
        let Some((_d, store, disk)) = store_and_disk() else {
            return;
        };
        let metas: Vec<BoxMeta> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        store
                            .ensure(
                                "t/shared",
                                disk.to_str().expect("utf8"),
                                &AddOptions::default(),
                                &|_| {},
                            )
                            .expect("ensure")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(
            metas
                .iter()
                .all(|m| m.added_at == metas[0].added_at && m.sha256 == metas[0].sha256)
        );
        let leftovers: Vec<String> = std::fs::read_dir(&store.root)
            .expect("root")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".add-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_eq!(store.list().len(), 1);
        // `add` without --force still refuses an existing box under the same lock.
        assert!(matches!(
            store.add(
                "t/shared",
                disk.to_str().expect("utf8"),
                &AddOptions::default(),
                &|_| {}
            ),
            Err(BoxError::Exists { .. })
        ));
    }

    #[test]
    fn adds_a_qcow2_and_a_libvirt_box_and_rejects_junk() {
        let Some((d, store, disk)) = store_and_disk() else {
            return;
        };
        let m = store
            .add(
                "t/plain",
                disk.to_str().expect("utf8"),
                &AddOptions::default(),
                &|_| {},
            )
            .expect("add qcow2");
        assert_eq!(m.user, "root");
        assert_eq!(m.size, std::fs::metadata(&disk).expect("meta").len());
        assert!(store.dir("t/plain").join("disk.qcow2").exists());
        let placed = store.dir("t/plain").join("disk.qcow2");
        let size = std::fs::metadata(&placed).expect("meta").len();
        assert_eq!(
            store.verify(&m),
            vec![("disk.qcow2".to_string(), FileCheck::Intact { size })]
        );
        // The same size with one byte changed is caught by the checksum.
        let mut bytes = std::fs::read(&placed).expect("read");
        bytes[0] ^= 1;
        std::fs::write(&placed, &bytes).expect("write");
        assert!(matches!(
            &store.verify(&m)[0].1,
            FileCheck::Changed { recorded, actual } if recorded.size == actual.size && recorded.sha256 != actual.sha256
        ));
        std::fs::remove_file(&placed).expect("rm");
        assert_eq!(store.verify(&m)[0].1, FileCheck::Missing);
        store
            .add(
                "t/plain",
                disk.to_str().expect("utf8"),
                &AddOptions {
                    force: true,
                    ..AddOptions::default()
                },
                &|_| {},
            )
            .expect("add again");
        assert!(matches!(
            store.add(
                "t/plain",
                disk.to_str().expect("utf8"),
                &AddOptions::default(),
                &|_| {}
            ),
            Err(BoxError::Exists { .. })
        ));

        // A libvirt box with labctl.json.
        let boxdir = d.path().join("boxsrc");
        std::fs::create_dir_all(&boxdir).expect("mkdir");
        std::fs::copy(&disk, boxdir.join("box.img")).expect("copy");
        std::fs::write(
            boxdir.join("metadata.json"),
            r#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#,
        )
        .expect("w");
        std::fs::write(boxdir.join("insecure_key"), "KEY").expect("w");
        std::fs::write(boxdir.join("vmlinuz"), "KERNEL").expect("w");
        std::fs::write(
            boxdir.join("labctl.json"),
            r#"{"os":"debian","user":"root","private_key":"insecure_key","kernel":"vmlinuz","cmdline":"root=/dev/vda"}"#,
        )
        .expect("w");
        let tarball = d.path().join("x.box");
        Cmd::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&boxdir)
            .arg(".")
            .run()
            .expect("tar");
        let m = store
            .add(
                "t/libvirt",
                tarball.to_str().expect("utf8"),
                &AddOptions::default(),
                &|_| {},
            )
            .expect("add box");
        assert_eq!(m.private_key.as_deref(), Some("insecure_key"));
        assert_eq!(m.kernel.as_deref(), Some("vmlinuz"));
        assert!(store.dir("t/libvirt").join("disk.qcow2").exists());
        assert_eq!(store.list().len(), 2);

        // A tar without metadata.json is refused and leaves nothing behind.
        let junk = d.path().join("junk.box");
        Cmd::new("tar")
            .arg("-cf")
            .arg(&junk)
            .arg("-C")
            .arg(&boxdir)
            .arg("insecure_key")
            .run()
            .expect("tar");
        let err = store
            .add(
                "t/junk",
                junk.to_str().expect("utf8"),
                &AddOptions::default(),
                &|_| {},
            )
            .unwrap_err();
        assert!(err.to_string().contains("metadata.json"), "{err}");
        assert_eq!(store.list().len(), 2);
        store.remove("t/plain").expect("remove");
        assert!(matches!(
            store.get("t/plain"),
            Err(BoxError::NotFound { .. })
        ));
    }
}
