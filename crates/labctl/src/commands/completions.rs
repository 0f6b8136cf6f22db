//! `labctl completions SHELL` and `labctl man --out DIR`.

use clap::CommandFactory;

use crate::Result;
use crate::cli::{Cli, CompletionsArgs, ManArgs, Shell};
use crate::errors::{ExpectedError, code};
use crate::output::Printer;

/// The registration script of clap_complete's dynamic engine: the shell calls
/// `COMPLETE=SHELL labctl -- WORDS…` and labctl answers (see `complete.rs`).
pub(crate) fn completions(args: &CompletionsArgs, p: &Printer) -> Result<u8> {
    let name = match args.shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
        Shell::Powershell => "powershell",
    };
    let shells = clap_complete::env::Shells::builtins();
    let mut buf = Vec::new();
    if let Some(sh) = shells.completer(name) {
        sh.write_registration("COMPLETE", "labctl", "labctl", "labctl", &mut buf)
            .map_err(|source| ExpectedError::Write {
                path: "stdout".into(),
                source,
            })?;
    }
    p.out(String::from_utf8_lossy(&buf).trim_end());
    Ok(code::OK)
}

/// One page per command and subcommand: labctl.1, labctl-up.1, labctl-box-add.1, …
pub(crate) fn man(args: &ManArgs, p: &Printer) -> Result<u8> {
    let err = |source| ExpectedError::Write {
        path: args.out.clone(),
        source,
    };
    std::fs::create_dir_all(&args.out).map_err(err)?;
    clap_mangen::generate_to(Cli::command(), &args.out).map_err(err)?;
    let n = std::fs::read_dir(&args.out)
        .map(|d| {
            d.filter_map(std::result::Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
                .count()
        })
        .unwrap_or(0);
    p.info(format!("wrote {n} man pages to {}", args.out.display()));
    Ok(code::OK)
}
