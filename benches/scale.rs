//! Memory and scale of the real server: `cargo bench --bench scale`.
//!
//! For each rule count of `SCALE_RULES` (default `10,10000,100000`; generated
//! rules of the four shapes of `benches/rewrite.rs`), starts the built
//! `mirrorswap serve` with them and reports:
//!
//! - RSS idle (2 s after start), peak under load (`SCALE_CONCURRENCY`, default
//!   16, HTTPS keep-alive clients for `SCALE_SECONDS`, default 5, sending a Pod
//!   review with the 16 images of the rewrite benchmark's mix) and idle again
//!   after it, with the load's requests/s and latency;
//! - `SCALE_RELOADS` (default 3) reloads with one client sending a request
//!   every 2 ms, then as many with 4 clients sending back to back: the rules
//!   file is renamed over with a variant that moves Docker Hub to another
//!   mirror (and back), and the time from the rename to the first answer with
//!   the new mirror is taken (the watcher's 100 ms debounce included), with
//!   the server's peak RSS (`VmHWM`, reset before each) and the latency of the
//!   requests in flight meanwhile against the others;
//! - a Pod with 1,000 containers (half rewritten): latency over 20 requests, and
//!   every answer's patch applied and compared with the expected object.
//!
//! Loopback only; bounded by the variables above.

#[path = "common/server.rs"]
mod server;
include!("common/mix.rs");

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use serde_json::{Value, json};
use server::{Connection, Server};
use tokio::runtime::Runtime;
use tokio_rustls::rustls::ClientConfig;

/// The Docker Hub target of the variant that reloads swap to and back.
const OTHER_HUB: &str = "docker.io::other-mirror.example.org/hub\n";

/// An AdmissionReview of a Pod named `name` with `images`, as containers `c0`, `c1`, ….
fn pod_review(name: &str, images: &[String]) -> Value {
    let containers: Vec<Value> =
        images.iter().enumerate().map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("scale-{name}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name,
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": containers}
            }
        }
    })
}

/// One request as a client saw it: when it started and ended (since the run's origin), and
/// whether its patch named the marker.
struct Sample {
    start: Duration,
    end: Duration,
    marked: bool,
}

/// How the clients of [`drive`] send.
#[derive(Clone, Copy)]
struct Pace {
    clients: usize,
    /// Between one client's requests.
    pause: Duration,
}

/// `pace.clients` keep-alive clients POSTing `body` to `/mutate` until `stop` is set; every sample.
async fn drive(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    body: Bytes,
    pace: Pace,
    origin: Instant,
    marker: &'static [u8],
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let tasks: Vec<_> = (0..pace.clients)
        .map(|_| {
            let (config, body, stop) = (Arc::clone(&config), body.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut connection = Connection::open(addr, &config).await.expect("connect");
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = origin.elapsed();
                    let (status, answer) = connection.post("/mutate", body.clone()).await.expect("answer");
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    let marked = patch_mentions(&answer, marker);
                    samples.push(Sample { start, end: origin.elapsed(), marked });
                    if !pace.pause.is_zero() {
                        tokio::time::sleep(pace.pause).await;
                    }
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("client"));
    }
    samples
}

/// Whether the decoded patch of `answer` contains `marker`.
fn patch_mentions(answer: &[u8], marker: &[u8]) -> bool {
    use base64::Engine;
    let review: Value = serde_json::from_slice(answer).expect("a review");
    let patch = review["response"]["patch"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64 patch");
    bytes.windows(marker.len().max(1)).any(|window| window == marker)
}

/// Latency in µs of each sample, sorted.
fn latencies<'a>(samples: impl Iterator<Item = &'a Sample>) -> Vec<u32> {
    let mut latencies: Vec<u32> =
        samples.map(|s| u32::try_from((s.end - s.start).as_micros()).unwrap_or(u32::MAX)).collect();
    latencies.sort_unstable();
    latencies
}

fn describe(latencies: &[u32]) -> String {
    let at = |q| server::ms(server::quantile(latencies, q));
    format!("{} requests, p50 {:.2} / p99 {:.2} / max {:.2} ms", latencies.len(), at(0.5), at(0.99), at(1.0))
}

/// Writes `text` next to `path` and renames it over `path`, as a ConfigMap update replaces files.
fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write rules");
    std::fs::rename(&temporary, path).expect("rename rules");
}

/// The reloads `rounds`, even ones to the variant with Docker Hub on another mirror, odd ones
/// back (so every swap changes the answer), while clients send at `pace`; prints each and the
/// median time.
fn reloads(
    server: &Server,
    runtime: &Runtime,
    config: &Arc<ClientConfig>,
    (rules, text): (&Path, &str),
    rounds: std::ops::Range<u64>,
    pace: Pace,
) {
    let body = Bytes::from(serde_json::to_vec(&pod_review("reload", &["nginx:1.27".into()])).expect("JSON"));
    let variant = format!("{OTHER_HUB}{}", text.split_once('\n').map_or("", |(_, rest)| rest));
    let (mut times, mut works) = (Vec::new(), Vec::new());
    let first = rounds.start;
    for round in rounds {
        let (next, marker): (&str, &'static [u8]) = if round % 2 == 0 {
            (&variant, b"\"other-mirror.example.org/hub/")
        } else {
            (text, b"\"mirror.example.org/hub/")
        };
        let rss_before = server.rss_mib();
        server.reset_peak();
        let (origin, stop) = (Instant::now(), Arc::new(AtomicBool::new(false)));
        let load = runtime.spawn(drive(
            server.addr,
            Arc::clone(config),
            body.clone(),
            pace,
            origin,
            marker,
            Arc::clone(&stop),
        ));
        std::thread::sleep(Duration::from_millis(500));
        let swapped = origin.elapsed();
        replace_file(rules, next);
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        let samples = runtime.block_on(load).expect("load");
        let peak = server.status_kib("VmHWM") as f64 / 1024.0;
        let visible = samples.iter().filter(|s| s.marked && s.start >= swapped).map(|s| s.end).min();
        let Some(visible) = visible else {
            println!("  - reload {}: the new rules did not show within 1.5 s", round - first + 1);
            continue;
        };
        let during = latencies(samples.iter().filter(|s| s.end > swapped && s.start < visible));
        let others = latencies(samples.iter().filter(|s| s.end <= swapped || s.start >= visible));
        let took = (visible - swapped).as_secs_f64() * 1000.0;
        times.push(took);
        let metrics = runtime.block_on(server::metrics_text(server.admin));
        let work = server::metric(&metrics, "mirrorswap_rules_load_seconds") * 1000.0;
        works.push(work);
        println!(
            "  - reload {}: visible after {took:.0} ms, of which the load itself (read, parse, compile, \
             swap: mirrorswap_rules_load_seconds) {work:.0} ms; RSS {rss_before:.1} MiB before, peak {peak:.1} MiB \
             (VmHWM); requests meanwhile: {}; the others: {}",
            round - first + 1,
            describe(&during),
            describe(&others)
        );
    }
    if !times.is_empty() {
        times.sort_by(f64::total_cmp);
        works.sort_by(f64::total_cmp);
        println!(
            "  - median: visible after {:.0} ms (100 ms of it is the watcher's debounce), the load itself {:.0} ms",
            times[times.len() / 2],
            works[works.len() / 2]
        );
    }
}

/// 20 requests of a 1,000-container Pod (even containers on registry.k8s.io, rewritten; odd
/// ones on an unknown registry, left alone); each answer's patch applied and compared.
fn thousand_containers(server: &Server, runtime: &Runtime, config: &Arc<ClientConfig>) -> (String, usize) {
    let images: Vec<String> =
        (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    format!("registry.k8s.io/app-{i}:v1")
                } else {
                    format!("unknown.example.net/app-{i}:v1")
                }
            })
            .collect();
    let review = pod_review("thousand", &images);
    let object = &review["request"]["object"];
    let mut expected = object.clone();
    for (i, container) in expected["spec"]["containers"].as_array_mut().expect("containers").iter_mut().enumerate() {
        if i % 2 == 0 {
            container["image"] = Value::from(format!("mirror.example.org/k8s/app-{i}:v1"));
        }
    }
    let body = Bytes::from(serde_json::to_vec(&review).expect("JSON"));
    let (mut times, mut wrong) = (Vec::new(), 0);
    runtime.block_on(async {
        let mut connection = Connection::open(server.addr, config).await.expect("connect");
        for _ in 0..20 {
            let started = Instant::now();
            let (status, answer) = connection.post("/mutate", body.clone()).await.expect("answer");
            times.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
            if server::patched_object(status, &answer, "scale-thousand", object).ok().as_ref() != Some(&expected) {
                wrong += 1;
            }
        }
    });
    times.sort_unstable();
    (format!("{} bytes, {}", body.len(), describe(&times)), wrong)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let counts = server::env_list("SCALE_RULES", "10,10000,100000");
    let seconds = server::env_number("SCALE_SECONDS", 5);
    let concurrency = server::env_number("SCALE_CONCURRENCY", 16) as usize;
    let reload_count = server::env_number("SCALE_RELOADS", 3);
    let tls = server::test_certificate("scale test CA");
    let config = server::client_config([tls.issued.ca_pem.as_str()]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut rows = Vec::new();
    let mut wrong = 0;
    for &count in &counts {
        let text = rules_text(count);
        let rules = tls.dir.path().join(format!("rules-{count}.conf"));
        std::fs::write(&rules, &text).expect("write rules");
        let rules_arg = rules.display().to_string();
        let server = Server::start(&tls.cert, &tls.key, "SCALE_LOG_LEVEL", &["--rules", &rules_arg]);
        std::thread::sleep(Duration::from_secs(2));
        let (idle, start_peak) = (server.rss_mib(), server.status_kib("VmHWM") as f64 / 1024.0);

        println!("## {count} rules ({} KiB file)", text.len() / 1024);
        let body = Bytes::from(serde_json::to_vec(&pod_review("mix", &images(count))).expect("JSON"));
        let (origin, stop) = (Instant::now(), Arc::new(AtomicBool::new(false)));
        let sampler = server.sample_rss();
        let pace = Pace { clients: concurrency, pause: Duration::ZERO };
        let load = runtime.spawn(drive(server.addr, Arc::clone(&config), body, pace, origin, b"", Arc::clone(&stop)));
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        let samples = runtime.block_on(load).expect("load");
        let (under_load, elapsed) = (sampler.stop(), origin.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(2));
        let after = server.rss_mib();
        let load_latency = latencies(samples.iter());
        println!(
            "- load: {concurrency} connections, 16-image Pod, {:.0} requests/s, {}",
            samples.len() as f64 / elapsed,
            describe(&load_latency)
        );
        println!("- reloads with one client sending a request every 2 ms:");
        let light = Pace { clients: 1, pause: Duration::from_millis(2) };
        reloads(&server, &runtime, &config, (&rules, &text), 0..reload_count, light);
        println!("- reloads under load (4 clients back to back):");
        let heavy = Pace { clients: 4, pause: Duration::ZERO };
        reloads(&server, &runtime, &config, (&rules, &text), reload_count..2 * reload_count, heavy);
        let (thousand, thousand_wrong) = thousand_containers(&server, &runtime, &config);
        wrong += thousand_wrong;
        println!("- 1,000-container Pod: {thousand}; {thousand_wrong} wrong answers");
        println!();
        rows.push(format!(
            "| {count} | {idle:.1} | {start_peak:.1} | {under_load:.1} | {after:.1} | {:.0} | {:.2} |",
            samples.len() as f64 / elapsed,
            server::ms(server::quantile(&load_latency, 0.99))
        ));
    }
    println!(
        "| rules | idle RSS MiB | start-up peak MiB | peak RSS under load MiB | RSS after load MiB | requests/s | p99 ms |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    rows.iter().for_each(|row| println!("{row}"));
    if wrong > 0 {
        println!("{wrong} answers to the 1,000-container Pod were wrong");
        std::process::exit(1);
    }
}
