//! A per-thread memo of the "present" answers the warm path reads with their value
//! (`--pin-digest`, `--require-platforms`), so a hit costs what `exists` without them pays
//! (moka's `contains_key`) and a lookup in a map of this thread's own: no shared write. moka's
//! `get` logs every read for its eviction policy (a push onto a channel the two workers share,
//! drained under a lock every few dozen reads), which cost the pinned warm path about as much
//! as the rest of the admission work added to `always`.
//!
//! A memoized value is used only while the cache still holds the entry (`contains_key`: its
//! time to live, its eviction, `forget`, `clear`) and no answer has been written to that cache
//! since the value was read: every write bumps the cache's epoch, and a thread's memo belongs
//! to one cache and one epoch. A value read under an epoch that a write ends is dropped,
//! never served, so a memo can be behind the cache only for the instant between a write and
//! its bump. At most [`MAX_ENTRIES`] answers per thread (the memo starts again when full).

use std::cell::RefCell;
use std::collections::HashMap;

use ahash::RandomState;

use super::found::Found;

/// Answers one thread keeps before it starts again.
pub const MAX_ENTRIES: usize = 4096;

/// This thread's answers, valid for one cache and one of its epochs.
#[derive(Default)]
struct Memo {
    cache: u64,
    epoch: u64,
    answers: HashMap<Box<str>, Found, RandomState>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::default();
}

/// The answer for `image` this thread read from `cache` in `epoch`, if any.
pub fn read(cache: u64, epoch: u64, image: &str) -> Option<Found> {
    MEMO.with(|memo| {
        let memo = memo.try_borrow().ok()?;
        if memo.cache != cache || memo.epoch != epoch {
            return None;
        }
        memo.answers.get(image).cloned()
    })
}

/// Keeps `found`, read from `cache` for `image` after `epoch` was loaded.
pub fn write(cache: u64, epoch: u64, image: &str, found: &Found) {
    MEMO.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else { return };
        if memo.cache != cache || memo.epoch != epoch || memo.answers.len() >= MAX_ENTRIES {
            memo.answers.clear();
            (memo.cache, memo.epoch) = (cache, epoch);
        }
        memo.answers.insert(image.into(), found.clone());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::found::Digest;

    fn found(text: &[u8]) -> Found {
        Found { digest: Some(Digest::of(text)), platforms: None }
    }

    #[test]
    fn serves_one_cache_and_one_epoch_and_keeps_its_bound() {
        write(1, 7, "m.io/a:1", &found(b"a"));
        assert_eq!(read(1, 7, "m.io/a:1"), Some(found(b"a")));
        assert_eq!(read(1, 8, "m.io/a:1"), None, "a later epoch");
        assert_eq!(read(2, 7, "m.io/a:1"), None, "another cache");
        assert_eq!(read(1, 7, "m.io/b:1"), None);
        write(1, 8, "m.io/b:1", &found(b"b"));
        assert_eq!(read(1, 7, "m.io/a:1"), None, "the older epoch's answers are gone");
        for n in 0..MAX_ENTRIES * 2 {
            write(1, 8, &format!("m.io/n:{n}"), &found(b"n"));
            MEMO.with(|memo| assert!(memo.borrow().answers.len() <= MAX_ENTRIES));
        }
        let other_thread = std::thread::spawn(|| read(1, 8, "m.io/n:0")).join().ok().flatten();
        assert_eq!(other_thread, None, "each thread has its own");
    }
}
