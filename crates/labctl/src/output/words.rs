//! The words for what the runner reports as data (skip reasons, notices): libraries hold no
//! CLI wording, the binary says it.

use labctl_runner::events::{DepCause, SkipReason};

/// A step's skip reason, as printed after `skipped` (`skipped because X failed`,
/// `skipped: REASON`).
pub(crate) fn skip_reason(r: &SkipReason) -> String {
    match r {
        SkipReason::OnRequest => "runs only on request (`labctl provision --step`)".into(),
        SkipReason::NeedsEgress => "needs the guest's internet, and egress is off; run `labctl provision --step` once it is on".into(),
        SkipReason::Interrupted => "interrupted".into(),
        SkipReason::Internal => "internal lock poisoned".into(),
        SkipReason::NotInBundle { set, bundle, cause } => {
            super::reporter::not_in_bundle_text(set, bundle, cause)
        }
        SkipReason::Dependency { task, cause } => {
            let what = match cause {
                DepCause::Failed => "failed".to_string(),
                DepCause::NeverRun => "has never run".to_string(),
                DepCause::NotInRun { node } => {
                    format!("has not run ({node} is not part of this run)")
                }
                DepCause::NodeDown { node } => format!("did not run: {node} did not come up"),
                DepCause::NodePanicked { node } => format!("did not run: {node} failed"),
                DepCause::Skipped { reason } => format!("was skipped ({})", skip_reason(reason)),
                DepCause::NotInBundle { set, bundle } => {
                    format!("was skipped (bundle `{bundle}` does not hold package set `{set}`)")
                }
            };
            format!("because {task} {what}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_names_the_task_and_what_happened_to_it() {
        let r = SkipReason::Dependency {
            task: "m.init".into(),
            cause: DepCause::Skipped {
                reason: Box::new(SkipReason::Interrupted),
            },
        };
        assert_eq!(skip_reason(&r), "because m.init was skipped (interrupted)");
        let r = SkipReason::Dependency {
            task: "m.prep".into(),
            cause: DepCause::NotInRun { node: "m".into() },
        };
        assert_eq!(
            skip_reason(&r),
            "because m.prep has not run (m is not part of this run)"
        );
    }
}
