//! `class.toml`: one lab for many students, placed across hypervisor hosts.
//!
//! Parse (structure and types) → defaults → validate (names, hosts, students), every problem
//! reported at once with its location, like lab.toml. [`place`] is the placement: a pure
//! function from host capacities, the lab's memory and the previous placements.

mod load;
mod place;
mod uri;

use std::path::PathBuf;

use serde::Serialize;

pub use load::{load_class, load_class_str, student_name_ok};
pub use place::{HostCapacity, NoFit, PlaceError, Placement, PlacementPlan, place};
pub use uri::{HostUri, Remote, UriError, parse_uri};

/// Most students a count may ask for (`students = N`).
pub const MAX_STUDENTS: i64 = 999;
/// Default labs brought up at once on one host.
pub const DEFAULT_MAX_PARALLEL: usize = 2;

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

/// A student.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Student {
    pub name: String,
    /// `[student.NAME] host = "…"`: placed on this host (when first placed).
    pub host: Option<String>,
}

#[cfg(test)]
mod tests;
