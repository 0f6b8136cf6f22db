//! Lab networks: host-only interfaces, host-only networks (macOS, VirtualBox 7), internal
//! networks, and which one each private NIC attaches to.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{
    Attachment, HostOs, NETWORKS_FILE, SHORT, VBoxDriver, VBoxError, args, file_lock, io_err, lock,
    parse, preflight, racy,
};
use crate::{MachineConfig, NetworkConfig};

pub(super) fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    })
}

/// The internal-network name of a lab network: unique per lab (run directory), readable.
pub fn intnet_name(run_dir: &Path, network: &str) -> String {
    let mut h = Sha256::new();
    h.update(run_dir.to_string_lossy().as_bytes());
    let mut tag = format!("{:x}", h.finalize());
    tag.truncate(8);
    format!("labctl-{tag}-{network}")
}

/// Lab-private host-only networks on this host: (host address, prefix) → name for VirtualBox 7
/// on macOS (`labctl-192.168.56.0-24`).
pub fn hostonlynet_name(ip: Ipv4Addr, prefix: u8) -> String {
    let net = Ipv4Addr::from(u32::from(ip) & u32::from(netmask(prefix)));
    format!("labctl-{net}-{prefix}")
}

impl VBoxDriver {
    /// Whether VirtualBox accepts a host-only network (any address in it, and its prefix):
    /// the check `networks_up` makes before creating anything, also asked by `labctl doctor`.
    /// macOS host-only networks (VirtualBox 7) are not restricted by networks.conf.
    pub fn preflight_hostonly(&self, network: (Ipv4Addr, u8)) -> Result<(), VBoxError> {
        if self.uses_hostonlynets()? {
            return Ok(());
        }
        Ok(preflight::check_hostonly_range_on_host(
            self.version()?,
            self.cfg.host_os,
            &self.cfg.networks_conf,
            network,
        )?)
    }

    /// VirtualBox 7 on macOS: host-only networks instead of interfaces.
    pub(super) fn uses_hostonlynets(&self) -> Result<bool, VBoxError> {
        Ok(self.cfg.host_os == HostOs::MacOs && self.version()?.at_least(7, 0, 0))
    }

    /// The attachments of the machine's private NICs, from `networks_up`.
    pub(super) fn attachments(&self, m: &MachineConfig) -> Result<Vec<Attachment>, VBoxError> {
        if m.private_nics.is_empty() {
            return Ok(Vec::new());
        }
        let map = {
            let cached = lock(&self.nets).get(&m.run_dir).cloned();
            match cached {
                Some(map) => map,
                None => std::fs::read_to_string(m.run_dir.join(NETWORKS_FILE))
                    .ok()
                    .and_then(|t| serde_json::from_str::<BTreeMap<String, Attachment>>(&t).ok())
                    .unwrap_or_default(),
            }
        };
        m.private_nics
            .iter()
            .map(|n| {
                map.get(&n.network)
                    .cloned()
                    .ok_or_else(|| VBoxError::NetworkNotUp {
                        network: n.network.clone(),
                    })
            })
            .collect()
    }

    /// The host-wide lock around host-only network setup, so that two labctl processes do not
    /// both create an interface for the same subnet.
    pub(super) fn hostonly_lock(&self) -> Option<std::fs::File> {
        let dir = self.cfg.data_dir.clone().unwrap_or_else(std::env::temp_dir);
        file_lock(&dir.join("vbox-hostonly.lock"))
    }

    pub(super) fn up_networks(
        &self,
        run_dir: &Path,
        nets: &[NetworkConfig],
    ) -> Result<(), VBoxError> {
        let hostonly: Vec<(&NetworkConfig, (Ipv4Addr, u8))> = nets
            .iter()
            .filter_map(|n| n.host_ip.map(|h| (n, h)))
            .collect();
        let mut map: BTreeMap<String, Attachment> = BTreeMap::new();
        if !hostonly.is_empty() {
            let networks = self.uses_hostonlynets()?;
            if !networks {
                // Refuse before creating anything.
                for (_, h) in &hostonly {
                    self.preflight_hostonly(*h)?;
                }
            }
            let _racy = racy();
            let _flock = self.hostonly_lock();
            if networks {
                self.up_hostonlynets(&hostonly, &mut map)?;
            } else {
                self.up_hostonlyifs(&hostonly, &mut map)?;
            }
        }
        for n in nets.iter().filter(|n| n.host_ip.is_none()) {
            map.insert(
                n.name.clone(),
                Attachment::Intnet(intnet_name(run_dir, &n.name)),
            );
        }
        let path = run_dir.join(NETWORKS_FILE);
        crate::files::write_atomic(
            &path,
            serde_json::to_string_pretty(&map)
                .unwrap_or_default()
                .as_bytes(),
        )
        .map_err(io_err("cannot write", &path))?;
        lock(&self.nets).insert(run_dir.to_path_buf(), map);
        Ok(())
    }

    pub(super) fn up_hostonlyifs(
        &self,
        hostonly: &[(&NetworkConfig, (Ipv4Addr, u8))],
        map: &mut BTreeMap<String, Attachment>,
    ) -> Result<(), VBoxError> {
        let mut ifs = parse::list_hostonlyifs(&self.run(&args::list_hostonlyifs(), SHORT)?.stdout);
        for (n, (ip, prefix)) in hostonly {
            let (ip, mask) = (*ip, netmask(*prefix));
            let ifname = match ifs.iter().find(|i| i.ip == Some(ip)) {
                Some(i) => {
                    if i.netmask != Some(mask) {
                        self.run(&args::hostonlyif_ipconfig(&i.name, ip, mask), SHORT)?;
                    }
                    i.name.clone()
                }
                None => {
                    let out = self.run(&args::hostonlyif_create(), SHORT)?;
                    let name = parse::hostonlyif_created(&out.stdout).ok_or_else(|| {
                        VBoxError::Unexpected {
                            command: "VBoxManage hostonlyif create --machinereadable".into(),
                            message: format!("no interface name in {:?}", out.stdout.trim()),
                        }
                    })?;
                    self.run(&args::hostonlyif_ipconfig(&name, ip, mask), SHORT)?;
                    ifs.push(parse::HostOnlyIf {
                        name: name.clone(),
                        ip: Some(ip),
                        netmask: Some(mask),
                        dhcp: None,
                        status: None,
                    });
                    name
                }
            };
            map.insert(n.name.clone(), Attachment::Hostonly(ifname));
        }
        Ok(())
    }

    /// VirtualBox 7 on macOS: one host-only network per subnet, the host's address as vmnet's
    /// start address (`--lower-ip`), the rest of the subnet up to `--upper-ip`.
    pub(super) fn up_hostonlynets(
        &self,
        hostonly: &[(&NetworkConfig, (Ipv4Addr, u8))],
        map: &mut BTreeMap<String, Attachment>,
    ) -> Result<(), VBoxError> {
        let mut existing =
            parse::list_hostonlynets(&self.run(&args::list_hostonlynets(), SHORT)?.stdout);
        for (n, (ip, prefix)) in hostonly {
            let (ip, mask) = (*ip, netmask(*prefix));
            let name = match existing
                .iter()
                .find(|h| h.lower_ip == Some(ip) && h.netmask == Some(mask))
            {
                Some(h) => h.name.clone(),
                None => {
                    let name = hostonlynet_name(ip, *prefix);
                    let broadcast = u32::from(ip) | !u32::from(mask);
                    let upper = Ipv4Addr::from(broadcast.saturating_sub(1));
                    self.run(&args::hostonlynet_add(&name, mask, ip, upper), SHORT)?;
                    existing.push(parse::HostOnlyNet {
                        name: name.clone(),
                        netmask: Some(mask),
                        lower_ip: Some(ip),
                        upper_ip: Some(upper),
                    });
                    name
                }
            };
            map.insert(n.name.clone(), Attachment::Hostonlynet(name));
        }
        Ok(())
    }
}
