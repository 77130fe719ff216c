//! Load profile of the real server with a real load generator:
//! `cargo bench --bench profile`.
//!
//! Drives the built `mirrorswap serve` (built-in rules, a test certificate,
//! text logs at `info`) over HTTPS on loopback with `wrk` (Debian's package;
//! installed with apt-get when missing) and a Lua script that POSTs one
//! AdmissionReview of the corpus: Pods with 1, 4 and 20 containers, a
//! Deployment and a CronJob (`benches/corpus/`, `examples/admission/`). For
//! each review and each concurrency of `PROFILE_CONCURRENCY` (default
//! `1,16,64`; wrk threads ≤ 2), `/noop` (the same stack answering a fixed
//! review) and `/mutate` alternate for `PROFILE_ROUNDS` rounds (default 3) of
//! `PROFILE_SECONDS` (default 2) and each row is the median round. Prints
//! requests/s, wrk's p50/p99/max latency, the server's CPU time per request
//! (utime + stime from `/proc/PID/stat`), its peak RSS during the round
//! (`VmRSS` every 100 ms) and `/mutate` as a share of `/noop`. Exits 1 if wrk
//! saw a non-2xx answer or a socket error.

#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

use server::{Connection, Server};

/// The corpus: a label and the review's path below the crate.
const CORPUS: [(&str, &str); 5] = [
    ("Pod, 1 container", "benches/corpus/pod-1.json"),
    ("Pod, 4 containers", "examples/admission/pod.json"),
    ("Pod, 20 containers", "benches/corpus/pod-20.json"),
    ("Deployment", "examples/admission/deployment.json"),
    ("CronJob", "examples/admission/cronjob.json"),
];

/// wrk's summary, printed by the Lua script's `done` as one `PROFILE` line.
const LUA: &str = r#"
local file = assert(io.open(BODY, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = "application/json"
file:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("PROFILE %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"#;

/// Finds `wrk` on PATH, or installs Debian's package (CI machines start fresh).
fn ensure_wrk() {
    let found = |name: &str| {
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    if found("wrk") {
        return;
    }
    eprintln!("wrk is not installed: apt-get install -y wrk");
    let install = || Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]).status().is_ok_and(|s| s.success());
    if !install() {
        let updated = Command::new("apt-get").args(["update", "-qq"]).status().is_ok_and(|s| s.success());
        assert!(updated && install(), "could not install wrk (apt-get needs root); install it and run again");
    }
}

/// One round: wrk's numbers and the server's CPU and memory.
struct Run {
    requests_per_second: f64,
    p50: u32,
    p99: u32,
    max: u32,
    cpu_us_per_request: f64,
    peak_rss_mib: f64,
    errors: u64,
}

/// Runs wrk for `seconds` with `connections` against `route` with `script`'s body.
fn measure(server: &Server, route: &str, script: &Path, connections: usize, seconds: u64) -> Run {
    let threads = connections.min(2).to_string();
    let (cpu_before, sampler) = (server.cpu_seconds(), server.sample_rss());
    let output = Command::new("wrk")
        .args(["-t", &threads, "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "-s"])
        .arg(script)
        .arg(format!("https://{}{route}", server.addr))
        .output()
        .expect("run wrk");
    let cpu = server.cpu_seconds() - cpu_before;
    let peak_rss_mib = sampler.stop();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("PROFILE "))
        .unwrap_or_else(|| panic!("wrk printed no summary:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    let numbers: Vec<u64> = line.split_whitespace().map(|n| n.parse().expect("a number")).collect();
    let [requests, duration_us, p50, p99, max, status_errors, socket_errors] = numbers[..] else {
        panic!("unexpected wrk summary: {line}")
    };
    let us = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
    Run {
        requests_per_second: requests as f64 / (duration_us as f64 / 1e6),
        p50: us(p50),
        p99: us(p99),
        max: us(max),
        cpu_us_per_request: cpu * 1e6 / requests.max(1) as f64,
        peak_rss_mib,
        errors: status_errors + socket_errors,
    }
}

/// Writes the compact review and its Lua script into `dir`; returns the script and the body.
fn prepare(dir: &Path, index: usize, path: &str) -> (PathBuf, Vec<u8>) {
    let text = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("corpus file");
    let review: serde_json::Value = serde_json::from_slice(&text).expect("corpus JSON");
    let body = serde_json::to_vec(&review).expect("compact JSON");
    let body_path = dir.join(format!("review-{index}.json"));
    std::fs::write(&body_path, &body).expect("write body");
    let script = dir.join(format!("review-{index}.lua"));
    let lua = format!("local BODY = {:?}\n{LUA}", body_path.display().to_string());
    std::fs::write(&script, lua).expect("write Lua script");
    (script, body)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    ensure_wrk();
    let seconds = server::env_number("PROFILE_SECONDS", 2);
    let rounds = server::env_number("PROFILE_ROUNDS", 3).max(1) as usize;
    let concurrencies = server::env_list("PROFILE_CONCURRENCY", "1,16,64");
    let tls = server::test_certificate("profile test CA");
    let server = Server::start(&tls.cert, &tls.key, "PROFILE_LOG_LEVEL", &["--bench-noop-route"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let config = server::client_config([tls.issued.ca_pem.as_str()]);
    let mut scripts = Vec::new();
    for (index, (label, path)) in CORPUS.iter().enumerate() {
        let (script, body) = prepare(tls.dir.path(), index, path);
        // Each review must get a real answer (200, a review) before it is measured.
        let (status, answer) = runtime.block_on(async {
            let mut connection = Connection::open(server.addr, &config).await.expect("connect");
            connection.post("/mutate", body.into()).await.expect("answer")
        });
        assert!(status == 200 && answer.starts_with(b"{\"apiVersion\":\"admission.k8s.io/v1\""), "{label}: {status}");
        scripts.push((*label, script, answer.windows(7).any(|w| w == b"\"patch\"")));
    }

    println!(
        "wrk over HTTPS (HTTP/1.1 keep-alive, loopback), median of {rounds} alternating rounds of {seconds} s; \
         CPU = the server's user+system time per request; wrk and the server share the machine's cores"
    );
    println!();
    println!(
        "| review | connections | route | requests/s | p50 ms | p99 ms | max ms | CPU µs/request | peak RSS MiB | /mutate vs /noop |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    measure(&server, "/mutate", &scripts[1].1, 4, 1); // warm-up
    let mut errors = 0;
    for (label, script, patched) in &scripts {
        let label = if *patched { (*label).to_owned() } else { format!("{label} (no patch)") };
        for &connections in &concurrencies {
            let (mut noops, mut mutates) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                noops.push(measure(&server, "/noop", script, connections, seconds));
                mutates.push(measure(&server, "/mutate", script, connections, seconds));
            }
            let median = |runs| server::median_by(runs, |run: &Run| run.requests_per_second);
            let (noop, mutate) = (median(noops), median(mutates));
            for (route, run) in [("/noop", &noop), ("/mutate", &mutate)] {
                errors += run.errors;
                let ratio = server::share_of_noop(route, mutate.requests_per_second, noop.requests_per_second);
                println!(
                    "| {label} | {connections} | {route} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {ratio} |",
                    run.requests_per_second,
                    server::ms(run.p50),
                    server::ms(run.p99),
                    server::ms(run.max),
                    run.cpu_us_per_request,
                    run.peak_rss_mib
                );
            }
        }
    }
    println!();
    println!("server peak RSS over the whole run (VmHWM): {:.1} MiB", server.status_kib("VmHWM") as f64 / 1024.0);
    if errors > 0 {
        println!("wrk saw {errors} non-2xx answers or socket errors");
        drop(server);
        std::process::exit(1);
    }
}
