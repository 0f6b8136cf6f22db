//! The registry of labs on this host (`<data_dir>/labs.json`): `labctl list`, `--lab NAME`
//! from anywhere, and the boxes that registered labs use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use labctl_driver::MachineStatus;
use serde::{Deserialize, Serialize};

use crate::RunnerError;
use crate::events::Notice;
use crate::machines::{Env, driver_for_state};
use crate::state::{LabPaths, LabState};

/// One lab on this host, for `labctl list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabEntry {
    pub name: String,
    pub dir: PathBuf,
}

/// A row of `labctl list`.
#[derive(Debug, Clone, Serialize)]
pub struct LabListing {
    pub name: String,
    pub dir: PathBuf,
    pub provider: labctl_spec::Provider,
    pub nodes: usize,
    pub running: usize,
    pub cpus: u32,
    pub memory_mb: u32,
    pub golden: bool,
}

fn registry_path(env: &Env) -> PathBuf {
    env.data_dir.join("labs.json")
}

/// The registry; empty when there is none. An unreadable or corrupt registry reads as empty
/// for lookups (`find_lab`, `list`), but [`update`] refuses to overwrite it.
fn read_registry(env: &Env) -> BTreeMap<String, LabEntry> {
    load_registry(env).unwrap_or_default()
}

fn load_registry(env: &Env) -> Result<BTreeMap<String, LabEntry>, RunnerError> {
    let path = registry_path(env);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(RunnerError::Io {
                what: "read",
                path,
                source,
            });
        }
    };
    serde_json::from_str(&text).map_err(|e| RunnerError::CorruptRegistry {
        path,
        message: e.to_string(),
    })
}

fn write_registry(env: &Env, reg: &BTreeMap<String, LabEntry>) -> Result<(), RunnerError> {
    let path = registry_path(env);
    let text = serde_json::to_string_pretty(reg).map_err(|e| RunnerError::CorruptRegistry {
        path: path.clone(),
        message: e.to_string(),
    })?;
    labctl_driver::boxes::write_atomic(&path, text.as_bytes()).map_err(|source| RunnerError::Io {
        what: "write",
        path,
        source,
    })
}

/// Read, change and write the registry, under `labs.json.lock`: labs brought up at once
/// (`labctl class up` runs several per host) must not drop each other's entries. A registry
/// that exists but cannot be read is not overwritten (that would forget every other lab).
fn update(env: &Env, f: impl FnOnce(&mut BTreeMap<String, LabEntry>)) -> Result<(), RunnerError> {
    let io = |what, path: PathBuf| move |source| RunnerError::Io { what, path, source };
    std::fs::create_dir_all(&env.data_dir).map_err(io("create", env.data_dir.clone()))?;
    let lock_path = env.data_dir.join("labs.json.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", lock_path.clone()))?;
    lock.lock().map_err(io("lock", lock_path))?;
    let mut reg = load_registry(env)?;
    f(&mut reg);
    write_registry(env, &reg)
}

/// Record a lab in the host's registry (by its state dir).
pub(crate) fn register(env: &Env, paths: &LabPaths, name: &str) -> Result<(), RunnerError> {
    update(env, |reg| {
        reg.insert(
            paths.id.clone(),
            LabEntry {
                name: name.to_string(),
                dir: paths.lab_dir(),
            },
        );
    })
}

/// Forget a destroyed lab.
pub(crate) fn unregister(env: &Env, paths: &LabPaths) -> Result<(), RunnerError> {
    let dir = paths.lab_dir();
    update(env, |reg| reg.retain(|_, e| e.dir != dir))
}

/// A registry write that must not fail the command (the lab itself is done): the notice
/// that says so. A stale entry is harmless: readers skip labs whose state is gone.
pub(crate) fn not_saved(env: &Env, e: &RunnerError) -> Notice {
    Notice::RegistryNotSaved {
        path: registry_path(env),
        error: e.to_string(),
    }
}

/// The directory of a registered lab, by name (for `--lab NAME` from anywhere).
pub fn find_lab(env: &Env, name: &str) -> Vec<PathBuf> {
    read_registry(env)
        .into_values()
        .filter(|e| e.name == name)
        .map(|e| e.dir)
        .collect()
}

/// Registered labs with nodes made from box `name`: (lab name, lab directory, nodes). A box
/// in use must not be removed or replaced: every node's overlay points at its disk.
pub fn labs_using_box(env: &Env, name: &str) -> Vec<(String, PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    for e in read_registry(env).into_values() {
        let paths = LabPaths::new(&e.dir, &e.name);
        let Ok(Some(st)) = LabState::load(&paths) else {
            continue;
        };
        if st.box_name == name && !st.nodes.is_empty() {
            out.push((e.name, e.dir, st.nodes.keys().cloned().collect()));
        }
    }
    out.sort();
    out
}

/// Refuse to remove or replace a box that registered labs use.
pub fn check_box_unused(env: &Env, name: &str) -> Result<(), RunnerError> {
    let labs = labs_using_box(env, name);
    if labs.is_empty() {
        Ok(())
    } else {
        Err(RunnerError::BoxInUse {
            name: name.to_string(),
            labs,
        })
    }
}

/// `box remove`: refuse while a registered lab uses the box, then drop what drivers keep for
/// it on this host (VirtualBox's imported master VM), then the box itself. The names of the
/// dropped driver objects.
pub fn remove_box(env: &Env, name: &str) -> Result<Vec<String>, RunnerError> {
    let dropped = release_box(env, name)?;
    env.boxes().remove(name)?;
    Ok(dropped)
}

/// Before a box is removed or replaced (`box add --force`): refuse while a registered lab
/// uses it, then drop what drivers keep for it on this host (VirtualBox's imported master VM,
/// which a replaced box's clones would otherwise still be linked to). The dropped names.
pub fn release_box(env: &Env, name: &str) -> Result<Vec<String>, RunnerError> {
    check_box_unused(env, name)?;
    let store = env.boxes();
    store.get(name)?;
    let host = labctl_driver::HostEnv {
        data_dir: env.data_dir.clone(),
        cache_dir: env.cache_dir.clone(),
        ..labctl_driver::HostEnv::default()
    };
    Ok(labctl_driver::forget_box(&store.dir(name), &host)?)
}

/// Every lab on this host with its state and resources. Labs whose state is gone drop out of
/// the registry; when that cannot be saved, the notice says so (`labctl list` still answers).
pub fn list(env: &Env) -> (Vec<LabListing>, Option<Notice>) {
    let reg = read_registry(env);
    let mut out = Vec::new();
    let mut gone = Vec::new();
    for (id, e) in reg {
        let paths = LabPaths::new(&e.dir, &e.name);
        let st = match LabState::load_checked(&paths, env) {
            Ok(Some(st)) => st,
            Ok(None) => {
                gone.push(id);
                continue;
            }
            // Unreadable or not this directory's: not listed, but kept registered.
            Err(_) => continue,
        };
        let running = driver_for_state(&st, env).map_or(0, |d| {
            st.nodes
                .values()
                .filter(|n| matches!(d.status(&n.machine), MachineStatus::Running { .. }))
                .count()
        });
        out.push(LabListing {
            name: e.name,
            dir: e.dir,
            provider: st.provider,
            nodes: st.nodes.len(),
            running,
            cpus: st.nodes.values().map(|n| n.machine.cpus).sum(),
            memory_mb: st.nodes.values().map(|n| n.machine.memory_mb).sum(),
            golden: st.golden.is_some(),
        });
    }
    let notice = if gone.is_empty() {
        None
    } else {
        update(env, |reg| reg.retain(|id, _| !gone.contains(id)))
            .err()
            .map(|e| not_saved(env, &e))
    };
    (out, notice)
}
