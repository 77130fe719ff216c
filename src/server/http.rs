//! The two HTTP surfaces: the webhook (`POST /mutate`, `POST /`) with its
//! body limit, in-flight body budget and per-request timeout, and the admin
//! endpoints (`/metrics`, `/healthz`, `/readyz`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State as Shared};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::{BoxError, ServiceBuilder};

use super::admission;
use super::body_budget::{self, BodyBudget};
use super::state::State;

/// Bodies larger than this are answered on the blocking pool, off the async workers.
const INLINE_BODY_LIMIT: usize = 64 * 1024;

/// Request limits of the webhook listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest a request may take, body included; slower ones get 408.
    pub request_timeout: Duration,
}

/// A fixed review answered by the benchmark-only `/noop` route.
const NOOP_REVIEW: &str =
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"noop","allowed":true}}"#;

/// The webhook routes; `noop` adds the benchmark-only `POST /noop`. The timeout covers the
/// wait for the body budget too.
pub fn webhook_router(state: Arc<State>, limits: Limits, budget: BodyBudget, noop: bool) -> Router {
    let mut router = Router::new()
        .route("/mutate", post(mutate))
        .route("/", post(mutate))
        .route("/validate", post(super::validate::route));
    if noop {
        router = router.route("/noop", post(noop_route));
    }
    router
        .with_state(state)
        // The budget layer already read the body within this limit; this only lifts axum's
        // 2 MB default for the `Bytes` extractor to the same value.
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(budget, body_budget::reserve))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    (StatusCode::REQUEST_TIMEOUT, "the request took too long\n")
                }))
                .timeout(limits.request_timeout),
        )
}

/// The admin routes.
pub fn admin_router(state: Arc<State>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn mutate(Shared(state): Shared<Arc<State>>, JsonBody(is_json): JsonBody, body: Bytes) -> Response {
    respond(&state, is_json, body, Work::Admit).await
}

/// `/noop`: everything `/mutate` does (extractors, content-type check, metrics) but the
/// admission itself, so the load benchmark's ratio isolates the admission work.
async fn noop_route(Shared(state): Shared<Arc<State>>, JsonBody(is_json): JsonBody, body: Bytes) -> Response {
    respond(&state, is_json, body, Work::Fixed).await
}

/// What a webhook route does with a request body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Decide the admission.
    Admit,
    /// Answer [`NOOP_REVIEW`] without reading the body.
    Fixed,
}

async fn respond(state: &Arc<State>, is_json: bool, body: Bytes, work: Work) -> Response {
    let started = Instant::now();
    if !is_json {
        state.metrics.requests.with_label_values(&["-", "-", "invalid"]).inc();
        return (StatusCode::BAD_REQUEST, "the content type must be application/json\n").into_response();
    }
    let answer = if work == Work::Fixed {
        admission::Answer {
            status: StatusCode::OK,
            body: NOOP_REVIEW.as_bytes().to_vec(),
            kind: "-",
            operation: "-",
            result: "noop",
        }
    } else if let Some(resolver) = &state.resolver {
        // `--swap-policy exists`: parse once, ask the registries (cached, one deadline), decide.
        let rules = state.rules();
        let large = body.len() > INLINE_BODY_LIMIT;
        match cpu_bound(large, || admission::parse(&body)) {
            Ok(request) => {
                let images = cpu_bound(large, || admission::images_to_check(&request, &rules, &state.settings));
                let mut resolved = resolver.resolve(&rules, &images).await;
                // `--copy-on-miss`: images absent from every mirror are queued (never on a dry
                // run, whose webhooks must have no side effects), the warnings say so.
                if let Some(copier) = state.copier.as_ref().filter(|_| !request.is_dry_run()) {
                    copier.offer_misses(&mut resolved);
                }
                cpu_bound(large, || {
                    admission::answer_request(&request, &rules, &state.settings, &state.metrics, Some(&mut resolved))
                })
            }
            Err(answer) => answer,
        }
    } else if body.len() <= INLINE_BODY_LIMIT {
        admission::answer(&body, &state.rules(), &state.settings, &state.metrics)
    } else {
        let (state, rules) = (Arc::clone(state), state.rules());
        match tokio::task::spawn_blocking(move || admission::answer(&body, &rules, &state.settings, &state.metrics))
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                tracing::error!(%error, "admission task failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            }
        }
    };
    state.metrics.requests.with_label_values(&[answer.kind, answer.operation, answer.result]).inc();
    state.metrics.duration.observe(started.elapsed().as_secs_f64());
    let content_type = if answer.status == StatusCode::OK { "application/json" } else { "text/plain; charset=utf-8" };
    (answer.status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], answer.body).into_response()
}

/// Whether the request says its body is JSON, read without copying the headers (axum's
/// `HeaderMap` extractor clones them).
struct JsonBody(bool);

impl<S: Sync> FromRequestParts<S> for JsonBody {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(is_json(&parts.headers)))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

async fn metrics(Shared(state): Shared<Arc<State>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

async fn readyz(Shared(state): Shared<Arc<State>>) -> impl IntoResponse {
    if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if !state.rules_loaded() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no rules loaded yet\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Runs `work` where it does not hold up the other requests of this worker: for a `large`
/// body on the multi-threaded runtime, tokio moves them elsewhere first (`block_in_place`;
/// the work borrows the body, so `spawn_blocking` cannot take it). Small bodies, and a
/// single-threaded runtime (tests), run it in place.
fn cpu_bound<T>(large: bool, work: impl FnOnce() -> T) -> T {
    // The runtime is asked only for a large body: `Handle::current` clones an `Arc` every
    // worker shares, which a small request need not pay for three times.
    let multi_threaded =
        || tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread;
    if large && multi_threaded() { tokio::task::block_in_place(work) } else { work() }
}
