//! `fake-vboxmanage` — a **test program**: a stand-in for VBoxManage; VirtualBox cannot run on
//! this machine (no hardware virtualization for it, and no Debian 12 package). It is never
//! shipped; labctl's tests point `LABCTL_VBOXMANAGE` (or `VBoxConfig::vboxmanage`) at it.
//!
//! It keeps "VirtualBox" in a directory given by `FAKE_VBOX_STATE`: one JSON file per VM under
//! `vms/`, `hostonlyifs.json`, `global-extradata.json`, and `calls.log` with every argv it was
//! given, one call per line (for snapshot tests of call sequences). Output formats follow
//! VirtualBox's sources (`src/VBox/Frontends/VBoxManage/VBoxManage{Info,List,Hostonly,Snapshot,
//! Misc}.cpp` in github.com/VirtualBox/virtualbox): `showvminfo --machinereadable` key=value
//! lines, `"name" {uuid}` lists, `Name:`/`IPAddress:` blocks, `VBoxManage: error:` messages.
//!
//! Environment:
//! - `FAKE_VBOX_STATE` (required): the state directory.
//! - `FAKE_VBOX_VERSION`: what `--version` prints (default `7.0.20r163906`).
//! - `FAKE_VBOX_FAIL_EXIT0=sub[,sub…]`: those subcommands print `VBoxManage: error: …` on stderr,
//!   do nothing, and exit 0 (VirtualBox does that sometimes).
//! - `FAKE_VBOX_TRANSIENT=sub:N[,…]`: the first N calls of a subcommand fail with a session-lock
//!   error (`VBOX_E_INVALID_OBJECT_STATE`), later ones work.
//! - `FAKE_VBOX_NO_VTX=1`: `startvm` fails with `VERR_VMX_NO_VMX`.
//! - `FAKE_VBOX_ACPI=ignore`: the guest ignores the ACPI power button.
//! - `FAKE_VBOX_ACPI_DELAY_MS`: how long the guest takes to power off after it (default 150).
//! - Language, as VirtualBox 7 picks it (VirtualBoxTranslator.cpp): `FAKE_VBOX_LANGUAGE_ID`
//!   (VirtualBox's own language setting, which wins over the environment), else `LC_ALL`, else
//!   `LC_MESSAGES`, else `LANG`. `ru*` prints the human-readable messages in Russian, with the
//!   texts of VirtualBox's `VBoxManageNls_ru.ts` ([`ru`]); machine-readable output is never
//!   translated.
//! - `FAKE_VBOX_HOST=macos`: a macOS host. With VirtualBox 7 there are no host-only interfaces
//!   (`hostonlyif create` fails on /dev/vboxnetctl, a VM with one fails at `startvm`: "Host-only
//!   adapters are no longer supported!"); `hostonlynet add` and `list hostonlynets` work.
//! - `FAKE_VBOX_VERSION=7.0.0`: `showvminfo` omits `Forwarding(n)` lines when NIC 1 has several
//!   rules (the 7.0.0 bug Vagrant works around in version_7_0.rb).
//! - `FAKE_VBOX_TAKEN_PORTS=P[,…]`: those host ports are taken (`first-ssh`: the SSH port of the
//!   first VM started, whatever it is); NAT logs `NAT: Failed to redirect
//!   TCP 127.0.0.1:P -> 0.0.0.0:G (Address already in use)` to the VM's `Logs/VBox.log` and the VM
//!   boots anyway (slirp.c returns 1, DrvNAT.cpp tests `< 0`).
//! - `FAKE_VBOX_STARTVM_EXIT1=1`: `startvm` starts the VM, then reports an error and exits 1.
//! - `FAKE_VBOX_GURU=1`: the guest crashes at `startvm` into `gurumeditation`, logged in VBox.log.
//! - `FAKE_VBOX_INTERRUPT=sub:N`: the first N `import`/`clonevm` calls die half-way: the machine
//!   folder and its settings file exist, nothing is registered.
//! - `FAKE_VBOX_CRLF=1`: every output line ends in CRLF (VBoxManage.exe on Windows).
//! - `FAKE_VBOX_REPLAY=FILE`: answer from a transcript (`LABCTL_VBOX_RECORD` JSON lines): each
//!   call gets the first unused recorded call with the same argv, its stdout, stderr and exit.
// A test program: re-runs itself as the recorded VBoxManage would be run.
#![allow(clippy::disallowed_methods)]

mod clonevm;
mod controlvm;
mod extradata;
mod fail;
mod hostonly;
mod import;
mod list;
mod model;
mod modifyvm;
mod nat;
mod opts;
mod ru;
mod showvminfo;
mod snapshot;
mod startvm;
mod state;
mod unregistervm;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::fail::{Res, locked, syntax};
use crate::state::{Fake, StateLock, env_list, read_json, write_json};

const DEFAULT_VERSION: &str = "7.0.20r163906";
pub(crate) const PROGRESS: &str = "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%";
pub(crate) const MAX_NICS: u8 = 8;

fn quote_arg(a: &str) -> String {
    if a.is_empty() || a.contains([' ', '\'', '"']) {
        format!("'{}'", a.replace('\'', "'\\''"))
    } else {
        a.to_string()
    }
}

impl Fake {
    pub(crate) fn run(&self, args: &[String]) -> Res {
        let sub = args.first().map_or("", String::as_str);
        match sub {
            "--version" | "-v" | "-V" | "-version" => {
                println!("{}", self.version);
                Ok(())
            }
            "list" => self.list(&args[1..]),
            "showvminfo" => self.showvminfo(&args[1..]),
            "import" => self.import(&args[1..]),
            "clonevm" => self.clonevm(&args[1..]),
            "modifyvm" => self.modifyvm(&args[1..]),
            "startvm" => self.startvm(&args[1..]),
            "controlvm" => self.controlvm(&args[1..]),
            "unregistervm" => self.unregistervm(&args[1..]),
            "snapshot" => self.snapshot(&args[1..]),
            "hostonlyif" => self.hostonlyif(&args[1..]),
            "hostonlynet" => self.hostonlynet(&args[1..]),
            "setextradata" => self.setextradata(&args[1..]),
            "getextradata" => self.getextradata(&args[1..]),
            "" => Err(syntax("No command specified")),
            other => Err(syntax(&format!("Invalid command '{other}'"))),
        }
    }
}

/// The language VirtualBox 7 would print in (VirtualBoxTranslator.cpp): its own setting,
/// else LC_ALL, LC_MESSAGES, LANG (the first that is set and not empty).
fn language() -> String {
    ["FAKE_VBOX_LANGUAGE_ID", "LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_default()
}

/// `FAKE_VBOX_CRLF=1`: run again without it and turn every `\n` into `\r\n`.
fn crlf(args: &[String]) -> ExitCode {
    let out = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(args)
            .env_remove("FAKE_VBOX_CRLF")
            .output()
    });
    let Ok(out) = out else {
        eprintln!("fake-vboxmanage: cannot re-run itself");
        return ExitCode::from(2);
    };
    let conv = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
    };
    print!("{}", conv(&out.stdout));
    eprint!("{}", conv(&out.stderr));
    let _ = std::io::stdout().flush();
    ExitCode::from(u8::try_from(out.status.code().unwrap_or(1)).unwrap_or(1))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// `FAKE_VBOX_REPLAY=FILE`: the first unused recorded call with this argv.
fn replay(state: &Path, file: &Path, args: &[String]) -> ExitCode {
    let text = fs::read_to_string(file).unwrap_or_default();
    let used_path = state.join("replay-used.json");
    let mut used: Vec<u64> = read_json(&used_path)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for (i, line) in text.lines().enumerate() {
        let i = i as u64;
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let argv: Vec<String> = entry["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if argv != args || used.contains(&i) {
            continue;
        }
        used.push(i);
        write_json(&used_path, &json!(used));
        print!("{}", s(&entry, "stdout"));
        eprint!("{}", s(&entry, "stderr"));
        let code = entry["exit"].as_i64().unwrap_or(1);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    eprintln!(
        "fake-vboxmanage: no unused recorded call for {args:?} in {}",
        file.display()
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var("FAKE_VBOX_CRLF").is_ok_and(|v| v == "1") {
        return crlf(&args);
    }
    let Some(state) = std::env::var_os("FAKE_VBOX_STATE").map(PathBuf::from) else {
        eprintln!(
            "fake-vboxmanage: FAKE_VBOX_STATE is not set (this is a test stand-in for VBoxManage)"
        );
        return ExitCode::from(2);
    };
    let _ = fs::create_dir_all(state.join("vms"));
    let _lock = StateLock::acquire(&state);
    if let Ok(mut log) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("calls.log"))
    {
        let line: Vec<String> = args.iter().map(|a| quote_arg(a)).collect();
        let _ = writeln!(log, "{}", line.join(" "));
    }
    if let Some(file) = std::env::var_os("FAKE_VBOX_REPLAY").filter(|v| !v.is_empty()) {
        return replay(&state, Path::new(&file), &args);
    }
    let fake = Fake {
        state: state.clone(),
        version: std::env::var("FAKE_VBOX_VERSION").unwrap_or_else(|_| DEFAULT_VERSION.into()),
        ru: language().starts_with("ru"),
        macos: std::env::var("FAKE_VBOX_HOST").is_ok_and(|v| v == "macos"),
    };
    let sub = args.first().cloned().unwrap_or_default();

    if env_list("FAKE_VBOX_FAIL_EXIT0").contains(&sub) {
        eprintln!(
            "VBoxManage: error: Injected failure of `{sub}` (fake-vboxmanage)\nVBoxManage: error: Details: code E_FAIL (0x80004005), component Fake, interface IFake"
        );
        return ExitCode::SUCCESS;
    }
    for spec in env_list("FAKE_VBOX_TRANSIENT") {
        let Some((name, n)) = spec.split_once(':') else {
            continue;
        };
        if name != sub {
            continue;
        }
        let n: u64 = n.parse().unwrap_or(0);
        let counter = state.join(format!("transient-{name}.count"));
        let done: u64 = fs::read_to_string(&counter)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if done < n {
            let _ = fs::write(&counter, (done + 1).to_string());
            let target = args.get(1).cloned().unwrap_or_default();
            eprint!("{}", locked(&target).stderr);
            return ExitCode::from(1);
        }
    }

    match fake.run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprint!("{}", f.stderr);
            ExitCode::from(f.code)
        }
    }
}
