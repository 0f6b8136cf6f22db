//! `labctl doctor`: what this host has, against what a lab needs, checked before a class.
//! Each check is a typed [`Finding`] with a [`Level`]; the binary words them (and the fixes)
//! and picks the exit code.
mod programs;
mod resources;

use std::path::PathBuf;

use labctl_driver::boxes::FileCheck;
use labctl_driver::qemu::accel::Engine;
use labctl_driver::vbox::PreflightError;
use labctl_spec::{Lab, Provider};
use serde::Serialize;

use crate::machines::Env;

use programs::{accel_finding, program, virtualbox};
use resources::{boxes, needs};

/// Disk a node's overlay may grow by while it is provisioned (packages, container images).
pub const NODE_DISK_MARGIN_MB: u64 = 2048;
/// The oldest QEMU labctl runs: `-netdev dgram` (the lab networks) came with 7.2.
pub const QEMU_MIN: (u32, u32) = (7, 2);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// A host program doctor looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Tool {
    #[serde(rename = "qemu-system-x86_64")]
    QemuSystem,
    #[serde(rename = "qemu-img")]
    QemuImg,
    #[serde(rename = "ssh")]
    Ssh,
    #[serde(rename = "VBoxManage")]
    VBoxManage,
}

impl Tool {
    pub fn program(self) -> &'static str {
        match self {
            Tool::QemuSystem => "qemu-system-x86_64",
            Tool::QemuImg => "qemu-img",
            Tool::Ssh => "ssh",
            Tool::VBoxManage => "VBoxManage",
        }
    }

    /// The environment variable that overrides where it is.
    pub fn env_override(self) -> &'static str {
        match self {
            Tool::QemuSystem => "LABCTL_QEMU_SYSTEM",
            Tool::QemuImg => "LABCTL_QEMU_IMG",
            Tool::Ssh => "LABCTL_SSH",
            Tool::VBoxManage => "LABCTL_VBOXMANAGE",
        }
    }

    /// Whether labctl cannot work without it (`ssh` is only for `labctl ssh`).
    fn required(self) -> bool {
        !matches!(self, Tool::Ssh)
    }
}

/// What is wrong with a program.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum ToolProblem {
    /// Not on PATH, or the override names no executable (`env_value` is then its value).
    NotFound { env_value: Option<String> },
    /// It is there but does not run, or answers something unexpected.
    Broken {
        message: String,
        /// The driver's typed error (VirtualBox), for the binary to word its advice.
        #[serde(skip)]
        cause: Option<std::sync::Arc<labctl_driver::vbox::VBoxError>>,
    },
    /// Older than labctl needs.
    TooOld { minimum: String },
}

/// How the lab (or the host default) picks its accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelSetting {
    Auto,
    Kvm,
    Tcg,
}

/// The acceleration probe's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccelVerdict {
    pub accel: Engine,
    pub reason: String,
}

/// One boot file of a box and how it compares with its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoxFile {
    pub file: String,
    #[serde(flatten)]
    pub check: FileCheck,
}

/// A port the lab forwards from 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortUse {
    pub node: String,
    pub host: u16,
    /// 22 for SSH.
    pub guest: u16,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Finding {
    Program {
        tool: Tool,
        path: Option<PathBuf>,
        version: Option<String>,
        problem: Option<ToolProblem>,
    },
    /// The acceleration QEMU nodes get. `verdict` is the probe's (cached per host kernel and
    /// QEMU binary), absent when the lab fixes the accelerator and no re-probe was asked for.
    Accel {
        setting: AccelSetting,
        verdict: Option<AccelVerdict>,
        reprobed: bool,
    },
    /// MemAvailable against the memory of the lab's nodes that are not running yet.
    Memory {
        available_mb: Option<u64>,
        needed_mb: u64,
        nodes: usize,
    },
    /// Free space where the nodes' disks go, against the box still to be added plus a margin
    /// per node without a disk yet.
    Disk {
        path: PathBuf,
        available_mb: Option<u64>,
        needed_mb: u64,
        nodes: usize,
        box_mb: u64,
    },
    /// The lab's forwarded ports on 127.0.0.1 (nodes already running hold their own).
    Ports { checked: usize, taken: Vec<PortUse> },
    /// A box: installed and every boot file as recorded when it was added, or not installed
    /// (`built` is the locally built default box `up` would add by itself).
    Box {
        name: String,
        installed: bool,
        built: Option<PathBuf>,
        /// Where the default box is picked up from when built (`scripts/build-box.sh`).
        default_build: Option<PathBuf>,
        files: Vec<BoxFile>,
    },
    /// A host-only network of a VirtualBox lab against the ranges VirtualBox allows.
    HostOnly {
        network: String,
        cidr: String,
        #[serde(skip)]
        refusal: Option<PreflightError>,
        refused: bool,
        /// VirtualBox could not be asked.
        error: Option<String>,
    },
}

impl Finding {
    pub fn level(&self) -> Level {
        match self {
            Finding::Program { problem: None, .. } => Level::Ok,
            Finding::Program {
                tool,
                problem: Some(_),
                ..
            } => {
                if tool.required() {
                    Level::Fail
                } else {
                    Level::Warn
                }
            }
            Finding::Accel {
                setting, verdict, ..
            } => match (setting, verdict) {
                (
                    AccelSetting::Kvm,
                    Some(AccelVerdict {
                        accel: Engine::Tcg, ..
                    }),
                ) => Level::Fail,
                (
                    AccelSetting::Auto,
                    Some(AccelVerdict {
                        accel: Engine::Tcg, ..
                    }),
                ) => Level::Warn,
                _ => Level::Ok,
            },
            Finding::Memory {
                available_mb,
                needed_mb,
                ..
            }
            | Finding::Disk {
                available_mb,
                needed_mb,
                ..
            } => match available_mb {
                None => Level::Warn,
                Some(a) if a < needed_mb => Level::Fail,
                Some(_) => Level::Ok,
            },
            Finding::Ports { taken, .. } => {
                if taken.is_empty() {
                    Level::Ok
                } else {
                    Level::Warn
                }
            }
            Finding::Box {
                installed: false,
                built,
                ..
            } => {
                if built.is_some() {
                    Level::Ok
                } else {
                    Level::Fail
                }
            }
            Finding::Box { files, .. } => files
                .iter()
                .map(|f| match f.check {
                    FileCheck::Intact { .. } => Level::Ok,
                    FileCheck::Unrecorded { .. } => Level::Warn,
                    FileCheck::Missing
                    | FileCheck::Changed { .. }
                    | FileCheck::Unreadable { .. } => Level::Fail,
                })
                .max()
                .unwrap_or(Level::Fail),
            Finding::HostOnly { refused, error, .. } => {
                if *refused || error.is_some() {
                    Level::Fail
                } else {
                    Level::Ok
                }
            }
        }
    }
}

/// Options of `doctor`.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// Run the acceleration probe again instead of using the cached verdict.
    pub reprobe: bool,
}

/// Check the host, for `lab` when given (its provider, box, memory, disk and ports), else
/// for labctl's default lab setup (QEMU, the default box and every installed box).
pub fn doctor(lab: Option<&Lab>, env: &Env, opts: &DoctorOptions) -> Vec<Finding> {
    let provider = lab.map_or(Provider::Qemu, |l| l.provider);
    let mut out = Vec::new();
    match provider {
        Provider::Qemu => {
            let qemu = program(Tool::QemuSystem, &["--version"]);
            let qemu_path = match &qemu {
                Finding::Program {
                    path: Some(p),
                    problem: None | Some(ToolProblem::TooOld { .. }),
                    ..
                } => Some(p.clone()),
                _ => None,
            };
            out.push(qemu);
            out.push(program(Tool::QemuImg, &["--version"]));
            if qemu_path.is_some() {
                out.extend(accel_finding(lab, env, opts));
            }
        }
        Provider::Virtualbox => out.extend(virtualbox(lab)),
        // Not checked yet: `virsh -c URI version` tells whether libvirt is reachable.
        Provider::Libvirt => {}
    }
    out.push(program(Tool::Ssh, &["-V"]));
    out.extend(boxes(lab, env));
    let (memory, disk, ports) = needs(lab, env);
    out.push(memory);
    out.push(disk);
    if let Some(p) = ports {
        out.push(p);
    }
    out
}

/// Whether no check failed.
pub fn passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.level() != Level::Fail)
}

#[cfg(test)]
mod tests;
