//! `up` and `provision`: bring nodes up in parallel, then run the step graph, each step as
//! soon as what it waits for has succeeded. A failure stops only what depends on it.
//!
//! - [`reconcile`]: checks the request, reconciles the recorded state with the machines,
//!   runs the node workers and decides the golden snapshot.
//! - [`schedule`]: the task table, `--jobs` slots and the per-node worker that walks its steps.
//! - [`node`]: one node's bring-up (create, boot with port retry, SSH, guest configuration).
//! - [`step`]: one step's execution and its record.

mod node;
mod reconcile;
mod schedule;
mod step;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use labctl_driver::Driver;
use labctl_spec::Lab;

use crate::RunnerError;
use crate::events::{Reporter, StepOutcome};
use crate::guest::Ssh;
use crate::machines::{self, Env};

pub(crate) use reconcile::up_with;

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
        &machines::opener(env),
        &Ssh,
    )
}

/// Opens the driver for a provider (production: [`machines::driver_for`]).
/// Its arguments: the provider and the lab's libvirt URI (from lab.toml or the state).
pub(crate) type OpenDriver<'a> =
    &'a dyn Fn(labctl_spec::Provider, Option<&str>) -> Result<Arc<dyn Driver>, RunnerError>;
