//! The k8s templates' guard logic, run for real: the scripts that `labctl render` writes for
//! labs/k8s and labs/k8s-ha run under bash on this host, with stand-in `kubeadm`, `kubectl`,
//! `curl` and `sleep` (tests/data/k8s-standins, test programs that record their arguments)
//! first on PATH, and `LABCTL_TEST_ROOT` standing for `/` (the templates prefix every path
//! they touch with it). Nothing here needs a VM, a network or root.
//!
//! What the guards must do:
//! - a `kubeadm init` that fails after writing admin.conf is followed, on the next run, by
//!   `kubeadm reset -f` and a second init; a third run inits nothing;
//! - a join interrupted after kubelet.conf (the API server does not know the node) is reset
//!   and retried; a node that has joined is left alone;
//! - the `join_command` step (which labctl runs again when the value expired; the decision
//!   is tested in labctl-runner's `expiry` tests) publishes a new token, and a worker joins
//!   with it;
//! - an interrupted control-plane join (kubelet.conf but no etcd manifest) is reset and
//!   retried; `labctl-forget-node` removes the etcd member and the Node.
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use tempfile::TempDir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `labctl render --lab labs/LAB --workers N --out DIR`: node → script name → text.
fn render(lab: &str, workers: u32) -> BTreeMap<String, BTreeMap<String, String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(["render", "--workers", &workers.to_string(), "--lab"])
        .arg(repo().join("labs").join(lab).join("lab.toml"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run labctl render");
    assert!(out.status.success(), "{out:?}");
    let mut nodes = BTreeMap::new();
    for node in std::fs::read_dir(dir.path()).expect("render dir") {
        let node = node.expect("entry").path();
        let mut files = BTreeMap::new();
        for f in std::fs::read_dir(&node).expect("node dir") {
            let p = f.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().to_string();
            // "03-work_nodes.sh" → "work_nodes"
            if let Some(step) = name
                .strip_suffix(".sh")
                .and_then(|s| s.split_once('-'))
                .map(|(_, s)| s.to_string())
            {
                files.insert(step, std::fs::read_to_string(&p).expect("script"));
            }
        }
        let name = node
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        nodes.insert(name, files);
    }
    nodes
}

/// A pretend machine: a root directory, plus the stand-ins' state (the pretend cluster) and
/// their call record, shared by every machine made with `machine`.
struct Host {
    dir: Rc<TempDir>,
    root: PathBuf,
}

struct Run {
    ok: bool,
    output: String,
    published: BTreeMap<String, String>,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("root")).expect("root");
        std::fs::create_dir_all(dir.path().join("standin")).expect("standin");
        Host {
            root: dir.path().join("root"),
            dir: Rc::new(dir),
        }
    }
    /// Another machine of the same pretend cluster.
    fn machine(&self, name: &str) -> Host {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(&root).expect("root");
        Host {
            dir: self.dir.clone(),
            root,
        }
    }
    fn root(&self) -> PathBuf {
        self.root.clone()
    }
    fn standin(&self, name: &str) -> PathBuf {
        self.dir.path().join("standin").join(name)
    }
    /// Make the stand-ins' next `kubeadm init` / `join` fail half way (`fail-init`, ...).
    fn arm(&self, what: &str) {
        std::fs::write(self.standin(what), "").expect("arm");
    }
    /// The calls recorded since the last `take_calls`, one per line.
    fn take_calls(&self) -> Vec<String> {
        let path = self.standin("calls");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_string).collect()
    }
    /// `program` on this machine: the stand-ins first on PATH, this machine's root, and the
    /// pretend cluster's state directory.
    fn command(&self, program: &str) -> Command {
        let standins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/k8s-standins");
        let path = format!(
            "{}:{}",
            standins.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(program);
        c.env("PATH", path)
            .env("LABCTL_TEST_ROOT", self.root())
            .env("STANDIN_DIR", self.dir.path().join("standin"));
        c
    }
    /// Run a rendered script under bash, as labctl would (with `$LABCTL_PUBLISH`).
    fn run(&self, script: &str, args: &[&str]) -> Run {
        let file = self.dir.path().join("step.sh");
        std::fs::write(&file, script).expect("write script");
        let publish = self.dir.path().join("publish");
        std::fs::write(&publish, "").expect("publish file");
        let out = self
            .command("bash")
            .arg(&file)
            .args(args)
            .env("LABCTL_PUBLISH", &publish)
            .env_remove("SUDO_USER")
            .env_remove("KUBECONFIG")
            .output()
            .expect("run bash");
        let published = std::fs::read_to_string(&publish)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Run {
            ok: out.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            published,
        }
    }
}

/// The calls of `program` (e.g. "kubeadm"), without the program name.
fn calls_of<'a>(calls: &'a [String], program: &str) -> Vec<&'a str> {
    calls
        .iter()
        .filter_map(|c| c.strip_prefix(program).map(str::trim_start))
        .filter(|c| !c.is_empty())
        .collect()
}

/// A rendered consumer with labctl's value placeholder replaced by `value`, as labctl's
/// own render of the step (with the published value) would have it.
fn with_value(script: &str, name: &str, value: &str) -> String {
    let mut out = String::new();
    let mut found = false;
    for line in script.lines() {
        let body = line.trim_start();
        if body.starts_with(&format!("{name}='<{name} from ")) {
            let indent = &line[..line.len() - body.len()];
            out.push_str(&format!("{indent}{name}='{value}'\n"));
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(found, "no `{name}` placeholder in:\n{script}");
    out
}

#[test]
fn init_that_failed_after_admin_conf_is_reset_and_done_again() {
    let k8s = render("k8s", 1);
    let master = &k8s["m-k8s"]["master_node"];
    let host = Host::new();

    host.arm("fail-init");
    let first = host.run(master, &[]);
    assert!(!first.ok, "{}", first.output);
    assert!(host.root().join("etc/kubernetes/admin.conf").exists());
    let calls = host.take_calls();
    let kubeadm = calls_of(&calls, "kubeadm");
    assert_eq!(kubeadm.iter().filter(|c| c.starts_with("init ")).count(), 1);
    assert!(
        !kubeadm.iter().any(|c| c.starts_with("reset")),
        "{kubeadm:?}"
    );

    // The rerun sees admin.conf but no marker and no cluster-info: reset -f, then init.
    let second = host.run(master, &[]);
    assert!(second.ok, "{}", second.output);
    assert!(
        second
            .output
            .contains("an earlier kubeadm init did not finish"),
        "{}",
        second.output
    );
    let calls = host.take_calls();
    let kubeadm = calls_of(&calls, "kubeadm");
    let reset = kubeadm.iter().position(|c| *c == "reset -f");
    let init = kubeadm.iter().position(|c| c.starts_with("init --config "));
    assert!(
        matches!((reset, init), (Some(r), Some(i)) if r < i),
        "{kubeadm:?}"
    );
    // Then the rest of the step: Calico from the edited manifest, kubectl for root.
    let kubectl = calls_of(&calls, "kubectl");
    assert!(
        kubectl
            .iter()
            .any(|c| c.starts_with("apply -f ") && c.contains("calico-v3.31.3-nftables.yaml")),
        "{kubectl:?}"
    );
    let manifest =
        std::fs::read_to_string(host.root().join("root/labctl/calico-v3.31.3-nftables.yaml"))
            .expect("edited manifest");
    assert!(
        manifest.contains("value: \"cidr=192.168.1.0/24\""),
        "{manifest}"
    );
    assert!(manifest.contains("FELIX_NFTABLESMODE"), "{manifest}");
    assert!(
        manifest.contains("quay.io/calico/node:v3.31.3"),
        "{manifest}"
    );
    assert!(host.root().join("root/.kube/config").exists());
    assert!(host.root().join("etc/profile.d/labctl-kubectl.sh").exists());
    let config =
        std::fs::read_to_string(host.root().join("root/labctl/kubeadm-init.yaml")).expect("cfg");
    assert!(config.contains("  - 127.0.0.1\n"), "{config}");
    assert!(config.contains("mode: nftables\n"), "{config}");

    // Done: a third run inits nothing.
    let third = host.run(master, &[]);
    assert!(third.ok, "{}", third.output);
    let calls = host.take_calls();
    let kubeadm = calls_of(&calls, "kubeadm");
    assert!(
        !kubeadm
            .iter()
            .any(|c| c.starts_with("init ") || c.starts_with("reset")),
        "{kubeadm:?}"
    );
}

#[test]
fn interrupted_worker_join_is_reset_and_retried_and_a_refreshed_value_is_used() {
    let k8s = render("k8s", 2);
    let host = Host::new();
    assert!(host.run(&k8s["m-k8s"]["master_node"], &[]).ok);
    host.take_calls();

    // join_command publishes a fresh token.
    let publish = host.run(&k8s["m-k8s"]["join_command"], &[]);
    assert!(publish.ok, "{}", publish.output);
    let first = publish.published["join_command"].clone();
    assert!(first.contains("--token abcdef.0000000000000001"), "{first}");
    assert_eq!(
        calls_of(&host.take_calls(), "kubeadm"),
        ["token create --print-join-command"]
    );

    // w1: an earlier join was interrupted after kubelet.conf; the API server has no such
    // Node. The guard resets and joins again.
    let w1_host = host.machine("w1");
    let w1 = with_value(&k8s["w1-k8s"]["work_nodes"], "join_command", &first);
    std::fs::create_dir_all(w1_host.root().join("etc/kubernetes")).expect("mkdir");
    std::fs::write(w1_host.root().join("etc/kubernetes/kubelet.conf"), "stale").expect("write");
    let run = w1_host.run(&w1, &[]);
    assert!(run.ok, "{}", run.output);
    let calls = host.take_calls();
    assert!(
        calls_of(&calls, "kubectl")
            .iter()
            .any(|c| c.contains("get node w1-k8s")),
        "{calls:?}"
    );
    assert_eq!(
        calls_of(&calls, "kubeadm"),
        [
            "reset -f".to_string(),
            format!(
                "{} --node-name w1-k8s",
                first.trim_start_matches("kubeadm ")
            )
        ]
    );
    // Joined: the next run leaves it alone.
    let again = w1_host.run(&w1, &[]);
    assert!(again.ok && again.output.contains("has already joined"));
    assert!(calls_of(&host.take_calls(), "kubeadm").is_empty());

    // The token expired: labctl runs join_command again first; the stand-in records it.
    let refresh = host.run(&k8s["m-k8s"]["join_command"], &[]);
    assert!(refresh.ok, "{}", refresh.output);
    assert_eq!(
        calls_of(&host.take_calls(), "kubeadm"),
        ["token create --print-join-command"]
    );
    let second = refresh.published["join_command"].clone();
    assert!(
        second.contains("--token abcdef.0000000000000002"),
        "{second}"
    );

    // w2 (a new worker) joins with the new value; its first attempt fails half way and is
    // reset and retried inside the step.
    let other = host.machine("w2");
    other.arm("fail-join");
    let w2 = with_value(&k8s["w2-k8s"]["work_nodes"], "join_command", &second);
    let run = other.run(&w2, &[]);
    assert!(run.ok, "{}", run.output);
    let join = format!(
        "{} --node-name w2-k8s",
        second.trim_start_matches("kubeadm ")
    );
    assert_eq!(
        calls_of(&other.take_calls(), "kubeadm"),
        [join.as_str(), "reset -f", join.as_str()]
    );
}

#[test]
fn control_plane_join_guards_on_etcd_and_forget_removes_the_member() {
    let ha = render("k8s-ha", 1);
    let host = Host::new();
    // cp1: init with the load balancer's address as a certificate name (the step's argument).
    let init = host.run(&ha["cp1-k8s"]["master_node"], &["192.168.1.10"]);
    assert!(init.ok, "{}", init.output);
    let config =
        std::fs::read_to_string(host.root().join("root/labctl/kubeadm-init.yaml")).expect("cfg");
    assert!(
        config.contains("  - 192.168.1.11\n  - 127.0.0.1\n  - 192.168.1.10\n"),
        "{config}"
    );
    assert!(
        config.contains("controlPlaneEndpoint: \"lb-k8s:6443\""),
        "{config}"
    );
    host.take_calls();
    let publish = host.run(&ha["cp1-k8s"]["join_command"], &["ha"]);
    assert!(publish.ok, "{}", publish.output);
    let cp_join = publish.published["cp_join_command"].clone();
    assert!(
        cp_join.contains("--control-plane --certificate-key "),
        "{cp_join}"
    );
    let calls = host.take_calls();
    let kubeadm = calls_of(&calls, "kubeadm");
    assert!(
        kubeadm
            .iter()
            .any(|c| c.starts_with("init phase upload-certs --upload-certs")),
        "{kubeadm:?}"
    );

    // cp2: kubelet.conf from an interrupted join, no etcd manifest: reset, join again.
    let cp2 = host.machine("cp2");
    let script = with_value(&ha["cp2-k8s"]["cp_join"], "cp_join_command", &cp_join);
    std::fs::create_dir_all(cp2.root().join("etc/kubernetes")).expect("mkdir");
    std::fs::write(cp2.root().join("etc/kubernetes/kubelet.conf"), "stale").expect("write");
    let run = cp2.run(&script, &[]);
    assert!(run.ok, "{}", run.output);
    let calls = cp2.take_calls();
    let kubeadm = calls_of(&calls, "kubeadm");
    assert_eq!(kubeadm[0], "reset -f", "{kubeadm:?}");
    assert!(
        kubeadm[1].contains("--apiserver-advertise-address 192.168.1.12 --node-name cp2-k8s"),
        "{kubeadm:?}"
    );
    assert!(
        calls_of(&calls, "kubectl")
            .iter()
            .any(|c| c.starts_with("wait --for=condition=Ready node/cp2-k8s")),
        "{calls:?}"
    );
    // Joined (etcd manifest, control-plane Node): left alone.
    let again = cp2.run(&script, &[]);
    assert!(again.ok, "{}", again.output);
    assert!(calls_of(&cp2.take_calls(), "kubeadm").is_empty());

    // `labctl reset --rebuild cp2-k8s` runs the role's forget hook on cp1 (or cp3):
    // labctl-forget-node, installed by master_node / cp_join.
    let forget = cp2.root().join("usr/local/sbin/labctl-forget-node");
    let out = cp2
        .command("sh")
        .arg(&forget)
        .arg("cp2-k8s-not-me")
        .output()
        .expect("run labctl-forget-node");
    assert!(out.status.success(), "{out:?}");
    // The stand-in's member list has cp1..cp3; a name it does not list removes no member.
    let calls = cp2.take_calls();
    let kubectl = calls_of(&calls, "kubectl");
    assert!(
        kubectl.iter().any(|c| c.ends_with("member list")),
        "{kubectl:?}"
    );
    assert!(!kubectl.iter().any(|c| c.contains("member remove")));
    assert!(kubectl.contains(&"delete node cp2-k8s-not-me --ignore-not-found"));

    let out = cp2
        .command("sh")
        .arg(&forget)
        .arg("cp2-k8s")
        .output()
        .expect("run labctl-forget-node");
    assert!(out.status.success(), "{out:?}");
    let calls = cp2.take_calls();
    let kubectl = calls_of(&calls, "kubectl");
    assert!(
        kubectl
            .iter()
            .any(|c| c.ends_with("member remove 2f2b3c4d5e6f7a8b")),
        "{kubectl:?}"
    );
    assert!(kubectl.contains(&"delete node cp2-k8s --ignore-not-found"));
}

#[test]
fn ready_waits_for_every_kubernetes_node_by_name() {
    let ha = render("k8s-ha", 2);
    let host = Host::new();
    std::fs::create_dir_all(host.root().join("etc/kubernetes")).expect("mkdir");
    std::fs::write(host.root().join("etc/kubernetes/admin.conf"), "stand-in").expect("write");
    let run = host.run(&ha["cp1-k8s"]["ready"], &[]);
    assert!(run.ok, "{}", run.output);
    let calls = host.take_calls();
    let kubectl = calls_of(&calls, "kubectl");
    assert_eq!(
        kubectl[0],
        "wait --for=condition=Ready --timeout=20m node/cp1-k8s node/cp2-k8s node/cp3-k8s node/w1-k8s node/w2-k8s"
    );
    assert!(kubectl.contains(&"-n kube-system rollout status daemonset/calico-node --timeout=20m"));
    assert!(kubectl.contains(&"-n kube-system rollout status deployment/coredns --timeout=20m"));
}

/// `labctl plan` (text) of a bundled lab.
fn plan(lab: &str, workers: u32) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(["plan", "--workers", &workers.to_string(), "--lab"])
        .arg(repo().join("labs").join(lab).join("lab.toml"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run labctl plan");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn plan_shows_ready_after_every_join_and_where_forget_runs() {
    let k8s = plan("k8s", 3);
    let ready = k8s
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("ready"))
        .unwrap_or_else(|| panic!("no ready step:\n{k8s}"));
    assert!(
        ready.ends_with("w1-k8s.work_nodes, w2-k8s.work_nodes, w3-k8s.work_nodes"),
        "{ready}"
    );
    let join = k8s
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("join_command"))
        .expect("join_command step");
    assert!(join.contains("publishes join_command(ttl 23h)"), "{join}");

    let ha = plan("k8s-ha", 2);
    let forget = ha
        .lines()
        .find(|l| l.starts_with("cp2 ") && l.contains("forget"))
        .unwrap_or_else(|| panic!("no forget hook for cp2:\n{ha}"));
    assert!(
        forget.contains("first up of cp1-k8s, cp3-k8s (not the node itself)")
            && forget.ends_with("labctl-forget-node {{node.name}}"),
        "{forget}"
    );
    let cp3 = ha
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("cp_join") && l.contains("cp2-k8s.cp_join"))
        .unwrap_or_else(|| panic!("cp3 does not wait for cp2:\n{ha}"));
    assert!(cp3.contains("cp1-k8s.join_command"), "{cp3}");
}
