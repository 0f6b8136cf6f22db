//! Expressions: literals, constants, ranges, interpolation and the few operators evaluated.

use lib_ruby_parser::Node;

use super::ast::{elems_is_single_string, what};
use super::{Arg, Piece, Val};
use super::{Ev, R};

impl Ev<'_> {
    pub(super) fn eval(&self, node: &Node) -> R<Val> {
        Ok(match node {
            Node::Str(s) => Val::Str(s.value.to_string_lossy()),
            Node::Int(i) => Val::Int(
                i.value
                    .replace('_', "")
                    .parse()
                    .map_err(|_| self.unevaluable(node, "integer out of range"))?,
            ),
            Node::True(_) => Val::Bool(true),
            Node::False(_) => Val::Bool(false),
            Node::Nil(_) => Val::Nil,
            Node::Sym(s) => Val::Sym(s.name.to_string_lossy()),
            Node::Dstr(d) => Val::Str(self.interp(&d.parts)?),
            Node::Heredoc(d) => Val::Str(self.interp(&d.parts)?),
            Node::Dsym(d) => Val::Sym(self.interp(&d.parts)?),
            Node::Begin(b) if b.statements.len() == 1 => self.eval(&b.statements[0])?,
            Node::Array(a) => Val::Array(
                a.elements
                    .iter()
                    .map(|e| self.eval(e))
                    .collect::<R<Vec<_>>>()?,
            ),
            Node::Hash(h) => Val::Hash(self.pairs(&h.pairs)?),
            Node::Kwargs(h) => Val::Hash(self.pairs(&h.pairs)?),
            Node::Irange(r) => {
                let (a, b) = self.bounds(node, &r.left, &r.right)?;
                Val::Range(a, b)
            }
            Node::Erange(r) => {
                let (a, b) = self.bounds(node, &r.left, &r.right)?;
                Val::Range(a, b - 1)
            }
            Node::Const(c) if c.scope.is_none() => self.lookup(node, &c.name)?,
            Node::Lvar(v) => {
                if let Some((_, i)) = self.locals.iter().rev().find(|(n, _)| *n == v.name) {
                    Val::Int(*i)
                } else {
                    self.lookup(node, &v.name)?
                }
            }
            Node::Send(s) if s.recv.is_none() && s.args.is_empty() => {
                // A bare word is a local variable the parser saw as a method call.
                self.lookup(node, &s.method_name)?
            }
            Node::Send(s) if s.recv.is_some() => {
                let recv = s.recv.as_deref().map(|r| self.eval(r)).transpose()?;
                let recv = recv.unwrap_or(Val::Nil);
                let args = s.args.iter().map(|a| self.eval(a)).collect::<R<Vec<_>>>()?;
                self.op(node, &s.method_name, recv, args)?
            }
            Node::Send(s) => {
                return Err(self.unevaluable(
                    node,
                    format!(
                        "a call to the method `{}` (methods are not evaluated)",
                        s.method_name
                    ),
                ));
            }
            Node::And(a) => {
                let l = self.eval(&a.lhs)?;
                if l.truthy() { self.eval(&a.rhs)? } else { l }
            }
            Node::Or(a) => {
                let l = self.eval(&a.lhs)?;
                if l.truthy() { l } else { self.eval(&a.rhs)? }
            }
            _ => return Err(self.unevaluable(node, what(node))),
        })
    }

    fn bounds(&self, node: &Node, l: &Option<Box<Node>>, r: &Option<Box<Node>>) -> R<(i64, i64)> {
        let get = |x: &Option<Box<Node>>| -> R<i64> {
            match x {
                Some(x) => self.eval(x)?.as_int().ok_or_else(|| {
                    self.unevaluable(node, "a range of something else than integers")
                }),
                None => Err(self.unevaluable(node, "an endless range")),
            }
        };
        Ok((get(l)?, get(r)?))
    }

    fn pairs(&self, pairs: &[Node]) -> R<Vec<(Val, Val)>> {
        pairs
            .iter()
            .map(|p| match p {
                Node::Pair(p) => Ok((self.eval(&p.key)?, self.eval(&p.value)?)),
                other => Err(self.unevaluable(other, what(other))),
            })
            .collect()
    }

    fn interp(&self, parts: &[Node]) -> R<String> {
        let mut out = String::new();
        for p in parts {
            match p {
                Node::Str(s) => out.push_str(&s.value.to_string_lossy()),
                Node::Begin(b) => {
                    for s in &b.statements {
                        out.push_str(&self.eval(s)?.to_text());
                    }
                }
                other => out.push_str(&self.eval(other)?.to_text()),
            }
        }
        Ok(out)
    }

    fn lookup(&self, node: &Node, name: &str) -> R<Val> {
        match self.consts.get(name) {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(u)) => Err(self.unevaluable(
                node,
                format!("`{name}` was not evaluated (line {}: {})", u.line, u.reason),
            )),
            None if self.methods.contains_key(name) => Err(self.unevaluable(
                node,
                format!("a call to the method `{name}` (methods are not evaluated)"),
            )),
            None => Err(self.unevaluable(node, format!("`{name}` is not defined"))),
        }
    }

    fn op(&self, node: &Node, m: &str, recv: Val, args: Vec<Val>) -> R<Val> {
        use Val::*;
        Ok(match (m, &recv, args.as_slice()) {
            ("+", Int(a), [Int(b)]) => Int(a.wrapping_add(*b)),
            ("-", Int(a), [Int(b)]) => Int(a.wrapping_sub(*b)),
            ("*", Int(a), [Int(b)]) => Int(a.wrapping_mul(*b)),
            ("+", Str(a), [Str(b)]) => Str(format!("{a}{b}")),
            ("to_s", v, []) => Str(v.to_text()),
            ("to_i", v, []) => Int(v.as_int().unwrap_or(0)),
            ("-@", Int(a), []) => Int(-a),
            _ => {
                return Err(self.unevaluable(
                    node,
                    format!("a call to the method `{m}` (only + - * on literals, to_s and to_i are evaluated)"),
                ));
            }
        })
    }

    /// A step argument as pieces (constants and the loop index stay symbolic).
    fn pieces(&self, node: &Node) -> R<Vec<Piece>> {
        Ok(match node {
            Node::Const(c) if c.scope.is_none() && self.top_const(&c.name) => {
                vec![Piece::Const(c.name.clone())]
            }
            Node::Lvar(v) if self.locals.iter().any(|(n, _)| *n == v.name) => {
                vec![Piece::Index]
            }
            Node::Lvar(v) if self.top_const(&v.name) => vec![Piece::Const(v.name.clone())],
            Node::Dstr(d) => {
                let mut out = Vec::new();
                for p in &d.parts {
                    match p {
                        Node::Begin(b) if b.statements.len() == 1 => {
                            out.extend(self.pieces(&b.statements[0])?);
                        }
                        other => out.extend(self.pieces(other)?),
                    }
                }
                out
            }
            Node::Begin(b) if b.statements.len() == 1 => self.pieces(&b.statements[0])?,
            other => vec![Piece::Lit(self.eval(other)?.to_text())],
        })
    }

    fn top_const(&self, name: &str) -> bool {
        matches!(self.consts.get(name), Some(Ok(Val::Str(_) | Val::Int(_))))
    }

    pub(super) fn args(&self, node: &Node) -> R<(Vec<Arg>, bool)> {
        let elems: Vec<&Node> = match node {
            Node::Array(a) => a.elements.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        let mut split = false;
        for e in elems {
            let v = self.eval(e)?;
            match (&v, elems_is_single_string(node)) {
                (Val::Str(s), true) if s.split_whitespace().count() > 1 => {
                    split = true;
                    for w in s.split_whitespace() {
                        out.push(Arg {
                            lit: w.to_string(),
                            pieces: vec![Piece::Lit(w.to_string())],
                        });
                    }
                }
                _ => out.push(Arg {
                    lit: v.to_text(),
                    pieces: self.pieces(e)?,
                }),
            }
        }
        Ok((out, split))
    }

    pub(super) fn int(&self, a: &Node) -> R<i64> {
        self.eval(a)?
            .as_int()
            .ok_or_else(|| self.unevaluable(a, "not a number"))
    }
}
