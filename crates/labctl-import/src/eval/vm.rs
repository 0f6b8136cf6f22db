//! The `vm.network`, `vm.provision` and `vm.provider` calls (and VirtualBox `customize`).

use lib_ruby_parser::Node;

use super::ast::{block_arg, kwarg_node, stmts};
use super::{At, Net, Port, StepDef, StepKind, Val};
use super::{Ev, R, Target};
use crate::Why;

impl Ev<'_> {
    pub(super) fn network(
        &mut self,
        node: &Node,
        s: &lib_ruby_parser::nodes::Send,
        t: Target,
    ) -> R<()> {
        let line = self.line(node.expression().begin);
        let kind = match s.args.first() {
            Some(a) => self.eval(a)?.to_text(),
            None => String::new(),
        };
        let opts = self.kwargs(&s.args)?;
        let get = |k: &str| opts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let code_of = |k: &str| -> String {
            kwarg_node(&s.args, k)
                .map(|n| self.code(n.expression()))
                .unwrap_or_default()
        };
        let (ip_code, host_code) = (code_of("ip"), code_of("host"));
        match kind.as_str() {
            "private_network" => {
                let Some(ip) = get("ip") else {
                    self.note(node.expression(), Why::NoEquivalent);
                    return Ok(());
                };
                for k in opts.iter().map(|(k, _)| k.as_str()) {
                    if !matches!(
                        k,
                        "ip" | "netmask" | "auto_config" | "virtualbox__intnet" | "name"
                    ) {
                        self.note_text(
                            line,
                            format!("private_network option `{k}`"),
                            Why::NoEquivalent,
                        );
                    }
                }
                let net = Net {
                    ip: ip.to_text(),
                    netmask: get("netmask").map(|v| v.to_text()),
                    line,
                    code: ip_code,
                };
                self.settings(t).nets.push(net);
            }
            "forwarded_port" => {
                let guest = get("guest").and_then(|v| v.as_int()).ok_or_else(|| {
                    self.unevaluable(node, "forwarded_port without a numeric guest port")
                })?;
                let host = get("host")
                    .map(|v| v.to_text())
                    .ok_or_else(|| self.unevaluable(node, "forwarded_port without a host port"))?;
                for (k, v) in &opts {
                    match k.as_str() {
                        "guest" | "host" | "auto_correct" | "id" => {}
                        "protocol" if v.to_text() == "tcp" => {}
                        "host_ip" | "guest_ip" => self.note_text(
                            line,
                            format!("forwarded_port {k}: (labctl binds 127.0.0.1)"),
                            Why::Automatic,
                        ),
                        _ => self.note_text(
                            line,
                            format!("forwarded_port option `{k}`"),
                            Why::NoEquivalent,
                        ),
                    }
                }
                if get("protocol").is_some_and(|p| p.to_text() == "udp") {
                    return Ok(());
                }
                let port = Port {
                    guest,
                    host,
                    line,
                    code: host_code,
                };
                let st = self.settings(t);
                if guest == 22 {
                    st.ssh = Some(port);
                } else {
                    st.forwards.push(port);
                }
            }
            _ => self.note(node.expression(), Why::NoEquivalent),
        }
        Ok(())
    }

    pub(super) fn provision(
        &mut self,
        node: &Node,
        args: &[Node],
        body: Option<&Node>,
        bvar: Option<String>,
        t: Target,
    ) -> R<()> {
        let line = self.line(node.expression().begin);
        let first = match args.first() {
            Some(a @ (Node::Str(_) | Node::Sym(_) | Node::Dstr(_))) => {
                Some(self.eval(a)?.to_text())
            }
            _ => None,
        };
        let opts = self.kwargs(args)?;
        let get = |k: &str| opts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        // `provision "name", type: "shell"` or `provision "shell"`.
        let (name, kind) = match get("type") {
            Some(ty) => (first.clone(), ty.to_text()),
            None => (None, first.clone().unwrap_or_default()),
        };
        if kind != "shell" {
            self.note(node.expression(), Why::NoEquivalent);
            return Ok(());
        }
        let mut path = get("path").map(|v| v.to_text());
        let mut inline = get("inline").map(|v| v.to_text());
        let mut run = get("run").map(|v| v.to_text());
        let mut step_args = Vec::new();
        let mut split = false;
        if let Some(a) = kwarg_node(args, "args") {
            (step_args, split) = self.args(a)?;
        }
        for (k, _) in &opts {
            match k.as_str() {
                "type" | "path" | "inline" | "args" | "run" | "name" => {}
                "privileged" if get("privileged").is_some_and(|v| v.truthy()) => {}
                _ => self.note_text(line, format!("provision option `{k}`"), Why::NoEquivalent),
            }
        }
        if let (Some(body), Some(bv)) = (body, bvar) {
            for st in stmts(body) {
                let Node::Send(s) = st else {
                    self.note(st.expression(), Why::NotEvaluated);
                    continue;
                };
                if !matches!(s.recv.as_deref(), Some(Node::Lvar(v)) if v.name == bv) {
                    self.note(st.expression(), Why::NotEvaluated);
                    continue;
                }
                let a = s.args.first();
                match (s.method_name.as_str(), a) {
                    ("path=", Some(a)) => path = Some(self.eval(a)?.to_text()),
                    ("inline=", Some(a)) => inline = Some(self.eval(a)?.to_text()),
                    ("args=", Some(a)) => (step_args, split) = self.args(a)?,
                    ("run=", Some(a)) => run = Some(self.eval(a)?.to_text()),
                    ("privileged=", Some(a)) if self.eval(a)?.truthy() => {}
                    _ => self.note(st.expression(), Why::NoEquivalent),
                }
            }
        }
        let kind = match (path, inline) {
            (Some(p), _) => StepKind::Path(p),
            (None, Some(i)) => StepKind::Inline(i),
            (None, None) => {
                self.note(node.expression(), Why::NoEquivalent);
                return Ok(());
            }
        };
        let name = name.or_else(|| get("name").map(|v| v.to_text()));
        if run.as_deref() == Some("once") {
            run = None;
        }
        self.settings(t).steps.push(StepDef {
            line,
            name,
            kind,
            args: step_args,
            args_split: split,
            run,
        });
        Ok(())
    }

    pub(super) fn provider(
        &mut self,
        node: &Node,
        call: &lib_ruby_parser::nodes::Send,
        b: &lib_ruby_parser::nodes::Block,
        t: Target,
    ) -> R<()> {
        let line = self.line(node.expression().begin);
        let kind = match call.args.first() {
            Some(a) => self.eval(a)?.to_text(),
            None => String::new(),
        };
        let kind: &'static str = match kind.as_str() {
            "virtualbox" => "virtualbox",
            "libvirt" => "libvirt",
            _ => {
                self.note(node.expression(), Why::NoEquivalent);
                return Ok(());
            }
        };
        if self.settings(t).provider.is_none() {
            self.settings(t).provider = Some(At { v: kind, line });
        }
        let Some(var) = block_arg(&b.args) else {
            return Ok(());
        };
        let Some(body) = &b.body else { return Ok(()) };
        for st in stmts(body) {
            let Node::Send(s) = st else {
                self.note(st.expression(), Why::NotEvaluated);
                continue;
            };
            if !matches!(s.recv.as_deref(), Some(Node::Lvar(v)) if v.name == var) {
                self.note(st.expression(), Why::NotEvaluated);
                continue;
            }
            let sl = self.line(st.expression().begin);
            let a = s.args.first();
            match (s.method_name.as_str(), a) {
                ("cpus=", Some(a)) => {
                    let v = self.int(a)?;
                    self.settings(t).cpus = Some(At { v, line: sl });
                }
                ("memory=", Some(a)) => {
                    let v = self.int(a)?;
                    self.settings(t).memory = Some(At { v, line: sl });
                }
                ("linked_clone=", Some(a)) => {
                    let v = self.eval(a)?.truthy();
                    self.settings(t).linked_clone = Some(At { v, line: sl });
                }
                ("nested=", Some(a)) => {
                    let v = self.eval(a)?.truthy();
                    self.settings(t).nested = Some(At { v, line: sl });
                }
                ("name=", Some(_)) => self.note(st.expression(), Why::Automatic),
                ("customize", Some(a)) => self.customize(st, a, t)?,
                _ => self.note(st.expression(), Why::NoEquivalent),
            }
        }
        Ok(())
    }

    fn customize(&mut self, st: &Node, a: &Node, t: Target) -> R<()> {
        let line = self.line(st.expression().begin);
        let Val::Array(v) = self.eval(a)? else {
            self.note(st.expression(), Why::NoEquivalent);
            return Ok(());
        };
        let words: Vec<String> = v.iter().map(Val::to_text).collect();
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["modifyvm", "id", "--groups", g] => {
                let g = g.to_string();
                self.settings(t).group = Some(At { v: g, line });
            }
            ["modifyvm", "id", "--nested-hw-virt", on] => {
                let v = *on == "on";
                self.settings(t).nested = Some(At { v, line });
            }
            ["modifyvm", "id", "--cpus", n] if n.parse::<i64>().is_ok() => {
                let v = n.parse().unwrap_or(1);
                self.settings(t).cpus = Some(At { v, line });
            }
            ["modifyvm", "id", "--memory", n] if n.parse::<i64>().is_ok() => {
                let v = n.parse().unwrap_or(1024);
                self.settings(t).memory = Some(At { v, line });
            }
            _ => self.note(st.expression(), Why::NoEquivalent),
        }
        Ok(())
    }
}
