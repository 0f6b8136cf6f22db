//! The evaluated program: Ruby values, per-machine settings, loops and name patterns.

use std::collections::HashMap;

use crate::Notice;

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
    pub(super) fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    pub(super) fn truthy(&self) -> bool {
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
