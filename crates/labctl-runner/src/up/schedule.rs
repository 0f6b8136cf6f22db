//! The task table, `--jobs` slots and the per-node worker that walks its steps.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use labctl_driver::Driver;
use labctl_spec::{Graph, Lab, Renderer};
use labctl_ssh::SshError;

use super::node::bring_up;
use super::step::step_outcome;
use super::{NodeSummary, Selection, StepSummary, UpOptions};
use crate::RunnerError;
use crate::events::{
    DepCause, EventKind, Phase, Reporter, SkipReason, StepOutcome, emit, emit_lab, ms,
};
use crate::guest::{Connect, Guest};
use crate::state::{LabPaths, LabState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TaskState {
    Pending,
    Ok,
    /// Did not succeed; dependents are skipped for it.
    Blocked(Block),
}

/// Why a task did not succeed, for the skip reason of what waits on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Block {
    /// What happened to this task: dependants are skipped for it, naming it.
    Own(DepCause),
    /// The task was itself skipped for a dependency: dependants get the same reason.
    Passed(SkipReason),
}

/// Why waiting for a task's dependencies ended without all of them done.
enum WaitEnd {
    /// A dependency did not succeed: the skip reason.
    Dep(SkipReason),
    /// Ctrl-C or an internal failure: the skip reason.
    Stopped(SkipReason),
}

/// A task that was not attempted.
enum NotRun {
    /// Outside `provision --step/--from`: not reported.
    NotSelected,
    /// A dependency did not succeed: skipped with this reason, passed on to dependants.
    Dep(SkipReason),
}

/// The lab state's lock was poisoned: a node thread panicked while holding it.
pub(super) const POISONED: RunnerError = RunnerError::Internal {
    what: "the lab state's lock is poisoned (a node thread panicked)",
};

/// Counting semaphore for `--jobs`.
pub(super) struct Slots {
    pub(super) free: Mutex<usize>,
    pub(super) cv: Condvar,
}

impl Slots {
    pub(super) fn acquire(&self, cancel: &AtomicBool) -> Option<SlotGuard<'_>> {
        // The count stays right even if a thread panicked while holding the lock (it only
        // adds and subtracts): a poisoned lock is not reported as Ctrl-C.
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
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
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *free -= 1;
        Some(SlotGuard(self))
    }
}

pub(super) struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.cv.notify_one();
    }
}

pub(super) struct Shared<'a> {
    pub(super) lab: &'a Lab,
    pub(super) graph: Graph,
    pub(super) renderer: Renderer,
    pub(super) paths: LabPaths,
    pub(super) driver: Arc<dyn Driver>,
    pub(super) connect: &'a dyn Connect,
    pub(super) reporter: Arc<dyn Reporter>,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) opts: &'a UpOptions,
    pub(super) state: Mutex<(LabState, BTreeMap<String, String>)>,
    pub(super) tasks: Mutex<Vec<TaskState>>,
    pub(super) tasks_cv: Condvar,
    pub(super) slots: Slots,
    /// The acceleration announced to the user so far (a fallback is announced once more).
    pub(super) accel_announced: Mutex<Option<labctl_driver::Acceleration>>,
    pub(super) lab_key: PathBuf,
    pub(super) box_key: Option<PathBuf>,
    pub(super) box_user: String,
    pub(super) authorized_key: String,
    /// The bundle attached to this run, if any.
    pub(super) bundle: Option<crate::bundle::Attached>,
}

impl Shared<'_> {
    pub(super) fn save(&self) -> Result<(), RunnerError> {
        let g = self.state.lock().map_err(|_| POISONED)?;
        g.0.save(&self.paths)
    }

    /// Tell the user what the machines run on, once, and again only if it changed (a node
    /// under KVM failed and the driver went on under TCG).
    pub(super) fn announce_acceleration(&self, now: Option<labctl_driver::Acceleration>) {
        let Some(now) = now else { return };
        let Ok(mut g) = self.accel_announced.lock() else {
            return;
        };
        if g.as_ref().is_some_and(|a| a.engine == now.engine) {
            return;
        }
        emit_lab(
            &*self.reporter,
            EventKind::Acceleration {
                engine: now.engine.clone(),
                reason: now.reason.clone(),
                fallback: now.fallback,
            },
        );
        *g = Some(now);
    }

    pub(super) fn set_task(&self, t: usize, s: TaskState) {
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
            WaitEnd::Stopped(SkipReason::Internal)
        }
        let mut tasks = self.tasks.lock().map_err(poisoned)?;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(WaitEnd::Stopped(SkipReason::Interrupted));
            }
            let mut pending = false;
            for &d in &self.graph.deps[t] {
                match &tasks[d] {
                    TaskState::Blocked(Block::Passed(why)) => {
                        return Err(WaitEnd::Dep(why.clone()));
                    }
                    TaskState::Blocked(Block::Own(cause)) => {
                        return Err(WaitEnd::Dep(SkipReason::Dependency {
                            task: self.graph.label(self.lab, d),
                            cause: cause.clone(),
                        }));
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

/// A node's worker panicked (a bug): the node fails and whatever waits on its unfinished
/// steps is released as skipped, instead of waiting for ever.
pub(super) fn node_panicked(sh: &Shared<'_>, node: &labctl_spec::Node) -> NodeSummary {
    let error = "internal error: the node's worker thread panicked".to_string();
    {
        let mut tasks = sh.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for (t, task) in sh.graph.tasks.iter().enumerate() {
            if sh.lab.nodes[task.node].name == node.name && tasks[t] == TaskState::Pending {
                tasks[t] = TaskState::Blocked(Block::Own(DepCause::NodePanicked {
                    node: node.name.clone(),
                }));
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

pub(super) fn node_worker(sh: &Shared<'_>, node: &labctl_spec::Node) -> NodeSummary {
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
                    TaskState::Blocked(Block::Own(DepCause::NodeDown {
                        node: node.name.clone(),
                    })),
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
                        TaskState::Blocked(Block::Own(DepCause::NeverRun))
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
                            TaskState::Blocked(Block::Own(DepCause::Failed))
                        }
                        StepOutcome::Skipped { reason } => {
                            TaskState::Blocked(Block::Own(DepCause::Skipped {
                                reason: Box::new(reason.clone()),
                            }))
                        }
                        StepOutcome::NotInBundle { set, bundle, .. } => {
                            TaskState::Blocked(Block::Own(DepCause::NotInBundle {
                                set: set.clone(),
                                bundle: bundle.clone(),
                            }))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that panicked holding the slot count does not make later nodes look
    /// interrupted: the slot is still handed out (None means Ctrl-C only).
    #[test]
    fn a_poisoned_slot_count_still_hands_out_slots() {
        let slots = Slots {
            free: Mutex::new(1),
            cv: Condvar::new(),
        };
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = slots.free.lock();
                panic!("a node thread panics holding the lock");
            })
            .join()
        });
        assert!(slots.free.is_poisoned());
        let cancel = AtomicBool::new(false);
        let slot = slots.acquire(&cancel);
        assert!(slot.is_some(), "a poisoned lock is not Ctrl-C");
        drop(slot);
        assert_eq!(
            *slots.free.lock().unwrap_or_else(PoisonError::into_inner),
            1
        );
        cancel.store(true, Ordering::Relaxed);
        assert!(
            slots.acquire(&cancel).is_none(),
            "Ctrl-C still stops new work"
        );
    }
}
