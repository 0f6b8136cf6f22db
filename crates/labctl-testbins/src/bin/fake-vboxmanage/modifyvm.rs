//! `modifyvm VM --cpus --memory --nicN --natpfN --uart1 ...` (VBoxManageModifyVM.cpp).

use crate::MAX_NICS;
use crate::fail::{Res, fail, locked, syntax};
use crate::model::{Nic, Vm, VmState};
use crate::opts::{parse_num, split_index};
use crate::state::Fake;

impl Fake {
    pub(crate) fn modifyvm(&self, args: &[String]) -> Res {
        let Some(name) = args.first() else {
            return Err(syntax("Not enough parameters"));
        };
        let mut vm = self.vm(name)?;
        if !matches!(vm.state, VmState::Poweroff | VmState::Aborted) {
            return Err(locked(&vm.name));
        }
        let mut it = args[1..].iter();
        let value = |it: &mut std::slice::Iter<'_, String>, opt: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| syntax(&format!("Missing argument to '{opt}'")))
        };
        while let Some(opt) = it.next() {
            let (key, idx) = split_index(opt);
            let nic_ok = (1..=MAX_NICS).contains(&idx);
            match key {
                "--cpus" => vm.config.cpus = parse_num(&value(&mut it, opt)?)?,
                "--memory" => vm.config.memory = parse_num(&value(&mut it, opt)?)?,
                "--groups" => vm.config.groups = value(&mut it, opt)?,
                "--nested-hw-virt" => {
                    let v = value(&mut it, opt)?;
                    if v != "on" && v != "off" {
                        return Err(syntax(&format!("Invalid --nested-hw-virt argument '{v}'")));
                    }
                    vm.config.nested = v;
                }
                "--nic" if nic_ok => {
                    let ty = value(&mut it, opt)?;
                    if ![
                        "none",
                        "null",
                        "nat",
                        "bridged",
                        "intnet",
                        "hostonly",
                        "hostonlynet",
                        "generic",
                        "natnetwork",
                    ]
                    .contains(&ty.as_str())
                    {
                        return Err(syntax(&format!(
                            "Invalid type '{ty}' specfied for NIC {idx}"
                        )));
                    }
                    nic_entry(self, &mut vm, idx).kind = ty;
                }
                "--macaddress" if nic_ok => {
                    let mac = value(&mut it, opt)?;
                    if mac.len() != 12 || !mac.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(fail(&[&format!("Invalid MAC address format '{mac}'")]));
                    }
                    nic_entry(self, &mut vm, idx).mac = mac;
                }
                "--cableconnected" if nic_ok => {
                    let v = value(&mut it, opt)?;
                    nic_entry(self, &mut vm, idx).cable = v;
                }
                "--hostonlyadapter" if nic_ok => {
                    let v = value(&mut it, opt)?;
                    nic_entry(self, &mut vm, idx).hostonly = Some(v);
                }
                "--host-only-net" if nic_ok && self.major() >= 7 => {
                    let v = value(&mut it, opt)?;
                    nic_entry(self, &mut vm, idx).hostonlynet = Some(v);
                }
                "--nat-localhostreachable" if nic_ok && self.major() >= 7 => {
                    let v = value(&mut it, opt)?;
                    if v != "on" && v != "off" {
                        return Err(syntax(&format!(
                            "Invalid --nat-localhostreachable{idx} argument '{v}'"
                        )));
                    }
                    nic_entry(self, &mut vm, idx).localhostreachable = Some(v);
                }
                "--intnet" if nic_ok => {
                    let v = value(&mut it, opt)?;
                    nic_entry(self, &mut vm, idx).intnet = Some(v);
                }
                "--nictype" if nic_ok => {
                    value(&mut it, opt)?;
                }
                "--natpf" if nic_ok => {
                    let v = value(&mut it, opt)?;
                    let nic = nic_entry(self, &mut vm, idx);
                    let mut rules = nic.rules.clone();
                    if v == "delete" {
                        let rule = value(&mut it, opt)?;
                        let before = rules.len();
                        rules.retain(|r| r.split(',').next() != Some(rule.as_str()));
                        if rules.len() == before {
                            return Err(fail(&[
                                "A NAT rule for this name does not exist",
                                "Details: code NS_ERROR_INVALID_ARG (0x80070057), component NATEngineWrap, interface INATEngine",
                            ]));
                        }
                    } else {
                        let f: Vec<&str> = v.split(',').collect();
                        if f.len() != 6
                            || f[3].parse::<u16>().is_err()
                            || f[5].parse::<u16>().is_err()
                        {
                            return Err(syntax(&format!("Invalid NAT rule '{v}'")));
                        }
                        if rules.iter().any(|r| {
                            let g: Vec<&str> = r.split(',').collect();
                            g[0] == f[0] || (g.get(3) == Some(&f[3]) && g.get(2) == Some(&f[2]))
                        }) {
                            return Err(fail(&[
                                "A NAT rule of this name already exists",
                                "Details: code NS_ERROR_INVALID_ARG (0x80070057), component NATEngineWrap, interface INATEngine",
                            ]));
                        }
                        rules.push(v);
                    }
                    nic.rules = rules;
                }
                "--uart" if idx == 1 => {
                    let v = value(&mut it, opt)?;
                    if v == "off" {
                        vm.config.uart1 = "off".into();
                    } else {
                        let irq = value(&mut it, opt)?;
                        let io = u32::from_str_radix(
                            v.trim_start_matches("0x").trim_start_matches("0X"),
                            16,
                        )
                        .map_err(|_| syntax(&format!("Invalid I/O base '{v}'")))?;
                        vm.config.uart1 = format!("{io:#06x},{irq}");
                    }
                }
                "--uartmode" if idx == 1 => {
                    let mode = value(&mut it, opt)?;
                    match mode.as_str() {
                        "disconnected" => vm.config.uartmode1 = Some("disconnected".into()),
                        "file" | "server" | "client" | "tcpserver" | "tcpclient" => {
                            let arg = value(&mut it, opt)?;
                            vm.config.uartmode1 = Some(format!("{mode},{arg}"));
                        }
                        other => {
                            return Err(syntax(&format!("Invalid --uartmode argument '{other}'")));
                        }
                    }
                }
                _ => return Err(syntax(&format!("Unknown option: {opt}"))),
            }
        }
        self.save(&vm);
        Ok(())
    }
}

/// NIC `n` of the VM, a new unattached one (with a new MAC) if it has none.
pub(crate) fn nic_entry<'a>(fake: &Fake, vm: &'a mut Vm, n: u8) -> &'a mut Nic {
    vm.config
        .nics
        .entry(n)
        .or_insert_with(|| Nic::new("none", fake.new_mac()))
}
