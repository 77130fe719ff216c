//! Another attempt after a passing failure (a timeout, a broken connection, 429, 5xx; see
//! [`SyncError::retryable`]), after a wait that doubles from [`FIRST_WAIT`] up to
//! [`MAX_WAIT`], or what a 429's `Retry-After` asked (already capped at a minute); and the
//! timeout of one step.

use std::future::Future;
use std::time::Duration;

use super::error::SyncError;

/// The wait before the second attempt.
pub const FIRST_WAIT: Duration = Duration::from_millis(500);
/// The longest wait between attempts (a `Retry-After` may ask up to a minute).
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds, fails for good, or `retries` more attempts failed.
pub async fn retried<T, F, Fut>(retries: u32, mut attempt: F) -> Result<T, SyncError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SyncError>>,
{
    let mut wait = FIRST_WAIT;
    let mut left = retries;
    loop {
        match attempt().await {
            Err(error) if error.retryable() && left > 0 => {
                left -= 1;
                tokio::time::sleep(error.retry_after().unwrap_or(wait)).await;
                wait = (wait * 2).min(MAX_WAIT);
            }
            answer => return answer,
        }
    }
}

/// `step` within `after`, else [`SyncError::Timeout`] naming `what`.
pub async fn within<T>(
    after: Duration,
    what: &'static str,
    step: impl Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    tokio::time::timeout(after, step).await.unwrap_or(Err(SyncError::Timeout { what, after }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::registry::CheckError;

    #[tokio::test(start_paused = true)]
    async fn passing_failures_are_retried_and_waited_for() {
        // (failures before success, retries, attempts made, succeeded)
        let table = [(0, 3, 1, true), (2, 3, 3, true), (5, 2, 3, false)];
        for (failures, retries, attempts, succeeded) in table {
            let made = AtomicU32::new(0);
            let started = tokio::time::Instant::now();
            let answer = retried(retries, || async {
                let attempt = made.fetch_add(1, Ordering::SeqCst);
                if attempt < failures {
                    Err(SyncError::source(
                        "s.io",
                        CheckError::RateLimited { retry_after: Some(Duration::from_secs(7)) },
                    ))
                } else {
                    Ok(attempt)
                }
            })
            .await;
            assert_eq!((made.load(Ordering::SeqCst), answer.is_ok()), (attempts, succeeded), "{failures} {retries}");
            assert_eq!(started.elapsed(), Duration::from_secs(7) * (attempts - 1), "Retry-After is honoured");
        }
        let made = AtomicU32::new(0);
        let answer: Result<(), _> = retried(3, || async {
            made.fetch_add(1, Ordering::SeqCst);
            Err(SyncError::source("s.io", CheckError::Status(404)))
        })
        .await;
        assert!(answer.is_err() && made.load(Ordering::SeqCst) == 1, "a final answer is not asked again");
        let slow = within(Duration::from_secs(1), "lookup", std::future::pending::<Result<(), SyncError>>()).await;
        assert_eq!(slow.unwrap_err().to_string(), "lookup: timeout after 1s");
    }
}
