//! Command-line options of the subcommands.

use std::collections::BTreeMap;

use crate::fail::{Fail, syntax};

/// `--key value` pairs (flags without a value map to "").
pub(crate) fn options(args: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some((k, v)) = a.split_once('=').filter(|_| a.starts_with("--")) {
            out.insert(k.to_string(), v.to_string());
            i += 1;
        } else if a.starts_with("--") && args.get(i + 1).is_some_and(|n| !n.starts_with("--")) {
            out.insert(a.clone(), args[i + 1].clone());
            i += 2;
        } else {
            out.insert(a.clone(), String::new());
            i += 1;
        }
    }
    out
}

/// `--natpf1` → (`--natpf`, 1); options without a number → index 0.
pub(crate) fn split_index(opt: &str) -> (&str, u8) {
    let digits = opt.len() - opt.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == opt.len() {
        return (opt, 0);
    }
    let (k, n) = opt.split_at(opt.len() - digits);
    (k, n.parse().unwrap_or(0))
}

pub(crate) fn parse_num(v: &str) -> Result<u64, Fail> {
    v.parse()
        .map_err(|_| syntax(&format!("Invalid number '{v}'")))
}
