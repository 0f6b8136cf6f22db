//! Walk the Ruby AST: evaluate the Vagrant subset into machines and settings.

mod ast;
mod config;
mod expr;
mod machines;
mod program;
mod vm;

use std::collections::HashMap;

use lib_ruby_parser::{Loc, Node, Parser, ParserOptions};

use crate::{ImportError, Notice, NoticeKind, Why};
pub(crate) use program::*;

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
}
