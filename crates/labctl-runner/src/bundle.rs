//! A classroom bundle attached to a lab: the one bundle server per host (started detached
//! from the labctl binary, `__bundle-server`, shared by every lab that uses a bundle, stopped
//! when the last of them is halted or destroyed), the host service every machine gets, the
//! values templates see (`bundle.*`), and whether the bundle holds a step's package set.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use labctl_bundle::{Coverage, OsRelease, Store};
use labctl_driver::exec::Cmd;
use labctl_driver::{Driver, HostService, proc};
use labctl_spec::{BundleRegistry, GuestBundle, Lab};
use serde::{Deserialize, Serialize};

use crate::RunnerError;
use crate::machines::Env;

/// The service name of the bundle server in `MachineConfig.guest_services`.
pub const SERVICE: &str = "bundle";

/// A bundle attached to this run.
#[derive(Debug, Clone)]
pub struct Attached {
    pub name: String,
    /// `debian-12`, when labctl knows the lab's release.
    pub os: Option<String>,
    pub service: HostService,
    pub guest: GuestBundle,
    box_name: String,
    data_dir: PathBuf,
}

/// Why a step that needs egress and a package set does not run from the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NotCovered {
    /// The lab's OS release is not one a bundle holds (labctl tells it from the box name).
    UnknownRelease { box_name: String },
    /// The bundle lacks these for `os` (`debian-12`).
    Missing {
        os: String,
        missing: Vec<MissingItem>,
    },
}

/// Something a bundle lacks, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingItem {
    pub name: String,
    pub reason: String,
}

impl Attached {
    /// Does the bundle hold package set `set` complete for the lab's release?
    pub fn covers(&self, set: &str) -> Result<(), NotCovered> {
        let Some(os) = &self.os else {
            return Err(NotCovered::UnknownRelease {
                box_name: self.box_name.clone(),
            });
        };
        match Store::new(&self.data_dir).covers(&self.name, set, os) {
            Coverage::Complete => Ok(()),
            Coverage::NoBundle => Err(NotCovered::Missing {
                os: os.clone(),
                missing: vec![MissingItem {
                    name: self.name.clone(),
                    reason: "the bundle is not installed".into(),
                }],
            }),
            Coverage::Missing(m) => Err(NotCovered::Missing {
                os: os.clone(),
                missing: m
                    .into_iter()
                    .map(|m| MissingItem {
                        name: m.name,
                        reason: m.reason,
                    })
                    .collect(),
            }),
        }
    }
}

/// The bundle server's record: `<data dir>/bundle-server.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ServerState {
    pid: u32,
    port: u16,
    /// Lab ids that use it.
    users: BTreeSet<String>,
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bundle-server.json")
}

fn port_file(data_dir: &Path) -> PathBuf {
    data_dir.join("bundle-server.port")
}

fn lock(data_dir: &Path) -> Result<std::fs::File, RunnerError> {
    std::fs::create_dir_all(data_dir).map_err(|source| RunnerError::Io {
        what: "create",
        path: data_dir.to_path_buf(),
        source,
    })?;
    let p = data_dir.join("bundle-server.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|source| RunnerError::Io {
            what: "open",
            path: p.clone(),
            source,
        })?;
    f.lock().map_err(|source| RunnerError::Io {
        what: "lock",
        path: p,
        source,
    })?;
    Ok(f)
}

fn load(data_dir: &Path) -> Option<ServerState> {
    std::fs::read(state_path(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn save(data_dir: &Path, st: &ServerState) -> Result<(), RunnerError> {
    let p = state_path(data_dir);
    let text = serde_json::to_vec_pretty(st).unwrap_or_default();
    labctl_driver::files::write_atomic(&p, &text).map_err(|source| RunnerError::Io {
        what: "write",
        path: p,
        source,
    })
}

/// The server's mark in its argv: its port file (one per data directory).
fn mark(data_dir: &Path) -> impl Fn(&str) -> bool + use<> {
    let pf = port_file(data_dir).to_string_lossy().into_owned();
    move |a: &str| a == pf
}

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(2),
    )
    .is_ok()
}

/// Start the host's bundle server unless it runs, record `lab_id` as a user; its port.
pub fn ensure_server(env: &Env, lab_id: &str) -> Result<u16, RunnerError> {
    if !proc::SUPPORTED {
        // Windows: the server's process cannot be checked or stopped by PID (proc.rs).
        return Err(RunnerError::BundleServer {
            reason: "not supported on Windows hosts yet".into(),
        });
    }
    let data_dir = &env.data_dir;
    let _lock = lock(data_dir)?;
    if let Some(mut st) = load(data_dir)
        && proc::is_ours(st.pid, &mark(data_dir))
        && answers(st.port)
    {
        st.users.insert(lab_id.to_string());
        save(data_dir, &st)?;
        return Ok(st.port);
    }
    let Some((program, lead)) = env.bundle_server_command.split_first() else {
        return Err(RunnerError::BundleServer {
            reason: "this build cannot start it (no server command)".into(),
        });
    };
    let pf = port_file(data_dir);
    let _ = std::fs::remove_file(&pf);
    let log = data_dir.join("bundle-server.log");
    let pid = Cmd::new(PathBuf::from(program))
        .args(lead)
        .arg("--port")
        .arg("0")
        .arg("--port-file")
        .arg(&pf)
        .spawn_detached(&log)
        .map_err(|e| RunnerError::BundleServer {
            reason: e.to_string(),
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Some(port) = std::fs::read_to_string(&pf)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
            .filter(|p| *p != 0)
        {
            break port;
        }
        if Instant::now() > deadline || !proc::alive(pid) {
            proc::signal_if(pid, true, &mark(data_dir));
            return Err(RunnerError::BundleServer {
                reason: format!("it did not start; see {}", log.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    save(
        data_dir,
        &ServerState {
            pid,
            port,
            users: BTreeSet::from([lab_id.to_string()]),
        },
    )?;
    Ok(port)
}

/// `lab_id` no longer uses the server; the last user stops it.
pub fn release(env: &Env, lab_id: &str) -> Result<(), RunnerError> {
    let data_dir = &env.data_dir;
    if !state_path(data_dir).exists() {
        return Ok(());
    }
    let _lock = lock(data_dir)?;
    let Some(mut st) = load(data_dir) else {
        return Ok(());
    };
    st.users.remove(lab_id);
    if !st.users.is_empty() {
        return save(data_dir, &st);
    }
    if proc::signal_if(st.pid, false, &mark(data_dir))
        && !proc::wait_gone(st.pid, Duration::from_secs(3))
    {
        proc::signal_if(st.pid, true, &mark(data_dir));
    }
    // The server is stopped; a record left behind is harmless: the next attach finds its
    // pid not ours (or not answering) and starts a new server.
    let _ = std::fs::remove_file(state_path(data_dir));
    let _ = std::fs::remove_file(port_file(data_dir));
    Ok(())
}

/// The bundle server's port and users, when it runs (status, tests).
pub fn server(env: &Env) -> Option<(u32, u16, Vec<String>)> {
    let st = load(&env.data_dir)?;
    proc::is_ours(st.pid, &mark(&env.data_dir))
        .then(|| (st.pid, st.port, st.users.into_iter().collect()))
}

/// Attach the lab's bundle (`lab.bundle`) for this run: check it is installed, make sure the
/// server runs, and work out what guests see. `None` without a bundle.
pub fn attach(
    lab: &Lab,
    env: &Env,
    lab_id: &str,
    driver: &dyn Driver,
) -> Result<Option<Attached>, RunnerError> {
    let Some(name) = lab.bundle.clone() else {
        return Ok(None);
    };
    let store = Store::new(&env.data_dir);
    let manifest = store.load(&name).map_err(|e| RunnerError::BundleMissing {
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let probe = HostService {
        name: SERVICE.into(),
        host_port: 0,
    };
    if driver.guest_service_endpoint(0, &probe).is_none() {
        return Err(RunnerError::BundleServer {
            reason: format!(
                "the {} driver cannot give guests a host service",
                driver.info().name
            ),
        });
    }
    let port = ensure_server(env, lab_id)?;
    let service = HostService {
        name: SERVICE.into(),
        host_port: port,
    };
    let Some(ep) = driver.guest_service_endpoint(0, &service) else {
        return Err(RunnerError::BundleServer {
            reason: "no guest address for it".into(),
        });
    };
    let key_path =
        store
            .dir(&name)
            .map(|d| d.join("key.asc"))
            .map_err(|e| RunnerError::BundleMissing {
                name: name.clone(),
                reason: e.to_string(),
            })?;
    let key = std::fs::read_to_string(&key_path).map_err(|source| RunnerError::Io {
        what: "read",
        path: key_path.clone(),
        source,
    })?;
    let os = OsRelease::of_lab(lab).map(|r| r.key());
    let url = format!("http://{ep}/b/{name}");
    let apt_line = os.as_ref().map_or_else(String::new, |os| {
        format!("deb [signed-by=/etc/apt/keyrings/labctl-bundle.asc] {url}/apt/{os} labctl main")
    });
    let registries: BTreeSet<String> = manifest
        .images
        .iter()
        .filter_map(|i| labctl_spec::ImageRef::parse(&i.reference))
        .map(|r| r.registry)
        .filter(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        })
        .collect();
    let guest = GuestBundle {
        name: name.clone(),
        registry: format!("{url}/v2"),
        url,
        apt_line,
        key: key.trim_end().to_string(),
        registries: registries.iter().map(|r| BundleRegistry::of(r)).collect(),
    };
    Ok(Some(Attached {
        name,
        os,
        service,
        guest,
        box_name: lab.box_name.clone(),
        data_dir: env.data_dir.clone(),
    }))
}
