//! Everything that reaches the terminal goes through here.

pub(crate) mod reporter;
mod styles;

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
            }
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
