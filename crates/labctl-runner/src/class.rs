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
use crate::ops::NodeStatus;
use crate::reset::{ResetOptions, ResetSummary};
use crate::ssh_config::SshInfo;
use crate::state::LabPaths;
use crate::up::{UpOptions, UpSummary};
use crate::{RunnerError, ssh_config_text};

pub const CLASS_STATE_VERSION: u32 = 1;

mod events;
mod labs;
mod state;
mod status;
pub use events::*;
use labs::*;
pub use state::*;
pub use status::*;

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
    // One class command that changes labs at a time (status and ssh-config only read).
    let _lock = crate::state::LabLock::acquire_dir(&paths.state_dir)?;
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
    // One class command that changes labs at a time (status and ssh-config only read).
    let _lock = crate::state::LabLock::acquire_dir(&paths.state_dir)?;
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
    // One class command that changes labs at a time (status and ssh-config only read).
    let _lock = crate::state::LabLock::acquire_dir(&paths.state_dir)?;
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
        // The lock file goes too (while held; nothing waits on it: a second command is
        // refused at once), so that the class directory is left as before `class up`.
        let _ = std::fs::remove_file(paths.state_dir.join("lock"));
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

#[cfg(test)]
#[path = "class_tests.rs"]
mod tests;
