//! `labctl import`: a Vagrantfile → a `lab.toml` and the provisioning scripts it names.
//!
//! The Vagrantfile is parsed with a real Ruby parser (`lib-ruby-parser`, Ruby 3.1 grammar), then
//! evaluated by a small interpreter that knows only literals, constants (and top-level local
//! variables holding literals), ranges, `each`/`times` loops, string interpolation and `+ - *`
//! on integers and strings. Vagrant's configuration calls (`config.vm.define`, `vm.network`,
//! `vm.provision`, the VirtualBox and libvirt provider blocks …) are recognised by shape.
//!
//! Everything else is either listed as a [`Notice`] (a statement that is skipped) or, when the
//! value is needed to build the lab (a machine's memory, an address, a loop's bounds), refused
//! with an [`ImportError`] that names the line. This crate never prints and does no I/O: the
//! binary reads the Vagrantfile, copies the scripts listed in [`Imported::files`] and writes
//! [`Imported::lab_toml`].
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod eval;
mod lab;

use std::path::PathBuf;

/// What the caller decides.
#[derive(Debug, Clone)]
pub struct Options {
    /// The lab's name (`[lab] name`); must already follow lab.toml's rules.
    pub lab_name: String,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The text of lab.toml.
    pub lab_toml: String,
    /// Files to write next to lab.toml.
    pub files: Vec<OutFile>,
    /// Everything the caller should tell the user, in line order (line 0 first: file-wide).
    pub notices: Vec<Notice>,
    /// Node count with the lab's default worker count.
    pub nodes: usize,
}

/// One file of the imported lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// Path relative to the lab directory (`templates/config.sh`).
    pub path: PathBuf,
    pub source: FileSource,
    /// The Vagrantfile line that names it.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// Copy this file, relative to the Vagrantfile's directory.
    Copy(PathBuf),
    /// An inline script.
    Inline(String),
}

/// Something the import did not carry over, or carried over differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// 1-based line in the Vagrantfile; 0 for the file as a whole.
    pub line: usize,
    pub kind: NoticeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// A statement or option that has no lab.toml equivalent or that is not evaluated.
    NotImported { construct: String, why: Why },
    /// An address or port made by joining strings: labctl computes base + (i - start) instead,
    /// and the Vagrantfile's value differs from index `index` on.
    Concatenated {
        field: &'static str,
        node: String,
        vagrant: String,
        labctl: String,
    },
    /// Values differ between the nodes of one loop in a way lab.toml cannot express; the first
    /// node's value is used.
    DiffersBetweenNodes { field: String, role: String },
    /// `vm.hostname` differs from the machine name; labctl uses the machine name for both.
    HostnameIgnored { machine: String, hostname: String },
    /// The loop whose count became `[lab] workers` (`--workers N` at run time).
    Scaled {
        role: String,
        constant: Option<String>,
    },
    /// Vagrant provisions machines one after another; the role's first step waits for the
    /// previous role's last step.
    Sequential { role: String, after: String },
    /// The guest OS was guessed from the box name (or defaulted).
    OsGuessed { os: &'static str, from_box: bool },
    /// A script path outside the Vagrantfile's directory was copied under another name.
    ScriptMoved { from: String, to: String },
    /// A string of shell arguments was split on whitespace.
    ArgsSplit { step: String },
    /// Steps are not marked `needs_egress`.
    EgressUnknown,
}

/// Why a construct was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Ruby the importer does not evaluate (methods, conditionals, loops over data …).
    NotEvaluated,
    /// A Vagrant setting labctl has no equivalent for.
    NoEquivalent,
    /// labctl does this itself (VM names, SSH forwarding on 127.0.0.1 …).
    Automatic,
    /// Another value for a setting labctl has once per lab (box, group).
    OncePerLab,
}

/// Why the Vagrantfile cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: Ruby syntax error: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: cannot evaluate `{code}`: {reason}")]
    Unevaluable {
        line: usize,
        code: String,
        reason: String,
    },
    #[error("line {line}: {message}")]
    Unsupported { line: usize, message: String },
    #[error("the Vagrantfile defines no machine")]
    NoMachine,
    #[error("the Vagrantfile is not UTF-8 text")]
    NotUtf8,
}

impl ImportError {
    /// The Vagrantfile line, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Syntax { line, .. }
            | Self::Unevaluable { line, .. }
            | Self::Unsupported { line, .. } => Some(*line),
            Self::NoMachine | Self::NotUtf8 => None,
        }
    }
}

/// Import a Vagrantfile's text.
pub fn import(source: &[u8], opts: &Options) -> Result<Imported, ImportError> {
    if std::str::from_utf8(source).is_err() {
        return Err(ImportError::NotUtf8);
    }
    let program = eval::evaluate(source)?;
    lab::build(program, opts)
}
