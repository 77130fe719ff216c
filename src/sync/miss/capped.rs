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

    async fn referrers(
        &self,
        image: &Image,
        digest: &str,
        max_bytes: u64,
    ) -> Result<(Vec<Descriptor>, u64), SyncError> {
        self.inner.referrers(image, digest, max_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A source whose blobs are empty streams; counts the blobs opened.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Source for Counting {
        async fn resolve(&self, _: &Image, _: &str) -> Result<Option<String>, SyncError> {
            Ok(None)
        }
        async fn manifest(&self, _: &Image, _: &str) -> Result<Option<Manifest>, SyncError> {
            Ok(None)
        }
        async fn blob(&self, _: &Image, _: &Descriptor) -> Result<BlobStream, SyncError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Box::pin(futures::stream::empty()))
        }
        async fn referrers(&self, _: &Image, _: &str, _: u64) -> Result<(Vec<Descriptor>, u64), SyncError> {
            Ok((Vec::new(), 0))
        }
    }

    fn blob(digest: &str, size: u64) -> Descriptor {
        serde_json::from_value(serde_json::json!({"digest": digest, "size": size})).unwrap()
    }

    #[tokio::test]
    async fn blobs_past_the_cap_are_refused_before_they_are_opened() {
        let capped = Capped::new(Counting::default(), 100);
        let image = Image::parse("src.example.org/app:1").unwrap();
        assert!(capped.blob(&image, &blob("sha256:a", 60)).await.is_ok());
        // Asked again (a retry): reserved once.
        assert!(capped.blob(&image, &blob("sha256:a", 60)).await.is_ok());
        assert!(capped.blob(&image, &blob("sha256:b", 40)).await.is_ok());
        assert!(!capped.was_over());
        let refused = capped.blob(&image, &blob("sha256:c", 1)).await.err().expect("over the cap");
        assert!(refused.to_string().contains("over --copy-max-bytes (100 B)"), "{refused}");
        assert!(capped.was_over());
        assert_eq!(capped.inner.0.load(Ordering::SeqCst), 3, "the refused blob was never opened");
    }
}
