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
    // Flushed after every read: Rust's stdout is line-buffered, and the end of a binary
    // response after its last newline would otherwise wait in the buffer until the service
    // closes a keep-alive connection (apt timed out on Packages.gz that way).
    let mut down = &sock;
    let mut buf = vec![0u8; 64 * 1024];
    let r = loop {
        match down.read(&mut buf) {
            Ok(0) => break output.flush(),
            Ok(n) => {
                if let Err(e) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                    break Err(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let _ = sock.shutdown(Shutdown::Both);
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A writer that keeps what is not flushed, like a line-buffered stdout.
    struct Held {
        held: Vec<u8>,
        flushed: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }
    impl Write for Held {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.held.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            if let Ok(mut f) = self.flushed.lock() {
                f.append(&mut self.held);
            }
            Ok(())
        }
    }

    #[test]
    fn an_answer_reaches_the_guest_while_the_service_keeps_the_connection_open() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            c.write_all(b"binary\x00no newline at the end")
                .expect("write");
            // Keep-alive: the connection stays open until the test has seen the answer.
            let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
        });
        let sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        let flushed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = Held {
            held: Vec::new(),
            flushed: flushed.clone(),
        };
        let relay = std::thread::spawn(move || relay(std::io::empty(), out, sock));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while flushed.lock().map(|f| f.len()).unwrap_or(0) < 29
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let got = flushed.lock().map(|f| f.clone()).unwrap_or_default();
        let _ = tx.send(());
        server.join().expect("server");
        relay.join().expect("relay").expect("relay ok");
        assert_eq!(got, b"binary\x00no newline at the end");
    }

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
