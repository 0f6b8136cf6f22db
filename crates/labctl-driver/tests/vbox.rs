//! VirtualBox output parsers and the host-only range preflight, table-tested on the samples in
//! `tests/data/vbox/` (each file says where its format comes from). The driver itself is tested
//! against the `fake-vboxmanage` stand-in in `crates/labctl-testbins/tests/vbox_driver.rs`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use labctl_driver::vbox::parse::{self, NatRule, VBoxVersion, VmState};
use labctl_driver::vbox::preflight::{self, HostOs};

/// A sample without its leading `#` comment lines.
fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vbox")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines().peekable();
    while lines.next_if(|l| l.starts_with('#')).is_some() {}
    let mut out: String = lines.collect::<Vec<_>>().join("\n");
    out.push('\n');
    out
}

#[test]
fn showvminfo_of_a_running_labctl_node() {
    let info = parse::showvminfo(&data("showvminfo-7.0-running.txt")).expect("parses");
    assert_eq!(info.name, "lab-1a2b3c4d-node1");
    assert_eq!(info.uuid, "6f1b3c8e-2d4a-4e8b-9c1f-0a2b3c4d5e6f");
    assert_eq!(info.state, VmState::Running);
    assert!(info.state.is_up() && !info.state.is_mutable());
    assert_eq!(
        info.cfg_file.as_deref(),
        Some("/home/student/k8s/.labctl/machines/node1/lab-1a2b3c4d-node1/lab-1a2b3c4d-node1.vbox")
    );
    assert_eq!(info.groups.as_deref(), Some("/labctl-lab"));
    assert_eq!((info.cpus, info.memory_mb), (Some(2), Some(2048)));
    assert_eq!(
        info.uart1_file.as_deref(),
        Some("/home/student/k8s/.labctl/machines/node1/serial.log")
    );
    assert_eq!(info.current_snapshot.as_deref(), Some("provisioned"));

    let attached: Vec<(u8, &str)> = info
        .nics
        .iter()
        .map(|n| (n.index, n.attachment.as_str()))
        .collect();
    assert_eq!(
        attached,
        [
            (1, "nat"),
            (2, "hostonly"),
            (3, "intnet"),
            (4, "none"),
            (5, "none"),
            (6, "none"),
            (7, "none"),
            (8, "none")
        ]
    );
    let nat = info.nic(1).expect("nic1");
    assert_eq!(nat.mac.as_deref(), Some("525400AA0001"));
    assert_eq!(nat.cable_connected, Some(true));
    assert_eq!(
        nat.nat_rules,
        [
            NatRule {
                name: "ssh".into(),
                protocol: "tcp".into(),
                host_ip: "127.0.0.1".into(),
                host_port: 60011,
                guest_ip: String::new(),
                guest_port: 22,
            },
            NatRule {
                name: "tcp30081".into(),
                protocol: "tcp".into(),
                host_ip: "127.0.0.1".into(),
                host_port: 30081,
                guest_ip: String::new(),
                guest_port: 80,
            },
        ]
    );
    let h = info.nic(2).expect("nic2");
    assert_eq!(h.hostonly_adapter.as_deref(), Some("vboxnet0"));
    assert!(h.nat_rules.is_empty());
    assert_eq!(
        info.nic(3).and_then(|n| n.intnet.as_deref()),
        Some("labctl-5c0ffee1-storage")
    );
}

#[test]
fn showvminfo_of_a_vagrant_vm_on_windows() {
    let info = parse::showvminfo(&data("showvminfo-6.1-vagrant-poweroff.txt")).expect("parses");
    assert_eq!(info.state, VmState::PoweredOff);
    assert!(!info.state.is_up() && info.state.is_mutable());
    assert_eq!(
        info.cfg_file.as_deref(),
        Some(
            "C:\\Users\\student\\VirtualBox VMs\\k8s_m-k8s_1700000000000_12345\\k8s_m-k8s_1700000000000_12345.vbox"
        ),
        "backslashes unescaped"
    );
    assert_eq!(
        info.groups.as_deref(),
        Some("/k8s-SgMST-1.13.1(github_SysNet4Admin)")
    );
    assert_eq!(info.uart1_file, None);
    assert_eq!(info.current_snapshot, None);
    let rules: Vec<&str> = info
        .nic(1)
        .expect("nic1")
        .nat_rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(rules, ["ssh"]);
    assert_eq!(
        info.nics.iter().filter(|n| n.attachment == "none").count(),
        7
    );
}

#[test]
fn showvminfo_of_an_inaccessible_vm_is_none() {
    assert_eq!(
        parse::showvminfo(&data("showvminfo-inaccessible.txt")),
        None
    );
    assert_eq!(parse::showvminfo(""), None);
}

#[test]
fn vm_states() {
    let table = [
        ("running", VmState::Running, true),
        ("paused", VmState::Paused, true),
        ("poweroff", VmState::PoweredOff, false),
        ("aborted", VmState::Aborted, false),
        ("saved", VmState::Saved, false),
        ("aborted-saved", VmState::Saved, false),
        ("starting", VmState::Other("starting".into()), true),
        ("gurumeditation", VmState::GuruMeditation, false),
        ("stopping", VmState::Other("stopping".into()), true),
    ];
    for (text, state, up) in table {
        let s = VmState::parse(text);
        assert_eq!(s, state, "{text}");
        assert_eq!(s.is_up(), up, "{text}");
    }
}

#[test]
fn list_vms() {
    assert_eq!(
        parse::list_vms(&data("list-vms.txt")),
        [
            (
                "labctl-master-labctl--debian-12".to_string(),
                "4b8e2f1c-6a3d-4e5f-9b7a-1c2d3e4f5a6b".to_string()
            ),
            (
                "lab-1a2b3c4d-node1".into(),
                "6f1b3c8e-2d4a-4e8b-9c1f-0a2b3c4d5e6f".into()
            ),
            (
                "Windows 10 (student's own)".into(),
                "2c4e6a8b-0d1f-4a3c-8e5b-7d9f1a3c5e7b".into()
            ),
            (
                "<inaccessible>".into(),
                "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a".into()
            ),
        ]
    );
    assert!(parse::list_vms("").is_empty());
}

#[test]
fn list_hostonlyifs() {
    /// (name, address, netmask, status)
    type If = (&'static str, [u8; 4], [u8; 4], &'static str);
    let table: [(&str, &[If]); 2] = [
        (
            "list-hostonlyifs-linux.txt",
            &[
                ("vboxnet0", [192, 168, 56, 1], [255, 255, 255, 0], "Up"),
                ("vboxnet1", [192, 168, 57, 1], [255, 255, 255, 0], "Down"),
            ],
        ),
        (
            "list-hostonlyifs-windows.txt",
            &[
                (
                    "VirtualBox Host-Only Ethernet Adapter",
                    [192, 168, 56, 1],
                    [255, 255, 255, 0],
                    "Up",
                ),
                (
                    "VirtualBox Host-Only Ethernet Adapter #2",
                    [192, 168, 99, 1],
                    [255, 255, 255, 0],
                    "Up",
                ),
            ],
        ),
    ];
    for (file, want) in table {
        let got = parse::list_hostonlyifs(&data(file));
        assert_eq!(got.len(), want.len(), "{file}");
        for (g, (name, ip, mask, status)) in got.iter().zip(want) {
            assert_eq!(g.name, *name, "{file}");
            assert_eq!(g.ip, Some(Ipv4Addr::from(*ip)), "{file}");
            assert_eq!(g.netmask, Some(Ipv4Addr::from(*mask)), "{file}");
            assert_eq!(g.dhcp, Some(false), "{file}");
            assert_eq!(g.status.as_deref(), Some(*status), "{file}");
        }
    }
}

#[test]
fn hostonlyif_create_names_the_interface() {
    assert_eq!(
        parse::hostonlyif_created(&data("hostonlyif-create.txt")).as_deref(),
        Some("vboxnet2")
    );
    assert_eq!(
        parse::hostonlyif_created(&data("hostonlyif-create-machinereadable.txt")).as_deref(),
        Some("vboxnet2")
    );
    assert_eq!(
        parse::hostonlyif_created("0%...100%\r\nvboxnet3\r\n").as_deref(),
        Some("vboxnet3"),
        "CRLF"
    );
    assert_eq!(parse::hostonlyif_created("0%...100%\n"), None);
    // Translated human-readable text is not mistaken for a name.
    assert_eq!(
        parse::hostonlyif_created("Интерфейс 'vboxnet0' успешно создан\n"),
        None
    );
}

#[test]
fn list_hostonlyifs_in_russian_reads_values_by_position() {
    let got = parse::list_hostonlyifs(&data("list-hostonlyifs-ru.txt"));
    let names: Vec<(&str, Option<Ipv4Addr>, Option<Ipv4Addr>)> = got
        .iter()
        .map(|i| (i.name.as_str(), i.ip, i.netmask))
        .collect();
    let mask = Some(Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(
        names,
        [
            ("vboxnet0", Some(Ipv4Addr::new(192, 168, 56, 1)), mask),
            ("vboxnet1", Some(Ipv4Addr::new(192, 168, 57, 1)), mask),
        ]
    );
    // CRLF (VBoxManage.exe) parses the same.
    let crlf = data("list-hostonlyifs-windows.txt").replace('\n', "\r\n");
    assert_eq!(
        parse::list_hostonlyifs(&crlf),
        parse::list_hostonlyifs(&data("list-hostonlyifs-windows.txt"))
    );
}

#[test]
fn list_hostonlynets_on_macos() {
    let got = parse::list_hostonlynets(&data("list-hostonlynets-macos.txt"));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].name, "labctl-192.168.1.0-24");
    assert_eq!(got[1].lower_ip, Some(Ipv4Addr::new(192, 168, 1, 1)));
    assert_eq!(got[1].upper_ip, Some(Ipv4Addr::new(192, 168, 1, 254)));
    assert_eq!(got[1].netmask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(got[0].name, "HostNetwork");
    assert_eq!(got[0].upper_ip, Some(Ipv4Addr::new(192, 168, 56, 199)));
}

#[test]
fn nat_redirect_failures_in_vbox_log() {
    assert_eq!(
        parse::nat_redirect_failures(&data("vbox-log-nat.txt")),
        [60010, 2222]
    );
    assert!(
        parse::nat_redirect_failures("00:00:01.0 NAT: Set redirect TCP 127.0.0.1:1 -> 0.0.0.0:2\n")
            .is_empty()
    );
}

#[test]
fn raw_values_and_snapshot_names() {
    // Forwarding and snapshot names are raw; other strings escaped.
    let info = parse::showvminfo(
        "name=\"a \\\"b\\\"\"\r\nUUID=\"u\"\r\nVMState=\"gurumeditation\"\r\nLogFldr=\"C:\\\\VMs\\\\x\\\\Logs\"\r\nnic1=\"nat\"\r\nForwarding(0)=\"ssh,tcp,127.0.0.1,2222,,22\"\r\nSnapshotName=\"a\\b\"\r\nSnapshotName-1=\"say \"hi\"\"\r\n",
    )
    .expect("parses");
    assert_eq!(info.name, "a \"b\"");
    assert_eq!(info.log_folder.as_deref(), Some("C:\\VMs\\x\\Logs"));
    assert_eq!(info.snapshots, ["a\\b", "say \"hi\""]);
    assert_eq!(info.state, VmState::GuruMeditation);
    assert!(!info.state.is_up() && info.state.has_process() && info.state.is_dead());
    assert_eq!(info.nic(1).map(|n| n.nat_rules.len()), Some(1));
    for (name, ok) in [
        ("base", true),
        ("before class", true),
        ("a\"b", false),
        ("a\\b", false),
        ("x\ny", false),
        ("", false),
    ] {
        assert_eq!(parse::snapshot_name_ok(name), ok, "{name:?}");
    }
}

#[test]
fn extradata_in_any_language() {
    assert_eq!(
        parse::extradata_value("[ru]Значение: lab-1\r\n").as_deref(),
        Some("lab-1")
    );
    assert_eq!(
        parse::extradata_value("[ru]Значение не установлено!\n"),
        None
    );
}

#[test]
fn snapshot_lists() {
    assert_eq!(
        parse::snapshot_list(&data("snapshot-list-tree.txt")),
        ["base", "provisioned", "cni", "ingress \"nginx\""],
        "raw, as VirtualBox prints them"
    );
    assert!(parse::snapshot_list(&data("snapshot-list-none.txt")).is_empty());
    // showvminfo carries the same lines at its end.
    assert_eq!(
        parse::snapshot_list(&data("showvminfo-7.0-running.txt")),
        ["provisioned"]
    );
}

#[test]
fn versions() {
    let text = data("versions.txt");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (input, want) = line.split_once(" => ").expect("`output => version`");
        let v = parse::version(input).unwrap_or_else(|| panic!("{input}"));
        assert_eq!(v.to_string(), want, "{input}");
        n += 1;
    }
    assert_eq!(n, 7);
    assert_eq!(
        parse::version(&data("version-with-warning.txt")),
        Some(VBoxVersion::new(5, 2, 6))
    );
    assert_eq!(parse::version("VBoxManage: error: boom\n"), None);
    assert_eq!(parse::version(""), None);
    assert!(VBoxVersion::new(6, 1, 28).at_least(6, 1, 28));
    assert!(VBoxVersion::new(7, 0, 0).at_least(6, 1, 28));
    assert!(!VBoxVersion::new(6, 1, 26).at_least(6, 1, 28));
}

#[test]
fn extradata_values() {
    assert_eq!(
        parse::extradata_value("Value: lab-1a2b3c4d-node1\n").as_deref(),
        Some("lab-1a2b3c4d-node1")
    );
    assert_eq!(parse::extradata_value("No value set!\n"), None);
}

#[test]
fn stderr_classification() {
    // (file, error?, transient?, not found?, hw-virt detail, kernel-driver detail)
    type Row = (
        &'static str,
        bool,
        bool,
        bool,
        Option<&'static str>,
        Option<&'static str>,
    );
    let table: [Row; 7] = [
        (
            "stderr-no-vtx.txt",
            true,
            false,
            false,
            Some("VT-x is not available (VERR_VMX_NO_VMX)"),
            None,
        ),
        (
            "stderr-no-vtx-hyperv.txt",
            true,
            false,
            false,
            Some("Not in a hypervisor partition (HVP=0) (VERR_NEM_NOT_AVAILABLE)."),
            None,
        ),
        (
            "stderr-no-svm.txt",
            true,
            false,
            false,
            Some("AMD-V is not available (VERR_SVM_NO_SVM)"),
            None,
        ),
        ("stderr-locked.txt", true, true, false, None, None),
        ("stderr-not-found.txt", true, false, true, None, None),
        ("stderr-hostonly-range.txt", true, false, false, None, None),
        (
            "stderr-driver-not-installed.txt",
            true,
            false,
            false,
            None,
            Some("Kernel driver not installed (rc=-1908) VERR_VM_DRIVER_NOT_INSTALLED"),
        ),
    ];
    for (file, error, transient, missing, hw, drv) in table {
        let text = data(file);
        assert_eq!(parse::reports_error(&text), error, "{file}");
        assert_eq!(parse::is_transient(&text), transient, "{file}");
        assert_eq!(parse::is_not_found(&text), missing, "{file}");
        assert_eq!(parse::hw_virt_problem(&text).as_deref(), hw, "{file}");
        assert_eq!(
            parse::kernel_driver_problem(&text).as_deref(),
            drv,
            "{file}"
        );
    }
    assert!(!parse::reports_error(&data("hostonlyif-create.txt")));
    assert!(parse::kernel_driver_problem(&data("version-with-warning.txt")).is_some());
}

#[test]
fn networks_conf_ranges() {
    let text = "# lab ranges\n* 10.0.0.0/8 192.168.0.0/16\n* 2001::/64\n  *   172.16.5.9/24\nnot a range line 1.2.3.0/24\n*172.17.0.0/16\n";
    assert_eq!(
        preflight::parse_networks_conf(text),
        [
            (Ipv4Addr::new(10, 0, 0, 0), 8),
            (Ipv4Addr::new(192, 168, 0, 0), 16),
            (Ipv4Addr::new(172, 16, 5, 0), 24),
        ]
    );
}

#[test]
fn hostonly_range_preflight() {
    let v7 = VBoxVersion::new(7, 0, 20);
    let lab1 = (Ipv4Addr::new(192, 168, 1, 1), 24);
    let lab56 = (Ipv4Addr::new(192, 168, 56, 1), 24);
    let lab63 = (Ipv4Addr::new(192, 168, 63, 1), 24);
    let lab64 = (Ipv4Addr::new(192, 168, 64, 1), 24);
    // (what, version, host, networks.conf, network, allowed?)
    type Row = (
        &'static str,
        VBoxVersion,
        HostOs,
        Option<&'static str>,
        (Ipv4Addr, u8),
        bool,
    );
    let table: [Row; 13] = [
        ("default range", v7, HostOs::Linux, None, lab56, true),
        (
            "default range, top /24",
            v7,
            HostOs::Linux,
            None,
            lab63,
            true,
        ),
        ("just past it", v7, HostOs::Linux, None, lab64, false),
        ("refused, no file", v7, HostOs::Linux, None, lab1, false),
        ("refused on macOS", v7, HostOs::MacOs, None, lab1, false),
        ("refused on Solaris", v7, HostOs::Solaris, None, lab1, false),
        (
            "allowed by the file",
            v7,
            HostOs::Linux,
            Some("* 10.0.0.0/8 192.168.0.0/16\n"),
            lab1,
            true,
        ),
        (
            "file present, not covering",
            v7,
            HostOs::Linux,
            Some("* 10.0.0.0/8\n"),
            lab1,
            false,
        ),
        (
            "file replaces the default",
            v7,
            HostOs::Linux,
            Some("* 10.0.0.0/8\n"),
            lab56,
            false,
        ),
        (
            "file with only comments",
            v7,
            HostOs::Linux,
            Some("# * 192.168.0.0/16\n"),
            lab1,
            false,
        ),
        (
            "older version",
            VBoxVersion::new(6, 1, 26),
            HostOs::Linux,
            None,
            lab1,
            true,
        ),
        (
            "first restricted version",
            VBoxVersion::new(6, 1, 28),
            HostOs::Linux,
            None,
            lab1,
            false,
        ),
        ("Windows", v7, HostOs::Windows, None, lab1, true),
    ];
    for (what, version, host, conf, net, allowed) in table {
        let got = preflight::check_hostonly_range(version, host, conf, net);
        assert_eq!(got.is_ok(), allowed, "{what}: {got:?}");
    }
}

#[test]
fn preflight_error_says_what_to_do() {
    let v7 = VBoxVersion::new(7, 0, 20);
    let lab1 = (Ipv4Addr::new(192, 168, 1, 1), 24);
    let err = preflight::check_hostonly_range(v7, HostOs::Linux, None, lab1).unwrap_err();
    assert_eq!(err.conf_line(), "* 192.168.1.0/24");
    insta::assert_snapshot!("preflight_no_file", err.to_string());
    let err = preflight::check_hostonly_range(v7, HostOs::MacOs, Some("* 10.0.0.0/8\n"), lab1)
        .unwrap_err();
    insta::assert_snapshot!("preflight_file_not_covering", err.to_string());
}

#[test]
fn preflight_reads_the_host_file() {
    let d = tempfile::tempdir().expect("tmp");
    let conf = d.path().join("networks.conf");
    let v7 = VBoxVersion::new(7, 0, 20);
    let lab1 = (Ipv4Addr::new(192, 168, 1, 1), 24);
    assert!(preflight::check_hostonly_range_on_host(v7, HostOs::Linux, &conf, lab1).is_err());
    std::fs::write(&conf, "* 192.168.1.0/24\n").expect("write");
    assert!(preflight::check_hostonly_range_on_host(v7, HostOs::Linux, &conf, lab1).is_ok());
}
