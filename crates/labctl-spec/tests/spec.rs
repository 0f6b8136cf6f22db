//! Good input: addresses, defaults, the step graph and rendering of valid labs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use labctl_spec::{
    Accel, DEFAULT_BOX, Graph, Lab, NetworkKind, Overrides, Provider, RenderFailure, Renderer,
    RunPolicy, SpecError, StepSource,
};
use tempfile::TempDir;

/// A lab directory with `lab.toml` and `templates/`.
fn lab_dir(toml: &str, templates: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("lab.toml"), toml).expect("write lab.toml");
    for (name, text) in templates {
        let p = dir.path().join("templates").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write template");
    }
    if templates.is_empty() {
        std::fs::create_dir_all(dir.path().join("templates")).expect("mkdir");
    }
    dir
}

fn load(dir: &TempDir, ov: Overrides) -> Lab {
    labctl_spec::load(&dir.path().join("lab.toml"), ov).unwrap_or_else(|e| {
        let diags: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
        panic!("{e}:\n{}", diags.join("\n"))
    })
}

fn load_err(dir: &TempDir, ov: Overrides) -> Vec<labctl_spec::Diagnostic> {
    match labctl_spec::load(&dir.path().join("lab.toml"), ov) {
        Ok(_) => panic!("expected the lab to be refused"),
        Err(SpecError::Invalid { diagnostics, .. }) => diagnostics,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn workers(n: u32) -> Overrides {
    Overrides {
        workers: Some(n),
        no_egress: false,
        ..Default::default()
    }
}

const OK: &str = "#!/bin/bash\nset -eu\necho {{sh node.name}}\n";

/// The seed topology: one master, workers scaled from 192.168.1.101 / port 60101.
const CLASSIC: &str = r#"[lab]
name = "classic"
workers = 3

[[network]]
cidr = "192.168.1.0/24"

[role.master]
hostname = "m-k8s"
cpus = 2
memory = 3072
ip = "192.168.1.10"
ssh_port = 60010
[[role.master.step]]
template = "ok.sh.hbs"

[role.worker]
hostname = "w{i}-k8s"
scale = true
cpus = 1
memory = 2560
ip = "192.168.1.101"
ssh_port = 60101
[[role.worker.step]]
template = "ok.sh.hbs"
"#;

fn classic() -> TempDir {
    lab_dir(CLASSIC, &[("ok.sh.hbs", OK)])
}

fn addr(lab: &Lab, node: &str) -> (Ipv4Addr, u16) {
    let n = lab.node(node).unwrap_or_else(|| panic!("no node {node}"));
    (n.ip().expect("an address"), n.ssh_port)
}

#[test]
fn classic_lab_at_three_workers() {
    let lab = load(&classic(), Overrides::default());
    let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["m-k8s", "w1-k8s", "w2-k8s", "w3-k8s"]);
    assert_eq!(lab.workers, 3);
    assert_eq!(addr(&lab, "m-k8s"), (Ipv4Addr::new(192, 168, 1, 10), 60010));
    for i in 1..=3u8 {
        assert_eq!(
            addr(&lab, &format!("w{i}-k8s")),
            (Ipv4Addr::new(192, 168, 1, 100 + i), 60100 + u16::from(i))
        );
    }
    let m = lab.node("m-k8s").expect("master");
    assert_eq!((m.cpus, m.memory_mb), (2, 3072));
    let w = lab.node("w2-k8s").expect("worker");
    assert_eq!(
        (w.cpus, w.memory_mb, w.index, w.role.as_str()),
        (1, 2560, 2, "worker")
    );
    assert_eq!(w.nics[0].prefix, 24);
    assert_eq!(w.nics[0].network, "private");
}

#[test]
fn addresses_are_computed_not_concatenated() {
    let lab = load(&classic(), workers(10));
    assert_eq!(lab.nodes.len(), 11);
    // "192.168.1.10" + "10" would be 192.168.1.1010; the tenth worker is .110.
    assert_eq!(
        addr(&lab, "w10-k8s"),
        (Ipv4Addr::new(192, 168, 1, 110), 60110)
    );
    assert_eq!(
        addr(&lab, "w9-k8s"),
        (Ipv4Addr::new(192, 168, 1, 109), 60109)
    );
}

#[test]
fn ninety_nine_workers_get_unique_addresses_inside_the_network() {
    let lab = load(&classic(), workers(99));
    assert_eq!(lab.nodes.len(), 100);
    assert_eq!(
        addr(&lab, "w99-k8s"),
        (Ipv4Addr::new(192, 168, 1, 199), 60199)
    );
    let net = &lab.networks[0];
    let ips: BTreeSet<Ipv4Addr> = lab.nodes.iter().filter_map(|n| n.ip()).collect();
    let ports: BTreeSet<u16> = lab.nodes.iter().map(|n| n.ssh_port).collect();
    let names: BTreeSet<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(ips.len(), 100);
    assert_eq!(ports.len(), 100);
    assert_eq!(names.len(), 100);
    for ip in &ips {
        assert!(net.contains(*ip), "{ip} outside {}", net.cidr());
        assert_ne!(*ip, net.address);
        assert_ne!(*ip, net.broadcast());
        assert_ne!(*ip, net.host_ip);
    }
    let ordinals: Vec<usize> = lab.nodes.iter().map(|n| n.ordinal).collect();
    assert_eq!(ordinals, (0..100).collect::<Vec<_>>());
}

#[test]
fn addresses_carry_across_octets() {
    let toml = CLASSIC
        .replace("192.168.1.0/24", "10.10.0.0/16")
        .replace("192.168.1.10\"", "10.10.0.10\"")
        .replace("192.168.1.101", "10.10.0.250");
    let lab = load(&lab_dir(&toml, &[("ok.sh.hbs", OK)]), workers(10));
    assert_eq!(addr(&lab, "w6-k8s").0, Ipv4Addr::new(10, 10, 0, 255));
    assert_eq!(addr(&lab, "w7-k8s").0, Ipv4Addr::new(10, 10, 1, 0));
    assert_eq!(addr(&lab, "w10-k8s").0, Ipv4Addr::new(10, 10, 1, 3));
}

#[test]
fn workers_override_beats_the_file() {
    let dir = classic();
    assert_eq!(load(&dir, Overrides::default()).workers, 3);
    let lab = load(&dir, workers(1));
    assert_eq!(lab.workers, 1);
    let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["m-k8s", "w1-k8s"]);
    assert_eq!(load(&dir, workers(5)).nodes.len(), 6);
}

#[test]
fn bad_workers_override_is_refused_without_a_line() {
    let dir = classic();
    for n in [0, 201, u32::MAX] {
        let diags = load_err(&dir, workers(n));
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].field, "--workers");
        assert!(diags[0].message.contains(&n.to_string()), "{}", diags[0]);
        assert_eq!((diags[0].line, diags[0].column), (0, 0), "not in the file");
        let hint = diags[0].hint.as_deref().unwrap_or_default();
        let want = if n == 0 {
            "without workers"
        } else {
            "more labs"
        };
        assert!(hint.contains(want), "{}", diags[0]);
    }
}

#[test]
fn workers_override_on_a_lab_that_does_not_scale() {
    let toml = "[lab]\nname = \"one\"\n\n[role.box]\n";
    let diags = load_err(&lab_dir(toml, &[]), workers(2));
    assert!(
        diags
            .iter()
            .any(|d| d.field == "--workers" && d.message.contains("no role that scales")),
        "{diags:?}"
    );
}

#[test]
fn no_egress_forces_egress_off() {
    let dir = classic();
    assert!(load(&dir, Overrides::default()).egress);
    let ov = Overrides {
        workers: None,
        no_egress: true,
        ..Default::default()
    };
    assert!(!load(&dir, ov).egress);
    let explicit = CLASSIC.replace("workers = 3\n", "workers = 3\negress = true\n");
    assert!(!load(&lab_dir(&explicit, &[("ok.sh.hbs", OK)]), ov).egress);
    let off = CLASSIC.replace("workers = 3\n", "workers = 3\negress = false\n");
    assert!(!load(&lab_dir(&off, &[("ok.sh.hbs", OK)]), Overrides::default()).egress);
}

#[test]
fn defaults() {
    let toml = r#"[lab]
name = "defaults"

[[network]]
cidr = "172.16.5.0/24"

[role.master]
ip = "172.16.5.10"
[[role.master.step]]
template = "k8s/install.sh.hbs"

[role.worker]
scale = true
ip = "172.16.5.20"
[[role.worker.step]]
template = "k8s/install.sh.hbs"
"#;
    let dir = lab_dir(toml, &[("k8s/install.sh.hbs", OK)]);
    let lab = load(&dir, Overrides::default());
    assert_eq!(lab.provider, Provider::Qemu);
    assert_eq!(lab.accel, Accel::Auto);
    assert_eq!(lab.box_name, DEFAULT_BOX);
    assert_eq!(lab.box_name, "labctl/debian-12");
    assert_eq!(lab.os, labctl_spec::Os::Debian);
    assert!(lab.egress);
    assert!(lab.linked_clone);
    assert!(lab.golden_snapshot);
    assert_eq!(lab.group, None);
    assert_eq!(lab.boot_timeout, Duration::from_secs(600));
    assert_eq!(lab.workers, 1);
    assert_eq!(lab.templates_dir, dir.path().join("templates"));
    assert_eq!(lab.file, dir.path().join("lab.toml"));
    assert_eq!(lab.dir, dir.path());

    let net = &lab.networks[0];
    assert_eq!(net.name, "private");
    assert_eq!(net.kind, NetworkKind::Hostonly);
    assert_eq!(net.host_ip, Ipv4Addr::new(172, 16, 5, 1));
    assert_eq!(net.netmask(), Ipv4Addr::new(255, 255, 255, 0));
    assert!(net.reserved.is_empty());

    let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["master", "worker1"]);
    for n in &lab.nodes {
        assert_eq!((n.cpus, n.memory_mb), (1, 1024), "{}", n.name);
        assert!(!n.nested_virt);
        assert!(n.forwards.is_empty());
    }
    // Without ssh_port, nodes get 2222 + their position in the lab.
    assert_eq!(lab.nodes[0].ssh_port, 2222);
    assert_eq!(lab.nodes[1].ssh_port, 2223);

    let master = lab.role("master").expect("master");
    assert_eq!((master.count, master.start, master.scale), (1, 1, false));
    assert_eq!(master.hostname, "master");
    let worker = lab.role("worker").expect("worker");
    assert_eq!(worker.hostname, "worker{i}");
    assert!(worker.scale);

    let step = &master.steps[0];
    assert_eq!(step.name, "install");
    assert_eq!(
        step.source,
        StepSource::Template("k8s/install.sh.hbs".into())
    );
    assert_eq!(step.run, RunPolicy::Once);
    assert_eq!(step.timeout, Duration::from_secs(1800));
    assert!(!step.needs_egress);
    assert!(step.args.is_empty() && step.after.is_empty() && step.publish.is_empty());
}

#[test]
fn lab_without_a_scaled_role_has_no_workers() {
    let toml = "[lab]\nname = \"one\"\nworkers = 4\n\n[role.box]\ncount = 2\n";
    let lab = load(&lab_dir(toml, &[]), Overrides::default());
    assert_eq!(lab.workers, 0);
    let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["box1", "box2"]);
    assert!(lab.networks.is_empty());
    assert!(lab.nodes.iter().all(|n| n.nics.is_empty()));
}

#[test]
fn explicit_settings_are_kept() {
    let toml = r#"[lab]
name = "explicit"
provider = "virtualbox"
box = "labctl/rocky-9"
group = "class-a"
accel = "tcg"
os = "rocky"
linked_clone = false
golden_snapshot = false
boot_timeout = 900

[vars]
k8s_version = "1.33"
port = 8080
debug = true

[[network]]
name = "lan"
cidr = "192.168.56.0/24"
kind = "internal"
host_ip = "192.168.56.254"
reserved = ["192.168.56.200-192.168.56.210", "192.168.56.224/28", "192.168.56.99"]

[role.cp]
hostname = "cp{i}"
count = 2
start = 0
cpus = 4
memory = 4096
ip = "192.168.56.10"
ssh_port = 3000
nested_virt = true
[[role.cp.forward]]
guest = 6443
host = 16443
[[role.cp.forward]]
guest = 8080
[[role.cp.step]]
name = "setup"
script = "setup.sh"
args = ["{{lab.workers}}", 7, false]
run = "always"
needs_egress = true
timeout = 60
"#;
    let dir = lab_dir(toml, &[]);
    std::fs::write(dir.path().join("setup.sh"), "#!/bin/sh\necho hi\n").expect("write");
    let lab = load(&dir, Overrides::default());
    assert_eq!(lab.provider, Provider::Virtualbox);
    assert_eq!(lab.box_name, "labctl/rocky-9");
    assert_eq!(lab.group.as_deref(), Some("class-a"));
    assert_eq!(lab.accel, Accel::Tcg);
    assert_eq!(lab.os, labctl_spec::Os::Rocky);
    assert!(!lab.linked_clone && !lab.golden_snapshot);
    assert_eq!(lab.boot_timeout, Duration::from_secs(900));
    assert_eq!(lab.vars["port"], "8080");
    assert_eq!(lab.vars["debug"], "true");
    let net = &lab.networks[0];
    assert_eq!(
        (net.name.as_str(), net.kind),
        ("lan", NetworkKind::Internal)
    );
    assert_eq!(net.host_ip, Ipv4Addr::new(192, 168, 56, 254));
    assert_eq!(
        net.reserved,
        [
            (
                Ipv4Addr::new(192, 168, 56, 200),
                Ipv4Addr::new(192, 168, 56, 210)
            ),
            (
                Ipv4Addr::new(192, 168, 56, 224),
                Ipv4Addr::new(192, 168, 56, 239)
            ),
            (
                Ipv4Addr::new(192, 168, 56, 99),
                Ipv4Addr::new(192, 168, 56, 99)
            ),
        ]
    );
    let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["cp0", "cp1"]);
    let cp1 = lab.node("cp1").expect("cp1");
    assert_eq!((cp1.cpus, cp1.memory_mb, cp1.ssh_port), (4, 4096, 3001));
    assert_eq!(cp1.ip(), Some(Ipv4Addr::new(192, 168, 56, 11)));
    assert!(cp1.nested_virt);
    let fwd: Vec<(u16, u16)> = cp1.forwards.iter().map(|f| (f.guest, f.host)).collect();
    assert_eq!(fwd, [(6443, 16444), (8080, 8081)]);
    let step = &lab.role("cp").expect("cp").steps[0];
    assert_eq!(step.source, StepSource::Script("setup.sh".into()));
    assert_eq!(step.args, ["{{lab.workers}}", "7", "false"]);
    assert_eq!(step.run, RunPolicy::Always);
    assert!(step.needs_egress);
    assert_eq!(step.timeout, Duration::from_secs(60));
}

#[test]
fn second_network_addresses_come_from_ips() {
    let toml = r#"[lab]
name = "two-nets"
workers = 2

[[network]]
cidr = "192.168.1.0/24"

[[network]]
name = "storage"
cidr = "10.9.0.0/24"
kind = "internal"

[role.master]
ip = "192.168.1.10"
ips = { storage = "10.9.0.10" }

[role.worker]
scale = true
ip = "192.168.1.101"
ips = { storage = "10.9.0.101" }
"#;
    let lab = load(&lab_dir(toml, &[]), Overrides::default());
    let w2 = lab.node("worker2").expect("worker2");
    let nics: Vec<(&str, Ipv4Addr)> = w2.nics.iter().map(|n| (n.network.as_str(), n.ip)).collect();
    assert_eq!(
        nics,
        [
            ("private", Ipv4Addr::new(192, 168, 1, 102)),
            ("storage", Ipv4Addr::new(10, 9, 0, 102))
        ]
    );
    assert_eq!(w2.ip(), Some(Ipv4Addr::new(192, 168, 1, 102)));
}

/// master: prepare → init (publishes token); worker: prepare → join (after master.init).
const GRAPH_LAB: &str = r#"[lab]
name = "graph"
workers = 2

[vars]
greeting = "it's a <b>test</b> & more"

[[network]]
cidr = "192.168.1.0/24"

[role.master]
hostname = "m-k8s"
ip = "192.168.1.10"
ssh_port = 60010
[[role.master.step]]
template = "prepare.sh.hbs"
args = ["{{lab.workers}}", "two words"]
[[role.master.step]]
template = "init.sh.hbs"
publish = ["token"]
[[role.master.step]]
name = "debug"
template = "prepare.sh.hbs"
run = "never"

[role.worker]
hostname = "w{i}-k8s"
scale = true
ip = "192.168.1.101"
ssh_port = 60101
[[role.worker.step]]
template = "prepare.sh.hbs"
[[role.worker.step]]
template = "join.sh.hbs"
after = ["master.init"]
"#;

const PREPARE: &str = "#!/bin/bash\nset -eu\n# {{step.name}} on {{node.name}} ({{node.ip}}/{{node.prefix}})\necho {{sh vars.greeting}}\necho raw: {{vars.greeting}}\necho args: {{#each args}}{{sh this}} {{/each}}\n{{#each roles.worker}}\necho {{sh ip}} {{name}}\n{{/each}}\n";
const INIT: &str = "#!/bin/bash\nset -eu\necho \"token=abc\"\n";
const JOIN: &str = "#!/bin/bash\nset -eu\nkubeadm join {{sh values.token}}\n";

fn graph_lab() -> TempDir {
    lab_dir(
        GRAPH_LAB,
        &[
            ("prepare.sh.hbs", PREPARE),
            ("init.sh.hbs", INIT),
            ("join.sh.hbs", JOIN),
        ],
    )
}

fn task(g: &Graph, lab: &Lab, node: &str, step: &str) -> usize {
    g.find(lab, node, step)
        .unwrap_or_else(|| panic!("no task {node}.{step}"))
}

#[test]
fn step_graph_orders_and_links_steps() {
    let lab = load(&graph_lab(), Overrides::default());
    let g = Graph::build(&lab);
    let labels: Vec<String> = (0..g.tasks.len()).map(|t| g.label(&lab, t)).collect();
    assert_eq!(
        labels,
        [
            "m-k8s.prepare",
            "m-k8s.init",
            "m-k8s.debug",
            "w1-k8s.prepare",
            "w1-k8s.join",
            "w2-k8s.prepare",
            "w2-k8s.join",
        ]
    );
    let t = |node, step| task(&g, &lab, node, step);
    // Steps of a node run in order; `after` adds the cross-node edge.
    assert_eq!(g.deps[t("m-k8s", "prepare")], Vec::<usize>::new());
    assert_eq!(g.deps[t("m-k8s", "init")], [t("m-k8s", "prepare")]);
    assert_eq!(g.deps[t("w1-k8s", "prepare")], Vec::<usize>::new());
    assert_eq!(
        g.deps[t("w1-k8s", "join")],
        [t("m-k8s", "init"), t("w1-k8s", "prepare")]
    );
    assert_eq!(
        g.deps[t("w2-k8s", "join")],
        [t("m-k8s", "init"), t("w2-k8s", "prepare")]
    );
    assert_eq!(g.find(&lab, "w3-k8s", "join"), None);
    assert_eq!(g.find(&lab, "m-k8s", "join"), None);

    let order = g.topo_order().expect("no cycle");
    assert_eq!(order.len(), g.tasks.len());
    let pos = |task: usize| order.iter().position(|&o| o == task).expect("in order");
    for (task, deps) in g.deps.iter().enumerate() {
        for &d in deps {
            assert!(
                pos(d) < pos(task),
                "{} before {}",
                g.label(&lab, d),
                g.label(&lab, task)
            );
        }
    }
    assert!(pos(t("m-k8s", "init")) < pos(t("w1-k8s", "join")));
    assert!(pos(t("m-k8s", "init")) < pos(t("w2-k8s", "join")));

    assert_eq!(
        g.dependents(t("m-k8s", "init")),
        BTreeSet::from([
            t("m-k8s", "debug"),
            t("w1-k8s", "join"),
            t("w2-k8s", "join")
        ])
    );
    assert_eq!(
        g.dependents(t("m-k8s", "prepare")),
        BTreeSet::from([
            t("m-k8s", "init"),
            t("m-k8s", "debug"),
            t("w1-k8s", "join"),
            t("w2-k8s", "join")
        ])
    );
    assert!(g.dependents(t("w1-k8s", "join")).is_empty());
    assert_eq!(
        g.ancestors(t("w2-k8s", "join")),
        BTreeSet::from([
            t("m-k8s", "prepare"),
            t("m-k8s", "init"),
            t("w2-k8s", "prepare")
        ])
    );
    assert!(g.ancestors(t("w1-k8s", "prepare")).is_empty());

    assert!(g.runs_on_up(&lab, t("m-k8s", "init")));
    assert!(!g.runs_on_up(&lab, t("m-k8s", "debug")));
}

fn render(
    lab: &Lab,
    node: &str,
    step: &str,
    values: &BTreeMap<String, String>,
) -> Result<labctl_spec::RenderedStep, RenderFailure> {
    let renderer = Renderer::new(lab).expect("templates load");
    let node = lab.node(node).expect("node");
    let step = lab
        .steps_of(node)
        .iter()
        .find(|s| s.name == step)
        .expect("step");
    renderer.render_step(lab, node, step, values)
}

#[test]
fn rendering_quotes_with_sh_and_does_not_escape_html() {
    let dir = graph_lab();
    let lab = load(&dir, Overrides::default());
    let r = render(&lab, "m-k8s", "prepare", &BTreeMap::new()).expect("render");
    assert_eq!(r.args, ["2", "two words"]);
    assert_eq!(
        r.script,
        "#!/bin/bash\nset -eu\n# prepare on m-k8s (192.168.1.10/24)\n\
         echo 'it'\\''s a <b>test</b> & more'\n\
         echo raw: it's a <b>test</b> & more\n\
         echo args: 2 'two words' \n\
         echo 192.168.1.101 w1-k8s\n\
         echo 192.168.1.102 w2-k8s\n"
    );
    assert_eq!(r.hash.len(), 64);
    assert!(r.hash.chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn rendering_is_strict() {
    let dir = graph_lab();
    let mut lab = load(&dir, Overrides::default());
    lab.vars.remove("greeting");
    let err = render(&lab, "m-k8s", "prepare", &BTreeMap::new()).expect_err("strict mode");
    match err {
        RenderFailure::Template {
            path,
            line,
            message,
            ..
        } => {
            assert!(
                path.ends_with("templates/prepare.sh.hbs"),
                "{}",
                path.display()
            );
            assert_eq!(line, 4);
            assert!(message.contains("vars.greeting"), "{message}");
        }
        other => panic!("unexpected: {other}"),
    }
}

#[test]
fn published_values_reach_only_dependents() {
    let dir = graph_lab();
    let lab = load(&dir, Overrides::default());
    let values = BTreeMap::from([("token".to_string(), "abc def".to_string())]);
    let r = render(&lab, "w1-k8s", "join", &values).expect("render");
    assert!(
        r.script.contains("kubeadm join 'abc def'\n"),
        "{}",
        r.script
    );
    // Without the value the step cannot render: a runner must never start it early.
    assert!(render(&lab, "w1-k8s", "join", &BTreeMap::new()).is_err());

    // Without `after`, validation sees that the join step could run before the token exists.
    let no_after = GRAPH_LAB.replace("after = [\"master.init\"]\n", "");
    let dir = lab_dir(
        &no_after,
        &[
            ("prepare.sh.hbs", PREPARE),
            ("init.sh.hbs", INIT),
            ("join.sh.hbs", JOIN),
        ],
    );
    let diags = load_err(&dir, Overrides::default());
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d.field, "role.worker.step[1]");
    assert!(d.file.ends_with("templates/join.sh.hbs"));
    assert_eq!((d.line, d.column), (3, 14));
    assert!(d.message.contains("values.token"), "{d}");
    assert!(
        d.hint.as_deref().is_some_and(|h| h.contains("after")),
        "{d}"
    );
}

#[test]
fn hash_follows_script_and_arguments() {
    let dir = graph_lab();
    let lab = load(&dir, Overrides::default());
    let none = BTreeMap::new();
    let a = render(&lab, "m-k8s", "prepare", &none).expect("render");
    let b = render(&lab, "m-k8s", "prepare", &none).expect("render");
    assert_eq!(a.hash, b.hash, "rendering is deterministic");

    // `{{lab.workers}}` is an argument: another worker count changes it, and the hash.
    let three = load(&dir, workers(3));
    let c = render(&three, "m-k8s", "prepare", &none).expect("render");
    assert_eq!(c.args[0], "3");
    assert_ne!(a.hash, c.hash);

    // Same script, other arguments.
    let mut other_args = lab.clone();
    other_args.roles[0].steps[0].args = vec!["2".into(), "two".into(), "words".into()];
    let d = render(&other_args, "m-k8s", "prepare", &none).expect("render");
    assert_ne!(a.hash, d.hash);

    // Same arguments, other published value.
    let v1 = BTreeMap::from([("token".to_string(), "one".to_string())]);
    let v2 = BTreeMap::from([("token".to_string(), "two".to_string())]);
    let j1 = render(&lab, "w1-k8s", "join", &v1).expect("render");
    let j2 = render(&lab, "w1-k8s", "join", &v2).expect("render");
    assert_ne!(j1.hash, j2.hash);
    // Each node renders its own script.
    let w2 = render(&lab, "w2-k8s", "prepare", &none).expect("render");
    let w1 = render(&lab, "w1-k8s", "prepare", &none).expect("render");
    assert_ne!(w1.hash, w2.hash);
}

#[test]
fn render_args_for_plan() {
    let dir = graph_lab();
    let lab = load(&dir, workers(7));
    let renderer = Renderer::new(&lab).expect("templates load");
    let m = lab.node("m-k8s").expect("master");
    let step = &lab.steps_of(m)[0];
    assert_eq!(
        renderer.render_args(&lab, m, step).expect("args"),
        ["7", "two words"]
    );
}

#[test]
fn scripts_are_uploaded_as_is() {
    let toml = "[lab]\nname = \"script\"\n\n[role.box]\n[[role.box.step]]\nscript = \"files/run.sh\"\nargs = [\"{{node.name}}\"]\n";
    let dir = lab_dir(toml, &[]);
    std::fs::create_dir_all(dir.path().join("files")).expect("mkdir");
    let text = "#!/bin/sh\necho {{not a template}}\n";
    std::fs::write(dir.path().join("files/run.sh"), text).expect("write");
    let lab = load(&dir, Overrides::default());
    let r = render(&lab, "box", "run", &BTreeMap::new()).expect("render");
    assert_eq!(r.script, text);
    assert_eq!(r.args, ["box"]);
}

#[test]
fn partials_are_available() {
    let toml =
        "[lab]\nname = \"partials\"\n\n[role.box]\n[[role.box.step]]\ntemplate = \"main.sh.hbs\"\n";
    let dir = lab_dir(
        toml,
        &[
            ("main.sh.hbs", "#!/bin/sh\n{{> common}}\necho main\n"),
            ("_partials/common.hbs", "set -eu\necho {{node.name}}\n"),
        ],
    );
    let lab = load(&dir, Overrides::default());
    let r = render(&lab, "box", "main", &BTreeMap::new()).expect("render");
    assert_eq!(r.script, "#!/bin/sh\nset -eu\necho box\necho main\n");
}

#[test]
fn load_reports_unreadable_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = labctl_spec::load(&dir.path().join("missing.toml"), Overrides::default())
        .expect_err("missing file");
    assert!(matches!(err, SpecError::Read { .. }), "{err}");
    assert!(err.diagnostics().is_empty());
}

#[test]
fn diagnostics_are_sorted_by_line_and_listed_in_the_error() {
    let text = "[lab]\nname = \"Bad Name\"\nprovider = \"vmware\"\naccel = \"kvmm\"\n";
    let err = labctl_spec::load_str(
        text,
        Path::new("/x/lab.toml"),
        Path::new("lab.toml"),
        Overrides::default(),
    )
    .expect_err("invalid");
    let lines: Vec<usize> = err.diagnostics().iter().map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted);
    assert!(err.to_string().starts_with("lab.toml has "), "{err}");
    let fields: Vec<&str> = err.diagnostics().iter().map(|d| d.field.as_str()).collect();
    assert!(fields.contains(&"lab.name"));
    assert!(fields.contains(&"lab.provider"));
    assert!(fields.contains(&"lab.accel"));
    assert!(
        fields.contains(&"role"),
        "a lab without roles is refused: {fields:?}"
    );
}

#[test]
fn publish_takes_names_and_tables_with_a_ttl() {
    let toml = CLASSIC.replace(
        "[[role.master.step]]\ntemplate = \"ok.sh.hbs\"\n",
        "[[role.master.step]]\ntemplate = \"ok.sh.hbs\"\n\
         publish = [\"plain\", { name = \"join_command\", ttl = \"23h\" }, { name = \"key\", ttl = \"1h50m\" }]\n\
         [[role.master.step]]\nname = \"other\"\ntemplate = \"ok.sh.hbs\"\npublish = \"single\"\n",
    );
    let dir = lab_dir(&toml, &[("ok.sh.hbs", OK)]);
    let lab = load(&dir, Overrides::default());
    let steps = &lab.role("master").expect("master").steps;
    assert_eq!(steps[0].publish, ["plain", "join_command", "key"]);
    assert_eq!(
        steps[0].ttl,
        BTreeMap::from([
            ("join_command".to_string(), Duration::from_secs(23 * 3600)),
            ("key".to_string(), Duration::from_secs(6600)),
        ])
    );
    assert_eq!(steps[1].publish, ["single"]);
    assert!(steps[1].ttl.is_empty());
}

#[test]
fn hooks_may_run_on_several_roles() {
    let toml = CLASSIC.replace(
        "scale = true\n",
        "scale = true\nforget = \"true\"\nforget_on = [\"master\", \"worker\"]\ncheck = \"true\"\n",
    );
    let dir = lab_dir(&toml, &[("ok.sh.hbs", OK)]);
    let lab = load(&dir, Overrides::default());
    let worker = lab.role("worker").expect("worker");
    assert_eq!(
        worker.forget.as_ref().expect("forget").on,
        ["master", "worker"]
    );
    assert!(worker.check.as_ref().expect("check").on.is_empty());
}

/// The user's config file gives defaults: they apply where lab.toml is silent, and lab.toml
/// wins where it speaks; `LABCTL_NO_EGRESS` wins over both.
#[test]
fn user_defaults_fill_only_what_lab_toml_leaves_out() {
    let defaults = labctl_spec::LabDefaults {
        provider: Some(labctl_spec::Provider::Virtualbox),
        accel: Some(labctl_spec::Accel::Tcg),
        egress: Some(false),
    };
    let ov = Overrides {
        defaults,
        ..Default::default()
    };
    let lab = load(&classic(), ov);
    assert_eq!(
        (lab.provider, lab.accel, lab.egress),
        (
            labctl_spec::Provider::Virtualbox,
            labctl_spec::Accel::Tcg,
            false
        )
    );
    let set = CLASSIC.replace(
        "workers = 3\n",
        "workers = 3\nprovider = \"qemu\"\naccel = \"kvm\"\negress = true\n",
    );
    let lab = load(&lab_dir(&set, &[("ok.sh.hbs", OK)]), ov);
    assert_eq!(
        (lab.provider, lab.accel, lab.egress),
        (labctl_spec::Provider::Qemu, labctl_spec::Accel::Kvm, true)
    );
    let forced = Overrides {
        no_egress: true,
        ..ov
    };
    assert!(!load(&lab_dir(&set, &[("ok.sh.hbs", OK)]), forced).egress);
}

const LIBVIRT_LAB: &str = r#"[lab]
name = "lv"
provider = "libvirt"
uri = "qemu+ssh://lab@h1/system"

[[network]]
cidr = "172.16.5.0/24"

[role.master]
ip = "172.16.5.10"
[[role.master.step]]
template = "k8s/install.sh.hbs"
"#;

#[test]
fn libvirt_provider_with_a_uri() {
    let dir = lab_dir(LIBVIRT_LAB, &[("k8s/install.sh.hbs", OK)]);
    let lab = load(&dir, Overrides::default());
    assert_eq!(lab.provider, Provider::Libvirt);
    assert_eq!(lab.uri.as_deref(), Some("qemu+ssh://lab@h1/system"));
    let no_uri = LIBVIRT_LAB.replace("uri = \"qemu+ssh://lab@h1/system\"\n", "");
    let dir = lab_dir(&no_uri, &[("k8s/install.sh.hbs", OK)]);
    assert_eq!(load(&dir, Overrides::default()).uri, None);
}

#[test]
fn a_bad_uri_or_a_uri_without_libvirt_is_refused_at_its_line() {
    let bad = LIBVIRT_LAB.replace("qemu+ssh://lab@h1/system", "h1 system");
    let dir = lab_dir(&bad, &[("k8s/install.sh.hbs", OK)]);
    let d = load_err(&dir, Overrides::default());
    assert_eq!((d[0].field.as_str(), d[0].line), ("lab.uri", 4), "{d:?}");
    assert!(d[0].message.contains("not a libvirt URI"), "{d:?}");
    let qemu = LIBVIRT_LAB.replace("provider = \"libvirt\"", "provider = \"qemu\"");
    let dir = lab_dir(&qemu, &[("k8s/install.sh.hbs", OK)]);
    let d = load_err(&dir, Overrides::default());
    assert_eq!((d[0].field.as_str(), d[0].line), ("lab.uri", 4), "{d:?}");
    assert!(d[0].message.contains("libvirt provider"), "{d:?}");
}

/// `lab.uri` is parsed as class.toml's hosts are: a transport labctl cannot route guests
/// through (its SSH endpoint unknown) is refused at its line, not discovered at `up`.
#[test]
fn a_uri_labctl_cannot_route_is_refused_at_its_line() {
    for (uri, why) in [
        (
            "qemu+tls://h1/system",
            "transport `qemu+tls` is not supported",
        ),
        ("qemu+tcp://10.0.0.2/system", "transport `qemu+tcp`"),
        ("qemu+libssh2://lab@h1/system", "transport `qemu+libssh2`"),
        ("qemu+ssh:///system", "is not a host name"),
        (
            "qemu+ssh://lab@h1/system?keyfile=/k/%zz",
            "`keyfile` is not a file name",
        ),
        ("qemu://h1/system", "needs a transport"),
        ("local", "not a libvirt URI"),
    ] {
        let bad = LIBVIRT_LAB.replace("qemu+ssh://lab@h1/system", uri);
        let dir = lab_dir(&bad, &[("k8s/install.sh.hbs", OK)]);
        let d = load_err(&dir, Overrides::default());
        assert_eq!(
            (d[0].field.as_str(), d[0].line),
            ("lab.uri", 4),
            "{uri}: {d:?}"
        );
        assert!(d[0].message.contains(uri), "{uri}: {d:?}");
        assert!(d[0].message.contains(why), "{uri}: {d:?}");
    }
    for ok in [
        "qemu:///system",
        "qemu:///session",
        "qemu+ssh://lab@h1:2222/system?keyfile=/k/id",
    ] {
        let good = LIBVIRT_LAB.replace("qemu+ssh://lab@h1/system", ok);
        let dir = lab_dir(&good, &[("k8s/install.sh.hbs", OK)]);
        assert_eq!(load(&dir, Overrides::default()).uri.as_deref(), Some(ok));
    }
}

/// `LABCTL_PORT_OFFSET` (`Overrides::port_offset`) moves every host port of the lab, SSH
/// ports and `forward` hosts alike, and a port it pushes out of range is refused at its line.
#[test]
fn a_port_offset_moves_every_host_port_and_is_range_checked() {
    let with_forward = CLASSIC.replace(
        "ssh_port = 60010\n",
        "ssh_port = 60010\n[[role.master.forward]]\nguest = 6443\nhost = 60443\n",
    );
    let dir = lab_dir(&with_forward, &[("ok.sh.hbs", OK)]);
    let plain = load(&dir, Overrides::default());
    let moved = load(
        &dir,
        Overrides {
            port_offset: -1000,
            ..Default::default()
        },
    );
    for (a, b) in plain.nodes.iter().zip(&moved.nodes) {
        assert_eq!(b.ssh_port, a.ssh_port - 1000, "{}", a.name);
        for (fa, fb) in a.forwards.iter().zip(&b.forwards) {
            assert_eq!((fb.guest, fb.host), (fa.guest, fa.host - 1000));
        }
    }
    assert_eq!(moved.node("m-k8s").expect("m").forwards[0].host, 59443);
    let diags = load_err(
        &dir,
        Overrides {
            port_offset: 5500,
            ..Default::default()
        },
    );
    assert!(
        diags.iter().any(|d| d.field == "role.worker.ssh_port"
            && d.line > 0
            && d.message.contains("out of range")),
        "{diags:?}"
    );
}
