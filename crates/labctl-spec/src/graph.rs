//! The step graph: every (node, step) pair and what it waits for.

use std::collections::BTreeSet;

use crate::model::{Lab, RunPolicy};

/// One step on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Index into `Lab::nodes`.
    pub node: usize,
    /// Index into the node's role's steps.
    pub step: usize,
}

/// Tasks with their dependencies; indices into `tasks`.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub tasks: Vec<Task>,
    /// `deps[t]`: tasks that must succeed before task `t` starts.
    pub deps: Vec<Vec<usize>>,
}

/// A dependency cycle, as a list of task indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<usize>);

impl Graph {
    /// Build the graph for a lab. Unknown references are ignored here (validation reports them).
    pub fn build(lab: &Lab) -> Graph {
        let mut g = Graph::default();
        let mut first_task = Vec::with_capacity(lab.nodes.len());
        for (ni, node) in lab.nodes.iter().enumerate() {
            first_task.push(g.tasks.len());
            for si in 0..lab.steps_of(node).len() {
                g.tasks.push(Task { node: ni, step: si });
            }
        }
        g.deps = vec![Vec::new(); g.tasks.len()];
        for (ti, task) in g.tasks.iter().enumerate() {
            let node = &lab.nodes[task.node];
            let steps = lab.steps_of(node);
            let mut deps = BTreeSet::new();
            if task.step > 0 {
                deps.insert(ti - 1);
            }
            for r in &steps[task.step].after {
                for (oi, other) in lab.nodes.iter().enumerate() {
                    if other.role != r.role {
                        continue;
                    }
                    if let Some(si) = lab.steps_of(other).iter().position(|s| s.name == r.step) {
                        deps.insert(first_task[oi] + si);
                    }
                }
            }
            g.deps[ti] = deps.into_iter().collect();
        }
        g
    }

    /// Index of the task for a node and step name.
    pub fn find(&self, lab: &Lab, node: &str, step: &str) -> Option<usize> {
        self.tasks.iter().position(|t| {
            let n = &lab.nodes[t.node];
            n.name == node && lab.steps_of(n)[t.step].name == step
        })
    }

    /// Tasks in an order where every task comes after its dependencies, or a cycle.
    pub fn topo_order(&self) -> Result<Vec<usize>, Cycle> {
        let n = self.tasks.len();
        let mut indeg: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut users = vec![Vec::new(); n];
        for (t, ds) in self.deps.iter().enumerate() {
            for &d in ds {
                users[d].push(t);
            }
        }
        let mut ready: Vec<usize> = (0..n).filter(|&t| indeg[t] == 0).rev().collect();
        let mut order = Vec::with_capacity(n);
        while let Some(t) = ready.pop() {
            order.push(t);
            for &u in users[t].iter().rev() {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.push(u);
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        // Walk dependencies from any task left over until one repeats.
        let left: Vec<usize> = (0..n).filter(|&t| indeg[t] > 0).collect();
        let mut path = vec![left[0]];
        loop {
            let cur = *path.last().unwrap_or(&left[0]);
            let Some(&next) = self.deps[cur].iter().find(|d| indeg[**d] > 0) else {
                return Err(Cycle(path));
            };
            if let Some(pos) = path.iter().position(|&p| p == next) {
                let mut cycle = path[pos..].to_vec();
                cycle.reverse();
                return Err(Cycle(cycle));
            }
            path.push(next);
        }
    }

    /// Every task that depends on `t`, directly or not.
    pub fn dependents(&self, t: usize) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let mut stack = vec![t];
        while let Some(cur) = stack.pop() {
            for (u, ds) in self.deps.iter().enumerate() {
                if ds.contains(&cur) && out.insert(u) {
                    stack.push(u);
                }
            }
        }
        out
    }

    /// Every task `t` depends on, directly or not.
    pub fn ancestors(&self, t: usize) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let mut stack = vec![t];
        while let Some(cur) = stack.pop() {
            for &d in &self.deps[cur] {
                if out.insert(d) {
                    stack.push(d);
                }
            }
        }
        out
    }

    /// Human name of a task: `node.step`.
    pub fn label(&self, lab: &Lab, t: usize) -> String {
        let task = &self.tasks[t];
        let node = &lab.nodes[task.node];
        format!("{}.{}", node.name, lab.steps_of(node)[task.step].name)
    }

    /// Whether the task runs on a plain `up`.
    pub fn runs_on_up(&self, lab: &Lab, t: usize) -> bool {
        let task = &self.tasks[t];
        lab.steps_of(&lab.nodes[task.node])[task.step].run != RunPolicy::Never
    }
}
