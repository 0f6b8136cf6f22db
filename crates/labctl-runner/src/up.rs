//! `up` and `provision`: bring nodes up in parallel, then run the step graph, each step as
//! soon as what it waits for has succeeded. A failure stops only what depends on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use labctl_driver::{Driver, DriverError, MachineConfig, MachineStatus};
use labctl_spec::{Graph, Lab, Renderer, RunPolicy};
use labctl_ssh::guest::{GuestSetup, NetStack, NicSetup};
use labctl_ssh::{SshError, Target};

use crate::RunnerError;
use crate::events::{EventKind, Phase, Reporter, StepOutcome, emit, ms};
use crate::guest::{Connect, Guest, Ssh};
use crate::machines::{self, Env};
use crate::provision::{as_root, run_step};
use crate::state::{LabLock, LabPaths, LabState, NodeState, StepRecord, load_values, save_values};

/// Which steps to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// `up`: steps not done yet, changed ones, and `always` ones.
    #[default]
    Up,
    /// `provision --step NAME`: only this step, whatever its record says.
    Step(String),
    /// `provision --from NAME`: this step and every later step of each node.
    From(String),
    /// `provision` without a step: every step of the chosen nodes, again.
    All,
}

/// Options of `up` / `provision`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Nodes to work on; empty means all.
    pub nodes: Vec<String>,
    /// At most this many nodes booting or steps running at once (None: no limit).
    pub jobs: Option<usize>,
    pub selection: Selection,
    /// `(node, step)` pairs to run even when their record is up to date.
    pub force: BTreeSet<(String, String)>,
}

/// What happened to one node.
#[derive(Debug, Clone, Default)]
pub struct NodeSummary {
    pub name: String,
    pub error: Option<String>,
    pub ready_ms: Option<u64>,
    pub steps: Vec<StepSummary>,
}

/// What happened to one step of a node in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    pub name: String,
    pub outcome: StepOutcome,
    /// How long it ran (0 when it did not run).
    pub duration_ms: u64,
}

/// The result of `up`.
#[derive(Debug, Clone, Default)]
pub struct UpSummary {
    pub nodes: Vec<NodeSummary>,
    pub interrupted: bool,
    pub wall_ms: u64,
}

impl UpSummary {
    /// Whether any node or step failed.
    pub fn failed(&self) -> bool {
        self.nodes.iter().any(|n| {
            n.error.is_some()
                || n.steps
                    .iter()
                    .any(|s| matches!(s.outcome, StepOutcome::Failed { .. }))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskState {
    Pending,
    Ok,
    /// Did not succeed; dependents are skipped for it.
    Blocked(Block),
}

/// Why a task did not succeed, for the skip reason of what waits on it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    /// What happened to this task, said of it ("failed", "has never run"): dependants are
    /// skipped "because LABEL WHAT".
    Own(String),
    /// The task was itself skipped for a dependency: dependants get the same reason.
    Passed(String),
}

/// Why waiting for a task's dependencies ended without all of them done.
enum WaitEnd {
    /// A dependency did not succeed: the skip reason.
    Dep(String),
    /// Ctrl-C or an internal failure: the skip reason.
    Stopped(String),
}

/// A task that was not attempted.
enum NotRun {
    /// Outside `provision --step/--from`: not reported.
    NotSelected,
    /// A dependency did not succeed: skipped with this reason, passed on to dependants.
    Dep(String),
}

/// The lab state's lock was poisoned: a node thread panicked while holding it.
const POISONED: RunnerError = RunnerError::Internal {
    what: "the lab state's lock is poisoned (a node thread panicked)",
};

/// Counting semaphore for `--jobs`.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Slots {
    fn acquire(&self, cancel: &AtomicBool) -> Option<SlotGuard<'_>> {
        let mut free = self.free.lock().ok()?;
        // After Ctrl-C nothing new starts, even when a slot is free.
        loop {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            if *free > 0 {
                break;
            }
            free = self
                .cv
                .wait_timeout(free, Duration::from_millis(200))
                .ok()?
                .0;
        }
        *free -= 1;
        Some(SlotGuard(self))
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.0.free.lock() {
            *f += 1;
        }
        self.0.cv.notify_one();
    }
}

struct Shared<'a> {
    lab: &'a Lab,
    graph: Graph,
    renderer: Renderer,
    paths: LabPaths,
    driver: Arc<dyn Driver>,
    connect: &'a dyn Connect,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<AtomicBool>,
    opts: &'a UpOptions,
    state: Mutex<(LabState, BTreeMap<String, String>)>,
    tasks: Mutex<Vec<TaskState>>,
    tasks_cv: Condvar,
    slots: Slots,
    /// The acceleration announced to the user so far (a fallback is announced once more).
    accel_announced: Mutex<Option<labctl_driver::Acceleration>>,
    lab_key: PathBuf,
    box_key: Option<PathBuf>,
    box_user: String,
    authorized_key: String,
}

impl Shared<'_> {
    fn save(&self) -> Result<(), RunnerError> {
        let g = self.state.lock().map_err(|_| POISONED)?;
        g.0.save(&self.paths)
    }

    /// Tell the user what the machines run on, once, and again only if it changed (a node
    /// under KVM failed and the driver went on under TCG).
    fn announce_acceleration(&self, now: Option<labctl_driver::Acceleration>) {
        let Some(now) = now else { return };
        let Ok(mut g) = self.accel_announced.lock() else {
            return;
        };
        if g.as_ref().is_some_and(|a| a.engine == now.engine) {
            return;
        }
        emit(
            &*self.reporter,
            "",
            EventKind::Acceleration {
                engine: now.engine.clone(),
                reason: now.reason.clone(),
                fallback: now.fallback,
            },
        );
        *g = Some(now);
    }

    fn set_task(&self, t: usize, s: TaskState) {
        // A poisoned lock (a node thread panicked) must not leave other nodes waiting.
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = tasks.get_mut(t) {
            *slot = s;
        }
        drop(tasks);
        self.tasks_cv.notify_all();
    }

    /// Wait until every dependency of `t` is settled; Err(reason) if one did not succeed.
    fn wait_deps(&self, t: usize) -> Result<(), WaitEnd> {
        fn poisoned<T>(_: T) -> WaitEnd {
            WaitEnd::Stopped("internal lock poisoned".into())
        }
        let mut tasks = self.tasks.lock().map_err(poisoned)?;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(WaitEnd::Stopped("interrupted".into()));
            }
            let mut pending = false;
            for &d in &self.graph.deps[t] {
                match &tasks[d] {
                    TaskState::Blocked(Block::Passed(why)) => {
                        return Err(WaitEnd::Dep(why.clone()));
                    }
                    TaskState::Blocked(Block::Own(why)) => {
                        let label = self.graph.label(self.lab, d);
                        return Err(WaitEnd::Dep(format!("because {label} {why}")));
                    }
                    TaskState::Pending => pending = true,
                    TaskState::Ok => {}
                }
            }
            if !pending {
                return Ok(());
            }
            tasks = self
                .tasks_cv
                .wait_timeout(tasks, Duration::from_millis(250))
                .map_err(poisoned)?
                .0;
        }
    }
}

/// Bring the lab (or some nodes) up and provision it.
pub fn up(
    lab: &Lab,
    env: &Env,
    opts: &UpOptions,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<AtomicBool>,
) -> Result<UpSummary, RunnerError> {
    up_with(
        lab,
        env,
        opts,
        reporter,
        cancel,
        &|provider| machines::driver_for(provider, env),
        &Ssh,
    )
}

/// Opens the driver for a provider (production: [`machines::driver_for`]).
pub(crate) type OpenDriver<'a> = &'a dyn Fn(&str) -> Result<Arc<dyn Driver>, RunnerError>;

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
    let provider = machines::provider_name(lab);
    let driver = driver_for(provider)?;
    let boxm = machines::resolve_box(lab, env)?;
    let box_dir = env.boxes().dir(&boxm.name);
    let accel = machines::accel_request(lab);
    if !lab.egress && !driver.features().blocks_egress {
        emit(
            &*reporter,
            "",
            EventKind::Notice {
                message: format!(
                    "egress = false is not enforced by {provider}: its NAT cannot cut guests off the internet (steps that need it are still skipped)"
                ),
            },
        );
    }
    let authorized_key =
        labctl_ssh::keys::ensure_keypair(&paths.key(), &format!("labctl@{}", paths.id))?;
    let mut st = LabState::load_checked(&paths, env)?
        .unwrap_or_else(|| LabState::new(&lab.name, &paths, provider, &lab.box_name));
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
        let machine = machines::machine_for(lab, node, &paths, &boxm, &box_dir, accel, previous);
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
                os: lab.os.clone(),
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
    for (node, message) in machines::correct_ports(&mut st, &running) {
        emit(&*reporter, &node, EventKind::Notice { message });
    }
    st.networks = machines::networks(lab);
    st.save(&paths)?;
    crate::reset::register(env, &paths, &lab.name);
    driver.networks_up(&st.run_dir, &st.networks)?;
    let values = load_values(&paths);
    let renderer = Renderer::new(lab)?;
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
                    TaskState::Blocked(Block::Own(format!(
                        "has not run ({} is not part of this run)",
                        node.name
                    )))
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
        emit(
            reporter,
            &s.node,
            EventKind::Notice {
                message: s.message(),
            },
        );
    }
    Ok(crate::expiry::with_refresh(opts, &stale))
}

/// A node's worker panicked (a bug): the node fails and whatever waits on its unfinished
/// steps is released as skipped, instead of waiting for ever.
fn node_panicked(sh: &Shared<'_>, node: &labctl_spec::Node) -> NodeSummary {
    let error = "internal error: the node's worker thread panicked".to_string();
    {
        let mut tasks = sh.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for (t, task) in sh.graph.tasks.iter().enumerate() {
            if sh.lab.nodes[task.node].name == node.name && tasks[t] == TaskState::Pending {
                tasks[t] =
                    TaskState::Blocked(Block::Own(format!("did not run: {} failed", node.name)));
            }
        }
    }
    sh.tasks_cv.notify_all();
    emit(
        &*sh.reporter,
        &node.name,
        EventKind::NodeFailed {
            error: error.clone(),
        },
    );
    NodeSummary {
        name: node.name.clone(),
        error: Some(error),
        ..NodeSummary::default()
    }
}

fn node_worker(sh: &Shared<'_>, node: &labctl_spec::Node) -> NodeSummary {
    let mut summary = NodeSummary {
        name: node.name.clone(),
        ..NodeSummary::default()
    };
    let started = Instant::now();
    let my_tasks: Vec<usize> = (0..sh.graph.tasks.len())
        .filter(|&t| sh.lab.nodes[sh.graph.tasks[t].node].name == node.name)
        .collect();
    let session = match bring_up(sh, node) {
        Ok(s) => {
            summary.ready_ms = Some(ms(started.elapsed()));
            emit(
                &*sh.reporter,
                &node.name,
                EventKind::Phase {
                    phase: Phase::Ready,
                },
            );
            s
        }
        Err(e) => {
            let msg = e.to_string();
            if !matches!(
                e,
                RunnerError::Interrupted | RunnerError::Ssh(SshError::Cancelled { .. })
            ) {
                emit(
                    &*sh.reporter,
                    &node.name,
                    EventKind::NodeFailed { error: msg.clone() },
                );
                summary.error = Some(msg);
            }
            for &t in &my_tasks {
                sh.set_task(
                    t,
                    TaskState::Blocked(Block::Own(format!(
                        "did not run: {} did not come up",
                        node.name
                    ))),
                );
            }
            return summary;
        }
    };
    let steps = sh.lab.steps_of(node);
    for &t in &my_tasks {
        let idx = sh.graph.tasks[t].step;
        let step = &steps[idx];
        let (ran, ran_for) = run_task(sh, node, &*session, t, idx, step);
        let elapsed = ms(ran_for);
        let outcome = match ran {
            Err(NotRun::NotSelected) => {
                let done = sh.state.lock().ok().is_some_and(|g| {
                    g.0.nodes
                        .get(&node.name)
                        .is_some_and(|n| n.steps.contains_key(&step.name))
                });
                sh.set_task(
                    t,
                    if done {
                        TaskState::Ok
                    } else {
                        TaskState::Blocked(Block::Own("has never run".into()))
                    },
                );
                continue;
            }
            Err(NotRun::Dep(reason)) => {
                sh.set_task(t, TaskState::Blocked(Block::Passed(reason.clone())));
                StepOutcome::Skipped { reason }
            }
            Ok(outcome) => {
                sh.set_task(
                    t,
                    match &outcome {
                        StepOutcome::Done | StepOutcome::UpToDate => TaskState::Ok,
                        StepOutcome::Failed { .. } => {
                            TaskState::Blocked(Block::Own("failed".into()))
                        }
                        StepOutcome::Skipped { reason } => {
                            TaskState::Blocked(Block::Own(format!("was skipped ({reason})")))
                        }
                    },
                );
                outcome
            }
        };
        emit(
            &*sh.reporter,
            &node.name,
            EventKind::StepFinished {
                step: step.name.clone(),
                outcome: outcome.clone(),
                duration_ms: elapsed,
            },
        );
        summary.steps.push(StepSummary {
            name: step.name.clone(),
            outcome,
            duration_ms: elapsed,
        });
    }
    summary
}

fn selected_step(sel: &Selection, steps: &[labctl_spec::Step], idx: usize) -> bool {
    match sel {
        Selection::Up | Selection::All => true,
        Selection::Step(name) => steps[idx].name == *name,
        Selection::From(name) => steps
            .iter()
            .position(|s| s.name == *name)
            .is_some_and(|from| idx >= from),
    }
}

fn run_task(
    sh: &Shared<'_>,
    node: &labctl_spec::Node,
    session: &dyn Guest,
    t: usize,
    idx: usize,
    step: &labctl_spec::Step,
) -> (Result<StepOutcome, NotRun>, Duration) {
    let mut ran_from: Option<Instant> = None;
    let outcome = run_task_inner(sh, node, session, t, idx, step, &mut ran_from);
    (outcome, ran_from.map_or(Duration::ZERO, |t| t.elapsed()))
}

fn run_task_inner(
    sh: &Shared<'_>,
    node: &labctl_spec::Node,
    session: &dyn Guest,
    t: usize,
    idx: usize,
    step: &labctl_spec::Step,
    ran_from: &mut Option<Instant>,
) -> Result<StepOutcome, NotRun> {
    let steps = sh.lab.steps_of(node);
    let forced = sh
        .opts
        .force
        .contains(&(node.name.clone(), step.name.clone()));
    if !selected_step(&sh.opts.selection, steps, idx) && !forced {
        return Err(NotRun::NotSelected);
    }
    match sh.wait_deps(t) {
        Ok(()) => {}
        Err(WaitEnd::Dep(reason)) => return Err(NotRun::Dep(reason)),
        Err(WaitEnd::Stopped(reason)) => return Ok(StepOutcome::Skipped { reason }),
    }
    Ok(step_outcome(sh, node, session, idx, step, ran_from))
}

fn step_outcome(
    sh: &Shared<'_>,
    node: &labctl_spec::Node,
    session: &dyn Guest,
    idx: usize,
    step: &labctl_spec::Step,
    ran_from: &mut Option<Instant>,
) -> StepOutcome {
    let steps = sh.lab.steps_of(node);
    if step.run == RunPolicy::Never
        && !matches!(&sh.opts.selection, Selection::Step(n) if *n == step.name)
    {
        return StepOutcome::Skipped {
            reason: "runs only on request (`labctl provision --step`)".into(),
        };
    }
    if step.needs_egress && !sh.lab.egress {
        return StepOutcome::Skipped {
            reason: "needs the guest's internet, and egress is off; run `labctl provision --step` once it is on".into(),
        };
    }
    let (values, record) = match sh.state.lock() {
        Ok(g) => (
            g.1.clone(),
            g.0.nodes
                .get(&node.name)
                .and_then(|n| n.steps.get(&step.name))
                .cloned(),
        ),
        Err(_) => {
            return StepOutcome::Skipped {
                reason: "internal lock poisoned".into(),
            };
        }
    };
    let rendered = match sh.renderer.render_step(sh.lab, node, step, &values) {
        Ok(r) => r,
        Err(e) => {
            return StepOutcome::Failed {
                status: None,
                reason: format!("cannot render: {e}"),
                tail: String::new(),
            };
        }
    };
    if sh.opts.selection == Selection::Up
        && step.run == RunPolicy::Once
        && record.is_some_and(|r| r.hash == rendered.hash)
        && !sh
            .opts
            .force
            .contains(&(node.name.clone(), step.name.clone()))
    {
        return StepOutcome::UpToDate;
    }
    let Some(_slot) = sh.slots.acquire(&sh.cancel) else {
        return StepOutcome::Skipped {
            reason: "interrupted".into(),
        };
    };
    emit(
        &*sh.reporter,
        &node.name,
        EventKind::StepStarted {
            step: step.name.clone(),
            index: idx + 1,
            total: steps.len(),
        },
    );
    let user = sh
        .state
        .lock()
        .ok()
        .and_then(|g| g.0.nodes.get(&node.name).map(|n| n.user.clone()))
        .unwrap_or_default();
    let stem = format!("{:02}-{}", idx + 1, step.name);
    let log = sh.paths.log_dir(&node.name).join(format!("{stem}.log"));
    let secrets = sh.state.lock().map(|g| g.1.clone()).unwrap_or_default();
    let started = Instant::now();
    *ran_from = Some(started);
    let result = run_step(
        session,
        &user,
        &node.name,
        &stem,
        &step.name,
        &rendered,
        &log,
        step.timeout,
        &sh.cancel,
        &secrets,
        &mut |line| {
            emit(
                &*sh.reporter,
                &node.name,
                EventKind::StepOutput {
                    step: step.name.clone(),
                    line: line.to_string(),
                },
            );
        },
    );
    match result {
        Ok(run) if run.status == 0 && run.signal.is_none() => {
            let missing: Vec<&String> = step
                .publish
                .iter()
                .filter(|p| !run.published.contains_key(*p))
                .collect();
            if !missing.is_empty() {
                forget(sh, &node.name, &step.name);
                return StepOutcome::Failed {
                    status: Some(0),
                    reason: format!(
                        "exited 0 but did not publish {} (write `name=value` lines to \"$LABCTL_PUBLISH\")",
                        missing
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    tail: run.tail,
                };
            }
            // Recorded only when the record (and the values) reached the disk: a step whose
            // record is lost would be skipped next time while its values are missing.
            let saved = match sh.state.lock() {
                Err(_) => Err("internal lock poisoned".to_string()),
                Ok(mut g) => {
                    for name in &step.publish {
                        if let Some(v) = run.published.get(name) {
                            g.1.insert(name.clone(), v.clone());
                        }
                    }
                    if let Some(n) = g.0.nodes.get_mut(&node.name) {
                        n.steps.insert(
                            step.name.clone(),
                            StepRecord {
                                hash: rendered.hash.clone(),
                                finished_at: SystemTime::now()
                                    .duration_since(SystemTime::UNIX_EPOCH)
                                    .map_or(0, |d| d.as_secs()),
                                duration_ms: ms(started.elapsed()),
                            },
                        );
                    }
                    let values = if step.publish.is_empty() {
                        Ok(())
                    } else {
                        save_values(&sh.paths, &g.1)
                    };
                    let saved = values.and_then(|()| g.0.save(&sh.paths));
                    if saved.is_err()
                        && let Some(n) = g.0.nodes.get_mut(&node.name)
                    {
                        n.steps.remove(&step.name);
                    }
                    saved.map_err(|e| e.to_string())
                }
            };
            match saved {
                Ok(()) => StepOutcome::Done,
                Err(e) => StepOutcome::Failed {
                    status: Some(0),
                    reason: format!("exited 0, but its record could not be saved: {e}"),
                    tail: run.tail,
                },
            }
        }
        Ok(run) => {
            forget(sh, &node.name, &step.name);
            StepOutcome::Failed {
                status: Some(run.status),
                reason: match &run.signal {
                    Some(sig) => format!("killed by signal {sig} (full log: {})", log.display()),
                    None => format!("exit status {} (full log: {})", run.status, log.display()),
                },
                tail: run.tail,
            }
        }
        Err(SshError::Cancelled { .. }) => {
            forget(sh, &node.name, &step.name);
            StepOutcome::Skipped {
                reason: "interrupted".into(),
            }
        }
        Err(e) => {
            forget(sh, &node.name, &step.name);
            let died = !matches!(
                sh.driver.status(&machine_of(sh, &node.name)),
                MachineStatus::Running { .. }
            );
            let tail = if died {
                sh.driver.console_tail(&machine_of(sh, &node.name), 20)
            } else {
                String::new()
            };
            StepOutcome::Failed {
                status: None,
                reason: if died {
                    format!("{e} (the VM is no longer running)")
                } else {
                    e.to_string()
                },
                tail,
            }
        }
    }
}

/// A step that ran and did not succeed is no longer done, whatever it was before.
/// The end of the run saves the state again (and `up` fails if that fails too).
fn forget(sh: &Shared<'_>, node: &str, step: &str) {
    let saved = match sh.state.lock() {
        Ok(mut g) => {
            if let Some(n) = g.0.nodes.get_mut(node) {
                n.steps.remove(step);
            }
            g.0.save(&sh.paths)
        }
        Err(_) => return,
    };
    if let Err(e) = saved {
        emit(
            &*sh.reporter,
            node,
            EventKind::Notice {
                message: format!("{step} is no longer done, but the state could not be saved: {e}"),
            },
        );
    }
}

fn machine_of(sh: &Shared<'_>, node: &str) -> MachineConfig {
    sh.state
        .lock()
        .ok()
        .and_then(|g| g.0.nodes.get(node).map(|n| n.machine.clone()))
        .expect("every selected node has a state entry")
}

fn bring_up(sh: &Shared<'_>, node: &labctl_spec::Node) -> Result<Box<dyn Guest>, RunnerError> {
    let r = &*sh.reporter;
    let name = &node.name;
    let slot = sh
        .slots
        .acquire(&sh.cancel)
        .ok_or(RunnerError::Interrupted)?;
    let mut machine = machine_of(sh, name);
    let mut booted = false;
    match sh.driver.status(&machine) {
        MachineStatus::Running { .. } => {}
        status => {
            if status == MachineStatus::NotCreated {
                emit(
                    r,
                    name,
                    EventKind::Phase {
                        phase: Phase::Creating,
                    },
                );
                sh.driver.create(&machine)?;
            }
            emit(
                r,
                name,
                EventKind::Phase {
                    phase: Phase::Booting,
                },
            );
            let mut tries = 0;
            loop {
                let started = sh.driver.start(&machine);
                sh.announce_acceleration(sh.driver.acceleration(machine.accel, &machine.boot));
                match started {
                    Ok(()) => break,
                    Err(DriverError::PortInUse { port }) if tries < 3 => {
                        tries += 1;
                        let mut g = sh.state.lock().map_err(|_| POISONED)?;
                        let mut taken: BTreeSet<u16> = BTreeSet::new();
                        for n in g.0.nodes.values() {
                            taken.insert(n.machine.ssh.host);
                            taken.extend(n.machine.forwards.iter().map(|f| f.host));
                        }
                        let Some(new) = machines::next_free_port(&taken) else {
                            break;
                        };
                        if let Some(n) = g.0.nodes.get_mut(name) {
                            if n.machine.ssh.host == port {
                                n.machine.ssh.host = new;
                            }
                            for f in &mut n.machine.forwards {
                                if f.host == port {
                                    f.host = new;
                                }
                            }
                            machine = n.machine.clone();
                        }
                        // `labctl ssh` and the next run must find the node on its new port.
                        g.0.save(&sh.paths)?;
                        emit(
                            r,
                            name,
                            EventKind::Notice {
                                message: format!(
                                    "port {port} was taken; using {new} instead (see `labctl ssh-config`)"
                                ),
                            },
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            booted = true;
        }
    }
    emit(
        r,
        name,
        EventKind::Phase {
            phase: Phase::WaitingSsh,
        },
    );
    let (user, configured) = sh
        .state
        .lock()
        .ok()
        .and_then(|g| g.0.nodes.get(name).map(|n| (n.user.clone(), n.configured)))
        .unwrap_or_else(|| (sh.box_user.clone(), false));
    let mut keys = vec![sh.lab_key.clone()];
    keys.extend(sh.box_key.clone());
    let target = Target {
        node: name.clone(),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], machine.ssh.host)),
        user: user.clone(),
        keys,
        // labctl has just started this VM and its disk is new (or rebuilt): whatever answers
        // on its port is it, so its key is recorded; otherwise it must match the record.
        host_key: Some(sh.paths.host_key_check(name, booted && !configured)),
    };
    let driver = sh.driver.clone();
    let m2 = machine.clone();
    let alive = move || match driver.status(&m2) {
        MachineStatus::Running { .. } => Ok(()),
        _ => {
            let tail = driver.console_tail(&m2, 20);
            Err(if tail.trim().is_empty() {
                match driver.console_path(&m2) {
                    Some(p) => format!("(nothing on the console yet: {})", p.display()),
                    None => "(nothing on the console yet)".to_string(),
                }
            } else {
                tail
            })
        }
    };
    let session = sh
        .connect
        .wait_ready(&target, sh.lab.boot_timeout, &sh.cancel, &alive)?;
    if booted || !configured || session.key() != sh.lab_key {
        emit(
            r,
            name,
            EventKind::Phase {
                phase: Phase::Configuring,
            },
        );
        let setup = GuestSetup {
            hostname: name.clone(),
            user: user.clone(),
            nics: node
                .nics
                .iter()
                .zip(machine.private_nics.iter())
                .map(|(a, nic)| NicSetup {
                    mac: nic.mac.clone(),
                    ip: a.ip,
                    prefix: a.prefix,
                })
                .collect(),
            stack: NetStack::for_os(&sh.lab.os),
            authorized_key: sh.authorized_key.clone(),
        };
        let script = labctl_ssh::guest::script(&setup);
        session.upload(".labctl-guest.sh", script.as_bytes(), 0o700)?;
        session.run(
            &format!("{}sh \"$HOME/.labctl-guest.sh\"", as_root(&user)),
            Duration::from_secs(120),
        )?;
        if let Ok(mut g) = sh.state.lock() {
            if let Some(n) = g.0.nodes.get_mut(name) {
                n.configured = true;
            }
            g.0.save(&sh.paths)?;
        }
    }
    drop(slot);
    Ok(session)
}
