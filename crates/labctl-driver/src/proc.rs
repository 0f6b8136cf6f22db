//! Process liveness and signals, by PID.
//!
//! A PID read from a pidfile is only a hint: after the process ended (or the host rebooted)
//! the number may belong to anyone's process. Before a signal, [`signal_if`] pins the
//! process with a pidfd and checks its command line, so a reused PID is never signalled.
//!
//! Windows: std cannot look at or signal another process by its PID, so there no process is
//! alive, none has an argv and none is signalled ([`SUPPORTED`] is false). Their callers are
//! refused on Windows before they get here: the QEMU and libvirt drivers (`open`), the bundle
//! server.

use std::path::Path;

/// Whether this host can look at and signal processes by PID (Unix); false on Windows.
pub const SUPPORTED: bool = cfg!(unix);

/// Whether `pid` is a live (not zombie) process.
#[cfg(unix)]
pub fn alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    if rustix::process::test_kill_process(p).is_err() {
        return false;
    }
    // A zombie still answers kill(0); /proc tells (Linux). Elsewhere trust kill(0).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// Read a pidfile; None if missing or not a number.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Send SIGTERM (or SIGKILL when `force`).
#[cfg(unix)]
pub fn signal(pid: u32, force: bool) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    let sig = if force {
        rustix::process::Signal::KILL
    } else {
        rustix::process::Signal::TERM
    };
    rustix::process::kill_process(p, sig).is_ok()
}

/// The process's arguments (`/proc/PID/cmdline`), None when it cannot be read.
#[cfg(unix)]
pub fn argv(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether the process's command line contains `needle` (a weak check; prefer [`is_ours`]).
#[cfg(unix)]
pub fn cmdline_contains(pid: u32, needle: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).contains(needle),
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// Whether `pid` is alive and one of its arguments satisfies `is_mark` (for QEMU, an
/// argument ending in `,process=labctl-<machine id>`; for the switch, its run directory).
/// Without /proc (not Linux) nothing can be verified and the answer is false.
pub fn is_ours(pid: u32, is_mark: &dyn Fn(&str) -> bool) -> bool {
    alive(pid) && argv(pid).is_some_and(|a| a.iter().any(|x| is_mark(x)))
}

/// Signal `pid` only if it is ours: the process is pinned with a pidfd first, then its
/// command line is checked, then the signal goes to the pidfd, so neither a PID reused
/// before the check nor one reused between check and signal is hit. Returns whether the
/// signal was sent.
#[cfg(unix)]
pub fn signal_if(pid: u32, force: bool, is_mark: &dyn Fn(&str) -> bool) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    let sig = if force {
        rustix::process::Signal::KILL
    } else {
        rustix::process::Signal::TERM
    };
    match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => is_ours(pid, is_mark) && rustix::process::pidfd_send_signal(&fd, sig).is_ok(),
        // Kernels before 5.3 have no pidfd: check, then signal (a tiny race remains).
        Err(_) => is_ours(pid, is_mark) && rustix::process::kill_process(p, sig).is_ok(),
    }
}

/// Windows counterparts: nothing can be seen or signalled by PID with std (see the module
/// docs).
#[cfg(not(unix))]
mod not_unix {
    pub fn alive(_pid: u32) -> bool {
        false
    }

    pub fn signal(_pid: u32, _force: bool) -> bool {
        false
    }

    pub fn argv(_pid: u32) -> Option<Vec<String>> {
        None
    }

    pub fn cmdline_contains(_pid: u32, _needle: &str) -> bool {
        false
    }

    pub fn signal_if(_pid: u32, _force: bool, _is_mark: &dyn Fn(&str) -> bool) -> bool {
        false
    }
}
#[cfg(not(unix))]
pub use not_unix::{alive, argv, cmdline_contains, signal, signal_if};

/// Wait until the process is gone, up to `timeout`.
pub fn wait_gone(pid: u32, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    !alive(pid)
}

#[cfg(all(test, unix))]
#[allow(clippy::disallowed_methods)] // the tests start `sleep` to have a live process
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_bogus_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(0));
        assert!(!alive(u32::MAX));
    }

    #[test]
    fn a_process_without_the_mark_is_not_signalled() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        // Until the child has exec'd, its cmdline is this test binary's.
        let t = std::time::Instant::now();
        while !argv(pid).is_some_and(|a| a.iter().any(|x| x == "30"))
            && t.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // A recorded PID now used by an unrelated `sleep`: never signalled.
        assert!(!is_ours(pid, &|a| a.ends_with(",process=labctl-x-m")));
        assert!(!signal_if(pid, true, &|a| a.ends_with(",process=labctl-x-m")));
        assert!(alive(pid));
        assert!(signal_if(pid, true, &|a| a == "30"));
        let _ = child.wait();
        assert!(!alive(pid));
    }

    #[test]
    fn signal_ends_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        assert!(alive(pid));
        assert!(signal(pid, false));
        let _ = child.wait();
        assert!(!alive(pid));
    }
}
