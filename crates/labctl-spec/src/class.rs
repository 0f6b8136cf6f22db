//! `class.toml`: one lab for many students, placed across hypervisor hosts.
//!
//! Parse (structure and types) → defaults → validate (names, hosts, students), every problem
//! reported at once with its location, like lab.toml. [`place`] is the placement: a pure
//! function from host capacities, the lab's memory and the previous placements.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

use crate::error::{Sink, SpecError};
use crate::parse::{
    S, Table, check_keys, get_int, get_str, get_table, get_table_array, wrong_type,
};

/// Most students a count may ask for (`students = N`).
pub const MAX_STUDENTS: i64 = 999;
/// Default labs brought up at once on one host.
pub const DEFAULT_MAX_PARALLEL: usize = 2;

const TOP_KEYS: &[&str] = &["class", "host", "student"];
const CLASS_KEYS: &[&str] = &["name", "lab", "workers", "students"];
const HOST_KEYS: &[&str] = &["name", "uri", "memory_mb", "max_parallel"];
const STUDENT_KEYS: &[&str] = &["host"];

/// A validated class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Class {
    /// Absolute path of class.toml.
    pub file: PathBuf,
    /// The directory holding class.toml (the class's state is in `<dir>/.labctl/`).
    pub dir: PathBuf,
    pub name: String,
    /// The directory of the lab every student gets (holds lab.toml).
    pub lab_dir: PathBuf,
    /// Overrides the lab's `workers`.
    pub workers: Option<u32>,
    pub hosts: Vec<Host>,
    /// In the order written (`students = N`: s01, s02, …).
    pub students: Vec<Student>,
}

impl Class {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
    /// The lab name of a student's lab: `<class>-<student>`.
    pub fn lab_name(&self, student: &str) -> String {
        format!("{}-{student}", self.name)
    }
}

/// A hypervisor host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    pub name: String,
    pub uri: HostUri,
    /// Memory labs may use there (MiB); `None`: measured when first needed.
    pub memory_mb: Option<u64>,
    /// Labs brought up at once on this host.
    pub max_parallel: usize,
}

/// Where a host's labs run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostUri {
    /// This machine, with the lab's own provider (`uri = "local"`).
    Local,
    /// A libvirt connection URI (`qemu:///system`, `qemu+ssh://user@host/system`).
    Libvirt {
        uri: String,
        /// The SSH endpoint for `qemu+ssh://` URIs: guests are reached through it.
        remote: Option<Remote>,
    },
}

impl HostUri {
    /// The text written in class.toml.
    pub fn as_str(&self) -> &str {
        match self {
            HostUri::Local => "local",
            HostUri::Libvirt { uri, .. } => uri,
        }
    }
    pub fn remote(&self) -> Option<&Remote> {
        match self {
            HostUri::Libvirt {
                remote: Some(r), ..
            } => Some(r),
            _ => None,
        }
    }
}

/// `user@host:port` of a `qemu+ssh://` URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remote {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Remote {
    /// OpenSSH's `ProxyJump` value: `[user@]host[:port]`.
    pub fn jump(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.host.contains(':') {
            s.push('[');
            s.push_str(&self.host);
            s.push(']');
        } else {
            s.push_str(&self.host);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

/// A student.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Student {
    pub name: String,
    /// `[student.NAME] host = "…"`: placed on this host (when first placed).
    pub host: Option<String>,
}

/// Why a URI is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriError(pub String);

/// Parse a host's `uri`: `local`, or a libvirt URI `qemu[+ssh]://[user@]host[:port]/system`
/// (or `/session`). Only `qemu` and `qemu+ssh` transports are accepted; user and host names
/// are limited to characters that are safe in an OpenSSH config.
pub fn parse_uri(s: &str) -> Result<HostUri, UriError> {
    if s == "local" {
        return Ok(HostUri::Local);
    }
    if s.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"')
    {
        return Err(UriError(
            "contains spaces, quotes or control characters".into(),
        ));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(UriError(
            "expected `local` or a libvirt URI such as `qemu+ssh://root@10.0.0.2/system`".into(),
        ));
    };
    let ssh = match scheme {
        "qemu" => false,
        "qemu+ssh" => true,
        other => {
            return Err(UriError(format!(
                "transport `{other}` is not supported: use `qemu` (this machine) or `qemu+ssh`"
            )));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = path.split('?').next().unwrap_or_default();
    if path != "/system" && path != "/session" {
        return Err(UriError("the path must be `/system` or `/session`".into()));
    }
    if !ssh {
        if !authority.is_empty() {
            return Err(UriError(
                "a `qemu://` URI with a host name needs a transport: use `qemu+ssh://`".into(),
            ));
        }
        return Ok(HostUri::Libvirt {
            uri: s.to_string(),
            remote: None,
        });
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = user
        && (u.is_empty()
            || u.starts_with('-')
            || !u
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(UriError(format!("`{u}` is not a valid user name")));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Err(UriError("unclosed `[` in the host".into()));
        };
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty()
        || host.starts_with('-')
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    {
        return Err(UriError(format!(
            "`{host}` is not a host name or address (qemu+ssh needs one)"
        )));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(UriError(format!("`{p}` is not a port"))),
        },
    };
    Ok(HostUri::Libvirt {
        uri: s.to_string(),
        remote: Some(Remote {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        }),
    })
}

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

// ---------------------------------------------------------------------------------------
// Placement

/// Where a student's lab is: its host and its slot (an index unique in the class, which
/// spaces the lab's host ports away from the other students' labs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub host: String,
    pub slot: u32,
}

/// A host's memory for labs, in MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCapacity {
    pub name: String,
    pub capacity_mb: u64,
}

/// The result of [`place`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementPlan {
    /// Every recorded lab: the class's students and removed students whose labs still exist.
    pub placements: BTreeMap<String, Placement>,
    /// Students placed in this call.
    pub placed: Vec<String>,
    /// Recorded students no longer in the class (their labs stay until `class destroy`).
    pub removed: Vec<String>,
}

/// A student that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFit {
    pub student: String,
    pub need_mb: u64,
    /// The host with the most memory left among those the student may go to.
    pub best_host: String,
    pub free_mb: u64,
    pub shortfall_mb: u64,
}

/// Why no placement was made (nothing is changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("{}", nofit_text(.0))]
    NoFit(Vec<NoFit>),
    #[error("{student}'s lab is recorded on host `{host}`, which is no longer in the class")]
    HostGone { student: String, host: String },
    #[error("host `{host}` has {capacity_mb} MiB but its recorded labs need {used_mb} MiB")]
    Overcommitted {
        host: String,
        capacity_mb: u64,
        used_mb: u64,
    },
}

fn nofit_text(v: &[NoFit]) -> String {
    v.iter()
        .map(|n| {
            format!(
                "{} does not fit: the lab needs {} MiB, {} has {} MiB left ({} MiB short)",
                n.student, n.need_mb, n.best_host, n.free_mb, n.shortfall_mb
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Place the students' labs on hosts. Recorded placements (`previous`) are kept as they are;
/// only students without one are placed, in class order, each on the host with the most
/// memory left (the first such host on a tie), or on its pinned host. No host gets more than
/// its capacity: a student that fits nowhere is an error naming the student and the
/// shortfall, and then nothing is placed. Each new placement gets the lowest free slot.
pub fn place(
    hosts: &[HostCapacity],
    need_mb: u64,
    students: &[Student],
    previous: &BTreeMap<String, Placement>,
) -> Result<PlacementPlan, PlaceError> {
    let mut used: BTreeMap<&str, u64> = hosts.iter().map(|h| (h.name.as_str(), 0)).collect();
    for (student, p) in previous {
        match used.get_mut(p.host.as_str()) {
            Some(u) => *u += need_mb,
            None => {
                return Err(PlaceError::HostGone {
                    student: student.clone(),
                    host: p.host.clone(),
                });
            }
        }
    }
    for h in hosts {
        let u = used[h.name.as_str()];
        if u > h.capacity_mb {
            return Err(PlaceError::Overcommitted {
                host: h.name.clone(),
                capacity_mb: h.capacity_mb,
                used_mb: u,
            });
        }
    }
    let mut plan = PlacementPlan {
        placements: previous.clone(),
        ..PlacementPlan::default()
    };
    let mut slots: BTreeSet<u32> = previous.values().map(|p| p.slot).collect();
    let mut nofit = Vec::new();
    for s in students {
        if previous.contains_key(&s.name) {
            continue;
        }
        let best = hosts
            .iter()
            .filter(|h| s.host.as_ref().is_none_or(|p| *p == h.name))
            .map(|h| (h, h.capacity_mb - used[h.name.as_str()]))
            .fold(None::<(&HostCapacity, u64)>, |best, (h, free)| match best {
                Some((_, bf)) if bf >= free => best,
                _ => Some((h, free)),
            });
        let Some((h, free)) = best else {
            // A pin to a host that is not there: validation prevents this.
            nofit.push(NoFit {
                student: s.name.clone(),
                need_mb,
                best_host: s.host.clone().unwrap_or_default(),
                free_mb: 0,
                shortfall_mb: need_mb,
            });
            continue;
        };
        if free < need_mb {
            nofit.push(NoFit {
                student: s.name.clone(),
                need_mb,
                best_host: h.name.clone(),
                free_mb: free,
                shortfall_mb: need_mb - free,
            });
            continue;
        }
        if let Some(u) = used.get_mut(h.name.as_str()) {
            *u += need_mb;
        }
        let slot = (0..).find(|n| !slots.contains(n)).unwrap_or(u32::MAX);
        slots.insert(slot);
        plan.placements.insert(
            s.name.clone(),
            Placement {
                host: h.name.clone(),
                slot,
            },
        );
        plan.placed.push(s.name.clone());
    }
    if !nofit.is_empty() {
        return Err(PlaceError::NoFit(nofit));
    }
    plan.removed = previous
        .keys()
        .filter(|k| !students.iter().any(|s| s.name == **k))
        .cloned()
        .collect();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Class, Vec<String>> {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("lab")).expect("mkdir");
        std::fs::write(dir.path().join("lab/lab.toml"), "[lab]\n").expect("write");
        let file = dir.path().join("class.toml");
        load_class_str(text, &file, Path::new("class.toml"))
            .map_err(|e| e.diagnostics().iter().map(ToString::to_string).collect())
    }

    const OK: &str = r#"
[class]
name = "k8s"
lab = "lab"
students = ["ann", "bob"]

[[host]]
name = "h1"
uri = "local"
memory_mb = 4096

[[host]]
name = "h2"
uri = "qemu+ssh://root@10.0.0.2:2222/system"
max_parallel = 3

[student.bob]
host = "h2"
"#;

    #[test]
    fn a_class_loads_with_defaults() {
        let c = load(OK).expect("loads");
        assert_eq!(c.name, "k8s");
        assert!(c.lab_dir.ends_with("lab"));
        assert_eq!(c.hosts.len(), 2);
        assert_eq!(c.hosts[0].uri, HostUri::Local);
        assert_eq!(c.hosts[0].max_parallel, DEFAULT_MAX_PARALLEL);
        assert_eq!(c.hosts[0].memory_mb, Some(4096));
        assert_eq!(c.hosts[1].memory_mb, None);
        assert_eq!(c.hosts[1].max_parallel, 3);
        assert_eq!(
            c.hosts[1].uri.remote().map(Remote::jump),
            Some("root@10.0.0.2:2222".to_string())
        );
        assert_eq!(
            c.students,
            vec![
                Student {
                    name: "ann".into(),
                    host: None
                },
                Student {
                    name: "bob".into(),
                    host: Some("h2".into())
                }
            ]
        );
        assert_eq!(c.lab_name("ann"), "k8s-ann");
    }

    #[test]
    fn a_count_of_students_is_numbered() {
        let c = load(
            &OK.replace(r#"students = ["ann", "bob"]"#, "students = 12")
                .replace("[student.bob]\nhost = \"h2\"\n", ""),
        )
        .expect("loads");
        let names: Vec<&str> = c.students.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 12);
        assert_eq!((names[0], names[11]), ("s01", "s12"));
    }

    #[test]
    fn hostile_input_is_reported_with_locations() {
        let text = r#"
[class]
name = "K8s"
lab = "lab"
students = ["ann", "../etc", "ann", "", 7, "bob"]
colour = "red"

[[host]]
name = "h1"
uri = "qemu+tcp://10.0.0.2/system"
memory_mb = 1
max_parallel = 0

[[host]]
name = "h1"
uri = "qemu+ssh://-oProxyCommand=x@h/system"

[student.carol]
host = "h1"

[student.bob]
host = "h9"
"#;
        let errs = load(text).expect_err("refused");
        let all = errs.join("\n");
        for want in [
            "class.toml:3:8: class.name: `K8s` is not a valid class name",
            "class.toml:5:20: class.students[1]: `../etc` is not a valid student name",
            "class.toml:5:30: class.students[2]: student `ann` is listed twice",
            "class.students[3]: `` is not a valid student name",
            "class.students[4]: expected a string, found an integer",
            "class.toml:6:1: class.colour: unknown key",
            "host[0].uri: `qemu+tcp://10.0.0.2/system`: transport `qemu+tcp` is not supported",
            "host[0].memory_mb: must be 256-16777216",
            "host[0].max_parallel: must be 1-64",
            "host[1].uri: `qemu+ssh://-oProxyCommand=x@h/system`: `-oProxyCommand=x` is not a valid user name",
            "student.carol: `carol` is not a student of this class",
            "student.bob.host: no host named `h9`",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn duplicate_hosts_and_missing_parts_are_errors() {
        let errs = load(
            "[class]\nname = \"c\"\nlab = \"lab\"\nstudents = 0\n[[host]]\nname = \"a\"\nuri = \"local\"\n[[host]]\nname = \"a\"\nuri = \"local\"\n",
        )
        .expect_err("refused");
        let all = errs.join("\n");
        assert!(
            all.contains("class.students: a count must be 1-999"),
            "{all}"
        );
        assert!(
            all.contains("class.toml:9:8: host[1].name: host `a` is listed twice"),
            "{all}"
        );
        let errs = load("[class]\n").expect_err("refused").join("\n");
        for want in [
            "class.name: missing",
            "class.lab: missing",
            "class.students: missing",
            "host: no host",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
    }

    #[test]
    fn the_lab_path_must_hold_a_lab_and_not_be_the_class_state() {
        let errs = load(&OK.replace("lab = \"lab\"", "lab = \"nowhere\"")).expect_err("refused");
        assert!(
            errs.join("\n").contains("class.lab: no lab.toml in"),
            "{errs:?}"
        );
        let errs = load(&OK.replace("lab = \"lab\"", "lab = \"lab/../.labctl/labs/ann\""))
            .expect_err("refused");
        assert!(
            errs.join("\n")
                .contains("is inside the class's own state directory"),
            "{errs:?}"
        );
        // lab.toml itself may be named.
        assert!(load(&OK.replace("lab = \"lab\"", "lab = \"lab/lab.toml\"")).is_ok());
    }

    #[test]
    fn long_lab_names_are_refused() {
        let errs = load(&OK.replace("name = \"k8s\"", &format!("name = \"{}\"", "c".repeat(38))))
            .expect_err("refused");
        assert!(
            errs.join("\n").contains("is longer than 40 characters"),
            "{errs:?}"
        );
    }

    #[test]
    fn uris() {
        assert_eq!(parse_uri("local"), Ok(HostUri::Local));
        assert_eq!(
            parse_uri("qemu:///system"),
            Ok(HostUri::Libvirt {
                uri: "qemu:///system".into(),
                remote: None
            })
        );
        let r = parse_uri("qemu+ssh://h.example/session?keyfile=/k").expect("ok");
        assert_eq!(r.remote().map(Remote::jump).as_deref(), Some("h.example"));
        let r = parse_uri("qemu+ssh://me@[fd00::2]:22/system").expect("ok");
        assert_eq!(
            r.remote().map(Remote::jump).as_deref(),
            Some("me@[fd00::2]:22")
        );
        for bad in [
            "qemu://host/system",
            "qemu+ssh:///system",
            "qemu+ssh://h/",
            "qemu+ssh://h:99999/system",
            "qemu+ssh://h x/system",
            "qemu+ssh://u@-h/system",
            "xen:///system",
            "10.0.0.2",
            "qemu+ssh://h;rm/system",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad} accepted");
        }
    }

    fn caps(v: &[(&str, u64)]) -> Vec<HostCapacity> {
        v.iter()
            .map(|(n, c)| HostCapacity {
                name: (*n).into(),
                capacity_mb: *c,
            })
            .collect()
    }

    fn studs(v: &[&str]) -> Vec<Student> {
        v.iter()
            .map(|n| Student {
                name: (*n).into(),
                host: None,
            })
            .collect()
    }

    #[test]
    fn placement_spreads_by_free_memory() {
        let plan = place(
            &caps(&[("a", 4000), ("b", 6000)]),
            1000,
            &studs(&["s1", "s2", "s3", "s4", "s5"]),
            &BTreeMap::new(),
        )
        .expect("fits");
        let on = |s: &str| plan.placements[s].host.clone();
        // b (6000) first, then b (5000 vs 4000), then a/b tie at 4000 → a (first), …
        assert_eq!(
            ["s1", "s2", "s3", "s4", "s5"].map(on),
            ["b", "b", "a", "b", "a"]
        );
        let slots: Vec<u32> = ["s1", "s2", "s3", "s4", "s5"]
            .iter()
            .map(|s| plan.placements[*s].slot)
            .collect();
        assert_eq!(slots, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn placement_is_stable_and_reports_removed_students() {
        let hosts = caps(&[("a", 4000), ("b", 4000)]);
        let first = place(&hosts, 1000, &studs(&["ann", "bob"]), &BTreeMap::new()).expect("fits");
        // Bob leaves, carol and dan arrive: ann stays where she was, bob is reported and his
        // slot stays taken until his lab is destroyed.
        let second = place(
            &hosts,
            1000,
            &studs(&["ann", "carol", "dan"]),
            &first.placements,
        )
        .expect("fits");
        assert_eq!(second.placements["ann"], first.placements["ann"]);
        assert_eq!(second.placements["bob"], first.placements["bob"]);
        assert_eq!(second.placed, ["carol", "dan"]);
        assert_eq!(second.removed, ["bob"]);
        assert_eq!(second.placements["carol"].slot, 2);
        // Running it again changes nothing.
        let third = place(
            &hosts,
            1000,
            &studs(&["ann", "carol", "dan"]),
            &second.placements,
        )
        .expect("fits");
        assert_eq!(third.placements, second.placements);
        assert!(third.placed.is_empty());
    }

    #[test]
    fn a_student_that_does_not_fit_is_named_with_the_shortfall() {
        let err = place(
            &caps(&[("a", 2500), ("b", 1800)]),
            1000,
            &studs(&["s1", "s2", "s3", "s4", "s5"]),
            &BTreeMap::new(),
        )
        .expect_err("does not fit");
        assert_eq!(
            err.to_string(),
            "s4 does not fit: the lab needs 1000 MiB, b has 800 MiB left (200 MiB short); \
             s5 does not fit: the lab needs 1000 MiB, b has 800 MiB left (200 MiB short)"
        );
    }

    #[test]
    fn pins_recorded_hosts_and_capacity_changes() {
        let mut ss = studs(&["ann", "bob"]);
        ss[1].host = Some("small".into());
        let plan = place(
            &caps(&[("big", 9000), ("small", 1000)]),
            1000,
            &ss,
            &BTreeMap::new(),
        )
        .expect("fits");
        assert_eq!(plan.placements["bob"].host, "small");
        assert_eq!(plan.placements["ann"].host, "big");
        let err = place(&caps(&[("big", 9000)]), 1000, &ss[..1], &plan.placements)
            .expect_err("host gone");
        assert!(matches!(err, PlaceError::HostGone { ref host, .. } if host == "small"));
        let err = place(
            &caps(&[("big", 9000), ("small", 500)]),
            1000,
            &ss,
            &plan.placements,
        )
        .expect_err("shrunk");
        assert_eq!(
            err.to_string(),
            "host `small` has 500 MiB but its recorded labs need 1000 MiB"
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the hosts, the need and the earlier placements: either every student
            /// is placed, no host is over capacity, earlier placements are unchanged and slots
            /// are unique; or the error names a student that really did not fit.
            #[test]
            fn placement_never_overcommits_and_keeps_what_was_placed(
                cap in proptest::collection::vec(0u64..10_000, 1..5),
                need in 1u64..3000,
                n in 0usize..12,
                keep in 0usize..6,
            ) {
                let hosts: Vec<HostCapacity> = cap.iter().enumerate()
                    .map(|(i, c)| HostCapacity { name: format!("h{i}"), capacity_mb: *c })
                    .collect();
                let students: Vec<Student> = (0..n)
                    .map(|i| Student { name: format!("s{i:02}"), host: None })
                    .collect();
                // An earlier run with the first `keep` students.
                let previous = place(&hosts, need, &students[..keep.min(n)], &BTreeMap::new())
                    .map(|p| p.placements)
                    .unwrap_or_default();
                match place(&hosts, need, &students, &previous) {
                    Ok(plan) => {
                        for s in &students {
                            prop_assert!(plan.placements.contains_key(&s.name));
                        }
                        for (k, v) in &previous {
                            prop_assert_eq!(&plan.placements[k], v);
                        }
                        for h in &hosts {
                            let load = plan.placements.values().filter(|p| p.host == h.name).count() as u64 * need;
                            prop_assert!(load <= h.capacity_mb, "{} over capacity", h.name);
                        }
                        let slots: BTreeSet<u32> = plan.placements.values().map(|p| p.slot).collect();
                        prop_assert_eq!(slots.len(), plan.placements.len());
                    }
                    Err(PlaceError::NoFit(v)) => {
                        prop_assert!(!v.is_empty());
                        for nf in v {
                            prop_assert!(nf.free_mb < need && nf.shortfall_mb == need - nf.free_mb);
                            prop_assert!(!previous.contains_key(&nf.student));
                        }
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
        }
    }
}
