//! The lab's own SSH key (ed25519, private half mode 0600).

use std::path::{Path, PathBuf};

/// Key generation or storage failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate an SSH key: {0}")]
    Generate(String),
    #[error("cannot write SSH key {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Make `path` (private) and `path.pub` if they do not exist. Returns the public key line.
pub fn ensure_keypair(path: &Path, comment: &str) -> Result<String, KeyError> {
    let pub_path = path.with_extension("pub");
    if path.exists()
        && let Ok(p) = std::fs::read_to_string(&pub_path)
    {
        return Ok(p.trim().to_string());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    key.set_comment(comment);
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    key.write_openssh_file(&tmp, ssh_key::LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    std::fs::write(&pub_path, format!("{public}\n")).map_err(|source| KeyError::Write {
        path: pub_path.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn makes_a_0600_key_once() {
        let d = tempfile::tempdir().expect("tmp");
        let k = d.path().join("ssh/id_ed25519");
        let p1 = ensure_keypair(&k, "labctl@test").expect("key");
        assert!(p1.starts_with("ssh-ed25519 "), "{p1}");
        assert!(p1.ends_with("labctl@test"));
        let mode = std::fs::metadata(&k).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ensure_keypair(&k, "labctl@test").expect("again"), p1);
    }
}
