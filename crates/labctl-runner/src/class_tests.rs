//! The class orchestration against the runner's real `up`/`reset`/`status`/`destroy` with
//! the in-memory driver and guest of [`crate::testing`] (one fake world per student's lab):
//! seconds, no QEMU, no SSH.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use labctl_driver::{Driver, MachineStatus};
use labctl_spec::Lab;
use labctl_spec::class::{Class, Host, PlaceError};

use super::*;
use crate::testing::{Act, Call, FakeConnect, FakeDriver, World};

const LAB: &str = r#"[lab]
name = "t"
os = "debian"
workers = 1
templates = "t"

[[network]]
name = "private"
cidr = "192.168.1.0/24"

[role.master]
hostname = "m"
memory = 1000
ip = "192.168.1.10"
ssh_port = 61010

[[role.master.step]]
template = "prep.sh.hbs"

[[role.master.step]]
template = "init.sh.hbs"
publish = ["join_command"]

[role.worker]
hostname = "w{i}"
scale = true
memory = 500
ip = "192.168.1.101"
ssh_port = 61101

[[role.worker.step]]
template = "join.sh.hbs"
after = ["master.init"]
"#;

/// The labs of a class on fake hosts: a world per student's lab, and the most labs that
/// were in `up` at once on each host.
#[derive(Default)]
struct FakeOps {
    worlds: Mutex<BTreeMap<String, Arc<World>>>,
    active: Mutex<BTreeMap<String, (usize, usize)>>,
    /// Memory `measure` reports per host.
    measured: BTreeMap<String, u64>,
    /// Labs whose `up` is slow (ms), to make them overlap.
    delay_ms: u64,
    /// How often `prepare` ran.
    prepared: std::sync::atomic::AtomicUsize,
}

impl FakeOps {
    /// The world of the lab in `dir` (`.labctl/labs/<student>`), keyed by student.
    fn world(&self, dir: &Path) -> Arc<World> {
        let student = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut g = self.worlds.lock().expect("worlds");
        g.entry(student)
            .or_insert_with(|| {
                let w = Arc::new(World::default());
                w.step_delay(Duration::from_millis(self.delay_ms));
                w.act(
                    "m",
                    "init",
                    Act::Ok(vec![("join_command".into(), "join --token t".into())]),
                );
                w
            })
            .clone()
    }
    fn max_active(&self, host: &str) -> usize {
        self.active
            .lock()
            .expect("active")
            .get(host)
            .map_or(0, |a| a.1)
    }
}

impl LabOps for FakeOps {
    fn up(
        &self,
        host: &Host,
        lab: &Lab,
        opts: &UpOptions,
        reporter: Arc<dyn Reporter>,
        cancel: Arc<AtomicBool>,
    ) -> Result<UpSummary, RunnerError> {
        {
            let mut a = self.active.lock().expect("active");
            let e = a.entry(host.name.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(e.0);
        }
        let world = self.world(&lab.dir);
        let driver: Arc<dyn Driver> = Arc::new(FakeDriver(world.clone()));
        let r = crate::up::up_with(
            lab,
            &env_of(lab),
            opts,
            reporter,
            cancel,
            &|_, _| Ok(driver.clone()),
            &FakeConnect(world),
        );
        if let Some(e) = self.active.lock().expect("active").get_mut(&host.name) {
            e.0 -= 1;
        }
        r
    }
    fn reset(
        &self,
        _: &Host,
        lab: &Lab,
        reporter: Arc<dyn Reporter>,
        cancel: Arc<AtomicBool>,
    ) -> Result<ResetSummary, RunnerError> {
        let world = self.world(&lab.dir);
        let driver: Arc<dyn Driver> = Arc::new(FakeDriver(world.clone()));
        crate::reset::reset_with(
            lab,
            &env_of(lab),
            &ResetOptions {
                all: true,
                ..ResetOptions::default()
            },
            reporter,
            cancel,
            &|_, _| Ok(driver.clone()),
            &FakeConnect(world),
        )
    }
    fn status(&self, _: &Host, paths: &LabPaths) -> Result<Vec<NodeStatus>, RunnerError> {
        let driver: Arc<dyn Driver> = Arc::new(FakeDriver(self.world(&paths.lab_dir())));
        crate::ops::status_with(paths, &env_at(&paths.lab_dir()), &|_, _| Ok(driver.clone()))
    }
    fn destroy(
        &self,
        _: &Host,
        paths: &LabPaths,
        reporter: Arc<dyn Reporter>,
    ) -> Result<(), RunnerError> {
        let driver: Arc<dyn Driver> = Arc::new(FakeDriver(self.world(&paths.lab_dir())));
        crate::ops::destroy_with(paths, &env_at(&paths.lab_dir()), &[], reporter, &|_, _| {
            Ok(driver.clone())
        })
    }
    fn prepare(&self, _: &Lab) -> Result<(), RunnerError> {
        self.prepared
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn measure(&self, host: &Host) -> Result<u64, String> {
        self.measured
            .get(&host.name)
            .copied()
            .ok_or_else(|| "not measurable".into())
    }
}

/// The test's Env: `<root>/home` with the box, found from a lab dir
/// `<root>/class/.labctl/labs/<student>`.
fn env_at(lab_dir: &Path) -> Env {
    let root = lab_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Env {
        data_dir: root.join("home"),
        cache_dir: root.join("cache"),
        switch_command: Vec::new(),
        uri: None,
        relay_command: Vec::new(),
        bundle_server_command: Vec::new(),
    }
}

fn env_of(lab: &Lab) -> Env {
    env_at(&lab.dir)
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let lab_dir = root.join("lab");
        std::fs::create_dir_all(lab_dir.join("t")).expect("mkdir");
        for (f, text) in [
            ("prep.sh.hbs", "#!/bin/sh\necho prep\n"),
            ("init.sh.hbs", "#!/bin/sh\necho init\n"),
            (
                "join.sh.hbs",
                "#!/bin/sh\njoin={{sh values.join_command}}\n",
            ),
        ] {
            std::fs::write(lab_dir.join("t").join(f), text).expect("template");
        }
        std::fs::write(lab_dir.join("lab.toml"), LAB).expect("lab.toml");
        let box_dir = root.join("home/boxes/labctl--debian-12");
        std::fs::create_dir_all(&box_dir).expect("mkdir");
        std::fs::write(
            box_dir.join("box.json"),
            r#"{"name":"labctl/debian-12","source":"test","sha256":"","size":0,"added_at":0,
               "disk":"disk.qcow2","user":"labctl","os":"debian"}"#,
        )
        .expect("box.json");
        std::fs::create_dir_all(root.join("class")).expect("mkdir");
        Fixture { dir }
    }

    fn class(&self, text: &str) -> Class {
        let file = self.dir.path().join("class/class.toml");
        std::fs::write(&file, text).expect("class.toml");
        labctl_spec::class::load_class(&file).expect("class loads")
    }

    fn state(&self) -> Option<ClassState> {
        let text =
            std::fs::read_to_string(self.dir.path().join("class/.labctl/class-state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

fn class_toml(students: &str, hosts: &str) -> String {
    format!("[class]\nname = \"c\"\nlab = \"../lab\"\nstudents = {students}\n\n{hosts}")
}

const TWO_HOSTS: &str = "[[host]]\nname = \"h1\"\nuri = \"local\"\nmemory_mb = 6000\nmax_parallel = 2\n\n[[host]]\nname = \"h2\"\nuri = \"local\"\nmemory_mb = 4500\nmax_parallel = 1\n";

/// Run a class command on a thread; fail the test instead of hanging.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("finished within 60 s (no deadlock)")
}

fn up(class: &Class, ops: &Arc<FakeOps>) -> (Result<ClassSummary, ClassError>, Vec<ClassEvent>) {
    let (class, ops) = (class.clone(), ops.clone());
    within(move || {
        let rep = Arc::new(ClassCollect::default());
        let r = class_up_with(
            &class,
            &ClassOptions::default(),
            rep.clone(),
            Arc::new(AtomicBool::new(false)),
            &*ops,
        );
        let ev = rep.0.lock().expect("events").clone();
        (r, ev)
    })
}

fn hosts_of(s: &ClassSummary) -> BTreeMap<String, String> {
    s.labs
        .iter()
        .map(|l| (l.student.clone(), l.host.clone()))
        .collect()
}

#[test]
fn class_up_places_generates_and_brings_every_lab_up_bounded_per_host() {
    let f = Fixture::new();
    let class = f.class(&class_toml(
        r#"["ann", "bob", "cid", "dee", "eve"]"#,
        TWO_HOSTS,
    ));
    let ops = Arc::new(FakeOps {
        delay_ms: 60,
        ..FakeOps::default()
    });
    let (s, events) = up(&class, &ops);
    let s = s.expect("class up");
    assert!(s.failed().is_empty(), "{s:?}");
    // Each lab needs 1500 MiB (1000 + 500): h1 6000, h2 4500 → by free memory h1, h1, h2, h1, h2.
    let want: BTreeMap<String, String> = [
        ("ann", "h1"),
        ("bob", "h1"),
        ("cid", "h2"),
        ("dee", "h1"),
        ("eve", "h2"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(hosts_of(&s), want);
    assert_eq!(s.placed, ["ann", "bob", "cid", "dee", "eve"]);
    // The bound per host held, and h1 really ran two at once.
    assert_eq!(ops.max_active("h1"), 2);
    assert_eq!(ops.max_active("h2"), 1);
    // What the labs share was prepared once, before any of them.
    assert_eq!(ops.prepared.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Every student's lab ran all its steps on its own machines.
    for st in ["ann", "bob", "cid", "dee", "eve"] {
        let w = ops.worlds.lock().expect("w")[st].clone();
        assert_eq!(w.status("m"), MachineStatus::Running { pid: 1 }, "{st}");
        assert_eq!(w.steps_run().len(), 3, "{st}: {:?}", w.steps_run());
    }
    // Generated labs: own name, own directory, ports moved by slot × span (61010..=61101).
    let gen_dir = f.dir.path().join("class/.labctl/labs/cid");
    let cid = labctl_spec::load(&gen_dir.join("lab.toml"), Overrides::default()).expect("lab");
    assert_eq!(cid.name, "c-cid");
    assert_eq!(cid.node("m").map(|n| n.ssh_port), Some(61010 + 2 * 92));
    assert_eq!(cid.node("w1").map(|n| n.ssh_port), Some(61101 + 2 * 92));
    let st = f.state().expect("state");
    assert_eq!(st.placements["cid"].slot, 2);
    // Events: placement, start and end of every lab, and the labs' own events by student.
    assert!(events.iter().any(
        |e| matches!(e, ClassEvent::Placed { student, host, .. } if student == "eve" && host == "h2")
    ));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ClassEvent::LabFinished { .. }))
            .count(),
        5
    );
    assert!(events.iter().any(|e| matches!(e, ClassEvent::Lab { student, event } if student == "dee" && event.node.as_deref() == Some("w1"))));
}

#[test]
fn a_failing_lab_does_not_stop_the_others_and_is_named() {
    let f = Fixture::new();
    let class = f.class(&class_toml(r#"["ann", "bob", "cid"]"#, TWO_HOSTS));
    let ops = Arc::new(FakeOps::default());
    ops.world(Path::new("x/bob")).act("m", "init", Act::Fail(3));
    let (s, _) = up(&class, &ops);
    let s = s.expect("class up");
    let failed: Vec<&str> = s.failed().iter().map(|l| l.student.as_str()).collect();
    assert_eq!(failed, ["bob"]);
    match &s.labs[1].outcome {
        LabOutcome::Failed { failed, .. } => assert_eq!(failed, &["m.init"]),
        other => panic!("bob: {other:?}"),
    }
    for ok in ["ann", "cid"] {
        let w = ops.worlds.lock().expect("w")[ok].clone();
        assert!(w.steps_run().contains(&"w1.join".to_string()), "{ok}");
    }
}

#[test]
fn a_lab_that_cannot_even_be_made_is_an_error_for_that_lab_only() {
    let f = Fixture::new();
    // Ports 61010 and 65400: a span of 4391, so the second slot would pass 65535.
    std::fs::write(
        f.dir.path().join("lab/lab.toml"),
        LAB.replace("61101", "65400"),
    )
    .expect("lab.toml");
    let class = f.class(&class_toml(r#"["ann", "bob"]"#, TWO_HOSTS));
    let ops = Arc::new(FakeOps::default());
    let (s, _) = up(&class, &ops);
    let s = s.expect("class up");
    assert!(matches!(s.labs[0].outcome, LabOutcome::Ok { .. }), "{s:?}");
    match &s.labs[1].outcome {
        LabOutcome::Error { message } => {
            assert!(
                message.starts_with("bob's lab would use host ports up to 69791"),
                "{message}"
            );
        }
        other => panic!("bob: {other:?}"),
    }
    assert_eq!(s.failed().len(), 1);
}

#[test]
fn a_remote_host_gets_the_libvirt_provider_and_its_uri() {
    let f = Fixture::new();
    let class = f.class(&class_toml(
        r#"["ann"]"#,
        "[[host]]\nname = \"far\"\nuri = \"qemu+ssh://root@10.9.9.9/system\"\nmemory_mb = 1500\n",
    ));
    let (base, _) = base_lab(&class, &ClassOptions::default()).expect("base");
    let text = student_lab_toml(
        &class,
        &base,
        "ann",
        &Placement {
            host: "far".into(),
            slot: 1,
        },
    )
    .expect("generated");
    for want in [
        "name = \"c-ann\"",
        "provider = \"libvirt\"",
        "uri = \"qemu+ssh://root@10.9.9.9/system\"",
        "ssh_port = 61102",
        "ssh_port = 61193",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    // The templates and the trusted directories are absolute (the lab is generated elsewhere).
    let templates = base.templates_dir.to_string_lossy().into_owned();
    assert!(
        text.contains(&format!("templates = \"{templates}\"")),
        "{text}"
    );
}

#[test]
fn placement_is_stable_across_runs_and_new_students_are_added() {
    let f = Fixture::new();
    let ops = Arc::new(FakeOps::default());
    let (s1, _) = up(&f.class(&class_toml(r#"["ann", "bob"]"#, TWO_HOSTS)), &ops);
    let s1 = s1.expect("first");
    let st1 = f.state().expect("state");
    // bob leaves, cid joins; the order of students changes too.
    let class = f.class(&class_toml(r#"["cid", "ann"]"#, TWO_HOSTS));
    let (s2, events) = up(&class, &ops);
    let s2 = s2.expect("second");
    let st2 = f.state().expect("state");
    assert_eq!(st2.placements["ann"], st1.placements["ann"]);
    assert_eq!(
        st2.placements["bob"], st1.placements["bob"],
        "kept until destroy"
    );
    assert_eq!(s2.placed, ["cid"]);
    assert_eq!(s2.removed, ["bob"]);
    assert_eq!(st2.placements["cid"].slot, 2);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClassEvent::Removed { student, .. } if student == "bob"))
    );
    assert_eq!(hosts_of(&s1)["ann"], hosts_of(&s2)["ann"]);
    // The second up of ann's lab found everything done.
    let ann = ops.worlds.lock().expect("w")["ann"].clone();
    assert_eq!(ann.steps_run().len(), 3);
}

#[test]
fn a_second_class_command_is_refused_while_one_holds_the_class() {
    let f = Fixture::new();
    let class = f.class(&class_toml(r#"["ann"]"#, TWO_HOSTS));
    let held =
        crate::state::LabLock::acquire_dir(&ClassPaths::new(&class).state_dir).expect("first lock");
    let ops = Arc::new(FakeOps::default());
    let (r, _) = up(&class, &ops);
    assert!(
        matches!(r, Err(ClassError::Runner(RunnerError::Locked { .. }))),
        "{r:?}"
    );
    assert!(ops.worlds.lock().expect("w").is_empty(), "nothing started");
    drop(held);
    let (r, _) = up(&class, &ops);
    r.expect("class up once the other command is done");
}

#[test]
fn a_student_that_does_not_fit_fails_before_anything_starts() {
    let f = Fixture::new();
    let class = f.class(&class_toml(
        "3",
        "[[host]]\nname = \"h1\"\nuri = \"local\"\nmemory_mb = 3200\n",
    ));
    let ops = Arc::new(FakeOps::default());
    let (r, _) = up(&class, &ops);
    match r {
        Err(ClassError::Place(PlaceError::NoFit(v))) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].student, "s03");
            assert_eq!(v[0].shortfall_mb, 1300);
        }
        other => panic!("{other:?}"),
    }
    assert!(ops.worlds.lock().expect("w").is_empty(), "nothing started");
    assert!(f.state().is_none(), "nothing recorded");
}

#[test]
fn a_host_without_memory_is_measured_once_and_recorded() {
    let f = Fixture::new();
    let class = f.class(&class_toml(
        r#"["ann"]"#,
        "[[host]]\nname = \"h1\"\nuri = \"local\"\n",
    ));
    let ops = Arc::new(FakeOps {
        measured: [("h1".to_string(), 2000)].into(),
        ..FakeOps::default()
    });
    up(&class, &ops).0.expect("up");
    assert_eq!(f.state().expect("state").measured_mb["h1"], 2000);
    // Measured capacity is not taken again (the running lab would shrink it).
    let ops2 = Arc::new(FakeOps::default());
    let (r, _) = up(&class, &ops2);
    r.expect("recorded capacity used");
    // A host that cannot be measured is an error naming it.
    let f = Fixture::new();
    let class = f.class(&class_toml(
        r#"["ann"]"#,
        "[[host]]\nname = \"h9\"\nuri = \"local\"\n",
    ));
    let (r, _) = up(&class, &Arc::new(FakeOps::default()));
    assert!(
        matches!(r, Err(ClassError::Capacity { ref host, .. }) if host == "h9"),
        "{r:?}"
    );
}

#[test]
fn status_reset_of_some_students_and_destroy() {
    let f = Fixture::new();
    let class = f.class(&class_toml(r#"["ann", "bob", "cid"]"#, TWO_HOSTS));
    let ops = Arc::new(FakeOps::default());
    up(&class, &ops).0.expect("up");

    let rows = class_status_with(&class, &*ops).expect("status");
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.state == ClassNodeState::Running),
        "{rows:?}"
    );
    let bob_m = rows
        .iter()
        .find(|r| r.student == "bob" && r.node == "m")
        .expect("bob's m");
    // The port is the generated lab's (61010 + 92) unless it was taken on this machine just
    // then: the runner moves a taken port (the fake driver binds nothing, so only the
    // generated lab's ports are checked exactly, in the first test).
    assert!(bob_m.ssh.starts_with("127.0.0.1:"), "{}", bob_m.ssh);
    assert_eq!(bob_m.lab, "c-bob");

    // Reset bob only: his nodes are restored from the golden snapshot, the others untouched.
    let (class2, ops2) = (class.clone(), ops.clone());
    let s = within(move || {
        class_reset_with(
            &class2,
            &["bob".to_string()],
            &ClassOptions::default(),
            Arc::new(ClassCollect::default()),
            Arc::new(AtomicBool::new(false)),
            &*ops2,
        )
    })
    .expect("reset");
    assert_eq!(s.labs.len(), 1);
    assert!(s.failed().is_empty(), "{s:?}");
    let restored = |st: &str| {
        ops.worlds.lock().expect("w")[st]
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Snapshot { op, .. } if op.starts_with("Restore")))
            .count()
    };
    assert_eq!(restored("bob"), 2);
    assert_eq!((restored("ann"), restored("cid")), (0, 0));
    let unknown = class_reset_with(
        &class,
        &["zed".to_string()],
        &ClassOptions::default(),
        Arc::new(ClassCollect::default()),
        Arc::new(AtomicBool::new(false)),
        &*ops,
    );
    assert!(matches!(unknown, Err(ClassError::UnknownStudent { ref name, .. }) if name == "zed"));

    // Destroy: every machine gone, every lab directory and the placements removed.
    let s = class_destroy_with(&class, Arc::new(ClassCollect::default()), &*ops).expect("destroy");
    assert!(s.failed().is_empty(), "{s:?}");
    for st in ["ann", "bob", "cid"] {
        let w = ops.worlds.lock().expect("w")[st].clone();
        assert_eq!(w.status("m"), MachineStatus::NotCreated, "{st}");
    }
    assert!(f.state().is_none());
    assert!(!f.dir.path().join("class/.labctl").exists());
    let rows = class_status_with(&class, &*ops).expect("status");
    assert!(
        rows.iter().all(|r| r.state == ClassNodeState::NotPlaced),
        "{rows:?}"
    );
}

#[test]
fn ports_that_would_pass_65535_are_refused() {
    let f = Fixture::new();
    let class = f.class(&class_toml(r#"["ann"]"#, TWO_HOSTS));
    let (base, _) = base_lab(&class, &ClassOptions::default()).expect("base");
    let err = student_lab_toml(
        &class,
        &base,
        "ann",
        &Placement {
            host: "h1".into(),
            slot: 60,
        },
    )
    .expect_err("too high");
    assert_eq!(
        err.to_string(),
        "ann's lab would use host ports up to 66621 (its slot 60 × 92 ports above the lab's), above 65535"
    );
}

#[test]
fn meminfo() {
    assert_eq!(
        mem_available_mb("MemTotal: 8000000 kB\nMemAvailable:    2048000 kB\n"),
        Some(2000)
    );
    assert_eq!(mem_available_mb("MemTotal: 1 kB\n"), None);
}
