//! `snapshot VM take|restore|delete|list` (VBoxManageSnapshot.cpp) and the snapshot tree
//! `showvminfo` prints.

use serde_json::{Map, Value, json};

use crate::fail::{Fail, Res, fail, syntax};
use crate::state::{Fake, s};
use crate::{PROGRESS, ru};

impl Fake {
    pub(crate) fn snapshot(&self, args: &[String]) -> Res {
        let (Some(name), Some(op)) = (args.first(), args.get(1)) else {
            return Err(syntax("Not enough parameters"));
        };
        let mut vm = self.vm(name)?;
        let mut snaps: Vec<Value> = vm["snapshots"].as_array().cloned().unwrap_or_default();
        let find = |snaps: &[Value], n: &str| {
            snaps
                .iter()
                .position(|x| s(x, "name") == n || s(x, "uuid") == n)
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
                let config: Map<String, Value> = [
                    "cpus",
                    "memory",
                    "nics",
                    "uart1",
                    "uartmode1",
                    "nested",
                    "groups",
                ]
                .iter()
                .map(|k| ((*k).to_string(), vm[*k].clone()))
                .collect();
                snaps.push(json!({
                    "name": snap,
                    "uuid": uuid,
                    "parent": vm["current"].clone(),
                    "online": matches!(s(&vm, "state"), "running" | "paused"),
                    "config": config,
                }));
                vm["current"] = json!(uuid);
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
                if matches!(s(&vm, "state"), "running" | "paused") {
                    return Err(fail(&[
                        "Cannot restore a snapshot of a running machine (machine state: Running)",
                        "Details: code VBOX_E_INVALID_VM_STATE (0x80bb0002), component SessionMachine, interface IMachine, callee nsISupports",
                    ]));
                }
                let i = find(&snaps, snap)?;
                if let Some(cfg) = snaps[i]["config"].as_object() {
                    for (k, v) in cfg {
                        vm[k.as_str()] = v.clone();
                    }
                }
                vm["current"] = snaps[i]["uuid"].clone();
                vm["state"] = json!(if snaps[i]["online"].as_bool() == Some(true) {
                    "saved"
                } else {
                    "poweroff"
                });
                println!(
                    "{} '{}' ({})",
                    if self.ru {
                        ru::RESTORING
                    } else {
                        "Restoring snapshot"
                    },
                    s(&snaps[i], "name"),
                    s(&snaps[i], "uuid")
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
                    if x["parent"] == gone["uuid"] {
                        x["parent"] = gone["parent"].clone();
                    }
                }
                if vm["current"] == gone["uuid"] {
                    vm["current"] = gone["parent"].clone();
                }
                println!(
                    "{} '{}' ({})",
                    if self.ru {
                        ru::DELETING
                    } else {
                        "Deleting snapshot"
                    },
                    s(&gone, "name"),
                    s(&gone, "uuid")
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
                        let star = if vm["current"] == x["uuid"] { " *" } else { "" };
                        println!("   Name: {} (UUID: {}){star}", s(x, "name"), s(x, "uuid"));
                    }
                }
                return Ok(());
            }
            other => return Err(syntax(&format!("Invalid parameter '{other}'"))),
        }
        vm["snapshots"] = json!(snaps);
        self.save(&vm);
        Ok(())
    }
}

/// `SnapshotName="…"`, `SnapshotUUID="…"`, children as `SnapshotName-1`, …, then
/// `CurrentSnapshotName`, as VBoxManageInfo.cpp's `showSnapshots` prints them.
pub(crate) fn snapshot_tree(vm: &Value) -> String {
    let snaps: Vec<Value> = vm["snapshots"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    pub(crate) fn walk(snaps: &[Value], vm: &Value, node: &Value, prefix: &str, out: &mut String) {
        // Raw, as VBoxManageInfo.cpp prints snapshot names (no escaping).
        out.push_str(&format!("SnapshotName{prefix}=\"{}\"\n", s(node, "name")));
        out.push_str(&format!("SnapshotUUID{prefix}=\"{}\"\n", s(node, "uuid")));
        if vm["current"] == node["uuid"] {
            out.push_str(&format!("CurrentSnapshotName=\"{}\"\n", s(node, "name")));
            out.push_str(&format!("CurrentSnapshotUUID=\"{}\"\n", s(node, "uuid")));
            out.push_str(&format!("CurrentSnapshotNode=\"SnapshotName{prefix}\"\n"));
        }
        let children: Vec<&Value> = snaps
            .iter()
            .filter(|x| x["parent"] == node["uuid"])
            .collect();
        for (i, c) in children.iter().enumerate() {
            walk(snaps, vm, c, &format!("{prefix}-{}", i + 1), out);
        }
    }
    if let Some(root) = snaps.iter().find(|x| x["parent"].is_null()) {
        walk(&snaps, vm, root, "", &mut out);
    }
    out
}
