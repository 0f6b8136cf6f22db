//! Property-based fuzzing of the parsers that read external programs' output (proptest on
//! stable, a bounded number of cases, part of the normal test suite): VBoxManage
//! (`showvminfo --machinereadable`, lists, versions, NAT rules, VBox.log), `qemu-img info`
//! verdicts and VMDK descriptors. QMP replies are fuzzed in
//! `src/qemu/qmp.rs` (the client is crate-private).
//!
//! Property: any input, including `key="value"` documents shaped like the real output with
//! hostile values (quotes, escapes, huge numbers, non-ASCII), is parsed or refused without a
//! panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use labctl_driver::boxes::unpack;
use labctl_driver::vbox::parse;
use proptest::prelude::*;

fn no_panic(what: &str, text: &str, f: impl FnOnce(&str)) -> Result<(), TestCaseError> {
    catch_unwind(AssertUnwindSafe(|| f(text)))
        .map_err(|_| TestCaseError::fail(format!("{what} panicked on {text:?}")))
}

fn all(text: &str) -> Result<(), TestCaseError> {
    no_panic("showvminfo", text, |t| {
        if let Some(info) = parse::showvminfo(t) {
            for i in 0..=9 {
                let _ = info.nic(i);
            }
        }
    })?;
    no_panic("machine_readable", text, |t| {
        let _ = parse::machine_readable(t);
    })?;
    no_panic("version", text, |t| {
        let _ = parse::version(t).map(|v| v.at_least(7, 0, 0));
    })?;
    no_panic("list_vms", text, |t| {
        let _ = parse::list_vms(t);
    })?;
    no_panic("list_hostonlyifs", text, |t| {
        let _ = parse::list_hostonlyifs(t);
    })?;
    no_panic("list_hostonlynets", text, |t| {
        let _ = parse::list_hostonlynets(t);
    })?;
    no_panic("hostonlyif_created", text, |t| {
        let _ = parse::hostonlyif_created(t);
    })?;
    no_panic("snapshot_list", text, |t| {
        let _ = parse::snapshot_list(t);
    })?;
    no_panic("extradata_value", text, |t| {
        let _ = parse::extradata_value(t);
    })?;
    no_panic("nat_redirect_failures", text, |t| {
        let _ = parse::nat_redirect_failures(t);
    })?;
    no_panic("NatRule", text, |t| {
        let _ = parse::NatRule::parse(t);
    })?;
    no_panic("VmState", text, |t| {
        let _ = parse::VmState::parse(t);
    })?;
    no_panic("judge_image", text, |t| {
        let _ = unpack::judge_image(t, Path::new("/b/box.img"));
    })?;
    no_panic("judge_vmdk_descriptor", text, |t| {
        let _ = unpack::judge_vmdk_descriptor(t, "d.vmdk");
    })?;
    Ok(())
}

const KEYS: &[&str] = &[
    "name",
    "UUID",
    "VMState",
    "nic1",
    "nic2",
    "macaddress1",
    "Forwarding(0)",
    "natnet1",
    "hostonlyadapter2",
    "intnet2",
    "LogFldr",
    "CfgFile",
    "SnapshotName",
    "Name",
    "IPAddress",
    "NetworkMask",
    "VBoxNetworkName",
    "LowerIP",
    "UpperIP",
    "format",
    "virtual-size",
    "backing-filename",
    "createType",
    "RW 2048 FLAT",
    "GUID",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,30}",
        "[0-9]{1,25}",
        Just("\"tcp,127.0.0.1,2222,,22\"".to_string()),
        Just("\"ssh,tcp,,99999999999,,22\"".to_string()),
        Just("\"unterminated".to_string()),
        Just("\"a\\\"b\\\\\"".to_string()),
        Just("\"Имя сети VBox\"".to_string()),
        Just("{\"format\":\"vmdk\",\"format-specific\":{\"data\":{\"extents\":[{}]}}}".to_string()),
    ]
}

fn document() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        (proptest::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k}={v}")),
        (proptest::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k}:     {v}")),
        (proptest::sample::select(KEYS), value()).prop_map(|(k, v)| format!("\"{k}\" {v}")),
        Just(String::new()),
        Just("00:00:01.000 NAT: Failed to redirect TCP 127.0.0.1:2222 -> 10.0.2.15:22".into()),
    ];
    proptest::collection::vec(line, 0..30).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in "\\PC{0,600}") {
        all(&text)?;
    }

    #[test]
    fn shaped_documents(text in document()) {
        all(&text)?;
    }
}

/// Corpus-driven mutation fuzzing (crates/labctl-fuzz) for `LABCTL_FUZZ_SECONDS` (2 s by
/// default; CI gives it more): seeds are the recorded VBoxManage outputs (`tests/data/vbox/`)
/// and the committed corpus (`tests/fuzz-corpus/`: `qemu-img info` shapes, VMDK
/// descriptors); every parser takes every mutant without a panic. The hostile seeds are first
/// checked to be refused as they are, so the corpus is what it says.
#[test]
fn corpus_mutations_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("tests/data/vbox");
    let extra = root.join("tests/fuzz-corpus");
    let corpus = labctl_fuzz::corpus(&[&data, &extra], &[".txt", ".json"]);
    assert!(
        corpus.len() >= 25,
        "the corpus is missing files: {}",
        corpus.len()
    );
    let text =
        |name: &str| -> String { std::fs::read_to_string(extra.join(name)).expect("corpus file") };
    let img = Path::new("/b/box.img");
    assert!(unpack::judge_image(&text("qemu-img-clean.json"), img).is_ok());
    for hostile in [
        "qemu-img-backing.json",
        "qemu-img-data-file.json",
        "qemu-img-encrypted.json",
        "qemu-img-vmdk-extents.json",
    ] {
        assert!(
            unpack::judge_image(&text(hostile), img).is_err(),
            "{hostile} was accepted"
        );
    }
    assert!(unpack::judge_vmdk_descriptor(&text("vmdk-sparse.txt"), "box-disk001.vmdk").is_ok());
    assert!(
        unpack::judge_vmdk_descriptor(&text("vmdk-flat-extent.txt"), "box-disk001.vmdk").is_err()
    );

    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let mut dict: Vec<Vec<u8>> = KEYS.iter().map(|k| format!("{k}=").into_bytes()).collect();
    dict.extend(
        [
            "\"",
            "=\"",
            "\n",
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "\"extents\": [",
            "\"format\": ",
            "FLAT",
            "SPARSE",
            "RW ",
            "99999999999999999999",
            "\u{feff}",
            "Имя",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec()),
    );
    let dict: Vec<&[u8]> = dict.iter().map(Vec::as_slice).collect();
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-parsers");
    let report = labctl_fuzz::run(
        &seeds,
        &dict,
        labctl_fuzz::Budget::from_env(2.0),
        Some(&saved),
        |input| all(&String::from_utf8_lossy(input)).map_err(|e| e.to_string()),
    );
    match report {
        Ok(r) => eprintln!("{} inputs, no failure", r.runs),
        Err(f) => panic!("{f}"),
    }
}
