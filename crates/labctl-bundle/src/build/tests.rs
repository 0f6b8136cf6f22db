use super::fetch::{archive_name, parse_inst};
use super::*;
use crate::deb::tests::build_deb;
use labctl_spec::Family;

#[test]
fn parses_apt_simulation() {
    let out = "NOTE: This is only a simulation!\nInst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\nInst libgcc-s1 (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64]) []\nInst tzdata (2025b-0+deb12u1 Debian:12.15/oldstable [all])\nConf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n";
    let v = parse_inst(out);
    assert_eq!(
        v,
        [
            ("libc6".into(), "2.36-9+deb12u14".into(), "amd64".into()),
            (
                "libgcc-s1".into(),
                "12.2.0-14+deb12u1".into(),
                "amd64".into()
            ),
            ("tzdata".into(), "2025b-0+deb12u1".into(), "all".into()),
        ]
    );
    assert_eq!(archive_name("x", "1:2.0", "amd64"), "x_1%3a2.0_amd64.deb");
    // apt-helper download-file's output on this host (no route to pkgs.k8s.io).
    let helper = "Ign:1 https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key\nErr:1 https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key\n  Could not resolve 'pkgs.k8s.io'\nE: Failed to fetch https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key  Could not resolve 'pkgs.k8s.io'\nE: Download Failed\n";
    assert_eq!(apt_reason(helper), "Could not resolve 'pkgs.k8s.io'");
    assert_eq!(
        apt_reason("Err:1 x\n  Connection refused\n"),
        "Connection refused"
    );
    assert_eq!(
        apt_reason("E: Unable to locate package kubelet\n"),
        "E: Unable to locate package kubelet"
    );
}

#[test]
fn an_unreachable_mirror_leaves_a_bundle_of_what_there_is() {
    let d = tempfile::tempdir().unwrap();
    let debs = d.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    build_deb(&debs, "lab-a", "1.0", "", "gzip");
    let store = Store::new(d.path().join("home"));
    let mut packages = BTreeMap::new();
    packages.insert(
        Family::Debian,
        vec!["lab-a".to_string(), "lab-z".to_string()],
    );
    // Port 9 on loopback: nothing listens, nothing leaves the host.
    let opts = BuildOptions {
        name: "t".into(),
        os: OsRelease::parse("debian-12").unwrap(),
        sets: vec![PackageSet {
            name: "runtime".into(),
            packages,
            repositories: vec![],
        }],
        images: vec![],
        from_dirs: vec![debs],
        offline: false,
        cache_dir: d.path().join("cache"),
        mirror: Some("http://127.0.0.1:9/debian".into()),
    };
    let mut events = Vec::new();
    let r = build(&store, &opts, &mut |e| events.push(e)).unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, BuildEvent::MirrorUnreachable { .. })),
        "{events:?}"
    );
    assert!(!r.sets[0].complete);
    assert_eq!(r.sets[0].missing.len(), 1, "{:?}", r.sets[0].missing);
    assert_eq!(r.sets[0].missing[0].name, "lab-z");
    assert!(
        r.sets[0].missing[0]
            .reason
            .starts_with("the mirror could not be read"),
        "{:?}",
        r.sets[0].missing
    );
    assert!(store.exists("t"));
}

#[test]
fn offline_build_from_dir_signs_a_repository_apt_accepts() {
    let d = tempfile::tempdir().unwrap();
    let debs = d.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    build_deb(&debs, "lab-a", "1.0", "lab-b", "xz");
    build_deb(&debs, "lab-b", "1.0", "", "gzip");
    let store = Store::new(d.path().join("home"));
    let mut packages = BTreeMap::new();
    packages.insert(
        Family::Debian,
        vec!["lab-a".to_string(), "lab-b".to_string()],
    );
    let mut other = BTreeMap::new();
    other.insert(Family::Debian, vec!["kubelet".to_string()]);
    let opts = BuildOptions {
        name: "t".into(),
        os: OsRelease::parse("debian-12").unwrap(),
        sets: vec![
            PackageSet {
                name: "runtime".into(),
                packages,
                repositories: vec![],
            },
            PackageSet {
                name: "kubernetes".into(),
                packages: other,
                repositories: vec![],
            },
        ],
        images: vec![ImageRef::parse("registry.k8s.io/pause:3.10").unwrap()],
        from_dirs: vec![debs],
        offline: true,
        cache_dir: d.path().join("cache"),
        mirror: None,
    };
    let mut events = Vec::new();
    let r = build(&store, &opts, &mut |e| events.push(e)).unwrap();
    assert!(r.sets[0].complete && !r.sets[1].complete, "{r:?}");
    assert_eq!(r.missing_images.len(), 1);
    assert!(events.contains(&BuildEvent::Signing));
    assert_eq!(
        store.covers("t", "runtime", "debian-12"),
        crate::Coverage::Complete
    );
    let m = store.load("t").unwrap();
    crate::archive::verify_dir(&store.dir("t").unwrap(), &m).unwrap();

    // apt itself (a private configuration reading the repository through file:) verifies
    // the signature with key.asc and resolves lab-a with its dependency.
    let dir = store.dir("t").unwrap();
    let root = d.path().join("client");
    let src = format!(
        "deb [signed-by={}] file:{} labctl main",
        dir.join("key.asc").display(),
        dir.join("apt/debian-12").display()
    );
    let apt = PrivateApt::new(root.clone(), root.join("archives"), "amd64", &[src]).unwrap();
    apt.update().unwrap();
    let closure = apt.simulate(&["lab-a".into()]).unwrap();
    let names: Vec<&str> = closure.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["lab-b", "lab-a"]);
    // A tampered Release is refused by apt.
    let rel = dir.join("apt/debian-12/dists/labctl/InRelease");
    let text = std::fs::read_to_string(&rel)
        .unwrap()
        .replace("Origin: labctl", "Origin: labctX");
    std::fs::write(&rel, text).unwrap();
    std::fs::remove_dir_all(root.join("state/lists")).unwrap();
    let apt = PrivateApt::new(
        root.clone(),
        root.join("archives"),
        "amd64",
        &[format!(
            "deb [signed-by={}] file:{} labctl main",
            dir.join("key.asc").display(),
            dir.join("apt/debian-12").display()
        )],
    )
    .unwrap();
    let out = apt.cmd().arg("update").run_unchecked().unwrap();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("not signed")
            || all.contains("BADSIG")
            || all.contains("NOSPLIT")
            || all.contains("signature"),
        "{all}"
    );
}
