//! Classroom bundles (docs/bundle.md): per guest OS release a signed apt repository, and an
//! OCI image store, in `<data_dir>/bundles/<name>/`; export and import as one verified tar
//! archive; and the read-only HTTP server guests install from.
//!
//! This crate never prints: it returns typed errors, reports and events, and the binary words
//! them. External programs (`apt-get`, `gpg`) run through `labctl_driver::exec`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod apt;
pub mod archive;
pub mod build;
pub mod deb;
mod keys;
pub mod manifest;
pub mod oci;
pub mod server;
mod store;
mod time;

use std::path::PathBuf;

use labctl_driver::exec::ToolError;
use labctl_spec::{Family, Lab};

pub use manifest::{ImageEntry, Manifest, Missing, OsEntry, SetEntry};
pub use store::{BundleSummary, Coverage, Store};

/// What went wrong with a bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a valid bundle name")]
    BadName(String),
    #[error("no bundle named `{0}`")]
    NotFound(String),
    #[error("a bundle named `{0}` already exists")]
    Exists(String),
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid bundle manifest: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
    #[error("the archive is not a bundle: {0}")]
    NotABundle(String),
    #[error("the archive entry `{0}` is not a plain relative path inside the bundle")]
    UnsafePath(String),
    #[error("`{file}` does not match the manifest's sha256: the archive was altered or damaged")]
    Tampered { file: String },
    #[error("`{file}` is listed in the manifest but missing from the archive")]
    MissingFile { file: String },
    #[error("`{file}` is in the archive but not in the manifest")]
    Unlisted { file: String },
    #[error("{} is not a Debian package: {reason}", path.display())]
    BadDeb { path: PathBuf, reason: String },
    #[error("{} is not an OCI image layout: {reason}", path.display())]
    BadLayout { path: PathBuf, reason: String },
    #[error("blob {digest} does not match its digest (or size)")]
    BlobDigest { digest: String },
    #[error(
        "no signing key for bundle `{0}` (an imported bundle is signed by its builder; labctl cannot re-sign it)"
    )]
    NoSigningKey(String),
    #[error("the server must listen on a loopback address, not {0}")]
    NotLoopback(std::net::SocketAddr),
    #[error(transparent)]
    Tool(#[from] ToolError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// A guest OS release a bundle holds packages for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    pub family: Family,
    /// `12`, `24.04`.
    pub release: String,
    /// apt suite / codename: `bookworm`.
    pub suite: String,
    /// dpkg architecture: `amd64`.
    pub arch: String,
}

/// Known releases: (family, release, suite).
const RELEASES: &[(Family, &str, &str)] = &[
    (Family::Debian, "11", "bullseye"),
    (Family::Debian, "12", "bookworm"),
    (Family::Debian, "13", "trixie"),
    (Family::Ubuntu, "22.04", "jammy"),
    (Family::Ubuntu, "24.04", "noble"),
];

impl OsRelease {
    /// `debian-12`: the key a bundle's sets and repositories are filed under.
    pub fn key(&self) -> String {
        format!("{}-{}", self.family.as_str(), self.release)
    }

    /// Parse `debian-12` (amd64).
    pub fn parse(key: &str) -> Option<OsRelease> {
        let (fam, rel) = key.split_once('-')?;
        let family = Family::parse(fam)?;
        let (_, release, suite) = RELEASES
            .iter()
            .find(|(f, r, _)| *f == family && *r == rel)?;
        Some(OsRelease {
            family,
            release: (*release).to_string(),
            suite: (*suite).to_string(),
            arch: "amd64".into(),
        })
    }

    /// The release of a lab's guests, from its box name (`labctl/debian-12` → `debian-12`).
    pub fn of_lab(lab: &Lab) -> Option<OsRelease> {
        let last = lab.box_name.rsplit('/').next()?;
        OsRelease::parse(last).filter(|r| Some(r.family) == lab.os.family())
    }

    /// Releases labctl knows, as keys (for messages).
    pub fn known() -> Vec<String> {
        RELEASES
            .iter()
            .map(|(f, r, _)| format!("{}-{r}", f.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse() {
        let r = OsRelease::parse("debian-12").unwrap();
        assert_eq!(
            (r.suite.as_str(), r.key().as_str()),
            ("bookworm", "debian-12")
        );
        assert_eq!(OsRelease::parse("ubuntu-24.04").unwrap().suite, "noble");
        assert!(OsRelease::parse("debian-99").is_none());
        assert!(OsRelease::parse("centos-7").is_none());
    }
}
