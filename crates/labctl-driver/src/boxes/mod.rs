//! The box store: base images labctl boots machines from.
//!
//! `box add` accepts a qcow2 or raw disk, a Vagrant libvirt box (box.img + metadata.json), a
//! Vagrant VirtualBox box (OVF + VMDK, converted with `qemu-img convert`) and the boxes
//! `scripts/build-box.sh` makes (a libvirt box plus `labctl.json`: kernel, login, guest OS).
//! Each box lives in `<data dir>/boxes/<name>/` with a `box.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exec::ToolError;

mod add;
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
        // std's lock is flock(LOCK_EX) on Unix, LockFileEx on Windows.
        f.lock().map_err(io("lock", &path))?;
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
}

#[cfg(test)]
mod tests;
