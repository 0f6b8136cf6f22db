//! `vm.define` and the `each`/`times` loops that define machines, with their name patterns.

use lib_ruby_parser::Node;

use super::ast::{block_arg, mentions};
use super::{Ev, R, Target};
use super::{LoopInfo, Machine, NamePattern, Settings, Val};
use crate::Why;

impl Ev<'_> {
    pub(super) fn define(
        &mut self,
        node: &Node,
        call: &lib_ruby_parser::nodes::Send,
        b: &lib_ruby_parser::nodes::Block,
        _var: &str,
    ) -> R<()> {
        let line = self.line(node.expression().begin);
        let name_node = call
            .args
            .first()
            .ok_or_else(|| self.unevaluable(node, "`define` without a machine name"))?;
        let name = self.eval(name_node)?.to_text();
        let define = node.expression().begin;
        let loop_id = self.loop_stack.last().copied();
        let index = self.locals.last().map(|(_, i)| *i);
        if let (Some(_), Some((lv, i))) = (loop_id, self.locals.last().cloned())
            && !self.p.patterns.contains_key(&define)
        {
            let pat = self.pattern(name_node, &lv, i)?;
            self.p.patterns.insert(define, pat);
        }
        let opts = self.kwargs(&call.args)?;
        for (k, _) in opts {
            self.note_text(line, format!("define option `{k}`"), Why::NoEquivalent);
        }
        self.p.machines.push(Machine {
            define,
            line,
            name,
            index,
            loop_id,
            probe: self.probe,
            s: Settings::default(),
        });
        let idx = self.p.machines.len() - 1;
        let var = block_arg(&b.args).unwrap_or_else(|| "node".into());
        if let Some(body) = &b.body {
            self.config_body(body, &var, Target::Machine(idx))?;
        }
        Ok(())
    }

    /// `"w#{i}-k8s"` → prefix `w`, suffix `-k8s`, shift 0.
    fn pattern(&self, node: &Node, lv: &str, i: i64) -> R<Option<NamePattern>> {
        let Node::Dstr(d) = node else { return Ok(None) };
        let uses = |n: &Node| mentions(n, &|x| matches!(x, Node::Lvar(v) if v.name == lv));
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut shift = None;
        for p in &d.parts {
            if uses(p) {
                if shift.is_some() {
                    return Ok(None);
                }
                match self.eval(p)? {
                    Val::Int(v) => shift = Some(v - i),
                    Val::Str(s) => match s.parse::<i64>() {
                        Ok(v) => shift = Some(v - i),
                        Err(_) => return Ok(None),
                    },
                    _ => return Ok(None),
                }
            } else {
                let s = match p {
                    Node::Str(s) => s.value.to_string_lossy(),
                    other => self.eval(other)?.to_text(),
                };
                if shift.is_some() {
                    suffix.push_str(&s);
                } else {
                    prefix.push_str(&s);
                }
            }
        }
        Ok(shift.map(|shift| NamePattern {
            prefix,
            suffix,
            shift,
        }))
    }

    pub(super) fn looped(
        &mut self,
        node: &Node,
        range: LoopRange<'_>,
        b: &lib_ruby_parser::nodes::Block,
        var: &str,
        t: Target,
    ) -> R<()> {
        let line = self.line(node.expression().begin);
        let (start, end, bound) = match range {
            LoopRange::Range(r) => match self.eval(r)? {
                Val::Range(a, b) => (a, b, range_bound(r)),
                _ => return Err(self.unevaluable(r, "not a range")),
            },
            LoopRange::Times(n) => {
                let c = self.int(n)?;
                (0, c - 1, const_name(n))
            }
        };
        if end - start > 1000 {
            return Err(self.unevaluable(node, "a loop of more than 1000 iterations"));
        }
        let lv = block_arg(&b.args).unwrap_or_else(|| "_".into());
        let id = node.expression().begin;
        let defines = mentions(
            node,
            &|n| matches!(n, Node::Send(s) if s.method_name == "define"),
        );
        if defines {
            self.p.loops.entry(id).or_insert(LoopInfo {
                start,
                end,
                bound,
                line,
            });
        }
        let Some(body) = &b.body else { return Ok(()) };
        // Past the end, to see whether joined strings still give base + (i - start).
        let probe_end = if defines && !self.probe {
            end.max(start + 9)
        } else {
            end
        };
        for i in start..=probe_end {
            let was = self.probe;
            self.probe = was || i > end;
            self.locals.push((lv.clone(), i));
            self.loop_stack.push(id);
            let r = self.config_body(body, var, t);
            self.loop_stack.pop();
            self.locals.pop();
            self.probe = was;
            match r {
                Ok(()) => {}
                Err(_) if i > end => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

pub(super) enum LoopRange<'a> {
    Range(&'a Node),
    Times(&'a Node),
}

pub(super) fn loop_range(call: &Node) -> Option<LoopRange<'_>> {
    let Node::Send(s) = call else { return None };
    let recv = s.recv.as_deref()?;
    match s.method_name.as_str() {
        "each" => {
            let inner = match recv {
                Node::Begin(b) if b.statements.len() == 1 => &b.statements[0],
                other => other,
            };
            matches!(inner, Node::Irange(_) | Node::Erange(_)).then_some(LoopRange::Range(inner))
        }
        "times" => Some(LoopRange::Times(recv)),
        _ => None,
    }
}

fn const_name(n: &Node) -> Option<String> {
    match n {
        Node::Const(c) => Some(c.name.clone()),
        Node::Lvar(v) => Some(v.name.clone()),
        Node::Send(s) if s.recv.is_none() && s.args.is_empty() => Some(s.method_name.clone()),
        _ => None,
    }
}

fn range_bound(r: &Node) -> Option<String> {
    match r {
        Node::Irange(x) => x.right.as_deref().and_then(const_name),
        Node::Erange(x) => x.right.as_deref().and_then(const_name),
        _ => None,
    }
}
