//! Host URIs: `local` or a libvirt `qemu[+ssh]://` URI, and the SSH endpoint of a remote one.

use serde::Serialize;

/// Where a host's labs run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostUri {
    /// This machine, with the lab's own provider (`uri = "local"`).
    Local,
    /// A libvirt connection URI (`qemu:///system`, `qemu+ssh://user@host/system`).
    Libvirt {
        uri: String,
        /// The SSH endpoint for `qemu+ssh://` URIs: guests are reached through it.
        remote: Option<Remote>,
    },
}

impl HostUri {
    /// The text written in class.toml.
    pub fn as_str(&self) -> &str {
        match self {
            HostUri::Local => "local",
            HostUri::Libvirt { uri, .. } => uri,
        }
    }
    pub fn remote(&self) -> Option<&Remote> {
        match self {
            HostUri::Libvirt {
                remote: Some(r), ..
            } => Some(r),
            _ => None,
        }
    }
}

/// `user@host:port` of a `qemu+ssh://` URI, and its `?keyfile=` (the key libvirt's SSH
/// transport logs in with). The driver crate's `route::JumpHost` is made from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remote {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub keyfile: Option<String>,
}

/// Why a URI is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriError(pub String);

/// Parse a host's `uri`: `local`, or a libvirt URI `qemu[+ssh]://[user@]host[:port]/system`
/// (or `/session`). Only `qemu` and `qemu+ssh` transports are accepted; user and host names
/// are limited to characters that are safe in an OpenSSH config.
pub fn parse_uri(s: &str) -> Result<HostUri, UriError> {
    if s == "local" {
        return Ok(HostUri::Local);
    }
    if s.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"')
    {
        return Err(UriError(
            "contains spaces, quotes or control characters".into(),
        ));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(UriError(
            "expected `local` or a libvirt URI such as `qemu+ssh://root@10.0.0.2/system`".into(),
        ));
    };
    let ssh = match scheme {
        "qemu" => false,
        "qemu+ssh" => true,
        other => {
            return Err(UriError(format!(
                "transport `{other}` is not supported: use `qemu` (this machine) or `qemu+ssh`"
            )));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if path != "/system" && path != "/session" {
        return Err(UriError("the path must be `/system` or `/session`".into()));
    }
    if !ssh {
        if !authority.is_empty() {
            return Err(UriError(
                "a `qemu://` URI with a host name needs a transport: use `qemu+ssh://`".into(),
            ));
        }
        return Ok(HostUri::Libvirt {
            uri: s.to_string(),
            remote: None,
        });
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = user
        && (u.is_empty()
            || u.starts_with('-')
            || !u
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(UriError(format!("`{u}` is not a valid user name")));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Err(UriError("unclosed `[` in the host".into()));
        };
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty()
        || host.starts_with('-')
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    {
        return Err(UriError(format!(
            "`{host}` is not a host name or address (qemu+ssh needs one)"
        )));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(UriError(format!("`{p}` is not a port"))),
        },
    };
    let keyfile = match query
        .split('&')
        .find_map(|kv| kv.strip_prefix("keyfile="))
        .map(percent_decode)
    {
        Some(Some(k)) if !k.is_empty() => Some(k),
        Some(_) => return Err(UriError("`keyfile` is not a file name".into())),
        None => None,
    };
    Ok(HostUri::Libvirt {
        uri: s.to_string(),
        remote: Some(Remote {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            keyfile,
        }),
    })
}

/// `%XX` escapes decoded (libvirt unescapes URI parameters); `None` for a bad escape or a
/// result that is not UTF-8 or holds a control character.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .ok()
        .filter(|t| !t.chars().any(char::is_control))
}
