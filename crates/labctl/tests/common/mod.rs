//! The harness of the end-to-end tests that boot real QEMU guests: a fresh host (labctl
//! data and cache directories), a lab copied from the bundled smoke lab with its own ports,
//! and a guard that stops the lab's VMs by recorded PID even when an assertion fails.
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]
#![allow(dead_code)] // each test binary uses its own part of the harness

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn cache_dir() -> PathBuf {
    std::env::var_os("LABCTL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/labctl")
        })
}

pub fn box_file() -> PathBuf {
    cache_dir().join("boxes/labctl-debian-12.box")
}

/// The test needs the locally built box; in CI its absence is a failure, elsewhere a skip.
pub fn have_box() -> bool {
    if box_file().exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: scripts/test.sh builds it with scripts/build-box.sh",
        box_file().display()
    );
    eprintln!(
        "skipping: no box at {} (run scripts/build-box.sh)",
        box_file().display()
    );
    false
}

/// What a new user has: empty labctl data and cache directories (no added box, no cached
/// acceleration verdict). Only the box file that `scripts/build-box.sh` wrote is linked in,
/// so labctl finds and adds it by itself as it does for a user who built it.
pub struct Host {
    _tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub cache: PathBuf,
}

impl Host {
    pub fn new() -> std::sync::Arc<Host> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        let cache = tmp.path().join("cache");
        std::fs::create_dir_all(cache.join("boxes")).expect("cache dir");
        std::os::unix::fs::symlink(box_file(), cache.join("boxes/labctl-debian-12.box"))
            .expect("link the box");
        std::sync::Arc::new(Host {
            _tmp: tmp,
            home,
            cache,
        })
    }
}

pub struct Lab {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub host: std::sync::Arc<Host>,
    /// Extra environment for every labctl call of this lab.
    pub env: Vec<(String, String)>,
    /// A command that runs labctl (e.g. `ip netns exec NAME`), empty for none.
    pub wrap: Vec<String>,
}

impl Lab {
    /// A copy of the bundled smoke lab with its own ports and stand-in timings, on a fresh host.
    pub fn smoke(port_base: u16, prep_seconds: u32) -> Lab {
        Lab::smoke_on(Host::new(), port_base, prep_seconds)
    }

    /// A lab from the given lab.toml text, on a fresh host.
    pub fn from_toml(toml: &str) -> Lab {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("lab");
        std::fs::create_dir_all(&dir).expect("lab dir");
        std::fs::write(dir.join("lab.toml"), toml).expect("write lab.toml");
        Lab {
            _tmp: tmp,
            dir,
            host: Host::new(),
            env: Vec::new(),
            wrap: Vec::new(),
        }
    }

    /// A lab directory the test makes itself (e.g. a copy of another lab), on `host`.
    pub fn existing(tmp: tempfile::TempDir, dir: PathBuf, host: std::sync::Arc<Host>) -> Lab {
        Lab {
            _tmp: tmp,
            dir,
            host,
            env: Vec::new(),
            wrap: Vec::new(),
        }
    }

    /// The same, on a host shared with other labs of the test.
    pub fn smoke_on(host: std::sync::Arc<Host>, port_base: u16, prep_seconds: u32) -> Lab {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("lab");
        // The smoke lab's ports start at 60010 (master) and 60101 (workers): every labctl
        // call of this lab moves them to `port_base` and `port_base + 91`.
        let lab = Lab {
            _tmp: tmp,
            dir,
            host,
            env: vec![(
                "LABCTL_PORT_OFFSET".into(),
                (i32::from(port_base) - 60010).to_string(),
            )],
            wrap: Vec::new(),
        };
        lab.run_ok(&["init", "--lab", "smoke", lab.dir.to_str().expect("utf8")]);
        let toml = std::fs::read_to_string(lab.dir.join("lab.toml")).expect("lab.toml");
        let toml = toml.replace(
            "prep_seconds = 3",
            &format!("prep_seconds = {prep_seconds}"),
        );
        std::fs::write(lab.dir.join("lab.toml"), toml).expect("write lab.toml");
        lab
    }

    /// `class destroy -f` of a class, quietly and ignoring the outcome: for guards that clean
    /// up after a failed assertion.
    pub fn destroy_class_quietly(&self, class: &Path) {
        let _ = self
            .cmd(&[
                "class",
                "destroy",
                "-f",
                "--class",
                class.to_str().unwrap_or(""),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match self.wrap.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_labctl")),
            Some((program, lead)) => {
                let mut c = Command::new(program);
                c.args(lead).arg(env!("CARGO_BIN_EXE_labctl"));
                c
            }
        };
        let cwd = if self.dir.exists() {
            self.dir.clone()
        } else {
            self.dir.parent().expect("parent").to_path_buf()
        };
        c.args(args)
            .current_dir(cwd)
            .env("LABCTL_NO_EGRESS", "1")
            .env("LABCTL_HOME", &self.host.home)
            .env("LABCTL_CACHE", &self.host.cache)
            .env("LABCTL_NO_PROGRESS", "1")
            .env("NO_COLOR", "1")
            .env_remove("LABCTL_LAB")
            .env_remove("LABCTL_WORKERS")
            .env_remove("LABCTL_ACCEL");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("run labctl");
        eprintln!(
            "$ labctl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "labctl {} failed: {:?}",
            args.join(" "),
            out.status
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn ssh(&self, node: &str, command: &str) -> String {
        self.run_ok(&["ssh", node, "--", command])
    }

    pub fn status(&self) -> BTreeMap<String, String> {
        let v: serde_json::Value =
            serde_json::from_str(&self.run_ok(&["status", "--json"])).expect("status json");
        v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or("").to_string(),
                    n["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.join(".labctl/state.json")).expect("state.json"),
        )
        .expect("state json")
    }

    /// PIDs this lab recorded: every QEMU pidfile and the switch.
    pub fn recorded_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join(".labctl/machines")) {
            for e in rd.flatten() {
                if let Some(p) = read_pid(&e.path().join("qemu.pid")) {
                    pids.push(p);
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(self.dir.join(".labctl/state.json"))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(run) = v["run_dir"].as_str()
            && let Some(p) = read_pid(&Path::new(run).join("switch.pid"))
        {
            pids.push(p);
        }
        pids
    }

    /// Every step record in state.json, as `node.step`.
    pub fn recorded_steps(&self) -> Vec<String> {
        let st = self.state();
        let mut out = Vec::new();
        for (node, n) in st["nodes"].as_object().expect("nodes") {
            for step in n["steps"].as_object().expect("steps").keys() {
                out.push(format!("{node}.{step}"));
            }
        }
        out
    }

    pub fn runs(&self, node: &str, step: &str) -> u32 {
        self.ssh(
            node,
            &format!("cat /var/lib/labctl-smoke/runs/{step} 2>/dev/null || echo 0"),
        )
        .trim()
        .parse()
        .expect("count")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let pids = self.recorded_pids();
        let _ = self
            .cmd(&["destroy", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for pid in pids {
            if alive(pid) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

pub fn read_pid(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().next().unwrap_or("Z").to_string())
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

/// A two-node lab's recorded state as labctl writes it, for tests of the commands that read
/// state without booting anything: `m-k8s` stopped (a machine directory with an empty disk,
/// no QEMU) and `w1-k8s` recorded but not created.
pub struct RecordedLab<'a> {
    pub lab_dir: &'a Path,
    pub name: &'a str,
    pub run_dir: &'a Path,
    /// The box's disk the machines were made from.
    pub box_disk: &'a Path,
    /// CPUs and host SSH port of `m-k8s`, then `w1-k8s`.
    pub cpus: [u32; 2],
    pub ssh_ports: [u16; 2],
}

impl RecordedLab<'_> {
    /// Writes `<lab_dir>/.labctl/state.json` (and the machine directories); returns the lab's
    /// paths (its id, for a registry entry).
    pub fn write(&self) -> labctl_runner::state::LabPaths {
        let state = self.lab_dir.join(".labctl");
        std::fs::create_dir_all(&state).expect("mkdir .labctl");
        let own = labctl_runner::state::LabPaths::new(self.lab_dir, self.name);
        let mut nodes = serde_json::Map::new();
        for (i, (name, role, created)) in [("m-k8s", "master", true), ("w1-k8s", "worker", false)]
            .into_iter()
            .enumerate()
        {
            let dir = state.join("machines").join(name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            if created {
                std::fs::write(dir.join("disk.qcow2"), b"").expect("disk");
            }
            let machine = serde_json::json!({
                "id": format!("{}-{name}", own.id), "hostname": name, "dir": dir,
                "run_dir": self.run_dir, "cpus": self.cpus[i], "memory_mb": 512,
                "boot": {"disk": self.box_disk, "kernel": null, "initrd": null, "cmdline": null, "ovf": null},
                "nat_mac": format!("52:54:00:00:{i:02x}:00"), "private_nics": [],
                "ssh": {"host": self.ssh_ports[i], "guest": 22}, "forwards": [], "egress": false,
                "accel": "tcg", "nested_virt": false, "machine_id": "0".repeat(32), "group": null,
            });
            nodes.insert(
                name.into(),
                serde_json::json!({"role": role, "machine": machine, "user": "vagrant", "box_key": null,
                       "os": "debian", "configured": true, "ips": [], "steps": {}}),
            );
        }
        let st = serde_json::json!({
            "version": 1, "lab": self.name, "id": own.id, "lab_dir": own.lab_dir(),
            "provider": "qemu", "run_dir": self.run_dir, "box_name": "labctl/debian-12",
            "networks": [], "nodes": nodes, "golden": null,
        });
        std::fs::write(state.join("state.json"), st.to_string()).expect("state");
        own
    }
}

/// The non-empty lines of a successful command's stdout (`virsh … --name` lists); a failure
/// fails the test with `what` and the command's stderr.
pub fn output_lines(out: &Output, what: &str) -> Vec<String> {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}
