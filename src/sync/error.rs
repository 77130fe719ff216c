//! Why one image (or one of its parts) was not copied, said so an operator knows which side
//! failed and what to do: `source 127.0.0.1:5000: unauthorized (401): …`, `mirror m.io: HTTP
//! 400 MANIFEST_BLOB_UNKNOWN`, `blob sha256:…: the source sent bytes whose digest is …`. No
//! message holds a credential or a URL query. Which failures are worth another attempt is
//! decided here too.

use std::time::Duration;

use crate::registry::CheckError;
use crate::registry::refused::PushError;

/// Why a copy failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// A request to the source failed.
    #[error("source {host}: {error}")]
    Source { host: String, error: CheckError },
    /// A request to the mirror failed or was refused.
    #[error("mirror {host}: {error}")]
    Mirror { host: String, error: PushError },
    /// The source has no such manifest.
    #[error("not found at the source: {0}")]
    NotFound(String),
    /// A blob's bytes are not its digest: nothing was committed.
    #[error("blob {digest}: the source sent bytes whose digest is {got}; not committed")]
    BlobDigest { digest: String, got: String },
    /// A blob's length is not the one its manifest declares: nothing was committed.
    #[error("blob {digest}: the source sent {got} bytes where the manifest says {size}; not committed")]
    BlobSize { digest: String, size: u64, got: u64 },
    /// A manifest mirrorswap does not copy (malformed, schema 1, too deep, too many entries).
    #[error("manifest {digest}: {why}")]
    Manifest { digest: String, why: String },
    /// The image or the request cannot be copied as asked.
    #[error("{0}")]
    Refused(String),
    /// The archive (`--to-archive`, `--from-archive`) could not be written or read, or holds
    /// bytes that are not their digest.
    #[error("archive {file}: {why}")]
    Archive { file: String, why: String },
    /// The step took longer than its timeout.
    #[error("{what}: timeout after {}", humantime::format_duration(*.after))]
    Timeout { what: &'static str, after: Duration },
}

impl SyncError {
    /// A failed source request.
    pub fn source(host: &str, error: CheckError) -> Self {
        Self::Source { host: host.to_owned(), error }
    }

    /// A failed mirror request.
    pub fn mirror(host: &str, error: impl Into<PushError>) -> Self {
        Self::Mirror { host: host.to_owned(), error: error.into() }
    }

    /// Whether another attempt may succeed: a timeout, a failed or broken connection, 429 or
    /// 5xx. Never credentials, a refusal, or bytes that are not their digest.
    pub fn retryable(&self) -> bool {
        let check = match self {
            Self::Timeout { .. } => return true,
            Self::Source { error, .. } => Some(error),
            Self::Mirror { error, .. } => error.check(),
            _ => None,
        };
        match check {
            Some(CheckError::Timeout(_) | CheckError::Connect(_) | CheckError::Transport(_)) => true,
            Some(CheckError::RateLimited { .. }) => true,
            Some(CheckError::Status(code)) => *code >= 500,
            _ => false,
        }
    }

    /// How long the registry asked to be left alone (429 `Retry-After`, capped).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Source { error, .. } => error.retry_after(),
            Self::Mirror { error, .. } => error.check().and_then(CheckError::retry_after),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_failures_are_retried() {
        let retried = [
            SyncError::source("s.io", CheckError::RateLimited { retry_after: None }),
            SyncError::source("s.io", CheckError::Status(503)),
            SyncError::mirror("m.io", CheckError::Connect("refused".into())),
            SyncError::Timeout { what: "blob", after: Duration::from_secs(1) },
        ];
        assert!(retried.iter().all(SyncError::retryable), "{retried:?}");
        let final_ = [
            SyncError::source("s.io", CheckError::CredentialsRejected { registry: "s.io".into() }),
            SyncError::source("s.io", CheckError::Status(404)),
            SyncError::mirror("m.io", PushError::Refused { status: 400, code: None }),
            SyncError::BlobDigest { digest: "sha256:a".into(), got: "sha256:b".into() },
            SyncError::NotFound("s.io/a:1".into()),
        ];
        assert!(final_.iter().all(|error| !error.retryable()), "{final_:?}");
        let limited = SyncError::source("s.io", CheckError::RateLimited { retry_after: Some(Duration::from_secs(2)) });
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(limited.to_string(), "source s.io: rate limited (429), retry after 2s");
    }
}
