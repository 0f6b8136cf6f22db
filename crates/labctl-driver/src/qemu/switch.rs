//! The lab switch: one small process per lab that joins the VMs' private NICs into L2
//! networks, with no root and no host network interface.
//!
//! Every VM's NIC is a QEMU `dgram` netdev bound to `net-NAME/<host>.dgram` and sending to
//! `net-NAME/hub.sock`. The switch learns source MACs; unicast to a known MAC goes to that
//! port, everything else is flooded to every `*.dgram` port in the directory (a guest with
//! only a static address stays silent until it ARPs, so flooding must not depend on learning).
//! The switch exits by itself once its hub socket is removed (`destroy`).
//!
//! One stalled guest (paused, or its NIC down) must not stop the network: frames are sent
//! without blocking, and a frame for a port whose queue is full is dropped (as a real switch
//! drops on a congested port). The MAC table is bounded and ages its entries.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::args::{hub_socket, net_dir};

/// Run the switch for these networks until every hub socket is gone. Blocks.
pub fn run(run_dir: &Path, networks: &[String]) -> io::Result<()> {
    let mut handles = Vec::new();
    for net in networks {
        let dir = net_dir(run_dir, net);
        std::fs::create_dir_all(&dir)?;
        let hub = hub_socket(run_dir, net);
        let _ = std::fs::remove_file(&hub);
        let sock = UnixDatagram::bind(&hub)?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        handles.push(std::thread::spawn(move || serve(&sock, &dir, &hub)));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn mac(frame: &[u8], offset: usize) -> Option<[u8; 6]> {
    frame.get(offset..offset + 6)?.try_into().ok()
}

fn ports(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "dgram"))
                .collect()
        })
        .unwrap_or_default()
}

/// How many MACs a network's table holds; the oldest goes when it is full.
const MAX_MACS: usize = 1024;
/// A learned MAC is forgotten after this long without a frame from it.
const MAC_AGE: Duration = Duration::from_secs(300);

/// Send one frame to a port without blocking; false when it was not delivered (queue full,
/// port gone).
fn send(sock: &UnixDatagram, frame: &[u8], port: &Path) -> bool {
    let Ok(addr) = rustix::net::SocketAddrUnix::new(port) else {
        return false;
    };
    rustix::net::sendto(sock, frame, rustix::net::SendFlags::DONTWAIT, &addr).is_ok()
}

/// Learn `src` at `port`, keeping the table within [`MAX_MACS`] (expired entries first,
/// then the oldest).
fn learn(table: &mut HashMap<[u8; 6], (PathBuf, Instant)>, src: [u8; 6], port: PathBuf) {
    if !table.contains_key(&src) && table.len() >= MAX_MACS {
        table.retain(|_, (_, seen)| seen.elapsed() < MAC_AGE);
        if table.len() >= MAX_MACS
            && let Some(oldest) = table
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(m, _)| *m)
        {
            table.remove(&oldest);
        }
    }
    table.insert(src, (port, Instant::now()));
}

fn serve(sock: &UnixDatagram, dir: &Path, hub: &Path) {
    let inode = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    };
    let my_inode = inode(hub);
    let mut table: HashMap<[u8; 6], (PathBuf, Instant)> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut last_check = Instant::now();
    loop {
        if last_check.elapsed() > Duration::from_secs(2) {
            last_check = Instant::now();
            if inode(hub) != my_inode {
                return;
            }
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let frame = &buf[..n];
        let Some(src_path) = from.as_pathname().map(Path::to_path_buf) else {
            continue;
        };
        let (Some(dst), Some(src)) = (mac(frame, 0), mac(frame, 6)) else {
            continue;
        };
        if src[0] & 1 == 0 {
            learn(&mut table, src, src_path.clone());
        }
        let known = table
            .get(&dst)
            .filter(|(_, seen)| seen.elapsed() < MAC_AGE)
            .map(|(p, _)| p.clone());
        match known {
            Some(port) if dst[0] & 1 == 0 => {
                if !send(sock, frame, &port) && !port.exists() {
                    table.remove(&dst);
                }
            }
            _ => {
                for port in ports(dir) {
                    if port != src_path {
                        let _ = send(sock, frame, &port);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn the_mac_table_is_bounded() {
        let mut t = HashMap::new();
        for i in 0..(MAX_MACS + 50) {
            let b = u16::try_from(i).expect("small").to_be_bytes();
            learn(&mut t, [2, 0, 0, 0, b[0], b[1]], PathBuf::from("p"));
        }
        assert_eq!(t.len(), MAX_MACS);
        assert!(t.contains_key(&[2, 0, 0, 0, 4, 49]), "the newest stays");
    }

    /// Issue 14 item 5: a port that never reads (a paused guest) fills its queue; the switch
    /// drops its frames and keeps forwarding between the others.
    #[test]
    fn a_stalled_port_does_not_stop_the_others() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let run_dir = tmp.path().to_path_buf();
        let rd = run_dir.clone();
        let t = std::thread::spawn(move || run(&rd, &["lan".to_string()]));
        let dir = net_dir(&run_dir, "lan");
        let hub = hub_socket(&run_dir, "lan");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !hub.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let a = UnixDatagram::bind(dir.join("a.dgram")).expect("a");
        let b = UnixDatagram::bind(dir.join("b.dgram")).expect("b");
        let _stalled = UnixDatagram::bind(dir.join("s.dgram")).expect("stalled, never read");
        b.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let (ma, mb) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
        let mut buf = [0u8; 2000];
        // Far more broadcasts than a unix datagram queue holds; b drains as they come.
        for i in 0..600u32 {
            a.send_to(&frame([0xff; 6], ma, &i.to_be_bytes()), &hub)
                .expect("send");
            let n = b.recv(&mut buf).expect("b keeps getting frames");
            assert_eq!(&buf[14..n], &i.to_be_bytes());
        }
        // Unicast still flows both ways.
        b.send_to(&frame(ma, mb, b"pong"), &hub).expect("send");
        a.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let n = a.recv(&mut buf).expect("a gets the reply");
        assert_eq!(&buf[14..n], b"pong");
        std::fs::remove_file(&hub).expect("rm hub");
        t.join().expect("switch thread").expect("switch ok");
    }

    #[test]
    fn floods_broadcast_then_forwards_learned_unicast() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let run_dir = tmp.path().to_path_buf();
        let rd = run_dir.clone();
        let t = std::thread::spawn(move || run(&rd, &["lan".to_string()]));
        let dir = net_dir(&run_dir, "lan");
        let hub = hub_socket(&run_dir, "lan");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !hub.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let a = UnixDatagram::bind(dir.join("a.dgram")).expect("a");
        let b = UnixDatagram::bind(dir.join("b.dgram")).expect("b");
        let c = UnixDatagram::bind(dir.join("c.dgram")).expect("c");
        for s in [&a, &b, &c] {
            s.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
        }
        let (ma, mb) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
        // Broadcast from a reaches b and c, not a.
        a.send_to(&frame([0xff; 6], ma, b"arp?"), &hub)
            .expect("send");
        let mut buf = [0u8; 100];
        let n = b.recv(&mut buf).expect("b gets broadcast");
        assert_eq!(&buf[14..n], b"arp?");
        let n = c.recv(&mut buf).expect("c gets broadcast");
        assert_eq!(&buf[14..n], b"arp?");
        // b answers a by unicast: a knows nothing yet of b, but the switch learned a.
        b.send_to(&frame(ma, mb, b"reply"), &hub).expect("send");
        let n = a.recv(&mut buf).expect("a gets reply");
        assert_eq!(&buf[14..n], b"reply");
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        assert!(
            c.recv(&mut buf).is_err(),
            "learned unicast must not be flooded to c"
        );
        // Removing the hub socket stops the switch.
        std::fs::remove_file(&hub).expect("rm hub");
        t.join().expect("switch thread").expect("switch ok");
    }
}
