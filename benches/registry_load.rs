//! Registry-aware swapping under load: `cargo bench --bench registry_load`.
//!
//! Starts a real registry (Debian's docker-registry, test CA, htpasswd; the four images of
//! `examples/admission/pod.json` pushed with skopeo) and three `mirrorswap serve` binaries with
//! the same rules: `--swap-policy always`, `exists` (warm cache) and `exists` with 1 ms TTLs
//! (every request cold). Reports, in the same run:
//! - requests/s of `exists`-warm against `always` at each concurrency (alternating rounds,
//!   median round; target ≥ 90%), and
//! - the cold-cache admission latency of the 4-image Pod (4 concurrent lookups, p50/p99).
//!
//! Loopback only; `LOAD_SECONDS` (default 3), `LOAD_ROUNDS` (3), `LOAD_CONCURRENCY` (`1,16,64`),
//! `COLD_REQUESTS` (200).

#[path = "common/server.rs"]
mod server;

/// The test harness's registry, shared with the integration tests.
mod common {
    #[path = "../../tests/common/components.rs"]
    pub mod components;
    #[path = "../../tests/common/registry.rs"]
    pub mod registry;

    /// What the harness needs of tests/common/mod.rs.
    #[derive(Clone, Copy)]
    pub enum Protocol {
        Http1,
    }

    pub fn tls_config(ca_pem: &str, _: Protocol) -> std::sync::Arc<tokio_rustls::rustls::ClientConfig> {
        super::server::client_config([ca_pem])
    }
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use server::{Connection, Server};
use tokio_rustls::rustls::ClientConfig;

async fn run_client(addr: SocketAddr, config: Arc<ClientConfig>, body: Bytes, until: Instant) -> Vec<u32> {
    let mut connection = Connection::open(addr, &config).await.expect("connect, TLS handshake");
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let (status, answer) = connection.post("/mutate", body.clone()).await.expect("response");
        assert_eq!(status, 200);
        assert!(answer.starts_with(b"{\"apiVersion\":\"admission.k8s.io/v1\""), "malformed response");
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    latencies
}

struct Run {
    requests_per_second: f64,
    p50: u32,
    p99: u32,
}

async fn measure(addr: SocketAddr, config: &Arc<ClientConfig>, body: &Bytes, clients: usize, seconds: u64) -> Run {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> =
        (0..clients).map(|_| tokio::spawn(run_client(addr, Arc::clone(config), body.clone(), until))).collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Run {
        requests_per_second: latencies.len() as f64 / elapsed,
        p50: server::quantile(&latencies, 0.5),
        p99: server::quantile(&latencies, 0.99),
    }
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let seconds = server::env_number("LOAD_SECONDS", 3);
    let rounds = server::env_number("LOAD_ROUNDS", 3).max(1) as usize;
    let concurrencies = server::env_list("LOAD_CONCURRENCY", "1,16,64");
    let cold_requests = server::env_number("COLD_REQUESTS", 200) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let Some(registry) = runtime.block_on(common::registry::Registry::start(common::registry::Auth::Basic)) else {
        return;
    };
    let mirror = registry.host();
    runtime.block_on(async {
        for (repo, tag) in [
            ("k8s/kubectl", "v1.30.0"),
            ("hub/nginx", "1.27"),
            ("quay/prometheus/nginx-exporter", "1.3.0"),
            ("internal/team/app", "2.1"),
        ] {
            registry.push(repo, tag).await;
        }
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let rules = dir.path().join("rules.conf");
    std::fs::write(
        &rules,
        format!(
            "registry.k8s.io::{mirror}/k8s\ndocker.io::{mirror}/hub\nquay.io::{mirror}/quay\n\
             registry.internal.example.com::{mirror}/internal\n"
        ),
    )
    .expect("rules");
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, registry.docker_config()).expect("auth file");
    let (rules, auth, ca) =
        (rules.display().to_string(), auth.display().to_string(), registry.ca_path().display().to_string());
    let tls = server::test_certificate("registry load test CA");
    let exists = ["--rules", &rules, "--swap-policy", "exists", "--registry-auth", &auth, "--registry-ca", &ca];
    let always = Server::start(&tls.cert, &tls.key, "LOAD_LOG_LEVEL", &["--rules", &rules]);
    let warm = Server::start(&tls.cert, &tls.key, "LOAD_LOG_LEVEL", &exists);
    let cold_flags: Vec<&str> =
        exists.iter().copied().chain(["--check-cache-ttl", "1ms", "--check-negative-ttl", "1ms"]).collect();
    let cold = Server::start(&tls.cert, &tls.key, "LOAD_LOG_LEVEL", &cold_flags);
    let body = server::sample_review("pod.json");
    let config = server::client_config([tls.issued.ca_pem.as_str()]);
    println!(
        "4-container Pod review, loopback registry (docker-registry, TLS, basic auth), median of {rounds} alternating rounds of {seconds} s"
    );
    println!();
    println!("| connections | policy | requests/s | p50 ms | p99 ms | exists-warm vs always |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    runtime.block_on(async {
        // Warm up: TLS, allocator, and the exists server's cache (4 lookups).
        measure(always.addr, &config, &body, 4, 1).await;
        measure(warm.addr, &config, &body, 4, 1).await;
        for clients in concurrencies {
            let (mut always_runs, mut warm_runs) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                always_runs.push(measure(always.addr, &config, &body, clients, seconds).await);
                warm_runs.push(measure(warm.addr, &config, &body, clients, seconds).await);
            }
            let median = |runs| server::median_by(runs, |run: &Run| run.requests_per_second);
            let (always_run, warm_run) = (median(always_runs), median(warm_runs));
            let ratio = warm_run.requests_per_second / always_run.requests_per_second * 100.0;
            for (policy, run, share) in
                [("always", &always_run, String::new()), ("exists (warm)", &warm_run, format!("{ratio:.1}%"))]
            {
                println!(
                    "| {clients} | {policy} | {:.0} | {:.2} | {:.2} | {share} |",
                    run.requests_per_second,
                    server::ms(run.p50),
                    server::ms(run.p99)
                );
            }
        }
        // Cold: one connection, requests one after another, every lookup real (1 ms TTLs).
        let mut connection = Connection::open(cold.addr, &config).await.expect("connect");
        let mut latencies = Vec::with_capacity(cold_requests);
        for _ in 0..cold_requests {
            tokio::time::sleep(Duration::from_millis(2)).await; // let the 1 ms answers expire
            let started = Instant::now();
            let (status, _) = connection.post("/mutate", body.clone()).await.expect("response");
            assert_eq!(status, 200);
            latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
        latencies.sort_unstable();
        let misses = server::metric(
            &server::metrics_text(cold.admin).await,
            "mirrorswap_registry_check_cache_total{result=\"miss\"}",
        );
        println!();
        println!(
            "cold cache, 4-image Pod (4 concurrent manifest lookups): p50 {:.2} ms, p99 {:.2} ms over {cold_requests} requests ({misses} lookups)",
            server::ms(server::quantile(&latencies, 0.5)),
            server::ms(server::quantile(&latencies, 0.99)),
        );
    });
}
