//! Snapshots of a node's VM (`VBoxManage snapshot`; names from `showvminfo`).

use super::{LONG, VBoxDriver, VBoxError, args, parse};
use crate::{DriverError, MachineConfig, SnapshotOp};

impl VBoxDriver {
    /// Snapshot names, from `showvminfo --machinereadable` (`SnapshotName*`, never translated).
    pub(super) fn snapshots(&self, vm: &str) -> Result<Vec<String>, VBoxError> {
        Ok(self.vm_info(vm)?.map(|i| i.snapshots).unwrap_or_default())
    }

    pub(super) fn snapshot_vm(
        &self,
        m: &MachineConfig,
        op: &SnapshotOp,
    ) -> Result<Vec<String>, DriverError> {
        let info = self
            .lookup(m)?
            .ok_or_else(|| DriverError::NotCreated { id: m.id.clone() })?;
        if let SnapshotOp::Save(n) | SnapshotOp::Restore(n) | SnapshotOp::Delete(n) = op
            && !parse::snapshot_name_ok(n)
        {
            return Err(VBoxError::BadSnapshotName { name: n.clone() }.into());
        }
        match op {
            SnapshotOp::Save(n) => {
                self.run(&args::snapshot_take(&m.id, n), LONG)?;
            }
            SnapshotOp::Restore(n) => {
                if !info.snapshots.contains(n) {
                    return Err(VBoxError::NoSuchSnapshot {
                        vm: m.id.clone(),
                        name: n.clone(),
                    }
                    .into());
                }
                // VirtualBox restores only powered-off VMs; a running one comes back running.
                let was_up = info.state.is_up();
                if info.state.has_process() {
                    self.force_off(&m.id)?;
                }
                self.run(&args::snapshot_restore(&m.id, n), LONG)?;
                if was_up {
                    self.startvm(&m.id)?;
                }
            }
            SnapshotOp::Delete(n) => {
                self.run(&args::snapshot_delete(&m.id, n), LONG)?;
            }
            SnapshotOp::List => return Ok(info.snapshots),
        }
        Ok(self.snapshots(&m.id)?)
    }
}
