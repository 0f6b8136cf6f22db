//! What the runner tells the reporter. The runner never prints.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// A node's bring-up phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Creating,
    Booting,
    WaitingSsh,
    Configuring,
    Ready,
    Stopping,
    Stopped,
    Destroyed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "creating",
            Phase::Booting => "booting",
            Phase::WaitingSsh => "waiting for SSH",
            Phase::Configuring => "configuring",
            Phase::Ready => "ready",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Destroyed => "destroyed",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum StepOutcome {
    Done,
    /// Done before with the same rendered content.
    UpToDate,
    Failed {
        status: Option<i32>,
        reason: String,
        tail: String,
    },
    Skipped {
        reason: SkipReason,
    },
    /// Skipped: the step needs the guest's internet, egress is off, and the attached bundle
    /// does not hold the step's package set (`set`) for the lab's OS; `cause` says what it
    /// lacks. The binary words it.
    NotInBundle {
        set: String,
        bundle: String,
        cause: crate::bundle::NotCovered,
    },
}

/// Something the user should know that is not an error. The binary words it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "notice")]
pub enum Notice {
    /// `egress = false`, and the provider's NAT cannot cut the guests off the internet.
    EgressNotEnforced { provider: labctl_spec::Provider },
    /// A stopped node's host port was in use before the start: it moved to `new`.
    PortInUse { port: u16, new: u16 },
    /// The machine did not start because its host port `port` was taken: it moved to `new`.
    PortTaken { port: u16, new: u16 },
    /// A step that did not succeed is no longer recorded as done, but the state file could
    /// not be saved (the end of the run saves it again).
    ForgetNotSaved { step: String, error: String },
    /// A published value is missing or expired, and `consumer` (`node.step`) needs it: its
    /// publisher `step` runs again first.
    StaleValue {
        value: String,
        why: Staleness,
        consumer: String,
        step: String,
    },
    /// A snapshot operation finished on `nodes` nodes.
    SnapshotDone { nodes: usize, ms: u64 },
    /// The guest clock was set to the host's (after a snapshot restore).
    ClockSet,
    /// The golden snapshot `name` of every node was saved (`reset` returns to it).
    GoldenSaved { name: String, ms: u64 },
    /// A node's `check` hook passed.
    CheckPassed,
    /// A node returns to the golden snapshot `name`.
    RestoringGolden { name: String },
    /// The rest of the lab ran the node's `forget` hook.
    Forgotten,
    /// A node's disk is removed and rebuilt from the box.
    Rebuilding,
    /// `halt`: the machine was not running.
    WasNotRunning,
    /// `halt`: the guest powered off by itself.
    PoweredOff { ms: u64 },
    /// `halt`: the machine was forced off, and why.
    ForcedOff { why: String },
    /// The registry of labs on this host (`path`) could not be updated; the command itself
    /// succeeded. A stale entry is skipped by its readers.
    RegistryNotSaved {
        path: std::path::PathBuf,
        error: String,
    },
}

/// Why a published value must be published again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Staleness {
    /// The value is not stored (e.g. `.labctl/values.json` was lost).
    Missing,
    /// Published `age` seconds ago; good for `ttl` seconds.
    Expired { age: u64, ttl: u64 },
}

/// Why a step was skipped. The binary words it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SkipReason {
    /// `run = "never"`: it runs only when `provision --step` names it.
    OnRequest,
    /// It needs the guest's internet, and egress is off.
    NeedsEgress,
    /// Ctrl-C came before it started, or while it ran.
    Interrupted,
    /// An internal lock is poisoned (a node thread panicked): a bug, not Ctrl-C.
    Internal,
    /// It needs the guest's internet, egress is off, and the attached `bundle` does not
    /// hold its package `set` (`cause`: what is missing). The reporter's view of
    /// [`StepOutcome::NotInBundle`], so that both are grouped and worded alike.
    NotInBundle {
        set: String,
        bundle: String,
        cause: crate::bundle::NotCovered,
    },
    /// A step it waits for did not succeed. `task` names it (`node.step`).
    Dependency { task: String, cause: DepCause },
}

/// What happened to the step a skipped step waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DepCause {
    /// It ran and failed.
    Failed,
    /// It was not selected in this run and has no record.
    NeverRun,
    /// Its node is outside this run, and it has no record.
    NotInRun { node: String },
    /// Its node did not come up.
    NodeDown { node: String },
    /// Its node's worker thread panicked.
    NodePanicked { node: String },
    /// It was itself skipped for a reason of its own (not a dependency).
    Skipped { reason: Box<SkipReason> },
    /// It was skipped because the attached `bundle` does not hold its package `set`.
    NotInBundle { set: String, bundle: String },
}

impl SkipReason {
    /// Skipped because something it waits for did not succeed (the reason names it).
    pub fn is_dependency(&self) -> bool {
        matches!(self, SkipReason::Dependency { .. })
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    Phase {
        phase: Phase,
    },
    StepStarted {
        step: String,
        index: usize,
        total: usize,
    },
    StepOutput {
        step: String,
        line: String,
    },
    StepFinished {
        step: String,
        #[serde(flatten)]
        outcome: StepOutcome,
        duration_ms: u64,
    },
    NodeFailed {
        error: String,
    },
    Notice {
        #[serde(flatten)]
        notice: Notice,
    },
    /// What the lab's machines run on (KVM or TCG) and why; `fallback` when a node under
    /// KVM failed and the lab went on under TCG.
    Acceleration {
        engine: String,
        reason: String,
        fallback: bool,
    },
}

/// An event about a node (or about the whole lab, when `node` is `None`), with its time.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The node; `None`: the lab (`""` in JSON).
    #[serde(serialize_with = "lab_is_empty")]
    pub node: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
    #[serde(with = "unix_ms")]
    pub time: SystemTime,
}

fn lab_is_empty<S: serde::Serializer>(node: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(node.as_deref().unwrap_or(""))
}

mod unix_ms {
    pub(super) fn serialize<S: serde::Serializer>(
        t: &std::time::SystemTime,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// Where events go.
pub trait Reporter: Send + Sync {
    fn event(&self, e: Event);
}

/// Emit an event about a node.
pub(crate) fn emit(r: &dyn Reporter, node: &str, kind: EventKind) {
    r.event(Event {
        node: Some(node.to_string()),
        kind,
        time: SystemTime::now(),
    });
}

/// Emit an event about the whole lab.
pub(crate) fn emit_lab(r: &dyn Reporter, kind: EventKind) {
    r.event(Event {
        node: None,
        kind,
        time: SystemTime::now(),
    });
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A reporter that keeps events (tests, summaries).
#[derive(Debug, Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Collect {
    fn event(&self, e: Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e);
        }
    }
}
