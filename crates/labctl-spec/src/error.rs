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
    /// The source line and the part of it the problem is about, when the problem is in the
    /// file's text (not for `--workers` problems or template errors).
    pub snippet: Option<Snippet>,
}

/// One line of the lab file and the span on it, for rendering a caret under the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The whole line, without its line break.
    pub text: String,
    /// 0-based character offset of the span on the line.
    pub start: usize,
    /// Characters the span covers on this line (at least 1).
    pub len: usize,
}

/// Values longer than this are shortened in messages.
pub const MAX_VALUE_CHARS: usize = 60;

/// Shorten every `quoted` value longer than [`MAX_VALUE_CHARS`] characters to its first 40
/// characters, `…` and its length, so that a 100 KB value does not fill the terminal.
pub fn shorten_values(msg: &str) -> String {
    let segs: Vec<&str> = msg.split('`').collect();
    let last = segs.len() - 1;
    let mut out = String::with_capacity(msg.len().min(1024));
    let mut pending = String::new();
    for (k, seg) in segs.iter().enumerate() {
        if k > 0 {
            out.push('`');
            out.push_str(&std::mem::take(&mut pending));
        }
        let chars = seg.chars().count();
        if k % 2 == 1 && k < last && chars > MAX_VALUE_CHARS {
            out.extend(seg.chars().take(40));
            out.push('…');
            pending = format!(" ({chars} characters)");
        } else {
            out.push_str(seg);
        }
    }
    out
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
            message: shorten_values(&message.into()),
            hint: Some(shorten_values(&hint.into())),
            snippet: None,
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
        let snippet = snippet(self.src, span);
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message: shorten_values(&message),
            hint: hint.map(|h| shorten_values(&h)),
            snippet,
        });
    }
}

/// The line holding `span.start` and the span's extent on it.
fn snippet(src: &str, span: &std::ops::Range<usize>) -> Option<Snippet> {
    if src.is_empty() {
        return None;
    }
    let start = floor_char_boundary(src, span.start.min(src.len()));
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let text = src[line_start..line_end].trim_end_matches('\r');
    let col = src[line_start..start].chars().count();
    let end = floor_char_boundary(src, span.end.clamp(start, line_end));
    let len = src[start..end].chars().count().max(1);
    Some(Snippet {
        text: text.to_string(),
        start: col,
        len,
    })
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
    fn snippets_cover_the_span_on_its_line() {
        let src = "[lab]\nname = \"Bad_Lab\"\n";
        let s = snippet(src, &(13..22)).unwrap();
        assert_eq!(
            (s.text.as_str(), s.start, s.len),
            ("name = \"Bad_Lab\"", 7, 9)
        );
        // A span running past the line stops at its end; an empty span still gets a caret.
        let s = snippet(src, &(13..200)).unwrap();
        assert_eq!(s.len, 9);
        assert_eq!(snippet(src, &(0..0)).unwrap().len, 1);
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "a".repeat(100_000);
        let m = shorten_values(&format!("`{long}` is not a valid lab name: use `a-z`"));
        assert_eq!(
            m,
            format!(
                "`{}…` (100000 characters) is not a valid lab name: use `a-z`",
                "a".repeat(40)
            )
        );
        assert_eq!(shorten_values("`short` and `x`"), "`short` and `x`");
        assert_eq!(shorten_values("odd ` quote"), "odd ` quote");
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(suggest("memroy", ["cpus", "memory", "ip"]), Some("memory"));
        assert_eq!(suggest("hostnmae", ["hostname", "host"]), Some("hostname"));
        assert_eq!(suggest("zzzzzz", ["cpus", "memory"]), None);
    }
}
