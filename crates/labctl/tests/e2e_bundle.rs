//! End-to-end test of the classroom bundle (issue 16) with real guests, guest internet off:
//! `labctl bundle build` of the k8s lab (Debian's packages through apt, the ordinary client;
//! pkgs.k8s.io cannot be reached from here, so the Kubernetes set is reported incomplete),
//! then `labctl up --workers 2 --bundle` of that lab with `LABCTL_NO_EGRESS=1`: on every node
//! the container-runtime step installs containerd from the bundle's signed repository served
//! by labctl on the host (through QEMU's guestfwd), containerd is active, and the Kubernetes
//! packages step is skipped for its real reason, its dependants skipped, not failed.
//!
//! Like the other end-to-end tests it is `#[ignore]`d and run by `scripts/test.sh`.

use std::path::Path;

mod common;
use common::{Lab, alive, have_box};

const NODES: [&str; 3] = ["m-k8s", "w1-k8s", "w2-k8s"];

/// A copy of the bundled k8s lab with its own ports, on a fresh host.
fn k8s_lab(base: u16) -> Lab {
    let lab = Lab::from_toml("");
    std::fs::remove_dir_all(&lab.dir).expect("empty dir");
    lab.run_ok(&["init", "--lab", "k8s", lab.dir.to_str().expect("utf8")]);
    let toml = std::fs::read_to_string(lab.dir.join("lab.toml")).expect("lab.toml");
    let toml = toml
        .replace("ssh_port = 60010", &format!("ssh_port = {base}"))
        .replace("ssh_port = 60101", &format!("ssh_port = {}", base + 91))
        .replace("host = 60443", &format!("host = {}", base + 433));
    std::fs::write(lab.dir.join("lab.toml"), toml).expect("lab.toml");
    lab
}

#[test]
#[ignore = "boots QEMU guests; run by scripts/test.sh"]
fn k8s_runtime_step_installs_from_the_bundle_with_egress_off() {
    if !have_box() {
        return;
    }
    let lab = k8s_lab(64010);
    let dir = lab.dir.to_str().expect("utf8").to_string();

    // The bundle: the runtime set complete, the Kubernetes set not (pkgs.k8s.io unreachable).
    let built = lab.run(&["bundle", "build", "--lab", &dir, "--name", "e2e"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(built.status.success(), "bundle build failed: {said}");
    let show: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.host.home.join("bundles/e2e/manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    let set = |name: &str| show["sets"][name]["debian-12"].clone();
    assert_eq!(set("runtime")["complete"], true, "{show}");
    assert_eq!(set("kubernetes")["complete"], false, "{show}");
    let missing = set("kubernetes")["missing"].to_string();
    assert!(missing.contains("kubeadm"), "{missing}");

    let up = lab.run(&["up", "--workers", "2", "--bundle", "e2e"]);
    let err = String::from_utf8_lossy(&up.stderr).into_owned();
    assert!(up.status.success(), "up failed: {err}");

    for node in NODES {
        // containerd came from the bundle's repository, over the guestfwd address.
        let policy = lab.ssh(node, "apt-cache policy containerd");
        assert!(
            policy.contains("http://10.0.2.100/b/e2e/apt/debian-12"),
            "{node}: {policy}"
        );
        assert!(policy.contains("Installed: 1."), "{node}: {policy}");
        assert_eq!(
            lab.ssh(node, "systemctl is-active containerd").trim(),
            "active",
            "{node}"
        );
        // The repository is verified with the bundle's key: no source is trusted blindly.
        let trusted = lab.ssh(
            node,
            "grep -rl 'trusted=yes' /etc/apt/ 2>/dev/null | wc -l; ls /etc/apt/keyrings/",
        );
        let mut lines = trusted.lines();
        assert_eq!(lines.next().map(str::trim), Some("0"), "{node}: {trusted}");
        assert!(trusted.contains("labctl-bundle.asc"), "{node}: {trusted}");
    }
    // The Kubernetes packages step names what the bundle lacks; its dependants are skipped.
    assert!(
        err.contains("install_k8s_pkgs")
            && err.contains("bundle `e2e` lacks package set `kubernetes`"),
        "{err}"
    );
    assert!(!err.contains("failed:"), "a step failed: {err}");

    // destroy stops the one bundle server with the last lab that used it.
    let record = lab.host.home.join("bundle-server.json");
    let pid = std::fs::read_to_string(&record)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["pid"].as_u64())
        .expect("bundle server recorded") as u32;
    assert!(alive(pid));
    lab.run_ok(&["destroy", "-f"]);
    assert!(!alive(pid), "the bundle server outlived its last lab");
    assert!(!Path::new(&record).exists());
}
