//! Trusted roots, and every step rendered once with placeholder values.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::role_span;
use crate::error::{Sink, suggest};
use crate::graph::Graph;
use crate::model::{Lab, StepSource};
use crate::parse::{RawLab, RawStep, S};
use crate::render::{RenderFailure, Renderer};

/// Where a lab may read its templates and scripts from: its own directory and the
/// directories it names in `lab.trusted_dirs`, after resolving symbolic links. A lab handed
/// around as a zip cannot make labctl upload `~/.ssh/id_ed25519` to a guest as a "script".
pub(super) struct Roots {
    pub(super) lab: PathBuf,
    resolved: Vec<PathBuf>,
}

impl Roots {
    pub(super) fn new(dir: &Path, trusted: &[S<String>], sink: &mut Sink<'_>) -> Roots {
        let mut resolved: Vec<PathBuf> = std::fs::canonicalize(dir).into_iter().collect();
        for t in trusted {
            match std::fs::canonicalize(dir.join(&t.v)) {
                Ok(p) if p.is_dir() => resolved.push(p),
                _ => sink.at(
                    &t.span,
                    "lab.trusted_dirs",
                    format!("directory `{}` does not exist", t.v),
                ),
            }
        }
        Roots {
            lab: dir.to_path_buf(),
            resolved,
        }
    }

    /// Whether `path` (which exists) resolves inside the lab or a trusted directory.
    pub(super) fn allows(&self, path: &Path) -> bool {
        std::fs::canonicalize(path).is_ok_and(|p| self.resolved.iter().any(|r| p.starts_with(r)))
    }
}

/// Render every step for every node with placeholder values, so that unknown variables and
/// template syntax errors show up at validation time, not half way through `up`.
/// `check_on` / `forget_on` name roles; the hooks render for every node of their role.
pub(super) fn check_hooks(lab: &Lab, raw: &RawLab, renderer: &Renderer, sink: &mut Sink<'_>) {
    for (role, rr) in lab.roles.iter().zip(raw.roles.iter()) {
        let hooks = [
            (&role.check, &rr.check, &rr.check_on, "check"),
            (&role.forget, &rr.forget, &rr.forget_on, "forget"),
        ];
        for (hook, text, on, name) in hooks {
            let (Some(hook), Some(text)) = (hook, text) else {
                if let Some(on) = on.first() {
                    sink.at(
                        &on.span,
                        &format!("role.{}.{name}_on", role.name),
                        format!("`{name}_on` without `{name}`"),
                    );
                }
                continue;
            };
            for target in on {
                if lab.role(&target.v).is_none() {
                    let hint = suggest(&target.v, lab.roles.iter().map(|r| r.name.as_str()))
                        .map_or_else(
                            || "roles are the [role.NAME] tables".to_string(),
                            |s| format!("did you mean `{s}`?"),
                        );
                    sink.hint(
                        &target.span,
                        &format!("role.{}.{name}_on", role.name),
                        format!("no role named `{}`", target.v),
                        hint,
                    );
                }
            }
            for node in lab.nodes.iter().filter(|n| n.role == role.name) {
                if let Err(reason) = renderer.check_arg(lab, node, &hook.run, &BTreeMap::new()) {
                    sink.at(&text.span, &format!("role.{}.{name}", role.name), reason);
                    break;
                }
            }
        }
    }
}

pub(super) fn check_templates(lab: &Lab, raw: &RawLab, sink: &mut Sink<'_>) {
    let renderer = match Renderer::new(lab) {
        Ok(r) => r,
        Err(e) => {
            let rs = step_using(lab, raw, &e);
            if !read_failure_at_source(&e, rs, sink) {
                let field = rs.map_or_else(String::new, |rs| rs.path.clone());
                push_render_failure(&e, sink, &field, None);
            }
            return;
        }
    };
    check_hooks(lab, raw, &renderer, sink);
    let g = Graph::build(lab);
    let mut publisher: HashMap<usize, &[String]> = HashMap::new();
    for (t, task) in g.tasks.iter().enumerate() {
        let step = &lab.steps_of(&lab.nodes[task.node])[task.step];
        publisher.insert(t, &step.publish);
    }
    let mut reported = BTreeSet::new();
    for (t, task) in g.tasks.iter().enumerate() {
        let node = &lab.nodes[task.node];
        let step = &lab.steps_of(node)[task.step];
        let mut values = BTreeMap::new();
        for a in g.ancestors(t) {
            for name in publisher[&a] {
                values.insert(name.clone(), format!("<{name} from {}>", g.label(lab, a)));
            }
        }
        let rs = role_span(raw, &node.role).and_then(|r| r.steps.get(task.step));
        let field = rs.map_or_else(|| format!("role.{}", node.role), |s| s.path.clone());
        // Arguments are small templates written in lab.toml: report them there.
        let mut bad_arg = false;
        for (j, arg) in step.args.iter().enumerate() {
            if let Err(reason) = renderer.check_arg(lab, node, arg, &values) {
                bad_arg = true;
                let arg_field = format!("{field}.args[{j}]");
                if reported.insert(format!("{arg_field}: {reason}")) {
                    let span = rs
                        .and_then(|s| s.args.get(j))
                        .map_or(0..0, |a| a.span.clone());
                    sink.at(
                        &span,
                        &arg_field,
                        format!("{reason} (rendering for {})", node.name),
                    );
                }
            }
        }
        if bad_arg {
            continue;
        }
        if let Err(e) = renderer.render_step(lab, node, step, &values) {
            let key = e.to_string();
            if reported.insert(key) && !read_failure_at_source(&e, rs, sink) {
                let hint = e.to_string().contains("values.").then_some(
                    "published values reach only steps that run after the publisher: add it to `after`",
                );
                push_render_failure(&e, sink, &field, Some((&node.name, hint)));
            }
        }
    }
}

/// An unreadable template or script has no line of its own: report it where lab.toml names
/// it. Returns whether `e` was such a failure.
pub(super) fn read_failure_at_source(
    e: &RenderFailure,
    rs: Option<&RawStep>,
    sink: &mut Sink<'_>,
) -> bool {
    let RenderFailure::Read { message, .. } = e else {
        return false;
    };
    let Some(rs) = rs else { return false };
    let (key, src) = match (&rs.template, &rs.script) {
        (Some(t), _) => ("template", t),
        (None, Some(s)) => ("script", s),
        (None, None) => return false,
    };
    sink.at(
        &src.span,
        &format!("{}.{key}", rs.path),
        format!("cannot read {key} `{}`: {message}", src.v),
    );
    true
}

/// The first step whose template a render failure is about (none for a partial).
pub(super) fn step_using<'r>(lab: &Lab, raw: &'r RawLab, e: &RenderFailure) -> Option<&'r RawStep> {
    let (RenderFailure::Read { path, .. } | RenderFailure::Template { path, .. }) = e;
    for (role, rr) in lab.roles.iter().zip(&raw.roles) {
        for (step, rs) in role.steps.iter().zip(&rr.steps) {
            if let StepSource::Template(rel) = &step.source
                && lab.templates_dir.join(rel) == *path
            {
                return Some(rs);
            }
        }
    }
    None
}

/// Turn a render failure into a diagnostic in the template file. `node`: the node rendered
/// for (named in the message) and an optional hint.
pub(super) fn push_render_failure(
    e: &RenderFailure,
    sink: &mut Sink<'_>,
    field: &str,
    node: Option<(&str, Option<&str>)>,
) {
    let (file, line, column, mut message) = match e {
        RenderFailure::Read { path, message } => {
            (path.clone(), 0, 0, format!("cannot read: {message}"))
        }
        RenderFailure::Template {
            path,
            line,
            column,
            message,
        } => (path.clone(), *line, *column, message.clone()),
    };
    if let Some((name, _)) = node {
        message.push_str(&format!(" (rendering for {name})"));
    }
    sink.diags.push(crate::error::Diagnostic {
        file,
        line,
        column,
        field: field.to_string(),
        message,
        hint: node.and_then(|(_, h)| h).map(str::to_string),
        snippet: None,
    });
}
