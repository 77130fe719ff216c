//! Load benchmark of the real server: `cargo bench --bench load`.
//!
//! Starts the built `mirrorswap serve` binary on 127.0.0.1 with a test
//! certificate and the built-in rules, then drives it over HTTPS with N
//! concurrent HTTP/1.1 keep-alive clients sending a 4-container Pod review,
//! first to the benchmark-only `/noop` route (the same TLS, HTTP, body,
//! content-type and metrics handling; a fixed answer instead of the admission
//! work) and then to `/mutate`, at each concurrency.
//! Prints requests/s, p50/p99/max latency, and `/mutate` as a share of the
//! no-op throughput. The two routes alternate for `LOAD_ROUNDS` rounds
//! (default 3) of `LOAD_SECONDS` each (default 3) and each row is the round
//! with the median throughput, so a machine that slows down or speeds up
//! during the run shifts both routes alike. Loopback only; bounded by
//! `LOAD_SECONDS`, `LOAD_ROUNDS` and `LOAD_CONCURRENCY` (default `1,16,64`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(ca: &mirrorswap::certs::Issued) -> Server {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, &ca.cert_pem).expect("write certificate");
    std::fs::write(&key, &ca.key_pem).expect("write key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--bench-noop-route"])
        // The default text format at info: one line per patched object, as operators run it.
        // `LOAD_LOG_LEVEL` takes filter directives; the start-up line must stay visible, so
        // quieten admissions with e.g. `info,mirrorswap::server::admission=warn`.
        .args(["--log-level", &std::env::var("LOAD_LOG_LEVEL").unwrap_or_else(|_| "info".into())])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mirrorswap serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    // `… mirrorswap serving webhook=127.0.0.1:PORT admin=… rules=…`
    let addr = loop {
        let line = lines.next().expect("the server logs its address").expect("log line");
        if let Some(rest) = line.split("mirrorswap serving webhook=").nth(1) {
            break rest.split_whitespace().next().expect("address").parse().expect("socket address");
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Server { child, addr, _dir: dir }
}

fn client_config(ca_pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA certificate")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One keep-alive client: requests back to back until `until`; returns latencies in µs.
async fn run_client(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &'static str,
    body: Bytes,
    until: Instant,
) -> Vec<u32> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").expect("name"), stream)
        .await
        .expect("TLS handshake");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("HTTP/1.1");
    tokio::spawn(connection);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let request = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .expect("request");
        let started = Instant::now();
        sender.ready().await.expect("connection ready");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200, "{path}");
        let answer = response.into_body().collect().await.expect("body").to_bytes();
        assert!(answer.starts_with(b"{\"apiVersion\":\"admission.k8s.io/v1\""), "malformed response");
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    latencies
}

/// The run with the median throughput.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

struct Run {
    requests_per_second: f64,
    p50: u32,
    p99: u32,
    max: u32,
}

async fn measure(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    path: &'static str,
    body: &Bytes,
    clients: usize,
    seconds: u64,
) -> Run {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> =
        (0..clients).map(|_| tokio::spawn(run_client(addr, Arc::clone(config), path, body.clone(), until))).collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |quantile: f64| latencies[((latencies.len() as f64 - 1.0) * quantile) as usize];
    Run { requests_per_second: latencies.len() as f64 / elapsed, p50: at(0.5), p99: at(0.99), max: at(1.0) }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let seconds: u64 = std::env::var("LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let rounds: usize = std::env::var("LOAD_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let concurrencies: Vec<usize> = std::env::var("LOAD_CONCURRENCY")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let ca = mirrorswap::certs::issue("load test CA", &["localhost".into()], 1).expect("test certificate");
    let server = start_server(&ca);
    let review = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admission/pod.json")).expect("sample");
    let body = Bytes::from(
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&review).expect("json")).expect("compact"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let config = client_config(&ca.ca_pem);
    println!(
        "4-container Pod review ({} bytes), median of {rounds} alternating rounds of {seconds} s, HTTPS keep-alive, HTTP/1.1, loopback",
        body.len()
    );
    println!();
    println!("| connections | route | requests/s | p50 ms | p99 ms | max ms | /mutate vs /noop |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    runtime.block_on(async {
        // Warm up both routes (TLS session setup, allocator, page faults).
        measure(server.addr, &config, "/mutate", &body, 4, 1).await;
        for clients in concurrencies {
            let (mut noops, mut mutates) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                noops.push(measure(server.addr, &config, "/noop", &body, clients, seconds).await);
                mutates.push(measure(server.addr, &config, "/mutate", &body, clients, seconds).await);
            }
            let (noop, mutate) = (median(noops), median(mutates));
            let ms = |us: u32| f64::from(us) / 1000.0;
            for (route, run) in [("/noop", &noop), ("/mutate", &mutate)] {
                let ratio = if route == "/mutate" {
                    format!("{:.0}%", 100.0 * mutate.requests_per_second / noop.requests_per_second)
                } else {
                    String::new()
                };
                println!(
                    "| {clients} | {route} | {:.0} | {:.2} | {:.2} | {:.2} | {ratio} |",
                    run.requests_per_second,
                    ms(run.p50),
                    ms(run.p99),
                    ms(run.max)
                );
            }
        }
    });
}
