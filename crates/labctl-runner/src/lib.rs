//! Orchestration: turns a validated lab into machines, brings them up in parallel, provisions
//! them over SSH following the step graph, and records state. It speaks only in events
//! ([`events::Reporter`]) and typed errors; the binary owns the terminal.

pub mod events;
mod machines;
mod ops;
mod provision;
mod reset;
pub mod state;
mod up;

use std::ffi::OsString;
use std::path::PathBuf;

pub use machines::{Env, driver_for};
pub use ops::*;
pub use reset::{
    GOLDEN, LabListing, ResetOptions, ResetSummary, SnapshotCmd, find_lab, list, reset, snapshot,
};
pub use up::{NodeSummary, Selection, UpOptions, UpSummary, up};

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
    #[error("the lab has not been brought up yet")]
    NotUp,
    #[error("no node named `{name}`")]
    UnknownNode { name: String, known: Vec<String> },
    #[error("no step named `{name}` on the chosen nodes")]
    UnknownStep { name: String, known: Vec<String> },
    #[error("{} is not a private directory of this user", path.display())]
    UnsafeDir { path: PathBuf },
    #[error("box `{name}` is not installed")]
    BoxMissing { name: String, hint: String },
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
    #[error("{0}")]
    Render(#[from] labctl_spec::RenderFailure),
    #[error("interrupted")]
    Interrupted,
    #[error("cannot reset from the golden snapshot: {why}")]
    NoGolden { why: String },
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

    /// A hint for the user, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            RunnerError::BoxMissing { hint, .. } => Some(hint.clone()),
            RunnerError::NotUp => Some("run `labctl up` first".into()),
            RunnerError::UnknownNode { known, .. } => Some(format!("nodes: {}", known.join(", "))),
            RunnerError::UnknownStep { known, .. } => Some(format!("steps: {}", known.join(", "))),
            RunnerError::UnsafeDir { .. } => Some(
                "it holds the VMs' control sockets: remove it, or set XDG_RUNTIME_DIR to a directory only you can write".into(),
            ),
            RunnerError::Driver(labctl_driver::DriverError::VirtualBox(e)) => e.hint(),
            RunnerError::Locked { .. } => {
                Some("wait for it to finish, or stop it with Ctrl-C".into())
            }
            RunnerError::CorruptState { .. } => {
                Some("`labctl destroy -f` stops the VMs it can find and removes .labctl/".into())
            }
            RunnerError::Driver(labctl_driver::DriverError::Tool(
                labctl_driver::exec::ToolError::NotFound { hint: Some(h), .. },
            )) => Some(h.clone()),
            RunnerError::Interrupted => Some("`labctl up` continues where this one stopped".into()),
            RunnerError::NoGolden { .. } => Some("`labctl reset --rebuild NODE` rebuilds it; `labctl reset --all` returns the whole lab to its golden state".into()),
            _ => None,
        }
    }
}

/// The arguments that start the lab switch from the labctl binary.
pub fn switch_command(exe: PathBuf) -> Vec<OsString> {
    vec![exe.into_os_string(), OsString::from("__switch")]
}
