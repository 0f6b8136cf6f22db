//! Rendering provisioning steps: Handlebars in strict mode, no HTML escaping.
//!
//! Values that reach a shell go through the `sh` helper (`{{sh vars.k8s_version}}`), which
//! single-quotes them; lab.toml validation keeps hostnames, addresses and variable names to
//! characters that need no quoting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::{Lab, Node, Step, StepSource};

/// A step as it will be uploaded and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedStep {
    pub script: String,
    pub args: Vec<String>,
    /// sha256 over script and arguments, hex.
    pub hash: String,
}

/// Why a step could not be rendered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderFailure {
    #[error("cannot read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Template {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// A classroom bundle attached to a lab, as its guests reach it (the runner fills it in once
/// the bundle server runs). Templates see it as `bundle` (`bundle.attached` is false without
/// one; the other fields are then empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuestBundle {
    pub name: String,
    /// The bundle's root as guests reach it: `http://10.0.2.100/b/NAME`.
    pub url: String,
    /// The apt source line for the lab's OS release (signed-by the bundle's key).
    pub apt_line: String,
    /// The bundle's public key (ASCII armor).
    pub key: String,
    /// The registry mirror's API root: `http://10.0.2.100/b/NAME/v2`.
    pub registry: String,
    /// The registries the bundle's images come from.
    pub registries: Vec<BundleRegistry>,
}

/// A registry the bundle mirrors images of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BundleRegistry {
    /// As containerd names it (`docker.io`, `registry.k8s.io`).
    pub name: String,
    /// Its real address (`https://registry-1.docker.io` for docker.io).
    pub server: String,
}

impl BundleRegistry {
    /// The registry `name` (host and optional port) and its real server.
    pub fn of(name: &str) -> BundleRegistry {
        let server = if name == "docker.io" {
            "https://registry-1.docker.io".to_string()
        } else {
            format!("https://{name}")
        };
        BundleRegistry {
            name: name.to_string(),
            server,
        }
    }
}

fn bundle_json(b: Option<&GuestBundle>) -> Value {
    match b {
        Some(b) => {
            let mut v = json!(b);
            v["attached"] = json!(true);
            v
        }
        None => json!({
            "attached": false, "name": "", "url": "", "apt_line": "", "key": "",
            "registry": "", "registries": [],
        }),
    }
}

/// Registry of a lab's templates and partials.
pub struct Renderer {
    hb: Handlebars<'static>,
    templates_dir: PathBuf,
    lab_dir: PathBuf,
    bundle: Option<GuestBundle>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("templates_dir", &self.templates_dir)
            .finish()
    }
}

fn sh_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let param = h
        .param(0)
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("sh", 0))?;
    let text = match param.value() {
        Value::String(s) => s.clone(),
        Value::Null => {
            return Err(RenderErrorReason::Other(format!(
                "`sh` got an undefined value: {}",
                param.relative_path().map_or("?", String::as_str)
            ))
            .into());
        }
        other => other.to_string(),
    };
    out.write(&shell_quote(&text))?;
    Ok(())
}

/// Quote a string for a POSIX shell; plain words stay as they are.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Renderer {
    /// Load every template the lab's steps name and every partial in `_partials/`.
    pub fn new(lab: &Lab) -> Result<Renderer, RenderFailure> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.set_prevent_indent(true);
        hb.register_helper("sh", Box::new(sh_helper));
        let partials = lab.templates_dir.join("_partials");
        if let Ok(entries) = std::fs::read_dir(&partials) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths {
                if path.extension().is_some_and(|e| e == "hbs") {
                    let name = path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default()
                        .to_string();
                    let text = read(&path)?;
                    hb.register_partial(&name, text)
                        .map_err(|e| template_error(&path, &e))?;
                }
            }
        }
        let mut r = Renderer {
            hb,
            templates_dir: lab.templates_dir.clone(),
            lab_dir: lab.dir.clone(),
            bundle: None,
        };
        for role in &lab.roles {
            for step in &role.steps {
                if let StepSource::Template(rel) = &step.source {
                    r.register(rel)?;
                }
            }
        }
        Ok(r)
    }

    /// Render with this bundle attached (`bundle.*` in templates).
    pub fn set_bundle(&mut self, bundle: Option<GuestBundle>) {
        self.bundle = bundle;
    }

    /// The bundle templates see, if any.
    pub fn bundle(&self) -> Option<&GuestBundle> {
        self.bundle.as_ref()
    }

    /// The template context of a node, with this renderer's bundle.
    fn ctx(&self, lab: &Lab, node: &Node, values: &BTreeMap<String, String>) -> Value {
        let mut ctx = context(lab, node, values);
        ctx["bundle"] = bundle_json(self.bundle.as_ref());
        ctx
    }

    fn register(&mut self, rel: &Path) -> Result<(), RenderFailure> {
        let name = rel.to_string_lossy().to_string();
        if self.hb.has_template(&name) {
            return Ok(());
        }
        let path = self.templates_dir.join(rel);
        let text = read(&path)?;
        self.hb
            .register_template_string(&name, text)
            .map_err(|e| template_error(&path, &e))
    }

    /// Render only a step's arguments (for `plan`).
    pub fn render_args(
        &self,
        lab: &Lab,
        node: &Node,
        step: &Step,
    ) -> Result<Vec<String>, RenderFailure> {
        let ctx = self.ctx(lab, node, &BTreeMap::new());
        self.args(lab, node, step, &ctx)
    }

    fn args(
        &self,
        lab: &Lab,
        node: &Node,
        step: &Step,
        ctx: &Value,
    ) -> Result<Vec<String>, RenderFailure> {
        let mut args = Vec::with_capacity(step.args.len());
        for (i, a) in step.args.iter().enumerate() {
            let rendered = self.arg(a, ctx).map_err(|reason| RenderFailure::Template {
                path: lab.file.clone(),
                line: 0,
                column: 0,
                message: format!(
                    "role.{}.step `{}` args[{i}]: {reason}",
                    node.role, step.name
                ),
            })?;
            args.push(rendered);
        }
        Ok(args)
    }

    fn arg(&self, arg: &str, ctx: &Value) -> Result<String, String> {
        self.hb
            .render_template(arg, ctx)
            .map_err(|e| render_reason(&e))
    }

    /// Render one small template (a step argument, a hook) for a node; the error is only the
    /// reason, for callers that know where it is written.
    pub fn check_arg(
        &self,
        lab: &Lab,
        node: &Node,
        arg: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        self.arg(arg, &self.ctx(lab, node, values))
    }

    /// Render one step of one node with the values published so far.
    pub fn render_step(
        &self,
        lab: &Lab,
        node: &Node,
        step: &Step,
        values: &BTreeMap<String, String>,
    ) -> Result<RenderedStep, RenderFailure> {
        let mut ctx = self.ctx(lab, node, values);
        let args = self.args(lab, node, step, &ctx)?;
        ctx["args"] = json!(args);
        ctx["step"] = json!({ "name": step.name });
        let script = match &step.source {
            StepSource::Template(rel) => {
                let name = rel.to_string_lossy();
                self.hb
                    .render(&name, &ctx)
                    .map_err(|e| render_error(&self.templates_dir.join(rel), &e))?
            }
            StepSource::Script(rel) => read(&self.lab_dir.join(rel))?,
        };
        let mut h = Sha256::new();
        h.update(script.as_bytes());
        for a in &args {
            h.update([0u8]);
            h.update(a.as_bytes());
        }
        let hash = format!("{:x}", h.finalize());
        Ok(RenderedStep { script, args, hash })
    }
}

fn read(path: &Path) -> Result<String, RenderFailure> {
    std::fs::read_to_string(path).map_err(|e| RenderFailure::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn template_error(path: &Path, e: &handlebars::TemplateError) -> RenderFailure {
    let (line, column) = e.pos().unwrap_or((0, 0));
    RenderFailure::Template {
        path: path.to_path_buf(),
        line,
        column,
        message: format!("template syntax: {}", e.reason()),
    }
}

fn render_reason(e: &RenderError) -> String {
    match e.reason() {
        RenderErrorReason::MissingVariable(Some(var)) => {
            format!("unknown template variable `{var}`")
        }
        // The error's own Display draws a multi-line code frame; one line is enough here.
        RenderErrorReason::TemplateError(te) => format!("template syntax: {}", te.reason()),
        other => other.to_string(),
    }
}

fn render_error(path: &Path, e: &RenderError) -> RenderFailure {
    RenderFailure::Template {
        path: path.to_path_buf(),
        line: e.line_no.unwrap_or(0),
        column: e.column_no.unwrap_or(0),
        message: render_reason(e),
    }
}

fn node_json(lab: &Lab, n: &Node) -> Value {
    let ips: serde_json::Map<String, Value> = n
        .nics
        .iter()
        .map(|nic| (nic.network.clone(), json!(nic.ip.to_string())))
        .collect();
    json!({
        "name": n.name,
        "role": n.role,
        "index": n.index,
        "ip": n.ip().map(|ip| ip.to_string()).unwrap_or_default(),
        "prefix": n.nics.first().map_or(0, |nic| nic.prefix),
        "ips": ips,
        "cpus": n.cpus,
        "memory": n.memory_mb,
        "ssh_port": n.ssh_port,
        "first": lab.nodes.iter().find(|o| o.role == n.role).is_some_and(|o| o.name == n.name),
    })
}

/// The template context for a node.
pub fn context(lab: &Lab, node: &Node, values: &BTreeMap<String, String>) -> Value {
    let nodes: Vec<Value> = lab.nodes.iter().map(|n| node_json(lab, n)).collect();
    let mut roles = serde_json::Map::new();
    for role in &lab.roles {
        let members: Vec<Value> = lab
            .nodes
            .iter()
            .filter(|n| n.role == role.name)
            .map(|n| node_json(lab, n))
            .collect();
        roles.insert(role.name.clone(), json!(members));
    }
    let networks: serde_json::Map<String, Value> = lab
        .networks
        .iter()
        .map(|net| {
            (
                net.name.clone(),
                json!({
                    "name": net.name,
                    "cidr": net.cidr(),
                    "address": net.address.to_string(),
                    "prefix": net.prefix,
                    "netmask": net.netmask().to_string(),
                    "host_ip": net.host_ip.to_string(),
                }),
            )
        })
        .collect();
    // Each package set's packages for the lab's OS family (`packages.runtime`).
    let family = lab.os.family();
    let packages: serde_json::Map<String, Value> = lab
        .package_sets
        .iter()
        .map(|set| {
            let list = family.map_or(&[][..], |f| set.packages_for(f));
            (set.name.clone(), json!(list))
        })
        .collect();
    let first_net = lab
        .networks
        .first()
        .and_then(|n| networks.get(&n.name).cloned())
        .unwrap_or(Value::Null);
    json!({
        "lab": {
            "name": lab.name,
            "provider": lab.provider.as_str(),
            "workers": lab.workers,
            "egress": lab.egress,
            "os": lab.os.as_str(),
        },
        "node": node_json(lab, node),
        "nodes": nodes,
        "roles": roles,
        "network": first_net,
        "networks": networks,
        "vars": lab.vars,
        "values": values,
        "packages": packages,
        "bundle": bundle_json(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("1.33"), "1.33");
        assert_eq!(shell_quote("192.168.1.10/24"), "192.168.1.10/24");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
    }
}
