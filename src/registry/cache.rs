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

    /// The cached answer for `image`, if any: no lookup, no waiting.
    pub async fn cached(&self, image: &str) -> Option<Answer> {
        self.cache.get(image).await
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
                if !hit {
                    // moka evicts in its maintenance pass, which may lag behind a burst of new
                    // entries; run it on every insert (a miss paid a lookup anyway), so the
                    // bound holds at once.
                    self.cache.run_pending_tasks().await;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_its_bound_and_shares_one_lookup() {
        let cache = CheckCache::new(10, Duration::from_secs(60), Duration::from_secs(60));
        for n in 0..100 {
            let (answer, hit) = cache.get_or_check(&format!("m.io/a:{n}"), async { Ok(Answer::Absent(404)) }).await;
            assert_eq!((answer, hit), (Ok(Answer::Absent(404)), false));
            assert!(cache.len().await <= 10, "after {n} inserts");
        }
        let lookups = std::sync::atomic::AtomicUsize::new(0);
        let one = |_| {
            cache.get_or_check("m.io/b:1", async {
                lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(Answer::Present)
            })
        };
        let answers = futures::future::join_all((0..50).map(one)).await;
        assert!(answers.iter().all(|(answer, _)| *answer == Ok(Answer::Present)));
        assert_eq!(lookups.into_inner(), 1);
        let (failed, _) = cache.get_or_check("m.io/c:1", async { Err(CheckError::Status(503)) }).await;
        assert_eq!(failed, Err(CheckError::Status(503)));
        let (retried, _) = cache.get_or_check("m.io/c:1", async { Ok(Answer::Present) }).await;
        assert_eq!(retried, Ok(Answer::Present), "failures are not cached");
    }
}
