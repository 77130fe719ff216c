//! The in-flight body budget: a bound on the request-body bytes all webhook requests hold at
//! once (`--max-inflight-body-bytes`). Before its body is read, a request reserves its
//! declared `Content-Length` (or `--max-body-bytes` when it declares none); it keeps the
//! reservation until its answer is ready. A request that finds no room within
//! `--inflight-body-wait` is answered 503 with `Retry-After` and counted. Reserving up front
//! cannot deadlock: no request ever holds part of the budget while waiting for more.
//! Holding the reservation, it reads the body whole (`super::body`), so what a request
//! holds is the body it reserved for, once; one over `--max-body-bytes` gets 413.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body;
use super::metrics::Metrics;

/// Budget unit: reservations are counted in KiB, so any size fits the semaphore's `u32`.
const UNIT: usize = 1024;
/// What a shed request is told to wait before retrying, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

/// The shared budget.
#[derive(Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    capacity: u32,
    max_body_bytes: usize,
    wait: Duration,
    /// `mirrorswap_requests_shed_total` (the state is cloned per request: two handles, not
    /// every metric).
    shed: prometheus::IntCounter,
    /// `mirrorswap_inflight_body_bytes`.
    inflight: prometheus::IntGauge,
}

impl BodyBudget {
    /// A budget of `max_inflight_bytes` for bodies of at most `max_body_bytes`; a request
    /// waits up to `wait` for room.
    pub fn new(max_inflight_bytes: usize, max_body_bytes: usize, wait: Duration, metrics: Metrics) -> Self {
        let capacity = u32::try_from(max_inflight_bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        let (shed, inflight) = (metrics.requests_shed.clone(), metrics.inflight_body_bytes.clone());
        Self { units: Arc::new(Semaphore::new(capacity as usize)), capacity, max_body_bytes, wait, shed, inflight }
    }

    /// Units a request reserves: its declared length, at most the body limit (a longer body
    /// is refused with 413 when read), or the body limit when it declares none.
    fn cost(&self, declared: Option<u64>) -> u32 {
        let limit = self.max_body_bytes as u64;
        let bytes = declared.map_or(limit, |declared| declared.min(limit));
        let units = bytes.div_ceil(UNIT as u64).max(1);
        u32::try_from(units).unwrap_or(u32::MAX).min(self.capacity)
    }
}

/// Middleware: reserve, read the body, then run the request; or answer 503 (no room), 413
/// (over the body limit) or 400 (a broken body).
pub async fn reserve(State(budget): State<BodyBudget>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let units = budget.cost(declared);
    let acquire = Arc::clone(&budget.units).acquire_many_owned(units);
    match tokio::time::timeout(budget.wait, acquire).await {
        Ok(Ok(permit)) => {
            let _reserved = Reserved::new(permit, units, &budget.inflight);
            let (parts, body) = request.into_parts();
            match body::read_whole(body, declared, budget.max_body_bytes).await {
                // One frame: the handlers' `Bytes` extractor takes it without a copy.
                Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
                Err(error) => error.into_response(),
            }
        }
        // A closed semaphore cannot happen (it is never closed); treat it like a full one.
        Ok(Err(_)) | Err(_) => {
            budget.shed.inc();
            let headers = [
                (header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS)),
                (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
            ];
            (StatusCode::SERVICE_UNAVAILABLE, headers, "busy: too many request bodies in flight; retry\n")
                .into_response()
        }
    }
}

/// A reservation, shown in the gauge while held (also when the request is cancelled).
struct Reserved {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    gauge: prometheus::IntGauge,
}

impl Reserved {
    fn new(permit: OwnedSemaphorePermit, units: u32, gauge: &prometheus::IntGauge) -> Self {
        let bytes = i64::from(units) * UNIT as i64;
        gauge.add(bytes);
        Self { _permit: permit, bytes, gauge: gauge.clone() }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reserves_its_declared_length_capped_by_the_limits() {
        let metrics = Metrics::new().unwrap();
        let budget = BodyBudget::new(8 * 1024 * 1024, 3 * 1024 * 1024, Duration::ZERO, metrics);
        let cases = [
            (Some(0), 1),
            (Some(1), 1),
            (Some(1024), 1),
            (Some(1025), 2),
            (Some(2_621_440), 2560),
            (Some(u64::MAX), 3072),
            (None, 3072),
        ];
        for (declared, units) in cases {
            assert_eq!(budget.cost(declared), units, "{declared:?}");
        }
        let small = BodyBudget::new(1, 3 * 1024 * 1024, Duration::ZERO, Metrics::new().unwrap());
        assert_eq!(small.cost(None), 1, "never more than the whole budget");
    }
}
