//! `mirrorswap serve` flags; each can also be set through its `MIRRORSWAP_*`
//! environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::logging::LogFormat;
use crate::k8s::api::{ObjectKind, ObjectSource};
use crate::registry::args::PinArgs;
use crate::registry::{CheckArgs, PolicyArgs, SwapPolicy};
use crate::rules_file::Format;
use crate::rules_file::args::EngineArgs;
use crate::sync::miss::CopyOnMissArgs;

/// `--max-body-bytes`' default, 20 MiB: the largest review the API server sends. An UPDATE
/// carries `object` and `oldObject`, each at most what etcd stores of one object (1.5 MiB, its
/// default `--max-request-bytes`). The JSON the API server writes can be six times what is
/// stored: a Pod is stored as protobuf, one byte per character, and Go's JSON encoder writes
/// each `<`, `>`, `&`, control character or invalid UTF-8 byte as `\u003c`, six bytes. So
/// 2 × 6 × 1.5 MiB = 18 MiB, and 2 MiB for the rest (user info, groups, options). A 3 MiB
/// limit (the API server's own for request bodies) refused such an update with 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 20 * 1024 * 1024;

/// Arguments of `mirrorswap serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener (`POST /mutate`, `POST /`).
    #[arg(long, env = "MIRRORSWAP_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin listener (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "MIRRORSWAP_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Serving certificate chain (PEM), reloaded when it changes. Without it and --tls-key,
    /// a development certificate for localhost/127.0.0.1 is generated.
    #[arg(long, env = "MIRRORSWAP_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM), reloaded with it.
    #[arg(long, env = "MIRRORSWAP_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where the development CA is written when no certificate is given
    /// [default: $TMPDIR/mirrorswap-dev-ca.pem, /tmp/mirrorswap-dev-ca.pem on Linux].
    #[arg(long, env = "MIRRORSWAP_DEV_CA_OUT", value_name = "FILE")]
    pub dev_ca_out: Option<PathBuf>,
    /// Rules file (maps or YAML), reloaded when it changes. Without any rules source, a
    /// built-in example rule set (Palette's mirror list) is used.
    #[arg(long, env = "MIRRORSWAP_RULES", value_name = "FILE", group = "rules_source")]
    pub rules: Option<PathBuf>,
    /// Read rules once at start from this environment variable (e.g. MIRROR_REGISTRIES).
    #[arg(long, env = "MIRRORSWAP_RULES_ENV", value_name = "VAR", group = "rules_source")]
    pub rules_env: Option<String>,
    /// Rules from a Secret, read and watched through the Kubernetes API (needs get/list/watch
    /// on it): NAMESPACE/NAME[:KEY], KEY defaulting to MIRROR_REGISTRIES, e.g. Palette's
    /// `jet-system/registry-info`. Edits apply within seconds; a bad edit keeps the last good
    /// rules; a deleted Secret means no rules. Ready once the first answer arrived.
    #[arg(long, env = "MIRRORSWAP_RULES_SECRET", value_name = "NAMESPACE/NAME[:KEY]", group = "rules_source",
          value_parser = |value: &str| ObjectSource::parse(ObjectKind::Secret, value))]
    pub rules_secret: Option<ObjectSource>,
    /// As --rules-secret, from a ConfigMap (`data` or `binaryData`; KEY defaults to MIRROR_REGISTRIES).
    #[arg(long, env = "MIRRORSWAP_RULES_CONFIGMAP", value_name = "NAMESPACE/NAME[:KEY]", group = "rules_source",
          value_parser = |value: &str| ObjectSource::parse(ObjectKind::ConfigMap, value))]
    pub rules_configmap: Option<ObjectSource>,
    /// Kubeconfig for --rules-secret/--rules-configmap; by default the in-cluster service
    /// account, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "MIRRORSWAP_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Rules format; by default .yaml/.yml files (and keys) are yaml, anything else (and --rules-env) maps.
    #[arg(long, env = "MIRRORSWAP_FORMAT", value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub check: CheckArgs,
    #[command(flatten)]
    pub copy: CopyOnMissArgs,
    /// Accept a reload that yields no rules while rules are in force. By default such a reload
    /// (an emptied file, a key emptied in the Secret or ConfigMap) is refused: the last good
    /// rules stay and the failure is logged and counted.
    #[arg(long, env = "MIRRORSWAP_ALLOW_EMPTY_RULES")]
    pub allow_empty_rules: bool,
    #[command(flatten)]
    pub validation: super::validate::ValidationArgs,
    /// Record the original images in the `mirrorswap.io/original-images` annotation.
    #[arg(long, env = "MIRRORSWAP_ANNOTATE_ORIGINAL")]
    pub annotate_original: bool,
    /// REGISTRY=SECRET (repeatable): when an image of a Pod or template is rewritten to
    /// REGISTRY (host[:port] of the new image), add SECRET to `spec.imagePullSecrets`.
    #[arg(long = "pull-secret", env = "MIRRORSWAP_PULL_SECRETS", value_delimiter = ',', value_parser = pull_secret)]
    pub pull_secrets: Vec<(String, String)>,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "MIRRORSWAP_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Longest time one request (body included) may take; slower ones get 408. Set it to the
    /// webhook's `timeoutSeconds` (the chart does). With `--swap-policy exists` it must be above
    /// --check-timeout (serve refuses to start otherwise).
    #[arg(long, env = "MIRRORSWAP_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Largest accepted request body; larger gets 413, which `failurePolicy: Ignore` admits
    /// unmutated. The default is the largest review the API server sends (see
    /// [`DEFAULT_MAX_BODY_BYTES`]); --max-inflight-body-bytes must be at least this.
    #[arg(long, env = "MIRRORSWAP_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Most simultaneous webhook connections; more are closed at accept, before the TLS
    /// handshake (counted in mirrorswap_connections_refused_total, logged at most every 10 s).
    #[arg(long, env = "MIRRORSWAP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Close an HTTP/1.1 or HTTP/2 connection after this long with no request in flight
    /// (HTTP/2 gets a GOAWAY). Keep it below the API server's 90 s idle reuse, so the server,
    /// not a request racing the close, ends the connection.
    #[arg(long, env = "MIRRORSWAP_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// Most concurrent HTTP/2 streams (requests) per connection; the API server opens
    /// another connection beyond it.
    #[arg(long, env = "MIRRORSWAP_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,
    /// Most request-body bytes held at once, across all requests: each request reserves its
    /// Content-Length (or --max-body-bytes when it declares none) before its body is read.
    /// Peak memory is about the idle RSS plus 2x this (README, "Limits"); at least --max-body-bytes.
    #[arg(long, env = "MIRRORSWAP_MAX_INFLIGHT_BODY_BYTES", default_value_t = 24 * 1024 * 1024)]
    pub max_inflight_body_bytes: usize,
    /// How long a request waits for --max-inflight-body-bytes to have room before it is
    /// answered 503 with Retry-After (counted in mirrorswap_requests_shed_total).
    #[arg(long, env = "MIRRORSWAP_INFLIGHT_BODY_WAIT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub inflight_body_wait: Duration,
    /// How often watched files are re-read even without a change event.
    #[arg(long, env = "MIRRORSWAP_RELOAD_POLL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub reload_poll: Duration,
    /// Also serve `POST /noop` on the webhook listener: `/mutate`'s handler (body, content
    /// type, metrics) answering a fixed review without the admission work, so the load
    /// benchmark can compare `/mutate` with the same stack doing nothing.
    #[arg(long, env = "MIRRORSWAP_BENCH_NOOP_ROUTE", hide = true)]
    pub bench_noop_route: bool,
    /// Log line format.
    #[arg(long, env = "MIRRORSWAP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level of mirrorswap's own lines (`debug` keeps its dependencies at `info`), or a filter
    /// (`mirrorswap=trace,h2=debug`); RUST_LOG wins when set.
    #[arg(long, env = "MIRRORSWAP_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl ServeArgs {
    /// The Kubernetes object holding the rules, if rules come from the API.
    pub fn rules_object(&self) -> Option<&ObjectSource> {
        self.rules_secret.as_ref().or(self.rules_configmap.as_ref())
    }

    /// Refuses flags that contradict each other, naming both: a body budget that could never
    /// hold the largest request, and (with `--swap-policy exists`) a registry deadline that
    /// outlasts the request's own, so the request would be answered 408 while it still waits.
    pub fn check_consistent(&self) -> Result<(), ConflictingFlags> {
        if self.max_inflight_body_bytes < self.max_body_bytes {
            return Err(ConflictingFlags(format!(
                "--max-inflight-body-bytes ({}) must be at least --max-body-bytes ({}): a largest request could never be read",
                self.max_inflight_body_bytes, self.max_body_bytes
            )));
        }
        self.pin.check(self.policy.swap_policy).map_err(ConflictingFlags)?;
        if self.copy.copy_on_miss && self.policy.swap_policy != SwapPolicy::Exists {
            return Err(ConflictingFlags(
                "--copy-on-miss needs --swap-policy exists: only the mirrors' answers say which images they lack"
                    .to_owned(),
            ));
        }
        let check = self.check.check_timeout;
        if self.policy.swap_policy == SwapPolicy::Exists && check >= self.request_timeout {
            return Err(ConflictingFlags(format!(
                "--check-timeout ({}) must be below --request-timeout ({}): every request would be answered 408 \
                 while it still waits for the registry. Lower --check-timeout, or raise --request-timeout (up to \
                 the webhook's timeoutSeconds) and leave a second for the rest of the request",
                humantime::format_duration(check),
                humantime::format_duration(self.request_timeout)
            )));
        }
        Ok(())
    }

    /// Where the development CA goes.
    pub fn dev_ca_path(&self) -> PathBuf {
        self.dev_ca_out.clone().unwrap_or_else(|| std::env::temp_dir().join("mirrorswap-dev-ca.pem"))
    }
}

/// Two `serve` flags that contradict each other; the message names both.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConflictingFlags(String);

/// A duration above zero.
fn positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if duration.is_zero() => Err("must be above zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// Parses `REGISTRY=SECRET`; SECRET must be a Kubernetes object name.
fn pull_secret(value: &str) -> Result<(String, String), String> {
    let (registry, secret) = value.split_once('=').ok_or_else(|| format!("`{value}`: expected REGISTRY=SECRET"))?;
    let registry = registry.trim();
    let secret = secret.trim();
    let name_ok = !secret.is_empty()
        && secret.len() <= 253
        && secret.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && secret.starts_with(|c: char| c.is_ascii_alphanumeric())
        && secret.ends_with(|c: char| c.is_ascii_alphanumeric());
    if registry.is_empty() || registry.contains('/') {
        return Err(format!("`{value}`: REGISTRY is a host[:port], such as harbor.example.org"));
    }
    if !name_ok {
        return Err(format!("`{value}`: SECRET must be a Kubernetes name ([a-z0-9.-])"));
    }
    Ok((registry.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn contradicting_flags_are_refused_naming_both() {
        // (flags, the refusal's text or "" when they are consistent)
        let table: [(&[&str], &str); 13] = [
            (&[], ""),
            (&["--swap-policy=exists"], ""),
            (&["--swap-policy=exists", "--check-timeout=4s"], ""),
            (
                &["--swap-policy=exists", "--check-timeout=5s"],
                "--check-timeout (5s) must be below --request-timeout (5s)",
            ),
            (&["--swap-policy=exists", "--check-timeout=8s", "--request-timeout=10s"], ""),
            (
                &["--swap-policy=exists", "--check-timeout=8s"],
                "--check-timeout (8s) must be below --request-timeout (5s)",
            ),
            // `always` never asks a registry: the deadline is unused.
            (&["--check-timeout=8s"], ""),
            (
                &["--max-body-bytes=2000", "--max-inflight-body-bytes=1000"],
                "--max-inflight-body-bytes (1000) must be at least",
            ),
            // Pinning needs the mirror's answer.
            (&["--swap-policy=exists", "--pin-digest", "--require-platforms=linux/amd64,linux/arm64"], ""),
            (&["--pin-digest"], "--pin-digest needs --swap-policy exists"),
            (&["--require-platforms=linux/arm64"], "--require-platforms needs --swap-policy exists"),
            (&["--copy-on-miss"], "--copy-on-miss needs --swap-policy exists"),
            (&["--swap-policy=exists", "--copy-on-miss", "--copy-allow-source=ghcr.io/team,127.0.0.1:5000"], ""),
        ];
        for (flags, refused) in table {
            let args = Serve::try_parse_from(["serve"].iter().chain(flags)).expect("parses").args;
            match args.check_consistent() {
                Ok(()) => assert_eq!(refused, "", "{flags:?}"),
                Err(error) => assert!(!refused.is_empty() && error.to_string().contains(refused), "{flags:?}: {error}"),
            }
        }
    }
}
