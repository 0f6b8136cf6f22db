//! `[lab] bundle`, `[[package_set]]`, `[images]` and the steps' `packages`: what a lab installs,
//! for building and attaching a bundle (docs/bundle.md).

use std::collections::BTreeMap;

use crate::error::{Sink, suggest};
use crate::model::{Family, ImageRef, PackageSet, Repository};
use crate::parse::RawLab;

/// A bundle name, also a directory name: 1-64 lowercase letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit (so never `.` or `..`).
pub fn bundle_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// A package name as apt and dnf write them, optionally pinned (`kubelet=1.35.4-*`).
fn package_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-=*:~".contains(c))
}

fn set_name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && s.len() <= 64
}

fn http_url_ok(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() > "https://".len()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub(crate) fn build(
    raw: &RawLab,
    sink: &mut Sink<'_>,
) -> (Option<String>, Vec<PackageSet>, Vec<ImageRef>) {
    let bundle = raw.bundle.as_ref().and_then(|b| {
        if bundle_name_ok(&b.v) {
            Some(b.v.clone())
        } else {
            sink.hint(
                &b.span,
                "lab.bundle",
                format!("`{}` is not a valid bundle name", b.v),
                "use 1-64 lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit",
            );
            None
        }
    });

    let mut sets: Vec<PackageSet> = Vec::new();
    for rs in &raw.package_sets {
        let Some(name) = &rs.name else {
            sink.hint(
                &rs.span,
                &rs.path,
                "missing `name`",
                "name the set, e.g. name = \"runtime\", and refer to it from a step's `packages`",
            );
            continue;
        };
        if !set_name_ok(&name.v) {
            sink.at(
                &name.span,
                &format!("{}.name", rs.path),
                format!(
                    "`{}` is not a valid package set name: a letter, then letters, digits, `_` or `-`",
                    name.v
                ),
            );
            continue;
        }
        if sets.iter().any(|s| s.name == name.v) {
            sink.at(
                &name.span,
                &format!("{}.name", rs.path),
                format!("package set `{}` is defined twice", name.v),
            );
            continue;
        }
        let mut packages = BTreeMap::new();
        for (fam, names) in &rs.families {
            let Some(family) = Family::parse(&fam.v) else {
                continue;
            };
            let mut list: Vec<String> = Vec::new();
            for (i, n) in names.iter().enumerate() {
                if !package_ok(&n.v) {
                    sink.at(
                        &n.span,
                        &format!("{}.{}[{i}]", rs.path, fam.v),
                        format!("`{}` is not a package name", n.v),
                    );
                } else if !list.contains(&n.v) {
                    list.push(n.v.clone());
                }
            }
            packages.insert(family, list);
        }
        if rs.families.is_empty() {
            sink.hint(
                &name.span,
                &rs.path,
                format!("package set `{}` lists no packages", name.v),
                "add the packages per OS family, e.g. debian = [\"containerd\", \"runc\"]",
            );
        }
        let mut repositories = Vec::new();
        for rr in &rs.repositories {
            let family = match &rr.family {
                Some(f) => match Family::parse(&f.v) {
                    Some(fam) => Some(fam),
                    None => {
                        let hint = suggest(&f.v, Family::ALL.iter().map(|f| f.as_str()))
                            .map_or_else(
                                || "expected one of: debian, ubuntu, rocky".to_string(),
                                |s| format!("did you mean `{s}`?"),
                            );
                        sink.hint(
                            &f.span,
                            &format!("{}.family", rr.path),
                            format!("unknown OS family `{}`", f.v),
                            hint,
                        );
                        None
                    }
                },
                None => {
                    sink.hint(
                        &rr.span,
                        &rr.path,
                        "missing `family`",
                        "the OS family this repository is for: debian, ubuntu or rocky",
                    );
                    None
                }
            };
            let url = match &rr.url {
                Some(u) if http_url_ok(&u.v) => Some(u.v.clone()),
                Some(u) => {
                    sink.at(
                        &u.span,
                        &format!("{}.url", rr.path),
                        format!("`{}` is not an http:// or https:// URL", u.v),
                    );
                    None
                }
                None => {
                    sink.at(&rr.span, &rr.path, "missing `url`");
                    None
                }
            };
            if let Some(k) = &rr.key
                && !http_url_ok(&k.v)
            {
                sink.at(
                    &k.span,
                    &format!("{}.key", rr.path),
                    format!("`{}` is not an http:// or https:// URL", k.v),
                );
            }
            let suite = match &rr.suite {
                Some(s) if !s.v.is_empty() && !s.v.contains(char::is_whitespace) => {
                    Some(s.v.clone())
                }
                Some(s) => {
                    sink.at(
                        &s.span,
                        &format!("{}.suite", rr.path),
                        "a suite is one word, or \"/\" for a flat repository",
                    );
                    None
                }
                None if family == Some(Family::Rocky) => Some(String::new()),
                None => {
                    sink.hint(
                        &rr.span,
                        &rr.path,
                        "missing `suite`",
                        "write suite = \"/\" for a flat repository, or the suite name",
                    );
                    None
                }
            };
            if let (Some(family), Some(url), Some(suite)) = (family, url, suite) {
                repositories.push(Repository {
                    family,
                    url,
                    suite,
                    components: rr.components.iter().map(|c| c.v.clone()).collect(),
                    key: rr.key.as_ref().map(|k| k.v.clone()),
                });
            }
        }
        sets.push(PackageSet {
            name: name.v.clone(),
            packages,
            repositories,
        });
    }

    let mut images: Vec<ImageRef> = Vec::new();
    for (i, r) in raw.images.iter().enumerate() {
        match ImageRef::parse(&r.v) {
            Some(img) if !images.contains(&img) => images.push(img),
            Some(_) => {}
            None => sink.hint(
                &r.span,
                &format!("images.refs[{i}]"),
                format!("`{}` is not an image reference", r.v),
                "write REGISTRY/REPOSITORY:TAG, e.g. registry.k8s.io/pause:3.10",
            ),
        }
    }

    // Steps name a set.
    let names: Vec<&str> = raw
        .package_sets
        .iter()
        .filter_map(|s| s.name.as_ref().map(|n| n.v.as_str()))
        .collect();
    for role in &raw.roles {
        for st in &role.steps {
            let Some(p) = &st.packages else { continue };
            if names.contains(&p.v.as_str()) {
                continue;
            }
            let hint = match suggest(&p.v, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if names.is_empty() => {
                    "define it with [[package_set]] name = \"...\"".to_string()
                }
                None => format!("defined sets: {}", names.join(", ")),
            };
            sink.hint(
                &p.span,
                &format!("{}.packages", st.path),
                format!("no package set named `{}`", p.v),
                hint,
            );
        }
    }
    (bundle, sets, images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_normalize() {
        let r = ImageRef::parse("registry.k8s.io/pause:3.10").unwrap();
        assert_eq!(r.registry, "registry.k8s.io");
        assert_eq!(r.repository, "pause");
        assert_eq!(r.tag.as_deref(), Some("3.10"));
        assert_eq!(r.to_string(), "registry.k8s.io/pause:3.10");
        assert_eq!(
            ImageRef::parse("busybox").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            ImageRef::parse("quay.io/calico/node:v3.31.3")
                .unwrap()
                .repository,
            "calico/node"
        );
        let l = ImageRef::parse("localhost:5000/x/y").unwrap();
        assert_eq!(
            (l.registry.as_str(), l.tag.as_deref()),
            ("localhost:5000", Some("latest"))
        );
        let d = format!("a/b@sha256:{}", "0".repeat(64));
        let d = ImageRef::parse(&d).unwrap();
        assert_eq!((d.tag, d.registry.as_str()), (None, "docker.io"));
        for bad in [
            "",
            "a b",
            "Upper/x",
            "x:",
            "x@sha256:12",
            "reg.io/../x",
            "x:-t",
        ] {
            assert!(ImageRef::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bundle_names() {
        assert!(bundle_name_ok("k8s"));
        assert!(bundle_name_ok("k8s-1.35_a"));
        for bad in ["", ".", "..", "-x", "A", "a/b", &"x".repeat(65)] {
            assert!(!bundle_name_ok(bad), "{bad}");
        }
    }
}
