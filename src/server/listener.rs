//! The webhook listener: accepts TCP connections up to `--max-connections`, runs the TLS
//! handshake, serves HTTP/1.1 or HTTP/2 through hyper, reclaims idle connections, and shuts
//! down gracefully.
//!
//! - **Refusals happen at accept.** A connection over the cap is closed before any TLS work:
//!   the cheapest answer under a flood, and the API server's webhook client retries a reset
//!   connection with backoff (a 503 after a full handshake would cost a handshake per attempt
//!   and is not retried). Each refusal is counted; the log gets at most one line per
//!   [`LOG_EVERY`], with the count since the last one.
//! - **Idle connections are closed gracefully** (HTTP/2 GOAWAY, HTTP/1.1 close between
//!   requests) once no request has been in flight for `--idle-timeout`, and a new connection
//!   that sends no request within `--request-timeout`. A connection closed for idleness gets
//!   `--request-timeout` more to finish (a request racing the close, a slow-loris head that
//!   hyper's graceful close waits for), then it is dropped; on shutdown, `--shutdown-grace`.
//! - **HTTP/2** pings every [`KEEP_ALIVE_INTERVAL`] find dead peers; streams per connection
//!   are capped by `--http2-max-concurrent-streams`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::{debug, warn};

use super::metrics::Metrics;

/// At most one log line per this long about refused connections (and failed accepts).
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// How often an HTTP/2 connection is pinged, idle or not.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered before the connection is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 flow-control window per stream and per connection: the protocol's default (hyper
/// raises it to 1 MiB). It bounds what a client can push that no handler has read yet, e.g.
/// while its request waits for the body budget: with 1 MiB, 32 waiting h2 clients held
/// 32 MiB outside the budget. The largest review (`--max-body-bytes`, 20 MiB) then takes ~320
/// window updates, on a cluster network tens of milliseconds: both ends must send without
/// Nagle's delay (TCP_NODELAY, set here and by Go's net package), or each window waits ~40 ms
/// for a delayed ACK.
const HTTP2_WINDOW: u32 = 65_535;
/// hyper adds its timeouts to `Instant::now()` unchecked: a day is more than any sane setting.
const MAX_TIMER: Duration = Duration::from_secs(86_400);
/// Pause after a failed accept (e.g. EMFILE), so a failing listener does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connection limits and timers of the webhook listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionSettings {
    /// Most simultaneous connections; more are closed at accept.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A new connection must start its first request within this long.
    pub first_request_timeout: Duration,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
}

/// What the listener's tasks are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Run,
    /// Stop accepting; connections finish their requests and close.
    Graceful,
    /// Drop every connection now.
    Now,
}

/// A serving webhook listener.
pub struct Webhook {
    /// The bound address.
    pub addr: SocketAddr,
    stop: watch::Sender<Stop>,
    slots: Arc<Semaphore>,
    max_connections: u32,
    accept_loop: JoinHandle<()>,
}

impl Webhook {
    /// Binds `addr` and serves `router` over TLS with `tls`.
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        router: Router,
        settings: ConnectionSettings,
        metrics: Metrics,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let max_connections = u32::try_from(settings.max_connections.max(1)).unwrap_or(u32::MAX);
        let slots = Arc::new(Semaphore::new(max_connections as usize));
        let (stop, stopped) = watch::channel(Stop::Run);
        let shared =
            Arc::new(Shared { tls: TlsAcceptor::from(tls), http: http_builder(&settings), router, settings, metrics });
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&slots), shared, stopped));
        Ok(Self { addr, stop, slots, max_connections, accept_loop })
    }

    /// Stops accepting (the port is closed), lets open connections finish their requests
    /// within `grace`, then drops the rest.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.send_replace(Stop::Graceful);
        if let Err(error) = self.accept_loop.await {
            warn!(%error, "the accept loop failed");
        }
        // Every connection holds a slot until its task ends: all slots back means all closed.
        let all_closed = self.slots.acquire_many(self.max_connections);
        if tokio::time::timeout(grace, all_closed).await.is_err() {
            warn!(grace = ?grace, "connections still open after the shutdown grace; closing them");
            self.stop.send_replace(Stop::Now);
            let _ = tokio::time::timeout(Duration::from_secs(1), self.slots.acquire_many(self.max_connections)).await;
        }
    }
}

/// What every connection task reads.
struct Shared {
    tls: TlsAcceptor,
    http: auto::Builder<TokioExecutor>,
    router: Router,
    settings: ConnectionSettings,
    metrics: Metrics,
}

fn http_builder(settings: &ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The idle close below ends a kept-alive HTTP/1.1 connection between requests; this
    // bounds a request head trickled in after a pause the same way.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.idle_timeout.saturating_add(settings.first_request_timeout).min(MAX_TIMER));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .initial_stream_window_size(HTTP2_WINDOW)
        .initial_connection_window_size(HTTP2_WINDOW)
        .max_concurrent_streams(settings.http2_max_concurrent_streams.max(1));
    builder
}

async fn accept_loop(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Stop>,
) {
    let mut refused = RateLimited::default();
    let mut failed = RateLimited::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|state| *state != Stop::Run) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    let open = Open::new(slot, &shared.metrics);
                    tokio::spawn(connection(tcp, Arc::clone(&shared), open, stop.clone()));
                }
                Err(_) => {
                    drop(tcp);
                    shared.metrics.connections_refused.inc();
                    if let Some((count, since)) = refused.hit() {
                        warn!(
                            refused = count,
                            since = ?since,
                            max_connections = shared.settings.max_connections,
                            "refused {count} connection(s) in the last {since:.0?}: --max-connections reached"
                        );
                    }
                }
            },
            Err(error) => {
                if let Some((count, _)) = failed.hit() {
                    warn!(%error, failures = count, "accepting a connection failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // Dropping the listener closes the port: new clients are refused by the kernel.
}

/// One connection, from the TLS handshake until it closes.
async fn connection(tcp: TcpStream, shared: Arc<Shared>, _open: Open, mut stop: watch::Receiver<Stop>) {
    // Answers are one write each; Nagle would only delay them.
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(shared.settings.handshake_timeout, shared.tls.accept(tcp));
    let tls = tokio::select! {
        biased;
        _ = stop.wait_for(|state| *state != Stop::Run) => return,
        handshake = handshake => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return debug!(%error, "TLS handshake failed"),
            Err(_) => return debug!("TLS handshake timed out"),
        },
    };
    let activity = Activity::default();
    let service = TowerToHyperService::new(Tracked { inner: shared.router.clone(), activity: activity.clone() });
    let connection = shared.http.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let settings = shared.settings;
    // Set once the connection is closing; `give_up` only for an idle close (a shutdown has its own grace).
    let (mut closing, mut give_up) = (false, None::<Instant>);
    loop {
        let deadline = give_up.unwrap_or_else(far_future);
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            () = activity.idle(settings.first_request_timeout, settings.idle_timeout), if !closing => {
                shared.metrics.connections_idle_closed.inc();
                connection.as_mut().graceful_shutdown();
                closing = true;
                give_up = Some(Instant::now() + settings.first_request_timeout.min(MAX_TIMER));
            }
            state = stop.wait_for(move |state| *state == Stop::Now || (*state == Stop::Graceful && !closing)) => {
                if !matches!(state.as_deref(), Ok(Stop::Graceful)) {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
                give_up = None;
            }
            () = tokio::time::sleep_until(deadline.into()), if give_up.is_some() => return,
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// An open connection: its slot under `--max-connections` and its place in the gauge.
struct Open {
    _slot: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Open {
    fn new(slot: OwnedSemaphorePermit, metrics: &Metrics) -> Self {
        metrics.connections_open.inc();
        Self { _slot: slot, gauge: metrics.connections_open.clone() }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Requests in flight on one connection, and whether it has had any.
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    in_flight: usize,
    started: bool,
}

/// Watches a connection's requests, so it can be closed when idle.
#[derive(Clone, Default)]
struct Activity(Arc<watch::Sender<Load>>);

impl Activity {
    /// A request started; it ends when the guard drops (finished or cancelled).
    fn begin(&self) -> Busy {
        // Receivers only care about transitions to and from no request at all.
        self.0.send_if_modified(|load| {
            load.in_flight += 1;
            load.started = true;
            load.in_flight == 1
        });
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `idle` (`first` before any request).
    async fn idle(&self, first: Duration, idle: Duration) {
        let mut load = self.0.subscribe();
        loop {
            let now = *load.borrow_and_update();
            if now.in_flight > 0 {
                // The sender lives in `self`, so `changed` cannot fail while this runs.
                let _ = load.changed().await;
                continue;
            }
            let limit = if now.started { idle } else { first };
            tokio::select! {
                () = tokio::time::sleep(limit) => return,
                _ = load.changed() => {}
            }
        }
    }
}

/// A request in flight.
struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.0.send_if_modified(|load| {
            load.in_flight = load.in_flight.saturating_sub(1);
            load.in_flight == 0
        });
    }
}

/// A connection's service, marking each request busy until its response is ready.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S, R> Service<R> for Tracked<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let busy = self.activity.begin();
        let response = self.inner.call(request);
        Box::pin(async move {
            let _busy = busy;
            response.await
        })
    }
}

/// Counts events and says when a log line is due: the first event, then at most one per
/// [`LOG_EVERY`], with the count since the last line.
#[derive(Default)]
struct RateLimited {
    last_line: Option<Instant>,
    unlogged: u64,
}

impl RateLimited {
    /// Records one event; `Some((count, since the last line))` when a line is due.
    fn hit(&mut self) -> Option<(u64, Duration)> {
        self.unlogged += 1;
        let now = Instant::now();
        let since = self.last_line.map_or(Duration::ZERO, |last| now.duration_since(last));
        if self.last_line.is_some() && since < LOG_EVERY {
            return None;
        }
        self.last_line = Some(now);
        Some((std::mem::take(&mut self.unlogged), since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_logs_the_first_event_then_holds_the_count() {
        let mut limited = RateLimited::default();
        assert_eq!(limited.hit().map(|(count, _)| count), Some(1));
        assert_eq!(limited.hit(), None);
        assert_eq!(limited.hit(), None);
        limited.last_line = Instant::now().checked_sub(LOG_EVERY);
        assert_eq!(limited.hit().map(|(count, _)| count), Some(3));
    }
}
