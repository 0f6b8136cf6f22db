//! Sessions, readiness, exec and upload.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod conn;
use conn::{Conn, Stream, banner_probe};
pub use conn::{RelayStream, Tunnel, Via};

/// Where and as whom to log in.
#[derive(Debug, Clone)]
pub struct Target {
    /// Node name, for messages.
    pub node: String,
    /// The guest's SSH port: on this machine, or as the jump host of `via` sees it.
    pub addr: SocketAddr,
    /// A relay to `addr` through another machine (a remote hypervisor host); `None` connects
    /// to `addr` directly.
    pub via: Option<Via>,
    pub user: String,
    /// Keys to try, in order (the lab key first, then the box's key).
    pub keys: Vec<PathBuf>,
    /// Host key pinning; None trusts any key (only for tests and stand-ins).
    pub host_key: Option<crate::hostkeys::HostKeyCheck>,
}

/// SSH failures; each names the node and address.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{node}: cannot connect to {addr}")]
    Connect {
        node: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{node}: SSH handshake with {addr} failed: {message}")]
    Handshake {
        node: String,
        addr: SocketAddr,
        message: String,
    },
    #[error(
        "{node}: the SSH host key at {addr} is not the one recorded for this node: another machine may answer on its port"
    )]
    HostKeyMismatch {
        node: String,
        addr: SocketAddr,
        file: PathBuf,
    },
    #[error("{node}: host key at {addr}: {source}")]
    HostKey {
        node: String,
        addr: SocketAddr,
        #[source]
        source: crate::hostkeys::HostKeyError,
    },
    #[error("{node}: login as `{user}` at {addr} refused with every key ({keys})")]
    Auth {
        node: String,
        addr: SocketAddr,
        user: String,
        keys: String,
    },
    #[error("{node}: {what} failed: {message}")]
    Channel {
        node: String,
        what: String,
        message: String,
    },
    #[error("{node}: no SSH at {addr} after {}s; last error: {last}", waited.as_secs())]
    NotReady {
        node: String,
        addr: SocketAddr,
        waited: Duration,
        last: String,
    },
    #[error("{node}: the VM stopped while waiting for SSH{}", tail(serial_tail))]
    VmDied { node: String, serial_tail: String },
    #[error("{node}: `{what}` timed out after {}s", after.as_secs())]
    Timeout {
        node: String,
        what: String,
        after: Duration,
    },
    #[error("{node}: interrupted")]
    Cancelled { node: String },
    /// The jump host refused the relay's own login or its host key (`ssh -W` ended with
    /// `Permission denied` or `Host key verification failed`): retrying will not help.
    #[error("{node}: the jump host {via} refused the relay to {addr}: {message}")]
    Relay {
        node: String,
        addr: SocketAddr,
        via: String,
        message: String,
    },
}

fn tail(t: &str) -> String {
    if t.trim().is_empty() {
        String::new()
    } else {
        let indented: Vec<String> = t.lines().map(|l| format!("    {l}")).collect();
        format!("; last console lines:\n{}", indented.join("\n"))
    }
}

/// A logged-in session to one node.
pub struct Session {
    sess: ssh2::Session,
    target: Target,
    /// Which key worked.
    pub key: PathBuf,
    /// The relay of a tunnelled session, stopped after `sess` is dropped (fields drop in
    /// order).
    _relay: Option<Box<dyn FnMut() -> Option<String> + Send>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .finish()
    }
}

/// How much of a command's output is kept in memory (its tail).
pub const MAX_KEPT: usize = 1 << 20;

/// Result of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit status; 128 + N when the command was killed by signal N (as a shell says).
    pub status: i32,
    /// The signal that killed the command (`KILL`, `TERM`, ...), from the channel's
    /// exit-signal message. A killed command is a failure even if no status came.
    pub signal: Option<String>,
    /// What the command printed (stdout and stderr merged), `\r` removed: all of it, or
    /// its last [`MAX_KEPT`] bytes at least.
    pub output: String,
}

impl Session {
    /// Connect, handshake and log in once. `handshake` bounds the banner exchange: under TCG
    /// with several guests booting, sshd can take seconds to fork, so keep it generous.
    pub fn connect(target: &Target, handshake: Duration) -> Result<Session, SshError> {
        let conn =
            Conn::open(target, Duration::from_secs(5)).map_err(|source| SshError::Connect {
                node: target.node.clone(),
                addr: target.addr,
                source,
            })?;
        Session::connect_over(target, conn, handshake)
    }

    /// Handshake and log in over a connected stream (whose banner is still unread).
    fn connect_over(target: &Target, conn: Conn, handshake: Duration) -> Result<Session, SshError> {
        let (tcp, relay) = match conn {
            Conn::Tcp(t) => {
                let _ = t.set_nodelay(true);
                (Stream::Tcp(t), None)
            }
            Conn::Tunnel(t) => (Stream::Unix(t.stream), Some(t.relay)),
        };
        let mut sess = ssh2::Session::new().map_err(|e| SshError::Handshake {
            node: target.node.clone(),
            addr: target.addr,
            message: e.to_string(),
        })?;
        match tcp {
            Stream::Tcp(t) => sess.set_tcp_stream(t),
            Stream::Unix(u) => sess.set_tcp_stream(u),
        }
        sess.set_timeout(u32::try_from(handshake.as_millis()).unwrap_or(u32::MAX));
        // One host key type, the one OpenSSH prefers too, so the pinned key is the one `ssh` sees.
        let _ = sess.method_pref(
            ssh2::MethodType::HostKey,
            "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256,ssh-rsa",
        );
        sess.handshake().map_err(|e| SshError::Handshake {
            node: target.node.clone(),
            addr: target.addr,
            message: e.message().to_string(),
        })?;
        if let Some(chk) = &target.host_key {
            let blob = sess.host_key().map(|(b, _)| b.to_vec()).unwrap_or_default();
            crate::hostkeys::pin(chk, &blob).map_err(|e| match e {
                crate::hostkeys::HostKeyError::Mismatch { file } => SshError::HostKeyMismatch {
                    node: target.node.clone(),
                    addr: target.addr,
                    file,
                },
                source => SshError::HostKey {
                    node: target.node.clone(),
                    addr: target.addr,
                    source,
                },
            })?;
        }
        for key in &target.keys {
            if !key.exists() {
                continue;
            }
            if sess
                .userauth_pubkey_file(&target.user, None, key, None)
                .is_ok()
                && sess.authenticated()
            {
                sess.set_timeout(180_000);
                sess.set_keepalive(true, 15);
                return Ok(Session {
                    sess,
                    target: target.clone(),
                    key: key.clone(),
                    _relay: relay,
                });
            }
        }
        Err(SshError::Auth {
            node: target.node.clone(),
            addr: target.addr,
            user: target.user.clone(),
            keys: target
                .keys
                .iter()
                .map(|k| k.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Retry `connect` until it works, the deadline passes, the VM dies (`vm_alive` returns the
    /// console tail as Err) or `cancel` is set.
    pub fn wait_ready(
        target: &Target,
        deadline: Duration,
        cancel: &AtomicBool,
        vm_alive: &dyn Fn() -> Result<(), String>,
    ) -> Result<Session, SshError> {
        let started = Instant::now();
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(SshError::Cancelled {
                    node: target.node.clone(),
                });
            }
            if let Err(serial_tail) = vm_alive() {
                return Err(SshError::VmDied {
                    node: target.node.clone(),
                    serial_tail,
                });
            }
            let attempt = Instant::now();
            // QEMU's user network accepts at once even while the guest is not listening, and a
            // full SSH handshake would then hang until its timeout. A short banner probe costs
            // the guest nothing until sshd answers; only then comes the real handshake, with a
            // timeout generous enough for a loaded host.
            // Through a relay the probe also covers the jump host's TCP connect, key exchange
            // and login.
            let probe = if target.via.is_some() {
                Duration::from_secs(15)
            } else {
                Duration::from_secs(3)
            };
            let last = match banner_probe(target, probe) {
                // The probe's connection goes on to the handshake: under TCG each connection
                // costs sshd a fork and re-exec of seconds, so it is not thrown away.
                Ok(conn) => match Session::connect_over(target, conn, Duration::from_secs(20)) {
                    Ok(s) => return Ok(s),
                    // Wrong key or a foreign host key is final: retrying will not help.
                    Err(
                        e @ (SshError::Auth { .. }
                        | SshError::HostKeyMismatch { .. }
                        | SshError::HostKey { .. }),
                    ) => return Err(e),
                    Err(e) => {
                        tracing::trace!(node = %target.node, error = %e, "ssh not ready yet");
                        e.to_string()
                    }
                },
                Err(e) => match &target.via {
                    // The jump host said no to the relay's login or host key: final.
                    Some(v) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        return Err(SshError::Relay {
                            node: target.node.clone(),
                            addr: target.addr,
                            via: v.label.clone(),
                            message: e.to_string(),
                        });
                    }
                    Some(v) => format!("{} via {}: {e}", target.addr, v.label),
                    None => format!("{}: {e}", target.addr),
                },
            };
            if started.elapsed() >= deadline {
                return Err(SshError::NotReady {
                    node: target.node.clone(),
                    addr: target.addr,
                    waited: started.elapsed(),
                    last,
                });
            }
            // slirp accepts and drops at once while the guest's sshd is not up: poll briskly,
            // but never more than 4 attempts a second; through a relay, once a second (each
            // attempt is an SSH login to the jump host).
            let gap = if target.via.is_some() {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(250)
            };
            let spent = attempt.elapsed();
            if spent < gap {
                std::thread::sleep(gap - spent);
            }
        }
    }

    fn chan_err(&self, what: &str, e: &ssh2::Error) -> SshError {
        SshError::Channel {
            node: self.target.node.clone(),
            what: what.to_string(),
            message: e.message().to_string(),
        }
    }

    /// Run a command; stdout and stderr merged, each complete line passed to `on_line` as it
    /// arrives. With `pty`, closing the channel (timeout, cancel) hangs up the remote command.
    pub fn exec(
        &self,
        command: &str,
        timeout: Duration,
        cancel: &AtomicBool,
        pty: bool,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, SshError> {
        let node = self.target.node.clone();
        self.sess.set_blocking(true);
        let mut ch = self
            .sess
            .channel_session()
            .map_err(|e| self.chan_err("opening a channel", &e))?;
        if pty {
            ch.request_pty("dumb", None, Some((200, 50, 0, 0)))
                .map_err(|e| self.chan_err("requesting a terminal", &e))?;
        }
        ch.handle_extended_data(ssh2::ExtendedData::Merge)
            .map_err(|e| self.chan_err("merging stderr", &e))?;
        ch.exec(command)
            .map_err(|e| self.chan_err(&format!("running `{command}`"), &e))?;
        self.sess.set_blocking(false);
        let started = Instant::now();
        let mut all = Vec::new();
        let mut pending = Vec::new();
        let mut buf = [0u8; 16_384];
        let result = loop {
            if cancel.load(Ordering::Relaxed) {
                break Err(SshError::Cancelled { node: node.clone() });
            }
            if started.elapsed() > timeout {
                break Err(SshError::Timeout {
                    node: node.clone(),
                    what: command.to_string(),
                    after: timeout,
                });
            }
            match ch.read(&mut buf) {
                Ok(0) => {
                    if ch.eof() {
                        break Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    // Only the tail is used (failure reports): memory stays bounded however
                    // much a step prints.
                    if all.len() > 2 * MAX_KEPT {
                        all.drain(..all.len() - MAX_KEPT);
                    }
                    pending.extend_from_slice(&buf[..n]);
                    if pending.len() > MAX_KEPT && !pending.contains(&b'\n') {
                        // One endless line: pass it on in pieces.
                        let piece: Vec<u8> = std::mem::take(&mut pending);
                        on_line(&String::from_utf8_lossy(&piece));
                    }
                    while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=pos).collect();
                        let text = String::from_utf8_lossy(&line);
                        on_line(text.trim_end_matches(['\n', '\r']));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(15));
                }
                Err(e) => {
                    break Err(SshError::Channel {
                        node: node.clone(),
                        what: format!("reading output of `{command}`"),
                        message: e.to_string(),
                    });
                }
            }
        };
        if !pending.is_empty() {
            on_line(String::from_utf8_lossy(&pending).trim_end_matches(['\n', '\r']));
        }
        self.sess.set_blocking(true);
        if let Err(e) = result {
            let _ = ch.close();
            return Err(e);
        }
        let _ = ch.wait_close();
        let signal = ch
            .exit_signal()
            .ok()
            .and_then(|s| s.exit_signal)
            .filter(|s| !s.is_empty());
        let status = ch
            .exit_status()
            .map_err(|e| self.chan_err("reading the exit status", &e))?;
        // libssh2 reports 0 when no exit-status message came; a signal overrides it.
        let status = match &signal {
            Some(sig) => signal_status(sig),
            None => status,
        };
        Ok(ExecOutput {
            status,
            signal,
            output: String::from_utf8_lossy(&all).replace('\r', ""),
        })
    }

    /// Run a short command and return its output; non-zero exit is an error.
    pub fn run(&self, command: &str, timeout: Duration) -> Result<String, SshError> {
        let never = AtomicBool::new(false);
        let out = self.exec(command, timeout, &never, false, &mut |_| {})?;
        if out.status != 0 || out.signal.is_some() {
            return Err(SshError::Channel {
                node: self.target.node.clone(),
                what: format!("`{command}` (exit status {})", out.status),
                message: last_lines(&out.output, 20),
            });
        }
        Ok(out.output)
    }

    /// Upload `content` to `path` with `mode` (SCP).
    pub fn upload(&self, path: &str, content: &[u8], mode: i32) -> Result<(), SshError> {
        self.sess.set_blocking(true);
        let mut ch = self
            .sess
            .scp_send(std::path::Path::new(path), mode, content.len() as u64, None)
            .map_err(|e| self.chan_err(&format!("uploading {path}"), &e))?;
        ch.write_all(content).map_err(|e| SshError::Channel {
            node: self.target.node.clone(),
            what: format!("uploading {path}"),
            message: e.to_string(),
        })?;
        let _ = ch.send_eof();
        let _ = ch.wait_eof();
        let _ = ch.close();
        let _ = ch.wait_close();
        Ok(())
    }

    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// The shell's status for a command killed by `sig` (RFC 4254 names, without `SIG`).
pub fn signal_status(sig: &str) -> i32 {
    let n = match sig {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 127,
    };
    128 + n
}

/// The last `n` non-empty lines of a text.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// A one-connection server on 127.0.0.1 that writes these chunks, pausing between them.
    fn server(chunks: &'static [&'static [u8]]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                for c in chunks {
                    let _ = s.write_all(c);
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        addr
    }

    fn direct(addr: SocketAddr) -> Target {
        Target {
            node: "n".into(),
            addr,
            via: None,
            user: "root".into(),
            keys: Vec::new(),
            host_key: None,
        }
    }

    /// A target reached through a relay: a thread on the other end of a socket pair writes
    /// the chunks (the guest's side), then the relay "exits" with `why`.
    fn tunnelled(chunks: &'static [&'static [u8]], why: Option<&'static str>) -> Target {
        let open = move |_to: SocketAddr| {
            let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
            std::thread::spawn(move || {
                for c in chunks {
                    let _ = theirs.write_all(c);
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            Ok(Tunnel {
                stream: ours,
                relay: Box::new(move || why.map(str::to_string)),
            })
        };
        Target {
            via: Some(Via {
                label: "root@10.254.1.2".into(),
                open: std::sync::Arc::new(open),
            }),
            ..direct(SocketAddr::from(([127, 0, 0, 1], 61010)))
        }
    }

    fn read_banner(conn: Conn) -> [u8; 19] {
        let mut line = [0u8; 19];
        match conn {
            Conn::Tcp(mut t) => t.read_exact(&mut line).expect("banner still there"),
            Conn::Tunnel(mut t) => t.stream.read_exact(&mut line).expect("banner still there"),
        }
        line
    }

    #[test]
    fn banner_probe_leaves_the_banner_for_the_handshake() {
        let addr = server(&[b"SS", b"H-2.0-OpenSSH_9.2\r\n"]);
        let conn = banner_probe(&direct(addr), Duration::from_secs(2)).expect("an SSH server");
        assert_eq!(&read_banner(conn), b"SSH-2.0-OpenSSH_9.2");
    }

    #[test]
    fn banner_probe_rejects_a_closed_or_foreign_port() {
        let closed = server(&[]);
        let e = banner_probe(&direct(closed), Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        let http = server(&[b"HTTP/1.1 400 Bad Request\r\n"]);
        let e = banner_probe(&direct(http), Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        let silent = server(&[b"SS"]);
        let e = banner_probe(&direct(silent), Duration::from_millis(150)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    }

    #[test]
    fn a_tunnel_carries_the_banner_to_the_handshake() {
        let t = tunnelled(&[b"SS", b"H-2.0-OpenSSH_9.2\r\n"], None);
        let conn = banner_probe(&t, Duration::from_secs(2)).expect("an SSH server");
        assert_eq!(&read_banner(conn), b"SSH-2.0-OpenSSH_9.2");
    }

    #[test]
    fn a_relay_that_ended_says_why() {
        let t = tunnelled(
            &[],
            Some("`ssh -W 127.0.0.1:61010 …` ended (exit status 255): Permission denied"),
        );
        let e = banner_probe(&t, Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("Permission denied"), "{e}");
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        // A relay that is still running leaves the probe's own error.
        let t = tunnelled(&[b"HTTP/1.1 400 Bad Request\r\n"], None);
        let e = banner_probe(&t, Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    }

    /// A jump host that refuses the relay's login or host key ends the wait at once with a
    /// typed error; a relay that ended for another reason is retried until the deadline.
    #[test]
    fn a_refused_relay_is_final_and_other_relay_failures_are_retried() {
        let never = AtomicBool::new(false);
        for why in [
            "`ssh -W 127.0.0.1:61010 …` ended (exit status 255): root@10.254.1.2: Permission denied (publickey).",
            "`ssh -W 127.0.0.1:61010 …` ended (exit status 255): Host key verification failed.",
        ] {
            let t = tunnelled(&[], Some(why));
            let started = Instant::now();
            let e = match Session::wait_ready(&t, Duration::from_secs(30), &never, &|| Ok(())) {
                Err(e) => e,
                Ok(_) => panic!("logged in through a refused relay"),
            };
            assert!(
                matches!(&e, SshError::Relay { via, .. } if via == "root@10.254.1.2"),
                "{e:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(10), "{e}");
        }
        let t = tunnelled(
            &[],
            Some(
                "`ssh -W 127.0.0.1:61010 …` ended (exit status 255): ssh: connect to host 10.254.1.2 port 22: Connection refused",
            ),
        );
        let e = match Session::wait_ready(&t, Duration::from_millis(300), &never, &|| Ok(())) {
            Err(e) => e,
            Ok(_) => panic!("logged in through a failed relay"),
        };
        assert!(matches!(e, SshError::NotReady { .. }), "{e:?}");
    }
}
