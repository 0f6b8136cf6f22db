//! The VirtualBox driver against `fake-vboxmanage`, the stand-in for VBoxManage (VirtualBox
//! cannot run on this machine). Each test gets its own fake "VirtualBox" in a temp directory,
//! reached through a small wrapper script that sets the fake's environment, so tests can run
//! in parallel threads without touching this process's environment.
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use labctl::vbox_hint;
use labctl_driver::exec::ToolError;
use labctl_driver::vbox::{self, HostOs, VBoxConfig, VBoxDriver, VBoxError};
use labctl_driver::{
    Accel, BootImage, Driver, DriverError, MachineConfig, MachineStatus, NetworkConfig,
    PortForward, PrivateNic, SnapshotOp, StopMode, StopOutcome,
};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-vboxmanage");

struct Lab {
    tmp: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        let boxdir = lab.root().join("boxes/labctl--debian-12");
        std::fs::create_dir_all(&boxdir).expect("mkdir");
        std::fs::write(boxdir.join("box.ovf"), "<Envelope/>\n").expect("ovf");
        lab.env(&[]);
        lab
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn state(&self) -> PathBuf {
        self.root().join("vbox-state")
    }

    fn run_dir(&self) -> PathBuf {
        self.root().join("run")
    }

    fn ovf(&self) -> PathBuf {
        self.root().join("boxes/labctl--debian-12/box.ovf")
    }

    fn wrapper(&self) -> PathBuf {
        self.root().join("bin/VBoxManage")
    }

    /// Rewrite the wrapper with these fake settings (and no others).
    fn env(&self, vars: &[(&str, &str)]) {
        use std::os::unix::fs::PermissionsExt;
        let mut script = format!(
            "#!/bin/sh\nFAKE_VBOX_STATE='{}'\nexport FAKE_VBOX_STATE\n",
            self.state().display()
        );
        for (k, v) in vars {
            script.push_str(&format!("{k}='{v}'\nexport {k}\n"));
        }
        script.push_str(&format!("exec '{FAKE}' \"$@\"\n"));
        let path = self.wrapper();
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, script).expect("write wrapper");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::rename(&tmp, &path).expect("rename");
    }

    fn config(&self) -> VBoxConfig {
        VBoxConfig {
            vboxmanage: self.wrapper(),
            networks_conf: self.root().join("networks.conf"),
            host_os: HostOs::Linux,
            host_arch: "x86_64".into(),
            retry_backoff: Duration::from_millis(5),
            poll_interval: Duration::from_millis(20),
            locale: "C.UTF-8".into(),
            data_dir: Some(self.root().join("home")),
            record: None,
        }
    }

    fn driver(&self) -> VBoxDriver {
        VBoxDriver::new(self.config())
    }

    fn nets(&self) -> Vec<NetworkConfig> {
        vec![
            NetworkConfig {
                name: "private".into(),
                host_ip: Some((Ipv4Addr::new(192, 168, 56, 1), 24)),
            },
            NetworkConfig {
                name: "storage".into(),
                host_ip: None,
            },
        ]
    }

    fn machine(&self, node: &str) -> MachineConfig {
        let n = node.trim_start_matches(|c: char| !c.is_ascii_digit());
        let n: u8 = n.parse().unwrap_or(0);
        MachineConfig {
            id: format!("lab-1a2b3c4d-{node}"),
            hostname: node.into(),
            dir: self.root().join(format!("lab/.labctl/machines/{node}")),
            run_dir: self.run_dir(),
            cpus: 2,
            memory_mb: 1024,
            boot: BootImage {
                disk: self.root().join("boxes/labctl--debian-12/disk.qcow2"),
                kernel: None,
                initrd: None,
                cmdline: None,
                ovf: Some(self.ovf()),
            },
            nat_mac: format!("52:54:00:aa:00:{n:02x}"),
            private_nics: vec![
                PrivateNic {
                    network: "private".into(),
                    mac: format!("52:54:00:bb:00:{n:02x}"),
                },
                PrivateNic {
                    network: "storage".into(),
                    mac: format!("52:54:00:cc:00:{n:02x}"),
                },
            ],
            ssh: PortForward {
                host: 60010 + u16::from(n),
                guest: 22,
            },
            forwards: vec![PortForward {
                host: 30080 + u16::from(n),
                guest: 80,
            }],
            egress: true,
            accel: Accel::Kvm,
            nested_virt: false,
            machine_id: format!("{n:032x}"),
            guest_services: Vec::new(),
            group: Some("labctl-lab".into()),
        }
    }

    /// The fake's call log, temp paths and the lab's intnet tag made stable.
    fn calls(&self) -> String {
        let text = std::fs::read_to_string(self.state().join("calls.log")).unwrap_or_default();
        let tag = vbox::intnet_name(&self.run_dir(), "storage");
        text.replace(&self.root().display().to_string(), "[TMP]")
            .replace(&tag, "labctl-[TAG]-storage")
    }

    fn count(&self, prefix: &str) -> usize {
        self.calls()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.state().join("calls.log"));
    }

    /// Call the fake directly (to set up "VirtualBox" behind labctl's back).
    fn vboxmanage(&self, args: &[&str]) -> String {
        let out = Command::new(self.wrapper())
            .args(args)
            .output()
            .expect("run fake");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vm_names(&self) -> Vec<String> {
        vbox::parse::list_vms(&self.vboxmanage(&["list", "vms"]))
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// networks_up + create for these nodes.
    fn up(&self, d: &VBoxDriver, nodes: &[&str]) {
        d.networks_up(&self.run_dir(), &self.nets())
            .expect("networks_up");
        for n in nodes {
            d.create(&self.machine(n)).expect("create");
        }
    }
}

fn vbox_err(e: &DriverError) -> &VBoxError {
    match e {
        DriverError::VirtualBox(v) => v,
        other => panic!("expected a VirtualBox error, got {other:?}"),
    }
}

#[test]
fn create_imports_the_box_once_then_links_a_clone_per_node() {
    let lab = Lab::new();
    let d = lab.driver();
    for n in ["node1", "node2"] {
        d.create(&lab.machine(n)).expect("create");
    }
    // create is idempotent.
    d.create(&lab.machine("node1")).expect("create again");
    insta::assert_snapshot!(lab.calls());
    assert_eq!(lab.count("import "), 1);
    assert_eq!(lab.count("clonevm "), 2);
    assert_eq!(
        lab.vm_names(),
        [
            "labctl-master-labctl--debian-12",
            "lab-1a2b3c4d-node1",
            "lab-1a2b3c4d-node2"
        ]
    );
    let record =
        std::fs::read_to_string(lab.root().join("boxes/labctl--debian-12/vbox-master.json"))
            .expect("master recorded");
    assert!(
        record.contains("\"vm\": \"labctl-master-labctl--debian-12\""),
        "{record}"
    );
    for n in ["node1", "node2"] {
        assert_eq!(d.status(&lab.machine(n)), MachineStatus::Stopped);
    }

    // Another driver (another labctl process) finds the master instead of importing again.
    lab.clear_calls();
    lab.driver()
        .create(&lab.machine("node3"))
        .expect("create node3");
    assert_eq!(lab.count("import "), 0);
    assert_eq!(
        lab.count("snapshot labctl-master-labctl--debian-12 take"),
        0
    );
    assert_eq!(lab.count("clonevm "), 1);
}

#[test]
fn parallel_creates_share_one_import() {
    let lab = Lab::new();
    let d = lab.driver();
    std::thread::scope(|s| {
        for n in ["node1", "node2", "node3"] {
            let (d, m) = (&d, lab.machine(n));
            s.spawn(move || d.create(&m).expect("create"));
        }
    });
    assert_eq!(lab.count("import "), 1);
    assert_eq!(lab.count("clonevm "), 3);
    assert_eq!(lab.vm_names().len(), 4);
}

#[test]
fn start_status_console_and_graceful_stop() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    lab.clear_calls();

    d.start(&m).expect("start");
    assert_eq!(d.status(&m), MachineStatus::Running { pid: 0 });
    assert!(
        d.console_tail(&m, 5).contains("node1 login:"),
        "{}",
        d.console_tail(&m, 5)
    );
    d.start(&m).expect("start is idempotent");
    let out = d
        .stop(&m, StopMode::Graceful(Duration::from_secs(10)))
        .expect("stop");
    assert!(matches!(out, StopOutcome::Graceful(_)), "{out:?}");
    assert_eq!(d.status(&m), MachineStatus::Stopped);
    assert_eq!(
        d.stop(&m, StopMode::Graceful(Duration::from_secs(1)))
            .expect("stop"),
        StopOutcome::AlreadyStopped
    );
    // Polling `showvminfo` until poweroff shows up as repeated lines: keep one of each.
    let mut calls: Vec<String> = lab.calls().lines().map(String::from).collect();
    calls.dedup();
    insta::assert_snapshot!(calls.join("\n"));

    // A second boot replaces the NAT rules instead of failing on duplicates.
    d.start(&m).expect("start again");
    assert_eq!(d.status(&m), MachineStatus::Running { pid: 0 });
    assert!(
        lab.calls()
            .contains("--natpf1 delete ssh --natpf1 delete tcp30081")
    );
    assert_eq!(
        d.stop(&m, StopMode::Force).expect("force"),
        StopOutcome::Forced("forced stop requested".into())
    );
    assert_eq!(d.status(&m), MachineStatus::Stopped);
}

#[test]
fn stop_forces_when_the_guest_ignores_acpi() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    d.start(&m).expect("start");
    lab.env(&[("FAKE_VBOX_ACPI", "ignore")]);
    let out = d
        .stop(&m, StopMode::Graceful(Duration::from_millis(300)))
        .expect("stop");
    match out {
        StopOutcome::Forced(why) => assert!(why.contains("did not power off"), "{why}"),
        other => panic!("expected a forced stop, got {other:?}"),
    }
    assert_eq!(d.status(&m), MachineStatus::Stopped);
}

#[test]
fn an_error_on_stderr_with_exit_status_zero_is_a_failure() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    lab.env(&[("FAKE_VBOX_FAIL_EXIT0", "startvm")]);
    lab.clear_calls();
    let err = d.start(&m).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("exit status 0"), "{msg}");
    assert!(msg.contains("Injected failure of `startvm`"), "{msg}");
    assert!(
        msg.contains("startvm lab-1a2b3c4d-node1 --type headless"),
        "{msg}"
    );
    assert_eq!(lab.count("startvm "), 1, "not a transient error: no retry");
    assert_eq!(d.status(&m), MachineStatus::Stopped);
}

#[test]
fn transient_errors_are_retried_then_given_up() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    lab.env(&[("FAKE_VBOX_TRANSIENT", "modifyvm:2")]);
    lab.clear_calls();
    d.start(&m).expect("third try works");
    assert_eq!(lab.count("modifyvm "), 3);
    assert_eq!(d.status(&m), MachineStatus::Running { pid: 0 });

    lab.env(&[("FAKE_VBOX_TRANSIENT", "clonevm:5")]);
    lab.clear_calls();
    let err = d.create(&lab.machine("node2")).unwrap_err();
    assert_eq!(lab.count("clonevm "), 3, "three tries");
    assert!(
        err.to_string().contains("VBOX_E_INVALID_OBJECT_STATE"),
        "{err}"
    );
}

#[test]
fn missing_vtx_is_a_clear_error() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    lab.env(&[("FAKE_VBOX_NO_VTX", "1")]);
    let err = d.start(&m).unwrap_err();
    let v = vbox_err(&err);
    assert!(
        matches!(v, VBoxError::NoHwVirt { vm, detail } if vm == "lab-1a2b3c4d-node1" && detail.contains("VERR_VMX_NO_VMX")),
        "{v:?}"
    );
    assert!(err.to_string().contains("VT-x"), "{err}");
    let hint = vbox_hint(v).expect("hint");
    assert!(hint.contains("BIOS") && hint.contains("Hyper-V"), "{hint}");
}

#[test]
fn a_foreign_vm_with_the_same_name_is_refused_and_left_alone() {
    let lab = Lab::new();
    let d = lab.driver();
    let m = lab.machine("node1");
    let elsewhere = lab.root().join("someone-elses-vms");
    lab.vboxmanage(&[
        "import",
        lab.ovf().to_str().expect("utf8"),
        "--vsys",
        "0",
        "--vmname",
        &m.id,
        "--basefolder",
        elsewhere.to_str().expect("utf8"),
    ]);
    let err = d.create(&m).unwrap_err();
    assert!(
        matches!(vbox_err(&err), VBoxError::ForeignVm { name } if *name == m.id),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("was not created by labctl"),
        "{err}"
    );
    assert_eq!(
        lab.count("import "),
        1,
        "no master import for a refused create"
    );
    assert_eq!(d.status(&m), MachineStatus::NotCreated);
    assert!(matches!(
        vbox_err(&d.snapshot(&m, &SnapshotOp::List).unwrap_err()),
        VBoxError::ForeignVm { .. }
    ));
    d.destroy(&m).expect("destroy leaves it alone");
    assert!(lab.vm_names().contains(&m.id));
    assert!(elsewhere.join(&m.id).exists());

    // The same VM marked as labctl's (extradata) is adopted.
    lab.vboxmanage(&["setextradata", &m.id, vbox::EXTRADATA_ID, &m.id]);
    d.create(&m).expect("ours now");
    assert_eq!(d.status(&m), MachineStatus::Stopped);
}

#[test]
fn destroy_removes_the_clone_and_keeps_the_master() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1", "node2"]);
    let m = lab.machine("node1");
    d.start(&m).expect("start");
    d.destroy(&m).expect("destroy");
    assert_eq!(d.status(&m), MachineStatus::NotCreated);
    assert!(!m.dir.exists());
    assert_eq!(
        lab.vm_names(),
        ["labctl-master-labctl--debian-12", "lab-1a2b3c4d-node2"]
    );
    d.destroy(&m).expect("destroy is idempotent");
    assert!(matches!(
        d.start(&m).unwrap_err(),
        DriverError::NotCreated { .. }
    ));
}

#[test]
fn snapshots_save_list_restore_delete() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    assert!(d.snapshot(&m, &SnapshotOp::List).expect("list").is_empty());
    d.start(&m).expect("start");
    assert_eq!(
        d.snapshot(&m, &SnapshotOp::Save("provisioned".into()))
            .expect("save"),
        ["provisioned"]
    );
    assert_eq!(
        d.snapshot(&m, &SnapshotOp::Save("s2".into()))
            .expect("save"),
        ["provisioned", "s2"]
    );
    // Restoring a running VM: power off, restore, boot again.
    lab.clear_calls();
    d.snapshot(&m, &SnapshotOp::Restore("provisioned".into()))
        .expect("restore");
    assert_eq!(d.status(&m), MachineStatus::Running { pid: 0 });
    let calls = lab.calls();
    let order: Vec<&str> = calls
        .lines()
        .filter(|l| {
            !l.starts_with("showvminfo") && !l.starts_with("snapshot lab-1a2b3c4d-node1 list")
        })
        .collect();
    assert_eq!(
        order,
        [
            "controlvm lab-1a2b3c4d-node1 poweroff",
            "snapshot lab-1a2b3c4d-node1 restore provisioned",
            "startvm lab-1a2b3c4d-node1 --type headless",
        ]
    );
    assert_eq!(
        d.snapshot(&m, &SnapshotOp::Delete("s2".into()))
            .expect("delete"),
        ["provisioned"]
    );
    let err = d
        .snapshot(&m, &SnapshotOp::Restore("nope".into()))
        .unwrap_err();
    assert!(
        matches!(vbox_err(&err), VBoxError::NoSuchSnapshot { name, .. } if name == "nope"),
        "{err:?}"
    );
    assert_eq!(
        d.status(&m),
        MachineStatus::Running { pid: 0 },
        "left running"
    );
    d.stop(&m, StopMode::Force).expect("stop");
    d.snapshot(&m, &SnapshotOp::Restore("provisioned".into()))
        .expect("restore stopped");
    assert_ne!(d.status(&m), MachineStatus::NotCreated);
    assert!(matches!(
        d.snapshot(&lab.machine("node9"), &SnapshotOp::List)
            .unwrap_err(),
        DriverError::NotCreated { .. }
    ));
}

#[test]
fn pause_and_resume_for_consistent_lab_snapshots() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    // A stopped machine is left alone.
    lab.clear_calls();
    d.pause(&m, true).expect("pause stopped");
    assert_eq!(lab.count("controlvm "), 0, "{}", lab.calls());
    d.start(&m).expect("start");
    lab.clear_calls();
    d.pause(&m, true).expect("pause");
    d.pause(&m, true).expect("pause again");
    assert_eq!(
        lab.count("controlvm lab-1a2b3c4d-node1 pause"),
        1,
        "{}",
        lab.calls()
    );
    let info = lab.vboxmanage(&["showvminfo", "lab-1a2b3c4d-node1", "--machinereadable"]);
    assert!(info.contains("VMState=\"paused\""), "{info}");
    // Still "running" for labctl: a paused guest is up.
    assert_eq!(d.status(&m), MachineStatus::Running { pid: 0 });
    d.snapshot(&m, &SnapshotOp::Save("class".into()))
        .expect("save while paused");
    d.pause(&m, false).expect("resume");
    assert_eq!(
        lab.count("controlvm lab-1a2b3c4d-node1 resume"),
        1,
        "{}",
        lab.calls()
    );
    let info = lab.vboxmanage(&["showvminfo", "lab-1a2b3c4d-node1", "--machinereadable"]);
    assert!(info.contains("VMState=\"running\""), "{info}");
    assert!(matches!(
        d.pause(&lab.machine("node9"), true).unwrap_err(),
        DriverError::NotCreated { .. }
    ));
}

#[test]
fn networks_reuse_or_create_hostonly_interfaces_and_name_internal_ones() {
    let lab = Lab::new();
    lab.vboxmanage(&["hostonlyif", "create"]);
    lab.vboxmanage(&[
        "hostonlyif",
        "ipconfig",
        "vboxnet0",
        "--ip",
        "192.168.56.1",
        "--netmask",
        "255.255.255.0",
    ]);
    lab.clear_calls();
    let d = lab.driver();
    let mut nets = lab.nets();
    nets.push(NetworkConfig {
        name: "second".into(),
        host_ip: Some((Ipv4Addr::new(192, 168, 57, 1), 24)),
    });
    d.networks_up(&lab.run_dir(), &nets).expect("networks_up");
    assert_eq!(
        lab.calls(),
        "--version\nlist hostonlyifs\nhostonlyif create --machinereadable\nhostonlyif ipconfig vboxnet1 --ip 192.168.57.1 --netmask 255.255.255.0\n"
    );
    let map: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lab.run_dir().join(vbox::NETWORKS_FILE)).expect("recorded"),
    )
    .expect("json");
    assert_eq!(map["private"]["hostonly"], "vboxnet0");
    assert_eq!(map["second"]["hostonly"], "vboxnet1");
    assert_eq!(
        map["storage"]["intnet"],
        vbox::intnet_name(&lab.run_dir(), "storage")
    );
    // Again: nothing to create.
    lab.clear_calls();
    d.networks_up(&lab.run_dir(), &nets).expect("again");
    assert_eq!(lab.calls(), "list hostonlyifs\n");

    // Another process (fresh driver) starts a machine from the recorded networks.
    let m = lab.machine("node1");
    d.create(&m).expect("create");
    lab.driver().start(&m).expect("start");
    let calls = lab.calls();
    assert!(
        calls.contains("--nic2 hostonly --hostonlyadapter2 vboxnet0 --macaddress2 525400BB0001"),
        "{calls}"
    );
    assert!(
        calls.contains("--nic3 intnet --intnet3 labctl-[TAG]-storage --macaddress3 525400CC0001"),
        "{calls}"
    );

    // Without networks_up there is nothing to attach to.
    d.networks_down(&lab.run_dir(), &nets).expect("down");
    d.stop(&m, StopMode::Force).expect("stop");
    let err = lab.driver().start(&m).unwrap_err();
    assert!(
        matches!(vbox_err(&err), VBoxError::NetworkNotUp { network } if network == "private"),
        "{err:?}"
    );
}

#[test]
fn hostonly_ranges_virtualbox_would_refuse_are_caught_before_anything_is_created() {
    let lab = Lab::new();
    let nets = vec![NetworkConfig {
        name: "private".into(),
        host_ip: Some((Ipv4Addr::new(192, 168, 1, 1), 24)),
    }];
    let err = lab.driver().networks_up(&lab.run_dir(), &nets).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(vbox_err(&err), VBoxError::HostOnlyRange(_)),
        "{err:?}"
    );
    assert!(msg.contains("`* 192.168.1.0/24`"), "{msg}");
    assert!(msg.contains("/etc/vbox/networks.conf"), "{msg}");
    assert!(msg.contains("cidr = \"192.168.56.0/24\""), "{msg}");
    assert!(
        vbox_hint(vbox_err(&err))
            .expect("hint")
            .contains("sudo tee -a /etc/vbox/networks.conf")
    );
    assert_eq!(lab.calls(), "--version\n", "nothing created");

    // networks.conf that allows it.
    std::fs::write(
        lab.root().join("networks.conf"),
        "* 10.0.0.0/8 192.168.0.0/16\n",
    )
    .expect("conf");
    lab.driver()
        .networks_up(&lab.run_dir(), &nets)
        .expect("allowed by networks.conf");

    // Windows hosts and VirtualBox before 6.1.28 do not restrict.
    std::fs::remove_file(lab.root().join("networks.conf")).expect("rm");
    let windows = VBoxDriver::new(VBoxConfig {
        host_os: HostOs::Windows,
        ..lab.config()
    });
    windows.networks_up(&lab.run_dir(), &nets).expect("windows");
    lab.env(&[("FAKE_VBOX_VERSION", "6.1.26r145957")]);
    lab.driver()
        .networks_up(&lab.run_dir(), &nets)
        .expect("6.1.26");
    lab.env(&[("FAKE_VBOX_VERSION", "6.1.50_Debianr161033")]);
    assert!(lab.driver().networks_up(&lab.run_dir(), &nets).is_err());
}

#[test]
fn the_version_is_detected_once_and_shapes_modifyvm() {
    let lab = Lab::new();
    lab.env(&[("FAKE_VBOX_VERSION", "6.1.50_Debianr161033")]);
    let d = lab.driver();
    assert_eq!(d.info().name, "virtualbox");
    assert_eq!(d.info().version, "6.1.50_Debianr161033");
    lab.up(&d, &["node1"]);
    d.start(&m_with_nested(&lab)).expect("start");
    assert_eq!(lab.count("--version"), 1);
    assert!(lab.calls().contains("--nested-hw-virt on"));
}

#[test]
fn versions_before_6_1_and_7_0_0_are_refused_before_anything_is_created() {
    for (version, why) in [
        ("5.2.44r139111", "6.1 or later"),
        ("6.0.24r139119", "6.1 or later"),
        ("7.0.0r153978", "leaves NAT port-forwarding rules out"),
    ] {
        let lab = Lab::new();
        lab.env(&[("FAKE_VBOX_VERSION", version)]);
        let d = lab.driver();
        let err = d.create(&lab.machine("node1")).unwrap_err();
        let v = vbox_err(&err);
        assert!(
            matches!(v, VBoxError::UnsupportedVersion { found, .. } if found == version),
            "{v:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(version) && msg.contains(why), "{msg}");
        assert!(vbox_hint(v).expect("hint").contains("virtualbox.org"));
        assert_eq!(lab.calls(), "--version\n", "{version}: nothing else ran");
        let err = d.networks_up(&lab.run_dir(), &lab.nets()).unwrap_err();
        assert!(matches!(
            vbox_err(&err),
            VBoxError::UnsupportedVersion { .. }
        ));
    }
}

/// What 7.0.0 would have done to labctl: with two rules on NIC 1, `showvminfo` shows none, so
/// the second boot's `modifyvm` would not delete them and fail on "already exists". The
/// stand-in reproduces the omission; labctl refuses 7.0.0 (above) instead of tripping on it.
#[test]
fn the_7_0_0_stand_in_omits_forwarding_lines() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    d.start(&m).expect("start");
    let info = |lab: &Lab| lab.vboxmanage(&["showvminfo", &m.id, "--machinereadable"]);
    assert_eq!(info(&lab).matches("Forwarding(").count(), 2);
    lab.env(&[("FAKE_VBOX_VERSION", "7.0.0r153978")]);
    assert_eq!(
        info(&lab).matches("Forwarding(").count(),
        0,
        "{}",
        info(&lab)
    );
}

fn m_with_nested(lab: &Lab) -> MachineConfig {
    let mut m = lab.machine("node1");
    m.nested_virt = true;
    m
}

#[test]
fn virtualbox_not_installed_is_a_host_tool_error_with_a_hint() {
    let d = VBoxDriver::new(VBoxConfig::with_program(PathBuf::from(
        "/nonexistent/labctl-test/VBoxManage",
    )));
    let lab = Lab::new();
    let err = d.create(&lab.machine("node1")).unwrap_err();
    match &err {
        DriverError::Tool(ToolError::NotFound {
            hint: Some(hint), ..
        }) => assert!(hint.contains("virtualbox.org"), "{hint}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(d.status(&lab.machine("node1")), MachineStatus::NotCreated);
    assert_eq!(d.info().version, "");
}

/// `VBoxDriver::discover` takes VBoxManage from `LABCTL_VBOXMANAGE`. The environment is
/// process-wide, so the check runs in a child copy of this test binary.
#[test]
fn discover_honours_labctl_vboxmanage() {
    if let Some(want) = std::env::var_os("LABCTL_TEST_DISCOVER_CHILD") {
        let d = VBoxDriver::discover().expect("discover");
        assert_eq!(d.config().vboxmanage, PathBuf::from(want));
        assert_eq!(d.info().version, "7.0.20r163906");
        return;
    }
    let lab = Lab::new();
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "discover_honours_labctl_vboxmanage",
            "--nocapture",
        ])
        .env("LABCTL_VBOXMANAGE", lab.wrapper())
        .env("LABCTL_TEST_DISCOVER_CHILD", lab.wrapper())
        .output()
        .expect("run child");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{out:?}"
    );
    assert_eq!(lab.calls(), "--version\n");
}

// ---- Stand-in modes: VirtualBox as users have it (issue #15) ----

/// The calls since the last `clear_calls`, `showvminfo` polls left out.
fn actions(lab: &Lab) -> Vec<String> {
    lab.calls()
        .lines()
        .filter(|l| !l.starts_with("showvminfo "))
        .map(String::from)
        .collect()
}

/// The fake's output for a call, run with extra environment (no assertion on success).
fn fake_raw(lab: &Lab, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut c = Command::new(lab.wrapper());
    c.args(args).env_remove("LC_ALL").env_remove("LC_MESSAGES");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run fake")
}

fn ssh_rule(lab: &Lab, vm: &str) -> String {
    lab.vboxmanage(&["showvminfo", vm, "--machinereadable"])
        .lines()
        .find(|l| l.starts_with("Forwarding(") && l.contains("\"ssh,"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn russian_virtualbox_works_through_machine_readable_output() {
    // 1: the user's locale is Russian; labctl's LC_ALL wins. 2: VirtualBox's own language
    // setting is Russian; it wins over LC_ALL, and only machine-readable parsing helps.
    for vars in [
        [("LANG", "ru_RU.UTF-8")],
        [("FAKE_VBOX_LANGUAGE_ID", "ru_RU")],
    ] {
        let lab = Lab::new();
        lab.env(&vars);
        // The stand-in really speaks Russian here (VBoxManageNls_ru.ts texts).
        let out = fake_raw(&lab, &[], &["hostonlyif", "create"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Интерфейс 'vboxnet0' успешно создан"),
            "{text}"
        );
        lab.vboxmanage(&[
            "hostonlyif",
            "ipconfig",
            "vboxnet0",
            "--ip",
            "192.168.56.1",
            "--netmask",
            "255.255.255.0",
        ]);
        lab.clear_calls();
        let d = lab.driver();
        lab.up(&d, &["node1"]);
        d.networks_up(&lab.run_dir(), &lab.nets()).expect("again");
        assert_eq!(
            lab.count("hostonlyif create"),
            0,
            "{vars:?}: the existing interface is found, not duplicated: {}",
            lab.calls()
        );
        let m = lab.machine("node1");
        assert!(d.snapshot(&m, &SnapshotOp::List).expect("list").is_empty());
        d.start(&m).expect("start");
        assert_eq!(
            d.snapshot(&m, &SnapshotOp::Save("provisioned".into()))
                .expect("save"),
            ["provisioned"]
        );
        d.stop(&m, StopMode::Graceful(Duration::from_secs(10)))
            .expect("stop");
        assert_eq!(d.status(&m), MachineStatus::Stopped);
        // A same-named VM elsewhere marked as labctl's is adopted through getextradata.
        let n2 = lab.machine("node2");
        let elsewhere = lab.root().join("elsewhere");
        lab.vboxmanage(&[
            "import",
            lab.ovf().to_str().expect("utf8"),
            "--vsys",
            "0",
            "--vmname",
            &n2.id,
            "--basefolder",
            elsewhere.to_str().expect("utf8"),
        ]);
        lab.vboxmanage(&["setextradata", &n2.id, vbox::EXTRADATA_ID, &n2.id]);
        assert_eq!(d.status(&n2), MachineStatus::Stopped, "{vars:?}");
        d.destroy(&m).expect("destroy");
    }
}

#[test]
fn macos_virtualbox_7_uses_host_only_networks() {
    let lab = Lab::new();
    lab.env(&[("FAKE_VBOX_HOST", "macos")]);
    let out = fake_raw(&lab, &[], &["hostonlyif", "create"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/vboxnetctl"));
    let d = VBoxDriver::new(VBoxConfig {
        host_os: HostOs::MacOs,
        locale: "en_US.UTF-8".into(),
        ..lab.config()
    });
    let nets = vec![
        NetworkConfig {
            name: "private".into(),
            // Outside 192.168.56.0/21 and no networks.conf: fine for host-only networks.
            host_ip: Some((Ipv4Addr::new(192, 168, 1, 1), 24)),
        },
        NetworkConfig {
            name: "storage".into(),
            host_ip: None,
        },
    ];
    lab.clear_calls();
    d.networks_up(&lab.run_dir(), &nets).expect("networks_up");
    assert_eq!(
        lab.calls(),
        "--version\nlist hostonlynets\nhostonlynet add --name labctl-192.168.1.0-24 --netmask 255.255.255.0 --lower-ip 192.168.1.1 --upper-ip 192.168.1.254 --enable\n"
    );
    lab.clear_calls();
    d.networks_up(&lab.run_dir(), &nets).expect("again");
    assert_eq!(lab.calls(), "list hostonlynets\n", "found, not added twice");
    let m = lab.machine("node1");
    d.create(&m).expect("create");
    d.start(&m).expect("start");
    assert!(
        lab.calls().contains(
            "--nic2 hostonlynet --host-only-net2 labctl-192.168.1.0-24 --macaddress2 525400BB0001"
        ),
        "{}",
        lab.calls()
    );
    assert_eq!(d.status(&m), MachineStatus::Running { pid: 0 });
    let info = lab.vboxmanage(&["showvminfo", &m.id, "--machinereadable"]);
    assert!(
        info.contains("hostonly-network2=\"labctl-192.168.1.0-24\""),
        "{info}"
    );
    let parsed = vbox::parse::showvminfo(&info).expect("parses");
    let nic2 = parsed.nic(2).expect("nic2");
    assert_eq!(nic2.attachment, "hostonlynetwork");
    assert_eq!(
        nic2.hostonly_network.as_deref(),
        Some("labctl-192.168.1.0-24")
    );
    // A second boot detaches nothing it should not (surplus NICs only).
    d.stop(&m, StopMode::Force).expect("stop");
    lab.clear_calls();
    d.start(&m).expect("start again");
    assert!(!lab.calls().contains("--nic2 none"), "{}", lab.calls());

    // macOS with VirtualBox 6.1: host-only interfaces and the networks.conf rule.
    let lab = Lab::new();
    lab.env(&[
        ("FAKE_VBOX_HOST", "macos"),
        ("FAKE_VBOX_VERSION", "6.1.50r161033"),
    ]);
    let d = VBoxDriver::new(VBoxConfig {
        host_os: HostOs::MacOs,
        ..lab.config()
    });
    let err = d.networks_up(&lab.run_dir(), &nets).unwrap_err();
    assert!(
        matches!(vbox_err(&err), VBoxError::HostOnlyRange(_)),
        "{err:?}"
    );
}

#[test]
fn apple_silicon_refuses_x86_boxes_before_import() {
    let lab = Lab::new();
    let d = VBoxDriver::new(VBoxConfig {
        host_os: HostOs::MacOs,
        host_arch: "aarch64".into(),
        ..lab.config()
    });
    let m = lab.machine("node1");
    let err = d.create(&m).unwrap_err();
    assert!(
        matches!(vbox_err(&err), VBoxError::ArchMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Apple silicon"), "{err}");
    assert_eq!(lab.count("import "), 0, "{}", lab.calls());
    std::fs::write(
        lab.ovf(),
        "<Envelope><vbox:Machine OSType=\"Debian_arm64\"/></Envelope>\n",
    )
    .expect("ovf");
    d.create(&m).expect("an arm64 box imports");
}

#[test]
fn the_box_nat_mac_is_kept_for_the_master_and_every_clone() {
    let lab = Lab::new();
    std::fs::write(
        lab.ovf(),
        "<Envelope><Adapter slot=\"0\" enabled=\"true\" MACAddress=\"080027AB12CD\" type=\"82540EM\"/></Envelope>\n",
    )
    .expect("ovf");
    let d = lab.driver();
    lab.up(&d, &["node1", "node2"]);
    let d2 = lab.driver();
    d2.start(&lab.machine("node1")).expect("start");
    for vm in [
        "labctl-master-labctl--debian-12",
        "lab-1a2b3c4d-node1",
        "lab-1a2b3c4d-node2",
    ] {
        let info = lab.vboxmanage(&["showvminfo", vm, "--machinereadable"]);
        assert!(
            info.contains("macaddress1=\"080027AB12CD\""),
            "{vm}: {info}"
        );
    }
    let info = lab.vboxmanage(&["showvminfo", "lab-1a2b3c4d-node1", "--machinereadable"]);
    assert!(info.contains("macaddress2=\"525400BB0001\""), "{info}");
}

#[test]
fn a_port_nat_could_not_bind_is_reported_then_moved_on_the_running_vm() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let mut m = lab.machine("node1");
    // A previous boot left a long VBox.log; the new boot's log is read from its start.
    d.start(&m).expect("first boot");
    let log_path = m.dir.join(&m.id).join("Logs/VBox.log");
    let mut long = std::fs::read_to_string(&log_path).expect("log");
    long.push_str(&"00:00:09.000000 VMMDev: Guest Log: a long first boot\n".repeat(4000));
    std::fs::write(&log_path, long).expect("pad log");
    d.stop(&m, StopMode::Force).expect("stop");
    lab.env(&[("FAKE_VBOX_TAKEN_PORTS", "60011")]);
    let err = d.start(&m).unwrap_err();
    assert!(
        matches!(err, DriverError::PortInUse { port: 60011 }),
        "{err:?}"
    );
    assert_eq!(
        d.status(&m),
        MachineStatus::Running { pid: 0 },
        "VirtualBox boots anyway"
    );
    let log = std::fs::read_to_string(m.dir.join(&m.id).join("Logs/VBox.log")).expect("log");
    assert!(
        log.contains("NAT: Failed to redirect TCP 127.0.0.1:60011 -> 0.0.0.0:22"),
        "{log}"
    );
    // The runner picks another port and calls start again: applied to the running VM.
    m.ssh.host = 60111;
    lab.clear_calls();
    d.start(&m).expect("moved");
    assert_eq!(
        actions(&lab),
        [
            "controlvm lab-1a2b3c4d-node1 natpf1 delete ssh",
            "controlvm lab-1a2b3c4d-node1 natpf1 ssh,tcp,127.0.0.1,60111,,22",
        ]
    );
    assert!(
        ssh_rule(&lab, &m.id).contains(",60111,"),
        "{}",
        ssh_rule(&lab, &m.id)
    );
    // Taken again: reported again.
    lab.env(&[("FAKE_VBOX_TAKEN_PORTS", "60111,60211")]);
    m.ssh.host = 60211;
    assert!(matches!(
        d.start(&m).unwrap_err(),
        DriverError::PortInUse { port: 60211 }
    ));
}

#[test]
fn startvm_exit_1_after_the_vm_started_is_accepted() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    lab.env(&[("FAKE_VBOX_STARTVM_EXIT1", "1")]);
    d.start(&m).expect("the VM runs, so the start counts");
    assert_eq!(d.status(&m), MachineStatus::Running { pid: 0 });
    assert_eq!(lab.count("startvm "), 1);
}

#[test]
fn a_saved_vm_whose_port_moved_gets_the_new_forward_after_start() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let mut m = lab.machine("node1");
    d.start(&m).expect("start");
    lab.vboxmanage(&["controlvm", &m.id, "savestate"]);
    assert_eq!(d.status(&m), MachineStatus::Stopped);
    m.ssh.host = 60111;
    lab.clear_calls();
    d.start(&m).expect("resume");
    assert_eq!(
        actions(&lab),
        [
            "startvm lab-1a2b3c4d-node1 --type headless",
            "controlvm lab-1a2b3c4d-node1 natpf1 delete ssh",
            "controlvm lab-1a2b3c4d-node1 natpf1 ssh,tcp,127.0.0.1,60111,,22",
        ],
        "no modifyvm on a saved VM"
    );
    assert!(ssh_rule(&lab, &m.id).contains(",60111,"));
}

#[test]
fn a_guru_meditation_is_a_dead_vm_with_its_vbox_log() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    lab.env(&[("FAKE_VBOX_GURU", "1")]);
    let err = d.start(&m).unwrap_err();
    match &err {
        DriverError::DiedOnStart { serial_tail, .. } => {
            assert!(serial_tail.contains("VBox.log:"), "{serial_tail}");
            assert!(serial_tail.contains("Guru Meditation"), "{serial_tail}");
        }
        other => panic!("expected DiedOnStart, got {other:?}"),
    }
    assert_eq!(d.status(&m), MachineStatus::Stopped, "dead, not running");
    lab.env(&[]);
    lab.clear_calls();
    d.start(&m).expect("powered off, then started");
    let a = actions(&lab);
    assert_eq!(a[0], "controlvm lab-1a2b3c4d-node1 poweroff", "{a:?}");
    assert!(a.iter().any(|c| c.starts_with("startvm ")), "{a:?}");
    // Stop and destroy of a guru-meditation VM power it off.
    lab.env(&[("FAKE_VBOX_GURU", "1")]);
    d.stop(&m, StopMode::Force).expect("stop");
    let _ = d.start(&m);
    assert_eq!(
        d.stop(&m, StopMode::Graceful(Duration::from_secs(1)))
            .expect("stop"),
        StopOutcome::Forced("the VM was stuck in a guru meditation".into())
    );
    let _ = d.start(&m);
    d.destroy(&m).expect("destroy");
    assert_eq!(d.status(&m), MachineStatus::NotCreated);
}

#[test]
fn machine_folders_of_interrupted_imports_and_clones_are_removed() {
    let lab = Lab::new();
    lab.env(&[("FAKE_VBOX_INTERRUPT", "import:1,clonevm:1")]);
    let d = lab.driver();
    let m = lab.machine("node1");
    assert!(d.create(&m).is_err(), "import interrupted");
    let master_dir = lab
        .root()
        .join("boxes/labctl--debian-12/labctl-master-labctl--debian-12");
    assert!(
        master_dir
            .join("labctl-master-labctl--debian-12.vbox")
            .exists()
    );
    assert!(d.create(&m).is_err(), "clone interrupted");
    assert!(m.dir.join(&m.id).join(format!("{}.vbox", m.id)).exists());
    d.create(&m).expect("third time: both folders cleaned");
    assert_eq!(
        lab.vm_names(),
        ["labctl-master-labctl--debian-12", "lab-1a2b3c4d-node1"]
    );
    assert_eq!(lab.count("import "), 2);
    assert_eq!(lab.count("clonevm "), 2);
}

#[test]
fn snapshot_names_are_read_raw_and_unsafe_ones_refused() {
    let lab = Lab::new();
    let d = lab.driver();
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    lab.clear_calls();
    for bad in ["say \"hi\"", "a\\b", "two\nlines"] {
        let err = d.snapshot(&m, &SnapshotOp::Save(bad.into())).unwrap_err();
        assert!(
            matches!(vbox_err(&err), VBoxError::BadSnapshotName { name } if name == bad),
            "{err:?}"
        );
    }
    assert_eq!(lab.count("snapshot "), 0);
    assert_eq!(
        d.snapshot(&m, &SnapshotOp::Save("before class".into()))
            .expect("save"),
        ["before class"]
    );
    // Taken behind labctl's back: VirtualBox prints it unescaped, labctl reads it as it is.
    lab.vboxmanage(&["snapshot", &m.id, "take", "it's \"odd\\"]);
    assert_eq!(
        d.snapshot(&m, &SnapshotOp::List).expect("list"),
        ["before class", "it's \"odd\\"]
    );
    let info = lab.vboxmanage(&["showvminfo", &m.id, "--machinereadable"]);
    assert!(info.contains("SnapshotName-1=\"it's \"odd\\\"\n"), "{info}");
}

#[test]
fn crlf_output_everywhere_like_vboxmanage_exe() {
    let lab = Lab::new();
    lab.env(&[("FAKE_VBOX_CRLF", "1")]);
    let raw = fake_raw(&lab, &[], &["--version"]);
    assert!(String::from_utf8_lossy(&raw.stdout).ends_with("\r\n"));
    let d = VBoxDriver::new(VBoxConfig {
        host_os: HostOs::Windows,
        ..lab.config()
    });
    lab.up(&d, &["node1"]);
    d.networks_up(&lab.run_dir(), &lab.nets()).expect("again");
    assert_eq!(lab.count("hostonlyif create"), 1, "{}", lab.calls());
    let m = lab.machine("node1");
    d.start(&m).expect("start");
    assert_eq!(d.status(&m), MachineStatus::Running { pid: 0 });
    assert_eq!(
        d.snapshot(&m, &SnapshotOp::Save("s1".into()))
            .expect("save"),
        ["s1"]
    );
    let out = d
        .stop(&m, StopMode::Graceful(Duration::from_secs(10)))
        .expect("stop");
    assert!(matches!(out, StopOutcome::Graceful(_)), "{out:?}");
    d.start(&m)
        .expect("start again (NAT rules deleted by name, no CR in them)");
    d.destroy(&m).expect("destroy");
    assert_eq!(d.status(&m), MachineStatus::NotCreated);
}

/// Two labctl processes setting up the same host-only network: one interface, not two. The
/// children are copies of this test binary.
#[test]
fn hostonly_setup_is_locked_across_processes() {
    if let Some(root) = std::env::var_os("LABCTL_TEST_HOSTONLY_CHILD") {
        let root = PathBuf::from(root);
        let d = VBoxDriver::new(VBoxConfig {
            vboxmanage: root.join("bin/VBoxManage"),
            networks_conf: root.join("networks.conf"),
            host_os: HostOs::Linux,
            host_arch: "x86_64".into(),
            retry_backoff: Duration::from_millis(5),
            poll_interval: Duration::from_millis(20),
            locale: "C.UTF-8".into(),
            data_dir: Some(root.join("home")),
            record: None,
        });
        let nets = [NetworkConfig {
            name: "private".into(),
            host_ip: Some((Ipv4Addr::new(192, 168, 56, 1), 24)),
        }];
        d.networks_up(&root.join(format!("run-{}", std::process::id())), &nets)
            .expect("networks_up");
        return;
    }
    let lab = Lab::new();
    let children: Vec<std::process::Child> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "hostonly_setup_is_locked_across_processes"])
                .env("LABCTL_TEST_HOSTONLY_CHILD", lab.root())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    assert_eq!(lab.count("hostonlyif create"), 1, "{}", lab.calls());
    assert!(lab.root().join("home/vbox-hostonly.lock").exists());
}

#[test]
fn transcripts_record_every_call_and_the_stand_in_replays_them() {
    let lab = Lab::new();
    let file = lab.root().join("transcript.jsonl");
    let flow = |d: &VBoxDriver| -> Vec<String> {
        lab.up(d, &["node1"]);
        let m = lab.machine("node1");
        d.start(&m).expect("start");
        let snaps = d
            .snapshot(&m, &SnapshotOp::Save("s1".into()))
            .expect("save");
        d.stop(&m, StopMode::Force).expect("stop");
        assert_eq!(d.status(&m), MachineStatus::Stopped);
        snaps
    };
    let recorded = flow(&VBoxDriver::new(VBoxConfig {
        record: Some(file.clone()),
        ..lab.config()
    }));
    let text = std::fs::read_to_string(&file).expect("transcript");
    // To refresh the example in transcripts/: LABCTL_TEST_KEEP_TRANSCRIPT=PATH.
    if let Some(keep) = std::env::var_os("LABCTL_TEST_KEEP_TRANSCRIPT") {
        std::fs::write(
            keep,
            text.replace(&lab.root().display().to_string(), "/tmp/labctl-test"),
        )
        .expect("keep");
    }
    let entries: Vec<vbox::TranscriptEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(entries.len(), lab.calls().lines().count());
    assert_eq!(entries[0].argv, ["--version"]);
    assert_eq!(entries[0].env["LC_ALL"], "C.UTF-8");
    assert_eq!(entries[0].env["LANG"], "C.UTF-8");
    assert_eq!(entries[0].exit, Some(0));
    assert!(entries[0].stdout.starts_with("7.0.20"));
    assert!(
        entries
            .iter()
            .any(|e| e.argv.first().is_some_and(|a| a == "startvm"))
    );
    // Replayed: the same calls get the same answers, without the stand-in's VM state.
    lab.env(&[("FAKE_VBOX_REPLAY", file.to_str().expect("utf8"))]);
    lab.clear_calls();
    let _ = std::fs::remove_file(lab.run_dir().join(vbox::NETWORKS_FILE));
    let replayed = flow(&lab.driver());
    assert_eq!(replayed, recorded);
}

/// Every transcript under `crates/labctl-testbins/transcripts/` (recorded with
/// `LABCTL_VBOX_RECORD`): each answer parses, and the stand-in replays each call verbatim.
#[test]
fn every_transcript_parses_and_replays() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("transcripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("transcripts dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).expect("read");
        let entries: Vec<vbox::TranscriptEntry> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}")))
            .collect();
        for e in entries.iter().filter(|e| e.exit == Some(0)) {
            let sub: Vec<&str> = e.argv.iter().map(String::as_str).collect();
            match sub.as_slice() {
                ["--version"] => {
                    assert!(vbox::parse::version(&e.stdout).is_some(), "{name}: {e:?}");
                }
                ["showvminfo", _, "--machinereadable"] => {
                    assert!(
                        vbox::parse::showvminfo(&e.stdout).is_some(),
                        "{name}: {e:?}"
                    );
                }
                ["list", "hostonlyifs"] => {
                    let n = e
                        .stdout
                        .lines()
                        .filter(|l| l.contains("HostInterfaceNetworking-"))
                        .count();
                    assert_eq!(
                        vbox::parse::list_hostonlyifs(&e.stdout).len(),
                        n,
                        "{name}: {e:?}"
                    );
                }
                ["list", "hostonlynets"] => {
                    let n = e.stdout.matches(": hostonly-").count();
                    assert_eq!(
                        vbox::parse::list_hostonlynets(&e.stdout).len(),
                        n,
                        "{name}: {e:?}"
                    );
                }
                ["hostonlyif", "create", "--machinereadable"] => {
                    assert!(
                        vbox::parse::hostonlyif_created(&e.stdout).is_some(),
                        "{name}: {e:?}"
                    );
                }
                _ => {}
            }
        }
        let lab = Lab::new();
        lab.env(&[("FAKE_VBOX_REPLAY", file.to_str().expect("utf8"))]);
        for e in &entries {
            let args: Vec<&str> = e.argv.iter().map(String::as_str).collect();
            let out = fake_raw(&lab, &[], &args);
            assert_eq!(out.status.code(), e.exit, "{name}: {:?}", e.argv);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                e.stdout,
                "{name}: {:?}",
                e.argv
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                e.stderr,
                "{name}: {:?}",
                e.argv
            );
        }
    }
}

/// The machines of labs/k8s-classic as the runner makes them (m-k8s and two workers, one
/// host-only network 192.168.1.0/24, the book's ports), for call sequences per host OS.
fn classic_machines(lab: &Lab) -> Vec<MachineConfig> {
    [
        ("m-k8s", 2, 3072, 60010, 1u8),
        ("w1-k8s", 1, 2560, 60101, 2),
        ("w2-k8s", 1, 2560, 60102, 3),
    ]
    .into_iter()
    .map(|(name, cpus, mem, port, n)| {
        let mut m = lab.machine(name);
        m.id = format!("k8s-classic-1a2b3c4d-{name}");
        m.cpus = cpus;
        m.memory_mb = mem;
        m.ssh.host = port;
        m.forwards.clear();
        m.private_nics.truncate(1);
        m.private_nics[0].mac = format!("52:54:00:bb:00:{n:02x}");
        m.group = Some("k8s-SgMST-1.13.1(github_SysNet4Admin)".into());
        m
    })
    .collect()
}

/// `up`, `status`, `snapshot save`/`list`, `halt`, `destroy` of k8s-classic through the driver
/// on one host OS and VirtualBox version; the calls in order (sequential, so stable).
fn classic_sequence(host_os: HostOs, version: &str, extra: &[(&str, &str)]) -> String {
    let lab = Lab::new();
    let mut vars = vec![("FAKE_VBOX_VERSION", version)];
    vars.extend_from_slice(extra);
    lab.env(&vars);
    std::fs::write(lab.root().join("networks.conf"), "* 192.168.0.0/16\n").expect("conf");
    let d = VBoxDriver::new(VBoxConfig {
        host_os,
        ..lab.config()
    });
    let nets = [NetworkConfig {
        name: "private".into(),
        host_ip: Some((Ipv4Addr::new(192, 168, 1, 1), 24)),
    }];
    let ms = classic_machines(&lab);
    let mut out = String::from("## up\n");
    let section = |title: &str, out: &mut String| {
        let mut calls: Vec<String> = lab.calls().lines().map(String::from).collect();
        calls.dedup();
        out.push_str(&calls.join("\n"));
        out.push_str(&format!("\n## {title}\n"));
        lab.clear_calls();
    };
    d.networks_up(&lab.run_dir(), &nets).expect("networks_up");
    for m in &ms {
        d.create(m).expect("create");
        d.start(m).expect("start");
    }
    section("status", &mut out);
    for m in &ms {
        assert_eq!(d.status(m), MachineStatus::Running { pid: 0 });
    }
    section("snapshot save before-class; snapshot list", &mut out);
    for m in &ms {
        d.pause(m, true).expect("pause");
    }
    for m in &ms {
        d.snapshot(m, &SnapshotOp::Save("before-class".into()))
            .expect("save");
    }
    for m in &ms {
        d.pause(m, false).expect("resume");
    }
    for m in &ms {
        assert_eq!(
            d.snapshot(m, &SnapshotOp::List).expect("list"),
            ["before-class"]
        );
    }
    section("halt", &mut out);
    for m in &ms {
        d.stop(m, StopMode::Graceful(Duration::from_secs(10)))
            .expect("stop");
    }
    section("destroy", &mut out);
    for m in &ms {
        d.destroy(m).expect("destroy");
    }
    section("end", &mut out);
    out.replace(&lab.root().display().to_string(), "[TMP]")
}

#[test]
fn classic_call_sequences_per_host_os() {
    let linux = classic_sequence(HostOs::Linux, "7.1.4r165100", &[]);
    let windows = classic_sequence(HostOs::Windows, "7.1.4r165100", &[("FAKE_VBOX_CRLF", "1")]);
    assert_eq!(
        windows, linux,
        "Windows (CRLF output) makes the same calls as Linux"
    );
    insta::assert_snapshot!("classic_linux_or_windows_7_1", linux);
    insta::assert_snapshot!(
        "classic_macos_7_1",
        classic_sequence(
            HostOs::MacOs,
            "7.1.4r165100",
            &[("FAKE_VBOX_HOST", "macos")]
        )
    );
    insta::assert_snapshot!(
        "classic_macos_6_1",
        classic_sequence(
            HostOs::MacOs,
            "6.1.50r161033",
            &[("FAKE_VBOX_HOST", "macos")]
        )
    );
}

#[test]
fn macos_host_only_networks_listed_in_russian_are_found_again() {
    let lab = Lab::new();
    lab.env(&[
        ("FAKE_VBOX_HOST", "macos"),
        ("FAKE_VBOX_LANGUAGE_ID", "ru_RU"),
    ]);
    let d = VBoxDriver::new(VBoxConfig {
        host_os: HostOs::MacOs,
        ..lab.config()
    });
    let nets = [NetworkConfig {
        name: "private".into(),
        host_ip: Some((Ipv4Addr::new(192, 168, 1, 1), 24)),
    }];
    d.networks_up(&lab.run_dir(), &nets).expect("networks_up");
    let listing = String::from_utf8_lossy(&fake_raw(&lab, &[], &["list", "hostonlynets"]).stdout)
        .into_owned();
    assert!(
        listing.contains("Нижний IP:         192.168.1.1"),
        "{listing}"
    );
    // Another labctl process (a fresh driver) finds the network in the Russian listing.
    let again = VBoxDriver::new(VBoxConfig {
        host_os: HostOs::MacOs,
        ..lab.config()
    });
    again.networks_up(&lab.run_dir(), &nets).expect("again");
    assert_eq!(lab.count("hostonlynet add"), 1, "{}", lab.calls());
}

/// `box remove` drops the box's imported master VM first (issue 14 item 10): refused while a
/// linked clone still hangs off it, done once the clones are gone, and a no-op afterwards.
#[test]
fn removing_a_box_unregisters_its_master_once_no_clone_uses_it() {
    let lab = Lab::new();
    let d = lab.driver();
    let box_dir = lab.root().join("boxes/labctl--debian-12");
    assert_eq!(d.remove_master(&box_dir).expect("nothing recorded"), None);
    lab.up(&d, &["node1"]);
    let m = lab.machine("node1");
    let refused = d
        .remove_master(&box_dir)
        .expect_err("a clone uses the master");
    assert!(refused.to_string().contains("child media"), "{refused}");
    assert!(box_dir.join(vbox::MASTER_FILE).exists());
    d.destroy(&m).expect("destroy");
    assert_eq!(
        d.remove_master(&box_dir).expect("unregister"),
        Some("labctl-master-labctl--debian-12".to_string())
    );
    assert!(lab.vm_names().is_empty(), "{:?}", lab.vm_names());
    assert!(!box_dir.join(vbox::MASTER_FILE).exists());
    assert!(
        lab.calls()
            .contains("unregistervm labctl-master-labctl--debian-12 --delete")
    );
    assert_eq!(d.remove_master(&box_dir).expect("again"), None);

    // A VM that took the master's name but is not the recorded one is left alone.
    lab.up(&d, &["node2"]);
    d.destroy(&lab.machine("node2")).expect("destroy");
    let record = box_dir.join(vbox::MASTER_FILE);
    let text = std::fs::read_to_string(&record).expect("record");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["uuid"] = serde_json::json!("00000000-0000-0000-0000-000000000000");
    std::fs::write(&record, v.to_string()).expect("record");
    lab.clear_calls();
    assert_eq!(d.remove_master(&box_dir).expect("foreign"), None);
    assert_eq!(lab.count("unregistervm "), 0);
    assert_eq!(lab.vm_names(), ["labctl-master-labctl--debian-12"]);
}
