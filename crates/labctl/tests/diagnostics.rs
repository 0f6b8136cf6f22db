//! How lab.toml problems reach the terminal: the source line with a caret under the span, long
//! values shortened, and a file that is not UTF-8.

use assert_cmd::Command;

fn validate(content: &[u8]) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("lab.toml"), content).expect("write");
    let out = Command::cargo_bin("labctl")
        .expect("labctl")
        .current_dir(tmp.path())
        .env_remove("LABCTL_LAB")
        .env_remove("LABCTL_WORKERS")
        .env("NO_COLOR", "1")
        .arg("validate")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

#[test]
fn a_caret_under_each_problem() {
    let (code, err) = validate(
        b"[lab]\nname = \"Bad_Lab\"\nprovder = \"qemu\"\n\n[role.master]\nmemory = 10\n\t cpus = 99\n",
    );
    assert_eq!(code, Some(3));
    insta::assert_snapshot!(err);
}

#[test]
fn a_long_value_is_shortened() {
    let mut toml = b"[lab]\nname = \"".to_vec();
    toml.extend(std::iter::repeat_n(b'x', 100_000));
    toml.extend(b"\"\n\n[role.master]\n");
    let (code, err) = validate(&toml);
    assert_eq!(code, Some(3));
    assert!(err.len() < 1_000, "{} bytes of stderr", err.len());
    insta::assert_snapshot!(err);
}

#[test]
fn a_value_far_along_a_long_line_keeps_its_caret() {
    let toml = format!(
        "[lab]\nname = \"ok\"\n[vars]\nx = \"{}\"\n[role.master]\ncpus = 1\nmemory = 512\nip = \"10.0.0.1\"\n",
        "y".repeat(200)
    );
    // `ip` without a network: the caret is at the start of a short line; and a long line in
    // a table with a problem far to the right.
    let long = format!(
        "[lab]\nname = \"ok\"\n[role.master]\nhostname = \"{}Bad_\"\n",
        "a".repeat(150)
    );
    let (_, err1) = validate(toml.as_bytes());
    let (_, err2) = validate(long.as_bytes());
    insta::assert_snapshot!(format!("{err1}---\n{err2}"));
}

#[test]
fn a_file_that_is_not_utf8_says_so() {
    let (code, err) = validate(b"[lab]\nname = \"ok\"\n# caf\xe9\n");
    assert_eq!(code, Some(3));
    insta::assert_snapshot!(err.replace('\r', ""));
}
