//! The lab spec: `lab.toml` → a validated [`Lab`], and rendering of its provisioning steps.
//!
//! The pipeline is parse (structure and types) → defaults → validate (meaning, addresses,
//! step graph, templates). Every problem is reported at once with file:line:column and the
//! field path. This crate is pure: it reads files, it never runs programs or writes.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod class;
mod error;
pub mod graph;
mod model;
mod packages;
mod parse;
pub mod render;
mod validate;

use std::path::Path;

pub use error::{Diagnostic, MAX_VALUE_CHARS, Snippet, SpecError, shorten_values};
pub use graph::Graph;
pub use model::*;
pub use packages::bundle_name_ok;
pub use render::{BundleRegistry, GuestBundle, RenderFailure, RenderedStep, Renderer, shell_quote};
pub use validate::{DEFAULT_BOX, LabDefaults, MAX_WORKERS, Overrides};

/// Load, fill defaults and validate a lab file.
pub fn load(path: &Path, overrides: Overrides) -> Result<Lab, SpecError> {
    let bytes = std::fs::read(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return Err(not_utf8(path, e.as_bytes(), e.utf8_error())),
    };
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    load_str(&text, &abs, path, overrides)
}

/// A file that is not UTF-8: one diagnostic at the first bad byte.
fn not_utf8(path: &Path, bytes: &[u8], e: std::str::Utf8Error) -> SpecError {
    let good = &bytes[..e.valid_up_to()];
    let text = String::from_utf8_lossy(good);
    let (line, column) = error::line_col(&text, text.len());
    let bad = bytes.get(e.valid_up_to()).copied().unwrap_or(0);
    SpecError::Invalid {
        file: path.to_path_buf(),
        diagnostics: vec![Diagnostic {
            file: path.to_path_buf(),
            line,
            column,
            field: String::new(),
            message: format!("the file is not UTF-8 text (byte 0x{bad:02X})"),
            hint: Some("save it as UTF-8".into()),
            snippet: None,
        }],
    }
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
