//! `startvm VM --type headless`: host-only checks, the serial console, a new `VBox.log`.

use std::fs;
use std::io::Write;

use crate::fail::{Res, fail, syntax};
use crate::model::VmState;
use crate::nat::{nat_log_line, nat_rules};
use crate::ru;
use crate::state::{Fake, env_list};

impl Fake {
    pub(crate) fn startvm(&self, args: &[String]) -> Res {
        let Some(name) = args.first() else {
            return Err(syntax("Not enough arguments for \"startvm\" command."));
        };
        let mut vm = self.vm(name)?;
        let name = vm.name.clone();
        if vm.state.in_session() {
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
        let ifs: Vec<String> = self.hostonlyifs().iter().map(|i| i.name.clone()).collect();
        let nets: Vec<String> = self.hostonlynets().iter().map(|i| i.name.clone()).collect();
        for nic in vm.config.nics.values() {
            if nic.kind == "hostonly" && self.macos && self.major() >= 7 {
                // vagrant#12959
                return Err(fail(&[
                    "Host-only adapters are no longer supported!",
                    "For your convenience a host-only network named 'HostInterfaceNetworking-vboxnet0' has been created with network mask '255.255.255.0' and IP address range '192.168.56.1' - '192.168.56.254'.",
                    "To fix this problem, switch to 'Host-only Network' attachment type in the VM settings.",
                    "Details: code NS_ERROR_FAILURE (0x80004005), component ConsoleWrap, interface IConsole",
                ]));
            }
            let hostonly = nic.hostonly.as_deref().unwrap_or_default();
            if nic.kind == "hostonly" && !ifs.iter().any(|i| i == hostonly) {
                return Err(fail(&[
                    &format!(
                        "Failed to open/create the internal network 'HostInterfaceNetworking-{hostonly}' (VERR_INTNET_FLT_IF_NOT_FOUND)."
                    ),
                    "Failed to attach the network LUN (VERR_INTNET_FLT_IF_NOT_FOUND)",
                    "Details: code NS_ERROR_FAILURE (0x80004005), component ConsoleWrap, interface IConsole",
                ]));
            }
            let hostonlynet = nic.hostonlynet.as_deref().unwrap_or_default();
            if nic.kind == "hostonlynet" && !nets.iter().any(|i| i == hostonlynet) {
                return Err(fail(&[
                    &format!("Could not find a host-only network named '{hostonlynet}'"),
                    "Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component ConsoleWrap, interface IConsole",
                ]));
            }
        }
        if let Some(path) = vm
            .config
            .uartmode1
            .as_deref()
            .and_then(|m| m.strip_prefix("file,"))
            && let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path)
        {
            let _ = write!(
                f,
                "\x1b[0;32m[    0.000000]\x1b[0m Linux version 6.1.0-fake (stand-in console)\r\nDebian GNU/Linux 12 {name} ttyS0\r\n\r\n{name} login: "
            );
        }
        // A new VBox.log per start; the previous one becomes VBox.log.1.
        let logs = vm.dir.join("Logs");
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
        vm.state = if guru {
            VmState::Gurumeditation
        } else {
            VmState::Running
        };
        vm.acpi_off_at = None;
        self.save(&vm);
        let uuid = &vm.uuid;
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
}
