//! One step's execution and its record.

use std::time::{Instant, SystemTime};

use labctl_driver::MachineStatus;
use labctl_spec::RunPolicy;
use labctl_ssh::SshError;

use super::Selection;
use super::node::machine_of;
use super::schedule::Shared;
use crate::events::{EventKind, Notice, SkipReason, StepOutcome, emit, ms};
use crate::guest::Guest;
use crate::provision::run_step;
use crate::state::{StepRecord, save_values};

pub(super) fn step_outcome(
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
            reason: SkipReason::OnRequest,
        };
    }
    // A step that needs the internet runs with egress off only when the attached bundle
    // holds its package set complete for the lab's OS.
    if step.needs_egress && !sh.lab.egress {
        match (step.packages.as_deref(), sh.bundle.as_ref()) {
            (Some(set), Some(b)) => {
                if let Err(cause) = b.covers(set) {
                    return StepOutcome::NotInBundle {
                        set: set.to_string(),
                        bundle: b.name.clone(),
                        cause,
                    };
                }
            }
            _ => {
                return StepOutcome::Skipped {
                    reason: SkipReason::NeedsEgress,
                };
            }
        }
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
                reason: SkipReason::Internal,
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
            reason: SkipReason::Interrupted,
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
                reason: SkipReason::Interrupted,
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
                notice: Notice::ForgetNotSaved {
                    step: step.to_string(),
                    error: e.to_string(),
                },
            },
        );
    }
}
