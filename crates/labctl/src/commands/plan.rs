use labctl_spec::{Graph, Lab, StepSource};
use serde_json::json;

use crate::Result;
use crate::cli::PlanArgs;
use crate::errors::code;
use crate::output::Printer;

pub(crate) fn run(args: &PlanArgs, p: &Printer) -> Result<u8> {
    let lab = super::load_lab(&args.lab)?;
    let graph = Graph::build(&lab);
    let renderer = labctl_spec::Renderer::new(&lab).ok();
    let args_of = |node: &labctl_spec::Node, step: &labctl_spec::Step| {
        renderer
            .as_ref()
            .and_then(|r| r.render_args(&lab, node, step).ok())
            .unwrap_or_else(|| step.args.clone())
    };
    if args.json {
        let doc = crate::output::json::document("plan", plan_json(&lab, &graph, &args_of));
        p.out(crate::output::json::text(&doc));
    } else {
        for line in plan_text(&lab, &graph, &args_of) {
            p.out(line);
        }
    }
    Ok(code::OK)
}

fn source_name(src: &StepSource) -> String {
    match src {
        StepSource::Template(p) | StepSource::Script(p) => p
            .file_name()
            .map(|f| f.to_string_lossy().trim_end_matches(".hbs").to_string())
            .unwrap_or_default(),
    }
}

fn deps_of(lab: &Lab, g: &Graph, t: usize) -> Vec<String> {
    let task = &g.tasks[t];
    g.deps[t]
        .iter()
        .filter(|&&d| g.tasks[d].node != task.node)
        .map(|&d| g.label(lab, d))
        .collect()
}

pub(crate) fn plan_json(
    lab: &Lab,
    g: &Graph,
    args_of: &dyn Fn(&labctl_spec::Node, &labctl_spec::Step) -> Vec<String>,
) -> serde_json::Value {
    let nodes: Vec<_> = lab
        .nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.name, "role": n.role, "cpus": n.cpus, "memory_mb": n.memory_mb,
                "ssh_port": n.ssh_port,
                "ips": n.nics.iter().map(|nic| json!({"network": nic.network, "ip": nic.ip.to_string()})).collect::<Vec<_>>(),
                "forwards": n.forwards.iter().map(|f| json!({"guest": f.guest, "host": f.host})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let steps: Vec<_> = (0..g.tasks.len())
        .map(|t| {
            let task = &g.tasks[t];
            let node = &lab.nodes[task.node];
            let step = &lab.steps_of(node)[task.step];
            json!({
                "node": node.name, "step": step.name, "order": task.step + 1,
                "source": source_name(&step.source), "args": args_of(node, step), "run": step.run.as_str(),
                "needs_egress": step.needs_egress, "publish": step.publish,
                "ttl": step.ttl.iter().map(|(k, v)| (k.clone(), json!(v.as_secs()))).collect::<serde_json::Map<_, _>>(),
                "after": g.deps[t].iter().map(|&d| g.label(lab, d)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "lab": lab.name, "provider": lab.provider.as_str(), "box": lab.box_name, "workers": lab.workers,
        "egress": lab.egress,
        "networks": lab.networks.iter().map(|n| json!({"name": n.name, "cidr": n.cidr()})).collect::<Vec<_>>(),
        "nodes": nodes, "steps": steps,
    })
}

fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

pub(crate) fn plan_text(
    lab: &Lab,
    g: &Graph,
    args_of: &dyn Fn(&labctl_spec::Node, &labctl_spec::Step) -> Vec<String>,
) -> Vec<String> {
    let mut out = vec![format!(
        "lab {} ({}, box {}, {} node{}, egress {})",
        lab.name,
        lab.provider.as_str(),
        lab.box_name,
        lab.nodes.len(),
        if lab.nodes.len() == 1 { "" } else { "s" },
        if lab.egress { "on" } else { "off" },
    )];
    for n in &lab.networks {
        out.push(format!("network {} {} ({:?})", n.name, n.cidr(), n.kind).to_lowercase());
    }
    out.push(String::new());
    let mut rows = vec![vec![
        "NODE".to_string(),
        "ROLE".into(),
        "CPUS".into(),
        "MEMORY".into(),
        "IP".into(),
        "SSH".into(),
        "FORWARDS".into(),
    ]];
    for n in &lab.nodes {
        let ips: Vec<String> = n.nics.iter().map(|nic| nic.ip.to_string()).collect();
        let fwd: Vec<String> = n
            .forwards
            .iter()
            .map(|f| format!("{}->{}", f.host, f.guest))
            .collect();
        rows.push(vec![
            n.name.clone(),
            n.role.clone(),
            n.cpus.to_string(),
            format!("{} MiB", n.memory_mb),
            ips.join(","),
            format!("127.0.0.1:{}", n.ssh_port),
            fwd.join(","),
        ]);
    }
    out.extend(table(&rows));
    out.push(String::new());
    let mut rows = vec![vec![
        "NODE".to_string(),
        "#".into(),
        "STEP".into(),
        "RUNS".into(),
        "COMMAND".into(),
        "WAITS FOR".into(),
    ]];
    for (t, task) in g.tasks.iter().enumerate() {
        let node = &lab.nodes[task.node];
        let step = &lab.steps_of(node)[task.step];
        let mut cmd = vec![source_name(&step.source)];
        cmd.extend(
            args_of(node, step)
                .iter()
                .map(|a| labctl_spec::shell_quote(a)),
        );
        let mut runs = step.run.as_str().to_string();
        if step.needs_egress {
            runs.push_str(",internet");
        }
        if !step.publish.is_empty() {
            let names: Vec<String> = step
                .publish
                .iter()
                .map(|p| match step.ttl.get(p) {
                    Some(ttl) => format!("{p}(ttl {})", labctl_spec::format_duration(*ttl)),
                    None => p.clone(),
                })
                .collect();
            runs.push_str(&format!(",publishes {}", names.join("+")));
        }
        rows.push(vec![
            if task.step == 0 {
                node.name.clone()
            } else {
                String::new()
            },
            (task.step + 1).to_string(),
            step.name.clone(),
            runs,
            cmd.join(" "),
            deps_of(lab, g, t).join(", "),
        ]);
    }
    out.extend(table(&rows));
    // `labctl reset` hooks: where each runs (the first of these nodes that is up).
    let mut rows = vec![vec![
        "ROLE".to_string(),
        "HOOK".into(),
        "RUNS ON".into(),
        "COMMAND".into(),
    ]];
    for role in &lab.roles {
        let hooks = [
            ("check", &role.check),
            ("forget (reset --rebuild)", &role.forget),
        ];
        for (what, hook) in hooks {
            let Some(hook) = hook else { continue };
            let on = if hook.on.is_empty() {
                "the node itself".to_string()
            } else {
                let names: Vec<&str> = hook
                    .on
                    .iter()
                    .flat_map(|r| lab.nodes.iter().filter(move |n| n.role == *r))
                    .map(|n| n.name.as_str())
                    .collect();
                format!("first up of {} (not the node itself)", names.join(", "))
            };
            rows.push(vec![role.name.clone(), what.into(), on, hook.run.clone()]);
        }
    }
    if rows.len() > 1 {
        out.push(String::new());
        out.extend(table(&rows));
    }
    out
}
