//! Errors that carry a hint, as a user sees them: the message, the hint under it and the exit
//! code. No VM boots: each case stops before QEMU starts, and a "stopped" node is a
//! hand-written state file plus an empty disk file.
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A fresh lab (`labs/smoke` with one worker) with its own data, cache and runtime
/// directories, so that no box, verdict or lab of this host is seen.
struct World {
    tmp: tempfile::TempDir,
    /// `LABCTL_PORT_OFFSET` for every labctl call (the lab's ports moved without editing it).
    port_offset: std::cell::Cell<i32>,
}

impl World {
    fn new() -> World {
        let w = World {
            tmp: tempfile::tempdir().expect("tempdir"),
            port_offset: std::cell::Cell::new(0),
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
            "LABCTL_BUNDLE",
            "LABCTL_URI",
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
            .env("COLUMNS", "100")
            .env("LABCTL_PORT_OFFSET", self.port_offset.get().to_string());
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

// ---------------------------------------------------------------- doctor

fn doctor_json(w: &World, env: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    let mut c = w.labctl();
    c.args(["doctor", "--json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("doctor");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    (out.status.code(), v)
}

#[test]
fn doctor() {
    let w = World::new();
    // A small box of our own: a qcow2 made by the real qemu-img, added as a user would.
    let disk = w.path().join("tiny.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("16M")
        .status()
        .expect("qemu-img");
    assert!(made.success());
    let added = w
        .labctl()
        .args(["box", "add", "test/tiny"])
        .arg(&disk)
        .output()
        .expect("box add");
    assert!(added.status.success(), "{}", text(&added.stderr));
    // The lab: that box, TCG fixed (no probe), the worker's SSH port (60101 in lab.toml) held
    // by this test and the master's (60010: 91 below) free, both moved there by
    // LABCTL_PORT_OFFSET.
    let (held, held_port) = loop {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        if port > 1024 + 91 && std::net::TcpListener::bind(("127.0.0.1", port - 91)).is_ok() {
            break (held, port);
        }
    };
    w.port_offset.set(i32::from(held_port) - 60101);
    let toml = std::fs::read_to_string(w.lab().join("lab.toml")).expect("lab.toml");
    let toml = toml.replace(
        "box = \"labctl/debian-12\"",
        "box = \"test/tiny\"\naccel = \"tcg\"",
    );
    std::fs::write(w.lab().join("lab.toml"), toml).expect("lab.toml");

    let settings = {
        let mut s = insta::Settings::clone_current();
        for (re, to) in [
            (r"\d+\.\d+ GiB|\d+ MiB", "[SIZE]"),
            (
                r"(qemu-system-x86_64|qemu-img) \d+\.\d+(\.\d+)?",
                "$1 [VERSION]",
            ),
            (r"ssh OpenSSH\S*( [^ (]+)?", "ssh [VERSION]"),
            (
                r"\(/[^)]*/(qemu-system-x86_64|qemu-img|ssh)\)",
                "([PATH]/$1)",
            ),
            (&format!(r"\b{held_port}\b"), "[HELD]"),
            // Free memory and disk depend on the machine: their level is checked from
            // --json below.
            (r"(?m)^(ok  |warn|fail)  (memory|disk):", "[LEVEL]  $2:"),
            (r"\d+ ok, \d+ warning\(s\), \d+ failure\(s\)", "[COUNTS]"),
            (
                r"exit code: Some\([01]\)",
                "exit code: [0 unless memory or disk fail]",
            ),
        ] {
            s.add_filter(re, to);
        }
        s
    };
    // LABCTL_NO_EGRESS set here, whatever the caller's environment, so the settings lines
    // are stable.
    let mut out = w.run(&["doctor"], &[("LABCTL_NO_EGRESS", "1")]);
    out.push_str(&w.run(
        &["doctor"],
        &[
            ("LABCTL_QEMU_SYSTEM", "/nonexistent/qemu-system-x86_64"),
            ("LABCTL_NO_EGRESS", "1"),
        ],
    ));
    settings.bind(|| insta::assert_snapshot!("doctor", out));

    // --json: versioned, one object per check with its level, message and fix, and the
    // exit code follows the levels.
    let (code, v) = doctor_json(&w, &[]);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["kind"], "doctor");
    assert_eq!(v["lab"], "smoke");
    let checks = v["checks"].as_array().expect("checks");
    let level = |c: &serde_json::Value| c["level"].as_str().unwrap_or_default().to_string();
    for c in checks {
        assert!(c["message"].is_string() && !c["check"].is_null(), "{c}");
        if let Some(a) = c["available_mb"].as_u64() {
            let need = c["needed_mb"].as_u64().expect("needed_mb");
            assert_eq!(level(c), if a < need { "fail" } else { "ok" }, "{c}");
        }
    }
    let mem = checks
        .iter()
        .find(|c| c["check"] == "memory")
        .expect("memory");
    assert_eq!(mem["needed_mb"], 768 + 512, "both nodes are to start");
    let ports = checks
        .iter()
        .find(|c| c["check"] == "ports")
        .expect("ports");
    assert_eq!(ports["checked"], 2);
    assert_eq!(ports["taken"][0]["host"], held_port);
    assert_eq!(ports["taken"][0]["node"], "w1-k8s");
    assert_eq!(level(ports), "warn");
    let any_fail = checks.iter().any(|c| level(c) == "fail");
    assert_eq!(code, Some(i32::from(any_fail)));

    // Where each setting came from: accel from lab.toml, jobs from the config file, egress
    // from the environment when LABCTL_NO_EGRESS is set and the default when it is not.
    let cfg = w.path().join("config.toml");
    std::fs::write(&cfg, "jobs = 2\nprovider = \"virtualbox\"\n").expect("config");
    let settings_of = |no_egress: Option<&str>| -> Vec<String> {
        let mut c = w.labctl();
        c.args(["doctor", "--json"]).env("LABCTL_CONFIG", &cfg);
        match no_egress {
            Some(v) => c.env("LABCTL_NO_EGRESS", v),
            None => c.env_remove("LABCTL_NO_EGRESS"),
        };
        let out = c.output().expect("doctor");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
        v["settings"]
            .as_array()
            .expect("settings")
            .iter()
            .map(|s| format!("{}={} {}", s["key"], s["value"], s["source"]["kind"]))
            .collect()
    };
    assert_eq!(
        settings_of(None),
        [
            r#""provider"="virtualbox" "user_config""#,
            r#""accel"="tcg" "lab""#,
            r#""egress"="on" "default""#,
            r#""jobs"="2" "user_config""#,
            r#""bundle"="none" "default""#,
            r#""uri"="libvirt's default (qemu:///system as root, else qemu:///session)" "default""#,
        ]
    );
    assert_eq!(settings_of(Some("1"))[2], r#""egress"="off" "env""#);

    let (code, v) = doctor_json(
        &w,
        &[("LABCTL_QEMU_SYSTEM", "/nonexistent/qemu-system-x86_64")],
    );
    assert_eq!(code, Some(1), "QEMU missing is a failure: {v}");

    // A box whose disk changed since it was added fails, and so does doctor.
    let placed = w.path().join("home/boxes/test--tiny/disk.qcow2");
    let mut bytes = std::fs::read(&placed).expect("box disk");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&placed, bytes).expect("write");
    let (code, v) = doctor_json(&w, &[]);
    assert_eq!(code, Some(1));
    let b = v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "box"))
        .expect("box check");
    assert_eq!(b["level"], "fail");
    assert_eq!(b["files"][0]["state"], "changed", "{b}");
    insta::assert_snapshot!(
        "doctor_damaged_box",
        format!(
            "{}\nfix: {}",
            b["message"].as_str().unwrap_or_default(),
            b["fix"].as_str().unwrap_or_default()
        )
    );
    drop(held);
}

/// A box that a registered lab's nodes are made from is not removed or replaced (every
/// node's disk is an overlay on it); the error names the lab and its nodes.
#[test]
fn box_in_use() {
    let w = World::new();
    w.write_state(&[("m-k8s", "master", true), ("w1-k8s", "worker", true)]);
    let own = labctl_runner::state::LabPaths::new(&w.lab(), "smoke");
    let reg = serde_json::json!({ own.id.clone(): {"name": "smoke", "dir": own.lab_dir()} });
    std::fs::create_dir_all(w.path().join("home")).expect("mkdir");
    std::fs::write(w.path().join("home/labs.json"), reg.to_string()).expect("registry");
    let mut s = w.run(&["box", "remove", "labctl/debian-12"], &[]);
    s.push_str(&w.run(
        &[
            "box",
            "add",
            "--force",
            "labctl/debian-12",
            "/nonexistent.box",
        ],
        &[],
    ));
    // Another box is not in use: its removal goes on to the store (which does not have it).
    s.push_str(&w.run(&["box", "remove", "other/box"], &[]));
    insta::assert_snapshot!("box_in_use", s);
}
