//! Provisioning steps: where each script goes under `templates/` and how its args are written.

use std::path::{Component, Path, PathBuf};

use super::Builder;
use super::names::{escape, quote, sanitize, valid_step_name, var_name};
use crate::eval::{Piece, StepDef, StepKind};
use crate::{FileSource, NoticeKind, OutFile};

pub(super) struct Step {
    pub(super) name: String,
    pub(super) default_name: String,
    pub(super) script: String,
    pub(super) args: Vec<String>,
    pub(super) run: Option<String>,
    pub(super) after: Option<String>,
}

/// Lay out the path a script gets under `templates/`.
fn script_target(path: &str) -> (String, bool) {
    let mut parts = Vec::new();
    let mut moved = false;
    for c in Path::new(path).components() {
        match c {
            Component::Normal(x) => parts.push(x.to_string_lossy().to_string()),
            Component::CurDir => {}
            _ => moved = true,
        }
    }
    if parts.is_empty() {
        parts.push("script.sh".into());
        moved = true;
    }
    (format!("templates/{}", parts.join("/")), moved)
}

pub(super) fn steps_of(
    b: &mut Builder,
    role: &str,
    defs: &[StepDef],
    scale_const: Option<&str>,
    index_ok: bool,
    consts: &[(String, crate::eval::Val)],
) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for d in defs {
        let (script, source, stem) = match &d.kind {
            StepKind::Path(p) => {
                let (target, moved) = script_target(p);
                if moved {
                    b.push(
                        d.line,
                        NoticeKind::ScriptMoved {
                            from: p.clone(),
                            to: target.clone(),
                        },
                    );
                }
                let stem = Path::new(&target)
                    .file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default();
                (target, FileSource::Copy(PathBuf::from(p)), stem)
            }
            StepKind::Inline(text) => {
                let base = d
                    .name
                    .as_deref()
                    .filter(|n| valid_step_name(n))
                    .map_or_else(|| format!("{role}-inline"), |n| format!("{role}-{n}"));
                let mut target = format!("templates/{base}.sh");
                let mut k = 2;
                while b.files.iter().any(|f| {
                    f.path == Path::new(&target) && f.source != FileSource::Inline(text.clone())
                }) {
                    target = format!("templates/{base}-{k}.sh");
                    k += 1;
                }
                (
                    target,
                    FileSource::Inline(text.clone()),
                    "inline".to_string(),
                )
            }
        };
        if !b.files.iter().any(|f| f.path == Path::new(&script)) {
            b.files.push(OutFile {
                path: PathBuf::from(&script),
                source,
                line: d.line,
            });
        }
        let default_name = {
            let s = stem.trim_end_matches(".hbs");
            s.strip_suffix(".sh").unwrap_or(s).to_string()
        };
        let mut name = d
            .name
            .clone()
            .filter(|n| valid_step_name(n))
            .unwrap_or_else(|| {
                if valid_step_name(&default_name) {
                    return default_name.clone();
                }
                let s = sanitize(&default_name, false).replace('.', "-");
                if valid_step_name(&s) {
                    s
                } else {
                    format!("step-{s}")
                }
            });
        let base = name.clone();
        let mut k = 2;
        while out.iter().any(|s| s.name == name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        if d.args_split {
            b.push(d.line, NoticeKind::ArgsSplit { step: name.clone() });
        }
        let args = d
            .args
            .iter()
            .map(|a| {
                if !index_ok && a.pieces.contains(&Piece::Index) {
                    return escape(&a.lit);
                }
                a.pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Lit(s) => escape(s),
                        Piece::Index => "{{node.index}}".into(),
                        Piece::Const(c) if Some(c.as_str()) == scale_const => {
                            "{{lab.workers}}".into()
                        }
                        Piece::Const(c) => {
                            let var = var_name(c);
                            let val = consts
                                .iter()
                                .find(|(n, _)| n == c)
                                .map(|(_, v)| match v {
                                    crate::eval::Val::Int(i) => i.to_string(),
                                    other => quote(&other.to_text()),
                                })
                                .unwrap_or_else(|| "\"\"".into());
                            b.vars.insert(var.clone(), val);
                            format!("{{{{vars.{var}}}}}")
                        }
                    })
                    .collect::<String>()
            })
            .collect();
        out.push(Step {
            name,
            default_name,
            script,
            args,
            run: d.run.clone().filter(|r| r == "always" || r == "never"),
            after: None,
        });
    }
    out
}
