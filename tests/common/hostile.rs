//! A hostile registry written for the tests: a loopback HTTP/1.1 server (plain, or HTTPS from
//! a test CA) that answers each request as a script says: any status and headers, a body of
//! any length streamed without being held (200 MiB costs the test nothing), a flood of
//! headers, or no answer at all (a stall). It records every request (method, path and
//! whether it carried an `Authorization` header), counts connections, and the most requests
//! it held in flight at once.
//!
//! ```ignore
//! let hostile = Hostile::start(None, |seen| match seen.method.as_str() {
//!     "HEAD" => Reply::status(200),
//!     _ => Reply::status(200).streamed(200 << 20),
//! }).await;
//! hostile.addr; hostile.seen(); hostile.connections(); hostile.max_in_flight();
//! ```
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::TokioIo;
use mirrorswap::certs::Issued;
use tokio::net::TcpListener;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: Option<String>,
}

/// What to answer.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes streamed after `body`, generated as they are sent.
    pub streamed: u64,
    /// Declare the streamed length in `Content-Length` (else the body is chunked).
    pub declared: bool,
    /// Never answer.
    pub stall: bool,
    /// Send each 64 KiB chunk of the streamed body this long after the one before.
    pub trickle: Option<std::time::Duration>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self { status, ..Self::default() }
    }

    pub fn stall() -> Self {
        Self { stall: true, ..Self::default() }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// `bytes` of `x` streamed in 64 KiB chunks, chunked (no `Content-Length`).
    pub fn streamed(mut self, bytes: u64) -> Self {
        self.streamed = bytes;
        self
    }

    /// As [`Self::streamed`], one chunk every `every`.
    pub fn trickled(mut self, bytes: u64, every: std::time::Duration) -> Self {
        self.streamed = bytes;
        self.trickle = Some(every);
        self
    }

    /// As [`Self::streamed`], with the length declared.
    pub fn declared(mut self, bytes: u64) -> Self {
        self.streamed = bytes;
        self.declared = true;
        self
    }
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// The running server; stops when dropped.
pub struct Hostile {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Decrements the in-flight count when a request's answer is sent or abandoned.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hostile {
    /// Starts on 127.0.0.1; HTTPS with `tls`'s serving certificate when given.
    pub async fn start(tls: Option<&Issued>, script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let acceptor = tls.map(super::registry::acceptor);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script: Arc<Script> = Arc::new(script);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let state = (Arc::clone(&seen), Arc::clone(&connections), Arc::clone(&in_flight), Arc::clone(&max_in_flight));
        let task = tokio::spawn(async move {
            let (seen, connections, in_flight, max_in_flight) = state;
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (script, seen, acceptor) = (Arc::clone(&script), Arc::clone(&seen), acceptor.clone());
                let (in_flight, max_in_flight) = (Arc::clone(&in_flight), Arc::clone(&max_in_flight));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max_in_flight.fetch_max(now, Ordering::SeqCst);
                        let guard = InFlight(Arc::clone(&in_flight));
                        let request = Seen {
                            method: request.method().to_string(),
                            path: request.uri().path_and_query().map(ToString::to_string).unwrap_or_default(),
                            authorization: request
                                .headers()
                                .get("authorization")
                                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
                        };
                        let reply = script(&request);
                        seen.lock().unwrap().push(request);
                        async move {
                            let _guard = guard;
                            if reply.stall {
                                futures::future::pending::<()>().await;
                            }
                            Ok::<_, Infallible>(response(reply))
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else { return };
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { addr, seen, connections, in_flight, max_in_flight, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The most requests held at once (answered or stalled).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn response(reply: Reply) -> hyper::Response<BoxBody<Bytes, Infallible>> {
    let mut builder = hyper::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if reply.declared {
        builder = builder.header("content-length", (reply.body.len() as u64 + reply.streamed).to_string());
    }
    let body = if reply.streamed == 0 {
        Full::new(Bytes::from(reply.body)).boxed()
    } else {
        const CHUNK: u64 = 64 * 1024;
        let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
        let chunks = reply.streamed.div_ceil(CHUNK);
        let last = reply.streamed - (chunks - 1) * CHUNK;
        let head = futures::stream::iter([Ok(Frame::data(Bytes::from(reply.body)))]);
        let trickle = reply.trickle;
        let tail = futures::stream::iter(0..chunks).then(move |index| {
            let data = if index + 1 == chunks { chunk.slice(..last as usize) } else { chunk.clone() };
            async move {
                if let Some(every) = trickle {
                    tokio::time::sleep(every).await;
                }
                Ok::<_, Infallible>(Frame::data(data))
            }
        });
        BodyExt::boxed(StreamBody::new(head.chain(tail)))
    };
    builder.body(body).unwrap()
}
