use std::time::SystemTime;

use labctl_runner::events::{DepCause, Notice, SkipReason};
use labctl_runner::{NodeSummary, StepSummary, UpSummary};

fn st(name: String, outcome: StepOutcome, duration_ms: u64) -> StepSummary {
    StepSummary {
        name,
        outcome,
        duration_ms,
    }
}

use super::*;

fn ev(node: &str, kind: EventKind) -> Event {
    Event {
        node: (!node.is_empty()).then(|| node.to_string()),
        kind,
        time: SystemTime::UNIX_EPOCH,
    }
}

/// The plain (non-terminal) output of a run: what CI logs and pipes get.
#[test]
fn plain_lines_of_a_run() {
    let r = TermReporter::new(Mode::Lines, Styles::new(false), &[]);
    let step = |s: &str| s.to_string();
    let events = run_events();
    plain_and_summary(&r, &events, step);
}

/// A busy node's row counts its time up and turns its spinner from one tick to the next;
/// an idle node's row has neither; rows are cut to the width.
#[test]
fn a_busy_row_ticks_and_an_idle_row_does_not() {
    let t0 = Instant::now();
    let busy = NodeLine {
        status: "running config.sh (1/4)".into(),
        last: "Setting up kubelet".into(),
        since: Some(t0),
    };
    let at = |secs: u64, frame: usize| {
        node_row(
            "m-k8s",
            6,
            &busy,
            200,
            frame,
            t0 + Duration::from_secs(secs),
        )
    };
    assert_eq!(
        at(7, 0),
        "| m-k8s   running config.sh (1/4)          7s  Setting up kubelet"
    );
    assert_eq!(
        at(65, 1),
        "/ m-k8s   running config.sh (1/4)         65s  Setting up kubelet"
    );
    assert_ne!(at(3, 2).chars().next(), at(3, 3).chars().next());
    let idle = NodeLine {
        status: "ready".into(),
        ..NodeLine::default()
    };
    assert_eq!(node_row("w1-k8s", 6, &idle, 200, 3, t0), "  w1-k8s  ready");
    assert_eq!(at(7, 0).chars().count(), 65);
    assert_eq!(
        node_row("m-k8s", 6, &busy, 20, 0, t0),
        "| m-k8s   running co"
    );
}

/// The ticker stops when the reporter finishes (no thread left drawing over the summary).
#[test]
fn the_ticker_stops_on_finish() {
    let r = TermReporter::new(Mode::Live, Styles::new(false), &[]);
    assert!(r.ticker.lock().is_ok_and(|t| t.is_some()));
    r.finish();
    assert!(r.ticker.lock().is_ok_and(|t| t.is_none()));
    let plain = TermReporter::new(Mode::Lines, Styles::new(false), &[]);
    assert!(plain.ticker.lock().is_ok_and(|t| t.is_none()));
}

#[test]
fn width_is_columns_then_the_terminal_then_100() {
    assert_eq!(width_from(Some("80"), Some(200)), 80);
    assert_eq!(width_from(None, Some(200)), 200);
    assert_eq!(width_from(Some("junk"), Some(132)), 132);
    assert_eq!(width_from(Some("0"), Some(0)), 100);
    assert_eq!(width_from(None, None), 100);
}

/// `up --json`: the same run as one JSON object per line.
#[test]
fn json_lines_of_a_run() {
    let lines: Vec<String> = run_events().iter().filter_map(json_line).collect();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
        assert!(
            v["node"].is_string(),
            "every event names its node ('' for the lab): {l}"
        );
    }
    insta::assert_snapshot!(lines.join("\n"));
}

/// A fixed event sequence: boot, a step with output, an up-to-date step, a failure, a
/// step skipped because of it, a node that died.
fn run_events() -> Vec<Event> {
    let step = |s: &str| s.to_string();
    vec![
        ev(
            "",
            EventKind::Acceleration {
                engine: "tcg".into(),
                reason: "kvm guest printed nothing within 4 s".into(),
                fallback: false,
            },
        ),
        ev(
            "m-k8s",
            EventKind::Phase {
                phase: Phase::Creating,
            },
        ),
        ev(
            "m-k8s",
            EventKind::Phase {
                phase: Phase::Booting,
            },
        ),
        ev(
            "w1-k8s",
            EventKind::Notice {
                notice: Notice::PortInUse {
                    port: 60101,
                    new: 2200,
                },
            },
        ),
        ev(
            "m-k8s",
            EventKind::Phase {
                phase: Phase::WaitingSsh,
            },
        ),
        ev(
            "m-k8s",
            EventKind::Phase {
                phase: Phase::Configuring,
            },
        ),
        ev(
            "m-k8s",
            EventKind::Phase {
                phase: Phase::Ready,
            },
        ),
        ev(
            "m-k8s",
            EventKind::StepStarted {
                step: step("config"),
                index: 1,
                total: 3,
            },
        ),
        ev(
            "m-k8s",
            EventKind::StepOutput {
                step: step("config"),
                line: "wrote /etc/hosts".into(),
            },
        ),
        ev(
            "m-k8s",
            EventKind::StepFinished {
                step: step("config"),
                outcome: StepOutcome::Done,
                duration_ms: 4200,
            },
        ),
        ev(
            "m-k8s",
            EventKind::StepFinished {
                step: step("install_pkg"),
                outcome: StepOutcome::UpToDate,
                duration_ms: 0,
            },
        ),
        ev(
            "w1-k8s",
            EventKind::StepFinished {
                step: step("install_pkg"),
                outcome: StepOutcome::Failed {
                    status: Some(3),
                    reason: "exit status 3 (full log: .labctl/logs/w1-k8s/02-install_pkg.log)"
                        .into(),
                    tail: "E: no network".into(),
                },
                duration_ms: 1500,
            },
        ),
        ev(
            "w1-k8s",
            EventKind::StepFinished {
                step: step("work_nodes"),
                outcome: StepOutcome::Skipped {
                    reason: SkipReason::Dependency {
                        task: "w1-k8s.install_pkg".into(),
                        cause: DepCause::Failed,
                    },
                },
                duration_ms: 0,
            },
        ),
        ev(
            "w2-k8s",
            EventKind::NodeFailed {
                error: "w2-k8s: the VM stopped while waiting for SSH".into(),
            },
        ),
    ]
}

fn plain_and_summary(r: &TermReporter, events: &[Event], step: impl Fn(&str) -> String) {
    let mut lines: Vec<String> = events.iter().filter_map(|e| r.line_for(e)).collect();
    let summary = UpSummary {
        nodes: vec![
            NodeSummary {
                name: "m-k8s".into(),
                error: None,
                ready_ms: Some(61_000),
                steps: vec![
                    st(step("config"), StepOutcome::Done, 4200),
                    st(step("install_pkg"), StepOutcome::UpToDate, 0),
                ],
            },
            NodeSummary {
                name: "w1-k8s".into(),
                error: None,
                ready_ms: Some(58_500),
                steps: vec![
                    st(
                        step("install_pkg"),
                        StepOutcome::Failed {
                            status: Some(3),
                            reason: "exit status 3".into(),
                            tail: "E: no network".into(),
                        },
                        1500,
                    ),
                    st(
                        step("work_nodes"),
                        StepOutcome::Skipped {
                            reason: SkipReason::Dependency {
                                task: "w1-k8s.install_pkg".into(),
                                cause: DepCause::Failed,
                            },
                        },
                        0,
                    ),
                ],
            },
            NodeSummary {
                name: "w2-k8s".into(),
                error: Some("the VM stopped while waiting for SSH".into()),
                ready_ms: None,
                steps: vec![],
            },
        ],
        interrupted: false,
        wall_ms: 95_300,
    };
    lines.push(String::new());
    lines.extend(summary_lines(&summary, Styles::new(false)));
    insta::assert_snapshot!("plain_lines_of_a_run", lines.join("\n"));
}

/// With egress off every node skips its package steps for the same reason: the summary
/// says it once.
#[test]
fn summary_groups_a_repeated_skip_reason() {
    let egress = SkipReason::NeedsEgress;
    let skip = |reason: SkipReason| StepOutcome::Skipped { reason };
    let node = |name: &str, steps: Vec<(&str, StepOutcome)>| NodeSummary {
        name: name.into(),
        error: None,
        ready_ms: Some(40_000),
        steps: steps
            .into_iter()
            .map(|(s, o)| st(s.to_string(), o, 0))
            .collect(),
    };
    let summary = UpSummary {
        nodes: vec![
            node(
                "m-k8s",
                vec![
                    ("config", StepOutcome::Done),
                    ("install_pkg", skip(egress.clone())),
                    (
                        "master_node",
                        skip(SkipReason::Dependency {
                            task: "m-k8s.install_pkg".into(),
                            cause: DepCause::Skipped {
                                reason: Box::new(SkipReason::NeedsEgress),
                            },
                        }),
                    ),
                ],
            ),
            node(
                "w1-k8s",
                vec![
                    ("config", StepOutcome::Done),
                    ("install_pkg", skip(egress.clone())),
                    ("debug", skip(SkipReason::OnRequest)),
                ],
            ),
            node("w2-k8s", vec![("install_pkg", skip(egress))]),
        ],
        interrupted: false,
        wall_ms: 50_000,
    };
    let text = summary_lines(&summary, Styles::new(false)).join("\n");
    // Said once, as a footnote; a dependant of a step skipped for it points at it.
    assert_eq!(text.matches("egress is off").count(), 1, "{text}");
    assert!(
        text.contains("because m-k8s.install_pkg was skipped [1]"),
        "{text}"
    );
    insta::assert_snapshot!(text);
}
