//! `--json` of the read commands (docs/json.md): status, list, plan, values, box list; each a
//! snapshot of the document from a fixed state (no VM, no QEMU: the nodes are recorded as
//! stopped or not created). `snapshot list --json` is tested in `output/json.rs`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value, json};

mod common;

struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let w = World {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        for d in ["home", "cache", "run", "lab/.labctl"] {
            std::fs::create_dir_all(w.path().join(d)).expect("mkdir");
        }
        w
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn lab(&self) -> PathBuf {
        self.path().join("lab")
    }

    /// `m-k8s` stopped (a disk, no QEMU) and `w1-k8s` not created, one published value, a
    /// registry entry for the lab, and one box.
    fn populate(&self) {
        let state = self.lab().join(".labctl");
        std::fs::write(self.lab().join("lab.toml"), "[lab]\nname = \"fixture\"\n")
            .expect("lab.toml");
        let box_dir = self.path().join("home/boxes/labctl--debian-12");
        std::fs::create_dir_all(&box_dir).expect("mkdir");
        let own = common::RecordedLab {
            lab_dir: &self.lab(),
            name: "fixture",
            run_dir: &self.path().join("run"),
            box_disk: &box_dir.join("disk.qcow2"),
            cpus: [1, 2],
            ssh_ports: [60010, 60011],
        }
        .write();
        std::fs::write(
            state.join("values.json"),
            json!({"join_command": "kubeadm join 10.0.0.1:6443 --token abc"}).to_string(),
        )
        .expect("values");
        let reg = json!({ own.id.clone(): {"name": "fixture", "dir": own.lab_dir()} });
        std::fs::write(self.path().join("home/labs.json"), reg.to_string()).expect("registry");
        std::fs::write(box_dir.join("disk.qcow2"), b"").expect("box disk");
        let meta = json!({
            "name": "labctl/debian-12", "source": "/srv/boxes/debian-12.box", "sha256": "0".repeat(64),
            "size": 123_456_789, "added_at": 1_700_000_000, "disk": "disk.qcow2", "kernel": "vmlinuz",
            "initrd": "initrd.img", "cmdline": "root=/dev/vda1 console=ttyS0", "user": "vagrant",
            "private_key": "vagrant.key", "os": "debian", "ovf": null,
        });
        std::fs::write(box_dir.join("box.json"), meta.to_string()).expect("box.json");
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut c = Command::cargo_bin("labctl").expect("labctl");
        for var in [
            "LABCTL_LAB",
            "LABCTL_WORKERS",
            "LABCTL_NO_EGRESS",
            "RUST_LOG",
        ] {
            c.env_remove(var);
        }
        let out = c
            .env("LABCTL_HOME", self.path().join("home"))
            .env("LABCTL_CACHE", self.path().join("cache"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .current_dir(self.lab())
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout)
            .replace(
                &self
                    .path()
                    .canonicalize()
                    .expect("canon")
                    .display()
                    .to_string(),
                "[TMP]",
            )
            .replace(&self.path().display().to_string(), "[TMP]");
        let v: Value = serde_json::from_str(&text).expect("one JSON document on stdout");
        assert_eq!(v["schema"], 1, "{args:?}: {v}");
        v
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("json")
}

#[test]
fn status_json() {
    let w = World::new();
    w.populate();
    insta::assert_snapshot!(pretty(&w.json(&["status", "--json"])));
}

#[test]
fn list_json() {
    let w = World::new();
    w.populate();
    insta::assert_snapshot!(pretty(&w.json(&["list", "--json"])));
}

#[test]
fn values_json() {
    let w = World::new();
    w.populate();
    let all = w.json(&["values", "--json"]);
    let one = w.json(&["values", "--json", "join_command"]);
    assert_eq!(all, one);
    insta::assert_snapshot!(pretty(&all));
}

#[test]
fn box_list_json() {
    let w = World::new();
    w.populate();
    insta::assert_snapshot!(pretty(&w.json(&["box", "list", "--json"])));
}

#[test]
fn plan_json_has_schema_and_kind() {
    let w = World::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../labs/k8s-classic");
    let v = w.json(&[
        "plan",
        "--json",
        "--workers",
        "1",
        "--lab",
        repo.to_str().expect("utf-8"),
    ]);
    assert_eq!(v["kind"], "plan");
    insta::assert_snapshot!(pretty(&v));
}

#[test]
fn empty_host_documents() {
    let w = World::new();
    // A lab that was never brought up: only its lab.toml.
    std::fs::write(w.lab().join("lab.toml"), "[lab]\nname = \"fresh\"\n").expect("lab.toml");
    let mut s = String::new();
    for args in [
        &["status", "--json"][..],
        &["list", "--json"],
        &["values", "--json"],
        &["box", "list", "--json"],
    ] {
        s.push_str(&format!(
            "$ labctl {}\n{}\n",
            args.join(" "),
            pretty(&w.json(args))
        ));
    }
    insta::assert_snapshot!(s);
}

/// The user config file's defaults reach a lab that does not set them; lab.toml and the
/// environment still win (docs/configuration.md).
#[test]
fn user_config_defaults_and_precedence() {
    let w = World::new();
    let cfg = w.path().join("config.toml");
    std::fs::write(&cfg, "provider = \"virtualbox\"\negress = false\n").expect("config");
    // `plain` sets neither provider nor egress; `set` sets both.
    let plain = w.path().join("plain");
    let set = w.path().join("set");
    for (dir, extra) in [
        (&plain, ""),
        (&set, "provider = \"virtualbox\"\negress = true\n"),
    ] {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(
            dir.join("lab.toml"),
            format!("[lab]\nname = \"x\"\n{extra}\n[role.m]\n"),
        )
        .expect("lab");
    }
    let plan = |lab: &Path, extra: &[(&str, &str)]| -> Value {
        let mut c = Command::cargo_bin("labctl").expect("labctl");
        for var in [
            "LABCTL_LAB",
            "LABCTL_WORKERS",
            "LABCTL_NO_EGRESS",
            "RUST_LOG",
        ] {
            c.env_remove(var);
        }
        c.env("LABCTL_CONFIG", &cfg)
            .args(["plan", "--json", "--lab"])
            .arg(lab);
        for (k, v) in extra {
            c.env(k, v);
        }
        let out = c.output().expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    // The lab sets neither: the config file's values.
    let v = plan(&plain, &[]);
    assert_eq!(
        (v["provider"].as_str(), v["egress"].as_bool()),
        (Some("virtualbox"), Some(false))
    );
    // The lab sets both: lab.toml wins over the config file.
    std::fs::write(&cfg, "provider = \"qemu\"\negress = false\n").expect("config");
    let v = plan(&set, &[]);
    assert_eq!(
        (v["provider"].as_str(), v["egress"].as_bool()),
        (Some("virtualbox"), Some(true))
    );
    // The environment wins over lab.toml.
    let v = plan(&set, &[("LABCTL_NO_EGRESS", "1")]);
    assert_eq!(v["egress"], false);
    let v = plan(&plain, &[("LABCTL_NO_EGRESS", "1")]);
    assert_eq!(
        (v["provider"].as_str(), v["egress"].as_bool()),
        (Some("qemu"), Some(false))
    );
    // A bad file is refused with its path and line.
    std::fs::write(&cfg, "jobs = 2\nprovder = \"qemu\"\n").expect("config");
    let out = Command::cargo_bin("labctl")
        .expect("labctl")
        .env("LABCTL_CONFIG", &cfg)
        .env("NO_COLOR", "1")
        .args(["plan", "--lab"])
        .arg(&plain)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(
        String::from_utf8_lossy(&out.stderr).replace(&w.path().display().to_string(), "[TMP]")
    );
}
