//! VirtualBox driver errors (the binary words the advice for them).

use std::path::PathBuf;

use super::preflight::PreflightError;
use crate::DriverError;
use crate::exec::ToolError;

/// Where to get VirtualBox.
pub const NOT_INSTALLED_HINT: &str = "download VirtualBox from https://www.virtualbox.org/wiki/Downloads (on Windows run the installer, then open a new terminal); or set LABCTL_VBOXMANAGE to the path of VBoxManage";

/// What went wrong with VirtualBox.
#[derive(Debug, thiserror::Error)]
pub enum VBoxError {
    #[error("VirtualBox is not installed (`{program}` not found)")]
    NotInstalled { program: String },
    #[error("VirtualBox is installed but broken: `{command}` cannot run (exit status 126)")]
    Broken { command: String },
    #[error(
        "machine `{vm}` cannot start: hardware virtualization (Intel VT-x / AMD-V) is not available to VirtualBox ({detail})"
    )]
    NoHwVirt { vm: String, detail: String },
    #[error("machine `{vm}` cannot start: VirtualBox's kernel driver is not loaded ({detail})")]
    KernelDriver { vm: String, detail: String },
    #[error("a VirtualBox VM named `{name}` already exists and was not created by labctl")]
    ForeignVm { name: String },
    #[error(
        "the box of `{vm}` has no VirtualBox image (OVF next to {}); the virtualbox provider needs a VirtualBox box",
        disk.display()
    )]
    NoOvf { vm: String, disk: PathBuf },
    #[error("VirtualBox {found} is not supported: {reason}")]
    UnsupportedVersion { found: String, reason: String },
    #[error(
        "{} is not an ARM (arm64) box, and VirtualBox on Apple silicon runs only ARM guests",
        ovf.display()
    )]
    ArchMismatch { ovf: PathBuf },
    #[error(
        "snapshot name `{name}` cannot be used with VirtualBox: it prints snapshot names unescaped, so `\"`, `\\` and line breaks are not allowed"
    )]
    BadSnapshotName { name: String },
    #[error("machine `{vm}` has no snapshot `{name}`")]
    NoSuchSnapshot { vm: String, name: String },
    #[error("lab network `{network}` is not set up in VirtualBox")]
    NetworkNotUp { network: String },
    #[error(transparent)]
    HostOnlyRange(#[from] PreflightError),
    #[error("`{command}` printed output labctl does not understand: {message}")]
    Unexpected { command: String, message: String },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(ToolError),
}

impl VBoxError {
    /// A failed command's stderr (or stdout when stderr was empty).
    pub fn output(&self) -> Option<&str> {
        match self {
            VBoxError::Tool(ToolError::Failed { stderr, .. }) => Some(stderr),
            _ => None,
        }
    }
}

impl From<ToolError> for VBoxError {
    fn from(e: ToolError) -> VBoxError {
        match e {
            ToolError::NotFound { program, .. } => VBoxError::NotInstalled { program },
            other => VBoxError::Tool(other),
        }
    }
}

impl From<VBoxError> for DriverError {
    fn from(e: VBoxError) -> DriverError {
        match e {
            // The runner already treats a missing program as a host-tool error with a hint.
            VBoxError::NotInstalled { program } => DriverError::Tool(ToolError::NotFound {
                program,
                hint: Some(NOT_INSTALLED_HINT.into()),
            }),
            VBoxError::Tool(t) => DriverError::Tool(t),
            VBoxError::Io { what, path, source } => DriverError::Io { what, path, source },
            other => DriverError::VirtualBox(other),
        }
    }
}
