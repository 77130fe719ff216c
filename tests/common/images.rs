//! Images of chosen platforms and content for the pinning tests, pushed to a test
//! [`Registry`] with skopeo: a single-platform image (`push_image`) or a multi-platform index
//! (`push_index`, an OCI layout whose one entry is an image index of one manifest per
//! platform, pushed with `skopeo copy --all`). Each returns the digest the registry serves for
//! the tag, from `skopeo inspect --raw`. [`inspect_digest`] asks skopeo for the digest as it
//! reports it (`skopeo inspect --format {{.Digest}}`).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::json;

use super::registry::{PASSWORD, Registry, USER};

/// `(os, architecture, variant)`.
pub type Platform<'a> = (&'a str, &'a str, Option<&'a str>);

/// Writes `bytes` as a blob of the layout at `dir`; its digest and size.
fn blob(dir: &Path, bytes: &[u8]) -> (String, usize) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    std::fs::write(blobs.join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// One image manifest for `platform` with a layer holding `content`; its digest and size.
fn image(dir: &Path, content: &str, (os, architecture, variant): Platform<'_>) -> (String, usize) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "image.txt", content.as_bytes()).unwrap();
    let (layer, layer_size) = blob(dir, &tar.into_inner().unwrap());
    let mut config = json!({"architecture": architecture, "os": os, "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer]}});
    if let Some(variant) = variant {
        config["variant"] = json!(variant);
    }
    let (config, config_size) = blob(dir, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    blob(dir, manifest.to_string().as_bytes())
}

/// The layout's `index.json` naming `(media type, digest, size)` as `tag`.
fn tag(dir: &Path, media_type: &str, (digest, size): (String, usize), tag: &str) {
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type, "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Pushes a single-platform image of `content` as `repo:tag`; the digest the registry serves.
pub async fn push_image(
    registry: &Registry,
    repo: &str,
    tag_name: &str,
    content: &str,
    platform: Platform<'_>,
) -> String {
    let layout = tempfile::tempdir().unwrap();
    let manifest = image(layout.path(), content, platform);
    tag(layout.path(), "application/vnd.oci.image.manifest.v1+json", manifest, tag_name);
    copy(registry, layout.path(), repo, tag_name, false).await
}

/// Pushes an index of one image per platform (each its own content) as `repo:tag`; the index's
/// digest as the registry serves it.
pub async fn push_index(
    registry: &Registry,
    repo: &str,
    tag_name: &str,
    content: &str,
    platforms: &[Platform<'_>],
) -> String {
    let layout = tempfile::tempdir().unwrap();
    let entries: Vec<_> = platforms
        .iter()
        .map(|platform| {
            let (os, architecture, variant) = *platform;
            let (digest, size) = image(layout.path(), &format!("{content} {os}/{architecture}"), *platform);
            let mut entry = json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
                "platform": {"os": os, "architecture": architecture},
            });
            if let Some(variant) = variant {
                entry["platform"]["variant"] = json!(variant);
            }
            entry
        })
        .collect();
    let index =
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let index = blob(layout.path(), index.to_string().as_bytes());
    tag(layout.path(), "application/vnd.oci.image.index.v1+json", index, tag_name);
    copy(registry, layout.path(), repo, tag_name, true).await
}

/// `skopeo copy` of the layout's `tag` to `repo:tag` (`--all` for an index), then the digest
/// of what the registry serves for it.
async fn copy(registry: &Registry, layout: &Path, repo: &str, tag: &str, all: bool) -> String {
    let target = format!("docker://{}/{repo}:{tag}", registry.host());
    let source = format!("oci:{}:{tag}", layout.display());
    let cert_dir = registry.dir.path().join("certs.d");
    let ca = registry.ca_path();
    let creds = format!("{USER}:{PASSWORD}");
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new("skopeo");
        command.env("SSL_CERT_FILE", &ca).args(["copy", "--quiet", "--preserve-digests"]);
        if all {
            command.arg("--all");
        }
        let output = command
            .arg("--dest-cert-dir")
            .arg(&cert_dir)
            .args(["--dest-creds", &creds, &source, &target])
            .output()
            .unwrap();
        assert!(output.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&output.stderr));
        let raw = skopeo(&ca, &cert_dir, &creds, &["inspect", "--raw"], &target);
        let digest = ring::digest::digest(&ring::digest::SHA256, &raw);
        format!("sha256:{}", digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect::<String>())
    })
    .await
    .unwrap()
}

/// What `skopeo inspect` reports as the digest of `image` (`HOST/REPO:TAG` at `registry`).
pub async fn inspect_digest(registry: &Registry, image: &str) -> String {
    let (ca, cert_dir) = (registry.ca_path(), registry.dir.path().join("certs.d"));
    let target = format!("docker://{image}");
    tokio::task::spawn_blocking(move || {
        let creds = format!("{USER}:{PASSWORD}");
        let out = skopeo(&ca, &cert_dir, &creds, &["inspect", "--format", "{{.Digest}}"], &target);
        String::from_utf8(out).unwrap().trim().to_owned()
    })
    .await
    .unwrap()
}

fn skopeo(ca: &Path, cert_dir: &Path, creds: &str, args: &[&str], target: &str) -> Vec<u8> {
    let output = Command::new("skopeo")
        .env("SSL_CERT_FILE", ca)
        .args(args)
        .arg("--cert-dir")
        .arg(cert_dir)
        .args(["--creds", creds, target])
        .output()
        .unwrap();
    assert!(output.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}
