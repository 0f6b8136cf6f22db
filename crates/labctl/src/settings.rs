//! Where each setting's value comes from, for `labctl doctor` (provider, accel, egress, jobs,
//! bundle, uri): command-line flag >
//! environment variable > lab.toml > user config file > built-in default (docs/internals.md).
//!
//! The commands apply the same order where they resolve a value (clap merges a flag with its
//! variable; `labctl_spec::load` puts lab.toml over the config file's defaults); this module
//! only explains the outcome, layer by layer, so that the two cannot disagree silently: the
//! tests below compare it with what `load_lab` resolved.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::UserConfig;

/// The layer a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Source {
    Flag { flag: &'static str },
    Env { variable: &'static str },
    Lab { path: PathBuf },
    UserConfig { path: PathBuf },
    Default,
}

/// One setting, its effective value and where that value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Setting {
    pub(crate) key: &'static str,
    pub(crate) value: String,
    pub(crate) source: Source,
}

/// The candidate values of one setting, highest layer first.
#[derive(Debug, Default)]
struct Layers {
    flag: Option<(&'static str, String)>,
    env: Option<(&'static str, String)>,
    lab: Option<String>,
    user: Option<String>,
}

impl Layers {
    fn pick(self, key: &'static str, default: &str, lab: &Path, user: &Path) -> Setting {
        let (value, source) = if let Some((flag, v)) = self.flag {
            (v, Source::Flag { flag })
        } else if let Some((variable, v)) = self.env {
            (v, Source::Env { variable })
        } else if let Some(v) = self.lab {
            (
                v,
                Source::Lab {
                    path: lab.to_path_buf(),
                },
            )
        } else if let Some(v) = self.user {
            (
                v,
                Source::UserConfig {
                    path: user.to_path_buf(),
                },
            )
        } else {
            (default.to_string(), Source::Default)
        };
        Setting { key, value, source }
    }
}

/// What the process was given: its arguments and environment (tests pass their own).
pub(crate) struct Inputs<'a> {
    pub(crate) argv: &'a [OsString],
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    /// lab.toml's path and text, when a lab is in play.
    pub(crate) lab: Option<(&'a Path, &'a str)>,
    pub(crate) user: &'a UserConfig,
    pub(crate) user_path: Option<&'a Path>,
}

/// `--flag`, `--flag=value` or `--flag value` among the arguments (before a `--`); the value
/// itself is clap's, this only says the flag was typed.
fn typed(argv: &[OsString], flags: &[&str]) -> bool {
    argv.iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .take_while(|a| a != "--")
        .any(|a| {
            flags
                .iter()
                .any(|f| a == *f || a.strip_prefix(f).is_some_and(|r| r.starts_with('=')))
        })
}

/// clap's FalseyValueParser: empty, `0`, `n`, `no`, `f`, `false`, `off` are false.
fn truthy(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "n" | "no" | "f" | "false" | "off"
    )
}

/// `[lab] <key>` of lab.toml as text, if set.
fn lab_key(table: Option<&toml::Table>, key: &str) -> Option<String> {
    let v = table?.get("lab")?.as_table()?.get(key)?;
    Some(match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Every layered setting labctl reads, resolved and explained.
pub(crate) fn explain(i: &Inputs<'_>) -> Vec<Setting> {
    let table: Option<toml::Table> = i.lab.and_then(|(_, t)| toml::from_str(t).ok());
    let table = table.as_ref();
    let lab_path = i.lab.map(|(p, _)| p).unwrap_or(Path::new("lab.toml"));
    let user_path = i.user_path.unwrap_or(Path::new("config.toml"));
    let env = |k: &'static str| (i.env)(k).filter(|v| !v.is_empty()).map(|v| (k, v));
    let mut out = Vec::new();

    let provider = Layers {
        lab: lab_key(table, "provider"),
        user: i.user.provider.clone(),
        ..Layers::default()
    };
    out.push(provider.pick("provider", "qemu", lab_path, user_path));

    let accel = Layers {
        flag: flag_value(i.argv, "--accel").map(|v| ("--accel", v)),
        env: env("LABCTL_ACCEL").map(|(k, v)| (k, v.to_ascii_lowercase())),
        lab: lab_key(table, "accel"),
        user: i.user.accel.clone(),
    };
    out.push(accel.pick("accel", "auto", lab_path, user_path));

    // Egress: the flag and the variable can only turn it off.
    let egress = Layers {
        flag: typed(i.argv, &["--no-egress"]).then(|| ("--no-egress", "off".to_string())),
        env: env("LABCTL_NO_EGRESS")
            .filter(|(_, v)| truthy(v))
            .map(|(k, _)| (k, "off".to_string())),
        lab: lab_key(table, "egress").map(|v| on_off(&v)),
        user: i.user.egress.map(|b| on_off(&b.to_string())),
    };
    out.push(egress.pick("egress", "on", lab_path, user_path));

    let jobs = Layers {
        flag: flag_value(i.argv, "--jobs")
            .or_else(|| flag_value(i.argv, "-j"))
            .map(|v| ("--jobs", v)),
        env: env("LABCTL_JOBS"),
        lab: None,
        user: i.user.jobs.map(|j| j.to_string()),
    };
    out.push(jobs.pick("jobs", "all nodes at once", lab_path, user_path));

    let bundle = Layers {
        flag: flag_value_raw(i.argv, "--bundle").map(|v| ("--bundle", v)),
        env: env("LABCTL_BUNDLE"),
        lab: lab_key(table, "bundle"),
        user: i.user.bundle.clone(),
    };
    out.push(bundle.pick("bundle", "none", lab_path, user_path));

    let uri = Layers {
        flag: flag_value_raw(i.argv, "--uri").map(|v| ("--uri", v)),
        env: env("LABCTL_URI"),
        lab: lab_key(table, "uri"),
        user: None,
    };
    out.push(uri.pick(
        "uri",
        "libvirt's default (qemu:///system as root, else qemu:///session)",
        lab_path,
        user_path,
    ));
    out
}

fn on_off(v: &str) -> String {
    if v == "true" { "on" } else { "off" }.to_string()
}

/// The value given to `flag` on the command line, lowercased (mode names).
fn flag_value(argv: &[OsString], flag: &str) -> Option<String> {
    flag_value_raw(argv, flag).map(|v| v.to_ascii_lowercase())
}

/// The value given to `flag` on the command line (`--flag V` or `--flag=V`), if typed.
fn flag_value_raw(argv: &[OsString], flag: &str) -> Option<String> {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| a != "--")
        .collect();
    let mut found = None;
    for (k, a) in args.iter().enumerate() {
        if a == flag {
            found = args.get(k + 1).cloned();
        } else if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            found = Some(v.to_string());
        }
    }
    found
}

/// The process's own inputs.
pub(crate) fn explain_process(lab: Option<(&Path, &str)>, user: &UserConfig) -> Vec<Setting> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let user_path = crate::config::path();
    explain(&Inputs {
        argv: &argv,
        env: &|k| std::env::var(k).ok(),
        lab,
        user,
        user_path: user_path.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<OsString> {
        std::iter::once("labctl")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn run(a: &[&str], env: &[(&str, &str)], lab: &str, user: UserConfig) -> Vec<String> {
        let argv = argv(a);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        explain(&Inputs {
            argv: &argv,
            env: &get,
            lab: Some((Path::new("/labs/k8s/lab.toml"), lab)),
            user: &user,
            user_path: Some(Path::new("/home/u/.config/labctl/config.toml")),
        })
        .iter()
        .map(|s| {
            let src = match &s.source {
                Source::Flag { flag } => flag.to_string(),
                Source::Env { variable } => variable.to_string(),
                Source::Lab { path } => path.display().to_string(),
                Source::UserConfig { path } => path.display().to_string(),
                Source::Default => "default".into(),
            };
            format!("{}={} ({src})", s.key, s.value)
        })
        .collect()
    }

    #[test]
    fn each_layer_wins_over_the_ones_below_it() {
        let user = UserConfig {
            provider: Some("virtualbox".into()),
            accel: Some("tcg".into()),
            jobs: Some(2),
            egress: Some(false),
            bundle: Some("class-b".into()),
        };
        // Only the config file: it gives everything.
        assert_eq!(
            run(&["doctor"], &[], "[lab]\nname = \"x\"\n", user.clone()),
            [
                "provider=virtualbox (/home/u/.config/labctl/config.toml)",
                "accel=tcg (/home/u/.config/labctl/config.toml)",
                "egress=off (/home/u/.config/labctl/config.toml)",
                "jobs=2 (/home/u/.config/labctl/config.toml)",
                "bundle=class-b (/home/u/.config/labctl/config.toml)",
                "uri=libvirt's default (qemu:///system as root, else qemu:///session) (default)",
            ]
        );
        // lab.toml over the config file.
        let lab = "[lab]\nname = \"x\"\nprovider = \"qemu\"\naccel = \"kvm\"\negress = true\nbundle = \"k8s\"\nuri = \"qemu:///session\"\n";
        assert_eq!(
            run(&["doctor"], &[], lab, user.clone()),
            [
                "provider=qemu (/labs/k8s/lab.toml)",
                "accel=kvm (/labs/k8s/lab.toml)",
                "egress=on (/labs/k8s/lab.toml)",
                "jobs=2 (/home/u/.config/labctl/config.toml)",
                "bundle=k8s (/labs/k8s/lab.toml)",
                "uri=qemu:///session (/labs/k8s/lab.toml)",
            ]
        );
        // The environment over lab.toml; a falsey LABCTL_NO_EGRESS does not turn egress off.
        let env = [
            ("LABCTL_ACCEL", "TCG"),
            ("LABCTL_NO_EGRESS", "1"),
            ("LABCTL_JOBS", "3"),
            ("LABCTL_BUNDLE", "Env-B"),
        ];
        assert_eq!(
            run(&["doctor"], &env, lab, user.clone()),
            [
                "provider=qemu (/labs/k8s/lab.toml)",
                "accel=tcg (LABCTL_ACCEL)",
                "egress=off (LABCTL_NO_EGRESS)",
                "jobs=3 (LABCTL_JOBS)",
                "bundle=Env-B (LABCTL_BUNDLE)",
                "uri=qemu:///session (/labs/k8s/lab.toml)",
            ]
        );
        assert_eq!(
            run(
                &["doctor"],
                &[("LABCTL_NO_EGRESS", "no")],
                lab,
                user.clone()
            )[2],
            "egress=on (/labs/k8s/lab.toml)"
        );
        // Flags over the environment.
        assert_eq!(
            run(
                &[
                    "up",
                    "--accel=auto",
                    "--no-egress",
                    "-j",
                    "4",
                    "--bundle",
                    "Flag-B",
                    "--uri=qemu+ssh://u@h/system",
                ],
                &env,
                lab,
                user.clone()
            )[1..],
            [
                "accel=auto (--accel)",
                "egress=off (--no-egress)",
                "jobs=4 (--jobs)",
                "bundle=Flag-B (--bundle)",
                "uri=qemu+ssh://u@h/system (--uri)",
            ]
        );
        // Nothing anywhere: the built-in defaults.
        assert_eq!(
            run(&["doctor"], &[], "[lab]\n", UserConfig::default()),
            [
                "provider=qemu (default)",
                "accel=auto (default)",
                "egress=on (default)",
                "jobs=all nodes at once (default)",
                "bundle=none (default)",
                "uri=libvirt's default (qemu:///system as root, else qemu:///session) (default)",
            ]
        );
        // After `--`, nothing is a flag.
        assert_eq!(
            run(
                &["ssh", "--", "--accel", "kvm"],
                &[],
                "[lab]\n",
                UserConfig::default()
            )[1],
            "accel=auto (default)"
        );
    }
}
