use crate::Result;
use crate::cli::ValidateArgs;
use crate::errors::code;
use crate::output::Printer;

pub(crate) fn run(args: &ValidateArgs, p: &Printer) -> Result<u8> {
    let lab = super::load_lab(&args.lab)?;
    let steps: usize = lab.nodes.iter().map(|n| lab.steps_of(n).len()).sum();
    p.out(format!(
        "{}: lab `{}` is valid ({} node{}, {steps} step{})",
        p.styles.ok("ok"),
        lab.name,
        lab.nodes.len(),
        if lab.nodes.len() == 1 { "" } else { "s" },
        if steps == 1 { "" } else { "s" },
    ));
    Ok(code::OK)
}
