//! `labctl class …`: one lab for many students across hosts, and the commands' arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::AccelArg;

#[derive(Debug, Subcommand)]
pub(crate) enum ClassCommand {
    /// Place new students on hosts, then bring every student's lab up (in parallel across
    /// hosts, at most `max_parallel` labs at once on each). Exits 1 if any lab failed.
    Up(ClassUpArgs),
    /// One table of every lab and node: host, student, node, state, SSH (no SSH is used).
    Status(ClassStatusArgs),
    /// Bring students' labs (all when none is named) back to their golden snapshot.
    Reset(ClassResetArgs),
    /// Destroy every student's lab (VMs, disks, lab state) and forget the placements.
    Destroy(ClassDestroyArgs),
    /// Write one OpenSSH config per student, `DIR/STUDENT.ssh-config` (with `ProxyJump`
    /// through remote hosts).
    SshConfig(ClassSshConfigArgs),
}

/// Which class.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClassArgs {
    /// Path to class.toml, or to the directory that holds it [default: ./class.toml].
    #[arg(long, env = "LABCTL_CLASS", value_name = "PATH")]
    pub(crate) class: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ClassUpArgs {
    #[command(flatten)]
    pub(crate) class: ClassArgs,
    /// Turn the guests' internet off in every lab.
    #[arg(long, env = "LABCTL_NO_EGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_egress: bool,
    /// QEMU acceleration for every lab: auto, kvm or tcg.
    #[arg(long, env = "LABCTL_ACCEL", value_name = "MODE", ignore_case = true)]
    pub(crate) accel: Option<AccelArg>,
    /// Events as JSON lines on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ClassStatusArgs {
    #[command(flatten)]
    pub(crate) class: ClassArgs,
    /// Machine-readable output (docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ClassResetArgs {
    #[command(flatten)]
    pub(crate) class: ClassArgs,
    /// Students to reset [default: every student with a lab].
    pub(crate) students: Vec<String>,
    /// Turn the guests' internet off (as `class up`).
    #[arg(long, env = "LABCTL_NO_EGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_egress: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ClassDestroyArgs {
    #[command(flatten)]
    pub(crate) class: ClassArgs,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ClassSshConfigArgs {
    #[command(flatten)]
    pub(crate) class: ClassArgs,
    /// Directory for the files [default: the class's `.labctl/ssh/`].
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}
