//! Why a registry check gave no answer, said so an operator knows what to do: the status
//! and its meaning (`unauthorized (401): credentials for HOST rejected`, `rate limited
//! (429)`), a certificate the checks do not trust and the flag that fixes it, or mirrorswap's
//! own reason for not asking (`not asked: …`). Which failures are the registry's own (and so
//! put its host into backoff) is decided here too. No message holds a credential or a URL
//! query.

use std::time::Duration;

/// Why a check gave no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The lookup had its full `--check-timeout` and the registry did not answer.
    #[error("timeout after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The registry's host just failed and is not asked again until its backoff ends.
    #[error("failed {} ago, not asked again for {}", humantime::format_duration(*.ago), humantime::format_duration(*.left))]
    BackingOff { ago: Duration, left: Duration },
    /// The registry's host failed, and one lookup is probing it again now.
    #[error("failed {} ago, one lookup is probing it again", humantime::format_duration(*.ago))]
    Probing { ago: Duration },
    /// mirrorswap did not ask, by its own limits or because the image chose the registry.
    #[error("not asked: {0}")]
    NotAsked(NotAsked),
    /// 401 and no credentials for the registry.
    #[error("unauthorized (401): no credentials for {registry}")]
    NoCredentials { registry: String },
    /// 401 with the credentials mirrorswap has for the registry.
    #[error("unauthorized (401): credentials for {registry} rejected")]
    CredentialsRejected { registry: String },
    /// 403: the account may not read the repository.
    #[error("denied (403): {}", if *.with_credentials { "the credentials for the registry may not pull it" } else { "no credentials for the registry, which does not allow anonymous pulls" })]
    Denied { with_credentials: bool },
    /// 429, with the wait the registry asked for (capped), if it said one.
    #[error("rate limited (429){}", .retry_after.map(|wait| format!(", retry after {}", humantime::format_duration(wait))).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// Any other status.
    #[error("HTTP {}", status_text(*.0))]
    Status(u16),
    /// The registry's certificate chains to no trusted CA.
    #[error("untrusted certificate: add its CA with --registry-ca (or list the registry in --insecure-registry)")]
    UntrustedCertificate,
    /// Any other TLS failure (expired, wrong name, handshake).
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection could not be made (refused, no route, DNS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The registry broke the protocol (a reset, a malformed or oversized head).
    #[error("{0}")]
    Transport(String),
    /// An answer longer than mirrorswap reads; it was cut at the limit.
    #[error("{what} over {} bytes: cut at the limit", .limit)]
    TooLarge { what: &'static str, limit: usize },
    /// A manifest or blob whose bytes are not the digest they were asked by, or served as.
    #[error("digest {got} of the bytes served is not the expected {expected}")]
    DigestMismatch { expected: String, got: String },
    /// A manifest or config that cannot be read as one (said without quoting it).
    #[error("unreadable manifest: {0}")]
    Unreadable(String),
    /// The token service's answer could not be used.
    #[error("token: {0}")]
    Token(String),
    /// A token realm mirrorswap will not send credentials to.
    #[error("token realm `{realm}` refused, nothing sent: {why}")]
    Realm { realm: String, why: &'static str },
    /// The candidate is not a reference the client can ask for.
    #[error("not a valid reference: {0}")]
    Reference(String),
}

/// Why mirrorswap did not ask a registry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAsked {
    /// This request started as many lookups as `--check-max-lookups` allows.
    #[error("this request reached --check-max-lookups ({0})")]
    Limit(usize),
    /// The request's deadline passed before this candidate's turn (the ones before it
    /// stalled).
    #[error("deadline")]
    Deadline,
    /// The request's deadline passed while every `--check-host-concurrency` slot of the
    /// registry was taken by other lookups.
    #[error("deadline (all {limit} lookups to {registry} were in flight, --check-host-concurrency)")]
    Queued { registry: String, limit: usize },
    /// The image names another registry than its rule's target (a port or a host it chose).
    #[error("the image names registry {registry}, not its rule's target {target}")]
    ForeignRegistry { registry: String, target: String },
}

impl CheckError {
    /// The `result` label of `mirrorswap_registry_checks_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::BackingOff { .. } | Self::Probing { .. } => "backoff",
            Self::NotAsked(NotAsked::Limit(_)) => "limit",
            Self::NotAsked(NotAsked::Deadline) => "deadline",
            Self::NotAsked(NotAsked::Queued { .. }) => "queued",
            Self::NotAsked(NotAsked::ForeignRegistry { .. }) => "foreign",
            Self::NoCredentials { .. } | Self::CredentialsRejected { .. } | Self::Denied { .. } => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            _ => "error",
        }
    }

    /// Whether the registry itself failed, so its host backs off: no connection, TLS, a
    /// timeout of a lookup that had its full time, 5xx, 429, a broken answer. Never
    /// mirrorswap's own limits or refusals, and never an answer about credentials.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Timeout(_)
            | Self::UntrustedCertificate
            | Self::Tls(_)
            | Self::Connect(_)
            | Self::Transport(_)
            | Self::RateLimited { .. } => true,
            Self::Status(code) => *code >= 500,
            _ => false,
        }
    }

    /// Whether `--on-check-error swap` may rewrite to the candidate anyway: any failure to
    /// learn the answer but an image that chose its own registry and a request over its
    /// lookup limit (kept, as `--check-max-lookups` says).
    pub fn may_swap(&self) -> bool {
        !matches!(self, Self::NotAsked(NotAsked::ForeignRegistry { .. } | NotAsked::Limit(_)))
    }

    /// How long the registry asked to be left alone (429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// `500 Internal Server Error`: the code and its reason phrase, when it has one.
fn status_text(code: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(code).ok().and_then(|status| status.canonical_reason());
    match reason {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened() {
        let table: [(CheckError, &str); 8] = [
            (CheckError::NoCredentials { registry: "m.io".into() }, "unauthorized (401): no credentials for m.io"),
            (
                CheckError::CredentialsRejected { registry: "m.io".into() },
                "unauthorized (401): credentials for m.io rejected",
            ),
            (
                CheckError::RateLimited { retry_after: Some(Duration::from_secs(30)) },
                "rate limited (429), retry after 30s",
            ),
            (CheckError::RateLimited { retry_after: None }, "rate limited (429)"),
            (CheckError::Status(400), "HTTP 400 Bad Request"),
            (CheckError::Status(599), "HTTP 599"),
            (CheckError::NotAsked(NotAsked::Limit(32)), "not asked: this request reached --check-max-lookups (32)"),
            (CheckError::Timeout(Duration::from_secs(1)), "timeout after 1s"),
        ];
        for (error, message) in table {
            assert_eq!(error.to_string(), message);
        }
        assert!(CheckError::UntrustedCertificate.to_string().contains("--registry-ca"));
    }

    #[test]
    fn only_the_registrys_own_failures_are_outages() {
        let outages = [
            CheckError::Timeout(Duration::from_secs(1)),
            CheckError::Connect("refused".into()),
            CheckError::UntrustedCertificate,
            CheckError::Status(503),
            CheckError::RateLimited { retry_after: None },
        ];
        assert!(outages.iter().all(CheckError::is_outage));
        let not = [
            CheckError::NotAsked(NotAsked::Limit(32)),
            CheckError::NotAsked(NotAsked::Queued { registry: "m.io".into(), limit: 16 }),
            CheckError::NotAsked(NotAsked::Deadline),
            CheckError::BackingOff { ago: Duration::ZERO, left: Duration::ZERO },
            CheckError::NoCredentials { registry: "m.io".into() },
            CheckError::CredentialsRejected { registry: "m.io".into() },
            CheckError::Status(404),
            CheckError::Realm { realm: "http://a".into(), why: "x" },
        ];
        assert!(not.iter().all(|error| !error.is_outage()), "{not:?}");
    }
}
