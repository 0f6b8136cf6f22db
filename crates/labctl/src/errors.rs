//! Errors the user can act on, their exit codes and hints. Only this crate picks exit codes.

use std::path::PathBuf;

use labctl_spec::SpecError;

/// Exit codes, documented in docs/internals.md.
pub(crate) mod code {
    pub(crate) const OK: u8 = 0;
    /// A node or step failed; the rest of the lab may be fine.
    pub(crate) const NODE_FAILED: u8 = 1;
    /// Bad command line.
    pub(crate) const USAGE: u8 = 2;
    /// lab.toml or a template is invalid.
    pub(crate) const SPEC: u8 = 3;
    /// A host program (qemu-system, qemu-img, VBoxManage, ssh) is missing or broken.
    pub(crate) const HOST_TOOL: u8 = 4;
    /// Anything else (I/O, state).
    pub(crate) const OTHER: u8 = 5;
    /// Interrupted by Ctrl-C.
    pub(crate) const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExpectedError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Runner(#[from] labctl_runner::RunnerError),
    #[error(transparent)]
    Box(#[from] labctl_driver::boxes::BoxError),
    #[error("refusing to destroy without confirmation")]
    NeedsForce,
    #[error("no published value named `{name}`")]
    UnknownValue { name: String },
    #[error("no lab.toml in {}", dir.display())]
    NoLab { dir: PathBuf },
    #[error("no bundled lab named `{name}`")]
    UnknownBundledLab { name: String, known: Vec<String> },
    #[error("{} already exists", path.display())]
    WouldOverwrite { path: PathBuf },
    #[error("no node named `{name}` in lab `{lab}`")]
    UnknownNode {
        name: String,
        lab: String,
        known: Vec<String>,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ExpectedError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ExpectedError::Spec(_) => code::SPEC,
            ExpectedError::UnknownNode { .. } => code::USAGE,
            ExpectedError::NoLab { .. }
            | ExpectedError::UnknownBundledLab { .. }
            | ExpectedError::WouldOverwrite { .. } => code::USAGE,
            ExpectedError::Box(labctl_driver::boxes::BoxError::Tool(
                labctl_driver::exec::ToolError::NotFound { .. },
            )) => code::HOST_TOOL,
            ExpectedError::Write { .. } | ExpectedError::Box(_) => code::OTHER,
            ExpectedError::NeedsForce | ExpectedError::UnknownValue { .. } => code::USAGE,
            ExpectedError::Runner(r) if r.is_host_tool() => code::HOST_TOOL,
            ExpectedError::Runner(labctl_runner::RunnerError::Hook { .. }) => code::NODE_FAILED,
            ExpectedError::Runner(labctl_runner::RunnerError::Interrupted) => code::INTERRUPTED,
            ExpectedError::Runner(
                labctl_runner::RunnerError::UnknownNode { .. }
                | labctl_runner::RunnerError::UnknownStep { .. },
            ) => code::USAGE,
            ExpectedError::Runner(_) => code::OTHER,
        }
    }

    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            ExpectedError::NoLab { .. } => Some(
                "run `labctl init` to write the default Kubernetes lab here, or pass `--lab PATH`"
                    .into(),
            ),
            ExpectedError::UnknownBundledLab { known, .. } => {
                Some(format!("bundled labs: {}", known.join(", ")))
            }
            ExpectedError::WouldOverwrite { .. } => Some("pass `--force` to overwrite it".into()),
            ExpectedError::UnknownNode { known, .. } => {
                Some(format!("nodes: {}", known.join(", ")))
            }
            ExpectedError::Spec(SpecError::Invalid { .. }) => {
                Some("fix the problems above, then `labctl validate`".into())
            }
            _ => None,
        }
    }
}
