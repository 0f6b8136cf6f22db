//! Errors the user can act on, their exit codes and hints. Only this crate picks exit codes.

use std::path::PathBuf;

use labctl_driver::boxes::BoxError;
use labctl_driver::exec::ToolError;
use labctl_driver::{DriverError, MachineStatus};
use labctl_runner::class::ClassError;
use labctl_runner::{NoGolden, NodeFailure, NodesOp, RunnerError};
use labctl_spec::SpecError;
use labctl_spec::class::PlaceError;

mod driver;

pub use driver::{libvirt_hint, vbox_hint};

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
    Runner(labctl_runner::RunnerError),
    /// A command failed on some of the nodes it worked on: each node with its own error
    /// ([`Self::details`] lists them), the exit code and hint from theirs.
    #[error("{}", nodes_headline(*op, *total, failures.len()))]
    Nodes {
        op: NodesOp,
        total: usize,
        failures: Vec<NodeFailure>,
    },
    #[error(transparent)]
    Box(#[from] labctl_driver::boxes::BoxError),
    #[error(transparent)]
    Bundle(#[from] labctl_bundle::Error),
    #[error("`{box_name}` names no guest OS release labctl knows")]
    UnknownRelease {
        box_name: String,
        known: Vec<String>,
    },
    #[error("refusing to destroy without confirmation")]
    NeedsForce,
    #[error("no published value named `{name}`")]
    UnknownValue { name: String },
    #[error("lab `{lab}` forwards no Kubernetes API port to the host")]
    NoKubeApi { lab: String },
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
    #[error("cannot import {}", path.display())]
    Import {
        path: PathBuf,
        #[source]
        source: crate::commands::import::ImportFailure,
    },
    #[error("{} is not a valid labctl config file: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no class file {}", path.display())]
    NoClass { path: PathBuf },
    /// A class error other than a spec or runner error (those convert to `Spec`/`Runner`).
    #[error(transparent)]
    Class(ClassError),
}

impl From<RunnerError> for ExpectedError {
    fn from(e: RunnerError) -> Self {
        match e {
            RunnerError::Nodes {
                op,
                total,
                failures,
            } => ExpectedError::Nodes {
                op,
                total,
                failures,
            },
            other => ExpectedError::Runner(other),
        }
    }
}

fn nodes_headline(op: NodesOp, total: usize, failed: usize) -> String {
    let what = match op {
        NodesOp::Stop => "stop",
        NodesOp::Destroy => "destroy",
        NodesOp::Snapshot => "snapshot",
        NodesOp::SetClock => "set the clock of",
    };
    let of = if failed == total {
        String::new()
    } else {
        format!(" of {total}")
    };
    let nodes = if failed == 1 && total == 1 {
        "node"
    } else {
        "nodes"
    };
    format!("cannot {what} {failed}{of} {nodes}")
}

/// The exit code of one runner error, as if it were the only one.
fn runner_code(r: &RunnerError) -> u8 {
    match r {
        r if r.is_host_tool() => code::HOST_TOOL,
        RunnerError::Hook { .. } => code::NODE_FAILED,
        RunnerError::Interrupted => code::INTERRUPTED,
        RunnerError::UnknownNode { .. }
        | RunnerError::UnknownStep { .. }
        | RunnerError::UnroutableUri { .. } => code::USAGE,
        RunnerError::Nodes { failures, .. } => nodes_code(failures),
        _ => code::OTHER,
    }
}

/// The nodes' common exit code (all missing a host program: 4), else 5.
fn nodes_code(failures: &[NodeFailure]) -> u8 {
    let mut codes = failures.iter().map(|f| runner_code(&f.error));
    match codes.next() {
        Some(first) if codes.all(|c| c == first) => first,
        _ => code::OTHER,
    }
}

impl From<ClassError> for ExpectedError {
    fn from(e: ClassError) -> Self {
        match e {
            ClassError::Spec(s) => ExpectedError::Spec(s),
            ClassError::Runner(r) => ExpectedError::from(r),
            other => ExpectedError::Class(other),
        }
    }
}

fn class_hint(e: &ClassError) -> Option<String> {
    Some(match e {
        ClassError::Place(PlaceError::NoFit(_)) => "nothing was placed or started: add a host, raise a host's `memory_mb`, or list fewer students".into(),
        ClassError::Place(PlaceError::HostGone { host, .. }) => format!("put host `{host}` back in class.toml; `labctl class destroy` can then remove the labs on it"),
        ClassError::Place(PlaceError::Overcommitted { .. }) => "placed labs are never moved: raise the host's `memory_mb` again, or `labctl class destroy` and start over".into(),
        ClassError::Capacity { host, .. } => format!("set `memory_mb` for host `{host}` in class.toml"),
        ClassError::Ports { .. } => "each student's lab moves the lab's host ports up by its slot times their span: give the lab lower ports (`ssh_port`, `forward` hosts) or a narrower span".into(),
        ClassError::UnknownStudent { known, .. } if known.is_empty() => "no student has a lab yet: `labctl class up` first".into(),
        ClassError::UnknownStudent { known, .. } => format!("students with a lab: {}", known.join(", ")),
        ClassError::CorruptState { .. } => "it lists where each student's lab is: fix it, or destroy the labs under .labctl/labs/ with `labctl destroy --lab DIR` before removing it".into(),
        _ => return None,
    })
}

impl ExpectedError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ExpectedError::Spec(_) | ExpectedError::Import { .. } => code::SPEC,
            ExpectedError::UnknownNode { .. } => code::USAGE,
            ExpectedError::NoLab { .. }
            | ExpectedError::UnknownBundledLab { .. }
            | ExpectedError::WouldOverwrite { .. }
            | ExpectedError::Config { .. } => code::USAGE,
            ExpectedError::Box(labctl_driver::boxes::BoxError::Tool(
                labctl_driver::exec::ToolError::NotFound { .. },
            )) => code::HOST_TOOL,
            ExpectedError::Write { .. } | ExpectedError::Box(_) => code::OTHER,
            ExpectedError::Bundle(b) => bundle_code(b),
            ExpectedError::UnknownRelease { .. } => code::USAGE,
            ExpectedError::NeedsForce
            | ExpectedError::UnknownValue { .. }
            | ExpectedError::NoKubeApi { .. } => code::USAGE,
            ExpectedError::Runner(r) => runner_code(r),
            ExpectedError::Nodes { failures, .. } => nodes_code(failures),
            ExpectedError::NoClass { .. }
            | ExpectedError::Class(ClassError::UnknownStudent { .. }) => code::USAGE,
            ExpectedError::Class(_) => code::OTHER,
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
            ExpectedError::NoKubeApi { .. } => Some(
                "add `[[role.master.forward]]` with `guest = 6443` and a free `host` port".into(),
            ),
            ExpectedError::UnknownNode { known, .. } => {
                Some(format!("nodes: {}", known.join(", ")))
            }
            ExpectedError::Spec(SpecError::Invalid { file, .. })
                if file.extension().is_some_and(|e| e == "toml")
                    && file.file_name().is_some_and(|f| f != "lab.toml")
                    && std::fs::read_to_string(file).is_ok_and(|t| t.contains("[class]")) =>
            {
                Some("fix the problems above, then run the class command again".into())
            }
            ExpectedError::Spec(SpecError::Invalid { .. }) => {
                Some("fix the problems above, then `labctl validate`".into())
            }
            ExpectedError::Runner(r) => runner_hint(r),
            ExpectedError::Nodes { failures, .. } => nodes_hint(failures),
            ExpectedError::Bundle(b) => bundle_hint(b),
            ExpectedError::UnknownRelease { known, .. } => Some(format!(
                "pass --os with one of: {}",
                known.join(", ")
            )),
            ExpectedError::NoClass { .. } => Some(
                "write a class.toml (docs/classroom.md) or pass `--class PATH`".into(),
            ),
            ExpectedError::Class(c) => class_hint(c),
            ExpectedError::Box(b) => box_hint(b),
            ExpectedError::Import {
                source:
                    crate::commands::import::ImportFailure::Import(
                        labctl_import::ImportError::Unevaluable { .. }
                        | labctl_import::ImportError::Unsupported { .. },
                    ),
                ..
            } => Some(
                "write that value as a literal in a copy of the Vagrantfile, then import the copy"
                    .into(),
            ),
            ExpectedError::Config { .. } => Some(
                "its keys are provider, accel, jobs, egress and bundle (docs/configuration.md); fix the file or move it away"
                    .into(),
            ),
            ExpectedError::Import { .. }
            | ExpectedError::NeedsForce
            | ExpectedError::UnknownValue { .. }
            | ExpectedError::Write { .. }
            | ExpectedError::Spec(_) => None,
        }
    }
}

fn bundle_code(e: &labctl_bundle::Error) -> u8 {
    use labctl_bundle::Error as B;
    match e {
        B::BadName(_) | B::NotFound(_) | B::Exists(_) => code::USAGE,
        B::Tool(ToolError::NotFound { .. }) => code::HOST_TOOL,
        _ => code::OTHER,
    }
}

/// What to do about a bundle error.
fn bundle_hint(e: &labctl_bundle::Error) -> Option<String> {
    use labctl_bundle::Error as B;
    match e {
        B::BadName(_) => Some(
            "a bundle name is 1-64 of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit"
                .into(),
        ),
        B::NotFound(_) => Some(
            "`labctl bundle list` shows the bundles here; make one with `labctl bundle build --lab PATH` or `labctl bundle import FILE`"
                .into(),
        ),
        B::Exists(name) => Some(format!(
            "remove it first with `labctl bundle remove {name}`"
        )),
        B::Tampered { .. } | B::MissingFile { .. } | B::Unlisted { .. } | B::UnsafePath(_) => {
            Some("nothing was installed; get a fresh copy of the archive from its maker".into())
        }
        B::Tool(ToolError::NotFound { program, .. }) if program.contains("gpg") => {
            Some("install GnuPG (`apt-get install gnupg`): bundles are signed with it".into())
        }
        B::Tool(ToolError::NotFound { .. }) => {
            Some("bundle build needs apt-get (a Debian or Ubuntu host); --offline --from-dir DIR needs only gpg".into())
        }
        _ => None,
    }
}

impl ExpectedError {
    /// Lines printed under the headline: for [`ExpectedError::Nodes`], each node with its
    /// error and that error's causes.
    pub(crate) fn details(&self) -> Vec<String> {
        let ExpectedError::Nodes { failures, .. } = self else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for f in failures {
            out.push(format!("{}: {}", f.node, f.error));
            let mut source = std::error::Error::source(&f.error);
            while let Some(cause) = source {
                out.push(format!("  caused by: {cause}"));
                source = cause.source();
            }
        }
        out
    }
}

/// The nodes' hints, each once, in node order.
fn nodes_hint(failures: &[NodeFailure]) -> Option<String> {
    let mut hints: Vec<String> = Vec::new();
    for h in failures.iter().filter_map(|f| runner_hint(&f.error)) {
        if !hints.contains(&h) {
            hints.push(h);
        }
    }
    (!hints.is_empty()).then(|| hints.join("; "))
}

/// What to do about a runner error. The runner returns typed errors; the wording (and every
/// `labctl …` command in it) lives here.
fn runner_hint(e: &RunnerError) -> Option<String> {
    match e {
        RunnerError::BoxMissing {
            built: Some(path), ..
        } => Some(build_box_hint(path)),
        RunnerError::BoxMissing { name, built: None } => Some(add_box_hint(name)),
        RunnerError::NotUp => Some("run `labctl up` first".into()),
        RunnerError::UnroutableUri { .. } => Some(
            "labctl reaches a remote host's guests through `qemu+ssh://user@host/system`; \
             use that URI (or `qemu:///system` on this machine) with `--uri`, LABCTL_URI or \
             lab.toml"
                .into(),
        ),
        RunnerError::ForeignState { .. } => Some(
            "if the lab was moved here, `labctl adopt` makes this directory its home; if it is a copy, `labctl destroy --forget` drops the copied state (it stops and deletes nothing outside this directory), then `labctl up` builds the copy's own VMs".into(),
        ),
        RunnerError::CannotAdopt {
            reason: labctl_runner::AdoptRefusal::StillThere { .. },
        } => Some(
            "`labctl destroy --forget` drops the copied state (nothing outside this directory is touched); then `labctl up` builds this copy's own VMs".into(),
        ),
        RunnerError::CannotAdopt {
            reason: labctl_runner::AdoptRefusal::StillRunning { .. },
        } => Some(
            "move the lab back and `labctl halt` it, then move it again (or end that process yourself)".into(),
        ),
        RunnerError::BoxInUse { .. } => Some(
            "every node's disk is an overlay on the box's disk: `labctl destroy` those labs first (or add the new box under another name)".into(),
        ),
        RunnerError::NotForeign => {
            Some("`labctl destroy` removes this lab's VMs and state".into())
        }
        RunnerError::UnsafeSshValue { .. } => Some(
            "the value is refused so that it cannot add options to the OpenSSH configuration; check .labctl/state.json and the box's metadata".into(),
        ),
        RunnerError::NotRunning { nodes } => Some(not_running_hint(nodes)),
        RunnerError::UnknownNode { known, .. } => Some(format!("nodes: {}", known.join(", "))),
        RunnerError::UnknownStep { known, .. } => Some(format!("steps: {}", known.join(", "))),
        RunnerError::UnsafeDir { .. } => Some(
            "it holds the VMs' control sockets: remove it, or set XDG_RUNTIME_DIR to a directory only you can write".into(),
        ),
        RunnerError::Locked { holder, .. } => Some(if holder.is_empty() {
            "wait for the other labctl to finish, or stop it with Ctrl-C".into()
        } else {
            format!("wait for the other labctl ({holder}) to finish, or stop it with Ctrl-C")
        }),
        RunnerError::CorruptRegistry { .. } => Some(
            "it lists the labs on this host for `labctl list`, `--lab NAME` and `labctl box remove`: fix it, or move it away (each lab registers again on its next `labctl up`)".into(),
        ),
        RunnerError::Nodes { failures, .. } => nodes_hint(failures),
        RunnerError::CorruptState { .. } => {
            Some("`labctl destroy --forget` removes .labctl/ without stopping anything (end the lab's VMs yourself if some still run)".into())
        }
        RunnerError::Interrupted => Some("`labctl up` continues where this one stopped".into()),
        RunnerError::NoGolden { reason } => Some(match reason {
            NoGolden::NotTaken => "the golden snapshot is saved after a fully successful `labctl up`; until then, `labctl reset --rebuild NODE` rebuilds a node from the box".into(),
            NoGolden::ValuesChanged | NoGolden::NodeNotIncluded { .. } => "`labctl reset --rebuild NODE` rebuilds it; `labctl reset --all` returns the whole lab to its golden state".into(),
        }),
        RunnerError::Driver(d) => driver_hint(d),
        RunnerError::Box(b) => box_hint(b),
        RunnerError::Provider { .. } if cfg!(windows) => Some(
            "on Windows: `provider = \"virtualbox\"`, or labctl inside WSL2 for qemu (docs/virtualbox.md)".into(),
        ),
        RunnerError::Provider { .. } => Some("providers: qemu, virtualbox".into()),
        RunnerError::BundleMissing { .. } => Some(
            "`labctl bundle list` shows the bundles on this host; `labctl bundle build --lab DIR` or `labctl bundle import FILE` makes one; or drop `bundle` / `--bundle`".into(),
        ),
        RunnerError::BundleServer { .. } => Some(
            "bundles are served to QEMU and VirtualBox guests; the server's log is bundle-server.log in labctl's data directory".into(),
        ),
        RunnerError::Io { .. }
        | RunnerError::Key(_)
        | RunnerError::Ssh(_)
        | RunnerError::Render(_)
        | RunnerError::Hook { .. }
        | RunnerError::Internal { .. } => None,
    }
}

/// How to get the default box: `scripts/build-box.sh` needs root, not necessarily sudo.
pub(crate) fn build_box_hint(built: &std::path::Path) -> String {
    format!(
        "build it once, as root, in labctl's source tree: `sudo scripts/build-box.sh` (or `scripts/build-box.sh` in a root shell); labctl then adds {} by itself",
        built.display()
    )
}

pub(crate) fn add_box_hint(name: &str) -> String {
    format!("add it with `labctl box add {name} FILE|URL`")
}

/// `labctl up NODE…` for the nodes that are not running.
fn not_running_hint(nodes: &[(String, MachineStatus)]) -> String {
    let names: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    let what = if nodes
        .iter()
        .all(|(_, s)| matches!(s, MachineStatus::NotCreated))
    {
        "creates and provisions"
    } else if nodes
        .iter()
        .all(|(_, s)| matches!(s, MachineStatus::Stopped))
    {
        "starts"
    } else {
        "starts or creates"
    };
    format!(
        "`labctl up {}` {what} {}; `labctl status` shows every node",
        names.join(" "),
        if nodes.len() == 1 { "it" } else { "them" }
    )
}

fn driver_hint(e: &DriverError) -> Option<String> {
    match e {
        DriverError::Tool(t) => tool_hint(t),
        DriverError::VirtualBox(v) => vbox_hint(v),
        DriverError::Libvirt(l) => libvirt_hint(l),
        _ => None,
    }
}

fn box_hint(e: &BoxError) -> Option<String> {
    match e {
        BoxError::Tool(t) => tool_hint(t),
        BoxError::NotFound { known, .. } if !known.is_empty() => {
            Some(format!("installed boxes: {}", known.join(", ")))
        }
        BoxError::NotFound { .. } => Some("no box is installed; see `labctl box add`".into()),
        BoxError::Exists { .. } => Some("pass `--force` to replace it".into()),
        BoxError::Insecure { .. } => {
            Some("use an https:// URL, or pass `--insecure` if you trust the network".into())
        }
        BoxError::Digest { .. } => Some(
            "the file is not the one you pinned: check the digest with the box's publisher".into(),
        ),
        BoxError::Download { source, .. } => tool_hint(source),
        BoxError::Entry { .. } | BoxError::Metadata { .. } | BoxError::Image { .. } => Some(
            "labctl refuses boxes that could make it or QEMU read files outside the box (docs/security.md); get the box from its publisher again, or rebuild it".into(),
        ),
        _ => None,
    }
}

fn tool_hint(e: &ToolError) -> Option<String> {
    match e {
        ToolError::NotFound { hint, .. } => hint.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(node: &str, error: DriverError) -> NodeFailure {
        NodeFailure {
            node: node.into(),
            error: RunnerError::Driver(error),
        }
    }

    fn failed(status: &str) -> DriverError {
        DriverError::Tool(ToolError::Failed {
            command: "qemu-img snapshot -c provisioned disk.qcow2".into(),
            status: status.into(),
            stderr: String::new(),
        })
    }

    #[test]
    fn a_failure_on_two_of_three_nodes_lists_both_with_their_own_error() {
        let e = ExpectedError::from(RunnerError::Nodes {
            op: NodesOp::Stop,
            total: 3,
            failures: vec![
                failure("cp1", failed("exit status: 1")),
                failure("w2", DriverError::NotCreated { id: "w2-id".into() }),
            ],
        });
        assert_eq!(e.to_string(), "cannot stop 2 of 3 nodes");
        assert_eq!(
            e.details(),
            [
                "cp1: `qemu-img snapshot -c provisioned disk.qcow2` failed (exit status: 1)",
                "w2: machine `w2-id` is not created",
            ]
        );
        assert_eq!(e.exit_code(), code::OTHER);
    }

    #[test]
    fn the_nodes_exit_code_is_theirs_when_they_agree() {
        let missing = || {
            DriverError::Tool(ToolError::NotFound {
                program: "qemu-system-x86_64".into(),
                hint: Some("install qemu-system-x86".into()),
            })
        };
        let e = ExpectedError::from(RunnerError::Nodes {
            op: NodesOp::Destroy,
            total: 2,
            failures: vec![failure("a", missing()), failure("b", missing())],
        });
        assert_eq!(e.to_string(), "cannot destroy 2 nodes");
        assert_eq!(e.exit_code(), code::HOST_TOOL);
        assert_eq!(e.hint().as_deref(), Some("install qemu-system-x86"));
    }
}
