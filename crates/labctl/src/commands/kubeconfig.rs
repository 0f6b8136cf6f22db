//! `labctl kubeconfig`: a kubeconfig for `kubectl` on the host, through the API server port
//! that the lab forwards to 127.0.0.1 (a `[[role.NAME.forward]]` with `guest = 6443`).

use std::io::Write;
use std::path::{Path, PathBuf};

use labctl_driver::files::UnixMode as _;

use crate::Result;
use crate::cli::KubeconfigArgs;
use crate::errors::{ExpectedError, code};
use crate::output::Printer;

/// The API server's port inside the guests.
const API_PORT: u16 = 6443;

pub(crate) fn run(args: &KubeconfigArgs, p: &Printer) -> Result<u8> {
    let lab = super::load_lab(&args.lab)?;
    let Some(port) = lab
        .nodes
        .iter()
        .flat_map(|n| n.forwards.iter())
        .find(|f| f.guest == API_PORT)
        .map(|f| f.host)
    else {
        return Err(ExpectedError::NoKubeApi { lab: lab.name });
    };
    // Every node may hold admin.conf (control planes do; a load balancer does not): the
    // first running node that has it wins, so a stopped cp1 does not stop this.
    let nodes: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let paths = labctl_runner::lab_paths(&lab.dir, &lab.name);
    let (from, admin) = labctl_runner::read_guest_file(
        &paths,
        &super::env_for(&args.lab),
        &nodes,
        "/etc/kubernetes/admin.conf",
    )?;
    let text = with_server(&admin, &format!("https://127.0.0.1:{port}"));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| paths.state_dir.join("kubeconfig"));
    write_private(&out, text.as_bytes()).map_err(|source| ExpectedError::Write {
        path: out.clone(),
        source,
    })?;
    p.info(format!(
        "admin kubeconfig from {from}, API server at https://127.0.0.1:{port}"
    ));
    p.out(format!("export KUBECONFIG={}", out.display()));
    Ok(code::OK)
}

/// `kubeconfig` with every cluster's `server:` set to `server`.
fn with_server(kubeconfig: &str, server: &str) -> String {
    let mut out = String::with_capacity(kubeconfig.len());
    for line in kubeconfig.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server: ") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}server: {server}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Write `bytes` to `path` with mode 0600 from the start (it holds the cluster's admin key).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or_else(|| "kubeconfig".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .unix_mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_is_rewritten_and_the_rest_kept() {
        let admin = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://m-k8s:6443\n  name: kubernetes\nusers:\n- name: kubernetes-admin\n  user:\n    client-key-data: WFla\n";
        let out = with_server(admin, "https://127.0.0.1:60443");
        assert_eq!(
            out,
            admin.replace("https://m-k8s:6443", "https://127.0.0.1:60443")
        );
    }

    #[cfg(unix)]
    #[test]
    fn written_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/kubeconfig");
        write_private(&path, b"x").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"x");
    }
}
