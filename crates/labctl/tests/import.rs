//! `labctl import` as a user runs it, on the seed's chapter-3 Vagrantfile and on Ruby it refuses.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn data(rel: &str) -> PathBuf {
    repo().join("crates/labctl-import/tests/data").join(rel)
}

fn labctl() -> Command {
    let mut c = Command::cargo_bin("labctl").expect("labctl binary");
    for var in [
        "LABCTL_LAB",
        "LABCTL_WORKERS",
        "LABCTL_NO_EGRESS",
        "NO_COLOR",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c.env("COLUMNS", "100");
    c
}

fn plan_json(lab: &Path) -> Value {
    let out = labctl()
        .args(["plan", "--json", "--workers", "3", "--lab"])
        .arg(lab)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Names, CPUs, memory, addresses, ports; steps in order with their arguments.
fn comparable(plan: &Value) -> Value {
    let nodes: Vec<Value> = plan["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            serde_json::json!([
                n["name"],
                n["cpus"],
                n["memory_mb"],
                n["ips"],
                n["ssh_port"],
                n["forwards"]
            ])
        })
        .collect();
    let steps: Vec<Value> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| serde_json::json!([s["node"], s["order"], s["step"], s["args"]]))
        .collect();
    serde_json::json!({"nodes": nodes, "steps": steps})
}

#[test]
fn import_of_the_seed_chapter3_plans_like_k8s_classic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ch3");
    std::fs::create_dir(&dir).expect("mkdir");
    for f in [
        "Vagrantfile",
        "config.sh",
        "install_pkg.sh",
        "master_node.sh",
        "work_nodes.sh",
    ] {
        std::fs::copy(data("seed-003").join(f), dir.join(f)).expect("copy");
    }
    let out = labctl()
        .arg("import")
        .arg(dir.join("Vagrantfile"))
        .output()
        .expect("run");
    let stdout =
        String::from_utf8_lossy(&out.stdout).replace(&tmp.path().display().to_string(), "[TMP]");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    insta::assert_snapshot!(format!("{stdout}---\n{stderr}"));
    for f in [
        "config.sh",
        "install_pkg.sh",
        "master_node.sh",
        "work_nodes.sh",
    ] {
        assert_eq!(
            std::fs::read(dir.join("templates").join(f)).expect("copied"),
            std::fs::read(dir.join(f)).expect("original"),
        );
    }
    let imported = comparable(&plan_json(&dir));
    let classic = comparable(&plan_json(&repo().join("labs/k8s-classic")));
    assert_eq!(imported, classic);
    // A second import refuses to overwrite.
    let again = labctl()
        .arg("import")
        .arg(dir.join("Vagrantfile"))
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn ruby_it_cannot_evaluate_is_an_error_with_the_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = labctl()
        .arg("import")
        .arg(data("khtw-2025.Vagrantfile"))
        .arg("--out")
        .arg(tmp.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&repo().display().to_string(), "[REPO]");
    insta::assert_snapshot!(stderr);
    assert!(!tmp.path().join("lab.toml").exists());
}
