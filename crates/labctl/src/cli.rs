//! Command-line definitions (clap). Parsing only: no work happens here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// labctl brings classroom virtual-machine labs up, provisions them, and resets them.
///
/// A lab is a `lab.toml` file (start with `labctl init`). Most commands look for
/// `lab.toml` in the current directory, or take `--lab PATH`.
#[derive(Debug, Parser)]
#[command(name = "labctl", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// More logging on stderr: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Print only errors and final results.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Never use colour (also: the NO_COLOR environment variable).
    #[arg(long, global = true, env = "NO_COLOR", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_color: bool,
}

/// Which lab, and how many workers.
#[derive(Debug, Clone, Args)]
pub(crate) struct LabArgs {
    /// Path to lab.toml, or to the directory that holds it [default: ./lab.toml].
    #[arg(long, env = "LABCTL_LAB", value_name = "PATH")]
    pub(crate) lab: Option<PathBuf>,
    /// Number of workers, overriding `workers` in lab.toml.
    #[arg(long, env = "LABCTL_WORKERS", value_name = "N")]
    pub(crate) workers: Option<u32>,
    /// Turn the guests' internet off (adds restrict=on to QEMU's user network).
    #[arg(long, env = "LABCTL_NO_EGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_egress: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write a lab (lab.toml and its templates) from one of the bundled labs.
    Init(InitArgs),
    /// Check lab.toml and its templates; list every problem found.
    Validate(ValidateArgs),
    /// Show the nodes (CPUs, memory, addresses, ports) and the provisioning steps in order.
    Plan(PlanArgs),
    /// Write every provisioning script exactly as it would be uploaded.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Bundled lab to start from (see the list with `labctl init --list`).
    #[arg(long, value_name = "NAME", default_value = "k8s")]
    pub(crate) lab: String,
    /// List the bundled labs and exit.
    #[arg(long)]
    pub(crate) list: bool,
    /// Overwrite an existing lab.toml and templates.
    #[arg(long)]
    pub(crate) force: bool,
    /// Directory to write into (created if missing).
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Only this node.
    pub(crate) node: Option<String>,
    /// Write files into DIR/<node>/ instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}
