//! The one place that draws runner events: live lines on a terminal, stable prefixed lines
//! otherwise, JSON lines with `--json`.
mod summary;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use labctl_runner::events::{Event, EventKind, Phase, Reporter, StepOutcome};

use super::Styles;

pub(crate) use summary::{not_in_bundle_text, summary_lines};
use summary::{secs, skipped_text, worded};

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
    #[cfg(unix)]
    let tty = rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|w| w.ws_col);
    // Windows: std cannot ask the console for its width.
    #[cfg(not(unix))]
    let tty = None;
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

#[cfg(test)]
#[path = "reporter_tests.rs"]
mod tests;
