use std::collections::BTreeMap;
use std::path::Path;

use labctl_spec::{Graph, Lab, Renderer, shell_quote};

use crate::Result;
use crate::cli::RenderArgs;
use crate::errors::{ExpectedError, code};
use crate::output::Printer;

pub(crate) fn run(args: &RenderArgs, p: &Printer) -> Result<u8> {
    let lab = super::load_lab(&args.lab)?;
    if let Some(name) = &args.node
        && lab.node(name).is_none()
    {
        return Err(ExpectedError::UnknownNode {
            name: name.clone(),
            lab: lab.name.clone(),
            known: lab.nodes.iter().map(|n| n.name.clone()).collect(),
        });
    }
    let renderer = Renderer::new(&lab).map_err(|e| spec_error(&lab, &e))?;
    let g = Graph::build(&lab);
    let values = placeholder_values(&lab, &g);
    for node in &lab.nodes {
        if args.node.as_ref().is_some_and(|n| *n != node.name) {
            continue;
        }
        for (i, step) in lab.steps_of(node).iter().enumerate() {
            let r = renderer
                .render_step(&lab, node, step, &values)
                .map_err(|e| spec_error(&lab, &e))?;
            let file = format!("{:02}-{}.sh", i + 1, step.name);
            let args_line: Vec<String> = r.args.iter().map(|a| shell_quote(a)).collect();
            match &args.out {
                Some(dir) => {
                    let d = dir.join(&node.name);
                    write(&d.join(&file), &r.script)?;
                    let mut cmd = file.clone();
                    for a in &args_line {
                        cmd.push(' ');
                        cmd.push_str(a);
                    }
                    append(&d.join("steps.txt"), &cmd, i == 0)?;
                }
                None => {
                    p.out(format!(
                        "# ==> {}/{file} {}",
                        node.name,
                        args_line.join(" ")
                    ));
                    p.out(r.script.trim_end());
                    p.out("");
                }
            }
        }
    }
    if let Some(dir) = &args.out {
        p.info(format!("wrote scripts to {}", dir.display()));
    }
    Ok(code::OK)
}

/// Values a step would receive: placeholders naming their publisher.
fn placeholder_values(lab: &Lab, g: &Graph) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (t, task) in g.tasks.iter().enumerate() {
        for name in &lab.steps_of(&lab.nodes[task.node])[task.step].publish {
            values.insert(name.clone(), format!("<{name} from {}>", g.label(lab, t)));
        }
    }
    values
}

fn spec_error(lab: &Lab, e: &labctl_spec::RenderFailure) -> ExpectedError {
    let (path, line, column, message) = match e {
        labctl_spec::RenderFailure::Read { path, message } => (path.clone(), 0, 0, message.clone()),
        labctl_spec::RenderFailure::Template {
            path,
            line,
            column,
            message,
        } => (path.clone(), *line, *column, message.clone()),
    };
    ExpectedError::Spec(labctl_spec::SpecError::Invalid {
        file: lab.file.clone(),
        diagnostics: vec![labctl_spec::Diagnostic {
            file: path,
            line,
            column,
            field: String::new(),
            message,
            hint: None,
            snippet: None,
        }],
    })
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ExpectedError::Write {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| ExpectedError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn append(path: &Path, line: &str, truncate: bool) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(!truncate)
        .write(true)
        .truncate(truncate)
        .open(path)
        .map_err(|source| ExpectedError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    writeln!(f, "{line}").map_err(|source| ExpectedError::Write {
        path: path.to_path_buf(),
        source,
    })
}
