//! `class status` (one row per node, no SSH) and `class ssh-config` (one config per student).

use super::*;

/// One row of `class status`: a node of a student's lab (or the lab alone when it has no
/// nodes yet).
#[derive(Debug, Clone, Serialize)]
pub struct ClassNodeRow {
    pub host: String,
    pub student: String,
    /// The lab's name (`<class>-<student>`).
    pub lab: String,
    /// Empty when the lab has no node yet.
    pub node: String,
    pub state: ClassNodeState,
    /// `127.0.0.1:PORT` on the host.
    pub ssh: String,
    /// The jump host (`user@host`) when the host is remote.
    pub via: Option<String>,
    /// The student is no longer in class.toml.
    pub removed: bool,
    /// Why the lab's state could not be read.
    pub error: Option<String>,
}

/// A row's state (`"running"`, `"stopped"`, `"not_created"`, `"not_placed"`, `"error"` in
/// JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassNodeState {
    Running,
    Stopped,
    /// The lab is placed but has no machine yet.
    NotCreated,
    /// The student has no host yet.
    NotPlaced,
    /// The lab's state cannot be read (the row's `error` says why).
    Error,
}

impl ClassNodeState {
    /// The word `class status --json` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassNodeState::Running => "running",
            ClassNodeState::Stopped => "stopped",
            ClassNodeState::NotCreated => "not_created",
            ClassNodeState::NotPlaced => "not_placed",
            ClassNodeState::Error => "error",
        }
    }
}

impl From<crate::ops::RunState> for ClassNodeState {
    fn from(s: crate::ops::RunState) -> Self {
        match s {
            crate::ops::RunState::Running => ClassNodeState::Running,
            crate::ops::RunState::Stopped => ClassNodeState::Stopped,
            crate::ops::RunState::NotCreated => ClassNodeState::NotCreated,
        }
    }
}

/// `class status`: one row per node of every recorded lab; no SSH, no placement.
pub fn class_status(class: &Class, env: &Env) -> Result<Vec<ClassNodeRow>, ClassError> {
    class_status_with(class, &Real { env })
}

pub(crate) fn class_status_with(
    class: &Class,
    ops: &dyn LabOps,
) -> Result<Vec<ClassNodeRow>, ClassError> {
    let paths = ClassPaths::new(class);
    let st = ClassState::load(&paths, class)?;
    let mut rows = Vec::new();
    for s in &class.students {
        if !st.placements.contains_key(&s.name) {
            rows.push(ClassNodeRow {
                host: String::new(),
                student: s.name.clone(),
                lab: class.lab_name(&s.name),
                node: String::new(),
                state: ClassNodeState::NotPlaced,
                ssh: String::new(),
                via: None,
                removed: false,
                error: None,
            });
        }
    }
    for (student, host) in chosen(class, &st, &[])? {
        let lab = class.lab_name(&student);
        let removed = !class.students.iter().any(|s| s.name == student);
        let row = |node: String, state: ClassNodeState, ssh: String, error: Option<String>| {
            ClassNodeRow {
                host: host.clone(),
                student: student.clone(),
                lab: lab.clone(),
                node,
                state,
                ssh,
                via: class
                    .host(&host)
                    .and_then(|h| h.uri.remote())
                    .map(|r| crate::route::jump_host(r).proxy_jump()),
                removed,
                error,
            }
        };
        let Some(h) = class.host(&host) else {
            rows.push(row(
                String::new(),
                ClassNodeState::Error,
                String::new(),
                Some(format!("host `{host}` is no longer in class.toml")),
            ));
            continue;
        };
        let lab_paths = LabPaths::new(&paths.lab_dir(&student), &lab);
        match ops.status(h, &lab_paths) {
            Ok(nodes) if nodes.is_empty() => {
                rows.push(row(
                    String::new(),
                    ClassNodeState::NotCreated,
                    String::new(),
                    None,
                ));
            }
            Ok(nodes) => {
                for n in nodes {
                    rows.push(row(n.name, n.state.into(), n.ssh, None));
                }
            }
            Err(e) => rows.push(row(
                String::new(),
                ClassNodeState::Error,
                String::new(),
                Some(e.to_string()),
            )),
        }
    }
    let pos = |s: &str| {
        class
            .students
            .iter()
            .position(|x| x.name == s)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by(|a, b| {
        pos(&a.student)
            .cmp(&pos(&b.student))
            .then(a.student.cmp(&b.student))
    });
    Ok(rows)
}

/// One student's OpenSSH config.
#[derive(Debug, Clone)]
pub struct StudentSshConfig {
    pub student: String,
    pub host: String,
    pub text: String,
}

/// `class ssh-config`: an OpenSSH config per student whose lab exists, with `ProxyJump` (or
/// a `ProxyCommand` naming the URI's key) through the hypervisor host when it is remote (the
/// lab's ports listen on that host's 127.0.0.1 only): the lab's own ssh-config.
pub fn class_ssh_config(class: &Class, env: &Env) -> Result<Vec<StudentSshConfig>, ClassError> {
    let paths = ClassPaths::new(class);
    let st = ClassState::load(&paths, class)?;
    let mut out = Vec::new();
    for (student, host) in chosen(class, &st, &[])? {
        let lab_paths = LabPaths::new(&paths.lab_dir(&student), &class.lab_name(&student));
        let infos: Vec<SshInfo> = match crate::ssh_config::ssh_info(&lab_paths, env, None) {
            Ok(i) => i,
            Err(RunnerError::NotUp) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push(StudentSshConfig {
            text: ssh_config_text(&infos)?,
            student,
            host,
        });
    }
    Ok(out)
}

/// Where `class ssh-config --out DIR` writes a student's file.
pub fn ssh_config_file(dir: &Path, student: &str) -> PathBuf {
    dir.join(format!("{student}.ssh-config"))
}
