//! The bundle's signing key: a private GnuPG home in `<data_dir>/bundle-keys/<name>/gnupg`
//! (0700), made with `gpg --quick-gen-key` (ed25519, no passphrase), used to sign apt's
//! `Release`. Only the public key (`key.asc`) goes into the bundle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use labctl_driver::exec::Cmd;

use crate::{Result, io};

const GPG_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) struct Signer {
    home: PathBuf,
    uid: String,
}

fn private_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(io("create", p))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
            .map_err(io("set permissions on", p))?;
    }
    Ok(())
}

impl Signer {
    fn gpg(&self) -> Cmd {
        Cmd::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args(["--batch", "--quiet", "--no-tty"])
            .timeout(GPG_TIMEOUT)
    }

    /// The key of bundle `name` in `keys_dir`, made on first use.
    pub(crate) fn open_or_create(keys_dir: &Path, name: &str) -> Result<Signer> {
        private_dir(keys_dir)?;
        let home = keys_dir.join("gnupg");
        private_dir(&home)?;
        let s = Signer {
            home,
            uid: format!("labctl bundle {name} <bundle-{name}@labctl.invalid>"),
        };
        let have = s
            .gpg()
            .args(["--list-secret-keys", "--with-colons"])
            .arg(&s.uid)
            .run_unchecked()?;
        if !have.status.success() || !have.stdout.contains("sec:") {
            s.gpg()
                .args(["--passphrase", "", "--quick-gen-key"])
                .arg(&s.uid)
                .args(["ed25519", "sign", "never"])
                .run()?;
        }
        Ok(s)
    }

    /// An existing key only (`None` when the bundle has no private key here).
    pub(crate) fn open(keys_dir: &Path, name: &str) -> Option<Signer> {
        let home = keys_dir.join("gnupg");
        home.is_dir().then(|| Signer {
            home,
            uid: format!("labctl bundle {name} <bundle-{name}@labctl.invalid>"),
        })
    }

    pub(crate) fn public_armored(&self) -> Result<String> {
        Ok(self
            .gpg()
            .args(["--armor", "--export"])
            .arg(&self.uid)
            .run()?
            .stdout)
    }

    /// Write `InRelease` (clear-signed) and `Release.gpg` (detached, armored) next to `release`.
    pub(crate) fn sign_release(&self, release: &Path) -> Result<()> {
        let dir = release.parent().unwrap_or(Path::new("."));
        for (flag, out) in [
            ("--clearsign", "InRelease"),
            ("--detach-sign", "Release.gpg"),
        ] {
            let out = dir.join(out);
            self.gpg()
                .args([
                    "--yes",
                    "--armor",
                    "--digest-algo",
                    "SHA512",
                    "--local-user",
                ])
                .arg(&self.uid)
                .arg(flag)
                .arg("--output")
                .arg(&out)
                .arg(release)
                .run()?;
        }
        Ok(())
    }
}

impl Drop for Signer {
    /// gpg starts an agent for the home; stop it rather than leave it running.
    fn drop(&mut self) {
        let _ = Cmd::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .timeout(Duration::from_secs(10))
            .run_unchecked();
    }
}
