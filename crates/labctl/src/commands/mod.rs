//! One module per command; each turns settings into calls on the library crates.

pub(crate) mod boxes;
pub(crate) mod bundle;
pub(crate) mod class;
pub(crate) mod completions;
pub(crate) mod doctor;
pub(crate) mod halt;
pub(crate) mod import;
pub(crate) mod init;
pub(crate) mod kubeconfig;
pub(crate) mod plan;
pub(crate) mod relay;
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
    let config = crate::config::load()?;
    let ov = Overrides {
        workers: args.workers,
        no_egress: args.no_egress,
        defaults: config.lab_defaults(),
        port_offset: args.port_offset.unwrap_or(0),
    };
    let mut lab = labctl_spec::load(&path, ov)?;
    // The bundle: --bundle / LABCTL_BUNDLE, then lab.toml, then the config file.
    if let Some(b) = args.bundle.as_ref().filter(|b| !b.trim().is_empty()) {
        if !labctl_spec::bundle_name_ok(b) {
            return Err(ExpectedError::Bundle(labctl_bundle::Error::BadName(
                b.clone(),
            )));
        }
        lab.bundle = Some(b.clone());
    } else if lab.bundle.is_none() {
        lab.bundle = config.bundle.clone();
    }
    if let Some(u) = args.uri.as_ref().filter(|u| !u.trim().is_empty()) {
        lab.uri = Some(u.clone());
    }
    if let Some(a) = args.accel {
        lab.accel = match a {
            crate::cli::AccelArg::Auto => labctl_spec::Accel::Auto,
            crate::cli::AccelArg::Kvm => labctl_spec::Accel::Kvm,
            crate::cli::AccelArg::Tcg => labctl_spec::Accel::Tcg,
        };
    }
    Ok(lab)
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

/// Host settings, with this binary as the lab switch, the guest-connection relay and the
/// bundle server.
pub(crate) fn env() -> labctl_runner::Env {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("labctl"));
    let mut env = labctl_runner::Env::from_env(labctl_runner::switch_command(exe.clone()));
    env.relay_command = labctl_runner::relay_command(exe.clone());
    env.bundle_server_command = labctl_runner::bundle_server_command(exe);
    env
}

/// Host settings for a lab command: `--uri` (already `LABCTL_URI` when given so) wins over
/// the lab's libvirt URI.
pub(crate) fn env_for(args: &LabArgs) -> labctl_runner::Env {
    let mut env = env();
    if let Some(u) = args.uri.as_ref().filter(|u| !u.trim().is_empty()) {
        env.uri = Some(u.clone());
    }
    env
}

/// Run blocking library work on a tokio runtime whose only other task turns Ctrl-C into the
/// `cancel` flag the runner checks (a step in flight is hung up, nothing unfinished recorded).
pub(crate) fn with_ctrl_c<T: Send + 'static>(
    cancel: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    on_interrupt: impl FnOnce() + Send + 'static,
    work: impl FnOnce() -> std::result::Result<T, labctl_runner::RunnerError> + Send + 'static,
) -> Result<std::result::Result<T, labctl_runner::RunnerError>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ExpectedError::Write {
            path: "tokio runtime".into(),
            source,
        })?;
    let c = cancel.clone();
    Ok(rt.block_on(async move {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c.store(true, std::sync::atomic::Ordering::Relaxed);
                on_interrupt();
            }
        });
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or(Err(labctl_runner::RunnerError::Interrupted))
    }))
}
