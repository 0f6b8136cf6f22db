//! The spec-related commands as a user runs them: help, init, validate, plan, render.
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

/// Exit codes (see `labctl --help` and crates/labctl/src/errors.rs).
const USAGE: i32 = 2;
const SPEC: i32 = 3;

/// The labs under labs/ that this file tests, with whether they scale with `--workers`.
const BUNDLED: &[&str] = &["k8s", "k8s-classic", "k8s-ha", "k8s-rocky", "kind", "smoke"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn lab_toml(name: &str) -> PathBuf {
    repo().join("labs").join(name).join("lab.toml")
}

/// `labctl` with a fixed terminal width and none of its environment variables.
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
    c.env("COLUMNS", "100").env("LINES", "50");
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// Replace machine-specific paths with placeholders.
fn scrub(s: &str, paths: &[(&Path, &str)]) -> String {
    let mut out = s.to_string();
    for (p, name) in paths {
        out = out.replace(&p.display().to_string(), name);
    }
    out.replace(&repo().display().to_string(), "[REPO]")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run labctl")
}

// ---------------------------------------------------------------- help

#[test]
fn help() {
    let out = labctl().arg("--help").assert().success();
    insta::assert_snapshot!("help", text(&out.get_output().stdout));
}

#[test]
fn plan_help() {
    let out = labctl().args(["plan", "--help"]).assert().success();
    insta::assert_snapshot!("plan_help", text(&out.get_output().stdout));
}

#[test]
fn bad_usage_exits_2() {
    labctl()
        .arg("--bogus")
        .assert()
        .code(USAGE)
        .stderr(predicate::str::contains("--bogus"));
    labctl().assert().code(USAGE);
}

/// `--uri` and `LABCTL_URI` take only URIs labctl can route guests through (`qemu`,
/// `qemu+ssh`): a remote transport it cannot parse is a usage error, before anything runs.
#[test]
fn a_uri_labctl_cannot_route_is_a_usage_error() {
    for uri in [
        "qemu+tls://h1/system",
        "qemu+tcp://10.0.0.2/system",
        "qemu+libssh2://root@h1/system",
        "qemu+ssh:///system",
        "qemu+ssh://root@h1/system?keyfile=/k/%zz",
        "local",
    ] {
        labctl()
            .args(["status", "--uri", uri])
            .assert()
            .code(USAGE)
            .stderr(predicate::str::contains(uri));
        labctl()
            .arg("status")
            .env("LABCTL_URI", uri)
            .assert()
            .code(USAGE)
            .stderr(predicate::str::contains(uri));
    }
}

// ---------------------------------------------------------------- validate

#[test]
fn validate_ok() {
    labctl()
        .args(["validate", "--lab"])
        .arg(lab_toml("k8s-classic"))
        .assert()
        .success()
        .stdout("ok: lab `k8s-classic` is valid (4 nodes, 12 steps)\n");
}

#[test]
fn validate_takes_a_directory_and_the_environment() {
    labctl()
        .args(["validate", "--lab"])
        .arg(repo().join("labs/k8s-classic"))
        .args(["--workers", "5"])
        .assert()
        .success()
        .stdout(predicate::str::contains("(6 nodes, 18 steps)"));
    labctl()
        .arg("validate")
        .env("LABCTL_LAB", lab_toml("k8s-classic"))
        .env("LABCTL_WORKERS", "1")
        .assert()
        .success()
        .stdout(predicate::str::contains("(2 nodes, 6 steps)"));
}

const BAD_LAB: &str = r#"[lab]
name = "T 1"
provder = "qemu"
workers = 500

[[network]]
cidr = "192.168.1.0/33"

[role.master]
hostname = "m-k8s"
memroy = 12
cpus = "two"
ip = "192.168.1.10"
ssh_port = 80

[[role.master.step]]
template = "nope.sh.hbs"

[role.worker]
scale = true
hostname = "w-k8s"
ip = "192.168.1.250"
"#;

#[test]
fn validate_lists_every_problem_and_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("lab.toml"), BAD_LAB).expect("write");
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    std::fs::write(dir.path().join("templates/install.sh.hbs"), "#!/bin/bash\n").expect("write");
    let out = run(labctl().arg("validate").current_dir(dir.path()));
    assert_eq!(out.status.code(), Some(SPEC), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = text(&out.stderr);
    // Every diagnostic on its own line, with file:line:column.
    let located = stderr
        .lines()
        .filter(|l| l.starts_with("  ./lab.toml:"))
        .count();
    assert_eq!(located, 9, "{stderr}");
    insta::assert_snapshot!("validate_errors", scrub(&stderr, &[(dir.path(), "[DIR]")]));
}

#[test]
fn validate_without_a_lab_points_at_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(labctl().arg("validate").current_dir(dir.path()));
    assert_eq!(out.status.code(), Some(USAGE), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no lab.toml in ."), "{stderr}");
    assert!(stderr.contains("labctl init"), "{stderr}");
    // Also for a --lab that does not exist.
    let out = run(labctl()
        .args(["plan", "--lab"])
        .arg(dir.path().join("nope/lab.toml")));
    assert_eq!(out.status.code(), Some(USAGE), "{out:?}");
    assert!(text(&out.stderr).contains("labctl init"));
}

#[test]
fn bad_workers_flag_exits_3() {
    let out = run(labctl()
        .args(["plan", "--workers", "0", "--lab"])
        .arg(lab_toml("k8s-classic")));
    assert_eq!(out.status.code(), Some(SPEC), "{out:?}");
    let stderr = scrub(&text(&out.stderr), &[]);
    assert!(
        stderr.contains(
            "[REPO]/labs/k8s-classic/lab.toml: --workers: must be between 1 and 200; got 0"
        ),
        "{stderr}"
    );
    let out = run(labctl()
        .args(["plan", "--workers", "4000000000", "--lab"])
        .arg(lab_toml("k8s-classic")));
    assert_eq!(out.status.code(), Some(SPEC), "{out:?}");
}

// ---------------------------------------------------------------- init

#[test]
fn init_lists_the_bundled_labs() {
    let out = labctl().args(["init", "--list"]).assert().success();
    let stdout = text(&out.get_output().stdout);
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, BUNDLED, "{stdout}");
}

#[test]
fn init_unknown_lab_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    labctl()
        .args(["init", "--lab", "nope"])
        .arg(dir.path())
        .assert()
        .code(USAGE)
        .stderr(predicate::str::contains("bundled labs: k8s, k8s-classic"));
    assert!(!dir.path().join("lab.toml").exists());
}

#[test]
fn init_writes_a_lab_that_validates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("my-lab");
    labctl()
        .args(["init", "--lab", "k8s"])
        .arg(&dir)
        .assert()
        .success()
        .stderr(predicate::str::contains("wrote lab `k8s`"));
    let toml = std::fs::read_to_string(dir.join("lab.toml")).expect("lab.toml written");
    assert!(
        !toml.contains("../../templates"),
        "templates must be local:\n{toml}"
    );
    for t in [
        "k8s/config.sh.hbs",
        "k8s/install_runtime.sh.hbs",
        "k8s/install_k8s_pkgs.sh.hbs",
        "k8s/master_node.sh.hbs",
    ] {
        assert!(
            dir.join("templates").join(t).is_file(),
            "missing template {t}"
        );
    }
    labctl()
        .args(["validate", "--lab"])
        .arg(&dir)
        .assert()
        .success()
        .stdout(predicate::str::starts_with("ok: lab `k8s` is valid"));
    // Run from inside the directory, as a student would.
    labctl()
        .args(["plan", "--workers", "2"])
        .current_dir(&dir)
        .assert()
        .success()
        .stdout(predicate::str::contains("w2-k8s"));

    // A second init refuses to overwrite, and leaves the file alone.
    std::fs::write(dir.join("lab.toml"), "# mine\n").expect("write");
    let out = run(labctl().args(["init", "--lab", "k8s"]).arg(&dir));
    assert_eq!(out.status.code(), Some(USAGE), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("lab.toml")).expect("read"),
        "# mine\n"
    );
    labctl()
        .args(["init", "--force", "--lab", "k8s"])
        .arg(&dir)
        .assert()
        .success();
    labctl()
        .args(["validate", "--lab"])
        .arg(&dir)
        .assert()
        .success();
}

#[test]
fn init_every_bundled_lab_validates() {
    for name in BUNDLED {
        let tmp = tempfile::tempdir().expect("tempdir");
        labctl()
            .args(["init", "--lab", name])
            .arg(tmp.path())
            .assert()
            .success();
        let out = run(labctl().args(["validate", "--lab"]).arg(tmp.path()));
        assert!(
            out.status.success(),
            "{name} after init: {}",
            text(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------- plan

#[test]
fn plan_classic_is_the_seed_topology() {
    let out = labctl()
        .args(["plan", "--workers", "3", "--lab"])
        .arg(lab_toml("k8s-classic"))
        .assert()
        .success();
    let stdout = text(&out.get_output().stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.len() >= 7 && cells[6].starts_with("127.0.0.1:"))
        .collect();
    let nodes: Vec<String> = rows.iter().map(|r| r[..7].join(" ")).collect();
    assert_eq!(
        nodes,
        [
            "m-k8s master 2 3072 MiB 192.168.1.10 127.0.0.1:60010",
            "w1-k8s worker 1 2560 MiB 192.168.1.101 127.0.0.1:60101",
            "w2-k8s worker 1 2560 MiB 192.168.1.102 127.0.0.1:60102",
            "w3-k8s worker 1 2560 MiB 192.168.1.103 127.0.0.1:60103",
        ],
        "{stdout}"
    );
    insta::assert_snapshot!("plan_k8s_classic_3", stdout);
}

fn plan_json(lab: &str, workers: Option<u32>) -> Value {
    let mut cmd = labctl();
    cmd.args(["plan", "--json", "--lab"]).arg(lab_toml(lab));
    if let Some(n) = workers {
        cmd.args(["--workers", &n.to_string()]);
    }
    let out = cmd.assert().success();
    serde_json::from_slice(&out.get_output().stdout).expect("plan --json is JSON")
}

/// Every node's addresses are unique, inside the lab network, and not reserved.
fn check_addresses(lab: &str, plan: &Value) {
    let nodes = plan["nodes"].as_array().expect("nodes");
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    let mut names = BTreeSet::new();
    for n in nodes {
        let name = n["name"].as_str().expect("name");
        assert!(
            names.insert(name.to_string()),
            "{lab}: duplicate name {name}"
        );
        let port = n["ssh_port"].as_u64().expect("port");
        assert!((1024..=65535).contains(&port), "{lab}: {name} port {port}");
        assert!(ports.insert(port), "{lab}: {name} reuses port {port}");
        for f in n["forwards"].as_array().expect("forwards") {
            let host = f["host"].as_u64().expect("host port");
            assert!(ports.insert(host), "{lab}: {name} reuses port {host}");
        }
        for nic in n["ips"].as_array().expect("ips") {
            let ip: std::net::Ipv4Addr = nic["ip"].as_str().expect("ip").parse().expect("IPv4");
            let net = nic["network"].as_str().expect("network");
            let cidr = plan["networks"]
                .as_array()
                .expect("networks")
                .iter()
                .find(|x| x["name"] == net)
                .and_then(|x| x["cidr"].as_str())
                .expect("network of the nic");
            let (base, prefix) = cidr.split_once('/').expect("cidr");
            let base: std::net::Ipv4Addr = base.parse().expect("network address");
            let prefix: u32 = prefix.parse().expect("prefix");
            let mask = u32::MAX << (32 - prefix);
            assert_eq!(
                u32::from(ip) & mask,
                u32::from(base),
                "{lab}: {name} {ip} outside {cidr}"
            );
            assert_ne!(ip, base, "{lab}: {name} has the network address");
            assert_ne!(
                u32::from(ip),
                u32::from(base) | !mask,
                "{lab}: {name} broadcast"
            );
            assert!(
                ips.insert((net.to_string(), ip)),
                "{lab}: {name} reuses {ip}"
            );
        }
    }
}

#[test]
fn plan_classic_with_twelve_workers() {
    let plan = plan_json("k8s-classic", Some(12));
    assert_eq!(plan["workers"], 12);
    let nodes = plan["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 13);
    check_addresses("k8s-classic", &plan);
    let w12 = nodes
        .iter()
        .find(|n| n["name"] == "w12-k8s")
        .expect("w12-k8s");
    assert_eq!(w12["ips"][0]["ip"], "192.168.1.112");
    assert_eq!(w12["ssh_port"], 60112);
    // Workers wait for the master's join step; config gets the worker count.
    let steps = plan["steps"].as_array().expect("steps");
    let join = steps
        .iter()
        .find(|s| s["node"] == "w12-k8s" && s["step"] == "work_nodes")
        .expect("w12 work_nodes");
    assert!(
        join["after"]
            .as_array()
            .expect("after")
            .contains(&Value::from("m-k8s.master_node")),
        "{join}"
    );
    let config = steps
        .iter()
        .find(|s| s["node"] == "m-k8s" && s["step"] == "config")
        .expect("m-k8s config");
    assert_eq!(config["args"], serde_json::json!(["12"]));
}

#[test]
fn plan_every_bundled_lab_at_every_size() {
    for lab in BUNDLED {
        let base = plan_json(lab, None);
        check_addresses(lab, &base);
        if base["workers"] == 0 {
            continue;
        }
        for n in [1, 3, 12, 50] {
            let plan = plan_json(lab, Some(n));
            assert_eq!(plan["workers"], n, "{lab}");
            check_addresses(&format!("{lab} --workers {n}"), &plan);
        }
    }
}

#[test]
fn plan_no_egress() {
    let plan = plan_json("k8s-classic", None);
    assert_eq!(plan["egress"], true);
    let out = labctl()
        .args(["plan", "--json", "--no-egress", "--lab"])
        .arg(lab_toml("k8s-classic"))
        .assert()
        .success();
    let plan: Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    assert_eq!(plan["egress"], false);
}

// ---------------------------------------------------------------- render

#[test]
fn bundled_labs_are_the_tested_ones() {
    let mut found: Vec<String> = std::fs::read_dir(repo().join("labs"))
        .expect("labs/")
        .filter_map(|e| {
            let p = e.ok()?.path();
            p.join("lab.toml")
                .is_file()
                .then(|| p.file_name()?.to_str().map(str::to_string))?
        })
        .collect();
    found.sort();
    assert_eq!(
        found, BUNDLED,
        "add new labs to BUNDLED and to the render tests"
    );
}

/// Files of a render directory: node → file name → contents, nodes in plan order.
type Rendered = BTreeMap<String, BTreeMap<String, String>>;

fn render(lab: &str, workers: Option<u32>) -> (tempfile::TempDir, Rendered) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = labctl();
    cmd.args(["render", "--lab"])
        .arg(lab_toml(lab))
        .arg("--out")
        .arg(out_dir.path());
    if let Some(n) = workers {
        cmd.args(["--workers", &n.to_string()]);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "render {lab} {workers:?}: {}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "--out prints nothing on stdout");
    let mut files = Rendered::new();
    for node in std::fs::read_dir(out_dir.path()).expect("out dir") {
        let node = node.expect("entry").path();
        let name = node
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let mut node_files = BTreeMap::new();
        for f in std::fs::read_dir(&node).expect("node dir") {
            let f = f.expect("entry").path();
            let fname = f.file_name().expect("name").to_string_lossy().to_string();
            node_files.insert(fname, std::fs::read_to_string(&f).expect("utf-8 script"));
        }
        files.insert(name, node_files);
    }
    (out_dir, files)
}

/// A minimal line diff (longest common subsequence), as `@@ -a,n +b,m @@` hunks.
fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        let (i0, j0) = (i, j);
        while (i < n || j < m) && !(i < n && j < m && a[i] == b[j]) {
            if j >= m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
                i += 1;
            } else {
                j += 1;
            }
        }
        let _ = writeln!(out, "@@ -{},{} +{},{} @@", i0 + 1, i - i0, j0 + 1, j - j0);
        for l in &a[i0..i] {
            let _ = writeln!(out, "-{l}");
        }
        for l in &b[j0..j] {
            let _ = writeln!(out, "+{l}");
        }
    }
    out
}

/// One text for a render: the first node of each role in full (at the base size), every
/// other file as a diff against its counterpart, so that snapshots stay readable.
fn describe(
    plan: &Value,
    files: &Rendered,
    base: Option<(&str, &Rendered)>,
    title: &str,
) -> String {
    let mut out = format!("{title}\n");
    let mut first_of_role: BTreeMap<String, String> = BTreeMap::new();
    let nodes = plan["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), files.len(), "one directory per node");
    for n in nodes {
        let name = n["name"].as_str().expect("name");
        let role = n["role"].as_str().expect("role").to_string();
        let first = first_of_role
            .entry(role)
            .or_insert_with(|| name.to_string())
            .clone();
        let node_files = files
            .get(name)
            .unwrap_or_else(|| panic!("no directory for {name}"));
        for (fname, content) in node_files {
            let reference = base
                .and_then(|(label, b)| Some((label.to_string(), b.get(name)?.get(fname)?)))
                .or_else(|| {
                    (first != name)
                        .then(|| Some((first.clone(), files.get(&first)?.get(fname)?)))
                        .flatten()
                });
            match reference {
                None => {
                    let _ = write!(out, "\n=== {name}/{fname}\n{content}");
                }
                Some((label, old)) if old == content => {
                    let _ = writeln!(out, "\n=== {name}/{fname}: same as {label}");
                }
                Some((label, old)) => {
                    let _ = write!(
                        out,
                        "\n=== {name}/{fname}: {label} with\n{}",
                        line_diff(old, content)
                    );
                }
            }
        }
    }
    out
}

/// Run shellcheck on every rendered script; skipped (with a note) without shellcheck unless CI.
fn shellcheck(dir: &Path, what: &str) {
    let found = std::process::Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "shellcheck is not installed, and CI is set: CI must install shellcheck"
        );
        eprintln!("note: shellcheck not installed; not checking the scripts of {what}");
        return;
    }
    let mut scripts = Vec::new();
    for node in std::fs::read_dir(dir).expect("render dir") {
        for f in std::fs::read_dir(node.expect("entry").path()).expect("node dir") {
            let p = f.expect("entry").path();
            if p.extension().is_some_and(|e| e == "sh") {
                let text = std::fs::read_to_string(&p).expect("script");
                assert!(
                    text.starts_with("#!"),
                    "{what}: {} has no #! line",
                    p.display()
                );
                scripts.push(p);
            }
        }
    }
    assert!(!scripts.is_empty(), "{what}: no scripts rendered");
    scripts.sort();
    // All severities (style included); the shell comes from each script's #! line.
    let out = std::process::Command::new("shellcheck")
        .args(["--format", "gcc"])
        .args(&scripts)
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck found problems in {what}:\n{}{}",
        scrub(&text(&out.stdout), &[(dir, "[OUT]")]),
        text(&out.stderr)
    );
}

fn render_lab(lab: &str) {
    let base_plan = plan_json(lab, None);
    let snap = |name: String, body: String| insta::assert_snapshot!(format!("render_{name}"), body);
    if base_plan["workers"] == 0 {
        let (dir, files) = render(lab, None);
        shellcheck(dir.path(), lab);
        let title = format!("labctl render --lab labs/{lab}/lab.toml");
        snap(lab.to_string(), describe(&base_plan, &files, None, &title));
        return;
    }
    let (dir1, one) = render(lab, Some(1));
    shellcheck(dir1.path(), &format!("{lab} --workers 1"));
    let title = format!("labctl render --lab labs/{lab}/lab.toml --workers 1");
    snap(
        format!("{lab}-1"),
        describe(&plan_json(lab, Some(1)), &one, None, &title),
    );
    for n in [3, 12] {
        let (dir, files) = render(lab, Some(n));
        shellcheck(dir.path(), &format!("{lab} --workers {n}"));
        let title = format!(
            "labctl render --lab labs/{lab}/lab.toml --workers {n}\n\
             (files that exist with --workers 1 are shown as a diff against it; \
             other nodes as a diff against the first node of their role)"
        );
        snap(
            format!("{lab}-{n}"),
            describe(
                &plan_json(lab, Some(n)),
                &files,
                Some(("--workers 1", &one)),
                &title,
            ),
        );
    }
}

#[test]
fn render_k8s() {
    render_lab("k8s");
}

#[test]
fn render_k8s_classic() {
    render_lab("k8s-classic");
}

#[test]
fn render_k8s_ha() {
    render_lab("k8s-ha");
}

#[test]
fn render_k8s_rocky() {
    render_lab("k8s-rocky");
}

#[test]
fn render_kind() {
    render_lab("kind");
}

#[test]
fn render_smoke() {
    render_lab("smoke");
}

#[test]
fn render_to_stdout_and_one_node() {
    let out = labctl()
        .args(["render", "--workers", "2", "--lab"])
        .arg(lab_toml("k8s-classic"))
        .arg("w2-k8s")
        .assert()
        .success();
    let stdout = text(&out.get_output().stdout);
    let headers: Vec<&str> = stdout.lines().filter(|l| l.starts_with("# ==> ")).collect();
    assert_eq!(
        headers,
        [
            "# ==> w2-k8s/01-config.sh 2",
            "# ==> w2-k8s/02-install_pkg.sh 1.18.4",
            "# ==> w2-k8s/03-work_nodes.sh ",
        ]
    );
    let out = run(labctl()
        .args(["render", "--lab"])
        .arg(lab_toml("k8s-classic"))
        .arg("w9-k8s"));
    assert_eq!(out.status.code(), Some(USAGE), "{out:?}");
    assert!(
        text(&out.stderr).contains("nodes: m-k8s, w1-k8s, w2-k8s, w3-k8s"),
        "{out:?}"
    );
}

#[test]
fn render_steps_txt_lists_commands_with_arguments() {
    let (_dir, files) = render("k8s-classic", Some(3));
    assert_eq!(
        files["m-k8s"]["steps.txt"],
        "01-config.sh 3\n02-install_pkg.sh 1.18.4 Main\n03-master_node.sh\n"
    );
    assert_eq!(
        files["w3-k8s"]["steps.txt"],
        "01-config.sh 3\n02-install_pkg.sh 1.18.4\n03-work_nodes.sh\n"
    );
}
