//! The one place that draws runner events: live lines on a terminal, stable prefixed lines
//! otherwise, JSON lines with `--json`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use labctl_runner::UpSummary;
use labctl_runner::events::{DepCause, Event, EventKind, Phase, Reporter, SkipReason, StepOutcome};

use super::Styles;

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Live,
    Lines,
    Json,
    Quiet,
}

impl Mode {
    pub(crate) fn pick(json: bool, quiet: bool, verbose: bool) -> Mode {
        if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() && !verbose && !no_progress() {
            Mode::Live
        } else {
            Mode::Lines
        }
    }
}

/// `LABCTL_NO_PROGRESS` set to anything but empty or `0`.
fn no_progress() -> bool {
    std::env::var("LABCTL_NO_PROGRESS").is_ok_and(|v| !v.is_empty() && v != "0")
}

#[derive(Debug, Default, Clone)]
struct NodeLine {
    status: String,
    last: String,
    since: Option<Instant>,
}

#[derive(Debug)]
struct LiveState {
    order: Vec<String>,
    nodes: BTreeMap<String, NodeLine>,
    drawn: usize,
    last_draw: Option<Instant>,
    /// The spinner's frame, advanced by the ticker.
    frame: usize,
}

/// The spinner's frames (ASCII: every terminal and code page draws them).
const SPINNER: [char; 4] = ['|', '/', '-', '\\'];
/// How often the ticker redraws the live block, so elapsed times count up between events.
const TICK: Duration = Duration::from_millis(125);

/// The thread that redraws the live block between events.
#[derive(Debug)]
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// Draws events.
#[derive(Debug)]
pub(crate) struct TermReporter {
    mode: Mode,
    styles: Styles,
    live: Arc<Mutex<LiveState>>,
    ticker: Mutex<Option<Ticker>>,
}

impl TermReporter {
    pub(crate) fn new(mode: Mode, styles: Styles, nodes: &[String]) -> TermReporter {
        let live = Arc::new(Mutex::new(LiveState {
            order: nodes.to_vec(),
            nodes: BTreeMap::new(),
            drawn: 0,
            last_draw: None,
            frame: 0,
        }));
        let ticker = (mode == Mode::Live).then(|| Self::tick(Arc::clone(&live)));
        TermReporter {
            mode,
            styles,
            live,
            ticker: Mutex::new(ticker),
        }
    }

    /// Start the ticker: every [`TICK`] it advances the spinner and redraws the block (once
    /// something has been drawn), so a node in a long step shows its time counting up.
    fn tick(live: Arc<Mutex<LiveState>>) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                let Ok(mut st) = live.lock() else { return };
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                if st.drawn > 0 {
                    st.frame = st.frame.wrapping_add(1);
                    redraw(&mut st, true);
                }
            }
        });
        Ticker { stop, handle }
    }

    /// Stop the ticker and wait for it (it holds the lock only while drawing).
    fn stop_ticker(&self) {
        let t = self.ticker.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            t.stop.store(true, Ordering::Relaxed);
            let _ = t.handle.join();
        }
    }

    fn prefix(&self, node: Option<&str>) -> String {
        match node {
            None => "[lab]".to_string(),
            Some(node) => format!("[{node}]"),
        }
    }

    fn line_for(&self, e: &Event) -> Option<String> {
        let p = self.prefix(e.node.as_deref());
        let s = self.styles;
        Some(match &e.kind {
            EventKind::Phase { phase } => format!("{p} {}", phase.as_str()),
            EventKind::StepStarted { step, index, total } => {
                format!("{p} {step}: started ({index}/{total})")
            }
            EventKind::StepOutput { step, line } => format!("{p} {step}: {line}"),
            EventKind::StepFinished {
                step,
                outcome,
                duration_ms,
            } => match worded(outcome).as_ref() {
                StepOutcome::Done => {
                    format!("{p} {step}: {} in {}", s.ok("done"), secs(*duration_ms))
                }
                StepOutcome::UpToDate => format!("{p} {step}: up to date"),
                StepOutcome::Skipped { reason } => {
                    format!("{p} {step}: {}", skipped_text(s, reason))
                }
                StepOutcome::Failed { reason, .. } => {
                    format!("{p} {step}: {}: {reason}", s.error("failed"))
                }
                StepOutcome::NotInBundle { .. } => format!("{p} {step}: skipped"),
            },
            EventKind::NodeFailed { error } => format!("{p} {}: {error}", s.error("failed")),
            EventKind::Notice { notice } => format!("{p} {}", super::words::notice(notice)),
            EventKind::Acceleration {
                engine,
                reason,
                fallback,
            } => {
                if *fallback {
                    format!(
                        "{p} {} {reason}; the lab goes on under TCG (slower), and so will later runs on this host (`labctl doctor --reprobe` tests KVM again; `--accel kvm` forces it)",
                        s.warn("acceleration:")
                    )
                } else {
                    format!("{p} acceleration: {engine} ({reason})")
                }
            }
        })
    }

    /// Print a line above the live block.
    fn above(&self, st: &mut LiveState, line: &str) {
        let mut err = std::io::stderr().lock();
        if st.drawn > 0 {
            let _ = write!(err, "\x1b[{}A\x1b[J", st.drawn);
            st.drawn = 0;
        }
        let _ = writeln!(err, "{line}");
        drop(err);
        redraw(st, true);
    }

    /// Clear the live block before the summary.
    pub(crate) fn finish(&self) {
        self.stop_ticker();
        if self.mode == Mode::Live
            && let Ok(mut st) = self.live.lock()
        {
            redraw(&mut st, true);
        }
    }
}

impl Drop for TermReporter {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

/// The live block's width: `COLUMNS` if set, else the terminal's own width (the live
/// block is drawn only on a terminal), else 100.
fn width() -> usize {
    let tty = rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|w| w.ws_col);
    width_from(std::env::var("COLUMNS").ok().as_deref(), tty)
}

/// Redraw the live block in place (at most every 100 ms unless `force`).
fn redraw(st: &mut LiveState, force: bool) {
    if !force
        && st
            .last_draw
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
    {
        return;
    }
    let now = Instant::now();
    st.last_draw = Some(now);
    let mut err = std::io::stderr().lock();
    if st.drawn > 0 {
        let _ = write!(err, "\x1b[{}A", st.drawn);
    }
    let width = width().saturating_sub(1);
    let name_w = st.order.iter().map(String::len).max().unwrap_or(4);
    for name in &st.order {
        let l = st.nodes.get(name).cloned().unwrap_or_default();
        let text = node_row(name, name_w, &l, width, st.frame, now);
        let _ = writeln!(err, "\x1b[2K{text}");
    }
    st.drawn = st.order.len();
}

/// One node's row of the live block: a spinner while the node is busy, its status, the time
/// in the current phase or step (counting up), and the step's last output line; cut to
/// `width` characters.
fn node_row(
    name: &str,
    name_w: usize,
    l: &NodeLine,
    width: usize,
    frame: usize,
    now: Instant,
) -> String {
    let (spin, elapsed) = match l.since {
        Some(t) => (
            SPINNER[frame % SPINNER.len()],
            format!("{:>5}s", now.saturating_duration_since(t).as_secs()),
        ),
        None => (' ', String::new()),
    };
    let mut text = format!(
        "{spin} {name:<name_w$}  {:<28} {elapsed:>6}  {}",
        l.status, l.last
    );
    if text.chars().count() > width {
        text = text.chars().take(width).collect();
    }
    text.trim_end().to_string()
}

impl TermReporter {
    /// A line about the lab that is not a runner event (`labctl class`: placement, a
    /// student's lab finished), printed like a lab notice: `[lab] TEXT`.
    pub(crate) fn lab_note(&self, text: &str) {
        let line = format!("{} {text}", self.prefix(None));
        match self.mode {
            Mode::Json | Mode::Quiet => {}
            Mode::Lines => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Mode::Live => {
                if let Ok(mut st) = self.live.lock() {
                    self.above(&mut st, &line);
                }
            }
        }
    }
}

impl Reporter for TermReporter {
    fn event(&self, e: Event) {
        match self.mode {
            Mode::Json => {
                if let Some(s) = json_line(&e) {
                    let _ = writeln!(std::io::stdout().lock(), "{s}");
                }
            }
            Mode::Quiet => {
                if matches!(e.kind, EventKind::NodeFailed { .. })
                    && let Some(l) = self.line_for(&e)
                {
                    let _ = writeln!(std::io::stderr().lock(), "{l}");
                }
            }
            Mode::Lines => {
                if let Some(l) = self.line_for(&e) {
                    let _ = writeln!(std::io::stderr().lock(), "{l}");
                }
            }
            Mode::Live => {
                let Ok(mut st) = self.live.lock() else { return };
                // Events about the lab have no row of their own (key "": never drawn).
                let key = e.node.clone().unwrap_or_default();
                if e.node.is_some() && !st.order.contains(&key) {
                    st.order.push(key.clone());
                }
                let entry = st.nodes.entry(key).or_default();
                match &e.kind {
                    EventKind::Phase { phase } => {
                        entry.status = phase.as_str().to_string();
                        entry.since =
                            (!matches!(phase, Phase::Ready | Phase::Stopped | Phase::Destroyed))
                                .then(Instant::now);
                        redraw(&mut st, true);
                    }
                    EventKind::StepStarted { step, index, total } => {
                        entry.status = format!("running {step} ({index}/{total})");
                        entry.since = Some(Instant::now());
                        entry.last.clear();
                        redraw(&mut st, true);
                    }
                    EventKind::StepOutput { line, .. } => {
                        entry.last = line.chars().filter(|c| !c.is_control()).collect();
                        redraw(&mut st, false);
                    }
                    EventKind::StepFinished { step, outcome, .. } => {
                        entry.status = match outcome {
                            StepOutcome::Done | StepOutcome::UpToDate => format!("{step} done"),
                            StepOutcome::Skipped { .. } | StepOutcome::NotInBundle { .. } => {
                                format!("{step} skipped")
                            }
                            StepOutcome::Failed { .. } => format!("{step} FAILED"),
                        };
                        entry.since = None;
                        let show = !matches!(outcome, StepOutcome::UpToDate | StepOutcome::Done);
                        if show && let Some(l) = self.line_for(&e) {
                            self.above(&mut st, &l);
                        } else {
                            redraw(&mut st, true);
                        }
                    }
                    EventKind::NodeFailed { .. }
                    | EventKind::Notice { .. }
                    | EventKind::Acceleration { .. } => {
                        if matches!(e.kind, EventKind::NodeFailed { .. }) {
                            entry.status = "FAILED".into();
                            entry.since = None;
                        }
                        if let Some(l) = self.line_for(&e) {
                            self.above(&mut st, &l);
                        }
                    }
                }
            }
        }
    }
}

fn width_from(columns: Option<&str>, tty_cols: Option<u16>) -> usize {
    columns
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
        .or(tty_cols.filter(|&c| c > 0).map(usize::from))
        .unwrap_or(100)
}

/// `up --json`: one event per line on stdout.
fn json_line(e: &Event) -> Option<String> {
    serde_json::to_string(e).ok()
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// `skipped because X failed`, or `skipped: REASON` (like `failed: REASON`).
fn skipped_text(s: Styles, reason: &SkipReason) -> String {
    let words = super::words::skip_reason(reason);
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
fn worded(o: &StepOutcome) -> std::borrow::Cow<'_, StepOutcome> {
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
            super::words::skip_reason(reason)
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use labctl_runner::events::Notice;
    use labctl_runner::{NodeSummary, StepSummary};

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
}
