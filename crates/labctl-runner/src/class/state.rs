//! The class's recorded placements (`.labctl/class-state.json`) and its paths.

use super::*;

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
