//! Snapshots, the golden state, and `reset` of nodes or the whole lab.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use labctl_driver::{Driver, MachineStatus, SnapshotOp};
use labctl_spec::{Graph, Lab};
use labctl_ssh::{Session, Target};

use crate::events::{EventKind, Notice, Reporter, emit, emit_lab, ms};
use crate::guest::{Connect, Guest, Ssh};
use crate::machines::{Env, driver_for_state, effective_uri, opener};
use crate::provision::as_root;
use crate::state::{Golden, LabLock, LabPaths, LabState, load_values, values_hash};
use crate::up::{OpenDriver, Selection, UpOptions, UpSummary, up_with};
use crate::{NodeFailure, NodesOp, RunnerError};

mod hooks;
pub(crate) use hooks::hook_nodes;
use hooks::{run_check, run_hook};

/// The golden snapshot's name.
pub const GOLDEN: &str = "provisioned";

/// A snapshot command: the driver's own operation (one enum for both layers).
pub use labctl_driver::SnapshotOp as SnapshotCmd;

fn running(driver: &dyn Driver, st: &LabState, name: &str) -> bool {
    matches!(
        driver.status(&st.nodes[name].machine),
        MachineStatus::Running { .. }
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Run `f` on every node at once. Every node finishes; those that failed come back together
/// in [`RunnerError::Nodes`] (`op`), each with its own error.
fn each<F>(op: NodesOp, names: &[String], f: F) -> Result<Vec<(String, Vec<String>)>, RunnerError>
where
    F: Fn(&str) -> Result<Vec<String>, RunnerError> + Sync,
{
    let results: Vec<(String, Result<Vec<String>, RunnerError>)> = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| (n.clone(), s.spawn(|| f(n))))
            .collect();
        hs.into_iter()
            .map(|(n, h)| {
                (
                    n,
                    h.join().unwrap_or(Err(RunnerError::Internal {
                        what: "a node thread panicked",
                    })),
                )
            })
            .collect()
    });
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for (node, r) in results {
        match r {
            Ok(v) => out.push((node, v)),
            Err(error) => failures.push(NodeFailure { node, error }),
        }
    }
    crate::nodes_result(op, names.len(), failures)?;
    Ok(out)
}

/// Save or restore a snapshot on several nodes so that they agree with each other: running
/// nodes are paused together, saved or loaded, then resumed together; stopped nodes use the
/// disk (save) or boot straight into the saved state (restore).
pub(crate) fn snapshot_locked(
    driver: &dyn Driver,
    st: &LabState,
    names: &[String],
    cmd: &SnapshotCmd,
) -> Result<Vec<(String, Vec<String>)>, RunnerError> {
    let live: Vec<String> = names
        .iter()
        .filter(|n| running(driver, st, n))
        .cloned()
        .collect();
    if matches!(cmd, SnapshotCmd::List | SnapshotCmd::Delete(_)) {
        return each(NodesOp::Snapshot, names, |n| {
            Ok(driver.snapshot(&st.nodes[n].machine, cmd)?)
        });
    }
    each(NodesOp::Snapshot, &live, |n| {
        Ok(driver
            .pause(&st.nodes[n].machine, true)
            .map(|()| Vec::new())?)
    })?;
    let result = each(NodesOp::Snapshot, names, |n| {
        let m = &st.nodes[n].machine;
        match (cmd, live.contains(&n.to_string())) {
            (SnapshotOp::Restore(name), false) => {
                driver.start_from_snapshot(m, name)?;
                Ok(Vec::new())
            }
            _ => Ok(driver.snapshot(m, cmd)?),
        }
    });
    let resumed = each(NodesOp::Snapshot, &live, |n| {
        Ok(driver
            .pause(&st.nodes[n].machine, false)
            .map(|()| Vec::new())?)
    });
    let out = result?;
    resumed?;
    Ok(out)
}

/// `labctl snapshot`: save, restore, delete or list on some nodes (all when empty).
pub fn snapshot(
    paths: &LabPaths,
    env: &Env,
    nodes: &[String],
    cmd: &SnapshotCmd,
    reporter: Arc<dyn Reporter>,
) -> Result<Vec<(String, Vec<String>)>, RunnerError> {
    let _lock = LabLock::acquire(paths)?;
    let mut st = LabState::load_checked(paths, env)?.ok_or(RunnerError::NotUp)?;
    let driver = driver_for_state(&st, env)?;
    let uri = effective_uri(env, &st).map(str::to_string);
    let names = st.select(nodes)?;
    crate::ops::check_nodes(&*driver, &st, &names, crate::ops::Need::Created)?;
    let started = Instant::now();
    let out = snapshot_locked(&*driver, &st, &names, cmd)?;
    if let SnapshotCmd::Restore(_) = cmd {
        fix_clocks(&Ssh, paths, &st, uri.as_deref(), &names, &*reporter)?;
    }
    if let (SnapshotCmd::Delete(name), Some(g)) = (cmd, &st.golden)
        && *name == g.name
    {
        st.golden = None;
        st.save(paths)?;
    }
    if !matches!(cmd, SnapshotCmd::List) {
        emit_lab(
            &*reporter,
            EventKind::Notice {
                notice: Notice::SnapshotDone {
                    nodes: names.len(),
                    ms: ms(started.elapsed()),
                },
            },
        );
    }
    Ok(out)
}

/// The SSH target of a node of a lab that is up (through its hypervisor host when remote).
/// `uri` is the lab's effective libvirt URI (`machines::effective_uri`), as its driver's.
fn node_target(
    paths: &LabPaths,
    st: &LabState,
    uri: Option<&str>,
    node: &str,
) -> Result<Target, RunnerError> {
    let n = &st.nodes[node];
    Ok(crate::route::target(
        node,
        &crate::route::route(st.provider.as_str(), uri, n.machine.ssh.host)?,
        &n.user,
        vec![paths.key()],
        paths.host_key_check(node, false),
    ))
}

pub(crate) fn session(
    paths: &LabPaths,
    st: &LabState,
    uri: Option<&str>,
    node: &str,
    deadline: Duration,
) -> Result<Session, RunnerError> {
    let target = node_target(paths, st, uri, node)?;
    let never = AtomicBool::new(false);
    Ok(Session::wait_ready(&target, deadline, &never, &|| Ok(()))?)
}

/// Log in to a node through `connect` (production: SSH, as [`session`]).
fn login(
    connect: &dyn Connect,
    paths: &LabPaths,
    st: &LabState,
    uri: Option<&str>,
    node: &str,
    deadline: Duration,
) -> Result<Box<dyn Guest>, RunnerError> {
    let target = node_target(paths, st, uri, node)?;
    let never = AtomicBool::new(false);
    Ok(connect.wait_ready(&target, deadline, &never, &|| Ok(()))?)
}

/// After a restore the guests' clocks are the snapshot's: set them to the host's.
fn fix_clocks(
    connect: &dyn Connect,
    paths: &LabPaths,
    st: &LabState,
    uri: Option<&str>,
    names: &[String],
    reporter: &dyn Reporter,
) -> Result<(), RunnerError> {
    each(NodesOp::SetClock, names, |n| {
        let s = login(connect, paths, st, uri, n, Duration::from_secs(120))?;
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        s.run(
            &format!(
                "{}date -u -s @{epoch} >/dev/null",
                as_root(&st.nodes[n].user)
            ),
            Duration::from_secs(30),
        )?;
        emit(
            reporter,
            n,
            EventKind::Notice {
                notice: Notice::ClockSet,
            },
        );
        Ok(Vec::new())
    })?;
    Ok(())
}

/// Save the golden snapshot of the whole lab (called with the lock held).
pub(crate) fn save_golden(
    paths: &LabPaths,
    st: &mut LabState,
    driver: &dyn Driver,
    reporter: &dyn Reporter,
) -> Result<(), RunnerError> {
    let names: Vec<String> = st.nodes.keys().cloned().collect();
    let started = Instant::now();
    snapshot_locked(driver, st, &names, &SnapshotCmd::Save(GOLDEN.into()))?;
    st.golden = Some(Golden {
        name: GOLDEN.into(),
        taken_at: now_secs(),
        values_hash: values_hash(&load_values(paths)),
        nodes: names,
    });
    st.save(paths)?;
    emit_lab(
        reporter,
        EventKind::Notice {
            notice: Notice::GoldenSaved {
                name: GOLDEN.to_string(),
                ms: ms(started.elapsed()),
            },
        },
    );
    Ok(())
}

/// Options of `reset`.
#[derive(Debug, Clone, Default)]
pub struct ResetOptions {
    /// Nodes to reset; with `all`, every node.
    pub nodes: Vec<String>,
    /// New disk from the box and the node's steps again, instead of the golden snapshot.
    pub rebuild: bool,
    pub all: bool,
}

/// What `reset` did.
#[derive(Debug, Clone, Default)]
pub struct ResetSummary {
    /// Nodes brought back, in order.
    pub nodes: Vec<NodeReset>,
    pub up: Option<UpSummary>,
}

/// One node that `reset` brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReset {
    pub node: String,
    pub how: ResetHow,
    /// Since the start of `reset`.
    pub elapsed_ms: u64,
}

/// How a node was reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetHow {
    /// Restored from the golden snapshot.
    Golden,
    /// Disk removed and the node built again from the box.
    Rebuilt,
}

/// `labctl reset`: bring nodes (or the whole lab) back to their golden state, or rebuild them.
pub fn reset(
    lab: &Lab,
    env: &Env,
    opts: &ResetOptions,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<AtomicBool>,
) -> Result<ResetSummary, RunnerError> {
    reset_with(lab, env, opts, reporter, cancel, &opener(env), &Ssh)
}

/// [`reset`] with the driver and the way to the guests given (the runner's tests give fakes).
pub(crate) fn reset_with(
    lab: &Lab,
    env: &Env,
    opts: &ResetOptions,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<AtomicBool>,
    driver_for: OpenDriver<'_>,
    connect: &dyn Connect,
) -> Result<ResetSummary, RunnerError> {
    let paths = LabPaths::new(&lab.dir, &lab.name);
    let started = Instant::now();
    let mut summary = ResetSummary::default();
    if !opts.rebuild {
        let lock = LabLock::acquire(&paths)?;
        let st = LabState::load_checked(&paths, env)?.ok_or(RunnerError::NotUp)?;
        let driver = driver_for(st.provider, st.uri.as_deref())?;
        let uri = effective_uri(env, &st).map(str::to_string);
        let names = if opts.all {
            st.select(&[])?
        } else {
            st.select(&opts.nodes)?
        };
        crate::ops::check_nodes(&*driver, &st, &names, crate::ops::Need::Created)?;
        let golden = st.golden.clone().ok_or(RunnerError::NoGolden {
            reason: crate::NoGolden::NotTaken,
        })?;
        if !opts.all && golden.values_hash != values_hash(&load_values(&paths)) {
            return Err(RunnerError::NoGolden {
                reason: crate::NoGolden::ValuesChanged,
            });
        }
        if let Some(missing) = names.iter().find(|n| !golden.nodes.contains(n)) {
            return Err(RunnerError::NoGolden {
                reason: crate::NoGolden::NodeNotIncluded {
                    node: missing.clone(),
                },
            });
        }
        for n in &names {
            emit(
                &*reporter,
                n,
                EventKind::Notice {
                    notice: Notice::RestoringGolden {
                        name: golden.name.clone(),
                    },
                },
            );
        }
        snapshot_locked(
            &*driver,
            &st,
            &names,
            &SnapshotCmd::Restore(golden.name.clone()),
        )?;
        fix_clocks(connect, &paths, &st, uri.as_deref(), &names, &*reporter)?;
        drop(lock);
        for n in &names {
            run_check(
                connect,
                lab,
                &paths,
                &st,
                uri.as_deref(),
                n,
                Duration::from_secs(180),
                &*reporter,
            )?;
            summary.nodes.push(NodeReset {
                node: n.clone(),
                how: ResetHow::Golden,
                elapsed_ms: ms(started.elapsed()),
            });
        }
        return Ok(summary);
    }
    // --rebuild
    let (publishers, publisher_nodes) = {
        let lock = LabLock::acquire(&paths)?;
        let mut st = LabState::load_checked(&paths, env)?.ok_or(RunnerError::NotUp)?;
        let driver = driver_for(st.provider, st.uri.as_deref())?;
        let uri = effective_uri(env, &st).map(str::to_string);
        let names = if opts.all {
            st.select(&[])?
        } else {
            st.select(&opts.nodes)?
        };
        // Steps on other nodes that publish values these nodes consume: run them again, so
        // that the rebuilt nodes get fresh values (a new join token).
        let g = Graph::build(lab);
        let mut publishers = BTreeSet::new();
        for (t, task) in g.tasks.iter().enumerate() {
            let node = &lab.nodes[task.node];
            if !names.contains(&node.name) {
                continue;
            }
            for a in g.ancestors(t) {
                let an = &lab.nodes[g.tasks[a].node];
                let step = &lab.steps_of(an)[g.tasks[a].step];
                if !names.contains(&an.name) && !step.publish.is_empty() {
                    publishers.insert((an.name.clone(), step.name.clone()));
                }
            }
        }
        for n in &names {
            if let Some(hook) = lab
                .node(n)
                .and_then(|sn| lab.role(&sn.role))
                .and_then(|r| r.forget.clone())
                && hook_nodes(lab, &hook, n).iter().any(|o| !names.contains(o))
            {
                run_hook(
                    connect,
                    lab,
                    &paths,
                    &st,
                    uri.as_deref(),
                    n,
                    &hook,
                    "forget",
                    Duration::from_secs(60),
                )?;
                emit(
                    &*reporter,
                    n,
                    EventKind::Notice {
                        notice: Notice::Forgotten,
                    },
                );
            }
            emit(
                &*reporter,
                n,
                EventKind::Notice {
                    notice: Notice::Rebuilding,
                },
            );
            driver.destroy(&st.nodes[n].machine)?;
            if let Some(node) = st.nodes.get_mut(n) {
                node.configured = false;
                node.steps.clear();
            }
        }
        st.golden = None;
        st.save(&paths)?;
        drop(lock);
        let mut nodes: BTreeSet<String> = names.into_iter().collect();
        nodes.extend(publishers.iter().map(|(n, _)| n.clone()));
        (publishers, nodes)
    };
    let up_opts = UpOptions {
        nodes: publisher_nodes.into_iter().collect(),
        jobs: None,
        selection: Selection::Up,
        force: publishers,
    };
    let up_summary = up_with(
        lab,
        env,
        &up_opts,
        reporter.clone(),
        cancel,
        driver_for,
        connect,
    )?;
    let failed = up_summary.failed() || up_summary.interrupted;
    summary.up = Some(up_summary);
    if failed {
        return Ok(summary);
    }
    let st = LabState::load_checked(&paths, env)?.ok_or(RunnerError::NotUp)?;
    let uri = effective_uri(env, &st).map(str::to_string);
    let names = if opts.all {
        st.select(&[])?
    } else {
        st.select(&opts.nodes)?
    };
    for n in &names {
        run_check(
            connect,
            lab,
            &paths,
            &st,
            uri.as_deref(),
            n,
            Duration::from_secs(600),
            &*reporter,
        )?;
        summary.nodes.push(NodeReset {
            node: n.clone(),
            how: ResetHow::Rebuilt,
            elapsed_ms: ms(started.elapsed()),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod hook_tests {
    use super::*;

    #[test]
    fn forget_runs_on_another_control_plane_and_check_on_the_node() {
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../labs/k8s-ha/lab.toml");
        let lab = labctl_spec::load(&file, labctl_spec::Overrides::default()).expect("k8s-ha");
        let role = |r: &str| lab.role(r).expect("role").clone();
        let forget = role("cp2").forget.expect("cp2 forget");
        assert_eq!(hook_nodes(&lab, &forget, "cp2-k8s"), ["cp1-k8s", "cp3-k8s"]);
        let forget = role("worker").forget.expect("worker forget");
        assert_eq!(
            hook_nodes(&lab, &forget, "w1-k8s"),
            ["cp1-k8s", "cp2-k8s", "cp3-k8s"]
        );
        let check = role("worker").check.expect("worker check");
        assert_eq!(hook_nodes(&lab, &check, "w2-k8s"), ["w2-k8s"]);
    }
}
