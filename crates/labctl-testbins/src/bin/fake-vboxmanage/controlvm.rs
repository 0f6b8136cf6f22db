//! `controlvm VM natpf1|acpipowerbutton|poweroff|pause|resume|savestate`.

use std::fs;
use std::io::Write;

use crate::PROGRESS;
use crate::fail::{Res, fail, not_running, syntax};
use crate::model::{Nic, VmState};
use crate::nat::{nat_log_line, nat_rules};
use crate::state::{Fake, now_ms};

impl Fake {
    pub(crate) fn controlvm(&self, args: &[String]) -> Res {
        let (Some(name), Some(action)) = (args.first(), args.get(1)) else {
            return Err(syntax("Not enough parameters"));
        };
        let mut vm = self.vm(name)?;
        let name = vm.name.clone();
        if vm.state == VmState::Gurumeditation && action == "poweroff" {
            vm.state = VmState::Poweroff;
            self.save(&vm);
            eprintln!("{PROGRESS}");
            return Ok(());
        }
        if !vm.state.in_session() {
            return Err(not_running(&name));
        }
        match action.as_str() {
            "natpf1" => {
                let Some(spec) = args.get(2) else {
                    return Err(syntax("Missing argument to 'natpf1'"));
                };
                let mut rules = nat_rules(&vm);
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
                    let log = vm.dir.join("Logs/VBox.log");
                    if let Ok(mut lf) = fs::OpenOptions::new().create(true).append(true).open(&log)
                    {
                        let _ = lf.write_all(nat_log_line(&self.state, spec).as_bytes());
                    }
                }
                vm.config.nics.entry(1).or_insert_with(Nic::default).rules = rules;
            }
            "acpipowerbutton" => {
                if std::env::var("FAKE_VBOX_ACPI").is_ok_and(|v| v == "ignore") {
                    return Ok(());
                }
                let delay: u64 = std::env::var("FAKE_VBOX_ACPI_DELAY_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(150);
                vm.acpi_off_at = Some(now_ms() + delay);
            }
            "poweroff" => {
                vm.state = VmState::Poweroff;
                vm.acpi_off_at = None;
                eprintln!("{PROGRESS}");
            }
            "pause" => vm.state = VmState::Paused,
            "resume" => vm.state = VmState::Running,
            "savestate" => {
                vm.state = VmState::Saved;
                eprintln!("{PROGRESS}");
            }
            other => return Err(syntax(&format!("Invalid parameter '{other}'"))),
        }
        self.save(&vm);
        Ok(())
    }
}
