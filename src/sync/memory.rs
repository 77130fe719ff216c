//! For the engine's unit tests: a [`Source`] and a [`Destination`] held in memory, one
//! repository each (the image's name is not looked at), counting what the copy reads.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::copy::lock;
use super::error::SyncError;
use super::manifest::Descriptor;
use super::name::Image;
use super::store::{BlobStream, Destination, Source};
use crate::registry::client::{Manifest, sha256};
use crate::registry::manifests::Pushed;

/// A source: manifests by digest, tags, blobs by digest.
#[derive(Default)]
pub struct MemorySource {
    pub manifests: HashMap<String, Manifest>,
    pub tags: HashMap<String, String>,
    pub blobs: HashMap<String, Vec<u8>>,
    /// Blob bytes handed out.
    pub blob_bytes: AtomicU64,
}

impl MemorySource {
    /// Adds a blob; its descriptor.
    pub fn add_blob(&mut self, bytes: &[u8]) -> serde_json::Value {
        let digest = sha256(bytes);
        self.blobs.insert(digest.clone(), bytes.to_vec());
        serde_json::json!({"mediaType": "application/octet-stream", "digest": digest, "size": bytes.len()})
    }

    /// Adds a manifest of `value` (padded with `pad` spaces); its descriptor.
    pub fn add_manifest(&mut self, value: &serde_json::Value, pad: usize) -> serde_json::Value {
        let mut bytes = serde_json::to_vec(value).unwrap_or_default();
        bytes.extend(std::iter::repeat_n(b' ', pad));
        let digest = sha256(&bytes);
        let media_type = value["mediaType"].as_str().unwrap_or_default().to_owned();
        let size = bytes.len();
        self.manifests
            .insert(digest.clone(), Manifest { bytes, media_type: media_type.clone(), digest: digest.clone() });
        serde_json::json!({"mediaType": media_type, "digest": digest, "size": size})
    }

    /// Adds an image of one layer `layer`; its descriptor.
    pub fn add_image(&mut self, layer: &[u8]) -> serde_json::Value {
        let config = self.add_blob(b"{}");
        let layer = self.add_blob(layer);
        self.add_manifest(
            &serde_json::json!({"schemaVersion": 2, "mediaType": super::manifest::OCI_MANIFEST,
                                "config": config, "layers": [layer]}),
            0,
        )
    }
}

impl Source for MemorySource {
    async fn resolve(&self, _: &Image, reference: &str) -> Result<Option<String>, SyncError> {
        Ok(match self.tags.get(reference) {
            Some(digest) => Some(digest.clone()),
            None => self.manifests.contains_key(reference).then(|| reference.to_owned()),
        })
    }

    async fn manifest(&self, _: &Image, reference: &str) -> Result<Option<Manifest>, SyncError> {
        let digest = self.tags.get(reference).map_or(reference, String::as_str);
        Ok(self.manifests.get(digest).cloned())
    }

    async fn blob(&self, _: &Image, blob: &Descriptor) -> Result<BlobStream, SyncError> {
        let bytes = self.blobs.get(&blob.digest).cloned().unwrap_or_default();
        self.blob_bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(Box::pin(futures::stream::iter([Ok(Bytes::from(bytes))])))
    }

    async fn referrers(&self, _: &Image, _: &str, _: u64) -> Result<(Vec<Descriptor>, u64), SyncError> {
        Ok((Vec::new(), 0))
    }
}

/// A destination: manifests and tags by reference, blobs by digest.
#[derive(Default)]
pub struct MemoryMirror {
    /// Reference (tag or digest) to digest.
    pub references: Mutex<HashMap<String, String>>,
    pub blobs: Mutex<HashSet<String>>,
}

impl MemoryMirror {
    /// The digest `reference` names.
    pub fn at(&self, reference: &str) -> Option<String> {
        lock(&self.references).get(reference).cloned()
    }
}

impl Destination for MemoryMirror {
    async fn manifest_digest(&self, _: &Image, reference: &str) -> Result<Option<String>, SyncError> {
        Ok(self.at(reference))
    }

    async fn has_blob(&self, _: &Image, digest: &str) -> Result<bool, SyncError> {
        Ok(lock(&self.blobs).contains(digest))
    }

    async fn mount_blob(&self, _: &Image, _: &str, _: &str) -> Result<bool, SyncError> {
        Ok(false)
    }

    async fn put_blob(&self, _: &Image, blob: &Descriptor, data: BlobStream) -> Result<(), SyncError> {
        use futures::TryStreamExt;
        let _: Vec<Bytes> = data.try_collect().await?;
        lock(&self.blobs).insert(blob.digest.clone());
        Ok(())
    }

    async fn put_manifest(&self, _: &Image, reference: &str, manifest: &Manifest) -> Result<Pushed, SyncError> {
        let mut references = lock(&self.references);
        references.insert(manifest.digest.clone(), manifest.digest.clone());
        references.insert(reference.to_owned(), manifest.digest.clone());
        Ok(Pushed { subject_indexed: false })
    }
}
