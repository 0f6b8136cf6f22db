//! `labctl bundle ...` as a user sees it: an offline build from packages made here with
//! `dpkg-deb`, list and show, export/remove/import, a tampered archive, and errors. Nothing
//! is downloaded (`--offline --from-dir`).
// Test code: starts real processes (dpkg-deb, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A bundle built offline from the test's own packages in `debs/`.
const BUILD_FROM_DEBS: [&str; 7] = [
    "bundle",
    "build",
    "--lab",
    "lab",
    "--offline",
    "--from-dir",
    "debs",
];

struct World {
    tmp: tempfile::TempDir,
}

const LAB: &str = r#"[lab]
name = "class"
box = "labctl/debian-12"
bundle = "class"

[[package_set]]
name = "runtime"
debian = ["lab-runtime"]

[[package_set]]
name = "kubernetes"
debian = ["kubelet"]

[images]
refs = ["registry.k8s.io/pause:3.10"]

[role.master]
[[role.master.step]]
script = "rt.sh"
needs_egress = true
packages = "runtime"
"#;

impl World {
    fn new() -> World {
        let w = World {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        let lab = w.path().join("lab");
        std::fs::create_dir_all(&lab).expect("mkdir");
        std::fs::write(lab.join("lab.toml"), LAB).expect("lab.toml");
        std::fs::write(lab.join("rt.sh"), "#!/bin/sh\ntrue\n").expect("rt.sh");
        let debs = w.path().join("debs");
        std::fs::create_dir_all(&debs).expect("mkdir");
        deb(&debs, "lab-runtime", "lab-lib");
        deb(&debs, "lab-lib", "");
        w
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn labctl(&self) -> Command {
        let mut c = Command::cargo_bin("labctl").expect("labctl binary");
        for var in ["LABCTL_LAB", "RUST_LOG"] {
            c.env_remove(var);
        }
        c.env("LABCTL_HOME", self.path().join("home"))
            .env("LABCTL_CACHE", self.path().join("cache"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .current_dir(self.path());
        c
    }

    /// Exit code, stdout and stderr with this world's paths replaced by `[TMP]`.
    /// [`BUILD_FROM_DEBS`], which must succeed.
    fn build_from_debs(&self) {
        let out = self.labctl().args(BUILD_FROM_DEBS).output().expect("build");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.labctl().args(args).output().expect("run labctl");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut s = format!(
            "$ labctl {}\nexit code: {:?}\n",
            args.join(" "),
            out.status.code()
        );
        if !out.stdout.is_empty() {
            s.push_str(&format!("--- stdout\n{}", text(&out.stdout)));
        }
        s.push_str(&format!("--- stderr\n{}", text(&out.stderr)));
        let tmp = self.path().canonicalize().expect("canonical tmp");
        s.replace(&tmp.display().to_string(), "[TMP]")
            .replace(&self.path().display().to_string(), "[TMP]")
    }
}

/// A tiny package made with the real dpkg-deb.
fn deb(dir: &Path, name: &str, depends: &str) -> PathBuf {
    let root = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/share/doc").join(name)).expect("mkdir");
    std::fs::write(root.join("usr/share/doc").join(name).join("marker"), name).expect("write");
    let dep = if depends.is_empty() {
        String::new()
    } else {
        format!("Depends: {depends}\n")
    };
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\n{dep}Description: test {name}\n"),
    )
    .expect("control");
    let out = dir.join(format!("{name}_1.0_all.deb"));
    let st = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&out)
        .output()
        .expect("dpkg-deb");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::remove_dir_all(&root).expect("rm");
    out
}

fn snap(name: &str, s: &str) {
    insta::with_settings!({filters => vec![
        (r"\d+\.\d+ (KiB|MiB|GiB)", "[SIZE]"),
        (r", \d+\.\d s", ", [SECS] s"),
        (r"created \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "created [TIME]"),
    ]}, {
        insta::assert_snapshot!(name, s);
    });
}

#[test]
fn build_list_show() {
    let w = World::new();
    snap("list_empty", &w.run(&["bundle", "list"]));
    snap("build_offline", &w.run(&BUILD_FROM_DEBS));
    snap("list", &w.run(&["bundle", "list"]));
    snap("show", &w.run(&["bundle", "show", "class"]));
    // The private key stays out of the bundle, in a 0700 directory.
    let keys = w.path().join("home/bundle-keys/class");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&keys).expect("keys").permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    let bundle = w.path().join("home/bundles/class");
    assert!(bundle.join("key.asc").is_file());
    assert!(
        bundle
            .join("apt/debian-12/dists/labctl/InRelease")
            .is_file()
    );
    assert!(
        bundle
            .join("apt/debian-12/pool/lab-runtime_1.0_all.deb")
            .is_file()
    );
}

#[test]
fn export_remove_import_and_tampering() {
    let w = World::new();
    w.build_from_debs();
    let files = |root: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(root).expect("rel").display().to_string();
                    v.push((rel, std::fs::read(&p).expect("read")));
                }
            }
        }
        v.sort();
        v
    };
    let bundle = w.path().join("home/bundles/class");
    let before = files(&bundle);
    snap(
        "export",
        &w.run(&["bundle", "export", "class", "class.tar"]),
    );
    snap("remove", &w.run(&["bundle", "remove", "class"]));
    snap("show_unknown", &w.run(&["bundle", "show", "class"]));
    snap("import", &w.run(&["bundle", "import", "class.tar"]));
    assert_eq!(files(&bundle), before, "import is byte-identical");
    snap("import_again", &w.run(&["bundle", "import", "class.tar"]));

    // One byte of a package changed in the archive.
    let tar = w.path().join("class.tar");
    let mut bytes = std::fs::read(&tar).expect("read");
    let pkg = std::fs::read(bundle.join("apt/debian-12/pool/lab-lib_1.0_all.deb")).expect("deb");
    let at = bytes
        .windows(pkg.len())
        .position(|win| win == pkg.as_slice())
        .expect("package in the archive");
    bytes[at + pkg.len() - 10] ^= 0xff;
    std::fs::write(&tar, &bytes).expect("write");
    w.run(&["bundle", "remove", "class"]);
    snap(
        "import_tampered",
        &w.run(&["bundle", "import", "class.tar"]),
    );
    assert!(!bundle.exists());
}

#[test]
fn bad_names_and_missing_things() {
    let w = World::new();
    snap("show_bad_name", &w.run(&["bundle", "show", "../etc"]));
    snap("remove_unknown", &w.run(&["bundle", "remove", "nope"]));
    snap(
        "import_not_tar",
        &w.run(&["bundle", "import", "lab/lab.toml"]),
    );
    snap(
        "build_unknown_os",
        &w.run(&[
            "bundle",
            "build",
            "--lab",
            "lab",
            "--offline",
            "--os",
            "debian-99",
        ]),
    );
}

#[test]
fn hidden_server_serves_the_bundle_on_loopback() {
    use std::io::{BufRead, Read, Write};
    let w = World::new();
    w.build_from_debs();
    let bin = assert_cmd::cargo::cargo_bin("labctl");
    let port_file = w.path().join("port");
    let mut child = std::process::Command::new(bin)
        .args(["__bundle-server", "--port", "0", "--port-file"])
        .arg(&port_file)
        .env("LABCTL_HOME", w.path().join("home"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port line");
    let guard = Kill(child);
    let port: u16 = line.trim().parse().expect("a port");
    assert_eq!(
        std::fs::read_to_string(&port_file)
            .expect("port file")
            .trim(),
        port.to_string()
    );
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut r = Vec::new();
        s.read_to_end(&mut r).expect("read");
        String::from_utf8_lossy(&r).into_owned()
    };
    let key = get("/b/class/key.asc");
    assert!(key.starts_with("HTTP/1.1 200 OK"), "{key}");
    assert!(key.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let rel = get("/b/class/apt/debian-12/dists/labctl/InRelease");
    assert!(rel.contains("-----BEGIN PGP SIGNED MESSAGE-----"), "{rel}");
    assert!(
        get("/b/class/apt/../../bundle-keys/class/gnupg/pubring.kbx").starts_with("HTTP/1.1 404")
    );
    // The host's own apt, with a private configuration, reads the repository over HTTP
    // (pipelined requests on one connection), verifies its signature with key.asc, and
    // downloads a package and its dependency byte for byte.
    let r = w.path().join("apt-client");
    for d in [
        "state/lists/partial",
        "cache/archives/partial",
        "etc/sources.list.d",
    ] {
        std::fs::create_dir_all(r.join(d)).expect("mkdir");
    }
    std::fs::write(r.join("status"), "").expect("status");
    std::fs::write(
        r.join("etc/sources.list"),
        format!(
            "deb [signed-by={}] http://127.0.0.1:{port}/b/class/apt/debian-12 labctl main\n",
            w.path().join("home/bundles/class/key.asc").display()
        ),
    )
    .expect("sources");
    let apt = |args: &[&str]| {
        let mut c = std::process::Command::new("apt-get");
        for (k, v) in [
            ("Dir::State", "state"),
            ("Dir::State::status", "status"),
            ("Dir::Cache", "cache"),
            ("Dir::Etc::sourcelist", "etc/sources.list"),
            ("Dir::Etc::sourceparts", "etc/sources.list.d"),
        ] {
            c.arg("-o").arg(format!("{k}={}", r.join(v).display()));
        }
        c.args([
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Sandbox::User=root",
            "-o",
            "APT::Architecture=amd64",
        ]);
        let out = c.args(args).output().expect("apt-get");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    let update = apt(&["update"]);
    assert!(!update.contains("W:") && !update.contains("E:"), "{update}");
    apt(&["-y", "--download-only", "install", "lab-runtime"]);
    for deb in ["lab-runtime_1.0_all.deb", "lab-lib_1.0_all.deb"] {
        assert_eq!(
            std::fs::read(r.join("cache/archives").join(deb)).expect("downloaded"),
            std::fs::read(
                w.path()
                    .join("home/bundles/class/apt/debian-12/pool")
                    .join(deb)
            )
            .expect("pool"),
            "{deb}"
        );
    }
    // Loopback only: the server is not listening on the host's other addresses.
    let other = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect("192.0.2.1:9").map(|()| u))
        .and_then(|u| u.local_addr());
    if let Ok(addr) = other
        && !addr.ip().is_loopback()
        && !addr.ip().is_unspecified()
    {
        assert!(
            std::net::TcpStream::connect((addr.ip(), port)).is_err(),
            "reachable on {}",
            addr.ip()
        );
    }
    drop(guard);
}

/// A one-layer OCI image layout, written by hand as `skopeo` or `buildah` would.
fn oci_layout(dir: &Path, ref_name: &str) {
    use sha2_free::digest;
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    let put = |b: &[u8]| -> (String, usize) {
        let d = digest(b);
        std::fs::write(dir.join("blobs/sha256").join(&d), b).expect("blob");
        (format!("sha256:{d}"), b.len())
    };
    let (ld, ls) = put(b"not really a tar, but the digest is right");
    let (cd, cs) = put(br#"{"architecture":"amd64","os":"linux"}"#);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{ls}}}]}}"#
    );
    let (md, ms) = put(manifest.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"{ref_name}"}}}}]}}"#
        ),
    )
    .expect("index");
}

/// sha256 with the host's sha256sum (the test crate has no hashing dependency).
mod sha2_free {
    pub fn digest(b: &[u8]) -> String {
        use std::io::Write;
        let mut c = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum");
        c.stdin.take().expect("stdin").write_all(b).expect("write");
        let out = c.wait_with_output().expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)[..64].to_string()
    }
}

#[test]
fn add_image_from_an_oci_layout() {
    let w = World::new();
    oci_layout(&w.path().join("img"), "1.0");
    snap(
        "add_image_bare_tag",
        &w.run(&["bundle", "add-image", "class", "--oci-layout", "img"]),
    );
    let out = w.run(&[
        "bundle",
        "add-image",
        "class",
        "--oci-layout",
        "img",
        "--ref",
        "registry.example.invalid/lab/hello:1.0",
    ]);
    assert!(out.contains("exit code: Some(0)"), "{out}");
    assert!(
        out.contains("added registry.example.invalid/lab/hello:1.0 (sha256:"),
        "{out}"
    );
    let show = w.run(&["bundle", "show", "class"]);
    assert!(
        show.contains("  registry.example.invalid/lab/hello:1.0 sha256:"),
        "{show}"
    );
    snap(
        "add_image_no_source",
        &w.run(&["bundle", "add-image", "class"]),
    );
}
