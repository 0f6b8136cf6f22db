use std::io::IsTerminal;

use labctl_driver::boxes::{AddOptions, Progress};

use crate::Result;
use crate::cli::BoxCommand;
use crate::errors::code;
use crate::output::Printer;

fn human(bytes: u64) -> String {
    let mb = bytes as f64 / 1_048_576.0;
    if mb >= 1024.0 {
        format!("{:.1} GiB", mb / 1024.0)
    } else {
        format!("{mb:.0} MiB")
    }
}

pub(crate) fn run(cmd: &BoxCommand, p: &Printer) -> Result<u8> {
    let store = super::env().boxes();
    match cmd {
        BoxCommand::Add(a) => {
            if a.force && store.get(&a.name).is_ok() {
                for vm in labctl_runner::release_box(&super::env(), &a.name)? {
                    p.info(format!(
                        "unregistered VirtualBox VM {vm} (the replaced box's imported master)"
                    ));
                }
            }
            let opts = AddOptions {
                force: a.force,
                user: a.user.clone(),
                private_key: a.key.clone(),
                os: a.os.clone(),
                max_unpacked: None,
                insecure: a.insecure,
                sha256: a.sha256.clone(),
            };
            let tty = std::io::stderr().is_terminal() && !p.quiet;
            let progress = |pr: Progress| {
                if tty {
                    let total = pr
                        .total
                        .map(|t| format!(" of {}", human(t)))
                        .unwrap_or_default();
                    eprint!("\r\x1b[2Kdownloading {}{total}", human(pr.done));
                }
            };
            let m = store.add(&a.name, &a.source, &opts, &progress)?;
            if tty {
                eprintln!();
            }
            p.out(format!(
                "added box {} ({}, sha256 {})",
                m.name,
                human(m.size),
                &m.sha256[..16]
            ));
        }
        BoxCommand::List(a) => {
            let boxes = store.list();
            if a.json {
                let doc = crate::output::json::document(
                    "box-list",
                    serde_json::json!({ "boxes": boxes }),
                );
                p.out(crate::output::json::text(&doc));
                return Ok(code::OK);
            }
            if boxes.is_empty() {
                p.out("no boxes; `labctl box add NAME FILE|URL`, or build the default one with scripts/build-box.sh");
            }
            for b in boxes {
                p.out(format!(
                    "{:<28} {:<8} {:>9}  {}",
                    b.name,
                    b.os,
                    human(b.size),
                    b.source
                ));
            }
        }
        BoxCommand::Remove { name } => {
            for vm in labctl_runner::remove_box(&super::env(), name)? {
                p.info(format!(
                    "unregistered VirtualBox VM {vm} (the box's imported master)"
                ));
            }
            p.out(format!("removed box {name}"));
        }
    }
    Ok(code::OK)
}
