//! What every request handler shares: the active rules, settings, metrics
//! and readiness. Rules are swapped atomically; a request keeps the rule set
//! it started with. Ready means the listeners are up and rules were loaded
//! at least once (from the API, that is the first answer of the watch).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::admission::Settings;
use super::metrics::Metrics;
use crate::registry::Resolver;
use crate::rewrite::RuleSet;

/// Shared server state.
pub struct State {
    rules: ArcSwap<RuleSet>,
    /// Request-handling switches.
    pub settings: Settings,
    /// Every exported metric.
    pub metrics: Metrics,
    /// With `--swap-policy exists`, what asks the registries; `None` never contacts one.
    pub resolver: Option<Arc<Resolver>>,
    /// The leak guard's settings (`POST /validate`).
    pub validation: super::validate::Settings,
    /// `--copy-on-miss`: the copy queue images absent from every mirror are offered to.
    pub copier: Option<crate::sync::miss::CopyOnMiss>,
    ready: AtomicBool,
    rules_loaded: AtomicBool,
}

impl State {
    /// A state with no rules yet (an empty set, answering every request unchanged), not
    /// ready until [`Self::install_rules`] and [`Self::set_ready`] have both run.
    pub fn new(settings: Settings, metrics: Metrics) -> Self {
        metrics.rules_loaded.set(0);
        Self {
            rules: ArcSwap::from_pointee(RuleSet::default()),
            settings,
            metrics,
            resolver: None,
            validation: super::validate::Settings::default(),
            copier: None,
            ready: AtomicBool::new(false),
            rules_loaded: AtomicBool::new(false),
        }
    }

    /// The state with `resolver` deciding which candidate images the registries have.
    pub fn with_resolver(mut self, resolver: Option<Arc<Resolver>>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The state with `copier` offered the images every mirror lacks.
    pub fn with_copier(mut self, copier: Option<crate::sync::miss::CopyOnMiss>) -> Self {
        self.copier = copier;
        self
    }

    /// The state with the leak guard's `validation` settings.
    pub fn with_validation(mut self, validation: super::validate::Settings) -> Self {
        self.validation = validation;
        self
    }

    /// The rule set to use for one request.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Swaps in a rule set that loaded successfully (requests already running finish on the
    /// old one) and records it: the rule count, the reload, the time since `started` (read,
    /// parse, compile and swap), and that real rules are in force. Returns that time.
    pub fn install_rules(&self, rules: RuleSet, started: Instant) -> Duration {
        self.metrics.rules_loaded.set(i64::try_from(rules.len()).unwrap_or(i64::MAX));
        self.rules.store(Arc::new(rules));
        return_free_memory();
        let took = started.elapsed();
        self.metrics.rules_load_seconds.set(took.as_secs_f64());
        self.metrics.record_reload("rules", true);
        self.rules_loaded.store(true, Ordering::Release);
        took
    }

    /// Whether `rules` must not replace the rules in force: it holds none while the current
    /// set has some, and `allow_empty` (`--allow-empty-rules`) is off. A
    /// truncate-then-write (a shell `>` redirect, a non-atomic writer) would otherwise switch
    /// rewriting off between the two.
    pub fn refuses_empty(&self, rules: &RuleSet, allow_empty: bool) -> bool {
        rules.is_empty() && !self.rules.load().is_empty() && !allow_empty
    }

    /// Marks the listeners up (certificate loaded, both bound).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// True once rules were loaded at least once (stays true: later failures keep the last
    /// good rules).
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
/// (start-up, the file watcher's, a blocking task for the API source), never on a request;
/// under another global allocator (the tests) it has nothing to collect.
fn return_free_memory() {
    // SAFETY: mi_collect is thread-safe and only releases memory that is already free.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
