//! Stages 2 and 3: fill defaults, then check meaning and expand roles into nodes.
//!
//! - [`lab`]: `build`, the lab-level keys and the order of the checks.
//! - [`networks`]: networks, CIDRs, ranges and node addresses.
//! - [`roles`]: roles expanded into nodes (counts, names, ports, forwards).
//! - [`steps`]: steps, durations, and the dependency graph (unknown steps, cycles).
//! - [`templates`]: trusted roots and rendering every step once with placeholder values.

mod lab;
mod networks;
mod roles;
mod steps;
mod templates;

use crate::error::{Sink, suggest};
use crate::model::{Accel, Provider};
use crate::parse::{RawLab, RawRole, S};
pub(crate) use lab::build;

/// Settings from the command line that override the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `--workers N`.
    pub workers: Option<u32>,
    /// `LABCTL_NO_EGRESS=1`: force `egress = false`.
    pub no_egress: bool,
    /// Defaults for keys lab.toml does not set (from the user's config file).
    pub defaults: LabDefaults,
    /// `LABCTL_PORT_OFFSET`: added to every host port the lab forwards (each node's SSH
    /// port and `forward` hosts), so that tests and side-by-side copies of a lab move their
    /// ports without editing lab.toml. The result is checked like any port (1024-65535).
    pub port_offset: i32,
}

/// Values that apply when lab.toml does not set the key: lab.toml wins over them, and they
/// win over labctl's built-in defaults. The binary fills them from the user config file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabDefaults {
    pub provider: Option<Provider>,
    pub accel: Option<Accel>,
    pub egress: Option<bool>,
}

/// Largest worker count accepted.
pub const MAX_WORKERS: u32 = 200;
pub const DEFAULT_BOX: &str = "labctl/debian-12";

fn ident_ok(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A host name labctl also uses as a directory name: it starts and ends with a letter or
/// digit, so `.` and `..` (and `-x`) are not names.
fn dns_label_ok(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `lab.uri`: a libvirt connection URI that `class::parse_uri` accepts (`qemu:///system`,
/// `qemu+ssh://[user@]host[:port]/system`), only with `provider = "libvirt"`.
fn uri_value(u: &S<String>, provider: Provider, sink: &mut Sink<'_>) -> Option<String> {
    if provider != Provider::Libvirt {
        sink.hint(
            &u.span,
            "lab.uri",
            format!(
                "`uri` is for the libvirt provider, and this lab uses `{}`",
                provider.as_str()
            ),
            "remove `uri`, or set `provider = \"libvirt\"`".to_string(),
        );
        return None;
    }
    // The one parser of libvirt URIs (as class.toml's hosts): labctl reaches the guests of
    // a remote host through its SSH endpoint, so only URIs it can route are accepted.
    let refused = match crate::class::parse_uri(&u.v) {
        Ok(crate::class::HostUri::Libvirt { .. }) => None,
        Ok(crate::class::HostUri::Local) => {
            Some("`local` is a class.toml host, not a libvirt URI".to_string())
        }
        Err(crate::class::UriError(m)) => Some(m),
    };
    if let Some(m) = refused {
        sink.hint(
            &u.span,
            "lab.uri",
            format!("`{}` is not a libvirt URI labctl can use: {m}", u.v),
            "use `qemu:///system`, `qemu:///session` or `qemu+ssh://user@host/system`".to_string(),
        );
        return None;
    }
    Some(u.v.clone())
}

fn enum_value<T: Copy>(
    v: Option<&S<String>>,
    field: &str,
    choices: &[(&str, T)],
    default: T,
    sink: &mut Sink<'_>,
) -> T {
    let Some(v) = v else { return default };
    if let Some((_, t)) = choices.iter().find(|(name, _)| *name == v.v) {
        return *t;
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let hint = match suggest(&v.v, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("expected one of: {}", names.join(", ")),
    };
    sink.hint(&v.span, field, format!("unknown value `{}`", v.v), hint);
    default
}

struct Ctx<'a, 's> {
    sink: &'a mut Sink<'s>,
}

fn pos_u32(
    v: Option<&S<i64>>,
    field: &str,
    min: i64,
    max: i64,
    default: u32,
    sink: &mut Sink<'_>,
) -> u32 {
    match v {
        Some(x) if (min..=max).contains(&x.v) => u32::try_from(x.v).unwrap_or(default),
        Some(x) => {
            sink.at(
                &x.span,
                field,
                format!("must be between {min} and {max}; got {}", x.v),
            );
            default
        }
        None => default,
    }
}

fn role_span<'r>(raw: &'r RawLab, role: &str) -> Option<&'r RawRole> {
    raw.roles.iter().find(|r| r.name.v == role)
}
