//! Cached registry answers (`moka`): "present" for `--check-cache-ttl`, "absent" for
//! `--check-negative-ttl`, failures never; at most `--check-cache-entries` entries. Concurrent
//! requests for one image share one lookup (single flight), and share its failure too.
//!
//! Two caches with one time to live each, not one with per-entry expiry: a read then never
//! touches moka's timer wheel (the warm admission path reads once per image), and a flood of
//! images that are not mirrored (random names in Pods anyone may create) evicts only other
//! "absent" answers, never the "present" ones every rewrite relies on.
//!
//! A present answer holds what its lookup learned ([`Found`]: the digest, the platforms), so
//! pinning and `--require-platforms` cost no request more on a hit. Without them, a "present"
//! answer is read with `contains_key`, which writes nothing shared: moka's `get` also logs the
//! read for its eviction policy (a channel push, and the log drained every few dozen reads),
//! which cost the warm admission path more than the lookup itself on two busy workers. So
//! present answers leave by their time to live; at the bound, moka's admission weighs a new
//! answer against the incumbents by their lookups alone, and a new image may stay uncached
//! until older answers expire (the unit test below shows it). 75,000 present images within
//! `--check-cache-ttl` is not what a cluster pulls. With pinning the value is needed: the warm
//! path reads it with `get` once per worker thread, then from that thread's [`memo`], which
//! every write to this cache invalidates ([`CheckCache::found`]).
//!
//! Keys are hashed with `ahash`, seeded at random per process as the standard SipHash is (image
//! names come from Pods anyone may create, so a fixed-seed hash would let them collide
//! entries on purpose), at a fraction of SipHash's cost on an image name.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ahash::RandomState;
use moka::future::Cache;

use super::client::{Answer, CheckError, Found};
use super::memo;

/// The identities of caches, for the per-thread memo.
static CACHE_IDS: AtomicU64 = AtomicU64::new(0);

/// The answer cache.
#[derive(Clone)]
pub struct CheckCache {
    /// What each lookup that found the image learned of it.
    present: Cache<String, Found, RandomState>,
    /// The status the registry said "absent" with.
    absent: Cache<String, u16, RandomState>,
    /// This cache's identity in the per-thread memo.
    id: u64,
    /// Bumped after every write to `present`, so a memoized value read before it is dropped.
    epoch: Arc<AtomicU64>,
}

/// How a shared lookup ended when the image is not present.
#[derive(Clone, Debug)]
enum NotPresent {
    Absent(u16),
    Failed(CheckError),
    /// A judgement, never a lookup's answer: passed through, not cached.
    Judged(Answer),
}

impl CheckCache {
    /// A cache of at most `entries` answers: a quarter of them (at least one) for "absent",
    /// the rest (at least one) for "present".
    pub fn new(entries: u64, present: Duration, absent: Duration) -> Self {
        let absent_entries = (entries / 4).max(1);
        let present_entries = entries.saturating_sub(absent_entries).max(1);
        Self {
            present: Cache::builder()
                .max_capacity(present_entries)
                .time_to_live(present)
                .build_with_hasher(RandomState::new()),
            absent: Cache::builder()
                .max_capacity(absent_entries)
                .time_to_live(absent)
                .build_with_hasher(RandomState::new()),
            id: CACHE_IDS.fetch_add(1, Ordering::Relaxed),
            epoch: Arc::default(),
        }
    }

    /// Marks a write to `present`: values memoized before it are not served again.
    fn written(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Whether `image` is cached present: the warm path, one read of shared state.
    pub fn is_present(&self, image: &str) -> bool {
        self.present.contains_key(image)
    }

    /// Whether an answer for `image` is cached, without reading it (no await).
    pub fn knows(&self, image: &str) -> bool {
        self.present.contains_key(image) || self.absent.contains_key(image)
    }

    /// What the cached "present" answer for `image` learned, if there is one: from this
    /// thread's memo while the entry lives and nothing was written since, else a logged read.
    pub async fn found(&self, image: &str) -> Option<Found> {
        // Loaded first: a write after it makes what is read now stale, and its bump drops it.
        let epoch = self.epoch.load(Ordering::Acquire);
        if !self.present.contains_key(image) {
            return None;
        }
        if let Some(found) = memo::read(self.id, epoch, image) {
            return Some(found);
        }
        let found = self.present.get(image).await?;
        memo::write(self.id, epoch, image, &found);
        Some(found)
    }

    /// The cached answer for `image`, if any: no lookup, no waiting.
    pub async fn cached(&self, image: &str) -> Option<Answer> {
        if let Some(found) = self.found(image).await {
            return Some(Answer::Present(found));
        }
        self.absent.get(image).await.map(Answer::Absent)
    }

    /// The cached answer for `image`, or the one `lookup` gives (run once for all concurrent
    /// callers). The flag is true when it came from the cache.
    pub async fn get_or_check(
        &self,
        image: &str,
        lookup: impl Future<Output = Result<Answer, CheckError>>,
    ) -> (Result<Answer, CheckError>, bool) {
        if let Some(status) = self.absent.get(image).await {
            return (Ok(Answer::Absent(status)), true);
        }
        let shared = async {
            match lookup.await {
                Ok(Answer::Present(found)) => Ok(found),
                Ok(Answer::Absent(status)) => Err(NotPresent::Absent(status)),
                Ok(judged @ Answer::Lacks(_)) => Err(NotPresent::Judged(judged)),
                Err(error) => Err(NotPresent::Failed(error)),
            }
        };
        match self.present.entry_by_ref(image).or_try_insert_with(shared).await {
            Ok(entry) => {
                let hit = !entry.is_fresh();
                if !hit {
                    self.written();
                    // moka evicts in its maintenance pass, which may lag behind a burst of new
                    // entries; run it on every insert (a miss paid a lookup anyway), so the
                    // bound holds at once.
                    self.present.run_pending_tasks().await;
                }
                (Ok(Answer::Present(entry.into_value())), hit)
            }
            Err(not_present) => match Arc::unwrap_or_clone(not_present) {
                NotPresent::Absent(status) => {
                    self.absent.insert(image.to_owned(), status).await;
                    self.absent.run_pending_tasks().await;
                    (Ok(Answer::Absent(status)), false)
                }
                NotPresent::Failed(error) => (Err(error), false),
                NotPresent::Judged(answer) => (Ok(answer), false),
            },
        }
    }

    /// Forgets the answer for `image` (it was just copied to its registry).
    pub async fn forget(&self, image: &str) {
        self.present.invalidate(image).await;
        self.absent.invalidate(image).await;
        self.written();
    }

    /// Forgets every answer (credentials changed).
    pub fn clear(&self) {
        self.present.invalidate_all();
        self.absent.invalidate_all();
        self.written();
    }

    /// Entries held now (after pending maintenance).
    pub async fn len(&self) -> u64 {
        self.present.run_pending_tasks().await;
        self.absent.run_pending_tasks().await;
        self.present.entry_count() + self.absent.entry_count()
    }

    /// True when nothing is cached.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::client::Digest;

    fn present() -> Answer {
        Answer::Present(Found::default())
    }

    #[tokio::test]
    async fn a_present_answer_keeps_what_its_lookup_learned() {
        let cache = CheckCache::new(10, Duration::from_secs(60), Duration::from_secs(60));
        let found = Found { digest: Some(Digest::of(b"index")), platforms: None };
        let answer = Answer::Present(found.clone());
        let (first, hit) = cache.get_or_check("m.io/a:1", async { Ok(answer.clone()) }).await;
        assert_eq!((first, hit), (Ok(answer.clone()), false));
        let (again, hit) = cache.get_or_check("m.io/a:1", async { Ok(present()) }).await;
        assert_eq!((again, hit), (Ok(answer.clone()), true), "the cached digest, not a new lookup's");
        assert_eq!(cache.found("m.io/a:1").await, Some(found));
        assert_eq!(cache.cached("m.io/a:1").await, Some(answer));
        assert!(cache.is_present("m.io/a:1"));
        // A judgement passes through uncached.
        let lacks = Answer::Lacks(crate::registry::platform::Platform::parse("linux/arm64").unwrap());
        let (judged, hit) = cache.get_or_check("m.io/b:1", async { Ok(lacks.clone()) }).await;
        assert_eq!((judged, hit), (Ok(lacks), false));
        assert!(!cache.knows("m.io/b:1"));
    }

    #[tokio::test]
    async fn a_value_read_on_the_warm_path_follows_every_write_and_expiry() {
        let cache = CheckCache::new(10, Duration::from_millis(300), Duration::from_secs(60));
        let at = |text: &[u8]| Found { digest: Some(Digest::of(text)), platforms: None };
        let (_, hit) = cache.get_or_check("m.io/a:1", async { Ok(Answer::Present(at(b"old"))) }).await;
        assert!(!hit);
        for _ in 0..3 {
            assert_eq!(cache.found("m.io/a:1").await, Some(at(b"old")), "read, then memoized");
        }
        // Re-copied: forgotten and asked again, the tag now names other content.
        cache.forget("m.io/a:1").await;
        assert_eq!(cache.found("m.io/a:1").await, None, "forgotten");
        let (_, hit) = cache.get_or_check("m.io/a:1", async { Ok(Answer::Present(at(b"new"))) }).await;
        assert!(!hit);
        assert_eq!(cache.found("m.io/a:1").await, Some(at(b"new")));
        // Another image's answer written: still right.
        let (_, _) = cache.get_or_check("m.io/b:1", async { Ok(Answer::Present(at(b"b"))) }).await;
        assert_eq!(cache.found("m.io/a:1").await, Some(at(b"new")));
        cache.clear();
        assert_eq!(cache.found("m.io/a:1").await, None, "cleared");
        let (_, _) = cache.get_or_check("m.io/a:1", async { Ok(Answer::Present(at(b"third"))) }).await;
        assert_eq!(cache.found("m.io/a:1").await, Some(at(b"third")));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(cache.found("m.io/a:1").await, None, "expired, though this thread memoized it");
        // A second cache never reads the first one's memo.
        let other = CheckCache::new(10, Duration::from_secs(60), Duration::from_secs(60));
        let (_, _) = other.get_or_check("m.io/a:1", async { Ok(Answer::Present(at(b"other"))) }).await;
        assert_eq!(other.found("m.io/a:1").await, Some(at(b"other")));
    }

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
                Ok(present())
            })
        };
        let answers = futures::future::join_all((0..50).map(one)).await;
        assert!(answers.iter().all(|(answer, _)| *answer == Ok(present())));
        assert_eq!(lookups.into_inner(), 1);
        let (failed, _) = cache.get_or_check("m.io/c:1", async { Err(CheckError::Status(503)) }).await;
        assert_eq!(failed, Err(CheckError::Status(503)));
        let (retried, _) = cache.get_or_check("m.io/c:1", async { Ok(present()) }).await;
        assert_eq!(retried, Ok(present()), "failures are not cached");
        assert_eq!(cache.cached("m.io/c:1").await, Some(present()));
    }

    #[tokio::test]
    async fn a_flood_of_absent_images_never_evicts_a_present_one() {
        let cache = CheckCache::new(8, Duration::from_secs(60), Duration::from_secs(60));
        let (app, _) = cache.get_or_check("m.io/app:1", async { Ok(present()) }).await;
        assert_eq!(app, Ok(present()));
        for n in 0..1000 {
            let (answer, _) =
                cache.get_or_check(&format!("m.io/random-{n}:1"), async { Ok(Answer::Absent(404)) }).await;
            assert_eq!(answer, Ok(Answer::Absent(404)));
        }
        assert!(cache.len().await <= 8);
        assert_eq!(cache.cached("m.io/app:1").await, Some(present()));
        // Room permitting, "absent" is cached for its own time to live.
        let cache = CheckCache::new(8, Duration::from_secs(60), Duration::from_millis(50));
        let (first, _) = cache.get_or_check("m.io/late:1", async { Ok(Answer::Absent(404)) }).await;
        assert_eq!(first, Ok(Answer::Absent(404)));
        let (again, hit) = cache.get_or_check("m.io/late:1", async { Ok(present()) }).await;
        assert_eq!((again, hit), (Ok(Answer::Absent(404)), true));
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (pushed, hit) = cache.get_or_check("m.io/late:1", async { Ok(present()) }).await;
        assert_eq!((pushed, hit), (Ok(present()), false), "expired: asked again");
    }

    #[tokio::test]
    async fn present_answers_read_on_the_warm_path_keep_their_bound_and_expire() {
        let cache = CheckCache::new(8, Duration::from_secs(60), Duration::from_secs(60));
        for n in 0..100 {
            let image = format!("m.io/p:{n}");
            let (answer, hit) = cache.get_or_check(&image, async { Ok(present()) }).await;
            assert_eq!((answer, hit), (Ok(present()), false));
            // Six present entries fit (a quarter of eight is kept for "absent").
            assert!(n >= 6 || cache.is_present(&image), "room left, so cached: {image}");
            assert!(cache.len().await <= 8, "after {n} inserts");
        }
        let cache = CheckCache::new(8, Duration::from_secs(1), Duration::from_secs(60));
        let (kept, _) = cache.get_or_check("m.io/kept:1", async { Ok(present()) }).await;
        assert_eq!(kept, Ok(present()));
        let read_until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < read_until {
            assert!(cache.is_present("m.io/kept:1"));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!cache.is_present("m.io/kept:1"), "read often, still expired by its time to live");
        assert_eq!(cache.cached("m.io/kept:1").await, None);
    }
}
