use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;

fn load(text: &str) -> Result<Class, Vec<String>> {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("lab")).expect("mkdir");
    std::fs::write(dir.path().join("lab/lab.toml"), "[lab]\n").expect("write");
    let file = dir.path().join("class.toml");
    load_class_str(text, &file, Path::new("class.toml"))
        .map_err(|e| e.diagnostics().iter().map(ToString::to_string).collect())
}

const OK: &str = r#"
[class]
name = "k8s"
lab = "lab"
students = ["ann", "bob"]

[[host]]
name = "h1"
uri = "local"
memory_mb = 4096

[[host]]
name = "h2"
uri = "qemu+ssh://root@10.0.0.2:2222/system"
max_parallel = 3

[student.bob]
host = "h2"
"#;

#[test]
fn a_class_loads_with_defaults() {
    let c = load(OK).expect("loads");
    assert_eq!(c.name, "k8s");
    assert!(c.lab_dir.ends_with("lab"));
    assert_eq!(c.hosts.len(), 2);
    assert_eq!(c.hosts[0].uri, HostUri::Local);
    assert_eq!(c.hosts[0].max_parallel, DEFAULT_MAX_PARALLEL);
    assert_eq!(c.hosts[0].memory_mb, Some(4096));
    assert_eq!(c.hosts[1].memory_mb, None);
    assert_eq!(c.hosts[1].max_parallel, 3);
    assert_eq!(
        c.hosts[1].uri.remote(),
        Some(&Remote {
            user: Some("root".into()),
            host: "10.0.0.2".into(),
            port: Some(2222),
            keyfile: None
        })
    );
    assert_eq!(
        c.students,
        vec![
            Student {
                name: "ann".into(),
                host: None
            },
            Student {
                name: "bob".into(),
                host: Some("h2".into())
            }
        ]
    );
    assert_eq!(c.lab_name("ann"), "k8s-ann");
}

#[test]
fn a_count_of_students_is_numbered() {
    let c = load(
        &OK.replace(r#"students = ["ann", "bob"]"#, "students = 12")
            .replace("[student.bob]\nhost = \"h2\"\n", ""),
    )
    .expect("loads");
    let names: Vec<&str> = c.students.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 12);
    assert_eq!((names[0], names[11]), ("s01", "s12"));
}

#[test]
fn hostile_input_is_reported_with_locations() {
    let text = r#"
[class]
name = "K8s"
lab = "lab"
students = ["ann", "../etc", "ann", "", 7, "bob"]
colour = "red"

[[host]]
name = "h1"
uri = "qemu+tcp://10.0.0.2/system"
memory_mb = 1
max_parallel = 0

[[host]]
name = "h1"
uri = "qemu+ssh://-oProxyCommand=x@h/system"

[student.carol]
host = "h1"

[student.bob]
host = "h9"
"#;
    let errs = load(text).expect_err("refused");
    let all = errs.join("\n");
    for want in [
        "class.toml:3:8: class.name: `K8s` is not a valid class name",
        "class.toml:5:20: class.students[1]: `../etc` is not a valid student name",
        "class.toml:5:30: class.students[2]: student `ann` is listed twice",
        "class.students[3]: `` is not a valid student name",
        "class.students[4]: expected a string, found an integer",
        "class.toml:6:1: class.colour: unknown key",
        "host[0].uri: `qemu+tcp://10.0.0.2/system`: transport `qemu+tcp` is not supported",
        "host[0].memory_mb: must be 256-16777216",
        "host[0].max_parallel: must be 1-64",
        "host[1].uri: `qemu+ssh://-oProxyCommand=x@h/system`: `-oProxyCommand=x` is not a valid user name",
        "student.carol: `carol` is not a student of this class",
        "student.bob.host: no host named `h9`",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn duplicate_hosts_and_missing_parts_are_errors() {
    let errs = load(
        "[class]\nname = \"c\"\nlab = \"lab\"\nstudents = 0\n[[host]]\nname = \"a\"\nuri = \"local\"\n[[host]]\nname = \"a\"\nuri = \"local\"\n",
    )
    .expect_err("refused");
    let all = errs.join("\n");
    assert!(
        all.contains("class.students: a count must be 1-999"),
        "{all}"
    );
    assert!(
        all.contains("class.toml:9:8: host[1].name: host `a` is listed twice"),
        "{all}"
    );
    let errs = load("[class]\n").expect_err("refused").join("\n");
    for want in [
        "class.name: missing",
        "class.lab: missing",
        "class.students: missing",
        "host: no host",
    ] {
        assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
    }
}

#[test]
fn the_lab_path_must_hold_a_lab_and_not_be_the_class_state() {
    let errs = load(&OK.replace("lab = \"lab\"", "lab = \"nowhere\"")).expect_err("refused");
    assert!(
        errs.join("\n").contains("class.lab: no lab.toml in"),
        "{errs:?}"
    );
    let errs = load(&OK.replace("lab = \"lab\"", "lab = \"lab/../.labctl/labs/ann\""))
        .expect_err("refused");
    assert!(
        errs.join("\n")
            .contains("is inside the class's own state directory"),
        "{errs:?}"
    );
    // lab.toml itself may be named.
    assert!(load(&OK.replace("lab = \"lab\"", "lab = \"lab/lab.toml\"")).is_ok());
}

#[test]
fn long_lab_names_are_refused() {
    let errs = load(&OK.replace("name = \"k8s\"", &format!("name = \"{}\"", "c".repeat(38))))
        .expect_err("refused");
    assert!(
        errs.join("\n").contains("is longer than 40 characters"),
        "{errs:?}"
    );
}

#[test]
fn uris() {
    assert_eq!(parse_uri("local"), Ok(HostUri::Local));
    assert_eq!(
        parse_uri("qemu:///system"),
        Ok(HostUri::Libvirt {
            uri: "qemu:///system".into(),
            remote: None
        })
    );
    let r = parse_uri("qemu+ssh://h.example/session?no_tty=1&keyfile=/k%20s/id").expect("ok");
    assert_eq!(
        r.remote(),
        Some(&Remote {
            user: None,
            host: "h.example".into(),
            port: None,
            keyfile: Some("/k s/id".into())
        })
    );
    let r = parse_uri("qemu+ssh://me@[fd00::2]:22/system").expect("ok");
    assert_eq!(
        r.remote(),
        Some(&Remote {
            user: Some("me".into()),
            host: "fd00::2".into(),
            port: Some(22),
            keyfile: None
        })
    );
    for bad in [
        "qemu://host/system",
        "qemu+ssh:///system",
        "qemu+ssh://h/",
        "qemu+ssh://h:99999/system",
        "qemu+ssh://h x/system",
        "qemu+ssh://u@-h/system",
        "xen:///system",
        "10.0.0.2",
        "qemu+ssh://h;rm/system",
        "qemu+ssh://h/system?keyfile=",
        "qemu+ssh://h/system?keyfile=%zz",
        "qemu+ssh://h/system?keyfile=%0a",
    ] {
        assert!(parse_uri(bad).is_err(), "{bad} accepted");
    }
}

fn caps(v: &[(&str, u64)]) -> Vec<HostCapacity> {
    v.iter()
        .map(|(n, c)| HostCapacity {
            name: (*n).into(),
            capacity_mb: *c,
        })
        .collect()
}

fn studs(v: &[&str]) -> Vec<Student> {
    v.iter()
        .map(|n| Student {
            name: (*n).into(),
            host: None,
        })
        .collect()
}

#[test]
fn placement_spreads_by_free_memory() {
    let plan = place(
        &caps(&[("a", 4000), ("b", 6000)]),
        1000,
        &studs(&["s1", "s2", "s3", "s4", "s5"]),
        &BTreeMap::new(),
    )
    .expect("fits");
    let on = |s: &str| plan.placements[s].host.clone();
    // b (6000) first, then b (5000 vs 4000), then a/b tie at 4000 → a (first), …
    assert_eq!(
        ["s1", "s2", "s3", "s4", "s5"].map(on),
        ["b", "b", "a", "b", "a"]
    );
    let slots: Vec<u32> = ["s1", "s2", "s3", "s4", "s5"]
        .iter()
        .map(|s| plan.placements[*s].slot)
        .collect();
    assert_eq!(slots, [0, 1, 2, 3, 4]);
}

#[test]
fn placement_is_stable_and_reports_removed_students() {
    let hosts = caps(&[("a", 4000), ("b", 4000)]);
    let first = place(&hosts, 1000, &studs(&["ann", "bob"]), &BTreeMap::new()).expect("fits");
    // Bob leaves, carol and dan arrive: ann stays where she was, bob is reported and his
    // slot stays taken until his lab is destroyed.
    let second = place(
        &hosts,
        1000,
        &studs(&["ann", "carol", "dan"]),
        &first.placements,
    )
    .expect("fits");
    assert_eq!(second.placements["ann"], first.placements["ann"]);
    assert_eq!(second.placements["bob"], first.placements["bob"]);
    assert_eq!(second.placed, ["carol", "dan"]);
    assert_eq!(second.removed, ["bob"]);
    assert_eq!(second.placements["carol"].slot, 2);
    // Running it again changes nothing.
    let third = place(
        &hosts,
        1000,
        &studs(&["ann", "carol", "dan"]),
        &second.placements,
    )
    .expect("fits");
    assert_eq!(third.placements, second.placements);
    assert!(third.placed.is_empty());
}

#[test]
fn a_student_that_does_not_fit_is_named_with_the_shortfall() {
    let err = place(
        &caps(&[("a", 2500), ("b", 1800)]),
        1000,
        &studs(&["s1", "s2", "s3", "s4", "s5"]),
        &BTreeMap::new(),
    )
    .expect_err("does not fit");
    assert_eq!(
        err.to_string(),
        "s4 does not fit: the lab needs 1000 MiB, b has 800 MiB left (200 MiB short); \
         s5 does not fit: the lab needs 1000 MiB, b has 800 MiB left (200 MiB short)"
    );
}

#[test]
fn pins_recorded_hosts_and_capacity_changes() {
    let mut ss = studs(&["ann", "bob"]);
    ss[1].host = Some("small".into());
    let plan = place(
        &caps(&[("big", 9000), ("small", 1000)]),
        1000,
        &ss,
        &BTreeMap::new(),
    )
    .expect("fits");
    assert_eq!(plan.placements["bob"].host, "small");
    assert_eq!(plan.placements["ann"].host, "big");
    let err =
        place(&caps(&[("big", 9000)]), 1000, &ss[..1], &plan.placements).expect_err("host gone");
    assert!(matches!(err, PlaceError::HostGone { ref host, .. } if host == "small"));
    let err = place(
        &caps(&[("big", 9000), ("small", 500)]),
        1000,
        &ss,
        &plan.placements,
    )
    .expect_err("shrunk");
    assert_eq!(
        err.to_string(),
        "host `small` has 500 MiB but its recorded labs need 1000 MiB"
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the hosts, the need and the earlier placements: either every student
        /// is placed, no host is over capacity, earlier placements are unchanged and slots
        /// are unique; or the error names a student that really did not fit.
        #[test]
        fn placement_never_overcommits_and_keeps_what_was_placed(
            cap in proptest::collection::vec(0u64..10_000, 1..5),
            need in 1u64..3000,
            n in 0usize..12,
            keep in 0usize..6,
        ) {
            let hosts: Vec<HostCapacity> = cap.iter().enumerate()
                .map(|(i, c)| HostCapacity { name: format!("h{i}"), capacity_mb: *c })
                .collect();
            let students: Vec<Student> = (0..n)
                .map(|i| Student { name: format!("s{i:02}"), host: None })
                .collect();
            // An earlier run with the first `keep` students.
            let previous = place(&hosts, need, &students[..keep.min(n)], &BTreeMap::new())
                .map(|p| p.placements)
                .unwrap_or_default();
            match place(&hosts, need, &students, &previous) {
                Ok(plan) => {
                    for s in &students {
                        prop_assert!(plan.placements.contains_key(&s.name));
                    }
                    for (k, v) in &previous {
                        prop_assert_eq!(&plan.placements[k], v);
                    }
                    for h in &hosts {
                        let load = plan.placements.values().filter(|p| p.host == h.name).count() as u64 * need;
                        prop_assert!(load <= h.capacity_mb, "{} over capacity", h.name);
                    }
                    let slots: BTreeSet<u32> = plan.placements.values().map(|p| p.slot).collect();
                    prop_assert_eq!(slots.len(), plan.placements.len());
                }
                Err(PlaceError::NoFit(v)) => {
                    prop_assert!(!v.is_empty());
                    for nf in v {
                        prop_assert!(nf.free_mb < need && nf.shortfall_mb == need - nf.free_mb);
                        prop_assert!(!previous.contains_key(&nf.student));
                    }
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
