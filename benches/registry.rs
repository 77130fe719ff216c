//! Registry-aware swapping under load: `cargo bench --bench registry`.
//!
//! Starts a real registry (Debian's `docker-registry` on 127.0.0.1 with a test CA and htpasswd
//! basic auth, `tests/common/registry.rs`), pushes the four images that the 4-container Pod
//! review of `benches/load.rs` is rewritten to, and runs four release `mirrorswap serve`
//! processes with the same rules: `--swap-policy always`, `--swap-policy exists` (its cache
//! primed first, so every lookup is a hit), `exists --pin-digest` (primed too: every image
//! rewritten to `TARGET:TAG@sha256:…` from the cached answer), and a second `always` as an A/A
//! control. All four stay up for the whole run, each with its own kept-alive connections, and
//! take turns in slices of `REGISTRY_SLICE_MS` (default 250 ms) until each has had
//! `REGISTRY_SECONDS` (default 20) at every connection count of `REGISTRY_CONCURRENCY`
//! (default `1,16,64`). This machine's speed drifts by a third between runs of a few seconds
//! (the clients, four servers and the registry share two cores with other work); slices this
//! short put the four in the same stretch of it, which runs of whole seconds back to back did
//! not.
//!
//! Each row is one server's requests/s over all its slices, with latency and the server's CPU
//! time per request (utime + stime from `/proc`); the last column is its requests/s as a share
//! of `always`'s (target for `exists` and `exists --pin-digest`: ≥ 90%), with the lowest and
//! highest share among
//! `BLOCKS` consecutive stretches of the run. The control's share is what the bench itself
//! spreads by: a gap within it is noise.
//!
//! First, without a network, the admission work alone in this process: the Pod answered as
//! `always` does, as `exists` does with every image cached present, and as `exists
//! --pin-digest` does with every image cached present with its digest, alternating for
//! 50 × `REGISTRY_ROUNDS` (default 9) slices of 2,000 answers each, median ns per answer.
//!
//! Then the cold-cache admission latency of the same Pod (four lookups, concurrent, one
//! deadline), `REGISTRY_COLD_RUNS` times (default 30), two ways:
//! - *fresh server*: a new `exists` process per run, so the lookups also open the connection to
//!   the registry (TCP, TLS, the `/v2/` auth ping) — the first Pod after a start or a reload;
//! - *expired entries*: one process with `--check-cache-ttl 1ms`, every Pod asking the registry
//!   again over kept-alive connections — a Pod whose images were not asked for in 5 minutes.
//!
//! Prints median, p99 and max per way, next to `always` on a fresh server as the baseline.
//! Every answer is checked: all four images rewritten to the registry. Skips (exit 0) when
//! `docker-registry`, `skopeo` or `htpasswd` is missing. Loopback only.

#[path = "common/server.rs"]
mod server;

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::registry::{Auth, Registry};
use hyper::body::Bytes;
use serde_json::Value;
use server::{Connection, Server, TestCertificate, measure};
use tokio_rustls::rustls::ClientConfig;

/// The four images of `examples/admission/pod.json`, as the bench's rules rewrite them: the
/// repository (below the registry) and the tag to push.
const PUSHED: [(&str, &str); 4] = [
    ("k8s/kubectl", "v1.30.0"),
    ("hub/nginx", "1.27"),
    ("quay/prometheus/nginx-exporter", "1.3.0"),
    ("internal/team/app", "2.1"),
];

/// Rules sending each of the Pod's four registries to a repository of the test registry.
fn rules(mirror: &str) -> String {
    format!(
        "docker.io::{mirror}/hub\nquay.io::{mirror}/quay\nregistry.k8s.io::{mirror}/k8s\n\
         registry.internal.example.com::{mirror}/internal\n"
    )
}

/// What the bench needs of one admission answer: all four images now in the registry `mirror`,
/// and pinned (`@sha256:`) when `pinned`.
fn assert_all_rewritten(answer: &[u8], review: &Value, mirror: &str, pinned: bool) {
    let uid = review["request"]["uid"].as_str().expect("uid");
    let object = server::patched_object(200, answer, uid, &review["request"]["object"]).expect("a valid answer");
    let spec = &object["spec"];
    let images: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten())
        .filter_map(|container| container["image"].as_str())
        .collect();
    assert_eq!(images.len(), 4, "{images:?}");
    assert!(
        images.iter().all(|image| image.starts_with(&format!("{mirror}/"))),
        "every image rewritten to {mirror}: {images:?}, answer {}",
        String::from_utf8_lossy(answer)
    );
    assert!(images.iter().all(|image| image.contains("@sha256:") == pinned), "pinned: {pinned}: {images:?}");
}

/// One Pod on a new connection (opened first, not timed); its latency in µs and the answer.
async fn admit_once(addr: SocketAddr, config: &Arc<ClientConfig>, body: &Bytes) -> (u32, Bytes) {
    let mut connection = Connection::open(addr, config).await.expect("connect, TLS handshake");
    let started = Instant::now();
    let (status, answer) = connection.post("/mutate", body.clone()).await.expect("response");
    let took = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    (took, answer)
}

/// The flags of an `exists` server against `registry`, its credentials written into `dir`.
fn exists_flags(registry: &Registry, dir: &Path, extra: &[&str]) -> Vec<String> {
    let auth = dir.join("registry-auth.json");
    std::fs::write(&auth, registry.docker_config()).expect("write the auth file");
    let mut flags: Vec<String> = ["--swap-policy", "exists", "--registry-ca"].map(String::from).to_vec();
    flags.push(registry.ca_path().display().to_string());
    flags.push("--registry-auth".into());
    flags.push(auth.display().to_string());
    flags.extend(extra.iter().map(|flag| (*flag).to_owned()));
    flags
}

fn start(tls: &TestCertificate, rules: &Path, flags: &[String]) -> Server {
    let mut args: Vec<&str> = vec!["--rules", rules.to_str().expect("UTF-8 path")];
    args.extend(flags.iter().map(String::as_str));
    Server::start(&tls.cert, &tls.key, "REGISTRY_LOG_LEVEL", &args)
}

struct Latencies {
    label: &'static str,
    sorted_us: Vec<u32>,
}

fn print_latencies(rows: &[Latencies]) {
    println!("| cold-cache Pod (4 images) | runs | median ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for row in rows {
        let at = |q: f64| server::ms(server::quantile(&row.sorted_us, q));
        println!("| {} | {} | {:.2} | {:.2} | {:.2} |", row.label, row.sorted_us.len(), at(0.5), at(0.99), at(1.0));
    }
}

/// The blocks a server's slices are grouped into for the share's range.
const BLOCKS: usize = 8;

/// One server under load in slices: its kept-alive connections and what they measured.
struct Side<'s> {
    server: &'s Server,
    connections: Vec<Connection>,
    latencies: Vec<u32>,
    /// Requests and seconds per block.
    blocks: [(u64, f64); BLOCKS],
    cpu_seconds: f64,
}

impl<'s> Side<'s> {
    async fn open(server: &'s Server, config: &Arc<ClientConfig>, clients: usize) -> Self {
        let mut connections = Vec::with_capacity(clients);
        for _ in 0..clients {
            connections.push(Connection::open(server.addr, config).await.expect("connect, TLS handshake"));
        }
        Self { server, connections, latencies: Vec::new(), blocks: [(0, 0.0); BLOCKS], cpu_seconds: 0.0 }
    }

    /// Every connection sends the Pod, one request after another, for `length`; counted in `block`.
    async fn run(&mut self, block: usize, body: &Bytes, length: Duration) {
        let cpu_before = self.server.cpu_seconds();
        let started = Instant::now();
        let until = started + length;
        let tasks: Vec<_> = self
            .connections
            .drain(..)
            .map(|mut connection| {
                let body = body.clone();
                tokio::spawn(async move {
                    let latencies = server::send_until(&mut connection, "/mutate", &body, until).await;
                    (connection, latencies)
                })
            })
            .collect();
        let mut requests = 0;
        for task in tasks {
            let (connection, latencies) = task.await.expect("client task");
            requests += latencies.len() as u64;
            self.latencies.extend(latencies);
            self.connections.push(connection);
        }
        let (count, seconds) = &mut self.blocks[block];
        *count += requests;
        *seconds += started.elapsed().as_secs_f64();
        self.cpu_seconds += self.server.cpu_seconds() - cpu_before;
    }

    fn requests(&self) -> u64 {
        self.blocks.iter().map(|(requests, _)| requests).sum()
    }

    fn requests_per_second(&self) -> f64 {
        self.requests() as f64 / self.blocks.iter().map(|(_, seconds)| seconds).sum::<f64>()
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.requests().max(1) as f64
    }

    /// The median and p99 latency, µs (the latencies sorted first).
    fn latency(&self) -> (u32, u32) {
        (server::quantile(&self.latencies, 0.5), server::quantile(&self.latencies, 0.99))
    }

    /// This side's requests/s as a share of `base`'s over the whole run, and the lowest and
    /// highest share of the blocks (the slices run in the same stretch of time).
    fn share_of(&self, base: &Side) -> (f64, f64, f64) {
        let rate = |(requests, seconds): &(u64, f64)| *requests as f64 / seconds.max(f64::MIN_POSITIVE);
        let shares = self.blocks.iter().zip(&base.blocks).map(|(mine, theirs)| rate(mine) / rate(theirs));
        let (low, high) = shares.fold((f64::INFINITY, 0.0_f64), |(low, high), share| (low.min(share), high.max(share)));
        (self.requests_per_second() / base.requests_per_second(), low, high)
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let seconds = server::env_number("REGISTRY_SECONDS", 20).max(1);
    let slice_ms = server::env_number("REGISTRY_SLICE_MS", 250).max(10);
    let rounds = server::env_number("REGISTRY_ROUNDS", 9).max(1) as usize;
    let cold_runs = server::env_number("REGISTRY_COLD_RUNS", 30).max(1) as usize;
    let concurrencies = server::env_list("REGISTRY_CONCURRENCY", "1,16,64");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    warm_path_in_process(rounds);
    runtime.block_on(async {
        let Some(registry) = Registry::start(Auth::Basic).await else {
            eprintln!("registry bench skipped: docker-registry, skopeo or htpasswd is missing");
            return;
        };
        let mirror = registry.host();
        for (repo, tag) in PUSHED {
            registry.push(repo, tag).await;
        }
        let tls = server::test_certificate("registry bench CA");
        let rules_path = tls.dir.path().join("rules.conf");
        std::fs::write(&rules_path, rules(&mirror)).expect("write rules");
        let config = server::client_config([tls.issued.ca_pem.as_str()]);
        let review_body = server::sample_review("pod.json");
        let review: Value = serde_json::from_slice(&review_body).expect("review JSON");

        let always = start(&tls, &rules_path, &["--swap-policy".into(), "always".into()]);
        let warm_flags = exists_flags(&registry, tls.dir.path(), &["--check-cache-ttl", "1h"]);
        let exists = start(&tls, &rules_path, &warm_flags);
        let pinned_flags =
            exists_flags(&registry, tls.dir.path(), &["--check-cache-ttl", "1h", "--pin-digest"]);
        let pinned = start(&tls, &rules_path, &pinned_flags);
        let control = start(&tls, &rules_path, &["--swap-policy".into(), "always".into()]);
        // Prime the caches (four lookups each), check the answers, and warm the processes up.
        for (server, pins) in [(&always, false), (&exists, false), (&pinned, true), (&control, false)] {
            let (_, answer) = admit_once(server.addr, &config, &review_body).await;
            assert_all_rewritten(&answer, &review, &mirror, pins);
        }
        let lookups_after_priming = registry.manifest_requests();
        for server in [&always, &exists, &pinned, &control] {
            measure(server.addr, &config, "/mutate", &review_body, 4, 1).await;
        }

        println!(
            "4-container Pod review ({} bytes), 4 images present in a loopback docker-registry (basic auth, TLS); \
             {seconds} s per server and connection count, interleaved in {slice_ms} ms slices; HTTPS keep-alive, HTTP/1.1",
            review_body.len()
        );
        println!();
        println!(
            "| connections | server | requests/s | p50 ms | p99 ms | server CPU µs/request | share of `always` (range over {BLOCKS} blocks) |"
        );
        println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
        let (mut worst_share, mut worst_pinned) = (f64::INFINITY, f64::INFINITY);
        let servers = [&always, &exists, &pinned, &control];
        let slices = (seconds * 1000 / slice_ms).max(BLOCKS as u64) as usize;
        for &clients in &concurrencies {
            let mut sides = Vec::new();
            for server in servers {
                sides.push(Side::open(server, &config, clients).await);
            }
            for slice in 0..slices {
                // Each server goes first, second, third and fourth in turn, so a drift of the
                // machine within a cycle hits all four alike.
                for turn in 0..servers.len() {
                    let index = (slice + turn) % servers.len();
                    sides[index].run(slice * BLOCKS / slices, &review_body, Duration::from_millis(slice_ms)).await;
                }
            }
            for side in &mut sides {
                side.latencies.sort_unstable();
            }
            let [always_side, exists_side, pinned_side, control_side] = &sides[..] else {
                unreachable!("four servers")
            };
            let rows = [
                ("`always`", always_side),
                ("`exists`, warm cache", exists_side),
                ("`exists --pin-digest`, warm cache", pinned_side),
                ("`always` again (A/A control)", control_side),
            ];
            for (label, side) in rows {
                let cell = if std::ptr::eq(side, always_side) {
                    String::new()
                } else {
                    let (share, low, high) = side.share_of(always_side);
                    if std::ptr::eq(side, exists_side) {
                        worst_share = worst_share.min(share);
                    }
                    if std::ptr::eq(side, pinned_side) {
                        worst_pinned = worst_pinned.min(share);
                    }
                    format!("{:.1}% ({:.0}–{:.0}%)", 100.0 * share, 100.0 * low, 100.0 * high)
                };
                let (p50, p99) = side.latency();
                println!(
                    "| {clients} | {label} | {:.0} | {:.2} | {:.2} | {:.1} | {cell} |",
                    side.requests_per_second(),
                    server::ms(p50),
                    server::ms(p99),
                    side.cpu_us_per_request()
                );
            }
        }
        let extra_lookups = registry.manifest_requests() - lookups_after_priming;
        println!();
        let met = |share: f64| if share >= 0.9 { "met" } else { "NOT met" };
        println!(
            "warm cache: {extra_lookups} registry lookups during the load (expected 0); lowest exists/always share \
             {:.1}% (target ≥ 90%: {}); lowest exists --pin-digest/always share {:.1}% (target ≥ 90%: {})",
            100.0 * worst_share,
            met(worst_share),
            100.0 * worst_pinned,
            met(worst_pinned)
        );
        drop(control);
        drop((always, exists, pinned));

        // Cold cache. Fresh processes alternate between `always` (the baseline) and `exists`.
        let (mut fresh_always, mut fresh_exists) = (Vec::new(), Vec::new());
        for _ in 0..cold_runs {
            let server = start(&tls, &rules_path, &["--swap-policy".into(), "always".into()]);
            fresh_always.push(admit_once(server.addr, &config, &review_body).await.0);
            drop(server);
            let server = start(&tls, &rules_path, &exists_flags(&registry, tls.dir.path(), &[]));
            let (took, answer) = admit_once(server.addr, &config, &review_body).await;
            assert_all_rewritten(&answer, &review, &mirror, false);
            fresh_exists.push(took);
        }
        let expiring =
            start(&tls, &rules_path, &exists_flags(&registry, tls.dir.path(), &["--check-cache-ttl", "1ms"]));
        let before = registry.manifest_requests();
        let mut expired = Vec::new();
        // One Pod first so the connections to the registry exist; not counted.
        admit_once(expiring.addr, &config, &review_body).await;
        for _ in 0..cold_runs {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let (took, answer) = admit_once(expiring.addr, &config, &review_body).await;
            assert_all_rewritten(&answer, &review, &mirror, false);
            expired.push(took);
        }
        let asked = registry.manifest_requests() - before;
        let mut rows = [
            Latencies { label: "`always`, fresh server (baseline, no registry)", sorted_us: fresh_always },
            Latencies { label: "`exists`, fresh server (new registry connections)", sorted_us: fresh_exists },
            Latencies { label: "`exists`, expired entries (kept-alive connections)", sorted_us: expired },
        ];
        for row in &mut rows {
            row.sorted_us.sort_unstable();
        }
        println!();
        print_latencies(&rows);
        println!();
        println!(
            "expired entries: {asked} manifest requests at the registry for {} Pods (4 per Pod expected)",
            cold_runs + 1
        );
    });
}

/// The admission work of `examples/admission/pod.json` in this process, no network: `always`
/// (`admission::answer`) against `exists` with a warm cache (parse, `images_to_check`,
/// `Resolver::resolve` on cached answers, `answer_request`), and `exists --pin-digest` with a
/// warm cache (the same, each answer read with its digest and the images pinned), alternating
/// rounds.
fn warm_path_in_process(rounds: usize) {
    use mirrorswap::registry::{Answer, CheckArgs, Digest, Found, OnCheckError, Pinning, Resolver};
    use mirrorswap::rewrite::{Decision, Options, compile_maps};
    use mirrorswap::server::{admission, metrics::Metrics};
    // Short slices, alternating, so a drift of the machine hits every way alike.
    const ANSWERS: u32 = 2_000;
    let slices = rounds * 50;
    let rules = compile_maps(&rules("mirror.invalid"), Options::default()).expect("rules").rules;
    let body = server::sample_review("pod.json");
    let args = CheckArgs {
        registry_auth: None,
        registry_ca: None,
        insecure_registries: Vec::new(),
        check_timeout: Duration::from_secs(1),
        check_cache_ttl: Duration::from_secs(3600),
        check_negative_ttl: Duration::from_secs(30),
        check_cache_entries: 100_000,
        check_backoff: Duration::from_secs(5),
        check_host_concurrency: 16,
    };
    let metrics = Metrics::new().expect("metrics");
    let settings = admission::Settings::default();
    let pinned_settings = admission::Settings { pin_digest: true, ..admission::Settings::default() };
    let resolver = Resolver::new(&args, OnCheckError::Keep, 32, None).expect("resolver");
    let pinning = Pinning { pin: true, ..Pinning::default() };
    let pinner = Resolver::new(&args, OnCheckError::Keep, 32, None).expect("resolver").with_pinning(pinning);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let request = admission::parse(&body).expect("a review");
    for image in admission::images_to_check(&request, &rules, &settings) {
        if let Decision::Rewritten { image: target, .. } = rules.rewrite(image) {
            let found = Found { digest: Some(Digest::of(target.as_bytes())), platforms: None };
            for resolver in [&resolver, &pinner] {
                let answer = Answer::Present(found.clone());
                let (cached, _) = runtime.block_on(resolver.cache().get_or_check(&target, async { Ok(answer) }));
                assert!(cached.is_ok_and(|answer| answer.is_present()));
            }
        }
    }
    let exists_way = |resolver: &Resolver, settings: &admission::Settings| {
        let started = Instant::now();
        runtime.block_on(async {
            for _ in 0..ANSWERS {
                let request = admission::parse(&body).expect("a review");
                let images = admission::images_to_check(&request, &rules, settings);
                let mut resolved = resolver.resolve(&rules, &images).await;
                let answer = admission::answer_request(&request, &rules, settings, &metrics, Some(&mut resolved));
                std::hint::black_box(answer);
            }
        });
        started.elapsed().as_nanos() as f64 / f64::from(ANSWERS)
    };
    let (mut always, mut exists, mut pinned) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..slices {
        let started = Instant::now();
        for _ in 0..ANSWERS {
            std::hint::black_box(admission::answer(&body, &rules, &settings, &metrics));
        }
        always.push(started.elapsed().as_nanos() as f64 / f64::from(ANSWERS));
        exists.push(exists_way(&resolver, &settings));
        pinned.push(exists_way(&pinner, &pinned_settings));
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (always, exists, pinned) = (median(always), median(exists), median(pinned));
    println!(
        "admission work in process (4-container Pod, median of {slices} alternating slices of {ANSWERS}): always {always:.0} ns, \
         exists with a warm cache {exists:.0} ns (+{:.0} ns, {:.0}% of always's rate), exists --pin-digest with a warm \
         cache {pinned:.0} ns (+{:.0} ns, {:.0}% of always's rate)",
        exists - always,
        100.0 * always / exists,
        pinned - always,
        100.0 * always / pinned
    );
    println!();
}
