//! The k8s templates' guard logic inside real guests (QEMU, TCG, no egress), with the
//! stand-in `kubeadm`, `kubectl` and `curl` of tests/data/k8s-standins installed in the
//! guests' /usr/local/bin by a first step, and labctl's own runner deciding what runs:
//!
//! 1. `up`: the master's first `kubeadm init` fails after writing admin.conf (armed);
//! 2. `up` again: master_node runs `kubeadm reset -f`, then init; join_command publishes a
//!    token; w1's first join fails after kubelet.conf (armed) and is reset and retried;
//!    ready runs after the join;
//! 3. the token's record is made 25 hours old; `up --workers 2`: labctl says the value
//!    expired and runs join_command again first (the stand-in records a second token), and
//!    w2 joins with the new value.
//!
//! `#[ignore]`d like every test that boots VMs: run it with
//! `cargo nextest run -p labctl --run-ignored all -E 'test(k8s_guards_in_real_guests)'`.
// Tests run labctl, ssh and kill themselves: they are not the library's exec path.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn cache_dir() -> PathBuf {
    std::env::var_os("LABCTL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/labctl")
        })
}

fn have_box() -> bool {
    let file = cache_dir().join("boxes/labctl-debian-12.box");
    if file.exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: scripts/test.sh builds it with scripts/build-box.sh",
        file.display()
    );
    eprintln!("skipping: no box at {}", file.display());
    false
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo")
}

/// A shell script that installs the stand-ins (embedded as here-documents) in
/// /usr/local/bin and, on its first run only, arms a failure: the master's next init, w1's
/// next join.
fn standins_script() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/k8s-standins");
    let mut s = String::from(
        "#!/bin/bash\n# Test only: stand-in kubeadm, kubectl and curl (labctl tests/data/k8s-standins).\nset -eu\nmkdir -p /var/lib/k8s-standins\n",
    );
    for name in ["kubeadm", "kubectl", "curl"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("stand-in");
        s.push_str(&format!(
            "cat > /usr/local/bin/{name} <<'STANDIN_EOF'\n{text}STANDIN_EOF\nchmod 0755 /usr/local/bin/{name}\n"
        ));
    }
    s.push_str(
        "if [ ! -e /var/lib/k8s-standins/installed ]; then\n  touch /var/lib/k8s-standins/installed\n  case $LABCTL_NODE in\n    m-k8s) touch /var/lib/k8s-standins/fail-init ;;\n    w1-k8s) touch /var/lib/k8s-standins/fail-join ;;\n  esac\nfi\n",
    );
    s
}

fn lab_toml(port: u16) -> String {
    format!(
        r#"[lab]
name = "k8sguard"
provider = "qemu"
box = "labctl/debian-12"
os = "debian"
workers = 1
boot_timeout = 900
golden_snapshot = false
templates = "templates"

[vars]
k8s_version = "1.35.4"
runtime = "containerd"
pod_cidr = "172.16.0.0/16"
service_cidr = "10.96.0.0/12"
api_endpoint = "m-k8s:6443"
kube_proxy_mode = "nftables"
calico_version = "v3.31.3"
calico_registry = "quay.io/calico"
metrics_server = ""

[[network]]
name = "private"
cidr = "192.168.1.0/24"

[role.master]
hostname = "m-k8s"
cpus = 1
memory = 512
ip = "192.168.1.10"
ssh_port = {port}

[[role.master.step]]
script = "standins.sh"

[[role.master.step]]
template = "k8s/master_node.sh.hbs"

[[role.master.step]]
template = "k8s/join_command.sh.hbs"
publish = [{{ name = "join_command", ttl = "23h" }}]

[[role.master.step]]
template = "k8s/ready.sh.hbs"
after = ["worker.work_nodes"]

[role.worker]
hostname = "w{{i}}-k8s"
scale = true
cpus = 1
memory = 512
ip = "192.168.1.101"
ssh_port = {wport}

[[role.worker.step]]
script = "standins.sh"

[[role.worker.step]]
template = "k8s/work_nodes.sh.hbs"
after = ["master.join_command"]
"#,
        wport = port + 91,
    )
}

struct Lab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Lab {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
        c.args(args)
            .current_dir(&self.dir)
            .env("LABCTL_NO_EGRESS", "1")
            .env("LABCTL_HOME", cache_dir().join("e2e-home"))
            .env("LABCTL_NO_PROGRESS", "1")
            .env("NO_COLOR", "1")
            .env_remove("LABCTL_LAB")
            .env_remove("LABCTL_WORKERS");
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("run labctl");
        eprintln!(
            "$ labctl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
    fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "labctl {} failed", args.join(" "));
        out
    }
    /// The stand-ins' call record on a node, and a fresh record from now on (the box logs in
    /// as root).
    fn take_calls(&self, node: &str) -> Vec<String> {
        let out = self.run_ok(&[
            "ssh",
            node,
            "--",
            "sh -c 'cat /var/lib/k8s-standins/calls 2>/dev/null; rm -f /var/lib/k8s-standins/calls'",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
    fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join(".labctl/machines")) {
            for e in rd.flatten() {
                if let Some(p) = std::fs::read_to_string(e.path().join("qemu.pid"))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                {
                    pids.push(p);
                }
            }
        }
        pids
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let pids = self.pids();
        let _ = self
            .cmd(&["destroy", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for pid in pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

/// The bundled templates, copied into the lab (templates outside it need `trusted_dirs`).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read templates") {
        let p = e.expect("entry").path();
        let dest = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).expect("copy template");
        }
    }
}

fn kubeadm(calls: &[String]) -> Vec<&str> {
    calls
        .iter()
        .filter_map(|c| c.strip_prefix("kubeadm "))
        .collect()
}

#[test]
#[ignore = "boots QEMU guests; run by scripts/test.sh"]
fn k8s_guards_in_real_guests() {
    if !have_box() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    std::fs::create_dir_all(&dir).expect("lab dir");
    std::fs::write(dir.join("lab.toml"), lab_toml(61410)).expect("lab.toml");
    std::fs::write(dir.join("standins.sh"), standins_script()).expect("standins.sh");
    copy_dir(&repo().join("templates"), &dir.join("templates"));
    let lab = Lab { _tmp: tmp, dir };

    // 1. The first init fails after writing admin.conf: master_node fails, the rest waits.
    let first = lab.run(&["up"]);
    assert!(!first.status.success());
    let m = lab.take_calls("m-k8s");
    let inits: Vec<&str> = kubeadm(&m)
        .into_iter()
        .filter(|c| c.starts_with("init ") || c.starts_with("reset"))
        .collect();
    assert_eq!(inits.len(), 1, "{m:?}");
    assert!(inits[0].starts_with("init --config /root/labctl/kubeadm-init.yaml"));
    assert!(kubeadm(&lab.take_calls("w1-k8s")).is_empty());

    // 2. Again: reset -f, init, a token, w1 joins (its first attempt reset and retried).
    lab.run_ok(&["up"]);
    let m = lab.take_calls("m-k8s");
    let k = kubeadm(&m);
    let reset = k.iter().position(|c| *c == "reset -f");
    let init = k.iter().position(|c| c.starts_with("init --config "));
    assert!(
        matches!((reset, init), (Some(r), Some(i)) if r < i),
        "{m:?}"
    );
    assert!(k.contains(&"token create --print-join-command"), "{m:?}");
    assert!(
        m.iter().any(|c| c.starts_with(
            "kubectl wait --for=condition=Ready --timeout=20m node/m-k8s node/w1-k8s"
        )),
        "ready did not run: {m:?}"
    );
    let w1 = lab.take_calls("w1-k8s");
    let joins: Vec<&str> = kubeadm(&w1)
        .into_iter()
        .filter(|c| c.starts_with("join ") || c.starts_with("reset"))
        .collect();
    assert_eq!(joins.len(), 3, "{w1:?}");
    assert!(joins[0].contains("--token abcdef.0000000000000001"));
    assert_eq!(joins[1], "reset -f");
    assert!(
        joins[2].contains("--token abcdef.0000000000000001 ")
            && joins[2].ends_with("--node-name w1-k8s")
    );

    // 3. The token is 25 h old: `up --workers 2` refreshes it before w2 joins.
    let state_file = lab.dir.join(".labctl/state.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("state")).expect("json");
    let rec = &mut st["nodes"]["m-k8s"]["steps"]["join_command"]["finished_at"];
    let old = rec.as_u64().expect("finished_at") - 25 * 3600;
    *rec = serde_json::json!(old);
    std::fs::write(
        &state_file,
        serde_json::to_string_pretty(&st).expect("json"),
    )
    .expect("write");
    let out = lab.run_ok(&["up", "--workers", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`join_command` is 1d1h")
            && err.contains(
                "(ttl 23h) and w2-k8s.work_nodes needs it: join_command runs again first"
            ),
        "{err}"
    );
    let m = lab.take_calls("m-k8s");
    assert!(
        kubeadm(&m).contains(&"token create --print-join-command"),
        "{m:?}"
    );
    let w2 = lab.take_calls("w2-k8s");
    let joins: Vec<&str> = kubeadm(&w2)
        .into_iter()
        .filter(|c| c.starts_with("join "))
        .collect();
    assert_eq!(joins.len(), 1, "{w2:?}");
    assert!(
        joins[0].contains("--token abcdef.0000000000000002"),
        "{w2:?}"
    );
    // w1 saw a new value too (its step's content changed), found itself joined, did nothing.
    let w1 = lab.take_calls("w1-k8s");
    assert!(
        !kubeadm(&w1).iter().any(|c| c.starts_with("join ")),
        "{w1:?}"
    );
}
