//! End-to-end test of the libvirt provider against a real libvirtd (Debian 12's 9.0), run in
//! a network and mount namespace the test creates: the daemon's state, runtime, log and
//! config directories are the test's own (bind mounts over /var/lib/libvirt, /run/libvirt,
//! /var/log/libvirt, /var/cache/libvirt and a copy of /etc/libvirt), and its bridges live in
//! the test's network namespace, so nothing touches the host's network or libvirt. labctl
//! runs in the same namespaces (`nsenter`), so `qemu:///system` reaches the test's daemon.
//!
//! `#[ignore]`d like the other VM tests; `scripts/test.sh` runs it with `--run-ignored all`.
// Test code: starts real processes (the daemon, virsh, nsenter) directly.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Host, Lab, alive, have_box};

/// Runs inside `unshare --mount --net --propagation private`: private copies of libvirt's
/// directories, then the daemon in the foreground (so its PID is the unshare child's).
/// qemu.conf knobs for this container: no security driver (no AppArmor/SELinux here), no
/// cgroup controllers and no per-domain mount namespace (the container does not delegate
/// them), console and QEMU logs written by libvirtd itself (no virtlogd), QEMU as root.
const NS_SCRIPT: &str = r#"set -eu
T=$1
ip link set lo up
mkdir -p /run/libvirt
for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
  s="$T/$(echo "$d" | tr / _)"
  mkdir -p "$s"
  mount --bind "$s" "$d"
done
mkdir -p /var/lib/libvirt/qemu /var/lib/libvirt/images /var/cache/libvirt/qemu /var/log/libvirt/qemu
cp -a /etc/libvirt "$T/etc"
rm -f "$T"/etc/qemu/networks/autostart/*
cat >> "$T/etc/qemu.conf" <<'EOC'
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
user = "root"
group = "root"
dynamic_ownership = 0
EOC
mount --bind "$T/etc" /etc/libvirt
exec /usr/sbin/libvirtd --pid-file "$T/libvirtd.pid"
"#;

/// The test's libvirtd in its own namespaces; dropping it stops every domain, then the
/// daemon, then any process left in its network namespace (QEMU), by PID.
struct Daemon {
    child: Child,
    _tmp: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let script = tmp.path().join("ns.sh");
        std::fs::write(&script, NS_SCRIPT).expect("write ns.sh");
        let log = std::fs::File::create(tmp.path().join("libvirtd.log")).expect("log");
        let child = Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private", "sh"])
            .arg(&script)
            .arg(tmp.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("unshare");
        let d = Daemon { child, _tmp: tmp };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.virsh(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "libvirtd did not answer within 60 s:\n{}",
                std::fs::read_to_string(d._tmp.path().join("libvirtd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        d
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `nsenter` into the daemon's namespaces, working in `dir`.
    fn wrap(&self, dir: &Path) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.pid().to_string(),
            "-m".into(),
            "-n".into(),
            format!("--wd={}", dir.display()),
        ]
    }

    fn virsh(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.pid().to_string(),
                "-m",
                "-n",
                "virsh",
                "-c",
                "qemu:///system",
            ])
            .args(args)
            .output()
            .expect("nsenter virsh")
    }

    fn names(&self, args: &[&str]) -> Vec<String> {
        common::output_lines(&self.virsh(args), &format!("virsh {args:?}"))
    }

    /// PIDs in the daemon's network namespace other than the daemon.
    fn others_in_netns(&self) -> Vec<u32> {
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let Some(ours) = ns(&self.pid().to_string()) else {
            return Vec::new();
        };
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
            .filter(|p| *p != self.pid() && ns(&p.to_string()).as_ref() == Some(&ours))
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let out = self.virsh(&["list", "--name"]);
        for name in String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let _ = self.virsh(&["destroy", name]);
        }
        let left = self.others_in_netns();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in left {
            if alive(pid) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

fn libvirt_installed() -> bool {
    let ok = Path::new("/usr/sbin/libvirtd").exists()
        && Command::new("virsh")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "libvirt is missing: scripts/setup.sh installs libvirt-daemon-system and libvirt-clients"
        );
        eprintln!("skipping: libvirt is not installed (scripts/setup.sh)");
    }
    ok
}

const NODES: [(&str, &str); 3] = [
    ("m-k8s", "192.168.1.10"),
    ("w1-k8s", "192.168.1.101"),
    ("w2-k8s", "192.168.1.102"),
];

/// Issue 18 acceptance (local part): `up --workers 2` of the smoke lab with
/// `provider = "libvirt"`; hostnames, private IPs, ping mesh; `reset w1-k8s` from the golden
/// snapshot; `destroy` leaves no domain, node volume or network behind.
#[test]
#[ignore = "boots QEMU guests under a private libvirtd; run by scripts/test.sh"]
fn smoke_lab_on_a_private_libvirtd() {
    if !have_box() || !libvirt_installed() {
        return;
    }
    let daemon = Daemon::start();
    let mut lab = Lab::smoke_on(Host::new(), 62010, 3);
    let toml = std::fs::read_to_string(lab.dir.join("lab.toml")).expect("lab.toml");
    let toml = toml.replacen(
        "name = \"smoke\"",
        "name = \"smoke\"\nprovider = \"libvirt\"",
        1,
    );
    std::fs::write(lab.dir.join("lab.toml"), toml).expect("write lab.toml");
    lab.wrap = daemon.wrap(&lab.dir);

    let started = Instant::now();
    lab.run_ok(&["up", "--workers", "2"]);
    eprintln!("up took {:?}", started.elapsed());

    let domains = daemon.names(&["list", "--all", "--name"]);
    assert_eq!(domains.len(), 3, "{domains:?}");
    let xml = String::from_utf8_lossy(&daemon.virsh(&["dumpxml", &domains[0]]).stdout).to_string();
    assert!(
        xml.contains("restrict=on"),
        "egress off must reach QEMU's user network:\n{xml}"
    );
    let nets: Vec<String> = daemon
        .names(&["net-list", "--all", "--name"])
        .into_iter()
        .filter(|n| n.starts_with("labctl-"))
        .collect();
    assert_eq!(nets.len(), 1, "{nets:?}");
    let net_xml =
        String::from_utf8_lossy(&daemon.virsh(&["net-dumpxml", &nets[0]]).stdout).to_string();
    assert!(
        !net_xml.contains("<forward") && !net_xml.contains("<dhcp") && !net_xml.contains("<ip"),
        "the lab network must be isolated:\n{net_xml}"
    );

    for (node, ip) in NODES {
        assert_eq!(lab.ssh(node, "hostname").trim(), node);
        let addrs = lab.ssh(node, "ip -4 -o addr show");
        assert!(
            addrs.contains(&format!("inet {ip}/24")),
            "{node} lacks {ip}:\n{addrs}"
        );
        for (_, other) in NODES {
            lab.ssh(node, &format!("ping -c 1 -W 5 {other} >/dev/null"));
        }
    }
    // The guest's serial console (the box boots with `quiet`) reaches the file labctl reads.
    let console = lab.dir.join(".labctl/machines/m-k8s/serial.log");
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        !text.trim().is_empty(),
        "nothing on the serial console in {}",
        console.display()
    );

    // A broken worker comes back from the golden snapshot.
    lab.ssh("w1-k8s", "touch /root/broken");
    let started = Instant::now();
    lab.run_ok(&["reset", "w1-k8s"]);
    eprintln!("reset w1-k8s took {:?}", started.elapsed());
    assert_eq!(
        lab.ssh(
            "w1-k8s",
            "test -e /root/broken && echo broken || echo clean"
        )
        .trim(),
        "clean"
    );
    lab.ssh("w1-k8s", "ping -c 1 -W 5 192.168.1.10 >/dev/null");

    let started = Instant::now();
    lab.run_ok(&["destroy", "-f"]);
    eprintln!("destroy took {:?}", started.elapsed());
    assert!(
        daemon.names(&["list", "--all", "--name"]).is_empty(),
        "a domain is left"
    );
    let nets = daemon.names(&["net-list", "--all", "--name"]);
    assert!(
        !nets.iter().any(|n| n.starts_with("labctl-")),
        "a network is left: {nets:?}"
    );
    // Only the box's base volumes stay (uploaded once per host, like boxes in the store).
    let vols = String::from_utf8_lossy(&daemon.virsh(&["vol-list", "labctl"]).stdout).to_string();
    let node_vols: Vec<&str> = vols
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| !v.starts_with("labctl-box-"))
        .collect();
    assert!(node_vols.is_empty(), "node volumes are left:\n{vols}");
    drop(lab);
    drop(daemon);
}
