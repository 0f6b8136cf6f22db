//! Unit tests of the libvirt driver's naming rules.

use super::*;

#[test]
fn local_and_remote_uris() {
    assert!(is_local("qemu:///system"));
    assert!(is_local("qemu:///session"));
    assert!(!is_local("qemu+ssh://lab@h1/system"));
    assert!(!is_local("nonsense"));
}

#[test]
fn network_names_are_per_lab_and_fit_libvirt() {
    let a = network_name(Path::new("/run/user/0/labctl/1a2b3c4d"), "private");
    let b = network_name(Path::new("/run/user/0/labctl/9f9f9f9f"), "private");
    assert_ne!(a, b);
    assert!(a.starts_with("labctl-") && a.ends_with("-private"), "{a}");
    assert_eq!(
        a,
        network_name(Path::new("/run/user/0/labctl/1a2b3c4d"), "private")
    );
}
