//! The VirtualBox driver against `fake-vboxmanage`, the stand-in for VBoxManage (VirtualBox
//! cannot run on this machine). Each test gets its own fake "VirtualBox" in a temp directory,
//! reached through a small wrapper script that sets the fake's environment, so tests can run
//! in parallel threads without touching this process's environment.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
    let hint = v.hint().expect("hint");
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
        vbox_err(&err)
            .hint()
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
        assert!(v.hint().expect("hint").contains("virtualbox.org"));
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
