//! Spec diagnostics: every problem found in a lab file, with its location.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a lab file: where it is, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in (lab.toml or a template).
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// Dotted field path, e.g. `role.worker.memory`.
    pub field: String,
    /// Lowercase sentence fragment.
    pub message: String,
    /// Optional "did you mean" or remedy.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.field, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Errors from loading a lab.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The lab file could not be read.
    #[error("cannot read lab file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lab file has one or more problems; all of them are listed.
    #[error("{} has {} problem{}", file.display(), diagnostics.len(), if diagnostics.len() == 1 { "" } else { "s" })]
    Invalid {
        file: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl SpecError {
    /// The diagnostics, if this is a validation error.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Invalid { diagnostics, .. } => diagnostics,
            SpecError::Read { .. } => &[],
        }
    }
}

/// Collects diagnostics for one source text and turns byte offsets into line:column.
#[derive(Debug)]
pub(crate) struct Sink<'s> {
    pub(crate) file: PathBuf,
    src: &'s str,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'s> Sink<'s> {
    pub(crate) fn new(file: &Path, src: &'s str) -> Self {
        Sink {
            file: file.to_path_buf(),
            src,
            diags: Vec::new(),
        }
    }

    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.src, offset)
    }

    pub(crate) fn at(
        &mut self,
        span: &std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) {
        self.push(span, field, message.into(), None);
    }

    pub(crate) fn hint(
        &mut self,
        span: &std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(span, field, message.into(), Some(hint.into()));
    }

    /// A problem that is not in the file, such as a bad `--workers`: no line or column.
    pub(crate) fn unlocated(
        &mut self,
        field: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line: 0,
            column: 0,
            field: field.to_string(),
            message: message.into(),
            hint: Some(hint.into()),
        });
    }

    fn push(
        &mut self,
        span: &std::ops::Range<usize>,
        field: &str,
        message: String,
        hint: Option<String>,
    ) {
        let (line, column) = self.line_col(span.start);
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message,
            hint,
        });
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..floor_char_boundary(src, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Closest candidate by edit distance, for "did you mean".
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = levenshtein(&word.to_ascii_lowercase(), &c.to_ascii_lowercase());
        let limit = (c.len().max(word.len()) / 3).max(1) + 1;
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_chars() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, src.find('=').unwrap()), (1, 3));
        assert_eq!(line_col(src, src.rfind('=').unwrap()), (2, 4));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(suggest("memroy", ["cpus", "memory", "ip"]), Some("memory"));
        assert_eq!(suggest("hostnmae", ["hostname", "host"]), Some("hostname"));
        assert_eq!(suggest("zzzzzz", ["cpus", "memory"]), None);
    }
}
