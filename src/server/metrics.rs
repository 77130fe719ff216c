//! Prometheus metrics of the webhook, in one registry served on `/metrics`.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric mirrorswap exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Admission requests by object kind, operation and result.
    pub requests: IntCounterVec,
    /// Time to answer an admission request, body parsing included.
    pub duration: Histogram,
    /// Images rewritten, by the source key of the rule that decided.
    pub rewritten: IntCounterVec,
    /// Images left alone, by reason.
    pub unchanged: IntCounterVec,
    /// Rules in the active rule set.
    pub rules_loaded: IntGauge,
    /// Reloads by what was reloaded (`rules`, `certificate`) and result (`success`, `failure`).
    pub reloads: IntCounterVec,
    /// Unix time of the last successful load, by what was loaded.
    pub last_reload: GaugeVec,
    /// 1 when the last load of `what` succeeded, 0 while the last one failed: unlike the failure
    /// counter's rate, it stays 0 for as long as broken rules stay in place.
    pub last_reload_successful: IntGaugeVec,
    /// Unix time at which the serving certificate expires.
    pub certificate_expiry: Gauge,
    /// Seconds the last successful rules load took: read, parse, compile and swap in.
    pub rules_load_seconds: Gauge,
    /// Failed list/watch calls of the Kubernetes API rules source (each retried with backoff).
    pub rules_source_errors: IntCounter,
    /// Open webhook connections.
    pub connections_open: IntGauge,
    /// Connections closed at accept because `--max-connections` were open.
    pub connections_refused: IntCounter,
    /// Connections closed after `--idle-timeout` with no request (or none within
    /// `--request-timeout` of the handshake).
    pub connections_idle_closed: IntCounter,
    /// Requests answered 503 because `--max-inflight-body-bytes` stayed full for `--inflight-body-wait`.
    pub requests_shed: IntCounter,
    /// Body bytes reserved by requests in flight (declared Content-Length, else `--max-body-bytes`).
    pub inflight_body_bytes: IntGauge,
    /// Unmirrored images `/validate` found, by the action taken (`allow`, `warn`, `deny`).
    pub unmirrored: IntCounterVec,
    /// Mirror images without a digest that `/validate --require-digest` refused.
    pub unpinned: IntCounter,
    /// `--pin-digest`: images pinned (`pinned`), old pins kept on UPDATE (`kept_on_update`),
    /// and images taken without a known digest (`no_digest`, `--on-check-error swap`); the
    /// three children resolved once, since they are counted per image on the request path.
    pub pins: Pins,
}

/// The children of `mirrorswap_images_pinned_total`, by result.
#[derive(Clone)]
pub struct Pins {
    pub pinned: IntCounter,
    pub kept_on_update: IntCounter,
    pub no_digest: IntCounter,
}

impl Metrics {
    /// The registry `/metrics` renders, for metrics of other modules (the registry checks).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("mirrorswap_admission_requests_total", "Admission requests by kind, operation and result."),
            &["kind", "operation", "result"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("mirrorswap_admission_duration_seconds", "Time to answer an admission request.")
                .buckets(vec![0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0]),
        )?;
        let rewritten = IntCounterVec::new(
            Opts::new("mirrorswap_images_rewritten_total", "Images rewritten, by the source key of the deciding rule."),
            &["rule"],
        )?;
        let unchanged = IntCounterVec::new(
            Opts::new("mirrorswap_images_unchanged_total", "Images left alone, by reason."),
            &["reason"],
        )?;
        let rules_loaded = IntGauge::new("mirrorswap_rules_loaded", "Rules in the active rule set.")?;
        let reloads = IntCounterVec::new(
            Opts::new("mirrorswap_reloads_total", "Loads of rules or certificate, by result."),
            &["what", "result"],
        )?;
        let last_reload = GaugeVec::new(
            Opts::new("mirrorswap_last_reload_timestamp_seconds", "Unix time of the last successful load."),
            &["what"],
        )?;
        let certificate_expiry = Gauge::new(
            "mirrorswap_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate expires.",
        )?;
        let rules_load_seconds = Gauge::new(
            "mirrorswap_rules_load_seconds",
            "Seconds the last successful rules load took (read, parse, compile, swap), off the request path.",
        )?;
        let rules_source_errors = IntCounter::new(
            "mirrorswap_rules_source_errors_total",
            "Failed list/watch calls of the Kubernetes API rules source; each is retried with backoff.",
        )?;
        let connections_open = IntGauge::new("mirrorswap_connections_open", "Open webhook connections.")?;
        let connections_refused = IntCounter::new(
            "mirrorswap_connections_refused_total",
            "Webhook connections closed at accept because --max-connections were open.",
        )?;
        let connections_idle_closed = IntCounter::new(
            "mirrorswap_connections_idle_closed_total",
            "Webhook connections closed for idleness (--idle-timeout, or no first request within --request-timeout).",
        )?;
        let requests_shed = IntCounter::new(
            "mirrorswap_requests_shed_total",
            "Requests answered 503 (Retry-After) because --max-inflight-body-bytes stayed full for --inflight-body-wait.",
        )?;
        let inflight_body_bytes = IntGauge::new(
            "mirrorswap_inflight_body_bytes",
            "Body bytes reserved by webhook requests in flight (declared Content-Length, else --max-body-bytes).",
        )?;
        let unmirrored = IntCounterVec::new(
            Opts::new(
                "mirrorswap_unmirrored_images_total",
                "Images pulled from outside the mirrors that /validate found, by the action taken.",
            ),
            &["action"],
        )?;
        let unpinned = IntCounter::new(
            "mirrorswap_unpinned_images_total",
            "Mirror images without a digest that /validate refused under --require-digest.",
        )?;
        let pinned = IntCounterVec::new(
            Opts::new(
                "mirrorswap_images_pinned_total",
                "--pin-digest: images pinned to the mirror's digest, old pins kept on UPDATE, and images taken without \
                 a known digest, by result.",
            ),
            &["result"],
        )?;
        let last_reload_successful = IntGaugeVec::new(
            Opts::new("mirrorswap_last_reload_successful", "1 when the last load succeeded, 0 when it failed."),
            &["what"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("mirrorswap_build_info", "Always 1; the labels describe the build."),
            &["version"],
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rewritten.clone()))?;
        registry.register(Box::new(unchanged.clone()))?;
        registry.register(Box::new(rules_loaded.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_reload.clone()))?;
        registry.register(Box::new(last_reload_successful.clone()))?;
        registry.register(Box::new(certificate_expiry.clone()))?;
        registry.register(Box::new(rules_load_seconds.clone()))?;
        registry.register(Box::new(rules_source_errors.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections_idle_closed.clone()))?;
        registry.register(Box::new(requests_shed.clone()))?;
        registry.register(Box::new(inflight_body_bytes.clone()))?;
        registry.register(Box::new(unmirrored.clone()))?;
        registry.register(Box::new(pinned.clone()))?;
        registry.register(Box::new(unpinned.clone()))?;
        registry.register(Box::new(build_info))?;
        // Every reload series exists from the start at 0, so the first failure after start-up is
        // an increase that `increase()`/`rate()` see (a series born at 1 shows none).
        for what in ["rules", "certificate"] {
            for result in ["success", "failure"] {
                reloads.with_label_values(&[what, result]);
            }
        }
        // Likewise the leak guard's: the first denied image is an increase the alert sees.
        for action in ["allow", "warn", "deny"] {
            unmirrored.with_label_values(&[action]);
        }
        let pins = Pins {
            pinned: pinned.with_label_values(&["pinned"]),
            kept_on_update: pinned.with_label_values(&["kept_on_update"]),
            no_digest: pinned.with_label_values(&["no_digest"]),
        };
        Ok(Self {
            registry,
            requests,
            duration,
            rewritten,
            unchanged,
            rules_loaded,
            reloads,
            last_reload,
            last_reload_successful,
            certificate_expiry,
            rules_load_seconds,
            rules_source_errors,
            connections_open,
            connections_refused,
            connections_idle_closed,
            requests_shed,
            inflight_body_bytes,
            unmirrored,
            unpinned,
            pins,
        })
    }

    /// Records a load of `what` (`rules` or `certificate`).
    pub fn record_reload(&self, what: &str, success: bool) {
        self.reloads.with_label_values(&[what, if success { "success" } else { "failure" }]).inc();
        self.last_reload_successful.with_label_values(&[what]).set(i64::from(success));
        if success {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs_f64())
                .unwrap_or_default();
            self.last_reload.with_label_values(&[what]).set(now);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which `new` cannot build.
        if TextEncoder::new().encode(&self.registry.gather(), &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
