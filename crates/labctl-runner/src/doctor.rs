//! `labctl doctor`: what this host has, against what a lab needs, checked before a class.
//! Each check is a typed [`Finding`] with a [`Level`]; the binary words them (and the fixes)
//! and picks the exit code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use labctl_driver::boxes::FileCheck;
use labctl_driver::exec::{Cmd, ToolError, find_program};
use labctl_driver::qemu::accel::Engine;
use labctl_driver::qemu::{QemuConfig, QemuDriver};
use labctl_driver::vbox::{PreflightError, VBoxDriver, VBoxError};
use labctl_driver::{BootImage, Driver, DriverError, MachineStatus};
use labctl_spec::{Lab, Provider};
use serde::Serialize;

use crate::machines::{self, Env};
use crate::state::{LabPaths, LabState};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum ToolProblem {
    /// Not on PATH, or the override names no executable (`env_value` is then its value).
    NotFound { env_value: Option<String> },
    /// It is there but does not run, or answers something unexpected.
    Broken {
        message: String,
        /// The driver's advice, when it has some (VirtualBox).
        hint: Option<String>,
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

/// Find a program and ask its version (first line of stdout, or of stderr for `ssh -V`).
fn program(tool: Tool, version_args: &[&str]) -> Finding {
    let path = match find_program(tool.program(), tool.env_override(), "") {
        Ok(p) => p,
        Err(e) => {
            return Finding::Program {
                tool,
                path: None,
                version: None,
                problem: Some(not_found(tool, &e)),
            };
        }
    };
    let (version, problem) = match Cmd::new(&path)
        .args(version_args)
        .timeout(Duration::from_secs(15))
        .run()
    {
        Ok(o) => {
            let text = if o.stdout.trim().is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            let v = version_of(tool, &text);
            let old = (tool == Tool::QemuSystem)
                .then(|| parse_major_minor(v.as_deref().unwrap_or_default()))
                .flatten()
                .filter(|mm| *mm < QEMU_MIN)
                .map(|_| ToolProblem::TooOld {
                    minimum: format!("{}.{}", QEMU_MIN.0, QEMU_MIN.1),
                });
            (v, old)
        }
        Err(e) => (
            None,
            Some(ToolProblem::Broken {
                message: e.to_string(),
                hint: None,
            }),
        ),
    };
    Finding::Program {
        tool,
        path: Some(path),
        version,
        problem,
    }
}

fn not_found(tool: Tool, e: &ToolError) -> ToolProblem {
    match e {
        ToolError::NotFound { .. } => ToolProblem::NotFound {
            env_value: std::env::var(tool.env_override())
                .ok()
                .filter(|v| !v.is_empty()),
        },
        other => ToolProblem::Broken {
            message: other.to_string(),
            hint: None,
        },
    }
}

/// `QEMU emulator version 7.2.22 (Debian …)` → `7.2.22`; `OpenSSH_9.2p1 Debian-2, OpenSSL …`
/// → `OpenSSH_9.2p1 Debian-2`; otherwise the first line.
fn version_of(tool: Tool, text: &str) -> Option<String> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let v = match tool {
        Tool::QemuSystem | Tool::QemuImg => first
            .split_once("version ")
            .map_or(first, |(_, v)| v)
            .split_whitespace()
            .next()
            .unwrap_or(first),
        Tool::Ssh => first.split(',').next().unwrap_or(first),
        Tool::VBoxManage => first,
    };
    Some(v.to_string())
}

fn parse_major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

fn accel_finding(lab: Option<&Lab>, env: &Env, opts: &DoctorOptions) -> Option<Finding> {
    let setting = match lab.map(|l| l.accel) {
        Some(labctl_spec::Accel::Kvm) => AccelSetting::Kvm,
        Some(labctl_spec::Accel::Tcg) => AccelSetting::Tcg,
        Some(labctl_spec::Accel::Auto) | None => AccelSetting::Auto,
    };
    if setting != AccelSetting::Auto && !opts.reprobe {
        return Some(Finding::Accel {
            setting,
            verdict: None,
            reprobed: false,
        });
    }
    let cfg = QemuConfig::discover(env.switch_command.clone(), env.cache_dir.clone()).ok()?;
    let driver = QemuDriver::new(cfg);
    // The probe boots what the lab's nodes boot (the box's kernel, else a boot sector).
    let boot = boot_image(lab, env);
    let (engine, reason) = if opts.reprobe {
        let v = driver.reprobe(&boot);
        (v.accel, v.reason)
    } else {
        // The cached verdict when it is for this host, else a probe (as `up` does).
        let a = driver.acceleration(labctl_driver::Accel::Auto, &boot)?;
        let engine = if a.engine == Engine::Kvm.name() {
            Engine::Kvm
        } else {
            Engine::Tcg
        };
        (engine, a.reason)
    };
    Some(Finding::Accel {
        setting,
        verdict: Some(AccelVerdict {
            accel: engine,
            reason,
        }),
        reprobed: opts.reprobe,
    })
}

/// What the lab's nodes boot (its box, or the default box without a lab); a boot sector
/// stands in when that box is not installed.
fn boot_image(lab: Option<&Lab>, env: &Env) -> BootImage {
    let name = lab.map_or(labctl_spec::DEFAULT_BOX, |l| l.box_name.as_str());
    let store = env.boxes();
    let dir = store.dir(name);
    match store.get(name) {
        Ok(m) => machines::boot_image(&m, &dir),
        Err(_) => BootImage {
            disk: dir.join("disk.qcow2"),
            kernel: None,
            initrd: None,
            cmdline: None,
            ovf: None,
        },
    }
}

/// VBoxManage and its version, and each host-only network against the allowed ranges (the
/// driver's own preflight, as `networks_up` makes it).
fn virtualbox(lab: Option<&Lab>) -> Vec<Finding> {
    let tool = Tool::VBoxManage;
    let d = match VBoxDriver::discover() {
        Ok(d) => d,
        Err(DriverError::Tool(e)) => {
            return vec![Finding::Program {
                tool,
                path: None,
                version: None,
                problem: Some(not_found(tool, &e)),
            }];
        }
        Err(e) => {
            return vec![Finding::Program {
                tool,
                path: None,
                version: None,
                problem: Some(ToolProblem::Broken {
                    message: e.to_string(),
                    hint: None,
                }),
            }];
        }
    };
    let path = Some(d.config().vboxmanage.clone());
    let version = match d.version() {
        Ok(v) => v,
        Err(e) => {
            return vec![Finding::Program {
                tool,
                path,
                version: None,
                problem: Some(ToolProblem::Broken {
                    message: e.to_string(),
                    hint: e.hint(),
                }),
            }];
        }
    };
    let mut out = vec![Finding::Program {
        tool,
        path,
        version: Some(version.to_string()),
        problem: None,
    }];
    for net in lab.map(machines::networks).unwrap_or_default() {
        let Some((ip, prefix)) = net.host_ip else {
            continue;
        };
        let (refusal, error) = match d.preflight_hostonly((ip, prefix)) {
            Ok(()) => (None, None),
            Err(VBoxError::HostOnlyRange(e)) => (Some(e), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(Finding::HostOnly {
            network: net.name.clone(),
            cidr: format!("{ip}/{prefix}"),
            refused: refusal.is_some(),
            refusal,
            error,
        });
    }
    out
}

/// The advice VirtualBox's driver gives for a refused host-only range.
pub fn hostonly_hint(e: &PreflightError) -> Option<String> {
    VBoxError::HostOnlyRange(e.clone()).hint()
}

/// The lab's box (plus every installed box without a lab), each verified file by file.
fn boxes(lab: Option<&Lab>, env: &Env) -> Vec<Finding> {
    let store = env.boxes();
    let built = env.cache_dir.join("boxes").join("labctl-debian-12.box");
    let mut names: Vec<String> = match lab {
        Some(l) => vec![l.box_name.clone()],
        None => store.list().into_iter().map(|b| b.name).collect(),
    };
    if !names.iter().any(|n| n == labctl_spec::DEFAULT_BOX) && lab.is_none() {
        names.insert(0, labctl_spec::DEFAULT_BOX.to_string());
    }
    names
        .into_iter()
        .map(|name| {
            let default_build = (name == labctl_spec::DEFAULT_BOX).then(|| built.clone());
            match store.get(&name) {
                Ok(meta) => Finding::Box {
                    files: store
                        .verify(&meta)
                        .into_iter()
                        .map(|(file, check)| BoxFile { file, check })
                        .collect(),
                    name,
                    installed: true,
                    built: None,
                    default_build,
                },
                Err(_) => Finding::Box {
                    built: default_build.clone().filter(|p| p.is_file()),
                    name,
                    installed: false,
                    default_build,
                    files: Vec::new(),
                },
            }
        })
        .collect()
}

/// Memory, disk and ports against the lab's nodes that are not running yet.
fn needs(lab: Option<&Lab>, env: &Env) -> (Finding, Finding, Option<Finding>) {
    let available_mb = mem_available_mb();
    let Some(lab) = lab else {
        let path = existing_ancestor(&env.data_dir);
        return (
            Finding::Memory {
                available_mb,
                needed_mb: 0,
                nodes: 0,
            },
            Finding::Disk {
                available_mb: disk_available_mb(&path),
                path,
                needed_mb: 0,
                nodes: 0,
                box_mb: 0,
            },
            None,
        );
    };
    let paths = LabPaths::new(&lab.dir, &lab.name);
    let st = LabState::load(&paths).ok().flatten();
    let driver = st
        .as_ref()
        .and_then(|s| machines::driver_for_state(s, env).ok());
    let status = |name: &str| -> MachineStatus {
        match (&st, &driver) {
            (Some(s), Some(d)) => s
                .nodes
                .get(name)
                .map_or(MachineStatus::NotCreated, |n| d.status(&n.machine)),
            _ => MachineStatus::NotCreated,
        }
    };
    let mut needed_mb = 0u64;
    let mut to_boot = 0usize;
    let mut to_create = 0usize;
    let mut checked = 0usize;
    let mut taken = Vec::new();
    for node in &lab.nodes {
        let s = status(&node.name);
        if matches!(s, MachineStatus::Running { .. }) {
            continue;
        }
        to_boot += 1;
        needed_mb += u64::from(node.memory_mb);
        if s == MachineStatus::NotCreated {
            to_create += 1;
        }
        // The ports `up` will ask for: recorded ones (they may have been moved), else the lab's.
        let recorded = st.as_ref().and_then(|s| s.nodes.get(&node.name));
        let mut ports = vec![PortUse {
            node: node.name.clone(),
            host: recorded.map_or(node.ssh_port, |r| r.machine.ssh.host),
            guest: 22,
        }];
        ports.extend(node.forwards.iter().enumerate().map(|(i, f)| {
            PortUse {
                node: node.name.clone(),
                host: recorded
                    .and_then(|r| r.machine.forwards.get(i))
                    .filter(|p| p.guest == f.guest)
                    .map_or(f.host, |p| p.host),
                guest: f.guest,
            }
        }));
        for p in ports {
            checked += 1;
            if !machines::port_free(p.host) {
                taken.push(p);
            }
        }
    }
    let box_mb = match env.boxes().get(&lab.box_name) {
        Ok(_) => 0,
        Err(_) => {
            let built = env.cache_dir.join("boxes").join("labctl-debian-12.box");
            std::fs::metadata(built).map_or(0, |m| m.len().div_ceil(1 << 20))
        }
    };
    let path = existing_ancestor(&paths.state_dir);
    (
        Finding::Memory {
            available_mb,
            needed_mb,
            nodes: to_boot,
        },
        Finding::Disk {
            available_mb: disk_available_mb(&path),
            path,
            needed_mb: box_mb + to_create as u64 * NODE_DISK_MARGIN_MB,
            nodes: to_create,
            box_mb,
        },
        Some(Finding::Ports { checked, taken }),
    )
}

fn existing_ancestor(p: &Path) -> PathBuf {
    p.ancestors()
        .find(|a| a.exists())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// `MemAvailable` from /proc/meminfo, in MiB.
fn mem_available_mb() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

/// Space an unprivileged user can use on the filesystem holding `path`, in MiB.
fn disk_available_mb(path: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize) >> 20)
}

/// Whether no check failed.
pub fn passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.level() != Level::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_real_tools_output() {
        // First lines as printed by QEMU 7.2 (Debian 12), qemu-img and OpenSSH 9.2.
        assert_eq!(
            version_of(
                Tool::QemuSystem,
                "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"
            )
            .as_deref(),
            Some("7.2.22")
        );
        assert_eq!(
            version_of(
                Tool::QemuImg,
                "qemu-img version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)\n"
            )
            .as_deref(),
            Some("8.2.2")
        );
        assert_eq!(
            version_of(
                Tool::Ssh,
                "OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026\n"
            )
            .as_deref(),
            Some("OpenSSH_9.2p1 Debian-2+deb12u6")
        );
        assert_eq!(parse_major_minor("7.2.22"), Some((7, 2)));
        assert_eq!(parse_major_minor("6.2.0"), Some((6, 2)));
        assert!(parse_major_minor("6.2.0").is_some_and(|v| v < QEMU_MIN));
        assert!(parse_major_minor("10.0.2").is_some_and(|v| v >= QEMU_MIN));
    }

    #[test]
    fn meminfo_available() {
        let text = "MemTotal:        8039412 kB\nMemFree:          512000 kB\nMemAvailable:    4194304 kB\n";
        assert_eq!(parse_meminfo(text), Some(4096));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn levels() {
        let mem = |a: Option<u64>, n: u64| Finding::Memory {
            available_mb: a,
            needed_mb: n,
            nodes: 1,
        };
        assert_eq!(mem(Some(4096), 1024).level(), Level::Ok);
        assert_eq!(mem(Some(512), 1024).level(), Level::Fail);
        assert_eq!(mem(None, 1024).level(), Level::Warn);
        let accel = |s, a| Finding::Accel {
            setting: s,
            verdict: Some(AccelVerdict {
                accel: a,
                reason: String::new(),
            }),
            reprobed: false,
        };
        assert_eq!(accel(AccelSetting::Auto, Engine::Kvm).level(), Level::Ok);
        assert_eq!(accel(AccelSetting::Auto, Engine::Tcg).level(), Level::Warn);
        assert_eq!(accel(AccelSetting::Kvm, Engine::Tcg).level(), Level::Fail);
        let ssh = Finding::Program {
            tool: Tool::Ssh,
            path: None,
            version: None,
            problem: Some(ToolProblem::NotFound { env_value: None }),
        };
        assert_eq!(ssh.level(), Level::Warn);
        let qemu = Finding::Program {
            tool: Tool::QemuSystem,
            path: None,
            version: None,
            problem: Some(ToolProblem::NotFound { env_value: None }),
        };
        assert_eq!(qemu.level(), Level::Fail);
        assert!(!passed(&[ssh.clone(), qemu]));
        assert!(passed(&[ssh]));
    }

    #[test]
    fn free_disk_of_an_existing_directory() {
        let d = tempfile::tempdir().expect("tmp");
        let missing = d.path().join("a/b/c");
        assert_eq!(existing_ancestor(&missing), d.path());
        assert!(disk_available_mb(d.path()).is_some());
    }
}
