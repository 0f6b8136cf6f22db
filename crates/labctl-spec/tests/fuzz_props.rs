//! Property-based fuzzing of the lab-spec parser (proptest on stable; a bounded number of
//! cases so it runs in the normal test suite in seconds).
//!
//! Property: for any text — arbitrary bytes-as-text, and lab.toml-shaped documents built from
//! the real keys with values of every type — `load_str` returns a lab or a list of located
//! diagnostics, and never panics.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

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

/// Corpus-driven mutation fuzzing (crates/labctl-fuzz) for `LABCTL_FUZZ_SECONDS` (2 s by
/// default; CI gives it more): seeds are the committed corpus `tests/fuzz-corpus/`, the
/// bundled labs and the refused-input corpus `tests/bad/`; every mutant must give a lab or
/// located diagnostics, and `class.toml` mutants a class or located diagnostics, never a
/// panic. A failing input is saved under the test's temporary directory.
#[test]
fn corpus_mutations_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests/fuzz-corpus"), root.join("tests/bad")];
    if let Ok(rd) = std::fs::read_dir(root.join("../../labs")) {
        dirs.extend(rd.flatten().map(|e| e.path()));
    }
    let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let corpus = labctl_fuzz::corpus(&dirs, &[".toml"]);
    assert!(
        corpus.len() >= 40,
        "the corpus is missing files: {}",
        corpus.len()
    );
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let mut dict: Vec<Vec<u8>> = KEYS
        .iter()
        .map(|k| format!("{k} = ").into_bytes())
        .collect();
    dict.extend(TABLES.iter().map(|t| format!("\n{t}\n").into_bytes()));
    dict.extend(
        [
            "{{",
            "}}",
            "\"",
            "'''",
            "[",
            "]",
            "{ ",
            " }",
            "..",
            "w{i}",
            "\\u0000",
            "192.168.1.",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec()),
    );
    let dict: Vec<&[u8]> = dict.iter().map(Vec::as_slice).collect();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("lab.toml");
    let class_file = tmp.path().join("class.toml");
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-lab-spec");
    let report = labctl_fuzz::run(
        &seeds,
        &dict,
        labctl_fuzz::Budget::from_env(2.0),
        Some(&saved),
        |input| {
            let text = String::from_utf8_lossy(input);
            match labctl_spec::load_str(&text, &file, Path::new("lab.toml"), Overrides::default()) {
                Err(SpecError::Invalid { diagnostics, .. }) if diagnostics.is_empty() => {
                    return Err("lab.toml refused without a diagnostic".into());
                }
                _ => {}
            }
            match labctl_spec::class::load_class_str(&text, &class_file, Path::new("class.toml")) {
                Err(SpecError::Invalid { diagnostics, .. }) if diagnostics.is_empty() => {
                    Err("class.toml refused without a diagnostic".into())
                }
                _ => Ok(()),
            }
        },
    );
    match report {
        Ok(r) => eprintln!("{} inputs, no failure", r.runs),
        Err(f) => panic!("{f}"),
    }
}
