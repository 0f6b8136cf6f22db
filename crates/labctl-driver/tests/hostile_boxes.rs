//! Hostile-input corpus for `box add`: boxes and disk images made by a stranger.
//!
//! Each case says what it attacks. All are built here with qemu-img and GNU tar (no binary
//! is committed). Every one must be refused with a message naming the image, the archive
//! entry or the metadata field; the sentinel files outside the box store must be neither
//! read into a box nor changed; nothing is left in the store; nothing panics.
// Test code: starts real processes (stand-ins, tools, the binary) directly.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;

use labctl_driver::boxes::{AddOptions, BoxError, BoxStore};

struct World {
    tmp: tempfile::TempDir,
    store: BoxStore,
}

const SECRET: &str = "-----BEGIN OPENSSH PRIVATE KEY----- sentinel\n";

impl World {
    fn new() -> Option<World> {
        if Command::new("qemu-img").arg("--version").output().is_err() {
            eprintln!("skipping: qemu-img is not installed");
            return None;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let store = BoxStore::new(tmp.path().join("store"), tmp.path().join("dl"));
        let w = World { tmp, store };
        // Stand-ins for the user's secrets, outside the box store.
        std::fs::create_dir_all(w.home().join(".ssh")).expect("mkdir");
        std::fs::write(w.secret(), SECRET).expect("secret");
        Some(w)
    }
    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }
    fn secret(&self) -> PathBuf {
        self.home().join(".ssh/id_ed25519")
    }
    fn p(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn qemu_img(&self, args: &[&str]) {
        let out = Command::new("qemu-img")
            .args(args)
            .current_dir(self.tmp.path())
            .output()
            .expect("qemu-img");
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    /// A staging directory with these files.
    fn stage(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let d = self.p(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        for (f, body) in files {
            std::fs::write(d.join(f), body).expect("write");
        }
        d
    }
    /// `tar` with these arguments, run in `dir`, writing `out`.
    fn tar(&self, dir: &Path, out: &str, args: &[&str]) -> PathBuf {
        let o = self.p(out);
        let st = Command::new("tar")
            .arg("-cf")
            .arg(&o)
            .args(args)
            .current_dir(dir)
            .status()
            .expect("tar");
        assert!(st.success(), "tar {args:?}");
        o
    }
    fn add(&self, name: &str, file: &Path, opts: &AddOptions) -> BoxError {
        match self
            .store
            .add(name, file.to_str().expect("utf-8"), opts, &|_| {})
        {
            Ok(m) => panic!("{name}: accepted: {m:?}"),
            Err(e) => e,
        }
    }
    /// The sentinels are intact and nothing reached the store.
    fn check(&self, case: &str) {
        assert_eq!(
            std::fs::read_to_string(self.secret()).expect("secret"),
            SECRET,
            "{case}: the secret changed"
        );
        assert_eq!(
            std::fs::read_dir(self.home().join(".ssh"))
                .expect("ls")
                .count(),
            1,
            "{case}: something was written next to the secret"
        );
        assert!(self.store.list().is_empty(), "{case}: a box was stored");
        // The store's own lock file (`.lock`, taken by every add) is not a leftover.
        let leftovers: Vec<_> = std::fs::read_dir(&self.store.root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name())
                    .filter(|n| n != ".lock")
                    .collect()
            })
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{case}: left {leftovers:?}");
        for stray in ["etc", "x", "escaped"] {
            assert!(!self.p(stray).exists(), "{case}: wrote {stray} outside");
        }
    }
}

fn expect(e: &BoxError, needles: &[&str], case: &str) {
    let text = e.to_string();
    eprintln!("{case}: {text}");
    for n in needles {
        assert!(text.contains(n), "{case}: {text:?} lacks {n:?}");
    }
}

const LIBVIRT_QCOW2: &[u8] = br#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#;
const LIBVIRT_RAW: &[u8] = br#"{"provider":"libvirt","format":"raw","virtual_size":1}"#;

/// Attack: a qcow2 whose backing file is the user's SSH key (the guest reads it as its disk).
#[test]
fn qcow2_with_a_backing_file() {
    let Some(w) = World::new() else { return };
    let secret = w.secret();
    let s = secret.to_str().expect("utf-8");
    w.qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        s,
        "evil.qcow2",
        "1M",
    ]);
    let e = w.add("t/backing", &w.p("evil.qcow2"), &AddOptions::default());
    expect(&e, &["evil.qcow2", "backing file", s], "plain qcow2");
    // The same inside a libvirt box.
    std::fs::copy(w.p("evil.qcow2"), w.p("box.img")).expect("cp");
    let d = w.stage("b1", &[("metadata.json", LIBVIRT_QCOW2)]);
    std::fs::rename(w.p("box.img"), d.join("box.img")).expect("mv");
    let b = w.tar(&d, "backing.box", &["metadata.json", "box.img"]);
    let e = w.add("t/backing-box", &b, &AddOptions::default());
    expect(&e, &["box.img", "backing file"], "libvirt box");
    w.check("backing file");
}

/// Attack: a qcow2 whose data lives in an external file (QEMU reads that file).
#[test]
fn qcow2_with_an_external_data_file() {
    let Some(w) = World::new() else { return };
    let data = w.p("data.raw");
    w.qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", data.display()),
        "evil.qcow2",
        "1M",
    ]);
    let e = w.add("t/datafile", &w.p("evil.qcow2"), &AddOptions::default());
    expect(
        &e,
        &["evil.qcow2", "external data file", "data.raw"],
        "data file",
    );
    w.check("data file");
}

/// Attack: the box says raw but the file is a qcow2 with a backing file (a prober would
/// follow it), and the other way round.
#[test]
fn format_disguises() {
    let Some(w) = World::new() else { return };
    let s = w.secret().to_string_lossy().into_owned();
    w.qemu_img(&[
        "create", "-q", "-f", "qcow2", "-F", "raw", "-b", &s, "box.img", "1M",
    ]);
    let d = w.stage("b1", &[("metadata.json", LIBVIRT_RAW)]);
    std::fs::rename(w.p("box.img"), d.join("box.img")).expect("mv");
    let b = w.tar(&d, "disguised.box", &["metadata.json", "box.img"]);
    let e = w.add("t/disguised", &b, &AddOptions::default());
    expect(
        &e,
        &["box.img", "says format \"raw\"", "qcow2 image"],
        "qcow2 as raw",
    );

    let d = w.stage(
        "b2",
        &[("metadata.json", LIBVIRT_QCOW2), ("box.img", &[0u8; 4096])],
    );
    let b = w.tar(&d, "raw-as-qcow2.box", &["metadata.json", "box.img"]);
    let e = w.add("t/raw-as-qcow2", &b, &AddOptions::default());
    expect(&e, &["says format \"qcow2\"", "raw image"], "raw as qcow2");
    w.check("disguises");
}

/// Attack: a VirtualBox box whose VMDK descriptor names the user's key as a flat extent.
#[test]
fn vmdk_with_a_flat_extent_to_a_host_file() {
    let Some(w) = World::new() else { return };
    let descriptor = format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 1 FLAT \"{}\" 0\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"1\"\nddb.geometry.heads = \"1\"\nddb.geometry.sectors = \"1\"\nddb.adapterType = \"ide\"\n",
        w.secret().display()
    );
    let d = w.stage(
        "b1",
        &[
            ("metadata.json", br#"{"provider":"virtualbox"}"#),
            ("box.ovf", b"<Envelope/>"),
            ("box-disk001.vmdk", descriptor.as_bytes()),
        ],
    );
    let b = w.tar(
        &d,
        "flat.box",
        &["metadata.json", "box.ovf", "box-disk001.vmdk"],
    );
    let e = w.add("t/flat", &b, &AddOptions::default());
    expect(&e, &["box-disk001.vmdk", "monolithicFlat"], "flat vmdk");
    w.check("vmdk");
}

/// Attacks on the archive itself: a symbolic link, a hard link, an absolute path, a `..`
/// path, a 2 GiB sparse member, a member bigger than the cap.
#[test]
fn archive_entries() {
    let Some(w) = World::new() else { return };
    let d = w.stage("b1", &[("metadata.json", LIBVIRT_QCOW2)]);
    std::os::unix::fs::symlink(w.secret(), d.join("box.img")).expect("symlink");
    let b = w.tar(&d, "symlink.box", &["metadata.json", "box.img"]);
    let e = w.add("t/symlink", &b, &AddOptions::default());
    expect(&e, &["\"box.img\"", "symbolic link"], "symlink");

    let d = w.stage("b2", &[("metadata.json", LIBVIRT_QCOW2), ("a", b"x")]);
    std::fs::hard_link(d.join("a"), d.join("box.img")).expect("link");
    let b = w.tar(&d, "hardlink.box", &["metadata.json", "a", "box.img"]);
    let e = w.add("t/hardlink", &b, &AddOptions::default());
    expect(&e, &["\"box.img\"", "hard link"], "hard link");

    // GNU tar keeps a leading `/` and `..` with -P.
    let d = w.stage("b3", &[("metadata.json", LIBVIRT_QCOW2)]);
    let abs = w.p("escaped");
    std::fs::write(&abs, "x").expect("w");
    let b = w.tar(
        &d,
        "absolute.box",
        &["-P", "metadata.json", abs.to_str().expect("utf8")],
    );
    std::fs::remove_file(&abs).expect("rm");
    let e = w.add("t/absolute", &b, &AddOptions::default());
    expect(&e, &[abs.to_str().expect("utf8"), "absolute"], "absolute");

    std::fs::write(w.p("x"), "x").expect("w");
    let b = w.tar(&d, "dotdot.box", &["-P", "metadata.json", "../x"]);
    std::fs::remove_file(w.p("x")).expect("rm");
    let e = w.add("t/dotdot", &b, &AddOptions::default());
    expect(&e, &["\"../x\"", "`..`"], "dotdot");

    let d = w.stage("b4", &[("metadata.json", LIBVIRT_QCOW2)]);
    let big = std::fs::File::create(d.join("box.img")).expect("create");
    big.set_len(2 << 30).expect("2 GiB sparse");
    drop(big);
    let b = w.tar(&d, "sparse.box", &["-S", "metadata.json", "box.img"]);
    assert!(std::fs::metadata(&b).expect("meta").len() < 1 << 20);
    let e = w.add("t/sparse", &b, &AddOptions::default());
    expect(&e, &["\"box.img\"", "sparse"], "sparse");

    let d = w.stage(
        "b5",
        &[
            ("metadata.json", LIBVIRT_QCOW2),
            ("box.img", &vec![0u8; 2 << 20]),
        ],
    );
    let b = w.tar(&d, "big.box", &["metadata.json", "box.img"]);
    let opts = AddOptions {
        max_unpacked: Some(1 << 20),
        ..AddOptions::default()
    };
    let e = w.add("t/big", &b, &opts);
    expect(&e, &["\"box.img\"", "more than the 1 MiB"], "cap");
    w.check("archive");
}

/// Attacks through box metadata: files outside the box, a user name that injects into
/// ssh_config.
#[test]
fn metadata_fields() {
    let Some(w) = World::new() else { return };
    w.qemu_img(&["create", "-q", "-f", "qcow2", "disk.qcow2", "1M"]);
    let img = std::fs::read(w.p("disk.qcow2")).expect("read");
    let secret = w.secret().to_string_lossy().into_owned();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            r#"{"private_key":"../../home/.ssh/id_ed25519"}"#.into(),
            "private_key",
            "plain file name",
        ),
        (
            format!(r#"{{"kernel":"{secret}"}}"#),
            "kernel",
            "plain file name",
        ),
        (r#"{"initrd":"."}"#.into(), "initrd", "plain file name"),
        (r#"{"disk":"../box.img"}"#.into(), "disk", "plain file name"),
        (r#"{"kernel":"nothere"}"#.into(), "kernel", "not in the box"),
        (
            r#"{"user":"root\nMatch exec \"touch /tmp/pwned\""}"#.into(),
            "user",
            "not a valid user name",
        ),
        (
            r#"{"user":"-oProxyCommand=x"}"#.into(),
            "user",
            "not a valid user name",
        ),
        (r#"{"os":"debian; rm -rf /"}"#.into(), "os", "OS family"),
        (
            r#"{"cmdline":"console=ttyS0\u001b]0;x\u0007"}"#.into(),
            "cmdline",
            "control character",
        ),
    ];
    for (i, (json, field, why)) in cases.iter().enumerate() {
        let d = w.stage(
            &format!("m{i}"),
            &[
                ("metadata.json", LIBVIRT_QCOW2),
                ("box.img", &img),
                ("labctl.json", json.as_bytes()),
            ],
        );
        let b = w.tar(
            &d,
            &format!("m{i}.box"),
            &["metadata.json", "box.img", "labctl.json"],
        );
        let e = w.add(&format!("t/m{i}"), &b, &AddOptions::default());
        assert!(matches!(e, BoxError::Metadata { .. }), "{json}: {e}");
        expect(&e, &[&format!("`{field}`"), why], json);
    }
    // A symbolic link named by the metadata is refused even if the archive carried it in
    // some other way: links never reach the box directory at all (see archive_entries).
    w.check("metadata");
}

/// Attacks on downloads: plain http (swappable on the wire), a file that is not the pinned
/// one, credentials in the URL leaking into errors and box.json. Nothing leaves 127.0.0.1.
#[test]
fn downloads() {
    let Some(w) = World::new() else { return };
    let e = w.add(
        "t/http",
        Path::new("http://127.0.0.1:9/x.box"),
        &AddOptions::default(),
    );
    assert!(matches!(e, BoxError::Insecure { .. }), "{e}");

    // A pinned digest that does not match.
    w.qemu_img(&["create", "-q", "-f", "qcow2", "ok.qcow2", "1M"]);
    let opts = AddOptions {
        sha256: Some("00".repeat(32)),
        ..AddOptions::default()
    };
    let e = w.add("t/digest", &w.p("ok.qcow2"), &opts);
    expect(&e, &["sha256", &"00".repeat(32)], "digest");

    if Command::new("curl").arg("--version").output().is_ok() {
        // Port 9 on 127.0.0.1: nothing listens; the error must not carry the credentials.
        let opts = AddOptions {
            insecure: true,
            ..AddOptions::default()
        };
        let e = w.add(
            "t/creds",
            Path::new("http://alice:hunter2@127.0.0.1:9/x.box?token=s3cret"),
            &opts,
        );
        let mut text = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            text.push_str(&format!(" / {s}"));
            src = s.source();
        }
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
        assert!(text.contains("***@127.0.0.1:9"), "{text}");
    }
    w.check("downloads");
}
