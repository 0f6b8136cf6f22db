//! The words for what the runner reports as data (skip reasons, notices): libraries hold no
//! CLI wording, the binary says it.

use std::time::Duration;

use labctl_runner::events::{DepCause, Notice, SkipReason, Staleness};
use labctl_spec::format_duration;

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// A notice, as printed after the node's prefix.
pub(crate) fn notice(n: &Notice) -> String {
    match n {
        Notice::EgressNotEnforced { provider } => format!(
            "egress = false is not enforced by {provider}: its NAT cannot cut guests off the internet (steps that need it are still skipped)"
        ),
        Notice::PortInUse { port, new } => {
            format!("port {port} is in use; using {new} instead (see `labctl ssh-config`)")
        }
        Notice::PortTaken { port, new } => {
            format!("port {port} was taken; using {new} instead (see `labctl ssh-config`)")
        }
        Notice::ForgetNotSaved { step, error } => {
            format!("{step} is no longer done, but the state could not be saved: {error}")
        }
        Notice::StaleValue {
            value,
            why,
            consumer,
            step,
        } => {
            let what = match why {
                Staleness::Missing => format!("`{value}` is not stored"),
                Staleness::Expired { age, ttl } => format!(
                    "`{value}` is {} old (ttl {})",
                    format_duration(Duration::from_secs(*age)),
                    format_duration(Duration::from_secs(*ttl)),
                ),
            };
            format!("{what} and {consumer} needs it: {step} runs again first")
        }
        Notice::SnapshotDone { nodes, ms } => format!("{nodes} node(s) in {}", secs(*ms)),
        Notice::ClockSet => "clock set to the host's".into(),
        Notice::GoldenSaved { name, ms } => format!(
            "saved golden snapshot `{name}` of every node in {} (`labctl reset` returns to it)",
            secs(*ms)
        ),
        Notice::CheckPassed => "check passed".into(),
        Notice::RestoringGolden { name } => format!("restoring golden snapshot `{name}`"),
        Notice::Forgotten => "forgotten by the rest of the lab".into(),
        Notice::Rebuilding => "removing its disk; rebuilding from the box".into(),
        Notice::WasNotRunning => "was not running".into(),
        Notice::PoweredOff { ms } => format!("powered off in {}", secs(*ms)),
        Notice::ForcedOff { why } => format!("forced off: {why}"),
        Notice::RegistryNotSaved { path, error } => format!(
            "the registry of labs {} could not be updated ({error}); it may still name a lab that is gone",
            path.display()
        ),
    }
}

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
    fn a_stale_value_names_its_age_its_consumer_and_its_publisher() {
        let n = Notice::StaleValue {
            value: "join_command".into(),
            why: Staleness::Expired {
                age: 25 * 3600,
                ttl: 23 * 3600,
            },
            consumer: "w4-k8s.work_nodes".into(),
            step: "join_command".into(),
        };
        assert_eq!(
            notice(&n),
            "`join_command` is 1d1h old (ttl 23h) and w4-k8s.work_nodes needs it: join_command runs again first"
        );
    }

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
