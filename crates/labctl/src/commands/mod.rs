//! One module per command; each turns settings into calls on the library crates.

pub(crate) mod boxes;
pub(crate) mod halt;
pub(crate) mod init;
pub(crate) mod plan;
pub(crate) mod render;
pub(crate) mod reset;
pub(crate) mod ssh;
pub(crate) mod status;
pub(crate) mod switch;
pub(crate) mod up;
pub(crate) mod validate;

use std::path::PathBuf;

use labctl_spec::{Lab, Overrides};

use crate::Result;
use crate::cli::LabArgs;
use crate::errors::ExpectedError;

/// The lab.toml a command works on: `--lab PATH` (file or directory) or ./lab.toml.
pub(crate) fn lab_path(args: &LabArgs) -> Result<PathBuf> {
    let mut given = args.lab.clone().unwrap_or_else(|| PathBuf::from("."));
    // `--lab NAME` of a lab registered on this host works from anywhere.
    if !given.exists()
        && given.components().count() == 1
        && let [dir] = labctl_runner::find_lab(&env(), &given.to_string_lossy())[..].as_ref()
    {
        given = dir.clone();
    }
    let path = if given.is_dir() {
        given.join("lab.toml")
    } else {
        given.clone()
    };
    if !path.exists() {
        let dir = if given.is_dir() {
            given
        } else {
            given.parent().map(PathBuf::from).unwrap_or_default()
        };
        return Err(ExpectedError::NoLab {
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            },
        });
    }
    Ok(path)
}

/// Load and validate the lab.
pub(crate) fn load_lab(args: &LabArgs) -> Result<Lab> {
    let path = lab_path(args)?;
    let ov = Overrides {
        workers: args.workers,
        no_egress: args.no_egress,
    };
    Ok(labctl_spec::load(&path, ov)?)
}

/// The directory holding the lab (for commands that work from recorded state).
pub(crate) fn lab_dir(args: &LabArgs) -> Result<PathBuf> {
    let path = lab_path(args)?;
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    Ok(if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    })
}

/// Host settings, with this binary as the lab switch.
pub(crate) fn env() -> labctl_runner::Env {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("labctl"));
    labctl_runner::Env::from_env(labctl_runner::switch_command(exe))
}
