//! The route to a node's guest and the SSH target built from it. The lab's connection URI is
//! parsed by labctl-spec (`parse_uri`, the one parser of libvirt URIs), the driver crate says
//! which route a provider's guests need (`labctl_driver::route::guest_route`), and this module
//! turns a route into a [`Target`]: a relay through the jump host (`ssh -W`, run by the
//! driver crate's exec module) when there is one.

use std::net::SocketAddr;
use std::path::PathBuf;

use labctl_driver::route::{GuestRoute, JumpHost, guest_route};
use labctl_spec::class::{HostUri, Remote, UriError, parse_uri};
use labctl_ssh::{Target, Tunnel, Via};

use crate::RunnerError;

/// The jump host of a parsed `qemu+ssh://` URI.
pub fn jump_host(r: &Remote) -> JumpHost {
    JumpHost {
        user: r.user.clone(),
        host: r.host.clone(),
        port: r.port,
        keyfile: r.keyfile.as_ref().map(PathBuf::from),
    }
}

/// The SSH endpoint of a lab's connection URI: `Some` for `qemu+ssh://` URIs, `None` for a
/// local one or none. A URI labctl does not parse is refused: its host is unknown, and
/// falling back to this machine's loopback would reach (and trust) whatever listens there.
pub fn jump_of_uri(uri: Option<&str>) -> Result<Option<JumpHost>, RunnerError> {
    let Some(uri) = uri else { return Ok(None) };
    match parse_uri(uri) {
        Ok(HostUri::Libvirt {
            remote: Some(r), ..
        }) => Ok(Some(jump_host(&r))),
        Ok(HostUri::Libvirt { remote: None, .. }) => Ok(None),
        Ok(HostUri::Local) => Err(RunnerError::UnroutableUri {
            uri: uri.to_string(),
            reason: "`local` is a class.toml host, not a libvirt URI".into(),
        }),
        Err(UriError(reason)) => Err(RunnerError::UnroutableUri {
            uri: uri.to_string(),
            reason,
        }),
    }
}

/// Where the guest whose SSH port the hypervisor forwards to its 127.0.0.1:`port` is reached.
/// Only the libvirt provider's URI is looked at (other providers' guests are on this machine).
pub fn route(provider: &str, uri: Option<&str>, port: u16) -> Result<GuestRoute, RunnerError> {
    let jump = if provider == "libvirt" {
        jump_of_uri(uri)?
    } else {
        None
    };
    Ok(guest_route(provider, jump.as_ref(), port))
}

/// A relay through `jump`: each connection attempt starts `ssh -W` (found once, when the
/// first attempt is made).
fn via(jump: &JumpHost) -> Via {
    let j = jump.clone();
    let open = move |to: SocketAddr| -> std::io::Result<Tunnel> {
        #[cfg(unix)]
        {
            use std::time::Duration;
            let ssh = labctl_driver::route::ssh_program().map_err(std::io::Error::other)?;
            let (stream, mut relay) = j.open_relay(&ssh, to).map_err(std::io::Error::other)?;
            Ok(Tunnel {
                stream,
                relay: Box::new(move || relay.failure(Duration::from_millis(500))),
            })
        }
        // Windows: no relay (the driver's stdio proxy is Unix only); jump hosts serve remote
        // libvirt hosts, which are refused on Windows before this.
        #[cfg(not(unix))]
        {
            let _ = (&j, to);
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "SSH through a jump host is not supported on Windows yet",
            ))
        }
    };
    Via {
        label: jump.proxy_jump(),
        open: std::sync::Arc::new(open),
    }
}

/// The SSH target of a node reached by `route`.
pub(crate) fn target(
    node: &str,
    route: &GuestRoute,
    user: &str,
    keys: Vec<PathBuf>,
    host_key: labctl_ssh::hostkeys::HostKeyCheck,
) -> Target {
    Target {
        node: node.to_string(),
        addr: route.target(),
        via: route.jump().map(via),
        user: user.to_string(),
        keys,
        host_key: Some(host_key),
    }
}

/// A shell word in single quotes (for `ProxyCommand`, which OpenSSH runs with `sh -c`).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The ssh_config option that sends a connection through `jump`: `ProxyJump` when the URI
/// names no key, else a `ProxyCommand` running `ssh -W` with that key (ProxyJump cannot
/// name the jump host's key). `%` is doubled: OpenSSH expands `%` tokens in both.
pub(crate) fn jump_option(jump: &JumpHost) -> (&'static str, String) {
    let Some(key) = &jump.keyfile else {
        return ("ProxyJump", jump.proxy_jump());
    };
    let mut c = format!(
        "ssh -i {} -W %h:%p",
        sh_quote(&key.to_string_lossy().replace('%', "%%"))
    );
    if let Some(p) = jump.port {
        c.push_str(&format!(" -p {p}"));
    }
    if let Some(u) = &jump.user {
        c.push_str(&format!(" -l {u}"));
    }
    c.push_str(&format!(" -- {}", jump.host));
    ("ProxyCommand", c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_from_recorded_provider_and_uri() {
        let local = SocketAddr::from(([127, 0, 0, 1], 61010));
        assert_eq!(
            route("qemu", None, 61010).expect("route"),
            GuestRoute::Direct(local)
        );
        assert_eq!(
            route("libvirt", Some("qemu:///system"), 61010).expect("route"),
            GuestRoute::Direct(local)
        );
        assert_eq!(
            route("libvirt", None, 61010).expect("route"),
            GuestRoute::Direct(local)
        );
        let r = route(
            "libvirt",
            Some("qemu+ssh://root@10.254.1.2:2222/system?keyfile=/tmp/k/id_ed25519"),
            61010,
        )
        .expect("route");
        assert_eq!(
            r,
            GuestRoute::Via {
                jump: JumpHost {
                    user: Some("root".into()),
                    host: "10.254.1.2".into(),
                    port: Some(2222),
                    keyfile: Some("/tmp/k/id_ed25519".into()),
                },
                target: local,
            }
        );
    }

    #[test]
    fn a_remote_uri_labctl_cannot_parse_is_refused_not_routed_to_loopback() {
        for uri in [
            "qemu+tls://h1/system",
            "qemu+tcp://10.0.0.2/system",
            "qemu+libssh2://root@h1/system",
            "qemu+libssh://root@h1/system",
            "qemu+ssh:///system",
            "qemu+ssh://root@h1/system?keyfile=/k/%zz",
            "qemu+ssh://root@h1/system?keyfile=/k/%4",
            "qemu://h1/system",
            "local",
        ] {
            match route("libvirt", Some(uri), 61010) {
                Err(RunnerError::UnroutableUri { uri: u, reason }) => {
                    assert_eq!(u, uri);
                    assert!(!reason.is_empty(), "{uri}");
                }
                other => panic!("{uri}: {other:?}"),
            }
            assert!(jump_of_uri(Some(uri)).is_err(), "{uri}");
        }
        // The qemu provider's guests are on this machine whatever URI the environment holds.
        assert_eq!(
            route("qemu", Some("qemu+tls://h1/system"), 61010).expect("route"),
            GuestRoute::Direct(SocketAddr::from(([127, 0, 0, 1], 61010)))
        );
    }

    #[test]
    fn the_jump_option_names_the_key_when_the_uri_does() {
        let j = jump_of_uri(Some("qemu+ssh://root@10.254.1.2/system"))
            .expect("parsed")
            .expect("remote");
        assert_eq!(
            jump_option(&j),
            ("ProxyJump", "root@10.254.1.2".to_string())
        );
        let j = jump_of_uri(Some(
            "qemu+ssh://lab@h1:2222/system?keyfile=/home/it's%25/id",
        ))
        .expect("parsed")
        .expect("remote");
        assert_eq!(
            jump_option(&j),
            (
                "ProxyCommand",
                "ssh -i '/home/it'\\''s%%/id' -W %h:%p -p 2222 -l lab -- h1".to_string()
            )
        );
    }

    #[test]
    fn a_target_through_a_jump_host_relays() {
        let check = labctl_ssh::hostkeys::HostKeyCheck {
            file: PathBuf::from("/k"),
            alias: "a".into(),
            replace: false,
        };
        let r = route("libvirt", Some("qemu+ssh://root@h1/system"), 61010).expect("route");
        let t = target("m", &r, "root", Vec::new(), check.clone());
        assert_eq!(t.addr, SocketAddr::from(([127, 0, 0, 1], 61010)));
        assert_eq!(t.via.as_ref().map(|v| v.label.as_str()), Some("root@h1"));
        let r = route("qemu", None, 61010).expect("route");
        let t = target("m", &r, "root", Vec::new(), check);
        assert!(t.via.is_none());
    }

    fn info(uri: &str) -> crate::SshInfo {
        crate::SshInfo {
            node: "m".into(),
            port: 61010,
            user: "root".into(),
            key: PathBuf::from("/lab/.labctl/ssh/id_ed25519"),
            known_hosts: PathBuf::from("/lab/.labctl/known_hosts"),
            host_key_alias: "labctl-1a2b-m".into(),
            jump: route("libvirt", Some(uri), 61010)
                .expect("route")
                .jump()
                .cloned(),
        }
    }

    #[test]
    fn ssh_config_and_ssh_args_go_through_the_jump_host() {
        let text =
            crate::ssh_config_text(&[info("qemu+ssh://root@10.0.0.2:2222/system")]).expect("text");
        assert!(
            text.starts_with(
                "Host m\n  HostName 127.0.0.1\n  ProxyJump root@10.0.0.2:2222\n  Port 61010\n"
            ),
            "{text}"
        );
        let args = crate::ssh_args(
            &info("qemu+ssh://root@10.0.0.2/system?keyfile=/k/id"),
            &["hostname".into()],
            false,
        )
        .expect("args");
        assert!(
            args.contains(&"ProxyCommand=ssh -i '/k/id' -W %h:%p -l root -- 10.0.0.2".to_string()),
            "{args:?}"
        );
        let local = crate::ssh_config_text(&[info("qemu:///system")]).expect("text");
        assert!(!local.contains("Proxy"), "{local}");
    }
}
