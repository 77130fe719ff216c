//! A [`Source`] that fetches at most `--copy-max-bytes` of blobs for one image: each attempt
//! at a blob (a retry too) reserves its declared size before it is opened, and one that does
//! not fit is refused without a request; when the attempt's stream ends or is dropped, its
//! reservation becomes the bytes it actually streamed. So a blob fetched again after a broken
//! attempt counts what both fetched. The engine's verification holds the source to the
//! declared sizes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

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
    /// Bytes streamed by finished attempts, and reserved by running ones.
    spent: Arc<Mutex<u64>>,
    over: AtomicBool,
}

/// One attempt's reservation: on drop, `reserved` is given back and what was streamed kept.
struct Attempt {
    spent: Arc<Mutex<u64>>,
    reserved: u64,
    streamed: u64,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let mut spent = lock(&self.spent);
        *spent = spent.saturating_sub(self.reserved).saturating_add(self.streamed);
    }
}

fn lock(spent: &Mutex<u64>) -> std::sync::MutexGuard<'_, u64> {
    spent.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<S> Capped<S> {
    pub fn new(inner: S, max: u64) -> Self {
        Self { inner, max, spent: Arc::new(Mutex::new(0)), over: AtomicBool::new(false) }
    }

    /// Whether a blob was refused for the cap.
    pub fn was_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Blob bytes streamed, and reserved by attempts still running.
    #[cfg(test)]
    fn spent(&self) -> u64 {
        *lock(&self.spent)
    }

    fn reserve(&self, blob: &Descriptor) -> Result<Attempt, SyncError> {
        let mut spent = lock(&self.spent);
        let total = spent.saturating_add(blob.size);
        if total > self.max {
            self.over.store(true, Ordering::Relaxed);
            return Err(SyncError::Refused(format!(
                "the image's blobs are over --copy-max-bytes ({})",
                bytes(self.max)
            )));
        }
        *spent = total;
        Ok(Attempt { spent: Arc::clone(&self.spent), reserved: blob.size, streamed: 0 })
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
        let mut attempt = self.reserve(blob)?;
        let stream = self.inner.blob(image, blob).await?;
        Ok(Box::pin(stream.map(move |chunk| {
            // The whole attempt is moved in (not a copy of its count): it ends with the stream.
            let attempt = &mut attempt;
            if let Ok(chunk) = &chunk {
                attempt.streamed = attempt.streamed.saturating_add(chunk.len() as u64);
            }
            chunk
        })))
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

    use bytes::Bytes;
    use futures::TryStreamExt;

    use super::*;

    /// A source whose blobs are their declared size of zeros; counts the blobs opened.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Source for Counting {
        async fn resolve(&self, _: &Image, _: &str) -> Result<Option<String>, SyncError> {
            Ok(None)
        }
        async fn manifest(&self, _: &Image, _: &str) -> Result<Option<Manifest>, SyncError> {
            Ok(None)
        }
        async fn blob(&self, _: &Image, blob: &Descriptor) -> Result<BlobStream, SyncError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let zeros = Bytes::from(vec![0_u8; usize::try_from(blob.size).unwrap_or(0)]);
            Ok(Box::pin(futures::stream::iter([Ok(zeros)])))
        }
        async fn referrers(&self, _: &Image, _: &str, _: u64) -> Result<(Vec<Descriptor>, u64), SyncError> {
            Ok((Vec::new(), 0))
        }
    }

    fn blob(digest: &str, size: u64) -> Descriptor {
        serde_json::from_value(serde_json::json!({"digest": digest, "size": size})).unwrap()
    }

    /// What each attempt does with its stream.
    #[derive(Clone, Copy, Debug)]
    enum Then {
        /// Reads it to its end.
        Read,
        /// Drops it unread (the attempt broke before any byte came).
        Drop,
    }

    #[tokio::test]
    async fn every_attempt_counts_what_it_streamed_and_past_the_cap_none_is_opened() {
        let capped = Capped::new(Counting::default(), 100);
        let image = Image::parse("src.example.org/app:1").unwrap();
        // (digest, size, what the attempt does, opened, bytes spent after it)
        let table = [
            ("sha256:a", 60, Then::Read, true, 60),
            // A broken attempt that streamed nothing gives its reservation back.
            ("sha256:b", 40, Then::Drop, true, 60),
            ("sha256:b", 40, Then::Read, true, 100),
            // A retry of a finished blob counts again: over the cap, never opened.
            ("sha256:a", 60, Then::Read, false, 100),
            ("sha256:c", 1, Then::Read, false, 100),
        ];
        for (digest, size, then, opened, spent) in table {
            match capped.blob(&image, &blob(digest, size)).await {
                Ok(stream) => {
                    assert!(opened, "{digest} {then:?}: opened");
                    if let Then::Read = then {
                        let read: Vec<Bytes> = stream.try_collect().await.unwrap();
                        assert_eq!(read.concat().len() as u64, size);
                    }
                }
                Err(refused) => {
                    assert!(!opened, "{digest} {then:?}: {refused}");
                    assert!(refused.to_string().contains("over --copy-max-bytes (100 B)"), "{refused}");
                }
            }
            assert_eq!(capped.spent(), spent, "{digest} {then:?}");
        }
        assert!(capped.was_over());
        assert_eq!(capped.inner.0.load(Ordering::SeqCst), 3, "the refused blobs were never opened");
    }
}
