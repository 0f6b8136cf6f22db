//! `labctl class up|status|reset|destroy|ssh-config`: the wording and exit codes of class
//! commands. The work is in `labctl_runner::class`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use labctl_runner::class::{
    ClassEvent, ClassNodeRow, ClassOptions, ClassReporter, ClassSummary, LabOutcome,
};
use labctl_runner::events::{EventKind, Reporter};
use labctl_spec::Overrides;
use labctl_spec::class::Class;

use crate::Result;
use crate::cli::{ClassArgs, ClassCommand};
use crate::errors::{ExpectedError, code};
use crate::output::reporter::{Mode, TermReporter};
use crate::output::{Printer, json};

pub(crate) fn run(cmd: &ClassCommand, p: &Printer) -> Result<u8> {
    match cmd {
        ClassCommand::Up(a) => up(&a.class, a.no_egress, a.accel, a.json, p),
        ClassCommand::Status(a) => status(&a.class, a.json, p),
        ClassCommand::Reset(a) => reset(&a.class, &a.students, a.no_egress, p),
        ClassCommand::Destroy(a) => destroy(&a.class, a.force, p),
        ClassCommand::SshConfig(a) => ssh_config(&a.class, a.out.as_deref(), p),
    }
}

/// class.toml from `--class PATH` (file or directory) or ./class.toml.
fn class_path(args: &ClassArgs) -> Result<PathBuf> {
    let given = args.class.clone().unwrap_or_else(|| PathBuf::from("."));
    let path = if given.is_dir() {
        given.join("class.toml")
    } else {
        given.clone()
    };
    if !path.is_file() {
        return Err(ExpectedError::NoClass { path });
    }
    Ok(path)
}

fn load(args: &ClassArgs) -> Result<Class> {
    Ok(labctl_spec::class::load_class(&class_path(args)?)?)
}

fn options(no_egress: bool, accel: Option<crate::cli::AccelArg>) -> Result<ClassOptions> {
    Ok(ClassOptions {
        overrides: Overrides {
            workers: None,
            no_egress,
            defaults: crate::config::load()?.lab_defaults(),
            // The class moves each student's ports by its slot itself.
            port_offset: 0,
        },
        accel: accel.map(|a| match a {
            crate::cli::AccelArg::Auto => labctl_spec::Accel::Auto,
            crate::cli::AccelArg::Kvm => labctl_spec::Accel::Kvm,
            crate::cli::AccelArg::Tcg => labctl_spec::Accel::Tcg,
        }),
        jobs: crate::config::load()?.jobs,
    })
}

/// Draws class events: a lab's own events through the lab reporter with the node shown as
/// `STUDENT/NODE`; the class's events as notices, or JSON lines with `--json`.
struct ClassTerm {
    term: Arc<TermReporter>,
    json: bool,
}

impl ClassReporter for ClassTerm {
    fn event(&self, e: ClassEvent) {
        if self.json {
            if let Ok(s) = serde_json::to_string(&e) {
                let _ = writeln!(std::io::stdout().lock(), "{s}");
            }
            return;
        }
        let message = match e {
            ClassEvent::Lab { student, mut event } => {
                match (&event.node, &event.kind) {
                    (None, EventKind::Notice { notice }) => {
                        let text = crate::output::words::notice(notice);
                        self.term.lab_note(&format!("{student}: {text}"));
                        return;
                    }
                    (None, _) => {}
                    (Some(node), _) => event.node = Some(format!("{student}/{node}")),
                }
                self.term.event(event);
                return;
            }
            ClassEvent::Placed {
                student,
                host,
                slot,
            } => format!("{student}: placed on {host} (slot {slot})"),
            ClassEvent::Removed { student, host } => format!(
                "{student} is no longer in class.toml; the lab on {host} stays until `labctl class destroy`"
            ),
            ClassEvent::LabStarted { student, host } => format!("{student}: starting on {host}"),
            ClassEvent::LabFinished {
                student,
                host,
                outcome,
            } => format!("{student}: {} ({host})", outcome_text(&outcome)),
        };
        self.term.lab_note(&message);
    }
}

fn outcome_text(o: &LabOutcome) -> String {
    match o {
        LabOutcome::Ok { wall_ms } => format!("done in {:.1}s", *wall_ms as f64 / 1000.0),
        LabOutcome::Failed { failed, .. } => format!("FAILED: {}", failed.join(", ")),
        LabOutcome::Error { message } => format!("FAILED: {message}"),
        LabOutcome::Interrupted => "interrupted".into(),
    }
}

/// The end-of-run lines: one per lab, then the failed ones named.
pub(crate) fn summary_lines(verb: &str, s: &ClassSummary) -> Vec<String> {
    let w = s
        .labs
        .iter()
        .map(|l| l.student.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let hw = s
        .labs
        .iter()
        .map(|l| l.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = vec![format!("{:<w$}  {:<hw$}  RESULT", "STUDENT", "HOST")];
    for l in &s.labs {
        out.push(format!(
            "{:<w$}  {:<hw$}  {}",
            l.student,
            l.host,
            outcome_text(&l.outcome)
        ));
    }
    let failed = s.failed();
    out.push(if failed.is_empty() {
        format!(
            "{verb} {} lab{} in {:.1}s",
            s.labs.len(),
            if s.labs.len() == 1 { "" } else { "s" },
            s.wall_ms as f64 / 1000.0
        )
    } else {
        format!(
            "{} of {} labs failed: {}",
            failed.len(),
            s.labs.len(),
            failed
                .iter()
                .map(|l| l.student.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    out
}

fn exit_code(s: &ClassSummary) -> u8 {
    if s.labs
        .iter()
        .any(|l| matches!(l.outcome, LabOutcome::Interrupted))
    {
        code::INTERRUPTED
    } else if s.failed().is_empty() {
        code::OK
    } else {
        code::NODE_FAILED
    }
}

/// Node rows for the live view: every student's nodes, from the class's lab.
fn live_names(class: &Class) -> Vec<String> {
    let ov = Overrides {
        workers: class.workers,
        ..Overrides::default()
    };
    let Ok(lab) = labctl_spec::load(&class.lab_dir.join("lab.toml"), ov) else {
        return Vec::new();
    };
    class
        .students
        .iter()
        .flat_map(|s| {
            lab.nodes
                .iter()
                .map(move |n| format!("{}/{}", s.name, n.name))
        })
        .collect()
}

fn up(
    args: &ClassArgs,
    no_egress: bool,
    accel: Option<crate::cli::AccelArg>,
    json_out: bool,
    p: &Printer,
) -> Result<u8> {
    let class = load(args)?;
    let opts = options(no_egress, accel)?;
    let mode = Mode::pick(json_out, p.quiet, p.verbose);
    let term = Arc::new(TermReporter::new(
        if json_out { Mode::Lines } else { mode },
        p.err_styles,
        &live_names(&class),
    ));
    let reporter: Arc<dyn ClassReporter> = Arc::new(ClassTerm {
        term: term.clone(),
        json: json_out,
    });
    let cancel = Arc::new(AtomicBool::new(false));
    let env = class_env();
    let p2 = p.clone();
    let c = cancel.clone();
    let r = super::with_ctrl_c(
        &cancel,
        move || p2.info("interrupted: stopping running steps; labs not started stay as they are"),
        move || {
            Ok(labctl_runner::class::class_up(
                &class, &env, &opts, reporter, c,
            ))
        },
    );
    term.finish();
    let summary = r???;
    finish("brought up", &summary, json_out, p)
}

fn finish(verb: &str, s: &ClassSummary, json_out: bool, p: &Printer) -> Result<u8> {
    if json_out {
        p.out(json::text(&json::document(
            "class-summary",
            serde_json::json!({ "labs": s.labs, "placed": s.placed, "removed": s.removed, "wall_ms": s.wall_ms }),
        )));
    } else {
        for l in summary_lines(verb, s) {
            p.info(l);
        }
    }
    Ok(exit_code(s))
}

/// The table of `class status`.
pub(crate) fn status_lines(rows: &[ClassNodeRow]) -> Vec<String> {
    let width = |f: &dyn Fn(&ClassNodeRow) -> usize, min: usize| {
        rows.iter().map(f).max().unwrap_or(min).max(min)
    };
    let hw = width(&|r| r.host.len(), 4);
    let sw = width(&|r| r.student.len() + if r.removed { 10 } else { 0 }, 7);
    let nw = width(&|r| r.node.len(), 4);
    let tw = width(&|r| r.state.as_str().len(), 5);
    let mut out = vec![format!(
        "{:<hw$}  {:<sw$}  {:<nw$}  {:<tw$}  SSH",
        "HOST", "STUDENT", "NODE", "STATE"
    )];
    for r in rows {
        let student = if r.removed {
            format!("{} (removed)", r.student)
        } else {
            r.student.clone()
        };
        let host = if r.host.is_empty() { "-" } else { &r.host };
        let node = if r.node.is_empty() { "-" } else { &r.node };
        let ssh = match (&r.error, r.ssh.is_empty(), &r.via) {
            (Some(e), _, _) => e.clone(),
            (None, true, _) => "-".into(),
            (None, false, Some(v)) => format!("{} via {v}", r.ssh),
            (None, false, None) => r.ssh.clone(),
        };
        out.push(
            format!(
                "{host:<hw$}  {student:<sw$}  {node:<nw$}  {:<tw$}  {ssh}",
                r.state.as_str().replace('_', " ")
            )
            .trim_end()
            .to_string(),
        );
    }
    out
}

fn status(args: &ClassArgs, json_out: bool, p: &Printer) -> Result<u8> {
    let class = load(args)?;
    let rows = labctl_runner::class::class_status(&class, &class_env())?;
    if json_out {
        p.out(json::text(&json::document(
            "class-status",
            serde_json::json!({ "class": class.name, "nodes": rows }),
        )));
        return Ok(code::OK);
    }
    for l in status_lines(&rows) {
        p.out(l);
    }
    Ok(code::OK)
}

fn reset(args: &ClassArgs, students: &[String], no_egress: bool, p: &Printer) -> Result<u8> {
    let class = load(args)?;
    let opts = options(no_egress, None)?;
    let mode = if p.quiet { Mode::Quiet } else { Mode::Lines };
    let term = Arc::new(TermReporter::new(mode, p.err_styles, &[]));
    let reporter: Arc<dyn ClassReporter> = Arc::new(ClassTerm {
        term: term.clone(),
        json: false,
    });
    let s = labctl_runner::class::class_reset(
        &class,
        &class_env(),
        students,
        &opts,
        reporter,
        Arc::new(AtomicBool::new(false)),
    )?;
    term.finish();
    finish("reset", &s, false, p)
}

fn destroy(args: &ClassArgs, force: bool, p: &Printer) -> Result<u8> {
    let class = load(args)?;
    if !force {
        if !std::io::stdin().is_terminal() {
            return Err(ExpectedError::NeedsForce);
        }
        eprint!(
            "destroy every student's lab of class {} (VMs, disks, lab state)? [y/N] ",
            class.name
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            p.info("nothing destroyed");
            return Ok(code::OK);
        }
    }
    let mode = if p.quiet { Mode::Quiet } else { Mode::Lines };
    let term = Arc::new(TermReporter::new(mode, p.err_styles, &[]));
    let reporter: Arc<dyn ClassReporter> = Arc::new(ClassTerm {
        term: term.clone(),
        json: false,
    });
    let s = labctl_runner::class::class_destroy(&class, &class_env(), reporter)?;
    term.finish();
    finish("destroyed", &s, false, p)
}

fn ssh_config(args: &ClassArgs, out: Option<&Path>, p: &Printer) -> Result<u8> {
    let class = load(args)?;
    let configs = labctl_runner::class::class_ssh_config(&class, &class_env())?;
    if configs.is_empty() {
        p.info("no student has a lab yet: `labctl class up` first");
        return Ok(code::OK);
    }
    let dir = out.map_or_else(|| class.dir.join(".labctl").join("ssh"), Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(|source| ExpectedError::Write {
        path: dir.clone(),
        source,
    })?;
    for c in &configs {
        let file = labctl_runner::class::ssh_config_file(&dir, &c.student);
        std::fs::write(&file, &c.text).map_err(|source| ExpectedError::Write {
            path: file.clone(),
            source,
        })?;
        p.out(format!("{}: {}", c.student, file.display()));
    }
    p.info("log in with `ssh -F FILE NODE`");
    Ok(code::OK)
}

/// Host settings for the class commands. Each student's lab runs on the host class.toml placed
/// it on, with that host's URI in the lab's own lab.toml: `LABCTL_URI`, which names one lab's
/// libvirt host, must not send every student's lab (and its SSH route) to one host.
fn class_env() -> labctl_runner::Env {
    let mut env = super::env();
    env.uri = None;
    env
}
