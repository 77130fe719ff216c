//! Registry-check metrics: `mirrorswap_registry_checks_total{registry,result}`,
//! `mirrorswap_registry_check_duration_seconds`, `mirrorswap_registry_check_cache_total{result}`
//! and `mirrorswap_registry_platform_misses_total{registry,platform}`. The `registry` label
//! comes from rule targets and `platform` from `--require-platforms`, so both stay bounded.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// The registry-check metrics.
#[derive(Clone)]
pub struct RegistryMetrics {
    /// Lookups by registry and result (`present`, `absent`, `error`, `timeout`).
    pub checks: IntCounterVec,
    /// Time of one registry lookup.
    pub duration: Histogram,
    /// `mirrorswap_registry_check_cache_total{result="hit"}`, resolved once (the warm path
    /// counts every image).
    pub cache_hit: IntCounter,
    /// `…{result="miss"}`: answered by a lookup.
    pub cache_miss: IntCounter,
    /// Candidates present but lacking a `--require-platforms` platform, by mirror and the
    /// first platform missing.
    pub platform_misses: IntCounterVec,
}

impl RegistryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let checks = IntCounterVec::new(
            Opts::new("mirrorswap_registry_checks_total", "Registry lookups by registry and result."),
            &["registry", "result"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("mirrorswap_registry_check_duration_seconds", "Time of one registry lookup.")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "mirrorswap_registry_check_cache_total",
                "Registry answers from the cache (hit) or a lookup (miss).",
            ),
            &["result"],
        )?;
        let platform_misses = IntCounterVec::new(
            Opts::new(
                "mirrorswap_registry_platform_misses_total",
                "Candidates the mirror has but not for a platform --require-platforms names, by mirror and platform.",
            ),
            &["registry", "platform"],
        )?;
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(platform_misses.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        let (cache_hit, cache_miss) = (cache.with_label_values(&["hit"]), cache.with_label_values(&["miss"]));
        Ok(Self { checks, duration, cache_hit, cache_miss, platform_misses })
    }
}
