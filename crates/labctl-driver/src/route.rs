//! How this machine reaches a guest's SSH port. Every driver forwards the guest's port 22 to
//! 127.0.0.1 of the machine that runs the hypervisor. For QEMU and VirtualBox that is this
//! machine; for a remote libvirt host (`qemu+ssh://user@host/system`) it is that host, and
//! the guest is reached through it as an SSH jump host (OpenSSH's `ssh -W`), so nothing
//! listens on the host's public interfaces. Which provider needs which route is decided here,
//! in the driver crate: the runner asks [`guest_route`] and connects as told.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::exec::{ToolError, find_program};

/// The SSH endpoint of a hypervisor host: `[user@]host[:port]`, and the key libvirt is told
/// to use (`?keyfile=` in the URI), if any. The caller parses the URI (labctl-spec's
/// `parse_uri` is the one parser); this is data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub keyfile: Option<PathBuf>,
}

impl JumpHost {
    /// `[user@]host[:port]` (an IPv6 address in brackets), as OpenSSH's `ProxyJump` and
    /// `ssh -J` take it.
    pub fn proxy_jump(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.host.contains(':') {
            s.push('[');
            s.push_str(&self.host);
            s.push(']');
        } else {
            s.push_str(&self.host);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }

    /// The arguments of `ssh` relaying one connection to `target` (an address as the jump
    /// host sees it) over stdin/stdout: `-W`, no terminal, no password prompts, the URI's key
    /// when it has one; user, port and host last, after `--`. OpenSSH reads the user's
    /// `~/.ssh` (config, known_hosts, agent) as libvirt's own `qemu+ssh` transport does.
    pub fn relay_args(&self, target: SocketAddr) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "-W".into(),
            target.to_string().into(),
            "-T".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-o".into(),
            "ServerAliveInterval=15".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ];
        if let Some(k) = &self.keyfile {
            a.push("-i".into());
            a.push(k.clone().into_os_string());
        }
        if let Some(p) = self.port {
            a.push("-p".into());
            a.push(p.to_string().into());
        }
        if let Some(u) = &self.user {
            a.push("-l".into());
            a.push(u.into());
        }
        a.push("--".into());
        a.push(self.host.clone().into());
        a
    }

    /// Start the relay to `target` with `ssh` (the program at `ssh`): the returned stream
    /// is the connection; dropping the [`StdioProxy`] kills the relay.
    #[cfg(unix)]
    pub fn open_relay(
        &self,
        ssh: &std::path::Path,
        target: SocketAddr,
    ) -> Result<(std::os::unix::net::UnixStream, crate::exec::StdioProxy), ToolError> {
        crate::exec::Cmd::new(ssh)
            .args(self.relay_args(target))
            .spawn_stdio_proxy()
    }
}

/// Find OpenSSH's client (`LABCTL_SSH` overrides PATH), for relays and `labctl ssh`.
pub fn ssh_program() -> Result<PathBuf, ToolError> {
    find_program(
        "ssh",
        "LABCTL_SSH",
        "install an OpenSSH client (`apt-get install openssh-client`)",
    )
}

/// Where a guest's forwarded SSH port is reached from this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestRoute {
    /// On this machine (QEMU, VirtualBox, a local libvirtd).
    Direct(SocketAddr),
    /// On the hypervisor host's loopback, through the host as a jump host.
    Via { jump: JumpHost, target: SocketAddr },
}

impl GuestRoute {
    /// The address the guest's port is at, as seen from the machine that forwards it.
    pub fn target(&self) -> SocketAddr {
        match self {
            GuestRoute::Direct(a) | GuestRoute::Via { target: a, .. } => *a,
        }
    }
    pub fn jump(&self) -> Option<&JumpHost> {
        match self {
            GuestRoute::Direct(_) => None,
            GuestRoute::Via { jump, .. } => Some(jump),
        }
    }
}

/// The route to a guest whose SSH port the hypervisor forwards to its 127.0.0.1:`port`.
/// `host` is the SSH endpoint of the lab's connection (a `qemu+ssh://` URI's), `None` for a
/// local one. Only libvirt runs guests on another machine; the other providers ignore it.
pub fn guest_route(provider: &str, host: Option<&JumpHost>, port: u16) -> GuestRoute {
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    match (provider, host) {
        ("libvirt", Some(j)) => GuestRoute::Via {
            jump: j.clone(),
            target,
        },
        _ => GuestRoute::Direct(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jump(user: Option<&str>, host: &str, port: Option<u16>, key: Option<&str>) -> JumpHost {
        JumpHost {
            user: user.map(str::to_string),
            host: host.into(),
            port,
            keyfile: key.map(PathBuf::from),
        }
    }

    #[test]
    fn only_a_remote_libvirt_host_is_a_jump() {
        let j = jump(Some("root"), "10.254.1.2", None, None);
        let local = SocketAddr::from(([127, 0, 0, 1], 61010));
        assert_eq!(guest_route("qemu", None, 61010), GuestRoute::Direct(local));
        assert_eq!(
            guest_route("qemu", Some(&j), 61010),
            GuestRoute::Direct(local)
        );
        assert_eq!(
            guest_route("libvirt", None, 61010),
            GuestRoute::Direct(local)
        );
        let r = guest_route("libvirt", Some(&j), 61010);
        assert_eq!(r.target(), local);
        assert_eq!(r.jump(), Some(&j));
    }

    #[test]
    fn proxy_jump_text() {
        assert_eq!(
            jump(Some("lab"), "10.0.0.5", Some(2222), Some("/k")).proxy_jump(),
            "lab@10.0.0.5:2222"
        );
        assert_eq!(jump(None, "h1", None, None).proxy_jump(), "h1");
        assert_eq!(
            jump(Some("me"), "fd00::2", Some(22), None).proxy_jump(),
            "me@[fd00::2]:22"
        );
    }

    #[test]
    fn relay_argv() {
        let to = SocketAddr::from(([127, 0, 0, 1], 61010));
        let a = jump(Some("root"), "10.254.1.2", Some(2222), Some("/tmp/k/id"))
            .relay_args(to)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            a,
            "-W 127.0.0.1:61010 -T -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 \
             -o LogLevel=ERROR -i /tmp/k/id -p 2222 -l root -- 10.254.1.2"
        );
        let a = jump(None, "h1", None, None).relay_args(to);
        assert_eq!(
            a.last().map(|s| s.to_string_lossy().into_owned()),
            Some("h1".into())
        );
        assert!(
            !a.iter().any(|s| s == "-i" || s == "-p" || s == "-l"),
            "{a:?}"
        );
    }
}
