//! The connection under a session: TCP to the guest's port, or a relay through a jump host
//! (`ssh -W`, a [`Tunnel`]); and the wait for the server's `SSH-` banner on either.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::Target;

/// A connection relayed by a helper process (`ssh -W`): the stream labctl speaks SSH over,
/// and what keeps the relay alive. Dropping `relay` ends the helper.
pub struct Tunnel {
    pub stream: RelayStream,
    /// Why the relay ended (its exit status and stderr), or `None` while it runs. Owns the
    /// helper: dropping it stops the helper.
    pub relay: Box<dyn FnMut() -> Option<String> + Send>,
}

/// The relay's end of a [`Tunnel`]: a unix socket pair on Unix. Windows has no relay yet
/// (`exec::StdioProxy` is Unix only); a TCP stream stands in for the type.
#[cfg(unix)]
pub type RelayStream = std::os::unix::net::UnixStream;
#[cfg(not(unix))]
pub type RelayStream = std::net::TcpStream;

/// How to open a [`Tunnel`] to a target, one per connection attempt.
#[derive(Clone)]
pub struct Via {
    /// Where the relay goes through (`root@10.0.0.2`), for messages.
    pub label: String,
    pub open: std::sync::Arc<dyn Fn(SocketAddr) -> std::io::Result<Tunnel> + Send + Sync>,
}

impl std::fmt::Debug for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Via").field("label", &self.label).finish()
    }
}

/// A connected stream to a target, before the handshake.
pub(super) enum Conn {
    Tcp(TcpStream),
    Tunnel(Tunnel),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Tcp(t) => f.debug_tuple("Tcp").field(t).finish(),
            Conn::Tunnel(t) => f.debug_tuple("Tunnel").field(&t.stream).finish(),
        }
    }
}

/// What ssh2 is handed (it takes any socket).
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(RelayStream),
}

impl Conn {
    pub(super) fn open(target: &Target, timeout: Duration) -> std::io::Result<Conn> {
        match &target.via {
            None => Ok(Conn::Tcp(TcpStream::connect_timeout(
                &target.addr,
                timeout,
            )?)),
            Some(v) => Ok(Conn::Tunnel((v.open)(target.addr)?)),
        }
    }

    #[cfg(unix)]
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            Conn::Tcp(t) => t.as_fd(),
            Conn::Tunnel(t) => t.stream.as_fd(),
        }
    }

    #[cfg(windows)]
    fn fd(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        use std::os::windows::io::AsSocket;
        match self {
            Conn::Tcp(t) => t.as_socket(),
            Conn::Tunnel(t) => t.stream.as_socket(),
        }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Tunnel(s) => s.stream.set_read_timeout(t),
        }
    }

    /// Why a relay ended (its own words), to replace a bare "connection closed".
    pub(super) fn relay_failure(&mut self) -> Option<String> {
        match self {
            Conn::Tcp(_) => None,
            Conn::Tunnel(t) => (t.relay)(),
        }
    }
}

/// Connect and wait for the server's `SSH-` identification line.
pub(super) fn banner_probe(target: &Target, timeout: Duration) -> std::io::Result<Conn> {
    let mut conn = Conn::open(target, timeout)?;
    match wait_banner(&conn, timeout) {
        Ok(()) => Ok(conn),
        Err(e) => match conn.relay_failure() {
            Some(why) if relay_refused(&why) => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                why,
            )),
            Some(why) => Err(std::io::Error::other(why)),
            None => Err(e),
        },
    }
}

/// Whether an ended relay's report (its exit status and stderr) says the jump host refused
/// its login or its host key: OpenSSH's messages, with its exit status 255.
pub(super) fn relay_refused(why: &str) -> bool {
    why.contains("exit status 255")
        && (why.contains("Permission denied") || why.contains("Host key verification failed"))
}

fn wait_banner(conn: &Conn, timeout: Duration) -> std::io::Result<()> {
    conn.set_read_timeout(Some(timeout))?;
    // Peek, not read: the banner stays in the socket for libssh2's handshake.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4];
    loop {
        let n = match rustix::net::recv(conn.fd(), &mut buf, rustix::net::RecvFlags::PEEK) {
            Ok((n, _)) => n,
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) if e == rustix::io::Errno::AGAIN => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no SSH banner",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        match n {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before the SSH banner",
                ));
            }
            4 if &buf == b"SSH-" => break,
            n if n < 4 && buf[..n] == b"SSH-"[..n] => {
                if started.elapsed() >= timeout {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "incomplete SSH banner",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not an SSH server",
                ));
            }
        }
    }
    conn.set_read_timeout(None)?;
    Ok(())
}
