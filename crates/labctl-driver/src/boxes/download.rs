//! Box downloads over http(s) with curl (through `exec::Cmd`), resumable, with progress.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{BoxError, BoxStore, Progress, io};
use crate::exec::{Cmd, ToolError, find_program};

impl BoxStore {
    pub(super) fn download(
        &self,
        url: &str,
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
        let total = Cmd::new(&curl)
            .args(["-sfLI", url])
            .timeout(Duration::from_secs(60))
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
        // curl resumes a partial file (-C -); progress comes from the growing file.
        let cmd = Cmd::new(&curl)
            .args(["-sfL", "-C", "-", "-o"])
            .arg(&part)
            .arg(url);
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
        result?;
        let size = std::fs::metadata(&part).map_or(0, |m| m.len());
        progress(Progress {
            done: size,
            total: Some(size),
        });
        std::fs::rename(&part, &done).map_err(io("rename", &part))?;
        Ok(done)
    }
}
