//! libvirt driver errors (the binary words the advice for them).

use crate::DriverError;
use crate::exec::ToolError;

/// Where to get libvirt's client.
pub const NOT_INSTALLED_HINT: &str = "install libvirt's client: `apt-get install libvirt-clients` (Debian/Ubuntu; `libvirt-daemon-system` for a local hypervisor), `dnf install libvirt-client` (Fedora/RHEL); or set LABCTL_VIRSH to the path of virsh";

/// What went wrong with libvirt.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("libvirt's client is not installed (`{program}` not found)")]
    NotInstalled { program: String },
    #[error("cannot connect to libvirt at `{uri}`: {detail}")]
    Connect { uri: String, detail: String },
    #[error("machine `{vm}` has no snapshot `{name}`")]
    NoSuchSnapshot { vm: String, name: String },
    #[error("a libvirt domain named `{name}` already exists and was not created by labctl")]
    ForeignDomain { name: String },
    #[error("`{command}` printed output labctl does not understand: {message}")]
    Unexpected { command: String, message: String },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(ToolError),
}

impl From<ToolError> for LibvirtError {
    fn from(e: ToolError) -> LibvirtError {
        match e {
            ToolError::NotFound { program, .. } => LibvirtError::NotInstalled { program },
            other => LibvirtError::Tool(other),
        }
    }
}

impl From<LibvirtError> for DriverError {
    fn from(e: LibvirtError) -> DriverError {
        match e {
            // The runner treats a missing program as a host-tool error with a hint.
            LibvirtError::NotInstalled { program } => DriverError::Tool(ToolError::NotFound {
                program,
                hint: Some(NOT_INSTALLED_HINT.into()),
            }),
            LibvirtError::Tool(t) => DriverError::Tool(t),
            LibvirtError::Io { what, path, source } => DriverError::Io { what, path, source },
            other => DriverError::Libvirt(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_virsh_is_a_host_tool_error_with_the_install_hint() {
        let e: DriverError = LibvirtError::from(ToolError::NotFound {
            program: "virsh".into(),
            hint: None,
        })
        .into();
        match e {
            DriverError::Tool(ToolError::NotFound { program, hint }) => {
                assert_eq!(program, "virsh");
                assert!(hint.unwrap_or_default().contains("libvirt-clients"));
            }
            other => panic!("{other:?}"),
        }
    }
}
