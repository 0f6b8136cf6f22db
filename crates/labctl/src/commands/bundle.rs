//! `labctl bundle ...` and the hidden `labctl __bundle-server`: wording for labctl-bundle.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use labctl_bundle::build::{BuildEvent, BuildOptions};
use labctl_bundle::{OsRelease, Store};

use crate::Result;
use crate::cli::{BundleCommand, BundleServerArgs};
use crate::errors::{ExpectedError, code};
use crate::output::Printer;

fn human(bytes: u64) -> String {
    let kib = bytes as f64 / 1024.0;
    if kib < 1024.0 {
        format!("{kib:.1} KiB")
    } else if kib < 1024.0 * 1024.0 {
        format!("{:.1} MiB", kib / 1024.0)
    } else {
        format!("{:.2} GiB", kib / 1024.0 / 1024.0)
    }
}

fn store() -> Store {
    Store::new(super::env().data_dir)
}

pub(crate) fn run(cmd: &BundleCommand, p: &Printer) -> Result<u8> {
    let store = store();
    match cmd {
        BundleCommand::List => {
            let all = store.list()?;
            if all.is_empty() {
                p.out("no bundles; make one with `labctl bundle build --lab PATH` or `labctl bundle import FILE`");
            }
            for b in all {
                let sets: Vec<String> = b
                    .sets
                    .iter()
                    .map(|(n, complete)| {
                        format!(
                            "{n} ({})",
                            if *complete { "complete" } else { "incomplete" }
                        )
                    })
                    .collect();
                p.out(format!(
                    "{:<16} {:<12} {:>10}  {} image(s)  sets: {}",
                    b.name,
                    b.os.join(","),
                    human(b.bytes),
                    b.images,
                    if sets.is_empty() {
                        "none".into()
                    } else {
                        sets.join(", ")
                    }
                ));
            }
        }
        BundleCommand::Show { name } => show(&store, name, p)?,
        BundleCommand::Remove { name } => {
            store.remove(name)?;
            p.out(format!("removed bundle {name}"));
        }
        BundleCommand::Export { name, file } => {
            let size = labctl_bundle::archive::export(&store, name, file)?;
            p.out(format!(
                "exported bundle {name} to {} ({}); `labctl bundle import {}` installs it on another host",
                file.display(),
                human(size),
                file.display()
            ));
        }
        BundleCommand::Import { file } => {
            let m = labctl_bundle::archive::import(&store, file)?;
            p.out(format!(
                "imported bundle {} ({} files, every sha256 checked)",
                m.name,
                m.files.len()
            ));
        }
        BundleCommand::Build(a) => build(&store, a, p)?,
        BundleCommand::AddImage(a) => {
            let source = a
                .oci_layout
                .clone()
                .or_else(|| a.docker_archive.clone())
                .unwrap_or_default();
            let reference = match &a.reference {
                Some(r) => Some(labctl_spec::ImageRef::parse(r).ok_or_else(|| {
                    labctl_bundle::Error::BadLayout {
                        path: source.clone(),
                        reason: format!("`{r}` is not an image reference"),
                    }
                })?),
                None => None,
            };
            let added = if a.docker_archive.is_some() {
                labctl_bundle::build::add_image_docker_archive(
                    &store,
                    &a.name,
                    &source,
                    reference.as_ref(),
                )?
            } else {
                labctl_bundle::build::add_image_layout(
                    &store,
                    &a.name,
                    &source,
                    reference.as_ref(),
                )?
            };
            for i in added {
                p.out(format!(
                    "added {} ({}) to bundle {}",
                    i.reference, i.digest, a.name
                ));
            }
        }
    }
    Ok(code::OK)
}

fn show(store: &Store, name: &str, p: &Printer) -> Result<()> {
    let m = store.load(name)?;
    let sum = store.summary(name)?;
    p.out(format!(
        "bundle {} (created {}): {} files, {}",
        m.name,
        m.created,
        sum.files,
        human(sum.bytes)
    ));
    p.out("guest OS releases:");
    if m.os.is_empty() {
        p.out("  none");
    }
    for o in &m.os {
        p.out(format!(
            "  {}-{} ({}, {}): deb [signed-by=/etc/apt/keyrings/labctl-bundle.asc] http://ADDR/b/{}/{} labctl main",
            o.family, o.release, o.suite, o.arch, m.name, o.repo
        ));
    }
    p.out("package sets:");
    if m.sets.is_empty() {
        p.out("  none");
    }
    for (set, by_os) in &m.sets {
        for (os, e) in by_os {
            let state = if e.complete { "complete" } else { "incomplete" };
            p.out(format!(
                "  {set} for {os}: {state}; {}",
                if e.packages.is_empty() {
                    "no packages".to_string()
                } else {
                    e.packages.join(", ")
                }
            ));
            for miss in &e.missing {
                p.out(format!("    missing {}: {}", miss.name, miss.reason));
            }
        }
    }
    p.out("images:");
    if m.images.is_empty() && m.missing_images.is_empty() {
        p.out("  none");
    }
    for i in &m.images {
        p.out(format!("  {} {}", i.reference, i.digest));
    }
    for i in &m.missing_images {
        p.out(format!("  missing {}: {}", i.name, i.reason));
    }
    Ok(())
}

fn build(store: &Store, a: &crate::cli::BundleBuildArgs, p: &Printer) -> Result<()> {
    let lab_args = crate::cli::LabArgs {
        lab: a.lab.clone(),
        workers: None,
        no_egress: false,
        accel: None,
        uri: None,
        bundle: None,
        port_offset: None,
    };
    let lab = super::load_lab(&lab_args)?;
    let name = a
        .name
        .clone()
        .or_else(|| lab.bundle.clone())
        .unwrap_or_else(|| lab.name.clone());
    let os = match &a.os {
        Some(o) => OsRelease::parse(o),
        None => OsRelease::of_lab(&lab),
    }
    .ok_or_else(|| ExpectedError::UnknownRelease {
        box_name: a.os.clone().unwrap_or_else(|| lab.box_name.clone()),
        known: OsRelease::known(),
    })?;
    let opts = BuildOptions {
        name: name.clone(),
        os,
        sets: lab.package_sets.clone(),
        images: lab.images.clone(),
        from_dirs: a.from_dir.clone(),
        offline: a.offline,
        cache_dir: super::env().cache_dir.join("bundle"),
        mirror: a.mirror.clone(),
    };
    let started = std::time::Instant::now();
    let mut on = |e: BuildEvent| match e {
        BuildEvent::Updating { sources } => {
            p.info(format!(
                "reading package indices ({} sources)",
                sources.len()
            ));
        }
        BuildEvent::Resolving { set } => p.info(format!("{set}: resolving dependencies")),
        BuildEvent::Downloading {
            set,
            packages,
            cached,
        } => p.info(format!(
            "{set}: {packages} packages ({cached} already downloaded)"
        )),
        BuildEvent::SetDone {
            set,
            complete,
            debs,
            bytes,
        } => p.info(format!(
            "{set}: {} ({debs} packages, {})",
            if complete { "complete" } else { "incomplete" },
            human(bytes)
        )),
        BuildEvent::ImageMissing { reference, .. } => {
            p.info(format!("image {reference}: not fetched"));
        }
        BuildEvent::FromDir { dir, debs } => {
            p.info(format!("{}: {debs} packages", dir.display()));
        }
        BuildEvent::Signing => p.info("writing and signing the repository"),
        BuildEvent::MirrorUnreachable { reason } => p.info(format!(
            "the distribution mirror could not be read ({reason}); keeping what the bundle has"
        )),
    };
    let r = labctl_bundle::build::build(store, &opts, &mut on)?;
    let secs = started.elapsed().as_secs_f64();
    p.out(format!(
        "bundle {} for {}: {} files, {} ({} downloaded now), {secs:.1} s",
        r.name,
        r.os,
        r.files,
        human(r.bytes),
        human(r.downloaded)
    ));
    for s in &r.sets {
        p.out(format!(
            "  set {}: {} - {} packages, {}",
            s.name,
            if s.complete { "complete" } else { "INCOMPLETE" },
            s.debs,
            human(s.bytes)
        ));
        for m in &s.missing {
            p.out(format!("    missing {}: {}", m.name, m.reason));
        }
    }
    p.out(format!("  images: {} held", r.images));
    for m in &r.missing_images {
        p.out(format!("    missing {}: {}", m.name, m.reason));
    }
    Ok(())
}

/// `labctl __bundle-server --port P`: serve every bundle on 127.0.0.1 until killed; the port
/// goes to stdout (one line) and to `--port-file`.
pub(crate) fn server(a: &BundleServerArgs, _p: &Printer) -> Result<u8> {
    let listener = labctl_bundle::server::bind_loopback(a.port)?;
    let port = listener
        .local_addr()
        .map_err(|source| ExpectedError::Write {
            path: "bundle server address".into(),
            source,
        })?
        .port();
    if let Some(f) = &a.port_file {
        std::fs::write(f, format!("{port}\n")).map_err(|source| ExpectedError::Write {
            path: f.clone(),
            source,
        })?;
    }
    {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{port}");
        let _ = o.flush();
    }
    labctl_bundle::server::serve(
        listener,
        super::env().data_dir,
        Arc::new(AtomicBool::new(false)),
    )?;
    Ok(code::OK)
}
