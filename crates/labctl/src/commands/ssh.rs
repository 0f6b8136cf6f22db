use std::io::IsTerminal;

use labctl_driver::exec::{Cmd, find_program};

use crate::Result;
use crate::cli::{SshArgs, SshConfigArgs};
use crate::errors::code;
use crate::output::Printer;

pub(crate) fn run(args: &SshArgs, _p: &Printer) -> Result<u8> {
    let dir = super::lab_dir(&args.lab)?;
    let paths = labctl_runner::lab_paths(&dir, "");
    let info = labctl_runner::ssh_info(&paths, &super::env_for(&args.lab), Some(&args.node))?;
    let Some(info) = info.first() else {
        return Ok(code::OTHER);
    };
    labctl_runner::require_nodes(
        &paths,
        &super::env_for(&args.lab),
        std::slice::from_ref(&info.node),
        labctl_runner::Need::Running,
    )?;
    let ssh = find_program(
        "ssh",
        "LABCTL_SSH",
        "install an OpenSSH client (`apt-get install openssh-client`)",
    )
    .map_err(|e| labctl_runner::RunnerError::Driver(e.into()))?;
    let tty = args.command.is_empty() && std::io::stdin().is_terminal();
    let status = Cmd::new(ssh)
        .args(labctl_runner::ssh_args(info, &args.command, tty)?)
        .run_interactive()
        .map_err(|e| labctl_runner::RunnerError::Driver(e.into()))?;
    Ok(u8::try_from(status).unwrap_or(code::OTHER))
}

pub(crate) fn config(args: &SshConfigArgs, p: &Printer) -> Result<u8> {
    let dir = super::lab_dir(&args.lab)?;
    let paths = labctl_runner::lab_paths(&dir, "");
    let info = labctl_runner::ssh_info(&paths, &super::env_for(&args.lab), args.node.as_deref())?;
    p.out(labctl_runner::ssh_config_text(&info)?.trim_end());
    Ok(code::OK)
}
