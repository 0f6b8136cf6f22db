//! `clonevm SRC --snapshot --options link,keepnatmacs --name --basefolder --register`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::PROGRESS;
use crate::fail::{Res, fail, syntax};
use crate::opts::options;
use crate::state::{Fake, s};

impl Fake {
    pub(crate) fn clonevm(&self, args: &[String]) -> Res {
        let Some(src) = args.first() else {
            return Err(syntax("Not enough arguments for \"clonevm\" command."));
        };
        let src = self.vm(src)?;
        let opts = options(&args[1..]);
        let Some(name) = opts.get("--name").cloned() else {
            return Err(syntax("--name is required by this fake"));
        };
        let snapshot = opts.get("--snapshot").cloned();
        let linked = opts
            .get("--options")
            .is_some_and(|o| o.split(',').any(|x| x.eq_ignore_ascii_case("link")));
        if linked && snapshot.is_none() {
            return Err(fail(&["Linked clones need a snapshot (--snapshot)"]));
        }
        if let Some(snap) = &snapshot
            && !src["snapshots"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| s(x, "name") == snap))
        {
            return Err(fail(&[
                &format!("Could not find a snapshot named '{snap}'"),
                "Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component SnapshotWrap, interface ISnapshot",
            ]));
        }
        let base = opts
            .get("--basefolder")
            .map_or_else(|| self.state.join("VirtualBox VMs"), PathBuf::from);
        let mut vm = self.new_vm(&name, &base);
        if Path::new(s(&vm, "cfgfile")).exists() || self.find(&name).is_some() {
            return Err(fail(&[
                "Could not create the clone machine",
                &format!(
                    "Machine settings file '{}' already exists",
                    s(&vm, "cfgfile")
                ),
                "Details: code VBOX_E_FILE_ERROR (0x80bb0004), component MachineWrap, interface IVirtualBox",
            ]));
        }
        for k in ["cpus", "memory", "ostype", "nested", "uart1", "uartmode1"] {
            vm[k] = src[k].clone();
        }
        // New MACs for every NIC unless KeepAllMACs, or KeepNATMACs for NAT ones
        // (VBoxManageMisc.cpp parseCloneOptions, case-insensitive).
        let copt = |w: &str| {
            opts.get("--options")
                .is_some_and(|o| o.split(',').any(|x| x.eq_ignore_ascii_case(w)))
        };
        let (keep_all, keep_nat) = (copt("keepallmacs"), copt("keepnatmacs"));
        let mut nics = src["nics"].as_object().cloned().unwrap_or_default();
        for nic in nics.values_mut() {
            let keep = keep_all || (keep_nat && s(nic, "type") == "nat");
            if nic["mac"].is_string() && !keep {
                nic["mac"] = json!(self.new_mac());
            }
        }
        vm["nics"] = Value::Object(nics);
        let disk_name = if linked {
            format!("Snapshots/{{{}}}.vmdk", s(&vm, "uuid"))
        } else {
            format!("{name}-disk1.vmdk")
        };
        vm["disk"] = json!(Self::write_vm_files(&vm, &disk_name));
        if let Some(f) = self.interrupted("clonevm") {
            return Err(f);
        }
        if linked {
            vm["linked_to"] = json!(s(&src, "uuid"));
        }
        if opts.contains_key("--register") {
            self.save(&vm);
        }
        eprintln!("{PROGRESS}");
        println!("Machine has been successfully cloned as \"{name}\"");
        Ok(())
    }
}
