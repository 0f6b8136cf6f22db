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
        let canon = labctl_driver::files::canonicalize(lab_dir).unwrap_or_else(|_| {
            std::path::absolute(lab_dir).unwrap_or_else(|_| lab_dir.to_path_buf())
        });
        let lab_dir = canon.as_path();
        let mut h = Sha256::new();
        h.update(canon.to_string_lossy().as_bytes());
        let mut hex = format!("{:x}", h.finalize());
        hex.truncate(8);
        let base = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() && Path::new(&d).is_dir() => PathBuf::from(d).join("labctl"),
            _ => std::env::temp_dir().join(private_tmp_name()),
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
    /// The guests' pinned SSH host keys.
    pub fn known_hosts(&self) -> PathBuf {
        self.state_dir.join("known_hosts")
    }
    /// A node's name in `known_hosts` (`HostKeyAlias`): unique per lab directory.
    pub fn host_key_alias(&self, node: &str) -> String {
        format!("labctl-{}-{node}", self.id)
    }
    /// How SSH connections to `node` check its host key; `replace` on first contact.
    pub fn host_key_check(&self, node: &str, replace: bool) -> labctl_ssh::hostkeys::HostKeyCheck {
        labctl_ssh::hostkeys::HostKeyCheck {
            file: self.known_hosts(),
            alias: self.host_key_alias(node),
            replace,
        }
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
    /// Guest OS (`"debian"`, … in the file, as before it was an enum).
    pub os: labctl_spec::Os,
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
    /// The absolute directory of the lab this state belongs to. A state found elsewhere (the
    /// lab was copied or moved) is foreign: see [`LabState::load`].
    #[serde(default)]
    pub lab_dir: PathBuf,
    /// `"qemu"`, `"virtualbox"` or `"libvirt"` in the file, as before it was an enum.
    pub provider: labctl_spec::Provider,
    /// The libvirt URI the lab was brought up with (libvirt labs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
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
    format!("{:x}", h.finalize())
}

impl LabState {
    pub fn new(
        lab: &str,
        paths: &LabPaths,
        provider: labctl_spec::Provider,
        box_name: &str,
    ) -> LabState {
        LabState {
            version: STATE_VERSION,
            lab: lab.to_string(),
            id: paths.id.clone(),
            lab_dir: paths.lab_dir(),
            provider,
            uri: None,
            run_dir: paths.run_dir.clone(),
            box_name: box_name.to_string(),
            networks: Vec::new(),
            nodes: BTreeMap::new(),
            golden: None,
        }
    }

    /// Read the state; `None` if the lab has none yet.
    ///
    /// The state must belong to this very directory: a lab copied (`cp -a lab lab2`) or moved
    /// carries the other lab's state, and acting on it would stop or delete the other lab's
    /// machines. Such a state is refused with [`RunnerError::ForeignState`]. Every path the
    /// state names inside the lab (machine directories, runtime directory, machine ids) is
    /// then replaced by the one derived from `paths`, so nothing in `state.json` can point
    /// labctl at a file or process outside the lab.
    pub fn load(paths: &LabPaths) -> Result<Option<LabState>, RunnerError> {
        let Some(mut st) = Self::load_unchecked(paths)? else {
            return Ok(None);
        };
        let own = st.owner_paths(paths)?;
        if st.id != own.id || (!st.lab_dir.as_os_str().is_empty() && st.lab_dir != own.lab_dir()) {
            return Err(RunnerError::ForeignState {
                recorded_dir: st.lab_dir.clone(),
                recorded_id: st.id.clone(),
                dir: own.lab_dir(),
            });
        }
        st.confine(&own);
        Ok(Some(st))
    }

    /// [`LabState::load`], and box files only from the box store of `env`.
    pub(crate) fn load_checked(
        paths: &LabPaths,
        env: &crate::Env,
    ) -> Result<Option<LabState>, RunnerError> {
        let st = Self::load(paths)?;
        if let Some(st) = &st {
            st.check_box_paths(paths, &env.boxes().root)?;
        }
        Ok(st)
    }

    /// Read the state without checking that it belongs to this directory (`adopt`,
    /// `destroy --forget`). Names are still checked; paths are not confined.
    pub fn load_unchecked(paths: &LabPaths) -> Result<Option<LabState>, RunnerError> {
        let path = paths.state_file();
        check_not_symlink(&paths.state_dir)?;
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
        let corrupt = |message: String| RunnerError::CorruptState {
            path: path.clone(),
            message,
        };
        let st: LabState = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if st.version != STATE_VERSION {
            return Err(corrupt(format!(
                "state version {} (this labctl reads {STATE_VERSION})",
                st.version
            )));
        }
        if !valid_label(&st.lab) {
            return Err(corrupt(format!("lab name {:?} is not valid", st.lab)));
        }
        if let Some(n) = st.nodes.keys().find(|n| !valid_label(n)) {
            return Err(corrupt(format!("node name {n:?} is not a valid host name")));
        }
        if let Some((n, ns)) = st.nodes.iter().find(|(_, ns)| !valid_user(&ns.user)) {
            return Err(corrupt(format!(
                "node {n}: login user {:?} is not a valid user name",
                ns.user
            )));
        }
        Ok(Some(st))
    }

    /// This directory's paths under the lab name the state records (commands that work
    /// from the state alone do not know the name).
    pub fn owner_paths(&self, paths: &LabPaths) -> Result<LabPaths, RunnerError> {
        Ok(LabPaths::new(&paths.lab_dir(), &self.lab))
    }

    /// Replace every lab-local path and identity in the state by the one `paths` derives.
    pub fn confine(&mut self, paths: &LabPaths) {
        self.id = paths.id.clone();
        self.lab_dir = paths.lab_dir();
        self.run_dir = paths.run_dir.clone();
        for (name, n) in &mut self.nodes {
            n.machine.id = format!("{}-{name}", paths.id);
            n.machine.hostname = name.clone();
            n.machine.dir = paths.machine_dir(name);
            n.machine.run_dir = paths.run_dir.clone();
        }
    }

    /// Refuse box files (disk, kernel, initrd, OVF, first-contact key) outside the box store:
    /// QEMU reads them and hands them to the guest, and `ssh` offers the key.
    pub fn check_box_paths(&self, paths: &LabPaths, boxes_root: &Path) -> Result<(), RunnerError> {
        for (name, n) in &self.nodes {
            let b = &n.machine.boot;
            let files = [
                Some(&b.disk),
                b.kernel.as_ref(),
                b.initrd.as_ref(),
                b.ovf.as_ref(),
            ]
            .into_iter()
            .chain([n.box_key.as_ref()])
            .flatten();
            for f in files {
                if !inside(f, boxes_root) {
                    return Err(RunnerError::CorruptState {
                        path: paths.state_file(),
                        message: format!(
                            "node {name}: {} is not inside the box store {}",
                            f.display(),
                            boxes_root.display()
                        ),
                    });
                }
            }
        }
        Ok(())
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
        let text = serde_json::to_string_pretty(self).map_err(|e| RunnerError::Io {
            what: "serialize",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&path, text.as_bytes()).map_err(|source| RunnerError::Io {
            what: "write",
            path,
            source,
        })
    }
}

/// A lab or node name as labctl uses it in paths and process names: letters, digits, `-`,
/// `_`, `.`, starting with a letter or digit (so never `.`, `..` or a path).
pub fn valid_label(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub use labctl_driver::boxes::valid_user;

/// Whether `path` is absolute, has no `..`, and lies under `root`.
fn inside(path: &Path, root: &Path) -> bool {
    use std::path::Component;
    path.is_absolute()
        && !path.components().any(|c| matches!(c, Component::ParentDir))
        && path.starts_with(root)
}

/// Refuse a lab state directory that is a symbolic link (it would lead writes elsewhere).
pub fn check_not_symlink(dir: &Path) -> Result<(), RunnerError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(RunnerError::UnsafeDir {
            path: dir.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// `labctl-<uid>` in the shared temporary directory on Unix. On Windows the temporary
/// directory is the user's own (`%LOCALAPPDATA%\Temp`): `labctl`.
#[cfg(unix)]
fn private_tmp_name() -> String {
    format!("labctl-{}", rustix::process::getuid().as_raw())
}

#[cfg(not(unix))]
fn private_tmp_name() -> String {
    "labctl".into()
}

/// Published values (secrets), `.labctl/values.json`, mode 0600.
pub fn load_values(paths: &LabPaths) -> BTreeMap<String, String> {
    std::fs::read_to_string(paths.values_file())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn save_values(paths: &LabPaths, values: &BTreeMap<String, String>) -> Result<(), RunnerError> {
    use labctl_driver::files::UnixMode as _;
    let path = paths.values_file();
    let text = serde_json::to_string_pretty(values).map_err(|e| RunnerError::Io {
        what: "serialize",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
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
            .unix_mode(0o600)
            .open(&tmp)
            .map_err(|e| io("write", e))?;
        f.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("write", e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))
}

/// Create `dir` (and parents) owned by this user with mode 0700, or refuse one that another
/// user owns or others can write: it holds the VMs' control sockets.
#[cfg(unix)]
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
    // symlink_metadata: a symbolic link planted by another user is refused, not followed.
    let meta = std::fs::symlink_metadata(dir).map_err(|source| RunnerError::Io {
        what: "inspect",
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir()
        || meta.uid() != rustix::process::getuid().as_raw()
        || meta.permissions().mode() & 0o022 != 0
    {
        return Err(RunnerError::UnsafeDir {
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Windows: create `dir` (and parents); it lies in the user's own temporary directory, and
/// there are no owner or mode bits to check. A link or file in its place is refused.
#[cfg(not(unix))]
pub fn ensure_private_dir(dir: &Path) -> Result<(), RunnerError> {
    std::fs::create_dir_all(dir).map_err(|source| RunnerError::Io {
        what: "create",
        path: dir.to_path_buf(),
        source,
    })?;
    let meta = std::fs::symlink_metadata(dir).map_err(|source| RunnerError::Io {
        what: "inspect",
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
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
        LabLock::acquire_dir(&paths.state_dir)
    }

    /// The lock of a state directory (`<dir>/lock`): a lab's `.labctl`, or a class's.
    pub fn acquire_dir(state_dir: &Path) -> Result<LabLock, RunnerError> {
        use labctl_driver::files::UnixMode as _;
        check_not_symlink(state_dir)?;
        // `.labctl/` holds the lab key, published secrets and step logs: this user's alone.
        std::fs::DirBuilder::new()
            .recursive(true)
            .unix_mode(0o700)
            .create(state_dir)
            .and_then(|()| labctl_driver::files::set_unix_mode(state_dir, 0o700))
            .map_err(|source| RunnerError::Io {
                what: "create",
                path: state_dir.to_path_buf(),
                source,
            })?;
        let path = state_dir.join("lock");
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
        // The holder's pid, only for the message another labctl shows while it waits; the
        // lock itself is the flock above, so a failed write here changes nothing.
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
    fn state_dir_is_private_and_symlinks_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let paths = LabPaths::new(d.path(), "t");
        drop(LabLock::acquire(&paths).expect("lock"));
        let mode = std::fs::metadata(&paths.state_dir)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let other = tempfile::tempdir().expect("tmp");
        let lab = d.path().join("sub");
        std::fs::create_dir_all(&lab).expect("mkdir");
        std::os::unix::fs::symlink(other.path(), lab.join(".labctl")).expect("symlink");
        let p2 = LabPaths::new(&lab, "t");
        assert!(matches!(
            LabLock::acquire(&p2),
            Err(RunnerError::UnsafeDir { .. })
        ));
        assert!(matches!(
            LabState::load(&p2),
            Err(RunnerError::UnsafeDir { .. })
        ));
        assert!(matches!(
            ensure_private_dir(&lab.join(".labctl")),
            Err(RunnerError::UnsafeDir { .. })
        ));
        assert_eq!(std::fs::read_dir(other.path()).expect("ls").count(), 0);
    }

    #[test]
    fn state_round_trips() {
        let d = tempfile::tempdir().expect("tmp");
        let paths = LabPaths::new(d.path(), "t");
        assert!(LabState::load(&paths).expect("load").is_none());
        let st = LabState::new("t", &paths, labctl_spec::Provider::Qemu, "b");
        st.save(&paths).expect("save");
        assert_eq!(LabState::load(&paths).expect("load"), Some(st));
        std::fs::write(paths.state_file(), "{not json").expect("w");
        assert!(matches!(
            LabState::load(&paths),
            Err(RunnerError::CorruptState { .. })
        ));
    }

    /// `provider`, `os` (and a node's `status`) were strings until they became enums: a
    /// state.json written by labctl before that (tests/data/state-v1.json, from a fake `up`
    /// of a three-node lab) still loads into the enums and is written back byte for byte.
    #[test]
    fn a_state_written_before_provider_and_os_were_enums_loads_and_saves_identically() {
        use labctl_spec::{Os, Provider};
        let old = include_str!("../tests/data/state-v1.json");
        let d = tempfile::tempdir().expect("tmp");
        let paths = LabPaths::new(d.path(), "t");
        ensure_private_dir(&paths.state_dir).expect("mkdir");
        std::fs::write(paths.state_file(), old).expect("write");
        let st = LabState::load_unchecked(&paths)
            .expect("an old state loads")
            .expect("state");
        assert_eq!(st.provider, Provider::Qemu);
        assert_eq!(st.nodes.keys().collect::<Vec<_>>(), ["m", "w1", "w2"]);
        assert!(st.nodes.values().all(|n| n.os == Os::Debian));
        st.save(&paths).expect("save");
        assert_eq!(
            std::fs::read_to_string(paths.state_file()).expect("read"),
            old
        );
        // The oldest shape, before `lab_dir`, `uri`, `ips`, `steps` and `golden`, loads too.
        let mut v: serde_json::Value = serde_json::from_str(old).expect("json");
        for key in ["lab_dir", "uri", "golden"] {
            v.as_object_mut().expect("object").remove(key);
        }
        for n in v["nodes"].as_object_mut().expect("nodes").values_mut() {
            let n = n.as_object_mut().expect("node");
            n.remove("ips");
            n.remove("steps");
        }
        let st: LabState = serde_json::from_value(v).expect("the oldest shape loads");
        assert_eq!(st.provider, Provider::Qemu);
        assert!(st.nodes.values().all(|n| n.steps.is_empty()));
        // Every provider and OS word of the file format maps to its enum and back.
        for p in [Provider::Qemu, Provider::Virtualbox, Provider::Libvirt] {
            let word = serde_json::to_string(&p).expect("ser");
            assert_eq!(word, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Provider>(&word).expect("de"), p);
        }
        for o in Os::ALL {
            let word = serde_json::to_string(&o).expect("ser");
            assert_eq!(word, format!("\"{}\"", o.as_str()));
            assert_eq!(serde_json::from_str::<Os>(&word).expect("de"), o);
        }
    }
}
