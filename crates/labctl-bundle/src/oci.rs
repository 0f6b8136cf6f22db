//! The bundle's image store: an OCI image layout in `oci/` (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`).
//!
//! labctl convention: every manifest in `index.json` carries the annotation
//! `org.opencontainers.image.ref.name` set to the image's FULL reference
//! (`registry.k8s.io/pause:3.10`), not only the tag, so that one layout holds images of
//! several registries and the server can answer `/v2/<repo>/manifests/<tag>?ns=<registry>`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use labctl_spec::ImageRef;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::manifest::{ImageEntry, hex, write_atomic};
use crate::{Error, Result, io};

pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Largest manifest or index read into memory.
const MAX_MANIFEST: u64 = 4 << 20;

/// `sha256:<64 lowercase hex>` → the hex.
pub fn digest_hex(d: &str) -> Option<&str> {
    let h = d.strip_prefix("sha256:")?;
    (h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(h)
}

pub fn blob_path(layout: &Path, digest: &str) -> Option<PathBuf> {
    digest_hex(digest).map(|h| layout.join("blobs/sha256").join(h))
}

fn read_json(path: &Path, layout: &Path) -> Result<Value> {
    let f = std::fs::File::open(path).map_err(io("read", path))?;
    let mut bytes = Vec::new();
    f.take(MAX_MANIFEST)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::BadLayout {
        path: layout.to_path_buf(),
        reason: format!("{}: {e}", path.display()),
    })
}

/// Copy blob `digest` (of `size` bytes, when known) from layout `src` to `dst`, verifying it.
fn copy_blob(src: &Path, dst: &Path, digest: &str, size: Option<u64>) -> Result<()> {
    let bad = || Error::BlobDigest {
        digest: digest.to_string(),
    };
    let from = blob_path(src, digest).ok_or_else(bad)?;
    let to = blob_path(dst, digest).ok_or_else(bad)?;
    if to.is_file() {
        return Ok(());
    }
    let dir = to.parent().unwrap_or(dst);
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let mut input = std::fs::File::open(&from).map_err(|_| Error::BadLayout {
        path: src.to_path_buf(),
        reason: format!("blob {digest} is missing"),
    })?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create a file in", dir))?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = input.read(&mut buf).map_err(io("read", &from))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
        tmp.write_all(&buf[..k]).map_err(io("write", &to))?;
    }
    if format!("sha256:{}", hex(&h.finalize())) != digest || size.is_some_and(|s| s != n) {
        return Err(bad());
    }
    tmp.persist(&to).map_err(|e| io("write", &to)(e.error))?;
    Ok(())
}

fn descriptor(v: &Value) -> Option<(String, Option<u64>, String)> {
    let d = v.get("digest")?.as_str()?.to_string();
    digest_hex(&d)?;
    let size = v.get("size").and_then(Value::as_u64);
    let mt = v
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    Some((d, size, mt))
}

/// Copy a manifest or index and everything it references.
fn copy_tree(src: &Path, dst: &Path, digest: &str, size: Option<u64>, depth: u8) -> Result<()> {
    copy_blob(src, dst, digest, size)?;
    let path = blob_path(dst, digest).ok_or_else(|| Error::BlobDigest {
        digest: digest.to_string(),
    })?;
    let v = read_json(&path, src)?;
    let bad = |reason: &str| Error::BadLayout {
        path: src.to_path_buf(),
        reason: format!("{digest}: {reason}"),
    };
    let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if INDEX_TYPES.contains(&mt) || (mt.is_empty() && v.get("manifests").is_some()) {
        if depth > 2 {
            return Err(bad("indexes nested too deep"));
        }
        for m in v["manifests"]
            .as_array()
            .ok_or_else(|| bad("no manifests"))?
        {
            let (d, s, _) = descriptor(m).ok_or_else(|| bad("bad descriptor"))?;
            copy_tree(src, dst, &d, s, depth + 1)?;
        }
    } else {
        let config = v.get("config").ok_or_else(|| bad("no config"))?;
        let (d, s, _) = descriptor(config).ok_or_else(|| bad("bad config descriptor"))?;
        copy_blob(src, dst, &d, s)?;
        for l in v["layers"].as_array().ok_or_else(|| bad("no layers"))? {
            let (d, s, _) = descriptor(l).ok_or_else(|| bad("bad layer descriptor"))?;
            copy_blob(src, dst, &d, s)?;
        }
    }
    Ok(())
}

fn load_index(layout: &Path) -> Result<Value> {
    let p = layout.join("index.json");
    if p.is_file() {
        read_json(&p, layout)
    } else {
        Ok(
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}),
        )
    }
}

/// Add the images of OCI layout `src` to the bundle's layout `dst` (`<bundle>/oci`), every
/// blob verified against its digest and size. `reference` names the image when the layout
/// holds one and its annotation is only a tag (as `skopeo`/`buildah` write it).
pub fn add_layout(dst: &Path, src: &Path, reference: Option<&ImageRef>) -> Result<Vec<ImageEntry>> {
    let bad = |reason: String| Error::BadLayout {
        path: src.to_path_buf(),
        reason,
    };
    let layout: Value = read_json(&src.join("oci-layout"), src)?;
    if layout
        .get("imageLayoutVersion")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(bad("oci-layout has no imageLayoutVersion".into()));
    }
    let index = load_index(src)?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| bad("index.json has no manifests".into()))?;
    if manifests.is_empty() {
        return Err(bad("index.json lists no image".into()));
    }
    if reference.is_some() && manifests.len() != 1 {
        return Err(bad(format!(
            "--ref names one image but the layout holds {}",
            manifests.len()
        )));
    }
    std::fs::create_dir_all(dst).map_err(io("create", dst))?;
    let mut added = Vec::new();
    let mut dst_index = load_index(dst)?;
    for m in manifests {
        let (digest, size, media_type) =
            descriptor(m).ok_or_else(|| bad("index.json has a bad descriptor".into()))?;
        let ann = m.get("annotations");
        let short = ann
            .and_then(|a| a.get(REF_ANNOTATION))
            .and_then(Value::as_str);
        // `docker save` (25+) writes the full name in containerd's annotation.
        let name = match ann
            .and_then(|a| a.get(CONTAINERD_NAME))
            .and_then(Value::as_str)
        {
            Some(full) if !short.is_some_and(|s| s.contains('/')) => Some(full),
            _ => short,
        };
        let r = match (reference, name) {
            (Some(r), _) => r.clone(),
            (None, Some(n)) if n.contains('/') => {
                ImageRef::parse(n).ok_or_else(|| bad(format!("`{n}` is not an image reference")))?
            }
            (None, Some(n)) => {
                return Err(bad(format!(
                    "the image is named only `{n}`: give its full reference with --ref"
                )));
            }
            (None, None) => {
                return Err(bad(format!(
                    "{digest} has no {REF_ANNOTATION} annotation: give its reference with --ref"
                )));
            }
        };
        copy_tree(src, dst, &digest, size, 0)?;
        let full = r.to_string();
        let list = dst_index["manifests"]
            .as_array_mut()
            .ok_or_else(|| bad("the bundle's index.json is damaged".into()))?;
        list.retain(|e| e["annotations"][REF_ANNOTATION].as_str() != Some(full.as_str()));
        let mut desc = m.clone();
        desc["annotations"] = json!({ REF_ANNOTATION: full });
        list.push(desc);
        added.push(ImageEntry {
            reference: full,
            digest,
            media_type,
        });
    }
    write_atomic(
        &dst.join("oci-layout"),
        b"{\"imageLayoutVersion\":\"1.0.0\"}\n",
    )?;
    let mut text = serde_json::to_vec_pretty(&dst_index).map_err(|e| bad(e.to_string()))?;
    text.push(b'\n');
    write_atomic(&dst.join("index.json"), &text)?;
    Ok(added)
}

/// Turn a `docker save` archive into an OCI image layout in `out` (an empty directory). A
/// Docker 25+ archive already is a layout; an older one (`manifest.json` with `Config`,
/// `RepoTags`, `Layers`) gets an OCI manifest per tag made from its config and layers,
/// every blob hashed here. Returns nothing: the layout is then added with [`add_layout`].
pub fn docker_archive_to_layout(archive: &Path, out: &Path) -> Result<()> {
    let bad = |reason: String| Error::BadLayout {
        path: archive.to_path_buf(),
        reason,
    };
    let raw = out.join("raw");
    std::fs::create_dir_all(&raw).map_err(io("create", &raw))?;
    let f = std::fs::File::open(archive).map_err(io("read", archive))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    for e in ar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?
    {
        let mut e = e.map_err(|e| bad(format!("damaged tar archive: {e}")))?;
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let kind = e.header().entry_type();
        let rel = crate::manifest::safe_relative(path.trim_start_matches("./"))
            .ok_or_else(|| Error::UnsafePath(path.clone()))?;
        let dest = raw.join(rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io("create", &dest))?;
        } else if kind.is_file() {
            if let Some(p) = dest.parent() {
                std::fs::create_dir_all(p).map_err(io("create", p))?;
            }
            let mut w = std::fs::File::create(&dest).map_err(io("write", &dest))?;
            std::io::copy(&mut e, &mut w).map_err(io("write", &dest))?;
        } else if kind.is_symlink() {
            // Old archives link identical layers; the manifest names the real file too.
            continue;
        } else {
            return Err(Error::UnsafePath(path));
        }
    }
    let layout = out.join("layout");
    if raw.join("oci-layout").is_file() && raw.join("index.json").is_file() {
        std::fs::rename(&raw, &layout).map_err(io("write", &layout))?;
        return Ok(());
    }
    let manifest = read_json(&raw.join("manifest.json"), archive)?;
    let entries = manifest
        .as_array()
        .ok_or_else(|| bad("manifest.json is not a list".into()))?;
    let mut index = Vec::new();
    let put = |bytes_path: &Path| -> Result<(String, u64, bool)> {
        let mut f = std::fs::File::open(bytes_path)
            .map_err(|_| bad(format!("{} is missing", bytes_path.display())))?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut head = [0u8; 2];
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = f.read(&mut buf).map_err(io("read", bytes_path))?;
            if k == 0 {
                break;
            }
            if n == 0 && k >= 2 {
                head.copy_from_slice(&buf[..2]);
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        let digest = format!("sha256:{}", hex(&h.finalize()));
        let dest = blob_path(&layout, &digest).ok_or_else(|| bad("digest".into()))?;
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(io("create", p))?;
        }
        if !dest.exists() {
            std::fs::copy(bytes_path, &dest).map_err(io("copy", bytes_path))?;
        }
        Ok((digest, n, head == [0x1f, 0x8b]))
    };
    for e in entries {
        let file = |v: &Value| -> Result<PathBuf> {
            let s = v
                .as_str()
                .ok_or_else(|| bad("manifest.json: a path is not a string".into()))?;
            crate::manifest::safe_relative(s)
                .map(|r| raw.join(r))
                .ok_or_else(|| Error::UnsafePath(s.to_string()))
        };
        let (cd, cs, _) = put(&file(&e["Config"])?)?;
        let mut layers = Vec::new();
        for l in e["Layers"]
            .as_array()
            .ok_or_else(|| bad("manifest.json: no Layers".into()))?
        {
            let (d, n, gz) = put(&file(l)?)?;
            let mt = if gz {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            layers.push(json!({"mediaType": mt, "digest": d, "size": n}));
        }
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": layers,
        })
        .to_string();
        let mp = out.join("manifest.tmp");
        std::fs::write(&mp, &m).map_err(io("write", &mp))?;
        let (md, ms, _) = put(&mp)?;
        let tags: Vec<String> = e["RepoTags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if tags.is_empty() {
            index.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}));
        }
        for t in tags {
            let full = ImageRef::parse(&t).map_or(t.clone(), |r| r.to_string());
            index.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                "annotations": {REF_ANNOTATION: full}}));
        }
    }
    write_atomic(
        &layout.join("oci-layout"),
        b"{\"imageLayoutVersion\":\"1.0.0\"}\n",
    )?;
    let idx = json!({"schemaVersion": 2, "manifests": index}).to_string();
    write_atomic(&layout.join("index.json"), idx.as_bytes())?;
    Ok(())
}

/// Every image of a layout: (full reference, digest, media type).
pub fn images(layout: &Path) -> Result<Vec<ImageEntry>> {
    if !layout.join("index.json").is_file() {
        return Ok(Vec::new());
    }
    let index = load_index(layout)?;
    Ok(index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let (digest, _, media_type) = descriptor(m)?;
            let reference = m["annotations"][REF_ANNOTATION].as_str()?.to_string();
            Some(ImageEntry {
                reference,
                digest,
                media_type,
            })
        })
        .collect())
}

/// A manifest found for a pull: its bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct Found {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// Answer `/v2/<repo>/manifests/<reference>` (`ns`: the registry containerd asks for).
/// By tag: the image of that registry (or, without `ns`, the only one of that repository
/// and tag). By digest: any manifest or index blob the layout holds.
pub fn find_manifest(
    layout: &Path,
    ns: Option<&str>,
    repo: &str,
    reference: &str,
) -> Option<Found> {
    let digest = if digest_hex(reference).is_some() {
        reference.to_string()
    } else {
        let imgs = images(layout).ok()?;
        let matches: Vec<ImageEntry> = imgs
            .into_iter()
            .filter(|e| {
                ImageRef::parse(&e.reference).is_some_and(|r| {
                    r.repository == repo
                        && r.tag.as_deref() == Some(reference)
                        && ns.is_none_or(|n| r.registry == n)
                })
            })
            .collect();
        match matches.as_slice() {
            [one] => one.digest.clone(),
            _ => return None,
        }
    };
    let path = blob_path(layout, &digest)?;
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_MANIFEST {
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let media_type = v.get("mediaType").and_then(Value::as_str).map_or_else(
        || {
            if v.get("manifests").is_some() {
                INDEX_TYPES[0].to_string()
            } else {
                "application/vnd.oci.image.manifest.v1+json".to_string()
            }
        },
        str::to_string,
    );
    // Only manifests and indexes are answered here, never a config or layer blob.
    if v.get("schemaVersion").is_none()
        || (v.get("layers").is_none() && v.get("manifests").is_none())
    {
        return None;
    }
    Some(Found {
        bytes,
        media_type,
        digest,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::sha256_bytes;

    fn put(layout: &Path, bytes: &[u8]) -> (String, u64) {
        let d = format!("sha256:{}", sha256_bytes(bytes));
        let p = blob_path(layout, &d).unwrap();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        (d, bytes.len() as u64)
    }

    /// A one-layer image layout; the layer is a tar with `/marker`.
    pub(crate) fn make_layout(dir: &Path, ref_name: &str, marker: &str) -> (String, Vec<u8>) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}").unwrap();
        let mut layer = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(marker.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        layer
            .append_data(&mut h, "marker", marker.as_bytes())
            .unwrap();
        let layer = layer.into_inner().unwrap();
        let (ld, ls) = put(dir, &layer);
        let config =
            json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[ld]}})
                .to_string();
        let (cd, cs) = put(dir, config.as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cs},
            "layers": [{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":ld,"size":ls}]
        })
        .to_string();
        let (md, ms) = put(dir, manifest.as_bytes());
        let index = json!({"schemaVersion":2,"manifests":[{
            "mediaType":"application/vnd.oci.image.manifest.v1+json","digest":md,"size":ms,
            "annotations":{REF_ANNOTATION: ref_name}}]});
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        (md, manifest.into_bytes())
    }

    #[test]
    fn add_and_find() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let (md, mbytes) = make_layout(&src, "example.invalid/lab/hello:1.0", "hi");
        let dst = d.path().join("oci");
        let added = add_layout(&dst, &src, None).unwrap();
        assert_eq!(added[0].reference, "example.invalid/lab/hello:1.0");
        assert_eq!(added[0].digest, md);
        let f = find_manifest(&dst, Some("example.invalid"), "lab/hello", "1.0").unwrap();
        assert_eq!((f.bytes, f.digest.as_str()), (mbytes, md.as_str()));
        assert_eq!(f.media_type, "application/vnd.oci.image.manifest.v1+json");
        assert!(find_manifest(&dst, None, "lab/hello", "1.0").is_some());
        assert!(find_manifest(&dst, Some("docker.io"), "lab/hello", "1.0").is_none());
        assert!(find_manifest(&dst, None, "lab/hello", &md).is_some());
        assert!(find_manifest(&dst, None, "lab/hello", "2.0").is_none());
        // Re-adding the same reference replaces it rather than listing it twice.
        add_layout(&dst, &src, None).unwrap();
        assert_eq!(images(&dst).unwrap().len(), 1);
    }

    #[test]
    fn a_tampered_blob_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        make_layout(&src, "example.invalid/x:1", "hi");
        // Corrupt the layer (the largest blob that is not JSON).
        for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            if b.first() != Some(&b'{') {
                let mut b = b;
                b[0] ^= 1;
                std::fs::write(&p, b).unwrap();
            }
        }
        let err = add_layout(&d.path().join("oci"), &src, None).unwrap_err();
        assert!(matches!(err, Error::BlobDigest { .. }), "{err}");
    }

    #[test]
    fn a_docker_save_archive_becomes_images() {
        let d = tempfile::tempdir().unwrap();
        // The pre-25 `docker save` format: manifest.json, config, one layer.tar per layer.
        let mut layer = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        layer.append_data(&mut h, "marker", &b"hi"[..]).unwrap();
        let layer = layer.into_inner().unwrap();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let manifest = br#"[{"Config":"cfg.json","RepoTags":["busybox:lab","example.invalid/x/y:2"],"Layers":["abc/layer.tar"]}]"#;
        let mut ar = tar::Builder::new(Vec::new());
        for (p, b) in [
            ("manifest.json", &manifest[..]),
            ("cfg.json", &config[..]),
            ("abc/layer.tar", layer.as_slice()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(b.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            ar.append_data(&mut h, p, b).unwrap();
        }
        let archive = d.path().join("img.tar");
        std::fs::write(&archive, ar.into_inner().unwrap()).unwrap();
        let work = d.path().join("work");
        docker_archive_to_layout(&archive, &work).unwrap();
        let dst = d.path().join("oci");
        let added = add_layout(&dst, &work.join("layout"), None).unwrap();
        let refs: Vec<&str> = added.iter().map(|a| a.reference.as_str()).collect();
        assert_eq!(
            refs,
            ["docker.io/library/busybox:lab", "example.invalid/x/y:2"]
        );
        let f = find_manifest(&dst, Some("docker.io"), "library/busybox", "lab").unwrap();
        let m: Value = serde_json::from_slice(&f.bytes).unwrap();
        let ld = m["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(std::fs::read(blob_path(&dst, ld).unwrap()).unwrap(), layer);
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar"
        );
        // A path that leaves the archive is refused.
        let mut ar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        ar.append(&h, &b"x"[..]).unwrap();
        std::fs::write(&archive, ar.into_inner().unwrap()).unwrap();
        let err = docker_archive_to_layout(&archive, &d.path().join("work2")).unwrap_err();
        assert!(matches!(err, Error::UnsafePath(_)), "{err}");
        assert!(!d.path().join("escape").exists());
    }

    #[test]
    fn a_bare_tag_needs_a_reference() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        make_layout(&src, "1.0", "hi");
        let err = add_layout(&d.path().join("oci"), &src, None).unwrap_err();
        assert!(err.to_string().contains("--ref"), "{err}");
        let r = ImageRef::parse("example.invalid/y:2").unwrap();
        let added = add_layout(&d.path().join("oci"), &src, Some(&r)).unwrap();
        assert_eq!(added[0].reference, "example.invalid/y:2");
    }
}
