//! Hostile-input corpus for lab.toml: a lab handed around as a zip names files outside its
//! directory as step scripts or templates (so labctl would upload `~/.ssh/id_ed25519` to a
//! guest), directly, through `..`, or through a symbolic link; or names a node `.` or `..`
//! (its machine directory would be `.labctl/machines/..`). Each is refused with a located
//! diagnostic unless the lab lists the directory in `lab.trusted_dirs`; nothing panics.

use std::path::Path;

use labctl_spec::{Overrides, SpecError};

/// `root/lab/lab.toml` with one role whose step is `step` (a TOML line), and a secret
/// outside the lab at `root/secret.sh`.
fn lab(root: &Path, lab_lines: &str, role_lines: &str, step: &str) -> std::path::PathBuf {
    let dir = root.join("lab");
    std::fs::create_dir_all(dir.join("templates")).expect("mkdir");
    std::fs::write(root.join("secret.sh"), "PRIVATE KEY\n").expect("secret");
    std::fs::write(dir.join("ok.sh"), "#!/bin/sh\n").expect("ok.sh");
    let toml = format!(
        "[lab]\nname = \"one\"\n{lab_lines}\n[role.master]\n{role_lines}\n[[role.master.step]]\nname = \"s\"\n{step}\n"
    );
    std::fs::write(dir.join("lab.toml"), toml).expect("lab.toml");
    dir.join("lab.toml")
}

/// The diagnostics of a refused lab as `field: message` lines.
fn refused(file: &Path) -> String {
    match labctl_spec::load(file, Overrides::default()) {
        Ok(_) => panic!("expected {} to be refused", file.display()),
        Err(SpecError::Invalid { diagnostics, .. }) => diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn scripts_outside_the_lab_are_refused() {
    let t = tempfile::tempdir().expect("tmp");
    let f = lab(t.path(), "", "", "script = \"../secret.sh\"");
    let d = refused(&f);
    assert!(
        d.contains("role.master.step[0].script") && d.contains("outside the lab directory"),
        "{d}"
    );
    assert!(d.contains("lab.trusted_dirs"), "{d}");

    // The same through a symbolic link inside the lab.
    let t = tempfile::tempdir().expect("tmp");
    let f = lab(t.path(), "", "", "script = \"link.sh\"");
    std::os::unix::fs::symlink(t.path().join("secret.sh"), t.path().join("lab/link.sh"))
        .expect("symlink");
    let d = refused(&f);
    assert!(
        d.contains("script `link.sh` is outside the lab directory"),
        "{d}"
    );

    // An absolute path.
    let t = tempfile::tempdir().expect("tmp");
    let abs = t.path().join("secret.sh");
    let f = lab(
        t.path(),
        "",
        "",
        &format!("script = {:?}", abs.to_string_lossy()),
    );
    assert!(refused(&f).contains("outside the lab directory"));
}

#[test]
fn templates_outside_the_lab_are_refused_unless_trusted() {
    let t = tempfile::tempdir().expect("tmp");
    let f = lab(t.path(), "", "", "template = \"../../secret.sh\"");
    let d = refused(&f);
    assert!(
        d.contains("role.master.step[0].template") && d.contains("outside the lab directory"),
        "{d}"
    );

    // A shared templates directory next to the lab: refused, then allowed when trusted.
    let t = tempfile::tempdir().expect("tmp");
    let shared = t.path().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    std::fs::write(shared.join("a.sh.hbs"), "#!/bin/sh\necho {{node.name}}\n").expect("tpl");
    let f = lab(
        t.path(),
        "templates = \"../shared\"",
        "",
        "template = \"a.sh.hbs\"",
    );
    let d = refused(&f);
    assert!(
        d.contains("lab.templates") && d.contains("outside the lab"),
        "{d}"
    );
    let f = lab(
        t.path(),
        "templates = \"../shared\"\ntrusted_dirs = [\"../shared\"]",
        "",
        "template = \"a.sh.hbs\"",
    );
    labctl_spec::load(&f, Overrides::default()).expect("trusted templates load");

    // A trusted directory that does not exist is an error, not a silent no-op.
    let f = lab(
        t.path(),
        "trusted_dirs = [\"../nope\"]",
        "",
        "script = \"ok.sh\"",
    );
    assert!(refused(&f).contains("lab.trusted_dirs"));
}

#[test]
fn dot_and_dotdot_are_not_host_names() {
    for name in [".", "..", ".hidden", "-x"] {
        let t = tempfile::tempdir().expect("tmp");
        let f = lab(
            t.path(),
            "",
            &format!("hostname = {name:?}"),
            "script = \"ok.sh\"",
        );
        let d = refused(&f);
        assert!(
            d.contains("role.master.hostname") && d.contains("not a valid hostname"),
            "{name}: {d}"
        );
    }
    let t = tempfile::tempdir().expect("tmp");
    let f = lab(t.path(), "", "hostname = \"m.k8s\"", "script = \"ok.sh\"");
    labctl_spec::load(&f, Overrides::default()).expect("a dotted name is fine");
}
