//! Imports of real Vagrantfiles: the seeds' and public Kubernetes labs' (tests/data, each with
//! its source and license in a header comment).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use labctl_import::{FileSource, ImportError, Imported, Options, import};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn run(rel: &str) -> Result<Imported, ImportError> {
    let text = std::fs::read(data(rel)).expect("test data");
    import(
        &text,
        &Options {
            lab_name: "imported".into(),
        },
    )
}

/// Write the lab into a temporary directory (scripts copied; a script the test data does not
/// carry becomes an empty file, listed in the summary) and validate it with labctl-spec.
fn write_and_validate(
    rel: &str,
    imp: &Imported,
    workers: Option<u32>,
) -> (tempfile::TempDir, labctl_spec::Lab, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let vdir = data(rel)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut missing = Vec::new();
    for f in &imp.files {
        let to = dir.path().join(&f.path);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        match &f.source {
            FileSource::Copy(from) => {
                let from = vdir.join(from);
                if from.is_file() {
                    std::fs::copy(&from, &to).expect("copy");
                } else {
                    missing.push(f.path.display().to_string());
                    std::fs::write(&to, "").expect("write");
                }
            }
            FileSource::Inline(text) => std::fs::write(&to, text).expect("write"),
        }
    }
    let toml = dir.path().join("lab.toml");
    std::fs::write(&toml, &imp.lab_toml).expect("write lab.toml");
    let ov = labctl_spec::Overrides {
        workers,
        ..Default::default()
    };
    let lab = match labctl_spec::load(&toml, ov) {
        Ok(lab) => lab,
        Err(e) => panic!(
            "{rel}: the imported lab does not validate: {e:?}\n{}",
            imp.lab_toml
        ),
    };
    (dir, lab, missing)
}

fn summary(imp: &Imported, missing: &[String]) -> String {
    let mut s = imp.lab_toml.clone();
    s.push_str("\n# notices\n");
    for n in &imp.notices {
        let _ = writeln!(s, "{}: {:?}", n.line, n.kind);
    }
    s.push_str("# files\n");
    for f in &imp.files {
        let _ = writeln!(s, "{} <- {:?}", f.path.display(), f.source);
    }
    let _ = writeln!(s, "# not in the test data: {missing:?}");
    s
}

fn check(rel: &str) -> Imported {
    let imp = run(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let (_d, _lab, missing) = write_and_validate(rel, &imp, None);
    insta::assert_snapshot!(rel.replace(['/', '.'], "_"), summary(&imp, &missing));
    imp
}

#[test]
fn seed_003_chapter3() {
    check("seed-003/Vagrantfile");
}

#[test]
fn seed_004_annotated_copy() {
    check("seed-004/Vagrantfile");
}

#[test]
fn seed_001_kind() {
    check("seed-001/Vagrantfile");
}

#[test]
fn public_kubernetes_the_hard_way_2019() {
    check("khtw-2019.Vagrantfile");
}

#[test]
fn public_kodekloud_cka() {
    check("kodekloud-cka.Vagrantfile");
}

#[test]
fn public_c9s_kubeadm() {
    check("c9s-kubeadm.Vagrantfile");
}

#[test]
fn public_kubernetes_the_hard_way_2025_is_refused_with_its_line() {
    let err = run("khtw-2025.Vagrantfile").expect_err("computes resources in Ruby");
    insta::assert_snapshot!(err.to_string());
}

/// What `labctl plan` shows of a lab: per node its name, CPUs, memory, addresses, SSH port and
/// forwards, then every step in order with its rendered arguments.
fn plan_view(lab: &labctl_spec::Lab) -> Vec<String> {
    let r = labctl_spec::Renderer::new(lab).expect("renderer");
    let mut out = Vec::new();
    for n in &lab.nodes {
        let ips: Vec<String> = n
            .nics
            .iter()
            .map(|x| format!("{}={}/{}", x.network, x.ip, x.prefix))
            .collect();
        let fwd: Vec<String> = n
            .forwards
            .iter()
            .map(|f| format!("{}->{}", f.host, f.guest))
            .collect();
        out.push(format!(
            "{} cpus={} mem={} ips={} ssh={} fwd={}",
            n.name,
            n.cpus,
            n.memory_mb,
            ips.join(","),
            n.ssh_port,
            fwd.join(",")
        ));
        for (k, s) in lab.steps_of(n).iter().enumerate() {
            let args = r.render_args(lab, n, s).expect("args");
            out.push(format!("  {} {} {:?}", k + 1, s.name, args));
        }
    }
    out
}

#[test]
fn seed_003_plan_equals_k8s_classic_with_3_workers() {
    let rel = "seed-003/Vagrantfile";
    let imp = run(rel).expect("import");
    let (_d, imported, _) = write_and_validate(rel, &imp, Some(3));
    let classic_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../labs/k8s-classic/lab.toml");
    let classic = labctl_spec::load(
        &classic_path,
        labctl_spec::Overrides {
            workers: Some(3),
            ..Default::default()
        },
    )
    .expect("k8s-classic loads");
    let (a, b) = (plan_view(&imported), plan_view(&classic));
    assert_eq!(a.len(), 4 + 12, "{a:#?}");
    assert_eq!(a, b);
    // Vagrant's order between machines holds: each worker's join waits, directly or not, for
    // the master's last step.
    let g = labctl_spec::Graph::build(&imported);
    let master_last = (0..g.tasks.len())
        .find(|&t| g.label(&imported, t) == "m-k8s.master_node")
        .expect("master_node task");
    for t in 0..g.tasks.len() {
        let label = g.label(&imported, t);
        if label.ends_with(".work_nodes") {
            assert!(
                g.ancestors(t).contains(&master_last),
                "{label} does not wait for the master"
            );
        }
    }
    // And with 10 workers, w10-k8s gets .110 and port 60110, not the Vagrantfile's strings.
    let (_d, ten, _) = write_and_validate(rel, &imp, Some(10));
    let w10 = ten
        .nodes
        .iter()
        .find(|n| n.name == "w10-k8s")
        .expect("w10-k8s");
    assert_eq!(
        (w10.nics[0].ip.to_string(), w10.ssh_port),
        ("192.168.1.110".to_string(), 60110)
    );
}

#[test]
fn broken_ruby_is_an_error_with_its_line() {
    let cases: &[(&str, &str)] = &[
        (
            "Vagrant.configure(\"2\") do |config|\n  config.vm.define \"a\" do |a|\n    a.vm.box = \n",
            "syntax",
        ),
        (
            "Vagrant.configure(\"2\") do |config|\n  config.vm.define \"a\" do |a|\n    a.vm.provider \"virtualbox\" do |vb|\n      vb.memory = ENV[\"MEM\"]\n    end\n  end\nend\n",
            "index",
        ),
        (
            "S = YAML.load_file(\"s.yaml\")\nVagrant.configure(\"2\") do |config|\n  config.vm.define S[\"name\"] do |a|\n  end\nend\n",
            "unknown constant",
        ),
        (
            "Vagrant.configure(\"2\") do |config|\n  [1,2].each do |i|\n    config.vm.define \"n#{i}\" do |a|\n    end\n  end\nend\n",
            "loop over data",
        ),
        ("Vagrant.configure(\"2\") do |config|\nend\n", "no machine"),
        ("puts 'hi'\n", "no machine"),
        ("\u{0}\u{1}", "garbage"),
    ];
    let mut out = String::new();
    for (src, what) in cases {
        let r = import(
            src.as_bytes(),
            &Options {
                lab_name: "x".into(),
            },
        );
        let e = r.expect_err(what);
        let _ = writeln!(out, "{what}: {e}");
    }
    let not_utf8 = import(
        b"N = \"\xff\"\n",
        &Options {
            lab_name: "x".into(),
        },
    )
    .expect_err("not utf-8");
    let _ = writeln!(out, "not utf-8: {not_utf8}");
    insta::assert_snapshot!(out);
}
