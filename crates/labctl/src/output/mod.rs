//! Everything that reaches the terminal goes through here.

pub(crate) mod json;
pub(crate) mod reporter;
mod styles;
pub(crate) mod words;

use std::io::{IsTerminal, Write};

pub(crate) use styles::Styles;

use crate::errors::ExpectedError;

/// Owns stdout/stderr for plain command output and errors.
#[derive(Debug, Clone)]
pub(crate) struct Printer {
    pub(crate) quiet: bool,
    /// -v given: logs go to stderr, so no live redraw.
    pub(crate) verbose: bool,
    pub(crate) styles: Styles,
    pub(crate) err_styles: Styles,
}

impl Printer {
    pub(crate) fn new(quiet: bool, verbose: bool, no_color: bool) -> Printer {
        let color_out = !no_color && std::io::stdout().is_terminal();
        let color_err = !no_color && std::io::stderr().is_terminal();
        Printer {
            quiet,
            verbose,
            styles: Styles::new(color_out),
            err_styles: Styles::new(color_err),
        }
    }

    /// A result line on stdout (printed even with -q).
    pub(crate) fn out(&self, line: impl AsRef<str>) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{}", line.as_ref());
    }

    /// An informational line on stderr (hidden with -q).
    pub(crate) fn info(&self, line: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{}", line.as_ref());
        }
    }

    /// Render an error with its diagnostics, cause chain and hint.
    pub(crate) fn error(&self, e: &ExpectedError) {
        let s = &self.err_styles;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}: {e}", s.error("error"));
        if let ExpectedError::Spec(spec) = e {
            for d in spec.diagnostics() {
                let _ = writeln!(err, "  {d}");
                if let Some(sn) = &d.snippet {
                    for line in snippet_lines(d.line, sn) {
                        let _ = writeln!(err, "{}", style_snippet(*s, &line));
                    }
                }
            }
        }
        for line in e.details() {
            let _ = writeln!(err, "  {line}");
        }
        let mut source = std::error::Error::source(e);
        if matches!(e, ExpectedError::Spec(_)) {
            source = None;
        }
        while let Some(cause) = source {
            let _ = writeln!(err, "  {}: {cause}", s.dim("caused by"));
            source = cause.source();
        }
        if let Some(h) = e.hint() {
            let _ = writeln!(err, "  {}: {h}", s.hint("hint"));
        }
    }
}

/// Columns of source shown around a problem; longer lines are cut around the span.
const SNIPPET_WIDTH: usize = 100;

/// A diagnostic's source line with a caret under the span, rustc-style:
/// `     |`, `   2 | name = "Bad_Lab"`, `     |        ^^^^^^^^^`.
pub(crate) fn snippet_lines(line_no: usize, sn: &labctl_spec::Snippet) -> Vec<String> {
    let chars: Vec<char> = sn
        .text
        .chars()
        .map(|c| if c == '\t' || c.is_control() { ' ' } else { c })
        .collect();
    let total = chars.len();
    let (from, to) = if total <= SNIPPET_WIDTH {
        (0, total)
    } else {
        let from = sn
            .start
            .saturating_sub(30)
            .min(total.saturating_sub(SNIPPET_WIDTH));
        (from, (from + SNIPPET_WIDTH).min(total))
    };
    let mut shown = String::new();
    if from > 0 {
        shown.push('…');
    }
    shown.extend(&chars[from..to]);
    if to < total {
        shown.push('…');
    }
    let start = sn.start.clamp(from, to);
    let caret_at = start - from + usize::from(from > 0);
    let caret_len = sn.len.min(to.saturating_sub(start)).max(1);
    let num = line_no.to_string();
    let pad = " ".repeat(num.len());
    vec![
        format!("  {pad} |"),
        format!("  {num} | {shown}"),
        format!(
            "  {pad} | {}{}",
            " ".repeat(caret_at),
            "^".repeat(caret_len)
        ),
    ]
}

/// Gutter dimmed, carets in the error colour (plain when colours are off).
fn style_snippet(s: Styles, line: &str) -> String {
    match line.split_once(" | ") {
        Some((gutter, rest))
            if rest.trim_start().starts_with('^') && rest.trim().chars().all(|c| c == '^') =>
        {
            format!("{} {}", s.dim(&format!("{gutter} |")), s.error(rest))
        }
        Some((gutter, rest)) => format!("{} {rest}", s.dim(&format!("{gutter} |"))),
        None => s.dim(line),
    }
}
