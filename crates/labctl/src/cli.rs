//! Command-line definitions (clap). Parsing only: no work happens here.

mod bundle;
mod class;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::{ArgValueCandidates, ArgValueCompleter};

pub(crate) use bundle::{BundleBuildArgs, BundleCommand, BundleServerArgs};
pub(crate) use class::{ClassArgs, ClassCommand};

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
    #[arg(add = ArgValueCompleter::new(crate::complete::LabOrDir), long, env = "LABCTL_LAB", value_name = "PATH")]
    pub(crate) lab: Option<PathBuf>,
    /// Number of workers, overriding `workers` in lab.toml.
    #[arg(long, env = "LABCTL_WORKERS", value_name = "N")]
    pub(crate) workers: Option<u32>,
    /// Turn the guests' internet off (adds restrict=on to QEMU's user network).
    #[arg(long, env = "LABCTL_NO_EGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_egress: bool,
    /// QEMU acceleration, overriding `accel` in lab.toml: auto (KVM when it really works,
    /// else TCG), kvm or tcg.
    #[arg(long, env = "LABCTL_ACCEL", value_name = "MODE", ignore_case = true)]
    pub(crate) accel: Option<AccelArg>,
    /// libvirt connection URI (provider = "libvirt"), overriding `uri` in lab.toml and the
    /// one a lab was brought up with: qemu:///system, qemu+ssh://user@host/system.
    #[arg(long, env = "LABCTL_URI", value_name = "URI", value_parser = libvirt_uri)]
    pub(crate) uri: Option<String>,
    /// Classroom bundle to serve the guests (docs/bundle.md), overriding `bundle` in lab.toml.
    #[arg(long, env = "LABCTL_BUNDLE", value_name = "NAME")]
    pub(crate) bundle: Option<String>,
    /// Added to every host port of the lab (SSH ports, `forward` hosts): tests and
    /// side-by-side copies move their ports without editing lab.toml. Hidden: not for
    /// everyday use.
    #[arg(
        long,
        env = "LABCTL_PORT_OFFSET",
        value_name = "N",
        hide = true,
        allow_negative_numbers = true
    )]
    pub(crate) port_offset: Option<i32>,
}

/// `--accel` values.
/// `--uri`/`LABCTL_URI`: a libvirt URI labctl can route guests through (the one parser,
/// `labctl_spec::class::parse_uri`, as for class.toml and lab.toml); empty means unset.
fn libvirt_uri(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Ok(s.to_string());
    }
    match labctl_spec::class::parse_uri(s) {
        Ok(labctl_spec::class::HostUri::Libvirt { .. }) => Ok(s.to_string()),
        Ok(labctl_spec::class::HostUri::Local) => {
            Err("`local` is a class.toml host, not a libvirt URI: use `qemu:///system`".to_string())
        }
        Err(labctl_spec::class::UriError(m)) => Err(format!(
            "{m} (labctl accepts `qemu:///system`, `qemu:///session`, `qemu+ssh://user@host/system`)"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write a lab (lab.toml and its templates) from one of the bundled labs.
    Init(InitArgs),
    /// Check lab.toml and its templates; list every problem found.
    Validate(ValidateArgs),
    /// Write a lab (lab.toml and the provisioning scripts) from a Vagrantfile.
    Import(ImportArgs),
    /// Show the nodes (CPUs, memory, addresses, ports) and the provisioning steps in order.
    Plan(PlanArgs),
    /// Write every provisioning script exactly as it would be uploaded.
    Render(RenderArgs),
    /// Create, boot and provision the lab's nodes (in parallel where dependencies allow).
    Up(UpArgs),
    /// Run provisioning steps again on running nodes.
    Provision(ProvisionArgs),
    /// Show each node's state (from labctl's records plus one cheap check per VM).
    Status(StatusArgs),
    /// Open a shell on a node, or run a command there: `labctl ssh m-k8s -- uptime`.
    Ssh(SshArgs),
    /// Print an OpenSSH config for the lab's nodes (`labctl ssh-config >> ~/.ssh/config`).
    SshConfig(SshConfigArgs),
    /// Shut nodes down (ACPI power button, then forced after a timeout).
    Halt(HaltArgs),
    /// Delete nodes: VMs, disks and lab state. Boxes are kept.
    Destroy(DestroyArgs),
    /// Make this directory the home of a lab that was moved here (its state names the old place).
    Adopt(AdoptArgs),
    /// Manage boxes, the base images nodes are made from.
    #[command(subcommand)]
    Box(BoxCommand),
    /// Show values published by provisioning steps (e.g. the join command). They are secrets.
    Values(ValuesArgs),
    /// Write a kubeconfig for kubectl on this host (the admin one, through the API server
    /// port the lab forwards to 127.0.0.1), and print the `export KUBECONFIG=` line.
    Kubeconfig(KubeconfigArgs),
    /// Save, restore, list or delete snapshots of nodes (all nodes when none is named).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Bring broken nodes back: to the golden snapshot taken after the last good `up`, or
    /// rebuilt from the box with `--rebuild`. `--all` resets the whole lab for the next class.
    Reset(ResetArgs),
    /// List every lab on this host with its state and resources.
    List(ListArgs),
    /// Print a shell completion script (node, lab, snapshot and box names are completed from
    /// this host's state): `source <(labctl completions bash)`.
    Completions(CompletionsArgs),
    /// Write a man page for every command into DIR.
    Man(ManArgs),
    /// A class: one lab per student (class.toml), placed on hypervisor hosts by memory and
    /// brought up, reset or destroyed together.
    #[command(subcommand)]
    Class(ClassCommand),
    /// Check this host for a lab: QEMU, acceleration, memory, disk, ports, boxes, VirtualBox,
    /// ssh. Exits 1 when a check fails.
    Doctor(DoctorArgs),
    /// Classroom bundles: a lab's packages and images, served to guests from this host
    /// (docs/bundle.md).
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// (internal) Run the lab switch that connects the VMs' private NICs.
    #[command(name = "__switch", hide = true)]
    Switch(SwitchArgs),
    /// (internal) Serve every bundle read-only over HTTP on 127.0.0.1.
    #[command(name = "__bundle-server", hide = true)]
    BundleServer(BundleServerArgs),
    /// (internal) Carry one guest connection (stdin/stdout) to a host service on 127.0.0.1.
    #[command(name = "__relay", hide = true)]
    Relay(RelayArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    pub(crate) shell: Shell,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Directory for labctl.1, labctl-up.1, …
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The Vagrantfile to read.
    #[arg(default_value = "Vagrantfile", value_name = "VAGRANTFILE")]
    pub(crate) vagrantfile: PathBuf,
    /// Directory to write lab.toml and templates/ into [default: the Vagrantfile's directory].
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// The lab's name [default: from the directory name].
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Overwrite an existing lab.toml and scripts.
    #[arg(long, short)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Only these nodes (default: all).
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes))]
    pub(crate) nodes: Vec<String>,
    /// At most N nodes booting or steps running at once (default: no limit).
    #[arg(long, short = 'j', env = "LABCTL_JOBS", value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// One JSON event per line on stdout, for tools.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Only these nodes (default: all).
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes))]
    pub(crate) nodes: Vec<String>,
    /// Run only this step.
    #[arg(long, value_name = "NAME", conflicts_with = "from")]
    pub(crate) step: Option<String>,
    /// Run this step and every later one.
    #[arg(long, value_name = "NAME")]
    pub(crate) from: Option<String>,
    #[arg(long, short = 'j', env = "LABCTL_JOBS", value_name = "N")]
    pub(crate) jobs: Option<usize>,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SshArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// The node, e.g. m-k8s.
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes))]
    pub(crate) node: String,
    /// Command to run instead of a shell (after `--`).
    #[arg(last = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SshConfigArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes))]
    pub(crate) node: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct HaltArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes))]
    pub(crate) nodes: Vec<String>,
    /// Seconds to wait for a clean power-off before forcing it.
    #[arg(long, default_value_t = 60)]
    pub(crate) timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct DestroyArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes))]
    pub(crate) nodes: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub(crate) force: bool,
    /// Drop state copied from another lab (`cp -a lab lab2`): removes this directory's
    /// `.labctl/` only; no VM is stopped and nothing outside this directory is touched.
    #[arg(long, conflicts_with = "nodes")]
    pub(crate) forget: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AdoptArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BoxCommand {
    /// Add a box from a file (qcow2, raw, Vagrant libvirt or VirtualBox .box) or a URL.
    Add(BoxAddArgs),
    /// List installed boxes.
    List(BoxListArgs),
    /// Remove a box.
    Remove {
        #[arg(add = ArgValueCandidates::new(crate::complete::boxes))]
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct BoxListArgs {
    /// Machine-readable output (docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BoxAddArgs {
    /// Name labs refer to, e.g. labctl/debian-12.
    pub(crate) name: String,
    /// File path or http(s) URL.
    pub(crate) source: String,
    /// Replace an existing box of that name.
    #[arg(long)]
    pub(crate) force: bool,
    /// Login user when the box does not say.
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Private key for that user when the box ships none.
    #[arg(long)]
    pub(crate) key: Option<PathBuf>,
    /// Guest OS family when the box does not say (debian, ubuntu, rocky, centos).
    #[arg(long)]
    pub(crate) os: Option<String>,
    /// The sha256 (hex) the box file must have; a download is checked before it is used.
    #[arg(long, value_name = "HEX")]
    pub(crate) sha256: Option<String>,
    /// Allow a plain http:// URL (and redirects to http).
    #[arg(long)]
    pub(crate) insecure: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ValuesArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Only this value.
    pub(crate) name: Option<String>,
    /// Machine-readable output (docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct KubeconfigArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Write it here (default: .labctl/kubeconfig next to lab.toml; mode 0600).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Save a snapshot of the nodes, consistent across them (paused together).
    Save(SnapshotArgs),
    /// Return the nodes to a snapshot.
    Restore(SnapshotArgs),
    /// Delete a snapshot.
    Delete(SnapshotArgs),
    /// List snapshots per node.
    List(SnapshotListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Nodes, then the snapshot name: `labctl snapshot save w1-k8s before-upgrade`.
    #[arg(add = ArgValueCandidates::new(crate::complete::snapshots), required = true, num_args = 1.., value_name = "NODE… NAME")]
    pub(crate) args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotListArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes))]
    pub(crate) nodes: Vec<String>,
    /// Machine-readable output (docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Nodes to reset.
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes), required_unless_present = "all")]
    pub(crate) nodes: Vec<String>,
    /// Rebuild from the box and provision again (and rejoin with fresh values).
    #[arg(long)]
    pub(crate) rebuild: bool,
    /// Every node of the lab.
    #[arg(long, conflicts_with = "nodes")]
    pub(crate) all: bool,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) lab: LabArgs,
    /// Run the acceleration probe again instead of using the cached verdict.
    #[arg(long)]
    pub(crate) reprobe: bool,
    /// Machine-readable output: {"schema": 1, "checks": [...]}.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// The service's port on 127.0.0.1.
    pub(crate) port: u16,
}

#[derive(Debug, Args)]
pub(crate) struct SwitchArgs {
    #[arg(long)]
    pub(crate) run_dir: PathBuf,
    #[arg(long = "network")]
    pub(crate) networks: Vec<String>,
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
    #[arg(add = ArgValueCandidates::new(crate::complete::nodes))]
    pub(crate) node: Option<String>,
    /// Write files into DIR/<node>/ instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}
