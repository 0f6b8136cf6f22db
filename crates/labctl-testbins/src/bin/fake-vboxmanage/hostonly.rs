//! `hostonlyif create|ipconfig|remove` and `hostonlynet add` (VBoxManageHostonly.cpp).

use crate::fail::{Res, fail, syntax};
use crate::model::{HostOnlyIf, HostOnlyNet};
use crate::opts::options;
use crate::state::Fake;
use crate::{PROGRESS, ru};

impl Fake {
    pub(crate) fn hostonlyif(&self, args: &[String]) -> Res {
        let mut ifs = self.hostonlyifs();
        match args.first().map(String::as_str) {
            Some("create") => {
                if self.macos && self.major() >= 7 {
                    // vagrant#12967
                    return Err(fail(&[
                        "VBoxNetAdpCtl: Error while adding new interface: failed to open /dev/vboxnetctl: No such file or directory",
                        "Details: code NS_ERROR_FAILURE (0x80004005), component HostNetworkInterfaceWrap, interface IHostNetworkInterface",
                    ]));
                }
                let index = (0u64..)
                    .find(|n| !ifs.iter().any(|i| i.index == *n))
                    .unwrap_or(0);
                let name = format!("vboxnet{index}");
                ifs.push(HostOnlyIf {
                    name: name.clone(),
                    index,
                    guid: format!("786f6276-656e-{index:04x}-8000-0a0027000000"),
                    ip: format!("192.168.{}.1", 56 + index),
                    netmask: "255.255.255.0".into(),
                });
                self.save_hostonlyifs(&ifs);
                println!("{PROGRESS}");
                if args.iter().any(|a| a == "--machinereadable") {
                    // VBoxManageHostonly.cpp: the bare name.
                    println!("{name}");
                } else if self.ru {
                    println!("{}{name}{}", ru::IF_CREATED.0, ru::IF_CREATED.1);
                } else {
                    println!("Interface '{name}' was successfully created");
                }
                Ok(())
            }
            Some("ipconfig") => {
                let Some(name) = args.get(1) else {
                    return Err(syntax("No interface name was specified"));
                };
                let opts = options(&args[2..]);
                let Some(i) = ifs.iter().position(|i| i.name == *name) else {
                    return Err(fail(&[
                        &format!("Could not find interface '{name}'"),
                        "Details: code NS_ERROR_INVALID_ARG (0x80070057), component HostWrap, interface IHost",
                    ]));
                };
                if let Some(ip) = opts.get("--ip") {
                    ifs[i].ip.clone_from(ip);
                    ifs[i].netmask = opts
                        .get("--netmask")
                        .map_or("255.255.255.0", String::as_str)
                        .to_string();
                }
                self.save_hostonlyifs(&ifs);
                Ok(())
            }
            Some("remove") => {
                let Some(name) = args.get(1) else {
                    return Err(syntax("No interface name was specified"));
                };
                ifs.retain(|i| i.name != *name);
                self.save_hostonlyifs(&ifs);
                Ok(())
            }
            _ => Err(syntax("Unknown sub-command")),
        }
    }

    pub(crate) fn hostonlynet(&self, args: &[String]) -> Res {
        if self.major() < 7 {
            return Err(syntax("Invalid command 'hostonlynet'"));
        }
        let opts = options(&args[1..]);
        match args.first().map(String::as_str) {
            Some("add") => {
                let mut nets = self.hostonlynets();
                let get = |k: &str| opts.get(k).cloned().unwrap_or_default();
                for k in ["--name", "--netmask", "--lower-ip", "--upper-ip"] {
                    if get(k).is_empty() {
                        return Err(syntax(&format!("The {k} parameter must be specified")));
                    }
                }
                if nets.iter().any(|n| n.name == get("--name")) {
                    return Err(fail(&[&format!(
                        "A host-only network named '{}' already exists",
                        get("--name")
                    )]));
                }
                let guid = self.new_uuid();
                nets.push(HostOnlyNet {
                    name: get("--name"),
                    guid,
                    netmask: get("--netmask"),
                    lower: get("--lower-ip"),
                    upper: get("--upper-ip"),
                });
                self.save_hostonlynets(&nets);
                Ok(())
            }
            _ => Err(syntax("Unknown sub-command")),
        }
    }
}
