//! Host programs and the hypervisor: found and versioned, the acceleration probe, and
//! VirtualBox's host-only ranges.

use std::time::Duration;

use labctl_driver::exec::{Cmd, ToolError, find_program};
use labctl_driver::qemu::accel::Engine;
use labctl_driver::qemu::{QemuConfig, QemuDriver};
use labctl_driver::vbox::{VBoxDriver, VBoxError};
use labctl_driver::{BootImage, Driver, DriverError};
use labctl_spec::Lab;

use super::{AccelSetting, AccelVerdict, DoctorOptions, Finding, QEMU_MIN, Tool, ToolProblem};
use crate::machines::{self, Env};

/// Find a program and ask its version (first line of stdout, or of stderr for `ssh -V`).
pub(super) fn program(tool: Tool, version_args: &[&str]) -> Finding {
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
                cause: None,
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
            cause: None,
        },
    }
}

/// `QEMU emulator version 7.2.22 (Debian …)` → `7.2.22`; `OpenSSH_9.2p1 Debian-2, OpenSSL …`
/// → `OpenSSH_9.2p1 Debian-2`; otherwise the first line.
pub(super) fn version_of(tool: Tool, text: &str) -> Option<String> {
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

pub(super) fn parse_major_minor(v: &str) -> Option<(u32, u32)> {
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

pub(super) fn accel_finding(lab: Option<&Lab>, env: &Env, opts: &DoctorOptions) -> Option<Finding> {
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
pub(super) fn virtualbox(lab: Option<&Lab>) -> Vec<Finding> {
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
                    cause: None,
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
                    cause: Some(std::sync::Arc::new(e)),
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
