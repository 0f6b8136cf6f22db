//! Box downloads over http(s) with curl (through `exec::Cmd`), resumable, with progress.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{BoxError, BoxStore, Progress, io};
use crate::exec::{Cmd, ToolError, find_program};

/// A URL fit for logs, errors, `box list` and box.json: credentials (`user:pass@`) and the
/// query (signed URLs carry tokens there) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?***"),
        None => path.to_string(),
    };
    format!("{scheme}{authority}{path}")
}

/// A curl config file (mode 0600) holding the URL, so that it never appears in an argv
/// (visible to every local user in `ps`) or in an error that quotes the command.
struct CurlConfig(PathBuf);

impl CurlConfig {
    fn write(path: PathBuf, url: &str) -> Result<CurlConfig, BoxError> {
        use crate::files::UnixMode as _;
        use std::io::Write;
        let quoted = url.replace('\\', "\\\\").replace('"', "\\\"");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .unix_mode(0o600)
            .open(&path)
            .map_err(io("write", &path))?;
        writeln!(f, "url = \"{quoted}\"").map_err(io("write", &path))?;
        Ok(CurlConfig(path))
    }
}

impl Drop for CurlConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// curl's options: https only (also after redirects) unless `insecure`; give up on a
/// connection after 30 s and on a transfer that stalls below 1 KiB/s for 60 s.
fn curl_base(curl: &Path, insecure: bool, config: &CurlConfig) -> Cmd {
    let proto = if insecure { "=http,https" } else { "=https" };
    Cmd::new(curl)
        .args(["-sSfL", "--proto", proto, "--proto-redir", proto])
        .args([
            "--connect-timeout",
            "30",
            "--speed-limit",
            "1024",
            "--speed-time",
            "60",
        ])
        .arg("-K")
        .arg(&config.0)
}

impl BoxStore {
    pub(super) fn download(
        &self,
        url: &str,
        insecure: bool,
        resume: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<PathBuf, BoxError> {
        let curl = find_program(
            "curl",
            "LABCTL_CURL",
            "install curl: `apt-get install curl`",
        )?;
        std::fs::create_dir_all(&self.download_dir).map_err(io("create", &self.download_dir))?;
        let mut h = Sha256::new();
        h.update(url.as_bytes());
        let mut key = format!("{:x}", h.finalize());
        key.truncate(16);
        let done = self.download_dir.join(format!("{key}.box"));
        if done.exists() {
            return Ok(done);
        }
        let part = self.download_dir.join(format!("{key}.part"));
        // A partial file is continued only when a pinned digest will check the result: a
        // server may have changed the file since, and the halves would not match.
        if !resume {
            let _ = std::fs::remove_file(&part);
        }
        let config = CurlConfig::write(self.download_dir.join(format!(".{key}.curlrc")), url)?;
        let total = curl_base(&curl, insecure, &config)
            .arg("-I")
            .timeout(Duration::from_secs(90))
            .run()
            .ok()
            .and_then(|o| {
                o.stdout
                    .lines()
                    .filter_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .next_back()
                    .and_then(|v| v.parse::<u64>().ok())
            });
        // Progress comes from the growing file.
        let cmd = curl_base(&curl, insecure, &config)
            .args(["-C", "-", "-o"])
            .arg(&part);
        let (tx, rx) = std::sync::mpsc::channel::<Result<crate::exec::Output, ToolError>>();
        let c = cmd.clone();
        std::thread::spawn(move || {
            let _ = tx.send(c.run());
        });
        let result = loop {
            if let Ok(r) = rx.recv_timeout(Duration::from_millis(250)) {
                break r;
            }
            let size = std::fs::metadata(&part).map_or(0, |m| m.len());
            progress(Progress { done: size, total });
        };
        result.map_err(|e| BoxError::Download {
            url: redact_url(url),
            source: e,
        })?;
        let size = std::fs::metadata(&part).map_or(0, |m| m.len());
        progress(Progress {
            done: size,
            total: Some(size),
        });
        std::fs::rename(&part, &done).map_err(io("rename", &part))?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            redact_url("https://u:secret@example.org/b/x.box?token=abc"),
            "https://***@example.org/b/x.box?***"
        );
        assert_eq!(
            redact_url("https://example.org/x.box"),
            "https://example.org/x.box"
        );
        assert_eq!(redact_url("https://a@b@host"), "https://***@host");
        assert_eq!(redact_url("weird"), "weird");
    }

    #[test]
    fn the_url_never_reaches_the_argv() {
        let d = tempfile::tempdir().expect("tmp");
        let cfg = CurlConfig::write(d.path().join("c"), "https://u:p@h/\"x\"").expect("cfg");
        let cmd = curl_base(Path::new("curl"), false, &cfg);
        let argv = cmd.display();
        assert!(!argv.contains("u:p"), "{argv}");
        assert!(
            argv.contains("--proto =https --proto-redir =https"),
            "{argv}"
        );
        let text = std::fs::read_to_string(&cfg.0).expect("read");
        assert_eq!(text, "url = \"https://u:p@h/\\\"x\\\"\"\n");
    }
}
