//! Running one step on a node over SSH: upload to a per-step path, run as root, stream and log
//! output, collect published values.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use labctl_spec::{RenderedStep, shell_quote};
use labctl_ssh::{SshError, last_lines};

use crate::guest::Guest;

/// How a step run ended (when the SSH layer itself did not fail).
#[derive(Debug)]
pub(crate) struct StepRun {
    pub(crate) status: i32,
    pub(crate) tail: String,
    pub(crate) published: BTreeMap<String, String>,
}

/// `sudo -n` unless the login user is root.
pub(crate) fn as_root(user: &str) -> &'static str {
    if user == "root" { "" } else { "sudo -n " }
}

#[allow(
    clippy::too_many_arguments,
    reason = "a step run needs all of these; bundling them would only rename them"
)]
pub(crate) fn run_step(
    sess: &dyn Guest,
    user: &str,
    node: &str,
    file_stem: &str,
    step_name: &str,
    rendered: &RenderedStep,
    log_path: &Path,
    timeout: Duration,
    cancel: &AtomicBool,
    on_line: &mut dyn FnMut(&str),
) -> Result<StepRun, SshError> {
    let script = format!(".labctl/steps/{file_stem}.sh");
    let publish = format!(".labctl/steps/{file_stem}.publish");
    // Preparing is idempotent: retry it when a loaded host makes the guest slow to answer.
    let mut attempt = 0;
    loop {
        let prepared = sess
            .run(
                "mkdir -p .labctl/steps && chmod 700 .labctl",
                Duration::from_secs(120),
            )
            .and_then(|_| sess.upload(&script, rendered.script.as_bytes(), 0o755));
        match prepared {
            Ok(()) => break,
            Err(e) if attempt < 2 && !cancel.load(std::sync::atomic::Ordering::Relaxed) => {
                attempt += 1;
                tracing::debug!(%node, step = step_name, error = %e, attempt, "retrying upload");
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
    let args: Vec<String> = rendered.args.iter().map(|a| shell_quote(a)).collect();
    let command = format!(
        "cd \"$HOME\" && : > {publish} && chmod 755 {script} && {sudo}env LABCTL_PUBLISH=\"$HOME/{publish}\" LABCTL_NODE={node} LABCTL_STEP={step} DEBIAN_FRONTEND=noninteractive \"$HOME/{script}\"{sep}{args}",
        sudo = as_root(user),
        node = shell_quote(node),
        step = shell_quote(step_name),
        sep = if args.is_empty() { "" } else { " " },
        args = args.join(" "),
    );
    if let Some(dir) = log_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut log = std::fs::File::create(log_path).ok();
    if let Some(f) = log.as_mut() {
        let _ = writeln!(f, "# labctl: {node} {step_name}: {command}");
    }
    let out = sess.exec(&command, timeout, cancel, true, &mut |line| {
        if let Some(f) = log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        on_line(line);
    })?;
    if let Some(f) = log.as_mut() {
        let _ = writeln!(f, "# labctl: exit status {}", out.status);
    }
    let mut published = BTreeMap::new();
    if out.status == 0 {
        let text = sess.run(&format!("cat \"$HOME/{publish}\""), Duration::from_secs(60))?;
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                published.insert(k.trim().to_string(), v.trim_end_matches('\r').to_string());
            }
        }
    }
    Ok(StepRun {
        status: out.status,
        tail: last_lines(&out.output, 20),
        published,
    })
}
