//! `import OVF --vsys 0 --vmname --basefolder [--options keepnatmacs]`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::PROGRESS;
use crate::fail::{Res, fail, syntax};
use crate::opts::options;
use crate::state::Fake;

/// The NAT MAC of a box whose OVF names none.
const BOX_MAC: &str = "080027B0C5E1";

impl Fake {
    pub(crate) fn import(&self, args: &[String]) -> Res {
        let Some(ovf) = args.first() else {
            return Err(syntax("Not enough arguments for \"import\" command."));
        };
        let opts = options(&args[1..]);
        if !Path::new(ovf).is_file() {
            return Err(fail(&[
                "Appliance read failed",
                &format!("File not found: {ovf}"),
                "Details: code VBOX_E_FILE_ERROR (0x80bb0004), component ApplianceWrap, interface IAppliance",
            ]));
        }
        let name = opts
            .get("--vmname")
            .cloned()
            .unwrap_or_else(|| "imported".into());
        let base = opts
            .get("--basefolder")
            .map_or_else(|| self.state.join("VirtualBox VMs"), PathBuf::from);
        let mut vm = self.new_vm(&name, &base);
        if vm.cfgfile.exists() || self.find(&name).is_some() {
            return Err(fail(&[
                &format!(
                    "Machine settings file '{}' already exists",
                    vm.cfgfile.display()
                ),
                "Details: code VBOX_E_FILE_ERROR (0x80bb0004), component MachineWrap, interface IMachine",
            ]));
        }
        let disk = Self::write_vm_files(&vm, &format!("{name}-disk001.vmdk"));
        if let Some(f) = self.interrupted("import") {
            return Err(f);
        }
        vm.disk = Some(disk);
        vm.config.memory = 1024;
        vm.config.cpus = 2;
        // The NAT MAC: the OVF's with --options keepnatmacs/keepallmacs, else a new one.
        let keep = opts.get("--options").is_some_and(|o| {
            o.split(',').any(|x| {
                x.eq_ignore_ascii_case("keepnatmacs") || x.eq_ignore_ascii_case("keepallmacs")
            })
        });
        if keep {
            let text = fs::read_to_string(ovf).unwrap_or_default();
            let mac = text
                .split("MACAddress=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or(BOX_MAC)
                .to_string();
            if let Some(nat) = vm.config.nics.get_mut(&1) {
                nat.mac = mac;
            }
        }
        self.save(&vm);
        eprintln!("{PROGRESS}");
        println!("Interpreting {ovf}...\nOK.\n{PROGRESS}\nSuccessfully imported the appliance.");
        Ok(())
    }
}
