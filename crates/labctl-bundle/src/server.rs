//! The read-only HTTP server guests install from: every bundle of a data directory under
//! `/b/<name>/`, on loopback only.
//!
//! - `GET|HEAD /b/<name>/apt/...`: the apt repositories, as static files;
//! - `GET|HEAD /b/<name>/key.asc`: the bundle's public signing key;
//! - the OCI distribution API's pull endpoints under `/b/<name>/v2/`: `/v2/` (200 `{}`),
//!   `/v2/<repo>/manifests/<tag|digest>[?ns=<registry>]` (containerd's mirror requests add
//!   `ns`) and `/v2/<repo>/blobs/<digest>`.
//!
//! A small hand-written HTTP/1.1 server (GET and HEAD, keep-alive, one thread per
//! connection) on std: no new dependency for what is a static file server.
//! Anything that is not a plain name path inside a bundle (`..`, `.`, empty segments,
//! `%2e%2e`, encoded `/`, absolute paths) is refused before the file system is touched.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::{Error, Result, Store, io};

/// Most connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 128;
const MAX_HEAD: usize = 16 * 1024;

/// Bind `127.0.0.1:port` (0: the system picks a free port).
pub fn bind_loopback(port: u16) -> Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(|source| Error::Io {
        action: "listen on",
        path: PathBuf::from(format!("127.0.0.1:{port}")),
        source,
    })
}

/// Serve until `stop` is set. The listener must be bound to a loopback address.
pub fn serve(listener: TcpListener, data_dir: PathBuf, stop: Arc<AtomicBool>) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(io("read the address of", "the listener"))?;
    if !addr.ip().is_loopback() {
        return Err(Error::NotLoopback(addr));
    }
    listener
        .set_nonblocking(true)
        .map_err(io("configure", "the listener"))?;
    let store = Arc::new(Store::new(data_dir));
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(300)));
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let mut s = stream;
                    let _ = respond(&mut s, false, Response::status(503, "busy"), false);
                    continue;
                }
                let store = Arc::clone(&store);
                let active2 = Arc::clone(&active);
                let spawned = std::thread::Builder::new()
                    .name("bundle-http".into())
                    .spawn(move || {
                        let _ = connection(stream, &store);
                        active2.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Ok(())
}

enum Body {
    Bytes(Vec<u8>),
    File(std::fs::File),
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    len: u64,
    body: Body,
}

impl Response {
    fn bytes(status: u16, content_type: &str, b: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            len: b.len() as u64,
            body: Body::Bytes(b),
        }
    }
    fn status(status: u16, text: &str) -> Response {
        Response::bytes(
            status,
            "text/plain; charset=utf-8",
            format!("{text}\n").into_bytes(),
        )
    }
    fn registry_error(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
        let mut r = Response::bytes(status, "application/json", body.to_string().into_bytes());
        r.headers
            .push(("Docker-Distribution-API-Version", "registry/2.0".into()));
        r
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(
    s: &mut TcpStream,
    head_only: bool,
    r: Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: {}\r\nServer: labctl-bundle\r\n\r\n",
        r.len,
        if keep_alive { "keep-alive" } else { "close" }
    ));
    s.write_all(head.as_bytes())?;
    if !head_only {
        match r.body {
            Body::Bytes(b) => s.write_all(&b)?,
            Body::File(mut f) => {
                std::io::copy(&mut (&mut f).take(r.len), s)?;
            }
        }
    }
    s.flush()
}

fn connection(stream: TcpStream, store: &Store) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        // Request line and headers.
        let mut lines: Vec<String> = Vec::new();
        let mut total = 0;
        loop {
            let mut line = String::new();
            let n = (&mut reader).take(MAX_HEAD as u64).read_line(&mut line)?;
            if n == 0 {
                return Ok(());
            }
            total += n;
            if total > MAX_HEAD {
                return respond(
                    &mut out,
                    false,
                    Response::status(431, "request too large"),
                    false,
                );
            }
            let l = line.trim_end_matches(['\r', '\n']).to_string();
            if l.is_empty() {
                if lines.is_empty() {
                    continue;
                }
                break;
            }
            lines.push(l);
        }
        let mut parts = lines[0].split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return respond(
                &mut out,
                false,
                Response::status(400, "bad request line"),
                false,
            );
        };
        let mut keep = version == "HTTP/1.1";
        let mut has_body = false;
        for h in &lines[1..] {
            let Some((k, v)) = h.split_once(':') else {
                return respond(&mut out, false, Response::status(400, "bad header"), false);
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            if k == "connection" && v.contains("close") {
                keep = false;
            }
            if (k == "content-length" && v != "0") || k == "transfer-encoding" {
                has_body = true;
            }
        }
        if has_body {
            return respond(
                &mut out,
                false,
                Response::status(400, "no request body expected"),
                false,
            );
        }
        let head_only = method == "HEAD";
        let r = if method == "GET" || head_only {
            route(store, target)
        } else {
            let mut r = Response::status(405, "only GET and HEAD");
            r.headers.push(("Allow", "GET, HEAD".into()));
            r
        };
        respond(&mut out, head_only, r, keep)?;
        if !keep {
            return Ok(());
        }
    }
}

fn unhex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode one path segment or query value.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = unhex(*b.get(i + 1)?)?;
            let lo = unhex(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded segments of a request path, or the status to refuse it with.
fn segments(path: &str) -> std::result::Result<Vec<String>, u16> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(400);
    };
    let raw: Vec<&str> = rest.split('/').collect();
    let n = raw.len();
    let mut out = Vec::with_capacity(n);
    for (i, seg) in raw.into_iter().enumerate() {
        let d = decode(seg).ok_or(400u16)?;
        if d.is_empty() && i + 1 == n {
            continue; // a trailing slash
        }
        if d.is_empty()
            || d == "."
            || d == ".."
            || d.contains(['/', '\\', '\0'])
            || d.chars().any(char::is_control)
        {
            return Err(404);
        }
        out.push(d);
    }
    Ok(out)
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("deb") => "application/vnd.debian.binary-package",
        Some("gz") => "application/gzip",
        Some("asc" | "gpg") => "application/pgp-signature",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// A plain file inside `base` (no symbolic link anywhere below `base`).
fn file_under(base: &Path, rel: &[String], ct: &str) -> Response {
    let mut p = base.to_path_buf();
    for seg in rel {
        p.push(seg);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return Response::status(404, "not found"),
            Ok(_) => {}
            Err(_) => return Response::status(404, "not found"),
        }
    }
    match std::fs::File::open(&p) {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_file() => {
                let ct = if ct.is_empty() { content_type(&p) } else { ct };
                Response {
                    status: 200,
                    headers: vec![("Content-Type", ct.to_string())],
                    len: m.len(),
                    body: Body::File(f),
                }
            }
            _ => Response::status(404, "not found"),
        },
        Err(_) => Response::status(404, "not found"),
    }
}

fn route(store: &Store, target: &str) -> Response {
    if target.starts_with("//") || !target.starts_with('/') {
        return Response::status(400, "bad path");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs = match segments(path) {
        Ok(s) => s,
        Err(code) => return Response::status(code, "not found"),
    };
    if segs.len() < 3 || segs[0] != "b" {
        return Response::status(404, "not found");
    }
    let name = &segs[1];
    if !store.exists(name) {
        return Response::status(404, "no such bundle");
    }
    let Ok(dir) = store.dir(name) else {
        return Response::status(404, "no such bundle");
    };
    match segs[2].as_str() {
        "apt" if segs.len() > 3 => file_under(&dir.join("apt"), &segs[3..], ""),
        "key.asc" if segs.len() == 3 => file_under(&dir, &segs[2..], "application/pgp-keys"),
        "v2" => registry(&dir.join("oci"), &segs[3..], query),
        _ => Response::status(404, "not found"),
    }
}

fn registry(layout: &Path, rest: &[String], query: &str) -> Response {
    if rest.is_empty() {
        let mut r = Response::bytes(200, "application/json", b"{}".to_vec());
        r.headers
            .push(("Docker-Distribution-API-Version", "registry/2.0".into()));
        return r;
    }
    let n = rest.len();
    if n < 3 {
        return Response::registry_error(404, "NAME_UNKNOWN", "not found");
    }
    let repo = rest[..n - 2].join("/");
    let reference = &rest[n - 1];
    let ns = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ns="))
        .and_then(decode);
    match rest[n - 2].as_str() {
        "manifests" => match crate::oci::find_manifest(layout, ns.as_deref(), &repo, reference) {
            Some(f) => {
                let len = f.bytes.len() as u64;
                Response {
                    status: 200,
                    headers: vec![
                        ("Content-Type", f.media_type),
                        ("Docker-Content-Digest", f.digest),
                        ("Docker-Distribution-API-Version", "registry/2.0".into()),
                    ],
                    len,
                    body: Body::Bytes(f.bytes),
                }
            }
            None => Response::registry_error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
        },
        "blobs" => {
            let Some(hex) = crate::oci::digest_hex(reference) else {
                return Response::registry_error(400, "DIGEST_INVALID", "not a sha256 digest");
            };
            let mut r = file_under(
                layout,
                &["blobs".into(), "sha256".into(), hex.to_string()],
                "application/octet-stream",
            );
            if r.status == 200 {
                r.headers.push(("Docker-Content-Digest", reference.clone()));
                r.headers
                    .push(("Docker-Distribution-API-Version", "registry/2.0".into()));
                r
            } else {
                Response::registry_error(404, "BLOB_UNKNOWN", "blob unknown")
            }
        }
        _ => Response::registry_error(404, "NAME_UNKNOWN", "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, sha256_bytes};

    struct Srv {
        addr: std::net::SocketAddr,
        stop: Arc<AtomicBool>,
        th: Option<std::thread::JoinHandle<Result<()>>>,
        _home: tempfile::TempDir,
        manifest_digest: String,
        manifest_bytes: Vec<u8>,
    }

    impl Drop for Srv {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.th.take() {
                let _ = t.join();
            }
        }
    }

    fn start() -> Srv {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path());
        let dir = store.dir("k8s").unwrap();
        let repo = dir.join("apt/debian-12/dists/labctl");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join("Release"), "Suite: labctl\n").unwrap();
        std::fs::write(dir.join("key.asc"), "KEY").unwrap();
        std::fs::write(home.path().join("secret"), "SECRET").unwrap();
        let (md, mb) = crate::oci::tests::make_layout(
            &home.path().join("src"),
            "example.invalid/lab/hello:1.0",
            "hi",
        );
        crate::oci::add_layout(&dir.join("oci"), &home.path().join("src"), None).unwrap();
        let mut m = Manifest::new("k8s");
        m.rehash(&dir).unwrap();
        m.write(&dir).unwrap();
        let l = bind_loopback(0).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, data) = (Arc::clone(&stop), home.path().to_path_buf());
        let th = std::thread::spawn(move || serve(l, data, s2));
        Srv {
            addr,
            stop,
            th: Some(th),
            _home: home,
            manifest_digest: md,
            manifest_bytes: mb,
        }
    }

    /// One raw request; returns (status, headers lower-cased, body).
    fn req(
        addr: std::net::SocketAddr,
        method: &str,
        target: &str,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&all[..split]).into_owned();
        let body = all[split + 4..].to_vec();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, body)
    }

    fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn serves_files_and_head() {
        let s = start();
        let (st, h, b) = req(s.addr, "GET", "/b/k8s/apt/debian-12/dists/labctl/Release");
        assert_eq!((st, b.as_slice()), (200, b"Suite: labctl\n".as_slice()));
        assert_eq!(header(&h, "content-length"), Some("14"));
        let (st, h, b) = req(s.addr, "HEAD", "/b/k8s/apt/debian-12/dists/labctl/Release");
        assert_eq!((st, b.len()), (200, 0));
        assert_eq!(header(&h, "content-length"), Some("14"));
        let (st, _, b) = req(s.addr, "GET", "/b/k8s/key.asc");
        assert_eq!((st, b.as_slice()), (200, b"KEY".as_slice()));
        let (st, _, _) = req(s.addr, "POST", "/b/k8s/key.asc");
        assert_eq!(st, 405);
        // Keep-alive: two requests on one connection.
        let mut c = TcpStream::connect(s.addr).unwrap();
        write!(c, "GET /b/k8s/key.asc HTTP/1.1\r\nHost: x\r\n\r\nGET /b/k8s/key.asc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut all = String::new();
        c.read_to_string(&mut all).unwrap();
        assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 2, "{all}");
    }

    #[test]
    fn registry_pull_endpoints() {
        let s = start();
        let (st, h, b) = req(s.addr, "GET", "/b/k8s/v2/");
        assert_eq!((st, b.as_slice()), (200, b"{}".as_slice()));
        assert_eq!(
            header(&h, "docker-distribution-api-version"),
            Some("registry/2.0")
        );
        for target in [
            "/b/k8s/v2/lab/hello/manifests/1.0?ns=example.invalid".to_string(),
            "/b/k8s/v2/lab/hello/manifests/1.0".to_string(),
            format!("/b/k8s/v2/lab/hello/manifests/{}", s.manifest_digest),
        ] {
            let (st, h, b) = req(s.addr, "GET", &target);
            assert_eq!(st, 200, "{target}");
            assert_eq!(b, s.manifest_bytes);
            assert_eq!(
                header(&h, "content-type"),
                Some("application/vnd.oci.image.manifest.v1+json")
            );
            assert_eq!(
                header(&h, "docker-content-digest"),
                Some(s.manifest_digest.as_str())
            );
            assert_eq!(format!("sha256:{}", sha256_bytes(&b)), s.manifest_digest);
        }
        let (st, h, b) = req(
            s.addr,
            "HEAD",
            "/b/k8s/v2/lab/hello/manifests/1.0?ns=example.invalid",
        );
        assert_eq!((st, b.len()), (200, 0));
        assert_eq!(
            header(&h, "docker-content-digest"),
            Some(s.manifest_digest.as_str())
        );
        // Another registry's image of the same name is not this one.
        let (st, _, _) = req(
            s.addr,
            "GET",
            "/b/k8s/v2/lab/hello/manifests/1.0?ns=docker.io",
        );
        assert_eq!(st, 404);
        // Blobs: every blob the manifest names, by digest.
        let m: serde_json::Value = serde_json::from_slice(&s.manifest_bytes).unwrap();
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        let (st, h, b) = req(s.addr, "GET", &format!("/b/k8s/v2/lab/hello/blobs/{layer}"));
        assert_eq!(st, 200);
        assert_eq!(format!("sha256:{}", sha256_bytes(&b)), layer);
        assert_eq!(header(&h, "docker-content-digest"), Some(layer));
        // A config blob is not a manifest.
        let cfg = m["config"]["digest"].as_str().unwrap();
        let (st, _, _) = req(
            s.addr,
            "GET",
            &format!("/b/k8s/v2/lab/hello/manifests/{cfg}"),
        );
        assert_eq!(st, 404);
        let unknown = format!("sha256:{}", "0".repeat(64));
        let (st, _, b) = req(
            s.addr,
            "GET",
            &format!("/b/k8s/v2/lab/hello/blobs/{unknown}"),
        );
        assert_eq!(st, 404);
        assert!(String::from_utf8_lossy(&b).contains("BLOB_UNKNOWN"));
        let (st, _, _) = req(s.addr, "GET", "/b/k8s/v2/lab/hello/blobs/sha256:..");
        assert_eq!(st, 400);
    }

    #[test]
    fn refuses_what_the_bundle_does_not_hold() {
        let s = start();
        for (target, want) in [
            ("/b/k8s/apt/../../secret", 404),
            ("/b/k8s/apt/%2e%2e/%2e%2e/secret", 404),
            ("/b/k8s/apt/%2E%2E%2F%2E%2E%2Fsecret", 404),
            ("/b/k8s/apt/debian-12/./dists/labctl/Release", 404),
            ("/b/k8s/apt//etc/passwd", 404),
            ("/b/k8s/apt/%", 400),
            ("/b/k8s/apt/%zz", 400),
            ("//etc/passwd", 400),
            ("/etc/passwd", 404),
            ("http://x/b/k8s/key.asc", 400),
            ("/b/nope/key.asc", 404),
            ("/b/../secret", 404),
            ("/b/k8s/manifest.json", 404),
            ("/b/k8s/apt/debian-12/dists", 404),
            ("/b/k8s/v2/lab/hello/manifests/9.9", 404),
            ("/b/nope/v2/", 404),
        ] {
            let (st, _, b) = req(s.addr, "GET", target);
            assert_eq!(st, want, "{target}: {}", String::from_utf8_lossy(&b));
            assert!(!String::from_utf8_lossy(&b).contains("SECRET"));
        }
    }

    proptest::proptest! {
        /// Whatever a request path is made of (dots, slashes, backslashes, percent escapes
        /// of them), what reaches the file system is a list of plain names.
        #[test]
        fn decoded_segments_are_plain_names(path in "/[./\\\\%2eEfF5cC0a]{0,40}") {
            if let Ok(segs) = segments(&path) {
                for seg in segs {
                    proptest::prop_assert!(seg != ".." && seg != "." && !seg.is_empty());
                    proptest::prop_assert!(!seg.contains(['/', '\\', '\0']));
                }
            }
        }
    }

    #[test]
    fn listens_on_loopback_only() {
        let l = bind_loopback(0).unwrap();
        assert_eq!(
            l.local_addr().unwrap().ip(),
            std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        // A listener on every address is refused.
        let any = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let d = tempfile::tempdir().unwrap();
        let err = serve(any, d.path().into(), Arc::new(AtomicBool::new(false))).unwrap_err();
        assert!(matches!(err, Error::NotLoopback(_)), "{err}");
    }
}
