//! Lab state under `.labctl/` beside lab.toml: written atomically, guarded by one lock per lab.
//! docs/internals.md lists every file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use labctl_driver::MachineConfig;
use labctl_driver::boxes::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RunnerError;

pub const STATE_VERSION: u32 = 1;

/// Paths of one lab's state.
#[derive(Debug, Clone)]
pub struct LabPaths {
    /// `<lab dir>/.labctl`
    pub state_dir: PathBuf,
    /// Short directory for sockets.
    pub run_dir: PathBuf,
    /// `<name>-<8 hex>`, unique per lab directory on this host.
    pub id: String,
}

impl LabPaths {
    /// The directory holding lab.toml (and `.labctl/`).
    pub fn lab_dir(&self) -> PathBuf {
        self.state_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    pub fn new(lab_dir: &Path, name: &str) -> LabPaths {
        let canon = std::fs::canonicalize(lab_dir).unwrap_or_else(|_| {
            std::path::absolute(lab_dir).unwrap_or_else(|_| lab_dir.to_path_buf())
        });
        let lab_dir = canon.as_path();
        let mut h = Sha256::new();
        h.update(canon.to_string_lossy().as_bytes());
        let hex: String = h
            .finalize()
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        let base = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() && Path::new(&d).is_dir() => PathBuf::from(d).join("labctl"),
            _ => {
                std::env::temp_dir().join(format!("labctl-{}", rustix::process::getuid().as_raw()))
            }
        };
        LabPaths {
            state_dir: lab_dir.join(".labctl"),
            run_dir: base.join(&hex),
            id: format!("{name}-{hex}"),
        }
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
    pub fn values_file(&self) -> PathBuf {
        self.state_dir.join("values.json")
    }
    pub fn key(&self) -> PathBuf {
        self.state_dir.join("ssh").join("id_ed25519")
    }
    pub fn machine_dir(&self, node: &str) -> PathBuf {
        self.state_dir.join("machines").join(node)
    }
    pub fn log_dir(&self, node: &str) -> PathBuf {
        self.state_dir.join("logs").join(node)
    }
}

/// A step that finished successfully.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// sha256 of the rendered script and arguments.
    pub hash: String,
    /// Seconds since the epoch.
    pub finished_at: u64,
    pub duration_ms: u64,
}

/// One node's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub role: String,
    pub machine: MachineConfig,
    /// Login user after configuration.
    pub user: String,
    /// Box key for first contact.
    pub box_key: Option<PathBuf>,
    /// Guest OS family.
    pub os: String,
    /// Guest configuration done for the current disk.
    pub configured: bool,
    /// Private addresses, `network=ip/prefix`.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Successful steps by name.
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
}

/// `.labctl/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub lab: String,
    pub id: String,
    pub provider: String,
    pub run_dir: PathBuf,
    pub box_name: String,
    pub networks: Vec<labctl_driver::NetworkConfig>,
    pub nodes: BTreeMap<String, NodeState>,
    /// The golden snapshot taken after the last fully successful `up`.
    #[serde(default)]
    pub golden: Option<Golden>,
}

/// A lab-wide snapshot every node can be reset to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Golden {
    pub name: String,
    /// Seconds since the epoch.
    pub taken_at: u64,
    /// sha256 of the published values then: a node restored alone is consistent with the
    /// others only while the values (join tokens, keys) have not changed.
    pub values_hash: String,
    pub nodes: Vec<String>,
}

/// sha256 (hex) of the published values.
pub fn values_hash(values: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in values {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl LabState {
    pub fn new(lab: &str, paths: &LabPaths, provider: &str, box_name: &str) -> LabState {
        LabState {
            version: STATE_VERSION,
            lab: lab.to_string(),
            id: paths.id.clone(),
            provider: provider.to_string(),
            run_dir: paths.run_dir.clone(),
            box_name: box_name.to_string(),
            networks: Vec::new(),
            nodes: BTreeMap::new(),
            golden: None,
        }
    }

    /// Read the state; `None` if the lab has none yet.
    pub fn load(paths: &LabPaths) -> Result<Option<LabState>, RunnerError> {
        let path = paths.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RunnerError::Io {
                    what: "read",
                    path,
                    source,
                });
            }
        };
        let st: LabState = serde_json::from_str(&text).map_err(|e| RunnerError::CorruptState {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if st.version != STATE_VERSION {
            return Err(RunnerError::CorruptState {
                path,
                message: format!(
                    "state version {} (this labctl reads {STATE_VERSION})",
                    st.version
                ),
            });
        }
        Ok(Some(st))
    }

    /// The named nodes (all when `nodes` is empty), refusing names the lab does not have.
    pub fn select(&self, nodes: &[String]) -> Result<Vec<String>, RunnerError> {
        if let Some(n) = nodes.iter().find(|n| !self.nodes.contains_key(*n)) {
            return Err(RunnerError::UnknownNode {
                name: n.clone(),
                known: self.nodes.keys().cloned().collect(),
            });
        }
        Ok(self
            .nodes
            .keys()
            .filter(|n| nodes.is_empty() || nodes.contains(n))
            .cloned()
            .collect())
    }

    pub fn save(&self, paths: &LabPaths) -> Result<(), RunnerError> {
        let path = paths.state_file();
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        write_atomic(&path, text.as_bytes()).map_err(|source| RunnerError::Io {
            what: "write",
            path,
            source,
        })
    }
}

/// Published values (secrets), `.labctl/values.json`, mode 0600.
pub fn load_values(paths: &LabPaths) -> BTreeMap<String, String> {
    std::fs::read_to_string(paths.values_file())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn save_values(paths: &LabPaths, values: &BTreeMap<String, String>) -> Result<(), RunnerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = paths.values_file();
    let text = serde_json::to_string_pretty(values).unwrap_or_default();
    // Created 0600 from the start: the values are secrets (join tokens, certificate keys).
    let tmp = paths
        .state_dir
        .join(format!(".values.json.tmp-{}", std::process::id()));
    let io = |what, source| RunnerError::Io {
        what,
        path: path.clone(),
        source,
    };
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("write", e))?;
        f.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("write", e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))
}

/// Create `dir` (and parents) owned by this user with mode 0700, or refuse one that another
/// user owns or others can write: it holds the VMs' control sockets.
pub fn ensure_private_dir(dir: &Path) -> Result<(), RunnerError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| RunnerError::Io {
                what: "create",
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let meta = std::fs::metadata(dir).map_err(|source| RunnerError::Io {
        what: "inspect",
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.uid() != rustix::process::getuid().as_raw() || meta.permissions().mode() & 0o022 != 0 {
        return Err(RunnerError::UnsafeDir {
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// One exclusive lock per lab, held while a command changes it.
#[derive(Debug)]
pub struct LabLock {
    _file: std::fs::File,
}

impl LabLock {
    pub fn acquire(paths: &LabPaths) -> Result<LabLock, RunnerError> {
        std::fs::create_dir_all(&paths.state_dir).map_err(|source| RunnerError::Io {
            what: "create",
            path: paths.state_dir.clone(),
            source,
        })?;
        let path = paths.state_dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| RunnerError::Io {
                what: "open",
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(RunnerError::Locked {
                    path,
                    holder: holder.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(RunnerError::Io {
                    what: "lock",
                    path,
                    source,
                });
            }
        }
        let _ = file.set_len(0);
        let _ = writeln!(file, "pid {}", std::process::id());
        Ok(LabLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let d = tempfile::tempdir().expect("tmp");
        let paths = LabPaths::new(d.path(), "t");
        let first = LabLock::acquire(&paths).expect("first");
        let err = LabLock::acquire(&paths).unwrap_err();
        assert!(err.to_string().contains("another labctl"), "{err}");
        drop(first);
        LabLock::acquire(&paths).expect("after drop");
    }

    #[test]
    fn ids_differ_per_directory_and_run_dir_is_short() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        let pa = LabPaths::new(a.path(), "k8s");
        let pb = LabPaths::new(b.path(), "k8s");
        assert_ne!(pa.id, pb.id);
        assert!(pa.id.starts_with("k8s-"));
        // unix socket paths must stay under ~100 bytes
        assert!(
            pa.run_dir
                .join("net-private")
                .join("w12-k8s.dgram")
                .as_os_str()
                .len()
                < 100
        );
    }

    #[test]
    fn state_round_trips() {
        let d = tempfile::tempdir().expect("tmp");
        let paths = LabPaths::new(d.path(), "t");
        assert!(LabState::load(&paths).expect("load").is_none());
        let st = LabState::new("t", &paths, "qemu", "b");
        st.save(&paths).expect("save");
        assert_eq!(LabState::load(&paths).expect("load"), Some(st));
        std::fs::write(paths.state_file(), "{not json").expect("w");
        assert!(matches!(
            LabState::load(&paths),
            Err(RunnerError::CorruptState { .. })
        ));
    }
}
