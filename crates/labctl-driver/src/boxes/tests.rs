use super::*;
use crate::exec::Cmd;

#[test]
fn names() {
    assert!(valid_name("labctl/debian-12"));
    assert!(valid_name("sysnet4admin/CentOS-k8s"));
    assert!(!valid_name("../etc"));
    assert!(!valid_name("a/b/c"));
    assert!(!valid_name("a b"));
}

#[test]
fn atomic_write_replaces() {
    let d = tempfile::tempdir().expect("tmp");
    let p = d.path().join("x.json");
    write_atomic(&p, b"1").expect("write");
    write_atomic(&p, b"2").expect("write");
    assert_eq!(std::fs::read_to_string(&p).expect("read"), "2");
    assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 1);
}

/// A store in a temporary directory and a 16 MiB qcow2 made by the real qemu-img (None
/// without qemu-img).
fn store_and_disk() -> Option<(tempfile::TempDir, BoxStore, PathBuf)> {
    let qemu_img = BoxStore::qemu_img().ok()?;
    let d = tempfile::tempdir().expect("tmp");
    let store = BoxStore::new(d.path().join("boxes"), d.path().join("dl"));
    let disk = d.path().join("a.qcow2");
    Cmd::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("16M")
        .run()
        .expect("create");
    Some((d, store, disk))
}

/// Four threads (labs brought up at once on a fresh host) ensure the same box: it is
/// added once, every caller gets it, and no temporary directory is left.
#[test]
fn concurrent_ensures_add_a_box_once() {
    let Some((_d, store, disk)) = store_and_disk() else {
        return;
    };
    let metas: Vec<BoxMeta> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    store
                        .ensure(
                            "t/shared",
                            disk.to_str().expect("utf8"),
                            &AddOptions::default(),
                            &|_| {},
                        )
                        .expect("ensure")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(
        metas
            .iter()
            .all(|m| m.added_at == metas[0].added_at && m.sha256 == metas[0].sha256)
    );
    let leftovers: Vec<String> = std::fs::read_dir(&store.root)
        .expect("root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".add-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(store.list().len(), 1);
    // `add` without --force still refuses an existing box under the same lock.
    assert!(matches!(
        store.add(
            "t/shared",
            disk.to_str().expect("utf8"),
            &AddOptions::default(),
            &|_| {}
        ),
        Err(BoxError::Exists { .. })
    ));
}

#[test]
fn adds_a_qcow2_and_a_libvirt_box_and_rejects_junk() {
    let Some((d, store, disk)) = store_and_disk() else {
        return;
    };
    let m = store
        .add(
            "t/plain",
            disk.to_str().expect("utf8"),
            &AddOptions::default(),
            &|_| {},
        )
        .expect("add qcow2");
    assert_eq!(m.user, "root");
    assert_eq!(m.size, std::fs::metadata(&disk).expect("meta").len());
    assert!(store.dir("t/plain").join("disk.qcow2").exists());
    let placed = store.dir("t/plain").join("disk.qcow2");
    let size = std::fs::metadata(&placed).expect("meta").len();
    assert_eq!(
        store.verify(&m),
        vec![("disk.qcow2".to_string(), FileCheck::Intact { size })]
    );
    // The same size with one byte changed is caught by the checksum.
    let mut bytes = std::fs::read(&placed).expect("read");
    bytes[0] ^= 1;
    std::fs::write(&placed, &bytes).expect("write");
    assert!(matches!(
        &store.verify(&m)[0].1,
        FileCheck::Changed { recorded, actual } if recorded.size == actual.size && recorded.sha256 != actual.sha256
    ));
    std::fs::remove_file(&placed).expect("rm");
    assert_eq!(store.verify(&m)[0].1, FileCheck::Missing);
    store
        .add(
            "t/plain",
            disk.to_str().expect("utf8"),
            &AddOptions {
                force: true,
                ..AddOptions::default()
            },
            &|_| {},
        )
        .expect("add again");
    assert!(matches!(
        store.add(
            "t/plain",
            disk.to_str().expect("utf8"),
            &AddOptions::default(),
            &|_| {}
        ),
        Err(BoxError::Exists { .. })
    ));

    // A libvirt box with labctl.json.
    let boxdir = d.path().join("boxsrc");
    std::fs::create_dir_all(&boxdir).expect("mkdir");
    std::fs::copy(&disk, boxdir.join("box.img")).expect("copy");
    std::fs::write(
        boxdir.join("metadata.json"),
        r#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#,
    )
    .expect("w");
    std::fs::write(boxdir.join("insecure_key"), "KEY").expect("w");
    std::fs::write(boxdir.join("vmlinuz"), "KERNEL").expect("w");
    std::fs::write(
        boxdir.join("labctl.json"),
        r#"{"os":"debian","user":"root","private_key":"insecure_key","kernel":"vmlinuz","cmdline":"root=/dev/vda"}"#,
    )
    .expect("w");
    let tarball = d.path().join("x.box");
    Cmd::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&boxdir)
        .arg(".")
        .run()
        .expect("tar");
    let m = store
        .add(
            "t/libvirt",
            tarball.to_str().expect("utf8"),
            &AddOptions::default(),
            &|_| {},
        )
        .expect("add box");
    assert_eq!(m.private_key.as_deref(), Some("insecure_key"));
    assert_eq!(m.kernel.as_deref(), Some("vmlinuz"));
    assert!(store.dir("t/libvirt").join("disk.qcow2").exists());
    assert_eq!(store.list().len(), 2);

    // A tar without metadata.json is refused and leaves nothing behind.
    let junk = d.path().join("junk.box");
    Cmd::new("tar")
        .arg("-cf")
        .arg(&junk)
        .arg("-C")
        .arg(&boxdir)
        .arg("insecure_key")
        .run()
        .expect("tar");
    let err = store
        .add(
            "t/junk",
            junk.to_str().expect("utf8"),
            &AddOptions::default(),
            &|_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("metadata.json"), "{err}");
    assert_eq!(store.list().len(), 2);
    store.remove("t/plain").expect("remove");
    assert!(matches!(
        store.get("t/plain"),
        Err(BoxError::NotFound { .. })
    ));
}
