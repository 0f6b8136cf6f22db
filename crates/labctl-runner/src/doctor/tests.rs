use super::programs::{parse_major_minor, version_of};
use super::resources::{disk_available_mb, existing_ancestor, parse_meminfo};
use super::*;

#[test]
fn versions_are_read_from_the_real_tools_output() {
    // First lines as printed by QEMU 7.2 (Debian 12), qemu-img and OpenSSH 9.2.
    assert_eq!(
        version_of(
            Tool::QemuSystem,
            "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"
        )
        .as_deref(),
        Some("7.2.22")
    );
    assert_eq!(
        version_of(
            Tool::QemuImg,
            "qemu-img version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)\n"
        )
        .as_deref(),
        Some("8.2.2")
    );
    assert_eq!(
        version_of(
            Tool::Ssh,
            "OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026\n"
        )
        .as_deref(),
        Some("OpenSSH_9.2p1 Debian-2+deb12u6")
    );
    assert_eq!(parse_major_minor("7.2.22"), Some((7, 2)));
    assert_eq!(parse_major_minor("6.2.0"), Some((6, 2)));
    assert!(parse_major_minor("6.2.0").is_some_and(|v| v < QEMU_MIN));
    assert!(parse_major_minor("10.0.2").is_some_and(|v| v >= QEMU_MIN));
}

#[test]
fn meminfo_available() {
    let text =
        "MemTotal:        8039412 kB\nMemFree:          512000 kB\nMemAvailable:    4194304 kB\n";
    assert_eq!(parse_meminfo(text), Some(4096));
    assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
}

#[test]
fn levels() {
    let mem = |a: Option<u64>, n: u64| Finding::Memory {
        available_mb: a,
        needed_mb: n,
        nodes: 1,
    };
    assert_eq!(mem(Some(4096), 1024).level(), Level::Ok);
    assert_eq!(mem(Some(512), 1024).level(), Level::Fail);
    assert_eq!(mem(None, 1024).level(), Level::Warn);
    let accel = |s, a| Finding::Accel {
        setting: s,
        verdict: Some(AccelVerdict {
            accel: a,
            reason: String::new(),
        }),
        reprobed: false,
    };
    assert_eq!(accel(AccelSetting::Auto, Engine::Kvm).level(), Level::Ok);
    assert_eq!(accel(AccelSetting::Auto, Engine::Tcg).level(), Level::Warn);
    assert_eq!(accel(AccelSetting::Kvm, Engine::Tcg).level(), Level::Fail);
    let ssh = Finding::Program {
        tool: Tool::Ssh,
        path: None,
        version: None,
        problem: Some(ToolProblem::NotFound { env_value: None }),
    };
    assert_eq!(ssh.level(), Level::Warn);
    let qemu = Finding::Program {
        tool: Tool::QemuSystem,
        path: None,
        version: None,
        problem: Some(ToolProblem::NotFound { env_value: None }),
    };
    assert_eq!(qemu.level(), Level::Fail);
    assert!(!passed(&[ssh.clone(), qemu]));
    assert!(passed(&[ssh]));
}

#[test]
fn free_disk_of_an_existing_directory() {
    let d = tempfile::tempdir().expect("tmp");
    let missing = d.path().join("a/b/c");
    assert_eq!(existing_ancestor(&missing), d.path());
    assert!(disk_available_mb(d.path()).is_some());
}
