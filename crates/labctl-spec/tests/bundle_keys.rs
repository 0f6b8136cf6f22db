//! `[lab] bundle`, `[[package_set]]`, `[images]` and a step's `packages` (docs/bundle.md).

use labctl_spec::{Family, Overrides, SpecError};

fn lab_dir(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("lab.toml"), toml).expect("write lab.toml");
    std::fs::create_dir_all(dir.path().join("templates")).expect("mkdir");
    std::fs::write(
        dir.path().join("templates/rt.sh.hbs"),
        "#!/bin/bash\necho {{sh node.name}}\n",
    )
    .expect("write template");
    dir
}

const GOOD: &str = r#"[lab]
name = "k8s"
bundle = "k8s"

[[package_set]]
name = "runtime"
debian = ["containerd", "runc", "runc"]
ubuntu = ["containerd"]

[[package_set]]
name = "kubernetes"
debian = ["kubelet=1.35.4-*", "kubeadm"]
[[package_set.repository]]
family = "debian"
url = "https://pkgs.k8s.io/core:/stable:/v1.35/deb/"
suite = "/"
key = "https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key"

[images]
refs = ["registry.k8s.io/pause:3.10", "busybox"]

[role.master]
[[role.master.step]]
template = "rt.sh.hbs"
needs_egress = true
packages = "runtime"
"#;

#[test]
fn the_keys_reach_the_model() {
    let dir = lab_dir(GOOD);
    let lab = labctl_spec::load(&dir.path().join("lab.toml"), Overrides::default())
        .unwrap_or_else(|e| panic!("{e}: {:?}", e.diagnostics()));
    assert_eq!(lab.bundle.as_deref(), Some("k8s"));
    let rt = lab.package_set("runtime").expect("runtime set");
    assert_eq!(rt.packages_for(Family::Debian), ["containerd", "runc"]);
    assert_eq!(rt.packages_for(Family::Ubuntu), ["containerd"]);
    assert!(rt.packages_for(Family::Rocky).is_empty());
    let k = lab.package_set("kubernetes").expect("kubernetes set");
    let repos: Vec<_> = k.repositories_for(Family::Debian).collect();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0].suite, "/");
    assert_eq!(
        repos[0].key.as_deref(),
        Some("https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key")
    );
    let imgs: Vec<String> = lab.images.iter().map(ToString::to_string).collect();
    assert_eq!(
        imgs,
        [
            "registry.k8s.io/pause:3.10",
            "docker.io/library/busybox:latest"
        ]
    );
    assert_eq!(lab.roles[0].steps[0].packages.as_deref(), Some("runtime"));
    assert!(lab.roles[0].steps[0].needs_egress);
}

#[test]
fn a_lab_without_the_keys_has_none() {
    let dir = lab_dir("[lab]\nname = \"x\"\n[role.master]\n");
    let lab = labctl_spec::load(&dir.path().join("lab.toml"), Overrides::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lab.bundle, None);
    assert!(lab.package_sets.is_empty() && lab.images.is_empty());
    // The plan's JSON is unchanged for labs that do not use bundles.
    let json = serde_json::to_value(&lab).expect("json");
    assert!(json.get("bundle").is_none() && json.get("package_sets").is_none());
}

#[test]
fn mistakes_are_located() {
    let bad = GOOD
        .replace("bundle = \"k8s\"", "bundle = \"../k8s\"")
        .replace("packages = \"runtime\"", "packages = \"runtme\"")
        .replace("family = \"debian\"", "family = \"debain\"")
        .replace("\"busybox\"", "\"Not An Image\"")
        .replace("\"runc\", \"runc\"", "\"runc\", \"-bad\"");
    let dir = lab_dir(&bad);
    let diags = match labctl_spec::load(&dir.path().join("lab.toml"), Overrides::default()) {
        Err(SpecError::Invalid { diagnostics, .. }) => diagnostics,
        other => panic!("expected diagnostics, got {other:?}"),
    };
    let got: Vec<(String, usize, String, Option<String>)> = diags
        .iter()
        .map(|d| (d.field.clone(), d.line, d.message.clone(), d.hint.clone()))
        .collect();
    let want_fields = [
        ("lab.bundle", 3),
        ("package_set[0].debian[2]", 7),
        ("package_set[1].repository[0].family", 14),
        ("images.refs[1]", 20),
        ("role.master.step[0].packages", 26),
    ];
    assert_eq!(got.len(), want_fields.len(), "{got:#?}");
    for ((field, line, _, _), (wf, wl)) in got.iter().zip(want_fields) {
        assert_eq!((field.as_str(), *line), (wf, wl), "{got:#?}");
    }
    assert_eq!(got[2].3.as_deref(), Some("did you mean `debian`?"));
    assert_eq!(got[4].2, "no package set named `runtme`");
    assert_eq!(got[4].3.as_deref(), Some("did you mean `runtime`?"));
}

#[test]
fn unknown_keys_get_suggestions() {
    let bad = GOOD
        .replace("refs =", "ref =")
        .replace("ubuntu =", "ubunt =");
    let dir = lab_dir(&bad);
    let diags = match labctl_spec::load(&dir.path().join("lab.toml"), Overrides::default()) {
        Err(SpecError::Invalid { diagnostics, .. }) => diagnostics,
        other => panic!("expected diagnostics, got {other:?}"),
    };
    let fields: Vec<&str> = diags.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["package_set[0].ubunt", "images.ref"], "{diags:#?}");
}
