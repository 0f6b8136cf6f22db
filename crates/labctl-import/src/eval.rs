//! Walk the Ruby AST: evaluate the Vagrant subset into machines and settings.

use std::collections::HashMap;

use lib_ruby_parser::{Loc, Node, Parser, ParserOptions};

use crate::{ImportError, Notice, NoticeKind, Why};

/// A Ruby value the importer can hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    Nil,
    Sym(String),
    Array(Vec<Val>),
    Hash(Vec<(Val, Val)>),
    Range(i64, i64),
}

impl Val {
    pub(crate) fn to_text(&self) -> String {
        match self {
            Val::Str(s) | Val::Sym(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Nil => String::new(),
            Val::Array(v) => v.iter().map(Val::to_text).collect::<Vec<_>>().join(" "),
            Val::Hash(_) => "{…}".into(),
            Val::Range(a, b) => format!("{a}..{b}"),
        }
    }
    fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    fn truthy(&self) -> bool {
        !matches!(self, Val::Nil | Val::Bool(false))
    }
}

/// A value and the line it was set on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct At<T> {
    pub(crate) v: T,
    pub(crate) line: usize,
}

/// One piece of a step argument, kept symbolic so that lab.toml can say `{{vars.x}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Lit(String),
    Const(String),
    Index,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Arg {
    pub(crate) lit: String,
    pub(crate) pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepKind {
    Path(String),
    Inline(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepDef {
    pub(crate) line: usize,
    pub(crate) name: Option<String>,
    pub(crate) kind: StepKind,
    pub(crate) args: Vec<Arg>,
    pub(crate) args_split: bool,
    pub(crate) run: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Net {
    pub(crate) ip: String,
    pub(crate) netmask: Option<String>,
    pub(crate) line: usize,
    pub(crate) code: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Port {
    pub(crate) guest: i64,
    pub(crate) host: String,
    pub(crate) line: usize,
    pub(crate) code: String,
}

/// Settings of the global `config` or of one machine.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) box_name: Option<At<String>>,
    pub(crate) hostname: Option<At<String>>,
    pub(crate) cpus: Option<At<i64>>,
    pub(crate) memory: Option<At<i64>>,
    pub(crate) nested: Option<At<bool>>,
    pub(crate) linked_clone: Option<At<bool>>,
    pub(crate) group: Option<At<String>>,
    pub(crate) boot_timeout: Option<At<i64>>,
    pub(crate) provider: Option<At<&'static str>>,
    pub(crate) nets: Vec<Net>,
    pub(crate) ssh: Option<Port>,
    pub(crate) forwards: Vec<Port>,
    pub(crate) steps: Vec<StepDef>,
}

#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// The `define` call's position: machines from one `define` form a role.
    pub(crate) define: usize,
    pub(crate) line: usize,
    pub(crate) name: String,
    /// The loop index, for machines defined in a loop.
    pub(crate) index: Option<i64>,
    pub(crate) loop_id: Option<usize>,
    /// Evaluated past the loop's end, only to see what the Vagrantfile would give at N ≥ 10.
    pub(crate) probe: bool,
    pub(crate) s: Settings,
}

#[derive(Debug, Clone)]
pub(crate) struct LoopInfo {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) bound: Option<String>,
    pub(crate) line: usize,
}

/// A machine name in a loop as `prefix{i}suffix`, the index being `i + shift`.
#[derive(Debug, Clone)]
pub(crate) struct NamePattern {
    pub(crate) prefix: String,
    pub(crate) suffix: String,
    pub(crate) shift: i64,
}

pub(crate) struct Program {
    pub(crate) global: Settings,
    pub(crate) machines: Vec<Machine>,
    pub(crate) loops: HashMap<usize, LoopInfo>,
    pub(crate) patterns: HashMap<usize, Option<NamePattern>>,
    /// Top-level constants with literal values, in file order.
    pub(crate) consts: Vec<(String, Val)>,
    pub(crate) notices: Vec<Notice>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Global,
    Machine(usize),
}

/// Why a name has no value.
#[derive(Clone)]
struct Unknown {
    line: usize,
    reason: String,
}

struct Ev<'a> {
    src: &'a [u8],
    line_starts: Vec<usize>,
    consts: HashMap<String, Result<Val, Unknown>>,
    const_order: Vec<String>,
    methods: HashMap<String, usize>,
    locals: Vec<(String, i64)>,
    loop_stack: Vec<usize>,
    probe: bool,
    p: Program,
}

type R<T> = Result<T, ImportError>;

pub(crate) fn evaluate(source: &[u8]) -> R<Program> {
    let opts = ParserOptions {
        buffer_name: "Vagrantfile".into(),
        ..Default::default()
    };
    let result = Parser::new(source.to_vec(), opts).do_parse();
    let mut line_starts = vec![0];
    line_starts.extend(
        source
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    );
    let mut ev = Ev {
        src: source,
        line_starts,
        consts: HashMap::new(),
        const_order: Vec::new(),
        methods: HashMap::new(),
        locals: Vec::new(),
        loop_stack: Vec::new(),
        probe: false,
        p: Program {
            global: Settings::default(),
            machines: Vec::new(),
            loops: HashMap::new(),
            patterns: HashMap::new(),
            consts: Vec::new(),
            notices: Vec::new(),
        },
    };
    if let Some(d) = result
        .diagnostics
        .iter()
        .find(|d| d.level == lib_ruby_parser::ErrorLevel::Error)
    {
        return Err(ImportError::Syntax {
            line: ev.line(d.loc.begin),
            message: d.render_message(),
        });
    }
    if let Some(ast) = result.ast {
        ev.top(&ast)?;
    }
    let mut p = ev.p;
    for name in ev.const_order {
        if let Some(Ok(v)) = ev.consts.get(&name) {
            p.consts.push((name, v.clone()));
        }
    }
    Ok(p)
}

fn stmts(node: &Node) -> Vec<&Node> {
    match node {
        Node::Begin(b) => b.statements.iter().collect(),
        Node::KwBegin(b) => b.statements.iter().collect(),
        other => vec![other],
    }
}

fn block_arg(args: &Option<Box<Node>>) -> Option<String> {
    let Some(Node::Args(a)) = args.as_deref() else {
        return None;
    };
    match a.args.first()? {
        Node::Arg(x) => Some(x.name.clone()),
        Node::Procarg0(p) => match p.args.first()? {
            Node::Arg(x) => Some(x.name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `cfg.vm.network` → ("cfg", ["vm", "network"]).
fn chain(node: &Node) -> Option<(String, Vec<String>)> {
    match node {
        Node::Send(s) => {
            let (root, mut path) = chain(s.recv.as_deref()?)?;
            path.push(s.method_name.clone());
            Some((root, path))
        }
        Node::Lvar(v) => Some((v.name.clone(), Vec::new())),
        Node::Const(c) if c.scope.is_none() => Some((c.name.clone(), Vec::new())),
        _ => None,
    }
}

fn mentions(node: &Node, pred: &dyn Fn(&Node) -> bool) -> bool {
    if pred(node) {
        return true;
    }
    let mut found = false;
    visit_children(node, &mut |c| {
        if !found && mentions(c, pred) {
            found = true;
        }
    });
    found
}

fn visit_children(node: &Node, f: &mut dyn FnMut(&Node)) {
    match node {
        Node::Begin(b) => b.statements.iter().for_each(f),
        Node::KwBegin(b) => b.statements.iter().for_each(f),
        Node::Block(b) => {
            f(&b.call);
            if let Some(x) = &b.body {
                f(x);
            }
        }
        Node::Send(s) => {
            if let Some(r) = &s.recv {
                f(r);
            }
            s.args.iter().for_each(f);
        }
        Node::If(i) => {
            f(&i.cond);
            if let Some(x) = &i.if_true {
                f(x);
            }
            if let Some(x) = &i.if_false {
                f(x);
            }
        }
        Node::Dstr(d) => d.parts.iter().for_each(f),
        Node::Heredoc(d) => d.parts.iter().for_each(f),
        Node::Array(a) => a.elements.iter().for_each(f),
        Node::Hash(h) => h.pairs.iter().for_each(f),
        Node::Kwargs(h) => h.pairs.iter().for_each(f),
        Node::Pair(p) => {
            f(&p.key);
            f(&p.value);
        }
        Node::Irange(r) => {
            r.left.iter().for_each(|x| f(x));
            r.right.iter().for_each(|x| f(x));
        }
        Node::Erange(r) => {
            r.left.iter().for_each(|x| f(x));
            r.right.iter().for_each(|x| f(x));
        }
        Node::Casgn(c) => c.value.iter().for_each(|x| f(x)),
        Node::Lvasgn(c) => c.value.iter().for_each(|x| f(x)),
        Node::Def(d) => d.body.iter().for_each(|x| f(x)),
        _ => {}
    }
}

impl Ev<'_> {
    fn line(&self, pos: usize) -> usize {
        match self.line_starts.binary_search(&pos) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The first line of a node's source, shortened.
    fn code(&self, loc: &Loc) -> String {
        let text = String::from_utf8_lossy(&self.src[loc.begin..loc.end.min(self.src.len())]);
        let first = text.lines().next().unwrap_or("").trim();
        let mut out: String = first.chars().take(72).collect();
        if first.chars().count() > 72 || text.lines().nth(1).is_some() {
            out.push('…');
        }
        out
    }

    fn note(&mut self, loc: &Loc, why: Why) {
        let construct = self.code(loc);
        self.note_text(self.line(loc.begin), construct, why);
    }

    fn note_text(&mut self, line: usize, construct: String, why: Why) {
        self.push(Notice {
            line,
            kind: NoticeKind::NotImported { construct, why },
        });
    }

    fn push(&mut self, n: Notice) {
        if !self.probe && !self.p.notices.contains(&n) {
            self.p.notices.push(n);
        }
    }

    fn unevaluable(&self, node: &Node, reason: impl Into<String>) -> ImportError {
        let loc = node.expression();
        ImportError::Unevaluable {
            line: self.line(loc.begin),
            code: self.code(loc),
            reason: reason.into(),
        }
    }

    // ---------- expressions ----------

    fn eval(&self, node: &Node) -> R<Val> {
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

    fn args(&self, node: &Node) -> R<(Vec<Arg>, bool)> {
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

    // ---------- statements ----------

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

    fn top(&mut self, node: &Node) -> R<()> {
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

    fn config_body(&mut self, body: &Node, var: &str, t: Target) -> R<()> {
        for s in stmts(body) {
            self.config_stmt(s, var, t)?;
        }
        Ok(())
    }

    fn settings(&mut self, t: Target) -> &mut Settings {
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
    fn kwargs(&self, args: &[Node]) -> R<Vec<(String, Val)>> {
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

    fn network(&mut self, node: &Node, s: &lib_ruby_parser::nodes::Send, t: Target) -> R<()> {
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

    fn provision(
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

    fn provider(
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

    fn int(&self, a: &Node) -> R<i64> {
        self.eval(a)?
            .as_int()
            .ok_or_else(|| self.unevaluable(a, "not a number"))
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

    fn define(
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

    fn looped(
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

enum LoopRange<'a> {
    Range(&'a Node),
    Times(&'a Node),
}

fn loop_range(call: &Node) -> Option<LoopRange<'_>> {
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

fn is_configure(call: &Node) -> bool {
    matches!(call, Node::Send(s) if s.method_name == "configure"
        && matches!(s.recv.as_deref(), Some(Node::Const(c)) if c.name == "Vagrant"))
}

fn elems_is_single_string(node: &Node) -> bool {
    !matches!(node, Node::Array(_))
}

fn kwarg_node<'a>(args: &'a [Node], key: &str) -> Option<&'a Node> {
    for a in args {
        let pairs = match a {
            Node::Kwargs(h) => &h.pairs,
            Node::Hash(h) => &h.pairs,
            _ => continue,
        };
        for p in pairs {
            if let Node::Pair(p) = p {
                let k = match &*p.key {
                    Node::Sym(s) => s.name.to_string_lossy(),
                    Node::Str(s) => s.value.to_string_lossy(),
                    _ => continue,
                };
                if k == key {
                    return Some(&p.value);
                }
            }
        }
    }
    None
}

/// A short description of a construct the evaluator refuses.
fn what(node: &Node) -> String {
    let s = match node {
        Node::If(_) | Node::IfMod(_) | Node::IfTernary(_) | Node::Case(_) => "a conditional",
        Node::Index(_) => "an index into a hash or array",
        Node::Block(_) => "a block",
        Node::Ivar(_) | Node::Gvar(_) | Node::Cvar(_) => "an instance or global variable",
        Node::Xstr(_) => "a shell command",
        Node::Regexp(_) => "a regular expression",
        Node::Float(_) => "a floating-point number",
        _ => "Ruby that labctl import does not evaluate",
    };
    format!("{s} (only literals, constants, ranges, loops and string interpolation are evaluated)")
}
