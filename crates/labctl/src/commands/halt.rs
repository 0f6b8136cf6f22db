use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::Result;
use crate::cli::{AdoptArgs, DestroyArgs, HaltArgs};
use crate::errors::{ExpectedError, code};
use crate::output::Printer;
use crate::output::reporter::{Mode, TermReporter};

pub(crate) fn halt(args: &HaltArgs, p: &Printer) -> Result<u8> {
    let dir = super::lab_dir(&args.lab)?;
    let paths = labctl_runner::lab_paths(&dir, "");
    let mode = if p.quiet { Mode::Quiet } else { Mode::Lines };
    let reporter = Arc::new(TermReporter::new(mode, p.err_styles, &args.nodes));
    labctl_runner::halt(
        &paths,
        &super::env_for(&args.lab),
        &args.nodes,
        Duration::from_secs(args.timeout),
        reporter,
    )?;
    Ok(code::OK)
}

pub(crate) fn destroy(args: &DestroyArgs, p: &Printer) -> Result<u8> {
    let dir = super::lab_dir(&args.lab)?;
    let paths = labctl_runner::lab_paths(&dir, "");
    if args.forget {
        labctl_runner::forget(&paths, &super::env_for(&args.lab))?;
        p.info(format!(
            "dropped the copied lab state in {} (no VM was stopped)",
            paths.state_dir.display()
        ));
        return Ok(code::OK);
    }
    if !args.force {
        if !std::io::stdin().is_terminal() {
            return Err(ExpectedError::NeedsForce);
        }
        let what = if args.nodes.is_empty() {
            "every node of this lab".to_string()
        } else {
            args.nodes.join(", ")
        };
        eprint!("destroy {what} (VMs and disks)? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            p.info("nothing destroyed");
            return Ok(code::OK);
        }
    }
    let mode = if p.quiet { Mode::Quiet } else { Mode::Lines };
    let reporter = Arc::new(TermReporter::new(mode, p.err_styles, &args.nodes));
    labctl_runner::destroy(&paths, &super::env_for(&args.lab), &args.nodes, reporter)?;
    Ok(code::OK)
}

pub(crate) fn adopt(args: &AdoptArgs, p: &Printer) -> Result<u8> {
    let dir = super::lab_dir(&args.lab)?;
    let paths = labctl_runner::lab_paths(&dir, "");
    if labctl_runner::adopt(&paths, &super::env_for(&args.lab))? {
        p.info("this directory is now the lab's home; `labctl up` boots its nodes (their guest configuration is redone)");
    } else {
        p.info("the lab state already belongs to this directory");
    }
    Ok(code::OK)
}
