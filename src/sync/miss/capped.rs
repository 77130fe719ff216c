//! A [`Source`] that fetches at most `--copy-max-bytes` of blobs for one image: each blob's
//! declared size is reserved before it is opened (once per digest), and one that does not fit
//! is refused without a request. The engine's verification holds the source to the declared
//! sizes.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::super::error::SyncError;
use super::super::manifest::Descriptor;
use super::super::name::Image;
use super::super::report::bytes;
use super::super::store::{BlobStream, Source};
use crate::registry::client::Manifest;

/// `inner`, fetching at most `max` blob bytes.
pub struct Capped<S> {
    inner: S,
    max: u64,
    /// The digests reserved, and the bytes they take.
    reserved: Mutex<(HashSet<String>, u64)>,
    over: AtomicBool,
}

impl<S> Capped<S> {
    pub fn new(inner: S, max: u64) -> Self {
        Self { inner, max, reserved: Mutex::new((HashSet::new(), 0)), over: AtomicBool::new(false) }
    }

    /// Whether a blob was refused for the cap.
    pub fn was_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    fn reserve(&self, blob: &Descriptor) -> Result<(), SyncError> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if reserved.0.contains(&blob.digest) {
            return Ok(());
        }
        let total = reserved.1.saturating_add(blob.size);
        if total > self.max {
            self.over.store(true, Ordering::Relaxed);
            return Err(SyncError::Refused(format!(
                "the image's blobs are over --copy-max-bytes ({})",
                bytes(self.max)
            )));
        }
        reserved.0.insert(blob.digest.clone());
        reserved.1 = total;
        Ok(())
    }
}

impl<S: Source> Source for Capped<S> {
    async fn resolve(&self, image: &Image, reference: &str) -> Result<Option<String>, SyncError> {
        self.inner.resolve(image, reference).await
    }

    async fn manifest(&self, image: &Image, reference: &str) -> Result<Option<Manifest>, SyncError> {
        self.inner.manifest(image, reference).await
    }

    async fn blob(&self, image: &Image, blob: &Descriptor) -> Result<BlobStream, SyncError> {
        self.reserve(blob)?;
        self.inner.blob(image, blob).await
    }

    async fn referrers(&self, image: &Image, digest: &str) -> Result<Vec<Descriptor>, SyncError> {
        self.inner.referrers(image, digest).await
    }
}
