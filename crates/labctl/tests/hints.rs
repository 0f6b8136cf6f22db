//! Errors that carry a hint, as a user sees them: the message, the hint under it and the exit
//! code. No VM boots: each case stops before QEMU starts, and a "stopped" node is a
//! hand-written state file plus an empty disk file.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A fresh lab (`labs/smoke` with one worker) with its own data, cache and runtime
/// directories, so that no box, verdict or lab of this host is seen.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let w = World {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        for d in ["home", "cache", "run"] {
            std::fs::create_dir_all(w.tmp.path().join(d)).expect("mkdir");
        }
        let out = w
            .labctl()
            .args(["init", "--lab", "smoke"])
            .arg(w.lab())
            .output();
        let out = out.expect("init");
        assert!(out.status.success(), "{}", text(&out.stderr));
        w
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn lab(&self) -> PathBuf {
        self.path().join("lab")
    }

    /// `labctl` in the lab directory, with none of the host's labctl settings.
    fn labctl(&self) -> Command {
        let mut c = Command::cargo_bin("labctl").expect("labctl binary");
        for var in [
            "LABCTL_LAB",
            "LABCTL_QEMU_SYSTEM",
            "LABCTL_QEMU_IMG",
            "LABCTL_SSH",
            "LABCTL_ACCEL",
            "RUST_LOG",
        ] {
            c.env_remove(var);
        }
        c.env("LABCTL_HOME", self.path().join("home"))
            .env("LABCTL_CACHE", self.path().join("cache"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("LABCTL_WORKERS", "1")
            .env("LABCTL_NO_EGRESS", "1")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100");
        if self.lab().is_dir() {
            c.current_dir(self.lab());
        }
        c
    }

    /// Exit code, stdout and stderr with this world's paths replaced by `[TMP]`.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut c = self.labctl();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out: Output = c.output().expect("run labctl");
        let mut s = format!(
            "$ labctl {}\nexit code: {:?}\n",
            args.join(" "),
            out.status.code()
        );
        if !out.stdout.is_empty() {
            s.push_str(&format!("--- stdout\n{}", text(&out.stdout)));
        }
        s.push_str(&format!("--- stderr\n{}", text(&out.stderr)));
        let tmp = self.path().canonicalize().expect("canonical tmp");
        // The lab id's hex comes from the temporary path.
        let id = labctl_runner::state::LabPaths::new(&self.lab(), "smoke").id;
        s.replace(&tmp.display().to_string(), "[TMP]")
            .replace(&self.path().display().to_string(), "[TMP]")
            .replace(&id, "smoke-[ID]")
    }

    /// Record the lab as brought up, with each node stopped (an empty disk file, no QEMU)
    /// or not created (no disk), without booting anything.
    fn write_state(&self, nodes: &[(&str, &str, bool)]) {
        let state = self.lab().join(".labctl");
        let run = self.path().join("run/labctl/test");
        // The state must belong to this directory (its id and path) and name box files in
        // the box store, or labctl refuses it as foreign or corrupt.
        let own = labctl_runner::state::LabPaths::new(&self.lab(), "smoke");
        let box_disk = self.path().join("home/boxes/labctl--debian-12/disk.qcow2");
        let mut entries = Vec::new();
        for (i, (name, role, stopped)) in nodes.iter().enumerate() {
            let dir = state.join("machines").join(name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            if *stopped {
                std::fs::write(dir.join("disk.qcow2"), b"").expect("disk");
            }
            let machine = serde_json::json!({
                "id": format!("{}-{name}", own.id),
                "hostname": name,
                "dir": dir,
                "run_dir": run,
                "cpus": 1,
                "memory_mb": 512,
                "boot": {"disk": box_disk, "kernel": null, "initrd": null,
                         "cmdline": null, "ovf": null},
                "nat_mac": format!("52:54:00:00:{i:02x}:00"),
                "private_nics": [],
                "ssh": {"host": 60010 + i, "guest": 22},
                "forwards": [],
                "egress": false,
                "accel": "tcg",
                "nested_virt": false,
                "machine_id": "0".repeat(32),
                "group": null,
            });
            entries.push((
                (*name).to_string(),
                serde_json::json!({
                    "role": role, "machine": machine, "user": "vagrant", "box_key": null,
                    "os": "debian", "configured": true, "ips": [], "steps": {},
                }),
            ));
        }
        let st = serde_json::json!({
            "version": 1,
            "lab": "smoke",
            "id": own.id,
            "lab_dir": own.lab_dir(),
            "provider": "qemu",
            "run_dir": run,
            "box_name": "labctl/debian-12",
            "networks": [],
            "nodes": serde_json::Map::from_iter(entries),
            "golden": null,
        });
        std::fs::write(
            state.join("state.json"),
            serde_json::to_string_pretty(&st).expect("json"),
        )
        .expect("state");
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn no_box() {
    let w = World::new();
    insta::assert_snapshot!("no_box", w.run(&["up"], &[]));
}

#[test]
fn not_brought_up() {
    let w = World::new();
    let mut s = String::new();
    for args in [
        &["ssh", "m-k8s"][..],
        &["provision"],
        &["snapshot", "save", "before"],
        &["reset", "m-k8s"],
    ] {
        s.push_str(&w.run(args, &[]));
    }
    insta::assert_snapshot!("not_brought_up", s);
}

#[test]
fn lock_held() {
    let w = World::new();
    w.write_state(&[("m-k8s", "master", true)]);
    let path = w.lab().join(".labctl/lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("lock file");
    file.try_lock().expect("take the lab lock");
    std::fs::write(&path, "pid 4242\n").expect("holder");
    insta::assert_snapshot!("lock_held", w.run(&["halt"], &[]));
    drop(file);
}

#[test]
fn no_golden_snapshot() {
    let w = World::new();
    w.write_state(&[("m-k8s", "master", true), ("w1-k8s", "worker", true)]);
    insta::assert_snapshot!("no_golden_snapshot", w.run(&["reset", "w1-k8s"], &[]));
}

#[test]
fn qemu_missing() {
    let w = World::new();
    let empty = w.path().join("empty-bin");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let mut s = w.run(&["up"], &[("PATH", empty.to_str().expect("utf-8 path"))]);
    s.push_str(&w.run(
        &["up"],
        &[("LABCTL_QEMU_SYSTEM", "/nonexistent/qemu-system-x86_64")],
    ));
    insta::assert_snapshot!("qemu_missing", s);
}

#[test]
fn node_not_running() {
    let w = World::new();
    w.write_state(&[("m-k8s", "master", true), ("w1-k8s", "worker", false)]);
    let mut s = String::new();
    for args in [
        &["ssh", "m-k8s", "--", "true"][..],
        &["ssh", "w1-k8s"],
        &["provision"],
        &["provision", "m-k8s"],
        &["snapshot", "save", "w1-k8s", "before"],
        &["reset", "w1-k8s"],
        // ssh-config still prints: it only reads the recorded ports.
        &["ssh-config", "m-k8s"],
    ] {
        s.push_str(&w.run(args, &[]));
    }
    insta::assert_snapshot!("node_not_running", s);
}

/// A copied lab (`cp -a lab lab2`): every command refuses the original's state and says how
/// to fix it; `adopt` refuses while the original is in place; `destroy --forget` drops the copy.
#[test]
fn copied_lab() {
    let w = World::new();
    w.write_state(&[("m-k8s", "master", true)]);
    let copy = w.path().join("lab2");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(w.lab())
            .arg(&copy)
            .status()
            .expect("cp")
            .success()
    );
    let lab2 = copy.to_str().expect("utf-8 path");
    let mut s = String::new();
    for args in [
        &["status", "--lab", lab2][..],
        &["destroy", "-f", "--lab", lab2],
        &["adopt", "--lab", lab2],
        &["destroy", "--forget", "--lab", lab2],
        &["destroy", "--forget"],
    ] {
        s.push_str(&w.run(args, &[]));
    }
    assert!(!copy.join(".labctl").exists());
    assert!(w.lab().join(".labctl/state.json").exists());
    insta::assert_snapshot!("copied_lab", s);
}
