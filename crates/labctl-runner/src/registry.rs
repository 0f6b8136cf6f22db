//! The registry of labs on this host (`<data_dir>/labs.json`): `labctl list`, `--lab NAME`
//! from anywhere, and the boxes that registered labs use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use labctl_driver::MachineStatus;
use serde::{Deserialize, Serialize};

use crate::RunnerError;
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
    pub provider: String,
    pub nodes: usize,
    pub running: usize,
    pub cpus: u32,
    pub memory_mb: u32,
    pub golden: bool,
}

fn registry_path(env: &Env) -> PathBuf {
    env.data_dir.join("labs.json")
}

fn read_registry(env: &Env) -> BTreeMap<String, LabEntry> {
    std::fs::read_to_string(registry_path(env))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn write_registry(env: &Env, reg: &BTreeMap<String, LabEntry>) {
    let text = serde_json::to_string_pretty(reg).unwrap_or_default();
    let _ = labctl_driver::boxes::write_atomic(&registry_path(env), text.as_bytes());
}

/// Record a lab in the host's registry (by its state dir).
pub(crate) fn register(env: &Env, paths: &LabPaths, name: &str) {
    let mut reg = read_registry(env);
    let dir = paths.lab_dir();
    reg.insert(
        paths.id.clone(),
        LabEntry {
            name: name.to_string(),
            dir,
        },
    );
    write_registry(env, &reg);
}

/// Forget a destroyed lab.
pub(crate) fn unregister(env: &Env, paths: &LabPaths) {
    let mut reg = read_registry(env);
    let dir = paths.lab_dir();
    reg.retain(|_, e| e.dir != dir);
    write_registry(env, &reg);
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

/// Every lab on this host with its state and resources; labs whose state is gone drop out.
pub fn list(env: &Env) -> Vec<LabListing> {
    let reg = read_registry(env);
    let mut out = Vec::new();
    let mut keep = BTreeMap::new();
    for (id, e) in reg {
        let paths = LabPaths::new(&e.dir, &e.name);
        let Ok(Some(st)) = LabState::load_checked(&paths, env) else {
            continue;
        };
        keep.insert(id, e.clone());
        let running = driver_for_state(&st, env).map_or(0, |d| {
            st.nodes
                .values()
                .filter(|n| matches!(d.status(&n.machine), MachineStatus::Running { .. }))
                .count()
        });
        out.push(LabListing {
            name: e.name,
            dir: e.dir,
            provider: st.provider.clone(),
            nodes: st.nodes.len(),
            running,
            cpus: st.nodes.values().map(|n| n.machine.cpus).sum(),
            memory_mb: st.nodes.values().map(|n| n.machine.memory_mb).sum(),
            golden: st.golden.is_some(),
        });
    }
    write_registry(env, &keep);
    out
}
