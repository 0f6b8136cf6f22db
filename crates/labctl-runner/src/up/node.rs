//! One node's bring-up: create, boot (retrying on a taken port), wait for SSH, configure
//! the guest.

use std::collections::BTreeSet;
use std::time::Duration;

use labctl_driver::{DriverError, MachineConfig, MachineStatus};
use labctl_ssh::guest::{GuestSetup, NetStack, NicSetup};

use super::schedule::{POISONED, Shared};
use crate::RunnerError;
use crate::events::{EventKind, Notice, Phase, emit};
use crate::guest::Guest;
use crate::machines;
use crate::provision::as_root;

pub(super) fn machine_of(sh: &Shared<'_>, node: &str) -> MachineConfig {
    sh.state
        .lock()
        .ok()
        .and_then(|g| g.0.nodes.get(node).map(|n| n.machine.clone()))
        .expect("every selected node has a state entry")
}

pub(super) fn bring_up(
    sh: &Shared<'_>,
    node: &labctl_spec::Node,
) -> Result<Box<dyn Guest>, RunnerError> {
    let r = &*sh.reporter;
    let name = &node.name;
    let slot = sh
        .slots
        .acquire(&sh.cancel)
        .ok_or(RunnerError::Interrupted)?;
    let mut machine = machine_of(sh, name);
    let mut booted = false;
    match sh.driver.status(&machine) {
        MachineStatus::Running { .. } => {}
        status => {
            if status == MachineStatus::NotCreated {
                emit(
                    r,
                    name,
                    EventKind::Phase {
                        phase: Phase::Creating,
                    },
                );
                sh.driver.create(&machine)?;
            }
            emit(
                r,
                name,
                EventKind::Phase {
                    phase: Phase::Booting,
                },
            );
            let mut tries = 0;
            loop {
                let started = sh.driver.start(&machine);
                sh.announce_acceleration(sh.driver.acceleration(machine.accel, &machine.boot));
                match started {
                    Ok(()) => break,
                    Err(DriverError::PortInUse { port }) if tries < 3 => {
                        tries += 1;
                        let mut g = sh.state.lock().map_err(|_| POISONED)?;
                        let mut taken: BTreeSet<u16> = BTreeSet::new();
                        for n in g.0.nodes.values() {
                            taken.insert(n.machine.ssh.host);
                            taken.extend(n.machine.forwards.iter().map(|f| f.host));
                        }
                        let Some(new) = machines::next_free_port(&taken) else {
                            break;
                        };
                        if let Some(n) = g.0.nodes.get_mut(name) {
                            if n.machine.ssh.host == port {
                                n.machine.ssh.host = new;
                            }
                            for f in &mut n.machine.forwards {
                                if f.host == port {
                                    f.host = new;
                                }
                            }
                            machine = n.machine.clone();
                        }
                        // `labctl ssh` and the next run must find the node on its new port.
                        g.0.save(&sh.paths)?;
                        emit(
                            r,
                            name,
                            EventKind::Notice {
                                notice: Notice::PortTaken { port, new },
                            },
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            booted = true;
        }
    }
    emit(
        r,
        name,
        EventKind::Phase {
            phase: Phase::WaitingSsh,
        },
    );
    let (user, configured, route) = sh
        .state
        .lock()
        .ok()
        .map(|g| {
            let route =
                crate::route::route(g.0.provider.as_str(), g.0.uri.as_deref(), machine.ssh.host)?;
            Ok::<_, RunnerError>(match g.0.nodes.get(name) {
                Some(n) => (n.user.clone(), n.configured, route),
                None => (sh.box_user.clone(), false, route),
            })
        })
        .ok_or(POISONED)??;
    let mut keys = vec![sh.lab_key.clone()];
    keys.extend(sh.box_key.clone());
    // labctl has just started this VM and its disk is new (or rebuilt): whatever answers on
    // its port is it, so its key is recorded; otherwise it must match the record.
    let target = crate::route::target(
        name,
        &route,
        &user,
        keys,
        sh.paths.host_key_check(name, booted && !configured),
    );
    let driver = sh.driver.clone();
    let m2 = machine.clone();
    let alive = move || match driver.status(&m2) {
        MachineStatus::Running { .. } => Ok(()),
        _ => {
            let tail = driver.console_tail(&m2, 20);
            Err(if tail.trim().is_empty() {
                match driver.console_path(&m2) {
                    Some(p) => format!("(nothing on the console yet: {})", p.display()),
                    None => "(nothing on the console yet)".to_string(),
                }
            } else {
                tail
            })
        }
    };
    let session = sh
        .connect
        .wait_ready(&target, sh.lab.boot_timeout, &sh.cancel, &alive)?;
    if booted || !configured || session.key() != sh.lab_key {
        emit(
            r,
            name,
            EventKind::Phase {
                phase: Phase::Configuring,
            },
        );
        let setup = GuestSetup {
            hostname: name.clone(),
            user: user.clone(),
            nics: node
                .nics
                .iter()
                .zip(machine.private_nics.iter())
                .map(|(a, nic)| NicSetup {
                    mac: nic.mac.clone(),
                    ip: a.ip,
                    prefix: a.prefix,
                })
                .collect(),
            stack: NetStack::for_os(sh.lab.os.as_str()),
            authorized_key: sh.authorized_key.clone(),
        };
        let script = labctl_ssh::guest::script(&setup);
        session.upload(".labctl-guest.sh", script.as_bytes(), 0o700)?;
        session.run(
            &format!("{}sh \"$HOME/.labctl-guest.sh\"", as_root(&user)),
            Duration::from_secs(120),
        )?;
        if let Ok(mut g) = sh.state.lock() {
            if let Some(n) = g.0.nodes.get_mut(name) {
                n.configured = true;
            }
            g.0.save(&sh.paths)?;
        }
    }
    drop(slot);
    Ok(session)
}
