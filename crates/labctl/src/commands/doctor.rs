//! `labctl doctor`: the runner checks, this module words them (one line each, and the fix).

use labctl_driver::boxes::FileCheck;
use labctl_driver::qemu::accel::Engine as Accel;
use labctl_runner::doctor::{
    AccelSetting, BoxFile, DoctorOptions, Finding, Level, NODE_DISK_MARGIN_MB, Tool, ToolProblem,
};

use crate::Result;
use crate::cli::DoctorArgs;
use crate::errors::{add_box_hint, build_box_hint, code};
use crate::output::Printer;

pub(crate) fn run(args: &DoctorArgs, p: &Printer) -> Result<u8> {
    // A lab when one is named or ./lab.toml exists; the host alone otherwise.
    let lab = if args.lab.lab.is_some() || std::path::Path::new("lab.toml").exists() {
        Some(super::load_lab(&args.lab)?)
    } else {
        None
    };
    let lab_text = lab
        .as_ref()
        .and_then(|l| std::fs::read_to_string(&l.file).ok());
    let settings = crate::settings::explain_process(
        lab.as_ref()
            .zip(lab_text.as_deref())
            .map(|(l, t)| (l.file.as_path(), t)),
        &crate::config::load()?,
    );
    let findings = labctl_runner::doctor::doctor(
        lab.as_ref(),
        &super::env(),
        &DoctorOptions {
            reprobe: args.reprobe,
        },
    );
    let worded: Vec<(Level, String, Option<String>)> = findings
        .iter()
        .map(|f| {
            let (message, fix) = word(f);
            (f.level(), message, fix)
        })
        .collect();
    if args.json {
        let checks: Vec<serde_json::Value> = findings
            .iter()
            .zip(&worded)
            .map(|(f, (level, message, fix))| json_check(f, *level, message, fix.as_deref()))
            .collect();
        let doc = crate::output::json::document(
            "doctor",
            serde_json::json!({
                "lab": lab.as_ref().map(|l| l.name.clone()),
                "settings": settings,
                "checks": checks,
            }),
        );
        p.out(crate::output::json::text(&doc));
    } else {
        if let Some(l) = &lab {
            p.info(format!(
                "checking this host for lab `{}` ({})",
                l.name,
                l.file.display()
            ));
        }
        for line in settings_lines(&settings) {
            p.out(line);
        }
        for (level, message, fix) in &worded {
            let tag = match level {
                Level::Ok => p.styles.ok("ok  "),
                Level::Warn => p.styles.warn("warn"),
                Level::Fail => p.styles.error("fail"),
            };
            p.out(format!("{tag}  {message}"));
            if let (Some(fix), true) = (fix, *level != Level::Ok) {
                p.out(format!("      {}: {fix}", p.styles.hint("fix")));
            }
        }
        let count = |l: Level| worded.iter().filter(|(x, _, _)| *x == l).count();
        p.out(format!(
            "{} ok, {} warning(s), {} failure(s)",
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail)
        ));
    }
    Ok(if labctl_runner::doctor::passed(&findings) {
        code::OK
    } else {
        code::NODE_FAILED
    })
}

/// `setting  value  (from where)`, one line each, aligned.
fn settings_lines(settings: &[crate::settings::Setting]) -> Vec<String> {
    use crate::settings::Source;
    let key_w = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    let val_w = settings.iter().map(|s| s.value.len()).max().unwrap_or(0);
    settings
        .iter()
        .map(|s| {
            let from = match &s.source {
                Source::Flag { flag } => format!("flag {flag}"),
                Source::Env { variable } => format!("environment {variable}"),
                Source::Lab { path } => format!("lab file {}", path.display()),
                Source::UserConfig { path } => format!("config file {}", path.display()),
                Source::Default => "built-in default".into(),
            };
            format!("set   {:<key_w$}  {:<val_w$}  ({from})", s.key, s.value)
        })
        .collect()
}

fn mib(mb: u64) -> String {
    if mb >= 1024 {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    } else {
        format!("{mb} MiB")
    }
}

fn accel_name(a: Accel) -> &'static str {
    match a {
        Accel::Kvm => "KVM",
        Accel::Tcg => "TCG (emulation)",
    }
}

/// The line and the fix for one finding.
fn word(f: &Finding) -> (String, Option<String>) {
    match f {
        Finding::Program {
            tool,
            path,
            version,
            problem,
        } => word_program(*tool, path.as_deref(), version.as_deref(), problem.as_ref()),
        Finding::Accel {
            setting,
            verdict,
            reprobed,
        } => {
            let again = if *reprobed { ", probed again" } else { "" };
            let v = verdict.as_ref().map(|v| (v.accel, v.reason.as_str()));
            match (setting, v) {
                (AccelSetting::Auto, Some((Accel::Kvm, why))) => {
                    (format!("acceleration: KVM ({why}{again})"), None)
                }
                (AccelSetting::Auto, Some((Accel::Tcg, why))) => (
                    format!("acceleration: TCG, KVM is not usable here: {why}{again}"),
                    Some("nodes run emulated, several times slower; if this host should have KVM, make /dev/kvm accessible (group `kvm`, nested virtualization on the outer hypervisor), then `labctl doctor --reprobe`".into()),
                ),
                (AccelSetting::Kvm, Some((Accel::Tcg, why))) => (
                    format!("acceleration: the lab sets `accel = \"kvm\"`, but KVM is not usable here: {why}{again}"),
                    Some("set `accel = \"auto\"` (or \"tcg\") in lab.toml".into()),
                ),
                (s, Some((a, why))) => (
                    format!(
                        "acceleration: {} (set in lab.toml; the probe says {}: {why}{again})",
                        setting_name(*s),
                        accel_name(a)
                    ),
                    None,
                ),
                (s, None) => (
                    format!(
                        "acceleration: {} (set in lab.toml; `--reprobe` tests the host)",
                        setting_name(*s)
                    ),
                    None,
                ),
            }
        }
        Finding::Memory {
            available_mb,
            needed_mb,
            nodes,
        } => match available_mb {
            None => (
                "memory: cannot read MemAvailable from /proc/meminfo".into(),
                None,
            ),
            Some(a) if *nodes == 0 => (format!("memory: {} available", mib(*a)), None),
            Some(a) => (
                format!(
                    "memory: {} available, the lab's {nodes} node(s) to start need {}",
                    mib(*a),
                    mib(*needed_mb)
                ),
                Some("close other VMs and programs, or run fewer workers (`--workers N`) or less `memory` per role".into()),
            ),
        },
        Finding::Disk {
            path,
            available_mb,
            needed_mb,
            nodes,
            box_mb,
        } => {
            let Some(a) = available_mb else {
                return (
                    format!("disk: cannot read the free space of {}", path.display()),
                    None,
                );
            };
            if *needed_mb == 0 {
                return (
                    format!("disk: {} free at {}", mib(*a), path.display()),
                    None,
                );
            }
            let mut parts = Vec::new();
            if *box_mb > 0 {
                parts.push(format!("{} for the box", mib(*box_mb)));
            }
            if *nodes > 0 {
                parts.push(format!(
                    "{} for each of {nodes} new node disk(s)",
                    mib(NODE_DISK_MARGIN_MB)
                ));
            }
            (
                format!(
                    "disk: {} free at {}, the lab needs {} ({})",
                    mib(*a),
                    path.display(),
                    mib(*needed_mb),
                    parts.join(" + ")
                ),
                Some("free space on that filesystem, or keep the lab on another one".into()),
            )
        }
        Finding::Ports { checked, taken } => {
            if taken.is_empty() {
                return (
                    format!("ports: the lab's {checked} forwarded port(s) are free on 127.0.0.1"),
                    None,
                );
            }
            let list: Vec<String> = taken
                .iter()
                .map(|t| {
                    if t.guest == 22 {
                        format!("{} ({} ssh)", t.host, t.node)
                    } else {
                        format!("{} ({} port {})", t.host, t.node, t.guest)
                    }
                })
                .collect();
            (
                format!("ports: in use on 127.0.0.1: {}", list.join(", ")),
                Some("`labctl up` moves a taken port to a free one (`labctl ssh-config` shows it); or stop what holds it".into()),
            )
        }
        Finding::Box {
            name,
            installed,
            built,
            default_build,
            files,
        } => word_box(name, *installed, built.as_deref(), default_build.as_deref(), files),
        Finding::HostOnly {
            network,
            cidr,
            refusal,
            error,
            ..
        } => match refusal {
            None if error.is_some() => (
                format!(
                    "VirtualBox host-only network `{network}` ({cidr}): cannot check: {}",
                    error.as_deref().unwrap_or_default()
                ),
                None,
            ),
            None => (
                format!("VirtualBox host-only network `{network}` ({cidr}): in an allowed range"),
                None,
            ),
            Some(e) => (
                format!("VirtualBox: {e}"),
                crate::errors::vbox_hint(&labctl_driver::vbox::VBoxError::HostOnlyRange(e.clone())),
            ),
        },
    }
}

/// One check of `doctor --json`: the finding, its `problem.hint` for a broken program (the
/// driver's advice, worded here), its level, message and fix.
fn json_check(f: &Finding, level: Level, message: &str, fix: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    if let Finding::Program {
        problem: Some(ToolProblem::Broken { cause, .. }),
        ..
    } = f
        && let Some(p) = v.get_mut("problem").and_then(|p| p.as_object_mut())
    {
        p.insert(
            "hint".into(),
            serde_json::json!(broken_hint(cause.as_deref())),
        );
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("level".into(), serde_json::json!(level));
        o.insert("message".into(), serde_json::json!(message));
        o.insert("fix".into(), serde_json::json!(fix));
    }
    v
}

/// The driver's advice for a program that does not run, when it has some (VirtualBox).
fn broken_hint(cause: Option<&labctl_driver::vbox::VBoxError>) -> Option<String> {
    cause.and_then(crate::errors::vbox_hint)
}

fn setting_name(s: AccelSetting) -> &'static str {
    match s {
        AccelSetting::Auto => "auto",
        AccelSetting::Kvm => "KVM",
        AccelSetting::Tcg => "TCG",
    }
}

fn word_program(
    tool: Tool,
    path: Option<&std::path::Path>,
    version: Option<&str>,
    problem: Option<&ToolProblem>,
) -> (String, Option<String>) {
    let name = tool.program();
    let install = match tool {
        Tool::QemuSystem => "install QEMU: `apt-get install qemu-system-x86` (Debian/Ubuntu), `brew install qemu` (macOS)".to_string(),
        Tool::QemuImg => "install QEMU's tools: `apt-get install qemu-utils`".to_string(),
        Tool::Ssh => "install an OpenSSH client (`apt-get install openssh-client`); only `labctl ssh` needs it".to_string(),
        Tool::VBoxManage => labctl_driver::vbox::NOT_INSTALLED_HINT.to_string(),
    };
    match problem {
        None => (
            format!(
                "{name} {} ({})",
                version.unwrap_or("(version unknown)"),
                path.map_or_else(String::new, |p| p.display().to_string())
            ),
            None,
        ),
        Some(ToolProblem::NotFound { env_value: None }) => {
            (format!("{name}: not found on PATH"), Some(install))
        }
        Some(ToolProblem::NotFound { env_value: Some(v) }) => (
            format!(
                "{name}: {} is set to {v}, which is not an executable file",
                tool.env_override()
            ),
            Some(format!("correct it, or unset it to use `{name}` from PATH")),
        ),
        Some(ToolProblem::Broken { message, cause }) => (
            format!("{name} does not run: {message}"),
            Some(broken_hint(cause.as_deref()).unwrap_or(install)),
        ),
        Some(ToolProblem::TooOld { minimum }) => (
            format!(
                "{name} {} is older than {minimum}, the first with `-netdev dgram` (the lab networks)",
                version.unwrap_or("?")
            ),
            Some(format!(
                "install QEMU {minimum} or later (Debian 12 ships 7.2)"
            )),
        ),
    }
}

fn word_box(
    name: &str,
    installed: bool,
    built: Option<&std::path::Path>,
    default_build: Option<&std::path::Path>,
    files: &[BoxFile],
) -> (String, Option<String>) {
    if !installed {
        return match (built, default_build) {
            (Some(b), _) => (
                format!(
                    "box {name}: built, not added yet; `labctl up` adds {}",
                    b.display()
                ),
                None,
            ),
            (None, Some(d)) => (
                format!("box {name}: not installed"),
                Some(build_box_hint(d)),
            ),
            (None, None) => (
                format!("box {name}: not installed"),
                Some(add_box_hint(name)),
            ),
        };
    }
    let bad: Vec<String> = files
        .iter()
        .filter_map(|BoxFile { file: f, check }| match check {
            FileCheck::Intact { .. } | FileCheck::Unrecorded { .. } => None,
            FileCheck::Missing => Some(format!("{f} is missing")),
            FileCheck::Changed { recorded, actual } => Some(if recorded.size == actual.size {
                format!("{f} differs from when it was added (sha256)")
            } else {
                format!(
                    "{f} differs from when it was added (size {} → {} bytes)",
                    recorded.size, actual.size
                )
            }),
            FileCheck::Unreadable { message } => Some(format!("{f} cannot be read: {message}")),
        })
        .collect();
    let size: u64 = files
        .iter()
        .map(|f| match f.check {
            FileCheck::Intact { size } | FileCheck::Unrecorded { size } => size,
            _ => 0,
        })
        .sum();
    let readd = match default_build {
        Some(d) => format!(
            "`labctl box remove {name}`; the next `labctl up` adds it again from {} (`sudo scripts/build-box.sh` makes that file)",
            d.display()
        ),
        None => format!("`labctl box add --force {name} FILE|URL`"),
    };
    if !bad.is_empty() {
        return (
            format!("box {name}: damaged: {}", bad.join("; ")),
            Some(format!(
                "{readd}; nodes already made from it must be rebuilt (`labctl destroy -f`, then `labctl up`)"
            )),
        );
    }
    if files
        .iter()
        .any(|f| matches!(f.check, FileCheck::Unrecorded { .. }))
    {
        return (
            format!(
                "box {name}: present ({}), but no checksums were recorded when it was added",
                mib(size >> 20)
            ),
            Some(format!("adding it again records them: {readd}")),
        );
    }
    (
        format!(
            "box {name}: intact ({} file(s), {}, sha256 as recorded)",
            files.len(),
            mib(size >> 20)
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Setting, Source};
    use labctl_driver::vbox::VBoxError;

    fn broken(cause: Option<VBoxError>) -> Finding {
        Finding::Program {
            tool: Tool::VBoxManage,
            path: None,
            version: None,
            problem: Some(ToolProblem::Broken {
                message: "m".into(),
                cause: cause.map(std::sync::Arc::new),
            }),
        }
    }

    #[test]
    fn a_broken_virtualbox_gets_the_drivers_advice_in_text_and_json() {
        let f = broken(Some(VBoxError::UnsupportedVersion {
            found: "6.0.24".into(),
            reason: "too old".into(),
        }));
        let (message, fix) = word(&f);
        assert_eq!(message, "VBoxManage does not run: m");
        let fix = fix.unwrap_or_default();
        assert!(
            fix.starts_with("install the current VirtualBox 7.1"),
            "{fix}"
        );
        let v = json_check(&f, f.level(), &message, Some(&fix));
        assert_eq!(v["problem"]["problem"], "broken");
        assert_eq!(v["problem"]["message"], "m");
        assert_eq!(v["problem"]["hint"], serde_json::json!(fix));
        assert_eq!(v["fix"], serde_json::json!(fix));
    }

    #[test]
    fn a_broken_program_without_advice_falls_back_to_installing_it() {
        let f = broken(None);
        let (_, fix) = word(&f);
        assert_eq!(
            fix.as_deref(),
            Some(labctl_driver::vbox::NOT_INSTALLED_HINT)
        );
        let v = json_check(&f, f.level(), "m", fix.as_deref());
        assert_eq!(v["problem"]["hint"], serde_json::Value::Null);
        assert!(v["problem"].get("cause").is_none(), "{v}");
    }

    #[test]
    fn settings_are_worded_with_their_source() {
        let lines = settings_lines(&[
            Setting {
                key: "provider",
                value: "qemu".into(),
                source: Source::Default,
            },
            Setting {
                key: "accel",
                value: "tcg".into(),
                source: Source::Env {
                    variable: "LABCTL_ACCEL",
                },
            },
            Setting {
                key: "egress",
                value: "off".into(),
                source: Source::Lab {
                    path: "labs/k8s/lab.toml".into(),
                },
            },
        ]);
        assert_eq!(
            lines,
            [
                "set   provider  qemu  (built-in default)",
                "set   accel     tcg   (environment LABCTL_ACCEL)",
                "set   egress    off   (lab file labs/k8s/lab.toml)",
            ]
        );
    }
}
