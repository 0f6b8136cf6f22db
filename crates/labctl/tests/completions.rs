//! `labctl completions` and `labctl man`: the scripts for all four shells, and bash completing
//! `labctl ssh <TAB>` from a lab's recorded state.
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command as Std;

use assert_cmd::Command;

fn labctl_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("labctl")
}

struct World {
    tmp: tempfile::TempDir,
}

impl World {
    /// A lab directory with only `.labctl/state.json` (no lab.toml): names come from state.
    fn new(nodes: &[(&str, &str)]) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = tmp.path().join("lab");
        let state = lab.join(".labctl");
        std::fs::create_dir_all(&state).expect("mkdir");
        // The state must belong to this directory (id and path), or labctl refuses it.
        let own = labctl_runner::state::LabPaths::new(&lab, "fixture");
        let mut entries = serde_json::Map::new();
        for (i, (name, role)) in nodes.iter().enumerate() {
            let machine = serde_json::json!({
                "id": format!("fixture-{name}"), "hostname": name,
                "dir": state.join("machines").join(name), "run_dir": tmp.path().join("run"),
                "cpus": 1, "memory_mb": 512,
                "boot": {"disk": "/nonexistent/box.qcow2", "kernel": null, "initrd": null, "cmdline": null, "ovf": null},
                "nat_mac": format!("52:54:00:00:{i:02x}:00"), "private_nics": [],
                "ssh": {"host": 60010 + i, "guest": 22}, "forwards": [], "egress": false,
                "accel": "tcg", "nested_virt": false, "machine_id": "0".repeat(32), "group": null,
            });
            entries.insert(
                (*name).to_string(),
                serde_json::json!({"role": role, "machine": machine, "user": "vagrant", "box_key": null,
                                   "os": "debian", "configured": true, "ips": [], "steps": {}}),
            );
        }
        let st = serde_json::json!({
            "version": 1, "lab": "fixture", "id": own.id, "lab_dir": own.lab_dir(), "provider": "qemu",
            "run_dir": tmp.path().join("run"), "box_name": "labctl/debian-12", "networks": [],
            "nodes": entries, "golden": null,
        });
        std::fs::write(
            state.join("state.json"),
            serde_json::to_string_pretty(&st).expect("json"),
        )
        .expect("state");
        World { tmp }
    }

    fn lab(&self) -> PathBuf {
        self.tmp.path().join("lab")
    }

    /// Source the bash script and complete `line` (the cursor at its end) in the lab directory.
    fn bash_complete(&self, line: &str) -> Vec<String> {
        let bin_dir = labctl_bin()
            .parent()
            .map(Path::to_path_buf)
            .expect("bin dir");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let script = r#"
            source <(labctl completions bash) || exit 9
            read -ra COMP_WORDS <<< "$LINE"
            [[ "$LINE" == *" " ]] && COMP_WORDS+=("")
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            COMP_LINE="$LINE"; COMP_POINT=${#LINE}
            _clap_complete_labctl labctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            printf '%s\n' "${COMPREPLY[@]}"
        "#;
        let out = Std::new("bash")
            .args(["--norc", "--noprofile", "-c", script])
            .current_dir(self.lab())
            .env("PATH", path)
            .env("LINE", line)
            .env("LABCTL_HOME", self.tmp.path().join("home"))
            .env("LABCTL_CACHE", self.tmp.path().join("cache"))
            .env("XDG_RUNTIME_DIR", self.tmp.path().join("run"))
            .env_remove("LABCTL_LAB")
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn bash_completes_node_names_from_the_lab_state() {
    let w = World::new(&[
        ("m-k8s", "master"),
        ("w1-k8s", "worker"),
        ("w7-k8s", "worker"),
    ]);
    // An empty word: the nodes first, then the options.
    let all = w.bash_complete("labctl ssh ");
    assert_eq!(all[..3], ["m-k8s", "w1-k8s", "w7-k8s"], "{all:?}");
    assert!(all[3..].iter().all(|c| c.starts_with("--")), "{all:?}");
    assert_eq!(w.bash_complete("labctl ssh w"), ["w1-k8s", "w7-k8s"]);
    assert_eq!(w.bash_complete("labctl halt m-k8s w"), ["w1-k8s", "w7-k8s"]);
    let subs = w.bash_complete("labctl sn");
    assert_eq!(subs, ["snapshot"]);
}

#[test]
fn scripts_for_all_four_shells() {
    let mut all = String::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = Command::new(labctl_bin())
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("COMPLETE"), "{shell}: {text}");
        all.push_str(&format!("=== {shell}\n{text}"));
    }
    insta::assert_snapshot!(all);
    // The bash script is valid bash.
    let out = Command::new(labctl_bin())
        .args(["completions", "bash"])
        .output()
        .expect("run");
    let check = Std::new("bash")
        .args(["-n", "-c", &String::from_utf8_lossy(&out.stdout)])
        .output()
        .expect("bash -n");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn man_pages_for_every_command() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(labctl_bin())
        .args(["man", "--out"])
        .arg(tmp.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for cmd in [
        "labctl.1",
        "labctl-up.1",
        "labctl-import.1",
        "labctl-box-add.1",
        "labctl-snapshot-save.1",
    ] {
        assert!(
            names.iter().any(|n| n == cmd),
            "{cmd} missing from {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("switch") || n.contains("help")),
        "{names:?}"
    );
    let page = std::fs::read_to_string(tmp.path().join("labctl-ssh.1")).expect("page");
    assert!(page.starts_with(".ie"), "{page}");
    assert!(page.contains("labctl\\-ssh"), "{page}");
}
