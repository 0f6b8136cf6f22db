//! "VirtualBox" kept in the state directory: VMs, host-only interfaces and networks, counters.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fail::{Fail, not_found};
use crate::model::{Config, HostOnlyIf, HostOnlyNet, Nic, Vm, VmState};

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

pub(crate) fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    if fs::write(&tmp, text).is_ok() {
        let _ = fs::rename(&tmp, path);
    }
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

impl Fake {
    pub(crate) fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(7)
    }

    fn hostonlynets_path(&self) -> PathBuf {
        self.state.join("hostonlynets.json")
    }

    pub(crate) fn hostonlynets(&self) -> Vec<HostOnlyNet> {
        read_json(&self.hostonlynets_path()).unwrap_or_default()
    }

    pub(crate) fn save_hostonlynets(&self, nets: &[HostOnlyNet]) {
        write_json(&self.hostonlynets_path(), nets);
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

    pub(crate) fn all_vms(&self) -> Vec<Vm> {
        let mut vms: Vec<Vm> = fs::read_dir(self.vms_dir())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| read_json(&e.path()))
                    .collect()
            })
            .unwrap_or_default();
        vms.sort_by_key(|v| v.order);
        vms.into_iter().map(|v| self.settle(v)).collect()
    }

    /// Apply a pending ACPI shutdown whose time has come.
    pub(crate) fn settle(&self, mut vm: Vm) -> Vm {
        if let Some(at) = vm.acpi_off_at
            && at <= now_ms()
            && vm.state == VmState::Running
        {
            vm.state = VmState::Poweroff;
            vm.acpi_off_at = None;
            self.save(&vm);
        }
        vm
    }

    pub(crate) fn find(&self, name_or_uuid: &str) -> Option<Vm> {
        self.all_vms()
            .into_iter()
            .find(|v| v.name == name_or_uuid || v.uuid == name_or_uuid)
    }

    pub(crate) fn vm(&self, name_or_uuid: &str) -> Result<Vm, Fail> {
        self.find(name_or_uuid)
            .ok_or_else(|| not_found(name_or_uuid))
    }

    pub(crate) fn save(&self, vm: &Vm) {
        let _ = fs::create_dir_all(self.vms_dir());
        write_json(&self.vms_dir().join(format!("{}.json", vm.uuid)), vm);
    }

    pub(crate) fn hostonlyifs(&self) -> Vec<HostOnlyIf> {
        read_json(&self.state.join("hostonlyifs.json")).unwrap_or_default()
    }

    pub(crate) fn save_hostonlyifs(&self, ifs: &[HostOnlyIf]) {
        write_json(&self.state.join("hostonlyifs.json"), ifs);
    }

    pub(crate) fn new_vm(&self, name: &str, basefolder: &Path) -> Vm {
        let dir = basefolder.join(name);
        let uuid = self.new_uuid();
        let nat = Nic::new("nat", self.new_mac());
        Vm {
            order: self.next_id(),
            name: name.to_string(),
            uuid,
            cfgfile: dir.join(format!("{name}.vbox")),
            dir,
            ostype: "Debian (64-bit)".into(),
            state: VmState::Poweroff,
            config: Config {
                cpus: 1,
                memory: 512,
                groups: "/".into(),
                nested: "off".into(),
                nics: [(1, nat)].into_iter().collect(),
                uart1: "off".into(),
                uartmode1: None,
            },
            extradata: Default::default(),
            snapshots: Vec::new(),
            current: None,
            acpi_off_at: None,
            linked_to: None,
            disk: None,
        }
    }

    pub(crate) fn write_vm_files(vm: &Vm, disk_name: &str) -> PathBuf {
        let _ = fs::create_dir_all(vm.dir.join("Logs"));
        let _ = fs::write(&vm.cfgfile, "<VirtualBox/>\n");
        let disk = vm.dir.join(disk_name);
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
