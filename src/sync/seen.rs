//! Where this run has put each blob at each destination registry, so that the next image
//! needing it mounts it from there instead of sending its bytes again, and one lock per blob
//! and registry, so that two images sharing a layer never upload it at the same time: the
//! second waits for the first, then mounts. Bounded at [`MAX_BLOBS`] entries, past which the
//! idle ones are forgotten (a forgotten blob is found by its `HEAD` or uploaded once more).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Blobs remembered at once.
pub const MAX_BLOBS: usize = 1 << 20;

/// Where one blob was last put (a repository), behind the lock its copies take.
type Entry = Arc<AsyncMutex<Option<String>>>;

/// The repository a blob was last put in, by registry and digest.
#[derive(Default)]
pub struct Seen {
    blobs: Mutex<HashMap<(String, String), Entry>>,
}

/// A blob held for one image: where it is known to be (a repository of the same registry).
pub type Held = OwnedMutexGuard<Option<String>>;

impl Seen {
    /// Waits until no other image is copying `digest` to `registry`, then holds it.
    pub async fn hold(&self, registry: &str, digest: &str) -> Held {
        let entry = {
            let mut blobs = self.blobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if blobs.len() >= MAX_BLOBS {
                blobs.retain(|_, entry| Arc::strong_count(entry) > 1);
            }
            Arc::clone(blobs.entry((registry.to_owned(), digest.to_owned())).or_default())
        };
        entry.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_second_image_waits_and_learns_where_the_blob_went() {
        let seen = Arc::new(Seen::default());
        let mut first = seen.hold("m.io", "sha256:a").await;
        let waiting = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move { seen.hold("m.io", "sha256:a").await.clone() }
        });
        let other = seen.hold("other.io", "sha256:a").await;
        assert!(other.is_none(), "another registry is another blob");
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        *first = Some("team/app".into());
        drop(first);
        assert_eq!(waiting.await.unwrap().as_deref(), Some("team/app"));
    }
}
