//! Placement: which host each student's lab goes to, as a pure function of capacities.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Student;

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
