//! `controlvm VM natpf1|acpipowerbutton|poweroff|pause|resume|savestate`.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::PROGRESS;
use crate::fail::{Res, fail, not_running, syntax};
use crate::nat::nat_log_line;
use crate::state::{Fake, now_ms, s};

impl Fake {
    pub(crate) fn controlvm(&self, args: &[String]) -> Res {
        let (Some(name), Some(action)) = (args.first(), args.get(1)) else {
            return Err(syntax("Not enough parameters"));
        };
        let mut vm = self.vm(name)?;
        let name = s(&vm, "name").to_string();
        if s(&vm, "state") == "gurumeditation" && action == "poweroff" {
            vm["state"] = json!("poweroff");
            self.save(&vm);
            eprintln!("{PROGRESS}");
            return Ok(());
        }
        if !matches!(s(&vm, "state"), "running" | "paused") {
            return Err(not_running(&name));
        }
        match action.as_str() {
            "natpf1" => {
                let Some(spec) = args.get(2) else {
                    return Err(syntax("Missing argument to 'natpf1'"));
                };
                let mut rules: Vec<String> = vm["nics"]["1"]["rules"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                if spec == "delete" {
                    let Some(rule) = args.get(3) else {
                        return Err(syntax("Missing argument to 'natpf1 delete'"));
                    };
                    let before = rules.len();
                    rules.retain(|r| r.split(',').next() != Some(rule.as_str()));
                    if rules.len() == before {
                        return Err(fail(&[
                            "A NAT rule for this name does not exist",
                            "Details: code NS_ERROR_INVALID_ARG (0x80070057), component NATEngineWrap, interface INATEngine",
                        ]));
                    }
                } else {
                    let f: Vec<&str> = spec.split(',').collect();
                    if f.len() != 6 || f[3].parse::<u16>().is_err() || f[5].parse::<u16>().is_err()
                    {
                        return Err(syntax(&format!("Invalid NAT rule '{spec}'")));
                    }
                    if rules.iter().any(|r| r.split(',').next() == Some(f[0])) {
                        return Err(fail(&[
                            "A NAT rule of this name already exists",
                            "Details: code NS_ERROR_INVALID_ARG (0x80070057), component NATEngineWrap, interface INATEngine",
                        ]));
                    }
                    rules.push(spec.clone());
                    // The running NAT engine binds it now, or logs that it cannot.
                    let log = PathBuf::from(s(&vm, "dir")).join("Logs/VBox.log");
                    if let Ok(mut lf) = fs::OpenOptions::new().create(true).append(true).open(&log)
                    {
                        let _ = lf.write_all(nat_log_line(&self.state, spec).as_bytes());
                    }
                }
                vm["nics"]["1"]["rules"] = json!(rules);
            }
            "acpipowerbutton" => {
                if std::env::var("FAKE_VBOX_ACPI").is_ok_and(|v| v == "ignore") {
                    return Ok(());
                }
                let delay: u64 = std::env::var("FAKE_VBOX_ACPI_DELAY_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(150);
                vm["acpi_off_at"] = json!(now_ms() + delay);
            }
            "poweroff" => {
                vm["state"] = json!("poweroff");
                vm["acpi_off_at"] = Value::Null;
                eprintln!("{PROGRESS}");
            }
            "pause" => vm["state"] = json!("paused"),
            "resume" => vm["state"] = json!("running"),
            "savestate" => {
                vm["state"] = json!("saved");
                eprintln!("{PROGRESS}");
            }
            other => return Err(syntax(&format!("Invalid parameter '{other}'"))),
        }
        self.save(&vm);
        Ok(())
    }
}
