//! Measuring a hypervisor host: the memory labs may still use there, from `virsh nodememstats`.

use super::{LibvirtConfig, LibvirtError, parse};
use crate::exec::Cmd;

/// The memory a libvirt host can still give guests, in MiB: free plus buffers and page cache
/// (what the kernel gives back under pressure), as `virsh -c URI nodememstats` reports them
/// for the whole host. The same idea as `MemAvailable` for a local host.
pub fn available_memory_mb(cfg: &LibvirtConfig) -> Result<u64, LibvirtError> {
    let cmd = Cmd::new(&cfg.virsh)
        .arg("-c")
        .arg(&cfg.uri)
        .arg("nodememstats")
        .timeout(cfg.timeout);
    let out = cmd.run_unchecked()?;
    if !out.status.success() {
        if let Some(detail) = parse::connect_failure(&out.stderr) {
            return Err(LibvirtError::Connect {
                uri: cfg.uri.clone(),
                detail,
            });
        }
        return Err(LibvirtError::Unexpected {
            command: cmd.display(),
            message: out.stderr.trim().to_string(),
        });
    }
    available_kib(&out.stdout)
        .map(|kib| kib / 1024)
        .ok_or_else(|| LibvirtError::Unexpected {
            command: cmd.display(),
            message: format!(
                "no `free` line in its output: {}",
                out.stdout.trim().replace('\n', "; ")
            ),
        })
}

/// `free + buffers + cached` (KiB) from `nodememstats` output, whose lines virsh prints as
/// `"%-7s: %20llu KiB"` (virsh-host.c, cmdNodeMemStats) with libvirt's Linux fields `total`,
/// `free`, `buffers`, `cached`. `None` without a `free` line; a missing buffers or cached
/// line (other host systems) counts as 0.
pub(crate) fn available_kib(text: &str) -> Option<u64> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if k.trim() != name {
                return None;
            }
            v.trim().trim_end_matches("KiB").trim().parse::<u64>().ok()
        })
    };
    let free = field("free")?;
    // Saturating: the numbers come from another machine.
    Some(
        free.saturating_add(field("buffers").unwrap_or(0))
            .saturating_add(field("cached").unwrap_or(0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from Debian 12's virsh/libvirtd 9.0 on this project's test host.
    const LINUX: &str = "total  :             24683584 KiB\n\
                         free   :              2756720 KiB\n\
                         buffers:               186000 KiB\n\
                         cached :             19981508 KiB\n";

    #[test]
    fn free_buffers_and_cached_add_up() {
        assert_eq!(available_kib(LINUX), Some(2756720 + 186000 + 19981508));
    }

    #[test]
    fn only_free_is_required() {
        assert_eq!(
            available_kib("total  :     2048 KiB\nfree   :     1024 KiB\n"),
            Some(1024)
        );
        assert_eq!(available_kib("total  :     2048 KiB\n"), None);
        assert_eq!(available_kib(""), None);
        assert_eq!(available_kib("free   :  lots KiB\n"), None);
        let huge = format!("free   : {} KiB\ncached : {} KiB\n", u64::MAX, u64::MAX);
        assert_eq!(available_kib(&huge), Some(u64::MAX));
    }

    /// A stand-in `virsh` (a shell script) that checks its argv and answers as told.
    #[cfg(unix)]
    fn measure_with(script_body: &str) -> (Result<u64, LibvirtError>, tempfile::TempDir) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let virsh = dir.path().join("virsh");
        std::fs::write(&virsh, format!("#!/bin/sh\n{script_body}\n")).unwrap();
        std::fs::set_permissions(&virsh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = LibvirtConfig {
            virsh,
            uri: "qemu+ssh://root@h1/system".into(),
            pool_dir: dir.path().join("pool"),
            cache_dir: dir.path().join("cache"),
            timeout: std::time::Duration::from_secs(10),
        };
        (available_memory_mb(&cfg), dir)
    }

    #[cfg(unix)]
    #[test]
    fn measures_through_virsh_with_the_hosts_uri() {
        let script = format!(
            "[ \"$*\" = \"-c qemu+ssh://root@h1/system nodememstats\" ] || {{ echo \"argv: $*\" >&2; exit 3; }}\nprintf '{}'",
            LINUX.replace('\n', "\\n")
        );
        let (r, _d) = measure_with(&script);
        assert_eq!(r.unwrap(), (2756720 + 186000 + 19981508) / 1024);
    }

    #[cfg(unix)]
    #[test]
    fn a_refused_connection_is_typed_and_other_failures_name_the_command() {
        let (r, _d) = measure_with(
            "echo 'error: failed to connect to the hypervisor' >&2\necho 'error: Cannot recv data: Connection reset by peer' >&2\nexit 1",
        );
        assert!(
            matches!(&r, Err(LibvirtError::Connect { uri, .. }) if uri == "qemu+ssh://root@h1/system"),
            "{r:?}"
        );
        let (r, _d) = measure_with(
            "echo 'error: this function is not supported by the connection driver: virNodeGetMemoryStats' >&2\nexit 1",
        );
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("nodememstats") && e.contains("not supported"),
            "{e}"
        );
        let (r, _d) = measure_with("echo 'total  :  2048 KiB'");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("no `free` line") && e.contains("total"), "{e}");
    }

    #[test]
    fn a_field_named_like_another_is_not_taken_for_it() {
        assert_eq!(
            available_kib("freeish:  9 KiB\nfree   :  1 KiB\ncached :  2 KiB\n"),
            Some(3)
        );
    }
}
