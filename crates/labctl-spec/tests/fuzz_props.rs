//! Property-based fuzzing of the lab-spec parser (proptest on stable; a bounded number of
//! cases so it runs in the normal test suite in seconds).
//!
//! Property: for any text — arbitrary bytes-as-text, and lab.toml-shaped documents built from
//! the real keys with values of every type — `load_str` returns a lab or a list of located
//! diagnostics, and never panics.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use labctl_spec::{Overrides, SpecError};
use proptest::prelude::*;

fn check(text: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("lab.toml");
    let r = catch_unwind(AssertUnwindSafe(|| {
        labctl_spec::load_str(text, &file, Path::new("lab.toml"), Overrides::default())
    }));
    match r {
        Err(_) => Err(TestCaseError::fail(format!("panicked on {text:?}"))),
        Ok(Err(SpecError::Invalid { diagnostics, .. })) => {
            prop_assert!(
                !diagnostics.is_empty(),
                "refused without a diagnostic: {text:?}"
            );
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

const KEYS: &[&str] = &[
    "name",
    "provider",
    "box",
    "accel",
    "egress",
    "os",
    "workers",
    "templates",
    "trusted_dirs",
    "boot_timeout",
    "hostname",
    "count",
    "start",
    "scale",
    "cpus",
    "memory",
    "ip",
    "ips",
    "ssh_port",
    "script",
    "template",
    "args",
    "run",
    "after",
    "publish",
    "timeout",
    "cidr",
    "kind",
    "host_ip",
    "reserved",
    "guest",
    "host",
    "check",
    "forget",
];
const TABLES: &[&str] = &[
    "[lab]",
    "[vars]",
    "[[network]]",
    "[role.master]",
    "[role.worker]",
    "[[role.master.step]]",
    "[[role.worker.step]]",
    "[[role.master.forward]]",
    "[role.\"..\"]",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9./{}_ -]{0,20}".prop_map(|s| format!("{s:?}")),
        Just("\"../../etc/passwd\"".to_string()),
        Just("\"192.168.1.0/24\"".to_string()),
        Just("\"w{i}-k8s\"".to_string()),
        Just("[\"a\", 1, true]".to_string()),
        Just("{ x = 1 }".to_string()),
        Just("\"\\u0000\"".to_string()),
    ]
}

fn document() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        (proptest::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        proptest::sample::select(TABLES).prop_map(str::to_string),
    ];
    proptest::collection::vec(line, 0..40).prop_map(|lines| {
        let mut s = String::from("[lab]\nname = \"f\"\n");
        s.push_str(&lines.join("\n"));
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(&text)?;
    }

    #[test]
    fn lab_shaped_documents_never_panic(text in document()) {
        check(&text)?;
    }
}
