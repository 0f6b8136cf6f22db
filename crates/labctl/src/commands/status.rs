use labctl_runner::RunState;

use crate::Result;
use crate::cli::{StatusArgs, ValuesArgs};
use crate::errors::{ExpectedError, code};
use crate::output::{Printer, json};

pub(crate) fn run(args: &StatusArgs, p: &Printer) -> Result<u8> {
    let dir = super::lab_dir(&args.lab)?;
    let paths = labctl_runner::lab_paths(&dir, "");
    let nodes = labctl_runner::status(&paths, &super::env_for(&args.lab))?;
    if args.json {
        let doc = json::document("status", serde_json::json!({ "nodes": nodes }));
        p.out(json::text(&doc));
        return Ok(code::OK);
    }
    if nodes.is_empty() {
        p.out("no nodes yet: `labctl up` creates them");
        return Ok(code::OK);
    }
    let w = nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
    p.out(format!(
        "{:<w$}  {:<8}  {:<11}  {:<16}  STEPS DONE",
        "NODE", "ROLE", "STATE", "SSH"
    ));
    for n in &nodes {
        let state = match n.state {
            RunState::Running => p.styles.ok("running    "),
            other => format!("{:<11}", other.as_str()),
        };
        p.out(format!(
            "{:<w$}  {:<8}  {state}  {:<16}  {}",
            n.name, n.role, n.ssh, n.steps_done
        ));
    }
    Ok(code::OK)
}

pub(crate) fn values(args: &ValuesArgs, p: &Printer) -> Result<u8> {
    let dir = super::lab_dir(&args.lab)?;
    let values = labctl_runner::values(&labctl_runner::lab_paths(&dir, ""));
    if args.json {
        let shown: std::collections::BTreeMap<&String, &String> = match &args.name {
            Some(name) => {
                let (k, v) = values
                    .get_key_value(name)
                    .ok_or_else(|| ExpectedError::UnknownValue { name: name.clone() })?;
                [(k, v)].into_iter().collect()
            }
            None => values.iter().collect(),
        };
        p.out(json::text(&json::document(
            "values",
            serde_json::json!({ "values": shown }),
        )));
        return Ok(code::OK);
    }
    match &args.name {
        Some(name) => {
            let v = values
                .get(name)
                .ok_or_else(|| ExpectedError::UnknownValue { name: name.clone() })?;
            p.out(v);
        }
        None => {
            for (k, v) in &values {
                p.out(format!("{k}={v}"));
            }
        }
    }
    Ok(code::OK)
}
