//! `serve --copy-on-miss`'s metrics, registered in the server's registry:
//! `mirrorswap_copies_total{result}` (a fixed set of results, each there from the start),
//! `mirrorswap_copy_queue_depth` and `mirrorswap_copy_bytes_total`.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every result a copy is counted under: copied; already at the mirror; failed; over
/// `--copy-max-bytes`; over `--copy-timeout`; refused (no explicit rule names its source, or
/// its address is refused); dropped (the queue was full).
pub const RESULTS: [&str; 7] = ["copied", "present", "failed", "too_large", "timeout", "refused", "dropped"];

/// The copy metrics.
#[derive(Clone)]
pub struct CopyMetrics {
    pub copies: IntCounterVec,
    pub queue_depth: IntGauge,
    pub bytes: IntCounter,
}

impl CopyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let copies = IntCounterVec::new(
            Opts::new(
                "mirrorswap_copies_total",
                "--copy-on-miss: images offered for a copy to the mirror, by result (copied, present, failed, \
                 too_large, timeout, refused, dropped).",
            ),
            &["result"],
        )?;
        let queue_depth = IntGauge::new("mirrorswap_copy_queue_depth", "--copy-on-miss: copies waiting to start.")?;
        let bytes = IntCounter::new(
            "mirrorswap_copy_bytes_total",
            "--copy-on-miss: blob bytes sent to the mirror by copies (a retried blob counts again).",
        )?;
        registry.register(Box::new(copies.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        for result in RESULTS {
            copies.with_label_values(&[result]);
        }
        Ok(Self { copies, queue_depth, bytes })
    }

    /// Counts one offer or copy under `result` (one of [`RESULTS`]).
    pub fn count(&self, result: &str) {
        self.copies.with_label_values(&[result]).inc();
    }
}
