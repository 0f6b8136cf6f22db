//! Orchestration: turns a validated lab into machines, brings them up in parallel, provisions
//! them over SSH following the step graph, and records state. It speaks only in events
//! ([`events::Reporter`]) and typed errors; the binary owns the terminal.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod bundle;
pub mod class;
pub mod doctor;
pub mod events;
mod expiry;
mod guest;
mod machines;
mod ops;
#[cfg(test)]
mod ops_tests;
mod provision;
mod registry;
mod reset;
pub mod route;
mod ssh_config;
pub mod state;
#[cfg(test)]
mod testing;
mod up;
#[cfg(test)]
mod up_tests;

use std::ffi::OsString;
use std::path::PathBuf;

pub use machines::{Env, driver_for, driver_for_state, driver_with_uri};
pub use ops::*;
pub use registry::{
    LabListing, check_box_unused, find_lab, labs_using_box, list, release_box, remove_box,
};
pub use reset::{
    GOLDEN, NodeReset, ResetHow, ResetOptions, ResetSummary, SnapshotCmd, reset, snapshot,
};
pub use ssh_config::*;
pub use up::{NodeSummary, Selection, StepSummary, UpOptions, UpSummary, up};

/// Runner errors.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another labctl is working on this lab ({holder}); lock file {}", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("lab state {} is unreadable: {message}", path.display())]
    CorruptState { path: PathBuf, message: String },
    /// The registry of labs on this host (`labs.json`) exists but cannot be read.
    #[error("the registry of labs {} is unreadable: {message}", path.display())]
    CorruptRegistry { path: PathBuf, message: String },
    #[error("the lab has not been brought up yet")]
    NotUp,
    #[error(
        "this lab's state belongs to another directory ({}): the lab was copied or moved here ({})",
        if recorded_dir.as_os_str().is_empty() { recorded_id.as_str().into() } else { recorded_dir.display().to_string() },
        dir.display()
    )]
    ForeignState {
        recorded_dir: PathBuf,
        recorded_id: String,
        dir: PathBuf,
    },
    #[error("{node}: unsafe {what} for ssh: \"{value}\"")]
    UnsafeSshValue {
        node: String,
        what: &'static str,
        value: String,
    },
    #[error("box `{name}` is used by {}", labs.iter().map(|(l, d, n)| format!("lab {l} in {} ({})", d.display(), n.join(", "))).collect::<Vec<_>>().join("; "))]
    BoxInUse {
        name: String,
        /// (lab name, lab directory, its nodes)
        labs: Vec<(String, PathBuf, Vec<String>)>,
    },
    #[error("cannot adopt: {reason}")]
    CannotAdopt { reason: AdoptRefusal },
    #[error("the state belongs to this lab; `--forget` is for a copied or moved lab's state")]
    NotForeign,
    #[error("no node named `{name}`")]
    UnknownNode { name: String, known: Vec<String> },
    #[error("no step named `{name}` on the chosen nodes")]
    UnknownStep { name: String, known: Vec<String> },
    #[error("{} is not a private directory of this user", path.display())]
    UnsafeDir { path: PathBuf },
    /// `built` is where the locally built default box is picked up from (None for other boxes).
    #[error("box `{name}` is not installed")]
    BoxMissing {
        name: String,
        built: Option<PathBuf>,
    },
    #[error(transparent)]
    Box(#[from] labctl_driver::boxes::BoxError),
    #[error(transparent)]
    Driver(#[from] labctl_driver::DriverError),
    #[error(transparent)]
    Key(#[from] labctl_ssh::keys::KeyError),
    #[error(transparent)]
    Ssh(#[from] labctl_ssh::SshError),
    #[error("provider `{provider}` is not available: {reason}")]
    Provider { provider: String, reason: String },
    /// A libvirt connection URI labctl cannot route guests through: the SSH endpoint of the
    /// host it names is unknown, so no connection to a guest is made.
    #[error("libvirt URI `{uri}`: {reason}")]
    UnroutableUri { uri: String, reason: String },
    #[error("{0}")]
    Render(#[from] labctl_spec::RenderFailure),
    #[error("interrupted")]
    Interrupted,
    /// The lab's bundle is not on this host (or cannot be read).
    #[error("bundle `{name}` cannot be used: {reason}")]
    BundleMissing { name: String, reason: String },
    /// The host's bundle server cannot be started or reached by guests.
    #[error("the bundle server cannot serve guests: {reason}")]
    BundleServer { reason: String },
    /// A bug in labctl: a worker thread panicked, or a lock it held is poisoned. Not Ctrl-C.
    #[error("internal error: {what}")]
    Internal { what: &'static str },
    #[error("cannot reset from the golden snapshot: {reason}")]
    NoGolden { reason: NoGolden },
    /// Nodes a command needs running (or created) are not.
    #[error("{}", not_running_text(nodes))]
    NotRunning {
        /// (node, state): `Stopped` or `NotCreated`.
        nodes: Vec<(String, labctl_driver::MachineStatus)>,
    },
    /// A command that works on several nodes at once failed on some of them, each with its
    /// own error (none is dropped); the others were done. The binary words the list.
    #[error("{op} failed on {} of {total} nodes: {}", failures.len(), failures.iter().map(|f| format!("{}: {}", f.node, f.error)).collect::<Vec<_>>().join("; "))]
    Nodes {
        op: NodesOp,
        /// How many nodes the command worked on.
        total: usize,
        /// In node order.
        failures: Vec<NodeFailure>,
    },
    #[error("{node}: {what} failed: {message}")]
    Hook {
        node: String,
        what: String,
        message: String,
    },
}

impl RunnerError {
    /// Whether a host program is missing or broken (exit code 4 in the binary).
    pub fn is_host_tool(&self) -> bool {
        matches!(
            self,
            RunnerError::Driver(labctl_driver::DriverError::Tool(
                labctl_driver::exec::ToolError::NotFound { .. }
            )) | RunnerError::Box(labctl_driver::boxes::BoxError::Tool(
                labctl_driver::exec::ToolError::NotFound { .. }
            )) | RunnerError::Provider { .. }
        )
    }
}

/// What a command was doing to each node when [`RunnerError::Nodes`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodesOp {
    /// `halt`.
    Stop,
    /// `destroy`.
    Destroy,
    /// `snapshot`, `reset` (save, restore, delete or list; pause and resume around them).
    Snapshot,
    /// Setting the guests' clocks after a restore.
    SetClock,
}

impl std::fmt::Display for NodesOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodesOp::Stop => "stop",
            NodesOp::Destroy => "destroy",
            NodesOp::Snapshot => "snapshot",
            NodesOp::SetClock => "setting the clock",
        })
    }
}

/// One node's error in [`RunnerError::Nodes`].
#[derive(Debug)]
pub struct NodeFailure {
    pub node: String,
    pub error: RunnerError,
}

/// [`RunnerError::Nodes`] from per-node results, or `Ok` when none failed.
pub(crate) fn nodes_result(
    op: NodesOp,
    total: usize,
    failures: Vec<NodeFailure>,
) -> Result<(), RunnerError> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(RunnerError::Nodes {
            op,
            total,
            failures,
        })
    }
}

/// Why `adopt` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptRefusal {
    #[error("the lab is still in {}, so this directory is a copy", old.display())]
    StillThere { old: PathBuf },
    #[error("{node} still runs from the old place (pid {pid})")]
    StillRunning { node: String, pid: u32 },
}

/// Why a node cannot be reset from the golden snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoGolden {
    #[error("there is no golden snapshot yet")]
    NotTaken,
    #[error(
        "values published since the golden snapshot (e.g. a new join token) differ, so one node restored alone would not match the others"
    )]
    ValuesChanged,
    #[error("{node} is not in the golden snapshot")]
    NodeNotIncluded { node: String },
}

fn not_running_text(nodes: &[(String, labctl_driver::MachineStatus)]) -> String {
    let list: Vec<String> = nodes
        .iter()
        .map(|(n, s)| {
            let state = match s {
                labctl_driver::MachineStatus::NotCreated => "not created",
                labctl_driver::MachineStatus::Stopped => "stopped",
                labctl_driver::MachineStatus::Running { .. } => "running",
            };
            format!("{n} is {state}")
        })
        .collect();
    format!(
        "{} not running: {}",
        if nodes.len() == 1 { "node" } else { "nodes" },
        list.join(", ")
    )
}

/// The arguments that start the lab switch from the labctl binary.
pub fn switch_command(exe: PathBuf) -> Vec<OsString> {
    vec![exe.into_os_string(), OsString::from("__switch")]
}

/// The arguments that relay one guest connection to a host service (the port is appended).
pub fn relay_command(exe: PathBuf) -> Vec<OsString> {
    vec![exe.into_os_string(), OsString::from("__relay")]
}

/// The arguments that start the bundle server (`--port P` is appended).
pub fn bundle_server_command(exe: PathBuf) -> Vec<OsString> {
    vec![exe.into_os_string(), OsString::from("__bundle-server")]
}
