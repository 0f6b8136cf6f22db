//! `labctl bundle …`: the classroom bundle commands and their arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// List the bundles on this host.
    List,
    /// Show what a bundle holds: OS releases, package sets (and what is missing), images.
    Show {
        /// The bundle.
        name: String,
    },
    /// Delete a bundle and its signing key.
    Remove {
        /// The bundle.
        name: String,
    },
    /// Write a bundle to one archive (with the sha256 of every file) to carry elsewhere.
    Export {
        /// The bundle.
        name: String,
        /// The archive to write (a tar file).
        file: PathBuf,
    },
    /// Install a bundle from an archive, checking the sha256 of every file.
    Import {
        /// The archive `labctl bundle export` wrote.
        file: PathBuf,
    },
    /// Fetch a lab's package sets for its guest OS release (apt-get, from the distribution's
    /// mirror) into a bundle, and sign its repository.
    Build(BundleBuildArgs),
    /// Add container images to a bundle from an OCI image layout or a `docker save` archive.
    AddImage(BundleAddImageArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BundleBuildArgs {
    /// Path to lab.toml, or to the directory that holds it [default: ./lab.toml].
    #[arg(long, value_name = "PATH")]
    pub(crate) lab: Option<PathBuf>,
    /// The bundle's name [default: the lab's `bundle`, else the lab's name].
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// The guest OS release, e.g. debian-12 [default: from the lab's box name].
    #[arg(long, value_name = "OS")]
    pub(crate) os: Option<String>,
    /// Also put the .deb files of DIR (and its subdirectories) in the repository.
    #[arg(long, value_name = "DIR")]
    pub(crate) from_dir: Vec<PathBuf>,
    /// Fetch nothing: only --from-dir packages (sets are judged by package names alone).
    #[arg(long)]
    pub(crate) offline: bool,
    /// The distribution mirror [default: http://deb.debian.org/debian].
    #[arg(long, value_name = "URL")]
    pub(crate) mirror: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BundleAddImageArgs {
    /// The bundle (made if it does not exist).
    pub(crate) name: String,
    /// An OCI image layout directory (oci-layout, index.json, blobs/).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "docker_archive",
        conflicts_with = "docker_archive"
    )]
    pub(crate) oci_layout: Option<PathBuf>,
    /// A `docker save` archive (images named by their RepoTags).
    #[arg(long, value_name = "FILE")]
    pub(crate) docker_archive: Option<PathBuf>,
    /// The image's full reference, when the layout names it by tag only
    /// (e.g. registry.k8s.io/pause:3.10).
    #[arg(long = "ref", value_name = "REF")]
    pub(crate) reference: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BundleServerArgs {
    /// Port on 127.0.0.1 (0: pick a free one).
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// Also write the port to this file once listening.
    #[arg(long, value_name = "FILE")]
    pub(crate) port_file: Option<PathBuf>,
}
