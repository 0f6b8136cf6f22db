//! `list vms|runningvms|hostonlyifs|hostonlynets` (VBoxManageList.cpp).

use crate::fail::{Res, syntax};
use crate::state::Fake;

impl Fake {
    pub(crate) fn list(&self, args: &[String]) -> Res {
        match args.first().map(String::as_str) {
            Some("vms") => {
                for vm in self.all_vms() {
                    println!("\"{}\" {{{}}}", vm.name, vm.uuid);
                }
                Ok(())
            }
            Some("runningvms") => {
                for vm in self.all_vms() {
                    if vm.state.in_session() {
                        println!("\"{}\" {{{}}}", vm.name, vm.uuid);
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
                    let name = i.name;
                    if self.ru {
                        // VBoxManageNls_ru.ts, context List (VBoxManageList.cpp:167-201).
                        println!("Имя:            {name}");
                        println!("GUID:            {}", i.guid);
                        println!("DHCP:            Отключено");
                        println!("IP адрес:       {}", i.ip);
                        println!("Сетевая маска:     {}", i.netmask);
                        println!("IPV6 адрес:     ");
                        println!("Длина префикса сетевой маски IPV6: 0");
                        println!("Аппаратный адрес: 0a:00:27:00:00:{:02x}", i.index);
                        println!("Тип носителя:      Ethernet");
                        println!("Беспроводный:        Нет");
                        println!("Статус:          Up");
                        println!("Имя сети VBox: HostInterfaceNetworking-{name}\n");
                        continue;
                    }
                    println!("Name:            {name}");
                    println!("GUID:            {}", i.guid);
                    println!("DHCP:            Disabled");
                    println!("IPAddress:       {}", i.ip);
                    println!("NetworkMask:     {}", i.netmask);
                    println!("IPV6Address:     ");
                    println!("IPV6NetworkMaskPrefixLength: 0");
                    println!("HardwareAddress: 0a:00:27:00:00:{:02x}", i.index);
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
                        println!("Имя:            {}", n.name);
                        println!("GUID:            {}\n", n.guid);
                        println!("Состояние:           Включено");
                        println!("Сетевая маска:     {}", n.netmask);
                        println!("Нижний IP:         {}", n.lower);
                        println!("Верхний IP:         {}", n.upper);
                        println!("VBoxNetworkName: hostonly-{}\n", n.name);
                        continue;
                    }
                    // VBoxManageList.cpp listHostOnlyNetworks (7.0): note the blank line after GUID.
                    println!("Name:            {}", n.name);
                    println!("GUID:            {}\n", n.guid);
                    println!("State:           Enabled");
                    println!("NetworkMask:     {}", n.netmask);
                    println!("LowerIP:         {}", n.lower);
                    println!("UpperIP:         {}", n.upper);
                    println!("VBoxNetworkName: hostonly-{}\n", n.name);
                }
                Ok(())
            }
            Some(other) => Err(syntax(&format!("Unknown subcommand: {other}"))),
            None => Err(syntax("Missing subcommand for \"list\" command.")),
        }
    }
}
