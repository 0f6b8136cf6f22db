//! Commands that work from the recorded state alone: status, ssh-config, halt, destroy.
//! They do not need lab.toml to be valid, so a broken lab can always be stopped.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use labctl_driver::{MachineStatus, StopMode, StopOutcome};
use serde::Serialize;

use crate::events::{EventKind, Notice, Phase, Reporter, emit, ms};
use crate::machines::{Env, driver_for_state, opener};
use crate::state::{LabLock, LabPaths, LabState};
use crate::{NodeFailure, NodesOp, RunnerError};

/// Where a lab's state is, from its directory and name.
pub fn lab_paths(lab_dir: &Path, name: &str) -> LabPaths {
    LabPaths::new(lab_dir, name)
}

/// One node in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: String,
    pub state: RunState,
    pub pid: Option<u32>,
    pub ssh: String,
    pub ips: Vec<String>,
    pub steps_done: usize,
}

/// Whether a node's machine runs, as `status` reports it (`"running"`, `"stopped"`,
/// `"not_created"` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Stopped,
    NotCreated,
}

impl RunState {
    /// The word `status --json` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
            RunState::NotCreated => "not_created",
        }
    }
}

/// `status`: state file plus one cheap liveness check per node; no SSH.
pub fn status(paths: &LabPaths, env: &Env) -> Result<Vec<NodeStatus>, RunnerError> {
    status_with(paths, env, &opener(env))
}

/// [`status`] with the driver given.
pub(crate) fn status_with(
    paths: &LabPaths,
    env: &Env,
    driver_for: crate::up::OpenDriver<'_>,
) -> Result<Vec<NodeStatus>, RunnerError> {
    let Some(st) = LabState::load_checked(paths, env)? else {
        return Ok(Vec::new());
    };
    let driver = driver_for(st.provider, st.uri.as_deref())?;
    Ok(st
        .nodes
        .iter()
        .map(|(name, n)| {
            let (state, pid) = match driver.status(&n.machine) {
                MachineStatus::Running { pid } => {
                    (RunState::Running, Some(pid).filter(|p| *p != 0))
                }
                MachineStatus::Stopped => (RunState::Stopped, None),
                MachineStatus::NotCreated => (RunState::NotCreated, None),
            };
            NodeStatus {
                name: name.clone(),
                role: n.role.clone(),
                state,
                pid,
                ssh: format!("127.0.0.1:{}", n.machine.ssh.host),
                ips: n.ips.clone(),
                steps_done: n.steps.len(),
            }
        })
        .collect())
}

/// What a command needs of the nodes it works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Booted (`ssh`, `provision`).
    Running,
    /// With a disk, running or not (`snapshot`, `reset` to the golden snapshot: a stopped
    /// node is snapshotted offline or booted into the snapshot).
    Created,
}

/// Refuse, naming each node and its state, when one of `nodes` (every recorded node when
/// empty) is not as `need` says. A node of the lab that the state does not record yet counts
/// as not created. Asks the driver (pidfile and `/proc` for QEMU), never SSH.
pub fn require_nodes(
    paths: &LabPaths,
    env: &Env,
    nodes: &[String],
    need: Need,
) -> Result<(), RunnerError> {
    let st = LabState::load(paths)?.ok_or(RunnerError::NotUp)?;
    let driver = driver_for_state(&st, env)?;
    let names: Vec<String> = if nodes.is_empty() {
        st.nodes.keys().cloned().collect()
    } else {
        nodes.to_vec()
    };
    check_nodes(&*driver, &st, &names, need)
}

/// [`require_nodes`] on loaded state (callers that hold the lab lock).
pub(crate) fn check_nodes(
    driver: &dyn labctl_driver::Driver,
    st: &LabState,
    names: &[String],
    need: Need,
) -> Result<(), RunnerError> {
    let bad: Vec<(String, MachineStatus)> = names
        .iter()
        .filter_map(|name| {
            let status = st
                .nodes
                .get(name)
                .map_or(MachineStatus::NotCreated, |n| driver.status(&n.machine));
            let ok = matches!(
                (need, &status),
                (_, MachineStatus::Running { .. }) | (Need::Created, MachineStatus::Stopped)
            );
            (!ok).then(|| (name.clone(), status))
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(RunnerError::NotRunning { nodes: bad })
    }
}

/// Stop nodes (all when `nodes` is empty), gracefully then by force after `timeout`.
/// The lab switch stops with the last node. Every node is tried; the ones that could not be
/// stopped come back together in [`RunnerError::Nodes`], each with its own error.
pub fn halt(
    paths: &LabPaths,
    env: &Env,
    nodes: &[String],
    timeout: Duration,
    reporter: Arc<dyn Reporter>,
) -> Result<(), RunnerError> {
    halt_with(paths, env, nodes, timeout, reporter, &opener(env))
}

/// [`halt`] with the driver given.
pub(crate) fn halt_with(
    paths: &LabPaths,
    env: &Env,
    nodes: &[String],
    timeout: Duration,
    reporter: Arc<dyn Reporter>,
    driver_for: crate::up::OpenDriver<'_>,
) -> Result<(), RunnerError> {
    let _lock = LabLock::acquire(paths)?;
    let st = LabState::load_checked(paths, env)?.ok_or(RunnerError::NotUp)?;
    let driver = driver_for(st.provider, st.uri.as_deref())?;
    let names = st.select(nodes)?;
    let results: Vec<Result<(), RunnerError>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let n = &st.nodes[name];
                let driver = driver.clone();
                let reporter = reporter.clone();
                s.spawn(move || {
                    if matches!(driver.status(&n.machine), MachineStatus::Running { .. }) {
                        emit(
                            &*reporter,
                            name,
                            EventKind::Phase {
                                phase: Phase::Stopping,
                            },
                        );
                    }
                    let outcome = driver.stop(&n.machine, StopMode::Graceful(timeout))?;
                    let notice = match outcome {
                        StopOutcome::AlreadyStopped => Notice::WasNotRunning,
                        StopOutcome::Graceful(d) => Notice::PoweredOff { ms: ms(d) },
                        StopOutcome::Forced(why) => Notice::ForcedOff { why },
                    };
                    emit(&*reporter, name, EventKind::Notice { notice });
                    emit(
                        &*reporter,
                        name,
                        EventKind::Phase {
                            phase: Phase::Stopped,
                        },
                    );
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(joined).collect()
    });
    let failures = failures(&names, results);
    let any_running = st
        .nodes
        .values()
        .any(|n| matches!(driver.status(&n.machine), MachineStatus::Running { .. }));
    if !any_running {
        driver.networks_down(&st.run_dir, &st.networks)?;
        // The last lab using the bundle server stops it.
        crate::bundle::release(env, &st.id)?;
    }
    crate::nodes_result(NodesOp::Stop, names.len(), failures)
}

/// A node thread's result; a thread that panicked is a bug, reported as such (never dropped).
fn joined<T>(
    h: std::thread::ScopedJoinHandle<'_, Result<T, RunnerError>>,
) -> Result<T, RunnerError> {
    h.join().unwrap_or(Err(RunnerError::Internal {
        what: "a node thread panicked",
    }))
}

/// The failed ones of `results` (one per name, in the same order), with their node.
fn failures<T>(names: &[String], results: Vec<Result<T, RunnerError>>) -> Vec<NodeFailure> {
    names
        .iter()
        .zip(results)
        .filter_map(|(node, r)| {
            r.err().map(|error| NodeFailure {
                node: node.clone(),
                error,
            })
        })
        .collect()
}

/// Remove nodes (all when empty): VMs, disks, sockets; with all nodes, the switch and `.labctl/`
/// too. Boxes stay.
pub fn destroy(
    paths: &LabPaths,
    env: &Env,
    nodes: &[String],
    reporter: Arc<dyn Reporter>,
) -> Result<(), RunnerError> {
    destroy_with(paths, env, nodes, reporter, &opener(env))
}

/// [`destroy`] with the driver given.
pub(crate) fn destroy_with(
    paths: &LabPaths,
    env: &Env,
    nodes: &[String],
    reporter: Arc<dyn Reporter>,
    driver_for: crate::up::OpenDriver<'_>,
) -> Result<(), RunnerError> {
    let lock = LabLock::acquire(paths)?;
    let Some(mut st) = LabState::load_checked(paths, env)? else {
        drop(lock);
        // Nothing recorded, but what is left of `.labctl/` (keys, lock) goes: propagated,
        // so `destroy` never says done while the directory stays.
        return match std::fs::remove_dir_all(&paths.state_dir) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(RunnerError::Io {
                what: "remove",
                path: paths.state_dir.clone(),
                source,
            }),
            _ => Ok(()),
        };
    };
    let driver = driver_for(st.provider, st.uri.as_deref())?;
    let names = st.select(nodes)?;
    let started = Instant::now();
    let results: Vec<Result<(), RunnerError>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let n = &st.nodes[name];
                let driver = driver.clone();
                let reporter = reporter.clone();
                s.spawn(move || {
                    driver.destroy(&n.machine)?;
                    emit(
                        &*reporter,
                        name,
                        EventKind::Phase {
                            phase: Phase::Destroyed,
                        },
                    );
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(joined).collect()
    });
    for (name, r) in names.iter().zip(&results) {
        if r.is_ok() {
            st.nodes.remove(name);
            // Its disk held its part of the golden snapshot.
            if st.golden.as_ref().is_some_and(|g| g.nodes.contains(name)) {
                st.golden = None;
            }
            // Logs only (not state): a leftover log directory is overwritten by the next up.
            let _ = std::fs::remove_dir_all(paths.log_dir(name));
        }
    }
    let failures = failures(&names, results);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "destroyed machines"
    );
    if st.nodes.is_empty() {
        driver.networks_down(&st.run_dir, &st.networks)?;
        crate::bundle::release(env, &st.id)?;
        // Sockets of machines that are gone (not state): nothing reads them again.
        let _ = std::fs::remove_dir_all(&st.run_dir);
        // The lab is gone by now: failing `destroy` over its registry entry would report a
        // failure that did not happen. A stale entry is harmless (readers skip labs without
        // state, `list` drops it), so a notice says so instead.
        if let Err(e) = crate::registry::unregister(env, paths) {
            let notice = crate::registry::not_saved(env, &e);
            crate::events::emit_lab(&*reporter, EventKind::Notice { notice });
        }
        std::fs::remove_dir_all(&paths.state_dir).map_err(|source| RunnerError::Io {
            what: "remove",
            path: paths.state_dir.clone(),
            source,
        })?;
        drop(lock);
    } else {
        st.save(paths)?;
    }
    crate::nodes_result(NodesOp::Destroy, names.len(), failures)
}

/// `destroy --forget`: drop a state that belongs to another directory (a copied lab) by
/// removing this lab's `.labctl/` and nothing else. No process is signalled and no file
/// outside this directory is touched; the copy's own VMs are then made by `up`.
pub fn forget(paths: &LabPaths, env: &Env) -> Result<(), RunnerError> {
    crate::state::check_not_symlink(&paths.state_dir)?;
    let lock = LabLock::acquire(paths)?;
    match LabState::load(paths) {
        Err(RunnerError::ForeignState { .. }) | Err(RunnerError::CorruptState { .. }) => {}
        Ok(Some(_)) => return Err(RunnerError::NotForeign),
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    drop(lock);
    // Propagated: nothing is removed yet, so `destroy --forget` can simply be run again.
    crate::registry::unregister(env, paths)?;
    std::fs::remove_dir_all(&paths.state_dir).map_err(|source| RunnerError::Io {
        what: "remove",
        path: paths.state_dir.clone(),
        source,
    })
}

/// `adopt`: make this directory the home of a lab that was moved here. Refused when the lab
/// is still in its old place (this is a copy) or one of its VMs still runs from there.
/// The nodes keep their disks and recorded steps; their guest configuration is redone on
/// the next `up` (MAC addresses and machine ids derive from the lab's place), and the golden
/// snapshot is dropped. Returns false when the state already belonged here.
pub fn adopt(paths: &LabPaths, env: &Env) -> Result<bool, RunnerError> {
    let _lock = LabLock::acquire(paths)?;
    let mut st = LabState::load_unchecked(paths)?.ok_or(RunnerError::NotUp)?;
    let own = st.owner_paths(paths)?;
    match LabState::load(paths) {
        Ok(_) => {
            // Finishes an `adopt` whose registry write failed.
            crate::registry::register(env, &own, &st.lab)?;
            return Ok(false);
        }
        Err(RunnerError::ForeignState { .. }) => {}
        Err(e) => return Err(e),
    }
    st.check_box_paths(paths, &env.boxes().root)?;
    let old = st.lab_dir.clone();
    if !old.as_os_str().is_empty() {
        let old_paths = LabPaths::new(&old, &st.lab);
        if let Ok(Some(there)) = LabState::load_unchecked(&old_paths)
            && there.id == st.id
        {
            return Err(RunnerError::CannotAdopt {
                reason: crate::AdoptRefusal::StillThere { old },
            });
        }
    }
    // A VM started from the old place carries the old id in its command line.
    let driver = driver_for_state(&st, env)?;
    for (name, n) in &st.nodes {
        let mut m = n.machine.clone();
        m.dir = own.machine_dir(name);
        m.run_dir = n.machine.run_dir.clone();
        if let MachineStatus::Running { pid } = driver.status(&m) {
            return Err(RunnerError::CannotAdopt {
                reason: crate::AdoptRefusal::StillRunning {
                    node: name.clone(),
                    pid,
                },
            });
        }
    }
    let old_id_paths = LabPaths::new(&old, &st.lab);
    st.confine(&own);
    for n in st.nodes.values_mut() {
        n.configured = false;
    }
    st.golden = None;
    st.save(&own)?;
    // Propagated: `box remove` relies on the registry to refuse boxes in use. Run again,
    // `adopt` finds the state already here and registers it (below).
    if !old.as_os_str().is_empty() {
        crate::registry::unregister(env, &old_id_paths)?;
    }
    crate::registry::register(env, &own, &st.lab)?;
    Ok(true)
}

/// Published values (secrets) of the lab.
pub fn values(paths: &LabPaths) -> std::collections::BTreeMap<String, String> {
    crate::state::load_values(paths)
}

/// The text of the file `path` on the first of `nodes` that is running and can read it (as
/// root, over the lab's SSH key), with that node's name: e.g. `/etc/kubernetes/admin.conf`
/// for `labctl kubeconfig`.
pub fn read_guest_file(
    paths: &LabPaths,
    env: &Env,
    nodes: &[String],
    path: &str,
) -> Result<(String, String), RunnerError> {
    let st = LabState::load(paths)?.ok_or(RunnerError::NotUp)?;
    let driver = driver_for_state(&st, env)?;
    let command = format!("cat {}", labctl_spec::shell_quote(path));
    let mut last = None;
    let mut down = Vec::new();
    for node in nodes {
        let Some(n) = st.nodes.get(node) else {
            down.push((node.clone(), MachineStatus::NotCreated));
            continue;
        };
        let status = driver.status(&n.machine);
        if !matches!(status, MachineStatus::Running { .. }) {
            down.push((node.clone(), status));
            continue;
        }
        let read = crate::reset::session(
            paths,
            &st,
            crate::machines::effective_uri(env, &st),
            node,
            Duration::from_secs(30),
        )
        .and_then(|sess| {
            Ok(sess.run(
                &format!("{}{command}", crate::provision::as_root(&n.user)),
                Duration::from_secs(30),
            )?)
        });
        match read {
            Ok(text) => return Ok((node.clone(), text)),
            Err(e) => last = Some((node.clone(), e.to_string())),
        }
    }
    // None of them is running: the binary says how to start them.
    let Some((node, message)) = last else {
        return Err(RunnerError::NotRunning { nodes: down });
    };
    Err(RunnerError::Hook {
        node,
        what: format!("reading {path}"),
        message,
    })
}
