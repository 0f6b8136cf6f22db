//! `labctl class …` as a user sees it: the status table and its JSON, and the errors with
//! their hints and exit codes. No VM boots: placements and a student's lab state are
//! hand-written files (a stopped node is a state entry plus an empty disk file), and every
//! error case stops before a lab is started.
// Test code: starts real processes (the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::json;

mod common;

struct World {
    tmp: tempfile::TempDir,
}

const CLASS: &str = r#"[class]
name = "k8s"
lab = "../lab"
students = ["ann", "bob", "cid"]

[[host]]
name = "h1"
uri = "local"
memory_mb = 8000

[[host]]
name = "far"
uri = "qemu+ssh://root@10.0.0.2/system"
memory_mb = 8000
"#;

impl World {
    fn new() -> World {
        let w = World {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        for d in ["home", "cache", "run", "class"] {
            std::fs::create_dir_all(w.path().join(d)).expect("mkdir");
        }
        let out = w
            .labctl()
            .args(["init", "--lab", "smoke"])
            .arg(w.path().join("lab"))
            .output()
            .expect("init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        w.write_class(CLASS);
        w
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn class_dir(&self) -> PathBuf {
        self.path().join("class")
    }

    fn write_class(&self, text: &str) {
        std::fs::write(self.class_dir().join("class.toml"), text).expect("class.toml");
    }

    fn labctl(&self) -> Command {
        let mut c = Command::cargo_bin("labctl").expect("labctl binary");
        for var in [
            "LABCTL_LAB",
            "LABCTL_CLASS",
            "LABCTL_WORKERS",
            "LABCTL_ACCEL",
            "RUST_LOG",
        ] {
            c.env_remove(var);
        }
        c.env("LABCTL_HOME", self.path().join("home"))
            .env("LABCTL_CACHE", self.path().join("cache"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("LABCTL_NO_EGRESS", "1")
            .env("LABCTL_NO_PROGRESS", "1")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .current_dir(self.class_dir());
        c
    }

    /// Exit code, stdout and stderr with this world's paths replaced by `[TMP]`.
    fn run(&self, args: &[&str]) -> String {
        let out = self.labctl().args(args).output().expect("run labctl");
        let mut s = format!(
            "$ labctl {}\nexit code: {:?}\n",
            args.join(" "),
            out.status.code()
        );
        if !out.stdout.is_empty() {
            s.push_str(&format!(
                "--- stdout\n{}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        s.push_str(&format!(
            "--- stderr\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
        let tmp = self.path().canonicalize().expect("canonical tmp");
        s.replace(&tmp.display().to_string(), "[TMP]")
            .replace(&self.path().display().to_string(), "[TMP]")
    }

    /// ann on h1 (her lab recorded with m-k8s stopped and w1-k8s not created), bob on the
    /// remote host (placed, lab not made yet), cid not placed.
    fn populate(&self) {
        let state_dir = self.class_dir().join(".labctl");
        std::fs::create_dir_all(&state_dir).expect("mkdir");
        let st = json!({
            "version": 1, "class": "k8s", "measured_mb": {},
            "placements": {"ann": {"host": "h1", "slot": 0}, "bob": {"host": "far", "slot": 1}},
        });
        std::fs::write(state_dir.join("class-state.json"), st.to_string()).expect("state");
        let box_disk = self.path().join("home/boxes/labctl--debian-12/disk.qcow2");
        std::fs::create_dir_all(box_disk.parent().expect("box dir")).expect("mkdir");
        std::fs::write(&box_disk, b"").expect("box disk");
        common::RecordedLab {
            lab_dir: &state_dir.join("labs/ann"),
            name: "k8s-ann",
            run_dir: &self.path().join("run"),
            box_disk: &box_disk,
            cpus: [1, 1],
            ssh_ports: [60010, 60010 + 91],
        }
        .write();
    }
}

#[test]
fn class_status_table() {
    let w = World::new();
    w.populate();
    insta::assert_snapshot!("status_table", w.run(&["class", "status"]));
}

#[test]
fn class_status_json() {
    let w = World::new();
    w.populate();
    insta::assert_snapshot!("status_json", w.run(&["class", "status", "--json"]));
}

#[test]
fn class_status_before_anything() {
    let w = World::new();
    insta::assert_snapshot!("status_empty", w.run(&["class", "status"]));
}

#[test]
fn errors_with_hints_and_exit_codes() {
    let w = World::new();
    // A student that fits nowhere: nothing is placed or started (exit 5).
    w.write_class(
        &CLASS
            .replace("memory_mb = 8000", "memory_mb = 1500")
            .replace(r#"["ann", "bob", "cid"]"#, "3"),
    );
    let nofit = w.run(&["class", "up"]);
    assert!(!w.class_dir().join(".labctl/class-state.json").exists());
    // An invalid class.toml: every problem located (exit 3).
    w.write_class(
        "[class]\nname = \"K8s\"\nlab = \"../nowhere\"\nstudents = [\"ann\", \"ann\"]\n\n[[host]]\nname = \"h1\"\nuri = \"qemu+tcp://10.0.0.2/system\"\n",
    );
    let invalid = w.run(&["class", "status"]);
    // A student without a lab (exit 2), and a destroy nobody confirmed (exit 2).
    w.write_class(CLASS);
    w.populate();
    let unknown = w.run(&["class", "reset", "zed"]);
    let unconfirmed = w.run(&["class", "destroy"]);
    // No class here (exit 2).
    let none = w.run(&["class", "status", "--class", "/nonexistent"]);
    insta::assert_snapshot!(
        "errors",
        [nofit, invalid, unknown, unconfirmed, none].join("\n")
    );
}

#[test]
fn ssh_config_without_labs_says_so() {
    let w = World::new();
    insta::assert_snapshot!("ssh_config_empty", w.run(&["class", "ssh-config"]));
}
