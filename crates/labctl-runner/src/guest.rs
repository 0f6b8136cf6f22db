//! The seam between the runner and a node's guest: how `up` logs in, runs commands and uploads
//! files. Production uses SSH ([`labctl_ssh::Session`] behind [`Ssh`]); the runner's unit
//! tests put an in-memory guest here (`crate::testing`).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use labctl_ssh::{ExecOutput, Session, SshError, Target, last_lines};

/// A logged-in session to one node's guest.
pub(crate) trait Guest {
    /// Run a command; output lines go to `on_line` as they arrive (see [`Session::exec`]).
    fn exec(
        &self,
        command: &str,
        timeout: Duration,
        cancel: &AtomicBool,
        pty: bool,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, SshError>;
    /// Write `content` to `path` (relative to the login's home) with `mode`.
    fn upload(&self, path: &str, content: &[u8], mode: i32) -> Result<(), SshError>;
    /// The private key the login used.
    fn key(&self) -> &Path;
    /// The node this session is logged in to.
    fn node(&self) -> &str;
    /// Run a short command and return its output; non-zero exit is an error.
    fn run(&self, command: &str, timeout: Duration) -> Result<String, SshError> {
        let never = AtomicBool::new(false);
        let out = self.exec(command, timeout, &never, false, &mut |_| {})?;
        if out.status != 0 {
            return Err(SshError::Channel {
                node: self.node().to_string(),
                what: format!("`{command}` (exit status {})", out.status),
                message: last_lines(&out.output, 20),
            });
        }
        Ok(out.output)
    }
}

/// How the runner reaches a node's guest once its machine runs.
pub(crate) trait Connect: Send + Sync {
    /// Log in to `target`, retrying until `deadline`, `cancel`, or `vm_alive` reporting the
    /// machine gone (see [`Session::wait_ready`]).
    fn wait_ready(
        &self,
        target: &Target,
        deadline: Duration,
        cancel: &AtomicBool,
        vm_alive: &dyn Fn() -> Result<(), String>,
    ) -> Result<Box<dyn Guest>, SshError>;
}

impl Guest for Session {
    fn exec(
        &self,
        command: &str,
        timeout: Duration,
        cancel: &AtomicBool,
        pty: bool,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, SshError> {
        Session::exec(self, command, timeout, cancel, pty, on_line)
    }
    fn upload(&self, path: &str, content: &[u8], mode: i32) -> Result<(), SshError> {
        Session::upload(self, path, content, mode)
    }
    fn key(&self) -> &Path {
        &self.key
    }
    fn node(&self) -> &str {
        &self.target().node
    }
    fn run(&self, command: &str, timeout: Duration) -> Result<String, SshError> {
        Session::run(self, command, timeout)
    }
}

/// SSH (ssh2) to the guest: what `labctl` uses.
pub(crate) struct Ssh;

impl Connect for Ssh {
    fn wait_ready(
        &self,
        target: &Target,
        deadline: Duration,
        cancel: &AtomicBool,
        vm_alive: &dyn Fn() -> Result<(), String>,
    ) -> Result<Box<dyn Guest>, SshError> {
        Ok(Box::new(Session::wait_ready(
            target, deadline, cancel, vm_alive,
        )?))
    }
}
