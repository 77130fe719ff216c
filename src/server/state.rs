//! What every request handler shares: the active rules, settings, metrics
//! and readiness. Rules are swapped atomically; a request keeps the rule set
//! it started with. Ready means the listeners are up and rules were loaded
//! at least once (from the API, that is the first answer of the watch).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use super::admission::Settings;
use super::metrics::Metrics;
use crate::rewrite::RuleSet;

/// Shared server state.
pub struct State {
    rules: ArcSwap<RuleSet>,
    /// Request-handling switches.
    pub settings: Settings,
    /// Every exported metric.
    pub metrics: Metrics,
    ready: AtomicBool,
    rules_loaded: AtomicBool,
}

impl State {
    /// A state serving `rules`, not yet ready; `rules_loaded` is false when `rules` is a
    /// placeholder until the first load (from the Kubernetes API) arrives.
    pub fn new(rules: RuleSet, settings: Settings, metrics: Metrics, rules_loaded: bool) -> Self {
        metrics.rules_loaded.set(i64::try_from(rules.len()).unwrap_or(i64::MAX));
        let state = Self {
            rules: ArcSwap::from_pointee(rules),
            settings,
            metrics,
            ready: AtomicBool::new(false),
            rules_loaded: AtomicBool::new(rules_loaded),
        };
        return_free_memory();
        state
    }

    /// The rule set to use for one request.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Swaps in a new rule set; requests already running finish on the old one.
    pub fn replace_rules(&self, rules: RuleSet) {
        self.metrics.rules_loaded.set(i64::try_from(rules.len()).unwrap_or(i64::MAX));
        self.rules.store(Arc::new(rules));
        return_free_memory();
    }

    /// Marks the listeners up (certificate loaded, both bound).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Records that real rules are in force (stays true: later failures keep the last good rules).
    pub fn set_rules_loaded(&self) {
        self.rules_loaded.store(true, Ordering::Release);
    }

    /// True once rules were loaded at least once.
    pub fn rules_loaded(&self) -> bool {
        self.rules_loaded.load(Ordering::Acquire)
    }

    /// True once the listeners are up and rules were loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.rules_loaded()
    }
}

/// Hands the pages that loading rules freed (the file's text, the parsed pairs, a replaced
/// rule set no request holds any more) back to the OS. mimalloc, the binary's allocator, only
/// purges freed memory as later allocations pass by, and an idle webhook makes few: that left
/// 2 MiB resident after loading 10k rules and 24 MiB after 100k. Runs on the loading thread
/// (start-up, the file watcher's, a blocking task for the API source), never on a request; under another global allocator (the tests) it has nothing to collect.
fn return_free_memory() {
    // SAFETY: mi_collect is thread-safe and only releases memory that is already free.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
