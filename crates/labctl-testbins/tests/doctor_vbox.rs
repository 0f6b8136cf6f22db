//! `labctl doctor` on a VirtualBox lab (`labs/k8s-classic`), with `fake-vboxmanage` standing
//! in for VBoxManage: the version line, and the host-only range check the driver makes
//! before `up` creates anything (VirtualBox ≥ 6.1.28 on Linux refuses 192.168.1.0/24 unless
//! /etc/vbox/networks.conf allows it). Needs the `labctl` binary next to `fake-vboxmanage`.
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-vboxmanage");

fn doctor(root: &Path, version: &str) -> (Option<i32>, Value) {
    use std::os::unix::fs::PermissionsExt;
    let vbox = root.join(format!("bin-{version}/VBoxManage"));
    std::fs::create_dir_all(vbox.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &vbox,
        format!(
            "#!/bin/sh\nFAKE_VBOX_STATE='{}' FAKE_VBOX_VERSION='{version}' exec '{FAKE}' \"$@\"\n",
            root.join("vbox").display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&vbox, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // This package's copy of the CLI, rebuilt with the tests.
    let labctl = env!("CARGO_BIN_EXE_labctl-test");
    let run = |args: &[&str]| {
        Command::new(labctl)
            .args(args)
            .current_dir(root)
            .env_remove("LABCTL_LAB")
            .env_remove("LABCTL_WORKERS")
            .env("LABCTL_HOME", root.join("home"))
            .env("LABCTL_CACHE", root.join("cache"))
            .env("LABCTL_VBOXMANAGE", &vbox)
            .env("NO_COLOR", "1")
            .output()
            .expect("run labctl")
    };
    if !root.join("lab/lab.toml").exists() {
        assert!(
            run(&["init", "--lab", "k8s-classic", "lab"])
                .status
                .success()
        );
    }
    let out = run(&["doctor", "--json", "--lab", "lab"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

fn check<'a>(v: &'a Value, kind: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == kind))
        .unwrap_or_else(|| panic!("no {kind} check in {v}"))
}

#[test]
fn doctor_checks_virtualbox_and_its_host_only_range() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (code, v) = doctor(tmp.path(), "7.0.20r163906");
    assert_eq!(v["schema"], 1);
    let prog = check(&v, "program");
    assert_eq!(prog["tool"], "VBoxManage");
    assert_eq!(prog["version"], "7.0.20");
    assert_eq!(prog["level"], "ok");
    // No QEMU checks for a VirtualBox lab.
    assert!(
        v["checks"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["check"] != "accel")),
        "{v}"
    );
    // The lab's box is not installed: a failure, so exit 1 either way.
    assert_eq!(check(&v, "box")["level"], "fail");
    assert_eq!(code, Some(1));
    let net = check(&v, "host_only");
    assert_eq!(net["cidr"], "192.168.1.1/24", "{net}");
    if Path::new("/etc/vbox/networks.conf").exists() {
        eprintln!("skipping the range refusal: this host has /etc/vbox/networks.conf");
    } else {
        assert_eq!(net["level"], "fail", "{net}");
        let fix = net["fix"].as_str().unwrap_or_default();
        assert!(fix.contains("/etc/vbox/networks.conf"), "{fix}");
        assert!(
            net["message"]
                .as_str()
                .is_some_and(|m| m.contains("192.168.1.0/24")),
            "{net}"
        );
    }
    // VirtualBox 6.1.26 has no such restriction.
    let (_, v) = doctor(tmp.path(), "6.1.26r145957");
    assert_eq!(check(&v, "host_only")["level"], "ok");
}
