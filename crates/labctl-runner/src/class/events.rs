//! What class commands report ([`ClassEvent`], [`ClassReporter`]) and return
//! ([`ClassSummary`]).

use super::*;

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
pub(super) struct StudentReporter {
    pub(super) student: String,
    pub(super) inner: Arc<dyn ClassReporter>,
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
