//! How to log in to a lab's nodes, from the recorded state: `ssh-config` text and the `ssh`
//! argv, every value checked so that it cannot add OpenSSH options.

use std::path::PathBuf;

use crate::RunnerError;
use crate::machines::Env;
use crate::state::{LabPaths, LabState};

/// How to log in to a node.
#[derive(Debug, Clone)]
pub struct SshInfo {
    pub node: String,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    /// The lab's pinned host keys and this node's name in them.
    pub known_hosts: PathBuf,
    pub host_key_alias: String,
    /// The hypervisor host the node's port is reached through (a remote libvirt host).
    pub jump: Option<labctl_driver::route::JumpHost>,
}

/// Login details of every node (or one).
pub fn ssh_info(
    paths: &LabPaths,
    env: &Env,
    node: Option<&str>,
) -> Result<Vec<SshInfo>, RunnerError> {
    let st = LabState::load_checked(paths, env)?.ok_or(RunnerError::NotUp)?;
    let own = st.owner_paths(paths)?;
    if let Some(n) = node
        && !st.nodes.contains_key(n)
    {
        return Err(RunnerError::UnknownNode {
            name: n.to_string(),
            known: st.nodes.keys().cloned().collect(),
        });
    }
    let uri = crate::machines::effective_uri(env, &st);
    st.nodes
        .iter()
        .filter(|(name, _)| node.is_none_or(|n| n == name.as_str()))
        .map(|(name, n)| {
            let route = crate::route::route(st.provider.as_str(), uri, n.machine.ssh.host)?;
            Ok(SshInfo {
                node: name.clone(),
                port: n.machine.ssh.host,
                user: n.user.clone(),
                key: if n.configured {
                    own.key()
                } else {
                    n.box_key.clone().unwrap_or_else(|| own.key())
                },
                known_hosts: own.known_hosts(),
                host_key_alias: own.host_key_alias(name),
                jump: route.jump().cloned(),
            })
        })
        .collect()
}

/// A value for ssh_config or `ssh -o`: double-quoted, `%` doubled (OpenSSH expands `%`
/// tokens in paths). Refused when it holds a quote or a control character, which the
/// config syntax cannot carry safely.
fn ssh_quote(info: &SshInfo, what: &'static str, value: &str) -> Result<String, RunnerError> {
    if value.is_empty() || value.chars().any(|c| c == '"' || c.is_control()) {
        return Err(RunnerError::UnsafeSshValue {
            node: info.node.clone(),
            what,
            value: value.escape_debug().to_string(),
        });
    }
    Ok(format!("\"{}\"", value.replace('%', "%%")))
}

/// The checked options for one node, as `(keyword, value)` in ssh_config syntax.
fn ssh_options(i: &SshInfo) -> Result<Vec<(&'static str, String)>, RunnerError> {
    if !crate::state::valid_label(&i.node) {
        return Err(RunnerError::UnsafeSshValue {
            node: i.node.escape_debug().to_string(),
            what: "node name",
            value: i.node.escape_debug().to_string(),
        });
    }
    if !crate::state::valid_user(&i.user) {
        return Err(RunnerError::UnsafeSshValue {
            node: i.node.clone(),
            what: "user name",
            value: i.user.escape_debug().to_string(),
        });
    }
    let mut opts = vec![("HostName", "127.0.0.1".to_string())];
    // A remote hypervisor host: its guests' ports listen on its own 127.0.0.1.
    opts.extend(i.jump.as_ref().map(crate::route::jump_option));
    opts.extend([
        ("Port", i.port.to_string()),
        ("User", i.user.clone()),
        (
            "IdentityFile",
            ssh_quote(i, "key path", &i.key.to_string_lossy())?,
        ),
        ("IdentitiesOnly", "yes".into()),
        ("HostKeyAlias", i.host_key_alias.clone()),
        (
            "UserKnownHostsFile",
            ssh_quote(i, "known_hosts path", &i.known_hosts.to_string_lossy())?,
        ),
        ("StrictHostKeyChecking", "yes".into()),
        ("LogLevel", "ERROR".into()),
    ]);
    Ok(opts)
}

/// OpenSSH client config for every node. Host keys are verified against the lab's
/// `.labctl/known_hosts`, pinned on each node's first contact.
pub fn ssh_config_text(infos: &[SshInfo]) -> Result<String, RunnerError> {
    let mut s = String::new();
    for i in infos {
        s.push_str(&format!("Host {}\n", i.node));
        for (k, v) in ssh_options(i)? {
            s.push_str(&format!("  {k} {v}\n"));
        }
        s.push('\n');
    }
    Ok(s)
}

/// The `ssh` argv (without the program) to reach a node, optionally running a command:
/// options, `-l USER`, then `--` and the host, so nothing can be read as an option.
pub fn ssh_args(info: &SshInfo, command: &[String], tty: bool) -> Result<Vec<String>, RunnerError> {
    let mut a: Vec<String> = Vec::new();
    for (k, v) in ssh_options(info)? {
        if matches!(k, "HostName" | "Port" | "User") {
            continue;
        }
        a.push("-o".into());
        a.push(format!("{k}={v}"));
    }
    a.extend(["-o".into(), "ConnectTimeout=10".into()]);
    a.extend([
        "-p".into(),
        info.port.to_string(),
        "-l".into(),
        info.user.clone(),
    ]);
    if tty {
        a.push("-t".into());
    }
    a.push("--".into());
    a.push("127.0.0.1".into());
    a.extend(command.iter().cloned());
    Ok(a)
}
