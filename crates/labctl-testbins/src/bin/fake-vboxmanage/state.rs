//! "VirtualBox" kept in the state directory: VMs, host-only interfaces and networks, counters.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::fail::{Fail, not_found};

/// Exclusive access to the state directory for one call (a directory as a lock: std only).
pub(crate) struct StateLock(PathBuf);

impl StateLock {
    pub(crate) fn acquire(state: &Path) -> StateLock {
        let dir = state.join("lock.d");
        let deadline = Instant::now() + Duration::from_secs(20);
        while fs::create_dir(&dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(3));
        }
        StateLock(dir)
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

pub(crate) struct Fake {
    pub(crate) state: PathBuf,
    pub(crate) version: String,
    /// Russian messages (see [`crate::ru`]).
    pub(crate) ru: bool,
    pub(crate) macos: bool,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub(crate) fn write_json(path: &Path, v: &Value) {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    if fs::write(&tmp, text).is_ok() {
        let _ = fs::rename(&tmp, path);
    }
}

pub(crate) fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

pub(crate) fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

impl Fake {
    pub(crate) fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(7)
    }

    pub(crate) fn hostonlynets(&self) -> Vec<Value> {
        read_json(&self.state.join("hostonlynets.json"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    pub(crate) fn vms_dir(&self) -> PathBuf {
        self.state.join("vms")
    }

    pub(crate) fn next_id(&self) -> u64 {
        let p = self.state.join("next-id");
        let n: u64 = fs::read_to_string(&p)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1);
        let _ = fs::write(&p, (n + 1).to_string());
        n
    }

    pub(crate) fn new_uuid(&self) -> String {
        format!("{:08x}-0000-4000-8000-{:012x}", 0xfa4e, self.next_id())
    }

    pub(crate) fn new_mac(&self) -> String {
        format!("080027{:06X}", self.next_id() & 0xff_ffff)
    }

    pub(crate) fn all_vms(&self) -> Vec<Value> {
        let mut vms: Vec<Value> = fs::read_dir(self.vms_dir())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| read_json(&e.path()))
                    .collect()
            })
            .unwrap_or_default();
        vms.sort_by_key(|v| v.get("order").and_then(Value::as_u64).unwrap_or(0));
        vms.into_iter().map(|v| self.settle(v)).collect()
    }

    /// Apply a pending ACPI shutdown whose time has come.
    pub(crate) fn settle(&self, mut vm: Value) -> Value {
        if let Some(at) = vm.get("acpi_off_at").and_then(Value::as_u64)
            && at <= now_ms()
            && s(&vm, "state") == "running"
        {
            vm["state"] = json!("poweroff");
            vm["acpi_off_at"] = Value::Null;
            self.save(&vm);
        }
        vm
    }

    pub(crate) fn find(&self, name_or_uuid: &str) -> Option<Value> {
        self.all_vms()
            .into_iter()
            .find(|v| s(v, "name") == name_or_uuid || s(v, "uuid") == name_or_uuid)
    }

    pub(crate) fn vm(&self, name_or_uuid: &str) -> Result<Value, Fail> {
        self.find(name_or_uuid)
            .ok_or_else(|| not_found(name_or_uuid))
    }

    pub(crate) fn save(&self, vm: &Value) {
        let _ = fs::create_dir_all(self.vms_dir());
        write_json(&self.vms_dir().join(format!("{}.json", s(vm, "uuid"))), vm);
    }

    pub(crate) fn hostonlyifs(&self) -> Vec<Value> {
        read_json(&self.state.join("hostonlyifs.json"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    pub(crate) fn save_hostonlyifs(&self, ifs: &[Value]) {
        write_json(&self.state.join("hostonlyifs.json"), &json!(ifs));
    }

    pub(crate) fn new_vm(&self, name: &str, basefolder: &Path) -> Value {
        let dir = basefolder.join(name);
        let uuid = self.new_uuid();
        let mut nics = Map::new();
        nics.insert(
            "1".into(),
            json!({"type": "nat", "mac": self.new_mac(), "cable": "on", "rules": []}),
        );
        json!({
            "order": self.next_id(),
            "name": name,
            "uuid": uuid,
            "dir": dir,
            "cfgfile": dir.join(format!("{name}.vbox")),
            "ostype": "Debian (64-bit)",
            "state": "poweroff",
            "cpus": 1,
            "memory": 512,
            "groups": "/",
            "nested": "off",
            "nics": nics,
            "uart1": "off",
            "uartmode1": null,
            "extradata": {},
            "snapshots": [],
            "current": null,
            "acpi_off_at": null,
            "linked_to": null,
            "disk": null,
        })
    }

    pub(crate) fn write_vm_files(vm: &Value, disk_name: &str) -> PathBuf {
        let dir = PathBuf::from(s(vm, "dir"));
        let _ = fs::create_dir_all(dir.join("Logs"));
        let _ = fs::write(s(vm, "cfgfile"), "<VirtualBox/>\n");
        let disk = dir.join(disk_name);
        if let Some(parent) = disk.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let _ = fs::write(&disk, b"fake disk\n");
        disk
    }

    /// `FAKE_VBOX_INTERRUPT=sub:N`: the first N calls of `sub` die after writing the machine
    /// folder (the process is killed: no message, exit 137).
    pub(crate) fn interrupted(&self, sub: &str) -> Option<Fail> {
        for spec in env_list("FAKE_VBOX_INTERRUPT") {
            let Some((name, n)) = spec.split_once(':') else {
                continue;
            };
            if name != sub {
                continue;
            }
            let n: u64 = n.parse().unwrap_or(0);
            let counter = self.state.join(format!("interrupt-{name}.count"));
            let done: u64 = fs::read_to_string(&counter)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            if done < n {
                let _ = fs::write(&counter, (done + 1).to_string());
                return Some(Fail {
                    stderr: String::new(),
                    code: 137,
                });
            }
        }
        None
    }
}
