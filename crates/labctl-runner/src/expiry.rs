//! Published values that expire (`publish = [{ name = "join_command", ttl = "23h" }]`).
//!
//! A value's age is the age of the publishing step's record (`finished_at`): the value was
//! stored when that step succeeded. Before `up` or `provision` starts, every step that is
//! about to run and reads a value that is missing or older than its ttl gets the
//! publisher run again first: the publisher is added to the forced steps, its node to the
//! run, and the consumer waits for it through `after` as always.

use std::collections::BTreeMap;

use labctl_spec::{Graph, Lab, Renderer, RunPolicy};

use crate::events::{Notice, Staleness as Why};
use crate::state::StepRecord;
use crate::up::{Selection, UpOptions};

/// A publisher step to run again before `consumer` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stale {
    pub node: String,
    pub step: String,
    pub value: String,
    pub why: Why,
    /// `node.step` of the first consumer that needs it.
    pub consumer: String,
}

impl Stale {
    /// What the user is told.
    pub(crate) fn notice(&self) -> Notice {
        Notice::StaleValue {
            value: self.value.clone(),
            why: self.why.clone(),
            consumer: self.consumer.clone(),
            step: self.step.clone(),
        }
    }
}

/// Whether a step of a node would run in this `up`/`provision`, given its record.
fn would_run(
    opts: &UpOptions,
    steps: &[labctl_spec::Step],
    idx: usize,
    node: &str,
    record: Option<&StepRecord>,
    hash: Option<&str>,
) -> bool {
    let step = &steps[idx];
    let forced = opts.force.contains(&(node.to_string(), step.name.clone()));
    match &opts.selection {
        Selection::Up => {
            forced
                || match step.run {
                    RunPolicy::Never => false,
                    RunPolicy::Always => true,
                    RunPolicy::Once => match (record, hash) {
                        (Some(r), Some(h)) => r.hash != h,
                        _ => true,
                    },
                }
        }
        Selection::Step(name) => step.name == *name || forced,
        Selection::From(name) => {
            forced
                || steps
                    .iter()
                    .position(|s| s.name == *name)
                    .is_some_and(|from| idx >= from)
        }
        Selection::All => true,
    }
}

/// The publishers that must run again before this run's consumers, at time `now` (seconds
/// since the epoch). `record(node, step)` is a step's record in the lab state.
pub(crate) fn stale_publishers(
    lab: &Lab,
    graph: &Graph,
    renderer: &Renderer,
    opts: &UpOptions,
    values: &BTreeMap<String, String>,
    record: &dyn Fn(&str, &str) -> Option<StepRecord>,
    now: u64,
) -> Vec<Stale> {
    let mut out: Vec<Stale> = Vec::new();
    for (t, task) in graph.tasks.iter().enumerate() {
        let node = &lab.nodes[task.node];
        if !opts.nodes.is_empty() && !opts.nodes.contains(&node.name) {
            continue;
        }
        let steps = lab.steps_of(node);
        let step = &steps[task.step];
        let rendered = renderer.render_step(lab, node, step, values).ok();
        let own = record(&node.name, &step.name);
        if !would_run(
            opts,
            steps,
            task.step,
            &node.name,
            own.as_ref(),
            rendered.as_ref().map(|r| r.hash.as_str()),
        ) {
            continue;
        }
        for a in graph.ancestors(t) {
            let pnode = &lab.nodes[graph.tasks[a].node];
            let pstep = &lab.steps_of(pnode)[graph.tasks[a].step];
            // A publisher that has not run yet runs anyway, with fresh values.
            let Some(precord) = record(&pnode.name, &pstep.name) else {
                continue;
            };
            for name in &pstep.publish {
                if out
                    .iter()
                    .any(|s| s.node == pnode.name && s.step == pstep.name)
                {
                    break;
                }
                let why = if !values.contains_key(name) {
                    Why::Missing
                } else if let Some(ttl) = pstep.ttl.get(name) {
                    let age = now.saturating_sub(precord.finished_at);
                    if age < ttl.as_secs() {
                        continue;
                    }
                    Why::Expired {
                        age,
                        ttl: ttl.as_secs(),
                    }
                } else {
                    continue;
                };
                // Only a value the consumer reads: without it, its template does not render.
                let mut without = values.clone();
                without.remove(name);
                if renderer.render_step(lab, node, step, &without).is_ok() {
                    continue;
                }
                out.push(Stale {
                    node: pnode.name.clone(),
                    step: pstep.name.clone(),
                    value: name.clone(),
                    why,
                    consumer: format!("{}.{}", node.name, step.name),
                });
            }
        }
    }
    out
}

/// `opts` with the stale publishers forced and their nodes in the run.
pub(crate) fn with_refresh(opts: &UpOptions, stale: &[Stale]) -> UpOptions {
    let mut o = opts.clone();
    for s in stale {
        o.force.insert((s.node.clone(), s.step.clone()));
        if !o.nodes.is_empty() && !o.nodes.contains(&s.node) {
            o.nodes.push(s.node.clone());
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use labctl_spec::Overrides;
    use std::path::Path;

    const HOUR: u64 = 3600;
    const NOW: u64 = 1_000_000_000;

    fn lab(name: &str, workers: u32) -> Lab {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../labs")
            .join(name)
            .join("lab.toml");
        labctl_spec::load(
            &file,
            Overrides {
                workers: Some(workers),
                no_egress: false,
                ..Overrides::default()
            },
        )
        .expect("bundled lab loads")
    }

    /// Records as a first `up` with `workers` workers leaves them, `age` seconds ago, with
    /// the hashes of a render with `values`.
    fn records(
        lab: &Lab,
        renderer: &Renderer,
        values: &BTreeMap<String, String>,
        nodes: &[&str],
        age: u64,
    ) -> BTreeMap<(String, String), StepRecord> {
        let mut out = BTreeMap::new();
        for node in lab
            .nodes
            .iter()
            .filter(|n| nodes.contains(&n.name.as_str()))
        {
            for step in lab.steps_of(node) {
                let hash = renderer
                    .render_step(lab, node, step, values)
                    .expect("render")
                    .hash;
                out.insert(
                    (node.name.clone(), step.name.clone()),
                    StepRecord {
                        hash,
                        finished_at: NOW - age,
                        duration_ms: 1,
                    },
                );
            }
        }
        out
    }

    fn stale_for(
        lab: &Lab,
        opts: &UpOptions,
        values: &BTreeMap<String, String>,
        recs: &BTreeMap<(String, String), StepRecord>,
    ) -> Vec<Stale> {
        let renderer = Renderer::new(lab).expect("renderer");
        let graph = Graph::build(lab);
        let get = |n: &str, s: &str| recs.get(&(n.to_string(), s.to_string())).cloned();
        stale_publishers(lab, &graph, &renderer, opts, values, &get, NOW)
    }

    fn join_values() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "join_command".to_string(),
            "kubeadm join m-k8s:6443 --token old.token --discovery-token-ca-cert-hash sha256:00"
                .to_string(),
        )])
    }

    #[test]
    fn a_new_worker_a_day_later_refreshes_the_join_command() {
        let values = join_values();
        let three = lab("k8s", 3);
        let renderer3 = Renderer::new(&three).expect("renderer");
        let recs = records(
            &three,
            &renderer3,
            &values,
            &["m-k8s", "w1-k8s", "w2-k8s", "w3-k8s"],
            25 * HOUR,
        );
        // `labctl up --workers 4`: w4-k8s has no record and reads join_command (25 h > 23 h).
        let four = lab("k8s", 4);
        let stale = stale_for(&four, &UpOptions::default(), &values, &recs);
        assert_eq!(stale.len(), 1, "{stale:?}");
        let s = &stale[0];
        assert_eq!(
            (s.node.as_str(), s.step.as_str()),
            ("m-k8s", "join_command")
        );
        assert_eq!(
            s.why,
            Why::Expired {
                age: 25 * HOUR,
                ttl: 23 * HOUR
            }
        );
        assert_eq!(s.consumer, "w4-k8s.work_nodes");
        let o = with_refresh(&UpOptions::default(), &stale);
        assert!(
            o.force
                .contains(&("m-k8s".to_string(), "join_command".to_string()))
        );

        // Only w4-k8s chosen: the master joins the run to refresh the value.
        let only_w4 = UpOptions {
            nodes: vec!["w4-k8s".into()],
            ..UpOptions::default()
        };
        let stale = stale_for(&four, &only_w4, &values, &recs);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].consumer, "w4-k8s.work_nodes");
        assert_eq!(with_refresh(&only_w4, &stale).nodes, ["w4-k8s", "m-k8s"]);
    }

    #[test]
    fn nothing_runs_again_while_the_value_is_young_or_nobody_needs_it() {
        let values = join_values();
        let three = lab("k8s", 3);
        let renderer = Renderer::new(&three).expect("renderer");
        let all = ["m-k8s", "w1-k8s", "w2-k8s", "w3-k8s"];
        // Scale-out an hour later: the token is still good.
        let young = records(&three, &renderer, &values, &all, HOUR);
        let four = lab("k8s", 4);
        assert_eq!(stale_for(&four, &UpOptions::default(), &values, &young), []);
        // A plain `up` a week later: every step is up to date, no consumer runs.
        let old = records(&three, &renderer, &values, &all, 7 * 24 * HOUR);
        assert_eq!(stale_for(&three, &UpOptions::default(), &values, &old), []);
    }

    #[test]
    fn a_lost_value_is_published_again() {
        let values = join_values();
        let three = lab("k8s", 3);
        let renderer = Renderer::new(&three).expect("renderer");
        let mut recs = records(
            &three,
            &renderer,
            &values,
            &["m-k8s", "w1-k8s", "w2-k8s"],
            HOUR,
        );
        recs.retain(|(n, _), _| n != "w3-k8s");
        let stale = stale_for(&three, &UpOptions::default(), &BTreeMap::new(), &recs);
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert_eq!(stale[0].why, Why::Missing);
        assert_eq!(stale[0].step, "join_command");
    }

    #[test]
    fn a_control_plane_rejoining_after_two_hours_gets_a_new_certificate_key() {
        let values = BTreeMap::from([
            (
                "join_command".to_string(),
                "kubeadm join lb-k8s:6443 --token a".to_string(),
            ),
            (
                "cp_join_command".to_string(),
                "kubeadm join lb-k8s:6443 --token a --control-plane --certificate-key b"
                    .to_string(),
            ),
        ]);
        let ha = lab("k8s-ha", 1);
        let renderer = Renderer::new(&ha).expect("renderer");
        let names: Vec<String> = ha.nodes.iter().map(|n| n.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut recs = records(&ha, &renderer, &values, &names, 3 * HOUR);
        // `labctl reset --rebuild cp2-k8s` cleared cp2's records.
        recs.retain(|(n, _), _| n != "cp2-k8s");
        let stale = stale_for(&ha, &UpOptions::default(), &values, &recs);
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert_eq!(stale[0].value, "cp_join_command");
        assert_eq!(stale[0].consumer, "cp2-k8s.cp_join");
        assert_eq!(
            stale[0].why,
            Why::Expired {
                age: 3 * HOUR,
                ttl: 6600
            }
        );
    }
}
