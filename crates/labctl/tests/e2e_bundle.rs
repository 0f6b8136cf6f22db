//! End-to-end test of the classroom bundle (issue 16) with real guests, guest internet off:
//! `labctl bundle build` of the k8s lab (Debian's packages through apt, the ordinary client;
//! pkgs.k8s.io cannot be reached from here, so the Kubernetes set is reported incomplete),
//! then `labctl up --workers 2 --bundle` of that lab with `LABCTL_NO_EGRESS=1`: on every node
//! the container-runtime step installs containerd from the bundle's signed repository served
//! by labctl on the host (through QEMU's guestfwd), containerd is active, and the Kubernetes
//! packages step is skipped for its real reason, its dependants skipped, not failed. The
//! image path too: a tiny OCI image built here from the host's static busybox (no download)
//! is added with `bundle add-image` under a registry the guests cannot reach, and on the
//! master `ctr image pull` through the mirror configuration, then `ctr run`, prints a marker.
//!
//! Like the other end-to-end tests it is `#[ignore]`d and run by `scripts/test.sh`.

#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{Lab, alive, have_box};

const NODES: [&str; 3] = ["m-k8s", "w1-k8s", "w2-k8s"];
const IMAGE: &str = "registry.example.invalid/labctl/marker:1";

fn sha256(file: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// Put `file` into the layout's blobs; its digest and size.
fn blob(layout: &Path, file: &Path) -> (String, u64) {
    let hex = sha256(file);
    let size = std::fs::metadata(file).expect("size").len();
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("blobs");
    std::fs::copy(file, dir.join(&hex)).expect("blob");
    (format!("sha256:{hex}"), size)
}

/// An OCI image layout holding one image, `IMAGE`: one uncompressed layer with the host's
/// static busybox as /bin/busybox (and /bin/sh), made here with tar and sha256sum.
fn busybox_layout(work: &Path) -> PathBuf {
    let root = work.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("rootfs");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("sh");
    let layer = work.join("layer.tar");
    let tar = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .arg("bin")
        .status()
        .expect("tar");
    assert!(tar.success());
    let layout = work.join("layout");
    let (layer_digest, layer_size) = blob(&layout, &layer);
    let config = work.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Cmd": ["/bin/busybox", "echo", "hello"] },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] }
        })
        .to_string(),
    )
    .expect("config");
    let (config_digest, config_size) = blob(&layout, &config);
    let manifest = work.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": config_size
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest, "size": layer_size
            }]
        })
        .to_string(),
    )
    .expect("manifest");
    let (manifest_digest, manifest_size) = blob(&layout, &manifest);
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_size,
                "annotations": { "org.opencontainers.image.ref.name": IMAGE }
            }]
        })
        .to_string(),
    )
    .expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    layout
}

/// A copy of the bundled k8s lab with its own ports, on a fresh host.
fn k8s_lab(base: u16) -> Lab {
    let mut lab = Lab::from_toml("");
    std::fs::remove_dir_all(&lab.dir).expect("empty dir");
    lab.run_ok(&["init", "--lab", "k8s", lab.dir.to_str().expect("utf8")]);
    // Its ports (60010, 60101…, API 60443) move to base, base + 91…, base + 433.
    lab.env.push((
        "LABCTL_PORT_OFFSET".into(),
        (i32::from(base) - 60010).to_string(),
    ));
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

    // The image, added before `up` so that the runtime step writes the mirror configuration
    // for its registry.
    let work = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(work.path());
    lab.run_ok(&[
        "bundle",
        "add-image",
        "e2e",
        "--oci-layout",
        layout.to_str().expect("utf8"),
    ]);

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
    // The image through the mirror: the guest cannot resolve registry.example.invalid, so
    // only labctl's server can have answered.
    let ran = lab.ssh(
        "m-k8s",
        &format!(
            "ctr image pull --hosts-dir /etc/containerd/certs.d {IMAGE} >/dev/null && \
             ctr run --rm {IMAGE} marker /bin/busybox echo LABCTL-IMAGE-OK"
        ),
    );
    assert_eq!(ran.trim(), "LABCTL-IMAGE-OK", "{ran}");
    assert!(
        lab.ssh(
            "m-k8s",
            "getent hosts registry.example.invalid || echo unresolved"
        )
        .contains("unresolved")
    );

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
