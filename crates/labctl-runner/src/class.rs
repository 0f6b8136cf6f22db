//! A class: one lab per student, placed on hosts (`labctl_spec::class::place`), generated
//! under `<class dir>/.labctl/labs/<student>/` and driven with the runner's own `up`, `reset`,
//! `status` and `destroy`, in parallel across hosts and at most `max_parallel` labs at once
//! per host. A lab that fails does not stop the others. No printing: [`ClassEvent`]s go to a
//! [`ClassReporter`]; results are typed.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use labctl_spec::class::{
    Class, Host, HostCapacity, HostUri, PlaceError, Placement, PlacementPlan, place,
};
use labctl_spec::{Lab, Overrides, SpecError};
use serde::{Deserialize, Serialize};

use crate::events::{Event, Reporter, ms};
use crate::guest::Ssh;
use crate::machines::Env;
use crate::ops::{NodeStatus, SshInfo};
use crate::reset::{ResetOptions, ResetSummary};
use crate::state::LabPaths;
use crate::up::{UpOptions, UpSummary};
use crate::{RunnerError, ssh_config_text};

pub const CLASS_STATE_VERSION: u32 = 1;

/// Class errors (the binary words hints and picks exit codes).
#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    /// The class's lab, or a student's generated lab, is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Place(#[from] PlaceError),
    #[error("cannot tell how much memory host `{host}` has: {reason}")]
    Capacity { host: String, reason: String },
    #[error(
        "{student}'s lab would use host ports up to {max} (its slot {slot} × {stride} ports above the lab's), above 65535"
    )]
    Ports {
        student: String,
        slot: u32,
        stride: u32,
        max: u32,
    },
    #[error("no student named `{name}` in the class")]
    UnknownStudent { name: String, known: Vec<String> },
    #[error("class state {} is unreadable: {message}", path.display())]
    CorruptState { path: PathBuf, message: String },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

/// `<class dir>/.labctl/class-state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassState {
    pub version: u32,
    pub class: String,
    /// Capacities measured (hosts without `memory_mb`), kept so that labs already running
    /// there do not shrink the host on the next run.
    #[serde(default)]
    pub measured_mb: BTreeMap<String, u64>,
    /// Every student whose lab exists or is being made, with its host and slot.
    #[serde(default)]
    pub placements: BTreeMap<String, Placement>,
}

/// Where a class keeps its state.
#[derive(Debug, Clone)]
pub struct ClassPaths {
    /// `<class dir>/.labctl`
    pub state_dir: PathBuf,
}

impl ClassPaths {
    pub fn new(class: &Class) -> ClassPaths {
        ClassPaths {
            state_dir: class.dir.join(".labctl"),
        }
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("class-state.json")
    }
    /// The generated lab directory of a student.
    pub fn lab_dir(&self, student: &str) -> PathBuf {
        self.state_dir.join("labs").join(student)
    }
}

impl ClassState {
    pub fn load(paths: &ClassPaths, class: &Class) -> Result<ClassState, ClassError> {
        let path = paths.state_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let st: ClassState =
                    serde_json::from_str(&text).map_err(|e| ClassError::CorruptState {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                if st.version != CLASS_STATE_VERSION {
                    return Err(ClassError::CorruptState {
                        path,
                        message: format!("unknown version {}", st.version),
                    });
                }
                if let Some(bad) = st
                    .placements
                    .keys()
                    .find(|s| !labctl_spec::class::student_name_ok(s))
                {
                    return Err(ClassError::CorruptState {
                        path,
                        message: format!("`{}` is not a student name", bad.escape_debug()),
                    });
                }
                Ok(st)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClassState {
                version: CLASS_STATE_VERSION,
                class: class.name.clone(),
                measured_mb: BTreeMap::new(),
                placements: BTreeMap::new(),
            }),
            Err(source) => Err(ClassError::Io {
                what: "read",
                path,
                source,
            }),
        }
    }

    pub fn save(&self, paths: &ClassPaths) -> Result<(), ClassError> {
        crate::state::ensure_private_dir(&paths.state_dir)?;
        let path = paths.state_file();
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        labctl_driver::boxes::write_atomic(&path, text.as_bytes()).map_err(|source| {
            ClassError::Io {
                what: "write",
                path,
                source,
            }
        })
    }
}

/// What a class run tells its reporter.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "class_event")]
pub enum ClassEvent {
    /// A student got a host in this run.
    Placed {
        student: String,
        host: String,
        slot: u32,
    },
    /// A recorded student is no longer in class.toml; the lab stays until `class destroy`.
    Removed {
        student: String,
        host: String,
    },
    LabStarted {
        student: String,
        host: String,
    },
    /// An event of a student's lab, as `up`/`reset`/`destroy` report it.
    Lab {
        student: String,
        event: Event,
    },
    LabFinished {
        student: String,
        host: String,
        #[serde(flatten)]
        outcome: LabOutcome,
    },
}

/// How one student's lab ended in a class command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum LabOutcome {
    Ok {
        wall_ms: u64,
    },
    /// The lab ran but a node or step failed (names in `failed`).
    Failed {
        wall_ms: u64,
        failed: Vec<String>,
    },
    /// The lab could not be worked on at all.
    Error {
        message: String,
    },
    Interrupted,
}

/// Where class events go.
pub trait ClassReporter: Send + Sync {
    fn event(&self, e: ClassEvent);
}

/// A class reporter that keeps events (tests, summaries).
#[derive(Debug, Default)]
pub struct ClassCollect(pub Mutex<Vec<ClassEvent>>);

impl ClassReporter for ClassCollect {
    fn event(&self, e: ClassEvent) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e);
        }
    }
}

/// Hands a lab's runner events on as [`ClassEvent::Lab`].
struct StudentReporter {
    student: String,
    inner: Arc<dyn ClassReporter>,
}

impl Reporter for StudentReporter {
    fn event(&self, e: Event) {
        self.inner.event(ClassEvent::Lab {
            student: self.student.clone(),
            event: e,
        });
    }
}

/// One lab's result.
#[derive(Debug, Clone, Serialize)]
pub struct LabResult {
    pub student: String,
    pub host: String,
    #[serde(flatten)]
    pub outcome: LabOutcome,
}

/// The result of a class command.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassSummary {
    pub labs: Vec<LabResult>,
    /// Students placed in this run.
    pub placed: Vec<String>,
    /// Recorded students no longer in class.toml.
    pub removed: Vec<String>,
    pub wall_ms: u64,
}

impl ClassSummary {
    /// The students whose lab did not end well.
    pub fn failed(&self) -> Vec<&LabResult> {
        self.labs
            .iter()
            .filter(|l| !matches!(l.outcome, LabOutcome::Ok { .. }))
            .collect()
    }
}

/// Options of class commands.
#[derive(Debug, Clone, Default)]
pub struct ClassOptions {
    /// Applied to every student's lab (`LABCTL_NO_EGRESS`, the user's defaults).
    pub overrides: Overrides,
    /// `--accel` for every lab.
    pub accel: Option<labctl_spec::Accel>,
    /// `up --jobs` inside each lab.
    pub jobs: Option<usize>,
}

/// The per-lab operations, production ([`Real`]) or fakes in tests.
pub(crate) trait LabOps: Sync {
    fn up(
        &self,
        host: &Host,
        lab: &Lab,
        opts: &UpOptions,
        reporter: Arc<dyn Reporter>,
        cancel: Arc<AtomicBool>,
    ) -> Result<UpSummary, RunnerError>;
    fn reset(
        &self,
        host: &Host,
        lab: &Lab,
        reporter: Arc<dyn Reporter>,
        cancel: Arc<AtomicBool>,
    ) -> Result<ResetSummary, RunnerError>;
    fn status(&self, host: &Host, paths: &LabPaths) -> Result<Vec<NodeStatus>, RunnerError>;
    fn destroy(
        &self,
        host: &Host,
        paths: &LabPaths,
        reporter: Arc<dyn Reporter>,
    ) -> Result<(), RunnerError>;
    /// The memory a host offers labs (MiB), when class.toml does not say.
    fn measure(&self, host: &Host) -> Result<u64, String>;
    /// Once before the labs start: what they share on this machine (the box, added to the
    /// store from the locally built file if needed), so that parallel labs do not race to
    /// add it.
    fn prepare(&self, lab: &Lab) -> Result<(), RunnerError>;
}

/// The runner's real `up`/`reset`/`status`/`destroy` with the production driver and SSH.
pub(crate) struct Real<'a> {
    pub(crate) env: &'a Env,
}

impl Real<'_> {
    fn open(
        &self,
    ) -> impl Fn(
        labctl_spec::Provider,
        Option<&str>,
    ) -> Result<Arc<dyn labctl_driver::Driver>, RunnerError>
    + '_ {
        crate::machines::opener(self.env)
    }
}

impl LabOps for Real<'_> {
    fn up(
        &self,
        _: &Host,
        lab: &Lab,
        opts: &UpOptions,
        reporter: Arc<dyn Reporter>,
        cancel: Arc<AtomicBool>,
    ) -> Result<UpSummary, RunnerError> {
        crate::up::up_with(lab, self.env, opts, reporter, cancel, &self.open(), &Ssh)
    }
    fn reset(
        &self,
        _: &Host,
        lab: &Lab,
        reporter: Arc<dyn Reporter>,
        cancel: Arc<AtomicBool>,
    ) -> Result<ResetSummary, RunnerError> {
        crate::reset::reset_with(
            lab,
            self.env,
            &ResetOptions {
                all: true,
                ..ResetOptions::default()
            },
            reporter,
            cancel,
            &self.open(),
            &Ssh,
        )
    }
    fn status(&self, _: &Host, paths: &LabPaths) -> Result<Vec<NodeStatus>, RunnerError> {
        crate::ops::status_with(paths, self.env, &self.open())
    }
    fn destroy(
        &self,
        _: &Host,
        paths: &LabPaths,
        reporter: Arc<dyn Reporter>,
    ) -> Result<(), RunnerError> {
        crate::ops::destroy_with(paths, self.env, &[], reporter, &self.open())
    }
    fn prepare(&self, lab: &Lab) -> Result<(), RunnerError> {
        crate::machines::resolve_box(lab, self.env).map(|_| ())
    }
    fn measure(&self, host: &Host) -> Result<u64, String> {
        match &host.uri {
            HostUri::Local => std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|t| mem_available_mb(&t))
                .ok_or_else(|| "/proc/meminfo has no MemAvailable".to_string()),
            HostUri::Libvirt { uri, .. } => {
                crate::machines::libvirt_host_memory_mb(self.env, uri).map_err(|e| e.to_string())
            }
        }
    }
}

/// `MemAvailable` of /proc/meminfo, in MiB.
pub(crate) fn mem_available_mb(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

/// The class's lab as every student gets it (class `workers` applied), and its memory.
fn base_lab(class: &Class, opts: &ClassOptions) -> Result<(Lab, u64), ClassError> {
    let mut ov = opts.overrides;
    ov.workers = class.workers.or(ov.workers);
    let lab = labctl_spec::load(&class.lab_dir.join("lab.toml"), ov)?;
    let need = lab.nodes.iter().map(|n| u64::from(n.memory_mb)).sum();
    Ok((lab, need))
}

/// The memory of every host: class.toml's, else recorded, else measured (and recorded).
fn capacities(
    class: &Class,
    st: &mut ClassState,
    ops: &dyn LabOps,
) -> Result<Vec<HostCapacity>, ClassError> {
    let mut out = Vec::new();
    for h in &class.hosts {
        let cap = match (h.memory_mb, st.measured_mb.get(&h.name)) {
            (Some(m), _) => m,
            (None, Some(m)) => *m,
            (None, None) => {
                let m = ops.measure(h).map_err(|reason| ClassError::Capacity {
                    host: h.name.clone(),
                    reason,
                })?;
                st.measured_mb.insert(h.name.clone(), m);
                m
            }
        };
        out.push(HostCapacity {
            name: h.name.clone(),
            capacity_mb: cap,
        });
    }
    Ok(out)
}

/// Host ports of a lab: every node's SSH port and forwarded host ports.
fn lab_ports(lab: &Lab) -> Vec<u16> {
    lab.nodes
        .iter()
        .flat_map(|n| std::iter::once(n.ssh_port).chain(n.forwards.iter().map(|f| f.host)))
        .collect()
}

/// The text of a student's lab.toml: the class's lab with its name, provider, paths made
/// absolute, and host ports moved up by `slot × stride` (stride: the span of the lab's
/// ports), so that two students' labs never ask for the same port.
pub(crate) fn student_lab_toml(
    class: &Class,
    base: &Lab,
    student: &str,
    placement: &Placement,
) -> Result<String, ClassError> {
    let text = std::fs::read_to_string(&base.file).map_err(|source| ClassError::Io {
        what: "read",
        path: base.file.clone(),
        source,
    })?;
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| ClassError::Io {
        what: "parse",
        path: base.file.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let ports = lab_ports(base);
    let lo = u32::from(ports.iter().copied().min().unwrap_or(0));
    let hi = u32::from(ports.iter().copied().max().unwrap_or(0));
    let stride = hi - lo + 1;
    let offset = placement.slot.saturating_mul(stride);
    if hi.saturating_add(offset) > 65535 {
        return Err(ClassError::Ports {
            student: student.to_string(),
            slot: placement.slot,
            stride,
            max: hi.saturating_add(offset),
        });
    }
    let shift = |p: u16| i64::from(u32::from(p) + offset);
    let abs = |p: &str| {
        let joined = base.dir.join(p);
        labctl_driver::files::canonicalize(&joined)
            .unwrap_or(joined)
            .to_string_lossy()
            .into_owned()
    };
    let lab = doc
        .entry("lab")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(lab) = lab {
        lab.insert("name".into(), class.lab_name(student).into());
        if class.workers.is_some() {
            lab.insert(
                "workers".into(),
                toml::Value::Integer(i64::from(base.workers)),
            );
        }
        lab.insert(
            "templates".into(),
            base.templates_dir.to_string_lossy().into_owned().into(),
        );
        let mut trusted = vec![toml::Value::from(abs("."))];
        if let Some(toml::Value::Array(old)) = lab.get("trusted_dirs") {
            trusted.extend(old.iter().filter_map(|v| v.as_str()).map(|s| abs(s).into()));
        }
        lab.insert("trusted_dirs".into(), toml::Value::Array(trusted));
        if let Some(host) = class.host(&placement.host)
            && let HostUri::Libvirt { uri, .. } = &host.uri
        {
            lab.insert("provider".into(), "libvirt".into());
            lab.insert("uri".into(), uri.clone().into());
        }
    }
    if let Some(toml::Value::Table(roles)) = doc.get_mut("role") {
        for (name, role) in roles.iter_mut() {
            let (Some(first), toml::Value::Table(role)) =
                (base.nodes.iter().find(|n| n.role == *name), role)
            else {
                continue;
            };
            role.insert(
                "ssh_port".into(),
                toml::Value::Integer(shift(first.ssh_port)),
            );
            if let Some(toml::Value::Array(fwds)) = role.get_mut("forward") {
                for (f, node_f) in fwds.iter_mut().zip(&first.forwards) {
                    if let toml::Value::Table(f) = f {
                        f.insert("host".into(), toml::Value::Integer(shift(node_f.host)));
                    }
                }
            }
            if let Some(toml::Value::Array(steps)) = role.get_mut("step") {
                for s in steps {
                    if let toml::Value::Table(s) = s
                        && let Some(toml::Value::String(script)) = s.get("script").cloned()
                    {
                        s.insert("script".into(), abs(&script).into());
                    }
                }
            }
        }
    }
    Ok(format!(
        "# Generated by `labctl class` for student `{student}` of class `{}` from {}.\n# Edit that lab, not this file: it is rewritten by every class command.\n{}",
        class.name,
        base.file.display(),
        toml::to_string(&doc).unwrap_or_default()
    ))
}

/// A student's lab, written and loaded.
fn student_lab(
    class: &Class,
    paths: &ClassPaths,
    base: &Lab,
    student: &str,
    placement: &Placement,
    opts: &ClassOptions,
) -> Result<Lab, ClassError> {
    let dir = paths.lab_dir(student);
    crate::state::ensure_private_dir(&dir)?;
    let text = student_lab_toml(class, base, student, placement)?;
    let file = dir.join("lab.toml");
    if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
        labctl_driver::boxes::write_atomic(&file, text.as_bytes()).map_err(|source| {
            ClassError::Io {
                what: "write",
                path: file.clone(),
                source,
            }
        })?;
    }
    let mut ov = opts.overrides;
    ov.workers = None;
    let mut lab = labctl_spec::load(&file, ov)?;
    if let Some(a) = opts.accel {
        lab.accel = a;
    }
    Ok(lab)
}

/// Place new students, record the placements, and report the change.
fn plan(
    class: &Class,
    paths: &ClassPaths,
    need_mb: u64,
    ops: &dyn LabOps,
    reporter: &dyn ClassReporter,
) -> Result<(ClassState, PlacementPlan), ClassError> {
    let mut st = ClassState::load(paths, class)?;
    let caps = capacities(class, &mut st, ops)?;
    let plan = place(&caps, need_mb, &class.students, &st.placements)?;
    st.placements = plan.placements.clone();
    st.class = class.name.clone();
    st.save(paths)?;
    for s in &plan.placed {
        let p = &plan.placements[s];
        reporter.event(ClassEvent::Placed {
            student: s.clone(),
            host: p.host.clone(),
            slot: p.slot,
        });
    }
    for s in &plan.removed {
        reporter.event(ClassEvent::Removed {
            student: s.clone(),
            host: plan.placements[s].host.clone(),
        });
    }
    Ok((st, plan))
}

/// Run `work` for every (student, host) job, in parallel across hosts and at most the host's
/// `max_parallel` at once on each; a job that fails or panics does not stop the others.
fn per_host<F>(
    class: &Class,
    jobs: &[(String, String)],
    cancel: &AtomicBool,
    reporter: &Arc<dyn ClassReporter>,
    work: F,
) -> Vec<LabResult>
where
    F: Fn(&Host, &str) -> LabOutcome + Sync,
{
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for host in &class.hosts {
            let queue: VecDeque<&str> = jobs
                .iter()
                .filter(|(_, h)| *h == host.name)
                .map(|(st, _)| st.as_str())
                .collect();
            if queue.is_empty() {
                continue;
            }
            let workers = host.max_parallel.min(queue.len());
            let queue = Arc::new(Mutex::new(queue));
            for _ in 0..workers {
                let queue = queue.clone();
                let (results, work, reporter) = (&results, &work, reporter);
                s.spawn(move || {
                    loop {
                        let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                        let Some(student) = next else { break };
                        let outcome = if cancel.load(Ordering::Relaxed) {
                            LabOutcome::Interrupted
                        } else {
                            reporter.event(ClassEvent::LabStarted {
                                student: student.to_string(),
                                host: host.name.clone(),
                            });
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                work(host, student)
                            }))
                            .unwrap_or_else(|_| LabOutcome::Error {
                                message: "internal error: the lab's thread panicked".into(),
                            })
                        };
                        reporter.event(ClassEvent::LabFinished {
                            student: student.to_string(),
                            host: host.name.clone(),
                            outcome: outcome.clone(),
                        });
                        if let Ok(mut r) = results.lock() {
                            r.push(LabResult {
                                student: student.to_string(),
                                host: host.name.clone(),
                                outcome,
                            });
                        }
                    }
                });
            }
        }
    });
    let mut out = results.into_inner().unwrap_or_default();
    // Class order.
    let pos = |s: &str| jobs.iter().position(|(j, _)| j == s).unwrap_or(usize::MAX);
    out.sort_by_key(|r| pos(&r.student));
    out
}

fn up_outcome(r: Result<UpSummary, RunnerError>) -> LabOutcome {
    match r {
        Ok(s) if s.interrupted => LabOutcome::Interrupted,
        Ok(s) if s.failed() => LabOutcome::Failed {
            wall_ms: s.wall_ms,
            failed: s
                .nodes
                .iter()
                .flat_map(|n| {
                    let node = n.error.as_ref().map(|_| n.name.clone());
                    node.into_iter().chain(
                        n.steps
                            .iter()
                            .filter(|st| {
                                matches!(st.outcome, crate::events::StepOutcome::Failed { .. })
                            })
                            .map(|st| format!("{}.{}", n.name, st.name)),
                    )
                })
                .collect(),
        },
        Ok(s) => LabOutcome::Ok { wall_ms: s.wall_ms },
        Err(RunnerError::Interrupted) => LabOutcome::Interrupted,
        Err(e) => LabOutcome::Error {
            message: e.to_string(),
        },
    }
}

fn error_outcome(e: &ClassError) -> LabOutcome {
    let message = match e {
        ClassError::Spec(SpecError::Invalid { diagnostics, .. }) => diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    LabOutcome::Error { message }
}

/// `class up`: place new students, write every student's lab, bring them all up.
pub fn class_up(
    class: &Class,
    env: &Env,
    opts: &ClassOptions,
    reporter: Arc<dyn ClassReporter>,
    cancel: Arc<AtomicBool>,
) -> Result<ClassSummary, ClassError> {
    class_up_with(class, opts, reporter, cancel, &Real { env })
}

pub(crate) fn class_up_with(
    class: &Class,
    opts: &ClassOptions,
    reporter: Arc<dyn ClassReporter>,
    cancel: Arc<AtomicBool>,
    ops: &dyn LabOps,
) -> Result<ClassSummary, ClassError> {
    let started = Instant::now();
    let paths = ClassPaths::new(class);
    let (base, need) = base_lab(class, opts)?;
    let (_, plan) = plan(class, &paths, need, ops, &*reporter)?;
    ops.prepare(&base)?;
    let jobs: Vec<(String, String)> = class
        .students
        .iter()
        .map(|s| (s.name.clone(), plan.placements[&s.name].host.clone()))
        .collect();
    let up_opts = UpOptions {
        jobs: opts.jobs,
        ..UpOptions::default()
    };
    let labs = per_host(class, &jobs, &cancel, &reporter, |host, student| {
        let lab = match student_lab(
            class,
            &paths,
            &base,
            student,
            &plan.placements[student],
            opts,
        ) {
            Ok(l) => l,
            Err(e) => return error_outcome(&e),
        };
        let r: Arc<dyn Reporter> = Arc::new(StudentReporter {
            student: student.to_string(),
            inner: reporter.clone(),
        });
        up_outcome(ops.up(host, &lab, &up_opts, r, cancel.clone()))
    });
    Ok(ClassSummary {
        labs,
        placed: plan.placed,
        removed: plan.removed,
        wall_ms: ms(started.elapsed()),
    })
}

/// The students a command works on: `names`, or every placed student of the class.
fn chosen(
    class: &Class,
    st: &ClassState,
    names: &[String],
) -> Result<Vec<(String, String)>, ClassError> {
    if let Some(bad) = names.iter().find(|n| !st.placements.contains_key(*n)) {
        return Err(ClassError::UnknownStudent {
            name: bad.clone(),
            known: st.placements.keys().cloned().collect(),
        });
    }
    let order = class
        .students
        .iter()
        .map(|s| s.name.clone())
        .chain(st.placements.keys().cloned());
    let mut out: Vec<(String, String)> = Vec::new();
    for s in order {
        if out.iter().any(|(o, _)| *o == s) {
            continue;
        }
        if let Some(p) = st.placements.get(&s)
            && (names.is_empty() || names.contains(&s))
        {
            out.push((s, p.host.clone()));
        }
    }
    Ok(out)
}

/// `class reset [STUDENT…]`: every chosen student's lab back to its golden snapshot.
pub fn class_reset(
    class: &Class,
    env: &Env,
    students: &[String],
    opts: &ClassOptions,
    reporter: Arc<dyn ClassReporter>,
    cancel: Arc<AtomicBool>,
) -> Result<ClassSummary, ClassError> {
    class_reset_with(class, students, opts, reporter, cancel, &Real { env })
}

pub(crate) fn class_reset_with(
    class: &Class,
    students: &[String],
    opts: &ClassOptions,
    reporter: Arc<dyn ClassReporter>,
    cancel: Arc<AtomicBool>,
    ops: &dyn LabOps,
) -> Result<ClassSummary, ClassError> {
    let started = Instant::now();
    let paths = ClassPaths::new(class);
    let st = ClassState::load(&paths, class)?;
    let jobs = chosen(class, &st, students)?;
    let (base, _) = base_lab(class, opts)?;
    let labs = per_host(class, &jobs, &cancel, &reporter, |host, student| {
        let t = Instant::now();
        let lab = match student_lab(class, &paths, &base, student, &st.placements[student], opts) {
            Ok(l) => l,
            Err(e) => return error_outcome(&e),
        };
        let r: Arc<dyn Reporter> = Arc::new(StudentReporter {
            student: student.to_string(),
            inner: reporter.clone(),
        });
        match ops.reset(host, &lab, r, cancel.clone()) {
            Ok(_) => LabOutcome::Ok {
                wall_ms: ms(t.elapsed()),
            },
            Err(RunnerError::Interrupted) => LabOutcome::Interrupted,
            Err(e) => LabOutcome::Error {
                message: e.to_string(),
            },
        }
    });
    Ok(ClassSummary {
        labs,
        wall_ms: ms(started.elapsed()),
        ..ClassSummary::default()
    })
}

/// `class destroy`: destroy every recorded lab; placements of the destroyed labs are
/// dropped (all of them: the class state is removed).
pub fn class_destroy(
    class: &Class,
    env: &Env,
    reporter: Arc<dyn ClassReporter>,
) -> Result<ClassSummary, ClassError> {
    class_destroy_with(class, reporter, &Real { env })
}

pub(crate) fn class_destroy_with(
    class: &Class,
    reporter: Arc<dyn ClassReporter>,
    ops: &dyn LabOps,
) -> Result<ClassSummary, ClassError> {
    let started = Instant::now();
    let paths = ClassPaths::new(class);
    let mut st = ClassState::load(&paths, class)?;
    let jobs = chosen(class, &st, &[])?;
    // Labs on hosts no longer in class.toml cannot be reached: they are reported, kept.
    let (reachable, gone): (Vec<_>, Vec<_>) =
        jobs.into_iter().partition(|(_, h)| class.host(h).is_some());
    let never = AtomicBool::new(false);
    let mut labs = per_host(class, &reachable, &never, &reporter, |host, student| {
        let t = Instant::now();
        let dir = paths.lab_dir(student);
        let lab_paths = LabPaths::new(&dir, &class.lab_name(student));
        let r: Arc<dyn Reporter> = Arc::new(StudentReporter {
            student: student.to_string(),
            inner: reporter.clone(),
        });
        match ops.destroy(host, &lab_paths, r) {
            Ok(()) => match std::fs::remove_dir_all(&dir) {
                Ok(()) => LabOutcome::Ok {
                    wall_ms: ms(t.elapsed()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => LabOutcome::Ok {
                    wall_ms: ms(t.elapsed()),
                },
                Err(e) => LabOutcome::Error {
                    message: format!("cannot remove {}: {e}", dir.display()),
                },
            },
            Err(e) => LabOutcome::Error {
                message: e.to_string(),
            },
        }
    });
    for (student, host) in gone {
        labs.push(LabResult {
            student,
            host: host.clone(),
            outcome: LabOutcome::Error {
                message: format!("host `{host}` is no longer in class.toml"),
            },
        });
    }
    for l in &labs {
        if matches!(l.outcome, LabOutcome::Ok { .. }) {
            st.placements.remove(&l.student);
        }
    }
    if st.placements.is_empty() {
        // Nothing left: the state goes, with the measured capacities (measured again next time).
        let _ = std::fs::remove_dir(paths.state_dir.join("labs"));
        match std::fs::remove_file(paths.state_file()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ClassError::Io {
                    what: "remove",
                    path: paths.state_file(),
                    source,
                });
            }
        }
        let _ = std::fs::remove_dir(&paths.state_dir);
    } else {
        st.save(&paths)?;
    }
    Ok(ClassSummary {
        labs,
        wall_ms: ms(started.elapsed()),
        ..ClassSummary::default()
    })
}

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
    /// running, stopped, not_created, not_placed, error
    pub state: String,
    /// `127.0.0.1:PORT` on the host.
    pub ssh: String,
    /// The jump host (`user@host`) when the host is remote.
    pub via: Option<String>,
    /// The student is no longer in class.toml.
    pub removed: bool,
    /// Why the lab's state could not be read.
    pub error: Option<String>,
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
                state: "not_placed".into(),
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
        let row = |node: String, state: String, ssh: String, error: Option<String>| ClassNodeRow {
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
        };
        let Some(h) = class.host(&host) else {
            rows.push(row(
                String::new(),
                "error".into(),
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
                    "not_created".into(),
                    String::new(),
                    None,
                ));
            }
            Ok(nodes) => {
                for n in nodes {
                    rows.push(row(n.name, n.state.as_str().into(), n.ssh, None));
                }
            }
            Err(e) => rows.push(row(
                String::new(),
                "error".into(),
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
        let infos: Vec<SshInfo> = match crate::ops::ssh_info(&lab_paths, env, None) {
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

#[cfg(test)]
#[path = "class_tests.rs"]
mod tests;
