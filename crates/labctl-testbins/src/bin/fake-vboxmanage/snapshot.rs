//! `snapshot VM take|restore|delete|list` (VBoxManageSnapshot.cpp) and the snapshot tree
//! `showvminfo` prints.

use crate::fail::{Fail, Res, fail, syntax};
use crate::model::{Snapshot, Vm, VmState};
use crate::state::Fake;
use crate::{PROGRESS, ru};

impl Fake {
    pub(crate) fn snapshot(&self, args: &[String]) -> Res {
        let (Some(name), Some(op)) = (args.first(), args.get(1)) else {
            return Err(syntax("Not enough parameters"));
        };
        let mut vm = self.vm(name)?;
        let mut snaps: Vec<Snapshot> = vm.snapshots.clone();
        let find = |snaps: &[Snapshot], n: &str| {
            snaps
                .iter()
                .position(|x| x.name == n || x.uuid == n)
                .ok_or_else(|| {
                    fail(&[
                        &format!("Could not find a snapshot named '{n}'"),
                        "Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component SnapshotMachineWrap, interface IMachine, callee nsISupports",
                    ])
                })
        };
        match op.as_str() {
            "take" => {
                let Some(snap) = args.get(2) else {
                    return Err(syntax("Missing snapshot name"));
                };
                let uuid = self.new_uuid();
                snaps.push(Snapshot {
                    name: snap.clone(),
                    uuid: uuid.clone(),
                    parent: vm.current.clone(),
                    online: vm.state.in_session(),
                    config: vm.config.clone(),
                });
                vm.current = Some(uuid.clone());
                eprintln!("{PROGRESS}");
                if self.ru {
                    println!("{} {uuid}", ru::SNAPSHOT_TAKEN);
                } else {
                    println!("Snapshot taken. UUID: {uuid}");
                }
            }
            "restore" => {
                let Some(snap) = args.get(2) else {
                    return Err(syntax("Expecting snapshot name only"));
                };
                if vm.state.in_session() {
                    return Err(fail(&[
                        "Cannot restore a snapshot of a running machine (machine state: Running)",
                        "Details: code VBOX_E_INVALID_VM_STATE (0x80bb0002), component SessionMachine, interface IMachine, callee nsISupports",
                    ]));
                }
                let i = find(&snaps, snap)?;
                vm.config = snaps[i].config.clone();
                vm.current = Some(snaps[i].uuid.clone());
                vm.state = if snaps[i].online {
                    VmState::Saved
                } else {
                    VmState::Poweroff
                };
                println!(
                    "{} '{}' ({})",
                    if self.ru {
                        ru::RESTORING
                    } else {
                        "Restoring snapshot"
                    },
                    snaps[i].name,
                    snaps[i].uuid
                );
                eprintln!("{PROGRESS}");
            }
            "delete" => {
                let Some(snap) = args.get(2) else {
                    return Err(syntax("Expecting snapshot name only"));
                };
                let i = find(&snaps, snap)?;
                let gone = snaps.remove(i);
                for x in &mut snaps {
                    if x.parent.as_deref() == Some(gone.uuid.as_str()) {
                        x.parent.clone_from(&gone.parent);
                    }
                }
                if vm.current.as_deref() == Some(gone.uuid.as_str()) {
                    vm.current.clone_from(&gone.parent);
                }
                println!(
                    "{} '{}' ({})",
                    if self.ru {
                        ru::DELETING
                    } else {
                        "Deleting snapshot"
                    },
                    gone.name,
                    gone.uuid
                );
                eprintln!("{PROGRESS}");
            }
            "list" => {
                if snaps.is_empty() {
                    println!(
                        "{}",
                        if self.ru {
                            ru::NO_SNAPSHOTS
                        } else {
                            "This machine does not have any snapshots"
                        }
                    );
                    return Err(Fail {
                        stderr: String::new(),
                        code: 1,
                    });
                }
                if args.iter().any(|a| a == "--machinereadable") {
                    print!("{}", snapshot_tree(&vm));
                } else {
                    for x in &snaps {
                        let star = if vm.current.as_deref() == Some(x.uuid.as_str()) {
                            " *"
                        } else {
                            ""
                        };
                        println!("   Name: {} (UUID: {}){star}", x.name, x.uuid);
                    }
                }
                return Ok(());
            }
            other => return Err(syntax(&format!("Invalid parameter '{other}'"))),
        }
        vm.snapshots = snaps;
        self.save(&vm);
        Ok(())
    }
}

/// `SnapshotName="…"`, `SnapshotUUID="…"`, children as `SnapshotName-1`, …, then
/// `CurrentSnapshotName`, as VBoxManageInfo.cpp's `showSnapshots` prints them.
pub(crate) fn snapshot_tree(vm: &Vm) -> String {
    let snaps = &vm.snapshots;
    let mut out = String::new();
    fn walk(snaps: &[Snapshot], vm: &Vm, node: &Snapshot, prefix: &str, out: &mut String) {
        // Raw, as VBoxManageInfo.cpp prints snapshot names (no escaping).
        out.push_str(&format!("SnapshotName{prefix}=\"{}\"\n", node.name));
        out.push_str(&format!("SnapshotUUID{prefix}=\"{}\"\n", node.uuid));
        if vm.current.as_deref() == Some(node.uuid.as_str()) {
            out.push_str(&format!("CurrentSnapshotName=\"{}\"\n", node.name));
            out.push_str(&format!("CurrentSnapshotUUID=\"{}\"\n", node.uuid));
            out.push_str(&format!("CurrentSnapshotNode=\"SnapshotName{prefix}\"\n"));
        }
        let children: Vec<&Snapshot> = snaps
            .iter()
            .filter(|x| x.parent.as_deref() == Some(node.uuid.as_str()))
            .collect();
        for (i, c) in children.iter().enumerate() {
            walk(snaps, vm, c, &format!("{prefix}-{}", i + 1), out);
        }
    }
    if let Some(root) = snaps.iter().find(|x| x.parent.is_none()) {
        walk(snaps, vm, root, "", &mut out);
    }
    out
}
