//! The scheduler of `up`/`provision` against the in-memory driver and guest of
//! [`crate::testing`]: seconds, no QEMU, no SSH.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use labctl_driver::MachineStatus;
use labctl_spec::{Lab, Overrides};

use crate::events::{
    Collect, DepCause, Event, EventKind, Notice, SkipReason, Staleness, StepOutcome,
};
use crate::testing::{Act, Call, FakeConnect, FakeDriver, Trigger, World};
use crate::up::{Selection, UpOptions, UpSummary, up_with};
use crate::{Env, RunnerError};

/// A master publishing `join_command`, `workers` workers joining with it.
pub(crate) fn lab_toml(workers: u32, extra_master: &str) -> String {
    format!(
        r#"[lab]
name = "t"
os = "debian"
workers = {workers}
templates = "t"

[vars]
greeting = "hello"

[[network]]
name = "private"
cidr = "192.168.1.0/24"

[role.master]
hostname = "m"
ip = "192.168.1.10"
ssh_port = 61010

[[role.master.step]]
template = "prep.sh.hbs"
args = ["{{{{vars.greeting}}}}"]

[[role.master.step]]
template = "init.sh.hbs"
publish = ["join_command"]
{extra_master}
[role.worker]
hostname = "w{{i}}"
scale = true
ip = "192.168.1.101"
ssh_port = 61101

[[role.worker.step]]
template = "prep.sh.hbs"

[[role.worker.step]]
template = "join.sh.hbs"
after = ["master.init"]
"#
    )
}

pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) env: Env,
    pub(crate) world: Arc<World>,
}

impl Fixture {
    pub(crate) fn new(toml: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let lab_dir = root.join("lab");
        std::fs::create_dir_all(lab_dir.join("t")).expect("mkdir");
        for (f, text) in [
            ("prep.sh.hbs", "#!/bin/sh\necho prep \"$@\"\n"),
            ("init.sh.hbs", "#!/bin/sh\necho init\n"),
            (
                "join.sh.hbs",
                "#!/bin/sh\njoin={{sh values.join_command}}\n",
            ),
        ] {
            std::fs::write(lab_dir.join("t").join(f), text).expect("template");
        }
        std::fs::write(lab_dir.join("lab.toml"), toml).expect("lab.toml");
        let box_dir = root.join("home/boxes/labctl--debian-12");
        std::fs::create_dir_all(&box_dir).expect("mkdir");
        std::fs::write(
            box_dir.join("box.json"),
            r#"{"name":"labctl/debian-12","source":"test","sha256":"","size":0,"added_at":0,
               "disk":"disk.qcow2","user":"labctl","os":"debian"}"#,
        )
        .expect("box.json");
        let env = Env {
            data_dir: root.join("home"),
            cache_dir: root.join("cache"),
            switch_command: Vec::new(),
            uri: None,
            relay_command: Vec::new(),
            bundle_server_command: Vec::new(),
        };
        Fixture {
            dir,
            env,
            world: Arc::new(World::default()),
        }
    }

    fn lab(&self) -> Lab {
        labctl_spec::load(&self.dir.path().join("lab/lab.toml"), Overrides::default())
            .expect("test lab loads")
    }

    fn set_lab(&self, toml: &str) {
        std::fs::write(self.dir.path().join("lab/lab.toml"), toml).expect("lab.toml");
    }

    /// `up` with the fakes; fails the test instead of hanging.
    pub(crate) fn up(&self, opts: UpOptions) -> (UpSummary, Vec<Event>) {
        self.up_cancel(opts, Arc::new(AtomicBool::new(false)))
    }

    fn up_cancel(&self, opts: UpOptions, cancel: Arc<AtomicBool>) -> (UpSummary, Vec<Event>) {
        let (summary, events) = self.try_up(opts, cancel);
        (summary.expect("up runs"), events)
    }

    pub(crate) fn try_up(
        &self,
        opts: UpOptions,
        cancel: Arc<AtomicBool>,
    ) -> (Result<UpSummary, RunnerError>, Vec<Event>) {
        let lab = self.lab();
        let env = self.env.clone();
        let world = self.world.clone();
        let reporter = Arc::new(Collect::default());
        let r2 = reporter.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let driver: Arc<dyn labctl_driver::Driver> = Arc::new(FakeDriver(world.clone()));
            let got = up_with(
                &lab,
                &env,
                &opts,
                r2,
                cancel,
                &|_, _| Ok(driver.clone()),
                &FakeConnect(world),
            );
            let _ = tx.send(got);
        });
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("up finished within 20 s (no deadlock)");
        let events = reporter.0.lock().expect("events").clone();
        (got, events)
    }
}

fn outcome<'a>(s: &'a UpSummary, node: &str, step: &str) -> &'a StepOutcome {
    let n = s
        .nodes
        .iter()
        .find(|n| n.name == node)
        .unwrap_or_else(|| panic!("no summary for {node}: {s:?}"));
    n.steps
        .iter()
        .find(|s| s.name == step)
        .map(|s| &s.outcome)
        .unwrap_or_else(|| panic!("no outcome for {node}.{step}: {n:?}"))
}

fn skipped_because(o: &StepOutcome, why: impl Fn(&SkipReason) -> bool) -> bool {
    matches!(o, StepOutcome::Skipped { reason } if why(reason))
}

/// Skipped because `task` (`node.step`) failed.
fn failed_dep(task: &str) -> impl Fn(&SkipReason) -> bool {
    move |r| {
        *r == SkipReason::Dependency {
            task: task.into(),
            cause: DepCause::Failed,
        }
    }
}

fn publishes(v: &str) -> Act {
    Act::Ok(vec![("join_command".into(), v.into())])
}

#[test]
fn a_full_up_runs_every_step_in_order_and_values_flow_master_to_workers() {
    let f = Fixture::new(&lab_toml(2, ""));
    f.world
        .act("m", "init", publishes("kubeadm join 10.0.0.1 --token abc"));
    let (s, _) = f.up(UpOptions::default());
    assert!(!s.failed(), "{s:?}");
    for node in ["m", "w1", "w2"] {
        assert_eq!(f.world.status(node), MachineStatus::Running { pid: 1 });
        assert_eq!(outcome(&s, node, "prep"), &StepOutcome::Done);
        assert_eq!(
            outcome(&s, node, if node == "m" { "init" } else { "join" }),
            &StepOutcome::Done
        );
    }
    let ran = f.world.steps_run();
    let pos = |x: &str| ran.iter().position(|r| r == x).expect(x);
    assert!(pos("m.init") < pos("w1.join") && pos("m.init") < pos("w2.join"));
    assert!(pos("m.prep") < pos("m.init"), "a node's steps run in order");
    // The worker's rendered join script carries the master's published value.
    let join = f
        .world
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::Upload {
                node,
                path,
                content,
            } if node == "w2" && path.ends_with("-join.sh") => Some(content),
            _ => None,
        })
        .expect("w2's join script uploaded");
    assert!(join.contains("kubeadm join 10.0.0.1 --token abc"), "{join}");
    let values =
        crate::state::load_values(&crate::state::LabPaths::new(&f.dir.path().join("lab"), "t"));
    assert_eq!(
        values.get("join_command").map(String::as_str),
        Some("kubeadm join 10.0.0.1 --token abc")
    );
}

#[test]
fn a_step_killed_by_a_signal_fails_and_is_not_recorded() {
    let f = Fixture::new(&lab_toml(1, ""));
    f.world.act("m", "init", Act::Killed("KILL"));
    let (s, _) = f.up(UpOptions::default());
    assert!(s.failed());
    match outcome(&s, "m", "init") {
        StepOutcome::Failed { status, reason, .. } => {
            assert_eq!(*status, Some(137));
            assert!(reason.contains("killed by signal KILL"), "{reason}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(skipped_because(
        outcome(&s, "w1", "join"),
        failed_dep("m.init")
    ));
}

#[test]
fn a_failure_stops_only_its_dependants() {
    let f = Fixture::new(&lab_toml(2, ""));
    f.world.act("m", "init", Act::Fail(3));
    let (s, _) = f.up(UpOptions::default());
    assert!(s.failed());
    assert!(matches!(
        outcome(&s, "m", "init"),
        StepOutcome::Failed {
            status: Some(3),
            ..
        }
    ));
    for w in ["w1", "w2"] {
        // Independent steps of other nodes still run; the ones after master.init do not.
        assert_eq!(outcome(&s, w, "prep"), &StepOutcome::Done);
        assert!(
            skipped_because(outcome(&s, w, "join"), failed_dep("m.init")),
            "{:?}",
            outcome(&s, w, "join")
        );
    }
    assert!(!f.world.steps_run().iter().any(|r| r.ends_with(".join")));
    // A failed step is not recorded, so the next `up` runs it again.
    f.world.act("m", "init", publishes("j"));
    let (s, _) = f.up(UpOptions::default());
    assert!(!s.failed(), "{s:?}");
    assert_eq!(outcome(&s, "m", "init"), &StepOutcome::Done);
    assert_eq!(outcome(&s, "m", "prep"), &StepOutcome::UpToDate);
    assert_eq!(outcome(&s, "w1", "join"), &StepOutcome::Done);
}

#[test]
fn a_vm_that_dies_under_a_step_fails_with_its_console() {
    let f = Fixture::new(&lab_toml(1, ""));
    f.world.act("m", "init", Act::Die);
    let (s, _) = f.up(UpOptions::default());
    match outcome(&s, "m", "init") {
        StepOutcome::Failed { reason, tail, .. } => {
            assert!(reason.contains("no longer running"), "{reason}");
            assert_eq!(tail, "fake console of m");
        }
        o => panic!("{o:?}"),
    }
    assert!(skipped_because(
        outcome(&s, "w1", "join"),
        failed_dep("m.init")
    ));
}

#[test]
fn jobs_bounds_how_many_steps_run_at_once() {
    let f = Fixture::new(&lab_toml(4, ""));
    f.world.step_delay(Duration::from_millis(150));
    f.world.act("m", "init", publishes("j"));
    let (s, _) = f.up(UpOptions {
        jobs: Some(2),
        ..UpOptions::default()
    });
    assert!(!s.failed(), "{s:?}");
    assert_eq!(f.world.max_running(), 2, "--jobs 2: at most two at once");
    assert_eq!(f.world.steps_run().len(), 10);

    let g = Fixture::new(&lab_toml(4, ""));
    g.world.step_delay(Duration::from_millis(150));
    g.world.act("m", "init", publishes("j"));
    let (s, _) = g.up(UpOptions::default());
    assert!(!s.failed(), "{s:?}");
    assert!(
        g.world.max_running() > 2,
        "no --jobs: the five prep steps overlap"
    );
}

#[test]
fn node_selection_brings_up_only_the_chosen_nodes() {
    let f = Fixture::new(&lab_toml(2, ""));
    let (s, _) = f.up(UpOptions {
        nodes: vec!["w1".into()],
        ..UpOptions::default()
    });
    assert_eq!(s.nodes.len(), 1);
    assert_eq!(f.world.status("w1"), MachineStatus::Running { pid: 1 });
    assert_eq!(f.world.status("m"), MachineStatus::NotCreated);
    assert_eq!(f.world.status("w2"), MachineStatus::NotCreated);
    assert_eq!(outcome(&s, "w1", "prep"), &StepOutcome::Done);
    assert!(
        skipped_because(outcome(&s, "w1", "join"), |r| matches!(
            r,
            SkipReason::Dependency { cause: DepCause::NotInRun { node }, .. } if node == "m"
        )),
        "{:?}",
        outcome(&s, "w1", "join")
    );
    assert_eq!(f.world.steps_run(), vec!["w1.prep".to_string()]);

    // An unknown node is refused before anything starts.
    let (r, _) = f.try_up(
        UpOptions {
            nodes: vec!["nope".into()],
            ..UpOptions::default()
        },
        Arc::new(AtomicBool::new(false)),
    );
    assert!(matches!(r, Err(RunnerError::UnknownNode { .. })));
}

#[test]
fn provision_step_and_from_select_steps() {
    let f = Fixture::new(&lab_toml(1, ""));
    f.world.act("m", "init", publishes("j"));
    let (s, _) = f.up(UpOptions::default());
    assert!(!s.failed(), "{s:?}");
    let before = f.world.steps_run().len();
    let (s, _) = f.up(UpOptions {
        selection: Selection::Step("init".into()),
        ..UpOptions::default()
    });
    assert!(!s.failed(), "{s:?}");
    assert_eq!(f.world.steps_run()[before..], ["m.init".to_string()]);
    let before = f.world.steps_run().len();
    f.up(UpOptions {
        nodes: vec!["w1".into()],
        selection: Selection::From("prep".into()),
        ..UpOptions::default()
    });
    assert_eq!(
        f.world.steps_run()[before..],
        ["w1.prep".to_string(), "w1.join".to_string()]
    );
}

#[test]
fn a_step_reruns_when_its_content_changes_and_not_otherwise() {
    let f = Fixture::new(&lab_toml(1, ""));
    f.world.act("m", "init", publishes("j"));
    f.up(UpOptions::default());
    let first = f.world.steps_run().len();
    assert_eq!(first, 4);
    let (s, _) = f.up(UpOptions::default());
    assert_eq!(
        f.world.steps_run().len(),
        first,
        "nothing changed: nothing runs"
    );
    assert_eq!(outcome(&s, "m", "prep"), &StepOutcome::UpToDate);
    assert_eq!(outcome(&s, "w1", "join"), &StepOutcome::UpToDate);
    // The master's prep step renders `vars.greeting` into its arguments.
    f.set_lab(&lab_toml(1, "").replace("greeting = \"hello\"", "greeting = \"hi\""));
    let (s, _) = f.up(UpOptions::default());
    assert_eq!(f.world.steps_run()[first..], ["m.prep".to_string()]);
    assert_eq!(outcome(&s, "m", "prep"), &StepOutcome::Done);
    assert_eq!(outcome(&s, "m", "init"), &StepOutcome::UpToDate);
    // A new published value changes what the worker's join renders to: it runs again.
    f.world.act("m", "init", publishes("j2"));
    let before = f.world.steps_run().len();
    f.up(UpOptions {
        selection: Selection::Step("init".into()),
        nodes: vec!["m".into()],
        ..UpOptions::default()
    });
    f.up(UpOptions::default());
    assert_eq!(
        f.world.steps_run()[before..],
        ["m.init".to_string(), "w1.join".to_string()]
    );
}

#[test]
fn a_taken_port_is_moved_and_the_start_retried() {
    let f = Fixture::new(&lab_toml(1, ""));
    f.world.port_in_use("w1", 1);
    f.world.act("m", "init", publishes("j"));
    let (s, events) = f.up(UpOptions::default());
    assert!(!s.failed(), "{s:?}");
    let starts: Vec<u16> = f
        .world
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Start { node, ssh_port } if node == "w1" => Some(ssh_port),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_ne!(starts[0], starts[1]);
    assert!(events.iter().any(|e| e.node.as_deref() == Some("w1")
        && e.kind
            == EventKind::Notice {
                notice: Notice::PortTaken {
                    port: starts[0],
                    new: starts[1]
                }
            }));
    // The new port is recorded.
    let st =
        crate::state::LabState::load(&crate::state::LabPaths::new(&f.dir.path().join("lab"), "t"))
            .expect("state")
            .expect("saved");
    assert_eq!(st.nodes["w1"].machine.ssh.host, starts[1]);

    // A port that stays taken fails the node after three moves; the other node goes on.
    let g = Fixture::new(&lab_toml(1, ""));
    g.world.port_in_use("w1", 10);
    let (s, _) = g.up(UpOptions::default());
    let w1 = s.nodes.iter().find(|n| n.name == "w1").expect("w1");
    assert!(
        w1.error.as_deref().is_some_and(|e| e.contains("in use")),
        "{w1:?}"
    );
    assert_eq!(outcome(&s, "m", "prep"), &StepOutcome::Done);
}

#[test]
fn golden_snapshot_after_a_complete_clean_up_only() {
    let f = Fixture::new(&lab_toml(1, ""));
    f.world.act("m", "init", Act::Fail(1));
    f.up(UpOptions::default());
    assert!(f.world.snapshots("m").is_empty(), "a failed up saves none");
    f.world.act("m", "init", publishes("j"));
    // Only some nodes: the lab is not complete yet.
    let g = Fixture::new(&lab_toml(1, ""));
    g.up(UpOptions {
        nodes: vec!["m".into()],
        ..UpOptions::default()
    });
    assert!(
        g.world.snapshots("m").is_empty(),
        "a partial lab saves none"
    );
    // Complete and clean: every node is saved.
    f.up(UpOptions::default());
    for n in ["m", "w1"] {
        assert_eq!(f.world.snapshots(n), vec![crate::GOLDEN.to_string()]);
    }
    let saves = |w: &World| {
        w.calls()
            .iter()
            .filter(|c| matches!(c, Call::Snapshot { op, .. } if op.starts_with("Save")))
            .count()
    };
    let n = saves(&f.world);
    // Nothing changed: the snapshot is current, none is taken again.
    f.up(UpOptions::default());
    assert_eq!(saves(&f.world), n);
    // A step ran again (its content changed): the snapshot is taken again.
    f.set_lab(&lab_toml(1, "").replace("greeting = \"hello\"", "greeting = \"hi\""));
    f.up(UpOptions::default());
    assert_eq!(saves(&f.world), n + 2);
    // golden_snapshot = false: never.
    let h = Fixture::new(&lab_toml(1, "").replace(
        "templates = \"t\"",
        "templates = \"t\"\ngolden_snapshot = false",
    ));
    h.world.act("m", "init", publishes("j"));
    let (s, _) = h.up(UpOptions::default());
    assert!(!s.failed());
    assert_eq!(saves(&h.world), 0);
}

#[test]
fn ctrl_c_while_booting_stops_before_any_step() {
    let f = Fixture::new(&lab_toml(1, ""));
    let cancel = Arc::new(AtomicBool::new(false));
    f.world
        .cancel_on(Trigger::Start("m".into()), cancel.clone());
    let (s, _) = f.up_cancel(
        UpOptions {
            nodes: vec!["m".into()],
            ..UpOptions::default()
        },
        cancel,
    );
    assert!(s.interrupted);
    assert!(f.world.steps_run().is_empty());
    let m = &s.nodes[0];
    assert_eq!(m.error, None, "an interruption is not a node failure");
    assert!(!f.world.calls().contains(&Call::Login("m".into())));
}

#[test]
fn ctrl_c_during_a_step_records_nothing_and_skips_the_rest() {
    let f = Fixture::new(&lab_toml(1, ""));
    let cancel = Arc::new(AtomicBool::new(false));
    f.world.act("m", "init", Act::Hang);
    f.world
        .cancel_on(Trigger::Step("m".into(), "init".into()), cancel.clone());
    let (s, _) = f.up_cancel(UpOptions::default(), cancel);
    assert!(s.interrupted);
    assert!(skipped_because(outcome(&s, "m", "init"), |r| *r == SkipReason::Interrupted));
    // w1 is skipped at its join, or was itself still coming up when Ctrl-C came.
    let w1 = s.nodes.iter().find(|n| n.name == "w1").expect("w1");
    assert_eq!(w1.error, None);
    if w1.steps.iter().any(|s| s.name == "join") {
        assert!(skipped_because(outcome(&s, "w1", "join"), |r| match r {
            SkipReason::Interrupted => true,
            SkipReason::Dependency {
                cause: DepCause::Skipped { reason },
                ..
            } => **reason == SkipReason::Interrupted,
            _ => false,
        }));
    }
    assert!(!f.world.steps_run().contains(&"w1.join".to_string()));
    let st =
        crate::state::LabState::load(&crate::state::LabPaths::new(&f.dir.path().join("lab"), "t"))
            .expect("state")
            .expect("saved");
    assert!(st.nodes["m"].steps.contains_key("prep"));
    assert!(!st.nodes["m"].steps.contains_key("init"));
    assert!(f.world.snapshots("m").is_empty());
}

#[test]
fn ctrl_c_while_waiting_for_a_slot() {
    // --jobs 1: while m's prep holds the only slot, everything else waits; after Ctrl-C
    // nothing more starts.
    let f = Fixture::new(&lab_toml(2, ""));
    let cancel = Arc::new(AtomicBool::new(false));
    f.world.act("m", "prep", Act::Hang);
    f.world
        .cancel_on(Trigger::Step("m".into(), "prep".into()), cancel.clone());
    let (s, _) = f.up_cancel(
        UpOptions {
            jobs: Some(1),
            ..UpOptions::default()
        },
        cancel,
    );
    assert!(s.interrupted);
    let ran = f.world.steps_run();
    assert_eq!(ran.last().map(String::as_str), Some("m.prep"), "{ran:?}");
    assert!(s.nodes.iter().all(|n| n.error.is_none()), "{s:?}");
}

#[test]
fn a_node_thread_that_panics_fails_its_node_and_releases_dependants() {
    let f = Fixture::new(&lab_toml(2, ""));
    f.world.act("m", "init", Act::Panic);
    let (s, events) = f.up(UpOptions::default());
    assert!(s.failed());
    let m = s.nodes.iter().find(|n| n.name == "m").expect("m");
    assert!(
        m.error.as_deref().is_some_and(|e| e.contains("panicked")),
        "{m:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.node.as_deref() == Some("m")
                && matches!(e.kind, EventKind::NodeFailed { .. }))
    );
    for w in ["w1", "w2"] {
        assert_eq!(outcome(&s, w, "prep"), &StepOutcome::Done);
        assert!(
            skipped_because(outcome(&s, w, "join"), |r| matches!(
                r,
                SkipReason::Dependency { cause: DepCause::NodePanicked { node }, .. } if node == "m"
            )),
            "{:?}",
            outcome(&s, w, "join")
        );
    }
}

#[test]
fn a_step_whose_values_cannot_be_saved_is_not_done() {
    let f = Fixture::new(&lab_toml(1, ""));
    // values.json is a directory: writing the published values fails.
    std::fs::create_dir_all(f.dir.path().join("lab/.labctl/values.json/x")).expect("mkdir");
    f.world.act("m", "init", publishes("j"));
    let (s, _) = f.up(UpOptions::default());
    match outcome(&s, "m", "init") {
        StepOutcome::Failed { status, reason, .. } => {
            assert_eq!(*status, Some(0));
            assert!(reason.contains("could not be saved"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    assert!(skipped_because(
        outcome(&s, "w1", "join"),
        failed_dep("m.init")
    ));
    let st =
        crate::state::LabState::load(&crate::state::LabPaths::new(&f.dir.path().join("lab"), "t"))
            .expect("state")
            .expect("saved");
    assert!(st.nodes["m"].steps.contains_key("prep"));
    assert!(!st.nodes["m"].steps.contains_key("init"), "not recorded");
}

#[test]
fn a_skip_reason_is_passed_on_unchanged_to_the_dependants_of_the_skipped() {
    let f = Fixture::new(&lab_toml(1, ""));
    f.world.act("m", "prep", Act::Fail(1));
    let (s, _) = f.up(UpOptions::default());
    for (node, step) in [("m", "init"), ("w1", "join")] {
        assert_eq!(
            outcome(&s, node, step),
            &StepOutcome::Skipped {
                reason: SkipReason::Dependency {
                    task: "m.prep".into(),
                    cause: DepCause::Failed
                }
            }
        );
    }
    assert_eq!(outcome(&s, "w1", "prep"), &StepOutcome::Done);
}

/// `ttl` on a published value: a worker added after the value expired makes the publisher
/// run again first (with a notice), and joins with the new value; before that, nothing.
#[test]
fn an_expired_value_is_published_again_before_a_new_worker_uses_it() {
    let with_ttl = |workers| {
        lab_toml(workers, "").replace(
            "publish = [\"join_command\"]",
            "publish = [{ name = \"join_command\", ttl = \"23h\" }]",
        )
    };
    let f = Fixture::new(&with_ttl(1));
    f.world
        .act("m", "init", publishes("kubeadm join --token old"));
    let (s, _) = f.up(UpOptions::default());
    assert!(!s.failed(), "{s:?}");
    let first = f.world.steps_run().len();

    // An hour later, a second worker: the token is still good, init does not run again.
    f.set_lab(&with_ttl(2));
    let (s, events) = f.up(UpOptions::default());
    assert_eq!(outcome(&s, "m", "init"), &StepOutcome::UpToDate);
    assert_eq!(f.world.steps_run()[first..], ["w2.prep", "w2.join"]);
    assert!(!events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Notice {
            notice: Notice::StaleValue { .. }
        }
    )));

    // The token's record is 25 hours old: a third worker makes init run again first.
    let paths = crate::state::LabPaths::new(&f.dir.path().join("lab"), "t");
    let mut st = crate::state::LabState::load(&paths)
        .expect("state")
        .expect("saved");
    let rec = st
        .nodes
        .get_mut("m")
        .and_then(|n| n.steps.get_mut("init"))
        .expect("init record");
    rec.finished_at -= 25 * 3600;
    st.save(&paths).expect("save");
    f.world
        .act("m", "init", publishes("kubeadm join --token new"));
    f.set_lab(&with_ttl(3));
    let before = f.world.steps_run().len();
    let (s, events) = f.up(UpOptions::default());
    assert!(!s.failed(), "{s:?}");
    let ran = f.world.steps_run()[before..].to_vec();
    let pos = |x: &str| {
        ran.iter()
            .position(|r| r == x)
            .unwrap_or_else(|| panic!("{x}: {ran:?}"))
    };
    assert!(pos("m.init") < pos("w3.join"), "{ran:?}");
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::Notice { notice: Notice::StaleValue { value, why: Staleness::Expired { age, ttl }, step, .. } }
                if value == "join_command" && step == "init" && *ttl == 23 * 3600 && *age >= 25 * 3600)),
        "{events:?}"
    );
    let join = f
        .world
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Upload {
                node,
                path,
                content,
            } if node == "w3" && path.ends_with("-join.sh") => Some(content),
            _ => None,
        })
        .next_back()
        .expect("w3's join script uploaded");
    assert!(join.contains("kubeadm join --token new"), "{join}");
}

#[test]
fn a_step_that_exits_0_without_its_declared_values_fails() {
    let f = Fixture::new(&lab_toml(1, ""));
    // init declares `publish = ["join_command"]` but writes nothing.
    let (s, _) = f.up(UpOptions::default());
    match outcome(&s, "m", "init") {
        StepOutcome::Failed { status, reason, .. } => {
            assert_eq!(*status, Some(0));
            assert!(
                reason.contains("did not publish `join_command`"),
                "{reason}"
            );
        }
        o => panic!("{o:?}"),
    }
    assert!(skipped_because(
        outcome(&s, "w1", "join"),
        failed_dep("m.init")
    ));
}

#[test]
fn egress_and_run_never_steps_are_skipped_unless_asked_for() {
    let fetch = "\n[[role.master.step]]\nname = \"fetch\"\ntemplate = \"prep.sh.hbs\"\nneeds_egress = true\n";
    let f = Fixture::new(
        &lab_toml(1, fetch).replace("templates = \"t\"", "templates = \"t\"\negress = false"),
    );
    f.world.act("m", "init", publishes("j"));
    let (s, _) = f.up(UpOptions::default());
    assert!(
        skipped_because(outcome(&s, "m", "fetch"), |r| *r == SkipReason::NeedsEgress),
        "{:?}",
        outcome(&s, "m", "fetch")
    );
    assert_eq!(outcome(&s, "w1", "join"), &StepOutcome::Done);
    assert!(!f.world.steps_run().contains(&"m.fetch".to_string()));

    let manual =
        "\n[[role.master.step]]\nname = \"manual\"\ntemplate = \"prep.sh.hbs\"\nrun = \"never\"\n";
    let g = Fixture::new(&lab_toml(1, manual));
    g.world.act("m", "init", publishes("j"));
    let (s, _) = g.up(UpOptions::default());
    assert!(skipped_because(outcome(&s, "m", "manual"), |r| *r == SkipReason::OnRequest));
    assert!(!g.world.steps_run().contains(&"m.manual".to_string()));
    let (s, _) = g.up(UpOptions {
        nodes: vec!["m".into()],
        selection: Selection::Step("manual".into()),
        ..UpOptions::default()
    });
    assert_eq!(outcome(&s, "m", "manual"), &StepOutcome::Done);
    assert_eq!(
        g.world.steps_run().last().map(String::as_str),
        Some("m.manual")
    );
}

/// A bundle `cls` in the fixture's data directory holding set `runtime` complete for
/// debian-12 and set `kubernetes` incomplete; the server command is a shell stand-in that
/// writes a port to its `--port-file` and waits.
fn with_bundle(f: &mut Fixture) {
    let b = f.env.data_dir.join("bundles/cls");
    std::fs::create_dir_all(&b).expect("mkdir");
    std::fs::write(
        b.join("manifest.json"),
        r#"{"schema":1,"name":"cls","created":"2026-12-02T00:00:00Z",
            "os":[{"family":"debian","release":"12","suite":"bookworm","arch":"amd64","repo":"apt/debian-12"}],
            "sets":{"runtime":{"debian-12":{"complete":true,"packages":["containerd"],"missing":[]}},
                    "kubernetes":{"debian-12":{"complete":false,"packages":[],
                        "missing":[{"name":"kubeadm","reason":"not fetched: pkgs.k8s.io unreachable"}]}}},
            "images":[{"ref":"registry.example.invalid/labctl/marker:1","digest":"sha256:00","media_type":"application/vnd.oci.image.manifest.v1+json"}],
            "files":{}}"#,
    )
    .expect("manifest");
    std::fs::write(
        b.join("key.asc"),
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n",
    )
    .expect("key");
    f.env.bundle_server_command = vec![
        "/bin/sh".into(),
        "-c".into(),
        "printf 41999 > \"$4\"; while :; do sleep 1; done".into(),
        "labctl-test-bundle-server".into(),
    ];
}

#[test]
fn with_egress_off_a_step_runs_when_the_bundle_holds_its_package_set_and_is_skipped_naming_what_is_missing()
 {
    let sets = "\n[[role.master.step]]\nname = \"runtime\"\ntemplate = \"bundle.sh.hbs\"\nneeds_egress = true\npackages = \"runtime\"\n\
                \n[[role.master.step]]\nname = \"k8s\"\ntemplate = \"prep.sh.hbs\"\nneeds_egress = true\npackages = \"kubernetes\"\n\
                \n[[role.master.step]]\nname = \"after_k8s\"\ntemplate = \"prep.sh.hbs\"\nafter = [\"master.k8s\"]\n";
    let toml = lab_toml(1, sets).replace(
        "templates = \"t\"",
        "templates = \"t\"\negress = false\nbundle = \"cls\"",
    ) + "\n[[package_set]]\nname = \"runtime\"\ndebian = [\"containerd\", \"runc\"]\n\n[[package_set]]\nname = \"kubernetes\"\ndebian = [\"kubeadm\"]\n";
    let mut f = Fixture::new(&toml);
    std::fs::write(
        f.dir.path().join("lab/t/bundle.sh.hbs"),
        "#!/bin/sh\n# {{bundle.attached}} {{bundle.apt_line}} {{bundle.registry}}\n# {{#each bundle.registries}}{{this.name}}={{this.server}}{{/each}} {{#each packages.runtime}}{{this}},{{/each}}\n",
    )
    .expect("template");
    with_bundle(&mut f);
    f.world.act("m", "init", publishes("j"));
    let (s, _) = f.up(UpOptions::default());

    // The runtime set is in the bundle: the step ran, rendered with the bundle's values.
    assert_eq!(outcome(&s, "m", "runtime"), &StepOutcome::Done);
    let script = f
        .world
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::Upload { path, content, .. } if path.contains("runtime") => Some(content),
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        script.contains("# true deb [signed-by=/etc/apt/keyrings/labctl-bundle.asc] http://10.0.2.100/b/cls/apt/debian-12 labctl main http://10.0.2.100/b/cls/v2"),
        "{script}"
    );
    assert!(
        script
            .contains("registry.example.invalid=https://registry.example.invalid containerd,runc,"),
        "{script}"
    );
    // The kubernetes set is not: skipped, typed, with what is missing; its dependant too.
    match outcome(&s, "m", "k8s") {
        StepOutcome::NotInBundle { set, bundle, cause } => {
            assert_eq!((set.as_str(), bundle.as_str()), ("kubernetes", "cls"));
            assert_eq!(
                cause,
                &crate::bundle::NotCovered::Missing {
                    os: "debian-12".into(),
                    missing: vec![crate::bundle::MissingItem {
                        name: "kubeadm".into(),
                        reason: "not fetched: pkgs.k8s.io unreachable".into()
                    }]
                }
            );
        }
        other => panic!("k8s: {other:?}"),
    }
    assert!(skipped_because(
        outcome(&s, "m", "after_k8s"),
        |r| matches!(
            r,
            SkipReason::Dependency { task, cause: DepCause::NotInBundle { set, .. } }
                if task == "m.k8s" && set == "kubernetes"
        )
    ));
    assert!(!f.world.steps_run().contains(&"m.k8s".to_string()));

    // Every machine reaches the server, which runs once, with the lab as its user.
    let state =
        std::fs::read_to_string(f.dir.path().join("lab/.labctl/state.json")).expect("state");
    assert!(state.contains("\"host_port\": 41999"), "{state}");
    let (pid, port, users) = crate::bundle::server(&f.env).expect("the server runs");
    assert_eq!((port, users.len()), (41999, 1));

    // Destroying the lab (its last user) stops it.
    let driver: Arc<dyn labctl_driver::Driver> = Arc::new(FakeDriver(f.world.clone()));
    crate::ops::destroy_with(
        &crate::state::LabPaths::new(&f.dir.path().join("lab"), "t"),
        &f.env,
        &[],
        Arc::new(Collect::default()),
        &|_, _| Ok(driver.clone()),
    )
    .expect("destroy");
    assert!(crate::bundle::server(&f.env).is_none());
    assert!(labctl_driver::proc::wait_gone(
        pid,
        std::time::Duration::from_secs(5)
    ));
}
