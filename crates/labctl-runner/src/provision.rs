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
    /// The signal that killed the step, if one did (a failure whatever the status).
    pub(crate) signal: Option<String>,
    pub(crate) tail: String,
    pub(crate) published: BTreeMap<String, String>,
}

/// `sudo -n` unless the login user is root.
pub(crate) fn as_root(user: &str) -> &'static str {
    if user == "root" { "" } else { "sudo -n " }
}

/// Published values shorter than this are not redacted (they would blank ordinary words).
const MIN_SECRET: usize = 8;

/// `line` with every published value (a join token, a certificate key) replaced by
/// `[value NAME]`: values are secrets and stay out of logs and the terminal (`labctl values`
/// shows them).
pub(crate) fn redact(line: &str, secrets: &BTreeMap<String, String>) -> String {
    let mut out = line.to_string();
    for (name, value) in secrets {
        let v = value.trim();
        if v.len() >= MIN_SECRET && out.contains(v) {
            out = out.replace(v, &format!("[value {name}]"));
        }
    }
    out
}

/// Guest text made safe for a terminal: control characters (escape sequences, carriage
/// returns, bells) shown escaped; tabs kept.
pub(crate) fn escape_controls(line: &str) -> String {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return line.to_string();
    }
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Create (or truncate) a step log readable by the user alone: steps print secrets.
fn private_log(path: &Path) -> Option<std::fs::File> {
    use labctl_driver::files::UnixMode as _;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .unix_mode(0o600)
        .open(path)
        .ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    Some(f)
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
    secrets: &BTreeMap<String, String>,
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
    let mut log = private_log(log_path);
    if let Some(f) = log.as_mut() {
        let _ = writeln!(f, "# labctl: {node} {step_name}: {command}");
    }
    let out = sess.exec(&command, timeout, cancel, true, &mut |line| {
        let line = escape_controls(&redact(line, secrets));
        if let Some(f) = log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        on_line(&line);
    })?;
    if let Some(f) = log.as_mut() {
        match &out.signal {
            Some(sig) => {
                let _ = writeln!(f, "# labctl: killed by signal {sig}");
            }
            None => {
                let _ = writeln!(f, "# labctl: exit status {}", out.status);
            }
        }
    }
    let mut published = BTreeMap::new();
    if out.status == 0 && out.signal.is_none() {
        let text = sess.run(&format!("cat \"$HOME/{publish}\""), Duration::from_secs(60))?;
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                published.insert(k.trim().to_string(), v.trim_end_matches('\r').to_string());
            }
        }
    }
    drop(log);
    // The step's own published values were printed before labctl knew them: take them out
    // of its log now.
    if !published.is_empty()
        && let Ok(text) = std::fs::read_to_string(log_path)
    {
        let clean: Vec<String> = text.lines().map(|l| redact(l, &published)).collect();
        if let Some(mut f) = private_log(log_path) {
            let _ = f.write_all((clean.join("\n") + "\n").as_bytes());
        }
    }
    let mut all_secrets = secrets.clone();
    all_secrets.extend(published.clone());
    let tail: Vec<String> = last_lines(&out.output, 20)
        .lines()
        .map(|l| escape_controls(&redact(l, &all_secrets)))
        .collect();
    Ok(StepRun {
        status: out.status,
        signal: out.signal,
        tail: tail.join("\n"),
        published,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_values_are_redacted_and_controls_escaped() {
        let mut v = BTreeMap::new();
        v.insert(
            "join_command".to_string(),
            "kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef".to_string(),
        );
        v.insert("short".to_string(), "yes".to_string());
        let line = "run: kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef now, yes";
        assert_eq!(redact(line, &v), "run: [value join_command] now, yes");
        assert_eq!(
            escape_controls("a\x1b]0;title\x07b\tc\r"),
            "a\\u{1b}]0;title\\u{7}b\tc\\r"
        );
    }
}
