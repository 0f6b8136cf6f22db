//! `clonevm SRC --snapshot --options link,keepnatmacs --name --basefolder --register`.

use std::path::PathBuf;

use crate::PROGRESS;
use crate::fail::{Res, fail, syntax};
use crate::opts::options;
use crate::state::Fake;

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
            && !src.snapshots.iter().any(|x| x.name == *snap)
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
        if vm.cfgfile.exists() || self.find(&name).is_some() {
            return Err(fail(&[
                "Could not create the clone machine",
                &format!(
                    "Machine settings file '{}' already exists",
                    vm.cfgfile.display()
                ),
                "Details: code VBOX_E_FILE_ERROR (0x80bb0004), component MachineWrap, interface IVirtualBox",
            ]));
        }
        vm.config.cpus = src.config.cpus;
        vm.config.memory = src.config.memory;
        vm.ostype.clone_from(&src.ostype);
        vm.config.nested.clone_from(&src.config.nested);
        vm.config.uart1.clone_from(&src.config.uart1);
        vm.config.uartmode1.clone_from(&src.config.uartmode1);
        // New MACs for every NIC unless KeepAllMACs, or KeepNATMACs for NAT ones
        // (VBoxManageMisc.cpp parseCloneOptions, case-insensitive).
        let copt = |w: &str| {
            opts.get("--options")
                .is_some_and(|o| o.split(',').any(|x| x.eq_ignore_ascii_case(w)))
        };
        let (keep_all, keep_nat) = (copt("keepallmacs"), copt("keepnatmacs"));
        let mut nics = src.config.nics.clone();
        for nic in nics.values_mut() {
            let keep = keep_all || (keep_nat && nic.kind == "nat");
            if !keep {
                nic.mac = self.new_mac();
            }
        }
        vm.config.nics = nics;
        let disk_name = if linked {
            format!("Snapshots/{{{}}}.vmdk", vm.uuid)
        } else {
            format!("{name}-disk1.vmdk")
        };
        vm.disk = Some(Self::write_vm_files(&vm, &disk_name));
        if let Some(f) = self.interrupted("clonevm") {
            return Err(f);
        }
        if linked {
            vm.linked_to = Some(src.uuid.clone());
        }
        if opts.contains_key("--register") {
            self.save(&vm);
        }
        eprintln!("{PROGRESS}");
        println!("Machine has been successfully cloned as \"{name}\"");
        Ok(())
    }
}
