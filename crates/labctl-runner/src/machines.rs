//! From spec nodes to driver machines: directories, MACs, ports, boxes, acceleration.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use labctl_driver::boxes::{BoxMeta, BoxStore};
use labctl_driver::{
    Accel, BootImage, Driver, MachineConfig, NetworkConfig, PortForward, PrivateNic,
};
use labctl_spec::{Lab, NetworkKind, Node, Provider};
use sha2::{Digest, Sha256};

use crate::RunnerError;
use crate::events::Notice;
use crate::state::{LabPaths, LabState, NodeState};

/// Host-level settings: where boxes and caches live, how to start the switch.
#[derive(Debug, Clone)]
pub struct Env {
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub switch_command: Vec<OsString>,
    /// The libvirt URI asked for on this run (`--uri`, `LABCTL_URI`): wins over the one a lab
    /// recorded. `None`: the lab's (lab.toml, then the recorded one), else libvirt's default.
    pub uri: Option<String>,
    /// How QEMU relays a guest connection to a host service (`labctl __relay`); empty: none.
    pub relay_command: Vec<OsString>,
    /// How to start the bundle server (`labctl __bundle-server`; `--port P` is appended);
    /// empty: labs with a bundle cannot start it.
    pub bundle_server_command: Vec<OsString>,
}

impl Env {
    /// `LABCTL_HOME` (data: boxes, lab registry) and `LABCTL_CACHE` override the user's dirs.
    pub fn from_env(switch_command: Vec<OsString>) -> Env {
        let dirs = directories::ProjectDirs::from("", "", "labctl");
        let data_dir = std::env::var_os("LABCTL_HOME")
            .filter(|v| !v.is_empty())
            .map_or_else(
                || {
                    dirs.as_ref().map_or_else(
                        || PathBuf::from(".labctl-home"),
                        |d| d.data_dir().to_path_buf(),
                    )
                },
                PathBuf::from,
            );
        let cache_dir = std::env::var_os("LABCTL_CACHE")
            .filter(|v| !v.is_empty())
            .map_or_else(
                || {
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".cache").join("labctl"))
                        .unwrap_or_else(|| std::env::temp_dir().join("labctl-cache"))
                },
                PathBuf::from,
            );
        Env {
            data_dir,
            cache_dir,
            switch_command,
            uri: std::env::var("LABCTL_URI")
                .ok()
                .filter(|u| !u.trim().is_empty()),
            relay_command: Vec::new(),
            bundle_server_command: Vec::new(),
        }
    }

    pub fn boxes(&self) -> BoxStore {
        BoxStore::new(
            self.data_dir.join("boxes"),
            self.cache_dir.join("downloads"),
        )
    }
}

/// The driver for a provider (the driver crate's one entry point), with `env.uri`.
pub fn driver_for(provider: Provider, env: &Env) -> Result<Arc<dyn Driver>, RunnerError> {
    driver_with_uri(provider, env.uri.as_deref(), env)
}

/// The libvirt URI of a lab that is up: `env.uri` (`--uri`, `LABCTL_URI`) wins over the
/// recorded one. The driver and the route to the guests both use this.
pub(crate) fn effective_uri<'a>(env: &'a Env, st: &'a LabState) -> Option<&'a str> {
    env.uri.as_deref().or(st.uri.as_deref())
}

/// The driver of a lab that is up: its recorded libvirt URI unless `env.uri` overrides it.
pub fn driver_for_state(st: &LabState, env: &Env) -> Result<Arc<dyn Driver>, RunnerError> {
    driver_with_uri(st.provider, effective_uri(env, st), env)
}

/// The production [`crate::up::OpenDriver`]: `env.uri` (`--uri`, `LABCTL_URI`) wins over the
/// lab's URI.
pub(crate) fn opener(
    env: &Env,
) -> impl Fn(Provider, Option<&str>) -> Result<Arc<dyn Driver>, RunnerError> + '_ {
    move |provider, uri| driver_with_uri(provider, env.uri.as_deref().or(uri), env)
}

/// What the driver crate needs of this run's places and programs, with a libvirt URI.
fn host_env(env: &Env, uri: Option<&str>) -> labctl_driver::HostEnv {
    labctl_driver::HostEnv {
        data_dir: env.data_dir.clone(),
        cache_dir: env.cache_dir.clone(),
        switch_command: env.switch_command.clone(),
        uri: uri.map(str::to_string),
        relay_command: env.relay_command.clone(),
    }
}

/// The memory (MiB) a libvirt host at `uri` can still give guests.
pub(crate) fn libvirt_host_memory_mb(env: &Env, uri: &str) -> Result<u64, RunnerError> {
    Ok(labctl_driver::libvirt_host_memory_mb(&host_env(
        env,
        Some(uri),
    ))?)
}

/// The driver for a provider and libvirt URI (`None`: libvirt's default).
pub fn driver_with_uri(
    provider: Provider,
    uri: Option<&str>,
    env: &Env,
) -> Result<Arc<dyn Driver>, RunnerError> {
    // The driver crate does not depend on labctl-spec: it is keyed by the provider's word.
    labctl_driver::open(provider.as_str(), &host_env(env, uri)).map_err(|e| match e {
        labctl_driver::DriverError::NoDriver { provider } => RunnerError::Provider {
            provider,
            reason: "this build has no driver for it".into(),
        },
        labctl_driver::DriverError::NotOnWindows { provider } => RunnerError::Provider {
            provider,
            reason: "not supported on Windows hosts yet".into(),
        },
        other => other.into(),
    })
}

/// The box a lab uses; the locally built default box is added automatically when its file is in the cache.
pub(crate) fn resolve_box(lab: &Lab, env: &Env) -> Result<BoxMeta, RunnerError> {
    let store = env.boxes();
    if let Ok(m) = store.get(&lab.box_name) {
        return Ok(m);
    }
    let built = env.cache_dir.join("boxes").join("labctl-debian-12.box");
    if lab.box_name == labctl_spec::DEFAULT_BOX && built.exists() {
        // Under the store's lock: labs brought up at once add it once.
        return Ok(store.ensure(
            &lab.box_name,
            &built.to_string_lossy(),
            &labctl_driver::boxes::AddOptions::default(),
            &|_| {},
        )?);
    }
    Err(RunnerError::BoxMissing {
        name: lab.box_name.clone(),
        built: (lab.box_name == labctl_spec::DEFAULT_BOX).then_some(built),
    })
}

/// The acceleration a lab asks its driver for (`--accel` / `LABCTL_ACCEL` are applied to the
/// lab by the binary before it gets here).
pub(crate) fn accel_request(lab: &Lab) -> Accel {
    match lab.accel {
        labctl_spec::Accel::Auto => Accel::Auto,
        labctl_spec::Accel::Kvm => Accel::Kvm,
        labctl_spec::Accel::Tcg => Accel::Tcg,
    }
}

fn hash_bytes(parts: &[&str]) -> sha2::digest::Output<Sha256> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
}

fn mac(id: &str, ordinal: usize, nic: usize) -> String {
    let h = hash_bytes(&[id]);
    format!(
        "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
        h[0] & 0xfe,
        h[1],
        ordinal & 0xff,
        nic & 0xff
    )
}

/// Whether a TCP port on 127.0.0.1 is free right now.
pub(crate) fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free port from 2200 up, not in `taken`.
pub(crate) fn next_free_port(taken: &BTreeSet<u16>) -> Option<u16> {
    (2200..=65000).find(|p| !taken.contains(p) && port_free(*p))
}

/// Build (or refresh) the machine config of a node. Ports already recorded for the node are kept.
pub(crate) fn machine_for(
    lab: &Lab,
    node: &Node,
    paths: &LabPaths,
    boxm: &BoxMeta,
    box_dir: &std::path::Path,
    accel: Accel,
    previous: Option<&NodeState>,
) -> MachineConfig {
    let private_nics = node
        .nics
        .iter()
        .enumerate()
        .map(|(i, nic)| PrivateNic {
            network: nic.network.clone(),
            mac: mac(&paths.id, node.ordinal, i + 1),
        })
        .collect();
    let prev = previous.map(|p| &p.machine);
    let ssh_port = prev.map_or(node.ssh_port, |m| m.ssh.host);
    let forwards = node
        .forwards
        .iter()
        .enumerate()
        .map(|(i, f)| PortForward {
            host: prev
                .and_then(|m| m.forwards.get(i))
                .filter(|p| p.guest == f.guest)
                .map_or(f.host, |p| p.host),
            guest: f.guest,
        })
        .collect();
    let mut mid = format!("{:x}", hash_bytes(&[&paths.id, &node.name]));
    mid.truncate(32);
    MachineConfig {
        id: format!("{}-{}", paths.id, node.name),
        hostname: node.name.clone(),
        dir: paths.machine_dir(&node.name),
        run_dir: paths.run_dir.clone(),
        cpus: node.cpus,
        memory_mb: node.memory_mb,
        boot: boot_image(boxm, box_dir),
        nat_mac: mac(&paths.id, node.ordinal, 0),
        private_nics,
        ssh: PortForward {
            host: ssh_port,
            guest: 22,
        },
        forwards,
        egress: lab.egress,
        accel,
        nested_virt: node.nested_virt,
        machine_id: mid,
        guest_services: Vec::new(),
        group: lab.group.clone(),
    }
}

/// What machines of a box boot from.
pub(crate) fn boot_image(boxm: &BoxMeta, box_dir: &std::path::Path) -> BootImage {
    let file = |f: &Option<String>| f.as_ref().map(|f| box_dir.join(f));
    BootImage {
        disk: box_dir.join(&boxm.disk),
        kernel: file(&boxm.kernel),
        initrd: file(&boxm.initrd),
        cmdline: boxm.cmdline.clone(),
        ovf: file(&boxm.ovf),
    }
}

/// The lab's networks as drivers see them.
pub(crate) fn networks(lab: &Lab) -> Vec<NetworkConfig> {
    lab.networks
        .iter()
        .map(|n| NetworkConfig {
            name: n.name.clone(),
            host_ip: (n.kind == NetworkKind::Hostonly).then_some((n.host_ip, n.prefix)),
        })
        .collect()
}

/// Make sure every node's host ports are free or already ours; move the ones that are taken.
/// Returns notices for moved ports.
pub(crate) fn correct_ports(
    st: &mut LabState,
    running: &BTreeSet<String>,
) -> Vec<(String, Notice)> {
    let mut notices = Vec::new();
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    for n in st.nodes.values() {
        taken.insert(n.machine.ssh.host);
        taken.extend(n.machine.forwards.iter().map(|f| f.host));
    }
    let names: Vec<String> = st.nodes.keys().cloned().collect();
    for name in names {
        if running.contains(&name) {
            continue;
        }
        let Some(node) = st.nodes.get_mut(&name) else {
            continue;
        };
        let mut ports: Vec<&mut u16> = vec![&mut node.machine.ssh.host];
        ports.extend(node.machine.forwards.iter_mut().map(|f| &mut f.host));
        for port in ports {
            if !port_free(*port)
                && let Some(new) = next_free_port(&taken)
            {
                notices.push((name.clone(), Notice::PortInUse { port: *port, new }));
                taken.insert(new);
                *port = new;
            }
        }
    }
    notices
}

/// The libvirt URI a lab's driver is opened with: `--uri`/`LABCTL_URI`, else lab.toml's.
pub(crate) fn lab_uri(lab: &Lab, env: &Env) -> Option<String> {
    env.uri.clone().or_else(|| lab.uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--uri`/`LABCTL_URI` wins over the recorded URI for the driver and the route alike.
    #[test]
    fn the_effective_uri_is_the_environments_else_the_recorded_one() {
        let paths = LabPaths::new(std::path::Path::new("/lab"), "lv");
        let mut st = LabState::new("lv", &paths, Provider::Libvirt, "labctl/debian-12");
        st.uri = Some("qemu+ssh://root@h1/system".into());
        let mut env = Env {
            data_dir: "/d".into(),
            cache_dir: "/c".into(),
            switch_command: Vec::new(),
            uri: None,
            relay_command: Vec::new(),
            bundle_server_command: Vec::new(),
        };
        assert_eq!(effective_uri(&env, &st), Some("qemu+ssh://root@h1/system"));
        env.uri = Some("qemu+ssh://root@h2/system".into());
        assert_eq!(effective_uri(&env, &st), Some("qemu+ssh://root@h2/system"));
        st.uri = None;
        assert_eq!(effective_uri(&env, &st), Some("qemu+ssh://root@h2/system"));
    }

    #[test]
    fn macs_are_stable_unicast_and_distinct() {
        let a = mac("k8s-1a2b3c4d", 0, 0);
        assert_eq!(a, mac("k8s-1a2b3c4d", 0, 0));
        assert_ne!(a, mac("k8s-1a2b3c4d", 1, 0));
        assert_ne!(a, mac("k8s-1a2b3c4d", 0, 1));
        let first = u8::from_str_radix(&a[6..8], 16).expect("hex");
        assert_eq!(first & 1, 0, "unicast");
    }

    #[test]
    fn digests_print_as_lowercase_hex() {
        // sha256 of nothing: the encoding every id, hash and box checksum uses.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(format!("{:x}", hash_bytes(&[])), empty);
        assert_eq!(
            crate::state::values_hash(&std::collections::BTreeMap::new()),
            empty
        );
    }

    #[test]
    fn taken_port_is_skipped() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(!port_free(port));
        let mut taken = BTreeSet::new();
        taken.insert(2200);
        let p = next_free_port(&taken).expect("a port");
        assert!(p > 2200 && p != port);
    }
}
