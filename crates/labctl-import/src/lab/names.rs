//! Names and TOML text: sanitised role, host, step and var names, quoting and template escapes.

use std::fmt::Write as _;

pub(super) fn sanitize(s: &str, allow_dot: bool) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || (allow_dot && c == '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "node".into() } else { out }
}

/// Characters a node name may not have become `-` (no trimming: this is part of a pattern).
pub(super) fn host_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

pub(super) fn role_name(s: &str) -> String {
    let n = sanitize(s, false);
    if n.starts_with(|c: char| c.is_ascii_alphabetic()) {
        n
    } else {
        format!("r{n}")
    }
}

pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn valid_step_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn escape(s: &str) -> String {
    s.replace("{{", "\\{{")
}

pub(super) fn var_name(c: &str) -> String {
    let mut out: String = c
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|ch: char| ch.is_ascii_alphabetic()) {
        out.insert(0, 'v');
    }
    out
}
