//! `labctl __relay PORT`: one guest connection to a host service. slirp's `guestfwd=…-cmd:`
//! starts it for each connection a guest opens to the service's address, with the guest's
//! connection on stdin and stdout; it connects to `127.0.0.1:PORT` and copies both ways
//! until either side closes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Relay stdin/stdout to `127.0.0.1:port`.
pub fn run(port: u16) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    relay(std::io::stdin(), std::io::stdout().lock(), sock)
}

/// Copy `input` → `sock` on a thread and `sock` → `output` here; when the guest side ends,
/// the write half is shut down so the service sees the end of the request. Returns when the
/// service closes its side; the copying thread is not waited for (it may be blocked reading
/// the guest, and the process exits, which closes the guest's connection).
pub fn relay<R, W>(input: R, mut output: W, sock: TcpStream) -> std::io::Result<()>
where
    R: Read + Send + 'static,
    W: Write,
{
    let mut up = sock.try_clone()?;
    std::thread::spawn(move || {
        let mut input = input;
        let _ = std::io::copy(&mut input, &mut up);
        let _ = up.shutdown(Shutdown::Write);
    });
    let mut down = &sock;
    let r = std::io::copy(&mut down, &mut output).and_then(|_| output.flush());
    let _ = sock.shutdown(Shutdown::Both);
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn carries_a_request_and_its_answer() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            let mut req = String::new();
            c.read_to_string(&mut req).expect("read");
            c.write_all(format!("got {req}").as_bytes()).expect("write");
        });
        let sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        let mut out = Vec::new();
        relay(&b"GET /x"[..], &mut out, sock).expect("relay");
        server.join().expect("server");
        assert_eq!(String::from_utf8_lossy(&out), "got GET /x");
    }
}
