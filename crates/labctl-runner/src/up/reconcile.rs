//! Check the request, reconcile the recorded state with the machines, run the node
//! workers, and decide the golden snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Instant, SystemTime};

use labctl_driver::MachineStatus;
use labctl_spec::{Graph, Lab, Renderer, RunPolicy};

use super::schedule::{Block, POISONED, Shared, Slots, TaskState, node_panicked, node_worker};
use super::{NodeSummary, OpenDriver, Selection, UpOptions, UpSummary};
use crate::RunnerError;
use crate::events::{DepCause, EventKind, Notice, Reporter, StepOutcome, emit, emit_lab, ms};
use crate::guest::Connect;
use crate::machines::{self, Env};
use crate::state::{LabLock, LabPaths, LabState, NodeState, load_values};

/// [`up`] with the driver and the way to the guests given (the runner's unit tests give fakes).
pub(crate) fn up_with(
    lab: &Lab,
    env: &Env,
    opts: &UpOptions,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<AtomicBool>,
    driver_for: OpenDriver<'_>,
    connect: &dyn Connect,
) -> Result<UpSummary, RunnerError> {
    let started = Instant::now();
    for n in &opts.nodes {
        if lab.node(n).is_none() {
            return Err(RunnerError::UnknownNode {
                name: n.clone(),
                known: lab.nodes.iter().map(|n| n.name.clone()).collect(),
            });
        }
    }
    if let Selection::Step(name) | Selection::From(name) = &opts.selection {
        let known: BTreeSet<&str> = lab
            .nodes
            .iter()
            .filter(|n| opts.nodes.is_empty() || opts.nodes.contains(&n.name))
            .flat_map(|n| lab.steps_of(n).iter().map(|s| s.name.as_str()))
            .collect();
        if !known.contains(name.as_str()) {
            return Err(RunnerError::UnknownStep {
                name: name.clone(),
                known: known.iter().map(|s| (*s).to_string()).collect(),
            });
        }
    }
    let paths = LabPaths::new(&lab.dir, &lab.name);
    let _lock = LabLock::acquire(&paths)?;
    crate::state::ensure_private_dir(paths.run_dir.parent().unwrap_or(&paths.run_dir))?;
    let provider = lab.provider;
    let driver = driver_for(provider, lab.uri.as_deref())?;
    let boxm = machines::resolve_box(lab, env)?;
    let box_dir = env.boxes().dir(&boxm.name);
    let accel = machines::accel_request(lab);
    if !lab.egress && !driver.features().blocks_egress {
        emit_lab(
            &*reporter,
            EventKind::Notice {
                notice: Notice::EgressNotEnforced { provider },
            },
        );
    }
    let authorized_key =
        labctl_ssh::keys::ensure_keypair(&paths.key(), &format!("labctl@{}", paths.id))?;
    // The lab's bundle: the host's bundle server runs, and every machine reaches it.
    let bundle = crate::bundle::attach(lab, env, &paths.id, &*driver)?;
    let mut st = LabState::load_checked(&paths, env)?
        .unwrap_or_else(|| LabState::new(&lab.name, &paths, provider, &lab.box_name));
    st.uri = machines::lab_uri(lab, env);
    // Values that expired (or were lost) are published again before a step that needs them.
    let refreshed = refresh_values(lab, &st, &paths, opts, &*reporter)?;
    let opts = &refreshed;
    let selected: Vec<&labctl_spec::Node> = lab
        .nodes
        .iter()
        .filter(|n| opts.nodes.is_empty() || opts.nodes.contains(&n.name))
        .collect();
    let mut running = BTreeSet::new();
    for node in &lab.nodes {
        let previous = st.nodes.get(&node.name);
        let mut machine =
            machines::machine_for(lab, node, &paths, &boxm, &box_dir, accel, previous);
        if let Some(b) = &bundle {
            machine.guest_services = vec![b.service.clone()];
        }
        let status = driver.status(&machine);
        let alive = matches!(status, MachineStatus::Running { .. });
        if alive {
            running.insert(node.name.clone());
        }
        let disk_exists = !matches!(status, MachineStatus::NotCreated);
        let entry = st
            .nodes
            .entry(node.name.clone())
            .or_insert_with(|| NodeState {
                role: node.role.clone(),
                machine: machine.clone(),
                user: boxm.user.clone(),
                box_key: boxm.private_key.as_ref().map(|k| box_dir.join(k)),
                os: lab.os,
                configured: false,
                ips: Vec::new(),
                steps: BTreeMap::new(),
            });
        entry.ips = node
            .nics
            .iter()
            .map(|n| format!("{}={}/{}", n.network, n.ip, n.prefix))
            .collect();
        if !alive {
            // A running VM keeps the configuration it was started with.
            entry.machine = machine;
        }
        entry.role = node.role.clone();
        if !disk_exists {
            entry.configured = false;
            entry.steps.clear();
        }
    }
    for (node, notice) in machines::correct_ports(&mut st, &running) {
        emit(&*reporter, &node, EventKind::Notice { notice });
    }
    st.networks = machines::networks(lab);
    st.save(&paths)?;
    // Propagated, before any machine is made: `box remove` reads the registry to refuse a
    // box that a lab's overlays point at.
    crate::registry::register(env, &paths, &lab.name)?;
    driver.networks_up(&st.run_dir, &st.networks)?;
    let values = load_values(&paths);
    let mut renderer = Renderer::new(lab)?;
    renderer.set_bundle(bundle.as_ref().map(|b| b.guest.clone()));
    let jobs = opts.jobs.unwrap_or(usize::MAX).max(1);
    let graph = Graph::build(lab);
    let ntasks = graph.tasks.len();
    let shared = Shared {
        lab,
        graph,
        renderer,
        driver,
        connect,
        reporter: reporter.clone(),
        cancel: cancel.clone(),
        opts,
        state: Mutex::new((st, values)),
        tasks: Mutex::new(vec![TaskState::Pending; ntasks]),
        tasks_cv: Condvar::new(),
        slots: Slots {
            free: Mutex::new(jobs),
            cv: Condvar::new(),
        },
        accel_announced: Mutex::new(None),
        lab_key: paths.key(),
        box_key: boxm.private_key.as_ref().map(|k| box_dir.join(k)),
        box_user: boxm.user.clone(),
        authorized_key,
        paths,
        bundle,
    };
    // Tasks of nodes outside this run count as done if recorded, blocked otherwise.
    for (t, task) in shared.graph.tasks.iter().enumerate() {
        let node = &lab.nodes[task.node];
        if !selected.iter().any(|n| n.name == node.name) {
            let step = &lab.steps_of(node)[task.step];
            let done = shared.state.lock().ok().is_some_and(|g| {
                g.0.nodes
                    .get(&node.name)
                    .is_some_and(|n| n.steps.contains_key(&step.name))
            });
            shared.set_task(
                t,
                if done {
                    TaskState::Ok
                } else {
                    TaskState::Blocked(Block::Own(DepCause::NotInRun {
                        node: node.name.clone(),
                    }))
                },
            );
        }
    }
    // The acceleration notice only when something will boot (`running` was read above).
    let to_boot = selected.iter().any(|n| !running.contains(&n.name));
    if to_boot {
        let boot = machines::boot_image(&boxm, &box_dir);
        shared.announce_acceleration(shared.driver.acceleration(accel, &boot));
    }
    let summaries: Vec<NodeSummary> = std::thread::scope(|s| {
        let handles: Vec<_> = selected
            .iter()
            .map(|node| {
                let shared = &shared;
                s.spawn(move || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        node_worker(shared, node)
                    }))
                    .unwrap_or_else(|_| node_panicked(shared, node))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    shared.save()?;
    let summary = UpSummary {
        nodes: summaries,
        interrupted: cancel.load(Ordering::Relaxed),
        wall_ms: ms(started.elapsed()),
    };
    let clean = !summary.failed()
        && !summary.interrupted
        && summary.nodes.iter().all(|n| {
            n.steps
                .iter()
                .all(|s| matches!(s.outcome, StepOutcome::Done | StepOutcome::UpToDate))
        });
    if lab.golden_snapshot && clean {
        let mut st = shared.state.into_inner().map_err(|_| POISONED)?.0;
        let complete = lab.nodes.iter().all(|n| {
            st.nodes.get(&n.name).is_some_and(|ns| {
                matches!(
                    shared.driver.status(&ns.machine),
                    MachineStatus::Running { .. }
                ) && lab
                    .steps_of(n)
                    .iter()
                    .all(|s| s.run == RunPolicy::Never || ns.steps.contains_key(&s.name))
            })
        });
        let current = st.golden.as_ref().is_some_and(|g| {
            g.values_hash == crate::state::values_hash(&load_values(&shared.paths))
                && summary
                    .nodes
                    .iter()
                    .all(|n| n.steps.iter().all(|s| s.outcome == StepOutcome::UpToDate))
        });
        if complete && !current {
            crate::reset::save_golden(&shared.paths, &mut st, &*shared.driver, &*reporter)?;
        }
    }
    Ok(summary)
}

/// `opts` plus the publishers whose values are missing or expired (see `expiry`).
fn refresh_values(
    lab: &Lab,
    st: &LabState,
    paths: &LabPaths,
    opts: &UpOptions,
    reporter: &dyn Reporter,
) -> Result<UpOptions, RunnerError> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record =
        |node: &str, step: &str| st.nodes.get(node).and_then(|n| n.steps.get(step)).cloned();
    let stale = crate::expiry::stale_publishers(
        lab,
        &Graph::build(lab),
        &Renderer::new(lab)?,
        opts,
        &load_values(paths),
        &record,
        now,
    );
    for s in &stale {
        emit(reporter, &s.node, EventKind::Notice { notice: s.notice() });
    }
    Ok(crate::expiry::with_refresh(opts, &stale))
}
