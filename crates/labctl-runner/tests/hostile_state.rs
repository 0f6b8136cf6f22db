//! Hostile-input corpus: lab state (`.labctl/state.json`) that points outside its lab.
//!
//! Attacks: a copied lab (`cp -a lab lab2`) whose state names the original's machines and
//! processes; a state.json whose machine and runtime directories point at host files; a
//! node named `..`; a login user with a newline (ssh-config injection); box files outside
//! the box store; a recorded PID now used by an unrelated process. Each is refused with a
//! specific error or confined to the lab, sentinel files outside the lab stay untouched, no
//! unrelated process is signalled, and nothing panics. No VM is booted (the QEMU driver is
//! used only to check and stop processes, which here are `sleep` stand-ins).
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use labctl_driver::{Accel, BootImage, MachineConfig, PortForward};
use labctl_runner::events::{Event, Reporter};
use labctl_runner::state::{LabPaths, LabState, NodeState};
use labctl_runner::{Env, RunnerError};

struct Quiet;
impl Reporter for Quiet {
    fn event(&self, _e: Event) {}
}

fn have_qemu() -> bool {
    labctl_driver::qemu::QemuConfig::discover(Vec::new(), std::env::temp_dir()).is_ok()
}

fn env(root: &Path) -> Env {
    Env {
        data_dir: root.join("home"),
        cache_dir: root.join("cache"),
        switch_command: vec!["/bin/false".into()],
        uri: None,
        relay_command: Vec::new(),
        bundle_server_command: Vec::new(),
    }
}

/// A `sleep` standing in for a process whose PID a state recorded; killed on drop.
struct Sleeper(Child);
impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("300").spawn().expect("sleep"))
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn machine(paths: &LabPaths, node: &str, box_dir: &Path) -> MachineConfig {
    MachineConfig {
        id: format!("{}-{node}", paths.id),
        hostname: node.into(),
        dir: paths.machine_dir(node),
        run_dir: paths.run_dir.clone(),
        cpus: 1,
        memory_mb: 256,
        boot: BootImage {
            disk: box_dir.join("disk.qcow2"),
            kernel: None,
            initrd: None,
            cmdline: None,
            ovf: None,
        },
        nat_mac: "52:54:00:00:00:00".into(),
        private_nics: Vec::new(),
        ssh: PortForward {
            host: 60999,
            guest: 22,
        },
        forwards: Vec::new(),
        egress: false,
        accel: Accel::Tcg,
        nested_virt: false,
        machine_id: "0".repeat(32),
        guest_services: Vec::new(),
        group: None,
    }
}

/// A lab at `dir` with one node `m` whose machine directory holds a disk and a pidfile
/// naming `pid`. Returns its paths.
fn lab_with_state(dir: &Path, env: &Env, pid: u32) -> LabPaths {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("lab.toml"), "[lab]\nname = \"smoke\"\n").expect("lab.toml");
    let paths = LabPaths::new(dir, "smoke");
    let box_dir = env.boxes().dir("b");
    let mut st = LabState::new("smoke", &paths, labctl_spec::Provider::Qemu, "b");
    let m = machine(&paths, "m", &box_dir);
    std::fs::create_dir_all(&m.dir).expect("mkdir");
    std::fs::write(m.dir.join("disk.qcow2"), "the original's disk").expect("disk");
    std::fs::write(m.dir.join("qemu.pid"), format!("{pid}\n")).expect("pidfile");
    st.nodes.insert(
        "m".into(),
        NodeState {
            role: "master".into(),
            machine: m,
            user: "root".into(),
            box_key: None,
            os: labctl_spec::Os::Debian,
            configured: true,
            ips: Vec::new(),
            steps: Default::default(),
        },
    );
    st.save(&paths).expect("save");
    paths
}

fn cp_a(from: &Path, to: &Path) {
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .expect("cp")
            .success()
    );
}

#[test]
fn a_copied_lab_refuses_the_originals_state_and_forget_touches_only_the_copy() {
    if !have_qemu() {
        eprintln!("skipping: no qemu-img/qemu-system on PATH");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let env = env(tmp.path());
    let mut original_vm = Sleeper::start();
    let orig = tmp.path().join("lab");
    let orig_paths = lab_with_state(&orig, &env, original_vm.pid());
    let copy = tmp.path().join("lab2");
    cp_a(&orig, &copy);
    // Commands that work from the state alone build their paths without the lab name.
    let copy_paths = labctl_runner::lab_paths(&copy, "");

    let foreign = |r: Result<(), RunnerError>, what: &str| match r {
        Err(e @ RunnerError::ForeignState { .. }) => {
            let text = e.to_string();
            assert!(text.contains("copied or moved"), "{what}: {text}");
            assert!(text.contains(&orig.display().to_string()), "{what}: {text}");
        }
        other => panic!("{what}: expected ForeignState, got {other:?}"),
    };
    foreign(
        labctl_runner::status(&copy_paths, &env).map(|_| ()),
        "status",
    );
    foreign(
        labctl_runner::ssh_info(&copy_paths, &env, None).map(|_| ()),
        "ssh-config",
    );
    foreign(
        labctl_runner::halt(
            &copy_paths,
            &env,
            &[],
            std::time::Duration::from_secs(1),
            Arc::new(Quiet),
        ),
        "halt",
    );
    foreign(
        labctl_runner::destroy(&copy_paths, &env, &[], Arc::new(Quiet)),
        "destroy",
    );
    assert!(original_vm.alive(), "the original's process was signalled");
    assert!(orig_paths.machine_dir("m").join("disk.qcow2").exists());

    // adopt refuses: the original is still there, so this is a copy.
    match labctl_runner::adopt(&copy_paths, &env) {
        Err(e @ RunnerError::CannotAdopt { .. }) => {
            assert!(e.to_string().contains("is a copy"), "{e}");
        }
        other => panic!("expected CannotAdopt, got {other:?}"),
    }

    labctl_runner::forget(&copy_paths, &env).expect("forget");
    assert!(!copy.join(".labctl").exists(), "the copied state is gone");
    assert!(copy.join("lab.toml").exists(), "the copy's own files stay");
    assert!(
        original_vm.alive(),
        "forget signalled the original's process"
    );
    assert_eq!(
        std::fs::read_to_string(orig_paths.machine_dir("m").join("disk.qcow2")).expect("disk"),
        "the original's disk"
    );
    assert!(LabState::load(&orig_paths).expect("load").is_some());

    // --forget on a lab's own state is refused: it would orphan its VMs.
    assert!(matches!(
        labctl_runner::forget(&labctl_runner::lab_paths(&orig, ""), &env),
        Err(RunnerError::NotForeign)
    ));
}

#[test]
fn a_moved_lab_is_adopted() {
    if !have_qemu() {
        eprintln!("skipping: no qemu-img/qemu-system on PATH");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let env = env(tmp.path());
    // The recorded PID is dead (the lab was halted, or the host rebooted).
    let old = tmp.path().join("lab");
    lab_with_state(&old, &env, 999_999_999);
    let new = tmp.path().join("moved");
    std::fs::rename(&old, &new).expect("mv");
    let paths = labctl_runner::lab_paths(&new, "");
    assert!(matches!(
        LabState::load(&paths),
        Err(RunnerError::ForeignState { .. })
    ));
    assert!(labctl_runner::adopt(&paths, &env).expect("adopt"));
    let st = LabState::load(&paths).expect("load").expect("state");
    let canon = std::fs::canonicalize(&new).expect("canon");
    assert_eq!(st.lab_dir, canon);
    let node = &st.nodes["m"];
    assert_eq!(node.machine.dir, canon.join(".labctl/machines/m"));
    assert!(
        !node.configured,
        "guest configuration is redone after a move"
    );
    assert!(!labctl_runner::adopt(&paths, &env).expect("again"));
    let status = labctl_runner::status(&paths, &env).expect("status");
    assert_eq!(status[0].state, labctl_runner::RunState::Stopped);
}

/// Rewrite the lab's state.json with `edit`.
fn edit_state(paths: &LabPaths, edit: impl FnOnce(&mut serde_json::Value)) {
    let text = std::fs::read_to_string(paths.state_file()).expect("read");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    edit(&mut v);
    std::fs::write(paths.state_file(), v.to_string()).expect("write");
}

#[test]
fn state_paths_outside_the_lab_are_never_acted_on() {
    if !have_qemu() {
        eprintln!("skipping: no qemu-img/qemu-system on PATH");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let env = env(tmp.path());
    let mut bystander = Sleeper::start();
    let dir = tmp.path().join("lab");
    // The lab's own pidfile names an unrelated process (a PID reused after a reboot).
    let paths = lab_with_state(&dir, &env, bystander.pid());
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(victim.join("sentinel"), "keep").expect("sentinel");
    std::fs::write(victim.join("qemu.pid"), format!("{}\n", bystander.pid())).expect("pid");
    std::fs::write(victim.join("disk.qcow2"), "not the lab's").expect("disk");
    let v = victim.to_string_lossy().into_owned();
    edit_state(&paths, |s| {
        s["run_dir"] = v.clone().into();
        s["nodes"]["m"]["machine"]["dir"] = v.clone().into();
        s["nodes"]["m"]["machine"]["run_dir"] = v.clone().into();
        s["nodes"]["m"]["machine"]["id"] = "x".into();
    });
    let st = LabState::load(&paths).expect("load").expect("state");
    assert_eq!(st.nodes["m"].machine.dir, paths.machine_dir("m"));
    assert_eq!(st.run_dir, paths.run_dir);
    let status = labctl_runner::status(&paths, &env).expect("status");
    assert_eq!(
        status[0].state,
        labctl_runner::RunState::Stopped,
        "a reused PID is not our VM"
    );
    labctl_runner::destroy(&paths, &env, &[], Arc::new(Quiet)).expect("destroy");
    assert!(
        bystander.alive(),
        "the process behind a stale PID was killed"
    );
    for f in ["sentinel", "qemu.pid", "disk.qcow2"] {
        assert!(victim.join(f).exists(), "{f} outside the lab was removed");
    }
    assert!(!dir.join(".labctl").exists());
}

#[test]
fn hostile_names_and_box_paths_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let env = env(tmp.path());
    let dir = tmp.path().join("lab");
    let paths = lab_with_state(&dir, &env, 999_999_999);
    let keep = std::fs::read_to_string(paths.state_file()).expect("read");
    let corrupt = |what: &str, needle: &str| match LabState::load(&paths) {
        Err(e @ RunnerError::CorruptState { .. }) => {
            assert!(e.to_string().contains(needle), "{what}: {e}");
        }
        other => panic!("{what}: expected CorruptState, got {other:?}"),
    };

    edit_state(&paths, |s| {
        let nodes = s["nodes"].as_object_mut().expect("nodes");
        let m = nodes.remove("m").expect("m");
        nodes.insert("..".into(), m);
    });
    corrupt("node `..`", "not a valid host name");

    std::fs::write(paths.state_file(), &keep).expect("restore");
    edit_state(&paths, |s| {
        s["nodes"]["m"]["user"] = "root\nMatch exec \"touch /tmp/pwned\"".into();
    });
    corrupt("user with a newline", "not a valid user name");

    std::fs::write(paths.state_file(), &keep).expect("restore");
    edit_state(&paths, |s| {
        s["lab"] = "../x".into();
    });
    corrupt("lab name with a slash", "lab name");

    // Box files must come from the box store: QEMU would hand a host file to the guest.
    let home_key = tmp.path().join("id_ed25519");
    std::fs::write(&home_key, "PRIVATE").expect("key");
    std::fs::write(paths.state_file(), &keep).expect("restore");
    let k = home_key.to_string_lossy().into_owned();
    edit_state(&paths, |s| {
        s["nodes"]["m"]["box_key"] = k.clone().into();
    });
    let e = labctl_runner::ssh_info(&paths, &env, None).unwrap_err();
    assert!(e.to_string().contains("not inside the box store"), "{e}");
    std::fs::write(paths.state_file(), &keep).expect("restore");
    edit_state(&paths, |s| {
        s["nodes"]["m"]["machine"]["boot"]["kernel"] =
            format!("{}/../../../etc/passwd", env.boxes().root.display()).into();
    });
    let e = labctl_runner::ssh_info(&paths, &env, None).unwrap_err();
    assert!(e.to_string().contains("not inside the box store"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&home_key).expect("key"),
        "PRIVATE",
        "untouched"
    );
}

#[test]
fn ssh_config_and_argv_are_quoted_and_pinned() {
    let info = labctl_runner::SshInfo {
        node: "m-k8s".into(),
        port: 2222,
        user: "vagrant".into(),
        key: PathBuf::from("/home/u/my labs/%d/.labctl/ssh/id_ed25519"),
        known_hosts: PathBuf::from("/home/u/my labs/.labctl/known_hosts"),
        host_key_alias: "labctl-k8s-1234abcd-m-k8s".into(),
        jump: None,
    };
    let cfg = labctl_runner::ssh_config_text(std::slice::from_ref(&info)).expect("config");
    assert!(cfg.contains("  IdentityFile \"/home/u/my labs/%%d/.labctl/ssh/id_ed25519\"\n"));
    assert!(cfg.contains("  StrictHostKeyChecking yes\n"));
    assert!(cfg.contains("  HostKeyAlias labctl-k8s-1234abcd-m-k8s\n"));
    assert!(cfg.contains("  UserKnownHostsFile \"/home/u/my labs/.labctl/known_hosts\"\n"));
    let argv = labctl_runner::ssh_args(&info, &["-oProxyCommand=x".into()], false).expect("argv");
    let dd = argv.iter().position(|a| a == "--").expect("--");
    assert_eq!(argv[dd + 1], "127.0.0.1");
    assert_eq!(
        argv[dd + 2],
        "-oProxyCommand=x",
        "the command stays a command"
    );
    let l = argv.iter().position(|a| a == "-l").expect("-l");
    assert_eq!(argv[l + 1], "vagrant");
    assert!(argv.contains(&"StrictHostKeyChecking=yes".to_string()));

    for (user, key) in [
        ("root\nMatch exec \"touch /tmp/pwned\"", "/k"),
        ("-oProxyCommand=x", "/k"),
        ("vagrant", "/k\"\nMatch exec x"),
    ] {
        let bad = labctl_runner::SshInfo {
            user: user.into(),
            key: PathBuf::from(key),
            ..info.clone()
        };
        let e = labctl_runner::ssh_config_text(std::slice::from_ref(&bad)).unwrap_err();
        assert!(matches!(e, RunnerError::UnsafeSshValue { .. }), "{e}");
        assert!(labctl_runner::ssh_args(&bad, &[], false).is_err());
    }
}
