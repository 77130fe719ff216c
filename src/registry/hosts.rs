//! Per registry host (`host[:port]`): how many lookups may be in flight to it across all
//! requests (`--check-host-concurrency`), and whether it is backing off after failing.
//!
//! The backoff is a small circuit breaker. Only the registry's own failures open it (see
//! [`CheckError::is_outage`]), for `--check-backoff` or the `Retry-After` of a 429 if longer;
//! while open, lookups are not made. When the period ends one lookup goes through as a probe
//! (half-open) while the others still wait; its answer closes the breaker or opens it again.
//! A probe that never reports back (its request gave up before a slot was free) hands the
//! probe to the next lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::client::CheckError;

/// The hosts known so far. Only rule targets are asked, so this stays small; the bound is a
/// guard, past it idle hosts are forgotten.
const MAX_HOSTS: usize = 4096;
/// The longest backoff when `now + wait` does not fit an `Instant`.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Every host's state.
pub struct Hosts {
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    concurrency: usize,
    backoff: Duration,
    stale: Duration,
}

/// One host: its lookup slots and its breaker.
pub struct Host {
    pub name: String,
    pub slots: Arc<Semaphore>,
    pub concurrency: usize,
    breaker: Mutex<Breaker>,
    backoff: Duration,
    /// A probe not heard of for this long is given up (its lookup was dropped unreported).
    stale: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Breaker {
    Closed,
    Open {
        since: Instant,
        until: Instant,
    },
    /// One lookup is probing the host since `since`, which failed at `failed`.
    Probing {
        failed: Instant,
        since: Instant,
    },
}

/// How a lookup was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Normal,
    /// The one lookup after a backoff.
    Probe,
}

impl Hosts {
    /// `concurrency` lookups per host, `backoff` after a failure; a lookup takes at most
    /// `timeout`.
    pub fn new(concurrency: usize, backoff: Duration, timeout: Duration) -> Self {
        let stale = timeout.saturating_mul(2).saturating_add(Duration::from_secs(1));
        Self { hosts: Mutex::new(HashMap::new()), concurrency: concurrency.max(1), backoff, stale }
    }

    /// The state of `host`.
    pub fn get(&self, host: &str) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = hosts.get(host) {
            return Arc::clone(known);
        }
        if hosts.len() >= MAX_HOSTS {
            hosts.retain(|_, known| Arc::strong_count(known) > 1 || !known.is_idle());
        }
        let new = Arc::new(Host {
            name: host.to_owned(),
            slots: Arc::new(Semaphore::new(self.concurrency)),
            concurrency: self.concurrency,
            breaker: Mutex::new(Breaker::Closed),
            backoff: self.backoff,
            stale: self.stale,
        });
        hosts.insert(host.to_owned(), Arc::clone(&new));
        new
    }

    /// Forgets every backoff (new credentials or CAs).
    pub fn reset(&self) {
        let hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for host in hosts.values() {
            *host.breaker() = Breaker::Closed;
        }
    }
}

impl Host {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_idle(&self) -> bool {
        *self.breaker() == Breaker::Closed && self.slots.available_permits() == self.concurrency
    }

    /// Whether a lookup may go to the host now: the backoff error while it may not.
    pub fn admit(&self, now: Instant) -> Result<Pass, CheckError> {
        let mut breaker = self.breaker();
        match *breaker {
            Breaker::Closed => Ok(Pass::Normal),
            Breaker::Open { since, until } if now < until => {
                Err(CheckError::BackingOff { ago: round(now - since), left: round(until - now) })
            }
            Breaker::Open { since, .. } => {
                *breaker = Breaker::Probing { failed: since, since: now };
                Ok(Pass::Probe)
            }
            Breaker::Probing { failed, since } if now.saturating_duration_since(since) >= self.stale => {
                *breaker = Breaker::Probing { failed, since: now };
                Ok(Pass::Probe)
            }
            Breaker::Probing { failed, .. } => {
                Err(CheckError::Probing { ago: round(now.saturating_duration_since(failed)) })
            }
        }
    }

    /// The backoff error if the host is backing off now (it failed while a lookup queued).
    pub fn backing_off(&self, now: Instant) -> Option<CheckError> {
        match *self.breaker() {
            Breaker::Open { since, until } if now < until => {
                Some(CheckError::BackingOff { ago: round(now - since), left: round(until - now) })
            }
            _ => None,
        }
    }

    /// A lookup let through with `pass` was not made after all (no slot within its request's
    /// deadline): a probe hands its turn to the next lookup.
    pub fn abandon(&self, pass: Pass, now: Instant) {
        let mut breaker = self.breaker();
        if let (Pass::Probe, Breaker::Probing { failed, .. }) = (pass, *breaker) {
            *breaker = Breaker::Open { since: failed, until: now };
        }
    }

    /// What a lookup's outcome means for the host: the registry's own failure opens the
    /// breaker (for `--check-backoff`, or a longer `Retry-After`), any answer closes it.
    pub fn record(&self, outcome: &Result<super::client::Answer, CheckError>, now: Instant) {
        let mut breaker = self.breaker();
        match outcome {
            Err(error) if error.is_outage() => {
                let wait = error.retry_after().map_or(self.backoff, |asked| asked.max(self.backoff));
                if !wait.is_zero() {
                    let until = now.checked_add(wait).unwrap_or(now + MAX_WAIT);
                    *breaker = Breaker::Open { since: now, until };
                }
            }
            _ => *breaker = Breaker::Closed,
        }
    }
}

/// Milliseconds are enough for a message.
fn round(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::super::client::Answer;
    use super::*;

    #[test]
    fn a_failure_opens_the_breaker_one_probe_closes_it() {
        let hosts = Hosts::new(2, Duration::from_secs(3), Duration::from_secs(1));
        let host = hosts.get("m.io");
        let t0 = Instant::now();
        assert_eq!(host.admit(t0), Ok(Pass::Normal));
        host.record(&Err(CheckError::Connect("refused".into())), t0);
        let backing_off = host.admit(t0 + Duration::from_secs(1)).unwrap_err();
        assert!(backing_off.to_string().contains("not asked again for 2s"), "{backing_off}");
        // The period is over: one probe, the others still wait for its answer.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(host.admit(later), Ok(Pass::Probe));
        assert!(matches!(host.admit(later), Err(CheckError::Probing { .. })));
        host.record(&Ok(Answer::Absent(404)), later);
        assert_eq!(host.admit(later), Ok(Pass::Normal));
        // A probe never heard of again is given up after twice the timeout and a second.
        host.record(&Err(CheckError::Status(503)), later);
        let probe = later + Duration::from_secs(3);
        assert_eq!(host.admit(probe), Ok(Pass::Probe));
        assert!(host.admit(probe + Duration::from_secs(2)).is_err());
        assert_eq!(host.admit(probe + Duration::from_secs(3)), Ok(Pass::Probe));
    }

    #[test]
    fn answers_and_our_own_limits_never_open_it_and_retry_after_lengthens_it() {
        let hosts = Hosts::new(2, Duration::from_secs(3), Duration::from_secs(1));
        let host = hosts.get("m.io");
        let t0 = Instant::now();
        for answer in [
            Err(CheckError::NoCredentials { registry: "m.io".into() }),
            Err(CheckError::Status(404)),
            Err(CheckError::NotAsked(super::super::client::NotAsked::Limit(32))),
            Ok(Answer::Present(super::super::client::Found::default())),
        ] {
            host.record(&answer, t0);
            assert_eq!(host.admit(t0), Ok(Pass::Normal), "{answer:?}");
        }
        host.record(&Err(CheckError::RateLimited { retry_after: Some(Duration::from_secs(30)) }), t0);
        assert!(host.admit(t0 + Duration::from_secs(29)).is_err());
        assert_eq!(host.admit(t0 + Duration::from_secs(30)), Ok(Pass::Probe));
        // An abandoned probe hands its turn on.
        host.abandon(Pass::Probe, t0 + Duration::from_secs(30));
        assert_eq!(host.admit(t0 + Duration::from_secs(30)), Ok(Pass::Probe));
    }

    #[test]
    fn without_a_backoff_nothing_is_refused() {
        let host = Hosts::new(1, Duration::ZERO, Duration::from_secs(1)).get("m.io");
        let t0 = Instant::now();
        host.record(&Err(CheckError::Timeout(Duration::from_secs(1))), t0);
        assert_eq!(host.admit(t0), Ok(Pass::Normal));
    }
}
