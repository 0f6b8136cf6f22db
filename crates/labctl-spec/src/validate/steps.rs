//! Steps, durations, and the dependency graph (unknown steps, cycles).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::templates::Roots;
use super::{dns_label_ok, enum_value, ident_ok, role_span};
use crate::error::{Sink, suggest};
use crate::graph::Graph;
use crate::model::{Lab, RunPolicy, Step, StepRef, StepSource};
use crate::parse::{RawLab, RawStep};

pub(super) fn build_steps(
    raw: &[RawStep],
    role_path: &str,
    templates_dir: &Path,
    roots: &Roots,
    sink: &mut Sink<'_>,
) -> Vec<Step> {
    let lab_dir = roots.lab.as_path();
    let mut steps: Vec<Step> = Vec::new();
    for rs in raw {
        let source = match (&rs.template, &rs.script) {
            (Some(t), None) => {
                let p = templates_dir.join(&t.v);
                if !p.is_file() {
                    let hint = std::fs::read_dir(p.parent().unwrap_or(templates_dir))
                        .ok()
                        .and_then(|rd| {
                            let names: Vec<String> = rd
                                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                                .collect();
                            let file = Path::new(&t.v).file_name()?.to_str()?.to_string();
                            suggest(&file, names.iter().map(String::as_str))
                                .map(|s| format!("did you mean `{s}`?"))
                        })
                        .unwrap_or_else(|| {
                            format!("templates are looked up in {}", templates_dir.display())
                        });
                    sink.hint(
                        &t.span,
                        &format!("{}.template", rs.path),
                        format!("template `{}` not found", t.v),
                        hint,
                    );
                } else if !roots.allows(&p) {
                    sink.hint(
                        &t.span,
                        &format!("{}.template", rs.path),
                        format!("template `{}` is outside the lab directory", t.v),
                        "list its directory in `lab.trusted_dirs` to allow it",
                    );
                }
                Some(StepSource::Template(PathBuf::from(&t.v)))
            }
            (None, Some(s)) => {
                if !lab_dir.join(&s.v).is_file() {
                    sink.at(
                        &s.span,
                        &format!("{}.script", rs.path),
                        format!("script `{}` not found next to lab.toml", s.v),
                    );
                } else if !roots.allows(&lab_dir.join(&s.v)) {
                    sink.hint(
                        &s.span,
                        &format!("{}.script", rs.path),
                        format!("script `{}` is outside the lab directory", s.v),
                        "list its directory in `lab.trusted_dirs` to allow it",
                    );
                }
                Some(StepSource::Script(PathBuf::from(&s.v)))
            }
            (Some(t), Some(_)) => {
                sink.at(
                    &t.span,
                    &rs.path,
                    "give either `template` or `script`, not both",
                );
                None
            }
            (None, None) => {
                sink.hint(
                    &rs.span,
                    &rs.path,
                    "a step needs `template` or `script`",
                    "e.g. template = \"k8s/config.sh.hbs\"",
                );
                None
            }
        };
        let Some(source) = source else { continue };
        let default_name = match &source {
            StepSource::Template(p) | StepSource::Script(p) => p
                .file_name()
                .and_then(|f| f.to_str())
                .map(|f| {
                    f.trim_end_matches(".hbs")
                        .trim_end_matches(".sh")
                        .to_string()
                })
                .unwrap_or_default(),
        };
        let name = rs.name.as_ref().map_or(default_name, |n| n.v.clone());
        let name_span = rs.name.as_ref().map_or(rs.span.clone(), |n| n.span.clone());
        if !ident_ok(&name) && !dns_label_ok(&name) {
            sink.at(
                &name_span,
                &format!("{}.name", rs.path),
                format!("`{name}` is not a valid step name"),
            );
        }
        if steps.iter().any(|s| s.name == name) {
            sink.hint(
                &name_span,
                &format!("{}.name", rs.path),
                format!("{role_path} already has a step named `{name}`"),
                "give one of them a `name`",
            );
        }
        let run = enum_value(
            rs.run.as_ref(),
            &format!("{}.run", rs.path),
            &[
                ("once", RunPolicy::Once),
                ("always", RunPolicy::Always),
                ("never", RunPolicy::Never),
            ],
            RunPolicy::Once,
            sink,
        );
        let mut after = Vec::new();
        for (j, a) in rs.after.iter().enumerate() {
            match a.v.split_once('.') {
                Some((role, step)) if !role.is_empty() && !step.is_empty() => after.push(StepRef {
                    role: role.to_string(),
                    step: step.to_string(),
                }),
                _ => sink.hint(
                    &a.span,
                    &format!("{}.after[{j}]", rs.path),
                    format!("`{}` is not a step reference", a.v),
                    "write ROLE.STEP, e.g. \"master.master_node\"",
                ),
            }
        }
        let mut ttl = BTreeMap::new();
        for (j, p) in rs.publish.iter().enumerate() {
            if !ident_ok(&p.v) {
                sink.at(
                    &p.span,
                    &format!("{}.publish[{j}]", rs.path),
                    format!("`{}` is not a valid value name", p.v),
                );
            }
            if let Some(t) = &p.ttl {
                match parse_duration(&t.v) {
                    Some(d) => {
                        ttl.insert(p.v.clone(), d);
                    }
                    None => sink.hint(
                        &t.span,
                        &format!("{}.publish[{j}].ttl", rs.path),
                        format!("`{}` is not a duration of 1 minute to 365 days", t.v),
                        "write a number and a unit (d, h, m, s), e.g. \"23h\" or \"1h50m\"",
                    ),
                }
            }
        }
        let timeout = match &rs.timeout {
            Some(t) if !(1..=86_400).contains(&t.v) => {
                sink.at(
                    &t.span,
                    &format!("{}.timeout", rs.path),
                    format!("must be 1-86400 seconds; got {}", t.v),
                );
                1800
            }
            Some(t) => t.v.unsigned_abs(),
            None => 1800,
        };
        steps.push(Step {
            name,
            source,
            args: rs.args.iter().map(|a| a.v.clone()).collect(),
            run,
            needs_egress: rs.needs_egress.as_ref().is_some_and(|v| v.v),
            packages: rs.packages.as_ref().map(|p| p.v.clone()),
            after,
            publish: rs.publish.iter().map(|p| p.v.clone()).collect(),
            ttl,
            timeout: Duration::from_secs(timeout),
        });
    }
    steps
}

/// "23h", "1h50m", "90m", "2d": one or more NUMBER UNIT pairs (d, h, m, s), 1 min to 365 days.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(d))?,
            );
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(num.take()?.checked_mul(unit)?)?;
    }
    if num.is_some() || !(60..=365 * 86_400).contains(&total) {
        return None;
    }
    Some(Duration::from_secs(total))
}

pub(super) fn check_graph(lab: &Lab, raw: &RawLab, sink: &mut Sink<'_>) {
    let mut publishers: HashMap<&str, String> = HashMap::new();
    for (role, rr) in lab.roles.iter().zip(raw.roles.iter()) {
        let steps_raw: Vec<&RawStep> = rr
            .steps
            .iter()
            .filter(|s| s.template.is_some() ^ s.script.is_some())
            .collect();
        for (step, rs) in role.steps.iter().zip(steps_raw) {
            for (j, r) in step.after.iter().enumerate() {
                let span = rs.after.get(j).map_or(rs.span.clone(), |a| a.span.clone());
                let field = format!("{}.after[{j}]", rs.path);
                match lab.role(&r.role) {
                    None => {
                        let hint = suggest(&r.role, lab.roles.iter().map(|r| r.name.as_str()))
                            .map_or_else(
                                || "roles are the [role.NAME] tables".to_string(),
                                |s| format!("did you mean `{s}`?"),
                            );
                        sink.hint(&span, &field, format!("no role named `{}`", r.role), hint);
                    }
                    Some(target) if !target.steps.iter().any(|s| s.name == r.step) => {
                        let hint = suggest(&r.step, target.steps.iter().map(|s| s.name.as_str()))
                            .map_or_else(
                                || {
                                    format!(
                                        "role `{}` has steps: {}",
                                        target.name,
                                        target
                                            .steps
                                            .iter()
                                            .map(|s| s.name.as_str())
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    )
                                },
                                |s| format!("did you mean `{s}`?"),
                            );
                        sink.hint(
                            &span,
                            &field,
                            format!("role `{}` has no step `{}`", r.role, r.step),
                            hint,
                        );
                    }
                    Some(_) => {}
                }
            }
            for (j, p) in step.publish.iter().enumerate() {
                let me = format!("{}.{}", role.name, step.name);
                if let Some(other) = publishers.insert(p.as_str(), me.clone()) {
                    let span = rs.publish.get(j).map_or(&rs.span, |p| &p.span);
                    sink.at(
                        span,
                        &format!("{}.publish[{j}]", rs.path),
                        format!("value `{p}` is also published by {other}"),
                    );
                }
            }
        }
    }
    if !sink.diags.is_empty() {
        return;
    }
    let g = Graph::build(lab);
    if let Err(cycle) = g.topo_order() {
        let names: Vec<String> = cycle.0.iter().map(|&t| g.label(lab, t)).collect();
        let (span, field) = cycle_location(lab, raw, &g, &cycle.0);
        sink.hint(
            &span,
            &field,
            format!(
                "steps wait for each other in a cycle: {} -> {}",
                names.join(" -> "),
                names[0]
            ),
            "remove one of these `after` entries",
        );
    }
}

/// Where to report a dependency cycle: the `after` entry of one of its steps that names the
/// step before it in the cycle (`cycle[k]` waits for `cycle[k - 1]`, `cycle[0]` for the last).
/// Only called when there are no other diagnostics, so raw steps and steps correspond 1:1.
pub(super) fn cycle_location(
    lab: &Lab,
    raw: &RawLab,
    g: &Graph,
    cycle: &[usize],
) -> (Range<usize>, String) {
    let node_step = |t: usize| {
        let task = &g.tasks[t];
        let node = &lab.nodes[task.node];
        let raw_step = role_span(raw, &node.role).and_then(|r| r.steps.get(task.step));
        (node, &lab.steps_of(node)[task.step], raw_step)
    };
    for (k, &t) in cycle.iter().enumerate() {
        let (_, step, Some(rs)) = node_step(t) else {
            continue;
        };
        let (dep_node, dep_step, _) = node_step(cycle[(k + cycle.len() - 1) % cycle.len()]);
        let entry = step
            .after
            .iter()
            .position(|r| r.role == dep_node.role && r.step == dep_step.name);
        if let Some((j, a)) = entry.and_then(|j| Some((j, rs.after.get(j)?))) {
            return (a.span.clone(), format!("{}.after[{j}]", rs.path));
        }
    }
    match node_step(cycle[0]) {
        (_, _, Some(rs)) => (rs.span.clone(), format!("{}.after", rs.path)),
        (node, _, None) => (0..0, format!("role.{}", node.role)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("23h"), Some(Duration::from_secs(23 * 3600)));
        assert_eq!(parse_duration("1h50m"), Some(Duration::from_secs(6600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        for text in ["23h", "1h50m", "2d", "1m30s", "1d2h3m4s"] {
            let d = parse_duration(text).expect(text);
            assert_eq!(crate::model::format_duration(d), text);
        }
        for bad in [
            "",
            "23",
            "h",
            "1x",
            "30s",
            "366d",
            "1h 2m",
            "-1h",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
