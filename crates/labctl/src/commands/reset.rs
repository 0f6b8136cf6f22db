use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use labctl_runner::events::Reporter;
use labctl_runner::{ResetOptions, SnapshotCmd};

use crate::Result;
use crate::cli::{ListArgs, ResetArgs, SnapshotCommand};
use crate::errors::code;
use crate::output::Printer;
use crate::output::reporter::{Mode, TermReporter, summary_lines};

pub(crate) fn snapshot(cmd: &SnapshotCommand, p: &Printer) -> Result<u8> {
    let (lab, nodes, op) = match cmd {
        SnapshotCommand::Save(a) | SnapshotCommand::Restore(a) | SnapshotCommand::Delete(a) => {
            let (name, nodes) = a
                .args
                .split_last()
                .map(|(n, rest)| (n.clone(), rest.to_vec()))
                .unwrap_or_default();
            let op = match cmd {
                SnapshotCommand::Save(_) => SnapshotCmd::Save(name),
                SnapshotCommand::Restore(_) => SnapshotCmd::Restore(name),
                _ => SnapshotCmd::Delete(name),
            };
            (&a.lab, nodes, op)
        }
        SnapshotCommand::List(a) => (&a.lab, a.nodes.clone(), SnapshotCmd::List),
    };
    let dir = super::lab_dir(lab)?;
    let paths = labctl_runner::lab_paths(&dir, "");
    let mode = if p.quiet { Mode::Quiet } else { Mode::Lines };
    let reporter = Arc::new(TermReporter::new(mode, p.err_styles, &nodes));
    let out = labctl_runner::snapshot(&paths, &super::env(), &nodes, &op, reporter)?;
    if let SnapshotCommand::List(a) = cmd
        && a.json
    {
        let golden = labctl_runner::state::LabState::load(&paths)
            .ok()
            .flatten()
            .and_then(|st| st.golden.map(|g| g.name));
        let doc = crate::output::json::snapshot_list(&out, golden.as_deref());
        p.out(crate::output::json::text(&doc));
        return Ok(code::OK);
    }
    if op == SnapshotCmd::List {
        for (node, names) in out {
            p.out(format!(
                "{node}: {}",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    Ok(code::OK)
}

pub(crate) fn reset(args: &ResetArgs, p: &Printer) -> Result<u8> {
    let lab = super::load_lab(&args.lab)?;
    let env = super::env_for(&args.lab);
    let names: Vec<String> = if args.all {
        lab.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        args.nodes.clone()
    };
    let mode = Mode::pick(args.json, p.quiet, p.verbose);
    let reporter = Arc::new(TermReporter::new(mode, p.err_styles, &names));
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = ResetOptions {
        nodes: args.nodes.clone(),
        rebuild: args.rebuild,
        all: args.all,
    };
    let r: Arc<dyn Reporter> = reporter.clone();
    let c = cancel.clone();
    let result = super::with_ctrl_c(
        &cancel,
        || {},
        move || labctl_runner::reset(&lab, &env, &opts, r, c),
    )?;
    reporter.finish();
    let summary = result?;
    if let Some(up) = &summary.up {
        for line in summary_lines(up, p.err_styles) {
            p.info(line);
        }
        if up.failed() || up.interrupted {
            return Ok(if up.interrupted {
                code::INTERRUPTED
            } else {
                code::NODE_FAILED
            });
        }
    }
    for n in &summary.nodes {
        let how = match n.how {
            labctl_runner::ResetHow::Golden => "golden snapshot",
            labctl_runner::ResetHow::Rebuilt => "rebuilt",
        };
        p.out(format!(
            "{}: reset ({how}) in {:.1}s",
            n.node,
            n.elapsed_ms as f64 / 1000.0
        ));
    }
    Ok(code::OK)
}

pub(crate) fn list(args: &ListArgs, p: &Printer) -> Result<u8> {
    let (labs, notice) = labctl_runner::list(&super::env());
    if let Some(n) = notice {
        p.info(format!(
            "{}: {}",
            p.err_styles.warn("warning"),
            crate::output::words::notice(&n)
        ));
    }
    if args.json {
        let doc = crate::output::json::document("list", serde_json::json!({ "labs": labs }));
        p.out(crate::output::json::text(&doc));
        return Ok(code::OK);
    }
    if labs.is_empty() {
        p.out("no labs on this host");
        return Ok(code::OK);
    }
    p.out(format!(
        "{:<14} {:<10} {:>7} {:>5} {:>9} {:<7} {}",
        "LAB", "PROVIDER", "RUNNING", "CPUS", "MEMORY", "GOLDEN", "DIRECTORY"
    ));
    for l in labs {
        p.out(format!(
            "{:<14} {:<10} {:>7} {:>5} {:>6} MiB {:<7} {}",
            l.name,
            l.provider,
            format!("{}/{}", l.running, l.nodes),
            l.cpus,
            l.memory_mb,
            if l.golden { "yes" } else { "no" },
            l.dir.display()
        ));
    }
    Ok(code::OK)
}
