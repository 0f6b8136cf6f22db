//! A class for real: 2 students × the smoke lab (1 worker) on two "hosts" that are both this
//! machine (`uri = "local"`, provider qemu, TCG here), one lab at a time per host, so the two
//! labs boot in parallel. `#[ignore]`d: it boots 4 QEMU guests.
// Test code: starts real processes (the binary, kill) directly.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{Lab, alive, read_pid};

/// Destroys the class's labs and kills what they recorded, even when an assertion fails.
struct ClassGuard<'a> {
    lab: &'a Lab,
    class: PathBuf,
}

impl ClassGuard<'_> {
    fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let labs = self.class.parent().expect("dir").join(".labctl/labs");
        for student in std::fs::read_dir(labs).into_iter().flatten().flatten() {
            let machines = student.path().join(".labctl/machines");
            for m in std::fs::read_dir(machines).into_iter().flatten().flatten() {
                pids.extend(read_pid(&m.path().join("qemu.pid")));
            }
        }
        pids
    }
}

impl Drop for ClassGuard<'_> {
    fn drop(&mut self) {
        let pids = self.pids();
        self.lab.destroy_class_quietly(&self.class);
        for pid in pids {
            if alive(pid) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

fn json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&lab.run_ok(args)).expect("one JSON document")
}

#[test]
#[ignore = "boots QEMU guests; run by scripts/test.sh"]
fn a_class_of_two_labs_on_two_local_hosts() {
    if !common::have_box() {
        return;
    }
    let lab = Lab::smoke(61700, 1);
    let class_dir = lab.dir.parent().expect("tmp").join("class");
    std::fs::create_dir_all(&class_dir).expect("mkdir");
    let class = class_dir.join("class.toml");
    std::fs::write(
        &class,
        format!(
            "[class]\nname = \"e2e\"\nlab = \"{}\"\nworkers = 1\nstudents = [\"ann\", \"bob\"]\n\n\
             [[host]]\nname = \"h1\"\nuri = \"local\"\nmemory_mb = 3000\nmax_parallel = 1\n\n\
             [[host]]\nname = \"h2\"\nuri = \"local\"\nmemory_mb = 3000\nmax_parallel = 1\n",
            lab.dir.display()
        ),
    )
    .expect("class.toml");
    let c = class.to_str().expect("utf8");
    let guard = ClassGuard {
        lab: &lab,
        class: class.clone(),
    };

    let t = Instant::now();
    let out = lab.run(&["class", "up", "--class", c]);
    eprintln!("class up of 2 labs took {:.1}s", t.elapsed().as_secs_f64());
    assert!(out.status.success(), "class up failed: {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ann: placed on h1"), "{err}");
    assert!(err.contains("bob: placed on h2"), "{err}");
    // Both labs were in `up` at the same time: bob started before ann finished.
    let pos = |s: &str| err.find(s).unwrap_or_else(|| panic!("no `{s}` in {err}"));
    assert!(pos("bob: starting on h2") < pos("ann: done in"), "{err}");

    let st = json(&lab, &["class", "status", "--json", "--class", c]);
    let nodes = st["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{st}");
    let mut ports = std::collections::BTreeSet::new();
    for n in nodes {
        assert_eq!(n["state"], "running", "{n}");
        ports.insert(n["ssh"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(ports.len(), 4, "each node has its own port: {st}");

    // Each student's lab is a lab of its own: same names and addresses, separate networks.
    let labs = class_dir.join(".labctl/labs");
    for student in ["ann", "bob"] {
        let dir = labs.join(student);
        let d = dir.to_str().expect("utf8");
        let host = lab.run_ok(&["ssh", "--lab", d, "w1-k8s", "--", "hostname"]);
        assert_eq!(host.trim(), "w1-k8s");
        lab.run_ok(&[
            "ssh",
            "--lab",
            d,
            "w1-k8s",
            "--",
            "ping -c 1 -W 5 192.168.1.10 >/dev/null",
        ]);
    }

    // Reset one student's lab from its golden snapshot.
    let out = lab.run(&["class", "reset", "bob", "--class", c]);
    assert!(out.status.success(), "class reset failed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reset 1 lab"));

    // One ssh-config per student.
    let ssh_dir = class_dir.join("ssh");
    lab.run_ok(&[
        "class",
        "ssh-config",
        "--class",
        c,
        "--out",
        ssh_dir.to_str().expect("utf8"),
    ]);
    for student in ["ann", "bob"] {
        let text =
            std::fs::read_to_string(ssh_dir.join(format!("{student}.ssh-config"))).expect("file");
        assert!(
            text.contains("Host m-k8s") && text.contains("Host w1-k8s"),
            "{text}"
        );
        assert!(
            !text.contains("ProxyJump"),
            "local hosts need no jump: {text}"
        );
    }

    // Destroy: no VM left, no placement left.
    let pids = guard.pids();
    assert_eq!(pids.len(), 4, "{pids:?}");
    lab.run_ok(&["class", "destroy", "-f", "--class", c]);
    for pid in pids {
        assert!(!alive(pid), "qemu {pid} still runs");
    }
    assert!(!class_dir.join(".labctl/class-state.json").exists());
    assert!(!Path::new(&labs).exists() || std::fs::read_dir(&labs).expect("dir").next().is_none());
    drop(guard);
}
