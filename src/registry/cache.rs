//! Cached registry answers (`moka`): "present" for `--check-cache-ttl`, "absent" for
//! `--check-negative-ttl`, failures never; at most `--check-cache-entries` entries. Concurrent
//! requests for one image share one lookup (single flight), and share its failure too.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use super::client::{Answer, CheckError};

/// Per-answer time to live.
struct ByAnswer {
    present: Duration,
    absent: Duration,
}

impl Expiry<String, Answer> for ByAnswer {
    fn expire_after_create(&self, _key: &String, value: &Answer, _now: Instant) -> Option<Duration> {
        Some(match value {
            Answer::Present => self.present,
            Answer::Absent(_) => self.absent,
        })
    }
}

/// The answer cache.
#[derive(Clone)]
pub struct CheckCache {
    cache: Cache<String, Answer>,
}

impl CheckCache {
    pub fn new(entries: u64, present: Duration, absent: Duration) -> Self {
        let cache = Cache::builder().max_capacity(entries).expire_after(ByAnswer { present, absent }).build();
        Self { cache }
    }

    /// The cached answer for `image`, or the one `lookup` gives (run once for all concurrent
    /// callers). The flag is true when it came from the cache.
    pub async fn get_or_check(
        &self,
        image: &str,
        lookup: impl Future<Output = Result<Answer, CheckError>>,
    ) -> (Result<Answer, CheckError>, bool) {
        match self.cache.entry_by_ref(image).or_try_insert_with(lookup).await {
            Ok(entry) => {
                let hit = !entry.is_fresh();
                (Ok(entry.into_value()), hit)
            }
            Err(error) => (Err(Arc::unwrap_or_clone(error)), false),
        }
    }

    /// Forgets every answer (credentials changed).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Entries held now (after pending maintenance).
    pub async fn len(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// True when nothing is cached.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}
