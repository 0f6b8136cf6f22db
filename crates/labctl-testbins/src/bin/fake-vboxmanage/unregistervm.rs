//! `unregistervm VM [--delete]`.

use std::fs;

use crate::PROGRESS;
use crate::fail::{Res, fail, syntax};
use crate::state::Fake;

impl Fake {
    pub(crate) fn unregistervm(&self, args: &[String]) -> Res {
        let Some(name) = args.first() else {
            return Err(syntax("VM name required"));
        };
        let vm = self.vm(name)?;
        let name = vm.name.clone();
        if vm.state.in_session() {
            return Err(fail(&[
                &format!("Cannot unregister the machine '{name}' while it is locked"),
                "Details: code VBOX_E_INVALID_OBJECT_STATE (0x80bb0007), component MachineWrap, interface IMachine, callee nsISupports",
            ]));
        }
        let uuid = vm.uuid.clone();
        let clones = self
            .all_vms()
            .iter()
            .filter(|v| v.linked_to.as_deref() == Some(uuid.as_str()))
            .count();
        let delete = args.iter().any(|a| a == "--delete" || a == "--delete-all");
        if clones > 0 && delete {
            return Err(fail(&[
                &format!("Cannot delete storage: the medium of '{name}' has {clones} child media"),
                "Details: code VBOX_E_OBJECT_IN_USE (0x80bb000c), component MediumWrap, interface IMedium",
            ]));
        }
        let _ = fs::remove_file(self.vms_dir().join(format!("{uuid}.json")));
        if delete {
            let _ = fs::remove_dir_all(&vm.dir);
            eprintln!("{PROGRESS}");
        }
        Ok(())
    }
}
