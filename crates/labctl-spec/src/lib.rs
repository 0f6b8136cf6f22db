//! The lab spec: `lab.toml` → a validated [`Lab`], and rendering of its provisioning steps.
//!
//! The pipeline is parse (structure and types) → defaults → validate (meaning, addresses,
//! step graph, templates). Every problem is reported at once with file:line:column and the
//! field path. This crate is pure: it reads files, it never runs programs or writes.

mod error;
pub mod graph;
mod model;
mod parse;
pub mod render;
mod validate;

use std::path::Path;

pub use error::{Diagnostic, SpecError};
pub use graph::Graph;
pub use model::*;
pub use render::{RenderFailure, RenderedStep, Renderer, shell_quote};
pub use validate::{DEFAULT_BOX, MAX_WORKERS, Overrides};

/// Load, fill defaults and validate a lab file.
pub fn load(path: &Path, overrides: Overrides) -> Result<Lab, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    load_str(&text, &abs, path, overrides)
}

/// Load from text. `abs` anchors relative paths; `shown` is the path printed in diagnostics.
pub fn load_str(
    text: &str,
    abs: &Path,
    shown: &Path,
    overrides: Overrides,
) -> Result<Lab, SpecError> {
    let mut sink = error::Sink::new(shown, text);
    let raw = parse::parse(text, &mut sink);
    let lab = if sink.diags.is_empty() || !raw.roles.is_empty() {
        validate::build(raw, abs, overrides, &mut sink)
    } else {
        None
    };
    sink.diags
        .sort_by_key(|d| (d.file != shown, d.line, d.column));
    match lab {
        Some(lab) if sink.diags.is_empty() => Ok(lab),
        _ => Err(SpecError::Invalid {
            file: shown.to_path_buf(),
            diagnostics: sink.diags,
        }),
    }
}
