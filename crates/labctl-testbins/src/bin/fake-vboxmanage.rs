//! `fake-vboxmanage` — a **test program**: a stand-in for VBoxManage; VirtualBox cannot run on
//! this machine (no hardware virtualization for it, and no Debian 12 package). It is never
//! shipped; labctl's tests point `LABCTL_VBOXMANAGE` (or `VBoxConfig::vboxmanage`) at it.
//!
//! It keeps "VirtualBox" in a directory given by `FAKE_VBOX_STATE`: one JSON file per VM under
//! `vms/`, `hostonlyifs.json`, `global-extradata.json`, and `calls.log` with every argv it was
//! given, one call per line (for snapshot tests of call sequences). Output formats follow
//! VirtualBox's sources (`src/VBox/Frontends/VBoxManage/VBoxManage{Info,List,Hostonly,Snapshot,
//! Misc}.cpp` in github.com/VirtualBox/virtualbox): `showvminfo --machinereadable` key=value
//! lines, `"name" {uuid}` lists, `Name:`/`IPAddress:` blocks, `VBoxManage: error:` messages.
//!
//! Environment:
//! - `FAKE_VBOX_STATE` (required): the state directory.
//! - `FAKE_VBOX_VERSION`: what `--version` prints (default `7.0.20r163906`).
//! - `FAKE_VBOX_FAIL_EXIT0=sub[,sub…]`: those subcommands print `VBoxManage: error: …` on stderr,
//!   do nothing, and exit 0 (VirtualBox does that sometimes).
//! - `FAKE_VBOX_TRANSIENT=sub:N[,…]`: the first N calls of a subcommand fail with a session-lock
//!   error (`VBOX_E_INVALID_OBJECT_STATE`), later ones work.
//! - `FAKE_VBOX_NO_VTX=1`: `startvm` fails with `VERR_VMX_NO_VMX`.
//! - `FAKE_VBOX_ACPI=ignore`: the guest ignores the ACPI power button.
//! - `FAKE_VBOX_ACPI_DELAY_MS`: how long the guest takes to power off after it (default 150).
//! - Language, as VirtualBox 7 picks it (VirtualBoxTranslator.cpp): `FAKE_VBOX_LANGUAGE_ID`
//!   (VirtualBox's own language setting, which wins over the environment), else `LC_ALL`, else
//!   `LC_MESSAGES`, else `LANG`. `ru*` prints the human-readable messages in Russian, with the
//!   texts of VirtualBox's `VBoxManageNls_ru.ts` ([`ru`]); machine-readable output is never
//!   translated.
//! - `FAKE_VBOX_HOST=macos`: a macOS host. With VirtualBox 7 there are no host-only interfaces
//!   (`hostonlyif create` fails on /dev/vboxnetctl, a VM with one fails at `startvm`: "Host-only
//!   adapters are no longer supported!"); `hostonlynet add` and `list hostonlynets` work.
//! - `FAKE_VBOX_VERSION=7.0.0`: `showvminfo` omits `Forwarding(n)` lines when NIC 1 has several
//!   rules (the 7.0.0 bug Vagrant works around in version_7_0.rb).
//! - `FAKE_VBOX_TAKEN_PORTS=P[,…]`: those host ports are taken (`first-ssh`: the SSH port of the
//!   first VM started, whatever it is); NAT logs `NAT: Failed to redirect
//!   TCP 127.0.0.1:P -> 0.0.0.0:G (Address already in use)` to the VM's `Logs/VBox.log` and the VM
//!   boots anyway (slirp.c returns 1, DrvNAT.cpp tests `< 0`).
//! - `FAKE_VBOX_STARTVM_EXIT1=1`: `startvm` starts the VM, then reports an error and exits 1.
//! - `FAKE_VBOX_GURU=1`: the guest crashes at `startvm` into `gurumeditation`, logged in VBox.log.
//! - `FAKE_VBOX_INTERRUPT=sub:N`: the first N `import`/`clonevm` calls die half-way: the machine
//!   folder and its settings file exist, nothing is registered.
//! - `FAKE_VBOX_CRLF=1`: every output line ends in CRLF (VBoxManage.exe on Windows).
//! - `FAKE_VBOX_REPLAY=FILE`: answer from a transcript (`LABCTL_VBOX_RECORD` JSON lines): each
//!   call gets the first unused recorded call with the same argv, its stdout, stderr and exit.
// A test program: re-runs itself as the recorded VBoxManage would be run.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

const DEFAULT_VERSION: &str = "7.0.20r163906";
const PROGRESS: &str = "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%";
const MAX_NICS: u8 = 8;
/// The NAT MAC of a box whose OVF names none.
const BOX_MAC: &str = "080027B0C5E1";

/// A failed call: stderr text and exit code.
struct Fail {
    stderr: String,
    code: u8,
}

type Res = Result<(), Fail>;

fn fail(lines: &[&str]) -> Fail {
    Fail {
        stderr: lines
            .iter()
            .map(|l| format!("VBoxManage: error: {l}\n"))
            .collect(),
        code: 1,
    }
}

fn syntax(msg: &str) -> Fail {
    Fail {
        stderr: format!("VBoxManage: error: {msg}\n"),
        code: 2,
    }
}

fn not_found(name: &str) -> Fail {
    fail(&[
        &format!("Could not find a registered machine named '{name}'"),
        "Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component VirtualBoxWrap, interface IVirtualBox, callee nsISupports",
        "Context: \"FindMachine(Bstr(a->argv[0]).raw(), machine.asOutParam())\" at line 2791 of file VBoxManageInfo.cpp",
    ])
}

fn locked(name: &str) -> Fail {
    fail(&[
        &format!("The machine '{name}' is already locked for a session (or being unlocked)"),
        "Details: code VBOX_E_INVALID_OBJECT_STATE (0x80bb0007), component MachineWrap, interface IMachine, callee nsISupports",
        "Context: \"LockMachine(a->session, LockType_Write)\" at line 640 of file VBoxManageModifyVM.cpp",
    ])
}

fn not_running(name: &str) -> Fail {
    fail(&[&format!("Machine '{name}' is not currently running")])
}

/// Exclusive access to the state directory for one call (a directory as a lock: std only).
struct StateLock(PathBuf);

impl StateLock {
    fn acquire(state: &Path) -> StateLock {
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

struct Fake {
    state: PathBuf,
    version: String,
    /// Russian messages (see [`ru`]).
    ru: bool,
    macos: bool,
}

/// Human-readable messages in VirtualBox's Russian translation
/// (src/VBox/Frontends/VBoxManage/nls/VBoxManageNls_ru.ts, contexts Snapshot, Misc, HostOnly,
/// List). `getextradata`'s `Value:` was not looked up: it is marked `[ru]` so that it is still
/// not English.
mod ru {
    /// VBoxManageSnapshot.cpp:530 "This machine does not have any snapshots"
    pub const NO_SNAPSHOTS: &str = "У этой машины нет снимков";
    /// VBoxManageSnapshot.cpp:493 "Snapshot taken. UUID: %ls"
    pub const SNAPSHOT_TAKEN: &str = "Снимок сделан. UUID:";
    /// VBoxManageSnapshot.cpp:549-550 "%s snapshot '%ls' (%ls)", Restoring / Deleting
    pub const RESTORING: &str = "Восстановление снимка";
    pub const DELETING: &str = "Удаление снимка";
    /// VBoxManageMisc.cpp:2670 "Waiting for VM '%ls' to power on..."
    pub const WAITING: (&str, &str) = ("Ожидание запуска ВМ '", "'...");
    /// VBoxManageMisc.cpp:2685 "VM '%ls' (%ls) has been successfully started."
    pub const STARTED: &str = "успешно запущена.";
    /// VBoxManageHostonly.cpp:114 "Interface '%ls' was successfully created"
    pub const IF_CREATED: (&str, &str) = ("Интерфейс '", "' успешно создан");
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn quote_arg(a: &str) -> String {
    if a.is_empty() || a.contains([' ', '\'', '"']) {
        format!("'{}'", a.replace('\'', "'\\''"))
    } else {
        a.to_string()
    }
}

/// VirtualBox's machine-readable string escaping.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn write_json(path: &Path, v: &Value) {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    if fs::write(&tmp, text).is_ok() {
        let _ = fs::rename(&tmp, path);
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

impl Fake {
    fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(7)
    }

    fn hostonlynets(&self) -> Vec<Value> {
        read_json(&self.state.join("hostonlynets.json"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    fn vms_dir(&self) -> PathBuf {
        self.state.join("vms")
    }

    fn next_id(&self) -> u64 {
        let p = self.state.join("next-id");
        let n: u64 = fs::read_to_string(&p)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1);
        let _ = fs::write(&p, (n + 1).to_string());
        n
    }

    fn new_uuid(&self) -> String {
        format!("{:08x}-0000-4000-8000-{:012x}", 0xfa4e, self.next_id())
    }

    fn new_mac(&self) -> String {
        format!("080027{:06X}", self.next_id() & 0xff_ffff)
    }

    fn all_vms(&self) -> Vec<Value> {
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
    fn settle(&self, mut vm: Value) -> Value {
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

    fn find(&self, name_or_uuid: &str) -> Option<Value> {
        self.all_vms()
            .into_iter()
            .find(|v| s(v, "name") == name_or_uuid || s(v, "uuid") == name_or_uuid)
    }

    fn vm(&self, name_or_uuid: &str) -> Result<Value, Fail> {
        self.find(name_or_uuid)
            .ok_or_else(|| not_found(name_or_uuid))
    }

    fn save(&self, vm: &Value) {
        let _ = fs::create_dir_all(self.vms_dir());
        write_json(&self.vms_dir().join(format!("{}.json", s(vm, "uuid"))), vm);
    }

    fn hostonlyifs(&self) -> Vec<Value> {
        read_json(&self.state.join("hostonlyifs.json"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    fn save_hostonlyifs(&self, ifs: &[Value]) {
        write_json(&self.state.join("hostonlyifs.json"), &json!(ifs));
    }

    fn new_vm(&self, name: &str, basefolder: &Path) -> Value {
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

    fn write_vm_files(vm: &Value, disk_name: &str) -> PathBuf {
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
    fn interrupted(&self, sub: &str) -> Option<Fail> {
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

    fn run(&self, args: &[String]) -> Res {
        let sub = args.first().map_or("", String::as_str);
        match sub {
            "--version" | "-v" | "-V" | "-version" => {
                println!("{}", self.version);
                Ok(())
            }
            "list" => self.list(&args[1..]),
            "showvminfo" => self.showvminfo(&args[1..]),
            "import" => self.import(&args[1..]),
            "clonevm" => self.clonevm(&args[1..]),
            "modifyvm" => self.modifyvm(&args[1..]),
            "startvm" => self.startvm(&args[1..]),
            "controlvm" => self.controlvm(&args[1..]),
            "unregistervm" => self.unregistervm(&args[1..]),
            "snapshot" => self.snapshot(&args[1..]),
            "hostonlyif" => self.hostonlyif(&args[1..]),
            "hostonlynet" => self.hostonlynet(&args[1..]),
            "setextradata" => self.setextradata(&args[1..]),
            "getextradata" => self.getextradata(&args[1..]),
            "" => Err(syntax("No command specified")),
            other => Err(syntax(&format!("Invalid command '{other}'"))),
        }
    }

    fn list(&self, args: &[String]) -> Res {
        match args.first().map(String::as_str) {
            Some("vms") => {
                for vm in self.all_vms() {
                    println!("\"{}\" {{{}}}", s(&vm, "name"), s(&vm, "uuid"));
                }
                Ok(())
            }
            Some("runningvms") => {
                for vm in self.all_vms() {
                    if matches!(s(&vm, "state"), "running" | "paused") {
                        println!("\"{}\" {{{}}}", s(&vm, "name"), s(&vm, "uuid"));
                    }
                }
                Ok(())
            }
            Some("hostonlyifs") => {
                if self.macos && self.major() >= 7 {
                    // No host-only interfaces on macOS with VirtualBox 7.
                    return Ok(());
                }
                for i in self.hostonlyifs() {
                    let name = s(&i, "name");
                    if self.ru {
                        // VBoxManageNls_ru.ts, context List (VBoxManageList.cpp:167-201).
                        println!("Имя:            {name}");
                        println!("GUID:            {}", s(&i, "guid"));
                        println!("DHCP:            Отключено");
                        println!("IP адрес:       {}", s(&i, "ip"));
                        println!("Сетевая маска:     {}", s(&i, "netmask"));
                        println!("IPV6 адрес:     ");
                        println!("Длина префикса сетевой маски IPV6: 0");
                        println!(
                            "Аппаратный адрес: 0a:00:27:00:00:{:02x}",
                            i["index"].as_u64().unwrap_or(0)
                        );
                        println!("Тип носителя:      Ethernet");
                        println!("Беспроводный:        Нет");
                        println!("Статус:          Up");
                        println!("Имя сети VBox: HostInterfaceNetworking-{name}\n");
                        continue;
                    }
                    println!("Name:            {name}");
                    println!("GUID:            {}", s(&i, "guid"));
                    println!("DHCP:            Disabled");
                    println!("IPAddress:       {}", s(&i, "ip"));
                    println!("NetworkMask:     {}", s(&i, "netmask"));
                    println!("IPV6Address:     ");
                    println!("IPV6NetworkMaskPrefixLength: 0");
                    println!(
                        "HardwareAddress: 0a:00:27:00:00:{:02x}",
                        i["index"].as_u64().unwrap_or(0)
                    );
                    println!("MediumType:      Ethernet");
                    println!("Wireless:        No");
                    println!("Status:          Up");
                    println!("VBoxNetworkName: HostInterfaceNetworking-{name}\n");
                }
                Ok(())
            }
            Some("hostonlynets") if self.major() >= 7 => {
                for n in self.hostonlynets() {
                    if self.ru {
                        // VBoxManageNls_ru.ts, context List (VBoxManageList.cpp:226-248; the
                        // last line has no translation).
                        println!("Имя:            {}", s(&n, "name"));
                        println!("GUID:            {}\n", s(&n, "guid"));
                        println!("Состояние:           Включено");
                        println!("Сетевая маска:     {}", s(&n, "netmask"));
                        println!("Нижний IP:         {}", s(&n, "lower"));
                        println!("Верхний IP:         {}", s(&n, "upper"));
                        println!("VBoxNetworkName: hostonly-{}\n", s(&n, "name"));
                        continue;
                    }
                    // VBoxManageList.cpp listHostOnlyNetworks (7.0): note the blank line after GUID.
                    println!("Name:            {}", s(&n, "name"));
                    println!("GUID:            {}\n", s(&n, "guid"));
                    println!("State:           Enabled");
                    println!("NetworkMask:     {}", s(&n, "netmask"));
                    println!("LowerIP:         {}", s(&n, "lower"));
                    println!("UpperIP:         {}", s(&n, "upper"));
                    println!("VBoxNetworkName: hostonly-{}\n", s(&n, "name"));
                }
                Ok(())
            }
            Some(other) => Err(syntax(&format!("Unknown subcommand: {other}"))),
            None => Err(syntax("Missing subcommand for \"list\" command.")),
        }
    }

    fn showvminfo(&self, args: &[String]) -> Res {
        let Some(name) = args.first() else {
            return Err(syntax("VM name or UUID required"));
        };
        let vm = self.vm(name)?;
        if args.iter().any(|a| a == "--machinereadable") {
            print!("{}", self.machine_readable(&vm));
        } else {
            println!("Name:                        {}", s(&vm, "name"));
            println!("UUID:                        {}", s(&vm, "uuid"));
            println!("State:                       {}", s(&vm, "state"));
        }
        Ok(())
    }

    fn machine_readable(&self, vm: &Value) -> String {
        let mut o = String::new();
        let major = self.major();
        let dir = s(vm, "dir").to_string();
        q(&mut o, "name", s(vm, "name"));
        if major >= 7 {
            q(&mut o, "encryption", "disabled");
        }
        q(&mut o, "groups", s(vm, "groups"));
        q(&mut o, "ostype", s(vm, "ostype"));
        q(&mut o, "UUID", s(vm, "uuid"));
        q(&mut o, "CfgFile", s(vm, "cfgfile"));
        q(&mut o, "SnapFldr", &format!("{dir}/Snapshots"));
        q(&mut o, "LogFldr", &format!("{dir}/Logs"));
        q(&mut o, "hardwareuuid", s(vm, "uuid"));
        n(&mut o, "memory", &vm["memory"].to_string());
        q(&mut o, "pagefusion", "off");
        n(&mut o, "vram", "16");
        n(&mut o, "cpuexecutioncap", "100");
        q(&mut o, "hpet", "off");
        q(&mut o, "cpu-profile", "host");
        q(&mut o, "chipset", "piix3");
        q(&mut o, "firmware", "BIOS");
        n(&mut o, "cpus", &vm["cpus"].to_string());
        for (k, v) in [
            ("pae", "on"),
            ("longmode", "on"),
            ("triplefaultreset", "off"),
            ("apic", "on"),
            ("x2apic", "on"),
        ] {
            q(&mut o, k, v);
        }
        q(&mut o, "nested-hw-virt", s(vm, "nested"));
        n(&mut o, "cpuid-portability-level", "0");
        for (k, v) in [
            ("bootmenu", "messageandmenu"),
            ("boot1", "floppy"),
            ("boot2", "dvd"),
            ("boot3", "disk"),
            ("boot4", "none"),
            ("acpi", "on"),
            ("ioapic", "on"),
            ("biosapic", "apic"),
        ] {
            q(&mut o, k, v);
        }
        n(&mut o, "biossystemtimeoffset", "0");
        for (k, v) in [
            ("rtcuseutc", "on"),
            ("hwvirtex", "on"),
            ("nestedpaging", "on"),
            ("largepages", "off"),
            ("vtxvpid", "on"),
            ("vtxux", "on"),
            ("paravirtprovider", "default"),
            ("effparavirtprovider", "kvm"),
        ] {
            q(&mut o, k, v);
        }
        q(&mut o, "VMState", s(vm, "state"));
        q(&mut o, "VMStateChangeTime", "2026-01-05T09:00:00.000000000");
        q(&mut o, "graphicscontroller", "vmsvga");
        n(&mut o, "monitorcount", "1");
        for (k, v) in [
            ("storagecontrollername0", "SATA Controller"),
            ("storagecontrollertype0", "IntelAhci"),
            ("storagecontrollerinstance0", "0"),
            ("storagecontrollermaxportcount0", "30"),
            ("storagecontrollerportcount0", "1"),
            ("storagecontrollerbootable0", "on"),
        ] {
            q(&mut o, k, v);
        }
        q(&mut o, "\"SATA Controller-0-0\"", s(vm, "disk"));
        let nics = vm["nics"].as_object().cloned().unwrap_or_default();
        for i in 1..=MAX_NICS {
            let Some(nic) = nics.get(&i.to_string()) else {
                q(&mut o, &format!("nic{i}"), "none");
                continue;
            };
            let ty = s(nic, "type");
            match ty {
                "nat" => q(&mut o, &format!("natnet{i}"), "nat"),
                "hostonly" => q(&mut o, &format!("hostonlyadapter{i}"), s(nic, "hostonly")),
                // VBoxManageInfo.cpp:1813
                "hostonlynet" => q(
                    &mut o,
                    &format!("hostonly-network{i}"),
                    s(nic, "hostonlynet"),
                ),
                "intnet" => q(&mut o, &format!("intnet{i}"), s(nic, "intnet")),
                _ => {}
            }
            if ty == "none" {
                q(&mut o, &format!("nic{i}"), "none");
                continue;
            }
            q(&mut o, &format!("macaddress{i}"), s(nic, "mac"));
            q(&mut o, &format!("cableconnected{i}"), s(nic, "cable"));
            // VBoxManageInfo.cpp prints the host-only network attachment as `hostonlynetwork`
            // (the modifyvm type is `hostonlynet`).
            let shown = if ty == "hostonlynet" {
                "hostonlynetwork"
            } else {
                ty
            };
            q(&mut o, &format!("nic{i}"), shown);
            q(&mut o, &format!("nictype{i}"), "82540EM");
            q(&mut o, &format!("nicspeed{i}"), "0");
            if ty == "nat" {
                for (k, v) in [
                    ("mtu", "0"),
                    ("sockSnd", "64"),
                    ("sockRcv", "64"),
                    ("tcpWndSnd", "64"),
                    ("tcpWndRcv", "64"),
                ] {
                    q(&mut o, k, v);
                }
                let rules = nic["rules"].as_array().cloned().unwrap_or_default();
                // 7.0.0 printed no Forwarding lines for an adapter with several rules.
                let omit = self.version.starts_with("7.0.0") && rules.len() > 1;
                for (r, rule) in rules.iter().enumerate().filter(|_| !omit) {
                    // VirtualBox does not escape these (see the @todo in VBoxManageInfo.cpp).
                    o.push_str(&format!(
                        "Forwarding({r})=\"{}\"\n",
                        rule.as_str().unwrap_or_default()
                    ));
                }
            }
        }
        q(&mut o, "hidpointing", "ps2mouse");
        q(&mut o, "hidkeyboard", "ps2kbd");
        q(&mut o, "uart1", s(vm, "uart1"));
        if let Some(mode) = vm["uartmode1"].as_str() {
            q(&mut o, "uartmode1", mode);
            q(&mut o, "uarttype1", "16550A");
        }
        for (k, v) in [
            ("uart2", "off"),
            ("audio", "none"),
            ("clipboard", "disabled"),
            ("vrde", "off"),
            ("usb", "off"),
        ] {
            q(&mut o, k, v);
        }
        o.push_str(&snapshot_tree(vm));
        o
    }

    fn import(&self, args: &[String]) -> Res {
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
        if Path::new(s(&vm, "cfgfile")).exists() || self.find(&name).is_some() {
            return Err(fail(&[
                &format!(
                    "Machine settings file '{}' already exists",
                    s(&vm, "cfgfile")
                ),
                "Details: code VBOX_E_FILE_ERROR (0x80bb0004), component MachineWrap, interface IMachine",
            ]));
        }
        let disk = Self::write_vm_files(&vm, &format!("{name}-disk001.vmdk"));
        if let Some(f) = self.interrupted("import") {
            return Err(f);
        }
        vm["disk"] = json!(disk);
        vm["memory"] = json!(1024);
        vm["cpus"] = json!(2);
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
            vm["nics"]["1"]["mac"] = json!(mac);
        }
        self.save(&vm);
        eprintln!("{PROGRESS}");
        println!("Interpreting {ovf}...\nOK.\n{PROGRESS}\nSuccessfully imported the appliance.");
        Ok(())
    }

    fn clonevm(&self, args: &[String]) -> Res {
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

    fn modifyvm(&self, args: &[String]) -> Res {
        let Some(name) = args.first() else {
            return Err(syntax("Not enough parameters"));
        };
        let mut vm = self.vm(name)?;
        if !matches!(s(&vm, "state"), "poweroff" | "aborted") {
            return Err(locked(s(&vm, "name")));
        }
        let mut it = args[1..].iter();
        let value = |it: &mut std::slice::Iter<'_, String>, opt: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| syntax(&format!("Missing argument to '{opt}'")))
        };
        while let Some(opt) = it.next() {
            let (key, idx) = split_index(opt);
            let nic_key = idx.to_string();
            let nic_ok = (1..=MAX_NICS).contains(&idx);
            match key {
                "--cpus" => vm["cpus"] = json!(parse_num(&value(&mut it, opt)?)?),
                "--memory" => vm["memory"] = json!(parse_num(&value(&mut it, opt)?)?),
                "--groups" => vm["groups"] = json!(value(&mut it, opt)?),
                "--nested-hw-virt" => {
                    let v = value(&mut it, opt)?;
                    if v != "on" && v != "off" {
                        return Err(syntax(&format!("Invalid --nested-hw-virt argument '{v}'")));
                    }
                    vm["nested"] = json!(v);
                }
                "--nic" if nic_ok => {
                    let ty = value(&mut it, opt)?;
                    if ![
                        "none",
                        "null",
                        "nat",
                        "bridged",
                        "intnet",
                        "hostonly",
                        "hostonlynet",
                        "generic",
                        "natnetwork",
                    ]
                    .contains(&ty.as_str())
                    {
                        return Err(syntax(&format!(
                            "Invalid type '{ty}' specfied for NIC {idx}"
                        )));
                    }
                    nic_entry(self, &mut vm, &nic_key)["type"] = json!(ty);
                }
                "--macaddress" if nic_ok => {
                    let mac = value(&mut it, opt)?;
                    if mac.len() != 12 || !mac.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(fail(&[&format!("Invalid MAC address format '{mac}'")]));
                    }
                    nic_entry(self, &mut vm, &nic_key)["mac"] = json!(mac);
                }
                "--cableconnected" if nic_ok => {
                    let v = value(&mut it, opt)?;
                    nic_entry(self, &mut vm, &nic_key)["cable"] = json!(v);
                }
                "--hostonlyadapter" if nic_ok => {
                    let v = value(&mut it, opt)?;
                    nic_entry(self, &mut vm, &nic_key)["hostonly"] = json!(v);
                }
                "--host-only-net" if nic_ok && self.major() >= 7 => {
                    let v = value(&mut it, opt)?;
                    nic_entry(self, &mut vm, &nic_key)["hostonlynet"] = json!(v);
                }
                "--nat-localhostreachable" if nic_ok && self.major() >= 7 => {
                    let v = value(&mut it, opt)?;
                    if v != "on" && v != "off" {
                        return Err(syntax(&format!(
                            "Invalid --nat-localhostreachable{idx} argument '{v}'"
                        )));
                    }
                    nic_entry(self, &mut vm, &nic_key)["localhostreachable"] = json!(v);
                }
                "--intnet" if nic_ok => {
                    let v = value(&mut it, opt)?;
                    nic_entry(self, &mut vm, &nic_key)["intnet"] = json!(v);
                }
                "--nictype" if nic_ok => {
                    value(&mut it, opt)?;
                }
                "--natpf" if nic_ok => {
                    let v = value(&mut it, opt)?;
                    let nic = nic_entry(self, &mut vm, &nic_key);
                    let mut rules: Vec<String> = nic["rules"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|r| r.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    if v == "delete" {
                        let rule = value(&mut it, opt)?;
                        let before = rules.len();
                        rules.retain(|r| r.split(',').next() != Some(rule.as_str()));
                        if rules.len() == before {
                            return Err(fail(&[
                                "A NAT rule for this name does not exist",
                                "Details: code NS_ERROR_INVALID_ARG (0x80070057), component NATEngineWrap, interface INATEngine",
                            ]));
                        }
                    } else {
                        let f: Vec<&str> = v.split(',').collect();
                        if f.len() != 6
                            || f[3].parse::<u16>().is_err()
                            || f[5].parse::<u16>().is_err()
                        {
                            return Err(syntax(&format!("Invalid NAT rule '{v}'")));
                        }
                        if rules.iter().any(|r| {
                            let g: Vec<&str> = r.split(',').collect();
                            g[0] == f[0] || (g.get(3) == Some(&f[3]) && g.get(2) == Some(&f[2]))
                        }) {
                            return Err(fail(&[
                                "A NAT rule of this name already exists",
                                "Details: code NS_ERROR_INVALID_ARG (0x80070057), component NATEngineWrap, interface INATEngine",
                            ]));
                        }
                        rules.push(v);
                    }
                    nic["rules"] = json!(rules);
                }
                "--uart" if idx == 1 => {
                    let v = value(&mut it, opt)?;
                    if v == "off" {
                        vm["uart1"] = json!("off");
                    } else {
                        let irq = value(&mut it, opt)?;
                        let io = u32::from_str_radix(
                            v.trim_start_matches("0x").trim_start_matches("0X"),
                            16,
                        )
                        .map_err(|_| syntax(&format!("Invalid I/O base '{v}'")))?;
                        vm["uart1"] = json!(format!("{io:#06x},{irq}"));
                    }
                }
                "--uartmode" if idx == 1 => {
                    let mode = value(&mut it, opt)?;
                    match mode.as_str() {
                        "disconnected" => vm["uartmode1"] = json!("disconnected"),
                        "file" | "server" | "client" | "tcpserver" | "tcpclient" => {
                            let arg = value(&mut it, opt)?;
                            vm["uartmode1"] = json!(format!("{mode},{arg}"));
                        }
                        other => {
                            return Err(syntax(&format!("Invalid --uartmode argument '{other}'")));
                        }
                    }
                }
                _ => return Err(syntax(&format!("Unknown option: {opt}"))),
            }
        }
        self.save(&vm);
        Ok(())
    }

    fn startvm(&self, args: &[String]) -> Res {
        let Some(name) = args.first() else {
            return Err(syntax("Not enough arguments for \"startvm\" command."));
        };
        let mut vm = self.vm(name)?;
        let name = s(&vm, "name").to_string();
        if matches!(s(&vm, "state"), "running" | "paused") {
            return Err(fail(&[
                &format!(
                    "The machine '{name}' is already locked by a session (or being locked or unlocked)"
                ),
                "Details: code VBOX_E_INVALID_OBJECT_STATE (0x80bb0007), component MachineWrap, interface IMachine, callee nsISupports",
            ]));
        }
        if self.ru {
            println!("{}{name}{}", ru::WAITING.0, ru::WAITING.1);
        } else {
            println!("Waiting for VM '{name}' to power on...");
        }
        if std::env::var("FAKE_VBOX_NO_VTX").is_ok_and(|v| v == "1") {
            return Err(fail(&[
                "VT-x is not available (VERR_VMX_NO_VMX)",
                "Details: code NS_ERROR_FAILURE (0x80004005), component ConsoleWrap, interface IConsole",
            ]));
        }
        let ifs: Vec<String> = self
            .hostonlyifs()
            .iter()
            .map(|i| s(i, "name").to_string())
            .collect();
        let nets: Vec<String> = self
            .hostonlynets()
            .iter()
            .map(|i| s(i, "name").to_string())
            .collect();
        for nic in vm["nics"].as_object().cloned().unwrap_or_default().values() {
            if s(nic, "type") == "hostonly" && self.macos && self.major() >= 7 {
                // vagrant#12959
                return Err(fail(&[
                    "Host-only adapters are no longer supported!",
                    "For your convenience a host-only network named 'HostInterfaceNetworking-vboxnet0' has been created with network mask '255.255.255.0' and IP address range '192.168.56.1' - '192.168.56.254'.",
                    "To fix this problem, switch to 'Host-only Network' attachment type in the VM settings.",
                    "Details: code NS_ERROR_FAILURE (0x80004005), component ConsoleWrap, interface IConsole",
                ]));
            }
            if s(nic, "type") == "hostonly" && !ifs.iter().any(|i| i == s(nic, "hostonly")) {
                return Err(fail(&[
                    &format!(
                        "Failed to open/create the internal network 'HostInterfaceNetworking-{}' (VERR_INTNET_FLT_IF_NOT_FOUND).",
                        s(nic, "hostonly")
                    ),
                    "Failed to attach the network LUN (VERR_INTNET_FLT_IF_NOT_FOUND)",
                    "Details: code NS_ERROR_FAILURE (0x80004005), component ConsoleWrap, interface IConsole",
                ]));
            }
            if s(nic, "type") == "hostonlynet" && !nets.iter().any(|i| i == s(nic, "hostonlynet")) {
                return Err(fail(&[
                    &format!(
                        "Could not find a host-only network named '{}'",
                        s(nic, "hostonlynet")
                    ),
                    "Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component ConsoleWrap, interface IConsole",
                ]));
            }
        }
        if let Some(path) = vm["uartmode1"]
            .as_str()
            .and_then(|m| m.strip_prefix("file,"))
            && let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path)
        {
            let _ = write!(
                f,
                "\x1b[0;32m[    0.000000]\x1b[0m Linux version 6.1.0-fake (stand-in console)\r\nDebian GNU/Linux 12 {name} ttyS0\r\n\r\n{name} login: "
            );
        }
        // A new VBox.log per start; the previous one becomes VBox.log.1.
        let logs = PathBuf::from(s(&vm, "dir")).join("Logs");
        let _ = fs::create_dir_all(&logs);
        let _ = fs::rename(logs.join("VBox.log"), logs.join("VBox.log.1"));
        let mut log = format!(
            "00:00:00.000000 VirtualBox VM {} linux.amd64 (fake-vboxmanage) release log\n00:00:00.000100 Log opened 2026-01-05T09:00:00.000000000Z\n",
            self.version
        );
        // `first-ssh`: the SSH port of the first VM started is the taken one.
        let first = self.state.join("first-ssh-taken");
        if env_list("FAKE_VBOX_TAKEN_PORTS")
            .iter()
            .any(|p| p == "first-ssh")
            && !first.exists()
            && let Some(port) = nat_rules(&vm)
                .iter()
                .find(|r| r.starts_with("ssh,"))
                .and_then(|r| r.split(',').nth(3).map(String::from))
        {
            let _ = fs::write(&first, port);
        }
        for rule in nat_rules(&vm) {
            log.push_str(&nat_log_line(&self.state, &rule));
        }
        let guru = std::env::var("FAKE_VBOX_GURU").is_ok_and(|v| v == "1");
        if guru {
            log.push_str("00:00:02.100000 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n00:00:02.100001 !!\n00:00:02.100002 !!         VCPU0: Guru Meditation -2403 (VERR_TRPM_DONT_PANIC)\n00:00:02.100003 !!\n");
        }
        let _ = fs::write(logs.join("VBox.log"), log);
        vm["state"] = json!(if guru { "gurumeditation" } else { "running" });
        vm["acpi_off_at"] = Value::Null;
        self.save(&vm);
        let uuid = s(&vm, "uuid");
        if self.ru {
            println!("ВМ '{name}' ({uuid}) {}", ru::STARTED);
        } else {
            println!("VM '{name}' ({uuid}) has been successfully started.");
        }
        if std::env::var("FAKE_VBOX_STARTVM_EXIT1").is_ok_and(|v| v == "1") {
            return Err(fail(&[
                "The VM session was closed before any attempt to power it on",
                "Details: code E_FAIL (0x80004005), component SessionMachine, interface ISession",
            ]));
        }
        Ok(())
    }

    fn controlvm(&self, args: &[String]) -> Res {
        let (Some(name), Some(action)) = (args.first(), args.get(1)) else {
            return Err(syntax("Not enough parameters"));
        };
        let mut vm = self.vm(name)?;
        let name = s(&vm, "name").to_string();
        if s(&vm, "state") == "gurumeditation" && action == "poweroff" {
            vm["state"] = json!("poweroff");
            self.save(&vm);
            eprintln!("{PROGRESS}");
            return Ok(());
        }
        if !matches!(s(&vm, "state"), "running" | "paused") {
            return Err(not_running(&name));
        }
        match action.as_str() {
            "natpf1" => {
                let Some(spec) = args.get(2) else {
                    return Err(syntax("Missing argument to 'natpf1'"));
                };
                let mut rules: Vec<String> = vm["nics"]["1"]["rules"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                if spec == "delete" {
                    let Some(rule) = args.get(3) else {
                        return Err(syntax("Missing argument to 'natpf1 delete'"));
                    };
                    let before = rules.len();
                    rules.retain(|r| r.split(',').next() != Some(rule.as_str()));
                    if rules.len() == before {
                        return Err(fail(&[
                            "A NAT rule for this name does not exist",
                            "Details: code NS_ERROR_INVALID_ARG (0x80070057), component NATEngineWrap, interface INATEngine",
                        ]));
                    }
                } else {
                    let f: Vec<&str> = spec.split(',').collect();
                    if f.len() != 6 || f[3].parse::<u16>().is_err() || f[5].parse::<u16>().is_err()
                    {
                        return Err(syntax(&format!("Invalid NAT rule '{spec}'")));
                    }
                    if rules.iter().any(|r| r.split(',').next() == Some(f[0])) {
                        return Err(fail(&[
                            "A NAT rule of this name already exists",
                            "Details: code NS_ERROR_INVALID_ARG (0x80070057), component NATEngineWrap, interface INATEngine",
                        ]));
                    }
                    rules.push(spec.clone());
                    // The running NAT engine binds it now, or logs that it cannot.
                    let log = PathBuf::from(s(&vm, "dir")).join("Logs/VBox.log");
                    if let Ok(mut lf) = fs::OpenOptions::new().create(true).append(true).open(&log)
                    {
                        let _ = lf.write_all(nat_log_line(&self.state, spec).as_bytes());
                    }
                }
                vm["nics"]["1"]["rules"] = json!(rules);
            }
            "acpipowerbutton" => {
                if std::env::var("FAKE_VBOX_ACPI").is_ok_and(|v| v == "ignore") {
                    return Ok(());
                }
                let delay: u64 = std::env::var("FAKE_VBOX_ACPI_DELAY_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(150);
                vm["acpi_off_at"] = json!(now_ms() + delay);
            }
            "poweroff" => {
                vm["state"] = json!("poweroff");
                vm["acpi_off_at"] = Value::Null;
                eprintln!("{PROGRESS}");
            }
            "pause" => vm["state"] = json!("paused"),
            "resume" => vm["state"] = json!("running"),
            "savestate" => {
                vm["state"] = json!("saved");
                eprintln!("{PROGRESS}");
            }
            other => return Err(syntax(&format!("Invalid parameter '{other}'"))),
        }
        self.save(&vm);
        Ok(())
    }

    fn unregistervm(&self, args: &[String]) -> Res {
        let Some(name) = args.first() else {
            return Err(syntax("VM name required"));
        };
        let vm = self.vm(name)?;
        let name = s(&vm, "name").to_string();
        if matches!(s(&vm, "state"), "running" | "paused") {
            return Err(fail(&[
                &format!("Cannot unregister the machine '{name}' while it is locked"),
                "Details: code VBOX_E_INVALID_OBJECT_STATE (0x80bb0007), component MachineWrap, interface IMachine, callee nsISupports",
            ]));
        }
        let uuid = s(&vm, "uuid").to_string();
        let clones = self
            .all_vms()
            .iter()
            .filter(|v| s(v, "linked_to") == uuid)
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
            let _ = fs::remove_dir_all(s(&vm, "dir"));
            eprintln!("{PROGRESS}");
        }
        Ok(())
    }

    fn snapshot(&self, args: &[String]) -> Res {
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

    fn hostonlyif(&self, args: &[String]) -> Res {
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
                    .find(|n| !ifs.iter().any(|i| i["index"].as_u64() == Some(*n)))
                    .unwrap_or(0);
                let name = format!("vboxnet{index}");
                ifs.push(json!({
                    "name": name,
                    "index": index,
                    "guid": format!("786f6276-656e-{:04x}-8000-0a0027000000", index),
                    "ip": format!("192.168.{}.1", 56 + index),
                    "netmask": "255.255.255.0",
                }));
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
                let Some(i) = ifs.iter().position(|i| s(i, "name") == name) else {
                    return Err(fail(&[
                        &format!("Could not find interface '{name}'"),
                        "Details: code NS_ERROR_INVALID_ARG (0x80070057), component HostWrap, interface IHost",
                    ]));
                };
                if let Some(ip) = opts.get("--ip") {
                    ifs[i]["ip"] = json!(ip);
                    ifs[i]["netmask"] = json!(
                        opts.get("--netmask")
                            .map_or("255.255.255.0", String::as_str)
                    );
                }
                self.save_hostonlyifs(&ifs);
                Ok(())
            }
            Some("remove") => {
                let Some(name) = args.get(1) else {
                    return Err(syntax("No interface name was specified"));
                };
                ifs.retain(|i| s(i, "name") != name);
                self.save_hostonlyifs(&ifs);
                Ok(())
            }
            _ => Err(syntax("Unknown sub-command")),
        }
    }

    fn hostonlynet(&self, args: &[String]) -> Res {
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
                if nets.iter().any(|n| s(n, "name") == get("--name")) {
                    return Err(fail(&[&format!(
                        "A host-only network named '{}' already exists",
                        get("--name")
                    )]));
                }
                let guid = self.new_uuid();
                nets.push(json!({
                    "name": get("--name"),
                    "guid": guid,
                    "netmask": get("--netmask"),
                    "lower": get("--lower-ip"),
                    "upper": get("--upper-ip"),
                }));
                write_json(&self.state.join("hostonlynets.json"), &json!(nets));
                Ok(())
            }
            _ => Err(syntax("Unknown sub-command")),
        }
    }

    fn extradata_path(&self) -> PathBuf {
        self.state.join("global-extradata.json")
    }

    fn setextradata(&self, args: &[String]) -> Res {
        let (Some(target), Some(key)) = (args.first(), args.get(1)) else {
            return Err(syntax("Incorrect number of parameters"));
        };
        let value = args.get(2);
        if target == "global" {
            let mut g = read_json(&self.extradata_path()).unwrap_or_else(|| json!({}));
            match value {
                Some(v) => g[key.as_str()] = json!(v),
                None => {
                    if let Some(o) = g.as_object_mut() {
                        o.remove(key);
                    }
                }
            }
            write_json(&self.extradata_path(), &g);
            return Ok(());
        }
        let mut vm = self.vm(target)?;
        match value {
            Some(v) => vm["extradata"][key.as_str()] = json!(v),
            None => {
                if let Some(o) = vm["extradata"].as_object_mut() {
                    o.remove(key);
                }
            }
        }
        self.save(&vm);
        Ok(())
    }

    fn getextradata(&self, args: &[String]) -> Res {
        let (Some(target), Some(key)) = (args.first(), args.get(1)) else {
            return Err(syntax("Incorrect number of parameters"));
        };
        let data = if target == "global" {
            read_json(&self.extradata_path()).unwrap_or_else(|| json!({}))
        } else {
            self.vm(target)?["extradata"].clone()
        };
        match data.get(key.as_str()).and_then(Value::as_str) {
            Some(v) if !v.is_empty() && self.ru => println!("[ru]Значение: {v}"),
            Some(v) if !v.is_empty() => println!("Value: {v}"),
            _ if self.ru => println!("[ru]Значение не установлено!"),
            _ => println!("No value set!"),
        }
        Ok(())
    }
}

/// NIC 1's NAT rules (`name,tcp,hostip,hostport,guestip,guestport`).
fn nat_rules(vm: &Value) -> Vec<String> {
    vm["nics"]["1"]["rules"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// What VirtualBox's NAT logs for a rule (slirp.c): "Set redirect", or "Failed to redirect"
/// when the host port is taken (`FAKE_VBOX_TAKEN_PORTS`).
fn nat_log_line(state: &Path, rule: &str) -> String {
    let f: Vec<&str> = rule.split(',').collect();
    if f.len() != 6 {
        return String::new();
    }
    let host_ip = if f[2].is_empty() { "0.0.0.0" } else { f[2] };
    let first = fs::read_to_string(state.join("first-ssh-taken")).unwrap_or_default();
    let taken = env_list("FAKE_VBOX_TAKEN_PORTS")
        .iter()
        .any(|p| p == f[3] || (p == "first-ssh" && first.trim() == f[3]));
    if taken {
        format!(
            "00:00:01.234567 NAT: Failed to redirect TCP {host_ip}:{} -> 0.0.0.0:{} (Address already in use)\n",
            f[3], f[5]
        )
    } else {
        format!(
            "00:00:01.234567 NAT: Set redirect TCP {host_ip}:{} -> 0.0.0.0:{}\n",
            f[3], f[5]
        )
    }
}

/// A quoted machine-readable line. Keys that need quoting come quoted already.
fn q(o: &mut String, k: &str, v: &str) {
    o.push_str(&format!("{k}=\"{}\"\n", esc(v)));
}

/// A bare (numeric) machine-readable line.
fn n(o: &mut String, k: &str, v: &str) {
    o.push_str(&format!("{k}={v}\n"));
}

/// `--key value` pairs (flags without a value map to "").
fn options(args: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some((k, v)) = a.split_once('=').filter(|_| a.starts_with("--")) {
            out.insert(k.to_string(), v.to_string());
            i += 1;
        } else if a.starts_with("--") && args.get(i + 1).is_some_and(|n| !n.starts_with("--")) {
            out.insert(a.clone(), args[i + 1].clone());
            i += 2;
        } else {
            out.insert(a.clone(), String::new());
            i += 1;
        }
    }
    out
}

/// `--natpf1` → (`--natpf`, 1); options without a number → index 0.
fn split_index(opt: &str) -> (&str, u8) {
    let digits = opt.len() - opt.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == opt.len() {
        return (opt, 0);
    }
    let (k, n) = opt.split_at(opt.len() - digits);
    (k, n.parse().unwrap_or(0))
}

fn parse_num(v: &str) -> Result<u64, Fail> {
    v.parse()
        .map_err(|_| syntax(&format!("Invalid number '{v}'")))
}

fn nic_entry<'a>(fake: &Fake, vm: &'a mut Value, key: &str) -> &'a mut Value {
    let nics = &mut vm["nics"];
    if nics.get(key).is_none() {
        nics[key] = json!({"type": "none", "mac": fake.new_mac(), "cable": "on", "rules": []});
    }
    &mut nics[key]
}

/// `SnapshotName="…"`, `SnapshotUUID="…"`, children as `SnapshotName-1`, …, then
/// `CurrentSnapshotName`, as VBoxManageInfo.cpp's `showSnapshots` prints them.
fn snapshot_tree(vm: &Value) -> String {
    let snaps: Vec<Value> = vm["snapshots"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    fn walk(snaps: &[Value], vm: &Value, node: &Value, prefix: &str, out: &mut String) {
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

/// The language VirtualBox 7 would print in (VirtualBoxTranslator.cpp): its own setting,
/// else LC_ALL, LC_MESSAGES, LANG (the first that is set and not empty).
fn language() -> String {
    ["FAKE_VBOX_LANGUAGE_ID", "LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_default()
}

/// `FAKE_VBOX_CRLF=1`: run again without it and turn every `\n` into `\r\n`.
fn crlf(args: &[String]) -> ExitCode {
    let out = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(args)
            .env_remove("FAKE_VBOX_CRLF")
            .output()
    });
    let Ok(out) = out else {
        eprintln!("fake-vboxmanage: cannot re-run itself");
        return ExitCode::from(2);
    };
    let conv = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
    };
    print!("{}", conv(&out.stdout));
    eprint!("{}", conv(&out.stderr));
    let _ = std::io::stdout().flush();
    ExitCode::from(u8::try_from(out.status.code().unwrap_or(1)).unwrap_or(1))
}

/// `FAKE_VBOX_REPLAY=FILE`: the first unused recorded call with this argv.
fn replay(state: &Path, file: &Path, args: &[String]) -> ExitCode {
    let text = fs::read_to_string(file).unwrap_or_default();
    let used_path = state.join("replay-used.json");
    let mut used: Vec<u64> = read_json(&used_path)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for (i, line) in text.lines().enumerate() {
        let i = i as u64;
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let argv: Vec<String> = entry["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if argv != args || used.contains(&i) {
            continue;
        }
        used.push(i);
        write_json(&used_path, &json!(used));
        print!("{}", s(&entry, "stdout"));
        eprint!("{}", s(&entry, "stderr"));
        let code = entry["exit"].as_i64().unwrap_or(1);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    eprintln!(
        "fake-vboxmanage: no unused recorded call for {args:?} in {}",
        file.display()
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var("FAKE_VBOX_CRLF").is_ok_and(|v| v == "1") {
        return crlf(&args);
    }
    let Some(state) = std::env::var_os("FAKE_VBOX_STATE").map(PathBuf::from) else {
        eprintln!(
            "fake-vboxmanage: FAKE_VBOX_STATE is not set (this is a test stand-in for VBoxManage)"
        );
        return ExitCode::from(2);
    };
    let _ = fs::create_dir_all(state.join("vms"));
    let _lock = StateLock::acquire(&state);
    if let Ok(mut log) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("calls.log"))
    {
        let line: Vec<String> = args.iter().map(|a| quote_arg(a)).collect();
        let _ = writeln!(log, "{}", line.join(" "));
    }
    if let Some(file) = std::env::var_os("FAKE_VBOX_REPLAY").filter(|v| !v.is_empty()) {
        return replay(&state, Path::new(&file), &args);
    }
    let fake = Fake {
        state: state.clone(),
        version: std::env::var("FAKE_VBOX_VERSION").unwrap_or_else(|_| DEFAULT_VERSION.into()),
        ru: language().starts_with("ru"),
        macos: std::env::var("FAKE_VBOX_HOST").is_ok_and(|v| v == "macos"),
    };
    let sub = args.first().cloned().unwrap_or_default();

    if env_list("FAKE_VBOX_FAIL_EXIT0").contains(&sub) {
        eprintln!(
            "VBoxManage: error: Injected failure of `{sub}` (fake-vboxmanage)\nVBoxManage: error: Details: code E_FAIL (0x80004005), component Fake, interface IFake"
        );
        return ExitCode::SUCCESS;
    }
    for spec in env_list("FAKE_VBOX_TRANSIENT") {
        let Some((name, n)) = spec.split_once(':') else {
            continue;
        };
        if name != sub {
            continue;
        }
        let n: u64 = n.parse().unwrap_or(0);
        let counter = state.join(format!("transient-{name}.count"));
        let done: u64 = fs::read_to_string(&counter)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if done < n {
            let _ = fs::write(&counter, (done + 1).to_string());
            let target = args.get(1).cloned().unwrap_or_default();
            eprint!("{}", locked(&target).stderr);
            return ExitCode::from(1);
        }
    }

    match fake.run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprint!("{}", f.stderr);
            ExitCode::from(f.code)
        }
    }
}
