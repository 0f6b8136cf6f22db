//! Loading class.toml: the structure walk, defaults and validation of class, hosts and students.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::{Class, DEFAULT_MAX_PARALLEL, Host, MAX_STUDENTS, Student, UriError, parse_uri};
use crate::error::{Sink, SpecError};
use crate::parse::{
    S, Table, check_keys, get_int, get_str, get_table, get_table_array, wrong_type,
};

const TOP_KEYS: &[&str] = &["class", "host", "student"];
const CLASS_KEYS: &[&str] = &["name", "lab", "workers", "students"];
const HOST_KEYS: &[&str] = &["name", "uri", "memory_mb", "max_parallel"];
const STUDENT_KEYS: &[&str] = &["host"];

/// Load and validate a class file.
pub fn load_class(path: &Path) -> Result<Class, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    load_class_str(&text, &abs, path)
}

/// Load a class from text: `abs` anchors the lab path; `shown` is the path in diagnostics.
pub fn load_class_str(text: &str, abs: &Path, shown: &Path) -> Result<Class, SpecError> {
    let mut sink = Sink::new(shown, text);
    let class = build(text, abs, &mut sink);
    sink.diags.sort_by_key(|d| (d.line, d.column));
    match class {
        Some(c) if sink.diags.is_empty() => Ok(c),
        _ => Err(SpecError::Invalid {
            file: shown.to_path_buf(),
            diagnostics: sink.diags,
        }),
    }
}

fn build(text: &str, abs: &Path, sink: &mut Sink<'_>) -> Option<Class> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        sink.at(&span, "", format!("invalid TOML: {}", e.message().trim()));
    }
    if !errors.is_empty() {
        return None;
    }
    let top = doc.get_ref();
    check_keys(top, "", TOP_KEYS, sink);
    let dir = abs
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);

    let Some((ct, cspan)) = get_table(top, "class", "class", sink) else {
        if top.get("class").is_none() {
            sink.hint(
                &(0..0),
                "class",
                "missing table [class]",
                "add `[class]` with `name`, `lab` and `students`",
            );
        }
        return None;
    };
    check_keys(ct, "class", CLASS_KEYS, sink);
    let name = match get_str(ct, "class", "name", sink) {
        Some(n) if lab_name_ok(&n.v) => Some(n),
        Some(n) => {
            sink.at(
                &n.span,
                "class.name",
                format!(
                    "`{}` is not a valid class name: use 1-40 lowercase letters, digits and dashes",
                    n.v
                ),
            );
            None
        }
        None => {
            sink.hint(
                &cspan,
                "class.name",
                "missing",
                "add `name = \"k8s-course\"` under [class]",
            );
            None
        }
    };
    let lab_dir = match get_str(ct, "class", "lab", sink) {
        Some(l) => lab_path(&l, &dir, sink),
        None => {
            sink.hint(
                &cspan,
                "class.lab",
                "missing",
                "add `lab = \"path/to/lab\"` (the directory holding lab.toml)",
            );
            None
        }
    };
    let workers = get_int(ct, "class", "workers", sink).and_then(|w| {
        if (0..=i64::from(crate::MAX_WORKERS)).contains(&w.v) {
            u32::try_from(w.v).ok()
        } else {
            sink.at(
                &w.span,
                "class.workers",
                format!("must be 0-{}", crate::MAX_WORKERS),
            );
            None
        }
    });
    let students = students(ct, &cspan, sink);

    let mut hosts: Vec<Host> = Vec::new();
    let mut host_names: BTreeSet<String> = BTreeSet::new();
    let host_tables = get_table_array(top, "host", "host", sink);
    if host_tables.is_empty() && top.get("host").is_none() {
        sink.hint(
            &(0..0),
            "host",
            "no host",
            "add `[[host]]` with `name` and `uri` (`uri = \"local\"` for this machine)",
        );
    }
    for (i, (t, span)) in host_tables.into_iter().enumerate() {
        let path = format!("host[{i}]");
        check_keys(t, &path, HOST_KEYS, sink);
        if let Some(h) = host(t, &span, &path, sink) {
            if !host_names.insert(h.name.clone()) {
                let at = t.get("name").map_or(span.clone(), |v| v.span());
                sink.at(
                    &at,
                    &format!("{path}.name"),
                    format!("host `{}` is listed twice", h.name),
                );
            } else {
                hosts.push(h);
            }
        }
    }

    let mut students = students;
    if let Some((st, _)) = get_table(top, "student", "student", sink) {
        for (key, value) in st {
            let sname = key.get_ref().to_string();
            let path = format!("student.{sname}");
            let Some(t) = crate::parse::as_table(value, &path, sink) else {
                continue;
            };
            check_keys(t, &path, STUDENT_KEYS, sink);
            let Some(s) = students.iter_mut().find(|s| s.name == sname) else {
                sink.hint(
                    &key.span(),
                    &path,
                    format!("`{sname}` is not a student of this class"),
                    "list the student in `students`",
                );
                continue;
            };
            if let Some(h) = get_str(t, &path, "host", sink) {
                if host_names.contains(&h.v) {
                    s.host = Some(h.v);
                } else {
                    let hint = crate::error::suggest(&h.v, host_names.iter().map(String::as_str))
                        .map_or_else(
                            || {
                                format!(
                                    "hosts: {}",
                                    host_names.iter().cloned().collect::<Vec<_>>().join(", ")
                                )
                            },
                            |s| format!("did you mean `{s}`?"),
                        );
                    sink.hint(
                        &h.span,
                        &format!("{path}.host"),
                        format!("no host named `{}`", h.v),
                        hint,
                    );
                }
            }
        }
    }

    if let Some(n) = &name {
        // `<class>-<student>` is each lab's name.
        for s in &students {
            let lab = format!("{}-{}", n.v, s.name);
            if !lab_name_ok(&lab) {
                sink.hint(
                    &n.span,
                    "class.name",
                    format!(
                        "lab name `{lab}` (class name, dash, student) is longer than 40 characters"
                    ),
                    "use a shorter class name or shorter student names",
                );
                break;
            }
        }
    }
    Some(Class {
        file: abs.to_path_buf(),
        dir,
        name: name?.v,
        lab_dir: lab_dir?,
        workers,
        hosts,
        students,
    })
}

/// The `lab` path: a directory holding lab.toml, relative to class.toml's directory, and not
/// inside the class's own `.labctl/` (where the students' labs are generated).
fn lab_path(l: &S<String>, dir: &Path, sink: &mut Sink<'_>) -> Option<PathBuf> {
    if l.v.is_empty() || l.v.chars().any(char::is_control) {
        sink.at(&l.span, "class.lab", "must be a directory path");
        return None;
    }
    let p = dir.join(&l.v);
    let p = normalize(&p);
    if p.starts_with(normalize(&dir.join(".labctl"))) {
        sink.hint(
            &l.span,
            "class.lab",
            format!("`{}` is inside the class's own state directory", l.v),
            "point at the lab the students' labs are made from",
        );
        return None;
    }
    let dir_of = if p.file_name().is_some_and(|f| f == "lab.toml") {
        p.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        p
    };
    if !dir_of.join("lab.toml").is_file() {
        sink.hint(
            &l.span,
            "class.lab",
            format!("no lab.toml in `{}`", dir_of.display()),
            "give the directory of a lab (`labctl init` writes one)",
        );
        return None;
    }
    Some(dir_of)
}

/// `a/./b/../c` → `a/c` without touching the file system (symlinks are not resolved).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A lab or class name: 1-40 lowercase letters, digits and dashes, not starting with a dash
/// (the rule lab.toml's `name` follows).
fn lab_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
}

/// Whether a student name is a label: 1-30 lowercase letters, digits and dashes, starting
/// with a letter or digit (it names a directory and a file).
pub fn student_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 30
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
}

fn students(ct: &Table<'_>, cspan: &std::ops::Range<usize>, sink: &mut Sink<'_>) -> Vec<Student> {
    let Some(v) = ct.get("students") else {
        sink.hint(
            cspan,
            "class.students",
            "missing",
            "add `students = [\"ann\", \"bob\"]` or `students = 12`",
        );
        return Vec::new();
    };
    let mut out: Vec<Student> = Vec::new();
    match v.get_ref() {
        DeValue::Integer(_) => {
            let n = get_int(ct, "class", "students", sink).map(|s| s.v);
            match n {
                Some(n) if (1..=MAX_STUDENTS).contains(&n) => {
                    let width = if n > 99 { 3 } else { 2 };
                    out = (1..=n)
                        .map(|i| Student {
                            name: format!("s{i:0width$}"),
                            host: None,
                        })
                        .collect();
                }
                Some(_) => sink.at(
                    &v.span(),
                    "class.students",
                    format!("a count must be 1-{MAX_STUDENTS}"),
                ),
                None => {}
            }
        }
        DeValue::Array(items) => {
            if items.is_empty() {
                sink.hint(
                    &v.span(),
                    "class.students",
                    "no students",
                    "list at least one name",
                );
            }
            for (i, item) in items.iter().enumerate() {
                let field = format!("class.students[{i}]");
                let DeValue::String(s) = item.get_ref() else {
                    wrong_type(item, &field, "a string", sink);
                    continue;
                };
                if !student_name_ok(s) {
                    sink.at(
                        &item.span(),
                        &field,
                        format!(
                            "`{s}` is not a valid student name: use 1-30 lowercase letters, digits and dashes"
                        ),
                    );
                    continue;
                }
                if out.iter().any(|o| o.name == *s) {
                    sink.at(
                        &item.span(),
                        &field,
                        format!("student `{s}` is listed twice"),
                    );
                    continue;
                }
                out.push(Student {
                    name: s.to_string(),
                    host: None,
                });
            }
        }
        _ => wrong_type(v, "class.students", "a list of names or a count", sink),
    }
    out
}

fn host(
    t: &Table<'_>,
    span: &std::ops::Range<usize>,
    path: &str,
    sink: &mut Sink<'_>,
) -> Option<Host> {
    let name = match get_str(t, path, "name", sink) {
        Some(n) if student_name_ok(&n.v) => Some(n.v),
        Some(n) => {
            sink.at(
                &n.span,
                &format!("{path}.name"),
                format!(
                    "`{}` is not a valid host name here: use 1-30 lowercase letters, digits and dashes",
                    n.v
                ),
            );
            None
        }
        None => {
            sink.hint(
                span,
                &format!("{path}.name"),
                "missing",
                "add `name = \"h1\"`",
            );
            None
        }
    };
    let uri = match get_str(t, path, "uri", sink) {
        Some(u) => match parse_uri(&u.v) {
            Ok(p) => Some(p),
            Err(UriError(m)) => {
                sink.at(&u.span, &format!("{path}.uri"), format!("`{}`: {m}", u.v));
                None
            }
        },
        None => {
            sink.hint(
                span,
                &format!("{path}.uri"),
                "missing",
                "add `uri = \"local\"` or `uri = \"qemu+ssh://root@HOST/system\"`",
            );
            None
        }
    };
    let memory_mb = get_int(t, path, "memory_mb", sink).and_then(|m| {
        if (256..=16 * 1024 * 1024).contains(&m.v) {
            u64::try_from(m.v).ok()
        } else {
            sink.at(
                &m.span,
                &format!("{path}.memory_mb"),
                "must be 256-16777216 (MiB)",
            );
            None
        }
    });
    let max_parallel = match get_int(t, path, "max_parallel", sink) {
        None => Some(DEFAULT_MAX_PARALLEL),
        Some(m) if (1..=64).contains(&m.v) => usize::try_from(m.v).ok(),
        Some(m) => {
            sink.at(&m.span, &format!("{path}.max_parallel"), "must be 1-64");
            None
        }
    };
    Some(Host {
        name: name?,
        uri: uri?,
        memory_mb,
        max_parallel: max_parallel?,
    })
}
