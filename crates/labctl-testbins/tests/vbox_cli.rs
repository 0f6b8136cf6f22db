//! `labctl` itself (the CLI, the runner and the VirtualBox driver together) on
//! `labs/k8s-classic` with `provider = "virtualbox"`, against `fake-vboxmanage`, the
//! stand-in for VBoxManage (VirtualBox cannot run on this machine). There is no guest behind
//! the stand-in, so `up` gets as far as waiting for SSH and reports that per node; everything
//! VirtualBox is asked to do on the way is checked, and the VBoxManage calls of each command
//! are snapshot-tested per VM.
//!
//! Runs `labctl-test` (this package's copy of the CLI, rebuilt with the tests) and needs
//! `qemu-img` (box add converts the VMDK).
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-vboxmanage");
const BOX: &str = "sysnet4admin/CentOS-k8s";

/// `labctl-test`: the CLI built from `labctl::main_impl` for these tests (never a stale
/// `labctl` from an earlier build).
fn labctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_labctl-test"))
}

struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new(version: &str) -> World {
        let w = World {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        w.set_version(version);
        w
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn lab(&self) -> PathBuf {
        self.root().join("lab")
    }

    fn state(&self) -> PathBuf {
        self.root().join("vbox")
    }

    /// The `VBoxManage` labctl runs: the stand-in with this world's state and version.
    fn set_version(&self, version: &str) {
        self.set_fake(version, "");
    }

    /// The stand-in with extra settings (`VAR='value' ` shell assignments).
    fn set_fake(&self, version: &str, extra: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root().join("bin/VBoxManage");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let script = format!(
            "#!/bin/sh\nFAKE_VBOX_STATE='{}' FAKE_VBOX_VERSION='{version}' {extra}exec '{FAKE}' \"$@\"\n",
            self.state().display()
        );
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, script).expect("write wrapper");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::rename(&tmp, &path).expect("rename");
    }

    fn labctl(&self, args: &[&str]) -> Output {
        self.labctl_env(args, &[])
    }

    fn labctl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(labctl_bin());
        c.envs(env.iter().copied());
        for var in ["LABCTL_LAB", "LABCTL_WORKERS", "RUST_LOG", "LABCTL_JOBS"] {
            c.env_remove(var);
        }
        c.args(args)
            .current_dir(if self.lab().is_dir() {
                self.lab()
            } else {
                self.root().to_path_buf()
            })
            .env("LABCTL_HOME", self.root().join("home"))
            .env("LABCTL_CACHE", self.root().join("cache"))
            .env("LABCTL_VBOXMANAGE", self.root().join("bin/VBoxManage"))
            .env("LABCTL_NO_EGRESS", "1")
            .env("LABCTL_NO_PROGRESS", "1")
            .env("NO_COLOR", "1")
            .output()
            .expect("run labctl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.labctl(args);
        assert!(
            out.status.success(),
            "labctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A Vagrant VirtualBox box as `vagrant package` writes it: OVF, VMDK, metadata.json.
    fn add_box(&self) {
        let d = self.root().join("box");
        std::fs::create_dir_all(&d).expect("mkdir");
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk"])
            .arg(d.join("box-disk001.vmdk"))
            .arg("16M")
            .status()
            .expect("qemu-img (apt-get install qemu-utils)");
        assert!(st.success());
        std::fs::write(d.join("box.ovf"), "<Envelope/>\n").expect("ovf");
        std::fs::write(d.join("metadata.json"), r#"{"provider":"virtualbox"}"#).expect("meta");
        let file = self.root().join("centos.box");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&d)
            .arg("-czf")
            .arg(&file)
            .arg(".")
            .status()
            .expect("tar");
        assert!(st.success());
        let out = self.ok(&["box", "add", BOX, &file.display().to_string()]);
        assert!(out.contains(BOX), "{out}");
    }

    /// `labctl init --lab k8s-classic`, with a short SSH wait (there is no guest to answer).
    fn init_classic(&self) {
        self.ok(&["init", "--lab", "k8s-classic", "lab"]);
        let toml = self.lab().join("lab.toml");
        let text = std::fs::read_to_string(&toml).expect("lab.toml");
        let text = text.replacen(
            "provider = \"virtualbox\"",
            "provider = \"virtualbox\"\nboot_timeout = 10",
            1,
        );
        std::fs::write(&toml, text).expect("write lab.toml");
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.state().join("calls.log"));
    }

    fn vms(&self) -> Vec<String> {
        let out = Command::new(self.root().join("bin/VBoxManage"))
            .args(["list", "vms"])
            .output()
            .expect("run fake");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('"').nth(1).map(str::to_string))
            .collect()
    }

    fn status(&self) -> BTreeMap<String, (String, String)> {
        let v: Value = serde_json::from_str(&self.ok(&["status", "--json"])).expect("json");
        v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or_default().to_string(),
                    (
                        n["state"].as_str().unwrap_or_default().to_string(),
                        n["ssh"].as_str().unwrap_or_default().to_string(),
                    ),
                )
            })
            .collect()
    }
}

/// The VM a VBoxManage call acts on, or "(host)" for calls about VirtualBox itself.
fn vm_of(argv: &[&str]) -> String {
    let value_of = |flag: &str| {
        argv.iter()
            .position(|a| *a == flag)
            .and_then(|i| argv.get(i + 1))
            .map(|s| (*s).to_string())
    };
    match argv.first().copied() {
        Some("import") => value_of("--vmname").unwrap_or_default(),
        Some("clonevm") => value_of("--name").unwrap_or_default(),
        Some("list" | "hostonlyif" | "--version") | None => "(host)".into(),
        Some(_) => argv.get(1).map(|s| (*s).to_string()).unwrap_or_default(),
    }
}

/// The lab's id (a hash of its directory) that prefixes its VM names:
/// `k8s-classic-1a2b3c4d-m-k8s`.
fn lab_id(calls: &[String]) -> String {
    calls
        .iter()
        .filter_map(|c| c.strip_prefix("startvm "))
        .filter_map(|rest| rest.split_whitespace().next())
        .find_map(|vm| {
            ["-m-k8s", "-w1-k8s", "-w2-k8s"]
                .iter()
                .find_map(|n| vm.strip_suffix(n))
        })
        .unwrap_or("k8s-classic-?")
        .to_string()
}

/// Calls grouped by VM in their order (VMs are worked on in parallel, so only the order
/// per VM is stable), `showvminfo` polls left out, the lab's id, MACs and paths made stable.
fn per_vm(calls: &[String], w: &World, id: &str) -> String {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in calls.iter().filter(|c| !c.starts_with("showvminfo ")) {
        let argv: Vec<&str> = c.split_whitespace().collect();
        let mut line = Vec::new();
        for (i, a) in argv.iter().enumerate() {
            let prev = if i > 0 { argv[i - 1] } else { "" };
            line.push(if prev.starts_with("--macaddress") {
                "[MAC]".to_string()
            } else {
                (*a).to_string()
            });
        }
        let line = line
            .join(" ")
            .replace(&w.root().display().to_string(), "[TMP]")
            .replace(id, "[LAB]");
        groups
            .entry(vm_of(&argv).replace(id, "[LAB]"))
            .or_default()
            .push(line);
    }
    let mut out = String::new();
    for (vm, lines) in groups {
        let _ = writeln!(out, "== {vm}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lab's addresses moved into VirtualBox's default host-only range, as the refusal suggests.
fn move_into_default_range(w: &World) {
    let toml = w.lab().join("lab.toml");
    let text = std::fs::read_to_string(&toml).expect("lab.toml");
    std::fs::write(&toml, text.replace("192.168.1.", "192.168.56.")).expect("write lab.toml");
}

#[test]
fn classic_lab_on_virtualbox_6_1() {
    classic("6.1.50r161033", "6.1");
}

#[test]
fn classic_lab_on_virtualbox_7_0() {
    classic("7.0.20r163906", "7.0");
}

#[test]
fn classic_lab_on_virtualbox_7_1() {
    classic("7.1.4r165100", "7.1");
}

/// `up`, `status`, `snapshot save/list`, `halt`, `up` again, `destroy` of labs/k8s-classic on
/// one VirtualBox version (Linux host); the VBoxManage calls per VM are snapshot-tested.
fn classic(version: &str, label: &str) {
    let w = World::new(version);
    w.add_box();
    w.init_classic();

    // VirtualBox ≥ 6.1.28 on Linux refuses host-only networks outside 192.168.56.0/21 unless
    // /etc/vbox/networks.conf allows them: labctl says so before creating anything.
    if Path::new("/etc/vbox/networks.conf").exists() {
        eprintln!("skipping the networks.conf refusal: this host has /etc/vbox/networks.conf");
    } else {
        let out = w.labctl(&["up", "--workers", "2"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("add the line `* 192.168.1.0/24` to /etc/vbox/networks.conf"),
            "{err}"
        );
        let calls = w.calls().join("\n");
        for sub in ["import ", "clonevm ", "startvm ", "hostonlyif create"] {
            assert!(!calls.contains(sub), "`{sub}` before the refusal:\n{calls}");
        }
        assert!(w.vms().is_empty(), "{:?}", w.vms());
    }
    move_into_default_range(&w);
    w.clear_calls();
    let out = w.labctl(&["up", "--workers", "2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for (node, port) in [("m-k8s", 60010), ("w1-k8s", 60101), ("w2-k8s", 60102)] {
        assert!(
            err.contains(&format!("{node}: no SSH at 127.0.0.1:{port} after 10s")),
            "{node}: {err}"
        );
    }
    assert_eq!(
        err.matches("egress = false is not enforced by virtualbox")
            .count(),
        1,
        "{err}"
    );
    assert!(
        !err.contains("acceleration"),
        "no QEMU probe for VirtualBox: {err}"
    );
    let calls = w.calls();
    let first = |p: &str| calls.iter().position(|c| c.starts_with(p));
    let import = first("import ").expect("the box is imported");
    let clone = first("clonevm ").expect("nodes are cloned");
    assert!(import < clone, "{calls:#?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("import ")).count(), 1);
    let clones: Vec<&String> = calls.iter().filter(|c| c.starts_with("clonevm ")).collect();
    assert_eq!(clones.len(), 3, "{clones:#?}");
    assert!(
        clones
            .iter()
            .all(|c| c.contains("--snapshot base --options link,keepnatmacs --name k8s-classic-")),
        "{clones:#?}"
    );
    let id = lab_id(&calls);
    let up_calls = per_vm(&calls, &w, &id);

    // The VMs run (the stand-in's showvminfo says so); status reads them without SSH.
    let st = w.status();
    assert_eq!(
        st.values().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["running", "running", "running"],
        "{st:?}"
    );
    assert_eq!(st["w2-k8s"].1, "127.0.0.1:60102");
    let mut vms = w.vms();
    vms.sort();
    assert_eq!(vms.len(), 4, "{vms:?}");
    assert_eq!(vms[3], "labctl-master-sysnet4admin--CentOS-k8s", "{vms:?}");

    w.clear_calls();
    w.ok(&["snapshot", "save", "before-class"]);
    let list = w.ok(&["snapshot", "list"]);
    for node in ["m-k8s", "w1-k8s", "w2-k8s"] {
        assert!(list.contains(&format!("{node}: before-class")), "{list}");
    }
    // Consistent across nodes: every VM is paused before the first is saved, and none is
    // resumed before the last is saved.
    let calls = w.calls();
    let pos = |p: &str| -> Vec<usize> {
        calls
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.starts_with("controlvm ") && c.ends_with(p)
                    || c.contains(p) && c.starts_with("snapshot ")
            })
            .map(|(i, _)| i)
            .collect()
    };
    let (pauses, takes, resumes) = (pos(" pause"), pos(" take before-class"), pos(" resume"));
    assert_eq!(
        (pauses.len(), takes.len(), resumes.len()),
        (3, 3, 3),
        "{calls:#?}"
    );
    assert!(pauses.iter().max() < takes.iter().min(), "{calls:#?}");
    assert!(takes.iter().max() < resumes.iter().min(), "{calls:#?}");
    let snap_calls = per_vm(&calls, &w, &id);

    w.clear_calls();
    w.ok(&["halt"]);
    assert!(
        w.status().values().all(|(s, _)| s == "stopped"),
        "{:?}",
        w.status()
    );
    let halt_calls = per_vm(&w.calls(), &w, &id);

    // A second `up` of the halted lab reuses the clones: nothing imported or cloned again.
    w.clear_calls();
    let out = w.labctl(&["up", "--workers", "2", "w1-k8s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let again = w.calls().join("\n");
    assert!(
        !again.contains("import ") && !again.contains("clonevm "),
        "{again}"
    );
    assert!(
        again.contains("startvm ") && again.contains("-w1-k8s --type headless"),
        "{again}"
    );
    assert_eq!(again.matches("startvm ").count(), 1, "{again}");

    w.clear_calls();
    w.ok(&["destroy", "-f"]);
    assert_eq!(w.vms(), ["labctl-master-sysnet4admin--CentOS-k8s"]);
    assert!(!w.lab().join(".labctl").exists());
    let destroy_calls = per_vm(&w.calls(), &w, &id);

    insta::assert_snapshot!(
        format!("classic_{label}"),
        format!(
            "## up --workers 2\n{up_calls}\n## snapshot save before-class; snapshot list\n{snap_calls}\n## halt\n{halt_calls}\n## destroy -f\n{destroy_calls}"
        )
    );
}

/// A Vagrant VirtualBox box added on a host without qemu-img keeps its VMDK (the VirtualBox
/// provider imports the OVF; nothing needs converting).
#[test]
fn virtualbox_box_add_without_qemu_img_keeps_the_vmdk() {
    let w = World::new("7.1.4r165100");
    let d = w.root().join("box");
    std::fs::create_dir_all(&d).expect("mkdir");
    // A self-contained sparse VMDK (labctl checks that itself when qemu-img is missing: a
    // bare descriptor could name any host file as an extent).
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "vmdk"])
        .arg(d.join("box-disk001.vmdk"))
        .arg("16M")
        .status()
        .expect("qemu-img (apt-get install qemu-utils)");
    assert!(st.success());
    std::fs::write(d.join("box.ovf"), "<Envelope/>\n").expect("ovf");
    std::fs::write(d.join("metadata.json"), r#"{"provider":"virtualbox"}"#).expect("meta");
    let file = w.root().join("vb.box");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&d)
        .arg("-czf")
        .arg(&file)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let out = w.labctl_env(
        &["box", "add", "vb/box", &file.display().to_string()],
        &[("LABCTL_QEMU_IMG", "/nonexistent/qemu-img")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = w.root().join("home/boxes/vb--box");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("box.json")).expect("box.json"))
            .expect("json");
    assert_eq!(meta["disk"], "box-disk001.vmdk", "{meta}");
    assert_eq!(meta["ovf"], "box.ovf", "{meta}");
    assert!(dir.join("box-disk001.vmdk").exists());
    assert!(!dir.join("disk.qcow2").exists());
}

/// VirtualBox's NAT cannot bind the SSH port (something else listens there): it logs `NAT:
/// Failed to redirect` and boots anyway. `up` moves the forward to a free port on the running
/// VM and says so; status shows the new port.
#[test]
fn a_taken_ssh_port_moves_during_up() {
    let w = World::new("7.0.20r163906");
    // The SSH port of the first VM started (60010 unless something on this host has it).
    w.set_fake("7.0.20r163906", "FAKE_VBOX_TAKEN_PORTS='first-ssh' ");
    w.add_box();
    w.init_classic();
    move_into_default_range(&w);
    let out = w.labctl(&["up", "--workers", "1"]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no guest behind the stand-in: {err}"
    );
    let taken = std::fs::read_to_string(w.state().join("first-ssh-taken")).expect("a VM started");
    let notice = format!("port {taken} was taken; using ");
    let moved: u16 = err
        .split(&notice)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no `{notice}` in: {err}"));
    let calls = w.calls();
    let delete = calls
        .iter()
        .position(|c| c.contains(" natpf1 delete ssh"))
        .unwrap_or_else(|| panic!("{calls:#?}"));
    // Nodes boot in parallel: the same VM's next natpf1 call, not the next line.
    let vm = calls[delete].split_whitespace().nth(1).unwrap_or_default();
    let add = calls[delete..]
        .iter()
        .find(|c| c.starts_with(&format!("controlvm {vm} natpf1 ssh,")))
        .unwrap_or_else(|| panic!("{calls:#?}"));
    assert!(
        add.ends_with(&format!(" natpf1 ssh,tcp,127.0.0.1,{moved},,22")),
        "{add}"
    );
    let st = w.status();
    assert!(
        st.values()
            .any(|(_, ssh)| *ssh == format!("127.0.0.1:{moved}")),
        "{st:?}"
    );
    w.ok(&["destroy", "-f"]);
}
