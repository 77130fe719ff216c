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

#[path = "common/server.rs"]
mod server;

use server::{Run, Server, measure};

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let seconds = server::env_number("LOAD_SECONDS", 3);
    let rounds = server::env_number("LOAD_ROUNDS", 3).max(1) as usize;
    let concurrencies = server::env_list("LOAD_CONCURRENCY", "1,16,64");
    let tls = server::test_certificate("load test CA");
    let server = Server::start(&tls.cert, &tls.key, "LOAD_LOG_LEVEL", &["--bench-noop-route"]);
    let body = server::sample_review("pod.json");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let config = server::client_config([tls.issued.ca_pem.as_str()]);
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
            let median = |runs| server::median_by(runs, |run: &Run| run.requests_per_second);
            let (noop, mutate) = (median(noops), median(mutates));
            let ms = server::ms;
            for (route, run) in [("/noop", &noop), ("/mutate", &mutate)] {
                let ratio = server::share_of_noop(route, mutate.requests_per_second, noop.requests_per_second);
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
