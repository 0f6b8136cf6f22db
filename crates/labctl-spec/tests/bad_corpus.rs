//! The bad-input corpus: every file under `tests/bad/` is an invalid lab that must be refused
//! with specific, located diagnostics, and never with a panic.
//!
//! Each file starts with `# expect: FIELD`, the field path at least one diagnostic must name
//! (`<toml>` stands for the empty field of a TOML syntax error).
//!
//! One named test per file, `bad::<file stem>` (libtest-mimic; `harness = false`), so that a
//! failure names its file and one file can be run alone
//! (`cargo nextest run -p labctl-spec --test bad_corpus -E 'test(bad::10-bad-provider)'`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use labctl_spec::{Diagnostic, Lab, Overrides, SpecError};
use libtest_mimic::{Arguments, Failed, Trial};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `tests/bad/*.toml`, sorted by name.
fn bad_files() -> Vec<PathBuf> {
    let dir = manifest_dir().join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn case_name(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .expect("utf-8 file name")
        .to_string()
}

/// The field named by the file's `# expect:` line.
fn expected_field(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read bad case");
    let first = text.lines().next().unwrap_or_default();
    let field = first
        .strip_prefix("# expect:")
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: FIELD`", path.display()))
        .trim();
    if field == "<toml>" {
        String::new()
    } else {
        field.to_string()
    }
}

/// Load a case, turning a panic into an error message that names the case.
fn load_case(path: &Path) -> Result<Result<Lab, SpecError>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        labctl_spec::load(path, Overrides::default())
    }))
    .map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "non-string panic payload".to_string());
        format!("{}: load panicked: {msg}", case_name(path))
    })
}

/// Diagnostics with the machine-specific crate directory removed from paths.
fn render(diags: &[Diagnostic]) -> String {
    let prefix = format!("{}/", manifest_dir().display());
    diags
        .iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The diagnostics of a case, or why the case did not fail the way it must.
fn diagnostics_of(path: &Path) -> Result<Vec<Diagnostic>, String> {
    let name = case_name(path);
    match load_case(path)? {
        Ok(_) => Err(format!("{name}: loaded without error")),
        Err(SpecError::Read { source, .. }) => Err(format!("{name}: read error: {source}")),
        Err(SpecError::Invalid { diagnostics, .. }) if diagnostics.is_empty() => {
            Err(format!("{name}: Invalid with no diagnostics"))
        }
        Err(SpecError::Invalid { diagnostics, .. }) => Ok(diagnostics),
    }
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = vec![
        Trial::test("corpus_is_big_enough", corpus_is_big_enough),
        Trial::test("the_fuzz_base_lab_is_valid", the_fuzz_base_lab_is_valid),
        Trial::test("random_mutations_never_panic", random_mutations_never_panic),
        Trial::test(
            "every_extreme_value_in_every_key_never_panics",
            every_extreme_value_in_every_key_never_panics,
        ),
    ];
    trials.extend(bad_files().into_iter().map(|path| {
        Trial::test(format!("bad::{}", case_name(&path)), move || {
            bad_case(&path)
        })
    }));
    libtest_mimic::run(&args, trials).exit_code()
}

fn corpus_is_big_enough() -> Result<(), Failed> {
    let n = bad_files().len();
    if n < 30 {
        return Err(format!("only {n} bad cases").into());
    }
    Ok(())
}

/// One file: refused, every diagnostic located and worded, one of them on the field its
/// `# expect:` line names, and the diagnostics as in its snapshot (`bad_corpus__<stem>.snap`).
fn bad_case(path: &Path) -> Result<(), Failed> {
    let name = case_name(path);
    let diags = diagnostics_of(path)?;
    let mut failures = Vec::new();
    for d in &diags {
        if d.line == 0 && d.field != "--workers" {
            failures.push(format!("{name}: diagnostic without a line: {d}"));
        }
        if d.message.is_empty() {
            failures.push(format!("{name}: diagnostic without a message: {d}"));
        }
    }
    let want = expected_field(path);
    if !diags.iter().any(|d| d.field == want) {
        failures.push(format!(
            "{name}: no diagnostic for field `{want}`; got:\n{}",
            render(&diags)
        ));
    }
    if !failures.is_empty() {
        return Err(failures.join("\n").into());
    }
    insta::assert_snapshot!(name, render(&diags));
    Ok(())
}

const VALID: &str = r#"[lab]
name = "fuzz"
templates = "templates"
workers = 3
egress = true

[vars]
k8s_version = "1.33"

[[network]]
cidr = "192.168.1.0/24"
reserved = ["192.168.1.200-192.168.1.220"]

[role.master]
hostname = "m-k8s"
cpus = 2
memory = 3072
ip = "192.168.1.10"
ssh_port = 60010
[[role.master.forward]]
guest = 6443
host = 16443
[[role.master.step]]
template = "publish.sh.hbs"
args = ["{{lab.workers}}", "x y"]
publish = ["token"]

[role.worker]
hostname = "w{i}-k8s"
scale = true
ip = "192.168.1.101"
ssh_port = 60101
[[role.worker.step]]
template = "ok.sh.hbs"
run = "always"
[[role.worker.step]]
template = "consume.sh.hbs"
after = ["master.publish"]
timeout = 600
"#;

const GARBAGE: &[&str] = &[
    "[",
    "]]",
    "=",
    "\"",
    "[[role.master.step]]",
    "[role.worker]",
    "after = [\"worker.consume\"]",
    "after = [\"master.ok\", 3]",
    "publish = [\"token\"]",
    "scale = true",
    "ip = \"999.1.1.1\"",
    "ssh_port = 70000",
    "ssh_port = -1",
    "ssh_port = 9223372036854775807",
    "host = 9223372036854775807",
    "guest = -9223372036854775808",
    "args = [\"{{vars.nope}}\", \"{{lab.workers\"]",
    "args = \"{{values.token}}\"",
    "template = \"syntax.sh.hbs\"",
    "template = \"unknown-var.sh.hbs\"",
    "script = \"bad_corpus.rs\"",
    "workers = 9223372036854775807",
    "workers = 0x7fffffff",
    "count = -3",
    "start = 4294967295",
    "hostname = \"{i}{i}{i}\"",
    "cidr = \"0.0.0.0/0\"",
    "cidr = \"255.255.255.255/8\"",
    "reserved = [\"192.168.1.9-192.168.1.1\"]",
    "template = \"../../../../etc/passwd\"",
    "template = \"\"",
    "ips = { private = \"192.168.1.3\" }",
    "\u{feff}é\u{0}",
    "role = 3",
    "[role]",
    "[[network]]",
];

/// Values for `key = value` lines: extremes, wrong types, odd strings.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "65535",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "true",
    "1.5",
    "\"\"",
    "\"{i}\"",
    "\"a b\"",
    "\"192.168.1.255\"",
    "\"192.168.1.0/31\"",
    "\"master.publish\"",
    "\"{{values.token}}\"",
    "[]",
    "{}",
    "[1, \"x\"]",
    "1979-05-27",
];

fn mutate(rng: &mut labctl_fuzz::Rng, src: &str) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
    match rng.below(9) {
        0 => {
            let i = rng.below(lines.len());
            lines.remove(i);
        }
        1 => {
            let i = rng.below(lines.len());
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let i = rng.below(lines.len());
            let j = rng.below(lines.len());
            lines.swap(i, j);
        }
        3 => {
            let mut cut = rng.below(src.len());
            while !src.is_char_boundary(cut) {
                cut -= 1;
            }
            return src[..cut].to_string();
        }
        4 => {
            let i = rng.below(lines.len() + 1);
            let g = GARBAGE[rng.below(GARBAGE.len())].to_string();
            lines.insert(i, g);
        }
        5..=7 => {
            // A `key = value` line gets an extreme or ill-typed value: most likely to reach
            // the checks behind the parser.
            let assignments: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].contains(" = "))
                .collect();
            let i = assignments[rng.below(assignments.len())];
            let key = lines[i].split(" = ").next().unwrap_or_default().to_string();
            let value = VALUES[rng.below(VALUES.len())];
            lines[i] = format!("{key} = {value}");
        }
        _ => {
            // Garbage in the middle of a line.
            let i = rng.below(lines.len());
            let l = &lines[i];
            let mut at = rng.below(l.len() + 1);
            while !l.is_char_boundary(at) {
                at -= 1;
            }
            let g = GARBAGE[rng.below(GARBAGE.len())];
            lines[i] = format!("{}{g}{}", &l[..at], &l[at..]);
        }
    }
    lines.join("\n") + "\n"
}

fn the_fuzz_base_lab_is_valid() -> Result<(), Failed> {
    let dir = manifest_dir().join("tests/bad");
    let file = dir.join("fuzz.toml");
    let lab = labctl_spec::load_str(VALID, &file, Path::new("fuzz.toml"), Overrides::default())
        .map_err(|e| format!("{e}:\n{}", render(e.diagnostics())))?;
    if lab.nodes.len() != 4 {
        return Err(format!("{} nodes, not 4", lab.nodes.len()).into());
    }
    Ok(())
}

/// Load mutated text with a few `--workers` values; a panic is returned as a report.
fn check_mutant(what: &str, text: &str) -> Option<String> {
    let file = manifest_dir().join("tests/bad/fuzz.toml");
    for workers in [None, Some(0), Some(1), Some(500), Some(u32::MAX)] {
        let ov = Overrides {
            workers,
            no_egress: false,
            ..Default::default()
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            labctl_spec::load_str(text, &file, Path::new("fuzz.toml"), ov)
        }));
        match result {
            Err(_) => return Some(format!("{what}, workers {workers:?}, input:\n{text}\n----")),
            Ok(Err(SpecError::Invalid { diagnostics, .. })) => {
                if diagnostics.is_empty() {
                    return Some(format!(
                        "{what}: Invalid without diagnostics:\n{text}\n----"
                    ));
                }
                if let Some(d) = diagnostics
                    .iter()
                    .find(|d| d.line == 0 && d.field != "--workers")
                {
                    return Some(format!(
                        "{what}: diagnostic without a line: {d}\ninput:\n{text}\n----"
                    ));
                }
            }
            Ok(_) => {}
        }
    }
    None
}

fn random_mutations_never_panic() -> Result<(), Failed> {
    let mut rng = labctl_fuzz::Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut problems = Vec::new();
    let mut src = VALID.to_string();
    for i in 0..500 {
        // Mostly one mutation of the valid lab; sometimes pile mutations up.
        if i % 5 != 0 {
            src = VALID.to_string();
        }
        src = mutate(&mut rng, &src);
        problems.extend(check_mutant(&format!("iteration {i}"), &src));
    }
    if !problems.is_empty() {
        return Err(format!(
            "{} mutated inputs failed:\n{}",
            problems.len(),
            problems.join("\n")
        )
        .into());
    }
    Ok(())
}

/// Every `key = value` line of the valid lab with every value of `VALUES`, in turn.
fn every_extreme_value_in_every_key_never_panics() -> Result<(), Failed> {
    let lines: Vec<&str> = VALID.lines().collect();
    let mut problems = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        for value in VALUES {
            let mut mutant: Vec<String> = lines.iter().map(|l| (*l).to_string()).collect();
            mutant[i] = format!("{key} = {value}");
            let text = mutant.join("\n") + "\n";
            problems.extend(check_mutant(&format!("line {} = {value}", i + 1), &text));
        }
    }
    if !problems.is_empty() {
        return Err(format!("{} inputs failed:\n{}", problems.len(), problems.join("\n")).into());
    }
    Ok(())
}
