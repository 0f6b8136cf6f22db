//! A role's hooks on reset: its readiness `check` and the hooks that run on other nodes of
//! the lab (`forget`), each retried until it passes or its deadline.

use std::time::{Duration, Instant};

use labctl_spec::{Lab, Renderer};

use super::login;
use crate::RunnerError;
use crate::events::{EventKind, Notice, Reporter, emit};
use crate::guest::Connect;
use crate::provision::as_root;
use crate::state::{LabPaths, LabState, load_values};

/// Run a role's readiness check for `node` until it passes (bounded).
#[allow(
    clippy::too_many_arguments,
    reason = "one call site per hook, all arguments named"
)]
pub(super) fn run_hook(
    connect: &dyn Connect,
    lab: &Lab,
    paths: &LabPaths,
    st: &LabState,
    uri: Option<&str>,
    node: &str,
    hook: &labctl_spec::Hook,
    what: &str,
    deadline: Duration,
) -> Result<(), RunnerError> {
    let spec_node = lab.node(node).ok_or_else(|| RunnerError::UnknownNode {
        name: node.to_string(),
        known: Vec::new(),
    })?;
    let renderer = Renderer::new(lab)?;
    let command = renderer
        .check_arg(lab, spec_node, &hook.run, &load_values(paths))
        .map_err(|m| RunnerError::Hook {
            node: node.to_string(),
            what: what.to_string(),
            message: m,
        })?;
    let candidates = hook_nodes(lab, hook, node);
    let started = Instant::now();
    let wrapped = |on: &str| {
        format!(
            "{}sh -c {}",
            as_root(&st.nodes[on].user),
            labctl_spec::shell_quote(&command)
        )
    };
    // A node that is down (the README's "power off cp1") must not hold up the others long.
    let login_for = Duration::from_secs(if candidates.len() > 1 { 30 } else { 120 });
    let mut last = String::new();
    loop {
        // Each round tries the candidates in order; one that is not running is skipped.
        for on in &candidates {
            if !st.nodes.contains_key(on) {
                continue;
            }
            let result = login(connect, paths, st, uri, on, login_for)
                .and_then(|sess| Ok(sess.run(&wrapped(on), Duration::from_secs(60))?));
            match result {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("`{command}` on {on}: {e}"),
            }
        }
        if started.elapsed() >= deadline {
            return Err(RunnerError::Hook {
                node: node.to_string(),
                what: what.to_string(),
                message: if last.is_empty() {
                    format!("no node to run `{command}` on")
                } else {
                    last
                },
            });
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The nodes that may run `hook` for `node`, in order: the nodes of the hook's roles other
/// than `node` itself, or `node` alone when the hook names no role.
pub(crate) fn hook_nodes(lab: &Lab, hook: &labctl_spec::Hook, node: &str) -> Vec<String> {
    if hook.on.is_empty() {
        return vec![node.to_string()];
    }
    hook.on
        .iter()
        .flat_map(|role| lab.nodes.iter().filter(move |n| n.role == *role))
        .filter(|n| n.name != node)
        .map(|n| n.name.clone())
        .collect()
}

/// Run the node's role `check`, if it declares one, and say that it passed.
#[allow(
    clippy::too_many_arguments,
    reason = "three call sites, all arguments named"
)]
pub(super) fn run_check(
    connect: &dyn Connect,
    lab: &Lab,
    paths: &LabPaths,
    st: &LabState,
    uri: Option<&str>,
    node: &str,
    deadline: Duration,
    reporter: &dyn Reporter,
) -> Result<(), RunnerError> {
    let hook = lab
        .node(node)
        .and_then(|sn| lab.role(&sn.role))
        .and_then(|r| r.check.clone());
    if let Some(hook) = hook {
        run_hook(connect, lab, paths, st, uri, node, &hook, "check", deadline)?;
        emit(
            reporter,
            node,
            EventKind::Notice {
                notice: Notice::CheckPassed,
            },
        );
    }
    Ok(())
}
