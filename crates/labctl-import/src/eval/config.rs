//! Statements: constant assignments, `Vagrant.configure` and the `config.vm.*` dispatch.

use lib_ruby_parser::Node;

use super::ast::{block_arg, chain, is_configure, mentions, stmts};
use super::machines::loop_range;
use super::{At, Settings, Val};
use super::{Ev, R, Target, Unknown};
use crate::{ImportError, Why};

impl Ev<'_> {
    fn assign(&mut self, name: &str, value: &Option<Box<Node>>, node: &Node) {
        let v = match value.as_deref() {
            Some(v) => self.eval(v).map_err(|e| Unknown {
                line: self.line(node.expression().begin),
                reason: match e {
                    ImportError::Unevaluable { reason, .. } => reason,
                    other => other.to_string(),
                },
            }),
            None => Ok(Val::Nil),
        };
        if v.is_err() {
            self.note(node.expression(), Why::NotEvaluated);
        }
        if !self.consts.contains_key(name) {
            self.const_order.push(name.to_string());
        }
        self.consts.insert(name.to_string(), v);
    }

    pub(super) fn top(&mut self, node: &Node) -> R<()> {
        for s in stmts(node) {
            self.top_stmt(s)?;
        }
        Ok(())
    }

    fn top_stmt(&mut self, node: &Node) -> R<()> {
        match node {
            Node::Casgn(c) if c.scope.is_none() => self.assign(&c.name, &c.value, node),
            Node::Lvasgn(c) => self.assign(&c.name, &c.value, node),
            Node::Block(b) if is_configure(&b.call) => {
                let var = block_arg(&b.args).unwrap_or_else(|| "config".into());
                if let Some(body) = &b.body {
                    self.config_body(body, &var, Target::Global)?;
                }
            }
            Node::Def(d) => {
                self.methods
                    .insert(d.name.clone(), self.line(node.expression().begin));
                self.note_text(
                    self.line(node.expression().begin),
                    format!("def {} … end", d.name),
                    Why::NotEvaluated,
                );
            }
            _ => self.note(node.expression(), Why::NotEvaluated),
        }
        Ok(())
    }

    pub(super) fn config_body(&mut self, body: &Node, var: &str, t: Target) -> R<()> {
        for s in stmts(body) {
            self.config_stmt(s, var, t)?;
        }
        Ok(())
    }

    pub(super) fn settings(&mut self, t: Target) -> &mut Settings {
        match t {
            Target::Global => &mut self.p.global,
            Target::Machine(i) => &mut self.p.machines[i].s,
        }
    }

    fn config_stmt(&mut self, node: &Node, var: &str, t: Target) -> R<()> {
        match node {
            Node::Casgn(c) if c.scope.is_none() => self.assign(&c.name, &c.value, node),
            Node::Lvasgn(c) if !self.locals.iter().any(|(n, _)| *n == c.name) => {
                self.assign(&c.name, &c.value, node);
            }
            Node::Block(b) => {
                if let Some((root, path)) = chain(&b.call)
                    && root == var
                {
                    let Node::Send(call) = &*b.call else {
                        return Ok(());
                    };
                    match path.as_slice() {
                        [vm, d] if vm == "vm" && d == "define" && t == Target::Global => {
                            return self.define(node, call, b, var);
                        }
                        [vm, p] if vm == "vm" && p == "provider" => {
                            return self.provider(node, call, b, t);
                        }
                        [vm, p] if vm == "vm" && p == "provision" => {
                            return self.provision(
                                node,
                                &call.args,
                                b.body.as_deref(),
                                block_arg(&b.args),
                                t,
                            );
                        }
                        _ => {}
                    }
                    self.note(node.expression(), Why::NoEquivalent);
                    return Ok(());
                }
                if let Some(range) = loop_range(&b.call) {
                    return self.looped(node, range, b, var, t);
                }
                if mentions(
                    node,
                    &|n| matches!(n, Node::Send(s) if s.method_name == "define"),
                ) {
                    return Err(ImportError::Unsupported {
                        line: self.line(node.expression().begin),
                        message: format!(
                            "machines are defined inside `{}`, which is not evaluated (only `(A..B).each` and `N.times` loops are)",
                            self.code(b.call.expression())
                        ),
                    });
                }
                self.note(node.expression(), Why::NotEvaluated);
            }
            Node::Send(s) => {
                if let Some((root, path)) = s.recv.as_deref().and_then(chain)
                    && root == var
                {
                    let p: Vec<&str> = path.iter().map(String::as_str).collect();
                    return self.vm_call(node, s, &p, t);
                }
                if s.recv.is_none() && self.methods.contains_key(&s.method_name) {
                    self.note(node.expression(), Why::NotEvaluated);
                    return Ok(());
                }
                self.note(node.expression(), Why::NotEvaluated);
            }
            _ => self.note(node.expression(), Why::NotEvaluated),
        }
        Ok(())
    }

    fn vm_call(
        &mut self,
        node: &Node,
        s: &lib_ruby_parser::nodes::Send,
        path: &[&str],
        t: Target,
    ) -> R<()> {
        let line = self.line(node.expression().begin);
        let m = s.method_name.as_str();
        let val = |ev: &Self| -> R<Val> {
            match s.args.first() {
                Some(a) => ev.eval(a),
                None => Ok(Val::Nil),
            }
        };
        match (path, m) {
            (["vm"], "box=") => {
                let v = val(self)?.to_text();
                self.settings(t).box_name = Some(At { v, line });
            }
            (["vm"], "hostname=" | "host_name=") => {
                let v = val(self)?.to_text();
                self.settings(t).hostname = Some(At { v, line });
            }
            (["vm"], "boot_timeout=") => {
                let v = val(self)?;
                let v = v
                    .as_int()
                    .ok_or_else(|| self.unevaluable(node, "boot_timeout is not a number"))?;
                self.settings(t).boot_timeout = Some(At { v, line });
            }
            (["vm"], "network") => self.network(node, s, t)?,
            (["vm"], "provision") => return self.provision(node, &s.args, None, None, t),
            (["vm"], "synced_folder") => {
                let opts = self.kwargs(&s.args)?;
                if !opts.iter().any(|(k, v)| k == "disabled" && v.truthy()) {
                    self.note(node.expression(), Why::NoEquivalent);
                }
            }
            (["vm"], "define") => self.note(node.expression(), Why::NotEvaluated),
            _ => self.note(node.expression(), Why::NoEquivalent),
        }
        Ok(())
    }

    /// Keyword arguments of a call (`ip: "…"`, `:path => "…"`, a trailing hash).
    pub(super) fn kwargs(&self, args: &[Node]) -> R<Vec<(String, Val)>> {
        let mut out = Vec::new();
        for a in args {
            if let Node::Kwargs(_) | Node::Hash(_) = a
                && let Val::Hash(pairs) = self.eval(a)?
            {
                for (k, v) in pairs {
                    out.push((k.to_text(), v));
                }
            }
        }
        Ok(out)
    }
}
