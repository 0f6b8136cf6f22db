//! Running VBoxManage: retries, failures, the transcript (`LABCTL_VBOX_RECORD`), the version,
//! `showvminfo`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{
    Features, SHORT, VBoxDriver, VBoxError, VBoxVersion, VmInfo, args, lock, parse, version_problem,
};
use crate::exec::{Cmd, Output, ToolError, describe_status};

/// Serialises appends to the transcript file.
static RECORD: Mutex<()> = Mutex::new(());

fn check_version(raw: &str, v: VBoxVersion) -> Result<VBoxVersion, VBoxError> {
    match version_problem(v) {
        Some(reason) => Err(VBoxError::UnsupportedVersion {
            found: raw.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(v),
    }
}

const TRIES: u32 = 3;

/// One recorded VBoxManage call (`LABCTL_VBOX_RECORD`), a JSON line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TranscriptEntry {
    pub argv: Vec<String>,
    /// The locale variables VBoxManage ran with.
    pub env: BTreeMap<String, String>,
    /// Exit code; None when killed by a signal.
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
}

impl VBoxDriver {
    /// Run VBoxManage. A non-zero exit or `VBoxManage: error:` on stderr is a failure;
    /// transient failures are retried.
    pub fn run(&self, argv: &[String], timeout: Duration) -> Result<Output, VBoxError> {
        let cmd = Cmd::new(&self.cfg.vboxmanage)
            .args(argv)
            .env("LC_ALL", &self.cfg.locale)
            .env("LANG", &self.cfg.locale)
            .timeout(timeout);
        let mut attempt = 1;
        loop {
            let out = self.run_recorded(&cmd, argv)?;
            if out.status.success() && !parse::reports_error(&out.stderr) {
                return Ok(out);
            }
            if attempt < TRIES && parse::is_transient(&out.stderr) {
                tracing::debug!(command = %cmd.display(), attempt, stderr = %out.stderr.trim(), "transient VirtualBox error, retrying");
                std::thread::sleep(self.cfg.retry_backoff * (1 << (attempt - 1)));
                attempt += 1;
                continue;
            }
            return Err(failure(&cmd, out));
        }
    }

    /// One call, appended to the transcript file when recording.
    pub(super) fn run_recorded(&self, cmd: &Cmd, argv: &[String]) -> Result<Output, VBoxError> {
        let started = Instant::now();
        let out = cmd.run_unchecked()?;
        if let Some(path) = &self.cfg.record {
            let entry = TranscriptEntry {
                argv: argv.to_vec(),
                env: [
                    ("LC_ALL".to_string(), self.cfg.locale.clone()),
                    ("LANG".to_string(), self.cfg.locale.clone()),
                ]
                .into_iter()
                .collect(),
                exit: out.status.code(),
                stdout: out.stdout.clone(),
                stderr: out.stderr.clone(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            let _guard = lock(&RECORD);
            let written = serde_json::to_string(&entry).ok().and_then(|line| {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .ok()?;
                f.write_all(format!("{line}\n").as_bytes()).ok()
            });
            if written.is_none() {
                tracing::warn!(file = %path.display(), "cannot append to the VirtualBox transcript");
            }
        }
        Ok(out)
    }

    /// The VirtualBox version (detected once); versions labctl cannot drive are refused.
    pub fn version(&self) -> Result<VBoxVersion, VBoxError> {
        if let Some((raw, v)) = self.version.get() {
            return check_version(raw, *v);
        }
        let _probe = lock(&self.version_probe);
        if let Some((raw, v)) = self.version.get() {
            return check_version(raw, *v);
        }
        let out = self.run(&args::version(), Duration::from_secs(30))?;
        let v = parse::version(&out.stdout).ok_or_else(|| VBoxError::Unexpected {
            command: "VBoxManage --version".into(),
            message: format!("no version in {:?}", out.stdout.trim()),
        })?;
        if let Some(w) = parse::kernel_driver_problem(&out.stdout) {
            tracing::warn!(warning = %w, "VirtualBox cannot start VMs until its kernel driver loads (`sudo /sbin/vboxconfig`)");
        }
        let raw = out
            .stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or_default()
            .to_string();
        let _ = self.version.set((raw.clone(), v));
        check_version(&raw, v)
    }

    pub(super) fn features(&self) -> Result<Features, VBoxError> {
        let v = self.version()?;
        Ok(Features {
            nested_hw_virt: v.at_least(6, 0, 0),
            nat_localhost_reachable: v.at_least(7, 0, 0),
        })
    }

    /// `showvminfo`, None when VirtualBox has no such VM.
    pub fn vm_info(&self, vm: &str) -> Result<Option<VmInfo>, VBoxError> {
        match self.run(&args::showvminfo(vm), SHORT) {
            Ok(out) => {
                parse::showvminfo(&out.stdout)
                    .map(Some)
                    .ok_or_else(|| VBoxError::Unexpected {
                        command: format!("VBoxManage showvminfo {vm} --machinereadable"),
                        message: "no name, UUID or VMState".into(),
                    })
            }
            Err(e) if e.output().is_some_and(parse::is_not_found) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The error for a failed call: exit status, or "exit status 0" when only stderr said so.
fn failure(cmd: &Cmd, out: Output) -> VBoxError {
    if out.status.code() == Some(126) {
        return VBoxError::Broken {
            command: cmd.display(),
        };
    }
    let status = if out.status.success() {
        "exit status 0, but it reported an error".to_string()
    } else {
        describe_status(out.status)
    };
    VBoxError::Tool(ToolError::Failed {
        command: cmd.display(),
        status,
        stderr: if out.stderr.trim().is_empty() {
            out.stdout
        } else {
            out.stderr
        },
    })
}
