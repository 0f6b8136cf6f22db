//! The lab's boxes, verified file by file, and what its nodes need: memory, disk and ports.

use std::path::{Path, PathBuf};

use labctl_driver::MachineStatus;
use labctl_spec::Lab;

use super::{BoxFile, Finding, NODE_DISK_MARGIN_MB, PortUse};
use crate::machines::{self, Env};
use crate::state::{LabPaths, LabState};

/// The lab's box (plus every installed box without a lab), each verified file by file.
pub(super) fn boxes(lab: Option<&Lab>, env: &Env) -> Vec<Finding> {
    let store = env.boxes();
    let built = env.cache_dir.join("boxes").join("labctl-debian-12.box");
    let mut names: Vec<String> = match lab {
        Some(l) => vec![l.box_name.clone()],
        None => store.list().into_iter().map(|b| b.name).collect(),
    };
    if !names.iter().any(|n| n == labctl_spec::DEFAULT_BOX) && lab.is_none() {
        names.insert(0, labctl_spec::DEFAULT_BOX.to_string());
    }
    names
        .into_iter()
        .map(|name| {
            let default_build = (name == labctl_spec::DEFAULT_BOX).then(|| built.clone());
            match store.get(&name) {
                Ok(meta) => Finding::Box {
                    files: store
                        .verify(&meta)
                        .into_iter()
                        .map(|(file, check)| BoxFile { file, check })
                        .collect(),
                    name,
                    installed: true,
                    built: None,
                    default_build,
                },
                Err(_) => Finding::Box {
                    built: default_build.clone().filter(|p| p.is_file()),
                    name,
                    installed: false,
                    default_build,
                    files: Vec::new(),
                },
            }
        })
        .collect()
}

/// Memory, disk and ports against the lab's nodes that are not running yet.
pub(super) fn needs(lab: Option<&Lab>, env: &Env) -> (Finding, Finding, Option<Finding>) {
    let available_mb = mem_available_mb();
    let Some(lab) = lab else {
        let path = existing_ancestor(&env.data_dir);
        return (
            Finding::Memory {
                available_mb,
                needed_mb: 0,
                nodes: 0,
            },
            Finding::Disk {
                available_mb: disk_available_mb(&path),
                path,
                needed_mb: 0,
                nodes: 0,
                box_mb: 0,
            },
            None,
        );
    };
    let paths = LabPaths::new(&lab.dir, &lab.name);
    let st = LabState::load(&paths).ok().flatten();
    let driver = st
        .as_ref()
        .and_then(|s| machines::driver_for_state(s, env).ok());
    let status = |name: &str| -> MachineStatus {
        match (&st, &driver) {
            (Some(s), Some(d)) => s
                .nodes
                .get(name)
                .map_or(MachineStatus::NotCreated, |n| d.status(&n.machine)),
            _ => MachineStatus::NotCreated,
        }
    };
    let mut needed_mb = 0u64;
    let mut to_boot = 0usize;
    let mut to_create = 0usize;
    let mut checked = 0usize;
    let mut taken = Vec::new();
    for node in &lab.nodes {
        let s = status(&node.name);
        if matches!(s, MachineStatus::Running { .. }) {
            continue;
        }
        to_boot += 1;
        needed_mb += u64::from(node.memory_mb);
        if s == MachineStatus::NotCreated {
            to_create += 1;
        }
        // The ports `up` will ask for: recorded ones (they may have been moved), else the lab's.
        let recorded = st.as_ref().and_then(|s| s.nodes.get(&node.name));
        let mut ports = vec![PortUse {
            node: node.name.clone(),
            host: recorded.map_or(node.ssh_port, |r| r.machine.ssh.host),
            guest: 22,
        }];
        ports.extend(node.forwards.iter().enumerate().map(|(i, f)| {
            PortUse {
                node: node.name.clone(),
                host: recorded
                    .and_then(|r| r.machine.forwards.get(i))
                    .filter(|p| p.guest == f.guest)
                    .map_or(f.host, |p| p.host),
                guest: f.guest,
            }
        }));
        for p in ports {
            checked += 1;
            if !machines::port_free(p.host) {
                taken.push(p);
            }
        }
    }
    let box_mb = match env.boxes().get(&lab.box_name) {
        Ok(_) => 0,
        Err(_) => {
            let built = env.cache_dir.join("boxes").join("labctl-debian-12.box");
            std::fs::metadata(built).map_or(0, |m| m.len().div_ceil(1 << 20))
        }
    };
    let path = existing_ancestor(&paths.state_dir);
    (
        Finding::Memory {
            available_mb,
            needed_mb,
            nodes: to_boot,
        },
        Finding::Disk {
            available_mb: disk_available_mb(&path),
            path,
            needed_mb: box_mb + to_create as u64 * NODE_DISK_MARGIN_MB,
            nodes: to_create,
            box_mb,
        },
        Some(Finding::Ports { checked, taken }),
    )
}

pub(super) fn existing_ancestor(p: &Path) -> PathBuf {
    p.ancestors()
        .find(|a| a.exists())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// `MemAvailable` from /proc/meminfo, in MiB.
fn mem_available_mb() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

pub(super) fn parse_meminfo(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

/// Space an unprivileged user can use on the filesystem holding `path`, in MiB. Unknown on
/// Windows (std has no statvfs counterpart).
#[cfg(unix)]
pub(super) fn disk_available_mb(path: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize) >> 20)
}

#[cfg(not(unix))]
pub(super) fn disk_available_mb(_path: &Path) -> Option<u64> {
    None
}
