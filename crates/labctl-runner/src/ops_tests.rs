//! `halt`, `destroy` and snapshots of several nodes against the in-memory driver: a failure
//! on some nodes reports every one of them, with its own typed error; the registry's writes
//! are not ignored.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use labctl_driver::exec::ToolError;
use labctl_driver::{Driver, DriverError, MachineStatus, SnapshotOp};

use crate::events::{Collect, EventKind, Notice};
use crate::state::{LabPaths, LabState};
use crate::testing::{Act, FakeDriver, Op};
use crate::up::UpOptions;
use crate::up_tests::{Fixture, lab_toml};
use crate::{NodeFailure, NodesOp, RunnerError};

/// A lab of three nodes (m, w1, w2), up.
fn three_up() -> (Fixture, LabPaths, Arc<dyn Driver>) {
    let f = Fixture::new(&lab_toml(2, ""));
    f.world.act(
        "m",
        "init",
        Act::Ok(vec![("join_command".into(), "join".into())]),
    );
    let (s, _) = f.up(UpOptions::default());
    assert!(!s.failed(), "{s:?}");
    let paths = LabPaths::new(&f.dir.path().join("lab"), "t");
    let driver: Arc<dyn Driver> = Arc::new(FakeDriver(f.world.clone()));
    (f, paths, driver)
}

/// The failed nodes with the exit status their tool reported.
fn failed(e: &RunnerError, want: NodesOp) -> Vec<(String, String)> {
    let RunnerError::Nodes {
        op,
        total,
        failures,
    } = e
    else {
        panic!("expected the nodes' errors, got {e:?}");
    };
    assert_eq!((*op, *total), (want, 3), "{e:?}");
    failures
        .iter()
        .map(|NodeFailure { node, error }| match error {
            RunnerError::Driver(DriverError::Tool(ToolError::Failed { status, .. })) => {
                (node.clone(), status.clone())
            }
            other => panic!("{node}: expected the driver's typed error, got {other:?}"),
        })
        .collect()
}

fn pair(node: &str, status: &str) -> (String, String) {
    (node.to_string(), status.to_string())
}

#[test]
fn halt_that_fails_on_two_of_three_nodes_reports_both_and_stops_the_third() {
    let (f, paths, driver) = three_up();
    f.world.fail("m", Op::Stop, 1);
    f.world.fail("w2", Op::Stop, 3);
    let e = crate::ops::halt_with(
        &paths,
        &f.env,
        &[],
        Duration::from_secs(1),
        Arc::new(Collect::default()),
        &|_, _| Ok(driver.clone()),
    )
    .expect_err("two nodes cannot be stopped");
    assert_eq!(
        failed(&e, NodesOp::Stop),
        [pair("m", "exit status: 1"), pair("w2", "exit status: 3")]
    );
    assert_eq!(f.world.status("w1"), MachineStatus::Stopped);
    assert_eq!(f.world.status("m"), MachineStatus::Running { pid: 1 });
    // The library's own text names both too (logs, class errors).
    let text = e.to_string();
    assert!(
        text.starts_with("stop failed on 2 of 3 nodes: m: "),
        "{text}"
    );
    assert!(text.contains("; w2: "), "{text}");
}

#[test]
fn destroy_that_fails_on_two_of_three_nodes_reports_both_and_keeps_their_records() {
    let (f, paths, driver) = three_up();
    f.world.fail("w1", Op::Destroy, 2);
    f.world.fail("w2", Op::Destroy, 2);
    let e = crate::ops::destroy_with(
        &paths,
        &f.env,
        &[],
        Arc::new(Collect::default()),
        &|_, _| Ok(driver.clone()),
    )
    .expect_err("two nodes cannot be destroyed");
    assert_eq!(
        failed(&e, NodesOp::Destroy),
        [pair("w1", "exit status: 2"), pair("w2", "exit status: 2")]
    );
    assert_eq!(f.world.status("m"), MachineStatus::NotCreated);
    // The nodes that are still there stay recorded, so `destroy` can be run again.
    let st = LabState::load(&paths).expect("load").expect("state kept");
    assert_eq!(st.nodes.keys().collect::<Vec<_>>(), ["w1", "w2"]);
    assert_eq!(crate::find_lab(&f.env, "t"), [paths.lab_dir()]);
}

#[test]
fn a_snapshot_that_fails_on_two_nodes_names_both_and_the_third_is_saved() {
    let (f, paths, driver) = three_up();
    f.world.fail("m", Op::Snapshot, 1);
    f.world.fail("w1", Op::Snapshot, 1);
    let st = LabState::load(&paths).expect("load").expect("state");
    let names: Vec<String> = st.nodes.keys().cloned().collect();
    let e = crate::reset::snapshot_locked(&*driver, &st, &names, &SnapshotOp::Save("s".into()))
        .expect_err("two nodes cannot be snapshotted");
    assert_eq!(
        failed(&e, NodesOp::Snapshot),
        [pair("m", "exit status: 1"), pair("w1", "exit status: 1")]
    );
    assert!(f.world.snapshots("w2").contains(&"s".to_string()));
}

#[test]
fn up_refuses_to_overwrite_a_corrupt_registry_of_labs() {
    let f = Fixture::new(&lab_toml(1, ""));
    let registry = f.env.data_dir.join("labs.json");
    std::fs::create_dir_all(&f.env.data_dir).expect("mkdir");
    std::fs::write(&registry, "{ not json").expect("write");
    let (got, _) = f.try_up(UpOptions::default(), Arc::new(AtomicBool::new(false)));
    assert!(
        matches!(got, Err(RunnerError::CorruptRegistry { ref path, .. }) if *path == registry),
        "{got:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&registry).expect("read"),
        "{ not json"
    );
    // Before any machine was made.
    assert_eq!(f.world.status("m"), MachineStatus::NotCreated);
}

#[test]
fn destroy_succeeds_with_a_notice_when_the_registry_cannot_be_written() {
    let (f, paths, driver) = three_up();
    // A directory where the file should be: neither readable nor replaceable.
    let registry = f.env.data_dir.join("labs.json");
    std::fs::remove_file(&registry).expect("registered by up");
    std::fs::create_dir(&registry).expect("mkdir");
    let reporter = Arc::new(Collect::default());
    crate::ops::destroy_with(&paths, &f.env, &[], reporter.clone(), &|_, _| {
        Ok(driver.clone())
    })
    .expect("the lab is destroyed");
    assert!(!paths.state_dir.exists());
    let events = reporter.0.lock().expect("events").clone();
    assert!(
        events.iter().any(|e| e.node.is_none()
            && matches!(
                &e.kind,
                EventKind::Notice {
                    notice: Notice::RegistryNotSaved { path, .. }
                } if *path == registry
            )),
        "{events:?}"
    );
}

#[test]
fn list_drops_a_lab_whose_state_is_gone_and_keeps_the_others() {
    let (f, paths, _) = three_up();
    let other = Fixture::new(&lab_toml(1, ""));
    let gone = other.dir.path().join("lab");
    crate::registry::register(&f.env, &LabPaths::new(&gone, "t"), "t").expect("register");
    let (labs, notice) = crate::list(&f.env);
    assert_eq!(notice, None);
    assert_eq!(
        labs.iter().map(|l| l.dir.clone()).collect::<Vec<_>>(),
        [paths.lab_dir()]
    );
    assert_eq!(crate::find_lab(&f.env, "t"), [paths.lab_dir()]);
}

#[test]
fn labs_registered_at_once_are_all_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let env = crate::Env {
        data_dir: dir.path().join("home"),
        cache_dir: dir.path().join("cache"),
        switch_command: Vec::new(),
        uri: None,
        relay_command: Vec::new(),
        bundle_server_command: Vec::new(),
    };
    let labs: Vec<LabPaths> = (0..16)
        .map(|i| LabPaths::new(&dir.path().join(format!("lab{i}")), &format!("l{i}")))
        .collect();
    std::thread::scope(|s| {
        for (i, p) in labs.iter().enumerate() {
            let env = &env;
            s.spawn(move || crate::registry::register(env, p, &format!("l{i}")).expect("register"));
        }
    });
    for (i, p) in labs.iter().enumerate() {
        assert_eq!(
            crate::find_lab(&env, &format!("l{i}")),
            [p.lab_dir()],
            "l{i}"
        );
    }
}
