//! The one place that runs external programs.
//!
//! Every call records its argv, exit status and stderr, reads stdout and stderr concurrently
//! (so a chatty child can never deadlock on a full pipe), and can be bounded by a timeout.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// An external program failed or could not run.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{program}` is not installed or not on PATH")]
    NotFound {
        program: String,
        hint: Option<String>,
    },
    #[error("cannot start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_tail(stderr))]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {}s", timeout.as_secs())]
    Timeout { command: String, timeout: Duration },
}

fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(8)..];
    format!(":\n    {}", tail.join("\n    "))
}

/// What a finished program produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A program invocation.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    timeout: Option<Duration>,
    current_dir: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: None,
            current_dir: None,
        }
    }
    #[must_use]
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_os_string());
        self
    }
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Cmd {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }
    #[must_use]
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((k.as_ref().to_os_string(), v.as_ref().to_os_string()));
        self
    }
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = Some(t);
        self
    }
    #[must_use]
    pub fn current_dir(mut self, d: impl Into<PathBuf>) -> Cmd {
        self.current_dir = Some(d.into());
        self
    }
    pub fn program(&self) -> &Path {
        &self.program
    }
    pub fn argv(&self) -> &[OsString] {
        &self.args
    }

    /// The command line, for messages and logs.
    pub fn display(&self) -> String {
        let mut s = self
            .program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .to_string();
        for a in &self.args {
            s.push(' ');
            let a = a.to_string_lossy();
            if a.contains(' ') || a.is_empty() {
                s.push_str(&format!("'{a}'"));
            } else {
                s.push_str(&a);
            }
        }
        s
    }

    // The one place in labctl that builds a process (clippy.toml disallows it elsewhere).
    #[allow(clippy::disallowed_methods)]
    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(d) = &self.current_dir {
            c.current_dir(d);
        }
        c
    }

    fn spawn_err(&self, source: std::io::Error) -> ToolError {
        if source.kind() == std::io::ErrorKind::NotFound {
            ToolError::NotFound {
                program: self.program.display().to_string(),
                hint: None,
            }
        } else {
            ToolError::Spawn {
                command: self.display(),
                source,
            }
        }
    }

    /// Run to completion, capturing output. A non-zero exit is an error.
    pub fn run(&self) -> Result<Output, ToolError> {
        let out = self.run_unchecked()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(ToolError::Failed {
                command: self.display(),
                status: describe_status(out.status),
                stderr: if out.stderr.trim().is_empty() {
                    out.stdout
                } else {
                    out.stderr
                },
            })
        }
    }

    /// Run to completion, capturing output, whatever the exit status.
    pub fn run_unchecked(&self) -> Result<Output, ToolError> {
        tracing::debug!(command = %self.display(), "run");
        let started = Instant::now();
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_err(e))?;
        let out_reader = reader(child.stdout.take());
        let err_reader = reader(child.stderr.take());
        let status = self.wait(&mut child)?;
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        tracing::debug!(command = %self.display(), status = %describe_status(status), elapsed_ms = started.elapsed().as_millis() as u64, "done");
        if !stderr.trim().is_empty() {
            tracing::trace!(command = %self.display(), %stderr, "stderr");
        }
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn wait(&self, child: &mut Child) -> Result<ExitStatus, ToolError> {
        let Some(timeout) = self.timeout else {
            return child.wait().map_err(|e| self.spawn_err(e));
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().map_err(|e| self.spawn_err(e))? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ToolError::Timeout {
                    command: self.display(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run with the terminal attached (for `labctl ssh`); returns the exit code.
    pub fn run_interactive(&self) -> Result<i32, ToolError> {
        tracing::debug!(command = %self.display(), "run interactive");
        let status = self.command().status().map_err(|e| self.spawn_err(e))?;
        Ok(status.code().unwrap_or(128 + 1))
    }

    /// Start a long-lived helper in its own process group (so Ctrl-C at the terminal does not
    /// reach it), output appended to `log`. Returns its PID; the caller records it.
    pub fn spawn_detached(&self, log: &Path) -> Result<u32, ToolError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| self.spawn_err(e))?;
        let file2 = file.try_clone().map_err(|e| self.spawn_err(e))?;
        let mut command = self.command();
        command.stdin(Stdio::null()).stdout(file).stderr(file2);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        #[cfg(windows)]
        {
            // CREATE_NEW_PROCESS_GROUP: Ctrl-C at the console does not reach it.
            use std::os::windows::process::CommandExt;
            command.creation_flags(0x0000_0200);
        }
        let child = command.spawn().map_err(|e| self.spawn_err(e))?;
        tracing::debug!(command = %self.display(), pid = child.id(), "spawned detached");
        Ok(child.id())
    }

    /// Start a child whose lifetime the caller manages (kill + wait).
    pub fn spawn_child(&self) -> Result<Child, ToolError> {
        tracing::debug!(command = %self.display(), "spawn child");
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_err(e))
    }
}

/// A helper process that relays a byte stream (`ssh -W HOST:PORT jumphost`): its stdin and
/// stdout are one end of a socket pair, the caller holds the other. Its stderr is kept (the
/// last 8 KiB) for messages. Dropping it kills the process by PID and reaps it.
#[cfg(unix)]
#[derive(Debug)]
pub struct StdioProxy {
    child: Child,
    command: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

#[cfg(unix)]
impl StdioProxy {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Why the relay ended, once it has: its exit status and the tail of its stderr (waits
    /// up to `grace` for it to exit). `None` while it runs.
    pub fn failure(&mut self, grace: Duration) -> Option<String> {
        let deadline = Instant::now() + grace;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return None,
            }
        };
        // The reader thread gets the last lines once the pipe closes.
        std::thread::sleep(Duration::from_millis(20));
        let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        Some(format!(
            "`{}` ended ({}){}",
            self.command,
            describe_status(status),
            stderr_tail(&err)
        ))
    }
}

#[cfg(unix)]
impl Drop for StdioProxy {
    fn drop(&mut self) {
        // Child::kill signals this child's own PID, which it still holds: unreaped, it cannot
        // be reused by another process.
        let _ = self.child.kill();
        let _ = self.child.wait();
        tracing::debug!(command = %self.command, pid = self.child.id(), "relay stopped");
    }
}

#[cfg(unix)]
impl Cmd {
    /// Start the program as a relay: its stdin and stdout are connected to the returned
    /// stream (a `socketpair`), stderr is collected. The caller reads and writes the stream;
    /// dropping the [`StdioProxy`] ends the process.
    pub fn spawn_stdio_proxy(
        &self,
    ) -> Result<(std::os::unix::net::UnixStream, StdioProxy), ToolError> {
        use std::os::unix::net::UnixStream;
        let (ours, theirs) = UnixStream::pair().map_err(|e| self.spawn_err(e))?;
        let theirs_out = theirs.try_clone().map_err(|e| self.spawn_err(e))?;
        tracing::debug!(command = %self.display(), "spawn relay");
        let mut command = self.command();
        // Its own process group, as `spawn_detached`'s: Ctrl-C at the terminal reaches labctl,
        // which stops its sessions and drops the relay, not the relay under a live session.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs_out)))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_err(e))?;
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let keep = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = keep.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if s.len() > 8192 {
                            let cut = s.len() - 8192;
                            let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                            s.drain(..cut);
                        }
                    }
                }
            });
        }
        Ok((
            ours,
            StdioProxy {
                child,
                command: self.display(),
                stderr,
            },
        ))
    }
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// "exit status 3" or "killed by signal 9".
pub fn describe_status(st: ExitStatus) -> String {
    #[cfg(unix)]
    let signal = {
        use std::os::unix::process::ExitStatusExt;
        st.signal()
    };
    #[cfg(not(unix))]
    let signal: Option<i32> = None;
    match (st.code(), signal) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    }
}

/// Find a program: an environment override (e.g. `LABCTL_QEMU_IMG`), else PATH.
/// An override that names no executable file is refused here, with the variable in the hint,
/// rather than when the program is first started.
pub fn find_program(name: &str, env_override: &str, hint: &str) -> Result<PathBuf, ToolError> {
    if let Some(p) = std::env::var_os(env_override).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        let found = if p.components().count() > 1 {
            is_executable(&p).then_some(p.clone())
        } else {
            search_path(&p.to_string_lossy())
        };
        return found.ok_or_else(|| ToolError::NotFound {
            program: p.display().to_string(),
            hint: Some(format!(
                "{env_override} is set to {}, which is not an executable file: correct it, or unset it to use `{name}` from PATH",
                p.display()
            )),
        });
    }
    search_path(name).ok_or_else(|| ToolError::NotFound {
        program: name.to_string(),
        hint: Some(hint.to_string()),
    })
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|c| is_executable(c))
}

#[cfg(unix)]
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Windows has no execute bit: a file is enough (callers name `.exe` files). Type-checked for
/// Windows (scripts/check-windows.sh), never run there.
#[cfg(not(unix))]
pub(crate) fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_both_streams_without_deadlock() {
        // 1 MiB on stderr before anything on stdout would block a naive reader.
        let out = Cmd::new("sh")
            .args(["-c", "head -c 1048576 /dev/zero >&2; echo done"])
            .timeout(Duration::from_secs(20))
            .run()
            .expect("sh runs");
        assert_eq!(out.stdout, "done\n");
        assert_eq!(out.stderr.len(), 1_048_576);
    }

    #[test]
    fn failure_names_command_status_and_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`sh -c"), "{msg}");
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn missing_program_is_not_found() {
        let err = Cmd::new("/nonexistent/labctl-nope").run().unwrap_err();
        assert!(matches!(err, ToolError::NotFound { .. }), "{err:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_stdio_proxy_relays_and_is_killed_on_drop() {
        use std::io::{BufRead, BufReader, Write};
        // `cat` echoes what it reads: the stream reaches its stdin and comes back on stdout.
        let (mut s, proxy) = Cmd::new("cat").spawn_stdio_proxy().expect("cat runs");
        let pid = proxy.pid();
        s.write_all(b"hello\n").expect("write");
        let mut line = String::new();
        BufReader::new(s.try_clone().expect("clone"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line, "hello\n");
        drop(proxy);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the relay is still there"
        );
    }

    /// The relay leads its own process group (as `spawn_detached`'s children), so a Ctrl-C
    /// sent to labctl's terminal process group does not reach it.
    #[cfg(unix)]
    #[test]
    fn a_stdio_proxy_has_its_own_process_group() {
        use std::io::Read;
        // /proc/self/stat of `cat` itself: field 5 (after the `(comm)`) is its process group.
        let (mut s, proxy) = Cmd::new("cat")
            .arg("/proc/self/stat")
            .spawn_stdio_proxy()
            .expect("cat runs");
        let mut stat = String::new();
        s.read_to_string(&mut stat).expect("read");
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
        let pgrp: u32 = after
            .split_whitespace()
            .nth(2)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("no process group in {stat:?}"));
        assert_eq!(pgrp, proxy.pid(), "{stat}");
        let ours = std::fs::read_to_string("/proc/self/stat").expect("our stat");
        let our_pgrp: u32 = ours
            .rsplit_once(") ")
            .and_then(|(_, r)| r.split_whitespace().nth(2)?.parse().ok())
            .expect("our process group");
        assert_ne!(pgrp, our_pgrp);
    }

    #[cfg(unix)]
    #[test]
    fn a_stdio_proxy_that_exits_says_why() {
        let (_s, mut proxy) = Cmd::new("sh")
            .args(["-c", "echo 'Permission denied (publickey).' >&2; exit 255"])
            .spawn_stdio_proxy()
            .expect("sh runs");
        let why = proxy.failure(Duration::from_secs(10)).expect("it ended");
        assert!(why.contains("exit status 255"), "{why}");
        assert!(why.contains("Permission denied"), "{why}");
    }

    #[test]
    fn timeout_kills_the_child() {
        let started = Instant::now();
        let err = Cmd::new("sleep")
            .arg("30")
            .timeout(Duration::from_millis(200))
            .run()
            .unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
