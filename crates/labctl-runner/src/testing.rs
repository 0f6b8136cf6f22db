//! In-memory stand-ins for the runner's unit tests (no QEMU, no SSH): [`FakeDriver`] keeps
//! machines as records, [`FakeConnect`] logs in to a fake guest that records every command and
//! upload, and runs steps as told: succeed (publishing values), fail, hang until cancelled,
//! take its VM down, or panic. Both share one [`World`], which the tests inspect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use labctl_driver::{
    Driver, DriverError, DriverInfo, MachineConfig, MachineStatus, NetworkConfig, SnapshotOp,
    StopMode, StopOutcome,
};
use labctl_ssh::{ExecOutput, SshError, Target};

use crate::guest::{Connect, Guest};

/// What a step does when the fake guest runs it.
#[derive(Debug, Clone)]
pub(crate) enum Act {
    /// Exit 0, writing these `name=value` lines to `$LABCTL_PUBLISH`.
    Ok(Vec<(String, String)>),
    /// Exit with this status.
    Fail(i32),
    /// Killed by this signal (`KILL`): the channel carries an exit-signal and no status.
    Killed(&'static str),
    /// Never finish: wait for the cancel flag (or the step's timeout).
    Hang,
    /// The VM goes away under the step (the connection drops).
    Die,
    /// The runner's own code panics while the step runs (a bug in the runner).
    Panic,
}

/// When the fake sets the run's cancel flag (Ctrl-C).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// When the driver is asked to start this node.
    Start(String),
    /// When this node's step starts running.
    Step(String, String),
}

/// One thing the runner asked for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    NetworksUp,
    Create(String),
    Start {
        node: String,
        ssh_port: u16,
    },
    Snapshot {
        node: String,
        op: String,
    },
    Login(String),
    Upload {
        node: String,
        path: String,
        content: String,
    },
    Step {
        node: String,
        step: String,
    },
}

/// A driver operation the fake can be told to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Stop,
    Destroy,
    Snapshot,
}

#[derive(Default)]
struct Inner {
    /// (node, operation) → the exit status its failing tool reports.
    failing: BTreeMap<(String, Op), i32>,
    machines: BTreeMap<String, MachineStatus>,
    calls: Vec<Call>,
    acts: BTreeMap<(String, String), Act>,
    port_in_use: BTreeMap<String, u32>,
    cancel_on: Option<(Trigger, Arc<AtomicBool>)>,
    running: usize,
    max_running: usize,
    step_delay: Duration,
    published: BTreeMap<(String, String), String>,
    snapshots: BTreeMap<String, Vec<String>>,
}

/// The machines and guests of a fake host.
#[derive(Default)]
pub(crate) struct World(Mutex<Inner>);

impl World {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// What `node`'s step `step` does (default: succeed, publishing nothing).
    pub(crate) fn act(&self, node: &str, step: &str, act: Act) {
        self.lock().acts.insert((node.into(), step.into()), act);
    }
    /// The next `times` starts of `node` fail with `PortInUse` on its SSH port.
    pub(crate) fn port_in_use(&self, node: &str, times: u32) {
        self.lock().port_in_use.insert(node.into(), times);
    }
    /// `op` on `node` fails as a host program that exits with `status` would.
    pub(crate) fn fail(&self, node: &str, op: Op, status: i32) {
        self.lock().failing.insert((node.into(), op), status);
    }
    /// The error `op` on `node` was told to fail with.
    fn failure(&self, node: &str, op: Op) -> Result<(), DriverError> {
        match self.lock().failing.get(&(node.to_string(), op)) {
            None => Ok(()),
            Some(status) => Err(DriverError::Tool(labctl_driver::exec::ToolError::Failed {
                command: format!("fake-{op:?} {node}").to_lowercase(),
                status: format!("exit status: {status}"),
                stderr: format!("{node}: told to fail\n"),
            })),
        }
    }
    pub(crate) fn cancel_on(&self, t: Trigger, flag: Arc<AtomicBool>) {
        self.lock().cancel_on = Some((t, flag));
    }
    /// How long each step runs.
    pub(crate) fn step_delay(&self, d: Duration) {
        self.lock().step_delay = d;
    }
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }
    /// Steps that ran, as `node.step`, in order.
    pub(crate) fn steps_run(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Step { node, step } => Some(format!("{node}.{step}")),
                _ => None,
            })
            .collect()
    }
    /// The most steps that ran at once.
    pub(crate) fn max_running(&self) -> usize {
        self.lock().max_running
    }
    pub(crate) fn snapshots(&self, node: &str) -> Vec<String> {
        self.lock().snapshots.get(node).cloned().unwrap_or_default()
    }
    pub(crate) fn status(&self, node: &str) -> MachineStatus {
        self.lock()
            .machines
            .get(node)
            .cloned()
            .unwrap_or(MachineStatus::NotCreated)
    }
    fn trigger(&self, t: &Trigger) {
        if let Some((when, flag)) = &self.lock().cancel_on
            && when == t
        {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// A driver whose machines are records in the [`World`], keyed by hostname (= node name).
pub(crate) struct FakeDriver(pub(crate) Arc<World>);

impl Driver for FakeDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: "fake",
            version: "0".into(),
            features: self.features(),
        }
    }
    fn features(&self) -> labctl_driver::Features {
        labctl_driver::Features {
            blocks_egress: true,
        }
    }
    /// As QEMU: `10.0.2.(100+index):80`.
    fn guest_service_endpoint(
        &self,
        index: usize,
        _: &labctl_driver::HostService,
    ) -> Option<labctl_driver::GuestEndpoint> {
        labctl_driver::qemu::args::guest_service_endpoint(index)
    }
    fn networks_up(&self, _: &Path, _: &[NetworkConfig]) -> Result<(), DriverError> {
        self.0.lock().calls.push(Call::NetworksUp);
        Ok(())
    }
    fn networks_down(&self, _: &Path, _: &[NetworkConfig]) -> Result<(), DriverError> {
        Ok(())
    }
    fn create(&self, m: &MachineConfig) -> Result<(), DriverError> {
        let mut g = self.0.lock();
        g.calls.push(Call::Create(m.hostname.clone()));
        g.machines
            .entry(m.hostname.clone())
            .or_insert(MachineStatus::Stopped);
        Ok(())
    }
    fn start(&self, m: &MachineConfig) -> Result<(), DriverError> {
        self.0.trigger(&Trigger::Start(m.hostname.clone()));
        let mut g = self.0.lock();
        g.calls.push(Call::Start {
            node: m.hostname.clone(),
            ssh_port: m.ssh.host,
        });
        if let Some(n) = g.port_in_use.get_mut(&m.hostname)
            && *n > 0
        {
            *n -= 1;
            return Err(DriverError::PortInUse { port: m.ssh.host });
        }
        match g.machines.get_mut(&m.hostname) {
            Some(s) => {
                *s = MachineStatus::Running { pid: 1 };
                Ok(())
            }
            None => Err(DriverError::NotCreated { id: m.id.clone() }),
        }
    }
    fn stop(&self, m: &MachineConfig, _: StopMode) -> Result<StopOutcome, DriverError> {
        self.0.failure(&m.hostname, Op::Stop)?;
        if let Some(s) = self.0.lock().machines.get_mut(&m.hostname) {
            *s = MachineStatus::Stopped;
        }
        Ok(StopOutcome::Graceful(Duration::ZERO))
    }
    fn destroy(&self, m: &MachineConfig) -> Result<(), DriverError> {
        self.0.failure(&m.hostname, Op::Destroy)?;
        self.0.lock().machines.remove(&m.hostname);
        Ok(())
    }
    fn status(&self, m: &MachineConfig) -> MachineStatus {
        self.0.status(&m.hostname)
    }
    fn console_tail(&self, m: &MachineConfig, _: usize) -> String {
        format!("fake console of {}", m.hostname)
    }
    fn snapshot(&self, m: &MachineConfig, op: &SnapshotOp) -> Result<Vec<String>, DriverError> {
        self.0.failure(&m.hostname, Op::Snapshot)?;
        let mut g = self.0.lock();
        g.calls.push(Call::Snapshot {
            node: m.hostname.clone(),
            op: format!("{op:?}"),
        });
        let list = g.snapshots.entry(m.hostname.clone()).or_default();
        match op {
            SnapshotOp::Save(name) => {
                list.retain(|n| n != name);
                list.push(name.clone());
            }
            SnapshotOp::Delete(name) => list.retain(|n| n != name),
            SnapshotOp::Restore(_) => {}
            SnapshotOp::List => return Ok(list.clone()),
        }
        Ok(Vec::new())
    }
}

/// Logs in to a fake guest once the fake machine runs.
pub(crate) struct FakeConnect(pub(crate) Arc<World>);

impl Connect for FakeConnect {
    fn wait_ready(
        &self,
        target: &Target,
        _deadline: Duration,
        cancel: &AtomicBool,
        vm_alive: &dyn Fn() -> Result<(), String>,
    ) -> Result<Box<dyn Guest>, SshError> {
        if cancel.load(Ordering::Relaxed) {
            return Err(SshError::Cancelled {
                node: target.node.clone(),
            });
        }
        vm_alive().map_err(|serial_tail| SshError::VmDied {
            node: target.node.clone(),
            serial_tail,
        })?;
        self.0.lock().calls.push(Call::Login(target.node.clone()));
        Ok(Box::new(FakeGuest {
            world: self.0.clone(),
            node: target.node.clone(),
            key: target.keys.first().cloned().unwrap_or_default(),
        }))
    }
}

struct FakeGuest {
    world: Arc<World>,
    node: String,
    key: PathBuf,
}

/// The text of `command` between `start` and the next `end`.
fn between<'a>(command: &'a str, start: &str, end: char) -> Option<&'a str> {
    let rest = &command[command.find(start)? + start.len()..];
    Some(&rest[..rest.find(end).unwrap_or(rest.len())])
}

/// Keeps the count of running steps right even when the step panics.
struct Running<'a>(&'a World);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
    }
}

impl Guest for FakeGuest {
    fn exec(
        &self,
        command: &str,
        timeout: Duration,
        cancel: &AtomicBool,
        _pty: bool,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, SshError> {
        let ok = |output: String| {
            Ok(ExecOutput {
                status: 0,
                signal: None,
                output,
            })
        };
        if let Some(path) = between(command, "cat \"$HOME/", '"') {
            let g = self.world.lock();
            let text = g.published.get(&(self.node.clone(), path.to_string()));
            return ok(text.cloned().unwrap_or_default());
        }
        let Some(step) = between(command, "LABCTL_STEP=", ' ') else {
            return ok(String::new());
        };
        let step = step.trim_matches('\'').to_string();
        let publish = between(command, "LABCTL_PUBLISH=\"$HOME/", '"').unwrap_or_default();
        let (act, delay) = {
            let mut g = self.world.lock();
            g.calls.push(Call::Step {
                node: self.node.clone(),
                step: step.clone(),
            });
            g.running += 1;
            g.max_running = g.max_running.max(g.running);
            let act = g.acts.get(&(self.node.clone(), step.clone())).cloned();
            (act.unwrap_or(Act::Ok(Vec::new())), g.step_delay)
        };
        let _running = Running(&self.world);
        self.world
            .trigger(&Trigger::Step(self.node.clone(), step.clone()));
        std::thread::sleep(delay);
        on_line(&format!("{} running {step}", self.node));
        match act {
            Act::Ok(values) => {
                let text: String = values.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                self.world
                    .lock()
                    .published
                    .insert((self.node.clone(), publish.to_string()), text);
                ok(format!("{step} done\n"))
            }
            Act::Fail(status) => Ok(ExecOutput {
                status,
                signal: None,
                output: format!("{step} failed\n"),
            }),
            Act::Killed(sig) => Ok(ExecOutput {
                status: labctl_ssh::signal_status(sig),
                signal: Some(sig.to_string()),
                output: format!("{step} about to die\n"),
            }),
            Act::Hang => {
                let started = Instant::now();
                while !cancel.load(Ordering::Relaxed) {
                    if started.elapsed() >= timeout {
                        return Err(SshError::Timeout {
                            node: self.node.clone(),
                            what: command.to_string(),
                            after: timeout,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(SshError::Cancelled {
                    node: self.node.clone(),
                })
            }
            Act::Die => {
                if let Some(s) = self.world.lock().machines.get_mut(&self.node) {
                    *s = MachineStatus::Stopped;
                }
                Err(SshError::Channel {
                    node: self.node.clone(),
                    what: "reading output".into(),
                    message: "connection reset".into(),
                })
            }
            #[allow(clippy::panic, reason = "the fake stands for a bug in the runner")]
            Act::Panic => panic!("{}: told to panic in {step}", self.node),
        }
    }
    fn upload(&self, path: &str, content: &[u8], _mode: i32) -> Result<(), SshError> {
        self.world.lock().calls.push(Call::Upload {
            node: self.node.clone(),
            path: path.to_string(),
            content: String::from_utf8_lossy(content).into_owned(),
        });
        Ok(())
    }
    fn key(&self) -> &Path {
        &self.key
    }
    fn node(&self) -> &str {
        &self.node
    }
}
