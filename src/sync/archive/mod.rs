//! The offline archive of `sync --to-archive FILE` and `sync --from-archive FILE`: one OCI
//! image layout inside a tar, so an air-gapped mirror is filled from what a connected machine
//! copied, by the same engine: [`write::ArchiveWriter`] is a [`super::Destination`] (the
//! connected side), [`read::ArchiveSource`] a [`super::Source`] (the disconnected side).
//!
//! The tar holds, in this order: `oci-layout`; `blobs/sha256/HEX` for every blob and manifest,
//! each once however many images share it; `index.json`; and `SHA256SUMS` (`sha256sum -c`
//! format, every other file of the tar). `index.json` names each image copied by its source
//! reference, in [`REF_NAME`] (what `skopeo copy oci-archive:FILE:REF` matches) and
//! [`SOURCE`] (the image a `--from-archive` run copies and applies its rules to); the tags that
//! came along (cosign's `sha256-HEX.sig`…) have [`REF_NAME`] alone, as `HOST/REPO:TAG`, and
//! referrers copied by digest carry [`SUBJECT`]. Next to the tar, `FILE.sha256` holds the
//! whole tar's SHA-256 for checking a transfer.

pub mod read;
pub mod write;

use serde::{Deserialize, Serialize};

use super::name::Image;

/// The OCI annotation `skopeo`, `oras` and containerd read as an entry's reference.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The source reference of an image `sync` copied (an entry a `--from-archive` run copies).
pub const SOURCE: &str = "io.mirrorswap.source";
/// The manifest a referrer refers to (OCI 1.1 `subject`).
pub const SUBJECT: &str = "io.mirrorswap.subject";
/// The checksum list inside the tar.
pub const SUMS: &str = "SHA256SUMS";
/// `oci-layout`'s content.
pub const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The most bytes `index.json` or `SHA256SUMS` may have.
pub const MAX_INDEX: u64 = 64 << 20;

/// `index.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub manifests: Vec<Entry>,
}

/// An entry of `index.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Entry {
    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

/// `blobs/sha256/HEX` of `sha256:HEX`.
pub fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// Where a tag of `image`'s repository is found: `HOST/REPOSITORY:TAG`.
pub fn tag_name(image: &Image, tag: &str) -> String {
    format!("{}/{}:{tag}", image.host(), image.repository())
}

/// `sha256:` and the hex of a finished SHA-256.
pub fn hex_digest(digest: ring::digest::Digest) -> String {
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in digest.as_ref() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The media type of manifest `bytes`: the `mediaType` it names, else an OCI index or image
/// manifest by its shape.
pub fn media_type_of(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape { media_type: Some(named), .. }) if !named.is_empty() => named,
        Ok(Shape { manifests: Some(_), .. }) => super::manifest::OCI_INDEX.to_owned(),
        _ => super::manifest::OCI_MANIFEST.to_owned(),
    }
}
