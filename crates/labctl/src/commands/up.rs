use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use labctl_runner::UpOptions;
use labctl_runner::events::Reporter;

use crate::Result;
use crate::cli::{ProvisionArgs, UpArgs};
use crate::errors::code;
use crate::output::Printer;
use crate::output::reporter::{Mode, TermReporter, summary_lines};

pub(crate) fn run(args: &UpArgs, p: &Printer) -> Result<u8> {
    let opts = UpOptions {
        nodes: args.nodes.clone(),
        jobs: args.jobs.or(crate::config::load()?.jobs),
        selection: labctl_runner::Selection::Up,
        force: std::collections::BTreeSet::new(),
    };
    go(&args.lab, opts, args.json, p)
}

pub(crate) fn provision(args: &ProvisionArgs, p: &Printer) -> Result<u8> {
    let selection = match (&args.step, &args.from) {
        (Some(s), _) => labctl_runner::Selection::Step(s.clone()),
        (None, Some(f)) => labctl_runner::Selection::From(f.clone()),
        (None, None) => labctl_runner::Selection::All,
    };
    let opts = UpOptions {
        nodes: args.nodes.clone(),
        jobs: args.jobs.or(crate::config::load()?.jobs),
        selection,
        force: std::collections::BTreeSet::new(),
    };
    go(&args.lab, opts, args.json, p)
}

fn go(lab_args: &crate::cli::LabArgs, opts: UpOptions, json: bool, p: &Printer) -> Result<u8> {
    let lab = super::load_lab(lab_args)?;
    let env = super::env_for(lab_args);
    let names: Vec<String> = lab
        .nodes
        .iter()
        .filter(|n| opts.nodes.is_empty() || opts.nodes.contains(&n.name))
        .map(|n| n.name.clone())
        .collect();
    if opts.selection != labctl_runner::Selection::Up {
        // `provision` runs steps on running nodes; it never boots or creates one.
        let paths = labctl_runner::lab_paths(&lab.dir, &lab.name);
        labctl_runner::require_nodes(&paths, &env, &names, labctl_runner::Need::Running)?;
    }
    let mode = Mode::pick(json, p.quiet, p.verbose);
    let reporter = Arc::new(TermReporter::new(mode, p.err_styles, &names));
    let cancel = Arc::new(AtomicBool::new(false));
    let p2 = p.clone();
    let r: Arc<dyn Reporter> = reporter.clone();
    let c = cancel.clone();
    let summary = super::with_ctrl_c(
        &cancel,
        move || {
            p2.info("interrupted: stopping running steps (nothing unfinished is recorded as done)");
        },
        move || labctl_runner::up(&lab, &env, &opts, r, c),
    )?;
    reporter.finish();
    let summary = summary?;
    if mode != Mode::Json {
        for line in summary_lines(&summary, p.err_styles) {
            p.info(line);
        }
    }
    if summary.interrupted {
        p.info("interrupted; `labctl up` continues where this one stopped");
        return Ok(code::INTERRUPTED);
    }
    Ok(if summary.failed() {
        code::NODE_FAILED
    } else {
        code::OK
    })
}
