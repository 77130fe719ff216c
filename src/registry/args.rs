//! The swap-policy flags (`serve`, `rewrite`), the pinning flags (`serve`, `rewrite`,
//! `audit`) and the registry and check flags (also `audit --check-mirror`), flattened into
//! each command, each with its `MIRRORSWAP_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::platform::{self, Platform};
use super::policy::Pinning;

/// Whether a rewrite needs the mirror to have the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SwapPolicy {
    /// Rewrite as the rules say; never contact a registry.
    #[default]
    Always,
    /// Rewrite to the first candidate target (most specific rule first) that the mirror has;
    /// keep the original when none has it.
    Exists,
}

/// What a failed lookup (timeout, 5xx, auth or TLS error) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OnCheckError {
    /// Try the next candidate; keep the original when none is known present.
    #[default]
    Keep,
    /// Rewrite anyway (air-gapped clusters, where the original can never be pulled).
    Swap,
}

/// The swap policy, for the commands that rewrite (`serve`, `rewrite`).
#[derive(Clone, Copy, Debug, Args)]
pub struct PolicyArgs {
    /// `always`: rewrite as the rules say, no registry contact. `exists`: rewrite only to a
    /// target the mirror has (manifest HEAD), trying less specific rules next.
    #[arg(long, env = "MIRRORSWAP_SWAP_POLICY", value_enum, default_value_t = SwapPolicy::Always)]
    pub swap_policy: SwapPolicy,
    /// `keep`: a failed lookup keeps the original (after trying the other candidates);
    /// `swap`: when no candidate is present, the first whose lookup failed is taken.
    #[arg(long, env = "MIRRORSWAP_ON_CHECK_ERROR", value_enum, default_value_t = OnCheckError::Keep)]
    pub on_check_error: OnCheckError,
    /// Most registry lookups one admission request may start; its other images are decided
    /// from cached answers or kept, with one warning. Bounds what one Pod with many images
    /// costs the mirror.
    #[arg(long, env = "MIRRORSWAP_CHECK_MAX_LOOKUPS", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub check_max_lookups: u16,
}

/// What `--swap-policy exists` also asks of a candidate: its digest, to pin to, and the
/// platforms it must cover. For `serve`, `rewrite` and `audit`.
#[derive(Clone, Debug, Default, Args)]
pub struct PinArgs {
    /// With --swap-policy exists: rewrite to `TARGET:TAG@sha256:…`, the digest the mirror gave
    /// for the tag in the same check (an index's for a multi-platform image), so every node
    /// pulls what was checked, even when the tag moves. A reference with a digest is left as it
    /// is. On UPDATE, an image whose rewrite is the old image without its digest keeps the old
    /// pinned reference (no restart when a GitOps tool re-applies the tag).
    #[arg(long, env = "MIRRORSWAP_PIN_DIGEST")]
    pub pin_digest: bool,
    /// With --swap-policy exists: OS/ARCH[/VARIANT] (comma-separated) every candidate must
    /// cover, by its index or its single manifest's config (read, capped, and cached with the
    /// answer); one that does not is `absent: lacks OS/ARCH` and the next is tried.
    #[arg(
        long,
        env = "MIRRORSWAP_REQUIRE_PLATFORMS",
        value_delimiter = ',',
        value_name = "OS/ARCH[/VARIANT]",
        value_parser = Platform::parse
    )]
    pub require_platforms: Vec<Platform>,
}

impl PinArgs {
    /// What the resolver pins and requires.
    pub fn pinning(&self) -> Pinning {
        Pinning { pin: self.pin_digest, digests: false, platforms: self.require_platforms.clone() }
    }

    /// Refuses pinning flags that would do nothing (without `--swap-policy exists` no registry
    /// is asked), and more than [`platform::MAX_REQUIRED`] platforms.
    pub fn check(&self, policy: SwapPolicy) -> Result<(), String> {
        if policy != SwapPolicy::Exists {
            let flag = match (self.pin_digest, self.require_platforms.is_empty()) {
                (true, _) => "--pin-digest",
                (false, false) => "--require-platforms",
                (false, true) => return Ok(()),
            };
            return Err(format!(
                "{flag} needs --swap-policy exists: the digest and the platforms come from the mirror's answer, and \
                 with `always` no registry is asked"
            ));
        }
        if self.require_platforms.len() > platform::MAX_REQUIRED {
            return Err(format!("--require-platforms names at most {} platforms", platform::MAX_REQUIRED));
        }
        Ok(())
    }
}

/// How the registries are asked: credentials, TLS, deadlines and the answer cache. Shared by
/// `serve`, `rewrite` and `audit --check-mirror`.
#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// Docker config JSON (`{"auths": {...}}`, the `.dockerconfigjson` of a pull Secret) with
    /// mirror credentials; reloaded when it changes. Each entry goes to exactly its
    /// `host[:port]` (`host` is the default port).
    #[arg(long, env = "MIRRORSWAP_REGISTRY_AUTH", value_name = "FILE")]
    pub registry_auth: Option<PathBuf>,
    /// PEM bundle of CAs trusted for registries, in addition to the system roots; a registry's
    /// self-signed certificate may be given as itself.
    #[arg(long, env = "MIRRORSWAP_REGISTRY_CA", value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// HOST[:PORT] (repeatable): TLS without certificate checks, plain HTTP if it speaks no
    /// TLS. Matches exactly that host and port (`HOST` alone is the default port).
    #[arg(
        long = "insecure-registry",
        env = "MIRRORSWAP_INSECURE_REGISTRY",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub insecure_registries: Vec<String>,
    /// One deadline for all lookups of one admission request, and the time one lookup is given.
    #[arg(long, env = "MIRRORSWAP_CHECK_TIMEOUT", default_value = "1s", value_parser = at_most_5m)]
    pub check_timeout: Duration,
    /// How long a "present" answer is cached.
    #[arg(long, env = "MIRRORSWAP_CHECK_CACHE_TTL", default_value = "5m", value_parser = at_most_30d)]
    pub check_cache_ttl: Duration,
    /// How long an "absent" answer is cached.
    #[arg(long, env = "MIRRORSWAP_CHECK_NEGATIVE_TTL", default_value = "30s", value_parser = at_most_30d)]
    pub check_negative_ttl: Duration,
    /// Most cached answers (bounds memory).
    #[arg(long, env = "MIRRORSWAP_CHECK_CACHE_ENTRIES", default_value_t = 100_000)]
    pub check_cache_entries: u64,
    /// After a registry failed (no connection, TLS, a timeout, 5xx or 429), how long it is
    /// not asked again (a 429's longer `Retry-After` is honoured, up to 1m); then one lookup
    /// probes it. During an outage requests answer at once instead of each waiting.
    #[arg(long, env = "MIRRORSWAP_CHECK_BACKOFF", default_value = "3s", value_parser = at_most_1h)]
    pub check_backoff: Duration,
    /// Most lookups in flight to one registry host, across all requests; a lookup waits for
    /// a slot only within its request's deadline.
    #[arg(long, env = "MIRRORSWAP_CHECK_HOST_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub check_host_concurrency: u16,
}

/// A duration of at most `max` (said as `limit`): longer ones mean nothing here, and
/// `Instant + Duration` or moka's time to live would overflow on the absurd ones.
pub fn at_most(value: &str, max: Duration, limit: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|error| error.to_string())?;
    if duration > max {
        return Err(format!("at most {limit}"));
    }
    Ok(duration)
}

fn at_most_5m(value: &str) -> Result<Duration, String> {
    at_most(value, Duration::from_secs(300), "5m")
}

fn at_most_1h(value: &str) -> Result<Duration, String> {
    at_most(value, Duration::from_secs(3600), "1h")
}

fn at_most_30d(value: &str) -> Result<Duration, String> {
    at_most(value, Duration::from_secs(30 * 86_400), "30d")
}
