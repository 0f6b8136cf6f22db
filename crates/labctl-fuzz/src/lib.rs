//! A small corpus-driven mutation fuzzer for labctl's parser tests, on stable Rust.
//!
//! `cargo fuzz` needs a nightly toolchain and libFuzzer; CI has neither. This is the part of
//! it the parser tests need: start from a committed corpus of real and hostile inputs, mutate
//! them (bit flips, interesting bytes, deletions, duplications, dictionary tokens, splices of
//! two seeds, truncation) with a seeded PRNG, and feed every mutant to the target until a time
//! budget runs out. A target that panics or returns an error stops the run; the input is
//! saved so that it can be added to the corpus. The same seed and the same corpus give the
//! same sequence of inputs, so a failure found in CI is replayed with `LABCTL_FUZZ_SEED`.
//!
//! Budget: `LABCTL_FUZZ_SECONDS` (the test's default otherwise; `scripts/test.sh` gives CI
//! more), seed: `LABCTL_FUZZ_SEED` (default fixed).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to fuzz and from which seed.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub time: Duration,
    pub seed: u64,
}

impl Budget {
    /// `LABCTL_FUZZ_SECONDS` (else `default_seconds`) and `LABCTL_FUZZ_SEED` (else fixed).
    pub fn from_env(default_seconds: f64) -> Budget {
        let secs = std::env::var("LABCTL_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(default_seconds);
        let seed = std::env::var("LABCTL_FUZZ_SEED")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0x6c61_6263_746c);
        Budget {
            time: Duration::from_secs_f64(secs),
            seed,
        }
    }
}

/// The files of `dirs` (not recursive) whose names end with one of `suffixes`, sorted by path.
/// A missing directory contributes nothing; the caller checks that the corpus is not empty.
pub fn corpus(dirs: &[&Path], suffixes: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if p.is_file()
                && suffixes.iter().any(|s| name.ends_with(s))
                && let Ok(bytes) = std::fs::read(&p)
            {
                out.push((p, bytes));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a finished run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Inputs given to the target (the seeds themselves included).
    pub runs: u64,
}

/// The input that made the target fail, why, and where it was saved.
#[derive(Debug)]
pub struct Failure {
    pub input: Vec<u8>,
    pub message: String,
    pub saved: Option<PathBuf>,
    pub runs: u64,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "after {} inputs: {} (input saved to {}; first 200 bytes: {:?})",
            self.runs,
            self.message,
            self.saved
                .as_ref()
                .map_or("nowhere".into(), |p| p.display().to_string()),
            String::from_utf8_lossy(&self.input[..self.input.len().min(200)])
        )
    }
}

/// xorshift64*: small, fast, and the same everywhere (also used by the parser tests' own
/// line-level mutators, so a failure reproduces from its seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-enough in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that parsers tend to treat specially.
const INTERESTING: &[u8] = b"\0\xff\"'[]{}=,:.\\\n\r\t /-0189";

/// Largest input the mutator makes (parsers are also fed their seeds' own sizes).
const MAX_LEN: usize = 64 * 1024;

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8], dict: &[&[u8]]) {
    let at = |rng: &mut Rng, len: usize| rng.below(len + 1);
    match rng.below(8) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 if !input.is_empty() => {
            let start = rng.below(input.len());
            let end = (start + 1 + rng.below(16)).min(input.len());
            input.drain(start..end);
        }
        3 if !input.is_empty() => {
            let start = rng.below(input.len());
            let end = (start + 1 + rng.below(64)).min(input.len());
            let piece = input[start..end].to_vec();
            let pos = at(rng, input.len());
            input.splice(pos..pos, piece);
        }
        4 if !dict.is_empty() => {
            let tok = dict[rng.below(dict.len())];
            let pos = at(rng, input.len());
            input.splice(pos..pos, tok.iter().copied());
        }
        5 if !other.is_empty() => {
            let cut = at(rng, input.len());
            let from = rng.below(other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        6 if !input.is_empty() => {
            let keep = rng.below(input.len());
            input.truncate(keep);
        }
        _ => {
            // Repeat a line: parsers with tables and keys meet duplicates.
            if let Some(nl) = input.iter().position(|&b| b == b'\n') {
                let line = input[..=nl].to_vec();
                let pos = at(rng, input.len());
                input.splice(pos..pos, line);
            } else {
                input.push(INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
    }
    input.truncate(MAX_LEN);
}

fn save(dir: Option<&Path>, input: &[u8]) -> Option<PathBuf> {
    let dir = dir?;
    std::fs::create_dir_all(dir).ok()?;
    // FNV-1a: a stable name for the same input.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let p = dir.join(format!("failure-{h:016x}"));
    std::fs::write(&p, input).ok()?;
    Some(p)
}

/// Feed every seed, then mutants of the seeds, to `target` until the budget is spent.
/// `target` returns `Err(message)` for a wrong answer; a panic is a failure too. The input of
/// the first failure is written to `save_dir` (when given) and returned.
pub fn run(
    seeds: &[Vec<u8>],
    dict: &[&[u8]],
    budget: Budget,
    save_dir: Option<&Path>,
    mut target: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<Report, Failure> {
    let mut runs = 0u64;
    let mut one = |input: &[u8], runs: &mut u64| -> Result<(), Failure> {
        *runs += 1;
        let r = catch_unwind(AssertUnwindSafe(|| target(input)));
        let message = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(m)) => m,
            Err(p) => format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        };
        Err(Failure {
            input: input.to_vec(),
            message,
            saved: save(save_dir, input),
            runs: *runs,
        })
    };
    for s in seeds {
        one(s, &mut runs)?;
    }
    if seeds.is_empty() {
        return Ok(Report { runs });
    }
    let mut rng = Rng::new(budget.seed);
    let deadline = Instant::now() + budget.time;
    while Instant::now() < deadline {
        let mut input = seeds[rng.below(seeds.len())].clone();
        let other = &seeds[rng.below(seeds.len())];
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut input, other, dict);
        }
        one(&input, &mut runs)?;
    }
    Ok(Report { runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ms: u64) -> Budget {
        Budget {
            time: Duration::from_millis(ms),
            seed: 7,
        }
    }

    /// The fuzzer can fail: a target that panics on `key = [[` is found from a seed that does
    /// not contain it, through the dictionary, and the input is saved.
    #[test]
    fn finds_a_planted_bug_and_saves_the_input() {
        let dir = tempfile_dir();
        let seeds = vec![b"key = 1\nother = 2\n".to_vec()];
        let r = run(
            &seeds,
            &[b"[[", b"key = "],
            budget(20_000),
            Some(&dir),
            |i| {
                if i.windows(8).any(|w| w == b"key = [[") {
                    panic!("planted");
                }
                Ok(())
            },
        );
        let f = r.expect_err("the planted bug was not found");
        assert!(f.message.contains("planted"), "{f}");
        let saved = f.saved.as_ref().expect("saved");
        assert_eq!(std::fs::read(saved).expect("saved input"), f.input);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A target's own error stops the run too, with its message; seeds come first.
    #[test]
    fn an_error_on_a_seed_stops_at_once() {
        let seeds = vec![b"good".to_vec(), b"bad".to_vec()];
        let f = run(&seeds, &[], budget(1_000), None, |i| {
            if i == b"bad" {
                Err("refused without a diagnostic".into())
            } else {
                Ok(())
            }
        })
        .expect_err("bad seed");
        assert_eq!(
            (f.runs, f.message.as_str()),
            (2, "refused without a diagnostic")
        );
    }

    /// Same seed, same inputs: a failure seen in CI replays.
    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let seeds = [b"[lab]\nname = \"x\"\n".to_vec(), b"a=b\n".to_vec()];
        let collect = || {
            let mut seen = Vec::new();
            let mut rng = Rng::new(42);
            for _ in 0..200 {
                let mut input = seeds[rng.below(2)].clone();
                let other = seeds[rng.below(2)].clone();
                mutate(&mut rng, &mut input, &other, &[b"[[x]]"]);
                seen.push(input);
            }
            seen
        };
        let (a, b) = (collect(), collect());
        assert_eq!(a, b);
        assert!(a.iter().any(|i| i != &seeds[0] && i != &seeds[1]));
    }

    #[test]
    fn a_zero_budget_runs_the_seeds_only() {
        let seeds = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let r = run(&seeds, &[], budget(0), None, |_| Ok(())).expect("ok");
        assert_eq!(r.runs, 3);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("labctl-fuzz-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
