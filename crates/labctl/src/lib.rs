//! The labctl binary: command line, terminal output and exit codes.
//!
//! This is the only crate that prints or chooses exit codes; the library crates speak in
//! typed errors and events.

mod bundled;
mod cli;
mod commands;
mod complete;
mod config;
mod errors;
mod output;
mod settings;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::errors::{ExpectedError, code};

/// Advice for the drivers' typed errors, as the binary words it (for tests in other crates).
pub use crate::errors::{libvirt_hint, vbox_hint};
use crate::output::Printer;

/// Parse the command line, run the command, render any error, and return the exit code.
pub fn main_impl(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    // A completion request from the script `labctl completions SHELL` printed.
    let cwd = std::env::current_dir().ok();
    match clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command)
        .try_complete(args.clone(), cwd.as_deref())
    {
        Ok(true) => return ExitCode::from(code::OK),
        Ok(false) => {}
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(code::USAGE);
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                code::USAGE
            } else {
                code::OK
            });
        }
    };
    init_logging(cli.verbose);
    let printer = Printer::new(cli.quiet, cli.verbose > 0, cli.no_color);
    let result = match cli.command {
        Command::Init(a) => commands::init::run(&a, &printer),
        Command::Validate(a) => commands::validate::run(&a, &printer),
        Command::Import(a) => commands::import::run(&a, &printer),
        Command::Plan(a) => commands::plan::run(&a, &printer),
        Command::Render(a) => commands::render::run(&a, &printer),
        Command::Up(a) => commands::up::run(&a, &printer),
        Command::Provision(a) => commands::up::provision(&a, &printer),
        Command::Status(a) => commands::status::run(&a, &printer),
        Command::Ssh(a) => commands::ssh::run(&a, &printer),
        Command::SshConfig(a) => commands::ssh::config(&a, &printer),
        Command::Halt(a) => commands::halt::halt(&a, &printer),
        Command::Destroy(a) => commands::halt::destroy(&a, &printer),
        Command::Adopt(a) => commands::halt::adopt(&a, &printer),
        Command::Box(a) => commands::boxes::run(&a, &printer),
        Command::Values(a) => commands::status::values(&a, &printer),
        Command::Kubeconfig(a) => commands::kubeconfig::run(&a, &printer),
        Command::Snapshot(a) => commands::reset::snapshot(&a, &printer),
        Command::Reset(a) => commands::reset::reset(&a, &printer),
        Command::List(a) => commands::reset::list(&a, &printer),
        Command::Completions(a) => commands::completions::completions(&a, &printer),
        Command::Man(a) => commands::completions::man(&a, &printer),
        Command::Doctor(a) => commands::doctor::run(&a, &printer),
        Command::Class(a) => commands::class::run(&a, &printer),
        Command::Switch(a) => commands::switch::run(&a),
        Command::Bundle(a) => commands::bundle::run(&a, &printer),
        Command::BundleServer(a) => commands::bundle::server(&a, &printer),
        Command::Relay(a) => commands::relay::run(&a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            printer.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => {
            "labctl=debug,labctl_spec=debug,labctl_driver=debug,labctl_ssh=debug,labctl_runner=debug"
        }
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_target(false)
        .try_init();
}

pub(crate) type Result<T> = std::result::Result<T, ExpectedError>;
