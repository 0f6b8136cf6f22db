//! The end-of-run summary and the words shared with the live lines (durations, skips).

use labctl_runner::UpSummary;
use labctl_runner::events::{DepCause, SkipReason, StepOutcome};

use crate::output::Styles;

pub(super) fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// `skipped because X failed`, or `skipped: REASON` (like `failed: REASON`).
pub(super) fn skipped_text(s: Styles, reason: &SkipReason) -> String {
    let words = crate::output::words::skip_reason(reason);
    if reason.is_dependency() {
        format!("{} {words}", s.warn("skipped"))
    } else {
        format!("{}: {words}", s.warn("skipped"))
    }
}

/// A step skipped because the attached bundle lacks its package set, in words.
pub(crate) fn not_in_bundle_text(
    set: &str,
    bundle: &str,
    cause: &labctl_runner::bundle::NotCovered,
) -> String {
    use labctl_runner::bundle::NotCovered;
    match cause {
        NotCovered::UnknownRelease { box_name } => format!(
            "needs the guest's internet, and egress is off; bundle `{bundle}` cannot serve package set `{set}`: labctl does not know the OS release of box `{box_name}`"
        ),
        NotCovered::Missing { os, missing } => {
            let what: Vec<String> = missing
                .iter()
                .take(4)
                .map(|m| format!("{} ({})", m.name, m.reason))
                .collect();
            let more = missing.len().saturating_sub(4);
            format!(
                "needs the guest's internet, and egress is off; bundle `{bundle}` lacks package set `{set}` for {os}: {}{}",
                what.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        }
    }
}

/// The outcome as the reporter shows it: `NotInBundle` is a skip with its own reason.
pub(super) fn worded(o: &StepOutcome) -> std::borrow::Cow<'_, StepOutcome> {
    match o {
        StepOutcome::NotInBundle { set, bundle, cause } => {
            std::borrow::Cow::Owned(StepOutcome::Skipped {
                reason: SkipReason::NotInBundle {
                    set: set.clone(),
                    bundle: bundle.clone(),
                    cause: cause.clone(),
                },
            })
        }
        other => std::borrow::Cow::Borrowed(other),
    }
}

/// Skip reasons given to more than one step (other than `because X failed`, which names its
/// own cause), in order of first appearance: the summary prints each once, as a footnote.
fn repeated_reasons(sum: &UpSummary) -> Vec<(SkipReason, usize)> {
    let mut seen: Vec<(SkipReason, usize)> = Vec::new();
    for n in &sum.nodes {
        for st in &n.steps {
            if let StepOutcome::Skipped { reason } = worded(&st.outcome).as_ref()
                && !reason.is_dependency()
            {
                match seen.iter_mut().find(|(r, _)| r == reason) {
                    Some((_, c)) => *c += 1,
                    None => seen.push((reason.clone(), 1)),
                }
            }
        }
    }
    seen.retain(|(_, c)| *c > 1);
    seen
}

/// The end-of-run summary: one block per node with step durations, failures with their tail.
/// A skip reason shared by several steps is printed once, below the nodes, as `[N]`.
pub(crate) fn summary_lines(sum: &UpSummary, s: Styles) -> Vec<String> {
    let mut out = Vec::new();
    let notes = repeated_reasons(sum);
    let name_w = sum.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
    for n in &sum.nodes {
        let ready = n
            .ready_ms
            .map(|m| format!("ready in {}", secs(m)))
            .unwrap_or_default();
        let head = match &n.error {
            Some(e) => format!("{:<name_w$}  {}: {e}", n.name, s.error("failed")),
            None => format!("{:<name_w$}  {ready}", n.name),
        };
        out.push(head);
        for st in &n.steps {
            let (step, outcome, ms) = (&st.name, worded(&st.outcome), &st.duration_ms);
            let line = match outcome.as_ref() {
                StepOutcome::Done => format!(
                    "  {:<name_w$}  {step:<16} {} {}",
                    "",
                    s.ok("done"),
                    secs(*ms)
                ),
                StepOutcome::UpToDate => format!("  {:<name_w$}  {step:<16} up to date", ""),
                StepOutcome::Skipped { reason } => {
                    match notes.iter().position(|(r, _)| r == reason) {
                        Some(k) => format!(
                            "  {:<name_w$}  {step:<16} {} [{}]",
                            "",
                            s.warn("skipped"),
                            k + 1
                        ),
                        None => match reason {
                            // Its dependency was skipped for a footnoted reason: point at it.
                            SkipReason::Dependency {
                                task,
                                cause: DepCause::Skipped { reason: why },
                            } if let Some(k) = notes.iter().position(|(r, _)| *r == **why) => {
                                format!(
                                    "  {:<name_w$}  {step:<16} {} because {task} was skipped [{}]",
                                    "",
                                    s.warn("skipped"),
                                    k + 1
                                )
                            }
                            _ => {
                                format!("  {:<name_w$}  {step:<16} {}", "", skipped_text(s, reason))
                            }
                        },
                    }
                }
                StepOutcome::Failed { reason, tail, .. } => {
                    let mut l = format!(
                        "  {:<name_w$}  {step:<16} {}: {reason}",
                        "",
                        s.error("failed")
                    );
                    for t in tail.lines() {
                        l.push_str(&format!("\n  {:<name_w$}    | {t}", ""));
                    }
                    l
                }
                StepOutcome::NotInBundle { .. } => {
                    format!("  {:<name_w$}  {step:<16} {}", "", s.warn("skipped"))
                }
            };
            out.push(line);
        }
    }
    for (k, (reason, count)) in notes.iter().enumerate() {
        out.push(format!(
            "[{}] {count} steps skipped: {}",
            k + 1,
            crate::output::words::skip_reason(reason)
        ));
    }
    out.push(format!(
        "{} node{} in {}{}",
        sum.nodes.len(),
        if sum.nodes.len() == 1 { "" } else { "s" },
        secs(sum.wall_ms),
        if sum.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    ));
    out
}
